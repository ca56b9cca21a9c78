use sio_core::on;

#[on("")]
async fn nothing() {}

fn main() {}
