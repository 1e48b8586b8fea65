//! A Bloom filter: m bits, k positions per key by double hashing; never a false negative, and a false positive with chance (1 − e^(−kn/m))^k after n distinct keys.
//!
//! Bloom (CACM 1970). A key sets k bits; a key is "maybe present" when all its k bits are
//! set. The k positions are g_i = h1 + i·h2 mod m (i = 0..k), with h1 and h2 two fixed
//! SplitMix64 hashes of the key and h2 odd: Kirsch and Mitzenmacher (2006) show two hashes
//! give the same asymptotic false-positive rate as k independent ones, and a key's positions
//! are the same in every run. After n distinct keys a given bit is still 0 with chance
//! (1 − 1/m)^(kn) ≈ e^(−kn/m), so a key never added is let through as present with chance
//! ≈ (1 − e^(−kn/m))^k ([`false_positive_rate`]; Bose et al. 2008: a slight underestimate
//! for small m, well under 1% relative at the sizes used here — tests). Adding a key whose
//! bits are all set already changes nothing, so duplicates and false positives do not fill
//! the filter: n counts distinct keys. The rate is lowest at k = (m/n)·ln 2
//! ([`optimal_hashes`]).

use crate::parts::ring::mix;

#[derive(Clone, Debug)]
pub struct Bloom {
    words: Vec<u64>,
    m: u64,
    k: u32,
    ones: u64,
}

impl Bloom {
    /// `m` bits (at least 1), `k` hashes (at least 1).
    pub fn new(m: u64, k: u32) -> Bloom {
        let m = m.max(1);
        Bloom { words: vec![0; m.div_ceil(64) as usize], m, k: k.max(1), ones: 0 }
    }

    /// The key's k bit positions.
    fn positions(&self, key: u64) -> impl Iterator<Item = u64> {
        let h1 = mix(key ^ 0x9e37_79b9_7f4a_7c15);
        let h2 = mix(h1 ^ 0xc2b2_ae3d_27d4_eb4f) | 1;
        let m = self.m;
        (0..self.k as u64).map(move |i| h1.wrapping_add(i.wrapping_mul(h2)) % m)
    }

    /// Whether `key` may have been added (certainly not, if `false`).
    pub fn contains(&self, key: u64) -> bool {
        self.positions(key).all(|b| self.words[(b / 64) as usize] & (1 << (b % 64)) != 0)
    }

    /// Adds `key`, in one step as RedisBloom's `BF.ADD`: `true` if it was new (some bit was
    /// 0), `false` if it may have been added before.
    pub fn insert(&mut self, key: u64) -> bool {
        let mut new = false;
        for b in self.positions(key).collect::<Vec<_>>() {
            let (w, bit) = ((b / 64) as usize, 1u64 << (b % 64));
            if self.words[w] & bit == 0 {
                (self.words[w], self.ones, new) = (self.words[w] | bit, self.ones + 1, true);
            }
        }
        new
    }

    /// m, the filter's bits.
    pub fn bits(&self) -> u64 {
        self.m
    }

    /// k, the hashes per key.
    pub fn hashes(&self) -> u32 {
        self.k
    }

    /// Its memory: m / 8 bytes, whatever it holds.
    pub fn bytes(&self) -> u64 {
        self.m.div_ceil(8)
    }

    /// The share of bits set (the chance a key never added passes is about this to the k).
    pub fn fill(&self) -> f64 {
        self.ones as f64 / self.m as f64
    }
}

/// The false-positive rate after `n` distinct keys in `m` bits with `k` hashes: (1 − e^(−kn/m))^k.
pub fn false_positive_rate(m: u64, k: u32, n: u64) -> f64 {
    libm::pow(1.0 - libm::exp(-(k as f64) * n as f64 / m as f64), k as f64)
}

/// The k that minimises the false-positive rate for `n` keys in `m` bits: (m/n)·ln 2, at least 1.
pub fn optimal_hashes(m: u64, n: u64) -> u32 {
    (libm::round(m as f64 / n.max(1) as f64 * core::f64::consts::LN_2) as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_a_false_negative() {
        let mut f = Bloom::new(4096, 5);
        for key in 0..2000u64 {
            f.insert(mix(key));
        }
        assert!((0..2000u64).all(|key| f.contains(mix(key))));
        assert!(!f.insert(mix(7)), "a key added before is 'maybe present'");
    }

    #[test]
    fn false_positives_match_one_minus_e_to_the_minus_kn_over_m_to_the_k() {
        // n distinct keys in, then 1,000,000 keys never added asked. Two sources of spread: the
        // count of passes is binomial (s.d. at most 1.4% of the rate at these sizes), and the
        // filter's own fill varies — the zero bits' count has variance ≈ m·e^(−λ)(1 − (1+λ)e^(−λ)),
        // λ = kn/m (occupancy), at most 0.7% of the fill here, which the k-th power turns into
        // at most ~1.3% of the rate. The formula itself is Bose et al.'s slight underestimate
        // (O(k/m), ~0.01% here). So: within 8% of the formula (over 5 s.d.); the fill within 3%.
        let queries = 1_000_000u64;
        for &(m, k, n) in &[(65_536u64, 4u32, 8_000u64), (65_536, 4, 16_000), (262_144, 7, 24_000), (8_192, 2, 2_000)] {
            let mut f = Bloom::new(m, k);
            for key in 0..n {
                f.insert(key);
            }
            let passed = (0..queries).filter(|q| f.contains(1 << 40 | q)).count() as f64 / queries as f64;
            let theory = false_positive_rate(m, k, n);
            let ok = (passed - theory).abs() <= 0.08 * theory;
            assert!(ok, "m {m}, k {k}, n {n}: {passed:.5} passed, theory {theory:.5}");
            // And the fill: 1 − e^(−kn/m), within 3%.
            let fill = 1.0 - libm::exp(-(k as f64) * n as f64 / m as f64);
            assert!((f.fill() - fill).abs() <= 0.03 * fill, "m {m}, k {k}, n {n}: fill {:.4}, {fill:.4}", f.fill());
        }
    }

    #[test]
    fn the_best_k_is_m_over_n_ln_2() {
        // 10 bits a key: k = 7, about 0.8% false positives (the textbook 1% at 9.6 bits).
        assert_eq!(optimal_hashes(80_000, 8_000), 7);
        let p = false_positive_rate(80_000, 7, 8_000);
        assert!((0.0081..0.0083).contains(&p), "{p}");
        assert!(false_positive_rate(80_000, 6, 8_000) > p && false_positive_rate(80_000, 8, 8_000) > p);
    }

    #[test]
    fn memory_is_m_over_8_bytes_however_many_keys() {
        let mut f = Bloom::new(32_768, 4);
        assert_eq!(f.bytes(), 4096);
        for key in 0..100_000u64 {
            f.insert(key);
        }
        assert_eq!((f.bytes(), f.bits(), f.hashes()), (4096, 32_768, 4));
    }
}
