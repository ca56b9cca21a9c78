//! The expansion of the handler attributes (`#[on]`, `#[on_connect]`...), on
//! `proc_macro2` tokens so that it can be unit-tested.
//!
//! `#[on("chat")] pub async fn chat(a: A, b: B) -> R { body }` becomes:
//!
//! - `pub struct chat;`, with the function's docs: what `Namespace::service(chat)` takes;
//! - `impl chat { async fn __sio_handler(a: A, b: B) -> R { body } }`: the function itself,
//!   unchanged, which `register` gives to `Namespace::on` exactly as a closure would be given;
//! - `impl HandlerService for chat`: `ns.on("chat", chat::__sio_handler)`, after one spanned
//!   check per argument and return type (empty functions, so that a type error points at the
//!   user's type rather than at the attribute);
//! - `impl Deref for chat` to a `fn(A, B) -> Pin<Box<dyn Future<Output = R> + Send>>`, so that
//!   `chat(a, b).await` still works in tests (a call expression auto-derefs its callee). Only
//!   such direct calls pay for the box; dispatch never goes through it.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{FnArg, ItemFn, LitStr, ReturnType, Type};

use crate::attr::{self, AttrArgs};
use crate::check;
use crate::ctxt::Ctxt;
use crate::kind::Kind;

/// The name of the function once it moved into the struct's impl.
const INNER: &str = "__sio_handler";

/// Expands `#[kind(attr)] item`. Errors come out as `compile_error!`s next to the closest
/// valid expansion, so that the rest of the crate (and an IDE) still sees the handler.
pub(crate) fn handler(kind: Kind, attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let positional = kind.takes_event().then_some(("event name", "\"chat\""));
    let args = attr::parse(&mut cx, kind.name(), positional, attr);
    if let Some(name) = &args.name {
        check::event_name(&mut cx, name);
    }
    let message = format!("`#[{}]` goes on an `async fn`", kind.name());
    let Some(mut item) = cx.parse_item::<ItemFn>(item, &message) else {
        return cx.into_compile_errors();
    };
    let callable = check::function(&mut cx, kind, &item);
    // A second sio attribute was reported; expanding it as well would only repeat the error.
    item.attrs.retain(|attr| Kind::of_attr(attr).is_none());
    let expanded = if callable {
        generate(kind, &args, item)
    } else {
        fallback(item)
    };
    let errors = cx.into_compile_errors();
    quote!(#expanded #errors)
}

/// The function as written, minus what would make rustc repeat our errors, when it cannot be a
/// handler: its body is still type-checked.
fn fallback(mut item: ItemFn) -> TokenStream {
    item.sig.inputs = std::mem::take(&mut item.sig.inputs)
        .into_iter()
        .filter(|input| matches!(input, FnArg::Typed(_)))
        .collect();
    item.sig.variadic = None;
    quote!(#item)
}

/// The struct, its impls and the moved function.
fn generate(kind: Kind, args: &AttrArgs, item: ItemFn) -> TokenStream {
    let ItemFn {
        attrs,
        vis,
        mut sig,
        block,
    } = item;
    let krate = &args.krate;
    let name = sig.ident.clone();
    let inner = Ident::new(INNER, Span::call_site());
    sig.ident = inner.clone();

    // Docs and deprecation describe the struct users see (the impls allow its deprecation: a
    // warning belongs where the user names the handler, not where the macro does); `cfg` must remove every item; the
    // other attributes (`allow`, `tracing::instrument`...) belong to the function.
    let is = |attr: &syn::Attribute, names: &[&str]| names.iter().any(|n| attr.path().is_ident(n));
    let cfgs: Vec<_> = attrs.iter().filter(|a| is(a, &["cfg"])).collect();
    let outer: Vec<_> = attrs
        .iter()
        .filter(|a| is(a, &["doc", "deprecated", "cfg"]))
        .collect();
    let fn_attrs: Vec<_> = attrs
        .iter()
        .filter(|a| !is(a, &["doc", "deprecated"]))
        .collect();

    // Like rustc inside a deprecated item: the body of a deprecated handler does not warn about
    // deprecated items (the impl names the struct, which would warn otherwise).
    let inside_deprecated = attrs
        .iter()
        .any(|a| is(a, &["deprecated"]))
        .then(|| quote!(#[allow(deprecated)]));
    let types: Vec<&Type> = sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(arg) => Some(&*arg.ty),
            FnArg::Receiver(_) => None,
        })
        .collect();
    let output = match &sig.output {
        ReturnType::Default => quote!(()),
        ReturnType::Type(_, ty) => quote!(#ty),
    };
    let checks = checks(kind, krate, &types, &sig.output);
    // Spanned at the function's name: a handler that does not type-check is reported there.
    let method = Ident::new(kind.name(), name.span());
    let handler = Ident::new(INNER, name.span());
    // A missing or malformed event name was reported; "" keeps the expansion well-typed.
    let event = kind.takes_event().then(|| {
        args.name
            .clone()
            .unwrap_or_else(|| LitStr::new("", name.span()))
    });
    let event = event.iter();
    let register = quote_spanned! {name.span()=>
        ns.#method(#(#event,)* #name::#handler)
    };
    let params: Vec<Ident> = (0..types.len()).map(|i| format_ident!("arg{i}")).collect();
    let private = quote!(#krate::__private);

    quote! {
        #(#outer)*
        #[allow(non_camel_case_types)]
        #[derive(Clone, Copy, Debug)]
        #vis struct #name;

        #(#cfgs)*
        #inside_deprecated
        impl #name {
            #[doc(hidden)]
            #(#fn_attrs)*
            #sig #block
        }

        #(#cfgs)*
        #[allow(deprecated)]
        impl #krate::HandlerService for #name {
            fn register(self, ns: #krate::Namespace) -> #krate::Namespace {
                #checks
                #register
            }
        }

        #(#cfgs)*
        #[allow(deprecated)]
        impl #private::Deref for #name {
            type Target = fn(#(#types),*) -> #private::Pin<
                #private::Box<dyn #private::Future<Output = #output> + ::core::marker::Send>,
            >;

            fn deref(&self) -> &Self::Target {
                static CALL: <#name as #private::Deref>::Target =
                    |#(#params),*| #private::Box::pin(#name::#inner(#(#params),*));
                &CALL
            }
        }
    }
}

/// One call per argument type and one for the return type, each spanned at the user's type.
fn checks(kind: Kind, krate: &TokenStream, types: &[&Type], output: &ReturnType) -> TokenStream {
    let args = types.iter().map(|ty| {
        quote_spanned! {ty.span()=> #krate::__private::assert_extractor::<#ty>();}
    });
    let result_check = kind.result_check();
    let result = match output {
        ReturnType::Default => quote!(),
        ReturnType::Type(_, ty) => {
            quote_spanned! {ty.span()=> #krate::__private::#result_check::<#ty>();}
        }
    };
    quote!(#(#args)* #result)
}
