//! Feed handler book building from an in-memory ITCH buffer (the engine's
//! own output on the mixed flow), in ns per message: fresh books with the
//! contracts' ladders (as `tokex feed` runs), the same books reused (steady
//! state, no allocation), and books without price grids (the sorted
//! fallback any unknown producer's instruments use).
//!
//! Measured twice: in wall-clock time (criterion's default) and in the
//! thread's CPU time, which other processes on a shared machine do not
//! inflate (the lab machine has two cores and several users); compare
//! `feed_book_rebuild_cpu/*` between runs when the machine is busy.

use std::hint::black_box;
use std::path::Path;

use criterion::measurement::Measurement;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokex::bench::codec;
use tokex::contract::ContractSet;
use tokex::feed::book::FeedBooks;

#[path = "common/cpu_time.rs"]
mod cpu_time;
use cpu_time::ThreadCpuTime;

fn rebuild<M: Measurement + 'static>(c: &mut Criterion<M>, group: &str) {
    let set =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let (buf, n) = codec::itch_stream(&set, 200_000, 9);
    let mut g = c.benchmark_group(group);
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

fn wall(c: &mut Criterion) {
    rebuild(c, "feed_book_rebuild");
}

fn cpu(c: &mut Criterion<ThreadCpuTime>) {
    rebuild(c, "feed_book_rebuild_cpu");
}

criterion_group!(benches, wall);
criterion_group! {
    name = cpu_benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = cpu
}
criterion_main!(benches, cpu_benches);
