//! The panels around the canvas, all generated from the scenario's schema: strategy and
//! parameters, faults (global and per node), checks, the event log and the note.

use crate::scenario::Page;
use faultline_core::{
    ActionKind, CheckState, CheckStatus, Fault, NodeId, ParamSpec, Ppm, ScenarioSpec, Status, Target, Time,
    MICROS_PER_MS, MICROS_PER_S,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

pub fn controls(page: Page) -> impl IntoView {
    let spec = page.spec();
    // Memos, so the 4-a-second refresh of the slow parts rewrites a control only when its value
    // really changed: a seed half typed, or a slider held, is never reset under the user's hand.
    let strategy = Memo::new(move |_| {
        page.slow.get();
        page.with(|m| m.strategy.clone()).unwrap_or_default()
    });
    let seed = Memo::new(move |_| {
        page.slow.get();
        page.with(|m| m.seed).unwrap_or_default()
    });
    view! {
        <section class="controls">
            <h2>"Strategy"</h2>
            <select class="strategy" aria-label="Strategy" on:change=move |ev| {
                page.act(ActionKind::SetStrategy { id: event_target_value(&ev) });
            }>
                {spec.strategies.iter().map(|s| {
                    let id = s.id;
                    let label = if s.naive { format!("⚠ {} (naive)", s.label) } else { format!("✓ {}", s.label) };
                    view! { <option value=id selected=move || strategy.get() == id title=s.help>{label}</option> }
                }).collect::<Vec<_>>()}
            </select>
            <p class="help">{move || spec.strategy(&strategy.get()).map(|s| s.help).unwrap_or_default()}</p>
            <h2>"Parameters"</h2>
            {spec.params.iter().map(|p| slider(page, p)).collect::<Vec<_>>()}
            <div class="seed">
                <label>"Seed "
                    <input type="number" min="0" prop:value=move || seed.get().to_string() aria-label="Seed"
                        on:change=move |ev| {
                            match event_target_value(&ev).trim().parse::<u64>() {
                                Ok(s) => page.restart(Some(s), false),
                                Err(_) => page.toast.set(Some("a seed is a whole number from 0 to 2^64−1".into())),
                            }
                        } />
                </label>
                <button title="Same recipe, another seed" on:click=move |_| {
                    let s = (js_sys::Math::random() * 1e9) as u64;
                    page.restart(Some(s), false);
                }>"New seed"</button>
                <button title="Forget every fault and change you made" on:click=move |_| {
                    page.restart(None, true);
                }>"Reset"</button>
            </div>
        </section>
    }
}

fn slider(page: Page, p: &'static ParamSpec) -> impl IntoView {
    let value = Memo::new(move |_| {
        page.slow.get();
        let i = page.spec().params.iter().position(|q| q.id == p.id);
        page.with(|m| i.and_then(|i| m.params.get(i).copied())).flatten().unwrap_or(p.default)
    });
    // A setup parameter says before it is touched that moving it starts the run over.
    let (class, title) = if p.live {
        ("param", p.help.to_string())
    } else {
        ("param setup", format!("{} Read when the run is built: changing it restarts the run from 0.", p.help))
    };
    view! {
        <div class=class title=title data-param=p.id>
            <label>
                <span class="param-label">{p.label}</span>
                {(!p.live).then(|| view! { <span class="restarts" aria-hidden="true">"↻ restarts"</span> })}
                <span class="param-value">{move || format!("{} {}", value.get(), p.unit)}</span>
                <input type="range" min=p.min.to_string() max=p.max.to_string() step=p.step.to_string()
                    aria-label=if p.live { p.label.to_string() } else { format!("{} (restarts the run)", p.label) }
                    prop:value=move || value.get().to_string()
                    on:change=move |ev| {
                        if let Ok(v) = event_target_value(&ev).parse::<i64>() {
                            page.set_param(p, p.clamp(v));
                        }
                    } />
            </label>
            <p class="help">{p.help}</p>
        </div>
    }
}

fn value_of(id: &str) -> Option<i64> {
    let doc = web_sys::window()?.document()?;
    let el = doc.get_element_by_id(id)?;
    let input: web_sys::HtmlInputElement = wasm_bindgen::JsCast::dyn_into(el).ok()?;
    input.value().trim().parse().ok()
}

fn custom_fault_row(page: Page, f: &'static faultline_core::FaultSpec, node: Option<NodeId>) -> impl IntoView {
    let input_id = format!("fault-{}-{}", f.id, node.map_or("all".to_string(), |n| n.to_string()));
    let has_value = f.value_min != f.value_max;
    let id_for_click = input_id.clone();
    view! {
        <div class="fault-row" title=f.help>
            <button on:click=move |_| {
                let raw = value_of(&id_for_click).unwrap_or(f.value_default);
                let value = raw.clamp(f.value_min, f.value_max);
                if value != raw {
                    page.toast.set(Some(format!("{} takes {}..={}; {value} was used", f.label, f.value_min, f.value_max)));
                }
                page.act(ActionKind::Fault(Fault::Custom { id: f.id.to_string(), node, value }));
            }>{f.label}</button>
            {has_value.then(|| view! {
                <input id=input_id type="number" min=f.value_min.to_string() max=f.value_max.to_string()
                    value=f.value_default.to_string() aria-label=format!("{} {}", f.label, f.value_label).trim_end().to_string() />
                <span class="unit">{f.value_label}</span>
            })}
        </div>
    }
}

pub fn faults(page: Page) -> impl IntoView {
    let spec = page.spec();
    let nodes = page.with(|m| m.frame.nodes.len() as NodeId).unwrap_or_default();
    let half: Vec<NodeId> = (0..nodes / 2).collect();
    view! {
        <section class="faults">
            <h2>"Break it"</h2>
            <p class="help">"Click a node in the picture to crash, pause or cut it off. Everything you do is recorded in the link."</p>
            <div class="fault-grid">
                <button on:click=move |_| page.act(ActionKind::Fault(Fault::LossBurst { loss: Ppm::from_percent(50), dur: 3 * MICROS_PER_S }))>"Lose 50% of messages (3 s)"</button>
                <button on:click=move |_| page.act(ActionKind::Fault(Fault::LatencySpike { extra: 200 * MICROS_PER_MS, dur: 3 * MICROS_PER_S }))>"Latency +200 ms (3 s)"</button>
                <button on:click=move |_| page.act(ActionKind::Fault(Fault::Partition { a: half.clone(), b: None, one_way: false }))>"Split the network in two"</button>
                <button on:click=move |_| page.act(ActionKind::Fault(Fault::Heal))>"Heal partitions"</button>
            </div>
            {spec.faults.iter().filter(|f| f.target == Target::Global).map(|f| custom_fault_row(page, f, None)).collect::<Vec<_>>()}
        </section>
    }
}

/// Actions for the node selected on the canvas.
pub fn node_popover(page: Page) -> impl IntoView {
    // Rebuilt only when the node, its name or its health changes, so a fault value being typed
    // in it survives the periodic refresh.
    let head = Memo::new(move |_| {
        let n = page.selected.get()?;
        page.slow.get();
        page.with(|m| m.frame.nodes.get(n as usize).map(|x| (n, x.view.label.clone(), x.status))).flatten()
    });
    move || {
        let (n, label, status) = head.get()?;
        let spec = page.spec();
        let act = move |f: Fault| page.act(ActionKind::Fault(f));
        Some(view! {
            <div class="popover" role="dialog" aria-label=format!("Faults for {label}")>
                <div class="popover-head"><strong>{label.clone()}</strong>
                    <span class="status">{format!("{status:?}")}</span>
                    <button class="close" aria-label="Close" on:click=move |_| page.selected.set(None)>"×"</button>
                </div>
                <div class="fault-grid">
                    {if status == Status::Crashed {
                        view! { <button on:click=move |_| act(Fault::Restart { node: n })>"Restart"</button> }.into_any()
                    } else {
                        view! { <button class="danger" on:click=move |_| act(Fault::Crash { node: n })>"Crash"</button> }.into_any()
                    }}
                    <button on:click=move |_| act(Fault::Pause { node: n, dur: 2 * MICROS_PER_S })>"Pause 2 s (GC)"</button>
                    <button on:click=move |_| act(Fault::Isolate { node: n, one_way: false })>"Cut it off"</button>
                    <button on:click=move |_| act(Fault::ClockSkew { node: n, offset: MICROS_PER_S as i64 })>"Clock +1 s"</button>
                    <button on:click=move |_| act(Fault::ClockDrift { node: n, ppm: -100_000 })>"Clock runs 10% slow"</button>
                    <button on:click=move |_| act(Fault::SlowDisk { node: n, factor: 10, dur: 5 * MICROS_PER_S })>"Slow disk ×10 (5 s)"</button>
                </div>
                {spec.faults.iter().filter(|f| f.target == Target::Node).map(|f| custom_fault_row(page, f, Some(n))).collect::<Vec<_>>()}
            </div>
        })
    }
}

pub fn checks(page: Page) -> impl IntoView {
    move || {
        page.tick.get();
        let spec = page.spec();
        let (statuses, now, strategies) = page
            .with(|m| (m.frame.checks.clone(), m.now, m.full.strategies.clone()))
            .unwrap_or_else(|| (Vec::new(), Time::ZERO, Vec::new()));
        view! {
            <ul class="checks">
                {statuses.into_iter().map(|c| {
                    let help = spec.checks.iter().find(|s| s.id == c.id).map(|s| s.help).unwrap_or_default();
                    let story = check_story(&c, now, &strategies, spec);
                    let Some(first) = c.violation else {
                        return view! { <li class="ok" title=help><span class="mark">"✓"</span>{c.label}</li> }.into_any();
                    };
                    let (at, seq) = (first.at, first.trace_seq);
                    let jump = move |_| {
                        page.set_playing(false);
                        page.seek(at);
                        page.highlight.set(Some(seq + 1));
                    };
                    let (class, mark) = if story.violated { ("bad", "✗") } else { ("recovered", "✓") };
                    view! {
                        <li class=class title=help>
                            <span class="mark">{mark}</span>{c.label}
                            <span class="story">{format!(" — {}", story.text)}</span>
                            <button class="violation" title=format!("Jump to the first violation: {}", first.why) on:click=jump>
                                {format!("⇤ first at {:.3} s", at.as_secs_f64())}
                            </button>
                        </li>
                    }.into_any()
                }).collect::<Vec<_>>()}
            </ul>
        }
    }
}

/// A note's text with its inline Markdown shown as meant: `code` and *emphasis* (as classed
/// spans: one element type keeps the page's code small).
fn inline(text: &'static str) -> impl IntoView {
    spans(text).into_iter().map(|(style, t)| inline_span(style, t)).collect::<Vec<_>>()
}

fn inline_span(style: Span, t: &'static str) -> impl IntoView {
    let class = match style {
        Span::Code => "md-code",
        Span::Em => "md-em",
        Span::Plain => "",
    };
    view! { <span class=class>{t}</span> }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Span {
    Plain,
    Code,
    Em,
}

/// Splits inline Markdown: backticks make code; a `*` after a space (or at the start) and
/// before a letter opens emphasis, closed by the next `*` (so `2 * 3` stays as it is).
fn spans(text: &'static str) -> Vec<(Span, &'static str)> {
    let mut out = Vec::new();
    for (i, part) in text.split('`').enumerate() {
        if i % 2 == 1 {
            out.push((Span::Code, part));
            continue;
        }
        let mut rest = part;
        // Bytes: every delimiter is ASCII, so an index found here is a char boundary.
        while let Some(open) = (0..rest.len()).find(|&k| {
            let b = rest.as_bytes();
            b[k] == b'*'
                && (k == 0 || b[k - 1].is_ascii_whitespace() || b[k - 1] == b'(')
                && b.get(k + 1).is_some_and(|n| n.is_ascii_alphanumeric())
        }) {
            let Some(len) = rest[open + 1..].find('*') else { break };
            out.push((Span::Plain, &rest[..open]));
            out.push((Span::Em, &rest[open + 1..open + 1 + len]));
            rest = &rest[open + 2 + len..];
        }
        out.push((Span::Plain, rest));
    }
    out.retain(|(_, t)| !t.is_empty());
    out
}

/// What a check's line says beside its label: whether it fails now, and how it got there.
#[derive(Debug, PartialEq)]
pub struct Story {
    pub violated: bool,
    pub text: String,
}

fn secs(t: Time) -> String {
    format!("{:.1} s", t.as_secs_f64())
}

/// Tells a check's bands as a sentence, naming the strategies in force (`strategies`: the one
/// in force from each time on): "violated under Unbounded since 11.9 s: why", or "holding since
/// the switch to Shed + 2.7 s; violated 11.9–17.2 s under Unbounded".
pub fn check_story(c: &CheckStatus, now: Time, strategies: &[(u64, String)], spec: &ScenarioSpec) -> Story {
    let label = |id: &str| spec.strategies.iter().find(|s| s.id == id).map_or(id.to_string(), |s| s.label.to_string());
    let in_force = |t: Time| strategies.iter().take_while(|(at, _)| *at <= t.micros()).last().map(|(_, id)| label(id));
    let under = |t: Time| in_force(t).map(|s| format!(" under {s}")).unwrap_or_default();
    let earlier = match c.bands.len() {
        0 | 1 => String::new(),
        2 => " (violated once before)".to_string(),
        n => format!(" (violated {} times before)", n - 1),
    };
    match (c.state(now), c.bands.last()) {
        (CheckState::Violated { since }, _) => Story {
            violated: true,
            text: format!(
                "violated{} since {}: {}{earlier}",
                under(since),
                secs(since),
                c.latest_why.as_deref().unwrap_or("")
            ),
        },
        (CheckState::Recovered { since }, Some(b)) => {
            // A switch made while it was violated is what fixed it (or at least came before the fix).
            let switch = strategies.iter().rfind(|(at, _)| *at > b.from.micros() && *at <= since.micros());
            let holding = match switch {
                Some((at, id)) => {
                    format!("holding since the switch to {} + {}", label(id), secs(Time(since.micros() - at)))
                }
                None => format!("holding since {}", secs(since)),
            };
            let text =
                format!("{holding}; violated {:.1}–{}{}{earlier}", b.from.as_secs_f64(), secs(since), under(b.from));
            Story { violated: false, text }
        }
        _ => Story { violated: false, text: String::new() },
    }
}

const KINDS: [&str; 10] =
    ["sent", "delivered", "dropped", "timer", "crashed", "restarted", "fault", "action", "note", "violation"];

/// How close (in pixels) to the bottom of the log counts as being at its newest entry.
const AT_BOTTOM: i32 = 8;

pub fn event_log(page: Page) -> impl IntoView {
    let (node_filter, kind_filter) = (page.log_node, page.log_kind);
    // The log follows its newest entry (at the bottom) unless the reader has scrolled up to
    // read; scrolling back down to the bottom follows again.
    let list = NodeRef::<leptos::html::Ol>::new();
    let follow = StoredValue::new(true);
    let centring = StoredValue::new(false);
    let on_scroll = move |_| {
        if let Some(el) = list.get_untracked() {
            follow.set_value(el.scroll_top() + el.client_height() >= el.scroll_height() - AT_BOTTOM);
        }
    };
    Effect::new(move || {
        page.slow.track();
        // After this update's rows are in the document.
        request_animation_frame(move || {
            if let Some(el) = list.get_untracked().filter(|_| follow.get_value() && !centring.get_value()) {
                el.set_scroll_top(el.scroll_height());
            }
        });
    });
    // A filter changed: the worker sends the entries that pass it.
    Effect::new(move |first: Option<()>| {
        node_filter.track();
        kind_filter.track();
        if first.is_some() {
            page.refresh_slow();
        }
    });
    // Pressing play means watching the newest events again.
    Effect::new(move || {
        if page.playing.get() {
            follow.set_value(true);
        }
    });
    // A highlighted entry (a check's first violation, jumped to) is brought to the middle of
    // the view; the log stays there until scrolled back to the bottom.
    Effect::new(move || {
        page.slow.track();
        if page.highlight.get().is_none() {
            return;
        }
        centring.set_value(true);
        request_animation_frame(move || {
            centring.set_value(false);
            let Some(el) = list.get_untracked() else { return };
            let lit = el.query_selector("li.highlight").ok().flatten();
            if let Some(li) = lit.and_then(|li| li.dyn_into::<web_sys::HtmlElement>().ok()) {
                follow.set_value(false);
                el.set_scroll_top(li.offset_top() - (el.client_height() - li.offset_height()) / 2);
            }
        });
    });
    let names = move || page.with(|m| m.frame.nodes.iter().map(|n| n.view.label.clone()).collect::<Vec<_>>());
    let rows = move || {
        page.slow.get();
        let hl = page.highlight.get();
        let rows = page.with(|m| m.full.log.clone()).unwrap_or_default();
        rows.into_iter()
            .map(|e| {
                let at = Time(e.at);
                let lit = hl == Some(e.seq);
                // One line per entry; the whole of a long one on hover (or scrolled to).
                let title = e.text.clone();
                view! {
                    <li class=e.kind class:highlight=lit title=title on:click=move |_| { page.set_playing(false); page.seek(at); }>
                        <span class="t">{format!("{:.6}", at.as_secs_f64())}</span>
                        <span class="what">{e.text}</span>
                    </li>
                }
            })
            .collect::<Vec<_>>()
    };
    view! {
        <div class="log-filters">
            <select aria-label="Filter by node" on:change=move |ev| node_filter.set(event_target_value(&ev).parse().ok())>
                <option value="">"All nodes"</option>
                {names().unwrap_or_default().into_iter().enumerate().take(200).map(|(i, n)| view! { <option value=i.to_string()>{n}</option> }).collect::<Vec<_>>()}
            </select>
            <select aria-label="Filter by kind" on:change=move |ev| kind_filter.set(event_target_value(&ev))>
                <option value="">"All kinds"</option>
                {KINDS.iter().map(|k| view! { <option value=*k>{*k}</option> }).collect::<Vec<_>>()}
            </select>
            <span class="help">"Newest last; click an entry to jump there."</span>
        </div>
        <ol class="log" tabindex="0" aria-label="Event log" node_ref=list on:scroll=on_scroll>{rows}</ol>
    }
}

/// A try-this step: its inline Markdown rendered, and each strategy or parameter it names in
/// `code` a button that applies it (switch to that strategy; go to that parameter's slider).
fn step(page: Page, text: &'static str) -> impl IntoView {
    let spec = page.spec();
    spans(text)
        .into_iter()
        .map(|(style, t)| {
            if style == Span::Code && spec.strategy(t).is_some() {
                let apply = move |_| page.act(ActionKind::SetStrategy { id: t.to_string() });
                return view! { <button class="md-code apply" title=format!("Switch to {t} now") on:click=apply>{t}</button> }
                    .into_any();
            }
            if style == Span::Code && spec.params.iter().any(|p| p.id == t) {
                let go = move |_| { crate::access::focus(&format!(".param[data-param='{t}'] input")); };
                return view! { <button class="md-code apply" title=format!("Go to the {t} slider") on:click=go>{t}</button> }
                    .into_any();
            }
            inline_span(style, t).into_any()
        })
        .collect::<Vec<_>>()
}

pub fn note(page: Page) -> impl IntoView {
    let spec = page.spec();
    let n = &spec.info.note;
    view! {
        <h2>"Try this"</h2>
        <ol class="try">{n.try_this.iter().map(|t| view! { <li>{step(page, t)}</li> }).collect::<Vec<_>>()}</ol>
        <dl class="note">
            <dt>"What can go wrong"</dt><dd>{inline(n.what_can_go_wrong)}</dd>
            <dt>"What you sacrifice"</dt><dd>{inline(n.what_you_sacrifice)}</dd>
            <dt>"What breaks at 10×"</dt><dd>{inline(n.at_10x)}</dd>
            <dt>"Real systems like this"</dt><dd>{inline(n.resembles)}</dd>
            <dt>"From the seed documents"</dt><dd>{spec.info.seeds.join(" · ")}</dd>
        </dl>
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Band;

    fn band(from_s: u64, to_s: Option<u64>) -> Band {
        let (from, to) = (Time::from_secs(from_s), to_s.map(Time::from_secs));
        Band { from, to, from_seq: 0, to_seq: to.map(|_| 1) }
    }

    fn status(bands: Vec<Band>) -> CheckStatus {
        let violation =
            bands.first().map(|b| faultline_core::Violation { at: b.from, why: "first".into(), trace_seq: 0 });
        CheckStatus { id: "c", label: "C", violation, bands, latest_why: Some("queue 120 > 100".into()) }
    }

    #[test]
    fn notes_show_inline_code_and_emphasis() {
        use Span::*;
        assert_eq!(
            spans("Play `none`: it *should* hold"),
            [(Plain, "Play "), (Code, "none"), (Plain, ": it "), (Em, "should"), (Plain, " hold")]
        );
        assert_eq!(spans("2 * 3 and a*b stay; *Release It!*"), [(Plain, "2 * 3 and a*b stay; "), (Em, "Release It!")]);
        assert_eq!(spans("an unclosed `tick and *star"), [(Plain, "an unclosed "), (Code, "tick and *star")]);
        assert_eq!(spans(""), []);
    }

    #[test]
    fn a_check_story_names_the_strategy_and_the_switch_that_fixed_it() {
        let spec = toy_spec();
        let switched = vec![(0, "unbounded".to_string()), (14_500_000, "shed".to_string())];
        // Violated and still failing, under the naive strategy.
        let open = status(vec![band(12, None)]);
        assert_eq!(
            check_story(&open, Time::from_secs(13), &switched[..1], spec),
            Story { violated: true, text: "violated under Unbounded since 12.0 s: queue 120 > 100".into() }
        );
        // Held again at 17.2 s after the switch at 14.5 s; told once it has held a second.
        let mut fixed = status(vec![band(12, None)]);
        fixed.held(Time::from_ms(17_200), 9);
        assert!(check_story(&fixed, Time::from_ms(17_900), &switched, spec).violated);
        assert_eq!(
            check_story(&fixed, Time::from_secs(20), &switched, spec).text,
            "holding since the switch to Shed + 2.7 s; violated 12.0–17.2 s under Unbounded"
        );
        // Without a switch in the band, only the time; earlier bands are counted.
        let twice = status(vec![band(2, Some(3)), band(12, Some(17))]);
        assert_eq!(
            check_story(&twice, Time::from_secs(30), &switched[..1], spec).text,
            "holding since 17.0 s; violated 12.0–17.0 s under Unbounded (violated once before)"
        );
        // Violated again after the switch: under the new strategy.
        let again = status(vec![band(12, Some(17)), band(20, None)]);
        assert!(check_story(&again, Time::from_secs(21), &switched, spec)
            .text
            .starts_with("violated under Shed since 20.0 s"));
        assert_eq!(check_story(&status(vec![]), Time::from_secs(5), &switched, spec).text, "");
    }

    fn toy_spec() -> &'static ScenarioSpec {
        use faultline_core::*;
        static SPEC: ScenarioSpec = ScenarioSpec {
            strategies: &[StrategySpec::naive("unbounded", "Unbounded", ""), StrategySpec::fixed("shed", "Shed", "")],
            ..ScenarioSpec::bare("toy", never)
        };
        fn never(_: &Setup) -> Box<dyn Run> {
            unreachable!("the toy spec is never run")
        }
        &SPEC
    }
}
