//! N+1 queries: a GraphQL-style API resolves users → posts → comments → author → profile against one
//! database (c connections, one queue). A query per field makes one request thousands of queries;
//! DataLoader batching per tick still asks once per parent when each resolver awaits its own step
//! first; a short collection window with a per-request cache asks once per level; a join asks once.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::judge::Judge;
use crate::parts::station::{Full, Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;
use std::collections::{BTreeMap, BTreeSet};

// A table, an entry a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "n-plus-one",
        title: "N+1 queries in a GraphQL API",
        category: "Data & scale",
        seeds: &["S3#23"],
        summary: "Each request asks for 20 users, their posts, the posts' comments, each comment's author and the \
                  author's profile. Resolved field by field that is 1,121 queries; DataLoader batching per tick still \
                  asks once per parent; a 2 ms collection window asks 5 times, a joined read once. At 10 s traffic \
                  quadruples and the query-per-field database drowns.",
        note: Note {
            what_can_go_wrong: "A resolver that loads its own field asks the database once per object: users(limit: n) \
                { posts { comments { author { profile } } } } is 1 + n + n·p + 2·n·p·c queries — the seed's 100 users, \
                10 posts and 7 comments are 15,101, and at 3 ms each 45 s of database time. DataLoader only batches the \
                loads made in one tick of the event loop: here each object's resolver first awaits a step of its own (a \
                permission check, uniform up to 1 ms), so every parent's children are asked for in a tick of their own \
                — one batch per parent, as many queries as before except where its per-request cache already holds an \
                author. The model: Poisson requests; one database of c connections, a query holding one for an \
                exponential time (mean 1 ms) plus 5 µs a row, a bounded FIFO queue (a query refused or unanswered in 5 s \
                fails its request); links of 0.5–1.5 ms; a comment's author drawn from 50 people.",
            what_you_sacrifice: "A collection window adds its length to every nesting level (4 levels × 2 ms) and must be \
                longer than the resolvers' awaits spread, or a level splits into several batches; its batches are big \
                IN lists whose rows still cost. A joined read is one query but returns every author and profile once \
                per comment (1,620 rows instead of 720), fixes the query's shape to the client's, and grows with the \
                product of the fan-outs.",
            at_10x: "Ten times the users multiply every level: query per field grows as n·p·c, so 200 users are 11,221 \
                queries a request and no connection count keeps up; windowed batching stays at depth + 1 queries but \
                its IN lists reach thousands of keys (split by a max batch size) and the join's rows explode. Query \
                cost limits (depth, breadth) on the API decide what a client may ask at all.",
            resembles: "graphql-js with DataLoader (its batch is scheduled after the current tick), GraphQL Java's \
                DataLoaderDispatcherInstrumentation per level, Rails' includes/preload, Django's select_related and \
                prefetch_related, Hibernate's batch fetching and JOIN FETCH, Join Monster and Hasura compiling a \
                query to one SQL statement.",
            try_this: &[
                "Play `query-per-field`: every request issues 1,121 queries and `queries-per-request` fails at once \
                 naming the request and `comments.author`; at 10 s traffic quadruples, the database's queue fills and \
                 `latency-p99` fails.",
                "Switch to `dataloader-per-tick`: the authors come from the cache, but each post still asks for its \
                 comments alone — 1 + 20 + 100 + 2 × (authors met) ≈ 221 queries a request, still over the bound.",
                "Switch to `windowed-batch`: 5 queries a request, one per level, and both checks hold through the \
                 spike; set the window to 0 and the batches split again.",
                "Ask for the seed's query: 100 users, 10 posts, 7 comments and a 3 ms query under `query-per-field`: \
                 15,101 queries and 45 s of database time a request.",
            ],
        },
    },
    params: &[
        ParamSpec::live("rps", "Requests", "requests/s", 0..=500, 5, "Poisson requests from the clients."),
        ParamSpec::live("users", "Users asked for", "", 1..=200, 20, "users(limit: n): the top-level list."),
        ParamSpec::live("posts", "Posts per user", "", 1..=20, 5, "Fan-out of the posts field."),
        ParamSpec::live("comments", "Comments per post", "", 1..=20, 5, "Fan-out of the comments field."),
        ParamSpec::live("depth", "Nesting depth", "levels", 1..=4, 4, "Fields asked for below users: posts, comments, author, profile."),
        ParamSpec::live("authors", "Comment authors", "people", 1..=100_000, 50, "A comment's author is one of these, at random."),
        ParamSpec::live("await_us", "Resolver await", "us", 0..=20_000, 1000, "Each object's resolver first awaits its own step, uniform up to this, before asking for its children.").step(100),
        ParamSpec::live("window_us", "Collection window", "us", 0..=50_000, 2000, "Windowed batching: a batch is sent this long after its first load.").step(100),
        ParamSpec::live("connections", "Database connections", "", 1..=256, 10, "Queries the database runs at once (c servers)."),
        ParamSpec::live("query_us", "Query time", "us", 100..=100_000, 1000, "Mean (exponential) time a query holds a connection.").step(100),
        ParamSpec::live("row_us", "Time per row", "us", 0..=1000, 5, "Added to a query for each row it returns."),
        ParamSpec::live("db_queue", "Database queue", "queries", 1..=1_000_000, 20_000, "Queries that may wait for a connection; more are refused."),
        ParamSpec::live("query_timeout_ms", "Query timeout", "ms", 10..=600_000, 5000, "A query unanswered this long fails its request.").step(10),
        ParamSpec::live("timeout_ms", "Client timeout", "ms", 10..=600_000, 10_000, "A client gives a request up after this long.").step(10),
        ParamSpec::live("max_queries", "Query bound", "queries", 1..=100_000, 20, "The most queries one request may issue."),
        ParamSpec::live("bound_ms", "Latency bound", "ms", 10..=600_000, 500, "The p99 promised to the clients.").step(10),
        ParamSpec::setup("spike_at", "Spike starts", "s", 0..=3600, 10, "Scheduled fault: traffic multiplies."),
        ParamSpec::setup("spike_len", "Spike length", "s", 0..=3600, 10, "How long it lasts (0: never)."),
        ParamSpec::setup("spike_factor", "Spike", "×", 1..=50, 4, "Traffic during the spike, as a multiple."),
    ],
    strategies: &[
        StrategySpec::naive("query-per-field", "Query per field", "Each object's resolver queries the database for its own field: one query per parent per field."),
        StrategySpec::naive("dataloader-per-tick", "DataLoader, per tick", "Loads made in one tick share a batch and a per-request cache; each parent's children are asked for in a tick of their own."),
        StrategySpec::fixed("windowed-batch", "Windowed batch + cache", "Loads are collected for a short window across ticks, then sent as one query per field, deduplicated by a per-request cache."),
        StrategySpec::fixed("joined-read", "Joined read", "The whole tree is read by one joined (denormalised) query."),
    ],
    faults: &[
        FaultSpec::global("spike", "Traffic spike", "Clients send this many times their rate (1 ends it).").value("×", 1..=50, 4),
        FaultSpec::global("db-slow", "Slow database", "Queries take this many times longer (1 ends it).").value("×", 1..=50, 5),
    ],
    checks: &[
        CheckSpec::new("queries-per-request", "Queries per request within the bound",
            "No finished request issued more queries than the bound; a breach names the request and the field that \
             issued the most."),
        CheckSpec::new("latency-p99", "Request p99 within the bound",
            "Over the last 2 s (or the last 100 answers while fewer came), no more than 1% of requests took longer \
             than the latency bound or failed, timed at the clients."),
    ],
    metrics: &[
        MetricSpec::new("queries_per_request", "Queries per request", "queries", Measure::Mean("queries_per_request")),
        MetricSpec::new("db_qps", "Database queries", "queries/s", Measure::Rate("queries")),
        MetricSpec::new("db_busy", "Database utilisation", "%", Measure::Gauge("db_busy_pct")),
        MetricSpec::new("p99", "Request latency p99", "us", Measure::Quantile("latency_us", 0.99)),
        MetricSpec::new("db_time", "Database time per request", "us", Measure::Mean("db_us_per_request")),
        MetricSpec::new("queued", "Database queue", "queries", Measure::Gauge("db_queued")),
        MetricSpec::new("failed", "Failed requests", "requests/s", Measure::Rate("failed")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Fetch { PerField, PerTick, Windowed, Joined });

const CLIENTS: NodeId = 0;
const API: NodeId = 1;
const DB: NodeId = 2;
/// The fields by nesting level: level 0 is the root list, `depth` levels follow.
pub const FIELDS: [&str; 5] = ["users", "posts", "comments", "comments.author", "author.profile"];
const SAMPLE_US: Micros = 250 * MICROS_PER_MS;

#[derive(Clone, Debug, Label)]
pub enum Msg {
    Request(CallId),
    Response { id: CallId, ok: bool },
    Query { id: CallId, rows: u64 },
    Rows { id: CallId, service_us: Micros },
    Busy(CallId),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Send,
    RequestTimeout(CallId),
    QueryTimeout(CallId),
    Dispatch { req: u64, window: u64 },
    Done(Slot),
    Sample,
}

#[derive(Clone, Debug, Holds)]
pub enum Np {
    Clients(Clients),
    Api(Api),
    Db(Db),
}

/// What a request asks for, read when it arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub users: u64,
    pub posts: u64,
    pub comments: u64,
    pub depth: usize,
}

impl Shape {
    /// Objects at `level`: n users, n·p posts, n·p·c comments, then an author and a profile per comment.
    pub fn objects(&self, level: usize) -> u64 {
        [1, self.posts, self.comments, 1, 1][..=level].iter().product::<u64>() * self.users
    }
    /// Query per field: the root, then one query per object per nested field, 1 + Σ objects(l < depth).
    pub fn per_field_queries(&self) -> u64 {
        1 + (0..self.depth).map(|l| self.objects(l)).sum::<u64>()
    }
    /// Rows a joined read returns: every object of every level asked for, authors repeated per comment.
    pub fn joined_rows(&self) -> u64 {
        (0..=self.depth).map(|l| self.objects(l)).sum()
    }
}

/// A query's load: its request, level, the parents it asks for and (to-one fields) the keys.
#[derive(Clone, Debug)]
pub struct Load {
    req: u64,
    level: usize,
    parents: u64,
    keys: Vec<u64>,
}

#[derive(Clone, Debug)]
pub struct Clients {
    arrivals: OpenLoop,
    calls: Calls<()>,
    judge: Judge,
}

/// Loads gathered for one field until `close` (windowed batching).
#[derive(Clone, Debug)]
struct Window {
    id: u64,
    level: usize,
    open: Time,
    close: Time,
    load: Load,
}

#[derive(Clone, Debug)]
pub struct Req {
    client: CallId,
    shape: Shape,
    /// Queries issued, per field (level).
    queries: [u64; 5],
    /// Queries out and windows open: the request is done when none are.
    open: u64,
    /// Per-request cache (loader strategies): (level, key) loaded or pending.
    cache: BTreeSet<(usize, u64)>,
    windows: Vec<Window>,
    db_us: Micros,
}

#[derive(Clone, Debug)]
pub struct Api {
    fetch: Fetch,
    calls: Calls<Load>,
    reqs: BTreeMap<u64, Req>,
    next: u64,
    breach: Breach,
    last_queries: u64,
}

#[derive(Clone, Debug)]
pub struct Db {
    station: Station<CallId>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Np> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let arrivals = OpenLoop::poisson(setup.param("rps") as f64);
    let judge = Judge::new(2 * MICROS_PER_S, 50, 100);
    assert_eq!(sim.add_node(Np::Clients(Clients { arrivals, calls: Calls::new("latency_us"), judge })), CLIENTS);
    let fetch = Fetch::from_id(setup.strategy());
    let api = Api { fetch, calls: Calls::new("query_latency_us"), reqs: BTreeMap::new(), next: 0, breach: Breach::default(), last_queries: 0 };
    assert_eq!(sim.add_node(Np::Api(api)), API);
    let station = Station::new(setup.param("connections") as u32, Service::exponential_us(setup.param("query_us")))
        .bounded(setup.param("db_queue") as usize, Full::Reject);
    assert_eq!(sim.add_node(Np::Db(Db { station })), DB);
    let spike = FaultWindow::secs(setup.param("spike_at"), setup.param("spike_len"));
    spike.custom(&mut sim, "spike", None, setup.param("spike_factor"), 1);
    sim.check("queries-per-request", |w| w.node::<Api>(API).breach.now(w.now));
    sim.check("latency-p99", |w| {
        let c = w.node::<Clients>(CLIENTS);
        let v = c.judge.verdict(w.now, Time::ZERO);
        match v.fails(1) {
            true => Err(format!("{} took over {} ms or failed", v.describe(2 * MICROS_PER_S), w.param("bound_ms"))),
            false => Ok(()),
        }
    });
    Box::new(sim)
}

impl Node for Np {
    type Msg = Msg;
    type Timer = Timer;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Np::Clients(c) => c.arrivals.start(ctx, Timer::Send),
            Np::Api(_) => {}
            Np::Db(_) => {
                ctx.set_timer(SAMPLE_US, Timer::Sample);
            }
        }
    }
    fn on_message(&mut self, _from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Np::Api(api), Msg::Request(id)) => api.request(id, ctx),
            (Np::Api(api), Msg::Rows { id, service_us }) => api.answered(id, service_us, ctx),
            (Np::Api(api), Msg::Busy(id)) => {
                let load = api.calls.cancel(id, ctx);
                api.failed(load, "refused", ctx);
            }
            (Np::Db(db), Msg::Query { id, rows }) => db.query(id, rows, ctx),
            (Np::Clients(c), Msg::Response { id, ok }) => c.answered(id, ok, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Np::Clients(c), Timer::Send) => c.send(ctx),
            (Np::Clients(c), Timer::RequestTimeout(id)) => {
                if c.calls.timeout(id).is_some() {
                    c.judged(false, u64::MAX, ctx);
                }
            }
            (Np::Api(api), Timer::QueryTimeout(id)) => {
                let load = api.calls.timeout(id);
                api.failed(load, "timed out", ctx);
            }
            (Np::Api(api), Timer::Dispatch { req, window }) => api.dispatch(req, window, ctx),
            (Np::Db(db), Timer::Done(slot)) => db.done(slot, ctx),
            (Np::Db(db), Timer::Sample) => {
                ctx.set_timer(SAMPLE_US, Timer::Sample);
                let busy = db.station.take_busy_pct(ctx.now());
                ctx.gauge("db_busy_pct", busy);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Np::Clients(c) => drop(c.calls.clear(ctx)),
            // Requests in progress are lost; their clients time out.
            Np::Api(api) => {
                api.calls.clear(ctx);
                api.reqs.clear();
            }
            Np::Db(db) => {
                let lost = db.station.crash(ctx).len();
                ctx.note(format!("{lost} queries lost"));
            }
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Np::Clients(cl), Control::Param { id: "rps", value }) => cl.arrivals.set_rate_per_s(value as f64, ctx, Timer::Send),
            (Np::Clients(cl), Control::Custom { id: "spike", value }) => {
                cl.arrivals.set_load_pct(value.max(1) as u32 * 100, ctx, Timer::Send);
                ctx.note(format!("traffic ×{}", value.max(1)));
            }
            (Np::Api(api), Control::Strategy(id)) => api.fetch = Fetch::from_id(id),
            (Np::Db(db), Control::Param { .. }) => db.configure(ctx),
            (Np::Db(db), Control::Custom { id: "db-slow", value }) => {
                db.station.set_slowdown_pct(value.max(1) as u32 * 100);
                ctx.note(format!("queries ×{} slower", value.max(1)));
            }
            // The others read their parameters when they use them; the kernel applies its own faults.
            _ => {}
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Np::Clients(c) => NodeView::new(NodeKind::Client, 0, "clients")
                .badge(format!("{:.0} req/s", c.arrivals.effective_rate_per_s()), Tone::Neutral)
                .badge_if(c.arrivals.load_pct() > 100, format!("spike ×{}", c.arrivals.load_pct() / 100), Tone::Bad)
                .gauge("requests out", c.calls.len() as i64, 100),
            Np::Api(api) => {
                let labels = [("query per field", Tone::Bad), ("batch per tick", Tone::Warn), ("window + cache", Tone::Good), ("one join", Tone::Good)];
                let (label, tone) = labels[api.fetch as usize];
                NodeView::new(NodeKind::Service, 1, "GraphQL API")
                    .badge(label, tone)
                    .badge(format!("last request: {} queries", api.last_queries), Tone::Neutral)
                    .gauge("requests resolving", api.reqs.len() as i64, 100)
                    .gauge("queries out", api.calls.len() as i64, 10_000)
            }
            Np::Db(db) => NodeView::new(NodeKind::Database, 2, "database")
                .badge_if(db.station.slowdown_pct() > 100, "slow", Tone::Bad)
                .gauge("connections busy", db.station.busy() as i64, db.station.servers() as i64)
                .gauge("queued", db.station.queue_len() as i64, db.station.queue_capacity().unwrap_or(1) as i64),
        }
    }
}

impl Clients {
    fn send(&mut self, ctx: &mut Ctx<Np>) {
        self.arrivals.on_timer(ctx, Timer::Send);
        let id = self.calls.start(ctx, (), ctx.param_ms("timeout_ms"), Timer::RequestTimeout);
        ctx.send(API, Msg::Request(id));
    }
    fn answered(&mut self, id: CallId, ok: bool, ctx: &mut Ctx<Np>) {
        if let Some(((), took_us)) = self.calls.reply_timed(id, ctx) {
            self.judged(ok, if ok { took_us } else { u64::MAX }, ctx);
        }
    }
    /// For the check (true time): slow or failed is bad.
    fn judged(&mut self, ok: bool, took_us: u64, ctx: &mut Ctx<Np>) {
        if !ok {
            ctx.count("failed", 1);
        }
        let bad = !ok || took_us > ctx.param_ms("bound_ms");
        self.judge.record(ctx.truth(), bad, took_us);
    }
}

impl Api {
    fn request(&mut self, client: CallId, ctx: &mut Ctx<Np>) {
        let p = |id| ctx.param(id) as u64;
        let shape = Shape { users: p("users"), posts: p("posts"), comments: p("comments"), depth: p("depth") as usize };
        let (id, windows, cache) = (self.next, Vec::new(), BTreeSet::new());
        self.next += 1;
        self.reqs.insert(id, Req { client, shape, queries: [0; 5], open: 0, cache, windows, db_us: 0 });
        // The root list, or under a join the whole tree: one query either way.
        self.query(Load { req: id, level: 0, parents: 1, keys: Vec::new() }, 0, ctx);
    }
    /// Sends `load` as one query after `delay_us` (the resolver's await, or none).
    fn query(&mut self, load: Load, delay_us: Micros, ctx: &mut Ctx<Np>) {
        let Some(r) = self.reqs.get_mut(&load.req) else { return };
        let rows = match (self.fetch, load.level) {
            (Fetch::Joined, 0) => r.shape.joined_rows(),
            (_, 0) => r.shape.users,
            (_, 1) => load.parents * r.shape.posts,
            (_, 2) => load.parents * r.shape.comments,
            _ => load.keys.len() as u64,
        };
        r.queries[load.level] += 1;
        r.open += 1;
        ctx.count("queries_issued", 1);
        let timeout = delay_us + ctx.param_ms("query_timeout_ms");
        let id = self.calls.start(ctx, load, timeout, Timer::QueryTimeout);
        ctx.send_after(delay_us, DB, Msg::Query { id, rows });
    }
    fn answered(&mut self, id: CallId, service_us: Micros, ctx: &mut Ctx<Np>) {
        let Some(load) = self.calls.reply(id, ctx) else { return };
        let Some(r) = self.reqs.get_mut(&load.req) else { return };
        r.open -= 1;
        r.db_us += service_us;
        if self.fetch != Fetch::Joined && load.level < r.shape.depth {
            self.children(&load, ctx);
        }
        self.finish_if_done(load.req, ctx);
    }
    /// The objects `load` brought each ask for their child field once their own await is over.
    fn children(&mut self, load: &Load, ctx: &mut Ctx<Np>) {
        let (level, r) = (load.level + 1, self.reqs.get_mut(&load.req).expect("asked by a request"));
        let objects = match load.level {
            0 => r.shape.users,
            1 => load.parents * r.shape.posts,
            2 => load.parents * r.shape.comments,
            _ => load.keys.len() as u64,
        };
        let (most_us, authors) = (ctx.param("await_us") as u64, ctx.param("authors") as u64);
        let mut asks: Vec<(Micros, u64)> = (0..objects)
            .map(|i| {
                let key = match load.level {
                    2 => ctx.rng().below(authors),
                    3 => load.keys[i as usize],
                    _ => i,
                };
                (ctx.rng().range(0, most_us), key)
            })
            .collect();
        asks.sort_by_key(|&(at, _)| at);
        let keyed = level >= 3;
        for (after, key) in asks {
            let keys = if keyed { vec![key] } else { Vec::new() };
            let one = Load { req: load.req, level, parents: 1, keys };
            match self.fetch {
                Fetch::PerField => self.query(one, after, ctx),
                Fetch::PerTick | Fetch::Windowed => {
                    let r = self.reqs.get_mut(&load.req).expect("asked by a request");
                    // A to-one field's key loaded or pending comes from the request's cache.
                    if keyed && !r.cache.insert((level, key)) {
                        continue;
                    }
                    match self.fetch {
                        Fetch::PerTick => self.query(one, after, ctx),
                        _ => self.collect(one, ctx.now().plus(after), ctx),
                    }
                }
                Fetch::Joined => unreachable!("a join brings the whole tree"),
            }
        }
    }
    /// Windowed: the load joins the window open for its field at `at`, or opens one.
    fn collect(&mut self, one: Load, at: Time, ctx: &mut Ctx<Np>) {
        let r = self.reqs.get_mut(&one.req).expect("asked by a request");
        if let Some(w) = r.windows.iter_mut().find(|w| w.level == one.level && w.open <= at && at <= w.close) {
            w.load.parents += 1;
            w.load.keys.extend(one.keys);
            return;
        }
        let close = at.plus(ctx.param("window_us") as Micros);
        let (id, level, req) = (self.next, one.level, one.req);
        self.next += 1;
        r.open += 1;
        r.windows.push(Window { id, level, open: at, close, load: one });
        ctx.set_timer(close.since(ctx.now()), Timer::Dispatch { req, window: id });
    }
    fn dispatch(&mut self, req: u64, window: u64, ctx: &mut Ctx<Np>) {
        let Some(r) = self.reqs.get_mut(&req) else { return };
        let Some(i) = r.windows.iter().position(|w| w.id == window) else { return };
        let w = r.windows.remove(i);
        r.open -= 1;
        self.query(w.load, 0, ctx);
    }
    /// A query refused or unanswered fails its request (if it is still resolving).
    fn failed(&mut self, load: Option<Load>, why: &str, ctx: &mut Ctx<Np>) {
        let Some(load) = load else { return };
        let Some(r) = self.reqs.remove(&load.req) else { return };
        ctx.count("queries_failed", 1);
        ctx.note(format!("a query for {} {why}: request #{} fails", FIELDS[load.level], load.req));
        ctx.send(CLIENTS, Msg::Response { id: r.client, ok: false });
    }
    fn finish_if_done(&mut self, req: u64, ctx: &mut Ctx<Np>) {
        if self.reqs.get(&req).is_none_or(|r| r.open > 0) {
            return;
        }
        let r = self.reqs.remove(&req).expect("just seen");
        let total: u64 = r.queries.iter().sum();
        self.last_queries = total;
        ctx.observe("queries_per_request", total);
        ctx.observe("db_us_per_request", r.db_us);
        ctx.count("requests_done", 1);
        ctx.count("authors_loaded", r.cache.iter().filter(|&&(l, _)| l == 3).count() as i64);
        let bound = ctx.param("max_queries") as u64;
        if total > bound {
            let (field, most) = (0..5).rev().map(|l| (FIELDS[l], r.queries[l])).max_by_key(|&(_, n)| n).expect("five fields");
            let why = format!("request #{req} issued {total} queries (bound {bound}); most for {field}: {most}");
            self.breach.record(why, ctx.truth());
        }
        ctx.send(CLIENTS, Msg::Response { id: r.client, ok: true });
    }
}

impl Db {
    fn configure(&mut self, ctx: &mut Ctx<Np>) {
        self.station.set_service(Service::exponential_us(ctx.param("query_us")));
        self.station.set_queue_capacity(Some(ctx.param("db_queue") as usize));
        self.station.set_servers(ctx.param("connections") as u32, ctx, Timer::Done);
    }
    fn query(&mut self, id: CallId, rows: u64, ctx: &mut Ctx<Np>) {
        let extra = rows * ctx.param("row_us") as u64;
        if !self.station.offer_sized(id, extra, ctx, Timer::Done).admitted() {
            ctx.send(API, Msg::Busy(id));
        }
        ctx.gauge("db_queued", self.station.queue_len() as i64);
    }
    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Np>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Done) else { return };
        ctx.count("queries", 1);
        ctx.gauge("db_queued", self.station.queue_len() as i64);
        ctx.send(API, Msg::Rows { id: f.job, service_us: f.service_us });
    }
}
