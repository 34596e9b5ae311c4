//! The sans-IO matching core: per-instrument books, price-time matching,
//! and the events it emits.
//!
//! Owns the trading rules of DESIGN.md ("Matching rules"): validation and
//! reject reasons, DAY/IOC/FOK, cancel to size, replace with its priority
//! rule, self-trade prevention; and the lifecycle of a contract's day:
//! trading phases (set by hand or followed from the contract's schedule),
//! the call auction and its uncross, the dynamic price band and the circuit
//! breaker (halt, then a reopening call), and the calls into [`Accounts`]
//! that keep positions and refuse orders over an account's limits. Time is
//! passed in (every entry point takes `now`; timers such as the end of a
//! halt fire on the first call at or after their time, or on
//! [`Engine::advance`]), events go to a caller-supplied [`EventSink`]; no
//! I/O, no clock reads, and no heap allocation after set-up. Sessions,
//! tokens and wire formats are the gateway's business; the engine knows
//! accounts, order ids and opaque tags.

pub mod auction;
pub mod book;
pub mod events;
pub mod protection;
mod state;

use crate::accounts::Accounts;
use crate::contract::{ContractSet, StpMode};
use crate::schedule::Schedule;
use crate::types::{AccountId, InstrumentId, Nanos, OrderId, Price, Qty, Side, Tif};

use book::{Arena, Book, RestingOrder, NIL};
pub use events::{
    CancelReason, CrossKind, Event, EventBuffer, EventSink, Indicative, Party, Phase, RejectReason,
    Tee,
};
use protection::{Band, Breaker};
pub use state::{EngineState, EngineStateError};

const NS_PER_SEC: u64 = 1_000_000_000;
/// "No timer".
const NEVER: u64 = u64::MAX;

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

/// Where a contract is in a circuit-breaker halt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum BreakerStage {
    None,
    /// Halted until `breaker_due`, then a reopening call.
    Halted,
    /// In the reopening call until `breaker_due`, then the uncross.
    Call,
}

/// Per-instrument state: the book, the contract's rules and its lifecycle.
struct Market {
    book: Book,
    stp: StpMode,
    max_qty: u32,
    phase: Phase,
    /// Previous settlement price, raw: the opening call's tie-breaker.
    reference: u32,
    /// Last trade price, raw (0 before any trade).
    last: u32,
    band: Band,
    breaker: Breaker,
    halt_ns: u64,
    reopen_ns: u64,
    stage: BreakerStage,
    breaker_due: u64,
    schedule: Schedule,
    sched_due: u64,
    /// The auction the current call ends.
    cross_kind: CrossKind,
    /// The indicative uncross last published.
    published: Option<Indicative>,
}

impl Market {
    #[inline]
    fn due(&self) -> u64 {
        self.breaker_due.min(self.sched_due)
    }

    /// The reference of the current call: the previous settlement for the
    /// opening, the last trade for a reopening.
    fn call_reference(&self) -> u32 {
        match self.cross_kind {
            CrossKind::Reopening if self.last != 0 => self.last,
            _ => self.reference,
        }
    }

    /// The checks shared by new orders and replaces.
    #[inline]
    fn check(&self, side: Side, price: Price, qty: Qty, tif: Tif) -> Result<(), RejectReason> {
        self.check_static(price, qty)?;
        if !self.band.allows(side, price.raw()) {
            return Err(RejectReason::PriceOutsideBand);
        }
        if !self.phase.accepts_orders() {
            return Err(RejectReason::MarketNotOpen);
        }
        if !self.phase.accepts_tif(tif) {
            return Err(RejectReason::TifNotAllowedNow);
        }
        Ok(())
    }

    /// Size, tick and daily limits.
    #[inline]
    fn check_static(&self, price: Price, qty: Qty) -> Result<(), RejectReason> {
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
    accounts: Accounts,
    /// Earliest timer of any market.
    next_due: u64,
}

impl Engine {
    /// Allocates every book and the order arena up front. Every contract
    /// starts in continuous trading; see [`Engine::follow_schedules`] and
    /// [`Engine::set_phase`]. No account is registered (see
    /// [`Engine::accounts_mut`]).
    pub fn new(contracts: &ContractSet, cfg: EngineConfig) -> Engine {
        let markets = contracts
            .iter()
            .map(|c| {
                let band_pct = match c.protection {
                    crate::contract::Protection::DynamicBand => c.band_pct,
                    crate::contract::Protection::DailyLimit => 0,
                };
                Market {
                    book: Book::new(c.id, c.lower_limit, c.upper_limit, c.tick),
                    stp: c.stp,
                    max_qty: c.max_order_qty.lots(),
                    phase: Phase::Open,
                    reference: c.reference_price.raw(),
                    last: 0,
                    band: Band::new(band_pct, c.reference_price.raw()),
                    breaker: Breaker::new(
                        c.breaker_pct,
                        u64::from(c.breaker_window_s) * NS_PER_SEC,
                    ),
                    halt_ns: u64::from(c.halt_s) * NS_PER_SEC,
                    reopen_ns: u64::from(c.reopen_auction_s) * NS_PER_SEC,
                    stage: BreakerStage::None,
                    breaker_due: NEVER,
                    schedule: c.schedule.clone(),
                    sched_due: NEVER,
                    cross_kind: CrossKind::Opening,
                    published: None,
                }
            })
            .collect();
        Engine {
            markets,
            arena: Arena::with_capacity(cfg.max_orders),
            match_number: 0,
            accounts: Accounts::new(contracts),
            next_due: NEVER,
        }
    }

    /// Puts every contract that has a schedule into the phase its schedule
    /// gives for `now`, and from then on changes phase at the scheduled
    /// times (on the first call at or after each).
    pub fn follow_schedules(&mut self, now: Nanos, sink: &mut impl EventSink) {
        for m in 0..self.markets.len() {
            let market = &mut self.markets[m];
            let Some(phase) = market.schedule.phase_at(now) else {
                continue;
            };
            market.sched_due = market.schedule.next_after(now).map_or(NEVER, |(t, _)| t.0);
            market.stage = BreakerStage::None;
            market.breaker_due = NEVER;
            market.cross_kind = CrossKind::Opening;
            self.transition(now, m, phase, sink);
        }
        self.rearm();
    }

    /// Runs every timer due at or before `now` (schedule changes, the end
    /// of a circuit-breaker halt, the end of a reopening call). Every entry
    /// point does this first; call it when no order arrives for a while.
    #[inline]
    pub fn advance(&mut self, now: Nanos, sink: &mut impl EventSink) {
        if now.0 >= self.next_due {
            self.run_timers(now, sink);
        }
    }

    fn run_timers(&mut self, now: Nanos, sink: &mut impl EventSink) {
        for m in 0..self.markets.len() {
            loop {
                let market = &self.markets[m];
                let due = market.due();
                if due > now.0 {
                    break;
                }
                let at = Nanos(due);
                if market.breaker_due <= market.sched_due {
                    self.breaker_timer(at, m, sink);
                } else {
                    self.schedule_timer(at, m, sink);
                }
            }
        }
        self.rearm();
    }

    fn breaker_timer(&mut self, at: Nanos, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        match market.stage {
            BreakerStage::Halted => {
                market.stage = BreakerStage::Call;
                market.breaker_due = at.0 + market.reopen_ns;
                market.cross_kind = CrossKind::Reopening;
                self.transition(at, m, Phase::Auction, sink);
            }
            BreakerStage::Call => {
                market.stage = BreakerStage::None;
                market.breaker_due = NEVER;
                self.transition(at, m, Phase::Open, sink);
            }
            BreakerStage::None => market.breaker_due = NEVER,
        }
    }

    fn schedule_timer(&mut self, at: Nanos, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let phase = market.schedule.phase_at(at).unwrap_or(market.phase);
        market.sched_due = market.schedule.next_after(at).map_or(NEVER, |(t, _)| t.0);
        if market.stage != BreakerStage::None && phase == Phase::Open {
            // A breaker halt in progress reopens through its own call.
            return;
        }
        market.stage = BreakerStage::None;
        market.breaker_due = NEVER;
        market.cross_kind = CrossKind::Opening;
        self.transition(at, m, phase, sink);
    }

    fn rearm(&mut self) {
        self.next_due = self.markets.iter().map(Market::due).min().unwrap_or(NEVER);
    }

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
        self.accounts
            .check(o.account, o.instrument, o.side, o.price, o.qty.lots(), None)?;
        self.arena.alloc().ok_or(RejectReason::CapacityExhausted)
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
                    price,
                    qty.lots(),
                    Some(n.open),
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

    /// Changes the phase of one contract, or of all when `instrument` is
    /// `None` (an operator's action: it also ends any circuit-breaker halt
    /// in progress). Leaving pre-open or a call auction for continuous
    /// trading uncrosses the book first; closing cancels every resting
    /// (DAY) order of the contract.
    pub fn set_phase(
        &mut self,
        now: Nanos,
        instrument: Option<InstrumentId>,
        phase: Phase,
        sink: &mut impl EventSink,
    ) {
        self.advance(now, sink);
        let range = match instrument {
            Some(i) if usize::from(i.0) < self.markets.len() => {
                usize::from(i.0)..usize::from(i.0) + 1
            }
            Some(_) => return,
            None => 0..self.markets.len(),
        };
        for m in range {
            let market = &mut self.markets[m];
            market.stage = BreakerStage::None;
            market.breaker_due = NEVER;
            if phase == Phase::Auction && market.phase != Phase::Auction {
                market.cross_kind = CrossKind::Opening;
            }
            self.transition(now, m, phase, sink);
        }
        self.rearm();
    }

    /// Moves one market to `phase` and does what the change implies.
    fn transition(&mut self, now: Nanos, m: usize, phase: Phase, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let from = market.phase;
        let instrument = market.book.instrument;
        if from.collects() && phase == Phase::Open {
            self.uncross(now, m, sink);
        }
        let market = &mut self.markets[m];
        market.phase = phase;
        market.published = None;
        sink.event(&Event::PhaseChanged { instrument, phase });
        match phase {
            Phase::Auction => self.after_call_change(m, sink),
            Phase::Closed => self.close_out(m, sink),
            _ => {}
        }
    }

    /// Cancels every resting order of a market that just closed.
    fn close_out(&mut self, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let instrument = market.book.instrument;
        for side in [Side::Buy, Side::Sell] {
            while let Some(level) = market.book.ladder(side).best() {
                let slot = market.book.ladder(side).level(level).head;
                let node = *self.arena.get(slot);
                let order = self.arena.id_of(slot);
                market.book.ladder_mut(side).unlink(&mut self.arena, slot);
                finish(&mut self.arena, &mut self.accounts, slot, node.open);
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

    /// Publishes the indicative uncross of a market in its call auction if
    /// it changed.
    #[inline]
    fn after_call_change(&mut self, m: usize, sink: &mut impl EventSink) {
        if self.markets[m].phase == Phase::Auction {
            self.publish_indicative(m, sink);
        }
    }

    fn publish_indicative(&mut self, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let reference = market.call_reference();
        let now = auction::indicative(&market.book, reference);
        if market.published == Some(now) {
            return;
        }
        market.published = Some(now);
        sink.event(&Event::Imbalance {
            instrument: market.book.instrument,
            indicative: now,
            reference: Price::from_raw(reference),
            kind: market.cross_kind,
        });
    }

    /// Executes the call auction: the paired volume at the uncross price,
    /// bids and asks each in price-time priority, every fill at that one
    /// price; then the `Cross` print. Self-trade prevention does not apply
    /// inside the cross (there is no aggressor to cancel).
    fn uncross(&mut self, now: Nanos, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let ind = auction::indicative(&market.book, market.call_reference());
        let Some(price) = ind.price else {
            return;
        };
        let instrument = market.book.instrument;
        let mut left = ind.paired;
        while left > 0 {
            let (Some(bl), Some(al)) = (market.book.bids.best(), market.book.asks.best()) else {
                break;
            };
            let bslot = market.book.bids.level(bl).head;
            let aslot = market.book.asks.level(al).head;
            let (b, a) = (*self.arena.get(bslot), *self.arena.get(aslot));
            let fill = left.min(u64::from(b.open)).min(u64::from(a.open)) as u32;
            left -= u64::from(fill);
            self.match_number += 1;
            let mut party = |slot: u32, n: &book::OrderNode, ladder: Side| {
                let remaining = n.open - fill;
                self.arena.get_mut(slot).open = remaining;
                market.book.ladder_mut(ladder).reduce(n.level, fill);
                self.accounts
                    .on_fill(n.account, instrument, n.side, price, fill);
                Party {
                    account: n.account,
                    order: self.arena.id_of(slot),
                    tag: n.tag,
                    side: n.side,
                    remaining: Qty::new(remaining),
                }
            };
            let bp = party(bslot, &b, Side::Buy);
            let ap = party(aslot, &a, Side::Sell);
            let (taker, maker) = if b.time > a.time { (bp, ap) } else { (ap, bp) };
            sink.event(&Event::Executed {
                match_number: self.match_number,
                instrument,
                price,
                qty: Qty::new(fill),
                taker,
                maker,
                cross: true,
            });
            for (slot, p, side) in [(bslot, bp, Side::Buy), (aslot, ap, Side::Sell)] {
                if p.remaining.is_zero() {
                    market.book.ladder_mut(side).unlink(&mut self.arena, slot);
                    finish(&mut self.arena, &mut self.accounts, slot, 0);
                }
            }
        }
        if ind.paired > 0 {
            self.match_number += 1;
            sink.event(&Event::Cross {
                match_number: self.match_number,
                instrument,
                price,
                qty: ind.paired,
                kind: market.cross_kind,
            });
            market.last = price.raw();
            market.band.reanchor(price.raw());
            if market.breaker.enabled() {
                market.breaker.record(now.0, price.raw());
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
                finish(&mut self.arena, &mut self.accounts, slot, open);
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
                        finish(&mut self.arena, &mut self.accounts, mslot, maker.open);
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
                let fill_price = Price::from_raw(level_price);
                self.accounts
                    .on_fill(taker.account, instrument, taker.side, fill_price, fill);
                self.accounts
                    .on_fill(maker.account, instrument, maker.side, fill_price, fill);
                if market.breaker.enabled() {
                    market.breaker.record(now.0, level_price);
                }
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
            if open < taker.open {
                market.band.reanchor(market.last);
                if market.breaker.tripped(now.0) {
                    self.trip(now, usize::from(instrument.0), slot, open, sink);
                    return;
                }
            }
        }

        if open == 0 {
            finish(&mut self.arena, &mut self.accounts, slot, 0);
            return;
        }
        self.rest_or_cancel(slot, open, stp_cancel, sink);
    }

    /// Rests (DAY) or cancels (IOC, FOK, self-trade) the `open` lots left
    /// of the order in `slot`, which is in no level.
    fn rest_or_cancel(
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
        sink.event(&Event::Canceled {
            account: taker.account,
            tag: taker.tag,
            order: taker_id,
            instrument,
            decrement: Qty::new(open),
            remaining: Qty::ZERO,
            reason,
        });
        finish(&mut self.arena, &mut self.accounts, slot, open);
    }

    /// The circuit breaker tripped on the order in `slot` (with `open` lots
    /// left, not in the book): what is left of it is handled by its time in
    /// force as usual, then the contract halts until `halt_s` has passed
    /// and reopens through a call auction.
    fn trip(&mut self, now: Nanos, m: usize, slot: u32, open: u32, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        market.breaker.clear();
        market.stage = BreakerStage::Halted;
        market.breaker_due = now.0.saturating_add(market.halt_ns);
        // The taker's remainder rests (DAY) or is cancelled as without a trip.
        self.rest_or_cancel(slot, open, false, sink);
        self.transition(now, m, Phase::Halt, sink);
        self.rearm();
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
        if m.check_static(price, Qty::new(1)).is_err() {
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

    /// Positions and limits of every account.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Register accounts and set their limits here (at set-up).
    pub fn accounts_mut(&mut self) -> &mut Accounts {
        &mut self.accounts
    }

    /// The indicative uncross of a contract's book now (meaningful in
    /// pre-open and call auction).
    pub fn indicative(&self, instrument: InstrumentId) -> Option<Indicative> {
        let m = self.markets.get(usize::from(instrument.0))?;
        Some(auction::indicative(&m.book, m.call_reference()))
    }

    /// Last trade price, if the contract traded today.
    pub fn last_price(&self, instrument: InstrumentId) -> Option<Price> {
        let m = self.markets.get(usize::from(instrument.0))?;
        (m.last != 0).then_some(Price::from_raw(m.last))
    }

    /// The dynamic band now: (lowest sell, highest buy) accepted, for
    /// contracts that have one.
    pub fn band(&self, instrument: InstrumentId) -> Option<(Price, Price)> {
        let m = self.markets.get(usize::from(instrument.0))?;
        m.band
            .limits()
            .map(|(lo, hi)| (Price::from_raw(lo), Price::from_raw(hi)))
    }

    /// When the next timer (schedule change, end of a halt or of a
    /// reopening call) is due, if any.
    pub fn next_timer(&self) -> Option<Nanos> {
        (self.next_due != NEVER).then_some(Nanos(self.next_due))
    }
}

/// Frees an order's slot and tells its account it finished with
/// `remaining` lots unfilled.
#[inline]
fn finish(arena: &mut Arena, accounts: &mut Accounts, slot: u32, remaining: u32) {
    let n = arena.get(slot);
    accounts.on_done(n.account, n.instrument, n.side, remaining);
    arena.release(slot);
}

#[cfg(test)]
mod tests;
