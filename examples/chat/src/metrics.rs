//! `GET /metrics` in Prometheus' text format: sio's counters (sessions, sockets per
//! namespace, Engine.IO packets and bytes, handler errors) and, on a cluster, the Redis
//! adapter's (publishes, receives, drops, reconnects, request count and time).
//!
//! sio keeps plain counters; they are copied into a `prometheus` registry at each scrape.

use std::sync::{Arc, Mutex, PoisonError};

use actix_web::{HttpResponse, web};
use prometheus::{
    Counter, Encoder as _, IntCounter, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};
use sio_core::SocketIo;
use sio_redis::RedisAdapter;

/// The registry and its metrics; one per process.
pub(crate) struct Metrics {
    io: SocketIo,
    redis: Option<RedisAdapter>,
    registry: Registry,
    sessions: IntGauge,
    sockets: IntGaugeVec,
    counters: Vec<(IntCounter, Getter)>,
    request_seconds: Counter,
    /// Scrapes take turns: each one resets the counters and sets them to the current totals.
    scrape: Mutex<()>,
}

/// The numbers of one scrape.
struct Snapshot {
    io: sio_core::Metrics,
    redis: sio_redis::RedisStats,
}

type Getter = fn(&Snapshot) -> u64;

impl Metrics {
    pub(crate) fn new(
        io: SocketIo,
        redis: Option<RedisAdapter>,
    ) -> Result<Arc<Self>, prometheus::Error> {
        let registry = Registry::new();
        let sessions = IntGauge::new("sio_sessions", "Engine.IO sessions open on this node")?;
        let sockets = IntGaugeVec::new(
            Opts::new(
                "sio_sockets",
                "Sockets connected on this node, by namespace",
            ),
            &["namespace"],
        )?;
        registry.register(Box::new(sessions.clone()))?;
        registry.register(Box::new(sockets.clone()))?;
        let mut defs: Vec<(&str, &str, Getter)> = vec![
            (
                "sio_packets_received_total",
                "Engine.IO packets received",
                |s| s.io.traffic.packets_in,
            ),
            ("sio_packets_sent_total", "Engine.IO packets sent", |s| {
                s.io.traffic.packets_out
            }),
            (
                "sio_bytes_received_total",
                "Engine.IO payload bytes received",
                |s| s.io.traffic.bytes_in,
            ),
            (
                "sio_bytes_sent_total",
                "Engine.IO payload bytes sent",
                |s| s.io.traffic.bytes_out,
            ),
            (
                "sio_handler_errors_total",
                "Handlers that returned an error",
                |s| s.io.handler_errors,
            ),
        ];
        if redis.is_some() {
            defs.extend([
                (
                    "sio_redis_published_total",
                    "Messages published to Redis",
                    (|s: &Snapshot| s.redis.published) as Getter,
                ),
                (
                    "sio_redis_received_total",
                    "Messages received from Redis",
                    |s| s.redis.received,
                ),
                (
                    "sio_redis_dropped_total",
                    "Messages that could not be published",
                    |s| s.redis.dropped,
                ),
                (
                    "sio_redis_reconnects_total",
                    "Subscriber connections lost (and re-established)",
                    |s| s.redis.reconnects,
                ),
                (
                    "sio_redis_requests_total",
                    "Requests that waited for other nodes",
                    |s| s.redis.requests,
                ),
                (
                    "sio_forwarded_requests_total",
                    "Polling requests and upgrades forwarded to the node owning their session",
                    |s| s.io.forwarding.map_or(0, |f| f.forwarded),
                ),
                (
                    "sio_forward_served_total",
                    "Polling requests and upgrades other nodes forwarded to this one",
                    |s| s.io.forwarding.map_or(0, |f| f.served),
                ),
                (
                    "sio_forward_failures_total",
                    "Forwarded requests that got no answer (unknown node, timeout, busy)",
                    |s| s.io.forwarding.map_or(0, |f| f.failures),
                ),
                (
                    "sio_tunnel_messages_total",
                    "WebSocket messages relayed through upgrade tunnels to or from other nodes",
                    |s| s.io.forwarding.map_or(0, |f| f.tunnel_messages),
                ),
            ]);
        }
        let mut counters = Vec::new();
        for (name, help, get) in defs {
            let counter = IntCounter::new(name, help)?;
            registry.register(Box::new(counter.clone()))?;
            counters.push((counter, get));
        }
        let request_seconds = Counter::new(
            "sio_redis_request_seconds_total",
            "Time spent waiting for other nodes' answers",
        )?;
        if redis.is_some() {
            registry.register(Box::new(request_seconds.clone()))?;
        }
        Ok(Arc::new(Metrics {
            io,
            redis,
            registry,
            sessions,
            sockets,
            counters,
            request_seconds,
            scrape: Mutex::new(()),
        }))
    }

    /// The text exposition of every metric, as of now.
    fn render(&self) -> Result<String, prometheus::Error> {
        let _turn = self.scrape.lock().unwrap_or_else(PoisonError::into_inner);
        let snapshot = Snapshot {
            io: self.io.metrics(),
            redis: self
                .redis
                .as_ref()
                .map(RedisAdapter::stats)
                .unwrap_or_default(),
        };
        self.sessions
            .set(i64::try_from(snapshot.io.traffic.sessions).unwrap_or(i64::MAX));
        for (namespace, count) in &snapshot.io.sockets {
            self.sockets
                .with_label_values(&[namespace.as_str()])
                .set(i64::try_from(*count).unwrap_or(i64::MAX));
        }
        for (counter, get) in &self.counters {
            counter.reset();
            counter.inc_by(get(&snapshot));
        }
        self.request_seconds.reset();
        self.request_seconds
            .inc_by(snapshot.redis.request_micros as f64 / 1e6);
        let mut out = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut out)?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    }
}

/// `GET /metrics`.
pub(crate) async fn route(metrics: web::Data<Arc<Metrics>>) -> HttpResponse {
    match metrics.render() {
        Ok(text) => HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4")
            .body(text),
        Err(err) => HttpResponse::InternalServerError().body(err.to_string()),
    }
}
