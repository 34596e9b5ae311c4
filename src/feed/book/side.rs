//! Price levels of one side of one instrument: each level's FIFO of
//! nodes with its aggregates, the dense ladder over the instrument's tick
//! grid with its occupancy bitmap and best index, and the sorted fallback
//! for prices off the grid.
//!
//! Owns the links between nodes and levels; it must not allocate or free
//! nodes (the pool's job) nor look orders up by reference (the index's),
//! and only the fallback may allocate per level.

use super::pool::{Node, Pool};
use super::NIL;
use crate::bitmap::Bitmap;
use crate::types::{Price, Side};
use std::collections::BTreeMap;

/// The tick grid of one instrument: level `i` is price `lower + i * tick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceGrid {
    pub lower: Price,
    pub upper: Price,
    pub tick: Price,
}

/// One price level: FIFO of nodes and aggregates.
#[derive(Debug, Clone, Copy)]
pub(super) struct LevelSlot {
    pub(super) head: u32,
    tail: u32,
    pub(super) orders: u32,
    pub(super) qty: u64,
}

const EMPTY_LEVEL: LevelSlot = LevelSlot {
    head: NIL,
    tail: NIL,
    orders: 0,
    qty: 0,
};

impl LevelSlot {
    #[inline]
    fn push_back(&mut self, pool: &mut Pool, i: u32) {
        let (tail, qty) = (self.tail, pool.nodes[i as usize].qty);
        {
            let n = &mut pool.nodes[i as usize];
            n.prev = tail;
            n.next = NIL;
        }
        if tail == NIL {
            self.head = i;
        } else {
            pool.nodes[tail as usize].next = i;
        }
        self.tail = i;
        self.orders += 1;
        self.qty += u64::from(qty);
    }

    #[inline]
    fn unlink(&mut self, pool: &mut Pool, i: u32) {
        let Node {
            prev, next, qty, ..
        } = pool.nodes[i as usize];
        if prev == NIL {
            self.head = next;
        } else {
            pool.nodes[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            pool.nodes[next as usize].prev = prev;
        }
        self.orders -= 1;
        self.qty -= u64::from(qty);
    }
}

/// One side of one instrument: the dense ladder (possibly of no levels) and
/// the sorted fallback for prices off it.
#[derive(Debug, Clone)]
pub(super) struct SideBook {
    pub(super) side: Side,
    lower: u32,
    tick: u32,
    levels: Vec<LevelSlot>,
    occupied: Bitmap,
    /// Best ladder index, `NIL` when the ladder is empty.
    pub(super) best: u32,
    pub(super) overflow: BTreeMap<u32, LevelSlot>,
}

impl SideBook {
    pub(super) fn new(side: Side, grid: Option<PriceGrid>) -> SideBook {
        let (lower, tick, n) = match grid {
            Some(g) => (
                g.lower.raw(),
                g.tick.raw(),
                (g.upper.raw() - g.lower.raw()) / g.tick.raw() + 1,
            ),
            None => (0, 1, 0),
        };
        SideBook {
            side,
            lower,
            tick,
            levels: vec![EMPTY_LEVEL; n as usize],
            occupied: Bitmap::new(n),
            best: NIL,
            overflow: BTreeMap::new(),
        }
    }

    /// Ladder index of `price`, or `NIL` when it is off the grid.
    #[inline]
    fn index_of(&self, price: u32) -> u32 {
        let d = price.wrapping_sub(self.lower);
        let i = d / self.tick;
        if price >= self.lower && (i as usize) < self.levels.len() && d.is_multiple_of(self.tick) {
            i
        } else {
            NIL
        }
    }

    /// Appends node `i` (price and qty set) at the back of its level.
    #[inline]
    pub(super) fn push(&mut self, pool: &mut Pool, i: u32) -> &LevelSlot {
        let price = pool.nodes[i as usize].price;
        let li = self.index_of(price);
        pool.nodes[i as usize].level = li;
        if li == NIL {
            let level = self.overflow.entry(price).or_insert(EMPTY_LEVEL);
            level.push_back(pool, i);
            return level;
        }
        if self.levels[li as usize].head == NIL {
            self.occupied.set(li);
            if self.best == NIL || self.side.is_better(li, self.best) {
                self.best = li;
            }
        }
        self.levels[li as usize].push_back(pool, i);
        &self.levels[li as usize]
    }

    /// Unlinks node `i` from its level; returns the level's aggregate after.
    #[inline]
    pub(super) fn remove(&mut self, pool: &mut Pool, i: u32) -> (u64, u32) {
        let Node { level, price, .. } = pool.nodes[i as usize];
        if level == NIL {
            let Some(l) = self.overflow.get_mut(&price) else {
                return (0, 0);
            };
            l.unlink(pool, i);
            let after = (l.qty, l.orders);
            if l.head == NIL {
                self.overflow.remove(&price);
            }
            return after;
        }
        let l = &mut self.levels[level as usize];
        l.unlink(pool, i);
        let after = (l.qty, l.orders);
        if l.head == NIL {
            self.occupied.clear(level);
            if self.best == level {
                self.best = match self.side {
                    Side::Buy => self.occupied.at_or_below(level),
                    Side::Sell => self.occupied.at_or_above(level),
                }
                .unwrap_or(NIL);
            }
        }
        after
    }

    /// Takes `by` lots off node `i` (which stays); returns the level's size.
    #[inline]
    pub(super) fn reduce(&mut self, pool: &mut Pool, i: u32, by: u32) -> (u64, u32) {
        let n = &mut pool.nodes[i as usize];
        n.qty -= by;
        let l = if n.level == NIL {
            match self.overflow.get_mut(&n.price) {
                Some(l) => l,
                None => return (0, 0),
            }
        } else {
            &mut self.levels[n.level as usize]
        };
        l.qty -= u64::from(by);
        (l.qty, l.orders)
    }

    #[inline]
    fn price_of(&self, i: u32) -> u32 {
        self.lower + i * self.tick
    }

    /// The best level of the ladder and of the fallback together.
    pub(super) fn best_level(&self) -> Option<(u32, &LevelSlot)> {
        let ladder = (self.best != NIL)
            .then(|| (self.price_of(self.best), &self.levels[self.best as usize]));
        let over = match self.side {
            Side::Buy => self.overflow.iter().next_back(),
            Side::Sell => self.overflow.iter().next(),
        }
        .map(|(p, l)| (*p, l));
        match (ladder, over) {
            (Some(a), Some(b)) => Some(if self.side.is_better(b.0, a.0) { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Non-empty levels, best first, merging the ladder and the fallback.
    pub(super) fn levels_best_first(&self) -> impl Iterator<Item = (u32, &LevelSlot)> + '_ {
        let mut next = self.best;
        let ladder = std::iter::from_fn(move || {
            if next == NIL {
                return None;
            }
            let i = next;
            next = match self.side {
                Side::Buy if i > 0 => self.occupied.at_or_below(i - 1).unwrap_or(NIL),
                Side::Sell => self.occupied.at_or_above(i + 1).unwrap_or(NIL),
                Side::Buy => NIL,
            };
            Some((self.price_of(i), &self.levels[i as usize]))
        });
        // The fallback is walked by range from the last price it yielded,
        // so that a depth query allocates nothing.
        let mut last: Option<u32> = None;
        let over = std::iter::from_fn(move || {
            let next = match (self.side, last) {
                (Side::Buy, None) => self.overflow.iter().next_back(),
                (Side::Buy, Some(p)) => self.overflow.range(..p).next_back(),
                (Side::Sell, None) => self.overflow.iter().next(),
                (Side::Sell, Some(p)) => self
                    .overflow
                    .range((std::ops::Bound::Excluded(p), std::ops::Bound::Unbounded))
                    .next(),
            };
            last = next.map(|(p, _)| *p);
            next
        });
        let mut a = ladder.peekable();
        let mut b = over.map(|(p, l)| (*p, l)).peekable();
        std::iter::from_fn(move || match (a.peek(), b.peek()) {
            (Some(x), Some(y)) => {
                if self.side.is_better(y.0, x.0) {
                    b.next()
                } else {
                    a.next()
                }
            }
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        })
    }

    pub(super) fn clear(&mut self) {
        self.levels.fill(EMPTY_LEVEL);
        self.occupied.clear_all();
        self.best = NIL;
        self.overflow.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_scans_across_words_and_summary_words() {
        let mut b = Bitmap::new(10_000);
        assert_eq!(b.at_or_below(9_999), None);
        assert_eq!(b.at_or_above(0), None);
        for i in [3, 64, 4095, 4096, 9_999, 130] {
            b.set(i);
        }
        assert_eq!(b.at_or_below(9_999), Some(9_999));
        assert_eq!(b.at_or_below(9_998), Some(4096));
        assert_eq!(b.at_or_below(4095), Some(4095));
        assert_eq!(b.at_or_below(4094), Some(130));
        assert_eq!(b.at_or_below(63), Some(3));
        assert_eq!(b.at_or_below(2), None);
        assert_eq!(b.at_or_above(0), Some(3));
        assert_eq!(b.at_or_above(4), Some(64));
        assert_eq!(b.at_or_above(131), Some(4095));
        assert_eq!(b.at_or_above(4097), Some(9_999));
        assert_eq!(b.at_or_above(10_000), None);
        b.clear(4095);
        b.clear(4096);
        assert_eq!(b.at_or_above(131), Some(9_999));
        assert_eq!(b.at_or_below(9_998), Some(130));
    }
}
