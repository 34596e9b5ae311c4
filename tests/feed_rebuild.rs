//! A feed handler rebuilds, from the ITCH messages alone, exactly the book
//! the engine holds: on a long random flow in memory, and from the
//! `itch.bin` that `tokex replay` writes.

use std::path::Path;

use tokex::bench::engine::{mixed_flow, TokexRunner};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, Event, EventSink};
use tokex::feed::book::FeedBooks;
use tokex::feed::itch_encoder::ItchEncoder;
use tokex::types::{Nanos, Side};
use tokex::wire::itch::{self, Message};

fn contracts() -> ContractSet {
    ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap()
}

/// Encodes every event to ITCH, decodes it again and applies it to the
/// feed books, as a consumer at the end of the wire would.
struct Wire<'a> {
    encoder: &'a ItchEncoder,
    feed: &'a mut FeedBooks,
}

impl EventSink for Wire<'_> {
    fn event(&mut self, e: &Event) {
        let feed = &mut *self.feed;
        self.encoder.encode(Nanos(0), e, &mut |bytes| {
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

/// Runs the mixed flow through the engine, encodes its events to ITCH and
/// rebuilds them into `feed`; the books must equal the engine's.
fn rebuild_random_flow(mut feed: FeedBooks) {
    let set = contracts();
    let c = set.iter().next().unwrap().clone();
    let encoder = ItchEncoder::new(&set);
    encoder.start_of_day(Nanos(0), &mut |b| {
        feed.apply(&Message::parse(b).unwrap(), &mut |_, _, _, _| {})
            .unwrap();
    });
    let mut runner = TokexRunner::new(&set, &c, 1 << 18);
    for op in &mixed_flow(200_000, 77, &c) {
        runner.apply_with(
            op,
            &mut Wire {
                encoder: &encoder,
                feed: &mut feed,
            },
        );
    }
    let trades = runner.engine.match_number();
    assert!(trades > 1000, "the flow must trade");
    assert!(feed.order_count() > 100, "the flow must leave a book");
    assert_eq!(feed.errors, 0);
    assert_same_books(&runner.engine, &feed, &set);
    assert_eq!(feed.trades, trades);
}

#[test]
fn feed_with_contract_ladders_rebuilds_the_engine_book_over_a_random_flow() {
    rebuild_random_flow(FeedBooks::with_contracts(&contracts()));
}

#[test]
fn feed_without_price_grids_rebuilds_the_engine_book_over_a_random_flow() {
    rebuild_random_flow(FeedBooks::new());
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
        config: None,
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
