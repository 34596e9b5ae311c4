//! `tokex bench transport`: the same open-loop load against the exchange
//! over AF_XDP and over the kernel UDP path (and, for the kernel path, the
//! pipelined topology), side by side, on the lab network.
//!
//! Owns the orchestration of the comparison and its table: for every
//! (variant, rate) it starts a fresh exchange in the exchange namespace and
//! `tokex load` in the client namespace, exactly as a user would, then
//! reads the load generator's round-trip figures (from the intended send
//! time, so no coordinated omission) and the exchange's own end-to-end
//! histogram. Variants at the same rate run back to back, so that machine
//! noise hits them alike. The round trips are also plotted side by side
//! (`round-trip.png`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::lab::{lab, print_log_tail, wait_ready, LabGuard, Proc, CLIENT_NS, EXCHANGE_NS};
use crate::latency::fmt_ns;
use crate::report::{parse_hgrm, Run};
use crate::runtime::Stop;

/// One way of running the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub transport: &'static str,
    pub topology: &'static str,
}

impl Variant {
    pub const XDP: Variant = Variant {
        transport: "xdp",
        topology: "run-to-completion",
    };
    pub const UDP: Variant = Variant {
        transport: "udp",
        topology: "run-to-completion",
    };
    pub const UDP_PIPELINED: Variant = Variant {
        transport: "udp",
        topology: "pipelined",
    };

    pub fn name(&self) -> String {
        let t = if self.transport == "xdp" {
            "AF_XDP"
        } else {
            "kernel UDP"
        };
        if self.topology == "pipelined" {
            format!("{t}, pipelined")
        } else {
            t.to_string()
        }
    }

    fn label(&self, rate: u64) -> String {
        format!("{}-{}-{}k", self.transport, self.topology, rate / 1000)
    }
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub variant: Variant,
    pub rate: u64,
    pub sent: u64,
    pub lost: u64,
    /// The mode line the exchange printed for its transport.
    pub transport_line: String,
    /// Client round trip, intended send time to first answer.
    pub round_trip: Run,
    /// Inside the exchange: receive to ack sent.
    pub in_exchange: Run,
}

/// The percentiles of every table.
const PCTS: [(f64, &str); 5] = [
    (0.5, "p50"),
    (0.99, "p99"),
    (0.999, "p99.9"),
    (0.9999, "p99.99"),
    (1.0, "max"),
];

/// Runs every variant at every rate for `seconds` each; returns the
/// measurements in run order. The lab comes up first and goes down at the
/// end (also on error or Ctrl-C).
pub fn run(
    variants: &[Variant],
    rates: &[u64],
    seconds: u64,
    out: &Path,
) -> anyhow::Result<Vec<Measured>> {
    let stop = Stop::on_signals()?;
    std::fs::create_dir_all(out)?;
    lab("up")?;
    let _lab = LabGuard { keep: false };
    let mut all = Vec::new();
    for &rate in rates {
        for &v in variants {
            if stop.is_set() {
                bail!("interrupted");
            }
            let m = run_one(v, rate, seconds, out, &stop)?;
            println!(
                "  {:<24} {:>7}/s  round trip p50 {:>8}  p99 {:>8}  lost {}",
                v.name(),
                rate,
                fmt_ns(m.round_trip.at(0.5) as u64),
                fmt_ns(m.round_trip.at(0.99) as u64),
                m.lost
            );
            all.push(m);
        }
    }
    let runs: Vec<Run> = all
        .iter()
        .map(|m| Run {
            label: format!("{} at {}/s", m.variant.name(), m.rate),
            ..m.round_trip.clone()
        })
        .collect();
    let png = out.join("round-trip.png");
    crate::report::plot(&runs, &png, "tokex: order round trip by transport and rate")?;
    println!("  plot: {}", png.display());
    Ok(all)
}

fn run_one(
    v: Variant,
    rate: u64,
    seconds: u64,
    out: &Path,
    stop: &Stop,
) -> anyhow::Result<Measured> {
    let label = v.label(rate);
    let dir = out.join(&label);
    std::fs::create_dir_all(&dir)?;
    let path = |name: &str| -> String { dir.join(name).display().to_string() };
    let ready = dir.join("exchange.ready");
    let _ = std::fs::remove_file(&ready);
    let mut exchange = Proc::spawn(
        "exchange",
        EXCHANGE_NS,
        &[
            "exchange".into(),
            "--transport".into(),
            v.transport.into(),
            "--topology".into(),
            v.topology.into(),
            "--fresh".into(),
            "--ready-file".into(),
            path("exchange.ready"),
            "--latency-dir".into(),
            path("exchange-latency"),
            "--max-seconds".into(),
            (seconds + 60).to_string(),
        ],
        &dir.join("exchange.log"),
    )?;
    wait_ready(&mut exchange, &ready, stop, Duration::from_secs(20))?;
    let mut load = Proc::spawn(
        "load generator",
        CLIENT_NS,
        &[
            "load".into(),
            "--rate".into(),
            rate.to_string(),
            "--duration".into(),
            seconds.to_string(),
            "--count".into(),
            (rate * seconds).to_string(),
            "--out".into(),
            dir.display().to_string(),
            "--label".into(),
            "roundtrip".into(),
            "--no-progress".into(),
        ],
        &dir.join("load.log"),
    )?;
    let status = load.wait(Duration::from_secs(seconds + 60))?;
    if !status.success() {
        print_log_tail("load log", &dir.join("load.log"), 20);
        bail!("the load generator failed ({status})");
    }
    let status = exchange.interrupt(Duration::from_secs(30))?;
    if !status.success() {
        print_log_tail("exchange log", &dir.join("exchange.log"), 20);
        bail!("the exchange failed ({status})");
    }
    let load_log = std::fs::read_to_string(dir.join("load.log"))?;
    let ex_log = std::fs::read_to_string(dir.join("exchange.log"))?;
    let transport_line = ex_log
        .lines()
        .find(|l| l.starts_with("transport: ") && !l.contains("TCP"))
        .unwrap_or("")
        .to_string();
    if v.transport == "xdp" && !transport_line.contains("AF_XDP on") {
        bail!("AF_XDP did not start for the AF_XDP run: {transport_line}");
    }
    Ok(Measured {
        variant: v,
        rate,
        sent: count_after(&load_log, "sent")?,
        lost: count_after(&load_log, "lost")?,
        transport_line,
        round_trip: read_hgrm(&v.name(), &dir.join("roundtrip.hgrm"))?,
        in_exchange: read_hgrm(&v.name(), &dir.join("exchange-latency/end_to_end.hgrm"))?,
    })
}

fn read_hgrm(label: &str, path: &PathBuf) -> anyhow::Result<Run> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_hgrm(label, &text)
}

/// The number after `word` on the load generator's "sent N, answered N,
/// lost N, ..." line.
fn count_after(log: &str, word: &str) -> anyhow::Result<u64> {
    let line = log
        .lines()
        .find(|l| l.starts_with("sent "))
        .context("no 'sent ...' line in the load log")?;
    let words: Vec<&str> = line.split([' ', ',']).filter(|w| !w.is_empty()).collect();
    let i = words
        .iter()
        .position(|w| *w == word)
        .with_context(|| format!("no {word:?} in {line:?}"))?;
    words
        .get(i + 1)
        .and_then(|n| n.parse().ok())
        .with_context(|| format!("no number after {word:?} in {line:?}"))
}

fn row(title: &str, run: &Run) -> String {
    let mut s = format!("| {title} |");
    for (p, _) in PCTS {
        let _ = write!(s, " {} |", fmt_ns(run.at(p) as u64));
    }
    s
}

/// The markdown table of every run, then, for each rate, the ratio of each
/// other variant's percentiles to the first variant's.
pub fn table(runs: &[Measured]) -> String {
    let mut s = String::new();
    let head: String = PCTS.iter().map(|(_, n)| format!(" {n} |")).collect();
    let rule: String = PCTS.iter().map(|_| "---:|").collect();
    let _ = writeln!(
        s,
        "| run | rate/s | sent | lost | measured |{head}\n|---|---:|---:|---:|---|{rule}"
    );
    for m in runs {
        let name = format!(
            "{} | {} | {} | {}",
            m.variant.name(),
            m.rate,
            m.sent,
            m.lost
        );
        let _ = writeln!(s, "{}", row(&format!("{name} | round trip"), &m.round_trip));
        let _ = writeln!(
            s,
            "{}",
            row(&format!("{name} | in the exchange"), &m.in_exchange)
        );
    }
    let Some(base) = runs.first().map(|m| m.variant) else {
        return s;
    };
    let _ = writeln!(
        s,
        "\nRatios to {} at the same rate (round trip; above 1 means {} is faster):\n\n| run | rate/s |{head}\n|---|---:|{rule}",
        base.name(),
        base.name()
    );
    for m in runs.iter().filter(|m| m.variant != base) {
        let Some(b) = runs.iter().find(|b| b.variant == base && b.rate == m.rate) else {
            continue;
        };
        let mut line = format!("| {} | {} |", m.variant.name(), m.rate);
        for (p, _) in PCTS {
            let _ = write!(
                line,
                " {:.2}x |",
                m.round_trip.at(p) / b.round_trip.at(p).max(1.0)
            );
        }
        let _ = writeln!(s, "{line}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flat(label: &str, ns: f64) -> Run {
        Run {
            label: label.into(),
            points: vec![(0.5, ns), (0.99, ns * 2.0), (1.0, ns * 4.0)],
            count: 100,
        }
    }

    #[test]
    fn load_log_counts_are_read_from_the_sent_line() {
        let log =
            "load: ...\nsent 2000, answered 1990, lost 10, resent 3, accepted 5, executions 1\n";
        assert_eq!(count_after(log, "sent").unwrap(), 2000);
        assert_eq!(count_after(log, "lost").unwrap(), 10);
        assert!(count_after("nothing", "sent").is_err());
    }

    #[test]
    fn table_has_a_row_per_run_and_ratios_to_the_first_variant() {
        let m = |variant, ns| Measured {
            variant,
            rate: 10_000,
            sent: 100,
            lost: 0,
            transport_line: String::new(),
            round_trip: flat("r", ns),
            in_exchange: flat("e", ns / 2.0),
        };
        let t = table(&[m(Variant::XDP, 10_000.0), m(Variant::UDP, 15_000.0)]);
        assert!(
            t.contains("| AF_XDP | 10000 | 100 | 0 | round trip | 10.0us |"),
            "{t}"
        );
        assert!(
            t.contains("| kernel UDP | 10000 | 100 | 0 | in the exchange | 7500ns |"),
            "{t}"
        );
        assert!(t.contains("| kernel UDP | 10000 | 1.50x | 1.50x |"), "{t}");
    }
}
