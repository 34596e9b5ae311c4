//! The kernel UDP order-entry transport, and [`OrderPort`]: the one
//! interface the exchange loop uses for either transport.
//!
//! The kernel path is the baseline AF_XDP is measured against and the
//! fallback where AF_XDP cannot run: a non-blocking socket read with
//! `recvmmsg` (up to 64 datagrams per system call) and written with
//! `sendmmsg` (a batch's replies in one call), through `nix`'s safe
//! wrappers.

use std::io::{self, IoSlice, IoSliceMut};
use std::net::{SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;

use nix::sys::socket::sockopt::{RcvBuf, RcvBufForce};
use nix::sys::socket::{self, MsgFlags, MultiHeaders, SockaddrIn};

use super::xdp::{XdpPort, XdpStats};
use crate::text::plural;

/// Datagrams read or written per system call at most.
pub const BATCH: usize = 64;
const DATAGRAM: usize = 2048;
/// Receive buffer asked for, bytes.
const RECEIVE_BUFFER: usize = 4 << 20;

/// A non-blocking kernel UDP socket with batched reads and writes.
pub struct UdpPort {
    sock: UdpSocket,
    rx_bufs: Vec<[u8; DATAGRAM]>,
    tx_buf: Vec<u8>,
    tx: Vec<(SocketAddrV4, usize, usize)>,
    tx_addrs: Vec<Option<SockaddrIn>>,
    rx_headers: MultiHeaders<SockaddrIn>,
    tx_headers: MultiHeaders<SockaddrIn>,
    /// Datagrams sent; datagrams refused by the kernel or lost to a full
    /// socket buffer.
    pub sent: u64,
    pub send_errors: u64,
    /// Datagrams received (handed on), and those longer than a buffer,
    /// dropped.
    pub received: u64,
    pub truncated: u64,
    /// recvmmsg / sendmmsg calls made.
    pub rx_calls: u64,
    pub tx_calls: u64,
}

impl UdpPort {
    /// Makes `sock` non-blocking with a deep receive buffer: a burst must
    /// wait in the socket, not be dropped, while the owner is busy (the
    /// default, about 200 KB, is some 100 datagrams of packed orders: under
    /// 2 ms at 1 M orders/s, where AF_XDP's 2,048-frame RX ring held them).
    /// Beyond net.core.rmem_max only with CAP_NET_ADMIN (SO_RCVBUFFORCE);
    /// the default size is kept otherwise.
    pub fn new(sock: UdpSocket) -> io::Result<UdpPort> {
        sock.set_nonblocking(true)?;
        let _ = socket::setsockopt(&sock, RcvBufForce, &RECEIVE_BUFFER)
            .or_else(|_| socket::setsockopt(&sock, RcvBuf, &RECEIVE_BUFFER));
        Ok(UdpPort {
            sock,
            rx_bufs: vec![[0u8; DATAGRAM]; BATCH],
            tx_buf: Vec::with_capacity(BATCH * DATAGRAM),
            tx: Vec::with_capacity(BATCH),
            tx_addrs: Vec::with_capacity(BATCH),
            rx_headers: MultiHeaders::preallocate(BATCH, None),
            tx_headers: MultiHeaders::preallocate(BATCH, None),
            sent: 0,
            send_errors: 0,
            received: 0,
            truncated: 0,
            rx_calls: 0,
            tx_calls: 0,
        })
    }

    pub fn socket(&self) -> &UdpSocket {
        &self.sock
    }

    /// Reads up to `max` datagrams with one `recvmmsg` and calls `f(source,
    /// payload)` for each; returns how many were read (0 when none wait).
    /// A datagram longer than the buffer is dropped whole and counted in
    /// `truncated`: its first bytes could parse as packets of their own.
    pub fn recv(
        &mut self,
        max: usize,
        mut f: impl FnMut(SocketAddrV4, &[u8]),
    ) -> io::Result<usize> {
        let max = max.clamp(1, BATCH);
        // (buffer index, source, length) of each datagram to hand over.
        let mut got = [(0usize, SocketAddrV4::new(0.into(), 0), 0usize); BATCH];
        let mut n = 0;
        {
            // The I/O vectors live on the stack: no allocation per call.
            let mut bufs = self.rx_bufs.iter_mut();
            let mut iovs: [[IoSliceMut<'_>; 1]; BATCH] = std::array::from_fn(|_| {
                [IoSliceMut::new(
                    &mut bufs.next().expect("BATCH buffers")[..],
                )]
            });
            self.rx_calls += 1;
            let msgs = match socket::recvmmsg(
                self.sock.as_raw_fd(),
                &mut self.rx_headers,
                iovs[..max].iter_mut(),
                MsgFlags::MSG_DONTWAIT,
                None,
            ) {
                Ok(m) => m,
                Err(nix::errno::Errno::EAGAIN | nix::errno::Errno::EINTR) => return Ok(0),
                Err(e) => return Err(e.into()),
            };
            // Message `i` was read into buffer `i`: the index travels with
            // the entry, so a skipped message cannot shift the pairing.
            for (i, m) in msgs.enumerate() {
                if m.flags.contains(MsgFlags::MSG_TRUNC) {
                    self.truncated += 1;
                    continue;
                }
                // An IPv4 UDP socket always reports the source; without
                // one there is nobody to answer.
                if let Some(a) = m.address {
                    got[n] = (i, SocketAddrV4::new(a.ip(), a.port()), m.bytes);
                    n += 1;
                }
            }
        }
        for &(i, src, len) in &got[..n] {
            f(src, &self.rx_bufs[i][..len]);
        }
        self.received += n as u64;
        Ok(n)
    }

    /// Queues a datagram; [`UdpPort::flush`] sends the queue.
    pub fn send_to(&mut self, dst: SocketAddrV4, payload: &[u8]) -> bool {
        if self.tx.len() == BATCH {
            self.flush();
        }
        let start = self.tx_buf.len();
        self.tx_buf.extend_from_slice(payload);
        self.tx.push((dst, start, payload.len()));
        true
    }

    /// Sends every queued datagram, `BATCH` per `sendmmsg`. A datagram the
    /// kernel refuses (its destination: EACCES, EPERM from a firewall rule,
    /// ENETUNREACH...) is counted in `send_errors` and skipped, and the rest
    /// of the batch still goes: those are other sessions' acks. A full
    /// socket buffer is retried once, then what is left is counted as lost:
    /// the exchange loop must not spin on a slow NIC.
    pub fn flush(&mut self) {
        if self.tx.is_empty() {
            return;
        }
        let n = self.tx.len();
        self.tx_addrs.clear();
        self.tx_addrs
            .extend(self.tx.iter().map(|&(a, _, _)| Some(SockaddrIn::from(a))));
        let (tx, buf) = (&self.tx, &self.tx_buf);
        let iovs: [[IoSlice<'_>; 1]; BATCH] = std::array::from_fn(|i| {
            [IoSlice::new(
                tx.get(i).map_or(&[][..], |&(_, s, l)| &buf[s..s + l]),
            )]
        });
        let iovs = &iovs[..n];
        // Datagrams attempted (sent or given up on); each pass of the loop
        // advances it or spends the one retry, so it ends.
        let mut done = 0;
        let mut retried = false;
        while done < n {
            self.tx_calls += 1;
            // sendmmsg stops at the first datagram that fails: it returns
            // the count before it, or that datagram's error if none went.
            let failure = match socket::sendmmsg(
                self.sock.as_raw_fd(),
                &mut self.tx_headers,
                &iovs[done..],
                &self.tx_addrs[done..],
                [],
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(results) => match results.count() {
                    0 => SendFailure::Busy,
                    k => {
                        self.sent += k as u64;
                        done += k;
                        continue;
                    }
                },
                Err(e) => SendFailure::of(e),
            };
            match failure {
                SendFailure::Busy if !retried => retried = true,
                SendFailure::Busy => {
                    self.send_errors += (n - done) as u64;
                    done = n;
                }
                SendFailure::Refused => {
                    self.send_errors += 1;
                    done += 1;
                }
            }
        }
        self.tx.clear();
        self.tx_buf.clear();
    }
}

/// Why `sendmmsg` stopped at a datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendFailure {
    /// The socket buffer is full (or the call was interrupted): the
    /// datagram may go on a second try.
    Busy,
    /// The kernel refused this datagram, typically for its destination;
    /// the ones after it are unaffected.
    Refused,
}

impl SendFailure {
    fn of(e: nix::errno::Errno) -> SendFailure {
        use nix::errno::Errno;
        match e {
            Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR => SendFailure::Busy,
            _ => SendFailure::Refused,
        }
    }
}

/// Order entry over either transport. An enum rather than a trait object:
/// the branch is taken once per batch and predicted, and each arm inlines.
/// There is one per process and it never moves, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum OrderPort {
    Kernel(UdpPort),
    /// AF_XDP, and a kernel socket on the same address for replies to
    /// peers whose MAC address the AF_XDP port has not learned (sessions
    /// recovered after a restart, before their clients send again): the
    /// kernel resolves it with ARP, which the XDP program passes.
    Xdp(XdpPort, Option<Box<UdpPort>>),
}

impl OrderPort {
    /// Receives up to `max` datagrams, calling `f(source, payload)` for
    /// each; `f` says whether it vouches for the sender's link-layer
    /// address (AF_XDP learns it then: [`XdpPort::recv`]).
    #[inline]
    pub fn recv(
        &mut self,
        max: usize,
        mut f: impl FnMut(SocketAddrV4, &[u8]) -> bool,
    ) -> io::Result<usize> {
        match self {
            OrderPort::Kernel(p) => p.recv(max, |src, payload| {
                f(src, payload);
            }),
            OrderPort::Xdp(p, _) => Ok(p.recv(max, f)),
        }
    }

    /// Queues a reply; false if it was dropped (and counted).
    #[inline]
    pub fn send_to(&mut self, dst: SocketAddrV4, payload: &[u8]) -> bool {
        match self {
            OrderPort::Kernel(p) => p.send_to(dst, payload),
            OrderPort::Xdp(p, kernel) => match (p.send_to_known(dst, payload), kernel) {
                (Some(sent), _) => sent,
                (None, Some(kernel)) => kernel.send_to(dst, payload),
                // Counted by the AF_XDP port as an unknown peer.
                (None, None) => p.send_to(dst, payload),
            },
        }
    }

    /// Reads (at most a batch of) what reached the kernel socket beside an
    /// AF_XDP port: datagrams to the order port that the XDP program passed
    /// to the kernel (another receive queue's, IP fragments), so that they
    /// are answered, late, rather than lost. Nothing on the kernel path.
    pub fn recv_passed(&mut self, f: impl FnMut(SocketAddrV4, &[u8])) -> io::Result<usize> {
        match self {
            OrderPort::Xdp(_, Some(kernel)) => kernel.recv(BATCH, f),
            _ => Ok(0),
        }
    }

    /// Forgets the link address learned for `peer`, whose session ended
    /// (AF_XDP: replies to it go through the kernel until it logs in
    /// again).
    pub fn forget_peer(&mut self, peer: SocketAddrV4) {
        if let OrderPort::Xdp(p, _) = self {
            p.forget(peer);
        }
    }

    /// Sends what was queued.
    #[inline]
    pub fn flush(&mut self) {
        match self {
            OrderPort::Kernel(p) => p.flush(),
            OrderPort::Xdp(p, kernel) => {
                p.flush();
                if let Some(k) = kernel {
                    k.flush();
                }
            }
        }
    }

    /// "kernel UDP" or "AF_XDP".
    pub fn name(&self) -> &'static str {
        match self {
            OrderPort::Kernel(_) => "kernel UDP",
            OrderPort::Xdp(..) => "AF_XDP",
        }
    }

    /// One line of counters for the shutdown report.
    pub fn report(&self) -> String {
        match self {
            OrderPort::Kernel(p) => format!(
                "kernel UDP: {}, {} dropped, {} sent in {}, {}",
                plural(p.rx_calls, "recvmmsg call", "recvmmsg calls"),
                plural(p.truncated, "oversized datagram", "oversized datagrams"),
                plural(p.sent, "datagram", "datagrams"),
                plural(p.tx_calls, "sendmmsg call", "sendmmsg calls"),
                plural(p.send_errors, "send error", "send errors")
            ),
            OrderPort::Xdp(p, None) => format!("AF_XDP: {}", p.stats()),
            OrderPort::Xdp(p, Some(kernel)) => format!(
                "AF_XDP: {}; through the kernel to peers whose MAC address was not known: {} sent, {}; {} the XDP program passed",
                p.stats(),
                plural(kernel.sent, "datagram", "datagrams"),
                plural(kernel.send_errors, "send error", "send errors"),
                plural(kernel.received, "datagram received of those", "datagrams received of those")
            ),
        }
    }

    pub fn xdp_stats(&self) -> Option<XdpStats> {
        match self {
            OrderPort::Kernel(_) => None,
            OrderPort::Xdp(p, _) => Some(p.stats()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    #[test]
    fn the_kernel_port_s_counters_say_one_in_the_singular() {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut port = UdpPort::new(sock).unwrap();
        (
            port.rx_calls,
            port.truncated,
            port.sent,
            port.tx_calls,
            port.send_errors,
        ) = (1, 0, 1, 1, 2);
        assert_eq!(
            OrderPort::Kernel(port).report(),
            "kernel UDP: 1 recvmmsg call, 0 oversized datagrams dropped, 1 datagram sent in 1 sendmmsg call, 2 send errors"
        );
    }

    fn v4(sock: &UdpSocket) -> SocketAddrV4 {
        let SocketAddr::V4(a) = sock.local_addr().unwrap() else {
            unreachable!("bound to an IPv4 address")
        };
        a
    }

    #[test]
    fn one_refused_datagram_does_not_lose_the_rest_of_the_batch() {
        let good = UdpSocket::bind("127.0.0.1:0").unwrap();
        good.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut port = UdpPort::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        // The middle one is refused by the kernel (EACCES: broadcast
        // without SO_BROADCAST; EPERM from a firewall rule or ENETUNREACH
        // for an unroutable peer behave the same). Nothing leaves the host.
        assert!(port.send_to(v4(&good), b"first"));
        assert!(port.send_to(SocketAddrV4::new(Ipv4Addr::BROADCAST, 9), b"bad"));
        assert!(port.send_to(v4(&good), b"third"));
        port.flush();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n) = good.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
        assert_eq!(got, vec![b"first".to_vec(), b"third".to_vec()]);
        assert_eq!((port.sent, port.send_errors), (2, 1));
    }

    #[test]
    fn a_refused_first_datagram_does_not_lose_the_rest_of_the_batch() {
        let good = UdpSocket::bind("127.0.0.1:0").unwrap();
        good.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let mut port = UdpPort::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        // sendmmsg returns the error itself when no datagram went.
        assert!(port.send_to(SocketAddrV4::new(Ipv4Addr::BROADCAST, 9), b"bad"));
        assert!(port.send_to(v4(&good), b"second"));
        port.flush();
        let mut buf = [0u8; 64];
        let n = good.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"second");
        assert_eq!((port.sent, port.send_errors), (1, 1));
    }

    #[test]
    fn an_oversized_datagram_is_dropped_whole_and_the_next_keeps_its_own_bytes() {
        let mut port = UdpPort::new(UdpSocket::bind("127.0.0.1:0").unwrap()).unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let dst = v4(port.socket());
        client.send_to(b"before", dst).unwrap();
        client.send_to(&[7u8; DATAGRAM + 100], dst).unwrap();
        client.send_to(b"after", dst).unwrap();
        let mut got: Vec<(SocketAddrV4, Vec<u8>)> = Vec::new();
        // Loopback delivers during send_to; the bound is for a busy host.
        for _ in 0..1000 {
            port.recv(BATCH, |src, m| got.push((src, m.to_vec())))
                .unwrap();
            if got.len() == 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let from = v4(&client);
        assert_eq!(
            got,
            vec![(from, b"before".to_vec()), (from, b"after".to_vec())]
        );
        assert_eq!(port.truncated, 1);
    }
}
