//! The rules a handler function must follow, one small function each, all reporting into the
//! [`Ctxt`] so that every broken rule shows up in one compile.

use quote::ToTokens as _;
use syn::{FnArg, ItemFn, LitStr, Pat, Type};

use crate::ctxt::Ctxt;
use crate::kind::{Kind, ONCE, TAKE_ARGS, unavailable};

/// At most 16 arguments: `Handler` is implemented for tuples up to 16.
const MAX_ARGS: usize = 16;

/// Event names that Socket.IO keeps for itself, with what to do instead. A client cannot emit
/// them (or they mean something else), so a handler for one would never run.
const RESERVED: &[(&str, &str)] = &[
    ("connect", "use `#[on_connect]` for a new connection"),
    (
        "connect_error",
        "refuse a connection from a `#[middleware]`",
    ),
    ("disconnect", "use `#[on_disconnect]`"),
    ("disconnecting", "use `#[on_disconnecting]`"),
    ("newListener", "it is an event of Node's EventEmitter"),
    ("removeListener", "it is an event of Node's EventEmitter"),
];

/// Checks an event name: a client must be able to emit it.
pub(crate) fn event_name(cx: &mut Ctxt, name: &LitStr) {
    let value = name.value();
    if value.is_empty() {
        cx.error_spanned_by(name, "the event name cannot be empty");
    } else if let Some((_, hint)) = RESERVED.iter().find(|(reserved, _)| *reserved == value) {
        cx.error_spanned_by(
            name,
            format!("`{value}` is a reserved Socket.IO event name: {hint}"),
        );
    }
}

/// Checks a namespace path: the clients name namespaces with a leading `/`.
pub(crate) fn namespace_path(cx: &mut Ctxt, path: &LitStr) {
    if !path.value().starts_with('/') {
        cx.error_spanned_by(
            path,
            "a namespace path starts with `/`, like `\"/\"` or `\"/chat\"`",
        );
    }
}

/// Checks everything about the function itself; true when sio can call it.
pub(crate) fn function(cx: &mut Ctxt, kind: Kind, item: &ItemFn) -> bool {
    let mut ok = true;
    let sig = &item.sig;
    // Each of these makes the function something sio cannot call like a handler.
    if let Some(token) = &sig.constness {
        cx.error_spanned_by(token, "a handler cannot be a `const fn`");
        ok = false;
    }
    if sig.asyncness.is_none() {
        cx.error_spanned_by(
            sig.fn_token,
            format!("`#[{}]` handlers must be `async fn`", kind.name()),
        );
        ok = false;
    }
    if let Some(token) = &sig.unsafety {
        cx.error_spanned_by(
            token,
            "a handler cannot be `unsafe`: sio calls it without knowing its safety contract",
        );
        ok = false;
    }
    if let Some(abi) = &sig.abi {
        cx.error_spanned_by(
            abi,
            "a handler cannot be `extern`: sio calls it as a Rust fn",
        );
        ok = false;
    }
    if !sig.generics.params.is_empty() {
        cx.error_spanned_by(
            &sig.generics,
            "a handler cannot be generic: sio extracts each argument by its concrete type",
        );
        ok = false;
    }
    if let Some(clause) = &sig.generics.where_clause {
        cx.error_spanned_by(clause, "a handler cannot have a `where` clause");
        ok = false;
    }
    if let Some(variadic) = &sig.variadic {
        cx.error_spanned_by(variadic, "a handler cannot be variadic");
        ok = false;
    }
    for input in &sig.inputs {
        if let FnArg::Receiver(receiver) = input {
            cx.error_spanned_by(
                receiver,
                "a handler cannot take `self`: it is a free function; share data with `State<T>`",
            );
            ok = false;
        }
    }
    if let Some(extra) = sig.inputs.iter().nth(MAX_ARGS) {
        cx.error_spanned_by(
            extra,
            format!("a handler takes at most {MAX_ARGS} arguments"),
        );
        ok = false;
    }
    // `()` could not refuse a connection, so a middleware that returns it is a mistake.
    if kind == Kind::Middleware && matches!(sig.output, syn::ReturnType::Default) {
        cx.error_spanned_by(
            &sig.ident,
            "a `#[middleware]` returns `Result<(), E>` (`E: Into<ConnectError>`): `Ok(())` lets the connection through, `Err` refuses it",
        );
    }
    duplicate_attributes(cx, kind, item);
    extractors(cx, kind, item);
    bindings_named_like(cx, item, &[&sig.ident]);
    ok
}

/// A second sio attribute would register the function twice (or as two kinds of handler),
/// which is never what was meant.
fn duplicate_attributes(cx: &mut Ctxt, kind: Kind, item: &ItemFn) {
    for attr in &item.attrs {
        match Kind::of_attr(attr) {
            Some(other) if other == kind => cx.error_spanned_by(
                attr,
                format!(
                    "duplicate `#[{}]` attribute: write one handler per event",
                    kind.name()
                ),
            ),
            Some(other) => cx.error_spanned_by(
                attr,
                format!(
                    "a function takes one sio attribute; this `#[{}]` conflicts with `#[{}]`",
                    other.name(),
                    kind.name()
                ),
            ),
            None => {}
        }
    }
}

/// Checks by name what the type system cannot see: an extractor this kind of handler never
/// gets, or two extractors that take the same thing (the second would get nothing).
fn extractors(cx: &mut Ctxt, kind: Kind, item: &ItemFn) {
    let mut takes_args: Option<String> = None;
    let mut seen: Vec<String> = Vec::new();
    for input in &item.sig.inputs {
        let FnArg::Typed(arg) = input else { continue };
        let Some(name) = type_name(&arg.ty) else {
            continue;
        };
        if let Some(why) = unavailable(kind, &name) {
            cx.error_spanned_by(&arg.ty, why);
        }
        if TAKE_ARGS.contains(&name.as_str()) {
            if let Some(first) = &takes_args {
                cx.error_spanned_by(
                    &arg.ty,
                    format!(
                        "`{first}` already takes the event's arguments: this `{name}` would get none"
                    ),
                );
            }
            takes_args = Some(name.clone());
        }
        if ONCE.contains(&name.as_str()) && seen.contains(&name) {
            cx.error_spanned_by(
                &arg.ty,
                format!("`{name}` can be taken once: the second one would be empty"),
            );
        }
        seen.push(name);
    }
}

/// The last segment of a type's path: `Data` for `sio_core::Data<Msg>`.
fn type_name(ty: &Type) -> Option<String> {
    match ty {
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .map(|segment| segment.ident.to_token_stream().to_string()),
        _ => None,
    }
}

/// The generated unit struct takes the handler's name in the value namespace, where a pattern
/// resolves a bare name before binding it: `Data(chat)` in (or next to) the handler `chat`
/// would match against the struct instead of binding. Said here in words rather than left to
/// rustc's "interpreted as a unit struct".
pub(crate) fn bindings_named_like(cx: &mut Ctxt, item: &ItemFn, handlers: &[&syn::Ident]) {
    for input in &item.sig.inputs {
        if let FnArg::Typed(arg) = input {
            pattern_bindings(cx, &arg.pat, handlers);
        }
    }
}

fn pattern_bindings(cx: &mut Ctxt, pat: &Pat, handlers: &[&syn::Ident]) {
    match pat {
        Pat::Ident(binding) => {
            if handlers.contains(&&binding.ident) {
                cx.error_spanned_by(
                    &binding.ident,
                    format!(
                        "this binding has the name of the handler `{0}`, whose generated struct would take its place in the pattern; rename the binding",
                        binding.ident
                    ),
                );
            }
            if let Some((_, sub)) = &binding.subpat {
                pattern_bindings(cx, sub, handlers);
            }
        }
        Pat::TupleStruct(p) => p
            .elems
            .iter()
            .for_each(|p| pattern_bindings(cx, p, handlers)),
        Pat::Tuple(p) => p
            .elems
            .iter()
            .for_each(|p| pattern_bindings(cx, p, handlers)),
        Pat::Struct(p) => p
            .fields
            .iter()
            .for_each(|field| pattern_bindings(cx, &field.pat, handlers)),
        Pat::Slice(p) => p
            .elems
            .iter()
            .for_each(|p| pattern_bindings(cx, p, handlers)),
        Pat::Reference(p) => pattern_bindings(cx, &p.pat, handlers),
        Pat::Paren(p) => pattern_bindings(cx, &p.pat, handlers),
        Pat::Type(p) => pattern_bindings(cx, &p.pat, handlers),
        _ => {}
    }
}
