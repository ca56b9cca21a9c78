//! Any extractor, in any order.

use sio_core::{AckSender, Args, Auth, Bin, Data, Event, Namespace, SocketIo, SocketRef, State, on};

#[derive(Clone)]
struct Db;

#[on("upload")]
async fn upload(
    ack: AckSender,
    Bin(files): Bin,
    State(db): State<Db>,
    Event(event): Event,
    socket: SocketRef,
    Data(name): Data<String>,
    Auth(user): Auth<String>,
) {
    let _ = (files, db, event, socket, name, user);
    let _ = ack.send(&true);
}

#[on("raw")]
async fn raw(Args(args): Args, socket: SocketRef) {
    let _ = socket.emit("raw", &Args(args));
}

fn main() {
    let ns = Namespace::new("/").service(upload).service(raw);
    let io = SocketIo::builder().with_state(Db).namespace(ns).build();
    let _ = io;
}
