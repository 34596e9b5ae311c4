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
//! - locate -> book: a table of dense book numbers grown to the highest
//!   locate named (four bytes a locate), the books only for locates the
//!   directory named: a directory naming locate 60,000 costs 240 KB, not
//!   60,000 empty books (17 MB and 17 ms, which one hostile Stock
//!   Directory message used to cost). A known symbol's ladder goes to one
//!   locate at a time; another locate naming the same symbol (a producer's
//!   error: NASDAQ names each symbol once a day) gets the exact, slower
//!   fallback, so a hostile directory cannot allocate a ladder per locate.
//!
//! Nothing allocates per message in steady state: the table and the pool
//! grow by doubling while the number of resting orders reaches new highs
//! ([`FeedBooks::reserve`] preallocates), the ladders are allocated when the
//! Stock Directory names an instrument.
//!
//! Layout, one job a file:
//! - this file: the public types, the observer callbacks, the
//!   per-instrument books and [`FeedBooks`]' construction and queries;
//! - `apply.rs`: ITCH messages into book changes and callbacks;
//! - `order_index.rs`: the reference -> node hash table;
//! - `pool.rs`: the nodes and their free list;
//! - `side.rs`: price levels, the ladder and fallback of one side, and the
//!   tick grid.

mod apply;
mod order_index;
mod pool;
mod side;

use crate::contract::ContractSet;
use crate::types::{Price, Qty, Side, Symbol};
use order_index::OrderIndex;
use pool::Pool;
use side::SideBook;

pub use side::PriceGrid;

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

/// "No node" in the intrusive links, and "not on the grid" for a level.
const NIL: u32 = u32::MAX;

/// The book of one locate the directory named.
#[derive(Debug, Clone)]
struct InstrumentBook {
    locate: u16,
    symbol: Symbol,
    trading: bool,
    bids: SideBook,
    asks: SideBook,
}

impl InstrumentBook {
    fn named(locate: u16, symbol: Symbol, grid: Option<PriceGrid>) -> InstrumentBook {
        InstrumentBook {
            locate,
            symbol,
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

/// No book for this locate in [`FeedBooks`]' `book_of`.
const NO_BOOK: u32 = u32::MAX;

/// Every instrument's book, found by Stock Locate.
#[derive(Debug, Clone)]
pub struct FeedBooks {
    /// The books, in the order the directory named their locates (a node
    /// names its book by this position, a `u16`: there are at most 65,536
    /// locates).
    books: Vec<InstrumentBook>,
    /// Per locate up to the highest one named, its book's position in
    /// `books`, or [`NO_BOOK`].
    book_of: Vec<u32>,
    pool: Pool,
    index: OrderIndex,
    /// Known tick grids by symbol, used when the directory names one, and
    /// the book (position in `books`) holding its ladder, or [`NO_BOOK`]:
    /// one ladder per grid, so a directory naming a known symbol at many
    /// locates cannot make a ladder (hundreds of KB) for each.
    grids: Vec<(Symbol, PriceGrid, u32)>,
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
            book_of: Vec::new(),
            pool: Pool::new(),
            index: OrderIndex::with_capacity(0),
            grids: grids
                .into_iter()
                .filter(|(_, g)| g.tick.raw() > 0 && g.upper >= g.lower)
                .map(|(s, g)| (s, g, NO_BOOK))
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

    /// The position in `books` of a locate's book, if the directory named it.
    #[inline]
    fn book_at(&self, locate: u16) -> Option<usize> {
        match self.book_of.get(usize::from(locate)) {
            Some(&i) if i != NO_BOOK => Some(i as usize),
            _ => None,
        }
    }

    /// A locate's book, if the directory named it.
    fn book(&self, locate: u16) -> Option<&InstrumentBook> {
        self.book_at(locate).map(|i| &self.books[i])
    }

    /// The symbol of a locate, if the directory named it.
    pub fn symbol(&self, locate: u16) -> Option<Symbol> {
        self.book(locate).map(|b| b.symbol)
    }

    /// Whether the last Trading Action of a locate said "trading".
    pub fn is_trading(&self, locate: u16) -> bool {
        self.book(locate).is_some_and(|b| b.trading)
    }

    /// Locates named by the directory, in order.
    pub fn locates(&self) -> impl Iterator<Item = u16> + '_ {
        (0..self.book_of.len())
            .filter(|&l| self.book_of[l] != NO_BOOK)
            .map(|l| l as u16)
    }

    /// Best bid and best ask with their total sizes.
    pub fn top(&self, locate: u16) -> (Option<Level>, Option<Level>) {
        let Some(b) = self.book(locate) else {
            return (None, None);
        };
        let f = |s: &SideBook| s.best_level().map(|(p, l)| (Price::from_raw(p), l.qty));
        (f(&b.bids), f(&b.asks))
    }

    /// The levels of one side, best first (aggregate size and order count).
    pub fn depth(&self, locate: u16, side: Side) -> impl Iterator<Item = DepthLevel> + '_ {
        self.book(locate)
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
        let Some(b) = self.book(locate) else {
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
