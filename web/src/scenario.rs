//! The scenario page: starts the scenario's simulation worker, shows what it repaired in the
//! link, draws the frames it sends on the canvas, and wires transport, controls, faults,
//! checks, charts, the event log, the note and sharing to commands for it.

use crate::canvas::{self, Placed, Theme};
use crate::panels;
use crate::remote::{worker_url, Conn, Heard, ALL_WORKER_URL};
use faultline_core::recipe::encode_actions;
use faultline_core::{fingerprint, Action, ActionKind, Frame, NodeId, ParamSpec, ScenarioSpec, Time, MICROS_PER_MS};
use faultline_protocol::{Command, Full, LogFilter, Reply, Snapshot};
use leptos::html::Canvas;
use leptos::prelude::*;

/// Speed presets (simulated seconds per wall second); 0 means as fast as possible.
pub const SPEEDS: [f64; 9] = [0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 100.0, 0.0];

/// How often (wall ms) the slow parts (event log, charts, timeline) are refreshed while the
/// run moves.
const SLOW_EVERY_MS: f64 = 250.0;
/// The most event-log entries shown.
const LOG_ROWS: u32 = 150;

pub use faultline_core::recipe::without_scenario as strip_s;

/// What the page knows of the run: the worker's latest status. The page never reads a
/// recipe itself (the worker does, and says what the controls show), so it carries no
/// recipe parser.
pub struct Mirror {
    pub spec: &'static ScenarioSpec,
    /// The recipe as the link's query (without the scenario): what the URL shows.
    query: String,
    /// The strategy in force now, the seed, and each parameter's current value.
    pub strategy: String,
    pub seed: u64,
    pub params: Vec<i64>,
    pub now: Time,
    pub until: Time,
    pub events: u64,
    pub hash: u64,
    pub frame: Frame,
    /// The latest event log, charts and timeline.
    pub full: Full,
    /// A frame arrived that is not drawn yet.
    fresh: bool,
}

impl Mirror {
    fn new(spec: &'static ScenarioSpec, query: String) -> Mirror {
        Mirror {
            spec,
            query,
            strategy: spec.default_strategy().id.to_string(),
            seed: 1,
            params: spec.params.iter().map(|p| p.default).collect(),
            now: Time::ZERO,
            until: Time(spec.default_until),
            events: 0,
            hash: 0,
            frame: Frame {
                now: Time::ZERO,
                nodes: Vec::new(),
                messages: Vec::new(),
                in_flight: 0,
                cuts: Vec::new(),
                checks: Vec::new(),
                lost_fade: 0,
                recent: Vec::new(),
            },
            full: Full::default(),
            fresh: false,
        }
    }
}

/// Everything the page's closures share: all `Copy` handles.
#[derive(Clone, Copy)]
pub struct Page {
    conn: StoredValue<Option<Conn>, LocalStorage>,
    pub mirror: StoredValue<Option<Mirror>, LocalStorage>,
    pub playing: RwSignal<bool>,
    pub speed: RwSignal<f64>,
    /// Bumped with every status (cheap readers: clock, buttons).
    pub tick: RwSignal<u64>,
    /// Bumped when the slow parts arrive, and after every user action (panels, charts, log).
    pub slow: RwSignal<u64>,
    pub selected: RwSignal<Option<NodeId>>,
    /// The node the keyboard is on in the picture (arrow keys), drawn with a focus ring.
    pub focused: RwSignal<Option<NodeId>>,
    /// What the live region says now: a node the keyboard chose, a check that broke or holds again.
    pub say: RwSignal<String>,
    /// The text view of the picture is shown (screen readers always have it).
    pub text_view: RwSignal<bool>,
    /// The "?" sheet of keys is open.
    pub keys_open: RwSignal<bool>,
    /// Bumped when the text view is due again (see `access::follow`).
    pub calm: RwSignal<u64>,
    /// Each check was violated at the last status (what the live region compares with).
    pub check_states: StoredValue<Vec<bool>>,
    pub highlight: RwSignal<Option<u64>>,
    pub toast: RwSignal<Option<String>>,
    pub problems: RwSignal<Vec<String>>,
    /// Why the run was stopped before the worker ran out of memory.
    pub stopped: RwSignal<Option<String>>,
    /// Set when the run does not match the fingerprint its link was shared with.
    pub changed: RwSignal<Option<String>>,
    /// Where a seek is heading while the worker re-simulates towards it.
    pub seeking: RwSignal<Option<Time>>,
    /// The speed actually reached while playing, when it falls short of the chosen one.
    pub pace: RwSignal<Option<f64>>,
    /// The event log's filters.
    pub log_node: RwSignal<Option<NodeId>>,
    pub log_kind: RwSignal<String>,
    /// A status was asked for and has not come yet.
    want_out: StoredValue<bool>,
    /// The slow parts are wanted with the next status (a user action, a filter changed).
    want_full: StoredValue<bool>,
    last_full: StoredValue<f64>,
    placed: StoredValue<Vec<Placed>, LocalStorage>,
    theme: StoredValue<Theme, LocalStorage>,
    pub canvas: NodeRef<Canvas>,
    alive: StoredValue<bool>,
    /// The page is drawn: the scenario opened and its first status came.
    pub shown: RwSignal<bool>,
    /// The link cannot be opened (`Some(unknown scenario)` or `None`) and why.
    pub unreadable: RwSignal<Option<(Option<String>, String)>>,
    /// Play was paused because the tab was hidden: it resumes when the tab is shown again.
    resume_on_show: StoredValue<bool>,
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

/// Wall-clock milliseconds (the page's `performance.now()`).
pub(crate) fn wall_ms() -> f64 {
    web_sys::window().and_then(|w| w.performance()).map_or(0.0, |p| p.now())
}

impl Page {
    pub fn spec(&self) -> &'static ScenarioSpec {
        self.mirror.with_value(|m| m.as_ref().map(|m| m.spec)).expect("the page is shown once the scenario opened")
    }

    /// Reads the mirrored run.
    pub fn with<T>(&self, f: impl FnOnce(&Mirror) -> T) -> Option<T> {
        self.mirror.try_with_value(|m| m.as_ref().map(f)).flatten()
    }

    pub fn now(&self) -> Time {
        self.with(|m| m.now).unwrap_or_default()
    }

    fn post(&self, cmd: Command) {
        self.conn.with_value(|c| {
            if let Some(c) = c {
                c.post(&cmd)
            }
        });
    }

    /// Asks for the next status; with the slow parts when they are due.
    fn want(&self, force: bool) {
        let due = wall_ms() - self.last_full.get_value() >= SLOW_EVERY_MS
            && (self.playing.get_untracked() || self.seeking.get_untracked().is_some());
        let full = force || self.want_full.get_value() || due;
        if !full && self.want_out.get_value() {
            return;
        }
        if full {
            self.want_full.set_value(false);
            self.last_full.set_value(wall_ms());
        }
        let log =
            LogFilter { node: self.log_node.get_untracked(), kind: self.log_kind.get_untracked(), limit: LOG_ROWS };
        self.want_out.set_value(true);
        self.post(Command::Want { full, log });
    }

    /// The slow parts again, now (the log's filter changed).
    pub fn refresh_slow(&self) {
        self.changed_by_user();
    }

    /// Something the user did: the panels want refreshing with the next status.
    fn changed_by_user(&self) {
        self.want_full.set_value(true);
        self.want(true);
    }

    fn sync_url(&self) {
        let Some(href) = self.with(|m| crate::route::scenario_href(m.spec.id(), &m.query)) else { return };
        if let Some(h) = web_sys::window().and_then(|w| w.history().ok()) {
            let _ = h.replace_state_with_url(&wasm_bindgen::JsValue::NULL, "", Some(&href));
        }
    }

    /// Records a user action at the current instant; it lands in the recipe and the URL.
    pub fn act(&self, action: ActionKind) {
        self.post(Command::Act { action: encode_actions(&[Action { at: Time::ZERO, kind: action }]) });
        self.changed_by_user();
    }

    /// Moves a parameter: live ones act from now; setup ones restart the run from 0 with
    /// the new value (the slider says so beforehand, the toast says which happened).
    pub fn set_param(&self, p: &'static ParamSpec, value: i64) {
        self.post(Command::SetParam { id: p.id.to_string(), value });
        self.changed_by_user();
    }

    /// Jumps to `t`: the worker rewinds to a checkpoint, then catches up slice by slice.
    pub fn seek(&self, t: Time) {
        self.seeking.set(Some(t));
        self.post(Command::Seek { to: t.micros() });
        self.changed_by_user();
    }

    pub fn step(&self, forward: bool) {
        self.playing.set(false);
        self.seeking.set(None);
        self.post(Command::Step { forward });
        self.changed_by_user();
    }

    pub fn set_playing(&self, on: bool) {
        self.playing.set(on);
        self.post(if on { Command::Play { speed: self.speed.get_untracked() } } else { Command::Pause });
        self.want(false);
    }

    fn on_visibility(&self) {
        let hidden = web_sys::window().and_then(|w| w.document()).is_some_and(|d| d.hidden());
        if hidden && self.playing.get_untracked() {
            self.resume_on_show.set_value(true);
            self.set_playing(false);
        } else if !hidden && self.resume_on_show.get_value() {
            self.resume_on_show.set_value(false);
            self.set_playing(true);
        }
    }

    pub fn toggle_playing(&self) {
        self.set_playing(!self.playing.get_untracked());
    }

    /// Starts over from zero: with another seed, or without the faults and changes made.
    pub fn restart(&self, seed: Option<u64>, forget_actions: bool) {
        self.post(Command::Restart { seed, forget_actions });
        self.changed_by_user();
    }

    pub fn set_speed_index(&self, i: usize) {
        if let Some(s) = SPEEDS.get(i) {
            self.speed.set(*s);
            if self.playing.get_untracked() {
                self.post(Command::Play { speed: *s });
            }
        }
    }

    /// Asks for the recipe with the run's fingerprint as it stands now: whoever opens the
    /// link is told if the scenario has changed since and the run is no longer this one.
    pub fn copy_link(&self) {
        self.post(Command::Share);
    }

    fn copy_shared(&self, query: String) {
        let Some(w) = web_sys::window() else { return };
        let Some(id) = self.with(|m| m.spec.id()) else { return };
        let page = w.location().href().unwrap_or_default();
        let base = page.split('#').next().unwrap_or_default();
        let _ = w.navigator().clipboard().write_text(&format!("{base}{}", crate::route::scenario_href(id, &query)));
        self.toast.set(Some("Link copied: it replays this exact run".into()));
    }

    pub fn click(&self, x: f64, y: f64) {
        let hit = self.placed.with_value(|p| canvas::hit(p, x, y));
        self.selected.set(hit);
        if hit.is_some() {
            self.focused.set(hit);
        }
        self.draw();
    }

    /// Which nodes the picture draws as dots in a crowd (no label of their own).
    pub fn dots(&self) -> Vec<bool> {
        self.placed.with_value(|p| p.iter().map(|p| p.dot).collect())
    }

    pub fn draw(&self) {
        let Some(el) = self.canvas.get_untracked() else { return };
        let selected = self.selected.get_untracked();
        // Paths stay lit for about a third of a wall second, whatever the speed.
        let speed = self.speed.get_untracked();
        let afterglow = if speed == 0.0 { 1e6 } else { 300.0 * speed * MICROS_PER_MS as f64 };
        let placed = self.mirror.with_value(|m| {
            let m = m.as_ref()?;
            Some(self.theme.with_value(|t| canvas::draw(&el, &m.frame, m.spec.layout, selected, t, afterglow)))
        });
        if let Some(placed) = placed {
            if let Some(n) = self.focused.get_untracked().filter(|_| crate::access::canvas_focused()) {
                self.theme.with_value(|t| canvas::focus_ring(&el, &placed, n, t));
            }
            self.placed.set_value(placed);
            mark_first_frame();
        }
    }

    /// What the worker said.
    fn hear(&self, heard: Heard) {
        let reply = match heard {
            Heard::Reply(r) => r,
            Heard::Failed(why) => return self.fail(&why),
        };
        match reply {
            Reply::Ready { protocol } if protocol != faultline_protocol::PROTOCOL => self.fail(&format!(
                "This page and its simulator are from different versions (protocol {} and {protocol}): reload the page.",
                faultline_protocol::PROTOCOL
            )),
            Reply::Ready { .. } => {}
            Reply::Opened { spec, query, problems } => match spec.leak() {
                Ok(spec) => {
                    self.mirror.set_value(Some(Mirror::new(spec, query)));
                    self.problems.set(problems);
                    if self.playing.get_untracked() {
                        self.post(Command::Play { speed: self.speed.get_untracked() });
                    }
                    self.want(true);
                }
                Err(e) => self.fail(&e.to_string()),
            },
            Reply::Unreadable { unknown, message } => self.unreadable.set(Some((unknown, message))),
            Reply::Status(s) => self.status(*s),
            Reply::Toast(t) => self.toast.set(Some(t)),
            Reply::Restarted { problems } => {
                self.problems.set(problems);
                self.stopped.set(None);
            }
            Reply::Shared { query } => self.copy_shared(query),
            Reply::BenchRow(_) | Reply::BenchDone => {}
            // A fatal one reaches `fail` as `Heard::Failed` (see `Conn`).
            Reply::Error { message, .. } => self.toast.set(Some(format!("not done: {message}"))),
        }
    }

    /// The worker failed: the error panel, with the recipe from the URL.
    fn fail(&self, why: &str) {
        self.alive.set_value(false);
        crate::remote::give_up(self.conn, why);
    }

    fn status(&self, s: Snapshot) {
        self.want_out.set_value(false);
        let stale = self.conn.with_value(|c| c.as_ref().is_some_and(|c| c.sent() > s.handled));
        let mut query_changed = false;
        let got_full = s.full.is_some();
        self.mirror.update_value(|m| {
            let Some(m) = m else { return };
            if m.query != s.query {
                m.query = s.query;
                query_changed = true;
            }
            (m.strategy, m.seed, m.params) = (s.strategy, s.seed, s.params);
            (m.now, m.until, m.events, m.hash) = (Time(s.now), Time(s.until), s.events, s.hash);
            m.frame = s.frame;
            if let Some(full) = s.full {
                m.full = full;
            }
            m.fresh = true;
        });
        if query_changed {
            self.sync_url();
        }
        let moving = |p: &Page| p.playing.get_untracked() || p.seeking.get_untracked().is_some();
        let was_moving = moving(self);
        if !stale {
            if self.playing.get_untracked() != s.playing {
                self.playing.set(s.playing);
            }
            let seeking = s.seeking.map(Time);
            if self.seeking.get_untracked() != seeking {
                self.seeking.set(seeking);
            }
        }
        // The run came to rest (the end, a pause, a seek's target): the log and charts as
        // they stand there, not as they stood at the last refresh.
        if was_moving && !moving(self) && !got_full {
            self.want_full.set_value(true);
        }
        crate::access::follow(*self, moving(self));
        if self.pace.get_untracked() != s.pace {
            self.pace.set(s.pace);
        }
        if let Some(why) = s.stopped.filter(|_| self.stopped.with_untracked(Option::is_none)) {
            self.stopped.set(Some(why));
        }
        match s.shared_news {
            Some((true, text)) => self.toast.set(Some(text)),
            Some((false, why)) => self.changed.set(Some(why)),
            None => {}
        }
        if !self.shown.get_untracked() {
            self.shown.set(true);
        }
        self.tick.update(|t| *t += 1);
        // A changed recipe changes the controls (a slider's value, the strategy) at once.
        if got_full || query_changed {
            self.slow.update(|t| *t += 1);
        }
    }

    /// One animation frame: draw what arrived, ask for more.
    fn frame(&self) {
        let fresh = self.mirror.try_update_value(|m| m.as_mut().is_some_and(|m| std::mem::take(&mut m.fresh)));
        if fresh == Some(true) {
            self.draw();
        }
        if self.shown.get_untracked() {
            self.want(false);
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

fn reduced_motion() -> bool {
    web_sys::window()
        .and_then(|w| w.match_media("(prefers-reduced-motion: reduce)").ok().flatten())
        .is_some_and(|m| m.matches())
}

#[component]
pub fn ScenarioPage(id: String, query: String) -> impl IntoView {
    let page = Page {
        conn: StoredValue::new_local(None),
        mirror: StoredValue::new_local(None),
        playing: RwSignal::new(!reduced_motion()),
        speed: RwSignal::new(1.0),
        tick: RwSignal::new(0),
        slow: RwSignal::new(0),
        selected: RwSignal::new(None),
        focused: RwSignal::new(None),
        say: RwSignal::new(String::new()),
        text_view: RwSignal::new(false),
        keys_open: RwSignal::new(false),
        calm: RwSignal::new(0),
        check_states: StoredValue::new(Vec::new()),
        highlight: RwSignal::new(None),
        toast: RwSignal::new(None),
        problems: RwSignal::new(Vec::new()),
        stopped: RwSignal::new(None),
        changed: RwSignal::new(None),
        seeking: RwSignal::new(None),
        pace: RwSignal::new(None),
        log_node: RwSignal::new(None),
        log_kind: RwSignal::new(String::new()),
        want_out: StoredValue::new(false),
        want_full: StoredValue::new(true),
        last_full: StoredValue::new(0.0),
        placed: StoredValue::new_local(Vec::new()),
        theme: StoredValue::new_local(Theme::read()),
        canvas: NodeRef::new(),
        alive: StoredValue::new(true),
        shown: RwSignal::new(false),
        unreadable: RwSignal::new(None),
        resume_on_show: StoredValue::new(false),
    };
    let open = Command::Open { id: id.clone(), query: strip_s(&query) };
    let on = move |heard: Heard| {
        if page.alive.try_get_value().unwrap_or(false) {
            if let Heard::Reply(Reply::Ready { protocol: faultline_protocol::PROTOCOL }) = &heard {
                page.post(open.clone());
            }
            page.hear(heard);
        }
    };
    if crate::gallery::CARDS.iter().any(|c| c.id == id) {
        match Conn::start(&worker_url(&id), on) {
            Ok(conn) => page.conn.set_value(Some(conn)),
            Err(why) => page.fail(&why),
        }
    } else {
        crate::remote::forget_early();
        page.unreadable.set(Some((Some(id), String::new())));
    }
    page.schedule();
    let keys = window_event_listener(leptos::ev::keydown, move |ev| keyboard(page, ev));
    // A hidden tab draws nothing, so it should simulate nothing either: the run pauses while
    // the tab is hidden (no CPU spent, no checkpoints piling up) and plays on when it is shown.
    let visibility = window_event_listener(leptos::ev::visibilitychange, move |_| page.on_visibility());
    on_cleanup(move || {
        page.alive.set_value(false);
        page.conn.set_value(None);
        keys.remove();
        visibility.remove();
    });
    move || {
        if let Some((unknown, message)) = page.unreadable.get() {
            return match unknown {
                Some(id) => view! {
                    <main class="notfound">
                        <h1>"No such scenario"</h1>
                        <p>"There is no scenario called " <code>{id}</code> "."</p>
                        <p><a href="#/">"Back to the gallery"</a></p>
                    </main>
                }
                .into_any(),
                None => view! {
                    <main class="notfound">
                        <h1>"This link cannot be read"</h1>
                        <p>{message}</p>
                        <p><a href="#/">"Back to the gallery"</a></p>
                    </main>
                }
                .into_any(),
            };
        }
        if !page.shown.get() {
            return view! { <main class="player loading"><p class="boot-msg">"Starting the simulator…"</p></main> }
                .into_any();
        }
        untrack(|| shown(page)).into_any()
    }
}

/// `#/debug/worker-panic`: a worker told to panic, so the tests can see the page report it.
#[component]
pub fn WorkerPanic() -> impl IntoView {
    let conn = StoredValue::new_local(None::<Conn>);
    let on = move |heard: Heard| match heard {
        Heard::Reply(Reply::Ready { .. }) => {
            conn.with_value(|c| c.as_ref().map(|c| c.post(&Command::Panic))).unwrap_or(())
        }
        Heard::Reply(_) => {}
        Heard::Failed(why) => {
            crate::remote::give_up(conn, &why);
        }
    };
    match Conn::start(ALL_WORKER_URL, on) {
        Ok(c) => conn.set_value(Some(c)),
        Err(why) => crate::show_panic(&why),
    }
    view! { <main class="player loading"><p class="boot-msg">"Asking the simulator to crash…"</p></main> }
}

fn shown(page: Page) -> impl IntoView {
    let spec = page.spec();
    page.sync_url();
    let canvas_ref = page.canvas;
    // The canvas is in the document after this view is mounted: draw the frame already here.
    request_animation_frame(move || {
        page.draw();
        crate::access::listen(page);
    });
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
                        <canvas node_ref=canvas_ref class="sim" tabindex="0" on:click=on_canvas_click
                            aria-label="The simulation. Arrow keys choose a node, Enter opens its faults; the text view below describes it."
                            aria-describedby="canvas-text"
    ></canvas>
                        {panels::node_popover(page)}
                        {crate::access::keys_sheet(page)}
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
                {crate::access::text_view(page)}
                <div class="lower">
                    <section class="checks-panel">
                        <h2>"Checks"</h2>
                        {panels::checks(page)}
                    </section>
                    <section class="charts-panel">
                        <h2>"Headline metrics"</h2>
                        <div class="charts">{move || {
                            page.slow.get();
                            page.with(|m| {
                                // Where any check was violated, and every action, on each chart's time axis.
                                let bands: Vec<(u64, u64)> = m.frame.checks.iter().flat_map(|c| &c.bands)
                                    .map(|b| (b.from.micros(), b.to.unwrap_or(m.now).micros()))
                                    .collect();
                                let marks = crate::charts::Marks { bands: &bands, actions: &m.full.timeline };
                                crate::charts::charts(m.spec, &m.full.charts, m.now.micros(), m.until.micros(), marks)
                            })
                        }}</div>
                    </section>
                </div>
                <div class="lower">
                    <section class="log-panel">
                        <h2>"Event log"</h2>
                        {panels::event_log(page)}
                    </section>
                    <section class="note-panel">
                        {panels::note(page)}
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
            page.toggle_playing();
        }
        "?" => page.keys_open.update(|open| *open = !*open),
        "Escape" => {
            if page.keys_open.get_untracked() {
                page.keys_open.set(false);
            } else if page.selected.get_untracked().is_some() {
                page.selected.set(None);
                crate::access::focus("canvas.sim");
            }
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
    let until = page.with(|m| m.until).unwrap_or_default();
    let until_ms = until.as_ms();
    let clock = move || {
        page.tick.get();
        page.with(|m| format!("{:.3} s / {} s", m.now.as_secs_f64(), m.until.micros() / 1_000_000))
    };
    let stats = move || {
        page.tick.get();
        page.with(|m| (m.events, fingerprint(m.hash))).unwrap_or_default()
    };
    let markers = move || {
        page.slow.get();
        page.with(|m| {
            m.full
                .timeline
                .iter()
                .map(|(t, text)| (Time(*t), text.clone()))
                .filter(|(t, _)| *t <= until)
                .map(|(t, text)| {
                    let left = format!("left: {:.3}%", t.micros() as f64 / until.micros().max(1) as f64 * 100.0);
                    let seek_to = t;
                    view! { <button class="marker" style=left title=format!("{t}: {text}") on:click=move |_| page.seek(seek_to)></button> }
                })
                .collect::<Vec<_>>()
        })
    };
    // A strip a check, with a red band where it was violated (to now, for one still open).
    let bands = move || {
        page.tick.get();
        page.with(|m| {
            let end = |t: Option<Time>| t.unwrap_or(m.now).min(until).micros();
            m.frame
                .checks
                .iter()
                .filter(|c| !c.bands.is_empty())
                .map(|c| {
                    let spans = c.bands.iter().filter(|b| b.from <= until).map(|b| {
                        let (from, to) = (b.from.micros(), end(b.to));
                        let pct = |us: u64| us as f64 / until.micros().max(1) as f64 * 100.0;
                        let style =
                            format!("left: {:.3}%; width: max(2px, {:.3}%)", pct(from), pct(to.saturating_sub(from)));
                        let title = match b.to {
                            Some(to) => format!("{}: violated {}–{}", c.label, b.from, to),
                            None => format!("{}: violated since {}", c.label, b.from),
                        };
                        view! { <span class="band" style=style title=title></span> }
                    });
                    view! { <div class="band-row">{spans.collect::<Vec<_>>()}</div> }
                })
                .collect::<Vec<_>>()
        })
    };
    view! {
        <section class="transport" aria-label="Transport">
            <div class="buttons">
                <button title="Back to the start" on:click=move |_| page.seek(Time::ZERO)>"↺ Start"</button>
                <button title="Step back one event (←)" on:click=move |_| page.step(false)>"◀ Back"</button>
                <button class="play" title="Play / pause (space)" on:click=move |_| page.toggle_playing()>
                    {move || if page.playing.get() { "❚❚ Pause" } else { "▶ Play" }}
                </button>
                <button title="Step one event (→)" on:click=move |_| page.step(true)>"Step ▶"</button>
                <button class="to-end" title="Run to the end" on:click=move |_| { page.set_playing(false); page.seek(until); }>"End ▶▶"</button>
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
                {crate::access::buttons(page)}
            </div>
            <div class="timeline">
                <div class="markers">{markers}</div>
                <div class="bands" aria-hidden="true">{bands}</div>
                <input type="range" min="0" max=until_ms.to_string() step="10" aria-label="Timeline"
                    prop:value=move || { page.tick.get(); page.now().as_ms().to_string() }
                    on:input=move |ev| {
                        let ms: u64 = event_target_value(&ev).parse().unwrap_or(0);
                        page.set_playing(false);
                        page.seek(Time::from_ms(ms));
                    } />
            </div>
        </section>
    }
}
