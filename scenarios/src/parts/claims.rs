//! Work claimed by key — absent, in progress since a time, or done with its result — as an idempotency-key table keeps it, with the index a sweeper reads to take over the oldest stale claims.
//!
//! The first to claim a key does the work; a later claim learns that the key is in progress
//! or done instead (a unique constraint's conflict), and a key done keeps its first result —
//! Stripe's idempotency keys, with the "in progress" row of Brandur Leach's "Implementing
//! Stripe-like Idempotency Keys in Postgres". A claimer that dies or loses its answer leaves
//! its key in progress for good, so a sweeper takes over the keys in progress for longer than
//! a takeover age, oldest first, as `UPDATE … WHERE since <= now − age ORDER BY since LIMIT n
//! RETURNING key` would: from an index on `since` kept in step with every write. In key order,
//! the keys of low-numbered clients would keep everyone else's waiting. A claim may expire
//! (a TTL): from then on its key is absent, and no sweep takes it over.
//!
//! Keys are [`KeyTable`] keys (`row << 32 | n`): the table holds every key ever claimed and
//! finds one by indexing.

use crate::parts::table::KeyTable;
use faultline_core::{Micros, Time};
use std::collections::BTreeSet;

/// What is known of a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Claim<R> {
    Absent,
    InProgress { since: Time },
    Done(R),
}

/// Claims by key, with their expiry and the index of those in progress.
#[derive(Clone, Debug, Default)]
pub struct Claims<R> {
    keys: KeyTable<(Claim<R>, Option<Time>)>,
    /// The keys in progress, oldest first.
    in_progress: BTreeSet<(Time, u64)>,
}

impl<R: Copy> Claims<R> {
    /// The key's state at `now` (an expired key is absent) and when it expires.
    pub fn get(&self, key: u64, now: Time) -> (Claim<R>, Option<Time>) {
        match self.keys.get(key) {
            Some(&(claim, expires)) if expires.is_none_or(|e| now < e) => (claim, expires),
            _ => (Claim::Absent, None),
        }
    }

    /// Claims `key` at `now` if it is absent: it is then in progress, and expires `ttl` later
    /// if one is given. Returns what it was — `Absent` means the caller holds the claim now.
    pub fn claim(&mut self, key: u64, now: Time, ttl: Option<Micros>) -> Claim<R> {
        let (claim, _) = self.get(key, now);
        if let Claim::Absent = claim {
            self.write(key, Claim::InProgress { since: now }, ttl.map(|t| now.plus(t)));
        }
        claim
    }

    /// Records `result` for `key`, keeping its expiry (a key absent at `now` is written with
    /// none): `Err(first)` if the key is done already, which keeps its first result.
    pub fn finish(&mut self, key: u64, result: R, now: Time) -> Result<(), R> {
        match self.get(key, now) {
            (Claim::Done(first), _) => Err(first),
            (_, expires) => {
                self.write(key, Claim::Done(result), expires);
                Ok(())
            }
        }
    }

    /// Takes over up to `limit` keys in progress for at least `older_than` at `now`, the
    /// oldest first (expired ones are absent, not taken): each is in progress again since
    /// `now`, so no other sweep takes it before it is stale again.
    pub fn take_over(&mut self, now: Time, older_than: Micros, limit: usize) -> Vec<u64> {
        let stale = self.in_progress.iter().take_while(|(since, _)| now.since(*since) >= older_than);
        let live = stale.map(|&(_, key)| key).filter(|&key| !matches!(self.get(key, now).0, Claim::Absent));
        let keys: Vec<u64> = live.take(limit).collect();
        for &key in &keys {
            self.write(key, Claim::InProgress { since: now }, self.get(key, now).1);
        }
        keys
    }

    /// Keys ever claimed (expired ones included, until claimed again).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Keys in the in-progress index (expired ones included, until claimed again).
    pub fn in_progress(&self) -> usize {
        self.in_progress.len()
    }

    /// Every write comes here, to keep the in-progress index.
    fn write(&mut self, key: u64, claim: Claim<R>, expires: Option<Time>) {
        if let Some((Claim::InProgress { since }, _)) = self.keys.insert(key, (claim, expires)) {
            self.in_progress.remove(&(since, key));
        }
        if let Claim::InProgress { since } = claim {
            self.in_progress.insert((since, key));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{Rng, MICROS_PER_MS};

    #[test]
    fn the_first_claim_wins_and_the_first_result_stays() {
        let mut c: Claims<u32> = Claims::default();
        let t = Time::from_ms;
        assert_eq!(c.claim(7, t(1), None), Claim::Absent, "the first claimer does the work");
        assert_eq!(c.claim(7, t(2), None), Claim::InProgress { since: t(1) }, "a duplicate is told to wait");
        assert_eq!(c.finish(7, 40, t(3)), Ok(()));
        assert_eq!((c.claim(7, t(4), None), c.finish(7, 41, t(5))), (Claim::Done(40), Err(40)));
        // A claim with a TTL is absent from its expiry on, and can be claimed again.
        assert_eq!(c.claim(8, t(10), Some(5 * MICROS_PER_MS)), Claim::Absent);
        assert_eq!(c.get(8, t(14)), (Claim::InProgress { since: t(10) }, Some(t(15))));
        assert_eq!(c.claim(8, t(15), None), Claim::Absent);
        // Finishing keeps the expiry; finishing an absent key writes it with none.
        assert_eq!(c.claim(9, t(20), Some(5 * MICROS_PER_MS)), Claim::Absent);
        assert_eq!(c.finish(9, 1, t(21)), Ok(()));
        assert_eq!((c.get(9, t(24)).0, c.get(9, t(25)).0), (Claim::Done(1), Claim::Absent));
        assert_eq!((c.finish(10, 2, t(30)), c.get(10, t(1_000_000))), (Ok(()), (Claim::Done(2), None)));
        assert_eq!((c.len(), c.in_progress()), (4, 1), "key 8, claimed again");
    }

    #[test]
    fn the_sweeper_takes_over_the_oldest_stale_keys_first_and_once() {
        let mut c: Claims<u64> = Claims::default();
        let at = Time::from_ms;
        let key = |client: u64, n: u64| client << 32 | n;
        // Client 0's keys are the newest; client 9's the oldest.
        for n in 0..60 {
            c.claim(key(0, n), at(5_000 + n), None);
            if n > 2 {
                c.claim(key(9, n), at(1_000 + n), None);
            }
        }
        c.claim(key(5, 1), at(9_000), None);
        // Done, expired, or in progress since later: out of the way.
        c.claim(key(9, 0), at(1_000), None);
        c.finish(key(9, 0), 7, at(1_500)).expect("in progress");
        c.claim(key(9, 1), at(1_001), Some(999 * MICROS_PER_MS));
        c.claim(key(9, 2), at(9_500), None);
        let takeover = 3_000 * MICROS_PER_MS;
        assert_eq!(c.take_over(at(10_000), takeover, 50), (3..53).map(|n| key(9, n)).collect::<Vec<_>>());
        let next = c.take_over(at(10_000), takeover, 5);
        assert_eq!(next, (53..58).map(|n| key(9, n)).collect::<Vec<_>>(), "taken over once");
        assert_eq!(c.get(key(9, 3), at(10_000)).0, Claim::InProgress { since: at(10_000) });
        // The expired key is absent, and no sweep takes it over.
        assert_eq!(c.get(key(9, 1), at(10_000)).0, Claim::Absent);
        assert!(!c.take_over(at(60_000), takeover, 1_000).contains(&key(9, 1)));
    }

    #[test]
    fn take_over_matches_a_scan_of_every_key() {
        // Random claims, finishes and sweeps against the obvious model: scan every key, keep
        // the live ones in progress long enough, sort by (since, key), take the first n.
        let mut rng = Rng::new(17);
        let mut c: Claims<u32> = Claims::default();
        let mut model: Vec<(u64, Claim<u32>, Option<Time>)> = Vec::new();
        let mut now = Time::ZERO;
        for step in 0..20_000u32 {
            now = now.plus(rng.below(3_000));
            let key = rng.below(4) << 32 | rng.below(50);
            let live = |m: &Vec<(u64, Claim<u32>, Option<Time>)>, k: u64| {
                m.iter().find(|e| e.0 == k && e.2.is_none_or(|x| now < x)).map_or((Claim::Absent, None), |e| (e.1, e.2))
            };
            assert_eq!(c.get(key, now), live(&model, key));
            match rng.below(4) {
                0 => {
                    let ttl = (rng.below(2) == 0).then(|| rng.below(200_000));
                    let was = live(&model, key).0;
                    assert_eq!(c.claim(key, now, ttl), was);
                    if was == Claim::Absent {
                        model.retain(|e| e.0 != key);
                        model.push((key, Claim::InProgress { since: now }, ttl.map(|t| now.plus(t))));
                    }
                }
                1 => {
                    let (was, expires) = live(&model, key);
                    match c.finish(key, step, now) {
                        Err(first) => assert_eq!(was, Claim::Done(first)),
                        Ok(()) => {
                            assert!(!matches!(was, Claim::Done(_)));
                            model.retain(|e| e.0 != key);
                            model.push((key, Claim::Done(step), expires));
                        }
                    }
                }
                _ => {
                    let (older_than, limit) = (rng.below(100_000), rng.below(10) as usize);
                    let mut stale: Vec<(Time, u64)> = model
                        .iter()
                        .filter(|e| e.2.is_none_or(|x| now < x))
                        .filter_map(|e| match e.1 {
                            Claim::InProgress { since } if now.since(since) >= older_than => Some((since, e.0)),
                            _ => None,
                        })
                        .collect();
                    stale.sort();
                    let want: Vec<u64> = stale.iter().take(limit).map(|s| s.1).collect();
                    assert_eq!(c.take_over(now, older_than, limit), want, "step {step}");
                    for e in model.iter_mut().filter(|e| want.contains(&e.0)) {
                        e.1 = Claim::InProgress { since: now };
                    }
                }
            }
        }
    }
}
