//! The panels around the canvas, all generated from the scenario's schema: strategy and
//! parameters, faults (global and per node), checks, the event log and the note.

use crate::scenario::Page;
use faultline_core::{
    ActionKind, Fault, NodeId, ParamSpec, Ppm, ScenarioSpec, Status, Target, Time, MICROS_PER_MS, MICROS_PER_S,
};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

pub fn controls(page: Page) -> impl IntoView {
    let spec = page.spec();
    let strategy = move || {
        page.slow.get();
        page.with(|m| m.strategy.clone()).unwrap_or_default()
    };
    let seed = move || {
        page.slow.get();
        page.with(|m| m.seed).unwrap_or_default()
    };
    view! {
        <section class="controls">
            <h2>"Strategy"</h2>
            <select class="strategy" aria-label="Strategy" on:change=move |ev| {
                page.act(ActionKind::SetStrategy { id: event_target_value(&ev) });
            }>
                {spec.strategies.iter().map(|s| {
                    let id = s.id;
                    let label = if s.naive { format!("⚠ {} (naive)", s.label) } else { format!("✓ {}", s.label) };
                    view! { <option value=id selected=move || strategy() == id title=s.help>{label}</option> }
                }).collect::<Vec<_>>()}
            </select>
            <p class="help">{move || spec.strategy(&strategy()).map(|s| s.help).unwrap_or_default()}</p>
            <h2>"Parameters"</h2>
            {spec.params.iter().map(|p| slider(page, p)).collect::<Vec<_>>()}
            <div class="seed">
                <label>"Seed "
                    <input type="number" min="0" prop:value=move || seed().to_string() aria-label="Seed"
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
    let value = move || {
        page.slow.get();
        let i = page.spec().params.iter().position(|q| q.id == p.id);
        page.with(|m| i.and_then(|i| m.params.get(i).copied())).flatten().unwrap_or(p.default)
    };
    // A setup parameter says before it is touched that moving it starts the run over.
    let (class, title) = if p.live {
        ("param", p.help.to_string())
    } else {
        ("param setup", format!("{} Read when the run is built: changing it restarts the run from 0.", p.help))
    };
    view! {
        <div class=class title=title>
            <label>
                <span class="param-label">{p.label}</span>
                {(!p.live).then(|| view! { <span class="restarts" aria-hidden="true">"↻ restarts"</span> })}
                <span class="param-value">{move || format!("{} {}", value(), p.unit)}</span>
                <input type="range" min=p.min.to_string() max=p.max.to_string() step=p.step.to_string()
                    aria-label=if p.live { p.label.to_string() } else { format!("{} (restarts the run)", p.label) }
                    prop:value=move || value().to_string()
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
                    value=f.value_default.to_string() aria-label=f.value_label />
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
    move || {
        let n = page.selected.get()?;
        page.slow.get();
        let (label, status) =
            page.with(|m| m.frame.nodes.get(n as usize).map(|x| (x.view.label.clone(), x.status))).flatten()?;
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
        page.slow.get();
        let statuses = page.with(|m| m.frame.checks.clone()).unwrap_or_default();
        let spec = page.spec();
        view! {
            <ul class="checks">
                {statuses.into_iter().map(|c| {
                    let help = spec.checks.iter().find(|s| s.id == c.id).map(|s| s.help).unwrap_or_default();
                    match c.violation {
                        None => view! { <li class="ok" title=help><span class="mark">"✓"</span>{c.label}</li> }.into_any(),
                        Some(v) => {
                            let (at, seq) = (v.at, v.trace_seq);
                            view! {
                                <li class="bad" title=help>
                                    <button class="violation" title="Jump to the first violation" on:click=move |_| {
                                        page.set_playing(false);
                                        page.seek(at);
                                        page.highlight.set(Some(seq + 1));
                                    }>
                                        <span class="mark">"✗"</span>{c.label}
                                        <span class="why">{format!(" — at {at}: {}", v.why)}</span>
                                    </button>
                                </li>
                            }.into_any()
                        }
                    }
                }).collect::<Vec<_>>()}
            </ul>
        }
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
        <ol class="log" node_ref=list on:scroll=on_scroll>{rows}</ol>
    }
}

pub fn note(spec: &'static ScenarioSpec) -> impl IntoView {
    let n = &spec.info.note;
    view! {
        <h2>"Try this"</h2>
        <ol class="try">{n.try_this.iter().map(|t| view! { <li>{*t}</li> }).collect::<Vec<_>>()}</ol>
        <dl class="note">
            <dt>"What can go wrong"</dt><dd>{n.what_can_go_wrong}</dd>
            <dt>"What you sacrifice"</dt><dd>{n.what_you_sacrifice}</dd>
            <dt>"What breaks at 10×"</dt><dd>{n.at_10x}</dd>
            <dt>"Real systems like this"</dt><dd>{n.resembles}</dd>
            <dt>"From the seed documents"</dt><dd>{spec.info.seeds.join(" · ")}</dd>
        </dl>
    }
}
