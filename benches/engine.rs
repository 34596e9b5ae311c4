//! Engine operations in ns/op, tokex beside the `lobster` crate on the same
//! operations: resting add, cancel, aggressive match of 1..=5 levels,
//! replace, and the realistic mixed flow of `tokex bench engine`.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokex::bench::engine::{mixed_flow, LobsterRunner, TokexRunner};
use tokex::contract::{Contract, ContractSet};
use tokex::engine::{Engine, EngineConfig, NewOrder};
use tokex::types::{AccountId, Nanos, OrderId, Price, Qty, Side, Tif};

fn setup() -> (ContractSet, Contract) {
    let set =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let c = set.iter().next().unwrap().clone();
    (set, c)
}

fn order(c: &Contract, account: u32, side: Side, price: u32, qty: u32, tif: Tif) -> NewOrder {
    NewOrder {
        account: AccountId(account),
        tag: 0,
        instrument: c.id,
        side,
        price: Price::from_raw(price),
        qty: Qty::new(qty),
        tif,
    }
}

fn ops(crit: &mut Criterion) {
    let (set, c) = setup();
    let tick = c.tick.raw();
    let mid = c.reference_price.raw();
    let mut g = crit.benchmark_group("engine");
    g.throughput(Throughput::Elements(1));

    // Add a resting order then cancel it (two operations per iteration).
    g.bench_function("tokex/add_resting+cancel", |b| {
        let mut e = Engine::new(
            &set,
            EngineConfig {
                max_orders: 1 << 16,
            },
        );
        for i in 0..1000 {
            e.enter(
                Nanos(0),
                &order(&c, 1, Side::Sell, mid + (1 + i % 20) * tick, 5, Tif::Day),
                &mut (),
            );
        }
        let mut ids: Vec<OrderId> = Vec::with_capacity(1);
        b.iter(|| {
            ids.clear();
            e.enter(
                Nanos(1),
                &order(&c, 2, Side::Buy, mid - 3 * tick, 5, Tif::Day),
                &mut RecordId(&mut ids),
            );
            e.cancel(Nanos(2), AccountId(2), ids[0], Qty::ZERO, 0, &mut ());
        })
    });

    for levels in 1..=5u32 {
        g.bench_function(format!("tokex/aggressive_match_{levels}_levels"), |b| {
            b.iter_batched_ref(
                || {
                    let mut e = Engine::new(
                        &set,
                        EngineConfig {
                            max_orders: 1 << 12,
                        },
                    );
                    for l in 0..levels {
                        e.enter(
                            Nanos(0),
                            &order(&c, 1, Side::Sell, mid + l * tick, 2, Tif::Day),
                            &mut (),
                        );
                    }
                    e
                },
                |e| {
                    e.enter(
                        Nanos(1),
                        &order(&c, 2, Side::Buy, mid + 10 * tick, 2 * levels, Tif::Ioc),
                        &mut (),
                    )
                },
                BatchSize::SmallInput,
            )
        });
        g.bench_function(format!("lobster/aggressive_match_{levels}_levels"), |b| {
            b.iter_batched_ref(
                || {
                    let mut book = lobster::OrderBook::new(1 << 12, 16, false);
                    for l in 0..levels {
                        book.execute(lobster::OrderType::Limit {
                            id: l as u128 + 1,
                            side: lobster::Side::Ask,
                            qty: 2,
                            price: (mid + l * tick) as u64,
                        });
                    }
                    book
                },
                |book| {
                    book.execute(lobster::OrderType::Market {
                        id: 99,
                        side: lobster::Side::Bid,
                        qty: 2 * levels as u64,
                    })
                },
                BatchSize::SmallInput,
            )
        });
    }

    // Shrink one lot at a time (keeps priority and id); every 999 replaces
    // the order is entered afresh, which the per-iteration figure absorbs.
    g.bench_function("tokex/replace_keep_priority", |b| {
        let mut e = Engine::new(
            &set,
            EngineConfig {
                max_orders: 1 << 12,
            },
        );
        let mut ids = Vec::with_capacity(1);
        let mut q = 1;
        b.iter(|| {
            if q == 1 {
                if let Some(&old) = ids.first() {
                    e.cancel(Nanos(0), AccountId(1), old, Qty::ZERO, 0, &mut ());
                }
                ids.clear();
                e.enter(
                    Nanos(0),
                    &order(&c, 1, Side::Buy, mid - tick, 1000, Tif::Day),
                    &mut RecordId(&mut ids),
                );
                q = 1000;
            }
            q -= 1;
            e.replace(
                Nanos(1),
                AccountId(1),
                ids[0],
                0,
                Price::from_raw(mid - tick),
                Qty::new(q),
                &mut (),
            );
        })
    });
    // Move the order one tick and back: loses priority, new id each time.
    g.bench_function("tokex/replace_new_price", |b| {
        let mut e = Engine::new(
            &set,
            EngineConfig {
                max_orders: 1 << 12,
            },
        );
        let mut ids = Vec::with_capacity(1);
        e.enter(
            Nanos(0),
            &order(&c, 1, Side::Buy, mid - tick, 10, Tif::Day),
            &mut RecordId(&mut ids),
        );
        let mut up = false;
        b.iter(|| {
            up = !up;
            let p = if up { mid - 2 * tick } else { mid - tick };
            let id = ids[0];
            ids.clear();
            e.replace(
                Nanos(1),
                AccountId(1),
                id,
                0,
                Price::from_raw(p),
                Qty::new(10),
                &mut RecordId(&mut ids),
            );
        })
    });
    g.finish();
}

/// Remembers the ids of accepted and replaced orders.
struct RecordId<'a>(&'a mut Vec<OrderId>);

impl tokex::engine::EventSink for RecordId<'_> {
    fn event(&mut self, e: &tokex::engine::Event) {
        if let tokex::engine::Event::Accepted { order, .. }
        | tokex::engine::Event::Replaced { order, .. } = e
        {
            if self.0.len() < self.0.capacity() {
                self.0.push(*order);
            }
        }
    }
}

fn mixed(crit: &mut Criterion) {
    let (set, c) = setup();
    let flow = mixed_flow(100_000, 42, &c);
    let mut g = crit.benchmark_group("engine_mixed_flow");
    g.throughput(Throughput::Elements(flow.len() as u64));
    g.sample_size(20);
    g.bench_function("tokex", |b| {
        b.iter_batched_ref(
            || TokexRunner::new(&set, &c, 1 << 18),
            |r| flow.iter().for_each(|op| r.apply(op)),
            BatchSize::LargeInput,
        )
    });
    g.bench_function("lobster", |b| {
        b.iter_batched_ref(
            || LobsterRunner::new(1 << 18),
            |r| flow.iter().for_each(|op| r.apply(op, c.tick.raw())),
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, ops, mixed);
criterion_main!(benches);
