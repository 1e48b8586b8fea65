//! Log pipeline: services ship log records to a collector, which parses them and writes them to storage; a write per record saturates storage (data minutes late), batches in memory die with a collector crash, a spool (WAL) loses nothing acknowledged, and sampling cuts the bytes stored.

use crate::parts::arrivals::OpenLoop;
use crate::parts::calls::{CallId, Calls};
use crate::parts::degraded::FaultWindow;
use crate::parts::partition::Partition;
use crate::parts::station::{Service, Slot, Station};
use crate::parts::strategies::strategies;
use crate::parts::table::KeyTable;
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "log-pipeline",
        title: "Log pipeline: per-record writes, batches, a spool and sampling",
        category: "Messaging",
        seeds: &["S1-P#7", "S2#2", "S2#4", "S3#17", "S3#45", "S3#89", "S3#4"],
        summary: "10 services log 100 records/s each to a collector that parses them and writes them to storage. Storage costs 2 ms an insert plus 10 µs a record; the collector crashes at 15 s for 2 s.",
        note: Note {
            what_can_go_wrong: "An insert has a fixed cost (a round trip, a commit, a new part to merge) however few records it carries: written one by one, records arrive faster than storage takes them, the backlog grows without bound and data shows up minutes late. Batches amortise the cost, but a batch held in memory dies with the collector, after the services were told it was safe. The model: Poisson records (the services' streams merged); the services' agents keep a record until the collector acknowledges it and send it again after 2 s; a collector with c cores parsing each record (and inflating it when gzipped), a buffer flushed to storage every flush interval or when it holds a batch, one insert in flight; storage takes inserts one at a time and drops records it already has (by id); links 0.2–1 ms.",
            what_you_sacrifice: "A batch waits up to the flush interval (half of it on average): freshness for throughput. The spool costs a disk write and an fsync before each acknowledgement, and duplicates after a crash (records whose acknowledgement died with it), which storage must drop by id. Sampling keeps every error but only a share of the rest: counts become estimates (scaled by 1/rate) with a relative error of √((1 − p)/(p·n)), and a rare line you needed may be gone. Gzip trades the wire's bytes for the collector's CPU: every payload is inflated before it is parsed.",
            at_10x: "At the seed's 1,000 services (10 GB a day each: 116K records/s of 1 KB) a write per record needs some 230 storage nodes at 2 ms an insert; batches of 10,000 need one insert every 86 ms. Gzipped, the collector needs 30 cores for inflating and parsing alone. A spool must hold a whole outage of storage. Bytes stored are the bill: sampling at 10% cuts it about 8×, keeping the errors.",
            resembles: "Fluent Bit / Fluentd (buffer chunks in memory or on the filesystem, flush interval), Vector (disk buffers, batch max events and timeout), Logstash (persistent queue), the ClickHouse Kafka engine (stream_flush_interval_ms, max_block_size) and its advice to insert in large batches, Elasticsearch bulk requests, Loki/Datadog sampling and exclusion filters.",
            try_this: &[
                "Play `per-record`: storage takes an insert every ~3.2 ms (2 ms plus the round trip), about 310 a second, against 1,000 records/s: the backlog grows by ~690 a second and the delay passes `max_delay_s` (10 s) near 15 s — at this pace data is 5–10 minutes late after 10–20 minutes. The crash at 15 s loses the whole backlog, acknowledged (`no-loss`).",
                "Switch to `batched`: an insert a second carries ~1,000 records, a record waits half the flush interval on average (500 ms) and the delay holds, but the crash loses the batch in memory: λ × `flush_ms` / 2 = 500 acknowledged records on average (up to 1,000), and `no-loss` names one.",
                "Play `spooled`: the collector acknowledges a record once it is in the spool (an fsync), and after the crash writes what the spool holds: every record emitted is stored once. A record spooled whose acknowledgement died in the crash comes again, and storage drops it as a duplicate.",
                "Play `sampled`: errors (2%) are all kept, 10% of the rest: bytes stored fall to about 12% of `spooled`'s while the estimated count stays within a few percent of the records emitted. Then, under `spooled`, set `gzip` to 1: the wire carries a fifth of the bytes, and the collector's CPU goes up from 5% to 12.5%.",
            ],
        },
    },
    params: &[
        ParamSpec::live("services", "Services", "", 1..=1000, 10, "Services logging (each at the rate below)."),
        ParamSpec::live("records_per_s", "Records per service", "records/s", 0..=10_000, 100, "Log records each service emits a second (Poisson)."),
        ParamSpec::live("record_bytes", "Record size", "B", 50..=100_000, 1000, "Bytes of one record (JSON, uncompressed)."),
        ParamSpec::live("error_pct", "Errors", "%", 0..=100, 2, "Share of records at error level (never sampled out)."),
        ParamSpec::live("sample_pct", "Sample rate", "%", 1..=100, 10, "Under `sampled`: share of the other records kept."),
        ParamSpec::live("batch_records", "Batch size", "records", 1..=100_000, 1000, "A batch is written once it holds this many."),
        ParamSpec::live("flush_ms", "Flush interval", "ms", 1..=60_000, 1000, "The buffer is written at least this often."),
        ParamSpec::live("cores", "Collector cores", "", 1..=64, 2, "Cores parsing records."),
        ParamSpec::live("parse_us", "Parse cost", "us", 1..=100_000, 100, "CPU per record (JSON parse, enrich)."),
        ParamSpec::live("gzip", "Gzip payloads", "", 0..=1, 0, "1: services gzip each payload (a fifth of the bytes on the wire)."),
        ParamSpec::live("inflate_us", "Decompression cost", "us", 0..=100_000, 150, "CPU to inflate one gzipped payload (stream set-up and all)."),
        ParamSpec::live("insert_us", "Insert cost", "us", 1..=1_000_000, 2000, "Storage time per insert, however small."),
        ParamSpec::live("per_record_us", "Cost per record", "us", 0..=10_000, 10, "Storage time per record in an insert."),
        ParamSpec::live("max_delay_s", "Delay bound", "s", 1..=3600, 10, "The check: no record later than this."),
        ParamSpec::setup("crash_at", "Collector crash at", "s", 0..=3600, 15, "Scheduled: the collector crashes (0: none)."),
        ParamSpec::setup("down_s", "Collector down for", "s", 0..=600, 2, "Until it restarts (0: no crash)."),
    ],
    strategies: &[
        StrategySpec::naive("per-record", "A write per record", "Acknowledges a record on receipt and inserts each one on its own."),
        StrategySpec::naive("batched", "Batched writes (memory)", "Acknowledges on receipt; buffers records in memory and inserts them a batch at a time."),
        StrategySpec::fixed("spooled", "Batched writes from a spool", "Appends each record to a spool on disk (a WAL) and acknowledges it after the fsync; batches are read from the spool."),
        StrategySpec::fixed("sampled", "Spool + sampling", "As spooled, and the services keep every error but only the sample rate of the other records."),
    ],
    faults: &[],
    checks: &[
        CheckSpec::new("no-loss", "No acknowledged record lost", "A record the collector acknowledged reaches storage: a crash that loses acknowledged records fails it, naming one and how many."),
        CheckSpec::new("delay-bounded", "Data arrives in time", "No record waits at the collector, or reaches storage, more than the delay bound after it was emitted. Names the record and its service."),
    ],
    metrics: &[
        MetricSpec::new("delay", "Delay p99 (emitted → stored)", "us", Measure::Quantile("delay_us", 0.99)),
        MetricSpec::new("delay50", "Delay p50", "us", Measure::Quantile("delay_us", 0.5)),
        MetricSpec::new("stored", "Records stored", "records/s", Measure::Rate("stored")),
        MetricSpec::new("bytes", "Bytes stored (cost)", "B", Measure::Count("stored_bytes")),
        MetricSpec::new("lost", "Acknowledged records lost", "records", Measure::Count("lost")),
        MetricSpec::new("backlog", "Collector backlog", "records", Measure::Gauge("backlog")),
        MetricSpec::new("cpu", "Collector CPU", "%", Measure::Gauge("cpu_pct")),
        MetricSpec::new("storage", "Storage busy", "%", Measure::Gauge("storage_pct")),
        MetricSpec::new("inserts", "Inserts", "/s", Measure::Rate("inserts")),
        MetricSpec::new("wire", "Bytes on the wire", "B/s", Measure::Rate("wire_bytes")),
        MetricSpec::new("emitted", "Records emitted", "records", Measure::Count("emitted")),
        MetricSpec::new("estimated", "Records estimated from storage (× 1/rate)", "records", Measure::Gauge("estimated")),
        MetricSpec::new("duplicates", "Duplicates dropped", "records", Measure::Count("duplicates")),
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build: |setup| Box::new(sim(setup)),
};

strategies!(SPEC, Strategy { PerRecord, Batched, Spooled, Sampled });

const COLLECTOR: NodeId = 1;
const STORAGE: NodeId = 2;
/// An agent sends a record again when unacknowledged this long, the collector an insert; the
/// spool's fsync (group commit: one for all records appended meanwhile); JSON log lines gzip
/// about 5× (3–10× by how repetitive they are); how often busy shares are reported.
const AGENT_TIMEOUT_US: Micros = 2 * MICROS_PER_S;
const INSERT_TIMEOUT_US: Micros = 5 * MICROS_PER_S;
const FSYNC_US: Micros = MICROS_PER_MS;
const GZIP_RATIO: u64 = 5;
const TICK_US: Micros = 250 * MICROS_PER_MS;

/// A log record: its id, its service, when it was emitted (true time), whether it is an error,
/// and the sample rate it was kept at (%; 100: not sampled) — storage scales it back by that.
#[rustfmt::skip]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rec { id: u64, service: u32, emitted: Time, error: bool, kept_pct: u8 }

// The message, timer and node types, a line each. A record shipped and an insert carry the
// sender's call id, echoed in the answer.
#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Msg { Ship(u64, Rec), Ack(u64), Insert(u64, Vec<Rec>), Inserted(u64) }

#[rustfmt::skip]
#[derive(Clone, Debug, Label)]
pub enum Timer { Arrive, Resend(CallId), Cpu(Slot), Flush, Fsync, InsertTimeout(CallId), Stored(Slot), Tick }

#[rustfmt::skip]
#[derive(Clone, Debug, Holds)]
pub enum Lp { Services(Agents), Collector(Collector), Storage(Storage) }

/// The services' agents, as one node: their merged Poisson stream, the records not yet acknowledged.
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Agents { arrivals: OpenLoop, unacked: Calls<Rec>, next_id: u64 }

/// The collector: its cores (records being parsed, with who sent them), its buffer (a log: in
/// memory, or the spool on disk), how far it is sealed into batches and sent, the insert in
/// flight (its end), acknowledgements waiting for the fsync, its last crash's toll (the check).
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Collector {
    cpu: Station<(NodeId, u64, Rec)>, log: Partition<Rec>, sealed: u64, sent: u64, insert: Calls<u64>,
    unsynced: Vec<(NodeId, u64)>, fsync_armed: bool, last_loss: Option<(Rec, u64, Time)>,
}

/// Storage: inserts one at a time (a fixed cost plus one per record), the ids it holds (a
/// repeat is dropped), what the records stand for once scaled back, the latest record too late.
#[rustfmt::skip]
#[derive(Clone, Debug)]
pub struct Storage { inserts: Station<(NodeId, u64, Vec<Rec>)>, ids: KeyTable<()>, estimated: f64, last_late: Option<(Rec, Micros, Time)> }

#[rustfmt::skip]
fn sim(setup: &Setup) -> Sim<Lp> {
    let mut sim: Sim<Lp> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 200, hi: 1_000 }));
    let rate = (setup.param("services") * setup.param("records_per_s")) as f64;
    sim.add_node(Lp::Services(Agents { arrivals: OpenLoop::poisson(rate), unacked: Calls::new("ack_us"), next_id: 0 }));
    let (cpu, log, insert) = (Station::new(1, Service::Constant(1)), Partition::new(1), Calls::new("insert_us"));
    let (sealed, sent, unsynced, fsync_armed, last_loss) = (0, 0, Vec::new(), false, None);
    sim.add_node(Lp::Collector(Collector { cpu, log, sealed, sent, insert, unsynced, fsync_armed, last_loss }));
    let (inserts, ids) = (Station::new(1, Service::Constant(1)), KeyTable::default());
    sim.add_node(Lp::Storage(Storage { inserts, ids, estimated: 0.0, last_late: None }));
    // The plan: the collector crashes (at 0: none).
    let at = setup.param("crash_at");
    FaultWindow::secs(at, setup.param("down_s") * at.min(1)).crash(&mut sim, COLLECTOR);
    sim.check("no-loss", |w| match w.node::<Collector>(COLLECTOR).last_loss {
        Some((r, n, at)) if at == w.now => Err(format!("the crash lost {n} acknowledged records, #{} of service {} among them", r.id, r.service)),
        _ => Ok(()),
    });
    sim.check("delay-bounded", |w| {
        let bound = w.param("max_delay_s") as Micros * MICROS_PER_S;
        if let Some((r, late, _)) = w.node::<Storage>(STORAGE).last_late.filter(|l| l.2 == w.now) {
            return Err(format!("record #{} of service {} stored {} ms after it was emitted", r.id, r.service, late / 1000));
        }
        match w.node::<Collector>(COLLECTOR).oldest().map(|r| (r, w.now.since(r.emitted))).filter(|x| x.1 > bound) {
            Some((r, age)) => Err(format!("record #{} of service {} at the collector after {} s", r.id, r.service, age / MICROS_PER_S)),
            None => Ok(()),
        }
    });
    sim
}

#[rustfmt::skip]
fn us(ctx: &Ctx<Lp>, id: &str) -> Micros { ctx.param(id).max(0) as Micros }

#[rustfmt::skip]
fn strategy(ctx: &Ctx<Lp>) -> Strategy { Strategy::from_id(ctx.strategy()) }

impl Node for Lp {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Lp::Services(a) => return a.arrivals.start(ctx, Timer::Arrive),
            Lp::Collector(c) => {
                c.configure(ctx);
                // The flush ticks' phase is random: a crash finds the buffer at a uniform age.
                let flush = us(ctx, "flush_ms").max(1) * MICROS_PER_MS;
                let first = ctx.rng().range(1, flush);
                ctx.set_timer(first, Timer::Flush);
                c.pump(ctx);
            }
            Lp::Storage(_) => {}
        }
        ctx.set_timer(TICK_US, Timer::Tick);
    }

    #[rustfmt::skip]
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Lp::Services(a), Msg::Ack(id)) => _ = a.unacked.reply(CallId(id), ctx),
            (Lp::Collector(c), Msg::Ship(id, rec)) => {
                // Naive: safe once in memory. Durable: once on disk (acknowledged after the fsync).
                if !Collector::durable(ctx) { ctx.send(from, Msg::Ack(id)) }
                _ = c.cpu.offer((from, id, rec), ctx, Timer::Cpu);
            }
            (Lp::Collector(c), Msg::Inserted(id)) => if let Some(end) = c.insert.reply(CallId(id), ctx) {
                c.log.commit(0, end, ctx.truth()); c.pump(ctx) },
            // The insert cost in force when it arrives (live), plus its records'.
            (Lp::Storage(s), Msg::Insert(id, recs)) => {
                s.inserts.set_service(Service::Constant(us(ctx, "insert_us").max(1)));
                let extra = us(ctx, "per_record_us").saturating_mul(recs.len() as u64);
                _ = s.inserts.offer_sized((from, id, recs), extra, ctx, Timer::Stored);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    #[rustfmt::skip]
    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        if matches!(timer, Timer::Tick) { ctx.set_timer(TICK_US, Timer::Tick); }
        match (self, timer) {
            (Lp::Services(a), Timer::Arrive) => a.emit(ctx),
            (Lp::Services(a), Timer::Resend(id)) => if let Some(rec) = a.unacked.timeout(id) { a.ship(rec, ctx) },
            (Lp::Collector(c), Timer::Cpu(slot)) => if let Some(f) = c.cpu.done(slot, ctx, Timer::Cpu) {
                ctx.count("cpu_us", f.service_us as i64); c.parsed(f.job, ctx) },
            (Lp::Collector(c), Timer::Flush) => {
                ctx.set_timer(us(ctx, "flush_ms").max(1) * MICROS_PER_MS, Timer::Flush);
                c.sealed = c.log.end(); c.pump(ctx) }
            (Lp::Collector(c), Timer::Fsync) => {
                c.fsync_armed = false; c.unsynced.drain(..).for_each(|(to, id)| ctx.send(to, Msg::Ack(id))) }
            // Unanswered: sent again from the last insert storage confirmed (it drops repeats).
            (Lp::Collector(c), Timer::InsertTimeout(id)) => if c.insert.timeout(id).is_some() {
                c.sent = c.log.committed(0); c.pump(ctx) },
            (Lp::Collector(c), Timer::Tick) => {
                ctx.gauge("cpu_pct", c.cpu.take_busy_pct(ctx.now()));
                ctx.gauge("backlog", (c.log.lag(0) + c.cpu.held() as u64) as i64);
            }
            (Lp::Storage(s), Timer::Stored(slot)) => if let Some(f) = s.inserts.done(slot, ctx, Timer::Stored) { s.store(f.job, ctx) },
            (Lp::Storage(s), Timer::Tick) => {
                ctx.gauge("storage_pct", s.inserts.take_busy_pct(ctx.now()));
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Lp::Services(a) => _ = a.unacked.clear(ctx),
            Lp::Collector(c) => c.crashed(ctx),
            // Storage's inserts are durable once answered; the one in progress is not done.
            Lp::Storage(s) => _ = s.inserts.crash(ctx),
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        match (self, ctl) {
            (Lp::Services(a), Control::Param { id: "services" | "records_per_s", .. }) => {
                let rate = (ctx.param("services") * ctx.param("records_per_s")) as f64;
                a.arrivals.set_rate_per_s(rate, ctx, Timer::Arrive);
            }
            (Lp::Collector(c), Control::Param { .. }) => c.configure(ctx),
            // Other parameters are read when used; the strategy at each record.
            (_, Control::Param { .. } | Control::Strategy(_) | Control::Custom { .. }) => {}
        }
    }

    #[rustfmt::skip]
    fn view(&self) -> NodeView {
        let gauge = |v: NodeView, label, n: usize, max: i64| v.gauge(label, n as i64, (n as i64).max(max));
        match self {
            Lp::Services(a) => gauge(NodeView::new(NodeKind::Client, 0, "services (agents)"), "unacknowledged", a.unacked.len(), 1000),
            Lp::Collector(c) => {
                let v = gauge(NodeView::new(NodeKind::Service, 1, "collector"), "parsing", c.cpu.held(), 100);
                gauge(v, "buffered", c.log.lag(0) as usize, 2000).badge_if(c.last_loss.is_some(), "lost acknowledged records", Tone::Bad)
            }
            Lp::Storage(s) => gauge(NodeView::new(NodeKind::Database, 2, "storage"), "inserts waiting", s.inserts.held(), 10)
                .badge(format!("{} records", s.ids.len()), Tone::Neutral),
        }
    }
}

impl Agents {
    /// A service logs a record: an error or not; under `sampled` a non-error one is kept at the
    /// sample rate (the agent drops the rest before they cost anything).
    fn emit(&mut self, ctx: &mut Ctx<Lp>) {
        self.arrivals.on_timer(ctx, Timer::Arrive);
        let services = ctx.param("services").max(1) as u64;
        let service = ctx.rng().range(0, services - 1) as u32;
        let error = ctx.rng().range(0, 99) < us(ctx, "error_pct");
        let sampled = strategy(ctx) == Strategy::Sampled && !error;
        let pct = if sampled { ctx.param("sample_pct").clamp(1, 100) as u8 } else { 100 };
        self.next_id += 1;
        ctx.count("emitted", 1);
        if ctx.rng().range(0, 99) < pct as u64 {
            self.ship(Rec { id: self.next_id, service, emitted: ctx.truth(), error, kept_pct: pct }, ctx);
        }
    }

    fn ship(&mut self, rec: Rec, ctx: &mut Ctx<Lp>) {
        let bytes = us(ctx, "record_bytes");
        ctx.count("wire_bytes", if ctx.param("gzip") > 0 { bytes / GZIP_RATIO } else { bytes } as i64);
        let id = self.unacked.start(ctx, rec, AGENT_TIMEOUT_US, Timer::Resend);
        ctx.send(COLLECTOR, Msg::Ship(id.0, rec));
    }
}

impl Collector {
    /// CPU per record (parse, and inflate when gzipped) and the core count, as set now.
    fn configure(&mut self, ctx: &mut Ctx<Lp>) {
        let inflate = if ctx.param("gzip") > 0 { us(ctx, "inflate_us") } else { 0 };
        self.cpu.set_service(Service::Constant(us(ctx, "parse_us") + inflate));
        self.cpu.set_servers(ctx.param("cores").max(1) as u32, ctx, Timer::Cpu);
    }

    #[rustfmt::skip]
    fn durable(ctx: &Ctx<Lp>) -> bool { matches!(strategy(ctx), Strategy::Spooled | Strategy::Sampled) }

    /// A parsed record joins the buffer (the spool: acknowledged at the next fsync); it is ready
    /// to write at once per record, batched once the buffer holds a batch (or at the flush).
    fn parsed(&mut self, (from, id, rec): (NodeId, u64, Rec), ctx: &mut Ctx<Lp>) {
        self.log.append(rec, ctx.now());
        if Self::durable(ctx) {
            self.unsynced.push((from, id));
            if !std::mem::replace(&mut self.fsync_armed, true) {
                ctx.set_timer(ctx.disk(FSYNC_US), Timer::Fsync);
            }
        }
        if strategy(ctx) == Strategy::PerRecord || self.log.end() - self.sealed >= us(ctx, "batch_records").max(1) {
            self.sealed = self.log.end();
        }
        self.pump(ctx);
    }

    /// With no insert in flight, sends the next: up to a batch of what is sealed (one record
    /// per insert under `per-record`). Each record's wait in the buffer is observed.
    fn pump(&mut self, ctx: &mut Ctx<Lp>) {
        if !self.insert.is_empty() || self.sent >= self.sealed {
            return;
        }
        let max = if strategy(ctx) == Strategy::PerRecord { 1 } else { us(ctx, "batch_records").max(1) };
        let recs = self.log.read(self.sent, (self.sealed - self.sent).min(max) as usize);
        for (o, _) in &recs {
            ctx.observe("buffer_us", ctx.now().since(self.log.get(*o).expect("appended").at));
        }
        self.sent += recs.len() as u64;
        let id = self.insert.start(ctx, self.sent, INSERT_TIMEOUT_US, Timer::InsertTimeout);
        ctx.count("inserts", 1);
        ctx.send(STORAGE, Msg::Insert(id.0, recs.into_iter().map(|(_, r)| r).collect()));
    }

    /// The oldest record here not yet confirmed by storage: the buffer's first, or the first
    /// to be parsed (in arrival order: a resent record may be older).
    fn oldest(&self) -> Option<Rec> {
        let parsing = self.cpu.in_service().next().or(self.cpu.queued().next()).map(|j| j.2);
        self.log.get(self.log.committed(0)).map(|r| r.value).into_iter().chain(parsing).min_by_key(|r| r.emitted)
    }

    /// Memory is gone. In memory, that is the records being parsed and the buffer not yet sent
    /// (the insert in flight may still land): all acknowledged, all lost. With the spool, the
    /// records being parsed were not acknowledged (their agents send them again) and the spool
    /// is kept: after the restart it is written from the last insert storage confirmed.
    fn crashed(&mut self, ctx: &mut Ctx<Lp>) {
        let mut lost: Vec<Rec> = self.cpu.crash(ctx).into_iter().map(|j| j.2).collect();
        self.insert.clear(ctx);
        (self.unsynced, self.fsync_armed) = (Vec::new(), false);
        if Self::durable(ctx) {
            return (self.sent, self.sealed) = (self.log.committed(0), self.log.end());
        }
        lost.extend(self.log.read(self.sent, usize::MAX).into_iter().map(|(_, r)| r));
        if let Some(first) = lost.iter().min_by_key(|r| r.emitted) {
            ctx.count("lost", lost.len() as i64);
            ctx.note(format!("crashed: {} acknowledged records lost from memory", lost.len()));
            self.last_loss = Some((*first, lost.len() as u64, ctx.truth()));
        }
        (self.log, self.sent, self.sealed) = (Partition::new(1), 0, 0);
    }
}

impl Storage {
    /// An insert is done: new records are stored (bytes, delay, what they stand for: 100/rate
    /// records each); repeats are dropped. Answered once stored.
    fn store(&mut self, (from, id, recs): (NodeId, u64, Vec<Rec>), ctx: &mut Ctx<Lp>) {
        let (now, bound) = (ctx.truth(), us(ctx, "max_delay_s") * MICROS_PER_S);
        for r in recs {
            if self.ids.insert(r.id, ()).is_some() {
                ctx.count("duplicates", 1);
                continue;
            }
            let delay = now.since(r.emitted);
            ctx.count("stored", 1);
            ctx.count("stored_bytes", ctx.param("record_bytes"));
            ctx.observe("delay_us", delay);
            self.estimated += 100.0 / r.kept_pct.max(1) as f64;
            self.last_late = (delay > bound).then_some((r, delay, now)).or(self.last_late);
        }
        ctx.gauge("estimated", self.estimated as i64);
        ctx.send(from, Msg::Inserted(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::{failed_at, run_sim};

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("log-pipeline", strategy, seed)
    }

    /// No scheduled crash.
    fn calm(strategy: &str, seed: u64) -> Recipe {
        recipe(strategy, seed).with_param("crash_at", 0)
    }

    /// The services stop logging at `at` s: what was emitted has time to arrive.
    fn stop_at(r: Recipe, at: u64) -> Recipe {
        r.with_action(Time::from_secs(at), ActionKind::SetParam { id: "records_per_s".into(), value: 0 })
    }

    fn sim_run(recipe: Recipe, secs: u64) -> Sim<Lp> {
        run_sim(sim(&Setup { spec: &SPEC, recipe }), secs)
    }

    fn counter(sim: &Sim<Lp>, name: &str) -> i64 {
        sim.metrics().counter(name)
    }

    fn mean_us(sim: &Sim<Lp>, name: &str) -> f64 {
        sim.metrics().histogram(name).expect("observed").mean()
    }

    fn close(got: f64, want: f64, tol: f64) -> bool {
        (got - want).abs() <= tol * want
    }

    /// One insert's round trip under `per-record`: two trips of U(0.2, 1) ms (0.6 ms each on
    /// average, variance 0.8²/12 ms² each) around 2 ms + 10 µs at storage.
    const S_US: f64 = 600.0 + 2010.0 + 600.0;
    const S_VAR_US2: f64 = 2.0 * 800.0 * 800.0 / 12.0;

    #[test]
    fn try_per_record_falls_behind_and_the_crash_loses_the_backlog() {
        // Step 1: storage clears μ = 1/S ≈ 311 inserts/s of λ = 1000 records/s. The record
        // being inserted at t was emitted at μt/λ: its age t(1 − μ/λ) reaches 10 s near 14.5 s.
        for seed in 1..=3 {
            let sim = sim_run(recipe("per-record", seed), 30);
            let (at, why) = failed_at(&sim, "delay-bounded").expect("late");
            assert!((12.0..17.0).contains(&at), "seed {seed}: {at} {why}");
            let (at, why) = failed_at(&sim, "no-loss").expect("lost");
            assert!(at == 15.0 && why.contains("acknowledged"), "seed {seed}: {at} {why}");
            assert!(counter(&sim, "lost") > 8000, "seed {seed}: {}", counter(&sim, "lost"));
        }
    }

    #[test]
    fn per_record_backlog_grows_at_lambda_minus_mu() {
        // Fluid: the buffer grows at λ − 1/E[S] = 1000 − 311.5 = 688.5 records/s. Over 10 s the
        // arrivals' Poisson noise is √10000 = 100 records (1.5%): ±5%.
        let want = 1000.0 - 1e6 / S_US;
        for seed in 1..=3 {
            let lag = |s| sim_run(calm("per-record", seed), s).node::<Collector>(COLLECTOR).log.lag(0) as f64;
            let got = (lag(20) - lag(10)) / 10.0;
            assert!(close(got, want, 0.05), "seed {seed}: {got:.1}/s vs {want:.1}/s");
        }
    }

    #[test]
    fn per_record_wait_is_pollaczek_khinchine() {
        // Below saturation the buffer is an M/G/1 queue: Poisson records (the cores barely
        // delay them), one insert at a time, service S (round trip + insert). Mean wait
        // W = λ·E[S²] / (2(1 − ρ)): at λ = 150/s, ρ = 0.48 and W = 1.51 ms. 120 s, 18,000
        // records; waits are correlated over busy periods (a few ms): ±10%.
        let lambda = 150.0;
        let (es, es2) = (S_US / 1e6, (S_US * S_US + S_VAR_US2) / 1e12);
        let want_us = lambda * es2 / (2.0 * (1.0 - lambda * es)) * 1e6;
        for seed in 1..=2 {
            let sim = sim_run(calm("per-record", seed).with_param("records_per_s", 15), 120);
            let got = mean_us(&sim, "buffer_us");
            assert!(close(got, want_us, 0.10), "seed {seed}: {got:.0} µs vs {want_us:.0} µs");
        }
    }

    #[test]
    fn try_batched_keeps_up_but_the_crash_loses_the_batch_in_memory() {
        // Step 2: a batch a second, so a record waits F/2 on average and the bound holds; the
        // crash loses what was buffered since the last flush.
        for seed in 1..=3 {
            let sim = sim_run(recipe("batched", seed), 30);
            assert!(failed_at(&sim, "delay-bounded").is_none(), "seed {seed}");
            let (at, why) = failed_at(&sim, "no-loss").expect("lost");
            assert!(at == 15.0 && why.starts_with("the crash lost"), "seed {seed}: {why}");
            assert!((1..=1100).contains(&counter(&sim, "lost")), "seed {seed}: {}", counter(&sim, "lost"));
        }
    }

    #[test]
    fn a_batch_waits_half_the_flush_interval_or_half_a_batch() {
        // Flushed every F (batches never full): a Poisson record waits U(0, F), F/2 = 500 ms on
        // average; ±3% (30 flushes of ~1000 records, each flush's mean wait close to F/2).
        // Full batches first (B = 100 ≪ λF): the k-th of B waits (B − k)/λ, (B − 1)/(2λ) =
        // 49.5 ms on average, plus a little queueing behind the insert before (4 ms in 100): ±5%.
        for seed in 1..=2 {
            let sim = sim_run(calm("batched", seed).with_param("batch_records", 100_000), 30);
            let got = mean_us(&sim, "buffer_us");
            assert!(close(got, 500_000.0, 0.03), "seed {seed}: {got:.0} µs");
            let r = calm("batched", seed).with_param("batch_records", 100).with_param("flush_ms", 60_000);
            let got = mean_us(&sim_run(r, 30), "buffer_us");
            assert!(close(got, 49_500.0, 0.05), "seed {seed}: {got:.0} µs");
        }
    }

    #[test]
    fn a_crash_loses_lambda_times_half_the_flush_interval() {
        // The flush ticks' phase is random, so the crash finds the buffer U(0, F) old: it holds
        // λ·F/2 = 500 records on average (plus the few being parsed). Per crash the s.d. is
        // λF/√12 = 289; the mean of 100 seeds has an s.e. of 29 (6%): ±15%.
        let lost: i64 = (1..=100)
            .map(|seed| {
                let r = recipe("batched", seed).with_param("batch_records", 100_000).with_param("crash_at", 3);
                counter(&sim_run(r, 4), "lost")
            })
            .sum();
        assert!(close(lost as f64 / 100.0, 500.0, 0.15), "{}", lost as f64 / 100.0);
    }

    #[test]
    fn try_spooled_loses_nothing_acknowledged_and_drops_the_duplicates() {
        // Step 3: every record emitted is stored once (the services stop at 25 s so all are in
        // by 30 s): the spool keeps what was acknowledged, the agents send again what was not.
        for seed in 1..=3 {
            let sim = sim_run(stop_at(recipe("spooled", seed), 25), 30);
            assert!(sim.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert_eq!(counter(&sim, "lost"), 0);
            assert_eq!(counter(&sim, "stored"), counter(&sim, "emitted"), "seed {seed}");
            // Duplicates: the records spooled whose acknowledgement died in the crash (λ × the
            // 1 ms fsync: about one), and an insert in flight (sent again from the spool).
            assert!(counter(&sim, "duplicates") <= 50, "seed {seed}: {}", counter(&sim, "duplicates"));
            // Under `batched`, the same run stores less than was emitted.
            let naive = sim_run(stop_at(recipe("batched", seed), 25), 30);
            assert!(counter(&naive, "stored") < counter(&naive, "emitted"), "seed {seed}");
        }
    }

    #[test]
    fn try_sampled_stores_an_eighth_and_estimates_the_count() {
        // Step 4: kept: 2% errors + 98% × 10% = 11.8% of the records, so of the bytes (±10%:
        // the binomial noise is ~2% of it). The estimate Σ 100/rate of the stored has s.e.
        // √(n·0.98·(1 − p)/p) ≈ 470 of 25,000 (1.9%): ±8% is over 4σ.
        for seed in 1..=3 {
            let sampled = sim_run(stop_at(recipe("sampled", seed), 25), 30);
            let full = sim_run(stop_at(recipe("spooled", seed), 25), 30);
            assert!(sampled.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            let share = counter(&sampled, "stored_bytes") as f64 / counter(&full, "stored_bytes") as f64;
            assert!(close(share, 0.118, 0.10), "seed {seed}: {share:.3}");
            let (est, n) = (sampled.metrics().gauge("estimated") as f64, counter(&sampled, "emitted") as f64);
            assert!(close(est, n, 0.08), "seed {seed}: {est} vs {n}");
        }
    }

    #[test]
    fn try_gzip_cuts_the_wire_and_raises_the_collectors_cpu() {
        // Step 4, then: utilisation is λ·(parse + inflate)/cores: 1000 × 100 µs / 2 = 5%, and
        // 1000 × 250 µs / 2 = 12.5% gzipped (±5%: Poisson counts over 30 s, and resends). The
        // wire carries a fifth of the bytes.
        for seed in 1..=2 {
            let plain = sim_run(calm("spooled", seed), 30);
            let gz = sim_run(calm("spooled", seed).with_param("gzip", 1), 30);
            let util = |s: &Sim<Lp>| counter(s, "cpu_us") as f64 / (30e6 * 2.0);
            assert!(close(util(&plain), 0.05, 0.05) && close(util(&gz), 0.125, 0.05), "seed {seed}");
            let wire = counter(&gz, "wire_bytes") as f64 / counter(&plain, "wire_bytes") as f64;
            assert!(close(wire, 0.2, 0.05), "seed {seed}: {wire}");
        }
    }

    #[test]
    fn the_view_shows_the_buffer_and_the_loss() {
        let sim = sim_run(recipe("per-record", 1), 14);
        let frame = sim.frame(0);
        let c = &frame.nodes[COLLECTOR as usize].view;
        assert_eq!(c.gauges[1].label, "buffered");
        assert!(c.gauges[1].value > 5000, "{:?}", c.gauges);
        assert_eq!(frame.nodes[0].view.kind, NodeKind::Client);
        let sim = sim_run(recipe("batched", 1), 16);
        let c = &sim.frame(0).nodes[COLLECTOR as usize].view;
        assert!(c.badges.iter().any(|b| b.tone == Tone::Bad), "{:?}", c.badges);
    }
}
