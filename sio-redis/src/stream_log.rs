//! The I/O of the streams protocol: appending entries (from a queue, pipelined, in order),
//! reading the stream on a connection of its own, and reading it back for a recovering client.
//!
//! The reader has a dedicated connection because `XREAD BLOCK` holds its connection for up
//! to the block time: on the pool it would starve the commands. It starts where the stream
//! ends, remembers the last id it read and resumes from there after a reconnection, so a
//! short loss of Redis loses no entry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use sio_core::{BackendFuture, BroadcastLog, LogPage, LoggedBroadcast};
use tokio::sync::watch;

use crate::adapter::unavailable;
use crate::sharded::Kind;
use crate::streams::{self, Entry};
use crate::target::{Connections, Target};

type Pool = bb8_redis::bb8::Pool<Connections>;

/// `XREAD`'s block time and batch size (Node's `blockTimeInMs` and `readCount`).
const BLOCK: Duration = Duration::from_secs(5);
const READ_COUNT: usize = 100;

/// What the reader hands its entries to.
pub(crate) trait Sink: Send + Sync {
    /// Entries read, in stream order.
    fn entries(&self, entries: Vec<Entry>);
    /// Every entry up to `id` was handed over (sent when the reader starts, then after every
    /// read, empty ones included).
    fn reached(&self, id: &str);
}

/// The handle of the reader task; the task ends when it is closed or dropped.
pub(crate) struct Reader {
    position: Arc<Mutex<Option<String>>>,
    started: watch::Receiver<bool>,
    stop: watch::Sender<bool>,
    reconnects: Arc<AtomicU64>,
}

impl Reader {
    /// Starts reading `key` where it ends now.
    pub(crate) fn start(target: Target, key: String, sink: Weak<dyn Sink>) -> Self {
        let (stop, stopped) = watch::channel(false);
        let (started_tx, started) = watch::channel(false);
        let reader = Reader {
            position: Arc::default(),
            started,
            stop,
            reconnects: Arc::default(),
        };
        let run = Run {
            target,
            key,
            sink,
            position: reader.position.clone(),
            started: started_tx,
            reconnects: reader.reconnects.clone(),
        };
        tokio::spawn(run.run(stopped));
        reader
    }

    /// The last id read, once the reader started.
    pub(crate) fn position(&self) -> Option<String> {
        self.position
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits until the reader knows where the stream ends, so that this node gets every
    /// entry added from now on.
    pub(crate) async fn started(&self) {
        let mut started = self.started.clone();
        let _ = started.wait_for(|s| *s).await;
    }

    pub(crate) fn close(&self) {
        let _ = self.stop.send(true);
    }

    /// Times the reader's connection was lost after it had been established.
    pub(crate) fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.close();
    }
}

struct Run {
    target: Target,
    key: String,
    sink: Weak<dyn Sink>,
    position: Arc<Mutex<Option<String>>>,
    started: watch::Sender<bool>,
    reconnects: Arc<AtomicU64>,
}

impl Run {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(50);
        loop {
            let reading = async {
                match self.connect().await {
                    Ok(conn) => {
                        delay = Duration::from_millis(50);
                        let err = self.read(conn).await;
                        self.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "sio::redis", %err, "stream reader connection lost; reconnecting");
                    }
                    Err(err) => {
                        tracing::warn!(target: "sio::redis", %err, ?delay, "cannot connect the stream reader; retrying");
                    }
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            };
            tokio::select! {
                () = reading => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    async fn connect(&self) -> Result<redis::aio::MultiplexedConnection, crate::Error> {
        let (connection, _) = self
            .target
            .multiplexed(BLOCK + Duration::from_secs(2))
            .await?;
        Ok(connection)
    }

    /// Reads until the connection fails; the error.
    async fn read(&self, mut conn: redis::aio::MultiplexedConnection) -> String {
        let mut position = self.current();
        if position.is_none() {
            // Where the stream ends now (`$` would hide it): entries added after it are read.
            let last: redis::Value = match redis::cmd("XREVRANGE")
                .arg(&self.key)
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1)
                .query_async(&mut conn)
                .await
            {
                Ok(last) => last,
                Err(err) => return err.to_string(),
            };
            let end = streams::range_entries(last)
                .pop()
                .map_or_else(|| "0-0".to_owned(), |e| e.id);
            self.advance(&end, Vec::new());
            position = Some(end);
            let _ = self.started.send(true);
        }
        let mut position = position.unwrap_or_else(|| "0-0".to_owned());
        loop {
            let reply: redis::Value = match redis::cmd("XREAD")
                .arg("BLOCK")
                .arg(u64::try_from(BLOCK.as_millis()).unwrap_or(5_000))
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("STREAMS")
                .arg(&self.key)
                .arg(&position)
                .query_async(&mut conn)
                .await
            {
                Ok(reply) => reply,
                Err(err) => return err.to_string(),
            };
            let entries = streams::read_entries(reply);
            if let Some(last) = entries.last() {
                position.clone_from(&last.id);
            }
            self.advance(&position, entries);
        }
    }

    fn current(&self) -> Option<String> {
        self.position
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn advance(&self, position: &str, entries: Vec<Entry>) {
        *self.position.lock().unwrap_or_else(PoisonError::into_inner) = Some(position.to_owned());
        if let Some(sink) = self.sink.upgrade() {
            if !entries.is_empty() {
                sink.entries(entries);
            }
            sink.reached(position);
        }
    }
}

/// An entry to append, and what to do if it cannot be.
pub(crate) struct Append {
    pub(crate) fields: Vec<(&'static str, Vec<u8>)>,
    /// Called when the entry could not be appended (a broadcast still reaches this node's
    /// sockets that way).
    pub(crate) failed: Option<Box<dyn FnOnce() + Send>>,
}

/// One pipeline of `XADD`s, in order.
pub(crate) fn appends(key: &str, max_len: u64, batch: &[Append]) -> redis::Pipeline {
    let mut pipe = redis::pipe();
    for append in batch {
        let cmd = pipe
            .cmd("XADD")
            .arg(key)
            .arg("MAXLEN")
            .arg("~")
            .arg(max_len)
            .arg("*");
        for (field, value) in &append.fields {
            cmd.arg(*field).arg(value.as_slice());
        }
        cmd.ignore();
    }
    pipe
}

/// The stream as the log of broadcasts recovering clients missed.
#[derive(Clone)]
pub(crate) struct StreamLog {
    pub(crate) pool: Pool,
    pub(crate) key: String,
}

impl std::fmt::Debug for StreamLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamLog")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl BroadcastLog for StreamLog {
    fn read_after(&self, ns: &str, offset: &str, count: usize) -> BackendFuture<Option<LogPage>> {
        let (pool, key, ns) = (self.pool.clone(), self.key.clone(), ns.to_owned());
        let next = streams::is_offset(offset)
            .then(|| streams::next_offset(offset))
            .flatten();
        let offset = offset.to_owned();
        Box::pin(async move {
            let Some(next) = next else {
                return Ok(None);
            };
            let mut conn = crate::adapter::patient_connection(&pool).await?;
            let (exists, after): (redis::Value, redis::Value) = redis::pipe()
                .cmd("XRANGE")
                .arg(&key)
                .arg(&offset)
                .arg(&offset)
                .cmd("XRANGE")
                .arg(&key)
                .arg(&next)
                .arg("+")
                .arg("COUNT")
                .arg(count)
                .query_async(&mut conn.inner)
                .await
                .map_err(unavailable)?;
            if streams::range_entries(exists).is_empty() {
                return Ok(None);
            }
            let entries = streams::range_entries(after);
            let more = entries.len() >= count;
            let last = entries.last().map(|e| e.id.clone());
            let broadcasts = entries
                .iter()
                .filter(|e| e.nsp() == Some(ns.as_str()) && e.is_broadcast())
                .filter_map(|e| match streams::decode_entry(e) {
                    Ok(Some(incoming)) => match incoming.message {
                        Kind::Broadcast(b) => Some(LoggedBroadcast::new(
                            e.id.clone(),
                            b.packet,
                            b.opts,
                            b.volatile,
                        )),
                        _ => None,
                    },
                    Ok(None) => None,
                    Err(err) => {
                        tracing::debug!(target: "sio::redis", id = %e.id, %err, "entry skipped");
                        None
                    }
                })
                .collect();
            Ok(Some(LogPage::new(broadcasts, last, more)))
        })
    }
}
