//! The scenario page: reads the recipe from the URL (repairing what it can and saying so),
//! plays it on the canvas, and wires transport, controls, faults, checks, charts, the event
//! log, the note and sharing to the player.

use crate::canvas::{self, Placed, Theme};
use crate::panels;
use crate::player::{PaceMeter, Player};
use faultline_core::{
    fingerprint, shared_mark, ActionKind, NodeId, ParamSpec, Recipe, RecipeError, ScenarioSpec, SharedCheck, Time,
    MICROS_PER_MS,
};
use leptos::html::Canvas;
use leptos::prelude::*;

/// Speed presets (simulated seconds per wall second); 0 means as fast as possible.
pub const SPEEDS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 0.0];

/// Wall milliseconds of each frame the simulation may use while it keeps up.
const SIM_BUDGET_MS: f64 = 10.0;
/// A frame's length (20 a second) that a run which cannot keep up may stretch to,
/// simulating for at most `SLOW_SIM_BUDGET_MS` of it.
const SLOW_FRAME_MS: f64 = 50.0;
const SLOW_SIM_BUDGET_MS: f64 = 40.0;
/// A frame at 60 a second, the pace the page keeps when the run is light.
const NORMAL_FRAME_MS: f64 = 1000.0 / 60.0;
/// A first guess at the rest of a frame (drawing, panels, the browser), before it is measured.
const REST_GUESS_MS: f64 = 10.0;

/// How long this frame may simulate (wall ms), given whether the run is behind and the rest
/// of a frame as measured. The simulation gets 10 ms of a frame; a run that cannot keep up
/// gets what keeps the page at 20 frames a second or more, up to 40 ms, so it plays faster
/// (cache stampede at the seeds' scale 0.66–0.69 → 0.79–0.89×) with the animation still moving.
fn sim_budget(behind: bool, rest_ms: f64) -> f64 {
    if behind {
        (SLOW_FRAME_MS - rest_ms).clamp(SIM_BUDGET_MS, SLOW_SIM_BUDGET_MS)
    } else {
        SIM_BUDGET_MS
    }
}

/// Whether the run is behind after a frame that played `dt_ms` of wall time: it is if the
/// frame did not reach its target, and stays so while reaching it took a bigger share of
/// the frame than a normal frame gives the simulation: 10 ms of a frame that lasts 1/60 s,
/// or longer when drawing, the panels and the browser (`rest_ms`) take more than the rest
/// of it. (Leaving as soon as one long frame reaches its target would give the next frame
/// only the normal budget, and the page would swing between the two instead of settling on
/// the frame length at which the run keeps up.) A tenth of slack keeps a run that needs
/// about what a normal frame gives from flipping between the two with every frame's noise.
fn still_behind(was_behind: bool, reached: bool, used_ms: f64, dt_ms: f64, rest_ms: f64) -> bool {
    let normal_share = SIM_BUDGET_MS / (SIM_BUDGET_MS + rest_ms).max(NORMAL_FRAME_MS);
    !reached || (was_behind && used_ms / dt_ms.max(1.0) >= 0.9 * normal_share)
}

/// Reads `query` as the recipe for scenario `id`.
pub fn load(id: &str, query: &str) -> Result<(&'static ScenarioSpec, Recipe, Vec<RecipeError>), RecipeError> {
    let rest = strip_s(query);
    let url = if rest.is_empty() { format!("s={id}") } else { format!("s={id}&{rest}") };
    let parsed = Recipe::from_url(&url, faultline_scenarios::find)?;
    Ok((parsed.spec, parsed.recipe, parsed.problems))
}

/// The path already names the scenario; an `s=` in the query would be a duplicate key.
fn strip_s(query: &str) -> String {
    query.split('&').filter(|p| !p.starts_with("s=") && !p.is_empty()).collect::<Vec<_>>().join("&")
}

/// The hash route that reproduces `recipe`.
pub fn href(spec: &ScenarioSpec, recipe: &Recipe) -> String {
    crate::route::scenario_href(spec.id(), &strip_s(&recipe.to_query(spec)))
}

/// Everything the page's closures share: all `Copy` handles.
#[derive(Clone, Copy)]
pub struct Page {
    pub player: StoredValue<Player, LocalStorage>,
    pub playing: RwSignal<bool>,
    pub speed: RwSignal<f64>,
    /// Bumped every animation frame that changed something (cheap readers: clock, buttons).
    pub tick: RwSignal<u64>,
    /// Bumped a few times a second and after every user action (panels, charts, log).
    pub slow: RwSignal<u64>,
    pub selected: RwSignal<Option<NodeId>>,
    pub highlight: RwSignal<Option<u64>>,
    pub toast: RwSignal<Option<String>>,
    pub problems: RwSignal<Vec<String>>,
    /// Why the run was stopped before the tab ran out of memory (see `Player::out_of_memory`).
    pub stopped: RwSignal<Option<String>>,
    /// Set when the run does not match the fingerprint its link was shared with.
    pub changed: RwSignal<Option<String>>,
    /// Where a seek is heading: the loop re-simulates towards it within each frame's
    /// budget, so a long jump never freezes the tab.
    pub seeking: RwSignal<Option<Time>>,
    /// The speed actually reached while playing, when it falls short of the chosen one (the
    /// run needs more computing per simulated second than this browser has).
    pub pace: RwSignal<Option<f64>>,
    /// The pace measured a few times a second, averaged over the last second.
    pace_meter: StoredValue<PaceMeter>,
    /// A frame since the last measure spent its whole simulation budget without reaching its
    /// target (see `PaceMeter::measure`).
    starved: StoredValue<bool>,
    /// The run cannot keep up within a normal frame's budget (so this frame may take more):
    /// see `still_behind`.
    behind: StoredValue<bool>,
    /// When the last frame's simulation slice ended (wall ms), and a running average of the
    /// rest of a frame's wall time: drawing, panels, the browser's own work, waiting.
    sim_end: StoredValue<f64>,
    rest_ms: StoredValue<f64>,
    placed: StoredValue<Vec<Placed>, LocalStorage>,
    theme: StoredValue<Theme, LocalStorage>,
    canvas: NodeRef<Canvas>,
    last_wall: StoredValue<f64>,
    last_slow: StoredValue<f64>,
    alive: StoredValue<bool>,
}

/// Publishes when the first frame was drawn (`window.__faultline_first_frame`, ms since
/// navigation start), for the load-time benchmark.
fn mark_first_frame() {
    let Some(w) = web_sys::window() else { return };
    let key = wasm_bindgen::JsValue::from_str("__faultline_first_frame");
    if js_sys::Reflect::has(&w, &key).unwrap_or(true) {
        return;
    }
    let _ = js_sys::Reflect::set(&w, &key, &wall_ms().into());
}

/// Wall-clock milliseconds (the page's `performance.now()`), for budgets and benchmarks.
pub(crate) fn wall_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

impl Page {
    pub fn spec(&self) -> &'static ScenarioSpec {
        self.player.with_value(|p| p.spec)
    }

    /// Something changed outside the animation loop: redraw and refresh everything.
    pub fn refresh(&self) {
        self.draw();
        self.tick.update(|t| *t += 1);
        self.slow.update(|t| *t += 1);
    }

    fn sync_url(&self) {
        let href = self.player.with_value(|p| href(p.spec, p.recipe()));
        if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&href));
        }
    }

    /// Records a user action at the current instant; it lands in the recipe and the URL.
    pub fn act(&self, action: ActionKind) {
        let text = action.to_string();
        match self.player.try_update_value(|p| p.inject(action)) {
            Some(Ok(at)) => self.toast.set(Some(format!("{text} — at {at}"))),
            Some(Err(e)) => self.toast.set(Some(format!("not done: {e}"))),
            None => {}
        }
        self.sync_url();
        self.refresh();
    }

    /// Moves a parameter: live ones act from now; setup ones restart the run from 0 with
    /// the new value (the slider says so beforehand), and the toast says which happened.
    pub fn set_param(&self, p: &'static ParamSpec, value: i64) {
        let set = format!("{} = {value}{}{}", p.label, if p.unit.is_empty() { "" } else { " " }, p.unit);
        match self.player.try_update_value(|pl| pl.set_param(p.id, value)) {
            Some(Ok(None)) => {
                let at = self.player.with_value(|pl| pl.now());
                self.toast.set(Some(format!("set {set} — at {at}")));
            }
            Some(Ok(Some(problems))) => {
                self.toast.set(Some(format!("restarted from 0 with {set}: it is read when the run is built")));
                return self.restarted(problems);
            }
            Some(Err(e)) => self.toast.set(Some(format!("not done: {e}"))),
            None => {}
        }
        self.sync_url();
        self.refresh();
    }

    /// Jumps to `t`: rewinds to a checkpoint now, then catches up frame by frame.
    pub fn seek(&self, t: Time) {
        self.player.update_value(|p| p.rewind_towards(t));
        self.seeking.set(Some(t));
        self.catch_up(wall_ms() + 10.0);
        self.refresh();
    }

    /// Advances towards the seek target until `deadline` (wall ms); clears it when reached.
    fn catch_up(&self, deadline: f64) {
        let Some(target) = self.seeking.get_untracked() else { return };
        let reached = self.player.try_update_value(|p| {
            p.advance(target, || wall_ms() < deadline);
            p.now() >= target.min(p.until)
        });
        if reached.unwrap_or(true) {
            self.seeking.set(None);
        }
    }

    pub fn step(&self, forward: bool) {
        self.playing.set(false);
        self.seeking.set(None);
        self.player.update_value(|p| if forward { p.step() } else { p.step_back() });
        self.refresh();
    }

    /// A new recipe from scratch (seed change): replay from zero.
    pub fn restart_with(&self, recipe: Recipe) {
        let problems = self.player.try_update_value(|p| p.replace(&recipe)).unwrap_or_default();
        self.restarted(problems);
    }

    /// After the run started over: what its recipe had repaired, and a fresh page.
    fn restarted(&self, problems: Vec<RecipeError>) {
        self.problems.set(problems.iter().map(|e| e.to_string()).collect());
        self.stopped.set(None);
        self.sync_url();
        self.refresh();
    }

    pub fn set_speed_index(&self, i: usize) {
        if let Some(s) = SPEEDS.get(i) {
            self.speed.set(*s);
        }
    }

    /// Copies the recipe as a link, with the run's fingerprint as it stands now: whoever
    /// opens it is told if the scenario has changed since and the run is no longer this one.
    pub fn copy_link(&self) {
        let Some(w) = web_sys::window() else { return };
        let page = w.location().href().unwrap_or_default();
        let base = page.split('#').next().unwrap_or_default();
        let href = self.player.with_value(|p| {
            let recipe = Recipe { shared: Some(shared_mark(&*p.run)), ..p.recipe().clone() };
            href(p.spec, &recipe)
        });
        let _ = w.navigator().clipboard().write_text(&format!("{base}{href}"));
        self.toast.set(Some("Link copied: it replays this exact run".into()));
    }

    pub fn click(&self, x: f64, y: f64) {
        let hit = self.placed.with_value(|p| canvas::hit(p, x, y));
        self.selected.set(hit);
        self.draw();
    }

    pub fn draw(&self) {
        let Some(el) = self.canvas.get_untracked() else { return };
        let selected = self.selected.get_untracked();
        // Paths stay lit for about a third of a wall second, whatever the speed.
        let speed = self.speed.get_untracked();
        let afterglow = if speed == 0.0 { 1e6 } else { 300.0 * speed * MICROS_PER_MS as f64 };
        let placed = self.player.with_value(|p| {
            let frame = p.run.frame(2000);
            self.theme.with_value(|t| canvas::draw(&el, &frame, p.spec.layout, selected, t, afterglow))
        });
        self.placed.set_value(placed);
        mark_first_frame();
    }

    /// One animation frame: advance the run within a time budget, draw, refresh panels now and then.
    fn frame(&self) {
        let wall = wall_ms();
        let dt = (wall - self.last_wall.get_value()).clamp(0.0, 100.0);
        self.last_wall.set_value(wall);
        let rest = (wall - self.sim_end.get_value()).clamp(0.0, 100.0);
        self.rest_ms.update_value(|r| *r = 0.8 * *r + 0.2 * rest);
        if self.seeking.get_untracked().is_some() {
            // The user is waiting for the jump: it gets the frames of a run that cannot
            // keep up (20 a second, up to 40 ms of simulation each), so the page stays
            // responsive and shows the jump's progress.
            self.catch_up(wall + sim_budget(true, self.rest_ms.get_value()));
            self.tick.update(|t| *t += 1);
            if self.seeking.get_untracked().is_none() {
                self.slow.update(|t| *t += 1);
            }
        } else if self.playing.get_untracked() {
            let speed = self.speed.get_untracked();
            let behind = self.behind.get_value();
            let budget_end = wall + sim_budget(behind, self.rest_ms.get_value());
            let reached = self.player.try_update_value(|p| {
                let target =
                    if speed == 0.0 { p.until } else { p.now().plus((dt * speed * MICROS_PER_MS as f64) as u64) };
                p.advance(target, || wall_ms() < budget_end)
            });
            self.behind.set_value(still_behind(
                behind,
                reached != Some(false),
                wall_ms() - wall,
                dt,
                self.rest_ms.get_value(),
            ));
            if reached == Some(false) {
                self.starved.set_value(true);
            }
            if self.player.with_value(|p| p.at_end()) {
                self.playing.set(false);
            }
            self.tick.update(|t| *t += 1);
        }
        self.stop_if_out_of_memory();
        self.report_shared();
        self.sim_end.set_value(wall_ms());
        self.draw();
        if wall - self.last_slow.get_value() > 250.0 {
            self.last_slow.set_value(wall);
            if self.playing.get_untracked() {
                self.slow.update(|t| *t += 1);
            }
            self.measure_pace(wall);
        }
    }

    /// A run that grew past the memory the page allows is paused, with a message, before
    /// the tab runs out (which would freeze it with nothing said).
    /// Says what comparing the run with its link's fingerprint found: a changed scenario
    /// stays on the page as a problem; a match is a passing note.
    fn report_shared(&self) {
        let Some(news) = self.player.try_update_value(|p| p.shared_news.take()).flatten() else { return };
        match news {
            SharedCheck::Changed(e) => self.changed.set(Some(e.to_string())),
            SharedCheck::Matches => {
                let at = self.player.with_value(|p| p.recipe().shared.map(|s| s.at)).unwrap_or_default();
                self.toast.set(Some(format!("This is the run that was shared: same fingerprint at {at}")));
            }
            _ => {}
        }
    }

    fn stop_if_out_of_memory(&self) {
        let stopped =
            self.player.try_update_value(|p| std::mem::take(&mut p.out_of_memory).then(|| (p.now(), p.heap_limit)));
        let Some((at, limit)) = stopped.flatten() else { return };
        self.playing.set(false);
        self.seeking.set(None);
        if self.stopped.with_untracked(Option::is_none) {
            self.stopped.set(Some(format!(
                "At {at} this run holds {} MB, more than the {} MB this page lets a run use: its state \
                 grows with every request. Fewer clients or a lower rate go further. Everything up to \
                 here can still be replayed, inspected and shared.",
                crate::heap::live_bytes() >> 20,
                limit >> 20,
            )));
        }
    }

    /// Compares the simulated time played over the last second with the wall time it took;
    /// below 90% of the chosen speed, the page says so instead of silently playing slower.
    fn measure_pace(&self, wall: f64) {
        let now = self.player.with_value(|p| p.now());
        let playing = self.playing.get_untracked() && self.seeking.get_untracked().is_none();
        let speed = self.speed.get_untracked();
        let starved = self.starved.get_value();
        self.starved.set_value(false);
        let pace = self.pace_meter.try_update_value(|m| m.measure(wall, now, playing, starved, speed)).flatten();
        if self.pace.get_untracked() != pace {
            self.pace.set(pace);
        }
    }

    fn schedule(self) {
        request_animation_frame(move || {
            if self.alive.try_get_value().unwrap_or(false) {
                self.frame();
                self.schedule();
            }
        });
    }
}

#[component]
pub fn ScenarioPage(id: String, query: String) -> impl IntoView {
    match load(&id, &query) {
        Err(RecipeError::UnknownScenario { id }) => view! {
            <main class="notfound">
                <h1>"No such scenario"</h1>
                <p>"There is no scenario called " <code>{id}</code> "."</p>
                <p><a href="#/">"Back to the gallery"</a></p>
            </main>
        }
        .into_any(),
        Err(e) => view! {
            <main class="notfound">
                <h1>"This link cannot be read"</h1>
                <p>{e.to_string()}</p>
                <p><a href="#/">"Back to the gallery"</a></p>
            </main>
        }
        .into_any(),
        Ok((spec, recipe, problems)) => page(spec, recipe, problems).into_any(),
    }
}

fn reduced_motion() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-reduced-motion: reduce)").ok().flatten())
        .is_some_and(|m| m.matches())
}

fn page(spec: &'static ScenarioSpec, recipe: Recipe, problems: Vec<RecipeError>) -> impl IntoView {
    let (mut player, more) = Player::new(spec, &recipe);
    player.clock = wall_ms;
    let problems: Vec<String> = problems.iter().chain(&more).map(|p| p.to_string()).collect();
    let page = Page {
        player: StoredValue::new_local(player),
        playing: RwSignal::new(!reduced_motion()),
        speed: RwSignal::new(1.0),
        tick: RwSignal::new(0),
        slow: RwSignal::new(0),
        selected: RwSignal::new(None),
        highlight: RwSignal::new(None),
        toast: RwSignal::new(None),
        problems: RwSignal::new(problems),
        stopped: RwSignal::new(None),
        changed: RwSignal::new(None),
        seeking: RwSignal::new(None),
        pace: RwSignal::new(None),
        pace_meter: StoredValue::new(PaceMeter::default()),
        starved: StoredValue::new(false),
        behind: StoredValue::new(false),
        sim_end: StoredValue::new(wall_ms()),
        rest_ms: StoredValue::new(REST_GUESS_MS),
        placed: StoredValue::new_local(Vec::new()),
        theme: StoredValue::new_local(Theme::read()),
        canvas: NodeRef::new(),
        last_wall: StoredValue::new(wall_ms()),
        last_slow: StoredValue::new(0.0),
        alive: StoredValue::new(true),
    };
    page.sync_url();
    page.schedule();
    let keys = window_event_listener(leptos::ev::keydown, move |ev| keyboard(page, ev));
    on_cleanup(move || {
        page.alive.set_value(false);
        keys.remove();
    });
    let canvas_ref = page.canvas;
    let on_canvas_click = move |ev: web_sys::MouseEvent| page.click(ev.offset_x() as f64, ev.offset_y() as f64);
    view! {
        <main class="player">
            <div class="player-head">
                <a href="#/" class="back">"← Gallery"</a>
                <h1>{spec.info.title}</h1>
                <span class="category">{spec.info.category}</span>
            </div>
            {move || {
                let list = page.problems.get();
                (!list.is_empty()).then(|| view! {
                    <div class="banner" role="alert">
                        <strong>"Parts of this link were repaired; the run uses safe values:"</strong>
                        <ul>{list.into_iter().map(|p| view! { <li>{p}</li> }).collect::<Vec<_>>()}</ul>
                        <button on:click=move |_| page.problems.set(Vec::new())>"Dismiss"</button>
                    </div>
                })
            }}
            {move || page.changed.get().map(|why| view! {
                <div class="banner changed" role="alert">
                    <strong>"Not the run that was shared"</strong>
                    <p>{why}</p>
                    <button on:click=move |_| page.changed.set(None)>"Dismiss"</button>
                </div>
            })}
            {move || page.stopped.get().map(|why| view! {
                <div class="banner stopped" role="alert">
                    <strong>"Stopped before this tab runs out of memory"</strong>
                    <p>{why}</p>
                    <button on:click=move |_| page.stopped.set(None)>"Dismiss"</button>
                </div>
            })}
            <p class="summary">{spec.info.summary}</p>
            <div class="stage">
                <section class="canvas-wrap">
                    <canvas node_ref=canvas_ref class="sim" on:click=on_canvas_click aria-label="The simulation"></canvas>
                    {panels::node_popover(page)}
                    {move || page.toast.get().map(|t| view! {
                        <div class="toast" role="status" on:click=move |_| page.toast.set(None)>{t}</div>
                    })}
                </section>
                <aside class="side">
                    {panels::controls(page)}
                    {panels::faults(page)}
                </aside>
            </div>
            {transport(page)}
            <div class="lower">
                <section class="checks-panel">
                    <h2>"Checks"</h2>
                    {panels::checks(page)}
                </section>
                <section class="charts-panel">
                    <h2>"Headline metrics"</h2>
                    <div class="charts">{move || {
                        page.slow.get();
                        page.player.with_value(|p| crate::charts::charts(p.run.as_ref(), p.until.micros()))
                    }}</div>
                </section>
            </div>
            <div class="lower">
                <section class="log-panel">
                    <h2>"Event log"</h2>
                    {panels::event_log(page)}
                </section>
                <section class="note-panel">
                    {panels::note(spec)}
                </section>
            </div>
        </main>
    }
}

fn keyboard(page: Page, ev: web_sys::KeyboardEvent) {
    let target_is_input = ev
        .target()
        .and_then(|t| wasm_bindgen::JsCast::dyn_into::<web_sys::HtmlElement>(t).ok())
        .is_some_and(|e| matches!(e.tag_name().as_str(), "INPUT" | "SELECT" | "TEXTAREA"));
    if target_is_input || ev.ctrl_key() || ev.meta_key() || ev.alt_key() {
        return;
    }
    match ev.key().as_str() {
        " " => {
            ev.prevent_default();
            page.playing.update(|p| *p = !*p);
        }
        "ArrowRight" => page.step(true),
        "ArrowLeft" => page.step(false),
        k if k.len() == 1 && k.as_bytes()[0].is_ascii_digit() && k != "0" => {
            page.set_speed_index((k.as_bytes()[0] - b'1') as usize)
        }
        _ => {}
    }
}

fn speed_label(s: f64) -> String {
    if s == 0.0 {
        "max".into()
    } else {
        format!("{s}×")
    }
}

fn transport(page: Page) -> impl IntoView {
    let until = page.player.with_value(|p| p.until);
    let until_ms = until.as_ms();
    let clock = move || {
        page.tick.get();
        page.player.with_value(|p| format!("{:.3} s / {} s", p.now().as_secs_f64(), p.until.micros() / 1_000_000))
    };
    let stats = move || {
        page.tick.get();
        page.player.with_value(|p| (p.run.events(), fingerprint(p.run.trace().hash())))
    };
    let markers = move || {
        page.slow.get();
        page.player.with_value(|p| {
            p.run
                .timeline()
                .into_iter()
                .filter(|(t, _)| *t <= until)
                .map(|(t, text)| {
                    let left = format!("left: {:.3}%", t.micros() as f64 / until.micros().max(1) as f64 * 100.0);
                    let seek_to = t;
                    view! { <button class="marker" style=left title=format!("{t}: {text}") on:click=move |_| page.seek(seek_to)></button> }
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="transport" aria-label="Transport">
            <div class="buttons">
                <button title="Back to the start" on:click=move |_| page.seek(Time::ZERO)>"↺ Start"</button>
                <button title="Step back one event (←)" on:click=move |_| page.step(false)>"◀ Back"</button>
                <button class="play" title="Play / pause (space)" on:click=move |_| page.playing.update(|p| *p = !*p)>
                    {move || if page.playing.get() { "❚❚ Pause" } else { "▶ Play" }}
                </button>
                <button title="Step one event (→)" on:click=move |_| page.step(true)>"Step ▶"</button>
                <button class="to-end" title="Run to the end" on:click=move |_| { page.seek(until); page.playing.set(false); }>"End ▶▶"</button>
                <label class="speed">"Speed "
                    <select on:change=move |ev| {
                        let i: usize = event_target_value(&ev).parse().unwrap_or(3);
                        page.set_speed_index(i);
                    }>
                        {SPEEDS.iter().enumerate().map(|(i, s)| {
                            let sel = move || page.speed.get() == SPEEDS[i];
                            view! { <option value=i.to_string() selected=sel>{speed_label(*s)}</option> }
                        }).collect::<Vec<_>>()}
                    </select>
                </label>
                <span class="clock">{clock}</span>
                {move || page.seeking.get().map(|t| view! {
                    <span class="seeking" role="status">{format!("re-simulating to {t}…")}</span>
                })}
                {move || page.pace.get().map(|x| view! {
                    <span class="pace" role="status"
                        title="This run needs more computing per simulated second than this browser has: it plays slower than the chosen speed. Fewer clients or a lower rate play at full speed.">
                        {format!("playing at {}× — can't keep up", if x < 0.095 { format!("{x:.2}") } else { format!("{x:.1}") })}
                    </span>
                })}
                <span class="stats">{move || format!("{} events · fingerprint ", stats().0)}
                    <code class="fingerprint" title="Same recipe, same time → same fingerprint">{move || stats().1}</code>
                </span>
                <button class="share" on:click=move |_| page.copy_link()>"Share this run"</button>
            </div>
            <div class="timeline">
                <div class="markers">{markers}</div>
                <input type="range" min="0" max=until_ms.to_string() step="10" aria-label="Timeline"
                    prop:value=move || { page.tick.get(); page.player.with_value(|p| p.now().as_ms()).to_string() }
                    on:input=move |ev| {
                        let ms: u64 = event_target_value(&ev).parse().unwrap_or(0);
                        page.playing.set(false);
                        page.seek(Time::from_ms(ms));
                    } />
            </div>
        </section>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_that_cannot_keep_up_gets_more_of_each_frame() {
        assert_eq!(sim_budget(false, 5.0), SIM_BUDGET_MS);
        assert_eq!(sim_budget(true, 13.0), 37.0, "a 50 ms frame");
        assert_eq!(sim_budget(true, 2.0), SLOW_SIM_BUDGET_MS, "never more than 40 ms");
        assert_eq!(sim_budget(true, 45.0), SIM_BUDGET_MS, "never less than when keeping up");
    }

    #[test]
    fn a_run_stays_behind_until_a_normal_frame_would_do() {
        assert!(still_behind(false, false, 10.0, 16.7, 5.0), "missed its target");
        assert!(!still_behind(false, true, 9.0, 16.7, 5.0), "kept up");
        // A long frame that reached its target with 30 ms of simulation for 50 ms played
        // needs 60% of the wall time: a normal frame gives 10 ms of 16.7.
        assert!(still_behind(true, true, 30.0, 50.0, 5.0));
        assert!(!still_behind(true, true, 20.0, 50.0, 5.0), "40%: a normal frame keeps up");
        assert!(still_behind(true, true, 28.0, 50.0, 5.0), "56%: within a tenth of the 60% it gives");
        assert!(!still_behind(false, true, 30.0, 50.0, 5.0), "only a run that was behind stays so");
        // When the rest of a frame takes 12 ms, a normal frame lasts 22 ms and gives the
        // simulation 45% of it: a run that needs 59% stays behind (payments at the seeds'
        // scale had flipped back and forth, losing a frame's worth of playing each time).
        assert!(still_behind(true, true, 13.0, 22.0, 12.0));
        assert!(!still_behind(true, true, 8.0, 22.0, 12.0), "36%: a normal frame keeps up");
    }
}
