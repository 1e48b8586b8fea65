//! SLO error budgets and burn rates: event counts per evaluation step, the bad share over windows ending now, multiwindow multi-burn-rate rules, incident shapes and the budget they burn.
//!
//! An SLO of target `T` over a period `P` allows a bad share `b = 1 − T` of the period's
//! events: its **error budget**. Burning at rate `r` means a bad share of `r·b`: at `r = 1`
//! the budget lasts exactly the period, and a stretch of length `t` at `r` consumes `r·t/P`
//! of it. The Site Reliability Workbook (ch. 5, "Alerting on SLOs", 2018) recommends alerting
//! when the burn rate over a long window `W` *and* over a short one (`W/12`) both exceed a
//! threshold `B` ([`Rule`]): the long window says a real share of the budget is going (`B·W/P`
//! of it by the time a window full of the burn fires), the short one that it is still going
//! (the alert resets soon after the incident ends). Its table ([`workbook_rules`]): page at 14.4
//! over 1 h (2% of a 30-day budget), page at 6 over 6 h (5%), ticket at 1 over 3 days (10%).
//!
//! **Time is the SLO's own**: every length here is a share of the period, so a period
//! compressed into 720 simulated seconds makes an hour one second and keeps every ratio.
//!
//! **When a rule fires** ([`steps_to_fire`]): a window of `n` steps that held the baseline
//! burn `r0` averages `(r0·(n − k) + r·k)/n` after `k` steps of an incident at burn `r`; it
//! exceeds `B` first at `k = ⌊n·(B − r0)/(r − r0)⌋ + 1` — about `W·(B − r0)/(r − r0)`, or
//! `B·b·W/e` from a clean window (`r0 = 0`) at error rate `e = r·b`. The incident has then
//! burnt `(r − r0)·t/P ≈ (B − r0)·W/P` of the budget, whatever its rate. A rule fires when
//! both of its windows have: the later of the two times.

use faultline_core::{Micros, Time};
use std::collections::{BTreeMap, VecDeque};

/// The workbook's SLO period: 30 days, in hours.
pub const PERIOD_HOURS: f64 = 720.0;

/// An SLO: the bad share it allows over its period (in simulated time).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Slo {
    /// `b = 1 − target`: the error budget as a share of events.
    pub budget: f64,
    pub period_us: Micros,
}

impl Slo {
    /// From a target in basis points of success (9,990 = 99.9%) and the period's length.
    pub fn new(target_bp: i64, period_us: Micros) -> Slo {
        let budget = (10_000 - target_bp.clamp(0, 9_999)) as f64 / 10_000.0;
        Slo { budget, period_us: period_us.max(1) }
    }

    /// `hours` of the 30-day period in simulated µs (at least 1).
    pub fn hours_us(&self, hours: f64) -> Micros {
        ((self.period_us as f64 * hours / PERIOD_HOURS).round() as Micros).max(1)
    }

    /// `minutes` of the period in simulated µs (at least 1).
    pub fn minutes_us(&self, minutes: f64) -> Micros {
        self.hours_us(minutes / 60.0)
    }

    /// Simulated µs in the SLO's hours (for labels and metrics).
    pub fn as_hours(&self, us: f64) -> f64 {
        us * PERIOD_HOURS / self.period_us as f64
    }

    /// A simulated time in the SLO's hours, with the clock's seconds beside: "10.0 h (t=10s)".
    pub fn when(&self, t: Time) -> String {
        format!("{:.1} h (t={t})", self.as_hours(t.micros() as f64))
    }

    /// The time compression in words: "30 days = 720 s: 1 h = 1.00 s".
    pub fn compression(&self) -> String {
        let (p, h) = (self.period_us as f64 / 1e6, self.hours_us(1.0) as f64 / 1e6);
        format!("30 days = {p:.0} s: 1 h = {h:.2} s")
    }

    /// The share of the budget a burn `burn` consumes in `us`: `burn·us/P`.
    pub fn consumed(&self, burn: f64, us: f64) -> f64 {
        burn * us / self.period_us as f64
    }

    /// The burn rate of a bad share `rate`: `rate/b`.
    pub fn burn(&self, rate: f64) -> f64 {
        rate / self.budget
    }
}

/// How loud an alert is: the workbook pages for fast burns and files tickets for slow ones.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    #[default]
    Quiet,
    Ticket,
    Page,
}

/// A multiwindow burn-rate rule: fires when the burn over both windows exceeds `burn`. A
/// single-window rule has `short_us == long_us`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rule {
    pub long_us: Micros,
    pub short_us: Micros,
    pub burn: f64,
    pub severity: Severity,
}

impl Rule {
    /// A single-window rule: the burn over `window_us` above `burn`.
    pub fn single(window_us: Micros, burn: f64, severity: Severity) -> Rule {
        Rule { long_us: window_us, short_us: window_us, burn, severity }
    }

    /// "1 h 3.2× · 5 min 0.4× vs 14.4×": the burn over its windows (long, short) against its threshold.
    pub fn describe(&self, slo: &Slo, long: f64, short: f64) -> String {
        let w = |us: Micros| match slo.as_hours(us as f64) {
            h if h < 1.0 => format!("{:.0} min", h * 60.0),
            h if h < 24.0 => format!("{h:.0} h"),
            h => format!("{:.0} d", h / 24.0),
        };
        format!("{} {long:.1}× · {} {short:.1}× vs {:.1}×", w(self.long_us), w(self.short_us), self.burn)
    }
}

/// The workbook's recommended rules (table 5-8), in the SLO's time: 14.4 over 1 h and 5 min
/// (page), 6 over 6 h and 30 min (page), 1 over 3 days and 6 h (ticket).
pub fn workbook_rules(slo: &Slo) -> [Rule; 3] {
    let rule = |long_h: f64, burn, severity| Rule {
        long_us: slo.hours_us(long_h),
        short_us: slo.hours_us(long_h / 12.0),
        burn,
        severity,
    };
    [rule(1.0, 14.4, Severity::Page), rule(6.0, 6.0, Severity::Page), rule(72.0, 1.0, Severity::Ticket)]
}

/// Event counts (total, bad) per evaluation step, and the burn over windows ending at the
/// latest step. Windows reaching back before the first step see `history` per step (the
/// service ran before the run began: a month at its baseline, not an empty past).
#[derive(Clone, Debug)]
pub struct Counts {
    slo: Slo,
    step_us: Micros,
    /// Cumulative (total, bad) after each kept step, oldest first; `first` is the oldest's number.
    cum: VecDeque<(f64, f64)>,
    first: u64,
    keep: usize,
    history: (f64, f64),
    /// The budget consumed so far, measured: each step's burn × its length / P.
    consumed: f64,
    /// The counters at the last scrape.
    scraped: (u64, u64),
}

impl Counts {
    /// Steps of `step_us`, windows up to `longest_us`, `history` (total, bad) per step before the run.
    pub fn new(slo: Slo, step_us: Micros, longest_us: Micros, history: (f64, f64)) -> Counts {
        let step_us = step_us.max(1);
        let keep = longest_us.div_ceil(step_us) as usize + 1;
        Counts {
            slo,
            step_us,
            cum: VecDeque::from([(0.0, 0.0)]),
            first: 0,
            keep,
            history,
            consumed: 0.0,
            scraped: (0, 0),
        }
    }

    /// A scrape of cumulative counters: its increase since the last one is a step's counts
    /// (counters only grow; a smaller one was reset by a restart, and all it holds is new).
    pub fn scraped(&mut self, total: u64, bad: u64) {
        let (t0, b0) = if total < self.scraped.0 { (0, 0) } else { self.scraped };
        self.record(total - t0, bad.saturating_sub(b0));
        self.scraped = (total, bad);
    }

    /// One step's counts (a scrape's increase).
    pub fn record(&mut self, total: u64, bad: u64) {
        let &(t, b) = self.cum.back().expect("never empty");
        self.cum.push_back((t + total as f64, b + bad as f64));
        if total > 0 {
            self.consumed += self.slo.consumed(self.slo.burn(bad as f64 / total as f64), self.step_us as f64);
        }
        while self.cum.len() > self.keep {
            self.cum.pop_front();
            self.first += 1;
        }
    }

    /// Steps recorded so far.
    pub fn steps(&self) -> u64 {
        self.first + self.cum.len() as u64 - 1
    }

    /// The cumulative counts after step `k` (negative: before the run, from the history).
    fn cum_at(&self, k: i64) -> (f64, f64) {
        if k >= self.first as i64 {
            self.cum[(k - self.first as i64) as usize]
        } else {
            let &(t, b) = self.cum.front().expect("never empty");
            let back = (self.first as i64 - k) as f64;
            (t - back * self.history.0, b - back * self.history.1)
        }
    }

    /// (total, bad) over the last `window_us`, in whole steps (at least one).
    pub fn window(&self, window_us: Micros) -> (f64, f64) {
        let n = (window_us as f64 / self.step_us as f64).round().max(1.0) as i64;
        let now = self.steps() as i64;
        let ((t1, b1), (t0, b0)) = (self.cum_at(now), self.cum_at(now - n));
        (t1 - t0, b1 - b0)
    }

    /// The burn rate over the last `window_us` (0 without events).
    pub fn burn(&self, window_us: Micros) -> f64 {
        let (total, bad) = self.window(window_us);
        if total > 0.0 {
            self.slo.burn(bad / total)
        } else {
            0.0
        }
    }

    /// Whether `rule` fires now: both windows burn faster than its threshold.
    pub fn fires(&self, rule: &Rule) -> bool {
        self.burn(rule.long_us) > rule.burn && self.burn(rule.short_us) > rule.burn
    }

    /// The loudest of `rules` firing now.
    pub fn severity(&self, rules: &[Rule]) -> Severity {
        rules.iter().filter(|r| self.fires(r)).map(|r| r.severity).max().unwrap_or_default()
    }

    /// The budget consumed so far (a share: 1 is all of it).
    pub fn consumed(&self) -> f64 {
        self.consumed
    }
    pub fn step_us(&self) -> Micros {
        self.step_us
    }
    pub fn slo(&self) -> Slo {
        self.slo
    }
}

/// Where the SLI is measured (a balancer's view): requests sent, each counted once when
/// answered, or as failed once it has waited past a timeout (a 504); a late answer is ignored.
/// Beside the counters, for the checks only, the failures an incident caused (a god's-eye tag
/// on the answer that no rule reads).
#[derive(Clone, Debug, Default)]
pub struct Sli {
    pending: BTreeMap<u64, Time>,
    next_id: u64,
    pub total: u64,
    pub bad: u64,
    pub by_incident: u64,
}

impl Sli {
    /// A request sent at `now`: its id.
    pub fn sent(&mut self, now: Time) -> u64 {
        self.next_id += 1;
        self.pending.insert(self.next_id, now);
        self.next_id
    }

    /// An answer: failed or not, and if failed whether an incident caused it.
    pub fn answered(&mut self, id: u64, ok: bool, by_incident: bool) {
        if self.pending.remove(&id).is_some() {
            (self.total, self.bad) = (self.total + 1, self.bad + !ok as u64);
            self.by_incident += (!ok && by_incident) as u64;
        }
    }

    /// The counters (total, bad) at `now`, requests waiting `timeout_us` or longer counted as failed first.
    pub fn counters(&mut self, now: Time, timeout_us: Micros) -> (u64, u64) {
        while self.pending.first_key_value().is_some_and(|(_, &at)| now.since(at) >= timeout_us) {
            self.pending.pop_first();
            (self.total, self.bad) = (self.total + 1, self.bad + 1);
        }
        (self.total, self.bad)
    }
}

/// Steps of an incident at burn `r` until a window of `n` steps, full of the baseline burn
/// `r0` before, averages above `threshold`: `⌊n·(B − r0)/(r − r0)⌋ + 1` (0 if the baseline
/// alone exceeds it; `None` if the incident never makes it, `r ≤ B`).
pub fn steps_to_fire(n: u64, threshold: f64, r0: f64, r: f64) -> Option<u64> {
    if r0 > threshold {
        return Some(0);
    }
    if r <= threshold {
        return None;
    }
    let k = (n as f64 * (threshold - r0) / (r - r0)).floor() as u64 + 1;
    Some(k.min(n))
}

/// Steps until `rule` fires on such an incident: the later of its two windows.
pub fn rule_fires_after(rule: &Rule, step_us: Micros, r0: f64, r: f64) -> Option<u64> {
    let n = |w: Micros| (w as f64 / step_us as f64).round().max(1.0) as u64;
    let long = steps_to_fire(n(rule.long_us), rule.burn, r0, r)?;
    Some(long.max(steps_to_fire(n(rule.short_us), rule.burn, r0, r)?))
}

/// An incident's shape: its bad share over time from its start; the baseline's otherwise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Shape {
    /// A share `rate` of requests fails for `len_us` (an outage at 1.0, a slow burn just over `b`).
    Steady { rate: f64, len_us: Micros },
    /// `bursts` bursts at `rate`, each `burst_us` long, one starting every `every_us` (flapping).
    Bursts { rate: f64, burst_us: Micros, every_us: Micros, bursts: u32 },
}

impl Shape {
    /// Flapping as a dependency flaps: `bursts` bursts of 3 minutes at `rate`, one an hour.
    pub fn flapping(rate: f64, bursts: u32, slo: &Slo) -> Shape {
        Shape::Bursts { rate, burst_us: slo.minutes_us(3.0), every_us: slo.hours_us(1.0), bursts }
    }

    /// How long it lasts, from its start to the end of its last burst.
    pub fn len_us(&self) -> Micros {
        match *self {
            Shape::Steady { len_us, .. } => len_us,
            Shape::Bursts { burst_us, every_us, bursts, .. } => {
                (bursts.max(1) as u64 - 1) * every_us + burst_us.min(every_us)
            }
        }
    }

    /// Its bad share `since_us` after its start, if it raises it then (None: the baseline's).
    pub fn rate_at(&self, since_us: Micros) -> Option<f64> {
        match *self {
            Shape::Steady { rate, len_us } => (since_us < len_us).then_some(rate),
            Shape::Bursts { rate, burst_us, every_us, .. } => {
                (since_us < self.len_us() && since_us % every_us.max(1) < burst_us).then_some(rate)
            }
        }
    }

    /// Time spent at its own rate in its first `since_us`.
    pub fn raised_us(&self, since_us: Micros) -> Micros {
        let t = since_us.min(self.len_us());
        match *self {
            Shape::Steady { .. } => t,
            Shape::Bursts { burst_us, every_us, .. } => {
                let (every, burst) = (every_us.max(1), burst_us.min(every_us.max(1)));
                (t / every) * burst + (t % every).min(burst)
            }
        }
    }

    fn rate(&self) -> f64 {
        match *self {
            Shape::Steady { rate, .. } | Shape::Bursts { rate, .. } => rate,
        }
    }

    /// The share of the budget it burns above a baseline bad share `p0` in its first
    /// `since_us`: `(rate − p0)/b × raised time / P`.
    pub fn consumed(&self, since_us: Micros, p0: f64, slo: &Slo) -> f64 {
        slo.consumed(slo.burn((self.rate() - p0).max(0.0)), self.raised_us(since_us) as f64)
    }

    /// All it burns above the baseline, start to end.
    pub fn budget(&self, p0: f64, slo: &Slo) -> f64 {
        self.consumed(self.len_us(), p0, slo)
    }

    /// Its mean burn rate over its span, baseline included: above 1, it burns faster than the
    /// budget allows.
    pub fn mean_burn(&self, p0: f64, slo: &Slo) -> f64 {
        let len = self.len_us().max(1) as f64;
        slo.burn(p0) + slo.burn((self.rate() - p0).max(0.0)) * self.raised_us(self.len_us()) as f64 / len
    }
}

/// An incident as it happened: its kind, true start and shape.
#[derive(Clone, Debug)]
pub struct Incident {
    pub kind: &'static str,
    pub start: Time,
    pub shape: Shape,
}

impl Incident {
    pub fn end(&self) -> Time {
        self.start.plus(self.shape.len_us())
    }
}

/// The truth about a service's errors — its SLO, the baseline's bad share and the incidents —
/// for checks that judge alerts (a god's-eye log, not what a monitor sees).
#[derive(Clone, Debug)]
pub struct Incidents {
    pub slo: Slo,
    /// The baseline's bad share.
    pub p0: f64,
    pub log: Vec<Incident>,
}

impl Incidents {
    pub fn new(slo: Slo, p0: f64) -> Incidents {
        Incidents { slo, p0, log: Vec::new() }
    }

    /// The bad share at `now`: the baseline's, or the highest of the incidents raising it (and which).
    pub fn rate(&self, now: Time) -> (f64, Option<&'static str>) {
        let raised = self.log.iter().filter(|i| i.start <= now);
        let raised = raised.filter_map(|i| Some((i.shape.rate_at(now.since(i.start))?, Some(i.kind))));
        raised.fold((self.p0, None), |a, b| if b.0 > a.0 { b } else { a })
    }

    /// A request failing at the bad share `rate`, decided by one uniform draw `u`: (succeeded,
    /// failed by an incident). Below the baseline's share the baseline fails it, above it only
    /// an incident does — so the twin without incidents is this run, not another.
    pub fn outcome(&self, rate: f64, u: f64) -> (bool, bool) {
        (u >= rate, u < rate && u >= self.p0)
    }

    /// Broken at `now` if an incident in force burns faster than the budget allows (mean burn
    /// over 1), has burnt `bound` of it, and no alert fired because of incidents since it started
    /// (`last_caused`: see [`Alerting::last_caused`]; noise that happens to fire does not count).
    pub fn unalerted(&self, now: Time, bound: f64, last_caused: Option<Time>) -> Result<(), String> {
        let (slo, p0) = (&self.slo, self.p0);
        for i in self.log.iter().filter(|i| i.start <= now && now < i.end()) {
            let (burnt, burn) = (i.shape.consumed(now.since(i.start), p0, slo), i.shape.mean_burn(p0, slo));
            if burn > 1.0 && burnt >= bound && last_caused.is_none_or(|t| t < i.start) {
                let (kind, at, pct) = (i.kind, slo.when(i.start), burnt * 100.0);
                return Err(format!(
                    "the {kind} from {at} ({burn:.1}× burn) has burnt {pct:.1}% of the budget, unalerted"
                ));
            }
        }
        Ok(())
    }

    /// Whether an alert `(at, severity, caused)` is justified: raised by incidents' errors, not
    /// noise (`caused`: see [`Alerting`]), and following an incident worth it — one in force
    /// within the 3 days before (the ticket rule's long window) that burns at least `minor` of
    /// the budget.
    pub fn justify(&self, &(at, severity, caused): &(Time, Severity, bool), minor: f64) -> Result<(), String> {
        if !caused {
            let at = self.slo.when(at);
            return Err(format!("{severity:?} at {at} on noise: the baseline alone fires the rules as loud"));
        }
        let lookback = self.slo.hours_us(72.0);
        let recent: Vec<&Incident> = self.log.iter().filter(|i| i.start <= at && i.end().plus(lookback) > at).collect();
        let budget = |i: &Incident| i.shape.budget(self.p0, &self.slo);
        if recent.iter().any(|i| budget(i) >= minor) {
            return Ok(());
        }
        let what: Vec<String> = recent
            .iter()
            .map(|i| format!("the {} from {} ({:.1}%)", i.kind, self.slo.when(i.start), budget(i) * 100.0))
            .collect();
        let what = if what.is_empty() { "no incident, the baseline alone".to_string() } else { what.join(", ") };
        let (at, minor) = (self.slo.when(at), minor * 100.0);
        Err(format!("{severity:?} at {at} with {what} in the 3 days before (minor: under {minor:.0}%)"))
    }

    /// The latest incident alerted while in force: from its start to its first alert.
    pub fn detection_us(&self, sent: &[(Time, Severity, bool)]) -> Option<Micros> {
        self.log.iter().rev().find_map(|i| {
            let first = sent.iter().find(|(at, ..)| i.start <= *at && *at < i.end())?;
            Some(first.0.since(i.start))
        })
    }
}

/// A monitor's side of burn-rate alerting: step counts from scrapes of cumulative counters,
/// their twin without the failures incidents caused (for the checks), and the alert's state.
#[derive(Clone, Debug)]
pub struct Watch {
    pub counts: Counts,
    twin: Counts,
    pub alerting: Alerting,
}

impl Watch {
    pub fn new(counts: Counts) -> Watch {
        Watch { twin: counts.clone(), counts, alerting: Alerting::default() }
    }

    /// A scrape of the counters (total, bad, bad by incidents) at `now`, `rules` evaluated on
    /// it: the severity to notify if the alert rose (each held `keep_us` after it last fired).
    pub fn scraped(
        &mut self,
        (total, bad, by_incident): (u64, u64, u64),
        rules: &[Rule],
        now: Time,
        keep_us: Micros,
    ) -> Option<Severity> {
        self.counts.scraped(total, bad);
        self.twin.scraped(total, bad.saturating_sub(by_incident));
        self.alerting.evaluate(self.counts.severity(rules), self.twin.severity(rules), now, keep_us)
    }
}

/// An alert's state across evaluations, as Prometheus and Alertmanager keep it: the loudest
/// rule firing, each severity held for a while after its rule last fired (`keep_firing_for`,
/// so noise at a threshold does not flap it), and a notification each time it rises.
///
/// Beside it, for the checks, the god's-eye cause: the same rules evaluated on a twin of the
/// counts without the failures incidents caused (common random numbers: a request an incident
/// failed is one the baseline alone would have served). A firing is **caused by incidents**
/// when the rules fire louder on the counts than on the twin — noise that would have fired
/// anyway is not.
#[derive(Clone, Debug, Default)]
pub struct Alerting {
    pub severity: Severity,
    /// The latest evaluation at which the rules fired because of incidents.
    pub last_caused: Option<Time>,
    /// When a ticket's and a page's rules last fired.
    held: [Option<Time>; 2],
    /// Every notification: when, how loud, and whether incidents caused it.
    pub sent: Vec<(Time, Severity, bool)>,
}

impl Alerting {
    /// One evaluation at `now` where `fired` is the loudest rule firing and `anyway` the
    /// loudest firing on the twin without incidents: the severity to notify, if the alert rose.
    pub fn evaluate(&mut self, fired: Severity, anyway: Severity, now: Time, keep_us: Micros) -> Option<Severity> {
        let caused = fired > anyway;
        if caused {
            self.last_caused = Some(now);
        }
        if fired > Severity::Quiet {
            self.held[fired as usize - 1] = Some(now);
        }
        let held = |i: usize| self.held[i].is_some_and(|t| now.since(t) < keep_us);
        let severity = match (held(1), held(0)) {
            (true, _) => Severity::Page,
            (false, true) => Severity::Ticket,
            (false, false) => Severity::Quiet,
        };
        let rose = severity > self.severity;
        self.severity = severity;
        if rose {
            self.sent.push((now, severity, caused));
        }
        rose.then_some(severity)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::cohort::binomial;
    use faultline_core::{Rng, MICROS_PER_S};

    const P: Micros = 720 * MICROS_PER_S;

    fn slo() -> Slo {
        Slo::new(9_990, P)
    }

    #[test]
    fn the_workbook_rules_consume_2_5_and_10_percent_of_the_budget() {
        let s = slo();
        assert!((s.budget - 0.001).abs() < 1e-12);
        let shares: Vec<f64> = workbook_rules(&s).iter().map(|r| s.consumed(r.burn, r.long_us as f64)).collect();
        for (got, want) in shares.iter().zip([0.02, 0.05, 0.10]) {
            assert!((got - want).abs() < 1e-9, "{shares:?}");
        }
        // An hour is one simulated second here; the short windows are a twelfth of the long.
        let r = workbook_rules(&s);
        assert_eq!((r[0].long_us, r[0].short_us, r[2].short_us), (MICROS_PER_S, 83_333, 6 * MICROS_PER_S));
        assert_eq!(s.compression(), "30 days = 720 s: 1 h = 1.00 s");
        assert_eq!(r[0].describe(&s, 3.25, 0.4), "1 h 3.2× · 5 min 0.4× vs 14.4×");
        assert_eq!(r[2].describe(&s, 1.0, 2.0), "3 d 1.0× · 6 h 2.0× vs 1.0×");
    }

    #[test]
    fn windows_sum_the_last_steps_and_reach_back_into_the_history() {
        let mut c = Counts::new(slo(), 1000, 10_000, (100.0, 0.05));
        let near = |(t, b): (f64, f64), (wt, wb): (f64, f64)| (t - wt).abs() < 1e-9 && (b - wb).abs() < 1e-9;
        assert!(near(c.window(5000), (500.0, 0.25)), "before any step: history alone");
        for k in 0..30u64 {
            c.record(100, k % 3);
        }
        // The last five steps: k = 25..=29, bad 1, 2, 0, 1, 2.
        assert!(near(c.window(5000), (500.0, 6.0)));
        assert!((c.burn(5000) - 6.0 / 500.0 / 0.001).abs() < 1e-9);
        assert_eq!(c.steps(), 30);
        // Only the longest window's steps are kept.
        assert!(c.cum.len() <= 11);
        let mut c = Counts::new(slo(), 1000, 10_000, (100.0, 0.05));
        c.record(100, 1);
        assert!(near(c.window(3000), (300.0, 1.1)), "one step and two of history");
        // Scrapes of cumulative counters, one reset by a restart in between.
        c.scraped(100, 1);
        c.scraped(250, 3);
        c.scraped(40, 1);
        assert!(near(c.window(3000), (40.0 + 150.0 + 100.0, 1.0 + 2.0 + 1.0)));
    }

    #[test]
    fn a_rule_needs_both_windows_and_the_loudest_rule_wins() {
        let s = slo();
        let rules = workbook_rules(&s);
        let step = s.minutes_us(1.0);
        let mut c = Counts::new(s, step, rules[2].long_us, (1000.0, 0.5));
        assert_eq!(c.severity(&rules), Severity::Quiet);
        // One minute of a full outage: the 5-minute window is at 200×, the hour at ~17×.
        c.record(1000, 1000);
        assert!(c.fires(&rules[0]) && c.severity(&rules) == Severity::Page);
        // Five quiet minutes later the short window has let go, though the hour still burns.
        for _ in 0..5 {
            c.record(1000, 0);
        }
        assert!(c.burn(rules[0].long_us) > 14.4 && !c.fires(&rules[0]));
    }

    #[test]
    fn steps_to_fire_is_the_first_step_the_window_average_passes_the_threshold() {
        // n = 60, B = 14.4, clean window, a full outage at 1000×: 60·14.4/1000 = 0.864 → 1 step.
        assert_eq!(steps_to_fire(60, 14.4, 0.0, 1000.0), Some(1));
        // A 2× burn over a baseline of 0.5 against B = 1 in a 4,320-step window: 1,440 → 1,441.
        assert_eq!(steps_to_fire(4320, 1.0, 0.5, 2.0), Some(1441));
        assert_eq!(steps_to_fire(4320, 1.0, 0.5, 1.0), None);
        assert_eq!(steps_to_fire(10, 1.0, 1.5, 1.2), Some(0));
        // Brute force: the average after k steps, the first k above.
        for (n, b, r0, r) in [(60u64, 14.4, 0.3, 50.0), (360, 6.0, 0.0, 7.5), (4320, 1.0, 0.6, 3.0)] {
            let brute = (1..=n).find(|&k| (r0 * (n - k) as f64 + r * k as f64) / n as f64 > b);
            assert_eq!(steps_to_fire(n, b, r0, r), brute, "n {n} B {b} r0 {r0} r {r}");
        }
    }

    /// Runs a step series of Poisson-ish draws (binomial per step) at a baseline, then an
    /// incident at burn `r` from step `start`: the steps from its start until `rule` fires.
    fn simulate(rule: &Rule, r0: f64, r: f64, per_step: u64, rng: &mut Rng) -> u64 {
        let s = slo();
        let step = s.minutes_us(1.0);
        let mut c = Counts::new(s, step, rule.long_us, (per_step as f64, per_step as f64 * r0 * s.budget));
        for k in 0.. {
            let p = if k >= 100 { r } else { r0 } * s.budget;
            let bad = binomial(per_step, p, rng);
            c.record(per_step, bad);
            if k >= 100 && c.fires(rule) {
                return k - 99;
            }
            assert!(k < 100_000, "never fired");
        }
        unreachable!()
    }

    #[test]
    fn simulated_detection_matches_the_window_average_formula() {
        // Detection time t = W·(B − r0)/(r − r0), from a clean window B·b·W/e; the budget the
        // incident has burnt then, (B − r0)·W/P. Bad requests are Bernoulli draws: the window
        // holds N = W·λ requests, and its bad count has a standard deviation √(N·p) around
        // N·p; the time to cross moves by that over the slope (r − r0)·b·λ per step. At 2,000
        // requests a minute the sd of the crossing is under 1.5% of the long window for these
        // cases; we allow 3 sd and the one-step granularity (the mean over 20 runs is tighter).
        let s = slo();
        let rules = workbook_rules(&s);
        let mut rng = Rng::new(11);
        let step = s.minutes_us(1.0);
        for (rule, r0, r) in
            [(rules[0], 0.0, 1000.0), (rules[0], 0.5, 30.0), (rules[1], 0.5, 10.0), (rules[2], 0.5, 2.0)]
        {
            let formula = rule_fires_after(&rule, step, r0, r).expect("fires");
            let exact_us = rule.long_us as f64 * (rule.burn - r0) / (r - r0);
            let exact = exact_us / step as f64;
            // Up to one step apart, and a hair more: the step is rounded to whole µs.
            assert!((formula as f64 - exact).abs() <= 1.05, "discrete {formula} vs continuous {exact}");
            let runs: Vec<u64> = (0..20).map(|_| simulate(&rule, r0, r, 2000, &mut rng)).collect();
            let mean = runs.iter().sum::<u64>() as f64 / runs.len() as f64;
            let n = (rule.long_us / step) as f64;
            let tol = 1.0 + 0.03 * n;
            assert!((mean - formula as f64).abs() <= tol, "{rule:?} r0 {r0} r {r}: {mean} vs {formula} (±{tol})");
            // The budget burnt by then: (B − r0)·W/P within the same tolerance.
            let burnt = s.consumed(r - r0, mean * step as f64);
            let want = s.consumed(rule.burn - r0, rule.long_us as f64);
            assert!((burnt - want).abs() <= s.consumed(r - r0, tol * step as f64), "{burnt} vs {want}");
        }
    }

    #[test]
    fn shapes_burn_what_their_integral_says() {
        let s = slo();
        let hour = s.hours_us(1.0);
        // A 5-minute outage burns 1000 × 5/43,200 = 11.6% (above a baseline of 0.05%: 11.57%).
        let outage = Shape::Steady { rate: 1.0, len_us: s.minutes_us(5.0) };
        assert!((outage.budget(0.0, &s) - 5.0 / 43.2).abs() < 1e-3);
        assert!((outage.budget(0.0005, &s) - 0.9995 * 5.0 / 43.2).abs() < 1e-3);
        assert_eq!((outage.rate_at(0), outage.rate_at(s.minutes_us(5.0))), (Some(1.0), None));
        // Four hourly 3-minute bursts at 5%: 4 × 3 × 50 / 43,200 (above 0: 1.39%), mean burn
        // over its 3 h 3 min span 0.5 + 49.5 × 12 min / 183 min.
        let flap = Shape::Bursts { rate: 0.05, burst_us: s.minutes_us(3.0), every_us: hour, bursts: 4 };
        assert_eq!(flap.len_us(), 3 * hour + s.minutes_us(3.0));
        assert!((flap.budget(0.0, &s) - 600.0 / 43_200.0).abs() < 1e-4);
        assert!((flap.mean_burn(0.0005, &s) - (0.5 + 49.5 * 12.0 / 183.0)).abs() < 1e-2);
        assert_eq!(flap.raised_us(hour + s.minutes_us(1.0)), s.minutes_us(3.0) + s.minutes_us(1.0));
        assert_eq!((flap.rate_at(hour + 1), flap.rate_at(hour - 1)), (Some(0.05), None));
        // A 2× slow burn for 80 h over a baseline of 0.5×: 1.5 × 80/720 = 16.7%.
        let slow = Shape::Steady { rate: 0.002, len_us: 80 * hour };
        assert!((slow.budget(0.0005, &s) - 1.5 * 80.0 / 720.0).abs() < 1e-6);
        assert!((slow.mean_burn(0.0005, &s) - 2.0).abs() < 1e-9);
    }
    #[test]
    fn the_sli_counts_each_request_once_and_a_timeout_as_a_failure() {
        let mut sli = Sli::default();
        let (a, b, c) = (sli.sent(Time(0)), sli.sent(Time(10)), sli.sent(Time(50)));
        sli.answered(a, true, false);
        assert_eq!(sli.counters(Time(60), 40), (2, 1), "b waited 50 ≥ 40: failed; c not yet");
        sli.answered(b, true, false);
        sli.answered(c, false, true);
        sli.answered(c, false, true);
        assert_eq!(sli.counters(Time(200), 40), (3, 2), "b's late answer and c's repeat ignored");
        assert_eq!(sli.by_incident, 1, "c's failure tagged once; b's timeout is no incident's");
    }

    #[test]
    fn an_alert_notifies_when_it_rises_and_holds_through_noise() {
        use Severity::{Page, Quiet, Ticket};
        let mut a = Alerting::default();
        let t = |s| Time::from_secs(s);
        assert_eq!(a.evaluate(Ticket, Quiet, t(1), 5_000_000), Some(Ticket));
        // Quiet for less than the hold, then firing again: the same alert, not a new one.
        assert_eq!(a.evaluate(Quiet, Quiet, t(3), 5_000_000), None);
        assert_eq!((a.evaluate(Ticket, Quiet, t(5), 5_000_000), a.severity), (None, Ticket));
        // Escalation notifies; falling back does not; after the hold it is quiet, and rises anew.
        assert_eq!(a.evaluate(Page, Quiet, t(6), 5_000_000), Some(Page));
        assert_eq!(a.evaluate(Quiet, Quiet, t(12), 5_000_000), None);
        assert_eq!(a.severity, Quiet);
        // A ticket the twin without incidents fires too: noise, not caused by an incident.
        assert_eq!(a.evaluate(Ticket, Ticket, t(13), 5_000_000), Some(Ticket));
        assert_eq!(a.sent.iter().map(|s| s.2).collect::<Vec<_>>(), [true, true, false]);
        assert_eq!(a.last_caused, Some(t(6)));
        // A page over the twin's ticket is the incident's doing.
        assert_eq!(a.evaluate(Page, Ticket, t(14), 5_000_000), Some(Page));
        assert_eq!((a.sent[3].2, a.last_caused), (true, Some(t(14))));
    }

    #[test]
    fn incidents_say_which_alerts_they_justify_and_which_they_were_owed() {
        let s = slo();
        let mut log = Incidents::new(s, 0.0005);
        let hour = s.hours_us(1.0);
        let flap = Shape::flapping(0.05, 4, &s);
        log.log.push(Incident { kind: "flapping", start: Time(2 * hour), shape: flap });
        let slow = Shape::Steady { rate: 0.002, len_us: 80 * hour };
        log.log.push(Incident { kind: "slow-burn", start: Time(200 * hour), shape: slow });
        assert_eq!(log.rate(Time(2 * hour + 1)), (0.05, Some("flapping")));
        assert_eq!(log.rate(Time(100 * hour)), (0.0005, None));
        // One draw: under the baseline's share a baseline failure, up to the incident's an incident's.
        assert_eq!([0.0004, 0.03, 0.06].map(|u| log.outcome(0.05, u)), [(false, false), (false, true), (true, false)]);
        // A page during the flapping is false (1.4% of the budget); one on the slow burn is not,
        // unless noise raised it.
        let page = |at| (Time(at), Severity::Page, true);
        assert!(log.justify(&page(2 * hour + 10), 0.02).is_err_and(|e| e.contains("flapping")));
        assert!(log.justify(&page(100 * hour), 0.02).is_err_and(|e| e.contains("baseline alone")));
        assert!(log.justify(&(Time(201 * hour), Severity::Ticket, true), 0.02).is_ok());
        let noise = (Time(201 * hour), Severity::Ticket, false);
        assert!(log.justify(&noise, 0.02).is_err_and(|e| e.contains("on noise")));
        // The slow burn burns 1.5/720 an hour: 12% after 57.6 h, owed an alert from then.
        let owed = |h: f64, alerted| log.unalerted(Time(((200.0 + h) * hour as f64) as u64), 0.12, alerted);
        assert!(owed(57.0, None).is_ok() && owed(58.0, None).is_err());
        assert!(owed(58.0, Some(Time(201 * hour))).is_ok() && owed(58.0, Some(Time(199 * hour))).is_err());
        assert_eq!(log.detection_us(&[(Time(222 * hour), Severity::Ticket, true)]), Some(22 * hour));
        // Messages give the SLO's hours and the clock's seconds.
        let e = log.justify(&page(2 * hour + 10), 0.02).unwrap_err();
        assert!(e.contains("Page at 2.0 h (t=2.000010s)") && e.contains("flapping from 2.0 h (t=2s)"), "{e}");
    }
}
