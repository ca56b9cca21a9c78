//! Where the Redis server is: a fixed address, the master that Redis Sentinel names (asked
//! again on every new connection, so a failover is followed), or a node of a Redis Cluster;
//! and the bb8 connection manager that connects there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8_redis::bb8::{ManageConnection, Pool};
use bytes::BytesMut;
use redis::RedisError;
use redis::aio::MultiplexedConnection;
use tokio::io::AsyncWriteExt as _;

use crate::config::{Mode, RedisConfig};
use crate::dial::{self, Dialer, Login, Stream};
use crate::error::Error;
use crate::resp::Frame;
use crate::url::{Addr, RedisUrl, Servers, redact};

/// How to reach the Redis deployment, and how to log in there.
#[derive(Clone)]
pub(crate) struct Target {
    servers: Servers,
    /// Connections to the data nodes (the master, the cluster's nodes).
    dialer: Dialer,
    /// Connections to the sentinels: the same TLS, their own login.
    sentinels: Dialer,
}

impl Target {
    /// The target of `config`: its URL, with the options that override the URL's credentials
    /// and database, and its TLS settings (files read now).
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, Error> {
        let url = RedisUrl::parse(&config.url)?;
        let tls = match (url.tls, &config.tls) {
            (true, tls) => Some(tls.clone().unwrap_or_default().connector()?),
            (false, Some(_)) => {
                return Err(Error::Url {
                    url: redact(&config.url),
                    part: "scheme",
                    reason: "TLS settings were given (RedisConfig::tls) but the URL does not \
                             ask for TLS: use rediss://"
                        .into(),
                });
            }
            (false, None) => None,
        };
        let login = Login {
            username: config.username.clone().or(url.username),
            password: config.password.clone().or(url.password),
            db: config.database.or(url.db).unwrap_or(0),
            password_option: "put it in the URL or use RedisConfig::password",
        };
        let sentinel_login = Login {
            username: config.sentinel_username.clone(),
            password: config.sentinel_password.clone(),
            db: 0,
            password_option: "the sentinels' is RedisConfig::sentinel_password",
        };
        for login in [&login, &sentinel_login] {
            if login.username.is_some() && login.password.is_none() {
                return Err(Error::Unsupported(
                    "a user name without a password (Redis's AUTH needs both)",
                ));
            }
        }
        match &url.servers {
            Servers::Cluster { .. } if login.db != 0 => {
                return Err(Error::Unsupported(
                    "a database other than 0 on Redis Cluster",
                ));
            }
            Servers::Cluster { .. } if config.mode == Mode::Streams => {
                return Err(Error::Unsupported(
                    "the streams protocol on Redis Cluster (one stream lives on one shard)",
                ));
            }
            Servers::Sentinel { .. } => {}
            _ if sentinel_login.password.is_some() => {
                return Err(Error::Unsupported(
                    "sentinel credentials without a redis+sentinel:// URL",
                ));
            }
            _ => {}
        }
        let dialer = Dialer::new(tls, config.connect_timeout, login);
        Ok(Target {
            servers: url.servers,
            sentinels: dialer.with_login(sentinel_login),
            dialer,
        })
    }

    /// The node at `host:port` of this deployment, with its login and TLS.
    pub(crate) fn node(&self, host: &str, port: u16) -> Target {
        Target {
            servers: Servers::One(Addr::Tcp(host.to_owned(), port)),
            ..self.clone()
        }
    }

    /// How to connect to the nodes of this deployment.
    pub(crate) fn dialer(&self) -> &Dialer {
        &self.dialer
    }

    /// Whether this target may move (a Sentinel-managed master), so that a connection must
    /// check now and then that it still points to the master.
    pub(crate) fn moves(&self) -> bool {
        matches!(self.servers, Servers::Sentinel { .. })
    }

    /// Whether this is a Redis Cluster.
    pub(crate) fn is_cluster(&self) -> bool {
        matches!(self.servers, Servers::Cluster { .. })
    }

    /// The server to connect to now.
    pub(crate) async fn resolve(&self) -> Result<Addr, Error> {
        match &self.servers {
            Servers::One(addr) => Ok(addr.clone()),
            Servers::Cluster { seeds } => first_reachable(seeds, self.dialer.timeout()).await,
            Servers::Sentinel { sentinels, master } => {
                let mut failures = Vec::new();
                for (host, port) in sentinels {
                    let sentinel = Addr::Tcp(host.clone(), *port);
                    match ask_sentinel(&self.sentinels, &sentinel, master).await {
                        Ok((host, port)) => return Ok(Addr::Tcp(host, port)),
                        Err(err) => failures.push(format!("sentinel {sentinel}: {err}")),
                    }
                }
                Err(Error::Sentinel {
                    master: master.clone(),
                    reason: failures.join("; "),
                })
            }
        }
    }

    /// A logged-in connection to the server the target names now, and its address.
    pub(crate) async fn open(&self) -> Result<(Box<dyn Stream>, Addr), Error> {
        let addr = self.resolve().await?;
        Ok((self.dialer.open(&addr).await?, addr))
    }

    /// A multiplexed connection to the server the target names now, and its address.
    pub(crate) async fn multiplexed(
        &self,
        response_timeout: Duration,
    ) -> Result<(MultiplexedConnection, Addr), Error> {
        let addr = self.resolve().await?;
        let connection = self.dialer.multiplexed(&addr, response_timeout).await?;
        Ok((connection, addr))
    }
}

/// The first of `hosts` that accepts a TCP connection.
async fn first_reachable(hosts: &[(String, u16)], timeout: Duration) -> Result<Addr, Error> {
    let mut failures = Vec::new();
    for (host, port) in hosts {
        let connect = tokio::net::TcpStream::connect((host.as_str(), *port));
        let addr = Addr::Tcp(host.clone(), *port);
        match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(_)) => return Ok(addr),
            Ok(Err(err)) => failures.push(format!("{addr}: {err}")),
            Err(_) => failures.push(format!("{addr}: timed out")),
        }
    }
    Err(Error::Unreachable {
        addr: "any node of the cluster".into(),
        reason: failures.join("; "),
    })
}

/// `SENTINEL get-master-addr-by-name`, over a short-lived connection.
async fn ask_sentinel(
    dialer: &Dialer,
    sentinel: &Addr,
    master: &str,
) -> Result<(String, u16), Error> {
    let protocol = |reason: String| Error::Protocol {
        addr: sentinel.to_string(),
        reason,
    };
    let mut stream = dialer.open(sentinel).await?;
    let command = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(master)
        .get_packed_command();
    let ask = async {
        stream.write_all(&command).await?;
        dial::read_frame(&mut stream, &mut BytesMut::new()).await
    };
    let frame = tokio::time::timeout(dialer.timeout(), ask)
        .await
        .map_err(|_| protocol("no answer".into()))?
        .map_err(|err| protocol(err.to_string()))?;
    master_address(frame).map_err(protocol)
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
#[derive(Clone)]
pub(crate) struct Connections {
    target: Target,
    /// How long a command waits for Redis's answer (`RedisConfig::timeout`).
    timeout: Duration,
    /// The master Sentinel named last, and when: asked again at most once a second.
    master: Arc<Mutex<Option<(Instant, Addr)>>>,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections").finish_non_exhaustive()
    }
}

/// A pooled connection and the server it goes to.
pub(crate) struct Conn {
    pub(crate) inner: MultiplexedConnection,
    addr: Addr,
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
    async fn current(&self) -> Option<Addr> {
        let fresh = |at: &Instant| at.elapsed() < Duration::from_secs(1);
        if let Some((at, addr)) = lock(&self.master).as_ref()
            && fresh(at)
        {
            return Some(addr.clone());
        }
        let addr = self.target.resolve().await.ok()?;
        *lock(&self.master) = Some((Instant::now(), addr.clone()));
        Some(addr)
    }
}

impl ManageConnection for Connections {
    type Connection = Conn;
    type Error = RedisError;

    async fn connect(&self) -> Result<Self::Connection, Self::Error> {
        let (inner, addr) = self.target.multiplexed(self.timeout).await.map_err(|err| {
            let kind = match err {
                Error::Auth { .. } => redis::ErrorKind::AuthenticationFailed,
                _ => redis::ErrorKind::Io,
            };
            RedisError::from((kind, "cannot connect to Redis", err.to_string()))
        })?;
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

    fn target(config: RedisConfig) -> Result<Target, Error> {
        Target::new(&config)
    }

    #[test]
    fn options_and_urls_agree() {
        assert!(target(RedisConfig::new("redis+sentinel://:pw@a,b/m/2")).is_ok_and(|t| t.moves()));
        assert!(target(RedisConfig::new("redis+cluster://a:7000,b")).is_ok_and(|t| t.is_cluster()));
        let refused = |config: RedisConfig| match target(config) {
            Err(err) => err.to_string(),
            Ok(_) => panic!("accepted"),
        };
        let tls_on_plain = refused(
            RedisConfig::new("redis://u:secret@h").tls(crate::TlsConfig::new().ca_pem("x")),
        );
        assert!(tls_on_plain.contains("rediss://"), "{tls_on_plain}");
        assert!(!tls_on_plain.contains("secret"), "{tls_on_plain}");
        assert!(refused(RedisConfig::new("redis://h").username("u")).contains("password"));
        assert!(
            refused(RedisConfig::new("redis+cluster://h").database(1)).contains("Redis Cluster")
        );
        assert!(refused(RedisConfig::new("redis://h").sentinel_password("x")).contains("sentinel"));
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
