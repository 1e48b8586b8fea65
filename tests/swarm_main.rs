//! `scripts/swarm`: random fault plans for every scenario × strategy × many seeds, on every
//! core, with a table of what was run and what was found (and the links that reproduce it).
//!
//! Usage: swarm [--seeds N] [--scenario ID] [--threads T] [--explore] [--links N [--emit]]
//!
//! `--explore` throws each fault kind alone (once or twice a run) at each fixed strategy and
//! tells how often a check broke: what a scenario's author reads to declare its envelope.
//!
//! `--links N` opens N fuzzed links instead (`faultline_tests::links`): each must run, with a
//! clean link written back, or be refused with a message a user can act on. `--emit` prints
//! them instead, as the page's routes with what the page must show (the browser's slice).

use faultline_core::ScenarioSpec;
use faultline_scenarios::ALL;
use faultline_tests::links::{fuzzed, try_link, Opened, MUTATIONS};
use faultline_tests::swarm::{all_kinds, baseline_events, draw, draw_from, judge, node_count, Finding};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

/// One scenario's row of the table.
#[derive(Default, Clone)]
struct Row {
    runs: u64,
    faults: u64,
    inside: u64,
    panics: u64,
    unhandled: u64,
    replays: u64,
    exploded: u64,
    violations: u64,
    /// Checks broken outside the envelope or by a naive strategy: expected, counted to show
    /// that the faults bite.
    broken: u64,
}

impl Row {
    /// Adds another row's counts to this one.
    fn add(&mut self, o: &Row) {
        self.runs += o.runs;
        self.faults += o.faults;
        self.inside += o.inside;
        self.broken += o.broken;
        self.panics += o.panics;
        self.unhandled += o.unhandled;
        self.replays += o.replays;
        self.exploded += o.exploded;
        self.violations += o.violations;
    }
}

fn usage(why: &str) -> ! {
    eprintln!("swarm: {why}\nusage: swarm [--seeds N] [--scenario ID] [--threads T] [--explore] [--links N [--emit]]");
    std::process::exit(2)
}

fn main() {
    let (mut seeds, mut only, mut threads) =
        (1000u64, None, std::thread::available_parallelism().map_or(2, |n| n.get()));
    let (mut explore, mut links, mut emit) = (false, None, false);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| usage(&format!("{a} needs a value")));
        match a.as_str() {
            "--seeds" => seeds = value().parse().unwrap_or_else(|_| usage("--seeds takes a number")),
            "--threads" => threads = value().parse().unwrap_or_else(|_| usage("--threads takes a number")),
            "--scenario" => {
                let id = value();
                only = Some(faultline_scenarios::find(&id).unwrap_or_else(|| usage(&format!("no scenario `{id}`"))));
            }
            "--explore" => explore = true,
            "--emit" => emit = true,
            "--links" => links = Some(value().parse().unwrap_or_else(|_| usage("--links takes a number"))),
            _ => usage(&format!("unknown argument `{a}`")),
        }
    }
    let specs: Vec<&'static ScenarioSpec> = match only {
        Some(s) => vec![s],
        None => ALL.to_vec(),
    };
    if let Some(n) = links {
        return if emit { emit_links(n) } else { fuzz_links(n, threads) };
    }
    if explore {
        return explore_envelopes(&specs, seeds, threads);
    }
    // Work items: (scenario index, strategy index); each covers every seed, so baselines and
    // node counts are computed once per item.
    let items: Vec<(usize, usize)> =
        specs.iter().enumerate().flat_map(|(i, s)| (0..s.strategies.len()).map(move |j| (i, j))).collect();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(vec![Row::default(); specs.len()]);
    let found = Mutex::new(Vec::<String>::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(i, j)) = items.get(k) else { break };
                let (spec, st) = (specs[i], &specs[i].strategies[j]);
                let nodes = node_count(spec);
                let baseline = baseline_events(spec, st.id, 1);
                let mut row = Row::default();
                for seed in 1..=seeds {
                    let drawn = draw(spec, st.id, seed, nodes);
                    let v = judge(spec, &drawn, baseline);
                    row.runs += 1;
                    row.faults += v.faults as u64;
                    row.inside += u64::from(drawn.inside && !st.naive);
                    row.broken += u64::from(v.violated && (st.naive || !drawn.inside));
                    for f in &v.findings {
                        match f {
                            Finding::Panic(_) => row.panics += 1,
                            Finding::Unhandled(_) => row.unhandled += 1,
                            Finding::Replay => row.replays += 1,
                            Finding::Exploded { .. } | Finding::Memory { .. } => row.exploded += 1,
                            Finding::Violation { .. } => row.violations += 1,
                        }
                        let mut found = found.lock().unwrap();
                        if found.len() < 200 {
                            found.push(format!(
                                "{}/{} seed {seed} ({}): {f:?}\n  reproduce: {}",
                                spec.id(),
                                st.id,
                                drawn.kinds.join(", "),
                                v.link
                            ));
                        }
                    }
                }
                let mut rows = rows.lock().unwrap();
                rows[i].add(&row);
                eprintln!(
                    "  {} / {}: {} runs ({:.0} s so far)",
                    spec.id(),
                    st.id,
                    row.runs,
                    started.elapsed().as_secs_f64()
                );
            });
        }
    });
    let rows = rows.into_inner().unwrap();
    println!("\n| scenario | runs | faults | fixed runs inside the envelope | checks broken (naive, or outside) | panics | unhandled | replay differs | exploded | fixed broken inside |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mut total = Row::default();
    for (spec, r) in specs.iter().zip(&rows) {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            spec.id(),
            r.runs,
            r.faults,
            r.inside,
            r.broken,
            r.panics,
            r.unhandled,
            r.replays,
            r.exploded,
            r.violations
        );
        total.add(r);
    }
    let t = &total;
    println!(
        "| **all** | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
        t.runs, t.faults, t.inside, t.broken, t.panics, t.unhandled, t.replays, t.exploded, t.violations
    );
    println!("\n{seeds} seeds per strategy, {threads} threads, {:.0} s of wall time.", started.elapsed().as_secs_f64());
    let found = found.into_inner().unwrap();
    if found.is_empty() {
        println!("Nothing found.");
    } else {
        println!("\nFound (first {}):", found.len());
        for f in &found {
            println!("{f}");
        }
        std::process::exit(1);
    }
}

/// For each fixed strategy and fault kind: how many of `seeds` runs with that kind alone
/// broke a check, and the first such run's check and link.
fn explore_envelopes(specs: &[&'static ScenarioSpec], seeds: u64, threads: usize) {
    let items: Vec<(&'static ScenarioSpec, &'static str, &'static str)> = specs
        .iter()
        .flat_map(|&spec| {
            let kinds = all_kinds(spec);
            spec.strategies
                .iter()
                .filter(|s| !s.naive)
                .flat_map(move |st| kinds.clone().into_iter().map(move |k| (spec, st.id, k)))
        })
        .collect();
    let next = AtomicUsize::new(0);
    let out = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let k = next.fetch_add(1, Ordering::Relaxed);
                let Some(&(spec, st, kind)) = items.get(k) else { break };
                let (nodes, baseline) = (node_count(spec), baseline_events(spec, st, 1));
                let (mut broken, mut example, mut other) = (0, String::new(), 0);
                for seed in 1..=seeds {
                    let drawn = draw_from(spec, st, seed, nodes, &[kind], 1 + seed % 2);
                    let v = judge(spec, &drawn, baseline);
                    other += v.findings.len();
                    if v.violated {
                        broken += 1;
                        if example.is_empty() {
                            let (check, why) = v.broken.clone().unwrap_or_default();
                            example = format!("\n    e.g. `{check}`: {why}\n    {}", v.link);
                        }
                    }
                }
                eprintln!("  {} / {st} / {kind}: {broken} broke, {other} other", spec.id());
                out.lock().unwrap().push((
                    k,
                    format!(
                        "{} / {st} / {kind}: {broken} of {seeds} broke a check; {other} other findings {example}",
                        spec.id()
                    ),
                ));
            });
        }
    });
    let mut out = out.into_inner().unwrap();
    out.sort();
    for (_, line) in out {
        println!("{line}");
    }
}

/// Opens `n` fuzzed links on `threads` threads; prints, per mutation, how many links ran and
/// how many were refused (and why), then every finding with its link.
fn fuzz_links(n: u64, threads: usize) {
    const CHUNK: u64 = 1_000;
    let next = std::sync::atomic::AtomicU64::new(0);
    // Per mutation: links it was in, ran, refused. Refusals by error, over all links.
    let table = Mutex::new((vec![[0u64; 3]; MUTATIONS.len()], std::collections::BTreeMap::<String, u64>::new()));
    let found = Mutex::new(Vec::<String>::new());
    let started = Instant::now();
    std::thread::scope(|scope| {
        for _ in 0..threads.max(1) {
            scope.spawn(|| loop {
                let from = next.fetch_add(CHUNK, Ordering::Relaxed);
                if from >= n {
                    break;
                }
                let (mut rows, mut refusals) = (vec![[0u64; 3]; MUTATIONS.len()], std::collections::BTreeMap::new());
                for seed in from..(from + CHUNK).min(n) {
                    let f = fuzzed(seed);
                    let outcome = try_link(&f.link);
                    for m in &f.mutations {
                        let row = &mut rows[MUTATIONS.iter().position(|x| x == m).expect("a known mutation")];
                        row[0] += 1;
                        match &outcome {
                            Ok(Opened::Ran { .. }) => row[1] += 1,
                            Ok(Opened::Refused(_)) => row[2] += 1,
                            Err(_) => {}
                        }
                    }
                    match outcome {
                        Ok(Opened::Refused(why)) => *refusals.entry(why).or_insert(0) += 1,
                        Ok(Opened::Ran { .. }) => {}
                        Err(e) => {
                            let mut found = found.lock().unwrap();
                            if found.len() < 200 {
                                found.push(format!(
                                    "seed {seed} ({}): {e:?}\n  link: {}",
                                    f.mutations.join(", "),
                                    f.link
                                ));
                            }
                        }
                    }
                }
                let mut t = table.lock().unwrap();
                for (all, row) in t.0.iter_mut().zip(&rows) {
                    for k in 0..3 {
                        all[k] += row[k];
                    }
                }
                for (why, c) in refusals {
                    *t.1.entry(why).or_insert(0) += c;
                }
            });
        }
    });
    let (rows, refusals) = table.into_inner().unwrap();
    println!("\n| mutation | links | ran | refused |");
    println!("|---|---:|---:|---:|");
    for (m, r) in MUTATIONS.iter().zip(&rows) {
        println!("| {m} | {} | {} | {} |", r[0], r[1], r[2]);
    }
    println!(
        "\nRefused, by error: {}",
        refusals.iter().map(|(k, v)| format!("{k} {v}")).collect::<Vec<_>>().join(", ")
    );
    let found = found.into_inner().unwrap();
    println!(
        "\n{n} links ({} refused), {threads} threads, {:.0} s of wall time; {} findings.",
        refusals.values().sum::<u64>(),
        started.elapsed().as_secs_f64(),
        found.len()
    );
    if !found.is_empty() {
        for f in &found {
            println!("{f}");
        }
        std::process::exit(1);
    }
}

/// Prints `n` fuzzed links as a JSON array of `{route, mutations, expect}` for the browser:
/// `expect` is `refused` (the page says what is wrong, and nothing plays), `repaired` (it plays
/// and a banner lists what was repaired) or `ran`, as the same code natively reads the route.
fn emit_links(n: u64) {
    let mut items = Vec::new();
    // Spread over the seeds so that a small slice still meets every mutation.
    for seed in (0..n).map(|k| k * 7_919) {
        let f = fuzzed(seed);
        let (route, read) = f.page();
        let expect = match try_link(&read) {
            Ok(Opened::Refused(_)) => "refused",
            Ok(Opened::Ran { repairs: 0 }) => "ran",
            Ok(Opened::Ran { .. }) => "repaired",
            Err(e) => panic!("seed {seed}: {e:?}: {read}"),
        };
        items.push(serde_json::json!({ "route": route, "mutations": f.mutations.join(", "), "expect": expect }));
    }
    println!("{}", serde_json::to_string_pretty(&items).expect("plain JSON values"));
}
