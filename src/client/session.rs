//! The sans-IO client session: requests in, datagrams out, answers as events.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};

use zerocopy::IntoBytes;

use crate::gateway::udp_label;
use crate::types::{Price, Qty, Side, Symbol, Tif};
use crate::wire::ouch::{self, Token};
use crate::wire::soupbin::{self, Packet};

/// What the exchange told the client (each sequenced message once, in order).
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
        side: Side,
        qty: Qty,
        price: Price,
        tif: Tif,
    },
    Replaced {
        token: Token,
        previous: Token,
        order_reference: u64,
        qty: Qty,
        price: Price,
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
        /// OUCH liquidity flag: 'A' added (maker), 'R' removed (taker).
        liquidity: u8,
    },
    Rejected {
        token: Token,
        reason: u8,
        /// The OUCH type of the request it answered ('O' enter, 'U' replace,
        /// 'X' cancel), or 0 when no request with this token was waiting.
        request: u8,
    },
    EndOfSession,
    /// Nothing came from the exchange for the silence timeout
    /// ([`ClientSession::set_server_heartbeat`]): the session is taken as
    /// lost and the client logs in again, asking for every sequenced
    /// message from its next expected number.
    ConnectionLost,
    /// The session gave up this request and no longer re-sends it. Either
    /// it was waiting when sequenced messages were lost for good (the
    /// exchange no longer had them when asked,
    /// [`ClientStats::unrecoverable`]), so its answer may have been among
    /// them, and the exchange, heard from after each of two re-sends,
    /// answered neither; or the exchange, answering everything sent after
    /// each of three re-sends (other requests, or re-requests of the
    /// stream), never answered it: it ignores a re-sent copy of a token the
    /// session already used today, and the first answer is not in this
    /// session's stream (a program run again with the token prefix of an
    /// earlier run today; see [`run_token_prefix`]), or every copy was
    /// lost on the way; or it was waiting when the exchange's stream began
    /// again ([`ClientEvent::NewStream`]). Its outcome is unknown to the
    /// client: the request may have been accepted, executed, replaced,
    /// canceled or rejected (or, for a new token, never received); find out
    /// by other means before relying on it either way. An answer that does
    /// come later is still delivered as usual.
    Unanswered {
        token: Token,
        /// The OUCH type of the request ('O' enter, 'U' replace, 'X'
        /// cancel), as in [`ClientEvent::Rejected`].
        request: u8,
    },
    /// The exchange's stream began again: a Login Accepted, answering a
    /// re-login or a re-request, named a next sequence number below the one
    /// asked for by every Login Request still waiting for its answer. (The
    /// exchange answers a client's logins in the order they come; one sent
    /// longer ago than the silence timeout is taken as unanswered for
    /// good.) The exchange answers a login asking for N from N, or from
    /// later when it no longer has N, never from earlier, unless its stream
    /// holds fewer messages than the session has received: it is another
    /// stream under the same session name (a new day, or a restart with
    /// `durability = "none"`), or the exchange lost the stream's end (a
    /// journal cut short at a restart). The session goes on from
    /// `next_sequence`.
    ///
    /// Assume the exchange knows nothing of what the old stream told from
    /// `next_sequence` on; for a new stream, which starts at 1, nothing at
    /// all: none of its orders (all are day orders: a new day starts with
    /// an empty book, a restart without a journal forgets them) and none of
    /// its tokens. Every request still waiting is given up and never
    /// re-sent, each reported as [`ClientEvent::Unanswered`] right after
    /// this event (before [`ClientEvent::LoggedIn`], for a re-login): on
    /// the new stream a re-sent Enter Order would be a new order the caller
    /// did not ask for there (perhaps a day late), and a Cancel or Replace
    /// would name an order the exchange does not know. Whatever the caller still wants, it
    /// sends again, with new tokens. A request that did reach the new stream
    /// (sent after the re-login) may still be answered: that answer is
    /// delivered as usual.
    ///
    /// Mistaken for one: a Login Accepted that the network duplicated, or
    /// delayed past the answer to a later login of the session, can be
    /// taken for the answer to that later login (answers are matched to
    /// logins in order); the waiting requests are then given up, and the
    /// messages from its number on delivered again. Neither happens on
    /// the lab's link; a link that reorders or duplicates datagrams makes
    /// it possible.
    ///
    /// Not detected: a new stream that, when the session logs in again,
    /// already holds at least as many messages as the session received from
    /// the old one; in particular, for a session that received nothing
    /// from the old stream, whose waiting requests are then re-sent into
    /// the new one. Its numbers look like the old stream's, and only a
    /// session name that changed with the stream could tell them apart.
    NewStream {
        /// The new stream's next sequence number, where the session goes on.
        next_sequence: u64,
        /// The next number the session expected on the old stream.
        previous: u64,
    },
}

impl ClientEvent {
    /// The token a response answers, if any.
    pub fn token(&self) -> Option<Token> {
        match *self {
            ClientEvent::Accepted { token, .. }
            | ClientEvent::Replaced { token, .. }
            | ClientEvent::Canceled { token, .. }
            | ClientEvent::Executed { token, .. }
            | ClientEvent::Rejected { token, .. }
            | ClientEvent::Unanswered { token, .. } => Some(token),
            _ => None,
        }
    }
}

/// Counters of a client session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Requests sent (first tries).
    pub sent: u64,
    /// Requests re-sent after the timeout.
    pub resent: u64,
    /// Re-requests sent (Login Request with a sequence number, mid-session).
    pub recoveries: u64,
    /// Gaps seen (a labelled message above the next expected number).
    pub gaps: u64,
    /// Sequenced messages ignored as already delivered.
    pub duplicates_dropped: u64,
    /// Sequenced messages delivered.
    pub sequenced: u64,
    /// Messages the exchange no longer had when asked (older than its window).
    pub unrecoverable: u64,
    /// Requests given up, each reported as [`ClientEvent::Unanswered`].
    pub unanswered: u64,
    /// New streams of the exchange detected, each reported as
    /// [`ClientEvent::NewStream`].
    pub new_streams: u64,
    /// Datagrams that did not parse (the rest of such a datagram is ignored).
    pub malformed: u64,
}

/// Longest packet the session queues (Enter Order in Unsequenced Data: 52).
const PACKET: usize = 64;

#[derive(Clone, Copy)]
struct Bytes {
    buf: [u8; PACKET],
    len: u8,
}

impl Bytes {
    fn new(b: &[u8]) -> Bytes {
        let mut buf = [0u8; PACKET];
        let n = b.len().min(PACKET);
        buf[..n].copy_from_slice(&b[..n]);
        Bytes { buf, len: n as u8 }
    }

    fn as_slice(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

struct Pending {
    /// Order of issue: an ambiguous Rejected answers the oldest request.
    id: u64,
    /// When it was first sent (the round-trip sample of its answer).
    sent_at: u64,
    /// When it is re-sent if still unanswered: the re-send timeout
    /// ([`ClientSession::resend_timeout`]) after the first send, doubling
    /// with every re-send (a slow exchange is not flooded with copies of
    /// what it has not answered yet).
    due: u64,
    tries: u32,
    /// Its packet's slot in [`ClientSession::packets`].
    packet: u32,
    /// Answers still owed to earlier requests under the same key that this
    /// one superseded unanswered (a second cancel of one token: the
    /// exchange answers each in order, so the first answers are theirs).
    earlier: u32,
    /// Its place in the order of what the session sent (the session's
    /// `sent_ord`) when first sent.
    sent_ord: u64,
    /// Set when sequenced messages were lost for good while it waited (its
    /// answer may have been one).
    lost_answer: bool,
    /// How many of its re-sends were followed by the evidence that its
    /// answer is not coming (see [`HEARD_RESENDS_TO_GIVE_UP`] and
    /// [`IGNORED_RESENDS_TO_GIVE_UP`]); counted since `lost_answer` was set
    /// for such a request.
    heard: u8,
    /// The place of its last re-send in the order of what the session
    /// sent, while that re-send may still be followed by the evidence;
    /// `u64::MAX` when none may.
    resent_ord: u64,
}

/// A request's key: its token as one integer ([`ouch::token_key`]) and its
/// message type.
type Key = (u128, u8);

fn key(token: &Token, kind: u8) -> Key {
    (ouch::token_key(token), kind)
}

/// The token of a key (the inverse of [`ouch::token_key`]).
fn token_of(k: &Key) -> Token {
    let mut t = [0u8; 14];
    t.copy_from_slice(&k.0.to_be_bytes()[..14]);
    t
}

/// A re-send deadline: (due, request id, key).
type Deadline = (u64, u64, Key);

/// The most entries of [`ClientSession::asked`]; past it a new number
/// merges into the last entry, which keeps the lower number (a new stream
/// may then be noticed later, never a late answer taken for one).
const MAX_ASKED: usize = 16;

/// Login Requests sent and not answered yet that asked for one sequence
/// number: the number, how many, and when the last was sent.
#[derive(Clone, Copy)]
struct Asked {
    sequence: u64,
    count: u32,
    at: u64,
}

/// Re-sends of a request whose answer may have been lost for good, each
/// followed by a datagram from the exchange, after which it is given up
/// ([`ClientEvent::Unanswered`]). The exchange ignores a copy of a request
/// it already answered, so such a request would be re-sent forever; but it
/// answers one it has not seen, so a request is given up only once the
/// exchange was alive after its re-sends (a datagram came after each, and
/// the answer had the whole wait to come): during a silence (a restart
/// takes seconds) it is re-sent as before, and a re-send not yet followed
/// by a datagram when the session is lost does not count, since the
/// exchange heard next may be a restarted one that never received it. Two,
/// not one: a single re-send lost on the way is not taken for an ignored
/// one.
const HEARD_RESENDS_TO_GIVE_UP: u8 = 2;

/// Re-sends of a request after each of which the exchange showed that it
/// had dealt with everything the session sent up to that re-send (it
/// answered a request or a re-request sent after it), with every answer
/// delivered, yet this request's answer did not come: after that many it is
/// given up ([`ClientEvent::Unanswered`]). The exchange drops a copy of a
/// request whose token the session already used today without a word
/// (the client is meant to recover the first answer by sequence number),
/// so when that answer is older than the session's stream (a program run
/// again with the tokens of an earlier run, or an answer older than the
/// exchange's window) nothing would ever answer it; a request the exchange
/// has not seen is answered at the first copy that arrives. Three, not
/// one: a copy lost on the way is not taken for an ignored one; only four
/// lost in a row (the first send and three re-sends) would be.
const IGNORED_RESENDS_TO_GIVE_UP: u8 = 3;

/// The longest wait between two re-requests that brought nothing new
/// (no sequenced message was delivered in order since the first),
/// nanoseconds, unless the shortest re-send wait is longer: a client
/// whose missing answer never comes asks a few times a second, not once
/// per round trip.
const MAX_RECOVERY_WAIT_NS: u64 = 250_000_000;

/// The longest first wait before a re-send, as a multiple of the shortest.
const MAX_RTO: u64 = 8;

/// The longest wait between two re-sends of one request, as a multiple of
/// the first wait.
const MAX_BACKOFF: u64 = 16;

/// Heartbeat interval of the client, nanoseconds.
const HEARTBEAT_NS: u64 = 1_000_000_000;

/// The longest wait between two re-logins refused with Session Not
/// Available, nanoseconds.
const MAX_LOGIN_RETRY_NS: u64 = 1_000_000_000;

/// The exchange's heartbeat interval the session assumes unless told
/// otherwise (the gateway's default `heartbeat_ms`), nanoseconds.
pub const SERVER_HEARTBEAT_NS: u64 = 1_000_000_000;

/// Server heartbeat intervals without a datagram after which the session is
/// taken as lost (the default silence timeout is 3 s, well under the
/// gateway's default 15 s idle timeout, so the re-login usually finds the
/// session still bound).
pub const MISSED_HEARTBEATS: u64 = 3;

/// A client session, sans-IO.
pub struct ClientSession {
    username: String,
    password: String,
    prefix_len: usize,
    /// The next token: the prefix, then a base-36 counter (`0-9A-Z`) from 1
    /// in the rest of the 14 characters, counted up in ASCII (no formatting
    /// per order); see [`token_number`].
    next_token: Token,
    /// The last token of the counter's space was handed out.
    tokens_exhausted: bool,
    logged_in: bool,
    /// Whether a Login Accepted was ever received: from then on a login
    /// asks for the stream from `next_sequence`, not from the most recent
    /// message, so what happened while logged out is delivered.
    synced: bool,
    /// When the last (re)login was sent while not logged in.
    login_sent_at: Option<u64>,
    /// The wait before a login is sent again: `resend_after`, doubled by
    /// every Session Not Available refusal of a re-login (up to
    /// [`MAX_LOGIN_RETRY_NS`]), back to `resend_after` once logged in.
    login_wait: u64,
    /// When the last datagram from the exchange arrived.
    last_rx: u64,
    /// Silence from the exchange after which the session is taken as lost.
    silence_timeout: u64,
    /// The next sequence number to deliver; everything below it was delivered.
    next_sequence: u64,
    /// When the re-request now waiting for its answer was last sent (one
    /// at a time: a new one only after the wait).
    recovery_sent_at: Option<u64>,
    /// When the last re-request was sent, answered or not.
    last_recovery_at: Option<u64>,
    /// The wait after the last re-request before another one, unless a
    /// sequenced message was delivered in order since: the shortest re-send
    /// wait, doubled by every re-request that follows one without such a
    /// delivery, up to [`MAX_RECOVERY_WAIT_NS`].
    recovery_wait: u64,
    /// Whether a sequenced message was delivered in order since the last
    /// re-request (it brought something, or the stream moves on: a new gap
    /// may be asked about at once).
    delivered_since_recovery: bool,
    /// A gap was seen while a re-request could not be sent yet: the timer
    /// sends it once it may.
    recovery_deferred: bool,
    /// The place, in the order of what the session sent, of the first send
    /// of the re-request now waiting: its answer shows that the exchange
    /// dealt with everything sent before it.
    recovery_ord: u64,
    /// How many packets the session has queued (requests, their re-sends,
    /// logins): the order they reach the exchange in, which deals with a
    /// client's datagrams in the order they come.
    sent_ord: u64,
    /// The Login Requests that the exchange may still answer: sent within
    /// the silence timeout and not answered yet, by the sequence number
    /// they asked for, lowest (and oldest) first. A first login asks for 0,
    /// which any answer fits (until the first answer says from where the
    /// stream goes on). A Login Accepted below all of them answers none of
    /// them on this stream ([`ClientEvent::NewStream`]).
    asked: VecDeque<Asked>,
    /// The place, in that order, of the latest packet the exchange has
    /// shown it dealt with, every answer to what came before it having
    /// been delivered (or lost for good): an answered request, an answered
    /// re-request.
    caught_up_ord: u64,
    /// The number of packets queued when the last datagram arrived.
    rx_ord: u64,
    /// When the last sequenced message was delivered in order.
    last_delivered_at: u64,
    /// Requests not answered yet, by token and message type (foldhash with
    /// a random seed: SipHash was a tenth of the load generator's time).
    pending: HashMap<Key, Pending, foldhash::fast::RandomState>,
    /// The packets of unanswered requests, kept for re-sending, by slot
    /// (out of `pending`, so its entries stay small: with many requests in
    /// flight the table is read on every answer), and the free slots.
    packets: Vec<Bytes>,
    free_packets: Vec<u32>,
    /// First re-send deadlines, in the order the requests were sent, which
    /// is the order they fall due (the delay is the same for all), with
    /// whether the request is still unanswered. Request ids are consecutive
    /// here, so an answer finds and closes its entry by id, and a closed
    /// one is dropped when it comes up without a look into `pending` (a
    /// cache miss per request when many are in flight).
    first_deadlines: VecDeque<(Deadline, bool)>,
    /// Requests in `pending` re-sent at least once.
    resent_pending: u64,
    /// Later re-send deadlines (backed off), earliest first.
    deadlines: BinaryHeap<Reverse<Deadline>>,
    next_request: u64,
    outbox: VecDeque<Bytes>,
    /// The shortest wait before a re-send (the caller's `resend_after_ns`).
    resend_after: u64,
    /// Round-trip estimate the wait grows with (RFC 6298's SRTT and
    /// RTTVAR, ns): an exchange that answers slowly under load is not sent
    /// copies of what it is still working on.
    srtt: u64,
    rttvar: u64,
    last_tx: u64,
    last_now: u64,
    stats: ClientStats,
}

/// The longest token prefix; the counter has the other 14 − prefix
/// characters, at least 8.
pub const MAX_TOKEN_PREFIX: usize = 6;

/// A token prefix unique to a run started at `now` (the wall clock):
/// `tag` (its first two characters at most, which should be unique to the
/// program) and the time in tenths of a second, four base-36 characters
/// (`0-9A-Z`) that repeat only after 46 hours, so runs of a program on one
/// session on one day never share tokens (unless started within the same
/// tenth of a second). The exchange processes a token once per session per
/// day: a run that re-used an earlier run's tokens would have its orders
/// dropped as re-sent copies (see [`ClientSession::new`]).
pub fn run_token_prefix(tag: &str, now: std::time::SystemTime) -> String {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let tenths = now
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis()
        / 100;
    let tag: String = tag.chars().take(MAX_TOKEN_PREFIX - 4).collect();
    let clock: String = (0..4u32)
        .rev()
        .map(|i| DIGITS[(tenths / 36u128.pow(i) % 36) as usize] as char)
        .collect();
    tag + &clock
}

/// How many tokens a session with a `prefix_len`-character prefix can make:
/// 36^(14 − prefix_len), at least 36^8 ≈ 2.8·10^12 (32 days at a million
/// orders a second; tokens need only be unique for a day); `u64::MAX` for
/// prefixes under 2 characters, whose space is larger.
pub fn token_space(prefix_len: usize) -> u64 {
    36u64
        .checked_pow((14 - prefix_len.min(MAX_TOKEN_PREFIX)) as u32)
        .unwrap_or(u64::MAX)
}

/// The counter in a token made by a session with token prefix `prefix`
/// (1 for its first), or None for a token such a session did not make.
/// The counter fills the token after the prefix, in base 36 with digits
/// `0-9A-Z` (fixed width, so tokens also ascend as bytes, which the gateway's
/// token index is fast for): `AB000000000001`, ..., `AB000000000009`,
/// `AB00000000000A`, ..., `AB00000000000Z`, `AB000000000010` (36).
pub fn token_number(prefix: &[u8], token: &Token) -> Option<u64> {
    let p = prefix.len().min(MAX_TOKEN_PREFIX);
    // Byte loops: slice comparisons call `memcmp`, a tenth of the load
    // generator's time.
    if !token[..p].iter().zip(prefix).all(|(a, b)| a == b) {
        return None;
    }
    // 12 digits or fewer (a prefix of 2 or more) cannot overflow; with a
    // shorter prefix a number past u64 is no number this library makes.
    token[p..].iter().try_fold(0u64, |n, &d| {
        let digit = match d {
            b'0'..=b'9' => d - b'0',
            b'A'..=b'Z' => d - b'A' + 10,
            _ => return None,
        };
        n.checked_mul(36)?.checked_add(u64::from(digit))
    })
}

impl ClientSession {
    /// `prefix` (at most [`MAX_TOKEN_PREFIX`] bytes; more are cut off)
    /// starts every token of this session, followed by a counter from 1:
    /// it must differ from the prefix of every earlier run on this session
    /// today (make it with [`run_token_prefix`]). The exchange processes a
    /// token once per session per day and drops a byte-identical re-sent
    /// request for a token already used without an answer (the client is
    /// meant to recover the first answer by sequence number), so a second
    /// run with the same prefix would have its orders dropped, each
    /// reported as [`ClientEvent::Unanswered`] after a few seconds.
    /// `resend_after_ns` is the shortest a request waits for its answer
    /// before it is re-sent (the wait follows the measured round trip above
    /// that).
    ///
    /// # Panics
    ///
    /// When `username` is longer than 6 bytes or `password` longer than 10
    /// (SoupBinTCP's Login Request fields): no login could ever be sent.
    pub fn new(
        username: &str,
        password: &str,
        prefix: &str,
        resend_after_ns: u64,
    ) -> ClientSession {
        assert!(
            username.len() <= 6 && password.len() <= 10,
            "a SoupBinTCP login carries a username of at most 6 bytes and a password of at most 10"
        );
        let n = prefix.len().min(MAX_TOKEN_PREFIX);
        let mut next_token = [b'0'; 14];
        next_token[..n].copy_from_slice(&prefix.as_bytes()[..n]);
        next_token[13] = b'1';
        ClientSession {
            username: username.into(),
            password: password.into(),
            prefix_len: n,
            next_token,
            tokens_exhausted: false,
            logged_in: false,
            synced: false,
            login_sent_at: None,
            login_wait: resend_after_ns.max(1),
            last_rx: 0,
            silence_timeout: MISSED_HEARTBEATS * SERVER_HEARTBEAT_NS,
            next_sequence: 1,
            recovery_sent_at: None,
            last_recovery_at: None,
            recovery_wait: resend_after_ns.max(1),
            delivered_since_recovery: false,
            recovery_deferred: false,
            recovery_ord: 0,
            sent_ord: 0,
            asked: VecDeque::with_capacity(MAX_ASKED),
            caught_up_ord: 0,
            rx_ord: 0,
            last_delivered_at: 0,
            pending: HashMap::with_capacity_and_hasher(1 << 12, Default::default()),
            packets: Vec::with_capacity(1 << 12),
            free_packets: Vec::with_capacity(1 << 12),
            first_deadlines: VecDeque::with_capacity(1 << 12),
            resent_pending: 0,
            deadlines: BinaryHeap::new(),
            next_request: 0,
            outbox: VecDeque::with_capacity(256),
            resend_after: resend_after_ns.max(1),
            srtt: 0,
            rttvar: 0,
            last_tx: 0,
            last_now: 0,
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

    /// The sequence number of the next message to deliver.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    /// Tells the session the exchange's heartbeat interval (`heartbeat_ms`
    /// of the gateway's configuration) and after how many intervals without
    /// any datagram it takes the session as lost (at least 2, so one lost
    /// heartbeat is not a lost session). Defaults: 1 s and 3.
    pub fn set_server_heartbeat(&mut self, interval_ns: u64, missed: u64) {
        self.silence_timeout = interval_ns.max(1).saturating_mul(missed.max(2));
    }

    /// The silence from the exchange after which the session is taken as lost.
    pub fn silence_timeout(&self) -> u64 {
        self.silence_timeout
    }

    fn tick(&mut self, now: u64) {
        self.last_now = self.last_now.max(now);
    }

    fn queue_login(&mut self, sequence: u64) {
        self.sent_ord += 1;
        self.note_asked(sequence);
        let mut b = [0u8; PACKET];
        if let Ok(n) = soupbin::write_login_request(
            &mut b,
            self.username.as_bytes(),
            self.password.as_bytes(),
            b"",
            sequence,
        ) {
            self.outbox.push_back(Bytes::new(&b[..n]));
        }
    }

    /// Notes that a Login Request asking for `sequence` is sent now.
    fn note_asked(&mut self, sequence: u64) {
        let at = self.last_now;
        let full = self.asked.len() >= MAX_ASKED;
        match self.asked.back_mut() {
            // The numbers asked for only grow: one not above the last
            // merges with it, and so does any once the list is full.
            Some(last) if sequence <= last.sequence || full => {
                last.sequence = last.sequence.min(sequence);
                last.count = last.count.saturating_add(1);
                last.at = at;
            }
            _ => self.asked.push_back(Asked {
                sequence,
                count: 1,
                at,
            }),
        }
    }

    /// The lowest sequence number asked for by a Login Request that the
    /// exchange may still answer: one not answered yet and sent within the
    /// silence timeout (the exchange answers a login at once; one whose
    /// answer is lost would otherwise count for ever).
    fn lowest_asked(&mut self) -> Option<u64> {
        let now = self.last_now;
        while self
            .asked
            .front()
            .is_some_and(|a| now.saturating_sub(a.at) > self.silence_timeout)
        {
            self.asked.pop_front();
        }
        self.asked.front().map(|a| a.sequence)
    }

    /// A Login Accepted or Rejected came: it answers the oldest Login
    /// Request not answered yet, the exchange answering a client's packets
    /// in the order they come. (When that one or its answer was lost, a
    /// later one stays counted instead, asking for as much or more: the
    /// lowest number counted can only be lower than the truth, so a new
    /// stream may be noticed later, never a late answer taken for one.)
    fn login_answered(&mut self) {
        if let Some(first) = self.asked.front_mut() {
            first.count -= 1;
            if first.count == 0 {
                self.asked.pop_front();
            }
        }
    }

    /// A Login Accepted at `seq` showed a new stream
    /// ([`ClientEvent::NewStream`]): the session goes on from `seq` and
    /// gives up every request still waiting, oldest first.
    fn begin_new_stream(&mut self, seq: u64, f: &mut impl FnMut(ClientEvent)) {
        let previous = self.next_sequence;
        self.next_sequence = seq;
        self.stats.new_streams += 1;
        // The logins still waiting are answered by the new stream after
        // this one, from `seq` at least, or from the number they asked for.
        for a in &mut self.asked {
            a.sequence = a.sequence.min(seq);
        }
        // A re-request still waiting asked for the old stream's numbers.
        self.recovery_sent_at = None;
        self.last_recovery_at = None;
        self.recovery_wait = self.resend_after;
        self.recovery_deferred = false;
        self.delivered_since_recovery = false;
        f(ClientEvent::NewStream {
            next_sequence: seq,
            previous,
        });
        // Copies of requests queued and not sent yet go with them.
        self.outbox
            .retain(|p| p.as_slice().get(2) != Some(&soupbin::kind::UNSEQUENCED_DATA));
        let mut waiting: Vec<(u64, Key)> = self.pending.iter().map(|(k, p)| (p.id, *k)).collect();
        waiting.sort_unstable();
        for (_, k) in waiting {
            self.forget(&k);
            self.stats.unanswered += 1;
            f(ClientEvent::Unanswered {
                token: token_of(&k),
                request: k.1,
            });
        }
    }

    /// The sequence number a (re)login asks for: the most recent (0) on
    /// the first login, and the next one to deliver after that, so a login
    /// after a logout, an End of Session or a lost connection receives what
    /// was sent to the session meanwhile.
    fn login_sequence(&self) -> u64 {
        if self.synced {
            self.next_sequence
        } else {
            0
        }
    }

    /// Queues a Login Request (see [`ClientSession::next_sequence`]: after a
    /// first login, from the next message not delivered yet).
    pub fn login(&mut self, now: u64) {
        self.tick(now);
        self.queue_login(self.login_sequence());
        self.login_sent_at = Some(now);
    }

    /// Queues a Logout Request.
    pub fn logout(&mut self, now: u64) {
        self.tick(now);
        let mut b = [0u8; 8];
        if let Ok(n) = soupbin::write_empty(&mut b, soupbin::kind::LOGOUT_REQUEST) {
            self.outbox.push_back(Bytes::new(&b[..n]));
        }
        self.logged_in = false;
        self.login_sent_at = None;
    }

    /// The next token.
    ///
    /// # Panics
    ///
    /// When the counter's space ([`token_space`], at least 32 days at a
    /// million orders a second) is used up: a wrapped counter would reuse
    /// the day's tokens, which the exchange answers as duplicates or not at
    /// all.
    fn new_token(&mut self) -> Token {
        assert!(
            !self.tokens_exhausted,
            "token counter exhausted after {} tokens: start a session with another prefix",
            token_space(self.prefix_len) - 1
        );
        let t = self.next_token;
        let mut carry = true;
        for d in self.next_token[self.prefix_len..].iter_mut().rev() {
            match *d {
                b'Z' => *d = b'0',
                b'9' => {
                    *d = b'A';
                    carry = false;
                    break;
                }
                _ => {
                    *d += 1;
                    carry = false;
                    break;
                }
            }
        }
        self.tokens_exhausted = carry;
        t
    }

    fn request(&mut self, now: u64, token: Token, kind: u8, msg: &[u8]) {
        self.tick(now);
        let mut b = [0u8; PACKET];
        let Ok(n) = soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, msg) else {
            return;
        };
        let packet = Bytes::new(&b[..n]);
        self.outbox.push_back(packet);
        self.sent_ord += 1;
        let slot = match self.free_packets.pop() {
            Some(slot) => {
                self.packets[slot as usize] = packet;
                slot
            }
            None => {
                self.packets.push(packet);
                (self.packets.len() - 1) as u32
            }
        };
        self.next_request += 1;
        // Never before the last first deadline, so they stay in order.
        let due =
            (now + self.resend_timeout()).max(self.first_deadlines.back().map_or(0, |d| d.0 .0));
        let k = key(&token, kind);
        // A request superseded unanswered is no round-trip sample; its
        // answer, when it comes, is not this one's.
        let earlier = self.forget(&k).map_or(0, |p| p.earlier.saturating_add(1));
        self.pending.insert(
            k,
            Pending {
                id: self.next_request,
                due,
                sent_at: now,
                tries: 0,
                packet: slot,
                earlier,
                sent_ord: self.sent_ord,
                lost_answer: false,
                heard: 0,
                resent_ord: u64::MAX,
            },
        );
        self.first_deadlines
            .push_back(((due, self.next_request, k), true));
        self.stats.sent += 1;
    }

    /// Enters an order; returns its token.
    ///
    /// # Panics
    ///
    /// When the session's tokens are used up (see [`token_space`]).
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
        self.request(now, token, ouch::kind::ENTER, m.as_bytes());
        token
    }

    /// Cancels to size (0 = all).
    pub fn cancel(&mut self, now: u64, token: Token, qty: Qty) {
        let m = ouch::CancelOrder::new(token, qty);
        self.request(now, token, ouch::kind::CANCEL, m.as_bytes());
    }

    /// Replaces an order; returns the new token.
    ///
    /// # Panics
    ///
    /// When the session's tokens are used up (see [`token_space`]).
    pub fn replace(&mut self, now: u64, token: Token, qty: Qty, price: Price) -> Token {
        let new = self.new_token();
        let m = ouch::ReplaceOrder::new(token, new, qty, price);
        self.request(now, new, ouch::kind::REPLACE, m.as_bytes());
        new
    }

    /// Asks the exchange for everything from the next expected sequence
    /// number, unless a re-request is under way or the last one is too
    /// recent ([`ClientSession::recovery_allowed_at`]).
    fn recover(&mut self, now: u64) {
        if !self.logged_in {
            return;
        }
        if now < self.recovery_allowed_at() {
            self.recovery_deferred = true;
            return;
        }
        if self.last_recovery_at.is_some() {
            // One that brought nothing makes the next wait longer.
            self.recovery_wait = if self.delivered_since_recovery {
                self.resend_after
            } else {
                self.recovery_wait
                    .saturating_mul(2)
                    .min(MAX_RECOVERY_WAIT_NS.max(self.resend_after))
            };
        }
        self.queue_login(self.next_sequence);
        if self.recovery_sent_at.is_none() {
            self.recovery_ord = self.sent_ord;
        }
        self.recovery_sent_at = Some(now);
        self.last_recovery_at = Some(now);
        self.delivered_since_recovery = false;
        self.recovery_deferred = false;
        self.stats.recoveries += 1;
    }

    /// The earliest a re-request may be sent: at once when none was, or
    /// when the last one was answered and a sequenced message was
    /// delivered in order since (a new gap); otherwise the wait after the
    /// last one (one waiting for its answer is repeated after the shortest
    /// re-send wait, one that brought nothing after a wait that grows).
    fn recovery_allowed_at(&self) -> u64 {
        let Some(last) = self.last_recovery_at else {
            return 0;
        };
        if self.delivered_since_recovery {
            if self.recovery_sent_at.is_none() {
                return 0;
            }
            return last.saturating_add(self.resend_after);
        }
        last.saturating_add(self.recovery_wait)
    }

    /// When the timer asks for the stream again (see `on_timer_with`):
    /// while a re-request waits for its answer or one for a gap was put
    /// off, and while re-sent requests wait and nothing was delivered for
    /// the shortest re-send wait; never before
    /// [`ClientSession::recovery_allowed_at`].
    fn recovery_due(&self) -> Option<u64> {
        let wanted = if self.recovery_sent_at.is_some() || self.recovery_deferred {
            0
        } else if self.resent_pending > 0 {
            self.last_delivered_at.saturating_add(self.resend_after)
        } else {
            return None;
        };
        Some(wanted.max(self.recovery_allowed_at()))
    }

    /// An answer to the request under `k` came: it settles the request,
    /// unless it is owed to an earlier one the request superseded.
    fn answer(&mut self, k: &Key) {
        match self.pending.get_mut(k) {
            Some(p) if p.earlier > 0 => p.earlier -= 1,
            _ => self.settle(k),
        }
    }

    /// The request under `k` was answered: it is forgotten, and its round
    /// trip is a sample if it was sent once (Karn's rule).
    fn settle(&mut self, k: &Key) {
        if let Some(p) = self.forget(k) {
            // Answers come in order: the exchange dealt with all that was
            // sent before this request, and their answers were delivered.
            self.caught_up_ord = self.caught_up_ord.max(p.sent_ord);
            if p.tries == 0 {
                self.sample_rtt(self.last_now.saturating_sub(p.sent_at));
            }
        }
    }

    /// Drops the request under `k` (answered, superseded by a new one on
    /// the same key, or given up): frees its packet's slot and closes its first
    /// deadline.
    fn forget(&mut self, k: &Key) -> Option<Pending> {
        let p = self.pending.remove(k)?;
        self.free_packets.push(p.packet);
        if p.tries == 0 {
            self.close_first_deadline(p.id);
        } else {
            self.resent_pending -= 1;
        }
        Some(p)
    }

    /// The exchange is heard again after a silence longer than the re-send
    /// timeout while re-sent requests wait (it restarted, or the link was
    /// down): their back-off starts over, so each is re-sent one timeout
    /// from now unless its answer comes first (a re-request's replay often
    /// brings it), not after the up to 16 timeouts its doubling had reached.
    fn restart_back_off(&mut self, now: u64) {
        let due = now.saturating_add(self.resend_timeout());
        for (k, p) in &mut self.pending {
            if p.tries > 0 && p.due > due {
                p.due = due;
                self.deadlines.push(Reverse((due, p.id, *k)));
            }
        }
    }

    /// `n` sequenced messages were lost for good (the exchange no longer had
    /// them when asked): every request waiting now may have had its answer
    /// among them, and is given up once the exchange has been heard after
    /// enough of its re-sends ([`HEARD_RESENDS_TO_GIVE_UP`]). Requests sent
    /// later are answered after these messages, so they are not marked.
    fn lost_for_good(&mut self, n: u64) {
        self.stats.unrecoverable += n;
        for p in self.pending.values_mut() {
            if !p.lost_answer {
                p.lost_answer = true;
                p.heard = 0;
                p.resent_ord = u64::MAX;
            }
        }
    }

    /// Folds a round-trip sample into the estimate (RFC 6298, 2.2–2.3).
    fn sample_rtt(&mut self, r: u64) {
        if self.srtt == 0 {
            self.srtt = r.max(1);
            self.rttvar = r / 2;
        } else {
            self.rttvar = (3 * self.rttvar + self.srtt.abs_diff(r)) / 4;
            self.srtt = (7 * self.srtt + r) / 8;
        }
    }

    /// How long a request waits for its answer before its first re-send:
    /// SRTT + 4 RTTVAR, at least `resend_after`, at most 8 times that (a
    /// request that was really lost is not left for seconds).
    pub fn resend_timeout(&self) -> u64 {
        self.srtt
            .saturating_add(self.rttvar.saturating_mul(4))
            .clamp(self.resend_after, self.resend_after.saturating_mul(MAX_RTO))
    }

    fn close_first_deadline(&mut self, id: u64) {
        let Some(front) = self.first_deadlines.front() else {
            return;
        };
        let at = id.wrapping_sub(front.0 .1) as usize;
        if let Some(entry) = self.first_deadlines.get_mut(at) {
            if entry.0 .1 == id {
                entry.1 = false;
            }
        }
    }

    /// The request a Rejected for `token` answers: the oldest one waiting.
    fn answer_rejected(&mut self, token: Token) -> u8 {
        let mut best: Option<(u64, u8)> = None;
        for kind in [ouch::kind::ENTER, ouch::kind::REPLACE, ouch::kind::CANCEL] {
            if let Some(p) = self.pending.get(&key(&token, kind)) {
                if best.is_none_or(|(id, _)| p.id < id) {
                    best = Some((p.id, kind));
                }
            }
        }
        match best {
            Some((_, kind)) => {
                self.answer(&key(&token, kind));
                kind
            }
            None => 0,
        }
    }

    /// Handles a datagram from the exchange.
    pub fn on_datagram(&mut self, now: u64, bytes: &[u8], f: &mut impl FnMut(ClientEvent)) {
        self.tick(now);
        if self.resent_pending > 0 && now.saturating_sub(self.last_rx) >= self.resend_timeout() {
            self.restart_back_off(now);
        }
        self.last_rx = self.last_rx.max(now);
        self.rx_ord = self.sent_ord;
        // The sequence number of the next sequenced message in this datagram,
        // when the datagram is labelled.
        let mut label: Option<u64> = None;
        // Whether a sequenced message of this datagram was past a gap: the
        // later ones are too (asked for once), its other packets still count.
        let mut past_gap = false;
        for p in soupbin::packets(bytes) {
            let Ok(p) = p else {
                self.stats.malformed += 1;
                return;
            };
            match p {
                Packet::Debug(text) => {
                    if let Some(seq) = udp_label::parse(text) {
                        label = Some(seq);
                    }
                }
                Packet::LoginAccepted(a) => {
                    let seq = a.next_sequence().unwrap_or(1);
                    // Below the next expected number, it may be a late
                    // answer to a login that asked for less; below what
                    // every login still waiting asked for, it answers none
                    // of them.
                    let asked = self.lowest_asked();
                    self.login_answered();
                    if self.synced && asked.is_some_and(|asked| seq < asked) {
                        self.begin_new_stream(seq, f);
                    }
                    if !self.logged_in {
                        self.logged_in = true;
                        self.login_sent_at = None;
                        self.login_wait = self.resend_after;
                        self.recovery_sent_at = None;
                        self.last_recovery_at = None;
                        self.recovery_wait = self.resend_after;
                        self.recovery_deferred = false;
                        // A first login starts from the exchange's current
                        // number. A re-login asked from ours: an answer past
                        // it means the exchange no longer had what we missed.
                        if !self.synced {
                            self.next_sequence = seq;
                            // Copies of the first login still waiting are
                            // answered later, from `seq` at least.
                            for a in &mut self.asked {
                                a.sequence = seq;
                            }
                        } else if seq > self.next_sequence {
                            self.lost_for_good(seq - self.next_sequence);
                            self.next_sequence = seq;
                        }
                        self.synced = true;
                        f(ClientEvent::LoggedIn { next_sequence: seq });
                    } else if self.recovery_sent_at.is_some() {
                        // The answer to a re-request: what follows starts at
                        // `seq`, and the exchange dealt with everything sent
                        // before the re-request (its replay follows at once).
                        self.recovery_sent_at = None;
                        self.caught_up_ord = self.caught_up_ord.max(self.recovery_ord);
                        if seq > self.next_sequence {
                            self.lost_for_good(seq - self.next_sequence);
                            self.next_sequence = seq;
                        }
                    } else if seq > self.next_sequence {
                        // A late answer to an earlier login (one that asked
                        // for the most recent message, or crossed with a
                        // re-sent one): messages before `seq` exist that were
                        // not delivered. Ask for them rather than skip them.
                        self.stats.gaps += 1;
                        self.recover(now);
                    }
                }
                Packet::LoginRejected(code) => {
                    self.login_answered();
                    // A re-login refused because the session is not
                    // available (still bound to the lost link until the
                    // exchange's idle timeout unbinds it) is tried again,
                    // backing off; a first login, or bad credentials, is
                    // the caller's to decide.
                    let retry = self.synced && code == soupbin::reject::SESSION_NOT_AVAILABLE;
                    self.login_sent_at = retry.then_some(now);
                    if retry {
                        self.login_wait = self.login_wait.saturating_mul(2).min(MAX_LOGIN_RETRY_NS);
                    }
                    f(ClientEvent::LoginRejected { code });
                }
                Packet::SequencedData(m) => {
                    let seq = label.unwrap_or(self.next_sequence);
                    // A label at the top of the range is past any gap
                    // (asked for below); it must not overflow.
                    label = label.map(|l| l.saturating_add(1));
                    if seq < self.next_sequence {
                        self.stats.duplicates_dropped += 1;
                        continue;
                    }
                    if seq > self.next_sequence {
                        if !past_gap {
                            self.stats.gaps += 1;
                            self.recover(now);
                        }
                        past_gap = true;
                        continue;
                    }
                    self.next_sequence = self.next_sequence.saturating_add(1);
                    self.last_delivered_at = now;
                    self.delivered_since_recovery = true;
                    self.stats.sequenced += 1;
                    if let Some(e) = self.decode(m) {
                        f(e);
                    }
                }
                Packet::ServerHeartbeat if label.is_some_and(|l| l > self.next_sequence) => {
                    self.stats.gaps += 1;
                    self.recover(now);
                }
                // The exchange's stream is shorter than what was delivered:
                // a new stream whose Login Accepted passed for a late answer
                // to an earlier login, or a heartbeat overtaken by later
                // messages. The answer to a re-request tells which.
                Packet::ServerHeartbeat
                    if self.synced && label.is_some_and(|l| l < self.next_sequence) =>
                {
                    self.recover(now);
                }
                Packet::EndOfSession => {
                    self.logged_in = false;
                    f(ClientEvent::EndOfSession);
                }
                _ => {}
            }
        }
    }

    /// Decodes one delivered OUCH message and settles the request it answers.
    fn decode(&mut self, m: &[u8]) -> Option<ClientEvent> {
        let e = match ouch::Outbound::parse(m).ok()? {
            ouch::Outbound::Accepted(a) => {
                self.settle(&key(&a.token, ouch::kind::ENTER));
                ClientEvent::Accepted {
                    token: a.token,
                    order_reference: a.order_reference.get(),
                    side: if a.side == b'B' {
                        Side::Buy
                    } else {
                        Side::Sell
                    },
                    qty: Qty::new(a.shares.get()),
                    price: Price::from_raw(a.price.get()),
                    tif: ouch::tif_of(
                        a.time_in_force.get(),
                        a.shares.get(),
                        a.minimum_quantity.get(),
                    ),
                }
            }
            ouch::Outbound::Replaced(r) => {
                self.settle(&key(&r.replacement_token, ouch::kind::REPLACE));
                ClientEvent::Replaced {
                    token: r.replacement_token,
                    previous: r.previous_token,
                    order_reference: r.order_reference.get(),
                    qty: Qty::new(r.shares.get()),
                    price: Price::from_raw(r.price.get()),
                    tif: Tif::Day,
                }
            }
            ouch::Outbound::Canceled(c) => {
                self.answer(&key(&c.token, ouch::kind::CANCEL));
                ClientEvent::Canceled {
                    token: c.token,
                    decrement: Qty::new(c.decrement.get()),
                    reason: c.reason,
                }
            }
            ouch::Outbound::Executed(x) => ClientEvent::Executed {
                token: x.token,
                qty: Qty::new(x.shares.get()),
                price: Price::from_raw(x.price.get()),
                match_number: x.match_number.get(),
                liquidity: x.liquidity,
            },
            ouch::Outbound::Rejected(r) => ClientEvent::Rejected {
                token: r.token,
                reason: r.reason,
                request: self.answer_rejected(r.token),
            },
            _ => return None,
        };
        Some(e)
    }

    /// Re-sends requests (and a lost login) that waited too long, asks for
    /// the missed sequenced messages when it re-sends and nothing has come
    /// in for a timeout (the answer may be what was lost), and sends a
    /// Client Heartbeat when idle. Its events are dropped: a caller that
    /// wants [`ClientEvent::ConnectionLost`] and
    /// [`ClientEvent::Unanswered`] uses [`ClientSession::on_timer_with`].
    pub fn on_timer(&mut self, now: u64) {
        self.on_timer_with(now, &mut |_| {});
    }

    /// [`ClientSession::on_timer`], reporting [`ClientEvent::ConnectionLost`]
    /// when the exchange has been silent for the silence timeout, and
    /// [`ClientEvent::Unanswered`] for each request it gives up.
    pub fn on_timer_with(&mut self, now: u64, f: &mut impl FnMut(ClientEvent)) {
        self.tick(now);
        if self.logged_in && now.saturating_sub(self.last_rx) >= self.silence_timeout {
            // The exchange heartbeats a bound session: silence means the
            // link or the binding is gone (past its idle timeout the gateway
            // unbinds the session without a word and keeps its fills).
            self.logged_in = false;
            self.recovery_sent_at = None;
            self.queue_login(self.login_sequence());
            self.login_sent_at = Some(now);
            // The exchange heard from next may have restarted without
            // receiving the re-sends so far: they no longer count towards
            // giving a request up.
            for p in self.pending.values_mut() {
                p.resent_ord = u64::MAX;
            }
            f(ClientEvent::ConnectionLost);
            return;
        }
        if !self.logged_in {
            if let Some(t) = self.login_sent_at {
                if now.saturating_sub(t) >= self.login_wait {
                    self.queue_login(self.login_sequence());
                    self.login_sent_at = Some(now);
                }
            }
            return;
        }
        let rto = self.resend_timeout();
        while let Some((due, id, key)) = self.next_due(now) {
            let Some(p) = self.pending.get_mut(&key) else {
                continue; // answered since
            };
            if p.id != id || p.due != due {
                continue; // a newer request on the key, or re-scheduled
            }
            // Was its last re-send followed by the evidence? For a request
            // whose answer may have been lost for good, any datagram from
            // the exchange; for the others, the exchange dealing with
            // something sent after it, all answers delivered, and no gap
            // being asked about now.
            let (evidence, needed) = if p.lost_answer {
                (self.rx_ord, HEARD_RESENDS_TO_GIVE_UP)
            } else {
                (self.caught_up_ord, IGNORED_RESENDS_TO_GIVE_UP)
            };
            let heard = p.heard + u8::from(p.resent_ord != u64::MAX && evidence >= p.resent_ord);
            if heard >= needed && (p.lost_answer || self.recovery_sent_at.is_none()) {
                self.forget(&key);
                self.stats.unanswered += 1;
                f(ClientEvent::Unanswered {
                    token: token_of(&key),
                    request: key.1,
                });
                continue;
            }
            p.heard = heard;
            self.sent_ord += 1;
            p.resent_ord = self.sent_ord;
            p.tries += 1;
            let first_resend = p.tries == 1;
            p.due = now + rto * (1u64 << p.tries.min(4)).min(MAX_BACKOFF);
            self.deadlines.push(Reverse((p.due, id, key)));
            self.outbox.push_back(self.packets[p.packet as usize]);
            self.stats.resent += 1;
            self.resent_pending += u64::from(first_resend);
        }
        // A lost answer in the middle of a stream shows as a gap (recovered
        // at once); a lost answer at the end shows as silence: while a
        // re-sent request is unanswered and nothing has been delivered for
        // the wait, the session asks for everything since the last
        // delivered message, again after every wait (the re-request, its
        // Login Accepted or what follows may be lost too), not only when a
        // backed-off re-send falls due. Asking while answers still flow in
        // order would only make the exchange send them twice. A re-request
        // made for a gap and not answered within the wait is repeated too.
        if self.recovery_due().is_some_and(|t| t <= now) {
            self.recover(now);
        }
        if self.outbox.is_empty() && now.saturating_sub(self.last_tx) >= HEARTBEAT_NS {
            let mut b = [0u8; 8];
            if let Ok(n) = soupbin::write_empty(&mut b, soupbin::kind::CLIENT_HEARTBEAT) {
                self.outbox.push_back(Bytes::new(&b[..n]));
            }
        }
    }

    /// Takes a deadline that is due at `now`, first ones first.
    fn next_due(&mut self, now: u64) -> Option<Deadline> {
        while let Some(&(d, open)) = self.first_deadlines.front() {
            if d.0 > now {
                break;
            }
            self.first_deadlines.pop_front();
            if open {
                return Some(d);
            }
        }
        if self.deadlines.peek().is_some_and(|Reverse(d)| d.0 <= now) {
            return self.deadlines.pop().map(|Reverse(d)| d);
        }
        None
    }

    /// When [`ClientSession::on_timer`] wants to run next (absolute ns).
    pub fn poll_timeout(&self) -> Option<u64> {
        if !self.logged_in {
            return self
                .login_sent_at
                .map(|t| t.saturating_add(self.login_wait));
        }
        // The earliest deadline may belong to an answered request: waking
        // early for it is harmless.
        let resend = [
            self.first_deadlines.front().map(|d| d.0 .0),
            self.deadlines.peek().map(|Reverse(d)| d.0),
        ]
        .into_iter()
        .flatten()
        .min();
        // A re-request is repeated after the wait, and a silence with
        // re-sent requests unanswered is asked about after it (see
        // `on_timer`): a driver that wakes only here must not wait for a
        // backed-off re-send or the heartbeat instead.
        let recovery = self.recovery_due();
        let heartbeat = self
            .last_tx
            .saturating_add(HEARTBEAT_NS)
            .min(self.last_rx.saturating_add(self.silence_timeout));
        [resend, recovery, Some(heartbeat)]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next datagram to send, written to `buf`: as many queued packets
    /// as fit (the exchange reads every packet of a datagram). `None` when
    /// nothing is queued.
    pub fn poll_transmit(&mut self, now: u64, buf: &mut [u8]) -> Option<usize> {
        self.tick(now);
        let mut len = 0;
        while let Some(p) = self.outbox.front() {
            let b = p.as_slice();
            if len + b.len() > buf.len() {
                break;
            }
            buf[len..len + b.len()].copy_from_slice(b);
            len += b.len();
            self.outbox.pop_front();
        }
        if len == 0 {
            return None;
        }
        self.last_tx = now;
        Some(len)
    }

    /// The latest time the session was given (for shells without a clock).
    pub fn last_now(&self) -> u64 {
        self.last_now
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_the_prefix_and_a_base36_counter_filling_the_token_whose_number_reads_back() {
        let mut s = ClientSession::new("demo01", "demo01", "AB", 1);
        assert_eq!(&s.new_token(), b"AB000000000001");
        assert_eq!(&s.new_token(), b"AB000000000002");
        for _ in 0..6 {
            s.new_token();
        }
        assert_eq!(&s.new_token(), b"AB000000000009");
        assert_eq!(&s.new_token(), b"AB00000000000A");
        for _ in 0..24 {
            s.new_token();
        }
        assert_eq!(&s.new_token(), b"AB00000000000Z");
        assert_eq!(&s.new_token(), b"AB000000000010");
        assert_eq!(token_number(b"AB", b"AB000000000010"), Some(36));
        assert_eq!(token_number(b"AB", b"AB00000000000Z"), Some(35));
        assert_eq!(token_number(b"AB", b"XY000000000010"), None);
        assert_eq!(token_number(b"AB", b"AB00000000001x"), None);
        // The earlier format (8 decimal digits, space-padded) is not made
        // any more, and not read as a number of this one.
        assert_eq!(token_number(b"AB", b"AB00000010    "), None);
        // Where 8 decimal digits wrapped (10^8), the counter goes on.
        s.next_token = *b"AB0000001NJCHS";
        assert_eq!(token_number(b"AB", &s.next_token), Some(100_000_000));
        assert_eq!(&s.new_token(), b"AB0000001NJCHS");
        assert_eq!(&s.new_token(), b"AB0000001NJCHT");
        // Every token ascends as bytes, also across a carry.
        s.next_token = *b"AB00000000ZZZZ";
        let a = s.new_token();
        let b = s.new_token();
        assert!(a < b && &b == b"AB000000010000", "{b:?}");
        // The longest prefix still leaves a month at a million a second.
        let mut long = ClientSession::new("demo01", "demo01", "ABCDEFGH", 1);
        assert_eq!(&long.new_token(), b"ABCDEF00000001");
        assert_eq!(token_number(b"ABCDEF", b"ABCDEF00000001"), Some(1));
        assert!(token_space(6) / 1_000_000 > 30 * 86_400);
        assert_eq!(token_space(2), 36u64.pow(12));
        long.next_token = *b"ABCDEFZZZZZZZZ";
        assert_eq!(
            token_number(b"ABCDEF", &long.next_token),
            Some(token_space(6) - 1)
        );
        assert_eq!(&long.new_token(), b"ABCDEFZZZZZZZZ");
        assert!(long.tokens_exhausted);
    }

    #[test]
    fn run_token_prefixes_differ_between_runs_a_tenth_of_a_second_apart_all_day() {
        use std::time::{Duration, UNIX_EPOCH};
        let start = UNIX_EPOCH + Duration::from_secs(1_796_284_800); // 2026-12-03
        let first = run_token_prefix("UX", start);
        assert!(
            first.starts_with("UX") && first.len() == MAX_TOKEN_PREFIX,
            "{first}"
        );
        assert_ne!(
            first,
            run_token_prefix("UX", start + Duration::from_millis(100))
        );
        // Every tenth of a second of a day has its own prefix.
        let mut seen = std::collections::HashSet::new();
        for k in 0..864_000u64 {
            assert!(seen.insert(run_token_prefix(
                "UX",
                start + Duration::from_millis(100 * k)
            )));
        }
        // A longer tag is cut to leave the clock whole; the tokens fit.
        let p = run_token_prefix("LONGTAG", start);
        assert_eq!(&p[..2], "LO");
        let mut s = ClientSession::new("demo06", "demo06", &p, 1);
        assert_eq!(token_number(p.as_bytes(), &s.new_token()), Some(1));
    }

    #[test]
    #[should_panic(expected = "at most 6 bytes")]
    fn a_session_whose_login_could_never_be_sent_is_refused_at_once() {
        ClientSession::new("username", "demo01", "AB", 1);
    }

    #[test]
    #[should_panic(expected = "token counter exhausted")]
    fn a_session_whose_tokens_are_used_up_refuses_to_wrap() {
        let mut s = ClientSession::new("demo01", "demo01", "ABCDEF", 1);
        s.next_token = *b"ABCDEFZZZZZZZZ";
        s.new_token();
        s.new_token();
    }

    #[test]
    fn a_labelled_message_past_the_next_number_asks_for_the_gap() {
        let mut s = ClientSession::new("demo01", "demo01", "AB", 1000);
        let mut b = [0u8; 64];
        let n = soupbin::write_login_accepted(&mut b, b"TOKEX00001", 5).unwrap();
        let mut events = Vec::new();
        s.on_datagram(0, &b[..n], &mut |e| events.push(e));
        assert_eq!(events, vec![ClientEvent::LoggedIn { next_sequence: 5 }]);
        let mut d = [0u8; 128];
        let mut len = udp_label::write(&mut d, 7);
        len += soupbin::write_packet(&mut d[len..], soupbin::kind::SEQUENCED_DATA, b"x").unwrap();
        s.on_datagram(1, &d[..len], &mut |e| events.push(e));
        assert_eq!(s.stats().gaps, 1);
        let mut out = [0u8; 256];
        let n = s.poll_transmit(2, &mut out).unwrap();
        match Packet::parse(&out[..n]).unwrap().0 {
            Packet::LoginRequest(r) => assert_eq!(r.requested_sequence().unwrap(), 5),
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn an_end_of_session_after_messages_past_a_gap_in_one_datagram_still_ends_the_session() {
        let mut s = logged_in(100);
        let mut d = sequenced(3, 2);
        let mut z = [0u8; 8];
        let n = soupbin::write_empty(&mut z, soupbin::kind::END_OF_SESSION).unwrap();
        d.extend_from_slice(&z[..n]);
        let mut ended = false;
        s.on_datagram(10, &d, &mut |e| ended |= e == ClientEvent::EndOfSession);
        assert!(ended, "End of Session after the gap's messages");
        assert_eq!(s.stats().gaps, 1, "one gap, asked for once");
        assert_eq!(s.next_sequence(), 1);
    }

    #[test]
    fn a_re_request_whose_answer_is_lost_is_repeated_after_the_wait() {
        let mut s = logged_in(100);
        // Message 3 arrives before 1 and 2: the session asks from 1.
        s.on_datagram(10, &sequenced(3, 1), &mut |_| {});
        assert_eq!(sent_login(&mut s, 10), Some(1));
        // A driver that sleeps until `poll_timeout` wakes for the repeat.
        assert!(s.poll_timeout().unwrap() <= 110, "{:?}", s.poll_timeout());
        // Nothing answers; within the wait nothing is asked again.
        s.on_timer(60);
        assert_eq!(sent_login(&mut s, 60), None);
        s.on_timer(110);
        assert_eq!(
            sent_login(&mut s, 110),
            Some(1),
            "asked again after the wait"
        );
        // Answered: the Login Accepted and the missing messages end it.
        s.on_datagram(120, &login_accepted(1), &mut |_| {});
        s.on_datagram(121, &sequenced(1, 3), &mut |_| {});
        assert_eq!(s.next_sequence(), 4);
        s.on_timer(400);
        assert_eq!(sent_login(&mut s, 400), None, "no re-request once answered");
    }

    #[test]
    fn a_re_sent_request_left_unanswered_asks_for_the_stream_again_after_every_wait() {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        let token = s.enter(
            0,
            symbol,
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        );
        let mut out = [0u8; 1400];
        while s.poll_transmit(0, &mut out).is_some() {}
        let logins = |s: &mut ClientSession, now: u64| -> Vec<u64> {
            let mut seqs = Vec::new();
            let mut out = [0u8; 1400];
            while let Some(n) = s.poll_transmit(now, &mut out) {
                for p in soupbin::packets(&out[..n]).flatten() {
                    if let Packet::LoginRequest(r) = p {
                        seqs.push(r.requested_sequence().unwrap());
                    }
                }
            }
            seqs
        };
        // Unanswered for the wait: re-sent, and the stream asked for.
        s.on_timer(100);
        assert_eq!(logins(&mut s, 100), [1]);
        // The re-request is answered, but the answer it replays is lost:
        // asked again once the wait since the last re-request has passed
        // (not at once, so that an answer that never comes is not asked
        // for once per round trip), before the backed-off re-send (due at
        // 300).
        s.on_datagram(110, &login_accepted(1), &mut |_| {});
        s.on_timer(150);
        assert!(logins(&mut s, 150).is_empty());
        s.on_timer(200);
        assert_eq!(logins(&mut s, 200), [1]);
        // Answered, and this time the answer arrives: nothing more is asked.
        s.on_datagram(208, &login_accepted(1), &mut |_| {});
        s.on_datagram(210, &accepted_at(1, token, symbol), &mut |_| {});
        assert_eq!(s.outstanding(), 0);
        for now in [300, 400, 1_000] {
            s.on_timer(now);
            assert!(logins(&mut s, now).is_empty(), "at {now}");
        }
    }

    /// Enters a one-lot TK2612 buy at time 0; its token.
    fn one_lot_at_0(s: &mut ClientSession) -> Token {
        s.enter(
            0,
            Symbol::new("TK2612").unwrap(),
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        )
    }

    fn logged_in(resend_after: u64) -> ClientSession {
        let mut s = ClientSession::new("demo01", "demo01", "AB", resend_after);
        let mut b = [0u8; 64];
        let n = soupbin::write_login_accepted(&mut b, b"TOKEX00001", 1).unwrap();
        s.on_datagram(0, &b[..n], &mut |_| {});
        s
    }

    /// A datagram labelled `seq` holding the exchange's Accepted for a
    /// one-lot day buy at 1.
    fn accepted_at(seq: u64, token: Token, symbol: Symbol) -> Vec<u8> {
        labelled(seq, accepted_one_lot(token, symbol).as_bytes())
    }

    /// A datagram labelled `seq` holding one sequenced OUCH message.
    fn labelled(seq: u64, message: &[u8]) -> Vec<u8> {
        let mut d = [0u8; 256];
        let mut len = udp_label::write(&mut d, seq);
        len +=
            soupbin::write_packet(&mut d[len..], soupbin::kind::SEQUENCED_DATA, message).unwrap();
        d[..len].to_vec()
    }

    /// The exchange's Accepted for a one-lot day buy at 1.
    fn accepted_one_lot(token: Token, symbol: Symbol) -> ouch::Accepted {
        ouch::Accepted::new(&ouch::OrderFields {
            timestamp: 0,
            token,
            side: Side::Buy,
            qty: Qty::new(1),
            symbol,
            price: Price::from_raw(1),
            tif: Tif::Day,
            order_reference: 1,
            live: true,
        })
    }

    /// A datagram labelled `seq` holding a Canceled of `lots` for `token`.
    fn canceled_at(seq: u64, token: Token, lots: u32) -> Vec<u8> {
        labelled(
            seq,
            ouch::Canceled::new(0, token, Qty::new(lots), b'U').as_bytes(),
        )
    }

    #[test]
    fn the_first_cancels_answer_does_not_settle_a_second_cancel_of_the_same_order() {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        let t = s.enter(
            0,
            symbol,
            Side::Buy,
            Qty::new(10),
            Price::from_raw(1),
            Tif::Day,
        );
        s.on_datagram(5, &accepted_at(1, t, symbol), &mut |_| {});
        s.cancel(10, t, Qty::new(5));
        s.cancel(11, t, Qty::ZERO);
        let mut out = [0u8; 1400];
        while s.poll_transmit(11, &mut out).is_some() {}
        assert_eq!(s.outstanding(), 1);
        // The first cancel's answer: the second (to 0, say lost) still waits.
        s.on_datagram(20, &canceled_at(2, t, 5), &mut |_| {});
        assert_eq!(s.outstanding(), 1, "the second cancel is still unanswered");
        let mut resent = 0;
        for now in (30..=400).step_by(10) {
            s.on_timer(now);
            while let Some(n) = s.poll_transmit(now, &mut out) {
                if let Ok((Packet::UnsequencedData(m), _)) = Packet::parse(&out[..n]) {
                    if let Ok(ouch::Inbound::Cancel(c)) = ouch::Inbound::parse(m) {
                        assert_eq!(c.qty(), Qty::ZERO, "the newest cancel is the one re-sent");
                        resent += 1;
                    }
                }
            }
        }
        assert!(resent >= 1);
        // Its answer settles it.
        s.on_datagram(410, &canceled_at(3, t, 5), &mut |_| {});
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn an_unanswered_request_is_resent_with_doubling_waits_and_an_answered_one_never() {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        let lost = s.enter(
            0,
            symbol,
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        );
        let answered = s.enter(
            0,
            symbol,
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        );
        s.cancel(0, answered, Qty::ZERO);
        let mut out = [0u8; 1400];
        while s.poll_transmit(0, &mut out).is_some() {}
        // The second request is answered (Canceled) before its deadline.
        // The second order is accepted and canceled before its deadline.
        let a = accepted_one_lot(answered, symbol);
        let c = ouch::Canceled::new(0, answered, Qty::new(1), b'U');
        let mut d = [0u8; 256];
        let mut len = udp_label::write(&mut d, 1);
        for m in [a.as_bytes(), c.as_bytes()] {
            len += soupbin::write_packet(&mut d[len..], soupbin::kind::SEQUENCED_DATA, m).unwrap();
        }
        // Answered after 10: a round trip well under the minimum wait.
        s.on_datagram(10, &d[..len], &mut |_| {});
        let mut resends = Vec::new();
        for now in (0..=1_600).step_by(10) {
            s.on_timer(now);
            while let Some(n) = s.poll_transmit(now, &mut out) {
                if let Ok((Packet::UnsequencedData(m), _)) = Packet::parse(&out[..n]) {
                    if let Ok(ouch::Inbound::Enter(e)) = ouch::Inbound::parse(m) {
                        assert_eq!(e.token(), crate::wire::trim(&lost));
                        resends.push(now);
                    }
                }
            }
        }
        // 100 after the send, then 200, 400, 800 apart (capped at 1,600).
        assert_eq!(resends, vec![100, 300, 700, 1500]);
        assert_eq!(s.stats().resent, 4);
        assert_eq!(s.outstanding(), 1);
        // The next re-send is 1,600 later; until then the session only asks
        // for the stream again (a silence with a request unanswered).
        for now in (1_610..1_500 + 1_600).step_by(10) {
            s.on_timer(now);
            while let Some(n) = s.poll_transmit(now, &mut out) {
                if let Ok((Packet::UnsequencedData(m), _)) = Packet::parse(&out[..n]) {
                    assert!(ouch::Inbound::parse(m).is_err(), "re-sent at {now}");
                }
            }
        }
        s.on_timer(3_100);
        assert_eq!(s.stats().resent, 5);
    }

    #[test]
    fn requests_backed_off_during_a_silence_are_re_sent_one_wait_after_the_exchange_is_heard_again()
    {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        let (first, second) = (one_lot_at_0(&mut s), one_lot_at_0(&mut s));
        let mut out = [0u8; 1400];
        while s.poll_transmit(0, &mut out).is_some() {}
        // The times Enter Orders are re-sent between `from` and `to`.
        let mut run = |s: &mut ClientSession, from: u64, to: u64| {
            let mut resends = Vec::new();
            for now in (from..=to).step_by(10) {
                s.on_timer(now);
                while let Some(n) = s.poll_transmit(now, &mut out) {
                    for p in soupbin::packets(&out[..n]).flatten() {
                        if let Packet::UnsequencedData(m) = p {
                            if let Ok(ouch::Inbound::Enter(_)) = ouch::Inbound::parse(m) {
                                resends.push(now);
                            }
                        }
                    }
                }
            }
            resends
        };
        // The exchange is gone: both orders back off (100, 300, 700, 1500;
        // the next would be at 3100).
        assert_eq!(
            run(&mut s, 10, 1_590),
            [100, 100, 300, 300, 700, 700, 1500, 1500]
        );
        // It is back and answers the first order at 1600 (a replay after
        // the restart): the other is re-sent one wait later, not at 3100.
        s.on_datagram(1_600, &accepted_at(1, first, symbol), &mut |_| {});
        assert_eq!(
            run(&mut s, 1_600, 3_000),
            [1_700],
            "re-sent once, one wait after 1600"
        );
        assert_eq!(s.outstanding(), 1);
        // Answered now: nothing more is re-sent.
        s.on_datagram(3_010, &accepted_at(2, second, symbol), &mut |_| {});
        assert!(run(&mut s, 3_010, 8_000).is_empty());
        assert_eq!(s.outstanding(), 0);
    }

    #[test]
    fn a_request_superseded_before_its_answer_is_no_round_trip_sample() {
        let mut s = logged_in(100);
        let token = *b"XY00000001    ";
        s.cancel(0, token, Qty::ZERO);
        // The same request again, long after: it replaces the first.
        s.cancel(5_000, token, Qty::ZERO);
        assert_eq!(s.outstanding(), 1);
        assert_eq!(s.resend_timeout(), 100);
    }

    #[test]
    fn the_wait_before_a_resend_follows_the_measured_round_trip_within_bounds() {
        let mut s = logged_in(100);
        assert_eq!(s.resend_timeout(), 100, "no sample yet: the minimum");
        let symbol = Symbol::new("TK2612").unwrap();
        let answer_after = |s: &mut ClientSession, sent: u64, rtt: u64| {
            let t = s.enter(
                sent,
                symbol,
                Side::Buy,
                Qty::new(1),
                Price::from_raw(1),
                Tif::Day,
            );
            let d = accepted_at(s.next_sequence, t, symbol);
            s.on_datagram(sent + rtt, &d, &mut |_| {});
        };
        // Answers taking 400 (an exchange under load): the wait grows past
        // the round trip, so what is in its queue is not sent twice.
        for k in 0..20 {
            answer_after(&mut s, k * 10, 400);
        }
        let slow = s.resend_timeout();
        assert!((400..=800).contains(&slow), "{slow}");
        // Fast answers bring it back down to the minimum.
        for k in 0..200 {
            answer_after(&mut s, 100_000 + k * 10, 5);
        }
        assert_eq!(s.resend_timeout(), 100);
        // A round trip far beyond the cap: 8 times the minimum.
        for k in 0..20 {
            answer_after(&mut s, 1_000_000 + k * 10, 1_000_000);
        }
        assert_eq!(s.resend_timeout(), 800);
        assert_eq!(s.stats().resent, 0);
    }

    /// The sequence number of the Login Request the session sends next.
    fn sent_login(s: &mut ClientSession, now: u64) -> Option<u64> {
        let mut out = [0u8; 256];
        let n = s.poll_transmit(now, &mut out)?;
        match Packet::parse(&out[..n]).ok()?.0 {
            Packet::LoginRequest(r) => r.requested_sequence().ok(),
            _ => None,
        }
    }

    /// `n` labelled sequenced messages from `first` on, in one datagram.
    fn sequenced(first: u64, n: u64) -> Vec<u8> {
        let mut d = vec![0u8; 1400];
        let mut len = udp_label::write(&mut d, first);
        for _ in 0..n {
            len +=
                soupbin::write_packet(&mut d[len..], soupbin::kind::SEQUENCED_DATA, b"x").unwrap();
        }
        d.truncate(len);
        d
    }

    fn login_accepted(seq: u64) -> Vec<u8> {
        let mut b = [0u8; 64];
        let n = soupbin::write_login_accepted(&mut b, b"TOKEX00001", seq).unwrap();
        b[..n].to_vec()
    }

    #[test]
    fn a_first_login_asks_for_the_most_recent_and_a_later_one_from_the_next_sequence() {
        let mut s = ClientSession::new("demo01", "demo01", "AB", 1000);
        s.login(0);
        assert_eq!(sent_login(&mut s, 0), Some(0));
        s.on_timer(1000);
        assert_eq!(sent_login(&mut s, 1000), Some(0), "the re-sent first login");
        s.on_datagram(1001, &login_accepted(5), &mut |_| {});
        s.on_datagram(1002, &sequenced(5, 3), &mut |_| {});
        assert_eq!(s.next_sequence(), 8);
        s.logout(2000);
        while s.poll_transmit(2000, &mut [0u8; 256]).is_some() {}
        s.login(3000);
        assert_eq!(sent_login(&mut s, 3000), Some(8));
        s.on_timer(4000);
        assert_eq!(sent_login(&mut s, 4000), Some(8), "the re-sent re-login");
        // The exchange no longer had 8 and 9.
        s.on_datagram(4001, &login_accepted(10), &mut |_| {});
        assert_eq!(s.next_sequence(), 10);
        assert_eq!(s.stats().unrecoverable, 2);
    }

    #[test]
    fn an_exchange_silent_for_three_heartbeats_is_a_lost_session_and_the_client_logs_in_again() {
        let mut s = logged_in(1000);
        let mut events = Vec::new();
        s.on_datagram(10, &sequenced(1, 3), &mut |e| events.push(e));
        let hb = |s: &mut ClientSession, now: u64| {
            let mut b = [0u8; 64];
            let mut len = udp_label::write(&mut b, 4);
            len += soupbin::write_empty(&mut b[len..], soupbin::kind::SERVER_HEARTBEAT).unwrap();
            s.on_datagram(now, &b[..len], &mut |_| {});
        };
        // Heartbeats every second keep the session.
        for k in 1..=5 {
            hb(&mut s, k * SERVER_HEARTBEAT_NS);
            s.on_timer_with(k * SERVER_HEARTBEAT_NS + 1, &mut |e| events.push(e));
        }
        assert!(s.is_logged_in());
        let last = 5 * SERVER_HEARTBEAT_NS;
        while s.poll_transmit(last + 1, &mut [0u8; 256]).is_some() {}
        assert_eq!(s.poll_timeout(), Some(last + 1 + HEARTBEAT_NS));
        s.on_timer_with(last + 2 * SERVER_HEARTBEAT_NS, &mut |e| events.push(e));
        assert!(s.is_logged_in(), "two silent intervals are not yet a loss");
        while s
            .poll_transmit(last + 2 * SERVER_HEARTBEAT_NS, &mut [0u8; 256])
            .is_some()
        {}
        // The client heartbeat just sent leaves the silence timeout as the
        // next thing to wake up for.
        assert_eq!(s.poll_timeout(), Some(last + 3 * SERVER_HEARTBEAT_NS));
        s.on_timer_with(last + 3 * SERVER_HEARTBEAT_NS, &mut |e| events.push(e));
        assert!(!s.is_logged_in());
        assert_eq!(events.last(), Some(&ClientEvent::ConnectionLost));
        assert_eq!(sent_login(&mut s, last + 3 * SERVER_HEARTBEAT_NS), Some(4));
        // Re-sent on the login's schedule until answered.
        let t = last + 3 * SERVER_HEARTBEAT_NS + 1000;
        assert_eq!(s.poll_timeout(), Some(t));
        s.on_timer_with(t, &mut |e| events.push(e));
        assert_eq!(sent_login(&mut s, t), Some(4));
        s.on_datagram(t + 1, &login_accepted(4), &mut |e| events.push(e));
        assert!(s.is_logged_in());
        assert_eq!(s.stats().unrecoverable, 0);
        let lost = |e: &&ClientEvent| **e == ClientEvent::ConnectionLost;
        assert_eq!(events.iter().filter(lost).count(), 1);
        // A shorter interval, configured.
        s.set_server_heartbeat(50, 3);
        assert_eq!(s.silence_timeout(), 150);
        s.on_timer_with(t + 1 + 150, &mut |e| events.push(e));
        assert!(!s.is_logged_in());
        assert_eq!(events.iter().filter(lost).count(), 2);
    }

    #[test]
    fn a_re_login_refused_as_session_not_available_is_retried_with_doubling_waits() {
        let mut s = logged_in(1000);
        s.on_datagram(10, &sequenced(1, 2), &mut |_| {});
        let lost_at = 10 + s.silence_timeout();
        s.on_timer_with(lost_at, &mut |_| {});
        assert!(!s.is_logged_in());
        assert_eq!(sent_login(&mut s, lost_at), Some(3));
        let reject = |code: u8| {
            let mut b = [0u8; 16];
            let n = soupbin::write_packet(&mut b, soupbin::kind::LOGIN_REJECTED, &[code]).unwrap();
            b[..n].to_vec()
        };
        // Still bound to the lost link: refused, asked again after 2, then
        // 4 waits.
        let mut events = Vec::new();
        s.on_datagram(lost_at + 1, &reject(b'S'), &mut |e| events.push(e));
        assert_eq!(events, [ClientEvent::LoginRejected { code: b'S' }]);
        assert_eq!(s.poll_timeout(), Some(lost_at + 1 + 2000));
        s.on_timer(lost_at + 1 + 1999);
        assert_eq!(sent_login(&mut s, lost_at + 2000), None);
        s.on_timer(lost_at + 1 + 2000);
        assert_eq!(sent_login(&mut s, lost_at + 2001), Some(3));
        s.on_datagram(lost_at + 2002, &reject(b'S'), &mut |_| {});
        assert_eq!(s.poll_timeout(), Some(lost_at + 2002 + 4000));
        // Accepted at last: later waits start from the shortest again.
        s.on_datagram(lost_at + 3000, &login_accepted(3), &mut |_| {});
        assert!(s.is_logged_in());
        assert_eq!(s.login_wait, 1000);
        // Bad credentials, or a first login refused, are not retried.
        s.on_timer_with(lost_at + 3000 + s.silence_timeout(), &mut |_| {});
        while s
            .poll_transmit(lost_at + 9_000_000_000, &mut [0u8; 256])
            .is_some()
        {}
        s.on_datagram(lost_at + 9_000_000_001, &reject(b'A'), &mut |_| {});
        assert_eq!(s.poll_timeout(), None);
        let mut first = ClientSession::new("demo01", "demo01", "AB", 1000);
        first.login(0);
        while first.poll_transmit(0, &mut [0u8; 256]).is_some() {}
        first.on_datagram(1, &reject(b'S'), &mut |_| {});
        assert_eq!(first.poll_timeout(), None);
    }

    #[test]
    fn sequence_numbers_at_the_top_of_the_range_do_not_overflow() {
        // A Login Accepted naming u64::MAX, then a message at that number.
        let mut s = ClientSession::new("demo01", "demo01", "AB", 1000);
        s.on_datagram(0, &login_accepted(u64::MAX), &mut |_| {});
        s.on_datagram(1, &sequenced(u64::MAX, 2), &mut |_| {});
        assert_eq!(s.next_sequence(), u64::MAX);
        // A label at u64::MAX on a session expecting 1: a gap, asked for.
        let mut s = logged_in(1000);
        s.on_datagram(1, &sequenced(u64::MAX, 3), &mut |_| {});
        assert_eq!(s.next_sequence(), 1);
        assert_eq!(s.stats().gaps, 1);
    }

    #[test]
    fn token_numbers_past_u64_are_no_numbers_and_short_prefixes_have_the_largest_space() {
        assert_eq!(token_number(b"", b"ZZZZZZZZZZZZZZ"), None);
        assert_eq!(token_number(b"A", b"AZZZZZZZZZZZZZ"), None);
        assert_eq!(token_number(b"", b"00000000000010"), Some(36));
        assert_eq!(token_space(0), u64::MAX);
        assert_eq!(token_space(1), u64::MAX);
        assert_eq!(token_space(3), 36u64.pow(11));
    }

    #[test]
    fn a_late_login_accepted_past_the_next_number_asks_for_the_gap_instead_of_skipping_it() {
        let mut s = ClientSession::new("demo01", "demo01", "AB", 1000);
        s.login(0);
        s.on_timer(1000);
        while s.poll_transmit(1000, &mut [0u8; 256]).is_some() {}
        s.on_datagram(1001, &login_accepted(1), &mut |_| {});
        // Message 1 is lost; the answer to the re-sent login says 2.
        s.on_datagram(1002, &login_accepted(2), &mut |_| {});
        assert_eq!(s.next_sequence(), 1);
        assert_eq!(sent_login(&mut s, 1002), Some(1));
        assert_eq!(s.stats().recoveries, 1);
        s.on_datagram(1003, &login_accepted(1), &mut |_| {});
        s.on_datagram(1004, &sequenced(1, 1), &mut |_| {});
        assert_eq!(s.next_sequence(), 2);
        assert_eq!(s.stats().unrecoverable, 0);
    }

    /// A labelled Server Heartbeat: the exchange's next number is `next`.
    fn heartbeat(next: u64) -> Vec<u8> {
        let mut b = [0u8; 64];
        let mut len = udp_label::write(&mut b, next);
        len += soupbin::write_empty(&mut b[len..], soupbin::kind::SERVER_HEARTBEAT).unwrap();
        b[..len].to_vec()
    }

    /// A session with three requests waiting (two Enter Orders and a
    /// Cancel) whose answers, messages 2 to 4, the exchange no longer had
    /// when the session asked for them: the Login Accepted answering the
    /// re-request says 5. At time 10; returns the requests' tokens.
    fn answers_lost_for_good() -> (ClientSession, [Token; 3]) {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        let resting = one_lot_at_0(&mut s);
        s.on_datagram(0, &accepted_at(1, resting, symbol), &mut |_| {});
        let (a, b) = (one_lot_at_0(&mut s), one_lot_at_0(&mut s));
        s.cancel(0, resting, Qty::ZERO);
        while s.poll_transmit(0, &mut [0u8; 1400]).is_some() {}
        s.on_datagram(10, &heartbeat(5), &mut |_| {});
        assert_eq!(sent_login(&mut s, 10), Some(2));
        s.on_datagram(10, &login_accepted(5), &mut |_| {});
        assert_eq!(s.stats().unrecoverable, 3);
        assert_eq!(s.outstanding(), 3);
        (s, [a, b, resting])
    }

    /// What a session sent and reported.
    #[derive(Default)]
    struct Exchanged {
        /// (time, OUCH type) of every request sent.
        requests: Vec<(u64, u8)>,
        logins: usize,
        events: Vec<ClientEvent>,
    }

    /// Runs the session's timer every 10 from `from` to `to` against an
    /// exchange that answers no request (it used their tokens already)
    /// and, while `alive`, answers each Login Request with a Login Accepted
    /// at `next` and sends a heartbeat labelled `next` every 50.
    fn against_exchange(
        s: &mut ClientSession,
        from: u64,
        to: u64,
        alive: bool,
        next: u64,
    ) -> Exchanged {
        let mut x = Exchanged::default();
        let mut out = [0u8; 1400];
        for now in (from..=to).step_by(10) {
            s.on_timer_with(now, &mut |e| x.events.push(e));
            let mut logins = 0;
            while let Some(n) = s.poll_transmit(now, &mut out) {
                for p in soupbin::packets(&out[..n]).flatten() {
                    match p {
                        Packet::UnsequencedData(m) => x.requests.push((now, m[0])),
                        Packet::LoginRequest(_) => logins += 1,
                        _ => {}
                    }
                }
            }
            x.logins += logins;
            if alive {
                for _ in 0..logins {
                    s.on_datagram(now, &login_accepted(next), &mut |e| x.events.push(e));
                }
                if now % 50 == 0 {
                    s.on_datagram(now, &heartbeat(next), &mut |e| x.events.push(e));
                }
            }
        }
        x
    }

    #[test]
    fn requests_answered_in_an_unrecoverable_range_are_given_up_after_two_heard_re_sends() {
        let (mut s, [a, b, resting]) = answers_lost_for_good();
        let x = against_exchange(&mut s, 10, 20_000, true, 5);
        // Re-sent at 100 and 300, each followed by heartbeats (150, 350):
        // at the next deadline (700) each is given up, once.
        assert_eq!(
            x.requests,
            [100, 100, 100, 300, 300, 300]
                .into_iter()
                .zip([b'O', b'O', b'X', b'O', b'O', b'X'])
                .collect::<Vec<_>>()
        );
        assert_eq!(
            x.events,
            [
                ClientEvent::Unanswered {
                    token: a,
                    request: b'O'
                },
                ClientEvent::Unanswered {
                    token: b,
                    request: b'O'
                },
                ClientEvent::Unanswered {
                    token: resting,
                    request: b'X'
                },
            ]
        );
        assert_eq!(x.events[0].token(), Some(a));
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 3);
        assert_eq!(s.stats().resent, 6);
        // Nothing is sent any more: no request, and no re-request for them.
        let later = against_exchange(&mut s, 1_000, 100_000, true, 5);
        assert!(later.requests.is_empty() && later.events.is_empty());
        assert_eq!(later.logins, 0);
    }

    #[test]
    fn requests_whose_answers_were_lost_keep_being_re_sent_while_the_exchange_is_silent() {
        let (mut s, [a, b, resting]) = answers_lost_for_good();
        s.set_server_heartbeat(1_000, 3);
        let symbol = Symbol::new("TK2612").unwrap();
        // The exchange restarts: silent until 10,000, the session lost at
        // 3,010; until then each request is re-sent at 100, 300, 700, 1500.
        let down = against_exchange(&mut s, 10, 9_990, false, 5);
        assert_eq!(down.requests.len(), 12);
        assert_eq!(down.events, [ClientEvent::ConnectionLost]);
        // Back: logged in again at 10,010 and heard from, but the first
        // re-send after it (10,020) is lost on the way; the re-sends before
        // the silence do not count, so the next one (11,620) still goes.
        let up = against_exchange(&mut s, 10_000, 11_690, true, 5);
        assert!(up
            .events
            .contains(&ClientEvent::LoggedIn { next_sequence: 5 }));
        assert!(
            !up.events
                .iter()
                .any(|e| matches!(e, ClientEvent::Unanswered { .. })),
            "{:?}",
            up.events
        );
        let times: Vec<u64> = up.requests.iter().map(|r| r.0).collect();
        assert_eq!(times, [10_020, 10_020, 10_020, 11_620, 11_620, 11_620]);
        // Answered: settled as usual.
        let mut events = Vec::new();
        for answer in [
            accepted_at(5, a, symbol),
            accepted_at(6, b, symbol),
            canceled_at(7, resting, 1),
        ] {
            s.on_datagram(11_700, &answer, &mut |e| events.push(e));
        }
        let tokens: Vec<_> = events.iter().map(|e| e.token()).collect();
        assert_eq!(tokens, [Some(a), Some(b), Some(resting)]);
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 0);
        let after = against_exchange(&mut s, 11_710, 40_000, true, 8);
        assert!(after.requests.is_empty() && after.events.is_empty());
    }

    #[test]
    fn a_request_sent_after_answers_were_lost_is_not_given_up_for_them() {
        let symbol = Symbol::new("TK2612").unwrap();
        let with_a_later_request = || {
            let (mut s, _) = answers_lost_for_good();
            let later = s.enter(
                20,
                symbol,
                Side::Buy,
                Qty::new(1),
                Price::from_raw(1),
                Tif::Day,
            );
            (s, later)
        };
        let (mut s, later) = with_a_later_request();
        let x = against_exchange(&mut s, 20, 1_500, true, 5);
        let given_up: Vec<_> = x.events.iter().filter_map(|e| e.token()).collect();
        assert_eq!(given_up.len(), 3);
        assert!(!given_up.contains(&later));
        // Still waiting, and still re-sent (the exchange has not answered).
        assert_eq!(s.outstanding(), 1);
        let resends = x.requests.iter().filter(|r| r.0 > 700).count();
        assert!(resends >= 1, "{:?}", x.requests);
        s.on_datagram(1_510, &accepted_at(5, later, symbol), &mut |_| {});
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 3);
        // Its answer never comes although the exchange answers every
        // re-request asked after its re-sends: it is given up too, on its
        // own count, after the others (re-sent at 120, 320 and 720, each
        // followed by an answered re-request: given up at 1,520).
        let (mut s, later) = with_a_later_request();
        let x = against_exchange(&mut s, 20, 20_000, true, 5);
        let given_up: Vec<_> = x.events.iter().filter_map(|e| e.token()).collect();
        assert_eq!(given_up.len(), 4);
        assert_eq!(given_up[3], later);
        let its_resends: Vec<u64> = x
            .requests
            .iter()
            .map(|r| r.0)
            .filter(|&t| t > 700)
            .collect();
        assert_eq!(its_resends, [720]);
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 4);
    }

    #[test]
    fn a_canceled_with_decrement_zero_settles_the_cancel() {
        let mut s = logged_in(100);
        let token = *b"AB00000001    ";
        s.cancel(0, token, Qty::new(3));
        assert_eq!(s.outstanding(), 1);
        let c = ouch::Canceled::new(0, token, Qty::ZERO, b'U');
        let mut d = [0u8; 128];
        let mut len = udp_label::write(&mut d, 1);
        len += soupbin::write_packet(&mut d[len..], soupbin::kind::SEQUENCED_DATA, c.as_bytes())
            .unwrap();
        let mut events = Vec::new();
        s.on_datagram(10, &d[..len], &mut |e| events.push(e));
        assert_eq!(s.outstanding(), 0);
        assert!(matches!(
            events[..],
            [ClientEvent::Canceled { decrement, .. }] if decrement == Qty::ZERO
        ));
    }

    /// What a session driven by a shell that sleeps until `poll_timeout`
    /// sent and reported.
    #[derive(Default)]
    struct Driven {
        /// When each Login Request went out.
        logins: Vec<u64>,
        /// When each request (first send or re-send) went out.
        requests: Vec<u64>,
        /// Events, with when they were reported.
        events: Vec<(u64, ClientEvent)>,
        /// Turns of the driving loop.
        turns: usize,
    }

    /// Drives `s` from `from` to `to` (ns) the way `UdpClient::drive` is
    /// driven by a program that sleeps until `poll_timeout`, against an
    /// exchange `rtt` away whose next sequence number is `next`: it
    /// answers every Login Request with a Login Accepted at `next`, sends
    /// a labelled heartbeat after a second without sending, and never
    /// answers an order (their tokens were used by an earlier run today,
    /// so it takes every one as a re-sent copy and drops it). At most
    /// 200,000 turns.
    fn against_an_exchange_that_used_the_tokens(
        s: &mut ClientSession,
        from: u64,
        to: u64,
        rtt: u64,
        next: u64,
    ) -> Driven {
        let mut d = Driven::default();
        let mut answers: VecDeque<u64> = VecDeque::new();
        let mut exchange_sent = from;
        let mut now = from;
        let mut out = [0u8; 1400];
        while now <= to && d.turns < 200_000 {
            d.turns += 1;
            while answers.front().is_some_and(|&t| t <= now) {
                answers.pop_front();
                exchange_sent = now;
                s.on_datagram(now, &login_accepted(next), &mut |e| d.events.push((now, e)));
            }
            if now >= exchange_sent + 1_000_000_000 {
                exchange_sent = now;
                s.on_datagram(now, &heartbeat(next), &mut |e| d.events.push((now, e)));
            }
            if s.poll_timeout().is_some_and(|t| t <= now) {
                s.on_timer_with(now, &mut |e| d.events.push((now, e)));
            }
            while let Some(n) = s.poll_transmit(now, &mut out) {
                for p in soupbin::packets(&out[..n]).flatten() {
                    match p {
                        Packet::LoginRequest(_) => {
                            d.logins.push(now);
                            answers.push_back(now + rtt);
                        }
                        Packet::UnsequencedData(_) => d.requests.push(now),
                        _ => {}
                    }
                }
            }
            // Sleep until the session's timer, the next answer or the
            // exchange's heartbeat, whichever is first.
            let wake = [
                s.poll_timeout().filter(|&t| t > now),
                answers.front().copied(),
                Some(exchange_sent + 1_000_000_000),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap();
            now = wake.max(now + 1);
        }
        d
    }

    /// A new session of a program run a second time today with the token
    /// prefix of its first run: logged in (at the most recent message, 40)
    /// and its first order sent at 1 ms; that order's token was used by
    /// the first run, so the exchange drops it. Resend wait 200 ms, round
    /// trip 50 us.
    fn a_second_run_with_the_first_runs_tokens() -> (ClientSession, Token) {
        let mut s = ClientSession::new("demo06", "demo06", "UX", 200_000_000);
        s.login(0);
        while s.poll_transmit(0, &mut [0u8; 256]).is_some() {}
        s.on_datagram(50_000, &login_accepted(40), &mut |_| {});
        let token = s.enter(
            1_000_000,
            Symbol::new("TK2612").unwrap(),
            Side::Buy,
            Qty::new(1),
            Price::from_raw(65_000),
            Tif::Day,
        );
        (s, token)
    }

    #[test]
    fn re_requests_go_one_at_a_time_with_growing_waits_so_a_client_never_floods_the_exchange() {
        let (mut s, _) = a_second_run_with_the_first_runs_tokens();
        let d =
            against_an_exchange_that_used_the_tokens(&mut s, 1_000_000, 3_000_000_000, 50_000, 40);
        // Three seconds of a request that is never answered: a handful of
        // re-requests, not one per round trip.
        assert!(d.logins.len() <= 16, "{} logins in 3 s", d.logins.len());
        assert_eq!(s.stats().recoveries, d.logins.len() as u64);
        // Never sooner than the resend wait after the previous one, and the
        // waits grow up to a few hundred milliseconds.
        let gaps: Vec<u64> = d.logins.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.iter().all(|&g| g >= 200_000_000), "{gaps:?}");
        assert!(gaps.iter().all(|&g| g <= 500_000_000), "{gaps:?}");
        assert!(d.turns < 1_000, "the driver slept: {} turns", d.turns);
    }

    #[test]
    fn a_request_never_answered_while_the_exchange_answers_re_requests_is_given_up_within_seconds()
    {
        let (mut s, token) = a_second_run_with_the_first_runs_tokens();
        let d =
            against_an_exchange_that_used_the_tokens(&mut s, 1_000_000, 10_000_000_000, 50_000, 40);
        let given_up: Vec<(u64, ClientEvent)> = d
            .events
            .iter()
            .copied()
            .filter(|(_, e)| matches!(e, ClientEvent::Unanswered { .. }))
            .collect();
        assert_eq!(given_up.len(), 1, "{:?}", d.events);
        let (at, e) = given_up[0];
        assert_eq!(
            e,
            ClientEvent::Unanswered {
                token,
                request: b'O'
            }
        );
        assert!(at <= 4_000_000_000, "given up at {at}");
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 1);
        // Then nothing more is re-sent or asked for, and the session stays.
        assert!(d.requests.iter().all(|&t| t < at), "{:?}", d.requests);
        assert!(d.logins.iter().all(|&t| t < at), "{:?}", d.logins);
        assert!(s.is_logged_in());
        assert!(!d
            .events
            .iter()
            .any(|(_, e)| *e == ClientEvent::ConnectionLost));
    }

    /// A session that received messages 1 to 3 (its next number 4) and then
    /// lost the exchange: its re-login, asking for 4, is sent. With the
    /// time it was lost at.
    fn lost_after_three_messages() -> (ClientSession, u64) {
        let mut s = logged_in(1000);
        s.on_datagram(10, &sequenced(1, 3), &mut |_| {});
        let lost_at = 10 + s.silence_timeout();
        s.on_timer_with(lost_at, &mut |_| {});
        assert!(!s.is_logged_in());
        assert_eq!(sent_login(&mut s, lost_at), Some(4));
        (s, lost_at)
    }

    /// The Login Request packets, and the OUCH types of the requests, the
    /// session sends at `now`.
    fn sent_at(s: &mut ClientSession, now: u64) -> (Vec<u64>, Vec<u8>) {
        let (mut logins, mut requests) = (Vec::new(), Vec::new());
        let mut out = [0u8; 1400];
        while let Some(n) = s.poll_transmit(now, &mut out) {
            for p in soupbin::packets(&out[..n]).flatten() {
                match p {
                    Packet::LoginRequest(r) => logins.push(r.requested_sequence().unwrap()),
                    Packet::UnsequencedData(m) => requests.push(m[0]),
                    _ => {}
                }
            }
        }
        (logins, requests)
    }

    #[test]
    fn a_re_login_answered_below_the_number_it_asked_for_is_a_new_stream_whose_messages_are_delivered(
    ) {
        let (mut s, lost_at) = lost_after_three_messages();
        s.on_timer(lost_at + 1000);
        assert_eq!(sent_login(&mut s, lost_at + 1000), Some(4), "sent again");
        // The exchange restarted without its journal: its stream for the
        // session begins again at 1.
        let mut events = Vec::new();
        s.on_datagram(lost_at + 1001, &login_accepted(1), &mut |e| events.push(e));
        assert_eq!(
            events,
            [
                ClientEvent::NewStream {
                    next_sequence: 1,
                    previous: 4
                },
                ClientEvent::LoggedIn { next_sequence: 1 },
            ]
        );
        assert_eq!(s.stats().new_streams, 1);
        assert_eq!(s.next_sequence(), 1);
        // The new stream's messages are delivered, not dropped as
        // duplicates of the old one's 1 to 3.
        let symbol = Symbol::new("TK2612").unwrap();
        let t = s.enter(
            lost_at + 1002,
            symbol,
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        );
        events.clear();
        s.on_datagram(lost_at + 1003, &accepted_at(1, t, symbol), &mut |e| {
            events.push(e)
        });
        assert!(
            matches!(events[..], [ClientEvent::Accepted { token, .. }] if token == t),
            "{events:?}"
        );
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().duplicates_dropped, 0);
        // The answer to the re-login's second copy is no second new stream.
        s.on_datagram(lost_at + 1004, &login_accepted(1), &mut |e| events.push(e));
        assert_eq!(s.stats().new_streams, 1);
        assert_eq!(s.next_sequence(), 2);
    }

    #[test]
    fn requests_waiting_when_a_new_stream_begins_are_given_up_and_never_re_sent_into_it() {
        let mut s = logged_in(1000);
        let symbol = Symbol::new("TK2612").unwrap();
        let resting = one_lot_at_0(&mut s);
        s.on_datagram(5, &accepted_at(1, resting, symbol), &mut |_| {});
        // Waiting when the exchange goes: an Enter, a Replace of the resting
        // order and then a Cancel of it.
        let entered = s.enter(
            10,
            symbol,
            Side::Sell,
            Qty::new(2),
            Price::from_raw(9),
            Tif::Day,
        );
        let replacement = s.replace(11, resting, Qty::new(1), Price::from_raw(2));
        s.cancel(12, resting, Qty::ZERO);
        while s.poll_transmit(12, &mut [0u8; 1400]).is_some() {}
        let lost_at = 12 + s.silence_timeout();
        s.on_timer_with(lost_at, &mut |_| {});
        assert!(!s.is_logged_in());
        while s.poll_transmit(lost_at, &mut [0u8; 1400]).is_some() {}
        // The restarted exchange answers the re-login (which asked for 2)
        // from 1.
        let mut events = Vec::new();
        s.on_datagram(lost_at + 1, &login_accepted(1), &mut |e| events.push(e));
        assert_eq!(
            events,
            [
                ClientEvent::NewStream {
                    next_sequence: 1,
                    previous: 2
                },
                ClientEvent::Unanswered {
                    token: entered,
                    request: b'O'
                },
                ClientEvent::Unanswered {
                    token: replacement,
                    request: b'U'
                },
                ClientEvent::Unanswered {
                    token: resting,
                    request: b'X'
                },
                ClientEvent::LoggedIn { next_sequence: 1 },
            ]
        );
        assert_eq!(s.outstanding(), 0);
        assert_eq!(s.stats().unanswered, 3);
        // None of them is ever sent into the new stream, and nothing is
        // asked for on their account.
        for now in (lost_at + 10..lost_at + 100_000).step_by(10) {
            s.on_timer(now);
            let (logins, requests) = sent_at(&mut s, now);
            assert!(requests.is_empty(), "{requests:?} sent at {now}");
            assert!(logins.is_empty(), "{logins:?} asked for at {now}");
        }
        assert_eq!(s.stats().resent, 0);
    }

    /// A session that received messages 1 to 3 and sent an order (at 10),
    /// not answered yet; with the order's token.
    fn three_messages_and_an_order_sent() -> (ClientSession, Token) {
        let mut s = logged_in(100);
        let symbol = Symbol::new("TK2612").unwrap();
        s.on_datagram(5, &sequenced(1, 3), &mut |_| {});
        let t = s.enter(
            10,
            symbol,
            Side::Buy,
            Qty::new(1),
            Price::from_raw(1),
            Tif::Day,
        );
        while s.poll_transmit(10, &mut [0u8; 1400]).is_some() {}
        (s, t)
    }

    #[test]
    fn the_answer_to_a_re_request_below_the_number_it_asked_for_is_a_new_stream() {
        let (mut s, t) = three_messages_and_an_order_sent();
        // The exchange restarts within the silence timeout: the order is
        // re-sent, unanswered, and the session asks for the stream from 4.
        s.on_timer(110);
        assert_eq!(sent_at(&mut s, 110), (vec![4], vec![b'O']));
        let mut events = Vec::new();
        s.on_datagram(120, &login_accepted(1), &mut |e| events.push(e));
        assert_eq!(
            events,
            [
                ClientEvent::NewStream {
                    next_sequence: 1,
                    previous: 4
                },
                ClientEvent::Unanswered {
                    token: t,
                    request: b'O'
                },
            ]
        );
        assert!(s.is_logged_in());
        assert_eq!(s.next_sequence(), 1);
        s.on_datagram(130, &sequenced(1, 2), &mut |_| {});
        assert_eq!(s.next_sequence(), 3);
        assert_eq!(s.stats().duplicates_dropped, 0);
    }

    #[test]
    fn a_request_queued_and_not_sent_when_a_new_stream_begins_is_not_sent_into_it() {
        let (mut s, t) = three_messages_and_an_order_sent();
        // Its re-send and the re-request are queued; the new stream's
        // answer comes before the caller sends them.
        s.on_timer(110);
        let mut events = Vec::new();
        s.on_datagram(120, &login_accepted(1), &mut |e| events.push(e));
        assert!(events.contains(&ClientEvent::Unanswered {
            token: t,
            request: b'O'
        }));
        let (_, requests) = sent_at(&mut s, 120);
        assert!(requests.is_empty(), "{requests:?}");
    }

    #[test]
    fn a_late_answer_to_a_login_that_asked_for_less_is_no_new_stream() {
        let (mut s, lost_at) = lost_after_three_messages();
        // The re-login goes again (its answer is slow), then the first
        // answer comes with the messages from 4 to 9.
        s.on_timer(lost_at + 1000);
        assert_eq!(sent_login(&mut s, lost_at + 1000), Some(4));
        let mut events = Vec::new();
        s.on_datagram(lost_at + 1001, &login_accepted(4), &mut |e| events.push(e));
        s.on_datagram(lost_at + 1002, &sequenced(4, 6), &mut |e| events.push(e));
        assert_eq!(s.next_sequence(), 10);
        // Message 11 arrives before 10: the session asks from 10.
        s.on_datagram(lost_at + 1003, &sequenced(11, 1), &mut |_| {});
        assert_eq!(sent_login(&mut s, lost_at + 1003), Some(10));
        // The answer to the second re-login, from 4, below the next number
        // but not below every number asked for: a late answer.
        s.on_datagram(lost_at + 1004, &login_accepted(4), &mut |e| events.push(e));
        s.on_datagram(lost_at + 1005, &sequenced(4, 6), &mut |e| events.push(e));
        assert_eq!(s.next_sequence(), 10);
        assert_eq!(s.stats().new_streams, 0);
        assert!(
            !events
                .iter()
                .any(|e| matches!(e, ClientEvent::NewStream { .. })),
            "{events:?}"
        );
        assert_eq!(s.stats().duplicates_dropped, 6, "nothing delivered twice");
    }

    #[test]
    fn a_heartbeat_below_the_next_number_asks_for_the_stream_and_finds_a_new_stream_missed_before()
    {
        let mut s = ClientSession::new("demo01", "demo01", "AB", 100);
        s.login(0);
        assert_eq!(sent_login(&mut s, 0), Some(0));
        // The answer is slow: the login goes again before it comes.
        s.on_timer(100);
        assert_eq!(sent_login(&mut s, 100), Some(0));
        s.on_datagram(101, &login_accepted(1), &mut |_| {});
        s.on_datagram(102, &sequenced(1, 3), &mut |_| {});
        // The exchange restarts without its journal at once: a gap seen
        // (message 6) is asked for from 4, and the restarted exchange
        // answers from 1. The answer to the first login's copy, which
        // asked for the most recent message, may still come and say 1: this
        // one is not taken for a new stream.
        s.on_datagram(105, &sequenced(6, 1), &mut |_| {});
        assert_eq!(sent_login(&mut s, 105), Some(4));
        let mut events = Vec::new();
        s.on_datagram(110, &login_accepted(1), &mut |e| events.push(e));
        assert!(events.is_empty(), "{events:?}");
        assert_eq!(s.next_sequence(), 4);
        // The restarted exchange's heartbeat, labelled 1: behind what was
        // delivered, so the session asks again, and now that every login
        // waiting asked for 4, the answer from 1 is a new stream.
        s.on_datagram(1_000, &heartbeat(1), &mut |e| events.push(e));
        assert_eq!(sent_login(&mut s, 1_000), Some(4));
        s.on_datagram(1_001, &login_accepted(1), &mut |e| events.push(e));
        assert_eq!(
            events,
            [ClientEvent::NewStream {
                next_sequence: 1,
                previous: 4
            }]
        );
        s.on_datagram(1_002, &sequenced(1, 1), &mut |_| {});
        assert_eq!(s.next_sequence(), 2);
        // Heartbeats at the new stream's number ask for nothing.
        s.on_datagram(2_000, &heartbeat(2), &mut |_| {});
        assert_eq!(sent_login(&mut s, 2_000), None);
    }

    /// A datagram labelled `seq` holding a Rejected of `token` for `reason`.
    fn rejected_at(seq: u64, token: Token, reason: u8) -> Vec<u8> {
        labelled(seq, ouch::Rejected::new(0, token, reason).as_bytes())
    }

    #[test]
    fn a_rejected_for_a_token_with_a_cancel_also_waiting_answers_the_enter_or_replace_first() {
        let mut s = logged_in(1000);
        // An Enter, and a Cancel of it sent before its answer: the exchange
        // deals with them in order, so the first Rejected answers the Enter
        // and the second (the order is unknown) the Cancel.
        let t = one_lot_at_0(&mut s);
        s.cancel(1, t, Qty::ZERO);
        let mut events = Vec::new();
        s.on_datagram(
            10,
            &rejected_at(1, t, ouch::reject::INVALID_PRICE),
            &mut |e| events.push(e),
        );
        s.on_datagram(11, &rejected_at(2, t, ouch::reject::OTHER), &mut |e| {
            events.push(e)
        });
        let requests: Vec<u8> = events
            .iter()
            .map(|e| match e {
                ClientEvent::Rejected { request, .. } => *request,
                e => panic!("{e:?}"),
            })
            .collect();
        assert_eq!(requests, [b'O', b'X']);
        assert_eq!(s.outstanding(), 0);
        // A Replace's Rejected carries its replacement token, which a
        // Cancel sent before the Replace's answer names too.
        let symbol = Symbol::new("TK2612").unwrap();
        let resting = one_lot_at_0(&mut s);
        s.on_datagram(20, &accepted_at(3, resting, symbol), &mut |_| {});
        let replacement = s.replace(21, resting, Qty::new(1), Price::from_raw(2));
        s.cancel(22, replacement, Qty::ZERO);
        events.clear();
        s.on_datagram(
            30,
            &rejected_at(4, replacement, ouch::reject::OTHER),
            &mut |e| events.push(e),
        );
        assert_eq!(
            events,
            [ClientEvent::Rejected {
                token: replacement,
                reason: ouch::reject::OTHER,
                request: b'U'
            }]
        );
        assert_eq!(s.outstanding(), 1, "the Cancel still waits");
    }
}
