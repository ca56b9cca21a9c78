use sio_core::{on, on_connect};

#[on("chat")]
#[on("message")]
async fn chat() {}

#[on("hello")]
#[on_connect]
async fn hello() {}

fn main() {}
