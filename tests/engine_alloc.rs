//! The engine allocates nothing in steady state: after a warm-up, one
//! million mixed operations (adds, cancels, replaces, aggressive orders that
//! trade) run under a counting global allocator with zero allocations.

use std::alloc::System;
use std::path::Path;

use stats_alloc::{Region, StatsAlloc, INSTRUMENTED_SYSTEM};
use tokex::bench::engine::{mixed_flow, TokexRunner};
use tokex::contract::ContractSet;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

#[test]
fn a_million_mixed_operations_allocate_nothing_after_warm_up() {
    let contracts =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let c = contracts.iter().next().unwrap().clone();
    let warm = mixed_flow(100_000, 11, &c);
    let flow = mixed_flow(1_000_000, 12, &c);
    let mut runner = TokexRunner::new(&contracts, &c, 1 << 20);
    warm.iter().for_each(|op| runner.apply(op));

    // The counter works: building a runner allocates.
    let probe = Region::new(GLOBAL);
    drop(std::hint::black_box(TokexRunner::new(&contracts, &c, 16)));
    assert!(probe.change().allocations > 0);

    let region = Region::new(GLOBAL);
    for op in &flow {
        runner.apply(op);
    }
    let stats = region.change();

    assert!(runner.engine.match_number() > 10_000, "the flow must trade");
    assert_eq!(stats.allocations, 0, "{stats:?}");
    assert_eq!(stats.reallocations, 0, "{stats:?}");
}
