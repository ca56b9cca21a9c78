//! Load generator for the bench-server contract (`shared/protocol/bench-server.md`): Socket.IO v5
//! clients over direct Engine.IO v4 websockets. Each run prints one JSON object on one line.
//!
//! ```text
//! loadgen connect --clients N [--pid PID] [--settle-ms 1000]
//!     connects/s for N clients (each connects, then stays connected and idle); with the server's
//!     PID, its VmRSS before the first and after the last connection, and the difference per client
//! loadgen echo --clients N --inflight K [--duration-s 5] [--warmup-s 1]
//!     every client keeps K `echo` acks in flight: acks/s and ack latency p50/p99
//! loadgen fanout --clients N --rate R [--duration-s 5] [--warmup-s 1]
//!     N receivers; one more client emits `broadcast` R times a second: deliveries/s and
//!     latency p50/p99 from the payload's send timestamp to each receipt
//! common: --addr 127.0.0.1:3000 --ns / --concurrency 64 (connects at once) --pad 32 (payload
//!         padding bytes) --timeout-s 10 (per connect, per wait for an ack, and the drain)
//!         --pid PID (also reports the server's CPU time over the run, and for echo and fanout
//!         over the measured window: `window_cpu_ms`, `cpu_us_per_op` per ack or delivery)
//! ```
//!
//! Everything is bounded: connects and waits time out, sends stop at the end of the duration, and
//! a run ends at the latest `timeout-s` after that.

mod client;
mod stats;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use client::{Client, now_us, payload, payload_t};
use stats::{Json, Latencies, ProcSample};

struct Args {
    scenario: String,
    flags: HashMap<String, String>,
}

impl Args {
    fn parse() -> Result<Args, String> {
        let mut args = std::env::args().skip(1);
        let scenario = args
            .next()
            .ok_or("missing scenario: connect, echo or fanout")?;
        let mut flags = HashMap::new();
        while let Some(flag) = args.next() {
            let name = flag
                .strip_prefix("--")
                .ok_or_else(|| format!("expected --flag, got {flag}"))?;
            let value = args
                .next()
                .ok_or_else(|| format!("--{name} needs a value"))?;
            flags.insert(name.to_owned(), value);
        }
        Ok(Args { scenario, flags })
    }

    fn get<T: FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.flags.get(name) {
            None => Ok(default),
            Some(v) => v.parse().map_err(|_| format!("--{name}: cannot parse {v}")),
        }
    }
}

/// What every scenario needs.
#[derive(Clone)]
struct Common {
    addr: Arc<str>,
    ns: Arc<str>,
    concurrency: usize,
    timeout: Duration,
    padding: Arc<str>,
    pid: Option<u32>,
}

fn main() {
    let result = Args::parse().and_then(|args| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("tokio runtime: {e}"))?;
        runtime.block_on(run(args))
    });
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("loadgen: {e}");
            std::process::exit(1);
        }
    }
}

async fn run(args: Args) -> Result<String, String> {
    let common = Common {
        addr: args.get("addr", "127.0.0.1:3000".to_owned())?.into(),
        ns: args.get("ns", "/".to_owned())?.into(),
        concurrency: args.get("concurrency", 64usize)?.max(1),
        timeout: Duration::from_secs(args.get("timeout-s", 10u64)?),
        padding: "x".repeat(args.get("pad", 32usize)?).into(),
        pid: args
            .flags
            .get("pid")
            .map(|p| p.parse())
            .transpose()
            .map_err(|_| "--pid: not a number")?,
    };
    let clients: usize = args.get("clients", 1000)?;
    let duration = Duration::from_secs_f64(args.get("duration-s", 5.0)?);
    let warmup = Duration::from_secs_f64(args.get("warmup-s", 1.0)?);
    let mut json = Json::new(&args.scenario);
    json.num("clients", clients as f64);
    let before = common.pid.map(ProcSample::read).transpose()?;
    let started = Instant::now();
    match args.scenario.as_str() {
        "connect" => {
            let settle = Duration::from_millis(args.get("settle-ms", 1000u64)?);
            connect(&common, clients, settle, &mut json).await?;
        }
        "echo" => {
            let inflight: usize = args.get("inflight", 1)?;
            json.num("inflight", inflight as f64);
            echo(
                &common,
                clients,
                inflight.max(1),
                warmup,
                duration,
                &mut json,
            )
            .await?;
        }
        "fanout" => {
            let rate: f64 = args.get("rate", 10.0)?;
            json.num("rate", rate);
            fanout(&common, clients, rate, warmup, duration, &mut json).await?;
        }
        other => return Err(format!("unknown scenario {other}: connect, echo or fanout")),
    }
    if let (Some(pid), Some(before)) = (common.pid, before) {
        let after = ProcSample::read(pid)?;
        json.num(
            "server_cpu_ms",
            after.cpu_ms.saturating_sub(before.cpu_ms) as f64,
        );
        json.num("server_rss_kb", after.rss_kb as f64);
    }
    // Near the run's length, the load generator's own core was the limit, not the server.
    let own = ProcSample::read(std::process::id())?;
    json.num("loadgen_cpu_ms", own.cpu_ms as f64);
    json.num("loadgen_seconds", started.elapsed().as_secs_f64());
    Ok(json.finish())
}

/// Receivers that stay connected, answer pings and record `bcast` latencies until told to stop.
struct Crowd {
    stop: watch::Sender<bool>,
    tasks: JoinSet<Latencies>,
    connected: usize,
    failed: usize,
    /// `bcast` packets received by the whole crowd.
    delivered: Arc<AtomicU64>,
}

impl Crowd {
    /// Connects `n` clients, `common.concurrency` at a time; returns once each has connected or
    /// failed. `record_from` (µs since the epoch): latencies of payloads stamped earlier are not
    /// recorded (warm-up), though still counted as delivered.
    async fn connect(common: &Common, n: usize, record_from: Arc<AtomicU64>) -> Crowd {
        let (stop, stopped) = watch::channel(false);
        let (done_tx, mut done_rx) = mpsc::unbounded_channel::<bool>();
        let permits = Arc::new(tokio::sync::Semaphore::new(common.concurrency));
        let delivered = Arc::new(AtomicU64::new(0));
        let mut tasks = JoinSet::new();
        for _ in 0..n {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (common, done, delivered) = (common.clone(), done_tx.clone(), delivered.clone());
            let (mut stopped, record_from) = (stopped.clone(), record_from.clone());
            tasks.spawn(async move {
                let mut latencies = Latencies::default();
                let client = Client::connect(&common.addr, &common.ns, common.timeout).await;
                drop(permit);
                let _ = done.send(client.is_ok());
                let Ok(mut client) = client else {
                    return latencies;
                };
                loop {
                    tokio::select! {
                        _ = stopped.changed() => break,
                        packet = client.next_text() => {
                            let Ok(packet) = packet else { break };
                            let Some(args) = client.event_args(&packet) else { continue };
                            if !args.starts_with("[\"bcast\"") {
                                continue;
                            }
                            delivered.fetch_add(1, Ordering::Relaxed);
                            if let Some(t) = payload_t(args)
                                && t >= record_from.load(Ordering::Relaxed)
                            {
                                latencies.record_us(now_us().saturating_sub(t));
                            }
                        }
                    }
                }
                client.close().await;
                latencies
            });
        }
        drop(done_tx);
        // Every task reports once (a connect is bounded by the timeout), then stays connected.
        let (mut connected, mut failed) = (0, 0);
        while connected + failed < tasks.len() {
            match done_rx.recv().await {
                Some(true) => connected += 1,
                Some(false) => failed += 1,
                None => break,
            }
        }
        Crowd {
            stop,
            tasks,
            connected,
            failed,
            delivered,
        }
    }

    /// Disconnects everyone; the latencies they recorded, merged.
    async fn finish(mut self) -> Latencies {
        let _ = self.stop.send(true);
        let mut all = Latencies::default();
        let deadline = tokio::time::sleep(Duration::from_secs(10));
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => {
                    self.tasks.abort_all();
                    break;
                }
                joined = self.tasks.join_next() => match joined {
                    Some(Ok(latencies)) => all.merge(latencies),
                    Some(Err(_)) => {}
                    None => break,
                },
            }
        }
        all
    }
}

async fn connect(
    common: &Common,
    clients: usize,
    settle: Duration,
    json: &mut Json,
) -> Result<(), String> {
    let rss_before = common.pid.map(ProcSample::read).transpose()?;
    let start = Instant::now();
    let crowd = Crowd::connect(common, clients, Arc::new(AtomicU64::new(u64::MAX))).await;
    let elapsed = start.elapsed().as_secs_f64();
    json.num("connected", crowd.connected as f64);
    json.num("failed", crowd.failed as f64);
    json.num("seconds", elapsed);
    json.num("connects_per_s", crowd.connected as f64 / elapsed);
    if let (Some(pid), Some(before)) = (common.pid, rss_before) {
        tokio::time::sleep(settle).await;
        let after = ProcSample::read(pid)?;
        json.num("rss_before_kb", before.rss_kb as f64);
        json.num("rss_after_kb", after.rss_kb as f64);
        let per = (after.rss_kb as f64 - before.rss_kb as f64) / crowd.connected.max(1) as f64;
        json.num("rss_per_conn_kb", per);
    }
    crowd.finish().await;
    Ok(())
}

async fn echo(
    common: &Common,
    clients: usize,
    inflight: usize,
    warmup: Duration,
    duration: Duration,
    json: &mut Json,
) -> Result<(), String> {
    let mut connecting = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(common.concurrency));
    for _ in 0..clients {
        let (common, permits) = (common.clone(), permits.clone());
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await;
            Client::connect(&common.addr, &common.ns, common.timeout).await
        });
    }
    let mut connected = Vec::with_capacity(clients);
    let mut failed = 0usize;
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(client)) => connected.push(client),
            _ => failed += 1,
        }
    }
    json.num("connected", connected.len() as f64);
    json.num("failed", failed as f64);
    let record_from = Instant::now() + warmup;
    let end = record_from + duration;
    let mut running = JoinSet::new();
    for client in connected {
        let common = common.clone();
        running.spawn(echo_client(client, common, inflight, record_from, end));
    }
    let window_cpu = window_cpu(common.pid, record_from, end).await?;
    let (mut latencies, mut errors) = (Latencies::default(), 0usize);
    while let Some(joined) = running.join_next().await {
        match joined {
            Ok(Ok(l)) => latencies.merge(l),
            _ => errors += 1,
        }
    }
    json.num("errors", errors as f64);
    json.num("acks", latencies.len() as f64);
    json.num(
        "acks_per_s",
        latencies.len() as f64 / duration.as_secs_f64(),
    );
    if let Some(cpu_ms) = window_cpu {
        json.num("window_cpu_ms", cpu_ms as f64);
        json.num(
            "cpu_us_per_op",
            cpu_ms as f64 * 1000.0 / latencies.len().max(1) as f64,
        );
    }
    latencies.report(json);
    Ok(())
}

/// Keeps `inflight` echoes outstanding until `end`, then waits for the rest; records the latency
/// of each ack sent in `[record_from, end)`.
async fn echo_client(
    mut client: Client,
    common: Common,
    inflight: usize,
    record_from: Instant,
    end: Instant,
) -> client::Result<Latencies> {
    let mut latencies = Latencies::default();
    let mut pending: HashMap<u64, Instant> = HashMap::with_capacity(inflight);
    let mut next_id = 0u64;
    for _ in 0..inflight {
        let packet = client.event(Some(next_id), "echo", &payload(&common.padding));
        pending.insert(next_id, Instant::now());
        next_id += 1;
        client.feed(packet).await?;
    }
    client.flush().await?;
    while !pending.is_empty() {
        let packet = tokio::time::timeout(common.timeout, client.next_text())
            .await
            .map_err(|_| "no ack within the timeout")??;
        let Some(sent) = client.ack_id(&packet).and_then(|id| pending.remove(&id)) else {
            continue;
        };
        let now = Instant::now();
        if sent >= record_from && sent < end {
            latencies.record_us((now - sent).as_micros() as u64);
        }
        if now < end {
            let packet = client.event(Some(next_id), "echo", &payload(&common.padding));
            pending.insert(next_id, Instant::now());
            next_id += 1;
            client.send(packet).await?;
        }
    }
    client.close().await;
    Ok(latencies)
}

/// The server's CPU time (ms) between `from` and `to`, while the clients run.
async fn window_cpu(pid: Option<u32>, from: Instant, to: Instant) -> Result<Option<u64>, String> {
    let Some(pid) = pid else { return Ok(None) };
    tokio::time::sleep_until(from.into()).await;
    let before = ProcSample::read(pid)?;
    tokio::time::sleep_until(to.into()).await;
    let after = ProcSample::read(pid)?;
    Ok(Some(after.cpu_ms.saturating_sub(before.cpu_ms)))
}

async fn fanout(
    common: &Common,
    receivers: usize,
    rate: f64,
    warmup: Duration,
    duration: Duration,
    json: &mut Json,
) -> Result<(), String> {
    let record_from = Arc::new(AtomicU64::new(u64::MAX));
    let crowd = Crowd::connect(common, receivers, record_from.clone()).await;
    json.num("connected", crowd.connected as f64);
    json.num("failed", crowd.failed as f64);
    let mut sender = Client::connect(&common.addr, &common.ns, common.timeout)
        .await
        .map_err(|e| format!("sender: {e}"))?;
    record_from.store(now_us() + warmup.as_micros() as u64, Ordering::Relaxed);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = ((warmup + duration).as_secs_f64() * rate).round() as u64;
    let cpu_before = common.pid.map(ProcSample::read).transpose()?;
    let start = Instant::now();
    let mut sent = 0u64;
    // The sender is in the namespace too: it drains its own `bcast`s while sending.
    while sent < total {
        tokio::select! {
            _ = ticks.tick() => {
                let packet = sender.event(None, "broadcast", &payload(&common.padding));
                sender.send(packet).await.map_err(|e| format!("sender: {e}"))?;
                sent += 1;
            }
            packet = sender.next_text() => {
                packet.map_err(|e| format!("sender: {e}"))?;
            }
        }
    }
    let send_seconds = start.elapsed().as_secs_f64();
    // Wait (bounded) until every receiver has every broadcast.
    let expected = sent * crowd.connected as u64;
    let drain_deadline = Instant::now() + common.timeout;
    let mut last_count = crowd.delivered.load(Ordering::Relaxed);
    let mut last_change = Instant::now();
    while last_count < expected && Instant::now() < drain_deadline {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
            packet = sender.next_text() => {
                packet.map_err(|e| format!("sender: {e}"))?;
            }
        }
        let count = crowd.delivered.load(Ordering::Relaxed);
        if count != last_count {
            last_count = count;
            last_change = Instant::now();
        }
    }
    let seconds = (last_change - start).as_secs_f64().max(send_seconds);
    // Short of `expected`: deliveries either stopped (the server dropped them) or were still
    // arriving when the drain timed out (a backlog, not a loss).
    let cut_off = last_count < expected && last_change.elapsed() < Duration::from_millis(500);
    json.num("cut_off", u8::from(cut_off).into());
    let delivered = crowd.delivered.load(Ordering::Relaxed);
    if let (Some(pid), Some(before)) = (common.pid, cpu_before) {
        let cpu_ms = ProcSample::read(pid)?.cpu_ms.saturating_sub(before.cpu_ms);
        json.num("window_cpu_ms", cpu_ms as f64);
        json.num(
            "cpu_us_per_op",
            cpu_ms as f64 * 1000.0 / delivered.max(1) as f64,
        );
    }
    sender.close().await;
    let latencies = crowd.finish().await;
    json.num("sent", sent as f64);
    json.num("sent_per_s", sent as f64 / send_seconds);
    json.num("expected", expected as f64);
    json.num("delivered", delivered as f64);
    json.num("delivered_per_s", delivered as f64 / seconds);
    latencies.report(json);
    Ok(())
}
