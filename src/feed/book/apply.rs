//! Applying ITCH messages to [`FeedBooks`]: adds, executions, cancels,
//! deletes, replaces, directory and trading-state messages, and whole
//! length-prefixed streams; each change reported to a [`BookObserver`].
//!
//! Owns what each message means to the book. It must not do I/O, panic on
//! a message that does not fit (that is a [`BookError`]) or allocate per
//! message; probing, level links and the best price stay behind the methods
//! of `order_index.rs` and `side.rs`.

use super::pool::Node;
use super::{BookError, BookObserver, FeedBooks, InstrumentBook, LevelChange, Trade, NIL};
use crate::types::{Price, Side, Symbol};
use crate::wire::itch::{trading_state, Message};

/// Adapts the trade callback of [`FeedBooks::apply`].
struct TradeFn<'a, F>(&'a mut F);

impl<F: FnMut(u16, u64, u32, u64)> BookObserver for TradeFn<'_, F> {
    #[inline]
    fn on_trade(&mut self, t: &Trade) {
        (self.0)(t.locate, t.order_reference, t.qty, t.match_number)
    }
}

impl FeedBooks {
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
        buf: &[u8],
        observer: &mut impl BookObserver,
    ) -> Result<u64, crate::wire::DecodeError> {
        let mut n = 0;
        for m in crate::wire::itch::stream(buf) {
            match m {
                Ok(m) => {
                    let _ = self.apply_observed(&m, observer);
                }
                Err(crate::wire::DecodeError::UnknownType(_)) => self.skipped += 1,
                Err(e) => return Err(e),
            }
            n += 1;
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Qty;

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
