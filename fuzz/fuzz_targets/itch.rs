//! ITCH 5.0 messages and length-prefixed streams on arbitrary bytes, applied
//! to the feed handler's books (which must count, never panic on, nonsense);
//! the dispatch by groups of four must hand over exactly what the stream
//! yields.
//! Two symbols have price ladders, so directories naming them (at several
//! locates, renamed, emptied) exercise the ladders' hand-over too; run with
//! `-dict=itch.dict` to find them sooner.
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::feed::book::{FeedBooks, PriceGrid};
use tokex::types::{Price, Symbol};
use tokex::wire::{itch, itch_dispatch};

fuzz_target!(|data: &[u8]| {
    let _ = itch::Message::parse(data).map(|m| m.header());
    let mut grouped = Vec::new();
    itch_dispatch::for_each(data, |m| grouped.push(m));
    assert!(grouped.into_iter().eq(itch::stream(data)));
    let grid = |lower, upper, tick| PriceGrid {
        lower: Price::from_raw(lower),
        upper: Price::from_raw(upper),
        tick: Price::from_raw(tick),
    };
    let mut books = FeedBooks::with_grids([
        (Symbol::new("TK2612").unwrap(), grid(60_000, 70_000, 10)),
        (Symbol::new("GH2612").unwrap(), grid(1, 4_000, 1)),
    ]);
    for m in itch::stream(data).flatten() {
        let _ = books.apply(&m, &mut |_, _, _, _| {});
    }
    for l in books.locates().collect::<Vec<_>>() {
        let _ = (books.top(l), books.orders(l).len());
    }
});
