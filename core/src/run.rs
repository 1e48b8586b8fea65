//! `Run`: the object-safe face of a running simulation, so the runner and the web player
//! can drive any scenario without knowing its types.

use crate::frame::{CheckStatus, Frame};
use crate::metrics::{Metrics, Sampler};
use crate::recipe::{ActionKind, Recipe, RecipeError};
use crate::spec::ScenarioSpec;
use crate::time::Time;
use crate::trace::Trace;

pub trait Run {
    fn spec(&self) -> &'static ScenarioSpec;
    /// The recipe so far, including actions injected live.
    fn recipe(&self) -> &Recipe;
    fn now(&self) -> Time;
    fn node_count(&self) -> u32;
    /// Events processed so far.
    fn events(&self) -> u64;
    /// Messages and timers that reached a node with no handler for them (see
    /// `Ctx::unhandled`): always 0 in a correct scenario.
    fn unhandled(&self) -> u64;
    fn next_event_time(&self) -> Option<Time>;
    /// Processes one event. Returns false when nothing is left to do.
    fn step(&mut self) -> bool;
    /// Processes every event up to and including `t` (at most `max_events` of them), then
    /// sets the clock to `t` if it got there. Returns the number of events processed.
    fn run_until(&mut self, t: Time, max_events: u64) -> u64;
    /// Whether every event up to and including `t` is done. The clock alone cannot say:
    /// a slice of events (`run_until` with a cap) can stop part-way through an instant,
    /// with the clock at `t` and more of `t`'s events still queued — stopping there would
    /// leave a run that no straight replay of its recipe ever shows.
    fn reached(&self, t: Time) -> bool {
        self.now() >= t && self.next_event_time().is_none_or(|next| next > t)
    }
    /// Records a user action now (it takes effect at the next microsecond, exactly as it
    /// will on replay) and returns the time it was scheduled for.
    fn inject(&mut self, action: ActionKind) -> Result<Time, RecipeError>;
    fn frame(&self, max_messages: usize) -> Frame;
    fn checks(&self) -> &[CheckStatus];
    fn metrics(&self) -> &Metrics;
    fn sampler(&self) -> &Sampler;
    fn trace(&self) -> &Trace;
    /// Turns keeping what a viewer needs (trace entries, copies of messages, the latest
    /// deliveries) on or off. Turned on after being off, it starts afresh, so what is kept
    /// is always one unbroken stretch of the run up to now. Never changes the run itself.
    fn keep_trace(&mut self, on: bool);
    /// The message or timer of trace entry `seq` in full (`Debug`), if still kept.
    fn detail(&self, seq: u64) -> Option<String>;
    /// A copy of the whole run as it stands, for rewinding from checkpoints.
    fn snapshot(&self) -> Box<dyn Run>;
    /// Every fault and action of the run — the scenario's plan and the recipe's — with its
    /// time, in time order (for marking the timeline).
    fn timeline(&self) -> Vec<(Time, String)>;
}
