//! Single flight at one process: readers of a key coalesced behind one lookup, and at most one load of a key under way — the process's own (holding a lock's version), or another's that it polls for while that one holds the lock.
//!
//! Go's `singleflight` and the per-instance half of Facebook's memcache leases: the first
//! reader of a key (`join` says so) looks it up for everyone who joins after it; when the
//! lookup misses, the process either loads the key itself (`load`, with the version of the
//! cache lock it holds, 0 for none) or — another process holding the lock — waits for that
//! one's value (`poll`), looking again now and then. Whatever answers the key — a lookup that
//! found it (`found`) or the process's own load (`loaded`) — hands back everyone waiting,
//! oldest first, and ends the flight; the next reader starts a new one. A crash (`clear`)
//! forgets readers and flights alike.
//!
//! Keys are [`KeyTable`] keys: small dense integers.

use crate::parts::table::KeyTable;
use crate::parts::waiters::WaiterLists;

/// What the process is doing about a key that its lookup missed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flight {
    /// Loading it, holding this version of the cache lock (0: no lock).
    Loading(u64),
    /// Waiting for another process's load, looking the key up again now and then.
    Polling,
}

/// The readers waiting on each key and the flight under way for it.
#[derive(Clone, Debug)]
pub struct SingleFlight<W> {
    waiting: WaiterLists<W>,
    flights: KeyTable<Flight>,
}

impl<W> Default for SingleFlight<W> {
    fn default() -> Self {
        SingleFlight { waiting: WaiterLists::default(), flights: KeyTable::default() }
    }
}

impl<W: Clone> SingleFlight<W> {
    /// `reader` waits on `key`. True if it is the first: the caller looks the key up for all.
    pub fn join(&mut self, key: u32, reader: W) -> bool {
        self.waiting.wait(key, reader)
    }

    /// The flight under way for `key`, if any.
    pub fn flight(&self, key: u32) -> Option<Flight> {
        self.flights.get(key).copied()
    }

    /// Whether a load or a poll of `key` is under way.
    pub fn busy(&self, key: u32) -> bool {
        self.flights.contains_key(key)
    }

    /// The process loads `key` itself, holding version `lock` of the cache lock (0: none).
    pub fn load(&mut self, key: u32, lock: u64) {
        self.flights.insert(key, Flight::Loading(lock));
    }

    /// Another process holds `key`'s lock: wait for its value (look again when a poll is due).
    pub fn poll(&mut self, key: u32) {
        self.flights.insert(key, Flight::Polling);
    }

    /// A lookup for everyone waiting on `key` found its value: they are handed back, and a
    /// poll ends (the bool: one was under way — the readers waited for another's load).
    pub fn found(&mut self, key: u32) -> (Vec<W>, bool) {
        let polled = self.flight(key) == Some(Flight::Polling);
        if polled {
            self.flights.remove(key);
        }
        (self.waiting.take(key), polled)
    }

    /// The process's own load of `key` ended: the lock version it held (0: none, or no load of
    /// its own was under way) and everyone waiting, who are handed back.
    pub fn loaded(&mut self, key: u32) -> (u64, Vec<W>) {
        let lock = match self.flights.remove(key) {
            Some(Flight::Loading(lock)) => lock,
            _ => 0,
        };
        (lock, self.waiting.take(key))
    }

    /// Readers waiting on `key`.
    pub fn count(&self, key: u32) -> usize {
        self.waiting.count(key)
    }

    /// Readers waiting, on all keys.
    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// Flights (loads and polls) under way.
    pub fn flights(&self) -> usize {
        self.flights.len()
    }

    /// Forgets every reader and flight (the process crashed).
    pub fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_reader_looks_up_and_one_answer_serves_everyone_in_order() {
        let mut f: SingleFlight<u32> = SingleFlight::default();
        assert_eq!([(7, 1), (7, 2), (3, 9), (7, 3)].map(|(k, r)| f.join(k, r)), [true, false, true, false]);
        assert_eq!((f.count(7), f.waiting(), f.busy(7)), (3, 4, false));
        // A hit: no flight was under way; the key's readers are handed back, oldest first.
        assert_eq!(f.found(7), (vec![1, 2, 3], false));
        assert_eq!((f.count(7), f.waiting()), (0, 1));
        assert!(f.join(7, 4), "after an answer, the next reader starts a new flight");
    }

    #[test]
    fn one_load_per_key_and_its_lock_handed_back_when_it_ends() {
        let mut f: SingleFlight<u32> = SingleFlight::default();
        f.join(5, 1);
        f.load(5, 42);
        assert_eq!((f.flight(5), f.busy(5), f.flights()), (Some(Flight::Loading(42)), true, 1));
        f.join(5, 2);
        assert_eq!(f.loaded(5), (42, vec![1, 2]));
        assert_eq!((f.flight(5), f.flights(), f.waiting()), (None, 0, 0));
        // A load that ends with no flight of its own under way held no lock.
        assert_eq!(f.loaded(5), (0, vec![]));
    }

    #[test]
    fn a_poll_ends_when_a_lookup_finds_the_other_loaders_value() {
        let mut f: SingleFlight<u32> = SingleFlight::default();
        f.join(2, 1);
        f.poll(2);
        assert_eq!(f.flight(2), Some(Flight::Polling));
        f.join(2, 2);
        assert_eq!(f.found(2), (vec![1, 2], true), "the readers waited for another's load");
        assert!(!f.busy(2));
        // A poll that wins the lock after all becomes the process's own load.
        f.join(2, 3);
        f.poll(2);
        f.load(2, 7);
        assert_eq!(f.found(2), (vec![3], false), "a found value does not end a load");
        assert_eq!(f.loaded(2), (7, vec![]));
    }

    #[test]
    fn a_crash_forgets_readers_and_flights() {
        let mut f: SingleFlight<u32> = SingleFlight::default();
        f.join(1, 1);
        f.load(1, 3);
        f.join(2 << 20, 2);
        f.poll(2 << 20);
        f.clear();
        assert_eq!((f.waiting(), f.flights(), f.busy(1)), (0, 0, false));
        assert!(f.join(1, 4));
    }
}
