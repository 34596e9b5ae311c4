//! The last `capacity` messages of a stream numbered from one, in
//! fixed-size slots: what a session keeps for re-requests
//! (`gateway::OutboundStore`) and the feed for retransmission
//! (`feed::publisher::RetransmitStore`).
//!
//! The ring's memory is reserved at the start and filled by pushing, so
//! pages are touched only as messages arrive and the ring never moves: one
//! that grew by doubling would copy itself each time, a stall of up to a
//! hundred megabytes on the engine core. The next slot is carried along,
//! so a push costs no division.

/// A ring of the newest messages, each at most `SLOT` bytes.
#[derive(Debug, Clone)]
pub struct SlotRing<const SLOT: usize> {
    /// `min(count, capacity)` slots in use, room reserved for `capacity`;
    /// message `seq` is in slot `(seq - 1) % capacity`.
    slots: Vec<([u8; SLOT], u8)>,
    capacity: usize,
    /// Slot of the next message (`count % capacity`).
    head: usize,
    /// Messages pushed so far; the next sequence number is this + 1.
    count: u64,
    /// The oldest sequence number [`SlotRing::refill`] held (1 before any).
    floor: u64,
}

impl<const SLOT: usize> SlotRing<SLOT> {
    /// An empty ring of `capacity` (at least one) slots.
    pub fn new(capacity: usize) -> SlotRing<SLOT> {
        const { assert!(SLOT <= u8::MAX as usize) };
        let capacity = capacity.max(1);
        SlotRing {
            slots: Vec::with_capacity(capacity),
            capacity,
            head: 0,
            count: 0,
            floor: 1,
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The bytes a ring of `capacity` slots holds when full.
    pub fn bytes_for(capacity: usize) -> u64 {
        capacity.max(1) as u64 * std::mem::size_of::<([u8; SLOT], u8)>() as u64
    }

    /// Makes the whole ring's memory resident now (see
    /// [`crate::runtime::touch_spare_capacity`]); what it holds and answers
    /// is unchanged. Returns the bytes touched.
    pub fn prefault(&mut self) -> usize {
        crate::runtime::touch_spare_capacity(&mut self.slots, ([0; SLOT], 0))
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
            .saturating_sub(self.capacity as u64)
            .max(self.floor)
    }

    /// Stores the next message (its first `SLOT` bytes), dropping the oldest
    /// when full.
    #[inline]
    pub fn push(&mut self, msg: &[u8]) {
        let n = msg.len().min(SLOT);
        match self.slots.get_mut(self.head) {
            // Written in place: the slot's bytes past `n` are never read.
            Some((slot, len)) => {
                slot[..n].copy_from_slice(&msg[..n]);
                *len = n as u8;
            }
            // Still filling the reserved room.
            None => self.slots.push(slot_of(msg)),
        }
        self.count += 1;
        self.head += 1;
        if self.head == self.capacity {
            self.head = 0;
        }
    }

    /// Message `seq`, if it is still held.
    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        if seq < self.oldest() || seq > self.count {
            return None;
        }
        let (slot, n) = self.slots.get(self.index(seq))?;
        Some(&slot[..usize::from(*n)])
    }

    /// Empties the ring and continues the numbering after `count`, holding
    /// `held`: the messages just before `count + 1`, oldest first (the
    /// newest `capacity` of them are kept, each cut to `SLOT` bytes).
    /// Older messages are gone ([`SlotRing::oldest`] says so). The caller
    /// vouches that `held` ends at `count`: nothing here can tell, and a
    /// run that ends earlier is numbered as if it did not
    /// ([`SlotRing::refill_from`] checks it).
    pub fn refill<M: AsRef<[u8]>>(&mut self, count: u64, held: &[M]) {
        let held = &held[held.len().saturating_sub(count as usize)..];
        let refilled = self.refill_from(count + 1 - held.len() as u64, count + 1, held);
        debug_assert!(refilled.is_ok(), "numbered here: {refilled:?}");
    }

    /// As [`SlotRing::refill`], continuing the numbering at `next` with
    /// `held` numbered from `first`: refused, the ring unchanged, unless
    /// they end just before `next` (a run that ends earlier, a damaged
    /// archive's, would be served under the newest sequence numbers).
    pub fn refill_from<M: AsRef<[u8]>>(
        &mut self,
        first: u64,
        next: u64,
        held: &[M],
    ) -> Result<(), NotJustBefore> {
        if first == 0 || first.checked_add(held.len() as u64) != Some(next) {
            return Err(NotJustBefore {
                first,
                held: held.len() as u64,
                next,
            });
        }
        let count = next - 1;
        let held = &held[held.len().saturating_sub(self.capacity)..];
        let first = next - held.len() as u64;
        let cap = self.capacity as u64;
        // Slot by slot, the newest message at most `count` that lives
        // there (an empty slot where it is not held).
        self.slots.clear();
        for i in 0..count.min(cap) {
            let seq = if count <= cap {
                i + 1
            } else {
                count - (count - 1 - i) % cap
            };
            self.slots.push(match seq.checked_sub(first) {
                Some(k) => slot_of(held[k as usize].as_ref()),
                None => ([0; SLOT], 0),
            });
        }
        self.count = count;
        self.floor = first;
        self.head = self.index(count + 1);
        Ok(())
    }

    /// Where message `seq` (from 1) is or will be.
    fn index(&self, seq: u64) -> usize {
        ((seq - 1) % self.capacity as u64) as usize
    }
}

/// Why [`SlotRing::refill_from`] refused: the messages given do not end
/// just before the sequence number the ring was to continue at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{held} messages from sequence {first} do not end just before sequence {next}")]
pub struct NotJustBefore {
    pub first: u64,
    pub held: u64,
    pub next: u64,
}

/// A slot holding `msg` (cut to `SLOT` bytes).
fn slot_of<const SLOT: usize>(msg: &[u8]) -> ([u8; SLOT], u8) {
    let n = msg.len().min(SLOT);
    let mut slot = [0u8; SLOT];
    slot[..n].copy_from_slice(&msg[..n]);
    (slot, n as u8)
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
    fn a_prefaulted_ring_answers_and_wraps_as_one_that_was_not() {
        let (mut a, mut b) = (SlotRing::<4>::new(5), SlotRing::<4>::new(5));
        a.push(b"one");
        b.push(b"one");
        assert_eq!(a.prefault(), 4 * std::mem::size_of::<([u8; 4], u8)>());
        for i in 0..12u8 {
            for s in 0..=b.count() + 1 {
                assert_eq!(a.get(s), b.get(s), "seq {s}");
            }
            assert_eq!((a.oldest(), a.count()), (b.oldest(), b.count()));
            a.push(&[i; 3]);
            b.push(&[i; 3]);
        }
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
    fn a_ring_refilled_with_fewer_than_it_holds_answers_only_for_those() {
        let mut r = SlotRing::<1>::new(8);
        for _ in 0..8 {
            r.push(&[1]);
        }
        r.refill(20, &[[5u8], [6]]);
        assert_eq!(
            (r.oldest(), r.get(18), r.get(19), r.get(20)),
            (19, None, Some(&[5u8][..]), Some(&[6u8][..]))
        );
        r.push(&[7]);
        assert_eq!((r.oldest(), r.get(21)), (19, Some(&[7u8][..])));
    }

    #[test]
    fn a_refill_whose_messages_do_not_end_just_before_next_is_refused_unchanged() {
        let mut r = SlotRing::<1>::new(8);
        for i in 1..=5u8 {
            r.push(&[i]);
        }
        // Messages 17 and 18, for a ring to continue at 21: a gap.
        assert_eq!(
            r.refill_from(17, 21, &[[17u8], [18]]),
            Err(NotJustBefore {
                first: 17,
                held: 2,
                next: 21
            })
        );
        assert_eq!((r.oldest(), r.count(), r.get(5)), (1, 5, Some(&[5u8][..])));
        assert!(r.refill_from(0, 2, &[[1u8], [2]]).is_err());
        // Ending just before: held, and numbered from `first`.
        r.refill_from(19, 21, &[[19u8], [20]]).unwrap();
        assert_eq!(
            (r.oldest(), r.get(18), r.get(19), r.get(20)),
            (19, None, Some(&[19u8][..]), Some(&[20u8][..]))
        );
        // Nothing held: the numbering continues, nothing is answered.
        r.refill_from::<[u8; 1]>(40, 40, &[]).unwrap();
        assert_eq!((r.oldest(), r.next_sequence(), r.get(39)), (40, 40, None));
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
