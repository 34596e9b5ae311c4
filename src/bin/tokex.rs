//! The `tokex` command line: one subcommand per job (see README.md).

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "tokex",
    version,
    about = "A low-latency exchange for AI-compute futures"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check order entry over the TCP port: login, one order, cancel, logout.
    Probe(tokex::probe::ProbeArgs),
    /// Percentile plot (PNG) and markdown table from .hgrm files.
    Report(tokex::report::ReportArgs),
    /// The main job: lab up, exchange + feed handler + load for a short run, latency report.
    Demo(tokex::demo::DemoArgs),
    /// The feed handler: join the multicast feed, recover gaps, rebuild every book.
    Feed(tokex::feed::cli::FeedArgs),
    /// Open-loop constant-rate order load against the exchange (lab only).
    Load(tokex::load::LoadArgs),
    /// Run the exchange (inside its namespace: ip netns exec tokex-ex tokex exchange).
    Exchange(tokex::exchange::ExchangeArgs),
    /// Snapshot the exchange's state from its journal (safe while it runs),
    /// so a restart replays only the journal after the snapshot.
    Snapshot(tokex::snapshot::SnapshotArgs),
    /// Bring the lab network up or down (tools/lab.sh).
    Lab {
        /// up | down | status
        action: String,
    },
    /// Side-by-side benchmarks (engine vs a peer order-book crate, ...).
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Run the engine over an order-flow CSV and write trades, book, rejects and ITCH.
    Replay(tokex::replay::ReplayArgs),
    /// Print the contracts of a contracts directory with their limits.
    Contracts {
        #[arg(long, default_value = "contracts")]
        dir: std::path::PathBuf,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// The matching engine vs lobster on the same mixed order flow, one core.
    Engine {
        /// Operations in the measured flow (at least 1).
        #[arg(long, default_value_t = 5_000_000, value_parser = at_least_one::<usize>)]
        ops: usize,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Pin to this core (one that does not exist is refused).
        #[arg(long, value_parser = tokex::runtime::core_arg)]
        core: Option<usize>,
    },
    /// The platform's own stalls, the floor under every tail figure: a
    /// thread pinned to each core reads the clock in a tight loop and
    /// records every gap (run it with nothing else busy).
    Hiccups {
        /// Seconds to measure (at most 600).
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        /// Cores to measure, all at once (default: every core; one that
        /// does not exist is refused).
        #[arg(long, value_delimiter = ',', value_parser = tokex::runtime::core_arg)]
        cores: Vec<usize>,
    },
    /// ITCH decode + dispatch (tokex vs itchy) and feed book rebuilding, on
    /// the engine's own market data for the mixed flow.
    Codecs {
        /// Engine operations whose ITCH output is decoded.
        #[arg(long, default_value_t = 200_000)]
        ops: usize,
        /// Best of this many passes.
        #[arg(long, default_value_t = 20)]
        rounds: usize,
    },
    /// Order round trip over AF_XDP vs the kernel UDP path (and pipelined)
    /// at the same rates on the lab network (root; brings the lab up and down).
    Transport {
        /// Orders per second, comma-separated; every variant runs at each.
        #[arg(long, value_delimiter = ',', default_value = "5000,20000", value_parser = tokex::load::rate_parser())]
        rates: Vec<u64>,
        /// Seconds of load per run (at most an hour).
        #[arg(long, default_value_t = 10, value_parser = seconds_parser())]
        seconds: u64,
        /// Variants: xdp, xdp-md (market data on AF_XDP TX too), udp,
        /// udp-pipelined, xdp-pipelined (the first is the ratios' baseline).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "xdp,udp,udp-pipelined,xdp-pipelined"
        )]
        variants: Vec<String>,
        /// Orders per datagram sent by the load generator (as `tokex load
        /// --batch` takes it: 1 to 24).
        #[arg(long, default_value_t = 1, value_parser = at_least_one::<u64>)]
        batch: u64,
        /// Client sessions of the load generator (1 to 8).
        #[arg(long, default_value_t = 4, value_parser = sessions_parser())]
        sessions: usize,
        /// The load generator's transports, comma-separated: udp (kernel
        /// sockets), xdp (AF_XDP); every variant runs with each.
        #[arg(long, value_delimiter = ',', value_enum, default_value = "udp")]
        clients: Vec<tokex::load::ClientTransport>,
        #[arg(long, default_value = "out/bench/transport")]
        out: std::path::PathBuf,
    },
    /// Orders handled per second on the exchange's one engine core, AF_XDP
    /// vs kernel UDP: the load generator packs orders into datagrams (the
    /// exchange answers each datagram's orders in one datagram) and offers
    /// rising rates; reports what each path sustained and the engine core's
    /// capacity (root; brings the lab up and down).
    Throughput {
        /// Offered orders per second, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "250000,500000,1000000,1500000",
            value_parser = tokex::load::rate_parser()
        )]
        rates: Vec<u64>,
        /// Seconds of load per run (at most an hour).
        #[arg(long, default_value_t = 3, value_parser = seconds_parser())]
        seconds: u64,
        /// xdp, xdp-md (market data on AF_XDP TX too), udp, udp-pipelined,
        /// xdp-pipelined (the first is the ratios' baseline).
        #[arg(long, value_delimiter = ',', default_value = "xdp,udp")]
        variants: Vec<String>,
        /// Orders per datagram (as `tokex load --batch` takes it: 1 to 24).
        #[arg(long, default_value_t = 16, value_parser = at_least_one::<u64>)]
        batch: u64,
        /// Client sessions, 1 to 8 (each limited to the config's rate_per_sec).
        #[arg(long, default_value_t = 8, value_parser = sessions_parser())]
        sessions: usize,
        /// The load generator's transports: udp, xdp (every variant runs
        /// with each).
        #[arg(long, value_delimiter = ',', value_enum, default_value = "udp")]
        clients: Vec<tokex::load::ClientTransport>,
        #[arg(long, default_value = "out/bench/throughput")]
        out: std::path::PathBuf,
    },
    /// The exchange's work per order without the network: datagrams of
    /// OUCH orders through gateway, engine, market-data encoding, journal
    /// (stored into its file's mapping per batch) and reply packing, as
    /// `tokex exchange` runs a batch. Times the second half of the flow
    /// (the first warms up).
    Gateway {
        /// Orders timed (as many again run first, untimed; at most 10
        /// million).
        #[arg(long, default_value_t = 200_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
        orders: u64,
        /// Orders per datagram.
        #[arg(long, default_value_t = 16)]
        per_datagram: usize,
        /// Datagrams per batch (one journal write each).
        #[arg(long, default_value_t = 4)]
        per_batch: usize,
        /// Runs (each on a fresh day); the best is reported.
        #[arg(long, default_value_t = 3)]
        rounds: usize,
        #[arg(long, default_value = "out/bench/gateway.journal")]
        journal: std::path::PathBuf,
    },
    /// Journal recovery time: write a journal of N order messages, then time
    /// its replay (CRC checks, gateway, engine, publisher), as at start-up.
    Recovery {
        /// Order messages in the journal (at least 1).
        #[arg(long, default_value_t = 10_000_000, value_parser = at_least_one::<u64>)]
        messages: u64,
        #[arg(long, default_value = "out/bench/recovery.journal")]
        journal: std::path::PathBuf,
        #[arg(long, default_value = "contracts")]
        contracts: std::path::PathBuf,
        /// Journal messages after the snapshot (replayed on restart); at
        /// most --messages.
        #[arg(long, default_value_t = 100_000)]
        tail: u64,
    },
    /// Publish -> rebuild over the lab veth: a sender publishes the engine's
    /// ITCH stream at constant message rates (kernel socket or AF_XDP TX) to
    /// `tokex feed` (root; brings the lab up and down).
    Feed {
        /// Engine operations whose ITCH output is published (at least 1).
        #[arg(long, default_value_t = 1_000_000, value_parser = at_least_one::<usize>)]
        ops: usize,
        /// Messages per second, comma-separated.
        #[arg(long, value_delimiter = ',', default_value = "250000,500000,1000000", value_parser = tokex::load::rate_parser())]
        rates: Vec<u64>,
        /// kernel, xdp (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "kernel,xdp", value_parser = tokex::bench::feed_net::TRANSPORTS)]
        transports: Vec<String>,
        #[arg(long, default_value = "out/bench/feed")]
        out: std::path::PathBuf,
    },
    /// The sender of `tokex bench feed` (run inside the exchange namespace).
    #[command(hide = true)]
    FeedSend(tokex::bench::feed_net::SendArgs),
    /// Every comparison above in one run, ending with one table of figures
    /// and ratios (root, for the lab network).
    All {
        /// Smaller runs: about 30 s in all (the full run takes about 2 min
        /// 40 s; both measured on a 2-core VM).
        #[arg(long)]
        quick: bool,
        #[arg(long, default_value = "out/bench")]
        out: std::path::PathBuf,
    },
}

/// Seconds of load of a bench run: 1 to an hour.
fn seconds_parser() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=3600)
}

/// A count that must be at least 1 (0 operations, orders or messages
/// measure nothing, and their ratios come out as NaN).
fn at_least_one<T: std::str::FromStr + PartialEq + From<u8>>(s: &str) -> Result<T, String>
where
    T::Err: std::fmt::Display,
{
    match s.parse::<T>() {
        Ok(n) if n == T::from(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Sessions of a bench's load generator: 1 to 8 (the config's demo logins).
fn sessions_parser() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..=8)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Bench(BenchCommand::Engine { ops, seed, core }) => {
            if let Some(core) = core {
                tokex::runtime::pin_current_thread(core)?;
            }
            print!("{}", tokex::bench::engine::run(ops, seed)?);
        }
        Command::Exchange(args) => tokex::exchange::run(&args)?,
        Command::Snapshot(args) => tokex::snapshot::run(&args)?,
        Command::Lab { action } => tokex::lab::lab(&action)?,
        Command::Load(args) => {
            let report = tokex::load::run(&args)?;
            println!("{report}");
            // Interrupted (Ctrl-C, SIGTERM): the report and files are
            // written, and the status says the run was cut short.
            if let Some(code) = report.exit_code() {
                use std::io::Write;
                std::io::stdout().flush()?;
                std::process::exit(code);
            }
        }
        Command::Demo(args) => tokex::demo::run(&args)?,
        Command::Feed(args) => {
            tokex::feed::cli::run(&args)?;
        }
        Command::Report(args) => tokex::report::run(&args)?,
        Command::Probe(args) => tokex::probe::run(&args)?,
        Command::Bench(BenchCommand::Hiccups { seconds, cores }) => {
            let cores = if cores.is_empty() {
                (0..tokex::runtime::available_cores()).collect()
            } else {
                cores
            };
            print_hiccups(&tokex::bench::hiccups::run(&cores, seconds)?);
        }
        Command::Bench(BenchCommand::Codecs { ops, rounds }) => {
            let f = tokex::bench::codec::run(ops, rounds)?;
            use tokex::text::plural;
            println!(
                "codecs: {} from {}, best of {}",
                plural(f.messages, "ITCH message", "ITCH messages"),
                plural(ops, "engine operation", "engine operations"),
                plural(rounds, "pass", "passes")
            );
            println!(
                "  decode + dispatch  tokex {:.1} ns/msg, itchy {:.1} ns/msg, ratio {:.1}x",
                f.tokex_decode_ns,
                f.itchy_decode_ns,
                f.itchy_decode_ns / f.tokex_decode_ns
            );
            println!(
                "    (one jump per message, itch::stream: {:.1} ns/msg)",
                f.tokex_stream_decode_ns
            );
            println!(
                "  feed book rebuild  {:.1} ns/msg ({:.1} M msg/s)",
                f.rebuild_ns,
                1e3 / f.rebuild_ns
            );
        }
        Command::Bench(BenchCommand::Transport {
            rates,
            seconds,
            variants,
            batch,
            sessions,
            clients,
            out,
        }) => {
            let runs = transport_runs(&variants, &clients, &rates, seconds, batch, sessions, &out)?;
            print!("\n{}", tokex::bench::transport::table(&runs));
        }
        Command::Bench(BenchCommand::Throughput {
            rates,
            seconds,
            variants,
            batch,
            sessions,
            clients,
            out,
        }) => {
            let runs = transport_runs(&variants, &clients, &rates, seconds, batch, sessions, &out)?;
            print!("\n{}", tokex::bench::transport::throughput_table(&runs));
        }
        Command::Bench(BenchCommand::Gateway {
            orders,
            per_datagram,
            per_batch,
            rounds,
            journal,
        }) => {
            let set = tokex::contract::ContractSet::load_dir(std::path::Path::new("contracts"))?;
            if let Some(dir) = journal.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let f = tokex::bench::gateway::run(
                &set,
                orders,
                per_datagram,
                per_batch,
                rounds,
                &journal,
            )?;
            std::fs::remove_file(&journal)?;
            println!("{f}");
        }
        Command::Bench(BenchCommand::Recovery {
            messages,
            journal,
            contracts,
            tail,
        }) => {
            tokex::bench::recovery::check_sizes(messages, tail)?;
            let set = tokex::contract::ContractSet::load_dir(&contracts)?;
            if let Some(dir) = journal.parent() {
                std::fs::create_dir_all(dir)?;
            }
            println!(
                "{}",
                tokex::bench::recovery::run(messages, tail, &set, &journal)?
            );
            std::fs::remove_file(&journal)?;
        }
        Command::Bench(BenchCommand::Feed {
            ops,
            rates,
            transports,
            out,
        }) => {
            tokex::bench::feed_net::run(ops, &rates, &transports, &out)?;
        }
        Command::Bench(BenchCommand::FeedSend(args)) => tokex::bench::feed_net::send(&args)?,
        Command::Bench(BenchCommand::All { quick, out }) => {
            use tokex::bench::suite::{self, Plan};
            let plan = if quick { Plan::QUICK } else { Plan::FULL };
            let table = suite::run(plan, &out)?;
            print!("{table}");
            std::fs::write(out.join("summary.md"), &table)?;
            println!("(also in {})", out.join("summary.md").display());
        }
        Command::Replay(args) => {
            let summary = tokex::replay::run(&args)?;
            println!("replay: {summary}; outputs in {}", args.out.display());
        }
        Command::Contracts { dir } => {
            let set = tokex::contract::ContractSet::load_dir(&dir)?;
            println!(
                "{:<8} {:>10} {:>7} {:>10} {:>10} {:>8}",
                "symbol", "reference", "tick", "lower", "upper", "max_qty"
            );
            for c in set.iter() {
                let d = c.price_decimals();
                println!(
                    "{:<8} {:>10} {:>7} {:>10} {:>10} {:>8}",
                    c.symbol.as_str(),
                    c.reference_price.to_string_decimals(d),
                    c.tick.to_string_decimals(d),
                    c.lower_limit.to_string_decimals(d),
                    c.upper_limit.to_string_decimals(d),
                    c.max_order_qty
                );
            }
        }
    }
    Ok(())
}

/// Runs the named transport variants at every rate with the load shape.
fn transport_runs(
    names: &[String],
    clients: &[tokex::load::ClientTransport],
    rates: &[u64],
    seconds: u64,
    batch: u64,
    sessions: usize,
    out: &std::path::Path,
) -> anyhow::Result<Vec<tokex::bench::transport::Measured>> {
    use tokex::bench::transport::{self, Shape, Variant};
    let variants = names
        .iter()
        .map(|v| match v.as_str() {
            "xdp" => Ok(Variant::XDP),
            "xdp-md" => Ok(Variant::XDP_MD_XDP),
            "udp" => Ok(Variant::UDP),
            "udp-pipelined" => Ok(Variant::UDP_PIPELINED),
            "xdp-pipelined" => Ok(Variant::XDP_PIPELINED),
            other => Err(anyhow::anyhow!(
                "unknown variant {other:?} (xdp | xdp-md | udp | udp-pipelined | xdp-pipelined)"
            )),
        })
        .collect::<anyhow::Result<Vec<Variant>>>()?;
    let variants: Vec<Variant> = clients
        .iter()
        .flat_map(|&c| variants.iter().map(move |v| v.with_client(c)))
        .collect();
    transport::run(&variants, rates, seconds, Shape { batch, sessions }, out)
}

fn print_hiccups(cores: &[tokex::bench::hiccups::CoreHiccups]) {
    use tokex::latency::fmt_ns;
    println!(
        "hiccups: gaps of at least {} between two clock reads of a spinning thread",
        fmt_ns(tokex::bench::hiccups::HICCUP_NS)
    );
    println!(
        "{:>5} {:>8} {:>9} {:>9} {:>9} {:>10} {:>10} {:>10} {:>10}",
        "core", "seconds", "gaps", ">=100us", ">=1ms", "lost", "p50", "p99", "max"
    );
    for c in cores {
        let g = &c.gaps;
        println!(
            "{:>5} {:>8.1} {:>9} {:>9} {:>9} {:>9.3}% {:>10} {:>10} {:>10}",
            c.core,
            c.ran.as_secs_f64(),
            g.len(),
            c.count_at_least(100_000),
            c.count_at_least(1_000_000),
            c.lost_pct(),
            fmt_ns(g.value_at_percentile(50.0)),
            fmt_ns(g.value_at_percentile(99.0)),
            fmt_ns(g.max()),
        );
    }
    for c in cores {
        let worst: Vec<String> = c
            .worst
            .iter()
            .map(|(gap, at)| {
                format!(
                    "{} at {:.3} s",
                    fmt_ns(gap.as_nanos() as u64),
                    at.as_secs_f64()
                )
            })
            .collect();
        println!("core {} longest: {}", c.core, worst.join(", "));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from([&["tokex"], args].concat())
    }

    #[test]
    fn bench_flags_no_run_can_use_are_refused_by_the_parser() {
        assert!(parse(&["bench", "engine", "--ops", "0"]).is_err());
        assert!(parse(&["bench", "engine", "--ops", "1"]).is_ok());
        assert!(parse(&["bench", "feed", "--transports", "kernel,foo"]).is_err());
        assert!(parse(&["bench", "feed", "--rates", "0"]).is_err());
        assert!(parse(&["bench", "feed", "--transports", "xdp"]).is_ok());
        assert!(parse(&["bench", "throughput", "--batch", "0"]).is_err());
        assert!(parse(&["bench", "transport", "--sessions", "9"]).is_err());
        assert!(parse(&["bench", "recovery", "--messages", "0"]).is_err());
    }

    #[test]
    fn a_core_that_does_not_exist_is_refused_by_the_parser() {
        let n = tokex::runtime::available_cores().to_string();
        for args in [
            &["bench", "engine", "--core", &n][..],
            &["bench", "hiccups", "--cores", &format!("0,{n}")],
            &["feed", "--core", &n],
        ] {
            let Err(e) = parse(args) else {
                panic!("{args:?} accepted");
            };
            let text = e.to_string();
            assert!(
                text.contains(&format!("core {n} does not exist here")),
                "{text}"
            );
        }
        assert!(parse(&["bench", "engine", "--core", "0"]).is_ok());
        assert!(parse(&["bench", "hiccups", "--cores", "0"]).is_ok());
    }

    #[test]
    fn keep_below_one_and_a_drop_share_over_100_are_refused_by_the_parser() {
        assert!(parse(&["snapshot", "--keep", "0"]).is_err());
        assert!(parse(&["snapshot", "--keep", "1"]).is_ok());
        assert!(parse(&["feed", "--drop-pct", "150"]).is_err());
        assert!(parse(&["feed", "--drop-pct", "101"]).is_err());
        assert!(parse(&["feed", "--drop-pct", "100"]).is_ok());
    }

    #[test]
    fn bench_all_quick_help_gives_the_measured_durations() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let all = cmd
            .find_subcommand_mut("bench")
            .and_then(|b| b.find_subcommand_mut("all"))
            .unwrap();
        let help = all.render_long_help().to_string();
        assert!(help.contains("about 30 s"), "{help}");
        assert!(help.contains("2 min 40 s"), "{help}");
        assert!(!help.contains("about a minute"), "{help}");
    }
}
