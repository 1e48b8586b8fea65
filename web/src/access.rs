//! The canvas without a mouse or without eyes: nodes chosen with the keyboard, the picture as text, check changes announced, and the keys listed.

use crate::panels::check_story;
use crate::scenario::{wall_ms, Page};
use faultline_core::{CheckState, Frame, Mark, NodeFrame, NodeId, Status};
use leptos::prelude::*;
use wasm_bindgen::JsCast;

/// A node as a sentence, with what others say of it: "instance 3 (service): up; load 4 of 36; healthy; ejected".
pub fn describe(n: &NodeFrame, about: &[&Mark]) -> String {
    let status = match n.status {
        Status::Up => "up",
        Status::Crashed => "crashed",
        Status::Paused => "paused",
    };
    let mut s = format!("{} ({}): {status}", n.view.label, format!("{:?}", n.view.kind).to_ascii_lowercase());
    if n.cut_off {
        s.push_str(", cut off by a partition");
    }
    for g in &n.view.gauges {
        s.push_str(&format!("; {} {} of {}", g.label, g.value, g.max));
    }
    for b in &n.view.badges {
        s.push_str("; ");
        s.push_str(&b.text);
    }
    for m in about {
        s.push_str("; ");
        s.push_str(&m.text);
    }
    s
}

/// What the other nodes of `frame` say about node `n` (its marks).
pub fn marks_on(frame: &Frame, n: NodeId) -> Vec<&Mark> {
    frame.nodes.iter().flat_map(|o| &o.view.marks).filter(|m| m.node == n).collect()
}

/// Keys on the focused canvas: arrows (Home, End) choose a node, Enter opens its faults,
/// Escape closes them. Handled keys stop here, so the page's arrows (step) do not also act.
pub fn canvas_key(page: Page, ev: web_sys::KeyboardEvent) {
    let count = page.with(|m| m.frame.nodes.len() as NodeId).unwrap_or(0);
    if count == 0 {
        return;
    }
    let at = page.focused.get_untracked();
    let next = match ev.key().as_str() {
        "ArrowRight" | "ArrowDown" => Some(at.map_or(0, |n| (n + 1) % count)),
        "ArrowLeft" | "ArrowUp" => Some(at.map_or(count - 1, |n| (n + count - 1) % count)),
        "Home" => Some(0),
        "End" => Some(count - 1),
        "Enter" => {
            let n = at.unwrap_or(0);
            page.focused.set(Some(n));
            page.selected.set(Some(n));
            page.draw();
            // The popover is in the document after this frame: its first action takes the focus.
            focus_soon(".popover .fault-grid button");
            None
        }
        // With the keys sheet open, Escape is the page's: it closes the sheet, even before
        // the sheet has taken the focus from the picture.
        "Escape" if page.keys_open.get_untracked() => return,
        "Escape" => {
            page.selected.set(None);
            None
        }
        _ => return,
    };
    ev.prevent_default();
    ev.stop_propagation();
    if let Some(n) = next {
        page.focused.set(Some(n));
        page.draw();
        let text = page.with(|m| m.frame.nodes.get(n as usize).map(|node| describe(node, &marks_on(&m.frame, n))));
        if let Some(text) = text.flatten() {
            page.say.set(text);
        }
    }
}

/// The canvas's own keys, and a redraw when it gains or loses the focus (its focus ring).
/// Listeners added to the element itself: they go with it when the page is left.
pub fn listen(page: Page) {
    let Some(canvas) = page.canvas.get_untracked() else { return };
    let keys = wasm_bindgen::closure::Closure::<dyn Fn(web_sys::KeyboardEvent)>::new(move |ev| canvas_key(page, ev));
    let redraw = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || page.draw());
    let _ = canvas.add_event_listener_with_callback("keydown", keys.as_ref().unchecked_ref());
    for event in ["focus", "blur"] {
        let _ = canvas.add_event_listener_with_callback(event, redraw.as_ref().unchecked_ref());
    }
    keys.forget();
    redraw.forget();
}

/// The transport's buttons for the text view and the keys sheet.
pub fn buttons(page: Page) -> impl IntoView {
    view! {
        <span class="aids">
            <button class="text-toggle" aria-pressed=move || page.text_view.get().to_string()
                on:click=move |_| page.text_view.update(|on| *on = !*on)>"Text view"</button>
            <button class="keys" title="Keyboard shortcuts (?)" on:click=move |_| page.keys_open.update(|o| *o = !*o)>"Keys ?"</button>
        </span>
    }
}

/// Moves the keyboard focus to the first element matching `selector`; false when there is none.
pub fn focus(selector: &str) -> bool {
    let el = web_sys::window().and_then(|w| w.document()).and_then(|d| d.query_selector(selector).ok().flatten());
    match el.and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok()) {
        Some(el) => el.focus().is_ok(),
        None => false,
    }
}

/// Frames `focus_soon` waits for its element before it gives up (half a second at 60 Hz).
const FOCUS_WAIT_FRAMES: u32 = 30;

/// Moves the focus to `selector` once it is in the document: a panel just opened is drawn in a
/// later frame, and on a busy machine not always the next one, so the focus is tried each frame.
pub fn focus_soon(selector: &'static str) {
    fn attempt(selector: &'static str, left: u32) {
        request_animation_frame(move || {
            if !focus(selector) && left > 0 {
                attempt(selector, left - 1);
            }
        });
    }
    attempt(selector, FOCUS_WAIT_FRAMES);
}

/// The canvas has the keyboard focus (its focus ring is drawn then only).
pub fn canvas_focused() -> bool {
    let doc = web_sys::window().and_then(|w| w.document());
    doc.and_then(|d| d.active_element()).is_some_and(|e| e.class_list().contains("sim"))
}

/// Clients drawn as dots in a crowd are told as counts, not one line each.
fn crowd_line(frame: &Frame, dots: &[bool]) -> Option<String> {
    let crowd: Vec<&NodeFrame> = frame.nodes.iter().zip(dots).filter(|(_, d)| **d).map(|(n, _)| n).collect();
    if crowd.is_empty() {
        return None;
    }
    let down = crowd.iter().filter(|n| n.status != Status::Up).count();
    Some(format!("{} clients drawn as dots: {} up, {down} crashed or paused", crowd.len(), crowd.len() - down))
}

/// `text` made safe to put into HTML, as text or as a quoted attribute's value. Every string
/// that reaches `inner_html` goes through here (tests/tidy.rs lists the sites).
pub(crate) fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// `items` as an HTML list.
fn list(items: impl IntoIterator<Item = String>) -> String {
    let items: String = items.into_iter().map(|i| format!("<li>{}</li>", escape(&i))).collect();
    format!("<ul>{items}</ul>")
}

/// The picture as text (HTML): the time and strategy, every node with its state, gauges and
/// badges, the messages in flight by kind, and the checks.
fn picture_as_text(page: Page) -> Option<String> {
    let spec = page.spec();
    let dots = page.dots();
    page.with(|m| {
        let mut nodes: Vec<String> = m
            .frame
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !dots.get(*i).copied().unwrap_or(false))
            .map(|(_, n)| describe(n, &marks_on(&m.frame, n.id)))
            .collect();
        nodes.extend(crowd_line(&m.frame, &dots));
        let mut kinds: Vec<(&str, usize, usize)> = Vec::new();
        for msg in &m.frame.messages {
            match kinds.iter_mut().find(|k| k.0 == msg.kind) {
                Some(k) => (k.1, k.2) = (k.1 + 1, k.2 + msg.lost as usize),
                None => kinds.push((msg.kind, 1, msg.lost as usize)),
            }
        }
        let flying: Vec<String> = kinds
            .iter()
            .map(|(k, n, lost)| if *lost > 0 { format!("{n} {k} ({lost} lost)") } else { format!("{n} {k}") })
            .collect();
        let checks = m.frame.checks.iter().map(|c| match c.violation {
            None => format!("{}: holding", c.label),
            Some(_) => format!("{}: {}", c.label, check_story(c, m.now, &m.full.strategies, spec).text),
        });
        format!(
            "<p>{}</p><h3>Nodes</h3>{}<h3>Messages in flight</h3><p>{}</p><h3>Checks</h3>{}",
            escape(&format!(
                "At {:.1} s of {:.0} s, strategy {}.",
                m.now.as_secs_f64(),
                m.until.as_secs_f64(),
                m.strategy
            )),
            list(nodes),
            if flying.is_empty() { "none".to_string() } else { escape(&flying.join(", ")) },
            list(checks),
        )
    })
}

/// The picture as text. Screen readers always have it (the canvas points to it); the "Text
/// view" button shows it. It follows the run calmly: once a second while playing, and at once
/// when the run comes to rest. (Written as HTML: a list re-rendered whole once a second costs
/// the page far less code as a string than as reactive views.)
pub fn text_view(page: Page) -> impl IntoView {
    view! {
        <section id="canvas-text" class=move || if page.text_view.get() { "text-view" } else { "text-view sr-only" }
            aria-label="The simulation as text">
            <div inner_html=move || { page.calm.get(); picture_as_text(page).unwrap_or_default() }></div>
            <div class="sr-only" role="status" aria-live="polite">{move || page.say.get()}</div>
        </section>
    }
}

/// After each status: when the text view is due (once a second while the run moves, at once
/// when it comes to rest), and what the live region should say of checks that changed state.
pub fn follow(page: Page, moving: bool) {
    let second = (wall_ms() / 1000.0) as u64;
    if !moving || page.calm.get_untracked() != second {
        page.calm.set(if moving { second } else { page.calm.get_untracked().wrapping_add(1) | 1 << 40 });
    }
    let Some(states) = page.with(|m| {
        m.frame
            .checks
            .iter()
            .map(|c| (c.label, matches!(c.state(m.now), CheckState::Violated { .. }), c.latest_why.clone()))
            .collect::<Vec<_>>()
    }) else {
        return;
    };
    let mut news = Vec::new();
    page.check_states.update_value(|was| {
        for (i, (label, bad, why)) in states.iter().enumerate() {
            match (was.get(i).copied().unwrap_or(false), *bad) {
                (false, true) => news.push(format!("Check {label} is violated: {}", why.clone().unwrap_or_default())),
                (true, false) => news.push(format!("Check {label} holds again")),
                _ => {}
            }
        }
        *was = states.iter().map(|s| s.1).collect();
    });
    if !news.is_empty() {
        page.say.set(news.join(". "));
    }
}

const KEYS: &[(&str, &str)] = &[
    ("Space", "play or pause"),
    ("← →", "step one event back or forward"),
    ("1 – 9", "speed, from slowest to as fast as possible"),
    ("Tab", "move between the controls, the picture and the panels"),
    ("← → ↑ ↓, Home, End (in the picture)", "choose a node"),
    ("Enter (in the picture)", "open the chosen node's faults"),
    ("Escape", "close the node's faults, or this sheet"),
    ("?", "show or hide this sheet"),
];

/// The "?" sheet: every key the page answers to.
pub fn keys_sheet(page: Page) -> impl IntoView {
    move || {
        page.keys_open.get().then(|| {
            focus_soon(".keys-sheet button");
            let keys: String = KEYS.iter().map(|(k, what)| format!("<dt><kbd>{}</kbd></dt><dd>{what}</dd>", escape(k))).collect();
            view! {
                <div class="keys-sheet popover" role="dialog" aria-label="Keyboard shortcuts">
                    <div class="popover-head"><strong>"Keyboard shortcuts"</strong>
                        <button class="close" aria-label="Close" on:click=move |_| page.keys_open.set(false)>"×"</button>
                    </div>
                    <dl inner_html=keys></dl>
                </div>
            }
        })
    }
}
