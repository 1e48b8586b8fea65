//! Choosing a target for each request: round robin, random, least loaded, or the less loaded of two random ones.
//!
//! A balancer keeps one [`Chooser`] and asks it for each request: `pick(candidates, load, rng)`
//! with the targets it may use now (their indices, ascending: those in rotation) and each one's
//! load as it counts it (requests in flight, a queue length). The rules, and what they cost:
//! - round robin: the first candidate at or after a cursor that moves past each pick (wraps);
//!   blind to load, so a slow target keeps its share.
//! - random: uniform over the candidates; blind too, and its luck piles up (balls into bins:
//!   n balls in n bins leave a fullest bin of about ln n / ln ln n, Gonnet 1981).
//! - least loaded: the smallest load over all candidates (ties go round robin from the cursor);
//!   needs every target's load, fresh.
//! - two choices: two distinct random candidates, the less loaded one (a tie: the first drawn);
//!   the fullest bin falls to ln ln n / ln 2 + O(1) (Azar, Broder, Karlin & Upfal 1994) and a
//!   queue's tail falls doubly exponentially (the supermarket model, Mitzenmacher 1996), from
//!   two loads read per pick.
//!
//! [`Loads`] is what a balancer counts per target: requests in flight (the load the rules compare)
//! and requests sent since the last `roll` (the busiest target's share of the traffic).

use faultline_core::Rng;

/// How a target is chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    RoundRobin,
    Random,
    LeastLoaded,
    TwoChoices,
}

/// A rule and the round-robin cursor (used by round robin and by least loaded's ties).
#[derive(Clone, Debug)]
pub struct Chooser {
    rule: Rule,
    next: usize,
}

impl Chooser {
    pub fn new(rule: Rule) -> Chooser {
        Chooser { rule, next: 0 }
    }

    pub fn rule(&self) -> Rule {
        self.rule
    }

    /// A new rule, live; the cursor stays where it is.
    pub fn set_rule(&mut self, rule: Rule) {
        self.rule = rule;
    }

    /// One target among `candidates` (ascending indices), by the rule; `None` if there are none.
    /// `load(i)` is read for least loaded (every candidate) and two choices (two of them).
    pub fn pick(&mut self, candidates: &[usize], load: impl Fn(usize) -> u64, rng: &mut Rng) -> Option<usize> {
        debug_assert!(candidates.windows(2).all(|w| w[0] < w[1]), "candidates ascending");
        let m = candidates.len();
        if m == 0 {
            return None;
        }
        // Where the cursor falls among the candidates: the first at or after it, else the first.
        let from = candidates.partition_point(|&i| i < self.next) % m;
        let chosen = match self.rule {
            Rule::RoundRobin => candidates[from],
            Rule::Random => candidates[rng.pick(m)],
            Rule::LeastLoaded => (0..m).map(|k| candidates[(from + k) % m]).min_by_key(|&i| load(i))?,
            Rule::TwoChoices if m == 1 => candidates[0],
            Rule::TwoChoices => {
                let a = rng.pick(m);
                let b = rng.pick(m - 1);
                let (a, b) = (candidates[a], candidates[if b >= a { b + 1 } else { b }]);
                if load(b) < load(a) {
                    b
                } else {
                    a
                }
            }
        };
        if matches!(self.rule, Rule::RoundRobin | Rule::LeastLoaded) {
            self.next = chosen + 1;
        }
        Some(chosen)
    }
}

/// Per target: requests in flight, and requests sent since the last `roll`.
#[derive(Clone, Debug)]
pub struct Loads {
    inflight: Vec<u64>,
    sent: Vec<u64>,
}

impl Loads {
    pub fn new(targets: usize) -> Loads {
        Loads { inflight: vec![0; targets], sent: vec![0; targets] }
    }

    pub fn inflight(&self, i: usize) -> u64 {
        self.inflight[i]
    }

    /// A request went to `i`.
    pub fn sent(&mut self, i: usize) {
        (self.inflight[i], self.sent[i]) = (self.inflight[i] + 1, self.sent[i] + 1);
    }

    /// A request to `i` ended (an answer, or given up).
    pub fn ended(&mut self, i: usize) {
        self.inflight[i] = self.inflight[i].saturating_sub(1);
    }

    /// `i` lost everything it held (a restart): nothing of it is in flight any more.
    pub fn reset(&mut self, i: usize) {
        self.inflight[i] = 0;
    }

    /// Over targets `0..n`: the most loaded (the first of equals) with its count, and the mean count.
    pub fn max_mean(&self, n: usize) -> (usize, u64, f64) {
        let loads = &self.inflight[..n.min(self.inflight.len())];
        let (i, max) = loads.iter().enumerate().fold((0, 0), |m, (i, &x)| if x > m.1 { (i, x) } else { m });
        (i, max, loads.iter().sum::<u64>() as f64 / loads.len().max(1) as f64)
    }

    /// Requests sent to all targets since the last roll (a caller may roll only once there are enough).
    pub fn unrolled(&self) -> u64 {
        self.sent.iter().sum()
    }

    /// The target sent the most since the last roll and its share of all sent then (%, rounded
    /// down; 0 if none), and a new count starts.
    pub fn roll(&mut self) -> (usize, u64) {
        let total = self.sent.iter().sum::<u64>().max(1);
        let (i, most) = self.sent.iter().enumerate().fold((0, 0), |m, (i, &x)| if x > m.1 { (i, x) } else { m });
        self.sent.iter_mut().for_each(|x| *x = 0);
        (i, most * 100 / total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_cycles_over_the_candidates_and_skips_the_others() {
        let mut c = Chooser::new(Rule::RoundRobin);
        let mut rng = Rng::new(1);
        let all: Vec<usize> = (0..4).collect();
        let picks: Vec<usize> = (0..6).map(|_| c.pick(&all, |_| 0, &mut rng).unwrap()).collect();
        assert_eq!(picks, [0, 1, 2, 3, 0, 1]);
        // 2 leaves the rotation: the cursor (at 2) goes on to 3, then wraps to 0.
        let some = [0, 1, 3];
        let picks: Vec<usize> = (0..4).map(|_| c.pick(&some, |_| 0, &mut rng).unwrap()).collect();
        assert_eq!(picks, [3, 0, 1, 3]);
        assert_eq!(c.pick(&[], |_| 0, &mut rng), None);
    }

    #[test]
    fn least_loaded_takes_the_smallest_and_breaks_ties_in_turn() {
        let mut c = Chooser::new(Rule::LeastLoaded);
        let mut rng = Rng::new(1);
        let all: Vec<usize> = (0..4).collect();
        let loads = [3, 1, 2, 1];
        // Ties between 1 and 3 go round robin from the cursor.
        let picks: Vec<usize> = (0..4).map(|_| c.pick(&all, |i| loads[i], &mut rng).unwrap()).collect();
        assert_eq!(picks, [1, 3, 1, 3]);
        assert_eq!(c.pick(&[0, 2], |i| loads[i], &mut rng), Some(2));
    }

    #[test]
    fn two_choices_takes_the_less_loaded_of_two_distinct_ones() {
        // With two candidates, both are always drawn: the less loaded always wins.
        let mut c = Chooser::new(Rule::TwoChoices);
        let mut rng = Rng::new(2);
        assert!((0..100).all(|_| c.pick(&[4, 7], |i| if i == 7 { 0 } else { 5 }, &mut rng) == Some(7)));
        assert_eq!(c.pick(&[9], |_| 0, &mut rng), Some(9));
        // Equal loads: each of m is drawn first with probability 1/m, and the first wins a tie.
        let all: Vec<usize> = (0..5).collect();
        let mut hits = [0u32; 5];
        (0..50_000).for_each(|_| hits[c.pick(&all, |_| 0, &mut rng).unwrap()] += 1);
        // 10,000 each, s.d. 89: ±500 is 5.6 s.d.
        assert!(hits.iter().all(|&h| (9_500..10_500).contains(&h)), "{hits:?}");
        // The most loaded of m is picked only if drawn twice, which distinct draws never do.
        let loads = [0, 1, 2, 3, 9];
        assert!((0..1000).all(|_| c.pick(&all, |i| loads[i], &mut rng) != Some(4)));
    }

    #[test]
    fn loads_count_in_flight_and_the_busiest_share() {
        let mut l = Loads::new(4);
        [0, 1, 1, 1, 2].into_iter().for_each(|i| l.sent(i));
        l.ended(0);
        l.ended(0);
        assert_eq!((l.inflight(0), l.inflight(1)), (0, 3), "never below 0");
        assert_eq!(l.max_mean(4), (1, 3, 1.0));
        assert_eq!(l.max_mean(1), (0, 0, 0.0));
        assert_eq!(l.unrolled(), 5);
        assert_eq!(l.roll(), (1, 60), "3 of 5 sent");
        assert_eq!(l.unrolled(), 0);
        assert_eq!(l.roll(), (0, 0), "nothing since");
        l.reset(1);
        assert_eq!(l.max_mean(4), (2, 1, 0.25));
    }

    /// `n` balls into `n` bins by `rule`, the load being the bin's count: the counts.
    fn balls_into_bins(rule: Rule, n: usize, rng: &mut Rng) -> Vec<u64> {
        let (mut c, mut bins, all) = (Chooser::new(rule), vec![0u64; n], (0..n).collect::<Vec<_>>());
        for _ in 0..n {
            let i = c.pick(&all, |i| bins[i], rng).unwrap();
            bins[i] += 1;
        }
        bins
    }

    /// Mitzenmacher's fluid limit for n balls into n bins with d choices (his thesis, 1996, §4;
    /// the layered induction of Azar et al. in the limit): the share of bins holding ≥ i balls
    /// when a share t of the balls is in, s_i(t), obeys ds_i/dt = s_{i−1}^d − s_i^d, s_0 = 1.
    /// Integrated by Euler steps of 10⁻⁵ (the error is O(step)). For d = 1 it is the Poisson tail.
    fn fluid(d: i32, levels: usize) -> Vec<f64> {
        let mut s = vec![0.0; levels + 1];
        s[0] = 1.0;
        let dt = 1e-5;
        for _ in 0..100_000 {
            let pow: Vec<f64> = s.iter().map(|&x| libm::pow(x, d as f64)).collect();
            for i in (1..=levels).rev() {
                s[i] += dt * (pow[i - 1] - pow[i]);
            }
        }
        s
    }

    #[test]
    fn balls_into_bins_fill_as_the_fluid_limit_says_and_two_choices_cap_the_fullest() {
        // The theory test of the rules, on this chooser's own code. 10,000 balls into 10,000
        // bins, 20 trials a rule. The share of bins with ≥ i balls: each trial's has s.d. at
        // most √(¼ / 10⁴) = 0.005, the mean of 20 at most 0.0011; ±0.004 is 3.5 of them plus
        // the O(1/n) finite-size term and the Euler error (≈ 10⁻⁵). For d = 1 the fluid limit
        // must be the Poisson tail (1 − e⁻¹ = 0.632 have ≥ 1), for d = 2: 0.762, 0.230, 0.0089, 6·10⁻⁶.
        let (n, trials, mut rng) = (10_000, 20, Rng::new(7));
        let poisson_tail =
            |i: i32| 1.0 - (0..i).map(|k| libm::exp(-1.0) / (1..=k).map(f64::from).product::<f64>()).sum::<f64>();
        let (one, two) = (fluid(1, 8), fluid(2, 8));
        for (i, &s) in one.iter().enumerate().take(7).skip(1) {
            assert!((s - poisson_tail(i as i32)).abs() < 1e-4, "d = 1, level {i}: {s}");
        }
        let mut fullest = [Vec::new(), Vec::new()];
        for (k, (rule, theory)) in [(Rule::Random, &one), (Rule::TwoChoices, &two)].into_iter().enumerate() {
            let mut share = [0.0; 7];
            for _ in 0..trials {
                let bins = balls_into_bins(rule, n, &mut rng);
                for (i, s) in share.iter_mut().enumerate() {
                    *s += bins.iter().filter(|&&b| b >= i as u64).count() as f64 / (n * trials) as f64;
                }
                fullest[k].push(*bins.iter().max().unwrap());
            }
            for i in 1..=6 {
                assert!(
                    (share[i] - theory[i]).abs() < 0.004,
                    "{rule:?}: ≥ {i} in {:.4}, fluid {:.4}",
                    share[i],
                    theory[i]
                );
            }
        }
        // The fullest bin. Random: ln n / ln ln n = 4.15 is only the first-order term; with the
        // Poisson approximation P(max < k) ≈ P(Po(1) < k)^n the expected fullest of 10⁴ is 6.7
        // (P(max ≥ 7) = 0.56, P(max ≥ 8) = 0.10) — the 20 trials' mean within ±0.5 (its s.d. is
        // about 0.15; seed 7 gave 6.7). Two choices: ln ln n / ln 2 = 3.2, and n·s_4 = 10⁴ × 6·10⁻⁶
        // = 0.06 bins expected with 4: so 3, or now and then 4 (2 of 20) — never random's 6 or more.
        let expected_max: f64 = (1..20).map(|k| 1.0 - libm::pow(1.0 - poisson_tail(k), n as f64)).sum();
        let mean = fullest[0].iter().sum::<u64>() as f64 / trials as f64;
        assert!((mean - expected_max).abs() < 0.5, "random: fullest {mean} on average, theory {expected_max:.2}");
        let azar = libm::log(libm::log(n as f64)) / core::f64::consts::LN_2;
        assert!(fullest[1].iter().all(|&m| (3..=4).contains(&m)), "two choices: {:?} (Azar {azar:.1})", fullest[1]);
        assert!(fullest[0].iter().min() > fullest[1].iter().max(), "{fullest:?}");
    }

    /// The supermarket model: n FIFO queues with exponential service (rate 1), Poisson arrivals at
    /// λn, each joining the queue `rule` picks by length. Simulated as its uniformised chain
    /// (every step an arrival with probability λ/(1 + λ), else a potential departure from a
    /// queue drawn uniformly), whose steps take equal expected time, so step averages are time
    /// averages. Returns the time-average share of queues holding ≥ i jobs, i = 0..=levels.
    fn supermarket(rule: Rule, n: usize, lambda: f64, warm: u64, steps: u64, levels: usize, seed: u64) -> Vec<f64> {
        let (mut c, mut q, all) = (Chooser::new(rule), vec![0u64; n], (0..n).collect::<Vec<_>>());
        let (mut ge, mut sum) = (vec![0u64; 64], vec![0u64; levels + 1]);
        ge[0] = n as u64;
        let mut rng = Rng::new(seed);
        let p_arrival = lambda / (1.0 + lambda);
        for step in 0..warm + steps {
            if rng.unit_open() < p_arrival {
                let i = c.pick(&all, |i| q[i], &mut rng).unwrap();
                q[i] += 1;
                ge[(q[i] as usize).min(63)] += 1;
            } else {
                let i = rng.pick(n);
                if q[i] > 0 {
                    ge[(q[i] as usize).min(63)] -= 1;
                    q[i] -= 1;
                }
            }
            if step >= warm {
                sum.iter_mut().zip(&ge).for_each(|(s, g)| *s += g);
            }
        }
        sum.iter().map(|&s| s as f64 / (steps as f64 * n as f64)).collect()
    }

    #[test]
    fn in_the_supermarket_model_two_choices_make_the_queue_tail_fall_doubly_exponentially() {
        // Mitzenmacher ("The power of two choices in randomized load balancing", 1996/2001):
        // as n → ∞ the share of queues with ≥ i jobs is λ^(2^i − 1) with two choices, against
        // λ^i (M/M/1 queues) with one random choice. λ = 0.9: 0.9, 0.729, 0.478, 0.206, 0.038
        // against 0.9, 0.81, 0.729, 0.656, 0.590. Two choices: 500 queues, 4·10⁶ steps after
        // 10⁶ of warm-up (about 2,800 time units; the chain forgets in a few): over 5 seeds the
        // shares fell within 0.007 of the limit (finite n adds O(1/n)), so ±0.015. One choice
        // mixes slowly (an M/M/1 queue at 0.9 relaxes over ~400 time units), so 200 queues,
        // 2·10⁶ steps of warm-up (5,000 units from empty): within 0.011 over 5 seeds, so ±0.03.
        let lambda: f64 = 0.9;
        let two = supermarket(Rule::TwoChoices, 500, lambda, 1_000_000, 4_000_000, 6, 3);
        let one = supermarket(Rule::Random, 200, lambda, 2_000_000, 3_000_000, 6, 3);
        for i in 1..=5 {
            let (want2, want1) = (libm::pow(lambda, (1u64 << i) as f64 - 1.0), libm::pow(lambda, i as f64));
            assert!((two[i] - want2).abs() < 0.015, "two choices, ≥ {i}: {:.4} vs {want2:.4}", two[i]);
            assert!((one[i] - want1).abs() < 0.03, "random, ≥ {i}: {:.4} vs {want1:.4}", one[i]);
        }
        // What it means: a queue of 5 is 15 times rarer.
        assert!(one[5] > 10.0 * two[5], "{} vs {}", one[5], two[5]);
    }
}
