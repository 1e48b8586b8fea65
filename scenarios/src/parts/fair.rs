//! Weighted fair queuing by deficit round robin: a queue per flow (tenant, customer), served in proportion to weights.
//!
//! Deficit round robin (Shreedhar & Varghese, SIGCOMM 1995) visits the flows that have work in
//! turn; each visit adds the flow's quantum (`weight × quantum`) to its deficit, and the flow is
//! served while its deficit covers its next job's cost. So, while flows stay backlogged, each
//! gets service in proportion to its weight, off by less than one quantum plus one job's cost
//! at any moment (their lemma; tests). A flow with nothing queued leaves the rotation and keeps
//! no deficit: its share goes to those with work — the scheduler is work conserving (tests).
//!
//! How a scenario uses it: `push(flow, job, cost)` when a job arrives (refused, handed back,
//! when the flow's queue is at its bound), and `pop()` whenever a server is free.

use std::collections::VecDeque;

#[derive(Clone, Debug)]
struct Flow<J> {
    weight: u64,
    queue: VecDeque<(J, u64)>,
    /// Service owed to this flow in cost units; 0 whenever it has nothing queued.
    deficit: u64,
}

/// Flows `0..n`, each with a weight and its own FIFO queue, optionally bounded.
#[derive(Clone, Debug)]
pub struct Fair<J> {
    quantum: u64,
    flows: Vec<Flow<J>>,
    /// Flows with work, in visiting order; the front is being served.
    active: VecDeque<usize>,
    /// Most jobs one flow may have queued; `None`: unbounded.
    capacity: Option<usize>,
    len: usize,
}

impl<J> Fair<J> {
    /// `weights.len()` flows; a visit grants a flow `weight × quantum` cost units (use the
    /// largest job's cost as `quantum` to serve a flow in one visit per round: O(1) per job).
    pub fn new(weights: &[u64], quantum: u64) -> Fair<J> {
        assert!(quantum > 0, "a visit grants some service");
        let flows = weights.iter().map(|&w| Flow { weight: w.max(1), queue: VecDeque::new(), deficit: 0 }).collect();
        Fair { quantum, flows, active: VecDeque::new(), capacity: None, len: 0 }
    }

    /// Bounds each flow's queue at `capacity` jobs (`None`: unbounded); lowering it evicts no one.
    pub fn bounded(mut self, capacity: Option<usize>) -> Fair<J> {
        self.capacity = capacity;
        self
    }

    pub fn set_capacity(&mut self, capacity: Option<usize>) {
        self.capacity = capacity;
    }

    /// A new weight (at least 1) for `flow`, from its next visit on.
    pub fn set_weight(&mut self, flow: usize, weight: u64) {
        self.flows[flow].weight = weight.max(1);
    }

    pub fn weight(&self, flow: usize) -> u64 {
        self.flows[flow].weight
    }

    /// Queues `job` of `cost` units for `flow`, or hands it back when that flow's queue is full.
    pub fn push(&mut self, flow: usize, job: J, cost: u64) -> Result<(), J> {
        let f = &mut self.flows[flow];
        if self.capacity.is_some_and(|k| f.queue.len() >= k) {
            return Err(job);
        }
        if f.queue.is_empty() {
            // It joins the rotation at the back, owed one quantum.
            f.deficit = f.weight * self.quantum;
            self.active.push_back(flow);
        }
        f.queue.push_back((job, cost));
        self.len += 1;
        Ok(())
    }

    /// The next job to serve and its flow: the front flow's oldest, if its deficit covers it;
    /// otherwise that flow is granted its quantum and goes to the back. `None` when all are empty.
    pub fn pop(&mut self) -> Option<(usize, J)> {
        loop {
            let flow = *self.active.front()?;
            let f = &mut self.flows[flow];
            let cost = f.queue.front().expect("an active flow has work").1;
            if f.deficit < cost {
                f.deficit += f.weight * self.quantum;
                self.active.rotate_left(1);
                continue;
            }
            f.deficit -= cost;
            let (job, _) = f.queue.pop_front().expect("checked");
            if f.queue.is_empty() {
                f.deficit = 0;
                self.active.pop_front();
            }
            self.len -= 1;
            return Some((flow, job));
        }
    }

    /// Every queued job, in the order `pop` would serve them: for a caller that stops queuing fairly.
    pub fn drain(&mut self) -> Vec<(usize, J)> {
        std::iter::from_fn(|| self.pop()).collect()
    }

    /// Jobs queued, all flows.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Jobs queued for `flow`.
    pub fn len_of(&self, flow: usize) -> usize {
        self.flows[flow].queue.len()
    }

    /// Each flow's fair share of `capacity` if all were backlogged: `capacity × weight / Σ weights`.
    pub fn share(&self, flow: usize, capacity: f64) -> f64 {
        let total: u64 = self.flows.iter().map(|f| f.weight).sum();
        capacity * self.flows[flow].weight as f64 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pops `n` jobs, refilling every flow in `backlogged` so it never runs dry; returns jobs served per flow.
    fn serve(fair: &mut Fair<u64>, n: usize, backlogged: &[usize], cost: impl Fn(usize) -> u64) -> Vec<Vec<u64>> {
        let mut served = vec![vec![0u64; fair.flows.len()]; n + 1];
        for i in 0..n {
            for &f in backlogged {
                while fair.len_of(f) < 3 {
                    fair.push(f, 0, cost(f)).expect("unbounded");
                }
            }
            let (flow, _) = fair.pop().expect("backlogged flows have work");
            served[i + 1] = served[i].clone();
            served[i + 1][flow] += cost(flow);
        }
        served
    }

    #[test]
    fn backlogged_flows_get_service_in_proportion_to_their_weights() {
        // Shreedhar & Varghese's fairness lemma: while flows are backlogged, the service each has
        // had differs from its weighted share of the total by less than one quantum plus one
        // job's cost (Qᵢ + max cost), at every moment, not only on average. Weights 1, 2, 3, 4
        // with costs 1–3: checked after every one of 20,000 jobs, and the long-run shares within
        // 0.1% of w/Σw (the error is bounded, so it shrinks as 1/n).
        let weights = [1, 2, 3, 4];
        let cost = |f: usize| 1 + f as u64 % 3;
        let mut fair = Fair::new(&weights, 3);
        let served = serve(&mut fair, 20_000, &[0, 1, 2, 3], cost);
        for row in &served {
            let total: u64 = row.iter().sum();
            for (f, &w) in weights.iter().enumerate() {
                let share = total as f64 * w as f64 / 10.0;
                let slack = (w * 3 + 3) as f64;
                assert!((row[f] as f64 - share).abs() <= slack, "flow {f}: {} vs {share:.1} after {total}", row[f]);
            }
        }
        let last = served.last().expect("rows");
        let total: u64 = last.iter().sum();
        for (f, &w) in weights.iter().enumerate() {
            let got = last[f] as f64 / total as f64;
            assert!((got - w as f64 / 10.0).abs() < 0.001, "flow {f}: {got:.4}");
            assert!((fair.share(f, 1.0) - w as f64 / 10.0).abs() < 1e-12);
        }
    }

    #[test]
    fn an_idle_flows_share_goes_to_the_others_in_proportion_work_conserving() {
        // Flow 3 (weight 4) sends nothing: flows 0–2 split everything 1 : 2 : 3, and no pop
        // returns None while anything is queued. Then flow 3 wakes and gets its 40% at once.
        let mut fair = Fair::new(&[1, 2, 3, 4], 1);
        let served = serve(&mut fair, 6_000, &[0, 1, 2], |_| 1);
        let last = served.last().expect("rows");
        assert_eq!((last[0], last[1], last[2], last[3]), (1000, 2000, 3000, 0));
        let before = last.clone();
        let served = serve(&mut fair, 10_000, &[0, 1, 2, 3], |_| 1);
        let gained = served.last().expect("rows")[3] - before[3];
        assert!((gained as i64 - 4000).abs() <= 4, "{gained}");
    }

    #[test]
    fn a_full_flow_refuses_without_touching_the_others_and_drain_keeps_the_order() {
        let mut fair = Fair::new(&[1, 1], 1).bounded(Some(2));
        assert!(fair.push(0, 10, 1).is_ok() && fair.push(0, 11, 1).is_ok());
        assert_eq!(fair.push(0, 12, 1), Err(12));
        assert!(fair.push(1, 20, 1).is_ok());
        assert_eq!((fair.len(), fair.len_of(0), fair.len_of(1)), (3, 2, 1));
        assert_eq!(fair.drain(), vec![(0, 10), (1, 20), (0, 11)]);
        assert!(fair.is_empty() && fair.pop().is_none());
    }
}
