//! `tokex exchange`: the server's I/O shell around the sans-IO cores.
//!
//! Owns the sockets and the loop: one pinned, run-to-completion thread
//! receives a batch of datagrams (kernel UDP, non-blocking), hands each to
//! the gateway (decode, session, match), writes the batch's journal records
//! with one write(2), then sends the acknowledgements and the market-data
//! packets, and records per-stage latencies. Every millisecond it runs the
//! session timers, market-data heartbeats and retransmission requests.
//! Trading logic lives in `engine` and `gateway`; this file only moves bytes.

use std::collections::HashMap;
use std::fs;
use std::net::{SocketAddr, SocketAddrV4, TcpListener, UdpSocket};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, Topology, TransportKind};
use crate::contract::ContractSet;
use crate::engine::{Engine, EngineConfig};
use crate::feed::publisher::Publisher;
use crate::gateway::{Drop, Gateway, JournalSink, Outbox, Peer, TokenBucket};
use crate::journal::{Durability, JournalWriter};
use crate::latency::{IntervalLog, Stage, StageHistograms};
use crate::net::tcp::{self, TcpPacket};
use crate::net::udp::{OrderPort, UdpPort};
use crate::net::xdp::XdpPort;
use crate::runtime::{pin_current_thread, Handoff, Stop};
use crate::types::{Nanos, Side};

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
    /// Write the final book (book.csv format) here at shutdown.
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
    /// Override how market data leaves: udp (kernel socket) | xdp (AF_XDP TX).
    #[arg(long)]
    pub md_transport: Option<String>,
}

/// A datagram read by the pipelined receive thread: source, receive time
/// (raw clock ticks), bytes.
type RxItem = (SocketAddrV4, u64, Vec<u8>);

/// Journal writes go through the gateway's hook into the group-commit buffer.
struct Journal(JournalWriter, u64);

impl JournalSink for Journal {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        if self.0.append(kind, now, payload).is_err() {
            self.1 += 1;
        }
    }
}

/// Counts accepted and replaced orders on their way to the publisher
/// (recovery reports how many acknowledged orders the journal restored).
struct CountAcks<'a>(&'a mut Publisher, u64);

impl crate::engine::EventSink for CountAcks<'_> {
    fn event(&mut self, e: &crate::engine::Event) {
        if matches!(
            e,
            crate::engine::Event::Accepted { .. } | crate::engine::Event::Replaced { .. }
        ) {
            self.1 += 1;
        }
        self.0.event(e);
    }
}

/// Replies held until the batch's journal write is done (an ack never
/// leaves before the order is durable), then sent.
struct Replies {
    buf: Vec<u8>,
    items: Vec<(Peer, usize, usize)>,
}

impl Outbox for Replies {
    fn send(&mut self, peer: Peer, bytes: &[u8]) {
        let start = self.buf.len();
        self.buf.extend_from_slice(bytes);
        self.items.push((peer, start, bytes.len()));
    }
}

impl Replies {
    /// Sends every held reply (UDP through the order port, TCP through the
    /// TCP thread's ring) and empties the holding area; returns the replies
    /// the order port dropped.
    fn deliver(&mut self, udp: &mut OrderPort, tcp: &Handoff<TcpPacket>) -> u64 {
        let mut errors = 0;
        for &(peer, start, len) in &self.items {
            let bytes = &self.buf[start..start + len];
            match peer {
                Peer::Udp(addr) => {
                    if !udp.send_to(addr, bytes) {
                        errors += 1;
                    }
                }
                Peer::Tcp(id) => {
                    let mut item = (id, bytes.to_vec());
                    while let Err(back) = tcp.push(item) {
                        item = back;
                        std::hint::spin_loop();
                    }
                }
            }
        }
        udp.flush();
        self.buf.clear();
        self.items.clear();
        errors
    }
}

/// Where market-data packets leave: the kernel's multicast socket, or
/// AF_XDP TX through the order port (same group, TTL 1).
struct MarketDataOut {
    kernel: UdpSocket,
    xdp: Option<(SocketAddrV4, u16)>,
    errors: u64,
}

impl MarketDataOut {
    fn send(&mut self, orders: &mut OrderPort, packet: &[u8]) {
        let ok = match (self.xdp, orders) {
            (Some((group, src_port)), OrderPort::Xdp(port)) => {
                port.send_multicast(group, src_port, packet)
            }
            _ => self.kernel.send(packet).is_ok(),
        };
        if !ok {
            self.errors += 1;
        }
    }

    /// Sends a flushed batch of packets (AF_XDP queues them; this submits).
    fn finish(&self, orders: &mut OrderPort) {
        if self.xdp.is_some() {
            orders.flush();
        }
    }
}

/// The order-entry port the config asks for: AF_XDP, or the kernel UDP
/// path (also when AF_XDP cannot start, with the reason).
fn open_order_port(cfg: &Config) -> anyhow::Result<OrderPort> {
    let local = SocketAddrV4::new(cfg.network.address, cfg.network.order_port);
    if cfg.network.transport == TransportKind::Xdp {
        match XdpPort::open(&cfg.network.interface, local, &cfg.xdp) {
            Ok(port) => {
                println!("transport: {}", port.describe());
                return Ok(OrderPort::Xdp(port));
            }
            Err(e) => {
                println!("transport: AF_XDP unavailable ({e}); falling back to the kernel UDP path")
            }
        }
    }
    println!(
        "transport: kernel UDP on {local} (recvmmsg/sendmmsg, batches of {})",
        crate::net::udp::BATCH
    );
    Ok(OrderPort::Kernel(UdpPort::new(udp_socket(local)?)?))
}

/// Nanoseconds since the Unix epoch from a cheap monotonic clock.
struct Clock {
    clock: quanta::Clock,
    base_raw: u64,
    base_epoch: u64,
}

impl Clock {
    fn new() -> Clock {
        let clock = quanta::Clock::new();
        let base_raw = clock.raw();
        let base_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Clock {
            clock,
            base_raw,
            base_epoch,
        }
    }

    #[inline]
    fn raw(&self) -> u64 {
        self.clock.raw()
    }

    #[inline]
    fn nanos(&self, raw: u64) -> Nanos {
        Nanos(self.base_epoch + self.clock.delta_as_nanos(self.base_raw, raw))
    }

    #[inline]
    fn between(&self, a: u64, b: u64) -> u64 {
        self.clock.delta_as_nanos(a, b)
    }
}

pub(crate) fn multicast_sender(cfg: &Config) -> anyhow::Result<UdpSocket> {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_multicast_ttl_v4(1)?;
    s.set_multicast_if_v4(&cfg.network.address)?;
    s.set_multicast_loop_v4(false)?;
    s.bind(&SocketAddr::from(SocketAddrV4::new(cfg.network.address, 0)).into())?;
    let s: UdpSocket = s.into();
    s.connect(SocketAddrV4::new(cfg.network.md_group, cfg.network.md_port))?;
    Ok(s)
}

fn udp_socket(addr: SocketAddrV4) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind(addr).with_context(|| {
        format!("binding {addr} (is the lab up and this the exchange namespace?)")
    })?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Runs the exchange until SIGINT/SIGTERM (or `--max-seconds`).
pub fn run(args: &ExchangeArgs) -> anyhow::Result<()> {
    let mut cfg = Config::load(&args.config)?;
    if let Some(t) = &args.transport {
        cfg.network.transport = match t.as_str() {
            "xdp" => TransportKind::Xdp,
            "udp" => TransportKind::Udp,
            other => bail!("unknown transport {other:?} (xdp | udp)"),
        };
    }
    if let Some(t) = &args.topology {
        cfg.runtime.topology = match t.as_str() {
            "run-to-completion" => Topology::RunToCompletion,
            "pipelined" => Topology::Pipelined,
            other => bail!("unknown topology {other:?} (run-to-completion | pipelined)"),
        };
    }
    let stop = Stop::on_signals()?;
    let contracts = ContractSet::load_dir(&cfg.contracts)?;
    let session: [u8; 10] = cfg
        .network
        .md_session
        .as_bytes()
        .try_into()
        .context("md_session")?;

    if let Some(i) = &args.interface {
        cfg.network.interface = i.clone();
    }
    if let Some(t) = &args.md_transport {
        cfg.network.md_transport = match t.as_str() {
            "xdp" => TransportKind::Xdp,
            "udp" => TransportKind::Udp,
            other => bail!("unknown market-data transport {other:?} (xdp | udp)"),
        };
    }
    if cfg.runtime.topology == Topology::Pipelined && cfg.network.transport == TransportKind::Xdp {
        println!("runtime: the pipelined topology reads the kernel UDP socket; using the kernel UDP transport");
        cfg.network.transport = TransportKind::Udp;
    }
    let mut orders = open_order_port(&cfg)?;
    let retrans = udp_socket(SocketAddrV4::new(
        cfg.network.address,
        cfg.network.retransmit_port,
    ))?;
    let md_group = SocketAddrV4::new(cfg.network.md_group, cfg.network.md_port);
    let mut md = MarketDataOut {
        kernel: multicast_sender(&cfg)?,
        xdp: match (&orders, cfg.network.md_transport) {
            (OrderPort::Xdp(_), TransportKind::Xdp) => Some((md_group, cfg.network.md_port)),
            _ => None,
        },
        errors: 0,
    };
    let tcp_in: std::sync::Arc<Handoff<TcpPacket>> = Handoff::with_capacity(1 << 14);
    let tcp_out: std::sync::Arc<Handoff<TcpPacket>> = Handoff::with_capacity(1 << 14);
    let tcp_addr = SocketAddrV4::new(cfg.network.address, cfg.network.tcp_port);
    let listener =
        TcpListener::bind(tcp_addr).with_context(|| format!("binding TCP {tcp_addr}"))?;
    let tcp_thread = tcp::spawn(listener, stop.clone(), tcp_in.clone(), tcp_out.clone())?;
    println!("transport: SoupBinTCP over TCP (compatibility port) on {tcp_addr}");
    println!(
        "market data: ITCH 5.0 in MoldUDP64 to {md_group} (TTL 1) through {}, session {}, retransmission on port {}",
        if md.xdp.is_some() { "AF_XDP TX" } else { "the kernel socket" },
        cfg.network.md_session,
        cfg.network.retransmit_port
    );

    let clock = Clock::new();
    let mut engine = Engine::new(
        &contracts,
        EngineConfig {
            max_orders: cfg.engine.max_orders,
        },
    );
    let mut gateway = Gateway::new(&cfg.gateway, &cfg.sessions, &contracts, session);
    let mut publisher = Publisher::new(&contracts, session, 1 << 22);
    publisher.set_time(clock.nanos(clock.raw()));
    publisher.start_of_day();

    if let Some(dir) = cfg.journal.path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if args.fresh && cfg.journal.path.exists() {
        fs::remove_file(&cfg.journal.path)?;
    }
    let t0 = Instant::now();
    let mut acked = CountAcks(&mut publisher, 0);
    let (writer, report) =
        JournalWriter::open(&cfg.journal.path, cfg.journal.durability, 1 << 20, |rec| {
            acked.0.set_time(rec.time);
            gateway.replay(rec.kind, rec.time, rec.payload, &mut engine, &mut acked);
            // The replayed messages are in the retransmission store; the
            // packets built for them are never sent (memory stays flat).
            acked.0.discard_pending();
        })?;
    let accepted_before = acked.1;
    if report.records > 0 {
        publisher.discard_pending();
        println!(
            "recovery: replayed {} journal records in {:.1} ms; {} orders accepted before the restart, {} resting, {} trades; market data continues at sequence {}",
            report.records,
            t0.elapsed().as_secs_f64() * 1e3,
            accepted_before,
            engine.live_orders(),
            engine.match_number(),
            publisher.next_sequence()
        );
    }
    if report.cut_bytes > 0 {
        println!(
            "recovery: cut a torn or corrupt journal tail of {} bytes",
            report.cut_bytes
        );
    }
    if cfg.journal.durability == Durability::None {
        println!("journal: DISABLED (durability = none): acknowledged orders are lost on a crash; benchmarks only");
    } else {
        println!(
            "journal: {} (durability = {:?})",
            cfg.journal.path.display(),
            cfg.journal.durability
        );
    }
    let mut journal = Journal(writer, 0);

    // The pipelined topology: a receive thread on its own core hands
    // datagrams to this (engine) thread through a bounded SPSC ring.
    let (rx_ring, rx_thread) = if cfg.runtime.topology == Topology::Pipelined {
        let ring: Arc<Handoff<RxItem>> = Handoff::with_capacity(1 << 16);
        let OrderPort::Kernel(port) = &orders else {
            bail!("the pipelined topology needs the kernel UDP transport");
        };
        let sock = port.socket().try_clone()?;
        let (ring2, stop2, core, raw) = (
            ring.clone(),
            stop.clone(),
            cfg.runtime.rx_core,
            clock.clock.clone(),
        );
        let t = std::thread::Builder::new()
            .name("tokex-rx".into())
            .spawn(move || {
                if let Err(e) = pin_current_thread(core) {
                    println!("runtime: receive thread not pinned ({e})");
                }
                let mut buf = vec![0u8; 2048];
                while !stop2.is_set() {
                    match sock.recv_from(&mut buf) {
                        Ok((n, SocketAddr::V4(src))) => {
                            let mut item = (src, raw.raw(), buf[..n].to_vec());
                            while let Err(back) = ring2.push(item) {
                                item = back;
                                std::hint::spin_loop();
                            }
                        }
                        Ok(_) => {}
                        Err(_) => std::hint::spin_loop(),
                    }
                }
            })?;
        println!(
            "runtime: pipelined: receive thread on core {} -> SPSC ring -> engine thread on core {}",
            cfg.runtime.rx_core, cfg.runtime.engine_core
        );
        (Some(ring), Some(t))
    } else {
        (None, None)
    };
    match pin_current_thread(cfg.runtime.engine_core) {
        Ok(()) => println!(
            "runtime: {} thread pinned to core {}",
            if rx_ring.is_some() {
                "engine"
            } else {
                "run-to-completion"
            },
            cfg.runtime.engine_core
        ),
        Err(e) => println!("runtime: not pinned ({e})"),
    }
    let mut replies = Replies {
        buf: Vec::with_capacity(1 << 20),
        items: Vec::with_capacity(1 << 14),
    };
    // Stages are recorded into `interval`, which is folded into `stages` and
    // written to the interval log once per `latency.interval_ms`.
    let mut stages = StageHistograms::default();
    let mut interval = StageHistograms::default();
    let dir = args.latency_dir.clone().unwrap_or(cfg.latency.dir.clone());
    fs::create_dir_all(&dir)?;
    let mut interval_start = SystemTime::now();
    let mut hlog = IntervalLog::create(
        &dir.join("exchange.hlog"),
        interval_start,
        "tokex exchange: per-stage latency, ns",
    )?;
    let interval_every = Duration::from_millis(cfg.latency.interval_ms.max(1));
    let mut req = [0u8; 64];
    let mut per_datagram: Vec<u64> = Vec::with_capacity(cfg.runtime.batch);
    let mut last_timer = clock.raw();
    let timer_every = 1_000_000u64;
    let deadline = args
        .max_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let mut datagrams = 0u64;
    let mut send_errors = 0u64;
    let mut retrans_limits: HashMap<std::net::Ipv4Addr, TokenBucket> = HashMap::new();
    let mut retrans_limited = 0u64;

    // Flush start-of-day market data, then announce readiness.
    publisher.flush(&mut |p| md.send(&mut orders, p));
    md.finish(&mut orders);
    if let Some(f) = &args.ready_file {
        fs::write(f, b"ready\n")?;
    }
    println!(
        "ready: order entry on {}:{}",
        cfg.network.address, cfg.network.order_port
    );

    while !stop.is_set() {
        // Receive a batch.
        per_datagram.clear();
        let batch_start = clock.raw();
        let now = clock.nanos(batch_start);
        publisher.set_time(now);
        while per_datagram.len() < cfg.runtime.batch {
            if let Some(ring) = &rx_ring {
                // Pipelined: the receive thread already read the datagram.
                let Some((src, t_rx, bytes)) = ring.pop() else {
                    break;
                };
                gateway.on_datagram(
                    now,
                    Peer::Udp(src),
                    &bytes,
                    &mut engine,
                    &mut publisher,
                    &mut journal,
                    &mut replies,
                );
                interval.record(Stage::RxToMatched, clock.between(t_rx, clock.raw()));
                per_datagram.push(t_rx);
                datagrams += 1;
                continue;
            }
            // One batch from the port (one recvmmsg, or one pass over the
            // AF_XDP RX ring). Every datagram of the batch is timed from the
            // moment the batch was in memory.
            let mut t_batch = None;
            let n = orders
                .recv(cfg.runtime.batch - per_datagram.len(), |src, bytes| {
                    let t_rx = *t_batch.get_or_insert_with(|| clock.raw());
                    gateway.on_datagram(
                        now,
                        Peer::Udp(src),
                        bytes,
                        &mut engine,
                        &mut publisher,
                        &mut journal,
                        &mut replies,
                    );
                    interval.record(Stage::RxToMatched, clock.between(t_rx, clock.raw()));
                    per_datagram.push(t_rx);
                })
                .context("receiving orders")?;
            datagrams += n as u64;
            break;
        }
        while per_datagram.len() < cfg.runtime.batch {
            let Some((id, bytes)) = tcp_in.pop() else {
                break;
            };
            let t_rx = clock.raw();
            gateway.on_datagram(
                now,
                Peer::Tcp(id),
                &bytes,
                &mut engine,
                &mut publisher,
                &mut journal,
                &mut replies,
            );
            interval.record(Stage::RxToMatched, clock.between(t_rx, clock.raw()));
            per_datagram.push(t_rx);
        }
        if !per_datagram.is_empty() {
            let tj = clock.raw();
            journal.0.commit().context("journal write")?;
            interval.record(Stage::JournalWrite, clock.between(tj, clock.raw()));
            let ta = clock.raw();
            for &(peer, _, _) in &replies.items {
                gateway.note_sent(peer, now);
            }
            send_errors += replies.deliver(&mut orders, &tcp_out);
            let t_acked = clock.raw();
            let per = clock.between(ta, t_acked) / per_datagram.len() as u64;
            for &t_rx in &per_datagram {
                interval.record(Stage::MatchedToAck, per);
                interval.record(Stage::EndToEnd, clock.between(t_rx, t_acked));
            }
            let tm = clock.raw();
            let mut sent = false;
            publisher.flush(&mut |p| {
                sent = true;
                md.send(&mut orders, p);
            });
            md.finish(&mut orders);
            if sent {
                interval.record(Stage::MarketDataOut, clock.between(tm, clock.raw()));
            }
        } else if !cfg.runtime.busy_poll {
            std::thread::sleep(Duration::from_micros(50));
        } else {
            std::hint::spin_loop();
        }
        // Timers, heartbeats and retransmissions, once a millisecond.
        let t = clock.raw();
        if clock.between(last_timer, t) >= timer_every {
            last_timer = t;
            let wall = SystemTime::now();
            if wall.duration_since(interval_start).unwrap_or_default() >= interval_every {
                write_interval(&mut hlog, &mut interval, &mut stages, interval_start, wall)?;
                interval_start = wall;
            }
            let now = clock.nanos(t);
            publisher.set_time(now);
            gateway.on_timer(now, &mut journal, &mut replies);
            journal.0.commit().context("journal write")?;
            send_errors += replies.deliver(&mut orders, &tcp_out);
            publisher.heartbeat_if_idle(1_000_000_000, &mut |p| md.send(&mut orders, p));
            md.finish(&mut orders);
            while let Ok((n, SocketAddr::V4(src))) = retrans.recv_from(&mut req) {
                // Per requester: 1,000 requests/s, bursts of 200; the rest are
                // counted and ignored so one host cannot monopolise the server.
                if retrans_limits.len() > 4096 {
                    retrans_limits.clear();
                }
                let bucket = retrans_limits
                    .entry(*src.ip())
                    .or_insert_with(|| TokenBucket::new(1000, 200));
                if !bucket.take(now.0) {
                    retrans_limited += 1;
                    continue;
                }
                publisher.retransmit(&req[..n], 4096, &mut |p| {
                    let _ = retrans.send_to(p, src);
                });
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
    }

    // Shutdown: End of Session on both channels, then the reports.
    let now = clock.nanos(clock.raw());
    publisher.set_time(now);
    publisher.flush(&mut |p| md.send(&mut orders, p));
    md.finish(&mut orders);
    // End of Session three times (it is idempotent) so one lost datagram
    // does not leave a feed handler waiting; then keep answering
    // retransmission requests until none came for 2 s (at most 10 s).
    for _ in 0..3 {
        publisher.end_of_session(&mut |p| md.send(&mut orders, p));
        md.finish(&mut orders);
        std::thread::sleep(Duration::from_millis(1));
    }
    retrans.set_nonblocking(false)?;
    retrans.set_read_timeout(Some(Duration::from_millis(20)))?;
    let linger_until = Instant::now() + Duration::from_secs(10);
    let mut last_request = Instant::now();
    while Instant::now() < linger_until && last_request.elapsed() < Duration::from_secs(2) {
        if let Ok((n, SocketAddr::V4(src))) = retrans.recv_from(&mut req) {
            last_request = Instant::now();
            publisher.retransmit(&req[..n], 4096, &mut |p| {
                let _ = retrans.send_to(p, src);
            });
        }
    }
    gateway.end_of_session(&mut replies);
    send_errors += replies.deliver(&mut orders, &tcp_out);
    // Give the TCP thread a moment to write End of Session, then stop it.
    std::thread::sleep(Duration::from_millis(20));
    stop.set();
    let _ = tcp_thread.join();
    if let Some(t) = rx_thread {
        let _ = t.join();
    }
    journal.0.commit()?;

    let c = gateway.counters();
    println!("\n== exchange counters");
    println!("{}", orders.report());
    println!("datagrams {datagrams}, SoupBinTCP packets {}, OUCH messages {}, logins {}, replies dropped {send_errors}, market-data send errors {}, journal errors {}", c.packets, c.orders, c.logins, md.errors, journal.1);
    println!(
        "trades (match numbers) {}, orders resting {}",
        engine.match_number(),
        engine.live_orders()
    );
    let mut drops: Vec<_> = Drop::ALL
        .iter()
        .filter_map(|d| c.drops.get(d).map(|n| format!("{}={n}", d.name())))
        .collect();
    drops.sort();
    println!(
        "dropped: {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(" ")
        }
    );
    let mut rejects: Vec<_> = c.rejects.iter().map(|(r, n)| format!("{r}={n}")).collect();
    rejects.sort();
    println!(
        "rejected: {}",
        if rejects.is_empty() {
            "none".into()
        } else {
            rejects.join(" ")
        }
    );
    let p = publisher.stats();
    println!(
        "market data: {} messages in {} packets, {} heartbeats, next sequence {}, retransmission requests {} ({} messages resent, {} unanswerable, {retrans_limited} over the per-requester limit)",
        p.messages, p.packets, p.heartbeats, publisher.next_sequence(), p.retransmit_requests, p.retransmitted, p.retransmit_unanswerable
    );
    write_interval(
        &mut hlog,
        &mut interval,
        &mut stages,
        interval_start,
        SystemTime::now(),
    )?;
    hlog.flush()?;
    println!(
        "\n== latency inside the exchange (per stage)\n{}",
        stages.table()
    );

    for s in Stage::ALL {
        let h = stages.get(s);
        if !h.is_empty() {
            h.save_hgrm(&dir.join(format!("{}.hgrm", s.name())))?;
        }
    }
    if let Some(path) = &args.book_out {
        write_book(&engine, &contracts, path)?;
    }
    Ok(())
}

/// Writes one interval of every stage to the interval log (tagged with the
/// stage name), folds it into the run's totals and starts the next.
fn write_interval(
    hlog: &mut IntervalLog,
    interval: &mut StageHistograms,
    total: &mut StageHistograms,
    start: SystemTime,
    end: SystemTime,
) -> std::io::Result<()> {
    let length = end.duration_since(start).unwrap_or_default();
    for s in Stage::ALL {
        let h = interval.get(s);
        if !h.is_empty() {
            hlog.write(Some(s.name()), h, start, length)?;
        }
    }
    total.add(interval);
    interval.reset();
    Ok(())
}

/// The engine's resting orders in `tokex replay`'s book.csv layout (order
/// reference numbers in place of accounts and tokens, which the feed does not carry).
pub fn write_book(
    engine: &Engine,
    contracts: &ContractSet,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut out = String::from("symbol,side,price,qty,order\n");
    for c in contracts.iter() {
        for side in [Side::Buy, Side::Sell] {
            for o in engine.resting(c.id, side) {
                out += &format!(
                    "{},{},{},{},{}\n",
                    c.symbol,
                    if side == Side::Buy { 'B' } else { 'S' },
                    o.price.to_string_decimals(c.price_decimals()),
                    o.qty,
                    o.order.0
                );
            }
        }
    }
    fs::write(path, out).with_context(|| format!("writing {}", path.display()))
}
