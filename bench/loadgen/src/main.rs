//! Load generator for the bench-server contract (`shared/protocol/bench-server.md`): Socket.IO v5
//! clients over direct Engine.IO v4 websockets (or long-polling, or the contract's raw mode).
//! Each run prints one JSON object on one line.
//!
//! ```text
//! loadgen connect --clients N [--pid PID] [--settle-ms 1000]
//!     connects/s for N clients (each connects, then stays connected and idle); with the server's
//!     PID, its VmRSS before the first and after the last connection, and the difference per client
//! loadgen echo --clients N --inflight K [--duration-s 5] [--warmup-s 1] [--transport polling]
//!     every client keeps K `echo` acks in flight: acks/s and ack latency p50/p99; with
//!     `--transport polling`, Engine.IO long-polling clients (websocket by default)
//! loadgen fanout --clients N --rate R [--duration-s 5] [--warmup-s 1]
//!     N receivers; one more client emits `broadcast` R times a second: deliveries/s and
//!     latency p50/p99 from the payload's send timestamp to each receipt
//! common: --addr 127.0.0.1:3000 (or a,b,…: clients are given the addresses in turn, the fanout
//!         sender the first) --ns / --concurrency 64 (connects at once) --pad 32 (payload
//!         padding bytes) --timeout-s 10 (per connect, per wait for an ack, and the drain)
//!         --pid PID (or a,b,…, summed: also reports the servers' CPU time over the run, and for
//!         echo and fanout over the measured window: `window_cpu_ms`, `cpu_us_per_op` per ack
//!         or delivery) --raw 1 (raw mode: bare websocket frames, for connect, echo, fanout)
//! ```
//!
//! Everything is bounded: connects and waits time out, sends stop at the end of the duration, and
//! a run ends at the latest `timeout-s` after that.

mod client;
mod polling;
mod stats;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use client::{Client, Mode, now_us, payload, payload_t};
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
    addrs: Arc<[String]>,
    ns: Arc<str>,
    mode: Mode,
    concurrency: usize,
    timeout: Duration,
    padding: Arc<str>,
    pids: Arc<[u32]>,
}

impl Common {
    /// The address of the `i`th client: the addresses in turn.
    fn addr(&self, i: usize) -> &str {
        &self.addrs[i % self.addrs.len()]
    }

    /// The `i`th client, connected.
    async fn connect(&self, i: usize) -> client::Result<Client> {
        Client::connect(self.addr(i), &self.ns, self.mode, self.timeout).await
    }

    /// The servers' memory and CPU time, summed (None without `--pid`).
    fn sample(&self) -> Result<Option<ProcSample>, String> {
        if self.pids.is_empty() {
            return Ok(None);
        }
        let mut sum = ProcSample::default();
        for pid in self.pids.iter() {
            let one = ProcSample::read(*pid)?;
            sum.rss_kb += one.rss_kb;
            sum.cpu_ms += one.cpu_ms;
        }
        Ok(Some(sum))
    }
}

/// A comma-separated list: `a,b,c`.
fn list<T: FromStr>(flag: &str, value: &str) -> Result<Vec<T>, String> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .map_err(|_| format!("--{flag}: cannot parse {v}"))
        })
        .collect()
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
        addrs: list("addr", &args.get("addr", "127.0.0.1:3000".to_owned())?)?.into(),
        ns: args.get("ns", "/".to_owned())?.into(),
        mode: if args.get("raw", 0u8)? == 1 {
            Mode::Raw
        } else {
            Mode::SocketIo
        },
        concurrency: args.get("concurrency", 64usize)?.max(1),
        timeout: Duration::from_secs(args.get("timeout-s", 10u64)?),
        padding: "x".repeat(args.get("pad", 32usize)?).into(),
        pids: match args.flags.get("pid") {
            Some(pids) => list("pid", pids)?.into(),
            None => Arc::new([]),
        },
    };
    let clients: usize = args.get("clients", 1000)?;
    let duration = Duration::from_secs_f64(args.get("duration-s", 5.0)?);
    let warmup = Duration::from_secs_f64(args.get("warmup-s", 1.0)?);
    let mut json = Json::new(&args.scenario);
    json.num("clients", clients as f64);
    let before = common.sample()?;
    let started = Instant::now();
    match args.scenario.as_str() {
        "connect" => {
            let settle = Duration::from_millis(args.get("settle-ms", 1000u64)?);
            connect(&common, clients, settle, &mut json).await?;
        }
        "echo" => {
            let inflight: usize = args.get("inflight", 1)?;
            json.num("inflight", inflight as f64);
            let polling = match args.get("transport", "websocket".to_owned())?.as_str() {
                "websocket" => false,
                "polling" if common.mode == Mode::SocketIo => true,
                "polling" => return Err("--transport polling has no raw mode".into()),
                other => return Err(format!("--transport {other}: websocket or polling")),
            };
            let load = EchoLoad {
                clients,
                inflight: inflight.max(1),
                polling,
                warmup,
                duration,
            };
            echo(&common, load, &mut json).await?;
        }
        "fanout" => {
            let rate: f64 = args.get("rate", 10.0)?;
            json.num("rate", rate);
            fanout(&common, clients, rate, warmup, duration, &mut json).await?;
        }
        other => return Err(format!("unknown scenario {other}: connect, echo or fanout")),
    }
    if let (Some(after), Some(before)) = (common.sample()?, before) {
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
        for i in 0..n {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let (common, done, delivered) = (common.clone(), done_tx.clone(), delivered.clone());
            let (mut stopped, record_from) = (stopped.clone(), record_from.clone());
            tasks.spawn(async move {
                let mut latencies = Latencies::default();
                let client = common.connect(i).await;
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
                            let Some(args) = client.bcast(&packet) else { continue };
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
    let rss_before = common.sample()?;
    let start = Instant::now();
    let crowd = Crowd::connect(common, clients, Arc::new(AtomicU64::new(u64::MAX))).await;
    let elapsed = start.elapsed().as_secs_f64();
    json.num("connected", crowd.connected as f64);
    json.num("failed", crowd.failed as f64);
    json.num("seconds", elapsed);
    json.num("connects_per_s", crowd.connected as f64 / elapsed);
    if let Some(before) = rss_before {
        tokio::time::sleep(settle).await;
        let after = common.sample()?.unwrap_or(before);
        json.num("rss_before_kb", before.rss_kb as f64);
        json.num("rss_after_kb", after.rss_kb as f64);
        let per = (after.rss_kb as f64 - before.rss_kb as f64) / crowd.connected.max(1) as f64;
        json.num("rss_per_conn_kb", per);
    }
    crowd.finish().await;
    Ok(())
}

/// What an echo run asks of the server.
struct EchoLoad {
    clients: usize,
    inflight: usize,
    /// Engine.IO long-polling clients instead of websockets.
    polling: bool,
    warmup: Duration,
    duration: Duration,
}

/// An echo client, connected over either transport.
enum EchoConn {
    Ws(Client),
    Polling(polling::Session),
}

async fn echo(common: &Common, load: EchoLoad, json: &mut Json) -> Result<(), String> {
    let mut connecting = JoinSet::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(common.concurrency));
    for i in 0..load.clients {
        let (common, permits, polling) = (common.clone(), permits.clone(), load.polling);
        connecting.spawn(async move {
            let _permit = permits.acquire_owned().await;
            if polling {
                let session = polling::connect(common.addr(i), &common.ns);
                let session = tokio::time::timeout(common.timeout, session)
                    .await
                    .map_err(|_| "connect timed out")??;
                Ok(EchoConn::Polling(session))
            } else {
                common.connect(i).await.map(EchoConn::Ws)
            }
        });
    }
    let mut connected = Vec::with_capacity(load.clients);
    let mut failed = 0usize;
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(client)) => connected.push(client),
            _ => failed += 1,
        }
    }
    json.num("connected", connected.len() as f64);
    json.num("failed", failed as f64);
    let record_from = Instant::now() + load.warmup;
    let end = record_from + load.duration;
    let mut running = JoinSet::new();
    for conn in connected {
        let (common, book) = (common.clone(), Book::new(record_from, end));
        match conn {
            EchoConn::Ws(client) => running.spawn(echo_client(client, common, load.inflight, book)),
            EchoConn::Polling(session) => {
                running.spawn(echo_polling(session, common, load.inflight, book))
            }
        };
    }
    let window_cpu = window_cpu(common, record_from, end).await?;
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
        latencies.len() as f64 / load.duration.as_secs_f64(),
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

/// The echoes one client has outstanding, and the latencies of those answered: each echo sent
/// in `[record_from, end)` is recorded, and each answer before `end` calls for another echo.
struct Book {
    pending: HashMap<u64, Instant>,
    next_id: u64,
    record_from: Instant,
    end: Instant,
    latencies: Latencies,
}

impl Book {
    fn new(record_from: Instant, end: Instant) -> Book {
        Book {
            pending: HashMap::new(),
            next_id: 0,
            record_from,
            end,
            latencies: Latencies::default(),
        }
    }

    /// The id of a new echo, sent now.
    fn send(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.pending.insert(id, Instant::now());
        id
    }

    /// Takes note of the answer to echo `id` (None: not an answer); true if another echo is due.
    fn answered(&mut self, id: Option<u64>) -> bool {
        let Some(sent) = id.and_then(|id| self.pending.remove(&id)) else {
            return false;
        };
        let now = Instant::now();
        if sent >= self.record_from && sent < self.end {
            self.latencies.record_us((now - sent).as_micros() as u64);
        }
        now < self.end
    }

    fn done(&self) -> bool {
        self.pending.is_empty()
    }
}

/// Keeps `inflight` echoes outstanding on a websocket until the book's end, then waits for the
/// rest.
async fn echo_client(
    mut client: Client,
    common: Common,
    inflight: usize,
    mut book: Book,
) -> client::Result<Latencies> {
    for _ in 0..inflight {
        let packet = client.echo(book.send(), &payload(&common.padding));
        client.feed(packet).await?;
    }
    client.flush().await?;
    while !book.done() {
        let packet = tokio::time::timeout(common.timeout, client.next_text())
            .await
            .map_err(|_| "no ack within the timeout")??;
        if book.answered(client.ack_id(&packet)) {
            let packet = client.echo(book.send(), &payload(&common.padding));
            client.send(packet).await?;
        }
    }
    client.close().await;
    Ok(book.latencies)
}

/// The same over long-polling: the GET loop runs on its own connection while this task POSTs
/// what each batch of answers calls for (new echoes, pongs) in one request.
async fn echo_polling(
    session: polling::Session,
    common: Common,
    inflight: usize,
    mut book: Book,
) -> client::Result<Latencies> {
    let polling::Session {
        mut sender,
        mut receiver,
        ns_prefix,
    } = session;
    let (batches, mut received) = mpsc::unbounded_channel();
    // Dropped (aborted) when this client ends, however it ends.
    let mut poller = JoinSet::new();
    poller.spawn(async move {
        loop {
            let batch = receiver.poll().await;
            let failed = batch.is_err();
            if batches.send(batch).is_err() || failed {
                break;
            }
        }
    });
    let echo = |book: &mut Book| {
        client::socketio_event(
            &ns_prefix,
            Some(book.send()),
            "echo",
            &payload(&common.padding),
        )
    };
    let mut out: Vec<String> = (0..inflight).map(|_| echo(&mut book)).collect();
    sender.send(&out).await?;
    while !book.done() {
        let batch = tokio::time::timeout(common.timeout, received.recv())
            .await
            .map_err(|_| "no ack within the timeout")?
            .ok_or("the long-poll ended")?;
        out.clear();
        // Everything received by now is answered in one POST.
        let mut next = Some(batch);
        while let Some(batch) = next.take() {
            for packet in batch? {
                if packet == "2" {
                    out.push("3".to_owned());
                } else if packet.starts_with('1') {
                    return Err("the server closed the Engine.IO session".into());
                } else if book.answered(client::socketio_ack_id(&ns_prefix, &packet)) {
                    out.push(echo(&mut book));
                }
            }
            next = received.try_recv().ok();
        }
        if !out.is_empty() {
            sender.send(&out).await?;
        }
    }
    // Closing the session ends the pending long-poll on the server's side too.
    let _ = sender.send(&["1".to_owned()]).await;
    Ok(book.latencies)
}

/// The servers' CPU time (ms) between `from` and `to`, while the clients run.
async fn window_cpu(common: &Common, from: Instant, to: Instant) -> Result<Option<u64>, String> {
    tokio::time::sleep_until(from.into()).await;
    let Some(before) = common.sample()? else {
        return Ok(None);
    };
    tokio::time::sleep_until(to.into()).await;
    let after = common.sample()?.unwrap_or(before);
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
    let mut sender = common
        .connect(0)
        .await
        .map_err(|e| format!("sender: {e}"))?;
    record_from.store(now_us() + warmup.as_micros() as u64, Ordering::Relaxed);
    let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(0.001)));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let total = ((warmup + duration).as_secs_f64() * rate).round() as u64;
    let cpu_before = common.sample()?;
    let start = Instant::now();
    let mut sent = 0u64;
    // The sender is in the namespace too: it drains its own `bcast`s while sending.
    while sent < total {
        tokio::select! {
            _ = ticks.tick() => {
                let packet = sender.broadcast(&payload(&common.padding));
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
    if let (Some(after), Some(before)) = (common.sample()?, cpu_before) {
        let cpu_ms = after.cpu_ms.saturating_sub(before.cpu_ms);
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
