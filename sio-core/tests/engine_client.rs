//! The official `engine.io-client` (npm) against a bare sio Engine.IO echo server: polling,
//! WebSocket and upgrade, text and binary (tests/js/engine_client.mjs).

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;

use sio_core::engine::{Engine, EngineConfig};

#[test]
fn official_engineio_client() {
    engineio_client(common::Http::ActixWeb);
}

#[test]
fn official_engineio_client_on_sio_s_server() {
    engineio_client(common::Http::Sio);
}

fn engineio_client(http: common::Http) {
    let js = common::js_dir("engine.io-client");
    let addr = common::start_on(http, || {
        let engine = Engine::new(EngineConfig::default(), common::Echo);
        move |cfg: &mut actix_web::web::ServiceConfig| {
            cfg.service(engine.service());
        }
    });
    common::run_client(Path::new("node"), &js.join("engine_client.mjs"), addr, &[]);
}
