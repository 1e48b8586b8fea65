//! Session guarantees (Terry et al., 1994) judged per user and key: read-your-writes and monotonic reads against what the user had written and seen when the read was sent, and each session's version token.
//!
//! A read is judged by the floors in force when it was *sent* ([`Sessions::floor`]): reads
//! in flight together are not ordered, so one answered after another may be older without
//! breaking a promise. Versions are totally ordered positions (a log sequence number, 0 for
//! "not there"). A session's token is the highest version it wrote or saw of any key: a
//! replica that has applied up to it has every version the session knows of (MongoDB's
//! causal sessions, Bayou's write sets reduced to one number).

use std::collections::BTreeMap;

/// What a user had written and seen of a key, and its session's token, when it sent a read.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Floor {
    pub wrote: u64,
    pub seen: u64,
    pub token: u64,
}

/// A read that broke a session guarantee.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anomaly {
    /// Older than the user's own acknowledged write.
    ReadYourWrites,
    /// Older than a version the user had seen before sending it.
    MonotonicRead,
}

/// Every user's floors per key and token.
#[derive(Clone, Debug)]
pub struct Sessions<K> {
    floors: BTreeMap<(u32, K), (u64, u64)>,
    tokens: Vec<u64>,
}

impl<K: Ord + Clone> Sessions<K> {
    pub fn new(users: usize) -> Self {
        Sessions { floors: BTreeMap::new(), tokens: vec![0; users] }
    }

    pub fn users(&self) -> usize {
        self.tokens.len()
    }

    /// `user`'s write of `key` was acknowledged as `version`.
    pub fn wrote(&mut self, user: u32, key: K, version: u64) {
        let floor = self.floors.entry((user, key)).or_default();
        floor.0 = floor.0.max(version);
        self.tokens[user as usize] = self.tokens[user as usize].max(version);
    }

    /// The floors to send a read of `key` with.
    pub fn floor(&self, user: u32, key: &K) -> Floor {
        let (wrote, seen) = self.floors.get(&(user, key.clone())).copied().unwrap_or_default();
        Floor { wrote, seen, token: self.tokens[user as usize] }
    }

    /// A read of `key` sent with `floor` returned `version`: the guarantee it broke, if any
    /// (read-your-writes first), and the user's floors raised to it.
    pub fn read(&mut self, user: u32, key: K, floor: Floor, version: u64) -> Option<Anomaly> {
        let seen = &mut self.floors.entry((user, key)).or_default().1;
        *seen = (*seen).max(version);
        self.tokens[user as usize] = self.tokens[user as usize].max(version);
        match version {
            v if v < floor.wrote => Some(Anomaly::ReadYourWrites),
            v if v < floor.seen => Some(Anomaly::MonotonicRead),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_judged_by_the_floors_they_were_sent_with() {
        let mut s: Sessions<&str> = Sessions::new(2);
        s.wrote(0, "a", 5);
        let sent = s.floor(0, &"a");
        assert_eq!(sent, Floor { wrote: 5, seen: 0, token: 5 });
        assert_eq!(s.read(0, "a", sent, 0), Some(Anomaly::ReadYourWrites), "its own upload 404s");
        assert_eq!(s.read(1, "a", s.floor(1, &"a"), 7), None);
        let (first, second) = (s.floor(1, &"a"), s.floor(1, &"a"));
        assert_eq!(s.read(1, "a", first, 7), None);
        assert_eq!(s.read(1, "a", second, 6), Some(Anomaly::MonotonicRead), "saw 7 before sending");
        let (a, b) = (s.floor(0, &"b"), s.floor(0, &"b"));
        assert_eq!((s.read(0, "b", a, 9), s.read(0, "b", b, 3)), (None, None), "in flight together: not ordered");
        assert_eq!(s.floor(0, &"c").token, 9, "the token covers every key");
    }
}
