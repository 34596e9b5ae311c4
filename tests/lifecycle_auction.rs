//! The opening call auction and trading phases, on a simulated clock.
//!
//! Each uncross case is worked by hand in a table in its comment: for every
//! candidate price p, B = bids at or above p, S = asks at or below p, the
//! executable volume V = min(B, S) and the imbalance |B - S|. The contract's
//! reference price is 10.00 (tick 0.01).

mod lifecycle_common;

use lifecycle_common::*;
use tokex::engine::{CrossKind, Event, Indicative, Phase, RejectReason};
use tokex::types::{InstrumentId, Nanos, Side, Tif};

const ONE: &str = r#"
[[contract]]
symbol = "AUC"
reference_price = "10.00"
tick = "0.01"
limit_pct = 20
max_order_qty = 1000
"#;

fn auction() -> Rig {
    let mut r = Rig::new(ONE);
    r.phase(None, Phase::Auction);
    r
}

/// Opens the market and returns (cross price, cross qty) of the print.
fn open(r: &mut Rig) -> Option<(String, u64)> {
    r.phase(None, Phase::Open);
    r.ev.iter().find_map(|e| match *e {
        Event::Cross {
            price,
            qty,
            kind: CrossKind::Opening,
            ..
        } => Some((price.to_string(), qty)),
        _ => None,
    })
}

#[test]
fn uncross_takes_the_price_of_largest_volume_then_closest_to_reference() {
    // bids 10.05×10 (b1), 10.02×20 (b2), 10.00×15 (b3)
    // asks  9.98×12 (a1), 10.01×18 (a2), 10.04×25 (a3)
    //   p            B   S   V  imbalance
    //   9.98-10.00  45  12  12  33 buy
    //  10.01        30  30  30   0
    //  10.02        30  30  30   0
    //  10.03        10  30  10  20 sell
    //  10.04-10.05  10  55  10  45 sell
    // V = 30 at 10.01 and 10.02, imbalance 0 at both: 10.01 is closer to
    // the reference 10.00. Fills in price-time priority at 10.01:
    // b1-a1 10, b2-a1 2, b2-a2 18.
    let mut r = auction();
    let b1 = r.buy(1, 10, "10.05").id();
    let b2 = r.buy(2, 20, "10.02").id();
    r.buy(3, 15, "10.00").id();
    let a1 = r.sell(4, 12, "9.98").id();
    let a2 = r.sell(5, 18, "10.01").id();
    r.sell(6, 25, "10.04").id();
    assert!(r.fills().is_empty(), "nothing matches during the call");
    assert_eq!(open(&mut r), Some(("10.01".into(), 30)));
    let p = px("10.01");
    // The later order of each pair is the taker: asks came after bids.
    assert_eq!(
        r.fills(),
        vec![(p, 10, a1, b1), (p, 2, a1, b2), (p, 18, a2, b2)]
    );
    assert_eq!(r.book(0, Side::Buy), vec![(px("10.00"), 15)]);
    assert_eq!(r.book(0, Side::Sell), vec![(px("10.04"), 25)]);
    assert_eq!(r.e.phase(InstrumentId(0)), Some(Phase::Open));
    assert_eq!(r.e.last_price(InstrumentId(0)), Some(p));
}

#[test]
fn uncross_tie_on_volume_goes_to_the_smaller_imbalance_even_away_from_the_reference() {
    // bids 10.04×20, 10.01×10 ; asks 9.97×15
    //   p             B   S   V  imbalance
    //   9.97-10.01   30  15  15  15 buy
    //  10.02-10.04   20  15  15   5 buy
    // V ties at 15 everywhere; the smaller imbalance (5) is at 10.02-10.04,
    // although the reference 10.00 lies in the other range; closest to
    // the reference within it: 10.02.
    let mut r = auction();
    let b = r.buy(1, 20, "10.04").id();
    r.buy(2, 10, "10.01").id();
    let a = r.sell(3, 15, "9.97").id();
    assert_eq!(
        r.e.indicative(InstrumentId(0)),
        Some(Indicative {
            price: Some(px("10.02")),
            paired: 15,
            imbalance: 5,
            imbalance_side: Some(Side::Buy),
        })
    );
    assert_eq!(open(&mut r), Some(("10.02".into(), 15)));
    assert_eq!(r.fills(), vec![(px("10.02"), 15, a, b)]);
    assert_eq!(
        r.book(0, Side::Buy),
        vec![(px("10.04"), 5), (px("10.01"), 10)]
    );
}

#[test]
fn uncross_tie_on_volume_and_imbalance_goes_to_the_price_closest_to_the_reference() {
    // One bid and one ask of 10 lots: V = 10, imbalance 0 at every price
    // between them, so the price is the reference when it lies between,
    // else the end nearest to it.
    //   bid    ask    cross
    //  10.05   9.95   10.00 (the reference)
    //  10.08  10.03   10.03
    //   9.96   9.90    9.96
    for (bid, ask, cross) in [
        ("10.05", "9.95", "10"),
        ("10.08", "10.03", "10.03"),
        ("9.96", "9.90", "9.96"),
    ] {
        let mut r = auction();
        r.buy(1, 10, bid).id();
        r.sell(2, 10, ask).id();
        assert_eq!(open(&mut r), Some((cross.into(), 10)), "{bid}/{ask}");
    }
}

#[test]
fn uncross_fills_a_level_in_time_priority() {
    // bids 10.02×5 (first), 10.02×5 (second); ask 10.00×7:
    // V = 7, imbalance 3 buy at every price 10.00-10.02; closest to the
    // reference: 10.00. The first bid fills 5, the second 2.
    let mut r = auction();
    let first = r.buy(1, 5, "10.02").id();
    let second = r.buy(2, 5, "10.02").id();
    let a = r.sell(3, 7, "10.00").id();
    assert_eq!(open(&mut r), Some(("10".into(), 7)));
    let p = px("10.00");
    assert_eq!(r.fills(), vec![(p, 5, a, first), (p, 2, a, second)]);
    assert_eq!(r.book(0, Side::Buy), vec![(px("10.02"), 3)]);
    assert!(r.book(0, Side::Sell).is_empty());
}

#[test]
fn uncross_without_a_cross_prints_nothing_and_opens() {
    let mut r = auction();
    r.buy(1, 10, "9.99").id();
    r.sell(2, 10, "10.01").id();
    assert_eq!(open(&mut r), None);
    assert!(r.fills().is_empty());
    assert_eq!(r.phases(), vec![Phase::Open]);
    // Continuous trading from here: a crossing order trades at once.
    r.buy(3, 4, "10.01").id();
    assert_eq!(r.fills().len(), 1);
}

#[test]
fn cross_fills_precede_the_print_and_the_open_and_both_sides_shrink() {
    let mut r = auction();
    r.buy(1, 10, "10.00").id();
    r.sell(2, 4, "10.00").id();
    r.phase(None, Phase::Open);
    let kinds: Vec<&str> =
        r.ev.iter()
            .map(|e| match e {
                Event::Executed { cross: true, .. } => "fill",
                Event::Cross { .. } => "cross",
                Event::PhaseChanged { .. } => "phase",
                _ => "other",
            })
            .collect();
    assert_eq!(kinds, ["fill", "cross", "phase"]);
    let Event::Executed { taker, maker, .. } = r.ev[0] else {
        unreachable!()
    };
    assert_eq!((taker.remaining.lots(), maker.remaining.lots()), (0, 6));
}

#[test]
fn the_indicative_uncross_is_published_when_it_changes_during_the_call() {
    let mut r = Rig::new(ONE);
    r.phase(None, Phase::Auction);
    // Entering the call publishes the (empty) indicative.
    let published = |r: &Rig| -> Vec<Indicative> {
        r.ev.iter()
            .filter_map(|e| match *e {
                Event::Imbalance { indicative, .. } => Some(indicative),
                _ => None,
            })
            .collect()
    };
    assert_eq!(published(&r), vec![Indicative::default()]);
    r.buy(1, 10, "10.02").id();
    assert!(published(&r).is_empty(), "no cross yet: unchanged");
    r.sell(2, 4, "10.01").id();
    assert_eq!(
        published(&r),
        vec![Indicative {
            price: Some(px("10.01")),
            paired: 4,
            imbalance: 6,
            imbalance_side: Some(Side::Buy),
        }]
    );
    // Cancelling the ask removes the cross.
    let ask =
        r.e.resting(InstrumentId(0), Side::Sell)
            .next()
            .unwrap()
            .order;
    r.ev.clear();
    r.e.cancel(
        Nanos(r.now + 1),
        tokex::types::AccountId(2),
        ask,
        tokex::types::Qty::ZERO,
        99,
        &mut r.ev,
    );
    assert_eq!(published(&r), vec![Indicative::default()]);
    // In pre-open nothing is published.
    r.phase(None, Phase::PreOpen);
    r.sell(2, 4, "10.01").id();
    assert!(published(&r).is_empty());
}

#[test]
fn preopen_and_call_take_day_orders_and_cancels_but_not_ioc_or_fok() {
    let mut r = Rig::new(ONE);
    for phase in [Phase::PreOpen, Phase::Auction] {
        r.phase(None, phase);
        assert_eq!(
            r.enter(0, 1, Side::Buy, 1, "10.00", Tif::Ioc),
            Outcome::Rejected(RejectReason::TifNotAllowedNow)
        );
        assert_eq!(
            r.enter(0, 1, Side::Buy, 1, "10.00", Tif::Fok),
            Outcome::Rejected(RejectReason::TifNotAllowedNow)
        );
        r.buy(1, 1, "10.00").id();
        r.sell(2, 1, "9.99").id();
        assert!(r.fills().is_empty(), "{phase:?}: no matching");
    }
}

#[test]
fn preopen_straight_to_open_uncrosses_too() {
    let mut r = Rig::new(ONE);
    r.phase(None, Phase::PreOpen);
    r.buy(1, 3, "10.01").id();
    r.sell(2, 3, "9.99").id();
    assert_eq!(open(&mut r), Some(("10".into(), 3)));
}

#[test]
fn break_and_halt_take_cancels_only_and_close_cancels_everything() {
    let mut r = Rig::new(ONE);
    let id = r.buy(1, 5, "9.90").id();
    for phase in [Phase::Break, Phase::Halt] {
        r.phase(None, phase);
        assert_eq!(
            r.buy(1, 1, "9.90"),
            Outcome::Rejected(RejectReason::MarketNotOpen)
        );
    }
    r.ev.clear();
    r.e.cancel(
        Nanos(r.now + 1),
        tokex::types::AccountId(1),
        id,
        tokex::types::Qty::new(2),
        9,
        &mut r.ev,
    );
    assert!(matches!(r.ev[0], Event::Canceled { .. }), "{:?}", r.ev);
    r.phase(None, Phase::Open);
    r.buy(1, 1, "9.80").id();
    r.phase(None, Phase::Closed);
    assert!(r.book(0, Side::Buy).is_empty());
    assert_eq!(
        r.buy(1, 1, "9.90"),
        Outcome::Rejected(RejectReason::MarketNotOpen)
    );
}

const SCHEDULED: &str = r#"
[[contract]]
symbol = "TK2612"
reference_price = "6.500"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
schedule = ["08:55 auction", "09:00 open", "10:15 break", "10:30 open", "15:00 close"]
"#;

#[test]
fn the_schedule_drives_the_day_on_a_simulated_clock() {
    const H: u64 = 3_600 * SEC;
    const M: u64 = 60 * SEC;
    let day = 20_000 * tokex::types::NANOS_PER_DAY;
    let mut r = Rig::new(SCHEDULED);
    r.at(day + 8 * H + 50 * M);
    r.e.follow_schedules(Nanos(r.now), &mut r.ev);
    assert_eq!(r.e.phase(InstrumentId(0)), Some(Phase::Closed));
    assert_eq!(
        r.buy(1, 1, "6.500"),
        Outcome::Rejected(RejectReason::MarketNotOpen)
    );
    assert_eq!(r.e.next_timer(), Some(Nanos(day + 8 * H + 55 * M)));

    // 08:55: the call starts on the first call at or after it.
    r.at(day + 8 * H + 56 * M);
    r.buy(1, 10, "6.510").id();
    assert_eq!(r.phases(), vec![Phase::Auction]);
    r.sell(2, 6, "6.490").id();
    assert!(r.fills().is_empty());

    // 09:00: the open uncrosses at the reference (6.500 lies between).
    r.advance(day + 9 * H);
    assert_eq!(r.phases(), vec![Phase::Open]);
    let fills = r.fills();
    assert_eq!(fills.len(), 1);
    assert_eq!((fills[0].0, fills[0].1), (px("6.500"), 6));

    // 10:15 break, 10:30 open again (no call: nothing could rest crossed).
    r.at(day + 10 * H + 20 * M);
    assert_eq!(
        r.sell(3, 1, "6.510"),
        Outcome::Rejected(RejectReason::MarketNotOpen)
    );
    assert_eq!(r.phases(), vec![Phase::Break]);
    r.at(day + 10 * H + 31 * M);
    r.sell(3, 1, "6.510").id();
    assert_eq!(r.phases(), vec![Phase::Open]);
    assert_eq!(r.fills().len(), 1, "continuous trading again");

    // 15:00 close cancels what rests; the next change is tomorrow's call.
    r.advance(day + 15 * H);
    assert_eq!(r.phases(), vec![Phase::Closed]);
    assert!(r.book(0, Side::Buy).is_empty());
    assert_eq!(
        r.e.next_timer(),
        Some(Nanos(day + tokex::types::NANOS_PER_DAY + 8 * H + 55 * M))
    );
}
