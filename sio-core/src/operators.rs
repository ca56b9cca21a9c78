//! Broadcast operators: choosing which sockets an emit reaches (`io.to("room").emit(...)`).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ack::{AckError, AckResponse};
use crate::adapter::{
    AdapterError, BroadcastOptions, ClusterRequest, ClusterResponse, RemoteSocket, Room,
};
use crate::emit::EmitError;
use crate::engine::Sid;
use crate::namespace::Nsp;
use crate::parser::PacketData;
use crate::socket::{SocketRef, event_packet};
use serde_json::Value;

/// One or more rooms: a `&str`, a `String`, a socket id, or a list of them.
pub trait RoomParam {
    /// The rooms.
    fn into_rooms(self) -> Vec<Room>;
}

impl RoomParam for &str {
    fn into_rooms(self) -> Vec<Room> {
        vec![self.to_owned()]
    }
}

impl RoomParam for String {
    fn into_rooms(self) -> Vec<Room> {
        vec![self]
    }
}

impl RoomParam for &String {
    fn into_rooms(self) -> Vec<Room> {
        vec![self.clone()]
    }
}

impl RoomParam for Sid {
    fn into_rooms(self) -> Vec<Room> {
        vec![self.to_string()]
    }
}

impl<T: RoomParam> RoomParam for Vec<T> {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().flat_map(RoomParam::into_rooms).collect()
    }
}

impl<T: RoomParam, const N: usize> RoomParam for [T; N] {
    fn into_rooms(self) -> Vec<Room> {
        self.into_iter().flat_map(RoomParam::into_rooms).collect()
    }
}

/// An emit (or room operation) on a set of sockets of one namespace, chosen with `to`,
/// `except` and friends. Every packet is encoded once and its bytes shared by all recipients.
///
/// ```
/// # fn f(io: sio_core::SocketIo) {
/// let _ = io.to("room1").except("banned").emit("news", "hello");
/// # }
/// ```
#[must_use]
#[derive(Clone)]
pub struct BroadcastOperators {
    nsp: Arc<Nsp>,
    opts: BroadcastOptions,
    attachments: Vec<Bytes>,
    timeout: Option<Duration>,
    volatile: bool,
    local: bool,
}

impl fmt::Debug for BroadcastOperators {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BroadcastOperators")
            .field("ns", &self.nsp.path())
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl BroadcastOperators {
    pub(crate) fn new(nsp: Arc<Nsp>, opts: BroadcastOptions) -> Self {
        BroadcastOperators {
            nsp,
            opts,
            attachments: Vec::new(),
            timeout: None,
            volatile: false,
            local: false,
        }
    }

    /// Only the sockets in these rooms (added to earlier `to` rooms).
    pub fn to(mut self, rooms: impl RoomParam) -> Self {
        self.opts.rooms.extend(rooms.into_rooms());
        self
    }

    /// Same as [`to`](Self::to) (`in` in JavaScript).
    pub fn within(self, rooms: impl RoomParam) -> Self {
        self.to(rooms)
    }

    /// Not the sockets in these rooms.
    pub fn except(mut self, rooms: impl RoomParam) -> Self {
        self.opts.except.extend(rooms.into_rooms());
        self
    }

    /// Only this node's sockets, not those of the other nodes of the cluster.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Drops the event for sockets that are not ready to take it at once (something is still
    /// waiting in their outbound queue), instead of queueing it: for data that is stale by the
    /// time a slow client would read it. Volatile events are not kept for recovery either.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Binary attachments (see [`Socket::bin`](crate::Socket::bin)).
    pub fn bin(mut self, attachments: Vec<Bytes>) -> Self {
        self.attachments = attachments;
        self
    }

    /// How long `emit_with_ack` waits for the answers.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sends the event to every chosen socket. Sockets whose connection is closed or full are
    /// skipped.
    pub fn emit<T: Serialize + ?Sized>(self, event: &str, data: &T) -> Result<(), EmitError> {
        let mut packet =
            event_packet(self.nsp.path(), event, data, None, self.attachments.clone())?;
        if !self.local && self.nsp.backend_logs() {
            // The backend's log gives the broadcast its offset and hands it back to this node
            // in log order, with the other nodes' broadcasts: this node's sockets get it then.
            self.nsp.publish(ClusterRequest::Broadcast {
                packet,
                opts: self.opts,
                volatile: self.volatile,
                offset: None,
                numbered: false,
            });
            return Ok(());
        }
        let recovery = self.nsp.recovery().filter(|_| !self.nsp.backend_logs());
        // A broadcast kept for recovery gets its number in this node's numbering, which stays
        // held until it is delivered here: the other nodes and this one get this node's
        // broadcasts in number order, as offsets require.
        let logged = !self.volatile
            && matches!(
                packet.data,
                PacketData::Event {
                    args: Value::Array(_),
                    id: None,
                    ..
                }
            );
        let claim = recovery
            .filter(|_| logged)
            .map(|recovery| recovery.claim(self.local));
        if !self.local {
            // The other nodes hear of it first (as Node's adapters do): their deliveries then
            // overlap with this node's instead of waiting for them and a Redis round trip.
            let mut published = packet.clone();
            if let Some(claim) = &claim {
                claim.mark(&mut published);
            }
            self.nsp.publish(ClusterRequest::Broadcast {
                packet: published,
                opts: self.opts.clone(),
                volatile: self.volatile,
                offset: None,
                numbered: claim.is_some(),
            });
        }
        // The gate only now: an in-process backend hands the broadcast to the other nodes
        // within `publish`, and two nodes broadcasting at once would each hold their own gate
        // and wait for the other's.
        let _gate = recovery.map(crate::recovery::Recovery::broadcasting);
        if let (Some(recovery), Some(claim)) = (recovery, &claim) {
            // The offset the client remembers to ask for what it missed.
            recovery.deliver_own(claim, &mut packet, &self.opts);
        }
        self.nsp.deliver(&packet, &self.opts, self.volatile);
        Ok(())
    }

    /// Sends the event to every chosen socket, on every node, and waits for each one's ack
    /// (at most the timeout). This node's sockets each give a result (an answer, a timeout, a
    /// disconnection); other nodes report the answers that arrived in time. No particular order.
    pub async fn emit_with_ack<V: DeserializeOwned, T: Serialize + ?Sized>(
        self,
        event: &str,
        data: &T,
    ) -> Result<Vec<Result<V, AckError>>, EmitError> {
        let timeout = self.timeout.unwrap_or_else(|| self.nsp.ack_timeout());
        let id = self.nsp.next_ack_id();
        let packet = event_packet(
            self.nsp.path(),
            event,
            data,
            Some(id),
            self.attachments.clone(),
        )?;
        let local = join_all(self.nsp.send_with_acks(&packet, &self.opts, timeout));
        let remote = async {
            if self.local {
                return Vec::new();
            }
            let request = ClusterRequest::BroadcastWithAck {
                packet,
                opts: self.opts.clone(),
                timeout,
            };
            match self.nsp.request(request, timeout).await {
                Ok(answers) => answers
                    .into_iter()
                    .flat_map(|answer| match answer {
                        ClusterResponse::Acks(acks) => acks,
                        _ => Vec::new(),
                    })
                    .collect(),
                Err(err) => {
                    tracing::warn!(%err, "acks of the other nodes are lost");
                    Vec::new()
                }
            }
        };
        let (local, remote) = tokio::join!(local, remote);
        let decode = |r: Result<AckResponse, AckError>| r.and_then(|r| Ok(r.data()?));
        Ok(local
            .into_iter()
            .chain(remote.into_iter().map(Ok))
            .map(decode)
            .collect())
    }

    /// The chosen sockets of this node.
    pub fn sockets(&self) -> Vec<SocketRef> {
        self.nsp.local_sockets(&self.opts)
    }

    /// The chosen sockets of every node (`fetchSockets()`), described.
    pub async fn fetch_sockets(self) -> Result<Vec<RemoteSocket>, AdapterError> {
        let mut sockets: Vec<RemoteSocket> = self.sockets().iter().map(|s| s.describe()).collect();
        if !self.local {
            let request = ClusterRequest::FetchSockets { opts: self.opts };
            let timeout = self.timeout.unwrap_or_else(|| self.nsp.ack_timeout());
            for answer in self.nsp.request(request, timeout).await? {
                if let ClusterResponse::Sockets(remote) = answer {
                    sockets.extend(remote);
                }
            }
        }
        Ok(sockets)
    }

    /// Sends an event to the handlers of this namespace on the other nodes of the cluster
    /// (`serverSideEmit`), registered with
    /// [`Namespace::on_server_event`](crate::Namespace::on_server_event). Rooms and flags do not
    /// apply. Without a cluster backend it goes nowhere.
    ///
    /// ```no_run
    /// # fn f(io: sio_core::SocketIo) {
    /// if let Some(admin) = io.of("/admin") {
    ///     admin.server_side_emit("reload", &"config.toml").ok();
    /// }
    /// # }
    /// ```
    pub fn server_side_emit<T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<(), EmitError> {
        let args = server_event_args(event, data)?;
        self.nsp
            .publish(ClusterRequest::ServerSideEmit { args, ack: false });
        Ok(())
    }

    /// Like [`server_side_emit`](Self::server_side_emit), and waits (at most the
    /// [`timeout`](Self::timeout), or the ack timeout) for the answer each other node's handler
    /// gives with its [`AckSender`](crate::AckSender). Nodes that do not answer in time are
    /// left out.
    pub async fn server_side_emit_with_ack<V: DeserializeOwned, T: Serialize + ?Sized>(
        &self,
        event: &str,
        data: &T,
    ) -> Result<Vec<Result<V, serde_json::Error>>, AckError> {
        let args = server_event_args(event, data)?;
        let timeout = self.timeout.unwrap_or_else(|| self.nsp.ack_timeout());
        let answers = self
            .nsp
            .request(ClusterRequest::ServerSideEmit { args, ack: true }, timeout)
            .await
            .map_err(|err| AckError::Emit(EmitError::Adapter(err)))?;
        Ok(answers
            .into_iter()
            .flat_map(|answer| match answer {
                ClusterResponse::Acks(acks) => acks,
                _ => Vec::new(),
            })
            .map(AckResponse::data)
            .collect())
    }

    /// Makes the chosen sockets join rooms, on every node (`socketsJoin`).
    pub fn join(self, rooms: impl RoomParam) {
        self.apply(|opts| ClusterRequest::SocketsJoin {
            opts,
            rooms: rooms.into_rooms(),
        });
    }

    /// Makes the chosen sockets leave rooms, on every node (`socketsLeave`).
    pub fn leave(self, rooms: impl RoomParam) {
        self.apply(|opts| ClusterRequest::SocketsLeave {
            opts,
            rooms: rooms.into_rooms(),
        });
    }

    /// Disconnects the chosen sockets from the namespace, on every node
    /// (`disconnectSockets()`).
    pub fn disconnect(self) {
        self.apply(|opts| ClusterRequest::DisconnectSockets { opts, close: false });
    }

    /// Closes the chosen sockets' connections, on every node (`disconnectSockets(true)`).
    pub fn close(self) {
        self.apply(|opts| ClusterRequest::DisconnectSockets { opts, close: true });
    }

    /// Applies an operation here, then on the other nodes unless `local`.
    fn apply(self, request: impl FnOnce(BroadcastOptions) -> ClusterRequest) {
        let request = request(self.opts);
        // Applied at once; the answer only matters to other nodes.
        drop(self.nsp.handle_local(request.clone()));
        if !self.local {
            self.nsp.publish(request);
        }
    }
}

/// The event name followed by the arguments `data` stands for.
fn server_event_args<T: Serialize + ?Sized>(
    event: &str,
    data: &T,
) -> Result<Vec<Value>, EmitError> {
    let mut args = vec![Value::String(event.to_owned())];
    args.extend(crate::args::to_args(data)?);
    Ok(args)
}
