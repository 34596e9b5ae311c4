//! `tokex::client`: an order-entry client session (sans-IO) and a UDP shell.
//!
//! Owns the client side of SoupBinTCP + OUCH 4.2 over UDP: login, tokens,
//! re-sending a request whose response has not arrived (same token: the
//! exchange processes a token once), and recovering lost sequenced messages.
//! SoupBinTCP numbers sequenced messages implicitly, so after a loss the
//! client cannot tell which message it missed; it asks the exchange to
//! replay from the last sequence number it knows to be exact (its last
//! Login Accepted) and drops what it has already seen (by content).

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::{SocketAddr, SocketAddrV4, UdpSocket};

use zerocopy::IntoBytes;

use crate::types::{Price, Qty, Side, Symbol, Tif};
use crate::wire::ouch::{self, Token};
use crate::wire::soupbin::{self, Packet};

/// What the exchange told the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEvent {
    LoggedIn {
        next_sequence: u64,
    },
    LoginRejected {
        code: u8,
    },
    Accepted {
        token: Token,
        order_reference: u64,
        qty: Qty,
        tif: Tif,
    },
    Replaced {
        token: Token,
        previous: Token,
        qty: Qty,
        tif: Tif,
    },
    Canceled {
        token: Token,
        decrement: Qty,
        reason: u8,
    },
    Executed {
        token: Token,
        qty: Qty,
        price: Price,
        match_number: u64,
    },
    Rejected {
        token: Token,
        reason: u8,
    },
    EndOfSession,
}

impl ClientEvent {
    /// The token a response answers, if any.
    pub fn token(&self) -> Option<Token> {
        match *self {
            ClientEvent::Accepted { token, .. }
            | ClientEvent::Replaced { token, .. }
            | ClientEvent::Canceled { token, .. }
            | ClientEvent::Executed { token, .. }
            | ClientEvent::Rejected { token, .. } => Some(token),
            _ => None,
        }
    }
}

struct Pending {
    sent_at: u64,
    tries: u32,
    packet: Vec<u8>,
}

/// Counters of a client session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    pub sent: u64,
    pub resent: u64,
    pub recoveries: u64,
    pub duplicates_dropped: u64,
    pub sequenced: u64,
}

/// A client session, sans-IO: requests in, datagrams out through
/// [`ClientSession::poll_transmit`], datagrams in through `on_datagram`.
pub struct ClientSession {
    username: String,
    password: String,
    prefix: String,
    next_token: u64,
    logged_in: bool,
    /// Sequence number of the next sequenced message (exact until a loss).
    next_sequence: u64,
    /// Sequence number known exact: from the last Login Accepted.
    checkpoint: u64,
    seen: HashSet<u64>,
    pending: HashMap<Token, Pending>,
    outbox: VecDeque<Vec<u8>>,
    resend_after: u64,
    last_tx: u64,
    stats: ClientStats,
}

fn fnv(bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

impl ClientSession {
    /// `prefix` makes this session's tokens unique (e.g. the username).
    pub fn new(
        username: &str,
        password: &str,
        prefix: &str,
        resend_after_ns: u64,
    ) -> ClientSession {
        ClientSession {
            username: username.into(),
            password: password.into(),
            prefix: prefix.chars().take(6).collect(),
            next_token: 1,
            logged_in: false,
            next_sequence: 1,
            checkpoint: 1,
            seen: HashSet::new(),
            pending: HashMap::new(),
            outbox: VecDeque::new(),
            resend_after: resend_after_ns,
            last_tx: 0,
            stats: ClientStats::default(),
        }
    }

    pub fn stats(&self) -> ClientStats {
        self.stats
    }

    pub fn is_logged_in(&self) -> bool {
        self.logged_in
    }

    /// Requests not yet answered.
    pub fn outstanding(&self) -> usize {
        self.pending.len()
    }

    fn login_packet(&self, sequence: u64) -> Vec<u8> {
        let mut b = [0u8; 64];
        let n = soupbin::write_login_request(
            &mut b,
            self.username.as_bytes(),
            self.password.as_bytes(),
            b"",
            sequence,
        )
        .unwrap_or(0);
        b[..n].to_vec()
    }

    /// Queues a Login Request (sequence 0: from the most recent).
    pub fn login(&mut self, now: u64) {
        self.outbox.push_back(self.login_packet(0));
        self.last_tx = now;
    }

    fn new_token(&mut self) -> Token {
        let t = format!("{}{:08}", self.prefix, self.next_token);
        self.next_token += 1;
        ouch::token(t.as_bytes()).unwrap_or([b' '; 14])
    }

    fn request(&mut self, now: u64, token: Token, msg: &[u8]) {
        let mut b = [0u8; 96];
        let n = soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, msg).unwrap_or(0);
        let packet = b[..n].to_vec();
        self.outbox.push_back(packet.clone());
        self.pending.insert(
            token,
            Pending {
                sent_at: now,
                tries: 0,
                packet,
            },
        );
        self.stats.sent += 1;
        self.last_tx = now;
    }

    /// Enters an order; returns its token.
    pub fn enter(
        &mut self,
        now: u64,
        symbol: Symbol,
        side: Side,
        qty: Qty,
        price: Price,
        tif: Tif,
    ) -> Token {
        let token = self.new_token();
        let m = ouch::EnterOrder::new(token, side, qty, symbol, price, tif);
        self.request(now, token, m.as_bytes());
        token
    }

    /// Cancels to size (0 = all).
    pub fn cancel(&mut self, now: u64, token: Token, qty: Qty) {
        let m = ouch::CancelOrder::new(token, qty);
        self.request(now, token, m.as_bytes());
    }

    /// Replaces an order; returns the new token.
    pub fn replace(&mut self, now: u64, token: Token, qty: Qty, price: Price) -> Token {
        let new = self.new_token();
        let m = ouch::ReplaceOrder::new(token, new, qty, price);
        self.request(now, new, m.as_bytes());
        new
    }

    /// Handles a datagram from the exchange.
    pub fn on_datagram(&mut self, now: u64, bytes: &[u8], f: &mut impl FnMut(ClientEvent)) {
        let _ = now;
        for p in soupbin::packets(bytes) {
            let Ok(p) = p else { return };
            match p {
                Packet::LoginAccepted(a) => {
                    let seq = a.next_sequence().unwrap_or(1);
                    self.logged_in = true;
                    self.next_sequence = seq;
                    self.checkpoint = seq;
                    f(ClientEvent::LoggedIn { next_sequence: seq });
                }
                Packet::LoginRejected(code) => f(ClientEvent::LoginRejected { code }),
                Packet::SequencedData(m) => {
                    self.next_sequence += 1;
                    if !self.seen.insert(fnv(m)) {
                        self.stats.duplicates_dropped += 1;
                        continue;
                    }
                    self.stats.sequenced += 1;
                    let Ok(out) = ouch::Outbound::parse(m) else {
                        continue;
                    };
                    let e = match out {
                        ouch::Outbound::Accepted(a) => ClientEvent::Accepted {
                            token: a.token,
                            order_reference: a.order_reference.get(),
                            qty: Qty::new(a.shares.get()),
                            tif: ouch::tif_of(
                                a.time_in_force.get(),
                                a.shares.get(),
                                a.minimum_quantity.get(),
                            ),
                        },
                        ouch::Outbound::Replaced(r) => ClientEvent::Replaced {
                            token: r.replacement_token,
                            previous: r.previous_token,
                            qty: Qty::new(r.shares.get()),
                            tif: Tif::Day,
                        },
                        ouch::Outbound::Canceled(c) => ClientEvent::Canceled {
                            token: c.token,
                            decrement: Qty::new(c.decrement.get()),
                            reason: c.reason,
                        },
                        ouch::Outbound::Executed(x) => ClientEvent::Executed {
                            token: x.token,
                            qty: Qty::new(x.shares.get()),
                            price: Price::from_raw(x.price.get()),
                            match_number: x.match_number.get(),
                        },
                        ouch::Outbound::Rejected(r) => ClientEvent::Rejected {
                            token: r.token,
                            reason: r.reason,
                        },
                        _ => continue,
                    };
                    if let Some(t) = e.token() {
                        if !matches!(e, ClientEvent::Executed { .. })
                            || self.pending.contains_key(&t)
                        {
                            self.pending.remove(&t);
                        }
                    }
                    f(e);
                }
                Packet::EndOfSession => {
                    self.logged_in = false;
                    f(ClientEvent::EndOfSession);
                }
                _ => {}
            }
        }
    }

    /// Re-sends what has waited too long; after a second try, asks the
    /// exchange to replay from the last exact sequence number. Sends a
    /// heartbeat when idle for a second.
    pub fn on_timer(&mut self, now: u64) {
        let mut recover = false;
        let resend_after = self.resend_after;
        for p in self.pending.values_mut() {
            if now.saturating_sub(p.sent_at) >= resend_after {
                p.tries += 1;
                p.sent_at = now;
                self.outbox.push_back(p.packet.clone());
                self.stats.resent += 1;
                recover |= p.tries >= 2;
            }
        }
        if recover && self.logged_in {
            self.outbox.push_back(self.login_packet(self.checkpoint));
            self.stats.recoveries += 1;
        }
        if now.saturating_sub(self.last_tx) >= 1_000_000_000 {
            let mut b = [0u8; 8];
            if let Ok(n) = soupbin::write_empty(&mut b, soupbin::kind::CLIENT_HEARTBEAT) {
                self.outbox.push_back(b[..n].to_vec());
            }
            self.last_tx = now;
        }
    }

    /// The next datagram to send, if any.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.outbox.pop_front()
    }
}

/// A [`ClientSession`] over a non-blocking UDP socket.
pub struct UdpClient {
    pub session: ClientSession,
    socket: UdpSocket,
    server: SocketAddrV4,
    buf: Vec<u8>,
}

impl UdpClient {
    /// Binds an ephemeral port (in the caller's namespace) and targets `server`.
    pub fn new(session: ClientSession, server: SocketAddrV4) -> std::io::Result<UdpClient> {
        let socket = UdpSocket::bind("0.0.0.0:0")?;
        socket.set_nonblocking(true)?;
        Ok(UdpClient {
            session,
            socket,
            server,
            buf: vec![0u8; 2048],
        })
    }

    /// Sends everything queued.
    pub fn flush(&mut self) -> std::io::Result<()> {
        while let Some(d) = self.session.poll_transmit() {
            match self.socket.send_to(&d, self.server) {
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Reads every datagram waiting; returns how many.
    pub fn poll(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) -> std::io::Result<usize> {
        let mut n = 0;
        loop {
            match self.socket.recv_from(&mut self.buf) {
                Ok((len, SocketAddr::V4(src))) if src == self.server => {
                    let data = self.buf[..len].to_vec();
                    self.session.on_datagram(now, &data, f);
                    n += 1;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(n),
                Err(e) => return Err(e),
            }
        }
    }
}
