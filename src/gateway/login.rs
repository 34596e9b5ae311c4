//! Logins: credentials checked in constant time, back-off per source host
//! after repeated failures, the binding of a session to the peer it logged
//! in from, and the re-send a login asks for (rate limited). A login is
//! journaled as its outcome ([`Login`]), never with its password.

use std::net::{Ipv4Addr, SocketAddrV4};

use serde::{Deserialize, Serialize};

use super::outbox::udp_label;
use super::{Drop, Gateway, Outbox, Peer, MAX_DATAGRAM};
use crate::types::Nanos;
use crate::wire::soupbin;

/// A login as the gateway decided it, and as the journal keeps it
/// ([`record::LOGIN`]): never with the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Login {
    pub(super) peer: Peer,
    /// What its failures count against: the client's host.
    pub(super) source: Peer,
    /// The session its credentials named, if any.
    pub(super) who: Option<usize>,
    pub(super) requested_session: [u8; 10],
    pub(super) requested: u64,
}

impl Login {
    /// peer (7), session (u32, `u32::MAX` for none), requested session
    /// (10), requested sequence (u64), source (7).
    pub(super) const LEN: usize = 36;

    pub(super) fn encode(&self) -> [u8; Login::LEN] {
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

    pub(super) fn decode(b: &[u8]) -> Option<Login> {
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

/// Constant-time equality of two fixed-size fields.
fn ct_eq<const N: usize>(a: &[u8; N], b: &[u8; N]) -> bool {
    let mut diff = 0u8;
    for i in 0..N {
        diff |= a[i] ^ b[i];
    }
    diff == 0
}

/// A source host's recent login failures. They are forgotten only after
/// a quiet spell of the longest back-off with no failure, not by a login
/// that succeeds: a client logged in to its own session could otherwise
/// clear its host's count between guesses at another session's password.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Failures {
    count: u32,
    until: u64,
    /// When the last failure was.
    last: u64,
}

/// The longest back-off, in multiples of `login_backoff_ms` (10
/// doublings); also the quiet spell after which failures are forgotten.
const MAX_BACKOFF_DOUBLINGS: u32 = 10;

/// Most sources remembered for login back-off; beyond it the table is reset
/// (bounding memory against address-spraying).
const MAX_FAILURE_SOURCES: usize = 4096;

impl Gateway {
    /// Tells the gateway the client host of TCP connection `id`, before
    /// its packets: failed logins are counted per host, so one failing
    /// TCP client does not make every other one wait.
    pub fn set_tcp_host(&mut self, id: u32, host: Ipv4Addr) {
        self.tcp_host = (id, host);
    }

    /// What `peer`'s login failures count against: its host.
    pub(super) fn source_of(&self, peer: Peer) -> Peer {
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
    pub(super) fn in_backoff(&self, now: Nanos, peer: Peer, r: &soupbin::LoginRequest) -> bool {
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

    /// A login refused unchecked: its source is backing off.
    pub(super) fn refuse_for_backoff(&mut self, peer: Peer, out: &mut impl Outbox) {
        self.counters.drop(Drop::LoginBackoff);
        reject_login(peer, soupbin::reject::NOT_AUTHORIZED, out);
    }

    /// The session whose username and password `r` gives. Every session
    /// is compared, username and password in constant time, so the time
    /// taken says nothing about which part was wrong.
    pub(super) fn authenticate(&self, r: &soupbin::LoginRequest) -> Option<usize> {
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
    pub(super) fn admit(&mut self, now: Nanos, login: &Login, out: &mut impl Outbox) {
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
            let unit = self.cfg.login_backoff_ms.saturating_mul(1_000_000);
            let e = self.failures.entry(source).or_default();
            if now.0.saturating_sub(e.last) > unit.saturating_mul(1 << MAX_BACKOFF_DOUBLINGS) {
                e.count = 0;
            }
            e.count = e.count.saturating_add(1);
            e.last = now.0;
            if e.count >= self.cfg.login_failures_before_backoff {
                let doublings =
                    (e.count - self.cfg.login_failures_before_backoff).min(MAX_BACKOFF_DOUBLINGS);
                e.until = now.0.saturating_add(unit.saturating_mul(1 << doublings));
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
        // bucket going into debt for it; while the debt lasts, the
        // session's logins find no rate-limit token (`login_token`) and go
        // unanswered.
        let labelled = matches!(peer, Peer::Udp(_));
        if (!wanted.is_empty() && wanted != crate::wire::trim(&self.session_name))
            || bound_elsewhere
            || peer_has_another
        {
            self.counters.drop(Drop::SessionInUse);
            return reject_login(peer, soupbin::reject::SESSION_NOT_AVAILABLE, out);
        }
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

    /// Frees room in the full back-off table for a new source: first the
    /// entries whose quiet spell is over (forgotten anyway), then a quarter
    /// of the table at once (so that a spray of new sources does not scan
    /// it for each), those that matter least first: not backing off before
    /// backing off, then the fewest failures, then the oldest. Never the
    /// whole table, and never a host's count for one failure of each of
    /// many forged addresses: a sender spraying them must not reset a
    /// back-off, running or doubling.
    fn make_room_for_a_failure(&mut self, now: Nanos) {
        let quiet = self
            .cfg
            .login_backoff_ms
            .saturating_mul(1_000_000)
            .saturating_mul(1 << MAX_BACKOFF_DOUBLINGS);
        self.failures
            .retain(|_, f| f.until > now.0 || now.0.saturating_sub(f.last) <= quiet);
        if self.failures.len() < MAX_FAILURE_SOURCES {
            return;
        }
        let mut least: Vec<_> = self
            .failures
            .iter()
            .map(|(p, f)| ((f.until > now.0, f.count, f.last, p.encode()), *p))
            .collect();
        let n = MAX_FAILURE_SOURCES / 4;
        least.select_nth_unstable_by(n - 1, |a, b| a.0.cmp(&b.0));
        for (_, p) in &least[..n] {
            self.failures.remove(p);
        }
    }
}

/// Sends `peer` a Login Rejected with reason `code`.
fn reject_login(peer: Peer, code: u8, out: &mut impl Outbox) {
    let mut buf = [0u8; 8];
    if let Ok(n) = soupbin::write_packet(&mut buf, soupbin::kind::LOGIN_REJECTED, &[code]) {
        out.send(peer, &buf[..n]);
    }
}
