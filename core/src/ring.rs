//! A bounded buffer of the latest items: a ring that overwrites its oldest item when full.
//!
//! The trace keeps its latest entries (and copies of their messages) in one, on every event
//! of a run the player shows. Overwriting a slot in place is a third of what a `VecDeque`'s
//! `pop_front` then `push_back` costs (each moves the item out, then in), and the slots are
//! allocated once, when the ring first fills.

/// The latest `cap` items pushed, oldest first.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    items: Vec<T>,
    /// Where the next item goes once the ring is full (the oldest item's slot).
    next: usize,
    cap: usize,
}

impl<T> Ring<T> {
    /// A ring that keeps at most `cap` items (none if `cap` is 0).
    pub fn new(cap: usize) -> Ring<T> {
        Ring { items: Vec::new(), next: 0, cap }
    }

    #[inline]
    pub fn push(&mut self, item: T) {
        if self.items.len() < self.cap {
            self.items.push(item);
        } else if self.cap > 0 {
            self.items[self.next] = item;
            self.next = if self.next + 1 == self.cap { 0 } else { self.next + 1 };
        }
    }

    /// The items as two slices, oldest first: the older part, then the newer.
    pub fn as_slices(&self) -> (&[T], &[T]) {
        let (newer, older) = self.items.split_at(self.next);
        (older, newer)
    }

    /// Oldest first (and, reversed, newest first).
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + Clone {
        let (older, newer) = self.as_slices();
        older.iter().chain(newer)
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn cap(&self) -> usize {
        self.cap
    }

    /// The `i`-th item, oldest first.
    pub fn get(&self, i: usize) -> Option<&T> {
        let (older, newer) = self.as_slices();
        older.get(i).or_else(|| newer.get(i.checked_sub(older.len())?))
    }

    /// The number of items (oldest first) for which `pred` holds, given that it holds for
    /// a prefix of them: a binary search, as `slice::partition_point`.
    pub fn partition_point(&self, mut pred: impl FnMut(&T) -> bool) -> usize {
        let (older, newer) = self.as_slices();
        let i = older.partition_point(&mut pred);
        if i < older.len() {
            i
        } else {
            i + newer.partition_point(pred)
        }
    }

    /// Forgets every item (keeping the room they took).
    pub fn clear(&mut self) {
        self.items.clear();
        self.next = 0;
    }

    pub fn to_vec(&self) -> Vec<T>
    where
        T: Clone,
    {
        self.iter().cloned().collect()
    }
}

impl<T> std::ops::Index<usize> for Ring<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        self.get(i).expect("ring index out of bounds")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_latest_in_order() {
        let mut r = Ring::new(3);
        r.push(1);
        r.push(2);
        assert_eq!(r.to_vec(), [1, 2]);
        for i in 3..=7 {
            r.push(i);
        }
        assert_eq!(r.to_vec(), [5, 6, 7]);
        assert_eq!(r.iter().rev().copied().collect::<Vec<_>>(), [7, 6, 5]);
        assert_eq!((r.len(), r[0], r[2], r.get(3)), (3, 5, 7, None));
        r.clear();
        assert_eq!((r.len(), r.get(0)), (0, None));
        r.push(8);
        r.push(9);
        assert_eq!(r.to_vec(), [8, 9], "filled again from the start");
    }

    #[test]
    fn agrees_with_a_plain_list_at_every_fill_and_wrap() {
        for cap in 0..6 {
            let mut r = Ring::new(cap);
            let mut all = Vec::new();
            for i in 0..20u32 {
                r.push(i);
                all.push(i);
                let kept = &all[all.len().saturating_sub(cap)..];
                assert_eq!(r.to_vec(), kept, "cap {cap} after {i}");
                assert_eq!(r.len(), kept.len());
                for (k, v) in kept.iter().enumerate() {
                    assert_eq!(r.get(k), Some(v));
                }
                for below in 0..22 {
                    assert_eq!(r.partition_point(|&x| x < below), kept.partition_point(|&x| x < below));
                }
            }
        }
    }
}
