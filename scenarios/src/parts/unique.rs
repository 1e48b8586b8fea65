//! A unique index on a table's key: each key with whoever inserted it, a repeat refused and its first inserter named, whether an insert lands at the index's right edge; the birthday bound for random keys.
//!
//! A primary key or a unique constraint is where a duplicate ID surfaces in practice: the
//! second insert fails with "duplicate key". Where an accepted key lands matters too: a
//! B-tree appends keys that grow to its right-most leaf page (hot, in memory, filled before
//! it splits), while keys in no order land anywhere — each on a page likely cold, split
//! half-full. An insert lands *inside* when a page's worth of keys is above it already.
//! For keys in random order the k-th insert is at the edge with probability min(1, page/k)
//! (its rank among the first k is uniform), so about page·(1 + ln(n/page)) of n inserts are.
//!
//! For keys of b random bits, m = 2^b values: the expected number of repeats among n keys is
//! n − m(1 − (1 − 1/m)ⁿ) (the keys less the distinct values expected among them, the
//! occupancy problem), and the chance of any repeat the birthday bound 1 − exp(−n(n − 1)/2m)
//! (Feller, *An Introduction to Probability Theory and Its Applications*, vol. 1, II.3).

use std::collections::BTreeMap;
use std::ops::Bound;

/// What became of an insert.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted<W> {
    /// Fewer than a page's worth of keys above it: at the index's hot right edge.
    Edge,
    /// A page's worth of keys or more above it: somewhere inside the index.
    Inside,
    /// The key was there already, inserted by this one: refused.
    Duplicate(W),
}

/// Keys, each with whoever inserted it, and leaf pages of `page` keys.
#[derive(Clone, Debug)]
pub struct UniqueIndex<K, W> {
    keys: BTreeMap<K, W>,
    page: usize,
    duplicates: u64,
}

impl<K: Ord + Copy, W: Copy> UniqueIndex<K, W> {
    /// An empty index whose leaf pages hold `page` keys (at least 1).
    pub fn new(page: usize) -> Self {
        UniqueIndex { keys: BTreeMap::new(), page: page.max(1), duplicates: 0 }
    }

    /// Inserts `key` for `by`, unless it is there already (the repeat is refused, counted,
    /// and the first inserter returned). Costs up to a page's worth of steps to place it.
    pub fn insert(&mut self, key: K, by: W) -> Inserted<W> {
        if let Some(&first) = self.keys.get(&key) {
            self.duplicates += 1;
            return Inserted::Duplicate(first);
        }
        self.keys.insert(key, by);
        match self.keys.range((Bound::Excluded(key), Bound::Unbounded)).nth(self.page - 1) {
            Some(_) => Inserted::Inside,
            None => Inserted::Edge,
        }
    }

    /// Who inserted `key`, if anyone did.
    pub fn get(&self, key: K) -> Option<W> {
        self.keys.get(&key).copied()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Inserts refused as repeats.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }
}

/// Expected repeats among `n` keys of `bits` random bits, `n − m(1 − (1 − 1/m)ⁿ)` with
/// m = 2^bits; where n/m is too small for that to survive rounding, `n(n − 1)/2m` (the
/// expected colliding pairs, which it then equals to within n/m).
pub fn expected_duplicates(n: u64, bits: u32) -> f64 {
    expected_repeats(n, libm::exp2(bits as f64))
}

/// Expected repeats among `n` keys drawn at random from `m` values (any `m`, such as the 62^k
/// codes of k base62 characters): as [`expected_duplicates`], which is this with m = 2^bits.
pub fn expected_repeats(n: u64, m: f64) -> f64 {
    let n = n as f64;
    if n / m < 1e-6 {
        n * (n - 1.0) / (2.0 * m)
    } else {
        n + m * libm::expm1(n * libm::log1p(-1.0 / m))
    }
}

/// The birthday bound: the chance that `n` keys of `bits` random bits hold a repeat,
/// `1 − exp(−n(n − 1)/2m)`, m = 2^bits.
pub fn collision_chance(n: u64, bits: u32) -> f64 {
    let n = n as f64;
    -libm::expm1(-n * (n - 1.0) / (2.0 * libm::exp2(bits as f64)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn a_repeat_is_refused_and_names_the_first_inserter() {
        let mut index = UniqueIndex::new(2);
        assert_eq!(index.insert(10u64, 'a'), Inserted::Edge);
        assert_eq!(index.insert(10, 'b'), Inserted::Duplicate('a'));
        assert_eq!((index.len(), index.duplicates(), index.get(10)), (1, 1, Some('a')));
    }

    #[test]
    fn growing_keys_stay_at_the_edge_and_falling_ones_go_inside_after_a_page() {
        let mut index = UniqueIndex::new(3);
        assert!((0..100u64).all(|k| index.insert(k, ()) == Inserted::Edge));
        let mut index = UniqueIndex::new(3);
        let landed: Vec<_> = (0..6u64).rev().map(|k| index.insert(k, ())).collect();
        assert_eq!(landed[..3], [Inserted::Edge; 3]);
        assert_eq!(landed[3..], [Inserted::Inside; 3]);
    }

    #[test]
    fn random_keys_land_at_the_edge_page_times_one_plus_log_n_over_page() {
        // 10,000 random 64-bit keys, pages of 100: about 100·(1 + ln 100) ≈ 561 at the edge
        // (a sum of independent Bernoullis, standard deviation ≈ 21 per trial); the mean of
        // 20 trials within 2%.
        let (n, page, trials) = (10_000u64, 100usize, 20);
        let mut rng = Rng::new(7);
        let edge: usize = (0..trials)
            .map(|_| {
                let mut index = UniqueIndex::new(page);
                (0..n).filter(|_| index.insert(rng.next_u64(), ()) == Inserted::Edge).count()
            })
            .sum();
        let want: f64 = (1..=n).map(|k| (page as f64 / k as f64).min(1.0)).sum();
        let got = edge as f64 / trials as f64;
        assert!(
            (got - want).abs() <= 0.02 * want && (want - 561.0).abs() < 5.0,
            "{got} at the edge, expected {want:.1}"
        );
    }

    #[test]
    fn repeats_among_random_keys_follow_the_occupancy_formula() {
        // 5,000 keys of 16 bits: ~186 repeats (standard deviation ≈ 13 a trial); 400 trials'
        // mean (standard error 0.65) within 2%.
        let (n, bits, trials) = (5_000u64, 16u32, 400);
        let mut rng = Rng::new(3);
        let mut total = 0;
        for _ in 0..trials {
            let mut index = UniqueIndex::new(1);
            (0..n).for_each(|_| _ = index.insert(rng.below(1 << bits), ()));
            total += index.duplicates();
        }
        let (got, want) = (total as f64 / trials as f64, expected_duplicates(n, bits));
        assert!((got - want).abs() <= 0.02 * want, "{got} repeats, expected {want:.1}");
        // Far from saturation the formula is the expected colliding pairs, n(n − 1)/2m.
        let pairs = 30_000.0 * 29_999.0 / 2.0 / libm::exp2(122.0);
        assert!((expected_duplicates(30_000, 122) / pairs - 1.0).abs() < 1e-9);
        assert!((expected_duplicates(30_000, 40) / (30_000.0 * 29_999.0 / 2.0 / libm::exp2(40.0)) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn the_chance_of_any_repeat_follows_the_birthday_bound() {
        // 300 keys of 16 bits: 1 − exp(−300·299/2¹⁷) ≈ 0.495. The exact chance,
        // 1 − Π(1 − i/m), is within 0.01 of it; 4,000 trials (standard error 0.008) within 0.03.
        let (n, bits, trials) = (300u64, 16u32, 4_000);
        let m = libm::exp2(bits as f64);
        let exact = 1.0 - (1..n).map(|i| 1.0 - i as f64 / m).product::<f64>();
        let bound = collision_chance(n, bits);
        assert!((bound - exact).abs() < 0.01 && (bound - 0.495).abs() < 0.005, "{bound} vs {exact}");
        let mut rng = Rng::new(11);
        let hits = (0..trials)
            .filter(|_| {
                let mut index = UniqueIndex::new(1);
                (0..n).any(|_| matches!(index.insert(rng.below(1 << bits), ()), Inserted::Duplicate(())))
            })
            .count();
        let share = hits as f64 / trials as f64;
        assert!((share - bound).abs() <= 0.03, "{share} of trials repeated, the bound says {bound:.3}");
    }
}
