//! A table read page by page, newest first — OFFSET/LIMIT, a keyset cursor on a unique key, one on a shared timestamp — and a reader's audit of its pass: rows shown twice, rows jumped over.
//!
//! Rows are ordered newest first by a creation timestamp that several rows may share (rows
//! written in one batch, or in one millisecond), then by id. Ids count up as rows are inserted,
//! so the newest row has the largest id and both orders agree: a row's place is its id.
//!
//! The table is implicit — a million rows cost nothing: every id from 1 to the newest is a row
//! unless it was deleted. Which rows share a timestamp is a pure function of the id: a row is
//! the oldest of its timestamp's group when a hash of its id (salted per run) says so, with
//! probability 1/m, so group sizes are geometric with mean m (memoryless: from any row, the
//! number of older rows left in its group is geometric too, mean m − 1).
//!
//! The three queries a page can be:
//! - `Offset { offset, limit }`: `ORDER BY created_at DESC, id DESC OFFSET k LIMIT n`. The
//!   database walks the index past the first k rows to find the page: k + n rows read.
//!   Rows inserted at the head or deleted above the reader move every later row: the next
//!   page repeats a row per insert and jumps one per delete.
//! - `After { id, limit }`: `WHERE (created_at, id) < (:ts, :id)` — a keyset (seek) cursor on a
//!   unique key: an index seek, n rows read, nothing moves under it.
//! - `BeforeStamp { id, limit }`: `WHERE created_at < :ts` — a cursor on a key that is not
//!   unique: the rest of the last row's timestamp group is jumped over.

use crate::parts::ring::mix;
use faultline_core::Rng;
use std::collections::BTreeSet;

/// A page query, at the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Query {
    Offset { offset: u64, limit: u64 },
    After { id: u64, limit: u64 },
    BeforeStamp { id: u64, limit: u64 },
}

impl Query {
    /// Rows the database reads for it: OFFSET walks past every skipped row, a seek does not.
    pub fn rows_read(&self, rows: u64) -> u64 {
        match *self {
            Query::Offset { offset, limit } => offset.saturating_add(limit).min(rows),
            Query::After { limit, .. } | Query::BeforeStamp { limit, .. } => limit.min(rows),
        }
    }
}

/// The rows of a page, newest first, and (for the audit only, not what a database returns)
/// the live rows the page jumped over since the reader's oldest row so far, at most
/// `JUMPED_KEPT` of them named, all of them counted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    pub rows: Vec<u64>,
    pub jumped: Vec<u64>,
    pub jumped_count: u64,
}

/// Rows of a jumped-over gap named one by one; beyond it they are only counted.
pub const JUMPED_KEPT: usize = 64;

/// Rows by id, newest first, deleted ones remembered; timestamps shared by geometric groups.
#[derive(Clone, Debug)]
pub struct Table {
    newest: u64,
    deleted: BTreeSet<u64>,
    salt: u64,
    /// Mean rows per timestamp (1: every row has its own).
    per_stamp: u64,
}

impl Table {
    /// `rows` rows (ids 1..=rows), `per_stamp` rows per timestamp on average.
    pub fn new(rows: u64, per_stamp: u64, salt: u64) -> Table {
        Table { newest: rows, deleted: BTreeSet::new(), salt, per_stamp: per_stamp.max(1) }
    }
    /// Live rows.
    pub fn rows(&self) -> u64 {
        self.newest - self.deleted.len() as u64
    }
    pub fn newest(&self) -> u64 {
        self.newest
    }
    pub fn deleted(&self) -> usize {
        self.deleted.len()
    }
    /// A new row at the head; its id.
    pub fn insert(&mut self) -> u64 {
        self.newest += 1;
        self.newest
    }
    /// Deletes row `id`; false if there is no such live row.
    pub fn delete(&mut self, id: u64) -> bool {
        (1..=self.newest).contains(&id) && self.deleted.insert(id)
    }
    /// Deletes a row picked uniformly among the ids (a pick already deleted is tried again, a few
    /// times: deletions are few); the row, if one was deleted.
    pub fn delete_any(&mut self, rng: &mut Rng) -> Option<u64> {
        let newest = self.newest;
        (0..8).map(|_| rng.range(1, newest)).find(|&id| self.delete(id))
    }
    pub fn is_live(&self, id: u64) -> bool {
        (1..=self.newest).contains(&id) && !self.deleted.contains(&id)
    }
    /// Whether row `id` is the oldest of its timestamp's group (row 1 always is).
    pub fn starts_stamp(&self, id: u64) -> bool {
        id <= 1 || mix(id ^ self.salt).is_multiple_of(self.per_stamp)
    }
    /// The oldest id sharing row `id`'s timestamp (deleted ids count: a group is ids, not rows).
    pub fn stamp_start(&self, mut id: u64) -> u64 {
        while !self.starts_stamp(id) {
            id -= 1;
        }
        id
    }
    /// The live row with exactly `k` live rows newer than it, if any. Costs a step per deleted
    /// row at or above it: deletions are few next to the rows.
    pub fn nth_newest(&self, k: u64) -> Option<u64> {
        let mut at = self.newest.checked_sub(k).filter(|&at| at >= 1)?;
        for &gone in self.deleted.iter().rev() {
            if gone < at {
                break;
            }
            at = at.checked_sub(1).filter(|&at| at >= 1)?;
        }
        Some(at)
    }
    /// Up to `limit` live rows at or below `from`, newest first.
    pub fn take_down(&self, from: u64, limit: u64) -> Vec<u64> {
        let mut rows = Vec::new();
        let mut id = from.min(self.newest);
        while id >= 1 && (rows.len() as u64) < limit {
            if !self.deleted.contains(&id) {
                rows.push(id);
            }
            id -= 1;
        }
        rows
    }
    /// Live rows strictly between `lo` and `hi`: how many, and the newest `JUMPED_KEPT` of them.
    pub fn live_between(&self, lo: u64, hi: u64) -> (u64, Vec<u64>) {
        if hi <= lo + 1 {
            return (0, Vec::new());
        }
        let gone = self.deleted.range(lo + 1..hi).count() as u64;
        let named = self.take_down(hi - 1, JUMPED_KEPT as u64).into_iter().filter(|&id| id > lo).collect();
        (hi - lo - 1 - gone, named)
    }
    /// The page a query reads now. `oldest_seen` is the reader's oldest row so far (for the
    /// audit of what the page jumped over; `None` on a pass's first page).
    pub fn read(&self, query: Query, oldest_seen: Option<u64>) -> Page {
        let rows = match query {
            Query::Offset { offset, limit } => {
                self.nth_newest(offset).map_or(Vec::new(), |at| self.take_down(at, limit))
            }
            Query::After { id, limit } => self.take_down(id.saturating_sub(1), limit),
            Query::BeforeStamp { id, limit } => self.take_down(self.stamp_start(id).saturating_sub(1), limit),
        };
        let (jumped_count, jumped) = match (oldest_seen, rows.first()) {
            (Some(low), Some(&first)) if first < low => self.live_between(first, low),
            // A pass that ran off the end jumped over whatever is left below its oldest row.
            (Some(low), None) => self.live_between(0, low),
            _ => (0, Vec::new()),
        };
        Page { rows, jumped, jumped_count }
    }
}

/// What one page did to a reader's pass.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Audit {
    /// Rows shown again (already on an earlier page of this pass), the newest first.
    pub repeated: Vec<u64>,
    /// Live rows the page jumped over (named up to `JUMPED_KEPT`), and how many.
    pub jumped: Vec<u64>,
    pub jumped_count: u64,
    /// Rows jumped over earlier and shown now, out of order (neither repeated nor lost).
    pub late: u64,
}

/// A reader's pass down the table: the oldest row it has been shown, and the rows it jumped
/// over that it has not seen since. Every live row between its first row and its oldest was
/// shown exactly once — or is in `jumped` — so a row at or above the oldest is a repeat.
#[derive(Clone, Debug, Default)]
pub struct Pass {
    oldest: Option<u64>,
    jumped: BTreeSet<u64>,
    pub pages: u64,
    pub shown: u64,
}

impl Pass {
    /// The oldest row shown so far (the audit's `oldest_seen` for the next page).
    pub fn oldest(&self) -> Option<u64> {
        self.oldest
    }
    /// Takes in a page the reader was given, and says what it repeated and jumped over.
    pub fn page(&mut self, page: &Page) -> Audit {
        let mut audit = Audit { jumped: page.jumped.clone(), jumped_count: page.jumped_count, ..Audit::default() };
        for &id in &page.rows {
            match self.oldest {
                Some(low) if id >= low => {
                    if self.jumped.remove(&id) {
                        audit.late += 1;
                    } else {
                        audit.repeated.push(id);
                    }
                }
                _ => self.oldest = Some(id),
            }
        }
        self.jumped.extend(page.jumped.iter().copied());
        self.pages += 1;
        self.shown += page.rows.len() as u64;
        audit
    }
}

impl Audit {
    /// The first broken promise in words — "row 812 jumped over (and 2 more)" — if any.
    pub fn describe(&self) -> Option<String> {
        let (row, what, more) = match (self.jumped.first(), self.repeated.first()) {
            (Some(&row), _) => (row, "jumped over", self.jumped_count - 1),
            (None, Some(&row)) => (row, "shown again", self.repeated.len() as u64 - 1),
            (None, None) => return None,
        };
        Some(format!("row {row} {what} (and {more} more)"))
    }
}

/// How a reader carries its place from one page to the next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cursor {
    /// The count of rows before the page (`OFFSET`).
    Offset,
    /// The last row's timestamp alone (`WHERE created_at < :ts`).
    Stamp,
    /// The last row's (timestamp, id): unique.
    Key,
}

/// A reader paging without end: its pass (started again at the table's end or after a number
/// of pages), OFFSET's next offset, and the query for its next page. The cursor may change
/// between pages: a keyset cursor goes on from the oldest row shown.
#[derive(Clone, Debug, Default)]
pub struct Walk {
    pub pass: Pass,
    /// The rows asked for so far in this pass: OFFSET's next offset.
    offset: u64,
    /// Passes finished.
    pub passes: u64,
}

impl Walk {
    /// The next page's query. A pass's first page is the newest rows under every cursor.
    pub fn next(&self, cursor: Cursor, limit: u64) -> Query {
        match (cursor, self.pass.oldest()) {
            (Cursor::Offset, _) => Query::Offset { offset: self.offset, limit },
            (_, None) => Query::After { id: u64::MAX, limit },
            (Cursor::Stamp, Some(id)) => Query::BeforeStamp { id, limit },
            (Cursor::Key, Some(id)) => Query::After { id, limit },
        }
    }
    /// Takes in the page answered to a query of `limit` rows; the pass ends after a short page
    /// (the table's end) or its `pages`-th.
    pub fn answered(&mut self, page: &Page, limit: u64, pages: u64) -> Audit {
        let audit = self.pass.page(page);
        self.offset += limit;
        if (page.rows.len() as u64) < limit || self.pass.pages >= pages {
            self.passes += 1;
            self.restart();
        }
        audit
    }
    /// From page 1 again, in the same pass count (a restarted reader).
    pub fn restart(&mut self) {
        (self.pass, self.offset) = (Pass::default(), 0);
    }
}

/// Pages a reader is answered by OFFSET within `t_us`, each page costing `fixed_us` (round
/// trip, query overhead, think time) plus `row_us` per row read, page p reading p·limit rows:
/// the time to page P is Σ (fixed + row·limit·p) = P·fixed + row·limit·P(P + 1)/2 — quadratic
/// in depth — and this is its positive root in P (a reader alone on its connection).
pub fn offset_pages_within(t_us: f64, fixed_us: f64, row_us: f64, limit: f64) -> f64 {
    let a = row_us * limit / 2.0;
    let b = fixed_us + a;
    if a <= 0.0 {
        return t_us / b;
    }
    (libm::sqrt(b * b + 4.0 * a * t_us) - b) / (2.0 * a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: u64) -> Table {
        Table::new(rows, 1, 7)
    }

    #[test]
    fn offset_counts_past_deleted_rows_and_keyset_seeks() {
        let mut t = table(100);
        for id in [100, 98, 95, 40] {
            assert!(t.delete(id));
        }
        assert!(!t.delete(98) && !t.delete(0) && !t.delete(101), "only live rows are deleted");
        // Live from the top: 99, 97, 96, 94, 93 …
        assert_eq!(t.nth_newest(0), Some(99));
        assert_eq!(t.nth_newest(2), Some(96));
        assert_eq!(t.nth_newest(3), Some(94));
        assert_eq!(t.nth_newest(95), Some(1));
        assert_eq!(t.nth_newest(96), None, "96 live rows: no 97th");
        assert_eq!(t.read(Query::Offset { offset: 1, limit: 3 }, None).rows, vec![97, 96, 94]);
        assert_eq!(t.read(Query::After { id: 96, limit: 3 }, None).rows, vec![94, 93, 92]);
        assert_eq!(t.read(Query::After { id: 3, limit: 5 }, None).rows, vec![2, 1]);
        assert_eq!(Query::Offset { offset: 7999 * 50, limit: 50 }.rows_read(1_000_000), 400_000, "page 8,000");
        assert_eq!(Query::After { id: 5, limit: 50 }.rows_read(1_000_000), 50);
    }

    #[test]
    fn an_insert_at_the_head_repeats_a_row_and_a_delete_above_jumps_one() {
        let mut t = table(100);
        let mut pass = Pass::default();
        let p1 = t.read(Query::Offset { offset: 0, limit: 10 }, pass.oldest());
        assert_eq!(pass.page(&p1), Audit::default());
        t.insert();
        let p2 = t.read(Query::Offset { offset: 10, limit: 10 }, pass.oldest());
        let a2 = pass.page(&p2);
        assert_eq!((a2.repeated, a2.jumped_count), (vec![91], 0), "row 91 moved down onto page 2");
        t.delete(95);
        t.delete(96);
        let p3 = t.read(Query::Offset { offset: 20, limit: 10 }, pass.oldest());
        let a3 = pass.page(&p3);
        assert_eq!((a3.repeated.len(), a3.jumped.clone(), a3.jumped_count), (0, vec![81, 80], 2), "two rows up");
        // The keyset cursor, from the same place, sees every row once.
        let p4 = t.read(Query::After { id: pass.oldest().unwrap(), limit: 10 }, pass.oldest());
        let a4 = pass.page(&p4);
        assert_eq!((a4.repeated.len(), a4.jumped_count), (0, 0));
        assert_eq!(p4.rows.first(), Some(&(p3.rows.last().unwrap() - 1)));
    }

    #[test]
    fn a_walk_pages_by_its_cursor_and_starts_again_at_the_end() {
        let t = Table::new(120, 4, 3);
        let mut walk = Walk::default();
        assert_eq!(walk.next(Cursor::Key, 50), Query::After { id: u64::MAX, limit: 50 });
        walk.answered(&t.read(walk.next(Cursor::Key, 50), None), 50, 10);
        assert_eq!(walk.next(Cursor::Offset, 50), Query::Offset { offset: 50, limit: 50 });
        assert_eq!(walk.next(Cursor::Stamp, 50), Query::BeforeStamp { id: 71, limit: 50 });
        assert_eq!(walk.next(Cursor::Key, 50), Query::After { id: 71, limit: 50 });
        for _ in 0..2 {
            let oldest = walk.pass.oldest();
            let audit = walk.answered(&t.read(walk.next(Cursor::Key, 50), oldest), 50, 10);
            assert_eq!(audit.describe(), None);
        }
        assert_eq!((walk.passes, walk.pass.oldest()), (1, None), "20 rows on page 3: the end");
        let audit = Audit { jumped: vec![9], jumped_count: 3, ..Audit::default() };
        assert_eq!(audit.describe().as_deref(), Some("row 9 jumped over (and 2 more)"));
    }

    #[test]
    fn a_row_jumped_over_and_shown_later_is_late_not_repeated() {
        let mut pass = Pass::default();
        pass.page(&Page { rows: vec![10, 9, 8], ..Page::default() });
        let a = pass.page(&Page { rows: vec![6, 5], jumped: vec![7], jumped_count: 1 });
        assert_eq!((a.jumped_count, a.repeated.len()), (1, 0));
        let b = pass.page(&Page { rows: vec![7, 5, 4], ..Page::default() });
        assert_eq!((b.late, b.repeated), (1, vec![5]));
    }

    #[test]
    fn a_cursor_on_a_shared_timestamp_jumps_the_rest_of_the_group() {
        let t = Table::new(1_000, 4, 99);
        let page = t.read(Query::BeforeStamp { id: 500, limit: 10 }, Some(500));
        let start = t.stamp_start(500);
        assert_eq!(page.rows.first(), Some(&(start - 1)));
        assert_eq!(page.jumped_count, 500 - start, "rows {start}..500 share 500's timestamp");
        assert!((start..500).all(|id| !t.starts_stamp(id) || id == start));
    }

    #[test]
    fn offset_time_is_quadratic_in_depth() {
        // 3 ms a page plus 0.1 ms per page of depth: page 100 by 300 + 0.05·100·101 = 805 ms.
        let p = offset_pages_within(805_000.0, 3_000.0, 2.0, 50.0);
        assert!((p - 100.0).abs() < 1e-9, "{p}");
        assert!((offset_pages_within(30_000.0, 3_000.0, 0.0, 50.0) - 10.0).abs() < 1e-9);
    }

    #[test]
    fn timestamp_groups_are_geometric_with_the_given_mean() {
        // A group ends at a row with probability 1/m, independently (a hash per id): sizes are
        // geometric, mean m, variance m(m − 1). Over 10⁶ rows with m = 5 there are ~200,000
        // groups; the mean's s.d. is √20/√200,000 ≈ 0.01: ±0.05 is 5 s.d.
        for salt in [1, 2, 3] {
            let t = Table::new(1_000_000, 5, salt);
            let groups = (1..=1_000_000).filter(|&id| t.starts_stamp(id)).count() as f64;
            let mean = 1e6 / groups;
            assert!((mean - 5.0).abs() < 0.05, "salt {salt}: mean group {mean:.3}");
        }
    }
}
