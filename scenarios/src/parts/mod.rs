//! The scenario kit: mechanisms that recur across patterns, written once and tested once
//! against what the literature says. A scenario composes them and keeps only its lesson.

pub mod arrivals;
pub mod attempts;
pub mod calls;
pub mod claims;
pub mod degraded;
pub mod gossip;
pub mod lease;
pub mod limit;
pub mod queueing;
pub mod retry;
pub mod station;
pub mod store;
pub mod strategies;
pub mod table;
pub mod tally;
pub mod waiters;
pub mod window;

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
