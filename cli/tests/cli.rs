//! The `faultline` binary as a user runs it: reports, recipe URLs, sweeps and bad arguments.

use std::process::{Command, Output};

fn faultline(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_faultline")).args(args).output().expect("runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(args: &[&str]) -> serde_json::Value {
    let o = faultline(args);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("valid JSON")
}

#[test]
fn list_names_every_scenario_with_its_schema() {
    let v = json(&["list", "--json"]);
    let ids: Vec<&str> = v.as_array().unwrap().iter().map(|s| s["info"]["id"].as_str().unwrap()).collect();
    for spec in faultline_scenarios::ALL {
        assert!(ids.contains(&spec.id()));
    }
    let bp = v.as_array().unwrap().iter().find(|s| s["info"]["id"] == "backpressure").unwrap();
    for key in ["params", "strategies", "checks", "metrics", "faults"] {
        assert!(bp[key].as_array().is_some_and(|a| !a.is_empty()), "{key}");
    }
    assert!(stdout(&faultline(&["list"])).contains("backpressure"));
}

#[test]
fn run_reports_verdicts_metrics_and_a_reproducing_url() {
    let v = json(&["run", "backpressure", "--strategy", "unbounded", "--seed", "4", "--json"]);
    assert!(v["events"].as_u64().unwrap() > 1000);
    assert!(v["events_per_second"].as_f64().unwrap() > 0.0);
    assert_eq!(v["sim_seconds"].as_f64().unwrap(), 30.0);
    assert_eq!(v["checks"].as_array().unwrap().len(), 2);
    assert!(v["checks"].as_array().unwrap().iter().any(|c| c["ok"] == false), "the naive strategy breaks");
    assert!(v["metrics"].as_array().unwrap().iter().any(|m| m["id"] == "throughput"));
    let url = v["recipe_url"].as_str().unwrap();
    assert_eq!(url, "?v=1&s=backpressure&strategy=unbounded&seed=4");
    let again = json(&["run", url, "--json"]);
    assert_eq!(again["trace_hash"], v["trace_hash"], "the URL reproduces the run");

    let text = stdout(&faultline(&["run", "backpressure", "--strategy", "shed", "--until", "5s"]));
    assert!(text.contains("✓ no-silent-drop") && text.contains("recipe: ?v=1"), "{text}");
}

#[test]
fn sweep_varies_one_parameter_over_seeds() {
    let o =
        faultline(&["sweep", "backpressure", "--param", "workers=4..6:1", "--seeds", "2", "--until", "20s", "--csv"]);
    assert!(o.status.success());
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("workers,throughput"));
    assert!(lines[1].starts_with("4,"));
    let rows =
        json(&["sweep", "backpressure", "--param", "workers=4..6:2", "--seeds", "2", "--until", "20s", "--json"]);
    assert_eq!(rows.as_array().unwrap().len(), 2);
}

#[test]
fn bad_arguments_exit_2_with_a_clear_message() {
    let cases: &[(&[&str], &str)] = &[
        (&["run", "nope"], "no scenario called `nope`"),
        (&["run", "backpressure", "--strategy", "magic"], "no strategy `magic`"),
        (&["run", "backpressure", "--param", "workers=0"], "out of range"),
        (&["run", "backpressure", "--param", "wrkrs=3"], "no parameter `wrkrs`"),
        (&["run", "backpressure", "--until", "soon"], "not a duration"),
        (&["run", "?s=backpressure&v=7"], "newer Faultline"),
        (&["sweep", "backpressure"], "--param k=a..b:step"),
        (&["sweep", "backpressure", "--param", "workers=1..999"], "out of range"),
        (&["dance"], "unknown command"),
    ];
    for (args, want) in cases {
        let o = faultline(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
}

#[test]
fn a_reader_that_stops_early_ends_the_listing_quietly() {
    // `faultline list --json | head -c 16`: the pipe closes after a few bytes; the rest of the
    // listing (far more than a pipe's 64 KiB buffer) must end the process quietly (exit 0,
    // nothing on stderr), not with a panic.
    use std::io::Read;
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_faultline"))
        .args(["list", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let mut first = [0u8; 16];
    child.stdout.take().expect("piped").read_exact(&mut first).expect("some output");
    let out = child.wait_with_output().expect("ends");
    assert!(out.status.success(), "{:?}: {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}
