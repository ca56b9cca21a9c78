use sio_core::{on_connect, middleware};

#[on_connect("/chat")]
async fn connected() {}

#[middleware(first)]
async fn auth() -> Result<(), String> {
    Ok(())
}

fn main() {}
