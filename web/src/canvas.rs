//! Draws a `Frame` on a 2-D canvas: nodes by kind with status, badges and gauges, messages
//! moving between send and delivery, lost ones vanishing, and ring arcs. Also hit-testing.

use faultline_core::{Arc, Frame, Layout, NodeId, NodeKind, Status, Tone};
use std::f64::consts::PI;
use wasm_bindgen::prelude::wasm_bindgen;
use wasm_bindgen::Clamped;
use wasm_bindgen::JsCast;
use web_sys::{CanvasRenderingContext2d, HtmlCanvasElement, ImageData};

/// The point at `radius` and angle `a` (radians) from (`x`, `y`). In the browser through
/// JavaScript's `Math` (drawing needs no bit-exact trigonometry, and Rust's own costs the
/// bundle 2.6 KB gzipped); natively, for the tests, through Rust's.
fn polar(x: f64, y: f64, radius: f64, a: f64) -> (f64, f64) {
    #[cfg(target_arch = "wasm32")]
    let (cos, sin) = (js_sys::Math::cos(a), js_sys::Math::sin(a));
    #[cfg(not(target_arch = "wasm32"))]
    let (cos, sin) = (a.cos(), a.sin());
    (x + radius * cos, y + radius * sin)
}

// Thousands of small shapes per frame: one call into JavaScript per batch instead of one
// per shape, and one path per batch, so the browser rasterises each batch in a single fill
// or stroke. `xy` holds x, y pairs (`&[f32]` is passed as a view on WASM memory, not copied).
#[wasm_bindgen(inline_js = "
export function fill_squares(cx, xy, half) {
  // Whole-pixel corners: the rasteriser fills aligned squares without antialiasing.
  const side = 2 * half;
  cx.beginPath();
  for (let i = 0; i < xy.length; i += 2) cx.rect(Math.round(xy[i] - half), Math.round(xy[i + 1] - half), side, side);
  cx.fill();
}
export function stroke_crosses(cx, xy, half) {
  cx.beginPath();
  for (let i = 0; i < xy.length; i += 2) {
    const x = xy[i], y = xy[i + 1];
    cx.moveTo(x - half, y - half); cx.lineTo(x + half, y + half);
    cx.moveTo(x + half, y - half); cx.lineTo(x - half, y + half);
  }
  cx.stroke();
}
")]
extern "C" {
    fn fill_squares(cx: &CanvasRenderingContext2d, xy: &[f32], half: f64);
    fn stroke_crosses(cx: &CanvasRenderingContext2d, xy: &[f32], half: f64);
}

/// Where a node is drawn and how big.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Placed {
    pub x: f64,
    pub y: f64,
    pub r: f64,
    /// Drawn as a dot in a crowd (no label, badges or gauges).
    pub dot: bool,
    /// The width its words may take, centred on `x` (its column's or sub-column's).
    pub room: f64,
    /// Where its gauges' words must stop: its column's right edge (the canvas's, for the last).
    pub edge: f64,
}

/// Room kept at the canvas's right edge for the gauge values of the last column's nodes.
const GAUGE_ROOM: f64 = 70.0;
/// Height a node's words take (a mark above the shape; the label and two badges below it),
/// the least a node of a column needs with its shape at the smallest, and the width of a
/// sub-column (a label and its gauges side by side).
const WORDS_ROOM: f64 = 52.0;
const NODE_ROOM: f64 = WORDS_ROOM + 12.0;
const SUB_COLUMN_W: f64 = 170.0;
/// The width a node's words may take on a ring.
const RING_ROOM: f64 = 160.0;

/// `text` as it fits in `width` at the context's font: cut, with an ellipsis, where it is
/// wider (narrow columns: six tiers side by side), so that words never run into a neighbour's.
fn fit_text(cx: &CanvasRenderingContext2d, text: &str, width: f64) -> String {
    let wide = |t: &str| cx.measure_text(t).map_or(0.0, |m| m.width());
    if wide(text) <= width {
        return text.to_string();
    }
    let mut chars: Vec<char> = text.chars().collect();
    while !chars.is_empty() && wide(&format!("{}…", chars.iter().collect::<String>())) > width {
        chars.pop();
    }
    if chars.is_empty() {
        String::new()
    } else {
        format!("{}…", chars.iter().collect::<String>())
    }
}

/// Positions for every node of `frame` in a `w` × `h` area.
pub fn place(frame: &Frame, layout: Layout, w: f64, h: f64) -> Vec<Placed> {
    let n = frame.nodes.len();
    let mut out = vec![Placed { x: 0.0, y: 0.0, r: 0.0, dot: false, room: 0.0, edge: 0.0 }; n];
    match layout {
        Layout::Tiers | Layout::Grid => {
            let mut tiers: Vec<u8> = frame.nodes.iter().map(|f| f.view.tier).collect();
            tiers.sort_unstable();
            tiers.dedup();
            // The rightmost column's gauge values are written to the right of its nodes:
            // keep room for them inside the canvas.
            let room = if w > 400.0 { GAUGE_ROOM } else { 0.0 };
            let col_w = (w - room) / tiers.len().max(1) as f64;
            for (c, t) in tiers.iter().enumerate() {
                let ids: Vec<usize> = (0..n).filter(|&i| frame.nodes[i].view.tier == *t).collect();
                place_column(&ids, c as f64 * col_w, col_w, h, &mut out);
            }
            // The last column's gauge values may use the room kept for them.
            for p in out.iter_mut().filter(|p| p.edge > w - room - 8.0) {
                p.edge = w;
            }
        }
        Layout::Ring => {
            let (cx, cy) = (w / 2.0, h / 2.0);
            let radius = (w.min(h) / 2.0 - 60.0).max(40.0);
            let centre: Vec<usize> = (0..n).filter(|&i| frame.nodes[i].view.tier == 0).collect();
            let rim: Vec<usize> = (0..n).filter(|&i| frame.nodes[i].view.tier != 0).collect();
            for (k, &i) in rim.iter().enumerate() {
                let a = -PI / 2.0 + 2.0 * PI * k as f64 / rim.len().max(1) as f64;
                let (x, y) = polar(cx, cy, radius, a);
                out[i] = Placed { x, y, r: 18.0, dot: false, room: RING_ROOM, edge: w };
            }
            for (k, &i) in centre.iter().enumerate() {
                let a = -PI / 2.0 + 2.0 * PI * k as f64 / centre.len().max(1) as f64;
                let d = if centre.len() == 1 { 0.0 } else { radius * 0.35 };
                let (x, y) = polar(cx, cy, d, a);
                out[i] = Placed { x, y, r: 16.0, dot: false, room: RING_ROOM, edge: w };
            }
        }
    }
    out
}

fn place_column(ids: &[usize], x0: f64, w: f64, h: f64, out: &mut [Placed]) {
    let count = ids.len();
    if count == 0 {
        return;
    }
    let top = 40.0;
    let usable = (h - top - 30.0).max(40.0);
    if count <= 14 {
        // A node needs its shape, a mark above it, its label and two badges below it: where
        // the column is too short for that, the nodes stand in side-by-side sub-columns
        // (top to bottom, then the next), as many as the width allows.
        let fits = (w / SUB_COLUMN_W).floor().max(1.0) as usize;
        let sub =
            (1..=fits.min(count)).find(|&c| usable / count.div_ceil(c) as f64 >= NODE_ROOM).unwrap_or(fits.min(count));
        let rows = count.div_ceil(sub);
        let (gap, sub_w) = (usable / rows as f64, w / sub as f64);
        // The shape shrinks first, so that the words around it keep their room.
        let r = (gap / 3.2).min((gap - WORDS_ROOM) / 2.0).clamp(6.0, 26.0);
        for (k, &i) in ids.iter().enumerate() {
            let (c, row) = (k / rows, k % rows);
            let (x, y) = (x0 + sub_w * (c as f64 + 0.5), top + gap * (row as f64 + 0.5));
            out[i] = Placed { x, y, r, dot: false, room: sub_w - 6.0, edge: x0 + sub_w * (c as f64 + 1.0) - 3.0 };
        }
    } else {
        // A crowd (hundreds of clients): a grid of dots filling the column.
        let inner_w = (w - 30.0).max(20.0);
        let cols = ((count as f64 * inner_w / usable).sqrt().ceil() as usize).max(1);
        let rows = count.div_ceil(cols);
        let (dx, dy) = (inner_w / cols as f64, usable / rows as f64);
        let r = (dx.min(dy) / 2.6).clamp(1.5, 6.0);
        for (k, &i) in ids.iter().enumerate() {
            let (c, row) = (k % cols, k / cols);
            out[i] = Placed {
                x: x0 + 15.0 + dx * (c as f64 + 0.5),
                y: top + dy * (row as f64 + 0.5),
                r,
                dot: true,
                room: 0.0,
                edge: 0.0,
            };
        }
    }
}

/// The node under (x, y), if any.
pub fn hit(placed: &[Placed], x: f64, y: f64) -> Option<NodeId> {
    placed
        .iter()
        .enumerate()
        .map(|(i, p)| (i, (p.x - x).hypot(p.y - y) - p.r.max(6.0)))
        .filter(|(_, d)| *d <= 6.0)
        .min_by(|a, b| a.1.total_cmp(&b.1))
        .map(|(i, _)| i as NodeId)
}

/// A stable hue for node `id`: golden-angle steps keep neighbours apart.
pub fn node_hue(id: NodeId) -> f64 {
    (id as f64 * 137.508) % 360.0
}

/// A stable colour for a message kind, from its name.
pub fn hue(name: &str) -> f64 {
    let mut h: u32 = 2166136261;
    for b in name.bytes() {
        h = (h ^ b as u32).wrapping_mul(16777619);
    }
    (h % 360) as f64
}

pub struct Theme {
    pub fg: String,
    pub muted: String,
    pub card: String,
    pub line: String,
    pub good: String,
    pub bad: String,
    pub warn: String,
    pub accent: String,
    pub dark: bool,
}

impl Theme {
    pub fn read() -> Theme {
        let var = |name: &str| -> String {
            let doc = web_sys::window().and_then(|w| w.document());
            let root = doc.and_then(|d| d.document_element());
            let style = root.and_then(|r| web_sys::window()?.get_computed_style(&r).ok().flatten());
            style.and_then(|s| s.get_property_value(name).ok()).map(|v| v.trim().to_string()).unwrap_or_default()
        };
        let or = |v: String, d: &str| if v.is_empty() { d.to_string() } else { v };
        let dark = web_sys::window()
            .and_then(|w| w.match_media("(prefers-color-scheme: dark)").ok().flatten())
            .is_some_and(|m| m.matches());
        Theme {
            fg: or(var("--fg"), "#1d1f21"),
            muted: or(var("--muted"), "#5f6368"),
            card: or(var("--card"), "#ffffff"),
            line: or(var("--line"), "#dcdcd6"),
            good: or(var("--good"), "#1e8e3e"),
            bad: or(var("--bad"), "#c5221f"),
            warn: or(var("--warn"), "#b06000"),
            accent: or(var("--accent"), "#3355cc"),
            dark,
        }
    }
    fn tone(&self, t: Tone) -> &str {
        match t {
            Tone::Neutral => &self.muted,
            Tone::Good => &self.good,
            Tone::Warn => &self.warn,
            Tone::Bad => &self.bad,
        }
    }
}

/// Makes the canvas's backing store match its CSS size × device pixel ratio; returns the CSS size.
pub fn fit(canvas: &HtmlCanvasElement) -> (f64, f64, f64) {
    let dpr = web_sys::window().map_or(1.0, |w| w.device_pixel_ratio()).max(1.0);
    let (w, h) = (canvas.client_width().max(1) as f64, canvas.client_height().max(1) as f64);
    let (pw, ph) = ((w * dpr).round() as u32, (h * dpr).round() as u32);
    if canvas.width() != pw || canvas.height() != ph {
        canvas.set_width(pw);
        canvas.set_height(ph);
    }
    (w, h, dpr)
}

pub fn context(canvas: &HtmlCanvasElement) -> Option<CanvasRenderingContext2d> {
    canvas.get_context("2d").ok().flatten().and_then(|c| c.dyn_into().ok())
}

/// Draws one frame. Returns the placement used (for hit-testing clicks).
/// `afterglow` is how long (simulated µs) a delivered message's path stays lit: the page
/// sets it from the speed so traffic faster than a frame still shows.
pub fn draw(
    canvas: &HtmlCanvasElement,
    frame: &Frame,
    layout: Layout,
    selected: Option<NodeId>,
    theme: &Theme,
    afterglow: f64,
) -> Vec<Placed> {
    let (w, h, dpr) = fit(canvas);
    let Some(cx) = context(canvas) else { return Vec::new() };
    let placed = place(frame, layout, w, h);
    let messages = Messages::gather(frame, &placed);
    let crowds = crowd_batches(frame, &placed);
    // Thousands of squares (messages, and clients in crowds) are cheaper written as pixels
    // (which also clears the canvas) than rasterised as a path; a few hundred are cheaper as
    // a path than a whole-canvas image. As pixels they are the bottom layer, so ring and
    // afterglow lines cross over them rather than under: among thousands of squares the
    // two cannot be told apart.
    // (Clients join only if the theme's colours can be written as pixels: `#rrggbb`.)
    let crowd_colours = rgba_of_hex(&theme.muted).zip(rgba_of_hex(&theme.bad));
    let dots: usize = crowd_colours.map_or(0, |_| crowds.iter().map(|(_, _, xy)| xy.len() / 2).sum());
    let as_pixels = (messages.squares() + dots) as f64 >= PIXELS_FROM * dpr * dpr;
    let crowds_as_pixels = as_pixels && crowd_colours.is_some();
    if as_pixels {
        let mut layers: Vec<(&[f32], f32, [u8; 4])> = Vec::new();
        if let Some((up_rgba, down_rgba)) = crowd_colours {
            for (up, r, xy) in &crowds {
                layers.push((xy, *r as f32, if *up { up_rgba } else { down_rgba }));
            }
        }
        for (kind, points) in &messages.kinds {
            let (hh, s, l) = Messages::colour(kind, theme);
            layers.push((points, HALF, hsl_rgba(hh, s as f64 / 100.0, l as f64 / 100.0)));
        }
        put_pixels(&cx, canvas, dpr, &layers);
    }
    let _ = cx.set_transform(dpr, 0.0, 0.0, dpr, 0.0, 0.0);
    if !as_pixels {
        cx.clear_rect(0.0, 0.0, w, h);
    }
    if layout == Layout::Ring {
        draw_ring(&cx, frame, &placed, w, h, theme);
    }
    draw_afterglow(&cx, frame, &placed, afterglow);
    if !as_pixels {
        messages.fill_path(&cx, theme);
    }
    messages.stroke_lost(&cx, theme);
    draw_crowds(&cx, if crowds_as_pixels { &[] } else { &crowds }, &placed, selected, theme);
    for (i, node) in frame.nodes.iter().enumerate() {
        if !placed[i].dot {
            draw_node(&cx, node, placed[i], selected == Some(i as NodeId), theme);
        }
    }
    // Labels and badges last, so a crowded column's shapes never cover them.
    for (i, node) in frame.nodes.iter().enumerate() {
        if !placed[i].dot {
            draw_label(&cx, node, placed[i], theme);
        }
    }
    draw_marks(&cx, frame, &placed, theme);
    if frame.in_flight > frame.messages.len() {
        cx.set_fill_style_str(&theme.muted);
        cx.set_font("12px system-ui, sans-serif");
        let _ = cx.fill_text(
            &format!("showing {} of {} messages in flight", frame.messages.len(), frame.in_flight),
            10.0,
            h - 10.0,
        );
    }
    placed
}

fn draw_ring(cx: &CanvasRenderingContext2d, frame: &Frame, placed: &[Placed], w: f64, h: f64, theme: &Theme) {
    let radius = (w.min(h) / 2.0 - 60.0).max(40.0);
    let (x0, y0) = (w / 2.0, h / 2.0);
    cx.set_stroke_style_str(&theme.line);
    cx.set_line_width(10.0);
    cx.begin_path();
    let _ = cx.arc(x0, y0, radius, 0.0, 2.0 * PI);
    cx.stroke();
    let arcs: Vec<Arc> = frame.nodes.iter().flat_map(|n| n.view.arcs.iter().copied()).collect();
    let mut owns = vec![false; frame.nodes.len()];
    for a in &arcs {
        if let Some(o) = owns.get_mut(a.owner as usize) {
            *o = true;
        }
    }
    // Runs of one owner at the rim's resolution, then one path and one stroke per owner.
    let runs = ring_runs(&arcs, (2.0 * PI * radius).ceil().clamp(64.0, 4096.0) as usize);
    let turn = |step: usize| -PI / 2.0 + 2.0 * PI * step as f64 / runs.steps as f64;
    let mut done: Vec<NodeId> = Vec::new();
    for r in &runs.runs {
        if done.contains(&r.2) {
            continue;
        }
        done.push(r.2);
        cx.set_stroke_style_str(&format!("hsl({}, 65%, 55%)", node_hue(r.2)));
        cx.begin_path();
        for &(from, to, _) in runs.runs.iter().filter(|x| x.2 == r.2) {
            let (a0, a1) = (turn(from), turn(to));
            let (x, y) = polar(x0, y0, radius, a0);
            cx.move_to(x, y);
            let _ = cx.arc(x0, y0, radius, a0, a1);
        }
        cx.stroke();
    }
    // Tie each owner on the rim to its colour.
    for (i, node) in frame.nodes.iter().enumerate() {
        if node.view.tier != 0 && !placed[i].dot && owns[i] {
            cx.set_fill_style_str(&format!("hsl({}, 65%, 55%)", node_hue(i as NodeId)));
            cx.begin_path();
            let _ = cx.arc(placed[i].x, placed[i].y, placed[i].r + 4.0, 0.0, 2.0 * PI);
            cx.fill();
        }
    }
    cx.set_line_width(1.0);
}

/// A hash ring as it can be seen: `steps` equal slices of a turn.
#[derive(Debug, PartialEq)]
pub struct RingRuns {
    pub steps: usize,
    /// Slices `[from, to)` with one owner, in order round the ring; uncovered slices are left out.
    pub runs: Vec<(usize, usize, NodeId)>,
}

/// Each slice takes the owner of the arc at its middle, and neighbours with the same owner
/// merge. With a slice per pixel of the rim this is what the eye can see: 15 nodes with 1,000
/// virtual nodes each make 15,000 arcs of a tenth of a pixel, and stroking each one alone
/// took the page to 10 frames a second.
pub fn ring_runs(arcs: &[Arc], steps: usize) -> RingRuns {
    let mut sorted: Vec<&Arc> = arcs.iter().filter(|a| a.end > a.start).collect();
    sorted.sort_by(|a, b| a.start.total_cmp(&b.start));
    let mut runs: Vec<(usize, usize, NodeId)> = Vec::new();
    let mut j = 0;
    for i in 0..steps {
        let mid = ((i as f64 + 0.5) / steps as f64) as f32;
        // Arcs do not overlap, so sorted by start they are sorted by end too.
        while j < sorted.len() && sorted[j].end <= mid {
            j += 1;
        }
        let Some(a) = sorted.get(j).filter(|a| a.start <= mid) else { continue };
        match runs.last_mut() {
            Some(last) if last.1 == i && last.2 == a.owner => last.1 = i + 1,
            _ => runs.push((i, i + 1, a.owner)),
        }
    }
    RingRuns { steps, runs }
}

/// A line from (x0, y0) to (x1, y1).
type Segment = (f64, f64, f64, f64);

/// Links, as the traffic shows them: every pair that exchanged a recent message gets a faint
/// line, and the latest deliveries light their line up for a moment.
fn draw_afterglow(cx: &CanvasRenderingContext2d, frame: &Frame, placed: &[Placed], afterglow: f64) {
    let now = frame.now.micros() as f64;
    // With a crowd there are hundreds of lines: as hairlines they cost the software
    // rasteriser a third of what 1.5-pixel strokes do (cache-stampede with 5,000 clients: 22
    // → 31 frames a second). The width depends on the layout only, so it never flickers.
    cx.set_line_width(if placed.iter().any(|p| p.dot) { 1.0 } else { 1.5 });
    // One path per (kind, brightness step): a few strokes instead of one per delivery.
    let mut batches: Vec<(&'static str, u8, Vec<Segment>)> = Vec::new();
    for m in &frame.recent {
        let age = now - m.deliver.micros() as f64;
        let alpha = (0.6 * (1.0 - age / afterglow.max(1.0))).max(0.08);
        let (Some(a), Some(b)) = (placed.get(m.from as usize), placed.get(m.to as usize)) else { continue };
        if a.dot && b.dot {
            continue;
        }
        let step = (alpha * 10.0).round() as u8;
        let line = (a.x, a.y, b.x, b.y);
        match batches.iter_mut().find(|(k, s, _)| *k == m.kind && *s == step) {
            Some((_, _, lines)) => lines.push(line),
            None => batches.push((m.kind, step, vec![line])),
        }
    }
    for (kind, step, lines) in batches {
        cx.set_global_alpha(step as f64 / 10.0);
        cx.set_stroke_style_str(&format!("hsl({}, 70%, 50%)", hue(kind)));
        cx.begin_path();
        for (x0, y0, x1, y1) in lines {
            cx.move_to(x0, y0);
            cx.line_to(x1, y1);
        }
        cx.stroke();
    }
    cx.set_global_alpha(1.0);
    cx.set_line_width(1.0);
}

/// From how many squares (messages and crowd clients, per device pixel ratio squared) they
/// are written as pixels.
const PIXELS_FROM: f64 = 1500.0;

/// Half the side of a message's square, in CSS pixels.
const HALF: f32 = 3.0;

/// Lost messages fade out; their alpha is rounded to one of a few steps, one path each.
const FADE_STEPS: usize = 8;

/// The messages of a frame where they are now, batched by kind (one fill style each) and
/// lost ones by fade step. Points are x, y pairs in CSS pixels.
struct Messages {
    kinds: Vec<(&'static str, Vec<f32>)>,
    lost: Vec<Vec<f32>>,
}

impl Messages {
    fn gather(frame: &Frame, placed: &[Placed]) -> Messages {
        let now = frame.now.micros() as f64;
        let mut kinds: Vec<(&'static str, Vec<f32>)> = Vec::new();
        let mut lost: Vec<Vec<f32>> = vec![Vec::new(); FADE_STEPS];
        for m in &frame.messages {
            let (Some(a), Some(b)) = (placed.get(m.from as usize), placed.get(m.to as usize)) else { continue };
            let span = (m.deliver.micros() as f64 - m.sent.micros() as f64).max(1.0);
            let mut p = ((now - m.sent.micros() as f64) / span).clamp(0.0, 1.0);
            let mut alpha = 1.0;
            if m.lost && now >= m.deliver.micros() as f64 {
                // It vanished at the receiver (partition, dead node): fade out there.
                let since = now - m.deliver.micros() as f64;
                alpha = (1.0 - since / frame.lost_fade as f64).clamp(0.0, 1.0);
                p = 1.0;
            } else if m.lost && p > 0.5 {
                // Lost on the wire: it never gets past half way.
                alpha = (1.0 - (p - 0.5) * 2.0).clamp(0.0, 1.0);
                p = 0.5;
            }
            let (x, y) = ((a.x + (b.x - a.x) * p) as f32, (a.y + (b.y - a.y) * p) as f32);
            if m.lost {
                let step = (alpha * FADE_STEPS as f64).ceil() as usize;
                if step > 0 {
                    lost[step.min(FADE_STEPS) - 1].extend([x, y]);
                }
                continue;
            }
            match kinds.iter_mut().find(|(k, _)| *k == m.kind) {
                Some((_, v)) => v.extend([x, y]),
                None => kinds.push((m.kind, vec![x, y])),
            }
        }
        Messages { kinds, lost }
    }

    fn squares(&self) -> usize {
        self.kinds.iter().map(|(_, v)| v.len() / 2).sum()
    }

    /// A kind's colour: hue, saturation and lightness in percent.
    fn colour(kind: &str, theme: &Theme) -> (f64, u8, u8) {
        (hue(kind), 70, if theme.dark { 65 } else { 45 })
    }

    /// One path and one fill per kind, on whole pixels.
    fn fill_path(&self, cx: &CanvasRenderingContext2d, theme: &Theme) {
        for (kind, points) in &self.kinds {
            let (h, s, l) = Self::colour(kind, theme);
            cx.set_fill_style_str(&format!("hsl({h}, {s}%, {l}%)"));
            fill_squares(cx, points, HALF as f64);
        }
    }

    /// Lost messages: a cross each, one stroke per fade step.
    fn stroke_lost(&self, cx: &CanvasRenderingContext2d, theme: &Theme) {
        cx.set_stroke_style_str(&theme.bad);
        cx.set_line_width(2.0);
        for (i, points) in self.lost.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
            cx.set_global_alpha((i + 1) as f64 / FADE_STEPS as f64);
            stroke_crosses(cx, points, 4.0);
        }
        cx.set_line_width(1.0);
        cx.set_global_alpha(1.0);
    }
}

/// Squares written into an image of the whole canvas (device pixels) that replaces its
/// contents: the frame's bottom layer, so it also clears the canvas. Each layer is x, y
/// centres (CSS pixels), half a side and a colour, drawn in order, each square where
/// `fill_squares` would put it: corners on whole CSS pixels, then scaled.
fn put_pixels(cx: &CanvasRenderingContext2d, canvas: &HtmlCanvasElement, dpr: f64, layers: &[(&[f32], f32, [u8; 4])]) {
    let (w, h) = (canvas.width() as usize, canvas.height() as usize);
    PIXELS.with_borrow_mut(|px| {
        px.clear();
        px.resize(w * h * 4, 0);
        for &(points, half, rgba) in layers {
            let side = 2.0 * half as f64 * dpr;
            for p in points.chunks_exact(2) {
                let (x0, y0) = ((p[0] - half).round() as f64 * dpr, (p[1] - half).round() as f64 * dpr);
                let (xa, xb) =
                    (x0.round().clamp(0.0, w as f64) as usize, (x0 + side).round().clamp(0.0, w as f64) as usize);
                let (ya, yb) =
                    (y0.round().clamp(0.0, h as f64) as usize, (y0 + side).round().clamp(0.0, h as f64) as usize);
                for y in ya..yb {
                    for pixel in px[(y * w + xa) * 4..(y * w + xb) * 4].chunks_exact_mut(4) {
                        pixel.copy_from_slice(&rgba);
                    }
                }
            }
        }
        if let Ok(img) = ImageData::new_with_u8_clamped_array_and_sh(Clamped(&px[..]), w as u32, h as u32) {
            let _ = cx.put_image_data(&img, 0.0, 0.0);
        }
    });
}

/// An opaque RGBA pixel for a CSS colour written `#rrggbb` (the theme's), or `None`.
fn rgba_of_hex(css: &str) -> Option<[u8; 4]> {
    let hex = css.strip_prefix('#').filter(|h| h.len() == 6 && h.is_ascii())?;
    let byte = |i: usize| u8::from_str_radix(&hex[i..i + 2], 16).ok();
    Some([byte(0)?, byte(2)?, byte(4)?, 255])
}

thread_local! {
    /// The bottom layer's pixels, kept between frames so a frame allocates nothing.
    static PIXELS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An opaque RGBA pixel for hue (degrees), saturation and lightness (0–1), as CSS `hsl()`.
fn hsl_rgba(h: f64, s: f64, l: f64) -> [u8; 4] {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = (h.rem_euclid(360.0)) / 60.0;
    let x = c * (1.0 - ((hp % 2.0) - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let byte = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    [byte(r), byte(g), byte(b), 255]
}

fn shape(cx: &CanvasRenderingContext2d, kind: NodeKind, x: f64, y: f64, r: f64) {
    cx.begin_path();
    match kind {
        NodeKind::Client => {
            let _ = cx.arc(x, y, r * 0.8, 0.0, 2.0 * PI);
        }
        NodeKind::LoadBalancer => {
            cx.move_to(x, y - r);
            cx.line_to(x + r, y);
            cx.line_to(x, y + r);
            cx.line_to(x - r, y);
            cx.close_path();
        }
        NodeKind::Database | NodeKind::Store => {
            let (w, h) = (r * 1.6, r * 1.8);
            let _ = cx.ellipse(x, y - h / 2.0 + r * 0.25, w / 2.0, r * 0.25, 0.0, 0.0, 2.0 * PI);
            cx.move_to(x - w / 2.0, y - h / 2.0 + r * 0.25);
            cx.line_to(x - w / 2.0, y + h / 2.0 - r * 0.25);
            let _ = cx.ellipse(x, y + h / 2.0 - r * 0.25, w / 2.0, r * 0.25, 0.0, PI, 0.0);
            cx.line_to(x + w / 2.0, y - h / 2.0 + r * 0.25);
        }
        NodeKind::Cache => {
            for k in 0..6 {
                let a = PI / 6.0 + k as f64 * PI / 3.0;
                let (px, py) = polar(x, y, r, a);
                if k == 0 {
                    cx.move_to(px, py)
                } else {
                    cx.line_to(px, py)
                }
            }
            cx.close_path();
        }
        NodeKind::Queue => cx.rect(x - r * 1.3, y - r * 0.7, r * 2.6, r * 1.4),
        NodeKind::Lock => {
            cx.rect(x - r * 0.8, y - r * 0.3, r * 1.6, r * 1.2);
            cx.move_to(x - r * 0.5, y - r * 0.3);
            let _ = cx.arc(x, y - r * 0.3, r * 0.5, PI, 0.0);
        }
        NodeKind::Region => cx.rect(x - r * 1.5, y - r * 1.1, r * 3.0, r * 2.2),
        NodeKind::Service | NodeKind::Worker => {
            let (w, h) = (r * 2.2, r * 1.6);
            let _ = cx.round_rect_with_f64(x - w / 2.0, y - h / 2.0, w, h, r * 0.3);
        }
    }
}

fn draw_label(cx: &CanvasRenderingContext2d, node: &faultline_core::NodeFrame, p: Placed, theme: &Theme) {
    cx.set_text_align("center");
    cx.set_fill_style_str(&theme.fg);
    cx.set_font("12px system-ui, sans-serif");
    let mut y = p.y + p.r + 14.0;
    let _ = cx.fill_text(&fit_text(cx, &node.view.label, p.room), p.x, y);
    cx.set_font("11px system-ui, sans-serif");
    for b in node.view.badges.iter().take(2) {
        y += 13.0;
        cx.set_fill_style_str(theme.tone(b.tone));
        let _ = cx.fill_text(&fit_text(cx, &b.text, p.room), p.x, y);
    }
    cx.set_text_align("start");
}

/// What nodes say about others ("ejected"), written just above the node they are about.
fn draw_marks(cx: &CanvasRenderingContext2d, frame: &Frame, placed: &[Placed], theme: &Theme) {
    cx.set_text_align("center");
    cx.set_font("bold 11px system-ui, sans-serif");
    for m in frame.nodes.iter().flat_map(|n| &n.view.marks) {
        if let Some(p) = placed.get(m.node as usize).filter(|p| !p.dot) {
            cx.set_fill_style_str(theme.tone(m.tone));
            let _ = cx.fill_text(&fit_text(cx, &m.text, p.room), p.x, p.y - p.r - 5.0);
        }
    }
    cx.set_text_align("start");
}

/// Crowds (hundreds or thousands of clients) are squares, batched by colour (up or not) and
/// size: one call and one fill per batch, so 5,000 clients cost about what 5 do. Returns
/// the batches as (up, half a side, x, y centres).
fn crowd_batches(frame: &Frame, placed: &[Placed]) -> Vec<(bool, f64, Vec<f32>)> {
    let mut batches: Vec<(bool, f64, Vec<f32>)> = Vec::new();
    for (node, p) in frame.nodes.iter().zip(placed).filter(|(_, p)| p.dot) {
        let up = node.status == Status::Up;
        let (x, y) = (p.x as f32, p.y as f32);
        match batches.iter_mut().find(|(u, r, _)| *u == up && *r == p.r) {
            Some((_, _, xy)) => xy.extend([x, y]),
            None => batches.push((up, p.r, vec![x, y])),
        }
    }
    batches
}

/// The keyboard's focus ring around node `n` (drawn over the frame, only while the canvas
/// has the focus): dashed, in the accent colour, outside the selection ring.
pub fn focus_ring(canvas: &HtmlCanvasElement, placed: &[Placed], n: NodeId, theme: &Theme) {
    let (Some(p), Some(cx)) = (placed.get(n as usize), context(canvas)) else { return };
    let pad = if p.dot { 4.0 } else { 12.0 };
    cx.set_stroke_style_str(&theme.accent);
    cx.set_line_width(2.0);
    let _ = cx.set_line_dash(&js_sys::Array::of2(&4.0.into(), &3.0.into()));
    cx.stroke_rect(p.x - p.r - pad, p.y - p.r - pad, 2.0 * (p.r + pad), 2.0 * (p.r + pad));
    let _ = cx.set_line_dash(&js_sys::Array::new());
    cx.set_line_width(1.0);
}

/// Draws crowd batches as paths (when they are not in the pixel layer), and the ring of a
/// selected client in a crowd.
fn draw_crowds(
    cx: &CanvasRenderingContext2d,
    batches: &[(bool, f64, Vec<f32>)],
    placed: &[Placed],
    selected: Option<NodeId>,
    theme: &Theme,
) {
    for (up, r, xy) in batches {
        cx.set_fill_style_str(if *up { &theme.muted } else { &theme.bad });
        fill_squares(cx, xy, *r);
    }
    if let Some(p) = selected.and_then(|s| placed.get(s as usize)).filter(|p| p.dot) {
        cx.set_stroke_style_str(&theme.accent);
        cx.set_line_width(1.5);
        cx.stroke_rect(p.x - p.r - 2.0, p.y - p.r - 2.0, 2.0 * p.r + 4.0, 2.0 * p.r + 4.0);
    }
}

fn draw_node(
    cx: &CanvasRenderingContext2d,
    node: &faultline_core::NodeFrame,
    p: Placed,
    selected: bool,
    theme: &Theme,
) {
    let base = match node.status {
        Status::Up => theme.card.clone(),
        Status::Crashed => theme.line.clone(),
        Status::Paused => theme.card.clone(),
    };
    let worst = node.view.badges.iter().map(|b| b.tone).max_by_key(|t| match t {
        Tone::Bad => 3,
        Tone::Warn => 2,
        Tone::Good => 1,
        Tone::Neutral => 0,
    });
    let stroke = match (node.status, worst) {
        (Status::Crashed, _) => theme.bad.clone(),
        (Status::Paused, _) => theme.warn.clone(),
        (_, Some(Tone::Bad)) => theme.bad.clone(),
        (_, Some(Tone::Warn)) => theme.warn.clone(),
        _ => theme.fg.clone(),
    };
    cx.set_fill_style_str(&base);
    cx.set_stroke_style_str(&stroke);
    cx.set_line_width(if selected { 3.0 } else { 1.5 });
    if node.status == Status::Paused || node.cut_off {
        let dash = js_sys::Array::of2(&5.0.into(), &4.0.into());
        let _ = cx.set_line_dash(&dash);
    }
    shape(cx, node.view.kind, p.x, p.y, p.r);
    cx.fill();
    cx.stroke();
    let _ = cx.set_line_dash(&js_sys::Array::new());
    if node.cut_off {
        cx.set_stroke_style_str(&theme.bad);
        cx.begin_path();
        let _ = cx.arc(p.x, p.y, p.r + 5.0, 0.0, 2.0 * PI);
        cx.stroke();
    }
    if selected {
        cx.set_stroke_style_str(&theme.accent);
        cx.begin_path();
        let _ = cx.arc(p.x, p.y, p.r + 8.0, 0.0, 2.0 * PI);
        cx.stroke();
    }
    cx.set_line_width(1.0);
    // Status glyph in the middle.
    let glyph = match node.status {
        Status::Crashed => "✕",
        Status::Paused => "❚❚",
        Status::Up => "",
    };
    cx.set_text_align("center");
    if !glyph.is_empty() {
        cx.set_fill_style_str(&stroke);
        cx.set_font(&format!("bold {}px system-ui, sans-serif", (p.r * 0.9) as i32));
        let _ = cx.fill_text(glyph, p.x, p.y + p.r * 0.3);
    }
    // Gauges: small bars to the right, each with its value.
    let gx = p.x + p.r * 1.3 + 6.0;
    cx.set_text_align("start");
    cx.set_font("9px system-ui, sans-serif");
    for (k, g) in node.view.gauges.iter().take(3).enumerate() {
        let gy = p.y - p.r * 0.8 + k as f64 * 11.0;
        let frac = if g.max > 0 { (g.value as f64 / g.max as f64).clamp(0.0, 1.0) } else { 0.0 };
        cx.set_fill_style_str(&theme.line);
        cx.fill_rect(gx, gy, 34.0, 6.0);
        let over = g.max > 0 && g.value > g.max;
        cx.set_fill_style_str(if over { &theme.bad } else { &theme.accent });
        cx.fill_rect(gx, gy, 34.0 * frac, 6.0);
        cx.set_fill_style_str(if over { &theme.bad } else { &theme.muted });
        let _ =
            cx.fill_text(&fit_text(cx, &format!("{} {}", g.value, g.label), p.edge - gx - 38.0), gx + 38.0, gy + 6.5);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// WCAG's relative luminance of `#rrggbb`.
    fn luminance(hex: &str) -> f64 {
        let channel = |i: usize| {
            let c = u8::from_str_radix(&hex[1 + 2 * i..3 + 2 * i], 16).expect("hex") as f64 / 255.0;
            if c <= 0.03928 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        0.2126 * channel(0) + 0.7152 * channel(1) + 0.0722 * channel(2)
    }

    fn contrast(a: &str, b: &str) -> f64 {
        let (x, y) = (luminance(a), luminance(b));
        (x.max(y) + 0.05) / (x.min(y) + 0.05)
    }

    /// axe-core cannot read text drawn on a canvas, so the picture's colours are held to WCAG
    /// AA here: every colour the canvas writes labels, badges and gauge values in is at least
    /// 4.5:1 against the canvas's background (`--card`), in both themes of style.css.
    #[test]
    fn canvas_text_colours_meet_wcag_aa_in_both_themes() {
        let css = include_str!("../style.css");
        let themes: Vec<&str> = css.split(":root").skip(1).take(2).collect();
        assert_eq!(themes.len(), 2, "a light and a dark :root block");
        for theme in themes {
            let var = |name: &str| {
                let at = theme.find(&format!("--{name}:")).unwrap_or_else(|| panic!("--{name} in {theme}"));
                theme[at..].split(':').nth(1).expect("value").trim()[..7].to_string()
            };
            let card = var("card");
            for name in ["fg", "muted", "good", "bad", "warn", "accent"] {
                let ratio = contrast(&var(name), &card);
                assert!(ratio >= 4.5, "--{name} on --card is {ratio:.2}:1, under AA's 4.5:1");
            }
        }
    }

    fn arc(start: f32, end: f32, owner: NodeId) -> Arc {
        Arc { start, end, owner }
    }

    #[test]
    fn theme_colours_become_pixels() {
        assert_eq!(rgba_of_hex("#5f6368"), Some([0x5f, 0x63, 0x68, 255]));
        assert_eq!(rgba_of_hex("#F28B82"), Some([0xf2, 0x8b, 0x82, 255]));
        for other in ["", "#fff", "rgb(1, 2, 3)", "#12345g", "#1234567", "#12é45"] {
            assert_eq!(rgba_of_hex(other), None, "{other}");
        }
    }

    #[test]
    fn ring_runs_follow_the_arcs_at_the_rims_resolution() {
        // Two halves, given out of order, and a gap.
        let arcs = [arc(0.5, 0.75, 2), arc(0.0, 0.5, 1)];
        assert_eq!(ring_runs(&arcs, 8).runs, [(0, 4, 1), (4, 6, 2)]);
        // Neighbouring arcs of one owner merge.
        let arcs = [arc(0.0, 0.25, 1), arc(0.25, 0.5, 1), arc(0.5, 1.0, 3)];
        assert_eq!(ring_runs(&arcs, 4).runs, [(0, 2, 1), (2, 4, 3)]);
        assert_eq!(ring_runs(&[], 4).runs, []);
    }

    #[test]
    fn many_tiny_arcs_become_at_most_a_run_per_slice() {
        // 15 owners × 1,000 points, interleaved, covering the whole turn.
        let n = 15_000;
        let arcs: Vec<Arc> =
            (0..n).map(|i| arc(i as f32 / n as f32, (i + 1) as f32 / n as f32, (i * 7 % 15) as NodeId)).collect();
        let r = ring_runs(&arcs, 1000);
        assert!(r.runs.len() <= 1000);
        assert_eq!(r.runs.first().map(|x| x.0), Some(0));
        assert_eq!(r.runs.last().map(|x| x.1), Some(1000));
        assert!(r.runs.windows(2).all(|w| w[0].1 == w[1].0), "no slice left uncovered");
        // Each slice's owner is the owner of the arc at its middle.
        for &(from, to, owner) in &r.runs {
            for i in from..to {
                let k = ((i as f64 + 0.5) / 1000.0 * n as f64) as usize;
                assert_eq!(owner, (k * 7 % 15) as NodeId, "slice {i}");
            }
        }
    }
}
