use sio_core::namespace;

#[namespace("chat")]
mod chat {}

#[namespace]
mod other {}

fn main() {}
