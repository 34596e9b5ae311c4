//! `tokex exchange`: the server's I/O shell around the sans-IO cores.
//!
//! Owns the sockets and the loop: one pinned, run-to-completion thread
//! receives a batch of datagrams (AF_XDP or kernel UDP), hands each to the
//! gateway (decode, session, match), stores the batch's journal records
//! in the journal file's mapping, then sends the acknowledgements and the
//! market-data packets, and records per-stage latencies. Every millisecond
//! it runs the session timers, market-data heartbeats and retransmission
//! requests.
//! Trading logic lives in `engine` and `gateway`; this module only moves
//! bytes: `io.rs` has the ports and hooks, `server.rs` the loop,
//! `intake.rs` how a batch is shared between the order port and the TCP
//! port,
//! `recovery.rs` the start from the newest snapshot and the journal,
//! `requesters.rs` the retransmission server's per-host limits.

mod intake;
mod io;
mod memory;
mod receiver;
mod recovery;
mod requesters;
mod server;

use std::fs;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

pub(crate) use io::{multicast_sender, Journal, Replies};
use server::Server;

use crate::config::{Config, Topology, TransportKind};
use crate::contract::ContractSet;
use crate::engine::Engine;
use crate::runtime::Stop;
use crate::types::Side;

#[derive(clap::Args, Debug, Clone)]
pub struct ExchangeArgs {
    #[arg(long, default_value = "config/tokex.toml")]
    pub config: PathBuf,
    /// Override the config's order-entry transport (xdp | udp).
    #[arg(long)]
    pub transport: Option<String>,
    /// Start a new day: delete the journal instead of recovering from it.
    #[arg(long)]
    pub fresh: bool,
    /// Touch this file once the exchange is ready for orders.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Write the final book here at shutdown: CSV `symbol,side,price,qty,order`
    /// (order: the ITCH order reference number), per symbol bids best first
    /// then asks best first, time priority within a level. The format `tokex
    /// feed --book-out` writes, so the two compare byte for byte; not
    /// DESIGN.md's book.csv of `tokex replay` (account and token columns,
    /// which the feed does not carry).
    #[arg(long)]
    pub book_out: Option<PathBuf>,
    /// Where per-stage latency files go (default: the config's latency.dir).
    #[arg(long)]
    pub latency_dir: Option<PathBuf>,
    /// Stop by itself after this many seconds.
    #[arg(long)]
    pub max_seconds: Option<u64>,
    /// Override the config's thread topology (run-to-completion | pipelined).
    #[arg(long)]
    pub topology: Option<String>,
    /// Override the config's exchange interface (the one AF_XDP attaches to).
    #[arg(long)]
    pub interface: Option<String>,
    /// Override how market data leaves: udp (kernel socket) | xdp (AF_XDP TX,
    /// through the AF_XDP order port: refused with kernel UDP order entry;
    /// if AF_XDP cannot start, market data falls back to the kernel socket
    /// with it, and says so).
    #[arg(long)]
    pub md_transport: Option<String>,
    /// Recover from a journal damaged in the middle by cutting it at the
    /// damage (the bytes from it on are kept beside it). Without it such a
    /// journal is refused: the records after the damage, acknowledged
    /// orders among them, would be lost. A torn tail is always cut. (After
    /// a power loss under `durability = "fsync"` the blocks of the last,
    /// unacknowledged batch can land out of order and look like damage:
    /// cutting them loses nothing acknowledged.)
    #[arg(long)]
    pub cut_damaged_journal: bool,
}

#[cfg(test)]
impl ExchangeArgs {
    /// No config file and nothing overridden (the tests set the config).
    pub(crate) fn for_tests(fresh: bool) -> ExchangeArgs {
        ExchangeArgs {
            config: PathBuf::new(),
            transport: None,
            fresh,
            ready_file: None,
            book_out: None,
            latency_dir: None,
            max_seconds: None,
            topology: None,
            interface: None,
            md_transport: None,
            cut_damaged_journal: false,
        }
    }
}

/// The config file with the command line's overrides applied.
fn settings(args: &ExchangeArgs) -> anyhow::Result<Config> {
    let mut cfg = Config::load(&args.config)?;
    let transport = |t: &str, what: &str| match t {
        "xdp" => Ok(TransportKind::Xdp),
        "udp" => Ok(TransportKind::Udp),
        other => bail!("unknown {what} {other:?} (xdp | udp)"),
    };
    if let Some(t) = &args.transport {
        cfg.network.transport = transport(t, "transport")?;
    }
    if let Some(t) = &args.md_transport {
        cfg.network.md_transport = transport(t, "market-data transport")?;
    }
    if let Some(t) = &args.topology {
        cfg.runtime.topology = match t.as_str() {
            "run-to-completion" => Topology::RunToCompletion,
            "pipelined" => Topology::Pipelined,
            other => bail!("unknown topology {other:?} (run-to-completion | pipelined)"),
        };
    }
    if let Some(i) = &args.interface {
        cfg.network.interface = i.clone();
    }
    // The overrides are checked as the file was (a pipelined topology asked
    // for on the command line meets the same rule on spinning threads).
    let source = format!(
        "{} with the command line's overrides",
        args.config.display()
    );
    cfg.validate(&source)?;
    // A thread that busy-polls must get the core it was given, not
    // whichever the scheduler picks (it could be the load generator's).
    let rt = &cfg.runtime;
    crate::runtime::check_core(rt.engine_core).context("runtime.engine_core")?;
    if rt.topology == Topology::Pipelined {
        crate::runtime::check_core(rt.rx_core).context("runtime.rx_core")?;
    }
    memory::Stores::of(&cfg, recovery::STORE_CAPACITY)
        .check(memory::available()?)
        .with_context(|| format!("{}: memory for its capacities", args.config.display()))?;
    Ok(cfg)
}

/// SIGINT and SIGTERM, counted: the first stops serving (End of Session
/// and its linger follow, about 2 s), the next cuts that wait short (the
/// exit report still comes), a third ends the process at once (a shutdown
/// stuck elsewhere can still be interrupted).
struct Signals {
    stop: Stop,
    count: Arc<AtomicUsize>,
}

impl Signals {
    fn watch() -> anyhow::Result<Signals> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let stop = Stop::new();
        let count = Arc::new(AtomicUsize::new(0));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let (flag, seen) = (stop.clone(), count.clone());
        std::thread::Builder::new()
            .name("tokex-signals".into())
            .spawn(move || {
                for _ in signals.forever() {
                    let n = seen.fetch_add(1, Ordering::Relaxed) + 1;
                    flag.set();
                    if n >= 3 {
                        eprintln!("exchange: stopped at once (third signal), without End of Session or report");
                        std::process::exit(130);
                    }
                }
            })?;
        Ok(Signals { stop, count })
    }

    fn received(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }
}

/// Runs the exchange until SIGINT/SIGTERM (or `--max-seconds`).
pub fn run(args: &ExchangeArgs) -> anyhow::Result<()> {
    let cfg = settings(args)?;
    let signals = Signals::watch()?;
    let stop = signals.stop.clone();
    let ready = format!(
        "ready: order entry on {}:{}",
        cfg.network.address, cfg.network.order_port
    );
    let mut server = Server::start(cfg, args, &stop)?;
    if let Some(f) = &args.ready_file {
        fs::write(f, b"ready\n").with_context(|| format!("writing {}", f.display()))?;
    }
    println!("{ready}");
    let deadline = args
        .max_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    if let Err(e) = server.serve(&stop, deadline) {
        // Nothing held back is sent (the failed batch's acks and market
        // data were not journaled), but the counters are still printed.
        eprintln!("exchange: stopping on an error: {e:#}");
        let _ = server.report(args);
        return Err(e);
    }
    // Said at once: the End of Session linger takes about 2 s, and a second
    // Ctrl-C (which cuts it short) still gets the report.
    // The stop flag is set only by a signal here: one counts even if its
    // count is not seen yet (the first must not cut its own wait short).
    let before = signals.received().max(usize::from(stop.is_set()));
    println!(
        "stopping: sending End of Session (Ctrl-C {}to stop at once)",
        if before > 0 { "again " } else { "" }
    );
    let hurry = || signals.received() > before;
    let shut = server.shut_down(&stop, &hurry);
    if hurry() {
        println!("stopping at once: End of Session cut short");
    }
    shut?;
    server.report(args)
}

/// The engine's resting orders in the feed handler's book format
/// ([`crate::feed::cli::BOOK_OUT_HEADER`]: `tokex replay`'s book.csv order,
/// with order reference numbers in place of accounts and tokens, which the
/// feed does not carry), so that `tokex demo` compares the two files.
pub fn write_book(
    engine: &Engine,
    contracts: &ContractSet,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    fs::write(path, book_text(engine, contracts))
        .with_context(|| format!("writing {}", path.display()))
}

fn book_text(engine: &Engine, contracts: &ContractSet) -> String {
    use crate::feed::cli::{book_out_row, BOOK_OUT_HEADER};
    let mut out = format!("{BOOK_OUT_HEADER}\n");
    for c in contracts.iter() {
        for side in [Side::Buy, Side::Sell] {
            for o in engine.resting(c.id, side) {
                let price = o.price.to_string_decimals(c.price_decimals());
                out += &book_out_row(c.symbol, side, &price, o.qty, o.order.0);
                out.push('\n');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        exchange: ExchangeArgs,
    }

    #[test]
    fn the_book_out_help_names_the_columns_it_writes_and_not_design_s_book_csv() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let header = crate::feed::cli::BOOK_OUT_HEADER;
        assert!(help.contains(&format!("CSV `{header}`")), "{help}");
        assert!(help.contains("tokex feed --book-out"), "{help}");
        assert!(!help.contains("(book.csv format)"), "{help}");
        // And the file starts with those columns.
        let contracts = ContractSet::load_dir(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"),
        )
        .unwrap();
        let engine = Engine::new(&contracts, crate::engine::EngineConfig { max_orders: 1024 });
        assert_eq!(book_text(&engine, &contracts), format!("{header}\n"));
    }

    #[test]
    fn kernel_udp_orders_with_af_xdp_market_data_are_refused_before_any_port_is_bound() {
        let dir = TempDir::new("exchange-md-xdp");
        let config = dir.join("tokex.toml");
        std::fs::write(
            &config,
            format!(
                "contracts = {:?}\n[network]\naddress = \"127.0.0.1\"\n[runtime]\nengine_core = 0\n",
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")
            ),
        )
        .unwrap();
        let args = ExchangeArgs {
            config: config.clone(),
            transport: Some("udp".into()),
            md_transport: Some("xdp".into()),
            ..ExchangeArgs::for_tests(true)
        };
        // `settings` runs before `Server::start` opens anything.
        let why = format!("{:#}", settings(&args).unwrap_err());
        assert!(why.contains("network.md_transport"), "{why}");
        assert!(
            why.contains("--md-transport udp or --transport xdp"),
            "{why}"
        );
        // The kernel for both, or AF_XDP for both, is fine.
        for (t, md) in [("udp", "udp"), ("xdp", "xdp")] {
            let args = ExchangeArgs {
                config: config.clone(),
                transport: Some(t.into()),
                md_transport: Some(md.into()),
                ..ExchangeArgs::for_tests(true)
            };
            settings(&args).unwrap();
        }
    }
}
