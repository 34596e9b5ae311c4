//! `tokex demo`: the README's main job, end to end on the lab network.
//!
//! Owns the orchestration only: bring the lab up, start the exchange in
//! `tokex-ex`, a feed handler and the load generator in `tokex-cl` (each as
//! its own `tokex` process, exactly as a user would start them), stop the
//! exchange, check the feed handler's rebuilt books against the exchange's,
//! print the latency table, write the plot, and tear the lab down — also when
//! interrupted. It contains no trading or network logic of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::config::Config;
use crate::lab::{lab, print_log_tail, wait_ready, LabGuard, Proc, CLIENT_NS, EXCHANGE_NS};
use crate::runtime::Stop;

/// The feed handlers' SCHED_FIFO priority in the demo.
const FEED_PRIORITY: u8 = 10;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Exchange config file.
    #[arg(long, default_value = "config/tokex.toml")]
    pub config: PathBuf,
    /// Seconds of load.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Orders per second, open loop at a constant rate.
    #[arg(long, default_value_t = 20_000)]
    pub rate: u64,
    /// Order-entry transport of the exchange: xdp (falls back to udp) or udp.
    #[arg(long, default_value = "xdp")]
    pub transport: String,
    /// Where every output of the run goes.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Exchange thread topology: run-to-completion or pipelined.
    #[arg(long, default_value = "run-to-completion")]
    pub topology: String,
    /// How the exchange sends market data: udp (kernel multicast socket) or
    /// xdp (AF_XDP TX, when order entry runs on AF_XDP).
    #[arg(long, default_value = "udp")]
    pub md_transport: String,
    /// How the load generator sends: udp (a kernel socket per session) or
    /// xdp (one AF_XDP socket on the client's interface).
    #[arg(long, value_enum, default_value_t = crate::load::ClientTransport::Udp)]
    pub client_transport: crate::load::ClientTransport,
    /// The client namespace's core: the load generator polls on it, and the
    /// feed handlers share it under SCHED_FIFO (priority 10), so a packet
    /// preempts the generator's busy loop instead of waiting out a
    /// scheduler slice (that wait had put the feed's p99 at 2-3 ms).
    #[arg(long, default_value_t = 0)]
    pub client_core: usize,
    /// Leave the lab network up at the end.
    #[arg(long)]
    pub keep_lab: bool,
    /// Drop this percentage of market-data datagrams arriving in the client
    /// namespace (nftables), to exercise the feed handler's gap recovery.
    #[arg(long, default_value_t = 0)]
    pub feed_loss: u8,
    /// Run a second feed handler beside the first that drops this
    /// percentage of the feed's datagrams itself (a socket filter), so one
    /// run shows a lossless and a lossy handler rebuilding the same book.
    #[arg(long, default_value_t = 0)]
    pub lossy_feed: u8,
}

/// Sets the nftables rule in the client namespace that drops `pct` % of
/// UDP datagrams to the market-data port (the kernel here has no netem),
/// replacing any earlier one (a kept lab keeps its rules); 0 removes it.
fn feed_loss(pct: u8, port: u16) -> anyhow::Result<()> {
    // Declaring the table first makes the delete succeed when it is absent.
    let mut rules = String::from("table inet tokex_loss {}\ndelete table inet tokex_loss\n");
    if pct > 0 {
        rules += &format!(
            "table inet tokex_loss {{\n  chain input {{\n    type filter hook input priority 0;\n    udp dport {port} numgen random mod 100 < {pct} counter drop\n  }}\n}}\n"
        );
    }
    let status = Command::new("ip")
        .args(["netns", "exec", CLIENT_NS, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().map(|mut i| i.write_all(rules.as_bytes()));
            c.wait()
        })
        .context("running nft (installed by tools/install-deps.sh)")?;
    if !status.success() {
        bail!("nft refused the loss rule ({status})");
    }
    Ok(())
}

/// Runs the demo. Returns an error if any part failed or the books differ.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"));
    if !root {
        bail!("tokex demo creates network namespaces: run it as root");
    }
    let stop = Stop::on_signals()?;
    let out = &args.out;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for stale in [
        "exchange.ready",
        "feed.ready",
        "feed-lossy.ready",
        "exchange-book.csv",
        "feed-book.csv",
        "feed-lossy-book.csv",
        "feed-latency.hgrm",
    ] {
        let _ = std::fs::remove_file(out.join(stale));
    }

    println!("== lab: namespaces {EXCHANGE_NS} (198.18.0.1) and {CLIENT_NS} (198.18.0.2)");
    lab("up")?;
    let _lab = LabGuard {
        keep: args.keep_lab,
    };
    let md_port = Config::load(&args.config)?.network.md_port;
    feed_loss(args.feed_loss, md_port)?;
    if args.feed_loss > 0 {
        println!(
            "== loss: {} % of market-data datagrams dropped in {CLIENT_NS} (nftables)",
            args.feed_loss
        );
    }
    let mut exchange = start_exchange(args, &stop)?;
    let feeds = start_feeds(args, &stop)?;
    let label = run_load(args, &stop)?;
    run_probe(out)?;

    println!("== stopping the exchange (SIGINT): End of Session on the feed");
    let ex_status = exchange.interrupt(Duration::from_secs(20))?;
    print_log_tail("exchange at shutdown", &out.join("exchange.log"), 40);
    if !ex_status.success() {
        bail!("the exchange failed ({ex_status})");
    }
    check_books(out, feeds)?;
    report(out, &label)
}

/// `out/name` as a command-line argument.
fn out_arg(out: &Path, name: &str) -> String {
    out.join(name).display().to_string()
}

/// Starts the exchange in its namespace and waits until it serves.
fn start_exchange(args: &DemoArgs, stop: &Stop) -> anyhow::Result<Proc> {
    let out = &args.out;
    println!(
        "== exchange: ip netns exec {EXCHANGE_NS} tokex exchange --config {}",
        args.config.display()
    );
    let mut exchange = Proc::spawn(
        "exchange",
        EXCHANGE_NS,
        &[
            "exchange".into(),
            "--config".into(),
            args.config.display().to_string(),
            "--transport".into(),
            args.transport.clone(),
            "--topology".into(),
            args.topology.clone(),
            "--md-transport".into(),
            args.md_transport.clone(),
            "--fresh".into(),
            "--ready-file".into(),
            out_arg(out, "exchange.ready"),
            "--book-out".into(),
            out_arg(out, "exchange-book.csv"),
            "--latency-dir".into(),
            out_arg(out, "exchange-latency"),
            "--max-seconds".into(),
            (args.duration + 120).to_string(),
        ],
        &out.join("exchange.log"),
    )?;
    wait_ready(
        &mut exchange,
        &out.join("exchange.ready"),
        stop,
        Duration::from_secs(20),
    )?;
    print_log_tail("exchange start-up", &out.join("exchange.log"), 12);
    Ok(exchange)
}

/// A running feed handler: who it is, its process and the stem of its
/// files in the output directory.
struct Feed {
    who: &'static str,
    stem: &'static str,
    proc: Proc,
}

/// Starts the feed handler (and the lossy one, when asked for) in the
/// client namespace and waits until each listens.
fn start_feeds(args: &DemoArgs, stop: &Stop) -> anyhow::Result<Vec<Feed>> {
    let out = &args.out;
    let net = Config::load(&args.config)?.network;
    // The market data the exchange's config publishes: its group and port,
    // its session, from its address.
    let market_data = [
        "--group".into(),
        net.md_group.to_string(),
        "--port".into(),
        net.md_port.to_string(),
        "--source".into(),
        net.address.to_string(),
        "--retransmit".into(),
        format!("{}:{}", net.address, net.retransmit_port),
        "--session".into(),
        net.md_session.clone(),
    ];
    println!(
        "== feed handler: ip netns exec {CLIENT_NS} tokex feed --core {} --realtime {FEED_PRIORITY} --session {}",
        args.client_core, net.md_session
    );
    // A feed handler whose files are named after `stem`; `extra` goes
    // before its core and priority.
    let spawn_feed = |who: &'static str, stem: &'static str, extra: &[String]| {
        let mut cmd: Vec<String> = vec![
            "feed".into(),
            "--quiet".into(),
            "--duration".into(),
            (args.duration + 30).to_string(),
            "--ready-file".into(),
            out_arg(out, &format!("{stem}.ready")),
            "--book-out".into(),
            out_arg(out, &format!("{stem}-book.csv")),
        ];
        cmd.extend_from_slice(&market_data);
        cmd.extend_from_slice(extra);
        cmd.extend([
            "--core".into(),
            args.client_core.to_string(),
            "--realtime".into(),
            FEED_PRIORITY.to_string(),
        ]);
        let mut proc = Proc::spawn(who, CLIENT_NS, &cmd, &out.join(format!("{stem}.log")))?;
        wait_ready(
            &mut proc,
            &out.join(format!("{stem}.ready")),
            stop,
            Duration::from_secs(10),
        )?;
        anyhow::Ok(Feed { who, stem, proc })
    };
    let mut feeds = vec![spawn_feed(
        "feed handler",
        "feed",
        &[
            "--csv".into(),
            out_arg(out, "feed-messages.csv"),
            "--hgrm".into(),
            out_arg(out, "feed-latency.hgrm"),
        ],
    )?];
    if args.lossy_feed > 0 {
        println!(
            "== second feed handler, dropping {} % of the feed itself: ip netns exec {CLIENT_NS} tokex feed --drop-pct {}",
            args.lossy_feed, args.lossy_feed
        );
        feeds.push(spawn_feed(
            "lossy feed handler",
            "feed-lossy",
            &["--drop-pct".into(), args.lossy_feed.to_string()],
        )?);
    }
    Ok(feeds)
}

/// Runs the load generator to its end; returns the label of its files.
fn run_load(args: &DemoArgs, stop: &Stop) -> anyhow::Result<String> {
    let out = &args.out;
    println!(
        "== load: ip netns exec {CLIENT_NS} tokex load --rate {} --duration {} --core {}",
        args.rate, args.duration, args.client_core
    );
    let label = format!("roundtrip-{}k", args.rate / 1000);
    let mut load = Proc::spawn(
        "load generator",
        CLIENT_NS,
        &[
            "load".into(),
            "--rate".into(),
            args.rate.to_string(),
            "--duration".into(),
            args.duration.to_string(),
            "--count".into(),
            (args.rate * args.duration).to_string(),
            "--out".into(),
            out.display().to_string(),
            "--label".into(),
            label.clone(),
            "--no-progress".into(),
            "--transport".into(),
            args.client_transport.arg().into(),
            "--core".into(),
            args.client_core.to_string(),
        ],
        &out.join("load.log"),
    )?;
    let status = load.wait_unless(stop, Duration::from_secs(args.duration + 60))?;
    print_log_tail("load generator", &out.join("load.log"), 40);
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    Ok(label)
}

/// One login, order and cancel over the SoupBinTCP/TCP port.
fn run_probe(out: &Path) -> anyhow::Result<()> {
    println!("== probe: ip netns exec {CLIENT_NS} tokex probe (login, order, cancel over SoupBinTCP/TCP :9002)");
    let mut probe = Proc::spawn(
        "probe",
        CLIENT_NS,
        &["probe".into()],
        &out.join("probe.log"),
    )?;
    let status = probe.wait(Duration::from_secs(15))?;
    print_log_tail("probe", &out.join("probe.log"), 5);
    if !status.success() {
        bail!("the TCP probe failed ({status})");
    }
    Ok(())
}

/// Waits for the feed handlers to end (the exchange's End of Session stops
/// them) and checks that each rebuilt the exchange's book exactly.
fn check_books(out: &Path, mut feeds: Vec<Feed>) -> anyhow::Result<()> {
    for f in &mut feeds {
        let status = f.proc.wait(Duration::from_secs(15))?;
        // The lossless handler's whole report; the lossy one's summary.
        let lines = if f.stem == "feed" { 25 } else { 9 };
        print_log_tail(f.who, &out.join(format!("{}.log", f.stem)), lines);
        if !status.success() {
            bail!("the {} failed ({status})", f.who);
        }
    }
    let ex_book =
        std::fs::read_to_string(out.join("exchange-book.csv")).context("exchange book")?;
    let orders = ex_book.lines().count().saturating_sub(1);
    for f in &feeds {
        let file = format!("{}-book.csv", f.stem);
        let book =
            std::fs::read_to_string(out.join(&file)).with_context(|| format!("{} book", f.who))?;
        if ex_book != book {
            bail!(
                "the {}'s book differs from the exchange's: compare {} and {}",
                f.who,
                out.join("exchange-book.csv").display(),
                out.join(file).display()
            );
        }
        println!(
            "== books: the {} rebuilt all {orders} resting orders exactly as the exchange holds them",
            f.who
        );
    }
    if let Some(top) = first_symbol_book(&ex_book, 10) {
        println!("{top}");
    }
    Ok(())
}

/// Prints the latency table of the round trip, the exchange and the feed,
/// and writes their plot.
fn report(out: &Path, label: &str) -> anyhow::Result<()> {
    let png = out.join("latency.png");
    let runs = [
        out.join(format!("{label}.hgrm")),
        out.join("exchange-latency/end_to_end.hgrm"),
        out.join("feed-latency.hgrm"),
    ];
    let table = crate::report::plot_files(
        &runs,
        &png,
        "tokex demo: order round trip (client), time in the exchange, market data to the feed",
    )?;
    print!("{table}");
    println!(
        "== files: {png} (plot); {o}/{label}.hgrm, .hlog, .json (round trip); {o}/exchange-latency/*.hgrm (per stage); {o}/feed-latency.hgrm (ITCH timestamp to the feed handler's receive)",
        png = png.display(),
        o = out.display()
    );
    Ok(())
}

/// The first contract's lines of a book.csv, for printing.
fn first_symbol_book(book: &str, max: usize) -> Option<String> {
    let mut lines = book.lines();
    let header = lines.next()?;
    let first = lines.next()?;
    let sym = first.split(',').next()?;
    let mut out = format!("{header}\n{first}\n");
    for l in book
        .lines()
        .skip(2)
        .filter(|l| l.starts_with(&format!("{sym},")))
        .take(max - 1)
    {
        out.push_str(l);
        out.push('\n');
    }
    Some(out)
}
