//! The player's engine (not reactive): the run, checkpoints for quick rewinding, and the
//! operations the page performs — advance within a time budget, seek, step, inject.

use faultline_core::{open, ActionKind, Recipe, RecipeError, Run, ScenarioSpec, Time, MICROS_PER_S};

/// How often (in simulated time) a checkpoint is kept while playing forward.
const CHECKPOINT_EVERY: u64 = MICROS_PER_S;
/// Events processed between looks at the wall clock.
const CHUNK: u64 = 500;

pub struct Player {
    pub spec: &'static ScenarioSpec,
    pub run: Box<dyn Run>,
    /// Snapshots of the run at increasing times, all of the current recipe.
    checkpoints: Vec<Box<dyn Run>>,
    pub until: Time,
}

impl Player {
    pub fn new(spec: &'static ScenarioSpec, recipe: &Recipe) -> (Player, Vec<RecipeError>) {
        let (run, problems) = open(spec, recipe);
        let first = run.snapshot();
        (Player { spec, run, checkpoints: vec![first], until: Time(spec.default_until) }, problems)
    }

    pub fn recipe(&self) -> &Recipe {
        self.run.recipe()
    }

    pub fn now(&self) -> Time {
        self.run.now()
    }

    pub fn at_end(&self) -> bool {
        self.run.now() >= self.until
    }

    fn keep_checkpoint(&mut self) {
        let last = self.checkpoints.last().map_or(Time::ZERO, |c| c.now());
        if self.run.now().since(last) >= CHECKPOINT_EVERY {
            self.checkpoints.push(self.run.snapshot());
        }
    }

    /// Runs towards `target` until it is reached or `still_time()` says the frame's budget is
    /// spent. Returns false if the budget ran out first.
    pub fn advance(&mut self, target: Time, mut still_time: impl FnMut() -> bool) -> bool {
        let target = target.min(self.until);
        while self.run.now() < target {
            let next_mark = Time(self.run.now().micros() / CHECKPOINT_EVERY * CHECKPOINT_EVERY + CHECKPOINT_EVERY);
            let stop = target.min(next_mark);
            let done = self.run.run_until(stop, CHUNK);
            if self.run.now() >= stop {
                self.keep_checkpoint();
            }
            if done == CHUNK && self.run.now() < target && !still_time() {
                return false;
            }
        }
        true
    }

    /// Rewinds to the latest checkpoint at or before `t` (cheap); `advance` then covers the rest.
    pub fn rewind_towards(&mut self, t: Time) {
        let t = t.min(self.until);
        if t < self.run.now() {
            let i = self.checkpoints.iter().rposition(|c| c.now() <= t).unwrap_or(0);
            self.checkpoints.truncate(i + 1);
            self.run = self.checkpoints[i].snapshot();
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
        }
    }

    /// One event back: re-simulate to one event fewer.
    pub fn step_back(&mut self) {
        let want = self.run.events().saturating_sub(1);
        let i = self.checkpoints.iter().rposition(|c| c.events() <= want).unwrap_or(0);
        self.checkpoints.truncate(i + 1);
        self.run = self.checkpoints[i].snapshot();
        while self.run.events() < want && self.run.step() {}
    }

    /// Records a user action now. Checkpoints after this instant no longer match the recipe,
    /// and those before it lack the action, so all but the current run are rebuilt lazily.
    pub fn inject(&mut self, action: ActionKind) -> Result<Time, RecipeError> {
        let at = self.run.inject(action)?;
        let recipe = self.run.recipe().clone();
        let (start, _) = open(self.spec, &recipe);
        self.checkpoints = vec![start, self.run.snapshot()];
        Ok(at)
    }

    /// Starts over with a different recipe (new seed, or a reset).
    pub fn replace(&mut self, recipe: &Recipe) -> Vec<RecipeError> {
        let (p, problems) = Player::new(self.spec, recipe);
        *self = p;
        problems
    }
}
