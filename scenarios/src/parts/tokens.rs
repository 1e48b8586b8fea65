//! Access and refresh tokens: an auth service's token families (refresh tokens rotated with reuse detection, or reusable), a versioned revocation log, and an instance's copy of it as a Bloom filter caught up by version.
//!
//! A login starts a *family*: an access token (a self-contained JWT an instance verifies
//! alone, valid until its `exp`) and a refresh token that buys the next access token. With
//! rotation (RFC 6819 §5.2.2.3, the OAuth 2.0 Security BCP §4.14) each refresh hands out a
//! new refresh token and retires the one presented; a retired one presented again means two
//! parties hold the family — the owner and a thief — and the whole family is revoked, its
//! unexpired access tokens with it ([`Refreshed::Reuse`]). Without rotation the refresh
//! token is reusable: owner and thief refresh side by side and nothing tells them apart.
//!
//! Revocations an instance must learn of go through a [`RevocationLog`]: entries numbered by
//! version, pushed one by one; an instance's [`FilterCopy`] applies them in order into a
//! Bloom filter and, when a version is missing (a push lost, a partition, a restart: a
//! heartbeat names the latest version), asks for every entry after the last it holds. Not
//! heard from for a while, it knows itself stale. A filter never forgets a revoked token (no false
//! negatives); a token never revoked passes as "maybe revoked" with the Bloom rate, and the
//! instance confirms those with the central store.
//!
//! Theory ([`ttl_revocation_delay_mean_us`], [`refresh_rate_per_s`]): with access tokens of
//! TTL τ refreshed at a share f of their life, a logout lands at a uniform moment of the
//! current token's first f·τ, so what is left of it is uniform on ((1 − f)·τ, τ), mean
//! (1 − f/2)·τ — the revocation delay of a strategy that waits for expiry; and each user
//! refreshes 1/(f·τ) times a second — the auth service's load.

use crate::parts::bloom::Bloom;
use faultline_core::{Micros, Time};
use std::collections::{BTreeMap, BTreeSet};

/// An access token as an instance sees it: signed, so its fields are trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub id: u64,
    pub user: u32,
    pub family: u64,
    /// Expiry on the auth service's clock (instances compare it with their own).
    pub exp: Time,
}

/// A refresh token: its family and generation (the number of rotations before it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refresh {
    pub family: u64,
    pub generation: u32,
}

/// What a refresh got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refreshed {
    Issued(Access, Refresh),
    /// A retired refresh token came back: the family is revoked, and these access tokens
    /// of it (unexpired) with it.
    Reuse(Vec<Access>),
    /// The family was revoked already (a logout, an earlier reuse).
    Refused,
}

#[derive(Clone, Debug)]
struct Family {
    generation: u32,
    live: bool,
    /// Its access tokens not yet known to have expired.
    issued: Vec<Access>,
}

/// The auth service's families, durable (a database row each).
#[derive(Clone, Debug, Default)]
pub struct Families {
    next_token: u64,
    families: BTreeMap<u64, Family>,
}

impl Families {
    /// A login: a new family, its first access token (expiring `ttl_us` from `now`) and refresh token.
    pub fn login(&mut self, user: u32, now: Time, ttl_us: Micros) -> (Access, Refresh) {
        let family = self.families.len() as u64 + 1;
        self.families.insert(family, Family { generation: 0, live: true, issued: Vec::new() });
        (self.issue(family, user, now, ttl_us), Refresh { family, generation: 0 })
    }

    /// A refresh for `user`: rotating (the presented generation must be the latest, and the
    /// next replaces it) or not (any token of a live family works, as often as it is shown).
    pub fn refresh(&mut self, user: u32, r: Refresh, rotate: bool, now: Time, ttl_us: Micros) -> Refreshed {
        let Some(f) = self.families.get_mut(&r.family).filter(|f| f.live) else { return Refreshed::Refused };
        if rotate && r.generation != f.generation {
            f.live = false;
            return Refreshed::Reuse(Self::unexpired(f, now));
        }
        if rotate {
            f.generation += 1;
        }
        let generation = f.generation;
        Refreshed::Issued(self.issue(r.family, user, now, ttl_us), Refresh { family: r.family, generation })
    }

    /// A logout: the family is revoked; returns its unexpired access tokens (nothing if it
    /// was revoked already).
    pub fn logout(&mut self, family: u64, now: Time) -> Vec<Access> {
        match self.families.get_mut(&family).filter(|f| f.live) {
            Some(f) => {
                f.live = false;
                Self::unexpired(f, now)
            }
            None => Vec::new(),
        }
    }

    /// Families ever started.
    pub fn len(&self) -> usize {
        self.families.len()
    }

    pub fn is_empty(&self) -> bool {
        self.families.is_empty()
    }

    fn issue(&mut self, family: u64, user: u32, now: Time, ttl_us: Micros) -> Access {
        self.next_token += 1;
        let access = Access { id: self.next_token, user, family, exp: now.plus(ttl_us) };
        let f = self.families.get_mut(&family).expect("issued in a known family");
        f.issued.retain(|a| a.exp > now);
        f.issued.push(access);
        access
    }

    fn unexpired(f: &mut Family, now: Time) -> Vec<Access> {
        f.issued.retain(|a| a.exp > now);
        std::mem::take(&mut f.issued)
    }
}

/// Revoked tokens in the order revoked: version v is the v-th entry (from 1). Each entry keeps
/// the true time of its revocation beside it, for the metrics only.
#[derive(Clone, Debug, Default)]
pub struct RevocationLog {
    entries: Vec<(u64, Time)>,
}

impl RevocationLog {
    /// Appends a revoked token; returns its version.
    pub fn push(&mut self, token: u64, revoked_at: Time) -> u64 {
        self.entries.push((token, revoked_at));
        self.entries.len() as u64
    }

    /// The latest version (0: empty).
    pub fn version(&self) -> u64 {
        self.entries.len() as u64
    }

    /// Every entry after version `have`, oldest first.
    pub fn since(&self, have: u64) -> Vec<(u64, Time)> {
        self.entries.get(have as usize..).unwrap_or_default().to_vec()
    }
}

/// What an instance hears from the log's owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum News {
    /// The entry of this version, pushed as it was revoked.
    Push { version: u64, entry: (u64, Time) },
    /// The latest version, said now and then so a lost last push is noticed.
    Beat { version: u64 },
    /// The entries after version `from`, asked for.
    Entries { from: u64, entries: Vec<(u64, Time)> },
}

/// What a copy did with news: the revocation times of the entries it applied while current
/// (a copy catching up after a restart refused everything meanwhile: its delays are not
/// the filter's), and the version after which it must ask for entries (a gap, a beat ahead).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Heard {
    pub applied: Vec<Time>,
    pub ask: Option<u64>,
}

/// A copy's set of revoked tokens: a Bloom filter (an instance's) or exact (the store's).
#[derive(Clone, Debug)]
enum Set {
    Bloom(Bloom),
    Exact(BTreeSet<u64>),
}

/// A copy of the log: the revoked tokens it applied, in order, and when it last knew itself
/// current (its own clock). A new copy is current: nothing was revoked before it.
#[derive(Clone, Debug)]
pub struct FilterCopy {
    set: Set,
    version: u64,
    current: Option<Time>,
}

impl FilterCopy {
    /// An instance's copy: a Bloom filter of `bits` bits and `hashes` hashes.
    pub fn new(bits: u64, hashes: u32) -> FilterCopy {
        FilterCopy { set: Set::Bloom(Bloom::new(bits, hashes)), version: 0, current: Some(Time::ZERO) }
    }

    /// The store's copy: every token exactly.
    pub fn exact() -> FilterCopy {
        FilterCopy { set: Set::Exact(BTreeSet::new()), version: 0, current: Some(Time::ZERO) }
    }

    /// Forgets everything (a restart of a copy held in memory): empty, and not current until
    /// it has caught up.
    pub fn forget(&mut self) {
        self.set = match &self.set {
            Set::Bloom(b) => Set::Bloom(Bloom::new(b.bits(), b.hashes())),
            Set::Exact(_) => Set::Exact(BTreeSet::new()),
        };
        (self.version, self.current) = (0, None);
    }

    /// Applies what can be applied in order; a push past the next version or a beat ahead of
    /// this copy asks for what it lacks and leaves it not known current.
    pub fn hear(&mut self, news: News, now: Time) -> Heard {
        let (from, entries) = match news {
            News::Beat { version } if version > self.version => return self.gap(),
            News::Beat { .. } => {
                self.current = Some(now);
                return Heard::default();
            }
            News::Push { version, .. } if version > self.version + 1 => return self.gap(),
            News::Push { version, entry } => (version - 1, vec![entry]),
            News::Entries { from, .. } if from > self.version => return self.gap(),
            News::Entries { from, entries } => (from, entries),
        };
        let new: Vec<_> = entries.into_iter().skip((self.version - from) as usize).collect();
        for &(token, _) in &new {
            match &mut self.set {
                Set::Bloom(b) => _ = b.insert(token),
                Set::Exact(e) => _ = e.insert(token),
            }
        }
        self.version += new.len() as u64;
        let applied = if self.current.is_some() { new.into_iter().map(|(_, at)| at).collect() } else { Vec::new() };
        self.current = Some(now);
        Heard { applied, ask: None }
    }

    fn gap(&self) -> Heard {
        Heard { applied: Vec::new(), ask: Some(self.version) }
    }

    /// Whether the copy was known current within `stale_us` of `now`; once not, it stays not
    /// until it hears from the log's owner again.
    pub fn fresh(&mut self, now: Time, stale_us: Micros) -> bool {
        if self.current.is_some_and(|t| now.since(t) > stale_us) {
            self.current = None;
        }
        self.current.is_some()
    }

    /// Whether it was current when last asked or told.
    pub fn is_current(&self) -> bool {
        self.current.is_some()
    }

    /// Forgets being current (a switch to this strategy: pushes may have been missed).
    pub fn doubt(&mut self) {
        self.current = None;
    }

    /// Whether `token` may be revoked (never `false` for a token this copy applied; exact in
    /// the store's copy).
    pub fn maybe_revoked(&self, token: u64) -> bool {
        match &self.set {
            Set::Bloom(b) => b.contains(token),
            Set::Exact(e) => e.contains(&token),
        }
    }

    pub fn version(&self) -> u64 {
        self.version
    }
}

/// Mean time a logged-out access token stays valid when tokens of TTL `ttl_us` are refreshed
/// at `refresh_at` of their life: its remaining life is uniform on ((1 − f)·τ, τ), mean (1 − f/2)·τ.
pub fn ttl_revocation_delay_mean_us(ttl_us: Micros, refresh_at: f64) -> f64 {
    (1.0 - refresh_at / 2.0) * ttl_us as f64
}

/// Refreshes a second for `users` active users with tokens of TTL `ttl_us` refreshed at `refresh_at` of their life.
pub fn refresh_rate_per_s(users: u64, ttl_us: Micros, refresh_at: f64) -> f64 {
    users as f64 / (refresh_at * ttl_us as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::bloom::false_positive_rate;
    use faultline_core::Rng;

    const TTL: Micros = 10_000_000;

    #[test]
    fn rotation_tells_a_reused_refresh_token_and_revokes_the_family() {
        let mut f = Families::default();
        let (a0, r0) = f.login(7, Time(0), TTL);
        let Refreshed::Issued(a1, r1) = f.refresh(7, r0, true, Time(8_000_000), TTL) else { panic!() };
        assert_eq!(r1.generation, 1);
        // The thief shows the retired r0: both unexpired tokens of the family are revoked.
        match f.refresh(7, r0, true, Time(9_000_000), TTL) {
            Refreshed::Reuse(revoked) => assert_eq!(revoked, vec![a0, a1]),
            other => panic!("{other:?}"),
        }
        assert_eq!(f.refresh(7, r1, true, Time(9_500_000), TTL), Refreshed::Refused, "the owner too");
        assert!(f.logout(r1.family, Time(9_600_000)).is_empty(), "revoked once");
    }

    #[test]
    fn without_rotation_owner_and_thief_both_refresh_forever() {
        let mut f = Families::default();
        let (_, r0) = f.login(7, Time(0), TTL);
        for t in 1..=20 {
            assert!(matches!(f.refresh(7, r0, false, Time(t * 4_000_000), TTL), Refreshed::Issued(..)));
        }
        // Only the tokens not yet expired are revoked at a logout.
        assert_eq!(f.logout(r0.family, Time(80_000_000)).len(), 3);
    }

    #[test]
    fn a_copy_applies_in_order_asks_for_gaps_and_never_misses_an_applied_token() {
        let mut log = RevocationLog::default();
        let mut copy = FilterCopy::new(4096, 3);
        for token in 1..=10 {
            log.push(token * 11, Time(token));
        }
        let push = |v: u64| News::Push { version: v, entry: (v * 11, Time(v)) };
        assert_eq!(copy.hear(push(1), Time(100)), Heard { applied: vec![Time(1)], ask: None });
        assert!(copy.fresh(Time(150), 50) && !copy.fresh(Time(151), 50), "stale after 50 µs of silence");
        assert_eq!(copy.hear(News::Beat { version: 1 }, Time(200)), Heard::default());
        assert_eq!(copy.hear(push(2), Time(210)), Heard { applied: vec![Time(2)], ask: None });
        assert_eq!(copy.hear(push(2), Time(211)), Heard::default(), "a duplicate push");
        assert_eq!(copy.hear(push(4), Time(220)).ask, Some(2), "version 3 was lost");
        assert_eq!(copy.hear(News::Beat { version: 10 }, Time(230)).ask, Some(2));
        let caught_up = copy.hear(News::Entries { from: 2, entries: log.since(2) }, Time(240));
        assert_eq!((caught_up.applied.len(), copy.version()), (8, 10));
        let old = News::Entries { from: 0, entries: log.since(0) };
        assert_eq!(copy.hear(old, Time(250)), Heard::default(), "an old batch adds nothing");
        assert!((1..=10).all(|t| copy.maybe_revoked(t * 11)));
        // A restart forgets it all; the first batch after it is not the filter's delay.
        copy.forget();
        assert!(!copy.is_current() && !copy.maybe_revoked(11));
        assert_eq!(copy.hear(News::Entries { from: 0, entries: log.since(0) }, Time(300)).applied, vec![]);
        assert!(copy.is_current() && copy.version() == 10);
        let mut store = FilterCopy::exact();
        store.hear(News::Entries { from: 0, entries: log.since(0) }, Time(0));
        assert!((1..=10).all(|t| store.maybe_revoked(t * 11)) && (1..=10).all(|t| !store.maybe_revoked(t * 11 + 1)));
    }

    #[test]
    fn the_copys_false_positives_follow_the_bloom_rate() {
        // n = 300 revoked tokens in m = 2048 bits, k = 3: (1 − e^(−kn/m))^k ≈ 4.9%. Over 20 000
        // tokens never revoked the share has a standard error of 0.15%: within 0.6% is 4σ.
        let mut copy = FilterCopy::new(2048, 3);
        let mut rng = Rng::new(5);
        let revoked: Vec<(u64, Time)> = (0..300).map(|_| (rng.next_u64() >> 1, Time(0))).collect();
        copy.hear(News::Entries { from: 0, entries: revoked }, Time(0));
        let passed = (0..20_000).filter(|_| copy.maybe_revoked(rng.next_u64() | 1 << 63)).count();
        let (seen, theory) = (passed as f64 / 20_000.0, false_positive_rate(2048, 3, 300));
        assert!((seen - theory).abs() < 0.006, "seen {seen:.4}, theory {theory:.4}");
    }

    #[test]
    fn the_ttl_theory_matches_sampled_logouts() {
        // Tokens refreshed at 0.8 of a 10 s TTL, logouts at uniform moments: the current token's
        // remaining life has mean (1 − 0.4)·10 s = 6 s (sampled 100 000 times: σ/√n ≈ 2 ms).
        let mut rng = Rng::new(9);
        let n = 100_000;
        let sum: f64 = (0..n).map(|_| TTL as f64 - rng.unit_open() * 0.8 * TTL as f64).sum();
        let mean = sum / n as f64;
        assert!((mean - ttl_revocation_delay_mean_us(TTL, 0.8)).abs() < 20_000.0, "{mean}");
        assert!((refresh_rate_per_s(2000, TTL, 0.8) - 250.0).abs() < 1e-9);
    }
}
