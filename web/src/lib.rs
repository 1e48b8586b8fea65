//! Faultline's browser app: the gallery of scenarios and the scenario page, client-side
//! rendered with Leptos. Generic: it draws whatever a scenario's spec and frames describe.
//! It holds no simulation code: runs live in a Web Worker (`web/engine`), reached through
//! the messages of `web/protocol`.

pub mod access;
pub mod bench;
pub mod canvas;
pub mod charts;
pub mod gallery;
pub mod panels;
pub mod remote;
pub mod route;
pub mod scenario;

use leptos::prelude::*;
use route::Route;

/// Installs the panic panel and mounts the app on the page's body.
pub fn start() {
    std::panic::set_hook(Box::new(|info| {
        let msg = format!("Faultline crashed: {info}");
        web_sys::console::error_1(&msg.clone().into());
        show_panic(&msg);
    }));
    // The static shell in index.html was the first paint; the app replaces it now.
    if let Some(boot) = web_sys::window().and_then(|w| w.document()).and_then(|d| d.get_element_by_id("boot")) {
        boot.remove();
    }
    leptos::mount::mount_to_body(App);
}

/// Replaces the page with an error panel that offers to copy the recipe and reload.
/// Plain DOM, because the reactive runtime may be what panicked.
pub(crate) fn show_panic(msg: &str) {
    let Some(doc) = web_sys::window().and_then(|w| w.document()) else { return };
    let Some(body) = doc.body() else { return };
    let href = web_sys::window().and_then(|w| w.location().href().ok()).unwrap_or_default();
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    body.set_inner_html(&format!(
        "<main class=\"panic\"><h1>Something broke inside Faultline</h1>\
         <p>The run stopped because of a bug. Your recipe is safe in this link:</p>\
         <input class=\"panic-url\" readonly aria-label=\"Link to this run\" value=\"{}\"/>\
         <p><button onclick=\"navigator.clipboard&&navigator.clipboard.writeText(document.querySelector('.panic-url').value)\">Copy recipe</button> \
         <button onclick=\"location.reload()\">Reload</button> <a href=\"#/\">Back to the gallery</a></p>\
         <pre>{}</pre></main>",
        esc(&href),
        esc(msg)
    ));
}

#[component]
fn App() -> impl IntoView {
    let route = RwSignal::new(Route::current());
    let _listener = window_event_listener(leptos::ev::hashchange, move |_| route.set(Route::current()));
    view! {
        <header class="top">
            <a class="brand" href="#/">"Faultline"</a>
            <span class="tagline">"Distributed-systems patterns you can break, then fix."</span>
        </header>
        {move || match route.get() {
            Route::Gallery => gallery::Gallery().into_any(),
            Route::Panic => panic!("the deliberate panic of #/debug/panic"),
            Route::WorkerPanic => scenario::WorkerPanic().into_any(),
            Route::FramesBench(n) => bench::FramesBench(bench::FramesBenchProps { n }).into_any(),
            Route::EngineBench => bench::EngineBench().into_any(),
            Route::Scenario { id, query } => scenario::ScenarioPage(scenario::ScenarioPageProps { id, query }).into_any(),
            Route::NotFound(path) => view! {
                <main class="notfound">
                    <h1>"Nothing here"</h1>
                    <p>"There is no page at " <code>{path}</code> "."</p>
                    <p><a href="#/">"Back to the gallery"</a></p>
                </main>
            }.into_any(),
        }}
    }
}
