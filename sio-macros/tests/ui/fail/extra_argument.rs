use sio_core::on;

#[on("chat", "message")]
async fn chat() {}

fn main() {}
