//! Fuzzed links: valid recipe links from every scenario, damaged the ways links get damaged
//! (cut short, a byte flipped, huge or negative numbers, a key twice, unknown ids, non-ASCII,
//! overlong, a broken action log), and what opening one must do: run, or say what is wrong.

use crate::TestRng;
use faultline_core::recipe::{encode_actions, MAX_URL_LEN};
use faultline_core::{open, Action, ActionKind, Fault, Ppm, Recipe, RecipeError, ScenarioSpec, Shared, Time};
use faultline_scenarios::{find, ALL};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A random valid recipe of `spec`: a strategy, some parameters off their defaults, up to
/// eight actions of every kind, sometimes a fingerprint.
pub fn random_recipe(spec: &'static ScenarioSpec, rng: &mut TestRng) -> Recipe {
    let st = &spec.strategies[rng.below(spec.strategies.len() as u64) as usize];
    let mut r = Recipe::new(spec.id(), st.id, rng.next_u64());
    for p in spec.params {
        if rng.below(2) == 0 {
            let steps = (p.max - p.min) / p.step;
            let v = p.min + rng.below(steps as u64 + 1) as i64 * p.step;
            if v != p.default {
                r.params.insert(p.id.to_string(), v);
            }
        }
    }
    for _ in 0..rng.below(8) {
        let at = Time(rng.below(60_000_000));
        let node = rng.below(6) as u32;
        let kind = match rng.below(8) {
            0 => ActionKind::Fault(Fault::Crash { node }),
            1 => ActionKind::Fault(Fault::Pause { node, dur: rng.below(9_000_000) }),
            2 => ActionKind::Fault(Fault::Partition {
                a: vec![node],
                b: Some(vec![node + 1]),
                one_way: rng.below(2) == 0,
            }),
            3 => ActionKind::Fault(Fault::LossBurst { loss: Ppm(rng.below(1_000_001) as u32), dur: 1_000_000 }),
            4 => ActionKind::Fault(Fault::ClockDrift { node, ppm: rng.below(2000) as i32 - 1000 }),
            5 => {
                // Only live parameters can be set mid-run (a setup one rebuilds the run).
                let live: Vec<_> = spec.params.iter().filter(|p| p.live).collect();
                match live.get(rng.below(live.len().max(1) as u64) as usize) {
                    Some(p) => ActionKind::SetParam { id: p.id.into(), value: p.default },
                    None => ActionKind::Fault(Fault::Heal),
                }
            }
            6 => ActionKind::SetStrategy { id: spec.strategies[0].id.into() },
            _ => match spec.faults.first() {
                Some(f) => ActionKind::Fault(Fault::Custom { id: f.id.into(), node: None, value: f.value_default }),
                None => ActionKind::Fault(Fault::Heal),
            },
        };
        r = r.with_action(at, kind);
    }
    if rng.below(2) == 0 {
        r.shared = Some(Shared { fingerprint: rng.next_u64() as u32, at: Time(rng.below(60_000_000)) });
    }
    r
}

/// The ways a link is damaged, by name (the table counts them).
pub const MUTATIONS: [&str; 14] = [
    "truncate",
    "flip-byte",
    "huge-number",
    "negative-number",
    "repeat-key",
    "unknown-scenario",
    "unknown-strategy",
    "unknown-param",
    "non-ascii",
    "overlong",
    "bad-actions",
    "bad-escape",
    "drop-pair",
    "random-actions",
];

/// One fuzzed link and the damage done to it.
pub struct Fuzzed {
    /// The scenario whose valid link was damaged.
    pub scenario: &'static str,
    pub link: String,
    pub mutations: Vec<&'static str>,
}

impl Fuzzed {
    /// The page's route for this link (`#/s/<scenario>?<query>`) and the recipe text the page
    /// reads from it: the route names the scenario, so the page drops any `s=` of the query.
    pub fn page(&self) -> (String, String) {
        let query = self.link.rfind('?').map_or(self.link.as_str(), |i| &self.link[i + 1..]);
        let query = query.split('#').next().unwrap_or("");
        let rest = faultline_core::recipe::without_scenario(query);
        let read = if rest.is_empty() { format!("s={}", self.scenario) } else { format!("s={}&{rest}", self.scenario) };
        (format!("#/s/{}?{query}", self.scenario), read)
    }
}

/// The link for `seed`: a valid link of a scenario drawn from the seed, with 1–3 mutations.
pub fn fuzzed(seed: u64) -> Fuzzed {
    let mut rng = TestRng(seed ^ 0x6c69_6e6b_7300_0000);
    let spec = ALL[rng.below(ALL.len() as u64) as usize];
    let recipe = random_recipe(spec, &mut rng);
    let mut link = recipe.to_query(spec);
    // Links arrive bare, after `?`, or inside the page's hash route.
    link = match rng.below(3) {
        0 => link,
        1 => format!("?{link}"),
        _ => format!("https://example.test/faultline/#/s/{}?{link}", spec.id()),
    };
    let mut mutations = Vec::new();
    for _ in 0..1 + rng.below(3) {
        let m = MUTATIONS[rng.below(MUTATIONS.len() as u64) as usize];
        link = mutate(&link, m, spec, &mut rng);
        mutations.push(m);
    }
    Fuzzed { scenario: spec.id(), link, mutations }
}

/// The byte offsets of `text` that start a character.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices().map(|(i, _)| i).chain([text.len()]).collect()
}

/// A char boundary of `text` drawn at random.
fn cut(text: &str, rng: &mut TestRng) -> usize {
    let b = boundaries(text);
    b[rng.below(b.len() as u64) as usize]
}

/// The `key=value` pairs of the query part, with where the query starts.
fn pairs(link: &str) -> (usize, Vec<String>) {
    let start = link.rfind('?').map_or(0, |i| i + 1);
    (start, link[start..].split('&').map(str::to_string).collect())
}

fn rejoin(link: &str, start: usize, pairs: &[String]) -> String {
    format!("{}{}", &link[..start], pairs.join("&"))
}

/// Applies mutation `m` to `link`.
pub fn mutate(link: &str, m: &str, spec: &ScenarioSpec, rng: &mut TestRng) -> String {
    let (start, mut kv) = pairs(link);
    let pick = |rng: &mut TestRng, n: usize| rng.below(n as u64) as usize;
    match m {
        "truncate" => link[..cut(link, rng)].to_string(),
        "flip-byte" => {
            // A flipped bit that keeps the text UTF-8 (a URL reaching us is a string).
            let i = cut(link, rng);
            let c = link[i..].chars().next().unwrap_or('a') as u32;
            let flipped = char::from_u32(c ^ (1 << rng.below(7))).unwrap_or('~');
            let rest = link[i..].chars().skip(1).collect::<String>();
            format!("{}{flipped}{rest}", &link[..i])
        }
        "huge-number" | "negative-number" => {
            let numbers: Vec<usize> =
                (0..kv.len()).filter(|&i| kv[i].contains('=') && !kv[i].starts_with("a=")).collect();
            let Some(&i) = numbers.get(pick(rng, numbers.len().max(1))) else { return link.to_string() };
            let key = kv[i].split('=').next().unwrap_or("").to_string();
            let value = match (m, rng.below(4)) {
                ("huge-number", 0) => "18446744073709551616".to_string(),
                ("huge-number", 1) => i64::MAX.to_string(),
                ("huge-number", 2) => "9".repeat(40),
                ("huge-number", _) => format!("{}", rng.next_u64()),
                (_, 0) => i64::MIN.to_string(),
                (_, 1) => "-1".to_string(),
                (_, 2) => "-0".to_string(),
                _ => format!("-{}", rng.next_u64()),
            };
            kv[i] = format!("{key}={value}");
            rejoin(link, start, &kv)
        }
        "repeat-key" => {
            let i = pick(rng, kv.len());
            let again = kv[i].clone();
            kv.insert(pick(rng, kv.len() + 1), again);
            rejoin(link, start, &kv)
        }
        "unknown-scenario" => {
            rejoin(link, start, &set(kv, "s", ["nope", "", "../../etc", "BACKPRESSURE"][pick(rng, 4)]))
        }
        "unknown-strategy" => rejoin(link, start, &set(kv, "strategy", ["bogus", "", "%00", "naïve"][pick(rng, 4)])),
        "unknown-param" => {
            let id = spec.params.first().map_or("x", |p| p.id);
            let extra =
                [format!("{id}x=1"), "=5".to_string(), "zz".to_string(), format!("{}=", id)][pick(rng, 4)].clone();
            kv.insert(pick(rng, kv.len() + 1), extra);
            rejoin(link, start, &kv)
        }
        "non-ascii" => {
            let i = cut(link, rng);
            let s = ["é", "日本", "\u{0}", "\u{202e}", "🙂", "\u{fffd}", "%C3%A9", "%FF"][pick(rng, 8)];
            format!("{}{s}{}", &link[..i], &link[i..])
        }
        "overlong" => {
            let n = [MAX_URL_LEN - link.len().min(MAX_URL_LEN), MAX_URL_LEN + 1, 100_000][pick(rng, 3)];
            let filler = ["A", "&", "9", "a=AAAA&"][pick(rng, 4)];
            let mut s = link.to_string();
            while s.len() < link.len() + n {
                s.push_str(filler);
            }
            s
        }
        "bad-actions" => {
            let log = kv.iter().position(|p| p.starts_with("a="));
            let bad = ["a=!!", "a=", "a=A", "a=____", "a=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "a=%2F%2B"][pick(rng, 6)];
            match log {
                Some(i) if rng.below(2) == 0 => {
                    // Damage the real log: cut it or change one of its characters.
                    let text = kv[i][2..].to_string();
                    let j = cut(&text, rng);
                    kv[i] = if rng.below(2) == 0 {
                        format!("a={}", &text[..j])
                    } else {
                        let c = ['A', '_', '-', 'z', '9', '/'][pick(rng, 6)];
                        format!("a={}{c}{}", &text[..j], text[j..].chars().skip(1).collect::<String>())
                    };
                }
                Some(i) => kv[i] = bad.to_string(),
                None => kv.push(bad.to_string()),
            }
            rejoin(link, start, &kv)
        }
        "bad-escape" => {
            let i = cut(link, rng);
            let s = ["%", "%z", "%4", "%%", "%u00e9", "+"][pick(rng, 6)];
            format!("{}{s}{}", &link[..i], &link[i..])
        }
        "drop-pair" => {
            if !kv.is_empty() {
                kv.remove(pick(rng, kv.len()));
            }
            rejoin(link, start, &kv)
        }
        "random-actions" => {
            // A well-formed log of nonsense: any node, any time, any value, of any kind.
            let actions: Vec<Action> = (0..1 + rng.below(12)).map(|_| random_action(spec, rng)).collect();
            kv.retain(|p| !p.starts_with("a="));
            kv.push(format!("a={}", encode_actions(&actions)));
            rejoin(link, start, &kv)
        }
        other => panic!("no mutation `{other}`"),
    }
}

fn set(mut kv: Vec<String>, key: &str, value: &str) -> Vec<String> {
    let prefix = format!("{key}=");
    match kv.iter().position(|p| p.starts_with(&prefix)) {
        Some(i) => kv[i] = format!("{prefix}{value}"),
        None => kv.push(format!("{prefix}{value}")),
    }
    kv
}

/// Any action at all: times up to far beyond a run, nodes up to far beyond the run's, values
/// of any size (the decoder and the run must cope with every one).
fn random_action(spec: &ScenarioSpec, rng: &mut TestRng) -> Action {
    let wide = |rng: &mut TestRng| match rng.below(3) {
        0 => rng.below(10),
        1 => rng.below(1_000_000),
        _ => rng.next_u64(),
    };
    let at = Time(wide(rng));
    let node = wide(rng) as u32;
    let kind = match rng.below(12) {
        0 => ActionKind::Fault(Fault::Crash { node }),
        1 => ActionKind::Fault(Fault::Restart { node }),
        2 => ActionKind::Fault(Fault::Pause { node, dur: wide(rng) }),
        3 => ActionKind::Fault(Fault::Partition {
            a: (0..rng.below(4)).map(|_| wide(rng) as u32).collect(),
            b: if rng.below(2) == 0 { None } else { Some((0..rng.below(4)).map(|_| wide(rng) as u32).collect()) },
            one_way: rng.below(2) == 0,
        }),
        4 if rng.below(2) == 0 => ActionKind::Fault(Fault::Heal),
        4 => ActionKind::Fault(Fault::Isolate { node, one_way: rng.below(2) == 0 }),
        5 => ActionKind::Fault(Fault::LatencySpike { extra: wide(rng), dur: wide(rng) }),
        6 => ActionKind::Fault(Fault::LossBurst { loss: Ppm(wide(rng) as u32), dur: wide(rng) }),
        7 => ActionKind::Fault(Fault::ClockSkew { node, offset: wide(rng) as i64 }),
        8 => ActionKind::Fault(Fault::ClockDrift { node, ppm: wide(rng) as i32 }),
        9 => ActionKind::Fault(Fault::SlowDisk { node, factor: wide(rng) as u32, dur: wide(rng) }),
        10 => match spec.params.get(rng.below(spec.params.len().max(1) as u64) as usize) {
            Some(p) => ActionKind::SetParam { id: p.id.into(), value: wide(rng) as i64 },
            None => ActionKind::SetStrategy { id: "bogus".into() },
        },
        _ => match spec.faults.get(rng.below(spec.faults.len().max(1) as u64) as usize) {
            Some(f) => ActionKind::Fault(Fault::Custom {
                id: f.id.into(),
                node: if rng.below(2) == 0 { None } else { Some(node) },
                value: wide(rng) as i64,
            }),
            None => ActionKind::SetStrategy { id: spec.strategies[0].id.into() },
        },
    };
    Action { at, kind }
}

/// What opening a fuzzed link did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// It ran; `repairs` problems were reported (each ignored or clamped).
    Ran { repairs: usize },
    /// It was refused with this error (its variant name).
    Refused(String),
}

/// What opening a link must never do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkFinding {
    /// Parsing, building or running it panicked.
    Panic(String),
    /// A message a user could not act on: empty, or printing Rust's debug form.
    Unclear(String),
    /// A fatal error came back as a repair, or a repair as fatal.
    Misfiled(String),
    /// The link the page writes back after repairs does not read back cleanly as the same run.
    NotClean(String),
}

/// Events a link that opens is run for: enough to reach its first timers and faults.
pub const RUN_EVENTS: u64 = 2_000;

/// Opens `link` the way the page does (read it leniently, build the run, run it a little),
/// and judges what happened.
pub fn try_link(link: &str) -> Result<Opened, LinkFinding> {
    let caught = catch_unwind(AssertUnwindSafe(|| open_link(link)));
    match caught {
        Ok(judged) => judged,
        Err(p) => Err(LinkFinding::Panic(crate::panic_text(p.as_ref()))),
    }
}

/// A message a user can act on: some words, no Rust debug formatting.
fn clear(e: &RecipeError) -> Result<(), LinkFinding> {
    let text = e.to_string();
    if text.len() < 12 || text.contains("Some(") || text.contains(" { ") {
        return Err(LinkFinding::Unclear(format!("{e:?} reads `{text}`")));
    }
    Ok(())
}

fn variant(e: &RecipeError) -> String {
    format!("{e:?}").split([' ', '{', '(']).next().unwrap_or("").to_string()
}

fn open_link(link: &str) -> Result<Opened, LinkFinding> {
    let parsed = match Recipe::from_url(link, find) {
        Err(e) => {
            clear(&e)?;
            if !e.is_fatal() {
                return Err(LinkFinding::Misfiled(format!("{e:?} refused the link but is a repair")));
            }
            return Ok(Opened::Refused(variant(&e)));
        }
        Ok(p) => p,
    };
    for e in &parsed.problems {
        clear(e)?;
        if e.is_fatal() {
            return Err(LinkFinding::Misfiled(format!("{e:?} is fatal but the link was read")));
        }
    }
    let (mut run, more) = open(parsed.spec, &parsed.recipe);
    for e in &more {
        clear(e)?;
    }
    run.keep_trace(false);
    for _ in 0..RUN_EVENTS {
        if !run.step() {
            break;
        }
    }
    // What the page writes back to the address bar reads back as the same run, with no
    // problem left: a repaired link is a clean link.
    let again = run.recipe().to_query(parsed.spec);
    match Recipe::from_url_strict(&again, find) {
        Ok((back, _)) if back.to_query(parsed.spec) == again => {}
        Ok(_) => return Err(LinkFinding::NotClean(format!("`{again}` reads back as another recipe"))),
        Err(e) => return Err(LinkFinding::NotClean(format!("`{again}`: {e}"))),
    }
    Ok(Opened::Ran { repairs: parsed.problems.len() + more.len() })
}
