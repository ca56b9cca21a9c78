//! Where the Redis server is: a fixed address, or the master that Redis Sentinel names (asked
//! again on every new connection, so a failover is followed), and the bb8 connection manager
//! that connects there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8_redis::bb8::{ManageConnection, Pool};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::Error;
use crate::resp::{self, Frame};

/// The URL scheme of a Sentinel deployment:
/// `redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]`.
const SENTINEL_SCHEME: &str = "redis+sentinel://";

/// The URL scheme of a Redis Cluster, by some of its nodes:
/// `redis+cluster://[user:password@]host:port[,host:port...]`.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// Connections of an adapter's (or emitter's) pool, for publishing, forwarding and requests:
/// bb8's default.
pub(crate) const POOL_SIZE: u32 = 10;

/// How to reach the Redis server.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Direct(ConnectionInfo),
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
        /// Credentials and database of the master.
        settings: RedisConnectionInfo,
    },
    /// A Redis Cluster: classic pub/sub reaches every node of it, so any node will do.
    Cluster {
        seeds: Vec<(String, u16)>,
        settings: RedisConnectionInfo,
    },
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        if let Some(rest) = url.strip_prefix(CLUSTER_SCHEME) {
            let (auth, hosts) = split_auth(rest);
            return Ok(Target::Cluster {
                seeds: host_list(hosts.trim_end_matches('/'), 6379)?,
                settings: settings(auth, None)?,
            });
        }
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Ok(Target::Direct(
                url.into_connection_info().map_err(Error::Url)?,
            ));
        };
        let (auth, rest) = split_auth(rest);
        let (hosts, path) = rest.split_once('/').ok_or(invalid("no master name"))?;
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, Some(db)),
            None => (path, None),
        };
        if master.is_empty() {
            return Err(invalid("no master name"));
        }
        Ok(Target::Sentinel {
            sentinels: host_list(hosts, 26379)?,
            master: master.to_owned(),
            settings: settings(auth, db)?,
        })
    }

    /// Whether this target may move (a Sentinel-managed master), so that a connection must
    /// check now and then that it still points to the master.
    pub(crate) fn moves(&self) -> bool {
        matches!(self, Target::Sentinel { .. })
    }

    /// The server to connect to now.
    pub(crate) async fn resolve(&self) -> Result<ConnectionInfo, String> {
        let (sentinels, master, settings) = match self {
            Target::Direct(info) => return Ok(info.clone()),
            Target::Cluster { seeds, settings } => return first_reachable(seeds, settings).await,
            Target::Sentinel {
                sentinels,
                master,
                settings,
            } => (sentinels, master, settings),
        };
        let mut last = String::from("no sentinel");
        for (host, port) in sentinels {
            match ask_sentinel(host, *port, master).await {
                Ok((master_host, master_port)) => {
                    return node_info(&master_host, master_port, settings);
                }
                Err(err) => last = format!("sentinel {host}:{port}: {err}"),
            }
        }
        Err(last)
    }
}

fn invalid(why: &'static str) -> Error {
    Error::Url(RedisError::from((
        redis::ErrorKind::InvalidClientConfig,
        why,
    )))
}

/// `user:password@rest` into the credentials and the rest.
fn split_auth(rest: &str) -> (Option<&str>, &str) {
    match rest.rsplit_once('@') {
        Some((auth, rest)) => (Some(auth), rest),
        None => (None, rest),
    }
}

/// `host:port,host:port` (a missing port is `default_port`).
fn host_list(hosts: &str, default_port: u16) -> Result<Vec<(String, u16)>, Error> {
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|host| match host.rsplit_once(':') {
            Some((name, port)) => Ok((
                name.to_owned(),
                port.parse().map_err(|_| invalid("bad port"))?,
            )),
            None => Ok((host.to_owned(), default_port)),
        })
        .collect::<Result<Vec<_>, Error>>()
        .and_then(|hosts| {
            if hosts.is_empty() {
                Err(invalid("no host"))
            } else {
                Ok(hosts)
            }
        })
}

/// Credentials and database, read the way a `redis://` URL gives them.
fn settings(auth: Option<&str>, db: Option<&str>) -> Result<RedisConnectionInfo, Error> {
    let auth = auth.map(|a| format!("{a}@")).unwrap_or_default();
    let db = db.map(|d| format!("/{d}")).unwrap_or_default();
    Ok(format!("redis://{auth}localhost{db}")
        .into_connection_info()
        .map_err(Error::Url)?
        .redis_settings()
        .clone())
}

/// The first of `hosts` that accepts a connection.
async fn first_reachable(
    hosts: &[(String, u16)],
    settings: &RedisConnectionInfo,
) -> Result<ConnectionInfo, String> {
    let mut last = String::from("no host");
    for (host, port) in hosts {
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        match tokio::time::timeout(Duration::from_secs(1), connect).await {
            Ok(Ok(_)) => return node_info(host, *port, settings),
            Ok(Err(err)) => last = format!("{host}:{port}: {err}"),
            Err(_) => last = format!("{host}:{port}: timed out"),
        }
    }
    Err(last)
}

/// The connection info of one node, with the target's credentials.
pub(crate) fn node_info(
    host: &str,
    port: u16,
    settings: &RedisConnectionInfo,
) -> Result<ConnectionInfo, String> {
    Ok(format!("redis://{host}:{port}")
        .into_connection_info()
        .map_err(|e| e.to_string())?
        .set_redis_settings(settings.clone()))
}

/// `SENTINEL get-master-addr-by-name`, over a short-lived connection.
async fn ask_sentinel(host: &str, port: u16, master: &str) -> Result<(String, u16), String> {
    let timeout = Duration::from_secs(1);
    let ask = async {
        let mut stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let command = redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(master)
            .get_packed_command();
        stream
            .write_all(&command)
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        loop {
            if let Some((frame, _)) = resp::parse(&buf).map_err(|e| e.to_string())? {
                return master_address(frame);
            }
            let mut chunk = [0u8; 512];
            let n = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("sentinel closed the connection".to_owned());
            }
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        }
    };
    tokio::time::timeout(timeout, ask)
        .await
        .map_err(|_| "sentinel did not answer".to_owned())?
}

/// `[host, port]`, or why not.
fn master_address(frame: Frame) -> Result<(String, u16), String> {
    match frame {
        Frame::Array(Some(items)) => match items.as_slice() {
            [Frame::Bulk(Some(host)), Frame::Bulk(Some(port))] => {
                let host = String::from_utf8_lossy(host).into_owned();
                let port = String::from_utf8_lossy(port)
                    .parse()
                    .map_err(|_| "bad port from sentinel".to_owned())?;
                Ok((host, port))
            }
            _ => Err("unexpected answer from sentinel".to_owned()),
        },
        Frame::Array(None) | Frame::Bulk(None) => {
            Err("sentinel does not know this master".to_owned())
        }
        Frame::Error(err) => Err(err),
        _ => Err("unexpected answer from sentinel".to_owned()),
    }
}

/// bb8's connection manager: multiplexed connections to wherever the [`Target`] points now.
#[derive(Debug, Clone)]
pub(crate) struct Connections {
    target: Target,
    /// How long a command waits for Redis's answer (`RedisConfig::timeout`).
    timeout: Duration,
    /// The master Sentinel named last, and when: asked again at most once a second.
    master: Arc<Mutex<Option<(Instant, ConnectionAddr)>>>,
}

/// A pooled connection and the server it goes to.
pub(crate) struct Conn {
    pub(crate) inner: MultiplexedConnection,
    addr: ConnectionAddr,
}

impl Connections {
    /// A pool of at most `size` connections to `target`: a command waits at most `timeout`
    /// for a connection, then as long again for Redis's answer (`RedisConfig::timeout`).
    pub(crate) fn pool(target: Target, timeout: Duration, size: u32) -> Pool<Connections> {
        Pool::builder()
            .max_size(size)
            .connection_timeout(timeout)
            .build_unchecked(Connections {
                target,
                timeout,
                master: Arc::default(),
            })
    }

    /// The server the target names now (cached for a second).
    async fn current(&self) -> Option<ConnectionAddr> {
        let fresh = |at: &Instant| at.elapsed() < Duration::from_secs(1);
        if let Some((at, addr)) = lock(&self.master).as_ref()
            && fresh(at)
        {
            return Some(addr.clone());
        }
        let addr = self.target.resolve().await.ok()?.addr().clone();
        *lock(&self.master) = Some((Instant::now(), addr.clone()));
        Some(addr)
    }
}

impl ManageConnection for Connections {
    type Connection = Conn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let info =
            self.target.resolve().await.map_err(|why| {
                RedisError::from((redis::ErrorKind::Io, "cannot resolve Redis", why))
            })?;
        let addr = info.addr().clone();
        // redis-rs answers "timed out" after 500 ms by default: too soon for a loaded server.
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        let inner = redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        Ok(Conn { inner, addr })
    }

    async fn is_valid(&self, conn: &mut Self::Connection) -> Result<(), Self::Error> {
        // After a failover the old master still answers, as a replica: publishing there would
        // not reach the subscribers, which follow the new master.
        if self.target.moves()
            && self
                .current()
                .await
                .is_some_and(|master| master != conn.addr)
        {
            return Err(RedisError::from((
                redis::ErrorKind::Io,
                "no longer the master",
            )));
        }
        redis::cmd("PING").query_async::<()>(&mut conn.inner).await
    }

    fn has_broken(&self, _: &mut Self::Connection) -> bool {
        false
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentinel_urls() {
        let Target::Sentinel {
            sentinels,
            master,
            settings,
        } = Target::parse("redis+sentinel://:pw@a:26379,b:26380/mymaster/2").unwrap()
        else {
            panic!("not a sentinel target");
        };
        assert_eq!(sentinels, vec![("a".into(), 26379), ("b".into(), 26380)]);
        assert_eq!(master, "mymaster");
        assert_eq!(settings.password(), Some("pw"));
        assert_eq!(settings.db(), 2);
        assert!(matches!(
            Target::parse("redis://127.0.0.1:6379").unwrap(),
            Target::Direct(_)
        ));
        assert!(Target::parse("redis+sentinel://a:1/").is_err());
        let Target::Cluster { seeds, settings } =
            Target::parse("redis+cluster://u:pw@a:7000,b").unwrap()
        else {
            panic!("not a cluster target");
        };
        assert_eq!(seeds, vec![("a".into(), 7000), ("b".into(), 6379)]);
        assert_eq!(
            (settings.username(), settings.password()),
            (Some("u"), Some("pw"))
        );
        assert!(Target::parse("redis+sentinel://a:x/m").is_err());
    }

    #[test]
    fn sentinel_answers() {
        let bulk = |s: &str| Frame::Bulk(Some(s.as_bytes().to_vec()));
        assert_eq!(
            master_address(Frame::Array(Some(vec![bulk("10.0.0.5"), bulk("6380")]))),
            Ok(("10.0.0.5".into(), 6380))
        );
        assert!(master_address(Frame::Array(None)).is_err());
        assert!(master_address(Frame::Error("ERR".into())).is_err());
    }
}
