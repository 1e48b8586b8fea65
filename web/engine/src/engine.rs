//! The worker's side of the protocol, without the browser: commands in, replies out, the run played in slices.
//!
//! Native code can drive it exactly as the worker does (the tests here do); `worker.rs` only
//! moves bytes and schedules slices.

use crate::heap;
use crate::player::{PaceMeter, Player};
use faultline_core::recipe::decode_actions;
use faultline_core::{
    fingerprint, open, shared_mark, ActionKind, Micros, NodeId, ParamSpec, Recipe, RecipeError, ScenarioSpec,
    SharedCheck, Time, TraceEvent, TraceKind, MICROS_PER_MS,
};
use faultline_protocol::{BenchRow, Charts, Command, Full, LogFilter, LogRow, Reply, Snapshot, SpecData};

/// The most messages a frame draws: a deterministic sample when more are in flight.
pub const FRAME_MESSAGES: usize = 2000;
/// The most event-log rows a status carries.
const LOG_LIMIT: u32 = 500;
/// The longest wall time one slice of play may take before the worker looks at its
/// messages again: a command waits at most this long.
pub const SLICE_MS: f64 = 8.0;
/// Wall time a slice may count when the worker was held up (a long checkpoint, the tab in
/// the background): the run does not then try to make up for it all at once.
const MAX_STEP_MS: f64 = 100.0;
/// How often the pace is measured (wall ms).
const PACE_EVERY_MS: f64 = 250.0;

/// One run of the engine bench: its label, recipe and end.
pub type BenchRun = (String, &'static ScenarioSpec, Recipe, Time);

/// What a worker module can open: one scenario, or all of them (with the engine bench).
#[derive(Clone, Copy)]
pub struct Catalog {
    pub find: fn(&str) -> Option<&'static ScenarioSpec>,
    /// The engine bench's runs: label, recipe, end. Empty in a one-scenario module.
    pub bench: fn() -> Vec<BenchRun>,
}

/// Reads `query` as the recipe for scenario `id` (a `s=` in it is ignored: the path names it).
pub fn load(
    find: impl Fn(&str) -> Option<&'static ScenarioSpec>,
    id: &str,
    query: &str,
) -> Result<(&'static ScenarioSpec, Recipe, Vec<RecipeError>), RecipeError> {
    let rest = strip_s(query);
    let url = if rest.is_empty() { format!("s={id}") } else { format!("s={id}&{rest}") };
    let parsed = Recipe::from_url(&url, find)?;
    Ok((parsed.spec, parsed.recipe, parsed.problems))
}

pub use faultline_core::recipe::without_scenario as strip_s;

pub struct Engine {
    catalog: Catalog,
    /// Wall-clock milliseconds (the worker's `performance.now()`).
    clock: fn() -> f64,
    player: Option<Player>,
    playing: bool,
    speed: f64,
    seeking: Option<Time>,
    last_slice: f64,
    /// The page's standing request for the next status.
    want: Option<(bool, LogFilter)>,
    /// Commands handled so far (every status carries it).
    handled: u64,
    /// The engine bench's runs still to do, the next last.
    bench_left: Vec<BenchRun>,
    /// Something changed since the last status.
    dirty: bool,
    pace_meter: PaceMeter,
    last_pace: f64,
    starved: bool,
    pace: Option<f64>,
    stopped: Option<String>,
    shared_news: Option<(bool, String)>,
}

fn strings(problems: &[RecipeError]) -> Vec<String> {
    problems.iter().map(|p| p.to_string()).collect()
}

impl Engine {
    pub fn new(catalog: Catalog, clock: fn() -> f64) -> Engine {
        Engine {
            catalog,
            clock,
            player: None,
            playing: false,
            speed: 1.0,
            seeking: None,
            last_slice: clock(),
            want: None,
            handled: 0,
            bench_left: Vec::new(),
            dirty: true,
            pace_meter: PaceMeter::default(),
            last_pace: 0.0,
            starved: false,
            pace: None,
            stopped: None,
            shared_news: None,
        }
    }

    /// The run goes on without a command: a slice should follow soon.
    pub fn busy(&self) -> bool {
        !self.bench_left.is_empty() || self.player.is_some() && (self.playing || self.seeking.is_some())
    }

    pub fn player(&self) -> Option<&Player> {
        self.player.as_ref()
    }

    /// Handles one command; returns the replies to send, in order.
    pub fn handle(&mut self, cmd: Command) -> Vec<Reply> {
        let mut out = Vec::new();
        self.handled += 1;
        // A want for the slow parts (log, charts) is answered even if the run stood still:
        // the page asks when its log filter changed, or after a user action.
        if !matches!(cmd, Command::Want { full: false, .. }) {
            self.dirty = true;
        }
        match cmd {
            Command::Open { id, query } => match load(self.catalog.find, &id, &query) {
                Ok((spec, recipe, problems)) => {
                    let (mut player, more) = Player::new(spec, &recipe);
                    player.clock = self.clock;
                    let problems: Vec<String> = strings(&problems).into_iter().chain(strings(&more)).collect();
                    let query = strip_s(&player.recipe().to_query(spec));
                    out.push(Reply::Opened { spec: SpecData::of(spec), query, problems });
                    self.player = Some(player);
                    self.reset_play_state();
                }
                Err(RecipeError::UnknownScenario { id }) => out.push(Reply::Unreadable {
                    message: format!("There is no scenario called {id}."),
                    unknown: Some(id),
                }),
                Err(e) => out.push(Reply::Unreadable { unknown: None, message: e.to_string() }),
            },
            Command::Bench => {
                self.bench_left = (self.catalog.bench)();
                self.bench_left.reverse();
                if self.bench_left.is_empty() {
                    out.push(Reply::BenchDone);
                }
            }
            Command::Panic => panic!("the deliberate panic of #/debug/worker-panic"),
            // Answered now if something changed since the last status, else when it does.
            Command::Want { full, log } => self.want = Some((full, log)),
            cmd => {
                if self.player.is_none() {
                    out.push(Reply::Error { fatal: false, message: "no run is open".into() });
                } else {
                    self.command(cmd, &mut out);
                }
            }
        }
        self.answer(&mut out);
        out
    }

    fn reset_play_state(&mut self) {
        self.seeking = None;
        self.stopped = None;
        self.shared_news = None;
        self.pace = None;
        self.pace_meter = PaceMeter::default();
        self.last_slice = (self.clock)();
    }

    fn command(&mut self, cmd: Command, out: &mut Vec<Reply>) {
        let Some(p) = self.player.as_mut() else { return };
        match cmd {
            Command::Restart { seed, forget_actions } => {
                let mut recipe = Recipe { shared: None, ..p.recipe().clone() };
                recipe.seed = seed.unwrap_or(recipe.seed);
                if forget_actions {
                    recipe.actions.clear();
                }
                let problems = p.replace(&recipe);
                out.push(Reply::Restarted { problems: strings(&problems) });
                self.reset_play_state();
            }
            Command::Play { speed } => {
                if !self.playing || self.speed != speed {
                    self.last_slice = (self.clock)();
                }
                self.playing = !p.at_end();
                self.speed = speed;
            }
            Command::Pause => (self.playing, self.pace) = (false, None),
            Command::Seek { to } => {
                p.rewind_towards(Time(to));
                self.seeking = Some(Time(to));
            }
            Command::Step { forward } => {
                self.playing = false;
                self.seeking = None;
                if forward {
                    p.step()
                } else {
                    p.step_back()
                }
            }
            Command::Act { action } => {
                let kind = decode_actions(&action).ok().and_then(|a| a.into_iter().next()).map(|a| a.kind);
                let Some(kind) = kind else {
                    return out.push(Reply::Toast(format!("not done: cannot read the action {action:?}")));
                };
                let text = kind.to_string();
                out.push(Reply::Toast(match p.inject(kind) {
                    Ok(at) => format!("{text} — at {at}"),
                    Err(e) => format!("not done: {e}"),
                }));
            }
            Command::SetParam { id, value } => {
                let Some(spec) = p.spec.param(&id) else {
                    return out.push(Reply::Toast(format!("not done: no parameter {id}")));
                };
                let set =
                    format!("{} = {value}{}{}", spec.label, if spec.unit.is_empty() { "" } else { " " }, spec.unit);
                match p.set_param(&id, value) {
                    Ok(None) => out.push(Reply::Toast(format!("set {set} — at {}", p.now()))),
                    Ok(Some(problems)) => {
                        out.push(Reply::Toast(format!(
                            "restarted from 0 with {set}: it is read when the run is built"
                        )));
                        out.push(Reply::Restarted { problems: strings(&problems) });
                        self.reset_play_state();
                    }
                    Err(e) => out.push(Reply::Toast(format!("not done: {e}"))),
                }
            }
            Command::Share => {
                let recipe = Recipe { shared: Some(shared_mark(&*p.run)), ..p.recipe().clone() };
                out.push(Reply::Shared { query: strip_s(&recipe.to_query(p.spec)) });
            }
            Command::Open { .. } | Command::Want { .. } | Command::Bench | Command::Panic => {}
        }
    }

    /// Plays or seeks for at most `budget_ms` of wall time; returns the replies (a status
    /// if the page is waiting for one).
    pub fn slice(&mut self, budget_ms: f64) -> Vec<Reply> {
        let mut out = Vec::new();
        if !self.bench_left.is_empty() {
            self.bench(&mut out);
            return out;
        }
        let clock = self.clock;
        let wall = clock();
        let dt = (wall - self.last_slice).clamp(0.0, MAX_STEP_MS);
        self.last_slice = wall;
        let Some(p) = self.player.as_mut() else { return out };
        let deadline = wall + budget_ms;
        if let Some(target) = self.seeking {
            p.advance(target, || clock() < deadline);
            if p.reached(target.min(p.until)) {
                self.seeking = None;
            }
            self.dirty = true;
        } else if self.playing {
            let target =
                if self.speed == 0.0 { p.until } else { p.now().plus((dt * self.speed * MICROS_PER_MS as f64) as u64) };
            if !p.advance(target, || clock() < deadline) {
                self.starved = true;
            }
            if p.at_end() {
                self.playing = false;
            }
            self.dirty = true;
        }
        if std::mem::take(&mut p.out_of_memory) {
            self.playing = false;
            self.seeking = None;
            if self.stopped.is_none() {
                self.stopped = Some(format!(
                    "At {} this run holds {} MB, more than the {} MB this page lets a run use: its state \
                     grows with every request. Fewer clients or a lower rate go further. Everything up to \
                     here can still be replayed, inspected and shared.",
                    p.now(),
                    heap::live_bytes() >> 20,
                    p.heap_limit >> 20,
                ));
            }
        }
        if wall - self.last_pace >= PACE_EVERY_MS {
            self.last_pace = wall;
            let playing = self.playing && self.seeking.is_none();
            let starved = std::mem::take(&mut self.starved);
            self.pace = self.pace_meter.measure(wall, p.now(), playing, starved, self.speed);
        }
        self.answer(&mut out);
        out
    }

    /// Sends the status the page waits for, if anything changed since the last.
    fn answer(&mut self, out: &mut Vec<Reply>) {
        if !self.dirty {
            return;
        }
        let Some(p) = self.player.as_mut() else { return };
        let Some((full, log)) = self.want.take() else { return };
        self.dirty = false;
        if let Some(news) = p.shared_news.take() {
            self.shared_news = match news {
                SharedCheck::Changed(e) => Some((false, e.to_string())),
                SharedCheck::Matches => {
                    let at = p.recipe().shared.map(|s| s.at).unwrap_or_default();
                    Some((true, format!("This is the run that was shared: same fingerprint at {at}")))
                }
                _ => None,
            };
        }
        let run = &*p.run;
        let frame = run.frame(FRAME_MESSAGES);
        let (recipe, now) = (run.recipe(), run.now());
        let full = full.then(|| {
            let names: Vec<&str> = frame.nodes.iter().map(|n| n.view.label.as_str()).collect();
            let spec = run.spec();
            let sampler = run.sampler();
            let now = run.now().micros();
            Full {
                log: log_rows(run, &log, &names),
                charts: Charts {
                    times: sampler.times.iter().map(|t| t.micros()).collect(),
                    series: sampler.series.clone(),
                    totals: spec.metrics.iter().map(|m| m.measure.total(run.metrics(), now)).collect(),
                },
                timeline: run.timeline().into_iter().map(|(t, s)| (t.micros(), s)).collect(),
                strategies: strategies_of(recipe),
            }
        });
        out.push(Reply::Status(Box::new(Snapshot {
            handled: self.handled,
            now: run.now().micros(),
            until: p.until.micros(),
            events: run.events(),
            hash: run.trace().hash(),
            playing: self.playing,
            seeking: self.seeking.map(|t| t.micros()),
            pace: self.pace,
            query: strip_s(&recipe.to_query(p.spec)),
            strategy: current_strategy(recipe, now),
            seed: recipe.seed,
            params: p.spec.params.iter().map(|param| current_param(recipe, param, now)).collect(),
            stopped: self.stopped.clone(),
            shared_news: self.shared_news.take(),
            frame,
            full,
        })));
    }

    /// The engine bench's next run, as fast as it goes, with the trace hash only (as
    /// `faultline run` does): one row a slice, so the page shows each as it finishes.
    fn bench(&mut self, out: &mut Vec<Reply>) {
        if let Some((label, spec, recipe, until)) = self.bench_left.pop() {
            let (mut run, _) = open(spec, &recipe);
            run.keep_trace(false);
            let start = (self.clock)();
            run.run_until(until, u64::MAX);
            let wall_ms = (self.clock)() - start;
            let query = if recipe == spec.default_recipe(1) { String::new() } else { recipe.to_query(spec) };
            out.push(Reply::BenchRow(BenchRow {
                id: spec.id().to_string(),
                label,
                query,
                until: until.micros(),
                events: run.events(),
                simulated: run.now().micros(),
                wall_ms,
                fingerprint: fingerprint(run.trace().hash()),
            }));
            if self.bench_left.is_empty() {
                out.push(Reply::BenchDone);
            }
        }
    }
}

/// A parameter's value at `now`: the recipe's, then the last change at or before `now`.
/// A change just made lands one microsecond after `now`; it counts as current.
pub fn current_param(recipe: &Recipe, p: &ParamSpec, now: Time) -> i64 {
    let mut v = recipe.params.get(p.id).copied().unwrap_or(p.default);
    for a in recipe.actions.iter().take_while(|a| a.at <= now.plus(1)) {
        if let ActionKind::SetParam { id, value } = &a.kind {
            if id == p.id {
                v = *value;
            }
        }
    }
    v
}

/// The strategy in force at `now` (a switch just made counts at once, as above).
pub fn current_strategy(recipe: &Recipe, now: Time) -> String {
    let spans = strategies_of(recipe);
    let current = spans.iter().take_while(|(at, _)| *at <= now.plus(1).micros()).last();
    current.map_or_else(|| recipe.strategy.clone(), |(_, id)| id.clone())
}

/// The strategy in force from each time on: the recipe's from 0, then each switch.
pub fn strategies_of(recipe: &Recipe) -> Vec<(Micros, String)> {
    let switches = recipe.actions.iter().filter_map(|a| match &a.kind {
        ActionKind::SetStrategy { id } => Some((a.at.micros(), id.clone())),
        _ => None,
    });
    std::iter::once((0, recipe.strategy.clone())).chain(switches).collect()
}

/// The newest entries the trace keeps that pass the filter, oldest first, described.
fn log_rows(run: &dyn faultline_core::Run, filter: &LogFilter, names: &[&str]) -> Vec<LogRow> {
    let keep = |e: &&TraceEvent| {
        (filter.kind.is_empty() || e.kind.label() == filter.kind)
            && filter.node.is_none_or(|n| {
                let (a, b) = e.kind.nodes();
                a == Some(n) || b == Some(n)
            })
    };
    let limit = filter.limit.min(LOG_LIMIT) as usize;
    let mut picked: Vec<&TraceEvent> = run.trace().entries().iter().rev().filter(keep).take(limit).collect();
    picked.reverse();
    picked
        .into_iter()
        .map(|e| LogRow {
            seq: e.seq,
            at: e.at.micros(),
            kind: e.kind.label().to_string(),
            text: describe(e, run.detail(e.seq), names),
        })
        .collect()
}

/// One event-log line: who did what to whom, then the message or timer in full.
fn describe(e: &TraceEvent, detail: Option<String>, names: &[&str]) -> String {
    let name = |n: &NodeId| names.get(*n as usize).map_or_else(|| format!("node {n}"), |s| s.to_string());
    let what = match &e.kind {
        TraceKind::Sent { from, to, msg, .. } => format!("{} → {}: {msg}", name(from), name(to)),
        TraceKind::Delivered { from, to, msg, .. } => format!("{} ⇒ {}: {msg} delivered", name(from), name(to)),
        TraceKind::Dropped { from, to, msg, why, .. } => {
            format!("{} → {}: {msg} dropped ({why:?})", name(from), name(to))
        }
        TraceKind::Timer { node, timer } => format!("{}: timer {timer}", name(node)),
        TraceKind::Crashed { node } => format!("{} crashed", name(node)),
        TraceKind::Restarted { node } => format!("{} restarted", name(node)),
        TraceKind::Fault { text } => format!("fault: {text}"),
        TraceKind::Action { text } => format!("you: {text}"),
        TraceKind::Note { node, text } => format!("{}: {text}", name(node)),
        TraceKind::Violation { check, why } => format!("✗ {check}: {why}"),
    };
    match detail {
        Some(d) if !d.is_empty() && !matches!(e.kind, TraceKind::Note { .. }) => format!("{what}   {d}"),
        _ => what,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::recipe::encode_actions;
    use faultline_core::{Action, ActionKind, Fault};
    use std::cell::Cell;

    thread_local! {
        static NOW_MS: Cell<f64> = const { Cell::new(0.0) };
    }

    /// A clock that moves a millisecond every time it is read: slices end by their budget
    /// however fast the machine is.
    fn ticking() -> f64 {
        NOW_MS.with(|t| {
            t.set(t.get() + 1.0);
            t.get()
        })
    }

    fn all() -> Catalog {
        Catalog { find: faultline_scenarios::find, bench: Vec::new }
    }

    fn status(replies: &[Reply]) -> Option<&Snapshot> {
        replies.iter().rev().find_map(|r| match r {
            Reply::Status(s) => Some(&**s),
            _ => None,
        })
    }

    fn want(e: &mut Engine, full: bool) -> Vec<Reply> {
        e.handle(Command::Want { full, log: LogFilter { node: None, kind: String::new(), limit: 150 } })
    }

    fn opened(query: &str) -> Engine {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut e = Engine::new(all(), ticking);
        let r = e.handle(Command::Open { id: "backpressure".into(), query: query.into() });
        assert!(matches!(r[0], Reply::Opened { .. }), "{r:?}");
        e
    }

    #[test]
    fn a_status_goes_out_only_when_asked_and_something_changed() {
        let mut e = opened("seed=3");
        assert!(status(&want(&mut e, false)).is_some(), "the first status, of the run just opened");
        assert!(status(&want(&mut e, false)).is_none(), "nothing changed since");
        assert!(status(&want(&mut e, true)).is_some(), "the slow parts are sent when asked for");
        assert!(status(&want(&mut e, false)).is_none(), "held until something changes");
        assert!(status(&e.slice(SLICE_MS)).is_none(), "paused: nothing changed");
        let r = e.handle(Command::Play { speed: 1.0 });
        assert!(status(&r).is_some(), "a command changes things: the waiting page hears at once");
        assert!(status(&e.slice(SLICE_MS)).is_none(), "no second status before the page asks again");
        let r = want(&mut e, true);
        let s = status(&r).expect("asked, and the run moved since the last one: at once");
        assert!(s.playing && s.now > 0 && s.full.is_some());
        assert_eq!(s.frame.checks.len(), faultline_scenarios::find("backpressure").unwrap().checks.len());
    }

    #[test]
    fn playing_to_the_end_gives_the_native_fingerprint() {
        let mut e = opened("seed=2&strategy=shed");
        e.handle(Command::Play { speed: 0.0 });
        while e.busy() {
            e.slice(SLICE_MS);
        }
        let s = want(&mut e, false);
        let s = status(&s).expect("status");
        let spec = faultline_scenarios::find("backpressure").unwrap();
        let recipe = Recipe::new("backpressure", "shed", 2);
        let (mut run, _) = open(spec, &recipe);
        run.run_until(Time(spec.default_until), u64::MAX);
        assert_eq!((s.now, s.hash), (spec.default_until, run.trace().hash()));
        assert!(!s.playing, "it stops at the end");
    }

    #[test]
    fn actions_and_parameters_land_in_the_recipe_and_bad_ones_are_refused_with_a_message() {
        let mut e = opened("seed=1");
        e.handle(Command::Seek { to: 1_000_000 });
        while e.busy() {
            e.slice(SLICE_MS);
        }
        let crash = encode_actions(&[Action { at: Time::ZERO, kind: ActionKind::Fault(Fault::Crash { node: 0 }) }]);
        let r = e.handle(Command::Act { action: crash });
        assert!(matches!(&r[0], Reply::Toast(t) if t.contains("at 1.000001")), "{r:?}");
        // Paused, the crash shows at once: the run was taken through it.
        let s = want(&mut e, false);
        let s = status(&s).expect("status");
        assert_eq!(
            s.frame.nodes[0].status,
            faultline_core::Status::Crashed,
            "the server is drawn crashed while paused"
        );
        assert_eq!(s.now, 1_000_001);
        let r = e.handle(Command::Act { action: "garbage".into() });
        assert!(matches!(&r[0], Reply::Toast(t) if t.starts_with("not done")), "{r:?}");
        let r = e.handle(Command::SetParam { id: "workers".into(), value: 5 });
        assert!(matches!(&r[0], Reply::Toast(t) if t.starts_with("set Workers = 5")), "{r:?}");
        let r = e.handle(Command::SetParam { id: "producers".into(), value: 9 });
        assert!(r.iter().any(|r| matches!(r, Reply::Restarted { .. })), "a setup parameter restarts: {r:?}");
        let r = e.handle(Command::SetParam { id: "nope".into(), value: 1 });
        assert!(matches!(&r[0], Reply::Toast(t) if t.contains("no parameter nope")));
        let r = want(&mut e, false);
        let q = &status(&r).unwrap().query;
        assert!(q.contains("producers=9") && q.contains("a="), "{q}");
        let r = e.handle(Command::Share);
        assert!(matches!(&r[0], Reply::Shared { query } if query.contains("fp=")), "{r:?}");
    }

    #[test]
    fn the_engine_bench_gives_a_row_a_slice_with_the_native_fingerprints() {
        let _one_at_a_time = heap::SERIAL.lock();
        fn two() -> Vec<BenchRun> {
            let spec = faultline_scenarios::find("leader-election").unwrap();
            (1..=2).map(|seed| (format!("seed {seed}"), spec, spec.default_recipe(seed), Time(2_000_000))).collect()
        }
        let mut e = Engine::new(Catalog { find: faultline_scenarios::find, bench: two }, ticking);
        assert!(e.handle(Command::Bench).is_empty() && e.busy());
        let mut rows = Vec::new();
        while e.busy() {
            let r = e.slice(SLICE_MS);
            assert!(!r.is_empty(), "every slice finishes a run");
            rows.extend(r);
        }
        assert!(matches!(rows.last(), Some(Reply::BenchDone)), "{rows:?}");
        for (row, (label, spec, recipe, until)) in rows.iter().zip(two()) {
            let Reply::BenchRow(row) = row else { panic!("{row:?}") };
            let (mut run, _) = open(spec, &recipe);
            run.run_until(until, u64::MAX);
            assert_eq!((&row.label, &row.fingerprint), (&label, &fingerprint(run.trace().hash())));
        }
    }

    #[test]
    fn the_controls_show_the_values_in_force_and_a_restart_keeps_the_recipe_but_what_it_changes() {
        let spec = faultline_scenarios::find("backpressure").unwrap();
        let p = &spec.params[0];
        let r = spec
            .default_recipe(1)
            .with_action(Time(10), ActionKind::SetParam { id: p.id.into(), value: p.max })
            .with_action(Time(20), ActionKind::SetStrategy { id: spec.strategies[1].id.into() });
        assert_eq!(current_param(&r, p, Time(5)), p.default);
        assert_eq!(current_param(&r, p, Time(9)), p.max, "a change made now counts at once");
        assert_eq!(current_strategy(&r, Time(15)), spec.strategies[0].id);
        assert_eq!(current_strategy(&r, Time(25)), spec.strategies[1].id);

        let mut e = opened("seed=5&workers=6");
        e.handle(Command::Seek { to: 1_000_000 });
        while e.busy() {
            e.slice(SLICE_MS);
        }
        let crash = encode_actions(&[Action { at: Time::ZERO, kind: ActionKind::Fault(Fault::Crash { node: 0 }) }]);
        e.handle(Command::Act { action: crash });
        e.handle(Command::SetParam { id: "workers".into(), value: 9 });
        let s = status(&want(&mut e, false)).cloned().unwrap();
        assert_eq!((s.seed, s.params[2]), (5, 9), "workers 9 from now");
        let r = e.handle(Command::Restart { seed: Some(8), forget_actions: false });
        assert!(matches!(&r[0], Reply::Restarted { .. }), "{r:?}");
        let s = status(&want(&mut e, false)).cloned().unwrap();
        assert_eq!(
            (s.now, s.seed, s.params[2]),
            (0, 8, 6),
            "from 0, the new seed, the link's workers until the action"
        );
        assert!(s.query.contains("a="), "the actions are kept: {}", s.query);
        e.handle(Command::Restart { seed: None, forget_actions: true });
        let s = status(&want(&mut e, false)).cloned().unwrap();
        assert!(s.seed == 8 && !s.query.contains("a=") && s.query.contains("workers=6"), "{}", s.query);
    }

    #[test]
    fn links_that_cannot_be_opened_say_why() {
        let mut e = Engine::new(all(), ticking);
        let r = e.handle(Command::Open { id: "nope".into(), query: String::new() });
        assert!(matches!(&r[0], Reply::Unreadable { unknown: Some(id), .. } if id == "nope"), "{r:?}");
        let r = e.handle(Command::Play { speed: 1.0 });
        assert!(matches!(&r[0], Reply::Error { fatal: false, .. }), "{r:?}");
        let r = e.handle(Command::Open { id: "backpressure".into(), query: "seed=x&workers=99999".into() });
        match &r[0] {
            Reply::Opened { problems, .. } => assert!(problems.len() >= 2, "{problems:?}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_log_keeps_to_its_filter() {
        let mut e = opened("seed=1");
        e.handle(Command::Seek { to: 2_000_000 });
        while e.busy() {
            e.slice(SLICE_MS);
        }
        let r =
            e.handle(Command::Want { full: true, log: LogFilter { node: Some(0), kind: "sent".into(), limit: 20 } });
        let log = &status(&r).unwrap().full.as_ref().unwrap().log;
        assert!(!log.is_empty() && log.len() <= 20);
        assert!(log.iter().all(|l| l.kind == "sent"), "{log:?}");
        assert!(log.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    }
}
