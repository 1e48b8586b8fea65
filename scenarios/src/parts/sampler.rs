//! Trace sampling: spans, head sampling's coin on the trace id, routing spans to collectors, and a tail-sampling collector's buffer (decision wait, errors then slow then a baseline share within a budget, decisions remembered for late spans).
//!
//! **Head sampling** decides at the root, before anything is known about the request: a coin
//! on the trace id ([`coin`], as W3C's trace-id-ratio sampler hashes the id), carried in the
//! call (traceparent's sampled flag) so every span of a trace is recorded or none is. Of E
//! error traces it keeps a binomial share: mean pE, variance p(1 − p)E (tested).
//!
//! **Tail sampling** decides after the trace: [`Tail`] is OpenTelemetry's `tail_sampling`
//! processor in miniature. A trace's spans are held from the first one's arrival for a
//! decision wait; a round (every tick) decides the traces whose wait is over, errors first,
//! then slow traces (first start to last end at or over a threshold), then a baseline share
//! (a coin on the id, so collectors agree), each kept trace taking a token from a bucket (the
//! budget, traces a second). An error trace refused for want of a token is *over budget*:
//! when error traces come at E a second over a budget B, the share kept is min(1, B/E)
//! ([`kept_share`], tested). A span arriving after its trace's decision follows it (kept
//! traces stay whole); a decision is remembered for a while, then forgotten, and a later span
//! starts a new trace of its own.
//!
//! A span is delayed on its way by its process's export batching, uniform over the flush
//! interval F when each process flushes on its own phase. The decision waits W from the first
//! arrival, so a trace of n spans is decided whole when the range of n uniforms is within W:
//! n·x^(n−1) − (n − 1)·x^n with x = W/F ([`decided_whole`], tested). The buffer holds the span
//! rate times each span's stay, W less its arrival after its trace's first (Little's law).

use super::bucket::TokenBucket;
use super::ring::mix;
use super::table::{KeyTable, Log};
use faultline_core::{Ctx, Micros, Node, NodeKind, NodeView, Sim, Time, Tone, World, MICROS_PER_S};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// One unit of work of a trace at one service: its start and end (true time of the process
/// that did it), and whether it failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    pub trace: u64,
    pub service: u16,
    pub start: Time,
    pub end: Time,
    pub error: bool,
}

/// A consistent coin: `true` for a share `bp` (basis points) of trace ids, the same answer
/// for the same id and salt everywhere.
pub fn coin(trace: u64, salt: u64, bp: i64) -> bool {
    (mix(trace ^ salt) % 10_000) < bp.max(0) as u64
}

/// The collector of `collectors` that owns trace `trace` (routing by trace id, as
/// OpenTelemetry's load-balancing exporter does).
pub fn route(trace: u64, collectors: u64) -> u64 {
    mix(trace.wrapping_mul(0x9e37_79b9_7f4a_7c15)) % collectors.max(1)
}

/// Why a trace is worth keeping, in the order a round serves them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    Error,
    Slow,
    Baseline,
    /// None of the above: dropped without asking the budget.
    Rest,
}

/// What a round keeps: slow at or over `slow_us`, a baseline share `baseline_bp` (coin salted `salt`).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    pub slow_us: Micros,
    pub baseline_bp: i64,
    pub salt: u64,
}

/// A trace decided in a round: its class, whether it was kept, and its spans held (sent on
/// when kept). `over_budget`: an error trace refused for want of a token.
#[derive(Clone, Debug)]
pub struct Decided {
    pub trace: u64,
    pub class: Class,
    pub keep: bool,
    pub over_budget: bool,
    pub spans: Vec<Span>,
}

/// A span offered to the buffer: held for its trace's decision, or late (its trace decided,
/// `kept` says how: a kept one's span is to be stored at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    Held,
    Late { kept: bool },
}

/// A tail-sampling collector's buffer and decisions.
#[derive(Clone, Debug)]
pub struct Tail {
    pending: BTreeMap<u64, Vec<Span>>,
    /// (when its wait is over, trace), soonest first.
    due: BTreeSet<(Time, u64)>,
    decided: BTreeMap<u64, bool>,
    /// Decisions in the order made, to forget them after the cache's span.
    made: VecDeque<(Time, u64)>,
    bucket: TokenBucket,
    buffered: usize,
}

impl Tail {
    /// A budget of `budget` traces a second shared by `shares` collectors (this one's share
    /// is `budget / shares`), a burst of a second's share.
    pub fn new(budget: u64, shares: u64) -> Tail {
        let mut t = Tail {
            pending: BTreeMap::new(),
            due: BTreeSet::new(),
            decided: BTreeMap::new(),
            made: VecDeque::new(),
            bucket: TokenBucket::new(1, 1, 1),
            buffered: 0,
        };
        t.set_budget(budget, shares);
        t
    }

    /// A new budget, from now on (the bucket starts full).
    pub fn set_budget(&mut self, budget: u64, shares: u64) {
        let shares = shares.max(1);
        self.bucket = TokenBucket::new(budget, shares * MICROS_PER_S, budget.div_ceil(shares).max(1));
    }

    /// Span `span` arrives at `now`; a new trace is decided `wait_us` after its first span.
    pub fn offer(&mut self, span: Span, now: Time, wait_us: Micros) -> Arrival {
        if let Some(&kept) = self.decided.get(&span.trace) {
            return Arrival::Late { kept };
        }
        let spans = self.pending.entry(span.trace).or_default();
        if spans.is_empty() {
            self.due.insert((now.plus(wait_us), span.trace));
        }
        spans.push(span);
        self.buffered += 1;
        Arrival::Held
    }

    /// Decides every trace whose wait is over by `now`: errors, then slow, then the baseline,
    /// oldest first in each, each kept one taking a token; forgets decisions older than `cache_us`.
    pub fn decide(&mut self, now: Time, policy: Policy, cache_us: Micros) -> Vec<Decided> {
        let mut round: Vec<Decided> = Vec::new();
        while let Some(&(at, trace)) = self.due.first().filter(|d| d.0 <= now) {
            self.due.remove(&(at, trace));
            let spans = self.pending.remove(&trace).expect("a due trace is pending");
            self.buffered -= spans.len();
            let class = classify(&spans, policy);
            round.push(Decided { trace, class, keep: false, over_budget: false, spans });
        }
        round.sort_by_key(|d| (d.class, d.trace));
        for d in &mut round {
            d.keep = d.class != Class::Rest && self.bucket.allow(now);
            d.over_budget = d.class == Class::Error && !d.keep;
            self.decided.insert(d.trace, d.keep);
            self.made.push_back((now, d.trace));
        }
        while let Some(&(_, trace)) = self.made.front().filter(|m| now.since(m.0) > cache_us) {
            self.made.pop_front();
            self.decided.remove(&trace);
        }
        round
    }

    /// Spans held awaiting a decision.
    pub fn buffered_spans(&self) -> usize {
        self.buffered
    }
    pub fn pending_traces(&self) -> usize {
        self.pending.len()
    }
    /// Whole tokens left (for a gauge).
    pub fn tokens(&self, now: Time) -> u64 {
        self.bucket.tokens(now)
    }
    pub fn burst(&self) -> u64 {
        self.bucket.burst()
    }
    /// A crash: what was held and decided is gone (it was memory); returns the spans lost.
    pub fn clear(&mut self) -> usize {
        let lost = self.buffered;
        (self.pending, self.due, self.decided, self.made, self.buffered) = Default::default();
        lost
    }
}

/// A held trace's class: any error span, else first start to last end against the threshold,
/// else the baseline coin.
pub fn classify(spans: &[Span], policy: Policy) -> Class {
    let first = spans.iter().map(|s| s.start).min().unwrap_or(Time::ZERO);
    let last = spans.iter().map(|s| s.end).max().unwrap_or(Time::ZERO);
    let trace = spans.first().map_or(0, |s| s.trace);
    if spans.iter().any(|s| s.error) {
        Class::Error
    } else if last.since(first) >= policy.slow_us {
        Class::Slow
    } else if coin(trace, policy.salt, policy.baseline_bp) {
        Class::Baseline
    } else {
        Class::Rest
    }
}

/// The share of error traces a budget of `budget` traces a second keeps when they come at
/// `rate` a second: min(1, budget / rate) (errors are served first).
pub fn kept_share(budget: f64, rate: f64) -> f64 {
    if rate <= budget {
        1.0
    } else {
        budget / rate
    }
}

/// The chance that all `n` spans of a trace, each delayed independently and uniformly over
/// [0, F], arrive within `x = W / F` of the first: the range of n uniforms, n·x^(n−1) − (n−1)·x^n.
pub fn decided_whole(n: u32, x: f64) -> f64 {
    if x >= 1.0 || n <= 1 {
        return 1.0;
    }
    let n = n as f64;
    n * libm::pow(x, n - 1.0) - (n - 1.0) * libm::pow(x, n)
}

/// A span's mean stay in the buffer when its trace's n spans arrive uniformly over [0, F] and
/// the decision comes W after the first: W − E[arrival − first] = W − (F/2 − F/(n + 1)).
pub fn mean_stay_us(n: u32, wait_us: f64, flush_us: f64) -> f64 {
    wait_us - (flush_us / 2.0 - flush_us / (n as f64 + 1.0))
}

impl Tail {
    /// A batch of spans arrives at `now`: held, or late — a kept trace's late spans are
    /// returned (store them at once), and every late span's trace is listed (with repeats).
    pub fn receive(&mut self, spans: Vec<Span>, now: Time, wait_us: Micros) -> (Vec<Span>, Vec<u64>) {
        let (mut store, mut late) = (Vec::new(), Vec::new());
        for span in spans {
            if let Arrival::Late { kept } = self.offer(span, now, wait_us) {
                late.push(span.trace);
                if kept {
                    store.push(span);
                }
            }
        }
        (store, late)
    }
}

/// A tracing pipeline's audit, by trace id (ids are given in order of start): each trace is
/// judged once, `settle` after it started — when every span can have ended and arrived — and
/// the traces judged over the last `window` rounds are kept for windowed shares.
#[derive(Clone, Debug, Default)]
pub struct Audit {
    starts: Log<Time>,
    audited: u64,
    marks: VecDeque<u64>,
}

impl Audit {
    /// A trace starts at true time `at`: its id.
    pub fn start(&mut self, at: Time) -> u64 {
        self.starts.push(at);
        self.starts.len() as u64 - 1
    }
    /// A round at `now`: the traces that have settled since the last one.
    pub fn advance(&mut self, now: Time, settle_us: Micros, window: usize) -> std::ops::Range<u64> {
        let from = self.audited;
        while self.starts.get(self.audited as usize).is_some_and(|&s| now.since(s) >= settle_us) {
            self.audited += 1;
        }
        self.marks.push_back(self.audited);
        if self.marks.len() > window {
            self.marks.pop_front();
        }
        from..self.audited
    }
    /// The traces judged in the last `window` rounds, and how many rounds that is.
    pub fn window(&self) -> (std::ops::Range<u64>, usize) {
        (self.marks.front().copied().unwrap_or(self.audited)..self.audited, self.marks.len())
    }
}

/// What the audit finds of a trace: spans ended, distinct spans stored, spans after its
/// decision, and whether it erred or was slow (god's-eye tallies).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    pub spans: i64,
    pub stored: i64,
    pub late: i64,
    pub error: bool,
    pub slow: bool,
}

impl Verdict {
    /// From tallies `spans`, `stored`, `late`, `error` and `slow` of `trace`.
    pub fn of(trace: u64, tally: impl Fn(&'static str, u64) -> i64) -> Verdict {
        let (spans, stored, late) = (tally("spans", trace), tally("stored", trace), tally("late", trace));
        Verdict { spans, stored, late, error: tally("error", trace) > 0, slow: tally("slow", trace) > 0 }
    }
    pub fn whole(&self) -> bool {
        self.stored >= self.spans
    }
    pub fn describe(&self, trace: u64) -> String {
        let kind = if self.error { "error trace" } else { "trace" };
        let late = match self.late {
            0 => String::new(),
            n => format!("; {n} span(s) reached a collector after its decision"),
        };
        format!("{kind} {trace}: {} of its {} spans stored{late}", self.stored, self.spans)
    }
}

/// The share (bp) of verdicts that are whole; 10,000 when there are none.
pub fn whole_bp(verdicts: impl Iterator<Item = Verdict>) -> i64 {
    let (of, whole) = verdicts.fold((0, 0), |(of, whole), v| (of + 1, whole + v.whole() as i64));
    if of == 0 {
        10_000
    } else {
        whole * 10_000 / of
    }
}

/// A collector's node state: span batches passed straight on (head sampling: the spans come
/// sampled) or held in a [`Tail`]; the audit's tallies (`late`, `over_budget`) and counter
/// (`late_spans`) written through the context.
#[derive(Clone, Debug)]
pub struct Collector {
    pub index: u64,
    pub pass_through: bool,
    pub tail: Tail,
    /// The baseline coin's salt (the same at every collector of a run).
    salt: u64,
    /// Traces dropped and kept; error traces refused for want of budget.
    decided: [u64; 2],
    over_budget: u64,
}

impl Collector {
    pub fn new(index: u64, pass_through: bool, budget: u64, shares: u64, salt: u64) -> Collector {
        Collector { index, pass_through, tail: Tail::new(budget, shares), salt, decided: [0; 2], over_budget: 0 }
    }

    /// A batch arrives: the spans to store at once (all when passing through; else late ones of kept traces).
    pub fn receive<N: Node>(&mut self, spans: Vec<Span>, wait_us: Micros, ctx: &mut Ctx<N>) -> Vec<Span> {
        if self.pass_through {
            return spans;
        }
        let (now, late) = self.tail.receive(spans, ctx.now(), wait_us);
        ctx.count("late_spans", late.len() as i64);
        late.into_iter().for_each(|t| ctx.tally("late", t, 1));
        now
    }

    /// A round keeping slow traces (`slow_us`) and a baseline share (`baseline_bp`): the spans
    /// of the traces kept.
    pub fn round<N: Node>(
        &mut self,
        slow_us: Micros,
        baseline_bp: i64,
        cache_us: Micros,
        ctx: &mut Ctx<N>,
    ) -> Vec<Span> {
        let (mut kept, policy) = (Vec::new(), Policy { slow_us, baseline_bp, salt: self.salt });
        for d in self.tail.decide(ctx.now(), policy, cache_us) {
            self.decided[d.keep as usize] += 1;
            if d.over_budget {
                self.over_budget += 1;
                ctx.tally("over_budget", d.trace, 1);
            }
            kept.extend(d.spans.into_iter().filter(|_| d.keep));
        }
        kept
    }

    pub fn view(&self, tier: u8) -> NodeView {
        let v = NodeView::new(NodeKind::Queue, tier, format!("collector {}", self.index));
        if self.pass_through {
            return v.badge("passes sampled spans on", Tone::Neutral);
        }
        let held = self.tail.buffered_spans() as i64;
        v.badge(format!("holds {} traces, {held} spans", self.tail.pending_traces()), Tone::Neutral)
            .badge(format!("kept {} · dropped {}", self.decided[1], self.decided[0]), Tone::Neutral)
            .badge_if(self.over_budget > 0, format!("{} errors over budget", self.over_budget), Tone::Warn)
            .gauge("buffer (spans)", held, held.max(2000))
    }
}

/// A trace store: which services' spans it holds for each trace (a copy stored once), with
/// the audit's tally `stored` and counter `stored_spans`.
#[derive(Clone, Debug, Default)]
pub struct Store {
    held: KeyTable<u32>,
    /// Traces with a span stored, and those whose root span (service 0) failed.
    pub traces: u64,
    pub error_traces: u64,
}

impl Store {
    pub fn store<N: Node>(&mut self, spans: Vec<Span>, ctx: &mut Ctx<N>) {
        for s in spans {
            let (held, bit) = (self.held.get_or_insert(s.trace, 0), 1u32 << s.service);
            if *held & bit != 0 {
                continue;
            }
            self.traces += (*held == 0) as u64;
            *held |= bit;
            self.error_traces += (s.service == 0 && s.error) as u64;
            ctx.count("stored_spans", 1);
            ctx.tally("stored", s.trace, 1);
        }
    }

    pub fn view(&self, tier: u8) -> NodeView {
        NodeView::new(NodeKind::Database, tier, "trace store")
            .badge(format!("{} traces", self.traces), Tone::Neutral)
            .badge(format!("{} with an error at the root", self.error_traces), Tone::Neutral)
    }
}

/// Tallies an ended span for the audit (`spans`, and `error` if it failed).
pub fn tally_ended<N: Node>(span: &Span, ctx: &mut Ctx<N>) {
    ctx.tally("spans", span.trace, 1);
    if span.error {
        ctx.tally("error", span.trace, 1);
    }
}

/// Registers the audit's two promises as checks — `errors-kept` (an error trace is stored
/// whole unless a collector refused it over budget) and `kept-whole` (a trace with a span
/// stored has them all) — judged on the traces tallied `audit` at each instant, and its
/// windowed shares (bp) as probes: `errors_kept_bp`, `whole_bp`, `slow_kept_bp` over `window`.
pub fn audit_checks<N: Node>(sim: &mut Sim<N>, window: fn(&World<N>) -> std::ops::Range<u64>) {
    fn audited<'a, N: Node>(w: &'a World<'a, N>) -> impl Iterator<Item = (u64, Verdict)> + 'a {
        w.tallied.iter().filter(|t| t.0 == "audit").map(|t| (t.1, Verdict::of(t.1, |name, key| w.tally(name, key))))
    }
    sim.check("errors-kept", |w| {
        audited(w).try_for_each(|(t, v)| match v.error && !v.whole() && w.tally("over_budget", t) == 0 {
            true => Err(v.describe(t)),
            false => Ok(()),
        })
    });
    sim.check("kept-whole", |w| {
        audited(w).try_for_each(|(t, v)| if v.stored > 0 && !v.whole() { Err(v.describe(t)) } else { Ok(()) })
    });
    type Pick = fn(&Verdict) -> bool;
    let probes: [(&'static str, Pick); 3] =
        [("errors_kept_bp", |v| v.error), ("whole_bp", |v| v.stored > 0), ("slow_kept_bp", |v| v.slow)];
    for (name, pick) in probes {
        sim.probe(name, move |w| {
            whole_bp(window(w).map(|t| Verdict::of(t, |name, key| w.tally(name, key))).filter(&pick))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    const POLICY: Policy = Policy { slow_us: 500_000, baseline_bp: 0, salt: 7 };

    fn span(trace: u64, service: u16, end_ms: u64, error: bool) -> Span {
        Span { trace, service, start: Time::ZERO, end: Time::from_ms(end_ms), error }
    }

    #[test]
    fn head_coin_keeps_a_binomial_share_of_error_traces() {
        // 100,000 error traces at p = 1%: mean 1,000, sd √(p(1 − p)E) = 31.5; we allow 4 sd.
        // And over 200 runs of E = 1,000 the kept count's variance is p(1 − p)E = 9.9 (its
        // sample variance has a relative sd of √(2/199) = 10%; we allow 35%).
        let kept = (0..100_000u64).filter(|&t| coin(t, 1, 100)).count() as f64;
        assert!((kept - 1000.0).abs() < 4.0 * 31.5, "kept {kept}");
        let counts: Vec<f64> =
            (0..200u64).map(|r| (0..1000u64).filter(|&t| coin(r * 1000 + t, 3, 100)).count() as f64).collect();
        let mean = counts.iter().sum::<f64>() / 200.0;
        let var = counts.iter().map(|c| (c - mean) * (c - mean)).sum::<f64>() / 199.0;
        assert!((mean - 10.0).abs() < 4.0 * (9.9f64 / 200.0).sqrt(), "mean {mean}");
        assert!((var / 9.9 - 1.0).abs() < 0.35, "variance {var}");
        // The same id gets the same answer at every collector.
        assert!((0..1000u64).all(|t| coin(t, 1, 100) == coin(t, 1, 100)));
    }

    #[test]
    fn route_spreads_traces_evenly() {
        let mut n = [0u32; 3];
        (0..30_000u64).for_each(|t| n[route(t, 3) as usize] += 1);
        // Binomial(30,000, 1/3): sd 82; 4 sd.
        assert!(n.iter().all(|&c| (c as f64 - 10_000.0).abs() < 330.0), "{n:?}");
    }

    #[test]
    fn a_round_serves_errors_then_slow_then_the_baseline_within_the_budget() {
        // Budget 2 a second, one collector: a burst of 2 tokens.
        let mut t = Tail::new(2, 1);
        let at = Time::from_secs(1);
        t.offer(span(1, 0, 10, false), at, 1000);
        t.offer(span(2, 0, 900, false), at, 1000);
        t.offer(span(3, 0, 10, true), at, 1000);
        t.offer(span(4, 0, 10, true), at, 1000);
        t.offer(span(4, 1, 12, false), at, 1000);
        let policy = Policy { baseline_bp: 10_000, ..POLICY };
        assert!(t.decide(at, policy, MICROS_PER_S).is_empty(), "nothing is due yet");
        assert_eq!((t.buffered_spans(), t.pending_traces()), (5, 4));
        let round = t.decide(at.plus(1000), policy, MICROS_PER_S);
        let got: Vec<_> = round.iter().map(|d| (d.trace, d.class, d.keep, d.over_budget)).collect();
        assert_eq!(
            got,
            vec![
                (3, Class::Error, true, false),
                (4, Class::Error, true, false),
                (2, Class::Slow, false, false),
                (1, Class::Baseline, false, false)
            ]
        );
        assert_eq!(round[1].spans.len(), 2);
        assert_eq!(t.buffered_spans(), 0);
        // A third error trace now finds no token: over budget, refused.
        t.offer(span(5, 0, 10, true), at, 0);
        let round = t.decide(at.plus(2000), policy, MICROS_PER_S);
        assert!(round[0].over_budget && !round[0].keep);
        // Late spans follow their trace's decision, until it is forgotten.
        assert_eq!(t.offer(span(3, 2, 20, false), at.plus(3000), 1000), Arrival::Late { kept: true });
        assert_eq!(t.offer(span(2, 2, 20, false), at.plus(3000), 1000), Arrival::Late { kept: false });
        t.decide(Time::from_secs(5), policy, MICROS_PER_S);
        assert_eq!(t.offer(span(3, 3, 20, false), Time::from_secs(5), 1000), Arrival::Held);
        assert_eq!(t.clear(), 1);
    }

    /// Runs error traces arriving as Poisson at `rate` a second for `secs` into a collector
    /// with `budget`, deciding every 100 ms: the share kept.
    fn kept_under_budget(rate: f64, budget: u64, secs: u64, seed: u64) -> f64 {
        let (mut rng, mut t, mut now, mut trace) = (Rng::new(seed), Tail::new(budget, 1), 0.0, 0);
        let (mut kept, mut all) = (0u64, 0u64);
        let mut tick = 100_000.0;
        while now < (secs * MICROS_PER_S) as f64 {
            now += rng.exponential(1e6 / rate);
            while tick < now {
                let round = t.decide(Time(tick as u64), POLICY, MICROS_PER_S);
                (kept, all) = (kept + round.iter().filter(|d| d.keep).count() as u64, all + round.len() as u64);
                tick += 100_000.0;
            }
            t.offer(span(trace, 0, 1, true), Time(now as u64), 0);
            trace += 1;
        }
        kept as f64 / all as f64
    }

    #[test]
    fn errors_over_the_budget_are_kept_at_budget_over_rate() {
        // 40 error traces a second against 10: 25%. Over 200 s the bucket's first burst adds
        // 10 (0.1%); Poisson counts per round spill unused tokens only when a round brings
        // fewer than its share (the bucket holds a second's worth, so little is lost). 2%.
        let got = kept_under_budget(40.0, 10, 200, 3);
        assert!((got - kept_share(10.0, 40.0)).abs() < 0.02, "kept {got}");
        // Under the budget every one is kept.
        assert_eq!(kept_under_budget(5.0, 10, 100, 4), 1.0);
        assert_eq!(kept_share(10.0, 5.0), 1.0);
    }

    #[test]
    fn decided_whole_matches_the_range_of_uniform_delays() {
        // Traces of 8 spans, each delayed uniformly over F = 1 s; decided W = 0.6 s after the
        // first arrival (rounds every ms). 20,000 traces: the share's sd is ≤ 0.0035; 4 sd.
        let (mut rng, mut t) = (Rng::new(9), Tail::new(1_000_000, 1));
        let (flush, wait, n) = (1_000_000u64, 600_000u64, 8u32);
        let mut whole = 0;
        for trace in 0..20_000u64 {
            let base = Time(trace * 10 * MICROS_PER_S);
            let mut arrivals: Vec<u64> = (0..n).map(|_| rng.below(flush)).collect();
            arrivals.sort();
            let mut complete = true;
            for (i, &a) in arrivals.iter().enumerate() {
                let at = base.plus(a);
                t.decide(at, POLICY, MICROS_PER_S);
                if t.offer(span(trace, i as u16, 1, false), at, wait) != Arrival::Held {
                    complete = false;
                }
            }
            t.decide(base.plus(2 * flush), POLICY, MICROS_PER_S);
            whole += complete as u32;
        }
        let (got, want) = (whole as f64 / 20_000.0, decided_whole(n, 0.6));
        assert!((got - want).abs() < 0.014, "whole {got}, theory {want}");
        assert_eq!(decided_whole(8, 1.0), 1.0);
        assert!((decided_whole(2, 0.5) - 0.75).abs() < 1e-12);
    }

    #[test]
    fn the_buffer_holds_the_span_rate_times_the_stay() {
        // Little's law: traces of 4 spans at 50 a second, spans delayed U(0, 0.5 s), decided
        // 1 s after the first: a span stays W − (F/2 − F/5) = 0.85 s; 200 spans/s × 0.85 =
        // 170 held on average. Sampled every ms for 100 s; Poisson traces (sd of the mean a
        // few %); we allow 5%.
        let (mut rng, mut t) = (Rng::new(5), Tail::new(1_000_000, 1));
        let (flush, wait, n) = (500_000u64, 1_000_000u64, 4u32);
        let mut events: Vec<(u64, u64, u16)> = Vec::new();
        let (mut now, mut trace) = (0.0, 0u64);
        while now < 100e6 {
            now += rng.exponential(1e6 / 50.0);
            for s in 0..n as u16 {
                events.push((now as u64 + rng.below(flush), trace, s));
            }
            trace += 1;
        }
        events.sort();
        let (mut sum, mut samples, mut e) = (0.0, 0.0, 0);
        for ms in 2000..100_000u64 {
            let at = Time::from_ms(ms);
            while e < events.len() && events[e].0 <= at.micros() {
                let (a, tr, s) = events[e];
                t.offer(span(tr, s, 1, false), Time(a), wait);
                e += 1;
            }
            t.decide(at, POLICY, MICROS_PER_S);
            (sum, samples) = (sum + t.buffered_spans() as f64, samples + 1.0);
        }
        let want = 200.0 * mean_stay_us(n, wait as f64, flush as f64) / 1e6;
        assert!((sum / samples / want - 1.0).abs() < 0.05, "held {} vs {want}", sum / samples);
    }
}
