//! The feed book allocates nothing per message in steady state: after the
//! start of day and a warm-up, the rest of a long engine-produced ITCH
//! stream (adds, executions, cancels, deletes, replaces) is applied under a
//! counting global allocator with zero allocations, with the book holding
//! tens of thousands of orders.

use std::alloc::System;
use std::path::Path;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokex::bench::codec;
use tokex::contract::ContractSet;
use tokex::feed::book::{BookObserver, FeedBooks, LevelChange, Trade};
use tokex::wire::itch;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Counts callbacks, so that they are not optimised away.
#[derive(Default)]
struct Count {
    trades: u64,
    levels: u64,
}

impl BookObserver for Count {
    fn on_trade(&mut self, _: &Trade) {
        self.trades += 1;
    }
    fn on_level(&mut self, _: &LevelChange) {
        self.levels += 1;
    }
}

#[test]
fn a_long_itch_stream_allocates_nothing_after_warm_up() {
    let contracts =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let (buf, n) = codec::itch_stream(&contracts, 400_000, 21);
    let messages: Vec<&[u8]> = {
        let mut out = Vec::with_capacity(n);
        let mut rest = &buf[..];
        while let [a, b, tail @ ..] = rest {
            let len = usize::from(u16::from_be_bytes([*a, *b]));
            out.push(&tail[..len]);
            rest = &tail[len..];
        }
        out
    };
    assert_eq!(messages.len(), n);
    let (warm, steady) = messages.split_at(n / 10);

    let mut books = FeedBooks::with_contracts(&contracts);
    books.reserve(1 << 17);
    let mut count = Count::default();
    for m in warm {
        books
            .apply_observed(&itch::Message::parse(m).unwrap(), &mut count)
            .unwrap();
    }

    // The counter works: a query that builds a Vec allocates.
    let probe = Region::new(GLOBAL);
    drop(std::hint::black_box(books.orders(1)));
    assert!(probe.change().allocations > 0);

    let region = Region::new(GLOBAL);
    for m in steady {
        let _ = books.apply_observed(&itch::Message::parse(m).unwrap(), &mut count);
    }
    let stats = region.change();

    assert_eq!(books.errors, 0);
    assert!(books.trades > 10_000, "the stream must trade");
    assert!(
        books.order_count() > 10_000,
        "the book must be deep: {}",
        books.order_count()
    );
    assert!(count.levels > steady.len() as u64 / 2);
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
