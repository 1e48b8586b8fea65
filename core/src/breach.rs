//! A broken promise a node saw at an instant, for a check that says whether it is broken *now*.

use crate::time::Time;

/// The latest broken promise a node saw, and when (true time). A check reports it at that
/// instant only — never latched — so the bands show where it broke and where it held again.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Breach(Option<(String, Time)>);

impl Breach {
    /// Records that `what` broke at `at` (`ctx.truth()`: checks are judged in true time).
    pub fn record(&mut self, what: String, at: Time) {
        self.0 = Some((what, at));
    }

    /// The check's verdict at `now`: broken if the latest breach happened at this instant.
    pub fn now(&self, now: Time) -> Result<(), String> {
        match &self.0 {
            Some((what, at)) if *at == now => Err(what.clone()),
            _ => Ok(()),
        }
    }

    /// The latest breach's words (a badge), however long ago.
    pub fn latest(&self) -> Option<&str> {
        self.0.as_ref().map(|(what, _)| what.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_breach_is_broken_at_its_instant_only() {
        let mut b = Breach::default();
        assert_eq!((b.now(Time(5)), b.latest()), (Ok(()), None));
        b.record("key 7 sold twice".into(), Time(5));
        assert_eq!(b.now(Time(5)), Err("key 7 sold twice".into()));
        assert_eq!((b.now(Time(6)), b.latest()), (Ok(()), Some("key 7 sold twice")), "held again, still told");
    }
}
