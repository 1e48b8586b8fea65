//! The engine inside a dedicated Web Worker: bytes in, bytes out, and the run played in slices between messages.
//!
//! Each message is one `ArrayBuffer`, transferred (not copied) to the page. While a run
//! plays, the worker simulates in slices of at most `SLICE_MS`, reading its messages in
//! between. The next slice is posted to itself through a `MessageChannel`, because nested
//! `setTimeout(0)`s are clamped to 4 ms. A run that is ahead of the clock waits 4 ms instead
//! of spinning. A panic is posted to the page before the module traps, so the page can
//! show it with the recipe rather than wait for a worker that is gone.

use crate::engine::{Catalog, Engine, SLICE_MS};
use faultline_protocol::{Command, Reply, PROTOCOL};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{DedicatedWorkerGlobalScope, MessageChannel, MessageEvent, WorkerGlobalScope};

fn scope() -> DedicatedWorkerGlobalScope {
    js_sys::global().unchecked_into()
}

fn now_ms() -> f64 {
    js_sys::global().unchecked_into::<WorkerGlobalScope>().performance().map_or(0.0, |p| p.now())
}

fn post(reply: &Reply) {
    let bytes = js_sys::Uint8Array::from(&reply.encode()[..]);
    let buffer = bytes.buffer();
    if scope().post_message_with_transfer(&buffer, &js_sys::Array::of1(&buffer)).is_err() {
        web_sys::console::error_1(&"the simulator could not post a message to the page".into());
    }
}

/// The bytes of a message from the page (an `ArrayBuffer`).
fn bytes_of(ev: &MessageEvent) -> Vec<u8> {
    js_sys::Uint8Array::new(&ev.data()).to_vec()
}

struct Worker {
    engine: RefCell<Engine>,
    channel: MessageChannel,
    /// A slice is already on its way.
    scheduled: Cell<bool>,
}

impl Worker {
    fn schedule(self: &Rc<Self>, ahead: bool) {
        if self.scheduled.replace(true) {
            return;
        }
        if ahead {
            let me = self.clone();
            let f = Closure::once_into_js(move || me.run_slice());
            let _ = scope().set_timeout_with_callback_and_timeout_and_arguments_0(f.unchecked_ref(), 4);
        } else {
            let _ = self.channel.port2().post_message(&JsValue::NULL);
        }
    }

    fn run_slice(self: &Rc<Self>) {
        self.scheduled.set(false);
        let start = now_ms();
        let replies = self.engine.borrow_mut().slice(SLICE_MS);
        replies.iter().for_each(post);
        if self.engine.borrow().busy() {
            // A slice that finished well within its budget reached its target: the run is
            // ahead of the clock.
            self.schedule(now_ms() - start < SLICE_MS / 2.0);
        }
    }

    fn on_command(self: &Rc<Self>, bytes: &[u8]) {
        let replies = match Command::decode(bytes) {
            Ok(cmd) => self.engine.borrow_mut().handle(cmd),
            Err(e) => vec![Reply::Error { fatal: false, message: e.to_string() }],
        };
        replies.iter().for_each(post);
        if self.engine.borrow().busy() {
            self.schedule(false);
        }
    }
}

/// Serves `catalog` to the page that started this worker: installs the panic report and
/// the message handlers, then says it is ready.
pub fn serve(catalog: Catalog) {
    std::panic::set_hook(Box::new(|info| {
        post(&Reply::Error { fatal: true, message: format!("The simulator crashed: {info}") });
    }));
    let worker = Rc::new(Worker {
        engine: RefCell::new(Engine::new(catalog, now_ms)),
        channel: MessageChannel::new().expect("MessageChannel exists in workers"),
        scheduled: Cell::new(false),
    });
    let w = worker.clone();
    let on_slice = Closure::<dyn Fn(MessageEvent)>::new(move |_: MessageEvent| w.run_slice());
    worker.channel.port1().set_onmessage(Some(on_slice.as_ref().unchecked_ref()));
    on_slice.forget();
    let w = worker.clone();
    let on_message = Closure::<dyn Fn(MessageEvent)>::new(move |ev: MessageEvent| w.on_command(&bytes_of(&ev)));
    scope().set_onmessage(Some(on_message.as_ref().unchecked_ref()));
    on_message.forget();
    post(&Reply::Ready { protocol: PROTOCOL });
}
