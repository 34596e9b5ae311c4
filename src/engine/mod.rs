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
//!
//! This file holds the engine's types and its set-up; the `Engine` methods
//! live by job in `matching.rs` (order entry and continuous matching),
//! `lifecycle.rs` (phases, timers, the call auction, the breaker's trip)
//! and `queries.rs` (read access).

pub mod auction;
pub mod book;
pub mod events;
mod lifecycle;
mod matching;
pub mod protection;
mod queries;
mod state;

use crate::accounts::Accounts;
use crate::contract::{ContractSet, StpMode};
use crate::schedule::Schedule;
use crate::types::{AccountId, InstrumentId, Price, Qty, Side, Tif};

use book::{Arena, Book};
pub use events::{
    CancelReason, CrossKind, Event, EventSink, Indicative, Party, Phase, RejectReason, Tee,
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
}

/// Frees an order's slot and tells its account it finished with
/// `remaining` lots unfilled.
#[inline]
fn finish(arena: &mut Arena, accounts: &mut Accounts, slot: u32, remaining: u32) {
    let n = arena.get(slot);
    accounts.on_done(n.account, n.instrument, n.side, remaining);
    arena.release(slot);
}

/// Cancels the `open` lots left of the order in `slot` (in no level, or
/// already unlinked from it): reports the Canceled, then frees the slot.
#[inline]
fn cancel_rest(
    arena: &mut Arena,
    accounts: &mut Accounts,
    slot: u32,
    open: u32,
    reason: CancelReason,
    sink: &mut impl EventSink,
) {
    let n = arena.get(slot);
    sink.event(&Event::Canceled {
        account: n.account,
        tag: n.tag,
        order: arena.id_of(slot),
        instrument: n.instrument,
        decrement: Qty::new(open),
        remaining: Qty::ZERO,
        reason,
    });
    finish(arena, accounts, slot, open);
}

#[cfg(test)]
mod tests;
