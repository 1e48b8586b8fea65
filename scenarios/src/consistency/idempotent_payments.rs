//! Idempotent payments: clients with timeouts, retries and double clicks pay through API
//! instances that charge an external payment provider and record a ledger in a database.
//! Without an idempotency key — or with one kept in memory, or one that expires before the
//! last retry — a lost response or a crash turns one payment into two charges.

use crate::parts::table::{KeyTable, Log};
use faultline_core::*;
use std::collections::{BTreeMap, BTreeSet};

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "idempotent-payments",
        title: "Idempotent payments",
        category: "Transactions & consistency",
        seeds: &["S1-P#2", "S1#11", "S3#12", "S3#66", "S3#80", "S4#08", "S2#25"],
        summary: "A response is lost, an instance dies after charging, the provider is slow: clients retry. Only an \
                  idempotency key stored under a unique constraint, with its response, turns every retry into the \
                  original answer instead of a second charge.",
        note: Note {
            what_can_go_wrong: "A client cannot tell a lost request from a lost response, so it retries — and a \
                server that treats the retry as new charges the card again. A key remembered in one instance's \
                memory is forgotten by a crash and unknown to the other instances; a key that expires before the \
                client's last retry protects nothing.",
            what_you_sacrifice: "A database round trip (insert with a unique constraint) before every charge, a \
                stored response per key for as long as retries can come, an 'in progress' state that concurrent \
                duplicates must wait on, and a sweeper that finishes payments whose instance died midway.",
            at_10x: "The key table grows with traffic times the retention window and needs expiry longer than any \
                client's retry horizon; hot retries from a mobile client storm become lock contention on one key; \
                every downstream (provider, ledger, email) needs the same key passed along. The sweeper must \
                grow too: at 50,000 payments a second, two seconds of 20% loss leave ~40,000 payments stuck in \
                progress and three seconds of a slow provider ~190,000; a sweeper taking 50 a second per instance \
                needs minutes, and until it is done the ledger is short of the provider — even `key-unique` fails \
                reconciliation, unless the sweeper batch grows with the traffic (there, 10,000 holds).",
            resembles: "Stripe's Idempotency-Key header, PayPal-Request-Id, AWS ClientToken, Adyen's idempotency \
                keys; the 'in progress' row is the pattern in Brandur Leach's 'Implementing Stripe-like \
                Idempotency Keys in Postgres'.",
            try_this: &[
                "Play `no-key`: the first lost response or crash after a charge makes a client retry, and \
                 `no-double-charge` fails.",
                "Switch to `key-in-memory`: double clicks on one instance are absorbed, but a retry that lands on \
                 another instance — or after a crash — still charges twice.",
                "Switch to `key-unique`: duplicates are absorbed, every retry gets the original charge, and the \
                 ledger matches the provider even after crashes.",
                "Try `key-expires`: slow the provider and the key is gone before the client's retry arrives.",
            ],
        },
    },
    params: &[
        ParamSpec {
            id: "clients",
            label: "Clients",
            unit: "",
            min: 1,
            max: 500,
            step: 1,
            default: 20,
            live: false,
            help: "Clients making payments.",
        },
        ParamSpec {
            id: "pay_per_s",
            label: "Payments per client",
            unit: "per 10 s",
            min: 1,
            max: 1000,
            step: 1,
            default: 5,
            live: true,
            help: "Poisson rate of new payments, per client per 10 seconds.",
        },
        ParamSpec {
            id: "instances",
            label: "API instances",
            unit: "",
            min: 1,
            max: 10,
            step: 1,
            default: 3,
            live: false,
            help: "Each attempt goes to a random instance.",
        },
        ParamSpec {
            id: "double_click_pct",
            label: "Double clicks",
            unit: "%",
            min: 0,
            max: 100,
            step: 1,
            default: 5,
            live: true,
            help: "Share of payments sent twice in quick succession.",
        },
        ParamSpec {
            id: "timeout_ms",
            label: "Client timeout",
            unit: "ms",
            min: 100,
            max: 60_000,
            step: 100,
            default: 1500,
            live: true,
            help: "A client retries after this long without an answer.",
        },
        ParamSpec {
            id: "max_retries",
            label: "Client retries",
            unit: "",
            min: 0,
            max: 20,
            step: 1,
            default: 4,
            live: true,
            help: "Retries per payment (exponential backoff with jitter).",
        },
        ParamSpec {
            id: "provider_ms",
            label: "Provider latency",
            unit: "ms",
            min: 1,
            max: 10_000,
            step: 1,
            default: 120,
            live: true,
            help: "Mean time the payment provider takes to charge.",
        },
        ParamSpec {
            id: "provider_timeout_ms",
            label: "Provider timeout",
            unit: "ms",
            min: 50,
            max: 60_000,
            step: 50,
            default: 1000,
            live: true,
            help: "How long an instance waits for the provider.",
        },
        ParamSpec {
            id: "key_ttl_ms",
            label: "Key TTL (key-expires)",
            unit: "ms",
            min: 100,
            max: 600_000,
            step: 100,
            default: 800,
            live: true,
            help: "How long the `key-expires` strategy remembers a key.",
        },
        ParamSpec {
            id: "takeover_ms",
            label: "In-progress takeover",
            unit: "ms",
            min: 100,
            max: 60_000,
            step: 100,
            default: 3000,
            live: true,
            help:
                "key-unique: an 'in progress' key older than this is finished by whoever sees it (its instance died).",
        },
        ParamSpec {
            id: "sweep_batch",
            label: "Sweeper batch",
            unit: "keys",
            min: 10,
            max: 50_000,
            step: 10,
            default: 50,
            live: true,
            help: "key-unique: how many stale keys each instance's sweeper takes over, once a second, oldest first. \
                   Sized for a normal day, it falls behind after an outage at scale.",
        },
    ],
    strategies: &[
        StrategySpec {
            id: "no-key",
            label: "No idempotency key",
            naive: true,
            help: "Every request charges the provider.",
        },
        StrategySpec {
            id: "key-in-memory",
            label: "Key in instance memory",
            naive: true,
            help: "Each instance remembers keys and responses in memory: lost on a crash, unknown to the others.",
        },
        StrategySpec {
            id: "key-unique",
            label: "Key + unique constraint + stored response",
            naive: false,
            help: "Insert the key first (unique constraint), charge with the same key at the provider, store the \
                   response with the ledger entry; duplicates wait on 'in progress' or get the stored response; a \
                   sweeper finishes stale ones.",
        },
        StrategySpec {
            id: "key-expires",
            label: "Key that expires too soon",
            naive: true,
            help: "As key-unique at the API, but keys expire after the key TTL — sooner than clients stop retrying.",
        },
    ],
    faults: &[
        FaultSpec {
            id: "crash-after-charge",
            label: "Crash after the charge",
            target: Target::Node,
            value_label: "restart after ms",
            value_min: 0,
            value_max: 60_000,
            value_default: 1000,
            help: "This instance dies right after its next successful charge, before answering or recording it.",
        },
        FaultSpec {
            id: "provider-slow",
            label: "Slow provider",
            target: Target::Global,
            value_label: "extra ms",
            value_min: 0,
            value_max: 60_000,
            value_default: 2000,
            help: "The provider answers this much later (0 heals).",
        },
    ],
    checks: &[
        CheckSpec {
            id: "no-double-charge",
            label: "No payment charged twice",
            help: "The provider never charges one logical payment (one idempotency key) more than once.",
        },
        CheckSpec {
            id: "ledger-matches",
            label: "Ledger matches the provider",
            help: "Every charge older than 10 s is in the ledger, once.",
        },
        CheckSpec {
            id: "retry-gets-original",
            label: "A retry gets the original response",
            help: "Every answer a client gets for one payment names the same charge.",
        },
    ],
    metrics: &[
        MetricSpec {
            id: "double_charges",
            label: "Double charges",
            unit: "",
            measure: Measure::Count("double_charges"),
        },
        MetricSpec { id: "absorbed", label: "Duplicates absorbed", unit: "", measure: Measure::Count("absorbed") },
        MetricSpec {
            id: "latency_p99",
            label: "Payment latency p99",
            unit: "us",
            measure: Measure::Quantile("latency_us", 0.99),
        },
        MetricSpec { id: "paid", label: "Payments confirmed", unit: "/s", measure: Measure::Rate("paid") },
        MetricSpec { id: "abandoned", label: "Payments abandoned", unit: "", measure: Measure::Count("abandoned") },
    ],
    layout: Layout::Tiers,
    default_until: 30 * MICROS_PER_S,
    sample_every: 250 * MICROS_PER_MS,
    build,
};

const DB: NodeId = 0;
const PROVIDER: NodeId = 1;
const FIRST_INSTANCE: NodeId = 2;
const RECONCILE: Micros = 10 * MICROS_PER_S;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    NoKey,
    Memory,
    Unique,
    Expires,
}

impl Strategy {
    fn from_id(id: &str) -> Strategy {
        match id {
            "key-in-memory" => Strategy::Memory,
            "key-unique" => Strategy::Unique,
            "key-expires" => Strategy::Expires,
            _ => Strategy::NoKey,
        }
    }
}

/// What the database knows about a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    Absent,
    InProgress { since: Time },
    Done { charge: u64 },
}

#[derive(Clone, Debug)]
pub enum Msg {
    Pay {
        key: u64,
    },
    Paid {
        key: u64,
        charge: u64,
    },
    TryLater {
        key: u64,
    },
    Failed {
        key: u64,
    },
    /// Insert the key if absent (the unique constraint); `ttl` makes it expire.
    Insert {
        key: u64,
        ttl: Option<Micros>,
    },
    Inserted {
        key: u64,
        state: KeyState,
    },
    /// Take over a stale in-progress key.
    Claim {
        key: u64,
        stale_after: Micros,
    },
    Claimed {
        key: u64,
        ok: bool,
    },
    /// Record the charge in the ledger, and (with a key) mark the key done with its response.
    Record {
        key: u64,
        charge: u64,
        charged_at: Time,
        with_key: bool,
    },
    Recorded {
        key: u64,
        charge: u64,
    },
    StaleKeys {
        older_than: Micros,
        limit: usize,
    },
    Stale {
        keys: Vec<u64>,
    },
    Charge {
        key: u64,
        idempotent: bool,
    },
    Charged {
        key: u64,
        charge: u64,
        at: Time,
    },
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Pay { .. } => "pay",
            Msg::Paid { .. } => "paid",
            Msg::TryLater { .. } => "409",
            Msg::Failed { .. } => "502",
            Msg::Insert { .. } => "insert",
            Msg::Inserted { .. } => "inserted",
            Msg::Claim { .. } => "claim",
            Msg::Claimed { .. } => "claimed",
            Msg::Record { .. } => "record",
            Msg::Recorded { .. } => "recorded",
            Msg::StaleKeys { .. } => "stale?",
            Msg::Stale { .. } => "stale",
            Msg::Charge { .. } => "charge",
            Msg::Charged { .. } => "charged",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    NewPayment,
    Attempt { key: u64, attempt: u32 },
    Timeout { key: u64, attempt: u32 },
    ProviderTimeout { key: u64 },
    Sweep,
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::NewPayment => "new-payment",
            Timer::Attempt { .. } => "attempt",
            Timer::Timeout { .. } => "client-timeout",
            Timer::ProviderTimeout { .. } => "provider-timeout",
            Timer::Sweep => "sweep",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Ip {
    Client(Box<Client>),
    Instance(Box<Instance>),
    Db(Box<Db>),
    Provider(Box<Provider>),
}

#[derive(Clone, Debug)]
pub struct Client {
    index: u32,
    rate_per_10s: f64,
    next: u64,
    /// Payments under way: (first attempt's time, attempt, timeout timer).
    open: BTreeMap<u64, (Time, u32, Option<TimerId>)>,
    /// The charge each payment was first answered with, by the payment's number.
    answered: KeyTable<u64>,
    /// Payments answered with two different charges.
    mismatches: u64,
}

#[derive(Clone, Debug)]
pub struct Instance {
    index: u32,
    strategy: Strategy,
    /// key-in-memory: what this instance remembers.
    memory: BTreeMap<u64, Option<u64>>,
    /// Charges under way: key → (client to answer, provider-timeout timer).
    calls: BTreeMap<u64, (Option<NodeId>, TimerId)>,
    /// Clients waiting on a key's result.
    waiters: Waiters,
    crash_after_charge: Option<Micros>,
}

/// The clients waiting on each key's result, in the order they came. One tree entry per
/// waiter, not a list per key: most keys have one, and the player copies the run for its
/// checkpoints, where a list per key is an allocation per key (at the seeds' scale, 100,000
/// of them — a third of the time copying the nodes took).
#[derive(Clone, Debug, Default)]
struct Waiters {
    /// (key, arrival number) → client.
    by_key: BTreeMap<(u64, u64), NodeId>,
    arrivals: u64,
}

impl Waiters {
    fn push(&mut self, key: u64, client: NodeId) {
        self.by_key.insert((key, self.arrivals), client);
        self.arrivals += 1;
    }

    /// Everyone waiting on `key`, in the order they came; none wait on it after.
    fn take(&mut self, key: u64) -> Vec<NodeId> {
        let found: Vec<(u64, u64)> = self.by_key.range((key, 0)..=(key, u64::MAX)).map(|(&k, _)| k).collect();
        found.iter().filter_map(|k| self.by_key.remove(k)).collect()
    }

    fn clear(&mut self) {
        self.by_key.clear();
    }
}

#[derive(Clone, Debug, Default)]
pub struct Db {
    keys: KeyTable<(KeyState, Option<Time>)>,
    /// The keys whose state is in progress, oldest first (since when, then the key), as an
    /// index on `keys` would hold them: the sweeper asks for the oldest stale ones, and
    /// scanning every key ever stored for them (at 50,000 payments a second) had made the
    /// run slower the longer it went.
    in_progress: BTreeSet<(Time, u64)>,
    /// Ledger: charge id → (key, when the provider charged it).
    ledger: KeyTable<(u64, Time)>,
    /// Charge times in the ledger, for the reconciliation check.
    ledger_times: LedgerTimes,
}

/// When the ledger's charges were made, for counting those before a moment: the
/// reconciliation check asks after every event, about true time minus `RECONCILE`, which
/// never goes back. Times before `frontier` (where that moment was at the database's last
/// message) are only counted; later ones are kept in order, in a list for each
/// millisecond. Records reach the ledger in network order, not charge order: a sorted list
/// of every time paid for that by shifting its tail on each insertion (7% of a run at 500k
/// payments a second), and a tree of them took most of the time to copy the run for the
/// player's checkpoints (at 50,000 payments a second, ten seconds of them are kept); the
/// lists are in shared blocks, so a copy shares all but those written since.
#[derive(Clone, Debug, Default)]
struct LedgerTimes {
    frontier: Time,
    before: usize,
    by_ms: KeyTable<Vec<Time>>,
}

impl LedgerTimes {
    fn insert(&mut self, t: Time) {
        if t < self.frontier {
            self.before += 1;
        } else {
            let list = self.by_ms.get_or_insert(t.micros() / MICROS_PER_MS, Vec::new());
            list.insert(list.partition_point(|&x| x <= t), t);
        }
    }

    /// How many kept times are in `from..to`.
    fn count_between(&self, from: Time, to: Time) -> usize {
        if from >= to {
            return 0;
        }
        let within = |list: &Vec<Time>| list.partition_point(|&x| x < to) - list.partition_point(|&x| x < from);
        let ms = from.micros() / MICROS_PER_MS..=to.micros() / MICROS_PER_MS;
        ms.map(|ms| self.by_ms.get(ms).map_or(0, within)).sum()
    }

    /// Moves the frontier up to `to`: what falls behind it is only counted from now on.
    fn advance(&mut self, to: Time) {
        if to <= self.frontier {
            return;
        }
        self.before += self.count_between(self.frontier, to);
        for ms in self.frontier.micros() / MICROS_PER_MS..to.micros() / MICROS_PER_MS {
            self.by_ms.remove(ms);
        }
        self.frontier = to;
    }

    /// How many charge times are before `t`; `t` must not be before the frontier.
    fn count_before(&self, t: Time) -> usize {
        debug_assert!(t >= self.frontier, "asked about {t} behind the frontier {}", self.frontier);
        self.before + self.count_between(self.frontier, t)
    }
}

#[derive(Clone, Debug)]
pub struct Provider {
    mean: f64,
    extra: Micros,
    next_charge: u64,
    /// Provider-side idempotency: key → the charge and when it was made.
    seen: KeyTable<(u64, Time)>,
    /// Every charge's time, in order (for reconciliation), and charges per payment.
    charge_times: Log<Time>,
    per_key: KeyTable<u32>,
    /// Payments charged more than once (what `per_key` would say, kept as it changes: the
    /// node is drawn every frame, and `per_key` holds every payment ever made).
    doubled: u64,
    /// The latest charge of a payment that had been charged before: its key and how many
    /// times it has been charged (what the no-double-charge check reads).
    charged_again: Option<(u64, u32)>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ip> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 2_000, hi: 15_000 }));
    assert_eq!(sim.add_node(Ip::Db(Box::default())), DB);
    let provider = Provider {
        mean: setup.param("provider_ms") as f64 * 1000.0,
        extra: 0,
        next_charge: 0,
        seen: KeyTable::default(),
        charge_times: Log::default(),
        per_key: KeyTable::default(),
        doubled: 0,
        charged_again: None,
    };
    assert_eq!(sim.add_node(Ip::Provider(Box::new(provider))), PROVIDER);
    let instances = setup.param("instances") as u32;
    for index in 0..instances {
        let id = sim.add_node(Ip::Instance(Box::new(Instance {
            index,
            strategy: Strategy::from_id(setup.strategy()),
            memory: BTreeMap::new(),
            calls: BTreeMap::new(),
            waiters: Waiters::default(),
            crash_after_charge: None,
        })));
        sim.net().set_link(id, DB, Link::with_latency(Latency::Uniform { lo: 500, hi: 2_000 }));
    }
    for index in 0..setup.param("clients") as u32 {
        sim.add_node(Ip::Client(Box::new(Client {
            index,
            rate_per_10s: setup.param("pay_per_s") as f64,
            next: 0,
            open: BTreeMap::new(),
            answered: KeyTable::default(),
            mismatches: 0,
        })));
    }
    // The plan: crashes right after a charge, a burst of lost messages, a slow provider.
    let crash = |node| Fault::Custom { id: "crash-after-charge".into(), node: Some(node), value: 1000 };
    sim.schedule(Time::from_secs(4), crash(FIRST_INSTANCE));
    sim.schedule(Time::from_secs(9), Fault::LossBurst { loss: Ppm::from_percent(20), dur: 2 * MICROS_PER_S });
    let slow = |value| Fault::Custom { id: "provider-slow".into(), node: None, value };
    sim.schedule(Time::from_secs(15), slow(2000));
    sim.schedule(Time::from_secs(18), slow(0));
    sim.schedule(Time::from_secs(22), crash(FIRST_INSTANCE + instances.min(2) - 1));
    // The provider's own count of charges per payment is the truth here. (It had been a
    // tally as well: a second map of every payment ever charged, searched on every charge.)
    sim.check("no-double-charge", |w| {
        let Ip::Provider(p) = &w.nodes[PROVIDER as usize] else { unreachable!() };
        match p.charged_again {
            Some((key, v)) if w.touched == Some(PROVIDER) => {
                Err(format!("payment {} of client {} was charged {v} times", key & 0xffff_ffff, key >> 32))
            }
            _ => Ok(()),
        }
    });
    sim.check("ledger-matches", |w| {
        let (Ip::Db(db), Ip::Provider(p)) = (&w.nodes[DB as usize], &w.nodes[PROVIDER as usize]) else {
            unreachable!()
        };
        let Some(cutoff) = w.now.micros().checked_sub(RECONCILE).map(Time) else { return Ok(()) };
        let charged = p.charge_times.partition_point(|&t| t < cutoff);
        let recorded = db.ledger_times.count_before(cutoff);
        if charged == recorded {
            Ok(())
        } else {
            Err(format!("the provider made {charged} charges more than 10 s ago; the ledger has {recorded}"))
        }
    });
    sim.check("retry-gets-original", |w| {
        let Some(Ip::Client(c)) = w.touched.map(|n| &w.nodes[n as usize]) else { return Ok(()) };
        if c.mismatches > 0 {
            Err(format!("client {} was answered with two different charges for one payment", c.index))
        } else {
            Ok(())
        }
    });
    Box::new(sim)
}

fn instance_for(ctx: &mut Ctx<Ip>) -> NodeId {
    let n = ctx.param("instances") as u64;
    FIRST_INSTANCE + ctx.rng().below(n) as NodeId
}

impl Node for Ip {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ip::Client(c) => c.schedule(ctx),
            Ip::Instance(i) if i.strategy == Strategy::Unique => {
                let first = ctx.rng().range(500 * MICROS_PER_MS, 1500 * MICROS_PER_MS);
                ctx.set_timer(first, Timer::Sweep);
            }
            _ => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match self {
            Ip::Client(c) => c.on_answer(msg, ctx),
            Ip::Instance(i) => i.on_message(from, msg, ctx),
            Ip::Db(db) => db.on_message(from, msg, ctx),
            Ip::Provider(p) => {
                if let Msg::Charge { key, idempotent } = msg {
                    p.charge(from, key, idempotent, ctx)
                }
            }
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ip::Client(c), Timer::NewPayment) => {
                c.next += 1;
                let key = ((c.index as u64) << 32) | c.next;
                c.open.insert(key, (ctx.now(), 0, None));
                c.attempt(key, 0, ctx);
                if ctx.rng().below(100) < ctx.param("double_click_pct") as u64 {
                    let gap = ctx.rng().range(20 * MICROS_PER_MS, 80 * MICROS_PER_MS);
                    ctx.set_timer(gap, Timer::Attempt { key, attempt: 0 });
                }
                c.schedule(ctx);
            }
            (Ip::Client(c), Timer::Attempt { key, attempt }) if c.open.contains_key(&key) => {
                c.attempt(key, attempt, ctx)
            }
            (Ip::Client(c), Timer::Timeout { key, attempt }) => c.timed_out(key, attempt, ctx),
            (Ip::Instance(i), Timer::ProviderTimeout { key }) => {
                if let Some((client, _)) = i.calls.remove(&key) {
                    ctx.count("provider_timeouts", 1);
                    // We do not know whether the card was charged. Without a key the client will
                    // retry; with one, the key stays 'in progress' for the sweeper or a retry.
                    i.answer(key, client, Msg::Failed { key }, ctx);
                }
            }
            (Ip::Instance(i), Timer::Sweep) => {
                if i.strategy == Strategy::Unique {
                    let stale_after = ctx.param("takeover_ms") as u64 * MICROS_PER_MS;
                    let limit = ctx.param("sweep_batch") as usize;
                    ctx.send(DB, Msg::StaleKeys { older_than: stale_after, limit });
                }
                ctx.set_timer(MICROS_PER_S, Timer::Sweep);
            }
            _ => {}
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        if let Ip::Instance(i) = self {
            i.memory.clear();
            i.calls.clear();
            i.waiters.clear();
            i.crash_after_charge = None;
        }
    }

    fn on_control(&mut self, c: Control, _ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ip::Instance(i), Control::Strategy(id)) => i.strategy = Strategy::from_id(id),
            (Ip::Instance(i), Control::Custom { id: "crash-after-charge", value }) => {
                i.crash_after_charge = Some(value.max(1) as u64 * MICROS_PER_MS);
            }
            (Ip::Provider(p), Control::Custom { id: "provider-slow", value }) => p.extra = value as u64 * MICROS_PER_MS,
            (Ip::Provider(p), Control::Param { id: "provider_ms", value }) => p.mean = value as f64 * 1000.0,
            (Ip::Client(c), Control::Param { id: "pay_per_s", value }) => c.rate_per_10s = value as f64,
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ip::Client(c) => NodeView::new(NodeKind::Client, 0, numbered("client", c.index as u64)).gauge(
                "payments open",
                c.open.len() as i64,
                5,
            ),
            Ip::Instance(i) => {
                let v = NodeView::new(NodeKind::Service, 1, numbered("api", i.index as u64)).gauge(
                    "charges under way",
                    i.calls.len() as i64,
                    20,
                );
                let v = if i.strategy == Strategy::Memory {
                    v.gauge("keys in memory", i.memory.len() as i64, 200)
                } else {
                    v
                };
                if i.crash_after_charge.is_some() {
                    v.badge("will crash after next charge", Tone::Warn)
                } else {
                    v
                }
            }
            Ip::Db(db) => NodeView::new(NodeKind::Database, 2, "database")
                .gauge("keys", db.keys.len() as i64, 1000)
                .gauge("ledger", db.ledger.len() as i64, 1000),
            Ip::Provider(p) => {
                let doubles = p.doubled;
                let v = NodeView::new(NodeKind::Service, 3, "payment provider").gauge(
                    "charges",
                    p.next_charge as i64,
                    1000,
                );
                let v =
                    if p.extra > 0 { v.badge(format!("slow +{} ms", p.extra / MICROS_PER_MS), Tone::Warn) } else { v };
                if doubles > 0 {
                    v.badge(format!("{doubles} double-charged"), Tone::Bad)
                } else {
                    v
                }
            }
        }
    }
}

impl Client {
    fn schedule(&mut self, ctx: &mut Ctx<Ip>) {
        let gap = ctx.rng().exponential(10e6 / self.rate_per_10s) as Micros;
        ctx.set_timer(gap.max(1), Timer::NewPayment);
    }

    fn attempt(&mut self, key: u64, attempt: u32, ctx: &mut Ctx<Ip>) {
        let to = instance_for(ctx);
        ctx.send(to, Msg::Pay { key });
        let t = ctx.set_timer(ctx.param("timeout_ms") as u64 * MICROS_PER_MS, Timer::Timeout { key, attempt });
        if let Some(open) = self.open.get_mut(&key) {
            if let Some(old) = open.2.replace(t) {
                ctx.cancel_timer(old);
            }
            open.1 = attempt;
        }
    }

    fn retry(&mut self, key: u64, ctx: &mut Ctx<Ip>) {
        let Some(&(_, attempt, timer)) = self.open.get(&key) else { return };
        if let Some(t) = timer {
            ctx.cancel_timer(t);
        }
        if attempt >= ctx.param("max_retries") as u32 {
            self.open.remove(&key);
            ctx.count("abandoned", 1);
            return;
        }
        let backoff = (250 * MICROS_PER_MS) << attempt.min(8);
        let wait = backoff / 2 + ctx.rng().range(0, backoff);
        ctx.count("retries", 1);
        ctx.set_timer(wait, Timer::Attempt { key, attempt: attempt + 1 });
        if let Some(open) = self.open.get_mut(&key) {
            open.2 = None;
            open.1 = attempt + 1;
        }
    }

    fn timed_out(&mut self, key: u64, attempt: u32, ctx: &mut Ctx<Ip>) {
        if self.open.get(&key).is_some_and(|o| o.1 == attempt) {
            self.retry(key, ctx);
        }
    }

    fn on_answer(&mut self, msg: Msg, ctx: &mut Ctx<Ip>) {
        match msg {
            Msg::Paid { key, charge } => {
                // The key is this client's: its low half numbers the payment.
                match self.answered.get(key as u32) {
                    Some(&first) if first != charge => {
                        self.mismatches += 1;
                        ctx.note(format!("payment {key:x} answered with charge {charge}, earlier with {first}"));
                    }
                    Some(_) => {}
                    None => {
                        self.answered.insert(key as u32, charge);
                    }
                }
                if let Some((started, _, timer)) = self.open.remove(&key) {
                    if let Some(t) = timer {
                        ctx.cancel_timer(t);
                    }
                    ctx.count("paid", 1);
                    ctx.observe("latency_us", ctx.now().since(started));
                }
            }
            Msg::TryLater { key } | Msg::Failed { key } => self.retry(key, ctx),
            _ => {}
        }
    }
}

impl Instance {
    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Ip>) {
        match msg {
            Msg::Pay { key } => self.pay(from, key, ctx),
            Msg::Inserted { key, state } => self.inserted(key, state, ctx),
            Msg::Claimed { key, ok } => {
                if ok {
                    self.charge(key, None, true, ctx);
                } else {
                    self.answer(key, None, Msg::TryLater { key }, ctx);
                }
            }
            Msg::Charged { key, charge, at } => {
                let Some((client, t)) = self.calls.remove(&key) else { return }; // timed out already
                ctx.cancel_timer(t);
                if let Some(restart) = self.crash_after_charge.take() {
                    ctx.note(format!("dying right after charging payment {key:x}"));
                    return ctx.crash(Some(restart));
                }
                let with_key = matches!(self.strategy, Strategy::Unique | Strategy::Expires);
                if let (Strategy::Memory, Some(slot)) = (self.strategy, self.memory.get_mut(&key)) {
                    *slot = Some(charge);
                }
                if let Some(c) = client {
                    self.waiters.push(key, c);
                }
                ctx.send(DB, Msg::Record { key, charge, charged_at: at, with_key });
            }
            Msg::Recorded { key, charge } => self.answer(key, None, Msg::Paid { key, charge }, ctx),
            Msg::Stale { keys } => {
                for key in keys {
                    ctx.count("swept", 1);
                    let stale_after = ctx.param("takeover_ms") as u64 * MICROS_PER_MS;
                    ctx.send(DB, Msg::Claim { key, stale_after });
                }
            }
            _ => {}
        }
        let _ = from;
    }

    fn pay(&mut self, client: NodeId, key: u64, ctx: &mut Ctx<Ip>) {
        match self.strategy {
            Strategy::NoKey => self.charge(key, Some(client), false, ctx),
            Strategy::Memory => match self.memory.get(&key) {
                Some(Some(charge)) => {
                    ctx.count("absorbed", 1);
                    ctx.send(client, Msg::Paid { key, charge: *charge });
                }
                Some(None) => {
                    ctx.count("absorbed", 1);
                    self.waiters.push(key, client);
                }
                None => {
                    self.memory.insert(key, None);
                    self.charge(key, Some(client), false, ctx);
                }
            },
            Strategy::Unique | Strategy::Expires => {
                self.waiters.push(key, client);
                let ttl = (self.strategy == Strategy::Expires).then(|| ctx.param("key_ttl_ms") as u64 * MICROS_PER_MS);
                ctx.send(DB, Msg::Insert { key, ttl });
            }
        }
    }

    fn inserted(&mut self, key: u64, state: KeyState, ctx: &mut Ctx<Ip>) {
        match state {
            // We own the key: charge, passing the key to the provider too (key-unique).
            KeyState::Absent => {
                let idempotent = self.strategy == Strategy::Unique;
                self.charge(key, None, idempotent, ctx);
            }
            KeyState::Done { charge } => {
                ctx.count("absorbed", 1);
                self.answer(key, None, Msg::Paid { key, charge }, ctx);
            }
            KeyState::InProgress { .. } => {
                ctx.count("absorbed", 1);
                self.answer(key, None, Msg::TryLater { key }, ctx);
            }
        }
    }

    fn charge(&mut self, key: u64, client: Option<NodeId>, idempotent: bool, ctx: &mut Ctx<Ip>) {
        if self.calls.contains_key(&key) {
            if let Some(c) = client {
                self.waiters.push(key, c);
            }
            return;
        }
        let t = ctx.set_timer(ctx.param("provider_timeout_ms") as u64 * MICROS_PER_MS, Timer::ProviderTimeout { key });
        self.calls.insert(key, (client, t));
        ctx.send(PROVIDER, Msg::Charge { key, idempotent });
    }

    /// Sends `msg` to everyone waiting on `key` (and to `client`, if given).
    fn answer(&mut self, key: u64, client: Option<NodeId>, msg: Msg, ctx: &mut Ctx<Ip>) {
        let mut to = self.waiters.take(key);
        to.extend(client);
        for c in to {
            ctx.send(c, msg.clone());
        }
        if matches!(msg, Msg::Failed { .. }) && self.strategy == Strategy::Memory {
            self.memory.remove(&key);
        }
    }
}

impl Db {
    /// Stores a key's state (every write to `keys` goes through here or `forget`).
    fn store(&mut self, key: u64, state: KeyState, expires: Option<Time>) {
        self.unindex(key);
        if let KeyState::InProgress { since } = state {
            self.in_progress.insert((since, key));
        }
        self.keys.insert(key, (state, expires));
    }

    fn forget(&mut self, key: u64) {
        self.unindex(key);
        self.keys.remove(key);
    }

    /// Up to `limit` keys in progress for at least `older_than`, the oldest first, as a sweeper's
    /// `ORDER BY since LIMIT n` would give them: in key order, the keys of low-numbered
    /// clients could keep everyone else's waiting.
    fn stale(&self, now: Time, older_than: Micros, limit: usize) -> Vec<u64> {
        self.in_progress
            .iter()
            .take_while(|(since, _)| now.since(*since) >= older_than)
            .map(|&(_, key)| key)
            .take(limit)
            .collect()
    }

    /// Takes `key` out of the in-progress index, if its stored state is there.
    fn unindex(&mut self, key: u64) {
        if let Some((KeyState::InProgress { since }, _)) = self.keys.get(key) {
            self.in_progress.remove(&(*since, key));
        }
    }

    fn state(&mut self, key: u64, now: Time) -> KeyState {
        match self.keys.get(key) {
            Some((_, Some(expires))) if now >= *expires => {
                self.forget(key);
                KeyState::Absent
            }
            Some((s, _)) => *s,
            None => KeyState::Absent,
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Ip>) {
        let now = ctx.now();
        // Instrumentation only: the check's moment, in true time, has reached here.
        self.ledger_times.advance(Time(ctx.truth().micros().saturating_sub(RECONCILE)));
        match msg {
            Msg::Insert { key, ttl } => {
                let state = self.state(key, now);
                if state == KeyState::Absent {
                    self.store(key, KeyState::InProgress { since: now }, ttl.map(|t| now.plus(t)));
                }
                ctx.send(from, Msg::Inserted { key, state });
            }
            Msg::Claim { key, stale_after } => {
                let ok = match self.state(key, now) {
                    KeyState::InProgress { since } if now.since(since) >= stale_after => {
                        let exp = self.keys.get(key).and_then(|k| k.1);
                        self.store(key, KeyState::InProgress { since: now }, exp);
                        true
                    }
                    _ => false,
                };
                ctx.send(from, Msg::Claimed { key, ok });
            }
            Msg::Record { key, charge, charged_at, with_key } => {
                // One transaction: the ledger entry and (with a key) the stored response.
                let charge = match (with_key, self.state(key, now)) {
                    (true, KeyState::Done { charge: first }) => first,
                    _ => {
                        if self.ledger.insert(charge, (key, charged_at)).is_none() {
                            self.ledger_times.insert(charged_at);
                        }
                        if with_key {
                            let exp = self.keys.get(key).and_then(|k| k.1);
                            self.store(key, KeyState::Done { charge }, exp);
                        }
                        charge
                    }
                };
                ctx.send(from, Msg::Recorded { key, charge });
            }
            Msg::StaleKeys { older_than, limit } => {
                let keys = self.stale(now, older_than, limit);
                if !keys.is_empty() {
                    ctx.send(from, Msg::Stale { keys });
                }
            }
            _ => {}
        }
    }
}

impl Provider {
    fn charge(&mut self, from: NodeId, key: u64, idempotent: bool, ctx: &mut Ctx<Ip>) {
        let now = ctx.now();
        let (charge, at) = match self.seen.get(key) {
            Some(&first) if idempotent => {
                ctx.count("provider_deduped", 1);
                first
            }
            _ => {
                self.next_charge += 1;
                let c = self.next_charge;
                if idempotent {
                    self.seen.insert(key, (c, now));
                }
                let n = self.per_key.get_or_insert(key, 0);
                *n += 1;
                if *n == 2 {
                    self.doubled += 1;
                }
                if *n > 1 {
                    self.charged_again = Some((key, *n));
                    ctx.count("double_charges", 1);
                    ctx.note(format!("payment {key:x} charged again (charge {c})"));
                }
                self.charge_times.push(now);
                (c, now)
            }
        };
        let delay = ctx.rng().exponential(self.mean) as Micros + self.extra;
        ctx.send_after(delay, from, Msg::Charged { key, charge, at });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn first_double_charge(strategy: &str, seed: u64) -> (Option<Violation>, i64) {
        let (mut run, problems) = open(&SPEC, &Recipe::new(SPEC.id(), strategy, seed));
        assert!(problems.is_empty());
        run.run_until(Time(SPEC.default_until), u64::MAX);
        let check = run.checks().iter().find(|c| c.id == "no-double-charge").unwrap();
        (check.violation.clone(), run.metrics().counter("double_charges"))
    }

    #[test]
    fn a_second_charge_of_one_payment_fails_the_check_at_once() {
        // Each naive strategy, under the scenario's faults: the check names the payment the
        // provider charged a second time, at that moment.
        for strategy in ["no-key", "key-in-memory", "key-expires"] {
            let (violation, doubles) = first_double_charge(strategy, 1);
            let v = violation.unwrap_or_else(|| panic!("{strategy}: no double charge caught"));
            assert!(v.why.starts_with("payment ") && v.why.ends_with("was charged 2 times"), "{strategy}: {}", v.why);
            assert!(doubles > 0, "{strategy}: the check failed but the provider counted no double charge");
        }
        for seed in 1..=5 {
            assert_eq!(first_double_charge("key-unique", seed), (None, 0), "key-unique, seed {seed}");
        }
    }

    #[test]
    fn under_load_reconciliation_holds_only_with_a_sweeper_sized_for_the_outage() {
        // 5,000 payments a second: after the loss burst and the slow provider, thousands of
        // payments are stuck in progress. 50 a second per instance leaves the ledger short
        // of the provider for over ten seconds; a bigger batch keeps it whole.
        for seed in 1..=2 {
            let ledger_after = |batch: i64| {
                let recipe = Recipe::new(SPEC.id(), "key-unique", seed)
                    .with_param("clients", 50)
                    .with_param("pay_per_s", 1000)
                    .with_param("instances", 10)
                    .with_param("sweep_batch", batch);
                let (mut run, problems) = open(&SPEC, &recipe);
                assert!(problems.is_empty(), "{problems:?}");
                run.run_until(Time(SPEC.default_until), u64::MAX);
                let all_hold = run.checks().iter().all(|c| c.violation.is_none() || c.id == "ledger-matches");
                assert!(all_hold, "seed {seed}, batch {batch}: another check failed");
                run.checks().iter().find(|c| c.id == "ledger-matches").unwrap().violation.clone()
            };
            let short = ledger_after(50).unwrap_or_else(|| panic!("seed {seed}: a batch of 50 kept up"));
            assert!(short.why.starts_with("the provider made "), "{}", short.why);
            assert_eq!(ledger_after(5_000), None, "seed {seed}: a batch of 5,000 fell behind");
        }
    }

    #[test]
    fn waiters_are_answered_in_the_order_they_came_and_once() {
        let mut w = Waiters::default();
        for (key, client) in [(7, 3), (2, 9), (7, 1), (7, 3), (1 << 32, 4)] {
            w.push(key, client);
        }
        assert_eq!(w.take(7), [3, 1, 3]);
        assert_eq!(w.take(7), [] as [NodeId; 0]);
        assert_eq!(w.take(2), [9]);
        w.push(2, 5);
        assert_eq!(w.take(2), [5]);
        assert_eq!(w.take(1 << 32), [4]);
        assert!(w.by_key.is_empty());
    }

    #[test]
    fn the_sweeper_gets_the_oldest_stale_keys_first() {
        let mut db = Db::default();
        let at = |ms| Time::from_ms(ms);
        let key = |client: u64, n: u64| client << 32 | n;
        // Client 0's keys are the newest; client 9's the oldest.
        for n in 0..60 {
            db.store(key(0, n), KeyState::InProgress { since: at(5_000 + n) }, None);
            db.store(key(9, n), KeyState::InProgress { since: at(1_000 + n) }, None);
        }
        db.store(key(5, 1), KeyState::InProgress { since: at(9_000) }, None);
        // Done, forgotten, or claimed again (in progress since later): out of the way.
        db.store(key(9, 0), KeyState::Done { charge: 7 }, None);
        db.forget(key(9, 1));
        db.store(key(9, 2), KeyState::InProgress { since: at(9_500) }, None);
        let stale = db.stale(at(10_000), 3_000 * MICROS_PER_MS, 50);
        assert_eq!(stale, (3..53).map(|n| key(9, n)).collect::<Vec<_>>());
        // Later, after client 9's are done: client 0's, oldest first; not yet the newer ones.
        for n in 0..60 {
            db.store(key(9, n), KeyState::Done { charge: n }, None);
        }
        let stale = db.stale(at(8_010), 3_000 * MICROS_PER_MS, 50);
        assert_eq!(stale, (0..=10).map(|n| key(0, n)).collect::<Vec<_>>());
        assert_eq!(db.in_progress.len(), 61, "client 0's 60 and client 5's one");
    }

    #[test]
    fn ledger_times_count_like_a_sorted_list() {
        // Times nearly in order with jitter and some far behind; the frontier trails the
        // latest time as the database's messages move it; counts asked at or past it.
        let (mut fast, mut plain) = (LedgerTimes::default(), Vec::new());
        let mut x = 12_345u64;
        for i in 0..5_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let t = Time(if (x >> 20).is_multiple_of(97) {
                (x >> 30) % (i * 100 + 1)
            } else {
                i * 100 + (x >> 40) % 2_000
            });
            fast.insert(t);
            plain.push(t);
            if i.is_multiple_of(3) {
                fast.advance(Time((i * 100).saturating_sub(5_000)));
            }
            if i.is_multiple_of(37) {
                for probe in [fast.frontier.micros(), t.micros(), i * 100, i * 100 + 5_000] {
                    let probe = Time(probe.max(fast.frontier.micros()));
                    let want = plain.iter().filter(|&&p| p < probe).count();
                    assert_eq!(fast.count_before(probe), want, "after {i} insertions, before {probe}");
                }
            }
        }
    }
}
