//! The exchange's I/O pieces: the order port (AF_XDP or kernel UDP), the
//! market-data output, replies held until the journal write, the journal
//! hook, the clock, and the pipelined topology's receive thread.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;
use socket2::{Domain, Protocol, Socket, Type};

use crate::config::{Config, TransportKind};
use crate::gateway::{JournalSink, Outbox, Peer};
use crate::journal::JournalWriter;
use crate::net::tcp::TcpPacket;
use crate::net::udp::{OrderPort, UdpPort};
use crate::net::xdp::XdpPort;
use crate::runtime::{pin_current_thread, Handoff, Stop};
use crate::types::Nanos;

/// A datagram read by the pipelined receive thread: source, receive time
/// (raw clock ticks), bytes.
pub(super) type RxItem = (SocketAddrV4, u64, Vec<u8>);

/// Journal writes go through the gateway's hook into the group-commit buffer.
pub(super) struct Journal(pub JournalWriter, pub u64);

impl JournalSink for Journal {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        if self.0.append(kind, now, payload).is_err() {
            self.1 += 1;
        }
    }
}

/// Replies held until the batch's journal write is done (an ack never
/// leaves before the order is durable), then sent.
pub(super) struct Replies {
    pub buf: Vec<u8>,
    pub items: Vec<(Peer, usize, usize)>,
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
    pub fn deliver(&mut self, udp: &mut OrderPort, tcp: &Handoff<TcpPacket>) -> u64 {
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
pub(super) struct MarketDataOut {
    pub kernel: UdpSocket,
    pub xdp: Option<(SocketAddrV4, u16)>,
    pub errors: u64,
}

impl MarketDataOut {
    pub fn send(&mut self, orders: &mut OrderPort, packet: &[u8]) {
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
    pub fn finish(&self, orders: &mut OrderPort) {
        if self.xdp.is_some() {
            orders.flush();
        }
    }
}

/// The order-entry port the config asks for: AF_XDP, or the kernel UDP
/// path (also when AF_XDP cannot start, with the reason).
pub(super) fn open_order_port(cfg: &Config) -> anyhow::Result<OrderPort> {
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
pub(super) struct Clock {
    pub clock: quanta::Clock,
    base_raw: u64,
    base_epoch: u64,
}

impl Clock {
    pub fn new() -> Clock {
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
    pub fn raw(&self) -> u64 {
        self.clock.raw()
    }

    #[inline]
    pub fn nanos(&self, raw: u64) -> Nanos {
        Nanos(self.base_epoch + self.clock.delta_as_nanos(self.base_raw, raw))
    }

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

/// The pipelined topology's receive thread: reads the kernel socket on its
/// own core and hands each datagram (source, receive time, bytes) to the
/// engine thread through the SPSC ring.
pub(super) fn spawn_receiver(
    sock: UdpSocket,
    ring: Arc<Handoff<RxItem>>,
    stop: Stop,
    core: usize,
    clock: quanta::Clock,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("tokex-rx".into())
        .spawn(move || {
            if let Err(e) = pin_current_thread(core) {
                println!("runtime: receive thread not pinned ({e})");
            }
            let mut buf = vec![0u8; 2048];
            while !stop.is_set() {
                match sock.recv_from(&mut buf) {
                    Ok((n, SocketAddr::V4(src))) => {
                        let mut item = (src, clock.raw(), buf[..n].to_vec());
                        while let Err(back) = ring.push(item) {
                            item = back;
                            std::hint::spin_loop();
                        }
                    }
                    Ok(_) => {}
                    Err(_) => std::hint::spin_loop(),
                }
            }
        })
}
