//! Stateful fuzzing of the whole server: random sequences of client actions, generated from a
//! seeded PRNG, played by raw clients (long-polling over HTTP, WebSocket, and polling upgraded
//! to WebSocket) against real servers on 127.0.0.1 (actix-web's `HttpServer` and sio's `Server`,
//! chosen per sequence): one node alone, and two nodes of a `MemoryCluster` whose clients send
//! some of their requests to the other node (sticky-free forwarding and tunnelled upgrades).
//!
//! The actions: handshakes; CONNECT and DISCONNECT to `/`, to namespaces with a synchronous and
//! an asynchronous middleware, to an unknown one and to dynamic ones, several at once in one
//! POST, with tokens or with recovery pids and offsets (the client's own, another namespace's,
//! stale, unknown); events whose handlers join, leave, broadcast, ask the client for acks or
//! disconnect it; acks given or not; pings, pongs, malformed and binary packets; probes,
//! upgrades and aborted upgrades; closes and dropped connections; the application's own
//! broadcasts, joins, leaves, disconnections and fetches, on either node.
//!
//! Checked while a sequence runs: a connection never gets more CONNECT answers for a namespace
//! than one plus the DISCONNECTs in between (a duplicate CONNECT must not make a second socket,
//! audit finding 1); a socket id never comes back in another namespace (cross-namespace
//! recovery); no two live sockets of a namespace share an id, on any node (recovery of a live
//! socket, finding 4); a client ping (`2`, which Engine.IO v4 clients never send) closes the
//! session (finding 2). After the sequence every client is closed or dropped, a fresh client
//! checks that each node still serves, and once the timeouts have run (a bounded wait) every node
//! must be back to nothing: no socket, room or pending ack in any namespace (`Metrics`), no
//! Engine.IO session, no tunnel, no room the backend was told of and not told was deleted (a
//! `Backend` wrapper), no handler still waiting for an ack, no `Socket` still alive (a
//! drop-counted token in its extensions), and no panic anywhere in the process (a panic hook).
//!
//! The default run (`cargo test -p sio-core --test stateful_fuzz`) plays 40 sequences per
//! topology, four at a time, in about 10 s. Longer runs, replays:
//!
//! ```text
//! # more sequences, from another base seed (both optional; the default seed is fixed)
//! SIO_FUZZ_SEQUENCES=5000 SIO_FUZZ_SEED=7 cargo test -p sio-core --test stateful_fuzz -- --nocapture
//! # replay a failure: it prints this line, with what shrinking kept (`7.0.2`: packets 0 and 2
//! # of action 7's batch); the seed alone replays the whole sequence
//! SIO_FUZZ_REPLAY=0x1234abcd:3,7.0.2 cargo test -p sio-core --test stateful_fuzz two_nodes -- --nocapture
//! # seconds spent shrinking a failure (default 60; 0 reports it as generated)
//! SIO_FUZZ_SHRINK=0 cargo test -p sio-core --test stateful_fuzz
//! # print what every sequence sent and received
//! SIO_FUZZ_TRACE=1 SIO_FUZZ_REPLAY=0x1234abcd cargo test -p sio-core --test stateful_fuzz one_node -- --nocapture
//! ```
//!
//! With `--nocapture` each test also prints how often the sequences reached each state
//! (recoveries, upgrades, acks...). Timing is not part of a sequence: a replay plays the same
//! actions, but the servers' tasks may interleave differently, so a failure that depends on a
//! race may need a few replays.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::{Arc, Mutex, Once, PoisonError, Weak};
use std::time::{Duration, Instant};

use actix_web::web::ServiceConfig;
use awc::ws::{Frame, Message as WsMessage};
use bytes::Bytes;
use common::{Http, Ws};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt as _, StreamExt as _};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use sio_core::{
    AckSender, Args, Backend, BackendFuture, ClusterRequest, ClusterResponse, ConnectError, Data,
    MemoryCluster, MemoryNode, Namespace, NodeReceiver, RecoveryConfig, RequestHandler, Room,
    SocketIo, SocketRef, State,
};
use tokio::task::JoinHandle;

// Short timeouts, so that what a sequence leaves behind goes quickly.
const PING_INTERVAL: Duration = Duration::from_millis(250);
const PING_TIMEOUT: Duration = Duration::from_millis(250);
const UPGRADE_TIMEOUT: Duration = Duration::from_millis(300);
const CONNECT_TIMEOUT: Duration = Duration::from_millis(500);
const ACK_TIMEOUT: Duration = Duration::from_millis(400);
const RECOVERY: Duration = Duration::from_secs(1);
/// How long the servers get, after the clients are gone, to be back to nothing.
const SETTLE: Duration = Duration::from_secs(5);
/// How long a session has to close after a client ping.
const PING_CLOSES_WITHIN: Duration = Duration::from_secs(3);
/// Sequences played at once per configuration, each on its own servers.
const LANES: usize = 4;

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[actix_web::test]
async fn one_node() {
    fuzz(Topology::OneNode).await;
}

#[actix_web::test]
async fn two_nodes() {
    fuzz(Topology::TwoNodes).await;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topology {
    OneNode,
    /// Two nodes of a `MemoryCluster`; requests go to either.
    TwoNodes,
}

impl Topology {
    fn nodes(self) -> usize {
        match self {
            Topology::OneNode => 1,
            Topology::TwoNodes => 2,
        }
    }

    fn test_name(self) -> &'static str {
        match self {
            Topology::OneNode => "one_node",
            Topology::TwoNodes => "two_nodes",
        }
    }
}

/// What the environment asks for (see the top of the file).
struct Settings {
    sequences: usize,
    seed: u64,
    replay: Option<(u64, Option<Keep>)>,
    shrink_for: Duration,
}

impl Settings {
    fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let replay = var("SIO_FUZZ_REPLAY").map(|v| {
            let (seed, keep) = match v.split_once(':') {
                Some((seed, keep)) => (seed, Some(keep)),
                None => (v.as_str(), None),
            };
            (parse_seed(seed), keep.map(parse_keep))
        });
        Settings {
            sequences: var("SIO_FUZZ_SEQUENCES").map_or(40, |v| v.parse().expect("a number")),
            seed: var("SIO_FUZZ_SEED").map_or(0x5107_f022, |v| parse_seed(&v)),
            replay,
            shrink_for: Duration::from_secs(
                var("SIO_FUZZ_SHRINK").map_or(60, |v| v.parse().expect("seconds")),
            ),
        }
    }
}

fn parse_seed(text: &str) -> u64 {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    }
    .expect("a seed: decimal, or hexadecimal with 0x")
}

/// What a replay plays of a sequence: by action index, every packet of its batch (`None`) or
/// those at these indices.
type Keep = Vec<(usize, Option<Vec<usize>>)>;

/// `3,7.0.2`: action 3, and packets 0 and 2 of action 7.
fn parse_keep(text: &str) -> Keep {
    let index = |i: &str| i.trim().parse().expect("SIO_FUZZ_REPLAY: indices");
    text.split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let mut parts = entry.split('.');
            let action = index(parts.next().unwrap_or_default());
            let packets: Vec<usize> = parts.map(index).collect();
            (action, (!packets.is_empty()).then_some(packets))
        })
        .collect()
}

fn format_keep(keep: &Keep) -> String {
    keep.iter()
        .map(|(action, packets)| match packets {
            None => action.to_string(),
            Some(packets) => std::iter::once(action)
                .chain(packets)
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("."),
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// The seed of sequence `i` of a run: SplitMix64 of the base seed, the topology and `i`.
fn sequence_seed(base: u64, topology: Topology, i: usize) -> u64 {
    let mut z = base
        .wrapping_add((topology as u64) << 48)
        .wrapping_add(i as u64)
        .wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What the sequences of each topology did, printed at the end of a run (with `--nocapture`)
/// to show that the fuzzer reaches the states it means to.
static COVERAGE: [Mutex<BTreeMap<&str, usize>>; 2] =
    [Mutex::new(BTreeMap::new()), Mutex::new(BTreeMap::new())];

async fn fuzz(topology: Topology) {
    watch_panics();
    let settings = Settings::from_env();
    let reports = match &settings.replay {
        Some((seed, keep)) => {
            let plan = generate(*seed, topology);
            let keep = keep.clone().unwrap_or_else(|| plan.everything());
            match run_plan(topology, &plan, &keep).await {
                Ok(()) => Vec::new(),
                Err(failure) => vec![report(topology, &plan, keep, failure, &settings).await],
            }
        }
        None => {
            let lanes = (0..LANES).map(|lane| run_lane(topology, &settings, lane));
            futures_util::future::join_all(lanes)
                .await
                .into_iter()
                .flatten()
                .collect()
        }
    };
    let coverage = COVERAGE[topology as usize]
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    println!("{}: {coverage:#?}", topology.test_name());
    assert!(
        reports.is_empty(),
        "{} failing sequence(s):\n\n{}",
        reports.len(),
        reports.join("\n\n")
    );
}

/// Plays sequences `lane`, `lane + LANES`... one after the other; stops at the first failure.
async fn run_lane(topology: Topology, settings: &Settings, lane: usize) -> Option<String> {
    for i in (lane..settings.sequences).step_by(LANES) {
        let plan = generate(sequence_seed(settings.seed, topology, i), topology);
        let everything = plan.everything();
        if let Err(failure) = run_plan(topology, &plan, &everything).await {
            return Some(report(topology, &plan, everything, failure, settings).await);
        }
    }
    None
}

// ---------------------------------------------------------------------------------------------
// Sequences
// ---------------------------------------------------------------------------------------------

/// A namespace a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ns {
    Main,
    /// A middleware that answers at once: refuses the token "bad".
    Sync,
    /// A middleware that sleeps a few ms: admits the token "ok" only.
    Async,
    /// Not served.
    Unknown,
    /// `/dyn-N`, created by the first CONNECT.
    Dyn(u8),
}

impl Ns {
    fn path(self) -> String {
        match self {
            Ns::Main => "/".into(),
            Ns::Sync => "/sync".into(),
            Ns::Async => "/async".into(),
            Ns::Unknown => "/unknown".into(),
            Ns::Dyn(n) => format!("/dyn-{n}"),
        }
    }

    /// What goes between a Socket.IO packet's type and its id (nothing for `/`).
    fn prefix(self) -> String {
        match self {
            Ns::Main => String::new(),
            other => format!("{},", other.path()),
        }
    }
}

/// The payload of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Auth {
    None,
    Token(&'static str),
    /// Connection state recovery with a pid seen earlier in the run, and an offset.
    Recover(PidPick, OffsetPick),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PidPick {
    /// The last pid this client was given for the namespace (a client coming back).
    Mine,
    /// The n-th (modulo) pid given for the same namespace.
    Same(usize),
    /// The n-th (modulo) pid given for another namespace.
    Other(usize),
    /// A well-formed pid nobody was given.
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OffsetPick {
    /// The last broadcast offset seen in the pid's namespace.
    Last,
    /// The first offset seen in the run, any namespace.
    First,
    Garbage,
}

/// An event the client sends; the handlers are in [`handlers`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    Join(u8),
    Leave(u8),
    /// Joins after a few ms (the socket may be gone by then).
    JoinLater(u8),
    /// A broadcast to a room, the sender included.
    ToRoom(u8),
    /// A broadcast to the namespace.
    Broadcast,
    /// The server emits to the client with an ack and waits for it.
    Ask,
    /// The same to a room, on every node.
    AskRoom(u8),
    Echo,
    /// `socket.disconnect()`.
    Kick,
    /// `socket.close()`: the whole connection.
    Close,
    Unknown,
}

impl Ev {
    fn json(self) -> String {
        match self {
            Ev::Join(r) => format!(r#"["join","r{r}"]"#),
            Ev::Leave(r) => format!(r#"["leave","r{r}"]"#),
            Ev::JoinLater(r) => format!(r#"["join-later","r{r}"]"#),
            Ev::ToRoom(r) => format!(r#"["to-room","r{r}"]"#),
            Ev::Broadcast => r#"["broadcast"]"#.into(),
            Ev::Ask => r#"["ask"]"#.into(),
            Ev::AskRoom(r) => format!(r#"["ask-room","r{r}"]"#),
            Ev::Echo => r#"["echo",1,{"a":[true]}]"#.into(),
            Ev::Kick => r#"["kick"]"#.into(),
            Ev::Close => r#"["close"]"#.into(),
            Ev::Unknown => r#"["nobody-listens",1]"#.into(),
        }
    }
}

/// Packets the fuzzer sends as they are: broken in various ways.
const MALFORMED: &[&str] = &[
    "abc",
    "",
    "4",
    "42{}",
    "42[]",
    "43[1]",
    "43",
    "40[1]",
    "41{}",
    "47",
    r#"4/nope,2["echo"]"#,
    r#"451-["echo",{"_placeholder":true,"num":0}]"#,
    r#"45x-["echo"]"#,
    r#"4299999999999999999999["echo"]"#,
    "5",
    "0{}",
    "2probe",
    r#"42["connect"]"#,
    r#"40/async,{"pid":"nope","offset":7}"#,
];

/// One Engine.IO packet of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pkt {
    Connect(Ns, Auth),
    Disconnect(Ns),
    Event(Ns, Ev, Option<u32>),
    /// `2`: a client ping, which Engine.IO v4 clients never send.
    Ping,
    Pong,
    Noop,
    Malformed(usize),
    /// `1`: the client closes, right after what came before in the batch (a CONNECT whose
    /// middleware still runs, say).
    EngineClose,
    /// An event with one binary attachment: two Engine.IO packets.
    BinaryEvent(Ns, Option<u32>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// A new Engine.IO session for client `c` (the previous one, if any, is dropped): a polling
    /// handshake, or a WebSocket one. `roam`: its polls alternate between the nodes.
    Open {
        c: usize,
        ws: bool,
        via: usize,
        pong: bool,
        roam: bool,
    },
    /// One POST (or one WebSocket frame per packet).
    Send {
        c: usize,
        via: usize,
        packets: Vec<Pkt>,
    },
    /// Answers the acks the server asked for (all, or the oldest).
    AckServer {
        c: usize,
        via: usize,
        all: bool,
    },
    /// Opens a WebSocket for the polling session and sends the probe.
    Probe {
        c: usize,
        via: usize,
    },
    /// Sends the upgrade packet on the probed WebSocket.
    Upgrade {
        c: usize,
    },
    /// Gives up the probed WebSocket (with a close frame, or by dropping it).
    DropProbe {
        c: usize,
        close_frame: bool,
    },
    /// A second poll while one is pending (a protocol error that closes the session).
    DoublePoll {
        c: usize,
        via: usize,
    },
    /// The client closes (`1`).
    Close {
        c: usize,
        via: usize,
    },
    /// The client drops its connections.
    Abort {
        c: usize,
    },
    /// Packets sent on the probed WebSocket before the upgrade (which they break).
    SendOnProbe {
        c: usize,
        packets: Vec<Pkt>,
    },
    /// The application acts on a namespace of one node (on every node's sockets).
    Server {
        node: usize,
        ns: Ns,
        op: ServerOp,
    },
    Wait {
        ms: u64,
    },
}

/// What the application does from outside the handlers, to the sockets of a namespace or of
/// one of its rooms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerOp {
    Emit(Option<u8>),
    /// `emit_with_ack` (the acks are pending until the clients answer or the timeout).
    EmitWithAck(Option<u8>),
    /// The sockets of the first room (or all) join the second room.
    Join(Option<u8>, u8),
    Leave(Option<u8>, u8),
    Disconnect(Option<u8>),
    Fetch(Option<u8>),
}

/// A sequence: what the seed makes.
#[derive(Debug, Clone)]
struct Plan {
    seed: u64,
    /// The HTTP server of each node.
    http: [Http; 2],
    /// Whether the one node gets a (one-node) cluster backend, which lets the test follow its
    /// room index; the two nodes always have one.
    watched: bool,
    actions: Vec<Action>,
    /// Per client, whether its session is closed (`1`) or dropped at the end.
    close_at_end: Vec<bool>,
}

impl Plan {
    fn everything(&self) -> Keep {
        (0..self.actions.len()).map(|i| (i, None)).collect()
    }

    /// The actions `keep` keeps, with their index in the plan.
    fn kept(&self, keep: &Keep) -> Vec<(usize, Action)> {
        keep.iter()
            .filter_map(|(i, packets)| {
                let mut action = self.actions.get(*i)?.clone();
                if let (
                    Action::Send { packets: batch, .. }
                    | Action::SendOnProbe { packets: batch, .. },
                    Some(kept),
                ) = (&mut action, packets)
                {
                    *batch = kept.iter().filter_map(|p| batch.get(*p).copied()).collect();
                }
                Some((*i, action))
            })
            .collect()
    }

    /// The number of packets of action `i`'s batch (0 for other actions).
    fn batch_len(&self, i: usize) -> usize {
        match self.actions.get(i) {
            Some(Action::Send { packets, .. } | Action::SendOnProbe { packets, .. }) => {
                packets.len()
            }
            _ => 0,
        }
    }
}

fn pick<T: Copy>(rng: &mut StdRng, weighted: &[(u32, T)]) -> T {
    let total: u32 = weighted.iter().map(|(w, _)| w).sum();
    let mut roll = rng.random_range(0..total);
    for (weight, item) in weighted {
        if roll < *weight {
            return *item;
        }
        roll -= weight;
    }
    weighted[weighted.len() - 1].1
}

/// What the generator thinks a client's session is doing (the servers may disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Closed,
    Polling,
    Probing,
    Ws,
}

fn generate(seed: u64, topology: Topology) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed);
    let nodes = topology.nodes();
    let http = if rng.random_bool(0.5) {
        [Http::ActixWeb, Http::Sio]
    } else {
        [Http::Sio, Http::ActixWeb]
    };
    let watched = topology == Topology::TwoNodes || rng.random_bool(0.5);
    let clients = rng.random_range(1..=4);
    let len = rng.random_range(6..=36);
    let mut mode = vec![Mode::Closed; clients];
    // The namespaces each client's session asked for, so that most events go to one of them.
    let mut asked: Vec<Vec<Ns>> = vec![Vec::new(); clients];
    let mut actions = Vec::with_capacity(len);
    for _ in 0..len {
        let c = rng.random_range(0..clients);
        let via = rng.random_range(0..nodes);
        let roll = rng.random_range(0..100);
        let server_emit = |rng: &mut StdRng| {
            let room = rng.random_bool(0.6).then(|| rng.random_range(0..3));
            let other = rng.random_range(0..3);
            Action::Server {
                node: rng.random_range(0..nodes),
                ns: namespace(rng),
                op: pick(
                    rng,
                    &[
                        (40, ServerOp::Emit(room)),
                        (15, ServerOp::EmitWithAck(room)),
                        (12, ServerOp::Join(room, other)),
                        (8, ServerOp::Leave(room, other)),
                        (8, ServerOp::Disconnect(room)),
                        (10, ServerOp::Fetch(room)),
                    ],
                ),
            }
        };
        let action = match (mode[c], roll) {
            (_, 0..=6) => server_emit(&mut rng),
            (_, 7..=9) => Action::Wait {
                ms: if rng.random_bool(0.05) {
                    1_100
                } else {
                    rng.random_range(1..150)
                },
            },
            (Mode::Closed, _) => Action::Open {
                c,
                ws: rng.random_bool(0.3),
                via,
                pong: rng.random_bool(0.85),
                roam: rng.random_bool(0.5),
            },
            (_, 10..=17) => Action::AckServer {
                c,
                via,
                all: rng.random_bool(0.7),
            },
            (_, 18..=21) => Action::Close { c, via },
            (_, 22..=25) => Action::Abort { c },
            (Mode::Polling, 26..=33) => Action::Probe { c, via },
            (Mode::Polling, 34..=35) => Action::DoublePoll { c, via },
            (Mode::Probing, 26..=33) => Action::Upgrade { c },
            (Mode::Probing, 34..=36) => Action::DropProbe {
                c,
                close_frame: rng.random_bool(0.5),
            },
            (Mode::Probing, 37..=38) => Action::SendOnProbe {
                c,
                packets: batch(&mut rng, &asked[c]),
            },
            _ => Action::Send {
                c,
                via,
                packets: batch(&mut rng, &asked[c]),
            },
        };
        match &action {
            Action::Open { .. } => asked[c].clear(),
            Action::Send { packets, .. } => {
                asked[c].extend(packets.iter().filter_map(|p| match p {
                    Pkt::Connect(ns, _) if *ns != Ns::Unknown => Some(*ns),
                    _ => None,
                }))
            }
            _ => {}
        }
        if matches!(action, Action::Close { .. } | Action::Abort { .. })
            && !asked[c].is_empty()
            && rng.random_bool(0.5)
        {
            // A client coming back: it got a broadcast, loses its connection, opens a new one
            // and asks for its sockets back.
            let mut back = asked[c].clone();
            back.dedup();
            back.truncate(3);
            actions.push(Action::Server {
                node: rng.random_range(0..nodes),
                ns: back[0],
                op: ServerOp::Emit(None),
            });
            actions.push(Action::Wait { ms: 50 });
            let aborted = matches!(action, Action::Abort { .. });
            actions.push(action);
            if aborted && rng.random_bool(0.5) {
                // Past the ping timeout, so that the server has let the old socket go.
                actions.push(Action::Wait { ms: 600 });
            }
            actions.push(Action::Open {
                c,
                ws: rng.random_bool(0.3),
                via: rng.random_range(0..nodes),
                pong: true,
                roam: rng.random_bool(0.5),
            });
            actions.push(Action::Send {
                c,
                via: rng.random_range(0..nodes),
                packets: back
                    .iter()
                    .map(|ns| Pkt::Connect(*ns, Auth::Recover(PidPick::Mine, OffsetPick::Last)))
                    .collect(),
            });
            mode[c] = Mode::Polling;
            asked[c] = back;
            continue;
        }
        if matches!(action, Action::Probe { .. }) && rng.random_bool(0.6) {
            actions.push(action);
            actions.push(Action::Upgrade { c });
            mode[c] = Mode::Ws;
            continue;
        }
        mode[c] = match &action {
            Action::Open { ws: true, .. } | Action::Upgrade { .. } => Mode::Ws,
            Action::Open { .. } | Action::DropProbe { .. } => Mode::Polling,
            Action::Probe { .. } => Mode::Probing,
            Action::SendOnProbe { .. } => Mode::Polling,
            Action::Close { .. } | Action::Abort { .. } | Action::DoublePoll { .. } => Mode::Closed,
            Action::Send { packets, .. } if packets.iter().any(ends_session) => Mode::Closed,
            _ => mode[c],
        };
        actions.push(action);
    }
    Plan {
        seed,
        http,
        watched,
        actions,
        close_at_end: (0..clients).map(|_| rng.random_bool(0.5)).collect(),
    }
}

/// Whether the packet (probably) ends the session.
fn ends_session(p: &Pkt) -> bool {
    matches!(
        p,
        Pkt::Ping | Pkt::Malformed(_) | Pkt::EngineClose | Pkt::Event(_, Ev::Close, _)
    )
}

fn namespace(rng: &mut StdRng) -> Ns {
    pick(
        rng,
        &[
            (30, Ns::Main),
            (18, Ns::Sync),
            (22, Ns::Async),
            (6, Ns::Unknown),
            (8, Ns::Dyn(0)),
            (8, Ns::Dyn(1)),
            (8, Ns::Dyn(2)),
        ],
    )
}

fn batch(rng: &mut StdRng, asked: &[Ns]) -> Vec<Pkt> {
    if rng.random_bool(0.12) {
        // The same CONNECT several times in one POST.
        let connect = Pkt::Connect(namespace(rng), auth(rng));
        return vec![connect; rng.random_range(2..=5)];
    }
    (0..rng.random_range(1..=3))
        .map(|_| packet(rng, asked))
        .collect()
}

fn auth(rng: &mut StdRng) -> Auth {
    if rng.random_bool(0.22) {
        let n = rng.random_range(0..8);
        let pid = pick(
            rng,
            &[
                (60, PidPick::Same(n)),
                (25, PidPick::Other(n)),
                (15, PidPick::Unknown),
            ],
        );
        let offset = pick(
            rng,
            &[
                (70, OffsetPick::Last),
                (20, OffsetPick::First),
                (10, OffsetPick::Garbage),
            ],
        );
        return Auth::Recover(pid, offset);
    }
    pick(
        rng,
        &[
            (30, Auth::None),
            (45, Auth::Token("ok")),
            (15, Auth::Token("no")),
            (10, Auth::Token("bad")),
        ],
    )
}

fn packet(rng: &mut StdRng, asked: &[Ns]) -> Pkt {
    let joined = |rng: &mut StdRng| match asked.len() {
        0 => namespace(rng),
        n if rng.random_bool(0.85) => asked[rng.random_range(0..n)],
        _ => namespace(rng),
    };
    let kind = rng.random_range(0..100);
    match kind {
        0..=29 => Pkt::Connect(namespace(rng), auth(rng)),
        30..=39 => Pkt::Disconnect(joined(rng)),
        40..=41 => Pkt::Ping,
        42..=45 => Pkt::Pong,
        46..=47 => Pkt::Noop,
        48..=51 => Pkt::Malformed(rng.random_range(0..MALFORMED.len())),
        52..=53 => Pkt::EngineClose,
        54..=58 => Pkt::BinaryEvent(
            joined(rng),
            rng.random_bool(0.5).then(|| rng.random_range(0..20)),
        ),
        _ => {
            let room = rng.random_range(0..3);
            let ev = pick(
                rng,
                &[
                    (14, Ev::Join(room)),
                    (8, Ev::Leave(room)),
                    (8, Ev::JoinLater(room)),
                    (12, Ev::ToRoom(room)),
                    (10, Ev::Broadcast),
                    (10, Ev::Ask),
                    (6, Ev::AskRoom(room)),
                    (10, Ev::Echo),
                    (5, Ev::Kick),
                    (2, Ev::Close),
                    (4, Ev::Unknown),
                ],
            );
            let ack = rng.random_bool(0.5).then(|| rng.random_range(0..20));
            Pkt::Event(joined(rng), ev, ack)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The servers
// ---------------------------------------------------------------------------------------------

/// What the handlers tell the test, shared by the nodes of a sequence.
#[derive(Debug, Default)]
struct Probe {
    /// `Socket`s not dropped yet (each one seen by a middleware or a connect handler).
    alive: AtomicIsize,
    /// Handlers waiting for a client's ack.
    awaiting: AtomicIsize,
}

/// Counted in [`Probe::alive`] until the socket whose extensions hold it is dropped.
struct Alive(Arc<Probe>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.alive.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Counted in [`Probe::awaiting`] while a handler waits for an ack.
struct Awaiting(Arc<Probe>);

impl Drop for Awaiting {
    fn drop(&mut self) {
        self.0.awaiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Probe {
    /// Counts `socket` until it is dropped (once: a second token replaces the first).
    fn track(self: &Arc<Self>, socket: &SocketRef) {
        self.alive.fetch_add(1, Ordering::SeqCst);
        socket.extensions.insert(Alive(self.clone()));
    }

    fn awaiting(self: &Arc<Self>) -> Awaiting {
        self.awaiting.fetch_add(1, Ordering::SeqCst);
        Awaiting(self.clone())
    }
}

/// The event handlers every namespace has.
fn handlers(ns: Namespace) -> Namespace {
    ns.on_connect(
        |socket: SocketRef, State(probe): State<Arc<Probe>>| async move {
            probe.track(&socket);
            socket.join("lobby");
            // An ack the client may give or not: pending on the server meanwhile.
            let _waiting = probe.awaiting();
            let _ = socket.emit_with_ack::<Value, _>("hello", &()).await;
        },
    )
    .on_disconnecting(|socket: SocketRef| async move {
        let _ = socket.within("lobby").emit("bye", &1);
    })
    .on(
        "join",
        |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
            socket.join(room);
            let _ = ack.send(&());
        },
    )
    .on(
        "leave",
        |socket: SocketRef, Data(room): Data<String>, ack: AckSender| async move {
            socket.leave(room);
            let _ = ack.send(&());
        },
    )
    .on(
        "join-later",
        |socket: SocketRef, Data(room): Data<String>| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            socket.join(room);
        },
    )
    .on(
        "to-room",
        |socket: SocketRef, Data(room): Data<String>| async move {
            let _ = socket.within(room).emit("room", &1);
        },
    )
    .on("broadcast", |socket: SocketRef| async move {
        let _ = socket.namespace().emit("all", &1);
    })
    .on(
        "ask",
        |socket: SocketRef, State(probe): State<Arc<Probe>>| async move {
            let _waiting = probe.awaiting();
            let _ = socket.emit_with_ack::<Value, _>("ask", &1).await;
        },
    )
    .on(
        "ask-room",
        |socket: SocketRef, Data(room): Data<String>, State(probe): State<Arc<Probe>>| async move {
            let _waiting = probe.awaiting();
            let _ = socket
                .within(room)
                .emit_with_ack::<Value, _>("ask", &1)
                .await;
        },
    )
    .on("echo", |args: Args, ack: AckSender| async move {
        let _ = ack.send(&args);
    })
    .on("kick", |socket: SocketRef| async move {
        socket.disconnect();
    })
    .on("close", |socket: SocketRef| async move {
        socket.close();
    })
}

fn app(backend: Option<Watched>, probe: Arc<Probe>) -> SocketIo {
    let sync = Namespace::new("/sync").middleware(
        |socket: SocketRef, Data(auth): Data<Value>, State(probe): State<Arc<Probe>>| async move {
            probe.track(&socket);
            if auth["token"] == "bad" {
                Err(ConnectError::new("refused"))
            } else {
                Ok(())
            }
        },
    );
    let slow = Namespace::new("/async").middleware(
        |socket: SocketRef, Data(auth): Data<Value>, State(probe): State<Arc<Probe>>| async move {
            probe.track(&socket);
            tokio::time::sleep(Duration::from_millis(3)).await;
            if auth["token"] == "ok" {
                Ok(())
            } else {
                Err(ConnectError::new("no token"))
            }
        },
    );
    let builder = SocketIo::builder()
        .engine(|e| {
            e.ping_interval(PING_INTERVAL)
                .ping_timeout(PING_TIMEOUT)
                .upgrade_timeout(UPGRADE_TIMEOUT)
        })
        .connect_timeout(CONNECT_TIMEOUT)
        .ack_timeout(ACK_TIMEOUT)
        .connection_state_recovery(RecoveryConfig::default().max_disconnection_duration(RECOVERY))
        .with_state(probe)
        .namespace(handlers(Namespace::new("/")))
        .namespace(handlers(sync))
        .namespace(handlers(slow))
        .dynamic_namespace(
            |path| path.starts_with("/dyn-"),
            handlers(Namespace::new("/dyn-*")),
        );
    match backend {
        Some(backend) => builder.adapter(backend).build(),
        None => builder.build(),
    }
}

/// Rooms a node has, by namespace, as the backend is told of them: +1 when created, -1 when
/// deleted (counts, not a set, so that two threads' calls may arrive in either order).
type RoomWatch = Arc<Mutex<BTreeMap<(String, Room), i64>>>;

/// A `MemoryCluster` node that also follows the node's room index.
#[derive(Debug, Clone)]
struct Watched {
    inner: MemoryNode,
    rooms: RoomWatch,
}

impl Backend for Watched {
    fn register(&self, ns: &str, handler: Weak<dyn RequestHandler>) {
        self.inner.register(ns, handler);
    }

    fn publish(&self, ns: &str, request: ClusterRequest) {
        self.inner.publish(ns, request);
    }

    fn request(
        &self,
        ns: &str,
        request: ClusterRequest,
        timeout: Duration,
    ) -> BackendFuture<Vec<ClusterResponse>> {
        self.inner.request(ns, request, timeout)
    }

    fn server_count(&self) -> BackendFuture<usize> {
        self.inner.server_count()
    }

    fn rooms_changed(&self, ns: &str, created: &[Room], deleted: &[Room]) {
        {
            let mut rooms = self.rooms.lock().unwrap_or_else(PoisonError::into_inner);
            for (room, change) in created
                .iter()
                .map(|r| (r, 1))
                .chain(deleted.iter().map(|r| (r, -1)))
            {
                let key = (ns.to_owned(), room.clone());
                let count = rooms.entry(key.clone()).or_default();
                *count += change;
                if *count == 0 {
                    rooms.remove(&key);
                }
            }
        }
        self.inner.rooms_changed(ns, created, deleted);
    }

    fn listen_node(&self, node_id: u32, receiver: Weak<dyn NodeReceiver>) -> bool {
        self.inner.listen_node(node_id, receiver)
    }

    fn send_to_node(&self, node_id: u32, message: Bytes) -> BackendFuture<bool> {
        self.inner.send_to_node(node_id, message)
    }

    fn node_listens(&self, node_id: u32) -> BackendFuture<bool> {
        self.inner.node_listens(node_id)
    }

    fn close(&self) {
        self.inner.close();
    }
}

struct Node {
    io: SocketIo,
    addr: SocketAddr,
    rooms: Option<RoomWatch>,
    server: actix_web::dev::ServerHandle,
}

/// The servers of one sequence.
struct Deployment {
    nodes: Vec<Node>,
    probe: Arc<Probe>,
}

impl Deployment {
    fn start(topology: Topology, plan: &Plan) -> Self {
        let probe = Arc::new(Probe::default());
        let cluster = MemoryCluster::default();
        let nodes = (0..topology.nodes())
            .map(|n| {
                let rooms = plan.watched.then(RoomWatch::default);
                let backend = rooms.clone().map(|rooms| Watched {
                    inner: cluster.node(),
                    rooms,
                });
                let io = app(backend, probe.clone());
                let served = io.clone();
                let running = common::start_stoppable_on(plan.http[n], move || {
                    move |cfg: &mut ServiceConfig| {
                        cfg.service(served.service());
                    }
                });
                Node {
                    io,
                    addr: running.addr,
                    rooms,
                    server: running.handle,
                }
            })
            .collect();
        Deployment { nodes, probe }
    }

    async fn stop(self) {
        for node in &self.nodes {
            node.server.stop(false).await;
        }
    }

    /// What is left on the nodes; empty when they are back to nothing.
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        for (n, node) in self.nodes.iter().enumerate() {
            let metrics = node.io.metrics();
            for (ns, count) in metrics.sockets.iter().filter(|(_, count)| *count > 0) {
                let ids: Vec<String> = node
                    .io
                    .of(ns)
                    .map(|ops| ops.sockets().iter().map(|s| s.id().to_string()).collect())
                    .unwrap_or_default();
                left.push(format!("node {n}: {count} socket(s) in {ns} {ids:?}"));
            }
            for (ns, count) in metrics.rooms.iter().filter(|(_, count)| *count > 0) {
                left.push(format!("node {n}: {count} room(s) in {ns}"));
            }
            if metrics.pending_acks > 0 {
                left.push(format!("node {n}: {} ack(s) pending", metrics.pending_acks));
            }
            if metrics.traffic.sessions > 0 {
                left.push(format!(
                    "node {n}: {} Engine.IO session(s)",
                    metrics.traffic.sessions
                ));
            }
            if let Some(forwarding) = metrics.forwarding.filter(|f| f.tunnels > 0) {
                left.push(format!("node {n}: {} tunnel end(s)", forwarding.tunnels));
            }
            if let Some(rooms) = &node.rooms {
                let rooms = rooms.lock().unwrap_or_else(PoisonError::into_inner);
                if !rooms.is_empty() {
                    left.push(format!(
                        "node {n}: rooms the backend was told were created, not deleted: {rooms:?}"
                    ));
                }
            }
        }
        let alive = self.probe.alive.load(Ordering::SeqCst);
        if alive != 0 {
            left.push(format!("{alive} Socket(s) not dropped"));
        }
        let awaiting = self.probe.awaiting.load(Ordering::SeqCst);
        if awaiting != 0 {
            left.push(format!("{awaiting} handler(s) still waiting for an ack"));
        }
        left
    }
}

// ---------------------------------------------------------------------------------------------
// Panics
// ---------------------------------------------------------------------------------------------

/// Every panic of the process (server threads and handler tasks included), with its message.
static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn watch_panics() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(info.to_string());
            previous(info);
        }));
    });
}

fn panics() -> Vec<String> {
    PANICS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

// ---------------------------------------------------------------------------------------------
// Playing a sequence
// ---------------------------------------------------------------------------------------------

/// Why a sequence failed.
#[derive(Debug)]
struct Failure {
    /// The rule broken; shrinking keeps it.
    kind: &'static str,
    detail: String,
    transcript: Vec<String>,
}

fn failure(kind: &'static str, detail: impl Into<String>) -> Failure {
    Failure {
        kind,
        detail: detail.into(),
        transcript: Vec::new(),
    }
}

/// Plays what `keep` keeps of `plan` on fresh servers, then checks that they are back to
/// nothing.
async fn run_plan(topology: Topology, plan: &Plan, keep: &Keep) -> Result<(), Failure> {
    let deployment = Deployment::start(topology, plan);
    let panics_before = panics().len();
    let mut run = Run::new(&deployment);
    let mut result = Ok(());
    for (i, action) in plan.kept(keep) {
        run.note(format!("#{i} {action:?}"));
        result = run.act(&action).await.and_then(|()| run.unique_ids());
        if result.is_err() {
            break;
        }
    }
    let absorbed = run.absorb();
    run.teardown(&plan.close_at_end).await;
    let result = result.and(absorbed).and(run.absorb());
    let result = match result {
        Ok(()) => run.nodes_still_serve().await,
        err => err,
    };
    let result = match result {
        Ok(()) => settle(&deployment).await,
        err => err,
    };
    let new_panics: Vec<String> = panics().split_off(panics_before);
    let result = match result {
        Ok(()) if !new_panics.is_empty() => Err(failure(
            "panic",
            format!(
                "panics while the sequence ran (other sequences run at the same time: replay it alone to confirm): {new_panics:#?}"
            ),
        )),
        other => other,
    };
    let transcript = std::mem::take(&mut run.transcript);
    run.count("sequences");
    record_coverage(topology, &run.counts);
    if std::env::var_os("SIO_FUZZ_TRACE").is_some() {
        println!(
            "sequence {:#x} ({}): {:?}\n  {}",
            plan.seed,
            topology.test_name(),
            result.as_ref().map_err(|f| f.kind),
            transcript.join("\n  ")
        );
    }
    drop(run);
    deployment.stop().await;
    result.map_err(|mut f| {
        f.transcript = transcript;
        f
    })
}

fn record_coverage(topology: Topology, counts: &Counts) {
    let mut coverage = COVERAGE[topology as usize]
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    for (what, n) in counts {
        *coverage.entry(what).or_default() += n;
    }
}

/// Waits (boundedly) until the nodes are back to nothing.
async fn settle(deployment: &Deployment) -> Result<(), Failure> {
    let deadline = Instant::now() + SETTLE;
    loop {
        let left = deployment.leftovers();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failure(
                "leak",
                format!(
                    "{} s after every client left, the nodes still hold: {}",
                    SETTLE.as_secs(),
                    left.join("; ")
                ),
            ));
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}

type Inbox = Rc<RefCell<Vec<String>>>;
type WsSink = Rc<tokio::sync::Mutex<SplitSink<Ws, WsMessage>>>;

/// One WebSocket: its writing half, and the task that reads it into the session's inbox.
struct WsConn {
    sink: WsSink,
    reader: JoinHandle<()>,
    ended: Rc<Cell<bool>>,
}

impl WsConn {
    fn start(ws: Ws, inbox: Inbox, pong: bool) -> Self {
        let (sink, stream) = ws.split();
        let sink = Rc::new(tokio::sync::Mutex::new(sink));
        let ended = Rc::new(Cell::new(false));
        let reader =
            actix_web::rt::spawn(read_ws(stream, sink.clone(), inbox, ended.clone(), pong));
        WsConn {
            sink,
            reader,
            ended,
        }
    }

    async fn send(&self, message: WsMessage) -> bool {
        let mut sink = self.sink.lock().await;
        sink.send(message).await.is_ok()
    }
}

impl Drop for WsConn {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_ws(
    mut stream: SplitStream<Ws>,
    sink: WsSink,
    inbox: Inbox,
    ended: Rc<Cell<bool>>,
    pong: bool,
) {
    while let Some(Ok(frame)) = stream.next().await {
        match frame {
            Frame::Text(text) => {
                let text = String::from_utf8_lossy(&text).into_owned();
                if text == "2" && pong {
                    let _ = sink.lock().await.send(WsMessage::Text("3".into())).await;
                }
                inbox.borrow_mut().push(text);
            }
            Frame::Ping(data) => {
                let _ = sink.lock().await.send(WsMessage::Pong(data)).await;
            }
            Frame::Close(_) => break,
            _ => {}
        }
    }
    ended.set(true);
}

enum Primary {
    Polling,
    Ws(WsConn),
}

/// One Engine.IO session of a client, as the client sees it.
struct Session {
    sid: String,
    inbox: Inbox,
    primary: Primary,
    probe: Option<WsConn>,
    poller: Option<JoinHandle<()>>,
    poll_ended: Rc<Cell<bool>>,
    /// POSTs of one client go one at a time (an overlapping POST closes the session).
    posting: Rc<tokio::sync::Mutex<()>>,
    /// Other requests to cancel with the session (overlapping polls).
    extra: Vec<JoinHandle<()>>,
    /// CONNECT answers and DISCONNECTs (either way) by namespace.
    connects: HashMap<String, usize>,
    disconnects: HashMap<String, usize>,
    /// Acks the server asked for: namespace and id.
    server_acks: Vec<(String, u64)>,
}

impl Session {
    fn ended(&self) -> bool {
        match &self.primary {
            Primary::Polling => self.poll_ended.get(),
            Primary::Ws(ws) => ws.ended.get(),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Some(poller) = &self.poller {
            poller.abort();
        }
        for task in &self.extra {
            task.abort();
        }
    }
}

/// What the clients saw that later CONNECTs may reuse.
#[derive(Debug, Default)]
struct Seen {
    /// (namespace, pid) of every CONNECT answer with a pid.
    pids: Vec<(String, String)>,
    /// Namespace of every socket id given.
    sids: HashMap<String, String>,
    first_offset: Option<String>,
    last_offset: HashMap<String, String>,
    /// By client and namespace: the last pid the client was given, and the last offset it got
    /// after that.
    mine: HashMap<(usize, String), (String, Option<String>)>,
}

struct Run<'a> {
    deployment: &'a Deployment,
    http: awc::Client,
    sessions: BTreeMap<usize, Session>,
    seen: Seen,
    transcript: Vec<String>,
    counts: Counts,
}

type Counts = BTreeMap<&'static str, usize>;

/// A pid no server gave.
const UNKNOWN_PID: &str = "AAAAAAAAAAAAAAAAAAAAAA";

impl<'a> Run<'a> {
    fn new(deployment: &'a Deployment) -> Self {
        Run {
            deployment,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(5))
                .finish(),
            sessions: BTreeMap::new(),
            seen: Seen::default(),
            transcript: Vec::new(),
            counts: Counts::new(),
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.counts.entry(what).or_default() += 1;
    }

    fn note(&mut self, line: String) {
        if self.transcript.len() < 3000 {
            self.transcript.push(line);
        }
    }

    fn addr(&self, via: usize) -> SocketAddr {
        let nodes = &self.deployment.nodes;
        nodes[via % nodes.len()].addr
    }

    fn polling_url(&self, via: usize, sid: &str) -> String {
        format!(
            "http://{}/socket.io/?EIO=4&transport=polling&sid={sid}",
            self.addr(via)
        )
    }

    async fn act(&mut self, action: &Action) -> Result<(), Failure> {
        self.absorb()?;
        match action {
            &Action::Open {
                c,
                ws,
                via,
                pong,
                roam,
            } => {
                self.sessions.remove(&c);
                let opened = if ws {
                    self.open_ws(via, pong).await
                } else {
                    self.open_polling(via, pong, roam).await
                };
                match opened {
                    Ok(session) => {
                        self.count(if ws {
                            "sessions (websocket)"
                        } else {
                            "sessions (polling)"
                        });
                        self.note(format!("c{c} opened {}", session.sid));
                        self.sessions.insert(c, session);
                    }
                    Err(err) => self.note(format!("c{c} open failed: {err}")),
                }
            }
            Action::Send { c, via, packets } => {
                let texts: Vec<String> = packets.iter().flat_map(|p| self.encode(*c, p)).collect();
                if !self.send(*c, *via, texts).await {
                    return Ok(());
                }
                if packets.contains(&Pkt::Ping) {
                    self.ping_closes(*c).await?;
                    self.count("client pings (each closed its session)");
                }
            }
            &Action::AckServer { c, via, all } => {
                let Some(session) = self.sessions.get_mut(&c) else {
                    return Ok(());
                };
                let count = if all { session.server_acks.len() } else { 1 };
                let acks: Vec<String> = session
                    .server_acks
                    .drain(..count.min(session.server_acks.len()))
                    .map(|(ns, id)| match ns.as_str() {
                        "/" => format!(r#"43{id}["ok"]"#),
                        ns => format!(r#"43{ns},{id}["ok"]"#),
                    })
                    .collect();
                if !acks.is_empty() {
                    for _ in &acks {
                        self.count("acks given to the server");
                    }
                    self.send(c, via, acks).await;
                }
            }
            &Action::Probe { c, via } => {
                let addr = self.addr(via);
                let Some(session) = self.sessions.get_mut(&c) else {
                    return Ok(());
                };
                let url = format!(
                    "ws://{addr}/socket.io/?EIO=4&transport=websocket&sid={}",
                    session.sid
                );
                let line = match self.http.ws(url).connect().await {
                    Ok((_, ws)) => {
                        let probe = WsConn::start(ws, session.inbox.clone(), true);
                        let sent = probe.send(WsMessage::Text("2probe".into())).await;
                        session.probe = Some(probe);
                        *self.counts.entry("probes").or_default() += 1;
                        format!("c{c} probing via {via} (sent: {sent})")
                    }
                    Err(err) => format!("c{c} upgrade refused via {via}: {err}"),
                };
                self.note(line);
            }
            &Action::Upgrade { c } => {
                let Some(session) = self.sessions.get_mut(&c) else {
                    return Ok(());
                };
                if let Some(probe) = session.probe.take() {
                    let sent = probe.send(WsMessage::Text("5".into())).await;
                    session.primary = Primary::Ws(probe);
                    self.count("upgrades");
                    self.note(format!("c{c} -> 5 (sent: {sent})"));
                }
            }
            &Action::DropProbe { c, close_frame } => {
                if let Some(probe) = self.sessions.get_mut(&c).and_then(|s| s.probe.take()) {
                    if close_frame {
                        probe.send(WsMessage::Close(None)).await;
                    }
                    drop(probe);
                }
            }
            &Action::DoublePoll { c, via } => {
                let Some(sid) = self.sessions.get(&c).map(|s| s.sid.clone()) else {
                    return Ok(());
                };
                let url = self.polling_url(via, &sid);
                let http = self.http.clone();
                let task = actix_web::rt::spawn(async move {
                    let _ = get(&http, &url).await;
                });
                if let Some(session) = self.sessions.get_mut(&c) {
                    session.extra.push(task);
                }
            }
            &Action::Close { c, via } => {
                self.send(c, via, vec!["1".into()]).await;
            }
            &Action::Abort { c } => {
                if self.sessions.remove(&c).is_some() {
                    self.count("clients dropping their connections");
                    self.note(format!("c{c} dropped its connections"));
                }
            }
            Action::SendOnProbe { c, packets } => {
                let texts: Vec<String> = packets.iter().flat_map(|p| self.encode(*c, p)).collect();
                if let Some(probe) = self.sessions.get(c).and_then(|s| s.probe.as_ref()) {
                    let sent = send_ws(probe, &texts).await;
                    self.note(format!("c{c} -> probe WS {texts:?}: {sent} sent"));
                }
            }
            &Action::Server { node, ns, op } => self.server_op(node, ns, op).await,
            &Action::Wait { ms } => {
                actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
            }
        }
        Ok(())
    }

    async fn open_polling(
        &mut self,
        via: usize,
        pong: bool,
        roam: bool,
    ) -> Result<Session, String> {
        let url = format!(
            "http://{}/socket.io/?EIO=4&transport=polling",
            self.addr(via)
        );
        let (status, body) = get(&self.http, &url).await?;
        if status != 200 {
            return Err(format!("{status} {body}"));
        }
        let sid = sid_of(&body).ok_or_else(|| format!("no sid in {body}"))?;
        let nodes = self.deployment.nodes.len();
        let vias: Vec<usize> = if roam {
            (0..nodes).map(|n| (via + n) % nodes).collect()
        } else {
            vec![via]
        };
        let urls: Vec<String> = vias.iter().map(|v| self.polling_url(*v, &sid)).collect();
        let inbox = Inbox::default();
        let poll_ended = Rc::new(Cell::new(false));
        let posting = Rc::new(tokio::sync::Mutex::new(()));
        let poller = actix_web::rt::spawn(poll(
            self.http.clone(),
            urls,
            inbox.clone(),
            poll_ended.clone(),
            pong.then(|| posting.clone()),
        ));
        Ok(Session {
            sid,
            inbox,
            primary: Primary::Polling,
            probe: None,
            poller: Some(poller),
            poll_ended,
            posting,
            extra: Vec::new(),
            connects: HashMap::new(),
            disconnects: HashMap::new(),
            server_acks: Vec::new(),
        })
    }

    async fn open_ws(&mut self, via: usize, pong: bool) -> Result<Session, String> {
        let url = format!(
            "ws://{}/socket.io/?EIO=4&transport=websocket",
            self.addr(via)
        );
        let (_, mut ws) = self
            .http
            .ws(url)
            .connect()
            .await
            .map_err(|e| e.to_string())?;
        let open = match tokio::time::timeout(Duration::from_secs(5), ws.next()).await {
            Ok(Some(Ok(Frame::Text(text)))) => String::from_utf8_lossy(&text).into_owned(),
            other => return Err(format!("no open packet: {other:?}")),
        };
        let sid = sid_of(&open).ok_or_else(|| format!("no sid in {open}"))?;
        let inbox = Inbox::default();
        Ok(Session {
            sid,
            inbox: inbox.clone(),
            primary: Primary::Ws(WsConn::start(ws, inbox, pong)),
            probe: None,
            poller: None,
            poll_ended: Rc::new(Cell::new(true)),
            posting: Rc::default(),
            extra: Vec::new(),
            connects: HashMap::new(),
            disconnects: HashMap::new(),
            server_acks: Vec::new(),
        })
    }

    /// Sends `packets` on client `c`'s transport: one POST through node `via`, or one frame
    /// each. `false` when the client has no session.
    async fn send(&mut self, c: usize, via: usize, packets: Vec<String>) -> bool {
        for packet in &packets {
            if let Some(ns) = client_disconnect(packet) {
                // A DISCONNECT the client sends allows one more CONNECT answer.
                if let Some(session) = self.sessions.get_mut(&c) {
                    *session.disconnects.entry(ns).or_default() += 1;
                }
            }
        }
        let Some(session) = self.sessions.get(&c) else {
            return false;
        };
        let line = match &session.primary {
            Primary::Polling => {
                let url = self.polling_url(via, &session.sid);
                let posting = session.posting.clone();
                let _one_at_a_time = posting.lock().await;
                let body = packets.join("\u{1e}");
                match post(&self.http, &url, body).await {
                    Ok((status, answer)) => {
                        format!("c{c} -> POST via {via} {packets:?}: {status} {answer}")
                    }
                    Err(err) => format!("c{c} -> POST via {via} {packets:?}: {err}"),
                }
            }
            Primary::Ws(ws) => {
                let sent = send_ws(ws, &packets).await;
                format!("c{c} -> WS {packets:?}: {sent} sent")
            }
        };
        self.note(line);
        true
    }

    /// A client ping must close the session (Engine.IO v4 clients never ping; Node closes).
    async fn ping_closes(&mut self, c: usize) -> Result<(), Failure> {
        let deadline = Instant::now() + PING_CLOSES_WITHIN;
        loop {
            let Some(session) = self.sessions.get(&c) else {
                return Ok(());
            };
            if session.ended() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(failure(
                    "client ping",
                    format!(
                        "c{c}'s session {} is still open {} s after the client sent a ping (2)",
                        session.sid,
                        PING_CLOSES_WITHIN.as_secs()
                    ),
                ));
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The text of one Engine.IO packet.
    fn encode(&self, c: usize, packet: &Pkt) -> Vec<String> {
        let text = match *packet {
            Pkt::Connect(ns, auth) => {
                let payload = match auth {
                    Auth::None => String::new(),
                    Auth::Token(token) => json!({ "token": token }).to_string(),
                    Auth::Recover(pid, offset) => {
                        self.recovery_auth(c, ns, pid, offset).to_string()
                    }
                };
                format!("40{}{payload}", ns.prefix())
            }
            Pkt::Disconnect(ns) => format!("41{}", ns.prefix()),
            Pkt::Event(ns, ev, ack) => {
                let ack = ack.map(|id| id.to_string()).unwrap_or_default();
                format!("42{}{ack}{}", ns.prefix(), ev.json())
            }
            Pkt::Ping => "2".into(),
            Pkt::Pong => "3".into(),
            Pkt::Noop => "6".into(),
            Pkt::Malformed(n) => MALFORMED[n % MALFORMED.len()].into(),
            Pkt::EngineClose => "1".into(),
            Pkt::BinaryEvent(ns, ack) => {
                let ack = ack.map(|id| id.to_string()).unwrap_or_default();
                let event = format!(
                    r#"451-{}{ack}["echo",{{"_placeholder":true,"num":0}}]"#,
                    ns.prefix()
                );
                return vec![event, ATTACHMENT.0.into()];
            }
        };
        vec![text]
    }

    /// What the application does from outside the handlers.
    async fn server_op(&mut self, node: usize, ns: Ns, op: ServerOp) {
        let io = self.deployment.nodes[node % self.deployment.nodes.len()]
            .io
            .clone();
        let Some(all) = io.of(&ns.path()) else {
            self.note(format!("node {node} has no namespace {}", ns.path()));
            return;
        };
        let within = |room: Option<u8>| match room {
            Some(r) => all.clone().to(format!("r{r}")),
            None => all.clone(),
        };
        let outcome = match op {
            ServerOp::Emit(room) => {
                self.count("server broadcasts");
                format!("{:?}", within(room).emit("srv", &1))
            }
            ServerOp::EmitWithAck(room) => {
                self.count("server broadcasts with acks");
                let waiting = self.deployment.probe.awaiting();
                let acks = within(room).emit_with_ack::<Value, _>("srv-ask", &1);
                actix_web::rt::spawn(async move {
                    let _waiting = waiting;
                    let _ = acks.await;
                });
                "asked".into()
            }
            ServerOp::Join(room, other) => {
                within(room).join(format!("r{other}"));
                "joined".into()
            }
            ServerOp::Leave(room, other) => {
                within(room).leave(format!("r{other}"));
                "left".into()
            }
            ServerOp::Disconnect(room) => {
                within(room).disconnect();
                "disconnected".into()
            }
            ServerOp::Fetch(room) => {
                let fetch = within(room).fetch_sockets();
                match tokio::time::timeout(Duration::from_secs(5), fetch).await {
                    Ok(Ok(sockets)) => format!("{} socket(s)", sockets.len()),
                    other => format!("{other:?}"),
                }
            }
        };
        self.note(format!("node {node} {op:?} on {}: {outcome}", ns.path()));
    }

    fn recovery_auth(&self, c: usize, ns: Ns, pid: PidPick, offset: OffsetPick) -> Value {
        let path = ns.path();
        let mine = self.seen.mine.get(&(c, path.clone()));
        let chosen = |same: bool, n: usize| {
            let candidates: Vec<&(String, String)> = self
                .seen
                .pids
                .iter()
                .filter(|(p, _)| (*p == path) == same)
                .collect();
            (!candidates.is_empty()).then(|| candidates[n % candidates.len()].clone())
        };
        let own = pid == PidPick::Mine;
        let (pid_ns, pid) = match pid {
            PidPick::Mine => mine.map(|(pid, _)| (path.clone(), pid.clone())),
            PidPick::Same(n) => chosen(true, n),
            PidPick::Other(n) => chosen(false, n),
            PidPick::Unknown => None,
        }
        .unwrap_or_else(|| (path.clone(), UNKNOWN_PID.to_owned()));
        let offset = match offset {
            OffsetPick::Last => mine
                .filter(|_| own)
                .and_then(|(_, offset)| offset.clone())
                .or_else(|| self.seen.last_offset.get(&pid_ns).cloned()),
            OffsetPick::First => self.seen.first_offset.clone(),
            OffsetPick::Garbage => Some("x-y".to_owned()),
        }
        .unwrap_or_else(|| "0".to_owned());
        json!({ "pid": pid, "offset": offset })
    }

    /// Reads what the sessions received, checking the rules on the way.
    fn absorb(&mut self) -> Result<(), Failure> {
        let mut lines = Vec::new();
        let mut result = Ok(());
        for (c, session) in &mut self.sessions {
            let packets: Vec<String> = session.inbox.borrow_mut().drain(..).collect();
            for packet in packets {
                lines.push(format!("c{c} <- {packet}"));
                if result.is_ok() {
                    result = received(*c, session, &mut self.seen, &mut self.counts, &packet);
                }
            }
        }
        for line in lines {
            self.note(line);
        }
        result
    }

    /// No two live sockets of a namespace have one id, on any node: a recovered socket must not
    /// live beside the one it was recovered from.
    fn unique_ids(&self) -> Result<(), Failure> {
        let mut live: HashMap<(String, String), usize> = HashMap::new();
        for (n, node) in self.deployment.nodes.iter().enumerate() {
            for (ns, _) in node.io.metrics().sockets {
                let sockets = node.io.of(&ns).map(|ops| ops.sockets()).unwrap_or_default();
                for socket in sockets {
                    let id = socket.id().to_string();
                    if let Some(other) = live.insert((ns.clone(), id.clone()), n) {
                        return Err(failure(
                            "duplicate socket id",
                            format!("socket {id} of {ns} is live on node {other} and on node {n}"),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every client goes: closed (`1`) or dropped, as the plan says.
    async fn teardown(&mut self, close_at_end: &[bool]) {
        let clients: Vec<usize> = self.sessions.keys().copied().collect();
        for c in clients {
            if close_at_end.get(c).copied().unwrap_or(false) {
                self.note(format!("end: c{c} closes"));
                self.send(c, c, vec!["1".into()]).await;
            } else {
                self.note(format!("end: c{c} drops its connections"));
            }
        }
        let _ = self.absorb();
        self.sessions.clear();
    }

    /// A fresh client on each node connects, gets an answer, and leaves.
    async fn nodes_still_serve(&mut self) -> Result<(), Failure> {
        for (n, node) in self.deployment.nodes.iter().enumerate() {
            if let Err(err) = still_serves(&self.http, node.addr).await {
                return Err(failure(
                    "node down",
                    format!("node {n} no longer serves a new client: {err}"),
                ));
            }
        }
        Ok(())
    }
}

/// The binary attachment of [`Pkt::BinaryEvent`], as polling sends it (`b` + base64) and as
/// its WebSocket frame carries it.
const ATTACHMENT: (&str, &[u8]) = ("bAQID", &[1, 2, 3]);

/// Sends Engine.IO packets as WebSocket frames (the attachment as a binary frame); how many
/// went.
async fn send_ws(ws: &WsConn, packets: &[String]) -> usize {
    let mut sent = 0;
    for packet in packets {
        let message = if packet == ATTACHMENT.0 {
            WsMessage::Binary(Bytes::from_static(ATTACHMENT.1))
        } else {
            WsMessage::Text(packet.clone().into())
        };
        if ws.send(message).await {
            sent += 1;
        }
    }
    sent
}

/// The namespace of a DISCONNECT packet the client sends.
fn client_disconnect(packet: &str) -> Option<String> {
    let rest = packet.strip_prefix("41")?;
    if rest.is_empty() {
        return Some("/".into());
    }
    rest.starts_with('/')
        .then(|| rest.split(',').next().unwrap_or(rest).to_owned())
}

/// A Socket.IO packet from the server.
struct Received {
    kind: u8,
    ns: String,
    id: Option<u64>,
    data: Option<Value>,
}

fn parse(packet: &str) -> Option<Received> {
    let rest = packet.strip_prefix('4')?;
    let kind = rest.bytes().next()?.checked_sub(b'0')?;
    let mut rest = rest.get(1..)?;
    if kind == 5 || kind == 6 {
        rest = rest.get(rest.find('-')? + 1..)?;
    }
    let mut ns = "/";
    if rest.starts_with('/') {
        let end = rest.find(',').unwrap_or(rest.len());
        ns = &rest[..end];
        rest = rest.get(end + 1..).unwrap_or("");
    }
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let id = rest[..digits].parse().ok();
    let payload = &rest[digits..];
    Some(Received {
        kind,
        ns: ns.to_owned(),
        id,
        data: (!payload.is_empty())
            .then(|| serde_json::from_str(payload).ok())
            .flatten(),
    })
}

/// Acts on a packet client `c` received; an error when it breaks a rule.
fn received(
    c: usize,
    session: &mut Session,
    seen: &mut Seen,
    counts: &mut Counts,
    packet: &str,
) -> Result<(), Failure> {
    let Some(Received { kind, ns, id, data }) = parse(packet) else {
        return Ok(());
    };
    let mut count = |what| *counts.entry(what).or_default() += 1;
    match kind {
        0 => {
            let connects = session.connects.entry(ns.clone()).or_default();
            *connects += 1;
            let disconnects = session.disconnects.get(&ns).copied().unwrap_or(0);
            if *connects > 1 + disconnects {
                return Err(failure(
                    "duplicate CONNECT",
                    format!(
                        "c{c}'s session {} got {connects} CONNECT answers for {ns} with {disconnects} DISCONNECT(s) between: a CONNECT made a second socket on one connection (the last: {packet})",
                        session.sid
                    ),
                ));
            }
            let data = data.unwrap_or_default();
            if let Some(sid) = data["sid"].as_str() {
                if let Some(first) = seen.sids.get(sid).filter(|first| **first != ns) {
                    return Err(failure(
                        "cross-namespace recovery",
                        format!(
                            "c{c} got socket id {sid} in {ns}; it was a socket of {first}: a session was recovered into another namespace"
                        ),
                    ));
                }
                if seen.sids.insert(sid.to_owned(), ns.clone()).is_some() {
                    count("recovered sockets");
                }
            }
            count("CONNECT answers");
            if let Some(pid) = data["pid"].as_str() {
                seen.mine.insert((c, ns.clone()), (pid.to_owned(), None));
                seen.pids.push((ns, pid.to_owned()));
            }
        }
        1 => {
            count("DISCONNECTs from the server");
            *session.disconnects.entry(ns).or_default() += 1;
        }
        3 => count("acks of the client's events"),
        4 => count("CONNECT_ERROR answers"),
        2 => {
            // A broadcast's last argument is its offset (the payloads here are numbers).
            if let Some(Value::Array(args)) = &data
                && args.len() >= 3
                && let Some(Value::String(offset)) = args.last()
            {
                count("broadcasts received");
                seen.first_offset.get_or_insert_with(|| offset.clone());
                seen.last_offset.insert(ns.clone(), offset.clone());
                if let Some((_, mine)) = seen.mine.get_mut(&(c, ns.clone())) {
                    *mine = Some(offset.clone());
                }
            }
            if let Some(id) = id {
                count("acks asked by the server");
                session.server_acks.push((ns, id));
            }
        }
        _ => {}
    }
    Ok(())
}

fn sid_of(open: &str) -> Option<String> {
    let json: Value = serde_json::from_str(open.strip_prefix('0')?).ok()?;
    Some(json["sid"].as_str()?.to_owned())
}

async fn get(http: &awc::Client, url: &str) -> Result<(u16, String), String> {
    let mut res = http.get(url).send().await.map_err(|e| e.to_string())?;
    let body = res.body().await.map_err(|e| e.to_string())?;
    Ok((
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

async fn post(http: &awc::Client, url: &str, body: String) -> Result<(u16, String), String> {
    let mut res = http
        .post(url)
        .content_type("text/plain;charset=UTF-8")
        .send_body(body)
        .await
        .map_err(|e| e.to_string())?;
    let body = res.body().await.map_err(|e| e.to_string())?;
    Ok((
        res.status().as_u16(),
        String::from_utf8_lossy(&body).into_owned(),
    ))
}

/// Polls (through `urls` in turn) until the session ends, answering pings if `pong` (with the
/// session's POST lock).
async fn poll(
    http: awc::Client,
    urls: Vec<String>,
    inbox: Inbox,
    ended: Rc<Cell<bool>>,
    pong: Option<Rc<tokio::sync::Mutex<()>>>,
) {
    for url in urls.iter().cycle() {
        let body = match get(&http, url).await {
            Ok((200, body)) => body,
            _ => break,
        };
        let mut closed = false;
        for packet in body.split('\u{1e}') {
            if packet == "2"
                && let Some(posting) = &pong
            {
                let _one_at_a_time = posting.lock().await;
                let _ = post(&http, url, "3".into()).await;
            }
            closed |= packet == "1";
            inbox.borrow_mut().push(packet.to_owned());
        }
        if closed {
            break;
        }
    }
    ended.set(true);
}

/// A new WebSocket client connects to `/`, has an event acked, and closes.
async fn still_serves(http: &awc::Client, addr: SocketAddr) -> Result<(), String> {
    let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
    let (_, mut ws) = http.ws(url).connect().await.map_err(|e| e.to_string())?;
    let steps: [(Option<&str>, &str); 3] = [
        (None, "0{"),
        (Some("40"), "40{"),
        (Some(r#"421["echo",7]"#), "431[7]"),
    ];
    for (send, want) in steps {
        if let Some(text) = send {
            ws.send(WsMessage::Text(text.into()))
                .await
                .map_err(|e| e.to_string())?;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, ws.next()).await {
                Ok(Some(Ok(Frame::Text(text)))) if text.starts_with(want.as_bytes()) => break,
                Ok(Some(Ok(Frame::Text(text)))) if text == "2" => {
                    let _ = ws.send(WsMessage::Text("3".into())).await;
                }
                Ok(Some(Ok(_))) => {}
                other => return Err(format!("waiting for {want}: {other:?}")),
            }
        }
    }
    let _ = ws.send(WsMessage::Text("1".into())).await;
    let _ = ws.send(WsMessage::Close(None)).await;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Failures: shrinking and the report
// ---------------------------------------------------------------------------------------------

/// Shrinks the failing sequence (for at most `settings.shrink_for`: first whole actions, then
/// packets of the batches left) and describes it.
async fn report(
    topology: Topology,
    plan: &Plan,
    mut keep: Keep,
    first: Failure,
    settings: &Settings,
) -> String {
    let mut failure = first;
    let deadline = Instant::now() + settings.shrink_for;
    // Keeps `candidate` if it still fails the same way.
    let still_fails =
        async |candidate: &Keep, failure: &mut Failure| match run_plan(topology, plan, candidate)
            .await
        {
            Err(f) if f.kind == failure.kind => {
                *failure = f;
                true
            }
            _ => false,
        };
    let mut chunk = keep.len() / 2;
    while chunk >= 1 && Instant::now() < deadline {
        let mut start = 0;
        while start < keep.len() && Instant::now() < deadline {
            let mut candidate = keep.clone();
            candidate.drain(start..(start + chunk).min(keep.len()));
            if still_fails(&candidate, &mut failure).await {
                keep = candidate;
            } else {
                start += chunk;
            }
        }
        chunk /= 2;
    }
    for k in 0..keep.len() {
        let (action, _) = keep[k];
        let mut packets: Vec<usize> = (0..plan.batch_len(action)).collect();
        let mut p = 0;
        while packets.len() > 1 && p < packets.len() && Instant::now() < deadline {
            let mut fewer = packets.clone();
            fewer.remove(p);
            let mut candidate = keep.clone();
            candidate[k].1 = Some(fewer.clone());
            if still_fails(&candidate, &mut failure).await {
                packets = fewer;
                keep = candidate;
            } else {
                p += 1;
            }
        }
    }
    let mut text = String::new();
    let _ = writeln!(
        text,
        "{} ({:#x}, http {:?}, room index watched: {}): {}: {}",
        topology.test_name(),
        plan.seed,
        &plan.http[..topology.nodes()],
        plan.watched,
        failure.kind,
        failure.detail
    );
    let _ = writeln!(
        text,
        "replay: SIO_FUZZ_REPLAY={:#x}:{} cargo test -p sio-core --test stateful_fuzz {} -- --nocapture",
        plan.seed,
        format_keep(&keep),
        topology.test_name()
    );
    let _ = writeln!(
        text,
        "actions ({} of {}; at the end each client {}):",
        keep.len(),
        plan.actions.len(),
        describe_end(&plan.close_at_end)
    );
    for (i, action) in plan.kept(&keep) {
        let _ = writeln!(text, "  #{i} {action:?}");
    }
    let _ = writeln!(text, "transcript:");
    for line in failure.transcript.iter().take(400) {
        let _ = writeln!(text, "  {line}");
    }
    text
}

fn describe_end(close_at_end: &[bool]) -> String {
    close_at_end
        .iter()
        .enumerate()
        .map(|(c, close)| format!("c{c} {}", if *close { "closes" } else { "drops" }))
        .collect::<Vec<_>>()
        .join(", ")
}
