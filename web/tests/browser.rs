//! The web crate's logic in a real browser (headless Chromium via wasm-bindgen-test):
//! recipes from URLs, the player's rewinding and replay, layout and drawing on a canvas.

use faultline_core::{ActionKind, Fault, Time, MICROS_PER_S};
use faultline_scenarios::ALL;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::*;
use web::canvas::{self, Theme};
use web::player::Player;
use web::route::Route;
use web::scenario::{href, load};

wasm_bindgen_test_configure!(run_in_browser);

#[wasm_bindgen_test]
fn routes_and_recipes_load_for_every_scenario() {
    for spec in ALL {
        let (s, recipe, problems) = load(spec.id(), "seed=5").expect("loads");
        assert_eq!(s.id(), spec.id());
        assert!(problems.is_empty());
        assert_eq!(recipe.seed, 5);
        let h = href(spec, &recipe);
        match Route::parse(&h) {
            Route::Scenario { id, query } => {
                assert_eq!(id, spec.id());
                assert_eq!(load(&id, &query).unwrap().1, recipe, "{h}");
            }
            other => panic!("{h} parsed as {other:?}"),
        }
    }
    assert!(load("nope", "").is_err());
    let (_, _, problems) = load(ALL[0].id(), "seed=x&bogus=1").unwrap();
    assert_eq!(problems.len(), 2);
    assert_eq!(Route::parse("#/bench/engine"), Route::EngineBench);
    assert_eq!(Route::parse("#/bench/frames?n=1000"), Route::FramesBench(1000));
    assert_eq!(Route::parse("#/bench/frames?n=999999999"), Route::FramesBench(100_000));
}

#[wasm_bindgen_test]
fn rewinding_and_stepping_back_reproduce_the_run() {
    for spec in ALL {
        let (mut p, _) = Player::new(spec, &spec.default_recipe(9));
        p.advance(Time::from_secs(3), || true);
        let at_3s = p.run.trace().hash();
        let events = p.run.events();
        p.advance(Time::from_secs(5), || true);
        p.seek(Time::from_secs(3));
        assert_eq!(p.run.trace().hash(), at_3s, "{}: seek back", spec.id());
        p.step();
        p.step_back();
        assert_eq!(p.run.events(), events, "{}: step back", spec.id());
        assert_eq!(p.run.trace().hash(), at_3s, "{}: step back hash", spec.id());
    }
}

#[wasm_bindgen_test]
fn advancing_says_whether_the_budget_ran_out() {
    let mut stopped_early = 0;
    for spec in ALL {
        let (mut p, _) = Player::new(spec, &spec.default_recipe(2));
        // No time left after the first chunk of events: it stops short and says so, unless
        // the whole second fitted in that chunk.
        let reached = p.advance(Time::from_secs(1), || false);
        assert_eq!(reached, p.now() >= Time::from_secs(1), "{}", spec.id());
        stopped_early += usize::from(!reached);
        assert!(p.advance(Time::from_secs(2), || true), "{}", spec.id());
        assert_eq!(p.now(), Time::from_secs(2), "{}", spec.id());
    }
    assert!(stopped_early > 0, "some scenario has more than a chunk of events in its first second");
}

#[wasm_bindgen_test]
fn live_actions_replay_from_the_link() {
    for spec in ALL {
        let (mut live, _) = Player::new(spec, &spec.default_recipe(4));
        live.advance(Time::from_ms(1_500), || true);
        live.inject(ActionKind::Fault(Fault::Crash { node: 0 })).expect("valid");
        live.advance(Time::from_secs(4), || true);
        live.seek(Time::from_secs(1)); // rewinding keeps the action
        live.advance(Time::from_secs(4), || true);
        let link = href(spec, live.recipe());
        let Route::Scenario { id, query } = Route::parse(&link) else { panic!("{link}") };
        let (s, recipe, _) = load(&id, &query).unwrap();
        let (mut replay, _) = Player::new(s, &recipe);
        replay.advance(Time::from_secs(4), || true);
        assert_eq!(live.run.trace().hash(), replay.run.trace().hash(), "{}: {link}", spec.id());
    }
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

#[wasm_bindgen_test]
fn the_page_reports_current_parameters_and_strategy() {
    let spec = ALL[0];
    let p = &spec.params[0];
    let r = spec
        .default_recipe(1)
        .with_action(Time(10), ActionKind::SetParam { id: p.id.into(), value: p.max })
        .with_action(Time(20), ActionKind::SetStrategy { id: spec.strategies[1].id.into() });
    assert_eq!(web::panels::current_param(&r, p, Time(5)), p.default);
    assert_eq!(web::panels::current_param(&r, p, Time(9)), p.max, "a change made now counts at once");
    assert_eq!(web::panels::current_strategy(&r, Time(25)), spec.strategies[1].id);
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
