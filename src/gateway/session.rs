//! One order-entry session's state: credentials, binding, tokens, rate
//! limit and the store of sequenced outbound messages.

use serde::{Deserialize, Serialize};

use super::tokens::TokenIndex;
use super::Peer;
use crate::chunked::Chunked;
use crate::config::{GatewayConfig, SessionConfig};
use crate::sharded::Sharded;
use crate::slot_ring::SlotRing;
use crate::types::{AccountId, OrderId};
use crate::wire::ouch::{token_key, Echo, Token};

/// A token bucket in integer nano-units: `rate` messages per second, at most
/// `burst` at once. Time is passed in. It can be taken into debt
/// ([`TokenBucket::take_owing`]), which the refill repays before anything
/// else can be taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenBucket {
    level: u64,
    cap: u64,
    rate: u64,
    last: u64,
    owed: u64,
}

const UNIT: u64 = 1_000_000_000;

impl TokenBucket {
    pub fn new(rate_per_sec: u32, burst: u32) -> TokenBucket {
        let cap = u64::from(burst.max(1)) * UNIT;
        TokenBucket {
            level: cap,
            cap,
            rate: u64::from(rate_per_sec),
            last: 0,
            owed: 0,
        }
    }

    /// What `now_ns` adds to the bucket after the debt is repaid, and the
    /// debt left.
    #[inline]
    fn refilled(&self, now_ns: u64) -> (u64, u64) {
        let add = now_ns.saturating_sub(self.last).saturating_mul(self.rate);
        let repaid = add.min(self.owed);
        (
            self.level.saturating_add(add - repaid).min(self.cap),
            self.owed - repaid,
        )
    }

    #[inline]
    fn refill(&mut self, now_ns: u64) {
        (self.level, self.owed) = self.refilled(now_ns);
        self.last = self.last.max(now_ns);
    }

    /// Takes `n` messages' worth at once, going into debt for what the
    /// bucket does not hold (a re-send over TCP, which cannot be cut short).
    pub fn take_owing(&mut self, now_ns: u64, n: u64) {
        self.refill(now_ns);
        let want = n.saturating_mul(UNIT);
        let from_level = want.min(self.level);
        self.level -= from_level;
        self.owed = self.owed.saturating_add(want - from_level);
    }

    /// Whether the bucket is still in debt at `now_ns`.
    #[cfg(test)]
    pub fn owes(&self, now_ns: u64) -> bool {
        self.refilled(now_ns).1 > 0
    }

    /// Whether the bucket would be full at `now_ns` (nothing taken for long
    /// enough): the same as a new one.
    pub fn is_full(&self, now_ns: u64) -> bool {
        self.refilled(now_ns).0 >= self.cap
    }

    /// Whether [`TokenBucket::take`] at `now_ns` would succeed (nothing
    /// taken).
    pub fn can_take(&self, now_ns: u64) -> bool {
        self.refilled(now_ns).0 >= UNIT
    }

    /// Takes one message's worth; false when the bucket is empty.
    #[inline]
    pub fn take(&mut self, now_ns: u64) -> bool {
        self.refill(now_ns);
        if self.level >= UNIT {
            self.level -= UNIT;
            true
        } else {
            false
        }
    }
}

/// Longest OUCH outbound message (Replaced, 80 bytes).
const SLOT: usize = 80;

/// The last `window` sequenced messages of a session, by sequence number
/// (the first message is 1).
#[derive(Debug, Clone)]
pub struct OutboundStore(SlotRing<SLOT>);

impl OutboundStore {
    pub fn new(window: usize) -> OutboundStore {
        OutboundStore(SlotRing::new(window))
    }

    /// The bytes a full store of `window` messages holds.
    pub fn bytes_for(window: usize) -> u64 {
        SlotRing::<SLOT>::bytes_for(window)
    }

    #[inline]
    pub fn push(&mut self, msg: &[u8]) {
        self.0.push(msg);
    }

    pub fn next_sequence(&self) -> u64 {
        self.0.next_sequence()
    }

    /// Oldest sequence number still stored.
    pub fn oldest(&self) -> u64 {
        self.0.oldest()
    }

    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        self.0.get(seq)
    }

    /// Makes the store's memory resident (returns the bytes touched).
    pub fn prefault(&mut self) -> usize {
        self.0.prefault()
    }
}

/// What a snapshot keeps of an [`OutboundStore`]: the messages still held.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundState {
    /// Messages stored so far.
    count: u64,
    /// Messages `oldest() ..= count`, in order.
    held: Vec<Vec<u8>>,
}

impl OutboundStore {
    pub fn state(&self) -> OutboundState {
        OutboundState {
            count: self.0.count(),
            held: (self.oldest()..=self.0.count())
                .map(|s| self.get(s).unwrap_or_default().to_vec())
                .collect(),
        }
    }

    /// Refills this (empty) store with `s`; false when `s` does not fit
    /// this store's window.
    pub fn restore(&mut self, s: &OutboundState) -> bool {
        let oldest = (s.count + 1)
            .saturating_sub(self.0.capacity() as u64)
            .max(1);
        if s.held.len() as u64 != s.count + 1 - oldest || s.held.iter().any(|m| m.len() > SLOT) {
            return false;
        }
        self.0.refill(s.count, &s.held);
        true
    }
}

/// One token's entry: the token, the live engine order it names (with the
/// Firm and Capacity of its Enter Order), and the request's fingerprint.
pub(super) type TokenEntry = (Token, Option<(OrderId, [u8; 4], u8)>, u64);

pub(super) struct Session {
    pub username: [u8; 6],
    pub password: [u8; 10],
    pub account: AccountId,
    pub peer: Option<Peer>,
    pub last_rx: u64,
    pub last_tx: u64,
    pub bucket: TokenBucket,
    /// Allowance for Flow Control rejects once `bucket` is empty, so a
    /// flooding client gets a few rejects, not one per message.
    pub reject_bucket: TokenBucket,
    pub store: OutboundStore,
    /// Every token the session used today -> its number.
    tokens: TokenIndex,
    /// Per token number: the token, and a fingerprint of the request that
    /// claimed it (to tell a re-sent request from a different one reusing
    /// the token); in chunks, so that growing it copies nothing.
    orders: Chunked<(Token, u64)>,
    /// The tokens that name a live engine order (with their numbers, and
    /// the Firm and Capacity its Replaced echoes): as small as the
    /// session's resting orders, so cancels and replaces look up a table
    /// that stays in cache. Keyed by the token as an integer
    /// (`ouch::token_key`): a 14-byte array key is hashed a byte slice at a
    /// time and compared by a call to `memcmp`. In shards that never grow
    /// ([`Sharded`]): a table that doubled rehashed every live order in
    /// one insert.
    live: Sharded<(u32, OrderId, Echo)>,
}

/// Tokens a session has room for from the start (its token lists are made
/// resident at start-up with the rest of its stores).
const RESERVED_TOKENS: usize = 1 << 16;

/// The most memory one token of the day can take, in bytes, counted by
/// the start-up memory check: its entry in `orders` (24 bytes, in chunks
/// that never move) and, for a token out of order, its share of a shard
/// of the hash table of those (`tokens.rs`: 17 KiB for up to 448 tokens:
/// about 56 bytes each at the 69 % an extendible hash table fills on
/// average; 138 in all leaves room for shards 40 % full on average). In
/// order, 20 bytes in the sorted lists' chunks instead. (162 while
/// `orders` was a vector grown by doubling, up to 48 bytes a token.)
pub const TOKEN_BYTES_AT_MOST: u64 = 138;

impl Session {
    pub fn new(c: &SessionConfig, account: AccountId, cfg: &GatewayConfig) -> Session {
        let pad = |s: &str, out: &mut [u8]| {
            out.fill(b' ');
            let b = s.as_bytes();
            let n = b.len().min(out.len());
            out[..n].copy_from_slice(&b[..n]);
        };
        // Room for the day's first tokens (more grow the lists), never
        // more than the session may use.
        let reserved_tokens = (cfg.max_tokens_per_session as usize).min(RESERVED_TOKENS);
        let mut username = [b' '; 6];
        let mut password = [b' '; 10];
        pad(&c.username, &mut username);
        pad(&c.password, &mut password);
        Session {
            username,
            password,
            account,
            peer: None,
            last_rx: 0,
            last_tx: 0,
            bucket: TokenBucket::new(cfg.rate_per_sec, cfg.rate_burst),
            reject_bucket: TokenBucket::new(
                (cfg.rate_per_sec / 100).max(1),
                (cfg.rate_burst / 100).max(1),
            ),
            store: OutboundStore::new(cfg.resend_window as usize),
            tokens: TokenIndex::with_capacity(reserved_tokens),
            orders: Chunked::with_capacity(reserved_tokens),
            live: Sharded::default(),
        }
    }

    /// Makes the memory the session fills as the day goes resident: its
    /// re-request window and its token lists up to their reserved sizes.
    /// Returns the bytes touched.
    pub fn prefault(&mut self) -> usize {
        self.store.prefault() + self.tokens.prefault() + self.orders.prefault(([b' '; 14], 0))
    }

    /// Every token used today by token number, with the live order it
    /// names (for a snapshot).
    pub fn token_entries(&self) -> Vec<TokenEntry> {
        let mut entries: Vec<TokenEntry> = self
            .orders
            .iter()
            .map(|&(token, fingerprint)| (token, None, fingerprint))
            .collect();
        for &(t, order, echo) in self.live.values() {
            if let Some(e) = entries.get_mut(t as usize) {
                e.1 = Some((order, echo.firm, echo.capacity));
            }
        }
        entries
    }

    /// Sets the tokens used today and the live orders they name (from a
    /// snapshot).
    pub fn restore_tokens(&mut self, entries: &[TokenEntry]) {
        self.orders.clear();
        self.orders.extend(entries.iter().map(|e| (e.0, e.2)));
        self.tokens.clear();
        self.live.clear();
        for (t, e) in entries.iter().enumerate() {
            let _ = self.tokens.claim(&e.0, t as u32);
            if let Some((order, firm, capacity)) = e.1 {
                let echo = Echo { firm, capacity };
                self.live.insert(token_key(&e.0), (t as u32, order, echo));
            }
        }
    }

    /// Claims `token` for a request with `fingerprint`: `Ok(number)` when
    /// it is new, `Err(fingerprint of the request that claimed it)` when it
    /// was used today.
    #[inline]
    pub fn claim(&mut self, token: Token, fingerprint: u64) -> Result<u32, u64> {
        let next = self.orders.len() as u32;
        match self.tokens.claim(&token, next) {
            Err(used) => Err(self.orders[used as usize].1),
            Ok(()) => {
                self.orders.push((token, fingerprint));
                Ok(next)
            }
        }
    }

    /// Tokens the session used today.
    pub fn tokens_used(&self) -> usize {
        self.orders.len()
    }

    /// Whether the session used `token` today.
    pub fn used(&self, token: &Token) -> bool {
        self.tokens.get(token).is_some()
    }

    /// The live order `token` names, with the token's number.
    pub fn live_order(&self, token: &Token) -> Option<(u32, OrderId)> {
        self.live
            .get(token_key(token))
            .map(|&(t, order, _)| (t, order))
    }

    /// The token of number `t`.
    pub fn token(&self, t: u32) -> Token {
        self.orders.get(t as usize).map_or([b' '; 14], |o| o.0)
    }

    /// Token number `t` now names the live `order`, whose Firm and
    /// Capacity are `echo`; returns the token.
    pub fn set_order(&mut self, t: u32, order: OrderId, echo: Echo) -> Token {
        let token = self.token(t);
        if self.orders.get(t as usize).is_some() {
            self.live.insert(token_key(&token), (t, order, echo));
        }
        token
    }

    /// The token no longer names a live order (it was replaced); the
    /// Firm and Capacity it had, if it did.
    pub fn forget(&mut self, token: &Token) -> Option<Echo> {
        self.live.remove(token_key(token)).map(|(_, _, echo)| echo)
    }

    /// The order behind token number `t` is finished (filled or cancelled).
    pub fn finished(&mut self, t: u32) {
        if let Some(&(token, _)) = self.orders.get(t as usize) {
            self.live.remove(token_key(&token));
        }
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_bucket_in_debt_repays_it_before_anything_can_be_taken() {
        let s = 1_000_000_000;
        let mut b = TokenBucket::new(100, 10);
        b.take_owing(s, 30);
        assert!(b.owes(s) && !b.take(s));
        // 20 owed: repaid in 200 ms, then refilling.
        assert!(b.owes(s + 190_000_000));
        assert!(!b.owes(s + 200_000_000) && !b.take(s + 200_000_000));
        assert!(b.take(s + 210_000_000));
        assert!(!b.is_full(s + 210_000_000));
        assert!(b.is_full(s + 400_000_000));
    }
    use super::*;

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let mut b = TokenBucket::new(1000, 10);
        let now = 1_000_000_000;
        assert_eq!((0..20).filter(|_| b.take(now)).count(), 10);
        // 5 ms later: 5 more messages at 1000/s.
        assert_eq!((0..20).filter(|_| b.take(now + 5_000_000)).count(), 5);
    }

    #[test]
    fn outbound_store_keeps_the_last_window_by_sequence() {
        let mut s = OutboundStore::new(3);
        for i in 1..=5u8 {
            s.push(&[i]);
        }
        assert_eq!(s.next_sequence(), 6);
        assert_eq!(s.oldest(), 3);
        assert_eq!(s.get(2), None);
        assert_eq!(s.get(3), Some(&[3u8][..]));
        assert_eq!(s.get(5), Some(&[5u8][..]));
        assert_eq!(s.get(6), None);
    }
}

#[cfg(test)]
mod timing {
    use super::*;

    /// A session allowed `n` tokens, made resident as at start-up.
    fn session_for(n: u64) -> Session {
        let cfg = GatewayConfig {
            max_tokens_per_session: n as u32,
            ..GatewayConfig::default()
        };
        let login = SessionConfig {
            username: "t".into(),
            password: "t".into(),
            credit: 0,
        };
        let mut s = Session::new(&login, AccountId(0), &cfg);
        s.prefault();
        s
    }

    /// Token number `i`: twelve digits, so the tokens come in order.
    fn token(i: u64) -> Token {
        let mut t = [b' '; 14];
        t[..12].copy_from_slice(format!("{i:012}").as_bytes());
        t
    }

    /// The five longest of `times` (nanoseconds, index), in words.
    fn worst_five(mut times: Vec<(u128, u64)>, what: &str) -> String {
        times.sort_unstable_by(|a, b| b.cmp(a));
        let worst: Vec<String> = times[..5]
            .iter()
            .map(|&(ns, i)| format!("{:.1} us at {what} {i}", ns as f64 / 1e3))
            .collect();
        worst.join(", ")
    }

    /// The worst single claim while a session uses 2^22 tokens in order
    /// from the 65,536 it reserves (tokens and the per-number list both
    /// grow). Timings, so not part of the suite: run it in release mode
    /// and read what it prints:
    /// `cargo test --release --lib gateway::session::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn session_claim_times() {
        const N: u64 = 1 << 22;
        let tokens: Vec<Token> = (0..N).map(token).collect();
        for run in 0..2 {
            let mut s = session_for(N);
            let mut times = Vec::with_capacity(N as usize);
            for (i, t) in (0..).zip(&tokens) {
                let t0 = std::time::Instant::now();
                let r = s.claim(*t, i);
                times.push((t0.elapsed().as_nanos(), i));
                assert_eq!(r, Ok(i as u32));
            }
            println!(
                "run {run}: {N} claims in order from 2^16 reserved, the worst five: {}",
                worst_five(times, "claim")
            );
        }
    }

    /// The worst single `set_order` while a session's live orders grow
    /// to 2^20 (the table of live orders grows with them). Timings, so
    /// not part of the suite:
    /// `cargo test --release --lib gateway::session::timing -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn live_order_times() {
        const N: u64 = 1 << 20;
        let echo = Echo {
            firm: *b"TKX1",
            capacity: b'A',
        };
        for run in 0..2 {
            let mut s = session_for(N);
            for i in 0..N {
                assert_eq!(s.claim(token(i), i), Ok(i as u32));
            }
            let mut times = Vec::with_capacity(N as usize);
            for i in 0..N {
                let t0 = std::time::Instant::now();
                s.set_order(i as u32, OrderId(i + 1), echo);
                times.push((t0.elapsed().as_nanos(), i));
            }
            println!(
                "run {run}: {N} live orders from none, the worst five: {}",
                worst_five(times, "order")
            );
        }
    }
}
