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
//!   sequence numbers, it goes whole and the bucket goes into debt, and
//!   a TCP login asking for a re-send waits until the debt is repaid.
//! - **Journal.** Only what can change state is journaled: logins not
//!   refused for back-off, and order traffic and logouts from a peer with
//!   a session. Anything else is counted and dropped without a disk write.
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
//!   released after a restart ([`Gateway::release_tcp_sessions`]).
//! - **Back-off.** Failed logins are counted per source host; past
//!   `login_failures_before_backoff` its logins are refused unchecked for
//!   a doubling time, except the bound client's own re-request. Only a
//!   successful login clears the count. A TCP connection's host is told
//!   by [`Gateway::set_tcp_host`] and journaled with each login, so TCP
//!   and UDP clients of one host share its count.

mod session;
mod state;
mod tokens;

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use crate::config::{GatewayConfig, SessionConfig};
use crate::contract::ContractSet;
use crate::engine::{CancelReason, Engine, Event, EventBuffer, EventSink, NewOrder, RejectReason};
use crate::types::{AccountId, InstrumentId, Nanos, Symbol};
use crate::wire::ouch::{self, Token};
use crate::wire::soupbin::{self, Packet};
use serde::{Deserialize, Serialize};
use zerocopy::IntoBytes;

use session::Session;
pub use session::{OutboundState, OutboundStore, TokenBucket};
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

/// Where replies go.
pub trait Outbox {
    fn send(&mut self, peer: Peer, bytes: &[u8]);

    /// One Sequenced Data packet numbered `seq` carrying `msg`. A UDP peer
    /// needs the sequence label in front of it unless the packet directly
    /// follows the one numbered `seq - 1` in the same datagram: an outbox
    /// that packs replies into datagrams frames them in place and labels
    /// only where the numbering breaks ([`crate::exchange`]'s reply holding
    /// area). This default sends every packet alone, labelled for UDP.
    fn send_sequenced(&mut self, peer: Peer, seq: u64, msg: &[u8]) {
        let mut pkt = [0u8; udp_label::LEN + MAX_SEQUENCED_PACKET];
        let mut len = 0;
        if let Peer::Udp(_) = peer {
            len = udp_label::write(&mut pkt, seq);
        }
        if let Ok(n) = soupbin::write_packet(&mut pkt[len..], soupbin::kind::SEQUENCED_DATA, msg) {
            self.send(peer, &pkt[..len + n]);
        }
    }
}

/// The longest Sequenced Data packet the gateway sends (header included;
/// OUCH's longest outbound message is Replaced, 80 bytes).
pub const MAX_SEQUENCED_PACKET: usize = 128;

/// Collects replies (tests, the TCP shell).
impl Outbox for Vec<(Peer, Vec<u8>)> {
    fn send(&mut self, peer: Peer, bytes: &[u8]) {
        self.push((peer, bytes.to_vec()));
    }
}

/// Where state-changing inbound packets are recorded before they take effect.
pub trait JournalSink {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]);
}

/// Journals nothing (benchmarks, replay).
impl JournalSink for () {
    fn record(&mut self, _kind: u8, _now: Nanos, _payload: &[u8]) {}
}

/// The sequence label that starts each UDP datagram carrying sequenced data:
/// a SoupBinTCP Debug packet whose text is `seq ` and the number, right
/// aligned in 20 characters (as in Login Accepted).
pub mod udp_label {
    use crate::wire::soupbin;

    pub const PREFIX: &[u8; 4] = b"seq ";
    /// Bytes of the whole Debug packet.
    pub const LEN: usize = soupbin::HEADER_LEN + 24;

    /// Writes the label for `seq` at the front of `out` (at least [`LEN`] bytes).
    pub fn write(out: &mut [u8], seq: u64) -> usize {
        let mut text = [0u8; 24];
        text[..4].copy_from_slice(PREFIX);
        text[4..].copy_from_slice(&soupbin::numeric_left::<20>(seq));
        soupbin::write_packet(out, soupbin::kind::DEBUG, &text).unwrap_or(0)
    }

    /// The sequence number in a Debug packet's payload, if it is a label.
    pub fn parse(payload: &[u8]) -> Option<u64> {
        let digits = payload.strip_prefix(PREFIX)?;
        if digits.len() != 20 {
            return None;
        }
        let mut v = 0u64;
        let mut any = false;
        for &b in digits {
            match b {
                b' ' if !any => {}
                b'0'..=b'9' => {
                    any = true;
                    v = v.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
                }
                _ => return None,
            }
        }
        any.then_some(v)
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

/// A login as the gateway decided it, and as the journal keeps it
/// ([`record::LOGIN`]): never with the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Login {
    peer: Peer,
    /// What its failures count against: the client's host.
    source: Peer,
    /// The session its credentials named, if any.
    who: Option<usize>,
    requested_session: [u8; 10],
    requested: u64,
}

impl Login {
    /// peer (7), session (u32, `u32::MAX` for none), requested session
    /// (10), requested sequence (u64), source (7).
    const LEN: usize = 36;

    fn encode(&self) -> [u8; Login::LEN] {
        let mut b = [0u8; Login::LEN];
        b[..7].copy_from_slice(&self.peer.encode());
        let who = self
            .who
            .and_then(|s| u32::try_from(s).ok())
            .unwrap_or(u32::MAX);
        b[7..11].copy_from_slice(&who.to_be_bytes());
        b[11..21].copy_from_slice(&self.requested_session);
        b[21..29].copy_from_slice(&self.requested.to_be_bytes());
        b[29..36].copy_from_slice(&self.source.encode());
        b
    }

    fn decode(b: &[u8]) -> Option<Login> {
        let b = b.get(..Login::LEN)?;
        let who = u32::from_be_bytes(b[7..11].try_into().ok()?);
        Some(Login {
            peer: Peer::decode(&b[..7])?,
            source: Peer::decode(&b[29..36])?,
            who: (who != u32::MAX).then_some(who as usize),
            requested_session: b[11..21].try_into().ok()?,
            requested: u64::from_be_bytes(b[21..29].try_into().ok()?),
        })
    }
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
    /// from where the replay stopped), and TCP logins asking for a re-send
    /// refused while the session's bucket is in debt for the last one.
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

    /// How many packets or messages were dropped or refused for `d`.
    pub fn dropped(&self, d: Drop) -> u64 {
        self.drops.get(&d).copied().unwrap_or(0)
    }

    /// How many requests were rejected (an OUCH Rejected sent) for `r`.
    pub fn rejected(&self, r: RejectReason) -> u64 {
        self.rejects.get(&r).copied().unwrap_or(0)
    }
}

/// A fingerprint of a request's bytes: tells a re-sent request from a
/// different one reusing its token. Eight bytes a step (byte-wise FNV-1a
/// was a chain of 47 dependent multiplies on every Enter Order's path).
/// Each step is a bijection of the state for a given
/// chunk (xor, multiply by an odd constant, rotate), so two requests of
/// the same length that differ in one chunk always differ here. Stored in
/// snapshots: changing it needs a new snapshot version.
fn fingerprint(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let step = |h: u64, chunk: u64| (h ^ chunk).wrapping_mul(K).rotate_left(31);
    let mut chunks = bytes.chunks_exact(8);
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ bytes.len() as u64;
    for c in &mut chunks {
        h = step(h, u64::from_le_bytes(c.try_into().unwrap_or_default()));
    }
    let mut tail = [0u8; 8];
    tail[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
    step(h, u64::from_le_bytes(tail))
}

/// Largest datagram the gateway builds when it replays a session's
/// messages (fits a 1500-byte MTU with IP and UDP headers).
const MAX_DATAGRAM: usize = 1400;

/// The OUCH reject reason for an engine reject reason.
pub fn ouch_reject_code(r: RejectReason) -> u8 {
    match r {
        RejectReason::UnknownInstrument => ouch::reject::INVALID_STOCK,
        RejectReason::PriceOffTick | RejectReason::PriceOutsideLimits => {
            ouch::reject::INVALID_PRICE
        }
        RejectReason::PriceOutsideBand => ouch::reject::INVALID_PRICE,
        RejectReason::QtyAboveMax => ouch::reject::SHARES_EXCEED_THRESHOLD,
        // No shares: OUCH 4.2 has no code of its own for it.
        RejectReason::InvalidQty => ouch::reject::OTHER,
        RejectReason::MarketNotOpen => ouch::reject::HALTED,
        RejectReason::TifNotAllowedNow => ouch::reject::NOT_ALLOWED_NOW,
        RejectReason::CapacityExhausted => ouch::reject::PROCESSING_ERROR,
        RejectReason::RateLimited => ouch::reject::FLOW_CONTROL,
        RejectReason::RiskLimit => ouch::reject::EXCEEDED_DOLLAR_VALUE_LIMIT,
        RejectReason::PositionLimit => ouch::reject::EXCEEDED_SHARES_LIMIT,
        RejectReason::TooManyOrders => ouch::reject::OTHER,
        RejectReason::DuplicateToken | RejectReason::UnknownOrder => ouch::reject::OTHER,
    }
}

/// The OUCH cancel reason for an engine cancel reason.
pub fn ouch_cancel_code(r: CancelReason) -> u8 {
    match r {
        CancelReason::UserRequested => ouch::cancel::USER_REQUESTED,
        CancelReason::ImmediateOrCancel | CancelReason::FillOrKill => {
            ouch::cancel::IMMEDIATE_OR_CANCEL
        }
        CancelReason::SelfTrade => ouch::cancel::SELF_MATCH_PREVENTION,
        CancelReason::MarketClosed => ouch::cancel::CLOSED,
    }
}

/// Constant-time equality of two fixed-size fields.
fn ct_eq<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let mut diff = 0u8;
    for i in 0..N {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Failures {
    count: u32,
    until: u64,
}

/// Most sources remembered for login back-off; beyond it the table is reset
/// (bounding memory against address-spraying).
const MAX_FAILURE_SOURCES: usize = 4096;

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
    events: EventBuffer,
    counters: Counters,
    scratch: Vec<u8>,
    /// The TCP connection whose packets are being handled, and its host.
    tcp_host: (u32, Ipv4Addr),
}

/// Tags given to the engine: session index in the high 32 bits, the
/// session's token number in the low 32.
fn tag(session: usize, token: u32) -> u64 {
    ((session as u64) << 32) | u64::from(token)
}

fn untag(tag: u64) -> (usize, u32) {
    ((tag >> 32) as usize, tag as u32)
}

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
            events: EventBuffer::with_capacity(1 << 16),
            follows_schedules: false,
            counters: Counters::default(),
            scratch: Vec::with_capacity(256),
            tcp_host: (0, Ipv4Addr::UNSPECIFIED),
        }
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Handles one datagram (one or more SoupBinTCP packets) from `peer`.
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
    ) {
        let mut rest = datagram;
        // The peer's session, looked up once per datagram (only a login or
        // a logout in it changes it).
        let mut bound = self.by_peer.get(&peer).copied();
        while !rest.is_empty() {
            let (packet, tail) = match Packet::parse(rest) {
                Ok(v) => v,
                Err(_) => {
                    self.counters.drop(Drop::Malformed);
                    return;
                }
            };
            let raw = &rest[..rest.len() - tail.len()];
            rest = tail;
            self.counters.packets += 1;
            bound = self.on_packet(now, peer, bound, packet, raw, engine, md, journal, out);
        }
    }

    /// Handles one packet from `peer`, whose session is `bound`; returns
    /// the peer's session after it. Only what can change state is
    /// journaled, first: a login not refused for back-off (as its
    /// outcome, never with the password), and order traffic and logouts
    /// from a peer with a session (as the packet, `raw`). What anyone else
    /// sends changes nothing (it is counted and dropped): journaling it
    /// would let an unauthenticated sender fill the disk and force a
    /// journal write per batch. Replay comes through here too, with a
    /// journal that keeps nothing.
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
                } else {
                    let login = Login {
                        peer,
                        source: self.source_of(peer),
                        who: self.authenticate(r),
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
                self.journal_packet(now, peer, raw, journal);
                self.sessions[s].last_rx = now.0;
                if self.sessions[s].bucket.take(now.0) {
                    self.order(now, s, msg, engine, md, out);
                } else {
                    self.throttled(now, s, msg, out);
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
                return None;
            }
            _ => self.counters.drop(Drop::Unexpected),
        }
        bound
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

    /// Tells the gateway the client host of TCP connection `id`, before
    /// its packets: failed logins are counted per host, so one failing
    /// TCP client does not make every other one wait.
    pub fn set_tcp_host(&mut self, id: u32, host: Ipv4Addr) {
        self.tcp_host = (id, host);
    }

    /// What `peer`'s login failures count against: its host.
    fn source_of(&self, peer: Peer) -> Peer {
        match peer {
            Peer::Tcp(id) if self.tcp_host.0 == id => {
                Peer::Udp(SocketAddrV4::new(self.tcp_host.1, 0))
            }
            other => other.source(),
        }
    }

    /// Whether a login from `peer` is refused unchecked: its source failed
    /// too often lately. A re-request (a login for the session the peer is
    /// bound to, with its credentials) is never refused this way, so that
    /// failures from a forged address cannot stop a client's recovery.
    fn in_backoff(&self, now: Nanos, peer: Peer, r: &soupbin::LoginRequest) -> bool {
        let backing_off = self
            .failures
            .get(&self.source_of(peer))
            .is_some_and(|f| f.until > now.0);
        backing_off
            && !self.by_peer.get(&peer).is_some_and(|&s| {
                let sess = &self.sessions[s];
                ct_eq(&sess.username, &r.username) & ct_eq(&sess.password, &r.password)
            })
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
        let events = std::mem::replace(&mut self.events, EventBuffer::with_capacity(0));
        for e in events.as_slice() {
            md.event(e);
            self.acknowledge(now, e, None, out);
        }
        self.events = events;
    }

    /// A login refused unchecked: its source is backing off.
    fn refuse_for_backoff(&mut self, peer: Peer, out: &mut impl Outbox) {
        self.counters.drop(Drop::LoginBackoff);
        reject_login(peer, soupbin::reject::NOT_AUTHORIZED, out);
    }

    /// The session whose username and password `r` gives. Every session
    /// is compared, username and password in constant time, so the time
    /// taken says nothing about which part was wrong.
    fn authenticate(&self, r: &soupbin::LoginRequest) -> Option<usize> {
        let mut found = None;
        for (i, s) in self.sessions.iter().enumerate() {
            let ok = ct_eq(&s.username, &r.username) & ct_eq(&s.password, &r.password);
            if ok && found.is_none() {
                found = Some(i);
            }
        }
        found
    }

    /// A login checked: `who` is the session its credentials name (`None`
    /// when they name none). Live, this follows [`Gateway::authenticate`];
    /// in replay it comes from the journal, which never holds a password.
    fn admit(&mut self, now: Nanos, login: &Login, out: &mut impl Outbox) {
        let mut buf = [0u8; 64];
        let Login {
            peer,
            source,
            who,
            requested_session,
            requested,
        } = *login;
        let Some(s) = who.filter(|&s| s < self.sessions.len()) else {
            self.counters.drop(Drop::BadCredentials);
            if self.failures.len() >= MAX_FAILURE_SOURCES && !self.failures.contains_key(&source) {
                self.make_room_for_a_failure(now);
            }
            let e = self.failures.entry(source).or_default();
            e.count += 1;
            if e.count >= self.cfg.login_failures_before_backoff {
                let doublings = (e.count - self.cfg.login_failures_before_backoff).min(10);
                e.until = now.0 + self.cfg.login_backoff_ms * 1_000_000 * (1 << doublings);
            }
            return reject_login(peer, soupbin::reject::NOT_AUTHORIZED, out);
        };
        let wanted = crate::wire::trim(&requested_session);
        let bound_elsewhere = self.sessions[s].peer.is_some_and(|p| p != peer);
        // One session per address: inbound traffic names its session by
        // the address it comes from.
        let peer_has_another = self.by_peer.get(&peer).is_some_and(|&other| other != s);
        let (next, oldest) = {
            let store = &self.sessions[s].store;
            (store.next_sequence(), store.oldest())
        };
        let from = if requested == 0 || requested > next {
            next
        } else {
            requested.max(oldest)
        };
        // A TCP stream has no sequence numbers: a re-send cut short would
        // misnumber every later message, so it goes whole, the session's
        // bucket going into debt for it; while the debt lasts, a TCP login
        // asking for a re-send is refused (Session not available: later).
        let labelled = matches!(peer, Peer::Udp(_));
        let in_debt = !labelled && from < next && self.sessions[s].bucket.owes(now.0);
        if in_debt {
            self.counters.drop(Drop::ResendRateLimited);
        }
        if (!wanted.is_empty() && wanted != &self.session_name[..])
            || bound_elsewhere
            || peer_has_another
            || in_debt
        {
            if !in_debt {
                self.counters.drop(Drop::SessionInUse);
            }
            return reject_login(peer, soupbin::reject::SESSION_NOT_AVAILABLE, out);
        }
        // Only a login that succeeds clears its source's failures (a valid
        // password then refused must not reset the count for guesses at
        // another session's).
        self.failures.remove(&source);
        self.counters.logins += 1;
        let sess = &mut self.sessions[s];
        sess.peer = Some(peer);
        sess.last_rx = now.0;
        sess.last_tx = now.0;
        self.by_peer.insert(peer, s);
        if requested != 0 && requested < oldest {
            self.counters.drop(Drop::ResendTooOld);
        }
        if let Ok(n) = soupbin::write_login_accepted(&mut buf, &self.session_name, from) {
            out.send(peer, &buf[..n]);
        }
        if !labelled {
            self.sessions[s].bucket.take_owing(now.0, next - from);
        }
        // The re-sent messages, packed into datagrams that each start with
        // the sequence label of their first message.
        let mut dgram = [0u8; MAX_DATAGRAM];
        let mut len = 0;
        for seq in from..next {
            // A re-sent message takes a rate-limit token as an order does:
            // a datagram of re-requests cannot replay the window again
            // and again. A UDP client asks again from where this stops
            // (the labels show it the gap).
            if labelled && !self.sessions[s].bucket.take(now.0) {
                *self
                    .counters
                    .drops
                    .entry(Drop::ResendRateLimited)
                    .or_default() += next - seq;
                break;
            }
            let Some(msg) = self.sessions[s].store.get(seq) else {
                continue;
            };
            if len > 0 && len + soupbin::HEADER_LEN + msg.len() > MAX_DATAGRAM {
                out.send(peer, &dgram[..len]);
                len = 0;
            }
            if len == 0 && labelled {
                len = udp_label::write(&mut dgram, seq);
            }
            if let Ok(n) =
                soupbin::write_packet(&mut dgram[len..], soupbin::kind::SEQUENCED_DATA, msg)
            {
                len += n;
            }
        }
        if len > 0 {
            out.send(peer, &dgram[..len]);
        }
    }

    /// Frees a slot of the full back-off table for a new source: the
    /// entries not backing off now go first, else the one whose back-off
    /// ends soonest. Never the whole table: a sender spraying failures
    /// from forged addresses must not clear its own back-off.
    fn make_room_for_a_failure(&mut self, now: Nanos) {
        self.failures.retain(|_, f| f.until > now.0);
        if self.failures.len() >= MAX_FAILURE_SOURCES {
            let soonest = self
                .failures
                .iter()
                .min_by_key(|(p, f)| (f.until, p.encode()))
                .map(|(p, _)| *p);
            if let Some(p) = soonest {
                self.failures.remove(&p);
            }
        }
    }

    /// A message over the session's rate limit (see the module docs).
    fn throttled(&mut self, now: Nanos, s: usize, msg: &[u8], out: &mut impl Outbox) {
        let token = match ouch::Inbound::parse(msg) {
            Ok(ouch::Inbound::Enter(e)) => Some(e.token),
            Ok(ouch::Inbound::Replace(r)) => Some(r.replacement_token),
            _ => None,
        };
        let sess = &mut self.sessions[s];
        match token {
            // A used token names an earlier request: never reject it again.
            Some(t) if !sess.used(&t) && sess.reject_bucket.take(now.0) => {
                // The token is used by its reject, as by any other: a copy
                // of the request re-sent by the client before the reject
                // reached it is then a duplicate, not a second answer.
                if sess.tokens_used() < self.cfg.max_tokens_per_session as usize {
                    let _ = sess.claim(t, fingerprint(msg));
                }
                self.counters.drop(Drop::RateLimited);
                self.counters.reject(RejectReason::RateLimited);
                self.send_rejected(now, s, t, RejectReason::RateLimited, out);
            }
            _ => self.counters.drop(Drop::RateLimitedSilent),
        }
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
            }
        }
    }

    fn order(
        &mut self,
        now: Nanos,
        s: usize,
        msg: &[u8],
        engine: &mut Engine,
        md: &mut impl EventSink,
        out: &mut impl Outbox,
    ) {
        let inbound = match ouch::Inbound::parse(msg) {
            Ok(m) => m,
            Err(_) => return self.counters.drop(Drop::BadMessage),
        };
        self.counters.orders += 1;
        let account = self.sessions[s].account;
        self.events.clear();
        let mut previous: Option<Token> = None;
        // The side of the order a Modify Order names: its answer is Order
        // Modified, not Order Canceled.
        let mut modified: Option<crate::types::Side> = None;
        match inbound {
            ouch::Inbound::Enter(e) => {
                let Some(t) = self.claim(now, s, e.token, msg, out) else {
                    return;
                };
                let Ok(side) = e.side() else {
                    self.counters.drop(Drop::BadMessage);
                    return self.send_rejected_code(now, s, e.token, ouch::reject::OTHER, out);
                };
                if !e.min_qty_supported() {
                    return self.refuse_min_qty(now, s, e.token, out);
                }
                let Some(&instrument) = self.symbols.get(&e.symbol()) else {
                    *self
                        .counters
                        .rejects
                        .entry(RejectReason::UnknownInstrument)
                        .or_default() += 1;
                    return self.send_rejected(
                        now,
                        s,
                        e.token,
                        RejectReason::UnknownInstrument,
                        out,
                    );
                };
                let o = NewOrder {
                    account,
                    tag: tag(s, t),
                    instrument,
                    side,
                    price: e.price(),
                    qty: e.qty(),
                    tif: e.tif(),
                };
                engine.enter(now, &o, &mut self.events);
            }
            ouch::Inbound::Replace(r) => {
                // The order replaced, looked up before the new token is
                // claimed (a replace naming its own new token is unknown).
                let order = self.sessions[s].live_order(&r.existing_token);
                let Some(t) = self.claim(now, s, r.replacement_token, msg, out) else {
                    return;
                };
                if !r.min_qty_supported() {
                    return self.refuse_min_qty(now, s, r.replacement_token, out);
                }
                let Some((_, order)) = order else {
                    *self
                        .counters
                        .rejects
                        .entry(RejectReason::UnknownOrder)
                        .or_default() += 1;
                    return self.send_rejected(
                        now,
                        s,
                        r.replacement_token,
                        RejectReason::UnknownOrder,
                        out,
                    );
                };
                previous = Some(r.existing_token);
                engine.replace(
                    now,
                    account,
                    order,
                    tag(s, t),
                    r.price(),
                    r.qty(),
                    &mut self.events,
                );
            }
            ouch::Inbound::Cancel(c) => {
                let Some((t, order)) = self.sessions[s].live_order(&c.token) else {
                    *self
                        .counters
                        .rejects
                        .entry(RejectReason::UnknownOrder)
                        .or_default() += 1;
                    return self.send_rejected(now, s, c.token, RejectReason::UnknownOrder, out);
                };
                engine.cancel(now, account, order, c.qty(), tag(s, t), &mut self.events);
                self.answer_a_cancel_that_changed_nothing(now, s, c.token, out);
            }
            ouch::Inbound::Modify(m) => {
                let live = self.sessions[s].live_order(&m.token);
                let Some(((t, order), resting)) =
                    live.and_then(|(t, order)| Some(((t, order), engine.order(order)?)))
                else {
                    *self
                        .counters
                        .rejects
                        .entry(RejectReason::UnknownOrder)
                        .or_default() += 1;
                    return self.send_rejected(now, s, m.token, RejectReason::UnknownOrder, out);
                };
                // On equities Modify switches a sell between sell, sell
                // short and short exempt; a futures order keeps its side,
                // so Modify is a cancel down to a size.
                if m.side() != Ok(resting.side) {
                    self.counters.drop(Drop::BadMessage);
                    return self.send_rejected_code(now, s, m.token, ouch::reject::OTHER, out);
                }
                engine.cancel(now, account, order, m.qty(), tag(s, t), &mut self.events);
                if self.events.as_slice().is_empty() {
                    // At or above the open size: nothing changes.
                    let m = ouch::OrderModified::new(
                        now.since_midnight(),
                        m.token,
                        resting.side,
                        resting.qty,
                    );
                    self.send_sequenced(now, s, m.as_bytes(), out);
                }
                modified = Some(resting.side);
            }
        }
        let events = std::mem::replace(&mut self.events, EventBuffer::with_capacity(0));
        for e in events.as_slice() {
            md.event(e);
            match (modified, *e) {
                (
                    Some(side),
                    Event::Canceled {
                        tag,
                        remaining,
                        reason: CancelReason::UserRequested,
                        ..
                    },
                ) => self.report_modified(now, tag, side, remaining, out),
                _ => self.acknowledge(now, e, previous, out),
            }
        }
        self.events = events;
    }

    /// The answer to a Modify Order that took lots off: Order Modified
    /// with the shares left.
    fn report_modified(
        &mut self,
        now: Nanos,
        tag: u64,
        side: crate::types::Side,
        remaining: crate::types::Qty,
        out: &mut impl Outbox,
    ) {
        let (s, t) = untag(tag);
        if remaining.is_zero() {
            self.sessions[s].finished(t);
        }
        let token = self.sessions[s].token(t);
        let m = ouch::OrderModified::new(now.since_midnight(), token, side, remaining);
        self.send_sequenced(now, s, m.as_bytes(), out);
    }

    /// An Enter or Replace whose minimum quantity tokex does not take
    /// ([`ouch::min_qty_supported`]): Invalid Minimum Quantity.
    fn refuse_min_qty(&mut self, now: Nanos, s: usize, token: Token, out: &mut impl Outbox) {
        self.counters.reject(RejectReason::InvalidQty);
        self.send_rejected_code(now, s, token, ouch::reject::INVALID_MIN_QTY, out);
    }

    /// A cancel to a size at or above the order's open size changes
    /// nothing, and the engine says nothing: it is answered with
    /// an Order Canceled of 0 lots, so that every request gets an answer
    /// (a client waiting for one would re-send it for ever).
    fn answer_a_cancel_that_changed_nothing(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        out: &mut impl Outbox,
    ) {
        if self.events.as_slice().is_empty() {
            let m = ouch::Canceled::new(
                now.since_midnight(),
                token,
                crate::types::Qty::ZERO,
                ouch::cancel::USER_REQUESTED,
            );
            self.send_sequenced(now, s, m.as_bytes(), out);
        }
    }

    /// Claims `token` for request `msg` of session `s`; its number, or
    /// `None` when the request was handled here. Processed once per session
    /// per day: a re-sent request (same bytes) is dropped and counted, the
    /// client recovering its answer by sequence number; a different request
    /// reusing the token is rejected.
    fn claim(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        msg: &[u8],
        out: &mut impl Outbox,
    ) -> Option<u32> {
        let fp = fingerprint(msg);
        let sess = &self.sessions[s];
        // (The count first: the lookup runs only once the day's tokens are
        // used up, so a re-send of a used one is still recognised.)
        if sess.tokens_used() >= self.cfg.max_tokens_per_session as usize && !sess.used(&token) {
            self.counters.reject(RejectReason::CapacityExhausted);
            self.send_rejected(now, s, token, RejectReason::CapacityExhausted, out);
            return None;
        }
        match self.sessions[s].claim(token, fp) {
            Ok(t) => Some(t),
            Err(used) if used == fp => {
                self.counters.drop(Drop::Resent);
                None
            }
            Err(_) => {
                self.counters.reject(RejectReason::DuplicateToken);
                self.send_rejected(now, s, token, RejectReason::DuplicateToken, out);
                None
            }
        }
    }

    fn send_rejected(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        reason: RejectReason,
        out: &mut impl Outbox,
    ) {
        self.send_rejected_code(now, s, token, ouch_reject_code(reason), out);
    }

    /// A Rejected with OUCH reason `code` for `token`, sequenced for `s`.
    fn send_rejected_code(
        &mut self,
        now: Nanos,
        s: usize,
        token: Token,
        code: u8,
        out: &mut impl Outbox,
    ) {
        let m = ouch::Rejected::new(now.since_midnight(), token, code);
        self.send_sequenced(now, s, m.as_bytes(), out);
    }

    /// Sequences one outbound message for session `s`: stores it for
    /// re-request and sends it if the session is bound (to a UDP peer after
    /// its sequence label).
    fn send_sequenced(&mut self, now: Nanos, s: usize, msg: &[u8], out: &mut impl Outbox) {
        let sess = &mut self.sessions[s];
        let seq = sess.store.next_sequence();
        sess.store.push(msg);
        if let Some(peer) = sess.peer {
            sess.last_tx = now.0;
            out.send_sequenced(peer, seq, msg);
        }
    }

    fn acknowledge(
        &mut self,
        now: Nanos,
        e: &Event,
        previous: Option<Token>,
        out: &mut impl Outbox,
    ) {
        let ts = now.since_midnight();
        match *e {
            Event::Accepted {
                tag,
                order,
                instrument,
                side,
                price,
                qty,
                tif,
                ..
            } => {
                let (s, t) = untag(tag);
                let token = self.sessions[s].set_order(t, order);
                let f = ouch::OrderFields {
                    timestamp: ts,
                    token,
                    side,
                    qty,
                    symbol: self.symbol(instrument),
                    price,
                    tif,
                    order_reference: order.0,
                    live: true,
                };
                self.send_sequenced(now, s, ouch::Accepted::new(&f).as_bytes(), out);
            }
            Event::Rejected { tag, reason, .. } => {
                *self.counters.rejects.entry(reason).or_default() += 1;
                let (s, t) = untag(tag);
                let token = self.sessions[s].token(t);
                self.send_rejected(now, s, token, reason, out);
            }
            Event::Replaced {
                tag,
                order,
                instrument,
                side,
                price,
                qty,
                ..
            } => {
                let (s, t) = untag(tag);
                let token = self.sessions[s].set_order(t, order);
                let prev = previous.unwrap_or(token);
                self.sessions[s].forget(&prev);
                let f = ouch::OrderFields {
                    timestamp: ts,
                    token,
                    side,
                    qty,
                    symbol: self.symbol(instrument),
                    price,
                    tif: crate::types::Tif::Day,
                    order_reference: order.0,
                    live: true,
                };
                self.send_sequenced(now, s, ouch::Replaced::new(&f, prev).as_bytes(), out);
            }
            Event::Canceled {
                tag,
                decrement,
                remaining,
                reason,
                ..
            } => {
                let (s, t) = untag(tag);
                if remaining.is_zero() {
                    self.sessions[s].finished(t);
                }
                let token = self.sessions[s].token(t);
                self.send_sequenced(
                    now,
                    s,
                    ouch::Canceled::new(ts, token, decrement, ouch_cancel_code(reason)).as_bytes(),
                    out,
                );
            }
            Event::Executed {
                match_number,
                price,
                qty,
                taker,
                maker,
                ..
            } => {
                for (p, is_maker) in [(taker, false), (maker, true)] {
                    let (s, t) = untag(p.tag);
                    if s < self.sessions.len() {
                        if p.remaining.is_zero() {
                            self.sessions[s].finished(t);
                        }
                        let token = self.sessions[s].token(t);
                        self.send_sequenced(
                            now,
                            s,
                            ouch::Executed::new(ts, token, qty, price, is_maker, match_number)
                                .as_bytes(),
                            out,
                        );
                    }
                }
            }
            _ => {}
        }
    }

    fn symbol(&self, instrument: InstrumentId) -> Symbol {
        self.names
            .get(usize::from(instrument.0))
            .copied()
            .unwrap_or(Symbol::from_wire(*b"        "))
    }

    /// Sends heartbeats to idle bound sessions and logs out silent ones.
    /// Timeouts are journaled so a replay unbinds at the same point.
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

    /// Unbinds every session bound to a TCP connection (journaled, as a
    /// timeout is). Called once recovery has rebuilt the state: connections
    /// are numbered afresh by every process, so a binding to connection 1
    /// from before a restart would otherwise hand the session, its orders
    /// and its fills, to whoever connects first. UDP bindings stay: an
    /// address outlives a restart, and its client carries on.
    pub fn release_tcp_sessions(&mut self, now: Nanos, journal: &mut impl JournalSink) -> usize {
        let mut released = 0;
        for i in 0..self.sessions.len() {
            if let Some(Peer::Tcp(_)) = self.sessions[i].peer {
                self.unbind_journaled(now, i, journal);
                released += 1;
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

/// Sends `peer` a Login Rejected with reason `code`.
fn reject_login(peer: Peer, code: u8, out: &mut impl Outbox) {
    let mut buf = [0u8; 8];
    if let Ok(n) = soupbin::write_packet(&mut buf, soupbin::kind::LOGIN_REJECTED, &[code]) {
        out.send(peer, &buf[..n]);
    }
}

/// Keeps no journal record (replay: the records are being read).
struct NoJournal;

impl JournalSink for NoJournal {
    fn record(&mut self, _kind: u8, _now: Nanos, _payload: &[u8]) {}
}

/// Drops every reply (replay, benchmarks).
pub struct Discard;

impl Outbox for Discard {
    fn send(&mut self, _peer: Peer, _bytes: &[u8]) {}
}

#[cfg(test)]
mod tests;
