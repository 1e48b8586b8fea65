//! `scripts/swarm --extremes | --long`: the player's own engine, natively, at every parameter's ends and for an hour of simulated time — how long its slices really take, what memory it holds, whether checkpoints and the trace stay within their budgets.
//!
//! Usage: play --extremes [--scenario ID]   every parameter at its min and max under every
//!                                           strategy, and 8 random corners per scenario
//!        play --long [SECONDS] [--scenario ID]  each scenario's default recipe played for
//!                                           SECONDS (3,600) of simulated time
//!
//! `--extremes` drives the worker's `Engine` as the page does (open the link, play as fast as
//! possible, ask for every status) and times each slice: a slice is given 8 ms, so one that
//! takes far longer is a moment the worker cannot answer the page (its controls stop
//! answering; a tab would look frozen). A run ends at its scenario's end, or is stopped by the
//! memory guard with the message the page shows, or — if it plays slower than the cap below
//! allows — is reported as slow (the page plays it, slowly, and says it cannot keep up).
//!
//! `--long` drives the `Player` for an hour and looks every simulated minute: the checkpoints'
//! bytes against their budget, how evenly they spread, the trace against its cap, and the
//! program's heap. Nothing here is asserted against the wall clock in the test command: the
//! figures are for RELIABILITY.md.
//!
//! Memory is the whole program's (the engine's counting allocator): runs go one at a time.

use faultline_core::{Recipe, ScenarioSpec, Time, MICROS_PER_S};
use faultline_engine::heap;
use faultline_engine::player::{Player, CHECKPOINT_BUDGET, HEAP_LIMIT};
use faultline_engine::{strip_s, Catalog, Engine, SLICE_MS};
use faultline_protocol::{Command, LogFilter, Reply};
use faultline_scenarios::ALL;
use faultline_tests::{parameter_corners, parameter_ends, TestRng};
use std::sync::OnceLock;
use std::time::Instant;

/// A slice this much over its budget is reported: the page would stop answering for as long.
const FROZEN_MS: f64 = 250.0;
/// The most wall time one extreme run is given natively; a run still playing then is reported
/// as slow (the page would play it, slower than real time, and say so), not as a failure.
const RUN_CAP_S: f64 = 60.0;

fn wall_ms() -> f64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_secs_f64() * 1e3
}

fn usage(why: &str) -> ! {
    eprintln!("play: {why}\nusage: play (--extremes | --long [SECONDS]) [--scenario ID]");
    std::process::exit(2)
}

fn main() {
    let (mut mode, mut only, mut long_s) = (None, None, 3600u64);
    let mut args = std::env::args().skip(1).peekable();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--extremes" => mode = Some("extremes"),
            "--long" => {
                mode = Some("long");
                if let Some(s) = args.next_if(|s| !s.starts_with("--")) {
                    long_s = s.parse().unwrap_or_else(|_| usage("--long takes a number of seconds"));
                }
            }
            "--scenario" => {
                let id = args.next().unwrap_or_else(|| usage("--scenario needs a value"));
                only = Some(faultline_scenarios::find(&id).unwrap_or_else(|| usage(&format!("no scenario `{id}`"))));
            }
            _ => usage(&format!("unknown argument `{a}`")),
        }
    }
    let specs: Vec<&'static ScenarioSpec> = only.map_or_else(|| ALL.to_vec(), |s| vec![s]);
    match mode {
        Some("extremes") => extremes(&specs),
        Some("long") => long(&specs, long_s),
        _ => usage("say --extremes or --long"),
    }
}

/// What playing one link in the engine came to.
struct Played {
    wall_s: f64,
    events: u64,
    reached_s: f64,
    worst_slice_ms: f64,
    /// The memory guard's message, if it stopped the run.
    stopped: Option<String>,
    slow: bool,
    errors: Vec<String>,
}

/// Opens `query` for `spec` in a fresh engine, plays it as fast as possible, asking for every
/// status (with the slow parts) as the page does, to its end, the memory guard or the cap.
fn play(spec: &'static ScenarioSpec, query: &str) -> Played {
    let catalog = Catalog { find: faultline_scenarios::find, bench: Vec::new };
    let mut e = Engine::new(catalog, wall_ms);
    let start = wall_ms();
    // The page asks for the next status once it has drawn one, with the slow parts (log,
    // charts) a few times a second.
    let want = |full| Command::Want { full, log: LogFilter { limit: 200, ..LogFilter::default() } };
    let mut last_full = start;
    let mut p = Played {
        wall_s: 0.0,
        events: 0,
        reached_s: 0.0,
        worst_slice_ms: 0.0,
        stopped: None,
        slow: false,
        errors: vec![],
    };
    let mut replies = e.handle(Command::Open { id: spec.id().to_string(), query: query.to_string() });
    replies.extend(e.handle(Command::Play { speed: 0.0 }));
    replies.extend(e.handle(want(true)));
    loop {
        while replies.iter().any(|r| matches!(r, Reply::Status(_))) {
            let mut answered = Vec::new();
            for r in replies.drain(..) {
                match r {
                    Reply::Status(s) => {
                        (p.events, p.reached_s) = (s.events, s.now as f64 / 1e6);
                        p.stopped = p.stopped.take().or(s.stopped);
                        answered = e.handle(want(false));
                    }
                    Reply::Unreadable { message, .. } | Reply::Error { message, .. } => p.errors.push(message),
                    _ => {}
                }
            }
            replies = answered;
        }
        for r in replies.drain(..) {
            if let Reply::Unreadable { message, .. } | Reply::Error { message, .. } = r {
                p.errors.push(message);
            }
        }
        if !e.busy() {
            break;
        }
        if (wall_ms() - start) / 1e3 > RUN_CAP_S {
            p.slow = true;
            break;
        }
        let t = wall_ms();
        replies = e.slice(SLICE_MS);
        p.worst_slice_ms = p.worst_slice_ms.max(wall_ms() - t);
        if t - last_full > 250.0 {
            last_full = t;
            replies.extend(e.handle(want(true)));
        }
    }
    p.wall_s = (wall_ms() - start) / 1e3;
    p
}

/// Every parameter at its ends under every strategy, and random corners.
fn extremes(specs: &[&'static ScenarioSpec]) {
    let mut rng = TestRng(12);
    let mut found = Vec::new();
    println!("| scenario | runs | ended | stopped by the memory guard | slow (> {RUN_CAP_S:.0} s) | worst slice (ms) | longest run (s) |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    let started = Instant::now();
    for &spec in specs {
        let recipes = [parameter_ends(spec), parameter_corners(spec, 8, &mut rng)].concat();
        let (mut ended, mut guarded, mut slow, mut worst, mut longest) = (0, 0, 0, 0f64, 0f64);
        for recipe in &recipes {
            let query = recipe.to_query(spec);
            let p = play(spec, &query);
            let link = format!("#/s/{}?{}", spec.id(), strip_s(&query));
            (worst, longest) = (worst.max(p.worst_slice_ms), longest.max(p.wall_s));
            match (&p.stopped, p.slow) {
                (Some(_), _) => guarded += 1,
                (None, true) => slow += 1,
                (None, false) => ended += 1,
            }
            if p.worst_slice_ms > FROZEN_MS {
                let f = format!("{link}: one slice took {:.0} ms (given {SLICE_MS} ms)", p.worst_slice_ms);
                eprintln!("  {f}");
                found.push(f);
            }
            for e in p.errors {
                found.push(format!("{link}: {e}"));
            }
            if p.slow {
                eprintln!("  slow: {link}: {:.1} s simulated, {} events in {RUN_CAP_S:.0} s", p.reached_s, p.events);
            }
        }
        println!("| {} | {} | {ended} | {guarded} | {slow} | {worst:.0} | {longest:.1} |", spec.id(), recipes.len());
    }
    println!("\n{:.0} s of wall time, one run at a time.", started.elapsed().as_secs_f64());
    finish(found);
}

/// Each scenario's default recipe through the player for `seconds` of simulated time.
fn long(specs: &[&'static ScenarioSpec], seconds: u64) {
    let mut found = Vec::new();
    println!(
        "| scenario | events | wall (s) | checkpoints | their MB (budget {}) | widest gap (s) | worst seek (ms) | trace (cap) | heap peak (MB) |",
        CHECKPOINT_BUDGET >> 20
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &spec in specs {
        let recipe = Recipe::new(spec.id(), spec.strategies[0].id, 1);
        let (mut p, _) = Player::new(spec, &recipe);
        (p.until, p.clock) = (Time(seconds * MICROS_PER_S), wall_ms);
        let (start, mut heap_peak, mut trace_max) = (Instant::now(), 0usize, 0usize);
        let link = format!("#/s/{}?{}", spec.id(), strip_s(&recipe.to_query(spec)));
        while !p.at_end() {
            let minute = Time((p.now().micros() / (60 * MICROS_PER_S) + 1) * 60 * MICROS_PER_S);
            p.advance(minute, || true);
            if p.out_of_memory {
                found.push(format!("{link}: the memory guard stopped it at {}", p.now()));
                break;
            }
            heap_peak = heap_peak.max(heap::live_bytes());
            trace_max = trace_max.max(p.run.trace().entries().len());
            let (_, bytes) = p.checkpoint_use();
            if bytes > p.checkpoint_budget {
                found.push(format!("{link}: checkpoints hold {bytes} bytes at {}, over the budget", p.now()));
            }
        }
        let (events, wall_s) = (p.run.events(), start.elapsed().as_secs_f64());
        let mut times = p.checkpoint_times();
        times.push(p.now());
        if std::env::var_os("PLAY_DEBUG").is_some() {
            eprintln!(
                "{}: checkpoints at {:?}",
                spec.id(),
                times.iter().map(|t| t.micros() / MICROS_PER_S).collect::<Vec<_>>()
            );
        }
        let gap = times.windows(2).map(|w| w[1].since(w[0])).max().unwrap_or(0) as f64 / 1e6;
        let (n, bytes) = p.checkpoint_use();
        // The worst rewind: to just before each checkpoint (and the end), from the one before.
        let mut worst_seek_ms = 0f64;
        for w in times.windows(2) {
            let t = wall_ms();
            p.seek(Time(w[1].micros().saturating_sub(1).max(w[0].micros())));
            worst_seek_ms = worst_seek_ms.max(wall_ms() - t);
        }
        let cap = p.run.trace().cap();
        if trace_max > cap {
            found.push(format!("{link}: the trace held {trace_max} entries, over its cap {cap}"));
        }
        if heap_peak > HEAP_LIMIT {
            found.push(format!("{link}: the heap reached {} MB", heap_peak >> 20));
        }
        println!(
            "| {} | {} | {:.1} | {n} | {:.1} | {gap:.0} | {worst_seek_ms:.0} | {trace_max} ({cap}) | {} |",
            spec.id(),
            events,
            wall_s,
            bytes as f64 / (1 << 20) as f64,
            heap_peak >> 20
        );
    }
    finish(found);
}

fn finish(found: Vec<String>) {
    if found.is_empty() {
        println!("Nothing found.");
        return;
    }
    println!("\nFound:");
    for f in &found {
        println!("{f}");
    }
    std::process::exit(1);
}
