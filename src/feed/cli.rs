//! `tokex feed`: the feed handler's socket shell and terminal view.
//!
//! Joins the multicast group on the lab interface, drives the sans-IO
//! [`FeedHandler`], sends its retransmission requests, shows the top of
//! every book (refreshing in place), and at the end of session writes the
//! rebuilt book and prints statistics with feed latency percentiles. With
//! `--pcap FILE` it drives the same handler from a capture instead
//! ([`super::pcap`]), with the same outputs, and reports what the capture
//! misses.

use std::io::{IsTerminal, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use super::book::FeedBooks;
use super::handler::{FeedHandler, FeedStats};
use super::pcap;
use crate::contract::ContractSet;
use crate::latency::Summary;
use crate::text::plural;
use crate::types::{Nanos, Side};
use crate::wire::itch::Message;

#[derive(clap::Args, Debug, Clone)]
pub struct FeedArgs {
    #[arg(long, default_value = "239.198.0.1")]
    pub group: Ipv4Addr,
    #[arg(long, default_value_t = 9100)]
    pub port: u16,
    /// Address of the lab interface to join the group on.
    #[arg(long, default_value = "198.18.0.2")]
    pub interface_addr: Ipv4Addr,
    /// The retransmission server.
    #[arg(long, default_value = "198.18.0.1:9101")]
    pub retransmit: SocketAddrV4,
    /// The exchange's address: datagrams to the group from any other
    /// source are counted and dropped (anyone on the link can send to a
    /// multicast group).
    #[arg(long, default_value = "198.18.0.1")]
    pub source: Ipv4Addr,
    /// The MoldUDP64 session to follow (exactly 10 ASCII characters, the
    /// exchange's `md_session`); packets of other sessions are counted and
    /// dropped.
    #[arg(long, default_value = "TOKEX00001", value_parser = session_name)]
    pub session: [u8; 10],
    /// Stop after this many seconds even without End of Session (0: no
    /// limit, until End of Session or Ctrl-C). A stop before a complete
    /// End of Session, by the limit or by Ctrl-C, still prints the
    /// statistics and writes the files asked for, then exits with status
    /// 1: the books are not known to be complete.
    #[arg(long, default_value_t = 60)]
    pub duration: u64,
    /// No live view, statistics only.
    #[arg(long)]
    pub quiet: bool,
    /// Touch this file once joined.
    #[arg(long)]
    pub ready_file: Option<PathBuf>,
    /// Write the rebuilt book here at the end: CSV `symbol,side,price,qty,order`
    /// (order: the ITCH order reference number), per symbol bids best first
    /// then asks best first, time priority within a level. `tokex exchange
    /// --book-out` writes the same format, so the two files compare byte
    /// for byte (DESIGN.md's book.csv has account and token columns, which
    /// the feed does not carry).
    #[arg(long)]
    pub book_out: Option<PathBuf>,
    #[arg(long, default_value = "contracts")]
    pub contracts: PathBuf,
    /// Write every message applied, in sequence order, as CSV here
    /// (`seq,type,locate,timestamp_ns,order,side,qty,price,match`).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Write the feed latency of the messages applied as they arrived (ITCH
    /// timestamp to receive) here as HdrHistogram percentile text (`.hgrm`).
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Pin the feed handler to this core (an index into the cores it may
    /// run on; one that does not exist is refused); by default the
    /// scheduler places it. Live only.
    #[arg(long, conflicts_with = "pcap", value_parser = crate::runtime::core_arg)]
    pub core: Option<usize>,
    /// Run under SCHED_FIFO at this priority (1-99), so that a packet wakes
    /// the handler at once even on a core a busy-polling thread shares (the
    /// demo's load generator); it blocks between packets, so it never
    /// holds the core for long. Needs root or CAP_SYS_NICE. Live only: a
    /// capture is read without blocking, which would starve the core.
    #[arg(long, value_name = "PRIORITY", conflicts_with = "pcap")]
    pub realtime: Option<u8>,
    /// Rebuild offline from this capture (pcap or pcapng of the market
    /// data: datagrams to --group:--port and answers from --retransmit)
    /// instead of joining the group.
    #[arg(long)]
    pub pcap: Option<PathBuf>,
    /// Drop this percentage of the feed's datagrams at random before the
    /// handler sees them (a kernel socket filter, as a lossy link would),
    /// to exercise gap recovery beside a lossless handler. Retransmission
    /// answers are not dropped. 0 to 100.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub drop_pct: u8,
}

/// A MoldUDP64 session name as the config has it: exactly 10 ASCII
/// characters.
fn session_name(s: &str) -> Result<[u8; 10], String> {
    match <[u8; 10]>::try_from(s.as_bytes()) {
        Ok(b) if s.is_ascii() => Ok(b),
        _ => Err(format!(
            "{s:?} is not a MoldUDP64 session name (exactly 10 ASCII characters)"
        )),
    }
}

/// The header of the book file `--book-out` writes, and `tokex exchange
/// --book-out` too: the feed's comparison format (order reference numbers,
/// which both ends know, in place of DESIGN.md's account and token).
pub const BOOK_OUT_HEADER: &str = "symbol,side,price,qty,order";

/// One line of a `--book-out` file (without its newline).
pub fn book_out_row(
    symbol: impl std::fmt::Display,
    side: Side,
    price: &str,
    qty: impl std::fmt::Display,
    order: u64,
) -> String {
    let side = if side == Side::Buy { 'B' } else { 'S' };
    format!("{symbol},{side},{price},{qty},{order}")
}

/// The `feed:` statistics line. `tokex demo`'s readers and the lab tests
/// read its `N gaps` and `N messages recovered` (a count of one is said in
/// the singular; they look for several) and `1 of other sessions`.
fn stats_line(s: &FeedStats, foreign: u64, complete: bool) -> String {
    format!(
        "feed: {}, {}, {}, {} recovered by {}, {}, {}, {} of other sessions, {} from other sources, {}; {}",
        plural(s.packets, "packet", "packets"),
        plural(s.messages, "message", "messages"),
        plural(s.gaps, "gap", "gaps"),
        plural(s.recovered, "message", "messages"),
        plural(s.requests, "request", "requests"),
        plural(s.duplicates, "duplicate", "duplicates"),
        plural(s.bad_packets, "bad packet", "bad packets"),
        s.other_session,
        foreign,
        plural(s.book_errors, "book error", "book errors"),
        if complete {
            "end of session, complete"
        } else {
            "stopped before a complete end of session"
        }
    )
}

/// One CSV row for a message.
fn csv_row(seq: u64, m: &Message<'_>, out: &mut impl Write) -> std::io::Result<()> {
    let h = m.header();
    let (order, side, qty, price, matchno) = match m {
        Message::AddOrder(a) => (
            a.order_reference.get(),
            a.side as char,
            a.shares.get(),
            a.price.get(),
            0,
        ),
        Message::OrderExecuted(e) => (
            e.order_reference.get(),
            ' ',
            e.executed_shares.get(),
            0,
            e.match_number.get(),
        ),
        Message::OrderExecutedWithPrice(e) => (
            e.order_reference.get(),
            ' ',
            e.executed_shares.get(),
            e.execution_price.get(),
            e.match_number.get(),
        ),
        Message::OrderCancel(x) => (x.order_reference.get(), ' ', x.cancelled_shares.get(), 0, 0),
        Message::OrderDelete(d) => (d.order_reference.get(), ' ', 0, 0, 0),
        Message::OrderReplace(u) => (
            u.new_order_reference.get(),
            ' ',
            u.shares.get(),
            u.price.get(),
            0,
        ),
        _ => (0, ' ', 0, 0, 0),
    };
    writeln!(
        out,
        "{seq},{},{},{},{order},{},{qty},{price},{matchno}",
        m.bytes()[0] as char,
        h.stock_locate,
        h.timestamp,
        side.to_string().trim()
    )
}

fn now() -> Nanos {
    Nanos(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    )
}

fn join(args: &FeedArgs) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_recv_buffer_size(8 << 20)?;
    // Bound to the group's address, not any: a unicast datagram to the
    // port (anyone's, forged) is not taken for the feed.
    s.bind(&SocketAddr::from(SocketAddrV4::new(args.group, args.port)).into())?;
    s.join_multicast_v4(&args.group, &args.interface_addr)
        .with_context(|| {
            format!(
                "joining {} on {} (is this the client namespace?)",
                args.group, args.interface_addr
            )
        })?;
    if args.drop_pct > 0 {
        s.attach_filter(&random_drop(args.drop_pct))
            .context("attaching the loss filter")?;
    }
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(Duration::from_millis(2)))?;
    Ok(s)
}

/// Refuses addresses that would take the handler's traffic (its group
/// membership reports, its retransmission requests) out of the lab: the
/// group must be a lab group (239.198.0.0/16), `--interface-addr` a lab
/// address, and the retransmission server a lab address whose route
/// leaves through a lab interface ([`crate::net::lab_route`]). Loopback
/// is allowed for tests.
fn stays_in_the_lab(args: &FeedArgs) -> anyhow::Result<()> {
    let [a, b, _, _] = args.group.octets();
    if (a, b) != (239, 198) {
        anyhow::bail!(
            "{} is not a lab multicast group (239.198.0.0/16): tokex feed only joins the lab's",
            args.group
        );
    }
    let from = crate::net::lab_route::lab_source(*args.retransmit.ip())?;
    let a = args.interface_addr;
    let lab = crate::config::is_lab_unicast(a) || (a.is_loopback() && from.is_loopback());
    if !lab {
        anyhow::bail!(
            "--interface-addr {a} is not a lab address (198.18.0.0/24): tokex feed joins and asks only in the lab"
        );
    }
    Ok(())
}

/// A classic BPF socket filter that drops `pct` % of datagrams at random:
/// load the kernel's per-packet random number (the `SKF_AD_RANDOM`
/// ancillary load), accept when it is at or above the threshold.
fn random_drop(pct: u8) -> [libc::sock_filter; 4] {
    const SKF_AD_OFF: u32 = (-0x1000i32) as u32;
    const SKF_AD_RANDOM: u32 = 56;
    let threshold = ((u64::from(pct.min(100)) << 32) / 100).min(u64::from(u32::MAX)) as u32;
    let op = |code: u32, jt: u8, jf: u8, k: u32| libc::sock_filter {
        code: code as u16,
        jt,
        jf,
        k,
    };
    [
        op(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            0,
            0,
            SKF_AD_OFF + SKF_AD_RANDOM,
        ),
        op(libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K, 0, 1, threshold),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, u32::MAX),
        op(libc::BPF_RET | libc::BPF_K, 0, 0, 0),
    ]
}

/// Runs the feed handler until End of Session (with nothing missing) or the
/// duration, or over a capture with `--pcap`.
pub fn run(args: &FeedArgs) -> anyhow::Result<FeedStats> {
    let contracts = ContractSet::load_dir(&args.contracts)?;
    // Ctrl-C or SIGTERM ends the live loop; what was rebuilt is still
    // reported (a second one ends the process at once).
    let stopped = crate::runtime::Stop::on_signals()?;
    let mut csv = match &args.csv {
        Some(p) => {
            let mut f = std::io::BufWriter::new(
                std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
            );
            writeln!(f, "seq,type,locate,timestamp_ns,order,side,qty,price,match")?;
            Some(f)
        }
        None => None,
    };
    let mut csv_error = None;
    let mut seen = |seq: u64, m: &Message<'_>| {
        if let Some(f) = csv.as_mut() {
            if let Err(e) = csv_row(seq, m, f) {
                csv_error.get_or_insert(e);
            }
        }
    };
    let mut h =
        FeedHandler::with_books(FeedBooks::with_contracts(&contracts)).follow_session(args.session);
    let (capture, foreign) = match &args.pcap {
        Some(path) => {
            let filter = pcap::Filter {
                feed: SocketAddrV4::new(args.group, args.port),
                source: args.source,
                retransmit: args.retransmit,
                session: args.session,
            };
            let report = pcap::replay(path, filter, &mut h, &mut seen)
                .with_context(|| format!("reading {}", path.display()))?;
            if !args.quiet {
                print!("{}", view(&h, &contracts));
            }
            let foreign = report.foreign;
            (Some(report), foreign)
        }
        None => (None, live(args, &stopped, &mut h, &mut seen, &contracts)?),
    };
    if let Some(e) = csv_error {
        return Err(e).context("writing the CSV");
    }
    if let Some(mut f) = csv {
        f.flush()?;
    }
    let s = h.stats();
    if let Some(report) = &capture {
        println!("{report}");
    }
    println!("{}", stats_line(&s, foreign, h.is_complete()));
    let to = if capture.is_some() {
        "capture"
    } else {
        "receive"
    };
    print_latency(
        &format!("feed latency (ITCH timestamp to {to}), messages applied as they arrived"),
        &h.latency,
    );
    if !h.gap_latency.is_empty() {
        print_latency(
            &format!("feed latency (ITCH timestamp to {to}), messages that waited for a gap (a late join or a loss) to close"),
            &h.gap_latency,
        );
    }
    if let Some(path) = &args.hgrm {
        h.latency
            .save_hgrm(path)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    if let Some(path) = &args.book_out {
        let mut out = format!("{BOOK_OUT_HEADER}\n");
        for c in contracts.iter() {
            for o in h.books.orders(c.id.0 + 1) {
                let price = o.price.to_string_decimals(c.price_decimals());
                out += &book_out_row(c.symbol, o.side, &price, o.qty, o.order_reference);
                out.push('\n');
            }
        }
        std::fs::write(path, out)?;
    }
    if let Some(report) = &capture {
        if report.missing_messages() > 0 || !h.is_complete() {
            anyhow::bail!(
                "the capture does not hold a complete session: {} missing, {}; the books are rebuilt up to sequence {}",
                plural(report.missing_messages(), "message", "messages"),
                if report.coverage.end_of_session() { "End of Session seen" } else { "no End of Session" },
                h.next_sequence().saturating_sub(1)
            );
        }
    } else if !h.is_complete() {
        anyhow::bail!(
            "the feed stopped before a complete end of session ({}); the books are rebuilt up to sequence {}",
            if stopped.is_set() {
                "interrupted".to_string()
            } else {
                format!("--duration {} s reached", args.duration)
            },
            h.next_sequence().saturating_sub(1)
        );
    }
    Ok(s)
}

/// Prints one latency table, saying so when it is empty and how many
/// values it holds at its 60 s ceiling (a late joiner's recovered
/// messages are hours old).
fn print_latency(title: &str, h: &crate::latency::LatencyHistogram) {
    if h.is_empty() {
        println!("{title}: none");
        return;
    }
    println!("{title}:\n{}\n{}", Summary::table_header(), h.summary(0.0));
    if h.beyond_range() > 0 {
        println!(
            "  ({} of them above {} s, counted as {} s: the histogram's ceiling)",
            h.beyond_range(),
            crate::latency::MAX_TRACKABLE_NS / 1_000_000_000,
            crate::latency::MAX_TRACKABLE_NS / 1_000_000_000
        );
    }
}

/// The live loop: the group and the retransmission server, until End of
/// Session with nothing missing, or the duration. Returns how many
/// datagrams to the group came from a source other than the exchange.
fn live(
    args: &FeedArgs,
    stopped: &crate::runtime::Stop,
    h: &mut FeedHandler,
    seen: &mut impl FnMut(u64, &Message<'_>),
    contracts: &ContractSet,
) -> anyhow::Result<u64> {
    if let Some(core) = args.core {
        crate::runtime::pin_current_thread(core).context("pinning the feed handler")?;
        println!("runtime: feed handler pinned to core {core}");
    }
    if let Some(priority) = args.realtime {
        crate::runtime::make_current_thread_realtime(priority)
            .context("making the feed handler real-time")?;
        println!("runtime: feed handler under SCHED_FIFO, priority {priority}");
    }
    stays_in_the_lab(args)?;
    let sock = join(args)?;
    let req = UdpSocket::bind(SocketAddrV4::new(args.interface_addr, 0))?;
    req.set_nonblocking(true)?;
    if let Some(f) = &args.ready_file {
        std::fs::write(f, b"ready\n")?;
    }
    let mut buf = vec![0u8; 2048];
    let usage = crate::runtime::ThreadUsage::current();
    let deadline = (args.duration > 0).then(|| Instant::now() + Duration::from_secs(args.duration));
    // The live view redraws the terminal; written to a file or a pipe it
    // is printed once, at the end.
    let redraw = !args.quiet && std::io::stdout().is_terminal();
    let mut last_view = Instant::now();
    let mut foreign = 0;
    while deadline.is_none_or(|d| Instant::now() < d) && !h.is_complete() && !stopped.is_set() {
        match sock.recv_from(&mut buf) {
            Ok((n, from)) if from.ip() == args.source => h.on_packet_with(now(), &buf[..n], seen),
            Ok(_) => foreign += 1,
            Err(_) => {}
        }
        read_answers(&req, args.retransmit, &mut buf, h, seen);
        if let Some(r) = h.poll_request(now()) {
            let _ = req.send_to(&r, args.retransmit);
        }
        if redraw && last_view.elapsed() >= Duration::from_millis(250) {
            last_view = Instant::now();
            print!("\x1b[2J\x1b[H{}", view(h, contracts));
        }
    }
    if redraw {
        print!("\x1b[2J\x1b[H{}", view(h, contracts));
    } else if !args.quiet {
        print!("{}", view(h, contracts));
    }
    println!(
        "runtime: feed handler thread while receiving: {}",
        crate::runtime::ThreadUsage::current().since(&usage)
    );
    Ok(foreign)
}

/// Datagrams read from the request socket per turn of the live loop at
/// most: anyone can send to it, and a flood read until it stopped held the
/// loop away from the feed and the deadline for as long as it lasted. A
/// whole answer to one request (2,048 messages, about 75 packets at most)
/// fits in one turn.
const MAX_ANSWERS_PER_TURN: usize = 128;

/// Reads what waits on the (non-blocking) request socket, at most
/// [`MAX_ANSWERS_PER_TURN`] datagrams, and hands those from the
/// retransmission server asked to the handler; returns how many it read.
fn read_answers(
    req: &UdpSocket,
    server: SocketAddrV4,
    buf: &mut [u8],
    h: &mut FeedHandler,
    seen: &mut impl FnMut(u64, &Message<'_>),
) -> usize {
    let mut read = 0;
    while read < MAX_ANSWERS_PER_TURN {
        let Ok((n, from)) = req.recv_from(buf) else {
            break;
        };
        read += 1;
        if from == SocketAddr::V4(server) {
            h.on_packet_with(now(), &buf[..n], seen);
        }
    }
    read
}

/// Top of book per contract.
fn view(h: &FeedHandler, contracts: &ContractSet) -> String {
    let mut s = format!(
        "{:<8} {:>10} {:>12} {:>12} {:>10}\n",
        "symbol", "bid qty", "bid", "ask", "ask qty"
    );
    for c in contracts.iter() {
        let (bid, ask) = h.books.top(c.id.0 + 1);
        let d = c.price_decimals();
        let f = |x: Option<(crate::types::Price, u64)>| {
            x.map_or(("-".to_string(), "-".to_string()), |(p, q)| {
                (p.to_string_decimals(d), q.to_string())
            })
        };
        let (bp, bq) = f(bid);
        let (ap, aq) = f(ask);
        s += &format!(
            "{:<8} {:>10} {:>12} {:>12} {:>10}\n",
            c.symbol, bq, bp, ap, aq
        );
    }
    s += &format!(
        "next sequence {}  messages {}  gaps {}\n",
        h.next_sequence(),
        h.stats().messages,
        h.stats().gaps
    );
    s
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::FeedArgs;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        feed: FeedArgs,
    }

    #[test]
    fn a_flood_on_the_request_socket_is_read_a_bounded_number_a_turn() {
        use super::{read_answers, FeedHandler, MAX_ANSWERS_PER_TURN};
        use std::net::UdpSocket;
        use std::time::Duration;
        let req = UdpSocket::bind("127.0.0.1:0").unwrap();
        // Room for the whole flood (a 20-byte datagram takes about a
        // kilobyte of the receive buffer).
        socket2::SockRef::from(&req)
            .set_recv_buffer_size(1 << 20)
            .unwrap();
        // Anyone's datagrams, more than a turn reads, all sent before it.
        let sent = 200;
        assert!(sent > MAX_ANSWERS_PER_TURN);
        let to = req.local_addr().unwrap();
        let flood = UdpSocket::bind("127.0.0.1:0").unwrap();
        for _ in 0..sent {
            flood.send_to(&[0u8; 20], to).unwrap();
        }
        // A read timeout rather than a non-blocking socket: a datagram not
        // yet queued (loopback queues it within `send_to`, as a rule) is
        // waited for, not taken for the end of the flood. Without the limit
        // the turn would read all of them, then wait this out.
        req.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let server = "127.0.0.1:9".parse().unwrap();
        let mut h = FeedHandler::new();
        let read = read_answers(&req, server, &mut [0u8; 2048], &mut h, &mut |_, _| {});
        assert_eq!(read, MAX_ANSWERS_PER_TURN, "{sent} queued");
        assert_eq!(h.stats().packets, 0, "none was the server's");
    }

    #[test]
    fn pinning_and_real_time_are_for_the_live_feed_not_a_capture() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["feed"], args].concat());
        let live = parse(&["--core", "0", "--realtime", "10"]).expect("live options");
        assert_eq!((live.feed.core, live.feed.realtime), (Some(0), Some(10)));
        assert!(parse(&["--pcap", "x.pcap", "--realtime", "10"]).is_err());
        assert!(parse(&["--pcap", "x.pcap", "--core", "0"]).is_err());
        assert!(parse(&["--pcap", "x.pcap"]).is_ok());
    }

    #[test]
    fn a_count_of_one_is_said_in_the_singular_on_the_feed_line() {
        use super::{stats_line, FeedStats};
        let one = FeedStats {
            packets: 1,
            messages: 1,
            duplicates: 1,
            gaps: 1,
            recovered: 1,
            requests: 1,
            bad_packets: 1,
            other_session: 1,
            book_errors: 1,
        };
        assert_eq!(
            stats_line(&one, 1, true),
            "feed: 1 packet, 1 message, 1 gap, 1 message recovered by 1 request, 1 duplicate, 1 bad packet, 1 of other sessions, 1 from other sources, 1 book error; end of session, complete"
        );
        let none = stats_line(&FeedStats::default(), 0, false);
        assert_eq!(
            none,
            "feed: 0 packets, 0 messages, 0 gaps, 0 messages recovered by 0 requests, 0 duplicates, 0 bad packets, 0 of other sessions, 0 from other sources, 0 book errors; stopped before a complete end of session"
        );
        // What the lab tests read: the number before "gaps", two words
        // before "recovered".
        let many = FeedStats {
            gaps: 3,
            recovered: 40,
            ..FeedStats::default()
        };
        let line = stats_line(&many, 0, true);
        let words: Vec<&str> = line
            .split_whitespace()
            .map(|w| w.trim_end_matches(','))
            .collect();
        let at = |w: &str| words.iter().position(|x| *x == w).unwrap();
        assert_eq!(words[at("gaps") - 1], "3");
        assert_eq!(words[at("recovered") - 2], "40");
    }

    #[test]
    fn a_drop_share_over_100_percent_is_refused_by_the_parser() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["feed"], args].concat());
        for bad in ["150", "101", "-1"] {
            assert!(parse(&["--drop-pct", bad]).is_err(), "{bad}");
        }
        assert_eq!(parse(&["--drop-pct", "100"]).unwrap().feed.drop_pct, 100);
        assert_eq!(parse(&[]).unwrap().feed.drop_pct, 0);
    }

    #[test]
    fn a_core_that_does_not_exist_is_refused_by_the_parser() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["feed"], args].concat());
        let n = crate::runtime::available_cores().to_string();
        let e = parse(&["--core", &n]).err().expect("refused").to_string();
        assert!(e.contains(&format!("core {n} does not exist here")), "{e}");
        assert_eq!(parse(&["--core", "0"]).unwrap().feed.core, Some(0));
    }

    #[test]
    fn the_book_out_help_names_the_columns_it_writes() {
        use clap::CommandFactory;
        let help = Cli::command().render_long_help().to_string();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains(&format!("CSV `{}`", super::BOOK_OUT_HEADER)),
            "{help}"
        );
        assert_eq!(
            super::book_out_row("TK2612", crate::types::Side::Sell, "6.512", 10, 7),
            "TK2612,S,6.512,10,7"
        );
    }

    #[test]
    fn the_session_followed_is_the_shipped_one_unless_named_and_names_are_ten_characters() {
        let parse = |args: &[&str]| Cli::try_parse_from([&["feed"], args].concat());
        assert_eq!(parse(&[]).unwrap().feed.session, *b"TOKEX00001");
        assert_eq!(
            parse(&["--session", "DAY2026120"]).unwrap().feed.session,
            *b"DAY2026120"
        );
        for bad in ["TOKEX", "TOKEX000001", "TOKEX000\u{e9}"] {
            assert!(parse(&["--session", bad]).is_err(), "{bad:?}");
        }
    }
}
