//! The frames bench page (`#/bench/frames?n=5000`): animates a synthetic frame with `n`
//! messages in flight through the real renderer for a few seconds and publishes frame-time
//! percentiles on `window.__faultline_frames` for the benchmark script to read.

use crate::canvas::{self, Theme};
use faultline_core::{Frame, Layout, MsgFrame, NodeFrame, NodeKind, NodeView, Status, Time};
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
    let perf = || web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now());
    let start = perf();
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
            let now = web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now());
            if last > 0.0 {
                times.update_value(|t| t.push(now - last));
            }
            if let Some(el) = canvas_ref.get_untracked() {
                frame.update_value(|f| f.now = Time(f.now.micros() + 16_000));
                frame.with_value(|f| theme.with_value(|t| canvas::draw(&el, f, Layout::Tiers, None, t, 300_000.0)));
                // Reading a pixel back makes the browser rasterise now, so the work measured
                // includes painting the pixels, not only issuing the drawing calls.
                if let Some(cx) = canvas::context(&el) {
                    let _ = cx.get_image_data(0.0, 0.0, 1.0, 1.0);
                }
                let done = web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now());
                work.update_value(|w| w.push(done - now));
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
