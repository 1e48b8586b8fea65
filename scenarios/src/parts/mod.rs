//! The scenario kit: mechanisms that recur across patterns, written once and tested once
//! against what the literature says. A scenario composes them and keeps only its lesson.

pub mod applier;
pub mod arrivals;
pub mod attempts;
pub mod balance;
pub mod bloom;
pub mod breaker;
pub mod broker;
pub mod bucket;
pub mod burn;
pub mod bus;
pub mod cache;
pub mod calls;
pub mod changelog;
pub mod chunks;
pub mod claims;
pub mod cohort;
pub mod commit;
pub mod configs;
pub mod consumer;
pub mod crdt;
pub mod degraded;
pub mod document;
pub mod dual;
pub mod effects;
pub mod ejection;
pub mod eventstore;
pub mod fair;
pub mod flags;
pub mod flight;
pub mod follows;
pub mod gossip;
pub mod hedge;
pub mod interleaving;
pub mod inventory;
pub mod judge;
pub mod keyed;
pub mod lease;
pub mod limit;
pub mod loader;
pub mod lock;
pub mod logins;
pub mod metered;
pub mod outbound;
pub mod owner;
pub mod paging;
pub mod partition;
pub mod pool;
pub mod priority;
pub mod producer;
pub mod queueing;
pub mod redelivery;
pub mod replog;
pub mod resend;
pub mod resequencer;
pub mod retried;
pub mod retry;
pub mod ring;
pub mod ring_queue;
pub mod rollout;
pub mod rollup;
pub mod rotation;
pub mod rounds;
pub mod saga;
pub mod sampler;
pub mod sessions;
pub mod shortcode;
pub mod shutdown;
pub mod sketch;
pub mod sketches;
pub mod snowflake;
pub mod spread;
pub mod sprt;
pub mod staleness;
pub mod station;
pub mod store;
pub mod strategies;
pub mod table;
pub mod tally;
pub mod targets;
pub mod threads;
pub mod tokens;
pub mod tracer;
pub mod unique;
pub mod uplink;
pub mod waiters;
pub mod window;
pub mod writeback;

/// For the parts' own tests: a node run alone in a kernel.
#[cfg(test)]
pub(crate) mod testing {
    use faultline_core::{open, Label, Link, Node, Recipe, Run, ScenarioSpec, Setup, Sim, Time};

    /// The messages of a part's test node that gets none.
    #[derive(Clone, Debug)]
    pub enum NoMsg {}

    impl Label for NoMsg {
        fn label(&self) -> &'static str {
            match *self {}
        }
    }

    /// Just enough of a scenario for the kernel to run one node.
    static SPEC: ScenarioSpec = ScenarioSpec::bare("parts-test", build);

    fn build(_: &Setup) -> Box<dyn Run> {
        panic!("the tests build their runs themselves")
    }

    /// Runs `node`, alone, from time 0 to `until` with the run's generator seeded by `seed`,
    /// and returns it as it is then.
    pub fn run_alone<N: Node>(node: N, seed: u64, until: Time) -> N {
        let setup = Setup { spec: &SPEC, recipe: Recipe::new("parts-test", "only", seed) };
        let mut sim: Sim<N> = Sim::new(&setup, Link::local());
        sim.keep_trace(false);
        sim.add_node(node);
        sim.run_until(until, u64::MAX);
        sim.nodes()[0].clone()
    }

    /// For scenarios' tests: runs `recipe` to `secs` (no trace) and returns the run, with every
    /// counter named in `names` also read at each whole second (`at[s][i]`: `names[i]` at `s` s).
    /// Asserts the recipe opens cleanly and nothing went unhandled.
    pub fn run_sampled(spec: &'static ScenarioSpec, recipe: &Recipe, secs: u64, names: &[&str]) -> Sampled {
        let (mut run, problems) = open(spec, recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        let at = (0..=secs)
            .map(|s| {
                run.run_until(Time::from_secs(s), u64::MAX);
                names.iter().map(|n| run.metrics().counter(n)).collect()
            })
            .collect();
        assert_eq!(run.unhandled(), 0);
        (run, at)
    }

    /// For scenarios' tests that read their nodes by type: runs `sim` to `secs` (no trace) and
    /// returns it, asserting nothing went unhandled.
    pub fn run_sim<N: Node>(mut sim: Sim<N>, secs: u64) -> Sim<N> {
        sim.keep_trace(false);
        sim.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(sim.unhandled(), 0);
        sim
    }

    /// A run and its counters by whole second, from `run_sampled`.
    pub type Sampled = (Box<dyn Run>, Vec<Vec<i64>>);

    /// Counter `i`'s increase from `from` s to `to` s, in `run_sampled`'s samples.
    pub fn between(at: &[Vec<i64>], i: usize, from: usize, to: usize) -> f64 {
        (at[to][i] - at[from][i]) as f64
    }

    /// Headline metric `id`'s samples from `from` s up to `to` s.
    pub fn samples(r: &dyn Run, id: &str, from: f64, to: f64) -> Vec<f64> {
        let s = r.sampler();
        let series = &s.series[r.spec().metrics.iter().position(|m| m.id == id).expect("a headline metric")];
        let times = s.times.iter().map(|t| t.as_secs_f64());
        times.zip(series).filter(|(t, _)| (from..to).contains(t)).map(|(_, &x)| x).collect()
    }

    /// The largest of headline metric `id`'s samples from `from` s up to `to` s (0 if none).
    pub fn most(r: &dyn Run, id: &str, from: f64, to: f64) -> f64 {
        samples(r, id, from, to).into_iter().fold(0.0, f64::max)
    }

    /// When (s) and why the check `check` first failed, if it did.
    pub fn failed_at(r: &dyn Run, check: &str) -> Option<(f64, String)> {
        let c = r.checks().iter().find(|c| c.id == check).expect("a check");
        c.violation.as_ref().map(|v| (v.at.as_secs_f64(), v.why.clone()))
    }
}

#[cfg(test)]
mod tests {
    use faultline_core::Rng;
    use rand::seq::{IndexedRandom, SliceRandom};
    use rand::Rng as _;

    /// `rand`'s integer helpers work on the run's generator and are as deterministic as it
    /// is: the same seed gives the same picks. Pinned, so a `rand` upgrade that changed its
    /// sampling (and so every run using it) fails here first.
    #[test]
    fn rand_helpers_on_the_runs_generator_are_deterministic() {
        let draw = |seed| {
            let mut rng = Rng::new(seed);
            let mut deck: Vec<u32> = (0..10).collect();
            deck.shuffle(&mut rng);
            let roll: u32 = rng.random_range(1..=6);
            let pick = *[10, 20, 30].choose(&mut rng).expect("not empty");
            (deck, roll, pick)
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7).0, draw(8).0);
        let (deck, roll, pick) = draw(1);
        assert_eq!((deck, roll, pick), (vec![3, 4, 0, 1, 5, 9, 8, 2, 6, 7], 4, 10));
    }
}
