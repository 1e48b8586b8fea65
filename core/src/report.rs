//! A run's outcome in numbers: check verdicts and headline metrics, for the runner,
//! the tests and sweeps.

use crate::run::Run;
use crate::trace::fingerprint;
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CheckVerdict {
    pub id: &'static str,
    pub label: &'static str,
    pub ok: bool,
    /// Simulated seconds at the first violation.
    pub violated_at_s: Option<f64>,
    pub why: Option<String>,
    /// Every stretch in which it was violated, in simulated seconds (`to_s` is `None` for a
    /// band still open when the run stopped).
    pub bands: Vec<BandSecs>,
    /// When it last began to hold again, if it was violated and holds at the end.
    pub holding_since_s: Option<f64>,
}

/// A violation band in simulated seconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct BandSecs {
    pub from_s: f64,
    pub to_s: Option<f64>,
}

impl CheckVerdict {
    /// The bands for people: "11.900–17.200 s, 20.100 s–".
    pub fn bands_text(&self) -> String {
        let band = |b: &BandSecs| match b.to_s {
            Some(to) => format!("{:.3}–{to:.3} s", b.from_s),
            None => format!("{:.3} s–", b.from_s),
        };
        self.bands.iter().map(band).collect::<Vec<_>>().join(", ")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MetricValue {
    pub id: &'static str,
    pub label: &'static str,
    pub unit: &'static str,
    /// Over the whole run so far.
    pub value: f64,
}

impl MetricValue {
    /// The value with its unit, microseconds shown as ms or s.
    pub fn display(&self) -> String {
        format_value(self.value, self.unit)
    }
}

/// Formats a metric value for people: microseconds become ms or s.
pub fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "us" if v.abs() >= 10_000_000.0 => format!("{:.1} s", v / 1e6),
        "us" => format!("{:.1} ms", v / 1e3),
        "%" => format!("{v:.1}%"),
        "" => trim(v),
        u => format!("{} {u}", trim(v)),
    }
}

fn trim(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v:.2}")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Outcome {
    pub scenario: &'static str,
    pub strategy: String,
    pub seed: u64,
    pub sim_seconds: f64,
    pub events: u64,
    pub trace_hash: String,
    pub fingerprint: String,
    pub checks: Vec<CheckVerdict>,
    pub metrics: Vec<MetricValue>,
}

impl Outcome {
    pub fn of(run: &dyn Run) -> Outcome {
        let spec = run.spec();
        let elapsed = run.now().micros();
        Outcome {
            scenario: spec.id(),
            strategy: run.recipe().strategy.clone(),
            seed: run.recipe().seed,
            sim_seconds: run.now().as_secs_f64(),
            events: run.events(),
            trace_hash: format!("{:016x}", run.trace().hash()),
            fingerprint: fingerprint(run.trace().hash()),
            checks: run
                .checks()
                .iter()
                .map(|c| CheckVerdict {
                    id: c.id,
                    label: c.label,
                    ok: c.violation.is_none(),
                    violated_at_s: c.violation.as_ref().map(|v| v.at.as_secs_f64()),
                    why: c.violation.as_ref().map(|v| v.why.clone()),
                    bands: c
                        .bands
                        .iter()
                        .map(|b| BandSecs { from_s: b.from.as_secs_f64(), to_s: b.to.map(|t| t.as_secs_f64()) })
                        .collect(),
                    holding_since_s: c.bands.last().and_then(|b| b.to).map(|t| t.as_secs_f64()),
                })
                .collect(),
            metrics: spec
                .metrics
                .iter()
                .map(|m| MetricValue {
                    id: m.id,
                    label: m.label,
                    unit: m.unit,
                    value: m.measure.total(run.metrics(), elapsed),
                })
                .collect(),
        }
    }

    pub fn check(&self, id: &str) -> Option<&CheckVerdict> {
        self.checks.iter().find(|c| c.id == id)
    }

    pub fn metric(&self, id: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.id == id).map(|m| m.value)
    }

    pub fn all_ok(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }
}
