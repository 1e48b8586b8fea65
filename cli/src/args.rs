//! Command-line parsing for `faultline`, with clear messages for every mistake.

use faultline_core::time::parse_duration;
use faultline_core::Micros;

pub const USAGE: &str = "\
faultline — deterministic distributed-systems scenarios, headless

USAGE:
  faultline list [--json]
  faultline run <scenario | recipe URL> [--strategy S] [--param k=v]... [--seed N] [--until 60s] [--json]
                [--trace N]
  faultline sweep <scenario> --param k=a..b:step [--param k=v]... [--strategy S] [--seeds N]
                  [--until 60s] [--json | --csv]
  faultline help

A recipe URL is what the browser's share button copies (or its query part).
`run` prints events processed, simulated and wall time, the trace hash, each check's
verdict and the headline metrics (`--trace N`: also the last N events). `sweep` varies one parameter over a range, runs
each value with seeds 1..=N on every core, and prints a table.
Exit code 2 means the arguments were wrong.
";

#[derive(Debug)]
pub struct UsageError(pub String);

#[derive(Debug, Default)]
pub struct RunOpts {
    pub target: String,
    pub strategy: Option<String>,
    pub params: Vec<(String, i64)>,
    pub seed: Option<u64>,
    pub until: Option<Micros>,
    pub json: bool,
    /// Print the last N entries of the event log.
    pub trace: Option<usize>,
}

#[derive(Debug)]
pub struct SweepOpts {
    pub run: RunOpts,
    pub sweep_param: String,
    pub values: Vec<i64>,
    pub seeds: u64,
    pub csv: bool,
}

#[derive(Debug)]
pub enum Command {
    Help,
    List { json: bool },
    Run(RunOpts),
    Sweep(SweepOpts),
}

#[derive(Debug)]
pub struct Args {
    pub command: Command,
}

fn err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

fn value<'a>(it: &mut impl Iterator<Item = &'a String>, flag: &str) -> Result<&'a String, UsageError> {
    it.next().ok_or_else(|| UsageError(format!("{flag} needs a value")))
}

pub fn parse(argv: &[String]) -> Result<Args, UsageError> {
    let Some(cmd) = argv.first() else { return Ok(Args { command: Command::Help }) };
    let rest = &argv[1..];
    let command = match cmd.as_str() {
        "help" | "--help" | "-h" => Command::Help,
        "list" => match rest {
            [] => Command::List { json: false },
            [j] if j == "--json" => Command::List { json: true },
            _ => return err(format!("`list` takes only --json, not {:?}", rest.join(" "))),
        },
        "run" => Command::Run(parse_run(rest, false)?.0),
        "sweep" => {
            let (run, sweep, seeds, csv) = parse_run(rest, true)?;
            let Some((param, values)) = sweep else {
                return err("sweep needs one --param k=a..b:step to vary");
            };
            if run.json && csv {
                return err("choose one of --json and --csv");
            }
            Command::Sweep(SweepOpts { run, sweep_param: param, values, seeds, csv })
        }
        other => return err(format!("unknown command `{other}`; expected list, run, sweep or help")),
    };
    Ok(Args { command })
}

type Parsed = (RunOpts, Option<(String, Vec<i64>)>, u64, bool);

fn parse_run(rest: &[String], sweep: bool) -> Result<Parsed, UsageError> {
    let mut opts = RunOpts::default();
    let mut range = None;
    let mut seeds = 5;
    let mut csv = false;
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--strategy" => opts.strategy = Some(value(&mut it, a)?.clone()),
            "--seed" => {
                let v = value(&mut it, a)?;
                opts.seed = Some(v.parse().map_err(|_| UsageError(format!("--seed {v}: not a whole number ≥ 0")))?);
            }
            "--until" => opts.until = Some(parse_duration(value(&mut it, a)?).map_err(UsageError)?),
            "--json" => opts.json = true,
            "--trace" if !sweep => {
                let v = value(&mut it, a)?;
                opts.trace =
                    Some(v.parse().map_err(|_| UsageError(format!("--trace {v}: expected a number of entries")))?);
            }
            "--csv" if sweep => csv = true,
            "--seeds" if sweep => {
                let v = value(&mut it, a)?;
                seeds = v
                    .parse()
                    .ok()
                    .filter(|&n| (1..=10_000).contains(&n))
                    .ok_or_else(|| UsageError(format!("--seeds {v}: expected 1 to 10000")))?;
            }
            "--param" => {
                let v = value(&mut it, a)?;
                let (k, val) = v.split_once('=').ok_or_else(|| UsageError(format!("--param {v}: expected k=v")))?;
                if val.contains("..") {
                    if !sweep {
                        return err(format!("--param {v}: ranges are for `sweep`"));
                    }
                    if range.is_some() {
                        return err("sweep varies one parameter; give the others fixed values");
                    }
                    range = Some((k.to_string(), parse_range(val)?));
                } else {
                    let n =
                        val.parse().map_err(|_| UsageError(format!("--param {v}: `{val}` is not a whole number")))?;
                    opts.params.push((k.to_string(), n));
                }
            }
            flag if flag.starts_with("--") => return err(format!("unknown option {flag}")),
            target => {
                if !opts.target.is_empty() {
                    return err(format!("unexpected argument `{target}` (the scenario is `{}`)", opts.target));
                }
                opts.target = target.to_string();
            }
        }
    }
    if opts.target.is_empty() {
        return err("name a scenario (see `faultline list`) or give a recipe URL");
    }
    Ok((opts, range, seeds, csv))
}

/// `a..b:step` (inclusive), or `a..b` with step 1.
fn parse_range(text: &str) -> Result<Vec<i64>, UsageError> {
    let bad = || UsageError(format!("`{text}` is not a range like 1..16:1"));
    let (span, step) = text.split_once(':').unwrap_or((text, "1"));
    let (a, b) = span.split_once("..").ok_or_else(bad)?;
    let (a, b, step): (i64, i64, i64) =
        (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?, step.parse().map_err(|_| bad())?);
    if step <= 0 || b < a {
        return Err(bad());
    }
    let n = (b - a) / step + 1;
    if n > 1000 {
        return err(format!("`{text}` has {n} values; at most 1000"));
    }
    Ok((0..n).map(|i| a + i * step).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Result<Args, UsageError> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn parses_and_refuses() {
        assert!(matches!(
            p("run backpressure --seed 3 --until 10s").unwrap().command,
            Command::Run(RunOpts { seed: Some(3), until: Some(10_000_000), .. })
        ));
        assert!(p("run").is_err());
        assert!(p("run x --seed -1").is_err());
        assert!(p("run x --bogus").is_err());
        assert!(p("run x --param workers=1..4").is_err());
        assert!(p("frobnicate").is_err());
        match p("sweep x --param workers=2..8:2 --seeds 3 --csv").unwrap().command {
            Command::Sweep(s) => assert_eq!((s.values, s.seeds, s.csv), (vec![2, 4, 6, 8], 3, true)),
            other => panic!("{other:?}"),
        }
        assert!(p("sweep x --param workers=8..2").is_err());
        assert!(p("sweep x").is_err());
    }
}
