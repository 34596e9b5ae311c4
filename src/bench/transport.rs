//! `tokex bench transport`: the same open-loop load against the exchange
//! over AF_XDP and over the kernel UDP path (and, for the kernel path, the
//! pipelined topology), side by side, on the lab network; with the load
//! generator on kernel sockets, on AF_XDP, or both.
//!
//! Owns the orchestration of the comparison and its table: for every
//! (variant, rate) it starts a fresh exchange in the exchange namespace and
//! `tokex load` in the client namespace, exactly as a user would, then
//! reads the load generator's round-trip figures (from the intended send
//! time, so no coordinated omission) and the exchange's own end-to-end
//! histogram. Variants at the same rate run back to back, so that machine
//! noise hits them alike. The round trips are also plotted side by side
//! (`round-trip.png`).
//!
//! Every command line of the bench is built and checked against the
//! subcommands' own argument definitions before the lab comes up, and the
//! exchange runs on the bench's own config (`OUT/exchange.toml`: the
//! shipped config with the journal under `OUT/journal/`), never on the
//! operator's journal.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::exchange::ExchangeArgs;
use crate::lab::{
    ensure_lab_idle, lab, parse_command, print_log_tail, run_config, wait_ready, LabGuard, Proc,
    CLIENT_NS, EXCHANGE_NS,
};
use crate::latency::fmt_ns;
use crate::load::{ClientTransport, LoadArgs};
use crate::report::{parse_hgrm, Run};
use crate::runtime::Stop;

/// One way of running the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variant {
    pub transport: &'static str,
    pub topology: &'static str,
    /// Where market data leaves: "udp" (the kernel socket) or "xdp".
    pub md: &'static str,
    /// How the load generator sends and receives.
    pub client: ClientTransport,
}

impl Variant {
    pub const XDP: Variant = Variant {
        transport: "xdp",
        topology: "run-to-completion",
        md: "udp",
        client: ClientTransport::Udp,
    };
    /// AF_XDP for orders and for market data (AF_XDP TX).
    pub const XDP_MD_XDP: Variant = Variant {
        transport: "xdp",
        topology: "run-to-completion",
        md: "xdp",
        client: ClientTransport::Udp,
    };
    pub const UDP: Variant = Variant {
        transport: "udp",
        topology: "run-to-completion",
        md: "udp",
        client: ClientTransport::Udp,
    };
    pub const UDP_PIPELINED: Variant = Variant {
        transport: "udp",
        topology: "pipelined",
        md: "udp",
        client: ClientTransport::Udp,
    };
    pub const XDP_PIPELINED: Variant = Variant {
        transport: "xdp",
        topology: "pipelined",
        md: "udp",
        client: ClientTransport::Udp,
    };

    /// The same run with the load generator on `client`.
    pub const fn with_client(self, client: ClientTransport) -> Variant {
        Variant { client, ..self }
    }

    pub fn name(&self) -> String {
        let t = if self.transport == "xdp" {
            "AF_XDP"
        } else {
            "kernel UDP"
        };
        let mut name = match (self.topology, self.md) {
            ("pipelined", _) => format!("{t}, pipelined"),
            (_, "xdp") => format!("{t}, market data on AF_XDP"),
            _ => t.to_string(),
        };
        if self.client == ClientTransport::Xdp {
            name.push_str(" (AF_XDP client)");
        }
        name
    }

    fn label(&self, rate: u64, shape: Shape) -> String {
        let batch = if shape.batch > 1 {
            format!("-x{}", shape.batch)
        } else {
            String::new()
        };
        let client = match self.client {
            ClientTransport::Udp => "",
            ClientTransport::Xdp => "-xdp-client",
        };
        format!(
            "{}-{}-{}{batch}{client}",
            self.transport,
            self.topology,
            rate_tag(rate)
        )
    }
}

/// A rate in a directory name: 5000 -> "5k"; a rate that is no multiple of
/// 1,000 in full (500 and 800 shared "0k", and so one output directory).
pub(crate) fn rate_tag(rate: u64) -> String {
    if rate.is_multiple_of(1000) {
        format!("{}k", rate / 1000)
    } else {
        rate.to_string()
    }
}

/// The config a bench's exchange config is derived from: every run uses
/// `OUT/exchange.toml`, this with the journal, its snapshots and archive
/// under `OUT/journal/`, where each run starts a new day (`--fresh`).
pub const BASE_CONFIG: &str = "config/tokex.toml";

/// The exchange's command line for one run whose files go to `dir`.
fn exchange_command(v: Variant, config: &Path, dir: &Path, seconds: u64) -> Vec<String> {
    let path = |name: &str| -> String { dir.join(name).display().to_string() };
    vec![
        "exchange".into(),
        "--config".into(),
        config.display().to_string(),
        "--transport".into(),
        v.transport.into(),
        "--topology".into(),
        v.topology.into(),
        "--md-transport".into(),
        v.md.into(),
        "--fresh".into(),
        "--ready-file".into(),
        path("exchange.ready"),
        "--latency-dir".into(),
        path("exchange-latency"),
        "--max-seconds".into(),
        (seconds + 60).to_string(),
    ]
}

/// The load generator's command line for one run whose files go to `dir`.
fn load_command(v: Variant, rate: u64, seconds: u64, shape: Shape, dir: &Path) -> Vec<String> {
    vec![
        "load".into(),
        "--rate".into(),
        rate.to_string(),
        "--duration".into(),
        seconds.to_string(),
        "--count".into(),
        rate.saturating_mul(seconds).to_string(),
        "--out".into(),
        dir.display().to_string(),
        "--label".into(),
        "roundtrip".into(),
        "--no-progress".into(),
        "--batch".into(),
        shape.batch.to_string(),
        "--sessions".into(),
        shape.sessions.to_string(),
        "--transport".into(),
        v.client.arg().into(),
    ]
}

/// Checks every run's command lines (the exchange's and the load
/// generator's, with the subcommands' own argument definitions) without
/// starting anything: a flag the load generator refuses (`--batch 0`)
/// is refused here, before the lab comes up and an exchange starts.
pub fn check(
    variants: &[Variant],
    rates: &[u64],
    seconds: u64,
    shape: Shape,
    out: &Path,
) -> anyhow::Result<()> {
    if variants.is_empty() || rates.is_empty() {
        bail!("no runs: give at least one variant and one rate");
    }
    let config = out.join(crate::lab::RUN_CONFIG);
    for &rate in rates {
        if rate == 0 {
            bail!("a rate of 0 orders/s");
        }
        for &v in variants {
            let dir = out.join(v.label(rate, shape));
            parse_command::<ExchangeArgs>(&exchange_command(v, &config, &dir, seconds))?;
            parse_command::<LoadArgs>(&load_command(v, rate, seconds, shape, &dir))?;
        }
    }
    Ok(())
}

/// How the load generator sends: orders per datagram, and sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    pub batch: u64,
    pub sessions: usize,
}

impl Shape {
    /// One order per datagram over four sessions: per-order latency.
    pub const LATENCY: Shape = Shape {
        batch: 1,
        sessions: 4,
    };
}

/// What one run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    pub variant: Variant,
    pub rate: u64,
    pub shape: Shape,
    pub sent: u64,
    pub lost: u64,
    /// Orders per second the generator actually sent.
    pub achieved: f64,
    /// The exchange's engine core: share of its serving time busy with
    /// batches, and OUCH messages handled per busy second.
    pub busy_pct: f64,
    pub per_busy_second: f64,
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
/// measurements in run order. Refuses, before the lab is touched, command
/// lines a child would refuse ([`check`]) and a lab with processes
/// running in it; the lab comes up first and goes down at the end (also
/// on error or Ctrl-C).
pub fn run(
    variants: &[Variant],
    rates: &[u64],
    seconds: u64,
    shape: Shape,
    out: &Path,
) -> anyhow::Result<Vec<Measured>> {
    check(variants, rates, seconds, shape, out)?;
    ensure_lab_idle("tokex bench")?;
    let stop = Stop::on_signals()?;
    std::fs::create_dir_all(out)?;
    let config = run_config(Path::new(BASE_CONFIG), out)?;
    lab("up")?;
    let _lab = LabGuard { keep: false };
    let mut all = Vec::new();
    for &rate in rates {
        for &v in variants {
            if stop.is_set() {
                bail!("interrupted");
            }
            let m = run_one(v, rate, seconds, shape, out, &config, &stop)?;
            println!(
                "  {:<40} {:>7}/s  achieved {:>9.0}/s  round trip p50 {:>8}  p99 {:>8}  lost {}  engine core busy {:.0} %",
                v.name(),
                rate,
                m.achieved,
                fmt_ns(m.round_trip.at(0.5) as u64),
                fmt_ns(m.round_trip.at(0.99) as u64),
                m.lost,
                m.busy_pct
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
    shape: Shape,
    out: &Path,
    config: &Path,
    stop: &Stop,
) -> anyhow::Result<Measured> {
    let label = v.label(rate, shape);
    let dir = out.join(&label);
    std::fs::create_dir_all(&dir)?;
    let ready = dir.join("exchange.ready");
    let _ = std::fs::remove_file(&ready);
    let mut exchange = Proc::spawn(
        "exchange",
        EXCHANGE_NS,
        &exchange_command(v, config, &dir, seconds),
        &dir.join("exchange.log"),
    )?;
    wait_ready(&mut exchange, &ready, stop, Duration::from_secs(20))?;
    let mut load = Proc::spawn(
        "load generator",
        CLIENT_NS,
        &load_command(v, rate, seconds, shape, &dir),
        &dir.join("load.log"),
    )?;
    // An exchange that fails under the load ends the run at once.
    let status = load.wait_watching(
        &mut [&mut exchange],
        stop,
        Duration::from_secs(seconds + 60),
    )?;
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
    let (busy_pct, per_busy_second) = engine_core(&ex_log)?;
    Ok(Measured {
        variant: v,
        rate,
        shape,
        sent: count_after(&load_log, "sent")?,
        lost: count_after(&load_log, "lost")?,
        achieved: achieved(&load_log)?,
        busy_pct,
        per_busy_second,
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

/// The achieved rate on the load generator's "load L: intended R
/// orders/s, achieved A/s over S s" line.
fn achieved(log: &str) -> anyhow::Result<f64> {
    log.lines()
        .find_map(|l| l.split("achieved ").nth(1))
        .and_then(|rest| rest.split('/').next())
        .and_then(|n| n.parse().ok())
        .context("no 'achieved N/s' in the load log")
}

/// (busy %, OUCH messages per busy second) from the exchange's "engine
/// core: busy B s of S s serving (P %), N OUCH messages per busy second"
/// line.
fn engine_core(log: &str) -> anyhow::Result<(f64, f64)> {
    let line = log
        .lines()
        .find(|l| l.starts_with("engine core: busy"))
        .context("no 'engine core' line in the exchange log")?;
    let pct = line
        .split('(')
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    let per = line
        .rsplit(", ")
        .next()
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    pct.zip(per)
        .with_context(|| format!("unreadable engine core line {line:?}"))
}

fn row(title: &str, run: &Run) -> String {
    let mut s = format!("| {title} |");
    for (p, _) in PCTS {
        let _ = write!(s, " {} |", fmt_ns(run.at(p) as u64));
    }
    s
}

/// The markdown table of every run, then, for each rate, the ratio of each
/// other variant's percentiles to the first variant's with the same client
/// transport.
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
        "\nRatios to {} at the same rate and with the same client (round trip; above 1 means {} is faster):\n\n| run | base | rate/s |{head}\n|---|---|---:|{rule}",
        base.name(),
        base.name()
    );
    for m in runs {
        let same = base.with_client(m.variant.client);
        let Some(b) = runs.iter().find(|b| b.variant == same && b.rate == m.rate) else {
            continue;
        };
        if m.variant == same {
            continue;
        }
        let mut line = format!(
            "| {} | {} | {} |",
            m.variant.name(),
            b.variant.name(),
            m.rate
        );
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

/// Whether a run kept up: the generator sent at (nearly) the offered rate,
/// every order was answered, and no queue stood in front of the exchange
/// (round trip p50 under [`SUSTAINED_P50_NS`]).
pub fn sustained(m: &Measured) -> bool {
    m.lost == 0
        && m.achieved >= 0.95 * m.rate as f64
        && m.round_trip.at(0.5) < SUSTAINED_P50_NS as f64
}

/// A sustained run's round-trip median stays below this (1 ms).
pub const SUSTAINED_P50_NS: u64 = 1_000_000;

/// The throughput table: per run, offered and achieved rates, losses, the
/// round trip's median and p99, and the engine core's load; then, per
/// variant, the highest offered rate it sustained and its capacity (OUCH
/// messages per busy second of the engine core, best run), with ratios to
/// the first variant with the same client transport.
pub fn throughput_table(runs: &[Measured]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| run | orders/datagram | offered/s | achieved/s | lost | p50 | p99 | engine core busy | OUCH msgs per busy s |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for m in runs {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:.0} | {} | {} | {} | {:.1} % | {:.2} M |",
            m.variant.name(),
            m.shape.batch,
            m.rate,
            m.achieved,
            m.lost,
            fmt_ns(m.round_trip.at(0.5) as u64),
            fmt_ns(m.round_trip.at(0.99) as u64),
            m.busy_pct,
            m.per_busy_second / 1e6
        );
    }
    let mut variants: Vec<Variant> = Vec::new();
    for m in runs {
        if !variants.contains(&m.variant) {
            variants.push(m.variant);
        }
    }
    let best = |v: Variant| {
        let of = || runs.iter().filter(move |m| m.variant == v);
        let rate = of()
            .filter(|m| sustained(m))
            .map(|m| m.rate)
            .max()
            .unwrap_or(0);
        let capacity = of().map(|m| m.per_busy_second).fold(0.0, f64::max);
        (rate, capacity)
    };
    let _ = writeln!(
        s,
        "\n| variant | highest offered rate sustained (0 lost, achieved >= 95 %, p50 < 1 ms) | engine core capacity, OUCH msgs per busy s |\n|---|---:|---:|"
    );
    for &v in &variants {
        let base = variants[0].with_client(v.client);
        let (base_rate, base_cap) = if variants.contains(&base) {
            best(base)
        } else {
            (0, 0.0)
        };
        let (rate, cap) = best(v);
        let ratio = |a: f64, b: f64| {
            if v == base || a <= 0.0 || b <= 0.0 {
                String::new()
            } else {
                format!(" ({:.2}x)", b / a)
            }
        };
        let _ = writeln!(
            s,
            "| {} | {}{} | {:.2} M{} |",
            v.name(),
            rate,
            ratio(rate as f64, base_rate as f64),
            cap / 1e6,
            ratio(cap, base_cap)
        );
    }
    if let Some(first) = variants.first().filter(|_| variants.len() > 1) {
        let _ = writeln!(
            s,
            "\nIn brackets: {}'s figure (with the same client) divided by this variant's.",
            first.name()
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rate_gets_its_own_run_directory() {
        let shape = Shape {
            batch: 1,
            sessions: 4,
        };
        let v = Variant::XDP;
        assert_eq!(v.label(20_000, shape), v.label(20_000, shape));
        assert!(v.label(20_000, shape).contains("-20k"));
        assert_ne!(v.label(500, shape), v.label(800, shape));
        assert_ne!(v.label(1_000, shape), v.label(1_500, shape));
    }

    fn flat(label: &str, ns: f64) -> Run {
        Run {
            label: label.into(),
            points: vec![(0.5, ns), (0.99, ns * 2.0), (1.0, ns * 4.0)],
            count: 100,
            outcome: None,
        }
    }

    #[test]
    fn flags_the_load_generator_refuses_are_refused_before_the_lab_comes_up() {
        let out = Path::new("out/bench/throughput");
        let shape = |batch, sessions| Shape { batch, sessions };
        let v = [Variant::XDP, Variant::UDP];
        assert!(check(&v, &[250_000], 3, shape(16, 8), out).is_ok());
        for (batch, sessions) in [(0, 8), (25, 8), (16, 0), (16, 9)] {
            let err = check(&v, &[250_000], 3, shape(batch, sessions), out)
                .expect_err("refused by tokex load");
            assert!(err.to_string().contains("tokex load"), "{err}");
        }
        assert!(check(&v, &[], 3, shape(16, 8), out).is_err());
        assert!(check(&[], &[1000], 3, shape(16, 8), out).is_err());
    }

    #[test]
    fn every_run_starts_a_fresh_day_on_the_bench_s_own_config() {
        let dir = Path::new("out/bench/transport/xdp-run-to-completion-5k");
        let config = Path::new("out/bench/transport/exchange.toml");
        let cmd = exchange_command(Variant::XDP, config, dir, 10);
        let ex: ExchangeArgs = parse_command(&cmd).unwrap();
        assert_eq!(ex.config, config);
        assert!(ex.fresh);
        assert_eq!(ex.latency_dir, Some(dir.join("exchange-latency")));
    }

    #[test]
    fn load_log_counts_are_read_from_the_sent_line() {
        let log =
            "load: ...\nsent 2000, answered 1990, lost 10, resent 3, accepted 5, executions 1\n";
        assert_eq!(count_after(log, "sent").unwrap(), 2000);
        assert_eq!(count_after(log, "lost").unwrap(), 10);
        assert!(count_after("nothing", "sent").is_err());
        let log = "load roundtrip: intended 1000000 orders/s, achieved 981234/s over 2.00 s\n";
        assert_eq!(achieved(log).unwrap(), 981234.0);
    }

    #[test]
    fn a_run_is_sustained_only_without_losses_shortfall_or_a_standing_queue() {
        let m = |lost, achieved, p50: f64| Measured {
            variant: Variant::XDP,
            rate: 100_000,
            shape: Shape::LATENCY,
            sent: 100,
            lost,
            achieved,
            busy_pct: 50.0,
            per_busy_second: 1e6,
            transport_line: String::new(),
            round_trip: flat("r", p50),
            in_exchange: flat("e", p50),
        };
        assert!(sustained(&m(0, 99_000.0, 200_000.0)));
        assert!(!sustained(&m(1, 99_000.0, 200_000.0)));
        assert!(!sustained(&m(0, 90_000.0, 200_000.0)));
        assert!(!sustained(&m(0, 99_000.0, 5_000_000.0)));
        let t = throughput_table(&[m(0, 99_000.0, 200_000.0)]);
        assert!(t.contains("| AF_XDP | 100000 | 1.00 M |"), "{t}");
    }

    #[test]
    fn engine_core_figures_are_read_from_the_exchange_log() {
        let log = "x\nengine core: busy 0.52 s of 3.00 s serving (17.3 %), 1923077 OUCH messages per busy second\n";
        assert_eq!(engine_core(log).unwrap(), (17.3, 1923077.0));
        assert!(engine_core("nothing").is_err());
    }

    #[test]
    fn table_has_a_row_per_run_and_ratios_to_the_first_variant() {
        let m = |variant, ns| Measured {
            variant,
            rate: 10_000,
            shape: Shape::LATENCY,
            sent: 100,
            lost: 0,
            achieved: 10_000.0,
            busy_pct: 1.0,
            per_busy_second: 1e6,
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
        assert!(
            t.contains("| kernel UDP | AF_XDP | 10000 | 1.50x | 1.50x |"),
            "{t}"
        );
        // With an AF_XDP load generator too: each run is compared with the
        // first variant under the same client.
        let xc = |v: Variant| v.with_client(ClientTransport::Xdp);
        let t = table(&[
            m(Variant::XDP, 10_000.0),
            m(Variant::UDP, 15_000.0),
            m(xc(Variant::XDP), 5_000.0),
            m(xc(Variant::UDP), 10_000.0),
        ]);
        assert!(
            t.contains("| kernel UDP (AF_XDP client) | AF_XDP (AF_XDP client) | 10000 | 2.00x |"),
            "{t}"
        );
        let ratio_rows = t
            .lines()
            .filter(|l| l.contains(" | 10000 | ") && l.ends_with("x |"))
            .count();
        assert_eq!(ratio_rows, 2, "{t}");
    }
}
