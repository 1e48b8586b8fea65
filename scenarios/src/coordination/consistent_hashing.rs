//! Consistent hashing: K keys over N cache nodes behind a router. When a node joins,
//! leaves or crashes, mod-N reshuffles almost every key; a hash ring moves only the keys
//! the change must move, virtual nodes even out the load, rendezvous and jump hashing do
//! the same without a ring — jump only when nodes leave from the end.

use crate::parts::arrivals::OpenLoop;
use crate::parts::ring::mix;
use crate::parts::table::KeyTable;
use faultline_core::*;

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
                several times their share. The model: reads of uniformly random keys arrive as a Poisson stream; \
                caches never evict, so a miss is a key's first read at its owner; the router re-places keys at once \
                (no handoff) and takes out a member silent for 1 s; hashes are fixed, so placement is seed-free.",
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
                "Switch to `ring`: only the new node's keys move, but look at load max/mean: 2.8× with these 5 \
                 nodes (with one point each, the biggest share averages H_N times the mean: 2.3 for N = 5).",
                "Switch to `ring-vnodes` and slide the virtual-node count from 1 to 200: the load evens out.",
                "Try `jump`: joins move the minimum, but removing node 1 from the middle (16 s) moves 30% of the \
                 keys, not 17%: the last node takes over its bucket, and most of the last bucket's keys move too.",
            ],
        },
    },
    params: &[
        ParamSpec::setup("nodes", "Nodes at start", "", 1..=15, 5, "Cache nodes in the cluster at first (of 16)."),
        ParamSpec::setup("keys", "Keys", "", 100..=200_000, 5000, "Distinct keys, read uniformly.").step(100),
        ParamSpec::live("vnodes", "Virtual nodes", "per node", 1..=1000, 100, "ring-vnodes: points per node."),
        ParamSpec::live("rps", "Request rate", "req/s", 1..=100_000, 2000, "Reads per second, Poisson."),
    ],
    strategies: &[
        StrategySpec::naive("mod-n", "hash mod N", "owner = members[hash(key) mod N]."),
        StrategySpec::fixed("ring", "Hash ring", "One point per node; a key belongs to the next point clockwise."),
        StrategySpec::fixed("ring-vnodes", "Ring + virtual nodes", "Each node places `vnodes` points on the ring."),
        StrategySpec::fixed("rendezvous", "Rendezvous (HRW)", "owner = the member with the highest hash(key, node)."),
        StrategySpec::fixed("jump", "Jump consistent hash", "Lamping & Veach: buckets 0..N−1; the last fills a gap."),
    ],
    faults: &[
        FaultSpec::global("add-node", "Add a node", "The next waiting node joins the cluster."),
        FaultSpec::node("remove-node", "Remove this node", "This node leaves the cluster gracefully (decommissioned)."),
    ],
    checks: &[CheckSpec::new(
        "bounded-movement",
        "Only the keys that must move, move",
        "On a join every moved key goes to the new node; on a leave or crash every moved key comes from the node \
         that left (for jump, also from the last bucket, which takes its place).",
    )],
    metrics: &[
        MetricSpec::new("moved", "Keys moved at last membership change", "%", Measure::GaugePer("moved_bp", 100.0)),
        MetricSpec::new("ideal", "Ideal move (1/N of the larger cluster)", "%", Measure::GaugePer("ideal_bp", 100.0)),
        MetricSpec::new("load_max_mean", "Keys per node: max / mean", "×", Measure::GaugePer("max_mean_milli", 1000.0)),
        MetricSpec::new("load_spread", "Keys per node: stddev / mean", "", Measure::GaugePer("spread_milli", 1000.0)),
        MetricSpec::new("hit_ratio", "Hit ratio", "%", Measure::Percent { num: "hits", rest: "misses" }),
        MetricSpec::new("members", "Nodes in the cluster", "", Measure::Gauge("members")),
    ],
    layout: Layout::Ring,
    default_until: 32 * MICROS_PER_S,
    sample_every: 100 * MICROS_PER_MS,
    build,
};

const ROUTER: NodeId = 0;
const FIRST: NodeId = 1;
const MAX_NODES: u32 = 16;
/// The router pings its members this often; one silent for `TIMEOUT` is taken out of the cluster.
const PING: Micros = 250 * MICROS_PER_MS;
const TIMEOUT: Micros = MICROS_PER_S;

fn hash2(a: u64, b: u64) -> u64 {
    mix(mix(a.wrapping_add(0x9e37_79b9_7f4a_7c15)) ^ b.wrapping_mul(0xff51_afd7_ed55_8ccd))
}

/// Jump consistent hash (Lamping & Veach 2014, their code line for line): a bucket in 0..n.
fn jump(mut key: u64, n: u32) -> u32 {
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < n as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// Where each key lives: the lesson's five functions of a key and the members.
#[derive(Clone, Debug)]
pub struct Placement {
    /// The strategy's id.
    strategy: &'static str,
    vnodes: u32,
    /// In join order: jump's buckets and mod-N's server list.
    members: Vec<NodeId>,
    /// Ring points (position, owner), sorted: one per member for `ring`, `vnodes` for `ring-vnodes`.
    ring: Vec<(u64, NodeId)>,
}

impl Placement {
    fn new(strategy: &'static str, vnodes: u32, members: Vec<NodeId>) -> Placement {
        let mut p = Placement { strategy, vnodes, members, ring: Vec::new() };
        p.rebuild();
        p
    }

    fn rebuild(&mut self) {
        let points = match self.strategy {
            "ring" => 1,
            "ring-vnodes" => self.vnodes,
            _ => 0,
        };
        self.ring =
            self.members.iter().flat_map(|&m| (0..points).map(move |v| (hash2(m as u64, v as u64), m))).collect();
        self.ring.sort_unstable();
    }

    /// The owner of `key` (the router itself when the cluster is empty).
    fn owner(&self, key: u32) -> NodeId {
        let (h, n) = (mix(key as u64 + 1), self.members.len());
        match self.strategy {
            _ if n == 0 => ROUTER,
            "mod-n" => self.members[(h % n as u64) as usize],
            "ring" | "ring-vnodes" => {
                self.ring[self.ring.partition_point(|&(p, _)| p < h) % self.ring.len()].1
            }
            "rendezvous" => *self.members.iter().max_by_key(|&&m| (hash2(key as u64, m as u64), m)).unwrap(),
            _ /* jump */ => self.members[jump(h, n as u32) as usize],
        }
    }
}

/// Keys owned per member: (max / mean, population stddev / mean).
fn balance(owner: &[NodeId], members: &[NodeId]) -> (f64, f64) {
    let mut per = vec![0u32; *members.iter().max().unwrap() as usize + 1];
    owner.iter().for_each(|&o| per[o as usize] += 1);
    let loads: Vec<f64> = members.iter().map(|&m| per[m as usize] as f64).collect();
    let mean = owner.len() as f64 / members.len() as f64;
    let var = loads.iter().map(|l| (l - mean) * (l - mean)).sum::<f64>() / members.len() as f64;
    (loads.iter().cloned().fold(0.0, f64::max) / mean, libm::sqrt(var) / mean)
}

/// A read sent to its owner (forward; the answer is not modelled), the health check (ping,
/// pong), the router adding a node (join) and a node leaving gracefully (leave).
#[derive(Clone, Debug, Label)]
pub enum Msg {
    Forward { key: u32 },
    Ping,
    Pong,
    Join,
    Leave,
}

#[derive(Clone, Debug, Label)]
pub enum Timer {
    Request,
    HealthCheck,
}

#[derive(Clone, Debug, Holds)]
pub enum Ch {
    Router(Router),
    Cache(Cache),
}

/// A cache node. It never evicts: it holds every key it was asked for since it last started.
#[derive(Clone, Debug)]
pub struct Cache {
    index: u32,
    member: bool,
    held: KeyTable<()>,
    gauge_max: i64, // twice a fair share of the keys
}

#[derive(Clone, Debug)]
pub struct Router {
    /// Every client's reads (the router is the proxy they share, like mcrouter or twemproxy).
    src: OpenLoop,
    place: Placement,
    owner: Vec<NodeId>,   // by key
    last_seen: Vec<Time>, // by node id: when the router last heard from it
    /// The latest re-placement that broke the strategy's rule (its first bad move) and when.
    last_bad: Option<(String, Time)>,
}

fn build(setup: &Setup) -> Box<dyn Run> {
    let mut sim: Sim<Ch> = Sim::new(setup, Link::with_latency(Latency::Uniform { lo: 500, hi: 2_000 }));
    let (start, keys) = (setup.param("nodes") as u32, setup.param("keys") as u32);
    let place = Placement::new(setup.strategy(), setup.param("vnodes") as u32, (FIRST..FIRST + start).collect());
    let (last_seen, owner) =
        (vec![Time::ZERO; (FIRST + MAX_NODES) as usize], (0..keys).map(|k| place.owner(k)).collect());
    let src = OpenLoop::poisson(setup.param("rps") as f64);
    sim.add_node(Ch::Router(Router { src, place, owner, last_seen, last_bad: None }));
    for index in 0..MAX_NODES {
        let gauge_max = (2 * keys / start) as i64;
        sim.add_node(Ch::Cache(Cache { index, member: index < start, held: KeyTable::default(), gauge_max }));
    }
    sim.schedule(Time::from_secs(8), Fault::custom("add-node", 0));
    if start > 1 {
        sim.schedule(Time::from_secs(16), Fault::custom_on("remove-node", FIRST + 1, 0));
    }
    if start > 3 {
        sim.schedule(Time::from_secs(24), Fault::Crash { node: FIRST + 2 });
    }
    let bad_now = |w: &World<Ch>| w.node::<Router>(ROUTER).last_bad.clone().filter(|(_, at)| *at == w.now);
    sim.check("bounded-movement", move |w| bad_now(w).map_or(Ok(()), |(why, _)| Err(why)));
    Box::new(sim)
}

impl Router {
    /// Re-places every key after `what` happened, notes the share that changed owner, keeps
    /// the first move against the rule `allowed(old, new)` and publishes; returns the moves.
    fn replace(&mut self, what: &str, allowed: impl Fn(NodeId, NodeId) -> bool, ctx: &mut Ctx<Ch>) -> u64 {
        self.place.rebuild();
        let after: Vec<NodeId> = (0..self.owner.len() as u32).map(|k| self.place.owner(k)).collect();
        let (mut moved, mut bad) = (0, None);
        for (k, (&old, &new)) in self.owner.iter().zip(&after).enumerate().filter(|(_, (o, n))| o != n) {
            moved += 1;
            if bad.is_none() && !allowed(old, new) {
                bad = Some(format!("key {k} moved from node {} to node {} when {what}", old - FIRST, new - FIRST));
            }
        }
        self.last_bad = bad.map(|why| (why, ctx.truth())).or(self.last_bad.take());
        self.owner = after;
        ctx.note(format!("{what}: {:.1}% of keys changed owner", moved as f64 * 100.0 / self.owner.len() as f64));
        self.publish(ctx);
        moved
    }

    /// `node` joins (or leaves) the cluster: the keys that moves, checked against the rule.
    fn change(&mut self, node: NodeId, joins: bool, ctx: &mut Ctx<Ch>) {
        let (members, jump) = (&mut self.place.members, self.place.strategy == "jump");
        let last = members.last().copied();
        match members.iter().position(|&m| m == node) {
            None if joins => members.push(node),
            Some(i) if !joins && jump => _ = members.swap_remove(i), // the last bucket takes the leaver's place
            Some(i) if !joins => _ = members.remove(i),
            _ => return, // already a member, or already gone
        }
        let what = format!("node {} {}", node - FIRST, if joins { "joined" } else { "left" });
        // Every moved key goes to the joiner, or comes from the leaver (for jump, also from the last bucket).
        let rule = |old, new| if joins { new == node } else { old == node || (jump && Some(old) == last) };
        let moved = self.replace(&what, rule, ctx);
        let n = self.place.members.len() as u64;
        ctx.gauge("moved_bp", (moved * 10_000 / self.owner.len() as u64) as i64);
        // The least any scheme can move: the joiner's fair share, or the leaver's.
        ctx.gauge("ideal_bp", (10_000 / (n + !joins as u64)) as i64);
    }

    fn publish(&self, ctx: &mut Ctx<Ch>) {
        ctx.gauge("members", self.place.members.len() as i64);
        if !self.place.members.is_empty() {
            let (max_mean, spread) = balance(&self.owner, &self.place.members);
            ctx.gauge("max_mean_milli", (max_mean * 1000.0) as i64);
            ctx.gauge("spread_milli", (spread * 1000.0) as i64);
        }
    }

    /// The ring as arcs: each point owns the stretch from the point before it up to itself.
    fn arcs(&self) -> Vec<Arc> {
        let (ring, turn) = (&self.place.ring, |p: u64| (p as f64 / u64::MAX as f64) as f32);
        let Some(&(last, _)) = ring.last() else { return Vec::new() };
        // The first point's stretch wraps around: from the last point to the top, then on.
        let mut arcs = vec![Arc { start: turn(last), end: 1.0, owner: ring[0].1 }];
        let starts = std::iter::once(0.0).chain(ring.iter().map(|&(p, _)| turn(p)));
        arcs.extend(ring.iter().zip(starts).map(|(&(p, owner), start)| Arc { start, end: turn(p), owner }));
        arcs
    }
}

impl Node for Ch {
    type Msg = Msg;
    type Timer = Timer;

    fn on_start(&mut self, ctx: &mut Ctx<Self>) {
        if let Ch::Router(r) = self {
            r.last_seen.fill(ctx.now()); // after a restart, a full timeout before judging anyone
            r.publish(ctx);
            r.src.start(ctx, Timer::Request);
            ctx.set_timer(PING, Timer::HealthCheck);
        } // (a cache only answers what it is sent)
    }

    fn on_message(&mut self, from: NodeId, msg: Msg, ctx: &mut Ctx<Self>) {
        match (self, msg) {
            // (A late pong from a node no longer in the cluster changes nothing: a node taken out
            // stays out until an operator adds it again.)
            (Ch::Router(r), Msg::Pong) => r.last_seen[from as usize] = ctx.now(),
            (Ch::Router(r), Msg::Leave) => r.change(from, false, ctx),
            (Ch::Cache(c), Msg::Forward { key }) => {
                // A miss loads the key. A node that just left still answers what was in flight.
                let hit = c.held.insert(key, ()).is_some();
                ctx.count(if hit { "hits" } else { "misses" }, 1);
            }
            (Ch::Cache(c), Msg::Join) => c.member = true,
            (Ch::Cache(c), Msg::Ping) if c.member => ctx.send(ROUTER, Msg::Pong),
            (Ch::Cache(_), Msg::Ping) => {} // restarted, so no longer in the cluster: silence gets it out
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_timer(&mut self, timer: Timer, ctx: &mut Ctx<Self>) {
        match (self, timer) {
            (Ch::Router(r), Timer::Request) => {
                r.src.on_timer(ctx, Timer::Request);
                let key = ctx.rng().below(r.owner.len() as u64) as u32;
                match r.owner[key as usize] {
                    ROUTER => ctx.count("misses", 1), // nobody in the cluster: the read goes to the origin
                    owner => ctx.send(owner, Msg::Forward { key }),
                }
            }
            (Ch::Router(r), Timer::HealthCheck) => {
                let silent = |m: &NodeId| ctx.now().since(r.last_seen[*m as usize]) > TIMEOUT;
                let silent: Vec<NodeId> = r.place.members.iter().copied().filter(silent).collect();
                for m in silent {
                    ctx.note(format!("node {} missed its health checks: removing it", m - FIRST));
                    r.change(m, false, ctx);
                }
                r.place.members.iter().for_each(|&m| ctx.send(m, Msg::Ping));
                ctx.set_timer(PING, Timer::HealthCheck);
            }
            (_, other) => ctx.unhandled(&other),
        }
    }

    fn on_crash(&mut self, _ctx: &mut Ctx<Self>) {
        if let Ch::Cache(c) = self {
            // A restarted node is a new process, empty and outside the cluster until added.
            (c.member, c.held) = (false, KeyTable::default());
        }
    }

    fn on_control(&mut self, control: Control, ctx: &mut Ctx<Self>) {
        match (self, control) {
            (Ch::Router(r), Control::Custom { id: "add-node", .. }) => {
                // The lowest node not in the cluster joins (if it is down, the health check sees).
                if let Some(n) = (FIRST..FIRST + MAX_NODES).find(|n| !r.place.members.contains(n)) {
                    r.last_seen[n as usize] = ctx.now();
                    ctx.send(n, Msg::Join);
                    r.change(n, true, ctx);
                }
            }
            (Ch::Cache(c), Control::Custom { id: "remove-node", .. }) if c.member => {
                c.member = false;
                c.held.clear(); // decommissioned: if it ever joins again, it starts cold
                ctx.send(ROUTER, Msg::Leave);
            }
            (Ch::Router(r), Control::Strategy(id)) => {
                r.place.strategy = id;
                r.replace(&format!("strategy now {id}"), |_, _| true, ctx); // no membership change: no rule
            }
            (Ch::Router(r), Control::Param { id: "vnodes", value }) => {
                r.place.vnodes = value as u32;
                if r.place.strategy == "ring-vnodes" {
                    r.replace(&format!("{value} virtual nodes per node"), |_, _| true, ctx);
                }
            }
            (Ch::Router(r), Control::Param { id: "rps", value }) => {
                r.src.set_rate_per_s(value as f64, ctx, Timer::Request)
            }
            _ => {} // controls are broadcast: each node acts on its own
        }
    }

    fn view(&self) -> NodeView {
        match self {
            Ch::Router(r) => NodeView::new(NodeKind::LoadBalancer, 0, "router")
                .badge(format!("{} nodes", r.place.members.len()), Tone::Neutral)
                .arcs(r.arcs()),
            Ch::Cache(c) => NodeView::new(NodeKind::Cache, 1, numbered("node", c.index as u64))
                .gauge("keys held", c.held.len() as i64, c.gauge_max)
                .badge_if(!c.member, "not in the cluster", Tone::Neutral),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: u32 = 100_000;

    /// `n` members numbered from `first`: another `first` is another independent draw of the
    /// hashes (the scenario's own nodes are numbered from 1).
    fn place(strategy: &'static str, n: u32, vnodes: u32, first: NodeId) -> Placement {
        Placement::new(strategy, vnodes, (first..first + n).collect())
    }

    fn owners(p: &Placement, keys: u32) -> Vec<NodeId> {
        (0..keys).map(|k| p.owner(k)).collect()
    }

    /// The fraction of K keys that move when a member joins `n`; panics if a consistent
    /// scheme moves one anywhere but to the newcomer.
    fn moved_on_join(strategy: &'static str, n: u32, vnodes: u32, first: NodeId) -> f64 {
        let mut p = place(strategy, n, vnodes, first);
        let before = owners(&p, K);
        p.members.push(first + n);
        p.rebuild();
        let moved: Vec<(NodeId, NodeId)> = before.into_iter().zip(owners(&p, K)).filter(|(a, b)| a != b).collect();
        assert!(strategy == "mod-n" || moved.iter().all(|&(_, to)| to == first + n), "{strategy}: moved elsewhere");
        moved.len() as f64 / K as f64
    }

    #[test]
    fn joins_move_the_textbook_fraction() {
        for n in [3, 5, 9, 14] {
            let p = 1.0 / (n + 1) as f64;
            // Rendezvous: the newcomer's hash beats n others with probability exactly 1/(n+1)
            // (Thaler & Ravishankar 1998); jump: a key moves to the new bucket with probability
            // exactly 1/(n+1) (Lamping & Veach 2014, §3). So the count is Binomial(K, 1/(n+1)):
            // σ = √(p(1−p)/K) ≤ 0.0014, and 4σ is the tolerance.
            let binomial = |p: f64| 4.0 * libm::sqrt(p * (1.0 - p) / K as f64);
            for s in ["rendezvous", "jump"] {
                let moved = moved_on_join(s, n, 0, FIRST);
                assert!((moved - p).abs() < binomial(p), "{s} n={n}: moved {moved:.4}, 1/(n+1) = {p:.4}");
            }
            // mod N keeps a key only if h mod n = h mod (n+1), i.e. h mod n(n+1) < n: all but
            // 1/(n+1) of the keys move, again binomially.
            let m = moved_on_join("mod-n", n, 0, FIRST);
            assert!((m - (1.0 - p)).abs() < binomial(p), "mod-n n={n}: moved {m:.4}, n/(n+1) = {:.4}", 1.0 - p);
            // A ring moves exactly the newcomer's share: with v points each, the (n+1)v arcs are
            // the spacings of uniform points (Dirichlet), so a node's share is Beta(v, nv):
            // variance p(1−p)/((n+1)v+1), plus the keys' binomial noise.
            let v = 1000;
            let sd = libm::sqrt(p * (1.0 - p) / ((n + 1) as f64 * v as f64 + 1.0) + p * (1.0 - p) / K as f64);
            let moved = moved_on_join("ring-vnodes", n, v, FIRST);
            assert!((moved - p).abs() < 4.0 * sd, "ring-vnodes n={n}: moved {moved:.4}, 1/(n+1) = {p:.4}");
        }
        // One point per node: the newcomer's share is Beta(1, n), as likely tiny as large, but
        // 1/(n+1) on average: over 200 draws, σ = p√(n/(n+2)) / √200 ≈ 0.0085 at n = 5.
        let mean = (0..200).map(|d| moved_on_join("ring", 5, 1, 100 + 100 * d)).sum::<f64>() / 200.0;
        assert!((mean - 1.0 / 6.0).abs() < 0.035, "plain ring: moved {mean:.4} on average, 1/6 = 0.1667");
    }

    #[test]
    fn one_point_per_node_the_biggest_owns_h_n_times_its_share_on_average() {
        // n points on a circle: the largest of the n arcs averages H_n / n of the circle, H_n
        // = 1 + 1/2 + … + 1/n (Whitworth 1897; Pyke, "Spacings", JRSS B 27, 1965). So max / mean
        // averages H_n: 2.72 for 8 nodes. Its sd is about √(Σ 1/k²) ≈ 1.2, so over 300 draws
        // the standard error is 0.07 (2.6%): ±8% is 3σ (20,000 keys add under 1% of noise).
        let n = 8;
        let h_n: f64 = (1..=n).map(|k| 1.0 / k as f64).sum();
        let mean = (0..300)
            .map(|d| {
                let p = place("ring", n, 1, 100 + 100 * d);
                balance(&owners(&p, 20_000), &p.members).0
            })
            .sum::<f64>()
            / 300.0;
        assert!((mean / h_n - 1.0).abs() < 0.08, "plain ring: max/mean {mean:.3} on average, H_{n} = {h_n:.3}");
    }

    /// E[max of n Gamma(v)] / v − 1: ∫ (1 − F(x)ⁿ) dx over x ≥ 0 by the midpoint rule, with
    /// 1 − F(x) = P(Poisson(x) < v), the Erlang survival function.
    fn gamma_max_excess(n: u32, v: u32) -> f64 {
        let survival = |x: f64| -> f64 {
            (0..v).map(|k| libm::exp(-x + k as f64 * libm::log(x) - libm::lgamma(k as f64 + 1.0))).sum()
        };
        let (h, end) = (libm::sqrt(v as f64) / 50.0, v as f64 + 12.0 * libm::sqrt(v as f64) + 50.0);
        let steps = (end / h) as usize;
        (0..steps).map(|i| 1.0 - libm::pow(1.0 - survival((i as f64 + 0.5) * h), n as f64)).sum::<f64>() * h / v as f64
            - 1.0
    }

    /// The biggest member's share of the ring (the arcs that end at its points) over the mean.
    fn ring_max_over_mean(p: &Placement) -> f64 {
        let (mut share, mut prev) = (std::collections::BTreeMap::new(), p.ring.last().unwrap().0);
        for &(point, m) in &p.ring {
            *share.entry(m).or_insert(0.0) += point.wrapping_sub(prev) as f64;
            prev = point;
        }
        share.values().fold(0.0, |a: f64, &b| a.max(b)) / (u64::MAX as f64 / p.members.len() as f64)
    }

    #[test]
    fn virtual_nodes_shrink_the_imbalance_like_the_root_of_log_n_over_v() {
        // With v points per node the nv arcs are the spacings of uniform points, so the shares
        // are G_i / ΣG with G_i ~ Gamma(v) (Pyke 1965): relative sd ≈ 1/√v, and max/mean − 1 ≈
        // E[max G_i]/v − 1 → e_n/√v, e_n the mean of the largest of n standard normals, which is
        // below √(2 ln n). Hence the usual rule: O(log n) virtual nodes per node give every node
        // (1 + ε) times its share w.h.p. (Karger et al., STOC 1997; Stoica et al., Chord, 2001).
        // Over 1000 draws of 10 nodes the mean's standard error is 1.1%: ±5% is 4.5σ.
        let n = 10;
        for v in [16, 64, 256] {
            let draws = (0..1000).map(|d| ring_max_over_mean(&place("ring-vnodes", n, v, 100 + 100 * d)) - 1.0);
            let (got, want) = (draws.sum::<f64>() / 1000.0, gamma_max_excess(n, v));
            assert!((got / want - 1.0).abs() < 0.05, "v={v}: max/mean − 1 = {got:.4}, theory {want:.4}");
            assert!(got < libm::sqrt(2.0 * libm::log(n as f64) / v as f64), "v={v}: above √(2 ln n / v)");
        }
        // The Gaussian limit, for the record: e_10 = 1.5388 (Tippett 1925), so 0.096 at v = 256.
        assert!((gamma_max_excess(n, 256) / (1.5388 / 16.0) - 1.0).abs() < 0.03);
    }

    #[test]
    fn rendezvous_and_jump_are_balanced_up_to_sampling_noise() {
        // Each key lands on each of n nodes with probability exactly 1/n, so the counts are
        // multinomial: Pearson's χ² with n − 1 = 9 degrees of freedom stays below 27.88 with
        // probability 99.9%. (A ring with v points is not: its shares are Beta-distributed.)
        for s in ["rendezvous", "jump"] {
            let p = place(s, 10, 0, FIRST);
            let (max_mean, spread) = balance(&owners(&p, K), &p.members);
            let chi2 = spread * spread * K as f64; // Σ (c − m)² / m = n · var / m = K · (sd/m)²
            assert!(chi2 < 27.88, "{s}: χ² = {chi2:.1}");
            assert!(max_mean < 1.03, "{s}: max/mean {max_mean}");
        }
    }

    #[test]
    fn jump_matches_the_reference_vectors_and_only_moves_keys_to_the_new_bucket() {
        // The test vectors every port of Lamping & Veach's code checks (Go, Python, C, Elixir).
        for (key, n, bucket) in [
            (1, 1, 0),
            (42, 57, 43),
            (0xDEAD10CC, 1, 0),
            (0xDEAD10CC, 666, 361),
            (256, 1024, 520),
            (1, 128, 55),
            (129, 128, 120),
            (u64::MAX, 128, 92),
        ] {
            assert_eq!(jump(key, n), bucket, "jump({key}, {n})");
        }
        for key in 0..2000u64 {
            let k = mix(key);
            for n in 1..20 {
                let (a, b) = (jump(k, n), jump(k, n + 1));
                assert!(b < n + 1 && (a == b || b == n), "key {key}: bucket {a} of {n}, then {b}");
            }
        }
    }

    // --- The note's "try this" steps, each in the scenario's default run. ---

    fn run(strategy: &str) -> Box<dyn Run> {
        let (mut run, problems) = open(&SPEC, &Recipe::new(SPEC.id(), strategy, 1));
        assert!(problems.is_empty(), "{problems:?}");
        run.keep_trace(false);
        run
    }

    fn until(run: &mut Box<dyn Run>, ms: u64) -> &Metrics {
        run.run_until(Time(ms * MICROS_PER_MS), u64::MAX);
        run.metrics()
    }

    fn hit_ratio_between(run: &mut Box<dyn Run>, from_ms: u64, to_ms: u64) -> f64 {
        let at = |run: &mut Box<dyn Run>, ms| {
            let m = until(run, ms);
            (m.counter("hits"), m.counter("misses"))
        };
        let ((h0, m0), (h1, m1)) = (at(run, from_ms), at(run, to_ms));
        (h1 - h0) as f64 / ((h1 - h0) + (m1 - m0)) as f64
    }

    #[test]
    fn try_mod_n_moves_five_sixths_and_breaks_the_check() {
        let mut r = run("mod-n");
        let before = hit_ratio_between(&mut r, 6000, 8000);
        let after = hit_ratio_between(&mut r, 8000, 8500);
        // 5/6 of 5000 keys, binomial: σ = 0.53%, so ±3 points is > 5σ.
        let moved = until(&mut r, 8500).gauge("moved_bp") as f64 / 100.0;
        assert!((moved - 500.0 / 6.0).abs() < 3.0, "moved {moved}%, 5/6 = 83.3%");
        assert!(after < before - 0.3, "hit ratio {before:.2} before the join, {after:.2} just after");
        let broken = r.checks().iter().find(|c| c.id == "bounded-movement").and_then(|c| c.violation.clone());
        assert_eq!(broken.map(|v| v.at), Some(Time::from_secs(8)));
        assert_eq!(r.unhandled(), 0);
    }

    #[test]
    fn try_ring_moves_little_but_one_node_owns_far_more_than_its_share() {
        let mut r = run("ring");
        let max_mean = until(&mut r, 7000).gauge("max_mean_milli") as f64 / 1000.0;
        assert!(max_mean > 2.0, "5 nodes, one point each: max/mean {max_mean}");
        let m = until(&mut r, 8500);
        assert!(m.gauge("moved_bp") < 3000, "a join moved {}%", m.gauge("moved_bp") / 100);
        r.run_until(Time::from_secs(32), u64::MAX);
        assert!(r.checks().iter().all(|c| c.violation.is_none()));
    }

    #[test]
    fn try_sliding_the_virtual_nodes_from_1_to_200_evens_the_load() {
        let mut r = run("ring-vnodes");
        until(&mut r, 2000);
        r.inject(ActionKind::SetParam { id: "vnodes".into(), value: 1 }).unwrap();
        let one = until(&mut r, 2500).gauge("max_mean_milli") as f64 / 1000.0;
        r.inject(ActionKind::SetParam { id: "vnodes".into(), value: 200 }).unwrap();
        let many = until(&mut r, 3000).gauge("max_mean_milli") as f64 / 1000.0;
        assert!(one > 1.4 && many < 1.1, "max/mean {one} with 1 virtual node, {many} with 200");
        r.run_until(Time::from_secs(32), u64::MAX);
        assert!(r.checks().iter().all(|c| c.violation.is_none()));
    }

    #[test]
    fn try_jump_joins_move_the_minimum_but_a_middle_leave_moves_30_percent() {
        let mut r = run("jump");
        // 5000 keys: binomial σ ≈ 0.53 points at 1/6 and 0.67 at 1/3; ±3 points is > 4σ.
        let m = until(&mut r, 8500);
        let (moved, ideal) = (m.gauge("moved_bp") as f64 / 100.0, m.gauge("ideal_bp") as f64 / 100.0);
        assert!((moved - ideal).abs() < 3.0, "join: moved {moved}%, ideal {ideal}%");
        // Node 1 of 6 leaves: its 1/6 moves to the last node, which takes its bucket; the last
        // bucket's 1/6 is spread over the 5 left, and only the 1/5 of it that lands on the
        // last node's new bucket stays put: 1/6 + 1/6 · 4/5 = 30%.
        let m = until(&mut r, 16_500);
        let (moved, ideal) = (m.gauge("moved_bp") as f64 / 100.0, m.gauge("ideal_bp") as f64 / 100.0);
        assert!((moved - 30.0).abs() < 3.0 && ideal < 17.0, "leave from the middle: moved {moved}%, ideal {ideal}%");
        r.run_until(Time::from_secs(32), u64::MAX);
        assert!(r.checks().iter().all(|c| c.violation.is_none()));
    }
}
