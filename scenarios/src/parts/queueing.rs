//! Queueing theory the scenarios are checked against: M/M/c (Erlang C), M/M/c/K, and priority classes (Cobham).
//!
//! `lambda` is the arrival rate, `mu` one server's service rate (same time unit),
//! `c` the number of servers, `k` the most jobs the system holds (waiting + in service).

/// Probability that an arriving job has to wait in an M/M/c queue (Erlang C).
/// `None` when the queue is unstable (λ ≥ cμ).
pub fn erlang_c(lambda: f64, mu: f64, c: u32) -> Option<f64> {
    let a = lambda / mu;
    let c_f = c as f64;
    if c == 0 || a >= c_f {
        return None;
    }
    // Sum a^k/k! for k < c, building terms by recurrence so nothing overflows.
    let mut term = 1.0;
    let mut sum = 0.0;
    for k in 0..c {
        if k > 0 {
            term *= a / k as f64;
        }
        sum += term;
    }
    let last = term * a / c_f * (c_f / (c_f - a)); // a^c/c! · c/(c−a)
    Some(last / (sum + last))
}

/// Mean time waiting in the queue (before service) of an M/M/c queue.
pub fn mmc_mean_wait(lambda: f64, mu: f64, c: u32) -> Option<f64> {
    erlang_c(lambda, mu, c).map(|p| p / (c as f64 * mu - lambda))
}

/// Steady state of an M/M/c/K queue: arrivals finding K jobs are turned away.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mmck {
    /// Probability an arrival is rejected (finds the system full).
    pub block: f64,
    /// Mean time an admitted job waits before service.
    pub mean_wait: f64,
    /// Mean number of jobs waiting (not in service).
    pub mean_queue: f64,
}

pub fn mmck(lambda: f64, mu: f64, c: u32, k: u32) -> Mmck {
    assert!(c >= 1 && k >= c, "M/M/c/K needs 1 <= c <= K");
    let a = lambda / mu;
    let c_f = c as f64;
    // Unnormalised p_n, by recurrence: p_n = p_{n-1} · a / min(n, c).
    let mut p = Vec::with_capacity(k as usize + 1);
    p.push(1.0f64);
    for n in 1..=k {
        let prev = p[n as usize - 1];
        p.push(prev * a / (n.min(c) as f64));
    }
    let total: f64 = p.iter().sum();
    let block = p[k as usize] / total;
    let mean_queue: f64 = p.iter().enumerate().skip(c as usize + 1).map(|(n, pn)| (n as f64 - c_f) * pn / total).sum();
    let admitted = lambda * (1.0 - block);
    let mean_wait = if admitted > 0.0 { mean_queue / admitted } else { 0.0 };
    Mmck { block, mean_wait, mean_queue }
}

/// Mean wait (before service) of each class in an M/G/1 queue served by non-preemptive
/// priority, class 0 first — Cobham (1954): `W_k = W₀ / ((1 − σ_{k−1})(1 − σ_k))`, where
/// `W₀ = Σ λ_i E[S_i²] / 2` is the mean residual work an arrival finds in service and
/// `σ_k = Σ_{i≤k} λ_i E[S_i]` the load of classes 0..=k. `classes[k]` is (λ, E[S], E[S²]) of
/// class k; `None` for a class whose `σ_k ≥ 1` (its queue grows without bound).
pub fn mg1_priority_waits(classes: &[(f64, f64, f64)]) -> Vec<Option<f64>> {
    let w0: f64 = classes.iter().map(|&(l, _, s2)| l * s2 / 2.0).sum();
    priority_waits(w0, classes.iter().map(|&(l, s, _)| l * s))
}

/// The same for M/M/c when every class is served at one rate μ (Gross & Harris, *Fundamentals
/// of Queueing Theory*, §3.4.2): `W₀ = C(c, a) / (cμ)` — the chance all servers are busy (Erlang
/// C; 1 when the total load is c or more) times the mean time to the next completion then —
/// and `σ_k = Σ_{i≤k} λ_i / (cμ)`. With c = 1 it is Cobham's M/M/1.
pub fn mmc_priority_waits(lambdas: &[f64], mu: f64, c: u32) -> Vec<Option<f64>> {
    let total: f64 = lambdas.iter().sum();
    let busy = erlang_c(total, mu, c).unwrap_or(1.0);
    let cmu = c as f64 * mu;
    priority_waits(busy / cmu, lambdas.iter().map(|l| l / cmu))
}

/// `W₀ / ((1 − σ_{k−1})(1 − σ_k))` for each class, given W₀ and each class's load.
fn priority_waits(w0: f64, loads: impl Iterator<Item = f64>) -> Vec<Option<f64>> {
    let mut above = 0.0;
    loads
        .map(|rho| {
            let (before, through) = (above, above + rho);
            above = through;
            (through < 1.0).then(|| w0 / ((1.0 - before) * (1.0 - through)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-12)
    }

    #[test]
    fn erlang_c_textbook_values() {
        // M/M/1: P(wait) = ρ, Wq = ρ/(μ−λ).
        assert!(close(erlang_c(0.8, 1.0, 1).unwrap(), 0.8, 1e-12));
        assert!(close(mmc_mean_wait(0.8, 1.0, 1).unwrap(), 4.0, 1e-12));
        // c = 2, a = 1: C = 1/3 (a^2/2 · 2/(2−1) = 1; 1 + 1 + 1 = 3).
        assert!(close(erlang_c(1.0, 1.0, 2).unwrap(), 1.0 / 3.0, 1e-12));
        // Classic call-centre example: a = 10 Erlangs, c = 12 agents → C ≈ 0.4493.
        assert!(close(erlang_c(10.0, 1.0, 12).unwrap(), 0.4493, 1e-3));
        assert_eq!(erlang_c(4.0, 1.0, 4), None);
    }

    #[test]
    fn mmck_limits() {
        // M/M/1/1 (Erlang loss with one server): block = a/(1+a).
        let m = mmck(2.0, 1.0, 1, 1);
        assert!(close(m.block, 2.0 / 3.0, 1e-12));
        assert_eq!(m.mean_queue, 0.0);
        // M/M/1/K, ρ = 1: uniform over 0..=K → block = 1/(K+1).
        assert!(close(mmck(1.0, 1.0, 1, 9).block, 0.1, 1e-12));
        // Large K approaches M/M/c.
        let big = mmck(3.0, 1.0, 4, 400);
        assert!(close(big.mean_wait, mmc_mean_wait(3.0, 1.0, 4).unwrap(), 1e-9));
    }

    #[test]
    fn priority_waits_meet_the_fifo_queue_they_split() {
        // One class is FIFO: Cobham's W₀/(1 − ρ) is Pollaczek–Khinchine's M/G/1 wait, and for
        // exponential service (E[S²] = 2/μ²) the M/M/1 ρ/(μ − λ).
        let one = mg1_priority_waits(&[(0.8, 1.0, 2.0)]);
        assert!(close(one[0].unwrap(), 4.0, 1e-12));
        // Two classes, M/M/1 with μ = 1, λ = 0.3 + 0.5: W₀ = 0.8, W_0 = 0.8/0.7, W_1 = 0.8/(0.7 × 0.2).
        let two = mmc_priority_waits(&[0.3, 0.5], 1.0, 1);
        assert!(close(two[0].unwrap(), 0.8 / 0.7, 1e-12) && close(two[1].unwrap(), 0.8 / 0.14, 1e-12));
        assert_eq!(two, mg1_priority_waits(&[(0.3, 1.0, 2.0), (0.5, 1.0, 2.0)]));
        // Kleinrock's conservation law: with one service time for all, the load-weighted mean
        // of the classes' waits is the FIFO wait (here Erlang C's M/M/4), however they are split.
        let (lambdas, mu, c) = ([0.9, 1.2, 0.7], 1.0, 4);
        let split = mmc_priority_waits(&lambdas, mu, c);
        let mean: f64 = lambdas.iter().zip(&split).map(|(l, w)| l * w.unwrap()).sum::<f64>() / 2.8;
        assert!(close(mean, mmc_mean_wait(2.8, mu, c).unwrap(), 1e-12));
        // Overloaded in total, the top class still has a finite wait (all servers always busy:
        // W₀ = 1/(cμ)); the class that tips the load past c has none.
        assert_eq!(mmc_priority_waits(&[3.0, 2.0], 1.0, 4), vec![Some(0.25 / 0.25), None]);
    }
}
