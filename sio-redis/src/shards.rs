//! Sharded pub/sub on a Redis Cluster: every shard channel lives on the master that owns its
//! slot, so subscriptions go to one subscriber connection per master, and publishes (and the
//! question "who listens on this channel?") to a connection to the owner. The slot map (`CLUSTER SLOTS`) is read at start and again after a
//! publish fails (a failover or a resharding).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bb8_redis::bb8::Pool;
use sio_core::AdapterError;
use tokio::sync::{mpsc, watch};

use crate::adapter::unavailable;
use crate::cluster::{ClusterNodes, Node};
use crate::resp::Published;
use crate::slots::SlotMap;
use crate::subscriber::{self, Subscriber, Subscription};
use crate::target::{Connections, Target};

/// The shard subscribers and the slot map of one adapter.
pub(crate) struct Shards {
    /// The cluster: each shard subscriber connects to one of its nodes.
    target: Target,
    pool: Pool<Connections>,
    /// Publishing connections to the masters.
    nodes: Arc<ClusterNodes>,
    messages: mpsc::UnboundedSender<Published>,
    /// The slot map, once read.
    map: watch::Sender<Option<SlotMap>>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    subscribers: HashMap<Node, Subscriber>,
    /// Channels subscribed to (so they can be placed again when the map changes).
    channels: Vec<String>,
}

impl Shards {
    pub(crate) fn start(
        target: Target,
        pool: Pool<Connections>,
        nodes: Arc<ClusterNodes>,
        messages: mpsc::UnboundedSender<Published>,
    ) -> Arc<Self> {
        let shards = Arc::new(Shards {
            target,
            pool,
            nodes,
            messages,
            map: watch::Sender::new(None),
            state: Mutex::default(),
        });
        shards.refresh();
        shards
    }

    /// Reads the slot map again (in the background), then places every channel on its owner.
    pub(crate) fn refresh(self: &Arc<Self>) {
        let shards = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut delay = Duration::from_millis(100);
            loop {
                let Some(this) = shards.upgrade() else {
                    return;
                };
                match this.read_map().await {
                    Ok(map) => {
                        this.map.send_replace(Some(map));
                        this.place_all();
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(target: "sio::redis", %err, "cannot read the cluster's slots; retrying");
                    }
                }
                drop(this);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(1));
            }
        });
    }

    async fn read_map(&self) -> Result<SlotMap, String> {
        let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
        let reply: redis::Value = redis::cmd("CLUSTER")
            .arg("SLOTS")
            .query_async(&mut conn.inner)
            .await
            .map_err(|e| e.to_string())?;
        SlotMap::from_reply(&reply).ok_or_else(|| "unexpected CLUSTER SLOTS answer".to_owned())
    }

    /// The master that owns `channel`, once the map is known.
    pub(crate) fn owner(&self, channel: &str) -> Option<Node> {
        self.map.borrow().as_ref()?.owner(channel).cloned()
    }

    pub(crate) fn subscribe(&self, channel: String) {
        let mut state = lock(&self.state);
        if !state.channels.contains(&channel) {
            state.channels.push(channel.clone());
        }
        if let Some(owner) = self.owner(&channel) {
            self.subscriber(&mut state, owner)
                .subscribe(Subscription::Shard(channel));
        }
    }

    pub(crate) fn unsubscribe(&self, channel: String) {
        let mut state = lock(&self.state);
        state.channels.retain(|c| *c != channel);
        for subscriber in state.subscribers.values() {
            subscriber.unsubscribe(Subscription::Shard(channel.clone()));
        }
    }

    /// Places every channel on the subscriber of its owner (after the map changed).
    fn place_all(&self) {
        let mut state = lock(&self.state);
        for channel in state.channels.clone() {
            let Some(owner) = self.owner(&channel) else {
                continue;
            };
            for (node, subscriber) in &state.subscribers {
                if *node != owner {
                    subscriber.unsubscribe(Subscription::Shard(channel.clone()));
                }
            }
            self.subscriber(&mut state, owner)
                .subscribe(Subscription::Shard(channel));
        }
    }

    fn subscriber<'a>(&self, state: &'a mut State, node: Node) -> &'a Subscriber {
        state
            .subscribers
            .entry(node)
            .or_insert_with_key(|(host, port)| {
                subscriber::start(self.target.node(host, *port), self.messages.clone())
            })
    }

    /// Waits until the map is known and every shard subscription is confirmed.
    pub(crate) async fn confirmed(&self) {
        let mut map = self.map.subscribe();
        let _ = map.wait_for(Option::is_some).await;
        let subscribers: Vec<_> = lock(&self.state).subscribers.keys().cloned().collect();
        for node in subscribers {
            let waiting = {
                let state = lock(&self.state);
                state.subscribers.get(&node).map(Subscriber::confirmer)
            };
            if let Some(waiting) = waiting {
                waiting.await;
            }
        }
    }

    pub(crate) fn close(&self) {
        for subscriber in lock(&self.state).subscribers.values() {
            subscriber.close();
        }
    }

    pub(crate) fn reconnects(&self) -> u64 {
        lock(&self.state)
            .subscribers
            .values()
            .map(Subscriber::reconnects)
            .sum()
    }
}

impl Shards {
    /// Sends `batch` with `command`, each message to the owner of its channel, in order per
    /// owner; returns how many were sent and how many dropped.
    pub(crate) async fn publish(
        self: &Arc<Self>,
        command: &str,
        batch: Vec<(String, Vec<u8>)>,
    ) -> (u64, u64) {
        let mut by_owner: HashMap<Node, redis::Pipeline> = HashMap::new();
        let mut counts: HashMap<Node, u64> = HashMap::new();
        let mut dropped = 0;
        for (channel, message) in batch {
            let Some(owner) = self.owner(&channel) else {
                dropped += 1;
                continue;
            };
            by_owner
                .entry(owner.clone())
                .or_insert_with(redis::pipe)
                .cmd(command)
                .arg(channel)
                .arg(message)
                .ignore();
            *counts.entry(owner).or_default() += 1;
        }
        let mut sent = 0;
        for (owner, pipe) in by_owner {
            let n = counts.get(&owner).copied().unwrap_or_default();
            let result = match self.nodes.connection(&owner).await {
                Ok(mut conn) => pipe
                    .query_async::<()>(&mut conn)
                    .await
                    .map_err(|e| e.to_string()),
                Err(err) => Err(err),
            };
            match result {
                Ok(()) => sent += n,
                Err(err) => {
                    tracing::warn!(target: "sio::redis", %err, node = ?owner, "shard publish failed; reading the slots again");
                    self.failed(&owner);
                    dropped += n;
                }
            }
        }
        (sent, dropped)
    }

    /// Runs `command` (`SPUBLISH` or `PUBSUB SHARDNUMSUB`, its first argument `channel`) on the
    /// owner of `channel`: only the owner knows the channel's subscribers.
    pub(crate) async fn on_owner<T: redis::FromRedisValue>(
        self: &Arc<Self>,
        channel: &str,
        command: &redis::Cmd,
    ) -> Result<T, AdapterError> {
        let owner = self
            .owner(channel)
            .ok_or_else(|| unavailable("the cluster's slots are not known yet"))?;
        let mut conn = self.nodes.connection(&owner).await.map_err(unavailable)?;
        command.query_async(&mut conn).await.map_err(|err| {
            // MOVED after a resharding, or a failed master.
            self.failed(&owner);
            unavailable(err)
        })
    }

    /// A command to `owner` failed: connect again, and read the slots again.
    fn failed(self: &Arc<Self>, owner: &Node) {
        self.nodes.forget(owner);
        self.refresh();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}
