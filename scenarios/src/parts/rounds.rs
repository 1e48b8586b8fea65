//! Rounds of work on shared memory: a main thread owning `threads::Memory` starts each round's worker threads, serves their accesses and joins them for its audit; each worker does its share of jobs, one access at a time.
//!
//! A program that spawns threads, joins them and checks what they did is how a concurrency bug
//! is usually caught (a counter short of its total, money missing from the accounts). Every
//! message carries its round, so that what a thread sent before the main thread restarted is
//! told apart and ignored.

use super::threads::{Access, Cpu, Memory, Reply, ThreadId};
use faultline_core::{numbered, Breach, Ctx, Label, Micros, Node, NodeId, NodeKind, NodeView, Tone};
use std::collections::BTreeMap;

/// The main thread is node 0 and owns the memory; worker `i` is node `i + 1`.
pub const MAIN: NodeId = 0;

/// A worker's name in the picture and in messages: node `i + 1` is "thread i".
pub fn name(t: ThreadId) -> String {
    numbered("thread", t as u64 - 1)
}

/// What the main thread and its workers say to each other.
#[derive(Clone, Debug)]
pub enum Msg {
    Start { round: u64, jobs: u64 },
    Access { round: u64, access: Access },
    Reply { round: u64, reply: Reply },
    Finished { round: u64 },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Start { .. } => "start",
            Msg::Access { access, .. } => access.label(),
            Msg::Reply { reply, .. } => reply.label(),
            Msg::Finished { .. } => "finished",
        }
    }
}

/// A write over a cell that moved since its writer read it: it erases what moved it (a lost
/// update). By the writer, to the cell, what it wrote, over what, and what it had read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Erased {
    pub by: ThreadId,
    pub cell: u32,
    pub wrote: i64,
    pub over: i64,
    pub read: i64,
}

impl Erased {
    /// In words, `cell` naming the cell: "thread 1 wrote 940 to account 3 over 1010 (it read 1000)".
    pub fn told(&self, cell: &str) -> String {
        let (by, wrote, over, read) = (name(self.by), self.wrote, self.over, self.read);
        format!("{by} wrote {wrote} to {cell} {} over {over} (it read {read})", self.cell)
    }
}

/// The main thread's side: the memory, the round under way and who has joined it, what each
/// thread last read of each cell (so that a write over a moved cell is told), the round's first
/// such write in words, and the audits' breach.
#[derive(Clone, Debug)]
pub struct Rounds {
    pub mem: Memory,
    read: BTreeMap<(ThreadId, u32), i64>,
    /// Kept through a crash (memory is not), so that accesses from before it are told apart.
    pub round: u64,
    pub threads: u32,
    /// Each worker's jobs a round, worker 0's first.
    pub jobs: Vec<u64>,
    joined: u32,
    first_loss: Option<String>,
    pub breach: Breach,
}

impl Rounds {
    /// `threads` workers with `jobs` each a round.
    pub fn new(mem: Memory, threads: u32, jobs: u64) -> Rounds {
        Rounds::each(mem, vec![jobs; threads as usize])
    }

    /// A worker for each entry of `jobs`, with that many jobs a round.
    pub fn each(mem: Memory, jobs: Vec<u64>) -> Rounds {
        let (read, first_loss, breach, threads) = (BTreeMap::new(), None, Breach::default(), jobs.len() as u32);
        Rounds { mem, read, round: 0, threads, jobs, joined: 0, first_loss, breach }
    }

    /// The next round: memory reset, every worker told to do its jobs.
    pub fn start<N: Node<Msg = Msg>>(&mut self, ctx: &mut Ctx<N>) {
        (self.round, self.joined, self.first_loss) = (self.round + 1, 0, None);
        self.mem.reset();
        self.read.clear();
        for (t, &jobs) in (1..).zip(&self.jobs) {
            ctx.send(t, Msg::Start { round: self.round, jobs });
        }
    }

    /// Whether a message of `round` belongs to the round under way (not to one before a restart).
    pub fn current(&self, round: u64) -> bool {
        round == self.round
    }

    /// Applies a worker's access and answers it (and a waiter an unlock woke); a write over a
    /// cell that moved since the writer's last read of it is told (a cell it never read, `base`).
    pub fn serve<N: Node<Msg = Msg>>(
        &mut self,
        t: ThreadId,
        access: Access,
        base: i64,
        ctx: &mut Ctx<N>,
    ) -> Option<Erased> {
        let cells = self.mem.cells();
        let erased = match access {
            Access::Read(c) => {
                self.read.insert((t, c), cells[c as usize]);
                None
            }
            Access::Write(cell, wrote) => {
                let (over, read) = (cells[cell as usize], self.read.get(&(t, cell)).copied().unwrap_or(base));
                (over != read).then_some(Erased { by: t, cell, wrote, over, read })
            }
            _ => None,
        };
        let round = self.round;
        self.mem.serve(t, access, ctx, |reply| Msg::Reply { round, reply });
        erased
    }

    /// A worker joined: true once every one has.
    pub fn joined(&mut self) -> bool {
        self.joined += 1;
        self.joined >= self.threads
    }

    /// Notes the round's first erasing write, in words (`cell` names the cell, `erased` says
    /// what the write erased); later ones are only counted by the scenario.
    pub fn tell_first<N: Node>(&mut self, e: &Erased, cell: &str, erased: &str, ctx: &mut Ctx<N>) {
        if self.first_loss.is_none() {
            let what = e.told(cell);
            ctx.note(format!("{what}: {erased}"));
            self.first_loss = Some(what);
        }
    }

    /// The audit of a joined round: `wrong` says how the memory is off, if it is; a wrong round
    /// is noted and kept as the breach, with the round's first erasing write.
    pub fn audit<N: Node>(&mut self, wrong: Option<String>, ctx: &mut Ctx<N>) {
        ctx.count("rounds", 1);
        let Some(wrong) = wrong else { return };
        let first = self.first_loss.take().map(|f| format!(" (first: {f})")).unwrap_or_default();
        let why = format!("round {}: {wrong}{first}", self.round);
        ctx.note(why.clone());
        self.breach.record(why, ctx.truth());
    }
}

/// The main thread of a program: it serves its workers' accesses and audits each round once all
/// have joined (then starts the next).
pub trait MainThread<N: Node<Msg = Msg>> {
    fn rounds(&mut self) -> &mut Rounds;
    fn access(&mut self, t: ThreadId, access: Access, ctx: &mut Ctx<N>);
    fn all_joined(&mut self, ctx: &mut Ctx<N>);
}

/// A worker of a program: its round's work, and what it does with an answer.
pub trait WorkerThread<N: Node<Msg = Msg>> {
    fn worker(&mut self) -> &mut Worker;
    /// Its next job (or, with none left, join).
    fn work(&mut self, ctx: &mut Ctx<N>);
    fn reply(&mut self, reply: Reply, ctx: &mut Ctx<N>);
}

/// A message to the main thread: the round under way's accesses and joins. Those from before
/// its restart are dropped: that round is over.
pub fn to_main<N: Node<Msg = Msg>>(m: &mut impl MainThread<N>, from: NodeId, msg: Msg, ctx: &mut Ctx<N>) {
    match msg {
        Msg::Access { round, access } if m.rounds().current(round) => m.access(from, access, ctx),
        Msg::Finished { round } if m.rounds().current(round) => {
            if m.rounds().joined() {
                m.all_joined(ctx)
            }
        }
        Msg::Access { .. } | Msg::Finished { .. } => {}
        other => ctx.unhandled(&other),
    }
}

/// A message to a worker: a round to start, or an answer — taken only if it answers this
/// round's access in flight (else it was sent before a crash, and is ignored).
pub fn to_worker<N: Node<Msg = Msg>>(t: &mut impl WorkerThread<N>, msg: Msg, ctx: &mut Ctx<N>) {
    match msg {
        Msg::Start { round, jobs } => {
            t.worker().start(round, jobs);
            t.work(ctx)
        }
        Msg::Reply { round, reply } => {
            if let Some(reply) = t.worker().answered(round, reply) {
                t.reply(reply, ctx)
            }
        }
        other => ctx.unhandled(&other),
    }
}

/// A worker (re)started: one restarted mid-round carries on with the jobs it had left (the one
/// under way died with it; a lock it held stays held, as a plain mutex's does).
pub fn worker_started<N: Node<Msg = Msg>>(t: &mut impl WorkerThread<N>, ctx: &mut Ctx<N>) {
    if t.worker().left > 0 {
        t.work(ctx)
    }
}

/// A worker thread's side: its round, the jobs it has left, its CPU and the access in flight.
#[derive(Clone, Debug, Default)]
pub struct Worker {
    pub index: u32,
    pub round: u64,
    pub left: u64,
    pub jobs: u64,
    pub cpu: Cpu,
    pub last: Option<Access>,
}

impl Worker {
    pub fn new(index: u32) -> Worker {
        Worker { index, ..Worker::default() }
    }

    /// A round starts: its jobs, nothing in flight.
    pub fn start(&mut self, round: u64, jobs: u64) {
        (self.round, self.left, self.jobs, self.last) = (round, jobs, jobs, None);
        self.cpu.reset();
    }

    /// After a crash: what was in flight is gone (locks it held stay held, as a plain mutex's
    /// do); its round and the jobs it had left remain, to carry on when it restarts.
    pub fn crashed(&self) -> Worker {
        let mut w = self.clone();
        w.cpu.reset();
        w.last = None;
        w
    }

    /// An answer: the reply, if it answers this round's access in flight (else it is from
    /// before a crash, and ignored).
    pub fn answered(&mut self, round: u64, reply: Reply) -> Option<Reply> {
        (round == self.round && self.cpu.answered(reply)).then_some(reply)
    }

    /// Local work (exponential, mean `work_us`) until `timer` — or, with no job left, join.
    pub fn work<N: Node<Msg = Msg>>(&mut self, work_us: f64, timer: N::Timer, ctx: &mut Ctx<N>) {
        if self.left == 0 {
            return ctx.send(MAIN, Msg::Finished { round: self.round });
        }
        let work = ctx.rng().exponential(work_us) as Micros;
        ctx.set_timer(work, timer);
    }

    /// The next access, after its step; `inside` a critical section an armed deschedule strikes.
    pub fn issue<N: Node<Msg = Msg>>(&mut self, access: Access, inside: bool, ctx: &mut Ctx<N>) {
        self.last = Some(access);
        self.cpu.issue(ctx, MAIN, access, inside, Msg::Access { round: self.round, access });
    }

    /// Its node: jobs done of the round's, what it holds or waits for, joined.
    pub fn view(&self) -> NodeView {
        let (done, all) = ((self.jobs - self.left) as i64, self.jobs as i64);
        let v = NodeView::new(NodeKind::Worker, 0, numbered("thread", self.index as u64)).gauge("done", done, all);
        self.cpu.badge(v).badge_if(self.left == 0 && self.round > 0, "joined", Tone::Good)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_round_is_joined_once_every_worker_has_finished() {
        let mut r = Rounds::new(Memory::new(1, 0), 3, 10);
        r.round = 4;
        assert!(r.current(4) && !r.current(3));
        assert!(!r.joined() && !r.joined() && r.joined());
    }

    #[test]
    fn a_worker_takes_only_its_rounds_answers_to_what_it_asked() {
        let mut w = Worker::new(2);
        w.start(7, 5);
        assert_eq!((w.left, w.jobs, w.last), (5, 5, None));
        assert_eq!(w.answered(7, Reply::Stored), None, "nothing was asked");
        w.cpu.doing = Some(Access::Write(0, 1));
        assert_eq!(w.answered(6, Reply::Stored), None, "an old round's");
        assert_eq!(w.answered(7, Reply::Stored), Some(Reply::Stored));
        w.cpu.doing = Some(Access::Read(0));
        let mut w = w.crashed();
        assert_eq!(w.answered(7, Reply::Value(3)), None, "sent before the crash");
        assert_eq!(Msg::Finished { round: 1 }.label(), "finished");
        let e = Erased { by: 2, cell: 3, wrote: 940, over: 1010, read: 1000 };
        assert_eq!(e.told("account"), "thread 1 wrote 940 to account 3 over 1010 (it read 1000)");
    }
}
