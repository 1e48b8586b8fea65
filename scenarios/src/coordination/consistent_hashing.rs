//! Consistent hashing: K keys over N cache nodes behind a router. When a node joins,
//! leaves or crashes, mod-N reshuffles almost every key; a hash ring moves only the keys
//! the change must move, virtual nodes even out the load, rendezvous and jump hashing do
//! the same without a ring — jump only when nodes leave from the end.

use faultline_core::*;
use std::collections::BTreeSet;

pub static SPEC: ScenarioSpec = ScenarioSpec {
    info: Info {
        id: "consistent-hashing",
        title: "Consistent hashing",
        category: "Coordination",
        seeds: &["S0#9", "S1#7", "S3#33"],
        summary: "A node joins, one leaves, one crashes. Hashing mod N moves almost every key each time (and every \
                  moved key is a cache miss); a ring moves about 1/N of them, virtual nodes balance the load, \
                  rendezvous and jump hashing need no ring at all.",
        note: Note {
            what_can_go_wrong: "With `hash(key) mod N`, changing N remaps nearly every key: a cache cluster that \
                gains or loses one node loses most of its hit ratio at once and the database behind it takes the \
                full load. A plain ring with one point per node moves little but balances badly: some nodes own \
                several times their share.",
            what_you_sacrifice: "Virtual nodes cost memory and lookup time (N × V points); rendezvous hashing costs \
                O(N) per lookup; jump hash is tiny and perfectly balanced but numbers its buckets 0..N−1, so only \
                the last node can leave without extra movement.",
            at_10x: "With ten times the nodes, membership changes are routine: without consistent hashing every \
                deploy is a cold cache. Hot keys stay hot wherever they land — replicate them or add a local \
                cache; rebalancing should be throttled so moved keys do not stampede the origin.",
            resembles: "Amazon Dynamo and Cassandra token rings with vnodes, memcached clients (ketama), Envoy's \
                ring-hash and Maglev balancers, Google's jump consistent hash (Lamping & Veach 2014), rendezvous \
                (highest random weight) hashing in CARP and Ceph's CRUSH.",
            try_this: &[
                "Play `mod-n`: at 8 s a sixth node joins and about 5/6 of the keys move — the hit ratio dips and \
                 `bounded-movement` fails.",
                "Switch to `ring`: only the new node's keys move, but look at load max/mean (often 2× or more).",
                "Switch to `ring-vnodes` and slide the virtual-node count from 1 to 200: the load evens out.",
                "Try `jump`: joins move the minimum, but removing a node from the middle (16 s) also moves the last \
                 node's keys.",
            ],
        },
    },
    params: &[
        ParamSpec {
            id: "nodes",
            label: "Nodes at start",
            unit: "",
            min: 1,
            max: 15,
            step: 1,
            default: 5,
            live: false,
            help: "Cache nodes in the cluster at the start (up to 16 exist; the rest wait to join).",
        },
        ParamSpec {
            id: "keys",
            label: "Keys",
            unit: "",
            min: 100,
            max: 200_000,
            step: 100,
            default: 5000,
            live: false,
            help: "Distinct keys, read uniformly.",
        },
        ParamSpec {
            id: "vnodes",
            label: "Virtual nodes",
            unit: "per node",
            min: 1,
            max: 1000,
            step: 1,
            default: 100,
            live: false,
            help: "ring-vnodes: points each node places on the ring.",
        },
        ParamSpec {
            id: "rps",
            label: "Request rate",
            unit: "req/s",
            min: 1,
            max: 100_000,
            step: 1,
            default: 2000,
            live: false,
            help: "Reads per second from the clients.",
        },
    ],
    strategies: &[
        StrategySpec { id: "mod-n", label: "hash mod N", naive: true, help: "owner = members[hash(key) mod N]." },
        StrategySpec {
            id: "ring",
            label: "Hash ring",
            naive: false,
            help: "One point per node; a key belongs to the next point clockwise.",
        },
        StrategySpec {
            id: "ring-vnodes",
            label: "Ring + virtual nodes",
            naive: false,
            help: "Each node places `vnodes` points on the ring.",
        },
        StrategySpec {
            id: "rendezvous",
            label: "Rendezvous (HRW)",
            naive: false,
            help: "owner = the member with the highest hash(key, node).",
        },
        StrategySpec {
            id: "jump",
            label: "Jump consistent hash",
            naive: false,
            help: "Lamping & Veach: buckets 0..N−1; a node leaving from the middle takes the last bucket's place.",
        },
    ],
    faults: &[
        FaultSpec {
            id: "add-node",
            label: "Add a node",
            target: Target::Global,
            value_label: "",
            value_min: 0,
            value_max: 0,
            value_default: 0,
            help: "The next waiting node joins the cluster.",
        },
        FaultSpec {
            id: "remove-node",
            label: "Remove this node",
            target: Target::Node,
            value_label: "",
            value_min: 0,
            value_max: 0,
            value_default: 0,
            help: "This node leaves the cluster gracefully (decommissioned).",
        },
    ],
    checks: &[CheckSpec {
        id: "bounded-movement",
        label: "Only the keys that must move, move",
        help: "On a join every moved key goes to the new node; on a leave or crash every moved key comes from the \
               node that left (for jump, also from the last bucket, which takes its place).",
    }],
    metrics: &[
        MetricSpec {
            id: "moved",
            label: "Keys moved at last change",
            unit: "%",
            measure: Measure::GaugePer("moved_bp", 100.0),
        },
        MetricSpec { id: "ideal", label: "Ideal move (1/N)", unit: "%", measure: Measure::GaugePer("ideal_bp", 100.0) },
        MetricSpec {
            id: "load_max_mean",
            label: "Load max / mean",
            unit: "×",
            measure: Measure::GaugePer("max_mean_milli", 1000.0),
        },
        MetricSpec {
            id: "load_spread",
            label: "Load spread (stddev / mean)",
            unit: "",
            measure: Measure::GaugePer("spread_milli", 1000.0),
        },
        MetricSpec {
            id: "hit_ratio",
            label: "Hit ratio",
            unit: "%",
            measure: Measure::Percent { num: "hits", rest: "misses" },
        },
        MetricSpec { id: "members", label: "Nodes in the cluster", unit: "", measure: Measure::Gauge("members") },
    ],
    layout: Layout::Ring,
    default_until: 32 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

const ROUTER: NodeId = 0;
const FIRST: NodeId = 1;
const MAX_NODES: u32 = 16;
const CLIENTS: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    ModN,
    Ring,
    Vnodes,
    Rendezvous,
    Jump,
}

impl Strategy {
    fn from_id(id: &str) -> Strategy {
        match id {
            "ring" => Strategy::Ring,
            "ring-vnodes" => Strategy::Vnodes,
            "rendezvous" => Strategy::Rendezvous,
            "jump" => Strategy::Jump,
            _ => Strategy::ModN,
        }
    }
}

/// SplitMix64's finaliser: a fixed, well-mixed 64-bit hash.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn hash2(a: u64, b: u64) -> u64 {
    mix(mix(a.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ b.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

/// Jump consistent hash (Lamping & Veach 2014): a bucket in 0..n.
fn jump(mut key: u64, n: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

#[derive(Clone, Debug)]
pub enum Msg {
    Get {
        key: u32,
        sent: Time,
    },
    Fwd {
        key: u32,
        client: NodeId,
        sent: Time,
    },
    Answer {
        sent: Time,
    },
    Ping,
    Pong,
    /// The router tells a waiting node it is now in the cluster.
    Join,
    /// A node leaves gracefully.
    Leave,
}

impl Label for Msg {
    fn label(&self) -> &'static str {
        match self {
            Msg::Get { .. } => "get",
            Msg::Fwd { .. } => "forward",
            Msg::Answer { .. } => "answer",
            Msg::Ping => "ping",
            Msg::Pong => "pong",
            Msg::Join => "join",
            Msg::Leave => "leave",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Timer {
    Request,
    Health,
}

impl Label for Timer {
    fn label(&self) -> &'static str {
        match self {
            Timer::Request => "request",
            Timer::Health => "health-check",
        }
    }
}

#[derive(Clone, Debug)]
pub enum Ch {
    Client { rps: f64 },
    Router(Box<Router>),
    Cache { index: u32, held: BTreeSet<u32>, member: bool },
}

#[derive(Clone, Debug)]
pub struct Router {
    strategy: Strategy,
    keys: u32,
    vnodes: u32,
    /// Members in join order: jump uses this as its bucket order.
    members: Vec<NodeId>,
    ring: Vec<(u64, NodeId)>,
    owner: Vec<NodeId>,
    last_pong: Vec<Time>,
    /// Moves that broke the strategy's rule, and a description of the first.
    bad_moves: u64,
    first_bad: String,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ch> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 2_000 }));
    let start = setup.param("nodes") as u32;
    let router = Router::new(
        Strategy::from_id(setup.strategy()),
        start,
        setup.param("keys") as u32,
        setup.param("vnodes") as u32,
    );
    assert_eq!(sim.add_node(Ch::Router(Box::new(router))), ROUTER);
    for index in 0..MAX_NODES {
        sim.add_node(Ch::Cache { index, held: BTreeSet::new(), member: index < start });
    }
    for _ in 0..CLIENTS {
        sim.add_node(Ch::Client { rps: setup.param("rps") as f64 / CLIENTS as f64 });
    }
    let custom = |id: &str, node| Fault::Custom { id: id.into(), node, value: 0 };
    sim.schedule(Time::from_secs(8), custom("add-node", None));
    if start > 1 {
        sim.schedule(Time::from_secs(16), custom("remove-node", Some(FIRST + 1)));
    }
    if start > 3 {
        sim.schedule(Time::from_secs(24), Fault::Crash { node: FIRST + 2 });
    }
    sim.check("bounded-movement", |w| {
        let Ch::Router(r) = &w.nodes[ROUTER as usize] else { unreachable!() };
        if r.bad_moves > 0 {
            Err(r.first_bad.clone())
        } else {
            Ok(())
        }
    });
    Box::new(sim)
}

impl Router {
    /// A router over the first `nodes` caches, its ring built and every key assigned.
    fn new(strategy: Strategy, nodes: u32, keys: u32, vnodes: u32) -> Router {
        let mut r = Router {
            strategy,
            keys,
            vnodes,
            members: (0..nodes).map(|i| FIRST + i).collect(),
            ring: Vec::new(),
            owner: Vec::new(),
            last_pong: vec![Time::ZERO; MAX_NODES as usize],
            bad_moves: 0,
            first_bad: String::new(),
        };
        r.rebuild();
        r.owner = r.assign();
        r
    }

    fn rebuild(&mut self) {
        self.ring.clear();
        let points = match self.strategy {
            Strategy::Ring => 1,
            Strategy::Vnodes => self.vnodes,
            _ => 0,
        };
        for &m in &self.members {
            for v in 0..points {
                self.ring.push((hash2(m as u64, v as u64), m));
            }
        }
        self.ring.sort_unstable();
    }

    fn owner_of(&self, key: u32) -> NodeId {
        let h = mix(key as u64 + 1);
        let n = self.members.len();
        match self.strategy {
            Strategy::ModN => {
                let mut sorted = self.members.clone();
                sorted.sort_unstable();
                sorted[(h % n as u64) as usize]
            }
            Strategy::Ring | Strategy::Vnodes => {
                let i = self.ring.partition_point(|&(p, _)| p < h);
                self.ring[i % self.ring.len()].1
            }
            Strategy::Rendezvous => {
                *self.members.iter().max_by_key(|&&m| (hash2(key as u64, m as u64), m)).expect("members")
            }
            Strategy::Jump => self.members[jump(h, n as u32) as usize],
        }
    }

    fn assign(&self) -> Vec<NodeId> {
        if self.members.is_empty() {
            return vec![ROUTER; self.keys as usize];
        }
        if self.strategy == Strategy::ModN {
            let mut sorted = self.members.clone();
            sorted.sort_unstable();
            return (0..self.keys).map(|k| sorted[(mix(k as u64 + 1) % sorted.len() as u64) as usize]).collect();
        }
        (0..self.keys).map(|k| self.owner_of(k)).collect()
    }

    /// Applies a membership change, counts the keys it moved and checks them against the rule.
    fn change(&mut self, joined: Option<NodeId>, left: Option<NodeId>, ctx: &mut Ctx<Ch>) {
        let before_last = self.members.last().copied();
        if let Some(j) = joined {
            if self.members.contains(&j) {
                return;
            }
            self.members.push(j);
        }
        if let Some(l) = left {
            let Some(i) = self.members.iter().position(|&m| m == l) else { return };
            if self.strategy == Strategy::Jump {
                self.members.swap_remove(i); // the last bucket takes the leaver's place
            } else {
                self.members.remove(i);
            }
        }
        self.rebuild();
        let after = self.assign();
        let mut moved = 0u64;
        for (k, (&old, &new)) in self.owner.iter().zip(&after).enumerate() {
            if old == new {
                continue;
            }
            moved += 1;
            let allowed = match (joined, left) {
                (Some(j), _) => new == j,
                (_, Some(l)) => old == l || (self.strategy == Strategy::Jump && Some(old) == before_last),
                _ => true,
            };
            if !allowed && self.bad_moves == 0 {
                self.first_bad = format!(
                    "key {k} moved from node {} to node {} although neither {}",
                    old - FIRST,
                    new - FIRST,
                    if joined.is_some() { "is the node that joined" } else { "is the node that left" }
                );
            }
            self.bad_moves += !allowed as u64;
        }
        self.owner = after;
        let n = self.members.len().max(1) as i64;
        ctx.gauge("moved_bp", (moved * 10_000 / self.keys.max(1) as u64) as i64);
        // The minimum: the joiner's fair share, or the leaver's.
        let ideal = if joined.is_some() { 10_000 / n } else { 10_000 / (n + 1) };
        ctx.gauge("ideal_bp", ideal);
        ctx.note(format!("membership now {} nodes: {:.1}% of keys moved", n, moved as f64 * 100.0 / self.keys as f64));
        self.publish(ctx);
    }

    fn publish(&self, ctx: &mut Ctx<Ch>) {
        let n = self.members.len();
        ctx.gauge("members", n as i64);
        if n == 0 {
            return;
        }
        let loads: Vec<f64> =
            self.members.iter().map(|m| self.owner.iter().filter(|&&o| o == *m).count() as f64).collect();
        let mean = self.keys as f64 / n as f64;
        let max = loads.iter().cloned().fold(0.0, f64::max);
        let var = loads.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / n as f64;
        ctx.gauge("max_mean_milli", (max / mean * 1000.0) as i64);
        ctx.gauge("spread_milli", (libm::sqrt(var) / mean * 1000.0) as i64);
    }

    /// The ring as arcs: each point owns the stretch from the previous point up to itself.
    fn arcs(&self) -> Vec<Arc> {
        if !matches!(self.strategy, Strategy::Ring | Strategy::Vnodes) || self.ring.is_empty() {
            return Vec::new();
        }
        let turn = |p: u64| (p as f64 / u64::MAX as f64) as f32;
        let mut arcs = Vec::with_capacity(self.ring.len() + 1);
        for (i, &(p, owner)) in self.ring.iter().enumerate() {
            let prev = if i == 0 { self.ring[self.ring.len() - 1].0 } else { self.ring[i - 1].0 };
            if prev < p {
                arcs.push(Arc { start: turn(prev), end: turn(p), owner });
            } else {
                arcs.push(Arc { start: turn(prev), end: 1.0, owner });
                arcs.push(Arc { start: 0.0, end: turn(p), owner });
            }
        }
        arcs
    }
}

impl Node for Ch {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        match self {
            Ch::Client { rps } => {
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Request);
            }
            Ch::Router(r) => {
                r.publish(ctx);
                ctx.set_timer(250 * MICROS_PER_MS, Timer::Health);
            }
            Ch::Cache { member: true, .. } => ctx.send(ROUTER, Msg::Pong),
            Ch::Cache { .. } => {}
        }
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            (Ch::Router(r), Msg::Get { key, sent }) => {
                let key = key % r.keys;
                let owner = r.owner[key as usize];
                if owner != ROUTER {
                    ctx.send(owner, Msg::Fwd { key, client: from, sent });
                }
            }
            (Ch::Router(r), Msg::Leave) => r.change(None, Some(from), ctx),
            (Ch::Cache { member, .. }, Msg::Join) => {
                *member = true;
                ctx.send(ROUTER, Msg::Pong);
            }
            (Ch::Router(r), Msg::Pong) => {
                r.last_pong[(from - FIRST) as usize] = ctx.now();
                if !r.members.contains(&from) {
                    r.change(Some(from), None, ctx); // back after a restart
                }
            }
            (Ch::Cache { held, .. }, Msg::Fwd { key, client, sent }) => {
                if held.insert(key) {
                    ctx.count("misses", 1);
                } else {
                    ctx.count("hits", 1);
                }
                ctx.send(client, Msg::Answer { sent });
            }
            (Ch::Cache { member: true, .. }, Msg::Ping) => ctx.send(ROUTER, Msg::Pong),
            (Ch::Client { .. }, Msg::Answer { sent }) => ctx.observe("latency_us", ctx.now().since(sent)),
            _ => {}
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ch::Client { rps }, Timer::Request) => {
                let key = ctx.rng().next_u64() as u32;
                let now = ctx.now();
                ctx.send(ROUTER, Msg::Get { key, sent: now });
                let gap = ctx.rng().exponential(1e6 / *rps) as Micros;
                ctx.set_timer(gap, Timer::Request);
            }
            (Ch::Router(r), Timer::Health) => {
                let now = ctx.now();
                for m in r.members.clone() {
                    if now.since(r.last_pong[(m - FIRST) as usize]) > MICROS_PER_S {
                        ctx.note(format!("node {} missed its health checks: removing it", m - FIRST));
                        r.change(None, Some(m), ctx);
                    } else {
                        ctx.send(m, Msg::Ping);
                    }
                }
                ctx.set_timer(250 * MICROS_PER_MS, Timer::Health);
            }
            _ => {}
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        if let Ch::Cache { held, .. } = self {
            held.clear();
        }
    }

    fn on_control(&mut self, c: Control, ctx: &mut Ctx<Self>) {
        match (self, c) {
            (Ch::Router(r), Control::Custom { id: "add-node", .. }) => {
                // The lowest waiting node joins; it starts answering health checks.
                if let Some(n) = (FIRST..FIRST + MAX_NODES).find(|n| !r.members.contains(n)) {
                    r.last_pong[(n - FIRST) as usize] = ctx.now();
                    ctx.send(n, Msg::Join);
                    r.change(Some(n), None, ctx);
                }
            }
            (Ch::Cache { member, .. }, Control::Custom { id: "remove-node", .. }) if *member => {
                *member = false;
                ctx.send(ROUTER, Msg::Leave);
            }
            (Ch::Router(r), Control::Strategy(id)) => {
                r.strategy = Strategy::from_id(id);
                r.rebuild();
                r.owner = r.assign();
                r.publish(ctx);
            }
            (Ch::Router(r), Control::Param { id: "vnodes", value }) => {
                r.vnodes = value as u32;
                r.rebuild();
                r.owner = r.assign();
                r.publish(ctx);
            }
            (Ch::Client { rps }, Control::Param { id: "rps", value }) => *rps = value as f64 / CLIENTS as f64,
            _ => {}
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ch::Client { .. } => NodeView::new(NodeKind::Client, 0, "clients"),
            Ch::Router(r) => NodeView::new(NodeKind::LoadBalancer, 0, "router")
                .badge(format!("{} nodes", r.members.len()), Tone::Neutral)
                .arcs(r.arcs()),
            Ch::Cache { index, held, member } => {
                let v = NodeView::new(NodeKind::Cache, 1, numbered("node", *index as u64)).gauge(
                    "keys held",
                    held.len() as i64,
                    10_000,
                );
                if *member {
                    v
                } else {
                    v.badge("not in the cluster", Tone::Neutral)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(strategy: Strategy, nodes: u32, keys: u32, vnodes: u32) -> Router {
        Router::new(strategy, nodes, keys, vnodes)
    }

    /// With 1000 virtual nodes a node's share varies by about 3%, so the tolerance below holds.
    fn moved_on_join(strategy: Strategy, n: u32) -> f64 {
        let r = router(strategy, n, 50_000, 1000);
        let mut bigger = router(strategy, n + 1, 50_000, 1000);
        bigger.members = r.members.iter().copied().chain([FIRST + n]).collect();
        bigger.rebuild();
        let after = bigger.assign();
        r.owner.iter().zip(&after).filter(|(a, b)| a != b).count() as f64 / 50_000.0
    }

    #[test]
    fn joins_move_the_textbook_fraction() {
        for n in [3, 5, 9] {
            let ideal = 1.0 / (n + 1) as f64;
            for s in [Strategy::Vnodes, Strategy::Rendezvous, Strategy::Jump] {
                let moved = moved_on_join(s, n);
                assert!((moved - ideal).abs() < 0.02, "{s:?} n={n}: moved {moved:.3}, ideal {ideal:.3}");
            }
            // mod N remaps all but about 1/(N+1) of the keys.
            let m = moved_on_join(Strategy::ModN, n);
            assert!((m - n as f64 / (n + 1) as f64).abs() < 0.02, "mod-n n={n}: {m:.3}");
        }
    }

    #[test]
    fn virtual_nodes_balance_the_load() {
        let load = |r: &Router| {
            let per: Vec<usize> = r.members.iter().map(|m| r.owner.iter().filter(|&&o| o == *m).count()).collect();
            *per.iter().max().unwrap() as f64 / (r.keys as f64 / r.members.len() as f64)
        };
        assert!(load(&router(Strategy::Vnodes, 8, 50_000, 200)) < 1.15);
        assert!(load(&router(Strategy::Rendezvous, 8, 50_000, 0)) < 1.05);
        assert!(load(&router(Strategy::Jump, 8, 50_000, 0)) < 1.05);
        // One point per node: some node usually owns far more than its share.
        let plain: f64 = (0..5).map(|n| load(&router(Strategy::Ring, 8 + n, 50_000, 1))).sum::<f64>() / 5.0;
        assert!(plain > 1.5, "plain ring max/mean {plain}");
    }

    #[test]
    fn jump_hash_is_in_range_and_monotone() {
        assert_eq!(jump(0, 1), 0);
        assert_eq!(jump(1, 1), 0);
        for n in 1..100 {
            assert!(jump(123_456_789, n) < n);
        }
        // Monotone: a key moves only to the newly added bucket.
        for key in 0..2000u64 {
            let k = mix(key);
            for n in 1..20 {
                let (a, b) = (jump(k, n), jump(k, n + 1));
                assert!(a == b || b == n);
            }
        }
    }
}
