//! Expansion snapshots: representative handlers expanded, pretty-printed and compared with the
//! files in `tests/expand/`. `SIO_SNAPSHOTS=overwrite cargo test -p sio-macros` rewrites them
//! (like trybuild's `TRYBUILD=overwrite`); review the diff before committing it.

use std::path::PathBuf;

use proc_macro2::TokenStream;
use quote::quote;

use crate::kind::Kind;

fn assert_snapshot(name: &str, expanded: TokenStream) {
    let file: syn::File = syn::parse2(expanded).unwrap_or_else(|err| panic!("{name}: {err}"));
    let pretty = prettyplease::unparse(&file);
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!("tests/expand/{name}.rs"));
    if std::env::var_os("SIO_SNAPSHOTS").is_some_and(|v| v == "overwrite") {
        std::fs::write(&path, &pretty).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        expected == pretty,
        "the expansion of {name} changed; run with SIO_SNAPSHOTS=overwrite and review tests/expand/{name}.rs\n\n{pretty}"
    );
}

#[test]
fn on_with_data_and_ack_result() {
    let expanded = crate::expand::handler(
        Kind::On,
        quote!("chat"),
        quote! {
            /// Relays a message.
            pub async fn chat(socket: SocketRef, Data(msg): Data<Msg>) -> Result<usize, String> {
                socket.to(msg.room).emit("chat", &msg.text).map_err(|e| e.to_string())?;
                Ok(msg.text.len())
            }
        },
    );
    assert_snapshot("on_with_data_and_ack_result", expanded);
}

#[test]
fn on_connect_without_arguments() {
    let expanded = crate::expand::handler(
        Kind::OnConnect,
        quote!(),
        quote! {
            #[allow(unused_variables)]
            async fn hello() {}
        },
    );
    assert_snapshot("on_connect_without_arguments", expanded);
}

#[test]
fn middleware_with_crate_path() {
    let expanded = crate::expand::handler(
        Kind::Middleware,
        quote!(crate = "my_app::sio"),
        quote! {
            pub(crate) async fn auth(Auth(token): Auth<String>) -> Result<(), ConnectError> {
                if token.is_empty() { Err(ConnectError::new("no token")) } else { Ok(()) }
            }
        },
    );
    assert_snapshot("middleware_with_crate_path", expanded);
}

#[test]
fn errors_are_all_reported() {
    let expanded = crate::expand::handler(
        Kind::On,
        quote!("connect", acks = true),
        quote! {
            fn chat<T>(&self, reason: DisconnectReason) {}
        },
    );
    assert_snapshot("errors_are_all_reported", expanded);
}

#[test]
fn namespace_module() {
    let expanded = crate::namespace::namespace(
        quote!("/chat"),
        quote! {
            mod chat {
                use sio_core::{on, on_connect, middleware};

                #[middleware]
                async fn auth() -> Result<(), String> { Ok(()) }

                #[on_connect]
                async fn join(socket: SocketRef) { socket.join("lobby"); }

                #[cfg(feature = "debug")]
                #[sio_core::on("debug")]
                async fn debug() {}

                fn helper() {}
            }
        },
    );
    assert_snapshot("namespace_module", expanded);
}
