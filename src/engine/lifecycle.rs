//! The lifecycle of a contract's day: trading phases set by hand or
//! followed from the schedule, the timers that change them (schedule
//! changes, the end of a circuit-breaker halt and of its reopening call),
//! the call auction's published indicative uncross and the uncross itself,
//! closing out a contract's book, and the circuit breaker's trip.
//!
//! Order entry and continuous matching are `matching.rs`'s; this module
//! only runs when a phase changes, a timer is due, a call's book changes or
//! the breaker trips.

use super::events::{CancelReason, CrossKind, Event, EventSink, Party, Phase};
use super::{auction, book, cancel_rest, finish, BreakerStage, Engine, Market, NEVER};
use crate::types::{InstrumentId, Nanos, Price, Qty, Side};

impl Engine {
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
        self.transition(at, m, phase, sink);
    }

    fn rearm(&mut self) {
        self.next_due = self.markets.iter().map(Market::due).min().unwrap_or(NEVER);
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
            self.transition(now, m, phase, sink);
        }
        self.rearm();
    }

    /// Moves one market to `phase` and does what the change implies.
    fn transition(&mut self, now: Nanos, m: usize, phase: Phase, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        let from = market.phase;
        let instrument = market.book.instrument;
        // The kind of the next uncross is settled when continuous trading
        // ends: halted after a trade (by the operator or the breaker), it
        // reopens at the last trade; ended any other way (a call, a break,
        // the close), it opens at the reference. A halt or a break during
        // a call keeps the call's kind, whoever ends it; a close ends the
        // day's.
        if from == Phase::Open && phase != Phase::Open {
            market.cross_kind = if phase == Phase::Halt && market.last != 0 {
                CrossKind::Reopening
            } else {
                CrossKind::Opening
            };
        }
        if phase == Phase::Closed {
            market.cross_kind = CrossKind::Opening;
        }
        if phase == Phase::Halt {
            // A halt starts a fresh breaker window: the reopening's price
            // is measured from itself on, not from the trades before.
            market.breaker.clear();
        }
        // Into continuous trading the book must not be crossed. Orders rest
        // unmatched only while collecting (pre-open, a call), but a halt or
        // a break may come between the call and the open: uncross whenever
        // trading resumes (a book that does not cross has no uncross price,
        // and nothing happens).
        if phase == Phase::Open && from != Phase::Open {
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
                cancel_rest(
                    &mut self.arena,
                    &mut self.accounts,
                    slot,
                    node.open,
                    CancelReason::MarketClosed,
                    sink,
                );
                sink.event(&Event::BookDelete { order, instrument });
            }
        }
    }

    /// Publishes the indicative uncross of a market in its call auction if
    /// it changed.
    #[inline]
    pub(super) fn after_call_change(&mut self, m: usize, sink: &mut impl EventSink) {
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

    /// The circuit breaker tripped on a trade (the taker is done with
    /// already, as without a trip): the contract halts until `halt_s` has
    /// passed and reopens through a call auction.
    pub(super) fn trip(&mut self, now: Nanos, m: usize, sink: &mut impl EventSink) {
        let market = &mut self.markets[m];
        market.stage = BreakerStage::Halted;
        market.breaker_due = now.0.saturating_add(market.halt_ns);
        self.transition(now, m, Phase::Halt, sink);
        self.rearm();
    }
}
