//! A process's tracing SDK: spans in progress, each ended when its parts (its own work, its calls out) are all done, failed if any part failed; ended spans batched and exported on a flush, each to a collector picked by a routing rule.
//!
//! A span is recorded only when its trace is sampled (head sampling's flag, carried in the
//! call); a crash loses the spans in progress and the batch not yet exported, as an SDK's
//! in-memory batch processor does.

use super::sampler::Span;
use faultline_core::Time;
use std::collections::BTreeMap;

/// A span that ended: the span, the caller to answer (the payload given when it opened) and
/// whether it was recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended<P> {
    pub span: Span,
    pub parent: P,
    pub sampled: bool,
}

#[derive(Clone, Debug)]
struct Open<P> {
    trace: u64,
    sampled: bool,
    start: Time,
    parent: P,
    left: usize,
    error: bool,
}

/// One process's spans in progress and its export batch.
#[derive(Clone, Debug)]
pub struct Tracer<P> {
    service: u16,
    open: BTreeMap<u64, Open<P>>,
    next: u64,
    batch: Vec<Span>,
}

impl<P> Tracer<P> {
    pub fn new(service: u16) -> Tracer<P> {
        Tracer { service, open: BTreeMap::new(), next: 0, batch: Vec::new() }
    }

    /// A span of `trace` starts at `start`, waiting for `parts` parts: its id.
    pub fn open(&mut self, trace: u64, sampled: bool, start: Time, parent: P, parts: usize) -> u64 {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, Open { trace, sampled, start, parent, left: parts.max(1), error: false });
        id
    }

    /// A part of span `id` is done at `now` (`failed` or not): the span if that was its last
    /// (batched for export when sampled); `None` while parts are left, or for a span a crash forgot.
    pub fn part_done(&mut self, id: u64, failed: bool, now: Time) -> Option<Ended<P>> {
        let o = self.open.get_mut(&id)?;
        (o.left, o.error) = (o.left - 1, o.error || failed);
        if o.left > 0 {
            return None;
        }
        let o = self.open.remove(&id).expect("open");
        let span = Span { trace: o.trace, service: self.service, start: o.start, end: now, error: o.error };
        if o.sampled {
            self.batch.push(span);
        }
        Some(Ended { span, parent: o.parent, sampled: o.sampled })
    }

    /// Empties the batch: the spans for each of `outs` destinations picked by `route`, skipping empty ones.
    pub fn flush(&mut self, outs: usize, route: impl Fn(&Span) -> usize) -> Vec<(usize, Vec<Span>)> {
        let mut by: Vec<Vec<Span>> = vec![Vec::new(); outs.max(1)];
        for span in self.batch.drain(..) {
            by[route(&span).min(outs.max(1) - 1)].push(span);
        }
        by.into_iter().enumerate().filter(|(_, s)| !s.is_empty()).collect()
    }

    /// A crash: the spans in progress and the batch are lost.
    pub fn clear(&mut self) {
        self.open.clear();
        self.batch.clear();
    }

    pub fn in_progress(&self) -> usize {
        self.open.len()
    }
    pub fn batched(&self) -> usize {
        self.batch.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_span_ends_with_its_last_part_and_fails_if_any_did() {
        let mut t: Tracer<&str> = Tracer::new(3);
        let a = t.open(7, true, Time(10), "caller", 3);
        let b = t.open(8, false, Time(11), "other", 1);
        assert_eq!(t.part_done(a, false, Time(20)), None);
        assert_eq!(t.part_done(a, true, Time(30)), None);
        let ended = t.part_done(a, false, Time(40)).expect("ended");
        assert_eq!(ended.span, Span { trace: 7, service: 3, start: Time(10), end: Time(40), error: true });
        assert_eq!((ended.parent, ended.sampled), ("caller", true));
        // Not sampled: answered, not recorded.
        assert!(t.part_done(b, false, Time(12)).is_some_and(|e| !e.sampled));
        assert_eq!((t.in_progress(), t.batched()), (0, 1));
        assert_eq!(t.part_done(a, false, Time(50)), None, "ended already");
    }

    #[test]
    fn a_flush_routes_the_batch_and_a_crash_loses_it() {
        let mut t: Tracer<()> = Tracer::new(0);
        for trace in 0..5 {
            let id = t.open(trace, true, Time(0), (), 1);
            t.part_done(id, false, Time(1));
        }
        let out = t.flush(3, |s| (s.trace % 2) as usize);
        let sizes: Vec<(usize, usize)> = out.iter().map(|(k, s)| (*k, s.len())).collect();
        assert_eq!(sizes, vec![(0, 3), (1, 2)]);
        assert!(t.flush(3, |_| 0).is_empty());
        let id = t.open(9, true, Time(0), (), 1);
        t.clear();
        assert_eq!(t.part_done(id, false, Time(1)), None, "forgotten in the crash");
    }
}
