//! The AF_XDP order-entry transport (xsk-rs): one UMEM, one socket bound
//! to one queue of an interface (the exchange's; or the client's, for the
//! AF_XDP load generator), tokex's XDP program in front.
//!
//! Owns the frames. The UMEM is split once: the first `fill_ring` frames
//! are receive frames, owned by the receive half ([`XdpReceiver`]): always
//! either in the kernel's fill/RX rings, being read, or waiting to go back
//! to the fill ring (which they do as soon as the batch has been processed
//! and the ring shows room); the rest are transmit frames, owned by the
//! transmit half: kept on a free list, written by [`XdpPort::send_to`],
//! submitted by [`XdpPort::flush`] and reclaimed from the completion ring.
//! The two halves share no frame, so the receive half can run on a thread
//! of its own (the pipelined topology). Ring sizes are checked against
//! those counts at start-up. The kernel publishes how far it has read a
//! ring lazily, so a ring can look full for a moment: frames that do not
//! fit wait for the next call rather than being dropped. `need_wakeup` is
//! honoured on both rings: a syscall is made only when the kernel asks for
//! one.
//!
//! Received frames are checked as Ethernet/IPv4/UDP (`wire::ethernet`), the
//! sender's MAC address is learned for replies when the caller vouches for
//! it (`Neighbours`), and the UDP payload goes to the caller (with the local port it came to: the load generator's
//! sessions each have one); replies get rewritten Ethernet/IPv4/UDP headers with both
//! checksums. Market data can leave the same way, to the multicast group's
//! MAC address with TTL 1.
//!
//! With `src/net/xdp_prog.rs` and `src/journal/mapped.rs` the only place in
//! tokex with `unsafe`:
//! xsk-rs exposes the shared rings and UMEM as `unsafe` calls whose contract
//! (a frame is touched by one side at a time) the frame accounting above
//! keeps.
#![allow(unsafe_code)]

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::num::NonZeroU32;
use std::os::fd::AsRawFd;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use super::xdp_prog::{AttachMode, ProgCounters, XdpProgError, XdpProgram};
use crate::config::XdpConfig;
use crate::text::plural;
use crate::wire::ethernet::{write_udp_headers, Endpoints, UdpFrame, HEADERS_LEN};

/// Why AF_XDP could not start.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error(transparent)]
    Program(#[from] XdpProgError),
    #[error("bad [xdp] config: {0}")]
    Config(String),
    #[error("creating the UMEM: {0}")]
    Umem(String),
    #[error("creating the AF_XDP socket: {0}")]
    Socket(String),
    #[error("reading the MAC address of {0}: {1}")]
    Mac(String, std::io::Error),
}

/// Counters of the transport (and of the XDP program and the kernel).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XdpStats {
    pub rx_frames: u64,
    /// Frames that were not a well-formed IPv4/UDP datagram to our address.
    pub rx_bad: u64,
    /// Datagrams dropped for a wrong UDP checksum.
    pub rx_bad_checksum: u64,
    pub tx_frames: u64,
    /// Replies dropped: no transmit frame was free.
    pub tx_full: u64,
    /// Replies dropped: too large for one frame (or for an IPv4 datagram).
    pub tx_too_large: u64,
    /// Replies dropped: the peer's MAC address was never seen.
    pub tx_no_neighbour: u64,
    pub rx_wakeups: u64,
    pub tx_wakeups: u64,
    /// Times received frames waited for room on the fill ring, and
    /// queued frames for room on the TX ring.
    pub fill_waits: u64,
    pub tx_ring_waits: u64,
    /// Kernel: frames dropped for lack of fill-ring frames or RX-ring room.
    pub kernel_rx_dropped: u64,
    pub kernel_rx_ring_full: u64,
    pub kernel_fill_ring_empty: u64,
    pub prog: ProgCounters,
}

impl fmt::Display for XdpStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "rx frames {}, bad {}, bad UDP checksum {}, tx frames {}, no-frame drops {}, too-large drops {}, unknown-peer drops {}, rx wakeups {}, tx wakeups {}, fill-ring waits {}, tx-ring waits {}; kernel: rx dropped {}, rx ring full {}, fill ring empty {}; XDP program: redirected {}, passed {}",
            self.rx_frames,
            self.rx_bad,
            self.rx_bad_checksum,
            self.tx_frames,
            self.tx_full,
            self.tx_too_large,
            self.tx_no_neighbour,
            self.rx_wakeups,
            self.tx_wakeups,
            self.fill_waits,
            self.tx_ring_waits,
            self.kernel_rx_dropped,
            self.kernel_rx_ring_full,
            self.kernel_fill_ring_empty,
            self.prog.redirected,
            self.prog.passed
        )?;
        if self.rx_bad_checksum > 0 {
            // The usual cause, and its cures.
            write!(f, " (datagrams from a veth peer with checksum offload carry partial checksums: `ethtool -K IF tx off` on the peer, as `tokex lab up` does, or `[xdp] verify_udp_checksum = false`)")?;
        }
        Ok(())
    }
}

/// The MAC addresses of the peers the caller vouches for, by address and
/// port: at the exchange, those whose datagram logged a session in, until
/// the session ends; at a client, the exchange. Nobody else's frames teach
/// an address, so a forged frame claiming a logged-in client's address and
/// port does not take its replies, nor one from another port of its host.
/// Replies to a peer not known go another way (the exchange's kernel
/// socket, whose ARP finds it). A few dozen sessions at most: a linear
/// scan beats hashing; the table is cleared should it fill up all the
/// same (its peers then get their replies through the kernel until they
/// log in again).
#[derive(Debug, Default)]
struct Neighbours(Vec<(SocketAddrV4, [u8; 6])>);

impl Neighbours {
    const MAX: usize = 1024;

    fn learn(&mut self, peer: SocketAddrV4, mac: [u8; 6]) {
        match self.0.iter_mut().find(|(p, _)| *p == peer) {
            Some(entry) => entry.1 = mac,
            None => {
                if self.0.len() == Self::MAX {
                    self.0.clear();
                }
                self.0.push((peer, mac));
            }
        }
    }

    fn forget(&mut self, peer: SocketAddrV4) {
        self.0.retain(|(p, _)| *p != peer);
    }

    fn get(&self, peer: SocketAddrV4) -> Option<[u8; 6]> {
        self.0.iter().find(|(p, _)| *p == peer).map(|&(_, m)| m)
    }
}

/// The multicast MAC address of an IPv4 group (RFC 1112).
pub fn multicast_mac(group: Ipv4Addr) -> [u8; 6] {
    let o = group.octets();
    [0x01, 0x00, 0x5e, o[1] & 0x7f, o[2], o[3]]
}

/// An AF_XDP socket receiving the gateway's datagrams and sending replies:
/// a receive half and a transmit half over one UMEM. The receive half can
/// be taken out ([`XdpPort::take_receiver`]) and moved to a thread of its
/// own (the pipelined topology); the port then only sends.
pub struct XdpPort {
    // Field order is drop order: the socket's queues (each half holds a
    // handle on the socket and the UMEM) go first, the program is
    // detached last.
    rx: Option<XdpReceiver>,
    tx: XdpSender,
    prog: XdpProgram,
    /// Numbers for the start-up line and the report.
    ports: Vec<u16>,
    zero_copy: bool,
    rx_frames: u32,
    interface: String,
    queue: u32,
    /// Counters of a receive half that has been taken out, once it is
    /// handed back ([`XdpPort::absorb_receiver`]).
    rx_stats: XdpStats,
}

/// The receive half: the RX and fill rings and the receive frames. The
/// frames are always either in the kernel's fill/RX rings, being read by
/// [`XdpReceiver::recv_frames`], or waiting to go back to the fill ring.
pub struct XdpReceiver {
    rx: RxQueue,
    fill: FillQueue,
    umem: Umem,
    /// Scratch descriptors for a receive batch.
    batch: Vec<FrameDesc>,
    /// Received frames waiting for room on the fill ring.
    unfilled: Vec<FrameDesc>,
    local: Ipv4Addr,
    ports: Vec<u16>,
    verify_checksums: bool,
    /// Only the receive counters are kept here.
    stats: XdpStats,
}

/// The transmit half: the TX and completion rings, the transmit frames and
/// the peers' MAC addresses.
struct XdpSender {
    tx: TxQueue,
    completions: CompQueue,
    umem: Umem,
    /// Scratch descriptors for completions; free and queued frames.
    done: Vec<FrameDesc>,
    free: Vec<FrameDesc>,
    pending: Vec<FrameDesc>,
    /// The address replies come from.
    local: SocketAddrV4,
    local_mac: [u8; 6],
    neighbours: Neighbours,
    ident: u16,
    /// Slots of the TX ring.
    tx_ring: u32,
    /// Kicks one flush may make: in copy mode the kernel sends at most 32
    /// frames a kick (its `TX_BATCH_SIZE`) and leaves the rest on the ring,
    /// so a full ring takes `tx_ring / 32` of them; a zero-copy driver
    /// sends on its own after one.
    max_kicks: u32,
    /// Only the transmit counters are kept here.
    stats: XdpStats,
}

// Both halves are `Send` by their fields (xsk-rs marks its rings and UMEM
// handles so): the compiler checks it, no `unsafe impl` vouches for it.
// They share no frame (the UMEM's receive and transmit frames are
// disjoint), so the two halves can run on two threads at once.
const _: () = {
    const fn send<T: Send>() {}
    send::<XdpPort>();
    send::<XdpReceiver>();
};

/// The frames the kernel sends per kick in copy mode (`TX_BATCH_SIZE` in
/// net/xdp/xsk.c), after which it leaves the rest on the TX ring.
const COPY_MODE_TX_BATCH: u32 = 32;

fn queue_size(n: u32, what: &str) -> Result<QueueSize, XdpError> {
    QueueSize::new(n).map_err(|e| XdpError::Config(format!("{what} = {n}: {e}")))
}

fn read_mac(interface: &str) -> Result<[u8; 6], XdpError> {
    let path = format!("/sys/class/net/{interface}/address");
    let text = std::fs::read_to_string(&path).map_err(|e| XdpError::Mac(interface.into(), e))?;
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(|| {
                XdpError::Mac(
                    interface.into(),
                    std::io::Error::other(format!("cannot parse {text:?}")),
                )
            })?;
    }
    Ok(mac)
}

impl XdpPort {
    /// Attaches the XDP program to `interface` for UDP port `local.port()`
    /// and binds an AF_XDP socket to the configured queue: zero-copy if
    /// asked for and the driver can, copy mode otherwise.
    pub fn open(
        interface: &str,
        local: SocketAddrV4,
        cfg: &XdpConfig,
    ) -> Result<XdpPort, XdpError> {
        XdpPort::open_ports(interface, *local.ip(), &[local.port()], cfg)
    }

    /// As [`XdpPort::open`], for datagrams to any of `ports` (at least one;
    /// the first is the source port of [`XdpPort::send_to`]).
    pub fn open_ports(
        interface: &str,
        ip: Ipv4Addr,
        ports: &[u16],
        cfg: &XdpConfig,
    ) -> Result<XdpPort, XdpError> {
        let Some(&first) = ports.first() else {
            return Err(XdpError::Config("no UDP port to serve".into()));
        };
        let local = SocketAddrV4::new(ip, first);
        let rx_frames = cfg.fill_ring;
        let tx_frames = cfg.frame_count.saturating_sub(rx_frames);
        if rx_frames == 0 || tx_frames == 0 {
            return Err(XdpError::Config(format!(
                "frame_count ({}) must exceed fill_ring ({})",
                cfg.frame_count, cfg.fill_ring
            )));
        }
        if cfg.rx_ring < rx_frames || cfg.tx_ring < tx_frames || cfg.completion_ring < tx_frames {
            return Err(XdpError::Config(format!(
                "rx_ring ({}) must hold the {}, tx_ring ({}) and completion_ring ({}) the {}",
                cfg.rx_ring,
                plural(rx_frames, "receive frame", "receive frames"),
                cfg.tx_ring,
                cfg.completion_ring,
                plural(tx_frames, "transmit frame", "transmit frames")
            )));
        }
        let local_mac = read_mac(interface)?;
        // Attached only once its socket is bound and in its map: a live
        // exchange on this queue makes the bind fail (EBUSY) before its
        // program is touched.
        let mut prog = XdpProgram::load(interface, ip, ports)?;
        let umem_config =
            UmemConfig::builder()
                .frame_size(FrameSize::new(cfg.frame_size).map_err(|e| {
                    XdpError::Config(format!("frame_size = {}: {e}", cfg.frame_size))
                })?)
                .fill_queue_size(queue_size(cfg.fill_ring, "fill_ring")?)
                .comp_queue_size(queue_size(cfg.completion_ring, "completion_ring")?)
                .build()
                .map_err(|e| XdpError::Config(e.to_string()))?;
        let frames = NonZeroU32::new(cfg.frame_count)
            .ok_or_else(|| XdpError::Config("frame_count = 0".into()))?;
        let if_name: Interface = interface
            .parse()
            .map_err(|_| XdpError::Config(format!("interface name {interface:?}")))?;

        // Zero-copy first (if asked for), then copy mode; need_wakeup always.
        let attempts: &[(BindFlags, bool)] = if cfg.zero_copy {
            &[
                (BindFlags::XDP_ZEROCOPY, true),
                (BindFlags::XDP_COPY, false),
            ]
        } else {
            &[(BindFlags::XDP_COPY, false)]
        };
        let mut last_err = String::new();
        for &(mode_flag, zero_copy) in attempts {
            let (umem, descs) =
                Umem::new(umem_config, frames, false).map_err(|e| XdpError::Umem(e.to_string()))?;
            let socket_config = SocketConfig::builder()
                .rx_queue_size(queue_size(cfg.rx_ring, "rx_ring")?)
                .tx_queue_size(queue_size(cfg.tx_ring, "tx_ring")?)
                .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
                .bind_flags(mode_flag | BindFlags::XDP_USE_NEED_WAKEUP)
                .build();
            // SAFETY: the UMEM is new and not shared with another socket.
            let created = unsafe { Socket::new(socket_config, &umem, &if_name, cfg.queue) };
            let (tx, rx, rings) = match created {
                Ok(v) => v,
                Err(e) => {
                    // libxdp returns the errno, which xsk-rs's error drops;
                    // the OS error says it (EBUSY: the queue is taken).
                    last_err = format!("{e} ({})", std::io::Error::last_os_error());
                    continue;
                }
            };
            let (mut fill, completions) =
                rings.ok_or_else(|| XdpError::Socket("no fill/completion rings".into()))?;
            prog.insert_socket(cfg.queue, rx.fd().as_raw_fd())?;
            let (rx_descs, tx_descs) = descs.split_at(rx_frames as usize);
            // SAFETY: the receive frames are new and owned by no one; the
            // fill ring holds `fill_ring` = `rx_frames` entries, so all fit.
            let given = unsafe { fill.produce(rx_descs) };
            if given != rx_descs.len() {
                return Err(XdpError::Socket(format!(
                    "fill ring took {given} of {}",
                    plural(rx_descs.len(), "frame", "frames")
                )));
            }
            prog.attach(cfg.mode)?;
            let blank = FrameDesc::default();
            return Ok(XdpPort {
                rx: Some(XdpReceiver {
                    rx,
                    fill,
                    umem: umem.clone(),
                    batch: vec![blank; 64],
                    unfilled: Vec::with_capacity(rx_descs.len()),
                    local: ip,
                    ports: ports.to_vec(),
                    verify_checksums: cfg.verify_udp_checksum,
                    stats: XdpStats::default(),
                }),
                tx: XdpSender {
                    tx,
                    completions,
                    umem,
                    done: vec![blank; tx_descs.len()],
                    free: tx_descs.to_vec(),
                    pending: Vec::with_capacity(tx_descs.len()),
                    local,
                    local_mac,
                    neighbours: Neighbours::default(),
                    ident: 0,
                    tx_ring: cfg.tx_ring,
                    max_kicks: if zero_copy {
                        1
                    } else {
                        cfg.tx_ring.div_ceil(COPY_MODE_TX_BATCH) + 1
                    },
                    stats: XdpStats::default(),
                },
                prog,
                ports: ports.to_vec(),
                zero_copy,
                rx_frames,
                interface: interface.into(),
                queue: cfg.queue,
                rx_stats: XdpStats::default(),
            });
        }
        Err(XdpError::Socket(last_err))
    }

    /// One line for the start-up log: modes in use and sizes.
    pub fn describe(&self) -> String {
        format!(
            "AF_XDP on {} queue {} ({}:{}): {} XDP, {} mode, need_wakeup on; {}",
            self.interface,
            self.queue,
            self.tx.local.ip(),
            self.ports
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(","),
            self.prog.mode().name(),
            if self.zero_copy { "zero-copy" } else { "copy" },
            frames(self.rx_frames as usize, self.tx.done.len()),
        )
    }

    pub fn attach_mode(&self) -> AttachMode {
        self.prog.mode()
    }

    pub fn zero_copy(&self) -> bool {
        self.zero_copy
    }

    /// Receives up to `max` (at most 64) frames and calls `f(source,
    /// payload)` for each well-formed UDP datagram to our address; returns
    /// how many frames were taken. The frames go back to the fill ring
    /// before returning. `f` says whether it vouches for the frame's
    /// sender: only then is its MAC address learned for replies
    /// ([`Neighbours`]).
    pub fn recv(&mut self, max: usize, mut f: impl FnMut(SocketAddrV4, &[u8]) -> bool) -> usize {
        self.recv_at(max, |src, _, payload| f(src, payload))
    }

    /// As [`XdpPort::recv`], also naming the local port each datagram came
    /// to: `f(source, local port, payload)`. Takes nothing once the
    /// receive half has been taken out.
    pub fn recv_at(
        &mut self,
        max: usize,
        mut f: impl FnMut(SocketAddrV4, u16, &[u8]) -> bool,
    ) -> usize {
        let Some(rx) = &mut self.rx else {
            return 0;
        };
        let neighbours = &mut self.tx.neighbours;
        rx.recv_frames(max, |frame| {
            let src = frame.src();
            if f(src, frame.dst().port(), frame.payload) {
                neighbours.learn(src, frame.eth.src);
            }
        })
    }

    /// Takes the receive half out, to run on a thread of its own; the port
    /// then only sends. Replies go to peers whose MAC address the port has
    /// been told ([`XdpPort::learn`]). None if it was taken already.
    pub fn take_receiver(&mut self) -> Option<XdpReceiver> {
        self.rx.take()
    }

    /// Takes back the counters of a receive half that was taken out (its
    /// thread has finished), for [`XdpPort::stats`].
    pub fn absorb_receiver(&mut self, stats: XdpStats) {
        self.rx_stats = stats;
    }

    /// Records the MAC address of `peer`, vouched for (learned from its
    /// frame by a receive half that was taken out; see [`XdpPort::recv`]).
    #[inline]
    pub fn learn(&mut self, peer: SocketAddrV4, mac: [u8; 6]) {
        self.tx.neighbours.learn(peer, mac);
    }

    /// Forgets the MAC address of `peer` (its session ended).
    pub fn forget(&mut self, peer: SocketAddrV4) {
        self.tx.neighbours.forget(peer);
    }

    /// Queues a reply datagram to `dst` (sent by [`XdpPort::flush`]).
    /// Returns false if it was dropped (and counted).
    pub fn send_to(&mut self, dst: SocketAddrV4, payload: &[u8]) -> bool {
        self.send_from(self.tx.local.port(), dst, payload)
    }

    /// As [`XdpPort::send_to`], from another local port.
    pub fn send_from(&mut self, src_port: u16, dst: SocketAddrV4, payload: &[u8]) -> bool {
        let sent = self.tx.send_known(src_port, dst, payload);
        if sent.is_none() {
            self.tx.stats.tx_no_neighbour += 1;
        }
        sent.unwrap_or(false)
    }

    /// As [`XdpPort::send_to`] when `dst`'s MAC address is known: `None`
    /// (nothing queued, nothing counted) when no frame from its IP address
    /// has been seen, for the caller to send it another way.
    #[inline]
    pub fn send_to_known(&mut self, dst: SocketAddrV4, payload: &[u8]) -> Option<bool> {
        self.tx.send_known(self.tx.local.port(), dst, payload)
    }

    /// Whether a frame from `ip` has taught us its MAC address (nothing can
    /// be sent to it before).
    pub fn knows(&self, peer: SocketAddrV4) -> bool {
        self.tx.neighbours.get(peer).is_some()
    }

    /// Queues a market-data datagram from `src_port` to a multicast
    /// `group` (TTL 1, the group's MAC address).
    pub fn send_multicast(&mut self, group: SocketAddrV4, src_port: u16, payload: &[u8]) -> bool {
        let ep = Endpoints {
            src_mac: self.tx.local_mac,
            dst_mac: multicast_mac(*group.ip()),
            src: SocketAddrV4::new(*self.tx.local.ip(), src_port),
            dst: group,
        };
        self.tx.queue_frame(&ep, 1, payload)
    }

    /// Submits the queued frames (waking the kernel only if it asks) and
    /// takes back the frames it has finished sending.
    pub fn flush(&mut self) {
        self.tx.flush();
    }

    /// Transport, program and kernel counters (the receive counters of a
    /// receive half taken out once it has been handed back).
    pub fn stats(&self) -> XdpStats {
        let mut s = self.tx.stats;
        let rx = self.rx.as_ref().map_or(&self.rx_stats, |r| &r.stats);
        s.rx_frames = rx.rx_frames;
        s.rx_bad = rx.rx_bad;
        s.rx_bad_checksum = rx.rx_bad_checksum;
        s.rx_wakeups = rx.rx_wakeups;
        s.fill_waits = rx.fill_waits;
        if let Ok(k) = self.tx.tx.fd().xdp_statistics() {
            s.kernel_rx_dropped = k.rx_dropped();
            s.kernel_rx_ring_full = k.rx_ring_full();
            s.kernel_fill_ring_empty = k.rx_fill_ring_empty_descs();
        }
        s.prog = self.prog.counters();
        s
    }
}

impl XdpReceiver {
    /// Receives up to `max` (at most 64) frames and calls `f` for each
    /// well-formed UDP datagram to our address and ports (with a correct
    /// checksum, if checked); returns how many frames were taken. The
    /// frames go back to the fill ring before returning, and the kernel is
    /// woken if it asks to be (a zero-copy driver that ran out of fill
    /// frames waits for it, also in the middle of a burst).
    pub fn recv_frames(&mut self, max: usize, mut f: impl FnMut(&UdpFrame<'_>)) -> usize {
        let max = max.min(self.batch.len());
        // SAFETY: the scratch descriptors are overwritten with frames the
        // kernel has finished writing.
        let n = unsafe { self.rx.consume(&mut self.batch[..max]) };
        if n == 0 {
            self.refill_and_wake();
            return 0;
        }
        for desc in &self.batch[..n] {
            // SAFETY: `desc` is a receive frame of this UMEM that the kernel
            // handed to us; it is not given back (below) until `f` returns.
            let data = unsafe { self.umem.data(desc) };
            match UdpFrame::parse(data.contents()) {
                Ok(frame)
                    if *frame.dst().ip() == self.local
                        && self.ports.contains(&frame.dst().port()) =>
                {
                    if self.verify_checksums && !frame.checksum_ok() {
                        self.stats.rx_bad_checksum += 1;
                        continue;
                    }
                    f(&frame);
                }
                _ => self.stats.rx_bad += 1,
            }
        }
        self.stats.rx_frames += n as u64;
        // No reference into these frames is left: back to the fill ring.
        self.unfilled.extend_from_slice(&self.batch[..n]);
        self.refill_and_wake();
        n
    }

    /// [`XdpReceiver::refill`], then a wake-up if the kernel asks for one.
    fn refill_and_wake(&mut self) {
        self.refill();
        if self.fill.needs_wakeup() {
            self.stats.rx_wakeups += 1;
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
    }

    /// Blocks in poll(2) until frames wait on the RX ring or `timeout_ms`
    /// passes (the poll also wakes the kernel to fill the RX ring).
    pub fn wait(&mut self, timeout_ms: i32) {
        self.refill();
        let _ = self.fill.wakeup(self.rx.fd_mut(), timeout_ms);
    }

    /// The receive counters.
    pub fn stats(&self) -> XdpStats {
        self.stats
    }

    /// Gives the received frames back to the fill ring, as many as it has
    /// room for. The kernel publishes its progress on the fill ring lazily,
    /// so the ring can look full although every frame in it was already
    /// used; what does not fit waits here for the next call.
    fn refill(&mut self) {
        if self.unfilled.is_empty() {
            return;
        }
        let room =
            (self.fill.nb_free(self.unfilled.len() as u32) as usize).min(self.unfilled.len());
        if room == 0 {
            self.stats.fill_waits += 1;
            return;
        }
        // SAFETY: these are receive frames the kernel handed to us and that
        // nothing refers to any more.
        let given = unsafe { self.fill.produce(&self.unfilled[..room]) };
        self.unfilled.drain(..given);
        if !self.unfilled.is_empty() {
            self.stats.fill_waits += 1;
        }
    }
}

impl XdpSender {
    fn send_known(&mut self, src_port: u16, dst: SocketAddrV4, payload: &[u8]) -> Option<bool> {
        let mac = self.neighbours.get(dst)?;
        let ep = Endpoints {
            src_mac: self.local_mac,
            dst_mac: mac,
            src: SocketAddrV4::new(*self.local.ip(), src_port),
            dst,
        };
        Some(self.queue_frame(&ep, 64, payload))
    }

    fn queue_frame(&mut self, ep: &Endpoints, ttl: u8, payload: &[u8]) -> bool {
        if self.free.is_empty() {
            self.flush();
        }
        let Some(mut desc) = self.free.pop() else {
            self.stats.tx_full += 1;
            return false;
        };
        let total = HEADERS_LEN + payload.len();
        self.ident = self.ident.wrapping_add(1);
        // SAFETY: `desc` is a transmit frame from the free list: neither the
        // kernel nor another descriptor refers to it until it is submitted.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let fits = {
            let mut cursor = data.cursor();
            let room = cursor.buf_len();
            cursor.set_pos(total.min(room));
            total <= room
        };
        if !fits {
            self.free.push(desc);
            self.stats.tx_too_large += 1;
            return false;
        }
        let buf = data.contents_mut();
        buf[HEADERS_LEN..total].copy_from_slice(payload);
        if write_udp_headers(buf, ep, ttl, self.ident, payload.len()).is_err() {
            self.free.push(desc);
            self.stats.tx_too_large += 1;
            return false;
        }
        self.pending.push(desc);
        true
    }

    fn flush(&mut self) {
        if !self.pending.is_empty() {
            // As with the fill ring, the TX ring may look fuller than it is;
            // what does not fit stays pending for the next flush.
            let room =
                (self.tx.nb_free(self.pending.len() as u32) as usize).min(self.pending.len());
            let sent = if room > 0 {
                // SAFETY: the pending frames were written above and are not
                // touched again until the completion ring returns them.
                unsafe { self.tx.produce(&self.pending[..room]) }
            } else {
                0
            };
            self.stats.tx_frames += sent as u64;
            self.pending.drain(..sent);
            if !self.pending.is_empty() {
                self.stats.tx_ring_waits += 1;
            }
        }
        // A kick only while frames wait on the TX ring (just produced, or
        // left by an earlier kick), not on every flush. Copy mode sends 32
        // frames a kick: it is kicked again while the ring holds any, or
        // the rest of a burst would wait for the next flush (the 1 ms
        // timer when the exchange is idle).
        self.reclaim();
        let mut kicks = 0;
        let mut free = self.tx.nb_free_exact();
        while self.in_flight() > 0 && kicks < self.max_kicks && self.tx.needs_wakeup() {
            self.stats.tx_wakeups += 1;
            let _ = self.tx.wakeup();
            self.reclaim();
            kicks += 1;
            // Stop when the ring is empty, or when a kick took nothing from
            // it (the device busy: the next flush tries again).
            let now_free = self.tx.nb_free_exact();
            if now_free >= self.tx_ring || now_free == free {
                break;
            }
            free = now_free;
        }
    }

    /// Frames handed to the kernel and not yet back from it.
    fn in_flight(&self) -> usize {
        self.done.len() - self.free.len() - self.pending.len()
    }

    /// Takes back the frames the kernel has finished sending.
    fn reclaim(&mut self) {
        // SAFETY: the scratch descriptors are overwritten with frames the
        // kernel has finished sending; they return to the free list.
        let n = unsafe { self.completions.consume(&mut self.done) };
        self.free.extend_from_slice(&self.done[..n]);
    }
}

/// The UMEM's split, for [`XdpPort::describe`]: `2048 receive frames +
/// 2048 transmit frames`, a count of one in the singular.
fn frames(rx: usize, tx: usize) -> String {
    format!(
        "{} + {}",
        plural(rx, "receive frame", "receive frames"),
        plural(tx, "transmit frame", "transmit frames")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_split_says_one_frame_in_the_singular() {
        assert_eq!(
            frames(2048, 2048),
            "2048 receive frames + 2048 transmit frames"
        );
        assert_eq!(frames(1, 3), "1 receive frame + 3 transmit frames");
    }

    #[test]
    fn multicast_groups_map_to_their_mac_addresses() {
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 198, 0, 1)),
            [0x01, 0x00, 0x5e, 0x46, 0x00, 0x01]
        );
        // The top bit of the second octet is not part of the MAC address.
        assert_eq!(
            multicast_mac(Ipv4Addr::new(239, 254, 1, 2)),
            [0x01, 0x00, 0x5e, 0x7e, 0x01, 0x02]
        );
    }

    #[test]
    fn only_vouched_peers_are_known_each_by_address_and_port_until_forgotten() {
        let mut n = Neighbours::default();
        let (client, forger) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 66]);
        let a = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 4000);
        let same_host = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 4001);
        assert_eq!(n.get(a), None);
        n.learn(a, client);
        // A login vouched for from another port of the host (the forger's
        // own session) changes nothing for `a`.
        n.learn(same_host, forger);
        assert_eq!(n.get(a), Some(client));
        assert_eq!(n.get(same_host), Some(forger));
        // A later login of `a` from another address moves it.
        n.learn(a, [2, 0, 0, 0, 0, 9]);
        assert_eq!(n.get(a), Some([2, 0, 0, 0, 0, 9]));
        // Its session ends: forgotten, the other port's kept.
        n.forget(a);
        assert_eq!(n.get(a), None);
        assert_eq!(n.get(same_host), Some(forger));
    }

    #[test]
    fn a_full_table_is_cleared_rather_than_grown() {
        let mut n = Neighbours::default();
        for i in 0..3 * Neighbours::MAX as u32 {
            n.learn(
                SocketAddrV4::new(Ipv4Addr::from(0x0a00_0000 + i), 1),
                [0; 6],
            );
            assert!(n.0.len() <= Neighbours::MAX);
        }
    }
}
