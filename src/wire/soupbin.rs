//! SoupBinTCP 3.0: packets `[length u16][type u8][payload]`, where `length`
//! counts the type byte and the payload, plus a reassembler for the TCP
//! compatibility port (packets split across reads).
//!
//! The same bytes travel in UDP datagrams (one or more packets each) and on
//! TCP. Alpha fields are space padded as the spec says: username and
//! password on the right, session and sequence number on the left.

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{alpha_left, alpha_right, need, put, trim, DecodeError, EncodeError};

/// Byte offsets of the packet header.
pub mod field {
    use std::ops::Range;
    pub const LENGTH: Range<usize> = 0..2;
    pub const TYPE: usize = 2;
    pub const PAYLOAD: usize = 3;
}

/// Length field + type byte.
pub const HEADER_LEN: usize = 3;

/// Packet type bytes.
pub mod kind {
    pub const DEBUG: u8 = b'+';
    pub const LOGIN_ACCEPTED: u8 = b'A';
    pub const LOGIN_REJECTED: u8 = b'J';
    pub const SEQUENCED_DATA: u8 = b'S';
    pub const SERVER_HEARTBEAT: u8 = b'H';
    pub const END_OF_SESSION: u8 = b'Z';
    pub const LOGIN_REQUEST: u8 = b'L';
    pub const UNSEQUENCED_DATA: u8 = b'U';
    pub const CLIENT_HEARTBEAT: u8 = b'R';
    pub const LOGOUT_REQUEST: u8 = b'O';
}

/// Login Rejected reason codes.
pub mod reject {
    /// Bad username or password.
    pub const NOT_AUTHORIZED: u8 = b'A';
    /// The requested session is not available.
    pub const SESSION_NOT_AVAILABLE: u8 = b'S';
}

/// Login Request payload (46 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LoginRequest {
    pub username: [u8; 6],
    pub password: [u8; 10],
    pub requested_session: [u8; 10],
    pub requested_sequence: [u8; 20],
}

impl LoginRequest {
    pub fn username(&self) -> &[u8] {
        trim(&self.username)
    }

    pub fn password(&self) -> &[u8] {
        trim(&self.password)
    }

    /// Blank means "the current session".
    pub fn requested_session(&self) -> &[u8] {
        trim(&self.requested_session)
    }

    /// The next sequence number the client wants; 0 (or blank) means "from
    /// the most recent".
    pub fn requested_sequence(&self) -> Result<u64, DecodeError> {
        parse_numeric(&self.requested_sequence, "requested sequence number")
    }
}

/// Login Accepted payload (30 bytes).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct LoginAccepted {
    pub session: [u8; 10],
    pub sequence: [u8; 20],
}

impl LoginAccepted {
    pub fn session(&self) -> &[u8] {
        trim(&self.session)
    }

    /// The sequence number of the next sequenced message the server sends.
    pub fn next_sequence(&self) -> Result<u64, DecodeError> {
        parse_numeric(&self.sequence, "sequence number")
    }
}

/// A space-padded ASCII decimal; blank is 0.
fn parse_numeric(f: &[u8], name: &'static str) -> Result<u64, DecodeError> {
    let mut v: u64 = 0;
    for &b in trim(f) {
        if !b.is_ascii_digit() {
            return Err(DecodeError::BadField(name));
        }
        // Twenty digits can exceed u64::MAX: that is a bad field, not a panic.
        v = v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(b - b'0')))
            .ok_or(DecodeError::BadField(name))?;
    }
    Ok(v)
}

/// A decimal number left padded with spaces to N bytes (N holds every u64:
/// at least 20).
pub fn numeric_left<const N: usize>(v: u64) -> [u8; N] {
    const { assert!(N >= 20, "a u64 has up to 20 digits") };
    let mut out = [b' '; N];
    let mut v = v;
    let mut i = N;
    loop {
        if i == 0 {
            break;
        }
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out
}

/// One decoded SoupBinTCP packet, borrowing its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Debug(&'a [u8]),
    LoginAccepted(&'a LoginAccepted),
    LoginRejected(u8),
    /// An application message from the server, with the next sequence number implied.
    SequencedData(&'a [u8]),
    ServerHeartbeat,
    EndOfSession,
    LoginRequest(&'a LoginRequest),
    /// An application message from the client.
    UnsequencedData(&'a [u8]),
    ClientHeartbeat,
    LogoutRequest,
}

impl<'a> Packet<'a> {
    /// Decodes the packet at the front of `buf`; returns it and the bytes after it.
    pub fn parse(buf: &'a [u8]) -> Result<(Packet<'a>, &'a [u8]), DecodeError> {
        need(buf, HEADER_LEN)?;
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if len == 0 {
            return Err(DecodeError::BadLength(0));
        }
        need(buf, 2 + len)?;
        let kind = buf[field::TYPE];
        let payload = &buf[field::PAYLOAD..2 + len];
        let rest = &buf[2 + len..];
        let exact = |n: usize| {
            if payload.len() == n {
                Ok(())
            } else {
                Err(DecodeError::BadLength(len))
            }
        };
        let packet = match kind {
            kind::DEBUG => Packet::Debug(payload),
            kind::LOGIN_ACCEPTED => Packet::LoginAccepted(
                LoginAccepted::ref_from_bytes(payload).map_err(|_| DecodeError::BadLength(len))?,
            ),
            kind::LOGIN_REJECTED => {
                exact(1)?;
                Packet::LoginRejected(payload[0])
            }
            kind::SEQUENCED_DATA => Packet::SequencedData(payload),
            kind::SERVER_HEARTBEAT => exact(0).map(|()| Packet::ServerHeartbeat)?,
            kind::END_OF_SESSION => exact(0).map(|()| Packet::EndOfSession)?,
            kind::LOGIN_REQUEST => Packet::LoginRequest(
                LoginRequest::ref_from_bytes(payload).map_err(|_| DecodeError::BadLength(len))?,
            ),
            kind::UNSEQUENCED_DATA => Packet::UnsequencedData(payload),
            kind::CLIENT_HEARTBEAT => exact(0).map(|()| Packet::ClientHeartbeat)?,
            kind::LOGOUT_REQUEST => exact(0).map(|()| Packet::LogoutRequest)?,
            other => return Err(DecodeError::UnknownType(other)),
        };
        Ok((packet, rest))
    }

    /// The packet type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Packet::Debug(_) => kind::DEBUG,
            Packet::LoginAccepted(_) => kind::LOGIN_ACCEPTED,
            Packet::LoginRejected(_) => kind::LOGIN_REJECTED,
            Packet::SequencedData(_) => kind::SEQUENCED_DATA,
            Packet::ServerHeartbeat => kind::SERVER_HEARTBEAT,
            Packet::EndOfSession => kind::END_OF_SESSION,
            Packet::LoginRequest(_) => kind::LOGIN_REQUEST,
            Packet::UnsequencedData(_) => kind::UNSEQUENCED_DATA,
            Packet::ClientHeartbeat => kind::CLIENT_HEARTBEAT,
            Packet::LogoutRequest => kind::LOGOUT_REQUEST,
        }
    }

    /// Encodes the packet (header and payload) to the front of `out`.
    pub fn write(&self, out: &mut [u8]) -> Result<usize, EncodeError> {
        let reason;
        let payload: &[u8] = match self {
            Packet::Debug(b) | Packet::SequencedData(b) | Packet::UnsequencedData(b) => b,
            Packet::LoginAccepted(a) => a.as_bytes(),
            Packet::LoginRequest(r) => r.as_bytes(),
            Packet::LoginRejected(r) => {
                reason = [*r];
                &reason
            }
            Packet::ServerHeartbeat
            | Packet::EndOfSession
            | Packet::ClientHeartbeat
            | Packet::LogoutRequest => &[],
        };
        write_packet(out, self.kind(), payload)
    }
}

/// Iterates the packets of a datagram; stops at the first error, which it yields.
pub fn packets(mut buf: &[u8]) -> impl Iterator<Item = Result<Packet<'_>, DecodeError>> {
    let mut failed = false;
    std::iter::from_fn(move || {
        if buf.is_empty() || failed {
            return None;
        }
        match Packet::parse(buf) {
            Ok((p, rest)) => {
                buf = rest;
                Some(Ok(p))
            }
            Err(e) => {
                failed = true;
                Some(Err(e))
            }
        }
    })
}

/// The packet header for a payload of `payload_len` bytes, by value: a
/// caller appending it to a buffer copies a constant three bytes, which
/// compiles to two stores from a register (a run-time-length copy out of
/// a stack buffer just written would read it back through a store-forwarding
/// stall; see `exchange::io::Replies`).
#[inline]
pub fn header(kind: u8, payload_len: usize) -> Result<[u8; HEADER_LEN], EncodeError> {
    let len = payload_len
        .checked_add(1)
        .and_then(|l| u16::try_from(l).ok())
        .ok_or(EncodeError::FieldOverflow("packet length"))?;
    let [hi, lo] = len.to_be_bytes();
    Ok([hi, lo, kind])
}

/// Writes a packet header for a payload of `payload_len` bytes.
pub fn write_header(out: &mut [u8], kind: u8, payload_len: usize) -> Result<usize, EncodeError> {
    put(out, &header(kind, payload_len)?)
}

/// Writes a whole packet: header then `payload`.
pub fn write_packet(out: &mut [u8], kind: u8, payload: &[u8]) -> Result<usize, EncodeError> {
    need_out(out, HEADER_LEN + payload.len())?;
    let n = write_header(out, kind, payload.len())?;
    Ok(n + put(&mut out[n..], payload)?)
}

fn need_out(out: &[u8], n: usize) -> Result<(), EncodeError> {
    if out.len() < n {
        Err(EncodeError::BufferTooSmall {
            needed: n,
            got: out.len(),
        })
    } else {
        Ok(())
    }
}

/// Writes a Login Request.
pub fn write_login_request(
    out: &mut [u8],
    username: &[u8],
    password: &[u8],
    session: &[u8],
    sequence: u64,
) -> Result<usize, EncodeError> {
    let req = LoginRequest {
        username: alpha_right(username)?,
        password: alpha_right(password)?,
        requested_session: alpha_left(session)?,
        requested_sequence: numeric_left(sequence),
    };
    write_packet(out, kind::LOGIN_REQUEST, req.as_bytes())
}

/// Writes a Login Accepted.
pub fn write_login_accepted(
    out: &mut [u8],
    session: &[u8],
    next_sequence: u64,
) -> Result<usize, EncodeError> {
    let acc = LoginAccepted {
        session: alpha_left(session)?,
        sequence: numeric_left(next_sequence),
    };
    write_packet(out, kind::LOGIN_ACCEPTED, acc.as_bytes())
}

/// Writes a Login Rejected with a [`reject`] code.
pub fn write_login_rejected(out: &mut [u8], reason: u8) -> Result<usize, EncodeError> {
    write_packet(out, kind::LOGIN_REJECTED, &[reason])
}

/// Writes a Sequenced Data packet (server to client) carrying `msg`.
pub fn write_sequenced(out: &mut [u8], msg: &[u8]) -> Result<usize, EncodeError> {
    write_packet(out, kind::SEQUENCED_DATA, msg)
}

/// Writes an Unsequenced Data packet (client to server) carrying `msg`.
pub fn write_unsequenced(out: &mut [u8], msg: &[u8]) -> Result<usize, EncodeError> {
    write_packet(out, kind::UNSEQUENCED_DATA, msg)
}

/// Writes a packet without payload (heartbeats, End of Session, Logout Request).
pub fn write_empty(out: &mut [u8], kind: u8) -> Result<usize, EncodeError> {
    write_packet(out, kind, &[])
}

/// Reassembles packets from a byte stream (the TCP port): bytes go in as
/// they are read, whole packets come out. Fixed capacity; a packet longer
/// than `max_packet` is an error (the connection should be dropped).
pub struct Reassembler {
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    max_packet: usize,
}

impl Reassembler {
    /// `max_packet` counts the whole packet, header included.
    pub fn new(capacity: usize, max_packet: usize) -> Reassembler {
        Reassembler {
            buf: vec![0; capacity.max(max_packet)].into_boxed_slice(),
            start: 0,
            end: 0,
            max_packet,
        }
    }

    /// Free space to read into (after moving pending bytes to the front).
    pub fn spare(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        &mut self.buf[self.end..]
    }

    /// Marks `n` bytes of [`Reassembler::spare`] as filled.
    pub fn filled(&mut self, n: usize) {
        self.end = (self.end + n).min(self.buf.len());
    }

    /// Copies `data` in; an error if it does not fit.
    pub fn extend(&mut self, data: &[u8]) -> Result<(), DecodeError> {
        let spare = self.spare();
        if spare.len() < data.len() {
            return Err(DecodeError::BadLength(data.len()));
        }
        spare[..data.len()].copy_from_slice(data);
        self.filled(data.len());
        Ok(())
    }

    /// The next whole packet (header included), if one is complete.
    pub fn next_packet(&mut self) -> Result<Option<&[u8]>, DecodeError> {
        let pending = &self.buf[self.start..self.end];
        if pending.len() < 2 {
            return Ok(None);
        }
        let total = 2 + usize::from(u16::from_be_bytes([pending[0], pending[1]]));
        if total > self.max_packet || total == 2 {
            return Err(DecodeError::BadLength(total));
        }
        if pending.len() < total {
            return Ok(None);
        }
        let at = self.start;
        self.start += total;
        Ok(Some(&self.buf[at..at + total]))
    }

    /// Bytes received but not yet returned as packets.
    pub fn pending(&self) -> usize {
        self.end - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn login_request_is_49_bytes_with_padded_fields() {
        let mut buf = [0u8; 64];
        let n = write_login_request(&mut buf, b"demo01", b"demo01", b"", 17).unwrap();
        assert_eq!(n, 49);
        assert_eq!(&buf[..3], &[0, 47, b'L']);
        assert_eq!(&buf[3..9], b"demo01");
        assert_eq!(&buf[9..19], b"demo01    ");
        assert_eq!(&buf[19..29], b"          ");
        assert_eq!(&buf[29..49], b"                  17");
        let (p, rest) = Packet::parse(&buf[..n]).unwrap();
        assert!(rest.is_empty());
        let Packet::LoginRequest(r) = p else {
            panic!("{p:?}")
        };
        assert_eq!(r.username(), b"demo01");
        assert_eq!(r.password(), b"demo01");
        assert_eq!(r.requested_session(), b"");
        assert_eq!(r.requested_sequence(), Ok(17));
    }

    #[test]
    fn a_header_counts_the_type_byte_in_its_big_endian_length() {
        assert_eq!(header(kind::SEQUENCED_DATA, 65), Ok([0, 66, b'S']));
        assert_eq!(header(kind::DEBUG, 0x1233), Ok([0x12, 0x34, b'+']));
        let mut buf = [0u8; HEADER_LEN];
        assert_eq!(
            write_header(&mut buf, kind::SEQUENCED_DATA, 65),
            Ok(HEADER_LEN)
        );
        assert_eq!(buf, [0, 66, b'S']);
        assert_eq!(
            header(kind::SEQUENCED_DATA, usize::from(u16::MAX)),
            Err(EncodeError::FieldOverflow("packet length"))
        );
    }

    #[test]
    fn several_packets_in_one_datagram_are_iterated() {
        let mut buf = [0u8; 64];
        let mut n = write_empty(&mut buf, kind::CLIENT_HEARTBEAT).unwrap();
        n += write_packet(&mut buf[n..], kind::UNSEQUENCED_DATA, b"xyz").unwrap();
        n += write_empty(&mut buf[n..], kind::LOGOUT_REQUEST).unwrap();
        let got: Vec<_> = packets(&buf[..n]).collect();
        assert_eq!(
            got,
            vec![
                Ok(Packet::ClientHeartbeat),
                Ok(Packet::UnsequencedData(b"xyz")),
                Ok(Packet::LogoutRequest)
            ]
        );
    }

    #[test]
    fn truncated_zero_length_and_unknown_packets_are_errors() {
        assert!(matches!(
            Packet::parse(&[0]),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(Packet::parse(&[0, 0, b'H']), Err(DecodeError::BadLength(0)));
        assert!(matches!(
            Packet::parse(&[0, 5, b'U', 1]),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(
            Packet::parse(&[0, 1, b'!']),
            Err(DecodeError::UnknownType(b'!'))
        );
        assert_eq!(
            Packet::parse(&[0, 2, b'H', 0]),
            Err(DecodeError::BadLength(2))
        );
        assert_eq!(
            Packet::parse(&[0, 3, b'L', 0, 0]),
            Err(DecodeError::BadLength(3))
        );
    }

    #[test]
    fn bad_sequence_digits_are_a_field_error() {
        let mut buf = [0u8; 64];
        let n = write_login_request(&mut buf, b"a", b"b", b"", 0).unwrap();
        buf[n - 1] = b'x';
        let (Packet::LoginRequest(r), _) = Packet::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert!(matches!(
            r.requested_sequence(),
            Err(DecodeError::BadField(_))
        ));
    }

    #[test]
    fn reassembler_returns_packets_split_across_reads_at_every_byte() {
        let mut stream = [0u8; 128];
        let mut n = write_login_accepted(&mut stream, b"TOKEX00001", 1).unwrap();
        n += write_packet(&mut stream[n..], kind::SEQUENCED_DATA, b"hello").unwrap();
        // Every read size from one byte up: a length prefix split in two,
        // a header alone, a packet and a half.
        for size in 1..=n {
            let mut r = Reassembler::new(256, 64);
            let mut got = Vec::new();
            for chunk in stream[..n].chunks(size) {
                r.extend(chunk).unwrap();
                while let Some(p) = r.next_packet().unwrap() {
                    got.push(p.to_vec());
                }
            }
            assert_eq!(got.len(), 2, "reads of {size}");
            assert_eq!(&got[0][..], &stream[..33], "reads of {size}");
            assert_eq!(&got[1][3..], b"hello", "reads of {size}");
            assert_eq!(r.pending(), 0, "reads of {size}");
        }
    }

    #[test]
    fn reassembler_refuses_oversized_packets() {
        let mut r = Reassembler::new(256, 64);
        r.extend(&[0xff, 0xff, b'U']).unwrap();
        assert_eq!(r.next_packet(), Err(DecodeError::BadLength(65_537)));
    }

    #[test]
    fn twenty_digit_sequence_numbers_parse_up_to_u64_max() {
        let mut buf = [0u8; 64];
        let n = write_login_accepted(&mut buf, b"S", u64::MAX).unwrap();
        let (Packet::LoginAccepted(a), _) = Packet::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert_eq!(a.next_sequence(), Ok(u64::MAX));
        buf[n - 20..n].copy_from_slice(b"99999999999999999999");
        let (Packet::LoginAccepted(a), _) = Packet::parse(&buf[..n]).unwrap() else {
            panic!()
        };
        assert!(a.next_sequence().is_err());
    }

    #[test]
    fn numeric_fields_are_left_padded() {
        assert_eq!(&numeric_left::<20>(0), b"                   0");
        assert_eq!(&numeric_left::<20>(12345), b"               12345");
        assert_eq!(&numeric_left::<20>(u64::MAX), b"18446744073709551615");
    }
}
