//! `tokex load`: an open-loop, constant-rate load generator measuring order
//! round trips from the intended send time (no coordinated omission).
//!
//! Owns the schedule (send time i = start + i / rate, whether or not earlier
//! answers came back), the mapping of the mixed order flow onto client
//! sessions, and the report: percentiles, achieved vs intended rate,
//! rejects, losses, and the `.hgrm`, `.hlog` (written after the run) and
//! one-line JSON files.
//! Bounded by count and by duration; it always stops by itself. SIGINT or
//! SIGTERM (Ctrl-C) ends it early as if the run were over: sending stops,
//! answers are awaited briefly, the sessions log out (so the next run finds
//! them free), and the report and files are written, saying it was
//! interrupted (`tokex load` then exits with status 130,
//! [`LoadReport::exit_code`]); a second signal ends the process at once.

mod clients;
mod flow;
mod tally;
mod tracking;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::bail;

use crate::bench::engine::Mix;
use crate::client::{ClientEvent, ClientSession};
use crate::latency::{IntervalLog, LatencyHistogram, Summary};
use crate::runtime::Stop;
use crate::text::plural;
use crate::wire::{ouch, soupbin};
use clients::Clients;
use flow::{planned, Flow, Pacer, Turn};
use tally::{Interval, Tally};

/// The highest `--rate`.
pub const MAX_RATE: u64 = 100_000_000;
/// The longest `--duration`, seconds.
pub const MAX_SECONDS: u64 = 86_400;

/// Parses an orders-per-second rate: 1 to [`MAX_RATE`] (`--rate`, and the
/// benches' `--rates`).
pub fn rate_parser() -> clap::builder::RangedU64ValueParser {
    clap::value_parser!(u64).range(1..=MAX_RATE)
}

/// How long an interrupted run waits for the answers to what it sent
/// (at most; `--drain-ms` if shorter), ms.
const INTERRUPTED_DRAIN_MS: u64 = 300;

/// Histograms made before a run for its per-second intervals (213 KB
/// each): a run of up to this many seconds makes none while it sends.
const SPARE_INTERVALS_AT_MOST: u64 = 256;

#[derive(clap::Args, Debug, Clone)]
pub struct LoadArgs {
    /// Order-entry address of the exchange (lab only).
    #[arg(long, default_value = "198.18.0.1:9000")]
    pub target: SocketAddrV4,
    /// Orders per second (open loop; at most 100 million).
    #[arg(long, default_value_t = 50_000, value_parser = rate_parser())]
    pub rate: u64,
    /// At most this many orders.
    #[arg(long, default_value_t = 500_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub count: u64,
    /// Orders are due for this many seconds (at most a day); one that is
    /// due is sent even if the generator gets to it late, up to
    /// `--drain-ms` after the end.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=MAX_SECONDS))]
    pub duration: u64,
    /// Sessions (demo01 .. demoNN, password = username).
    #[arg(long, default_value_t = 4, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=8))]
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
    /// How long to wait for the last answers, milliseconds (at most a
    /// minute); a generator still behind this long after the end stops
    /// sending.
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(0..=60_000))]
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
    /// sleeping; the exchange's default engine core is 1). One that does
    /// not exist is refused before anything is sent (unless `--no-pin`).
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
    /// Orders the run planned (`--count`, or `--rate` × `--duration` if
    /// fewer; for Poisson arrivals the mean).
    pub planned: u64,
    pub sent: u64,
    /// Orders due before the end that were never sent: the generator was
    /// still behind them a drain time after the end.
    pub unsent: u64,
    /// Round trips longer than the histogram tracks, recorded as its
    /// longest ([`crate::latency::MAX_TRACKABLE_NS`]).
    pub beyond_range: u64,
    pub answered: u64,
    pub lost: u64,
    pub accepted: u64,
    pub rejected: HashMap<u8, u64>,
    /// Rejects of requests already answered (not in `rejected`): a cancel
    /// whose order the exchange had canceled itself first, or a re-sent
    /// copy of one whose first answer was slow or lost.
    pub late_rejects: u64,
    /// Of the lost, orders whose answer had not come when a ring's worth
    /// of later orders of their session were sent (see `tracking`).
    pub lost_overwritten: u64,
    /// Orders whose session gave up waiting for their answer
    /// ([`ClientEvent::Unanswered`]: it may have been among sequenced
    /// messages the exchange no longer had, or the exchange answered what
    /// was sent after each of their re-sends but never them); not in `lost`
    /// or `answered`.
    pub given_up: u64,
    /// Sessions taken as lost after the exchange's silence (each then
    /// logged in again by itself).
    pub connections_lost: u64,
    /// Sessions that found the exchange's stream begun again
    /// ([`ClientEvent::NewStream`]: a restart without a journal, or a new
    /// day): their waiting orders were given up (counted in `given_up`)
    /// and their live orders forgotten.
    pub new_streams: u64,
    pub executions: u64,
    pub resent: u64,
    pub seconds: f64,
    /// Whether SIGINT or SIGTERM ended the run before its end.
    pub interrupted: bool,
    pub summary: Summary,
}

/// A name for an OUCH 4.2 Rejected reason code (`wire::ouch::reject`).
pub fn reject_name(code: u8) -> &'static str {
    use ouch::reject::*;
    match code {
        TEST_MODE => "test-mode",
        HALTED => "halted",
        SHARES_EXCEED_THRESHOLD => "shares-exceed-threshold",
        INVALID_STOCK => "invalid-stock",
        INVALID_DISPLAY => "invalid-display",
        EXCHANGE_CLOSED => "exchange-closed",
        NOT_ALLOWED_NOW => "not-allowed-now",
        INVALID_PRICE => "invalid-price",
        INVALID_MIN_QTY => "invalid-min-qty",
        OTHER => "other",
        EXCEEDED_SHARES_LIMIT => "exceeded-shares-limit",
        EXCEEDED_DOLLAR_VALUE_LIMIT => "exceeded-dollar-value-limit",
        FLOW_CONTROL => "flow-control",
        PROCESSING_ERROR => "processing-error",
        _ => "unknown",
    }
}

/// What a refused login of session `user` means, for the log: a session
/// not available is one still bound to an earlier client (a run that did
/// not log out), which the exchange frees only after its idle timeout.
fn login_refusal(user: &str, code: u8) -> String {
    match code {
        soupbin::reject::SESSION_NOT_AVAILABLE => format!(
            "login of {user} rejected (S): session {user} is still bound to an earlier client; it frees after the exchange's idle timeout (gateway.idle_timeout_ms, 15 s by default)"
        ),
        soupbin::reject::NOT_AUTHORIZED => format!(
            "login of {user} rejected (A): the exchange does not know user {user} with password {user}"
        ),
        c => format!("login of {user} rejected ({})", c as char),
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `load:` for the default label, not `load load:`.
        let name = if self.label == "load" {
            "load:".to_string()
        } else {
            format!("load {}:", self.label)
        };
        writeln!(
            f,
            // "achieved" (the rate sent) is what `tokex bench` and the lab
            // tests read from this line; the answered rate is the table's.
            "{name} intended {} orders/s, achieved {:.0}/s over {:.2} s",
            self.intended_rate,
            self.sent as f64 / self.seconds,
            self.seconds
        )?;
        if self.interrupted {
            writeln!(
                f,
                "INTERRUPTED (SIGINT/SIGTERM) after {:.2} s: sending stopped early and the sessions logged out; the figures cover what was sent",
                self.seconds
            )?;
        }
        writeln!(
            f,
            "sent {} of {} planned, answered {}, lost {}, resent {}, accepted {}, executions {}",
            self.sent,
            self.planned,
            self.answered,
            self.lost,
            self.resent,
            self.accepted,
            self.executions
        )?;
        if self.unsent > 0 {
            writeln!(
                f,
                "NOT SENT: {} due before the end {} still unsent a drain time after it (the generator fell behind; {} in no percentile)",
                plural(self.unsent, "order", "orders"),
                if self.unsent == 1 { "was" } else { "were" },
                if self.unsent == 1 { "it is" } else { "they are" }
            )?;
        }
        if self.beyond_range > 0 {
            writeln!(
                f,
                "{} longer than the histogram's {} s and recorded as {} s",
                if self.beyond_range == 1 {
                    "1 round trip was".to_string()
                } else {
                    format!("{} round trips were", self.beyond_range)
                },
                crate::latency::MAX_TRACKABLE_NS / 1_000_000_000,
                crate::latency::MAX_TRACKABLE_NS / 1_000_000_000
            )?;
        }
        let mut rj: Vec<String> = self
            .rejected
            .iter()
            .map(|(c, n)| format!("'{}' {}={n}", *c as char, reject_name(*c)))
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
        if self.late_rejects > 0 {
            writeln!(
                f,
                "rejected after an earlier answer to the same cancel (the exchange canceled the order first, or a re-sent copy): {}",
                self.late_rejects
            )?;
        }
        if self.given_up > 0 {
            writeln!(
                f,
                "given up unanswered: {} (answers lost for good, re-sends the exchange ignored, or waiting when its stream began again; the session stopped re-sending {}; {} unknown)",
                self.given_up,
                if self.given_up == 1 { "it" } else { "them" },
                if self.given_up == 1 { "its outcome is" } else { "their outcomes are" }
            )?;
        }
        if self.connections_lost > 0 {
            writeln!(
                f,
                "sessions lost to the exchange's silence and logged in again: {}",
                self.connections_lost
            )?;
        }
        if self.new_streams > 0 {
            writeln!(
                f,
                "sessions that found the exchange's stream begun again (a restart without a journal, or a new day), their waiting orders given up and their live orders forgotten: {}",
                self.new_streams
            )?;
        }
        if self.lost_overwritten > 0 {
            writeln!(
                f,
                "of the lost, {} still unanswered when later orders of their session needed their slot (answers after that are not counted)",
                if self.lost_overwritten == 1 {
                    "1 was".to_string()
                } else {
                    format!("{} were", self.lost_overwritten)
                }
            )?;
        }
        writeln!(f, "round trip from intended send time to first answer:")?;
        // The row's count is of the answered orders, and so is its rate:
        // the intended (or sent) rate beside a third of it answered read as
        // if all had been.
        let header = Summary::table_header();
        let header = header
            .strip_suffix(&format!("{:>12}", "rate/s"))
            .map_or(header.clone(), |h| format!("{h}{:>12}", "answered/s"));
        writeln!(f, "{header}")?;
        let row = Summary {
            rate: self.answered as f64 / self.seconds,
            ..self.summary
        };
        writeln!(f, "{row}")?;
        write!(f, "{}", self.summary.to_json_line())
    }
}

/// The exit status of `tokex load` after an interrupted run (128 + SIGINT,
/// as a shell reports a program Ctrl-C ended).
pub const INTERRUPTED_EXIT: i32 = 130;

impl LoadReport {
    /// The status `tokex load` exits with once everything is written, if
    /// not 0: [`INTERRUPTED_EXIT`] when SIGINT or SIGTERM cut the run short
    /// (its figures cover only what was sent).
    pub fn exit_code(&self) -> Option<i32> {
        self.interrupted.then_some(INTERRUPTED_EXIT)
    }
}

/// Refuses a `--core` that does not exist on this machine (unless
/// `--no-pin` leaves the generator unpinned): a generator that went on
/// unpinned would poll on whichever core the scheduler gave it, the
/// exchange's engine core among them.
fn check_pinning(args: &LoadArgs) -> anyhow::Result<()> {
    if !args.no_pin {
        crate::runtime::check_core(args.core)
            .map_err(|e| anyhow::anyhow!("--core: {e}; --no-pin leaves the generator unpinned"))?;
    }
    Ok(())
}

/// Runs the load against the exchange at `args.target`.
pub fn run(args: &LoadArgs) -> anyhow::Result<LoadReport> {
    // Before anything starts: the core exists, the target is in the lab,
    // and so is the route to it (not the default namespace's way out).
    check_pinning(args)?;
    crate::net::lab_route::lab_source(*args.target.ip())?;
    // Ctrl-C ends the run as its end would (see the module docs).
    let stop = Stop::on_signals()?;
    let flow = Flow::new(args)?;
    println!(
        "load: {} orders/s open loop, at most {} or {} s, {}, contracts {}; flow: {}; {} arrivals",
        args.rate,
        plural(args.count, "order", "orders"),
        args.duration,
        plural(args.sessions, "session", "sessions"),
        flow.symbols(),
        args.mix,
        if args.poisson {
            "Poisson"
        } else {
            "constant-interval"
        }
    );

    let clock = quanta::Clock::new();
    let epoch = clock.now();
    let ns = || clock.now().duration_since(epoch).as_nanos() as u64;
    let prefixes = token_prefixes(args.sessions, SystemTime::now());
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
            // The core exists (checked first): the OS refused.
            Err(e) => println!("load: not pinned ({e})"),
        }
    }
    log_in(&mut clients, args, &ns, &stop)?;

    std::fs::create_dir_all(&args.out)?;
    let started_wall = SystemTime::now();
    // Sending may run a drain time past the end (orders due before it,
    // sent late), then answers are awaited a drain time more.
    let seconds = args.duration + 2 * args.drain_ms.div_ceil(1000) + 2;
    // Orders per session in the run (Poisson arrivals may send a little
    // more than the mean): the intended times of all of them are kept.
    let planned = planned(args);
    let per_session = planned / args.sessions as u64;
    let per_session = per_session + per_session / 4 + args.batch;
    let mut tally = Tally::new(
        prefixes,
        per_session,
        &args.label,
        args.rate,
        seconds,
        started_wall,
    );
    let bar = if args.no_progress {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(args.count)
    };
    let mut pacer = Pacer::new(args);
    let drain = args.drain_ms * 1_000_000;
    let usage = crate::runtime::ThreadUsage::current();
    let start = ns();
    let (mut last_timer, mut last_interval, mut last_send) = (start, start, start);
    // When SIGINT or SIGTERM came, if it did.
    let mut interrupted: Option<u64> = None;
    let mut i = 0u64;
    loop {
        let t = ns();
        if interrupted.is_none() && stop.is_set() {
            interrupted = Some(t);
            pacer.interrupt();
            println!(
                "load: interrupted: sending stopped, awaiting answers briefly, then logging out"
            );
        }
        if interrupted
            .is_some_and(|at| t >= at + INTERRUPTED_DRAIN_MS.min(args.drain_ms) * 1_000_000)
        {
            break;
        }
        match pacer.turn(t - start) {
            Turn::Send { due, orders } => {
                // One session's burst of `--batch` orders, in one datagram,
                // timed from its intended time however late it goes out.
                let due = start + due;
                let s = ((i / args.batch) % args.sessions as u64) as usize;
                for _ in 0..orders {
                    let token = flow.next_order(i, t, clients.session(s), &mut tally.live[s]);
                    tally.sent(s, &token, due);
                    i += 1;
                }
                clients.flush(s)?;
                tally.report.sent += orders;
                last_send = t;
                pacer.sent(orders);
            }
            Turn::Wait => {}
            // Answers are awaited for the drain time after the last send.
            Turn::Done => {
                if tally.intended.is_empty() || t >= last_send + drain {
                    break;
                }
            }
        }
        // Each answer is timed when it is handed over, not at the start of
        // the poll: a poll may read up to 16 batches of datagrams (a
        // backlog after a stall), and a send on veth runs the receiving
        // side, during which answers arrive that `t` would date too early.
        // A clock read is some 20 ns against about a microsecond to receive
        // and decode a datagram.
        let t = ns();
        clients.poll(t, &mut |s, e| tally.on_event(ns(), s, e))?;
        if t - last_timer >= 1_000_000 {
            last_timer = t;
            for s in 0..args.sessions {
                clients
                    .session(s)
                    .on_timer_with(t, &mut |e| tally.on_event(t, s, e));
                clients.flush(s)?;
            }
        }
        if t - last_interval >= 1_000_000_000 {
            // The bar is drawn here, once a second: a draw to a terminal
            // takes up to ~80 us of this loop (indicatif would draw up to
            // 20 times a second).
            bar.set_position(i);
            tally.close_interval(Duration::from_nanos(t - start));
            last_interval = t;
        }
    }
    bar.finish_and_clear();
    log_out(&mut clients, ns())?;
    if let Some(stats) = clients.xdp_stats() {
        println!("load: client AF_XDP: {stats}");
    }
    // A stall of this loop (another thread on its core, a page fault) is
    // counted in the round trips of the orders it delays: said here.
    println!(
        "load: generator thread while sending: {}",
        crate::runtime::ThreadUsage::current().since(&usage)
    );
    let lost = tally.intended.lost();
    let lost_overwritten = tally.intended.overwritten();
    let resent = clients.sessions().map(|c| c.stats().resent).sum();
    let (mut report, hist, intervals) = tally.finish(SystemTime::now());
    // The achieved rate: orders sent over the time it took to send them
    // (the schedule's span when the generator kept up, longer when it fell
    // behind).
    let took = last_send.saturating_sub(start) as f64 / 1e9;
    report.seconds = pacer.seconds().max(took).max(1e-9);
    report.planned = planned;
    report.unsent = pacer.unsent(planned);
    report.beyond_range = hist.beyond_range();
    report.lost = lost;
    report.lost_overwritten = lost_overwritten;
    report.resent = resent;
    report.interrupted = interrupted.is_some();
    report.summary = hist.summary(report.sent as f64 / report.seconds);
    write_outputs(args, &report, &hist, started_wall, &intervals)?;
    Ok(report)
}

/// The sessions' token prefixes: `L`, the session's number, and the run's
/// start in seconds (base 36, four characters: it repeats after 19 days).
/// The exchange remembers a session's tokens for the day, also across its
/// restarts, so a second run with the tokens of the first had its orders
/// dropped as re-sent copies or rejected as duplicates. Runs started in
/// the same second share them.
fn token_prefixes(sessions: usize, now: SystemTime) -> Vec<String> {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let run: String = (0..4)
        .rev()
        .map(|i| DIGITS[(secs / 36u64.pow(i) % 36) as usize] as char)
        .collect();
    (1..=sessions).map(|i| format!("L{i}{run}")).collect()
}

/// Logs every session out (a SoupBinTCP Logout Request each), so that the
/// exchange frees them at once rather than after its idle timeout.
fn log_out(clients: &mut Clients, t: u64) -> anyhow::Result<()> {
    for s in 0..clients.sessions().count() {
        if clients.session(s).is_logged_in() {
            clients.session(s).logout(t);
            clients.flush(s)?;
        }
    }
    Ok(())
}

/// Logs every session in; a login whose answer has not come back is sent
/// again by `drive`. Fails after 3 s, at once when every session not
/// logged in was refused (a first login refused is not retried), or on
/// SIGINT/SIGTERM; the sessions that did log in log out again first.
fn log_in(
    clients: &mut Clients,
    args: &LoadArgs,
    ns: &impl Fn() -> u64,
    stop: &Stop,
) -> anyhow::Result<()> {
    for s in 0..args.sessions {
        clients.session(s).login(ns());
        clients.flush(s)?;
    }
    let user = |s: usize| format!("demo{:02}", s + 1);
    let mut refused: Vec<Option<u8>> = vec![None; args.sessions];
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let waiting: Vec<usize> = (0..args.sessions)
            .filter(|&s| !clients.session(s).is_logged_in())
            .collect();
        if waiting.is_empty() {
            return Ok(());
        }
        let failure = if stop.is_set() {
            Some("interrupted while logging in".to_string())
        } else if waiting.iter().all(|&s| refused[s].is_some()) {
            let why: Vec<String> = waiting
                .iter()
                .map(|&s| login_refusal(&user(s), refused[s].unwrap_or(0)))
                .collect();
            Some(format!("not every session logged in: {}", why.join("; ")))
        } else if Instant::now() > deadline {
            let silent: Vec<String> = waiting
                .iter()
                .filter(|&&s| refused[s].is_none())
                .map(|&s| user(s))
                .collect();
            Some(format!(
                "not every session logged in within 3 s: no answer for {}: is the exchange running at {}?",
                silent.join(", "),
                args.target
            ))
        } else {
            None
        };
        if let Some(why) = failure {
            log_out(clients, ns())?;
            bail!(why);
        }
        clients.drive(ns(), &mut |s, e| {
            if let ClientEvent::LoginRejected { code } = e {
                eprintln!("load: {}", login_refusal(&user(s), code));
                refused[s] = Some(code);
            }
        })?;
    }
}

/// Writes the run's `.hlog`, `.hgrm` and one-line `.json` into `--out`.
fn write_outputs(
    args: &LoadArgs,
    report: &LoadReport,
    hist: &LatencyHistogram,
    started: SystemTime,
    intervals: &[Interval],
) -> anyhow::Result<()> {
    let hlog_path = args.out.join(format!("{}.hlog", args.label));
    write_interval_log(&hlog_path, &args.label, started, intervals)?;
    hist.save_hgrm(&args.out.join(format!("{}.hgrm", args.label)))?;
    let json = report.summary.to_json_line();
    // The summary's percentiles are of the answered orders: what was sent,
    // lost and never sent is beside them.
    let json = format!(
        "{{\"label\":\"{}\",\"intended_rate\":{},\"planned\":{},\"sent\":{},\"lost\":{},\"given_up\":{},\"unsent\":{},{}",
        args.label,
        args.rate,
        report.planned,
        report.sent,
        report.lost,
        report.given_up,
        report.unsent,
        &json[1..]
    );
    std::fs::write(
        args.out.join(format!("{}.json", args.label)),
        format!("{json}\n"),
    )?;
    Ok(())
}

/// Writes the run's `.hlog`: one interval per `(from, to, latencies)`.
fn write_interval_log(
    path: &std::path::Path,
    label: &str,
    started: SystemTime,
    intervals: &[Interval],
) -> anyhow::Result<()> {
    let mut hlog = IntervalLog::create(path, started, &format!("tokex load {label}"))?;
    for (from, to, latencies) in intervals {
        let length = to.duration_since(*from).unwrap_or_default();
        hlog.write(Some(label), latencies, *from, length)?;
    }
    hlog.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run labelled `label` that sent 300 orders over 10 s at an intended
    /// 30/s, of which 100 were answered (24 rejected as 'O', 1 as 'X').
    fn a_third_answered(label: &str) -> LoadReport {
        let mut hist = LatencyHistogram::new();
        for _ in 0..100 {
            hist.record(5_000);
        }
        LoadReport {
            label: label.into(),
            intended_rate: 30,
            planned: 300,
            sent: 300,
            unsent: 0,
            beyond_range: 1,
            answered: 100,
            lost: 200,
            accepted: 75,
            rejected: HashMap::from([(b'O', 24), (b'X', 1)]),
            late_rejects: 0,
            lost_overwritten: 0,
            given_up: 0,
            connections_lost: 0,
            new_streams: 0,
            executions: 0,
            resent: 1,
            seconds: 10.0,
            interrupted: false,
            summary: hist.summary(30.0),
        }
    }

    #[test]
    fn the_report_names_reject_reasons_says_its_label_once_and_rates_the_answered_orders() {
        let text = a_third_answered("load").to_string();
        assert!(
            text.contains("rejected by OUCH reason: 'O' other=24 'X' invalid-price=1"),
            "{text}"
        );
        assert!(text.starts_with("load: intended 30 orders/s"), "{text}");
        assert!(a_third_answered("udp-50k")
            .to_string()
            .starts_with("load udp-50k: intended 30 orders/s"));
        // The table's rate is the answered orders' (10/s), not the
        // intended or sent rate (30/s), and its column says so.
        let mut lines = text.lines().skip_while(|l| !l.starts_with("round trip"));
        let (header, row) = (lines.nth(1).unwrap(), lines.next().unwrap());
        assert!(header.ends_with("answered/s"), "{header}");
        assert!(row.ends_with(" 10"), "{row}");
        // One of a kind is said in the singular.
        assert!(text.contains("1 round trip was longer"), "{text}");
        assert!(!text.contains("INTERRUPTED"));
    }

    #[test]
    fn an_interrupted_run_exits_130_and_a_finished_one_0() {
        let mut r = a_third_answered("load");
        assert_eq!(r.exit_code(), None);
        r.interrupted = true;
        assert_eq!(r.exit_code(), Some(130));
    }

    fn parse(args: &[&str]) -> LoadArgs {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            load: LoadArgs,
        }
        Cli::try_parse_from([&["load"], args].concat())
            .unwrap()
            .load
    }

    #[test]
    fn a_core_that_does_not_exist_is_refused_unless_the_generator_is_not_pinned() {
        let n = crate::runtime::available_cores().to_string();
        let e = check_pinning(&parse(&["--core", &n]))
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("core {n} does not exist here")), "{e}");
        assert!(e.contains("--no-pin"), "{e}");
        // The whole run is refused before the lab route is even looked up.
        let e = run(&parse(&["--core", &n, "--target", "203.0.113.1:9000"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not exist here"), "{e}");
        check_pinning(&parse(&["--core", &n, "--no-pin"])).unwrap();
        check_pinning(&parse(&[])).unwrap();
    }

    #[test]
    fn an_interrupted_run_says_so_in_its_report() {
        let mut r = a_third_answered("load");
        r.interrupted = true;
        let text = r.to_string();
        assert_eq!(
            text.lines()
                .nth(1)
                .map(|l| l.starts_with("INTERRUPTED (SIGINT/SIGTERM) after 10.00 s")),
            Some(true),
            "{text}"
        );
    }

    #[test]
    fn a_login_refused_as_session_not_available_names_the_bound_session_and_the_idle_timeout() {
        let why = login_refusal("demo03", b'S');
        assert!(
            why.contains("session demo03 is still bound to an earlier client; it frees after the exchange's idle timeout (gateway.idle_timeout_ms"),
            "{why}"
        );
        assert!(!why.contains("running"));
        assert!(login_refusal("demo03", b'A').contains("password"));
    }

    #[test]
    fn runs_a_second_apart_use_other_tokens_and_sessions_never_share_a_prefix() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_727_000);
        let a = token_prefixes(8, t);
        let b = token_prefixes(8, t + Duration::from_secs(1));
        assert_eq!(a[0], "L1".to_string() + &a[0][2..]);
        assert!(a.iter().all(|p| p.len() == crate::client::MAX_TOKEN_PREFIX));
        assert!(a.iter().zip(&b).all(|(x, y)| x != y));
        let mut all = a.clone();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 8);
        assert_eq!(
            a,
            token_prefixes(8, t),
            "the same second, the same prefixes"
        );
    }
}
