//! [`XdpClients`]: several [`ClientSession`]s over one AF_XDP socket on the
//! client's interface, the load generator's kernel-bypass transport.
//!
//! Each session has its own UDP port (the exchange binds a session to the
//! address it logged in from). A kernel socket bound to that port and
//! connected to the exchange holds it, so nothing else in the namespace
//! takes it, and picks the source address; tokex's XDP program on the
//! interface sends every datagram to those ports into the one AF_XDP socket
//! (`net::xdp`), where the destination port names the session. Frames to the
//! exchange need its MAC address, which [`XdpPort`] learns from the first
//! frame the exchange sends. Until then (the login) datagrams leave through
//! the session's kernel socket, whose ARP resolution finds the exchange;
//! the answer already comes back through AF_XDP.

use std::io;
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};

use super::{ClientEvent, ClientSession};
use crate::config::XdpConfig;
use crate::net::xdp::XdpPort;

/// Frames taken from the receive ring per call.
const RECV_BATCH: usize = 64;

/// Client sessions sharing one AF_XDP socket.
pub struct XdpClients {
    sessions: Vec<ClientSession>,
    /// Per session: the kernel socket holding its port, and the port.
    sockets: Vec<UdpSocket>,
    ports: Vec<u16>,
    port: XdpPort,
    server: SocketAddrV4,
    tx: Vec<u8>,
    send_errors: u64,
}

impl XdpClients {
    /// Binds a port per session, attaches the XDP program for those ports
    /// to `interface` and opens the AF_XDP socket on its queue.
    pub fn open(
        interface: &str,
        server: SocketAddrV4,
        sessions: Vec<ClientSession>,
        cfg: &XdpConfig,
    ) -> io::Result<XdpClients> {
        let mut sockets = Vec::with_capacity(sessions.len());
        let mut ports = Vec::with_capacity(sessions.len());
        let mut local_ip = None;
        for _ in &sessions {
            let socket = crate::net::lab_route::lab_socket(*server.ip())?;
            socket.connect(server)?;
            socket.set_nonblocking(true)?;
            let SocketAddr::V4(local) = socket.local_addr()? else {
                return Err(io::Error::other("the client socket is not IPv4"));
            };
            local_ip = Some(*local.ip());
            ports.push(local.port());
            sockets.push(socket);
        }
        let ip = local_ip.ok_or_else(|| io::Error::other("no session to open"))?;
        let port = XdpPort::open_ports(interface, ip, &ports, cfg).map_err(io::Error::other)?;
        Ok(XdpClients {
            sessions,
            sockets,
            ports,
            port,
            server,
            tx: vec![0u8; 1400],
            send_errors: 0,
        })
    }

    /// One line for the log: the AF_XDP modes in use.
    pub fn describe(&self) -> String {
        self.port.describe()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn session(&mut self, s: usize) -> &mut ClientSession {
        &mut self.sessions[s]
    }

    pub fn sessions(&self) -> &[ClientSession] {
        &self.sessions
    }

    /// Datagrams that could not be sent (they count as lost).
    pub fn send_errors(&self) -> u64 {
        self.send_errors
    }

    /// Sends everything session `s` has queued: through AF_XDP once the
    /// exchange's MAC address is known, through the kernel before.
    pub fn flush(&mut self, s: usize) {
        let direct = self.port.knows(self.server);
        let session = &mut self.sessions[s];
        let now = session.last_now();
        while let Some(n) = session.poll_transmit(now, &mut self.tx) {
            let sent = if direct {
                self.port
                    .send_from(self.ports[s], self.server, &self.tx[..n])
            } else {
                self.sockets[s].send(&self.tx[..n]).is_ok()
            };
            if !sent {
                self.send_errors += 1;
            }
        }
        self.port.flush();
    }

    /// Reads the frames waiting, at most
    /// `MAX_RECV_BATCHES` (64) batches (a flood
    /// cannot hold the caller's loop), and hands each session its datagrams
    /// from the exchange: `f(session, event)`. Returns how many datagrams.
    pub fn poll(&mut self, now: u64, f: &mut impl FnMut(usize, ClientEvent)) -> usize {
        let mut n = 0;
        for _ in 0..super::MAX_RECV_BATCHES {
            let (sessions, ports, server) = (&mut self.sessions, &self.ports, self.server);
            // Frames from the exchange's address and port vouch for its
            // MAC address (a frame that forges them too would take the
            // client's orders, as on any UDP link; other frames cannot).
            let got = self.port.recv_at(RECV_BATCH, |src, to, bytes| {
                if src != server {
                    return false;
                }
                if let Some(s) = ports.iter().position(|&p| p == to) {
                    sessions[s].on_datagram(now, bytes, &mut |e| f(s, e));
                    n += 1;
                }
                true
            });
            if got < RECV_BATCH {
                break;
            }
        }
        n
    }

    /// One turn of a driving loop: receive, run every due timer, send.
    pub fn drive(&mut self, now: u64, f: &mut impl FnMut(usize, ClientEvent)) -> usize {
        let n = self.poll(now, f);
        for s in 0..self.sessions.len() {
            if self.sessions[s].poll_timeout().is_some_and(|t| t <= now) {
                self.sessions[s].on_timer_with(now, &mut |e| f(s, e));
            }
            self.flush(s);
        }
        n
    }

    /// The AF_XDP socket's counters, for the report.
    pub fn stats(&self) -> String {
        self.port.stats().to_string()
    }
}
