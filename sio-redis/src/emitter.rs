//! Emitting into a cluster from a process that runs no server (a worker, a cron job), in the
//! protocol of `@socket.io/redis-emitter`: sio and Node servers on the same Redis deliver
//! what it sends.

use bb8_redis::bb8::Pool;
use bytes::Bytes;
use serde::Serialize;
use sio_core::parser::{Packet, RESERVED_EVENTS};
use sio_core::{BroadcastOptions, RoomParam};

use crate::classic::Channels;
use crate::config::RedisConfig;
use crate::error::Error;
use crate::message::{Broadcast, Envelope, Request};
use crate::target::{Connections, Target};

/// The uid every server knows the emitter by.
const EMITTER_UID: &str = "emitter";

/// Sends events and room operations to the clients of a cluster without being one of its
/// servers, like Node's `@socket.io/redis-emitter`. Operators (`to`, `except`, ...) return a
/// new emitter and leave this one as it was.
///
/// ```no_run
/// use sio_redis::Emitter;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
/// let emitter = Emitter::from_url("redis://127.0.0.1:6379")?;
/// emitter.to("room1").emit("news", &"hello").await?;
/// emitter.of("/admin").emit("stats", &serde_json::json!({"users": 3})).await?;
/// emitter.within("room1").sockets_join("room2").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Emitter {
    pool: Pool<Connections>,
    channels: Channels,
    ns: String,
    opts: BroadcastOptions,
    volatile: bool,
    attachments: Vec<Bytes>,
}

impl std::fmt::Debug for Emitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Emitter")
            .field("ns", &self.ns)
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl Emitter {
    /// An emitter to the cluster on the Redis server at `url`, main namespace.
    pub fn from_url(url: &str) -> Result<Self, Error> {
        Self::new(RedisConfig::new(url))
    }

    /// An emitter with the given configuration (the key prefix must be the servers'; TLS,
    /// credentials, database and pool size as for the adapter). Connects on first use; fails
    /// on a bad configuration, and with [`Error::NoRuntime`] outside a Tokio runtime.
    ///
    /// ```no_run
    /// use sio_redis::{Emitter, RedisConfig};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), sio_redis::Error> {
    /// let config = RedisConfig::new("rediss://redis.example.com:6380").password("secret");
    /// let emitter = Emitter::new(config)?;
    /// emitter.emit("news", &"hello").await?;
    /// # Ok(()) }
    /// ```
    pub fn new(config: RedisConfig) -> Result<Self, Error> {
        let target = Target::new(&config)?;
        // bb8 spawns its reaper into the current runtime.
        tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        Ok(Emitter {
            pool: Connections::pool(target, config.timeout, config.pool_size),
            channels: Channels::new(config.key),
            ns: "/".into(),
            opts: BroadcastOptions::default(),
            volatile: false,
            attachments: Vec::new(),
        })
    }

    /// The same emitter on another namespace (`/` is added in front when missing).
    pub fn of(&self, ns: &str) -> Self {
        let ns = if ns.starts_with('/') {
            ns.to_owned()
        } else {
            format!("/{ns}")
        };
        Emitter {
            ns,
            opts: BroadcastOptions::default(),
            volatile: false,
            attachments: Vec::new(),
            ..self.clone()
        }
    }

    /// Only the clients in these rooms (added to earlier ones).
    pub fn to(&self, rooms: impl RoomParam) -> Self {
        let mut emitter = self.clone();
        emitter.opts.rooms.extend(rooms.into_rooms());
        emitter
    }

    /// The same as [`to`](Self::to) (`in` in JavaScript).
    pub fn within(&self, rooms: impl RoomParam) -> Self {
        self.to(rooms)
    }

    /// Minus the clients in these rooms.
    pub fn except(&self, rooms: impl RoomParam) -> Self {
        let mut emitter = self.clone();
        emitter.opts.except.extend(rooms.into_rooms());
        emitter
    }

    /// Clients that cannot take the event at once skip it.
    pub fn volatile(&self) -> Self {
        Emitter {
            volatile: true,
            ..self.clone()
        }
    }

    /// Binary arguments sent after `data` (or referenced by placeholders in it).
    pub fn bin(&self, attachments: Vec<Bytes>) -> Self {
        Emitter {
            attachments,
            ..self.clone()
        }
    }

    /// Sends an event to the chosen clients of every server.
    pub async fn emit<T: Serialize + ?Sized>(&self, event: &str, data: &T) -> Result<(), Error> {
        if RESERVED_EVENTS.contains(&event) {
            return Err(Error::ReservedEvent(event.to_owned()));
        }
        let packet = Packet::event(&self.ns, event, data, self.attachments.clone())?;
        let broadcast = Broadcast {
            uid: EMITTER_UID.into(),
            packet,
            opts: self.opts.clone(),
            volatile: self.volatile,
        };
        let channel = self.channels.broadcast(&self.ns, &self.opts);
        self.publish(channel, broadcast.encode()).await
    }

    /// Makes the chosen clients join rooms, on every server.
    pub async fn sockets_join(&self, rooms: impl RoomParam) -> Result<(), Error> {
        self.request(Request::SocketsJoin {
            opts: self.opts.clone(),
            rooms: rooms.into_rooms(),
        })
        .await
    }

    /// Makes the chosen clients leave rooms, on every server.
    pub async fn sockets_leave(&self, rooms: impl RoomParam) -> Result<(), Error> {
        self.request(Request::SocketsLeave {
            opts: self.opts.clone(),
            rooms: rooms.into_rooms(),
        })
        .await
    }

    /// Disconnects the chosen clients from the namespace, or closes their connections when
    /// `close`.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), Error> {
        self.request(Request::DisconnectSockets {
            opts: self.opts.clone(),
            close,
        })
        .await
    }

    /// Sends an event to the servers' own handlers (`on_server_event`). Answers cannot reach
    /// an emitter, so none is asked for.
    pub async fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), Error> {
        let packet = Packet::event(&self.ns, event, data, Vec::new())?;
        let sio_core::parser::PacketData::Event { args, .. } = packet.data else {
            return Ok(());
        };
        let envelope = Envelope {
            uid: Some(EMITTER_UID.into()),
            request: Request::ServerSideEmit {
                request_id: None,
                args: args.as_array().cloned().unwrap_or_default(),
            },
        };
        self.publish(self.channels.request(&self.ns), envelope.encode())
            .await
    }

    /// Room operations, without a uid as Node's emitter sends them.
    async fn request(&self, request: Request) -> Result<(), Error> {
        let envelope = Envelope { uid: None, request };
        self.publish(self.channels.request(&self.ns), envelope.encode())
            .await
    }

    async fn publish(&self, channel: String, message: Vec<u8>) -> Result<(), Error> {
        let mut conn = self.pool.get().await?;
        redis::cmd("PUBLISH")
            .arg(channel)
            .arg(message)
            .query_async::<()>(&mut conn.inner)
            .await?;
        Ok(())
    }
}
