//! The market-data publisher (sans-IO): engine events become ITCH 5.0
//! messages with continuous sequence numbers, packed into MoldUDP64 packets
//! of at most 1472 bytes and kept in a bounded store for retransmission.
//!
//! Owns the feed's sequence numbers and what may be resent. The caller
//! flushes at the end of every engine batch (no message waits for a packet
//! to fill), sends heartbeats when idle and End of Session at shutdown, and
//! answers retransmission requests through [`Publisher::retransmit`].

use super::itch_encoder::ItchEncoder;
use crate::contract::ContractSet;
use crate::engine::{Event, EventSink};
use crate::slot_ring::{NotJustBefore, SlotRing};
use crate::types::Nanos;
use crate::wire::moldudp64::{self, PacketBuilder, PushError};

/// Longest ITCH message (NOII, 50 bytes).
const SLOT: usize = 50;

/// The last `capacity` messages by sequence number (after a restart from
/// a snapshot, only those since the snapshot's held ones: older requests go
/// to the exchange's archive).
pub struct RetransmitStore(SlotRing<SLOT>);

impl RetransmitStore {
    pub fn new(capacity: usize) -> RetransmitStore {
        RetransmitStore(SlotRing::new(capacity))
    }

    /// The bytes a full store of `capacity` messages holds.
    pub fn bytes_for(capacity: usize) -> u64 {
        SlotRing::<SLOT>::bytes_for(capacity)
    }

    /// Continues the numbering at `next` (a restart from a snapshot),
    /// holding `held`, messages `first..next` (oldest first; more than the
    /// capacity keeps the newest, fewer is fine: older requests go to the
    /// archive). Refused, the store unchanged, unless they end just before
    /// `next`: a shorter run would serve old messages under new numbers.
    pub fn resume<M: AsRef<[u8]>>(
        &mut self,
        next: u64,
        first: u64,
        held: &[M],
    ) -> Result<(), NotJustBefore> {
        self.0.refill_from(first, next, held)
    }

    #[inline]
    fn push(&mut self, msg: &[u8]) {
        self.0.push(msg);
    }

    pub fn oldest(&self) -> u64 {
        self.0.oldest()
    }

    pub fn next_sequence(&self) -> u64 {
        self.0.next_sequence()
    }

    pub fn get(&self, seq: u64) -> Option<&[u8]> {
        self.0.get(seq)
    }
}

/// Counts of the publisher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PublisherStats {
    pub messages: u64,
    pub packets: u64,
    pub heartbeats: u64,
    pub retransmit_requests: u64,
    pub retransmitted: u64,
    /// Requests for messages not (or no longer) stored, or for another session.
    pub retransmit_unanswerable: u64,
}

/// What a snapshot keeps of the publisher: where the numbering is. The
/// messages themselves are in the market-data archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublisherState {
    pub next_sequence: u64,
    /// Messages published (the exit report's count).
    pub messages: u64,
}

/// Engine events in, MoldUDP64 packets out.
pub struct Publisher {
    encoder: ItchEncoder,
    session: [u8; 10],
    builder: PacketBuilder,
    /// Complete packets waiting for the next flush.
    ready: Vec<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    store: RetransmitStore,
    now: Nanos,
    last_sent: u64,
    stats: PublisherStats,
}

impl Publisher {
    pub fn new(contracts: &ContractSet, session: [u8; 10], store_capacity: usize) -> Publisher {
        Publisher {
            encoder: ItchEncoder::new(contracts),
            session,
            builder: PacketBuilder::new(session, 1, moldudp64::MAX_PACKET),
            ready: Vec::with_capacity(64),
            spare: (0..64)
                .map(|_| Vec::with_capacity(moldudp64::MAX_PACKET))
                .collect(),
            store: RetransmitStore::new(store_capacity),
            now: Nanos(0),
            last_sent: 0,
            stats: PublisherStats::default(),
        }
    }

    /// The time stamped on messages encoded from now on.
    pub fn set_time(&mut self, now: Nanos) {
        self.now = now;
    }

    pub fn stats(&self) -> PublisherStats {
        self.stats
    }

    /// Sequence number the next message will get.
    pub fn next_sequence(&self) -> u64 {
        self.store.next_sequence()
    }

    fn seal(&mut self) {
        let mut buf = self.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(self.builder.bytes());
        self.ready.push(buf);
        self.builder.reset(self.store.next_sequence());
    }

    /// Publishes an already encoded ITCH message (benchmarks replaying a
    /// recorded stream; the exchange publishes engine events).
    pub fn publish_message(&mut self, msg: &[u8]) {
        self.publish(msg);
    }

    fn publish(&mut self, msg: &[u8]) {
        match self.builder.push(msg) {
            Ok(()) => {}
            Err(PushError::Full) => {
                self.seal();
                // An empty packet always has room for one ITCH message.
                let _ = self.builder.push(msg);
            }
            Err(PushError::TooLarge) => return,
        }
        self.store.push(msg);
        self.stats.messages += 1;
    }

    /// Start-of-day messages: system events, the stock directory, trading actions.
    pub fn start_of_day(&mut self) {
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        self.encoder
            .start_of_day(self.now, &mut |m| msgs.push(m.to_vec()));
        for m in msgs {
            self.publish(&m);
        }
    }

    /// Sends every packet completed since the last flush, and the partial one.
    pub fn flush(&mut self, send: &mut impl FnMut(&[u8])) {
        if !self.builder.is_empty() {
            self.seal();
        }
        let mut sent = false;
        for p in self.ready.drain(..) {
            send(&p);
            self.stats.packets += 1;
            self.spare.push(p);
            sent = true;
        }
        // Only a flush that sent something puts off the next heartbeat (the
        // exchange flushes every millisecond, mostly with nothing to send).
        if sent {
            self.last_sent = self.now.0;
        }
    }

    /// Drops what is pending without sending it (after journal replay: those
    /// messages are in the store; feed handlers recover them by request).
    pub fn discard_pending(&mut self) {
        while let Some(p) = self.ready.pop() {
            self.spare.push(p);
        }
        self.builder.reset(self.store.next_sequence());
    }

    /// A heartbeat when nothing was sent for `interval_ns`.
    pub fn heartbeat_if_idle(&mut self, interval_ns: u64, send: &mut impl FnMut(&[u8])) {
        if self.now.0.saturating_sub(self.last_sent) >= interval_ns {
            send(&PacketBuilder::control(
                self.session,
                self.store.next_sequence(),
                moldudp64::HEARTBEAT,
            ));
            self.last_sent = self.now.0;
            self.stats.heartbeats += 1;
        }
    }

    /// The end-of-session packet. The end-of-day System Events (end of
    /// market and system hours, end of messages) are not published with
    /// it: a stop is not the end of the trading day (the exchange may be
    /// started again and continue it from its journal, whose replay would
    /// number those messages' sequence numbers again). The ITCH file
    /// written by `tokex replay` ends with them
    /// ([`crate::feed::itch_encoder::ItchFileSink::finish`]).
    pub fn end_of_session(&mut self, send: &mut impl FnMut(&[u8])) {
        send(&PacketBuilder::control(
            self.session,
            self.store.next_sequence(),
            moldudp64::END_OF_SESSION,
        ));
    }

    /// Answers a retransmission request (a MoldUDP64 header: session, first
    /// sequence, count) with packets of what the store holds, at most
    /// `max_messages`; returns how many messages were sent. Requests for
    /// another session or for nothing stored are counted and ignored.
    pub fn retransmit(
        &mut self,
        request: &[u8],
        max_messages: u16,
        send: &mut impl FnMut(&[u8]),
    ) -> u64 {
        self.retransmit_from(request, max_messages, &mut NoArchive, send)
    }

    /// As [`Publisher::retransmit`], with messages older than the store read
    /// from `archive` (the exchange keeps every message of the day on disk).
    pub fn retransmit_from(
        &mut self,
        request: &[u8],
        max_messages: u16,
        archive: &mut dyn Archive,
        send: &mut impl FnMut(&[u8]),
    ) -> u64 {
        self.stats.retransmit_requests += 1;
        use zerocopy::FromBytes;
        let Ok(h) = moldudp64::Header::ref_from_bytes(request) else {
            self.stats.retransmit_unanswerable += 1;
            return 0;
        };
        let first = h.sequence();
        let count = u64::from(h.count().min(max_messages));
        let oldest = self.store.oldest().min(archive.first().unwrap_or(u64::MAX));
        if h.session != self.session
            || first < oldest
            || first >= self.store.next_sequence()
            || count == 0
        {
            self.stats.retransmit_unanswerable += 1;
            return 0;
        }
        let end = (first + count).min(self.store.next_sequence());
        let mut b = PacketBuilder::new(self.session, first, moldudp64::MAX_PACKET);
        let mut seq = first;
        let mut push = |b: &mut PacketBuilder, seq: &mut u64, m: &[u8]| {
            if b.push(m).is_err() {
                send(b.bytes());
                b.reset(*seq);
                let _ = b.push(m);
            }
            *seq += 1;
        };
        // The part older than the store, from the archive.
        let from_store = self.store.oldest().max(first);
        if seq < from_store {
            archive.read(seq, from_store.min(end) - seq, &mut |m| {
                push(&mut b, &mut seq, m)
            });
            if seq < from_store.min(end) {
                // The archive could not give it all: stop at the hole.
                self.stats.retransmit_unanswerable += 1;
            }
        }
        if seq >= from_store {
            while seq < end {
                let Some(m) = self.store.get(seq) else { break };
                push(&mut b, &mut seq, m);
            }
        }
        if !b.is_empty() {
            send(b.bytes());
        }
        self.stats.retransmitted += seq - first;
        seq - first
    }

    /// Where the numbering is (for a snapshot).
    pub fn state(&self) -> PublisherState {
        PublisherState {
            next_sequence: self.store.next_sequence(),
            messages: self.stats.messages,
        }
    }

    /// Continues from a snapshot's state, holding `held` (messages `first`
    /// on, oldest first, from the archive) for retransmission; refused,
    /// nothing changed, unless they end just before the state's next
    /// sequence number ([`RetransmitStore::resume`]). Nothing may be
    /// pending.
    pub fn resume<M: AsRef<[u8]>>(
        &mut self,
        s: &PublisherState,
        first: u64,
        held: &[M],
    ) -> Result<(), NotJustBefore> {
        self.store.resume(s.next_sequence, first, held)?;
        self.discard_pending();
        self.stats.messages = s.messages;
        self.builder.reset(self.store.next_sequence());
        Ok(())
    }

    /// The retransmission store (the archive copies new messages from it).
    pub fn store(&self) -> &RetransmitStore {
        &self.store
    }

    /// Makes the retransmission store's memory resident (returns the bytes
    /// touched); what it holds is unchanged.
    pub fn prefault(&mut self) -> usize {
        self.store.0.prefault()
    }
}

/// Where messages older than the in-memory store come from.
pub trait Archive {
    /// The first sequence number it holds, if any.
    fn first(&self) -> Option<u64>;
    /// Calls `out` with messages `first ..` in order, at most `count`; stops
    /// early at what it does not hold.
    fn read(&mut self, first: u64, count: u64, out: &mut dyn FnMut(&[u8]));
}

/// No archive: the store is all there is.
pub struct NoArchive;

impl Archive for NoArchive {
    fn first(&self) -> Option<u64> {
        None
    }

    fn read(&mut self, _first: u64, _count: u64, _out: &mut dyn FnMut(&[u8])) {}
}

impl EventSink for Publisher {
    #[inline]
    fn event(&mut self, e: &Event) {
        let mut buf = [0u8; SLOT];
        let mut len = 0;
        self.encoder.encode(self.now, e, &mut |m| {
            buf[..m.len()].copy_from_slice(m);
            len = m.len();
        });
        if len > 0 {
            self.publish(&buf[..len]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::moldudp64::Packet;

    fn publisher() -> Publisher {
        let set = ContractSet::shipped();
        Publisher::new(&set, *b"TOKEX00001", 1000)
    }

    fn sent(p: &mut Publisher) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        p.flush(&mut |b| out.push(b.to_vec()));
        out
    }

    #[test]
    fn sequence_numbers_are_continuous_across_packets_and_flushes() {
        let mut p = publisher();
        p.start_of_day();
        let mut next = 1u64;
        for round in 0..3 {
            for i in 0..100u64 {
                p.event(&Event::BookDelete {
                    order: crate::types::OrderId(round * 1000 + i),
                    instrument: crate::types::InstrumentId(0),
                });
            }
            for pkt in sent(&mut p) {
                assert!(pkt.len() <= moldudp64::MAX_PACKET);
                let parsed = Packet::parse(&pkt).unwrap();
                assert_eq!(parsed.header.sequence(), next);
                next += u64::from(parsed.header.count());
            }
        }
        assert_eq!(next, p.next_sequence());
    }

    #[test]
    fn retransmission_returns_the_stored_messages_from_the_requested_sequence() {
        let mut p = publisher();
        p.start_of_day();
        let original = sent(&mut p);
        let mut req = Vec::new();
        req.extend_from_slice(&PacketBuilder::control(*b"TOKEX00001", 3, 4));
        let mut answers = Vec::new();
        assert_eq!(
            p.retransmit(&req, 1000, &mut |b| answers.push(b.to_vec())),
            4
        );
        let a = Packet::parse(&answers[0]).unwrap();
        assert_eq!((a.header.sequence(), a.header.count()), (3, 4));
        // At most the cap the caller gives (the server's budget).
        assert_eq!(p.retransmit(&req, 2, &mut |_| {}), 2);
        let orig = Packet::parse(&original[0]).unwrap();
        let want: Vec<_> = orig
            .messages()
            .filter(|(s, _)| (3..7).contains(s))
            .collect();
        assert_eq!(a.messages().collect::<Vec<_>>(), want);
        // Wrong session or the future: ignored and counted.
        let ignored = p.retransmit(
            &PacketBuilder::control(*b"OTHER00001", 3, 4),
            1000,
            &mut |_| panic!(),
        );
        assert_eq!(ignored, 0);
        p.retransmit(
            &PacketBuilder::control(*b"TOKEX00001", 9999, 4),
            1000,
            &mut |_| panic!(),
        );
        assert_eq!(p.stats().retransmit_unanswerable, 2);
    }

    #[test]
    fn resuming_holds_only_a_run_that_ends_just_before_the_next_sequence() {
        let state = PublisherState {
            next_sequence: 101,
            messages: 100,
        };
        let held: Vec<Vec<u8>> = (91..=100u8).map(|i| vec![b'X', i]).collect();
        // A run that ends earlier (a damaged archive's) is refused: held
        // as 91..=100 it would answer a request for 91 with message 81.
        let mut p = publisher();
        assert_eq!(
            p.resume(&state, 81, &held),
            Err(NotJustBefore {
                first: 81,
                held: 10,
                next: 101
            })
        );
        assert_eq!(p.next_sequence(), 1, "nothing changed");
        // The run that ends at 100 is held under its own numbers.
        p.resume(&state, 91, &held).unwrap();
        assert_eq!((p.store().oldest(), p.next_sequence()), (91, 101));
        let mut answers = Vec::new();
        p.retransmit(
            &PacketBuilder::control(*b"TOKEX00001", 91, 2),
            1000,
            &mut |b| answers.push(b.to_vec()),
        );
        let a = Packet::parse(&answers[0]).unwrap();
        let got: Vec<_> = a.messages().map(|(s, m)| (s, m.to_vec())).collect();
        assert_eq!(got, vec![(91, vec![b'X', 91]), (92, vec![b'X', 92])]);
        // Nothing held: the run starts at the next sequence number.
        let mut q = publisher();
        q.resume::<&[u8]>(&state, 101, &[]).unwrap();
        assert_eq!(q.next_sequence(), 101);
    }

    #[test]
    fn heartbeat_carries_the_next_sequence_number() {
        let mut p = publisher();
        p.start_of_day();
        sent(&mut p);
        p.set_time(Nanos(5_000_000_000));
        let mut hb = Vec::new();
        p.heartbeat_if_idle(1_000_000_000, &mut |b| hb.push(b.to_vec()));
        let h = Packet::parse(&hb[0]).unwrap();
        assert!(h.is_heartbeat());
        assert_eq!(h.header.sequence(), p.next_sequence());
    }

    #[test]
    fn an_idle_feed_heartbeats_once_a_second_though_the_exchange_flushes_every_millisecond() {
        let mut p = publisher();
        p.start_of_day();
        sent(&mut p);
        let mut heartbeats = 0;
        for ms in 1..=3_000u64 {
            p.set_time(Nanos(ms * 1_000_000));
            p.flush(&mut |_| panic!("nothing is pending"));
            p.heartbeat_if_idle(1_000_000_000, &mut |_| heartbeats += 1);
        }
        assert_eq!(heartbeats, 3, "one per idle second");
        // A flush that sends puts the next one off.
        p.publish_message(&[b'S'; 12]);
        p.set_time(Nanos(3_500_000_000));
        assert_eq!(sent(&mut p).len(), 1);
        p.set_time(Nanos(4_100_000_000));
        p.heartbeat_if_idle(1_000_000_000, &mut |_| heartbeats += 1);
        assert_eq!(heartbeats, 3);
    }
}
