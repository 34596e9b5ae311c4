//! Differential test: random enter/cancel/replace sequences run through the
//! engine and through a deliberately naive reference book (a Vec scanned in
//! full for every decision). Every event and the final books must agree.
//!
//! Cases default to 20,000 sequences; set PROPTEST_CASES for a longer run.

use std::collections::HashMap;
use std::path::Path;

use proptest::prelude::*;
use tokex::contract::{ContractSet, StpMode};
use tokex::engine::{CancelReason, Engine, EngineConfig, Event, NewOrder, RejectReason};
use tokex::types::{AccountId, InstrumentId, Nanos, OrderId, Price, Qty, Side, Tif};

const CONTRACTS: &str = r#"
[[contract]]
symbol = "RESTING"
reference_price = "6.500"
tick = "0.001"
limit_pct = 1
max_order_qty = 12
stp = "cancel-resting"

[[contract]]
symbol = "INCOMING"
reference_price = "2.150"
tick = "0.005"
limit_pct = 2
max_order_qty = 12
stp = "cancel-incoming"

[[contract]]
symbol = "BOTH"
reference_price = "3.850"
tick = "0.001"
limit_pct = 1
max_order_qty = 12
stp = "cancel-both"
"#;

fn contracts() -> ContractSet {
    let mut set = ContractSet::default();
    set.add_toml(Path::new("differential.toml"), CONTRACTS)
        .unwrap();
    set
}

/// Events with order ids replaced by tags, so both sides can be compared.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Accepted {
        tag: u64,
        side: Side,
        price: u32,
        qty: u32,
        tif: Tif,
    },
    Rejected {
        tag: u64,
        reason: RejectReason,
    },
    Replaced {
        tag: u64,
        kept: bool,
        price: u32,
        qty: u32,
    },
    Canceled {
        tag: u64,
        decrement: u32,
        remaining: u32,
        reason: CancelReason,
    },
    Executed {
        number: u64,
        price: u32,
        qty: u32,
        taker: u64,
        taker_left: u32,
        maker: u64,
        maker_left: u32,
    },
    BookAdd {
        tag: u64,
        price: u32,
        qty: u32,
    },
    BookReduce {
        tag: u64,
        qty: u32,
    },
    BookDelete {
        tag: u64,
    },
    BookReplace {
        old: u64,
        tag: u64,
        price: u32,
        qty: u32,
    },
}

#[derive(Debug, Clone)]
enum Op {
    Enter {
        account: u32,
        instrument: u16,
        side: Side,
        price: i32,
        qty: u32,
        tif: Tif,
    },
    Cancel {
        account: u32,
        pick: usize,
        qty: u32,
    },
    Replace {
        account: u32,
        pick: usize,
        price: i32,
        qty: u32,
    },
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn tif() -> impl Strategy<Value = Tif> {
    prop_oneof![6 => Just(Tif::Day), 2 => Just(Tif::Ioc), 2 => Just(Tif::Fok)]
}

/// Price as a tick offset from the reference; rare values are off the tick
/// grid (encoded as +1000) or outside the limits.
fn price() -> impl Strategy<Value = i32> {
    prop_oneof![
        20 => -4i32..=4,
        1 => Just(1000),
        1 => prop_oneof![Just(-200i32), Just(200i32)],
    ]
}

fn qty() -> impl Strategy<Value = u32> {
    prop_oneof![20 => 1u32..=8, 1 => Just(0u32), 1 => Just(13u32)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u32..3, 0u16..4, side(), price(), qty(), tif()).prop_map(
            |(account, instrument, side, price, qty, tif)| Op::Enter { account, instrument, side, price, qty, tif }
        ),
        3 => (0u32..3, any::<usize>(), 0u32..6).prop_map(|(account, pick, qty)| Op::Cancel { account, pick, qty }),
        2 => (0u32..3, any::<usize>(), price(), qty()).prop_map(|(account, pick, price, qty)| Op::Replace { account, pick, price, qty }),
    ]
}

/// The naive reference: every resting order in one Vec per instrument.
#[derive(Clone, Debug)]
struct MOrder {
    tag: u64,
    account: u32,
    side: Side,
    price: u32,
    open: u32,
    /// Time priority: smaller is earlier.
    seq: u64,
}

struct Spec {
    lower: u32,
    upper: u32,
    tick: u32,
    max: u32,
    stp: StpMode,
}

struct Model {
    specs: Vec<Spec>,
    books: Vec<Vec<MOrder>>,
    seq: u64,
    matches: u64,
    out: Vec<Ev>,
}

impl Model {
    fn new(set: &ContractSet) -> Model {
        let specs: Vec<Spec> = set
            .iter()
            .map(|c| Spec {
                lower: c.lower_limit.raw(),
                upper: c.upper_limit.raw(),
                tick: c.tick.raw(),
                max: c.max_order_qty.lots(),
                stp: c.stp,
            })
            .collect();
        let books = vec![Vec::new(); specs.len()];
        Model {
            specs,
            books,
            seq: 0,
            matches: 0,
            out: Vec::new(),
        }
    }

    fn check(&self, i: usize, price: u32, qty: u32) -> Result<(), RejectReason> {
        let s = &self.specs[i];
        if qty == 0 {
            Err(RejectReason::InvalidQty)
        } else if qty > s.max {
            Err(RejectReason::QtyAboveMax)
        } else if !price.is_multiple_of(s.tick) {
            Err(RejectReason::PriceOffTick)
        } else if price < s.lower || price > s.upper {
            Err(RejectReason::PriceOutsideLimits)
        } else {
            Ok(())
        }
    }

    fn crosses(side: Side, resting_price: u32, limit: u32) -> bool {
        match side {
            Side::Buy => resting_price <= limit,
            Side::Sell => resting_price >= limit,
        }
    }

    /// Opposite orders that cross `limit`, in the order matching visits them.
    fn queue(&self, i: usize, side: Side, limit: u32) -> Vec<MOrder> {
        let mut q: Vec<MOrder> = self.books[i]
            .iter()
            .filter(|o| o.side != side && Self::crosses(side, o.price, limit))
            .cloned()
            .collect();
        q.sort_by_key(|o| {
            let p = if side == Side::Buy {
                o.price as i64
            } else {
                -(o.price as i64)
            };
            (p, o.seq)
        });
        q
    }

    fn remove(&mut self, i: usize, tag: u64) {
        self.books[i].retain(|o| o.tag != tag);
    }

    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        tag: u64,
        account: u32,
        i: usize,
        side: Side,
        price: u32,
        qty: u32,
        tif: Tif,
    ) {
        if i >= self.specs.len() {
            return self.out.push(Ev::Rejected {
                tag,
                reason: RejectReason::UnknownInstrument,
            });
        }
        if let Err(reason) = self.check(i, price, qty) {
            return self.out.push(Ev::Rejected { tag, reason });
        }
        self.out.push(Ev::Accepted {
            tag,
            side,
            price,
            qty,
            tif,
        });
        if tif == Tif::Fok {
            let mut need = qty;
            let mut ok = false;
            for o in self.queue(i, side, price) {
                if o.account == account {
                    if self.specs[i].stp != StpMode::CancelResting {
                        break;
                    }
                    continue;
                }
                need = need.saturating_sub(o.open);
                if need == 0 {
                    ok = true;
                    break;
                }
            }
            if !ok {
                return self.out.push(Ev::Canceled {
                    tag,
                    decrement: qty,
                    remaining: 0,
                    reason: CancelReason::FillOrKill,
                });
            }
        }
        self.aggress(tag, account, i, side, price, qty, tif);
    }

    /// Matches an incoming order, then rests or cancels the rest.
    #[allow(clippy::too_many_arguments)]
    fn aggress(
        &mut self,
        tag: u64,
        account: u32,
        i: usize,
        side: Side,
        price: u32,
        qty: u32,
        tif: Tif,
    ) {
        let mut open = qty;
        let mut stp_cancel = false;
        while open > 0 {
            let Some(maker) = self.queue(i, side, price).into_iter().next() else {
                break;
            };
            if maker.account == account {
                let stp = self.specs[i].stp;
                if stp != StpMode::CancelIncoming {
                    self.remove(i, maker.tag);
                    self.out.push(Ev::Canceled {
                        tag: maker.tag,
                        decrement: maker.open,
                        remaining: 0,
                        reason: CancelReason::SelfTrade,
                    });
                    self.out.push(Ev::BookDelete { tag: maker.tag });
                }
                if stp != StpMode::CancelResting {
                    stp_cancel = true;
                    break;
                }
                continue;
            }
            let fill = open.min(maker.open);
            open -= fill;
            self.matches += 1;
            let left = maker.open - fill;
            self.out.push(Ev::Executed {
                number: self.matches,
                price: maker.price,
                qty: fill,
                taker: tag,
                taker_left: open,
                maker: maker.tag,
                maker_left: left,
            });
            if left == 0 {
                self.remove(i, maker.tag);
            } else {
                self.books[i]
                    .iter_mut()
                    .find(|o| o.tag == maker.tag)
                    .unwrap()
                    .open = left;
            }
        }
        if open == 0 {
            return;
        }
        let reason = if stp_cancel {
            CancelReason::SelfTrade
        } else {
            match tif {
                Tif::Day => {
                    self.seq += 1;
                    self.books[i].push(MOrder {
                        tag,
                        account,
                        side,
                        price,
                        open,
                        seq: self.seq,
                    });
                    return self.out.push(Ev::BookAdd {
                        tag,
                        price,
                        qty: open,
                    });
                }
                Tif::Ioc => CancelReason::ImmediateOrCancel,
                Tif::Fok => CancelReason::FillOrKill,
            }
        };
        self.out.push(Ev::Canceled {
            tag,
            decrement: open,
            remaining: 0,
            reason,
        });
    }

    fn find(&self, account: u32, tag: u64) -> Option<(usize, MOrder)> {
        self.books.iter().enumerate().find_map(|(i, b)| {
            b.iter()
                .find(|o| o.tag == tag && o.account == account)
                .map(|o| (i, o.clone()))
        })
    }

    fn cancel(&mut self, account: u32, tag: u64, qty: u32) {
        let Some((i, o)) = self.find(account, tag) else {
            return self.out.push(Ev::Rejected {
                tag,
                reason: RejectReason::UnknownOrder,
            });
        };
        if qty >= o.open {
            return;
        }
        self.out.push(Ev::Canceled {
            tag,
            decrement: o.open - qty,
            remaining: qty,
            reason: CancelReason::UserRequested,
        });
        if qty == 0 {
            self.remove(i, tag);
            self.out.push(Ev::BookDelete { tag });
        } else {
            self.books[i]
                .iter_mut()
                .find(|x| x.tag == tag)
                .unwrap()
                .open = qty;
            self.out.push(Ev::BookReduce {
                tag,
                qty: o.open - qty,
            });
        }
    }

    fn replace(&mut self, account: u32, old: u64, new: u64, price: u32, qty: u32) {
        let Some((i, o)) = self.find(account, old) else {
            return self.out.push(Ev::Rejected {
                tag: new,
                reason: RejectReason::UnknownOrder,
            });
        };
        if let Err(reason) = self.check(i, price, qty) {
            return self.out.push(Ev::Rejected { tag: new, reason });
        }
        if price == o.price && qty <= o.open {
            let m = self.books[i].iter_mut().find(|x| x.tag == old).unwrap();
            m.tag = new;
            m.open = qty;
            self.out.push(Ev::Replaced {
                tag: new,
                kept: true,
                price,
                qty,
            });
            if qty < o.open {
                self.out.push(Ev::BookReduce {
                    tag: new,
                    qty: o.open - qty,
                });
            }
            return;
        }
        self.remove(i, old);
        self.out.push(Ev::Replaced {
            tag: new,
            kept: false,
            price,
            qty,
        });
        if !self.queue(i, o.side, price).is_empty() {
            self.out.push(Ev::BookDelete { tag: old });
            self.aggress(new, account, i, o.side, price, qty, Tif::Day);
        } else {
            self.seq += 1;
            self.books[i].push(MOrder {
                tag: new,
                account,
                side: o.side,
                price,
                open: qty,
                seq: self.seq,
            });
            self.out.push(Ev::BookReplace {
                old,
                tag: new,
                price,
                qty,
            });
        }
    }

    /// (tag, price, qty) per instrument and side, best first, time priority.
    fn book(&self, i: usize, side: Side) -> Vec<(u64, u32, u32)> {
        let mut v: Vec<&MOrder> = self.books[i].iter().filter(|o| o.side == side).collect();
        v.sort_by_key(|o| {
            let p = if side == Side::Buy {
                -(o.price as i64)
            } else {
                o.price as i64
            };
            (p, o.seq)
        });
        v.iter().map(|o| (o.tag, o.price, o.open)).collect()
    }
}

/// Translates engine events, tracking which order id carries which tag.
fn normalize(events: &[Event], ids: &mut HashMap<OrderId, u64>) -> Vec<Ev> {
    let mut out = Vec::new();
    for e in events {
        out.push(match *e {
            Event::Accepted {
                tag,
                order,
                side,
                price,
                qty,
                tif,
                ..
            } => {
                ids.insert(order, tag);
                Ev::Accepted {
                    tag,
                    side,
                    price: price.raw(),
                    qty: qty.lots(),
                    tif,
                }
            }
            Event::Rejected { tag, reason, .. } => Ev::Rejected { tag, reason },
            Event::Replaced {
                tag,
                old_order,
                order,
                price,
                qty,
                ..
            } => {
                ids.insert(order, tag);
                Ev::Replaced {
                    tag,
                    kept: old_order == order,
                    price: price.raw(),
                    qty: qty.lots(),
                }
            }
            Event::Canceled {
                tag,
                decrement,
                remaining,
                reason,
                ..
            } => Ev::Canceled {
                tag,
                decrement: decrement.lots(),
                remaining: remaining.lots(),
                reason,
            },
            Event::Executed {
                match_number,
                price,
                qty,
                taker,
                maker,
                ..
            } => Ev::Executed {
                number: match_number,
                price: price.raw(),
                qty: qty.lots(),
                taker: taker.tag,
                taker_left: taker.remaining.lots(),
                maker: maker.tag,
                maker_left: maker.remaining.lots(),
            },
            Event::BookAdd {
                order, price, qty, ..
            } => Ev::BookAdd {
                tag: ids[&order],
                price: price.raw(),
                qty: qty.lots(),
            },
            Event::BookReduce { order, qty, .. } => Ev::BookReduce {
                tag: ids[&order],
                qty: qty.lots(),
            },
            Event::BookDelete { order, .. } => Ev::BookDelete { tag: ids[&order] },
            Event::BookReplace {
                old_order,
                order,
                price,
                qty,
                ..
            } => Ev::BookReplace {
                old: ids[&old_order],
                tag: ids[&order],
                price: price.raw(),
                qty: qty.lots(),
            },
            Event::PhaseChanged { .. } | Event::Imbalance { .. } | Event::Cross { .. } => continue,
        });
    }
    out
}

fn run(ops: &[Op]) -> Result<(), TestCaseError> {
    let set = contracts();
    let mut engine = Engine::new(&set, EngineConfig { max_orders: 4096 });
    let mut model = Model::new(&set);
    let mut ids: HashMap<OrderId, u64> = HashMap::new();
    // Every tag issued: (owner account, engine order id it names now).
    let mut tags: Vec<(u32, Option<OrderId>)> = Vec::new();
    let mut events = Vec::new();
    let to_price = |i: usize, off: i32| -> u32 {
        let c = set.get(InstrumentId(i.min(2) as u16)).unwrap();
        if off == 1000 {
            return c.reference_price.raw() + 1;
        }
        (c.reference_price.raw() as i64 + off as i64 * c.tick.raw() as i64) as u32
    };
    for (step, op) in ops.iter().enumerate() {
        let now = Nanos(step as u64);
        events.clear();
        model.out.clear();
        match *op {
            Op::Enter {
                account,
                instrument,
                side,
                price,
                qty,
                tif,
            } => {
                let tag = tags.len() as u64;
                tags.push((account, None));
                let p = to_price(instrument as usize, price);
                engine.enter(
                    now,
                    &NewOrder {
                        account: AccountId(account),
                        tag,
                        instrument: InstrumentId(instrument),
                        side,
                        price: Price::from_raw(p),
                        qty: Qty::new(qty),
                        tif,
                    },
                    &mut events,
                );
                model.enter(tag, account, instrument as usize, side, p, qty, tif);
            }
            Op::Cancel { account, pick, qty } => {
                if tags.is_empty() {
                    continue;
                }
                let tag = (pick % tags.len()) as u64;
                let order = tags[tag as usize].1.unwrap_or(OrderId(0));
                engine.cancel(
                    now,
                    AccountId(account),
                    order,
                    Qty::new(qty),
                    tag,
                    &mut events,
                );
                model.cancel(account, tag, qty);
            }
            Op::Replace {
                account,
                pick,
                price,
                qty,
            } => {
                if tags.is_empty() {
                    continue;
                }
                let old = (pick % tags.len()) as u64;
                let new = tags.len() as u64;
                tags.push((account, None));
                let order = tags[old as usize].1.unwrap_or(OrderId(0));
                // The instrument comes from the order; an unknown order gets any price.
                let instrument = engine.order(order).map_or(0, |o| o.instrument.0);
                let p = to_price(instrument as usize, price);
                engine.replace(
                    now,
                    AccountId(account),
                    order,
                    new,
                    Price::from_raw(p),
                    Qty::new(qty),
                    &mut events,
                );
                model.replace(account, old, new, p, qty);
                if events.iter().any(|e| matches!(e, Event::Replaced { .. })) {
                    tags[old as usize].1 = None;
                }
            }
        }
        for e in &events {
            match *e {
                Event::Accepted { tag, order, .. } | Event::Replaced { tag, order, .. } => {
                    tags[tag as usize].1 = Some(order);
                }
                _ => {}
            }
        }
        let got = normalize(&events, &mut ids);
        prop_assert_eq!(&got, &model.out, "step {} {:?}", step, op);
    }
    for i in 0..3u16 {
        for side in [Side::Buy, Side::Sell] {
            let got: Vec<(u64, u32, u32)> = engine
                .resting(InstrumentId(i), side)
                .map(|o| (o.tag, o.price.raw(), o.qty.lots()))
                .collect();
            prop_assert_eq!(got, model.book(i as usize, side));
        }
    }
    let live: usize = model.books.iter().map(Vec::len).sum();
    prop_assert_eq!(engine.live_orders(), live);
    Ok(())
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), max_shrink_iters: 20_000, ..ProptestConfig::default() })]

    #[test]
    fn engine_agrees_with_the_naive_reference_book(ops in proptest::collection::vec(op(), 1..60)) {
        run(&ops)?;
    }
}
