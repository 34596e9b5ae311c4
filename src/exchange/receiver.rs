//! The pipelined topology's receive thread: it reads the order port (a
//! `recvmmsg` batch from the kernel socket, or a pass over the AF_XDP RX
//! ring through the port's receive half) on a core of its own and hands
//! each datagram, with its receive time and source (and, over AF_XDP, the
//! source's MAC address, for the engine thread's replies), to the engine
//! thread through an SPSC ring. Buffers come back through a second ring
//! so the steady state allocates nothing.
//!
//! When nothing waits it either spins (`[runtime] rx_busy_poll`, for a core
//! of its own) or blocks in poll(2), optionally under SCHED_FIFO
//! (`rx_realtime`): then it can share a core with a busy thread (the load
//! generator in the two-core lab) and still run the moment a datagram
//! arrives, where a second busy-polling thread would get the core only in
//! scheduler slices of milliseconds.

use std::net::{SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::net::udp::{UdpPort, BATCH};
use crate::net::xdp::{XdpReceiver, XdpStats};
use crate::runtime::{make_current_thread_realtime, pin_current_thread, Handoff, Stop};

/// A datagram read by the receive thread.
pub(super) struct RxItem {
    pub src: SocketAddrV4,
    /// The source's MAC address (AF_XDP only: the engine thread's transmit
    /// half has no other way to learn it).
    pub mac: Option<[u8; 6]>,
    /// Receive time, raw clock ticks.
    pub t_rx: u64,
    pub bytes: Vec<u8>,
}

/// What the receive thread reads (made once per run: its size does not
/// matter).
#[allow(clippy::large_enum_variant)]
pub(super) enum RxSource {
    /// A clone of the order port's kernel socket (the engine thread sends
    /// through the original).
    Kernel(UdpSocket),
    /// The AF_XDP port's receive half (the engine thread keeps the
    /// transmit half).
    Xdp(XdpReceiver),
}

/// How the receive thread runs.
#[derive(Debug, Clone, Copy)]
pub(super) struct RxThreadConfig {
    pub core: usize,
    /// Spin when idle instead of blocking in poll(2).
    pub busy_poll: bool,
    /// SCHED_FIFO priority while blocking (0: normal scheduling).
    pub realtime: u8,
}

/// The receive thread's counters, returned when it ends.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct RxThreadStats {
    pub datagrams: u64,
    /// Times it found the ring to the engine thread full and waited.
    pub ring_full: u64,
    /// Kernel socket: datagrams longer than a buffer, dropped.
    pub truncated: u64,
    /// Datagrams dropped because the ring was full when the exchange
    /// stopped (the engine no longer takes them).
    pub dropped_at_stop: u64,
    /// AF_XDP: the receive half's counters.
    pub xdp: Option<XdpStats>,
}

/// The engine thread's end of the receive thread.
pub(super) struct Receiver {
    ring: Arc<Handoff<RxItem>>,
    spare: Arc<Handoff<Vec<u8>>>,
    thread: Option<JoinHandle<RxThreadStats>>,
}

/// Items the ring to the engine thread holds.
const RING: usize = 1 << 16;
/// How long a blocked receive thread sleeps before it checks `stop`.
const POLL_MS: i32 = 50;

impl Receiver {
    /// Starts the receive thread on `source`; it runs until `stop` is set.
    pub fn spawn(
        source: RxSource,
        cfg: RxThreadConfig,
        stop: Stop,
        clock: quanta::Clock,
    ) -> std::io::Result<Receiver> {
        let ring: Arc<Handoff<RxItem>> = Handoff::with_capacity(RING);
        let spare: Arc<Handoff<Vec<u8>>> = Handoff::with_capacity(RING);
        let mut out = Output {
            ring: ring.clone(),
            spare: spare.clone(),
            stop: stop.clone(),
            stats: RxThreadStats::default(),
        };
        let thread = std::thread::Builder::new()
            .name("tokex-rx".into())
            .spawn(move || {
                if let Err(e) = pin_current_thread(cfg.core) {
                    println!("runtime: receive thread not pinned ({e})");
                }
                if !cfg.busy_poll && cfg.realtime > 0 {
                    if let Err(e) = make_current_thread_realtime(cfg.realtime) {
                        println!("runtime: receive thread not real-time ({e})");
                    }
                }
                match source {
                    RxSource::Kernel(sock) => read_kernel(sock, cfg, &stop, &clock, &mut out),
                    RxSource::Xdp(rx) => read_xdp(rx, cfg, &stop, &clock, &mut out),
                }
                out.stats
            })?;
        Ok(Receiver {
            ring,
            spare,
            thread: Some(thread),
        })
    }

    /// The next datagram, if one waits.
    #[inline]
    pub fn pop(&self) -> Option<RxItem> {
        self.ring.pop()
    }

    /// Hands a datagram's buffer back for reuse.
    #[inline]
    pub fn recycle(&self, mut bytes: Vec<u8>) {
        bytes.clear();
        let _ = self.spare.push(bytes);
    }

    /// Waits for the thread (after `stop` was set) and returns its counters.
    pub fn join(&mut self) -> Option<RxThreadStats> {
        self.thread.take().and_then(|t| t.join().ok())
    }
}

/// The receive thread's side of the rings.
struct Output {
    ring: Arc<Handoff<RxItem>>,
    spare: Arc<Handoff<Vec<u8>>>,
    stop: Stop,
    stats: RxThreadStats,
}

impl Output {
    /// Copies one datagram into a spare buffer and hands it over, waiting
    /// while the ring is full (the engine thread is behind: dropping here
    /// would lose a datagram the kernel already took), unless the exchange
    /// is stopping: then the engine no longer takes any, and the datagram
    /// is counted and dropped (its client re-sends it to the next run).
    fn push(&mut self, src: SocketAddrV4, mac: Option<[u8; 6]>, t_rx: u64, payload: &[u8]) {
        let mut bytes = self.spare.pop().unwrap_or_default();
        bytes.extend_from_slice(payload);
        let mut item = RxItem {
            src,
            mac,
            t_rx,
            bytes,
        };
        let mut spins = 0u32;
        while let Err(back) = self.ring.push(item) {
            item = back;
            if spins == 0 {
                self.stats.ring_full += 1;
            }
            if self.stop.is_set() {
                self.stats.dropped_at_stop += 1;
                return;
            }
            spins += 1;
            if spins < 1_000 {
                std::hint::spin_loop();
            } else {
                // Under SCHED_FIFO a spin would hold the core from
                // everything else on it.
                std::thread::sleep(Duration::from_micros(20));
            }
        }
        self.stats.datagrams += 1;
    }
}

fn read_kernel(
    sock: UdpSocket,
    cfg: RxThreadConfig,
    stop: &Stop,
    clock: &quanta::Clock,
    out: &mut Output,
) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let mut port = match UdpPort::new(sock) {
        Ok(p) => p,
        Err(e) => {
            println!("runtime: receive thread stopped: {e}");
            return;
        }
    };
    while !stop.is_set() {
        // Every datagram of a batch is timed from when the batch was in
        // memory, as in run-to-completion.
        let mut t_batch = None;
        let n = port
            .recv(BATCH, |src, bytes| {
                let t_rx = *t_batch.get_or_insert_with(|| clock.raw());
                out.push(src, None, t_rx, bytes)
            })
            .unwrap_or(0);
        if n > 0 {
            continue;
        }
        if cfg.busy_poll {
            std::hint::spin_loop();
        } else {
            let mut fds = [PollFd::new(port.socket().as_fd(), PollFlags::POLLIN)];
            let _ = poll(&mut fds, PollTimeout::from(POLL_MS as u16));
        }
    }
    out.stats.truncated = port.truncated;
}

fn read_xdp(
    mut rx: XdpReceiver,
    cfg: RxThreadConfig,
    stop: &Stop,
    clock: &quanta::Clock,
    out: &mut Output,
) {
    while !stop.is_set() {
        let mut t_batch = None;
        let n = rx.recv_frames(BATCH, |frame| {
            let t_rx = *t_batch.get_or_insert_with(|| clock.raw());
            out.push(frame.src(), Some(frame.eth.src), t_rx, frame.payload)
        });
        if n > 0 {
            continue;
        }
        if cfg.busy_poll {
            std::hint::spin_loop();
        } else {
            rx.wait(POLL_MS);
        }
    }
    out.stats.xdp = Some(rx.stats());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Instant;

    fn v4(sock: &UdpSocket) -> SocketAddrV4 {
        match sock.local_addr().unwrap() {
            SocketAddr::V4(a) => a,
            SocketAddr::V6(_) => unreachable!("bound to an IPv4 address"),
        }
    }

    /// Pops `n` items (at most 5 s), recycling each buffer.
    fn take(r: &Receiver, n: usize) -> Vec<(SocketAddrV4, Option<[u8; 6]>, Vec<u8>)> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            match r.pop() {
                Some(item) => {
                    got.push((item.src, item.mac, item.bytes.clone()));
                    r.recycle(item.bytes);
                }
                None => std::thread::sleep(Duration::from_millis(1)),
            }
        }
        got
    }

    #[test]
    fn kernel_datagrams_reach_the_engine_thread_in_order_with_their_source_before_and_after_it_blocks(
    ) {
        let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let to = v4(&sock);
        let stop = Stop::new();
        let cfg = RxThreadConfig {
            core: 0,
            busy_poll: false,
            realtime: 0,
        };
        let mut r = Receiver::spawn(
            RxSource::Kernel(sock),
            cfg,
            stop.clone(),
            quanta::Clock::new(),
        )
        .unwrap();
        let client = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let from = v4(&client);
        let send = |range: std::ops::Range<u32>| {
            for i in range {
                client.send_to(&i.to_be_bytes(), to).unwrap();
            }
        };
        let expect = |range: std::ops::Range<u32>| -> Vec<_> {
            range
                .map(|i| (from, None, i.to_be_bytes().to_vec()))
                .collect()
        };
        send(0..100);
        assert_eq!(take(&r, 100), expect(0..100));
        // Idle long enough to be blocked in poll(2), then more: a reused
        // buffer carries only its new datagram.
        std::thread::sleep(Duration::from_millis(120));
        send(100..300);
        assert_eq!(take(&r, 200), expect(100..300));
        assert!(r.pop().is_none());
        stop.set();
        let stats = r.join().unwrap();
        assert_eq!(
            (stats.datagrams, stats.ring_full, stats.truncated),
            (300, 0, 0)
        );
        assert!(stats.xdp.is_none());
    }

    #[test]
    fn a_stopping_receive_thread_drops_what_a_full_ring_cannot_take_instead_of_waiting() {
        let stop = Stop::new();
        let mut out = Output {
            ring: Handoff::with_capacity(4),
            spare: Handoff::with_capacity(4),
            stop: stop.clone(),
            stats: RxThreadStats::default(),
        };
        let src = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 1);
        for _ in 0..4 {
            out.push(src, None, 0, b"x");
        }
        stop.set();
        let t0 = Instant::now();
        out.push(src, None, 0, b"late");
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(out.stats.dropped_at_stop, 1);
        assert_eq!(out.stats.datagrams, 4);
    }
}
