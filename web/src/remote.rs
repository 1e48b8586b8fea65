//! The page's connection to its simulation worker: starts it, posts commands, hands each reply (or failure) to the page.

use faultline_protocol::{Command, Reply};
use std::cell::Cell;
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{ErrorEvent, Event, MessageEvent, Worker, WorkerOptions, WorkerType};

/// How long a worker may take to say it is ready before the page gives up on it.
const READY_TIMEOUT_MS: i32 = 20_000;

/// The worker module that carries every scenario (the engine bench).
pub const ALL_WORKER_URL: &str = "./sim-all_loader.js";

/// The worker module of one scenario (see `web/engine/src/bin`): a scenario page downloads
/// its own scenario's code only.
pub fn worker_url(id: &str) -> String {
    format!("./sim-{id}_loader.js")
}

/// A running worker. Dropping it terminates the worker (and frees its memory).
pub struct Conn {
    worker: Worker,
    sent: Cell<u64>,
    /// Not dropped yet: an adopted worker's handlers are attached a moment after `start`.
    alive: Rc<Cell<bool>>,
    _on_message: Closure<dyn Fn(MessageEvent)>,
    _on_error: Closure<dyn Fn(Event)>,
    _on_bad: Closure<dyn Fn(MessageEvent)>,
}

/// What the worker said, or why it can say nothing more.
pub enum Heard {
    Reply(Reply),
    /// It failed to load, crashed (a panic's message arrives here, not as a reply) or sent
    /// something unreadable: the page shows the error panel with the recipe.
    Failed(String),
}

/// The worker that index.html's boot script started for a cold scenario link, so that its
/// module downloads while the page's own does, and what it heard meanwhile (message and error
/// events, in order). Taken once: a worker for another URL is stopped.
fn take_early(url: &str) -> Option<(Worker, js_sys::Array)> {
    let window = web_sys::window()?;
    let key = JsValue::from_str("__faultline_early");
    let early = js_sys::Reflect::get(&window, &key).ok().filter(JsValue::is_object)?;
    let _ = js_sys::Reflect::delete_property(window.unchecked_ref::<js_sys::Object>(), &key);
    let field = |name: &str| js_sys::Reflect::get(&early, &JsValue::from_str(name)).ok();
    let worker: Worker = field("worker")?.dyn_into().ok()?;
    if field("url")?.as_string().as_deref() != Some(url) {
        worker.terminate();
        return None;
    }
    Some((worker, field("heard")?.dyn_into().ok()?))
}

/// The page will start no worker for this link (an unknown scenario): the early one stops.
pub fn forget_early() {
    take_early("");
}

impl Conn {
    /// Starts the worker at `url` (or adopts the one the boot script started for it); `on`
    /// hears every reply and every failure.
    pub fn start(url: &str, on: impl Fn(Heard) + Clone + 'static) -> Result<Conn, String> {
        let (worker, heard_early) = match take_early(url) {
            Some((worker, heard)) => (worker, Some(heard)),
            None => {
                let options = WorkerOptions::new();
                options.set_type(WorkerType::Module);
                let worker = Worker::new_with_options(url, &options)
                    .map_err(|e| format!("This browser cannot start the simulator (a module Web Worker): {e:?}"))?;
                (worker, None)
            }
        };
        let ready = Rc::new(Cell::new(false));
        // A panic in the worker posts its message, then traps: the page hears both, the
        // trap ("unreachable") sometimes first. The message says what went wrong.
        let reported = Rc::new(Cell::new(false));
        let (heard, is_ready, told) = (on.clone(), ready.clone(), reported.clone());
        let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| {
            let bytes = js_sys::Uint8Array::new(&ev.data()).to_vec();
            match Reply::decode(&bytes) {
                Ok(Reply::Error { fatal: true, message }) => {
                    told.set(true);
                    heard(Heard::Failed(message))
                }
                Ok(reply) => {
                    if matches!(reply, Reply::Ready { .. }) {
                        is_ready.set(true);
                    }
                    heard(Heard::Reply(reply))
                }
                Err(e) => heard(Heard::Failed(e.to_string())),
            }
        });
        let heard = on.clone();
        // A script error is an `ErrorEvent`; a module that fails to load, a plain `Event`.
        let on_error = Closure::<dyn Fn(Event)>::new(move |ev: Event| {
            let what = ev.dyn_ref::<ErrorEvent>().map(ErrorEvent::message).unwrap_or_default();
            let what = if what.is_empty() { "its code failed to load, or it stopped".to_string() } else { what };
            let (heard, told) = (heard.clone(), reported.clone());
            // Give a panic's own message, posted just before the trap, the time to arrive.
            let later = Closure::once_into_js(move || {
                if !told.get() {
                    heard(Heard::Failed(format!("The simulator stopped: {what}")))
                }
            });
            if let Some(w) = web_sys::window() {
                let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), 100);
            }
        });
        let heard = on.clone();
        let on_bad = Closure::<dyn Fn(MessageEvent)>::new(move |_: MessageEvent| {
            heard(Heard::Failed("The simulator sent a message this page cannot read.".into()))
        });
        let alive = Rc::new(Cell::new(true));
        let handlers = [on_message.as_ref().clone(), on_error.as_ref().clone(), on_bad.as_ref().clone()];
        let (w, still) = (worker.clone(), alive.clone());
        let attach = move |heard: Option<js_sys::Array>| {
            if !still.get() {
                return;
            }
            let [message, error, bad] = &handlers;
            w.set_onmessage(Some(message.unchecked_ref()));
            w.set_onerror(Some(error.unchecked_ref()));
            w.set_onmessageerror(Some(bad.unchecked_ref()));
            for ev in heard.iter().flat_map(|a| a.iter()) {
                let handler = match ev.unchecked_ref::<Event>().type_().as_str() {
                    "message" => message,
                    "messageerror" => bad,
                    _ => error,
                };
                let _ = handler.unchecked_ref::<js_sys::Function>().call1(&JsValue::NULL, &ev);
            }
        };
        match heard_early {
            None => attach(None),
            // An adopted worker's events are heard once the page holds this connection (it
            // answers "ready" through it), in order: the boot script's handler keeps
            // collecting them until then.
            Some(heard) => {
                let later = Closure::once_into_js(move || attach(Some(heard)));
                if let Some(w) = web_sys::window() {
                    let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(later.unchecked_ref(), 0);
                }
            }
        }
        let watchdog = Closure::once_into_js(move || {
            if !ready.get() {
                on(Heard::Failed("The simulator did not start within 20 seconds.".into()))
            }
        });
        if let Some(w) = web_sys::window() {
            let _ = w.set_timeout_with_callback_and_timeout_and_arguments_0(watchdog.unchecked_ref(), READY_TIMEOUT_MS);
        }
        Ok(Conn { worker, sent: Cell::new(0), alive, _on_message: on_message, _on_error: on_error, _on_bad: on_bad })
    }

    /// Posts `cmd` as one transferred buffer.
    pub fn post(&self, cmd: &Command) {
        let bytes = js_sys::Uint8Array::from(&cmd.encode()[..]);
        let buffer = bytes.buffer();
        if self.worker.post_message_with_transfer(&buffer, &js_sys::Array::of1(&buffer)).is_ok() {
            self.sent.set(self.sent.get() + 1);
        }
    }

    /// How many commands were posted: a status the worker made before handling them all
    /// may be stale about what they changed (playing, seeking).
    pub fn sent(&self) -> u64 {
        self.sent.get()
    }
}

impl Conn {
    /// Stops the worker from inside one of its own handlers (a crash it reported): its
    /// closures are running, so they are leaked rather than freed under their own feet.
    pub fn stop(self) {
        self.worker.terminate();
        std::mem::forget(self);
    }
}

/// The worker failed: stops it (from inside its own handler, see `Conn::stop`) and replaces
/// the page with the error panel, which offers the recipe.
pub fn give_up(conn: leptos::prelude::StoredValue<Option<Conn>, leptos::prelude::LocalStorage>, why: &str) {
    use leptos::prelude::UpdateValue;
    if let Some(c) = conn.try_update_value(Option::take).flatten() {
        c.stop();
    }
    crate::show_panic(why);
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.alive.set(false);
        self.worker.terminate();
    }
}
