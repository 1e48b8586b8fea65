//! Resolving a nested query field by field (GraphQL-style): the tree's shape with its closed-form query counts, and a request's loader — a per-request cache of keys and batches collected per field over a window.
//!
//! The tree is `users(limit: n) { posts { comments { author { profile } } } }` cut at a depth:
//! level 0 is the root list, then a list of `posts` per user, of `comments` per post, and one
//! author and one profile per comment. A query per object per field issues
//! 1 + Σ_{l < depth} objects(l) queries (the N+1 of a list, at every level); a batch per parent
//! issues one per list parent and one per distinct key of a to-one field (the cache answers
//! repeats); a batch per field issues depth + 1; a join, 1 ([`Shape`], tested).
//!
//! [`Loader`] is DataLoader's bookkeeping for one request: `first_ask` is its cache (a key loaded
//! or pending is not asked for again), `collect` puts a load in the window open for its field at
//! that instant or opens one (the caller sets a timer for its close), `take` hands the batch out.

use faultline_core::{Micros, Rng, Time};
use std::collections::BTreeSet;

/// The fields by level, as a breach names them.
pub const FIELDS: [&str; 5] = ["users", "posts", "comments", "comments.author", "author.profile"];

/// What a request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub users: u64,
    pub posts: u64,
    pub comments: u64,
    /// Levels asked for below the root, 1..=4.
    pub depth: usize,
}

impl Shape {
    /// Objects at `level`: n users, n·p posts, n·p·c comments, then an author and a profile per comment.
    pub fn objects(&self, level: usize) -> u64 {
        [1, self.posts, self.comments, 1, 1][..=level].iter().product::<u64>() * self.users
    }
    /// The objects a batch at `level` brings: its parents' children, or one per key (to-one fields).
    pub fn brings(&self, batch: &Batch) -> u64 {
        match batch.level {
            0 => self.users,
            1 => batch.parents * self.posts,
            2 => batch.parents * self.comments,
            _ => batch.keys.len() as u64,
        }
    }
    /// Query per field: the root, then one query per object per nested field.
    pub fn per_field_queries(&self) -> u64 {
        1 + (0..self.depth).map(|l| self.objects(l)).sum::<u64>()
    }
    /// A batch per parent (each parent's loads in a tick of their own) with a per-request cache:
    /// one query per list parent, one per distinct author and per distinct author's profile.
    pub fn per_tick_queries(&self, distinct_authors: u64) -> u64 {
        1 + (0..self.depth).map(|l| if l < 2 { self.objects(l) } else { distinct_authors }).sum::<u64>()
    }
    /// One query per level (every load of a field in one batch).
    pub fn per_level_queries(&self) -> u64 {
        self.depth as u64 + 1
    }
    /// Rows a joined read returns: every object of every level, authors repeated per comment.
    pub fn joined_rows(&self) -> u64 {
        (0..=self.depth).map(|l| self.objects(l)).sum()
    }
}

/// A query's loads: one field (`level`) for `parents` parents, or for `keys` (to-one fields).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub level: usize,
    pub parents: u64,
    pub keys: Vec<u64>,
}

impl Batch {
    /// The load of one parent (`key` for a to-one field).
    pub fn one(level: usize, key: Option<u64>) -> Batch {
        Batch { level, parents: 1, keys: key.into_iter().collect() }
    }
}

/// Each object `batch` brought, as (its resolver's await, uniform in 0..=`most_us`, and the key
/// of its child field), in the order the awaits end. A comment's author is one of `authors` at
/// random; an author's profile has its author's key; a list's key is its parent's index.
pub fn asks(shape: &Shape, batch: &Batch, most_us: Micros, authors: u64, rng: &mut Rng) -> Vec<(Micros, u64)> {
    let mut asks: Vec<(Micros, u64)> = (0..shape.brings(batch))
        .map(|i| {
            let key = match batch.level {
                2 => rng.below(authors),
                3 => batch.keys[i as usize],
                _ => i,
            };
            (rng.range(0, most_us), key)
        })
        .collect();
    asks.sort_by_key(|&(at, _)| at);
    asks
}

#[derive(Clone, Debug)]
struct Window {
    id: u64,
    open: Time,
    close: Time,
    batch: Batch,
}

/// One request's loader: its cache and its open windows.
#[derive(Clone, Debug, Default)]
pub struct Loader {
    cache: BTreeSet<(usize, u64)>,
    windows: Vec<Window>,
    next: u64,
}

impl Loader {
    /// Whether `key` of `level` is asked for the first time in this request (else the cache has it).
    pub fn first_ask(&mut self, level: usize, key: u64) -> bool {
        self.cache.insert((level, key))
    }
    /// Distinct keys of `level` asked for so far.
    pub fn distinct(&self, level: usize) -> u64 {
        self.cache.range((level, 0)..=(level, u64::MAX)).count() as u64
    }
    /// Puts `load`, made at `at`, in the window of its field open at that instant; else opens one
    /// closing `window_us` later and returns its id and close, for the caller's timer.
    pub fn collect(&mut self, load: Batch, at: Time, window_us: Micros) -> Option<(u64, Time)> {
        let open = self.windows.iter_mut().find(|w| w.batch.level == load.level && w.open <= at && at <= w.close);
        if let Some(w) = open {
            w.batch.parents += load.parents;
            w.batch.keys.extend(load.keys);
            return None;
        }
        let (id, close) = (self.next, at.plus(window_us));
        self.next += 1;
        self.windows.push(Window { id, open: at, close, batch: load });
        Some((id, close))
    }
    /// The batch of window `id` at its close (`None` if already taken).
    pub fn take(&mut self, id: u64) -> Option<Batch> {
        let i = self.windows.iter().position(|w| w.id == id)?;
        Some(self.windows.remove(i).batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED: Shape = Shape { users: 100, posts: 10, comments: 7, depth: 4 };

    #[test]
    fn the_seeds_query_is_15101_queries_field_by_field() {
        // 1 + 100 + 1,000 + 7,000 + 7,000: the seed's "15,000+ database queries".
        assert_eq!(SEED.per_field_queries(), 15_101);
        assert_eq!(SEED.objects(2), 7_000);
        assert_eq!(SEED.per_tick_queries(50), 1 + 100 + 1_000 + 50 + 50);
        assert_eq!(SEED.per_level_queries(), 5);
        assert_eq!(SEED.joined_rows(), 100 + 1_000 + 7_000 * 3);
        let shallow = Shape { depth: 1, ..SEED };
        assert_eq!(
            (shallow.per_field_queries(), shallow.per_tick_queries(0), shallow.joined_rows()),
            (101, 101, 1_100)
        );
    }

    #[test]
    fn a_batch_brings_its_parents_children_or_its_keys() {
        assert_eq!(SEED.brings(&Batch { level: 0, parents: 1, keys: vec![] }), 100);
        assert_eq!(SEED.brings(&Batch { level: 1, parents: 3, keys: vec![] }), 30);
        assert_eq!(SEED.brings(&Batch { level: 2, parents: 3, keys: vec![] }), 21);
        assert_eq!(SEED.brings(&Batch { level: 3, parents: 4, keys: vec![7, 9] }), 2);
    }

    #[test]
    fn asks_come_in_the_order_their_awaits_end_with_their_childs_key() {
        let mut rng = Rng::new(3);
        let comments = asks(&SEED, &Batch { level: 2, parents: 2, keys: vec![] }, 1000, 50, &mut rng);
        assert_eq!(comments.len(), 14);
        assert!(comments.windows(2).all(|w| w[0].0 <= w[1].0) && comments.iter().all(|&(at, k)| at <= 1000 && k < 50));
        let authors = asks(&SEED, &Batch { level: 3, parents: 3, keys: vec![4, 9] }, 0, 50, &mut rng);
        assert_eq!(authors, vec![(0, 4), (0, 9)], "a zero await keeps the keys' order");
    }

    #[test]
    fn the_cache_answers_a_key_asked_again_per_field() {
        let mut l = Loader::default();
        assert!(l.first_ask(3, 7) && !l.first_ask(3, 7) && l.first_ask(4, 7) && l.first_ask(3, 8));
        assert_eq!((l.distinct(3), l.distinct(4), l.distinct(2)), (2, 1, 0));
    }

    #[test]
    fn loads_within_a_window_share_one_batch_and_later_ones_open_another() {
        let mut l = Loader::default();
        let t = |us| Time::ZERO.plus(us);
        assert_eq!(l.collect(Batch::one(2, None), t(100), 50), Some((0, t(150))));
        assert_eq!(l.collect(Batch::one(2, None), t(150), 50), None, "the close instant is inside");
        assert_eq!(l.collect(Batch::one(3, Some(5)), t(120), 50), Some((1, t(170))), "another field");
        assert_eq!(l.collect(Batch::one(2, None), t(151), 50), Some((2, t(201))));
        assert_eq!(l.take(0), Some(Batch { level: 2, parents: 2, keys: vec![] }));
        assert_eq!((l.take(0), l.take(1).map(|b| b.keys)), (None, Some(vec![5])));
    }
}
