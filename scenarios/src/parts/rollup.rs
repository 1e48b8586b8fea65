//! A TSDB's rollup window of host reports: each series' scrape as a summary (its p99), a sketch and raw values, and the three ways to roll a window's p99 up — mean of quantiles, merged sketches, exact — beside the truth.
//!
//! A host reports, per series and scrape, a [`SeriesReport`]: what a Prometheus summary would
//! (its own p99), what a histogram would (a [`Sketch`]), and its raw values — the god's-eye
//! truth, and what a raw-sample store keeps. A [`Window`] gathers a rollup window's reports by
//! host and series; [`Window::roll`] answers the window's p99 under an [`Aggregate`], with the
//! values its rollup keeps, and the exact p99 of every value reported, as a [`Rolled`].

use crate::parts::sketch::{exact_quantile, Sketch};
use std::collections::BTreeMap;

/// One series' scrape: its exact p99 (a summary's quantile), its sketch and its raw values (µs).
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesReport {
    pub key: u32,
    pub p99_us: u64,
    pub sketch: Sketch,
    pub raw_us: Vec<u64>,
}

impl SeriesReport {
    /// A series' scrape of `raw_us`, its sketch of accuracy `alpha_ppm` millionths.
    pub fn of(key: u32, mut raw_us: Vec<u64>, alpha_ppm: u32) -> SeriesReport {
        let mut sketch = Sketch::new(alpha_ppm);
        raw_us.iter().for_each(|&v| sketch.insert(v));
        SeriesReport { key, p99_us: exact_quantile(&mut raw_us, 0.99), sketch, raw_us }
    }
}

/// How a dashboard turns a window of series into one p99.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregate {
    /// The mean of every series' p99 over the window (hosts, labels, scrapes): one value a series.
    MeanOfQuantiles,
    /// The p99 of all the series' sketches added up: buckets a series.
    MergedSketch,
    /// The p99 of every raw value: exact, a value a request.
    Exact,
}

impl Aggregate {
    /// The values storing one series' scrape costs.
    pub fn values(&self, s: &SeriesReport) -> usize {
        match self {
            Aggregate::MeanOfQuantiles => 1,
            Aggregate::MergedSketch => s.sketch.buckets(),
            Aggregate::Exact => s.raw_us.len(),
        }
    }
}

/// One window's reports: raw truth by host, the summaries' p99s, each series' merged sketch.
#[derive(Clone, Debug, Default)]
pub struct Window {
    raw_us: Vec<Vec<u64>>,
    p99s_us: Vec<u64>,
    series: BTreeMap<(usize, u32), Sketch>,
}

/// A rolled-up window: what the dashboard showed, the truth, and who held the slowest 1%.
#[derive(Clone, Debug, PartialEq)]
pub struct Rolled {
    pub index: u64,
    pub true_us: u64,
    pub shown_us: f64,
    /// Distinct series (host × labels) reported in the window.
    pub series: usize,
    /// Each host's values at or above the true p99, host number (from 1) first.
    pub tail: Vec<(usize, usize)>,
}

impl Window {
    /// Files host `host`'s (from 0) series scrape.
    pub fn add(&mut self, host: usize, s: &SeriesReport) {
        if self.raw_us.len() <= host {
            self.raw_us.resize(host + 1, Vec::new());
        }
        self.p99s_us.push(s.p99_us);
        self.series.entry((host, s.key)).or_insert_with(|| Sketch::new(s.sketch.alpha_ppm())).merge(&s.sketch);
        self.raw_us[host].extend_from_slice(&s.raw_us);
    }

    pub fn is_empty(&self) -> bool {
        self.p99s_us.is_empty()
    }

    /// The window's p99 under `how`, and the values its rollup keeps: a value a series (the
    /// mean of its p99s), a series' merged buckets, or every raw value (they have no rollup).
    pub fn roll(&self, index: u64, how: Aggregate) -> (Rolled, usize) {
        let mut all: Vec<u64> = self.raw_us.concat();
        let true_us = exact_quantile(&mut all, 0.99);
        let (shown_us, kept) = match how {
            Aggregate::MeanOfQuantiles => {
                (self.p99s_us.iter().sum::<u64>() as f64 / self.p99s_us.len().max(1) as f64, self.series.len())
            }
            Aggregate::MergedSketch => {
                let mut fleet: Option<Sketch> = None;
                for s in self.series.values() {
                    fleet.get_or_insert_with(|| Sketch::new(s.alpha_ppm())).merge(s);
                }
                (fleet.map_or(0.0, |f| f.quantile(0.99)), self.series.values().map(Sketch::buckets).sum())
            }
            Aggregate::Exact => (true_us as f64, all.len()),
        };
        let tail = self.raw_us.iter().enumerate().map(|(h, v)| (h + 1, v.iter().filter(|&&v| v >= true_us).count()));
        (Rolled { index, true_us, shown_us, series: self.series.len(), tail: tail.collect() }, kept)
    }
}

impl Rolled {
    /// The relative error of the shown p99 (signed: negative is too low).
    pub fn error(&self) -> f64 {
        self.shown_us / self.true_us.max(1) as f64 - 1.0
    }

    /// Gauges for charts: the true and shown p99 (µs), the error (basis points, signed), the series.
    pub fn gauges(&self) -> [(&'static str, i64); 4] {
        [
            ("true_p99_us", self.true_us as i64),
            ("shown_p99_us", self.shown_us.round() as i64),
            ("error_bp", (self.error() * 10_000.0).round() as i64),
            ("series", self.series as i64),
        ]
    }

    /// Words for a check: the window (of `window_us`), both p99s, the two hosts holding most of the tail.
    pub fn describe(&self, window_us: u64, bound: f64) -> String {
        let (from, to) = ((self.index * window_us) as f64 / 1e6, ((self.index + 1) * window_us) as f64 / 1e6);
        let mut tail = self.tail.clone();
        tail.sort_by_key(|&(host, n)| (std::cmp::Reverse(n), host));
        let total = tail.iter().map(|t| t.1).sum::<usize>().max(1);
        let who: Vec<String> = tail.iter().take(2).map(|&(h, n)| format!("host {h} {}%", n * 100 / total)).collect();
        format!(
            "window {from:.0}–{to:.0} s: the dashboard shows p99 {:.1} ms, the fleet's is {:.1} ms ({:+.1}%, bound \
             ±{:.0}%); the slowest 1%: {}",
            self.shown_us / 1e3,
            self.true_us as f64 / 1e3,
            self.error() * 100.0,
            bound * 100.0,
            who.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two hosts: host 1 with 99 values at 10 ms, host 2 (slow) with 99 at 10 ms and one at 1 s,
    /// each one series of one scrape; and host 1 again with a second series of a single 2 ms.
    fn window() -> Window {
        let mut w = Window::default();
        w.add(0, &SeriesReport::of(7, vec![10_000; 99], 10_000));
        w.add(1, &SeriesReport::of(7, [vec![10_000; 99], vec![1_000_000]].concat(), 10_000));
        w.add(0, &SeriesReport::of(8, vec![2_000], 10_000));
        w
    }

    #[test]
    fn the_three_aggregates_and_the_truth() {
        let w = window();
        // 200 values: rank 198 is 10 ms. The summaries' p99s are 10 ms, 10 ms (rank 99 of 100)
        // and 2 ms: their mean is 7.33 ms.
        let (mean, kept) = w.roll(3, Aggregate::MeanOfQuantiles);
        assert_eq!((mean.true_us, mean.series, kept), (10_000, 3, 3));
        assert!((mean.shown_us - 22_000.0 / 3.0).abs() < 1e-9);
        assert!((mean.error() + 0.2667).abs() < 1e-3);
        assert_eq!(mean.gauges().map(|g| g.1), [10_000, 7_333, -2_667, 3]);
        let (merged, kept) = w.roll(3, Aggregate::MergedSketch);
        assert!((merged.shown_us - 10_000.0).abs() <= 100.0, "{merged:?}");
        assert_eq!(kept, 1 + 2 + 1, "one bucket, two, one");
        let (exact, kept) = w.roll(3, Aggregate::Exact);
        assert_eq!((exact.shown_us, kept), (10_000.0, 200));
        // At or above 10 ms: host 1's 99, host 2's 100.
        assert_eq!(exact.tail, vec![(1, 99), (2, 100)]);
        assert!(exact.describe(10_000_000, 0.05).starts_with("window 30–40 s: the dashboard shows p99 10.0 ms"));
        assert!(mean
            .describe(10_000_000, 0.05)
            .ends_with("(-26.7%, bound ±5%); the slowest 1%: host 2 50%, host 1 49%"));
    }

    #[test]
    fn storage_per_series_scrape() {
        let s = SeriesReport::of(1, vec![5, 5, 500, 50_000], 10_000);
        assert_eq!(s.p99_us, 50_000);
        let costs = [Aggregate::MeanOfQuantiles, Aggregate::MergedSketch, Aggregate::Exact].map(|a| a.values(&s));
        assert_eq!(costs, [1, 3, 4]);
        assert!(Window::default().is_empty());
    }
}
