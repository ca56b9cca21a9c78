//! Redis URLs: which servers, over TLS or not, with whose credentials, on which database.
//!
//! Parsed here rather than by redis-rs: sio's Sentinel and Cluster URLs list several hosts,
//! `rediss://` must not depend on redis-rs's TLS features (sio-redis makes its TLS connections
//! itself), and an error names the part of the URL that is wrong, with the password hidden.

use std::fmt;
use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use redis::IntoConnectionInfo as _;

use crate::error::Error;

/// Where a server listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Addr {
    Tcp(String, u16),
    Unix(PathBuf),
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addr::Tcp(host, port) if host.contains(':') => write!(f, "[{host}]:{port}"),
            Addr::Tcp(host, port) => write!(f, "{host}:{port}"),
            Addr::Unix(path) => write!(f, "{}", path.display()),
        }
    }
}

/// The servers a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Servers {
    One(Addr),
    /// The master that these sentinels name.
    Sentinel {
        sentinels: Vec<(String, u16)>,
        master: String,
    },
    /// A Redis Cluster, by some of its nodes.
    Cluster {
        seeds: Vec<(String, u16)>,
    },
}

/// What a Redis URL says.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RedisUrl {
    pub(crate) servers: Servers,
    /// `rediss`: every connection, to sentinels too, is TLS.
    pub(crate) tls: bool,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: Option<i64>,
}

impl fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisUrl")
            .field("servers", &self.servers)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("db", &self.db)
            .finish()
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    One,
    Sentinel,
    Cluster,
}

impl RedisUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad = |part: &'static str, reason: String| Error::Url {
            url: redact(url),
            part,
            reason,
        };
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(bad(
                "scheme",
                "no `scheme://` (redis://, rediss://, redis+sentinel://, redis+cluster://, ...)"
                    .into(),
            ));
        };
        let (kind, tls) = match scheme.to_ascii_lowercase().as_str() {
            "redis" | "valkey" => (Kind::One, false),
            "rediss" | "valkeys" => (Kind::One, true),
            "redis+sentinel" => (Kind::Sentinel, false),
            "rediss+sentinel" => (Kind::Sentinel, true),
            "redis+cluster" => (Kind::Cluster, false),
            "rediss+cluster" => (Kind::Cluster, true),
            "unix" | "redis+unix" | "valkey+unix" => return unix(url, bad),
            other => {
                return Err(bad(
                    "scheme",
                    format!(
                        "`{other}` is not one of redis, rediss, redis+sentinel, \
                         rediss+sentinel, redis+cluster, rediss+cluster, redis+unix"
                    ),
                ));
            }
        };
        // The credentials end at the last `@`: a password may hold `/`, `?` or `#` unencoded.
        let (userinfo, rest) = match rest.rsplit_once('@') {
            Some((userinfo, rest)) => (Some(userinfo), rest),
            None => (None, rest),
        };
        let (rest, fragment) = split_off(rest, '#');
        if let Some(fragment) = fragment {
            let reason = if fragment == "insecure" {
                "certificate checks cannot be turned off; trust the server's CA instead \
                 (TlsConfig::ca_file)"
                    .to_owned()
            } else {
                format!("`#{fragment}` means nothing here")
            };
            return Err(bad("fragment", reason));
        }
        let (rest, query) = split_off(rest, '?');
        if let Some(query) = query {
            return Err(bad(
                "query",
                format!("`?{query}` is not supported; use RedisConfig's options"),
            ));
        }
        let (hosts, path) = split_off(rest, '/');
        let path = path.unwrap_or_default();
        let (username, password) = match userinfo {
            None => (None, None),
            Some(userinfo) => credentials(userinfo, &bad)?,
        };
        let default_port = if kind == Kind::Sentinel { 26379 } else { 6379 };
        let hosts = host_list(hosts, default_port, &bad)?;
        let mut segments = path.split('/');
        let servers = match kind {
            Kind::One => {
                let [(host, port)]: [(String, u16); 1] = hosts.try_into().map_err(|_| {
                    bad(
                        "host",
                        "several hosts: use redis+sentinel:// or redis+cluster://".into(),
                    )
                })?;
                Servers::One(Addr::Tcp(host, port))
            }
            Kind::Sentinel => {
                let master = segments.next().unwrap_or_default();
                if master.is_empty() {
                    return Err(bad(
                        "master name",
                        "missing: redis+sentinel://host:port/<master-name>".into(),
                    ));
                }
                Servers::Sentinel {
                    sentinels: hosts,
                    master: decode(master, "master name", &bad)?,
                }
            }
            Kind::Cluster => Servers::Cluster { seeds: hosts },
        };
        let db = match segments.next() {
            None | Some("") => None,
            Some(db) => Some(
                db.parse::<i64>()
                    .ok()
                    .filter(|db| *db >= 0)
                    .ok_or_else(|| bad("database", format!("`{db}` is not a number")))?,
            ),
        };
        if let Some(extra) = segments.next() {
            return Err(bad("path", format!("`/{extra}` after the database")));
        }
        if kind == Kind::Cluster && db.is_some_and(|db| db != 0) {
            return Err(bad("database", "Redis Cluster has only database 0".into()));
        }
        Ok(RedisUrl {
            servers,
            tls,
            username,
            password,
            db,
        })
    }
}

/// `unix:///path?db=..&user=..&pass=..`, as redis-rs reads it.
fn unix(url: &str, bad: impl Fn(&'static str, String) -> Error) -> Result<RedisUrl, Error> {
    let info = url
        .into_connection_info()
        .map_err(|err| bad("path", err.to_string()))?;
    let redis::ConnectionAddr::Unix(path) = info.addr().clone() else {
        return Err(bad("path", "not a socket path".into()));
    };
    let settings = info.redis_settings();
    Ok(RedisUrl {
        servers: Servers::One(Addr::Unix(path)),
        tls: false,
        username: settings.username().map(str::to_owned),
        password: settings.password().map(str::to_owned),
        db: Some(settings.db()).filter(|db| *db != 0),
    })
}

/// `text` cut at the first `at`: before, and after (without `at`).
fn split_off(text: &str, at: char) -> (&str, Option<&str>) {
    match text.split_once(at) {
        Some((before, after)) => (before, Some(after)),
        None => (text, None),
    }
}

fn decode(
    text: &str,
    part: &'static str,
    bad: &impl Fn(&'static str, String) -> Error,
) -> Result<String, Error> {
    percent_decode_str(text)
        .decode_utf8()
        .map(|decoded| decoded.into_owned())
        .map_err(|_| bad(part, "not UTF-8 once percent-decoded".into()))
}

/// `user:password`, `:password` (no user name: Redis's `default` user).
fn credentials(
    userinfo: &str,
    bad: &impl Fn(&'static str, String) -> Error,
) -> Result<(Option<String>, Option<String>), Error> {
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(bad(
            "credentials",
            "a user name without a password: write `user:password@` (percent-encoded), or \
             give them with RedisConfig::username and RedisConfig::password"
                .into(),
        ));
    };
    let user = (!user.is_empty())
        .then(|| decode(user, "user name", bad))
        .transpose()?;
    Ok((user, Some(decode(password, "password", bad)?)))
}

/// `host:port,host:port` (a missing port is `default_port`; IPv6 in brackets).
fn host_list(
    hosts: &str,
    default_port: u16,
    bad: &impl Fn(&'static str, String) -> Error,
) -> Result<Vec<(String, u16)>, Error> {
    let mut list = Vec::new();
    for host in hosts.split(',') {
        let (name, port) = match host.strip_prefix('[') {
            Some(v6) => {
                let (name, after) = v6
                    .split_once(']')
                    .ok_or_else(|| bad("host", format!("`{host}` has no closing `]`")))?;
                (name, after.strip_prefix(':'))
            }
            None => split_off(host, ':'),
        };
        if name.is_empty() {
            return Err(bad("host", "missing".into()));
        }
        let port =
            match port {
                None => default_port,
                Some(port) => port.parse().ok().filter(|p| *p != 0).ok_or_else(|| {
                    bad("port", format!("`{port}` of `{host}` is not a port number"))
                })?,
            };
        list.push((name.to_owned(), port));
    }
    Ok(list)
}

/// `url` with its password replaced by `***`, for error messages and logs.
pub(crate) fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***{}", &rest[at..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp(host: &str, port: u16) -> Servers {
        Servers::One(Addr::Tcp(host.into(), port))
    }

    #[test]
    fn one_server() {
        let url = RedisUrl::parse("rediss://sio:p%40ss%2Fw@redis.example:6380/2").unwrap();
        assert_eq!(url.servers, tcp("redis.example", 6380));
        assert!(url.tls);
        assert_eq!(url.username.as_deref(), Some("sio"));
        assert_eq!(url.password.as_deref(), Some("p@ss/w"));
        assert_eq!(url.db, Some(2));
        let url = RedisUrl::parse("redis://:pw@[::1]").unwrap();
        assert_eq!(url.servers, tcp("::1", 6379));
        assert!(!url.tls);
        assert_eq!((url.username, url.password), (None, Some("pw".into())));
        assert_eq!(RedisUrl::parse("redis://h/").unwrap().db, None);
        let url = RedisUrl::parse("redis://u:a/b?c#d@h").unwrap();
        assert_eq!(url.password.as_deref(), Some("a/b?c#d"));
        assert_eq!(redact("redis://u:a/b?c#d@h"), "redis://u:***@h");
        assert_eq!(
            RedisUrl::parse("redis+unix:///tmp/r.sock?db=3").unwrap(),
            RedisUrl {
                servers: Servers::One(Addr::Unix("/tmp/r.sock".into())),
                tls: false,
                username: None,
                password: None,
                db: Some(3),
            }
        );
    }

    #[test]
    fn sentinel_and_cluster() {
        let url = RedisUrl::parse("rediss+sentinel://:pw@a:26379,b:26380,c/mymaster/2").unwrap();
        assert_eq!(
            url.servers,
            Servers::Sentinel {
                sentinels: vec![
                    ("a".into(), 26379),
                    ("b".into(), 26380),
                    ("c".into(), 26379)
                ],
                master: "mymaster".into(),
            }
        );
        assert!(url.tls);
        assert_eq!((url.password.as_deref(), url.db), (Some("pw"), Some(2)));
        let url = RedisUrl::parse("redis+cluster://u:pw@a:7000,b").unwrap();
        assert_eq!(
            url.servers,
            Servers::Cluster {
                seeds: vec![("a".into(), 7000), ("b".into(), 6379)]
            }
        );
        assert_eq!(url.username.as_deref(), Some("u"));
    }

    /// Each error names the part of the URL that is wrong, and never shows the password.
    #[test]
    fn errors_name_the_part() {
        let part = |url: &str| match RedisUrl::parse(url) {
            Err(Error::Url { part, url, reason }) => {
                assert!(!url.contains("secret"), "{url}");
                assert!(!reason.contains("secret"), "{reason}");
                part
            }
            other => panic!("{url}: {other:?}"),
        };
        assert_eq!(part("127.0.0.1:6379"), "scheme");
        assert_eq!(part("http://u:secret@h"), "scheme");
        assert_eq!(part("redis://u:secret@h:x"), "port");
        assert_eq!(part("redis://u:secret@h:0"), "port");
        assert_eq!(part("redis://u:secret@h/x"), "database");
        assert_eq!(part("redis://u:secret@h/1/2"), "path");
        assert_eq!(part("redis://u:secret@a,b"), "host");
        assert_eq!(part("redis://u:secret@"), "host");
        assert_eq!(part("redis://user@h"), "credentials");
        assert_eq!(part("rediss://u:secret@h#insecure"), "fragment");
        assert_eq!(part("redis://u:secret@h?db=1"), "query");
        assert_eq!(part("redis+sentinel://u:secret@a:1/"), "master name");
        assert_eq!(part("redis+sentinel://a:x/m"), "port");
        assert_eq!(part("redis+cluster://u:secret@a/1"), "database");
        assert_eq!(part("redis://u:%ff@h"), "password");
    }

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(
            redact("rediss://sio:secret@h:1/2"),
            "rediss://sio:***@h:1/2"
        );
        assert_eq!(redact("redis://:secret@h"), "redis://:***@h");
        assert_eq!(redact("redis://h:1"), "redis://h:1");
        assert_eq!(redact("nonsense"), "nonsense");
    }
}
