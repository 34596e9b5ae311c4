//! MoldUDP64 1.0: a 20-byte header (`Session` 10, `Sequence Number` u64,
//! `Message Count` u16) followed by `[length u16][message]` blocks.
//!
//! Count 0 is a heartbeat, 0xFFFF the end of session; a retransmission
//! request is a bare header whose count is the number of messages wanted.
//! Packets are built up to 1472 bytes of UDP payload (a 1500-byte MTU).

use zerocopy::network_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{need, DecodeError};

/// Byte offsets of the header.
pub mod field {
    use std::ops::Range;
    pub const SESSION: Range<usize> = 0..10;
    pub const SEQUENCE: Range<usize> = 10..18;
    pub const COUNT: Range<usize> = 18..20;
}

/// Header bytes.
pub const HEADER_LEN: usize = 20;
/// Most UDP payload a packet may have.
pub const MAX_PACKET: usize = 1472;
/// Message count of a heartbeat.
pub const HEARTBEAT: u16 = 0;
/// Message count of the end-of-session packet.
pub const END_OF_SESSION: u16 = 0xFFFF;

/// The packet header (also the whole of a retransmission request).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Header {
    pub session: [u8; 10],
    /// Sequence number of the first message in the packet (or, for a
    /// heartbeat, of the next message to come).
    pub sequence: U64,
    pub count: U16,
}

impl Header {
    pub fn new(session: [u8; 10], sequence: u64, count: u16) -> Header {
        Header {
            session,
            sequence: U64::new(sequence),
            count: U16::new(count),
        }
    }

    pub fn sequence(&self) -> u64 {
        self.sequence.get()
    }

    pub fn count(&self) -> u16 {
        self.count.get()
    }

    /// The session without its space padding.
    pub fn session(&self) -> &[u8] {
        super::trim(&self.session)
    }

    /// A retransmission request: exactly a header, asking for `count`
    /// messages from `sequence`.
    pub fn parse_request(buf: &[u8]) -> Result<&Header, DecodeError> {
        need(buf, HEADER_LEN)?;
        Header::ref_from_bytes(buf).map_err(|_| DecodeError::BadLength(buf.len()))
    }

    /// Writes the header (or a whole retransmission request) to `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, super::EncodeError> {
        super::put(out, self.as_bytes())
    }
}

/// A decoded packet: header plus its message blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub header: &'a Header,
    blocks: &'a [u8],
}

impl<'a> Packet<'a> {
    /// Decodes a packet and checks that exactly `count` well-formed blocks
    /// follow the header (none for heartbeats and end of session).
    pub fn parse(buf: &'a [u8]) -> Result<Packet<'a>, DecodeError> {
        need(buf, HEADER_LEN)?;
        let (header, blocks) =
            Header::ref_from_prefix(buf).map_err(|_| DecodeError::BadLength(buf.len()))?;
        let expected = match header.count() {
            HEARTBEAT | END_OF_SESSION => 0,
            n => usize::from(n),
        };
        let mut rest = blocks;
        for _ in 0..expected {
            need(rest, 2)?;
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            need(rest, 2 + len)?;
            rest = &rest[2 + len..];
        }
        if !rest.is_empty() {
            return Err(DecodeError::BadLength(buf.len()));
        }
        Ok(Packet { header, blocks })
    }

    pub fn is_heartbeat(&self) -> bool {
        self.header.count() == HEARTBEAT
    }

    pub fn is_end_of_session(&self) -> bool {
        self.header.count() == END_OF_SESSION
    }

    /// The messages with their sequence numbers. Lengths were checked by
    /// `parse`, so this cannot fail.
    pub fn messages(&self) -> impl Iterator<Item = (u64, &'a [u8])> + 'a {
        let mut rest = self.blocks;
        let mut seq = self.header.sequence();
        std::iter::from_fn(move || {
            if rest.len() < 2 {
                return None;
            }
            let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let msg = rest.get(2..2 + len)?;
            rest = &rest[2 + len..];
            let this = seq;
            // A hostile header may carry u64::MAX: numbering wraps, never panics.
            seq = seq.wrapping_add(1);
            Some((this, msg))
        })
    }
}

/// Why a message was not added to a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PushError {
    /// No room left: send the packet and start another.
    Full,
    /// The message alone would not fit in any packet.
    TooLarge,
}

/// Builds packets in a fixed buffer: `push` messages until it says `Full`,
/// then send `bytes()` and `reset` with the next sequence number.
pub struct PacketBuilder {
    buf: [u8; MAX_PACKET],
    len: usize,
    count: u16,
    limit: usize,
}

impl PacketBuilder {
    /// A builder for packets of at most `limit` bytes (capped at 1472).
    pub fn new(session: [u8; 10], first_sequence: u64, limit: usize) -> PacketBuilder {
        let mut b = PacketBuilder {
            buf: [0; MAX_PACKET],
            len: HEADER_LEN,
            count: 0,
            limit: limit.clamp(HEADER_LEN + 3, MAX_PACKET),
        };
        b.buf[..HEADER_LEN].copy_from_slice(Header::new(session, first_sequence, 0).as_bytes());
        b
    }

    /// Adds one message.
    #[inline]
    pub fn push(&mut self, msg: &[u8]) -> Result<(), PushError> {
        let need = 2 + msg.len();
        if HEADER_LEN + need > self.limit || msg.len() > usize::from(u16::MAX) {
            return Err(PushError::TooLarge);
        }
        if self.len + need > self.limit || self.count == END_OF_SESSION - 1 {
            return Err(PushError::Full);
        }
        self.buf[self.len..self.len + 2].copy_from_slice(&(msg.len() as u16).to_be_bytes());
        self.buf[self.len + 2..self.len + need].copy_from_slice(msg);
        self.len += need;
        self.count += 1;
        Ok(())
    }

    pub fn count(&self) -> u16 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Sequence number of the packet's first message.
    pub fn first_sequence(&self) -> u64 {
        u64::from_be_bytes(self.buf[field::SEQUENCE].try_into().unwrap_or_default())
    }

    /// The packet as it stands (header count filled in).
    pub fn bytes(&mut self) -> &[u8] {
        self.buf[field::COUNT].copy_from_slice(&self.count.to_be_bytes());
        &self.buf[..self.len]
    }

    /// Starts a new packet whose first message has `sequence`.
    pub fn reset(&mut self, sequence: u64) {
        self.buf[field::SEQUENCE].copy_from_slice(&sequence.to_be_bytes());
        self.len = HEADER_LEN;
        self.count = 0;
    }

    /// A header-only packet: heartbeat (count 0) or end of session (0xFFFF),
    /// carrying the next sequence number.
    pub fn control(session: [u8; 10], next_sequence: u64, count: u16) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out.copy_from_slice(Header::new(session, next_sequence, count).as_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: [u8; 10] = *b"TOKEX00001";

    #[test]
    fn packets_round_trip_with_consecutive_sequence_numbers() {
        let mut b = PacketBuilder::new(S, 41, MAX_PACKET);
        b.push(b"abc").unwrap();
        b.push(b"").unwrap();
        b.push(b"xy").unwrap();
        let bytes = b.bytes().to_vec();
        let p = Packet::parse(&bytes).unwrap();
        assert_eq!(p.header.session, S);
        assert_eq!((p.header.sequence(), p.header.count()), (41, 3));
        let msgs: Vec<_> = p.messages().collect();
        assert_eq!(
            msgs,
            vec![(41, &b"abc"[..]), (42, &b""[..]), (43, &b"xy"[..])]
        );
    }

    #[test]
    fn builder_fills_up_to_1472_bytes_then_reports_full() {
        let mut b = PacketBuilder::new(S, 1, MAX_PACKET);
        let msg = [7u8; 34]; // 36 bytes a block
        let mut n = 0;
        while b.push(&msg).is_ok() {
            n += 1;
        }
        assert_eq!(n, (MAX_PACKET - HEADER_LEN) / 36);
        assert!(b.bytes().len() <= MAX_PACKET);
        assert_eq!(b.push(&msg), Err(PushError::Full));
        assert_eq!(b.push(&[0u8; 1500]), Err(PushError::TooLarge));
        // Exactly 1,472 bytes: the header and one 1,450-byte message.
        let mut one = PacketBuilder::new(S, 1, MAX_PACKET);
        one.push(&[1u8; MAX_PACKET - HEADER_LEN - 2]).unwrap();
        assert_eq!(one.bytes().len(), MAX_PACKET);
        assert_eq!(one.push(&[]), Err(PushError::Full));
        let mut one = PacketBuilder::new(S, 1, MAX_PACKET);
        assert_eq!(
            one.push(&[1u8; MAX_PACKET - HEADER_LEN - 1]),
            Err(PushError::TooLarge)
        );
        b.reset(1 + n as u64);
        assert!(b.is_empty());
        assert_eq!(b.first_sequence(), 1 + n as u64);
    }

    #[test]
    fn a_sequence_number_at_the_top_of_the_range_does_not_panic() {
        // Found by `cargo fuzz run moldudp64`.
        let mut b = PacketBuilder::new(S, u64::MAX, MAX_PACKET);
        b.push(b"a").unwrap();
        b.push(b"b").unwrap();
        let bytes = b.bytes().to_vec();
        let seqs: Vec<u64> = Packet::parse(&bytes)
            .unwrap()
            .messages()
            .map(|m| m.0)
            .collect();
        assert_eq!(seqs, vec![u64::MAX, 0]);
    }

    #[test]
    fn heartbeat_and_end_of_session_are_header_only() {
        let hb = PacketBuilder::control(S, 9, HEARTBEAT);
        let p = Packet::parse(&hb).unwrap();
        assert!(p.is_heartbeat() && p.messages().next().is_none());
        let eos = PacketBuilder::control(S, 9, END_OF_SESSION);
        assert!(Packet::parse(&eos).unwrap().is_end_of_session());
    }

    #[test]
    fn count_that_disagrees_with_the_blocks_is_an_error() {
        let mut b = PacketBuilder::new(S, 1, MAX_PACKET);
        b.push(b"abc").unwrap();
        let mut bytes = b.bytes().to_vec();
        bytes[19] = 2;
        assert!(matches!(
            Packet::parse(&bytes),
            Err(DecodeError::TooShort { .. })
        ));
        bytes[19] = 1;
        bytes.push(0);
        assert!(matches!(
            Packet::parse(&bytes),
            Err(DecodeError::BadLength(_))
        ));
        assert!(matches!(
            Packet::parse(&bytes[..19]),
            Err(DecodeError::TooShort { .. })
        ));
    }
}
