//! Short codes for a URL shortener: base62 text, a URL's hash truncated to k characters, blocks of a durable counter leased to servers, and the retries random codes cost.
//!
//! A code of k base62 characters (0–9, a–z, A–Z) is a number below 62^k written in that
//! alphabet, so everything here works on the number and [`base62`] writes it out.
//!
//! - **Hash truncation** ([`truncated_hash`]): the first k base62 digits of a URL's hash are
//!   the hash modulo 62^k — random codes in all but name. Among n URLs the codes already taken
//!   follow the occupancy problem ([`unique::expected_repeats`]), n(n − 1)/2·62^k while n is
//!   small against 62^k: the birthday bound, tested here on the hash itself.
//! - **A counter in blocks** ([`Counter`], [`Range`]): one durable counter (a database
//!   sequence) hands each server a block of `size` numbers at a time (hi/lo allocation, as
//!   Hibernate's and Instagram's), and the server spends it locally. Blocks never overlap, so
//!   no two servers hand out one code; a server that crashes mid-block loses what it had left —
//!   a gap, never a repeat, because the counter, not the server, remembers what was handed out.
//! - **Random codes with retry**: a random code inserted only if absent, drawn again when
//!   taken. With u of m codes taken a try fails with chance u/m, so that insert retries
//!   u/(m − u) times on average ([`expected_retries`] sums it over n inserts: ≈ n²/2m too).
//!
//!
//! A server's side is a [`Minter`]: creations waiting for a code, writes out with their tries,
//! its block. The database's is a [`CodeTable`]: code → URL and the counter, both on disk,
//! written by an upsert (a taken code silently changes hands) or an insert its primary key
//! refuses. The truth is a [`Ledger`]: each link handed out, and the URL each code first stood for.
//!
//! [`unique::expected_repeats`]: crate::parts::unique::expected_repeats

use crate::parts::arrivals::Zipf;
use crate::parts::table::Log;
use faultline_core::Rng;
use std::collections::{BTreeMap, VecDeque};

/// The digits of a code in the order they count.
const ALPHABET: &[u8; 62] = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/// Codes of `len` characters: 62^len (`len` at most 10, which is below 2^60).
pub fn space(len: u32) -> u64 {
    62u64.pow(len.min(10))
}

/// `code` in base62, left-padded with `0` to `width` characters (longer if it needs more).
pub fn base62(mut code: u64, width: u32) -> String {
    let mut digits = Vec::new();
    while code > 0 || digits.len() < width.max(1) as usize {
        digits.push(ALPHABET[(code % 62) as usize]);
        code /= 62;
    }
    digits.iter().rev().map(|&d| d as char).collect()
}

/// A URL's code by hash truncation: a fixed 64-bit mix of its id (SplitMix64's finaliser,
/// standing in for MD5 or SHA-256: any good hash looks random here), keeping `len` base62
/// digits — the hash modulo 62^len. The same URL always gets the same code.
pub fn truncated_hash(url: u64, len: u32) -> u64 {
    let mut z = url.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % space(len)
}

/// The durable counter: the next number no block holds yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    next: u64,
}

impl Counter {
    /// Hands out the next `size` numbers (at least 1) as one block.
    pub fn lease(&mut self, size: u64) -> Range {
        let start = self.next;
        self.next += size.max(1);
        Range { next: start, end: self.next }
    }

    /// Numbers handed out in blocks so far.
    pub fn issued(&self) -> u64 {
        self.next
    }
}

/// A server's block: the numbers `next..end` it has not spent yet (held in memory).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Range {
    next: u64,
    end: u64,
}

impl Range {
    /// The block's next number, if any is left.
    pub fn take(&mut self) -> Option<u64> {
        (self.next < self.end).then(|| {
            self.next += 1;
            self.next - 1
        })
    }

    /// Numbers left: what a crash loses.
    pub fn left(&self) -> u64 {
        self.end - self.next
    }
}

/// How a server picks a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// The URL's hash truncated, upserted.
    HashTruncate,
    /// The next number of the server's block, inserted.
    Counter,
    /// A random code, inserted; drawn again when taken.
    Random,
}

/// A write to the codes table: an upsert, or an insert refused if the code stands for another URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Write {
    pub code: u64,
    pub url: u64,
    pub upsert: bool,
}

/// The codes table (code → URL) and the counter, both durable.
#[derive(Clone, Debug, Default)]
pub struct CodeTable {
    codes: BTreeMap<u64, u64>,
    pub counter: Counter,
}

impl CodeTable {
    pub fn get(&self, code: u64) -> Option<u64> {
        self.codes.get(&code).copied()
    }

    /// Applies `w`: whether the code now stands for its URL (an insert of a taken code does not).
    pub fn write(&mut self, w: Write) -> bool {
        if w.upsert {
            self.codes.insert(w.code, w.url);
        }
        *self.codes.entry(w.code).or_insert(w.url) == w.url
    }

    pub fn len(&self) -> usize {
        self.codes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.codes.is_empty()
    }
}

/// What a minter does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    Write(Write),
    /// Its block is spent: lease another (the waiting creations wait for it).
    NeedBlock,
    Idle,
}

/// What a write's answer means for its creation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Answer {
    /// Hand this code out.
    Hand(u64),
    /// The code was taken: the creation waits for another.
    Retry,
    /// Taken `max_tries` times: the creation fails.
    GiveUp,
    /// Not a write of this server's (answered twice, or sent before a crash).
    Unknown,
}

/// A server's creations (in memory): those waiting for a code, those whose write is out with
/// its tries so far, the block it spends, and the retries it made.
#[derive(Clone, Debug, Default)]
pub struct Minter {
    waiting: VecDeque<u64>,
    out: BTreeMap<u64, u32>,
    pub range: Range,
    pub retries: u64,
}

impl Minter {
    /// A new URL to shorten.
    pub fn add(&mut self, url: u64) {
        self.out.insert(url, 0);
        self.waiting.push_back(url);
    }

    /// The next waiting creation's write, with a code of `len` characters by `scheme` (`salt`
    /// stands for the URLs' text in their hash).
    pub fn next(&mut self, scheme: Scheme, len: u32, salt: u64, rng: &mut Rng) -> Next {
        let Some(&url) = self.waiting.front() else { return Next::Idle };
        let (code, upsert) = match scheme {
            Scheme::HashTruncate => (truncated_hash(salt << 40 ^ url, len), true),
            Scheme::Random => (rng.below(space(len)), false),
            Scheme::Counter => match self.range.take() {
                Some(code) => (code, false),
                None => return Next::NeedBlock,
            },
        };
        self.waiting.pop_front();
        Next::Write(Write { code, url, upsert })
    }

    /// The table's answer to `w`: stored (hand the code out), or taken (try again, up to `max_tries`).
    pub fn answered(&mut self, w: Write, stored: bool, max_tries: u32) -> Answer {
        let Some(tries) = self.out.get_mut(&w.url) else { return Answer::Unknown };
        if stored {
            self.out.remove(&w.url);
            return Answer::Hand(w.code);
        }
        (*tries, self.retries) = (*tries + 1, self.retries + 1);
        if *tries >= max_tries {
            self.out.remove(&w.url);
            return Answer::GiveUp;
        }
        self.waiting.push_back(w.url);
        Answer::Retry
    }

    /// A crash: everything forgotten; returns the codes left in the block (a gap).
    pub fn crash(&mut self) -> u64 {
        let left = self.range.left();
        *self = Minter { retries: self.retries, ..Minter::default() };
        left
    }
}

/// The truth of the links handed out: each (code, URL) in order, and the URL each code first
/// stood for (what its first creator shares).
#[derive(Clone, Debug, Default)]
pub struct Ledger {
    links: Log<(u64, u64)>,
    first: BTreeMap<u64, u64>,
    made: u64,
}

impl Ledger {
    /// `code` handed out for `url`: `Ok(true)` a new link, `Ok(false)` the same answer again,
    /// `Err(first)` when the code already stood for URL `first` (the link is kept all the same:
    /// its creator shares it).
    pub fn handed(&mut self, code: u64, url: u64) -> Result<bool, u64> {
        match self.first.get(&code).copied() {
            Some(first) if first == url => Ok(false),
            found => {
                self.first.entry(code).or_insert(url);
                self.links.push((code, url));
                found.map_or(Ok(true), Err)
            }
        }
    }

    /// `handed`, told as a check would: `Err` names the code and both URLs.
    pub fn hand(&mut self, code: u64, url: u64, len: u32) -> Result<bool, String> {
        let first = |first| format!("code {} handed to URL #{url} but it stands for URL #{first}", base62(code, len));
        self.handed(code, url).map_err(first)
    }

    /// Whether a click on link `i` that went to `url` (`None`: 404) went where the link was made
    /// for; `Err` names the code and both URLs.
    pub fn judge(&self, i: usize, url: Option<u64>, len: u32) -> Result<(), String> {
        let (code, want) = self.link(i);
        let got = url.map_or("nothing (404)".to_string(), |u| format!("URL #{u}"));
        if url == Some(want) {
            return Ok(());
        }
        Err(format!("code {}, made for URL #{want}, redirected to {got}", base62(code, len)))
    }

    /// A link to click, by age: rank r (0 the newest) drawn from `zipf` again while r is past the
    /// links handed out — the Zipf law truncated to them (given up after 32 draws, when few exist).
    pub fn pick(&self, zipf: &Zipf, rng: &mut Rng) -> Option<(usize, u64)> {
        let n = self.links.len();
        let rank = (0..32).map(|_| zipf.pick(rng)).find(|&r| r < n)?;
        Some((n - 1 - rank, self.link(n - 1 - rank).0))
    }

    /// A number for the next URL made: one more than all made so far.
    pub fn made(&mut self) -> u64 {
        self.made += 1;
        self.made
    }

    /// Links handed out.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Link `i` (in the order handed out): its code and URL.
    pub fn link(&self, i: usize) -> (u64, u64) {
        *self.links.get(i).expect("a link handed out")
    }
}

/// Expected retries of inserting `n` random codes, each drawn again until it is free, into
/// an empty space of `space` codes: Σ_{u<n} u/(space − u) (geometric tries per insert).
pub fn expected_retries(n: u64, space: f64) -> f64 {
    (0..n.min(space as u64)).map(|u| u as f64 / (space - u as f64)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parts::unique::{expected_repeats, Inserted, UniqueIndex};

    #[test]
    fn base62_writes_digits_in_order_and_pads_to_the_width() {
        assert_eq!((base62(0, 3), base62(61, 3), base62(62, 1)), ("000".into(), "00Z".into(), "10".into()));
        assert_eq!(base62(space(3) - 1, 3), "ZZZ");
        assert_eq!(base62(space(3), 3), "1000", "past 62^k a counter's code grows a character");
        assert_eq!(space(7), 3_521_614_606_208);
    }

    #[test]
    fn truncated_hashes_repeat_as_the_birthday_bound_says() {
        // 3,000 URLs into 62³ = 238,328 codes: n − m(1 − (1 − 1/m)ⁿ) ≈ 18.8 codes already taken
        // (n²/2m = 18.9 pairs); a run's count varies by about its square root, so 400 runs'
        // mean (standard error ≈ 0.22) within 3%.
        let (n, len, runs) = (3_000u64, 3, 400u64);
        let mut total = 0;
        for run in 0..runs {
            let mut index = UniqueIndex::new(1);
            (0..n).for_each(|i| _ = index.insert(truncated_hash(run << 32 | i, len), ()));
            total += index.duplicates();
        }
        let (got, want) = (total as f64 / runs as f64, expected_repeats(n, space(len) as f64));
        assert!((got - want).abs() <= 0.03 * want, "{got} repeats a run, expected {want:.2}");
        assert!((want - 3000.0 * 2999.0 / 2.0 / space(3) as f64).abs() < 0.1, "the birthday approximation");
        assert_eq!(truncated_hash(7, 3), truncated_hash(7, 3), "one URL, one code");
    }

    #[test]
    fn blocks_never_overlap_and_a_lost_block_is_a_gap() {
        let mut counter = Counter::default();
        let (mut a, mut b) = (counter.lease(3), counter.lease(2));
        let mut got: Vec<u64> = std::iter::from_fn(|| a.take()).chain(std::iter::from_fn(|| b.take())).collect();
        assert_eq!((got.clone(), a.left()), (vec![0, 1, 2, 3, 4], 0));
        let mut c = counter.lease(10);
        got.push(c.take().expect("a fresh block"));
        // The server holding c crashes with 9 left: its next block starts past them.
        assert_eq!((c.left(), counter.lease(10).take()), (9, Some(15)));
        assert_eq!(counter.issued(), 25);
    }

    #[test]
    fn random_codes_retry_as_the_sum_of_geometric_tries() {
        // 20,000 random codes into 62³: Σ u/(m − u) ≈ 889 retries (n²/2m = 839, plus the
        // rise as the space fills); a run varies by ~30, so 40 runs' mean within 2%.
        let (n, m, runs) = (20_000u64, space(3), 40);
        let mut rng = Rng::new(5);
        let mut retries = 0;
        for _ in 0..runs {
            let mut index = UniqueIndex::new(1);
            for i in 0..n {
                while let Inserted::Duplicate(_) = index.insert(rng.below(m), i) {
                    retries += 1;
                }
            }
        }
        let (got, want) = (retries as f64 / runs as f64, expected_retries(n, m as f64));
        assert!((got - want).abs() <= 0.02 * want && (want - 889.3).abs() < 1.0, "{got} retries, expected {want:.1}");
    }

    #[test]
    fn an_upsert_takes_a_code_and_an_insert_is_refused() {
        let mut table = CodeTable::default();
        let w = |code, url, upsert| Write { code, url, upsert };
        assert!(table.write(w(5, 1, false)) && table.write(w(5, 1, false)), "the same URL again is stored");
        assert!(!table.write(w(5, 2, false)) && table.get(5) == Some(1), "the primary key refuses another URL");
        assert!(table.write(w(5, 2, true)) && table.get(5) == Some(2), "an upsert silently takes the code");
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn a_minter_waits_for_a_block_retries_a_taken_code_and_gives_up() {
        let mut rng = Rng::new(1);
        let mut m = Minter::default();
        assert_eq!(m.next(Scheme::Counter, 3, 0, &mut rng), Next::Idle);
        m.add(7);
        assert_eq!(m.next(Scheme::Counter, 3, 0, &mut rng), Next::NeedBlock);
        m.range = Counter { next: 40 }.lease(2);
        let Next::Write(w) = m.next(Scheme::Counter, 3, 0, &mut rng) else { panic!("a write") };
        assert_eq!((w.code, w.upsert), (40, false));
        assert_eq!(m.answered(w, false, 2), Answer::Retry, "taken: the next code");
        let Next::Write(w) = m.next(Scheme::Counter, 3, 0, &mut rng) else { panic!("a write") };
        assert_eq!((w.code, m.answered(w, false, 2), m.retries), (41, Answer::GiveUp, 2));
        m.add(8);
        let Next::Write(w) = m.next(Scheme::HashTruncate, 3, 9, &mut rng) else { panic!("a write") };
        assert!(w.upsert && w.code == truncated_hash(9 << 40 ^ 8, 3));
        assert_eq!((m.answered(w, true, 2), m.answered(w, true, 2)), (Answer::Hand(w.code), Answer::Unknown));
        m.range = Counter::default().lease(10);
        m.range.take();
        assert_eq!((m.crash(), m.range.left(), m.retries), (9, 0, 2), "a crash loses the block's rest");
    }

    #[test]
    fn the_ledger_tells_a_code_handed_to_a_second_url() {
        let mut ledger = Ledger::default();
        assert_eq!((ledger.handed(5, 1), ledger.handed(5, 1)), (Ok(true), Ok(false)));
        assert_eq!((ledger.handed(5, 2), ledger.len(), ledger.link(1)), (Err(1), 2, (5, 2)));
        assert_eq!(ledger.hand(5, 3, 3), Err("code 005 handed to URL #3 but it stands for URL #1".into()));
        assert_eq!((ledger.judge(0, Some(1), 3), ledger.judge(1, Some(2), 3)), (Ok(()), Ok(())));
        assert_eq!(ledger.judge(0, Some(2), 3), Err("code 005, made for URL #1, redirected to URL #2".into()));
        assert_eq!(ledger.judge(0, None, 3), Err("code 005, made for URL #1, redirected to nothing (404)".into()));
    }

    #[test]
    fn clicks_pick_links_by_age_as_zipf_truncated_to_those_handed_out() {
        // 10 links, Zipf(1) over 1,000 ranks: the newest is clicked 1/H(10) = 34% of the time
        // (100,000 clicks: standard error 0.15%), the oldest 1/(10·H(10)) = 3.4%.
        let mut ledger = Ledger::default();
        (0..10).for_each(|i| _ = ledger.handed(i, i));
        let (zipf, mut rng, mut counts) = (Zipf::new(1000, 1.0), Rng::new(3), [0u32; 10]);
        (0..100_000).for_each(|_| counts[ledger.pick(&zipf, &mut rng).expect("a link").0] += 1);
        let h10: f64 = (1..=10).map(|k| 1.0 / k as f64).sum();
        assert!((counts[9] as f64 / 1e5 - 1.0 / h10).abs() < 0.006, "{counts:?}");
        assert!((counts[0] as f64 / 1e5 - 0.1 / h10).abs() < 0.003, "{counts:?}");
        assert_eq!(Ledger::default().pick(&zipf, &mut rng), None);
    }
}
