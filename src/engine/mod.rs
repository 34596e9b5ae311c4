//! The sans-IO matching core: per-instrument books, price-time matching,
//! and the events it emits.
//!
//! Owns the trading rules of DESIGN.md ("Matching rules"): validation and
//! reject reasons, DAY/IOC/FOK, cancel to size, replace with its priority
//! rule, self-trade prevention, and trading phases. Time is passed in, events
//! go to a caller-supplied [`EventSink`]; no I/O, no clock reads, and no heap
//! allocation after [`Engine::new`]. Sessions, tokens and wire formats are the
//! gateway's business; the engine knows accounts, order ids and opaque tags.

pub mod book;
pub mod events;

use crate::contract::{ContractSet, StpMode};
use crate::types::{AccountId, InstrumentId, Nanos, OrderId, Price, Qty, Side, Tif};

use book::{Arena, Book, RestingOrder, NIL};
pub use events::{CancelReason, Event, EventBuffer, EventSink, Party, Phase, RejectReason, Tee};

/// Sizes fixed at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineConfig {
    /// Live orders (resting or being matched) the arena holds.
    pub max_orders: u32,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_orders: 1 << 20,
        }
    }
}

/// A new order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewOrder {
    pub account: AccountId,
    /// Opaque caller value, echoed in every event about this order.
    pub tag: u64,
    pub instrument: InstrumentId,
    pub side: Side,
    pub price: Price,
    pub qty: Qty,
    pub tif: Tif,
}

/// Per-instrument state: the book and the contract's rules.
struct Market {
    book: Book,
    stp: StpMode,
    max_qty: u32,
    phase: Phase,
}

impl Market {
    /// The checks shared by new orders and replaces.
    fn check(&self, price: Price, qty: Qty) -> Result<(), RejectReason> {
        if qty.is_zero() {
            return Err(RejectReason::InvalidQty);
        }
        if qty.lots() > self.max_qty {
            return Err(RejectReason::QtyAboveMax);
        }
        if !price.raw().is_multiple_of(self.book.tick) {
            return Err(RejectReason::PriceOffTick);
        }
        if price.raw() < self.book.lower || price.raw() > self.book.upper {
            return Err(RejectReason::PriceOutsideLimits);
        }
        Ok(())
    }
}

/// The matching engine for every contract of a trading day.
pub struct Engine {
    markets: Vec<Market>,
    arena: Arena,
    match_number: u64,
}

impl Engine {
    /// Allocates every book and the order arena up front.
    pub fn new(contracts: &ContractSet, cfg: EngineConfig) -> Engine {
        let markets = contracts
            .iter()
            .map(|c| Market {
                book: Book::new(c.id, c.lower_limit, c.upper_limit, c.tick),
                stp: c.stp,
                max_qty: c.max_order_qty.lots(),
                phase: Phase::Open,
            })
            .collect();
        Engine {
            markets,
            arena: Arena::with_capacity(cfg.max_orders),
            match_number: 0,
        }
    }

    /// Enters a new order.
    pub fn enter(&mut self, now: Nanos, o: &NewOrder, sink: &mut impl EventSink) {
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
        self.execute(slot, sink);
    }

    /// Checks a new order and takes an arena slot for it.
    fn admit(&mut self, o: &NewOrder) -> Result<(u32, OrderId), RejectReason> {
        let market = self
            .markets
            .get(usize::from(o.instrument.0))
            .ok_or(RejectReason::UnknownInstrument)?;
        market.check(o.price, o.qty)?;
        if !market.phase.accepts_orders() {
            return Err(RejectReason::MarketNotOpen);
        }
        self.arena.alloc().ok_or(RejectReason::CapacityExhausted)
    }

    /// Cancels to size: the order's open size becomes `min(open, new_qty)`;
    /// 0 removes it. Priority is kept. A size at or above the open size
    /// changes nothing and reports nothing. `tag` is echoed in a reject.
    pub fn cancel(
        &mut self,
        _now: Nanos,
        account: AccountId,
        order: OrderId,
        new_qty: Qty,
        tag: u64,
        sink: &mut impl EventSink,
    ) {
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
            self.arena.release(slot);
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
            sink.event(&Event::BookReduce {
                order,
                instrument: node.instrument,
                qty: Qty::new(decrement),
            });
        }
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
        let checked = self
            .owned_slot(account, order)
            .ok_or(RejectReason::UnknownOrder)
            .and_then(|slot| {
                let market = &self.markets[usize::from(self.arena.get(slot).instrument.0)];
                if !market.phase.accepts_orders() {
                    return Err(RejectReason::MarketNotOpen);
                }
                market.check(price, qty).map(|()| slot)
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
        let market = &mut self.markets[usize::from(node.instrument.0)];
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
            self.execute(slot, sink);
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
    }

    /// Changes the phase of one contract, or of all when `instrument` is
    /// `None`. Closing cancels every resting (DAY) order of the contract.
    pub fn set_phase(
        &mut self,
        _now: Nanos,
        instrument: Option<InstrumentId>,
        phase: Phase,
        sink: &mut impl EventSink,
    ) {
        let range = match instrument {
            Some(i) if usize::from(i.0) < self.markets.len() => {
                usize::from(i.0)..usize::from(i.0) + 1
            }
            Some(_) => return,
            None => 0..self.markets.len(),
        };
        for m in range {
            let market = &mut self.markets[m];
            market.phase = phase;
            let instrument = market.book.instrument;
            sink.event(&Event::PhaseChanged { instrument, phase });
            if phase == Phase::Closed {
                for side in [Side::Buy, Side::Sell] {
                    while let Some(level) = market.book.ladder(side).best() {
                        let slot = market.book.ladder(side).level(level).head;
                        let node = *self.arena.get(slot);
                        let order = self.arena.id_of(slot);
                        market.book.ladder_mut(side).unlink(&mut self.arena, slot);
                        self.arena.release(slot);
                        sink.event(&Event::Canceled {
                            account: node.account,
                            tag: node.tag,
                            order,
                            instrument,
                            decrement: Qty::new(node.open),
                            remaining: Qty::ZERO,
                            reason: CancelReason::MarketClosed,
                        });
                        sink.event(&Event::BookDelete { order, instrument });
                    }
                }
            }
        }
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
    /// then rests or cancels what is left by its time in force.
    fn execute(&mut self, slot: u32, sink: &mut impl EventSink) {
        let taker = *self.arena.get(slot);
        let taker_id = self.arena.id_of(slot);
        let market = &mut self.markets[usize::from(taker.instrument.0)];
        let instrument = taker.instrument;
        let opp_side = taker.side.opposite();
        let mut open = taker.open;
        let mut stp_cancel = false;

        if market.phase.matches() {
            if taker.tif == Tif::Fok && !Self::fok_fillable(&self.arena, market, &taker) {
                sink.event(&Event::Canceled {
                    account: taker.account,
                    tag: taker.tag,
                    order: taker_id,
                    instrument,
                    decrement: Qty::new(open),
                    remaining: Qty::ZERO,
                    reason: CancelReason::FillOrKill,
                });
                self.arena.release(slot);
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
                        self.arena.release(mslot);
                        sink.event(&Event::Canceled {
                            account: maker.account,
                            tag: maker.tag,
                            order: maker_id,
                            instrument,
                            decrement: Qty::new(maker.open),
                            remaining: Qty::ZERO,
                            reason: CancelReason::SelfTrade,
                        });
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
                });
                if maker_left == 0 {
                    market
                        .book
                        .ladder_mut(opp_side)
                        .unlink(&mut self.arena, mslot);
                    self.arena.release(mslot);
                }
            }
        }

        if open == 0 {
            self.arena.release(slot);
            return;
        }
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
        sink.event(&Event::Canceled {
            account: taker.account,
            tag: taker.tag,
            order: taker_id,
            instrument,
            decrement: Qty::new(open),
            remaining: Qty::ZERO,
            reason,
        });
        self.arena.release(slot);
    }

    // ---- read access -------------------------------------------------

    /// Number of contracts.
    pub fn instruments(&self) -> usize {
        self.markets.len()
    }

    pub fn phase(&self, instrument: InstrumentId) -> Option<Phase> {
        self.markets.get(usize::from(instrument.0)).map(|m| m.phase)
    }

    /// Best bid and best ask.
    pub fn best(&self, instrument: InstrumentId) -> (Option<Price>, Option<Price>) {
        self.markets
            .get(usize::from(instrument.0))
            .map_or((None, None), |m| {
                (m.book.best_price(Side::Buy), m.book.best_price(Side::Sell))
            })
    }

    /// Resting orders of one side, best price first, time priority within a level.
    pub fn resting(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = RestingOrder> + '_ {
        let market = self.markets.get(usize::from(instrument.0));
        let levels = market
            .into_iter()
            .flat_map(move |m| m.book.ladder(side).levels_best_first());
        levels.flat_map(move |level| {
            let ladder = market.map(|m| m.book.ladder(side));
            let mut slot = ladder.map_or(NIL, |l| l.level(level).head);
            std::iter::from_fn(move || {
                if slot == NIL {
                    return None;
                }
                let s = slot;
                slot = self.arena.get(s).next;
                Some(self.resting_order(s))
            })
        })
    }

    fn resting_order(&self, slot: u32) -> RestingOrder {
        let n = self.arena.get(slot);
        RestingOrder {
            order: self.arena.id_of(slot),
            instrument: n.instrument,
            account: n.account,
            tag: n.tag,
            side: n.side,
            price: Price::from_raw(n.price),
            qty: Qty::new(n.open),
        }
    }

    /// A live order by id.
    pub fn order(&self, id: OrderId) -> Option<RestingOrder> {
        self.arena.find(id).map(|s| self.resting_order(s))
    }

    /// Total open size at a price level.
    pub fn level_qty(&self, instrument: InstrumentId, side: Side, price: Price) -> u64 {
        let Some(m) = self.markets.get(usize::from(instrument.0)) else {
            return 0;
        };
        if m.check(price, Qty::new(1)).is_err() {
            return 0;
        }
        m.book.ladder(side).level(m.book.level_of(price.raw())).qty
    }

    /// Live orders in the arena.
    pub fn live_orders(&self) -> usize {
        self.arena.live()
    }

    /// The last match number given out.
    pub fn match_number(&self) -> u64 {
        self.match_number
    }
}

#[cfg(test)]
mod tests;
