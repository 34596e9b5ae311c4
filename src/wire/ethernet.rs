//! Ethernet II / IPv4 / UDP headers for AF_XDP frames (and for the pcap
//! files the conformance tests write).
//!
//! `UdpFrame::parse` checks a received frame once (EtherType, IPv4 version,
//! header length and checksum, no fragmentation, protocol UDP, lengths) and
//! hands out the UDP payload; `write_udp_headers` builds the 42 header bytes
//! of a reply in place, checksums included. Written by hand rather than with
//! `etherparse` so that the receive path is one bounds check and a
//! zero-copy cast, with no per-packet allocation.

use std::net::{Ipv4Addr, SocketAddrV4};

use zerocopy::network_endian::U16;
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::{need, DecodeError, EncodeError};

pub const ETH_LEN: usize = 14;
pub const IPV4_LEN: usize = 20;
pub const UDP_LEN: usize = 8;
/// Ethernet + IPv4 (no options) + UDP.
pub const HEADERS_LEN: usize = ETH_LEN + IPV4_LEN + UDP_LEN;
pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const PROTO_UDP: u8 = 17;

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct EthernetHeader {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ethertype: U16,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct Ipv4Header {
    pub version_ihl: u8,
    pub dscp_ecn: u8,
    pub total_len: U16,
    pub ident: U16,
    pub flags_fragment: U16,
    pub ttl: u8,
    pub protocol: u8,
    pub checksum: U16,
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned,
)]
#[repr(C)]
pub struct UdpHeader {
    pub src_port: U16,
    pub dst_port: U16,
    pub len: U16,
    pub checksum: U16,
}

/// A checked Ethernet/IPv4/UDP frame.
#[derive(Debug, Clone, Copy)]
pub struct UdpFrame<'a> {
    pub eth: &'a EthernetHeader,
    pub ip: &'a Ipv4Header,
    pub udp: &'a UdpHeader,
    pub payload: &'a [u8],
    /// The UDP header and payload, which the UDP checksum covers.
    datagram: &'a [u8],
}

impl<'a> UdpFrame<'a> {
    pub fn parse(frame: &'a [u8]) -> Result<UdpFrame<'a>, DecodeError> {
        need(frame, HEADERS_LEN)?;
        let (eth, rest) = EthernetHeader::ref_from_prefix(frame)
            .map_err(|_| DecodeError::BadLength(frame.len()))?;
        if eth.ethertype.get() != ETHERTYPE_IPV4 {
            return Err(DecodeError::BadField("EtherType"));
        }
        let (ip, _) =
            Ipv4Header::ref_from_prefix(rest).map_err(|_| DecodeError::BadLength(frame.len()))?;
        if ip.version_ihl >> 4 != 4 {
            return Err(DecodeError::BadField("IP version"));
        }
        let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
        if ihl < IPV4_LEN {
            return Err(DecodeError::BadField("IHL"));
        }
        need(rest, ihl + UDP_LEN)?;
        if ip.protocol != PROTO_UDP {
            return Err(DecodeError::BadField("IP protocol"));
        }
        let flags_fragment = ip.flags_fragment.get();
        // RFC 791: the first flag bit is reserved, zero.
        if flags_fragment & 0x8000 != 0 {
            return Err(DecodeError::BadField("IP reserved flag"));
        }
        // More-fragments flag or a fragment offset: tokex never fragments.
        if flags_fragment & 0x3fff != 0 {
            return Err(DecodeError::BadField("IP fragment"));
        }
        if checksum(&rest[..ihl], 0) != 0 {
            return Err(DecodeError::BadField("IP header checksum"));
        }
        // A source no host sends from, which the kernel drops as martian:
        // an answer would go to a group, to everyone, or nowhere.
        let src = Ipv4Addr::from(ip.src);
        if src.is_unspecified() || src.is_loopback() || src.is_multicast() || src.is_broadcast() {
            return Err(DecodeError::BadField("IP source"));
        }
        let total = usize::from(ip.total_len.get());
        if total < ihl + UDP_LEN || total > rest.len() {
            return Err(DecodeError::BadLength(total));
        }
        let (udp, _) = UdpHeader::ref_from_prefix(&rest[ihl..])
            .map_err(|_| DecodeError::BadLength(frame.len()))?;
        if udp.src_port.get() == 0 {
            return Err(DecodeError::BadField("UDP source port"));
        }
        let ulen = usize::from(udp.len.get());
        if ulen < UDP_LEN || ihl + ulen > total {
            return Err(DecodeError::BadLength(ulen));
        }
        let datagram = &rest[ihl..ihl + ulen];
        Ok(UdpFrame {
            eth,
            ip,
            udp,
            payload: &datagram[UDP_LEN..],
            datagram,
        })
    }

    /// Whether the UDP checksum is right, or absent (0, which UDP over IPv4
    /// allows). Separate from `parse` because it reads every payload byte:
    /// a receiver whose NIC has verified it already need not.
    pub fn checksum_ok(&self) -> bool {
        self.udp.checksum.get() == 0
            || checksum(
                self.datagram,
                pseudo_header_sum(self.ip, self.udp.len.get()),
            ) == 0
    }

    pub fn src(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip.src), self.udp.src_port.get())
    }

    pub fn dst(&self) -> SocketAddrV4 {
        SocketAddrV4::new(Ipv4Addr::from(self.ip.dst), self.udp.dst_port.get())
    }
}

/// Addresses of a UDP frame to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoints {
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
}

impl Endpoints {
    /// The endpoints of a reply to `f` (addresses and ports swapped).
    pub fn reply_to(f: &UdpFrame<'_>) -> Endpoints {
        Endpoints {
            src_mac: f.eth.dst,
            dst_mac: f.eth.src,
            src: f.dst(),
            dst: f.src(),
        }
    }
}

/// The Internet checksum (RFC 1071) of `data`, starting from `initial`
/// (a partial sum, e.g. the UDP pseudo-header's).
pub fn checksum(data: &[u8], initial: u32) -> u16 {
    // The one's-complement sum of 16-bit words is the sum of any wider words
    // folded modulo 0xffff (2^16 = 1), and byte order only swaps the result
    // (RFC 1071, 2.B): so little-endian 32-bit words are summed into eight
    // 64-bit lanes (no byte swaps, no carry chain: the compiler vectorises
    // it), folded, and swapped once. No carry is lost below 2^32 words.
    let mut lanes = [0u64; 8];
    let mut blocks = data.chunks_exact(32);
    for b in &mut blocks {
        for (lane, w) in lanes.iter_mut().zip(b.chunks_exact(4)) {
            *lane += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
        }
    }
    let mut sum: u64 = lanes.iter().sum();
    let mut words = blocks.remainder().chunks_exact(4);
    for w in &mut words {
        sum += u64::from(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let mut tail = [0u8; 4];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    sum += u64::from(u32::from_le_bytes(tail));
    sum += u64::from(u16::from_be_bytes(fold(u64::from(initial)).to_le_bytes()));
    !u16::from_be_bytes(fold(sum).to_le_bytes())
}

/// `sum` folded to 16 bits with end-around carries.
fn fold(mut sum: u64) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The UDP pseudo-header's sum: source, destination, protocol, UDP length.
fn pseudo_header_sum(ip: &Ipv4Header, udp_len: u16) -> u32 {
    let word = |b: [u8; 4]| {
        u32::from(u16::from_be_bytes([b[0], b[1]])) + u32::from(u16::from_be_bytes([b[2], b[3]]))
    };
    word(ip.src) + word(ip.dst) + u32::from(PROTO_UDP) + u32::from(udp_len)
}

/// Writes the 42 header bytes in front of a payload of `payload_len` bytes
/// that is already at `frame[HEADERS_LEN..]`, with IPv4 and UDP checksums.
/// Returns the frame length.
pub fn write_udp_headers(
    frame: &mut [u8],
    ep: &Endpoints,
    ttl: u8,
    ident: u16,
    payload_len: usize,
) -> Result<usize, EncodeError> {
    // The IP total length first: it bounds every sum below (a payload
    // length near usize::MAX wrapped `total` past the room check).
    let ip_total = IPV4_LEN
        .checked_add(UDP_LEN)
        .and_then(|h| h.checked_add(payload_len))
        .and_then(|t| u16::try_from(t).ok())
        .ok_or(EncodeError::FieldOverflow("IP total length"))?;
    // RFC 1122 3.2.1.7: a host never sends a datagram with TTL 0.
    if ttl == 0 {
        return Err(EncodeError::FieldOverflow("TTL (0 is never sent)"));
    }
    let total = ETH_LEN + usize::from(ip_total);
    if frame.len() < total {
        return Err(EncodeError::BufferTooSmall {
            needed: total,
            got: frame.len(),
        });
    }
    let eth = EthernetHeader {
        dst: ep.dst_mac,
        src: ep.src_mac,
        ethertype: U16::new(ETHERTYPE_IPV4),
    };
    let mut ip = Ipv4Header {
        version_ihl: 0x45,
        dscp_ecn: 0,
        total_len: U16::new(ip_total),
        ident: U16::new(ident),
        flags_fragment: U16::new(0x4000), // don't fragment
        ttl,
        protocol: PROTO_UDP,
        checksum: U16::new(0),
        src: ep.src.ip().octets(),
        dst: ep.dst.ip().octets(),
    };
    ip.checksum = U16::new(checksum(ip.as_bytes(), 0));
    let udp_len = (UDP_LEN + payload_len) as u16;
    let udp = UdpHeader {
        src_port: U16::new(ep.src.port()),
        dst_port: U16::new(ep.dst.port()),
        len: U16::new(udp_len),
        checksum: U16::new(0),
    };
    frame[..ETH_LEN].copy_from_slice(eth.as_bytes());
    frame[ETH_LEN..ETH_LEN + IPV4_LEN].copy_from_slice(ip.as_bytes());
    frame[ETH_LEN + IPV4_LEN..HEADERS_LEN].copy_from_slice(udp.as_bytes());
    let pseudo = pseudo_header_sum(&ip, udp_len);
    let mut c = checksum(&frame[ETH_LEN + IPV4_LEN..total], pseudo);
    if c == 0 {
        c = 0xffff; // 0 means "no checksum" in UDP over IPv4
    }
    frame[ETH_LEN + IPV4_LEN + 6..HEADERS_LEN].copy_from_slice(&c.to_be_bytes());
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep() -> Endpoints {
        Endpoints {
            src_mac: [2, 0, 0, 0, 0, 2],
            dst_mac: [2, 0, 0, 0, 0, 1],
            src: "198.18.0.2:40000".parse().unwrap(),
            dst: "198.18.0.1:9000".parse().unwrap(),
        }
    }

    #[test]
    fn frames_from_sources_no_host_sends_from_are_refused() {
        for src in [
            "239.198.0.1:9100",
            "255.255.255.255:9000",
            "0.0.0.0:40000",
            "127.0.0.1:40000",
            "198.18.0.2:0",
        ] {
            let mut e = ep();
            e.src = src.parse().unwrap();
            let mut frame = [0u8; 128];
            let n = write_udp_headers(&mut frame, &e, 64, 7, 0).unwrap();
            assert!(
                matches!(UdpFrame::parse(&frame[..n]), Err(DecodeError::BadField(_))),
                "accepted a frame from {src}"
            );
        }
        let mut frame = [0u8; 128];
        let n = write_udp_headers(&mut frame, &ep(), 64, 7, 0).unwrap();
        assert!(UdpFrame::parse(&frame[..n]).is_ok());
    }

    #[test]
    fn built_frames_parse_back_with_valid_checksums() {
        let mut frame = [0u8; 128];
        frame[HEADERS_LEN..HEADERS_LEN + 5].copy_from_slice(b"hello");
        let n = write_udp_headers(&mut frame, &ep(), 64, 7, 5).unwrap();
        assert_eq!(n, 47);
        let f = UdpFrame::parse(&frame[..n]).unwrap();
        assert_eq!(f.payload, b"hello");
        assert_eq!(f.src(), ep().src);
        assert_eq!(f.dst(), ep().dst);
        // The UDP checksum verifies to zero over pseudo-header + datagram.
        let pseudo = [198, 18, 0, 2, 198, 18, 0, 1, 0, 17, 0, 13];
        assert_eq!(reference_checksum(&[&pseudo, &frame[34..n]].concat()), 0);
        assert!(f.checksum_ok());
        let r = Endpoints::reply_to(&f);
        assert_eq!((r.src, r.dst), (ep().dst, ep().src));
    }

    /// RFC 1071 as written: 16-bit big-endian words, an odd last byte
    /// padded with zero, carries folded back in.
    fn reference_checksum(data: &[u8]) -> u16 {
        reference_checksum_from(data, 0)
    }

    fn reference_checksum_from(data: &[u8], initial: u32) -> u16 {
        let mut sum = (initial & 0xffff) + (initial >> 16);
        sum = (sum & 0xffff) + (sum >> 16);
        for pair in data.chunks(2) {
            let low = pair.get(1).copied().unwrap_or(0);
            sum += u32::from(u16::from_be_bytes([pair[0], low]));
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    proptest::proptest! {
        #[test]
        fn checksum_equals_rfc_1071_word_by_word(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..2000),
            initial in 0u32..0x0004_0000,
        ) {
            proptest::prop_assert_eq!(checksum(&data, initial), reference_checksum_from(&data, initial));
        }
    }

    #[test]
    fn a_changed_payload_byte_fails_the_udp_checksum_and_an_absent_one_passes() {
        let mut frame = [0u8; 128];
        frame[HEADERS_LEN..HEADERS_LEN + 5].copy_from_slice(b"hello");
        let n = write_udp_headers(&mut frame, &ep(), 64, 7, 5).unwrap();
        let mut bad = frame;
        bad[HEADERS_LEN + 4] ^= 0x20;
        let f = UdpFrame::parse(&bad[..n]).unwrap();
        assert_eq!(f.payload, b"hellO");
        assert!(!f.checksum_ok());
        // A datagram sent without a checksum (0) is taken as it is.
        bad[40..42].copy_from_slice(&[0, 0]);
        assert!(UdpFrame::parse(&bad[..n]).unwrap().checksum_ok());
        // A partial checksum (the pseudo-header's sum only, as a veth peer
        // with checksum offload leaves it) fails.
        let mut partial = frame;
        let pseudo = [198, 18, 0, 2, 198, 18, 0, 1, 0, 17, 0, 13];
        let sum = !reference_checksum(&pseudo);
        partial[40..42].copy_from_slice(&sum.to_be_bytes());
        assert!(!UdpFrame::parse(&partial[..n]).unwrap().checksum_ok());
    }

    /// Recomputes the IP header checksum of a frame after a test changed
    /// its header, so that only the change itself is refused.
    fn reseal(frame: &mut [u8]) {
        frame[24..26].copy_from_slice(&[0, 0]);
        let c = checksum(&frame[14..34], 0);
        frame[24..26].copy_from_slice(&c.to_be_bytes());
    }

    #[test]
    fn corrupt_headers_are_refused_each_for_its_own_reason() {
        let mut frame = [0u8; 64];
        let n = write_udp_headers(&mut frame, &ep(), 64, 1, 0).unwrap();
        let refused = |change: &dyn Fn(&mut [u8; 64]), seal: bool| {
            let mut bad = frame;
            change(&mut bad);
            if seal {
                reseal(&mut bad);
            }
            UdpFrame::parse(&bad[..n]).err()
        };
        let field = |f| Some(DecodeError::BadField(f));
        assert_eq!(refused(&|b| b[12] = 0x86, false), field("EtherType"));
        assert_eq!(refused(&|b| b[14] = 0x65, true), field("IP version"));
        assert_eq!(refused(&|b| b[14] = 0x44, true), field("IHL"));
        // IHL 15: 60 bytes of header the 42-byte frame does not have.
        assert!(matches!(
            refused(&|b| b[14] = 0x4f, false),
            Some(DecodeError::TooShort { .. })
        ));
        assert_eq!(refused(&|b| b[23] = 6, true), field("IP protocol"));
        assert_eq!(refused(&|b| b[20] = 0x20, true), field("IP fragment"));
        assert_eq!(refused(&|b| b[21] = 1, true), field("IP fragment"));
        assert_eq!(refused(&|b| b[20] = 0xc0, true), field("IP reserved flag"));
        // TTL changed, checksum left: the checksum no longer matches.
        assert_eq!(refused(&|b| b[22] ^= 1, false), field("IP header checksum"));
        // IP total length below IP + UDP headers, and beyond the frame.
        assert_eq!(
            refused(&|b| b[16..18].copy_from_slice(&27u16.to_be_bytes()), true),
            Some(DecodeError::BadLength(27))
        );
        assert_eq!(
            refused(&|b| b[16..18].copy_from_slice(&29u16.to_be_bytes()), true),
            Some(DecodeError::BadLength(29))
        );
        // UDP length below its header, and beyond the IP total.
        assert_eq!(
            refused(&|b| b[38..40].copy_from_slice(&7u16.to_be_bytes()), false),
            Some(DecodeError::BadLength(7))
        );
        assert_eq!(
            refused(&|b| b[38..40].copy_from_slice(&9u16.to_be_bytes()), false),
            Some(DecodeError::BadLength(9))
        );
        assert!(matches!(
            UdpFrame::parse(&frame[..30]),
            Err(DecodeError::TooShort { .. })
        ));
        // Unchanged, or changed and resealed with nothing else: accepted.
        assert_eq!(refused(&|_| {}, true), None);
    }

    #[test]
    fn a_udp_checksum_computed_as_zero_is_sent_as_all_ones() {
        // The payload word that makes the one's-complement sum 0xFFFF is
        // the checksum computed over a zero payload of the same length.
        let mut frame = [0u8; 64];
        let n = write_udp_headers(&mut frame, &ep(), 64, 1, 2).unwrap();
        let zero_payload_checksum = [frame[40], frame[41]];
        frame[HEADERS_LEN..HEADERS_LEN + 2].copy_from_slice(&zero_payload_checksum);
        write_udp_headers(&mut frame, &ep(), 64, 1, 2).unwrap();
        assert_eq!(frame[40..42], [0xff, 0xff]);
        assert!(UdpFrame::parse(&frame[..n]).unwrap().checksum_ok());
    }

    #[test]
    fn builders_refuse_lengths_that_overflow_and_ttl_zero() {
        let mut frame = [0u8; 64];
        for len in [usize::MAX - 27, usize::MAX, 65_536 - 28] {
            assert_eq!(
                write_udp_headers(&mut frame, &ep(), 64, 1, len),
                Err(EncodeError::FieldOverflow("IP total length"))
            );
        }
        assert!(matches!(
            write_udp_headers(&mut frame, &ep(), 64, 1, 65_535 - 28),
            Err(EncodeError::BufferTooSmall { .. })
        ));
        assert!(write_udp_headers(&mut frame, &ep(), 0, 1, 0).is_err());
    }
}
