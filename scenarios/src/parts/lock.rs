//! A client of SET NX PX lock servers — one, or a majority of independent ones (Redlock) — through a job: ask all, hold on a majority, renew, give a failed ask back, release.
//!
//! The client asks every server in use with one ask (a [`QuorumLease`]); it holds once a
//! majority granted it, counted from the ask. Renewing is asking again: a server extends a
//! lock that is still ours (same token) or grants a lapsed one anew (a new token — a new lock,
//! got now). An ask that can no longer reach a majority gives back what it got at once, so as
//! not to block the others (Redlock's rule). Sends go through a closure: the scenario wraps a
//! [`LockReq`] in its own message.

use crate::parts::lease::{Margin, QuorumLease};
use faultline_core::{Micros, Time};

/// Where a client's job is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Phase {
    #[default]
    Idle,
    Asking,
    Holding,
    /// Its work is done and its write sent; it releases when the write is answered.
    Writing,
}

/// What a client asks of a lock server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockReq {
    /// SET key NX PX (or, ours already, extend it).
    Acquire { key: u32, ask: u64 },
    /// DEL key if its token is still this one.
    Release { key: u32, token: u64 },
}

/// One client's lock and job. `got_at`: when (true time, for checks) the lock held was got.
#[derive(Clone, Debug, Default)]
pub struct LockClient {
    pub key: u32,
    pub job: u32,
    pub phase: Phase,
    pub lock: QuorumLease,
    pub wanted: Time,
    pub got_at: Time,
}

impl LockClient {
    /// A new job on `key`, at `now`, to be asked of `servers` servers: returns its number.
    pub fn begin(&mut self, key: u32, servers: usize, margin: Margin, now: Time) -> u32 {
        if self.lock.tokens().len() != servers {
            self.lock = QuorumLease::new(margin, servers);
        }
        (self.key, self.job, self.wanted, self.phase) = (key, self.job + 1, now, Phase::Asking);
        self.job
    }

    /// Asks every server (a new lock, or holding, a renewal).
    pub fn ask(&mut self, now: Time, mut send: impl FnMut(usize, LockReq)) {
        let (ask, key) = (self.lock.ask(now), self.key);
        (0..self.lock.tokens().len()).for_each(|i| send(i, LockReq::Acquire { key, ask }));
    }

    /// Server `i` granted: returns whether this grant got the lock (the job now holds it).
    pub fn granted(&mut self, i: usize, ask: u64, token: u64, ttl: Micros, now: Time, truth: Time) -> bool {
        let anew = i == 0 && self.lock.tokens()[0] != token;
        if !self.lock.granted(ask, i, token, ttl, now) {
            return false;
        }
        let got = self.phase == Phase::Asking;
        match self.phase {
            Phase::Asking => (self.phase, self.got_at) = (Phase::Holding, truth),
            // Its lock had lapsed and nobody took it: the renewal is a new lock, got now.
            Phase::Holding if anew => self.got_at = truth,
            _ => {}
        }
        got
    }

    /// Server `i` refused: an ask that can no longer get a majority gives back what it got.
    pub fn denied(&mut self, i: usize, ask: u64, now: Time, send: impl FnMut(usize, LockReq)) {
        self.lock.denied(ask, i);
        if self.phase == Phase::Asking && !self.lock.asking() && !self.lock.valid(now) {
            self.unlock(send);
        }
    }

    /// Releases whatever servers granted and forgets it.
    pub fn unlock(&mut self, mut send: impl FnMut(usize, LockReq)) {
        for (i, &token) in self.lock.tokens().iter().enumerate().filter(|(_, &t)| t > 0) {
            send(i, LockReq::Release { key: self.key, token });
        }
        self.lock.release();
    }

    /// The first server's token: the fencing token when there is one server.
    pub fn token(&self) -> u64 {
        self.lock.tokens().first().copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_holds_a_failed_ask_gives_back_and_a_lapsed_renewal_is_a_new_lock() {
        let mut c = LockClient::default();
        let mut sent = Vec::new();
        assert_eq!(c.begin(7, 3, Margin::NONE, Time(0)), 1);
        c.ask(Time(0), |i, r| sent.push((i, r)));
        assert_eq!(sent.len(), 3);
        // One grant of three is not a majority; the second is.
        assert!(!c.granted(0, 1, 10, 1_000, Time(5), Time(5)));
        assert!(c.granted(2, 1, 4, 1_000, Time(6), Time(6)));
        assert_eq!((c.phase, c.got_at, c.token()), (Phase::Holding, Time(6), 10));
        // A renewal that server 0 answers with a new token: the lock lapsed there and is new.
        c.ask(Time(500), |_, _| {});
        assert!(!c.granted(2, 2, 4, 1_000, Time(505), Time(505)));
        assert!(!c.granted(0, 2, 11, 1_000, Time(506), Time(506)), "held already");
        assert_eq!(c.got_at, Time(506));
        // A new job refused by two of three gives back the one grant it got, at once.
        c.phase = Phase::Idle;
        c.unlock(|_, _| {});
        c.begin(7, 3, Margin::NONE, Time(2_000));
        c.ask(Time(2_000), |_, _| {});
        assert!(!c.granted(1, 3, 12, 1_000, Time(2_005), Time(2_005)));
        c.denied(0, 3, Time(2_006), |_, _| panic!("not yet: a majority may still grant"));
        sent.clear();
        c.denied(2, 3, Time(2_007), |i, r| sent.push((i, r)));
        assert_eq!(sent, [(1, LockReq::Release { key: 7, token: 12 })]);
        assert_eq!(c.phase, Phase::Asking, "it retries later");
    }
}
