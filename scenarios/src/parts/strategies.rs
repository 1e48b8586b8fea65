//! A scenario's strategies as an enum in the order its spec lists them, declared in one line: `strategies!(SPEC, Strategy { A, B })`.
//!
//! Nodes match on an enum — the compiler then checks that every strategy is handled — while
//! the kernel names strategies by their ids in the spec. The macro declares the enum and
//! `Strategy::from_id(id)`, the variant at the id's position in `SPEC.strategies`: the
//! variants must be listed in the spec's order, and a count that differs panics on the first
//! lookup (every scenario's tests look one up).

/// `strategies!(SPEC, Name { First, Second, … })`: see the module's note.
macro_rules! strategies {
    ($spec:ident, $name:ident { $first:ident $(, $variant:ident)* }) => {
        /// The first strategy is the default (a state before any is chosen).
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        enum $name {
            #[default]
            $first,
            $($variant),*
        }

        impl $name {
            /// The strategy whose id is `id`: the variant at its position in the spec.
            fn from_id(id: &str) -> $name {
                let all = [$name::$first, $($name::$variant),*];
                assert_eq!(all.len(), $spec.strategies.len(), "one variant per strategy of the spec");
                all[$spec.strategies.iter().position(|s| s.id == id).expect("a strategy of this scenario")]
            }
        }
    };
}
pub(crate) use strategies;

#[cfg(test)]
mod tests {
    use faultline_core::{Run, ScenarioSpec, Setup, StrategySpec};

    fn build(_: &Setup) -> Box<dyn Run> {
        unreachable!("never run")
    }

    static SPEC: ScenarioSpec = ScenarioSpec {
        strategies: &[
            StrategySpec::naive("a", "A", "The first."),
            StrategySpec::fixed("b", "B", "The second."),
            StrategySpec::fixed("c", "C", "The third."),
        ],
        ..ScenarioSpec::bare("strategies-test", build)
    };
    strategies!(SPEC, Pick { First, Second, Third });

    #[test]
    fn variants_follow_the_specs_order() {
        assert_eq!(["a", "b", "c"].map(Pick::from_id), [Pick::First, Pick::Second, Pick::Third]);
    }

    #[test]
    #[should_panic(expected = "a strategy of this scenario")]
    fn an_unknown_id_is_a_programming_error() {
        Pick::from_id("d");
    }

    mod too_few {
        use super::SPEC;
        strategies!(SPEC, Two { X, Y });

        #[test]
        #[should_panic(expected = "one variant per strategy of the spec")]
        fn a_variant_count_unlike_the_specs_panics() {
            let _ = Two::from_id("a") == Two::Y;
        }
    }
}
