//! The network between nodes: per-link latency distributions, loss, duplication,
//! reordering, and partitions (symmetric or one-way).

use crate::rng::{Ppm, Rng};
use crate::time::{Micros, Time};
use serde::{Deserialize, Serialize};

/// A node's index in its run: nodes are numbered from 0 in the order a scenario creates them.
pub type NodeId = u32;

/// How long one message takes to cross a link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Latency {
    Constant(Micros),
    Uniform {
        lo: Micros,
        hi: Micros,
    },
    Exponential {
        mean: Micros,
    },
    /// Heavy-tailed: `median` and the shape of the underlying normal, in thousandths.
    LogNormal {
        median: Micros,
        sigma_milli: u32,
    },
}

impl Latency {
    #[inline]
    pub fn sample(&self, rng: &mut Rng) -> Micros {
        match *self {
            Latency::Constant(d) => d,
            Latency::Uniform { lo, hi } => rng.range(lo, hi),
            Latency::Exponential { mean } => rng.exponential(mean as f64) as Micros,
            Latency::LogNormal { median, sigma_milli } => {
                rng.log_normal(median as f64, sigma_milli as f64 / 1000.0) as Micros
            }
        }
    }
}

/// The behaviour of one directed link.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub latency: Latency,
    pub loss: Ppm,
    pub duplicate: Ppm,
    /// Chance that a message is held back by `reorder_delay` (so later ones overtake it).
    pub reorder: Ppm,
    pub reorder_delay: Micros,
}

impl Link {
    pub fn constant(latency: Micros) -> Link {
        Link {
            latency: Latency::Constant(latency),
            loss: Ppm::NEVER,
            duplicate: Ppm::NEVER,
            reorder: Ppm::NEVER,
            reorder_delay: 0,
        }
    }
    pub fn with_latency(latency: Latency) -> Link {
        Link { latency, ..Link::constant(0) }
    }
    /// In-process: no latency and never lost, for components that share a machine.
    pub fn local() -> Link {
        Link::constant(0)
    }
}

/// A cut between two sides. Messages from `a` to `b` are dropped; also `b` to `a` unless one-way.
/// `b == None` means "everyone not in `a`".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    pub a: Vec<NodeId>,
    pub b: Option<Vec<NodeId>>,
    pub one_way: bool,
}

impl Cut {
    fn in_a(&self, n: NodeId) -> bool {
        self.a.binary_search(&n).is_ok()
    }
    fn in_b(&self, n: NodeId) -> bool {
        match &self.b {
            Some(b) => b.binary_search(&n).is_ok(),
            None => !self.in_a(n),
        }
    }
    pub fn blocks(&self, from: NodeId, to: NodeId) -> bool {
        (self.in_a(from) && self.in_b(to)) || (!self.one_way && self.in_b(from) && self.in_a(to))
    }
}

/// What the network decided for one send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Delivered after this delay; `duplicate` gives the delay of a second copy.
    Deliver { delay: Micros, duplicate: Option<Micros> },
    /// Lost on the wire; it would have arrived after `delay` (for drawing it vanish part-way).
    Lost { delay: Micros },
}

/// All links, the active partitions and the temporary global disturbances.
#[derive(Clone, Debug)]
pub struct Network {
    pub default_link: Link,
    /// Overridden links, by `from << 32 | to`, sorted by that key.
    links: Vec<(u64, Link)>,
    /// Where each sender's overridden links start in `links` and how many there are, by
    /// node: a send finds its link among its sender's few, and most senders have none.
    by_from: Vec<(u32, u32)>,
    cuts: Vec<Cut>,
    spike: Option<(Micros, Time)>,
    loss_burst: Option<(Ppm, Time)>,
}

impl Network {
    pub fn new(default_link: Link) -> Network {
        Network {
            default_link,
            links: Vec::new(),
            by_from: Vec::new(),
            cuts: Vec::new(),
            spike: None,
            loss_burst: None,
        }
    }

    /// Overrides both directions between `a` and `b`.
    pub fn set_link(&mut self, a: NodeId, b: NodeId, link: Link) {
        self.set_one(b, a, link.clone());
        self.set_one(a, b, link);
    }

    fn set_one(&mut self, from: NodeId, to: NodeId, link: Link) {
        let key = (from as u64) << 32 | to as u64;
        match self.links.binary_search_by_key(&key, |(k, _)| *k) {
            Ok(i) => self.links[i].1 = link,
            Err(i) => self.links.insert(i, (key, link)),
        }
        // Links are set while a run is built, a handful of times: rebuild the index whole.
        self.by_from.clear();
        for (i, (key, _)) in self.links.iter().enumerate() {
            let from = (key >> 32) as usize;
            if self.by_from.len() <= from {
                self.by_from.resize(from + 1, (0, 0));
            }
            if self.by_from[from].1 == 0 {
                self.by_from[from].0 = i as u32;
            }
            self.by_from[from].1 += 1;
        }
    }

    pub fn link(&self, from: NodeId, to: NodeId) -> &Link {
        let Some(&(start, n)) = self.by_from.get(from as usize) else { return &self.default_link };
        let mine = &self.links[start as usize..(start + n) as usize];
        match mine.binary_search_by_key(&(to as u64), |(k, _)| k & u32::MAX as u64) {
            Ok(i) => &mine[i].1,
            Err(_) => &self.default_link,
        }
    }

    pub fn add_cut(&mut self, mut cut: Cut) {
        cut.a.sort_unstable();
        cut.a.dedup();
        if let Some(b) = cut.b.as_mut() {
            b.sort_unstable();
            b.dedup();
        }
        self.cuts.push(cut);
    }

    pub fn heal(&mut self) {
        self.cuts.clear();
    }

    /// Removes every cut that involves `node` (on either side).
    pub fn heal_node(&mut self, node: NodeId) {
        self.cuts.retain(|c| !c.in_a(node) && c.b.as_ref().is_none_or(|b| b.binary_search(&node).is_err()));
    }

    pub fn cuts(&self) -> &[Cut] {
        &self.cuts
    }

    pub fn is_cut_off(&self, node: NodeId) -> bool {
        self.cuts.iter().any(|c| c.in_a(node) || c.b.as_ref().is_some_and(|b| b.binary_search(&node).is_ok()))
    }

    pub fn blocked(&self, from: NodeId, to: NodeId) -> bool {
        from != to && self.cuts.iter().any(|c| c.blocks(from, to))
    }

    pub fn latency_spike(&mut self, extra: Micros, until: Time) {
        self.spike = Some((extra, until));
    }

    pub fn loss_burst(&mut self, loss: Ppm, until: Time) {
        self.loss_burst = Some((loss, until));
    }

    /// Decides what happens to a message sent now. Draws from the run's generator.
    #[inline]
    pub fn send(&self, from: NodeId, to: NodeId, now: Time, rng: &mut Rng) -> Fate {
        let link = self.link(from, to);
        let extra = match self.spike {
            Some((extra, until)) if now < until => extra,
            _ => 0,
        };
        let burst = match self.loss_burst {
            Some((p, until)) if now < until => p,
            _ => Ppm::NEVER,
        };
        let mut delay = link.latency.sample(rng).saturating_add(extra);
        if link.reorder.0 | link.loss.0 | burst.0 | link.duplicate.0 == 0 {
            // Nothing can go wrong on this link now (the usual case): no chance is drawn,
            // exactly as the general path below draws none for zero probabilities.
            return Fate::Deliver { delay, duplicate: None };
        }
        if rng.chance(link.reorder) {
            delay = delay.saturating_add(link.reorder_delay);
        }
        if rng.chance(link.loss) || rng.chance(burst) {
            return Fate::Lost { delay };
        }
        let duplicate =
            if rng.chance(link.duplicate) { Some(link.latency.sample(rng).saturating_add(extra)) } else { None };
        Fate::Deliver { delay, duplicate }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overridden_links_are_found_for_each_direction_and_the_rest_use_the_default() {
        // Against a plain map, with pairs set in a scrambled order and some set twice.
        let mut net = Network::new(Link::constant(1));
        let mut model = std::collections::BTreeMap::new();
        let mut x = 7u32;
        for i in 0..300u64 {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let (a, b) = ((x >> 8) % 40, (x >> 20) % 40);
            net.set_link(a, b, Link::constant(100 + i));
            model.insert((a, b), 100 + i);
            model.insert((b, a), 100 + i);
        }
        for from in 0..45 {
            for to in 0..45 {
                let want = Latency::Constant(*model.get(&(from, to)).unwrap_or(&1));
                assert_eq!(net.link(from, to).latency, want, "{from} -> {to}");
            }
        }
    }

    #[test]
    fn symmetric_and_one_way_cuts() {
        let mut net = Network::new(Link::constant(10));
        net.add_cut(Cut { a: vec![0], b: Some(vec![1]), one_way: true });
        assert!(net.blocked(0, 1));
        assert!(!net.blocked(1, 0));
        assert!(!net.blocked(0, 2));
        net.heal();
        net.add_cut(Cut { a: vec![2, 0], b: None, one_way: false });
        assert!(net.blocked(0, 1) && net.blocked(1, 2) && !net.blocked(0, 2));
        net.heal_node(0);
        assert!(!net.blocked(0, 1));
    }

    #[test]
    fn loss_and_duplication_rates() {
        let mut link = Link::constant(100);
        link.loss = Ppm::from_percent(10);
        link.duplicate = Ppm::from_percent(5);
        let mut net = Network::new(link);
        let mut rng = Rng::new(9);
        let (mut lost, mut dup) = (0, 0);
        for _ in 0..100_000 {
            match net.send(0, 1, Time::ZERO, &mut rng) {
                Fate::Lost { .. } => lost += 1,
                Fate::Deliver { duplicate: Some(_), .. } => dup += 1,
                _ => {}
            }
        }
        assert!((9_000..11_000).contains(&lost), "{lost}");
        assert!((4_000..5_000).contains(&dup), "{dup}");
        net.latency_spike(1_000, Time(50));
        match net.send(0, 1, Time(10), &mut rng) {
            Fate::Deliver { delay, .. } | Fate::Lost { delay } => assert_eq!(delay, 1_100),
        }
    }
}
