//! The kernel's contract, on a two-node ping-pong model: timers, delivery, crash and
//! restart, pauses, partitions, clocks, loss, checks and frames.

use faultline_core::*;

static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "pingpong",
        title: "Ping-pong",
        category: "Test",
        seeds: &[],
        summary: "",
        note: Note { what_can_go_wrong: "", what_you_sacrifice: "", at_10x: "", resembles: "", try_this: &[] },
    },
    params: &[ParamSpec::live("every_ms", "", "ms", 1..=1000, 100, "")],
    strategies: &[StrategySpec::naive("plain", "", ""), StrategySpec::fixed("other", "", "")],
    faults: &[],
    checks: &[
        CheckSpec { id: "few-pongs", label: "At most 5 pongs", help: "" },
        CheckSpec { id: "slow-pings", label: "Pings at least 50 ms apart", help: "" },
    ],
    metrics: &[MetricSpec { id: "pongs", label: "", unit: "", measure: Measure::Count("pongs") }],
    layout: Layout::Tiers,
    default_until: 10 * MICROS_PER_S,
    sample_every: MICROS_PER_S,
    build,
};

#[derive(Clone, Debug)]
enum Msg {
    Ping(u64),
    Pong(u64),
}
impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Ping(_) => "ping",
            Msg::Pong(_) => "pong",
        }
    }
}

#[derive(Clone, Debug)]
enum Tick {
    Send,
    Never,
}
impl Label for Tick {
    fn label(&self) -> &'static str {
        "tick"
    }
}

#[derive(Clone, Debug, Default)]
struct Peer {
    pinger: bool,
    sent: u64,
    /// Volatile: lost on a crash.
    seen: u64,
    /// Durable: survives a crash.
    seen_durable: u64,
    /// Local clock readings when each ping arrived (responder) or tick fired (pinger).
    clock: Vec<Time>,
    starts: u32,
    /// The strategy in force each time the node started.
    started_with: Vec<&'static str>,
    /// Strategy switches it heard.
    heard: Vec<&'static str>,
    /// The responder takes this long to prepare each pong (`send_after`).
    think: Micros,
}

impl Node for Peer {
    type Msg = Msg;
    type Timer = Tick;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        self.starts += 1;
        self.started_with.push(ctx.strategy());
        if self.pinger {
            let every = ctx.param("every_ms") as u64 * MICROS_PER_MS;
            ctx.set_timer(every, Tick::Send);
            let never = ctx.set_timer(1, Tick::Never);
            ctx.cancel_timer(never);
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match msg {
            Msg::Ping(n) => {
                self.seen += 1;
                self.seen_durable += 1;
                self.clock.push(ctx.now());
                ctx.send_after(self.think, from, Msg::Pong(n));
            }
            Msg::Pong(n) => ctx.count("pongs", (n > 0) as i64),
        }
    }
    fn on_timer(&mut self, t: Tick, ctx: &mut Ctx<Self>) {
        match t {
            Tick::Send => {
                self.sent += 1;
                self.clock.push(ctx.now());
                ctx.send(1, Msg::Ping(self.sent));
                ctx.set_timer(ctx.param("every_ms") as u64 * MICROS_PER_MS, Tick::Send);
            }
            Tick::Never => panic!("a cancelled timer fired"),
        }
    }
    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        self.seen = 0;
    }
    fn on_control(&mut self, c: Control, _ctx: &mut Ctx<Self>) {
        if let Control::Strategy(id) = c {
            self.heard.push(id);
        }
    }
    fn view(&self) -> NodeView {
        NodeView::new(NodeKind::Service, self.pinger as u8, "peer")
    }
}

fn build(setup: &Setup) -> Box<dyn Run> {
    Box::new(sim(setup.recipe.clone()))
}

fn sim(recipe: Recipe) -> Sim<Peer> {
    let mut sim: Sim<Peer> = Sim::new(&Setup { spec: &SPEC, recipe }, Link::constant(10 * MICROS_PER_MS));
    sim.add_node(Peer { pinger: true, ..Peer::default() });
    sim.add_node(Peer::default());
    sim.check("few-pongs", |w| if w.metrics.counter("pongs") > 5 { Err("more than 5 pongs".into()) } else { Ok(()) });
    // A check on a live parameter: violated exactly while the pings are set faster.
    sim.check("slow-pings", |w| match w.param("every_ms") {
        ms if ms < 50 => Err(format!("pings every {ms} ms")),
        _ => Ok(()),
    });
    sim
}

fn recipe() -> Recipe {
    Recipe::new("pingpong", "plain", 1)
}

fn fault(at_ms: u64, f: Fault) -> (Time, ActionKind) {
    (Time::from_ms(at_ms), ActionKind::Fault(f))
}

fn with(faults: &[(Time, ActionKind)]) -> Sim<Peer> {
    let mut r = recipe();
    for (at, k) in faults {
        r = r.with_action(*at, k.clone());
    }
    sim(r)
}

fn dropped(s: &Sim<Peer>, why: faultline_core::trace::DropReason) -> usize {
    s.trace().entries().iter().filter(|e| matches!(&e.kind, TraceKind::Dropped { why: w, .. } if *w == why)).count()
}

#[test]
fn a_node_that_was_down_during_a_strategy_switch_reads_the_new_one_when_it_starts() {
    let switch = (Time::from_ms(500), ActionKind::SetStrategy { id: "other".into() });
    let mut s = with(&[fault(450, Fault::Crash { node: 1 }), switch, fault(850, Fault::Restart { node: 1 })]);
    s.run_until(Time::from_ms(1_000), u64::MAX);
    assert_eq!(s.nodes()[1].started_with, ["plain", "other"]);
    assert_eq!(s.nodes()[0].started_with, ["plain"]);
    // The running node heard the switch; the one that was down hears it as it restarts.
    assert_eq!((&s.nodes()[0].heard[..], &s.nodes()[1].heard[..]), (&["other"][..], &["other"][..]));
}

#[test]
fn timers_and_messages_run_on_time() {
    let mut s = sim(recipe());
    s.run_until(Time::from_ms(1_000), u64::MAX);
    // Pings at 100, 200, … 1000 ms; each pong back 20 ms later.
    assert_eq!(s.nodes()[0].sent, 10);
    // The ping sent at 1000 ms is still on the wire.
    assert_eq!(s.nodes()[1].seen, 9);
    assert_eq!(s.metrics().counter("pongs"), 9);
    assert_eq!(s.nodes()[1].clock[0], Time::from_ms(110));
    assert_eq!(s.now(), Time::from_ms(1_000));
}

#[test]
fn a_crash_loses_volatile_state_and_drops_messages_until_restart() {
    let mut s = with(&[fault(450, Fault::Crash { node: 1 }), fault(850, Fault::Restart { node: 1 })]);
    s.run_until(Time::from_ms(1_000), u64::MAX);
    let b = &s.nodes()[1];
    // Pings 5..8 (arriving 510..810 ms) hit a dead node; the one at 910 ms is seen.
    assert_eq!(dropped(&s, faultline_core::trace::DropReason::NodeDown), 4);
    assert_eq!(b.seen, 1, "volatile count restarted from zero");
    assert_eq!(b.seen_durable, 5, "durable count kept");
    assert_eq!(b.starts, 2);
}

#[test]
fn a_pause_holds_events_until_it_ends_then_delivers_in_order() {
    let mut s = with(&[fault(105, Fault::Pause { node: 1, dur: 400 * MICROS_PER_MS })]);
    s.run_until(Time::from_ms(1_000), u64::MAX);
    let clock = &s.nodes()[1].clock;
    // Pings due at 110, 210, 310, 410 wait for 505 ms; nothing is lost.
    assert_eq!(&clock[..4], &[Time::from_ms(505); 4]);
    assert_eq!(clock[4], Time::from_ms(510));
    assert_eq!(s.nodes()[1].seen, 9);
}

#[test]
fn partitions_drop_across_the_cut_and_heal_restores() {
    let mut s =
        with(&[fault(250, Fault::Partition { a: vec![0], b: Some(vec![1]), one_way: true }), fault(650, Fault::Heal)]);
    s.run_until(Time::from_ms(1_000), u64::MAX);
    // One-way 0 -/-> 1: pings at 300..600 are cut; pongs would still flow.
    assert_eq!(dropped(&s, faultline_core::trace::DropReason::Partitioned), 4);
    assert_eq!(s.nodes()[1].seen, 5);
}

#[test]
fn clocks_skew_and_drift_per_node() {
    let mut s = with(&[
        fault(0, Fault::ClockSkew { node: 1, offset: 5 * MICROS_PER_S as i64 }),
        fault(0, Fault::ClockDrift { node: 0, ppm: 100_000 }),
    ]);
    s.run_until(Time::from_ms(2_050), u64::MAX);
    // The pinger's clock runs 10% fast, so its 100 ms (local) timer fires every 90.9 ms of true time.
    let ticks = s.nodes()[0].sent;
    assert_eq!(ticks, 22, "2050 ms / 90.9 ms");
    // Each local reading lands on a 100 ms mark of its own clock (to rounding).
    for (i, t) in s.nodes()[0].clock.iter().enumerate() {
        let want = (i as u64 + 1) * 100 * MICROS_PER_MS;
        assert!(t.micros().abs_diff(want) <= 30, "tick {i} read {t}");
    }
    // The first ping reaches the responder at 100/1.1 (rounded up) + 10 ms true time, which it
    // reads 5 s ahead.
    assert_eq!(s.nodes()[1].clock[0], Time(5 * MICROS_PER_S + 90_910 + 10_000));
}

#[test]
fn loss_bursts_and_latency_spikes_are_temporary() {
    let mut s = with(&[
        fault(150, Fault::LossBurst { loss: Ppm::ALWAYS, dur: 300 * MICROS_PER_MS }),
        fault(650, Fault::LatencySpike { extra: 200 * MICROS_PER_MS, dur: 100 * MICROS_PER_MS }),
    ]);
    s.run_until(Time::from_ms(2_000), u64::MAX);
    // Pings at 200, 300, 400 are lost; the ping at 700 takes 210 ms.
    assert_eq!(dropped(&s, faultline_core::trace::DropReason::Lost), 3);
    assert!(s.nodes()[1].clock.contains(&Time::from_ms(910)));
}

#[test]
fn checks_report_the_first_violation_once() {
    let mut s = sim(recipe());
    s.run_until(Time::from_secs(3), u64::MAX);
    let v = s.checks()[0].violation.clone().expect("violated");
    // The sixth pong arrives at 620 ms.
    assert_eq!(v.at, Time::from_ms(620));
    let n = s.trace().entries().iter().filter(|e| matches!(e.kind, TraceKind::Violation { .. })).count();
    assert_eq!(n, 1);
}

#[test]
fn checks_keep_judging_after_a_violation_and_record_each_band() {
    let every = |at_ms: u64, ms: i64| (Time::from_ms(at_ms), ActionKind::SetParam { id: "every_ms".into(), value: ms });
    // Violated from 2 s to 5 s, and again from 5.5 s (within a second: the same band) to 7 s;
    // then from 9 s to the end.
    let mut s = with(&[every(2_000, 20), every(5_000, 100), every(5_500, 20), every(7_000, 100), every(9_000, 20)]);
    let slow = |s: &Sim<Peer>| s.checks()[1].clone();
    s.run_until(Time::from_ms(7_500), u64::MAX);
    // Half a second after it holds again it may still reopen: it reads as violated.
    assert_eq!(slow(&s).state(s.now()), CheckState::Violated { since: Time::from_secs(2) });
    s.run_until(Time::from_ms(8_500), u64::MAX);
    assert_eq!(slow(&s).state(s.now()), CheckState::Recovered { since: Time::from_secs(7) });
    s.run_until(Time::from_secs(10), u64::MAX);
    let c = slow(&s);
    let bands: Vec<_> = c.bands.iter().map(|b| (b.from, b.to)).collect();
    assert_eq!(bands, [(Time::from_secs(2), Some(Time::from_secs(7))), (Time::from_secs(9), None)]);
    assert_eq!(c.state(s.now()), CheckState::Violated { since: Time::from_secs(9) });
    // The verdict is still the first violation, with its own reason; the latest has its own.
    let first = c.violation.expect("violated");
    assert_eq!((first.at, first.why.as_str()), (Time::from_secs(2), "pings every 20 ms"));
    assert_eq!(c.latest_why.as_deref(), Some("pings every 20 ms"));
    // A trace entry where each band begins (not where it reopens), at the event that broke it.
    let starts: Vec<Time> = s
        .trace()
        .entries()
        .iter()
        .filter(|e| matches!(e.kind, TraceKind::Violation { check: "slow-pings", .. }))
        .map(|e| e.at)
        .collect();
    assert_eq!(starts, [Time::from_secs(2), Time::from_secs(9)]);
    let entry = |seq: u64| s.trace().entries().iter().find(|e| e.seq == seq).map(|e| e.at);
    assert_eq!(entry(c.bands[0].from_seq), Some(Time::from_secs(2)));
    assert_eq!(entry(c.bands[0].to_seq.expect("closed")), Some(Time::from_secs(7)));
    // The runner's report says the same.
    let o = Outcome::of(&s);
    let v = o.check("slow-pings").expect("reported");
    assert_eq!((v.ok, v.violated_at_s, v.holding_since_s), (false, Some(2.0), None));
    assert_eq!(v.bands_text(), "2.000–7.000 s, 9.000 s–");
}

#[test]
fn a_check_that_never_fails_has_no_bands_and_merges_are_bounded() {
    let mut s = sim(recipe());
    s.run_until(Time::from_secs(3), u64::MAX);
    let c = &s.checks()[1];
    assert!(c.bands.is_empty() && c.violation.is_none() && c.state(s.now()) == CheckState::Holding);
    // Failures far apart make a band each, up to MAX_BANDS; past it the last one absorbs them.
    let mut c = CheckStatus::new("x", "x");
    for i in 0..MAX_BANDS as u64 + 10 {
        let at = Time::from_secs(2 * i);
        assert_eq!(c.failed(at, i, "no".into()), (i as usize) < MAX_BANDS);
        c.held(Time(at.micros() + 1), i);
    }
    assert_eq!(c.bands.len(), MAX_BANDS);
    assert_eq!(c.bands[MAX_BANDS - 1].to, Some(Time(Time::from_secs(2 * (MAX_BANDS as u64 + 9)).micros() + 1)));
}

#[test]
fn frames_show_messages_in_flight() {
    let mut s = sim(recipe());
    s.run_until(Time::from_ms(105), u64::MAX);
    let f = s.frame(100);
    assert_eq!(f.in_flight, 1);
    let m = &f.messages[0];
    assert_eq!((m.from, m.to, m.sent, m.deliver, m.kind), (0, 1, Time::from_ms(100), Time::from_ms(110), "ping"));
    assert_eq!(f.nodes.len(), 2);
}

#[test]
fn param_changes_reach_nodes_and_replay_identically() {
    let mut live = sim(recipe());
    live.run_until(Time::from_ms(333), u64::MAX);
    let at = live.inject(ActionKind::SetParam { id: "every_ms".into(), value: 50 }).unwrap();
    assert_eq!(at, Time(333_001));
    live.run_until(Time::from_secs(2), u64::MAX);
    let mut replay = sim(live.recipe().clone());
    replay.run_until(Time::from_secs(2), u64::MAX);
    assert_eq!(live.trace().hash(), replay.trace().hash());
    assert_eq!(live.nodes()[0].sent, replay.nodes()[0].sent);
}

#[test]
fn open_repairs_and_reports() {
    let r = recipe().with_param("every_ms", 5000).with_action(Time(1), ActionKind::Fault(Fault::Crash { node: 9 }));
    let (run, problems) = open(&SPEC, &r);
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(run.recipe().params["every_ms"], 1000);
    assert!(run.recipe().actions.is_empty());
}

#[test]
fn details_are_kept_for_the_kept_entries_and_never_change_the_hash() {
    let mut s = sim(recipe());
    s.run_until(Time::from_ms(1_000), u64::MAX);
    let entries = s.trace().entries();
    let sent = entries.iter().rev().find(|e| matches!(e.kind, TraceKind::Sent { msg: "ping", .. })).unwrap();
    assert!(s.detail(sent.seq).unwrap().starts_with("Ping("), "{:?}", s.detail(sent.seq));
    let timer = entries.iter().find(|e| matches!(e.kind, TraceKind::Timer { .. })).unwrap();
    assert_eq!(s.detail(timer.seq).as_deref(), Some("Send"));
    assert_eq!(s.detail(u64::MAX), None);

    let mut bare = sim(recipe());
    bare.keep_trace(false);
    bare.run_until(Time::from_ms(1_000), u64::MAX);
    assert_eq!(bare.detail(sent.seq), None);
    assert_eq!(bare.trace().hash(), s.trace().hash());
}

#[test]
fn a_delayed_reply_leaves_late_is_lost_in_a_crash_and_held_in_a_pause() {
    let pong_sent = |faults: &[(Time, ActionKind)]| {
        let mut r = recipe();
        for (at, k) in faults {
            r = r.with_action(*at, k.clone());
        }
        let mut s: Sim<Peer> = Sim::new(&Setup { spec: &SPEC, recipe: r }, Link::constant(10 * MICROS_PER_MS));
        s.add_node(Peer { pinger: true, ..Peer::default() });
        s.add_node(Peer { think: 5 * MICROS_PER_MS, ..Peer::default() });
        s.run_until(Time::from_ms(190), u64::MAX);
        let sent: Vec<Time> = s
            .trace()
            .entries()
            .iter()
            .filter(|e| matches!(e.kind, TraceKind::Sent { from: 1, msg: "pong", .. }))
            .map(|e| e.at)
            .collect();
        (sent, s.metrics().counter("pongs"))
    };
    // The ping sent at 100 ms arrives at 110 ms; the pong leaves 5 ms later and lands at 125 ms.
    assert_eq!(pong_sent(&[]), (vec![Time::from_ms(115)], 1));
    // A crash while it is being prepared loses it, even if the node is back in time.
    let crash = [fault(112, Fault::Crash { node: 1 }), fault(113, Fault::Restart { node: 1 })];
    assert_eq!(pong_sent(&crash), (vec![], 0));
    // A pause holds it until the node runs again.
    assert_eq!(
        pong_sent(&[fault(112, Fault::Pause { node: 1, dur: 20 * MICROS_PER_MS })]),
        (vec![Time::from_ms(132)], 1)
    );
}

#[test]
fn a_probe_reads_the_world_before_each_sample_and_never_changes_the_trace() {
    // Pings leave every 100 ms and take 10 ms: at the sample at 1 s the responder has seen 9.
    let mut s = sim(recipe());
    s.probe("seen", |w| w.nodes[1].seen as i64);
    s.run_until(Time::from_secs(1), u64::MAX);
    assert_eq!(s.metrics().gauge("seen"), 9);
    // Between samples (every second) the gauge keeps the value it was sampled with.
    s.run_until(Time::from_ms(1_500), u64::MAX);
    assert_eq!((s.nodes()[1].seen, s.metrics().gauge("seen")), (14, 9));
    s.run_until(Time::from_secs(2), u64::MAX);
    assert_eq!(s.metrics().gauge("seen"), 19);
    let mut bare = sim(recipe());
    bare.run_until(Time::from_secs(2), u64::MAX);
    assert_eq!(bare.trace().hash(), s.trace().hash());
}
