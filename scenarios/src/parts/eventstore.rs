//! An event store: events appended to one ordered log, each in its aggregate's stream under a schema version; an aggregate rebuilt by replaying its stream from zero or from its latest snapshot, old-version events upcast or failing the replay; a projection (read model) fed from the log, its position written with its rows or kept apart; replay to any position to judge it.
//!
//! Event sourcing keeps no current state, only the events: to handle a command an
//! aggregate is loaded by folding its stream in order, so the work of a load grows with
//! the stream ([`Replay::Read`] says how many events it read). A *snapshot* is the state
//! after some event, stored so a load starts there and reads only the tail. Taken whenever
//! the tail reaches `every` events ([`EventStore::snapshot_if`]), the tail a load meets
//! cycles through 0..every − 1: with loads spread evenly over that cycle (one per command,
//! or reads at random times), the mean is ([`mean_tail`]) (every − 1)/2 events — replay time
//! bounded by the interval, not the history.
//!
//! Events are never rewritten, so a new schema leaves the old events in their old shape.
//! [`EventStore::deploy`] marks every event stored so far as old; a load that reads one
//! must *upcast* it (map it to the new shape as it is read) or fail there. The old history
//! can be counted rather than stored (`history` events each, folded into the start state),
//! so a store of billions of events costs memory only for those appended in the
//! run.
//!
//! A [`Projection`] is a read model — a row per stream — fed from the log through a slot by a
//! changelog [`Reader`] (long polls), each batch written to its rows by the scenario. Where
//! its position lives decides what a crash does. Kept apart (a consumer offset: the slot's
//! position, confirmed by the next pull after the rows are written), a crash between the two
//! makes it read the batch again and apply it twice: at least once. Written with the rows in
//! one transaction, it makes the events before it skipped when read again: each applied once.
//! [`EventStore::judge`] replays the log to the projection's position (the last event it
//! applied) and compares: in O(1) by a digest the scenario defines (a sum kept after each
//! event, such as the total of all balances), naming the first stream that differs only then.

use crate::parts::changelog::{ChangeLog, Handled, Pull, Reader};
use crate::parts::partition::Offset;
use crate::parts::table::Log;
use faultline_core::{Ctx, Micros, Node, Time};

/// One aggregate's stream: its events counted (the old history included), how many predate
/// the current schema, the snapshot (events it covers, state), the state now, and each of
/// the run's events as its log offset and the state after it.
#[derive(Clone, Debug)]
struct Stream<S> {
    count: u64,
    old: u64,
    snapshot: (u64, S),
    state: S,
    events: Log<(Offset, S)>,
}

/// An event as the log holds it: its offset, its stream, and the digest after it.
#[derive(Clone, Debug)]
pub struct Stored<E> {
    pub offset: Offset,
    pub stream: usize,
    pub event: E,
    pub digest: i64,
}

/// What a load of a stream did.
#[derive(Clone, Debug, PartialEq)]
pub enum Replay<S> {
    /// It read `events` events (from zero or the snapshot) to `state`.
    Read { events: u64, state: S },
    /// Without an upcaster it met an old-schema event: the stream's event number `at` (from 1).
    Fails { at: u64 },
}

/// An append-only log of events `E` in streams numbered 0.. with states `S`; the log is a
/// [`ChangeLog`], read through slots by projections (each slot's position confirmed by its
/// reader's next pull).
#[derive(Clone, Debug)]
pub struct EventStore<E, S> {
    pub log: ChangeLog<Stored<E>>,
    streams: Vec<Stream<S>>,
    start: (S, i64),
    history: u64,
    longest: u64,
    deployed: bool,
}

impl<E: Clone, S: Clone + PartialEq> EventStore<E, S> {
    /// `streams` streams, each with `history` old events already folded into `start` (the
    /// digest then: `digest`), and a snapshot at the last multiple of `every` within them (a
    /// snapshot job kept up); the log is read through `slots` slots.
    pub fn new(streams: usize, history: u64, start: S, digest: i64, every: u64, slots: usize) -> EventStore<E, S> {
        let snapshot = (history - history % every.max(1), start.clone());
        let stream = Stream { count: history, old: 0, snapshot, state: start.clone(), events: Log::default() };
        let start = (start, digest);
        EventStore {
            log: ChangeLog::new(slots),
            streams: vec![stream; streams],
            start,
            history,
            longest: history,
            deployed: false,
        }
    }

    /// Events in all streams, the old history included.
    pub fn stored(&self) -> u64 {
        self.history * self.streams.len() as u64 + self.log.len() as u64
    }

    /// The most events in any one stream.
    pub fn longest(&self) -> u64 {
        self.longest
    }

    pub fn streams(&self) -> usize {
        self.streams.len()
    }

    /// Loads stream `id`: from its snapshot or from zero, reading old events through an
    /// upcaster or failing on the first one.
    pub fn replay(&self, id: usize, from_snapshot: bool, upcasts: bool) -> Replay<S> {
        let s = &self.streams[id];
        let from = if from_snapshot { s.snapshot.0 } else { 0 };
        if !upcasts && from < s.old {
            return Replay::Fails { at: from + 1 };
        }
        Replay::Read { events: s.count - from, state: s.state.clone() }
    }

    /// Appends `event` to stream `id`, which it takes to `state`, changing the digest by
    /// `delta`; returns the parked pulls it wakes (`ChangeLog::commit`): answer them.
    pub fn append(&mut self, id: usize, event: E, state: S, delta: i64, at: Time) -> Vec<(usize, u64)> {
        let (offset, digest) = (self.log.len() as Offset, self.digest_at(self.log.len() as Offset) + delta);
        let woken = self.log.commit(Stored { offset, stream: id, event, digest }, at);
        let s = &mut self.streams[id];
        s.events.push((offset, state.clone()));
        (s.count, s.state) = (s.count + 1, state);
        self.longest = self.longest.max(s.count);
        woken
    }

    /// Takes a snapshot of stream `id` if `every` events or more came after the last one.
    pub fn snapshot_if(&mut self, id: usize, every: u64) -> bool {
        let s = &mut self.streams[id];
        let due = s.count - s.snapshot.0 >= every.max(1);
        if due {
            s.snapshot = (s.count, s.state.clone());
        }
        due
    }

    /// A new schema: every event stored so far is now of an old version.
    pub fn deploy(&mut self) {
        self.streams.iter_mut().for_each(|s| s.old = s.count);
        self.deployed = true;
    }

    /// Whether a new schema was deployed (at least once).
    pub fn deployed(&self) -> bool {
        self.deployed
    }

    /// Stream `id`'s state after its last event before log position `position` (replayed).
    pub fn state_at(&self, id: usize, position: Offset) -> S {
        let s = &self.streams[id];
        let k = s.events.partition_point(|&(o, _)| o < position);
        k.checked_sub(1).and_then(|i| s.events.get(i)).map_or_else(|| self.start.0.clone(), |e| e.1.clone())
    }

    /// The digest after the events before `position`.
    pub fn digest_at(&self, position: Offset) -> i64 {
        let last = position.min(self.log.len() as Offset).checked_sub(1);
        last.and_then(|o| self.log.get(o)).map_or(self.start.1, |r| r.value.digest)
    }

    /// The projection against the log replayed to its position: the first stream that differs,
    /// with its row and the replayed state (`Err`: a check's message), or the digests alone.
    pub fn judge(&self, p: &Projection<E, S>) -> Result<(), String>
    where
        S: std::fmt::Display,
    {
        if self.digest_at(p.position) == p.digest {
            return Ok(());
        }
        let at = p.position;
        let differs = (0..self.streams.len()).map(|id| (id, self.state_at(id, at))).find(|(id, s)| *s != p.rows[*id]);
        Err(match differs {
            Some((id, s)) => {
                format!("stream {id}: the projection holds {} after event {at}; replayed, {s}", p.rows[id])
            }
            None => {
                format!("after event {at} the projection's digest is {}; replayed, {}", p.digest, self.digest_at(at))
            }
        })
    }
}

/// A read model fed from the log (see the module's note). `position` is past the last event
/// it applied: written with the rows when `atomic`, and then used to skip what it has.
#[derive(Clone, Debug)]
pub struct Projection<E, S> {
    pub rows: Vec<S>,
    pub digest: i64,
    pub position: Offset,
    pub atomic: bool,
    reader: Reader,
    applying: Option<(u64, Vec<Stored<E>>)>,
    idle: bool,
}

impl<E: Clone, S: Clone> Projection<E, S> {
    /// `streams` rows at `start` (the digest `digest`), read from the slot by a `Reader` with
    /// these patiences (`Reader::new`); idle until `resume`.
    pub fn new(streams: usize, start: S, digest: i64, atomic: bool, timeout_us: Micros, renew_us: Micros) -> Self {
        let (reader, rows) = (Reader::new(timeout_us, renew_us), vec![start; streams]);
        Projection { rows, digest, position: 0, atomic, reader, applying: None, idle: true }
    }

    /// Pulls again (a long poll confirming the batch it finished) while `on`; idle when not.
    /// Returns the pull to send to the store.
    pub fn pull<N: Node>(&mut self, on: bool, ctx: &mut Ctx<N>, timer: N::Timer) -> Option<Pull<Stored<E>>> {
        (self.applying, self.idle) = (None, !on);
        on.then(|| self.reader.pull(ctx, true, timer))
    }

    /// Starts pulling if `on` and idle (at the start, after a restart, or a strategy switched).
    pub fn resume<N: Node>(&mut self, on: bool, ctx: &mut Ctx<N>, timer: N::Timer) -> Option<Pull<Stored<E>>> {
        if on && self.idle {
            return self.pull(on, ctx, timer);
        }
        None
    }

    /// The store's answer: the batch to write (its number and size), the events the rows hold
    /// already skipped when atomic. Set the work's timer and call `applied` when it fires.
    pub fn answered<N: Node>(
        &mut self,
        answer: Pull<Stored<E>>,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
    ) -> Option<(u64, usize)> {
        let (atomic, position) = (self.atomic, self.position);
        let (no, batch) = self.reader.answered(ctx, answer, |e| !atomic || e.offset >= position, 0, timer)?;
        let events: Vec<Stored<E>> = batch.into_iter().map(|(e, _)| e).collect();
        let n = events.len();
        self.applying = Some((no, events));
        Some((no, n))
    }

    /// Batch `no` written to the rows by `fold` (each event's change to the digest returned),
    /// the position after it with them; what the reader does next (`Handled`).
    pub fn applied(&mut self, no: u64, mut fold: impl FnMut(&mut S, &E) -> i64) -> Handled {
        let Some((n, events)) = self.applying.take_if(|(n, _)| *n == no) else { return Handled::Stale };
        for e in events {
            self.digest += fold(&mut self.rows[e.stream], &e.event);
            self.position = e.offset + 1;
        }
        self.reader.handled(n)
    }

    /// A crash after its next batch is written, before the next pull confirms it.
    pub fn crash_after_next(&mut self) {
        self.reader.crash_after(1);
    }

    /// A crash: the batch in hand and the confirmation not yet sent are gone; the rows stay.
    pub fn crash(&mut self) {
        (self.applying, self.idle) = (None, true);
        self.reader.crash();
    }

    pub fn is_idle(&self) -> bool {
        self.idle
    }

    pub fn is_applying(&self) -> bool {
        self.applying.is_some()
    }
}

/// The mean tail a load reads when a snapshot is taken every `every` events and loads fall
/// evenly over the cycle: (every − 1)/2.
pub fn mean_tail(every: u64) -> f64 {
    (every.max(1) - 1) as f64 / 2.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn a_load_reads_the_whole_stream_or_the_tail_and_old_events_need_an_upcaster() {
        // Two streams of 120 old events each, balances from 0, the digest their total.
        let mut store: EventStore<i64, i64> = EventStore::new(2, 120, 0, 0, 50, 1);
        assert_eq!((store.stored(), store.longest(), store.streams(), store.deployed()), (240, 120, 2, false));
        // The snapshot job kept up with the history: at 100, so a load reads 20.
        assert_eq!(store.replay(0, false, true), Replay::Read { events: 120, state: 0 });
        assert_eq!(store.replay(0, true, true), Replay::Read { events: 20, state: 0 });
        // Before any deploy, every event is of the current schema.
        assert_eq!(store.replay(0, true, false), Replay::Read { events: 20, state: 0 });
        let mut balance = 0;
        for (n, amount) in [5, -2, 7].into_iter().enumerate() {
            balance += amount;
            assert_eq!(store.append(0, amount, balance, amount, Time(n as u64)), []);
        }
        assert_eq!(store.replay(0, true, true), Replay::Read { events: 23, state: 10 });
        assert!(!store.snapshot_if(0, 50) && store.snapshot_if(0, 23));
        store.deploy();
        // The snapshot covers every old event: no upcaster needed.
        assert_eq!(store.replay(0, true, false), Replay::Read { events: 0, state: 10 });
        store.append(0, 1, 11, 1, Time(9));
        assert_eq!(store.replay(0, false, false), Replay::Fails { at: 1 });
        assert_eq!(store.replay(0, true, false), Replay::Read { events: 1, state: 11 });
        assert_eq!(store.replay(1, true, false), Replay::Fails { at: 101 });
        assert_eq!((store.log.len(), store.stored(), store.longest(), store.deployed()), (4, 244, 124, true));
        // Replayed to a position: the state after the stream's last event before it, and the digest.
        let at: Vec<(i64, i64)> = (0..=5).map(|p| (store.state_at(0, p), store.digest_at(p))).collect();
        assert_eq!(at, [(0, 0), (5, 5), (3, 3), (10, 10), (11, 11), (11, 11)]);
        // A projection agrees with the replay at its position, and is named where it does not.
        let mut p: Projection<i64, i64> = Projection::new(2, 0, 0, true, 1, 1);
        assert_eq!(store.judge(&p), Ok(()));
        (p.rows[0], p.digest, p.position) = (3, 3, 2);
        assert_eq!(store.judge(&p), Ok(()));
        (p.rows[0], p.digest) = (8, 8); // the second event applied twice
        let why = store.judge(&p).unwrap_err();
        assert_eq!(why, "stream 0: the projection holds 8 after event 2; replayed, 3");
        (p.rows[0], p.rows[1]) = (3, 5); // a wrong row elsewhere: the digest still tells
        assert_eq!(store.judge(&p).unwrap_err(), "stream 1: the projection holds 5 after event 2; replayed, 0");
        assert!(p.is_idle() && !p.is_applying());
    }

    #[test]
    fn loads_at_random_read_every_minus_one_over_two_events_on_average() {
        // Poisson commands (each a load, then an append) and Poisson reads (a load) on 10
        // streams, a snapshot every N: the tail each load meets averages (N − 1)/2. Over
        // ~60,000 loads the tail (uniform over 0..N−1, s.d. N/√12) has a standard error
        // under 0.2% of N: within 2%.
        for (seed, every) in [(1, 50), (2, 10), (3, 200)] {
            let mut rng = Rng::new(seed);
            let mut store: EventStore<(), u64> = EventStore::new(10, 1_000, 0, 0, every, 1);
            let (mut sum, mut n) = (0u64, 0u64);
            for t in 0..60_000u64 {
                let id = rng.below(10) as usize;
                let Replay::Read { events, state } = store.replay(id, true, true) else { panic!("upcasts") };
                (sum, n) = (sum + events, n + 1);
                if rng.below(3) < 2 {
                    store.append(id, (), state + 1, 1, Time(t));
                    store.snapshot_if(id, every);
                }
            }
            let (mean, want) = (sum as f64 / n as f64, mean_tail(every));
            assert!((mean - want).abs() <= 0.02 * want, "seed {seed}, every {every}: {mean:.2}, theory {want}");
        }
    }
}
