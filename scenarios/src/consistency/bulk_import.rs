//! Bulk import with checkpoints: an importer reads a large file in batches, writes each to a database and saves its place in a checkpoint store; a crash mid-batch makes it start over (restart from zero), write a batch twice (checkpoint after the write), lose one (checkpoint first) — or, with batch ids the database refuses twice, land every row exactly once.

use crate::parts::arrivals::{per_s_every, OpenLoop};
use crate::parts::calls::{CallId, Calls};
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::table::Sequence;
use crate::parts::unique::{Inserted, UniqueIndex};
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "bulk-import",
        title: "Bulk import with checkpoints",
        category: "Transactions & consistency",
        seeds: &["S0#11"],
        summary: "An importer loads a file of 150,000 rows into a database in batches of 1,000, saving its place in a checkpoint store, and crashes every 3 s on average (and once at 5 s between a batch's two steps). Starting over never finishes and writes rows again; a checkpoint after the write repeats the batch a crash lands after; a checkpoint first loses it; batch ids the database refuses twice land every row once.",
        note: Note {
            what_can_go_wrong: "The rows and the checkpoint live in two systems, and no order of the two writes survives a crash between them. Write, then checkpoint: the database committed the batch (a write already sent commits though its sender died) while the checkpoint still points before it, so the restarted importer writes it again. Checkpoint, then write: the checkpoint is past a batch that never landed, and the import ends with rows missing. Starting over needs one up time as long as the whole import: with crashes every M on average, D down each time and τ of work, it takes (M + D)(e^(τ/M) − 1) on average — exponential in the import's length. Model: one importer reads rows (read_us each), writes a batch in one call (the database takes overhead_ms plus write_us a row, one batch at a time, all or nothing), then or before saves its checkpoint (overhead_ms); crashes are Poisson (mean crash_every_ms), none while it is down; a call unanswered after 1 s plus twice its expected time is sent again; the database and the store keep what they committed.",
            what_you_sacrifice: "Batch ids: a row per batch in a load table, written in the batch's transaction and looked up at every commit; a replay is still read and sent (work redone), refused only at commit. Checkpoints: a commit and a checkpoint write per batch — small batches pay them often, large ones lose more to each crash (the batch's reading so far, its whole write).",
            at_10x: "A 10× larger file (the seed's 10 TB) restarted from zero needs an up time 10× longer: e^(10τ/M) — it never finishes. With checkpoints a crash still costs about a batch, and the import takes 10× as long. Crashes 10× as often: the best batch shrinks by √10 (Young: √(2·C·M) of work between checkpoints, C the per-batch overhead).",
            resembles: "Kafka Connect sink offsets (committed after the write: at least once unless the sink is idempotent), Snowflake COPY INTO's load history (files loaded are skipped), BigQuery load job ids, Spark and Flink checkpoints, AWS DMS and Debezium snapshot chunks, a load-log table beside COPY.",
            try_this: &[
                "Play `restart-from-zero`: the first crash sends the importer back to row 1 and `no-row-twice` names the first batch written again; with ~16 s of work and a crash every 3 s the import needs (M + D)(e^(τ/M) − 1), about 12 minutes: at 30 s it is far from done.",
                "Play `checkpoint-after-write`: the crash at 5 s lands after a batch's write and before its checkpoint, and `no-row-twice` names the batch; so do about half the random crashes (the write and the checkpoint are half of each batch's time). `checkpoint-first` finishes near 20 s with a batch missing (`no-row-missing`).",
                "Switch to `batch-ids`: the same crashes, each replayed batch refused at commit ('Repeat rows refused'), every row once, done near 20 s; a crash costs B·(R/2 + W + K)/(R + W + K) rows, about 770 of a 1,000-row batch (R, W, K: its read, write and checkpoint times).",
                "Set `batch_rows` to 100, then 50,000: the first pays the per-batch overhead 1,500 times, the second loses seconds of work to each crash, and neither is done at 30 s; near 2,500 (Young's √(2CM) ≈ 0.27 s of work a batch) the import finishes first, near 19 s.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("rows", "Rows in the file", "rows", 1000..=1_000_000, 150_000, "Rows to import, numbered from 1.").step(1000),
        ParamSpec::live("batch_rows", "Batch size", "rows", 10..=50_000, 1000, "Rows read and written as one batch (read as each batch starts).").step(10),
        ParamSpec::live("read_us", "Read per row", "us", 1..=10_000, 50, "The importer's time to read and parse a row."),
        ParamSpec::live("write_us", "Write per row", "us", 1..=10_000, 50, "The database's time per row of a batch."),
        ParamSpec::live("overhead_ms", "Per-batch overhead", "ms", 0..=1000, 5, "A batch's commit (fsync), and a checkpoint write, each take this."),
        ParamSpec::live("crash_every_ms", "Importer crashes every", "ms", 0..=600_000, 3000, "Mean time between importer crashes (exponential; 0: none).").step(100),
        ParamSpec::live("restart_ms", "Restart after", "ms", 10..=60_000, 500, "A crashed importer is back after this.").step(10),
        ParamSpec::setup("crash_mid_at", "Crash mid-batch at", "s", 0..=3600, 5, "Scheduled: the importer crashes between its next batch's two steps (0: none)."),
    ],
    strategies: &[
        StrategySpec::naive("restart-from-zero", "Restart from zero", "No checkpoint: after a crash the importer starts again at row 1, writing again what it wrote."),
        StrategySpec::naive("checkpoint-after-write", "Checkpoint after write", "Writes the batch, then saves the checkpoint: a crash between them writes the batch again."),
        StrategySpec::naive("checkpoint-first", "Checkpoint, then write", "Saves the checkpoint past the batch, then writes it: a crash between them loses the batch."),
        StrategySpec::fixed("batch-ids", "Idempotent batch ids", "Checkpoint after write, the batch's id committed with its rows: a replayed batch is refused."),
    ],
    faults: &[
        FaultSpec::global("crash-mid-batch", "Crash mid-batch", "The importer crashes as its next batch's first step (the write, or the checkpoint if it goes first) is acknowledged, before the second."),
    ],
    checks: &[
        CheckSpec::new("no-row-twice", "No row written twice", "Each row is in the table once: fails as a commit writes rows already there; names the batch."),
        CheckSpec::new("no-row-missing", "No row missing", "When the importer says it is done, every row of the file is in the table; names the first missing."),
    ],
    metrics: &[
        MetricSpec::new("imported", "Rows imported", "rows", Measure::Count("imported")),
        MetricSpec::new("rate", "Import rate", "rows/s", Measure::Rate("imported")),
        MetricSpec::new("redone", "Work redone (rows read again)", "rows", Measure::Count("rows_redone")),
        MetricSpec::new("lost", "Work lost per crash", "rows", Measure::Mean("lost_per_crash")),
        MetricSpec::new("dups", "Rows written twice", "rows", Measure::Count("dup_rows")),
        MetricSpec::new("refused", "Repeat rows refused", "rows", Measure::Count("refused_rows")),
        MetricSpec::new("finished", "Import finished at", "ms", Measure::Gauge("finished_ms")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { FromZero, AfterWrite, First, BatchIds });
const IMPORTER: NodeId = 0;
const DB: NodeId = 1;
const STORE: NodeId = 2;
type Row = u64;

/// A batch: its first and last rows (from 1), inclusive; its id is its first row.
#[rustfmt::skip]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Batch { first: Row, last: Row }
#[rustfmt::skip]
impl Batch { fn rows(self) -> u64 { self.last + 1 - self.first } }
/// What follows a step once it is acknowledged: the next batch, or the batch's second step.
#[rustfmt::skip]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Then { Read, Save, Write(Batch) }
/// An importer's call: read the checkpoint (after a restart), write a batch, save a checkpoint.
#[rustfmt::skip]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step { Resume, Write(Batch, Then), Save(Row, Then) }
// Calls carry the importer's call id; every answer is an `Ack` with a row: the checkpoint read,
// the row a batch committed through (a refused replay: where the first one ended), the row saved.
#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Msg { Ask(u64), Load(u64, Batch, bool), Save(u64, Row), Ack(u64, Row) }
#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Timer { Crash, Read, Timeout(CallId), Done(Slot), Saved(NodeId, u64, Row) }
#[rustfmt::skip]
#[derive(Clone, Debug, Holds)]
pub enum Bi { Importer(Importer), Db(Database), Store(Checkpoints) }

/// The importer: its place (the next row, the batch read since when: volatile, a restart learns
/// it from the checkpoint), the fault armed; kept as bookkeeping, the furthest row ever read,
/// where it stood at its last crash, its crashes, when it was done (the job's durable status).
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Importer {
    rows: Row, crashes: OpenLoop, calls: Calls<Step>, next: Row, batch: Option<Batch>, reading: Option<Time>,
    armed: bool, high: Row, reach: Option<Row>, crashed: u64, done_at: Option<Time>,
}
/// The table, a batch committed at a time: times each row was written, the batch ids (each one's
/// last row and commit time), the latest commit that wrote rows again, rows twice and refused.
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Database {
    station: Station<(u64, Batch, bool)>, of: Row, rows: Sequence<u32>, batches: UniqueIndex<Row, (Row, Time)>,
    again: Breach, dups: u64, refused: u64,
}
/// The checkpoint store: the last row the importer said was done.
#[derive(Clone, Debug)]
pub struct Checkpoints(Row);

fn sim(setup: &Setup) -> Sim<Bi> {
    let mut sim: Sim<Bi> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let crashes = OpenLoop::poisson(per_s_every(setup.param("crash_every_ms") as f64 / 1000.0));
    let (rows, calls) = (setup.param("rows") as Row, Calls::new("call_us"));
    #[rustfmt::skip]
    let importer = Importer { rows, crashes, calls, next: 1, batch: None, reading: None, armed: false, high: 0, reach: None,
        crashed: 0, done_at: None };
    assert_eq!(sim.add_node(Bi::Importer(importer)), IMPORTER);
    #[rustfmt::skip]
    let db = Database { station: Station::new(1, Service::Constant(1)), of: rows, rows: Sequence::default(),
        batches: UniqueIndex::new(64), again: Breach::default(), dups: 0, refused: 0 };
    assert_eq!(sim.add_node(Bi::Db(db)), DB);
    assert_eq!(sim.add_node(Bi::Store(Checkpoints(0))), STORE);
    if setup.param("crash_mid_at") > 0 {
        sim.schedule(Time::from_secs(setup.param("crash_mid_at") as u64), Fault::custom("crash-mid-batch", 0));
    }
    sim.check("no-row-twice", |w| w.node::<Database>(DB).again.now(w.now));
    sim.check("no-row-missing", |w| {
        let (imp, db) = (w.node::<Importer>(IMPORTER), w.node::<Database>(DB));
        let (first, missing) = (db.rows.contiguous() + 1, imp.rows - db.rows.len() as u64);
        match imp.done_at {
            Some(at) if at == w.now && missing > 0 => Err(format!(
                "the importer says it is done, but row {first} is not in the table ({missing} rows missing)"
            )),
            _ => Ok(()),
        }
    });
    sim
}

impl Node for Bi {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Bi::Importer(i) = self {
            i.start(ctx)
        }
    }
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Bi::Importer(i), Msg::Ack(call, row)) => i.acked(CallId(call), row, ctx),
            (Bi::Db(d), Msg::Load(call, batch, with_id)) => {
                // The commit (fsync) and each row's write; a slow disk slows both.
                d.station.set_service(Service::Constant(ctx.disk(ctx.param_ms("overhead_ms")).max(1)));
                let rows_us = ctx.disk(batch.rows() * ctx.param("write_us") as u64);
                let _ = d.station.offer_sized((call, batch, with_id), rows_us, ctx, Timer::Done);
            }
            (Bi::Store(s), Msg::Ask(call)) => ctx.send(from, Msg::Ack(call, s.0)),
            (Bi::Store(_), Msg::Save(call, row)) => {
                _ = ctx.set_timer(ctx.disk(ctx.param_ms("overhead_ms")), Timer::Saved(from, call, row))
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Bi::Importer(i), Timer::Crash) if i.done_at.is_none() => ctx.crash(Some(ctx.param_ms("restart_ms"))),
            (Bi::Importer(_), Timer::Crash) => {} // a finished job no longer runs
            (Bi::Importer(i), Timer::Read) => i.read_done(ctx),
            // Unanswered: sent again (a timed-out write may have committed: a replay).
            (Bi::Importer(i), Timer::Timeout(id)) => i.calls.timeout(id).into_iter().for_each(|step| i.call(step, ctx)),
            (Bi::Db(d), Timer::Done(slot)) => {
                if let Some(f) = d.station.done(slot, ctx, Timer::Done) {
                    d.commit(f.job, ctx)
                }
            }
            (Bi::Store(s), Timer::Saved(to, call, row)) => {
                s.0 = row;
                ctx.send(to, Msg::Ack(call, row));
            }
            (_, other) => ctx.unhandled(&other),
        }
    }
    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Bi::Importer(i) => i.crash(ctx),
            // Writes not yet committed are lost with the transaction; their callers send them again.
            Bi::Db(d) => drop(d.station.crash(ctx)),
            Bi::Store(_) => {}
        }
    }
    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Bi::Importer(i), Control::Custom { id: "crash-mid-batch", .. }) => i.armed = true,
            (Bi::Importer(i), Control::Param { id: "crash_every_ms", value }) => {
                i.crashes.set_rate_per_s(per_s_every(value as f64 / 1000.0), ctx, Timer::Crash)
            }
            _ => {} // strategies and the other parameters are read where they are used
        }
    }
    fn view(&self) -> NodeView {
        match self {
            Bi::Importer(i) => i.view(),
            Bi::Db(d) => NodeView::new(NodeKind::Database, 1, "warehouse table")
                .gauge("rows in the table", d.rows.len() as i64, d.of as i64)
                .badge_if(d.station.held() > 0, "committing a batch", Tone::Neutral)
                .badge_if(d.dups > 0, format!("{} rows written twice", d.dups), Tone::Bad)
                .badge_if(d.refused > 0, format!("{} repeat rows refused", d.refused), Tone::Good),
            Bi::Store(s) => NodeView::new(NodeKind::Store, 1, "checkpoint store")
                .badge(format!("checkpoint: row {}", s.0), Tone::Neutral),
        }
    }
}

impl Importer {
    /// Up (at 0 or after a restart): unless done, crashes armed, and it resumes from row 1 or
    /// from the checkpoint it asks for.
    fn start(&mut self, ctx: &mut Ctx<Bi>) {
        if self.done_at.is_some() {
            return;
        }
        self.crashes.start(ctx, Timer::Crash);
        match Strategy::from_id(ctx.strategy()) {
            Strategy::FromZero => self.resume(0, ctx),
            _ => self.call(Step::Resume, ctx),
        }
    }

    /// Resumes after row `through`: the rows read before the crash past it are work lost.
    fn resume(&mut self, through: Row, ctx: &mut Ctx<Bi>) {
        if let Some(reach) = self.reach.take() {
            ctx.observe("lost_per_crash", reach.saturating_sub(through));
            ctx.count("lost_rows", reach.saturating_sub(through) as i64);
            ctx.count("resumes", 1);
        }
        self.next = through + 1;
        self.read(ctx);
    }

    /// Reads the next batch (a timer of its rows' read time), or says the import is done.
    fn read(&mut self, ctx: &mut Ctx<Bi>) {
        if self.next > self.rows {
            self.done_at = Some(ctx.truth());
            ctx.gauge("finished_ms", ctx.now().as_ms() as i64);
            return ctx.note("import done");
        }
        let last = (self.next + ctx.param("batch_rows") as u64 - 1).min(self.rows);
        let batch = Batch { first: self.next, last };
        (self.batch, self.reading) = (Some(batch), Some(ctx.now()));
        ctx.set_timer(batch.rows() * ctx.param("read_us") as u64, Timer::Read);
    }

    /// Rows `first..=upto` of the batch were read: those at or below the furthest ever read are read again.
    fn count_read(&mut self, first: Row, upto: Row, ctx: &mut Ctx<Bi>) {
        ctx.count("rows_read", (upto + 1).saturating_sub(first) as i64);
        ctx.count("rows_redone", (upto.min(self.high) + 1).saturating_sub(first) as i64);
        self.high = self.high.max(upto);
    }

    /// The batch is read: its first step, as the strategy in force orders them.
    fn read_done(&mut self, ctx: &mut Ctx<Bi>) {
        let Some(b) = self.batch else { return };
        self.reading = None;
        self.count_read(b.first, b.last, ctx);
        let step = match Strategy::from_id(ctx.strategy()) {
            Strategy::FromZero => Step::Write(b, Then::Read),
            Strategy::AfterWrite | Strategy::BatchIds => Step::Write(b, Then::Save),
            Strategy::First => Step::Save(b.last, Then::Write(b)),
        };
        self.call(step, ctx);
    }

    /// Sends a step as a call, timed out after 1 s plus twice its expected time.
    fn call(&mut self, step: Step, ctx: &mut Ctx<Bi>) {
        let overhead_us = ctx.param_ms("overhead_ms");
        let expected_us = match step {
            Step::Write(b, _) => overhead_us + b.rows() * ctx.param("write_us") as u64,
            Step::Save(..) | Step::Resume => overhead_us,
        };
        let id = self.calls.start(ctx, step, MICROS_PER_S + 2 * expected_us, Timer::Timeout).0;
        match step {
            Step::Resume => ctx.send(STORE, Msg::Ask(id)),
            Step::Write(b, _) => {
                ctx.send(DB, Msg::Load(id, b, Strategy::from_id(ctx.strategy()) == Strategy::BatchIds))
            }
            Step::Save(row, _) => ctx.send(STORE, Msg::Save(id, row)),
        }
    }

    /// A step landed (`row`: the checkpoint read, committed through, or saved): the batch's
    /// second step — unless the crash-mid-batch fault strikes first — or the next batch.
    fn acked(&mut self, call: CallId, row: Row, ctx: &mut Ctx<Bi>) {
        let Some(step) = self.calls.reply(call, ctx) else { return }; // late: timed out or from before a crash
        let second = match step {
            Step::Resume => return self.resume(row, ctx),
            Step::Write(_, Then::Save) => Step::Save(row, Then::Read),
            Step::Save(_, Then::Write(b)) => Step::Write(b, Then::Read),
            Step::Write(..) | Step::Save(..) => {
                self.batch = None;
                self.next = row + 1;
                return self.read(ctx);
            }
        };
        if self.armed {
            self.armed = false;
            ctx.note("crash-mid-batch: crashed between the batch's two steps");
            return ctx.crash(Some(ctx.param_ms("restart_ms")));
        }
        self.call(second, ctx);
    }

    /// Everything in memory is gone: the batch, the place, the call. What it had read past the
    /// checkpoint (partly, if mid-read) is counted when it learns where it resumes.
    fn crash(&mut self, ctx: &mut Ctx<Bi>) {
        let reach = match (self.batch, self.reading) {
            (Some(b), Some(since)) => {
                let read = ctx.now().since(since) / (ctx.param("read_us") as u64).max(1);
                let upto = (b.first - 1 + read).min(b.last);
                self.count_read(b.first, upto, ctx);
                upto
            }
            (Some(b), None) => b.last,
            (None, _) => self.next - 1,
        };
        // Crashed again before resuming: the place it had reached still counts.
        (self.reach, self.batch, self.reading) = (Some(reach.max(self.reach.unwrap_or(0))), None, None);
        self.calls.clear(ctx);
        self.crashed += 1;
        ctx.count("crashes", 1);
    }

    fn view(&self) -> NodeView {
        let doing = match (self.done_at, self.batch, self.reading, self.calls.iter().next()) {
            (Some(at), ..) => format!("done at {:.1} s", at.as_secs_f64()),
            (_, Some(b), Some(_), _) => format!("reading rows {}–{}", b.first, b.last),
            (.., Some((_, Step::Write(b, _)))) => format!("writing rows {}–{}", b.first, b.last),
            (.., Some((_, Step::Save(row, _)))) => format!("saving checkpoint: row {row}"),
            (.., Some((_, Step::Resume))) => "reading the checkpoint".into(),
            _ => "down".into(),
        };
        NodeView::new(NodeKind::Worker, 0, "importer")
            .gauge("rows read (furthest)", self.high as i64, self.rows as i64)
            .badge(doing, if self.done_at.is_some() { Tone::Good } else { Tone::Neutral })
            .badge_if(self.crashed > 0, format!("{} crashes", self.crashed), Tone::Warn)
    }
}

impl Database {
    /// Commits a batch, all or nothing. With its id, a batch whose first row began a batch
    /// committed before is refused (the unique index on batch ids), answered with where that one
    /// ended. Without, its rows are written whatever the table holds.
    fn commit(&mut self, (call, b, with_id): (u64, Batch, bool), ctx: &mut Ctx<Bi>) {
        let now = ctx.truth();
        let first = match self.batches.insert(b.first, (b.last, now)) {
            Inserted::Duplicate(first) => Some(first),
            Inserted::Edge | Inserted::Inside => None,
        };
        if let (Some((end, at)), true) = (first, with_id) {
            self.refused += b.rows();
            ctx.count("refused_rows", b.rows() as i64);
            ctx.note(format!("refused batch {}: committed at {:.3} s through row {end}", b.first, at.as_secs_f64()));
            return ctx.send(IMPORTER, Msg::Ack(call, end));
        }
        let mut twice = 0;
        for n in b.first..=b.last {
            let times = self.rows.get(n).copied().unwrap_or(0) + 1;
            self.rows.insert(n, times);
            twice += (times > 1) as u64;
        }
        ctx.count("imported", (b.rows() - twice) as i64);
        ctx.count("dup_rows", twice as i64);
        if twice > 0 {
            self.dups += twice;
            let since =
                first.map_or(String::new(), |(_, at)| format!(" (first committed at {:.3} s)", at.as_secs_f64()));
            let why = format!("batch {}–{} committed again{since}: {twice} rows in the table twice", b.first, b.last);
            self.again.record(why, now);
        }
        ctx.send(IMPORTER, Msg::Ack(call, b.last));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sampled, run_sim, Sampled};

    const COUNTERS: [&str; 6] = ["imported", "dup_rows", "refused_rows", "lost_rows", "resumes", "crashes"];
    const IMPORTED: usize = 0;
    const DUPS: usize = 1;
    const REFUSED: usize = 2;
    const LOST: usize = 3;
    const RESUMES: usize = 4;
    const CRASHES: usize = 5;
    /// The links' mean one-way latency (uniform 200–1,000 µs).
    const LINK_US: f64 = 600.0;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new(SPEC.id(), strategy, seed)
    }

    fn run(recipe: Recipe, secs: u64) -> Sampled {
        run_sampled(&SPEC, &recipe, secs, &COUNTERS)
    }

    /// When the import finished (s), run to `secs` at most.
    fn finished(recipe: Recipe, secs: u64) -> Option<f64> {
        let sim = run_sim(sim(&Setup { spec: &SPEC, recipe }), secs);
        sim.node::<Importer>(IMPORTER).done_at.map(Time::as_secs_f64)
    }

    /// A batch's phases at the defaults (µs): its read R, its write W (there and back, the
    /// commit's overhead and its rows) and its checkpoint K (there and back and the overhead).
    fn phases(b: f64) -> (f64, f64, f64) {
        (b * 50.0, 2.0 * LINK_US + 5_000.0 + b * 50.0, 2.0 * LINK_US + 5_000.0)
    }

    /// Expected completion time of τ of work that a Poisson failure (mean gap M) sends back to
    /// its start, each failure costing D: (M + D)(e^(τ/M) − 1) (the restart model of Duda,
    /// "The effects of checkpointing on program execution time", IPL 16, 1983).
    fn with_restarts(tau_s: f64, m_s: f64, d_s: f64) -> f64 {
        (m_s + d_s) * libm::expm1(tau_s / m_s)
    }

    #[test]
    fn restart_from_zero_takes_m_plus_d_times_e_to_the_tau_over_m_minus_one() {
        // 20 batches of 1,000 rows, each read then written (no checkpoint): τ ≈ 2.12 s; a crash
        // every 2 s, 0.5 s down: 4.73 s expected. The attempts before success are geometric
        // (p = e^(−τ/M) ≈ 0.35), so a run's time has a s.d. near its mean: over 200 seeds the
        // mean's s.e. is ~6%; within 15%.
        let (r, w, _) = phases(1000.0);
        let tau_s = 20.0 * (r + w) / 1e6;
        let theory = with_restarts(tau_s, 2.0, 0.5);
        let seeds = 200;
        let total: f64 = (1..=seeds)
            .map(|seed| {
                let recipe =
                    recipe("restart-from-zero", seed).with_param("rows", 20_000).with_param("crash_every_ms", 2000);
                finished(recipe.with_param("crash_mid_at", 0), 200).expect("finished")
            })
            .sum();
        let mean = total / seeds as f64;
        assert!((mean - theory).abs() <= 0.15 * theory, "mean {mean:.2} s, theory {theory:.2} s");
    }

    #[test]
    fn checkpointed_batches_take_the_restart_formula_per_batch() {
        // Each batch is a job of T = R + W + K ≈ 112.4 ms that a crash sends back to its start
        // (and to the checkpoint read: D ≈ 0.5012 s): 150 × (M + D)(e^(T/M) − 1) ≈ 20.05 s.
        // Crashes (~6 a run, 0.55 s each) vary a run by ~1.4 s: over 20 seeds, s.e. ~1.6%; within 5%.
        let (r, w, k) = phases(1000.0);
        let theory = 150.0 * with_restarts((r + w + k) / 1e6, 3.0, 0.5 + 2.0 * LINK_US / 1e6);
        let total: f64 = (1..=20)
            .map(|seed| finished(recipe("batch-ids", seed).with_param("crash_mid_at", 0), 40).expect("done"))
            .sum();
        let mean = total / 20.0;
        assert!((mean - theory).abs() <= 0.05 * theory, "mean {mean:.2} s, theory {theory:.2} s");
    }

    #[test]
    fn work_lost_per_crash_is_the_batch_read_so_far_or_all_of_it() {
        // A Poisson crash lands uniformly in a batch's cycle (its mean gap, 3 s, is ~27 cycles):
        // while reading it loses the rows read so far (half the batch on average), from the write
        // until the checkpoint is saved (K less the ack's trip) the whole batch. So
        // B·(R/2 + W + K − l)/(R + W + K) ≈ 772 rows. Per crash the s.d. is ~230 rows; over
        // ~120 crashes the s.e. is ~21: within 8%.
        let (r, w, k) = phases(1000.0);
        let theory = 1000.0 * (r / 2.0 + w + k - LINK_US) / (r + w + k);
        let (mut lost, mut resumes) = (0, 0);
        for seed in 1..=20 {
            let (_, at) = run(recipe("batch-ids", seed).with_param("crash_mid_at", 0), 18);
            (lost, resumes) = (lost + at[18][LOST], resumes + at[18][RESUMES]);
        }
        let mean = lost as f64 / resumes as f64;
        assert!(resumes >= 80 && (mean - theory).abs() <= 0.08 * theory, "{mean:.0} rows over {resumes}, {theory:.0}");
    }

    #[test]
    fn young_s_interval_is_near_the_exact_optimum() {
        // Young (CACM 17(9), 1974): with C of overhead per checkpoint and M between failures, the
        // work between checkpoints that loses least is √(2CM). Against the exact per-batch
        // restart formula at the defaults (C = W's fixed part plus K ≈ 12.4 ms, M = 3 s): the
        // best batch is within 30% of Young's (a first-order approximation; ours also loses the
        // write, not only the reading).
        let (_, w0, k) = phases(0.0);
        let c_s = (w0 + k) / 1e6;
        let young_rows = libm::sqrt(2.0 * c_s * 3.0) / 100e-6;
        let time = |b: f64| {
            let (r, w, k) = phases(b);
            150_000.0 / b * with_restarts((r + w + k) / 1e6, 3.0, 0.5)
        };
        let best = (1..=500).map(|i| i as f64 * 20.0).min_by(|a, b| time(*a).total_cmp(&time(*b))).expect("some");
        assert!((best / young_rows - 1.0).abs() <= 0.3, "best {best} rows, Young {young_rows:.0}");
        assert!(time(2500.0) < 0.9 * time(100.0) && time(2500.0) < 0.9 * time(50_000.0));
    }

    #[test]
    fn try_restart_from_zero_writes_rows_again_and_never_finishes() {
        // Step 1: (M + D)(e^(τ/M) − 1) with τ ≈ 16 s, M = 3 s: ~12 minutes.
        let (r, w, _) = phases(1000.0);
        assert!(with_restarts(150.0 * (r + w) / 1e6, 3.0, 0.5) > 600.0);
        for seed in 1..=3 {
            let (r, at) = run(recipe("restart-from-zero", seed), 30);
            let (_, why) = failed_at(r.as_ref(), "no-row-twice").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(why.starts_with("batch 1–1000 committed again"), "seed {seed}: {why}");
            assert!(at[30][IMPORTED] < 150_000 && at[30][DUPS] > 1000, "seed {seed}: {:?}", at[30]);
        }
    }

    #[test]
    fn try_checkpoint_after_write_repeats_a_batch_and_checkpoint_first_loses_one() {
        // Step 2: the scheduled crash at 5 s repeats a batch; of random crashes, those from the
        // write until the checkpoint is saved: (W + K − l)/(R + W + K) ≈ 55%, over ~60 crashes.
        for seed in 1..=3 {
            let (r, _) = run(recipe("checkpoint-after-write", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "no-row-twice").unwrap_or_else(|| panic!("seed {seed}"));
            assert!(t <= 6.0 && why.contains("committed again") && why.contains("1000 rows"), "seed {seed}: {t} {why}");
            let done = finished(recipe("checkpoint-first", seed), 30).expect("done");
            let (r, _) = run(recipe("checkpoint-first", seed), 30);
            let (t, why) = failed_at(r.as_ref(), "no-row-missing").unwrap_or_else(|| panic!("seed {seed}"));
            assert!((15.0..=25.0).contains(&done) && t == done && why.contains("is not in the table"), "{t} {why}");
        }
        let (mut dup_batches, mut crashes) = (0, 0);
        for seed in 1..=10 {
            let (_, at) = run(recipe("checkpoint-after-write", seed).with_param("crash_mid_at", 0), 18);
            (dup_batches, crashes) = (dup_batches + at[18][DUPS] / 1000, crashes + at[18][CRASHES]);
        }
        let share = dup_batches as f64 / crashes as f64;
        assert!((0.35..=0.75).contains(&share), "{dup_batches} batches repeated of {crashes} crashes");
    }

    #[test]
    fn try_batch_ids_refuse_the_replays_and_land_every_row_once() {
        // Step 3: both checks hold, replays refused, done near 20 s (the restart formula).
        for seed in 1..=3 {
            let (r, at) = run(recipe("batch-ids", seed), 30);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(at[30][IMPORTED] == 150_000 && at[30][DUPS] == 0 && at[30][REFUSED] >= 1000, "{:?}", at[30]);
            let done = finished(recipe("batch-ids", seed), 30).expect("done");
            assert!((16.0..=25.0).contains(&done), "seed {seed}: done at {done}");
        }
    }

    #[test]
    fn try_batch_size_trades_overhead_against_work_lost() {
        // Step 4: 100-row batches pay ~12 ms of overhead per 10 ms of work (~34 s without a
        // crash); 50,000-row batches are 10 s jobs under a crash every 3 s (~45 s expected, a
        // few seeds done before 30 s); 2,500 rows: ~19 s.
        let mean = |b: i64| -> f64 {
            let at = |seed| finished(recipe("batch-ids", seed).with_param("batch_rows", b), 30).unwrap_or(30.0);
            (1..=6).map(at).sum::<f64>() / 6.0
        };
        let (small, good, large) = (mean(100), mean(2500), mean(50_000));
        assert!(small >= 30.0 && large > good + 5.0 && (16.0..=22.0).contains(&good), "{small} {good} {large}");
    }

    #[test]
    fn the_view_shows_repeats_and_refusals() {
        let (r, _) = run(recipe("checkpoint-after-write", 1), 10);
        let db = r.frame(0).nodes.into_iter().nth(DB as usize).expect("the database").view;
        assert!(db.badges.iter().any(|b| b.text.ends_with("rows written twice") && b.tone == Tone::Bad));
        let (r, _) = run(recipe("batch-ids", 1), 10);
        let db = r.frame(0).nodes.into_iter().nth(DB as usize).expect("the database").view;
        assert!(db.badges.iter().any(|b| b.text.ends_with("repeat rows refused") && b.tone == Tone::Good));
    }
}
