//! What the engine says: the events it writes into a caller-supplied sink,
//! and the reasons it gives when it refuses or cancels.
//!
//! Two kinds of events share one enum:
//! - owner-facing outcomes (`Accepted`, `Rejected`, `Replaced`, `Canceled`,
//!   `Executed`), which the gateway turns into OUCH messages;
//! - book changes (`BookAdd`, `BookReduce`, `BookDelete`, `BookReplace`, and
//!   `Executed` for the maker), from which a market-data feed rebuilds every
//!   book order by order, exactly:
//!   * `BookAdd` — an order starts resting (new, or the rest of an aggressor);
//!   * `Executed` — the maker order's open size shrinks by `qty` (it leaves
//!     the book when `maker.remaining == 0`); the taker is never in the book;
//!   * `BookReduce` — a resting order shrinks by `qty` (cancel to size, or a
//!     replace that keeps priority), keeping its place;
//!   * `BookDelete` — a resting order leaves the book (cancel, self-trade
//!     prevention, or a replace that trades at once);
//!   * `BookReplace` — a resting order moves, without trading, to a new id,
//!     price and size at the back of its (new) level.
//!
//! A replace that crosses the book is `BookDelete(old)`, then the
//! executions, then `BookAdd(new)` for what rests.
//!
//! The call auction adds three things: `Imbalance` (the indicative uncross,
//! whenever it changes during the call), `Executed` with `cross == true` —
//! here *both* orders rest in the book and *both* shrink by `qty`, at the
//! single cross price — and one `Cross` print after the last cross fill.

use serde::{Deserialize, Serialize};

use crate::types::{AccountId, InstrumentId, OrderId, Price, Qty, Side, Tif};

/// Why a request had no effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RejectReason {
    /// No contract with that symbol or instrument id.
    UnknownInstrument,
    /// The price is not a multiple of the contract's tick.
    PriceOffTick,
    /// The price is outside the daily limits (or the dynamic band).
    PriceOutsideLimits,
    /// Size 0.
    InvalidQty,
    /// Size above the contract's `max_order_qty`.
    QtyAboveMax,
    /// The order token was already used in this session today.
    DuplicateToken,
    /// Cancel or replace of an order that does not exist, is finished, or
    /// belongs to another account (never revealed).
    UnknownOrder,
    /// The market is not in a phase that allows this action.
    MarketNotOpen,
    /// The order arena is full.
    CapacityExhausted,
    /// The session sent more than its rate limit allows.
    RateLimited,
    /// The account's credit limit would be exceeded by the initial margin
    /// of its worst-case position (or the account is not registered while
    /// registration is required).
    RiskLimit,
    /// A buy above the upper or a sell below the lower dynamic price band.
    PriceOutsideBand,
    /// The account's worst-case position would exceed the contract's
    /// position limit.
    PositionLimit,
    /// The account already has its maximum number of live orders.
    TooManyOrders,
    /// IOC or FOK outside continuous trading (pre-open and call auction
    /// take DAY orders only).
    TifNotAllowedNow,
}

impl RejectReason {
    pub const ALL: [RejectReason; 15] = [
        RejectReason::UnknownInstrument,
        RejectReason::PriceOffTick,
        RejectReason::PriceOutsideLimits,
        RejectReason::InvalidQty,
        RejectReason::QtyAboveMax,
        RejectReason::DuplicateToken,
        RejectReason::UnknownOrder,
        RejectReason::MarketNotOpen,
        RejectReason::CapacityExhausted,
        RejectReason::RateLimited,
        RejectReason::RiskLimit,
        RejectReason::PriceOutsideBand,
        RejectReason::PositionLimit,
        RejectReason::TooManyOrders,
        RejectReason::TifNotAllowedNow,
    ];

    /// A stable one-word name (the `reason` column of `rejects.csv`).
    pub const fn name(self) -> &'static str {
        match self {
            RejectReason::UnknownInstrument => "unknown-symbol",
            RejectReason::PriceOffTick => "price-off-tick",
            RejectReason::PriceOutsideLimits => "price-outside-limits",
            RejectReason::InvalidQty => "invalid-qty",
            RejectReason::QtyAboveMax => "qty-above-max",
            RejectReason::DuplicateToken => "duplicate-token",
            RejectReason::UnknownOrder => "unknown-order",
            RejectReason::MarketNotOpen => "market-not-open",
            RejectReason::CapacityExhausted => "capacity-exhausted",
            RejectReason::RateLimited => "rate-limited",
            RejectReason::RiskLimit => "risk-limit",
            RejectReason::PriceOutsideBand => "price-outside-band",
            RejectReason::PositionLimit => "position-limit",
            RejectReason::TooManyOrders => "too-many-orders",
            RejectReason::TifNotAllowedNow => "tif-not-allowed-now",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why (part of) an order left without trading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// The owner asked (cancel to size or cancel all).
    UserRequested,
    /// The rest of an IOC order.
    ImmediateOrCancel,
    /// A FOK order that could not be filled in full.
    FillOrKill,
    /// Self-trade prevention.
    SelfTrade,
    /// The market closed with the order resting.
    MarketClosed,
}

/// One side of an execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Party {
    pub account: AccountId,
    pub order: OrderId,
    pub tag: u64,
    pub side: Side,
    /// Open size left after this fill.
    pub remaining: Qty,
}

/// The trading phase of a contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Orders accepted and cancelled; nothing matches.
    PreOpen,
    /// Call auction (opening, or reopening after a halt): DAY orders
    /// accepted and cancelled, nothing matches, the indicative uncross is
    /// published; moving to `Open` uncrosses the book at one price.
    Auction,
    /// Continuous trading.
    Open,
    /// A scheduled break (e.g. 10:15-10:30): cancels only.
    Break,
    /// Trading halted (by the operator or a circuit breaker): cancels only.
    Halt,
    /// Closed: nothing accepted.
    Closed,
}

impl Phase {
    /// The phase name used in order-flow files (`preopen`, `auction`, ...).
    pub fn parse(s: &str) -> Option<Phase> {
        match s {
            "preopen" => Some(Phase::PreOpen),
            "auction" => Some(Phase::Auction),
            "open" => Some(Phase::Open),
            "break" => Some(Phase::Break),
            "halt" => Some(Phase::Halt),
            "close" | "closed" => Some(Phase::Closed),
            _ => None,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Phase::PreOpen => "preopen",
            Phase::Auction => "auction",
            Phase::Open => "open",
            Phase::Break => "break",
            Phase::Halt => "halt",
            Phase::Closed => "close",
        }
    }

    /// Whether new orders and replaces are accepted.
    pub const fn accepts_orders(self) -> bool {
        matches!(self, Phase::PreOpen | Phase::Auction | Phase::Open)
    }

    /// Whether cancels are accepted.
    pub const fn accepts_cancels(self) -> bool {
        !matches!(self, Phase::Closed)
    }

    /// Whether incoming orders match.
    pub const fn matches(self) -> bool {
        matches!(self, Phase::Open)
    }

    /// Whether an order with this time in force is accepted: IOC and FOK
    /// only in continuous trading.
    pub const fn accepts_tif(self, tif: Tif) -> bool {
        matches!(tif, Tif::Day) || self.matches()
    }
}

/// The indicative uncross of a call auction: the single price at which the
/// most volume would trade now, and what would be left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Indicative {
    /// The cross price; `None` when bids and asks do not cross.
    pub price: Option<Price>,
    /// Lots that would trade (on each side).
    pub paired: u64,
    /// Lots left over at the cross price on the heavier side.
    pub imbalance: u64,
    /// The heavier side, `None` when balanced.
    pub imbalance_side: Option<Side>,
}

/// Which auction a cross ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CrossKind {
    /// The opening call.
    Opening,
    /// The call that reopens a contract after a (circuit-breaker) halt.
    Reopening,
}

/// Everything the engine reports. See the module docs for the book contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A new order passed every check; `qty` is its full size.
    Accepted {
        account: AccountId,
        tag: u64,
        order: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
        tif: Tif,
    },
    /// A request had no effect.
    Rejected {
        account: AccountId,
        tag: u64,
        reason: RejectReason,
    },
    /// A replace took effect; `order == old_order` when priority was kept.
    /// `qty` is the new open size before any matching.
    Replaced {
        account: AccountId,
        tag: u64,
        old_order: OrderId,
        order: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// Part or all of an order was cancelled; `remaining` is its open size after.
    Canceled {
        account: AccountId,
        tag: u64,
        order: OrderId,
        instrument: InstrumentId,
        decrement: Qty,
        remaining: Qty,
        reason: CancelReason,
    },
    /// One fill at the maker's price, or in a call auction (`cross`) at the
    /// cross price: then both orders were resting, `taker` is the one that
    /// arrived later, and both shrink by `qty`.
    Executed {
        match_number: u64,
        instrument: InstrumentId,
        price: Price,
        qty: Qty,
        taker: Party,
        maker: Party,
        cross: bool,
    },
    /// Market data: the indicative uncross of a contract in its call
    /// auction changed (published at the start of the call and after every
    /// change of it).
    Imbalance {
        instrument: InstrumentId,
        indicative: Indicative,
        /// The reference the cross price is closest to on ties.
        reference: Price,
        kind: CrossKind,
    },
    /// Market data: the auction print, after its fills: `qty` lots changed
    /// hands at `price` (omitted when nothing crossed).
    Cross {
        match_number: u64,
        instrument: InstrumentId,
        price: Price,
        qty: u64,
        kind: CrossKind,
    },
    /// Market data: an order starts resting.
    BookAdd {
        order: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// Market data: a resting order shrinks by `qty`, keeping its place.
    BookReduce {
        order: OrderId,
        instrument: InstrumentId,
        qty: Qty,
    },
    /// Market data: a resting order leaves the book.
    BookDelete {
        order: OrderId,
        instrument: InstrumentId,
    },
    /// Market data: a resting order moves to a new id, price and size.
    BookReplace {
        old_order: OrderId,
        order: OrderId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: Qty,
    },
    /// A contract changed phase.
    PhaseChanged {
        instrument: InstrumentId,
        phase: Phase,
    },
}

/// Where the engine writes its events. Implementations on the hot path must
/// not allocate.
pub trait EventSink {
    fn event(&mut self, e: &Event);
}

/// Collects events (tests, tools, and the gateway's per-request buffer,
/// made with the capacity of the largest ordinary batch so the order path
/// does not allocate). Allocates as it grows: a batch beyond the capacity
/// (a close-out or an uncross of more orders, a sweep through as many)
/// costs an allocation rather than a lost acknowledgement or market-data
/// message.
impl EventSink for Vec<Event> {
    #[inline]
    fn event(&mut self, e: &Event) {
        self.push(*e);
    }
}

/// Discards events (benchmarks of the engine alone).
impl EventSink for () {
    #[inline]
    fn event(&mut self, _e: &Event) {}
}

/// Sends every event to two sinks, in order.
pub struct Tee<'a, A: EventSink, B: EventSink>(pub &'a mut A, pub &'a mut B);

impl<A: EventSink, B: EventSink> EventSink for Tee<'_, A, B> {
    #[inline]
    fn event(&mut self, e: &Event) {
        self.0.event(e);
        self.1.event(e);
    }
}
