//! Line charts of the headline metrics, as inline SVG, from the run's sampled series.

use faultline_core::{format_value, ScenarioSpec};
use faultline_protocol::Charts;
use leptos::prelude::*;

const W: f64 = 280.0;
const H: f64 = 64.0;

/// The SVG path of `values` over `times` (µs), scaled into the chart box.
pub fn path(times: &[u64], values: &[f64], until: u64, max: f64) -> String {
    let mut d = String::with_capacity(values.len() * 14);
    for (i, (t, v)) in times.iter().zip(values).enumerate() {
        let x = *t as f64 / until.max(1) as f64 * W;
        let y = H - (v / max.max(1e-9)).clamp(0.0, 1.0) * (H - 4.0) - 2.0;
        d.push_str(&format!("{}{x:.1},{y:.1}", if i == 0 { "M" } else { "L" }));
    }
    d
}

/// What every chart's time axis marks: where a check was violated (from, to µs) and each
/// action of the run (at µs, what).
#[derive(Clone, Copy)]
pub struct Marks<'a> {
    pub bands: &'a [(u64, u64)],
    pub actions: &'a [(u64, String)],
}

/// One small chart per headline metric, from the series the worker sampled.
pub fn charts(spec: &'static ScenarioSpec, charts: &Charts, now: u64, until: u64, marks: Marks) -> impl IntoView {
    let none = Vec::new();
    let x = move |t: u64| t.min(until) as f64 / until.max(1) as f64 * W;
    spec.metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let series = charts.series.get(i).unwrap_or(&none);
            let max = series.iter().cloned().fold(0.0, f64::max);
            let total = charts.totals.get(i).copied().unwrap_or(0.0);
            let d = path(&charts.times, series, until, max);
            let cursor = now as f64 / until.max(1) as f64 * W;
            view! {
                <figure class="chart">
                    <figcaption>
                        <span class="chart-label">{m.label}</span>
                        <span class="chart-value">{format_value(total, m.unit)}</span>
                    </figcaption>
                    <svg viewBox=format!("0 0 {W} {H}") preserveAspectRatio="none" role="img" aria-label=m.label>
                        {marks.bands.iter().map(|&(from, to)| {
                            let width = (x(to) - x(from)).max(0.8);
                            view! { <rect class="band" x=x(from) y="0" width=width height=H /> }
                        }).collect::<Vec<_>>()}
                        {marks.actions.iter().map(|(at, what)| view! {
                            <line class="action" x1=x(*at) x2=x(*at) y1="0" y2=H><title>{format!("{}: {what}", faultline_core::Time(*at))}</title></line>
                        }).collect::<Vec<_>>()}
                        <line class="cursor" x1=cursor x2=cursor y1="0" y2=H />
                        <path d=d />
                    </svg>
                    <div class="chart-scale">"max " {format_value(max, m.unit)}</div>
                </figure>
            }
        })
        .collect::<Vec<_>>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_scale_into_the_box() {
        let d = path(&[0, 500, 1000], &[0.0, 5.0, 10.0], 1000, 10.0);
        assert_eq!(d, "M0.0,62.0L140.0,32.0L280.0,2.0");
        assert_eq!(path(&[], &[], 1000, 0.0), "");
    }
}
