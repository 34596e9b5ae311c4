//! One test per matching rule of DESIGN.md, named after the rule.

use super::*;
use crate::contract::ContractSet;
use crate::types::{Nanos, OrderId};
use std::path::Path;

const A: AccountId = AccountId(1);
const B: AccountId = AccountId(2);
const C: AccountId = AccountId(3);
const TK: InstrumentId = InstrumentId(0);

/// The contracts of a contract file's text.
fn contract_set(toml: &str) -> ContractSet {
    let mut set = ContractSet::default();
    set.add_toml(Path::new("test.toml"), toml).unwrap();
    set
}

/// A plain GH2612 contract table.
const GH2612: &str = r#"
[[contract]]
symbol = "GH2612"
reference_price = "2.150"
tick = "0.001"
limit_pct = 20
max_order_qty = 500
"#;

/// TK2612 with self-trade prevention `stp`, and a plain GH2612.
fn contracts(stp: &str) -> ContractSet {
    contract_set(&format!(
        r#"
[[contract]]
symbol = "TK2612"
reference_price = "6.500"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
stp = "{stp}"
{GH2612}"#
    ))
}

struct T {
    e: Engine,
    ev: Vec<Event>,
    tag: u64,
}

fn px(s: &str) -> Price {
    s.parse().unwrap()
}

impl T {
    fn new() -> T {
        T::with_stp("cancel-resting")
    }

    fn with_stp(stp: &str) -> T {
        T::with_contracts(&contracts(stp))
    }

    /// Orders go to the first contract of `set`.
    fn with_contracts(set: &ContractSet) -> T {
        T {
            e: Engine::new(set, EngineConfig { max_orders: 64 }),
            ev: Vec::new(),
            tag: 0,
        }
    }

    /// Enters an order and returns its id (if accepted) and its events.
    fn order(
        &mut self,
        acct: AccountId,
        side: Side,
        qty: u32,
        price: &str,
        tif: Tif,
    ) -> Option<OrderId> {
        self.tag += 1;
        self.ev.clear();
        self.e.enter(
            Nanos(self.tag),
            &NewOrder {
                account: acct,
                tag: self.tag,
                instrument: TK,
                side,
                price: px(price),
                qty: Qty::new(qty),
                tif,
            },
            &mut self.ev,
        );
        self.ev.iter().find_map(|e| match e {
            Event::Accepted { order, .. } => Some(*order),
            _ => None,
        })
    }

    fn day(&mut self, acct: AccountId, side: Side, qty: u32, price: &str) -> OrderId {
        self.order(acct, side, qty, price, Tif::Day).unwrap()
    }

    fn fills(&self) -> Vec<(u32, u32, AccountId, AccountId)> {
        self.ev
            .iter()
            .filter_map(|e| match e {
                Event::Executed {
                    price,
                    qty,
                    taker,
                    maker,
                    ..
                } => Some((price.raw(), qty.lots(), taker.account, maker.account)),
                _ => None,
            })
            .collect()
    }

    fn reject(&self) -> Option<RejectReason> {
        self.ev.iter().find_map(|e| match e {
            Event::Rejected { reason, .. } => Some(*reason),
            _ => None,
        })
    }

    fn book(&self, side: Side) -> Vec<(u32, u32, AccountId)> {
        self.e
            .resting(TK, side)
            .map(|o| (o.price.raw(), o.qty.lots(), o.account))
            .collect()
    }
}

#[test]
fn incoming_order_trades_at_the_resting_price() {
    let mut t = T::new();
    t.day(A, Side::Sell, 5, "6.500");
    t.order(B, Side::Buy, 5, "6.600", Tif::Day);
    assert_eq!(t.fills(), vec![(65_000, 5, B, A)]);
    assert!(t.book(Side::Buy).is_empty() && t.book(Side::Sell).is_empty());
}

#[test]
fn better_price_trades_first_then_earlier_order_at_the_same_price() {
    let mut t = T::new();
    t.day(A, Side::Sell, 1, "6.510");
    t.day(C, Side::Sell, 1, "6.500");
    t.day(A, Side::Sell, 1, "6.500");
    t.order(B, Side::Buy, 3, "6.510", Tif::Day);
    assert_eq!(
        t.fills(),
        vec![(65_000, 1, B, C), (65_000, 1, B, A), (65_100, 1, B, A)]
    );
}

#[test]
fn aggressor_sweeps_levels_while_it_crosses_then_rests_the_rest() {
    let mut t = T::new();
    t.day(A, Side::Sell, 2, "6.500");
    t.day(A, Side::Sell, 2, "6.501");
    t.day(A, Side::Sell, 2, "6.503");
    t.order(B, Side::Buy, 10, "6.502", Tif::Day);
    assert_eq!(t.fills(), vec![(65_000, 2, B, A), (65_010, 2, B, A)]);
    assert_eq!(t.book(Side::Buy), vec![(65_020, 6, B)]);
    assert_eq!(t.book(Side::Sell), vec![(65_030, 2, A)]);
    assert!(matches!(t.ev.last(), Some(Event::BookAdd { qty, .. }) if qty.lots() == 6));
}

#[test]
fn match_numbers_increase_by_one_per_fill() {
    let mut t = T::new();
    t.day(A, Side::Sell, 1, "6.500");
    t.day(A, Side::Sell, 1, "6.500");
    t.order(B, Side::Buy, 2, "6.500", Tif::Ioc);
    let numbers: Vec<u64> =
        t.ev.iter()
            .filter_map(|e| match e {
                Event::Executed { match_number, .. } => Some(*match_number),
                _ => None,
            })
            .collect();
    assert_eq!(numbers, vec![1, 2]);
}

#[test]
fn ioc_cancels_the_unfilled_rest() {
    let mut t = T::new();
    t.day(A, Side::Sell, 3, "6.500");
    t.order(B, Side::Buy, 5, "6.500", Tif::Ioc);
    assert_eq!(t.fills(), vec![(65_000, 3, B, A)]);
    assert!(t.ev.iter().any(|e| matches!(e,
        Event::Canceled { decrement, reason: CancelReason::ImmediateOrCancel, .. } if decrement.lots() == 2)));
    assert!(t.book(Side::Buy).is_empty());
    assert!(!t.ev.iter().any(|e| matches!(e, Event::BookAdd { .. })));
}

#[test]
fn fok_that_cannot_fill_in_full_has_no_effect() {
    let mut t = T::new();
    t.day(A, Side::Sell, 3, "6.500");
    t.order(B, Side::Buy, 5, "6.500", Tif::Fok);
    assert!(t.fills().is_empty());
    assert!(t.ev.iter().any(|e| matches!(e,
        Event::Canceled { reason: CancelReason::FillOrKill, decrement, .. } if decrement.lots() == 5)));
    assert_eq!(t.book(Side::Sell), vec![(65_000, 3, A)]);
}

#[test]
fn fok_fills_in_full_across_levels() {
    let mut t = T::new();
    t.day(A, Side::Sell, 3, "6.500");
    t.day(C, Side::Sell, 3, "6.501");
    t.order(B, Side::Buy, 5, "6.501", Tif::Fok);
    assert_eq!(t.fills(), vec![(65_000, 3, B, A), (65_010, 2, B, C)]);
}

#[test]
fn fok_does_not_count_the_accounts_own_orders() {
    let mut t = T::new();
    t.day(B, Side::Sell, 5, "6.500");
    t.day(A, Side::Sell, 3, "6.500");
    t.order(B, Side::Buy, 5, "6.500", Tif::Fok);
    assert!(t.fills().is_empty());
    // No effect at all: B's own resting order is still there.
    assert_eq!(t.book(Side::Sell), vec![(65_000, 5, B), (65_000, 3, A)]);
}

#[test]
fn cancel_to_size_keeps_priority() {
    let mut t = T::new();
    let first = t.day(A, Side::Sell, 5, "6.500");
    t.day(C, Side::Sell, 5, "6.500");
    t.ev.clear();
    t.e.cancel(Nanos(9), A, first, Qty::new(2), 0, &mut t.ev);
    assert!(
        matches!(t.ev[0], Event::Canceled { decrement, remaining, .. } if decrement.lots() == 3 && remaining.lots() == 2)
    );
    assert!(matches!(t.ev[1], Event::BookReduce { qty, .. } if qty.lots() == 3));
    t.order(B, Side::Buy, 2, "6.500", Tif::Ioc);
    assert_eq!(t.fills(), vec![(65_000, 2, B, A)]);
}

#[test]
fn cancel_to_zero_removes_the_order() {
    let mut t = T::new();
    let id = t.day(A, Side::Buy, 5, "6.400");
    t.ev.clear();
    t.e.cancel(Nanos(9), A, id, Qty::ZERO, 0, &mut t.ev);
    assert!(matches!(t.ev[1], Event::BookDelete { order, .. } if order == id));
    assert!(t.book(Side::Buy).is_empty());
    assert_eq!(t.e.live_orders(), 0);
    assert_eq!(t.e.best(TK), (None, None));
}

#[test]
fn cancel_to_a_size_at_or_above_open_changes_nothing() {
    let mut t = T::new();
    let id = t.day(A, Side::Buy, 5, "6.400");
    t.ev.clear();
    t.e.cancel(Nanos(9), A, id, Qty::new(7), 0, &mut t.ev);
    assert!(t.ev.is_empty());
    assert_eq!(t.book(Side::Buy), vec![(64_000, 5, A)]);
}

#[test]
fn a_client_cannot_cancel_another_accounts_order() {
    let mut t = T::new();
    let id = t.day(A, Side::Buy, 5, "6.400");
    t.ev.clear();
    t.e.cancel(Nanos(9), B, id, Qty::ZERO, 77, &mut t.ev);
    assert_eq!(
        t.ev,
        vec![Event::Rejected {
            account: B,
            tag: 77,
            reason: RejectReason::UnknownOrder
        }]
    );
    assert_eq!(t.book(Side::Buy), vec![(64_000, 5, A)]);
}

#[test]
fn cancel_of_a_finished_order_is_rejected() {
    let mut t = T::new();
    let id = t.day(A, Side::Sell, 1, "6.500");
    t.order(B, Side::Buy, 1, "6.500", Tif::Day);
    t.ev.clear();
    t.e.cancel(Nanos(9), A, id, Qty::ZERO, 5, &mut t.ev);
    assert_eq!(t.reject(), Some(RejectReason::UnknownOrder));
}

#[test]
fn replace_that_shrinks_at_the_same_price_keeps_priority_and_id() {
    let mut t = T::new();
    let first = t.day(A, Side::Sell, 5, "6.500");
    t.day(C, Side::Sell, 5, "6.500");
    t.ev.clear();
    t.e.replace(Nanos(9), A, first, 99, px("6.500"), Qty::new(3), &mut t.ev);
    assert!(
        matches!(t.ev[0], Event::Replaced { old_order, order, tag: 99, .. } if old_order == first && order == first)
    );
    assert!(matches!(t.ev[1], Event::BookReduce { qty, .. } if qty.lots() == 2));
    t.order(B, Side::Buy, 1, "6.500", Tif::Ioc);
    assert_eq!(t.fills(), vec![(65_000, 1, B, A)]);
}

#[test]
fn replace_that_grows_loses_priority() {
    let mut t = T::new();
    let first = t.day(A, Side::Sell, 5, "6.500");
    t.day(C, Side::Sell, 5, "6.500");
    t.ev.clear();
    t.e.replace(Nanos(9), A, first, 99, px("6.500"), Qty::new(6), &mut t.ev);
    let new_id = match t.ev[0] {
        Event::Replaced { order, .. } => order,
        ref e => panic!("{e:?}"),
    };
    assert_ne!(new_id, first);
    assert!(matches!(t.ev[1], Event::BookReplace { old_order, .. } if old_order == first));
    t.order(B, Side::Buy, 1, "6.500", Tif::Ioc);
    assert_eq!(t.fills(), vec![(65_000, 1, B, C)]);
}

#[test]
fn replace_to_a_new_price_goes_to_the_back_of_the_new_level() {
    let mut t = T::new();
    let mine = t.day(A, Side::Buy, 5, "6.400");
    t.day(C, Side::Buy, 5, "6.410");
    t.ev.clear();
    t.e.replace(Nanos(9), A, mine, 99, px("6.410"), Qty::new(5), &mut t.ev);
    assert_eq!(t.book(Side::Buy), vec![(64_100, 5, C), (64_100, 5, A)]);
}

#[test]
fn replace_that_crosses_trades_at_once_as_an_aggressor() {
    let mut t = T::new();
    let mine = t.day(A, Side::Buy, 5, "6.400");
    t.day(C, Side::Sell, 2, "6.450");
    t.ev.clear();
    t.e.replace(Nanos(9), A, mine, 99, px("6.450"), Qty::new(5), &mut t.ev);
    assert!(matches!(t.ev[1], Event::BookDelete { order, .. } if order == mine));
    assert_eq!(t.fills(), vec![(64_500, 2, A, C)]);
    assert!(matches!(t.ev.last(), Some(Event::BookAdd { qty, .. }) if qty.lots() == 3));
    assert_eq!(t.book(Side::Buy), vec![(64_500, 3, A)]);
}

#[test]
fn replace_with_an_invalid_price_is_rejected_without_effect() {
    let mut t = T::new();
    let mine = t.day(A, Side::Buy, 5, "6.400");
    t.ev.clear();
    t.e.replace(Nanos(9), A, mine, 99, px("6.4005"), Qty::new(5), &mut t.ev);
    assert_eq!(t.reject(), Some(RejectReason::PriceOffTick));
    assert_eq!(t.book(Side::Buy), vec![(64_000, 5, A)]);
    assert!(t.e.order(mine).is_some());
}

#[test]
fn self_trade_cancel_resting_removes_the_resting_order_and_matching_goes_on() {
    let mut t = T::new();
    t.day(A, Side::Sell, 2, "6.500");
    t.day(C, Side::Sell, 2, "6.500");
    t.order(A, Side::Buy, 3, "6.500", Tif::Day);
    assert!(t.ev.iter().any(|e| matches!(e, Event::Canceled { account, reason: CancelReason::SelfTrade, .. } if *account == A)));
    assert_eq!(t.fills(), vec![(65_000, 2, A, C)]);
    assert_eq!(t.book(Side::Buy), vec![(65_000, 1, A)]);
    assert!(t.book(Side::Sell).is_empty());
}

#[test]
fn self_trade_cancel_incoming_cancels_the_rest_of_the_incoming_order() {
    let mut t = T::with_stp("cancel-incoming");
    t.day(C, Side::Sell, 1, "6.500");
    t.day(A, Side::Sell, 2, "6.500");
    t.order(A, Side::Buy, 3, "6.500", Tif::Day);
    assert_eq!(t.fills(), vec![(65_000, 1, A, C)]);
    assert_eq!(t.book(Side::Sell), vec![(65_000, 2, A)]);
    assert!(t.book(Side::Buy).is_empty());
    assert!(t.ev.iter().any(|e| matches!(e, Event::Canceled { decrement, reason: CancelReason::SelfTrade, .. } if decrement.lots() == 2)));
}

#[test]
fn self_trade_cancel_both_cancels_resting_and_incoming() {
    let mut t = T::with_stp("cancel-both");
    t.day(A, Side::Sell, 2, "6.500");
    t.day(C, Side::Sell, 2, "6.500");
    t.order(A, Side::Buy, 3, "6.500", Tif::Day);
    assert!(t.fills().is_empty());
    assert_eq!(t.book(Side::Sell), vec![(65_000, 2, C)]);
    assert!(t.book(Side::Buy).is_empty());
}

#[test]
fn rejects_name_their_reason_and_have_no_other_effect() {
    let mut t = T::new();
    let cases = [
        (5, "6.5005", RejectReason::PriceOffTick),
        (5, "7.030", RejectReason::PriceOutsideLimits),
        (5, "5.970", RejectReason::PriceOutsideLimits),
        (0, "6.500", RejectReason::InvalidQty),
        (1001, "6.500", RejectReason::QtyAboveMax),
    ];
    for (qty, price, reason) in cases {
        assert_eq!(t.order(A, Side::Buy, qty, price, Tif::Day), None);
        assert_eq!(t.ev.len(), 1, "{price} {qty}");
        assert_eq!(t.reject(), Some(reason), "{price} {qty}");
    }
    // Limits are inclusive.
    assert!(t.order(A, Side::Buy, 1, "7.020", Tif::Day).is_some());
    assert!(t.order(A, Side::Sell, 1000, "5.980", Tif::Day).is_some());
}

#[test]
fn unknown_instrument_is_rejected() {
    let mut t = T::new();
    t.e.enter(
        Nanos(1),
        &NewOrder {
            account: A,
            tag: 1,
            instrument: InstrumentId(9),
            side: Side::Buy,
            price: px("6.5"),
            qty: Qty::new(1),
            tif: Tif::Day,
        },
        &mut t.ev,
    );
    assert_eq!(t.reject(), Some(RejectReason::UnknownInstrument));
}

#[test]
fn halted_market_rejects_orders_but_accepts_cancels() {
    let mut t = T::new();
    let id = t.day(A, Side::Buy, 5, "6.400");
    t.e.set_phase(Nanos(5), Some(TK), Phase::Halt, &mut t.ev);
    assert_eq!(t.order(B, Side::Sell, 1, "6.400", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::MarketNotOpen));
    t.ev.clear();
    t.e.replace(Nanos(6), A, id, 9, px("6.401"), Qty::new(5), &mut t.ev);
    assert_eq!(t.reject(), Some(RejectReason::MarketNotOpen));
    t.ev.clear();
    t.e.cancel(Nanos(7), A, id, Qty::ZERO, 0, &mut t.ev);
    assert!(matches!(t.ev[0], Event::Canceled { .. }));
}

#[test]
fn preopen_accepts_orders_without_matching() {
    let mut t = T::new();
    t.e.set_phase(Nanos(1), None, Phase::PreOpen, &mut t.ev);
    t.day(A, Side::Sell, 5, "6.400");
    t.day(B, Side::Buy, 5, "6.500");
    assert!(t.fills().is_empty());
    assert_eq!(t.book(Side::Buy).len(), 1);
    assert_eq!(t.book(Side::Sell).len(), 1);
}

#[test]
fn closing_cancels_every_resting_order() {
    let mut t = T::new();
    t.day(A, Side::Buy, 5, "6.400");
    t.day(B, Side::Sell, 5, "6.600");
    t.ev.clear();
    t.e.set_phase(Nanos(5), Some(TK), Phase::Closed, &mut t.ev);
    assert_eq!(
        t.ev.iter()
            .filter(|e| matches!(
                e,
                Event::Canceled {
                    reason: CancelReason::MarketClosed,
                    ..
                }
            ))
            .count(),
        2
    );
    assert_eq!(t.e.live_orders(), 0);
    assert_eq!(t.order(A, Side::Buy, 1, "6.400", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::MarketNotOpen));
}

#[test]
fn running_out_of_capacity_is_a_clean_reject() {
    let mut t = T::new();
    for i in 0..64 {
        t.day(A, Side::Buy, 1, if i % 2 == 0 { "6.400" } else { "6.300" });
    }
    assert_eq!(t.order(A, Side::Buy, 1, "6.400", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::CapacityExhausted));
    assert_eq!(t.e.live_orders(), 64);
}

#[test]
fn best_prices_follow_adds_fills_and_cancels() {
    let mut t = T::new();
    let b1 = t.day(A, Side::Buy, 1, "6.400");
    t.day(A, Side::Buy, 1, "6.300");
    t.day(B, Side::Sell, 1, "6.600");
    assert_eq!(t.e.best(TK), (Some(px("6.4")), Some(px("6.6"))));
    t.ev.clear();
    t.e.cancel(Nanos(1), A, b1, Qty::ZERO, 0, &mut t.ev);
    assert_eq!(t.e.best(TK), (Some(px("6.3")), Some(px("6.6"))));
    t.order(C, Side::Buy, 1, "6.600", Tif::Ioc);
    assert_eq!(t.e.best(TK), (Some(px("6.3")), None));
    assert_eq!(t.e.level_qty(TK, Side::Buy, px("6.3")), 1);
}

/// A GH-style contract alone: a 1 % circuit breaker over 60 s, a wide band,
/// a 120 s halt and a 30 s reopening call.
fn breaker_contract(stp: &str) -> ContractSet {
    contract_set(&format!(
        r#"{GH2612}stp = "{stp}"
protection = "dynamic-band"
band_pct = 50
breaker_pct = 1
breaker_window_s = 60
halt_s = 120
reopen_auction_s = 30
"#
    ))
}

/// Past the halt and the reopening call of [`breaker_contract`].
const AFTER_REOPENING: Nanos = Nanos(200_000_000_000);

fn crossed(t: &T) -> bool {
    matches!(t.e.best(TK), (Some(b), Some(a)) if b >= a)
}

#[test]
fn an_aggressor_filled_in_full_that_trips_the_breaker_leaves_nothing_behind() {
    for tif in [Tif::Day, Tif::Ioc] {
        let mut t = T::with_contracts(&breaker_contract("cancel-resting"));
        t.day(A, Side::Sell, 1, "2.100");
        t.day(B, Side::Sell, 1, "2.200");
        let id = t.order(C, Side::Buy, 2, "2.200", tif).unwrap();
        assert_eq!(t.e.phase(TK), Some(Phase::Halt), "the breaker tripped");
        assert_eq!(t.fills().len(), 2);
        // No 0-lot order in the book, no 0-lot cancel.
        let leftovers: Vec<_> =
            t.ev.iter()
                .filter(|e| matches!(e, Event::BookAdd { .. } | Event::Canceled { .. }))
                .collect();
        assert!(leftovers.is_empty(), "{tif:?}: {leftovers:?}");
        assert_eq!(t.e.order(id), None);
        assert_eq!(t.e.live_orders(), 0);
        assert_eq!(t.e.accounts().position(C, TK).map_or(0, |p| p.open_buy), 0);
    }
}

#[test]
fn an_aggressor_that_trips_the_breaker_still_obeys_self_trade_prevention() {
    let mut t = T::with_contracts(&breaker_contract("cancel-incoming"));
    t.day(B, Side::Sell, 1, "2.000");
    t.day(C, Side::Sell, 1, "2.100");
    t.day(A, Side::Sell, 1, "2.200");
    t.day(A, Side::Buy, 5, "2.200");
    assert_eq!(t.e.phase(TK), Some(Phase::Halt), "the breaker tripped");
    assert!(
        t.ev.iter().any(|e| matches!(
            e,
            Event::Canceled {
                reason: CancelReason::SelfTrade,
                ..
            }
        )),
        "{:?}",
        t.ev
    );
    assert!(!crossed(&t), "{:?}", t.e.best(TK));
    // Nor does the reopening cross trade the account with itself.
    t.ev.clear();
    t.e.advance(AFTER_REOPENING, &mut t.ev);
    assert_eq!(t.e.phase(TK), Some(Phase::Open));
    assert!(
        t.fills().iter().all(|&(_, _, taker, maker)| taker != maker),
        "{:?}",
        t.fills()
    );
}

#[test]
fn a_call_halted_before_its_uncross_is_uncrossed_when_trading_resumes() {
    let mut t = T::new();
    t.e.set_phase(Nanos(1), None, Phase::Auction, &mut t.ev);
    t.day(A, Side::Buy, 5, "6.600");
    t.day(B, Side::Sell, 5, "6.400");
    for via in [Phase::Halt, Phase::Break] {
        t.e.set_phase(Nanos(10), None, via, &mut t.ev);
    }
    t.ev.clear();
    t.e.set_phase(Nanos(20), None, Phase::Open, &mut t.ev);
    assert_eq!(t.fills().len(), 1, "{:?}", t.ev);
    assert!(!crossed(&t));
    assert!(t
        .ev
        .iter()
        .any(|e| matches!(e, Event::Cross { qty: 5, .. })));
}

#[test]
fn a_halt_after_continuous_trading_resumes_without_a_cross() {
    let mut t = T::new();
    t.e.set_phase(Nanos(1), None, Phase::Open, &mut t.ev);
    t.day(A, Side::Buy, 5, "6.400");
    t.day(B, Side::Sell, 5, "6.600");
    t.e.set_phase(Nanos(10), None, Phase::Halt, &mut t.ev);
    t.ev.clear();
    t.e.set_phase(Nanos(20), None, Phase::Open, &mut t.ev);
    assert!(
        t.ev.iter().all(|e| matches!(e, Event::PhaseChanged { .. })),
        "only the phase changes: {:?}",
        t.ev
    );
    assert_eq!(t.book(Side::Buy).len() + t.book(Side::Sell).len(), 2);
}

/// TK2612 here: lot 1, margin 10 %; 1,000 lots at 5.980 need 5,980,000 raw.
fn with_credit(raw: i128) -> T {
    let mut t = T::new();
    let limits = crate::accounts::AccountLimits {
        credit: Some(crate::accounts::Money::from_raw(raw)),
        max_live_orders: 0,
    };
    t.e.accounts_mut().register(A, limits);
    t
}

#[test]
fn a_replace_to_a_higher_price_is_checked_against_the_credit_like_a_new_order() {
    let mut t = with_credit(5_980_000);
    assert_eq!(t.order(A, Side::Buy, 1000, "7.020", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::RiskLimit));
    t.day(B, Side::Sell, 1000, "7.020");
    let id = t.day(A, Side::Buy, 1000, "5.980");
    t.ev.clear();
    t.e.replace(
        Nanos(100),
        A,
        id,
        99,
        px("7.020"),
        Qty::new(1000),
        &mut t.ev,
    );
    assert_eq!(t.reject(), Some(RejectReason::RiskLimit));
    assert!(t.fills().is_empty());
    // Smaller passes: less margin, not more.
    t.ev.clear();
    t.e.replace(
        Nanos(101),
        A,
        id,
        100,
        px("5.980"),
        Qty::new(900),
        &mut t.ev,
    );
    assert_eq!(t.reject(), None);
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 5_382_000);
}

#[test]
fn a_cheaper_order_does_not_re_price_lots_bought_dearer() {
    let mut t = with_credit(6_318_000);
    t.day(B, Side::Sell, 900, "7.020");
    t.day(A, Side::Buy, 900, "7.020");
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 6_318_000);
    assert_eq!(t.order(A, Side::Buy, 100, "5.980", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::RiskLimit));
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 6_318_000);
    // Reducing always passes.
    t.day(A, Side::Sell, 100, "7.000");
}

#[test]
fn a_sell_into_higher_bids_is_checked_against_the_credit_at_the_bids_price() {
    // 1,000 lots at 5.980 fit this credit, but a sell at 5.980 into a bid
    // at 7.020 trades at 7.020: a short of 1,000 there needs 7,020,000,
    // which a buy of 1,000 at 7.020 is refused for.
    let mut t = with_credit(5_980_000);
    let bid = t.day(B, Side::Buy, 1000, "7.020");
    assert_eq!(t.order(A, Side::Sell, 1000, "5.980", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::RiskLimit));
    assert!(t.fills().is_empty());
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 0);
    // With no bid above it, the same sell rests at its own price and fits.
    t.e.cancel(Nanos(100), B, bid, Qty::ZERO, 0, &mut t.ev);
    t.day(A, Side::Sell, 1000, "5.980");
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 5_980_000);
}

#[test]
fn lots_sold_above_the_sells_limit_are_margined_at_the_price_they_traded_at() {
    let mut t = with_credit(1_000_000_000_000);
    t.day(B, Side::Buy, 800, "7.020");
    t.order(A, Side::Sell, 800, "5.980", Tif::Ioc);
    assert_eq!(t.fills(), vec![(70_200, 800, A, B)]);
    let pos = *t.e.accounts().position(A, TK).unwrap();
    assert_eq!((pos.net, pos.open_sell), (-800, 0));
    // 800 × 7.020 × 10 %, as for 800 lots bought at 7.020 (not at 5.980).
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 5_616_000);
}

#[test]
fn lots_opened_by_a_fill_through_zero_are_margined_at_the_price_they_traded_at() {
    let mut t = with_credit(1_000_000_000_000);
    t.day(B, Side::Buy, 500, "5.980");
    t.day(A, Side::Sell, 500, "5.980");
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 2_990_000);
    // A buy of 1,000 leaves the worst case at 500 either way; once it
    // fills, A is long 500 bought at 7.020, which need 500 × 7.020 × 10 %,
    // not 500 × 5.980 × 10 %.
    t.day(A, Side::Buy, 1000, "7.020");
    t.day(C, Side::Sell, 1000, "7.020");
    let pos = *t.e.accounts().position(A, TK).unwrap();
    assert_eq!((pos.net, pos.open_buy), (500, 0));
    assert_eq!(pos.avg_price(), Some(px("7.020")));
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 3_510_000);
}

#[test]
fn an_order_that_takes_the_position_through_zero_is_checked_against_the_credit_at_its_price() {
    // Short 500 at 5.980 uses the whole credit (2,990,000).
    let mut t = with_credit(2_990_000);
    t.day(B, Side::Buy, 500, "5.980");
    t.day(A, Side::Sell, 500, "5.980");
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 2_990_000);
    // Buying 1,000 at 7.020 leaves the worst case at 500, but filled it
    // leaves A long 500 at 7.020 (3,510,000 of margin): refused, as a
    // flat account's buy of 500 at 7.020 would be.
    assert_eq!(t.order(A, Side::Buy, 1000, "7.020", Tif::Day), None);
    assert_eq!(t.reject(), Some(RejectReason::RiskLimit));
    // Closing the short, at any price, always passes.
    t.day(A, Side::Buy, 500, "7.020");
    assert_eq!(t.e.accounts().margin(A).unwrap().raw(), 2_990_000);
}

/// The price of the `Cross` print in `t.ev`, and its kind.
fn cross_print(t: &T) -> Option<(u32, CrossKind)> {
    t.ev.iter().find_map(|e| match *e {
        Event::Cross { price, kind, .. } => Some((price.raw(), kind)),
        _ => None,
    })
}

/// Trips [`breaker_contract`]'s breaker: 2.150 then 2.200 (+2.3 %), so the
/// last trade before the halt is 2.200 (the reference is 2.150).
fn tripped_at_2_200() -> T {
    let mut t = T::with_contracts(&breaker_contract("cancel-resting"));
    t.day(A, Side::Sell, 1, "2.150");
    t.day(B, Side::Buy, 1, "2.150");
    t.day(A, Side::Sell, 1, "2.200");
    t.day(C, Side::Buy, 1, "2.200");
    assert_eq!(t.e.phase(TK), Some(Phase::Halt), "the breaker tripped");
    t
}

#[test]
fn an_operator_call_that_ends_a_breaker_halt_is_a_reopening_at_the_last_trade() {
    // The same reopening call (bid 2.210, ask 2.140, 1 lot each: 1 lot
    // paired with no imbalance at every price between), started by the
    // breaker's timer and by the operator, uncrosses alike: at the last
    // trade before the halt, 2.200, as a reopening cross.
    let mut by_timer = tripped_at_2_200();
    by_timer.e.advance(Nanos(130_000_000_000), &mut by_timer.ev);
    assert_eq!(by_timer.e.phase(TK), Some(Phase::Auction));
    by_timer.day(B, Side::Buy, 1, "2.210");
    by_timer.day(C, Side::Sell, 1, "2.140");
    by_timer.ev.clear();
    by_timer.e.advance(AFTER_REOPENING, &mut by_timer.ev);
    assert_eq!(cross_print(&by_timer), Some((22_000, CrossKind::Reopening)));

    let mut by_operator = tripped_at_2_200();
    by_operator
        .e
        .set_phase(Nanos(100), Some(TK), Phase::Auction, &mut by_operator.ev);
    by_operator.day(B, Side::Buy, 1, "2.210");
    by_operator.day(C, Side::Sell, 1, "2.140");
    by_operator.ev.clear();
    by_operator
        .e
        .set_phase(Nanos(200), Some(TK), Phase::Open, &mut by_operator.ev);
    assert_eq!(
        cross_print(&by_operator),
        Some((22_000, CrossKind::Reopening)),
        "the operator's reopening crossed at the previous settlement instead"
    );
}

#[test]
fn a_call_after_an_operator_halt_is_a_reopening_at_the_last_trade() {
    // TK trades at 6.600 (reference 6.500); the operator halts it, then
    // reopens it through a call: bid 6.650 x 1, ask 6.550 x 1. Every price
    // 6.550-6.650 pairs 1 lot with no imbalance: the last trade before
    // the halt (6.600) is the reference of a reopening.
    let mut t = T::new();
    t.day(A, Side::Sell, 1, "6.600");
    t.day(B, Side::Buy, 1, "6.600");
    t.e.set_phase(Nanos(100), Some(TK), Phase::Halt, &mut t.ev);
    t.e.set_phase(Nanos(101), Some(TK), Phase::Auction, &mut t.ev);
    t.day(B, Side::Buy, 1, "6.650");
    t.day(C, Side::Sell, 1, "6.550");
    t.ev.clear();
    t.e.set_phase(Nanos(200), Some(TK), Phase::Open, &mut t.ev);
    assert_eq!(cross_print(&t), Some((66_000, CrossKind::Reopening)));
}

#[test]
fn a_call_started_before_any_trade_is_an_opening_at_the_reference() {
    // Nothing traded yet: a call out of pre-open is the day's opening,
    // whose reference is the previous settlement (6.500).
    let mut t = T::new();
    t.e.set_phase(Nanos(100), Some(TK), Phase::Auction, &mut t.ev);
    t.day(B, Side::Buy, 1, "6.600");
    t.day(C, Side::Sell, 1, "6.400");
    t.ev.clear();
    t.e.set_phase(Nanos(200), Some(TK), Phase::Open, &mut t.ev);
    assert_eq!(cross_print(&t), Some((65_000, CrossKind::Opening)));
}

/// GH2612 with a 10 % breaker over 300 s and a band too wide to matter.
fn ten_percent_breaker() -> ContractSet {
    contract_set(&format!(
        r#"{GH2612}protection = "dynamic-band"
band_pct = 50
breaker_pct = 10
breaker_window_s = 300
halt_s = 120
reopen_auction_s = 30
"#
    ))
}

#[test]
fn the_breaker_trips_alike_on_a_rise_and_a_fall_of_the_same_size() {
    // "A trade more than 10 % away from any trade of the window halts":
    // 2.000 -> 2.190 is +9.50 % and 2.190 -> 1.982 is -9.50 % (0.208 off
    // 2.190). Neither is more than 10 % away from the earlier trade.
    let mut up = T::with_contracts(&ten_percent_breaker());
    up.day(A, Side::Sell, 1, "2.000");
    up.day(B, Side::Buy, 1, "2.000");
    up.day(A, Side::Sell, 1, "2.190");
    up.day(B, Side::Buy, 1, "2.190");
    assert_eq!(up.e.phase(TK), Some(Phase::Open), "+9.5 %: trading on");

    let mut down = T::with_contracts(&ten_percent_breaker());
    down.day(A, Side::Sell, 1, "2.190");
    down.day(B, Side::Buy, 1, "2.190");
    down.day(A, Side::Sell, 1, "1.982");
    down.day(B, Side::Buy, 1, "1.982");
    assert_eq!(
        down.e.phase(TK),
        Some(Phase::Open),
        "-9.5 %: halted (the spread was measured against the new, lower trade: 10.49 %)"
    );
    // -10.5 % from 2.190 (1.960) halts.
    down.day(A, Side::Sell, 1, "1.960");
    down.day(B, Side::Buy, 1, "1.960");
    assert_eq!(down.e.phase(TK), Some(Phase::Halt));
}

#[test]
fn a_sweep_whose_first_fill_is_more_than_the_breaker_pct_away_trips_it() {
    // After a trade at 2.000, a sell of 2 lots sweeps bids at 2.210
    // (10.5 % above it) and 2.150: its first fill is the one too far, as
    // a lone 1-lot sell at 2.210 would be.
    let mut down = T::with_contracts(&ten_percent_breaker());
    down.day(A, Side::Sell, 1, "2.000");
    down.day(B, Side::Buy, 1, "2.000");
    down.day(B, Side::Buy, 1, "2.210");
    down.day(C, Side::Buy, 1, "2.150");
    down.day(A, Side::Sell, 2, "2.150");
    assert_eq!(down.fills().len(), 2, "{:?}", down.ev);
    assert_eq!(down.e.phase(TK), Some(Phase::Halt));
    // The mirror: after 2.200, a buy sweeps asks at 1.970 (10.5 % below
    // it) and 2.100.
    let mut up = T::with_contracts(&ten_percent_breaker());
    up.day(A, Side::Sell, 1, "2.200");
    up.day(B, Side::Buy, 1, "2.200");
    up.day(A, Side::Sell, 1, "1.970");
    up.day(C, Side::Sell, 1, "2.100");
    up.day(B, Side::Buy, 2, "2.100");
    assert_eq!(up.fills().len(), 2, "{:?}", up.ev);
    assert_eq!(up.e.phase(TK), Some(Phase::Halt));
    // A sweep within the band of every trade trades on.
    let mut calm = T::with_contracts(&ten_percent_breaker());
    calm.day(A, Side::Sell, 1, "2.000");
    calm.day(B, Side::Buy, 1, "2.000");
    calm.day(B, Side::Buy, 1, "2.150");
    calm.day(C, Side::Buy, 1, "2.100");
    calm.day(A, Side::Sell, 2, "2.100");
    assert_eq!(calm.fills().len(), 2, "{:?}", calm.ev);
    assert_eq!(calm.e.phase(TK), Some(Phase::Open));
}

#[test]
fn an_opening_call_interrupted_by_a_halt_stays_an_opening_at_the_reference() {
    // The day session traded at 6.600 (reference 6.500); the night's
    // opening call is halted and resumed: it still opens at the reference.
    let mut t = T::new();
    t.day(A, Side::Sell, 1, "6.600");
    t.day(B, Side::Buy, 1, "6.600");
    t.e.set_phase(Nanos(100), Some(TK), Phase::Closed, &mut t.ev);
    t.e.set_phase(Nanos(101), Some(TK), Phase::Auction, &mut t.ev);
    t.day(B, Side::Buy, 1, "6.650");
    t.day(C, Side::Sell, 1, "6.450");
    t.e.set_phase(Nanos(102), Some(TK), Phase::Halt, &mut t.ev);
    t.e.set_phase(Nanos(103), Some(TK), Phase::Auction, &mut t.ev);
    t.ev.clear();
    t.e.set_phase(Nanos(200), Some(TK), Phase::Open, &mut t.ev);
    assert_eq!(cross_print(&t), Some((65_000, CrossKind::Opening)));
}

#[test]
fn an_operator_reopening_call_ended_by_the_schedule_uncrosses_at_the_last_trade() {
    let set = contract_set(
        r#"
[[contract]]
symbol = "TK2612"
reference_price = "6.500"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
schedule = ["09:00 open", "10:15 break", "10:30 open", "15:00 close"]
"#,
    );
    let at = |h: u64, m: u64| Nanos((h * 3600 + m * 60) * 1_000_000_000);
    let mut t = T::with_contracts(&set);
    t.e.follow_schedules(at(9, 1), &mut t.ev);
    let enter = |t: &mut T, now: Nanos, acct, side, price: &str| {
        t.tag += 1;
        let o = NewOrder {
            account: acct,
            tag: t.tag,
            instrument: TK,
            side,
            price: px(price),
            qty: Qty::new(1),
            tif: Tif::Day,
        };
        t.e.enter(now, &o, &mut t.ev);
    };
    enter(&mut t, at(9, 5), A, Side::Sell, "6.600");
    enter(&mut t, at(9, 5), B, Side::Buy, "6.600");
    t.e.set_phase(at(10, 0), Some(TK), Phase::Halt, &mut t.ev);
    t.e.set_phase(at(10, 2), Some(TK), Phase::Auction, &mut t.ev);
    // 1 lot paired with no imbalance at every price 6.450-6.650: the
    // reference decides, the last trade for a reopening.
    enter(&mut t, at(10, 3), B, Side::Buy, "6.650");
    enter(&mut t, at(10, 3), C, Side::Sell, "6.450");
    let published = t.ev.iter().rev().find_map(|e| match e {
        Event::Imbalance {
            reference, kind, ..
        } => Some((reference.raw(), *kind)),
        _ => None,
    });
    assert_eq!(published, Some((66_000, CrossKind::Reopening)));
    // The schedule's break (10:15) and open (10:30) end the call.
    t.ev.clear();
    t.e.advance(at(10, 31), &mut t.ev);
    assert_eq!(cross_print(&t), Some((66_000, CrossKind::Reopening)));
}

#[test]
fn after_an_operator_halt_the_reopening_price_starts_a_fresh_breaker_window() {
    let mut t = T::with_contracts(&ten_percent_breaker());
    t.day(A, Side::Sell, 1, "2.000");
    t.day(B, Side::Buy, 1, "2.000");
    t.e.set_phase(Nanos(100), Some(TK), Phase::Halt, &mut t.ev);
    t.e.set_phase(Nanos(101), Some(TK), Phase::Auction, &mut t.ev);
    t.day(B, Side::Buy, 1, "2.250");
    t.day(C, Side::Sell, 1, "2.250");
    t.ev.clear();
    t.e.set_phase(Nanos(200), Some(TK), Phase::Open, &mut t.ev);
    assert_eq!(cross_print(&t), Some((22_500, CrossKind::Reopening)));
    // A trade at the reopening's own price is no move at all.
    t.day(A, Side::Sell, 1, "2.250");
    t.day(C, Side::Buy, 1, "2.250");
    assert_eq!(t.fills().len(), 1, "{:?}", t.ev);
    assert_eq!(t.e.phase(TK), Some(Phase::Open));
}
