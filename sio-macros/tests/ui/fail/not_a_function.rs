use sio_core::on;

#[on("chat")]
struct Chat;

fn main() {}
