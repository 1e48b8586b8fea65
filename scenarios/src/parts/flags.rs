//! Feature flags: a flag's published versions (a rollout percentage, a kill switch), evaluated per request by a coin or by sticky hash bucketing; users' answers judged for flip-flops; a server's stream to the flag service (heartbeats, a read timeout, reconnects with backoff) and the service's table of streams; a change's propagation judged by its p99 over servers.
//!
//! Evaluation. [`Eval::Random`] draws a coin per request with the rollout's chance, so a user
//! with k answers at rollout p saw both features with chance 1 − p^k − (1 − p)^k, and a user
//! whose answers are Poisson with mean λ with chance 1 − e^(−λ(1−p)) − e^(−λp) + e^(−λ)
//! ([`flip_chance`], [`flip_share_poisson`]). [`Eval::Sticky`] puts each user in one of 100
//! buckets by a fixed hash of (the flag's salt, the user), on when the bucket is below the
//! percentage (Unleash's gradual rollout; LaunchDarkly hashes key, salt and user the same way):
//! every server gives a user the same answer, a share p of users is in (binomially, over users),
//! and raising p only adds users (tested).
//!
//! Delivery. A server polling every I at a random phase hears of a change when its next poll
//! reaches the service — uniform on (0, I) after the change — plus the answer's way back L:
//! quantile q of the delay is q·I + L ([`polling_delay_quantile_us`]; the scenario tests it).
//! A [`Stream`] is pushed each change in one trip; it is watched by heartbeats (a silent stream
//! is dead after a read timeout) and reconnected after a full-jitter backoff.

use crate::parts::retry::{Jitter, RetryPolicy};
use crate::parts::ring::mix;
use faultline_core::{Ctx, Label, Micros, Node, NodeId, Rng, Time, TimerId, Tone, MICROS_PER_S};

/// One version of the flag, as the service publishes it. Version 0 is no flag at all: a
/// server that has not heard from the service yet serves the code's default, the old feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flag {
    pub version: u32,
    /// The rollout: the share of users (in %) who get the new feature.
    pub pct: u8,
    /// The kill switch: off for everyone, whatever the percentage.
    pub killed: bool,
    /// When it was published (true time): instrumentation, for its propagation delay.
    pub published: Time,
}

impl Flag {
    pub const DEFAULT: Flag = Flag { version: 0, pct: 0, killed: false, published: Time::ZERO };

    /// A badge's tone: good while rolled out, a warning when killed or missing.
    pub fn tone(&self) -> Tone {
        [Tone::Good, Tone::Warn][(self.killed || self.version == 0) as usize]
    }

    /// "v3 (50%)", "v4 (killed)", or the default's words.
    pub fn describe(&self) -> String {
        match (self.version, self.killed) {
            (0, _) => "no flag (default: off)".into(),
            (v, true) => format!("v{v} (killed)"),
            (v, false) => format!("v{v} ({}%)", self.pct),
        }
    }
}

/// How a server decides whether a request gets the new feature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eval {
    /// A fresh coin per request, with the rollout's chance.
    Random,
    /// The user's bucket (see [`bucket`]) below the percentage.
    Sticky,
}

/// The user's bucket for a flag, 0..100: a fixed hash of (salt, user) mod 100 (the bias of a
/// 64-bit hash mod 100 is below 10⁻¹⁷).
pub fn bucket(salt: u64, user: u32) -> u32 {
    (mix(salt ^ mix(user as u64 ^ 0x9e37_79b9_7f4a_7c15)) % 100) as u32
}

impl Eval {
    /// Whether `user` gets the new feature under `flag` (never without a flag, never when killed).
    pub fn on(self, flag: &Flag, salt: u64, user: u32, rng: &mut Rng) -> bool {
        if flag.version == 0 || flag.killed {
            return false;
        }
        match self {
            Eval::Random => rng.below(100) < flag.pct as u64,
            Eval::Sticky => bucket(salt, user) < flag.pct as u32,
        }
    }
}

/// One answer a user got: under which version and rule, whether it was the new feature, which of
/// the user's requests it was, from which server, and when (true time).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub version: u32,
    pub eval: Eval,
    pub new: bool,
    pub request: u32,
    pub server: NodeId,
    pub at: Time,
}

/// What an answer was, beside the user's previous one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Turn {
    /// The same feature, or a newer version that changed it (a rollout or the kill switch).
    Fine,
    /// A flip-flop: the other feature under the same version and rule (`first` for the user's first).
    Flip { before: Answer, first: bool },
    /// The other feature from an older version than the previous answer's: a server behind.
    Back { before: Answer },
}

/// Each user's requests and latest answer, who flip-flopped, and the latest flip-flop.
#[derive(Clone, Debug)]
pub struct Answers {
    sent: Vec<u32>,
    last: Vec<Option<Answer>>,
    flipped: Vec<bool>,
    flipped_users: u64,
    /// Users whose latest answer was the new feature.
    on: u64,
    seen: u64,
    latest: Option<(usize, Answer, Answer)>,
}

impl Answers {
    pub fn new(users: usize) -> Answers {
        let (sent, last, flipped) = (vec![0; users], vec![None; users], vec![false; users]);
        Answers { sent, last, flipped, flipped_users: 0, on: 0, seen: 0, latest: None }
    }
    pub fn users(&self) -> usize {
        self.sent.len()
    }
    /// User `user` sends a request: its number (from 1).
    pub fn request(&mut self, user: usize) -> u32 {
        self.sent[user] += 1;
        self.sent[user]
    }

    /// The answer `a` reached user `user` (an index into this table): judged against the last.
    pub fn answered(&mut self, user: usize, a: Answer) -> Turn {
        let before = self.last[user].replace(a);
        self.on += a.new as u64;
        let Some(b) = before else {
            self.seen += 1;
            return Turn::Fine;
        };
        self.on -= b.new as u64;
        match (b.new != a.new, b.version.cmp(&a.version)) {
            (false, _) | (true, std::cmp::Ordering::Less) => Turn::Fine,
            (true, std::cmp::Ordering::Equal) if b.eval != a.eval => Turn::Fine,
            (true, std::cmp::Ordering::Equal) => {
                let first = !std::mem::replace(&mut self.flipped[user], true);
                self.flipped_users += first as u64;
                self.latest = Some((user, b, a));
                Turn::Flip { before: b, first }
            }
            (true, std::cmp::Ordering::Greater) => Turn::Back { before: b },
        }
    }

    /// The latest flip-flop: the user, and the answers before and after.
    pub fn latest(&self) -> Option<(usize, Answer, Answer)> {
        self.latest
    }
    pub fn flipped_users(&self) -> u64 {
        self.flipped_users
    }
    pub fn flipped(&self, user: usize) -> bool {
        self.flipped[user]
    }
    /// Users whose latest answer was the new feature, and users answered at all.
    pub fn on_of_seen(&self) -> (u64, u64) {
        (self.on, self.seen)
    }
}

/// Every version the service published, in order (version v at index v − 1): durable, like the
/// flag's history in its database.
#[derive(Clone, Debug, Default)]
pub struct History(Vec<Flag>);

impl History {
    /// Publishes a new version at `at` and returns it.
    pub fn publish(&mut self, pct: u8, killed: bool, at: Time) -> Flag {
        let flag = Flag { version: self.0.len() as u32 + 1, pct, killed, published: at };
        self.0.push(flag);
        flag
    }
    /// The latest version (the default if none).
    pub fn latest(&self) -> Flag {
        self.0.last().copied().unwrap_or(Flag::DEFAULT)
    }
    /// The version a server on `applied` (up since `since`) first fell behind on, and from when:
    /// the next version, from its publication or `since`, whichever is later. `None`: it has the latest.
    pub fn behind(&self, applied: u32, since: Time) -> Option<(Flag, Time)> {
        let next = *self.0.get(applied as usize)?;
        Some((next, next.published.max(since)))
    }
}

/// A server's copy of the flag, with when it took it and since when the server is up (true
/// times: instrumentation, for the propagation delay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Held {
    pub flag: Flag,
    pub applied_at: Time,
    pub up_since: Time,
}

impl Held {
    /// `flag`, held since `now` by a server up since then.
    pub fn new(flag: Flag, now: Time) -> Held {
        Held { flag, applied_at: now, up_since: now }
    }
    /// Takes `flag` if it is newer: its delay from publication (or from the server's start, if
    /// later); `None` if it was not newer.
    pub fn take(&mut self, flag: Flag, now: Time) -> Option<Micros> {
        (flag.version > self.flag.version).then(|| {
            (self.flag, self.applied_at) = (flag, now);
            now.since(flag.published.max(self.up_since))
        })
    }
}

/// Servers more than a bound behind a change, when more are than a p99 over them allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Late<K> {
    pub late: usize,
    pub of: usize,
    /// The first of them, the change it misses, and for how long it has.
    pub first: K,
    pub next: Flag,
    pub behind_us: Micros,
    pub bound_us: Micros,
}

impl<K> Late<K> {
    /// A check's words, with the first server's name and the flag it still serves.
    pub fn why(&self, first: impl Fn(&K) -> (String, Flag)) -> String {
        let ((name, has), n, ms) = (first(&self.first), self.of, |us: Micros| us / 1_000);
        format!(
            "{} of {n} servers are over {} ms behind (a p99 over {n} allows {}): {name} still serves {}, {} ms after \
             {} was published",
            self.late,
            ms(self.bound_us),
            allowed_late(n),
            has.describe(),
            ms(self.behind_us),
            self.next.describe()
        )
    }
}

impl History {
    /// Judges the servers up (`K` names one) at `now`: `Some` when more are over `bound_us`
    /// behind a change than a p99 over them allows.
    pub fn late<K: Copy>(
        &self,
        servers: impl Iterator<Item = (K, Held)>,
        now: Time,
        bound_us: Micros,
    ) -> Option<Late<K>> {
        let (mut n, mut late, mut first) = (0, 0, None);
        for (k, h) in servers {
            n += 1;
            if let Some((next, since)) =
                self.behind(h.flag.version, h.up_since).filter(|(_, t)| now.since(*t) > bound_us)
            {
                late += 1;
                first.get_or_insert((k, next, now.since(since)));
            }
        }
        let (first, next, behind_us) = first.filter(|_| late > allowed_late(n))?;
        Some(Late { late, of: n, first, next, behind_us, bound_us })
    }

    /// The latest change's p99 delay over `servers` (one still without it counts as waiting so
    /// far), and how many are without it.
    pub fn latest_p99(&self, servers: impl Iterator<Item = Held>, now: Time) -> (Option<Micros>, usize) {
        let latest = self.latest();
        let mut behind = 0;
        let mut delays: Vec<Micros> = servers
            .map(|h| {
                let since = latest.published.max(h.up_since);
                let got = h.flag.version >= latest.version;
                behind += !got as usize;
                if got {
                    h.applied_at.since(since)
                } else {
                    now.since(since)
                }
            })
            .collect();
        (p99(&mut delays), behind)
    }
}

/// How many of `n` servers may be late while a change's p99 over them stays in time: the
/// nearest-rank p99 is the ⌈0.99 n⌉-th smallest delay, so n − ⌈0.99 n⌉ (none below 100 servers).
pub fn allowed_late(n: usize) -> usize {
    n - (99 * n).div_ceil(100)
}

/// The nearest-rank p99 of `delays` (the ⌈0.99 n⌉-th smallest); `None` if empty.
pub fn p99(delays: &mut [Micros]) -> Option<Micros> {
    delays.sort_unstable();
    let rank = (99 * delays.len()).div_ceil(100);
    (rank > 0).then(|| delays[rank - 1])
}

/// A silent stream is dead after this long (heartbeats come every second).
pub const READ_TIMEOUT_US: Micros = 3 * MICROS_PER_S;
/// The service sends each stream a heartbeat this often.
pub const HEARTBEAT_US: Micros = MICROS_PER_S;
/// An attempt to connect that got no answer this long is given up.
pub const CONNECT_TIMEOUT_US: Micros = 2 * MICROS_PER_S;
/// The longest wait between reconnects (unless the base is longer).
pub const RECONNECT_CAP_US: Micros = 5 * MICROS_PER_S;

/// Where a server's stream stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not wanted (the server polls).
    Off,
    /// Lost: waiting out a backoff before the next attempt.
    Waiting,
    /// Asked for at `since`; no answer yet.
    Connecting { since: Time },
    /// Open; the service was last heard at `heard`.
    Open { heard: Time },
}

/// A server's end of its stream from the flag service. Each attempt has an epoch: what the
/// service sends on an older connection is ignored.
#[derive(Clone, Debug)]
pub struct Stream {
    phase: Phase,
    epoch: u32,
    /// Attempts that failed in a row (the backoff's retry number).
    tries: u32,
    last_wait_us: Micros,
    /// The last heartbeat showed a version this server has not got.
    ahead: bool,
}

impl Default for Stream {
    fn default() -> Self {
        Stream { phase: Phase::Off, epoch: 0, tries: 0, last_wait_us: 0, ahead: false }
    }
}

impl Stream {
    pub fn phase(&self) -> Phase {
        self.phase
    }
    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    /// Starts an attempt now: the epoch to send with it.
    pub fn connect(&mut self, now: Time) -> u32 {
        (self.epoch, self.ahead) = (self.epoch + 1, false);
        self.phase = Phase::Connecting { since: now };
        self.epoch
    }

    /// The service said something on the stream of `epoch`: it is open (the first message is the
    /// service's full state). False if it came on an older connection or none is wanted.
    pub fn heard(&mut self, epoch: u32, now: Time) -> bool {
        if epoch != self.epoch || matches!(self.phase, Phase::Off | Phase::Waiting) {
            return false;
        }
        if let Phase::Connecting { .. } = self.phase {
            (self.tries, self.last_wait_us) = (0, 0);
        }
        self.phase = Phase::Open { heard: now };
        true
    }

    /// A heartbeat on the stream of `epoch` showing the service's latest version: true when it is
    /// the second in a row ahead of `mine`, so a push was lost and the server should connect afresh
    /// for the whole state. (A push still on its way may be overtaken by one heartbeat sent with
    /// it — links here do not keep order — but not by two a second apart.)
    pub fn beat(&mut self, epoch: u32, latest: u32, mine: u32, now: Time) -> bool {
        if !self.heard(epoch, now) {
            return false;
        }
        let was = std::mem::replace(&mut self.ahead, latest > mine);
        was && self.ahead
    }

    /// The service closed or refused the stream of `epoch`: the wait before the next attempt
    /// (`None` if that was an older connection, or none is wanted).
    pub fn closed(&mut self, epoch: u32, base_us: Micros, rng: &mut Rng) -> Option<Micros> {
        (epoch == self.epoch && matches!(self.phase, Phase::Open { .. } | Phase::Connecting { .. }))
            .then(|| self.backoff(base_us, rng))
    }

    /// The watchdog's look (every second or so): the wait before reconnecting if the open stream
    /// was silent past the read timeout or the attempt got no answer within the connect timeout.
    pub fn watchdog(&mut self, now: Time, base_us: Micros, rng: &mut Rng) -> Option<Micros> {
        let dead = match self.phase {
            Phase::Open { heard } => now.since(heard) > READ_TIMEOUT_US,
            Phase::Connecting { since } => now.since(since) > CONNECT_TIMEOUT_US,
            Phase::Off | Phase::Waiting => false,
        };
        dead.then(|| self.backoff(base_us, rng))
    }

    /// Whether a reconnect timer set after the loss of `epoch` is still the one to act on.
    pub fn due(&self, epoch: u32) -> bool {
        self.phase == Phase::Waiting && epoch == self.epoch
    }

    /// Not wanted any more: the epoch to tell the service, if a stream was open or being opened.
    pub fn stop(&mut self) -> Option<u32> {
        let was = std::mem::replace(&mut self.phase, Phase::Off);
        (self.tries, self.last_wait_us) = (0, 0);
        matches!(was, Phase::Open { .. } | Phase::Connecting { .. }).then_some(self.epoch)
    }

    /// Full jitter on base · 2^(tries − 1), capped (Brooker 2015): a region's servers that lost
    /// their streams together do not come back together.
    fn backoff(&mut self, base_us: Micros, rng: &mut Rng) -> Micros {
        self.tries += 1;
        let policy = RetryPolicy::new(u32::MAX, base_us, RECONNECT_CAP_US.max(base_us), Jitter::Full);
        let wait = policy.delay_us(self.tries, self.last_wait_us, rng).unwrap_or(base_us);
        (self.phase, self.last_wait_us) = (Phase::Waiting, wait);
        wait
    }
}

/// The service's open streams: each subscriber's epoch, by node id.
#[derive(Clone, Debug, Default)]
pub struct Streams(Vec<Option<u32>>);

impl Streams {
    pub fn open(&mut self, node: NodeId, epoch: u32) {
        let i = node as usize;
        if self.0.len() <= i {
            self.0.resize(i + 1, None);
        }
        self.0[i] = Some(epoch);
    }
    /// Closes `node`'s stream if it is the one of `epoch`.
    pub fn close(&mut self, node: NodeId, epoch: u32) {
        if let Some(e) = self.0.get_mut(node as usize).filter(|e| **e == Some(epoch)) {
            *e = None;
        }
    }
    /// Closes the streams of the nodes `pick` chooses, returning them with their epochs.
    pub fn drop_where(&mut self, pick: impl Fn(NodeId) -> bool) -> Vec<(NodeId, u32)> {
        let mut dropped = Vec::new();
        for (i, e) in self.0.iter_mut().enumerate() {
            if let Some(epoch) = e.take_if(|_| pick(i as NodeId)) {
                dropped.push((i as NodeId, epoch));
            }
        }
        dropped
    }
    pub fn iter(&self) -> impl Iterator<Item = (NodeId, u32)> + '_ {
        self.0.iter().enumerate().filter_map(|(i, e)| e.map(|e| (i as NodeId, e)))
    }
    pub fn count(&self) -> usize {
        self.0.iter().filter(|e| e.is_some()).count()
    }
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

/// What the flag service and the servers say to each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Label)]
pub enum Wire {
    /// A server asks for the flag (polling), and gets it.
    Poll,
    Polled(Flag),
    /// A server opens its stream (an epoch per attempt), or closes it.
    Connect(u32),
    Disconnect(u32),
    /// The flag on the stream of an epoch: the whole state on connecting, then each change.
    Push(Flag, u32),
    /// The latest version, every second on the stream of an epoch.
    Heartbeat(u32, u32),
    /// The service closed (or refused) the stream of an epoch.
    Closed(u32),
}

/// The flag service's side: the flag's history (durable), the open streams (in memory), when
/// its delivery is down until, and the polls it answered.
#[derive(Clone, Debug, Default)]
pub struct FlagService {
    history: History,
    streams: Streams,
    down_until: Time,
    polls: u64,
}

impl FlagService {
    pub fn history(&self) -> &History {
        &self.history
    }
    pub fn streams(&self) -> usize {
        self.streams.count()
    }
    pub fn polls(&self) -> u64 {
        self.polls
    }
    /// Whether its delivery is down at `now` (own clock).
    pub fn is_down(&self, now: Time) -> bool {
        now < self.down_until
    }

    /// A server's message at `now` (own clock): the answer to send it, if any (`Err`: a message
    /// the service never gets). While down, polls go unanswered and connects are refused.
    pub fn on_wire(&mut self, from: NodeId, w: Wire, now: Time) -> Result<Option<Wire>, Wire> {
        let up = !self.is_down(now);
        Ok(match w {
            Wire::Poll if up => {
                self.polls += 1;
                Some(Wire::Polled(self.history.latest()))
            }
            Wire::Poll => None,
            Wire::Connect(epoch) if up => {
                self.streams.open(from, epoch);
                Some(Wire::Push(self.history.latest(), epoch))
            }
            Wire::Connect(epoch) => Some(Wire::Closed(epoch)),
            Wire::Disconnect(epoch) => {
                self.streams.close(from, epoch);
                None
            }
            other => return Err(other),
        })
    }

    /// Publishes a new version at `at` (true time), pushed on every open stream.
    pub fn publish(&mut self, pct: u8, killed: bool, at: Time) -> (Flag, Vec<(NodeId, Wire)>) {
        let flag = self.history.publish(pct, killed, at);
        (flag, self.streams.iter().map(|(to, epoch)| (to, Wire::Push(flag, epoch))).collect())
    }

    /// The kill switch turned on or off at `at`: a new version if that changes it.
    pub fn kill(&mut self, killed: bool, pct: u8, at: Time) -> Option<(Flag, Vec<(NodeId, Wire)>)> {
        (self.history.latest().killed != killed).then(|| self.publish(pct, killed, at))
    }

    /// Every open stream's heartbeat.
    pub fn heartbeats(&self) -> Vec<(NodeId, Wire)> {
        let v = self.history.latest().version;
        self.streams.iter().map(|(to, epoch)| (to, Wire::Heartbeat(v, epoch))).collect()
    }

    /// Closes the streams of the nodes `pick` chooses; each hears it.
    pub fn close_where(&mut self, pick: impl Fn(NodeId) -> bool) -> Vec<(NodeId, Wire)> {
        self.streams.drop_where(pick).into_iter().map(|(to, epoch)| (to, Wire::Closed(epoch))).collect()
    }

    /// Its delivery is down until `until` (own clock): every stream is closed.
    pub fn down_until(&mut self, until: Time) -> Vec<(NodeId, Wire)> {
        self.down_until = until;
        self.close_where(|_| true)
    }

    /// A crash: the streams were in memory; the history is in the database.
    pub fn crash(&mut self) {
        self.streams.clear();
    }
}

/// The delivery's timers: a server's poll and watchdog ticks and its reconnect after the loss of a
/// stream's epoch; the service's heartbeat tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tick {
    Poll,
    Watchdog,
    Reconnect(u32),
    Heartbeat,
}

/// A scenario whose nodes carry the flag protocol: its message for a [`Wire`], its timer for a
/// [`Tick`]. The `hear`/`tick` methods below then drive both sides through the node's context
/// (counting `polls` answered and observing `propagation_us`, each server's delay per change).
pub trait Carrier: Node {
    fn wire(w: Wire) -> Self::Msg;
    fn tick(t: Tick) -> Self::Timer;
}

/// Sends each `(to, message)`.
pub fn send_all<N: Carrier>(msgs: Vec<(NodeId, Wire)>, ctx: &mut Ctx<N>) {
    msgs.into_iter().for_each(|(to, w)| ctx.send(to, N::wire(w)));
}

impl FlagService {
    /// At start (and after a restart): the heartbeat tick.
    pub fn start<N: Carrier>(&self, ctx: &mut Ctx<N>) {
        ctx.set_timer(HEARTBEAT_US, N::tick(Tick::Heartbeat));
    }
    /// A server's message, answered.
    pub fn hear<N: Carrier>(&mut self, from: NodeId, w: Wire, ctx: &mut Ctx<N>) {
        match self.on_wire(from, w, ctx.now()) {
            Ok(answer) => {
                ctx.count("polls", matches!(answer, Some(Wire::Polled(_))) as i64);
                answer.into_iter().for_each(|a| ctx.send(from, N::wire(a)));
            }
            Err(w) => ctx.unhandled(&N::wire(w)),
        }
    }
    /// Its heartbeat tick: a heartbeat on every open stream.
    pub fn tick<N: Carrier>(&mut self, t: Tick, ctx: &mut Ctx<N>) {
        if t != Tick::Heartbeat {
            return ctx.unhandled(&N::tick(t));
        }
        ctx.set_timer(HEARTBEAT_US, N::tick(Tick::Heartbeat));
        send_all(self.heartbeats(), ctx);
    }
}

/// What a server does after hearing from the service.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Heard {
    /// A message to send the service (a fresh connect).
    pub send: Option<Wire>,
    /// Reconnect after this long (a timer for [`Replica::epoch`]).
    pub reconnect_in: Option<Micros>,
    /// A newer flag was taken, this long after its publication (or the server's start).
    pub took_us: Option<Micros>,
}

/// A server's side: its copy of the flag and its stream from the service (node `service`).
#[derive(Clone, Debug)]
pub struct Replica {
    pub held: Held,
    stream: Stream,
    service: NodeId,
    /// The next poll tick, so a new interval takes effect at once.
    poll_timer: Option<TimerId>,
}

impl Replica {
    pub fn new(held: Held, service: NodeId) -> Replica {
        Replica { held, stream: Stream::default(), service, poll_timer: None }
    }
    pub fn phase(&self) -> Phase {
        self.stream.phase()
    }
    pub fn epoch(&self) -> u32 {
        self.stream.epoch()
    }

    /// Its stream's state, for a badge.
    pub fn badge(&self) -> (&'static str, Tone) {
        match self.stream.phase() {
            Phase::Off => ("polls", Tone::Neutral),
            Phase::Open { .. } => ("stream open", Tone::Good),
            Phase::Connecting { .. } | Phase::Waiting => ("reconnecting", Tone::Warn),
        }
    }

    /// A crash at `truth`: the flag and the stream were in memory.
    pub fn crash(&mut self, truth: Time) {
        *self = Replica::new(Held::new(Flag::DEFAULT, truth), self.service);
    }

    /// At start (and after a restart): polls at a random phase of `poll_us`, the watchdog, and
    /// a connect (`streams`) or — polling, without a flag yet — a poll at once.
    pub fn start<N: Carrier>(&mut self, streams: bool, poll_us: Micros, ctx: &mut Ctx<N>) {
        self.held.up_since = ctx.truth();
        self.repoll(poll_us, ctx);
        ctx.set_timer(MICROS_PER_S, N::tick(Tick::Watchdog));
        let send =
            if streams { Some(self.connect(ctx.now())) } else { (self.held.flag.version == 0).then_some(Wire::Poll) };
        self.act(Heard { send, ..Heard::default() }, ctx);
    }

    /// The service's message, acted on (`base_us`: the reconnect backoff's base).
    pub fn hear<N: Carrier>(&mut self, w: Wire, base_us: Micros, ctx: &mut Ctx<N>) {
        let (now, truth) = (ctx.now(), ctx.truth());
        match self.on_wire(w, now, truth, base_us, ctx.rng()) {
            Ok(heard) => self.act(heard, ctx),
            Err(w) => ctx.unhandled(&N::wire(w)),
        }
    }

    /// Its ticks: a poll unless it `streams` (every `poll_us`), the watchdog (every second), a reconnect.
    pub fn tick<N: Carrier>(&mut self, t: Tick, streams: bool, poll_us: Micros, base_us: Micros, ctx: &mut Ctx<N>) {
        let now = ctx.now();
        let heard = match t {
            Tick::Poll => {
                self.poll_timer = Some(ctx.set_timer(poll_us, N::tick(Tick::Poll)));
                Heard { send: (!streams).then_some(Wire::Poll), ..Heard::default() }
            }
            Tick::Watchdog => {
                ctx.set_timer(MICROS_PER_S, N::tick(Tick::Watchdog));
                Heard { reconnect_in: self.watchdog(now, base_us, ctx.rng()), ..Heard::default() }
            }
            Tick::Reconnect(epoch) => Heard { send: self.reconnect(epoch, now), ..Heard::default() },
            Tick::Heartbeat => return ctx.unhandled(&N::tick(t)),
        };
        self.act(heard, ctx);
    }

    /// The poll interval is now `poll_us`: the next poll at a random phase of it (a server
    /// that waited out the old interval would take up to that long to follow a shorter one).
    pub fn repoll<N: Carrier>(&mut self, poll_us: Micros, ctx: &mut Ctx<N>) {
        if let Some(t) = self.poll_timer.take() {
            ctx.cancel_timer(t);
        }
        let phase = ctx.rng().below(poll_us.max(1));
        self.poll_timer = Some(ctx.set_timer(phase, N::tick(Tick::Poll)));
    }

    /// The server switched to streaming (`streams`: connect, unless it is) or to polling (close
    /// the stream; the poll tick runs anyway).
    pub fn switch<N: Carrier>(&mut self, streams: bool, ctx: &mut Ctx<N>) {
        let send = match (streams, self.phase()) {
            (true, Phase::Off) => Some(self.connect(ctx.now())),
            (true, _) => None,
            (false, _) => self.stop(),
        };
        self.act(Heard { send, ..Heard::default() }, ctx);
    }

    fn act<N: Carrier>(&mut self, heard: Heard, ctx: &mut Ctx<N>) {
        heard.send.into_iter().for_each(|w| ctx.send(self.service, N::wire(w)));
        if let Some(wait) = heard.reconnect_in {
            ctx.set_timer(wait, N::tick(Tick::Reconnect(self.epoch())));
        }
        if let Some(took) = heard.took_us {
            ctx.observe("propagation_us", took);
        }
    }

    /// The service's message, at `now` (own clock) and `truth` (for the delay); `base_us` is the
    /// reconnect backoff's base. `Err`: a message a server never gets.
    pub fn on_wire(&mut self, w: Wire, now: Time, truth: Time, base_us: Micros, rng: &mut Rng) -> Result<Heard, Wire> {
        let mut h = Heard::default();
        match w {
            Wire::Polled(flag) => h.took_us = self.held.take(flag, truth),
            // Said on an older connection, or on one no longer wanted: ignored.
            Wire::Push(flag, epoch) if self.stream.heard(epoch, now) => h.took_us = self.held.take(flag, truth),
            Wire::Push(..) => {}
            Wire::Heartbeat(v, epoch) if self.stream.beat(epoch, v, self.held.flag.version, now) => {
                h.send = Some(self.connect(now))
            }
            Wire::Heartbeat(..) => {}
            Wire::Closed(epoch) => h.reconnect_in = self.stream.closed(epoch, base_us, rng),
            other => return Err(other),
        }
        Ok(h)
    }

    /// Opens the stream: the connect to send.
    pub fn connect(&mut self, now: Time) -> Wire {
        Wire::Connect(self.stream.connect(now))
    }
    /// Stops streaming: the disconnect to send, if a stream was open or being opened.
    pub fn stop(&mut self) -> Option<Wire> {
        self.stream.stop().map(Wire::Disconnect)
    }
    /// The watchdog's look: a wait before reconnecting, if the stream died.
    pub fn watchdog(&mut self, now: Time, base_us: Micros, rng: &mut Rng) -> Option<Micros> {
        self.stream.watchdog(now, base_us, rng)
    }
    /// A reconnect timer set for `epoch` fired: the connect to send, if it is still due.
    pub fn reconnect(&mut self, epoch: u32, now: Time) -> Option<Wire> {
        self.stream.due(epoch).then(|| self.connect(now))
    }
}

/// Random evaluation: the chance that a user with `k` answers at rollout `p` saw both features,
/// 1 − p^k − (1 − p)^k (0 for no answer).
pub fn flip_chance(p: f64, k: u32) -> f64 {
    if k == 0 {
        return 0.0;
    }
    1.0 - libm::pow(p, k as f64) - libm::pow(1.0 - p, k as f64)
}

/// The same over users whose answers are Poisson with mean `lambda`:
/// E[1 − p^K − (1−p)^K; K ≥ 1] = 1 − e^(−λ(1−p)) − e^(−λp) + e^(−λ).
pub fn flip_share_poisson(p: f64, lambda: f64) -> f64 {
    1.0 - libm::exp(-lambda * (1.0 - p)) - libm::exp(-lambda * p) + libm::exp(-lambda)
}

/// Polling every `interval_us` at a random phase, with `latency_us` for the answer's way back:
/// quantile `q` of the delay from a change to a server, q·I + L (the mean is I/2 + L).
pub fn polling_delay_quantile_us(q: f64, interval_us: Micros, latency_us: Micros) -> f64 {
    q * interval_us as f64 + latency_us as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const ON: Flag = Flag { version: 1, pct: 50, killed: false, published: Time::ZERO };

    fn answer(version: u32, eval: Eval, new: bool, request: u32) -> Answer {
        Answer { version, eval, new, request, server: 1, at: Time::from_ms(request as u64) }
    }

    #[test]
    fn sticky_buckets_expose_the_rollouts_share_of_users_within_binomial_noise() {
        // 20,000 users: the share in at p has standard deviation √(p(1−p)/n) ≤ 0.35%; 4σ.
        let n = 20_000u32;
        let mut rng = Rng::new(1);
        for salt in [1u64, 77, 0xdead_beef] {
            for pct in [1u8, 10, 30, 50, 90] {
                let flag = Flag { pct, ..ON };
                let on = (0..n).filter(|&u| Eval::Sticky.on(&flag, salt, u, &mut rng)).count() as f64 / n as f64;
                let (p, sd) = (pct as f64 / 100.0, (pct as f64 / 100.0 * (1.0 - pct as f64 / 100.0) / n as f64).sqrt());
                assert!((on - p).abs() < 4.0 * sd, "salt {salt} at {pct}%: {on}");
            }
        }
    }

    #[test]
    fn raising_the_percentage_only_adds_users_and_salts_pick_independent_users() {
        let (salt, mut rng) = (9, Rng::new(2));
        for u in 0..5_000 {
            let ons: Vec<bool> = (0..=100).map(|pct| Eval::Sticky.on(&Flag { pct, ..ON }, salt, u, &mut rng)).collect();
            assert!(ons.windows(2).all(|w| w[0] <= w[1]), "user {u} left as the rollout grew");
        }
        // Two flags at 50% under different salts share ~25% of users (independent), not 50%.
        let both = (0..20_000).filter(|&u| bucket(1, u) < 50 && bucket(2, u) < 50).count() as f64 / 20_000.0;
        assert!((both - 0.25).abs() < 4.0 * (0.25f64 * 0.75 / 20_000.0).sqrt(), "{both}");
    }

    #[test]
    fn a_coin_per_request_flips_a_user_with_chance_one_minus_p_to_the_k_minus_q_to_the_k() {
        // 20,000 users with k answers each; the flipped share within 4σ of the formula.
        let mut rng = Rng::new(3);
        for (pct, k) in [(50u8, 1u32), (50, 2), (50, 4), (10, 3), (10, 8), (90, 5)] {
            let flag = Flag { pct, ..ON };
            let mut a = Answers::new(20_000);
            for u in 0..20_000 {
                for r in 1..=k {
                    a.answered(u, answer(1, Eval::Random, Eval::Random.on(&flag, 5, u as u32, &mut rng), r));
                }
            }
            let share = a.flipped_users() as f64 / 20_000.0;
            let p = flip_chance(pct as f64 / 100.0, k);
            let sd = (p * (1.0 - p) / 20_000.0).sqrt().max(1e-4);
            assert!((share - p).abs() < 4.0 * sd, "{pct}% k={k}: {share} vs {p}");
        }
    }

    #[test]
    fn the_poisson_mixture_is_the_flip_chance_averaged_over_poisson_k() {
        for (p, lambda) in [(0.5, 5.0), (0.1, 5.0), (0.3, 0.7), (0.9, 12.0)] {
            let (mut sum, mut pk) = (0.0, libm::exp(-lambda));
            for k in 0..200u32 {
                sum += pk * flip_chance(p, k);
                pk *= lambda / (k + 1) as f64;
            }
            assert!((sum - flip_share_poisson(p, lambda)).abs() < 1e-12, "{p} {lambda}");
        }
        assert!((flip_share_poisson(0.5, 5.0) - 0.8426).abs() < 1e-4);
    }

    #[test]
    fn answers_tell_flips_under_one_version_from_changes_and_from_servers_behind() {
        let mut a = Answers::new(2);
        assert_eq!(a.answered(0, answer(1, Eval::Random, true, 1)), Turn::Fine);
        let flip = a.answered(0, answer(1, Eval::Random, false, 2));
        assert_eq!(flip, Turn::Flip { before: answer(1, Eval::Random, true, 1), first: true });
        assert!(matches!(a.answered(0, answer(1, Eval::Random, true, 3)), Turn::Flip { first: false, .. }));
        assert_eq!(a.flipped_users(), 1);
        // A newer version may change the answer (the kill switch); another rule is not compared.
        assert_eq!(a.answered(0, answer(2, Eval::Random, false, 4)), Turn::Fine);
        assert_eq!(a.answered(0, answer(2, Eval::Sticky, true, 5)), Turn::Fine);
        // An older version's other answer: a server behind the latest change.
        assert!(matches!(a.answered(0, answer(1, Eval::Sticky, false, 6)), Turn::Back { .. }));
        assert_eq!((a.flipped(0), a.flipped(1), a.on_of_seen()), (true, false, (0, 1)));
        let (user, before, after) = a.latest().expect("a flip-flop");
        assert_eq!((user, before.request, after.request, a.request(1), a.request(1), a.users()), (0, 2, 3, 1, 2, 2));
    }

    #[test]
    fn a_server_falls_behind_at_the_next_version_or_when_it_came_up() {
        let mut h = History::default();
        assert_eq!(h.latest(), Flag::DEFAULT);
        h.publish(50, false, Time::ZERO);
        let v2 = h.publish(50, true, Time::from_secs(20));
        assert_eq!((v2.version, h.latest().describe()), (2, "v2 (killed)".to_string()));
        assert_eq!(h.behind(2, Time::ZERO), None);
        assert_eq!(h.behind(1, Time::ZERO), Some((v2, Time::from_secs(20))));
        assert_eq!(h.behind(0, Time::from_secs(30)).map(|(f, t)| (f.version, t)), Some((1, Time::from_secs(30))));
    }

    #[test]
    fn servers_are_judged_late_past_the_bound_beyond_what_a_p99_allows() {
        let mut h = History::default();
        let v1 = h.publish(50, false, Time::ZERO);
        let mut servers: Vec<Held> = (0..100).map(|_| Held::new(v1, Time::ZERO)).collect();
        let v2 = h.publish(50, true, Time::from_secs(20));
        let at = |ms| Time::from_secs(20).plus(ms * 1_000);
        // 99 take v2 after 0..99 ms; one never does.
        for (i, s) in servers.iter_mut().enumerate().take(99) {
            assert_eq!(s.take(v2, at(i as u64)), Some(i as u64 * 1_000));
            assert_eq!(s.take(v2, at(200)), None, "not newer");
        }
        let judge = |servers: &[Held], now| h.late(servers.iter().copied().enumerate(), now, 500_000);
        assert_eq!(judge(&servers, at(600)), None, "one of 100 may be late");
        assert_eq!(h.latest_p99(servers.iter().copied(), at(600)), (Some(98_000), 1));
        servers[0] = Held::new(Flag::DEFAULT, at(50));
        let l = judge(&servers, at(551)).expect("two late");
        assert_eq!((l.late, l.of, l.first, l.next.version, l.behind_us), (2, 100, 0, 1, 501_000));
        let why = l.why(|&i| (format!("server {i}"), servers[i].flag));
        assert_eq!(
            why,
            "2 of 100 servers are over 500 ms behind (a p99 over 100 allows 1): server 0 still serves no flag \
             (default: off), 501 ms after v1 (50%) was published"
        );
    }

    #[test]
    fn a_p99_over_fewer_than_100_servers_is_their_slowest() {
        assert_eq!([1, 32, 99, 100, 200, 1000].map(allowed_late), [0, 0, 0, 1, 2, 10]);
        let mut d: Vec<Micros> = (1..=100).rev().collect();
        assert_eq!(p99(&mut d), Some(99));
        assert_eq!(p99(&mut [7, 3]), Some(7));
        assert_eq!(p99(&mut []), None);
    }

    #[test]
    fn a_stream_opens_reconnects_with_growing_jittered_waits_and_ignores_old_connections() {
        let (mut s, mut rng, base) = (Stream::default(), Rng::new(4), 100_000);
        let e1 = s.connect(Time::ZERO);
        assert!(s.heard(e1, Time::from_ms(80)));
        assert_eq!(s.phase(), Phase::Open { heard: Time::from_ms(80) });
        // Silent past the read timeout: dead, a first wait of at most the base.
        assert_eq!(s.watchdog(Time::from_secs(3), base, &mut rng), None);
        let w = s.watchdog(Time::from_ms(3_081), base, &mut rng).expect("dead");
        assert!(w <= base && s.due(e1) && !s.heard(e1, Time::from_secs(4)));
        // Refused again and again: the waits grow to the cap, never past it.
        let mut caps = Vec::new();
        for _ in 0..12 {
            let e = s.connect(Time::ZERO);
            caps.push(s.closed(e, base, &mut rng).expect("refused"));
        }
        assert!(caps.iter().all(|&w| w <= RECONNECT_CAP_US) && caps[8..].iter().any(|&w| w > 10 * base), "{caps:?}");
        // An answer on the latest attempt opens it and resets the backoff; an old epoch's close is ignored.
        let e = s.connect(Time::ZERO);
        assert!(s.heard(e, Time::ZERO) && s.closed(e - 1, base, &mut rng).is_none());
        // Heartbeats ahead of the server's version: a push lost only if two in a row say so.
        assert!(!s.beat(e, 4, 3, Time::ZERO) && !s.beat(e, 4, 4, Time::ZERO) && !s.beat(e, 5, 4, Time::ZERO));
        assert!(s.beat(e, 5, 4, Time::from_secs(1)) && !s.beat(e - 1, 5, 4, Time::from_secs(1)));
        assert!(s.closed(e, base, &mut rng).expect("closed") <= base);
        // An attempt with no answer is given up after the connect timeout.
        let e = s.connect(Time::ZERO);
        assert!(s.watchdog(Time::from_secs(2), base, &mut rng).is_none());
        assert!(s.watchdog(Time::from_ms(2_001), base, &mut rng).is_some() && s.due(e));
        assert_eq!(s.stop(), None, "waiting: nothing to tell the service");
        let e = s.connect(Time::ZERO);
        assert_eq!((s.stop(), s.phase()), (Some(e), Phase::Off));
    }

    #[test]
    fn the_services_streams_are_kept_by_epoch() {
        let mut t = Streams::default();
        t.open(3, 1);
        t.open(5, 2);
        t.close(3, 9);
        assert_eq!(t.iter().collect::<Vec<_>>(), [(3, 1), (5, 2)]);
        t.close(3, 1);
        t.open(7, 1);
        assert_eq!((t.drop_where(|n| n > 5), t.count()), (vec![(7, 1)], 1));
        t.clear();
        assert_eq!(t.count(), 0);
    }

    #[test]
    fn the_service_and_a_replica_talk_polls_and_streams() {
        let (mut svc, mut rng, t) = (FlagService::default(), Rng::new(6), Time::from_secs);
        let (v1, pushes) = svc.publish(50, false, Time::ZERO);
        let mut r = Replica::new(Held::new(Flag::DEFAULT, Time::ZERO), 0);
        assert!(pushes.is_empty());
        // A poll is answered with the latest flag, which the replica takes.
        let answer = svc.on_wire(3, Wire::Poll, t(1)).expect("a service's message");
        assert_eq!(answer, Some(Wire::Polled(v1)));
        assert_eq!(r.on_wire(answer.unwrap(), t(1), t(1), 100_000, &mut rng).unwrap().took_us, Some(MICROS_PER_S));
        // A stream: connect, the whole state, then each change pushed, heartbeats while open.
        let connect = r.connect(t(2));
        let Some(Wire::Push(f, e)) = svc.on_wire(3, connect, t(2)).unwrap() else { panic!("the whole state") };
        assert_eq!(r.on_wire(Wire::Push(f, e), t(2), t(2), 100_000, &mut rng).unwrap(), Heard::default());
        assert!(svc.kill(false, 50, t(3)).is_none(), "not killed: nothing to publish");
        let (v2, pushes) = svc.kill(true, 50, t(3)).expect("a new version");
        assert_eq!((pushes, svc.heartbeats()), (vec![(3, Wire::Push(v2, e))], vec![(3, Wire::Heartbeat(2, e))]));
        let heard = r.on_wire(Wire::Push(v2, e), t(3), t(3).plus(80_000), 100_000, &mut rng).unwrap();
        assert_eq!((heard.took_us, r.held.flag.killed), (Some(80_000), true));
        // Down: streams closed (the replica waits, then reconnects), polls unanswered, connects refused.
        let closed = svc.down_until(t(10));
        assert_eq!((closed, svc.streams(), svc.is_down(t(9))), (vec![(3, Wire::Closed(e))], 0, true));
        let wait = r.on_wire(Wire::Closed(e), t(4), t(4), 100_000, &mut rng).unwrap().reconnect_in.expect("a wait");
        assert!(wait <= 100_000 && r.reconnect(e + 1, t(5)).is_none());
        let again = r.reconnect(e, t(5)).expect("due");
        assert_eq!(svc.on_wire(3, again, t(5)).unwrap(), Some(Wire::Closed(e + 1)));
        assert_eq!((svc.on_wire(3, Wire::Poll, t(5)).unwrap(), svc.polls()), (None, 1));
        // Back up: a connect is answered; a switch to polling disconnects; a crash forgets the flag.
        assert!(matches!(svc.on_wire(3, r.connect(t(11)), t(11)).unwrap(), Some(Wire::Push(f, _)) if f == v2));
        assert_eq!(svc.streams(), 1);
        let bye = r.stop().expect("was connecting");
        assert_eq!((svc.on_wire(3, bye, t(12)).unwrap(), svc.streams()), (None, 0));
        assert_eq!(svc.on_wire(3, Wire::Closed(1), t(12)), Err(Wire::Closed(1)));
        assert_eq!(r.on_wire(Wire::Poll, t(12), t(12), 1, &mut rng), Err(Wire::Poll));
        r.crash(t(13));
        assert_eq!((r.held.flag, r.held.up_since, r.badge()), (Flag::DEFAULT, t(13), ("polls", Tone::Neutral)));
        assert_eq!((r.held.flag.tone(), v1.tone(), v2.tone()), (Tone::Warn, Tone::Good, Tone::Warn));
    }

    #[test]
    fn killed_and_missing_flags_serve_the_old_feature() {
        let mut rng = Rng::new(5);
        let full = Flag { pct: 100, ..ON };
        assert!(Eval::Random.on(&full, 1, 1, &mut rng) && Eval::Sticky.on(&full, 1, 1, &mut rng));
        for f in [Flag { killed: true, ..full }, Flag { version: 0, ..full }] {
            assert!(!Eval::Random.on(&f, 1, 1, &mut rng) && !Eval::Sticky.on(&f, 1, 1, &mut rng));
        }
        assert_eq!(polling_delay_quantile_us(0.99, 15_000_000, 1_000), 14_851_000.0);
    }
}
