//! `faultline`: list, run and sweep scenarios headlessly, from the same core the browser uses.

/// `println!` that ends the process quietly once stdout's reader has gone (`faultline list |
/// head`): `println!` would panic on the broken pipe.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            $crate::stdout_failed(e)
        }
    }};
}

mod args;
mod sweep;

use args::{Args, Command, RunOpts, UsageError};
use faultline_core::{format_value, open, shared_check, Outcome, Recipe, Run, ScenarioSpec, SharedCheck, Time};
use serde::Serialize;
use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match args::parse(&argv).and_then(execute) {
        Ok(code) => code,
        Err(UsageError(msg)) => {
            eprintln!("faultline: {msg}");
            eprintln!("run `faultline help` for usage");
            ExitCode::from(2)
        }
    }
}

/// A write to stdout failed: a closed pipe ends the run quietly (its reader wanted no more), anything
/// else is reported.
fn stdout_failed(e: std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(0)
    }
    eprintln!("faultline: cannot write to stdout: {e}");
    std::process::exit(1)
}

fn execute(args: Args) -> Result<ExitCode, UsageError> {
    match args.command {
        Command::Help => {
            out!("{}", args::USAGE.trim_end());
            Ok(ExitCode::SUCCESS)
        }
        Command::List { json } => {
            list(json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(opts) => run(opts),
        Command::Sweep(opts) => sweep::sweep(opts),
    }
}

fn list(json: bool) {
    if json {
        out!("{}", serde_json::to_string_pretty(faultline_scenarios::ALL).expect("specs serialise"));
        return;
    }
    for s in faultline_scenarios::ALL {
        out!("{:<28} {} — {}", s.id(), s.info.title, s.info.category);
        let strategies: Vec<String> = s
            .strategies
            .iter()
            .map(|st| if st.naive { format!("{} (naive)", st.id) } else { st.id.to_string() })
            .collect();
        out!("    strategies: {}", strategies.join(", "));
        let params: Vec<String> =
            s.params.iter().map(|p| format!("{}={} [{}..{}]{}", p.id, p.default, p.min, p.max, unit(p.unit))).collect();
        out!("    params:     {}", params.join(", "));
        out!("    checks:     {}", s.checks.iter().map(|c| c.id).collect::<Vec<_>>().join(", "));
        out!("    metrics:    {}", s.metrics.iter().map(|m| m.id).collect::<Vec<_>>().join(", "));
        if !s.faults.is_empty() {
            out!("    faults:     {}", s.faults.iter().map(|f| f.id).collect::<Vec<_>>().join(", "));
        }
    }
}

fn unit(u: &str) -> String {
    if u.is_empty() {
        String::new()
    } else {
        format!(" {u}")
    }
}

/// Resolves the scenario/URL argument plus overrides into a recipe, or a usage error.
pub fn recipe_of(opts: &RunOpts) -> Result<(&'static ScenarioSpec, Recipe, Vec<String>), UsageError> {
    let mut warnings = Vec::new();
    let (spec, mut recipe) = if opts.target.contains('=') || opts.target.contains('?') {
        let parsed =
            Recipe::from_url(&opts.target, faultline_scenarios::find).map_err(|e| UsageError(e.to_string()))?;
        warnings.extend(parsed.problems.iter().map(|p| p.to_string()));
        (parsed.spec, parsed.recipe)
    } else {
        let spec = faultline_scenarios::find(&opts.target).ok_or_else(|| {
            let known: Vec<&str> = faultline_scenarios::ALL.iter().map(|s| s.id()).collect();
            UsageError(format!("there is no scenario called `{}`; known: {}", opts.target, known.join(", ")))
        })?;
        (spec, spec.default_recipe(1))
    };
    if let Some(s) = &opts.strategy {
        if spec.strategy(s).is_none() {
            let known: Vec<&str> = spec.strategies.iter().map(|s| s.id).collect();
            return Err(UsageError(format!("{} has no strategy `{s}`; known: {}", spec.id(), known.join(", "))));
        }
        recipe.strategy = s.clone();
    }
    if let Some(seed) = opts.seed {
        recipe.seed = seed;
    }
    for (k, v) in &opts.params {
        let p = spec.param(k).ok_or_else(|| {
            let known: Vec<&str> = spec.params.iter().map(|p| p.id).collect();
            UsageError(format!("{} has no parameter `{k}`; known: {}", spec.id(), known.join(", ")))
        })?;
        if !p.accepts(*v) {
            return Err(UsageError(format!("{k}={v} is out of range: {}..={} in steps of {}", p.min, p.max, p.step)));
        }
        recipe.params.insert(k.clone(), *v);
    }
    Ok((spec, recipe, warnings))
}

/// Runs a recipe to `until`, returning the run, the wall time it took and what was wrong
/// with the recipe — including, for a shared link, a run that no longer matches the
/// fingerprint it was shared with (compared on the way, where it was taken).
pub fn execute_recipe(
    spec: &'static ScenarioSpec,
    recipe: &Recipe,
    until: Time,
    keep_trace: bool,
) -> (Box<dyn Run>, f64, Vec<String>) {
    let started = std::time::Instant::now();
    let (mut run, mut problems) = open(spec, recipe);
    run.keep_trace(keep_trace);
    if let Some(shared) = recipe.shared.filter(|s| s.at <= until) {
        run.run_until(shared.at, u64::MAX);
        if let SharedCheck::Changed(e) = shared_check(run.as_ref()) {
            problems.push(e);
        }
    }
    run.run_until(until, u64::MAX);
    (run, started.elapsed().as_secs_f64(), problems.iter().map(|p| p.to_string()).collect())
}

#[derive(Serialize)]
struct RunReport {
    #[serde(flatten)]
    outcome: Outcome,
    wall_seconds: f64,
    events_per_second: f64,
    recipe_url: String,
    warnings: Vec<String>,
}

fn run(opts: RunOpts) -> Result<ExitCode, UsageError> {
    let (spec, recipe, mut warnings) = recipe_of(&opts)?;
    let until = Time(opts.until.unwrap_or(spec.default_until));
    let (run, wall, problems) = execute_recipe(spec, &recipe, until, opts.trace.is_some());
    warnings.extend(problems);
    let outcome = Outcome::of(run.as_ref());
    let report = RunReport {
        events_per_second: outcome.events as f64 / wall.max(1e-9),
        wall_seconds: wall,
        recipe_url: format!("?{}", run.recipe().to_query(spec)),
        outcome,
        warnings,
    };
    if opts.json {
        out!("{}", serde_json::to_string_pretty(&report).expect("report serialises"));
    } else {
        print_report(&report);
    }
    if let Some(n) = opts.trace {
        let entries = run.trace().entries();
        for e in entries.iter().skip(entries.len().saturating_sub(n)) {
            let detail = run.detail(e.seq).map(|d| format!("  {d}")).unwrap_or_default();
            out!("{:>12} #{:<7} {:?}{detail}", e.at.to_string(), e.seq, e.kind);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_report(r: &RunReport) {
    let o = &r.outcome;
    for w in &r.warnings {
        eprintln!("warning: {w}");
    }
    out!("{} · strategy {} · seed {}", o.scenario, o.strategy, o.seed);
    out!(
        "  {} events in {:.1} s simulated, {:.3} s wall ({:.2} M events/s)",
        o.events,
        o.sim_seconds,
        r.wall_seconds,
        r.events_per_second / 1e6
    );
    out!("  trace hash {} (fingerprint {})", o.trace_hash, o.fingerprint);
    out!("  checks:");
    for c in &o.checks {
        match (&c.why, c.violated_at_s) {
            (Some(why), Some(at)) => {
                out!("    ✗ {:<22} first at {at:.3}s: {why}", c.id);
                let tail = c
                    .holding_since_s
                    .map_or(", still violated at the end".into(), |s| format!(", holding since {s:.3} s"));
                out!("      {:<22} violated {}{tail}", "", c.bands_text());
            }
            _ => out!("    ✓ {}", c.id),
        }
    }
    out!("  metrics:");
    for m in &o.metrics {
        out!("    {:<26} {}", m.label, format_value(m.value, m.unit));
    }
    out!("  recipe: {}", r.recipe_url);
}
