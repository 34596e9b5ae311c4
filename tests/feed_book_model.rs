//! The fast feed book equals a deliberately naive reference model: random
//! ITCH sequences (directory, trading action, add, execute, execute with
//! price, cancel, delete, replace; unknown and duplicate references, unknown
//! locates and locates far apart, oversize executions, bad side bytes,
//! prices on the ladder, off its tick, outside its limits, and instruments
//! without a ladder) give the same result per message, the same callbacks
//! (trades, and every level change with the level's new aggregate), and the
//! same orders, top of book, depth and per-order lookups after every
//! message.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tokex::feed::book::{
    BookError, BookObserver, DepthLevel, FeedBooks, FeedOrder, LevelChange, PriceGrid, Trade,
};
use tokex::types::{Price, Qty, Side, Symbol};
use tokex::wire::itch::{self, Header, Message};
use zerocopy::IntoBytes;

/// Symbols: the first has a ladder of 1000..=2000 by 10 (raw), the others none.
const SYMBOLS: [&str; 3] = ["LADDER", "NOGRID", "LADDER2"];
const LOWER: u32 = 1000;
const UPPER: u32 = 2000;
const TICK: u32 = 10;

fn grids() -> Vec<(Symbol, PriceGrid)> {
    vec![
        (
            Symbol::new(SYMBOLS[0]).unwrap(),
            PriceGrid {
                lower: Price::from_raw(LOWER),
                upper: Price::from_raw(UPPER),
                tick: Price::from_raw(TICK),
            },
        ),
        (
            Symbol::new(SYMBOLS[2]).unwrap(),
            PriceGrid {
                lower: Price::from_raw(500),
                upper: Price::from_raw(3000),
                tick: Price::from_raw(100),
            },
        ),
    ]
}

#[derive(Debug, Clone)]
enum Op {
    Directory(u16, usize),
    Trading(u16, bool),
    Add {
        locate: u16,
        reference: u64,
        side: u8,
        qty: u32,
        price: u32,
    },
    Execute(u64, u32, u64),
    ExecuteWithPrice(u64, u32, u64, bool, u32),
    Cancel(u64, u32),
    Delete(u64),
    Replace(u64, u64, u32, u32),
}

fn header(locate: u16) -> Header {
    Header {
        stock_locate: locate,
        tracking_number: 0,
        timestamp: 0,
    }
}

/// The wire bytes of an operation.
fn encode(op: &Op) -> Vec<u8> {
    let h = header(1);
    match *op {
        Op::Directory(l, s) => {
            itch::StockDirectory::new(header(l), Symbol::new(SYMBOLS[s]).unwrap(), 1)
                .as_bytes()
                .to_vec()
        }
        Op::Trading(l, on) => itch::TradingAction::new(
            header(l),
            Symbol::new("X").unwrap(),
            if on {
                itch::trading_state::TRADING
            } else {
                itch::trading_state::HALTED
            },
            *b"    ",
        )
        .as_bytes()
        .to_vec(),
        Op::Add {
            locate,
            reference,
            side,
            qty,
            price,
        } => {
            let mut m = itch::AddOrder::new(
                header(locate),
                reference,
                Side::Buy,
                Qty::new(qty),
                Symbol::new("X").unwrap(),
                Price::from_raw(price),
            );
            m.side = side;
            m.as_bytes().to_vec()
        }
        Op::Execute(r, q, mn) => itch::OrderExecuted::new(h, r, Qty::new(q), mn)
            .as_bytes()
            .to_vec(),
        Op::ExecuteWithPrice(r, q, mn, printable, p) => {
            itch::OrderExecutedWithPrice::new(h, r, Qty::new(q), mn, printable, Price::from_raw(p))
                .as_bytes()
                .to_vec()
        }
        Op::Cancel(r, q) => itch::OrderCancel::new(h, r, Qty::new(q))
            .as_bytes()
            .to_vec(),
        Op::Delete(r) => itch::OrderDelete::new(h, r).as_bytes().to_vec(),
        Op::Replace(old, new, q, p) => {
            itch::OrderReplace::new(h, old, new, Qty::new(q), Price::from_raw(p))
                .as_bytes()
                .to_vec()
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct ModelOrder {
    reference: u64,
    locate: u16,
    side: Side,
    price: u32,
    qty: u32,
    /// Arrival: time priority.
    seq: u64,
}

/// The naive reference: a list of orders, sorted on every query.
#[derive(Default)]
struct Model {
    names: BTreeMap<u16, usize>,
    trading: BTreeMap<u16, bool>,
    orders: Vec<ModelOrder>,
    seq: u64,
    trades: Vec<Trade>,
}

impl Model {
    fn find(&self, r: u64) -> Option<usize> {
        self.orders.iter().position(|o| o.reference == r)
    }

    fn add(
        &mut self,
        locate: u16,
        reference: u64,
        side: Side,
        qty: u32,
        price: u32,
    ) -> Result<(), BookError> {
        if !self.names.contains_key(&locate) {
            return Err(BookError::UnknownLocate(locate));
        }
        if qty == 0 {
            return Err(BookError::BadField);
        }
        if self.find(reference).is_some() {
            return Err(BookError::DuplicateOrder(reference));
        }
        self.seq += 1;
        self.orders.push(ModelOrder {
            reference,
            locate,
            side,
            price,
            qty,
            seq: self.seq,
        });
        Ok(())
    }

    /// Takes `q` off an order; returns the order as it was.
    fn reduce(&mut self, r: u64, q: u32) -> Result<ModelOrder, BookError> {
        let i = self.find(r).ok_or(BookError::UnknownOrder(r))?;
        let o = self.orders[i];
        if q > o.qty {
            return Err(BookError::Oversize(r));
        }
        if q == o.qty {
            self.orders.remove(i);
        } else {
            self.orders[i].qty -= q;
        }
        Ok(o)
    }

    fn apply(&mut self, op: &Op) -> Result<(), BookError> {
        match *op {
            Op::Directory(l, s) => {
                self.names.insert(l, s);
                Ok(())
            }
            Op::Trading(l, on) => {
                if !self.names.contains_key(&l) {
                    return Err(BookError::UnknownLocate(l));
                }
                self.trading.insert(l, on);
                Ok(())
            }
            Op::Add {
                locate,
                reference,
                side,
                qty,
                price,
            } => {
                let side = match side {
                    b'B' => Side::Buy,
                    b'S' => Side::Sell,
                    _ => return Err(BookError::BadField),
                };
                self.add(locate, reference, side, qty, price)
            }
            Op::Execute(r, q, mn) => {
                let o = self.reduce(r, q)?;
                self.trades.push(Trade {
                    locate: o.locate,
                    order_reference: r,
                    side: o.side,
                    price: Price::from_raw(o.price),
                    qty: q,
                    match_number: mn,
                    printable: true,
                });
                Ok(())
            }
            Op::ExecuteWithPrice(r, q, mn, printable, p) => {
                let o = self.reduce(r, q)?;
                self.trades.push(Trade {
                    locate: o.locate,
                    order_reference: r,
                    side: o.side,
                    price: Price::from_raw(p),
                    qty: q,
                    match_number: mn,
                    printable,
                });
                Ok(())
            }
            Op::Cancel(r, q) => self.reduce(r, q).map(|_| ()),
            Op::Delete(r) => {
                let i = self.find(r).ok_or(BookError::UnknownOrder(r))?;
                self.orders.remove(i);
                Ok(())
            }
            Op::Replace(old, new, q, p) => {
                let i = self.find(old).ok_or(BookError::UnknownOrder(old))?;
                if new != old && self.find(new).is_some() {
                    return Err(BookError::DuplicateOrder(new));
                }
                if q == 0 {
                    return Err(BookError::BadField);
                }
                let o = self.orders.remove(i);
                self.add(o.locate, new, o.side, q, p)
            }
        }
    }

    /// Bids best first then asks best first, time priority within a level.
    fn orders(&self, locate: u16) -> Vec<FeedOrder> {
        let mut os: Vec<ModelOrder> = self
            .orders
            .iter()
            .filter(|o| o.locate == locate)
            .copied()
            .collect();
        os.sort_by_key(|o| {
            let side = u8::from(o.side == Side::Sell);
            let price = if o.side == Side::Buy {
                u64::from(u32::MAX - o.price)
            } else {
                u64::from(o.price)
            };
            (side, price, o.seq)
        });
        os.iter()
            .map(|o| FeedOrder {
                order_reference: o.reference,
                side: o.side,
                price: Price::from_raw(o.price),
                qty: Qty::new(o.qty),
            })
            .collect()
    }

    fn depth(&self, locate: u16, side: Side) -> Vec<DepthLevel> {
        let mut out: Vec<DepthLevel> = Vec::new();
        for o in self.orders(locate).iter().filter(|o| o.side == side) {
            match out.last_mut() {
                Some(l) if l.price == o.price => {
                    l.qty += u64::from(o.qty.lots());
                    l.orders += 1;
                }
                _ => out.push(DepthLevel {
                    price: o.price,
                    qty: u64::from(o.qty.lots()),
                    orders: 1,
                }),
            }
        }
        out
    }

    /// A level's aggregate now (0, 0 when empty).
    fn level(&self, locate: u16, side: Side, price: u32) -> (u64, u32) {
        self.orders
            .iter()
            .filter(|o| o.locate == locate && o.side == side && o.price == price)
            .fold((0, 0), |(q, n), o| (q + u64::from(o.qty), n + 1))
    }
}

/// Records the book's callbacks.
#[derive(Default)]
struct Seen {
    trades: Vec<Trade>,
    levels: Vec<LevelChange>,
}

impl BookObserver for Seen {
    fn on_trade(&mut self, t: &Trade) {
        self.trades.push(*t);
    }
    fn on_level(&mut self, c: &LevelChange) {
        self.levels.push(*c);
    }
}

/// Applies `ops` to both; compares results and callbacks after every
/// message and the full views after every `every`-th and the last.
fn check(ops: &[Op], reserve: usize, every: usize) -> Result<(), TestCaseError> {
    let mut book = FeedBooks::with_grids(grids());
    book.reserve(reserve);
    let mut model = Model::default();
    let mut seen = Seen::default();
    for (n, op) in ops.iter().enumerate() {
        let bytes = encode(op);
        let m = Message::parse(&bytes).unwrap();
        let levels_before = seen.levels.len();
        let got = book.apply_observed(&m, &mut seen);
        let want = model.apply(op);
        prop_assert_eq!(got, want, "message {} {:?}", n, op);
        // The last change a message reports for each level is the level as
        // the model has it now (a replace at the same price reports the
        // level after the removal, then after the add).
        let mut last: BTreeMap<(u16, u8, u32), LevelChange> = BTreeMap::new();
        for c in &seen.levels[levels_before..] {
            last.insert((c.locate, c.side as u8, c.price.raw()), *c);
        }
        for c in last.values() {
            prop_assert_eq!(
                (c.qty, c.orders),
                model.level(c.locate, c.side, c.price.raw()),
                "message {} {:?}: {:?}",
                n,
                op,
                c
            );
        }
        if got.is_ok() && matches!(op, Op::Add { .. } | Op::Delete(_) | Op::Replace(..)) {
            prop_assert!(
                seen.levels.len() > levels_before,
                "no level change for {:?}",
                op
            );
        }
        if got.is_err() {
            prop_assert_eq!(
                seen.levels.len(),
                levels_before,
                "a rejected message changed levels"
            );
        }
        if n % every != 0 && n + 1 != ops.len() {
            continue;
        }
        for l in [0, 1, 2, 3, 60_000, u16::MAX, 7, 59_999] {
            let orders = model.orders(l);
            prop_assert_eq!(
                &book.orders(l),
                &orders,
                "message {} {:?} locate {}",
                n,
                op,
                l
            );
            let bids = model.depth(l, Side::Buy);
            let asks = model.depth(l, Side::Sell);
            prop_assert_eq!(&book.depth(l, Side::Buy).collect::<Vec<_>>(), &bids);
            prop_assert_eq!(&book.depth(l, Side::Sell).collect::<Vec<_>>(), &asks);
            let top = |d: &[DepthLevel]| d.first().map(|x| (x.price, x.qty));
            prop_assert_eq!(book.top(l), (top(&bids), top(&asks)));
            prop_assert_eq!(book.is_trading(l), model.trading.get(&l) == Some(&true));
            prop_assert_eq!(
                book.symbol(l).map(|s| s.as_str().to_string()),
                model.names.get(&l).map(|&s| SYMBOLS[s].to_string())
            );
        }
        prop_assert_eq!(book.order_count(), model.orders.len());
        let named: Vec<u16> = model.names.keys().copied().collect();
        prop_assert_eq!(book.locates().collect::<Vec<_>>(), named);
    }
    for o in &model.orders {
        prop_assert_eq!(
            book.order(o.reference)
                .map(|f| (f.side, f.price.raw(), f.qty.lots())),
            Some((o.side, o.price, o.qty))
        );
    }
    prop_assert_eq!(&seen.trades, &model.trades);
    prop_assert_eq!(book.trades, model.trades.len() as u64);
    Ok(())
}

fn price() -> impl Strategy<Value = u32> {
    prop_oneof![
        8 => (0..=100u32).prop_map(|i| LOWER + i * TICK),
        1 => LOWER..=UPPER,
        1 => prop_oneof![Just(0u32), Just(LOWER - TICK), Just(UPPER + TICK), Just(u32::MAX), Just(3000)],
    ]
}

/// Locates: mostly the few low ones, sometimes far apart (the books are
/// found through a table up to the highest named locate).
fn locate() -> impl Strategy<Value = u16> {
    prop_oneof![8 => 0..4u16, 1 => Just(60_000u16), 1 => Just(u16::MAX)]
}

fn op(refs: impl Strategy<Value = u64> + Clone + 'static) -> impl Strategy<Value = Op> {
    let qty = prop_oneof![1..20u32, Just(0u32), Just(u32::MAX)];
    let side = prop_oneof![10 => Just(b'B'), 10 => Just(b'S'), 1 => Just(b'Z')];
    prop_oneof![
        1 => (locate(), 0..3usize).prop_map(|(l, s)| Op::Directory(l, s)),
        1 => (locate(), any::<bool>()).prop_map(|(l, t)| Op::Trading(l, t)),
        12 => (prop_oneof![4 => Just(1u16), 3 => Just(2u16), 1 => locate()], refs.clone(), side, qty.clone(), price())
            .prop_map(|(locate, reference, side, qty, price)| Op::Add { locate, reference, side, qty, price }),
        4 => (refs.clone(), qty.clone(), any::<u64>()).prop_map(|(r, q, m)| Op::Execute(r, q, m)),
        2 => (refs.clone(), qty.clone(), any::<u64>(), any::<bool>(), price())
            .prop_map(|(r, q, m, pr, p)| Op::ExecuteWithPrice(r, q, m, pr, p)),
        3 => (refs.clone(), qty.clone()).prop_map(|(r, q)| Op::Cancel(r, q)),
        3 => refs.clone().prop_map(Op::Delete),
        3 => (refs.clone(), refs, qty, price()).prop_map(|(o, n, q, p)| Op::Replace(o, n, q, p)),
    ]
}

/// The directory first (so most messages apply), then random operations.
fn sequence(
    refs: impl Strategy<Value = u64> + Clone + 'static,
    len: std::ops::Range<usize>,
) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(refs), len).prop_map(|ops| {
        let mut all = vec![Op::Directory(1, 0), Op::Directory(2, 1)];
        all.extend(ops);
        all
    })
}

/// Few references, so that duplicates, unknown references and levels with
/// several orders are common; extremes and tokex-style slot+generation ids.
fn few_refs() -> impl Strategy<Value = u64> + Clone {
    prop_oneof![
        8 => 1..24u64,
        1 => Just(u64::MAX),
        1 => (1..4u64, 0..4u64).prop_map(|(g, s)| (g << 32) | s),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000)
    ))]

    #[test]
    fn fast_book_equals_the_naive_model_on_random_itch(ops in sequence(few_refs(), 0..120)) {
        check(&ops, 0, 1)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Thousands of live orders: the index and the pool grow (and, with a
    /// reservation, do not need to) and every order stays findable.
    #[test]
    fn fast_book_equals_the_naive_model_while_the_index_grows(
        ops in sequence(1..6_000u64, 2_000..4_000),
        reserve in prop_oneof![Just(0usize), Just(8_192usize)],
    ) {
        check(&ops, reserve, 97)?;
    }
}
