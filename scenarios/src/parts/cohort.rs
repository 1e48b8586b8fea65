//! Cohorts: clients counted, not simulated one by one — binomial draws, full-jitter spreads, a calendar of waiting clients, a server's FIFO.
//!
//! Hundreds of thousands of clients each with its own timer cost a timer each; counted in
//! cohorts (how many clients are due in each tick, by whatever key the scenario keeps), a tick
//! costs a few entries. What would have been each client's own coin flip is drawn for the
//! cohort at once: a binomial count, and a multinomial spread over ticks for a uniform wait
//! (full jitter, Brooker 2015). Binomial draws are exact (inversion, Devroye 1986 §X.4) while
//! the mean `n·min(p, 1−p)` is below 30, and a normal approximation with a continuity
//! correction past it (Berry–Esseen: the CDF's error is below `0.48·(p²+q²)/√(npq)`, under
//! 12% at npq ≥ 15 and shrinking as √n grows; the mean and variance are exact).

use faultline_core::{Rng, Time};
use std::collections::{BTreeMap, VecDeque};

/// The mean below which `binomial` inverts exactly.
const EXACT_BELOW: f64 = 30.0;

/// How many of `n` clients, each independently with chance `p`, do something: Binomial(n, p).
pub fn binomial(n: u64, p: f64, rng: &mut Rng) -> u64 {
    if n == 0 || p <= 0.0 {
        return 0;
    }
    if p >= 1.0 {
        return n;
    }
    if p > 0.5 {
        return n - binomial(n, 1.0 - p, rng);
    }
    let mean = n as f64 * p;
    if mean < EXACT_BELOW {
        // Inversion: walk the pmf up from 0 until it passes a uniform draw.
        let (u, q) = (rng.unit_open(), p / (1.0 - p));
        let mut pmf = libm::exp(n as f64 * libm::log1p(-p));
        let (mut cdf, mut k) = (pmf, 0u64);
        while cdf < u && k < n {
            pmf *= q * (n - k) as f64 / (k + 1) as f64;
            k += 1;
            cdf += pmf;
        }
        return k;
    }
    let sd = libm::sqrt(mean * (1.0 - p));
    let x = libm::floor(mean + sd * rng.std_normal() + 0.5);
    x.clamp(0.0, n as f64) as u64
}

/// `n` clients each waiting a uniform number of whole ticks in `0..ticks`: how many land in each
/// (a multinomial with equal chances, drawn as conditional binomials). `ticks` 0 is read as 1.
pub fn spread(n: u64, ticks: u64, rng: &mut Rng) -> Vec<u64> {
    let ticks = ticks.max(1);
    let mut left = n;
    (0..ticks)
        .map(|i| {
            let k = binomial(left, 1.0 / (ticks - i) as f64, rng);
            left -= k;
            k
        })
        .collect()
}

/// Counts of clients due at a tick, by a key of the scenario's (their attempt, when they began).
#[derive(Clone, Debug, Default)]
pub struct Calendar<K: Ord + Copy> {
    due: BTreeMap<(u64, K), u64>,
    total: u64,
}

impl<K: Ord + Copy> Calendar<K> {
    pub fn new() -> Calendar<K> {
        Calendar { due: BTreeMap::new(), total: 0 }
    }

    /// `n` more clients of `key` due at `tick`.
    pub fn add(&mut self, tick: u64, key: K, n: u64) {
        if n > 0 {
            *self.due.entry((tick, key)).or_default() += n;
            self.total += n;
        }
    }

    /// `n` clients of `key` whose waits start at `tick`, spread uniformly over the next `ticks`.
    pub fn add_spread(&mut self, tick: u64, ticks: u64, key: K, n: u64, rng: &mut Rng) {
        for (i, k) in spread(n, ticks, rng).into_iter().enumerate() {
            self.add(tick + i as u64, key, k);
        }
    }

    /// Takes every cohort due at or before `tick`, merged by key.
    pub fn take_due(&mut self, tick: u64) -> Vec<(K, u64)> {
        let mut out: BTreeMap<K, u64> = BTreeMap::new();
        while let Some(entry) = self.due.first_entry().filter(|e| e.key().0 <= tick) {
            let ((_, k), n) = entry.remove_entry();
            *out.entry(k).or_default() += n;
            self.total -= n;
        }
        out.into_iter().collect()
    }

    /// Clients waiting in the calendar.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Every cohort (due tick, key, count), in order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, K, u64)> + '_ {
        self.due.iter().map(|(&(t, k), &n)| (t, k, n))
    }
}

/// A try out for `n` clients of a population, named by `id`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Out {
    pub id: u64,
    pub n: u64,
}

/// Clients who want something (a connection) counted in cohorts: each waits in the calendar for
/// its next try, keyed by its retry number and the tick it began wanting, or has a try out; the
/// population knows how long its longest waiter has waited.
#[derive(Clone, Debug, Default)]
pub struct Population {
    calendar: Calendar<(u32, u64)>,
    /// Tries out: id → (clients still on it, their retry number, the tick they began wanting).
    out: BTreeMap<u64, (u64, u32, u64)>,
    next_id: u64,
    /// Clients not yet served, by the tick they began wanting.
    since: BTreeMap<u64, u64>,
    wanting: u64,
}

impl Population {
    pub fn new() -> Population {
        Population::default()
    }

    /// `n` clients begin wanting at `tick`, their first try (retry 0) due then.
    pub fn want(&mut self, tick: u64, n: u64) {
        self.begin(tick, n);
        self.calendar.add(tick, (0, tick), n);
    }

    /// `n` clients begin wanting at `tick`; the caller schedules their tries (`retry_at`, `retry_spread`).
    pub fn begin(&mut self, tick: u64, n: u64) {
        *self.since.entry(tick).or_default() += n;
        self.wanting += n;
    }

    /// `n` clients (retry `retry`, wanting since `began`) try again at `tick`.
    pub fn retry_at(&mut self, tick: u64, retry: u32, began: u64, n: u64) {
        self.calendar.add(tick, (retry, began), n);
    }

    /// `n` clients try again at a tick drawn uniformly from `tick..tick + ticks` (full jitter).
    pub fn retry_spread(&mut self, tick: u64, ticks: u64, retry: u32, began: u64, n: u64, rng: &mut Rng) {
        self.calendar.add_spread(tick, ticks, (retry, began), n, rng);
    }

    /// The tries due at `tick`, now out: one per (retry number, began) cohort.
    pub fn due(&mut self, tick: u64) -> Vec<Out> {
        let due = self.calendar.take_due(tick);
        due.into_iter()
            .map(|((retry, began), n)| {
                let id = self.next_id;
                self.next_id += 1;
                self.out.insert(id, (n, retry, began));
                Out { id, n }
            })
            .collect()
    }

    /// Up to `k` clients of try `id` come off it (served or failed): how many, their retry number
    /// and when they began. `None` if the try is no longer out.
    pub fn take(&mut self, id: u64, k: u64) -> Option<(u64, u32, u64)> {
        let o = self.out.get_mut(&id)?;
        let k = k.min(o.0);
        o.0 -= k;
        let (left, retry, began) = *o;
        if left == 0 {
            self.out.remove(&id);
        }
        Some((k, retry, began))
    }

    /// Clients still on try `id`.
    pub fn on(&self, id: u64) -> u64 {
        self.out.get(&id).map_or(0, |o| o.0)
    }

    /// `k` clients wanting since `began` are served: they want no more.
    pub fn served(&mut self, began: u64, k: u64) {
        if let Some(w) = self.since.get_mut(&began) {
            let k = k.min(*w);
            (*w, self.wanting) = (*w - k, self.wanting - k);
            if *w == 0 {
                self.since.remove(&began);
            }
        }
    }

    /// Clients wanting and not yet served.
    pub fn wanting(&self) -> u64 {
        self.wanting
    }

    /// The tick the longest waiter began wanting.
    pub fn oldest(&self) -> Option<u64> {
        self.since.keys().next().copied()
    }
}

/// A server's FIFO of counted work: cohorts of `n` requests, each with the deadline past which its
/// clients are gone. Served by a budget of work per tick (in requests, fractions carried over while
/// work waits; idle capacity is not banked, a debt is); requests served past their deadline were
/// done for nothing, as a server that only notices the closed socket afterwards does them.
#[derive(Clone, Debug, Default)]
pub struct Backlog {
    queue: VecDeque<(u64, u64, Time)>,
    queued: u64,
    carry: f64,
}

impl Backlog {
    pub fn new() -> Backlog {
        Backlog::default()
    }

    /// Queues up to `n` requests of `id` while fewer than `bound` wait: how many it took.
    pub fn offer(&mut self, id: u64, n: u64, deadline: Time, bound: u64) -> u64 {
        let k = n.min(bound.saturating_sub(self.queued));
        if k > 0 {
            self.queue.push_back((id, k, deadline));
            self.queued += k;
        }
        k
    }

    /// Spends `budget` requests' worth of work at `now`, oldest first: the (id, count) served in
    /// time, and how many were served too late.
    pub fn serve(&mut self, budget: f64, now: Time) -> (Vec<(u64, u64)>, u64) {
        let (mut budget, mut done, mut late) = (self.carry + budget, Vec::new(), 0);
        while let Some(head) = self.queue.front_mut().filter(|_| budget >= 1.0) {
            let k = head.1.min(budget as u64);
            (head.1, budget, self.queued) = (head.1 - k, budget - k as f64, self.queued - k);
            match now <= head.2 {
                true => done.push((head.0, k)),
                false => late += k,
            }
            if head.1 == 0 {
                self.queue.pop_front();
            }
        }
        self.carry = if self.queue.is_empty() { budget.min(0.0) } else { budget };
        (done, late)
    }

    /// Requests waiting, less work already done towards them (or plus work owed).
    pub fn work_ahead(&self) -> f64 {
        self.queued as f64 - self.carry
    }

    pub fn queued(&self) -> u64 {
        self.queued
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn moments(n: u64, p: f64, draws: u32) -> (f64, f64) {
        let mut rng = Rng::new(7);
        let xs: Vec<f64> = (0..draws).map(|_| binomial(n, p, &mut rng) as f64).collect();
        let mean = xs.iter().sum::<f64>() / draws as f64;
        (mean, xs.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (draws - 1) as f64)
    }

    #[test]
    fn binomial_draws_have_np_mean_and_npq_variance() {
        // 20,000 draws: the mean's standard error is √(npq/20000) (≤ 0.7% of np here) and the
        // variance's about √(2/20000) = 1% of npq, so ±3% and ±6% are 4+ standard errors. The
        // cases cover inversion (np < 30), the normal branch and the p > ½ mirror.
        for (n, p) in [(1_000, 0.01), (40, 0.3), (100_000, 0.3), (500_000, 0.02), (200, 0.9)] {
            let (mean, var) = moments(n, p, 20_000);
            let (m, v) = (n as f64 * p, n as f64 * p * (1.0 - p));
            assert!((mean - m).abs() <= 0.03 * m, "n {n} p {p}: mean {mean}, np {m}");
            assert!((var - v).abs() <= 0.06 * v, "n {n} p {p}: variance {var}, npq {v}");
        }
        let mut rng = Rng::new(1);
        assert_eq!((binomial(0, 0.5, &mut rng), binomial(9, 0.0, &mut rng), binomial(9, 1.0, &mut rng)), (0, 0, 9));
    }

    #[test]
    fn a_full_jitter_spread_is_uniform() {
        // 80,000 clients over 80 ticks: Pearson's χ² with 79 degrees of freedom has mean 79 and
        // standard deviation √158 ≈ 12.6; 140 is beyond its 99.99th percentile.
        let counts = spread(80_000, 80, &mut Rng::new(3));
        assert_eq!(counts.iter().sum::<u64>(), 80_000);
        let chi2: f64 = counts.iter().map(|&c| (c as f64 - 1000.0) * (c as f64 - 1000.0) / 1000.0).sum();
        assert!(chi2 < 140.0, "χ² = {chi2}");
    }

    #[test]
    fn a_population_tracks_tries_and_its_longest_waiter() {
        let mut p = Population::new();
        p.want(3, 10);
        assert_eq!(p.due(2), vec![]);
        let out = p.due(3);
        assert_eq!(out, vec![Out { id: 0, n: 10 }]);
        assert_eq!(p.take(0, 4), Some((4, 0, 3)));
        p.served(3, 4);
        p.retry_at(5, 1, 3, 6);
        assert_eq!((p.take(0, 99), p.take(0, 1)), (Some((6, 0, 3)), None));
        assert_eq!((p.wanting(), p.oldest()), (6, Some(3)));
        p.served(3, 6);
        assert_eq!((p.wanting(), p.oldest()), (0, None));
    }

    #[test]
    fn a_backlog_serves_in_order_and_counts_the_late() {
        let mut b = Backlog::new();
        assert_eq!(b.offer(1, 5, Time::from_secs(1), 8), 5);
        assert_eq!(b.offer(2, 5, Time::from_secs(9), 8), 3);
        let (done, late) = b.serve(6.5, Time::from_secs(2));
        assert_eq!((done, late), (vec![(2, 1)], 5));
        assert_eq!((b.queued(), b.work_ahead()), (2, 1.5));
        let (done, _) = b.serve(1.5, Time::from_secs(3));
        assert_eq!((done, b.queued(), b.work_ahead()), (vec![(2, 2)], 0, 0.0));
    }
}
