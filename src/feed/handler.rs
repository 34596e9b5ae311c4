//! The feed handler's core (sans-IO): MoldUDP64 packets in sequence order,
//! gap detection and recovery requests, ITCH applied to the books.
//!
//! Owns the expected sequence number. Packets ahead of it are buffered
//! (bounded) while the missing range is requested from the retransmission
//! server, again after a timeout that doubles; duplicates are dropped; a
//! late joiner requests everything from sequence 1. A packet whose
//! numbering would run past 2^64 is a bad packet (wrapped, it would number
//! its messages as the day's first).
//!
//! Follows one MoldUDP64 session: the one it is told to
//! ([`FeedHandler::follow_session`]), or else the first one it hears.
//! Packets of any other session are counted and dropped, never applied.

use std::collections::BTreeMap;

use super::book::FeedBooks;
use crate::latency::LatencyHistogram;
use crate::types::Nanos;
use crate::wire::itch::Message;
use crate::wire::moldudp64::{self, PacketBuilder};

/// First wait for an answer before asking again, and the most it doubles to.
const FIRST_BACKOFF: u64 = 20_000_000;
const MAX_BACKOFF: u64 = 200_000_000;

/// The most messages one request asks for: what the exchange answers in
/// one tick (`exchange::requesters::MESSAGES_PER_TICK`), so an answer is
/// whole and the handler can tell one still arriving from one lost.
const REQUEST_CHUNK: u64 = 2_048;

/// Most messages held while a gap is open. Only messages of at most
/// [`MAX_HELD_LEN`] bytes are held, so this bounds the memory too; a longer
/// one (no ITCH 5.0 message) is left to be re-requested and counted when it
/// comes in order.
const MAX_BUFFERED: usize = 1 << 20;

/// ITCH 5.0's longest message (NOII, 50 bytes). Held by length, not by
/// whether tokex decodes it: a type tokex does not decode (Reg SHO, LULD,
/// ... in another producer's feed) still takes its sequence number, and
/// left out of the buffer it stopped the gap's closing there (for good in
/// a capture, which holds no answer to a request nobody made).
const MAX_HELD_LEN: usize = 50;

/// Counts of the feed handler.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FeedStats {
    pub packets: u64,
    pub messages: u64,
    pub duplicates: u64,
    pub gaps: u64,
    pub recovered: u64,
    pub requests: u64,
    pub bad_packets: u64,
    /// Packets of a MoldUDP64 session other than the one followed.
    pub other_session: u64,
    pub book_errors: u64,
}

/// MoldUDP64 in, books out.
pub struct FeedHandler {
    session: Option<[u8; 10]>,
    next: u64,
    /// Highest sequence number the server is known to have sent + 1.
    horizon: u64,
    buffered: BTreeMap<u64, Vec<u8>>,
    pub books: FeedBooks,
    stats: FeedStats,
    last_request: u64,
    /// The range the last request asked for: while the next number is in
    /// it the answer may still be arriving, and the request is repeated
    /// only after `backoff`; past it (or before it) the next request goes
    /// out at once.
    requested_from: u64,
    requested_until: u64,
    backoff: u64,
    ended: bool,
    /// ITCH timestamp to the time the message reached the book (both ns
    /// since midnight), for messages applied as they arrived in order.
    pub latency: LatencyHistogram,
    /// The same for messages that waited for a gap to close (recovered from
    /// the retransmission server, or held until the gap before them was):
    /// kept apart so that a late join or a lost packet shows up here and
    /// not as a tail of the live feed.
    pub gap_latency: LatencyHistogram,
    in_gap: bool,
}

impl Default for FeedHandler {
    fn default() -> Self {
        Self::new()
    }
}

impl FeedHandler {
    /// A handler whose books know no price grids (see [`FeedBooks::new`]).
    pub fn new() -> FeedHandler {
        FeedHandler::with_books(FeedBooks::new())
    }

    /// A handler rebuilding into `books` (e.g. [`FeedBooks::with_contracts`],
    /// whose ladders are faster than the fallback).
    pub fn with_books(books: FeedBooks) -> FeedHandler {
        FeedHandler {
            session: None,
            next: 1,
            horizon: 1,
            buffered: BTreeMap::new(),
            books,
            stats: FeedStats::default(),
            last_request: 0,
            requested_from: 0,
            requested_until: 0,
            backoff: FIRST_BACKOFF,
            ended: false,
            latency: LatencyHistogram::new(),
            gap_latency: LatencyHistogram::new(),
            in_gap: false,
        }
    }

    /// Follows `session` only (10 bytes, space padded, as on the wire):
    /// without it the first packet heard names the session, and a stray
    /// packet of another session heard first would lock the real one out.
    pub fn follow_session(mut self, session: [u8; 10]) -> FeedHandler {
        self.session = Some(session);
        self
    }

    pub fn stats(&self) -> FeedStats {
        self.stats
    }

    /// End of session seen and nothing missing.
    pub fn is_complete(&self) -> bool {
        self.ended && self.next >= self.horizon
    }

    pub fn next_sequence(&self) -> u64 {
        self.next
    }

    /// Applies the next message; `after_gap` when it waited for a gap.
    fn apply(
        &mut self,
        now: Nanos,
        msg: &[u8],
        after_gap: bool,
        seen: &mut impl FnMut(u64, &Message<'_>),
    ) {
        match Message::parse(msg) {
            Ok(m) => {
                seen(self.next, &m);
                let waited = now.since_midnight().saturating_sub(m.header().timestamp);
                if after_gap {
                    self.gap_latency.record(waited);
                } else {
                    self.latency.record(waited);
                }
                if self.books.apply(&m, &mut |_, _, _, _| {}).is_err() {
                    self.stats.book_errors += 1;
                }
            }
            Err(_) => self.stats.book_errors += 1,
        }
        self.stats.messages += 1;
        self.next += 1;
    }

    /// Handles one MoldUDP64 packet (from the multicast group or a
    /// retransmission answer).
    pub fn on_packet(&mut self, now: Nanos, bytes: &[u8]) {
        self.on_packet_with(now, bytes, &mut |_, _| {});
    }

    /// As [`FeedHandler::on_packet`], calling `seen(sequence, message)` for
    /// every message as it is applied, in sequence order (e.g. `--csv`).
    pub fn on_packet_with(
        &mut self,
        now: Nanos,
        bytes: &[u8],
        seen: &mut impl FnMut(u64, &Message<'_>),
    ) {
        let Ok(p) = moldudp64::Packet::parse(bytes) else {
            self.stats.bad_packets += 1;
            return;
        };
        if *self.session.get_or_insert(p.header.session) != p.header.session {
            self.stats.other_session += 1;
            return;
        }
        let first = p.header.sequence();
        if p.is_heartbeat() || p.is_end_of_session() {
            self.stats.packets += 1;
            self.horizon = self.horizon.max(first);
            self.ended |= p.is_end_of_session();
            self.note_gap();
            return;
        }
        // Numbering that would run past 2^64 (only a hostile or broken
        // header: the handler never gets there) wraps back to the start of
        // the day, where its messages would be taken for the real ones.
        if first.checked_add(u64::from(p.header.count())).is_none() {
            self.stats.bad_packets += 1;
            return;
        }
        self.stats.packets += 1;
        for (seq, msg) in p.messages() {
            self.horizon = self.horizon.max(seq.saturating_add(1));
            if seq < self.next || self.buffered.contains_key(&seq) {
                self.stats.duplicates += 1;
            } else if seq == self.next {
                if self.in_gap {
                    self.stats.recovered += 1;
                }
                self.apply(now, msg, self.in_gap, seen);
            } else if self.buffered.len() < MAX_BUFFERED && msg.len() <= MAX_HELD_LEN {
                self.buffered.insert(seq, msg.to_vec());
            }
        }
        while let Some(msg) = self.buffered.remove(&self.next) {
            self.apply(now, &msg, true, seen);
        }
        self.note_gap();
    }

    fn note_gap(&mut self) {
        let open = self.next < self.horizon;
        if open && !self.in_gap {
            self.stats.gaps += 1;
        }
        self.in_gap = open;
    }

    /// A retransmission request for the first missing range, when one is
    /// due (at once, then after a doubling timeout).
    pub fn poll_request(&mut self, now: Nanos) -> Option<[u8; moldudp64::HEADER_LEN]> {
        if !self.in_gap {
            return None;
        }
        if (self.requested_from..self.requested_until).contains(&self.next) {
            if now.0.saturating_sub(self.last_request) < self.backoff {
                return None;
            }
            // Nothing of it came: wait longer next time; part of it came
            // (the rest was lost or cut short): ask for the rest as soon.
            self.backoff = if self.next == self.requested_from {
                (self.backoff * 2).min(MAX_BACKOFF)
            } else {
                FIRST_BACKOFF
            };
        } else {
            self.backoff = FIRST_BACKOFF;
        }
        let session = self.session?;
        let until = self.buffered.keys().next().copied().unwrap_or(self.horizon);
        let count = (until - self.next).min(REQUEST_CHUNK) as u16;
        self.requested_from = self.next;
        self.requested_until = self.next + u64::from(count);
        self.last_request = now.0;
        self.stats.requests += 1;
        Some(PacketBuilder::control(session, self.next, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ContractSet;
    use crate::feed::publisher::Publisher;

    #[test]
    fn a_late_join_is_resent_about_once_while_answers_arrive_a_few_packets_a_read() {
        let set = ContractSet::shipped();
        let mut p = Publisher::new(&set, *b"TOKEX00001", 100_000);
        p.start_of_day();
        for _ in 0..20_000 {
            p.publish_message(&[b'S'; 12]);
        }
        let mut live = Vec::new();
        p.flush(&mut |b| live.push(b.to_vec()));
        let needed = p.next_sequence() - 1;
        let mut h = FeedHandler::new();
        h.on_packet(Nanos(0), live.last().unwrap());
        let mut in_flight = std::collections::VecDeque::new();
        let (mut requests, mut resent) = (0u64, 0u64);
        let mut t = 1_000u64;
        while h.next_sequence() <= needed && t < 10_000_000_000 {
            if let Some(r) = h.poll_request(Nanos(t)) {
                requests += 1;
                resent += p.retransmit(&r, 4_096, &mut |b| in_flight.push_back(b.to_vec()));
            }
            // Ten packets a read, one read every 10 us.
            for a in in_flight.drain(..in_flight.len().min(10)) {
                h.on_packet(Nanos(t), &a);
            }
            t += 10_000;
        }
        assert_eq!(h.next_sequence(), needed + 1, "complete");
        assert!(
            resent <= needed + needed / 10,
            "{needed} missing, {resent} resent in {requests} requests"
        );
        assert!(requests <= needed / REQUEST_CHUNK + 2, "{requests}");
    }

    #[test]
    fn only_messages_no_longer_than_itch_allows_are_held_in_a_gap_so_its_memory_is_bounded() {
        let mut h = FeedHandler::new();
        // Far-ahead packets of one 1,400-byte message each: not held.
        for seq in 0..1_000u64 {
            let mut b = PacketBuilder::new(*b"TOKEX00001", 100 + seq, moldudp64::MAX_PACKET);
            b.push(&[b'A'; 1_400]).unwrap();
            h.on_packet(Nanos(1), b.bytes());
        }
        assert!(h.buffered.is_empty());
        assert!(h.poll_request(Nanos(2)).is_some(), "the gap is asked for");
        // A message that decodes is held until the gap before it closes.
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        p.start_of_day();
        let mut packets = Vec::new();
        p.flush(&mut |b| packets.push(b.to_vec()));
        let first = moldudp64::Packet::parse(&packets[0]).unwrap();
        let mut ahead = PacketBuilder::new(*b"TOKEX00001", 100, moldudp64::MAX_PACKET);
        for (_, m) in first.messages() {
            ahead.push(m).unwrap();
        }
        let mut h = FeedHandler::new();
        h.on_packet(Nanos(1), ahead.bytes());
        assert_eq!(h.buffered.len(), first.messages().count());
    }

    /// A packet of `msgs` numbered from `first`, in session TOKEX00001.
    fn packet_of(first: u64, msgs: &[&[u8]]) -> Vec<u8> {
        let mut b = PacketBuilder::new(*b"TOKEX00001", first, moldudp64::MAX_PACKET);
        for m in msgs {
            b.push(m).unwrap();
        }
        b.bytes().to_vec()
    }

    #[test]
    fn a_packet_whose_numbering_would_wrap_past_the_top_is_a_bad_packet_and_applies_nothing() {
        use crate::wire::itch::{event, Header, SystemEvent};
        use zerocopy::IntoBytes;
        let h = Header {
            stock_locate: 0,
            tracking_number: 0,
            timestamp: 1,
        };
        let start = SystemEvent::new(h, event::START_OF_MESSAGES);
        let other = SystemEvent::new(h, event::START_OF_SYSTEM_HOURS);
        let mut seq = Vec::new();
        let mut f = FeedHandler::new().follow_session(*b"TOKEX00001");
        // Numbered u64::MAX, then (wrapping) 0 and 1: the third would be
        // taken for the day's first message.
        let hostile = packet_of(
            u64::MAX,
            &[other.as_bytes(), other.as_bytes(), other.as_bytes()],
        );
        f.on_packet_with(Nanos(1), &hostile, &mut |s, m| {
            seq.push((s, m.bytes().to_vec()))
        });
        assert_eq!((f.stats().messages, f.next_sequence()), (0, 1));
        assert_eq!(f.stats().bad_packets, 1);
        assert!(f.poll_request(Nanos(2)).is_none(), "and no gap up to 2^64");
        // The real first message is applied, not dropped as a duplicate.
        f.on_packet_with(Nanos(3), &packet_of(1, &[start.as_bytes()]), &mut |s, m| {
            seq.push((s, m.bytes().to_vec()))
        });
        assert_eq!(seq, [(1, start.as_bytes().to_vec())]);
        assert_eq!(f.stats().duplicates, 0);
    }

    #[test]
    fn a_message_of_a_type_tokex_does_not_decode_is_held_in_a_gap_and_the_gap_closes_past_it() {
        use crate::wire::itch::{event, Header, SystemEvent};
        use zerocopy::IntoBytes;
        let h = Header {
            stock_locate: 1,
            tracking_number: 0,
            timestamp: 1,
        };
        let s = SystemEvent::new(h, event::START_OF_MESSAGES);
        // ITCH 5.0 Reg SHO Restriction `Y` (20 bytes), as another
        // producer's feed has them.
        let mut reg_sho = vec![b'Y', 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        reg_sho.extend_from_slice(b"TK2612  0");
        // The packet of 3..=5 before the one of 1..=2 (reordered, as a
        // capture can hold it): nothing is requested in a capture.
        let mut f = FeedHandler::new().follow_session(*b"TOKEX00001");
        let ahead = packet_of(3, &[s.as_bytes(), reg_sho.as_slice(), s.as_bytes()]);
        f.on_packet(Nanos(1), &ahead);
        f.on_packet(Nanos(2), &packet_of(1, &[s.as_bytes(), s.as_bytes()]));
        assert_eq!(f.next_sequence(), 6, "past the Reg SHO message");
        assert!(
            f.poll_request(Nanos(3)).is_none(),
            "nothing left to ask for"
        );
        assert_eq!((f.stats().messages, f.stats().gaps), (5, 1));
    }

    #[test]
    fn lost_packets_are_requested_and_the_stream_completes() {
        let set = ContractSet::shipped();
        let mut p = Publisher::new(&set, *b"TOKEX00001", 10_000);
        p.start_of_day();
        let mut packets = Vec::new();
        p.flush(&mut |b| packets.push(b.to_vec()));
        let mut h = FeedHandler::new();
        // Lose the first packet; the end of session reveals the total.
        let mut eos = Vec::new();
        p.end_of_session(&mut |b| eos.push(b.to_vec()));
        h.on_packet(Nanos(1), &eos[0]);
        assert!(!h.is_complete());
        let req = h.poll_request(Nanos(2)).expect("a request for the gap");
        assert!(
            h.poll_request(Nanos(3)).is_none(),
            "no second request before the timeout"
        );
        let mut answers = Vec::new();
        p.retransmit(&req, 1000, &mut |b| answers.push(b.to_vec()));
        for a in &answers {
            h.on_packet(Nanos(4), a);
        }
        assert!(h.is_complete());
        assert_eq!(h.stats().gaps, 1);
        assert_eq!(h.books.locates().count(), set.len());
        // The original packets arriving late are duplicates.
        for b in &packets {
            h.on_packet(Nanos(5), b);
        }
        assert!(h.stats().duplicates > 0);
    }

    #[test]
    fn a_followed_session_ignores_other_sessions_even_when_one_is_heard_first() {
        let set = ContractSet::shipped();
        let mut p = Publisher::new(&set, *b"TOKEX00001", 10_000);
        p.start_of_day();
        let mut live = Vec::new();
        p.flush(&mut |b| live.push(b.to_vec()));
        p.end_of_session(&mut |b| live.push(b.to_vec()));
        // A stray packet of another session, far ahead, heard first.
        let mut stray = PacketBuilder::new(*b"STRAY00001", 1 << 40, moldudp64::MAX_PACKET);
        stray.push(&[b'S'; 12]).unwrap();
        let stray = stray.bytes().to_vec();

        let mut learning = FeedHandler::new();
        let mut following = FeedHandler::new().follow_session(*b"TOKEX00001");
        for h in [&mut learning, &mut following] {
            h.on_packet(Nanos(1), &stray);
            for b in &live {
                h.on_packet(Nanos(2), b);
            }
        }
        // Learning from the first packet follows the stray session.
        assert!(!learning.is_complete());
        assert_eq!(learning.stats().messages, 0);
        assert!(following.is_complete());
        assert_eq!(following.books.locates().count(), set.len());
        assert_eq!(following.stats().other_session, 1);
        assert_eq!(following.stats().bad_packets, 0);
        // Nor does a request ever name the stray session.
        assert!(following.poll_request(Nanos(3)).is_none());
    }

    #[test]
    fn messages_that_waited_for_a_gap_are_timed_apart_from_the_live_feed() {
        let set = ContractSet::shipped();
        let mut p = Publisher::new(&set, *b"TOKEX00001", 10_000);
        let batch = |p: &mut Publisher, at: u64| {
            p.set_time(Nanos(at));
            p.start_of_day();
            let mut out = Vec::new();
            p.flush(&mut |b| out.push(b.to_vec()));
            out
        };
        let lost = batch(&mut p, 1_000);
        let held = batch(&mut p, 2_000);
        let live = batch(&mut p, 3_000);
        let per_batch = p.stats().messages / 3;
        let mut h = FeedHandler::new();
        for b in &held {
            h.on_packet(Nanos(2_100), b);
        }
        let req = h.poll_request(Nanos(2_200)).expect("a request for the gap");
        let mut answers = Vec::new();
        p.retransmit(&req, 1000, &mut |b| answers.push(b.to_vec()));
        for a in &answers {
            h.on_packet(Nanos(2_500), a);
        }
        for b in &live {
            h.on_packet(Nanos(3_040), b);
        }
        assert!(!lost.is_empty());
        assert_eq!(h.stats().messages, 3 * per_batch);
        assert_eq!(h.gap_latency.len(), 2 * per_batch);
        assert_eq!(
            h.gap_latency.max(),
            1_500,
            "recovered at 2,500 ns, stamped 1,000"
        );
        assert_eq!(h.latency.len(), per_batch);
        assert_eq!(h.latency.max(), 40, "the live batch, in order");
    }
}
