//! Feed handler book building from an in-memory ITCH buffer (the engine's
//! own output on the mixed flow), in ns per message: fresh books with the
//! contracts' ladders (as `tokex feed` runs), the same books reused (steady
//! state, no allocation), and books without price grids (the sorted
//! fallback any unknown producer's instruments use).

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokex::bench::codec;
use tokex::contract::ContractSet;
use tokex::feed::book::FeedBooks;

fn rebuild(c: &mut Criterion) {
    let set =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let (buf, n) = codec::itch_stream(&set, 200_000, 9);
    let mut g = c.benchmark_group("feed_book_rebuild");
    g.throughput(Throughput::Elements(n as u64));
    g.sample_size(20);
    g.bench_function("tokex_feed_books", |b| {
        b.iter(|| codec::rebuild(&set, black_box(&buf)).order_count())
    });
    let mut warm = Some(codec::rebuild(&set, &buf));
    g.bench_function("tokex_feed_books_warm", |b| {
        b.iter(|| {
            let mut books = warm.take().expect("books");
            books.clear_orders();
            let books = codec::rebuild_into(books, black_box(&buf));
            let n = books.order_count();
            warm = Some(books);
            n
        })
    });
    g.bench_function("tokex_feed_books_no_grid", |b| {
        b.iter(|| codec::rebuild_into(FeedBooks::new(), black_box(&buf)).order_count())
    });
    g.finish();
}

criterion_group!(benches, rebuild);
criterion_main!(benches);
