//! Replication consistency: users upload to a primary and view from replicas that replay its log behind it; reading any replica 404s a fresh upload and goes back in time, and the primary, sticky sessions, version tokens and synchronous replication each buy back part of it at their own price.

use crate::parts::arrivals::{OpenLoop, Zipf};
use crate::parts::degraded::FaultWindow;
use crate::parts::replog;
use crate::parts::sessions::{Anomaly, Floor, Sessions};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "replication-consistency",
        title: "Replication consistency (read-your-writes, monotonic reads)",
        category: "Transactions & consistency",
        seeds: &["S1#14", "S3#30", "S3#52"],
        summary: "1,000 users upload 50 photos/s to a primary and view 1,500/s from 3 replicas ~20 ms behind; from 8 s \
                  replica 2 lags 3 s, at 12 s replica 1 dies. Which promise does each routing keep, at what cost?",
        note: Note {
            what_can_go_wrong: "A replica answers with what it has replayed: an upload viewed there before its entry \
                arrives 404s (read-your-writes: S3#30's 2% of users for 1–2 s), and a view on a replica further behind \
                goes back in time (monotonic reads). Model: a user's album is their key, its version the log position \
                (LSN) of its last upload; each entry reaches each replica after an exponential delay (mean `lag_ms`), \
                replayed in order (missing one for 1 s + 10 delays, a replica asks the primary to ship again from there); \
                2 cores a node (exponential, mean `serve_us`); a view is judged by its user's writes and views then.",
            what_you_sacrifice: "Read-primary: every read on the one machine that cannot scale out. Sticky: monotonic \
                only while your replica lives, never your own writes. Tokens: reads wait, then go to the primary. Sync: \
                writes wait for the slowest replica (m·H_n), stall while one is down; replicas still disagree mid-write.",
            at_10x: "Ten times the views saturate the primary under read-primary; each replica more lengthens sync writes \
                (H_n); ten times the uploads and one replay thread falls behind for good (S3#52's 30 s lag).",
            resembles: "Postgres hot standbys (remote_apply, recovery_min_apply_delay), MySQL semi-sync, Rails' and \
                Laravel's sticky connections, MongoDB causal sessions, DynamoDB ConsistentRead, S3 before 2020.",
            try_this: &[
                "Play `read-any`: ~4% of redirect views 404 before 8 s, (1 + λm)·e^(−W/m) for W ≈ `view_after_ms`: the \
                 view outran the replay of its upload or one before it; from 8 s replica 2 replays 3 s late and \
                 `read-your-writes` names the user and album.",
                "Switch to `sticky-sessions`: views never go back in time until replica 1 dies at 12 s and its users \
                 move to replica 2, 3 s behind: `monotonic-reads` fails; uploads 404 on replica 2 all along.",
                "Play `version-tokens`: both checks hold; views sent to replica 2 while it lags wait `token_wait_ms` \
                 and fall back to the primary (Token fallbacks): the view p99 reaches 100 ms.",
                "Play `sync-replication`: no upload 404s, but upload p99 reaches 3 s while replica 2 lags and \
                 `monotonic-reads` still fails. `read-primary` holds both with the primary about 80% busy.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("users", "Users", "", 2..=10_000, 1000, "Each owns an album (a key); views pick albums by Zipf."),
        ParamSpec::setup("replicas", "Replicas", "", 1..=8, 3, "Read replicas replaying the primary's log."),
        ParamSpec::live("uploads", "Uploads", "per s", 0..=5000, 50, "Poisson; each is viewed after a redirect."),
        ParamSpec::live("views", "Views", "per s", 0..=20_000, 1500, "Poisson views of albums, Zipf (s = 1)."),
        ParamSpec::live("lag_ms", "Shipping delay", "ms", 0..=5000, 20, "Mean per entry and replica (exponential)."),
        ParamSpec::live("view_after_ms", "Redirect after", "ms", 0..=10_000, 80, "Upload acknowledged → its view."),
        ParamSpec::live("serve_us", "Service time", "us", 10..=100_000, 1000, "Mean per request, 2 cores a node.").step(10),
        ParamSpec::live("token_wait_ms", "Token wait", "ms", 0..=10_000, 100, "Then the read falls back to the primary."),
    ],
    strategies: &[
        StrategySpec::naive("read-any", "Read any replica", "Each view goes to a random replica that is up."),
        StrategySpec::fixed("read-primary", "Read the primary", "Every view goes to the primary."),
        StrategySpec::naive("sticky-sessions", "Sticky sessions", "Each user's views go to one replica (the next one if it is down)."),
        StrategySpec::fixed("version-tokens", "Version tokens", "A view carries the highest version its user wrote or saw; a replica behind it waits, then the primary answers."),
        StrategySpec::naive("sync-replication", "Synchronous replication", "An upload is acknowledged once every replica replayed it; views go to any replica."),
    ],
    faults: &[
        FaultSpec::node("replica-lag", "Replica lags", "The replica replays each entry this long after its commit.").value("ms", 0..=60_000, 3000),
        FaultSpec::node("replica-down", "Replica down (failover)", "The replica stops; its users are routed to others.").value("down", 0..=1, 1),
    ],
    checks: &[
        CheckSpec::new("read-your-writes", "Read your writes", "A view shows at least the version its user's acknowledged upload made."),
        CheckSpec::new("monotonic-reads", "Monotonic reads", "A view never shows an older version than its user saw before sending it."),
    ],
    metrics: &[
        MetricSpec::new("ryw", "Read-your-writes anomalies", "/s", Measure::Rate("ryw_anomalies")),
        MetricSpec::new("monotonic", "Monotonic-read anomalies", "/s", Measure::Rate("monotonic_anomalies")),
        MetricSpec::new("write_p99", "Upload p99", "us", Measure::Quantile("write_us", 0.99)),
        MetricSpec::new("read_p99", "View p99", "us", Measure::Quantile("read_us", 0.99)),
        MetricSpec::new("lag", "Replica lag (most behind)", "ms", Measure::Gauge("lag_ms")),
        MetricSpec::new("primary_busy", "Primary utilisation", "%", Measure::Gauge("primary_busy_pct")),
        MetricSpec::new("fallbacks", "Token fallbacks", "/s", Measure::Rate("fallbacks")),
        MetricSpec::new("moved", "Views of moved sessions", "", Measure::Count("moved_views")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { ReadAny, ReadPrimary, Sticky, Tokens, Sync });
const USERS: NodeId = 0;
const PRIMARY: NodeId = 1;
const TICK_US: Micros = 500 * MICROS_PER_MS; // the window of the primary's utilisation gauge
/// A view or an upload: who, which album, when sent, and (views) the user's floors then.
#[derive(Clone, Copy, Debug, Default)]
pub struct Req {
    user: u32,
    album: u32,
    t0: Time,
    floor: Floor,
    redirect: bool,
}
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Upload(Req),
    Read(Req),
    Ship(u64, u32, Time),
    Resume(u64),
    Applied(u64),
    Uploaded(Req, u64),
    Value(Req, u64),
    Health(bool),
}
#[derive(Clone, Debug, Label)]
pub enum Timer {
    Upload,
    View,
    Redirect(Req),
    Served(Slot),
    Replay,
    Deadline(u64, u64),
    Tick,
}
#[derive(Clone, Debug, Holds)]
pub enum Ir {
    Users(Users),
    Db(Db),
}
/// A database on 2 cores: the primary (`index` 0) shipping its log, or a replica replaying it.
#[derive(Clone, Debug)]
pub struct Db {
    index: u32,
    station: Box<Station<(Req, bool)>>,
    log: replog::Primary<u32, Req>,
    replay: replog::Replica<u32, Req>,
    sync: bool,
    busy_pct: i64,
}
/// The users: sessions, replicas up, the latest read-your-writes and monotonic-read anomaly.
#[derive(Clone, Debug)]
pub struct Users {
    strategy: Strategy,
    uploads: OpenLoop,
    views: OpenLoop,
    zipf: Zipf,
    down: Vec<bool>,
    sessions: Sessions<u32>,
    latest: [Breach; 2],
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ir> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let (n, users) = (setup.param("replicas") as u32, setup.param("users") as usize);
    let strategy = Strategy::from_id(setup.strategy());
    let (uploads, views) =
        (OpenLoop::poisson(setup.param("uploads") as f64), OpenLoop::poisson(setup.param("views") as f64));
    let (zipf, down, sessions) = (Zipf::new(users, 1.0), vec![false; n as usize + 2], Sessions::new(users));
    let u = Users { strategy, uploads, views, zipf, down, sessions, latest: Default::default() };
    assert_eq!(sim.add_node(Ir::Users(u)), USERS);
    let service = Service::exponential_us(setup.param("serve_us"));
    for index in 0..=n {
        let (log, replay) = (replog::Primary::new(n as usize), replog::Replica::default());
        let (sync, station) = (strategy == Strategy::Sync, Box::new(Station::new(2, service)));
        sim.add_node(Ir::Db(Db { index, station, log, replay, sync, busy_pct: 0 }));
    }
    // The plan: replica 2 replays 3 s late from 8 s to 16 s; replica 1 is down from 12 s to 16 s.
    FaultWindow::secs(8, 8).custom(&mut sim, "replica-lag", Some(PRIMARY + n.min(2)), 3000, 0);
    if n >= 2 {
        FaultWindow::secs(12, 4).custom(&mut sim, "replica-down", Some(PRIMARY + 1), 1, 0);
    }
    sim.check("read-your-writes", move |w| w.node::<Users>(USERS).latest[0].now(w.now));
    sim.check("monotonic-reads", move |w| w.node::<Users>(USERS).latest[1].now(w.now));
    Box::new(sim)
}

impl Node for Ir {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ir::Users(u) => {
                u.uploads.start_at(ctx.param("uploads") as f64, ctx, Timer::Upload); // the rates in force:
                u.views.start_at(ctx.param("views") as f64, ctx, Timer::View); // set while down, they count
            }
            Ir::Db(d) if d.index == 0 => drop(ctx.set_timer(TICK_US, Timer::Tick)),
            Ir::Db(d) => d.replay(true, ctx),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        if let Ir::Db(d) = self {
            drop((d.station.crash(ctx), d.replay.drop_readers())); // their timers are gone
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ir::Db(d), Msg::Upload(req)) => drop(d.station.offer((req, true), ctx, Timer::Served)),
            (Ir::Db(d), Msg::Read(req)) => d.read(req, ctx),
            (Ir::Db(d), Msg::Applied(lsn)) => {
                d.log.ack((from - PRIMARY - 1) as usize, lsn);
                d.release(ctx);
            }
            (Ir::Db(d), Msg::Resume(after)) => d.log.after(after).for_each(|(n, t, &a)| ship(ctx, from, (n, t, a))),
            (Ir::Db(d), Msg::Ship(lsn, album, commit)) => {
                d.replay.receive(lsn, commit, album);
                d.replay(false, ctx);
            }
            (Ir::Users(u), Msg::Uploaded(req, lsn)) => {
                ctx.observe("write_us", ctx.now().since(req.t0));
                u.sessions.wrote(req.user, req.album, lsn);
                ctx.set_timer(ms(ctx.param("view_after_ms")), Timer::Redirect(req));
            }
            (Ir::Users(u), Msg::Value(req, version)) => u.value(req, version, from, ctx),
            (Ir::Users(u), Msg::Health(up)) => u.down[from as usize] = !up,
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ir::Users(u), Timer::Upload) => {
                u.uploads.on_timer(ctx, Timer::Upload);
                let user = ctx.rng().below(u.sessions.users() as u64) as u32;
                ctx.send(PRIMARY, Msg::Upload(Req { user, album: user, t0: ctx.now(), ..Req::default() }));
            }
            (Ir::Users(u), Timer::View) => {
                u.views.on_timer(ctx, Timer::View);
                let user = ctx.rng().below(u.sessions.users() as u64) as u32;
                let album = u.zipf.pick(ctx.rng()) as u32;
                u.read(user, album, false, ctx);
            }
            (Ir::Users(u), Timer::Redirect(req)) => u.read(req.user, req.album, true, ctx),
            (Ir::Db(d), Timer::Served(slot)) => d.served(slot, ctx),
            (Ir::Db(d), Timer::Tick) => {
                d.busy_pct = d.station.take_busy_pct(ctx.now());
                ctx.gauge("primary_busy_pct", d.busy_pct);
                ctx.gauge("lag_ms", (d.log.max_lag_us(ctx.now()) / MICROS_PER_MS) as i64);
                ctx.set_timer(TICK_US, Timer::Tick);
            }
            (Ir::Db(d), Timer::Replay) => d.replay(true, ctx),
            (Ir::Db(d), Timer::Deadline(token, id)) => {
                if let Some(req) = d.replay.give_up(token, id) {
                    ctx.count("fallbacks", 1);
                    ctx.send(PRIMARY, Msg::Read(req));
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ir::Users(u), Control::Strategy(id)) => u.strategy = Strategy::from_id(id),
            (Ir::Db(d), Control::Strategy(id)) => {
                d.sync = id == "sync-replication";
                d.release(ctx);
            }
            (Ir::Users(u), Control::Param { id: "uploads", value }) => {
                u.uploads.set_rate_per_s(value as f64, ctx, Timer::Upload)
            }
            (Ir::Users(u), Control::Param { id: "views", value }) => {
                u.views.set_rate_per_s(value as f64, ctx, Timer::View)
            }
            (Ir::Db(d), Control::Param { id: "serve_us", value }) => {
                d.station.set_service(Service::exponential_us(value))
            }
            (Ir::Db(d), Control::Custom { id: "replica-lag", value }) => {
                d.replay.set_delay_us(ms(value));
                d.replay(true, ctx);
            }
            (Ir::Db(d), Control::Custom { id: "replica-down", value }) => d.set_down(value != 0, ctx),
            _ => {} // the other parameters are read where they are used
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Ir::Db(d) if d.index == 0 => NodeView::new(NodeKind::Database, 1, "primary")
                .gauge("utilisation %", d.busy_pct, 100)
                .badge_if(d.log.held() > 0, format!("{} uploads wait for replicas", d.log.held()), Tone::Warn),
            Ir::Db(d) => {
                let (pending, late_ms, waiting) =
                    (d.replay.pending() as i64, d.replay.delay_us() / 1000, d.replay.waiting());
                NodeView::new(NodeKind::Database, 2, numbered("replica", d.index as u64))
                    .gauge("entries not replayed", pending, 200.max(pending))
                    .badge(format!("replayed to v{}", d.replay.applied()), Tone::Neutral)
                    .badge_if(d.replay.paused(), "down", Tone::Bad)
                    .badge_if(late_ms > 0, format!("replays {late_ms} ms late"), Tone::Warn)
                    .badge_if(waiting > 0, format!("{waiting} views wait for a token"), Tone::Warn)
            }
            Ir::Users(u) => {
                let v = NodeView::new(NodeKind::Client, 0, format!("{} users", u.sessions.users()));
                u.latest.iter().filter_map(Breach::latest).fold(v, |v, a| v.badge(a, Tone::Bad))
            }
        }
    }
}

/// Ships a log entry to replica `to` after an exponential delay of mean `lag_ms`.
fn ship(ctx: &mut Ctx<Ir>, to: NodeId, (lsn, commit, album): (u64, Time, u32)) {
    let mean_us = ms(ctx.param("lag_ms")) as f64;
    let delay = ctx.rng().exponential(mean_us) as Micros;
    ctx.send_after(delay, to, Msg::Ship(lsn, album, commit));
}

impl Db {
    /// A view is served in turn; at a replica behind its token, it waits, then goes to the primary.
    fn read(&mut self, req: Req, ctx: &mut Ctx<Ir>) {
        if self.replay.paused() {
            return ctx.count("lost_views", 1);
        }
        match self.replay.wait(if self.index == 0 { 0 } else { req.floor.token }, req) {
            Ok(req) => drop(self.station.offer((req, false), ctx, Timer::Served)),
            Err(id) => {
                ctx.count("token_waits", 1);
                ctx.set_timer(ms(ctx.param("token_wait_ms")), Timer::Deadline(req.floor.token, id));
            }
        }
    }
    /// A view reads the album's version; an upload commits one and ships it (sync: acked once all replayed it).
    fn served(&mut self, slot: Slot, ctx: &mut Ctx<Ir>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Served) else { return };
        let ((req, upload), primary) = (f.job, self.index == 0);
        if !upload {
            let version = if primary { self.log.version(&req.album) } else { self.replay.version(&req.album) };
            return ctx.send(USERS, Msg::Value(req, version));
        }
        let lsn = self.log.commit(req.album, ctx.now());
        for r in PRIMARY + 1..=PRIMARY + ctx.param("replicas") as NodeId {
            ship(ctx, r, (lsn, ctx.now(), req.album));
        }
        self.log.hold(lsn, req);
        self.release(ctx);
    }
    fn release(&mut self, ctx: &mut Ctx<Ir>) {
        let need = if self.sync { ctx.param("replicas") as usize } else { 0 };
        for (lsn, req) in self.log.release(need) {
            ctx.send(USERS, Msg::Uploaded(req, lsn));
        }
    }
    /// Replays what is due, acks it, serves views whose token it reached, wakes for the next entry due;
    /// behind a lost entry (a gap for 1 s + 10 mean delays) asks the primary to ship again from there.
    fn replay(&mut self, afresh: bool, ctx: &mut Ctx<Ir>) {
        let (applied, due) = self.replay.apply(ctx.now(), afresh);
        let (resume, again) = self.replay.resume(ctx.now(), MICROS_PER_S + 10 * ms(ctx.param("lag_ms")));
        let progress = (applied > 0).then(|| Msg::Applied(self.replay.applied()));
        for msg in [resume.map(Msg::Resume), progress].into_iter().flatten() {
            ctx.send(PRIMARY, msg);
        }
        for req in self.replay.ready() {
            let _ = self.station.offer((req, false), ctx, Timer::Served);
        }
        for at in [due, again].into_iter().flatten() {
            ctx.set_timer(at.since(ctx.now()), Timer::Replay);
        }
    }
    /// Down: views in hand lost, replay stopped (the primary keeps the log); users told (discovery).
    fn set_down(&mut self, down: bool, ctx: &mut Ctx<Ir>) {
        self.replay.set_paused(down);
        let lost = if down { self.station.crash(ctx).len() + self.replay.drop_readers().len() } else { 0 };
        ctx.count("lost_views", lost as i64);
        self.replay(true, ctx);
        ctx.send(USERS, Msg::Health(!down));
    }
}

impl Users {
    /// Sends a view where the strategy routes it, with what its user had written and seen.
    fn read(&mut self, user: u32, album: u32, redirect: bool, ctx: &mut Ctx<Ir>) {
        let mut floor = self.sessions.floor(user, &album);
        floor.token = if self.strategy == Strategy::Tokens { floor.token } else { 0 };
        let req = Req { user, album, t0: ctx.now(), floor, redirect };
        let up: Vec<NodeId> = (PRIMARY + 1..self.down.len() as NodeId).filter(|&r| !self.down[r as usize]).collect();
        let home = PRIMARY + 1 + user % (self.down.len() as u32 - 2);
        let to = match self.strategy {
            _ if up.is_empty() => PRIMARY,
            Strategy::ReadPrimary => PRIMARY,
            // A session stays on its replica; if that is down, on the next one up (it moved).
            Strategy::Sticky => {
                let at = up.iter().copied().find(|&r| r >= home).unwrap_or(up[0]);
                ctx.count("moved_views", (at != home) as i64);
                at
            }
            Strategy::ReadAny | Strategy::Tokens | Strategy::Sync => up[ctx.rng().below(up.len() as u64) as usize],
        };
        ctx.send(to, Msg::Read(req));
    }
    /// Judges a view against its user's floors when it was sent, then raises them.
    fn value(&mut self, req: Req, version: u64, from: NodeId, ctx: &mut Ctx<Ir>) {
        ctx.observe("read_us", ctx.now().since(req.t0));
        let at = if from == PRIMARY { "the primary".to_string() } else { numbered("replica", (from - PRIMARY) as u64) };
        let shown = if version == 0 { "404".to_string() } else { format!("v{version}") };
        let who = format!("user {} viewed album {} on {at}: {shown}", req.user + 1, req.album + 1);
        let anomaly = self.sessions.read(req.user, req.album, req.floor, version);
        ctx.count("redirects", req.redirect as i64);
        ctx.count("redirect_404s", (req.redirect && anomaly == Some(Anomaly::ReadYourWrites)) as i64);
        let Some(anomaly) = anomaly else { return };
        let i = (anomaly == Anomaly::MonotonicRead) as usize;
        let why = [format!("after uploading v{}", req.floor.wrote), format!("after seeing v{}", req.floor.seen)];
        ctx.count(["ryw_anomalies", "monotonic_anomalies"][i], 1);
        self.latest[i].record(format!("{who} {}", why[i]), ctx.truth());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::replog::expected_slowest_us;
    use crate::parts::testing::{between, failed_at, most, run_sampled, samples, Sampled};

    const COUNTERS: [&str; 5] = ["ryw_anomalies", "monotonic_anomalies", "redirects", "redirect_404s", "fallbacks"];
    const RYW: usize = 0;
    const MONOTONIC: usize = 1;
    const REDIRECTS: usize = 2;
    const REDIRECT_404S: usize = 3;
    const FALLBACKS: usize = 4;

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &COUNTERS)
    }

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new(SPEC.id(), strategy, seed)
    }

    fn holds(r: &dyn Run, check: &str) -> bool {
        failed_at(r, check).is_none()
    }

    #[test]
    fn a_redirect_view_404s_when_it_outruns_the_replay_of_its_upload_or_one_before_it() {
        // A replica replays in order, so the upload committed at c is in once every entry up to
        // it arrived: each one k commits back (a gap G_k, Gamma(k, λ)) shipped after Exp(m).
        // The view reads W after c, so to first order P(404) = Σ_k E[e^(−(W + G_k)/m)]
        // = e^(−W/m)·Σ_k (λm/(1 + λm))^k = (1 + λm)·e^(−W/m). λ = 50/s, m = 20 ms; W = 80 ms
        // plus the ack's and the view's links (0.6 ms each) and the replica's service (~1.1 ms)
        // less the entry's own link: ~81.7 ms. 2,000 users, so almost no one uploads again
        // within W. 10 seeds × 8 s (before the lag fault): ~4,000 redirects, ~135 404s: ±8.6%
        // binomial s.e.; ±25% (about 3 s.e.) for that and the first-order bound.
        let (mut views, mut missing) = (0.0, 0.0);
        for seed in 1..=10 {
            let (_, at) = run(recipe("read-any", seed).with_param("users", 2000), 8);
            (views, missing) = (views + at[8][REDIRECTS] as f64, missing + at[8][REDIRECT_404S] as f64);
        }
        let (lm, w) = (50.0 * 0.020, 81.7 / 20.0);
        let theory = (1.0 + lm) * libm::exp(-w);
        let share = missing / views;
        assert!((share - theory).abs() <= 0.25 * theory, "{share:.4} of {views} redirects 404, theory {theory:.4}");
    }

    #[test]
    fn a_replica_behind_a_lost_entry_asks_the_primary_to_resume_and_catches_up() {
        // 100 ms in which every message is lost, at 3 s: entries shipped then never arrive, and
        // the next ones leave each replica a gap. After 1 s + 10 mean delays (1.2 s) it asks the
        // primary to ship again from its last replayed position (as a standby reconnecting), so
        // by 6 s every replica is caught up (lag back to the shipping delay, well under 100 ms);
        // without that ask it would stay stuck, its lag growing with the run.
        for seed in 1..=3 {
            let loss = ActionKind::Fault(Fault::LossBurst { loss: Ppm::ALWAYS, dur: 100 * MICROS_PER_MS });
            let (r, _) = run(recipe("read-any", seed).with_action(Time::from_ms(3000), loss), 8);
            let (during, after) = (most(&*r, "lag", 3.5, 4.0), most(&*r, "lag", 6.0, 8.0));
            assert!(during >= 400.0 && after < 100.0, "seed {seed}: lag {during} ms at 4 s, then {after} ms");
        }
    }

    #[test]
    fn synchronous_replication_adds_the_slowest_of_n_replica_delays_to_each_upload() {
        // Acknowledged once all 3 replicas replayed it: the upload waits for the largest of 3
        // exponential delays (mean m = 20 ms), m·H_3 = 36.7 ms on average, plus a link each way
        // to that replica (0.6 ms each), over what the same upload takes asynchronously.
        // 5 uploads/s keep replay in order almost always (a predecessor holds one back with
        // chance λm/(1 + λm)/2 = 4.5%, by ~m: < 0.5 ms on the slowest); 20 seeds × 8 s ≈ 800
        // uploads: s.e. of the slowest ≈ 23 ms/√800 ≈ 0.8 ms. ±8% ≈ 3 s.e. plus that bias.
        let mean = |strategy: &str| {
            let runs = (1..=20).map(|seed| {
                let r = recipe(strategy, seed).with_param("uploads", 5).with_param("views", 100);
                let (r, _) = run(r, 8);
                let h = r.metrics().histogram("write_us").expect("uploads").clone();
                (h.mean() * h.count() as f64, h.count() as f64)
            });
            let (sum, n) = runs.fold((0.0, 0.0), |a, b| (a.0 + b.0, a.1 + b.1));
            sum / n
        };
        let extra = mean("sync-replication") - mean("read-any");
        let theory = expected_slowest_us(3, 20_000.0) + 1_200.0;
        assert!((extra - theory).abs() <= 0.08 * theory, "sync adds {extra:.0} us, theory {theory:.0}");
    }

    #[test]
    fn reading_the_primary_loads_it_with_every_view() {
        // Utilisation = (uploads + their redirect views + views) × service / cores
        // = (50 + 50 + 1,500) × 1 ms / 2 = 80%; the mean of twelve 0.5 s windows from 2 s to
        // 8 s (~9,600 services: ±1.5% s.d. on their total): ±5%. Replicas take it all otherwise.
        for seed in 1..=2 {
            let (r, _) = run(recipe("read-primary", seed), 8);
            let busy = samples(r.as_ref(), "primary_busy", 2.5, 8.0);
            let mean = busy.iter().sum::<f64>() / busy.len() as f64;
            assert!((mean - 80.0).abs() <= 4.0, "seed {seed}: {mean:.1}% busy, theory 80%");
            let (r, _) = run(recipe("read-any", seed), 8);
            assert!(most(r.as_ref(), "primary_busy", 2.5, 8.0) <= 10.0, "seed {seed}: uploads alone");
        }
    }

    #[test]
    fn try_read_any_404s_some_uploads_then_many_when_a_replica_lags() {
        // Step 1: ~4% of redirect views before 8 s; from 8 s a third of views hit a replica 3 s behind.
        for seed in 1..=3 {
            let (r, at) = run(recipe("read-any", seed), 16);
            let share = at[8][REDIRECT_404S] as f64 / at[8][REDIRECTS] as f64;
            assert!((0.02..=0.07).contains(&share), "seed {seed}: {share:.3} of redirects 404");
            let (_, why) = failed_at(r.as_ref(), "read-your-writes").unwrap_or_else(|| panic!("seed {seed}: held"));
            assert!(why.starts_with("user ") && why.contains(" after uploading v"), "seed {seed}: {why}");
            let (before, during) = (between(&at, RYW, 5, 8), between(&at, RYW, 9, 12));
            assert!(during > 4.0 * before, "seed {seed}: {before} then {during}: the lag multiplies them");
        }
    }

    #[test]
    fn try_sticky_sessions_go_back_in_time_only_when_a_session_moves() {
        // Step 2: monotonic while each user's replica lives; replica 1's users move to replica 2 at 12 s.
        for seed in 1..=3 {
            let (r, at) = run(recipe("sticky-sessions", seed), 16);
            assert_eq!(at[12][MONOTONIC], 0, "seed {seed}: before the failover");
            let (t, why) = failed_at(r.as_ref(), "monotonic-reads").unwrap_or_else(|| panic!("seed {seed}: held"));
            assert!(t >= 12.0 && why.contains("on replica 2"), "seed {seed}: {t} {why}");
            assert!(r.metrics().counter("moved_views") > 100, "seed {seed}");
            assert!(!holds(r.as_ref(), "read-your-writes"), "seed {seed}: own uploads 404 on a replica");
        }
    }

    #[test]
    fn try_version_tokens_hold_both_and_fall_back_to_the_primary() {
        // Step 3: views sent to the lagging replica wait 100 ms and fall back: read p99 ≥ 100 ms.
        for seed in 1..=3 {
            let (r, at) = run(recipe("version-tokens", seed), 20);
            assert!(holds(r.as_ref(), "read-your-writes") && holds(r.as_ref(), "monotonic-reads"), "seed {seed}");
            let (before, during) = (at[8][FALLBACKS], between(&at, FALLBACKS, 9, 15));
            assert!(during > 500.0 && before * 20 < during as i64, "seed {seed}: {before} then {during} fallbacks");
            assert!(most(r.as_ref(), "read_p99", 9.0, 15.0) >= 100_000.0, "seed {seed}");
            assert!(most(r.as_ref(), "read_p99", 3.0, 8.0) < 50_000.0, "seed {seed}: fast before the lag");
        }
    }

    #[test]
    fn try_sync_replication_keeps_uploads_visible_at_the_price_of_the_slowest_replica() {
        // Step 4: no 404 of one's own upload; uploads wait ~3 s for replica 2; replicas still
        // disagree while an upload is in flight. Read-primary holds both (its load: above).
        for seed in 1..=3 {
            let (r, _) = run(recipe("sync-replication", seed), 20);
            assert!(holds(r.as_ref(), "read-your-writes"), "seed {seed}");
            assert!(!holds(r.as_ref(), "monotonic-reads"), "seed {seed}");
            assert!(most(r.as_ref(), "write_p99", 9.0, 16.0) >= 2_900_000.0, "seed {seed}");
            let (r, _) = run(recipe("read-primary", seed), 20);
            assert!(holds(r.as_ref(), "read-your-writes") && holds(r.as_ref(), "monotonic-reads"), "seed {seed}");
        }
    }

    #[test]
    fn the_replicas_show_their_lag_and_failover() {
        let (r, _) = run(recipe("version-tokens", 1), 13);
        let nodes = r.frame(0).nodes; // users, primary, replicas 1, 2, 3
        let badges = |i: usize| nodes[i].view.badges.iter().map(|b| b.text.clone()).collect::<Vec<_>>();
        assert!(badges(3).iter().any(|b| b == "replays 3000 ms late"), "{:?}", badges(3));
        assert!(badges(2).iter().any(|b| b == "down"), "{:?}", badges(2));
    }
}
