//! Versioned configs pushed to regions: the service's target per region, a rollout everywhere at once or by stages a bake time apart, a rollback of the regions told a bad version, the signing keys pushed beside; a region's cached copy taken at each cache expiry (or at once for a rollback), its propagation delays and its own rollback.
//!
//! The service ([`ConfigService`]) is pure bookkeeping: each call returns the pushes to send,
//! `(region, Push)`, and the scenario sends them. Each push carries the region's whole target
//! (config and keys) and a sequence number, so a region keeps only the newest push whatever
//! order the network delivers them in. A rollout tells the regions in order, stage by stage
//! ([`stage_ends`]); the config is *stable* once every region was told it. A region that saw a
//! version fail rolls back by itself and says so ([`ConfigService::unhealthy`]): the rollout
//! stops and every region told that version is pushed the stable one, marked urgent — it skips
//! the cache.
//!
//! The region ([`Cached`]) holds what it was last told and what its servers serve; the
//! servers take the told state when their cache expires. Each change's delay from its push to
//! its being served is kept (true time: instrumentation) for a p99, with the count over a bound,
//! and a [`Timeline`] of (config version, bad, keys version) for divergence and exposure spells.

use crate::parts::flags::allowed_late;
use crate::parts::judge::{Judge, Verdict};
use crate::parts::rotation::{stage_ends, Keys, Rotation};
use crate::parts::spread::Timeline;
use faultline_core::{Micros, NodeKind, NodeView, Time, Tone};

/// A config version; a bad one fails requests where it runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    pub version: u32,
    pub bad: bool,
}

impl Config {
    pub const FIRST: Config = Config { version: 1, bad: false };

    /// "v2 (bad)" or "v3".
    pub fn describe(&self) -> String {
        format!("v{}{}", self.version, if self.bad { " (bad)" } else { "" })
    }
}

/// A region's target as the service pushes it (`sent`: true time, for the propagation delay;
/// `urgent`: a rollback, served at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Push {
    pub config: Config,
    pub keys: Keys,
    pub sent: Time,
    pub seq: u64,
    pub urgent: bool,
}

/// How the service rolls a config out: by stages (the first `first` regions, each next stage
/// twice the last, `bake_us` apart) or to every region at once.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    pub staged: bool,
    pub first: usize,
    pub bake_us: Micros,
}

/// A rollout under way: the config, the regions told so far (in order), when the next stage starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub config: Config,
    pub reached: usize,
    pub next_at: Time,
}

pub type Pushes = Vec<(usize, Push)>;

/// The config service (durable): each region's target, the keys, the rollout and rotation under way.
#[derive(Clone, Debug)]
pub struct ConfigService {
    latest: u32,
    stable: Config,
    target: Vec<Config>,
    keys: Keys,
    /// The keys version each region said it serves.
    confirmed: Vec<u32>,
    rollout: Option<Rollout>,
    rotation: Rotation,
    seq: u64,
    halted: Option<(u32, usize)>,
}

impl ConfigService {
    /// `n` regions, all on the first config and keys.
    pub fn new(n: usize) -> ConfigService {
        let (stable, keys) = (Config::FIRST, Keys::FIRST);
        let (target, confirmed) = (vec![stable; n], vec![keys.version; n]);
        ConfigService {
            latest: 1,
            stable,
            target,
            keys,
            confirmed,
            rollout: None,
            rotation: Rotation::Idle,
            seq: 0,
            halted: None,
        }
    }
    pub fn stable(&self) -> Config {
        self.stable
    }
    pub fn rollout(&self) -> Option<Rollout> {
        self.rollout
    }
    pub fn keys(&self) -> Keys {
        self.keys
    }
    pub fn rotation(&self) -> Rotation {
        self.rotation
    }
    /// The latest version rolled back, and the region that saw it fail.
    pub fn halted(&self) -> Option<(u32, usize)> {
        self.halted
    }
    pub fn regions(&self) -> usize {
        self.target.len()
    }

    /// Region `i`'s target, as a push sent at `truth`.
    pub fn push(&mut self, i: usize, urgent: bool, truth: Time) -> (usize, Push) {
        self.seq += 1;
        (i, Push { config: self.target[i], keys: self.keys, sent: truth, seq: self.seq, urgent })
    }
    fn push_all(&mut self, truth: Time) -> Pushes {
        (0..self.target.len()).map(|i| self.push(i, false, truth)).collect()
    }

    /// Region `i` serves keys version `keys`.
    pub fn confirm(&mut self, i: usize, keys: u32) {
        self.confirmed[i] = keys;
    }

    /// A new config, rolled out from the first stage (or everywhere) at `now` (own clock).
    pub fn publish(&mut self, bad: bool, plan: Plan, now: Time, truth: Time) -> (Config, Pushes) {
        self.latest += 1;
        let config = Config { version: self.latest, bad };
        self.rollout = Some(Rollout { config, reached: 0, next_at: now });
        (config, self.tick_rollout(plan, now, truth))
    }

    /// The next stage, if due (every region at once if not staged): its regions told; the config
    /// stable once every region is.
    pub fn tick_rollout(&mut self, plan: Plan, now: Time, truth: Time) -> Pushes {
        let Some(r) = self.rollout.filter(|r| now >= r.next_at || !plan.staged) else { return Vec::new() };
        let n = self.target.len();
        let end = match plan.staged {
            true => stage_ends(n, plan.first).into_iter().find(|e| *e > r.reached).unwrap_or(n),
            false => n,
        };
        self.target[r.reached..end].fill(r.config);
        self.rollout = (end < n).then(|| Rollout { reached: end, next_at: now.plus(plan.bake_us), ..r });
        if end == n {
            self.stable = r.config;
        }
        (r.reached..end).map(|i| self.push(i, false, truth)).collect()
    }

    /// A rotation of the signing key: swapped in one push, or the first of two valid keys' steps
    /// (`None` if one is under way).
    pub fn rotate(&mut self, two_keys: bool, truth: Time) -> Option<(Keys, Pushes)> {
        self.keys = if two_keys { self.rotation.start(self.keys)? } else { Rotation::swap(self.keys) };
        Some((self.keys, self.push_all(truth)))
    }

    /// The rotation's next step, if due at `now`: every region confirmed the last (a region down
    /// holds it up).
    pub fn step_rotation(&mut self, now: Time, truth: Time, grace_us: Micros) -> Option<(Keys, Pushes)> {
        let confirmed = self.confirmed.iter().all(|k| *k >= self.keys.version);
        self.keys = self.rotation.step(self.keys, confirmed, now, grace_us)?;
        Some((self.keys, self.push_all(truth)))
    }

    /// Region `i` rolled back version `v`: the rollout stopped, every region told `v` pushed the
    /// stable config, urgently. `None` if `v` was already rolled back (or is the stable one).
    pub fn unhealthy(&mut self, v: u32, i: usize, truth: Time) -> Option<Pushes> {
        if self.halted.is_some_and(|h| h.0 == v) || v == self.stable.version {
            return None;
        }
        self.halted = Some((v, i));
        self.rollout = self.rollout.filter(|r| r.config.version != v);
        let told: Vec<usize> = (0..self.target.len()).filter(|j| self.target[*j].version == v).collect();
        Some(told.into_iter().map(|j| (self.target[j] = self.stable, self.push(j, true, truth)).1).collect())
    }
}

impl ConfigService {
    /// The service drawn: its rollout (or the stable version), its keys and rotation, the latest rollback.
    pub fn view(&self, label: &str) -> NodeView {
        let (rollout, tone) = match self.rollout {
            Some(r) => (format!("v{}: {} of {} regions", r.config.version, r.reached, self.regions()), Tone::Warn),
            None => (format!("v{} everywhere", self.stable.version), Tone::Good),
        };
        let halted = self.halted.map(|h| format!("v{} rolled back", h.0));
        NodeView::new(NodeKind::Store, 0, label)
            .badge(rollout, tone)
            .badge(format!("{} · {}", self.keys.describe(), self.rotation.describe()), Tone::Neutral)
            .badge_if(halted.is_some(), halted.unwrap_or_default(), Tone::Bad)
    }
}

/// A region's copy: what it was last told (with when each part was pushed and the push's
/// number), what its servers serve, the config before (a rollback's target), the version it
/// rolled back itself (not taken again until the service says otherwise).
#[derive(Clone, Debug)]
pub struct Cached {
    told: (Config, Keys, Time, Time, u64),
    pub config: Config,
    pub keys: Keys,
    before: Config,
    /// When the servers took the config in force (own clock): a rollback judges errors since.
    pub changed_at: Time,
    pub rolled_back: u32,
    /// Propagation delays (µs): from each push's sending to its serving.
    pub delays: Vec<Micros>,
    /// The bad config this region runs now, and since when (true time).
    pub bad_since: Option<(Time, u32)>,
    pub timeline: Timeline<(u32, bool, u32)>,
    /// The outcomes of the requests it served (own clock), and the latest verdict since the change.
    judge: Judge,
    pub errors: (u64, u64),
}

/// A region judges its errors over the last second, once it has this many requests since a change.
pub const JUDGE_US: Micros = 1_000_000;
pub const JUDGE_MIN: usize = 20;

impl Default for Cached {
    fn default() -> Cached {
        Cached::first()
    }
}

impl Cached {
    /// On the first config and keys.
    fn first() -> Cached {
        let (c, k) = (Config::FIRST, Keys::FIRST);
        Cached {
            told: (c, k, Time::ZERO, Time::ZERO, 0),
            config: c,
            keys: k,
            before: c,
            changed_at: Time::ZERO,
            rolled_back: 0,
            delays: Vec::new(),
            bad_since: None,
            timeline: Timeline::new((c.version, c.bad, k.version), Time::ZERO),
            judge: Judge::new(JUDGE_US, JUDGE_MIN, JUDGE_MIN),
            errors: (0, 0),
        }
    }

    /// A push arrived: kept unless an older one overtook it. True if it must be served now (urgent).
    pub fn told(&mut self, p: Push) -> bool {
        let (c, k, config_sent, keys_sent, last) = self.told;
        if p.seq < last {
            return false;
        }
        let config_sent = if p.config != c { p.sent } else { config_sent };
        let keys_sent = if p.keys != k { p.sent } else { keys_sent };
        self.told = (p.config, p.keys, config_sent, keys_sent, p.seq);
        if p.urgent {
            self.rolled_back = 0;
        }
        p.urgent
    }

    /// The cache expired (or a rollback came): the servers take what the region was told, but
    /// not a version it rolled back. True if the keys changed (the service is to be told).
    pub fn take_told(&mut self, now: Time, truth: Time) -> bool {
        let (config, keys) = (self.told.0, self.told.1);
        let config = if config.version == self.rolled_back { self.config } else { config };
        self.apply(config, keys, now, truth)
    }

    /// A request served at `now` (own clock), failed or not. With `rollback_pct`, a rollback when
    /// more than that share of the last second's requests since the change failed (at least
    /// [`JUDGE_MIN`] of them): the version rolled back, and the verdict.
    pub fn served(
        &mut self,
        failed: bool,
        now: Time,
        truth: Time,
        rollback_pct: Option<u64>,
    ) -> Option<(u32, Verdict)> {
        self.judge.record(now, failed, 0);
        let v = self.judge.verdict(now, self.changed_at);
        self.errors = (v.bad, v.total);
        let due = rollback_pct.is_some_and(|pct| v.total >= JUDGE_MIN as u64 && v.fails(pct));
        due.then(|| (self.roll_back(now, truth), v))
    }

    /// The region's own rollback to the config before: the version rolled back.
    pub fn roll_back(&mut self, now: Time, truth: Time) -> u32 {
        let bad = self.config.version;
        self.apply(self.before, self.keys, now, truth);
        self.rolled_back = bad;
        bad
    }

    fn apply(&mut self, config: Config, keys: Keys, now: Time, truth: Time) -> bool {
        if config != self.config {
            // A push served (not the region's own rollback): its delay since it was sent.
            if config == self.told.0 {
                self.delay(truth.since(self.told.2));
            }
            (self.before, self.changed_at) = (self.config, now);
        }
        let new_keys = keys != self.keys;
        if new_keys {
            self.delay(truth.since(self.told.3));
        }
        (self.config, self.keys) = (config, keys);
        if !config.bad || self.bad_since.is_none_or(|b| b.1 != config.version) {
            self.bad_since = config.bad.then_some((truth, config.version));
        }
        self.timeline.set((config.version, config.bad, keys.version), truth);
        new_keys
    }

    fn delay(&mut self, us: Micros) {
        self.delays.push(us);
    }
}

/// Regions that run a bad config now beyond the first `first`: how many run one, and the first
/// past the stage (its index, since when, which version). `None` if they fit.
pub fn past_first(regions: &[(usize, &Cached)], first: usize) -> Option<(usize, usize, Time, u32)> {
    let mut ran: Vec<(Time, usize, u32)> =
        regions.iter().filter_map(|(i, c)| c.bad_since.map(|(t, v)| (t, *i, v))).collect();
    ran.sort_unstable();
    ran.get(first).map(|(t, i, v)| (ran.len(), *i, *t, *v))
}

impl Cached {
    /// The oldest push this region holds but does not serve yet: since when (true time), and
    /// its config version. A config the region rolled back itself is not waiting.
    pub fn waiting_since(&self) -> Option<(Time, u32)> {
        let (c, k, config_sent, keys_sent, _) = self.told;
        let config = (c != self.config && c.version != self.rolled_back).then_some((config_sent, c.version));
        config.into_iter().chain((k != self.keys).then_some((keys_sent, c.version))).min()
    }
}

/// When more regions have waited over `bound_us` for a push than a p99 over them allows: how
/// many, of how many, and the one waiting longest (its index, for how long, the version).
pub fn waiting(
    regions: &[(usize, &Cached)],
    now: Time,
    bound_us: Micros,
) -> Option<(usize, usize, usize, Micros, u32)> {
    let late: Vec<(Micros, usize, u32)> = regions
        .iter()
        .filter_map(|(i, c)| c.waiting_since().map(|(t, v)| (now.since(t), *i, v)))
        .filter(|x| x.0 > bound_us)
        .collect();
    let (us, i, v) = late.iter().max().copied()?;
    (late.len() > allowed_late(regions.len())).then_some((late.len(), regions.len(), i, us, v))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAN: Plan = Plan { staged: true, first: 2, bake_us: 3_000_000 };

    fn regions(p: &Pushes) -> Vec<usize> {
        p.iter().map(|x| x.0).collect()
    }

    #[test]
    fn a_staged_rollout_tells_the_stages_a_bake_apart_and_a_rollback_stops_it() {
        let mut s = ConfigService::new(20);
        let (c, p) = s.publish(true, PLAN, Time::ZERO, Time::ZERO);
        assert_eq!((c.version, regions(&p)), (2, vec![0, 1]));
        assert!(s.tick_rollout(PLAN, Time(2_999_999), Time::ZERO).is_empty());
        assert_eq!(regions(&s.tick_rollout(PLAN, Time(3_000_000), Time::ZERO)), (2..6).collect::<Vec<_>>());
        // Region 3 saw it fail: the six regions told v2 are pushed v1 at once, and no more stages.
        let back = s.unhealthy(2, 3, Time::ZERO).expect("a rollback");
        assert_eq!(regions(&back), (0..6).collect::<Vec<_>>());
        assert!(back.iter().all(|(_, p)| p.urgent && p.config == Config::FIRST));
        assert!(s.unhealthy(2, 0, Time::ZERO).is_none() && s.rollout().is_none());
        assert!(s.tick_rollout(PLAN, Time(9_000_000), Time::ZERO).is_empty());
        // Everywhere at once: all 20, stable at once.
        let (c, p) = s.publish(false, Plan { staged: false, ..PLAN }, Time(10_000_000), Time::ZERO);
        assert_eq!((p.len(), s.stable(), s.rollout()), (20, c, None));
    }

    #[test]
    fn a_region_takes_pushes_at_its_cache_expiry_and_rolls_back_itself() {
        let mut s = ConfigService::new(2);
        let mut r = Cached::default();
        let (_, p) = s.publish(true, Plan { staged: false, ..PLAN }, Time(1_000), Time(1_000));
        let (_, older) = s.push(0, false, Time(900));
        assert!(!r.told(p[0].1));
        // An older push arriving late is ignored; the new one waits for the cache.
        assert!(!r.told(Push { seq: 0, ..older }));
        assert_eq!(waiting(&[(0, &r)], Time(501_000), 500_000), None);
        assert_eq!(waiting(&[(0, &r)], Time(501_001), 500_000), Some((1, 1, 0, 500_001, 2)));
        assert_eq!(r.config, Config::FIRST, "served only at the expiry");
        assert!(!r.take_told(Time(601_000), Time(601_000)));
        assert_eq!((r.config.version, r.delays.clone()), (2, vec![600_000]));
        assert_eq!(r.bad_since, Some((Time(601_000), 2)));
        assert_eq!(past_first(&[(0, &r)], 0), Some((1, 0, Time(601_000), 2)));
        assert_eq!(past_first(&[(0, &r)], 1), None);
        assert_eq!(waiting(&[(0, &r)], Time(601_000), 500_000), None);
        // Its own rollback: back to v1, and v2 not taken again at the next expiry.
        assert_eq!(r.roll_back(Time(700_000), Time(700_000)), 2);
        r.take_told(Time(900_000), Time(900_000));
        assert_eq!(r.config, Config::FIRST);
        assert_eq!(past_first(&[(0, &r)], 0), None, "no longer on the bad config");
        // A key swap: served at the expiry, the service to be told.
        let (_, p) = s.rotate(false, Time(1_000_000)).expect("a swap");
        r.told(p[0].1);
        assert!(r.take_told(Time(1_100_000), Time(1_100_000)) && r.keys.signer == 2);
    }
}
