//! Secret rotation and staged pushes: a key set (the keys a server accepts, the one it signs with), a rotation by swapping the one key or through two valid keys, stages of a rollout by region, and the failures a swap costs in theory.
//!
//! A request is signed with its sender's signing key and checked against its receiver's
//! accepted keys. Swapping the one key (accept only the new, sign with it) fails every request
//! between a node that has the new set and one that has not, until the last has it. With two
//! valid keys ([`Rotation`]) it goes in three steps, each sent only when every node confirmed
//! the one before: accept both (still signing with the old), sign with the new, retire the
//! old (after a grace for requests in flight). At every instant every node's signer is
//! accepted by every node, so no request fails — however slowly the steps arrive.
//!
//! The cost of a swap: if node i takes the new set at T_i and a request from i reaches j
//! d later, it fails exactly while new_i(t) ≠ new_j(t + d): for |T_i − T_j + d| of time. Nodes
//! that take a push when a cache of TTL T next expires take it at L_i + U(0, T), so
//! T_i − T_j = L_i − L_j + A with A triangular on (−T, T), and E|A + c| is T/3 + c²/T − c³/3T²
//! for |c| < T, else |c| ([`swap_failures`]).

use faultline_core::{Micros, Time};

/// The keys a node accepts (0: no key) and the one it signs with; `version` orders the sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Keys {
    pub version: u32,
    pub accepted: [u32; 2],
    pub signer: u32,
}

impl Keys {
    /// Key 1 alone.
    pub const FIRST: Keys = Keys { version: 1, accepted: [1, 0], signer: 1 };

    pub fn accepts(&self, key: u32) -> bool {
        key != 0 && self.accepted.contains(&key)
    }
    /// "key 2", or "keys 1+2 (signs 1)" while two are valid.
    pub fn describe(&self) -> String {
        match self.accepted {
            [a, 0] | [0, a] => format!("key {a}"),
            [a, b] => format!("keys {a}+{b} (signs {})", self.signer),
        }
    }
    fn next(&self, accepted: [u32; 2], signer: u32) -> Keys {
        Keys { version: self.version + 1, accepted, signer }
    }
}

/// Where a rotation by two valid keys stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    Idle,
    /// Step 1 sent: both keys accepted, the old one still signs.
    Accepting,
    /// Step 2 sent: the new key signs; the old is still accepted.
    Signing,
    /// Every node signs with the new key; the old is retired at `at` (a grace for requests in flight).
    Retiring {
        at: Time,
    },
}

impl Rotation {
    /// The naive rotation: one step to the new key alone.
    pub fn swap(keys: Keys) -> Keys {
        let new = keys.signer + 1;
        keys.next([new, 0], new)
    }

    /// Starts a rotation from `keys`: the first step's set (`None` if one is under way).
    pub fn start(&mut self, keys: Keys) -> Option<Keys> {
        (*self == Rotation::Idle).then(|| {
            *self = Rotation::Accepting;
            keys.next([keys.signer, keys.signer + 1], keys.signer)
        })
    }

    /// The next step's set, if it is due at `now`: `confirmed` says every node has `keys`.
    pub fn step(&mut self, keys: Keys, confirmed: bool, now: Time, grace_us: Micros) -> Option<Keys> {
        let new = keys.accepted[1];
        match *self {
            Rotation::Accepting if confirmed => {
                *self = Rotation::Signing;
                Some(keys.next(keys.accepted, new))
            }
            Rotation::Signing if confirmed => {
                *self = Rotation::Retiring { at: now.plus(grace_us) };
                None
            }
            Rotation::Retiring { at } if now >= at => {
                *self = Rotation::Idle;
                Some(keys.next([new, 0], new))
            }
            _ => None,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Rotation::Idle => "no rotation",
            Rotation::Accepting => "rotation 1/3: accept both",
            Rotation::Signing => "rotation 2/3: sign with new",
            Rotation::Retiring { .. } => "rotation 3/3: retire old",
        }
    }
}

/// The regions each stage of a rollout ends at: the first stage holds `first`, each next one
/// twice the one before (1, 2, 4, … of n), so ⌈log2(n/first + 1)⌉ stages in all.
pub fn stage_ends(n: usize, first: usize) -> Vec<usize> {
    let (mut ends, mut size, mut end) = (Vec::new(), first.max(1), 0);
    while end < n {
        end = (end + size).min(n);
        ends.push(end);
        size *= 2;
    }
    ends
}

/// The stage (from 0) region `i` is in.
pub fn stage_of(i: usize, ends: &[usize]) -> usize {
    ends.partition_point(|e| *e <= i)
}

/// E|A + c| for A triangular on (−t, t): the time two nodes with independent uniform phases
/// on a cycle t, offset by c, disagree.
pub fn mean_gap_us(c: f64, t: f64) -> f64 {
    let c = c.abs();
    if c >= t {
        c
    } else {
        t / 3.0 + c * c / t - c * c * c / (3.0 * t * t)
    }
}

/// Requests expected to fail in a one-key swap pushed to every node at once: each of the nodes
/// (one-way latency `latency_us[i]` from the pusher, a cache of `ttl_us`) sends `rate_per_s` to
/// all nodes alike (itself too: those never fail), each taking U(d_lo, d_hi) to arrive.
pub fn swap_failures(rate_per_s: f64, latency_us: &[f64], ttl_us: f64, d_lo_us: f64, d_hi_us: f64) -> f64 {
    let n = latency_us.len() as f64;
    let steps = 64;
    let mut total_us = 0.0;
    for (i, li) in latency_us.iter().enumerate() {
        for (j, lj) in latency_us.iter().enumerate() {
            if i == j {
                continue;
            }
            // The request's delay d, averaged by the midpoint rule.
            let d = |k: usize| d_lo_us + (d_hi_us - d_lo_us) * (k as f64 + 0.5) / steps as f64;
            total_us += (0..steps).map(|k| mean_gap_us(li - lj + d(k), ttl_us)).sum::<f64>() / steps as f64;
        }
    }
    rate_per_s / n * total_us / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn two_valid_keys_never_leave_a_signer_unaccepted() {
        // Three nodes take each step in any order, at random: after every change, every node's
        // signer is accepted by every node, in 1,000 random interleavings.
        let mut rng = Rng::new(7);
        for _ in 0..1000 {
            let (mut held, mut rot, mut latest, mut now) = ([Keys::FIRST; 3], Rotation::Idle, Keys::FIRST, Time::ZERO);
            latest = rot.start(latest).unwrap_or(latest);
            while rot != Rotation::Idle || held.iter().any(|k| *k != latest) {
                now = now.plus(1000);
                let i = rng.below(3) as usize;
                if rng.below(2) == 0 {
                    held[i] = latest;
                }
                let confirmed = held.iter().all(|k| *k == latest);
                latest = rot.step(latest, confirmed, now, 5000).unwrap_or(latest);
                for a in held {
                    assert!(held.iter().all(|b| b.accepts(a.signer)), "{held:?}");
                }
            }
            assert_eq!(latest, Keys { version: 4, accepted: [2, 0], signer: 2 });
        }
        // A swap does leave one.
        let new = Rotation::swap(Keys::FIRST);
        assert!(!new.accepts(Keys::FIRST.signer) && !Keys::FIRST.accepts(new.signer));
    }

    #[test]
    fn stages_double_from_the_first() {
        assert_eq!(stage_ends(20, 2), vec![2, 6, 14, 20]);
        assert_eq!(stage_ends(20, 20), vec![20]);
        assert_eq!(stage_ends(5, 1), vec![1, 3, 5]);
        assert_eq!((stage_of(0, &[2, 6]), stage_of(2, &[2, 6]), stage_of(5, &[2, 6])), (0, 1, 1));
    }

    #[test]
    fn the_mean_gap_matches_sampled_phases() {
        // Two uniform phases on t = 300 ms, offset by c: E|U1 − U2 + c| over 200,000 draws
        // (σ of the mean ≤ 0.4 ms), within 1.5 ms.
        let mut rng = Rng::new(3);
        for c in [0.0, 50_000.0, -120_000.0, 299_000.0, 400_000.0] {
            let t = 300_000.0;
            let n = 200_000;
            let sum: f64 = (0..n).map(|_| (rng.below(300_000) as f64 - rng.below(300_000) as f64 + c).abs()).sum();
            assert!((sum / n as f64 - mean_gap_us(c, t)).abs() < 1500.0, "{c}: {}", sum / n as f64);
        }
        // Two nodes alike, no delay: each sends r/2 to the other, for t/3 of disagreement each way.
        let f = swap_failures(100.0, &[0.0, 0.0], 300_000.0, 0.0, 0.0);
        assert!((f - 2.0 * 50.0 * 0.1).abs() < 1e-9, "{f}");
    }
}
