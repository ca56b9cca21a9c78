use sio_core::on;

struct Chat;

impl Chat {
    #[on("chat")]
    async fn chat(&self) {}
}

fn main() {}
