//! The gateway's state as a snapshot holds it, and its rebuilding.
//!
//! Owns the mapping between the live session layer and [`GatewayState`]:
//! per session its binding, timers, rate-limit buckets, the tokens used
//! today with the orders they name, and the sequenced outbound messages
//! kept for re-request; across sessions the peer table, the login
//! back-off table and the counters. Credentials and limits come from the
//! config (checked by the snapshot's fingerprint). Hash maps are stored
//! sorted, so equal states serialize to equal bytes.

use serde::{Deserialize, Serialize};

use super::login::Failures;
use super::session::{OutboundState, TokenBucket, TokenEntry};
use super::{Drop, Gateway, Peer};
use crate::engine::RejectReason;

/// One session's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    peer: Option<Peer>,
    last_rx: u64,
    last_tx: u64,
    bucket: TokenBucket,
    reject_bucket: TokenBucket,
    store: OutboundState,
    /// Per token number: token, live order (with its Firm and Capacity),
    /// request fingerprint.
    tokens: Vec<TokenEntry>,
}

/// Everything journal replay rebuilds in the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayState {
    follows_schedules: bool,
    sessions: Vec<SessionState>,
    by_peer: Vec<(Peer, usize)>,
    failures: Vec<(Peer, Failures)>,
    packets: u64,
    orders: u64,
    logins: u64,
    drops: Vec<(Drop, u64)>,
    rejects: Vec<(RejectReason, u64)>,
}

/// Why a gateway could not be rebuilt from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GatewayStateError {
    #[error("the snapshot has {snapshot} sessions, the config {config}")]
    Sessions { snapshot: usize, config: usize },
    #[error("session {0}'s outbound messages do not fit its re-request window")]
    Outbound(usize),
    #[error("a peer is bound to session {0}, which does not exist")]
    Peer(usize),
}

fn peer_key(p: &Peer) -> [u8; 7] {
    p.encode()
}

impl Gateway {
    /// The gateway's state (copies every session's outbound window).
    pub fn state(&self) -> GatewayState {
        let mut by_peer: Vec<(Peer, usize)> = self.by_peer.iter().map(|(p, s)| (*p, *s)).collect();
        by_peer.sort_by_key(|(p, _)| peer_key(p));
        let mut failures: Vec<(Peer, Failures)> =
            self.failures.iter().map(|(p, f)| (*p, *f)).collect();
        failures.sort_by_key(|(p, _)| peer_key(p));
        let mut drops: Vec<(Drop, u64)> =
            self.counters.drops.iter().map(|(d, n)| (*d, *n)).collect();
        drops.sort_by_key(|(d, _)| *d as u8);
        let mut rejects: Vec<(RejectReason, u64)> = self
            .counters
            .rejects
            .iter()
            .map(|(r, n)| (*r, *n))
            .collect();
        rejects.sort_by_key(|(r, _)| *r as u8);
        GatewayState {
            follows_schedules: self.follows_schedules,
            sessions: self
                .sessions
                .iter()
                .map(|s| SessionState {
                    peer: s.peer,
                    last_rx: s.last_rx,
                    last_tx: s.last_tx,
                    bucket: s.bucket.clone(),
                    reject_bucket: s.reject_bucket.clone(),
                    store: s.store.state(),
                    tokens: s.token_entries(),
                })
                .collect(),
            by_peer,
            failures,
            packets: self.counters.packets,
            orders: self.counters.orders,
            logins: self.counters.logins,
            drops,
            rejects,
        }
    }

    /// Puts a freshly built gateway (same config) into `s`.
    pub fn restore(&mut self, s: &GatewayState) -> Result<(), GatewayStateError> {
        if s.sessions.len() != self.sessions.len() {
            return Err(GatewayStateError::Sessions {
                snapshot: s.sessions.len(),
                config: self.sessions.len(),
            });
        }
        if let Some((_, i)) = s.by_peer.iter().find(|(_, i)| *i >= s.sessions.len()) {
            return Err(GatewayStateError::Peer(*i));
        }
        // A day's tokens are most of the state (one hash-map entry per
        // order): sessions are rebuilt on as many threads as there are
        // cores (this runs once, at start-up, before the engine thread).
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = self.sessions.len().div_ceil(threads).max(1);
        let failed = std::thread::scope(|scope| {
            let workers: Vec<_> = self
                .sessions
                .chunks_mut(per)
                .zip(s.sessions.chunks(per))
                .enumerate()
                .map(|(c, (mine, theirs))| {
                    scope.spawn(move || {
                        for (k, (sess, st)) in mine.iter_mut().zip(theirs).enumerate() {
                            if !sess.store.restore(&st.store) {
                                return Some(c * per + k);
                            }
                            sess.peer = st.peer;
                            sess.last_rx = st.last_rx;
                            sess.last_tx = st.last_tx;
                            sess.bucket = st.bucket.clone();
                            sess.reject_bucket = st.reject_bucket.clone();
                            let entries: &[TokenEntry] = &st.tokens;
                            sess.restore_tokens(entries);
                        }
                        None
                    })
                })
                .collect();
            workers
                .into_iter()
                .filter_map(|w| w.join().unwrap_or(Some(usize::MAX)))
                .min()
        });
        if let Some(i) = failed {
            return Err(GatewayStateError::Outbound(i));
        }
        self.follows_schedules = s.follows_schedules;
        self.by_peer = s.by_peer.iter().copied().collect();
        self.failures = s.failures.iter().copied().collect();
        self.counters.packets = s.packets;
        self.counters.orders = s.orders;
        self.counters.logins = s.logins;
        self.counters.drops = s.drops.iter().copied().collect();
        self.counters.rejects = s.rejects.iter().copied().collect();
        Ok(())
    }
}
