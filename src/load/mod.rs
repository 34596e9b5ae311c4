//! `tokex load`: an open-loop, constant-rate load generator measuring order
//! round trips from the intended send time (no coordinated omission).
//!
//! Owns the schedule (send time i = start + i / rate, whether or not earlier
//! answers came back), the mapping of the mixed order flow onto client
//! sessions, and the report: percentiles, achieved vs intended rate,
//! rejects, losses, and the `.hgrm`, `.hlog` (written after the run) and
//! one-line JSON files.
//! Bounded by count and by duration; it always stops by itself.

mod clients;
mod tracking;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;

use crate::bench::engine::{mixed_flow_with, FlowOp, Mix, Rng};
use crate::client::{token_number, ClientEvent, ClientSession};
use crate::contract::ContractSet;
use crate::latency::{IntervalLog, LatencyHistogram, Summary};
use crate::types::{Price, Qty, Tif};
use crate::wire::ouch::Token;
use clients::Clients;
use tracking::{Intended, LiveOrders};

/// Histograms made before a run for its per-second intervals (213 KB
/// each): a run of up to this many seconds makes none while it sends.
const SPARE_INTERVALS_AT_MOST: u64 = 256;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Order-entry address of the exchange (lab only).
    #[arg(long, default_value = "198.18.0.1:9000")]
    pub target: SocketAddrV4,
    /// Orders per second (open loop).
    #[arg(long, default_value_t = 50_000)]
    pub rate: u64,
    /// At most this many orders.
    #[arg(long, default_value_t = 500_000)]
    pub count: u64,
    /// At most this many seconds of sending.
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Sessions (demo01 .. demoNN, password = username).
    #[arg(long, default_value_t = 4)]
    pub sessions: usize,
    #[arg(long, default_value = "contracts")]
    pub contracts: PathBuf,
    #[arg(long, default_value = "out/load")]
    pub out: PathBuf,
    /// Name of this run in file names and reports.
    #[arg(long, default_value = "load")]
    pub label: String,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// No progress bar (drawn once a second from the sending loop, which
    /// it holds for up to ~80 us on a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// How long to wait for the last answers, milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub drain_ms: u64,
    /// The order-flow mix, percentages summing to 100.
    #[arg(long, default_value = "add=55,cancel=30,replace=8,aggressive=7")]
    pub mix: Mix,
    /// Poisson arrivals (exponential gaps, same mean rate) instead of a
    /// constant interval.
    #[arg(long)]
    pub poisson: bool,
    /// Orders per datagram: each scheduled send carries this many orders of
    /// one session (the schedule then has rate/batch sends per second, and
    /// every order in a send has that send's intended time). 1 measures
    /// per-order latency; larger batches measure throughput.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=24))]
    pub batch: u64,
    /// How the generator's datagrams travel: `udp` (a kernel socket per
    /// session) or `xdp` (one AF_XDP socket on `--interface` for all
    /// sessions, the kernel bypassed on the client side too; one such
    /// generator per interface, as it attaches its own XDP program).
    #[arg(long, value_enum, default_value_t = ClientTransport::Udp)]
    pub transport: ClientTransport,
    /// The client-side interface for `--transport xdp`.
    #[arg(long, default_value = "tkx-cl")]
    pub interface: String,
    /// The core the generator's loop is pinned to (it polls without
    /// sleeping; the exchange's default engine core is 1).
    #[arg(long, default_value_t = 0)]
    pub core: usize,
    /// Leave the generator unpinned.
    #[arg(long)]
    pub no_pin: bool,
}

/// The load generator's transport.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    Udp,
    Xdp,
}

impl ClientTransport {
    /// The value of `--transport` that selects it.
    pub const fn arg(self) -> &'static str {
        match self {
            ClientTransport::Udp => "udp",
            ClientTransport::Xdp => "xdp",
        }
    }
}

/// What a load run measured.
#[derive(Debug, Clone)]
pub struct LoadReport {
    pub label: String,
    pub intended_rate: u64,
    pub sent: u64,
    pub answered: u64,
    pub lost: u64,
    pub accepted: u64,
    pub rejected: HashMap<u8, u64>,
    pub executions: u64,
    pub resent: u64,
    pub seconds: f64,
    pub summary: Summary,
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "load {}: intended {} orders/s, achieved {:.0}/s over {:.2} s",
            self.label,
            self.intended_rate,
            self.sent as f64 / self.seconds,
            self.seconds
        )?;
        writeln!(
            f,
            "sent {}, answered {}, lost {}, resent {}, accepted {}, executions {}",
            self.sent, self.answered, self.lost, self.resent, self.accepted, self.executions
        )?;
        let mut rj: Vec<String> = self
            .rejected
            .iter()
            .map(|(c, n)| format!("'{}'={n}", *c as char))
            .collect();
        rj.sort();
        writeln!(
            f,
            "rejected by OUCH reason: {}",
            if rj.is_empty() {
                "none".into()
            } else {
                rj.join(" ")
            }
        )?;
        writeln!(f, "round trip from intended send time to first answer:")?;
        writeln!(f, "{}", Summary::table_header())?;
        writeln!(f, "{}", self.summary)?;
        write!(f, "{}", self.summary.to_json_line())
    }
}

/// Runs the load against the exchange at `args.target`.
pub fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    if !(crate::config::is_lab_unicast(*args.target.ip()) || args.target.ip().is_loopback()) {
        bail!(
            "{} is not a lab address (198.18.0.0/24) or loopback: tokex load only targets the lab",
            args.target
        );
    }
    if args.rate == 0 || args.sessions == 0 || args.sessions > 8 {
        bail!("--rate must be positive and --sessions between 1 and 8");
    }
    let contracts = ContractSet::load_dir(&args.contracts)?;
    let picked: Vec<_> = contracts.iter().take(2).cloned().collect();
    let flows: Vec<Vec<FlowOp>> = picked
        .iter()
        .enumerate()
        .map(|(k, c)| {
            mixed_flow_with(
                args.count as usize / picked.len() + 1,
                args.seed + k as u64,
                c,
                args.mix,
            )
        })
        .collect();
    println!(
        "load: {} orders/s open loop, at most {} orders or {} s, {} sessions, contracts {}; flow: {}; {} arrivals",
        args.rate,
        args.count,
        args.duration,
        args.sessions,
        picked.iter().map(|c| c.symbol.to_string()).collect::<Vec<_>>().join(","),
        args.mix,
        if args.poisson { "Poisson" } else { "constant-interval" }
    );

    let clock = quanta::Clock::new();
    let now = || clock.now();
    let epoch = now();
    let ns = |t: quanta::Instant| t.duration_since(epoch).as_nanos() as u64;
    let prefixes: Vec<String> = (1..=args.sessions).map(|i| format!("L{i}")).collect();
    let sessions = prefixes
        .iter()
        .enumerate()
        .map(|(i, prefix)| {
            let user = format!("demo{:02}", i + 1);
            ClientSession::new(&user, &user, prefix, 200_000_000)
        })
        .collect();
    let mut clients = Clients::open(args, sessions)?;
    println!("load: {}", clients.describe());
    if !args.no_pin {
        match crate::runtime::pin_current_thread(args.core) {
            Ok(()) => println!("load: pinned to core {}", args.core),
            Err(e) => println!("load: not pinned ({e})"),
        }
    }
    for s in 0..args.sessions {
        clients.session(s).login(ns(now()));
        clients.flush(s)?;
    }
    let login_deadline = Instant::now() + Duration::from_secs(3);
    while clients.sessions().any(|c| !c.is_logged_in()) {
        if Instant::now() > login_deadline {
            bail!(
                "not every session logged in within 3 s: is the exchange running at {}?",
                args.target
            );
        }
        // `drive` also re-sends a login whose answer has not come back.
        clients.drive(ns(now()), &mut |_, e| {
            if let ClientEvent::LoginRejected { code } = e {
                eprintln!("login rejected ({})", code as char);
            }
        })?;
    }

    let mut hist = LatencyHistogram::new();
    let mut interval = LatencyHistogram::new();
    std::fs::create_dir_all(&args.out)?;
    let hlog_path = args.out.join(format!("{}.hlog", args.label));
    let started_wall = SystemTime::now();
    // Each second's histogram is kept and the interval log written after the
    // run: serialising one (hdrhistogram's V2 encoder, not resumable) took
    // 27-138 us, which delayed the orders due then, and on two cores a
    // writer thread would take that time from one of the busy threads all
    // the same. The histograms are made (213 KB each, zeroed and so paged
    // in) before the run: a new one costs 85-140 us in page faults.
    let seconds = (args.duration + args.drain_ms / 1000 + 2).min(SPARE_INTERVALS_AT_MOST);
    let mut spare: Vec<LatencyHistogram> = (0..seconds).map(|_| LatencyHistogram::new()).collect();
    let mut intervals: Vec<(SystemTime, SystemTime, LatencyHistogram)> =
        Vec::with_capacity(seconds as usize);
    let mut interval_start = started_wall;
    let mut intended = Intended::new(args.sessions);
    let mut live: Vec<LiveOrders> = (0..args.sessions).map(|_| LiveOrders::default()).collect();
    let mut report = LoadReport {
        label: args.label.clone(),
        intended_rate: args.rate,
        sent: 0,
        answered: 0,
        lost: 0,
        accepted: 0,
        rejected: HashMap::new(),
        executions: 0,
        resent: 0,
        seconds: 0.0,
        summary: hist.summary(0.0),
    };
    let bar = if args.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.count)
    };
    let period = 1e9 / args.rate as f64;
    // Intended send time of the next order, ns after `start`: a constant
    // interval, or exponential gaps with the same mean (Poisson arrivals).
    let mut offset = 0.0f64;
    let mut arrivals = Rng::new(args.seed ^ 0x9E37_79B9);
    let start = ns(now());
    let end = start + args.duration * 1_000_000_000;
    let mut last_timer = start;
    let mut last_interval = start;
    let mut i = 0u64;

    let handle = |t: u64,
                  e: ClientEvent,
                  session: usize,
                  intended: &mut Intended,
                  live: &mut [LiveOrders],
                  report: &mut LoadReport,
                  hist: &mut LatencyHistogram,
                  interval: &mut LatencyHistogram| {
        match e {
            ClientEvent::Executed { token, qty, .. } => {
                report.executions += 1;
                // Track open size so cancels and replaces name live orders.
                live[session].fill(token, u64::from(qty.lots()));
            }
            ClientEvent::Canceled { token, .. } => live[session].remove(token),
            ClientEvent::Accepted {
                token, qty, tif, ..
            }
            | ClientEvent::Replaced {
                token, qty, tif, ..
            } => {
                report.accepted += 1;
                if tif == Tif::Day {
                    live[session].insert(token, u64::from(qty.lots()));
                }
            }
            ClientEvent::Rejected { reason, .. } => {
                *report.rejected.entry(reason).or_default() += 1
            }
            _ => {}
        }
        // The answer to a request is its Accepted, Replaced, Canceled or
        // Rejected; an execution may concern an earlier request on the token.
        if let (Some(token), false) = (e.token(), matches!(e, ClientEvent::Executed { .. })) {
            let number = token_number(prefixes[session].as_bytes(), &token);
            if let Some(t0) = number.and_then(|n| intended.remove(session, n)) {
                report.answered += 1;
                let lat = t.saturating_sub(t0);
                hist.record(lat);
                interval.record(lat);
            }
        }
    };

    let mut last_send = start;
    loop {
        let t = ns(now());
        if i < args.count && t < end {
            let due = start + offset as u64;
            if t >= due {
                let s = ((i / args.batch) % args.sessions as u64) as usize;
                let burst = args.batch.min(args.count - i);
                for _ in 0..burst {
                    let cl = clients.session(s);
                    let token = next_order(i, t, &picked, &flows, cl, &mut live[s]);
                    if let Some(n) = token_number(prefixes[s].as_bytes(), &token) {
                        intended.insert(s, n, due);
                    }
                    i += 1;
                }
                clients.flush(s)?;
                report.sent += burst;
                last_send = t;
                offset += if args.poisson {
                    let u = ((arrivals.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
                    -u.ln() * period * burst as f64
                } else {
                    period * burst as f64
                };
            }
        } else if intended.is_empty()
            || t >= end.max(start + offset as u64) + args.drain_ms * 1_000_000
        {
            break;
        }
        clients.poll(t, &mut |s, e| {
            handle(
                t,
                e,
                s,
                &mut intended,
                &mut live,
                &mut report,
                &mut hist,
                &mut interval,
            )
        })?;
        if t - last_timer >= 1_000_000 {
            last_timer = t;
            for s in 0..args.sessions {
                clients.session(s).on_timer(t);
                clients.flush(s)?;
            }
        }
        if t - last_interval >= 1_000_000_000 {
            // The bar is drawn here, once a second: a draw to a terminal
            // takes up to ~80 us of this loop (indicatif would draw up to
            // 20 times a second).
            bar.set_position(i);
            let wall = started_wall + Duration::from_nanos(t - start);
            // Past the spares (runs longer than SPARE_INTERVALS_AT_MOST s) a
            // histogram is made here, with the cost above.
            let next = spare.pop().unwrap_or_default();
            let done = std::mem::replace(&mut interval, next);
            intervals.push((interval_start, wall, done));
            interval_start = wall;
            last_interval = t;
        }
    }
    bar.finish_and_clear();
    let t = ns(now());
    for s in 0..args.sessions {
        clients.session(s).logout(t);
        clients.flush(s)?;
    }
    if let Some(stats) = clients.xdp_stats() {
        println!("load: client AF_XDP: {stats}");
    }
    // The achieved rate: orders sent over the time it took to send them
    // (the schedule's span when the generator kept up, longer when it fell
    // behind).
    let scheduled = offset / 1e9;
    let took = last_send.saturating_sub(start) as f64 / 1e9;
    report.seconds = scheduled.max(took).max(1e-9);
    report.lost = intended.lost();
    report.resent = clients.sessions().map(|c| c.stats().resent).sum();
    report.summary = hist.summary(report.sent as f64 / report.seconds);
    intervals.push((interval_start, SystemTime::now(), interval));
    write_interval_log(&hlog_path, &args.label, started_wall, &intervals)?;
    hist.save_hgrm(&args.out.join(format!("{}.hgrm", args.label)))?;
    let json = report.summary.to_json_line();
    let json = format!(
        "{{\"label\":\"{}\",\"intended_rate\":{},{}",
        args.label,
        args.rate,
        &json[1..]
    );
    std::fs::write(
        args.out.join(format!("{}.json", args.label)),
        format!("{json}\n"),
    )?;
    Ok(report)
}

/// Writes the run's `.hlog`: one interval per `(from, to, latencies)`.
fn write_interval_log(
    path: &std::path::Path,
    label: &str,
    started: SystemTime,
    intervals: &[(SystemTime, SystemTime, LatencyHistogram)],
) -> anyhow::Result<()> {
    let mut hlog = IntervalLog::create(path, started, &format!("tokex load {label}"))?;
    for (from, to, latencies) in intervals {
        let length = to.duration_since(*from).unwrap_or_default();
        hlog.write(Some(label), latencies, *from, length)?;
    }
    hlog.flush()?;
    Ok(())
}

/// The next order of the flow (order number `i`, alternating contracts):
/// queued on `cl`, returning its token. Cancels and replaces name one of the
/// session's live orders; with none live, a one-lot IOC at the lower limit
/// takes their place (it is answered and cancels at once).
fn next_order(
    i: u64,
    t: u64,
    picked: &[crate::contract::Contract],
    flows: &[Vec<FlowOp>],
    cl: &mut ClientSession,
    live: &mut LiveOrders,
) -> Token {
    let k = (i % flows.len() as u64) as usize;
    let c = &picked[k];
    let op = flows[k][(i / flows.len() as u64) as usize % flows[k].len()];
    let limit = |price: u32| Price::from_raw(price);
    match op {
        FlowOp::Add {
            side, price, qty, ..
        } => cl.enter(t, c.symbol, side, Qty::new(qty), limit(price), Tif::Day),
        FlowOp::Aggress {
            side, price, qty, ..
        } => cl.enter(t, c.symbol, side, Qty::new(qty), limit(price), Tif::Ioc),
        FlowOp::Cancel { pick } | FlowOp::Replace { pick, .. } if !live.is_empty() => {
            let old = live.take(pick as usize);
            if let FlowOp::Replace { ticks, qty, .. } = op {
                let p = (c.reference_price.raw() as i64 + ticks as i64 * c.tick.raw() as i64 * 3)
                    as u32;
                cl.replace(t, old, Qty::new(qty), limit(p))
            } else {
                cl.cancel(t, old, Qty::ZERO);
                old
            }
        }
        FlowOp::Cancel { .. } | FlowOp::Replace { .. } => cl.enter(
            t,
            c.symbol,
            crate::types::Side::Buy,
            Qty::new(1),
            c.lower_limit,
            Tif::Ioc,
        ),
    }
}
