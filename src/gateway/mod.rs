//! Order-entry sessions: SoupBinTCP logins, OUCH 4.2 orders into the
//! engine, acknowledgements out (sans-IO).
//!
//! Owns everything between a received datagram and the engine: login with
//! constant-time password checks and back-off after repeated failures, the
//! binding of a session to the address it logged in from, order tokens
//! (processed once per session per day; a session can only name its own
//! orders), a per-session token-bucket rate limit, sequenced outbound
//! messages kept for re-request (a Login Request with a sequence number,
//! also mid-session), heartbeats and idle timeouts. Datagrams come in with
//! the time; replies go to an [`Outbox`]; every engine event also goes to a
//! market-data sink; every state-changing packet goes to a [`JournalSink`]
//! first, so [`Gateway::replay`] can rebuild the same state after a crash.
//!
//! Choices worth knowing (each pinned by a test in `tests.rs`):
//!
//! - **Tokens, once per session per day.** A request re-sent with a token
//!   the session already used, byte for byte the same request (Enter, or
//!   Replace by its replacement token), is not processed again and nothing
//!   new is sent ([`Drop::Resent`]): its original answer is in the
//!   session's sequenced stream, where the client recovers it by sequence
//!   number. A *different* request reusing a token is rejected with
//!   `DuplicateToken` (OUCH reason 'O'). Cancels are not deduplicated: a
//!   cancel of an order that is already gone is rejected (`UnknownOrder`).
//! - **Ownership.** Tokens map to orders per session, so another session's
//!   token is simply unknown to a session (`UnknownOrder`).
//! - **Rate limit.** A token bucket per session (`rate_per_sec`,
//!   `rate_burst`). An Enter or Replace over the limit is rejected with
//!   Flow Control ('F'; the reject uses the token, so a copy re-sent before
//!   the reject arrived gets no second answer) while a second, 100 times
//!   smaller bucket allows; beyond that, and for every Cancel/Modify over
//!   the limit, the message is dropped without a reply
//!   ([`Drop::RateLimitedSilent`]; the client re-sends after its timeout).
//!   So a flood cannot fill the re-request window with rejects. Each
//!   message re-sent on a re-request takes a token as well
//!   ([`Drop::ResendRateLimited`] counts those not re-sent): to a UDP
//!   peer the re-send stops when the bucket is empty (its labels show the
//!   client where to ask again); to a TCP peer, whose stream has no
//!   sequence numbers, it goes whole and the bucket goes into debt. A
//!   login takes a token too (from the session its credentials name, or
//!   the one its peer is bound to), so it goes unanswered while the debt
//!   lasts, and a Login and Logout loop is limited as orders are.
//! - **Journal.** Only what can change state is journaled: logins that
//!   got a rate-limit token and were not refused for back-off, and order
//!   traffic and logouts from a peer with a session. Anything else is
//!   counted and dropped without a disk write.
//! - **Re-request window.** The last `resend_window` sequenced messages of
//!   each session are kept. A Login Request asking for an older sequence
//!   number is answered from the oldest message still kept (the Login
//!   Accepted says which) and counted as [`Drop::ResendTooOld`].
//! - **UDP sequence labels.** SoupBinTCP numbers sequenced messages only
//!   implicitly, which a lossy datagram link cannot keep. Every datagram
//!   to a UDP peer that carries Sequenced Data or a Server Heartbeat
//!   therefore starts with a SoupBinTCP Debug packet ('+', which receivers
//!   ignore unless they understand it) holding the sequence number of the
//!   datagram's first message, or for a heartbeat the next one
//!   ([`udp_label`]); the messages after it are numbered on from there. A
//!   datagram packing replies from more than one batch step carries a
//!   label again wherever the numbering does not continue
//!   ([`Outbox::send_sequenced`]). TCP peers get the plain byte stream.
//! - **Binding.** A session is bound to the peer it logged in from until
//!   Logout, idle timeout or End of Session, and a peer to one session; a
//!   login for it from elsewhere, or for a second session from the same
//!   peer, is refused ('S'), order traffic from unknown peers is dropped
//!   ([`Drop::NotLoggedIn`]). Sessions bound to TCP connections are
//!   released after a restart ([`Gateway::after_restart`]).
//! - **Back-off.** Failed logins are counted per source host; past
//!   `login_failures_before_backoff` its logins are refused unchecked for
//!   a doubling time, except the bound client's own re-request. Only a
//!   successful login clears the count. A TCP connection's host is told
//!   by [`Gateway::set_tcp_host`] and journaled with each login, so TCP
//!   and UDP clients of one host share its count.

mod login;
mod orders;
mod outbox;
mod session;
mod state;
mod tokens;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::{GatewayConfig, SessionConfig};
use crate::contract::ContractSet;
use crate::engine::{Engine, Event, EventSink, RejectReason};
use crate::types::{AccountId, InstrumentId, Nanos, Symbol};
use crate::wire::soupbin::{self, Packet};
use serde::{Deserialize, Serialize};

use login::{Failures, Login};
pub use orders::{ouch_cancel_code, ouch_reject_code};
use outbox::NoJournal;
pub use outbox::{udp_label, Discard, JournalSink, Outbox, MAX_SEQUENCED_PACKET};
use session::Session;
pub use session::{OutboundState, OutboundStore, TokenBucket, TOKEN_BYTES_AT_MOST};

/// The most bytes a TCP login's re-send of a whole `window` of sequenced
/// messages takes (it goes out whole, see `Gateway::admit`): each the
/// longest OUCH message (Replaced) in a Sequenced Data packet, after the
/// Login Accepted. What a TCP connection must be able to hold unsent, or
/// a client far behind is disconnected at every re-login.
pub fn max_tcp_resend_bytes(window: u32) -> usize {
    let replaced = std::mem::size_of::<crate::wire::ouch::Replaced>();
    let login_accepted = soupbin::HEADER_LEN + std::mem::size_of::<soupbin::LoginAccepted>();
    window as usize * (soupbin::HEADER_LEN + replaced) + login_accepted
}
pub use state::{GatewayState, GatewayStateError};

/// Where a packet came from (and where its replies go).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Peer {
    Udp(SocketAddrV4),
    /// A connection on the TCP compatibility port, by connection number.
    Tcp(u32),
}

impl Peer {
    /// 7 bytes: kind, then address and port (UDP) or connection id (TCP).
    pub fn encode(&self) -> [u8; 7] {
        let mut b = [0u8; 7];
        match self {
            Peer::Udp(a) => {
                b[0] = 1;
                b[1..5].copy_from_slice(&a.ip().octets());
                b[5..7].copy_from_slice(&a.port().to_be_bytes());
            }
            Peer::Tcp(id) => {
                b[0] = 2;
                b[1..5].copy_from_slice(&id.to_be_bytes());
            }
        }
        b
    }

    pub fn decode(b: &[u8]) -> Option<Peer> {
        let b: &[u8; 7] = b.get(..7)?.try_into().ok()?;
        match b[0] {
            1 => Some(Peer::Udp(SocketAddrV4::new(
                [b[1], b[2], b[3], b[4]].into(),
                u16::from_be_bytes([b[5], b[6]]),
            ))),
            2 => Some(Peer::Tcp(u32::from_be_bytes([b[1], b[2], b[3], b[4]]))),
            _ => None,
        }
    }

    /// The source host, for login back-off, when nothing else is known of
    /// it (a TCP connection's host is told by [`Gateway::set_tcp_host`];
    /// without it, all TCP connections count as one source).
    fn source(&self) -> Peer {
        match self {
            Peer::Udp(a) => Peer::Udp(SocketAddrV4::new(*a.ip(), 0)),
            Peer::Tcp(_) => Peer::Tcp(0),
        }
    }
}

/// Journal record kinds written by the gateway.
pub mod record {
    /// A SoupBinTCP packet from a peer: peer (7 bytes) + packet bytes.
    pub const PACKET: u8 = 1;
    /// A session was unbound without a packet of its own: it timed out, or
    /// its TCP connection did not survive a restart. Session index (u32).
    pub const TIMEOUT: u8 = 2;
    /// The engine's timers ran at this record's time (schedule changes, the
    /// end of a circuit-breaker halt or of a reopening call). No payload.
    pub const CLOCK: u8 = 3;
    /// The engine started following the contracts' schedules at this
    /// record's time. No payload.
    pub const FOLLOW_SCHEDULES: u8 = 4;
    /// A Login Request, as its outcome: peer, the session its credentials
    /// named, the requested session and sequence number, and the host its
    /// failures count against (see `Login`). The password is never
    /// written. (Journals of version 1, whose logins were `PACKET`s, are
    /// refused: see [`crate::journal`].)
    pub const LOGIN: u8 = 5;
    /// The fingerprint (u64) of the configuration the day's journal is
    /// written under ([`crate::snapshot::fingerprint`]): its first record.
    /// Replay under another configuration (sessions are named by index,
    /// rates and limits decide outcomes) would not rebuild the same state.
    /// The gateway ignores it; recovery checks it.
    pub const CONFIG: u8 = 6;
}

/// What was dropped or refused, by reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Drop {
    /// Bytes that are not a SoupBinTCP packet.
    Malformed,
    /// A packet type a client may not send.
    Unexpected,
    /// Order traffic from a peer with no logged-in session.
    NotLoggedIn,
    /// An OUCH message that does not decode.
    BadMessage,
    /// A login with a wrong username or password.
    BadCredentials,
    /// A login attempt during back-off (not checked).
    LoginBackoff,
    /// A login for a session bound to another address.
    SessionInUse,
    /// Messages over the session's rate limit.
    RateLimited,
    /// A re-sent request (same token, same bytes) already processed.
    Resent,
    /// A re-request older than the outbound window (answered from the oldest kept).
    ResendTooOld,
    /// Over the rate limit and dropped without a reply.
    RateLimitedSilent,
    /// Re-requested messages not re-sent for want of rate-limit tokens (a
    /// re-sent message costs what an order does; a UDP client asks again
    /// from where the replay stopped).
    ResendRateLimited,
}

impl Drop {
    pub const ALL: [Drop; 12] = [
        Drop::Malformed,
        Drop::Unexpected,
        Drop::NotLoggedIn,
        Drop::BadMessage,
        Drop::BadCredentials,
        Drop::LoginBackoff,
        Drop::SessionInUse,
        Drop::RateLimited,
        Drop::Resent,
        Drop::ResendTooOld,
        Drop::RateLimitedSilent,
        Drop::ResendRateLimited,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Drop::Malformed => "malformed",
            Drop::Unexpected => "unexpected-packet",
            Drop::NotLoggedIn => "not-logged-in",
            Drop::BadMessage => "bad-ouch-message",
            Drop::BadCredentials => "bad-credentials",
            Drop::LoginBackoff => "login-backoff",
            Drop::SessionInUse => "session-in-use",
            Drop::RateLimited => "rate-limited",
            Drop::Resent => "resent-request",
            Drop::ResendTooOld => "resend-too-old",
            Drop::RateLimitedSilent => "rate-limited-silent",
            Drop::ResendRateLimited => "resend-rate-limited",
        }
    }
}

/// Counters the runtime prints at exit.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub packets: u64,
    pub orders: u64,
    pub drops: HashMap<Drop, u64>,
    pub rejects: HashMap<RejectReason, u64>,
    pub logins: u64,
}

impl Counters {
    fn drop(&mut self, d: Drop) {
        *self.drops.entry(d).or_default() += 1;
    }

    fn reject(&mut self, r: RejectReason) {
        *self.rejects.entry(r).or_default() += 1;
    }

    /// What was counted since `before` (an earlier copy of these): a
    /// restarted exchange's own traffic, without its journal's replay.
    pub fn since(&self, before: &Counters) -> Counters {
        let minus = |now: u64, then: u64| now.saturating_sub(then);
        Counters {
            packets: minus(self.packets, before.packets),
            orders: minus(self.orders, before.orders),
            logins: minus(self.logins, before.logins),
            drops: self
                .drops
                .iter()
                .map(|(d, &n)| (*d, minus(n, before.dropped(*d))))
                .filter(|&(_, n)| n > 0)
                .collect(),
            rejects: self
                .rejects
                .iter()
                .map(|(r, &n)| (*r, minus(n, before.rejected(*r))))
                .filter(|&(_, n)| n > 0)
                .collect(),
        }
    }

    /// How many packets or messages were dropped or refused for `d`.
    pub fn dropped(&self, d: Drop) -> u64 {
        self.drops.get(&d).copied().unwrap_or(0)
    }

    /// How many requests were rejected (an OUCH Rejected sent) for `r`.
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejects.get(&r).copied().unwrap_or(0)
    }
}

/// Largest datagram the gateway builds when it replays a session's
/// messages (fits a 1500-byte MTU with IP and UDP headers).
const MAX_DATAGRAM: usize = 1400;

/// The session layer of the exchange.
pub struct Gateway {
    cfg: GatewayConfig,
    /// The engine follows the contracts' schedules (journaled once a day).
    follows_schedules: bool,
    session_name: [u8; 10],
    sessions: Vec<Session>,
    /// Looked up per datagram and per order: seeded foldhash, not SipHash.
    by_peer: HashMap<Peer, usize, foldhash::fast::RandomState>,
    failures: HashMap<Peer, Failures>,
    symbols: HashMap<Symbol, InstrumentId, foldhash::fast::RandomState>,
    /// Symbol by instrument index.
    names: Vec<Symbol>,
    /// The engine's events for the request or timer being handled, made
    /// with room for 65,536 so the order path does not allocate (it grows
    /// past that rather than lose one).
    events: Vec<Event>,
    counters: Counters,
    scratch: Vec<u8>,
    /// The TCP connection whose packets are being handled, and its host.
    tcp_host: (u32, Ipv4Addr),
    /// Peers whose session ended since [`Gateway::take_unbound`] last
    /// took them (at most `MAX_UNBOUND`: the I/O shell forgets their link
    /// addresses).
    unbound: Vec<Peer>,
}

/// Unbound peers kept for [`Gateway::take_unbound`]; a caller that never
/// takes them (replay, the benches) loses the oldest.
const MAX_UNBOUND: usize = 1024;

impl Gateway {
    pub fn new(
        cfg: &GatewayConfig,
        sessions: &[SessionConfig],
        contracts: &ContractSet,
        session_name: [u8; 10],
    ) -> Gateway {
        Gateway {
            cfg: cfg.clone(),
            session_name,
            sessions: sessions
                .iter()
                .enumerate()
                .map(|(i, s)| Session::new(s, AccountId(i as u32), cfg))
                .collect(),
            by_peer: HashMap::with_capacity_and_hasher(sessions.len() * 2, Default::default()),
            failures: HashMap::new(),
            symbols: contracts.iter().map(|c| (c.symbol, c.id)).collect(),
            names: {
                let mut v = vec![Symbol::from_wire(*b"        "); contracts.len()];
                for c in contracts.iter() {
                    if let Some(slot) = v.get_mut(usize::from(c.id.0)) {
                        *slot = c.symbol;
                    }
                }
                v
            },
            events: Vec::with_capacity(1 << 16),
            follows_schedules: false,
            counters: Counters::default(),
            scratch: Vec::with_capacity(256),
            tcp_host: (0, Ipv4Addr::UNSPECIFIED),
            unbound: Vec::new(),
        }
    }

    /// Makes every session's day-long stores resident (returns the bytes
    /// touched).
    pub fn prefault(&mut self) -> usize {
        self.sessions.iter_mut().map(Session::prefault).sum()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Handles one datagram (one or more SoupBinTCP packets) from `peer`.
    /// Returns whether a login from `peer` was accepted in it: the only
    /// datagrams that vouch for the link-layer address they came from
    /// (AF_XDP replies go to the address a session logged in from, not to
    /// whatever frame last claimed its IP address).
    #[allow(clippy::too_many_arguments)]
    pub fn on_datagram(
        &mut self,
        now: Nanos,
        peer: Peer,
        datagram: &[u8],
        engine: &mut Engine,
        md: &mut impl EventSink,
        journal: &mut impl JournalSink,
        out: &mut impl Outbox,
    ) -> bool {
        // `logins` counts exactly the logins accepted.
        let logins = self.counters.logins;
        let mut rest = datagram;
        // The peer's session, looked up once per datagram (only a login or
        // a logout in it changes it).
        let mut bound = self.by_peer.get(&peer).copied();
        while !rest.is_empty() {
            let (packet, tail) = match Packet::parse(rest) {
                Ok(v) => v,
                Err(_) => {
                    self.counters.drop(Drop::Malformed);
                    break;
                }
            };
            let raw = &rest[..rest.len() - tail.len()];
            rest = tail;
            self.counters.packets += 1;
            bound = self.on_packet(now, peer, bound, packet, raw, engine, md, journal, out);
        }
        self.counters.logins > logins
    }

    /// Handles one packet from `peer`, whose session is `bound`; returns
    /// the peer's session after it. Only what can change state is
    /// journaled, first: a login that got a rate-limit token and was not
    /// refused for back-off (as its outcome, never with the password), and
    /// order traffic and logouts from a peer with a session (as the
    /// packet, `raw`). What anyone else sends changes nothing (it is
    /// counted and dropped): journaling it would let an unauthenticated
    /// sender fill the disk and force a journal write per batch. Replay
    /// comes through here too, with a journal that keeps nothing.
    #[allow(clippy::too_many_arguments)]
    fn on_packet(
        &mut self,
        now: Nanos,
        peer: Peer,
        bound: Option<usize>,
        packet: Packet<'_>,
        raw: &[u8],
        engine: &mut Engine,
        md: &mut impl EventSink,
        journal: &mut impl JournalSink,
        out: &mut impl Outbox,
    ) -> Option<usize> {
        match packet {
            Packet::LoginRequest(r) => {
                if self.in_backoff(now, peer, r) {
                    self.refuse_for_backoff(peer, out);
                    return self.by_peer.get(&peer).copied();
                }
                let who = self.authenticate(r);
                if !self.login_token(now, peer, who) {
                    self.counters.drop(Drop::RateLimitedSilent);
                } else {
                    let login = Login {
                        peer,
                        source: self.source_of(peer),
                        who,
                        requested_session: r.requested_session,
                        requested: r.requested_sequence().unwrap_or(0),
                    };
                    journal.record(record::LOGIN, now, &login.encode());
                    self.admit(now, &login, out);
                }
                return self.by_peer.get(&peer).copied();
            }
            Packet::UnsequencedData(msg) => {
                let Some(s) = bound else {
                    self.counters.drop(Drop::NotLoggedIn);
                    return None;
                };
                self.sessions[s].last_rx = now.0;
                // What changes nothing is counted and dropped before the
                // journal, so that a logged-in client cannot fill the disk
                // with it: bytes that are no OUCH request, and requests
                // past the rate limit that go unanswered (a bucket's state
                // is the same whether a refused take is replayed or not).
                let Ok(request) = crate::wire::ouch::Inbound::parse(msg) else {
                    self.counters.drop(Drop::BadMessage);
                    return bound;
                };
                if self.sessions[s].bucket.take(now.0) {
                    self.journal_packet(now, peer, raw, journal);
                    self.order(now, s, request, engine, md, out);
                } else if self.throttle_answers(now, s, request) {
                    self.journal_packet(now, peer, raw, journal);
                    self.throttled(now, s, request, out);
                } else {
                    self.counters.drop(Drop::RateLimitedSilent);
                }
            }
            Packet::ClientHeartbeat => {
                if let Some(s) = bound {
                    self.sessions[s].last_rx = now.0;
                }
            }
            Packet::LogoutRequest => {
                if let Some(s) = bound {
                    self.journal_packet(now, peer, raw, journal);
                    self.unbind(s);
                }
                // SoupBinTCP: the server ends the connection after a
                // Logout Request (once what was sent before it is out),
                // which frees its slot on the TCP port.
                out.close(peer);
                return None;
            }
            _ => self.counters.drop(Drop::Unexpected),
        }
        bound
    }

    /// Takes a rate-limit token for a login from `peer`: from its session
    /// when it has one, else from the session its credentials name
    /// (`who`); true for credentials that name no session (a failure is
    /// limited by the back-off instead). A login is checked, journaled and
    /// answered, so it costs what an order does: neither valid credentials
    /// sent again and again from another address nor a Login and Logout
    /// loop from the session's own peer can outrun its rate limit. Taken
    /// again in replay, for the same record.
    fn login_token(&mut self, now: Nanos, peer: Peer, who: Option<usize>) -> bool {
        let named = who.filter(|&s| s < self.sessions.len());
        match self.by_peer.get(&peer).copied().or(named) {
            Some(s) => self.sessions[s].bucket.take(now.0),
            None => true,
        }
    }

    /// Journals a packet from `peer` as it came (a [`record::PACKET`]).
    fn journal_packet(
        &mut self,
        now: Nanos,
        peer: Peer,
        raw: &[u8],
        journal: &mut impl JournalSink,
    ) {
        self.scratch.clear();
        self.scratch.extend_from_slice(&peer.encode());
        self.scratch.extend_from_slice(raw);
        journal.record(record::PACKET, now, &self.scratch);
    }

    /// Re-applies one journal record: state changes as they happened, no
    /// replies sent (they are regenerated into the outbound stores, where
    /// clients re-request them).
    pub fn replay(
        &mut self,
        kind: u8,
        now: Nanos,
        payload: &[u8],
        engine: &mut Engine,
        md: &mut impl EventSink,
    ) {
        let mut discard = Discard;
        match kind {
            record::PACKET => {
                let Some(peer) = Peer::decode(payload) else {
                    return;
                };
                if let Ok((packet, _)) = Packet::parse(&payload[7..]) {
                    self.counters.packets += 1;
                    let bound = self.by_peer.get(&peer).copied();
                    let raw = &payload[7..];
                    self.on_packet(
                        now,
                        peer,
                        bound,
                        packet,
                        raw,
                        engine,
                        md,
                        &mut NoJournal,
                        &mut discard,
                    );
                }
            }
            record::LOGIN => {
                if let Some(login) = Login::decode(payload) {
                    self.counters.packets += 1;
                    self.login_token(now, login.peer, login.who);
                    self.admit(now, &login, &mut discard);
                }
            }
            record::TIMEOUT => {
                if let Some(b) = payload.get(..4) {
                    let i = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    self.unbind(i);
                }
            }
            record::CLOCK => self.run_clock(now, engine, md, &mut discard, false),
            record::FOLLOW_SCHEDULES => self.run_clock(now, engine, md, &mut discard, true),
            _ => {}
        }
    }

    /// Whether the day's journal has the engine following the schedules.
    pub fn follows_schedules(&self) -> bool {
        self.follows_schedules
    }

    /// Puts every contract into the phase its schedule gives for `now` and
    /// keeps it there from then on (through [`Gateway::on_clock`]);
    /// journaled, so recovery reaches the same phases.
    pub fn follow_schedules(
        &mut self,
        now: Nanos,
        engine: &mut Engine,
        md: &mut impl EventSink,
        journal: &mut impl JournalSink,
        out: &mut impl Outbox,
    ) {
        journal.record(record::FOLLOW_SCHEDULES, now, &[]);
        self.run_clock(now, engine, md, out, true);
    }

    /// Runs the engine's timers that are due by `now` (a phase change from
    /// a schedule, the end of a halt), with their fills and cancels
    /// reported to the sessions as any other. Journaled only when a timer
    /// is due, so recovery replays it at the same point of the input.
    pub fn on_clock(
        &mut self,
        now: Nanos,
        engine: &mut Engine,
        md: &mut impl EventSink,
        journal: &mut impl JournalSink,
        out: &mut impl Outbox,
    ) {
        if engine.next_timer().is_none_or(|t| t > now) {
            return;
        }
        journal.record(record::CLOCK, now, &[]);
        self.run_clock(now, engine, md, out, false);
    }

    fn run_clock(
        &mut self,
        now: Nanos,
        engine: &mut Engine,
        md: &mut impl EventSink,
        out: &mut impl Outbox,
        follow: bool,
    ) {
        self.events.clear();
        if follow {
            self.follows_schedules = true;
            engine.follow_schedules(now, &mut self.events);
        } else {
            engine.advance(now, &mut self.events);
        }
        let events = std::mem::take(&mut self.events);
        for e in events.as_slice() {
            md.event(e);
            self.acknowledge(now, e, &orders::Answering::default(), out);
        }
        self.events = events;
    }

    /// Unbinds session `s` without a packet of its own (a timeout, a TCP
    /// connection gone with a restart): journaled, as [`record::TIMEOUT`].
    fn unbind_journaled(&mut self, now: Nanos, s: usize, journal: &mut impl JournalSink) {
        journal.record(record::TIMEOUT, now, &(s as u32).to_be_bytes());
        self.unbind(s);
    }

    fn unbind(&mut self, s: usize) {
        if let Some(sess) = self.sessions.get_mut(s) {
            if let Some(p) = sess.peer.take() {
                if self.by_peer.get(&p) == Some(&s) {
                    self.by_peer.remove(&p);
                }
                if self.unbound.len() == MAX_UNBOUND {
                    self.unbound.remove(0);
                }
                self.unbound.push(p);
            }
        }
    }

    /// Hands `f` every peer whose session ended (logged out or timed out)
    /// since the last call and that has none now (a Logout and a Login in
    /// one datagram leave the peer bound): the I/O shell stops trusting
    /// the link address it learned from their login.
    pub fn take_unbound(&mut self, mut f: impl FnMut(Peer)) {
        for p in self.unbound.drain(..) {
            if !self.by_peer.contains_key(&p) {
                f(p);
            }
        }
    }

    /// Sends heartbeats to idle bound sessions and logs out silent ones
    /// (closing a TCP one's connection). Timeouts are journaled so a replay
    /// unbinds at the same point.
    pub fn on_timer(&mut self, now: Nanos, journal: &mut impl JournalSink, out: &mut impl Outbox) {
        let hb = self.cfg.heartbeat_ms * 1_000_000;
        let idle = self.cfg.idle_timeout_ms * 1_000_000;
        let mut buf = [0u8; udp_label::LEN + 8];
        for i in 0..self.sessions.len() {
            let Some(peer) = self.sessions[i].peer else {
                continue;
            };
            if now.0.saturating_sub(self.sessions[i].last_rx) > idle {
                self.unbind_journaled(now, i, journal);
                out.close(peer);
                continue;
            }
            if now.0.saturating_sub(self.sessions[i].last_tx) >= hb {
                // Labelled with the next sequence number, so a client that
                // lost the last messages before a quiet spell notices.
                let mut len = 0;
                if let Peer::Udp(_) = peer {
                    len = udp_label::write(&mut buf, self.sessions[i].store.next_sequence());
                }
                if let Ok(n) =
                    soupbin::write_empty(&mut buf[len..], soupbin::kind::SERVER_HEARTBEAT)
                {
                    out.send(peer, &buf[..len + n]);
                }
                self.sessions[i].last_tx = now.0;
            }
        }
    }

    /// Called once recovery has rebuilt the state, before any packet is
    /// read; returns how many TCP sessions it released.
    ///
    /// Every session bound to a TCP connection is unbound (journaled, as a
    /// timeout is): connections are numbered afresh by every process, so a
    /// binding to connection 1 from before a restart would otherwise hand
    /// the session, its orders and its fills, to whoever connects first.
    /// UDP bindings stay (an address outlives a restart, and its client
    /// carries on), and their idle clocks start again now: heartbeats are
    /// not journaled, so the replayed clock is the session's last journaled
    /// packet, and a client that only heartbeated for a while before the
    /// crash would be timed out at the first timer tick.
    pub fn after_restart(&mut self, now: Nanos, journal: &mut impl JournalSink) -> usize {
        let mut released = 0;
        for i in 0..self.sessions.len() {
            match self.sessions[i].peer {
                Some(Peer::Tcp(_)) => {
                    self.unbind_journaled(now, i, journal);
                    released += 1;
                }
                Some(Peer::Udp(_)) => {
                    let s = &mut self.sessions[i];
                    s.last_rx = s.last_rx.max(now.0);
                }
                None => {}
            }
        }
        released
    }

    /// Records that something was sent to session `s` now (heartbeat timer).
    pub fn note_sent(&mut self, peer: Peer, now: Nanos) {
        if let Some(&s) = self.by_peer.get(&peer) {
            self.sessions[s].last_tx = now.0;
        }
    }

    /// Sends End of Session to every bound session.
    pub fn end_of_session(&mut self, out: &mut impl Outbox) {
        let mut buf = [0u8; 8];
        for s in &self.sessions {
            if let (Some(peer), Ok(n)) = (
                s.peer,
                soupbin::write_empty(&mut buf, soupbin::kind::END_OF_SESSION),
            ) {
                out.send(peer, &buf[..n]);
            }
        }
    }

    /// Outbound sequence number the session will use next (tests, recovery checks).
    pub fn next_sequence(&self, username: &str) -> Option<u64> {
        self.sessions
            .iter()
            .find(|s| crate::wire::trim(&s.username) == username.as_bytes())
            .map(|s| s.store.next_sequence())
    }
}

#[cfg(test)]
mod tests;
