use sio_core::{SocketRef, on};

#[on("chat")]
async fn chat(
    _a: SocketRef, _b: SocketRef, _c: SocketRef, _d: SocketRef, _e: SocketRef, _f: SocketRef,
    _g: SocketRef, _h: SocketRef, _i: SocketRef, _j: SocketRef, _k: SocketRef, _l: SocketRef,
    _m: SocketRef, _n: SocketRef, _o: SocketRef, _p: SocketRef, _q: SocketRef,
) {
}

fn main() {}
