use sio_core::{Data, on};

#[on("chat")]
async fn chat<T: serde::de::DeserializeOwned>(Data(msg): Data<T>) {
    let _ = msg;
}

fn main() {}
