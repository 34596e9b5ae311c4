//! [`UdpClient`]: a [`ClientSession`] over a non-blocking kernel UDP socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};

use nix::sys::socket::sockopt::{RcvBuf, RcvBufForce};

use super::{ClientEvent, ClientSession};

/// Receive buffer asked for on the client's socket, bytes.
const RECV_BUFFER: usize = 4 << 20;

/// The exchange's order-entry address on the lab network (DESIGN "Defaults").
pub const DEFAULT_SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 9000);

/// A [`ClientSession`] over a non-blocking UDP socket bound in the caller's
/// network namespace.
pub struct UdpClient {
    pub session: ClientSession,
    socket: UdpSocket,
    server: SocketAddrV4,
    buf: Vec<u8>,
    tx: Vec<u8>,
    send_errors: u64,
}

impl UdpClient {
    /// Binds an ephemeral port and targets `server`.
    pub fn new(session: ClientSession, server: SocketAddrV4) -> std::io::Result<UdpClient> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_nonblocking(true)?;
        // Answers to a burst of orders arrive together: a deep receive
        // buffer keeps them from being dropped (then recovered by sequence)
        // while the caller is busy. Beyond net.core.rmem_max only with
        // CAP_NET_ADMIN (SO_RCVBUFFORCE); the default size is kept otherwise.
        let _ = nix::sys::socket::setsockopt(&socket, RcvBufForce, &RECV_BUFFER)
            .or_else(|_| nix::sys::socket::setsockopt(&socket, RcvBuf, &RECV_BUFFER));
        Ok(UdpClient {
            session,
            socket,
            server,
            buf: vec![0u8; 2048],
            tx: vec![0u8; 1400],
            send_errors: 0,
        })
    }

    /// Targets [`DEFAULT_SERVER`] (198.18.0.1:9000).
    pub fn new_default(session: ClientSession) -> std::io::Result<UdpClient> {
        UdpClient::new(session, DEFAULT_SERVER)
    }

    /// The socket, for readiness checks (`poll`) over many clients.
    pub fn socket(&self) -> &UdpSocket {
        &self.socket
    }

    /// The local address of the socket.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Sends everything queued. A datagram the kernel refuses (a full
    /// socket buffer, a firewall's drop, no route for a moment) is lost like
    /// one lost on the wire, and counted: the re-send timer repeats it.
    pub fn flush(&mut self) -> std::io::Result<()> {
        let now = self.session.last_now();
        while let Some(n) = self.session.poll_transmit(now, &mut self.tx) {
            if self.socket.send_to(&self.tx[..n], self.server).is_err() {
                self.send_errors += 1;
            }
        }
        Ok(())
    }

    /// Datagrams the kernel refused to send (they count as lost).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Reads every datagram waiting (from the server only); returns how many.
    pub fn poll(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) -> std::io::Result<usize> {
        let mut n = 0;
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, SocketAddr::V4(src))) if src == self.server => {
                    self.session.on_datagram(now, &self.buf[..len], f);
                    n += 1;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) => return Err(e),
            }
        }
    }

    /// One turn of a driving loop: receive, run the timer if due, send.
    pub fn drive(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) -> std::io::Result<usize> {
        let n = self.poll(now, f)?;
        if self.session.poll_timeout().is_some_and(|t| t <= now) {
            self.session.on_timer(now);
        }
        self.flush()?;
        Ok(n)
    }
}
