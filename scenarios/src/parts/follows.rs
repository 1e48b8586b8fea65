//! A social graph with heavy tails: how many accounts each user follows (a capped Pareto) and
//! whom (by Zipf popularity), so a few users gather most followers — celebrities.

use crate::parts::arrivals::Zipf;
use faultline_core::Rng;
use std::rc::Rc;

/// A Pareto distribution (type I): `P(X > x) = (min/x)^α` for `x ≥ min`, capped at `cap`
/// (`min(X, cap)`). Follow counts on Twitter are power-law-tailed with α ≈ 1–1.5 (Kwak et al.,
/// "What is Twitter, a social network or a news media?", WWW 2010); the cap stands for the
/// service's follow limit.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Pareto {
    pub min: f64,
    pub alpha: f64,
    pub cap: f64,
}

impl Pareto {
    /// One draw by inversion, `min · U^(−1/α)` (U uniform on (0, 1)), capped.
    pub fn draw(&self, rng: &mut Rng) -> f64 {
        (self.min * libm::pow(rng.unit_open(), -1.0 / self.alpha)).min(self.cap)
    }

    /// `P(min(X, cap) > x)`.
    pub fn tail(&self, x: f64) -> f64 {
        match x {
            x if x < self.min => 1.0,
            x if x >= self.cap => 0.0,
            x => libm::pow(self.min / x, self.alpha),
        }
    }

    /// `E[min(X, cap)] = ∫₀^cap P(X > x) dx = min + min^α·(cap^(1−α) − min^(1−α))/(1 − α)`
    /// (`min·(1 + ln(cap/min))` at α = 1); uncapped it is `α·min/(α − 1)` for α > 1.
    pub fn mean(&self) -> f64 {
        let (m, a, c) = (self.min, self.alpha, self.cap.max(self.min));
        if (a - 1.0).abs() < 1e-9 {
            return m * (1.0 + libm::log(c / m));
        }
        m + libm::pow(m, a) * (libm::pow(c, 1.0 - a) - libm::pow(m, 1.0 - a)) / (1.0 - a)
    }
}

/// Who follows whom among `0..n` users: each follows `round(Pareto)` distinct others, picked by
/// Zipf popularity (user 0 the most popular). The lists are shared between copies (a run's
/// checkpoints cost a pointer); followers are the same edges turned round.
#[derive(Clone, Debug)]
pub struct Follows {
    followees: Rc<[Vec<u32>]>,
    followers: Rc<[Vec<u32>]>,
}

impl Follows {
    pub fn build(n: usize, counts: Pareto, popularity: &Zipf, rng: &mut Rng) -> Follows {
        let n = n.max(2);
        let mut followees = Vec::with_capacity(n);
        let mut followers = vec![Vec::new(); n];
        let mut seen = vec![u32::MAX; n];
        for user in 0..n {
            let want = (counts.draw(rng).round() as usize).min(n - 1);
            let mut list = Vec::with_capacity(want);
            // Rejection keeps the picks distinct; the cap keeps a user well below all of n.
            while list.len() < want {
                let v = popularity.pick(rng);
                if v != user && seen[v] != user as u32 {
                    seen[v] = user as u32;
                    followers[v].push(user as u32);
                    list.push(v as u32);
                }
            }
            followees.push(list);
        }
        Follows { followees: followees.into(), followers: followers.into() }
    }

    pub fn users(&self) -> usize {
        self.followers.len()
    }

    pub fn followees(&self, user: usize) -> &[u32] {
        &self.followees[user]
    }

    pub fn followers(&self, user: usize) -> u64 {
        self.followers[user].len() as u64
    }

    /// The users a given one follows that have more than `threshold` followers.
    pub fn celebrities_followed(&self, user: usize, threshold: u64) -> usize {
        self.followees[user].iter().filter(|&&v| self.followers(v as usize) > threshold).count()
    }

    /// Followers of everyone who posts uniformly at random: the mean in-degree, equal to the
    /// mean out-degree (every edge counted once each way).
    pub fn mean_followers(&self) -> f64 {
        self.followers.iter().map(|f| f.len() as f64).sum::<f64>() / self.users() as f64
    }

    /// Those who follow `user`, in user order (the order they were built in).
    pub fn followers_of(&self, user: usize) -> &[u32] {
        &self.followers[user]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_draws_follow_its_mean_and_tail() {
        // 200,000 draws: the capped mean's standard error is σ/√n with σ ≲ 100 here (the cap
        // bounds the variance), ≈ 0.2, so within 2% of ~36.5; the tail at 50 and 500 within
        // 5 standard errors of a binomial share.
        let p = Pareto { min: 10.0, alpha: 1.3, cap: 2000.0 };
        let mut rng = Rng::new(7);
        let n = 200_000;
        let draws: Vec<f64> = (0..n).map(|_| p.draw(&mut rng)).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        assert!((mean - p.mean()).abs() < 0.02 * p.mean(), "{mean} vs {}", p.mean());
        for x in [50.0, 500.0] {
            let share = draws.iter().filter(|&&d| d > x).count() as f64 / n as f64;
            let want = p.tail(x);
            let se = (want * (1.0 - want) / n as f64).sqrt();
            assert!((share - want).abs() < 5.0 * se, "P(X > {x}) = {share}, want {want}");
        }
        assert!(draws.iter().all(|&d| (10.0..=2000.0).contains(&d)));
        // Uncapped (a huge cap) the mean is α·min/(α − 1); at α = 1 the log form.
        let far = Pareto { cap: 1e15, ..p };
        assert!((far.mean() - 1.3 * 10.0 / 0.3).abs() < 0.01);
        let one = Pareto { alpha: 1.0, ..p };
        assert!((one.mean() - 10.0 * (1.0 + libm::log(200.0))).abs() < 1e-9);
    }

    #[test]
    fn the_graph_has_distinct_follows_and_a_celebrity_at_the_head() {
        let counts = Pareto { min: 10.0, alpha: 1.3, cap: 500.0 };
        let g = Follows::build(3000, counts, &Zipf::new(3000, 1.0), &mut Rng::new(3));
        let edges: usize = (0..3000).map(|u| g.followees(u).len()).sum();
        assert!((g.mean_followers() - edges as f64 / 3000.0).abs() < 1e-9);
        // The mean out-degree is the rounded Pareto's (rounding shifts it by well under 1).
        assert!((g.mean_followers() - counts.mean()).abs() < 0.06 * counts.mean(), "{}", g.mean_followers());
        for u in [0, 5, 2999] {
            let mut l = g.followees(u).to_vec();
            l.sort_unstable();
            l.dedup();
            assert_eq!(l.len(), g.followees(u).len());
            assert!(!l.contains(&(u as u32)));
            assert_eq!(g.followers_of(u).len() as u64, g.followers(u));
        }
        // User 0, picked most, is followed by most users; the median user by 50 times fewer.
        let mut f: Vec<u64> = (0..3000).map(|u| g.followers(u)).collect();
        assert!(f[0] > 2000, "{}", f[0]);
        f.sort_unstable();
        assert!(f[1500] * 50 < f[2999], "median {}, most {}", f[1500], f[2999]);
        assert!(g.celebrities_followed(1, 1000) <= g.followees(1).len());
    }
}
