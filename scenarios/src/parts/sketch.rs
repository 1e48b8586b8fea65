//! A mergeable quantile sketch with relative accuracy α (DDSketch), exact nearest-rank quantiles of a sample, and the theory of averaging percentiles.
//!
//! **The sketch** (Masson, Rim & Lee, "DDSketch", VLDB 2019): a positive value `x` goes to
//! bucket `i = ⌈log_γ x⌉` with `γ = (1 + α)/(1 − α)`, so bucket `i` holds `(γ^(i−1), γ^i]`;
//! the bucket is answered by `2γ^i/(γ + 1)`, which is within `α` of every value in it (relative).
//! A quantile walks the buckets to the nearest rank `⌈q·n⌉`, the same rank as [`exact_quantile`],
//! so the answer is within `α·x` of the exact one, whatever the data — and stays so after any
//! number of merges, because a merge adds bucket counts: the merged sketch *is* the sketch of
//! the union. Buckets are kept sparse (only non-empty ones), like Prometheus's native histograms
//! (which use the same base-γ schema), so their number is what a series costs to store:
//! about `ln(max/min)/ln γ ≈ ln(max/min)/(2α)` at most.
//!
//! **Averaging percentiles** is not a percentile: the fleet's p99 is the quantile of the
//! mixture of the hosts' latencies ([`mixture_quantile`]), not the mean of their p99s. For
//! exponential hosts with means `m_i`, a host's p99 is `m_i·ln 100`; the mixture's tail is
//! `Σ w_i·e^(−x/m_i)`, solved for 1% numerically. And a p99 of a small sample is biased low:
//! the `r`-th smallest of `n` exponentials has mean `m·(H_n − H_(n−r))` ([`expected_order_stat`]).

use std::collections::BTreeMap;

/// Bytes a stored value costs: an 8-byte timestamp and an 8-byte value (uncompressed, so that
/// strategies compare by what they keep, not by how well a codec squeezes it).
pub const BYTES_PER_VALUE: u64 = 16;

/// A DDSketch over positive integers (µs): sparse bucket counts, mergeable.
#[derive(Clone, Debug, PartialEq)]
pub struct Sketch {
    /// ln γ, cached (every insert needs it).
    ln_gamma: f64,
    /// Accuracy in millionths, to tell whether two sketches share a schema.
    alpha_ppm: u32,
    buckets: BTreeMap<i32, u64>,
    count: u64,
}

impl Sketch {
    /// An empty sketch of relative accuracy `alpha_ppm` millionths (10,000 = 1%).
    pub fn new(alpha_ppm: u32) -> Sketch {
        let a = alpha_ppm.clamp(1, 999_999) as f64 / 1e6;
        Sketch { ln_gamma: libm::log((1.0 + a) / (1.0 - a)), alpha_ppm, buckets: BTreeMap::new(), count: 0 }
    }

    /// The relative accuracy α in millionths (the schema: only equal ones merge).
    pub fn alpha_ppm(&self) -> u32 {
        self.alpha_ppm
    }

    /// The relative accuracy α.
    pub fn alpha(&self) -> f64 {
        self.alpha_ppm.clamp(1, 999_999) as f64 / 1e6
    }

    fn index(&self, v: u64) -> i32 {
        // ⌈log_γ v⌉; values below 1 are counted as 1 (latencies are whole µs, at least 1).
        libm::ceil(libm::log(v.max(1) as f64) / self.ln_gamma) as i32
    }

    /// The value bucket `i` answers: 2γ^i/(γ + 1), within α of anything in (γ^(i−1), γ^i].
    fn value(&self, i: i32) -> f64 {
        let gamma = libm::exp(self.ln_gamma);
        2.0 * libm::exp(self.ln_gamma * i as f64) / (gamma + 1.0)
    }

    pub fn insert(&mut self, v: u64) {
        *self.buckets.entry(self.index(v)).or_insert(0) += 1;
        self.count += 1;
    }

    /// Adds `other`'s counts: the result is the sketch of both samples together. Sketches of the
    /// same accuracy only (a schema change would need re-bucketing, which costs accuracy).
    pub fn merge(&mut self, other: &Sketch) {
        assert_eq!(self.alpha_ppm, other.alpha_ppm, "sketches of different accuracy");
        for (&i, &c) in &other.buckets {
            *self.buckets.entry(i).or_insert(0) += c;
        }
        self.count += other.count;
    }

    pub fn count(&self) -> u64 {
        self.count
    }

    /// Non-empty buckets: what storing this sketch costs, in values.
    pub fn buckets(&self) -> usize {
        self.buckets.len()
    }

    /// The nearest-rank `q` quantile (rank ⌈q·n⌉, at least 1), within α of the exact one; 0 if empty.
    pub fn quantile(&self, q: f64) -> f64 {
        let rank = nearest_rank(q, self.count);
        let mut seen = 0;
        for (&i, &c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return self.value(i);
            }
        }
        0.0
    }
}

/// The nearest rank ⌈q·n⌉ (1-based, at least 1) of quantile `q` among `n` values.
pub fn nearest_rank(q: f64, n: u64) -> u64 {
    (libm::ceil(q.clamp(0.0, 1.0) * n as f64) as u64).clamp(1, n.max(1))
}

/// The exact nearest-rank `q` quantile of `values`, sorted in place (0 if empty).
pub fn exact_quantile(values: &mut [u64], q: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    values.sort_unstable();
    values[nearest_rank(q, values.len() as u64) as usize - 1]
}

/// The `q` quantile of a mixture: weights `w_i` of components with tail functions `P(X > x)`,
/// found by bisection on `Σ w_i·tail_i(x) = 1 − q` between 0 and `hi`.
pub fn mixture_quantile(parts: &[(f64, &dyn Fn(f64) -> f64)], q: f64, hi: f64) -> f64 {
    let total: f64 = parts.iter().map(|p| p.0).sum();
    let tail = |x: f64| parts.iter().map(|(w, t)| w * t(x)).sum::<f64>() / total;
    let (mut lo, mut hi) = (0.0, hi);
    for _ in 0..200 {
        let mid = (lo + hi) / 2.0;
        if tail(mid) > 1.0 - q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + hi) / 2.0
}

/// The mean of the `r`-th smallest of `n` exponentials of mean 1: `H_n − H_(n−r)`.
pub fn expected_order_stat(r: u64, n: u64) -> f64 {
    (n - r + 1..=n).map(|i| 1.0 / i as f64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    /// Random latencies: a mixture of lognormals spanning four decades (µs).
    fn draws(rng: &mut Rng, n: usize) -> Vec<u64> {
        (0..n)
            .map(|_| {
                let median = [200.0, 20_000.0, 900_000.0][rng.below(3) as usize];
                rng.log_normal(median, 1.0).max(1.0) as u64
            })
            .collect()
    }

    #[test]
    fn every_quantile_is_within_alpha_of_the_exact_one() {
        // The guarantee is deterministic (no tolerance beyond float rounding at a bucket's edge).
        let mut rng = Rng::new(7);
        for alpha_ppm in [1_000, 10_000, 50_000, 200_000] {
            for trial in 0..20 {
                let n = 1 + rng.below(3_000) as usize;
                let mut values = draws(&mut rng, n);
                let mut s = Sketch::new(alpha_ppm);
                values.iter().for_each(|&v| s.insert(v));
                for q in [0.0, 0.1, 0.5, 0.9, 0.99, 0.999, 1.0] {
                    let exact = exact_quantile(&mut values, q) as f64;
                    let err = (s.quantile(q) - exact).abs() / exact;
                    assert!(err <= s.alpha() + 1e-9, "α {alpha_ppm} ppm trial {trial} q {q}: {err}");
                }
            }
        }
    }

    #[test]
    fn a_merge_is_the_sketch_of_the_union() {
        let mut rng = Rng::new(3);
        let (a, b) = (draws(&mut rng, 500), draws(&mut rng, 700));
        let (mut sa, mut sb, mut both) = (Sketch::new(10_000), Sketch::new(10_000), Sketch::new(10_000));
        a.iter().for_each(|&v| sa.insert(v));
        b.iter().for_each(|&v| sb.insert(v));
        a.iter().chain(&b).for_each(|&v| both.insert(v));
        sa.merge(&sb);
        assert_eq!(sa, both);
    }

    #[test]
    fn buckets_grow_as_accuracy_tightens() {
        // Values over three decades fill about ln(1000)/ln γ buckets: ~345 at 1%, ~69 at 5%.
        for (alpha_ppm, want) in [(10_000, 345.0), (50_000, 69.0)] {
            let mut s = Sketch::new(alpha_ppm);
            (1_000..1_000_000).step_by(7).for_each(|v| s.insert(v));
            let got = s.buckets() as f64;
            assert!((got - want).abs() <= 2.0, "α {alpha_ppm}: {got} buckets, want ~{want}");
        }
    }

    #[test]
    fn exact_quantiles_are_nearest_rank() {
        let mut v = vec![5, 1, 4, 2, 3];
        assert_eq!([0.0, 0.2, 0.21, 0.5, 0.99, 1.0].map(|q| exact_quantile(&mut v, q)), [1, 1, 2, 3, 5, 5]);
        assert_eq!(exact_quantile(&mut [], 0.99), 0);
        assert_eq!(nearest_rank(0.99, 200), 198);
    }

    #[test]
    fn the_mean_of_p99s_is_not_the_mixtures_p99() {
        // 18 hosts at 20 ms, 2 at 100 ms (exponential). Each p99 is m·ln 100: the mean of the
        // twenty is 20·4.605·0.9 + 100·4.605·0.1 = 129 ms. The mixture's tail
        // 0.9·e^(−x/20) + 0.1·e^(−x/100) reaches 1% at ~230 ms: the average is 44% low.
        let fast = |x: f64| libm::exp(-x / 20.0);
        let slow = |x: f64| libm::exp(-x / 100.0);
        let fleet = mixture_quantile(&[(18.0, &fast), (2.0, &slow)], 0.99, 1e4);
        let mean_of_p99s = (18.0 * 20.0 + 2.0 * 100.0) * libm::log(100.0) / 20.0;
        assert!((mean_of_p99s - 128.9).abs() < 0.1, "{mean_of_p99s}");
        assert!((fleet - 230.35).abs() < 0.01, "{fleet}");
        // The solution checks itself: the tail there is 1%.
        assert!((0.9 * fast(fleet) + 0.1 * slow(fleet) - 0.01).abs() < 1e-9);
        // One component alone: its own p99.
        assert!((mixture_quantile(&[(1.0, &fast)], 0.99, 1e4) - 20.0 * libm::log(100.0)).abs() < 1e-6);
    }

    #[test]
    fn a_small_samples_p99_is_biased_low() {
        // The 2nd largest of 100 exponentials averages H_100 − H_1 = 4.187, 9% under ln 100;
        // with 1,000 samples (rank 990) H_1000 − H_10 = 4.556, 1% under. Simulated over 4,000
        // samples of each: the standard error is ~1% of the mean, we allow 3%.
        let mut rng = Rng::new(11);
        for (n, want) in [(100u64, 4.187), (1_000, 4.556)] {
            assert!((expected_order_stat(nearest_rank(0.99, n), n) - want).abs() < 0.001);
            let mean = (0..4_000)
                .map(|_| {
                    let mut v: Vec<u64> = (0..n).map(|_| (rng.exponential(1.0) * 1e6) as u64).collect();
                    exact_quantile(&mut v, 0.99) as f64 / 1e6
                })
                .sum::<f64>()
                / 4_000.0;
            assert!((mean - want).abs() / want < 0.03, "n {n}: {mean} vs {want}");
        }
    }
}
