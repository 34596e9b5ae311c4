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
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::config::Config;
use crate::exchange::ExchangeArgs;
use crate::feed::cli::FeedArgs;
use crate::lab::{
    ensure_lab_idle, lab, parse_command, print_log_tail, run_config, shell_line, wait_ready,
    LabGuard, Proc, CLIENT_IF, CLIENT_NS, EXCHANGE_NS,
};
use crate::load::LoadArgs;
use crate::runtime::Stop;

/// The feed handlers' SCHED_FIFO priority in the demo.
const FEED_PRIORITY: u8 = 10;

/// How long past its own deadline a feed handler is given to write its
/// book and report before it is stopped.
const FEED_REPORT_GRACE: Duration = Duration::from_secs(10);

/// The lossy feed handler's own address in the client namespace (a
/// second address on its veth, lab range): the retransmission server
/// limits requests per host, and the two handlers, both on 198.18.0.2,
/// drew on one bucket (the walkthrough's exchange counted 41 requests
/// over it), so the lossless one's requests slowed the lossy one's
/// recovery. Each now asks as a host of its own, as two consumers would.
const LOSSY_FEED_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(198, 18, 0, 3);

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Exchange config file. The run's exchange gets a copy of it with its
    /// journal, snapshots, market-data archive and latency files under
    /// `--out` (`OUT/exchange.toml`): it starts a fresh day there, never on
    /// the config's own journal.
    #[arg(long, default_value = "config/tokex.toml")]
    pub config: PathBuf,
    /// Seconds of load (at most an hour).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration: u64,
    /// Orders per second, open loop at a constant rate.
    #[arg(long, default_value_t = 20_000, value_parser = crate::load::rate_parser())]
    pub rate: u64,
    /// Order-entry transport of the exchange: xdp (falls back to udp) or udp.
    #[arg(long, default_value = "xdp", value_parser = ["xdp", "udp"])]
    pub transport: String,
    /// Where every output of the run goes.
    #[arg(long, default_value = "out/demo")]
    pub out: PathBuf,
    /// Exchange thread topology: run-to-completion or pipelined.
    #[arg(long, default_value = "run-to-completion", value_parser = ["run-to-completion", "pipelined"])]
    pub topology: String,
    /// How the exchange sends market data: udp (kernel multicast socket) or
    /// xdp (AF_XDP TX, which needs `--transport xdp`: it goes out through
    /// the order port's AF_XDP socket).
    #[arg(long, default_value = "udp", value_parser = ["udp", "xdp"])]
    pub md_transport: String,
    /// How the load generator sends: udp (a kernel socket per session) or
    /// xdp (one AF_XDP socket on the client's interface).
    #[arg(long, value_enum, default_value_t = crate::load::ClientTransport::Udp)]
    pub client_transport: crate::load::ClientTransport,
    /// The client namespace's core: the load generator polls on it, and the
    /// feed handlers share it under SCHED_FIFO (priority 10), so a packet
    /// preempts the generator's busy loop instead of waiting out a
    /// scheduler slice (that wait had put the feed's p99 at 2-3 ms).
    #[arg(long, default_value_t = 0, value_parser = crate::runtime::core_arg)]
    pub client_core: usize,
    /// Leave the lab network up at the end.
    #[arg(long)]
    pub keep_lab: bool,
    /// Drop this percentage of market-data datagrams arriving in the client
    /// namespace (nftables), to exercise the feed handler's gap recovery.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub feed_loss: u8,
    /// Run a second feed handler beside the first that drops this
    /// percentage of the feed's datagrams itself (a socket filter), so one
    /// run shows a lossless and a lossy handler rebuilding the same book.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
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

/// Refuses flag combinations the run could not honour, before anything
/// starts: market data on AF_XDP leaves through the order port's AF_XDP
/// socket, so with `--transport udp` the exchange would publish through
/// the kernel socket instead, silently.
pub fn check_args(args: &DemoArgs) -> anyhow::Result<()> {
    if args.md_transport == "xdp" && args.transport != "xdp" {
        bail!(
            "--md-transport xdp needs --transport xdp: market data on AF_XDP goes out through the order port's AF_XDP socket (with --transport {} the exchange would publish through the kernel socket)",
            args.transport
        );
    }
    Ok(())
}

/// The seconds a feed handler of the demo runs at most (its `--duration`):
/// the load, then the probe, the exchange's shutdown and its linger for
/// late retransmission requests, with room to spare.
fn feed_seconds(args: &DemoArgs) -> u64 {
    args.duration + 30
}

/// The run's command lines (each a `tokex` subcommand and its arguments),
/// built and checked against the subcommands' own argument definitions
/// before the lab comes up.
#[derive(Debug, Clone)]
struct Plan {
    exchange: Vec<String>,
    /// Who, the stem of its files, its command line.
    feeds: Vec<(&'static str, &'static str, Vec<String>)>,
    load: Vec<String>,
    /// The label of the load generator's files.
    label: String,
}

/// `out/name` as a command-line argument.
fn out_arg(out: &Path, name: &str) -> String {
    out.join(name).display().to_string()
}

impl Plan {
    /// The commands of a run of `args` whose exchange reads `config` (the
    /// run's own, see [`crate::lab::run_config`]) with network settings
    /// `cfg`.
    fn new(args: &DemoArgs, config: &Path, cfg: &Config) -> anyhow::Result<Plan> {
        let out = &args.out;
        let exchange: Vec<String> = vec![
            "exchange".into(),
            "--config".into(),
            config.display().to_string(),
            "--transport".into(),
            args.transport.clone(),
            "--topology".into(),
            args.topology.clone(),
            "--md-transport".into(),
            args.md_transport.clone(),
            // A new day in the run's own journal (under --out).
            "--fresh".into(),
            "--ready-file".into(),
            out_arg(out, "exchange.ready"),
            "--book-out".into(),
            out_arg(out, "exchange-book.csv"),
            "--latency-dir".into(),
            out_arg(out, "exchange-latency"),
            "--max-seconds".into(),
            (args.duration + 120).to_string(),
        ];
        let net = &cfg.network;
        // The market data the exchange's config publishes: its group and
        // port, its session, from its address.
        let market_data: Vec<String> = vec![
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
        // A feed handler whose files are named after `stem`; `extra` goes
        // before its core and priority.
        let feed = |stem: &str, extra: &[String]| {
            let mut cmd: Vec<String> = vec![
                "feed".into(),
                "--quiet".into(),
                "--duration".into(),
                feed_seconds(args).to_string(),
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
            cmd
        };
        let mut feeds = vec![(
            "feed handler",
            "feed",
            feed(
                "feed",
                &[
                    "--csv".into(),
                    out_arg(out, "feed-messages.csv"),
                    "--hgrm".into(),
                    out_arg(out, "feed-latency.hgrm"),
                ],
            ),
        )];
        if args.lossy_feed > 0 {
            feeds.push((
                "lossy feed handler",
                "feed-lossy",
                feed(
                    "feed-lossy",
                    &[
                        "--drop-pct".into(),
                        args.lossy_feed.to_string(),
                        "--interface-addr".into(),
                        LOSSY_FEED_ADDR.to_string(),
                    ],
                ),
            ));
        }
        let label = format!("roundtrip-{}k", args.rate / 1000);
        let load: Vec<String> = vec![
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
        ];
        parse_command::<ExchangeArgs>(&exchange)?;
        for (_, _, f) in &feeds {
            parse_command::<FeedArgs>(f)?;
        }
        parse_command::<LoadArgs>(&load)?;
        Ok(Plan {
            exchange,
            feeds,
            load,
            label,
        })
    }
}

/// How a command of the run is echoed: exactly what is started.
fn echo(ns: &str, argv: &[String]) -> String {
    format!("ip netns exec {ns} tokex {}", shell_line(argv))
}

/// Gives the client namespace's veth a second lab address (kept until the
/// lab goes down; `replace` makes it idempotent on a kept lab).
fn add_client_address(addr: std::net::Ipv4Addr) -> anyhow::Result<()> {
    let status = Command::new("ip")
        .args([
            "-n",
            CLIENT_NS,
            "addr",
            "replace",
            &format!("{addr}/24"),
            "dev",
            CLIENT_IF,
        ])
        .status()
        .context("running ip")?;
    if !status.success() {
        bail!("adding {addr} to {CLIENT_IF} in {CLIENT_NS} failed ({status})");
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
    // Everything that can be refused is, before the lab is touched.
    check_args(args)?;
    ensure_lab_idle("tokex demo")?;
    let out = &args.out;
    let config = run_config(&args.config, out)?;
    let cfg = Config::load(&config)?;
    let plan = Plan::new(args, &config, &cfg)?;
    let stop = Stop::on_signals()?;
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
    feed_loss(args.feed_loss, cfg.network.md_port)?;
    if args.feed_loss > 0 {
        println!(
            "== loss: {} % of market-data datagrams dropped in {CLIENT_NS} (nftables)",
            args.feed_loss
        );
    }
    if args.lossy_feed > 0 {
        add_client_address(LOSSY_FEED_ADDR)?;
    }
    let mut exchange = start_exchange(args, &plan, &config, &stop)?;
    let mut feeds = start_feeds(args, &plan, &stop)?;
    run_load(args, &plan, &mut exchange, &mut feeds, &stop)?;
    run_probe(out)?;

    println!("== stopping the exchange (SIGINT): End of Session on the feed");
    let ex_status = exchange.interrupt(Duration::from_secs(20))?;
    print_log_tail("exchange at shutdown", &out.join("exchange.log"), 40);
    if !ex_status.success() {
        bail!("the exchange failed ({ex_status})");
    }
    check_books(out, feeds)?;
    report(out, &plan.label)
}

/// Starts the exchange in its namespace and waits until it serves.
fn start_exchange(
    args: &DemoArgs,
    plan: &Plan,
    config: &Path,
    stop: &Stop,
) -> anyhow::Result<Proc> {
    let out = &args.out;
    println!(
        "== exchange: {} (config: {} with the journal under {})",
        echo(EXCHANGE_NS, &plan.exchange),
        config.display(),
        out.display()
    );
    let mut exchange = Proc::spawn(
        "exchange",
        EXCHANGE_NS,
        &plan.exchange,
        &out.join("exchange.log"),
    )?;
    wait_ready(
        &mut exchange,
        &out.join("exchange.ready"),
        stop,
        Duration::from_secs(20),
    )?;
    print_log_tail("exchange start-up", &out.join("exchange.log"), 12);
    let log = std::fs::read_to_string(out.join("exchange.log")).unwrap_or_default();
    if let Some(note) = md_fallback_note(&args.md_transport, &log) {
        println!("{note}");
    }
    Ok(exchange)
}

/// A line for the user when market data was asked on AF_XDP but the
/// exchange's start-up log says it goes through the kernel socket (order
/// entry fell back from AF_XDP to kernel UDP, and market data on AF_XDP
/// needs the AF_XDP order port).
fn md_fallback_note(md_transport: &str, exchange_log: &str) -> Option<String> {
    let line = exchange_log
        .lines()
        .find(|l| l.starts_with("market data: "))?;
    (md_transport == "xdp" && line.contains("through the kernel socket")).then(|| {
        "== note: --md-transport xdp asked for, but market data goes through the kernel socket: AF_XDP did not start for order entry (see the transport line above), and market data on AF_XDP needs it".to_string()
    })
}

/// A running feed handler: who it is, its process, the stem of its files
/// in the output directory, and when it gives up by itself.
struct Feed {
    who: &'static str,
    stem: &'static str,
    proc: Proc,
    gives_up: Instant,
}

/// Starts the feed handler (and the lossy one, when asked for) in the
/// client namespace and waits until each listens.
fn start_feeds(args: &DemoArgs, plan: &Plan, stop: &Stop) -> anyhow::Result<Vec<Feed>> {
    let out = &args.out;
    let mut feeds = Vec::new();
    for (who, stem, cmd) in &plan.feeds {
        println!("== {who}: {}", echo(CLIENT_NS, cmd));
        let started = Instant::now();
        let mut proc = Proc::spawn(who, CLIENT_NS, cmd, &out.join(format!("{stem}.log")))?;
        wait_ready(
            &mut proc,
            &out.join(format!("{stem}.ready")),
            stop,
            Duration::from_secs(10),
        )?;
        feeds.push(Feed {
            who,
            stem,
            proc,
            gives_up: started + Duration::from_secs(feed_seconds(args)),
        });
    }
    Ok(feeds)
}

/// Runs the load generator to its end, giving up at once if the exchange
/// or a feed handler fails meanwhile.
fn run_load(
    args: &DemoArgs,
    plan: &Plan,
    exchange: &mut Proc,
    feeds: &mut [Feed],
    stop: &Stop,
) -> anyhow::Result<()> {
    let out = &args.out;
    println!("== load: {}", echo(CLIENT_NS, &plan.load));
    let mut load = Proc::spawn(
        "load generator",
        CLIENT_NS,
        &plan.load,
        &out.join("load.log"),
    )?;
    let mut deps: Vec<&mut Proc> = vec![exchange];
    deps.extend(feeds.iter_mut().map(|f| &mut f.proc));
    let status = load.wait_watching(&mut deps, stop, Duration::from_secs(args.duration + 60));
    print_log_tail("load generator", &out.join("load.log"), 40);
    let status = status?;
    if !status.success() {
        bail!("the load generator failed ({status})");
    }
    Ok(())
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
/// them once nothing is missing) and checks that each rebuilt the
/// exchange's book exactly.
fn check_books(out: &Path, mut feeds: Vec<Feed>) -> anyhow::Result<()> {
    for f in &mut feeds {
        // A handler still recovering is left to finish, or to give up by
        // itself at the end of its --duration, when it writes its report
        // (gaps, requests, what it recovered): killed earlier, as the demo
        // once did 15 s after the exchange stopped, it left a log with
        // nothing in it to say why.
        let limit = f.gives_up.saturating_duration_since(Instant::now()) + FEED_REPORT_GRACE;
        let status = match f.proc.wait(limit) {
            Ok(status) => status,
            Err(e) => {
                print_log_tail(f.who, &out.join(format!("{}.log", f.stem)), 25);
                return Err(e);
            }
        };
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        demo: DemoArgs,
    }

    fn demo(args: &[&str]) -> Result<DemoArgs, clap::Error> {
        Cli::try_parse_from([&["demo"], args].concat()).map(|c| c.demo)
    }

    #[test]
    fn a_client_core_that_does_not_exist_is_refused_under_its_own_name() {
        let n = crate::runtime::available_cores().to_string();
        let err = demo(&["--client-core", &n]).expect_err("refused");
        let text = err.to_string();
        assert!(text.contains("--client-core"), "{text}");
        assert!(
            text.contains(&format!("core {n} does not exist here")),
            "{text}"
        );
        assert!(demo(&["--client-core", "0"]).is_ok());
    }

    #[test]
    fn market_data_on_af_xdp_without_the_af_xdp_transport_is_refused() {
        let args = demo(&["--transport", "udp", "--md-transport", "xdp"]).unwrap();
        let err = check_args(&args).expect_err("refused");
        assert!(
            err.to_string()
                .contains("--md-transport xdp needs --transport xdp"),
            "{err}"
        );
        assert!(
            check_args(&demo(&["--transport", "xdp", "--md-transport", "xdp"]).unwrap()).is_ok()
        );
        assert!(check_args(&demo(&["--transport", "udp"]).unwrap()).is_ok());
        // Names the parser does not know never reach the exchange.
        assert!(demo(&["--transport", "dpdk"]).is_err());
        assert!(demo(&["--md-transport", "tcp"]).is_err());
        assert!(demo(&["--topology", "threaded"]).is_err());
        assert!(demo(&["--lossy-feed", "101"]).is_err());
        assert!(demo(&["--duration", "0"]).is_err());
    }

    #[test]
    fn an_af_xdp_market_data_fallback_is_said() {
        let kernel = "transport: ...\nmarket data: ITCH 5.0 in MoldUDP64 to 239.198.0.1:9100 (TTL 1) through the kernel socket, session TOKEX00001\n";
        let xdp = "market data: ITCH 5.0 in MoldUDP64 to 239.198.0.1:9100 (TTL 1) through AF_XDP TX, session TOKEX00001\n";
        assert!(md_fallback_note("xdp", kernel)
            .unwrap()
            .contains("needs it"));
        assert_eq!(md_fallback_note("xdp", xdp), None);
        assert_eq!(md_fallback_note("udp", kernel), None);
    }

    #[test]
    fn the_echoed_exchange_command_is_the_one_started_on_the_run_s_own_config() {
        let args = demo(&["--out", "out/demo", "--lossy-feed", "5"]).unwrap();
        let shipped = std::fs::read_to_string("config/tokex.toml").unwrap();
        let text = crate::lab::derive_config(&shipped, "config/tokex.toml", &args.out).unwrap();
        let cfg = Config::parse("derived", &text).unwrap();
        let config = args.out.join(crate::lab::RUN_CONFIG);
        let plan = Plan::new(&args, &config, &cfg).unwrap();
        let line = echo(EXCHANGE_NS, &plan.exchange);
        assert!(
            line.starts_with(
                "ip netns exec tokex-ex tokex exchange --config out/demo/exchange.toml --transport xdp"
            ),
            "{line}"
        );
        // What the old echo left out.
        for flag in ["--fresh", "--book-out", "--ready-file", "--max-seconds"] {
            assert!(line.contains(flag), "{line}");
        }
        // The exchange's own parser takes it, config and all.
        let ex: ExchangeArgs = parse_command(&plan.exchange).unwrap();
        assert_eq!(ex.config, config);
        assert!(ex.fresh);
        // The lossy handler asks for retransmissions from its own address.
        let (_, _, lossy) = &plan.feeds[1];
        let f: FeedArgs = parse_command(lossy).unwrap();
        assert_eq!(f.interface_addr, LOSSY_FEED_ADDR);
        assert_eq!(f.drop_pct, 5);
        let f: FeedArgs = parse_command(&plan.feeds[0].2).unwrap();
        assert_eq!(f.interface_addr, std::net::Ipv4Addr::new(198, 18, 0, 2));
    }
}
