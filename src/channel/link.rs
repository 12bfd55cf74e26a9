//! The channel's one link up to its map: enough for the channel to leave the map when it
//! closes, and for the layers above to find the map again. The map implements [`Membership`];
//! the channel does not know its type.

use std::any::Any;
use std::rc::{Rc, Weak};

use crate::event::ChannelId;

/// Bytes a channel moved since it was made (what snapshots report).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) received: u64,
    pub(crate) sent: u64,
}

/// What a map is to the channels it holds.
pub(crate) trait Membership {
    /// Channel `id` closed: it leaves the map now, with what it moved in its life.
    fn leave(&self, id: ChannelId, traffic: Traffic);

    /// Runs `task` as a member of the map (it keeps the map from being empty until it ends):
    /// a closed TLS channel's last records, flushed after the channel has left.
    fn linger(self: Rc<Self>, task: std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>);

    /// The map itself, for the layers above the channel that know its type.
    fn as_any(self: Rc<Self>) -> Rc<dyn Any>;
}

/// A channel's membership of a map, if it has one.
#[derive(Default)]
pub(crate) struct MapLink(Option<Weak<dyn Membership>>);

impl MapLink {
    pub(crate) fn new(map: Weak<dyn Membership>) -> MapLink {
        MapLink(Some(map))
    }

    /// The map, if the channel is in one and the map still exists.
    pub(crate) fn upgrade(&self) -> Option<Rc<dyn Membership>> {
        self.0.as_ref().and_then(Weak::upgrade)
    }

    /// Leaves the map (on close); the link is cut.
    pub(crate) fn leave(&mut self, id: ChannelId, traffic: Traffic) {
        if let Some(map) = self.0.take().and_then(|map| map.upgrade()) {
            map.leave(id, traffic);
        }
    }
}
