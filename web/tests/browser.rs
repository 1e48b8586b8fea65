//! The page's logic in a real browser (headless Chromium via wasm-bindgen-test): routes and
//! mirrored recipes, layout and drawing on a canvas (of frames from real runs).

use faultline_core::{Time, MICROS_PER_S};
use faultline_engine::player::Player;
use faultline_scenarios::ALL;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web::canvas::{self, Theme};
use web::route::{scenario_href, Route};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn routes_round_trip_for_every_scenario() {
    for spec in ALL {
        let query = faultline_core::recipe::without_scenario(&spec.default_recipe(5).to_query(spec));
        let h = scenario_href(spec.id(), &query);
        assert_eq!(Route::parse(&h), Route::Scenario { id: spec.id().into(), query }, "{h}");
    }
    assert_eq!(Route::parse("#/bench/engine"), Route::EngineBench);
    assert_eq!(Route::parse("#/debug/worker-panic"), Route::WorkerPanic);
    assert_eq!(Route::parse("#/bench/frames?n=1000"), Route::FramesBench(1000));
    assert_eq!(Route::parse("#/bench/frames?n=999999999"), Route::FramesBench(100_000));
}

fn test_canvas() -> web_sys::HtmlCanvasElement {
    let doc = web_sys::window().unwrap().document().unwrap();
    let c: web_sys::HtmlCanvasElement = doc.create_element("canvas").unwrap().dyn_into().unwrap();
    c.set_attribute("style", "width: 800px; height: 500px; display: block").unwrap();
    doc.body().unwrap().append_child(&c).unwrap();
    c
}

#[wasm_bindgen_test]
fn every_scenario_draws_and_its_nodes_can_be_clicked() {
    let c = test_canvas();
    let theme = Theme::read();
    for spec in ALL {
        let (mut p, _) = Player::new(spec, &spec.default_recipe(1));
        p.advance(Time(2 * MICROS_PER_S), || true);
        let frame = p.run.frame(500);
        let placed = canvas::draw(&c, &frame, spec.layout, Some(0), &theme, 300_000.0);
        assert_eq!(placed.len(), frame.nodes.len());
        for (i, pl) in placed.iter().enumerate() {
            assert!(
                pl.x > 0.0 && pl.x < 800.0 && pl.y > 0.0 && pl.y < 500.0,
                "{}: node {i} off canvas: {pl:?}",
                spec.id()
            );
        }
        let first = &placed[0];
        assert_eq!(canvas::hit(&placed, first.x, first.y), Some(0), "{}", spec.id());
        let ctx = canvas::context(&c).unwrap();
        let img = ctx.get_image_data(0.0, 0.0, c.width() as f64, c.height() as f64).unwrap().data();
        assert!(img.iter().any(|&b| b != 0), "{}: nothing drawn", spec.id());
    }
    assert_eq!(canvas::hit(&[], 10.0, 10.0), None);
}

/// Thousands of messages are written as pixels, a few as a path: both must put the same
/// colour in the same place, and a frame must not keep the previous one's squares. The
/// clients of a crowd go where the messages go: they must look the same both ways too.
#[wasm_bindgen_test]
fn message_squares_look_the_same_as_pixels_and_as_a_path() {
    use faultline_core::{Frame, Layout, MsgFrame, Status};
    let c = test_canvas();
    let theme = Theme::read();
    let with = |n: usize, sent: u64| {
        let mut f = web::bench::synthetic(0);
        f.now = Time(2_000);
        f.messages = (0..n)
            .map(|_| MsgFrame {
                from: 0,
                to: 71,
                sent: Time(sent),
                deliver: Time(sent + 2_000),
                kind: "request",
                lost: false,
            })
            .collect();
        f.in_flight = n;
        f.nodes[2].status = Status::Crashed;
        f
    };
    let pixel = |x: f64, y: f64| -> Vec<u8> {
        let dpr = web_sys::window().unwrap().device_pixel_ratio();
        let ctx = canvas::context(&c).unwrap();
        ctx.get_image_data((x * dpr).round(), (y * dpr).round(), 1.0, 1.0).unwrap().data().to_vec()
    };
    // The colour the browser itself gives a CSS colour.
    let browser_colour = |css: &str| {
        let probe = test_canvas();
        let ctx = canvas::context(&probe).unwrap();
        ctx.set_fill_style_str(css);
        ctx.fill_rect(0.0, 0.0, 4.0, 4.0);
        ctx.get_image_data(1.0, 1.0, 1.0, 1.0).unwrap().data().to_vec()
    };
    let expected =
        browser_colour(&format!("hsl({}, 70%, {}%)", canvas::hue("request"), if theme.dark { 65 } else { 45 }));
    let frame_at = |n: usize, sent: u64| -> (Frame, f64, f64, Vec<canvas::Placed>) {
        let f = with(n, sent);
        let placed = canvas::draw(&c, &f, Layout::Tiers, None, &theme, 300_000.0);
        let p = ((f.now.micros() - sent) as f64 / 2_000.0).clamp(0.0, 1.0);
        let (a, b) = (placed[0], placed[71]);
        (f, a.x + (b.x - a.x) * p, a.y + (b.y - a.y) * p, placed)
    };
    for n in [5, 5_000] {
        // 80% of the way from a client to a database, between the columns.
        let (_, x, y, placed) = frame_at(n, 400);
        // Two clients of the crowd (no message on them): one up, one crashed.
        assert!(placed[1].dot && placed[2].dot);
        assert_eq!(pixel(placed[1].x, placed[1].y), browser_colour(&theme.muted), "{n} messages: a client");
        assert_eq!(pixel(placed[2].x, placed[2].y), browser_colour(&theme.bad), "{n} messages: a crashed client");
        assert_eq!(pixel(x, y), expected, "{n} messages: the square's colour at ({x}, {y})");
        // 70%: the square moved, and the old place is clear again.
        let (_, x2, y2, _) = frame_at(n, 600);
        assert_eq!(pixel(x2, y2), expected, "{n} messages, moved");
        assert_eq!(pixel(x, y), vec![0, 0, 0, 0], "{n} messages: the previous frame's square is gone");
    }
}
