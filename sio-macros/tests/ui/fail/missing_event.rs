use sio_core::on;

#[on]
async fn chat() {}

fn main() {}
