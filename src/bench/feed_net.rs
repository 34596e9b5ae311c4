//! `tokex bench feed`: publish → rebuild over the lab veth. A sender in the
//! exchange namespace publishes a recorded ITCH stream (the engine's own
//! market data for the mixed order flow) in MoldUDP64 packets at a constant
//! message rate, through the kernel's multicast socket or AF_XDP TX; the
//! real feed handler (`tokex feed`) in the client namespace rebuilds every
//! book. For each rate and transport: the achieved rate, and whether the
//! handler got everything without asking for a retransmission.
//!
//! The sender (`tokex bench feed-send`, run by the orchestrator inside the
//! exchange namespace) flushes a packet every `batch` messages, as the
//! exchange does at the end of an engine batch, answers retransmission
//! requests like the exchange, and ends with End of Session.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use super::codec::itch_stream;
use crate::config::Config;
use crate::contract::ContractSet;
use crate::feed::cli::FeedArgs;
use crate::feed::publisher::Publisher;
use crate::lab::{
    ensure_lab_idle, lab, parse_command, print_log_tail, wait_ready, LabGuard, Proc, CLIENT_NS,
    EXCHANGE_NS,
};
use crate::net::xdp::XdpPort;
use crate::runtime::Stop;

/// `tokex bench feed-send` arguments.
#[derive(clap::Args, Debug, Clone)]
pub struct SendArgs {
    /// Engine operations whose ITCH output is published.
    #[arg(long, default_value_t = 1_000_000)]
    pub ops: usize,
    /// Messages per second (open loop, constant interval).
    #[arg(long, default_value_t = 1_000_000)]
    pub rate: u64,
    /// kernel (multicast socket) | xdp (AF_XDP TX on the exchange interface).
    #[arg(long, default_value = "kernel")]
    pub transport: String,
    /// Messages per flush (an engine batch).
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value = "config/tokex.toml")]
    pub config: std::path::PathBuf,
}

enum Out {
    Kernel(UdpSocket),
    Xdp(Box<XdpPort>, SocketAddrV4, u16),
}

impl Out {
    fn send(&mut self, p: &[u8]) -> bool {
        match self {
            Out::Kernel(s) => s.send(p).is_ok(),
            Out::Xdp(x, group, port) => x.send_multicast(*group, *port, p),
        }
    }

    fn flush(&mut self) {
        if let Out::Xdp(x, _, _) = self {
            x.flush();
        }
    }
}

/// Publishes the stream at the asked rate; prints one result line.
pub fn send(args: &SendArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)?;
    let contracts = ContractSet::load_dir(&cfg.contracts)?;
    let (stream, n) = itch_stream(&contracts, args.ops, 7);
    let session = cfg.network.md_session_name();
    let group = SocketAddrV4::new(cfg.network.md_group, cfg.network.md_port);
    let mut out = match args.transport.as_str() {
        "kernel" => Out::Kernel(crate::exchange::multicast_sender(&cfg)?),
        "xdp" => {
            let port = XdpPort::open(
                &cfg.network.interface,
                SocketAddrV4::new(cfg.network.address, cfg.network.order_port),
                &cfg.xdp,
            )?;
            println!("sender: {}", port.describe());
            Out::Xdp(Box::new(port), group, cfg.network.md_port)
        }
        other => bail!("unknown transport {other:?} (kernel | xdp)"),
    };
    let retrans_addr = SocketAddrV4::new(cfg.network.address, cfg.network.retransmit_port);
    let retrans = UdpSocket::bind(retrans_addr).with_context(|| {
        format!("binding the retransmission port {retrans_addr} (is an exchange or another sender running in this namespace?)")
    })?;
    retrans.set_nonblocking(true)?;
    let mut publisher = Publisher::new(&contracts, session, n + 1024);
    let mut errors = 0u64;
    let mut req = [0u8; 64];
    let mut serve = |publisher: &mut Publisher, out: &mut Out, errors: &mut u64| {
        while let Ok((len, SocketAddr::V4(src))) = retrans.recv_from(&mut req) {
            publisher.retransmit(&req[..len], 4096, &mut |p| {
                if retrans.send_to(p, src).is_err() {
                    *errors += 1;
                }
            });
        }
        out.flush();
    };

    let interval = 1e9 / args.rate.max(1) as f64;
    let start = Instant::now();
    // Bounded: the stream's length, and at most 60 s.
    let limit = Duration::from_secs(60);
    let mut rest = &stream[..];
    let mut i = 0u64;
    while rest.len() >= 2 && start.elapsed() < limit {
        let due = Duration::from_nanos((i as f64 * interval) as u64);
        while start.elapsed() < due {
            std::hint::spin_loop();
        }
        let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        publisher.publish_message(&rest[2..2 + len]);
        rest = &rest[2 + len..];
        i += 1;
        if i.is_multiple_of(args.batch as u64) || rest.len() < 2 {
            publisher.flush(&mut |p| {
                if !out.send(p) {
                    errors += 1;
                }
            });
            out.flush();
            if i.is_multiple_of(4096) {
                serve(&mut publisher, &mut out, &mut errors);
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    // End of Session (three times), then answer requests until quiet.
    for _ in 0..3 {
        publisher.end_of_session(&mut |p| {
            out.send(p);
        });
        out.flush();
        std::thread::sleep(Duration::from_millis(2));
    }
    let quiet_until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < quiet_until {
        serve(&mut publisher, &mut out, &mut errors);
        std::thread::sleep(Duration::from_millis(1));
    }
    let st = publisher.stats();
    println!(
        "sent {i} of {n} messages in {} packets in {seconds:.3} s: {:.0} messages/s (intended {}); send errors {errors}; retransmission requests {}",
        st.packets,
        i as f64 / seconds,
        args.rate,
        st.retransmit_requests
    );
    Ok(())
}

/// One sender/receiver run.
#[derive(Debug, Clone)]
pub struct FeedRun {
    pub transport: String,
    pub rate: u64,
    pub sender: String,
    pub feed: String,
}

/// The transports the sender knows.
pub const TRANSPORTS: [&str; 2] = ["kernel", "xdp"];

/// Seconds the feed handler of a run waits for the sender's End of
/// Session at most.
const FEED_SECONDS: u64 = 90;

/// The feed handler's command line for a run whose files go to `dir`.
fn feed_command(dir: &Path) -> Vec<String> {
    vec![
        "feed".into(),
        "--quiet".into(),
        "--duration".into(),
        FEED_SECONDS.to_string(),
        "--ready-file".into(),
        dir.join("feed.ready").display().to_string(),
    ]
}

/// The sender's command line.
fn sender_command(ops: usize, rate: u64, transport: &str) -> Vec<String> {
    vec![
        "bench".into(),
        "feed-send".into(),
        "--ops".into(),
        ops.to_string(),
        "--rate".into(),
        rate.to_string(),
        "--transport".into(),
        transport.into(),
    ]
}

/// A run's directory under `out`.
fn run_dir(out: &Path, transport: &str, rate: u64) -> std::path::PathBuf {
    out.join(format!("{transport}-{}", super::transport::rate_tag(rate)))
}

/// Checks the runs' flags and command lines without starting anything.
pub fn check(ops: usize, rates: &[u64], transports: &[String], out: &Path) -> anyhow::Result<()> {
    if ops == 0 {
        bail!("--ops 0: no market data to publish");
    }
    if rates.is_empty() || transports.is_empty() {
        bail!("no runs: give at least one rate and one transport");
    }
    if let Some(r) = rates.iter().find(|&&r| r == 0) {
        bail!("a rate of {r} messages/s");
    }
    for t in transports {
        if !TRANSPORTS.contains(&t.as_str()) {
            bail!("unknown transport {t:?} ({})", TRANSPORTS.join(" | "));
        }
        for &rate in rates {
            parse_command::<FeedArgs>(&feed_command(&run_dir(out, t, rate)))?;
            // `bench feed-send` is a subcommand of `bench`: its own
            // arguments are checked.
            parse_command::<SendArgs>(&sender_command(ops, rate, t)[1..])?;
        }
    }
    Ok(())
}

/// Runs the sender at every rate over every transport against `tokex feed`.
/// Flags and command lines are checked ([`check`]), and the lab found
/// idle, before the lab comes up; a run ends as soon as the sender or the
/// feed handler fails.
pub fn run(
    ops: usize,
    rates: &[u64],
    transports: &[String],
    out: &Path,
) -> anyhow::Result<Vec<FeedRun>> {
    check(ops, rates, transports, out)?;
    ensure_lab_idle("tokex bench feed")?;
    let stop = Stop::on_signals()?;
    std::fs::create_dir_all(out)?;
    lab("up")?;
    let _lab = LabGuard { keep: false };
    let mut runs = Vec::new();
    for &rate in rates {
        for t in transports {
            if stop.is_set() {
                bail!("interrupted");
            }
            let dir = run_dir(out, t, rate);
            std::fs::create_dir_all(&dir)?;
            let ready = dir.join("feed.ready");
            let _ = std::fs::remove_file(&ready);
            let mut feed = Proc::spawn(
                "feed handler",
                CLIENT_NS,
                &feed_command(&dir),
                &dir.join("feed.log"),
            )?;
            wait_ready(&mut feed, &ready, &stop, Duration::from_secs(10))?;
            let mut sender = Proc::spawn(
                "sender",
                EXCHANGE_NS,
                &sender_command(ops, rate, t),
                &dir.join("sender.log"),
            )?;
            let s = sender.wait_watching(&mut [&mut feed], &stop, Duration::from_secs(120))?;
            if !s.success() {
                print_log_tail("sender", &dir.join("sender.log"), 10);
                bail!("run {t} at {rate}/s failed: the sender failed ({s})");
            }
            let f = feed.wait_unless(&stop, Duration::from_secs(FEED_SECONDS + 10))?;
            let sender_log = std::fs::read_to_string(dir.join("sender.log"))?;
            let feed_log = std::fs::read_to_string(dir.join("feed.log"))?;
            if !f.success() {
                print_log_tail("sender", &dir.join("sender.log"), 10);
                print_log_tail("feed", &dir.join("feed.log"), 10);
                bail!("run {t} at {rate}/s failed: the feed handler failed ({f})");
            }
            let line = |log: &str, prefix: &str| {
                log.lines()
                    .find(|l| l.starts_with(prefix))
                    .unwrap_or("")
                    .to_string()
            };
            let r = FeedRun {
                transport: t.clone(),
                rate,
                sender: line(&sender_log, "sent "),
                feed: line(&feed_log, "feed: "),
            };
            println!(
                "  {t:<6} {rate:>9}/s  {}\n                    {}",
                r.sender, r.feed
            );
            runs.push(r);
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_transport_or_a_zero_size_is_refused_before_the_lab_comes_up() {
        let out = Path::new("out/bench/feed");
        let t = |names: &[&str]| names.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(check(1_000, &[250_000], &t(&["kernel", "xdp"]), out).is_ok());
        let err = check(1_000, &[250_000], &t(&["kernel", "foo"]), out).unwrap_err();
        assert!(
            err.to_string().contains("unknown transport \"foo\""),
            "{err}"
        );
        assert!(check(0, &[250_000], &t(&["kernel"]), out).is_err());
        assert!(check(1_000, &[0], &t(&["kernel"]), out).is_err());
        assert!(check(1_000, &[], &t(&["kernel"]), out).is_err());
    }

    #[test]
    fn runs_at_rates_below_a_thousand_get_directories_of_their_own() {
        let out = Path::new("out");
        assert_ne!(run_dir(out, "kernel", 500), run_dir(out, "kernel", 800));
        assert_eq!(run_dir(out, "xdp", 250_000), out.join("xdp-250k"));
    }
}
