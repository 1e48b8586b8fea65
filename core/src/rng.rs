//! The run's one seeded random generator (PCG-64) and the distributions drawn from it.
//!
//! Only integer operations and `libm` are used, so native and WASM draw the same numbers.

use rand_core::{RngCore, SeedableRng};
use rand_pcg::Pcg64;
use serde::{Deserialize, Serialize};

/// A probability expressed in parts per million: `Ppm(1_000_000)` is certainty.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Ppm(pub u32);

impl Ppm {
    pub const NEVER: Ppm = Ppm(0);
    pub const ALWAYS: Ppm = Ppm(1_000_000);
    pub fn from_percent(p: u32) -> Ppm {
        Ppm(p.min(100) * 10_000)
    }
    pub fn from_permille(p: u32) -> Ppm {
        Ppm(p.min(1000) * 1_000)
    }
}

/// The seeded generator. PCG-64 (XSL RR 128/64) has a documented, stable output stream.
#[derive(Clone, Debug)]
pub struct Rng {
    inner: Pcg64,
}

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng { inner: Pcg64::seed_from_u64(seed) }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.inner.next_u64()
    }

    /// Uniform integer in `0..n` (Lemire's multiply-and-reject, unbiased). `n` must be > 0.
    /// The rejection threshold needs a division, so it is computed only in the rare case
    /// where the low half of the product is below `n` (the accepted draws are the same).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as u64
    }

    /// Uniform integer in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        match (hi - lo).checked_add(1) {
            Some(span) => lo + self.below(span),
            None => self.next_u64(),
        }
    }

    /// True with the given probability.
    pub fn chance(&mut self, p: Ppm) -> bool {
        p.0 > 0 && (p.0 >= 1_000_000 || self.below(1_000_000) < p.0 as u64)
    }

    /// Uniform float in the open interval (0, 1), from 53 random bits.
    pub fn unit_open(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Exponential with the given mean (inverse transform).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * libm::log(self.unit_open())
    }

    /// Standard normal (Box–Muller; one of the pair is used so the stream stays simple).
    pub fn std_normal(&mut self) -> f64 {
        let u1 = self.unit_open();
        let u2 = self.unit_open();
        libm::sqrt(-2.0 * libm::log(u1)) * libm::cos(2.0 * core::f64::consts::PI * u2)
    }

    /// Log-normal with the given median and shape `sigma` (of the underlying normal).
    pub fn log_normal(&mut self, median: f64, sigma: f64) -> f64 {
        median * libm::exp(sigma * self.std_normal())
    }

    /// Picks an index in `0..len` uniformly. `len` must be > 0.
    pub fn pick(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_is_stable() {
        // If this changes, every recorded share URL replays differently: never update lightly.
        let mut r = Rng::new(42);
        let first: Vec<u64> = (0..3).map(|_| r.next_u64()).collect();
        let mut again = Rng::new(42);
        assert_eq!(first, (0..3).map(|_| again.next_u64()).collect::<Vec<_>>());
        assert_ne!(Rng::new(43).next_u64(), first[0]);
    }

    #[test]
    fn below_is_in_range_and_roughly_uniform() {
        let mut r = Rng::new(7);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[r.below(6) as usize] += 1;
        }
        for c in counts {
            assert!((9_000..11_000).contains(&c), "{counts:?}");
        }
    }

    #[test]
    fn exponential_mean_matches() {
        let mut r = Rng::new(1);
        let n = 200_000;
        let mean: f64 = (0..n).map(|_| r.exponential(5.0)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.05, "mean {mean}");
    }

    #[test]
    fn log_normal_median_matches() {
        let mut r = Rng::new(2);
        let mut v: Vec<f64> = (0..100_001).map(|_| r.log_normal(10.0, 0.5)).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let median = v[50_000];
        assert!((median - 10.0).abs() < 0.1, "median {median}");
    }

    #[test]
    fn chance_extremes() {
        let mut r = Rng::new(3);
        assert!(!r.chance(Ppm::NEVER));
        assert!(r.chance(Ppm::ALWAYS));
        let hits = (0..100_000).filter(|_| r.chance(Ppm::from_percent(25))).count();
        assert!((24_000..26_000).contains(&hits), "{hits}");
    }
}
