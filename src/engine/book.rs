//! Order storage: the preallocated arena of 64-byte order nodes, and the
//! per-instrument dense price ladder with its occupancy bitmaps.
//!
//! Owns where orders live and how they are found: by id in O(1) (the id
//! encodes the arena slot and a generation), by best price in a few word
//! scans of a two-level bitmap, and in time priority through an intrusive
//! doubly-linked FIFO per level (u32 indices, no pointers). Knows nothing of
//! matching rules; never allocates after construction.

use serde::{Deserialize, Serialize};

use crate::bitmap::Bitmap;
use crate::types::{AccountId, InstrumentId, OrderId, Price, Qty, Side, Tif};

/// "No order" in the intrusive links.
pub const NIL: u32 = u32::MAX;

/// One order, exactly one cache line.
#[repr(C, align(64))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderNode {
    /// Caller's opaque value, echoed in events.
    pub tag: u64,
    /// When the order took its current priority (ns, as passed in).
    pub time: u64,
    pub account: AccountId,
    /// Raw price (1/10,000 units).
    pub price: u32,
    /// Open size, lots; 0 for a free slot.
    pub open: u32,
    /// Index of the price level in the ladder.
    pub level: u32,
    pub prev: u32,
    pub next: u32,
    /// Bumped every time the slot is reused or the order loses priority, so
    /// stale ids are recognised.
    pub generation: u32,
    pub instrument: InstrumentId,
    pub side: Side,
    pub tif: Tif,
    pub live: bool,
}

const _: () = assert!(std::mem::size_of::<OrderNode>() == 64);
const _: () = assert!(std::mem::align_of::<OrderNode>() == 64);

impl OrderNode {
    const EMPTY: OrderNode = OrderNode {
        tag: 0,
        time: 0,
        account: AccountId(0),
        price: 0,
        open: 0,
        level: 0,
        prev: NIL,
        next: NIL,
        generation: 0,
        instrument: InstrumentId(0),
        side: Side::Buy,
        tif: Tif::Day,
        live: false,
    };
}

/// Builds an order id from a slot and its generation. Generations start at 1,
/// so no id is 0.
#[inline]
pub const fn make_id(slot: u32, generation: u32) -> OrderId {
    OrderId(((generation as u64) << 32) | slot as u64)
}

#[inline]
const fn id_slot(id: OrderId) -> u32 {
    id.0 as u32
}

#[inline]
const fn id_generation(id: OrderId) -> u32 {
    (id.0 >> 32) as u32
}

/// The preallocated order arena with a free list.
pub struct Arena {
    nodes: Vec<OrderNode>,
    free: Vec<u32>,
}

impl Arena {
    pub fn with_capacity(n: u32) -> Arena {
        let nodes = vec![OrderNode::EMPTY; n as usize];
        // Pop from the end: low slots first, for locality.
        let free = (0..n).rev().collect();
        Arena { nodes, free }
    }

    pub fn capacity(&self) -> usize {
        self.nodes.len()
    }

    /// The bytes an arena of `n` orders allocates (nodes and free list).
    pub fn bytes_for(n: u32) -> u64 {
        u64::from(n) * (std::mem::size_of::<OrderNode>() + std::mem::size_of::<u32>()) as u64
    }

    pub fn live(&self) -> usize {
        self.nodes.len() - self.free.len()
    }

    pub fn has_free(&self) -> bool {
        !self.free.is_empty()
    }

    /// Takes a free slot and returns it with its new id.
    #[inline]
    pub fn alloc(&mut self) -> Option<(u32, OrderId)> {
        let slot = self.free.pop()?;
        let node = &mut self.nodes[slot as usize];
        node.generation = node.generation.wrapping_add(1).max(1);
        node.live = true;
        node.prev = NIL;
        node.next = NIL;
        Some((slot, make_id(slot, node.generation)))
    }

    /// Gives a new id to a live slot (the order loses its identity, as when a
    /// replace loses priority).
    #[inline]
    pub fn renew(&mut self, slot: u32) -> OrderId {
        let node = &mut self.nodes[slot as usize];
        node.generation = node.generation.wrapping_add(1).max(1);
        make_id(slot, node.generation)
    }

    #[inline]
    pub fn release(&mut self, slot: u32) {
        let node = &mut self.nodes[slot as usize];
        node.live = false;
        node.open = 0;
        self.free.push(slot);
    }

    /// The live slot an id refers to, if that order still exists.
    #[inline]
    pub fn find(&self, id: OrderId) -> Option<u32> {
        let slot = id_slot(id);
        let node = self.nodes.get(slot as usize)?;
        (node.live && node.generation == id_generation(id)).then_some(slot)
    }

    #[inline]
    pub fn id_of(&self, slot: u32) -> OrderId {
        make_id(slot, self.nodes[slot as usize].generation)
    }

    #[inline]
    pub fn get(&self, slot: u32) -> &OrderNode {
        &self.nodes[slot as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, slot: u32) -> &mut OrderNode {
        &mut self.nodes[slot as usize]
    }
}

/// The arena as a snapshot holds it: what replay would rebuild, without
/// the slots no order ever used.
///
/// The free list is always `[capacity-1, capacity-2, .., touched]` (slots
/// never used, popped lowest first) followed by the released slots in the
/// order they were released; only the second part is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArenaState {
    pub capacity: u32,
    /// Slots `0..touched` have been used at least once.
    pub touched: u32,
    /// Generation of every used slot.
    pub generations: Vec<u32>,
    /// The released part of the free list, bottom to top.
    pub recycled: Vec<u32>,
    /// Every live order with its slot.
    pub live: Vec<(u32, OrderNode)>,
}

/// Why an arena (or a ladder) could not be rebuilt from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BookStateError {
    #[error("the snapshot's arena holds {snapshot} slots, this engine {engine}")]
    Capacity { snapshot: u32, engine: u32 },
    #[error("the snapshot's arena is inconsistent: {0}")]
    Arena(&'static str),
    #[error("the snapshot's ladder is inconsistent: {0}")]
    Ladder(&'static str),
}

impl Arena {
    /// The state a snapshot keeps (a pass over the used slots).
    pub fn state(&self) -> ArenaState {
        let capacity = self.nodes.len() as u32;
        let touched = self
            .nodes
            .iter()
            .rposition(|n| n.generation != 0)
            .map_or(0, |i| i as u32 + 1);
        let never_used = (capacity - touched) as usize;
        ArenaState {
            capacity,
            touched,
            generations: self.nodes[..touched as usize]
                .iter()
                .map(|n| n.generation)
                .collect(),
            recycled: self.free[never_used.min(self.free.len())..].to_vec(),
            live: self.nodes[..touched as usize]
                .iter()
                .enumerate()
                .filter(|(_, n)| n.live)
                .map(|(i, n)| (i as u32, *n))
                .collect(),
        }
    }

    /// Replaces this (fresh) arena's contents with `s`, checking that every
    /// slot is either live or free exactly once.
    pub fn restore(&mut self, s: &ArenaState) -> Result<(), BookStateError> {
        let capacity = self.nodes.len() as u32;
        if s.capacity != capacity {
            return Err(BookStateError::Capacity {
                snapshot: s.capacity,
                engine: capacity,
            });
        }
        if self.free.len() != self.nodes.len() {
            return Err(BookStateError::Arena("restoring into an arena in use"));
        }
        if s.touched > capacity || s.generations.len() != s.touched as usize {
            return Err(BookStateError::Arena("used slots"));
        }
        let mut seen = vec![false; s.touched as usize];
        let mut mark = |slot: u32| -> Result<(), BookStateError> {
            match seen.get_mut(slot as usize) {
                Some(b) if !*b => {
                    *b = true;
                    Ok(())
                }
                _ => Err(BookStateError::Arena("a slot twice or out of range")),
            }
        };
        for &slot in &s.recycled {
            mark(slot)?;
        }
        for (slot, node) in &s.live {
            mark(*slot)?;
            if !node.live || node.generation != s.generations[*slot as usize] {
                return Err(BookStateError::Arena("a live order's generation"));
            }
        }
        if s.recycled.len() + s.live.len() != s.touched as usize {
            return Err(BookStateError::Arena("slots neither live nor free"));
        }
        // A fresh arena: every node is EMPTY already.
        for (node, &g) in self.nodes.iter_mut().zip(&s.generations) {
            node.generation = g;
        }
        for (slot, node) in &s.live {
            self.nodes[*slot as usize] = *node;
        }
        self.free.clear();
        self.free.extend((s.touched..capacity).rev());
        self.free.extend_from_slice(&s.recycled);
        Ok(())
    }
}

/// One price level: a FIFO of orders and its total size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Level {
    pub head: u32,
    pub tail: u32,
    pub qty: u64,
}

impl Level {
    const EMPTY: Level = Level {
        head: NIL,
        tail: NIL,
        qty: 0,
    };
}

/// One side of one book.
pub struct Ladder {
    levels: Vec<Level>,
    occupied: Bitmap,
    side: Side,
    /// Best level index, cached.
    best: Option<u32>,
}

impl Ladder {
    fn new(levels: u32, side: Side) -> Ladder {
        Ladder {
            levels: vec![Level::EMPTY; levels as usize],
            occupied: Bitmap::new(levels),
            side,
            best: None,
        }
    }

    #[inline]
    pub fn best(&self) -> Option<u32> {
        self.best
    }

    #[inline]
    pub fn level(&self, i: u32) -> &Level {
        &self.levels[i as usize]
    }

    /// Appends `slot` at the back of level `i`.
    #[inline]
    pub fn push_back(&mut self, arena: &mut Arena, i: u32, slot: u32) {
        let level = &mut self.levels[i as usize];
        let node = arena.get_mut(slot);
        node.level = i;
        node.prev = level.tail;
        node.next = NIL;
        level.qty += u64::from(node.open);
        if level.tail == NIL {
            level.head = slot;
            self.occupied.set(i);
            if self.best.is_none_or(|b| self.side.is_better(i, b)) {
                self.best = Some(i);
            }
        } else {
            arena.get_mut(level.tail).next = slot;
        }
        self.levels[i as usize].tail = slot;
    }

    /// Unlinks `slot` from its level.
    #[inline]
    pub fn unlink(&mut self, arena: &mut Arena, slot: u32) {
        let (i, prev, next, open) = {
            let n = arena.get(slot);
            (n.level, n.prev, n.next, n.open)
        };
        if prev == NIL {
            self.levels[i as usize].head = next;
        } else {
            arena.get_mut(prev).next = next;
        }
        if next == NIL {
            self.levels[i as usize].tail = prev;
        } else {
            arena.get_mut(next).prev = prev;
        }
        let level = &mut self.levels[i as usize];
        level.qty -= u64::from(open);
        if level.head == NIL {
            self.occupied.clear(i);
            if self.best == Some(i) {
                self.best = match self.side {
                    Side::Buy => self.occupied.highest(),
                    Side::Sell => self.occupied.lowest(),
                };
            }
        }
    }

    /// Records that an order at level `i` shrank by `by` lots.
    #[inline]
    pub fn reduce(&mut self, i: u32, by: u32) {
        self.levels[i as usize].qty -= u64::from(by);
    }

    /// The non-empty levels, by index (for a snapshot).
    pub fn state(&self) -> Vec<(u32, Level)> {
        self.levels
            .iter()
            .enumerate()
            .filter(|(_, l)| l.head != NIL)
            .map(|(i, l)| (i as u32, *l))
            .collect()
    }

    /// Sets this (empty) ladder's levels from a snapshot; the occupancy
    /// bitmap and the best level follow from them.
    pub fn restore(&mut self, levels: &[(u32, Level)]) -> Result<(), BookStateError> {
        for (i, l) in levels {
            let Some(slot) = self.levels.get_mut(*i as usize) else {
                return Err(BookStateError::Ladder("a level outside the price grid"));
            };
            if l.head == NIL || l.tail == NIL {
                return Err(BookStateError::Ladder("an empty level"));
            }
            *slot = *l;
            self.occupied.set(*i);
        }
        self.best = match self.side {
            Side::Buy => self.occupied.highest(),
            Side::Sell => self.occupied.lowest(),
        };
        Ok(())
    }

    /// Non-empty level indices, best first.
    pub fn levels_best_first(&self) -> impl Iterator<Item = u32> + '_ {
        let n = self.levels.len() as u32;
        let side = self.side;
        (0..n)
            .map(move |k| match side {
                Side::Buy => n - 1 - k,
                Side::Sell => k,
            })
            .filter(|&i| self.levels[i as usize].head != NIL)
    }
}

/// One instrument's book: both ladders and the price grid.
pub struct Book {
    pub instrument: InstrumentId,
    /// Price of level 0 (the lower daily limit), raw.
    pub lower: u32,
    /// Highest allowed price, raw.
    pub upper: u32,
    pub tick: u32,
    pub bids: Ladder,
    pub asks: Ladder,
}

impl Book {
    pub fn new(instrument: InstrumentId, lower: Price, upper: Price, tick: Price) -> Book {
        let levels = (upper.raw() - lower.raw()) / tick.raw() + 1;
        Book {
            instrument,
            lower: lower.raw(),
            upper: upper.raw(),
            tick: tick.raw(),
            bids: Ladder::new(levels, Side::Buy),
            asks: Ladder::new(levels, Side::Sell),
        }
    }

    /// Level index of an in-range, on-tick price.
    #[inline]
    pub fn level_of(&self, price: u32) -> u32 {
        (price - self.lower) / self.tick
    }

    #[inline]
    pub fn price_of(&self, level: u32) -> u32 {
        self.lower + level * self.tick
    }

    #[inline]
    pub fn ladder(&self, side: Side) -> &Ladder {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    #[inline]
    pub fn ladder_mut(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    pub fn best_price(&self, side: Side) -> Option<Price> {
        self.ladder(side)
            .best()
            .map(|i| Price::from_raw(self.price_of(i)))
    }
}

/// A resting order as seen from outside the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestingOrder {
    pub order: OrderId,
    pub instrument: InstrumentId,
    pub account: AccountId,
    pub tag: u64,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_finds_highest_and_lowest_across_words() {
        let mut b = Bitmap::new(5000);
        assert_eq!(b.highest(), None);
        for i in [3, 64, 4095, 4999, 130] {
            b.set(i);
        }
        assert_eq!(b.highest(), Some(4999));
        assert_eq!(b.lowest(), Some(3));
        b.clear(4999);
        b.clear(3);
        assert_eq!(b.highest(), Some(4095));
        assert_eq!(b.lowest(), Some(64));
        b.clear(4095);
        b.clear(64);
        b.clear(130);
        assert_eq!((b.highest(), b.lowest()), (None, None));
    }

    #[test]
    fn stale_ids_are_not_found_after_reuse() {
        let mut a = Arena::with_capacity(2);
        let (slot, id) = a.alloc().unwrap();
        assert_eq!(a.find(id), Some(slot));
        a.release(slot);
        assert_eq!(a.find(id), None);
        let (slot2, id2) = a.alloc().unwrap();
        assert_eq!(slot2, slot);
        assert_ne!(id2, id);
        let renewed = a.renew(slot2);
        assert_eq!(a.find(id2), None);
        assert_eq!(a.find(renewed), Some(slot2));
    }

    #[test]
    fn arena_runs_out_cleanly() {
        let mut a = Arena::with_capacity(1);
        assert!(a.alloc().is_some());
        assert!(a.alloc().is_none());
    }
}
