//! The frames bench page (`#/bench/frames?n=5000`): animates a synthetic frame with `n`
//! messages in flight through the real renderer for a few seconds and publishes frame-time
//! percentiles on `window.__faultline_frames` for the benchmark script to read.

use crate::canvas::{self, Theme};
use crate::remote::{Conn, Heard};
use crate::scenario::wall_ms;
use faultline_core::{Frame, Layout, MsgFrame, NodeFrame, NodeKind, NodeView, Status, Time};
use faultline_protocol::{BenchRow, Command, Reply};
use leptos::html::Canvas;
use leptos::prelude::*;

/// A frame with a tiered topology and `n` messages spread over their flight.
pub fn synthetic(n: usize) -> Frame {
    let mut nodes = Vec::new();
    for (tier, count, kind) in [(0u8, 60, NodeKind::Client), (1, 8, NodeKind::Service), (2, 4, NodeKind::Database)] {
        for i in 0..count {
            nodes.push(NodeFrame {
                id: nodes.len() as u32,
                view: NodeView::new(kind, tier, format!("n{i}")).gauge("load", i as i64 % 10, 10),
                status: Status::Up,
                cut_off: false,
                clock_offset: 0,
            });
        }
    }
    let mut x: u64 = 88172645463325252;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let total = nodes.len() as u64;
    let messages = (0..n)
        .map(|_| {
            let sent = next() % 1_000_000;
            MsgFrame {
                from: (next() % total) as u32,
                to: (next() % total) as u32,
                sent: Time(sent),
                deliver: Time(sent + 50_000 + next() % 1_000_000),
                kind: ["request", "reply", "ack"][(next() % 3) as usize],
                lost: next() % 50 == 0,
            }
        })
        .collect();
    Frame {
        now: Time(1_000_000),
        nodes,
        messages,
        in_flight: n,
        cuts: Vec::new(),
        checks: Vec::new(),
        lost_fade: 400_000,
        recent: Vec::new(),
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

#[component]
pub fn FramesBench(n: usize) -> impl IntoView {
    let canvas_ref = NodeRef::<Canvas>::new();
    let frame = StoredValue::new_local(synthetic(n));
    let times = StoredValue::new_local(Vec::<f64>::new());
    let work = StoredValue::new_local(Vec::<f64>::new());
    let result = RwSignal::new(String::from("running…"));
    let theme = StoredValue::new_local(Theme::read());
    let start = wall_ms();
    fn tick(
        canvas_ref: NodeRef<Canvas>,
        frame: StoredValue<Frame, LocalStorage>,
        times: StoredValue<Vec<f64>, LocalStorage>,
        work: StoredValue<Vec<f64>, LocalStorage>,
        theme: StoredValue<Theme, LocalStorage>,
        result: RwSignal<String>,
        start: f64,
        last: f64,
    ) {
        request_animation_frame(move || {
            let now = wall_ms();
            if last > 0.0 {
                times.update_value(|t| t.push(now - last));
            }
            if let Some(el) = canvas_ref.get_untracked() {
                frame.update_value(|f| {
                    f.now = Time(f.now.micros() + 16_000);
                    // Keep all n in flight: a delivered message is sent again over the same span.
                    for m in f.messages.iter_mut().filter(|m| m.deliver <= f.now) {
                        let span = m.deliver.micros() - m.sent.micros();
                        (m.sent, m.deliver) = (f.now, Time(f.now.micros() + span));
                    }
                });
                let drawing = wall_ms();
                frame.with_value(|f| theme.with_value(|t| canvas::draw(&el, f, Layout::Tiers, None, t, 300_000.0)));
                // Reading a pixel back makes the browser rasterise now, so the work measured
                // includes painting the pixels, not only issuing the drawing calls.
                if let Some(cx) = canvas::context(&el) {
                    let _ = cx.get_image_data(0.0, 0.0, 1.0, 1.0);
                }
                let done = wall_ms();
                work.update_value(|w| w.push(done - drawing));
            }
            if now - start < 4000.0 {
                tick(canvas_ref, frame, times, work, theme, result, start, now);
            } else {
                let mut t = times.get_value();
                let mut w = work.get_value();
                t.sort_by(|a, b| a.total_cmp(b));
                w.sort_by(|a, b| a.total_cmp(b));
                // Intervals include the browser's own scheduling jitter; `draw_*` is the
                // renderer's work per frame (issuing and rasterising it), which is ours.
                let dropped = t.iter().filter(|&&x| x > 1.5 * 1000.0 / 60.0).count();
                let json = format!(
                    "{{\"frames\":{},\"p50\":{:.2},\"p95\":{:.2},\"p99\":{:.2},\"draw_p50\":{:.2},\"draw_p95\":{:.2},\"draw_p99\":{:.2},\"dropped\":{}}}",
                    t.len(),
                    percentile(&t, 0.5),
                    percentile(&t, 0.95),
                    percentile(&t, 0.99),
                    percentile(&w, 0.5),
                    percentile(&w, 0.95),
                    percentile(&w, 0.99),
                    dropped
                );
                if let Some(w) = web_sys::window() {
                    let _ = js_sys::Reflect::set(&w, &"__faultline_frames".into(), &json.clone().into());
                }
                result.set(json);
            }
        });
    }
    tick(canvas_ref, frame, times, work, theme, result, start, 0.0);
    view! {
        <main class="player">
            <h1>{format!("Frames bench: {n} messages in flight")}</h1>
            <canvas node_ref=canvas_ref class="sim"></canvas>
            <pre class="bench-result">{move || result.get()}</pre>
        </main>
    }
}

/// One finished run on the engine bench page.
trait RowExt {
    fn events_per_s(&self) -> f64;
    /// Simulated time over wall time: below 1, the player cannot keep up at 1× speed.
    fn real_time(&self) -> f64;
}

impl RowExt for BenchRow {
    fn events_per_s(&self) -> f64 {
        self.events as f64 / (self.wall_ms / 1000.0).max(1e-9)
    }
    fn real_time(&self) -> f64 {
        self.simulated as f64 / 1000.0 / self.wall_ms.max(1e-9)
    }
}

fn rows_json(rows: &[BenchRow]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|r| {
            format!(
                "{{\"id\":\"{}\",\"label\":\"{}\",\"query\":\"{}\",\"until_ms\":{},\"events\":{},\"simulated_s\":{:.3},\"wall_ms\":{:.1},\"events_per_s\":{:.0},\"real_time\":{:.2},\"fingerprint\":\"{}\"}}",
                r.id,
                r.label,
                r.query,
                r.until / 1000,
                r.events,
                r.simulated as f64 / 1e6,
                r.wall_ms,
                r.events_per_s(),
                r.real_time(),
                r.fingerprint
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// The engine bench page (`#/bench/engine`): every registered scenario's default recipe
/// (seed 1) run to its default end in the simulation worker, as the command-line runner
/// runs it (trace hash only), then the scenarios at the seed documents' scales. Shows events
/// per second of compute, how many times faster than real time, and the fingerprint (the
/// same as `faultline run`), and publishes the table as JSON on `window.__faultline_engine`
/// for the benchmark script.
#[component]
pub fn EngineBench() -> impl IntoView {
    let rows = RwSignal::new(Vec::<BenchRow>::new());
    let done = RwSignal::new(false);
    let conn = StoredValue::new_local(None::<Conn>);
    let on = move |heard: Heard| match heard {
        Heard::Reply(Reply::Ready { .. }) => {
            conn.with_value(|c| c.as_ref().map(|c| c.post(&Command::Bench))).unwrap_or(())
        }
        Heard::Reply(Reply::BenchRow(r)) => rows.update(|rows| rows.push(r)),
        Heard::Reply(Reply::BenchDone) => {
            done.set(true);
            let json = rows.with_untracked(|r| rows_json(r));
            if let Some(w) = web_sys::window() {
                let _ = js_sys::Reflect::set(&w, &"__faultline_engine".into(), &json.into());
            }
        }
        Heard::Reply(_) => {}
        Heard::Failed(why) => {
            crate::remote::give_up(conn, &why);
        }
    };
    match Conn::start(crate::remote::ALL_WORKER_URL, on) {
        Ok(c) => conn.set_value(Some(c)),
        Err(why) => crate::show_panic(&why),
    }
    on_cleanup(move || conn.set_value(None));
    view! {
        <main class="player bench">
            <h1>"Engine bench: every scenario, as it starts and at scale, in this browser"</h1>
            <p class="help">
                "Seed 1, default parameters, run to the scenario's default end with the trace hash only, as "
                <code>"faultline run <id>"</code> " does — the fingerprints match it; then each scenario at the seed documents' scale. "
                "Each runs in the simulation worker, as a scenario page's run does. "
                "Events per second count compute time only; “× real time” is simulated over wall time (below 1× the player cannot keep up at 1× speed)."
            </p>
            // Rows as HTML: a bench page's table is not worth the reactive views' code in
            // the bundle every visitor downloads.
            <table class="bench-table" inner_html=move || {
                let rows: String = rows.get().iter().map(|r| format!(
                    "<tr><td><a href=\"{}\">{}</a></td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{:.0} ms</td>\
                     <td class=\"num\">{:.2} M</td><td class=\"num\">{:.1}×</td><td><code>{}</code></td></tr>",
                    crate::access::escape(&crate::route::scenario_href(&r.id, &crate::scenario::strip_s(&r.query))),
                    crate::access::escape(&r.label),
                    r.events, Time(r.simulated), r.wall_ms, r.events_per_s() / 1e6, r.real_time(), r.fingerprint,
                )).collect();
                format!("<thead><tr><th>run</th><th>events</th><th>simulated</th><th>wall</th><th>events/s</th>\
                         <th>× real time</th><th>fingerprint</th></tr></thead><tbody>{rows}</tbody>")
            }></table>
            <p class="help">{move || if done.get() { "done" } else { "running…" }}</p>
        </main>
    }
}
