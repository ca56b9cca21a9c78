//! Parses the attribute's arguments, `("chat", crate = "path")`, into [`AttrArgs`].

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Token};

use crate::ctxt::Ctxt;

/// The only `key = value` option, as in `#[tokio::main(crate = "...")]`: where sio-core is, for
/// crates that re-export it under another name.
const CRATE: &str = "crate";

/// What the attribute said.
pub(crate) struct AttrArgs {
    /// The event name or namespace path, when the attribute takes one and it was given.
    pub(crate) name: Option<LitStr>,
    /// The path to sio-core, `::sio_core` unless `crate = "..."` says otherwise.
    pub(crate) krate: TokenStream,
}

/// One comma-separated argument.
enum Arg {
    Positional(Expr),
    Option(Ident, Expr),
}

fn parse_arg(input: ParseStream<'_>) -> syn::Result<Arg> {
    if input.peek(Ident::peek_any) && input.peek2(Token![=]) && !input.peek2(Token![==]) {
        let key = Ident::parse_any(input)?;
        input.parse::<Token![=]>()?;
        return Ok(Arg::Option(key, input.parse()?));
    }
    Ok(Arg::Positional(input.parse()?))
}

fn parse_list(input: ParseStream<'_>) -> syn::Result<Vec<Arg>> {
    let list = input.parse_terminated(parse_arg, Token![,])?;
    Ok(list.into_iter().collect())
}

/// Parses the arguments of `#[macro_name(...)]`; `positional` names the one string it takes
/// ("event name", "namespace path"), if it takes one, and `example` shows it.
pub(crate) fn parse(
    cx: &mut Ctxt,
    macro_name: &str,
    positional: Option<(&str, &str)>,
    tokens: TokenStream,
) -> AttrArgs {
    let mut args = AttrArgs {
        name: None,
        krate: quote!(::sio_core),
    };
    let list = match parse_list.parse2(tokens) {
        Ok(list) => list,
        Err(err) => {
            cx.push(err);
            return args;
        }
    };
    let mut krate_seen = false;
    let mut positionals = 0;
    for arg in list {
        match arg {
            Arg::Positional(expr) => {
                positionals += 1;
                match (positional, positionals, &expr) {
                    (Some(_), 1, Expr::Lit(ExprLit { lit: Lit::Str(lit), .. })) => {
                        args.name = Some(lit.clone());
                    }
                    (Some((what, example)), 1, _) => cx.error_spanned_by(
                        &expr,
                        format!("the {what} must be a string literal, like `#[{macro_name}({example})]`"),
                    ),
                    (Some((what, _)), _, _) => cx.error_spanned_by(
                        &expr,
                        format!("unexpected argument: `#[{macro_name}]` takes one {what}"),
                    ),
                    (None, _, _) => cx.error_spanned_by(
                        &expr,
                        format!("unexpected argument: `#[{macro_name}]` takes no arguments (only the option `crate = \"...\"`)"),
                    ),
                }
            }
            Arg::Option(key, value) if key == CRATE => {
                if krate_seen {
                    cx.error_spanned_by(&key, format!("duplicate `{CRATE}` option"));
                    continue;
                }
                krate_seen = true;
                match crate_path(&value) {
                    Some(path) => args.krate = path,
                    None => cx.error_spanned_by(
                        &value,
                        "`crate` must be a path in a string literal, like `crate = \"my_app::sio\"`",
                    ),
                }
            }
            Arg::Option(key, _) => cx.error_spanned_by(
                &key,
                format!("unknown `#[{macro_name}]` option `{key}`; the only option is `{CRATE}`"),
            ),
        }
    }
    if let (Some((what, example)), None) = (positional, &args.name)
        && positionals == 0
    {
        cx.error_at(
            Span::call_site(),
            format!("`#[{macro_name}]` needs the {what}, like `#[{macro_name}({example})]`"),
        );
    }
    args
}

/// The path of `crate = "..."`, spanned at the string so that an error about it lands there.
fn crate_path(value: &Expr) -> Option<TokenStream> {
    let Expr::Lit(ExprLit {
        lit: Lit::Str(lit), ..
    }) = value
    else {
        return None;
    };
    let path: syn::Path = lit.parse().ok()?;
    Some(quote!(#path))
}
