//! Canary analysis: a new version takes a share of the traffic beside the fleet, and a judge
//! rolls it back or promotes it — by a fixed threshold on a short window, or by Wald's
//! sequential probability ratio test against the expected rate or against the baseline
//! observed at the same time.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::judge::Judge;
use crate::parts::sprt::{canary_share_of_errors, Decision, Paired, Sprt, Step};
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, one entry to a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "canary-analysis",
        title: "Canary analysis",
        category: "Deployment & rollout",
        seeds: &["S0#13", "S3#70", "S2#12"],
        summary: "2,000 req/s; each deploy sends 10% of them to a canary. v2 (as good as the fleet's 0.1% errors) \
                  goes out at 1 s and a shared dependency blips at 5 s; v3 (0.5% errors) goes out at 40 s. A \
                  threshold on a 5 s window, and an SPRT against the expected 0.1%, roll the good v2 back on the \
                  blip; an SPRT against the baseline observed at the same time promotes v2 and rolls v3 back.",
        note: Note {
            what_can_go_wrong: "Is 0.5% vs 0.1% significant, or noise? At 200 req/s a 5 s window holds ~1 error \
                from a good canary and ~5 from a bad one: a threshold between them rolls back good versions on \
                noise (more often the more windows it looks at) and, at a smaller share, promotes bad ones. A \
                test against a fixed expected rate blames the canary for a blip in a dependency both share. The \
                model: Poisson requests, each to the canary with the share's chance while one is under analysis, \
                else to the fleet; each errs independently at its version's rate plus the blip's (additive); links \
                take 0.2–1 ms; the router waits 1 s for an answer and counts a request that times out (a crashed \
                or cut-off server) as an error of the side it went to, as a balancer's 5xx would be. p0 is the fleet's \
                long-run rate (from history); p1 the bad rate the test must catch; a version is good at or under \
                the fleet's rate, bad at or over p1 (between them no test promises anything).",
            what_you_sacrifice: "Time and traffic for certainty: with α = β = 0.1% Wald's test needs ~30–40 \
                errors' worth of evidence either way — 10–20 s here, and several times longer at a tenth of the \
                share, since only errors carry information about a rare-error rate. Comparing with the baseline \
                costs another ~1.2–1.4× over testing against a known rate. A shared fault stops its clock: while the \
                fleet's last second holds over 10 + 5× its usual errors, evidence is held (the errors of an outage \
                that hits both sides would say 'the canary errs like the fleet' and promote a bad version), so a \
                long outage delays the verdict; one milder than that still dilutes the evidence.",
            at_10x: "Ten times the traffic decides ten times faster; ten times the deploys a day makes α matter: \
                at 0.1% per good deploy, 50 deploys a day falsely roll back one every 20 days. Many metrics \
                (latency, saturation) tested at once multiply the false rollbacks unless each gets its share of α.",
            resembles: "Spinnaker's Kayenta (a fresh baseline cluster beside the canary, compared by a Mann-Whitney \
                test), Argo Rollouts and Flagger analysis runs (threshold checks every interval), sequential \
                A/B testing (Optimizely's always-valid p-values), vaccine safety surveillance (MaxSPRT).",
            try_this: &[
                "Play `threshold`: the blip at 5 s puts ~10 errors in v2's window and at 6 s it rolls the good \
                 version back: `good-not-rolled-back` fails. `sprt` does the same at the blip's start: it expects \
                 0.1% from the canary and sees 5%.",
                "Switch to `sprt-vs-baseline`: it counts only errors, each the canary's with a 10% chance if the \
                 canary is as good as the fleet. At the blip the fleet errs too, so it holds its evidence ('evidence \
                 held' at ~5.2 s), then promotes v2; v3 is rolled back after ~2,000 of its requests; both checks hold.",
                "Set the blip to 0 and the canary share to 1%: `threshold` now sees ~100 requests a window; over \
                 seeds it rolls back the good v2 or promotes the bad v3 (the fleet then serves 0.5% errors). \
                 `sprt-vs-baseline` never does either, it just takes longer: v2 is still undecided when v3 replaces \
                 it at 40 s, and v3 is rolled back after ~90 s (~1,800 of its requests) — play to 300 s.",
            ],
        },
    },
    params: &[
        ParamSpec::live("rps", "Requests", "req/s", 100..=10_000, 2000, "Poisson requests at the router.").step(100),
        ParamSpec::live("canary_pct", "Canary share", "%", 1..=50, 10, "The share sent to a canary under analysis."),
        ParamSpec::setup("baseline_bp", "Fleet error rate", "bp", 1..=500, 10, "In 0.01%s: 10 = 0.1%. The tests' p0."),
        ParamSpec::setup("bad_bp", "Bad version's error rate", "bp", 2..=1000, 50, "v3's rate, and the tests' p1 (over the fleet's)."),
        ParamSpec::setup("alpha_bp", "SPRT α", "bp", 1..=2000, 10, "The chance it rolls back a good version."),
        ParamSpec::setup("beta_bp", "SPRT β", "bp", 1..=2000, 10, "The chance it promotes a bad version."),
        ParamSpec::setup("threshold_bp", "Threshold", "bp", 1..=1000, 30, "Roll back when a window errs more."),
        ParamSpec::setup("window_s", "Threshold window", "s", 1..=60, 5, "Judged at the end of each window."),
        ParamSpec::setup("analysis_s", "Threshold analysis", "s", 1..=600, 20, "Promote after this long if no window failed."),
        ParamSpec::setup("blip_bp", "Dependency blip", "bp", 0..=10_000, 500, "Errors added to both from 5 s for 2 s."),
        ParamSpec::setup("bad_at_s", "Bad deploy at", "s", 1..=600, 40, "When the plan deploys the bad v3."),
        ParamSpec::setup("bound_requests", "Rollback bound", "requests", 100..=100_000, 10_000, "A bad version serves at most these.")
            .step(100),
    ],
    strategies: &[
        StrategySpec::naive("threshold", "Threshold on a window", "Roll back if a window's error rate is over the threshold; \
            promote after the analysis time."),
        StrategySpec::naive("sprt", "SPRT vs the expected rate", "Wald's test of the canary's answers: p0 (the fleet's usual \
            rate) against p1."),
        StrategySpec::fixed("sprt-vs-baseline", "SPRT vs the baseline now", "Wald's test of which side each error came \
            from: the canary's share against the share a p1/p0 worse canary would take."),
    ],
    faults: &[
        FaultSpec::global("deploy", "Deploy a version", "A new version replaces the canary (1: a bad one).").value("bad", 0..=1, 1),
        FaultSpec::global("blip", "Dependency blip", "Errors added to every request (0 ends it).").value("bp", 0..=10_000, 500),
        FaultSpec::global("canary-goes-bad", "The canary goes bad", "Its version errs at the bad rate from now (a leak)."),
    ],
    checks: &[
        CheckSpec::new("bad-rolled-back", "A bad version is rolled back in time", "It serves at most the bound's requests."),
        CheckSpec::new("good-not-rolled-back", "A good version is not rolled back", "One as good as the fleet is promoted."),
    ],
    metrics: &[
        MetricSpec::new("decide", "Time to decide (latest)", "ms", Measure::Gauge("decide_ms")),
        MetricSpec::new("false_rollbacks", "False rollbacks", "rollbacks", Measure::Count("false_rollbacks")),
        MetricSpec::new("exposed", "Requests served by a bad version", "requests", Measure::Count("exposed")),
        MetricSpec::new("bad_errors", "Errors served by a bad version", "errors", Measure::Count("bad_errors")),
        MetricSpec::new("evidence", "Evidence (log-likelihood ratio)", "", Measure::GaugePer("llr_x100", 100.0)),
    ],
    layout: Layout::Tiers,
    default_until: 100 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Threshold, Sprt, Paired });

const ROUTER: NodeId = 0;
const FLEET: NodeId = 1;
const CANARY: NodeId = 2;

/// A version: its number and true error rate (bp), and whether it is a bad one (at p1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Version {
    number: u32,
    error_bp: i64,
    bad: bool,
}

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(CallId),
    /// The version that answered, and whether it answered without an error.
    Reply(CallId, u32, bool),
    /// The canary is up with a new version: analysis starts.
    Ready(Version),
    /// The router's verdict: the canary retires, and on promotion hands its version to the fleet.
    Retire(bool),
    Adopt(Version),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Arrive,
    Window(u32),
    CallTimeout(CallId),
}

/// How long the router waits for an answer before it counts the request as an error.
const TIMEOUT_US: Micros = MICROS_PER_S;

#[derive(Clone, Debug, Holds)]
pub enum Ca {
    Router(Box<Router>),
    Server(Server),
}

#[derive(Clone, Debug)]
pub struct Router {
    strategy: Strategy,
    arrivals: OpenLoop,
    /// Requests in flight: the node each went to and the version it was meant for.
    calls: Calls<(NodeId, u32)>,
    /// The paired test's evidence, held while the fleet errs far over its usual rate.
    paired: Paired,
    analysis: Option<Analysis>,
}

#[derive(Clone, Debug)]
pub struct Analysis {
    version: Version,
    since: Time,
    sprt: Sprt,
    window: Judge,
}

/// The fleet (one node for all its instances) or the canary.
#[derive(Clone, Debug)]
pub struct Server {
    canary: bool,
    /// The version it runs; a retired canary keeps it for the requests still on their way.
    version: Option<Version>,
    retired: bool,
    blip_bp: i64,
    next_number: u32,
    /// Requests served by this node's version since it went bad (0 while good).
    bad_served: u64,
    /// Its version crashed while serving: a rollback then has a cause, whatever its error rate.
    crashed: bool,
    /// The canary knows the truth of its version: a good one rolled back fails the check then.
    false_rollback: Breach,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ca> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1000 }));
    let (strategy, arrivals) = (Strategy::from_id(setup.strategy()), OpenLoop::poisson(setup.param("rps") as f64));
    let router =
        Router { strategy, arrivals, calls: Calls::new("latency_us"), paired: Paired::default(), analysis: None };
    assert_eq!(sim.add_node(Ca::Router(Box::new(router))), ROUTER);
    let v1 = Version { number: 1, error_bp: setup.param("baseline_bp"), bad: false };
    let server = |canary, version| Ca::Server(Server { canary, version, retired: canary, ..Server::idle(2) });
    assert_eq!(sim.add_node(server(false, Some(v1))), FLEET);
    assert_eq!(sim.add_node(server(true, None)), CANARY);
    // The plan: a good v2 at 1 s, a shared dependency's blip at 5 s, a bad v3 at `bad_at_s`.
    sim.schedule(Time::from_secs(1), Fault::custom("deploy", 0));
    FaultWindow::secs(5, 2).custom(&mut sim, "blip", None, setup.param("blip_bp"), 0);
    sim.schedule(Time::from_secs(setup.param("bad_at_s") as u64), Fault::custom("deploy", 1));
    sim.check("bad-rolled-back", |w| {
        let bound = w.param("bound_requests") as u64;
        for (id, what) in [(CANARY, "the canary"), (FLEET, "the fleet")] {
            let s = w.node::<Server>(id);
            if let (Some(v), false, true) = (s.version, s.retired, s.bad_served > bound) {
                let (n, bp, served) = (v.number, v.error_bp, s.bad_served);
                return Err(format!("{what}'s v{n} ({bp} bp errors) served {served} requests (bound {bound})"));
            }
        }
        Ok(())
    });
    sim.check("good-not-rolled-back", |w| w.node::<Server>(CANARY).false_rollback.now(w.now));
    Box::new(sim)
}

fn tone(bad: bool) -> Tone {
    [Tone::Good, Tone::Bad][bad as usize]
}

/// A bad version's rate and the tests' p1: kept above the fleet's, so a bad answer is evidence for H1.
fn bad_bp(ctx: &Ctx<Ca>) -> i64 {
    ctx.param("bad_bp").max(ctx.param("baseline_bp") + 1)
}

// The router's analysis and the servers' versions are a deploy controller's durable state (kept
// in its store): a router's crash loses the requests in flight and its timers (re-armed on start).
impl Node for Ca {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Ca::Router(r) = self {
            r.arrivals.start_at(ctx.param("rps") as f64, ctx, Timer::Arrive);
            if let Some(a) = &r.analysis {
                ctx.set_timer(ctx.param("window_s") as Micros * MICROS_PER_S, Timer::Window(a.version.number));
            }
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ca::Router(r) => drop(r.calls.clear(ctx)),
            Ca::Server(s) => s.crashed |= s.version.is_some() && !s.retired,
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ca::Router(r), Msg::Reply(id, version, ok)) => {
                if r.calls.reply(id, ctx).is_some() {
                    r.answered(from, version, ok, ctx)
                }
            }
            (Ca::Router(r), Msg::Ready(v)) => r.start(v, ctx),
            (Ca::Server(s), Msg::Request(id)) => s.serve(from, id, ctx),
            (Ca::Server(s), Msg::Retire(promoted)) => s.retire(promoted, ctx),
            (Ca::Server(s), Msg::Adopt(v)) => s.take(v),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ca::Router(r), Timer::Arrive) => r.arrive(ctx),
            (Ca::Router(r), Timer::Window(n)) => r.window_ends(n, ctx),
            (Ca::Router(r), Timer::CallTimeout(id)) => {
                if let Some((to, version)) = r.calls.timeout(id) {
                    ctx.count("timeouts", 1);
                    r.answered(to, version, false, ctx)
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ca::Router(r), Control::Strategy(id)) => r.strategy = Strategy::from_id(id),
            (Ca::Router(r), Control::Param { id: "rps", value }) => {
                r.arrivals.set_rate_per_s(value as f64, ctx, Timer::Arrive)
            }
            (Ca::Server(s), Control::Custom { id: "blip", value }) => s.blip_bp = value,
            (Ca::Server(s), Control::Custom { id, value }) if s.canary => s.deploy(id, value == 1, ctx),
            // The share is read per request; the rest are setup parameters; faults hit the servers.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ca::Router(r) => {
                let v = NodeView::new(NodeKind::LoadBalancer, 0, "router + judge");
                let Some(a) = &r.analysis else { return v.badge("no canary", Tone::Neutral) };
                let (llr, (up, down), sprt) = (a.sprt.llr(), a.sprt.bounds(), r.strategy != Strategy::Threshold);
                let evidence = format!("evidence {llr:.2} in ({down:.1}, {up:.1})");
                let held = r.paired.holding() && r.strategy == Strategy::Paired;
                v.badge(format!("analysing v{}", a.version.number), Tone::Warn)
                    .badge_if(sprt, evidence, Tone::Neutral)
                    .badge_if(held, "held: the fleet errs too", Tone::Bad)
            }
            Ca::Server(s) => {
                let v = NodeView::new(NodeKind::Service, 1, if s.canary { "canary" } else { "fleet" });
                match s.version.filter(|_| !s.retired) {
                    Some(x) => v.badge(format!("v{}: {:.2}% errors", x.number, x.error_bp as f64 / 100.0), tone(x.bad)),
                    None => v.badge("idle", Tone::Neutral),
                }
                .badge_if(s.blip_bp > 0, "dependency blip", Tone::Bad)
            }
        }
    }
}

impl Server {
    fn idle(next_number: u32) -> Server {
        let false_rollback = Breach::default();
        let (version, retired, bad_served, crashed) = (None, false, 0, false);
        Server { canary: false, version, retired, blip_bp: 0, next_number, bad_served, crashed, false_rollback }
    }

    /// A request answered by this node's version, failing at its rate plus the blip's.
    fn serve(&mut self, from: NodeId, id: CallId, ctx: &mut Ctx<Ca>) {
        let Some(v) = self.version else { return ctx.send(from, Msg::Reply(id, 0, false)) };
        let ok = ctx.rng().below(10_000) >= (v.error_bp + self.blip_bp).clamp(0, 10_000) as u64;
        if v.bad {
            self.bad_served += 1;
            ctx.count("exposed", 1);
            ctx.count("bad_errors", !ok as i64);
        }
        ctx.send(from, Msg::Reply(id, v.number, ok));
    }

    fn take(&mut self, v: Version) {
        (self.version, self.retired, self.bad_served, self.crashed) = (Some(v), false, 0, false);
    }

    /// The router's verdict reaches the canary, which knows whether its version was good.
    fn retire(&mut self, promoted: bool, ctx: &mut Ctx<Ca>) {
        let Some(v) = self.version.filter(|_| !self.retired) else { return };
        self.retired = true;
        if promoted {
            ctx.send(FLEET, Msg::Adopt(v));
        } else if self.crashed {
            ctx.note(format!("v{} rolled back after it crashed (its requests timed out)", v.number));
        } else if !v.bad && v.error_bp <= ctx.param("baseline_bp") {
            ctx.count("false_rollbacks", 1);
            let why = format!("v{} ({} bp errors, as good as the fleet) rolled back", v.number, v.error_bp);
            self.false_rollback.record(why, ctx.truth());
        }
    }

    /// The canary's faults: a new version (good: the fleet's rate; bad: p1's), or its version going bad.
    fn deploy(&mut self, id: &str, bad: bool, ctx: &mut Ctx<Ca>) {
        let version = match (id, self.version) {
            ("deploy", _) => {
                self.next_number += 1;
                let error_bp = if bad { bad_bp(ctx) } else { ctx.param("baseline_bp") };
                Version { number: self.next_number - 1, error_bp, bad }
            }
            // The router cannot know: the analysis goes on, with what the canary now answers.
            ("canary-goes-bad", Some(v)) if !self.retired => {
                self.take(Version { error_bp: bad_bp(ctx), bad: true, ..v });
                return ctx.note(format!("v{} on the canary went bad", v.number));
            }
            _ => return,
        };
        self.take(version);
        ctx.note(format!("v{} on the canary ({} bp errors)", version.number, version.error_bp));
        ctx.send(ROUTER, Msg::Ready(version));
    }
}

impl Router {
    fn arrive(&mut self, ctx: &mut Ctx<Ca>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let canary = self.analysis.as_ref().map(|a| a.version.number);
        let to = match canary {
            Some(number) if ctx.rng().below(100) < ctx.param("canary_pct") as u64 => (CANARY, number),
            _ => (FLEET, 0),
        };
        let id = self.calls.start(ctx, to, TIMEOUT_US, Timer::CallTimeout);
        ctx.send(to.0, Msg::Request(id));
    }

    /// A version is up on the canary: a fresh analysis (a new deploy abandons the old one's:
    /// the version it was judging no longer serves).
    fn start(&mut self, version: Version, ctx: &mut Ctx<Ca>) {
        if let Some(old) = self.analysis.take() {
            ctx.count("abandoned", 1);
            let (old, new) = (old.version.number, version.number);
            ctx.note(format!("v{old}'s analysis abandoned undecided: v{new} replaced it"));
        }
        let (alpha, beta) = (ctx.param("alpha_bp") as f64 / 1e4, ctx.param("beta_bp") as f64 / 1e4);
        let window = Judge::new(ctx.param("window_s") as Micros * MICROS_PER_S, 1, 1);
        self.paired.clear();
        self.analysis = Some(Analysis { version, since: ctx.now(), sprt: Sprt::new(alpha, beta), window });
        ctx.set_timer(ctx.param("window_s") as Micros * MICROS_PER_S, Timer::Window(version.number));
        ctx.gauge("llr_x100", 0);
    }

    /// An answer: counted, and fed to the judge in force.
    fn answered(&mut self, from: NodeId, version: u32, ok: bool, ctx: &mut Ctx<Ca>) {
        ctx.count(if ok { "ok" } else { "errors" }, 1);
        let (p0, p1) = (ctx.param("baseline_bp") as f64 / 1e4, bad_bp(ctx) as f64 / 1e4);
        if from == FLEET {
            self.paired.baseline(ctx.now(), ok);
        }
        let (shared, changed) = self.paired.shared(ctx.now(), p0);
        if let Some(saw) = changed.filter(|_| self.strategy == Strategy::Paired) {
            ctx.note(if shared { format!("evidence held: {saw}, a shared fault") } else { format!("resumed: {saw}") });
        }
        let Some(a) = self.analysis.as_mut() else { return };
        let canary = from == CANARY && version == a.version.number;
        if canary {
            a.window.record(ctx.truth(), !ok, 0);
        }
        let decision = match self.strategy {
            Strategy::Threshold => return,
            Strategy::Sprt if canary => a.sprt.observe(!ok, p0, p1),
            // Only errors carry evidence: whose was it? The canary's with the share's chance if
            // it errs like the fleet, with the larger conditional share if it errs at p1; held
            // (and the last second's voided) while the fleet itself errs.
            Strategy::Paired => {
                let (share, error) = (ctx.param("canary_pct") as f64 / 100.0, (!ok).then_some(canary));
                let q = (share, canary_share_of_errors(share, p1 / p0));
                match self.paired.observe(ctx.now(), error.filter(|_| canary || from == FLEET), shared, &mut a.sprt, q)
                {
                    Step::Voided(n) => return ctx.count("held", n as i64),
                    Step::Counted(decision) => decision,
                }
            }
            Strategy::Sprt => return,
        };
        ctx.gauge("llr_x100", (a.sprt.llr() * 100.0) as i64);
        match decision {
            Decision::Continue => {}
            Decision::AcceptH0 => self.decide(true, "SPRT accepted H0", ctx),
            Decision::AcceptH1 => self.decide(false, "SPRT accepted H1", ctx),
        }
    }

    /// The threshold's window k of n ends: roll back if it erred too much, promote after the last one.
    fn window_ends(&mut self, number: u32, ctx: &mut Ctx<Ca>) {
        let Some(a) = self.analysis.as_ref().filter(|a| a.version.number == number) else { return };
        let (window_us, until) = (ctx.param("window_s") as Micros * MICROS_PER_S, ctx.param("analysis_s") as u64);
        let v = a.window.verdict(ctx.truth(), Time::ZERO);
        let (t, why) =
            (ctx.param("threshold_bp"), format!("{} (> {} bp)", v.describe(window_us), ctx.param("threshold_bp")));
        let over = v.bad * 10_000 > t as u64 * v.total;
        let (k, n) = (ctx.now().since(a.since) / window_us, (until * MICROS_PER_S).div_ceil(window_us)); // k of n
        match self.strategy {
            Strategy::Threshold if over => self.decide(false, &format!("window {k} of {n}: {why}"), ctx),
            Strategy::Threshold if k >= n => self.decide(true, "no window over the threshold", ctx),
            _ => drop(ctx.set_timer(window_us, Timer::Window(number))),
        }
    }

    /// The verdict: promote (the fleet takes the version) or roll back; either way the canary retires.
    fn decide(&mut self, promote: bool, why: &str, ctx: &mut Ctx<Ca>) {
        let Some(a) = self.analysis.take() else { return };
        let took_us = ctx.now().since(a.since);
        ctx.gauge("decide_ms", (took_us / MICROS_PER_MS) as i64);
        ctx.observe("decide_us", took_us);
        ctx.send(CANARY, Msg::Retire(promote));
        let (counter, verdict) = [("rollbacks", "rolled back"), ("promotions", "promoted")][promote as usize];
        ctx.count(counter, 1);
        ctx.note(format!("v{} {verdict} after {} ms: {why}", a.version.number, took_us / MICROS_PER_MS));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::sprt::{asn_h0, asn_h1};
    use crate::parts::testing::{failed_at, run_sampled};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("canary-analysis", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        run_sampled(&SPEC, recipe, secs, &[]).0
    }

    fn count(r: &dyn Run, name: &str) -> i64 {
        r.metrics().counter(name)
    }

    #[test]
    fn try_threshold_and_sprt_roll_the_good_version_back_on_the_blip() {
        // The threshold's window ending at 6 s holds 1 s of the blip (~10 errors in ~1,000
        // requests: 1% > 0.3%); the plain SPRT jumps ln 5 per canary error, ~10 a second in the
        // blip, past ln A = 6.9 within a second — unless it promoted v2 before 5 s (rare: its
        // expected ~1,900 requests take ~9.5 s).
        for seed in 1..=5 {
            let r = run(&recipe("threshold", seed), 12);
            let (at, why) = failed_at(r.as_ref(), "good-not-rolled-back").expect("threshold rolls v2 back");
            assert!((6.0..6.1).contains(&at) && why.contains("v2"), "seed {seed}: {at} {why}");
        }
        let broke = (1..=5).filter(|&seed| {
            let r = run(&recipe("sprt", seed), 12);
            failed_at(r.as_ref(), "good-not-rolled-back").is_some_and(|(at, _)| (5.0..7.1).contains(&at))
        });
        assert!(broke.count() >= 4);
    }

    #[test]
    fn try_sprt_vs_baseline_promotes_v2_and_rolls_v3_back() {
        for seed in 1..=5 {
            let r = run(&recipe("sprt-vs-baseline", seed), 100);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let counts = ["promotions", "rollbacks", "false_rollbacks"].map(|c| count(r.as_ref(), c));
            assert_eq!(counts, [1, 1, 0], "seed {seed}");
            // v3's exposure: ~2,000 requests on average (ASN ≈ 29 errors at 2.8 errors/s, 200 req/s).
            let exposed = count(r.as_ref(), "exposed");
            assert!((200..10_000).contains(&exposed), "seed {seed}: {exposed}");
        }
    }

    #[test]
    fn try_threshold_at_a_small_share_flips_coins_and_the_paired_test_does_not() {
        // At 1% (20 req/s), a 5 s window holds ~100 requests: a good version errs in one with
        // chance 1 − e^(−0.1) = 9.5% (4 windows: 33% rolled back); a bad one errs in none with
        // chance e^(−0.5) = 61% (4 windows: 14% promoted). The paired test needs ~180 errors
        // (Wald's ASN under H1, at 2.1 errors/s: ~87 s) to roll v3 back: it is run to 300 s.
        let small = |st: &str, seed| recipe(st, seed).with_param("canary_pct", 1).with_param("blip_bp", 0);
        let (mut naive_wrong, mut paired_wrong) = (0, 0);
        for seed in 1..=20 {
            let r = run(&small("threshold", seed), 90);
            naive_wrong += r.checks().iter().any(|c| c.violation.is_some()) as u32;
            let r = run(&small("sprt-vs-baseline", seed), 300);
            paired_wrong += r.checks().iter().any(|c| c.violation.is_some()) as u32;
            let counts = ["rollbacks", "false_rollbacks"].map(|c| count(r.as_ref(), c));
            assert_eq!(counts, [1, 0], "seed {seed}: v3 rolled back, v2 not");
        }
        assert!(naive_wrong >= 5, "threshold wrong in {naive_wrong} of 20");
        assert_eq!(paired_wrong, 0);
    }

    /// Runs the first analysis (v2 at 1 s, no blip, no v3) to 59 s under α = β = 5%, bad from the
    /// start or not, for `seeds` seeds: the share rolled back and the mean time to decide (s)
    /// among those decided by then (Wald's test has no deadline: one in a few hundred runs
    /// longer than 5× its mean, and is left out — at most 1% may be).
    fn first_decisions(strategy: &str, bad: bool, seeds: u64) -> (f64, f64) {
        let (mut rolled, mut secs, mut decided) = (0, 0.0, 0);
        for seed in 1..=seeds {
            let mut r = recipe(strategy, seed).with_param("alpha_bp", 500).with_param("beta_bp", 500);
            r = r.with_param("blip_bp", 0).with_param("bad_at_s", 600);
            if bad {
                r = r.with_action(Time(MICROS_PER_S + 1), ActionKind::Fault(Fault::custom("canary-goes-bad", 0)));
            }
            let run = run(&r, 59);
            let Some(h) = run.metrics().histogram("decide_us") else { continue };
            (rolled, secs, decided) = (rolled + count(run.as_ref(), "rollbacks"), secs + h.mean() / 1e6, decided + 1);
        }
        assert!(decided * 100 >= seeds * 99, "{strategy} bad={bad}: only {decided} of {seeds} decided by 59 s");
        (rolled as f64 / decided as f64, secs / decided as f64)
    }

    #[test]
    fn error_rates_and_times_to_decide_match_walds_approximations() {
        // 300 deploys each way at α = β = 5%. The error rates must stay under Wald's bound
        // α/(1−β) = 5.26% plus three standard errors (√(.05·.95/300) = 1.3%). The mean time to
        // decide is Wald's ASN over the rate of observations — canary answers (200/s) for the
        // plain test, errors anywhere (2/s good, 2.8/s bad) for the paired one — which ignores
        // the overshoot past a boundary, so it reads low: measured 1.00× and 1.03× under H0,
        // 1.18× and 1.15× under H1 (a canary error's big step overshoots ln A), error rates
        // 3.4–4.7%; we accept 0.9× to 1.35× (a mean over 300 has a standard error of ~4%). The
        // paired test counts each error a second late (`Paired::SETTLE_US`): 1 s is added to its ASN.
        let (a, b) = (0.05, 0.05);
        let (q0, q1) = (0.1, canary_share_of_errors(0.1, 5.0));
        let cases = [
            ("sprt", false, asn_h0(0.001, 0.005, a, b) / 200.0),
            ("sprt", true, asn_h1(0.001, 0.005, a, b) / 200.0),
            ("sprt-vs-baseline", false, asn_h0(q0, q1, a, b) / 2.0 + 1.0),
            ("sprt-vs-baseline", true, asn_h1(q0, q1, a, b) / 2.8 + 1.0),
        ];
        for (strategy, bad, wald_s) in cases {
            let (rolled, secs) = first_decisions(strategy, bad, 300);
            let wrong = if bad { 1.0 - rolled } else { rolled };
            assert!(wrong <= a / (1.0 - b) + 3.0 * 0.013, "{strategy} bad={bad}: {wrong} wrong");
            assert!((0.9..1.35).contains(&(secs / wald_s)), "{strategy} bad={bad}: {secs:.2} s, Wald {wald_s:.2} s");
        }
    }

    #[test]
    fn a_crashed_canary_is_rolled_back_on_its_timeouts_and_never_promoted() {
        // Before timeouts, a crashed canary answered nothing and the paired test, seeing only the
        // fleet's errors, promoted it — a bad v3 included. Now each of its ~200 requests a second
        // times out after 1 s as an error on its side: rolled back within ~2 s of the crash.
        let crash = ActionKind::Fault(Fault::Crash { node: CANARY });
        for seed in 1..=5 {
            for (at, version) in [(3, "v2"), (41, "v3")] {
                let r = recipe("sprt-vs-baseline", seed).with_param("blip_bp", 0);
                let r = run(&r.with_action(Time::from_secs(at), crash.clone()), at + 5);
                let counts = ["rollbacks", "false_rollbacks", "timeouts", "exposed"].map(|c| count(r.as_ref(), c));
                assert_eq!(counts[..2], [1, 0], "seed {seed} {version}: rolled back, and not for nothing");
                // v3 served ~200 requests before its crash; promoted, the fleet would serve 2,000 a second.
                assert!(counts[2] > 100 && counts[3] < 1000, "seed {seed} {version}: {counts:?}");
                assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed} {version}");
            }
        }
    }

    #[test]
    fn a_shared_outage_during_a_bad_canarys_analysis_holds_the_evidence_instead_of_promoting_it() {
        // A 30% blip from 32 s to 42 s under v3 (bad): ~600 fleet errors a second at a 10% canary
        // share would drive the paired test to H0 in well under a second ('errs like the fleet').
        for seed in 1..=5 {
            let blip = |bp| ActionKind::Fault(Fault::custom("blip", bp));
            let r = recipe("sprt-vs-baseline", seed).with_param("blip_bp", 0);
            let r = r.with_action(Time::from_secs(32), blip(3000)).with_action(Time::from_secs(42), blip(0));
            let r = run(&r, 90);
            let counts = ["held", "rollbacks", "false_rollbacks"].map(|c| count(r.as_ref(), c));
            assert!(counts[0] > 1000 && counts[1..] == [1, 0], "seed {seed}: {counts:?}");
            let broken: Vec<_> = r.checks().iter().filter_map(|c| c.violation.clone()).collect();
            assert!(broken.is_empty(), "seed {seed}: {broken:?}");
        }
    }

    #[test]
    fn a_canary_that_goes_bad_mid_analysis_is_rolled_back() {
        for seed in 1..=5 {
            let bad = ActionKind::Fault(Fault::custom("canary-goes-bad", 0));
            let r = recipe("sprt-vs-baseline", seed).with_param("blip_bp", 0).with_action(Time::from_secs(3), bad);
            let r = run(&r, 29);
            assert_eq!((count(r.as_ref(), "rollbacks"), count(r.as_ref(), "false_rollbacks")), (1, 0), "seed {seed}");
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
        }
    }
}
