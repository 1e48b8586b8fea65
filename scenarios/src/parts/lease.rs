//! Leases counted from the ask with a safety margin (the holder) and a lease table with fencing tokens (the grantor).
//!
//! The holder's side ([`Lease`]): ask (`ask(now)`, which numbers the ask), and on the grant
//! count the lease from the ask, on the holder's own clock: `expires = asked_at + duration −
//! margin`. The grantor started its lease no earlier than the ask reached it, so however slow
//! the request and the answer were, the holder's lease ends first — as long as the holder's
//! clock does not run slower than the margin allows ([`Margin`]). That is what leader leases
//! in Chubby and Raft's lease reads rely on.
//!
//! The grantor's side ([`LeaseTable`]): per resource, who holds it and until when (on the
//! grantor's clock), with a fencing token that grows on every new grant. Storage that refuses a
//! write carrying a token older than one it has seen stays safe even when a holder's belief is
//! wrong (a GC pause, a clock running slower than the margin covers) — Kleppmann, "How to do
//! distributed locking" (2016).
//!
//! A [`Quota`] is a holder's lease on a batch of tokens rather than on a resource: quota
//! leasing, where each holder spends its batch locally instead of asking the grantor on every
//! request.
//!
//! A [`QuorumLease`] is a holder's lease on a majority of independent grantors (Redlock): the
//! same ask to all, held once more than half granted it, counted from the ask as a [`Lease`]
//! is. Two majorities share a grantor, so while clocks keep within the margin and nobody
//! pauses, two holders never both hold; its grantors' tokens are not comparable with each
//! other, so it gives storage nothing to fence with. A [`Fence`] is the protected resource's
//! side: the highest token per key, and which writes came after their lock had passed on.

use faultline_core::{Micros, Time};
use std::collections::BTreeMap;

/// How much earlier than the grantor the holder gives its lease up: a drift bound plus a fixed
/// amount. `drift_ppm` bounds how much slower the holder's clock may run than the grantor's (if
/// both drift, that is twice one clock's bound); `fixed_us` covers what the drift does not (a
/// pause between checking the lease and acting on it, clock reading granularity).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Margin {
    pub drift_ppm: u32,
    pub fixed_us: Micros,
}

impl Margin {
    /// No margin at all: safe only with perfect clocks.
    pub const NONE: Margin = Margin { drift_ppm: 0, fixed_us: 0 };

    pub const fn new(drift_ppm: u32, fixed_us: Micros) -> Margin {
        Margin { drift_ppm, fixed_us }
    }

    /// The margin for a lease of `duration_us`: `⌈duration × drift_ppm / 10⁶⌉ + fixed_us`.
    /// Rounded up, so a clock exactly at the drift bound still gives up in time.
    pub fn for_lease(&self, duration_us: Micros) -> Micros {
        let drift = (duration_us as u128 * self.drift_ppm as u128).div_ceil(1_000_000);
        (drift.min(u64::MAX as u128) as u64).saturating_add(self.fixed_us)
    }
}

impl Default for Margin {
    /// 200 ppm of drift (TrueTime's assumed bound for a disciplined clock, Corbett et al.,
    /// "Spanner", 2012) and 1 ms fixed.
    fn default() -> Margin {
        Margin::new(200, 1_000)
    }
}

/// A lease as its holder believes it, on the holder's own clock. Plain data: keep it in the
/// node, drop it on a crash (a restarted node holds nothing).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Lease {
    pub margin: Margin,
    /// The ask awaiting an answer: its number and when (local clock) it was made.
    pending: Option<(u64, Time)>,
    asks: u64,
    /// What is held: the fencing token and the local instant the lease ends (exclusive).
    held: Option<(u64, Time)>,
}

impl Lease {
    pub fn new(margin: Margin) -> Lease {
        Lease { margin, ..Lease::default() }
    }

    /// Records an ask (or a renewal) made at `now` on the holder's clock and returns its
    /// number, for the request and the grant to carry: only the grant of the latest ask is
    /// taken, since counting an older ask's grant from a newer ask would stretch it past the
    /// grantor's. What is held stays held until the answer.
    pub fn ask(&mut self, now: Time) -> u64 {
        self.asks += 1;
        self.pending = Some((self.asks, now));
        self.asks
    }

    /// Whether an ask is awaiting its answer.
    pub fn asking(&self) -> bool {
        self.pending.is_some()
    }

    /// The grantor granted ask `ask` for `duration_us` with fencing `token`; `now` is the
    /// holder's clock. Returns whether the holder now holds a lease: false if this answers
    /// an older ask (or a duplicate), or if the lease, counted from the ask, is already over.
    pub fn granted(&mut self, ask: u64, token: u64, duration_us: Micros, now: Time) -> bool {
        match self.pending {
            Some((n, asked_at)) if n == ask => {
                self.pending = None;
                let expires = asked_at.plus(duration_us.saturating_sub(self.margin.for_lease(duration_us)));
                if now < expires {
                    self.held = Some((token, expires));
                    true
                } else {
                    self.held = None;
                    false
                }
            }
            _ => false,
        }
    }

    /// The grantor refused ask `ask` (someone else holds it, or a renewal came too late):
    /// what was held is given up. An answer to an older ask is ignored.
    pub fn denied(&mut self, ask: u64) {
        if self.pending.is_some_and(|(n, _)| n == ask) {
            self.pending = None;
            self.held = None;
        }
    }

    /// Whether the lease is held at `now` (holder's clock): true until `expires`, exclusive.
    pub fn valid(&self, now: Time) -> bool {
        self.held.is_some_and(|(_, until)| now < until)
    }

    /// The fencing token of the lease held at `now`, to put on every write.
    pub fn token(&self, now: Time) -> Option<u64> {
        self.held.filter(|&(_, until)| now < until).map(|(token, _)| token)
    }

    /// When the lease ends on the holder's clock, if one was granted (valid or not).
    pub fn expires(&self) -> Option<Time> {
        self.held.map(|(_, until)| until)
    }

    /// How long the lease has left at `now`: a step-down timer's delay (0 when not held).
    pub fn remaining(&self, now: Time) -> Micros {
        self.held.map_or(0, |(_, until)| until.since(now))
    }

    /// Gives the lease up (and ignores the answer to any ask under way).
    pub fn release(&mut self) {
        self.held = None;
        self.pending = None;
    }
}

/// A lease on a batch of tokens (quota leasing, as Google's Doorman hands out capacity): the
/// holder spends them locally, asking nobody, until they run out or the lease ends. A grantor
/// that grants at most what its limit has left for the lease's period keeps any number of
/// holders within the limit together (the tests); the price is the tokens a holder leased
/// and never spent while others were refused, and the wait while a lease is asked for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Quota {
    lease: Lease,
    tokens: u64,
    /// The grantor had none left for this lease: refuse until it ends.
    dry: bool,
}

impl Quota {
    pub fn new(margin: Margin) -> Quota {
        Quota { lease: Lease::new(margin), ..Quota::default() }
    }

    /// Decides a request at `now` from what is held: `Some(true)` spends a token,
    /// `Some(false)` refuses (the grantor had none left for this lease), `None` means no lease
    /// holds or its tokens are spent: ask for another ([`Quota::ask`]) and wait.
    pub fn spend(&mut self, now: Time) -> Option<bool> {
        (self.lease.valid(now) && (self.tokens > 0 || self.dry)).then(|| self.take())
    }

    /// Numbers a new ask made at `now`, unless one is under way already.
    pub fn ask(&mut self, now: Time) -> Option<u64> {
        (!self.lease.asking()).then(|| self.lease.ask(now))
    }

    /// The grantor granted `tokens` for `duration_us` to ask `ask`: they replace what was
    /// held, counted from the ask as a [`Lease`] is. Returns whether they are held: a lease
    /// that ran out on the way holds nothing (its tokens are wasted, as a real lease's would
    /// be); an answer to an older ask changes nothing.
    pub fn granted(&mut self, ask: u64, tokens: u64, duration_us: Micros, now: Time) -> bool {
        let asking = self.lease.asking();
        let held = self.lease.granted(ask, 0, duration_us, now);
        if held || (asking && !self.lease.asking()) {
            (self.tokens, self.dry) = (if held { tokens } else { 0 }, held && tokens == 0);
        }
        held
    }

    /// The ask went unanswered: what was held is given up.
    pub fn denied(&mut self, ask: u64) {
        self.lease.denied(ask);
    }

    /// Hands out one token of those held, if any (to a request that waited for the grant).
    pub fn take(&mut self) -> bool {
        let ok = self.tokens > 0;
        self.tokens -= ok as u64;
        ok
    }

    /// Tokens held and not yet spent.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }
}

/// Who holds one resource (on the grantor's clock).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Grant<H> {
    pub holder: H,
    pub token: u64,
    /// The lease ends here, exclusive: at `expires` it is free.
    pub expires: Time,
}

/// What an acquire got.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Acquired<H> {
    /// A new lease with a new, higher token. `vacant_since`: when the resource became free
    /// (the previous lease expired or was released), `None` on its first grant — for
    /// "time without a leader" metrics.
    New { token: u64, expires: Time, vacant_since: Option<Time> },
    /// The holder asked again while holding: same token, expiry pushed out.
    Extended { token: u64, expires: Time },
    /// Someone else holds it until `expires`.
    Busy { holder: H, expires: Time },
}

impl<H> Acquired<H> {
    /// The token granted, or `None` if busy.
    pub fn token(&self) -> Option<u64> {
        match self {
            Acquired::New { token, .. } | Acquired::Extended { token, .. } => Some(*token),
            Acquired::Busy { .. } => None,
        }
    }
}

/// The grantor's lease table: per resource (any `Ord + Clone` key: `()` for a single lock),
/// the current grant. Tokens come from one counter for the whole table, so they strictly
/// increase per resource and across resources (like ZooKeeper's zxid). A lock service that
/// survives crashes keeps the table (its tokens must never go back).
#[derive(Clone, Debug)]
pub struct LeaseTable<R, H> {
    /// Per resource: its grant, or when it was released.
    leases: BTreeMap<R, Slot<H>>,
    last_token: u64,
}

#[derive(Clone, Debug)]
enum Slot<H> {
    Held(Grant<H>),
    /// Released early, at this instant.
    Released(Time),
}

impl<R, H> Default for LeaseTable<R, H> {
    fn default() -> Self {
        LeaseTable { leases: BTreeMap::new(), last_token: 0 }
    }
}

impl<R: Ord + Clone, H: Clone + PartialEq> LeaseTable<R, H> {
    pub fn new() -> Self {
        Self::default()
    }

    /// `who` asks for `resource` at `now` (grantor's clock) for `duration_us`. Free or
    /// expired: a new grant with the next token. Already `who`'s: extended, same token.
    pub fn acquire(&mut self, resource: R, who: H, now: Time, duration_us: Micros) -> Acquired<H> {
        let expires = now.plus(duration_us);
        let vacant_since = match self.leases.get_mut(&resource) {
            Some(Slot::Held(g)) if now < g.expires => {
                if g.holder != who {
                    return Acquired::Busy { holder: g.holder.clone(), expires: g.expires };
                }
                g.expires = g.expires.max(expires);
                return Acquired::Extended { token: g.token, expires: g.expires };
            }
            Some(Slot::Held(g)) => Some(g.expires),
            Some(Slot::Released(at)) => Some(*at),
            None => None,
        };
        self.last_token += 1;
        let token = self.last_token;
        self.leases.insert(resource, Slot::Held(Grant { holder: who, token, expires }));
        Acquired::New { token, expires, vacant_since }
    }

    /// `who` renews the lease with `token` at `now`: extended to `now + duration_us` and the
    /// new expiry returned, if it is still theirs with that token and not expired; `None`
    /// otherwise (answer "denied": the holder lost it).
    pub fn renew(&mut self, resource: &R, who: &H, token: u64, now: Time, duration_us: Micros) -> Option<Time> {
        match self.leases.get_mut(resource) {
            Some(Slot::Held(g)) if g.holder == *who && g.token == token && now < g.expires => {
                g.expires = g.expires.max(now.plus(duration_us));
                Some(g.expires)
            }
            _ => None,
        }
    }

    /// `who` gives up the lease with `token` at `now`; returns whether it was theirs.
    pub fn release(&mut self, resource: &R, who: &H, token: u64, now: Time) -> bool {
        let Some(slot) = self.leases.get_mut(resource) else { return false };
        let mine = matches!(slot, Slot::Held(g) if g.holder == *who && g.token == token && now < g.expires);
        if mine {
            *slot = Slot::Released(now);
        }
        mine
    }

    /// The grant in force at `now`, if any.
    pub fn holder(&self, resource: &R, now: Time) -> Option<&Grant<H>> {
        match self.leases.get(resource) {
            Some(Slot::Held(g)) if now < g.expires => Some(g),
            _ => None,
        }
    }

    /// The latest token handed out (0 before the first grant).
    pub fn last_token(&self) -> u64 {
        self.last_token
    }

    /// Forgets every grant but not the token counter: a lock server restarted without its
    /// keys (Redis without persistence) — whoever held a lease no longer does there.
    pub fn forget_grants(&mut self) {
        self.leases.clear();
    }
}

/// A protected resource's side of locking, per key (0..keys): the highest fencing token of a
/// write accepted, and the newest lock (when it was got, by whom) a write was accepted under.
/// [`Fence::write`] refuses an older token when fencing, and tells a write whose lock had
/// passed to another holder that wrote first — a god's-eye judgement, for checks.
#[derive(Clone, Debug)]
pub struct Fence<H> {
    highest: Vec<u64>,
    newest: Vec<Option<(Time, H)>>,
}

/// What became of a write under a lock.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fenced<H> {
    Accepted,
    /// Accepted, though `newer` wrote first under a lock got after this writer's.
    Stale {
        newer: H,
    },
    /// Refused: its token is older than `highest`.
    Refused {
        highest: u64,
    },
}

impl<H: Clone + PartialEq> Fence<H> {
    pub fn new(keys: usize) -> Fence<H> {
        Fence { highest: vec![0; keys], newest: vec![None; keys] }
    }

    /// `who` writes `key` with `token` under a lock it got at `got_at`; `fencing`: refuse an
    /// older token than one accepted.
    pub fn write(&mut self, key: usize, who: H, token: u64, got_at: Time, fencing: bool) -> Fenced<H> {
        if fencing && token < self.highest[key] {
            return Fenced::Refused { highest: self.highest[key] };
        }
        self.highest[key] = self.highest[key].max(token);
        match &self.newest[key] {
            Some((at, newer)) if got_at < *at && *newer != who => Fenced::Stale { newer: newer.clone() },
            _ => {
                self.newest[key] = Some((got_at, who));
                Fenced::Accepted
            }
        }
    }

    /// The highest token accepted on `key`.
    pub fn highest(&self, key: usize) -> u64 {
        self.highest[key]
    }
}

/// A lease on a majority of `n` grantors (at most 32), asked of all at once: see the module's
/// note. Keeps each grantor's token, to renew and release with.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumLease {
    lease: Lease,
    /// The current ask, and which grantors granted or refused it (bit i: grantor i).
    ask: u64,
    granted: u32,
    denied: u32,
    /// Per grantor, the token of its latest grant to us (0: none).
    tokens: Vec<u64>,
}

impl QuorumLease {
    pub fn new(margin: Margin, n: usize) -> QuorumLease {
        assert!((1..=32).contains(&n), "1 to 32 grantors");
        QuorumLease { lease: Lease::new(margin), tokens: vec![0; n], ..QuorumLease::default() }
    }

    /// How many grants make a majority: ⌊n/2⌋ + 1.
    pub fn majority(&self) -> u32 {
        self.tokens.len() as u32 / 2 + 1
    }

    /// An ask (or a renewal) of every grantor at `now`, holder's clock: its number. What is
    /// held stays held until a majority answers.
    pub fn ask(&mut self, now: Time) -> u64 {
        (self.granted, self.denied) = (0, 0);
        self.ask = self.lease.ask(now);
        self.ask
    }

    /// Grantor `from` granted ask `ask` for `duration_us` with `token`. Returns whether this
    /// grant made the majority and the lease, counted from the ask, holds.
    /// An answer from a grantor this lease does not ask (one asked before the lease was made
    /// anew for fewer grantors: a strategy switched mid-run) is ignored.
    pub fn granted(&mut self, ask: u64, from: usize, token: u64, duration_us: Micros, now: Time) -> bool {
        if ask != self.ask || from >= self.tokens.len() || self.granted & (1 << from) != 0 {
            return false;
        }
        self.tokens[from] = token;
        self.granted |= 1 << from;
        self.granted.count_ones() == self.majority() && self.lease.granted(ask, 0, duration_us, now)
    }

    /// Grantor `from` refused ask `ask`: once a majority can no longer grant it, what was held
    /// is given up.
    pub fn denied(&mut self, ask: u64, from: usize) {
        if ask == self.ask && from < self.tokens.len() {
            self.denied |= 1 << from;
            if self.denied.count_ones() > self.tokens.len() as u32 - self.majority() {
                self.lease.denied(ask);
            }
        }
    }

    /// Whether the lease is held at `now` (holder's clock).
    pub fn valid(&self, now: Time) -> bool {
        self.lease.valid(now)
    }

    /// Whether the current ask still awaits a majority's answer.
    pub fn asking(&self) -> bool {
        self.lease.asking()
    }

    /// Each grantor's latest token to us (0: none): what a renewal or a release names.
    pub fn tokens(&self) -> &[u64] {
        &self.tokens
    }

    /// Gives everything up (the grantors are told by the caller, with `tokens`).
    pub fn release(&mut self) {
        self.lease.release();
        (self.granted, self.denied) = (0, 0);
        self.tokens.iter_mut().for_each(|t| *t = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_core::Rng;

    /// A node's clock as the kernel computes it (core/src/sim.rs, `NodeClock::local`): true
    /// time plus a skew plus `since × ppm / 10⁶`, truncated toward zero.
    fn local(t: u64, skew: i64, ppm: i64) -> Time {
        Time((t as i128 + skew as i128 + t as i128 * ppm as i128 / 1_000_000) as u64)
    }

    /// The last true instant at which a holder with this clock believes it holds the lease
    /// (`None` if never after `from`). Local time is monotone in true time, so bisect.
    fn last_believed(lease: &Lease, from: u64, skew: i64, ppm: i64) -> Option<u64> {
        if !lease.valid(local(from, skew, ppm)) {
            return None;
        }
        let (mut lo, mut hi) = (from, from + 1);
        while lease.valid(local(hi, skew, ppm)) {
            hi = from + (hi - from) * 2;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if lease.valid(local(mid, skew, ppm)) {
                lo = mid
            } else {
                hi = mid
            }
        }
        Some(lo)
    }

    /// Runs one ask (at true time `asked`) → grant → answer, with the grantor's clock as true
    /// time, and returns (the holder's last believing instant, the grantor's expiry), both in
    /// true time.
    fn one_lease(asked: u64, margin: Margin, duration: Micros, clock: (i64, i64), delays: (u64, u64)) -> (u64, u64) {
        let (ppm, skew) = clock;
        let (to_grantor, back) = delays;
        let mut lease = Lease::new(margin);
        let ask = lease.ask(local(asked, skew, ppm));
        let mut table: LeaseTable<(), u32> = LeaseTable::new();
        let granted_at = asked + to_grantor;
        let got = table.acquire((), 1, Time(granted_at), duration);
        let Acquired::New { token, expires, .. } = got else { panic!("{got:?}") };
        let answered = granted_at + back;
        lease.granted(ask, token, duration, local(answered, skew, ppm));
        let last = last_believed(&lease, answered, skew, ppm).unwrap_or(0);
        (last, expires.micros())
    }

    #[test]
    fn a_holder_gives_up_before_the_grantor_under_the_drift_bound() {
        // Theory: the holder believes while its clock shows less than asked + D − m, i.e. for
        // (D − m)/(1 + ρ) of true time after the ask; the grantor's lease runs D after the
        // grant, itself after the ask. So the holder is safe iff (D − m)/(1 + ρ) ≤ D, i.e.
        // m ≥ −ρ·D: the margin must cover a clock running slow by ρ over the lease. Swept
        // exhaustively (deterministic), exact: not one believing instant at or past the
        // grantor's expiry.
        // Two ask times: the kernel's clock truncates, and whether that hides a margin rounded
        // the wrong way depends on where within a microsecond the drift has got to.
        let bound = 500; // ppm
        let durations = [1_000, 100_001, 3_000_000, 60_000_000];
        for (asked, duration) in [7_000_003, 7_001_999].into_iter().flat_map(|a| durations.map(|d| (a, d))) {
            for fixed in [0, 5_000] {
                let margin = Margin::new(bound, fixed);
                for ppm in (-(bound as i64)..=bound as i64).step_by(50).chain([-499, -1, 1]) {
                    for skew in [0, -3_000_000, 12_345_678] {
                        for to_grantor in [0, 1, 999, 40_000, 2_000_000] {
                            for back in [0, 1, 40_000, 2_000_000] {
                                let (last, grantor) =
                                    one_lease(asked, margin, duration, (ppm, skew), (to_grantor, back));
                                assert!(
                                    last < grantor,
                                    "asked {asked} D={duration} fixed={fixed} ppm={ppm} skew={skew} \
                                     delays {to_grantor}+{back}: \
                                     believed until {last}, grantor's lease ended at {grantor}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn the_margin_is_tight_and_needed() {
        // At the drift bound with instant messages the holder gives up within rounding of the
        // fixed margin before the grantor: the margin asks for no more than it needs.
        const A: u64 = 7_000_003;
        let d = 3_000_000;
        let (last, grantor) = one_lease(A, Margin::new(500, 0), d, (-500, 0), (0, 0));
        assert!(grantor - last <= 2, "gave up {} µs early", grantor - last);
        // A fixed margin is local time: on a clock 500 ppm slow, 5,000 µs last 5,002.5 µs.
        let (last, grantor) = one_lease(A, Margin::new(500, 5_000), d, (-500, 0), (0, 0));
        assert!((5_002..=5_004).contains(&(grantor - last)), "gave up {} µs early", grantor - last);
        // Without a drift margin a clock running 100 ppm slow overstays by D × 10⁻⁴ = 300 µs
        // (minus rounding): the sweep above would catch a margin that forgot the drift.
        let (last, grantor) = one_lease(A, Margin::NONE, d, (-100, 0), (0, 0));
        assert!((298..=301).contains(&(last + 1 - grantor)), "overstayed {} µs", last + 1 - grantor);
    }

    #[test]
    fn only_the_latest_ask_is_answered() {
        let mut lease = Lease::new(Margin::NONE);
        let first = lease.ask(Time(1_000));
        let second = lease.ask(Time(5_000));
        // The first ask's grant, late: counted from the second ask it would outlive the
        // grantor's (granted before the second ask was sent).
        assert!(!lease.granted(first, 1, 10_000, Time(6_000)));
        assert!(!lease.valid(Time(6_000)) && lease.asking());
        assert!(lease.granted(second, 1, 10_000, Time(6_000)));
        assert_eq!(
            (lease.expires(), lease.token(Time(14_999)), lease.token(Time(15_000))),
            (Some(Time(15_000)), Some(1), None)
        );
        assert_eq!(lease.remaining(Time(9_000)), 6_000);
        assert!(!lease.granted(second, 1, 10_000, Time(6_000)), "a duplicate grant is ignored");
        // A renewal keeps the lease until its answer; a denial drops it.
        let renew = lease.ask(Time(12_000));
        assert!(lease.valid(Time(13_000)));
        lease.denied(renew);
        assert!(!lease.valid(Time(13_000)));
        // A grant that arrives after the lease it grants is over is not a lease.
        let late = lease.ask(Time(20_000));
        assert!(!lease.granted(late, 2, 10_000, Time(30_000)));
        assert!(!lease.valid(Time(30_000)));
    }

    #[test]
    fn tokens_strictly_increase_and_renewals_keep_them() {
        // Random contention over three resources and four holders, with a model of who holds
        // what: exact expectations on every answer.
        let mut rng = Rng::new(18);
        let mut table: LeaseTable<u8, u32> = LeaseTable::new();
        let mut last_new = 0;
        let mut model: BTreeMap<u8, (u32, u64, Time)> = BTreeMap::new();
        let mut now = Time(0);
        for _ in 0..20_000 {
            now = now.plus(rng.range(0, 400));
            let (r, who, d) = (rng.below(3) as u8, rng.below(4) as u32, rng.range(100, 2_000));
            let live = model.get(&r).filter(|m| now < m.2).copied();
            match rng.below(3) {
                0 => match (table.acquire(r, who, now, d), live) {
                    (Acquired::New { token, expires, .. }, None) => {
                        assert!(token > last_new, "token {token} after {last_new}");
                        last_new = token;
                        model.insert(r, (who, token, expires));
                    }
                    (Acquired::Extended { token, expires }, Some((h, t, e))) if h == who => {
                        assert_eq!((token, expires), (t, e.max(now.plus(d))));
                        model.insert(r, (h, t, expires));
                    }
                    (Acquired::Busy { holder, expires }, Some((h, _, e))) => assert_eq!((holder, expires), (h, e)),
                    (got, m) => panic!("{got:?} with {m:?}"),
                },
                1 => {
                    let token = live.map_or(last_new, |m| m.1);
                    let got = table.renew(&r, &who, token, now, d);
                    match live {
                        Some((h, t, e)) if h == who => {
                            assert_eq!(got, Some(e.max(now.plus(d))));
                            model.insert(r, (h, t, e.max(now.plus(d))));
                        }
                        _ => assert_eq!(got, None),
                    }
                }
                _ => {
                    let token = live.map_or(0, |m| m.1);
                    let mine = live.is_some_and(|m| m.0 == who);
                    assert_eq!(table.release(&r, &who, token, now), mine);
                    if mine {
                        model.remove(&r);
                    }
                }
            }
            assert_eq!(
                table.holder(&r, now).map(|g| (g.holder, g.token, g.expires)),
                model.get(&r).filter(|m| now < m.2).copied()
            );
        }
        assert!(last_new > 1_000, "only {last_new} grants: the mix exercised too little");
        assert_eq!(table.last_token(), last_new);
    }

    #[test]
    fn a_new_grant_says_how_long_the_resource_was_free() {
        let mut t: LeaseTable<&str, u32> = LeaseTable::new();
        assert_eq!(
            t.acquire("lock", 1, Time(10), 100),
            Acquired::New { token: 1, expires: Time(110), vacant_since: None }
        );
        assert_eq!(t.acquire("lock", 2, Time(109), 100), Acquired::Busy { holder: 1, expires: Time(110) });
        // Expiry is exclusive: at 110 it is free, and was so since 110.
        assert_eq!(t.acquire("lock", 2, Time(110), 100).token(), Some(2));
        assert!(t.release(&"lock", &2, 2, Time(150)));
        assert_eq!(
            t.acquire("lock", 1, Time(180), 100),
            Acquired::New { token: 3, expires: Time(280), vacant_since: Some(Time(150)) }
        );
        assert!(!t.release(&"lock", &1, 2, Time(190)), "an old token releases nothing");
    }

    #[test]
    fn quota_holders_together_spend_no_more_than_the_grantor_had() {
        // A grantor with `limit` tokens a window grants each ask min(batch, what is left),
        // leased to the window's end; holders asked at random spend locally and ask again when
        // out. Whatever the batch and the number of holders, they spend at most the limit in
        // every window, and with demand far above it, exactly the limit.
        let mut rng = faultline_core::Rng::new(3);
        let len = 1_000_000;
        for (holders, batch, limit) in [(4, 5, 30), (8, 1, 30), (3, 50, 30), (32, 5, 100)] {
            let mut quotas = vec![Quota::new(Margin::NONE); holders];
            let (mut window, mut left, mut spent) = (0, limit, 0);
            for step in 0..300_000u64 {
                let now = Time(step * 37);
                if now.micros() / len != window {
                    assert_eq!(spent, limit, "window {window}: {holders} holders, batch {batch}");
                    (window, left, spent) = (now.micros() / len, limit, 0);
                }
                let q = &mut quotas[rng.pick(holders)];
                match q.spend(now) {
                    Some(ok) => spent += ok as u64,
                    None => {
                        if let Some(ask) = q.ask(now) {
                            let tokens = batch.min(left);
                            left -= tokens;
                            assert!(q.granted(ask, tokens, len - now.micros() % len, now));
                            spent += q.take() as u64;
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_dry_grant_refuses_until_it_ends_and_a_late_grant_holds_nothing() {
        let mut q = Quota::new(Margin::NONE);
        assert_eq!(q.spend(Time(0)), None, "nothing held");
        let ask = q.ask(Time(0)).expect("no ask under way");
        assert_eq!(q.ask(Time(1)), None, "one ask at a time");
        assert!(q.granted(ask, 2, 100, Time(10)));
        assert_eq!([q.spend(Time(20)), q.spend(Time(30)), q.spend(Time(40))], [Some(true), Some(true), None]);
        // None left at the grantor: refused locally until the lease ends (at 40 + 50).
        let ask = q.ask(Time(40)).expect("no ask under way");
        assert!(q.granted(ask, 0, 50, Time(45)));
        assert_eq!((q.spend(Time(89)), q.spend(Time(90))), (Some(false), None));
        // Granted after the lease, counted from the ask, ran out: nothing is held.
        let late = q.ask(Time(100)).expect("no ask under way");
        assert!(!q.granted(late, 5, 30, Time(130)));
        assert_eq!((q.tokens(), q.spend(Time(131))), (0, None));
        // An older ask's answer, or a duplicate, changes nothing; a denial gives up what is held.
        let ask = q.ask(Time(140)).expect("no ask under way");
        assert!(!q.granted(late, 5, 1_000, Time(141)));
        assert!(q.granted(ask, 3, 1_000, Time(150)));
        assert!(!q.granted(ask, 9, 1_000, Time(151)));
        assert_eq!(q.tokens(), 3);
        let ask = q.ask(Time(160)).expect("no ask under way");
        q.denied(ask);
        assert_eq!(q.spend(Time(161)), None);
    }

    #[test]
    fn two_quorum_leases_never_hold_at_once_with_good_clocks() {
        // Theory (Redlock's safety argument): a holder's lease ends at ask + D − m on its clock,
        // before any of its majority's grants (each made after the ask) runs out; any two
        // majorities of n share a grantor, which grants the second only after the first's grant
        // there ran out. So with clocks within the margin and no pause, two holders never hold
        // at once. Exact: three holders over five grantors, random delays and lost messages,
        // checked every 100 µs for 40 s (some 350 leases).
        let mut rng = Rng::new(5);
        let (n, d) = (5, 100_000);
        let mut tables: Vec<LeaseTable<(), usize>> = (0..n).map(|_| LeaseTable::new()).collect();
        let mut holders: Vec<QuorumLease> = (0..3).map(|_| QuorumLease::new(Margin::default(), n)).collect();
        // (at, holder, grantor, ask, Some(answer) or None for a request)
        type Event = (usize, usize, u64, Option<Option<u64>>);
        let mut events: BTreeMap<(u64, u64), Event> = BTreeMap::new();
        let (mut seq, mut held_at_once, mut grants) = (0, 0, 0);
        for step in 0..400_000u64 {
            let now = step * 100;
            for (h, q) in holders.iter_mut().enumerate() {
                if q.valid(Time(now)) || (q.asking() && rng.below(200) > 0) || rng.below(50) > 0 {
                    continue;
                }
                // Failed or over: give back what it got (at once), then ask again after a
                // random wait, as Redlock's clients do against split votes.
                for (g, &t) in q.tokens().iter().enumerate().filter(|(_, &t)| t > 0) {
                    tables[g].release(&(), &h, t, Time(now));
                }
                q.release();
                {
                    let ask = q.ask(Time(now));
                    for g in 0..n {
                        if rng.below(10) == 0 {
                            continue; // lost
                        }
                        seq += 1;
                        events.insert((now + rng.range(0, 10_000), seq), (h, g, ask, None));
                    }
                }
            }
            while let Some(entry) = events.first_entry().filter(|e| e.key().0 <= now) {
                let (h, g, ask, answer) = entry.remove();
                match answer {
                    None => {
                        let token = tables[g].acquire((), h, Time(now), d).token();
                        seq += 1;
                        events.insert((now + rng.range(0, 10_000), seq), (h, g, ask, Some(token)));
                    }
                    Some(Some(token)) => grants += holders[h].granted(ask, g, token, d, Time(now)) as u64,
                    Some(None) => holders[h].denied(ask, g),
                }
            }
            let valid = holders.iter().filter(|q| q.valid(Time(now))).count();
            held_at_once = held_at_once.max(valid);
        }
        assert_eq!(held_at_once, 1, "two quorum leases held at once");
        assert!(grants > 100, "only {grants} leases: too little contention exercised");
    }

    #[test]
    fn a_fence_refuses_older_tokens_and_tells_stale_writes() {
        let mut f: Fence<char> = Fence::new(2);
        assert_eq!(f.write(0, 'a', 5, Time(10), false), Fenced::Accepted);
        assert_eq!(f.write(0, 'b', 6, Time(20), false), Fenced::Accepted);
        // a's lock (got at 10) had passed to b (got at 20), who wrote first.
        assert_eq!(f.write(0, 'a', 5, Time(10), false), Fenced::Stale { newer: 'b' });
        assert_eq!(f.write(0, 'a', 5, Time(10), true), Fenced::Refused { highest: 6 });
        assert_eq!(f.write(0, 'b', 6, Time(20), true), Fenced::Accepted, "the same holder again");
        assert_eq!((f.write(1, 'a', 1, Time(5), true), f.highest(1), f.highest(0)), (Fenced::Accepted, 1, 6));
    }

    /// Found by the links fuzz: a Redlock client's lease made anew for one server (the strategy
    /// switched) heard a late answer from server 1 and indexed past its grantors.
    #[test]
    fn an_answer_from_a_grantor_not_asked_is_ignored() {
        let mut q = QuorumLease::new(Margin::default(), 1);
        let ask = q.ask(Time(0));
        assert!(!q.granted(ask, 1, 7, 1_000, Time(1)));
        q.denied(ask, 40);
        assert!(q.granted(ask, 0, 7, 10_000_000, Time(2)), "its own grantor still counts");
    }
}
