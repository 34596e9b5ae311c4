//! Price protection (daily limits, dynamic band, circuit breaker), account
//! limits (margin, position, live orders), positions and P&L, and the
//! settlement of a known day of trades, on a simulated clock.

mod lifecycle_common;

use lifecycle_common::*;
use tokex::accounts::{AccountLimits, Money};
use tokex::engine::{CrossKind, Event, Phase, RejectReason};
use tokex::settlement::{Basis, Settlement};
use tokex::types::{AccountId, InstrumentId, Nanos, Qty, Side, Tif};

const TK: u16 = 0;
const TK_LISTING: u16 = 1;
const GH: u16 = 2;

const CONTRACTS: &str = r#"
[[contract]]
symbol = "TK2612"
reference_price = "6.500"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
lot_size = 10000
margin_pct = 10
position_limit = 20

[[contract]]
symbol = "TK2703"
reference_price = "6.050"
tick = "0.001"
limit_pct = 8
max_order_qty = 1000
listing_day = true

[[contract]]
symbol = "GH2612"
reference_price = "2.150"
tick = "0.001"
limit_pct = 20
max_order_qty = 500
lot_size = 1000
margin_pct = 12
protection = "dynamic-band"
band_pct = 5
breaker_pct = 10
breaker_window_s = 300
halt_s = 120
reopen_auction_s = 30
settlement_window_s = 600
"#;

fn rig() -> Rig {
    Rig::new(CONTRACTS)
}

fn rejected(r: RejectReason) -> Outcome {
    Outcome::Rejected(r)
}

fn order(r: &mut Rig, inst: u16, acct: u32, side: Side, qty: u32, price: &str) -> Outcome {
    r.enter(inst, acct, side, qty, price, Tif::Day)
}

// ---- daily limits -------------------------------------------------------

#[test]
fn limit_up_and_limit_down_are_the_last_prices_accepted() {
    // TK2612: 6.500 ± 8% = 5.980 .. 7.020.
    let mut r = rig();
    for side in [Side::Buy, Side::Sell] {
        assert_eq!(
            order(&mut r, TK, 1, side, 1, "7.021"),
            rejected(RejectReason::PriceOutsideLimits)
        );
        assert_eq!(
            order(&mut r, TK, 1, side, 1, "5.979"),
            rejected(RejectReason::PriceOutsideLimits)
        );
    }
    order(&mut r, TK, 1, Side::Buy, 1, "5.980").id();
    order(&mut r, TK, 2, Side::Sell, 1, "7.020").id();
    // A limit-up bid and a limit-down offer trade at the resting price.
    order(&mut r, TK, 3, Side::Buy, 1, "7.020").id();
    assert_eq!(r.fills()[0].0, px("7.020"));
}

#[test]
fn listing_day_doubles_the_limits() {
    // TK2703 lists today: 6.050 ± 16% = 5.082 .. 7.018.
    let mut r = rig();
    order(&mut r, TK_LISTING, 1, Side::Buy, 1, "7.018").id();
    order(&mut r, TK_LISTING, 1, Side::Sell, 1, "7.018").id();
    order(&mut r, TK_LISTING, 1, Side::Sell, 1, "5.082").id();
    assert_eq!(
        order(&mut r, TK_LISTING, 1, Side::Buy, 1, "7.019"),
        rejected(RejectReason::PriceOutsideLimits)
    );
    assert_eq!(
        order(&mut r, TK_LISTING, 1, Side::Sell, 1, "5.081"),
        rejected(RejectReason::PriceOutsideLimits)
    );
}

// ---- dynamic band -------------------------------------------------------

#[test]
fn band_refuses_aggressive_prices_around_the_reference_then_the_last_trade() {
    // GH2612 before any trade: 2.150 ± 5% = 2.0425 .. 2.2575.
    let mut r = rig();
    assert_eq!(
        r.e.band(InstrumentId(GH)),
        Some((px("2.0425"), px("2.2575")))
    );
    assert_eq!(
        order(&mut r, GH, 1, Side::Buy, 1, "2.258"),
        rejected(RejectReason::PriceOutsideBand)
    );
    assert_eq!(
        order(&mut r, GH, 1, Side::Sell, 1, "2.042"),
        rejected(RejectReason::PriceOutsideBand)
    );
    order(&mut r, GH, 1, Side::Buy, 1, "2.257").id();
    order(&mut r, GH, 2, Side::Sell, 1, "2.300").id();
    order(&mut r, GH, 3, Side::Buy, 1, "2.000").id();
    // TK contracts have no band, only daily limits.
    assert_eq!(r.e.band(InstrumentId(TK)), None);

    // A trade at 2.257 moves the band: 2.14415 .. 2.36985.
    order(&mut r, GH, 4, Side::Sell, 1, "2.257").id();
    assert_eq!(r.fills().len(), 1);
    assert_eq!(r.e.last_price(InstrumentId(GH)), Some(px("2.257")));
    order(&mut r, GH, 5, Side::Buy, 1, "2.290").id();
    assert_eq!(
        order(&mut r, GH, 5, Side::Buy, 1, "2.370"),
        rejected(RejectReason::PriceOutsideBand)
    );
    assert_eq!(
        order(&mut r, GH, 5, Side::Sell, 1, "2.144"),
        rejected(RejectReason::PriceOutsideBand)
    );
    // A replace is checked against the band too.
    let id = order(&mut r, GH, 6, Side::Buy, 1, "2.100").id();
    r.ev.clear();
    r.e.replace(
        Nanos(r.now + 1),
        AccountId(6),
        id,
        77,
        px("2.400"),
        Qty::new(1),
        &mut r.ev,
    );
    assert!(matches!(
        r.ev[0],
        Event::Rejected {
            reason: RejectReason::PriceOutsideBand,
            ..
        }
    ));
}

// ---- circuit breaker ----------------------------------------------------

/// One lot changes hands at `price` at time `t` (seller 1, buyer 2).
fn trade(r: &mut Rig, t: u64, price: &str) {
    r.at(t);
    order(r, GH, 1, Side::Sell, 1, price).id();
    order(r, GH, 2, Side::Buy, 1, price).id();
    assert_eq!(r.fills().len(), 1, "trade at {price}");
}

#[test]
fn breaker_halts_on_a_ten_percent_move_in_the_window_and_reopens_through_a_call() {
    let mut r = rig();
    trade(&mut r, SEC, "2.150");
    trade(&mut r, 2 * SEC, "2.250"); // +4.65% on 2.150
    trade(&mut r, 3 * SEC, "2.360"); // +9.77%: inside
    assert_eq!(r.e.phase(InstrumentId(GH)), Some(Phase::Open));

    // 2.370 is 10.23% above 2.150, within 300 s: the buyer's second lot
    // rests, then the contract halts.
    r.at(4 * SEC);
    order(&mut r, GH, 1, Side::Sell, 1, "2.370").id();
    order(&mut r, GH, 2, Side::Buy, 2, "2.370").id();
    assert_eq!(r.fills().len(), 1);
    assert!(r.ev.iter().any(|e| matches!(e, Event::BookAdd { .. })));
    assert_eq!(r.phases(), vec![Phase::Halt]);
    assert_eq!(
        order(&mut r, GH, 3, Side::Sell, 1, "2.365"),
        rejected(RejectReason::MarketNotOpen)
    );
    assert_eq!(r.e.next_timer(), Some(Nanos(4 * SEC + 2 + 120 * SEC)));
    // Other contracts trade on.
    order(&mut r, TK, 3, Side::Buy, 1, "6.500").id();

    // After 120 s the reopening call starts; its reference is the last trade.
    r.advance(125 * SEC);
    assert_eq!(r.phases(), vec![Phase::Auction]);
    assert!(r.ev.iter().any(|e| matches!(
        e,
        Event::Imbalance {
            kind: CrossKind::Reopening,
            ..
        }
    )));
    order(&mut r, GH, 3, Side::Sell, 2, "2.365").id();
    assert!(r.fills().is_empty());

    // 30 s later it uncrosses: bid 2.370×1 vs ask 2.365×2, V = 1 at both
    // prices, imbalance 1; closest to the reference 2.370.
    r.advance(155 * SEC);
    assert_eq!(r.phases(), vec![Phase::Open]);
    assert_eq!(r.fills().len(), 1);
    assert_eq!((r.fills()[0].0, r.fills()[0].1), (px("2.370"), 1));
    assert!(r.ev.iter().any(|e| matches!(
        e,
        Event::Cross {
            kind: CrossKind::Reopening,
            qty: 1,
            ..
        }
    )));
    // The window restarted at the halt: the next trade does not re-trip.
    trade(&mut r, 156 * SEC, "2.365");
    assert_eq!(r.e.phase(InstrumentId(GH)), Some(Phase::Open));
}

#[test]
fn breaker_forgets_prices_older_than_its_window() {
    let mut r = rig();
    trade(&mut r, SEC, "2.150");
    trade(&mut r, 2 * SEC, "2.250");
    trade(&mut r, 3 * SEC, "2.360");
    // 400 s later the 2.150 and 2.250 trades are out of the 300 s window.
    trade(&mut r, 400 * SEC, "2.370");
    assert_eq!(r.e.phase(InstrumentId(GH)), Some(Phase::Open));
}

#[test]
fn an_operator_phase_change_ends_a_breaker_halt() {
    let mut r = rig();
    trade(&mut r, SEC, "2.150");
    trade(&mut r, 2 * SEC, "2.250");
    trade(&mut r, 3 * SEC, "2.360");
    trade(&mut r, 4 * SEC, "2.370");
    assert_eq!(r.e.phase(InstrumentId(GH)), Some(Phase::Halt));
    r.phase(Some(GH), Phase::Open);
    assert_eq!(r.e.next_timer(), None);
    r.advance(200 * SEC);
    assert!(
        r.phases().is_empty(),
        "no reopening call after the override"
    );
}

// ---- accounts -----------------------------------------------------------

fn register(r: &mut Rig, acct: u32, credit: Option<i64>, max_live_orders: u32) {
    r.e.accounts_mut().register(
        AccountId(acct),
        AccountLimits {
            credit: credit.map(Money::from_units),
            max_live_orders,
        },
    );
}

#[test]
fn margin_check_rejects_an_order_whose_worst_case_margin_exceeds_credit() {
    // TK2612: 1 lot at 6.500 = 6.500 × 10,000 × 10% = 6,500 of margin.
    // Credit 100,000 allows 15 lots (97,500), not 16 (104,000).
    let mut r = rig();
    register(&mut r, 1, Some(100_000), 0);
    let big = order(&mut r, TK, 1, Side::Buy, 15, "6.500").id();
    let acc = |r: &Rig| r.e.accounts().margin(AccountId(1)).unwrap();
    assert_eq!(acc(&r), Money::from_units(97_500));
    assert_eq!(
        order(&mut r, TK, 1, Side::Buy, 1, "6.500"),
        rejected(RejectReason::RiskLimit)
    );
    // Nor at a lower price: the 15 lots stay margined at the 6.500 they
    // were bought at (16 × 6.500 × 1,000 = 104,000), a cheap lot does not
    // re-price them.
    assert_eq!(
        order(&mut r, TK, 1, Side::Buy, 1, "6.000"),
        rejected(RejectReason::RiskLimit)
    );
    assert_eq!(acc(&r), Money::from_units(97_500));
    // Selling 10 does not raise the worst case (max(15, 10)): accepted.
    order(&mut r, TK, 1, Side::Sell, 10, "6.600").id();
    // Cancelling the 15-lot buy frees margin: worst case max(0, 10) = 10,
    // still at the margin price 6.500.
    r.ev.clear();
    r.e.cancel(Nanos(r.now + 1), AccountId(1), big, Qty::ZERO, 5, &mut r.ev);
    assert_eq!(acc(&r), Money::from_units(65_000));
    assert_eq!(r.e.accounts().live_orders(AccountId(1)), Some(1));
}

#[test]
fn position_limit_bounds_the_worst_case_position() {
    // TK2612 position_limit = 20 lots; no credit limit.
    let mut r = rig();
    register(&mut r, 2, None, 0);
    order(&mut r, TK, 2, Side::Buy, 20, "6.400").id();
    assert_eq!(
        order(&mut r, TK, 2, Side::Buy, 1, "6.400"),
        rejected(RejectReason::PositionLimit)
    );
    // 20 lots of sells: worst case max(20, 20) is no larger.
    order(&mut r, TK, 2, Side::Sell, 20, "6.600").id();
    assert_eq!(
        order(&mut r, TK, 2, Side::Sell, 1, "6.600"),
        rejected(RejectReason::PositionLimit)
    );
    // Unregistered accounts are not limited ...
    order(&mut r, TK, 9, Side::Buy, 30, "6.400").id();
    // ... unless registration is required.
    r.e.accounts_mut().require_registration(true);
    assert_eq!(
        order(&mut r, TK, 9, Side::Buy, 1, "6.400"),
        rejected(RejectReason::RiskLimit)
    );
}

#[test]
fn live_order_limit_counts_resting_orders_per_account() {
    let mut r = rig();
    register(&mut r, 3, None, 2);
    let first = order(&mut r, TK, 3, Side::Buy, 1, "6.400").id();
    order(&mut r, GH, 3, Side::Buy, 1, "2.100").id();
    assert_eq!(
        order(&mut r, TK, 3, Side::Buy, 1, "6.400"),
        rejected(RejectReason::TooManyOrders)
    );
    r.ev.clear();
    r.e.cancel(
        Nanos(r.now + 1),
        AccountId(3),
        first,
        Qty::ZERO,
        5,
        &mut r.ev,
    );
    order(&mut r, TK, 3, Side::Buy, 1, "6.400").id();
    // A filled order frees its place too.
    order(&mut r, TK, 4, Side::Sell, 1, "6.400").id();
    assert_eq!(r.e.accounts().live_orders(AccountId(3)), Some(1));
}

#[test]
fn live_order_limit_does_not_hold_back_ioc_and_fok_orders_which_never_rest() {
    let mut r = rig();
    register(&mut r, 3, None, 2);
    register(&mut r, 4, None, 0);
    // Account 3 at its limit of two resting orders, long 2 lots.
    order(&mut r, TK, 4, Side::Sell, 2, "6.500").id();
    order(&mut r, TK, 3, Side::Buy, 2, "6.500").id();
    order(&mut r, TK, 3, Side::Buy, 1, "6.400").id();
    order(&mut r, TK, 3, Side::Buy, 1, "6.410").id();
    assert_eq!(
        order(&mut r, TK, 3, Side::Sell, 1, "6.600"),
        rejected(RejectReason::TooManyOrders),
        "another resting order is held back"
    );
    // It can still trade out of its position at once.
    order(&mut r, TK, 4, Side::Buy, 2, "6.450").id();
    r.enter(TK, 3, Side::Sell, 1, "6.450", Tif::Ioc).id();
    r.enter(TK, 3, Side::Sell, 1, "6.450", Tif::Fok).id();
    assert_eq!(
        r.e.accounts()
            .position(AccountId(3), InstrumentId(TK))
            .map(|p| p.net),
        Some(0)
    );
    // One that does not trade is canceled, not refused for the limit.
    r.enter(TK, 3, Side::Sell, 1, "6.600", Tif::Ioc).id();
    assert_eq!(r.e.accounts().live_orders(AccountId(3)), Some(2));
}

#[test]
fn positions_average_price_and_pnl_follow_the_fills() {
    let mut r = rig();
    for a in [4, 5, 6] {
        register(&mut r, a, None, 0);
    }
    order(&mut r, TK, 5, Side::Sell, 10, "6.500").id();
    order(&mut r, TK, 4, Side::Buy, 10, "6.500").id();
    order(&mut r, TK, 6, Side::Buy, 4, "6.600").id();
    order(&mut r, TK, 4, Side::Sell, 4, "6.600").id();
    let acc = r.e.accounts();
    let lot = acc.lot(InstrumentId(TK));
    let p4 = acc.position(AccountId(4), InstrumentId(TK)).unwrap();
    assert_eq!((p4.net, p4.bought, p4.sold), (6, 10, 4));
    assert_eq!(p4.avg_price(), Some(px("6.500")));
    // 4 lots closed 0.100 higher: 4 × 0.100 × 10,000 = 4,000.
    assert_eq!(p4.realized(lot), Money::from_units(4_000));
    assert_eq!(p4.unrealized(px("6.600"), lot), Money::from_units(6_000));
    let p5 = acc.position(AccountId(5), InstrumentId(TK)).unwrap();
    assert_eq!((p5.net, p5.avg_price()), (-10, Some(px("6.500"))));
    assert_eq!(p5.unrealized(px("6.600"), lot), Money::from_units(-10_000));
    let p6 = acc.position(AccountId(6), InstrumentId(TK)).unwrap();
    assert_eq!((p6.net, p6.avg_price()), (4, Some(px("6.600"))));
    assert_eq!((p4.open_buy, p4.open_sell, p6.open_buy), (0, 0, 0));
}

#[test]
fn cross_fills_update_positions_too() {
    let mut r = rig();
    register(&mut r, 7, None, 0);
    register(&mut r, 8, None, 0);
    r.phase(Some(TK), Phase::Auction);
    order(&mut r, TK, 7, Side::Buy, 5, "6.520").id();
    order(&mut r, TK, 8, Side::Sell, 3, "6.480").id();
    r.phase(Some(TK), Phase::Open);
    let acc = r.e.accounts();
    let p7 = acc.position(AccountId(7), InstrumentId(TK)).unwrap();
    let p8 = acc.position(AccountId(8), InstrumentId(TK)).unwrap();
    assert_eq!((p7.net, p7.open_buy), (3, 2));
    assert_eq!((p8.net, p8.open_sell), (-3, 0));
    assert_eq!(p7.avg_price(), Some(px("6.500")));
}

// ---- settlement ---------------------------------------------------------

#[test]
fn settlement_of_a_known_day() {
    const H: u64 = 3_600 * SEC;
    const M: u64 = 60 * SEC;
    let mut r = rig();
    for a in [1, 2, 3, 4, 5] {
        register(&mut r, a, None, 0);
    }
    let mut s = Settlement::new(&r.set);
    let mut deal = |r: &mut Rig, t: u64, inst: u16, buyer: u32, seller: u32, q: u32, p: &str| {
        r.at(t);
        order(r, inst, seller, Side::Sell, q, p).id();
        order(r, inst, buyer, Side::Buy, q, p).id();
        assert_eq!(r.fills().len(), 1);
        for e in &r.ev {
            s.record(Nanos(r.now), e);
        }
    };
    // TK2612, whole-day VWAP:
    //   10 @ 6.501 (1 buys from 2), 3 @ 6.508 (3 from 2), 5 @ 6.490 (2 from 1)
    //   (65.010 + 19.524 + 32.450) / 18 = 6.49911 -> 6.499
    deal(&mut r, 9 * H + M, TK, 1, 2, 10, "6.501");
    deal(&mut r, 10 * H, TK, 3, 2, 3, "6.508");
    deal(&mut r, 14 * H + 59 * M, TK, 2, 1, 5, "6.490");
    // GH2612, VWAP of the 600 s before the 21:00 close:
    //   20:00 2 @ 2.150 (outside), 20:52 1 @ 2.160, 20:55 3 @ 2.170
    //   (2.160 + 6.510) / 4 = 2.1675 -> 2.168 (halves up)
    deal(&mut r, 20 * H, GH, 4, 5, 2, "2.150");
    deal(&mut r, 20 * H + 52 * M, GH, 4, 5, 1, "2.160");
    deal(&mut r, 20 * H + 55 * M, GH, 5, 4, 3, "2.170");
    let close = Nanos(21 * H);

    let tk = s.price(InstrumentId(TK), close).unwrap();
    assert_eq!(
        (tk.price, tk.basis, tk.volume),
        (px("6.499"), Basis::DayVwap, 18)
    );
    let gh = s.price(InstrumentId(GH), close).unwrap();
    assert_eq!(
        (gh.price, gh.basis, gh.volume, gh.day_volume),
        (px("2.168"), Basis::WindowVwap, 4, 6)
    );
    // Nothing traded: the reference.
    let listing = s.price(InstrumentId(TK_LISTING), close).unwrap();
    assert_eq!(
        (listing.price, listing.basis),
        (px("6.050"), Basis::Reference)
    );
    // Nothing in the window but trades earlier in the day: the last trade
    // before the close (not yesterday's price, which would mark every
    // position back by the day's move).
    let late = s.price(InstrumentId(GH), Nanos(23 * H)).unwrap();
    assert_eq!(
        (late.price, late.basis, late.volume, late.day_volume),
        (px("2.170"), Basis::LastTrade, 3, 6)
    );
    // A close before the day's first GH trade: nothing traded by then.
    let early = s.price(InstrumentId(GH), Nanos(19 * H)).unwrap();
    assert_eq!(
        (early.price, early.basis, early.volume, early.day_volume),
        (px("2.150"), Basis::Reference, 0, 0)
    );

    // Variation margin at 6.499 (TK lot 10,000):
    //   1: +10 @ 6.501, -5 @ 6.490: -65.010 + 32.450 + 5 × 6.499 = -0.065 -> -650
    //   2: -10 @ 6.501, -3 @ 6.508, +5 @ 6.490: 52.084 - 8 × 6.499 = 0.092 -> 920
    //   3: +3 @ 6.508: -19.524 + 3 × 6.499 = -0.027 -> -270
    // and at 2.168 (GH lot 1,000):
    //   4: +2 @ 2.150, +1 @ 2.160, -3 @ 2.170: -4.300 - 2.160 + 6.510 = 0.050 -> 50
    //   5: the other side: -50
    let acc = r.e.accounts();
    let vm = |a: u32| s.variation_margin(close, acc, AccountId(a));
    assert_eq!(vm(1), Money::from_units(-650));
    assert_eq!(vm(2), Money::from_units(920));
    assert_eq!(vm(3), Money::from_units(-270));
    assert_eq!(vm(4), Money::from_units(50));
    assert_eq!(vm(5), Money::from_units(-50));
    let p1 = acc.position(AccountId(1), InstrumentId(TK)).unwrap();
    assert_eq!(p1.realized(10_000), Money::from_units(-550));
    assert_eq!(p1.unrealized(px("6.499"), 10_000), Money::from_units(-100));

    let mut csv = Vec::new();
    s.write_prices(close, &mut csv).unwrap();
    assert_eq!(
        String::from_utf8(csv).unwrap(),
        "symbol,settlement_price,basis,volume,day_volume\n\
         TK2612,6.499,day-vwap,18,18\n\
         TK2703,6.050,reference,0,0\n\
         GH2612,2.168,window-vwap,4,6\n"
    );
    let mut csv = Vec::new();
    s.write_variation_margin(close, acc, |a| format!("acct{}", a.0), &mut csv)
        .unwrap();
    let text = String::from_utf8(csv).unwrap();
    assert!(
        text.contains("acct1,TK2612,5,6.5010,10,5,6.499,-550.0000,-100.0000,-650.0000\n"),
        "{text}"
    );
    assert!(
        text.contains("acct2,TK2612,-8,6.5026,5,13,6.499,630.0000,290.0000,920.0000\n"),
        "{text}"
    );
}
