//! Metrics: counters, gauges and mergeable log-bucketed histograms, plus time series
//! sampled at a fixed simulated interval for charts.

use crate::time::{Micros, Time};
use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two: bucket width is 1/64 of its octave, so a reported
/// quantile is within 0.8% of the true sample value.
const SUB_BITS: u32 = 6;
const SUB: u64 = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB;

/// A histogram of non-negative integers (typically microseconds). Mergeable: merging two
/// histograms gives exactly the histogram of the union of their samples.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let e = 63 - v.leading_zeros() as u64; // >= SUB_BITS + 1
    let shift = e - SUB_BITS as u64;
    (LINEAR + (e - SUB_BITS as u64 - 1) * SUB + ((v >> shift) - SUB)) as usize
}

/// The range of values `[lo, hi]` that land in bucket `i`.
fn bucket_range(i: usize) -> (u64, u64) {
    let i = i as u64;
    if i < LINEAR {
        return (i, i);
    }
    let octave = (i - LINEAR) / SUB;
    let sub = (i - LINEAR) % SUB;
    let shift = octave + 1;
    let lo = (SUB + sub) << shift;
    (lo, lo + (1u64 << shift) - 1)
}

impl Histogram {
    pub fn new() -> Histogram {
        Histogram::default()
    }

    pub fn record(&mut self, v: u64) {
        let b = bucket_of(v);
        if b >= self.buckets.len() {
            self.buckets.resize(b + 1, 0);
        }
        self.buckets[b] += 1;
        if self.count == 0 || v < self.min {
            self.min = v;
        }
        self.max = self.max.max(v);
        self.count += 1;
        self.sum += v as u128;
    }

    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.min = if self.count == 0 { other.min } else { self.min.min(other.min) };
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    pub fn count(&self) -> u64 {
        self.count
    }
    pub fn max(&self) -> u64 {
        self.max
    }
    pub fn min(&self) -> u64 {
        self.min
    }
    pub fn mean(&self) -> f64 {
        if self.count == 0 {
            0.0
        } else {
            self.sum as f64 / self.count as f64
        }
    }

    /// The value at quantile `q` (0..=1), nearest-rank, to within the bucket's width.
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &c) in self.buckets.iter().enumerate() {
            seen += c;
            if seen >= rank {
                let (lo, hi) = bucket_range(i);
                return (lo + (hi - lo) / 2).clamp(self.min, self.max);
            }
        }
        self.max
    }

    pub fn clear(&mut self) {
        *self = Histogram::default();
    }
}

/// A summary of a histogram for reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub count: u64,
    pub mean: f64,
    pub p50: u64,
    pub p95: u64,
    pub p99: u64,
    pub max: u64,
}

impl From<&Histogram> for Summary {
    fn from(h: &Histogram) -> Summary {
        Summary {
            count: h.count(),
            mean: h.mean(),
            p50: h.quantile(0.50),
            p95: h.quantile(0.95),
            p99: h.quantile(0.99),
            max: h.max(),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Hist {
    total: Histogram,
    /// Since the last sample, for windowed percentiles in charts.
    window: Histogram,
}

/// Every metric of a run, keyed by static names. Few metrics per scenario, so a
/// linear scan beats a map and keeps iteration order fixed (declaration order).
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    counters: Vec<(&'static str, i64)>,
    gauges: Vec<(&'static str, i64)>,
    hists: Vec<(&'static str, Hist)>,
}

/// The value named `name` in a short list of named values, added (as the default) if missing.
pub(crate) fn slot<'a, T: Default>(v: &'a mut Vec<(&'static str, T)>, name: &'static str) -> &'a mut T {
    let i = match v.iter().position(|(n, _)| *n == name) {
        Some(i) => i,
        None => {
            v.push((name, T::default()));
            v.len() - 1
        }
    };
    &mut v[i].1
}

impl Metrics {
    pub fn add(&mut self, name: &'static str, delta: i64) {
        *slot(&mut self.counters, name) += delta;
    }
    pub fn set_gauge(&mut self, name: &'static str, value: i64) {
        *slot(&mut self.gauges, name) = value;
    }
    pub fn observe(&mut self, name: &'static str, value: u64) {
        let h = slot(&mut self.hists, name);
        h.total.record(value);
        h.window.record(value);
    }

    pub fn counter(&self, name: &str) -> i64 {
        self.counters.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }
    pub fn gauge(&self, name: &str) -> i64 {
        self.gauges.iter().find(|(n, _)| *n == name).map_or(0, |(_, v)| *v)
    }
    pub fn histogram(&self, name: &str) -> Option<&Histogram> {
        self.hists.iter().find(|(n, _)| *n == name).map(|(_, h)| &h.total)
    }
    fn window(&self, name: &str) -> Option<&Histogram> {
        self.hists.iter().find(|(n, _)| *n == name).map(|(_, h)| &h.window)
    }
    pub fn counters(&self) -> &[(&'static str, i64)] {
        &self.counters
    }
    pub fn gauges(&self) -> &[(&'static str, i64)] {
        &self.gauges
    }
    pub fn histograms(&self) -> impl Iterator<Item = (&'static str, &Histogram)> {
        self.hists.iter().map(|(n, h)| (*n, &h.total))
    }
    fn reset_windows(&mut self) {
        for (_, h) in &mut self.hists {
            h.window.clear();
        }
    }
}

/// How a headline metric is computed from the raw metrics.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub enum Measure {
    /// A counter's value.
    Count(&'static str),
    /// A counter's increase per simulated second.
    Rate(&'static str),
    Gauge(&'static str),
    /// A gauge divided by a constant (for fractions kept as integers, e.g. basis points / 100).
    GaugePer(&'static str, f64),
    /// A histogram quantile (0..=1); in charts, over the last sampling window.
    Quantile(&'static str, f64),
    /// A histogram mean; in charts, over the last sampling window.
    Mean(&'static str),
    /// `100 × num / (num + rest)` — a percentage of two counters.
    Percent {
        num: &'static str,
        rest: &'static str,
    },
}

impl Measure {
    /// The value over the whole run so far.
    pub fn total(&self, m: &Metrics, elapsed: Micros) -> f64 {
        match *self {
            Measure::Count(c) => m.counter(c) as f64,
            Measure::Rate(c) => {
                if elapsed == 0 {
                    0.0
                } else {
                    m.counter(c) as f64 * 1e6 / elapsed as f64
                }
            }
            Measure::Gauge(g) => m.gauge(g) as f64,
            Measure::GaugePer(g, d) => m.gauge(g) as f64 / d,
            Measure::Quantile(h, q) => m.histogram(h).map_or(0.0, |h| h.quantile(q) as f64),
            Measure::Mean(h) => m.histogram(h).map_or(0.0, |h| h.mean()),
            Measure::Percent { num, rest } => percent(m.counter(num), m.counter(rest)),
        }
    }

    fn windowed(&self, m: &Metrics, prev: &Metrics, interval: Micros) -> f64 {
        match *self {
            Measure::Rate(c) => (m.counter(c) - prev.counter(c)) as f64 * 1e6 / interval.max(1) as f64,
            Measure::Quantile(h, q) => m.window(h).map_or(0.0, |h| h.quantile(q) as f64),
            Measure::Mean(h) => m.window(h).map_or(0.0, |h| h.mean()),
            Measure::Percent { num, rest } => {
                percent(m.counter(num) - prev.counter(num), m.counter(rest) - prev.counter(rest))
            }
            _ => self.total(m, 0),
        }
    }
}

fn percent(num: i64, rest: i64) -> f64 {
    if num + rest <= 0 {
        0.0
    } else {
        100.0 * num as f64 / (num + rest) as f64
    }
}

/// Time series of the headline measures, sampled every `interval` of simulated time.
/// When a series reaches `cap` points it drops every other one and doubles the interval,
/// so memory stays bounded however long the run.
#[derive(Clone, Debug)]
pub struct Sampler {
    pub interval: Micros,
    next_at: Time,
    cap: usize,
    measures: Vec<Measure>,
    /// Counters at the previous sample, for rates.
    prev: Metrics,
    pub times: Vec<Time>,
    pub series: Vec<Vec<f64>>,
}

impl Sampler {
    pub fn new(interval: Micros, measures: Vec<Measure>) -> Sampler {
        let n = measures.len();
        Sampler {
            interval: interval.max(1),
            next_at: Time(interval.max(1)),
            cap: 4096,
            measures,
            prev: Metrics::default(),
            times: Vec::new(),
            series: vec![Vec::new(); n],
        }
    }

    pub fn due(&self, now: Time) -> bool {
        now >= self.next_at
    }

    pub fn next_at(&self) -> Time {
        self.next_at
    }

    /// Takes the sample due at `next_at` from the metrics as they stand.
    pub fn sample(&mut self, m: &mut Metrics) {
        let at = self.next_at;
        for (s, measure) in self.series.iter_mut().zip(&self.measures) {
            s.push(measure.windowed(m, &self.prev, self.interval));
        }
        self.times.push(at);
        self.prev.counters = m.counters.clone();
        m.reset_windows();
        self.next_at = at.plus(self.interval);
        if self.times.len() >= self.cap {
            self.decimate();
        }
    }

    fn decimate(&mut self) {
        let keep = |v: &mut Vec<_>| {
            let mut i = 0;
            v.retain(|_| {
                i += 1;
                i % 2 == 0
            })
        };
        keep(&mut self.times);
        for s in &mut self.series {
            let mut i = 0;
            s.retain(|_| {
                i += 1;
                i % 2 == 0
            });
        }
        self.interval *= 2;
        self.next_at = self.times.last().copied().unwrap_or(Time::ZERO).plus(self.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_cover_values_in_order() {
        let mut last = (0, 0);
        for i in 0..3000 {
            let (lo, hi) = bucket_range(i);
            assert!(lo <= hi);
            if i > 0 {
                assert_eq!(lo, last.1 + 1, "bucket {i} not contiguous");
            }
            assert_eq!(bucket_of(lo), i);
            assert_eq!(bucket_of(hi), i);
            last = (lo, hi);
        }
    }

    #[test]
    fn quantiles_are_accurate() {
        let mut h = Histogram::new();
        for v in 1..=100_000u64 {
            h.record(v);
        }
        for (q, want) in [(0.5, 50_000.0), (0.95, 95_000.0), (0.99, 99_000.0)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q{q}: {got} vs {want}");
        }
        assert_eq!(h.max(), 100_000);
        assert_eq!(h.min(), 1);
        assert!((h.mean() - 50_000.5).abs() < 1e-9);
    }

    #[test]
    fn merge_equals_union() {
        let (mut a, mut b, mut all) = (Histogram::new(), Histogram::new(), Histogram::new());
        for v in 0..5000u64 {
            let x = v * 37 % 10_007;
            if v % 3 == 0 {
                a.record(x)
            } else {
                b.record(x)
            }
            all.record(x);
        }
        a.merge(&b);
        assert_eq!(a, all);
    }

    #[test]
    fn sampler_rates_and_decimation() {
        let mut m = Metrics::default();
        let mut s = Sampler::new(1000, vec![Measure::Rate("done"), Measure::Count("done")]);
        s.cap = 8;
        for k in 1..=8u64 {
            m.add("done", 5);
            assert!(s.due(Time(k * 1000)));
            s.sample(&mut m);
        }
        // 5 per 1000 µs = 5000 per second.
        assert_eq!(s.series[0][0], 5000.0);
        assert_eq!(s.times.len(), 4);
        assert_eq!(s.interval, 2000);
        assert_eq!(*s.series[1].last().unwrap(), 40.0);
    }
}
