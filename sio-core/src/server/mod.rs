//! [`Server`]: an HTTP server for an actix-web application whose WebSocket connections sio
//! drives itself, for deployments that hold many idle connections.

mod shared;
mod upgraded;

use std::fmt;
use std::io;
use std::marker::PhantomData;
use std::net::{TcpListener, ToSocketAddrs};
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::error::DispatchError;
use actix_http::{HttpService, KeepAlive, Request, Response};
use actix_server::{GracefulShutdownSignal, ServerBuilder};
use actix_service::{
    IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt as _, map_config,
};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;

use crate::SocketIo;
use shared::SharedApp;
use upgraded::Upgrade;

/// An HTTP/1.1 server for an actix-web application, like [`actix_web::HttpServer`], except
/// that a connection upgraded to a WebSocket is driven by sio instead of by actix-http's
/// dispatcher, which keeps 16 KB of buffers for as long as a connection lives. An idle
/// Socket.IO WebSocket then costs about half the memory (the book's "Getting started" has
/// the numbers).
///
/// Every request, upgrades included, still goes through the application: routes, middleware
/// and other WebSocket handlers work as under `HttpServer`. What differs:
/// - a response to an upgrade request that is not `101 Switching Protocols` closes the
///   connection (HTTP keep-alive ends with the upgrade attempt);
/// - no TLS and no HTTP/2 (terminate TLS at the load balancer, as Kubernetes ingresses do);
/// - the application's [`AppConfig`] is actix-web's default (`host()` is
///   `localhost:8080`; requests still carry their own `Host`).
///
/// TCP_NODELAY is on: a real-time server sends small messages that must not wait.
///
/// ```no_run
/// use actix_web::App;
/// use sio_core::{Namespace, SocketIo, server::Server};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let io = SocketIo::builder().namespace(Namespace::new("/")).build();
///     Server::new(move || App::new().service(io.service()))
///         .bind(("127.0.0.1", 3000))?
///         .run()
///         .await
/// }
/// ```
pub struct Server<F, I, S, B> {
    factory: F,
    builder: ServerBuilder,
    http: Http,
    /// Tells idle keep-alive connections that the server stops, as `HttpServer` does.
    shutdown: GracefulShutdownSignal,
    /// Set by [`shutdown_on_signal`](Self::shutdown_on_signal): what a signal shuts down first.
    on_signal: Option<(SocketIo, Duration)>,
    /// The application `factory` makes, its service factory and body, as for `HttpServer`.
    app: PhantomData<App<I, S, B>>,
}

impl<F, I, S, B> fmt::Debug for Server<F, I, S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("http", &self.http)
            .finish_non_exhaustive()
    }
}

impl<F, I, S, B> Server<F, I, S, B>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    /// A server that makes one application per worker with `factory`.
    pub fn new(factory: F) -> Self {
        let builder = ServerBuilder::default();
        Server {
            factory,
            shutdown: builder.graceful_shutdown_signal(),
            on_signal: None,
            builder,
            http: Http {
                keep_alive: KeepAlive::default(),
                client_request_timeout: Duration::from_secs(5),
                tcp_nodelay: true,
            },
            app: PhantomData,
        }
    }

    /// The number of worker threads (default: one per physical core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.builder = self.builder.workers(workers);
        self
    }

    /// How long an idle HTTP keep-alive connection stays open (default 5 s); WebSockets are
    /// not affected.
    pub fn keep_alive(mut self, keep_alive: impl Into<KeepAlive>) -> Self {
        self.http.keep_alive = keep_alive.into();
        self
    }

    /// How long a client has to send a request's head (default 5 s).
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.http.client_request_timeout = timeout;
        self
    }

    /// Whether accepted connections set TCP_NODELAY (default: yes).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.http.tcp_nodelay = nodelay;
        self
    }

    /// How long a graceful stop waits for workers to finish (default 30 s).
    pub fn shutdown_timeout(mut self, secs: u64) -> Self {
        self.builder = self.builder.shutdown_timeout(secs);
        self
    }

    /// Leaves SIGINT, SIGTERM and SIGQUIT to the application (by default they stop the
    /// server).
    pub fn disable_signals(mut self) -> Self {
        self.builder = self.builder.disable_signals();
        self
    }

    /// On SIGTERM or SIGINT, stops the way a Kubernetes pod should: new connections are
    /// refused, running handlers get up to `grace` to send the acks they owe, every client is
    /// told to reconnect (to another node behind the load balancer; see
    /// [`SocketIo::shutdown`]), then the server stops, its workers given
    /// [`shutdown_timeout`](Self::shutdown_timeout) for what remains. Replaces actix's own
    /// handling of those signals.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use actix_web::App;
    /// use sio_core::{Namespace, SocketIo, server::Server};
    ///
    /// #[actix_web::main]
    /// async fn main() -> std::io::Result<()> {
    ///     let io = SocketIo::builder().namespace(Namespace::new("/")).build();
    ///     let app_io = io.clone();
    ///     Server::new(move || App::new().service(app_io.service()))
    ///         .shutdown_on_signal(&io, Duration::from_secs(5))
    ///         .bind(("127.0.0.1", 3000))?
    ///         .run()
    ///         .await
    /// }
    /// ```
    pub fn shutdown_on_signal(mut self, io: &SocketIo, grace: Duration) -> Self {
        self.builder = self.builder.disable_signals();
        self.on_signal = Some((io.clone(), grace));
        self
    }

    /// Starts serving on the given listener when the server runs.
    pub fn listen(mut self, listener: TcpListener) -> io::Result<Self> {
        let (factory, http, shutdown) = (self.factory.clone(), self.http, self.shutdown.clone());
        self.builder = self.builder.listen("sio", listener, move || {
            Self::worker(factory(), http, shutdown.clone())
        })?;
        Ok(self)
    }

    /// Starts serving on every address `addr` resolves to when the server runs.
    pub fn bind(mut self, addr: impl ToSocketAddrs) -> io::Result<Self> {
        let (factory, http, shutdown) = (self.factory.clone(), self.http, self.shutdown.clone());
        self.builder = self.builder.bind("sio", addr, move || {
            Self::worker(factory(), http, shutdown.clone())
        })?;
        Ok(self)
    }

    /// Runs the server; the returned [`actix_web::dev::Server`] resolves when it stops, and
    /// its [`handle`](actix_web::dev::Server::handle) stops it.
    ///
    /// # Panics
    ///
    /// When nothing was bound (as `HttpServer::run`).
    pub fn run(self) -> actix_web::dev::Server {
        let server = self.builder.run();
        if let Some((io, grace)) = self.on_signal {
            let handle = server.handle();
            actix_web::rt::spawn(async move {
                stop_signal().await;
                tracing::info!(target: "sio::server", "stopping: clients are told to reconnect");
                io.shutdown(grace).await;
                handle.stop(true).await;
            });
        }
        server
    }

    /// What a worker runs for a listener: actix-http's service with sio's upgrade service, both
    /// on the worker's one application.
    fn worker(
        app: I,
        http: Http,
        shutdown: GracefulShutdownSignal,
    ) -> impl ServiceFactory<TcpStream, Config = (), Response = (), Error = DispatchError, InitError = ()>
    {
        let app = app
            .into_factory()
            .map_err(|err| err.into().error_response());
        let app = SharedApp::new(map_config(app, |()| AppConfig::default()));
        HttpService::build()
            .graceful_shutdown_signal(move || {
                let shutdown = shutdown.clone();
                async move { shutdown.notified().await }
            })
            .keep_alive(http.keep_alive)
            .client_request_timeout(http.client_request_timeout)
            .tcp_nodelay(http.tcp_nodelay)
            .upgrade(Upgrade::new(app.clone()))
            .finish(app)
            .tcp()
    }
}

/// Resolves on SIGTERM or SIGINT (on Ctrl-C or Ctrl-Break where there is no SIGTERM).
#[cfg(unix)]
async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(err) => {
            tracing::warn!(target: "sio::server", %err, "SIGTERM cannot be caught, only SIGINT");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn stop_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The types of an application, unused at run time.
type App<I, S, B> = fn() -> (I, S, B);

/// Settings of each worker's HTTP service.
#[derive(Debug, Clone, Copy)]
struct Http {
    keep_alive: KeepAlive,
    client_request_timeout: Duration,
    tcp_nodelay: bool,
}
