//! Chunked uploads' bookkeeping: a file cut into chunks, the sender's record of what the server confirmed and what is left to send, and the server's parts stored by index, assembled once whole and judged against the true file.
//!
//! The server's side is S3 multipart's: parts kept by number (a copy overwrites the same
//! bytes), the parts held answered as a bit set (ListParts, tus's HEAD), the file assembled
//! in index order only when every part is there (CompleteMultipartUpload).

use faultline_core::{Breach, Time};
use std::collections::{BTreeMap, BTreeSet};

/// A file's size and chunking.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub bytes: u64,
    pub chunk: u64,
    pub n: u32,
}

impl Shape {
    pub fn new(bytes: u64, chunk: u64) -> Shape {
        Shape { bytes, chunk, n: bytes.div_ceil(chunk) as u32 }
    }
    /// Chunk `i`'s length (the last is what is left).
    pub fn len(&self, i: u32) -> u64 {
        self.chunk.min(self.bytes - i as u64 * self.chunk)
    }
}

/// The bytes of chunk `i` of file `file`, as a checksum (what the file really holds).
pub fn digest(file: u64, i: u32) -> u64 {
    let x = (file << 32 | i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x ^ x >> 29
}

/// Judges an assembled file of `n` chunks against the truth: the first chunk missing or out of place.
pub fn judge(file: u64, n: u32, pieces: &[u64]) -> Result<(), String> {
    for (i, &d) in pieces.iter().enumerate().take(n as usize) {
        if d != digest(file, i as u32) {
            return Err(match (0..n).find(|&j| digest(file, j) == d) {
                Some(j) => format!("file {file}: chunk {j} stands where chunk {i} belongs"),
                None => format!("file {file}: chunk {i} holds bytes of no chunk of this file"),
            });
        }
    }
    match pieces.len() as u32 {
        len if len < n => Err(format!("file {file}: chunk {len} missing")),
        len if len > n => Err(format!("file {file}: {} chunks past the last one", len - n)),
        _ => Ok(()),
    }
}

/// Whether bit `i` is set in a bit set of 64-bit words.
fn bit(bits: &[u64], i: u32) -> bool {
    bits.get(i as usize / 64).is_some_and(|w| w >> (i % 64) & 1 == 1)
}

/// The sender's side: chunks confirmed, chunks to send, chunks that went on the wire before,
/// and the progress shown to the user (with the latest time it fell).
#[derive(Clone, Debug)]
pub struct Sending {
    pub shape: Shape,
    acked: Vec<bool>,
    acked_bytes: u64,
    todo: BTreeSet<u32>,
    sent_before: Vec<bool>,
    shown_pm: i64,
    pub fell: Breach,
}

impl Sending {
    /// A new file: nothing confirmed, everything to send.
    pub fn new(shape: Shape) -> Sending {
        let n = shape.n as usize;
        let (acked, todo, sent_before) = (vec![false; n], (0..shape.n).collect(), vec![false; n]);
        Sending { shape, acked, acked_bytes: 0, todo, sent_before, shown_pm: 0, fell: Breach::default() }
    }

    /// The server confirmed chunk `i`.
    pub fn confirm(&mut self, i: u32) {
        if !std::mem::replace(&mut self.acked[i as usize], true) {
            self.acked_bytes += self.shape.len(i);
        }
    }

    /// The server holds the chunks set in `bits`. `exact` (an offset protocol, where the server
    /// holds a prefix of the file and the sender resumes where it ends): the server's word
    /// replaces the acknowledgements, as a tus client trusts the offset it is told.
    pub fn confirm_held(&mut self, bits: &[u64], exact: bool) {
        if exact {
            self.forget_confirmed();
        }
        for i in (0..self.shape.n).filter(|&i| bit(bits, i)) {
            self.confirm(i);
        }
    }

    /// Nothing confirmed any more (a new upload of the same file).
    pub fn forget_confirmed(&mut self) {
        self.acked.iter_mut().for_each(|a| *a = false);
        self.acked_bytes = 0;
    }

    /// Every chunk not confirmed is to be sent (again), lowest first.
    pub fn requeue(&mut self) {
        self.todo = (0..self.shape.n).filter(|&i| !self.acked[i as usize]).collect();
    }

    /// The next chunk to send, taken off the list.
    pub fn take_next(&mut self) -> Option<u32> {
        self.todo.pop_first()
    }

    /// Chunk `i` went unanswered: to send again.
    pub fn retry(&mut self, i: u32) {
        if !self.acked[i as usize] {
            self.todo.insert(i);
        }
    }

    /// `bytes` of chunk `i` went on the wire: how many of them were sent again (all, if any
    /// of that chunk went on the wire before).
    pub fn on_wire(&mut self, i: u32, bytes: u64) -> u64 {
        if std::mem::replace(&mut self.sent_before[i as usize], true) {
            bytes
        } else {
            0
        }
    }

    /// Whether the server confirmed every chunk.
    pub fn whole(&self) -> bool {
        self.acked_bytes == self.shape.bytes
    }

    /// Confirmed bytes, per mille of the file: the progress to show.
    pub fn permille(&self) -> i64 {
        (self.acked_bytes * 1000 / self.shape.bytes.max(1)) as i64
    }

    /// Shows the progress confirmed now (per mille, returned); a fall is recorded at `at`.
    pub fn show(&mut self, file: u64, at: Time) -> i64 {
        let pm = self.permille();
        if pm < self.shown_pm {
            let what = format!("file {file}: progress fell from {}% to {}%", self.shown_pm / 10, pm / 10);
            self.fell.record(what, at);
        }
        self.shown_pm = pm;
        pm
    }

    /// The progress shown, per mille.
    pub fn shown(&self) -> i64 {
        self.shown_pm
    }

    pub fn confirmed(&self) -> usize {
        self.acked.iter().filter(|&&a| a).count()
    }
}

/// What the server says of an upload it is asked about.
#[derive(Clone, Debug, PartialEq)]
pub enum Answer {
    /// The parts held, as a bit set.
    Held(Vec<u64>),
    /// Assembled already.
    Done,
}

/// The server's side: unfinished uploads' parts by index, on disk, and the latest file
/// assembled wrong (judged against the truth).
#[derive(Clone, Debug, Default)]
pub struct Parts {
    open: BTreeMap<u64, (u64, Vec<Option<u64>>)>,
    completed: u64,
    pub assembled: u64,
    pub copies: u64,
    pub bad_file: Breach,
}

impl Parts {
    /// Opens upload `upload` of `file` in `n` chunks (ids grow: a newer one abandons the
    /// older unfinished ones), or tells what is held of it.
    pub fn open(&mut self, upload: u64, file: u64, n: u32) -> Answer {
        if upload <= self.completed {
            return Answer::Done;
        }
        if self.open.last_key_value().is_none_or(|(&newest, _)| newest < upload) {
            self.open.clear();
            self.open.insert(upload, (file, vec![None; n as usize]));
        }
        self.held(upload)
    }

    /// The parts of `upload` held, as a bit set.
    pub fn held(&self, upload: u64) -> Answer {
        let parts = self.open.get(&upload).map_or(&[][..], |(_, p)| p);
        let mut bits = vec![0u64; parts.len().div_ceil(64)];
        for i in (0..parts.len()).filter(|&i| parts[i].is_some()) {
            bits[i / 64] |= 1 << (i % 64);
        }
        Answer::Held(bits)
    }

    /// Stores chunk `i` (its bytes as `digest`) of an open upload at its index, where a copy
    /// overwrites the same bytes; or, `append`ing, where the file ends so far (an offset, as a
    /// stream written in arrival order): a chunk that arrives late or twice lands in another's place.
    pub fn store(&mut self, upload: u64, i: u32, digest: u64, append: bool) {
        let Some((_, parts)) = self.open.get_mut(&upload) else { return };
        let at = if append { parts.iter().take_while(|p| p.is_some()).count() } else { i as usize };
        if let Some(part) = parts.get_mut(at) {
            self.copies += part.replace(digest).is_some() as u64;
        }
    }

    /// Completes `upload` of `n` chunks at `at`: `Done` once every part is held (the file
    /// assembled in index order the first time, a wrong one recorded), else what is held.
    pub fn complete(&mut self, upload: u64, n: u32, at: Time) -> Answer {
        if upload <= self.completed {
            return Answer::Done;
        }
        let whole = self.open.get(&upload).filter(|(_, p)| p.len() == n as usize && p.iter().all(Option::is_some));
        let Some((file, parts)) = whole.cloned() else { return self.held(upload) };
        let pieces: Vec<u64> = parts.into_iter().flatten().collect();
        if let Err(why) = judge(file, n, &pieces) {
            self.bad_file.record(why, at);
        }
        self.open.remove(&upload);
        (self.completed, self.assembled) = (upload, self.assembled + 1);
        Answer::Done
    }

    /// Open uploads and the parts they hold.
    pub fn stored(&self) -> (usize, usize) {
        (self.open.len(), self.open.values().map(|(_, p)| p.iter().flatten().count()).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_judge_names_the_first_chunk_missing_or_out_of_place() {
        let file: Vec<u64> = (0..5).map(|i| digest(7, i)).collect();
        assert_eq!(judge(7, 5, &file), Ok(()));
        assert_eq!(judge(7, 5, &file[..4]), Err("file 7: chunk 4 missing".into()));
        let swapped = [file[0], file[2], file[1], file[3], file[4]];
        assert_eq!(judge(7, 5, &swapped), Err("file 7: chunk 2 stands where chunk 1 belongs".into()));
        // Appended twice (a retry after a lost answer to an append-only endpoint).
        let doubled = [file[0], file[1], file[1], file[2], file[3], file[4]];
        assert_eq!(judge(7, 5, &doubled), Err("file 7: chunk 1 stands where chunk 2 belongs".into()));
        assert_eq!(judge(7, 5, &[&file[..], &file[..1]].concat()), Err("file 7: 1 chunks past the last one".into()));
        assert!(judge(8, 5, &file).is_err_and(|e| e.contains("bytes of no chunk")));
    }

    #[test]
    fn parts_by_index_survive_copies_and_any_order_and_assemble_once_whole() {
        let mut p = Parts::default();
        assert_eq!(p.open(1, 7, 3), Answer::Held(vec![0]));
        for i in [2, 0, 2] {
            p.store(1, i, digest(7, i), false);
        }
        assert_eq!((p.copies, p.held(1)), (1, Answer::Held(vec![0b101])));
        assert_eq!(p.complete(1, 3, Time(1)), Answer::Held(vec![0b101]), "chunk 1 is missing: not assembled");
        p.store(1, 1, digest(7, 1), false);
        assert_eq!((p.complete(1, 3, Time(2)), p.assembled, p.bad_file.latest()), (Answer::Done, 1, None));
        assert_eq!((p.complete(1, 3, Time(3)), p.open(1, 7, 3), p.assembled), (Answer::Done, Answer::Done, 1));
        // A file the client numbered wrong is assembled and told (as a bug would be).
        p.open(9, 7, 2);
        p.store(9, 0, digest(7, 1), false);
        p.store(9, 1, digest(7, 0), false);
        assert_eq!(p.complete(9, 2, Time(4)), Answer::Done);
        assert_eq!(p.bad_file.now(Time(4)), Err("file 7: chunk 1 stands where chunk 0 belongs".into()));
        // A newer upload abandons an older unfinished one; a stale chunk of it is dropped.
        p.open(12, 8, 70);
        p.open(13, 8, 70);
        p.store(12, 0, digest(8, 0), false);
        p.store(13, 65, digest(8, 65), false);
        assert_eq!((p.stored(), p.held(13)), ((1, 1), Answer::Held(vec![0, 0b10])));
    }

    #[test]
    fn appending_puts_a_late_chunk_after_later_ones_and_a_copy_in_the_next_place() {
        let mut p = Parts::default();
        p.open(1, 7, 4);
        for i in [0, 2, 1, 1] {
            p.store(1, i, digest(7, i), true);
        }
        assert_eq!((p.held(1), p.copies), (Answer::Held(vec![0b1111]), 0), "four places filled, in arrival order");
        assert_eq!(p.complete(1, 4, Time(1)), Answer::Done);
        assert_eq!(p.bad_file.now(Time(1)), Err("file 7: chunk 2 stands where chunk 1 belongs".into()));
    }

    #[test]
    fn the_sender_counts_progress_and_bytes_sent_again() {
        let mut s = Sending::new(Shape::new(2_500, 1_000));
        assert_eq!((s.shape.n, s.shape.len(2), s.take_next(), s.take_next()), (3, 500, Some(0), Some(1)));
        assert_eq!((s.on_wire(0, 400), s.on_wire(0, 1000), s.on_wire(1, 1000)), (0, 1000, 0), "cut, then again");
        s.confirm(0);
        s.confirm(0);
        assert_eq!(s.permille(), 400);
        assert_eq!((s.show(1, Time(5)), s.fell.now(Time(5))), (400, Ok(())));
        s.confirm_held(&[0b110], false);
        assert!(s.whole() && s.permille() == 1000 && s.confirmed() == 3 && s.shown() == 400);
        s.forget_confirmed();
        s.requeue();
        assert_eq!((s.permille(), s.take_next()), (0, Some(0)));
        assert_eq!(s.show(1, Time(9)), 0);
        assert_eq!(s.fell.now(Time(9)), Err("file 1: progress fell from 40% to 0%".into()));
        s.retry(2);
        assert_eq!((s.take_next(), s.take_next(), s.take_next()), (Some(1), Some(2), None));
    }
}
