//! The room index of one namespace: which sockets are in which rooms.
//!
//! This is the in-process part of the adapter that every node keeps; cluster backends (Redis)
//! carry broadcasts between nodes and resolve them against each node's own index.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;

use crate::engine::Sid;

/// A room name.
pub type Room = String;

/// Who a broadcast reaches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    /// Sockets in any of these rooms (all sockets when empty).
    pub rooms: Vec<Room>,
    /// Minus the sockets in any of these rooms.
    pub except: Vec<Room>,
    /// Minus this socket (the sender of `socket.broadcast()` / `socket.to()`).
    pub except_sid: Option<Sid>,
}

#[derive(Debug, Default)]
struct Index {
    /// Room names may come from clients: keyed with std's DoS-resistant hasher; socket ids
    /// are the server's own.
    rooms: HashMap<Room, foldhash::HashSet<Sid>>,
    by_socket: foldhash::HashMap<Sid, HashSet<Room>>,
}

/// Rooms and their members, for one namespace on this node.
#[derive(Debug, Default)]
pub(crate) struct LocalAdapter {
    index: RwLock<Index>,
}

impl LocalAdapter {
    /// Adds a socket to rooms; returns the rooms that did not exist before.
    pub(crate) fn join(&self, sid: Sid, rooms: impl IntoIterator<Item = Room>) -> Vec<Room> {
        let mut index = self.write();
        let mut created = Vec::new();
        for room in rooms {
            let members = index.rooms.entry(room.clone()).or_default();
            if members.is_empty() {
                created.push(room.clone());
            }
            members.insert(sid);
            index.by_socket.entry(sid).or_default().insert(room);
        }
        created
    }

    /// Removes a socket from rooms; returns the rooms that are now empty (and gone).
    pub(crate) fn leave(&self, sid: Sid, rooms: impl IntoIterator<Item = Room>) -> Vec<Room> {
        let mut index = self.write();
        let mut deleted = Vec::new();
        for room in rooms {
            if remove_member(&mut index.rooms, &room, sid) {
                deleted.push(room.clone());
            }
            if let Some(of_socket) = index.by_socket.get_mut(&sid) {
                of_socket.remove(&room);
            }
        }
        deleted
    }

    /// Removes a socket from all its rooms; returns the rooms that are now empty.
    pub(crate) fn leave_all(&self, sid: Sid) -> Vec<Room> {
        let mut index = self.write();
        let mut deleted = Vec::new();
        for room in index.by_socket.remove(&sid).unwrap_or_default() {
            if remove_member(&mut index.rooms, &room, sid) {
                deleted.push(room);
            }
        }
        deleted
    }

    /// The number of rooms with at least one member.
    pub(crate) fn room_count(&self) -> usize {
        self.read().rooms.len()
    }

    pub(crate) fn rooms_of(&self, sid: Sid) -> Vec<Room> {
        self.read()
            .by_socket
            .get(&sid)
            .map(|rooms| rooms.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The sockets a broadcast reaches; `all` lists every socket of the namespace, and is
    /// called only for a broadcast to no room in particular (a room's broadcast must not cost
    /// a copy of every socket id: a client can trigger them by the thousand).
    pub(crate) fn targets<I: IntoIterator<Item = Sid>>(
        &self,
        opts: &BroadcastOptions,
        all: impl FnOnce() -> I,
    ) -> Vec<Sid> {
        let index = self.read();
        let excluded = |sid: &Sid| {
            opts.except_sid == Some(*sid)
                || opts
                    .except
                    .iter()
                    .any(|room| index.rooms.get(room).is_some_and(|m| m.contains(sid)))
        };
        if opts.rooms.is_empty() {
            return all().into_iter().filter(|sid| !excluded(sid)).collect();
        }
        let mut seen = foldhash::HashSet::default();
        opts.rooms
            .iter()
            .filter_map(|room| index.rooms.get(room))
            .flatten()
            .filter(|sid| !excluded(sid) && seen.insert(**sid))
            .copied()
            .collect()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Index> {
        self.index
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        self.index
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Removes a member; `true` when that emptied (and so deleted) the room.
fn remove_member(rooms: &mut HashMap<Room, foldhash::HashSet<Sid>>, room: &str, sid: Sid) -> bool {
    let Some(members) = rooms.get_mut(room) else {
        return false;
    };
    if !members.remove(&sid) || !members.is_empty() {
        return false;
    }
    rooms.remove(room);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_targets_follow_rooms_and_exceptions() {
        let adapter = LocalAdapter::default();
        let (a, b, c) = (Sid::new(0), Sid::new(0), Sid::new(0));
        assert_eq!(
            adapter.join(a, ["r1".to_string(), "r2".to_string()]),
            ["r1", "r2"]
        );
        assert_eq!(adapter.join(b, ["r1".to_string()]), Vec::<Room>::new());
        adapter.join(c, ["r3".to_string()]);
        let all = [a, b, c];
        let targets = |opts: BroadcastOptions| {
            let mut t = adapter.targets(&opts, || all.iter().copied());
            t.sort();
            t
        };
        let sorted = |mut v: Vec<Sid>| {
            v.sort();
            v
        };
        assert_eq!(targets(BroadcastOptions::default()), sorted(vec![a, b, c]));
        let in_r1 = BroadcastOptions {
            rooms: vec!["r1".into(), "r2".into()],
            ..Default::default()
        };
        assert_eq!(targets(in_r1.clone()), sorted(vec![a, b]));
        assert_eq!(
            targets(BroadcastOptions {
                except: vec!["r2".into()],
                ..in_r1.clone()
            }),
            vec![b]
        );
        assert_eq!(
            targets(BroadcastOptions {
                except_sid: Some(b),
                ..in_r1
            }),
            vec![a]
        );
        assert!(adapter.leave(a, ["r1".to_string()]).is_empty());
        assert_eq!(adapter.rooms_of(a), vec!["r2".to_string()]);
        assert_eq!(adapter.leave_all(a), ["r2"]);
        assert!(adapter.rooms_of(a).is_empty());
        assert_eq!(
            adapter.targets(&BroadcastOptions::default(), std::iter::empty),
            vec![]
        );
    }

    #[test]
    fn a_room_broadcast_never_lists_the_whole_namespace() {
        let adapter = LocalAdapter::default();
        let a = Sid::new(0);
        adapter.join(a, ["r".to_string()]);
        let to_room = BroadcastOptions {
            rooms: vec!["r".into()],
            except: vec!["x".into()],
            ..Default::default()
        };
        let listed = std::cell::Cell::new(false);
        let all = || {
            listed.set(true);
            vec![a]
        };
        assert_eq!(adapter.targets(&to_room, all), vec![a]);
        assert!(
            !listed.get(),
            "every socket id was copied for a room broadcast"
        );
    }
}
