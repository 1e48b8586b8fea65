//! Chunked upload and resume: a phone uploads large files in chunks over a mobile uplink that drops for seconds at a time; starting again from zero may never finish, resuming from what the server holds does.

use crate::parts::calls::{CallId, Calls};
use crate::parts::chunks::{digest, Answer, Parts, Sending, Shape};
use crate::parts::strategies::strategies;
use crate::parts::uplink::{Drops, Uplink};
use faultline_core::*;

#[rustfmt::skip] // A table, an entry a line: rustfmt would give every argument a line of its own.
pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "chunked-upload",
        title: "Chunked upload and resume",
        category: "Data & scale",
        seeds: &["S0#15", "S3#65", "S3#16"],
        summary: "A phone uploads 20 MB files in 1 MB chunks over a 1 MB/s uplink that drops every 8 s on average for \
                  2 s. Starting from zero after each drop rarely finishes; resuming from what the server holds does.",
        note: Note {
            what_can_go_wrong: "A 22-second upload on a link that drops every 8 s on average almost never sees 22 clear \
                seconds: starting from zero after each drop takes (e^(λs) − 1)(1/λ + D) on average — about 150 s here, \
                exponential in the file's size — and the progress bar falls back to 0. The model: connections share \
                the uplink (each capped by its TCP window over the round trip), a chunk counts once the server \
                acknowledges it, one cut short by a drop is wasted, the server keeps chunks by index on disk and \
                assembles a file once it holds all; the time to a drop is exponential from each reconnection. Parallel \
                chunks need that index: a server that appends (an offset) puts a resent chunk after later ones.",
            what_you_sacrifice: "Resuming needs state on both sides: the server keeps parts of unfinished uploads \
                (and must expire the abandoned ones), the client keeps the upload's id across restarts and asks the \
                server what it holds before going on. Each chunk costs a round trip, so small chunks waste less per \
                drop but more on waiting; parallel connections hide the round trip but lose every chunk in progress \
                at a drop.",
            at_10x: "Ten times the file (200 MB): starting from zero needs 220 clear seconds — hopeless on a train — \
                while resuming costs the same per drop. Ten times the users: unfinished parts and assembly work grow, \
                and a cell-tower outage's reconnections hit the upload service all at once.",
            resembles: "S3 multipart upload (parts by number, ListParts, CompleteMultipartUpload), the tus resumable \
                upload protocol (HEAD for the offset, PATCH from it), Google Cloud Storage resumable uploads, HTTP \
                range requests for resumable downloads.",
            try_this: &[
                "Play `restart-from-zero`: every drop sends the file from byte 0 again — progress falls back to 0 and \
                 `progress-kept` fails, and the bytes sent again pile up to many times what resuming re-sends.",
                "Switch to `resume`: after each drop the client asks which chunks the server holds and goes on from \
                 the first missing one; progress never goes back and the uploads finish.",
                "Set the TCP window to 64 kB: one connection then tops out at 640 kB/s (window over the 100 ms round \
                 trip) — `resume` slows down, while `parallel-chunks`' four connections still fill the link and \
                 finish first.",
                "Play `parallel-append` with message loss at 5%: the server appends each chunk where the file ends, \
                 so one resent after a loss lands after later ones — within a minute `complete-in-order` usually \
                 fails, naming the first chunk out of place; `parallel-chunks` at the same loss never does.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("file_mb", "File size", "MB", 1..=5000, 20, "Each file's size (the seed's videos: 5 GB); files are uploaded one after another."),
        ParamSpec::setup("chunk_kb", "Chunk size", "kB", 64..=64_000, 1000, "Bytes per chunk (the last one is what is left).").step(8),
        ParamSpec::live("bandwidth_kbps", "Uplink bandwidth", "kB/s", 50..=100_000, 1000, "Shared by every connection."),
        ParamSpec::live("window_kb", "TCP window", "kB", 16..=16_000, 256, "One connection sends at most a window per round trip."),
        ParamSpec::setup("rtt_ms", "Round trip", "ms", 2..=2000, 100, "Phone to server and back (half each way).").step(2),
        ParamSpec::setup("loss_pct", "Message loss", "%", 0..=30, 1, "Chance a chunk or an answer is lost on the way."),
        ParamSpec::live("drop_every_s", "Connection drops every", "s", 0..=600, 8, "Mean time connected before a drop (exponential; 0: never)."),
        ParamSpec::live("offline_ms", "Offline after a drop", "ms", 0..=120_000, 2000, "How long the phone has no connection.").step(100),
        ParamSpec::live("ack_timeout_ms", "Answer timeout", "ms", 50..=60_000, 1000, "Wait for an answer after a request's last byte left."),
        ParamSpec::live("connections", "Parallel connections", "", 1..=16, 4, "Chunks in flight at once under parallel-chunks."),
    ],
    strategies: &[
        StrategySpec::naive("restart-from-zero", "Restart from zero", "After a drop or an unanswered chunk, uploads the whole file again as a new upload."),
        StrategySpec::naive("parallel-append", "Parallel, appended", "Sends chunks over several connections to a server that appends each as it arrives (an offset, not a part number)."),
        StrategySpec::fixed("resume", "Resume from last acked chunk", "After a failure, asks the server which chunks it holds and sends on from the first missing one."),
        StrategySpec::fixed("parallel-chunks", "Parallel chunks", "Sends missing chunks over several connections at once, each resumed on its own."),
    ],
    faults: &[FaultSpec::global("disconnect", "Drop the connection", "The phone loses its connection for this long (a tunnel, a lift).").value("offline ms", 0..=120_000, 5000)],
    checks: &[
        CheckSpec::new("complete-in-order", "File complete and in order", "A file the server assembles holds every chunk exactly once, in order, with the right bytes."),
        CheckSpec::new("progress-kept", "Progress never goes back", "The progress shown for a file (chunks the server confirmed) never falls."),
    ],
    metrics: &[
        MetricSpec::new("progress", "Progress shown to the user", "%", Measure::GaugePer("progress_pm", 10.0)),
        MetricSpec::new("resent", "Bytes sent again", "B", Measure::Count("resent_bytes")),
        MetricSpec::new("upload_time", "Upload time (mean)", "us", Measure::Mean("upload_us")),
        MetricSpec::new("goodput", "Goodput (files completed)", "B/s", Measure::Rate("done_bytes")),
        MetricSpec::new("wire", "Bytes on the wire", "B/s", Measure::Rate("wire_bytes")),
        MetricSpec::new("files", "Files uploaded", "", Measure::Count("files_done")),
    ],
    layout: Layout::Tiers,
    default_until: 60 * MICROS_PER_S,
    sample_every: 500 * MICROS_PER_MS,
    build,
};

strategies!(SPEC, Strategy { Restart, Append, Resume, Parallel });

const CLIENT: NodeId = 0;
const SERVER: NodeId = 1;

/// A Hello opens (or re-opens) an upload: the server answers with the chunks it holds, or done.
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Hello { call: CallId, upload: u64, file: u64, n: u32 },
    Chunk { call: CallId, upload: u64, index: u32, digest: u64, append: bool },
    Complete { call: CallId, upload: u64, n: u32 },
    Answer { call: CallId, answer: Answer },
    Ack { call: CallId },
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Sent,
    Unanswered(CallId),
    Drop,
    Reconnect,
}

#[derive(Clone, Debug, Holds)]
pub enum Up {
    Client(Client),
    Server(Parts),
}

/// What a call was for.
#[derive(Clone, Copy, Debug)]
enum Req {
    Hello,
    Chunk(u32),
    Complete,
}

#[derive(Clone, Debug)]
pub struct Client {
    strategy: Strategy,
    /// The file uploaded (from 1), its upload id (new per attempt from zero), when it began (true time).
    file: u64,
    upload: u64,
    began: Time,
    chunks: Box<Sending>, // boxed: far larger than the server's node
    up: Uplink<u32>,
    calls: Calls<Req>,
    link: Drops,
    /// Whether the server told what it holds since the connection was (re)made.
    ready: bool,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let half_rtt = setup.param("rtt_ms") as u64 * 500;
    let link = Link { loss: Ppm::from_percent(setup.param("loss_pct") as u32), ..Link::constant(half_rtt) };
    let mut sim: Sim<Up> = Sim::new(setup, link);
    let shape = Shape::new(setup.param("file_mb") as u64 * 1_000_000, setup.param("chunk_kb") as u64 * 1000);
    let client = Client {
        strategy: Strategy::from_id(setup.strategy()),
        file: 1,
        upload: 1,
        began: Time::ZERO,
        chunks: Box::new(Sending::new(shape)),
        up: Uplink::new(1, 1),
        calls: Calls::new("answer_us"),
        link: Drops::default(),
        ready: false,
    };
    assert_eq!(sim.add_node(Up::Client(client)), CLIENT);
    assert_eq!(sim.add_node(Up::Server(Parts::default())), SERVER);
    sim.check("complete-in-order", |w| w.node::<Parts>(SERVER).bad_file.now(w.now));
    sim.check("progress-kept", |w| w.node::<Client>(CLIENT).chunks.fell.now(w.now));
    Box::new(sim)
}

/// The uplink's bandwidth and a connection's ceiling (its window over the round trip), bytes a second.
fn rates(ctx: &Ctx<Up>) -> (u64, u64) {
    let window = ctx.param("window_kb") as u64 * 1000;
    (ctx.param("bandwidth_kbps") as u64 * 1000, window * MICROS_PER_S / (ctx.param("rtt_ms") as u64 * 1000))
}

impl Node for Up {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Up::Client(c) = self {
            let (bandwidth, cap) = rates(ctx);
            c.up.set_rates(ctx, bandwidth, cap, Timer::Sent);
            c.connect(ctx);
        }
    }

    fn on_message(&mut self, _from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Up::Server(s), Msg::Hello { call, upload, file, n }) => {
                let answer = s.open(upload, file, n);
                ctx.send(CLIENT, Msg::Answer { call, answer });
            }
            (Up::Server(s), Msg::Chunk { call, upload, index, digest, append }) => {
                s.store(upload, index, digest, append);
                ctx.send(CLIENT, Msg::Ack { call });
            }
            (Up::Server(s), Msg::Complete { call, upload, n }) => {
                let answer = s.complete(upload, n, ctx.truth());
                ctx.send(CLIENT, Msg::Answer { call, answer });
            }
            (Up::Client(c), Msg::Answer { call, answer }) => c.answer(call, answer, ctx),
            (Up::Client(c), Msg::Ack { call }) => c.ack(call, ctx),
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        let Up::Client(c) = self else { return ctx.unhandled(&timer) };
        match timer {
            Timer::Sent => {
                for index in c.up.finished(ctx, Timer::Sent) {
                    c.on_wire(index, c.chunks.shape.len(index), ctx);
                    let (call, digest) = (c.call(Req::Chunk(index), ctx), digest(c.file, index));
                    let (upload, append) = (c.upload, c.strategy == Strategy::Append);
                    ctx.send(SERVER, Msg::Chunk { call, upload, index, digest, append });
                }
            }
            Timer::Unanswered(id) => match c.calls.timeout(id) {
                Some(Req::Chunk(_)) if c.strategy == Strategy::Restart => c.fail("a chunk went unanswered", ctx),
                Some(Req::Chunk(i)) => {
                    ctx.count("timeouts", 1);
                    c.chunks.retry(i);
                    c.pump(ctx);
                }
                Some(Req::Hello) => c.hello(ctx),
                Some(Req::Complete) => c.complete(ctx),
                None => {}
            },
            Timer::Drop => c.disconnect(ms(ctx.param("offline_ms")), ctx),
            Timer::Reconnect => c.connect(ctx),
        }
    }

    fn on_crash(&mut self, ctx: &mut Ctx<Self>) {
        // The app is killed: transfers and calls die; the upload's id and what was confirmed are on disk.
        if let Up::Client(c) = self {
            c.hang_up(ctx);
            c.link.crashed();
            c.fail("the app restarted", ctx);
        }
    }

    fn on_control(&mut self, ctl: Control, ctx: &mut Ctx<Self>) {
        let Up::Client(c) = self else { return };
        match ctl {
            Control::Strategy(id) => {
                c.strategy = Strategy::from_id(id);
                c.pump(ctx);
            }
            Control::Custom { id: "disconnect", value } => c.disconnect(ms(value), ctx),
            Control::Param { id: "bandwidth_kbps" | "window_kb", .. } => {
                let (bandwidth, cap) = rates(ctx);
                c.up.set_rates(ctx, bandwidth, cap, Timer::Sent);
            }
            // Drops are memoryless: a new mean takes effect at once with a fresh draw.
            Control::Param { id: "drop_every_s", .. } => {
                c.link.schedule(ctx, ms(ctx.param("drop_every_s") * 1000), Timer::Drop)
            }
            Control::Param { id: "connections", .. } => c.pump(ctx),
            // The rest are read when next used.
            Control::Param { .. } | Control::Custom { .. } => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Up::Client(c) => {
                let (held, n) = (c.chunks.confirmed(), c.chunks.shape.n);
                NodeView::new(NodeKind::Client, 0, "phone")
                    .gauge("progress ‰", c.chunks.shown(), 1000)
                    .badge(format!("file {}: {held}/{n} chunks confirmed", c.file), Tone::Neutral)
                    .badge_if(c.link.online, format!("{} sending", c.up.len()), Tone::Good)
                    .badge_if(!c.link.online, "offline", Tone::Bad)
                    .badge_if(c.chunks.fell.latest().is_some(), "progress fell back", Tone::Warn)
            }
            Up::Server(s) => {
                let (open, parts) = s.stored();
                NodeView::new(NodeKind::Store, 1, "upload service")
                    .badge(format!("{open} open uploads, {parts} parts"), Tone::Neutral)
                    .badge(format!("{} files assembled", s.assembled), Tone::Good)
                    .badge_if(s.bad_file.latest().is_some(), "bad file assembled", Tone::Bad)
            }
        }
    }
}

impl Client {
    fn call(&mut self, req: Req, ctx: &mut Ctx<Up>) -> CallId {
        self.calls.start(ctx, req, ms(ctx.param("ack_timeout_ms")), Timer::Unanswered)
    }

    fn connect(&mut self, ctx: &mut Ctx<Up>) {
        self.link.connect(ctx, ms(ctx.param("drop_every_s") * 1000), Timer::Drop);
        self.hello(ctx);
    }

    /// Asks the server what it holds of the upload before sending anything.
    fn hello(&mut self, ctx: &mut Ctx<Up>) {
        let (call, upload, file, n) = (self.call(Req::Hello, ctx), self.upload, self.file, self.chunks.shape.n);
        ctx.send(SERVER, Msg::Hello { call, upload, file, n });
    }

    /// Transfers cut short, answers never to come: what was not confirmed is to send again.
    fn hang_up(&mut self, ctx: &mut Ctx<Up>) {
        for (index, bytes) in self.up.abort(ctx) {
            self.on_wire(index, bytes, ctx);
        }
        self.calls.clear(ctx);
        self.ready = false;
        self.chunks.requeue();
    }

    /// The connection drops for `offline_us`.
    fn disconnect(&mut self, offline_us: Micros, ctx: &mut Ctx<Up>) {
        if !self.link.drop(ctx, offline_us, Timer::Reconnect) {
            return;
        }
        ctx.count("drops", 1);
        ctx.note(format!("connection dropped for {} ms", offline_us / 1000));
        self.hang_up(ctx);
        self.fail("the connection dropped", ctx);
    }

    /// Under `restart-from-zero`, a failure starts from zero: a new upload of the file, nothing confirmed.
    fn fail(&mut self, why: &str, ctx: &mut Ctx<Up>) {
        if self.strategy != Strategy::Restart {
            return;
        }
        ctx.note(format!("{why}: uploading file {} again from byte 0", self.file));
        self.upload += 1;
        self.chunks.forget_confirmed();
        self.show(ctx);
        if self.ready {
            self.hang_up(ctx);
            self.hello(ctx);
        }
        self.chunks.requeue();
    }

    /// `bytes` of chunk `index` went on the wire (whole, or until a drop cut them short).
    fn on_wire(&mut self, index: u32, bytes: u64, ctx: &mut Ctx<Up>) {
        ctx.count("wire_bytes", bytes as i64);
        ctx.count("resent_bytes", self.chunks.on_wire(index, bytes) as i64);
    }

    fn show(&mut self, ctx: &mut Ctx<Up>) {
        let pm = self.chunks.show(self.file, ctx.truth());
        ctx.gauge("progress_pm", pm);
    }

    fn answer(&mut self, call: CallId, answer: Answer, ctx: &mut Ctx<Up>) {
        let Some(_) = self.calls.reply(call, ctx) else { return };
        match answer {
            Answer::Held(bits) => {
                self.chunks.confirm_held(&bits, self.strategy == Strategy::Append);
                self.ready = true;
                self.chunks.requeue();
                self.show(ctx);
                self.pump(ctx);
            }
            Answer::Done => self.done(ctx),
        }
    }

    fn ack(&mut self, call: CallId, ctx: &mut Ctx<Up>) {
        if let Some(Req::Chunk(i)) = self.calls.reply(call, ctx) {
            self.chunks.confirm(i);
            self.show(ctx);
            self.pump(ctx);
        }
    }

    /// Starts chunks while connections are free: one (waiting for each answer) unless parallel.
    fn pump(&mut self, ctx: &mut Ctx<Up>) {
        if !self.link.online || !self.ready {
            return;
        }
        let parallel = matches!(self.strategy, Strategy::Parallel | Strategy::Append);
        let slots = if parallel { ctx.param("connections") as usize } else { 1 };
        while self.up.len() + self.calls.len() < slots {
            let Some(i) = self.chunks.take_next() else { break };
            self.up.start(ctx, i, self.chunks.shape.len(i), Timer::Sent);
        }
        if self.chunks.whole() && self.calls.is_empty() && self.up.is_empty() {
            self.complete(ctx);
        }
    }

    fn complete(&mut self, ctx: &mut Ctx<Up>) {
        let call = self.call(Req::Complete, ctx);
        ctx.send(SERVER, Msg::Complete { call, upload: self.upload, n: self.chunks.shape.n });
    }

    /// The server assembled the file: the next one starts (its progress from 0 is a new bar).
    fn done(&mut self, ctx: &mut Ctx<Up>) {
        ctx.observe("upload_us", ctx.truth().since(self.began));
        ctx.count("done_bytes", self.chunks.shape.bytes as i64);
        ctx.count("files_done", 1);
        (self.file, self.upload, self.began) = (self.file + 1, self.upload + 1, ctx.truth());
        (self.chunks, self.ready) = (Box::new(Sending::new(self.chunks.shape)), false);
        ctx.gauge("progress_pm", 0);
        self.hello(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::testing::failed_at;
    use crate::parts::uplink::alone_us;

    const RTT_US: u64 = 100_000;

    fn recipe(strategy: &str, seed: u64) -> Recipe {
        Recipe::new("chunked-upload", strategy, seed)
    }

    fn run(recipe: &Recipe, secs: u64) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, recipe);
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run.run_until(Time::from_secs(secs), u64::MAX);
        assert_eq!(run.unhandled(), 0);
        run
    }

    fn calm(r: Recipe) -> Recipe {
        r.with_param("drop_every_s", 0).with_param("loss_pct", 0)
    }

    fn uploads(r: &dyn Run) -> (u64, f64, u64) {
        r.metrics().histogram("upload_us").map_or((0, 0.0, 0), |h| (h.count(), h.mean(), h.min()))
    }

    /// One chunk at a time, nothing lost: a round trip to ask, then per chunk its bytes alone
    /// on the link and a round trip for the answer, then a round trip to complete.
    fn one_at_a_time_us(file: u64, chunk: u64, bandwidth: u64, cap: u64) -> u64 {
        let n = file.div_ceil(chunk);
        (0..n).map(|i| alone_us(chunk.min(file - i * chunk), bandwidth, cap)).sum::<u64>() + (n + 2) * RTT_US
    }

    /// k connections in lock step (n a multiple of k, the cap not binding): each round k chunks
    /// share the link and then wait a round trip together — the ideal size/B plus n/k round trips.
    fn parallel_us(file: u64, chunk: u64, bandwidth: u64, k: u64) -> u64 {
        let n = file / chunk;
        alone_us(file, bandwidth, u64::MAX) + (n / k + 2) * RTT_US
    }

    /// Starting over after each drop (rate λ, exponential from each reconnection, D offline):
    /// an attempt of s clear seconds succeeds with chance e^(−λs) and a failed one costs its
    /// time to the drop plus D, so E[T] = (e^(λs) − 1)(1/λ + D) — the restart model of Duda
    /// ("The effects of checkpointing on program execution time", IPL 16, 1983).
    fn restart_expected_s(s: f64, lambda: f64, offline_s: f64) -> f64 {
        libm::expm1(lambda * s) * (1.0 / lambda + offline_s)
    }

    #[test]
    fn without_drops_an_upload_takes_exactly_its_bytes_and_round_trips() {
        // 20 MB in 1 MB chunks at 1 MB/s, 100 ms round trips: 20 s + 22 round trips = 22.2 s.
        let r = run(&calm(recipe("resume", 1)), 120);
        let want = one_at_a_time_us(20_000_000, 1_000_000, 1_000_000, 2_560_000);
        assert_eq!(want, 22_200_000);
        let (n, mean, min) = uploads(r.as_ref());
        assert!(n >= 5 && min == want && mean == want as f64, "{n} uploads, mean {mean} µs, min {min} µs");
        // A 64 kB window over 100 ms caps one connection at 640 kB/s: 31.25 s of bytes.
        let r = run(&calm(recipe("resume", 1)).with_param("window_kb", 64), 120);
        assert_eq!(uploads(r.as_ref()).2, one_at_a_time_us(20_000_000, 1_000_000, 1_000_000, 640_000));
        // Four connections: the link is full while they send, idle while all four wait.
        let r = run(&calm(recipe("parallel-chunks", 1)), 120);
        assert_eq!(uploads(r.as_ref()).2, parallel_us(20_000_000, 1_000_000, 1_000_000, 4));
        assert_eq!(parallel_us(20_000_000, 1_000_000, 1_000_000, 4), 20_700_000, "the ideal 20 s + 7 round trips");
    }

    #[test]
    fn restart_from_zero_takes_e_to_the_lambda_s_minus_one_times_the_cycle() {
        // 5 MB: s = 5.7 s clear; drops every 8 s, 2 s offline: (e^0.7125 − 1)(8 + 2) ≈ 10.4 s.
        // An upload's time has a s.d. near its mean (geometric attempts): ~190 uploads a seed,
        // the mean over 10 seeds has an s.e. of ~1.3%; the seeds' spread sets the tolerance (4
        // s.e.), plus 2% for the upload cut off at the end (long ones are more likely cut).
        let s = one_at_a_time_us(5_000_000, 1_000_000, 1_000_000, 2_560_000) as f64 / 1e6;
        let want = restart_expected_s(s, 1.0 / 8.0, 2.0);
        let means: Vec<f64> = (1..=10)
            .map(|seed| {
                let r = run(
                    &calm(recipe("restart-from-zero", seed)).with_param("file_mb", 5).with_param("drop_every_s", 8),
                    2000,
                );
                uploads(r.as_ref()).1 / 1e6
            })
            .collect();
        let mean = means.iter().sum::<f64>() / 10.0;
        let sd = (means.iter().map(|m| (m - mean) * (m - mean)).sum::<f64>() / 9.0).sqrt();
        let tolerance = 4.0 * sd / 10f64.sqrt() + 0.02 * want;
        assert!((mean - want).abs() < tolerance, "mean {mean:.2} s, theory {want:.2} s ± {tolerance:.2}");
        // At the defaults (s = 22.2 s) the same formula says ~150 s: a minute rarely suffices.
        assert!((restart_expected_s(22.2, 1.0 / 8.0, 2.0) - 150.4).abs() < 0.5);
    }

    #[test]
    fn try_restart_progress_falls_back_and_the_resent_bytes_pile_up() {
        for seed in 1..=10 {
            let naive = run(&recipe("restart-from-zero", seed), 60);
            let fixed = run(&recipe("resume", seed), 60);
            assert!(failed_at(naive.as_ref(), "progress-kept").is_some(), "seed {seed}: progress never fell");
            let resent = |r: &dyn Run| r.metrics().counter("resent_bytes");
            let (a, b) = (resent(naive.as_ref()), resent(fixed.as_ref()));
            assert!(a > 3 * b.max(1_000_000), "seed {seed}: {a} B sent again from zero, {b} B resuming");
        }
    }

    #[test]
    fn try_parallel_append_assembles_files_out_of_order_and_names_the_chunk() {
        let mut broke = 0;
        for seed in 1..=10 {
            let r = run(&recipe("parallel-append", seed).with_param("loss_pct", 5), 60);
            if let Some((_, why)) = failed_at(r.as_ref(), "complete-in-order") {
                assert!(why.contains("stands where chunk"), "seed {seed}: {why}");
                broke += 1;
            }
            let fixed = run(&recipe("parallel-chunks", seed).with_param("loss_pct", 5), 60);
            assert!(failed_at(fixed.as_ref(), "complete-in-order").is_none(), "seed {seed}: parts by number");
        }
        // A file goes wrong only if a chunk was lost while it was sent and it is assembled within the
        // minute: "usually", 6 of 10 seeds at least (8 here).
        assert!(broke >= 6, "{broke} of 10 seeds assembled a file out of order");
    }

    #[test]
    fn try_resume_progress_never_falls_and_files_finish() {
        for seed in 1..=10 {
            let r = run(&recipe("resume", seed), 60);
            assert!(r.checks().iter().all(|c| c.violation.is_none()), "seed {seed}");
            assert!(r.metrics().counter("files_done") >= 1, "seed {seed}: no file in a minute");
        }
    }

    #[test]
    fn try_a_small_window_slows_one_connection_but_not_four() {
        let mean = |strategy: &str| {
            let total: f64 = (1..=10)
                .map(|seed| uploads(run(&recipe(strategy, seed).with_param("window_kb", 64), 300).as_ref()).1)
                .sum();
            total / 10.0 / 1e6
        };
        let (one, four) = (mean("resume"), mean("parallel-chunks"));
        assert!(four < 0.8 * one, "parallel {four:.1} s vs resume {one:.1} s a file");
    }
}
