//! The last `capacity` messages of a stream numbered from one, in
//! fixed-size slots: what a session keeps for re-requests
//! (`gateway::OutboundStore`) and the feed for retransmission
//! (`feed::publisher::RetransmitStore`).
//!
//! The slots are allocated all zero at the start, so the allocator hands
//! out pages that are touched only as messages fill them; a ring that grew
//! by pushing would copy itself at every doubling, a stall of up to a
//! hundred megabytes on the engine core. The next slot is carried along,
//! so a push costs no division.

/// A ring of the newest messages, each at most `SLOT` bytes.
#[derive(Debug, Clone)]
pub struct SlotRing<const SLOT: usize> {
    slots: Vec<([u8; SLOT], u8)>,
    /// Slot of the next message (`count % capacity`).
    head: usize,
    /// Messages pushed so far; the next sequence number is this + 1.
    count: u64,
}

impl<const SLOT: usize> SlotRing<SLOT> {
    /// An empty ring of `capacity` (at least one) slots.
    pub fn new(capacity: usize) -> SlotRing<SLOT> {
        const { assert!(SLOT <= u8::MAX as usize) };
        SlotRing {
            slots: vec![([0u8; SLOT], 0u8); capacity.max(1)],
            head: 0,
            count: 0,
        }
    }

    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Messages pushed so far (the newest one's sequence number).
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn next_sequence(&self) -> u64 {
        self.count + 1
    }

    /// The oldest sequence number still held.
    pub fn oldest(&self) -> u64 {
        (self.count + 1)
            .saturating_sub(self.capacity() as u64)
            .max(1)
    }

    /// Stores the next message (its first `SLOT` bytes), dropping the oldest
    /// when full.
    #[inline]
    pub fn push(&mut self, msg: &[u8]) {
        let n = msg.len().min(SLOT);
        // Written in place: the slot's bytes past `n` are never read.
        let (slot, len) = &mut self.slots[self.head];
        slot[..n].copy_from_slice(&msg[..n]);
        *len = n as u8;
        self.count += 1;
        self.head += 1;
        if self.head == self.slots.len() {
            self.head = 0;
        }
    }

    /// Message `seq`, if it is still held.
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        if seq < self.oldest() || seq > self.count {
            return None;
        }
        let (slot, n) = &self.slots[self.index(seq)];
        Some(&slot[..usize::from(*n)])
    }

    /// Empties the ring and continues the numbering after `count`, holding
    /// `held`: the messages just before `count + 1`, oldest first (the
    /// newest `capacity` of them are kept, each cut to `SLOT` bytes).
    pub fn refill<M: AsRef<[u8]>>(&mut self, count: u64, held: &[M]) {
        let held = &held[held.len().saturating_sub(self.capacity())..];
        let held = &held[held.len().saturating_sub(count as usize)..];
        self.slots = vec![([0u8; SLOT], 0u8); self.capacity()];
        self.count = count;
        self.head = self.index(count + 1);
        let first = count + 1 - held.len() as u64;
        for (k, m) in held.iter().enumerate() {
            let m = m.as_ref();
            let n = m.len().min(SLOT);
            let i = self.index(first + k as u64);
            self.slots[i].0[..n].copy_from_slice(&m[..n]);
            self.slots[i].1 = n as u8;
        }
    }

    /// Where message `seq` (from 1) is or will be.
    fn index(&self, seq: u64) -> usize {
        ((seq - 1) % self.capacity() as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_capacity_messages_by_sequence_number() {
        let mut r = SlotRing::<4>::new(3);
        assert_eq!((r.oldest(), r.next_sequence(), r.get(1)), (1, 1, None));
        for i in 1..=5u8 {
            r.push(&[i; 2]);
        }
        assert_eq!((r.oldest(), r.count()), (3, 5));
        assert_eq!(r.get(2), None);
        assert_eq!(r.get(3), Some(&[3u8, 3][..]));
        assert_eq!(r.get(5), Some(&[5u8, 5][..]));
        assert_eq!(r.get(6), None);
    }

    #[test]
    fn cuts_messages_longer_than_a_slot() {
        let mut r = SlotRing::<2>::new(2);
        r.push(b"abc");
        assert_eq!(r.get(1), Some(&b"ab"[..]));
    }

    #[test]
    fn a_refilled_ring_answers_and_continues_as_the_one_it_copies() {
        let mut a = SlotRing::<8>::new(4);
        for i in 0..11u32 {
            a.push(&i.to_be_bytes());
        }
        let held: Vec<Vec<u8>> = (a.oldest()..=a.count())
            .map(|s| a.get(s).unwrap().to_vec())
            .collect();
        let mut b = SlotRing::<8>::new(4);
        b.refill(a.count(), &held);
        for _ in 0..6 {
            for s in 0..=a.count() + 1 {
                assert_eq!(a.get(s), b.get(s), "seq {s}");
            }
            assert_eq!(a.oldest(), b.oldest());
            a.push(b"next");
            b.push(b"next");
        }
    }

    #[test]
    fn refilling_with_more_than_fits_keeps_the_newest() {
        let mut r = SlotRing::<1>::new(2);
        r.refill(10, &[[7u8], [8], [9]]);
        assert_eq!(
            (r.oldest(), r.get(8), r.get(9), r.get(10)),
            (9, None, Some(&[8u8][..]), Some(&[9u8][..]))
        );
    }
}
