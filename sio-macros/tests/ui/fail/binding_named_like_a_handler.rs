use sio_core::{Data, namespace};

#[namespace("/chat")]
mod chat {
    use sio_core::{Data, on};

    #[on("msg")]
    async fn msg(Data(text): Data<String>) {
        let _ = text;
    }

    #[on("typing")]
    async fn typing(Data(msg): Data<String>) {
        let _ = msg;
    }
}

#[sio_core::on("name")]
async fn name(Data(name): Data<String>) {
    let _ = name;
}

fn main() {}
