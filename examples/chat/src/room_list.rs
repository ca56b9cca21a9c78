//! The room list (every chat room with its member count, on every node) is one cluster-wide
//! `fetch_sockets` of the whole namespace. Each node computes it at most once per
//! [`REFRESH_DELAY`] after changes and once per [`MAX_AGE`] for requests, however many joins,
//! leaves and `rooms` requests its clients send.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sio_core::{BroadcastOperators, SocketRef};
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::chat::{ChatError, FETCH_TIMEOUT, RoomInfo, rooms_of};

/// How long after a change the new list goes out; the changes made meanwhile go with it.
/// Short enough that a person sees the counts change at once.
const REFRESH_DELAY: Duration = Duration::from_millis(200);
/// How old a list may be when a page asks for it (the lists sent after changes keep it
/// current in between).
const MAX_AGE: Duration = Duration::from_secs(1);

/// This node's room list; given to the handlers as state.
#[derive(Debug, Clone, Default)]
pub(crate) struct RoomList(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// The last list computed, and when. Held while a list is computed, so that requests
    /// arriving meanwhile wait for it instead of computing their own.
    last: Mutex<Option<(Instant, Vec<RoomInfo>)>>,
    /// A refresh is scheduled and has not started.
    scheduled: AtomicBool,
}

impl RoomList {
    /// The list, at most [`MAX_AGE`] old.
    pub(crate) async fn get(&self, socket: &SocketRef) -> Result<Vec<RoomInfo>, ChatError> {
        let mut last = self.0.last.lock().await;
        if let Some((at, rooms)) = &*last
            && at.elapsed() < MAX_AGE
        {
            return Ok(rooms.clone());
        }
        let rooms = compute(socket.namespace()).await?;
        *last = Some((Instant::now(), rooms.clone()));
        Ok(rooms)
    }

    /// Rooms changed on this node: every user gets the new list in [`REFRESH_DELAY`], along
    /// with the other changes made by then.
    pub(crate) fn changed(&self, socket: &SocketRef) {
        if self.0.scheduled.swap(true, Ordering::AcqRel) {
            return;
        }
        let list = self.clone();
        let namespace = socket.namespace();
        tokio::spawn(async move {
            tokio::time::sleep(REFRESH_DELAY).await;
            // From here on a change needs a refresh of its own: this one may not see it.
            list.0.scheduled.store(false, Ordering::Release);
            let mut last = list.0.last.lock().await;
            match compute(namespace.clone()).await {
                Ok(rooms) => {
                    let _ = namespace.emit("rooms", &rooms);
                    *last = Some((Instant::now(), rooms));
                }
                Err(err) => tracing::warn!(%err, "cannot list the rooms"),
            }
        });
    }
}

/// The room list of every node.
async fn compute(namespace: BroadcastOperators) -> Result<Vec<RoomInfo>, ChatError> {
    let sockets = namespace
        .timeout(FETCH_TIMEOUT)
        .fetch_sockets()
        .await
        .map_err(|err| ChatError::Cluster(err.to_string()))?;
    Ok(rooms_of(&sockets))
}
