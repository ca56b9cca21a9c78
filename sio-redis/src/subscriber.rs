//! The dedicated subscriber connection: one TCP connection in subscribed mode (RESP2, so any
//! Redis works and `SSUBSCRIBE` is available on a standalone server), kept alive by a ping
//! every second, re-established with backoff when it fails, and subscribed again to everything
//! it had.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;

use crate::dial::Stream;
use crate::resp::{self, Frame, Published};
use crate::target::Target;
use crate::url::Addr;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::sync::{mpsc, oneshot};

/// A subscription, by its command.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Subscription {
    /// `SUBSCRIBE`
    Channel(String),
    /// `PSUBSCRIBE`
    Pattern(String),
    /// `SSUBSCRIBE` (sharded pub/sub, Redis 7+)
    Shard(String),
}

impl Subscription {
    fn command(&self, subscribe: bool) -> Vec<u8> {
        let (name, channel) = match (self, subscribe) {
            (Subscription::Channel(c), true) => ("SUBSCRIBE", c),
            (Subscription::Channel(c), false) => ("UNSUBSCRIBE", c),
            (Subscription::Pattern(p), true) => ("PSUBSCRIBE", p),
            (Subscription::Pattern(p), false) => ("PUNSUBSCRIBE", p),
            (Subscription::Shard(c), true) => ("SSUBSCRIBE", c),
            (Subscription::Shard(c), false) => ("SUNSUBSCRIBE", c),
        };
        redis::cmd(name).arg(channel).get_packed_command()
    }
}

enum Command {
    Subscribe(Subscription),
    Unsubscribe(Subscription),
    /// Answer once every subscription asked for before is confirmed.
    Confirmed(oneshot::Sender<()>),
    /// Close the connection for good (Redis then drops its subscriptions).
    Close,
}

/// The handle of the subscriber task. Messages arrive on the channel given to [`start`].
pub(crate) struct Subscriber {
    commands: mpsc::UnboundedSender<Command>,
    state: Arc<State>,
}

struct State {
    reconnects: AtomicU64,
}

/// Starts the subscriber task; it ends when the [`Subscriber`] is dropped.
pub(crate) fn start(target: Target, messages: mpsc::UnboundedSender<Published>) -> Subscriber {
    let (commands, rx) = mpsc::unbounded_channel();
    let state = Arc::new(State {
        reconnects: AtomicU64::new(0),
    });
    tokio::spawn(run(target, rx, messages, state.clone()));
    Subscriber { commands, state }
}

impl Subscriber {
    pub(crate) fn subscribe(&self, subscription: Subscription) {
        let _ = self.commands.send(Command::Subscribe(subscription));
    }

    pub(crate) fn unsubscribe(&self, subscription: Subscription) {
        let _ = self.commands.send(Command::Unsubscribe(subscription));
    }

    /// Closes the connection for good: this node stops receiving and stops being counted.
    pub(crate) fn close(&self) {
        let _ = self.commands.send(Command::Close);
    }

    /// Waits until Redis has confirmed every subscription asked for so far.
    pub(crate) async fn confirmed(&self) {
        self.confirmer().await;
    }

    /// The same as [`confirmed`](Self::confirmed), as a future that does not borrow the
    /// handle (asked for now, awaited later).
    pub(crate) fn confirmer(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let sent = self.commands.send(Command::Confirmed(tx)).is_ok();
        async move {
            if sent {
                let _ = rx.await;
            }
        }
    }

    /// Times the connection was lost after it had been established.
    pub(crate) fn reconnects(&self) -> u64 {
        self.state.reconnects.load(Ordering::Relaxed)
    }
}

/// Connects, subscribes, reads; again after every failure, until the handle is dropped.
async fn run(
    target: Target,
    mut commands: mpsc::UnboundedReceiver<Command>,
    messages: mpsc::UnboundedSender<Published>,
    state: Arc<State>,
) {
    let mut subscriptions = BTreeSet::new();
    let mut waiters = Vec::new();
    let mut delay = Duration::from_millis(50);
    loop {
        // A Sentinel target may name another master after a failover.
        match target.open().await {
            Ok((stream, addr)) => {
                delay = Duration::from_millis(50);
                let at = Connected {
                    target: &target,
                    addr: &addr,
                };
                let ended = serve(
                    stream,
                    at,
                    &mut subscriptions,
                    &mut waiters,
                    &mut commands,
                    &messages,
                )
                .await;
                match ended {
                    Ended::HandleDropped => return,
                    Ended::Failed(err) => {
                        state.reconnects.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(target: "sio::redis", %err, "subscriber connection lost; reconnecting");
                    }
                }
            }
            Err(err) => {
                tracing::warn!(target: "sio::redis", %err, ?delay, "cannot connect the subscriber; retrying");
            }
        }
        // Keep taking subscriptions while waiting, so none is lost.
        let sleep = tokio::time::sleep(delay);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                () = &mut sleep => break,
                command = commands.recv() => match command {
                    None | Some(Command::Close) => return,
                    Some(command) => apply(command, &mut subscriptions, &mut waiters),
                },
            }
        }
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Records a command made while disconnected; it takes effect on the next connection.
fn apply(
    command: Command,
    subscriptions: &mut BTreeSet<Subscription>,
    waiters: &mut Vec<oneshot::Sender<()>>,
) {
    match command {
        Command::Subscribe(s) => {
            subscriptions.insert(s);
        }
        Command::Unsubscribe(s) => {
            subscriptions.remove(&s);
        }
        Command::Confirmed(waiter) => waiters.push(waiter),
        // Handled by the caller.
        Command::Close => {}
    }
}

enum Ended {
    /// The handle was dropped or asked to close.
    HandleDropped,
    Failed(String),
}

/// Where the connection went, so that it can tell when a Sentinel names another master.
#[derive(Clone, Copy)]
struct Connected<'a> {
    target: &'a Target,
    addr: &'a Addr,
}

impl Connected<'_> {
    /// Whether the target now names another server (after a failover).
    async fn moved(&self) -> bool {
        if !self.target.moves() {
            return false;
        }
        match self.target.resolve().await {
            Ok(now) => now != *self.addr,
            Err(_) => false,
        }
    }
}

/// Subscribes to everything on a fresh connection, then forwards messages and takes new
/// subscriptions until the connection fails or the handle is dropped.
async fn serve(
    mut stream: Box<dyn Stream>,
    at: Connected<'_>,
    subscriptions: &mut BTreeSet<Subscription>,
    waiters: &mut Vec<oneshot::Sender<()>>,
    commands: &mut mpsc::UnboundedReceiver<Command>,
    messages: &mpsc::UnboundedSender<Published>,
) -> Ended {
    let failed = |e: std::io::Error| Ended::Failed(e.to_string());
    // Subscriptions sent on this connection and not confirmed yet.
    let mut unconfirmed = subscriptions.len();
    for s in subscriptions.iter() {
        if let Err(e) = stream.write_all(&s.command(true)).await {
            return failed(e);
        }
    }
    let answer = |waiters: &mut Vec<oneshot::Sender<()>>| {
        for waiter in waiters.drain(..) {
            let _ = waiter.send(());
        }
    };
    if unconfirmed == 0 {
        answer(waiters);
    }
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut ping = tokio::time::interval(Duration::from_secs(1));
    let mut silent_ticks = 0;
    loop {
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                match read {
                    Ok(0) => return Ended::Failed("connection closed by Redis".into()),
                    Ok(_) => silent_ticks = 0,
                    Err(e) => return failed(e),
                }
                loop {
                    match resp::parse(&buf) {
                        Ok(Some((frame, used))) => {
                            let _ = buf.split_to(used);
                            if frame.is_subscription() {
                                unconfirmed = unconfirmed.saturating_sub(1);
                                if unconfirmed == 0 {
                                    answer(waiters);
                                }
                            } else if let Frame::Error(err) = &frame {
                                // In its place: waiting for it would hold `ready` for ever.
                                unconfirmed = unconfirmed.saturating_sub(1);
                                if unconfirmed == 0 {
                                    answer(waiters);
                                }
                                tracing::warn!(target: "sio::redis", %err, "Redis refused a subscription command");
                            } else if let Some(message) = frame.into_message() {
                                let _ = messages.send(message);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Ended::Failed(e.to_string()),
                    }
                }
            }
            command = commands.recv() => {
                let Some(command) = command else { return Ended::HandleDropped };
                if matches!(command, Command::Close) {
                    return Ended::HandleDropped;
                }
                let bytes = match command {
                    Command::Confirmed(waiter) => {
                        waiters.push(waiter);
                        if unconfirmed == 0 {
                            answer(waiters);
                        }
                        continue;
                    }
                    Command::Subscribe(s) => {
                        if subscriptions.contains(&s) {
                            continue;
                        }
                        unconfirmed += 1;
                        let bytes = s.command(true);
                        subscriptions.insert(s);
                        bytes
                    }
                    Command::Unsubscribe(s) => {
                        if !subscriptions.remove(&s) {
                            continue;
                        }
                        s.command(false)
                    }
                    Command::Close => continue,
                };
                if let Err(e) = stream.write_all(&bytes).await {
                    return failed(e);
                }
            }
            _ = ping.tick() => {
                // A connection that stays silent through three pings is dead (half-open).
                silent_ticks += 1;
                if silent_ticks > 3 {
                    return Ended::Failed("no answer to pings".into());
                }
                if let Err(e) = stream.write_all(&redis::cmd("PING").get_packed_command()).await {
                    return failed(e);
                }
                // The old master of a failover keeps its clients: leave it for the new one.
                if at.moved().await {
                    return Ended::Failed("the master moved".into());
                }
            }
        }
    }
}
