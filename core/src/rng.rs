//! The run's one seeded random generator (PCG-64) and the distributions drawn from it.
//!
//! Only integer operations and `libm` are used, so native and WASM draw the same numbers.

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

/// The seeded generator: PCG-64 (XSL RR 128/64), which has a documented, stable output
/// stream — exactly `rand_pcg::Pcg64` seeded by `rand_core`'s `seed_from_u64` (a test
/// checks them against each other). It is written out here so that its 128-bit state is
/// stepped in 64-bit words: in WASM a `u128` multiply is a call into compiler-rt, and this
/// generator runs for nearly every event.
#[derive(Clone, Debug)]
pub struct Rng {
    /// The 128-bit state and increment, as (high, low) words.
    state: (u64, u64),
    inc: (u64, u64),
}

/// PCG-64's multiplier, as (high, low) words.
const PCG_MUL: (u64, u64) = (0x2360_ED05_1FC6_5DA4, 0x4385_DF64_9FCC_F645);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        // rand_core's `seed_from_u64`: 32 seed bytes from a PCG-32 run on the seed...
        let mut s = seed;
        let mut words = [0u64; 4];
        for i in 0..8 {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(11634580027462260723);
            let x = ((((s >> 18) ^ s) >> 27) as u32).rotate_right((s >> 59) as u32);
            words[i / 2] |= (x as u64) << (32 * (i % 2));
        }
        // ...read as the state and the increment (made odd), then rand_pcg's first step.
        let inc = (words[3], words[2] | 1);
        let (lo, carry) = words[0].overflowing_add(inc.1);
        let mut rng = Rng { state: (words[1].wrapping_add(inc.0).wrapping_add(carry as u64), lo), inc };
        rng.step();
        rng
    }

    /// state = state × multiplier + increment (mod 2^128).
    #[inline(always)]
    fn step(&mut self) {
        let (sh, sl) = self.state;
        let (hi, lo) = mul_wide(sl, PCG_MUL.1);
        let hi = hi.wrapping_add(sl.wrapping_mul(PCG_MUL.0)).wrapping_add(sh.wrapping_mul(PCG_MUL.1));
        let (lo, carry) = lo.overflowing_add(self.inc.1);
        self.state = (hi.wrapping_add(self.inc.0).wrapping_add(carry as u64), lo);
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.step();
        let (hi, lo) = self.state;
        // XSL RR: xor the halves, rotate by the top six bits.
        (hi ^ lo).rotate_right((hi >> 58) as u32)
    }

    /// Uniform integer in `0..n` (Lemire's multiply-and-reject, unbiased). `n` must be > 0.
    /// The rejection threshold needs a division, so it is computed only in the rare case
    /// where the low half of the product is below `n` (the accepted draws are the same).
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below(0)");
        let (mut hi, mut lo) = mul_wide(self.next_u64(), n);
        if lo < n {
            let threshold = n.wrapping_neg() % n;
            while lo < threshold {
                (hi, lo) = mul_wide(self.next_u64(), n);
            }
        }
        hi
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

/// `rand`'s face of the same stream, so scenario code can use `rand`'s integer helpers
/// (`random_range`, `shuffle`, `choose`) on the run's one generator. Exactly `rand_pcg::Pcg64`
/// again: 32-bit draws are the low half of a 64-bit one, bytes come eight to a draw.
impl rand_core::RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        Rng::next_u64(self) as u32
    }
    fn next_u64(&mut self) -> u64 {
        Rng::next_u64(self)
    }
    fn fill_bytes(&mut self, dst: &mut [u8]) {
        rand_core::impls::fill_bytes_via_next(self, dst)
    }
}

/// The 128-bit product of `a` and `b` as (high, low) words.
#[inline(always)]
fn mul_wide(a: u64, b: u64) -> (u64, u64) {
    #[cfg(not(target_arch = "wasm32"))]
    {
        let m = (a as u128) * (b as u128);
        ((m >> 64) as u64, m as u64)
    }
    #[cfg(target_arch = "wasm32")]
    {
        mul_wide_halves(a, b)
    }
}

/// The same from 32-bit halves: WASM has no 64×64→128 multiply, and a `u128` product is a
/// call into compiler-rt there. Bounds below 2^32 (nearly all) take two multiplies.
#[inline(always)]
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
fn mul_wide_halves(a: u64, b: u64) -> (u64, u64) {
    if b >> 32 == 0 {
        let (low, high) = ((a & 0xffff_ffff) * b, (a >> 32) * b);
        let t = high + (low >> 32);
        return (t >> 32, (t << 32) | (low & 0xffff_ffff));
    }
    let (a0, a1, b0, b1) = (a & 0xffff_ffff, a >> 32, b & 0xffff_ffff, b >> 32);
    let (p00, p01, p10, p11) = (a0 * b0, a0 * b1, a1 * b0, a1 * b1);
    let mid = (p00 >> 32) + (p01 & 0xffff_ffff) + (p10 & 0xffff_ffff);
    (p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32), a.wrapping_mul(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_exactly_rand_pcg_pcg64() {
        use rand_core::{RngCore, SeedableRng};
        let seeds = (0..300).chain([u64::MAX, u64::MAX - 1, 1 << 63, 0xdead_beef_cafe_f00d]);
        for seed in seeds {
            let mut ours = Rng::new(seed);
            let mut theirs = rand_pcg::Pcg64::seed_from_u64(seed);
            for _ in 0..200 {
                assert_eq!(ours.next_u64(), theirs.next_u64(), "seed {seed}");
            }
        }
    }

    #[test]
    fn rand_core_face_is_exactly_rand_pcg_pcg64_too() {
        use rand_core::{RngCore, SeedableRng};
        for seed in [0, 7, u64::MAX] {
            let mut ours = Rng::new(seed);
            let mut theirs = rand_pcg::Pcg64::seed_from_u64(seed);
            for len in [0, 1, 7, 8, 9, 31] {
                assert_eq!(RngCore::next_u32(&mut ours), theirs.next_u32(), "seed {seed}");
                let (mut a, mut b) = (vec![0u8; len], vec![0u8; len]);
                ours.fill_bytes(&mut a);
                theirs.fill_bytes(&mut b);
                assert_eq!(a, b, "seed {seed}, {len} bytes");
            }
        }
    }

    #[test]
    fn multiply_by_halves_matches_u128() {
        let mut r = Rng::new(5);
        let edge = [0, 1, 2, 0xffff_ffff, 1 << 32, u64::MAX, u64::MAX - 1];
        for &a in &edge {
            for &b in &edge {
                let m = (a as u128) * (b as u128);
                assert_eq!(mul_wide_halves(a, b), ((m >> 64) as u64, m as u64));
            }
        }
        for _ in 0..10_000 {
            let (a, b) = (r.next_u64(), r.next_u64());
            let m = (a as u128) * (b as u128);
            assert_eq!(mul_wide_halves(a, b), ((m >> 64) as u64, m as u64));
        }
    }

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
