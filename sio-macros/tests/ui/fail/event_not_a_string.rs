use sio_core::on;

#[on(chat)]
async fn chat() {}

#[on(42)]
async fn answer() {}

fn main() {}
