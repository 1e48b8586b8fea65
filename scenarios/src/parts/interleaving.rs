//! The theory of threads over shared memory (`threads`) under the uniform stochastic scheduler: a CAS-loop counter's rates as a Markov chain solved exactly, the chance of no lost update, the mutex's ceiling.

/// Long-run rates of a CAS-loop counter under the uniform stochastic scheduler, per second.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CasRates {
    pub successes_per_s: f64,
    pub retries_per_s: f64,
}

/// `n` threads each looping: local work (exponential, mean `work_us`; none if 0), a read, then
/// CAS until one succeeds — a failed CAS answers the value it saw, so the retry is the next CAS
/// (`compare_exchange` in a loop). Every access is exponential with mean `step_us`, and there is
/// no preemption. A continuous-time Markov chain on how many threads work, read, hold a fresh
/// value or hold a stale one (a success makes every other fresh value stale), solved exactly.
pub fn cas_rates(n: u32, work_us: f64, step_us: f64) -> CasRates {
    if n == 0 {
        return CasRates { successes_per_s: 0.0, retries_per_s: 0.0 };
    }
    // States (w, r, f, s), w + r + f + s = n; with no work, w stays 0.
    let mut states = Vec::new();
    for w in 0..=n {
        for r in 0..=n - w {
            for f in 0..=n - w - r {
                if work_us > 0.0 || w == 0 {
                    states.push([w, r, f, n - w - r - f]);
                }
            }
        }
    }
    let index = |s: [u32; 4]| states.iter().position(|&x| x == s).expect("a state of the chain");
    let (k, mu) = (states.len(), 1.0 / step_us);
    // The balance equations πQ = 0 with Σπ = 1, solved by Gaussian elimination (rows: states).
    let mut a = vec![vec![0.0; k + 1]; k];
    let flow = |from: usize, to: [u32; 4], rate: f64, a: &mut [Vec<f64>]| {
        let to = index(to);
        a[to][from] += rate;
        a[from][from] -= rate;
    };
    for (i, &[w, r, f, s]) in states.iter().enumerate() {
        if w > 0 {
            flow(i, [w - 1, r + 1, f, s], w as f64 / work_us, &mut a);
        }
        if r > 0 {
            flow(i, [w, r - 1, f + 1, s], r as f64 * mu, &mut a);
        }
        if f > 0 {
            let done = if work_us > 0.0 { [w + 1, r, 0, s + f - 1] } else { [w, r + 1, 0, s + f - 1] };
            flow(i, done, f as f64 * mu, &mut a);
        }
        if s > 0 {
            flow(i, [w, r, f + 1, s - 1], s as f64 * mu, &mut a);
        }
    }
    a[k - 1] = vec![1.0; k + 1];
    let pi = solve(a);
    let rate = |pick: fn(&[u32; 4]) -> u32| states.iter().zip(&pi).map(|(s, p)| p * pick(s) as f64 * mu).sum::<f64>();
    CasRates { successes_per_s: rate(|s| s[2]) * 1e6, retries_per_s: rate(|s| s[3]) * 1e6 }
}

impl From<CasRates> for (f64, f64) {
    fn from(c: CasRates) -> (f64, f64) {
        (c.successes_per_s, c.retries_per_s)
    }
}

/// The same for `n` threads on `shards` counters, thread i on shard i mod shards: the shards
/// share nothing, so their rates add up.
pub fn sharded_cas_rates(n: u32, shards: u32, work_us: f64, step_us: f64) -> CasRates {
    let group = |i| cas_rates((0..n).filter(|t| t % shards == i).count() as u32, work_us, step_us);
    (0..shards).map(group).fold(CasRates { successes_per_s: 0.0, retries_per_s: 0.0 }, |a, g| CasRates {
        successes_per_s: a.successes_per_s + g.successes_per_s,
        retries_per_s: a.retries_per_s + g.retries_per_s,
    })
}

/// Solves the augmented system `a` (k rows of k coefficients and a right-hand side).
fn solve(mut a: Vec<Vec<f64>>) -> Vec<f64> {
    let k = a.len();
    for col in 0..k {
        let pivot = (col..k).max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs())).unwrap_or(col);
        a.swap(col, pivot);
        let p = a[col].clone();
        for (row, r) in a.iter_mut().enumerate() {
            if row != col && r[col] != 0.0 {
                let factor = r[col] / p[col];
                r[col..].iter_mut().zip(&p[col..]).for_each(|(x, y)| *x -= factor * y);
            }
        }
    }
    a.iter().enumerate().map(|(i, r)| r[k] / r[i]).collect()
}

/// The chance that `n` threads, each doing one unguarded read-modify-write (`x = x + 1` as a
/// read and a write) from a common start, lose no update under the uniform stochastic
/// scheduler: only the serial orders lose nothing, and after each read the reader's write must
/// be the very next step among the m threads still running (1/m), so it is 1/n!.
pub fn no_lost_update_chance(n: u32) -> f64 {
    (2..=n).map(|m| 1.0 / m as f64).product()
}

/// The most increments a second one mutex lets through when it is never idle: each holder is
/// handed the lock while parked, wakes, and makes `section_steps` accesses before the next one
/// is handed it — the serial part Amdahl's law is about, whatever the thread count.
pub fn lock_ceiling_per_s(section_steps: u32, step_us: f64, wake_us: f64) -> f64 {
    1e6 / (wake_us + section_steps as f64 * step_us)
}
