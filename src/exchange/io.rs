//! The exchange's I/O pieces: the order port (AF_XDP or kernel UDP), the
//! market-data output, replies held until the journal write, the journal
//! hook and the clock.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, TransportKind};
use crate::gateway::{udp_label, JournalSink, Outbox, Peer};
use crate::journal::JournalWriter;
use crate::net::tcp::TcpReplies;
use crate::net::udp::{OrderPort, UdpPort};
use crate::net::xdp::{XdpError, XdpPort};

use crate::types::Nanos;
use crate::wire::soupbin;

/// Journal writes go through the gateway's hook into the group-commit
/// buffer; failed appends are counted.
pub(crate) struct Journal(pub JournalWriter, pub u64);

impl JournalSink for Journal {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        if self.0.append(kind, now, payload).is_err() {
            self.1 += 1;
        }
    }
}

/// Replies held until the batch's journal write is done (an ack never
/// leaves before the order is durable), then sent.
///
/// A UDP peer's replies are packed as they are made into its open datagram
/// of up to [`MAX_REPLY_DATAGRAM`] bytes, in the order they were made
/// (SoupBinTCP's length prefixes keep them apart): a datagram of several
/// orders is answered by one datagram, even when executions for other
/// sessions come in between. Each reply is copied once, into its datagram.
pub(crate) struct Replies {
    /// The batch's datagrams, in the order they were started (a peer's
    /// come in its order), the first `used` in use; kept with their
    /// buffers to avoid allocating per batch.
    datagrams: Vec<Datagram>,
    used: usize,
    /// Each UDP peer's open datagram: the peer as one integer and the
    /// datagram's index in `datagrams` (a handful of peers per batch,
    /// searched in place without touching the datagrams).
    open: Vec<(u64, usize)>,
    /// Replies to TCP connections, in order.
    tcp: Vec<(u32, Vec<u8>)>,
}

/// A UDP peer's datagram.
struct Datagram {
    peer: SocketAddrV4,
    bytes: Vec<u8>,
    /// The number a Sequenced Data packet appended now would have without
    /// a label of its own (none at the start of a datagram, or after a
    /// packet that carries its own label).
    next_seq: Option<u64>,
}

/// A UDP peer as one integer (address and port), compared in a register.
fn peer_key(a: SocketAddrV4) -> u64 {
    u64::from(a.ip().to_bits()) << 16 | u64::from(a.port())
}

/// At most this many bytes of replies share one UDP datagram (what fits an
/// Ethernet frame with the IPv4 and UDP headers).
pub(super) const MAX_REPLY_DATAGRAM: usize = 1472;

impl Datagram {
    /// Whether a packet numbered `seq` would need a label of its own.
    fn needs_label(&self, seq: Option<u64>) -> bool {
        seq.is_some() && seq != self.next_seq
    }

    /// Whether `len` more bytes (numbered `seq`) fit this datagram.
    fn fits(&self, seq: Option<u64>, len: usize) -> bool {
        let label = if self.needs_label(seq) {
            udp_label::LEN
        } else {
            0
        };
        self.bytes.is_empty() || self.bytes.len() + label + len <= MAX_REPLY_DATAGRAM
    }

    /// Appends one reply, `header` (if any) then `body` (together one
    /// Sequenced Data packet numbered `seq`, or any other reply), after a
    /// label if the numbering does not follow on.
    fn push(&mut self, seq: Option<u64>, header: Option<[u8; soupbin::HEADER_LEN]>, body: &[u8]) {
        if self.needs_label(seq) {
            let mut label = [0u8; udp_label::LEN];
            let n = udp_label::write(&mut label, seq.unwrap_or(0));
            self.bytes.extend_from_slice(&label[..n]);
        }
        // After anything else (Login Accepted, a labelled re-send block or
        // heartbeat) the numbering is not known here: label the next one.
        self.next_seq = seq.map(|s| s + 1);
        append_reply(&mut self.bytes, header, body);
    }
}

/// Appends one reply to `out`: `header` (if any), then `body`.
fn append_reply(out: &mut Vec<u8>, header: Option<[u8; soupbin::HEADER_LEN]>, body: &[u8]) {
    // The header by value: three bytes stored from a register. Copied out
    // of a stack buffer just written, its bytes were read back by a load
    // spanning two of those stores, which cannot be forwarded and waits
    // for every older store to reach the cache: 8.8 % of the exchange's
    // samples at 1 M orders/s (perf, AF_XDP client).
    if let Some(h) = header {
        out.extend_from_slice(&h);
    }
    out.extend_from_slice(body);
}

impl Replies {
    pub fn new() -> Replies {
        Replies {
            datagrams: Vec::new(),
            used: 0,
            open: Vec::new(),
            tcp: Vec::new(),
        }
    }

    /// Packs one reply (`header`, if any, then `body`) into `peer`'s open
    /// datagram, starting a new one when it does not fit.
    fn hold(
        &mut self,
        peer: Peer,
        seq: Option<u64>,
        header: Option<[u8; soupbin::HEADER_LEN]>,
        body: &[u8],
    ) {
        let addr = match peer {
            Peer::Udp(addr) => addr,
            Peer::Tcp(id) => {
                let mut bytes = Vec::with_capacity(soupbin::HEADER_LEN + body.len());
                append_reply(&mut bytes, header, body);
                self.tcp.push((id, bytes));
                return;
            }
        };
        let len = header.map_or(0, |h| h.len()) + body.len();
        let key = peer_key(addr);
        let at = self.open.iter().position(|&(p, _)| p == key);
        let k = match at {
            Some(i) if self.datagrams[self.open[i].1].fits(seq, len) => self.open[i].1,
            _ => {
                let k = self.start(addr);
                match at {
                    Some(i) => self.open[i].1 = k, // the full one waits for deliver
                    None => self.open.push((key, k)),
                }
                k
            }
        };
        self.datagrams[k].push(seq, header, body);
    }

    /// A new, empty datagram to `peer`.
    fn start(&mut self, peer: SocketAddrV4) -> usize {
        if self.used == self.datagrams.len() {
            self.datagrams.push(Datagram {
                peer,
                bytes: Vec::with_capacity(MAX_REPLY_DATAGRAM),
                next_seq: None,
            });
        }
        let d = &mut self.datagrams[self.used];
        d.peer = peer;
        d.bytes.clear();
        d.next_seq = None;
        self.used += 1;
        self.used - 1
    }

    /// Every peer with a reply held (once each).
    pub fn peers(&self) -> impl Iterator<Item = Peer> + '_ {
        let udp = self
            .open
            .iter()
            .map(|&(_, k)| Peer::Udp(self.datagrams[k].peer));
        let mut tcp: Vec<u32> = self.tcp.iter().map(|&(id, _)| id).collect();
        tcp.dedup();
        udp.chain(tcp.into_iter().map(Peer::Tcp))
    }

    /// Sends every held reply (UDP through the order port, TCP through the
    /// TCP thread's ring) and empties the holding area; returns the
    /// datagrams the order port dropped.
    pub fn deliver(&mut self, udp: &mut OrderPort, tcp: &mut TcpReplies) -> u64 {
        let errors = self.drain(|peer, bytes| udp.send_to(peer, bytes), |r| tcp.push(r));
        udp.flush();
        tcp.wake();
        errors
    }

    /// Hands every held UDP datagram to `udp` (false: dropped) and TCP
    /// reply to `tcp`, in order, and empties the holding area; returns the
    /// datagrams dropped.
    pub(crate) fn drain(
        &mut self,
        mut udp: impl FnMut(SocketAddrV4, &[u8]) -> bool,
        tcp: impl FnMut((u32, Vec<u8>)),
    ) -> u64 {
        let mut errors = 0;
        for d in &self.datagrams[..self.used] {
            if !udp(d.peer, &d.bytes) {
                errors += 1;
            }
        }
        self.used = 0;
        self.open.clear();
        self.tcp.drain(..).for_each(tcp);
        errors
    }
}

impl Outbox for Replies {
    fn send(&mut self, peer: Peer, bytes: &[u8]) {
        self.hold(peer, None, None, bytes);
    }

    /// Framed in place; labelled where the numbering breaks.
    fn send_sequenced(&mut self, peer: Peer, seq: u64, msg: &[u8]) {
        if let Ok(header) = soupbin::header(soupbin::kind::SEQUENCED_DATA, msg.len()) {
            self.hold(peer, Some(seq), Some(header), msg);
        }
    }

    /// An empty TCP reply: the TCP thread closes the connection once the
    /// replies before it are written ([`crate::net::tcp::TcpPacket`]).
    fn close(&mut self, peer: Peer) {
        if let Peer::Tcp(id) = peer {
            self.tcp.push((id, Vec::new()));
        }
    }
}

/// Where market-data packets leave: the kernel's multicast socket, or
/// AF_XDP TX through the order port (same group, TTL 1).
pub(super) struct MarketDataOut {
    pub kernel: UdpSocket,
    pub xdp: Option<(SocketAddrV4, u16)>,
    pub errors: u64,
}

impl MarketDataOut {
    pub fn send(&mut self, orders: &mut OrderPort, packet: &[u8]) {
        let ok = match (self.xdp, orders) {
            (Some((group, src_port)), OrderPort::Xdp(port, _)) => {
                port.send_multicast(group, src_port, packet)
            }
            _ => self.kernel.send(packet).is_ok(),
        };
        if !ok {
            self.errors += 1;
        }
    }

    /// Sends a flushed batch of packets (AF_XDP queues them; this submits).
    pub fn finish(&self, orders: &mut OrderPort) {
        if self.xdp.is_some() {
            orders.flush();
        }
    }
}

/// Whether market data leaves through AF_XDP TX, given the config's
/// `md_transport` and whether the order port opened on AF_XDP (market data
/// on AF_XDP goes out through that port's socket), and the line that says
/// so when `md_transport = "xdp"` could not be had. Kernel UDP order entry
/// asked for together with AF_XDP market data is refused with the config
/// (`Config::validate`); here the order port fell back to kernel UDP
/// because AF_XDP could not start.
pub(super) fn market_data_route(md: TransportKind, orders_on_xdp: bool) -> (bool, Option<String>) {
    match (md, orders_on_xdp) {
        (TransportKind::Xdp, true) => (true, None),
        (TransportKind::Udp, _) => (false, None),
        (TransportKind::Xdp, false) => (
            false,
            Some(
                "market data: falling back to the kernel socket too: md_transport = \"xdp\" sends through the AF_XDP order port, and AF_XDP did not start for order entry (see the transport line above)"
                    .into(),
            ),
        ),
    }
}

/// The order-entry port the config asks for: AF_XDP, or the kernel UDP
/// path (also when AF_XDP cannot start, with the reason).
/// How long the exchange keeps trying to create its AF_XDP socket before
/// it falls back to kernel UDP.
const XDP_QUEUE_WAIT: Duration = Duration::from_secs(3);

pub(super) fn open_order_port(cfg: &Config) -> anyhow::Result<OrderPort> {
    let local = SocketAddrV4::new(cfg.network.address, cfg.network.order_port);
    if cfg.network.transport == TransportKind::Xdp {
        // A restart right after a crash can find the queue still held: the
        // kernel releases a dead process's AF_XDP socket a little later.
        let deadline = Instant::now() + XDP_QUEUE_WAIT;
        let mut said = false;
        loop {
            match XdpPort::open(&cfg.network.interface, local, &cfg.xdp) {
                Ok(port) => {
                    println!("transport: {}", port.describe());
                    // Beside it, a kernel socket on the same address: for
                    // replies to peers whose MAC address the port has not
                    // learned, and what the XDP program passes.
                    let kernel = match udp_socket(local).and_then(|s| Ok(UdpPort::new(s)?)) {
                        Ok(k) => Some(Box::new(k)),
                        Err(e) => {
                            println!("transport: no kernel socket on {local} beside AF_XDP ({e:#}): replies to peers not logged in since the start are dropped");
                            None
                        }
                    };
                    return Ok(OrderPort::Xdp(port, kernel));
                }
                Err(XdpError::Socket(e)) if Instant::now() < deadline => {
                    if !std::mem::replace(&mut said, true) {
                        println!("transport: AF_XDP socket not created yet ({e}); the queue's previous socket may still be being released: trying again for up to {XDP_QUEUE_WAIT:?}");
                    }
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => {
                    println!(
                        "transport: AF_XDP unavailable ({e}); falling back to the kernel UDP path"
                    );
                    break;
                }
            }
        }
    }
    println!(
        "transport: kernel UDP on {local} (recvmmsg/sendmmsg, batches of {})",
        crate::net::udp::BATCH
    );
    Ok(OrderPort::Kernel(UdpPort::new(udp_socket(local)?)?))
}

/// The exchange's clocks: the wall clock for timestamps (ITCH, journal,
/// session timers) and the TSC for measuring stages.
///
/// Timestamps read CLOCK_REALTIME (through the vDSO, tens of ns, once per
/// batch): feed handlers compare ITCH timestamps with their own wall clock,
/// and an epoch carried forward on the TSC drifted from it by more than the
/// feed's latency within seconds (the feed then saw negative latencies).
pub(super) struct Clock {
    pub clock: quanta::Clock,
}

impl Clock {
    pub fn new() -> Clock {
        Clock {
            clock: quanta::Clock::new(),
        }
    }

    /// Now, on the wall clock (ns since the Unix epoch).
    #[inline]
    pub fn now(&self) -> Nanos {
        Nanos(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        )
    }

    /// A TSC reading, for [`Clock::between`].
    #[inline]
    pub fn raw(&self) -> u64 {
        self.clock.raw()
    }

    /// Nanoseconds from TSC reading `a` to `b`.
    #[inline]
    pub fn between(&self, a: u64, b: u64) -> u64 {
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

pub(super) fn udp_socket(addr: SocketAddrV4) -> anyhow::Result<UdpSocket> {
    let s = UdpSocket::bind(addr).with_context(|| {
        format!("binding {addr} (is the lab up and this the exchange namespace?)")
    })?;
    s.set_nonblocking(true)?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{Handoff, Stop};

    use std::io::Read;
    use std::time::Duration;

    #[test]
    fn market_data_on_af_xdp_falls_back_with_a_line_when_order_entry_did() {
        assert_eq!(market_data_route(TransportKind::Xdp, true), (true, None));
        assert_eq!(market_data_route(TransportKind::Udp, true), (false, None));
        assert_eq!(market_data_route(TransportKind::Udp, false), (false, None));
        let (xdp, note) = market_data_route(TransportKind::Xdp, false);
        assert!(!xdp);
        let note = note.expect("the fallback is said");
        assert!(
            note.starts_with("market data: falling back to the kernel socket too"),
            "{note}"
        );
        assert!(note.contains("md_transport = \"xdp\""), "{note}");
    }

    #[test]
    fn timestamps_are_read_from_the_wall_clock_feed_handlers_compare_with() {
        let clock = Clock::new();
        let wall = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        };
        for _ in 0..1000 {
            let before = wall();
            let t = clock.now().0;
            assert!(before <= t && t <= wall());
        }
    }

    fn received(sock: &UdpSocket) -> Vec<Vec<u8>> {
        sock.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let mut out = Vec::new();
        let mut buf = [0u8; 2048];
        while let Ok(n) = sock.recv(&mut buf) {
            out.push(buf[..n].to_vec());
        }
        out
    }

    #[test]
    fn replies_to_one_peer_share_datagrams_up_to_the_size_limit() {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = |s: &UdpSocket| match s.local_addr().unwrap() {
            SocketAddr::V4(v4) => v4,
            SocketAddr::V6(_) => unreachable!(),
        };
        let (pa, pb) = (Peer::Udp(addr(&a)), Peer::Udp(addr(&b)));
        let mut port = OrderPort::Kernel(
            UdpPort::new(udp_socket(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0)).unwrap())
                .unwrap(),
        );
        let stop = Stop::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (thread, mut tcp) =
            crate::net::tcp::spawn(listener, stop.clone(), Handoff::with_capacity(4), 4).unwrap();
        let mut replies = Replies::new();
        // Three to a, one to b, then 30 packets of 100 bytes to a: a's
        // 3,030 bytes leave in order in three datagrams of at most 1,472
        // (b's reply in between does not split them).
        for n in 0..3u8 {
            replies.send(pa, &[n; 10]);
        }
        replies.send(pb, &[9; 20]);
        for n in 0..30u8 {
            replies.send(pa, &[n; 100]);
        }
        assert_eq!(replies.deliver(&mut port, &mut tcp), 0);
        assert!(replies.used == 0 && replies.open.is_empty() && replies.tcp.is_empty());
        stop.set();
        thread.join().unwrap();

        let to_a = received(&a);
        let to_b = received(&b);
        assert_eq!(to_b, vec![vec![9u8; 20]]);
        let sizes: Vec<usize> = to_a.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![1430, 1400, 200]);
        let mut expected: Vec<u8> = [[0u8; 10], [1; 10], [2; 10]].concat();
        expected.extend((0..30u8).flat_map(|n| [n; 100]));
        assert_eq!(to_a.concat(), expected);
    }

    type Sequenced = Vec<(u64, Vec<u8>)>;

    /// The sequence numbers a UDP client gives the Sequenced Data packets
    /// of `datagrams` (a label numbers the next one, the rest follow on)
    /// and the unsequenced payloads it sees, in order.
    fn numbered(datagrams: &[Vec<u8>]) -> (Sequenced, usize, Vec<Vec<u8>>) {
        use crate::wire::soupbin::{self, Packet};
        let (mut seqs, mut labels, mut other) = (Vec::new(), 0, Vec::new());
        for d in datagrams {
            let mut label = None;
            for p in soupbin::packets(d) {
                match p.unwrap() {
                    Packet::Debug(text) => {
                        label = Some(udp_label::parse(text).unwrap());
                        labels += 1;
                    }
                    Packet::SequencedData(m) => {
                        let seq = label.expect("a datagram's first message is labelled");
                        seqs.push((seq, m.to_vec()));
                        label = Some(seq + 1);
                    }
                    Packet::UnsequencedData(m) => other.push(m.to_vec()),
                    p => panic!("unexpected {p:?}"),
                }
            }
        }
        (seqs, labels, other)
    }

    #[test]
    fn sequenced_replies_are_labelled_only_where_the_numbering_breaks() {
        use crate::wire::soupbin;
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let SocketAddr::V4(addr) = a.local_addr().unwrap() else {
            unreachable!()
        };
        let mut port = OrderPort::Kernel(
            UdpPort::new(udp_socket(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0)).unwrap())
                .unwrap(),
        );
        let stop = Stop::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let (thread, mut tcp) =
            crate::net::tcp::spawn(listener, stop.clone(), Handoff::with_capacity(4), 4).unwrap();
        let packet = |seq: u64, kind: u8| {
            let mut b = [0u8; 69];
            let msg = [seq as u8; 66];
            let n = soupbin::write_packet(&mut b, kind, &msg).unwrap();
            b[..n].to_vec()
        };
        let mut replies = Replies::new();
        let mut sent = Vec::new();
        // 1..=10, an unsequenced reply, 11..=30, a jump to 35..=60: 55
        // packets of 69 bytes need three datagrams.
        for seq in (1..=30).chain(35..=60) {
            if seq == 11 {
                replies.send(Peer::Udp(addr), &packet(0, soupbin::kind::UNSEQUENCED_DATA));
            }
            let p = packet(seq, soupbin::kind::SEQUENCED_DATA);
            replies.send_sequenced(Peer::Udp(addr), seq, &p[3..]);
            sent.push((seq, p[3..].to_vec()));
        }
        assert_eq!(replies.deliver(&mut port, &mut tcp), 0);
        stop.set();
        thread.join().unwrap();

        let got = received(&a);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(|d| d.len() <= MAX_REPLY_DATAGRAM));
        let (seqs, labels, other) = numbered(&got);
        assert_eq!(seqs, sent);
        assert_eq!(other, vec![vec![0u8; 66]]);
        // One per datagram, one after the unsequenced reply, one at the jump.
        assert_eq!(labels, 3 + 2);
    }

    #[test]
    fn tcp_replies_reach_the_connection_through_the_woken_tcp_thread() {
        let stop = Stop::new();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (thread, mut tcp) =
            crate::net::tcp::spawn(listener, stop.clone(), Handoff::with_capacity(4), 4).unwrap();
        let mut client = std::net::TcpStream::connect(addr).unwrap();
        client
            .set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let mut port = OrderPort::Kernel(
            UdpPort::new(udp_socket(SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 0)).unwrap())
                .unwrap(),
        );
        let mut replies = Replies::new();
        // Connection 1 exists once the thread has accepted it: offer the
        // reply until it arrives (at most 5 s).
        let mut got = [0u8; 5];
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            replies.send(Peer::Tcp(1), b"hello");
            replies.deliver(&mut port, &mut tcp);
            if client.read_exact(&mut got).is_ok() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no reply over TCP");
        }
        assert_eq!(&got, b"hello");
        stop.set();
        thread.join().unwrap();
    }
}
