//! The exchange's work per order without the network (`bench::gateway`):
//! datagrams of OUCH Enter/Cancel from eight sessions through the
//! gateway, engine, publisher and journal, batch by batch with the batch's
//! journal write, replies packed as the exchange packs them. Two shapes:
//! one order per datagram and batch (a quiet market, every order alone)
//! and 16 orders per datagram, 4 datagrams per batch (the throughput
//! bench's load). Each iteration starts a fresh day and runs the first
//! 32,768 orders of the flow untimed (tables grown, caches warm), then
//! times the next 32,768.

use std::path::Path;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use tokex::bench::gateway::{Rig, Workload};
use tokex::contract::ContractSet;

const ORDERS: u64 = 32_768;

fn per_order(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let contracts = ContractSet::load_dir(&root.join("contracts")).unwrap();
    let journal = std::env::temp_dir().join(format!(
        "tokex-bench-gateway-{}.journal",
        std::process::id()
    ));
    let mut g = c.benchmark_group("exchange_per_order");
    g.throughput(Throughput::Elements(ORDERS));
    g.sample_size(30);
    for (name, per_datagram, per_batch) in [
        ("1_order_per_datagram_and_batch", 1, 1),
        ("16_orders_per_datagram_4_per_batch", 16, 4),
    ] {
        let (warm, timed) = Workload::new(&contracts, 2 * ORDERS, per_datagram, per_batch)
            .unwrap()
            .split(ORDERS);
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || {
                    let mut rig = Rig::new(&contracts, &journal).unwrap();
                    rig.run(&warm).unwrap();
                    rig
                },
                |rig| rig.run(&timed).unwrap(),
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
    let _ = std::fs::remove_file(&journal);
}

criterion_group!(benches, per_order);
criterion_main!(benches);
