//! ITCH 5.0 messages and length-prefixed streams on arbitrary bytes, applied
//! to the feed handler's books (which must count, never panic on, nonsense).
#![no_main]
use libfuzzer_sys::fuzz_target;
use tokex::feed::book::FeedBooks;
use tokex::wire::itch;

fuzz_target!(|data: &[u8]| {
    let _ = itch::Message::parse(data).map(|m| m.header());
    let mut books = FeedBooks::new();
    for m in itch::stream(data).flatten() {
        let _ = books.apply(&m, &mut |_, _, _, _| {});
    }
    for l in books.locates().collect::<Vec<_>>() {
        let _ = (books.top(l), books.orders(l).len());
    }
});
