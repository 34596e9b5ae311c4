//! What the load generator keeps per session: the intended send times of
//! the orders awaiting their answer (the latency samples' start), and the
//! live orders that cancels and replaces pick from.

use std::collections::HashMap;

use crate::wire::ouch::{token_key, Token};

/// Intended send times of the orders awaiting their answer, by session and
/// token number: a ring per session indexed by the number (a session's
/// tokens count up from 1), so recording and finding one is an array access
/// (a hash table of tokens was a tenth of the generator's time at 1 M
/// orders/s). The ring holds every order a session sends in the run, up to
/// [`Intended::MAX_RING`]; an order still unanswered when a ring's worth of
/// later orders of its session need its slot is counted lost, and
/// [`Intended::overwritten`] says how many were.
pub(super) struct Intended {
    /// Per session: (token number + 1, or 0 for a free slot; intended time).
    rings: Vec<Vec<(u64, u64)>>,
    /// The rings' length − 1 (a power of two).
    mask: usize,
    outstanding: u64,
    overwritten: u64,
}

impl Intended {
    /// The longest ring: 64 MiB per session.
    pub(super) const MAX_RING: usize = 1 << 22;
    const MIN_RING: usize = 1 << 10;

    /// Rings for `sessions` sessions that each send about `per_session`
    /// orders in the run.
    pub(super) fn new(sessions: usize, per_session: u64) -> Intended {
        let len = usize::try_from(per_session)
            .unwrap_or(usize::MAX)
            .clamp(Self::MIN_RING, Self::MAX_RING)
            .next_power_of_two();
        Intended {
            rings: vec![vec![(0, 0); len]; sessions],
            mask: len - 1,
            outstanding: 0,
            overwritten: 0,
        }
    }

    pub(super) fn insert(&mut self, session: usize, number: u64, due: u64) {
        let slot = &mut self.rings[session][number as usize & self.mask];
        if slot.0 == 0 {
            self.outstanding += 1;
        } else {
            self.overwritten += 1;
        }
        *slot = (number + 1, due);
    }

    /// The intended time of order `number`, if it was awaiting its answer.
    pub(super) fn remove(&mut self, session: usize, number: u64) -> Option<u64> {
        let slot = &mut self.rings[session][number as usize & self.mask];
        if slot.0 != number + 1 {
            return None;
        }
        slot.0 = 0;
        self.outstanding -= 1;
        Some(slot.1)
    }

    pub(super) fn is_empty(&self) -> bool {
        self.outstanding == 0
    }

    pub(super) fn lost(&self) -> u64 {
        self.outstanding + self.overwritten
    }

    /// Of the lost, those whose slot a later order took before an answer
    /// came (an answer after that is not counted).
    pub(super) fn overwritten(&self) -> u64 {
        self.overwritten
    }
}

/// A session's live day orders with their open size: the ones cancels and
/// replaces pick from (at most [`LiveOrders::CAP`]; past that one is
/// forgotten, at a place that moves round the list, so the list keeps
/// renewing). Constant time per update, so the generator keeps up at high
/// rates.
#[derive(Default)]
pub(super) struct LiveOrders {
    list: Vec<(Token, u64)>,
    /// Where the next order to forget is, when the list is full.
    evict: usize,
    /// Place in `list` by token as an integer (foldhash: SipHash was a
    /// tenth of the generator's time at 500,000 orders/s; 14-byte array
    /// keys are compared by a call to `memcmp`).
    index: HashMap<u128, usize, foldhash::fast::RandomState>,
}

impl LiveOrders {
    const CAP: usize = 1024;

    pub(super) fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Forgets every order (the exchange no longer knows them).
    pub(super) fn clear(&mut self) {
        self.list.clear();
        self.index.clear();
        self.evict = 0;
    }

    pub(super) fn insert(&mut self, token: Token, open: u64) {
        if self.index.contains_key(&token_key(&token)) {
            self.remove(token);
        }
        if self.list.len() >= Self::CAP {
            // `take` moves the last order into the place it empties, and
            // the last is the newest: forgetting at one place every time
            // would forget each new order at the next insert.
            self.evict = (self.evict + 1) % Self::CAP;
            self.take(self.evict);
        }
        self.index.insert(token_key(&token), self.list.len());
        self.list.push((token, open));
    }

    /// Removes and returns the order at `pick` (modulo the count).
    pub(super) fn take(&mut self, pick: usize) -> Token {
        let at = pick % self.list.len();
        let (token, _) = self.list.swap_remove(at);
        self.index.remove(&token_key(&token));
        if let Some(&(moved, _)) = self.list.get(at) {
            self.index.insert(token_key(&moved), at);
        }
        token
    }

    pub(super) fn remove(&mut self, token: Token) {
        if let Some(&at) = self.index.get(&token_key(&token)) {
            self.take(at);
        }
    }

    /// An execution of `qty` lots; a filled order is no longer live.
    pub(super) fn fill(&mut self, token: Token, qty: u64) {
        if let Some(&at) = self.index.get(&token_key(&token)) {
            let open = &mut self.list[at].1;
            *open = open.saturating_sub(qty);
            if *open == 0 {
                self.take(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u32) -> Token {
        let mut t = [b' '; 14];
        t[..8].copy_from_slice(format!("{n:08}").as_bytes());
        t
    }

    #[test]
    fn intended_times_are_found_once_and_unanswered_ones_count_as_lost() {
        let mut m = Intended::new(2, 10);
        let ring = Intended::MIN_RING as u64;
        m.insert(0, 1, 100);
        m.insert(1, 1, 200);
        m.insert(0, 2, 300);
        assert_eq!(m.remove(0, 1), Some(100));
        assert_eq!(
            m.remove(0, 1),
            None,
            "a second answer is not a second sample"
        );
        assert_eq!(m.remove(1, 1), Some(200));
        assert!(!m.is_empty());
        // Order 2 is still unanswered when a later order needs its slot.
        m.insert(0, 2 + ring, 400);
        assert_eq!(m.remove(0, 2), None);
        assert_eq!(m.lost(), 2);
        assert_eq!(m.remove(0, 2 + ring), Some(400));
        assert!(m.is_empty());
        assert_eq!((m.lost(), m.overwritten()), (1, 1));
    }

    #[test]
    fn a_ring_holds_every_order_a_session_sends_in_the_run() {
        let mut m = Intended::new(1, 300_000);
        for n in 1..=300_000 {
            m.insert(0, n, n);
        }
        assert_eq!(m.remove(0, 1), Some(1), "the first order is still awaited");
        assert_eq!(m.overwritten(), 0);
        assert_eq!(Intended::new(1, u64::MAX).mask + 1, Intended::MAX_RING);
    }

    #[test]
    fn live_orders_track_fills_cancels_and_the_cap() {
        let mut live = LiveOrders::default();
        for n in 0..3 {
            live.insert(token(n), 10);
        }
        live.fill(token(1), 4);
        assert_eq!(live.list.len(), 3);
        live.fill(token(1), 6);
        live.remove(token(0));
        assert_eq!(live.list, vec![(token(2), 10)]);
        assert_eq!(live.take(7), token(2));
        assert!(live.is_empty() && live.index.is_empty());
        for n in 0..LiveOrders::CAP as u32 + 5 {
            live.insert(token(n), 1);
        }
        assert_eq!(live.list.len(), LiveOrders::CAP);
        // Orders inserted past the cap stay listed (cancels and replaces
        // pick from them), older ones make room.
        for n in LiveOrders::CAP as u32..LiveOrders::CAP as u32 + 5 {
            assert!(live.index.contains_key(&token_key(&token(n))), "{n}");
        }
        // Every listed order is indexed at its place.
        for (at, (t, _)) in live.list.iter().enumerate() {
            assert_eq!(live.index[&token_key(t)], at);
        }
    }
}
