//! The feed handler's order-by-order books, rebuilt from ITCH 5.0 messages.
//!
//! Owns the consumer's view of every instrument named in the Stock
//! Directory: each order by reference number, price levels best first, time
//! priority within a level. Sans-IO: messages in, queries out. A message that
//! does not fit the book (unknown order or locate) is counted, never a panic.

use std::collections::{BTreeMap, HashMap};

use crate::types::{Price, Qty, Side, Symbol};
use crate::wire::itch::{trading_state, Message};

/// Why a message could not be applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BookError {
    /// A Stock Locate that no Stock Directory named.
    UnknownLocate(u16),
    /// An order reference that is not in the book.
    UnknownOrder(u64),
    /// An Add Order for a reference already in the book.
    DuplicateOrder(u64),
    /// Executed or cancelled more than the order's open size.
    Oversize(u64),
    /// A field that does not decode (e.g. the side byte).
    BadField,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    locate: u16,
    side: Side,
    price: u32,
    qty: u32,
    /// Arrival order: time priority.
    seq: u64,
}

/// One side: price -> (arrival seq -> order reference).
type Ladder = BTreeMap<u32, BTreeMap<u64, u64>>;

#[derive(Debug, Default, Clone)]
struct InstrumentBook {
    symbol: Option<Symbol>,
    bids: Ladder,
    asks: Ladder,
    trading: bool,
}

impl InstrumentBook {
    fn ladder(&mut self, side: Side) -> &mut Ladder {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }
}

/// A price level: price and total open size.
pub type Level = (Price, u64);

/// A resting order as the feed shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedOrder {
    pub order_reference: u64,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
}

/// Every instrument's book, indexed by Stock Locate.
#[derive(Debug, Default, Clone)]
pub struct FeedBooks {
    books: Vec<InstrumentBook>,
    orders: HashMap<u64, Entry>,
    seq: u64,
    /// Messages applied, and rejected by reason.
    pub applied: u64,
    pub errors: u64,
    /// Executions seen: (locate, price, qty, match number) go to `on_trade`.
    pub trades: u64,
}

impl FeedBooks {
    pub fn new() -> FeedBooks {
        FeedBooks::default()
    }

    fn book(&mut self, locate: u16) -> Result<&mut InstrumentBook, BookError> {
        match self.books.get_mut(usize::from(locate)) {
            Some(b) if b.symbol.is_some() => Ok(b),
            _ => Err(BookError::UnknownLocate(locate)),
        }
    }

    fn remove_from_ladder(&mut self, reference: u64, e: &Entry) {
        if let Some(b) = self.books.get_mut(usize::from(e.locate)) {
            let ladder = b.ladder(e.side);
            if let Some(level) = ladder.get_mut(&e.price) {
                level.remove(&e.seq);
                if level.is_empty() {
                    ladder.remove(&e.price);
                }
            }
        }
        self.orders.remove(&reference);
    }

    fn add(
        &mut self,
        locate: u16,
        reference: u64,
        side: Side,
        price: u32,
        qty: u32,
    ) -> Result<(), BookError> {
        if self.orders.contains_key(&reference) {
            return Err(BookError::DuplicateOrder(reference));
        }
        self.seq += 1;
        let seq = self.seq;
        self.book(locate)?
            .ladder(side)
            .entry(price)
            .or_default()
            .insert(seq, reference);
        self.orders.insert(
            reference,
            Entry {
                locate,
                side,
                price,
                qty,
                seq,
            },
        );
        Ok(())
    }

    /// Takes `qty` off an order; removes it at zero.
    fn reduce(&mut self, reference: u64, qty: u32) -> Result<(), BookError> {
        let e = *self
            .orders
            .get(&reference)
            .ok_or(BookError::UnknownOrder(reference))?;
        if qty > e.qty {
            return Err(BookError::Oversize(reference));
        }
        if qty == e.qty {
            self.remove_from_ladder(reference, &e);
        } else if let Some(x) = self.orders.get_mut(&reference) {
            x.qty -= qty;
        }
        Ok(())
    }

    /// Applies one message. Calls `on_trade(locate, order_reference, qty,
    /// match_number)` for executions.
    pub fn apply(
        &mut self,
        m: &Message<'_>,
        on_trade: &mut impl FnMut(u16, u64, u32, u64),
    ) -> Result<(), BookError> {
        let r = self.apply_inner(m, on_trade);
        match r {
            Ok(()) => self.applied += 1,
            Err(_) => self.errors += 1,
        }
        r
    }

    fn apply_inner(
        &mut self,
        m: &Message<'_>,
        on_trade: &mut impl FnMut(u16, u64, u32, u64),
    ) -> Result<(), BookError> {
        let locate = m.header().stock_locate;
        match m {
            Message::StockDirectory(d) => {
                let i = usize::from(locate);
                if self.books.len() <= i {
                    self.books.resize_with(i + 1, InstrumentBook::default);
                }
                self.books[i].symbol = Some(d.symbol());
                Ok(())
            }
            Message::TradingAction(t) => {
                self.book(locate)?.trading = t.trading_state == trading_state::TRADING;
                Ok(())
            }
            Message::AddOrder(a) => {
                let side = a.side().map_err(|_| BookError::BadField)?;
                self.add(
                    locate,
                    a.order_reference.get(),
                    side,
                    a.price.get(),
                    a.shares.get(),
                )
            }
            Message::OrderExecuted(e) => {
                let r = e.order_reference.get();
                self.reduce(r, e.executed_shares.get())?;
                self.trades += 1;
                on_trade(locate, r, e.executed_shares.get(), e.match_number.get());
                Ok(())
            }
            Message::OrderExecutedWithPrice(e) => {
                let r = e.order_reference.get();
                self.reduce(r, e.executed_shares.get())?;
                self.trades += 1;
                on_trade(locate, r, e.executed_shares.get(), e.match_number.get());
                Ok(())
            }
            Message::OrderCancel(c) => {
                self.reduce(c.order_reference.get(), c.cancelled_shares.get())
            }
            Message::OrderDelete(d) => {
                let r = d.order_reference.get();
                let e = *self.orders.get(&r).ok_or(BookError::UnknownOrder(r))?;
                self.remove_from_ladder(r, &e);
                Ok(())
            }
            Message::OrderReplace(u) => {
                let old = u.original_order_reference.get();
                let e = *self.orders.get(&old).ok_or(BookError::UnknownOrder(old))?;
                self.remove_from_ladder(old, &e);
                self.add(
                    e.locate,
                    u.new_order_reference.get(),
                    e.side,
                    u.price.get(),
                    u.shares.get(),
                )
            }
            Message::SystemEvent(_) | Message::CrossTrade(_) | Message::Noii(_) => Ok(()),
        }
    }

    /// The symbol of a locate, if the directory named it.
    pub fn symbol(&self, locate: u16) -> Option<Symbol> {
        self.books.get(usize::from(locate)).and_then(|b| b.symbol)
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
        let total = |level: &BTreeMap<u64, u64>| -> u64 {
            level
                .values()
                .map(|r| u64::from(self.orders.get(r).map_or(0, |e| e.qty)))
                .sum()
        };
        let bid = b
            .bids
            .iter()
            .next_back()
            .map(|(p, l)| (Price::from_raw(*p), total(l)));
        let ask = b
            .asks
            .iter()
            .next()
            .map(|(p, l)| (Price::from_raw(*p), total(l)));
        (bid, ask)
    }

    /// Resting orders: bids best first, then asks best first, time priority
    /// within a level (the order of `tokex replay`'s book.csv).
    pub fn orders(&self, locate: u16) -> Vec<FeedOrder> {
        let mut out = Vec::new();
        let Some(b) = self.books.get(usize::from(locate)) else {
            return out;
        };
        let levels = b
            .bids
            .iter()
            .rev()
            .map(|l| (Side::Buy, l))
            .chain(b.asks.iter().map(|l| (Side::Sell, l)));
        for (side, (price, level)) in levels {
            for r in level.values() {
                if let Some(e) = self.orders.get(r) {
                    out.push(FeedOrder {
                        order_reference: *r,
                        side,
                        price: Price::from_raw(*price),
                        qty: Qty::new(e.qty),
                    });
                }
            }
        }
        out
    }

    /// Total resting orders across instruments.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }
}
