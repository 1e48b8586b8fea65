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
/// Plain DOM, because the reactive runtime may be what panicked; built element by element,
/// with text as text and handlers as closures, because the site's Content-Security-Policy
/// runs no inline script (an `onclick` attribute included).
pub(crate) fn show_panic(msg: &str) {
    let _ = panic_panel(msg);
}

fn panic_panel(msg: &str) -> Option<()> {
    use wasm_bindgen::JsCast;
    let w = web_sys::window()?;
    let doc = w.document()?;
    let body = doc.body()?;
    let href = w.location().href().unwrap_or_default();
    let el = |tag: &str, text: &str| -> Option<web_sys::Element> {
        let e = doc.create_element(tag).ok()?;
        e.set_text_content(Some(text));
        Some(e)
    };
    let main = el("main", "")?;
    main.set_class_name("panic");
    let title = el("h1", "Something broke inside Faultline")?;
    main.append_child(&title).ok()?;
    let safe = el("p", "The run stopped because of a bug. Your recipe is safe in this link:")?;
    main.append_child(&safe).ok()?;
    let url: web_sys::HtmlInputElement = el("input", "")?.dyn_into().ok()?;
    url.set_class_name("panic-url");
    url.set_read_only(true);
    url.set_value(&href);
    url.set_attribute("aria-label", "Link to this run").ok()?;
    main.append_child(&url).ok()?;
    let row = el("p", "")?;
    let copy = el("button", "Copy recipe")?;
    let on_copy = wasm_bindgen::closure::Closure::<dyn Fn()>::new(move || {
        if let Some(w) = web_sys::window() {
            let _ = w.navigator().clipboard().write_text(&href);
        }
    });
    copy.add_event_listener_with_callback("click", on_copy.as_ref().unchecked_ref()).ok()?;
    on_copy.forget();
    let reload = el("button", "Reload")?;
    let on_reload = wasm_bindgen::closure::Closure::<dyn Fn()>::new(|| {
        if let Some(w) = web_sys::window() {
            let _ = w.location().reload();
        }
    });
    reload.add_event_listener_with_callback("click", on_reload.as_ref().unchecked_ref()).ok()?;
    on_reload.forget();
    let back = el("a", "Back to the gallery")?;
    back.set_attribute("href", "#/").ok()?;
    for (i, part) in [copy, reload, back].iter().enumerate() {
        if i > 0 {
            row.append_child(&doc.create_text_node(" ")).ok()?;
        }
        row.append_child(part).ok()?;
    }
    main.append_child(&row).ok()?;
    let what = el("pre", msg)?;
    main.append_child(&what).ok()?;
    body.set_text_content(None);
    body.append_child(&main).ok()?;
    Some(())
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
