//! Order entry and continuous matching: admission checks, new orders,
//! cancel to size, replace with its priority rule, price-time matching with
//! FOK and self-trade prevention, and resting or cancelling what is left by
//! time in force.
//!
//! Phase changes, timers, the call auction and the breaker's halt are
//! `lifecycle.rs`'s; this module calls into it after a trade (the breaker)
//! and after a change to a book in its call (the indicative uncross).

use super::book::{self, Arena, Book, NIL};
use super::events::{CancelReason, Event, EventSink, Party, RejectReason};
use super::{cancel_rest, finish, Engine, Market, NewOrder};
use crate::accounts::Entry;
use crate::contract::StpMode;
use crate::types::{AccountId, Nanos, OrderId, Price, Qty, Side, Tif};

impl Engine {
    /// Enters a new order.
    pub fn enter(&mut self, now: Nanos, o: &NewOrder, sink: &mut impl EventSink) {
        self.advance(now, sink);
        let (slot, id) = match self.admit(o) {
            Ok(v) => v,
            Err(reason) => {
                return sink.event(&Event::Rejected {
                    account: o.account,
                    tag: o.tag,
                    reason,
                })
            }
        };
        let node = self.arena.get_mut(slot);
        node.tag = o.tag;
        node.time = now.0;
        node.account = o.account;
        node.price = o.price.raw();
        node.open = o.qty.lots();
        node.instrument = o.instrument;
        node.side = o.side;
        node.tif = o.tif;
        self.accounts
            .on_admit(o.account, o.instrument, o.side, o.price, o.qty.lots());
        sink.event(&Event::Accepted {
            account: o.account,
            tag: o.tag,
            order: id,
            instrument: o.instrument,
            side: o.side,
            price: o.price,
            qty: o.qty,
            tif: o.tif,
        });
        self.execute(now, slot, sink);
        self.after_call_change(usize::from(o.instrument.0), sink);
    }

    /// Checks a new order and takes an arena slot for it.
    #[inline]
    fn admit(&mut self, o: &NewOrder) -> Result<(u32, OrderId), RejectReason> {
        let market = self
            .markets
            .get(usize::from(o.instrument.0))
            .ok_or(RejectReason::UnknownInstrument)?;
        market.check(o.side, o.price, o.qty, o.tif)?;
        self.accounts.check(
            o.account,
            o.instrument,
            o.side,
            Self::highest_fill_price(market, o.side, o.price),
            o.qty.lots(),
            match o.tif {
                Tif::Day => Entry::Resting,
                Tif::Ioc | Tif::Fok => Entry::Immediate,
            },
        )?;
        self.arena.alloc().ok_or(RejectReason::CapacityExhausted)
    }

    /// The highest price an order at `price` can trade at now, which its
    /// margin is checked at: a buy trades at or below its limit, a sell at
    /// or above it, up to the best bid while it crosses. (In a call the
    /// uncross price is not known yet: the limit; its fills re-price the
    /// position, see `Accounts::on_fill`.)
    #[inline]
    fn highest_fill_price(market: &Market, side: Side, price: Price) -> Price {
        match side {
            Side::Sell if market.phase.matches() => market
                .book
                .best_price(Side::Buy)
                .map_or(price, |bid| bid.max(price)),
            _ => price,
        }
    }

    /// Cancels to size: the order's open size becomes `min(open, new_qty)`;
    /// 0 removes it. Priority is kept. A size at or above the open size
    /// changes nothing and reports nothing. `tag` is echoed in a reject.
    pub fn cancel(
        &mut self,
        now: Nanos,
        account: AccountId,
        order: OrderId,
        new_qty: Qty,
        tag: u64,
        sink: &mut impl EventSink,
    ) {
        self.advance(now, sink);
        let Some(slot) = self.owned_slot(account, order) else {
            return sink.event(&Event::Rejected {
                account,
                tag,
                reason: RejectReason::UnknownOrder,
            });
        };
        let node = *self.arena.get(slot);
        let market = &mut self.markets[usize::from(node.instrument.0)];
        if !market.phase.accepts_cancels() {
            return sink.event(&Event::Rejected {
                account,
                tag,
                reason: RejectReason::MarketNotOpen,
            });
        }
        if new_qty.lots() >= node.open {
            return;
        }
        let decrement = node.open - new_qty.lots();
        sink.event(&Event::Canceled {
            account,
            tag: node.tag,
            order,
            instrument: node.instrument,
            decrement: Qty::new(decrement),
            remaining: new_qty,
            reason: CancelReason::UserRequested,
        });
        if new_qty.is_zero() {
            market
                .book
                .ladder_mut(node.side)
                .unlink(&mut self.arena, slot);
            finish(&mut self.arena, &mut self.accounts, slot, node.open);
            sink.event(&Event::BookDelete {
                order,
                instrument: node.instrument,
            });
        } else {
            market
                .book
                .ladder_mut(node.side)
                .reduce(node.level, decrement);
            self.arena.get_mut(slot).open = new_qty.lots();
            self.accounts.on_resize(
                account,
                node.instrument,
                node.side,
                Price::from_raw(node.price),
                node.open,
                new_qty.lots(),
            );
            sink.event(&Event::BookReduce {
                order,
                instrument: node.instrument,
                qty: Qty::new(decrement),
            });
        }
        self.after_call_change(usize::from(node.instrument.0), sink);
    }

    /// Replaces a resting order: `qty` becomes its open size at `price`, and
    /// `new_tag` its tag. Priority (and the order id) is kept only if the
    /// price is unchanged and the size does not grow; otherwise the order
    /// gets a new id, goes to the back of its new level and may trade at
    /// once as an aggressor. Side and time in force are unchanged.
    #[allow(clippy::too_many_arguments)]
    pub fn replace(
        &mut self,
        now: Nanos,
        account: AccountId,
        order: OrderId,
        new_tag: u64,
        price: Price,
        qty: Qty,
        sink: &mut impl EventSink,
    ) {
        self.advance(now, sink);
        let checked = self
            .owned_slot(account, order)
            .ok_or(RejectReason::UnknownOrder)
            .and_then(|slot| {
                let n = self.arena.get(slot);
                let market = &self.markets[usize::from(n.instrument.0)];
                market.check(n.side, price, qty, n.tif)?;
                self.accounts.check(
                    account,
                    n.instrument,
                    n.side,
                    Self::highest_fill_price(market, n.side, price),
                    qty.lots(),
                    Entry::Replacing(n.open),
                )?;
                Ok(slot)
            });
        let slot = match checked {
            Ok(slot) => slot,
            Err(reason) => {
                return sink.event(&Event::Rejected {
                    account,
                    tag: new_tag,
                    reason,
                })
            }
        };
        let node = *self.arena.get(slot);
        let m = usize::from(node.instrument.0);
        let market = &mut self.markets[m];
        self.accounts.on_resize(
            account,
            node.instrument,
            node.side,
            price,
            node.open,
            qty.lots(),
        );
        if price.raw() == node.price && qty.lots() <= node.open {
            let decrement = node.open - qty.lots();
            let n = self.arena.get_mut(slot);
            n.tag = new_tag;
            n.open = qty.lots();
            sink.event(&Event::Replaced {
                account,
                tag: new_tag,
                old_order: order,
                order,
                instrument: node.instrument,
                side: node.side,
                price,
                qty,
            });
            if decrement > 0 {
                market
                    .book
                    .ladder_mut(node.side)
                    .reduce(node.level, decrement);
                sink.event(&Event::BookReduce {
                    order,
                    instrument: node.instrument,
                    qty: Qty::new(decrement),
                });
            }
            self.after_call_change(m, sink);
            return;
        }
        market
            .book
            .ladder_mut(node.side)
            .unlink(&mut self.arena, slot);
        let new_id = self.arena.renew(slot);
        let n = self.arena.get_mut(slot);
        n.tag = new_tag;
        n.price = price.raw();
        n.open = qty.lots();
        n.time = now.0;
        sink.event(&Event::Replaced {
            account,
            tag: new_tag,
            old_order: order,
            order: new_id,
            instrument: node.instrument,
            side: node.side,
            price,
            qty,
        });
        if market.phase.matches() && Self::crosses(&market.book, node.side, price.raw()) {
            sink.event(&Event::BookDelete {
                order,
                instrument: node.instrument,
            });
            self.execute(now, slot, sink);
        } else {
            let level = market.book.level_of(price.raw());
            market
                .book
                .ladder_mut(node.side)
                .push_back(&mut self.arena, level, slot);
            sink.event(&Event::BookReplace {
                old_order: order,
                order: new_id,
                instrument: node.instrument,
                side: node.side,
                price,
                qty,
            });
        }
        self.after_call_change(m, sink);
    }

    /// The slot of a live order owned by `account`.
    #[inline]
    fn owned_slot(&self, account: AccountId, order: OrderId) -> Option<u32> {
        let slot = self.arena.find(order)?;
        (self.arena.get(slot).account == account).then_some(slot)
    }

    #[inline]
    fn crosses(book: &Book, side: Side, price: u32) -> bool {
        match book.ladder(side.opposite()).best() {
            None => false,
            Some(l) => {
                let best = book.price_of(l);
                match side {
                    Side::Buy => best <= price,
                    Side::Sell => best >= price,
                }
            }
        }
    }

    /// Whether a FOK order can fill in full against other accounts' orders,
    /// walking the opposite side as matching would.
    fn fok_fillable(arena: &Arena, market: &Market, taker: &book::OrderNode) -> bool {
        let book = &market.book;
        let opp = book.ladder(taker.side.opposite());
        let mut need = u64::from(taker.open);
        for level in opp.levels_best_first() {
            if !Self::price_ok(taker.side, book.price_of(level), taker.price) {
                break;
            }
            let mut slot = opp.level(level).head;
            while slot != NIL {
                let maker = arena.get(slot);
                if maker.account == taker.account {
                    if market.stp != StpMode::CancelResting {
                        // Matching stops at the first own order.
                        return false;
                    }
                } else {
                    need = need.saturating_sub(u64::from(maker.open));
                    if need == 0 {
                        return true;
                    }
                }
                slot = maker.next;
            }
        }
        false
    }

    #[inline]
    fn price_ok(taker_side: Side, level_price: u32, limit: u32) -> bool {
        match taker_side {
            Side::Buy => level_price <= limit,
            Side::Sell => level_price >= limit,
        }
    }

    /// Runs the order in `slot` (not linked in any level) against the book,
    /// then rests or cancels what is left by its time in force; then moves
    /// the band and checks the circuit breaker if it traded.
    fn execute(&mut self, now: Nanos, slot: u32, sink: &mut impl EventSink) {
        let taker = *self.arena.get(slot);
        let taker_id = self.arena.id_of(slot);
        let market = &mut self.markets[usize::from(taker.instrument.0)];
        let instrument = taker.instrument;
        let opp_side = taker.side.opposite();
        let mut open = taker.open;
        let mut stp_cancel = false;
        let mut tripped = false;
        // The sweep's first fill: with its last, its lowest and highest.
        let mut first_fill = None;

        if market.phase.matches() {
            if taker.tif == Tif::Fok && !Self::fok_fillable(&self.arena, market, &taker) {
                cancel_rest(
                    &mut self.arena,
                    &mut self.accounts,
                    slot,
                    open,
                    CancelReason::FillOrKill,
                    sink,
                );
                return;
            }
            while open > 0 {
                let Some(level) = market.book.ladder(opp_side).best() else {
                    break;
                };
                let level_price = market.book.price_of(level);
                if !Self::price_ok(taker.side, level_price, taker.price) {
                    break;
                }
                let mslot = market.book.ladder(opp_side).level(level).head;
                let maker = *self.arena.get(mslot);
                let maker_id = self.arena.id_of(mslot);
                if maker.account == taker.account {
                    if market.stp != StpMode::CancelIncoming {
                        market
                            .book
                            .ladder_mut(opp_side)
                            .unlink(&mut self.arena, mslot);
                        cancel_rest(
                            &mut self.arena,
                            &mut self.accounts,
                            mslot,
                            maker.open,
                            CancelReason::SelfTrade,
                            sink,
                        );
                        sink.event(&Event::BookDelete {
                            order: maker_id,
                            instrument,
                        });
                    }
                    if market.stp != StpMode::CancelResting {
                        stp_cancel = true;
                        break;
                    }
                    continue;
                }
                let fill = open.min(maker.open);
                open -= fill;
                let maker_left = maker.open - fill;
                self.arena.get_mut(mslot).open = maker_left;
                market.book.ladder_mut(opp_side).reduce(level, fill);
                let fill_price = Price::from_raw(level_price);
                self.accounts
                    .on_fill(taker.account, instrument, taker.side, fill_price, fill);
                self.accounts
                    .on_fill(maker.account, instrument, maker.side, fill_price, fill);
                if market.breaker.enabled() {
                    market.breaker.record(now.0, level_price);
                }
                first_fill.get_or_insert(level_price);
                market.last = level_price;
                self.match_number += 1;
                sink.event(&Event::Executed {
                    match_number: self.match_number,
                    instrument,
                    price: Price::from_raw(level_price),
                    qty: Qty::new(fill),
                    taker: Party {
                        account: taker.account,
                        order: taker_id,
                        tag: taker.tag,
                        side: taker.side,
                        remaining: Qty::new(open),
                    },
                    maker: Party {
                        account: maker.account,
                        order: maker_id,
                        tag: maker.tag,
                        side: maker.side,
                        remaining: Qty::new(maker_left),
                    },
                    cross: false,
                });
                if maker_left == 0 {
                    market
                        .book
                        .ladder_mut(opp_side)
                        .unlink(&mut self.arena, mslot);
                    finish(&mut self.arena, &mut self.accounts, mslot, 0);
                }
            }
            if let Some(first) = first_fill {
                market.band.reanchor(market.last);
                // A sweep's fills are monotone: its first and last are its
                // extremes, and each may be the one too far from the
                // window's (a buy sweep's first from a higher trade).
                let (lowest, highest) = (first.min(market.last), first.max(market.last));
                tripped = market.breaker.tripped(now.0, lowest, highest);
            }
        }
        // The taker is done with first, tripped or not: a taker filled in
        // full leaves nothing behind, and what is left rests (DAY) or is
        // cancelled (IOC, FOK, self-trade) before any halt.
        if open == 0 {
            finish(&mut self.arena, &mut self.accounts, slot, 0);
        } else {
            self.rest_or_cancel(slot, open, stp_cancel, sink);
        }
        if tripped {
            self.trip(now, usize::from(instrument.0), sink);
        }
    }

    /// Rests (DAY) or cancels (IOC, FOK, self-trade) the `open` lots left
    /// of the order in `slot`, which is in no level.
    pub(super) fn rest_or_cancel(
        &mut self,
        slot: u32,
        open: u32,
        stp_cancel: bool,
        sink: &mut impl EventSink,
    ) {
        let taker = *self.arena.get(slot);
        let taker_id = self.arena.id_of(slot);
        let instrument = taker.instrument;
        let market = &mut self.markets[usize::from(instrument.0)];
        let reason = if stp_cancel {
            CancelReason::SelfTrade
        } else {
            match taker.tif {
                Tif::Day => {
                    self.arena.get_mut(slot).open = open;
                    let level = market.book.level_of(taker.price);
                    market
                        .book
                        .ladder_mut(taker.side)
                        .push_back(&mut self.arena, level, slot);
                    sink.event(&Event::BookAdd {
                        order: taker_id,
                        instrument,
                        side: taker.side,
                        price: Price::from_raw(taker.price),
                        qty: Qty::new(open),
                    });
                    return;
                }
                Tif::Ioc => CancelReason::ImmediateOrCancel,
                Tif::Fok => CancelReason::FillOrKill,
            }
        };
        cancel_rest(
            &mut self.arena,
            &mut self.accounts,
            slot,
            open,
            reason,
            sink,
        );
    }
}
