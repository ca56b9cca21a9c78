//! The error accumulator: every check reports into it and goes on, so that the user sees all
//! the problems of a handler in one compile (serde_derive's `Ctxt`).

use std::fmt::Display;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;

/// The errors found so far.
#[derive(Default)]
pub(crate) struct Ctxt {
    errors: Vec<syn::Error>,
}

impl Ctxt {
    /// An error spanning `tokens` (the user's token the message is about).
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at `span`.
    pub(crate) fn error_at(&mut self, span: Span, message: impl Display) {
        self.errors.push(syn::Error::new(span, message));
    }

    /// An error that syn already made (a parse error).
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// Parses the item an attribute is on, or reports `message` (what the attribute goes on).
    pub(crate) fn parse_item<T: syn::parse::Parse>(
        &mut self,
        tokens: TokenStream,
        message: &str,
    ) -> Option<T> {
        syn::parse2(tokens)
            .map_err(|err| self.error_at(err.span(), message))
            .ok()
    }

    /// One `compile_error!` per error, each at its own span.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.errors
            .into_iter()
            .map(syn::Error::into_compile_error)
            .collect()
    }
}
