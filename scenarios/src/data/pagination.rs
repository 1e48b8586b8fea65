//! Deep pagination: readers page through a table newest first while rows are inserted and deleted. OFFSET/LIMIT reads every row it skips (page 8,000 reads 400,000) and shows rows twice or never as the table moves; a keyset cursor seeks, and sees each row once only if its key is unique.

use crate::parts::arrivals::{OpenLoop, Think};
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::judge::{verdict_of, Judge};
use crate::parts::paging::{Cursor, Page, Query, Table, Walk};
use crate::parts::ring::mix;
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use faultline_core::*;

// A table, an entry a line or two: rustfmt would give every argument a line of its own.
#[rustfmt::skip]
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "pagination",
        title: "Deep pagination: OFFSET or a cursor",
        category: "Data & scale",
        seeds: &["S3#3", "S3#20", "S3#59"],
        summary: "Three export jobs page through a million trades, newest first, as trades come and go. OFFSET reads every \
                  row it skips (page 8,000 reads 400,000) and shows a row twice per insert above; a cursor on the \
                  timestamp jumps rows sharing one; a cursor on (timestamp, id) reads 50 rows and shows each once.",
        note: Note {
            what_can_go_wrong: "`GET /trades?page=8000&size=50` becomes `OFFSET 399950 LIMIT 50`: the database cannot jump \
                to row 399,950, it walks the index past every one, so a page costs in proportion to its depth and paging \
                to page P costs P²/2 pages' worth of reads. And OFFSET counts places, not rows: a trade inserted at the \
                head while a reader thinks pushes every row down one place, so the next page starts with the row the \
                last one ended on; a trade deleted above the reader pulls them up, and a row is never shown. A cursor \
                on `created_at` alone fixes the cost but not the rows: trades written in one batch share a timestamp, \
                and `WHERE created_at < :last` jumps the rest of the last row's batch. The model: ids in a table (new \
                ones at the head, Poisson inserts, deletes uniform over the table); rows per timestamp geometric with \
                a set mean; a database of c connections, a query costing an overhead plus a cost per row read, its rows \
                read as the table stands when it finishes; readers paging without end, each pass from page 1.",
            what_you_sacrifice: "A cursor cannot jump to page 8,000: it only goes forward (and back, with the opposite \
                comparison) from a row it was given, so the UI shows 'next' and 'load more', not numbered pages. The \
                sort must be on a unique key, or made unique with the id as a tie-breaker, and covered by an index in \
                that order; sorting by a column a user picks needs an index per column. The cursor is opaque state \
                the client carries, and a reader sees the table as it moves, not as of when it started (a snapshot \
                or an export to object storage does that).",
            at_10x: "At 10 million rows OFFSET's deep pages read millions of rows each and time out (the seed's \
                40-second ListObjects), and a few scrapers at depth fill every connection, so the shallow reads of \
                everyone else queue behind them. The keyset page stays at one index seek plus 50 rows at any depth. \
                With inserts at 10× the rate, OFFSET repeats ten times the rows per page until a reader is shown \
                nothing new.",
            resembles: "Every REST API's `?page=N` against SQL's OFFSET; Slack's, Stripe's and GitHub's cursor \
                pagination (`starting_after`, `Link: rel=next`); S3's `ListObjectsV2` continuation tokens and \
                DynamoDB's `LastEvaluatedKey`; Elasticsearch's `search_after` against `from`/`size` (capped at 10,000 \
                by default for this reason); Markus Winand's 'no offset' (use-the-index-luke.com).",
            try_this: &[
                "Play `offset`: from the first pages each insert above a reader shows it a row twice (`each-row-once` \
                 fails at once), rows read per page climb 50 at a time, and near page 470 (some 13 s in) a page takes \
                 over 50 ms and `page-latency` fails.",
                "Switch to `keyset-timestamp`: rows read per page drop to 50 and pages take some 3 ms, but each page \
                 jumps over the rest of its last row's timestamp — on average rows per timestamp − 1, two rows a page \
                 — and `each-row-once` fails naming one.",
                "Switch to `keyset`: the cursor is (timestamp, id), unique: no row repeated or jumped while the backfill \
                 at 8 s and the purge at 18 s rewrite the table, and pages stay fast at any depth.",
                "Under `keyset-timestamp` set rows per timestamp to 1: every row has its own timestamp and the cursor \
                 is exact again — the ties were the whole trouble.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("rows", "Rows in the table", "rows", 1..=100_000_000, 1_000_000, "Rows at the start, ids 1 up to this."),
        ParamSpec::setup("per_stamp", "Rows per timestamp", "rows", 1..=1000, 3, "Mean rows sharing one created_at (geometric; 1: all distinct)."),
        ParamSpec::setup("readers", "Readers", "", 1..=64, 3, "Export jobs paging through the table, each from page 1 again after its last page."),
        ParamSpec::live("page_size", "Page size", "rows", 1..=1000, 50, "Rows a page asks for (LIMIT)."),
        ParamSpec::live("pages", "Pages per pass", "pages", 1..=1_000_000, 8000, "A reader starts again from page 1 after this many pages (or the table's end)."),
        ParamSpec::live("think_ms", "Think time", "ms", 0..=60_000, 2, "Mean (exponential) time a reader spends on a page before asking for the next."),
        ParamSpec::live("inserts", "Inserts", "rows/s", 0..=100_000, 20, "Poisson inserts at the head (the newest rows)."),
        ParamSpec::live("deletes", "Deletes", "rows/s", 0..=100_000, 5, "Poisson deletes of rows anywhere in the table."),
        ParamSpec::live("connections", "Database connections", "", 1..=256, 4, "Queries the database runs at once."),
        ParamSpec::live("query_us", "Query overhead", "us", 1..=1_000_000, 1000, "A page query's fixed cost: parse, plan, seek."),
        ParamSpec::live("row_ns", "Cost per row read", "ns", 0..=1_000_000, 2000, "Reading one row through the index (skipped or returned)."),
        ParamSpec::live("timeout_ms", "Reader's timeout", "ms", 10..=600_000, 10_000, "A page not answered in this time is asked for again."),
        ParamSpec::live("bound_ms", "Latency bound", "ms", 5..=60_000, 50, "The p99 a page is promised, timed at the reader.").step(5),
        ParamSpec::setup("backfill_at", "Backfill starts", "s", 0..=3600, 8, "Scheduled fault: inserts surge (a backfill or an import)."),
        ParamSpec::setup("backfill_len", "Backfill length", "s", 0..=3600, 4, "How long it lasts (0: never)."),
        ParamSpec::setup("backfill_factor", "Backfill", "×", 1..=1000, 20, "The insert rate while it lasts, as a multiple."),
        ParamSpec::setup("purge_at", "Purge starts", "s", 0..=3600, 18, "Scheduled fault: deletes surge (a retention purge)."),
        ParamSpec::setup("purge_len", "Purge length", "s", 0..=3600, 4, "How long it lasts (0: never)."),
        ParamSpec::setup("purge_factor", "Purge", "×", 1..=1000, 100, "The delete rate while it lasts, as a multiple."),
    ],
    strategies: &[
        StrategySpec::naive("offset", "OFFSET / LIMIT", "Page N is `OFFSET (N−1)·size LIMIT size`: the database walks past every earlier row, and positions move as rows come and go."),
        StrategySpec::naive("keyset-timestamp", "Cursor on the timestamp", "The next page is `WHERE created_at < :last_created_at`: a seek, but rows sharing the last row's timestamp are jumped."),
        StrategySpec::fixed("keyset", "Keyset cursor (timestamp, id)", "The next page is `WHERE (created_at, id) < (:last_created_at, :last_id)`: a seek on a unique key."),
    ],
    faults: &[
        FaultSpec::node("backfill", "Backfill", "Inserts at this many times their rate (1 ends it).").value("×", 1..=1000, 20),
        FaultSpec::node("purge", "Purge", "Deletes at this many times their rate (1 ends it).").value("×", 1..=1000, 100),
    ],
    checks: &[
        CheckSpec::new("each-row-once", "Each row shown once",
            "A reader's pass shows every row that was in the table when it began and is still there exactly once: no \
             row again on a later page, none jumped over."),
        CheckSpec::new("page-latency", "Page p99 within the bound",
            "Over the last 2 s, no more than 1% of the pages asked for (judged once there are 20) took longer than the \
             latency bound, timed at the reader; a page that timed out counts as over it."),
    ],
    metrics: &[
        MetricSpec::new("rows_read", "Rows read per page", "rows", Measure::Mean("rows_read")),
        MetricSpec::new("p99", "p99: page latency", "us", Measure::Quantile("page_us", 0.99)),
        MetricSpec::new("repeated", "Rows shown twice", "rows/s", Measure::Rate("repeated")),
        MetricSpec::new("jumped", "Rows jumped over", "rows/s", Measure::Rate("jumped")),
        MetricSpec::new("page", "Reader 1's page", "page", Measure::Gauge("page")),
        MetricSpec::new("busy", "Connections busy", "", Measure::Gauge("busy")),
        MetricSpec::new("pages", "Pages served", "pages/s", Measure::Rate("pages")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Paging { Offset, KeysetTimestamp, Keyset });

const DB: NodeId = 0;
/// Reader `r` (from 1) is node `WRITERS + r`.
const WRITERS: NodeId = 1;
/// The latency check's window, and the fewest pages in it it judges.
const WINDOW_US: Micros = 2 * MICROS_PER_S;
const MIN_PAGES: usize = 20;

/// A page query carries the reader's oldest row so far, for the audit alone (what it jumped is counted at the table).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Ask(CallId, Query, Option<u64>),
    Rows(CallId, Page),
    /// An insert (0) or a delete (1).
    Write(usize),
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Done(Slot),
    Next,
    Timeout(CallId),
    Write(usize),
}

#[derive(Clone, Debug, Holds)]
pub enum Pg {
    Db(Db),
    Writers(Writers),
    Reader(Reader),
}

/// A query at the database: who asked, the call, the query and the asker's oldest row.
type Job = (NodeId, CallId, Query, Option<u64>);

#[derive(Clone, Debug)]
pub struct Db {
    table: Table,
    station: Station<Job>,
    /// Rows the deepest query held reads (view, check); whether reading them passes the bound.
    deepest: u64,
    over: bool,
}

/// Poisson inserts (0) and deletes (1), each with its rate parameter and its surge fault.
#[derive(Clone, Debug)]
pub struct Writers([OpenLoop; 2]);
const WRITES: [(&str, &str); 2] = [("inserts", "backfill"), ("deletes", "purge")];

#[derive(Clone, Debug)]
pub struct Reader {
    n: u64,
    paging: Paging,
    /// Pages asked for, each with its page size (a size changed meanwhile is for the next page).
    calls: Calls<u64>,
    walk: Walk,
    /// The pages answered, judged against the bound; the latest broken promise of its pass.
    judge: Judge,
    breach: Breach,
    /// For the view: the last page's latency, and whether it was over the bound.
    last_us: Micros,
    slow: bool,
}

fn sim(setup: &Setup) -> Sim<Pg> {
    let mut sim: Sim<Pg> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 1_500 }));
    let table = Table::new(setup.param("rows") as u64, setup.param("per_stamp") as u64, mix(setup.seed() ^ 0x9a9e));
    let station = Station::new(setup.param("connections") as u32, Service::Constant(setup.param("query_us") as Micros));
    assert_eq!(sim.add_node(Pg::Db(Db { table, station, deepest: 0, over: false })), DB);
    sim.add_node(Pg::Writers(Writers(WRITES.map(|(rate, _)| OpenLoop::poisson(setup.param(rate) as f64)))));
    let paging = Paging::from_id(setup.strategy());
    for n in 1..=setup.param("readers") as u64 {
        let judge = Judge::new(WINDOW_US, MIN_PAGES, MIN_PAGES);
        let (calls, walk, breach) = (Calls::new("page_us"), Walk::default(), Breach::default());
        sim.add_node(Pg::Reader(Reader { n, paging, calls, walk, judge, breach, last_us: 0, slow: false }));
    }
    for (_, surge) in WRITES {
        let (at, len) = (setup.param(&format!("{surge}_at")), setup.param(&format!("{surge}_len")));
        FaultWindow::secs(at, len).custom(&mut sim, surge, Some(WRITERS), setup.param(&format!("{surge}_factor")), 1);
    }
    let readers = WRITERS + 1..=WRITERS + setup.param("readers") as NodeId;
    sim.check("each-row-once", {
        let readers = readers.clone();
        move |w| readers.clone().try_for_each(|r| w.node::<Reader>(r).breach.now(w.now))
    });
    sim.check("page-latency", move |w| {
        let judges: Vec<&Judge> = readers.clone().map(|r| &w.node::<Reader>(r).judge).collect();
        let v = verdict_of(judges.iter().copied(), w.now, Time::ZERO);
        if !v.fails(1) {
            return Ok(());
        }
        let (p99, deepest) = (Judge::quantile(judges, &v, w.now, Time::ZERO, 0.99), w.node::<Db>(DB).deepest);
        let p99 = p99.filter(|&us| us != u64::MAX).map_or("a page timed out".into(), |us| format!("{} ms", us / 1000));
        let over = v.describe(WINDOW_US);
        Err(format!("{over} took over {} ms (p99 {p99}); the deepest query reads {deepest} rows", w.param("bound_ms")))
    });
    sim
}

impl Node for Pg {
    type Msg = Msg;
    type Timer = Timer;
    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Pg::Db(db) => db.publish(ctx),
            Pg::Writers(w) => (0..2).for_each(|k| w.0[k].start(ctx, Timer::Write(k))),
            Pg::Reader(r) => r.think(ctx),
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Pg::Db(db), Msg::Ask(call, query, oldest)) => db.ask((from, call, query, oldest), ctx),
            (Pg::Db(db), Msg::Write(0)) => {
                db.table.insert();
                ctx.count("inserted", 1);
            }
            (Pg::Db(db), Msg::Write(_)) => {
                db.table.delete_any(ctx.rng());
            }
            (Pg::Reader(r), Msg::Rows(call, page)) => r.answered(call, page, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Pg::Db(db), Timer::Done(slot)) => db.done(slot, ctx),
            (Pg::Writers(w), Timer::Write(k)) => {
                w.0[k].on_timer(ctx, Timer::Write(k));
                ctx.send(DB, Msg::Write(k));
            }
            (Pg::Reader(r), Timer::Next) => r.ask(ctx),
            (Pg::Reader(r), Timer::Timeout(call)) => {
                if r.calls.timeout(call).is_some() {
                    r.judge.record(ctx.truth(), true, u64::MAX); // never answered: over the bound
                    r.ask(ctx);
                }
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            // The queries it was running are lost (their readers time out and ask again); the
            // table is on disk.
            Pg::Db(db) => {
                let lost = db.station.crash(ctx).len();
                db.deepest = 0;
                ctx.note(format!("{lost} queries lost"));
                db.publish(ctx);
            }
            // A restarted export starts over from page 1.
            Pg::Reader(r) => {
                r.calls.clear(ctx);
                r.walk.restart();
            }
            _ => {}
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Pg::Reader(r), Control::Strategy(id)) => r.paging = Paging::from_id(id),
            // Connections and the query's overhead act at once; the cost per row, on the next query.
            (Pg::Db(db), Control::Param { .. }) => {
                db.station.set_service(Service::Constant(ctx.param("query_us") as Micros));
                db.station.set_servers(ctx.param("connections") as u32, ctx, Timer::Done);
                db.publish(ctx);
            }
            (Pg::Writers(w), Control::Param { id, value }) => {
                if let Some(k) = WRITES.iter().position(|&(rate, _)| rate == id) {
                    w.0[k].set_rate_per_s(value as f64, ctx, Timer::Write(k));
                }
            }
            (Pg::Writers(w), Control::Custom { id, value }) => {
                if let Some(k) = WRITES.iter().position(|&(_, surge)| surge == id) {
                    w.0[k].set_load_pct(value.max(1) as u32 * 100, ctx, Timer::Write(k));
                    ctx.note(format!("{} ×{}", WRITES[k].0, value.max(1)));
                }
            }
            // Page size, pages, think time, timeout, bound and row cost are read when used;
            // the kernel applies its own faults.
            _ => {}
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Pg::Db(db) => db.view(),
            Pg::Writers(w) => w.view(),
            Pg::Reader(r) => r.view(),
        }
    }
}

impl Db {
    /// Into a connection or the queue; its cost is the overhead plus a cost per row it reads.
    fn ask(&mut self, job: Job, ctx: &mut Ctx<Pg>) {
        let read = job.2.rows_read(self.table.rows());
        let extra_us = (read as u128 * ctx.param("row_ns") as u128 / 1000) as Micros;
        self.deepest = self.deepest.max(read);
        let offer = self.station.offer_sized(job, extra_us, ctx, Timer::Done);
        debug_assert!(offer.admitted(), "the queue is unbounded");
        self.publish(ctx);
    }
    /// The rows are read as the table stands as the query finishes.
    fn done(&mut self, slot: Slot, ctx: &mut Ctx<Pg>) {
        let Some(f) = self.station.done(slot, ctx, Timer::Done) else { return };
        let (reader, call, query, oldest) = f.job;
        ctx.observe("rows_read", query.rows_read(self.table.rows()));
        ctx.count("pages", 1);
        ctx.send(reader, Msg::Rows(call, self.table.read(query, oldest)));
        // The deepest query still held, or this one's when none is.
        let (rows, held) = (self.table.rows(), self.station.queued().chain(self.station.in_service()));
        self.deepest = held.map(|j| j.2.rows_read(rows)).max().unwrap_or(query.rows_read(rows));
        self.publish(ctx);
    }
    fn publish(&mut self, ctx: &mut Ctx<Pg>) {
        ctx.gauge("busy", self.station.busy() as i64);
        let cost_us = ctx.param("query_us") as u128 + self.deepest as u128 * ctx.param("row_ns") as u128 / 1000;
        self.over = cost_us > ctx.param("bound_ms") as u128 * 1000;
    }
    fn view(&self) -> NodeView {
        let c = self.station.servers() as i64;
        let reads = format!("deepest query reads {} rows", self.deepest);
        NodeView::new(NodeKind::Database, 2, "database")
            .badge(format!("{} rows", self.table.rows()), Tone::Neutral)
            .badge(reads, if self.over { Tone::Bad } else { Tone::Good })
            .gauge("connections busy", self.station.busy() as i64, c)
            .gauge("queries queued", self.station.queue_len() as i64, c.max(self.station.queue_len() as i64))
    }
}

impl Writers {
    fn view(&self) -> NodeView {
        WRITES.iter().zip(&self.0).fold(NodeView::new(NodeKind::Client, 3, "writers"), |v, (&(rate, surge), o)| {
            v.badge(format!("{:.0} {rate}/s", o.effective_rate_per_s()), Tone::Neutral).badge_if(
                o.load_pct() > 100,
                format!("{surge} ×{}", o.load_pct() / 100),
                Tone::Warn,
            )
        })
    }
}

impl Reader {
    fn think(&mut self, ctx: &mut Ctx<Pg>) {
        let think_us = Think::exponential(ctx.param("think_ms") as Micros * MICROS_PER_MS).draw_us(ctx.rng());
        ctx.set_timer(think_us, Timer::Next);
    }
    /// The next page of this pass, as the strategy in force asks for it.
    fn ask(&mut self, ctx: &mut Ctx<Pg>) {
        let cursor = [Cursor::Offset, Cursor::Stamp, Cursor::Key][self.paging as usize];
        let (limit, timeout_us) = (ctx.param("page_size") as u64, ctx.param("timeout_ms") as Micros * MICROS_PER_MS);
        let query = self.walk.next(cursor, limit);
        let call = self.calls.start(ctx, limit, timeout_us, Timer::Timeout);
        ctx.send(DB, Msg::Ask(call, query, self.walk.pass.oldest()));
    }
    fn answered(&mut self, call: CallId, page: Page, ctx: &mut Ctx<Pg>) {
        let Some((limit, took_us)) = self.calls.reply_timed(call, ctx) else { return };
        let bound_us = ctx.param("bound_ms") as Micros * MICROS_PER_MS;
        (self.last_us, self.slow) = (took_us, took_us > bound_us);
        self.judge.record(ctx.truth(), self.slow, took_us);
        let at = format!("reader {}, pass {}, page {}", self.n, self.walk.passes + 1, self.walk.pass.pages + 1);
        let audit = self.walk.answered(&page, limit, ctx.param("pages") as u64);
        ctx.count("repeated", audit.repeated.len() as i64);
        ctx.count("jumped", audit.jumped_count as i64);
        if let Some(what) = audit.describe() {
            self.breach.record(format!("{at}: {what}"), ctx.truth());
        }
        if self.n == 1 {
            ctx.gauge("page", self.walk.pass.pages as i64);
        }
        self.think(ctx);
    }
    fn view(&self) -> NodeView {
        let tone = if self.slow { Tone::Bad } else { Tone::Good };
        NodeView::new(NodeKind::Client, 0, numbered("reader", self.n))
            .badge(format!("page {}", self.walk.pass.pages + 1), Tone::Neutral)
            .badge(format!("last page {} ms", self.last_us / MICROS_PER_MS), tone)
            .badge_if(self.breach.latest().is_some(), self.breach.latest().unwrap_or(""), Tone::Bad)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::paging::offset_pages_within;
    use crate::parts::testing::{failed_at, run_sampled, run_sim, Sampled};

    const ONCE: &str = "each-row-once";
    const LATENCY: &str = "page-latency";

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("pagination", strategy, seed)
    }

    /// No writes and no faults: the table stands still.
    fn still(r: Recipe) -> Recipe {
        r.with_param("inserts", 0).with_param("deletes", 0).with_param("backfill_len", 0).with_param("purge_len", 0)
    }

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &["pages", "repeated", "jumped", "inserted"])
    }

    fn counter(r: &dyn Run, name: &str) -> f64 {
        r.metrics().counter(name) as f64
    }

    #[test]
    fn try_offset_repeats_rows_at_once_and_slows_past_the_bound_near_page_470() {
        // Step 1: an insert in the first pages' few milliseconds repeats a row; page p reads
        // 50p rows at 2 µs, so a page takes 3 ms + 0.1p ms and passes 50 ms near p = 470,
        // reached at 470 · 5 ms + 0.05 · 470 · 471 ms ≈ 13.4 s (2 ms of think a page).
        for seed in 1..=3 {
            let (r, _) = run(recipe("offset", seed), 16);
            let (t, why) = failed_at(r.as_ref(), ONCE).unwrap_or_else(|| panic!("seed {seed}: rows held"));
            assert!(t < 1.0 && why.contains("shown again"), "seed {seed}: at {t} s: {why}");
            let (t, why) = failed_at(r.as_ref(), LATENCY).unwrap_or_else(|| panic!("seed {seed}: fast"));
            assert!((12.5..14.5).contains(&t), "seed {seed}: at {t} s: {why}");
        }
    }

    #[test]
    fn try_keyset_timestamp_jumps_the_rest_of_each_pages_last_timestamp() {
        // Step 2: 50 rows read a page; the rows left in the last row's group are geometric with
        // mean m − 1 = 2 (memoryless), jumped every page. Over ~17,000 pages the mean's s.d. is
        // √(3·2)/√17,000 ≈ 0.02: ±0.1 is 5 s.d.
        for seed in 1..=3 {
            let (r, _) = run(still(recipe("keyset-timestamp", seed)), 30);
            let (_, why) = failed_at(r.as_ref(), ONCE).unwrap_or_else(|| panic!("seed {seed}: rows held"));
            assert!(why.contains("jumped over"), "seed {seed}: {why}");
            assert!(failed_at(r.as_ref(), LATENCY).is_none(), "seed {seed}");
            assert_eq!(r.metrics().histogram("rows_read").expect("pages").mean(), 50.0);
            let per_page = counter(r.as_ref(), "jumped") / counter(r.as_ref(), "pages");
            assert!((per_page - 2.0).abs() < 0.1, "seed {seed}: {per_page:.3} jumped a page");
        }
    }

    #[test]
    fn try_keyset_shows_each_row_once_through_backfill_and_purge_and_stays_fast() {
        // Step 3: the default plan (a ×20 backfill at 8 s, a ×100 purge at 18 s) moves nothing
        // under a cursor on (timestamp, id).
        for seed in 1..=3 {
            let (r, _) = run(recipe("keyset", seed), 30);
            assert!(failed_at(r.as_ref(), ONCE).is_none() && failed_at(r.as_ref(), LATENCY).is_none(), "seed {seed}");
            assert_eq!((counter(r.as_ref(), "repeated"), counter(r.as_ref(), "jumped")), (0.0, 0.0));
            assert!(counter(r.as_ref(), "inserted") > 1_000.0, "seed {seed}: the backfill ran");
            assert!(r.metrics().histogram("page_us").expect("pages").quantile(0.99) < 10_000);
        }
    }

    #[test]
    fn try_one_row_per_timestamp_makes_the_timestamp_cursor_exact() {
        // Step 4: with no ties, `created_at < :last` is the keyset cursor.
        for seed in 1..=3 {
            let (r, _) = run(recipe("keyset-timestamp", seed).with_param("per_stamp", 1), 30);
            assert!(failed_at(r.as_ref(), ONCE).is_none(), "seed {seed}");
        }
    }

    #[test]
    fn the_stamp_cursor_jumps_rows_per_timestamp_minus_one_a_page() {
        // Geometric groups of mean m leave m − 1 rows of the last row's group below it.
        for (m, seed) in [(5, 1), (10, 2)] {
            let (r, _) = run(still(recipe("keyset-timestamp", seed)).with_param("per_stamp", m), 30);
            let per_page = counter(r.as_ref(), "jumped") / counter(r.as_ref(), "pages");
            let want = (m - 1) as f64;
            // s.d. of the mean √(m(m − 1)/pages) < 0.08 here: ±4% of m − 1 is over 4 s.d.
            assert!((per_page - want).abs() < 0.04 * want, "m {m}: {per_page:.3} a page, theory {want}");
        }
    }

    #[test]
    fn offset_repeats_one_row_per_insert_and_its_depth_follows_the_quadratic() {
        // Each insert at the head between two of a reader's pages moves the next page down one
        // place: one row repeated per insert (the shift stays below a page). Over 30 s the
        // inserts before the first page or after the last (a few ms each end) are the gap.
        for seed in 1..=3 {
            let r = still(recipe("offset", seed)).with_param("readers", 1).with_param("inserts", 100);
            let (r, _) = run(r, 30);
            let (inserted, repeated) = (counter(r.as_ref(), "inserted"), counter(r.as_ref(), "repeated"));
            assert!(inserted > 2_500.0 && (0.0..=15.0).contains(&(inserted - repeated)), "{inserted} {repeated}");
        }
        // Pages reached by 30 s, reader alone on its connection: a page costs the round trip
        // (2 ms mean), 1 ms of overhead, 2 ms of think, and 2 µs × 50 rows × its depth. Per-page
        // randomness adds up to ~60 ms over 30 s, under a page at depth 700: ±1% is ample.
        let theory = offset_pages_within(30e6, 5_000.0, 2.0, 50.0);
        for seed in 1..=3 {
            let sim = built(still(recipe("offset", seed)));
            let sim = run_sim(sim, 30);
            let page = sim.nodes().iter().find_map(|n| match n {
                Pg::Reader(r) if r.n == 1 => Some(r.walk.pass.pages as f64),
                _ => None,
            });
            let page = page.expect("reader 1");
            assert!((page - theory).abs() < 0.01 * theory, "seed {seed}: page {page}, theory {theory:.1}");
        }
    }

    #[test]
    fn the_view_shows_the_deep_query_and_the_broken_row() {
        let sim = run_sim(built(recipe("offset", 2)), 16);
        let views: Vec<NodeView> = sim.nodes().iter().map(|n| n.view()).collect();
        let has =
            |v: &NodeView, text: &str, tone: Tone| v.badges.iter().any(|b| b.text.contains(text) && b.tone == tone);
        assert!(has(&views[DB as usize], "deepest query reads", Tone::Bad));
        assert!(has(&views[WRITERS as usize + 1], "shown again", Tone::Bad));
        let sim = run_sim(built(recipe("keyset", 2)), 14);
        let db = sim.nodes()[DB as usize].view();
        assert!(has(&db, "deepest query reads 50 rows", Tone::Good));
    }

    fn built(recipe: Recipe) -> Sim<Pg> {
        sim(&Setup { spec: &SPEC, recipe })
    }
}
