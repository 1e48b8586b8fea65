//! Streaming sketches for counts over a sliding window: count-min (over-count ≤ εN with probability 1 − δ), HyperLogLog (standard error 1.04/√m), a top-K of count-min estimates, and a ring of time buckets that turns each into a sliding-window structure.
//!
//! - [`CountMin`] (Cormode & Muthukrishnan, J. Algorithms 2005): `depth` rows of `width`
//!   counters; a key adds to one counter per row and is answered by the smallest of its
//!   counters. It never under-counts; a row over-counts by the other keys sharing the counter,
//!   `(N − f)/width` on average, so by Markov's inequality a row is over `εN` with chance at
//!   most `1/e` for `ε = e/width`, and all `depth` rows are with chance at most `δ = e^−depth`.
//! - [`HyperLogLog`] (Flajolet, Fusy, Gandouet & Meunier, AofA 2007): `m = 2^p` one-byte
//!   registers, each the longest run of leading zeros (+1) seen among the hashes routed to it;
//!   the harmonic mean gives the distinct count with relative standard error `1.04/√m`, and
//!   linear counting (`m·ln(m/V)`, V empty registers) below `2.5m`. Two merge by register max.
//! - [`TopK`]: the heavy hitters as count-min plus a small candidate set ("count-min + heap"):
//!   a key whose estimate beats the smallest candidate's replaces it.
//! - [`Ring`]: `B` slots of one time bucket each; a sliding window of length W answers from the
//!   last B buckets of W/B, so it misses at most one bucket's worth at the window's old edge.
//!
//! Hashes are SplitMix64 mixes of the key with seeds drawn from a run's seed, so a run is
//! reproducible and two runs' collisions differ.

use crate::parts::ring::mix;
use faultline_core::{Micros, Time};
use std::collections::{BTreeMap, VecDeque};

/// The bytes of one count-min counter (a u32).
pub const COUNTER_BYTES: u64 = 4;

/// A count-min sketch: `depth` rows of `width` u32 counters, a row hash each.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CountMin {
    width: usize,
    seeds: Vec<u64>,
    cells: Vec<u32>,
}

impl CountMin {
    /// `width` counters (at least 1) in each of `depth` rows (at least 1), hashed from `seed`.
    pub fn new(width: usize, depth: usize, seed: u64) -> CountMin {
        let (width, depth) = (width.max(1), depth.max(1));
        let seeds = (0..depth as u64).map(|j| mix(seed ^ mix(j + 0x5bd1_e995))).collect();
        CountMin { width, seeds, cells: vec![0; width * depth] }
    }

    fn cell(&self, row: usize, key: u64) -> usize {
        row * self.width + (mix(key ^ self.seeds[row]) % self.width as u64) as usize
    }

    /// Counts `n` more of `key`.
    pub fn add(&mut self, key: u64, n: u32) {
        for row in 0..self.seeds.len() {
            let c = self.cell(row, key);
            self.cells[c] = self.cells[c].saturating_add(n);
        }
    }

    /// The smallest of `key`'s counters: at least its true count.
    pub fn estimate(&self, key: u64) -> u64 {
        (0..self.seeds.len()).map(|row| self.cells[self.cell(row, key)] as u64).min().unwrap_or(0)
    }

    /// Row `row`'s counter for `key` alone (for the per-row theory).
    pub fn row_estimate(&self, row: usize, key: u64) -> u64 {
        self.cells[self.cell(row, key)] as u64
    }

    /// Adds (`sign` +1) or takes away (−1) another sketch of the same shape and hashes.
    pub fn merge(&mut self, other: &CountMin, sign: i64) {
        debug_assert!(self.width == other.width && self.seeds == other.seeds, "same shape and hashes");
        for (a, b) in self.cells.iter_mut().zip(&other.cells) {
            *a = (*a as i64 + sign * *b as i64).clamp(0, u32::MAX as i64) as u32;
        }
    }

    pub fn clear(&mut self) {
        self.cells.iter_mut().for_each(|c| *c = 0);
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn depth(&self) -> usize {
        self.seeds.len()
    }

    /// Its fixed memory: width × depth counters.
    pub fn bytes(&self) -> u64 {
        self.cells.len() as u64 * COUNTER_BYTES
    }

    /// ε = e / width: the over-count bound as a share of the events counted.
    pub fn epsilon(&self) -> f64 {
        core::f64::consts::E / self.width as f64
    }

    /// δ = e^(−depth): the chance the bound fails for one query.
    pub fn delta(&self) -> f64 {
        libm::exp(-(self.depth() as f64))
    }
}

/// A HyperLogLog of `2^p` one-byte registers.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HyperLogLog {
    p: u32,
    seed: u64,
    regs: Vec<u8>,
}

impl HyperLogLog {
    /// `2^p` registers, p clamped to 4..=18, hashed from `seed`.
    pub fn new(p: u32, seed: u64) -> HyperLogLog {
        let p = p.clamp(4, 18);
        HyperLogLog { p, seed: mix(seed ^ 0x4c4c_4c4c), regs: vec![0; 1 << p] }
    }

    pub fn add(&mut self, key: u64) {
        let h = mix(key ^ self.seed);
        let j = (h >> (64 - self.p)) as usize;
        // The rest of the hash, shifted up, with a sentinel bit so a zero rest still ends.
        let rest = (h << self.p) | (1 << (self.p - 1));
        let rank = rest.leading_zeros() as u8 + 1;
        self.regs[j] = self.regs[j].max(rank);
    }

    /// Register-wise max: the sketch of the union.
    pub fn merge(&mut self, other: &HyperLogLog) {
        debug_assert_eq!((self.p, self.seed), (other.p, other.seed), "same registers and hash");
        for (a, b) in self.regs.iter_mut().zip(&other.regs) {
            *a = (*a).max(*b);
        }
    }

    pub fn clear(&mut self) {
        self.regs.iter_mut().for_each(|r| *r = 0);
    }

    /// The distinct keys added, estimated (linear counting while small).
    pub fn estimate(&self) -> f64 {
        let m = self.regs.len() as f64;
        let alpha = match self.regs.len() {
            16 => 0.673,
            32 => 0.697,
            64 => 0.709,
            _ => 0.7213 / (1.0 + 1.079 / m),
        };
        let sum: f64 = self.regs.iter().map(|&r| libm::ldexp(1.0, -(r as i32))).sum();
        let raw = alpha * m * m / sum;
        let empty = self.regs.iter().filter(|&&r| r == 0).count();
        if raw <= 2.5 * m && empty > 0 {
            m * libm::log(m / empty as f64)
        } else {
            raw
        }
    }

    /// m bytes.
    pub fn bytes(&self) -> u64 {
        self.regs.len() as u64
    }

    /// 1.04 / √m, the estimate's relative standard error.
    pub fn std_error(&self) -> f64 {
        1.04 / libm::sqrt(self.regs.len() as f64)
    }
}

/// The bytes of one top-K candidate: a key (8) and its estimate (8).
pub const CANDIDATE_BYTES: u64 = 16;

/// The heavy-hitter candidates: at most `k` keys with the largest estimates seen.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TopK {
    k: usize,
    candidates: BTreeMap<u64, u64>,
}

impl TopK {
    pub fn new(k: usize) -> TopK {
        TopK { k: k.max(1), candidates: BTreeMap::new() }
    }

    /// `key` was just estimated at `estimate`: kept if it is a candidate, there is room, or it
    /// beats the smallest candidate (which it replaces; ties go to the smaller key).
    pub fn offer(&mut self, key: u64, estimate: u64) {
        if self.candidates.contains_key(&key) || self.candidates.len() < self.k {
            self.candidates.insert(key, estimate);
            return;
        }
        let (&low, &low_est) = self.candidates.iter().min_by_key(|&(&k, &e)| (e, std::cmp::Reverse(k))).expect("k ≥ 1");
        if estimate > low_est {
            self.candidates.remove(&low);
            self.candidates.insert(key, estimate);
        }
    }

    /// Re-estimates every candidate (a window slid: their counts fell).
    pub fn refresh(&mut self, estimate: impl Fn(u64) -> u64) {
        self.candidates.iter_mut().for_each(|(&k, e)| *e = estimate(k));
    }

    /// The candidates, largest estimate first (ties by key).
    pub fn top(&self) -> Vec<(u64, u64)> {
        let mut all: Vec<(u64, u64)> = self.candidates.iter().map(|(&k, &e)| (k, e)).collect();
        all.sort_by_key(|&(k, e)| (std::cmp::Reverse(e), k));
        all
    }

    pub fn clear(&mut self) {
        self.candidates.clear();
    }

    pub fn bytes(&self) -> u64 {
        self.k as u64 * CANDIDATE_BYTES
    }
}

/// A ring of `B` slots, one per time bucket: the slots of the last B buckets, the newest being
/// the one `advance` was last called with. Moving on clears the slots of the buckets that fell
/// out (the caller's `clear` gets each before it is reused).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Ring<S> {
    slots: Vec<S>,
    /// The newest bucket's index (time / bucket length).
    head: u64,
}

impl<S> Ring<S> {
    pub fn new(slots: Vec<S>) -> Ring<S> {
        assert!(!slots.is_empty(), "a ring needs a slot");
        Ring { slots, head: 0 }
    }

    /// Moves to bucket `bucket` (a bucket before the head changes nothing), handing each slot
    /// that now holds a new bucket to `clear` first — at most every slot once.
    pub fn advance(&mut self, bucket: u64, mut clear: impl FnMut(&mut S)) {
        let steps = bucket.saturating_sub(self.head).min(self.slots.len() as u64);
        for b in bucket + 1 - steps..=bucket {
            let i = (b % self.slots.len() as u64) as usize;
            clear(&mut self.slots[i]);
        }
        self.head = self.head.max(bucket);
    }

    /// The newest bucket's slot.
    pub fn head_mut(&mut self) -> &mut S {
        let i = (self.head % self.slots.len() as u64) as usize;
        &mut self.slots[i]
    }

    pub fn head(&self) -> u64 {
        self.head
    }

    pub fn slots(&self) -> &[S] {
        &self.slots
    }

    /// Every slot, to empty them all (a crash) without moving the head.
    pub fn slots_mut(&mut self) -> &mut [S] {
        &mut self.slots
    }
}

/// An exact sliding log of keyed events (dense keys): every event of the window `(now − W, now]`
/// with its time, and each key's count in it — exact, at memory ∝ events in the window.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct KeyedLog {
    window_us: Micros,
    log: VecDeque<(Time, u32)>,
    counts: Vec<u32>,
    distinct: u64,
}

impl KeyedLog {
    pub fn new(window_us: Micros) -> KeyedLog {
        KeyedLog { window_us, ..KeyedLog::default() }
    }

    /// Drops the events that left the window at `now`.
    pub fn expire(&mut self, now: Time) {
        while let Some(&(t, k)) = self.log.front() {
            if t.micros() + self.window_us > now.micros() {
                break;
            }
            self.log.pop_front();
            self.counts[k as usize] -= 1;
            self.distinct -= (self.counts[k as usize] == 0) as u64;
        }
    }

    /// An event of `key` at `now` (after expiring the old ones).
    pub fn push(&mut self, now: Time, key: u32) {
        self.expire(now);
        if self.counts.len() <= key as usize {
            self.counts.resize(key as usize + 1, 0);
        }
        self.log.push_back((now, key));
        self.counts[key as usize] += 1;
        self.distinct += (self.counts[key as usize] == 1) as u64;
    }

    /// Events in the window.
    pub fn len(&self) -> u64 {
        self.log.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.log.is_empty()
    }

    /// Each key's count, by key (keys never seen are absent at the end).
    pub fn counts(&self) -> &[u32] {
        &self.counts
    }

    pub fn count(&self, key: u32) -> u64 {
        self.counts.get(key as usize).map_or(0, |&c| c as u64)
    }

    /// Keys with an event in the window.
    pub fn distinct(&self) -> u64 {
        self.distinct
    }

    /// The key with the most events in the window (the smallest such), and its count.
    pub fn heaviest(&self) -> (u32, u64) {
        let top = self.counts.iter().enumerate().max_by_key(|&(k, &c)| (c, std::cmp::Reverse(k)));
        top.map_or((0, 0), |(k, &c)| (k as u32, c as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::arrivals::Zipf;
    use faultline_core::Rng;

    /// `n` Zipf(s) draws over `keys` keys, and each key's true count.
    fn stream(n: usize, keys: usize, s: f64, seed: u64) -> (Vec<u64>, Vec<u64>) {
        let (zipf, mut rng) = (Zipf::new(keys, s), Rng::new(seed));
        let draws: Vec<u64> = (0..n).map(|_| zipf.pick(&mut rng) as u64).collect();
        let mut counts = vec![0; keys];
        draws.iter().for_each(|&k| counts[k as usize] += 1);
        (draws, counts)
    }

    #[test]
    fn count_min_never_under_counts_and_over_counts_past_epsilon_n_less_often_than_delta() {
        // 100 sketches (w 256, d 3: ε 1.06%, δ 5.0%) of 20,000 Zipf(1) events, every one of
        // 2,000 keys asked: the share over εN must not pass δ (Markov's bound is loose: expect
        // far fewer), and nothing is ever under.
        let (mut over, mut asked) = (0u64, 0u64);
        for seed in 0..100 {
            let (draws, counts) = stream(20_000, 2_000, 1.0, seed);
            let mut cm = CountMin::new(256, 3, seed ^ 0xabc);
            draws.iter().for_each(|&k| cm.add(k, 1));
            let bound = cm.epsilon() * 20_000.0;
            for (k, &f) in counts.iter().enumerate() {
                let est = cm.estimate(k as u64);
                assert!(est >= f, "key {k}: {est} < {f}");
                over += (est as f64 - f as f64 > bound) as u64;
                asked += 1;
            }
        }
        let share = over as f64 / asked as f64;
        assert!(share <= libm::exp(-3.0), "{share} over εN");
    }

    #[test]
    fn a_count_min_rows_over_count_averages_the_other_keys_over_the_width() {
        // One row's excess for key x is the sum of the other keys' counts hashed to its cell:
        // mean (N − f_x)/w over the hash. Per sketch, the excess averaged over all 2,000 keys of
        // Zipf(0.5); over 200 sketches its mean must be within 4 standard errors (measured) of
        // the theory, and those errors small (under 2% of it) so that the test can fail.
        let (w, runs) = (256usize, 200);
        let per_run: Vec<(f64, f64)> = (0..runs)
            .map(|seed| {
                let (draws, counts) = stream(20_000, 2_000, 0.5, 1000 + seed);
                let mut cm = CountMin::new(w, 1, seed);
                draws.iter().for_each(|&k| cm.add(k, 1));
                let excess: u64 = (0..2_000).map(|k| cm.row_estimate(0, k) - counts[k as usize]).sum();
                let want: f64 = counts.iter().map(|&f| (20_000 - f) as f64 / w as f64).sum();
                (excess as f64 / 2_000.0, want / 2_000.0)
            })
            .collect();
        let diffs: Vec<f64> = per_run.iter().map(|&(e, t)| e - t).collect();
        let mean = diffs.iter().sum::<f64>() / runs as f64;
        let sd = libm::sqrt(diffs.iter().map(|d| (d - mean) * (d - mean)).sum::<f64>() / (runs - 1) as f64);
        let (se, want) = (sd / libm::sqrt(runs as f64), per_run[0].1);
        assert!(se < 0.02 * want, "s.e. {se:.2} against {want:.2}: too loose to tell");
        assert!(mean.abs() < 4.0 * se, "mean excess off the theory by {mean:.2} (s.e. {se:.2}, theory {want:.2})");
    }

    #[test]
    fn merging_count_mins_adds_and_takes_away_exactly() {
        let (mut a, mut b) = (CountMin::new(64, 4, 9), CountMin::new(64, 4, 9));
        (0..300).for_each(|k| a.add(k % 37, 1));
        (0..200).for_each(|k| b.add(k % 11, 2));
        let mut sum = a.clone();
        sum.merge(&b, 1);
        assert!(sum.estimate(3) >= a.estimate(3) + b.estimate(3) - a.estimate(3).min(b.estimate(3)));
        sum.merge(&b, -1);
        assert_eq!(sum, a);
        assert_eq!((a.bytes(), a.depth(), a.width()), (64 * 4 * 4, 4, 64));
        assert!((a.delta() - libm::exp(-4.0)).abs() < 1e-12);
    }

    #[test]
    fn hyperloglog_relative_error_has_standard_deviation_1_04_over_root_m() {
        // 300 sketches of 20,000 distinct keys at m = 1024: the s.d. of the relative error
        // should be 1.04/32 = 3.25%. The sample s.d. of 300 is within ±4.1% of the truth at
        // one s.e.; ±20% is ~5 s.e. The bias must be small against it (mean within ±0.6%,
        // 3 s.e. of the mean).
        let (runs, n) = (300, 20_000u64);
        let errs: Vec<f64> = (0..runs)
            .map(|seed| {
                let mut h = HyperLogLog::new(10, seed);
                (0..n).for_each(|k| h.add(k + seed * 1_000_000));
                h.estimate() / n as f64 - 1.0
            })
            .collect();
        let mean = errs.iter().sum::<f64>() / runs as f64;
        let sd = libm::sqrt(errs.iter().map(|e| (e - mean) * (e - mean)).sum::<f64>() / (runs - 1) as f64);
        let want = HyperLogLog::new(10, 0).std_error();
        assert!((sd / want - 1.0).abs() < 0.2, "s.d. {sd:.4}, theory {want:.4}");
        assert!(mean.abs() < 0.006, "bias {mean:.4}");
    }

    #[test]
    fn hyperloglog_counts_small_sets_and_unions_by_merging() {
        // Linear counting is nearly exact while most registers are empty; repeats add nothing.
        let mut a = HyperLogLog::new(12, 1);
        (0..100).chain(0..100).for_each(|k| a.add(k));
        assert!((a.estimate() - 100.0).abs() < 3.0, "{}", a.estimate());
        let mut b = HyperLogLog::new(12, 1);
        (50..150).for_each(|k| b.add(k));
        a.merge(&b);
        assert!((a.estimate() - 150.0).abs() < 4.0, "{}", a.estimate());
        assert_eq!(a.bytes(), 4096);
    }

    #[test]
    fn top_k_of_count_min_finds_zipf_heavy_hitters() {
        // Zipf(1) over 10,000 keys, 50,000 events: the top 10 hold ~30% between them and are
        // far apart from the 11th; a count-min of ε 0.27% over-counts by ~130 at most, below
        // the gaps, so all ten are found (tested over 20 seeds).
        for seed in 0..20 {
            let (draws, counts) = stream(50_000, 10_000, 1.0, seed);
            let (mut cm, mut top) = (CountMin::new(1024, 4, seed), TopK::new(10));
            for &k in &draws {
                cm.add(k, 1);
                top.offer(k, cm.estimate(k));
            }
            let mut truth: Vec<(u64, u64)> = counts.iter().enumerate().map(|(k, &c)| (k as u64, c)).collect();
            truth.sort_by_key(|&(k, c)| (std::cmp::Reverse(c), k));
            let kth = truth[9].1;
            let found = top.top().iter().filter(|&&(k, _)| counts[k as usize] >= kth).count();
            assert!(found >= 9, "seed {seed}: {found} of 10");
            assert_eq!(top.top().len(), 10);
        }
    }

    #[test]
    fn a_keyed_log_counts_exactly_the_window() {
        let mut log = KeyedLog::new(10);
        [(1, 3), (2, 3), (5, 0), (11, 3), (12, 0)].into_iter().for_each(|(t, k)| log.push(Time(t), k));
        // (2, 12]: the events at 1 and 2 left; at 15 only those after 5 are left.
        assert_eq!((log.len(), log.count(3), log.count(0), log.distinct(), log.heaviest()), (3, 1, 2, 2, (0, 2)));
        log.expire(Time(15));
        assert_eq!((log.len(), log.count(3), log.count(0), log.distinct()), (2, 1, 1, 2));
        log.expire(Time(30));
        assert!(log.is_empty() && log.distinct() == 0);
    }

    #[test]
    fn a_ring_clears_the_buckets_that_fall_out_and_no_more() {
        let mut ring = Ring::new(vec![0u32; 4]);
        for b in 0..6 {
            ring.advance(b, |s| *s = 0);
            *ring.head_mut() += 1;
        }
        // Buckets 2..=5 in slots 2, 3, 0, 1; a step back changes nothing; a jump clears all.
        assert_eq!(ring.slots(), &[1, 1, 1, 1]);
        ring.advance(3, |s| *s = 0);
        assert_eq!((ring.head(), ring.slots()), (5, &[1, 1, 1, 1][..]));
        ring.advance(7, |s| *s = 0);
        assert_eq!(ring.slots(), &[1, 1, 0, 0]);
        ring.advance(100, |s| *s = 0);
        assert_eq!(ring.slots(), &[0, 0, 0, 0]);
    }
}
