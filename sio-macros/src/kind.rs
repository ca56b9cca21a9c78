//! The attribute macros and what each one allows.

use proc_macro2::{Ident, Span};

/// Which attribute a handler carries, i.e. which `Namespace` method registers it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Kind {
    On,
    OnAny,
    OnConnect,
    OnDisconnect,
    OnDisconnecting,
    OnServerEvent,
    Middleware,
}

impl Kind {
    pub(crate) const ALL: [Kind; 7] = [
        Kind::On,
        Kind::OnAny,
        Kind::OnConnect,
        Kind::OnDisconnect,
        Kind::OnDisconnecting,
        Kind::OnServerEvent,
        Kind::Middleware,
    ];

    /// The attribute's name, which is also the `Namespace` method that registers the handler.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::On => "on",
            Kind::OnAny => "on_any",
            Kind::OnConnect => "on_connect",
            Kind::OnDisconnect => "on_disconnect",
            Kind::OnDisconnecting => "on_disconnecting",
            Kind::OnServerEvent => "on_server_event",
            Kind::Middleware => "middleware",
        }
    }

    /// The kind whose attribute is spelled `name` (the last segment of its path).
    pub(crate) fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// The kind of a sio attribute, `#[on(..)]` or `#[sio_core::on(..)]`. Only the last segment
    /// is looked at: the attribute may be imported under any path.
    pub(crate) fn of_attr(attr: &syn::Attribute) -> Option<Kind> {
        let last = attr.path().segments.last()?;
        Kind::from_name(&last.ident.to_string())
    }

    /// Whether the attribute takes an event name: `#[on("chat")]`.
    pub(crate) fn takes_event(self) -> bool {
        matches!(self, Kind::On | Kind::OnServerEvent)
    }

    /// Whether a namespace keeps one handler of this kind, a second replacing the first.
    pub(crate) fn is_single(self) -> bool {
        !matches!(self, Kind::On | Kind::OnServerEvent | Kind::Middleware)
    }

    /// The `__private` check that the return type is allowed.
    pub(crate) fn result_check(self) -> Ident {
        let name = match self {
            Kind::Middleware => "assert_middleware_result",
            _ => "assert_handler_result",
        };
        Ident::new(name, Span::call_site())
    }
}

/// The handlers that run for a socket (all but server-side events).
const WITH_SOCKET: &[Kind] = &[
    Kind::On,
    Kind::OnAny,
    Kind::OnConnect,
    Kind::OnDisconnect,
    Kind::OnDisconnecting,
    Kind::Middleware,
];

/// The handlers that get arguments: events, and the auth payload on connect.
const WITH_ARGS: &[Kind] = &[
    Kind::On,
    Kind::OnAny,
    Kind::OnServerEvent,
    Kind::OnConnect,
    Kind::Middleware,
];

/// The handlers of events.
const EVENTS: &[Kind] = &[Kind::On, Kind::OnAny, Kind::OnServerEvent];

/// The extractors that only some kinds of handler get (the others fail at run time: the value
/// is not in the context). Checked by name, so an alias escapes the check and fails at run time
/// with a `sio::rejection` log instead.
const RESTRICTED: &[(&str, &[Kind])] = &[
    ("SocketRef", WITH_SOCKET),
    ("Auth", WITH_SOCKET),
    ("Data", WITH_ARGS),
    ("TryData", WITH_ARGS),
    ("Args", WITH_ARGS),
    // Server-side events carry no attachments.
    ("Bin", &[Kind::On, Kind::OnAny]),
    ("AckSender", EVENTS),
    ("Event", EVENTS),
    (
        "DisconnectReason",
        &[Kind::OnDisconnect, Kind::OnDisconnecting],
    ),
];

/// Why the extractor named `name` cannot be used in a handler of `kind`, if it cannot.
pub(crate) fn unavailable(kind: Kind, name: &str) -> Option<String> {
    let (_, kinds) = RESTRICTED.iter().find(|(n, _)| *n == name)?;
    if kinds.contains(&kind) {
        return None;
    }
    let allowed: Vec<String> = kinds.iter().map(|k| format!("`#[{}]`", k.name())).collect();
    Some(format!(
        "`{name}` is not available in `#[{}]` handlers, only in {} handlers",
        kind.name(),
        allowed.join(", ")
    ))
}

/// Extractors that take the same part of the context: the second one would get nothing.
pub(crate) const TAKE_ARGS: &[&str] = &["Data", "TryData", "Args"];

/// Extractors that make sense once per handler.
pub(crate) const ONCE: &[&str] = &["Bin", "AckSender"];
