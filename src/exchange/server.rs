//! The running exchange: the state the loop owns, and its three phases,
//! start (ports, journal recovery, threads), serve (batches and timers)
//! and shut down (End of Session, reports).

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context};

use super::intake::Intake;
use super::io::{
    market_data_route, multicast_sender, open_order_port, udp_socket, Clock, Journal,
    MarketDataOut, Replies,
};
use super::memory;
use super::receiver::{Receiver, RxSource, RxThreadConfig, RxThreadStats};
use super::recovery::{lock_journal, recover_locked, Recovered};
use super::requesters::{Requesters, TickBudget, MESSAGES_PER_REQUEST};
use super::{write_book, ExchangeArgs};
use crate::config::{Config, Topology};
use crate::contract::ContractSet;
use crate::engine::Engine;
use crate::feed::archive::MdArchive;
use crate::feed::publisher::{Publisher, PublisherStats};
use crate::gateway::{Counters, Drop, Gateway, Peer};
use crate::latency::{Stage, StageHistograms, StageLog};
use crate::net::tcp::{self, TcpInbound, TcpLimits, TcpReplies};
use crate::net::udp::OrderPort;
use crate::runtime::{keep_current_thread_off, pin_current_thread, Handoff, Stop, ThreadUsage};
use crate::text::plural;

/// A UDP peer's session ended: its link address, learned from its login,
/// is no longer trusted (AF_XDP).
fn forget_link_address(orders: &mut OrderPort, peer: Peer) {
    if let Peer::Udp(addr) = peer {
        orders.forget_peer(addr);
    }
}

/// The market-data heartbeat when idle, and End of Session's repeat while
/// the exchange lingers at shutdown (MoldUDP64: End of Session is sent in
/// place of heartbeats for a while).
const MD_HEARTBEAT: Duration = Duration::from_secs(1);

/// Timers, heartbeats and retransmission requests run this often (ns).
const TIMER_EVERY_NS: u64 = 1_000_000;

/// Everything the exchange loop owns.
pub(super) struct Server {
    cfg: Config,
    contracts: ContractSet,
    clock: Clock,
    engine: Engine,
    gateway: Gateway,
    publisher: Publisher,
    journal: Journal,
    orders: OrderPort,
    md: MarketDataOut,
    retrans: UdpSocket,
    /// Every market-data message of the day, for requests older than the store.
    archive: MdArchive,
    /// Per requesting host: 1,000 requests/s, bursts of 200.
    retrans_limits: Requesters,
    tcp_in: Arc<Handoff<TcpInbound>>,
    tcp_out: TcpReplies,
    tcp_thread: Option<JoinHandle<()>>,
    /// The pipelined topology's receive thread, and its counters once it
    /// has ended.
    receiver: Option<Receiver>,
    receiver_stats: Option<RxThreadStats>,
    /// How each batch is shared between the order port and the TCP port.
    intake: Intake,
    replies: Replies,
    /// Receive times (raw clock) of the batch's datagrams.
    per_datagram: Vec<u64>,
    /// Stages are recorded into `interval`; `stage_log` closes it once per
    /// `latency.interval_ms` and writes it, a stage per timer tick.
    interval: StageHistograms,
    stage_log: StageLog,
    latency_dir: PathBuf,
    datagrams: u64,
    /// Time in batches that had work, and time serving (clock ns).
    busy_ns: u64,
    serving_ns: u64,
    /// What the kernel counted against the engine thread while it served
    /// (start-up, recovery and shutdown left out).
    serving_usage: ThreadUsage,
    send_errors: u64,
    retrans_limited: u64,
    latency_log_errors: u64,
    /// Journal records replayed at start-up, and the gateway's counters
    /// once they were: the exit report counts this run's traffic.
    replayed: u64,
    at_start: Counters,
    /// Stops the TCP thread: set once End of Session has been handed to
    /// it, not by the signal (which would close the connections first).
    tcp_stop: Stop,
}

/// The TCP port's limits: a connection holds at least a whole re-send
/// window unsent plus a MiB of live replies, so that a client far behind
/// is not disconnected by the re-send its login asked for.
fn tcp_limits(cfg: &Config) -> TcpLimits {
    let resend = crate::gateway::max_tcp_resend_bytes(cfg.gateway.resend_window);
    let d = TcpLimits::default();
    TcpLimits {
        pending_bytes: d.pending_bytes.max(resend + (1 << 20)),
        // The gateway's idle timeout, for connections as for sessions.
        idle: Duration::from_millis(cfg.gateway.idle_timeout_ms),
        ..d
    }
}

impl Server {
    /// Opens the ports, recovers from the journal, starts the TCP (and
    /// receive) threads, pins this thread and publishes the start of day.
    pub fn start(cfg: Config, args: &ExchangeArgs, stop: &Stop) -> anyhow::Result<Server> {
        // First of all: a second exchange on this journal is refused here,
        // before it binds a port (the first holds them: the refusal would
        // name a port, not the journal) or touches a file of the day.
        let lock = lock_journal(&cfg)?;
        let contracts = ContractSet::load_dir(&cfg.contracts)?;
        let mut orders = open_order_port(&cfg)?;
        let retrans = udp_socket(SocketAddrV4::new(
            cfg.network.address,
            cfg.network.retransmit_port,
        ))?;
        let md_group = SocketAddrV4::new(cfg.network.md_group, cfg.network.md_port);
        let (md_on_xdp, md_fallback) = market_data_route(
            cfg.network.md_transport,
            matches!(orders, OrderPort::Xdp(..)),
        );
        let md = MarketDataOut {
            kernel: multicast_sender(&cfg)?,
            xdp: md_on_xdp.then_some((md_group, cfg.network.md_port)),
            errors: 0,
        };
        let tcp_in: Arc<Handoff<TcpInbound>> = Handoff::with_capacity(1 << 14);
        let tcp_addr = SocketAddrV4::new(cfg.network.address, cfg.network.tcp_port);
        let listener =
            TcpListener::bind(tcp_addr).with_context(|| format!("binding TCP {tcp_addr}"))?;
        let tcp_stop = Stop::new();
        let (tcp_thread, tcp_out) = tcp::spawn_with(
            listener,
            tcp_stop.clone(),
            tcp_in.clone(),
            1 << 14,
            tcp_limits(&cfg),
            Some(cfg.runtime.engine_core),
        )?;
        println!("transport: SoupBinTCP over TCP (compatibility port) on {tcp_addr}");
        println!(
            "market data: ITCH 5.0 in MoldUDP64 to {md_group} (TTL 1) through {}, session {}, retransmission on port {}",
            if md.xdp.is_some() { "AF_XDP TX" } else { "the kernel socket" },
            cfg.network.md_session,
            cfg.network.retransmit_port
        );
        if let Some(line) = md_fallback {
            println!("{line}");
        }

        let clock = Clock::new();
        // The newest usable snapshot and the journal after it, or the
        // whole journal (see `recovery`).
        let Recovered {
            engine,
            mut gateway,
            mut publisher,
            archive,
            mut journal,
            replayed,
        } = recover_locked(&cfg, args, &contracts, clock.now(), lock)?;

        // The journal's space and page faults are taken ahead of the
        // records on a thread of their own, off the engine thread's core
        // (making 64 KiB of it writable stopped the engine thread for
        // 110-160 µs). Started before the engine thread is pinned: a
        // thread inherits its parent's cores.
        let engine_core = cfg.runtime.engine_core;
        journal
            .0
            .prepare_in_background(move || {
                if let Err(e) = keep_current_thread_off(engine_core) {
                    eprintln!("exchange: the journal's thread may share the engine's core: {e}");
                }
            })
            .context("starting the journal's thread")?;
        let receiver = spawn_receiver(&cfg, &mut orders, stop, &clock)?;
        match pin_current_thread(cfg.runtime.engine_core) {
            Ok(()) => println!(
                "runtime: {} thread pinned to core {}",
                if receiver.is_some() {
                    "engine"
                } else {
                    "run-to-completion"
                },
                cfg.runtime.engine_core
            ),
            // The core exists (checked with the config): the OS refused.
            Err(e) => bail!("runtime.engine_core: {e}"),
        }
        // From the engine thread's core, after recovery has filled what it
        // restores.
        if cfg.runtime.prefault {
            let t = Instant::now();
            let bytes = gateway.prefault() + publisher.prefault();
            println!(
                "{}",
                memory::resident_line(bytes as u64, t.elapsed().as_millis())
            );
        }

        let latency_dir = args.latency_dir.clone().unwrap_or(cfg.latency.dir.clone());
        fs::create_dir_all(&latency_dir)?;
        let stage_log = StageLog::create(
            &latency_dir.join("exchange.hlog"),
            Duration::from_millis(cfg.latency.interval_ms),
            "tokex exchange: per-stage latency, ns",
        )?;
        let mut server = Server {
            per_datagram: Vec::with_capacity(cfg.runtime.batch),
            cfg,
            contracts,
            clock,
            engine,
            gateway,
            publisher,
            journal,
            orders,
            md,
            retrans,
            archive,
            retrans_limits: Requesters::new(MAX_REQUESTERS),
            tcp_in,
            tcp_out,
            tcp_thread: Some(tcp_thread),
            receiver,
            receiver_stats: None,
            intake: Intake::default(),
            replies: Replies::new(),
            interval: StageHistograms::default(),
            stage_log,
            latency_dir,
            datagrams: 0,
            busy_ns: 0,
            serving_ns: 0,
            serving_usage: ThreadUsage::default(),
            send_errors: 0,
            retrans_limited: 0,
            latency_log_errors: 0,
            replayed,
            at_start: Counters::default(),
            tcp_stop,
        };
        // Start-of-day market data goes out before the first order is read.
        let Server {
            cfg,
            clock,
            engine,
            gateway,
            publisher,
            journal,
            md,
            orders,
            replies,
            tcp_out,
            ..
        } = &mut server;
        // Sessions that ended in the replay had no link address here.
        gateway.take_unbound(|_| {});
        // TCP connections do not survive a restart: the sessions bound to
        // them log in again (journaled before any packet is read); UDP
        // sessions' idle clocks start again.
        let released = gateway.after_restart(clock.now(), journal);
        if released > 0 {
            journal.0.commit().context("journal write")?;
            println!(
                "sessions: {} must log in again",
                plural(
                    released,
                    "session bound to a TCP connection before the restart",
                    "sessions bound to TCP connections before the restart"
                )
            );
        }
        if cfg.runtime.follow_schedules && !gateway.follows_schedules() {
            let now = clock.now();
            // Its market data carries this time, as its replay will.
            publisher.set_time(now);
            gateway.follow_schedules(now, engine, publisher, journal, replies);
            journal.0.commit().context("journal write")?;
            replies.deliver(orders, tcp_out);
            println!("runtime: following the contracts' trading schedules (UTC)");
        }
        publisher.flush(&mut |p| md.send(orders, p));
        md.finish(orders);
        server.at_start = server.gateway.counters().clone();
        Ok(server)
    }

    /// Serves batches until `stop` is set or the deadline passes (or an
    /// error stops it: the report after it still says what the kernel
    /// counted against the thread until then).
    pub fn serve(&mut self, stop: &Stop, deadline: Option<Instant>) -> anyhow::Result<()> {
        let usage = ThreadUsage::current();
        let served = self.serve_batches(stop, deadline);
        self.serving_usage = ThreadUsage::current().since(&usage);
        served
    }

    fn serve_batches(&mut self, stop: &Stop, deadline: Option<Instant>) -> anyhow::Result<()> {
        // One clock read per turn: the end of one turn is the start of the
        // next (read again only after a sleep or the timers).
        let started = self.clock.raw();
        let mut last_timer = started;
        let mut t0 = started;
        while !stop.is_set() {
            let worked = self.batch()?;
            let mut t = self.clock.raw();
            if worked {
                self.busy_ns += self.clock.between(t0, t);
            } else if self.cfg.runtime.busy_poll {
                std::hint::spin_loop();
            } else {
                std::thread::sleep(Duration::from_micros(50));
                t = self.clock.raw();
            }
            if self.clock.between(last_timer, t) >= TIMER_EVERY_NS {
                last_timer = t;
                self.serving_ns = self.clock.between(started, t);
                self.timers()?;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                t = self.clock.raw();
            }
            t0 = t;
        }
        Ok(())
    }

    /// One batch: receive (order port or pipelined ring, then TCP), decode,
    /// match, journal (one store per batch), acknowledge, publish. Returns
    /// whether anything arrived.
    fn batch(&mut self) -> anyhow::Result<bool> {
        let Server {
            cfg,
            clock,
            engine,
            gateway,
            publisher,
            journal,
            orders,
            md,
            tcp_in,
            tcp_out,
            receiver,
            intake,
            replies,
            per_datagram,
            interval,
            datagrams,
            send_errors,
            ..
        } = self;
        per_datagram.clear();
        // The batch's time is read when its first datagram is handled: an
        // empty turn of the loop reads no wall clock.
        let mut batch_time = None;
        let batch = cfg.runtime.batch;
        {
            let mut handle = |peer: Peer, tcp_host: Option<Ipv4Addr>, bytes: &[u8], t_rx: u64| {
                let now = *batch_time.get_or_insert_with(|| {
                    let now = clock.now();
                    publisher.set_time(now);
                    now
                });
                if let (Peer::Tcp(id), Some(host)) = (peer, tcp_host) {
                    gateway.set_tcp_host(id, host);
                }
                let vouched =
                    gateway.on_datagram(now, peer, bytes, engine, publisher, journal, replies);
                interval.record(Stage::RxToMatched, clock.between(t_rx, clock.raw()));
                per_datagram.push(t_rx);
                vouched
            };
            let tcp_waiting = tcp_in.len();
            let taken = intake.take_batch(
                batch,
                tcp_waiting,
                &mut handle,
                |handle, max| {
                    if let Some(rx) = receiver {
                        // Pipelined: the receive thread already read the
                        // datagrams.
                        let mut taken = 0;
                        while taken < max {
                            let Some(item) = rx.pop() else {
                                break;
                            };
                            let vouched = handle(Peer::Udp(item.src), None, &item.bytes, item.t_rx);
                            if let (true, Some(mac), OrderPort::Xdp(port, _)) =
                                (vouched, item.mac, &mut *orders)
                            {
                                port.learn(item.src, mac);
                            }
                            rx.recycle(item.bytes);
                            taken += 1;
                        }
                        return Ok(taken);
                    }
                    // One batch from the port (one recvmmsg, or one pass over
                    // the AF_XDP RX ring). Every datagram of the batch is timed
                    // from the moment the batch was in memory.
                    let mut t_batch = None;
                    orders
                        .recv(max, |src, bytes| {
                            let t_rx = *t_batch.get_or_insert_with(|| clock.raw());
                            handle(Peer::Udp(src), None, bytes, t_rx)
                        })
                        .context("receiving orders")
                },
                |handle| {
                    let Some((id, host, bytes)) = tcp_in.pop() else {
                        return false;
                    };
                    handle(Peer::Tcp(id), Some(host), &bytes, clock.raw());
                    true
                },
            )?;
            *datagrams += taken.udp as u64;
        }
        let Some(now) = batch_time else {
            return Ok(false);
        };
        // The journal write comes first: no ack leaves before its order is
        // durable. A record that could not even be appended (none can be
        // today: every input is far below the record limit) stops the
        // exchange before anything of the batch is sent.
        if journal.1 > 0 {
            bail!(
                "{} could not be appended",
                plural(journal.1, "journal record", "journal records")
            );
        }
        let tj = clock.raw();
        journal.0.commit().context("journal write")?;
        interval.record(Stage::JournalWrite, clock.between(tj, clock.raw()));
        let ta = clock.raw();
        for peer in replies.peers() {
            gateway.note_sent(peer, now);
        }
        *send_errors += replies.deliver(orders, tcp_out);
        gateway.take_unbound(|p| forget_link_address(orders, p));
        let t_acked = clock.raw();
        let per = clock.between(ta, t_acked) / per_datagram.len() as u64;
        for &t_rx in per_datagram.iter() {
            interval.record(Stage::MatchedToAck, per);
            interval.record(Stage::EndToEnd, clock.between(t_rx, t_acked));
        }
        let tm = clock.raw();
        let mut sent = false;
        publisher.flush(&mut |p| {
            sent = true;
            md.send(orders, p);
        });
        md.finish(orders);
        if sent {
            interval.record(Stage::MarketDataOut, clock.between(tm, clock.raw()));
        }
        Ok(true)
    }

    /// Once a millisecond: the interval log, session timers, market-data
    /// heartbeats and retransmission requests.
    fn timers(&mut self) -> anyhow::Result<()> {
        // A latency log that cannot be written (a full disk) does not stop
        // trading: said once, counted, reported at exit.
        if let Err(e) = self.stage_log.tick(&mut self.interval, SystemTime::now()) {
            if self.latency_log_errors == 0 {
                eprintln!("exchange: the latency log cannot be written ({e}); trading goes on");
            }
            self.latency_log_errors += 1;
        }
        let now = self.clock.now();
        let Server {
            engine,
            gateway,
            publisher,
            journal,
            orders,
            md,
            retrans,
            archive,
            retrans_limits,
            retrans_limited,
            tcp_out,
            replies,
            send_errors,
            datagrams,
            ..
        } = self;
        publisher.set_time(now);
        // What the XDP program passed to the kernel socket beside it
        // (another queue's datagrams, fragments) is handled here, a
        // millisecond late at most, rather than lost.
        *datagrams += orders
            .recv_passed(|src, bytes| {
                gateway.on_datagram(
                    now,
                    Peer::Udp(src),
                    bytes,
                    engine,
                    publisher,
                    journal,
                    replies,
                );
            })
            .context("receiving orders")? as u64;
        // Engine timers (schedule changes, the end of a halt) run on time,
        // journaled like any input.
        gateway.on_clock(now, engine, publisher, journal, replies);
        gateway.on_timer(now, journal, replies);
        journal.0.commit().context("journal write")?;
        journal.0.prepare();
        *send_errors += replies.deliver(orders, tcp_out);
        gateway.take_unbound(|p| forget_link_address(orders, p));
        publisher.flush(&mut |p| md.send(orders, p));
        let interval = MD_HEARTBEAT.as_nanos() as u64;
        publisher.heartbeat_if_idle(interval, &mut |p| md.send(orders, p));
        md.finish(orders);
        let (refused, behind) = (archive.write_errors > 0, archive.missed > 0);
        if let Err(e) = archive.sync(publisher.store()) {
            // Each said once: the first write the archive's file refused
            // (retried every tick), and falling behind the store for good.
            if archive.missed > 0 && !behind {
                println!("market data: {e}: requests for messages older than the retransmission store's go unanswered from here on");
            } else if archive.write_errors > 0 && !refused {
                println!("market data: the archive cannot be written ({e}); retried every millisecond, old requests unanswered meanwhile");
            }
        }
        // Within the tick's budget of requests and messages, so a flood of
        // requests cannot hold the engine core; per host, the rest are
        // counted and ignored so one host cannot monopolise the server.
        let mut req = [0u8; 64];
        let mut budget = TickBudget::new();
        while let Some(cap) = budget.next_request() {
            let Ok((n, SocketAddr::V4(src))) = retrans.recv_from(&mut req) else {
                break;
            };
            if !retrans_limits.admit(src, now.0) {
                *retrans_limited += 1;
                continue;
            }
            budget.spent(answer_retransmission(
                publisher,
                archive,
                retrans,
                &req[..n],
                src,
                cap,
            ));
        }
        Ok(())
    }

    /// End of Session on both channels, a linger for late retransmission
    /// requests, then the threads stop and the journal is flushed. Once
    /// `hurry` says so (a second Ctrl-C), the waits are cut short.
    pub fn shut_down(&mut self, stop: &Stop, hurry: &dyn Fn() -> bool) -> anyhow::Result<()> {
        let now = self.clock.now();
        let Server {
            gateway,
            publisher,
            journal,
            orders,
            md,
            retrans,
            archive,
            tcp_in,
            tcp_out,
            replies,
            send_errors,
            retrans_limits,
            ..
        } = self;
        publisher.set_time(now);
        publisher.flush(&mut |p| md.send(orders, p));
        md.finish(orders);
        // End of Session three times (it is idempotent) so one lost datagram
        // does not leave a feed handler waiting; then keep answering
        // retransmission requests until none came for 2 s (at most 10 s),
        // with End of Session again every heartbeat interval in place of
        // heartbeats (a handler that lost the first three hears it then).
        for _ in 0..3 {
            publisher.end_of_session(&mut |p| md.send(orders, p));
            md.finish(orders);
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = archive.sync(publisher.store());
        retrans.set_nonblocking(false)?;
        retrans.set_read_timeout(Some(Duration::from_millis(20)))?;
        let lingering = Instant::now();
        let linger_until = lingering + Duration::from_secs(10);
        let mut last_request = Instant::now();
        let mut last_end = Instant::now();
        let mut req = [0u8; 64];
        while Instant::now() < linger_until
            && last_request.elapsed() < Duration::from_secs(2)
            && !hurry()
        {
            if last_end.elapsed() >= MD_HEARTBEAT {
                publisher.end_of_session(&mut |p| md.send(orders, p));
                md.finish(orders);
                last_end = Instant::now();
            }
            // Orders that came over TCP after the stop are not taken (the
            // TCP thread must not wait for room in its ring).
            while tcp_in.pop().is_some() {}
            if let Ok((n, SocketAddr::V4(src))) = retrans.recv_from(&mut req) {
                last_request = Instant::now();
                // The per-host limit holds here too: a stopping exchange
                // must not answer a flood (or a forged address) unbounded.
                let t = now.0 + last_request.duration_since(lingering).as_nanos() as u64;
                if retrans_limits.admit(src, t) {
                    let cap = MESSAGES_PER_REQUEST;
                    answer_retransmission(publisher, archive, retrans, &req[..n], src, cap);
                }
            }
        }
        gateway.end_of_session(replies);
        *send_errors += replies.deliver(orders, tcp_out);
        // The TCP thread writes out what it holds (End of Session last)
        // before it closes the connections.
        let hand_over = if hurry() {
            Duration::ZERO
        } else {
            Duration::from_secs(1)
        };
        tcp_out.hand_over_all(hand_over);
        self.tcp_stop.set();
        tcp_out.wake_now();
        stop.set();
        if let Some(t) = self.tcp_thread.take() {
            let _ = t.join();
        }
        if let Some(rx) = &mut self.receiver {
            self.receiver_stats = rx.join();
            if let (Some(s), OrderPort::Xdp(port, _)) =
                (self.receiver_stats.and_then(|s| s.xdp), &mut self.orders)
            {
                port.absorb_receiver(s);
            }
        }
        journal.0.commit()?;
        Ok(())
    }

    /// The exit report: counters, per-stage latency, `.hgrm` files, and the
    /// book if asked for.
    pub fn report(&mut self, args: &ExchangeArgs) -> anyhow::Result<()> {
        // This run's traffic: the journal's replay is said apart.
        let c = &self.gateway.counters().since(&self.at_start);
        println!("\n== exchange counters");
        println!("{}", self.orders.report());
        if let Some(s) = &self.receiver_stats {
            println!("{}", receive_thread_line(s));
        }
        println!(
            "datagrams {}, SoupBinTCP packets {}, OUCH messages {}, logins {}, replies dropped {}, market-data send errors {}, journal errors {}, journal space allocated late {}, latency log write errors {}, archive write errors {}",
            self.datagrams, c.packets, c.orders, c.logins, self.send_errors, self.md.errors, self.journal.1, self.journal.0.late_allocations(), self.latency_log_errors, self.archive.write_errors
        );
        if self.replayed > 0 {
            println!("{}", replayed_line(self.replayed, &self.at_start));
        }
        println!(
            "{}",
            engine_core_line(self.busy_ns, self.serving_ns, c.orders)
        );
        println!("engine thread while serving: {}", self.serving_usage);
        println!(
            "trades (match numbers) {}, orders resting {}",
            self.engine.match_number(),
            self.engine.live_orders()
        );
        let mut drops: Vec<_> = Drop::ALL
            .iter()
            .filter_map(|d| c.drops.get(d).map(|n| format!("{}={n}", d.name())))
            .collect();
        drops.sort();
        println!("dropped: {}", none_or(drops));
        let mut rejects: Vec<_> = c.rejects.iter().map(|(r, n)| format!("{r}={n}")).collect();
        rejects.sort();
        println!("rejected: {}", none_or(rejects));
        println!(
            "{}",
            market_data_line(
                &self.publisher.stats(),
                self.publisher.next_sequence(),
                self.retrans_limited
            )
        );
        let stages = self
            .stage_log
            .finish(&mut self.interval, SystemTime::now())?;
        println!(
            "\n== latency inside the exchange (per stage)\n{}",
            stages.table(self.serving_ns as f64 / 1e9)
        );
        for s in Stage::ALL {
            let h = stages.get(s);
            if !h.is_empty() {
                h.save_hgrm(&self.latency_dir.join(format!("{}.hgrm", s.name())))?;
            }
        }
        if let Some(path) = &args.book_out {
            write_book(&self.engine, &self.contracts, path)?;
        }
        Ok(())
    }
}

/// The pipelined receive thread's counters. The lab tests read the number
/// after `receive thread:`.
fn receive_thread_line(s: &RxThreadStats) -> String {
    format!(
        "receive thread: {} handed to the engine thread, ring full {}, {} dropped, {} dropped at the stop (ring full)",
        plural(s.datagrams, "datagram", "datagrams"),
        plural(s.ring_full, "time", "times"),
        plural(s.truncated, "oversized datagram", "oversized datagrams"),
        s.dropped_at_stop
    )
}

/// What the journal's replay at start-up held (left out of the counters).
fn replayed_line(replayed: u64, r: &Counters) -> String {
    format!(
        "replayed {} at start-up (not counted here): {}, {}, {}",
        plural(replayed, "journal record", "journal records"),
        plural(r.packets, "SoupBinTCP packet", "SoupBinTCP packets"),
        plural(r.orders, "OUCH message", "OUCH messages"),
        plural(r.logins, "login", "logins")
    )
}

/// The market-data counters at exit. The lab tests read the number before
/// `over` (requests over the per-requester limit).
fn market_data_line(p: &PublisherStats, next_sequence: u64, limited: u64) -> String {
    format!(
        "market data: {} in {}, {}, next sequence {next_sequence}, retransmission requests {} ({} resent, {} unanswerable, {limited} over the per-requester limit)",
        plural(p.messages, "message", "messages"),
        plural(p.packets, "packet", "packets"),
        plural(p.heartbeats, "heartbeat", "heartbeats"),
        p.retransmit_requests,
        plural(p.retransmitted, "message", "messages"),
        p.retransmit_unanswerable,
    )
}

/// Hosts the retransmission server keeps a request bucket for.
const MAX_REQUESTERS: usize = 4096;

/// Answers one MoldUDP64 retransmission request by unicast with at most
/// `cap` messages, older ones from the archive; returns how many were sent.
fn answer_retransmission(
    publisher: &mut Publisher,
    archive: &mut MdArchive,
    retrans: &UdpSocket,
    request: &[u8],
    to: SocketAddrV4,
    cap: u16,
) -> u64 {
    publisher.retransmit_from(request, cap, archive, &mut |p| {
        let _ = retrans.send_to(p, to);
    })
}

/// Capacity of the one engine core: how much of the serving time it spent
/// on batches that had work, and the OUCH messages it handled per second
/// of that busy time (idle spinning excluded); "-" when it was never busy.
/// `tokex bench` reads this line.
fn engine_core_line(busy_ns: u64, serving_ns: u64, orders: u64) -> String {
    let (busy, serving) = (busy_ns as f64 / 1e9, serving_ns as f64 / 1e9);
    let pct = if serving_ns == 0 {
        0.0
    } else {
        100.0 * busy / serving
    };
    let rate = if busy_ns == 0 {
        "-".to_string()
    } else {
        format!("{:.0}", orders as f64 / busy)
    };
    format!(
        "engine core: busy {busy:.2} s of {serving:.2} s serving ({pct:.1} %), {rate} OUCH messages per busy second"
    )
}

fn none_or(items: Vec<String>) -> String {
    if items.is_empty() {
        "none".into()
    } else {
        items.join(" ")
    }
}

/// The pipelined topology's receive thread, reading the order port's
/// socket (a clone of it) or its AF_XDP receive half; `None` when the
/// exchange runs to completion.
fn spawn_receiver(
    cfg: &Config,
    orders: &mut OrderPort,
    stop: &Stop,
    clock: &Clock,
) -> anyhow::Result<Option<Receiver>> {
    if cfg.runtime.topology != Topology::Pipelined {
        return Ok(None);
    }
    let source = match orders {
        OrderPort::Kernel(port) => RxSource::Kernel(port.socket().try_clone()?),
        OrderPort::Xdp(port, _) => RxSource::Xdp(
            port.take_receiver()
                .context("the AF_XDP port's receive half")?,
        ),
    };
    let rx = &cfg.runtime;
    let receiver = Receiver::spawn(
        source,
        RxThreadConfig {
            core: rx.rx_core,
            busy_poll: rx.rx_busy_poll,
            realtime: rx.rx_realtime,
        },
        stop.clone(),
        clock.clock.clone(),
    )?;
    println!(
            "runtime: pipelined: receive thread on core {} ({}) -> SPSC ring -> engine thread on core {}",
            rx.rx_core,
            match (rx.rx_busy_poll, rx.rx_realtime) {
                (true, _) => "busy-polling".to_string(),
                (false, 0) => "blocking in poll(2)".to_string(),
                (false, p) => format!("blocking in poll(2), SCHED_FIFO {p}"),
            },
            rx.engine_core
        );
    Ok(Some(receiver))
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::path::Path;

    use super::*;
    use crate::config::TransportKind;
    use crate::journal;
    use crate::test_dir::TempDir;

    fn args(fresh: bool) -> ExchangeArgs {
        ExchangeArgs::for_tests(fresh)
    }

    #[test]
    fn the_engine_core_line_says_dash_for_no_busy_time_and_keeps_its_format_otherwise() {
        assert_eq!(
            engine_core_line(0, 0, 0),
            "engine core: busy 0.00 s of 0.00 s serving (0.0 %), - OUCH messages per busy second"
        );
        assert_eq!(
            engine_core_line(520_000_000, 3_000_000_000, 1_000_000),
            "engine core: busy 0.52 s of 3.00 s serving (17.3 %), 1923077 OUCH messages per busy second"
        );
    }

    #[test]
    fn counts_of_one_in_the_exit_report_are_said_in_the_singular() {
        let p = PublisherStats {
            messages: 1,
            packets: 1,
            heartbeats: 0,
            retransmit_requests: 1,
            retransmitted: 1,
            retransmit_unanswerable: 0,
        };
        assert_eq!(
            market_data_line(&p, 2, 1),
            "market data: 1 message in 1 packet, 0 heartbeats, next sequence 2, retransmission requests 1 (1 message resent, 0 unanswerable, 1 over the per-requester limit)"
        );
        let rx = RxThreadStats {
            datagrams: 1,
            ring_full: 1,
            truncated: 1,
            dropped_at_stop: 0,
            xdp: None,
        };
        assert_eq!(
            receive_thread_line(&rx),
            "receive thread: 1 datagram handed to the engine thread, ring full 1 time, 1 oversized datagram dropped, 0 dropped at the stop (ring full)"
        );
        let r = Counters {
            packets: 1,
            orders: 1,
            logins: 1,
            ..Counters::default()
        };
        assert_eq!(
            replayed_line(1, &r),
            "replayed 1 journal record at start-up (not counted here): 1 SoupBinTCP packet, 1 OUCH message, 1 login"
        );
        // Several stay plural, and the words the lab tests read stay put.
        let many = market_data_line(&PublisherStats::default(), 1, 12);
        assert!(many.starts_with("market data: 0 messages in 0 packets, 0 heartbeats"));
        assert!(many.contains(" 12 over the per-requester limit)"), "{many}");
    }

    #[test]
    fn a_second_exchange_is_refused_for_the_journal_lock_before_it_binds_any_port() {
        let dir = TempDir::new("server-lock-first");
        let mut cfg = Config {
            contracts: Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"),
            ..Config::default()
        };
        cfg.journal.path = dir.join("j").join("day.journal");
        cfg.network.transport = TransportKind::Udp;
        cfg.network.address = Ipv4Addr::LOCALHOST;
        // The first exchange: it holds the journal's lock and its ports
        // (a port taken here, so that binding it fails as it would).
        std::fs::create_dir_all(dir.join("j")).unwrap();
        let _first = journal::lock(&cfg.journal.path).unwrap();
        let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
        cfg.network.order_port = taken.local_addr().unwrap().port();
        cfg.network.retransmit_port = cfg.network.order_port;
        for fresh in [false, true] {
            let Err(err) = Server::start(cfg.clone(), &args(fresh), &Stop::new()) else {
                panic!("a second exchange started (fresh: {fresh})");
            };
            let why = format!("{err:#}");
            assert!(
                why.contains(&format!(
                    "another exchange (pid {}) is using this journal",
                    std::process::id()
                )),
                "{why}"
            );
            assert!(!why.contains("binding"), "{why}");
        }
    }
}
