//! `tokex load`: an open-loop, constant-rate load generator measuring order
//! round trips from the intended send time (no coordinated omission).
//!
//! Owns the schedule (send time i = start + i / rate, whether or not earlier
//! answers came back), the mapping of the mixed order flow onto client
//! sessions, and the report: percentiles, achieved vs intended rate,
//! rejects, losses, and the `.hgrm`, `.hlog` and one-line JSON files.
//! Bounded by count and by duration; it always stops by itself.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use crate::bench::engine::{mixed_flow_with, FlowOp, Mix, Rng};
use crate::client::{token_number, ClientEvent, ClientSession, UdpClient, XdpClients};
use crate::config::XdpConfig;
use crate::contract::ContractSet;
use crate::latency::{IntervalLog, LatencyHistogram, Summary};
use crate::types::{Price, Qty, Tif};
use crate::wire::ouch::{token_key, Token};

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
    /// No progress bar.
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
}

/// The load generator's transport.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientTransport {
    Udp,
    Xdp,
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
    let started_wall = SystemTime::now();
    let mut hlog = IntervalLog::create(
        &args.out.join(format!("{}.hlog", args.label)),
        started_wall,
        &format!("tokex load {}", args.label),
    )?;
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
                if i % 1024 < burst {
                    bar.set_position(i);
                }
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
            let wall = started_wall + Duration::from_nanos(t - start);
            hlog.write(
                Some(&args.label),
                &interval,
                interval_start,
                wall.duration_since(interval_start).unwrap_or_default(),
            )?;
            interval.reset();
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
    let wall = SystemTime::now();
    hlog.write(
        Some(&args.label),
        &interval,
        interval_start,
        wall.duration_since(interval_start).unwrap_or_default(),
    )?;
    hlog.flush()?;
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

/// The generator's sessions and how their datagrams travel.
enum Clients {
    /// A kernel UDP socket per session, watched by one epoll set.
    Kernel(Vec<UdpClient>, Readiness),
    /// One AF_XDP socket for every session.
    Xdp(Box<XdpClients>),
}

impl Clients {
    fn open(args: &LoadArgs, sessions: Vec<ClientSession>) -> anyhow::Result<Clients> {
        Ok(match args.transport {
            ClientTransport::Udp => {
                let clients = sessions
                    .into_iter()
                    .map(|s| UdpClient::new(s, args.target))
                    .collect::<Result<Vec<_>, _>>()
                    .context("opening a client socket")?;
                let ready = Readiness::new(&clients)?;
                Clients::Kernel(clients, ready)
            }
            ClientTransport::Xdp => {
                // The exchange's default rings and UMEM; copy mode at once
                // (veth, the lab's link, has no zero-copy).
                let cfg = XdpConfig {
                    zero_copy: false,
                    ..XdpConfig::default()
                };
                let x = XdpClients::open(&args.interface, args.target, sessions, &cfg)
                    .with_context(|| format!("opening AF_XDP on {}", args.interface))?;
                Clients::Xdp(Box::new(x))
            }
        })
    }

    fn describe(&self) -> String {
        match self {
            Clients::Kernel(c, _) => format!("{} kernel UDP sockets", c.len()),
            Clients::Xdp(x) => format!("{} sessions over {}", x.len(), x.describe()),
        }
    }

    fn session(&mut self, s: usize) -> &mut ClientSession {
        match self {
            Clients::Kernel(c, _) => &mut c[s].session,
            Clients::Xdp(x) => x.session(s),
        }
    }

    fn sessions(&self) -> Box<dyn Iterator<Item = &ClientSession> + '_> {
        match self {
            Clients::Kernel(c, _) => Box::new(c.iter().map(|c| &c.session)),
            Clients::Xdp(x) => Box::new(x.sessions().iter()),
        }
    }

    /// Sends what session `s` has queued.
    fn flush(&mut self, s: usize) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(c, _) => c[s].flush()?,
            Clients::Xdp(x) => x.flush(s),
        }
        Ok(())
    }

    /// Hands every answer waiting to `f(session, event)`.
    fn poll(&mut self, t: u64, f: &mut impl FnMut(usize, ClientEvent)) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(clients, readiness) => {
                // One epoll_wait finds the sockets with answers waiting: a
                // receive on each of the sessions' sockets costs a system
                // call per socket per turn even when nothing has come.
                let ready = readiness.ready()?;
                for (s, c) in clients.iter_mut().enumerate() {
                    if ready & (1 << s) != 0 {
                        c.poll(t, &mut |e| f(s, e))?;
                    }
                }
            }
            Clients::Xdp(x) => {
                x.poll(t, f);
            }
        }
        Ok(())
    }

    /// Receive, due timers, send: the login phase's turn.
    fn drive(&mut self, t: u64, f: &mut impl FnMut(usize, ClientEvent)) -> anyhow::Result<()> {
        match self {
            Clients::Kernel(clients, _) => {
                for (s, c) in clients.iter_mut().enumerate() {
                    c.drive(t, &mut |e| f(s, e))?;
                }
            }
            Clients::Xdp(x) => {
                x.drive(t, f);
            }
        }
        Ok(())
    }

    fn xdp_stats(&self) -> Option<String> {
        match self {
            Clients::Kernel(..) => None,
            Clients::Xdp(x) => Some(x.stats()),
        }
    }
}

/// The sessions' sockets in one epoll set: which have datagrams waiting
/// is one `epoll_wait` that reads the ready list. (`poll(2)` built a list
/// of every socket each turn and visited each in the kernel: a tenth of
/// the generator's time at 700,000 orders/s.)
struct Readiness(nix::sys::epoll::Epoll);

impl Readiness {
    fn new(clients: &[UdpClient]) -> anyhow::Result<Readiness> {
        use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags};
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
        for (s, c) in clients.iter().enumerate() {
            epoll
                .add(c.socket(), EpollEvent::new(EpollFlags::EPOLLIN, s as u64))
                .context("adding a client socket to the epoll set")?;
        }
        Ok(Readiness(epoll))
    }

    /// Which sessions' sockets have datagrams waiting, as a bit mask (at
    /// most 8 sessions); does not wait.
    fn ready(&self) -> anyhow::Result<u32> {
        use nix::sys::epoll::{EpollEvent, EpollTimeout};
        let mut events = [EpollEvent::empty(); 8];
        let n = match self.0.wait(&mut events, EpollTimeout::ZERO) {
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => 0, // next turn
            Err(e) => return Err(e).context("epoll_wait on the client sockets"),
        };
        Ok(events[..n].iter().fold(0, |m, e| m | 1 << e.data()))
    }
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

/// Intended send times of the orders awaiting their answer, by session and
/// token number: a ring per session indexed by the number (a session's
/// tokens count up from 1), so recording and finding one is an array access
/// (a hash table of tokens was a tenth of the generator's time at 1 M
/// orders/s). An order still unanswered when [`Intended::RING`] later orders
/// of its session need its slot is counted lost.
struct Intended {
    /// Per session: (token number + 1, or 0 for a free slot; intended time).
    rings: Vec<Vec<(u64, u64)>>,
    outstanding: u64,
    overwritten: u64,
}

impl Intended {
    const RING: usize = 1 << 18;

    fn new(sessions: usize) -> Intended {
        Intended {
            rings: vec![vec![(0, 0); Self::RING]; sessions],
            outstanding: 0,
            overwritten: 0,
        }
    }

    fn insert(&mut self, session: usize, number: u64, due: u64) {
        let slot = &mut self.rings[session][number as usize % Self::RING];
        if slot.0 == 0 {
            self.outstanding += 1;
        } else {
            self.overwritten += 1;
        }
        *slot = (number + 1, due);
    }

    /// The intended time of order `number`, if it was awaiting its answer.
    fn remove(&mut self, session: usize, number: u64) -> Option<u64> {
        let slot = &mut self.rings[session][number as usize % Self::RING];
        if slot.0 != number + 1 {
            return None;
        }
        slot.0 = 0;
        self.outstanding -= 1;
        Some(slot.1)
    }

    fn is_empty(&self) -> bool {
        self.outstanding == 0
    }

    fn lost(&self) -> u64 {
        self.outstanding + self.overwritten
    }
}

/// A session's live day orders with their open size: the ones cancels and
/// replaces pick from (at most [`LiveOrders::CAP`]; the oldest is forgotten
/// past that). Constant time per update, so the generator keeps up at high
/// rates.
#[derive(Default)]
struct LiveOrders {
    list: Vec<(Token, u64)>,
    /// Place in `list` by token as an integer (foldhash: SipHash was a
    /// tenth of the generator's time at 500,000 orders/s; 14-byte array
    /// keys are compared by a call to `memcmp`).
    index: HashMap<u128, usize, foldhash::fast::RandomState>,
}

impl LiveOrders {
    const CAP: usize = 1024;

    fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn insert(&mut self, token: Token, open: u64) {
        if self.index.contains_key(&token_key(&token)) {
            self.remove(token);
        }
        if self.list.len() >= Self::CAP {
            self.take(0);
        }
        self.index.insert(token_key(&token), self.list.len());
        self.list.push((token, open));
    }

    /// Removes and returns the order at `pick` (modulo the count).
    fn take(&mut self, pick: usize) -> Token {
        let at = pick % self.list.len();
        let (token, _) = self.list.swap_remove(at);
        self.index.remove(&token_key(&token));
        if let Some(&(moved, _)) = self.list.get(at) {
            self.index.insert(token_key(&moved), at);
        }
        token
    }

    fn remove(&mut self, token: Token) {
        if let Some(&at) = self.index.get(&token_key(&token)) {
            self.take(at);
        }
    }

    /// An execution of `qty` lots; a filled order is no longer live.
    fn fill(&mut self, token: Token, qty: u64) {
        if let Some(&at) = self.index.get(&token_key(&token)) {
            let open = &mut self.list[at].1;
            *open = open.saturating_sub(qty);
            if *open == 0 {
                self.take(at);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token(n: u32) -> Token {
        let mut t = [b' '; 14];
        t[..8].copy_from_slice(format!("{n:08}").as_bytes());
        t
    }

    #[test]
    fn intended_times_are_found_once_and_unanswered_ones_count_as_lost() {
        let mut m = Intended::new(2);
        m.insert(0, 1, 100);
        m.insert(1, 1, 200);
        m.insert(0, 2, 300);
        assert_eq!(m.remove(0, 1), Some(100));
        assert_eq!(
            m.remove(0, 1),
            None,
            "a second answer is not a second sample"
        );
        assert_eq!(m.remove(1, 1), Some(200));
        assert!(!m.is_empty());
        // Order 2 is still unanswered when a later order needs its slot.
        m.insert(0, 2 + Intended::RING as u64, 400);
        assert_eq!(m.remove(0, 2), None);
        assert_eq!(m.lost(), 2);
        assert_eq!(m.remove(0, 2 + Intended::RING as u64), Some(400));
        assert!(m.is_empty());
        assert_eq!(m.lost(), 1);
    }

    #[test]
    fn live_orders_track_fills_cancels_and_the_cap() {
        let mut live = LiveOrders::default();
        for n in 0..3 {
            live.insert(token(n), 10);
        }
        live.fill(token(1), 4);
        assert_eq!(live.list.len(), 3);
        live.fill(token(1), 6);
        live.remove(token(0));
        assert_eq!(live.list, vec![(token(2), 10)]);
        assert_eq!(live.take(7), token(2));
        assert!(live.is_empty() && live.index.is_empty());
        for n in 0..LiveOrders::CAP as u32 + 5 {
            live.insert(token(n), 1);
        }
        assert_eq!(live.list.len(), LiveOrders::CAP);
        // Every listed order is indexed at its place.
        for (at, (t, _)) in live.list.iter().enumerate() {
            assert_eq!(live.index[&token_key(t)], at);
        }
    }
}
