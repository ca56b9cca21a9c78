use sio_core::{AckSender, Args, Data, on};

#[on("chat")]
async fn chat(Data(text): Data<String>, args: Args, first: AckSender, second: AckSender) {
    let _ = (text, args, first, second);
}

fn main() {}
