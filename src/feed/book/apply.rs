//! Applying ITCH messages to [`FeedBooks`]: adds, executions, cancels,
//! deletes, replaces, directory and trading-state messages, and whole
//! length-prefixed streams; each change reported to a [`BookObserver`].
//!
//! Owns what each message means to the book. It must not do I/O, panic on
//! a message that does not fit (that is a [`BookError`]) or allocate per
//! message; probing, level links and the best price stay behind the methods
//! of `order_index.rs` and `side.rs`.

use super::pool::Node;
use super::{
    BookError, BookObserver, FeedBooks, InstrumentBook, LevelChange, PriceGrid, Trade, NIL, NO_BOOK,
};
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
                let book = self.named_book(a.stock_locate.get())?;
                self.add(
                    book,
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
                if u.shares.get() == 0 {
                    return Err(BookError::BadField);
                }
                let node = self.pool.nodes[self.index.node_at(pos) as usize];
                self.delete(pos, obs);
                self.add(
                    usize::from(node.book),
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
                let book = self.named_book(t.stock_locate.get())?;
                self.books[book].trading = t.trading_state == trading_state::TRADING;
                Ok(())
            }
            Message::SystemEvent(_) | Message::CrossTrade(_) | Message::Noii(_) => Ok(()),
        }
    }

    /// The position of a locate's book, or [`BookError::UnknownLocate`]
    /// when the directory has not named it.
    #[inline]
    fn named_book(&self, locate: u16) -> Result<usize, BookError> {
        self.book_at(locate).ok_or(BookError::UnknownLocate(locate))
    }

    /// Names a locate. A new instrument (or an empty one renamed) gets the
    /// ladder of its symbol's grid unless another book holds it; a book
    /// with orders keeps its levels.
    fn directory(&mut self, locate: u16, symbol: Symbol) {
        let existing = self.book_at(locate);
        if let Some(i) = existing {
            let b = &mut self.books[i];
            if b.symbol == symbol {
                return;
            }
            if !b.is_empty() {
                b.symbol = symbol;
                return;
            }
            self.release_ladder(i);
        }
        let i = existing.unwrap_or(self.books.len());
        let grid = self.claim_ladder(symbol, i);
        let book = InstrumentBook::named(locate, symbol, grid);
        match existing {
            Some(i) => {
                let trading = self.books[i].trading;
                self.books[i] = book;
                self.books[i].trading = trading;
            }
            None => {
                let l = usize::from(locate);
                if self.book_of.len() <= l {
                    self.book_of.resize(l + 1, NO_BOOK);
                }
                self.book_of[l] = i as u32;
                self.books.push(book);
            }
        }
    }

    /// The grid of `symbol` for book `i`, if the symbol has one whose
    /// ladder no other book holds; `i` holds it from now on.
    fn claim_ladder(&mut self, symbol: Symbol, i: usize) -> Option<PriceGrid> {
        let (_, grid, holder) = self.grids.iter_mut().find(|(s, ..)| *s == symbol)?;
        if *holder != NO_BOOK && *holder != i as u32 {
            return None;
        }
        *holder = i as u32;
        Some(*grid)
    }

    /// Book `i` gives up the ladder it holds, if any.
    fn release_ladder(&mut self, i: usize) {
        for (_, _, holder) in &mut self.grids {
            if *holder == i as u32 {
                *holder = NO_BOOK;
            }
        }
    }

    /// Adds an order to the book at `book` (a position in `books`).
    #[inline]
    fn add(
        &mut self,
        book: usize,
        reference: u64,
        side: Side,
        price: u32,
        qty: u32,
        obs: &mut impl BookObserver,
    ) -> Result<(), BookError> {
        if qty == 0 {
            // No order rests with nothing: it would show as a level of 0.
            return Err(BookError::BadField);
        }
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
            book: book as u16,
            side,
        });
        self.index.insert(reference, i);
        let b = &mut self.books[book];
        let locate = b.locate;
        let level = b.side_mut(side).push(&mut self.pool, i);
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
            book, side, price, ..
        } = self.pool.nodes[i as usize];
        let b = &mut self.books[usize::from(book)];
        let locate = b.locate;
        let (qty, orders) = b.side_mut(side).remove(&mut self.pool, i);
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
            let b = &mut self.books[usize::from(node.book)];
            let (qty, orders) = b.side_mut(node.side).reduce(&mut self.pool, i, by);
            obs.on_level(&LevelChange {
                locate: b.locate,
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
            locate: self.books[usize::from(node.book)].locate,
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
    use crate::wire::itch::Header;

    /// Locate 1's header at 09:30, TK2612, and a price.
    fn tk_at_locate_1() -> (Header, Symbol, Price) {
        let h = Header {
            stock_locate: 1,
            tracking_number: 0,
            timestamp: 34_200_000_000_000,
        };
        (h, Symbol::new("TK2612").unwrap(), Price::from_raw(65_000))
    }

    #[test]
    fn apply_stream_skips_and_counts_itch_types_it_does_not_decode() {
        use crate::wire::itch::{AddOrder, OrderDelete, StockDirectory};
        use zerocopy::IntoBytes;
        let (h, tk, px) = tk_at_locate_1();
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
    #[test]
    fn an_add_or_replace_of_zero_shares_is_refused_and_the_book_left_as_it_was() {
        use crate::wire::itch::{AddOrder, OrderReplace, StockDirectory};
        use zerocopy::IntoBytes;
        let (h, tk, px) = tk_at_locate_1();
        let mut feed = FeedBooks::new();
        let mut apply = |b: &[u8]| feed.apply(&Message::parse(b).unwrap(), &mut |_, _, _, _| {});
        assert_eq!(apply(StockDirectory::new(h, tk, 1).as_bytes()), Ok(()));
        let zero = AddOrder::new(h, 1, Side::Buy, Qty::new(0), tk, px);
        assert_eq!(apply(zero.as_bytes()), Err(BookError::BadField));
        let one = AddOrder::new(h, 2, Side::Buy, Qty::new(1), tk, px);
        assert_eq!(apply(one.as_bytes()), Ok(()));
        let to_zero = OrderReplace::new(h, 2, 3, Qty::new(0), px);
        assert_eq!(apply(to_zero.as_bytes()), Err(BookError::BadField));
        assert_eq!(feed.order_count(), 1, "order 2 still rests");
        assert_eq!(feed.top(1).0, Some((px, 1)));
    }
    #[test]
    fn a_directory_naming_a_high_locate_makes_one_book_and_every_other_locate_stays_unknown() {
        use crate::wire::itch::{
            AddOrder, Header, OrderExecuted, OrderReplace, StockDirectory, TradingAction,
        };
        use zerocopy::IntoBytes;
        let h = |stock_locate| Header {
            stock_locate,
            tracking_number: 0,
            timestamp: 34_200_000_000_000,
        };
        let tk = Symbol::new("TK2612").unwrap();
        let px = Price::from_raw(65_000);
        let messages: Vec<Vec<u8>> = vec![
            StockDirectory::new(h(65_535), tk, 1).as_bytes().to_vec(),
            TradingAction::new(h(65_535), tk, b'T', *b"    ")
                .as_bytes()
                .to_vec(),
            AddOrder::new(h(65_535), 1, Side::Buy, Qty::new(5), tk, px)
                .as_bytes()
                .to_vec(),
            OrderReplace::new(h(65_535), 1, 2, Qty::new(4), px)
                .as_bytes()
                .to_vec(),
            OrderExecuted::new(h(65_535), 2, Qty::new(1), 9)
                .as_bytes()
                .to_vec(),
            // Locates the directory did not name, below and in between.
            AddOrder::new(h(7), 3, Side::Buy, Qty::new(1), tk, px)
                .as_bytes()
                .to_vec(),
            TradingAction::new(h(0), tk, b'T', *b"    ")
                .as_bytes()
                .to_vec(),
        ];
        let mut feed = FeedBooks::new();
        let mut trades = Vec::new();
        let results: Vec<_> = messages
            .iter()
            .map(|b| {
                let m = Message::parse(b).unwrap();
                feed.apply(&m, &mut |l, r, q, n| trades.push((l, r, q, n)))
            })
            .collect();
        assert_eq!(
            results[5..],
            [
                Err(BookError::UnknownLocate(7)),
                Err(BookError::UnknownLocate(0))
            ]
        );
        assert!(results[..5].iter().all(Result::is_ok), "{results:?}");
        assert_eq!(feed.books.len(), 1, "one book, not 65,536");
        assert_eq!(feed.locates().collect::<Vec<_>>(), [65_535]);
        assert_eq!((feed.symbol(65_535), feed.symbol(7)), (Some(tk), None));
        assert!(feed.is_trading(65_535) && !feed.is_trading(0));
        assert_eq!(trades, [(65_535, 2, 1, 9)], "trades name the locate");
        assert_eq!(feed.top(65_535).0, Some((px, 3)));
        assert_eq!(feed.top(7), (None, None));
        assert!(feed.orders(7).is_empty() && feed.depth(7, Side::Buy).next().is_none());
    }
    #[test]
    fn a_known_symbol_named_at_several_locates_has_one_ladder_and_the_others_stay_exact() {
        use crate::wire::itch::{AddOrder, Header, OrderDelete, StockDirectory};
        use zerocopy::IntoBytes;
        let h = |stock_locate| Header {
            stock_locate,
            tracking_number: 0,
            timestamp: 34_200_000_000_000,
        };
        let (tk, gh) = (
            Symbol::new("TK2612").unwrap(),
            Symbol::new("GH2612").unwrap(),
        );
        let grid = PriceGrid {
            lower: Price::from_raw(60_000),
            upper: Price::from_raw(70_000),
            tick: Price::from_raw(1),
        };
        let mut feed = FeedBooks::with_grids([(tk, grid)]);
        let px = Price::from_raw(65_000);
        let apply = |feed: &mut FeedBooks, b: &[u8]| {
            feed.apply(&Message::parse(b).unwrap(), &mut |_, _, _, _| {})
        };
        for (k, locate) in [1u16, 2, 3].into_iter().enumerate() {
            apply(&mut feed, StockDirectory::new(h(locate), tk, 1).as_bytes()).unwrap();
            let add = AddOrder::new(h(locate), k as u64 + 1, Side::Buy, Qty::new(2), tk, px);
            apply(&mut feed, add.as_bytes()).unwrap();
        }
        let on_ladder = |feed: &FeedBooks| -> Vec<bool> {
            feed.books
                .iter()
                .map(|b| b.bids.overflow.is_empty())
                .collect()
        };
        assert_eq!(
            on_ladder(&feed),
            [true, false, false],
            "only locate 1 has the ladder"
        );
        for locate in [1, 2, 3] {
            assert_eq!(
                feed.top(locate).0,
                Some((px, 2)),
                "locate {locate} stays exact"
            );
        }
        // Locate 1, emptied and renamed, gives the ladder up to the next
        // locate that names TK.
        apply(&mut feed, OrderDelete::new(h(1), 1).as_bytes()).unwrap();
        apply(&mut feed, StockDirectory::new(h(1), gh, 1).as_bytes()).unwrap();
        apply(&mut feed, StockDirectory::new(h(4), tk, 1).as_bytes()).unwrap();
        let add = AddOrder::new(h(4), 9, Side::Buy, Qty::new(1), tk, px);
        apply(&mut feed, add.as_bytes()).unwrap();
        assert_eq!(feed.symbol(1), Some(gh));
        assert_eq!(on_ladder(&feed), [true, false, false, true]);
        assert_eq!(feed.top(4).0, Some((px, 1)));
    }
}
