//! Emits into a cluster from the command line, with `sio_redis::Emitter` (no server): what a
//! worker or a cron job does.
//!
//! ```text
//! emit [--redis URL] [--nsp NS] [--to ROOM]... [--except ROOM]... [--binary] emit EVENT JSON
//! emit [--redis URL] [--nsp NS] [--to ROOM]... join ROOM
//! emit [--redis URL] [--nsp NS] sse EVENT JSON
//! ```
//! `--binary` adds `bin` = bytes `00 01 02 03 fd fe ff` to the JSON object. A `rediss://` URL
//! trusts the CA in the PEM file `REDIS_CA` besides the system's roots, as `interop-server`.

use bytes::Bytes;
use serde_json::{Value, json};
use sio_redis::{Emitter, RedisConfig, TlsConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    if let Err(err) = run(std::env::args().skip(1).collect()).await {
        eprintln!("emit: {err}");
        std::process::exit(1);
    }
}

async fn run(args: Vec<String>) -> Result<(), Box<dyn std::error::Error>> {
    let mut args = args.into_iter();
    let (mut redis, mut nsp) = ("redis://127.0.0.1:6379".to_owned(), "/".to_owned());
    let (mut to, mut except, mut binary) = (Vec::new(), Vec::new(), false);
    let mut rest = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--redis" => redis = value()?,
            "--nsp" => nsp = value()?,
            "--to" => to.push(value()?),
            "--except" => except.push(value()?),
            "--binary" => binary = true,
            _ => rest.push(arg),
        }
    }
    let mut config = RedisConfig::new(&redis);
    if let Ok(ca) = std::env::var("REDIS_CA")
        && !ca.is_empty()
        && redis.starts_with("rediss")
    {
        config = config.tls(TlsConfig::new().ca_file(ca));
    }
    let emitter = Emitter::new(config)?.of(&nsp).to(to).except(except);
    let parse = |json: Option<&String>| -> Result<Value, serde_json::Error> {
        json.map_or(Ok(Value::Null), |j| serde_json::from_str(j))
    };
    match rest.first().map(String::as_str) {
        Some("emit") => {
            let event = rest.get(1).ok_or("emit needs an event")?;
            let mut data = parse(rest.get(2))?;
            let emitter = if binary {
                data["bin"] = json!({"_placeholder": true, "num": 0});
                emitter.bin(vec![Bytes::from_static(&[0, 1, 2, 3, 0xfd, 0xfe, 0xff])])
            } else {
                emitter
            };
            emitter.emit(event, &data).await?;
        }
        Some("join") => {
            let room = rest.get(1).ok_or("join needs a room")?;
            emitter.sockets_join(room.as_str()).await?;
        }
        Some("sse") => {
            let event = rest.get(1).ok_or("sse needs an event")?;
            emitter
                .server_side_emit(event, &parse(rest.get(2))?)
                .await?;
        }
        _ => {
            return Err(
                "usage: emit [options] (emit EVENT JSON | join ROOM | sse EVENT JSON)".into(),
            );
        }
    }
    Ok(())
}
