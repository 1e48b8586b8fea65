//! The typed trace: what happened, in order, bounded in memory, with a running hash
//! over the whole run so that two runs can be compared for sameness cheaply.

use crate::net::NodeId;
use crate::ring::Ring;
use crate::time::Time;
use serde::Serialize;

/// Why a message never reached its handler.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum DropReason {
    /// Lost on the wire (link loss or a loss burst).
    Lost,
    /// A partition was between sender and receiver when it arrived.
    Partitioned,
    /// The receiver was crashed when it arrived.
    NodeDown,
}

/// One entry of the trace.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub enum TraceKind {
    Sent { from: NodeId, to: NodeId, msg: &'static str, id: u64 },
    Delivered { from: NodeId, to: NodeId, msg: &'static str, id: u64 },
    Dropped { from: NodeId, to: NodeId, msg: &'static str, id: u64, why: DropReason },
    Timer { node: NodeId, timer: &'static str },
    Crashed { node: NodeId },
    Restarted { node: NodeId },
    Fault { text: String },
    Action { text: String },
    Note { node: NodeId, text: String },
    Violation { check: &'static str, why: String },
}

impl TraceKind {
    /// A short label for filtering in the event log.
    pub fn label(&self) -> &'static str {
        match self {
            TraceKind::Sent { .. } => "sent",
            TraceKind::Delivered { .. } => "delivered",
            TraceKind::Dropped { .. } => "dropped",
            TraceKind::Timer { .. } => "timer",
            TraceKind::Crashed { .. } => "crashed",
            TraceKind::Restarted { .. } => "restarted",
            TraceKind::Fault { .. } => "fault",
            TraceKind::Action { .. } => "action",
            TraceKind::Note { .. } => "note",
            TraceKind::Violation { .. } => "violation",
        }
    }

    /// The nodes this entry concerns, for filtering by node.
    pub fn nodes(&self) -> (Option<NodeId>, Option<NodeId>) {
        match *self {
            TraceKind::Sent { from, to, .. }
            | TraceKind::Delivered { from, to, .. }
            | TraceKind::Dropped { from, to, .. } => (Some(from), Some(to)),
            TraceKind::Timer { node, .. }
            | TraceKind::Crashed { node }
            | TraceKind::Restarted { node }
            | TraceKind::Note { node, .. } => (Some(node), None),
            _ => (None, None),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TraceEvent {
    /// Position in the whole run (the trace keeps only the latest entries).
    pub seq: u64,
    pub at: Time,
    pub kind: TraceKind,
}

/// A running 64-bit hash that takes whole words: multiply-xorshift mixing per word
/// (integer only, so native and WASM agree). Byte strings are read 8 bytes at a time,
/// little-endian, with their length folded in.
#[derive(Clone, Copy, Debug)]
pub struct RunHash(u64);

impl Default for RunHash {
    fn default() -> Self {
        RunHash(0xcbf2_9ce4_8422_2325)
    }
}

impl RunHash {
    pub fn u64(&mut self, v: u64) {
        let x = (self.0 ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = x ^ (x >> 29);
    }
    #[inline(always)]
    pub fn bytes(&mut self, b: &[u8]) {
        if b.len() < 8 {
            // Short strings (labels, mostly) take one mix: the bytes, then the length on top.
            self.u64(short_word(b) | (b.len() as u64) << 56);
        } else {
            self.long_bytes(b);
        }
    }
    #[inline(never)]
    fn long_bytes(&mut self, b: &[u8]) {
        self.u64(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.u64(u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.u64(short_word(rest));
        }
    }
    pub fn finish(self) -> u64 {
        self.0
    }
}

/// Up to 7 bytes as a little-endian word (the first byte lowest), assembled in a register
/// from two overlapping loads rather than byte by byte: labels are hashed on every send and
/// timer. (Copying into a stack buffer and reloading it as a word stalls store forwarding,
/// which once cost a third of the engine's time.)
#[inline(always)]
fn short_word(b: &[u8]) -> u64 {
    let n = b.len();
    debug_assert!(n < 8);
    if n >= 4 {
        let lo = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as u64;
        let hi = u32::from_le_bytes([b[n - 4], b[n - 3], b[n - 2], b[n - 1]]) as u64;
        // The loads overlap on bytes n-4..4, which both put in the same place.
        lo | hi << (8 * (n - 4))
    } else if n > 0 {
        b[0] as u64 | (b[n / 2] as u64) << (8 * (n / 2)) | (b[n - 1] as u64) << (8 * (n - 1))
    } else {
        0
    }
}

/// The bounded trace and its running hash.
#[derive(Clone, Debug)]
pub struct Trace {
    entries: Ring<TraceEvent>,
    total: u64,
    hash: RunHash,
    /// Keep entries (the hash is always kept). Turned on and off through `Run::keep_trace`,
    /// which also starts afresh what the run keeps beside the trace.
    pub(crate) keep: bool,
    /// Keep a copy of each message and timer, so `Run::detail` can show it in full.
    pub details: bool,
}

impl Trace {
    pub fn new(cap: usize) -> Trace {
        Trace { entries: Ring::new(cap), total: 0, hash: RunHash::default(), keep: true, details: true }
    }

    /// Records an entry. The hash covers the entry's structure only, so keeping entries
    /// or details does not change the fingerprint.
    #[inline(always)]
    pub fn push(&mut self, at: Time, kind: TraceKind) {
        self.hash_entry(at, &kind);
        self.total += 1;
        if self.keep {
            self.keep_entry(at, kind);
        }
    }

    /// `push(at, TraceKind::Sent { .. })`, without building the entry unless it is kept:
    /// the kernel's hottest trace call.
    #[inline(always)]
    pub fn sent(&mut self, at: Time, from: NodeId, to: NodeId, msg: &'static str, id: u64) {
        self.hash_sent(at, from, to, msg, id);
        self.total += 1;
        if self.keep {
            self.keep_entry(at, TraceKind::Sent { from, to, msg, id });
        }
    }

    /// `push(at, TraceKind::Delivered { .. })`, likewise.
    #[inline(always)]
    pub fn delivered(&mut self, at: Time, from: NodeId, to: NodeId, msg: &'static str, id: u64) {
        self.hash_delivered(at, id);
        self.total += 1;
        if self.keep {
            self.keep_entry(at, TraceKind::Delivered { from, to, msg, id });
        }
    }

    /// `push(at, TraceKind::Timer { .. })`, likewise.
    #[inline(always)]
    pub fn timer(&mut self, at: Time, node: NodeId, timer: &'static str) {
        self.hash_timer(at, node, timer);
        self.total += 1;
        if self.keep {
            self.keep_entry(at, TraceKind::Timer { node, timer });
        }
    }

    /// Starts an entry's hash: its kind, as a small number, folded into the time word (one
    /// mix, not a string). Each kind hashes its fields after it.
    #[inline(always)]
    fn head(&mut self, at: Time, tag: u64) -> &mut RunHash {
        self.hash.u64(at.0.rotate_left(8) ^ tag);
        &mut self.hash
    }

    #[inline(always)]
    fn hash_sent(&mut self, at: Time, from: NodeId, to: NodeId, msg: &'static str, id: u64) {
        let h = self.head(at, 1);
        h.u64(((from as u64) << 32) | to as u64);
        h.bytes(msg.as_bytes());
        h.u64(id);
    }

    /// The id names a message whose ends and label were hashed when it was sent.
    #[inline(always)]
    fn hash_delivered(&mut self, at: Time, id: u64) {
        self.head(at, 2).u64(id);
    }

    #[inline(always)]
    fn hash_timer(&mut self, at: Time, node: NodeId, timer: &'static str) {
        let h = self.head(at, 4);
        h.u64(node as u64);
        h.bytes(timer.as_bytes());
    }

    fn keep_entry(&mut self, at: Time, kind: TraceKind) {
        self.entries.push(TraceEvent { seq: self.total - 1, at, kind });
    }

    /// Forgets the kept entries (the hash and the count go on); through `Run::keep_trace`,
    /// which forgets what the run keeps beside them too.
    pub(crate) fn forget_kept(&mut self) {
        self.entries.clear();
    }

    /// Whether entries are being kept.
    pub fn keeps(&self) -> bool {
        self.keep
    }

    /// How many entries are kept at most.
    pub fn cap(&self) -> usize {
        self.entries.cap()
    }

    #[inline(always)]
    fn hash_entry(&mut self, at: Time, kind: &TraceKind) {
        match kind {
            TraceKind::Sent { from, to, msg, id } => self.hash_sent(at, *from, *to, msg, *id),
            TraceKind::Delivered { id, .. } => self.hash_delivered(at, *id),
            TraceKind::Dropped { from, to, msg, id, why } => {
                let h = self.head(at, 3);
                h.u64(((*from as u64) << 32) | *to as u64);
                h.bytes(msg.as_bytes());
                h.u64(*id);
                h.u64(*why as u64);
            }
            TraceKind::Timer { node, timer } => self.hash_timer(at, *node, timer),
            TraceKind::Crashed { node } => self.head(at, 5).u64(*node as u64),
            TraceKind::Restarted { node } => self.head(at, 6).u64(*node as u64),
            TraceKind::Fault { text } => self.head(at, 7).bytes(text.as_bytes()),
            TraceKind::Action { text } => self.head(at, 8).bytes(text.as_bytes()),
            TraceKind::Note { node, text } => {
                let h = self.head(at, 9);
                h.u64(*node as u64);
                h.bytes(text.as_bytes());
            }
            TraceKind::Violation { check, why } => {
                let h = self.head(at, 10);
                h.bytes(check.as_bytes());
                h.bytes(why.as_bytes());
            }
        }
    }

    /// The running hash of every entry so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// How many entries the whole run produced (not only those kept).
    pub fn total(&self) -> u64 {
        self.total
    }

    /// The kept entries, oldest first.
    pub fn entries(&self) -> &Ring<TraceEvent> {
        &self.entries
    }
}

/// A short, human-comparable fingerprint of a trace hash.
pub fn fingerprint(hash: u64) -> String {
    format!("{:08x}", fold(hash))
}

/// The trace hash folded to the 32 bits a fingerprint shows.
pub fn fold(hash: u64) -> u32 {
    ((hash >> 32) ^ (hash & 0xffff_ffff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_words_are_the_bytes_little_endian() {
        let bytes: Vec<u8> = (0..7u8).map(|i| i.wrapping_mul(37).wrapping_add(0x81)).collect();
        for n in 0..8 {
            let b = &bytes[..n];
            let byte_by_byte = b.iter().rev().fold(0u64, |w, &c| (w << 8) | c as u64);
            assert_eq!(short_word(b), byte_by_byte, "{n} bytes");
        }
    }

    #[test]
    fn bounded_and_hashed() {
        let mut a = Trace::new(3);
        let mut b = Trace::new(100);
        b.details = false;
        for i in 0..10 {
            let k = TraceKind::Timer { node: i, timer: "tick" };
            a.push(Time(i as u64), k.clone());
            b.push(Time(i as u64), k);
        }
        assert_eq!(a.entries().len(), 3);
        assert_eq!(a.entries()[0].seq, 7);
        assert_eq!(a.total(), 10);
        assert_eq!(a.hash(), b.hash(), "details never enter the hash");
        b.push(Time(11), TraceKind::Crashed { node: 1 });
        assert_ne!(a.hash(), b.hash());
        assert_eq!(fingerprint(0x1234_5678_0000_0001).len(), 8);
    }
}
