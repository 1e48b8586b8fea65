//! Architecture invariants, enforced: determinism hazards and `unsafe` never appear in the
//! simulation crates, every source file says what it is, and `web` stays generic.

use std::fs;
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("workspace root").to_path_buf()
}

/// Code lines only: comments are allowed to mention what they forbid.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines().enumerate().filter(|(_, l)| {
        let t = l.trim_start();
        !(t.starts_with("//") || t.starts_with("///") || t.starts_with("//!") || t.starts_with('*'))
    })
}

const FORBIDDEN: &[(&str, &str)] = &[
    ("HashMap", "iteration order is random: use BTreeMap or a Vec"),
    ("HashSet", "iteration order is random: use BTreeSet or a Vec"),
    ("Instant", "no wall clock in a simulation"),
    ("SystemTime", "no wall clock in a simulation"),
    ("thread_rng", "the run's one seeded Rng only"),
    ("rand::random", "the run's one seeded Rng only"),
    ("rand::rng", "the run's one seeded Rng only"),
    ("OsRng", "the run's one seeded Rng only"),
    ("from_entropy", "the run's one seeded Rng only"),
    ("from_os_rng", "the run's one seeded Rng only"),
    ("std::thread", "simulations are single-threaded"),
    (".ln(", "transcendental math goes through libm"),
    (".exp(", "transcendental math goes through libm"),
    (".powf(", "transcendental math goes through libm"),
    (".powi(", "transcendental math goes through libm"),
    (".sin(", "transcendental math goes through libm"),
    (".cos(", "transcendental math goes through libm"),
    (".log10(", "transcendental math goes through libm"),
    (".log2(", "transcendental math goes through libm"),
];

#[test]
fn simulation_crates_are_deterministic_and_safe() {
    let mut files = Vec::new();
    for dir in ["core/src", "scenarios/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    assert!(files.len() >= 10, "found only {} files: is the walk broken?", files.len());
    let mut problems = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).expect("readable");
        for (n, line) in code_lines(&text) {
            for (bad, why) in FORBIDDEN {
                if line.contains(bad) {
                    problems.push(format!("{}:{}: `{bad}` — {why}", f.display(), n + 1));
                }
            }
        }
    }
    assert!(problems.is_empty(), "determinism hazards:\n{}", problems.join("\n"));
}

#[test]
fn every_source_file_opens_with_a_doc_line() {
    let mut files = Vec::new();
    for dir in ["core/src", "scenarios/src", "web/src", "web/protocol/src", "web/engine/src", "cli/src"] {
        rust_files(&root().join(dir), &mut files);
    }
    let missing: Vec<String> = files
        .iter()
        .filter(|f| !fs::read_to_string(f).expect("readable").starts_with("//!"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(missing.is_empty(), "files without a `//!` line: {missing:?}");
}

#[test]
fn web_knows_no_particular_scenario() {
    let ids: Vec<&str> = faultline_scenarios::ALL.iter().map(|s| s.id()).collect();
    let mut files = Vec::new();
    rust_files(&root().join("web/src"), &mut files);
    for f in files {
        let text = fs::read_to_string(&f).expect("readable");
        for id in &ids {
            assert!(
                !text.contains(&format!("\"{id}\"")),
                "{} names scenario `{id}`: web must stay generic",
                f.display()
            );
        }
    }
}

/// The most lines a scenario may have, tests excluded: the kit exists so that a scenario
/// keeps only its lesson.
const MAX_SCENARIO_LINES: usize = 400;

/// Scenarios rewritten on the kit but still over the limit, with the lines they have now:
/// each may shrink, never grow, and leaves this list once it fits.
const STILL_OVER: &[(&str, usize)] = &[
    ("caching/cache_stampede.rs", 425),
    ("consistency/idempotent_payments.rs", 525),
    ("traffic/distributed_rate_limiter.rs", 502),
    // Timeouts, a crash's excuse and the shared-fault hold (in `sprt::Paired`) grew it past 400.
    ("deployment/canary_analysis.rs", 469),
];

/// A file's lines before its `#[cfg(test)]` module.
fn lines_before_tests(path: &Path) -> usize {
    let text = fs::read_to_string(path).expect("readable");
    text.lines().take_while(|l| !l.starts_with("#[cfg(test)]")).count()
}

#[test]
fn every_scenario_fits_in_400_lines_without_its_tests() {
    let src = root().join("scenarios/src");
    let mut sizes = Vec::new();
    for category in fs::read_dir(&src).expect("scenarios/src").map(|e| e.expect("entry").path()) {
        let name = category.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        if !category.is_dir() || name == "parts" {
            continue;
        }
        for entry in fs::read_dir(&category).expect("a category").map(|e| e.expect("entry").path()) {
            let file = entry.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
            // A scenario is a file, or a folder whose files count together.
            let lines = if entry.is_dir() {
                let mut files = Vec::new();
                rust_files(&entry, &mut files);
                files.iter().map(|f| lines_before_tests(f)).sum()
            } else if file != "mod.rs" && file.ends_with(".rs") {
                lines_before_tests(&entry)
            } else {
                continue;
            };
            sizes.push((format!("{name}/{file}"), lines));
        }
    }
    assert!(sizes.len() >= 7, "found only {} scenarios: is the walk broken?", sizes.len());
    let mut over = Vec::new();
    for (scenario, lines) in &sizes {
        let allowed = STILL_OVER.iter().find(|(s, _)| s == scenario).map_or(MAX_SCENARIO_LINES, |&(_, n)| n);
        if *lines > allowed {
            over.push(format!("{scenario}: {lines} lines before its tests (at most {allowed})"));
        }
    }
    assert!(over.is_empty(), "scenarios too long — compose the kit (scenarios/src/parts):\n{}", over.join("\n"));
    for (scenario, _) in STILL_OVER {
        let now = sizes.iter().find(|(s, _)| s == scenario).map(|&(_, n)| n);
        assert!(now.is_some(), "{scenario} is gone: take it off STILL_OVER");
        assert!(now > Some(MAX_SCENARIO_LINES), "{scenario} fits now: take it off STILL_OVER");
    }
}

/// The wasm-opt flags of every worker module: the simulation crates are built at opt-level 3,
/// whose output uses bulk memory and the other post-MVP features Rust enables by default.
const WORKER_OPT: &str = "data-wasm-opt=\"z\" data-wasm-opt-params=\"--enable-bulk-memory \
    --enable-nontrapping-float-to-int --enable-sign-ext --enable-mutable-globals\"";

/// Replaces the text between `open` and `close` in `text`.
fn between(text: &str, open: &str, close: &str, with: &str) -> String {
    let (a, b) = (text.find(open).expect(open), text.find(close).expect(close));
    format!("{}{open}\n{with}{}", &text[..a], &text[b..])
}

/// Every registered scenario has its own simulation worker module (a `[[bin]]` of the
/// engine, and a Trunk link that builds it), so a scenario page downloads that scenario's
/// code and no other (and index.html's boot script knows which ids have one). They are
/// generated from the registry: with `FAULTLINE_BLESS=1` this
/// test writes them; without, it fails when they are stale.
#[test]
fn every_scenario_has_its_own_worker_module() {
    let (root, bless) = (root(), std::env::var_os("FAULTLINE_BLESS").is_some());
    let scenarios: Vec<(&str, &str)> =
        faultline_scenarios::ALL.iter().map(|s| s.id()).zip(faultline_scenarios::MODULES.iter().copied()).collect();
    let mut expected: Vec<(PathBuf, String)> = scenarios
        .iter()
        .map(|(id, module)| {
            let text = format!(
                "//! The simulation worker for one scenario, {id} (generated by tests/tidy.rs: rerun it with FAULTLINE_BLESS=1).\n\n\
                 use faultline_scenarios::{module} as scenario;\n\n\
                 fn main() {{\n    faultline_engine::main(faultline_engine::only!(scenario::SPEC));\n}}\n"
            );
            (root.join(format!("web/engine/src/bin/sim-{id}.rs")), text)
        })
        .collect();
    let bins: String = scenarios
        .iter()
        .map(|(id, _)| format!("[[bin]]\nname = \"sim-{id}\"\npath = \"src/bin/sim-{id}.rs\"\n\n"))
        .collect();
    let cargo = root.join("web/engine/Cargo.toml");
    let text = fs::read_to_string(&cargo).expect("engine Cargo.toml");
    expected.push((cargo, between(&text, "# workers", "# /workers", &bins)));
    let links: String = scenarios
        .iter()
        .map(|(id, _)| {
            format!(
                "    <link data-trunk rel=\"rust\" href=\"web/engine/Cargo.toml\" data-bin=\"sim-{id}\" data-type=\"worker\" \
                 data-bindgen-target=\"web\" data-loader-shim {WORKER_OPT} />\n"
            )
        })
        .collect();
    let html = root.join("index.html");
    let text = fs::read_to_string(&html).expect("index.html");
    let text = between(&text, "<!-- workers -->", "    <!-- /workers -->", &links);
    // The boot script starts a cold link's worker only for a scenario that has one.
    let ids: Vec<String> = scenarios.iter().map(|(id, _)| format!("\"{id}\"")).collect();
    let ids = format!("          {},\n", ids.join(", "));
    expected.push((html, between(&text, "// ids (generated by tests/tidy.rs)", "          // /ids", &ids)));
    let known: Vec<&PathBuf> = expected.iter().map(|(p, _)| p).collect();
    let mut stale: Vec<PathBuf> = fs::read_dir(root.join("web/engine/src/bin"))
        .expect("bin folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n != "sim-all.rs") && !known.contains(&p))
        .collect();
    let mut wrong = Vec::new();
    for (path, text) in &expected {
        if fs::read_to_string(path).ok().as_deref() != Some(text) {
            if bless {
                fs::write(path, text).expect("writable");
            } else {
                wrong.push(path.display().to_string());
            }
        }
    }
    if bless {
        stale.iter().for_each(|p| fs::remove_file(p).expect("removable"));
        stale.clear();
    }
    wrong.extend(stale.iter().map(|p| format!("{} (no such scenario)", p.display())));
    assert!(
        wrong.is_empty(),
        "worker modules out of date with the registry — regenerate them with \
         `FAULTLINE_BLESS=1 cargo test -p faultline-tests --test tidy`:\n{}",
        wrong.join("\n")
    );
}

/// `unsafe` only where Rust demands it: the engine's counting allocator (`GlobalAlloc` is an
/// unsafe trait; it hands every call to the system allocator). Nowhere else in the workspace.
#[test]
fn no_unsafe_outside_the_counting_allocator() {
    let mut files = Vec::new();
    for dir in ["core/src", "scenarios/src", "cli/src", "web/src", "web/engine/src", "web/protocol/src", "tests"] {
        rust_files(&root().join(dir), &mut files);
    }
    let allowed = root().join("web/engine/src/heap.rs");
    let mut found = Vec::new();
    for f in files.iter().filter(|f| **f != allowed && !f.ends_with("tidy.rs")) {
        let text = fs::read_to_string(f).expect("readable");
        for (n, line) in code_lines(&text) {
            if line.contains("unsafe") && !line.contains("forbid(unsafe_code)") {
                found.push(format!("{}:{}", f.display(), n + 1));
            }
        }
    }
    assert!(found.is_empty(), "unsafe outside web/engine/src/heap.rs:\n{}", found.join("\n"));
}

/// Where the page sets HTML from a string, and why no text from a link reaches it unescaped.
/// Everything else is built with views (text is text) or element by element.
const HTML_SITES: &[(&str, usize, &str)] = &[
    ("web/src/access.rs", 2, "the text view and the keys sheet: every string through `escape`"),
    ("web/src/bench.rs", 1, "the engine bench's table: its links and labels through `access::escape`"),
];

#[test]
fn html_is_set_from_strings_only_where_listed() {
    let mut files = Vec::new();
    rust_files(&root().join("web/src"), &mut files);
    let mut problems = Vec::new();
    for f in &files {
        let text = fs::read_to_string(f).expect("readable");
        let count = code_lines(&text)
            .filter(|(_, l)| {
                ["inner_html", "outer_html", "insert_adjacent_html", "document.write"].iter().any(|k| l.contains(k))
            })
            .count();
        let name = f.strip_prefix(root()).expect("inside the workspace").to_string_lossy().replace('\\', "/");
        let listed = HTML_SITES.iter().find(|(p, _, _)| *p == name).map_or(0, |s| s.1);
        if count != listed {
            problems.push(format!(
                "{name}: {count} places set HTML from a string, {listed} listed — build it with views, or escape every \
                 string with access::escape and list the site in HTML_SITES with why no link text reaches it unescaped"
            ));
        }
        if name.ends_with("access.rs") || name.ends_with("bench.rs") {
            // No raw `.replace('<'` escaping of its own: one escape, tested once.
            if code_lines(&text)
                .any(|(_, l)| l.contains(".replace('<'") && !l.contains("fn escape") && !l.contains("text.replace('&'"))
            {
                problems.push(format!("{name}: escapes by hand; use access::escape"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
