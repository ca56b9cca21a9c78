//! Where the Redis server is: a fixed address, or the master that Redis Sentinel names (asked
//! again on every new connection, so a failover is followed), and the bb8 connection manager
//! that connects there.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bb8_redis::bb8::ManageConnection;
use redis::aio::MultiplexedConnection;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo, RedisError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::error::Error;
use crate::resp::{self, Frame};

/// The URL scheme of a Sentinel deployment:
/// `redis+sentinel://[user:password@]host:port[,host:port...]/master-name[/db]`.
const SENTINEL_SCHEME: &str = "redis+sentinel://";

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
}

impl Target {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let Some(rest) = url.strip_prefix(SENTINEL_SCHEME) else {
            return Ok(Target::Direct(
                url.into_connection_info().map_err(Error::Url)?,
            ));
        };
        let invalid = |why: &'static str| {
            Error::Url(RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                why,
            )))
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((auth, rest)) => (Some(auth), rest),
            None => (None, rest),
        };
        let (hosts, path) = rest.split_once('/').ok_or(invalid("no master name"))?;
        let (master, db) = match path.split_once('/') {
            Some((master, db)) => (master, Some(db)),
            None => (path, None),
        };
        if master.is_empty() {
            return Err(invalid("no master name"));
        }
        let sentinels = hosts
            .split(',')
            .map(|host| {
                let (name, port) = host.rsplit_once(':').unwrap_or((host, "26379"));
                Ok((
                    name.to_owned(),
                    port.parse().map_err(|_| invalid("bad sentinel port"))?,
                ))
            })
            .collect::<Result<Vec<_>, Error>>()?;
        // The master's credentials and database, read the way a redis:// URL gives them.
        let auth = auth.map(|a| format!("{a}@")).unwrap_or_default();
        let db = db.map(|d| format!("/{d}")).unwrap_or_default();
        let settings = format!("redis://{auth}localhost{db}")
            .into_connection_info()
            .map_err(Error::Url)?
            .redis_settings()
            .clone();
        Ok(Target::Sentinel {
            sentinels,
            master: master.to_owned(),
            settings,
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
                    let info = format!("redis://{master_host}:{master_port}")
                        .into_connection_info()
                        .map_err(|e| e.to_string())?;
                    return Ok(info.set_redis_settings(settings.clone()));
                }
                Err(err) => last = format!("sentinel {host}:{port}: {err}"),
            }
        }
        Err(last)
    }
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
    /// The master Sentinel named last, and when: asked again at most once a second.
    master: Arc<Mutex<Option<(Instant, ConnectionAddr)>>>,
}

/// A pooled connection and the server it goes to.
pub(crate) struct Conn {
    pub(crate) inner: MultiplexedConnection,
    addr: ConnectionAddr,
}

impl Connections {
    pub(crate) fn new(target: Target) -> Self {
        Connections {
            target,
            master: Arc::default(),
        }
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
        let inner = redis::Client::open(info)?
            .get_multiplexed_async_connection()
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
