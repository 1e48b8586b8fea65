//! Gossiped approximate counts for a shared limit: each node counts per fixed window, tells its peers now and then, and spends only its share of what the last reports leave.
//!
//! N nodes enforce one limit per key and window without asking a central counter on every
//! request: each counts what it admitted itself, sends its counts to the others every so often
//! ([`GossipCounts::report`]), and keeps the latest count each peer reported
//! ([`GossipCounts::hear`]). A request is admitted only within this node's share of what the
//! reports say is left, `left = limit − (what it told + what it heard)`, split so that the N
//! shares add up to exactly `left` ([`share`]). Were every node to spend all of `left`, N nodes
//! would admit N times it between two reports; split, they admit at most `left` together —
//! without any gossip at all each node admits `limit / N` and the total is exactly the limit
//! (the tests). What makes it approximate is what reports do not say yet: counts on their way
//! and windows cut by clocks that disagree (a node whose clock is ahead starts the next window
//! early). Cloudflare's and Envoy's local-then-shared limiters trade exactness for this.
//!
//! Windows are fixed and aligned on each node's own clock, as [`FixedWindow`]'s. A peer's
//! counts are kept for two windows (by parity), so a peer whose clock is ahead, already
//! reporting the next window, does not overwrite what it said about this one; the sum over
//! peers is kept alongside, so a decision costs the same for 4 peers or 32.

use crate::parts::window::FixedWindow;
use faultline_core::{Micros, Time};
use std::rc::Rc;

/// One node's share of `left` among `n` nodes, this node being number `index`: `left / n`,
/// plus one for the first `left % n` nodes, so that the shares add up to exactly `left`.
pub fn share(left: u64, n: u64, index: u64) -> u64 {
    let n = n.max(1);
    left / n + (index < left % n) as u64
}

/// What a node tells its peers: the window (on its clock) and its nonzero counts in it, by
/// key; shared by every peer's copy of the message.
pub type Report = (u64, Rc<[(u32, u64)]>);

/// One node's counts for keys `0..keys` and what its `peers − 1` peers last reported.
#[derive(Clone, Debug)]
pub struct GossipCounts {
    index: u32,
    peers: u32,
    len_us: Micros,
    /// What this node admitted in its current window, by key.
    own: Vec<FixedWindow>,
    /// What it last reported for its current window, by key.
    told: Vec<FixedWindow>,
    /// Each peer's last (window, count) at `[window parity][key][peer]`, and their sum at
    /// `[window parity][key]`.
    heard: Vec<(u64, u64)>,
    heard_sum: Vec<(u64, u64)>,
}

impl GossipCounts {
    /// Node `index` of `peers` (itself included), counting `keys` keys in windows of `len_us`.
    pub fn new(index: u32, peers: u32, keys: usize, len_us: Micros) -> GossipCounts {
        let windows = vec![FixedWindow::new(len_us); keys];
        GossipCounts {
            index,
            peers: peers.max(1),
            len_us,
            own: windows.clone(),
            told: windows,
            heard: vec![(0, 0); 2 * keys * peers.max(1) as usize],
            heard_sum: vec![(0, 0); 2 * keys],
        }
    }

    /// What this node admitted of `key` in the window containing `now`.
    pub fn own(&self, key: u32, now: Time) -> u64 {
        self.own[key as usize].count(now)
    }

    /// The sum of the peers' last reports of `key` for `window` (0 if none is for it).
    pub fn heard(&self, key: u32, window: u64) -> u64 {
        let sum = self.heard_sum[self.row(window) + key as usize];
        if sum.0 == window {
            sum.1
        } else {
            0
        }
    }

    /// Admits one request for `key` at `now` if this node alone has admitted fewer than
    /// `limit` in its window: a node that ignores its peers (N nodes admit N × the limit).
    pub fn allow_alone(&mut self, key: u32, now: Time, limit: u64) -> bool {
        self.own[key as usize].allow(now, limit)
    }

    /// Admits one request for `key` at `now` if it fits this node's share of what the last
    /// reports leave of `limit` (and this node alone is under `limit`); says whether it did.
    pub fn allow(&mut self, key: u32, now: Time, limit: u64) -> bool {
        let k = key as usize;
        let (own, told) = (self.own[k].count(now), self.told[k].count(now));
        let left = limit.saturating_sub(told + self.heard(key, now.micros() / self.len_us));
        let ok = own < limit && own - told < share(left, self.peers as u64, self.index as u64);
        if ok {
            self.own[k].hit(now, 1);
        }
        ok
    }

    /// The report to send every peer now; from now on, what it says counts as told.
    pub fn report(&mut self, now: Time) -> Report {
        let counts: Rc<[(u32, u64)]> =
            (0..self.own.len()).map(|k| (k as u32, self.own[k].count(now))).filter(|c| c.1 > 0).collect();
        for &(k, c) in counts.iter() {
            let told = &mut self.told[k as usize];
            told.hit(now, c.saturating_sub(told.count(now)));
        }
        (now.micros() / self.len_us, counts)
    }

    /// Peer `peer`'s report for `window`: each count replaces what that peer said before about
    /// the same window. A report two windows old (its parity's slot holds a newer window) is
    /// ignored.
    pub fn hear(&mut self, peer: u32, window: u64, counts: &[(u32, u64)]) {
        let (row, peers) = (self.row(window), self.peers as usize);
        for &(key, c) in counts {
            let sum = &mut self.heard_sum[row + key as usize];
            if sum.0 != window {
                if window < sum.0 {
                    continue;
                }
                *sum = (window, 0);
            }
            let slot = &mut self.heard[(row + key as usize) * peers + peer as usize];
            sum.1 = sum.1 - if slot.0 == window { slot.1 } else { 0 } + c;
            *slot = (window, c);
        }
    }

    fn row(&self, window: u64) -> usize {
        (window % 2) as usize * self.own.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    #[test]
    fn shares_split_what_is_left_exactly_and_evenly() {
        for n in 1..=33u64 {
            for left in 0..300u64 {
                let shares: Vec<u64> = (0..n).map(|i| share(left, n, i)).collect();
                assert_eq!(shares.iter().sum::<u64>(), left, "{left} among {n}");
                let (lo, hi) = (shares.iter().min().unwrap(), shares.iter().max().unwrap());
                assert!(hi - lo <= 1, "{left} among {n}: {shares:?}");
            }
        }
    }

    /// `n` nodes of one key, `requests` requests sent to random nodes in one window; after
    /// every `every`-th request (0: never) all nodes report and all hear at once. The total
    /// admitted.
    fn admitted(n: u32, limit: u64, requests: u32, every: u32, seed: u64) -> u64 {
        let mut nodes: Vec<GossipCounts> = (0..n).map(|i| GossipCounts::new(i, n, 1, 1_000_000)).collect();
        let mut rng = Rng::new(seed);
        let mut total = 0;
        for r in 1..=requests {
            let now = Time(r as u64);
            total += nodes[rng.pick(n as usize)].allow(0, now, limit) as u64;
            if every > 0 && r % every == 0 {
                let reports: Vec<Report> = nodes.iter_mut().map(|g| g.report(now)).collect();
                for (from, (window, counts)) in reports.iter().enumerate() {
                    for (to, g) in nodes.iter_mut().enumerate() {
                        if to != from {
                            g.hear(from as u32, *window, counts);
                        }
                    }
                }
            }
        }
        total
    }

    #[test]
    fn the_shares_hold_the_limit_with_no_gossip_and_with_instant_gossip() {
        // Without gossip each node spends its share of the whole limit: together exactly the
        // limit once demand exceeds it (each node gets ~requests/n ≫ its share). Reporting
        // after every request, what is left is always known exactly, and the last tokens go
        // to the nodes numbered below it: the total again reaches the limit and never passes.
        // Ignoring the peers, each node admits the whole limit.
        for (n, limit) in [(1, 30), (4, 30), (4, 3), (8, 100), (32, 30)] {
            for seed in 1..=5 {
                assert_eq!(admitted(n, limit, 40 * limit as u32 * n, 0, seed), limit, "{n} nodes, no gossip");
                assert_eq!(admitted(n, limit, 40 * limit as u32 * n, 1, seed), limit, "{n} nodes, instant gossip");
                assert!(admitted(n, limit, 4 * limit as u32 * n, 7, seed) <= limit, "{n} nodes, every 7");
            }
            let mut alone: Vec<GossipCounts> = (0..n).map(|i| GossipCounts::new(i, n, 1, 1_000_000)).collect();
            let requests = 2 * limit * n as u64;
            let total =
                (0..requests).filter(|&r| alone[(r % n as u64) as usize].allow_alone(0, Time(r), limit)).count();
            assert_eq!(total as u64, limit * n as u64, "{n} nodes alone");
        }
    }

    #[test]
    fn a_report_replaces_the_last_and_windows_are_kept_apart() {
        let mut g = GossipCounts::new(0, 3, 2, 1_000);
        g.hear(1, 5, &[(0, 5), (1, 2)]);
        g.hear(2, 5, &[(0, 4)]);
        g.hear(1, 5, &[(0, 7)]);
        assert_eq!((g.heard(0, 5), g.heard(1, 5)), (11, 2), "peer 1's 7 replaces its 5");
        // Peer 2's clock is ahead: its next window lands in the other slot.
        g.hear(2, 6, &[(0, 1)]);
        assert_eq!((g.heard(0, 5), g.heard(0, 6)), (11, 1));
        // Window 7 reuses window 5's slot; a late report of 5 is then ignored.
        g.hear(1, 7, &[(0, 3)]);
        g.hear(2, 5, &[(0, 9)]);
        assert_eq!((g.heard(0, 5), g.heard(0, 7), g.heard(0, 6)), (0, 3, 1));
        // What is left for window 7 at limit 10: 10 − 3 = 7, node 0's share of 3 nodes is 3.
        let now = Time(7_000);
        assert_eq!((0..5).filter(|_| g.allow(0, now, 10)).count(), 3);
        let (window, counts) = g.report(now);
        assert_eq!((window, &counts[..]), (7, &[(0, 3)][..]));
        // Told 3 of 3: left 10 − 3 told − 3 heard = 4, so a share of 2 more.
        assert_eq!((0..5).filter(|_| g.allow(0, now, 10)).count(), 2);
        assert_eq!(g.own(0, now), 5);
    }
}
