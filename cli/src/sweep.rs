//! `faultline sweep`: one parameter over a range × seeds, on every core, as a table.

use crate::args::{SweepOpts, UsageError};
use crate::{execute_recipe, recipe_of};
use faultline_core::{format_value, Outcome, Time};
use serde::Serialize;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

#[derive(Serialize)]
struct Row {
    value: i64,
    seeds: u64,
    /// Mean over seeds, in the spec's metric order.
    metrics: Vec<(String, f64)>,
    /// Seeds (of `seeds`) in which each check was violated.
    violations: Vec<(String, u64)>,
}

pub fn sweep(opts: SweepOpts) -> Result<ExitCode, UsageError> {
    let (spec, base, warnings) = recipe_of(&opts.run)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let p = spec
        .param(&opts.sweep_param)
        .ok_or_else(|| UsageError(format!("{} has no parameter `{}`", spec.id(), opts.sweep_param)))?;
    if let Some(v) = opts.values.iter().find(|&&v| !p.accepts(v)) {
        return Err(UsageError(format!("{}={v} is out of range: {}..={} in steps of {}", p.id, p.min, p.max, p.step)));
    }
    let until = Time(opts.run.until.unwrap_or(spec.default_until));
    let jobs: Vec<(usize, u64)> = (0..opts.values.len()).flat_map(|i| (1..=opts.seeds).map(move |s| (i, s))).collect();
    let results: Vec<Mutex<Option<Outcome>>> = jobs.iter().map(|_| Mutex::new(None)).collect();
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, seed)) = jobs.get(j) else { break };
                let mut recipe = base.clone();
                recipe.seed = seed;
                recipe.params.insert(p.id.to_string(), opts.values[i]);
                let (run, _, _) = execute_recipe(spec, &recipe, until, false);
                *results[j].lock().expect("no poisoned lock") = Some(Outcome::of(run.as_ref()));
            });
        }
    });
    let outcomes: Vec<Outcome> =
        results.into_iter().map(|m| m.into_inner().expect("lock").expect("every job ran")).collect();
    let rows: Vec<Row> = opts
        .values
        .iter()
        .enumerate()
        .map(|(i, &value)| {
            let mine: Vec<&Outcome> =
                jobs.iter().zip(&outcomes).filter(|((vi, _), _)| *vi == i).map(|(_, o)| o).collect();
            let n = mine.len() as f64;
            Row {
                value,
                seeds: opts.seeds,
                metrics: spec
                    .metrics
                    .iter()
                    .map(|m| (m.id.to_string(), mine.iter().filter_map(|o| o.metric(m.id)).sum::<f64>() / n))
                    .collect(),
                violations: spec
                    .checks
                    .iter()
                    .map(|c| {
                        (c.id.to_string(), mine.iter().filter(|o| o.check(c.id).is_some_and(|v| !v.ok)).count() as u64)
                    })
                    .collect(),
            }
        })
        .collect();

    if opts.run.json {
        out!("{}", serde_json::to_string_pretty(&rows).expect("rows serialise"));
    } else if opts.csv {
        let mut head = vec![p.id.to_string()];
        head.extend(spec.metrics.iter().map(|m| format!("{} ({})", m.id, m.unit)));
        head.extend(spec.checks.iter().map(|c| format!("{} violated", c.id)));
        out!("{}", head.join(","));
        for r in &rows {
            let mut cells = vec![r.value.to_string()];
            cells.extend(r.metrics.iter().map(|(_, v)| format!("{v}")));
            cells.extend(r.violations.iter().map(|(_, v)| v.to_string()));
            out!("{}", cells.join(","));
        }
    } else {
        out!(
            "{} · strategy {} · sweeping {} over {} values × {} seeds, {} each",
            spec.id(),
            base.strategy,
            p.id,
            rows.len(),
            opts.seeds,
            until
        );
        let mut head = vec![format!("{:>10}", p.id)];
        head.extend(spec.metrics.iter().map(|m| format!("{:>18}", truncate(m.id, 18))));
        head.extend(spec.checks.iter().map(|c| format!("{:>18}", truncate(c.id, 18))));
        out!("{}", head.join(" "));
        for r in &rows {
            let mut cells = vec![format!("{:>10}", r.value)];
            cells.extend(
                r.metrics.iter().zip(spec.metrics).map(|((_, v), m)| format!("{:>18}", format_value(*v, m.unit))),
            );
            cells.extend(
                r.violations.iter().map(|(_, v)| {
                    format!("{:>18}", if *v == 0 { "✓".to_string() } else { format!("✗ {v}/{}", r.seeds) })
                }),
            );
            out!("{}", cells.join(" "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn truncate(s: &str, n: usize) -> &str {
    &s[..s.len().min(n)]
}
