//! Acknowledgements, both ways: answering a client's ack, and waiting for a client's answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::oneshot;

use crate::args::{from_args, to_args};
use crate::emit::EmitError;
use crate::parser::{Packet, PacketData};
use crate::socket::SocketRef;

/// Answers the ack a client asked for with its event. Sending when the client asked for none
/// does nothing, so handlers need not check.
///
/// ```
/// use sio_core::{AckSender, Data};
///
/// async fn add(Data((a, b)): Data<(i64, i64)>, ack: AckSender) {
///     let _ = ack.send(&(a + b));
/// }
/// ```
#[derive(Debug)]
pub struct AckSender {
    to: AckTarget,
    attachments: Vec<Bytes>,
    /// Set once the ack is sent, so that a failing handler's error is not sent as a second ack.
    sent: Arc<AtomicBool>,
}

/// Who waits for the answer.
#[derive(Debug)]
pub(crate) enum AckTarget {
    /// A client, when it gave an ack id.
    Client(SocketRef, Option<u64>),
    /// Another node that sent a server-side event with an ack.
    Server(Option<oneshot::Sender<AckResponse>>),
}

impl AckSender {
    pub(crate) fn new(to: AckTarget, sent: Arc<AtomicBool>) -> Self {
        AckSender {
            to,
            attachments: Vec::new(),
            sent,
        }
    }

    /// Whether an answer is expected.
    pub fn is_expected(&self) -> bool {
        matches!(
            self.to,
            AckTarget::Client(_, Some(_)) | AckTarget::Server(Some(_))
        )
    }

    /// Binary attachments to send with the answer (see [`Bin`](crate::Bin)).
    pub fn bin(mut self, attachments: Vec<Bytes>) -> Self {
        self.attachments = attachments;
        self
    }

    /// Sends the answer; `data` becomes the ack's arguments (see [`Args`](crate::Args)).
    /// An ack is answered once: after the first answer (this one, or the handler's return
    /// value), others are dropped.
    pub fn send<T: Serialize + ?Sized>(self, data: &T) -> Result<(), EmitError> {
        let args = crate::emit::with_placeholders(to_args(data)?, &self.attachments);
        self.answer(args)
    }

    /// Sends `args` as the answer, unless the ack was answered already.
    pub(crate) fn answer(self, args: Vec<Value>) -> Result<(), EmitError> {
        if !self.is_expected() || self.sent.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        match self.to {
            AckTarget::Client(socket, Some(id)) => send_ack(&socket, id, args, self.attachments),
            AckTarget::Server(Some(tx)) => {
                let _ = tx.send(AckResponse {
                    args,
                    attachments: self.attachments,
                });
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

/// Sends an ACK packet.
pub(crate) fn send_ack(
    socket: &SocketRef,
    id: u64,
    args: Vec<Value>,
    attachments: Vec<Bytes>,
) -> Result<(), EmitError> {
    let packet = Packet {
        ns: socket.ns().to_owned(),
        data: PacketData::Ack {
            args: Value::Array(args),
            id,
            attachments,
        },
    };
    socket.send_packet(&packet)
}

/// Why waiting for a client's ack failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// The client did not answer in time.
    #[error("the client did not acknowledge in time")]
    Timeout,
    /// The answer does not deserialize into the asked type.
    #[error("cannot deserialize the ack: {0}")]
    Data(#[from] serde_json::Error),
    /// The packet could not be sent.
    #[error(transparent)]
    Emit(#[from] EmitError),
    /// The socket disconnected before answering.
    #[error("the socket disconnected before answering")]
    Disconnected,
}

/// A client's answer to an ack request: its arguments and attachments.
#[derive(Debug, Clone, PartialEq)]
pub struct AckResponse {
    /// The arguments.
    pub args: Vec<Value>,
    /// The binary attachments.
    pub attachments: Vec<Bytes>,
}

impl AckResponse {
    /// The arguments deserialized as `T` (one argument as itself, several as a tuple or list).
    pub fn data<T: DeserializeOwned>(self) -> Result<T, serde_json::Error> {
        from_args(self.args)
    }
}
