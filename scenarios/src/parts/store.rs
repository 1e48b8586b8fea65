//! A versioned key-value store: get, put, compare-and-set on versions, delete, and per-entry TTLs.
//!
//! Every write gives its key a new version from one counter for the whole store (etcd's
//! `mod_revision`), so versions strictly increase per key even across a delete and a
//! re-create. Were versions counted per key from 1 (as a ZooKeeper znode's `version` is),
//! a key deleted and created again would come back at version 1, and a client still
//! holding version 1 from the first life would win a compare-and-set against the second:
//! the ABA problem. Version 0 means "absent": `cas(key, 0, v)` creates only if absent.
//!
//! An entry may expire: it is visible while `now < expires` and absent from `expires` on
//! (expiry is exclusive, as a lease's is). Expired entries are dropped when written over or by
//! `sweep(now)`; until then they only take memory. Times are the store node's own clock.
//!
//! [`WindowCounts`] keeps, on a `Store`, what a fixed-window rate limiter keeps in a shared
//! store: a count per key and window, expiring, with the operations limiters use on it.

use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// One stored value, with its version and expiry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<V> {
    pub value: V,
    pub version: u64,
    /// Absent from this instant on (`None`: never expires).
    pub expires: Option<Time>,
}

impl<V> Entry<V> {
    fn live(&self, now: Time) -> bool {
        self.expires.is_none_or(|e| now < e)
    }
}

/// Keys of any `Ord + Clone` type to values, with versions and optional TTLs.
#[derive(Clone, Debug)]
pub struct Store<K, V> {
    entries: BTreeMap<K, Entry<V>>,
    /// The last version handed out.
    version: u64,
}

impl<K, V> Default for Store<K, V> {
    fn default() -> Self {
        Store { entries: BTreeMap::new(), version: 0 }
    }
}

impl<K: Ord + Clone, V> Store<K, V> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The value and its version, if present at `now`.
    pub fn get(&self, key: &K, now: Time) -> Option<(&V, u64)> {
        self.entry(key, now).map(|e| (&e.value, e.version))
    }

    /// The whole entry (value, version, expiry), if present at `now`.
    pub fn entry(&self, key: &K, now: Time) -> Option<&Entry<V>> {
        self.entries.get(key).filter(|e| e.live(now))
    }

    /// The key's version at `now`, 0 if absent.
    pub fn version(&self, key: &K, now: Time) -> u64 {
        self.entry(key, now).map_or(0, |e| e.version)
    }

    /// Writes `value` with no expiry (clearing any TTL, as Redis `SET` does); returns its version.
    pub fn put(&mut self, key: K, value: V) -> u64 {
        self.write(key, value, None)
    }

    /// Writes `value`, to expire `ttl_us` after `now`; returns its version.
    pub fn put_ttl(&mut self, key: K, value: V, now: Time, ttl_us: Micros) -> u64 {
        self.write(key, value, Some(now.plus(ttl_us)))
    }

    /// Writes `value` (no expiry) only if the key's version at `now` is `expected` (0: only if
    /// absent). `Ok(new version)`, or `Err(current version)` and nothing written.
    pub fn cas(&mut self, key: K, expected: u64, value: V, now: Time) -> Result<u64, u64> {
        self.cas_with(key, expected, value, now, None)
    }

    /// `cas`, and the value expires `ttl_us` after `now` (a lock: `cas_ttl(k, 0, me, now, ttl)`,
    /// Redis' `SET k me NX PX ttl`).
    pub fn cas_ttl(&mut self, key: K, expected: u64, value: V, now: Time, ttl_us: Micros) -> Result<u64, u64> {
        self.cas_with(key, expected, value, now, Some(now.plus(ttl_us)))
    }

    /// Reads, changes and writes back in one step (an atomic `INCR`): `f` gets the value
    /// present at `now`, if any. A TTL is kept (as Redis `INCR` keeps it). Returns the version.
    pub fn update(&mut self, key: K, now: Time, f: impl FnOnce(Option<&V>) -> V) -> u64 {
        let current = self.entry(&key, now);
        let expires = current.and_then(|e| e.expires);
        let value = f(current.map(|e| &e.value));
        self.write(key, value, expires)
    }

    /// Removes the key; returns the value it had at `now`, if any. (The next write to the key
    /// still gets a higher version than any it had.)
    pub fn delete(&mut self, key: &K, now: Time) -> Option<V> {
        self.entries.remove(key).filter(|e| e.live(now)).map(|e| e.value)
    }

    /// Removes the key only if its version at `now` is `expected` (a lock released only by
    /// its holder). `Ok(value)`, or `Err(current version)` and nothing removed.
    pub fn cas_delete(&mut self, key: &K, expected: u64, now: Time) -> Result<V, u64> {
        match self.version(key, now) {
            v if v == expected && v != 0 => Ok(self.entries.remove(key).expect("present").value),
            v => Err(v),
        }
    }

    /// Removes the key if its entry has expired at `now` and returns the value it had: a TTL's
    /// end acted on once (a reservation handing its unit back). `None` if the entry is live,
    /// absent, or deleted or written over before it expired.
    pub fn take_expired(&mut self, key: &K, now: Time) -> Option<V> {
        match self.entries.get(key) {
            Some(e) if !e.live(now) => self.entries.remove(key).map(|e| e.value),
            _ => None,
        }
    }

    /// Drops every entry expired at `now`; returns how many.
    pub fn sweep(&mut self, now: Time) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| e.live(now));
        before - self.entries.len()
    }

    /// Drops everything (a cache restarting empty) but keeps counting versions on, so a
    /// version read before cannot match a value written after.
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The entries present at `now`, in key order.
    pub fn iter(&self, now: Time) -> impl Iterator<Item = (&K, &Entry<V>)> {
        self.entries.iter().filter(move |(_, e)| e.live(now))
    }

    /// How many entries are stored, expired ones not yet swept included.
    pub fn stored(&self) -> usize {
        self.entries.len()
    }

    fn cas_with(&mut self, key: K, expected: u64, value: V, now: Time, expires: Option<Time>) -> Result<u64, u64> {
        match self.version(&key, now) {
            v if v == expected => Ok(self.write(key, value, expires)),
            v => Err(v),
        }
    }

    fn write(&mut self, key: K, value: V, expires: Option<Time>) -> u64 {
        self.version += 1;
        self.entries.insert(key, Entry { value, version: self.version, expires });
        self.version
    }
}

/// Counts per key and fixed window, as a fixed-window rate limiter keeps them in a shared
/// store (Redis `INCR {key}:{window}` with an `EXPIRE`): a count lives two windows past its
/// last write — long enough for every decision counted in it to read it — and the expired
/// ones are swept once a window. Windows are `now / len` on the store's own clock.
#[derive(Clone, Debug)]
pub struct WindowCounts<K> {
    len_us: Micros,
    counts: Store<(K, u64), u64>,
    /// The window in which expired counts were last swept.
    swept: u64,
}

impl<K: Ord + Clone> WindowCounts<K> {
    pub fn new(len_us: Micros) -> Self {
        assert!(len_us > 0, "a window must last at least 1 µs");
        WindowCounts { len_us, counts: Store::new(), swept: 0 }
    }

    /// The window containing `now`.
    pub fn window(&self, now: Time) -> u64 {
        now.micros() / self.len_us
    }

    /// `key`'s count in `window` (0 if none, or expired): a `GET`.
    pub fn get(&mut self, key: K, window: u64, now: Time) -> u64 {
        self.sweep(now);
        self.counts.get(&(key, window), now).map_or(0, |(c, _)| *c)
    }

    /// Writes `key`'s count in `window`: a `SET`, which overwrites whatever was written since
    /// the caller read it.
    pub fn set(&mut self, key: K, window: u64, count: u64, now: Time) {
        self.sweep(now);
        self.counts.put_ttl((key, window), count, now, 2 * self.len_us);
    }

    /// Adds one to `key`'s count in the window containing `now`, in one step (`INCR`):
    /// returns the new count and the window.
    pub fn incr(&mut self, key: K, now: Time) -> (u64, u64) {
        let window = self.window(now);
        let count = self.get(key.clone(), window, now) + 1;
        self.set(key, window, count, now);
        (count, window)
    }

    /// Takes up to `want` of what `limit` leaves of `key`'s count in the window containing
    /// `now` (a quota lease's grant): returns how many, and how long the window has left.
    pub fn take(&mut self, key: K, want: u64, limit: u64, now: Time) -> (u64, Micros) {
        let window = self.window(now);
        let used = self.get(key.clone(), window, now);
        let tokens = want.min(limit.saturating_sub(used));
        self.set(key, window, used + tokens, now);
        (tokens, self.len_us - now.micros() % self.len_us)
    }

    /// Drops every count (a restart of a store kept in memory).
    pub fn clear(&mut self) {
        self.counts.clear();
    }

    /// Counts stored, expired ones not yet swept included.
    pub fn stored(&self) -> usize {
        self.counts.stored()
    }

    fn sweep(&mut self, now: Time) {
        if self.window(now) > self.swept {
            self.swept = self.window(now);
            self.counts.sweep(now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    const T: Time = Time(1_000);

    #[test]
    fn compare_and_set_on_versions() {
        let mut s: Store<&str, u32> = Store::new();
        assert_eq!(s.cas("k", 5, 1, T), Err(0), "no version 5 of an absent key");
        let v1 = s.cas("k", 0, 1, T).expect("0 creates an absent key");
        assert_eq!(s.cas("k", 0, 2, T), Err(v1), "0 refuses a present key");
        let v2 = s.cas("k", v1, 2, T).expect("the current version wins");
        assert!(v2 > v1);
        assert_eq!(s.cas("k", v1, 3, T), Err(v2), "a stale version loses");
        assert_eq!(s.get(&"k", T), Some((&2, v2)));
        assert_eq!(s.cas_delete(&"k", v1, T), Err(v2));
        assert_eq!(s.cas_delete(&"k", v2, T), Ok(2));
        assert_eq!(s.cas_delete(&"k", 0, T), Err(0), "nothing to delete");
    }

    #[test]
    fn a_recreated_key_does_not_match_its_old_version() {
        // ABA: a client reads A at version v, the key is deleted and A written again; the
        // client's CAS with v must fail, though the value is A again.
        let mut s: Store<u64, char> = Store::new();
        let read = s.put(7, 'A');
        assert_eq!(s.delete(&7, T), Some('A'));
        assert_eq!(s.version(&7, T), 0);
        let again = s.put(7, 'A');
        assert!(again > read);
        assert_eq!(s.cas(7, read, 'B', T), Err(again));
        // Clearing (a restart) keeps the counter too.
        s.clear();
        assert!(s.put(7, 'A') > again);
    }

    #[test]
    fn an_entry_expires_exactly_at_its_ttl() {
        let mut s: Store<u8, &str> = Store::new();
        let v = s.put_ttl(1, "x", Time(100), 50);
        assert_eq!((s.get(&1, Time(149)), s.get(&1, Time(150))), (Some((&"x", v)), None), "visible in [100, 150)");
        assert_eq!(s.entry(&1, Time(100)).and_then(|e| e.expires), Some(Time(150)));
        // Expired means absent: version 0 creates it again, with a higher version.
        assert_eq!(s.cas(1, v, "y", Time(150)), Err(0));
        let w = s.cas_ttl(1, 0, "y", Time(150), 10).expect("absent at 150");
        assert!(w > v);
        // `update` keeps the TTL; `put` clears it.
        s.update(1, Time(155), |old| if old == Some(&"y") { "z" } else { "?" });
        assert_eq!(s.get(&1, Time(159)).map(|g| *g.0), Some("z"));
        assert_eq!(s.get(&1, Time(160)), None);
        s.put_ttl(2, "a", Time(0), 10);
        s.put(2, "b");
        assert!(s.get(&2, Time(1_000_000)).is_some());
        // TTL 0 is gone at once; sweeping drops what expired and nothing else.
        s.put_ttl(3, "c", Time(200), 0);
        assert_eq!(s.get(&3, Time(200)), None);
        assert_eq!((s.stored(), s.sweep(Time(200)), s.stored()), (3, 2, 1));
        assert_eq!(s.delete(&1, Time(200)), None, "already swept");
        // An expired entry is taken once, a live or deleted one never.
        s.put_ttl(4, "r", Time(300), 20);
        assert_eq!((s.take_expired(&4, Time(319)), s.take_expired(&4, Time(320))), (None, Some("r")));
        assert_eq!(s.take_expired(&4, Time(400)), None, "taken already");
        s.put_ttl(5, "p", Time(300), 20);
        s.delete(&5, Time(310));
        assert_eq!(s.take_expired(&5, Time(400)), None, "deleted (paid) before it expired");
    }

    #[test]
    fn matches_a_naive_model_and_versions_only_grow() {
        // Random operations on few keys against a plain list of (key, value, version,
        // expiry) scanned in full: same answers every step, and each key's versions
        // strictly increase over its whole history, deletes and expiries included.
        let mut rng = Rng::new(11);
        let mut s: Store<u8, u32> = Store::new();
        let mut model: Vec<(u8, u32, u64, Option<Time>)> = Vec::new();
        let mut last_version = [0u64; 5];
        let mut now = Time(0);
        let mut writes = 0;
        for step in 0..50_000u32 {
            now = now.plus(rng.below(30));
            let key = rng.below(5) as u8;
            let live = |m: &Vec<(u8, u32, u64, Option<Time>)>| {
                m.iter().find(|e| e.0 == key && e.3.is_none_or(|x| now < x)).map(|e| (e.1, e.2, e.3))
            };
            let seen = live(&model);
            assert_eq!(s.entry(&key, now).map(|e| (e.value, e.version, e.expires)), seen);
            let ttl = (rng.below(2) == 0).then(|| rng.below(100));
            let expires = ttl.map(|t| now.plus(t));
            let wrote = match rng.below(5) {
                0 => Some(match ttl {
                    Some(t) => s.put_ttl(key, step, now, t),
                    None => s.put(key, step),
                }),
                1 | 2 => {
                    // Expect the current version half the time, something else otherwise.
                    let current = seen.map_or(0, |x| x.1);
                    let expected = if rng.below(2) == 0 { current } else { rng.below(3) };
                    let got = match ttl {
                        Some(t) => s.cas_ttl(key, expected, step, now, t),
                        None => s.cas(key, expected, step, now),
                    };
                    assert_eq!(got.is_ok(), expected == current, "cas({key}, {expected}) with {seen:?}");
                    assert_eq!(got.err(), (expected != current).then_some(current));
                    got.ok()
                }
                3 => {
                    assert_eq!(s.delete(&key, now), seen.map(|x| x.0));
                    model.retain(|e| e.0 != key);
                    None
                }
                _ => {
                    let v = s.update(key, now, |v| v.map_or(1, |v| v + 1));
                    model.retain(|e| e.0 != key);
                    model.push((key, seen.map_or(1, |x| x.0 + 1), v, seen.and_then(|x| x.2)));
                    Some(v)
                }
            };
            if let Some(v) = wrote {
                writes += 1;
                assert!(v > last_version[key as usize], "key {key}: version {v} after {}", last_version[key as usize]);
                last_version[key as usize] = v;
                if model.iter().all(|e| e.0 != key || e.2 != v) {
                    // A put or a successful cas (an update recorded itself above).
                    model.retain(|e| e.0 != key);
                    model.push((key, step, v, expires));
                }
            }
            if step % 1000 == 0 {
                s.sweep(now);
            }
        }
        assert!(writes > 20_000, "only {writes} writes");
    }

    #[test]
    fn window_counts_keep_windows_apart_and_expire_two_windows_after_the_last_write() {
        let mut c: WindowCounts<u32> = WindowCounts::new(1_000);
        let counts: Vec<(u64, u64)> =
            [(7, 10), (7, 999), (7, 1_000), (8, 1_500)].map(|(k, t)| c.incr(k, Time(t))).to_vec();
        assert_eq!(counts, [(1, 0), (2, 0), (1, 1), (1, 1)]);
        assert_eq!((c.get(7, 0, Time(1_500)), c.get(7, 1, Time(1_500)), c.get(9, 1, Time(1_500))), (2, 1, 0));
        // Window 0's count was last written at 999: present until 999 + 2 × 1000, exclusive.
        assert_eq!((c.get(7, 0, Time(2_998)), c.get(7, 0, Time(2_999))), (2, 0));
        // A SET overwrites whatever is there.
        c.set(7, 5, 40, Time(5_000));
        c.set(7, 5, 3, Time(5_001));
        assert_eq!(c.incr(7, Time(5_002)), (4, 5));
        // Swept once a window: over a long run, at most three windows of counts stay stored.
        for t in (6_000..100_000).step_by(7) {
            c.incr((t % 5) as u32, Time(t));
            assert!(c.stored() <= 3 * 5, "{} stored at {t}", c.stored());
        }
        c.clear();
        assert_eq!((c.stored(), c.get(0, 99, Time(99_500))), (0, 0));
    }

    #[test]
    fn grants_from_a_window_add_up_to_at_most_its_limit() {
        // Askers take random batches of a few keys' windows: per key and window the grants
        // add up to the limit exactly once demand passes it, never more, and each grant
        // lasts until the window ends.
        let mut rng = Rng::new(5);
        let (len, limit) = (1_000, 30);
        let mut c: WindowCounts<u8> = WindowCounts::new(len);
        let mut granted = std::collections::BTreeMap::new();
        for step in 0..20_000u64 {
            let (now, key) = (Time(step * 3), rng.below(3) as u8);
            let (tokens, valid_for) = c.take(key, 1 + rng.below(8), limit, now);
            assert_eq!(now.micros() + valid_for, (now.micros() / len + 1) * len);
            *granted.entry((key, now.micros() / len)).or_insert(0) += tokens;
        }
        assert!(granted.len() >= 3 * 59, "{} key windows", granted.len());
        assert!(granted.values().all(|&g| g == limit), "{granted:?}");
    }
}
