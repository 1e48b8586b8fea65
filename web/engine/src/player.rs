//! The player's engine (not reactive): the run, checkpoints for quick rewinding, and the
//! operations the page performs — advance within a time budget, seek, step, inject.

use crate::heap;
use faultline_core::{
    open, shared_check, ActionKind, Recipe, RecipeError, Run, ScenarioSpec, SharedCheck, Time, MICROS_PER_MS,
    MICROS_PER_S,
};

/// How often (in simulated time) a checkpoint is kept while playing forward.
const CHECKPOINT_EVERY: u64 = MICROS_PER_S;
/// The most of the time spent simulating that keeping checkpoints may take. A run whose
/// state grows with every request (the payments ledger at the seeds' scale) takes longer to
/// copy each second (200 ms natively at 16 s), so its checkpoints come further apart instead
/// of stalling the page once a simulated second; a rewind then re-simulates at most about
/// twenty copies' worth of time.
const CHECKPOINT_SHARE: f64 = 0.05;
/// Events processed between looks at the wall clock.
const CHUNK: u64 = 500;
/// The most the checkpoints may hold together. A run whose state grows with every request
/// (the payments ledger at the seeds' scale) keeps fewer, further apart; rewinding then
/// re-simulates more.
pub const CHECKPOINT_BUDGET: usize = 256 << 20;
/// The most the whole program may hold before the player stops a run, rather than let the
/// tab run out of memory and freeze.
pub const HEAP_LIMIT: usize = 1 << 30;
/// How many of a frame's last events a run that cannot keep up keeps for the event log, as
/// a multiple of what the trace holds: the frame before's pace guesses where they start.
const KEPT_TAIL: f64 = 1.5;

/// Which of the checkpoints (each one's time and size, in time order) to keep within
/// `budget` bytes: while over it, the one (never the start nor the latest) whose neighbours
/// are closest together is dropped, so that those left spread evenly over the run, wherever
/// and in whatever order they were taken. A run whose checkpoints grow with it (payments at
/// the seeds' scale) fits many small early ones and few big late ones in the budget; evenly
/// spread, no rewind re-simulates much more than any other. If the start and the latest
/// alone are over the budget, the latest goes too.
fn within_budget(checkpoints: &[(Time, usize)], budget: usize) -> Vec<bool> {
    let mut left: Vec<usize> = (0..checkpoints.len()).collect();
    let mut total: usize = checkpoints.iter().map(|c| c.1).sum();
    let time = |i: usize| checkpoints[i].0;
    while total > budget && left.len() > 2 {
        let closest = (1..left.len() - 1).min_by_key(|&k| time(left[k + 1]).since(time(left[k - 1]))).unwrap_or(1);
        total -= checkpoints[left.remove(closest)].1;
    }
    if total > budget && left.len() == 2 {
        left.pop();
    }
    let mut keep = vec![false; checkpoints.len()];
    left.into_iter().for_each(|i| keep[i] = true);
    keep
}

/// A snapshot of the run, and the bytes it took.
struct Checkpoint {
    run: Box<dyn Run>,
    bytes: usize,
}

impl Checkpoint {
    fn of(run: &dyn Run) -> Checkpoint {
        let before = heap::live_bytes();
        let run = run.snapshot();
        Checkpoint { bytes: heap::live_bytes().saturating_sub(before), run }
    }
}

pub struct Player {
    pub spec: &'static ScenarioSpec,
    pub run: Box<dyn Run>,
    /// Snapshots of the run at increasing times, all of the current recipe; the first is
    /// always its start.
    checkpoints: Vec<Checkpoint>,
    /// The size of the last snapshot taken: a run bigger than the whole budget gets none.
    last_snapshot: usize,
    pub until: Time,
    pub checkpoint_budget: usize,
    pub heap_limit: usize,
    /// Set when `advance` stopped because the program held more than `heap_limit` (the page
    /// takes it, pauses and says so).
    pub out_of_memory: bool,
    /// Wall-clock milliseconds, to weigh what checkpoints cost against simulating: the
    /// page's clock in the browser; by default none (every checkpoint is free, so one is
    /// kept each simulated second).
    pub clock: fn() -> f64,
    /// Wall milliseconds spent simulating since the last checkpoint, and what keeping that
    /// one took.
    sim_ms: f64,
    checkpoint_ms: f64,
    /// When the last `advance` ran out of its budget: the events it processed, and how many
    /// per simulated microsecond. The next keeps what a viewer needs (the trace, message
    /// copies, the afterglow) only for about as many of its last events as the trace holds:
    /// from where as many events as the last one's are nearly done, or from that many
    /// events' worth of simulated time before where it would stop. Keeping them costs a run
    /// at the seeds' scale a quarter to a half more time, and only the last of a frame's
    /// events can be seen.
    behind: Option<(u64, f64)>,
    /// What comparing the run with its link's shared fingerprint found, once the run stood
    /// where that was taken (`None` before then, or with no fingerprint); the page takes it.
    pub shared_news: Option<SharedCheck>,
    shared_done: bool,
}

fn no_clock() -> f64 {
    0.0
}

impl Player {
    pub fn new(spec: &'static ScenarioSpec, recipe: &Recipe) -> (Player, Vec<RecipeError>) {
        let (run, problems) = open(spec, recipe);
        let first = Checkpoint::of(&*run);
        let mut player = Player {
            spec,
            run,
            last_snapshot: first.bytes,
            checkpoints: vec![first],
            until: Time(spec.default_until),
            checkpoint_budget: CHECKPOINT_BUDGET,
            heap_limit: HEAP_LIMIT,
            out_of_memory: false,
            clock: no_clock,
            sim_ms: 0.0,
            checkpoint_ms: 0.0,
            behind: None,
            shared_news: None,
            shared_done: false,
        };
        player.check_shared();
        (player, problems)
    }

    pub fn recipe(&self) -> &Recipe {
        self.run.recipe()
    }

    pub fn now(&self) -> Time {
        self.run.now()
    }

    pub fn at_end(&self) -> bool {
        self.run.reached(self.until)
    }

    /// Whether the run stands at `t` with all of `t`'s events done (see `Run::reached`).
    pub fn reached(&self, t: Time) -> bool {
        self.run.reached(t)
    }

    /// Keeps a checkpoint when the run is a checkpoint interval past the one before it and,
    /// after a rewind, before the one after: re-simulating a stretch between two far-apart
    /// checkpoints fills it in, so going back there again is quick — unless the budget would
    /// drop it again at once (it would be the closest to its neighbours), as it would in a
    /// run whose checkpoints already fill the budget, spread evenly.
    fn keep_checkpoint(&mut self) {
        let now = self.run.now();
        let at = self.up_to(now);
        let before = self.checkpoints[at - 1].run.now();
        if now.since(before) < CHECKPOINT_EVERY
            || self.checkpoints.get(at).is_some_and(|c| c.run.now().since(now) < CHECKPOINT_EVERY)
            || self.last_snapshot > self.checkpoint_budget
            || self.sim_ms * CHECKPOINT_SHARE < self.checkpoint_ms
        {
            return;
        }
        if at < self.checkpoints.len() {
            let mut plan = self.plan();
            plan.insert(at, (now, self.last_snapshot));
            if !within_budget(&plan, self.checkpoint_budget)[at] {
                return;
            }
        }
        self.push_checkpoint(at);
    }

    /// How many checkpoints are of `t` or before (they are in time order, the first of the
    /// start): the latest of them is at one less, a new one of `t` would go here.
    fn up_to(&self, t: Time) -> usize {
        self.checkpoints.partition_point(|c| c.run.now() <= t)
    }

    /// Each checkpoint's time and size.
    fn plan(&self) -> Vec<(Time, usize)> {
        self.checkpoints.iter().map(|c| (c.run.now(), c.bytes)).collect()
    }

    /// Keeps a checkpoint of the run as it is now, at `at` among the others (their order is
    /// their time), and measures what that took.
    fn push_checkpoint(&mut self, at: usize) {
        let start = (self.clock)();
        let c = Checkpoint::of(&*self.run);
        self.last_snapshot = c.bytes;
        self.checkpoints.insert(at, c);
        self.thin();
        self.checkpoint_ms = (self.clock)() - start;
        self.sim_ms = 0.0;
    }

    /// Keeps the checkpoints within the budget (see `within_budget`).
    fn thin(&mut self) {
        let keep = within_budget(&self.plan(), self.checkpoint_budget);
        let mut k = keep.iter();
        self.checkpoints.retain(|_| k.next() == Some(&true));
    }

    /// When each checkpoint is of.
    pub fn checkpoint_times(&self) -> Vec<Time> {
        self.checkpoints.iter().map(|c| c.run.now()).collect()
    }

    /// How many checkpoints are kept, and the bytes they hold.
    pub fn checkpoint_use(&self) -> (usize, usize) {
        (self.checkpoints.len(), self.checkpoints.iter().map(|c| c.bytes).sum())
    }

    /// Runs towards `target` until it is reached or `still_time()` says the frame's budget is
    /// spent. Returns false if the budget ran out first.
    pub fn advance(&mut self, target: Time, still_time: impl FnMut() -> bool) -> bool {
        let (events, from) = (self.run.events(), self.run.now());
        let reached = self.advance_keeping_the_tail(target, still_time);
        let (done, span) = (self.run.events() - events, self.run.now().since(from));
        self.behind = (!reached && span > 0).then(|| (done, done as f64 / span as f64));
        self.run.keep_trace(true);
        reached
    }

    fn advance_keeping_the_tail(&mut self, target: Time, mut still_time: impl FnMut() -> bool) -> bool {
        let target = target.min(self.until);
        self.out_of_memory = false;
        // Where keeping starts at the latest: after this many events, or this much simulated
        // time before a stop (none: keep all).
        let tail = (KEPT_TAIL * self.run.trace().cap() as f64) as u64;
        let quiet = self
            .behind
            .map(|(done, rate)| (self.run.events() + done.saturating_sub(tail), ((tail as f64 / rate) as u64).max(1)));
        // Once the budget ran out while nothing was kept: keep, and go on regardless of the
        // budget until this many events have been kept, so the log is never left stale.
        let mut overtime_until: Option<u64> = None;
        while !self.run.reached(target) {
            if heap::live_bytes() > self.heap_limit {
                self.out_of_memory = true;
                return true;
            }
            let next_mark = Time(self.run.now().micros() / CHECKPOINT_EVERY * CHECKPOINT_EVERY + CHECKPOINT_EVERY);
            // Stop where the link's fingerprint was taken, to compare it there.
            let stop = match self.shared_pending() {
                Some(at) if at >= self.run.now() => target.min(next_mark).min(at),
                _ => target.min(next_mark),
            };
            // Keep over the stretch before each stop (the target, or a checkpoint's moment,
            // so checkpoints are taken with what a viewer needs).
            let (quiet_events, quiet_until) = match (quiet, overtime_until) {
                (Some((events, span)), None) => (events, Time(stop.micros().saturating_sub(span))),
                _ => (0, Time::ZERO),
            };
            let keep = self.run.events() >= quiet_events || self.run.now() >= quiet_until;
            self.run.keep_trace(keep);
            let start = (self.clock)();
            let done = if keep {
                self.run.run_until(stop, CHUNK)
            } else {
                self.run.run_until(quiet_until, CHUNK.min(quiet_events - self.run.events()))
            };
            self.sim_ms += (self.clock)() - start;
            self.check_shared();
            if self.run.reached(stop) {
                self.keep_checkpoint();
            }
            if done == CHUNK && !self.run.reached(target) {
                match overtime_until {
                    Some(n) if self.run.events() >= n => return false,
                    Some(_) => {}
                    None if !still_time() => {
                        if keep {
                            return false;
                        }
                        overtime_until = Some(self.run.events() + self.run.trace().cap() as u64);
                    }
                    None => {}
                }
            }
        }
        true
    }

    /// Goes to the latest checkpoint at or before `t` (cheap) when `t` is behind the run, or
    /// when that checkpoint is ahead of it (a jump forward after a rewind: the checkpoints
    /// past the rewind's point are of the same run, so they are kept); `advance` then covers
    /// the rest.
    pub fn rewind_towards(&mut self, t: Time) {
        let t = t.min(self.until);
        let from = &self.checkpoints[self.up_to(t) - 1].run;
        if t < self.run.now() || from.now() > self.run.now() {
            self.run = from.snapshot();
        }
    }

    /// Re-simulates to exactly `t` from the latest checkpoint at or before it, in one go.
    pub fn seek(&mut self, t: Time) {
        self.rewind_towards(t);
        self.advance(t.min(self.until), || true);
    }

    /// One event forward.
    pub fn step(&mut self) {
        if self.run.next_event_time().is_some_and(|t| t <= self.until) {
            self.run.step();
            self.check_shared();
        }
    }

    /// When the link's fingerprint was taken, while it is still to be compared.
    fn shared_pending(&self) -> Option<Time> {
        self.run.recipe().shared.filter(|_| !self.shared_done).map(|s| s.at)
    }

    /// Compares the run with the link's fingerprint once it stands where that was taken.
    fn check_shared(&mut self) {
        if self.shared_pending().is_none() {
            return;
        }
        match shared_check(&*self.run) {
            SharedCheck::Pending(_) | SharedCheck::NotShared => {}
            verdict => {
                self.shared_done = true;
                self.shared_news = Some(verdict);
            }
        }
    }

    /// One event back: re-simulate to one event fewer.
    pub fn step_back(&mut self) {
        let want = self.run.events().saturating_sub(1);
        let i = self.checkpoints.iter().rposition(|c| c.run.events() <= want).unwrap_or(0);
        self.run = self.checkpoints[i].run.snapshot();
        while self.run.events() < want && self.run.step() {}
    }

    /// Records a user action now. Checkpoints after this instant no longer match the recipe,
    /// and those before it lack the action, so all but the current run are rebuilt lazily.
    pub fn inject(&mut self, action: ActionKind) -> Result<Time, RecipeError> {
        let at = self.run.inject(action)?;
        let recipe = self.run.recipe().clone();
        let (start, _) = open(self.spec, &recipe);
        let start = Checkpoint { bytes: self.checkpoints[0].bytes, run: start };
        self.checkpoints = vec![start];
        self.push_checkpoint(1);
        // The action is recorded a microsecond from now: take the run through it, so a paused
        // run shows what it did at once (a crashed node is drawn crashed) instead of at play.
        while self.run.next_event_time().is_some_and(|t| t <= at && t <= self.until) {
            self.run.step();
        }
        self.check_shared();
        Ok(at)
    }

    /// Moves a parameter's slider. A live parameter acts from now (a recorded action); a
    /// setup one is read when the run is built, so the run starts over from 0 with the new
    /// value and the same actions: then it returns what the rebuilt recipe had to repair (an
    /// action on a node the new value removed, say).
    pub fn set_param(&mut self, id: &str, value: i64) -> Result<Option<Vec<RecipeError>>, RecipeError> {
        let p = self.spec.param(id).ok_or_else(|| RecipeError::UnknownParam { id: id.to_string() })?;
        if p.live {
            self.inject(ActionKind::SetParam { id: p.id.to_string(), value })?;
            return Ok(None);
        }
        // Rebuilding validates the recipe: a value off the slider is clamped, and reported.
        let recipe = Recipe { shared: None, ..self.recipe().clone() }.with_param(p.id, value);
        Ok(Some(self.replace(&recipe)))
    }

    /// Starts over with a different recipe (new seed, or a reset).
    pub fn replace(&mut self, recipe: &Recipe) -> Vec<RecipeError> {
        let (mut p, problems) = Player::new(self.spec, recipe);
        (p.checkpoint_budget, p.heap_limit, p.clock) = (self.checkpoint_budget, self.heap_limit, self.clock);
        *self = p;
        problems
    }
}

/// How fast a run really plays, measured a few times a second and averaged over the last
/// second, so one slow moment (a checkpoint being kept, say) does not set the number shown.
#[derive(Debug, Default)]
pub struct PaceMeter {
    /// (wall ms, simulated time, whether the simulation ran out of budget since the mark
    /// before), while playing without a break.
    marks: Vec<(f64, Time, bool)>,
}

impl PaceMeter {
    /// Measures averaged over: four, a second at the page's four a second.
    const SPAN: usize = 4;

    /// Takes a measure. Returns the pace reached (simulated over wall time) when it falls
    /// short of `speed` over at least the last two measures, and the simulation itself ran
    /// out of time: frames that came late because the machine was busy elsewhere lose time
    /// without it, and that is not the run's doing.
    pub fn measure(&mut self, wall: f64, now: Time, playing: bool, starved: bool, speed: f64) -> Option<f64> {
        if !playing || self.marks.last().is_some_and(|&(w, t, _)| wall <= w || now < t) {
            self.marks.clear();
        }
        if !playing {
            return None;
        }
        self.marks.push((wall, now, starved));
        if self.marks.len() > Self::SPAN + 1 {
            self.marks.remove(0);
        }
        let &(w0, t0, _) = self.marks.first()?;
        if self.marks.len() < 3 || speed == 0.0 || !self.marks[1..].iter().any(|m| m.2) {
            return None;
        }
        let reached = now.since(t0) as f64 / MICROS_PER_MS as f64 / (wall - w0);
        (reached < 0.9 * speed).then_some(reached)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::{fingerprint, Recipe};

    fn player(query: &str) -> Player {
        let (recipe, spec) = Recipe::from_url_strict(query, faultline_scenarios::find).unwrap();
        Player::new(spec, &recipe).0
    }

    fn state(p: &Player) -> (Time, u64, String) {
        (p.now(), p.run.events(), fingerprint(p.run.trace().hash()))
    }

    #[test]
    fn a_setup_slider_restarts_the_run_with_its_value_and_a_live_one_acts_from_now() {
        let _one_at_a_time = heap::SERIAL.lock();
        for spec in faultline_scenarios::ALL {
            for p in spec.params {
                let value = if p.default == p.max { p.min } else { p.max };
                let mut pl = Player::new(spec, &spec.default_recipe(1)).0;
                let crash = ActionKind::Fault(faultline_core::Fault::Crash { node: 0 });
                pl.seek(Time(MICROS_PER_S));
                pl.inject(crash.clone()).unwrap();
                pl.seek(Time(2 * MICROS_PER_S));
                let restarted = pl.set_param(p.id, value).unwrap();
                let r = pl.recipe();
                if p.live {
                    assert!(restarted.is_none(), "{}.{}", spec.id(), p.id);
                    // Recorded a microsecond from now, and taken through at once.
                    assert_eq!(pl.now(), Time(2 * MICROS_PER_S + 1));
                    let last = &r.actions.last().unwrap().kind;
                    assert_eq!(*last, ActionKind::SetParam { id: p.id.into(), value });
                } else {
                    assert!(restarted.is_some(), "{}.{} is setup: the run starts over", spec.id(), p.id);
                    assert_eq!((pl.now(), pl.run.events()), (Time::ZERO, 0), "{}.{}", spec.id(), p.id);
                    assert_eq!(r.params.get(p.id), Some(&value));
                    assert_eq!(r.actions.len(), 1, "the crash is kept; nothing is recorded for the slider");
                    assert_eq!(r.actions[0].kind, crash);
                }
            }
        }
    }

    #[test]
    fn a_shared_link_is_checked_where_its_fingerprint_was_taken() {
        let _one_at_a_time = heap::SERIAL.lock();
        let spec = faultline_scenarios::ALL[0];
        let mut sharer = Player::new(spec, &spec.default_recipe(2)).0;
        sharer.seek(Time(2_500_000));
        let mark = faultline_core::shared_mark(&*sharer.run);
        for (fingerprint, want_match) in [(mark.fingerprint, true), (mark.fingerprint ^ 1, false)] {
            let shared = faultline_core::Shared { fingerprint, ..mark };
            let mut pl = Player::new(spec, &Recipe { shared: Some(shared), ..sharer.recipe().clone() }).0;
            pl.advance(Time(2_000_000), || true);
            assert!(pl.shared_news.is_none(), "not there yet");
            // Played past the mark in one go, the player stops there to compare.
            pl.advance(Time(4_000_000), || true);
            match pl.shared_news.take() {
                Some(SharedCheck::Matches) => assert!(want_match),
                Some(SharedCheck::Changed(_)) => assert!(!want_match),
                other => panic!("{other:?}"),
            }
            assert_eq!(pl.now(), Time(4_000_000));
        }
    }

    #[test]
    fn checkpoints_stay_within_their_budget_and_rewinds_replay_the_same_run() {
        let _one_at_a_time = heap::SERIAL.lock();
        // Room for about five of the run's biggest checkpoints (its trace grows for a while).
        let mut probe = player("s=leader-election");
        probe.advance(Time::from_secs(25), || true);
        assert_eq!(probe.checkpoint_use().0, 26, "a checkpoint a second, unthinned by default");
        let biggest = probe.checkpoints.iter().map(|c| c.bytes).max().unwrap();
        let mut p = player("s=leader-election");
        p.checkpoint_budget = 5 * biggest;
        assert!(p.advance(Time::from_secs(25), || true));
        let (n, bytes) = p.checkpoint_use();
        assert!(bytes <= p.checkpoint_budget, "{bytes} bytes kept, budget {}", p.checkpoint_budget);
        assert!((3..=10).contains(&n), "{n} checkpoints, thinned from 26");
        assert!(widest_gap(&p) <= 2 * 25 / (n as u64 - 1), "not spread evenly: at {:?} s", secs(&p));
        assert_eq!(p.checkpoints[0].run.now(), Time::ZERO, "the start is always kept");
        rewinds_replay_the_same_run(&mut p, "s=leader-election", &[20, 13, 7, 1]);
    }

    /// Back to each of `times` (seconds) and forward again to where `p` was (that instant's
    /// events all done, if `p` stopped part-way through them): the same run as a straight
    /// one, whichever checkpoint each rewind starts from.
    fn rewinds_replay_the_same_run(p: &mut Player, query: &str, times: &[u64]) {
        let end = p.now();
        let seek = |t: Time| {
            let mut straight = player(query);
            straight.advance(t, || true);
            state(&straight)
        };
        for &t in times {
            p.seek(Time::from_secs(t));
            assert_eq!(state(p), seek(Time::from_secs(t)), "at {t} s");
        }
        p.advance(end, || true);
        assert_eq!(state(p), seek(end));
    }

    thread_local! {
        static TICKS: std::cell::Cell<f64> = const { std::cell::Cell::new(0.0) };
    }

    /// A clock that moves 1 ms each time it is read: a chunk of simulation and a checkpoint
    /// each seem to take 1 ms.
    fn ticking() -> f64 {
        TICKS.with(|t| {
            t.set(t.get() + 1.0);
            t.get()
        })
    }

    /// How far `ticking` has moved.
    fn ticks() -> f64 {
        TICKS.with(|t| t.get())
    }

    #[test]
    fn checkpoints_that_cost_much_against_simulating_come_further_apart() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = player("s=leader-election");
        p.clock = ticking;
        p.advance(Time::from_secs(25), || true);
        // A checkpoint seems to cost as much as a chunk of simulation, and this run simulates
        // about a chunk a second: after the first (its cost not yet known), one every
        // twenty-odd seconds, not every second.
        let at = secs(&p);
        assert!(at.len() == 3 && at[2] - at[1] >= 20, "checkpoints at {at:?} s");
        rewinds_replay_the_same_run(&mut p, "s=leader-election", &[24, 21, 13, 2]);
        // The clock survives a new seed.
        let recipe = p.recipe().clone();
        p.replace(&recipe);
        p.advance(Time::from_secs(25), || true);
        assert_eq!(secs(&p).len(), 3);
    }

    #[test]
    fn a_jump_forward_after_a_rewind_starts_from_the_checkpoints_past_it() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = player("s=leader-election");
        p.advance(Time::from_secs(25), || true);
        p.seek(Time::from_secs(3));
        assert_eq!(p.checkpoint_use().0, 26, "a rewind keeps the checkpoints past it");
        // Forward to a checkpoint's moment: nothing is simulated (the clock is read around
        // each stretch of simulation, so it does not move), and it is the same run.
        p.clock = ticking;
        let before = ticks();
        p.seek(Time::from_secs(20));
        assert_eq!(ticks(), before, "simulated from 3 s to 20 s instead of starting at the checkpoint");
        let mut straight = player("s=leader-election");
        straight.advance(Time::from_secs(20), || true);
        assert_eq!(state(&p), state(&straight));
        // Back and forth, and a step back from there: still the same run throughout.
        rewinds_replay_the_same_run(&mut p, "s=leader-election", &[2, 24, 9, 25, 17, 0]);
        p.step_back();
        assert_eq!(p.run.events(), straight.run.events() - 1);
        assert_eq!(p.checkpoint_use().0, 26, "nor does a step back drop any");
    }

    fn secs(p: &Player) -> Vec<u64> {
        p.checkpoint_times().into_iter().map(|t| t.micros() / MICROS_PER_S).collect()
    }

    /// The longest stretch between two checkpoints, in seconds.
    fn widest_gap(p: &Player) -> u64 {
        secs(p).windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)
    }

    #[test]
    fn over_the_budget_the_checkpoint_closest_to_its_neighbours_goes_first() {
        let cs = |secs: &[u64]| secs.iter().map(|&s| (Time::from_secs(s), 10)).collect::<Vec<_>>();
        let kept = |secs: &[u64], budget| {
            let keep = within_budget(&cs(secs), budget);
            secs.iter().zip(keep).filter_map(|(&s, k)| k.then_some(s)).collect::<Vec<_>>()
        };
        assert_eq!(kept(&[0, 1, 2, 3, 4, 10, 20], 70), [0, 1, 2, 3, 4, 10, 20], "within the budget");
        assert_eq!(kept(&[0, 1, 2, 3, 4, 10, 20], 40), [0, 4, 10, 20]);
        assert_eq!(kept(&[0, 19, 20], 20), [0, 20], "the latest is kept");
        assert_eq!(kept(&[0, 20], 19), [0], "the start is kept");
        assert_eq!(kept(&[0, 20], 9), [0]);
    }

    /// A run at 25 s with checkpoints far apart, as one whose checkpoints cost much keeps
    /// them: at the start, then from 20 s on.
    fn gapped() -> Player {
        let mut p = player("s=leader-election");
        p.advance(Time::from_secs(25), || true);
        p.checkpoints.retain(|c| c.run.now() == Time::ZERO || c.run.now() >= Time::from_secs(20));
        assert_eq!(widest_gap(&p), 20);
        p
    }

    #[test]
    fn re_simulating_between_far_apart_checkpoints_fills_the_gap() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = gapped();
        p.seek(Time::from_secs(12));
        let mut filled: Vec<u64> = (0..=12).collect();
        filled.extend(20..=25);
        assert_eq!(secs(&p), filled);
        // Back into the filled stretch: it starts from the checkpoint just before.
        p.clock = ticking;
        let before = ticks();
        p.seek(Time::from_ms(7_500));
        assert!(ticks() - before <= 4.0, "re-simulated {} chunks, not from 7 s", ticks() - before);
        // On into the rest of the gap: filled up to the next checkpoint.
        p.clock = || 0.0;
        p.seek(Time::from_ms(19_500));
        filled.splice(13..13, 13..=19);
        assert_eq!(secs(&p), filled);
        rewinds_replay_the_same_run(&mut p, "s=leader-election", &[16, 3, 22, 12]);
    }

    #[test]
    fn within_the_budget_the_checkpoints_spread_evenly_over_the_run() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = gapped();
        // No room for more: re-simulating into the gap fills it all the same, and drops
        // checkpoints where they are closest together to stay within the budget.
        p.checkpoint_budget = p.checkpoint_use().1;
        p.seek(Time::from_secs(12));
        let at = secs(&p);
        assert!(p.checkpoint_use().1 <= p.checkpoint_budget);
        assert_eq!((at[0], at[at.len() - 1]), (0, 25), "the start and the latest are kept");
        assert!(widest_gap(&p) <= 8, "checkpoints at {at:?} s");
        rewinds_replay_the_same_run(&mut p, "s=leader-election", &[16, 3, 22, 12]);
    }

    #[test]
    fn frames_that_cannot_keep_up_keep_the_log_of_their_last_events() {
        let _one_at_a_time = heap::SERIAL.lock();
        let q = "s=distributed-rate-limiter&strategy=gossip&users=200&abusive=200&normal_rps=1000&abusive_rps=5000&instances=32";
        let mut p = player(q);
        let mut straight = player(q);
        let cap = p.run.trace().cap();
        // Frames that run out of budget after 100 chunks, then one after its first chunk:
        // from the second on, a frame keeps the trace only over its last stretch — or, when
        // its budget ran out before that stretch, over as many events as the trace holds.
        for (frame, chunks) in [100, 100, 100, 1, 100, 1, 1, 100].into_iter().enumerate() {
            let mut n = 0;
            assert!(!p.advance(p.until, || {
                n += 1;
                n < chunks
            }));
            straight.run.run_until(p.now(), p.run.events() - straight.run.events());
            assert_eq!(state(&p), state(&straight), "frame {frame}");
            let (kept, all) = (p.run.trace().entries().to_vec(), straight.run.trace().entries().to_vec());
            assert!(kept.len() >= cap / 2, "frame {frame}: {} entries kept", kept.len());
            assert!(kept[..] == all[all.len() - kept.len()..], "frame {frame}: not the latest events, unbroken");
            let last = kept.last().unwrap().seq;
            assert_eq!(p.run.detail(last), straight.run.detail(last));
            if chunks == 1 && frame > 0 {
                assert_eq!(kept.len(), cap, "frame {frame}: kept through its budget, as many as the trace holds");
            }
        }
        assert!(p.run.trace().keeps(), "left keeping, for a step or a rewind");
        rewinds_replay_the_same_run(&mut p, q, &[0]);
    }

    #[test]
    fn a_frame_that_stops_part_way_through_an_instant_finishes_it_before_it_counts_as_there() {
        let _one_at_a_time = heap::SERIAL.lock();
        // A frame's slice of events can end among the events of one instant, with the clock
        // already there; the seek or the run to the end must still do the rest of them, or
        // the page shows a run (and a fingerprint) that replaying its link natively never
        // gives. First the run's earliest such instant after 0, stopped after its first event:
        let q = "s=metrics-aggregation&seed=3";
        let mut p = player(q);
        while p.run.step() && (p.now() == Time::ZERO || p.run.next_event_time() != Some(p.now())) {}
        let t = p.now();
        assert!(t > Time::ZERO && !p.reached(t), "stopped among the events of {t}");
        assert!(p.advance(t, || true));
        let mut straight = player(q);
        straight.run.run_until(t, u64::MAX);
        assert_eq!(state(&p), state(&straight));
        // The end alike (at 6 s every host reports): its events all done before the run is at its end.
        p.until = Time::from_secs(6);
        p.run.run_until(Time(p.until.micros() - 1), u64::MAX);
        assert!(p.run.step() && p.now() == p.until, "an event at the end's instant");
        assert!(!p.at_end(), "more events at the end's instant");
        p.seek(p.until);
        straight.run.run_until(p.until, u64::MAX);
        assert!(p.at_end());
        assert_eq!(state(&p), state(&straight));
    }

    #[test]
    fn a_run_bigger_than_the_budget_keeps_only_its_start() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = player("s=leader-election");
        p.checkpoint_budget = 0;
        p.advance(Time::from_secs(10), || true);
        assert_eq!(p.checkpoint_use().0, 1);
        let end = state(&p);
        p.seek(Time::from_secs(4));
        p.advance(Time::from_secs(10), || true);
        assert_eq!(state(&p), end);
    }

    #[test]
    fn a_run_that_outgrows_the_memory_limit_stops_and_can_go_on_once_there_is_room() {
        let _one_at_a_time = heap::SERIAL.lock();
        let mut p = player("s=leader-election");
        p.advance(Time::from_secs(2), || true);
        p.heap_limit = 0;
        assert!(p.advance(Time::from_secs(5), || true));
        assert!(p.out_of_memory);
        assert_eq!(p.now(), Time::from_secs(2), "it stopped where it was");
        p.heap_limit = HEAP_LIMIT;
        assert!(p.advance(Time::from_secs(5), || true));
        assert!(!p.out_of_memory);
        assert_eq!(p.now(), Time::from_secs(5));
    }

    /// Feeds measures 250 ms apart, each playing `paces[i]` × real time; returns the last answer.
    fn feed(m: &mut PaceMeter, paces: &[f64], starved: bool) -> Option<f64> {
        let (mut wall, mut sim) = (1000.0, 0.0);
        let mut out = m.measure(wall, Time(0), true, starved, 1.0);
        for p in paces {
            wall += 250.0;
            sim += 250.0 * p;
            out = m.measure(wall, Time((sim * MICROS_PER_MS as f64) as u64), true, starved, 1.0);
        }
        out
    }

    #[test]
    fn a_run_short_of_its_speed_is_reported_with_its_average_pace() {
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-3);
        assert_eq!(feed(&mut PaceMeter::default(), &[0.2], true), None, "half a second first");
        assert!(close(feed(&mut PaceMeter::default(), &[0.2, 0.2], true), 0.2));
        // One slow moment among steady ones: the last second's average, not the moment.
        assert!(close(feed(&mut PaceMeter::default(), &[0.4, 0.4, 0.4, 0.4, 0.1], true), 0.325));
        // Keeping up, or short only because frames came late: nothing to say.
        assert_eq!(feed(&mut PaceMeter::default(), &[1.0, 0.95, 1.0], true), None);
        assert_eq!(feed(&mut PaceMeter::default(), &[0.2, 0.2, 0.2], false), None);
    }

    #[test]
    fn a_pause_or_a_jump_back_starts_the_average_again() {
        let mut m = PaceMeter::default();
        assert!(feed(&mut m, &[0.2, 0.2, 0.2], true).is_some());
        assert_eq!(m.measure(3000.0, Time(1), false, true, 1.0), None);
        assert!(m.marks.is_empty());
        feed(&mut m, &[0.2, 0.2], true);
        // The run restarted (a new seed) while playing: simulated time went back.
        assert_eq!(m.measure(9000.0, Time(0), true, true, 1.0), None);
        assert_eq!(m.marks.len(), 1);
    }
}
