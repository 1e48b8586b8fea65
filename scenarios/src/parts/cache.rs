//! A cache server's values (fresh for a TTL, then stale for a while), load locks, jittered TTLs, XFetch refresh.
//!
//! [`TtlCache`] keeps each value fresh until its TTL, then still present but stale for a stale
//! window — what HTTP's `stale-while-revalidate` (RFC 5861) lets a cache serve while it fetches
//! anew — and drops it after. Beside the values it keeps load locks, each `SET key holder NX PX
//! ttl` in a versioned [`Store`], released with the value only by the version that took it
//! (compare-and-delete): a lock that expired and went to another loader is not the first
//! loader's to remove. `get_or_lock` answers a fresh value or takes the lock in one step, as a
//! Redis script does: checked in two steps, a value set in between would let a second loader in
//! once the first is done. A restart forgets values and locks and starts a new epoch, so a lock
//! promises one loader per key per epoch.
//!
//! [`Lru`] holds at most a capacity of keys and evicts the least recently used one: under
//! independent requests its hit ratio is Che's approximation's (tests).
//!
//! [`jittered_ttl_us`] spreads TTLs evenly over ±spread, so keys loaded together stop expiring
//! together; [`xfetch`] refreshes a value early with a probability that grows as its expiry nears.

use crate::parts::store::Store;
use faultline_core::{Micros, Rng, Time};
use std::collections::BTreeMap;

/// What a key holds at some instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a, V> {
    /// Fresh for `left_us` more.
    Fresh {
        value: &'a V,
        left_us: Micros,
    },
    /// Past its TTL, within its stale window.
    Stale(&'a V),
    Miss,
}

/// What `get_or_lock` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GetOrLock<V> {
    /// A fresh value was there (a copy of it): nothing to load.
    Fresh { value: V, left_us: Micros },
    /// The caller holds the key's lock now: its version (to release it with `set`) and the epoch.
    Locked { lock: u64, epoch: u32 },
    /// Another holds the lock.
    Busy,
}

/// Values with a TTL and a stale window, and load locks, by key; `H` says who holds a lock.
#[derive(Clone, Debug)]
pub struct TtlCache<K, V, H> {
    /// Each value with the end of its freshness; the store drops it when its stale window ends.
    values: Store<K, (Time, V)>,
    locks: Store<K, H>,
    /// Restarts so far.
    epoch: u32,
}

impl<K, V, H> Default for TtlCache<K, V, H> {
    fn default() -> Self {
        TtlCache { values: Store::default(), locks: Store::default(), epoch: 0 }
    }
}

impl<K: Ord + Clone, V, H> TtlCache<K, V, H> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn get(&self, key: &K, now: Time) -> Lookup<'_, V> {
        match self.values.entry(key, now).map(|e| &e.value) {
            Some((fresh_until, value)) if now < *fresh_until => {
                Lookup::Fresh { value, left_us: fresh_until.since(now) }
            }
            Some((_, value)) => Lookup::Stale(value),
            None => Lookup::Miss,
        }
    }

    /// Stores `value`, fresh for `ttl_us` and then stale for `stale_us`, and releases the load
    /// lock of version `lock` if the key's lock is still that one (0: the caller held none).
    pub fn set(&mut self, key: K, value: V, now: Time, ttl_us: Micros, stale_us: Micros, lock: u64) {
        // A lock that expired and went to another loader is not ours to remove: `Err`, kept.
        let _ = self.locks.cas_delete(&key, lock, now);
        self.values.put_ttl(key, (now.plus(ttl_us), value), now, ttl_us.saturating_add(stale_us));
    }

    /// Drops the key's value (a `DEL`: an invalidation); whether one was there at `now`.
    /// Its lock, if any, stays: a loader still holds it.
    pub fn delete(&mut self, key: &K, now: Time) -> bool {
        self.values.delete(key, now).is_some()
    }

    /// A fresh value if there is one; else the key's load lock for `holder`, for `lock_ttl_us`,
    /// if nobody holds it (a stale value still wants loading).
    pub fn get_or_lock(&mut self, key: K, holder: H, now: Time, lock_ttl_us: Micros) -> GetOrLock<V>
    where
        V: Clone,
    {
        if let Lookup::Fresh { value, left_us } = self.get(&key, now) {
            return GetOrLock::Fresh { value: value.clone(), left_us };
        }
        match self.locks.cas_ttl(key, 0, holder, now, lock_ttl_us) {
            Ok(lock) => GetOrLock::Locked { lock, epoch: self.epoch },
            Err(_) => GetOrLock::Busy,
        }
    }

    /// Loses every value and lock (a cold restart), and starts a new epoch. Lock versions go on
    /// counting, so a holder from before cannot release a lock taken after.
    pub fn restart(&mut self) {
        self.values.clear();
        self.locks.clear();
        self.epoch += 1;
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }
    /// Values stored, stale ones and ones past their stale window not yet written over included.
    pub fn values_stored(&self) -> usize {
        self.values.stored()
    }
    /// Locks stored, expired ones not yet taken again included.
    pub fn locks_stored(&self) -> usize {
        self.locks.stored()
    }
}

/// At most `capacity` keys; a get or a put makes its key the most recent, and a put past the
/// capacity evicts the least recent (memcached's and Redis `allkeys-lru`'s policy, exactly).
#[derive(Clone, Debug)]
pub struct Lru<K, V> {
    capacity: usize,
    /// Uses so far: each key's last use is its stamp.
    clock: u64,
    by_key: BTreeMap<K, (u64, V)>,
    by_use: BTreeMap<u64, K>,
}

impl<K: Ord + Clone, V> Lru<K, V> {
    pub fn new(capacity: usize) -> Self {
        Lru { capacity, clock: 0, by_key: BTreeMap::new(), by_use: BTreeMap::new() }
    }

    /// The key's value, now the most recent.
    pub fn get(&mut self, key: &K) -> Option<&V> {
        self.clock += 1;
        let (stamp, _) = self.by_key.get_mut(key)?;
        let key = self.by_use.remove(stamp).expect("each key has its stamp");
        *stamp = self.clock;
        self.by_use.insert(self.clock, key.clone());
        self.by_key.get(&key).map(|(_, v)| v)
    }

    /// Stores `value` as the most recent and evicts the least recent keys past the capacity.
    pub fn put(&mut self, key: K, value: V) {
        self.clock += 1;
        if let Some((old, _)) = self.by_key.insert(key.clone(), (self.clock, value)) {
            self.by_use.remove(&old);
        }
        self.by_use.insert(self.clock, key);
        self.evict();
    }

    /// A new capacity; a smaller one evicts at once.
    pub fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict();
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
    pub fn capacity(&self) -> usize {
        self.capacity
    }
    pub fn contains(&self, key: &K) -> bool {
        self.by_key.contains_key(key)
    }
    pub fn clear(&mut self) {
        (self.by_key, self.by_use) = Default::default();
    }

    fn evict(&mut self) {
        while self.by_key.len() > self.capacity {
            let (_, key) = self.by_use.pop_first().expect("as many stamps as keys");
            self.by_key.remove(&key);
        }
    }
}

/// An LRU of values stored with their expiry: a redirect or DNS cache with a TTL.
impl<K: Ord + Clone, T: Copy> Lru<K, (T, Time)> {
    /// The key's value while it is fresh at `now` (now the most recent); past its expiry, a miss.
    pub fn get_fresh(&mut self, key: &K, now: Time) -> Option<T> {
        self.get(key).filter(|(_, until)| now < *until).map(|&(v, _)| v)
    }
}

/// A TTL drawn evenly from `ttl_us` ± `spread_pct`% (whole µs, both ends included).
pub fn jittered_ttl_us(ttl_us: Micros, spread_pct: u64, rng: &mut Rng) -> Micros {
    let spread = ttl_us * spread_pct / 100;
    ttl_us - spread + rng.range(0, 2 * spread)
}

/// XFetch (Vattani, Chierichetti & Lowenstein, "Optimal probabilistic cache stampede
/// prevention", VLDB 2015): a reader recomputes a value early when `now − δ·β·ln(u) ≥ expiry`,
/// u uniform in (0, 1) — when δ·β·(−ln u) ≥ the time left, which happens with probability
/// e^(−left / (δβ)). δ is what the value cost to compute; β > 1 refreshes earlier.
pub fn xfetch(delta_us: Micros, beta: f64, left_us: Micros, u: f64) -> bool {
    delta_us as f64 * beta * -libm::log(u) >= left_us as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::MICROS_PER_MS;

    const MS: Micros = MICROS_PER_MS;

    #[test]
    fn a_value_is_fresh_for_its_ttl_then_stale_for_its_window_then_gone() {
        let mut c: TtlCache<u32, &str, u32> = TtlCache::new();
        c.set(7, "v", Time::from_ms(100), 50 * MS, 30 * MS, 0);
        assert_eq!(c.get(&7, Time::from_ms(100)), Lookup::Fresh { value: &"v", left_us: 50 * MS });
        assert_eq!(c.get(&7, Time(150 * MS - 1)), Lookup::Fresh { value: &"v", left_us: 1 });
        assert_eq!(c.get(&7, Time::from_ms(150)), Lookup::Stale(&"v"));
        assert_eq!(c.get(&7, Time(180 * MS - 1)), Lookup::Stale(&"v"));
        assert_eq!((c.get(&7, Time::from_ms(180)), c.get(&8, Time::ZERO)), (Lookup::Miss, Lookup::Miss));
        // No stale window: fresh, then gone. A new value starts a new TTL.
        c.set(7, "w", Time::from_ms(200), 10 * MS, 0, 0);
        assert_eq!(
            (c.get(&7, Time(210 * MS - 1)), c.get(&7, Time::from_ms(210))),
            (Lookup::Fresh { value: &"w", left_us: 1 }, Lookup::Miss)
        );
    }

    #[test]
    fn a_delete_drops_the_value_and_a_later_set_brings_one_back() {
        let mut c: TtlCache<u32, u32, char> = TtlCache::new();
        let t = Time::from_ms;
        c.set(1, 10, t(0), 100 * MS, 0, 0);
        assert!(c.delete(&1, t(10)));
        assert_eq!((c.get(&1, t(10)), c.values_stored()), (Lookup::Miss, 0));
        assert!(!c.delete(&1, t(20)), "nothing left to drop");
        c.set(1, 11, t(30), 100 * MS, 0, 0);
        assert!(!c.delete(&1, t(130)), "expired already: nothing was there");
    }

    #[test]
    fn one_loader_holds_a_key_until_its_value_or_the_lock_ttl() {
        let mut c: TtlCache<u32, u32, char> = TtlCache::new();
        let t = Time::from_ms;
        // A miss: the first caller takes the lock, the second finds it busy.
        let GetOrLock::Locked { lock: a, epoch: 0 } = c.get_or_lock(1, 'a', t(0), 100 * MS) else { panic!() };
        assert_eq!(c.get_or_lock(1, 'b', t(10), 100 * MS), GetOrLock::Busy);
        // Past its TTL the lock goes to the next caller; the first loader's value then releases
        // nothing (the lock is b's now), and a fresh value is answered without locking.
        let GetOrLock::Locked { lock: b, .. } = c.get_or_lock(1, 'b', t(100), 100 * MS) else { panic!() };
        c.set(1, 11, t(120), 50 * MS, 50 * MS, a);
        assert_eq!(c.locks_stored(), 1, "b's lock stays");
        assert_eq!(c.get_or_lock(1, 'c', t(130), 100 * MS), GetOrLock::Fresh { value: 11, left_us: 40 * MS });
        c.set(1, 12, t(140), 50 * MS, 50 * MS, b);
        assert_eq!(c.locks_stored(), 0, "released by its own version");
        // A stale value is still to be loaded: the lock is taken.
        assert_eq!(c.get(&1, t(200)), Lookup::Stale(&12));
        assert!(matches!(c.get_or_lock(1, 'c', t(200), 100 * MS), GetOrLock::Locked { .. }));
    }

    #[test]
    fn a_restart_forgets_values_and_locks_and_starts_a_new_epoch() {
        let mut c: TtlCache<u32, u32, char> = TtlCache::new();
        let t = Time::from_ms;
        c.set(1, 10, t(0), 1_000 * MS, 0, 0);
        let GetOrLock::Locked { lock: old, epoch: 0 } = c.get_or_lock(2, 'a', t(0), 1_000 * MS) else { panic!() };
        c.restart();
        assert_eq!((c.values_stored(), c.locks_stored(), c.epoch()), (0, 0, 1));
        assert_eq!(c.get(&1, t(1)), Lookup::Miss);
        // The key is free again; the lock from before the restart releases nothing taken after.
        let GetOrLock::Locked { lock: new, epoch: 1 } = c.get_or_lock(2, 'b', t(1), 1_000 * MS) else { panic!() };
        assert!(new > old);
        c.set(2, 20, t(2), 1_000 * MS, 0, old);
        assert_eq!(c.locks_stored(), 1);
    }

    #[test]
    fn jittered_ttls_are_uniform_over_plus_or_minus_the_spread() {
        // TTL 5 s ± 20%: uniform on 4..=6 s (2,000,001 values of 1 µs), mean 5 s and variance
        // ((2,000,001)² − 1)/12 µs². 100,000 draws: the mean's standard error is 1.8 ms (±0.2%
        // is 5.5σ); the variance's, 0.45% (±2%). Spread 0 is the TTL itself.
        let (mut rng, n, ttl) = (Rng::new(5), 100_000, 5_000 * MS);
        let xs: Vec<f64> = (0..n).map(|_| jittered_ttl_us(ttl, 20, &mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1) as f64;
        assert!(xs.iter().all(|&x| (4_000_000.0..=6_000_000.0).contains(&x)));
        assert!((mean / ttl as f64 - 1.0).abs() < 0.002, "mean {mean}");
        let want = (2_000_001.0f64 * 2_000_001.0 - 1.0) / 12.0;
        assert!((var / want - 1.0).abs() < 0.02, "variance {var}, uniform {want}");
        assert_eq!(jittered_ttl_us(ttl, 0, &mut rng), ttl);
    }

    #[test]
    fn xfetch_refreshes_with_probability_exp_of_minus_time_left_over_delta_beta() {
        // Vattani et al. 2015: refresh when now − δβ·ln(u) ≥ expiry, i.e. with probability
        // e^(−left/(δβ)). n = 200,000 draws a point: the standard error of a frequency p is
        // √(p(1−p)/n) ≤ 0.0011, so 5 standard errors (plus rounding of the µs) is the tolerance.
        let mut rng = Rng::new(7);
        let n = 200_000;
        for (delta, beta) in [(40_000, 1.0), (40_000, 2.0), (5_000, 0.5)] {
            for x in [0.05, 0.5, 1.0, 2.0, 4.0] {
                let left = (x * delta as f64 * beta) as Micros;
                let hits = (0..n).filter(|_| xfetch(delta, beta, left, rng.unit_open())).count() as f64;
                let (got, p) = (hits / n as f64, libm::exp(-x));
                let tol = 5.0 * libm::sqrt(p * (1.0 - p) / n as f64) + 1e-4;
                assert!((got - p).abs() < tol, "δ={delta} β={beta} left/(δβ)={x}: refreshed {got:.4}, theory {p:.4}");
            }
        }
    }

    #[test]
    fn xfetch_refreshes_a_gumbel_distributed_lead_before_expiry() {
        // Poisson reads at λ/s, each refreshing with probability e^(−t/(δβ)) at t before expiry:
        // the first refresh comes L before expiry with P(L ≤ t) = exp(−λδβ·e^(−t/(δβ))) — a
        // Gumbel law (location δβ·ln(λδβ), scale δβ) — so E[L] = δβ(ln(λδβ) + γ) and
        // sd(L) = πδβ/√6. λ = 400/s (a hot key), δ = 40 ms, β = 1: E[L] = 134 ms, sd 51 ms;
        // 20,000 expiries give a standard error of 0.36 ms: ±2% is > 7 standard errors.
        let (lambda, delta, beta) = (400.0, 40_000, 1.0);
        let mut rng = Rng::new(3);
        let trials = 20_000;
        let mut total = 0.0;
        for _ in 0..trials {
            let mut left = 1_000_000.0; // reads from 1 s before expiry (P(L > 1 s) ≈ 10⁻⁹)
            loop {
                left -= rng.exponential(1e6 / lambda);
                if left <= 0.0 || xfetch(delta, beta, left as Micros, rng.unit_open()) {
                    break;
                }
            }
            total += left.max(0.0);
        }
        let db = delta as f64 * beta;
        let want = db * (libm::log(lambda * db / 1e6) + 0.577_215_664_9);
        let mean = total / trials as f64;
        assert!((mean - want).abs() < 0.02 * want, "mean lead {mean:.0} µs, Gumbel {want:.0} µs");
    }

    #[test]
    fn an_lru_with_expiries_misses_a_key_past_its_expiry() {
        let mut c: Lru<u32, (char, Time)> = Lru::new(2);
        c.put(1, ('a', Time::from_secs(5)));
        assert_eq!((c.get_fresh(&1, Time::from_secs(4)), c.get_fresh(&1, Time::from_secs(5))), (Some('a'), None));
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut c: Lru<u32, char> = Lru::new(2);
        c.put(1, 'a');
        c.put(2, 'b');
        assert_eq!(c.get(&1), Some(&'a')); // 2 is now the least recent
        c.put(3, 'c');
        assert!(c.contains(&1) && !c.contains(&2) && c.contains(&3));
        c.put(1, 'z'); // an overwrite, no eviction
        assert_eq!((c.len(), c.get(&1)), (2, Some(&'z')));
        c.set_capacity(1);
        assert!(c.contains(&1) && !c.contains(&3));
        c.clear();
        assert!(c.is_empty() && c.get(&1).is_none());
    }

    #[test]
    fn lru_hit_ratio_under_zipf_requests_is_ches_approximation() {
        // Che, Tung & Wang (2002): under independent requests with popularities p_i, an LRU of
        // capacity C keeps a key requested within the last T_C, where Σ (1 − e^(−p_i·T_C)) = C;
        // the hit ratio is Σ p_i (1 − e^(−p_i·T_C)). Fricker, Robert & Roberts (2012) explain
        // why it is so accurate: for Zipf popularities over 10⁴ keys its error is well under
        // 1%. Each run: 200,000 requests after a 100,000 warm-up, a binomial standard error of
        // 0.1%; ±1.5% covers both.
        use crate::parts::arrivals::Zipf;
        for (s, cap) in [(0.8, 1000), (1.0, 500), (1.0, 2000)] {
            let (n, mut rng) = (10_000, Rng::new(11));
            let zipf = Zipf::new(n, s);
            let mut c: Lru<usize, ()> = Lru::new(cap);
            let mut hits = 0;
            for i in 0..300_000 {
                let k = zipf.pick(&mut rng);
                let hit = c.get(&k).is_some();
                if !hit {
                    c.put(k, ());
                }
                hits += (hit && i >= 100_000) as u32;
            }
            let got = hits as f64 / 200_000.0;
            let filled = |t: f64| (0..n).map(|k| 1.0 - libm::exp(-zipf.pmf(k) * t)).sum::<f64>();
            let (mut lo, mut hi) = (0.0, 1e9);
            for _ in 0..100 {
                let t = (lo + hi) / 2.0;
                if filled(t) < cap as f64 {
                    lo = t
                } else {
                    hi = t
                }
            }
            let want: f64 = (0..n).map(|k| zipf.pmf(k) * (1.0 - libm::exp(-zipf.pmf(k) * lo))).sum();
            assert!((got - want).abs() < 0.015, "Zipf({s}), C = {cap}: hit ratio {got:.4}, Che {want:.4}");
        }
    }
}
