//! What an adapter knows of a Redis Cluster's nodes: one multiplexed connection to each, made
//! once and reused, and their list (`CLUSTER NODES`), read at most once a second. Each node of
//! a cluster counts only its own subscribers, so whoever asks "who listens?" asks them all;
//! without this, each ask would open a TCP connection (and `AUTH`) per node.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use bb8_redis::bb8::Pool;
use redis::aio::MultiplexedConnection;
use sio_core::AdapterError;

use crate::adapter::unavailable;
use crate::dial::Dialer;
use crate::target::Connections;
use crate::url::Addr;

/// A node of the cluster, by its address.
pub(crate) type Node = (String, u16);

/// How long a node list, or a count made over it, is used before it is asked again.
const FRESH: Duration = Duration::from_secs(1);

pub(crate) struct ClusterNodes {
    /// How to connect to any node (TLS, login).
    dialer: Dialer,
    /// Connections to any node (for `CLUSTER NODES`).
    pool: Pool<Connections>,
    timeout: Duration,
    connections: Mutex<HashMap<Node, MultiplexedConnection>>,
    list: Mutex<Option<(Instant, Vec<Node>)>>,
    /// Counts over every node, by what was counted.
    counts: Mutex<HashMap<String, (Instant, usize)>>,
}

impl ClusterNodes {
    pub(crate) fn new(dialer: Dialer, pool: Pool<Connections>, timeout: Duration) -> Self {
        ClusterNodes {
            dialer,
            pool,
            timeout,
            connections: Mutex::default(),
            list: Mutex::default(),
            counts: Mutex::default(),
        }
    }

    /// The connection to `node`, made on first use.
    pub(crate) async fn connection(&self, node: &Node) -> Result<MultiplexedConnection, String> {
        if let Some(conn) = lock(&self.connections).get(node) {
            return Ok(conn.clone());
        }
        let addr = Addr::Tcp(node.0.clone(), node.1);
        let conn = self
            .dialer
            .multiplexed(&addr, self.timeout)
            .await
            .map_err(|e| e.to_string())?;
        // Two callers may have connected at once: the first one's is kept.
        Ok(lock(&self.connections)
            .entry(node.clone())
            .or_insert(conn)
            .clone())
    }

    /// A command to `node` failed: its connection is made again next time.
    pub(crate) fn forget(&self, node: &Node) {
        lock(&self.connections).remove(node);
    }

    /// The reachable nodes, masters and replicas.
    async fn nodes(&self) -> Result<Vec<Node>, AdapterError> {
        if let Some((at, nodes)) = lock(&self.list).as_ref()
            && at.elapsed() < FRESH
        {
            return Ok(nodes.clone());
        }
        let mut conn = self.pool.get().await.map_err(unavailable)?;
        let text: String = redis::cmd("CLUSTER")
            .arg("NODES")
            .query_async(&mut conn.inner)
            .await
            .map_err(unavailable)?;
        let nodes = parse_nodes(&text);
        *lock(&self.list) = Some((Instant::now(), nodes.clone()));
        Ok(nodes)
    }

    /// The sum of a `PUBSUB NUMSUB`/`SHARDNUMSUB` of one channel over every node.
    pub(crate) async fn subscribers(&self, count: &redis::Cmd) -> Result<usize, AdapterError> {
        let mut total = 0;
        for node in self.nodes().await? {
            let mut conn = self.connection(&node).await.map_err(unavailable)?;
            match crate::adapter::subscribers(count, &mut conn).await {
                Ok(n) => total += n,
                Err(err) => {
                    self.forget(&node);
                    return Err(err);
                }
            }
        }
        Ok(total)
    }

    /// [`subscribers`](Self::subscribers), reused for a second under `key`: requests
    /// (`fetch_sockets`, acks) that a client can trigger must not cost a round trip to every
    /// node each.
    pub(crate) async fn cached_subscribers(
        &self,
        key: &str,
        count: &redis::Cmd,
    ) -> Result<usize, AdapterError> {
        if let Some((at, n)) = lock(&self.counts).get(key)
            && at.elapsed() < FRESH
        {
            return Ok(*n);
        }
        let n = self.subscribers(count).await?;
        lock(&self.counts).insert(key.to_owned(), (Instant::now(), n));
        Ok(n)
    }
}

/// The reachable nodes of a `CLUSTER NODES` answer (`<id> <ip:port@cport> <flags> ...`).
fn parse_nodes(text: &str) -> Vec<Node> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let addr = fields.nth(1)?;
            let flags = fields.next()?;
            if flags
                .split(',')
                .any(|f| f == "fail" || f == "noaddr" || f == "handshake")
            {
                return None;
            }
            let addr = addr.split(['@', ',']).next()?;
            let (host, port) = addr.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_nodes_are_read() {
        let text = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                    b2 127.0.0.1:7001@17001,host master - 0 0 2 connected 5461-10922\n\
                    c3 127.0.0.1:7002@17002 master,fail - 0 0 3 disconnected\n\
                    d4 10.0.0.9:7003@17003 slave a1 0 0 1 connected\n";
        assert_eq!(
            parse_nodes(text),
            vec![
                ("127.0.0.1".to_owned(), 7000),
                ("127.0.0.1".to_owned(), 7001),
                ("10.0.0.9".to_owned(), 7003)
            ]
        );
    }
}
