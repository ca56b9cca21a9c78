use sio_core::on;

#[on("count")]
async fn count() -> usize {
    42
}

fn main() {}
