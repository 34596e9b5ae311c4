//! The feed handler's order-by-order books, rebuilt from ITCH 5.0 messages.
//!
//! Owns the consumer's view of every instrument named in the Stock
//! Directory: each order by reference number, price levels best first with
//! their aggregate size and order count, time priority within a level.
//! Sans-IO: messages in, queries and callbacks ([`BookObserver`]) out. A
//! message that does not fit the book (unknown order or locate, oversize
//! execution) is counted and returned as a [`BookError`], never a panic.
//!
//! Built for the hot path, after the engine's own book (src/engine/book.rs):
//! - order reference -> node: an open-addressing hash table (linear probing,
//!   Fibonacci hashing, backward-shift deletion, so no tombstones build up)
//!   over a pool of 32-byte nodes with an intrusive free list. It works for
//!   any ITCH producer's references, dense or not.
//! - price -> level: per instrument and side, a dense ladder indexed by tick
//!   between the daily limits, with a two-level occupancy bitmap for the best
//!   price, when the instrument's grid is known ([`FeedBooks::with_contracts`]
//!   matches the Stock Directory's symbol). Prices off that grid, and every
//!   price of an instrument without one, go to a sorted fallback map, so the
//!   book is exact for any producer; only that fallback allocates per level.
//! - levels hold an intrusive FIFO of their orders (u32 indices).
//!
//! Nothing allocates per message in steady state: the table and the pool
//! grow by doubling while the number of resting orders reaches new highs
//! ([`FeedBooks::reserve`] preallocates), the ladders are allocated when the
//! Stock Directory names an instrument.

use crate::bitmap::Bitmap;
use std::collections::BTreeMap;

use crate::contract::ContractSet;
use crate::types::{Price, Qty, Side, Symbol};
use crate::wire::itch::{trading_state, Message};

/// Why a message could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookError {
    /// A Stock Locate that no Stock Directory named.
    UnknownLocate(u16),
    /// An order reference that is not in the book.
    UnknownOrder(u64),
    /// An Add Order (or a Replace's new reference) already in the book.
    DuplicateOrder(u64),
    /// Executed or cancelled more than the order's open size.
    Oversize(u64),
    /// A field that does not decode (e.g. the side byte).
    BadField,
}

/// A price level: price and total open size.
pub type Level = (Price, u64);

/// A price level with its order count, as depth queries return it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DepthLevel {
    pub price: Price,
    /// Total open size of the level, lots.
    pub qty: u64,
    /// Number of resting orders at the level.
    pub orders: u32,
}

/// A resting order as the feed shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOrder {
    pub order_reference: u64,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
}

/// An execution against a resting order (ITCH `E` or `C`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trade {
    pub locate: u16,
    /// The resting order that was executed.
    pub order_reference: u64,
    /// The resting order's side.
    pub side: Side,
    /// The resting order's price (`E`) or the execution price (`C`).
    pub price: Price,
    pub qty: u32,
    pub match_number: u64,
    /// False only for a `C` marked non-printable.
    pub printable: bool,
}

/// A price level after a change: its new aggregate (0 and 0 when it emptied).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelChange {
    pub locate: u16,
    pub side: Side,
    pub price: Price,
    pub qty: u64,
    pub orders: u32,
}

/// Callbacks of [`FeedBooks::apply_observed`]; both default to nothing, so
/// an observer pays only for what it implements.
pub trait BookObserver {
    /// An execution, after the book has applied it.
    #[inline]
    fn on_trade(&mut self, _trade: &Trade) {}
    /// A level whose size or order count changed, once per level touched.
    #[inline]
    fn on_level(&mut self, _change: &LevelChange) {}
}

/// No callbacks.
impl BookObserver for () {}

/// Adapts the trade callback of [`FeedBooks::apply`].
struct TradeFn<'a, F>(&'a mut F);

impl<F: FnMut(u16, u64, u32, u64)> BookObserver for TradeFn<'_, F> {
    #[inline]
    fn on_trade(&mut self, t: &Trade) {
        (self.0)(t.locate, t.order_reference, t.qty, t.match_number)
    }
}

/// The tick grid of one instrument: level `i` is price `lower + i * tick`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceGrid {
    pub lower: Price,
    pub upper: Price,
    pub tick: Price,
}

/// "No node" in the intrusive links, and "not on the grid" for a level.
const NIL: u32 = u32::MAX;

/// One resting order; two per cache line.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
struct Node {
    reference: u64,
    price: u32,
    qty: u32,
    /// Ladder index, or `NIL` for a level in the fallback map.
    level: u32,
    prev: u32,
    /// Next in the level's FIFO; next free node while on the free list.
    next: u32,
    locate: u16,
    side: Side,
}

const _: () = assert!(std::mem::size_of::<Node>() == 32);

/// The nodes, with an intrusive free list through `next`.
#[derive(Debug, Clone)]
struct Pool {
    nodes: Vec<Node>,
    free: u32,
}

impl Pool {
    fn new() -> Pool {
        Pool {
            nodes: Vec::new(),
            free: NIL,
        }
    }

    #[inline]
    fn alloc(&mut self, node: Node) -> u32 {
        if self.free != NIL {
            let i = self.free;
            self.free = self.nodes[i as usize].next;
            self.nodes[i as usize] = node;
            i
        } else {
            self.nodes.push(node);
            (self.nodes.len() - 1) as u32
        }
    }

    #[inline]
    fn release(&mut self, i: u32) {
        self.nodes[i as usize].next = self.free;
        self.free = i;
    }

    fn clear(&mut self) {
        self.nodes.clear();
        self.free = NIL;
    }
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    key: u64,
    /// Pool index, `NIL` when the slot is empty.
    node: u32,
}

const EMPTY_SLOT: Slot = Slot { key: 0, node: NIL };

/// How a reference picks its home slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HashMode {
    /// The low bits of the reference: dense references (tokex's arena
    /// slot + generation ids, NASDAQ's sequential ones) land each in its own
    /// slot, in the order the producer reuses them, which keeps hot orders
    /// in hot cache lines.
    LowBits,
    /// Fibonacci hashing of all 64 bits, for references that are not dense
    /// (chosen for good once a probe runs longer than `MAX_PROBE`).
    Mixed,
}

/// Order reference -> pool index: open addressing with Robin Hood linear
/// probing (clusters stay sorted by home slot, so lookups stop early and a
/// deletion shifts back only as far as the next entry at home), at most
/// half full.
#[derive(Debug, Clone)]
struct OrderIndex {
    slots: Vec<Slot>,
    mask: usize,
    /// home = ((key * mul) >> shift) & mask: 1 and 0 for `LowBits`, the
    /// golden-ratio multiplier and 64 - log2(capacity) for `Mixed`.
    mul: u64,
    shift: u32,
    mode: HashMode,
    len: usize,
}

impl OrderIndex {
    const MIN_CAPACITY: usize = 1 << 10;
    /// A probe longer than this in `LowBits` mode means the references are
    /// not dense: switch to `Mixed` for good.
    const MAX_PROBE: usize = 32;

    fn with_capacity(orders: usize) -> OrderIndex {
        let cap = (orders * 2).next_power_of_two().max(Self::MIN_CAPACITY);
        let mut ix = OrderIndex {
            slots: Vec::new(),
            mask: 0,
            mul: 1,
            shift: 0,
            mode: HashMode::LowBits,
            len: 0,
        };
        ix.rebuild(cap, HashMode::LowBits);
        ix
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(self.mul) >> self.shift) as usize & self.mask
    }

    /// How far slot `pos` is from the home of what it holds.
    #[inline]
    fn distance(&self, pos: usize, key: u64) -> usize {
        pos.wrapping_sub(self.home(key)) & self.mask
    }

    /// The position of `key`, if present.
    #[inline]
    fn find(&self, key: u64) -> Option<usize> {
        let mut pos = self.home(key);
        let mut dist = 0;
        loop {
            let s = self.slots[pos];
            if s.node == NIL || self.distance(pos, s.key) < dist {
                return None;
            }
            if s.key == key {
                return Some(pos);
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
        }
    }

    #[inline]
    fn node_at(&self, pos: usize) -> u32 {
        self.slots[pos].node
    }

    /// Inserts a key known to be absent.
    #[inline]
    fn insert(&mut self, key: u64, node: u32) {
        if (self.len + 1) * 2 > self.slots.len() {
            self.rebuild(self.slots.len() * 2, self.mode);
        }
        if !self.place(Slot { key, node }) {
            self.rebuild(self.slots.len(), HashMode::Mixed);
        }
        self.len += 1;
    }

    /// Robin Hood placement: an entry further from home takes the slot of
    /// one nearer to its own. Returns false if, in `LowBits` mode, the probe
    /// ran long (the entry is placed anyway).
    #[inline]
    fn place(&mut self, mut cur: Slot) -> bool {
        let mut pos = self.home(cur.key);
        let mut dist = 0;
        let mut short = true;
        loop {
            let s = self.slots[pos];
            if s.node == NIL {
                self.slots[pos] = cur;
                return short;
            }
            let d = self.distance(pos, s.key);
            if d < dist {
                self.slots[pos] = cur;
                cur = s;
                dist = d;
            }
            pos = (pos + 1) & self.mask;
            dist += 1;
            if dist > Self::MAX_PROBE && self.mode == HashMode::LowBits {
                short = false;
            }
        }
    }

    #[cold]
    #[inline(never)]
    fn rebuild(&mut self, cap: usize, mode: HashMode) {
        let old = std::mem::replace(&mut self.slots, vec![EMPTY_SLOT; cap]);
        self.mask = cap - 1;
        self.mode = mode;
        (self.mul, self.shift) = match mode {
            HashMode::LowBits => (1, 0),
            HashMode::Mixed => (0x9E37_79B9_7F4A_7C15, 64 - cap.trailing_zeros()),
        };
        for s in old.into_iter().filter(|s| s.node != NIL) {
            // Long probes while rebuilding in LowBits mode are caught by the
            // next insert.
            self.place(s);
        }
    }

    /// Removes the key at `pos`, shifting the rest of its cluster back until
    /// an empty slot or an entry at its home.
    #[inline]
    fn remove_at(&mut self, pos: usize) {
        let mut hole = pos;
        loop {
            let next = (hole + 1) & self.mask;
            let s = self.slots[next];
            if s.node == NIL || self.distance(next, s.key) == 0 {
                break;
            }
            self.slots[hole] = s;
            hole = next;
        }
        self.slots[hole] = EMPTY_SLOT;
        self.len -= 1;
    }

    fn clear(&mut self) {
        self.slots.fill(EMPTY_SLOT);
        self.len = 0;
    }
}

/// One price level: FIFO of nodes and aggregates.
#[derive(Debug, Clone, Copy)]
struct LevelSlot {
    head: u32,
    tail: u32,
    orders: u32,
    qty: u64,
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
struct SideBook {
    side: Side,
    lower: u32,
    tick: u32,
    levels: Vec<LevelSlot>,
    occupied: Bitmap,
    /// Best ladder index, `NIL` when the ladder is empty.
    best: u32,
    overflow: BTreeMap<u32, LevelSlot>,
}

impl SideBook {
    fn new(side: Side, grid: Option<PriceGrid>) -> SideBook {
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

    #[inline]
    fn better(&self, a: u32, b: u32) -> bool {
        match self.side {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    /// Appends node `i` (price and qty set) at the back of its level.
    #[inline]
    fn push(&mut self, pool: &mut Pool, i: u32) -> &LevelSlot {
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
            if self.best == NIL || self.better(li, self.best) {
                self.best = li;
            }
        }
        self.levels[li as usize].push_back(pool, i);
        &self.levels[li as usize]
    }

    /// Unlinks node `i` from its level; returns the level's aggregate after.
    #[inline]
    fn remove(&mut self, pool: &mut Pool, i: u32) -> (u64, u32) {
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
    fn reduce(&mut self, pool: &mut Pool, i: u32, by: u32) -> (u64, u32) {
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
    fn best_level(&self) -> Option<(u32, &LevelSlot)> {
        let ladder = (self.best != NIL)
            .then(|| (self.price_of(self.best), &self.levels[self.best as usize]));
        let over = match self.side {
            Side::Buy => self.overflow.iter().next_back(),
            Side::Sell => self.overflow.iter().next(),
        }
        .map(|(p, l)| (*p, l));
        match (ladder, over) {
            (Some(a), Some(b)) => Some(if self.better(b.0, a.0) { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Non-empty levels, best first, merging the ladder and the fallback.
    fn levels_best_first(&self) -> impl Iterator<Item = (u32, &LevelSlot)> + '_ {
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
                if self.better(y.0, x.0) {
                    b.next()
                } else {
                    a.next()
                }
            }
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        })
    }

    fn clear(&mut self) {
        self.levels.fill(EMPTY_LEVEL);
        self.occupied.clear_all();
        self.best = NIL;
        self.overflow.clear();
    }
}

#[derive(Debug, Clone)]
struct InstrumentBook {
    symbol: Option<Symbol>,
    trading: bool,
    bids: SideBook,
    asks: SideBook,
}

impl InstrumentBook {
    fn unnamed() -> InstrumentBook {
        InstrumentBook {
            symbol: None,
            trading: false,
            bids: SideBook::new(Side::Buy, None),
            asks: SideBook::new(Side::Sell, None),
        }
    }

    fn named(symbol: Symbol, grid: Option<PriceGrid>) -> InstrumentBook {
        InstrumentBook {
            symbol: Some(symbol),
            trading: false,
            bids: SideBook::new(Side::Buy, grid),
            asks: SideBook::new(Side::Sell, grid),
        }
    }

    #[inline]
    fn side_mut(&mut self, side: Side) -> &mut SideBook {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    #[inline]
    fn side(&self, side: Side) -> &SideBook {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn is_empty(&self) -> bool {
        self.bids.best == NIL
            && self.asks.best == NIL
            && self.bids.overflow.is_empty()
            && self.asks.overflow.is_empty()
    }
}

/// Every instrument's book, indexed by Stock Locate.
#[derive(Debug, Clone)]
pub struct FeedBooks {
    books: Vec<InstrumentBook>,
    pool: Pool,
    index: OrderIndex,
    /// Known tick grids by symbol, used when the directory names one.
    grids: Vec<(Symbol, PriceGrid)>,
    /// Messages applied.
    pub applied: u64,
    /// Messages rejected (any [`BookError`]).
    pub errors: u64,
    /// Executions applied (`E` and `C`).
    pub trades: u64,
    /// Messages of ITCH 5.0 types tokex does not decode (Reg SHO `Y`, MWCB,
    /// IPO, LULD, ... in NASDAQ's files), skipped by
    /// [`FeedBooks::apply_stream`].
    pub skipped: u64,
}

impl Default for FeedBooks {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedBooks {
    /// Books with no known price grids: every level lives in the sorted
    /// fallback (exact for any producer, slower than a ladder).
    pub fn new() -> FeedBooks {
        FeedBooks::with_grids(std::iter::empty())
    }

    /// Books that know the tick grid (daily limits and tick) of every
    /// contract, matched by symbol when the Stock Directory names it.
    pub fn with_contracts(contracts: &ContractSet) -> FeedBooks {
        FeedBooks::with_grids(contracts.iter().map(|c| {
            (
                c.symbol,
                PriceGrid {
                    lower: c.lower_limit,
                    upper: c.upper_limit,
                    tick: c.tick,
                },
            )
        }))
    }

    /// Books with the given grids by symbol. A grid with a zero tick or
    /// upper below lower is ignored (its instrument uses the fallback).
    pub fn with_grids(grids: impl IntoIterator<Item = (Symbol, PriceGrid)>) -> FeedBooks {
        FeedBooks {
            books: Vec::new(),
            pool: Pool::new(),
            index: OrderIndex::with_capacity(0),
            grids: grids
                .into_iter()
                .filter(|(_, g)| g.tick.raw() > 0 && g.upper >= g.lower)
                .collect(),
            applied: 0,
            errors: 0,
            trades: 0,
            skipped: 0,
        }
    }

    /// Preallocates for `orders` resting orders at once, so that a feed
    /// with at most that many never allocates after start of day.
    pub fn reserve(&mut self, orders: usize) {
        let want = (orders * 2).next_power_of_two();
        if want > self.index.slots.len() {
            self.index.rebuild(want, self.index.mode);
        }
        self.pool
            .nodes
            .reserve(orders.saturating_sub(self.pool.nodes.len()));
    }

    /// Removes every order and level, keeping the directory, the trading
    /// states, the counters and the memory.
    pub fn clear_orders(&mut self) {
        self.index.clear();
        self.pool.clear();
        for b in &mut self.books {
            b.bids.clear();
            b.asks.clear();
        }
    }

    /// Applies one message. Calls `on_trade(locate, order_reference, qty,
    /// match_number)` for executions.
    pub fn apply(
        &mut self,
        m: &Message<'_>,
        on_trade: &mut impl FnMut(u16, u64, u32, u64),
    ) -> Result<(), BookError> {
        self.apply_observed(m, &mut TradeFn(on_trade))
    }

    /// Applies one message, telling `observer` of every execution and every
    /// level that changed.
    #[inline]
    pub fn apply_observed(
        &mut self,
        m: &Message<'_>,
        observer: &mut impl BookObserver,
    ) -> Result<(), BookError> {
        let r = self.apply_inner(m, observer);
        match r {
            Ok(()) => self.applied += 1,
            Err(_) => self.errors += 1,
        }
        r
    }

    #[inline]
    fn apply_inner(
        &mut self,
        m: &Message<'_>,
        obs: &mut impl BookObserver,
    ) -> Result<(), BookError> {
        match m {
            Message::AddOrder(a) => {
                let side = a.side().map_err(|_| BookError::BadField)?;
                self.add(
                    a.stock_locate.get(),
                    a.order_reference.get(),
                    side,
                    a.price.get(),
                    a.shares.get(),
                    obs,
                )
            }
            Message::OrderExecuted(e) => {
                self.execute(
                    e.order_reference.get(),
                    e.executed_shares.get(),
                    e.match_number.get(),
                    None,
                    obs,
                )?;
                Ok(())
            }
            Message::OrderExecutedWithPrice(e) => {
                self.execute(
                    e.order_reference.get(),
                    e.executed_shares.get(),
                    e.match_number.get(),
                    Some((e.execution_price.get(), e.printable != b'N')),
                    obs,
                )?;
                Ok(())
            }
            Message::OrderCancel(c) => {
                let r = c.order_reference.get();
                let pos = self.index.find(r).ok_or(BookError::UnknownOrder(r))?;
                self.reduce(pos, r, c.cancelled_shares.get(), obs)?;
                Ok(())
            }
            Message::OrderDelete(d) => {
                let r = d.order_reference.get();
                let pos = self.index.find(r).ok_or(BookError::UnknownOrder(r))?;
                self.delete(pos, obs);
                Ok(())
            }
            Message::OrderReplace(u) => {
                let old = u.original_order_reference.get();
                let new = u.new_order_reference.get();
                let pos = self.index.find(old).ok_or(BookError::UnknownOrder(old))?;
                if new != old && self.index.find(new).is_some() {
                    return Err(BookError::DuplicateOrder(new));
                }
                let node = self.pool.nodes[self.index.node_at(pos) as usize];
                self.delete(pos, obs);
                self.add(
                    node.locate,
                    new,
                    node.side,
                    u.price.get(),
                    u.shares.get(),
                    obs,
                )
            }
            Message::StockDirectory(d) => {
                self.directory(d.stock_locate.get(), d.symbol());
                Ok(())
            }
            Message::TradingAction(t) => {
                let locate = t.stock_locate.get();
                self.book_mut(locate)?.trading = t.trading_state == trading_state::TRADING;
                Ok(())
            }
            Message::SystemEvent(_) | Message::CrossTrade(_) | Message::Noii(_) => Ok(()),
        }
    }

    /// Names a locate. A new instrument (or an empty one renamed) gets the
    /// ladder of its symbol's grid; a book with orders keeps its levels.
    fn directory(&mut self, locate: u16, symbol: Symbol) {
        let i = usize::from(locate);
        if self.books.len() <= i {
            self.books.resize_with(i + 1, InstrumentBook::unnamed);
        }
        let b = &mut self.books[i];
        if b.symbol == Some(symbol) {
            return;
        }
        if b.is_empty() {
            let grid = self
                .grids
                .iter()
                .find(|(s, _)| *s == symbol)
                .map(|(_, g)| *g);
            let trading = b.trading;
            *b = InstrumentBook::named(symbol, grid);
            b.trading = trading;
        } else {
            b.symbol = Some(symbol);
        }
    }

    #[inline]
    fn book_mut(&mut self, locate: u16) -> Result<&mut InstrumentBook, BookError> {
        match self.books.get_mut(usize::from(locate)) {
            Some(b) if b.symbol.is_some() => Ok(b),
            _ => Err(BookError::UnknownLocate(locate)),
        }
    }

    #[inline]
    fn add(
        &mut self,
        locate: u16,
        reference: u64,
        side: Side,
        price: u32,
        qty: u32,
        obs: &mut impl BookObserver,
    ) -> Result<(), BookError> {
        let book = match self.books.get_mut(usize::from(locate)) {
            Some(b) if b.symbol.is_some() => b,
            _ => return Err(BookError::UnknownLocate(locate)),
        };
        if self.index.find(reference).is_some() {
            return Err(BookError::DuplicateOrder(reference));
        }
        let i = self.pool.alloc(Node {
            reference,
            price,
            qty,
            level: NIL,
            prev: NIL,
            next: NIL,
            locate,
            side,
        });
        self.index.insert(reference, i);
        let level = book.side_mut(side).push(&mut self.pool, i);
        obs.on_level(&LevelChange {
            locate,
            side,
            price: Price::from_raw(price),
            qty: level.qty,
            orders: level.orders,
        });
        Ok(())
    }

    /// Removes the order at index position `pos` entirely.
    #[inline]
    fn delete(&mut self, pos: usize, obs: &mut impl BookObserver) {
        let i = self.index.node_at(pos);
        let Node {
            locate,
            side,
            price,
            ..
        } = self.pool.nodes[i as usize];
        let (qty, orders) = self.books[usize::from(locate)]
            .side_mut(side)
            .remove(&mut self.pool, i);
        self.index.remove_at(pos);
        self.pool.release(i);
        obs.on_level(&LevelChange {
            locate,
            side,
            price: Price::from_raw(price),
            qty,
            orders,
        });
    }

    /// Takes `by` lots off the order at `pos`, removing it at zero; returns
    /// the order as it was.
    #[inline]
    fn reduce(
        &mut self,
        pos: usize,
        reference: u64,
        by: u32,
        obs: &mut impl BookObserver,
    ) -> Result<Node, BookError> {
        let i = self.index.node_at(pos);
        let node = self.pool.nodes[i as usize];
        if by > node.qty {
            return Err(BookError::Oversize(reference));
        }
        if by == node.qty {
            self.delete(pos, obs);
        } else {
            let (qty, orders) = self.books[usize::from(node.locate)]
                .side_mut(node.side)
                .reduce(&mut self.pool, i, by);
            obs.on_level(&LevelChange {
                locate: node.locate,
                side: node.side,
                price: Price::from_raw(node.price),
                qty,
                orders,
            });
        }
        Ok(node)
    }

    #[inline]
    fn execute(
        &mut self,
        reference: u64,
        qty: u32,
        match_number: u64,
        with_price: Option<(u32, bool)>,
        obs: &mut impl BookObserver,
    ) -> Result<(), BookError> {
        let pos = self
            .index
            .find(reference)
            .ok_or(BookError::UnknownOrder(reference))?;
        let node = self.reduce(pos, reference, qty, obs)?;
        self.trades += 1;
        let (price, printable) = with_price.unwrap_or((node.price, true));
        obs.on_trade(&Trade {
            locate: node.locate,
            order_reference: reference,
            side: node.side,
            price: Price::from_raw(price),
            qty,
            match_number,
            printable,
        });
        Ok(())
    }

    /// Applies every message of an in-memory length-prefixed ITCH stream
    /// (NASDAQ's file format, `tokex replay`'s itch.bin), as
    /// [`FeedBooks::apply_observed`] does each; returns how many messages
    /// it read. Messages the book rejects are counted in `errors`; messages
    /// of types tokex does not decode are skipped and counted in `skipped`
    /// (their length prefix says where the next one starts); any other
    /// message that does not decode, or a length running past the end,
    /// ends the stream with its error.
    pub fn apply_stream(
        &mut self,
        mut buf: &[u8],
        observer: &mut impl BookObserver,
    ) -> Result<u64, crate::wire::DecodeError> {
        let mut n = 0;
        while let [a, b, rest @ ..] = buf {
            let len = usize::from(u16::from_be_bytes([*a, *b]));
            let Some((msg, tail)) = rest.split_at_checked(len) else {
                return Err(crate::wire::DecodeError::TooShort {
                    needed: len + 2,
                    got: buf.len(),
                });
            };
            match Message::parse(msg) {
                Ok(m) => {
                    let _ = self.apply_observed(&m, observer);
                }
                Err(crate::wire::DecodeError::UnknownType(_)) => self.skipped += 1,
                Err(e) => return Err(e),
            }
            buf = tail;
            n += 1;
        }
        if buf.is_empty() {
            Ok(n)
        } else {
            Err(crate::wire::DecodeError::TooShort {
                needed: 2,
                got: buf.len(),
            })
        }
    }

    /// The symbol of a locate, if the directory named it.
    pub fn symbol(&self, locate: u16) -> Option<Symbol> {
        self.books.get(usize::from(locate)).and_then(|b| b.symbol)
    }

    /// Whether the last Trading Action of a locate said "trading".
    pub fn is_trading(&self, locate: u16) -> bool {
        self.books
            .get(usize::from(locate))
            .is_some_and(|b| b.trading)
    }

    /// Locates named by the directory, in order.
    pub fn locates(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.books.len() as u16).filter(|&l| self.symbol(l).is_some())
    }

    /// Best bid and best ask with their total sizes.
    pub fn top(&self, locate: u16) -> (Option<Level>, Option<Level>) {
        let Some(b) = self.books.get(usize::from(locate)) else {
            return (None, None);
        };
        let f = |s: &SideBook| s.best_level().map(|(p, l)| (Price::from_raw(p), l.qty));
        (f(&b.bids), f(&b.asks))
    }

    /// The levels of one side, best first (aggregate size and order count).
    pub fn depth(&self, locate: u16, side: Side) -> impl Iterator<Item = DepthLevel> + '_ {
        self.books
            .get(usize::from(locate))
            .into_iter()
            .flat_map(move |b| b.side(side).levels_best_first())
            .map(|(p, l)| DepthLevel {
                price: Price::from_raw(p),
                qty: l.qty,
                orders: l.orders,
            })
    }

    /// One resting order by reference.
    pub fn order(&self, reference: u64) -> Option<FeedOrder> {
        let n = self.pool.nodes[self.index.node_at(self.index.find(reference)?) as usize];
        Some(FeedOrder {
            order_reference: n.reference,
            side: n.side,
            price: Price::from_raw(n.price),
            qty: Qty::new(n.qty),
        })
    }

    /// Resting orders: bids best first, then asks best first, time priority
    /// within a level (the order of `tokex replay`'s book.csv).
    pub fn orders(&self, locate: u16) -> Vec<FeedOrder> {
        let mut out = Vec::new();
        let Some(b) = self.books.get(usize::from(locate)) else {
            return out;
        };
        for s in [&b.bids, &b.asks] {
            for (price, level) in s.levels_best_first() {
                let mut i = level.head;
                while i != NIL {
                    let n = &self.pool.nodes[i as usize];
                    out.push(FeedOrder {
                        order_reference: n.reference,
                        side: s.side,
                        price: Price::from_raw(price),
                        qty: Qty::new(n.qty),
                    });
                    i = n.next;
                }
            }
        }
        out
    }

    /// Total resting orders across instruments.
    pub fn order_count(&self) -> usize {
        self.index.len
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

    /// Inserts `keys`, removes every third, checks the rest are found.
    fn index_keeps_keys_reachable(keys: &[u64]) -> OrderIndex {
        let mut ix = OrderIndex::with_capacity(0);
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(ix.find(k), None, "{k} not yet inserted");
            ix.insert(k, n as u32);
        }
        for &k in keys.iter().step_by(3) {
            let p = ix.find(k).unwrap();
            ix.remove_at(p);
        }
        for (n, &k) in keys.iter().enumerate() {
            let found = ix.find(k).map(|p| ix.node_at(p));
            if n % 3 == 0 {
                assert_eq!(found, None, "{k}");
            } else {
                assert_eq!(found, Some(n as u32), "{k}");
            }
        }
        assert_eq!(ix.len, keys.len() - keys.len().div_ceil(3));
        ix
    }

    #[test]
    fn index_places_dense_references_at_home_and_finds_them_after_growth() {
        // tokex's own ids: arena slot in the low 32 bits, generation above.
        let keys: Vec<u64> = (0..5_000u64).map(|s| (((s % 7) + 1) << 32) | s).collect();
        let ix = index_keeps_keys_reachable(&keys);
        assert_eq!(ix.mode, HashMode::LowBits);
        assert!(ix.slots.len() >= 8_192, "grew to {}", ix.slots.len());
    }

    #[test]
    fn index_switches_to_mixed_hashing_when_references_collide_on_low_bits() {
        // Strided references share their low bits: one long cluster, until
        // the index notices and rehashes all 64 bits.
        let keys: Vec<u64> = (1..600u64).map(|k| k << 20).collect();
        let ix = index_keeps_keys_reachable(&keys);
        assert_eq!(ix.mode, HashMode::Mixed);
    }

    #[test]
    fn apply_stream_skips_and_counts_itch_types_it_does_not_decode() {
        use crate::wire::itch::{AddOrder, Header, OrderDelete, StockDirectory};
        use zerocopy::IntoBytes;
        let h = Header {
            stock_locate: 1,
            tracking_number: 0,
            timestamp: 34_200_000_000_000,
        };
        let tk = Symbol::new("TK2612").unwrap();
        let px = Price::from_raw(65_000);
        // ITCH 5.0 Reg SHO Restriction `Y` (20 bytes), as in every NASDAQ
        // file after the directory.
        let mut reg_sho = vec![b'Y', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        reg_sho.extend_from_slice(tk.wire());
        reg_sho.push(b'0');
        let dir = StockDirectory::new(h, tk, 1);
        let a1 = AddOrder::new(h, 1, Side::Buy, Qty::new(2), tk, px);
        let a2 = AddOrder::new(h, 2, Side::Sell, Qty::new(3), tk, Price::from_raw(65_100));
        let d1 = OrderDelete::new(h, 1);
        let mut buf = Vec::new();
        for m in [
            dir.as_bytes(),
            &reg_sho,
            a1.as_bytes(),
            &reg_sho,
            a2.as_bytes(),
            d1.as_bytes(),
        ] {
            buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
            buf.extend_from_slice(m);
        }
        let mut feed = FeedBooks::new();
        assert_eq!(feed.apply_stream(&buf, &mut ()), Ok(6));
        assert_eq!((feed.skipped, feed.errors, feed.applied), (2, 0, 4));
        assert_eq!(feed.order_count(), 1, "order 2 rests, order 1 was deleted");
        // A length past the end still ends the stream with its error.
        let mut feed = FeedBooks::new();
        assert!(feed.apply_stream(&buf[..buf.len() - 1], &mut ()).is_err());
        assert_eq!((feed.skipped, feed.order_count()), (2, 2));
    }
}
