use sio_core::on;

#[on("a")]
const fn a() {}

#[on("b")]
async unsafe fn b() {}

#[on("c")]
async extern "C" fn c() {}

fn main() {}
