//! A feed handler rebuilds, from the ITCH messages alone, exactly the book
//! the engine holds: on a long random flow in memory, and from the
//! `itch.bin` that `tokex replay` writes.

use std::path::Path;

use tokex::bench::engine::{mixed_flow, FlowOp, Rng};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event, EventSink, NewOrder};
use tokex::feed::book::FeedBooks;
use tokex::feed::itch_encoder::ItchEncoder;
use tokex::types::{AccountId, Nanos, OrderId, Price, Qty, Side, Tif};
use tokex::wire::itch::{self, Message};

fn contracts() -> ContractSet {
    ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap()
}

/// Encodes every event to ITCH, decodes it again and applies it to the
/// feed books, as a consumer at the end of the wire would.
struct Wire<'a> {
    encoder: &'a ItchEncoder,
    feed: &'a mut FeedBooks,
    recent: &'a mut Vec<OrderId>,
    now: Nanos,
}

impl EventSink for Wire<'_> {
    fn event(&mut self, e: &Event) {
        if let Event::BookAdd { order, .. } | Event::BookReplace { order, .. } = e {
            self.recent.push(*order);
        }
        let feed = &mut *self.feed;
        self.encoder.encode(self.now, e, &mut |bytes| {
            let m = Message::parse(bytes).expect("tokex decodes what it encodes");
            feed.apply(&m, &mut |_, _, _, _| {})
                .expect("the feed accepts every message");
        });
    }
}

fn assert_same_books(engine: &Engine, feed: &FeedBooks, set: &ContractSet) {
    for c in set.iter() {
        let mut want = Vec::new();
        for side in [Side::Buy, Side::Sell] {
            want.extend(
                engine
                    .resting(c.id, side)
                    .map(|o| (o.order.0, o.side, o.price, o.qty)),
            );
        }
        let got: Vec<_> = feed
            .orders(c.id.0 + 1)
            .into_iter()
            .map(|o| (o.order_reference, o.side, o.price, o.qty))
            .collect();
        assert_eq!(got, want, "{}", c.symbol);
    }
}

#[test]
fn feed_rebuilds_the_engine_book_from_itch_over_a_random_flow() {
    let set = contracts();
    let encoder = ItchEncoder::new(&set);
    let mut feed = FeedBooks::new();
    encoder.start_of_day(Nanos(0), &mut |b| {
        feed.apply(&Message::parse(b).unwrap(), &mut |_, _, _, _| {})
            .unwrap();
    });
    let mut engine = Engine::new(
        &set,
        EngineConfig {
            max_orders: 1 << 18,
        },
    );
    let mut recent: Vec<OrderId> = Vec::new();
    let mut rng = Rng::new(5);
    let mut trades = 0u64;
    // Two contracts with the same flow model, interleaved.
    for (k, c) in set.iter().take(2).enumerate() {
        let flow = mixed_flow(100_000, 77 + k as u64, c);
        for (i, op) in flow.iter().enumerate() {
            let now = Nanos(i as u64);
            let picked = match *op {
                FlowOp::Cancel { pick } | FlowOp::Replace { pick, .. } if !recent.is_empty() => {
                    Some(recent[pick as usize % recent.len()])
                }
                _ => None,
            };
            let mut w = Wire {
                encoder: &encoder,
                feed: &mut feed,
                recent: &mut recent,
                now,
            };
            match *op {
                FlowOp::Add {
                    account,
                    side,
                    price,
                    qty,
                }
                | FlowOp::Aggress {
                    account,
                    side,
                    price,
                    qty,
                } => {
                    let tif = if matches!(op, FlowOp::Add { .. }) {
                        Tif::Day
                    } else {
                        Tif::Ioc
                    };
                    let o = NewOrder {
                        account: AccountId(account),
                        tag: 0,
                        instrument: c.id,
                        side,
                        price: Price::from_raw(price),
                        qty: Qty::new(qty),
                        tif,
                    };
                    engine.enter(now, &o, &mut w);
                }
                FlowOp::Cancel { .. } => {
                    if let Some((id, o)) = picked.and_then(|id| engine.order(id).map(|o| (id, o))) {
                        let keep = rng.below(2) as u32 * o.qty.lots() / 2;
                        engine.cancel(now, o.account, id, Qty::new(keep), 0, &mut w);
                    }
                }
                FlowOp::Replace { ticks, qty, .. } => {
                    if let Some((id, o)) = picked.and_then(|id| engine.order(id).map(|o| (id, o))) {
                        let p = (o.price.raw() as i64 + ticks as i64 * c.tick.raw() as i64) as u32;
                        engine.replace(
                            now,
                            o.account,
                            id,
                            0,
                            Price::from_raw(p),
                            Qty::new(qty),
                            &mut w,
                        );
                    }
                }
            }
            if recent.len() > 4096 {
                recent.drain(..2048);
            }
        }
        trades = engine.match_number();
    }
    assert!(trades > 1000, "the flow must trade");
    assert!(feed.order_count() > 100, "the flow must leave a book");
    assert_eq!(feed.errors, 0);
    assert_same_books(&engine, &feed, &set);
    assert_eq!(feed.trades, trades);
}

#[test]
fn replay_itch_bin_rebuilds_the_final_book_csv() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join(format!("tokex-itchbin-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let summary = tokex::replay::run(&tokex::replay::ReplayArgs {
        orders: root.join("tests/data/replay/basic.csv"),
        out: out.clone(),
        contracts: root.join("contracts"),
    })
    .unwrap();
    let bin = std::fs::read(out.join("itch.bin")).unwrap();
    let mut feed = FeedBooks::new();
    let mut n = 0;
    for m in itch::stream(&bin) {
        feed.apply(&m.unwrap(), &mut |_, _, _, _| {}).unwrap();
        n += 1;
    }
    assert_eq!(n, summary.itch_messages);
    assert_eq!(feed.trades, summary.trades);
    let set = contracts();
    let mut rebuilt = String::from("symbol,side,price,qty\n");
    for c in set.iter() {
        for o in feed.orders(c.id.0 + 1) {
            let side = if o.side == Side::Buy { 'B' } else { 'S' };
            rebuilt += &format!(
                "{},{side},{},{}\n",
                c.symbol,
                o.price.to_string_decimals(c.price_decimals()),
                o.qty
            );
        }
    }
    let book: String = std::fs::read_to_string(out.join("book.csv"))
        .unwrap()
        .lines()
        .map(|l| l.split(',').take(4).collect::<Vec<_>>().join(",") + "\n")
        .collect();
    assert_eq!(rebuilt, book);
    std::fs::remove_dir_all(&out).unwrap();
}
