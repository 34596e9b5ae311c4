//! `tokex bench all`: every side-by-side comparison the project promises,
//! in one run, ending with one table of figures and ratios.
//!
//! The engine against lobster on the same order flow, ITCH decoding
//! against itchy on the same buffer, the feed book rebuild, the exchange's
//! work per order without the network (`tokex bench gateway`), and the order
//! round trip over AF_XDP against the kernel UDP path (and run-to-completion
//! against pipelined) at the same rates on the lab network. `--quick`
//! shrinks every part so the whole finishes in about 30 s (the full run:
//! about 2 min 40 s, on the 2-core VM of 2026-12-03).

use std::fmt::Write as _;
use std::path::Path;

use super::transport::{self, Measured, Variant};
use crate::latency::fmt_ns;

/// Sizes of one suite run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub engine_ops: usize,
    pub codec_ops: usize,
    pub codec_rounds: usize,
    pub gateway_orders: u64,
    pub rates: &'static [u64],
    pub seconds: u64,
    /// Seconds of `tokex bench hiccups` on every core, first.
    pub hiccup_seconds: f64,
}

impl Plan {
    pub const QUICK: Plan = Plan {
        engine_ops: 1_000_000,
        codec_ops: 50_000,
        codec_rounds: 5,
        gateway_orders: 50_000,
        rates: &[10_000],
        seconds: 4,
        hiccup_seconds: 1.0,
    };
    pub const FULL: Plan = Plan {
        engine_ops: 5_000_000,
        codec_ops: 200_000,
        codec_rounds: 20,
        gateway_orders: 200_000,
        rates: &[5_000, 20_000, 50_000],
        seconds: 10,
        hiccup_seconds: 5.0,
    };
}

/// This machine, for the table's heading.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, {date}")
}

fn round_trip_rows(s: &mut String, runs: &[Measured], a: Variant, b: Variant) {
    for &rate in runs
        .iter()
        .map(|m| &m.rate)
        .collect::<std::collections::BTreeSet<_>>()
    {
        let find = |v: Variant| runs.iter().find(|m| m.variant == v && m.rate == rate);
        let (Some(x), Some(y)) = (find(a), find(b)) else {
            continue;
        };
        for (p, name) in [(0.5, "p50"), (0.99, "p99"), (0.999, "p99.9")] {
            let (vx, vy) = (x.round_trip.at(p), y.round_trip.at(p));
            let _ = writeln!(
                s,
                "| order round trip {name} at {rate}/s | {} {} | {} {} | {:.2}x |",
                a.name(),
                fmt_ns(vx as u64),
                b.name(),
                fmt_ns(vy as u64),
                vy / vx.max(1.0)
            );
        }
    }
}

/// The transport variants the suite compares.
const VARIANTS: [Variant; 4] = [
    Variant::XDP,
    Variant::UDP,
    Variant::UDP_PIPELINED,
    Variant::XDP_PIPELINED,
];

/// Runs the suite and returns the final table (each part also prints its
/// own lines as it goes). The lab part's command lines are checked, and
/// the lab found idle, before anything runs: a busy lab is refused at the
/// start, not after the minute of in-process benches.
pub fn run(plan: Plan, out: &Path) -> anyhow::Result<String> {
    let transport_out = out.join("transport");
    transport::check(
        &VARIANTS,
        plan.rates,
        plan.seconds,
        transport::Shape::LATENCY,
        &transport_out,
    )?;
    crate::lab::ensure_lab_idle("tokex bench all")?;
    println!(
        "== platform: a spinning thread per core for {} s, every gap of {} or more",
        plan.hiccup_seconds,
        fmt_ns(super::hiccups::HICCUP_NS)
    );
    let cores: Vec<usize> = (0..crate::runtime::available_cores()).collect();
    let hiccups = super::hiccups::run(&cores, plan.hiccup_seconds)?;
    for h in &hiccups {
        println!("  {h}");
    }
    println!(
        "== engine: tokex vs lobster, {} operations",
        plan.engine_ops
    );
    let e = super::engine::run(plan.engine_ops, 42)?;
    print!("{e}");
    println!(
        "== codecs: ITCH decode tokex vs itchy, feed book rebuild ({} engine operations, best of {})",
        plan.codec_ops, plan.codec_rounds
    );
    let c = super::codec::run(plan.codec_ops, plan.codec_rounds)?;
    println!(
        "  tokex {:.1} ns/msg (one jump per message: {:.1}), itchy {:.1} ns/msg; rebuild {:.1} ns/msg",
        c.tokex_decode_ns, c.tokex_stream_decode_ns, c.itchy_decode_ns, c.rebuild_ns
    );
    println!(
        "== gateway: the exchange's work per order without the network, {} orders",
        plan.gateway_orders
    );
    let contracts = crate::contract::ContractSet::load_dir(Path::new("contracts"))?;
    std::fs::create_dir_all(out)?;
    let journal = out.join("gateway.journal");
    // Orders packed as in the throughput bench, and one per datagram.
    let g16 = super::gateway::run(&contracts, plan.gateway_orders, 16, 4, 3, &journal)?;
    let g1 = super::gateway::run(&contracts, plan.gateway_orders, 1, 1, 3, &journal)?;
    let _ = std::fs::remove_file(&journal);
    println!("  {g16}\n  {g1}");
    println!(
        "== transports: AF_XDP vs kernel UDP, run-to-completion vs pipelined; {} s per run at {:?} orders/s",
        plan.seconds, plan.rates
    );
    let runs = transport::run(
        &VARIANTS,
        plan.rates,
        plan.seconds,
        transport::Shape::LATENCY,
        &transport_out,
    )?;

    let mut s = format!(
        "\n== tokex bench: {}\n\n| comparison | tokex | peer / baseline | ratio |\n|---|---:|---:|---:|\n",
        machine()
    );
    let _ = writeln!(
        s,
        "| matching engine, mixed flow | {:.1} M ops/s | lobster {:.2} M ops/s | {:.1}x |",
        e.tokex_ops_per_sec / 1e6,
        e.lobster_ops_per_sec / 1e6,
        e.tokex_ops_per_sec / e.lobster_ops_per_sec
    );
    let _ = writeln!(
        s,
        "| ITCH 5.0 decode + dispatch | {:.1} ns/msg | itchy {:.1} ns/msg | {:.1}x |",
        c.tokex_decode_ns,
        c.itchy_decode_ns,
        c.itchy_decode_ns / c.tokex_decode_ns
    );
    let _ = writeln!(
        s,
        "| feed book rebuild from ITCH | {:.1} ns/msg | | |",
        c.rebuild_ns
    );
    for (g, shape) in [(&g16, "16 per datagram"), (&g1, "1 per datagram")] {
        let _ = writeln!(
            s,
            "| exchange work per order, no network, {shape} | {:.0} ns | | |",
            g.best_ns()
        );
    }
    for h in &hiccups {
        let _ = writeln!(
            s,
            "| platform stalls, core {} (the floor under every max) | {} | | |",
            h.core,
            h.brief()
        );
    }
    round_trip_rows(&mut s, &runs, Variant::XDP, Variant::UDP);
    round_trip_rows(&mut s, &runs, Variant::UDP, Variant::UDP_PIPELINED);
    round_trip_rows(&mut s, &runs, Variant::XDP, Variant::XDP_PIPELINED);
    let _ = writeln!(
        s,
        "\nRatios: peer time / tokex time (or tokex rate / peer rate): above 1 means the first column is faster.\n\n{}",
        transport::table(&runs)
    );
    if let Some(line) = runs.iter().find(|m| m.variant == Variant::XDP) {
        let _ = writeln!(s, "AF_XDP run: {}", line.transport_line);
    }
    Ok(s)
}
