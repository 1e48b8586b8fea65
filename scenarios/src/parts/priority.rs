//! Jobs in priority classes, a FIFO queue each, served in arrival order, by strict priority or by weight (deficit round robin), switched live; delayed jobs; consumers pushed up to a prefetch count.
//!
//! Class 0 is the highest. A free server asks `pop` for its next job, and the discipline in
//! force answers: [`Discipline::Fifo`] takes the oldest job of any class (each class's queue is
//! in arrival order, so the oldest of their fronts — one FIFO queue, priorities ignored);
//! [`Discipline::Strict`] the oldest of the highest class with work, and a job in service is
//! never interrupted (non-preemptive priority, whose mean waits are Cobham's: see
//! `queueing::mg1_priority_waits`, tested here); [`Discipline::Weighted`] serves the classes in
//! proportion to their weights while they have work, by deficit round robin (the kit's `fair`,
//! which also holds the queues). The three share the queues, so a switch changes only who is
//! served next. A job handed back (its consumer died holding it) goes to the front of its class.
//!
//! A delayed job (scheduled for later) is held apart until it is due, then joins its class's
//! queue behind the jobs already there: its wait counts from then. Each waiting job knows when
//! it joined and how many of its class were waiting ahead of it, for checks that judge a wait
//! against the line it found.
//!
//! [`Channels`] is a broker's side of consumers it pushes jobs to, as AMQP brokers do (RabbitMQ's
//! `basic.qos`): each connected consumer may hold up to a prefetch count of jobs unacknowledged,
//! and gets the next job the queue picks, in turn with the others that have room. A consumer
//! runs what it holds in the order it got it, so the queue's priorities reach only jobs not yet
//! pushed: with a prefetch above 1 a high job can wait behind low ones already in a consumer's
//! buffer (priority inversion). When a consumer's connection closes, what it held goes back to
//! the front of its queues, marked handed back.

use crate::parts::fair::Fair;
use faultline_core::{Ctx, Node, Time, TimerId};
use std::collections::{BTreeMap, VecDeque};

/// Which waiting job a free server takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Discipline {
    /// The oldest, whatever its class: one FIFO queue.
    Fifo,
    /// The oldest of the highest class with work.
    Strict,
    /// Classes in proportion to their weights, by deficit round robin.
    Weighted,
}

/// A job in its class's queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Waiting<J> {
    pub job: J,
    pub class: usize,
    /// When it joined the queue (a delayed job: when it fell due).
    pub since: Time,
    /// Jobs of its class waiting ahead of it when it joined.
    pub ahead: usize,
    /// It was handed to a consumer that died holding it, and came back.
    pub handed_back: bool,
    /// Arrival order over all classes (ties in `since` keep it).
    seq: u64,
}

#[derive(Clone, Debug)]
pub struct Classes<J> {
    queues: Fair<Waiting<J>>,
    /// Delayed jobs by due time (then the order they were scheduled in), with their class.
    delayed: BTreeMap<(Time, u64), (usize, J)>,
    discipline: Discipline,
    seq: u64,
}

impl<J> Classes<J> {
    /// `weights.len()` classes (0 the highest), served by `discipline`; the weights matter
    /// under `Weighted`, where every job costs the same (shares are counted in jobs).
    pub fn new(weights: &[u64], discipline: Discipline) -> Classes<J> {
        Classes { queues: Fair::new(weights, 1), delayed: BTreeMap::new(), discipline, seq: 0 }
    }

    pub fn discipline(&self) -> Discipline {
        self.discipline
    }

    /// From the next `pop` on; the queues stay as they are.
    pub fn set_discipline(&mut self, discipline: Discipline) {
        self.discipline = discipline;
    }

    pub fn set_weight(&mut self, class: usize, weight: u64) {
        self.queues.set_weight(class, weight);
    }

    /// `class`'s share of the servers when every class has work: its weight over their sum.
    pub fn share(&self, class: usize) -> f64 {
        self.queues.share(class, 1.0)
    }

    /// `job` joins `class`'s queue now.
    pub fn push(&mut self, class: usize, job: J, now: Time) {
        let (ahead, seq) = (self.queues.len_of(class), self.seq);
        self.seq += 1;
        let pushed =
            self.queues.push(class, Waiting { job, class, since: now, ahead, handed_back: false, seq }, 1).is_ok();
        debug_assert!(pushed, "the queues are unbounded");
    }

    /// `job` joins `class`'s queue when `due` comes (at the first `wake` from then on).
    pub fn schedule(&mut self, class: usize, job: J, due: Time) {
        self.delayed.insert((due, self.seq), (class, job));
        self.seq += 1;
    }

    /// Delayed jobs due by `now` join their queues, in the order they fell due; how many did.
    pub fn wake(&mut self, now: Time) -> usize {
        let mut joined = 0;
        while let Some(entry) = self.delayed.first_entry().filter(|e| e.key().0 <= now) {
            let ((due, _), (class, job)) = entry.remove_entry();
            self.push(class, job, due);
            joined += 1;
        }
        joined
    }

    /// When the next delayed job falls due.
    pub fn next_due(&self) -> Option<Time> {
        self.delayed.keys().next().map(|&(due, _)| due)
    }

    /// The next job to serve by the discipline in force, and its class.
    pub fn pop(&mut self) -> Option<(usize, Waiting<J>)> {
        let classes = 0..self.classes();
        let class = match self.discipline {
            Discipline::Weighted => return self.queues.pop(),
            Discipline::Strict => classes.into_iter().find(|&k| self.queues.front(k).is_some())?,
            Discipline::Fifo => classes.filter_map(|k| Some((self.queues.front(k)?.seq, k))).min()?.1,
        };
        self.queues.pop_from(class).map(|w| (class, w))
    }

    /// A job handed back goes to the front of its class's queue: hand several back newest first.
    pub fn put_back(&mut self, mut waiting: Waiting<J>) {
        waiting.handed_back = true;
        self.queues.push_front(waiting.class, waiting, 1);
    }

    /// `class`'s oldest waiting job (delayed ones are not waiting yet).
    pub fn front(&self, class: usize) -> Option<&Waiting<J>> {
        self.queues.front(class)
    }

    pub fn classes(&self) -> usize {
        self.queues.flows()
    }

    /// Jobs waiting in `class`'s queue.
    pub fn len_of(&self, class: usize) -> usize {
        self.queues.len_of(class)
    }

    /// Jobs waiting, all classes.
    pub fn len(&self) -> usize {
        self.queues.len()
    }

    pub fn is_empty(&self) -> bool {
        self.queues.is_empty()
    }

    /// Delayed jobs not yet due.
    pub fn delayed(&self) -> usize {
        self.delayed.len()
    }
}

/// Consumers a broker pushes jobs to (see the module's note): per consumer, whether it is
/// connected and the jobs it holds unacknowledged, oldest first; whose turn is next; and the
/// timer kept for the queue's next delayed job.
#[derive(Clone, Debug)]
pub struct Channels<J> {
    conns: Vec<(bool, VecDeque<Waiting<J>>)>,
    turn: usize,
    alarm: Option<(Time, TimerId)>,
}

impl<J: Clone> Channels<J> {
    /// `n` consumers, all connected, holding nothing.
    pub fn new(n: usize) -> Channels<J> {
        Channels { conns: vec![(true, VecDeque::new()); n], turn: 0, alarm: None }
    }

    /// The broker restarted: its timer is gone and every consumer reconnects (what their old
    /// connections held is back in the queues: `close` each first, as the crash closes them).
    pub fn restarted(&mut self) {
        self.alarm = None;
        self.conns.iter_mut().for_each(|c| c.0 = true);
    }

    /// Consumer `i`'s connection closed (`reopen`: and a new one opened): what it held goes back
    /// to the front of `q`'s queues, in its order. Returns how many jobs.
    pub fn close(&mut self, i: usize, reopen: bool, q: &mut Classes<J>) -> usize {
        let held = std::mem::take(&mut self.conns[i].1);
        self.conns[i].0 = reopen;
        let n = held.len();
        held.into_iter().rev().for_each(|w| q.put_back(w));
        n
    }

    /// Every connection closes (the broker died): everything held goes back.
    pub fn close_all(&mut self, q: &mut Classes<J>) {
        for i in 0..self.conns.len() {
            self.close(i, true, q);
        }
    }

    /// Consumer `i` acknowledged the job `is` picks: `false` if it holds none (handed back since).
    pub fn ack(&mut self, i: usize, is: impl Fn(&J) -> bool) -> bool {
        let held = &mut self.conns[i].1;
        held.iter().position(|w| is(&w.job)).map(|k| held.remove(k)).is_some()
    }

    pub fn connected(&self) -> usize {
        self.conns.iter().filter(|c| c.0).count()
    }

    /// Jobs consumer `i` holds unacknowledged.
    pub fn held(&self, i: usize) -> usize {
        self.conns[i].1.len()
    }

    /// The next job `q` picks and the consumer whose turn it is among those connected with
    /// fewer than `prefetch` jobs; `None` when the queue is empty or nobody has room.
    pub fn next(&mut self, q: &mut Classes<J>, prefetch: usize) -> Option<(usize, Waiting<J>)> {
        let n = self.conns.len();
        let i = (0..n).map(|k| (self.turn + k) % n).find(|&i| self.conns[i].0 && self.conns[i].1.len() < prefetch)?;
        let (_, w) = q.pop()?;
        self.turn = (i + 1) % n;
        self.conns[i].1.push_back(w.clone());
        Some((i, w))
    }

    /// Wakes `q`'s due jobs and hands them to consumers with room, returned in the order to push
    /// them (consumer, job); keeps the timer (`timer`) at the next delayed job's due time. Call
    /// after every change and when the timer rings.
    pub fn dispatch<N: Node>(
        &mut self,
        q: &mut Classes<J>,
        prefetch: usize,
        ctx: &mut Ctx<N>,
        timer: N::Timer,
    ) -> Vec<(usize, Waiting<J>)> {
        let now = ctx.now();
        if self.alarm.is_some_and(|(at, _)| at <= now) {
            self.alarm = None;
        }
        q.wake(now);
        let pushed = std::iter::from_fn(|| self.next(q, prefetch)).collect();
        if let Some(due) = q.next_due().filter(|&d| self.alarm.is_none_or(|(at, _)| d < at)) {
            if let Some((_, id)) = self.alarm.take() {
                ctx.cancel_timer(id);
            }
            self.alarm = Some((due, ctx.set_timer(due.since(now), timer)));
        }
        pushed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::queueing;
    use faultline_core::Rng;

    /// Runs `classes` as a queue of `c` servers fed by a Poisson stream per class (`rates` in
    /// jobs/s) with exponential service of mean `mean_s[k]`, for `secs` simulated seconds;
    /// returns each class's mean wait in seconds.
    fn simulate(d: Discipline, weights: &[u64], rates: &[f64], mean_s: &[f64], c: usize, secs: f64) -> Vec<f64> {
        let mut rng = Rng::new(7);
        let us = |s: f64| (s * 1e6).round() as u64;
        let mut q: Classes<()> = Classes::new(weights, d);
        let mut next: Vec<f64> = rates.iter().map(|&r| rng.exponential(1.0 / r)).collect();
        let mut free_at: Vec<f64> = Vec::new();
        let (mut sum, mut n) = (vec![0.0; rates.len()], vec![0u64; rates.len()]);
        loop {
            let (class, arrival) =
                next.iter().copied().enumerate().min_by(|a, b| a.1.total_cmp(&b.1)).expect("classes");
            let done = free_at.iter().copied().fold(f64::INFINITY, f64::min);
            let t = arrival.min(done);
            if t > secs {
                break;
            }
            if done <= arrival {
                free_at.retain(|&f| f != done);
            } else {
                q.push(class, (), Time(us(t)));
                next[class] += rng.exponential(1.0 / rates[class]);
            }
            // Every free server takes the next job the discipline picks.
            while free_at.len() < c {
                let Some((k, w)) = q.pop() else { break };
                sum[k] += t - w.since.micros() as f64 / 1e6;
                n[k] += 1;
                free_at.push(t + rng.exponential(mean_s[k]));
            }
        }
        sum.iter().zip(&n).map(|(s, &n)| s / n as f64).collect()
    }

    #[test]
    fn strict_priority_waits_are_cobhams() {
        // M/G/1 with two classes (exponential service, so E[S²] = 2 E[S]²): high 30/s of 10 ms,
        // low 12/s of 40 ms, ρ = 0.3 + 0.48 = 0.78. Cobham: W₀ = (30 × 2e-4 + 12 × 3.2e-3)/2 =
        // 22.2 ms, W_high = 31.7 ms, W_low = 144 ms (FIFO would make both 101 ms). 200,000 s is
        // 8.4 million jobs; low waits are correlated over busy periods of seconds, and over rng
        // seeds 1–8 the means fell within ±0.8% of the formula: ±3% is some 4 times the widest,
        // while a tenth more load or swapping the classes moves them by 20% or more.
        let waits = simulate(Discipline::Strict, &[1, 1], &[30.0, 12.0], &[0.010, 0.040], 1, 200_000.0);
        let theory = queueing::mg1_priority_waits(&[(30.0, 0.010, 2e-4), (12.0, 0.040, 3.2e-3)]);
        for (k, (w, t)) in waits.iter().zip(&theory).enumerate() {
            let t = t.expect("stable");
            assert!((w - t).abs() <= 0.03 * t, "class {k}: {w:.5} s, Cobham {t:.5} s");
        }
    }

    #[test]
    fn strict_priority_on_c_servers_meets_the_mmc_formula() {
        // M/M/8, one service time (20 ms) for both classes: high 100/s, low 240/s, ρ = 0.85.
        // W₀ = C(8, 6.8)/400 per s; W_high = W₀/0.75 = 1.4 ms, W_low = W₀/(0.75 × 0.15) = 9.3 ms.
        // 20,000 s (6.8 million jobs): over rng seeds 1–8 the means fell within ±1.8% (s.d. 1%);
        // ±4% is 4 standard deviations, while 7 or 9 workers move W_low by 60% or more.
        let waits = simulate(Discipline::Strict, &[1, 1], &[100.0, 240.0], &[0.02, 0.02], 8, 20_000.0);
        let theory = queueing::mmc_priority_waits(&[100.0, 240.0], 50.0, 8);
        for (k, (w, t)) in waits.iter().zip(&theory).enumerate() {
            let t = t.expect("stable");
            assert!((w - t).abs() <= 0.04 * t, "class {k}: {w:.5} s, theory {t:.5} s");
        }
    }

    #[test]
    fn fifo_is_one_queue_and_weighted_conserves_the_work() {
        // Fifo ignores the classes: with one service time both wait as M/M/8 does (Erlang C:
        // 9.5 ms). Weighted (4 : 1) is work conserving and never looks at service times, so
        // Kleinrock's conservation law holds — Σ λ_k W_k is the same for every such discipline,
        // FIFO's included — while the high class waits between strict priority's 1.9 ms and
        // FIFO's (2.4 ms: it is rarely backlogged, so it is nearly strict) and the low class
        // longer than FIFO. Over rng seeds 1–8 both sums fell within ±1.8% of Erlang C's.
        let (rates, mean) = ([100.0, 240.0], [0.02, 0.02]);
        let fifo = simulate(Discipline::Fifo, &[1, 1], &rates, &mean, 8, 20_000.0);
        let erlang = queueing::mmc_mean_wait(340.0, 50.0, 8).expect("stable");
        assert!(fifo.iter().all(|w| (w - erlang).abs() <= 0.04 * erlang), "{fifo:?} vs Erlang C {erlang:.5}");
        let weighted = simulate(Discipline::Weighted, &[4, 1], &rates, &mean, 8, 20_000.0);
        let strict = queueing::mmc_priority_waits(&rates, 50.0, 8);
        let load = |w: &[f64]| w[0] * 100.0 + w[1] * 240.0;
        assert!((load(&weighted) - load(&fifo)).abs() <= 0.04 * load(&fifo), "{weighted:?} vs {fifo:?}");
        assert!(strict[0].expect("stable") < weighted[0] && weighted[0] < fifo[0], "{weighted:?}");
        assert!(fifo[1] < weighted[1], "{weighted:?}");
    }

    #[test]
    fn delayed_jobs_join_when_due_and_handed_back_ones_go_first() {
        let mut q: Classes<&str> = Classes::new(&[1, 1], Discipline::Strict);
        q.schedule(1, "report", Time::from_secs(5));
        q.push(1, "email", Time::from_secs(1));
        assert_eq!((q.len(), q.delayed(), q.next_due()), (1, 1, Some(Time::from_secs(5))));
        assert_eq!(q.wake(Time::from_secs(4)), 0);
        assert_eq!(q.wake(Time::from_secs(6)), 1);
        assert_eq!(q.front(1).map(|w| w.job), Some("email"));
        q.push(0, "payment", Time::from_secs(6));
        let (class, w) = q.pop().expect("work");
        assert_eq!((class, w.job, w.ahead), (0, "payment", 0));
        let (_, email) = q.pop().expect("work");
        q.put_back(email);
        q.set_discipline(Discipline::Fifo);
        let order: Vec<_> = std::iter::from_fn(|| q.pop())
            .map(|(_, w)| (w.job, w.since.as_secs_f64(), w.ahead, w.handed_back))
            .collect();
        assert_eq!(order, [("email", 1.0, 0, true), ("report", 5.0, 1, false)]);
    }

    #[test]
    fn consumers_get_jobs_in_turn_up_to_their_prefetch_and_hand_them_back_in_order() {
        // Three consumers, prefetch 2, six low jobs then a high one: each takes two lows in turn
        // (0, 1, 2, 0, 1, 2), and the high one finds nobody with room — it waits while the
        // lows are held. Consumer 1 acks one: the high job goes to it, behind its other low one
        // (the inversion). Consumer 0 dies: its two jobs go back to the front, in their order.
        let mut q: Classes<u32> = Classes::new(&[1, 1], Discipline::Strict);
        (0..6).for_each(|j| q.push(1, j, Time::ZERO));
        let mut ch: Channels<u32> = Channels::new(3);
        let pushed: Vec<_> = std::iter::from_fn(|| ch.next(&mut q, 2)).map(|(i, w)| (i, w.job)).collect();
        assert_eq!(pushed, [(0, 0), (1, 1), (2, 2), (0, 3), (1, 4), (2, 5)]);
        q.push(0, 100, Time::ZERO);
        assert!(ch.next(&mut q, 2).is_none() && q.len_of(0) == 1);
        assert!(ch.ack(1, |&j| j == 1) && !ch.ack(1, |&j| j == 1));
        assert_eq!(ch.next(&mut q, 2).map(|(i, w)| (i, w.job, w.class)), Some((1, 100, 0)));
        assert_eq!((ch.close(0, false, &mut q), ch.connected(), ch.held(0)), (2, 2, 0));
        let back: Vec<_> = std::iter::from_fn(|| q.pop()).map(|(_, w)| (w.job, w.handed_back)).collect();
        assert_eq!(back, [(0, true), (3, true)]);
        // Closed, consumer 0 gets nothing; reconnected, it does.
        q.push(1, 7, Time::ZERO);
        assert!(ch.ack(2, |&j| j == 2));
        assert_eq!(ch.next(&mut q, 2).map(|(i, _)| i), Some(2));
        ch.close(0, true, &mut q);
        q.push(1, 8, Time::ZERO);
        assert_eq!(ch.next(&mut q, 2).map(|(i, _)| i), Some(0));
        // A broker restart hands everything back and reconnects everyone.
        ch.close_all(&mut q);
        assert_eq!((ch.connected(), (0..3).map(|i| ch.held(i)).sum::<usize>(), q.len()), (3, 0, 5));
    }
}
