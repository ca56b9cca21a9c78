//! The expansion of `#[namespace("/chat")] mod chat { ... }`: a `namespace()` function in the
//! module that registers each handler of the module, in the order written (the order matters
//! for middlewares).

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Item, ItemFn, ItemMod, LitStr};

use crate::attr;
use crate::check;
use crate::ctxt::Ctxt;
use crate::kind::Kind;

/// A handler found in the module.
struct Found<'a> {
    kind: Kind,
    item: &'a ItemFn,
    attr: &'a syn::Attribute,
    event: Option<String>,
}

pub(crate) fn namespace(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut cx = Ctxt::default();
    let args = attr::parse(
        &mut cx,
        "namespace",
        Some(("namespace path", "\"/chat\"")),
        attr,
    );
    if let Some(path) = &args.name {
        check::namespace_path(&mut cx, path);
    }
    let message = "`#[namespace]` goes on an inline module: `mod chat { ... }`";
    let Some(mut module) = cx.parse_item::<ItemMod>(item, message) else {
        return cx.into_compile_errors();
    };
    let Some((_, items)) = &mut module.content else {
        // Attribute macros cannot see into `mod chat;` (its file is read later).
        cx.error_spanned_by(
            &module,
            "`#[namespace]` needs the handlers inline: `mod chat { ... }`",
        );
        let errors = cx.into_compile_errors();
        return quote!(#module #errors);
    };
    let found = handlers(items);
    conflicts(&mut cx, &found);
    // A handler's own name is checked when it expands; here, the names of the others.
    for handler in &found {
        let others: Vec<&syn::Ident> = found
            .iter()
            .map(|other| &other.item.sig.ident)
            .filter(|other| **other != handler.item.sig.ident)
            .collect();
        check::bindings_named_like(&mut cx, handler.item, &others);
    }

    let krate = &args.krate;
    let path = args
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new("/", proc_macro2::Span::call_site()));
    let doc = format!(
        " The `{}` namespace, with the handlers of this module.",
        path.value()
    );
    let services = found.iter().map(|handler| {
        let name = &handler.item.sig.ident;
        let cfgs = handler
            .item
            .attrs
            .iter()
            .filter(|attr| attr.path().is_ident("cfg"));
        quote! {
            #(#cfgs)*
            let ns = ns.service(#name);
        }
    });
    let function: Item = syn::parse_quote! {
        #[doc = #doc]
        pub fn namespace() -> #krate::Namespace {
            let ns = #krate::Namespace::new(#path);
            #(#services)*
            ns
        }
    };
    items.push(function);
    let errors = cx.into_compile_errors();
    quote!(#module #errors)
}

/// The functions of the module that carry a sio attribute, in order.
fn handlers(items: &[Item]) -> Vec<Found<'_>> {
    items
        .iter()
        .filter_map(|item| match item {
            Item::Fn(item) => item.attrs.iter().find_map(|attr| {
                let kind = Kind::of_attr(attr)?;
                Some(Found {
                    kind,
                    item,
                    attr,
                    event: kind.takes_event().then(|| event_of(attr)).flatten(),
                })
            }),
            _ => None,
        })
        .collect()
}

/// The event name of `#[on("name")]`; a malformed attribute reports its own error when it
/// expands, so here it is just skipped.
fn event_of(attr: &syn::Attribute) -> Option<String> {
    let list = attr.meta.require_list().ok()?;
    let first = list
        .parse_args_with(|input: syn::parse::ParseStream<'_>| {
            let lit: LitStr = input.parse()?;
            input.parse::<TokenStream>()?;
            Ok(lit)
        })
        .ok()?;
    Some(first.value())
}

/// A namespace keeps one handler per event (and one connect, disconnect... handler): a second
/// one silently replaces the first at run time, so it is an error here. Handlers under `cfg`
/// are skipped, since two of them may be exclusive.
fn conflicts(cx: &mut Ctxt, found: &[Found<'_>]) {
    let active: Vec<&Found<'_>> = found
        .iter()
        .filter(|f| !f.item.attrs.iter().any(|a| a.path().is_ident("cfg")))
        .collect();
    for (i, later) in active.iter().enumerate() {
        let Some(first) = active.iter().take(i).find(|earlier| {
            earlier.kind == later.kind
                && (later.kind.is_single()
                    || (later.event.is_some() && earlier.event == later.event))
        }) else {
            continue;
        };
        let what = match &later.event {
            Some(event) if !later.kind.is_single() => format!("the event `{event}`"),
            _ => format!("`#[{}]`", later.kind.name()),
        };
        cx.error_spanned_by(
            later.attr,
            format!(
                "{what} already has a handler in this namespace, `{}`: a namespace keeps one",
                first.item.sig.ident
            ),
        );
    }
}
