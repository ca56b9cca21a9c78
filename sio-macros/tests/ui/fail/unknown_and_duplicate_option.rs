use sio_core::on;

#[on("chat", acks = true)]
async fn chat() {}

#[on("ping", crate = "sio_core", crate = "sio_core")]
async fn ping() {}

#[on("pong", crate = 42)]
async fn pong() {}

fn main() {}
