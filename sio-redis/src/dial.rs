//! Opening a connection to one Redis server: TCP (or a Unix socket), TLS when the URL says
//! `rediss`, then `AUTH`, `SELECT` and a `PING`, each answer checked, so that a wrong CA, a
//! wrong password or a plain-text port is reported as such when the connection is made. Every
//! connection sio-redis makes goes through here: the pool's, the subscriber's, the stream
//! reader's, those to cluster nodes and those to sentinels.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, RedisConnectionInfo};
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, CertificateError};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_rustls::TlsConnector;

use crate::error::Error;
use crate::resp::{self, Frame};
use crate::url::Addr;

/// A connection's byte stream: TCP, TLS over TCP, or a Unix socket.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Who to log in as, and on which database.
#[derive(Clone)]
pub(crate) struct Login {
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    /// The option that gives the password, for the hint of a `NOAUTH`.
    pub(crate) password_option: &'static str,
}

/// How to open a logged-in connection to any server of one deployment.
#[derive(Clone)]
pub(crate) struct Dialer {
    tls: Option<TlsConnector>,
    /// Bounds the TCP connection, the TLS handshake and the login, each.
    timeout: Duration,
    login: Login,
}

impl Dialer {
    pub(crate) fn new(tls: Option<TlsConnector>, timeout: Duration, login: Login) -> Self {
        Dialer {
            tls,
            timeout,
            login,
        }
    }

    /// The same transport (TLS, timeout) with another login: the sentinels'.
    pub(crate) fn with_login(&self, login: Login) -> Self {
        Dialer {
            login,
            ..self.clone()
        }
    }

    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// A connection to `addr`, logged in and answering.
    pub(crate) async fn open(&self, addr: &Addr) -> Result<Box<dyn Stream>, Error> {
        let mut stream = self.transport(addr).await?;
        self.log_in(&mut stream, addr).await?;
        Ok(stream)
    }

    /// A multiplexed connection (redis-rs's) to `addr`, whose commands fail after
    /// `response_timeout` without an answer.
    pub(crate) async fn multiplexed(
        &self,
        addr: &Addr,
        response_timeout: Duration,
    ) -> Result<MultiplexedConnection, Error> {
        let stream = self.open(addr).await?;
        // Logged in already: redis-rs has nothing to authenticate or select.
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(response_timeout));
        let (connection, driver) =
            MultiplexedConnection::new_with_config(&RedisConnectionInfo::default(), stream, config)
                .await
                .map_err(|err| Error::Protocol {
                    addr: addr.to_string(),
                    reason: err.to_string(),
                })?;
        tokio::spawn(driver);
        Ok(connection)
    }

    async fn transport(&self, addr: &Addr) -> Result<Box<dyn Stream>, Error> {
        let unreachable = |reason: String| Error::Unreachable {
            addr: addr.to_string(),
            reason,
        };
        let late = || unreachable(format!("no connection within {:?}", self.timeout));
        match addr {
            Addr::Tcp(host, port) => {
                let tcp = tokio::time::timeout(
                    self.timeout,
                    tokio::net::TcpStream::connect((host.as_str(), *port)),
                )
                .await
                .map_err(|_| late())?
                .map_err(|err| unreachable(err.to_string()))?;
                let _ = tcp.set_nodelay(true);
                let Some(tls) = &self.tls else {
                    return Ok(Box::new(tcp));
                };
                let handshake_failed = |reason: String| Error::TlsHandshake {
                    addr: addr.to_string(),
                    reason,
                };
                let name = ServerName::try_from(host.clone()).map_err(|_| {
                    handshake_failed(format!("`{host}` is neither a DNS name nor an IP address"))
                })?;
                let stream = tokio::time::timeout(self.timeout, tls.connect(name, tcp))
                    .await
                    .map_err(|_| {
                        handshake_failed(format!(
                            "no handshake within {:?} (does this port speak TLS?)",
                            self.timeout
                        ))
                    })?
                    .map_err(|err| failure(addr, err, true))?;
                Ok(Box::new(stream))
            }
            #[cfg(unix)]
            Addr::Unix(path) => {
                let unix =
                    tokio::time::timeout(self.timeout, tokio::net::UnixStream::connect(path))
                        .await
                        .map_err(|_| late())?
                        .map_err(|err| unreachable(err.to_string()))?;
                Ok(Box::new(unix))
            }
            #[cfg(not(unix))]
            Addr::Unix(_) => Err(unreachable("Unix sockets need a Unix system".into())),
        }
    }

    /// `AUTH`, `SELECT` and `PING` in one round trip; the first refusal is the error.
    async fn log_in(&self, stream: &mut Box<dyn Stream>, addr: &Addr) -> Result<(), Error> {
        let login = &self.login;
        let mut commands = Vec::new();
        let mut steps = Vec::new();
        if let Some(password) = &login.password {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = &login.username {
                auth.arg(user);
            }
            auth.arg(password);
            commands.extend(auth.get_packed_command());
            steps.push(Step::Auth);
        }
        if login.db != 0 {
            commands.extend(redis::cmd("SELECT").arg(login.db).get_packed_command());
            steps.push(Step::Select);
        }
        commands.extend(redis::cmd("PING").get_packed_command());
        steps.push(Step::Ping);
        let tls = self.tls.is_some();
        let exchange = async {
            stream
                .write_all(&commands)
                .await
                .map_err(|err| failure(addr, err, tls))?;
            let mut buf = BytesMut::new();
            let mut answers = Vec::new();
            for _ in &steps {
                answers.push(
                    read_frame(stream, &mut buf)
                        .await
                        .map_err(|err| failure(addr, err, tls))?,
                );
            }
            Ok::<_, Error>(answers)
        };
        let answers = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| Error::Unreachable {
                addr: addr.to_string(),
                reason: format!("no answer to AUTH/PING within {:?}", self.timeout),
            })??;
        for (step, answer) in steps.into_iter().zip(answers) {
            match answer {
                Frame::Simple(_) => {}
                Frame::Error(reason) => return Err(step.refused(addr, login, reason)),
                other => {
                    return Err(Error::Protocol {
                        addr: addr.to_string(),
                        reason: format!("{other:?} to {step:?}"),
                    });
                }
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Auth,
    Select,
    Ping,
}

impl Step {
    fn refused(self, addr: &Addr, login: &Login, reason: String) -> Error {
        let user = || login.username.clone().unwrap_or_else(|| "default".into());
        match self {
            Step::Auth => Error::Auth {
                addr: addr.to_string(),
                user: user(),
                reason,
            },
            Step::Select => Error::Database {
                addr: addr.to_string(),
                db: login.db,
                reason,
            },
            Step::Ping if reason.starts_with("NOAUTH") => Error::Auth {
                addr: addr.to_string(),
                user: user(),
                reason: format!(
                    "{reason} (no password was given: {})",
                    login.password_option
                ),
            },
            Step::Ping => Error::Protocol {
                addr: addr.to_string(),
                reason,
            },
        }
    }
}

/// What an I/O error while connecting means: a TLS failure (with a hint at its usual cause),
/// a connection Redis closed, or a plain I/O error.
fn failure(addr: &Addr, err: io::Error, tls: bool) -> Error {
    if let Some(rustls_error) = err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        let hint = match rustls_error {
            rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer | CertificateError::BadSignature,
            ) => {
                " (no trusted CA signed the server's certificate: give its CA with \
                 TlsConfig::ca_file)"
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => " (the server's certificate does not name the host connected to)",
            rustls::Error::InvalidMessage(_) | rustls::Error::InappropriateMessage { .. } => {
                " (does this port speak TLS?)"
            }
            rustls::Error::AlertReceived(
                AlertDescription::CertificateRequired
                | AlertDescription::HandshakeFailure
                | AlertDescription::BadCertificate
                | AlertDescription::UnknownCA,
            ) => {
                " (the server wants a client certificate that it trusts: \
                 TlsConfig::client_cert_files)"
            }
            _ => "",
        };
        return Error::TlsHandshake {
            addr: addr.to_string(),
            reason: format!("{rustls_error}{hint}"),
        };
    }
    match err.kind() {
        io::ErrorKind::UnexpectedEof if tls => Error::TlsHandshake {
            addr: addr.to_string(),
            reason: "the server closed the connection (does it want a client certificate? \
                     TlsConfig::client_cert_files)"
                .into(),
        },
        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => Error::Protocol {
            addr: addr.to_string(),
            reason: "Redis closed the connection without answering (a TLS port needs a \
                     rediss:// URL)"
                .into(),
        },
        io::ErrorKind::InvalidData => Error::Protocol {
            addr: addr.to_string(),
            reason: format!("{err} (is this a Redis port, and a TLS one only with rediss://?)"),
        },
        _ => Error::Unreachable {
            addr: addr.to_string(),
            reason: err.to_string(),
        },
    }
}

/// Reads one RESP2 frame from `stream`, with what `buf` already holds; a closed connection is
/// `UnexpectedEof`, bytes that are not RESP `InvalidData`.
pub(crate) async fn read_frame(
    stream: &mut (impl AsyncRead + Unpin + ?Sized),
    buf: &mut BytesMut,
) -> io::Result<Frame> {
    loop {
        if let Some((frame, used)) =
            resp::parse(buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
        {
            let _ = buf.split_to(used);
            return Ok(frame);
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
    }
}
