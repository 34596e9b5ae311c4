//! [`UdpClient`]: a [`ClientSession`] over a non-blocking kernel UDP socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use super::{ClientEvent, ClientSession};
use crate::net::udp::UdpPort;

/// The exchange's order-entry address on the lab network (DESIGN "Defaults").
pub const DEFAULT_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 9000);

/// A [`ClientSession`] over a non-blocking UDP socket bound in the caller's
/// network namespace.
pub struct UdpClient {
    pub session: ClientSession,
    /// The socket, read with `recvmmsg` and written with `sendmmsg`.
    port: UdpPort,
    server: SocketAddrV4,
    tx: Vec<u8>,
}

/// Datagrams read per `recvmmsg` at most.
const RECV_BATCH: usize = 16;

impl UdpClient {
    /// Binds an ephemeral port and targets `server`. Refused (before
    /// anything is sent) unless `server` is a lab address reached through a
    /// lab interface, or loopback ([`crate::net::lab_route`]).
    pub fn new(session: ClientSession, server: SocketAddrV4) -> std::io::Result<UdpClient> {
        let socket = crate::net::lab_route::lab_socket(*server.ip())?;
        // Answers to a burst of orders arrive together: the port's deep
        // receive buffer keeps them from being dropped (then recovered by
        // sequence) while the caller is busy.
        Ok(UdpClient {
            session,
            port: UdpPort::new(socket)?,
            server,
            tx: vec![0u8; 1400],
        })
    }

    /// Targets [`DEFAULT_SERVER`] (198.18.0.1:9000).
    pub fn new_default(session: ClientSession) -> std::io::Result<UdpClient> {
        UdpClient::new(session, DEFAULT_SERVER)
    }

    /// The socket, for readiness checks (`epoll`) over many clients.
    pub fn socket(&self) -> &UdpSocket {
        self.port.socket()
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.port.socket().local_addr()
    }

    /// Sends everything queued. A datagram the kernel refuses (a full
    /// socket buffer, a firewall's drop, no route for a moment) is lost like
    /// one lost on the wire, and counted: the re-send timer repeats it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let now = self.session.last_now();
        while let Some(n) = self.session.poll_transmit(now, &mut self.tx) {
            self.port.send_to(self.server, &self.tx[..n]);
        }
        self.port.flush();
        Ok(())
    }

    /// Datagrams the kernel refused to send (they count as lost).
    pub fn send_errors(&self) -> u64 {
        self.port.send_errors
    }

    /// Reads the datagrams waiting (from the server only), at most
    /// `MAX_RECV_BATCHES` (64) batches, so that a
    /// flood cannot hold the caller's loop; returns how many.
    pub fn poll(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) -> std::io::Result<usize> {
        let mut n = 0;
        for _ in 0..super::MAX_RECV_BATCHES {
            let (session, server) = (&mut self.session, self.server);
            let got = self.port.recv(RECV_BATCH, |src, bytes| {
                if src == server {
                    session.on_datagram(now, bytes, f);
                    n += 1;
                }
            })?;
            // Fewer than asked for: the socket is empty.
            if got < RECV_BATCH {
                break;
            }
        }
        Ok(n)
    }

    /// One turn of a driving loop: receive, run the timer if due, send.
    pub fn drive(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) -> std::io::Result<usize> {
        let n = self.poll(now, f)?;
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.on_timer_with(now, f);
        }
        self.flush()?;
        Ok(n)
    }
}
