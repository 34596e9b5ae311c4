//! `tokex feed --pcap`: the books rebuilt offline from a capture.
//!
//! Owns reading pcap and pcapng files (Ethernet with or without VLAN tags,
//! Linux cooked SLL and SLL2 as `tcpdump -i any` writes, raw IPv4), finding
//! the IPv4/UDP datagrams of the market data in them (to the multicast
//! group and port, or retransmission answers from the retransmission
//! server), and accounting for which MoldUDP64 sequence numbers the capture
//! holds, so that what it misses is reported rather than hidden (a file
//! that ends inside a record, as a capture killed mid-write does, is read
//! up to it and reported as cut short). The datagrams go, in capture
//! order, with their capture time (pcapng's per-interface timestamp unit
//! applied), to the same sans-IO [`FeedHandler`] the live feed uses;
//! nothing here opens a socket.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Duration;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::{Block, PcapNgReader};
use pcap_file::DataLink;
use zerocopy::FromBytes;

use super::handler::FeedHandler;
use crate::text::plural;
use crate::types::Nanos;
use crate::wire::ethernet::{Ipv4Header, UdpHeader, IPV4_LEN, PROTO_UDP, UDP_LEN};
use crate::wire::itch::Message;
use crate::wire::moldudp64;

/// Why a capture could not be read at all.
#[derive(Debug)]
pub enum CaptureError {
    Io(std::io::Error),
    /// Neither a pcap nor a pcapng file (the first four bytes).
    NotACapture([u8; 4]),
    /// The pcap/pcapng structure is broken (the reader's message).
    Format(String),
    /// A link-layer type this reader does not know (its DLT number).
    UnsupportedLink(u32),
}

impl fmt::Display for CaptureError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CaptureError::Io(e) => write!(f, "{e}"),
            CaptureError::NotACapture(m) => {
                write!(f, "not a pcap or pcapng file (starts with {m:02x?})")
            }
            CaptureError::Format(m) => write!(f, "broken capture: {m}"),
            CaptureError::UnsupportedLink(l) => write!(
                f,
                "link type {l} is not supported (Ethernet, Linux SLL/SLL2, raw IPv4 are)"
            ),
        }
    }
}

impl std::error::Error for CaptureError {}

impl From<std::io::Error> for CaptureError {
    fn from(e: std::io::Error) -> Self {
        CaptureError::Io(e)
    }
}

impl From<pcap_file::PcapError> for CaptureError {
    fn from(e: pcap_file::PcapError) -> Self {
        match e {
            pcap_file::PcapError::IoError(e) => CaptureError::Io(e),
            other => CaptureError::Format(other.to_string()),
        }
    }
}

/// The link layer of captured frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    Ethernet,
    /// Linux cooked capture v1 (DLT 113).
    LinuxSll,
    /// Linux cooked capture v2 (DLT 276), `tcpdump -i any`.
    LinuxSll2,
    /// IPv4 with no link header (DLT 101 raw, 228 IPv4).
    RawIp,
}

impl Link {
    fn of(d: DataLink) -> Result<Link, CaptureError> {
        match d {
            DataLink::ETHERNET => Ok(Link::Ethernet),
            DataLink::LINUX_SLL => Ok(Link::LinuxSll),
            DataLink::LINUX_SLL2 => Ok(Link::LinuxSll2),
            DataLink::RAW | DataLink::IPV4 => Ok(Link::RawIp),
            other => Err(CaptureError::UnsupportedLink(u32::from(other))),
        }
    }
}

/// How a capture file ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Ending {
    /// After its last record.
    #[default]
    Whole,
    /// Inside a record (a capture killed while writing, a copy of one
    /// still being written): the records before it were read.
    CutShort,
}

/// The clock of a pcapng interface: its timestamp unit (`if_tsresol`:
/// 10^-n s, or 2^-n s with the top bit set; 10^-6 s when absent) and
/// offset (`if_tsoffset`, seconds). pcap-file hands over an Enhanced
/// Packet's timestamp units as that many nanoseconds whatever the unit: a
/// capture in microseconds (pcapng's default) was dated 1,000 times
/// nearer the epoch, and every feed latency of it was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InterfaceClock {
    resolution: u8,
    offset_secs: i64,
}

impl InterfaceClock {
    fn of(i: &InterfaceDescriptionBlock<'_>) -> InterfaceClock {
        let mut c = InterfaceClock {
            resolution: 6,
            offset_secs: 0,
        };
        for o in &i.options {
            match *o {
                InterfaceDescriptionOption::IfTsResol(r) => c.resolution = r,
                InterfaceDescriptionOption::IfTsOffset(s) => c.offset_secs = s as i64,
                _ => {}
            }
        }
        c
    }

    /// The time since the epoch of a timestamp of `units` of this clock.
    fn time(self, units: u64) -> Duration {
        const NS: u128 = 1_000_000_000;
        let n = u32::from(self.resolution & 0x7f);
        let per_second = if self.resolution & 0x80 == 0 {
            10u128.checked_pow(n)
        } else {
            2u128.checked_pow(n)
        };
        // A unit finer than 10^-38 s is no clock: time 0.
        let ns = per_second.map_or(0, |d| u128::from(units) * NS / d);
        let secs = u64::try_from(ns / NS)
            .unwrap_or(u64::MAX)
            .checked_add_signed(self.offset_secs)
            .unwrap_or(0);
        Duration::new(secs, (ns % NS) as u32)
    }
}

/// Why a frame holds no usable UDP datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Not IPv4 (ARP, IPv6, ...).
    NotIpv4,
    /// IPv4 but not UDP.
    NotUdp,
    /// An IPv4 fragment: tokex never fragments market data.
    Fragment,
    /// Shorter than its headers say (e.g. cut by the capture's snap length).
    Truncated,
    /// A header field that cannot be right (IHL, lengths).
    BadHeader,
}

/// A UDP datagram found in a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram<'a> {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: &'a [u8],
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_VLAN: [u16; 2] = [0x8100, 0x88a8];

/// The IPv4/UDP datagram of one captured frame.
pub fn datagram(link: Link, frame: &[u8]) -> Result<Datagram<'_>, FrameError> {
    let be16 = |b: &[u8], at: usize| -> Result<u16, FrameError> {
        b.get(at..at + 2)
            .map(|x| u16::from_be_bytes([x[0], x[1]]))
            .ok_or(FrameError::Truncated)
    };
    let ip = match link {
        Link::Ethernet => {
            let mut at = 12;
            let mut ethertype = be16(frame, at)?;
            // Up to two VLAN tags (802.1Q, 802.1ad).
            for _ in 0..2 {
                if ETHERTYPE_VLAN.contains(&ethertype) {
                    at += 4;
                    ethertype = be16(frame, at)?;
                }
            }
            if ethertype != ETHERTYPE_IPV4 {
                return Err(FrameError::NotIpv4);
            }
            &frame[at + 2..]
        }
        Link::LinuxSll => {
            if be16(frame, 14)? != ETHERTYPE_IPV4 {
                return Err(FrameError::NotIpv4);
            }
            &frame[16..]
        }
        Link::LinuxSll2 => {
            if be16(frame, 0)? != ETHERTYPE_IPV4 {
                return Err(FrameError::NotIpv4);
            }
            frame.get(20..).ok_or(FrameError::Truncated)?
        }
        Link::RawIp => frame,
    };
    ipv4_udp(ip)
}

fn ipv4_udp(b: &[u8]) -> Result<Datagram<'_>, FrameError> {
    let (ip, _) = Ipv4Header::ref_from_prefix(b).map_err(|_| FrameError::Truncated)?;
    if ip.version_ihl >> 4 != 4 {
        return Err(FrameError::NotIpv4);
    }
    let ihl = usize::from(ip.version_ihl & 0x0f) * 4;
    let total = usize::from(ip.total_len.get());
    if ihl < IPV4_LEN || total < ihl {
        return Err(FrameError::BadHeader);
    }
    if ip.protocol != PROTO_UDP {
        return Err(FrameError::NotUdp);
    }
    if ip.flags_fragment.get() & 0x3fff != 0 {
        return Err(FrameError::Fragment);
    }
    // Ethernet padding may follow the datagram; a short capture may cut it.
    let ip_bytes = b.get(..total).ok_or(FrameError::Truncated)?;
    let (udp, _) =
        UdpHeader::ref_from_prefix(&ip_bytes[ihl..]).map_err(|_| FrameError::Truncated)?;
    let ulen = usize::from(udp.len.get());
    if ulen < UDP_LEN || ihl + ulen > total {
        return Err(FrameError::BadHeader);
    }
    Ok(Datagram {
        src: SocketAddrV4::new(Ipv4Addr::from(ip.src), udp.src_port.get()),
        dst: SocketAddrV4::new(Ipv4Addr::from(ip.dst), udp.dst_port.get()),
        payload: &ip_bytes[ihl + UDP_LEN..ihl + ulen],
    })
}

/// Which MoldUDP64 sequence numbers a capture held, as disjoint ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// start -> end (exclusive), merged when they touch.
    ranges: BTreeMap<u64, u64>,
    /// One past the highest sequence number known to exist.
    horizon: u64,
    end_of_session: bool,
}

impl Coverage {
    /// Notes one MoldUDP64 packet's header.
    pub fn packet(&mut self, p: &moldudp64::Packet<'_>) {
        let first = p.header.sequence();
        if p.is_heartbeat() || p.is_end_of_session() {
            // Both carry the next sequence number: everything before exists.
            self.horizon = self.horizon.max(first);
            self.end_of_session |= p.is_end_of_session();
            return;
        }
        // Numbering past 2^64 is a bad packet to the handler too.
        let Some(end) = first.checked_add(u64::from(p.header.count())) else {
            return;
        };
        self.horizon = self.horizon.max(end);
        self.insert(first, end);
    }

    fn insert(&mut self, mut start: u64, mut end: u64) {
        if start >= end {
            return;
        }
        // Merge with a range that starts before and reaches `start`.
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                start = s;
                end = end.max(e);
            }
        }
        // And with every range starting inside the new one.
        let inside: Vec<(u64, u64)> = self
            .ranges
            .range(start..=end)
            .map(|(&s, &e)| (s, e))
            .collect();
        for (s, e) in inside {
            self.ranges.remove(&s);
            end = end.max(e);
        }
        self.ranges.insert(start, end);
    }

    /// Sequence-number ranges (start, end exclusive) from 1 up to the
    /// horizon that no captured packet held.
    pub fn missing(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut next = 1;
        for (&s, &e) in &self.ranges {
            if s > next {
                out.push((next, s));
            }
            next = next.max(e);
        }
        if self.horizon > next {
            out.push((next, self.horizon));
        }
        out
    }

    /// One past the highest sequence number the capture shows to exist.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    pub fn end_of_session(&self) -> bool {
        self.end_of_session
    }
}

/// What a capture held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureReport {
    pub frames: u64,
    /// Market-data datagrams given to the feed handler.
    pub datagrams: u64,
    /// Of those, retransmission answers.
    pub retransmissions: u64,
    /// Frames of other traffic (other ports, ARP, IGMP, ...), skipped.
    pub other: u64,
    /// Frames whose IPv4/UDP headers could not be read (truncated, fragments).
    pub undecodable: u64,
    /// Datagrams to the feed from a source other than the exchange,
    /// skipped.
    pub foreign: u64,
    /// The followed session's packets (another session's are skipped by
    /// the handler and not counted here).
    pub coverage: Coverage,
    /// Whether the file ended inside a record.
    pub ending: Ending,
}

impl CaptureReport {
    /// Messages the capture shows to exist but does not hold.
    pub fn missing_messages(&self) -> u64 {
        self.coverage.missing().iter().map(|(s, e)| e - s).sum()
    }
}

impl fmt::Display for CaptureReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "capture: {} frames, {} market-data datagrams ({} retransmission answers), {} other frames skipped, {} to the feed from other sources skipped, {} undecodable; sequence numbers 1..{}",
            self.frames,
            self.datagrams,
            self.retransmissions,
            self.other,
            self.foreign,
            self.undecodable,
            self.coverage.horizon().saturating_sub(1)
        )?;
        let missing = self.coverage.missing();
        if missing.is_empty() {
            write!(f, ", none missing")?;
        } else {
            write!(
                f,
                ", {} missing in {}:",
                plural(self.missing_messages(), "message", "messages"),
                plural(missing.len(), "range", "ranges")
            )?;
            for (s, e) in missing.iter().take(20) {
                write!(f, " {s}-{}", e - 1)?;
            }
            if missing.len() > 20 {
                write!(f, " ...")?;
            }
        }
        if !self.coverage.end_of_session() {
            write!(f, "; no End of Session")?;
        }
        if self.ending == Ending::CutShort {
            write!(
                f,
                "; the file ends inside a record (cut short), read up to it"
            )?;
        }
        Ok(())
    }
}

/// Where the market data of a capture is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Filter {
    /// The multicast group and port the feed is published to.
    pub feed: SocketAddrV4,
    /// The exchange: datagrams to the feed from anyone else are skipped.
    pub source: Ipv4Addr,
    /// The retransmission server (answers come from it).
    pub retransmit: SocketAddrV4,
    /// The MoldUDP64 session followed.
    pub session: [u8; 10],
}

/// A record that the file ends inside is the end of the capture, not an
/// error: the records before it stand.
fn cut_short(e: pcap_file::PcapError) -> Result<Ending, CaptureError> {
    match e {
        pcap_file::PcapError::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            Ok(Ending::CutShort)
        }
        e => Err(e.into()),
    }
}

/// Calls `frame(time since the epoch, link, bytes)` for every packet of a
/// pcap or pcapng file, in file order; says whether the file ended inside
/// a record.
pub fn read_frames(
    path: &Path,
    frame: &mut impl FnMut(Duration, Link, &[u8]),
) -> Result<Ending, CaptureError> {
    let mut file = std::io::BufReader::new(std::fs::File::open(path)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic)?;
    let file = std::io::Read::chain(std::io::Cursor::new(magic), file);
    match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut r = PcapNgReader::new(file)?;
            let mut links: Vec<Result<(Link, InterfaceClock), CaptureError>> = Vec::new();
            while let Some(block) = r.next_block() {
                let block = match block {
                    Ok(b) => b,
                    Err(e) => return cut_short(e),
                };
                match block {
                    Block::SectionHeader(_) => links.clear(),
                    Block::InterfaceDescription(i) => {
                        links.push(Link::of(i.linktype).map(|l| (l, InterfaceClock::of(&i))))
                    }
                    Block::EnhancedPacket(p) => {
                        let (link, clock) = match links.get(p.interface_id as usize) {
                            Some(Ok(l)) => *l,
                            Some(Err(CaptureError::UnsupportedLink(l))) => {
                                return Err(CaptureError::UnsupportedLink(*l))
                            }
                            _ => {
                                return Err(CaptureError::Format(format!(
                                    "packet on undeclared interface {}",
                                    p.interface_id
                                )))
                            }
                        };
                        // pcap-file's "nanoseconds" are the raw units.
                        let units = u64::try_from(p.timestamp.as_nanos()).unwrap_or(u64::MAX);
                        frame(clock.time(units), link, &p.data);
                    }
                    Block::SimplePacket(p) => {
                        let link = match links.first() {
                            Some(Ok((l, _))) => *l,
                            _ => {
                                return Err(CaptureError::Format(
                                    "simple packet without an interface".into(),
                                ))
                            }
                        };
                        frame(Duration::ZERO, link, &p.data);
                    }
                    _ => {}
                }
            }
        }
        [0xa1, 0xb2, 0xc3, 0xd4]
        | [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d]
        | [0x4d, 0x3c, 0xb2, 0xa1] => {
            let mut r = PcapReader::new(file)?;
            let link = Link::of(r.header().datalink)?;
            while let Some(p) = r.next_packet() {
                let p = match p {
                    Ok(p) => p,
                    Err(e) => return cut_short(e),
                };
                frame(p.timestamp, link, &p.data);
            }
        }
        other => return Err(CaptureError::NotACapture(other)),
    }
    Ok(Ending::Whole)
}

/// Feeds the market data of a capture to `handler`, in capture order and
/// with the capture's timestamps as receive times; `seen` gets every
/// message applied, as in live mode.
pub fn replay(
    path: &Path,
    filter: Filter,
    handler: &mut FeedHandler,
    seen: &mut impl FnMut(u64, &Message<'_>),
) -> Result<CaptureReport, CaptureError> {
    let mut report = CaptureReport::default();
    let ending = read_frames(path, &mut |time, link, bytes| {
        report.frames += 1;
        let d = match datagram(link, bytes) {
            Ok(d) => d,
            Err(FrameError::NotIpv4 | FrameError::NotUdp) => {
                report.other += 1;
                return;
            }
            Err(_) => {
                report.undecodable += 1;
                return;
            }
        };
        let answer = d.src == filter.retransmit;
        if d.dst != filter.feed && !answer {
            report.other += 1;
            return;
        }
        if !answer && *d.src.ip() != filter.source {
            report.foreign += 1;
            return;
        }
        report.datagrams += 1;
        report.retransmissions += u64::from(answer);
        match moldudp64::Packet::parse(d.payload) {
            Ok(p) if p.header.session == filter.session => report.coverage.packet(&p),
            _ => {}
        }
        handler.on_packet_with(Nanos(time.as_nanos() as u64), d.payload, seen);
    })?;
    report.ending = ending;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(first: u64, count: u16) -> Vec<u8> {
        let mut b = moldudp64::PacketBuilder::new(*b"TOKEX00001", first, moldudp64::MAX_PACKET);
        for _ in 0..count {
            b.push(&[b'S'; 12]).unwrap();
        }
        b.bytes().to_vec()
    }

    fn cover(packets: &[(u64, u16)]) -> Coverage {
        let mut c = Coverage::default();
        for &(s, n) in packets {
            let bytes = packet(s, n);
            c.packet(&moldudp64::Packet::parse(&bytes).unwrap());
        }
        c
    }

    /// An Ethernet frame of `payload` from the exchange to the feed group.
    fn feed_frame(payload: &[u8]) -> Vec<u8> {
        use crate::wire::ethernet::{write_udp_headers, Endpoints, HEADERS_LEN};
        let ep = Endpoints {
            src_mac: [2, 0, 0, 0, 0, 1],
            dst_mac: [1, 0, 0x5e, 0x46, 0, 1],
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "239.198.0.1:9100".parse().unwrap(),
        };
        let mut f = vec![0u8; HEADERS_LEN + payload.len()];
        f[HEADERS_LEN..].copy_from_slice(payload);
        write_udp_headers(&mut f, &ep, 1, 1, payload.len()).unwrap();
        f
    }

    fn filter() -> Filter {
        Filter {
            feed: "239.198.0.1:9100".parse().unwrap(),
            source: "198.18.0.1".parse().unwrap(),
            retransmit: "198.18.0.1:9101".parse().unwrap(),
            session: *b"TOKEX00001",
        }
    }

    fn tmp(name: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tokex-pcap-unit-{name}-{}", std::process::id()))
    }

    /// pcap and pcapng files of the packets of 1..=30 (ten each), as
    /// Ethernet frames.
    fn captures(name: &str) -> [(std::path::PathBuf, usize); 2] {
        use pcap_file::pcap::{PcapPacket, PcapWriter};
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::PcapNgWriter;
        let frames: Vec<Vec<u8>> = [1, 11, 21]
            .iter()
            .map(|&s| feed_frame(&packet(s, 10)))
            .collect();
        let pcap = tmp(&format!("{name}.pcap"));
        let mut w = PcapWriter::new(std::fs::File::create(&pcap).unwrap()).unwrap();
        for f in &frames {
            w.write_packet(&PcapPacket::new(Duration::from_secs(1), f.len() as u32, f))
                .unwrap();
        }
        drop(w);
        let pcapng = tmp(&format!("{name}.pcapng"));
        let mut w = PcapNgWriter::new(std::fs::File::create(&pcapng).unwrap()).unwrap();
        w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0xffff))
            .unwrap();
        for f in &frames {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: 0,
                timestamp: Duration::from_secs(1),
                original_len: f.len() as u32,
                data: std::borrow::Cow::Borrowed(f),
                options: vec![],
            })
            .unwrap();
        }
        drop(w);
        // The last record's header and part of its frame.
        let cut = frames[2].len() / 2;
        [(pcap, cut), (pcapng, cut)]
    }

    #[test]
    fn a_capture_cut_short_inside_a_record_is_read_up_to_it_and_reported_as_cut_short() {
        for (path, cut) in captures("cut") {
            let whole = std::fs::read(&path).unwrap();
            std::fs::write(&path, &whole[..whole.len() - cut]).unwrap();
            let mut h = FeedHandler::new().follow_session(*b"TOKEX00001");
            let report = replay(&path, filter(), &mut h, &mut |_, _| {});
            let _ = std::fs::remove_file(&path);
            let report = report.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert_eq!(report.ending, Ending::CutShort, "{}", path.display());
            assert_eq!((report.frames, report.datagrams), (2, 2));
            assert_eq!(h.next_sequence(), 21, "the records before the cut");
            assert!(report.to_string().contains("cut short"), "{report}");
        }
    }

    #[test]
    fn a_whole_capture_is_not_reported_as_cut_short() {
        for (path, _) in captures("whole") {
            let mut h = FeedHandler::new().follow_session(*b"TOKEX00001");
            let report = replay(&path, filter(), &mut h, &mut |_, _| {}).unwrap();
            let _ = std::fs::remove_file(&path);
            assert_eq!(report.ending, Ending::Whole);
            assert_eq!(h.next_sequence(), 31);
            assert!(!report.to_string().contains("cut short"), "{report}");
        }
    }

    #[test]
    fn pcapng_timestamps_are_read_in_their_interfaces_unit_microseconds_when_unsaid() {
        use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
        use pcap_file::pcapng::PcapNgWriter;
        // 2023-11-14 22:13:20.123456789 UTC.
        let at = Duration::new(1_700_000_000, 123_456_789);
        let path = tmp("tsresol.pcapng");
        let mut w = PcapNgWriter::new(std::fs::File::create(&path).unwrap()).unwrap();
        // Interfaces: no if_tsresol (microseconds), nanoseconds, 2^-10 s
        // with an offset of 100 s.
        let options = [
            vec![],
            vec![InterfaceDescriptionOption::IfTsResol(9)],
            vec![
                InterfaceDescriptionOption::IfTsResol(0x80 | 10),
                InterfaceDescriptionOption::IfTsOffset(100),
            ],
        ];
        for o in options {
            let mut i = InterfaceDescriptionBlock::new(DataLink::ETHERNET, 0xffff);
            i.options = o;
            w.write_pcapng_block(i).unwrap();
        }
        let units = [
            at.as_micros() as u64,
            at.as_nanos() as u64,
            ((at.as_nanos() - 100_000_000_000) * 1024 / 1_000_000_000) as u64,
        ];
        let f = feed_frame(&packet(1, 1));
        for (interface, u) in units.into_iter().enumerate() {
            w.write_pcapng_block(EnhancedPacketBlock {
                interface_id: interface as u32,
                // pcap-file writes a Duration's nanoseconds as the units.
                timestamp: Duration::from_nanos(u),
                original_len: f.len() as u32,
                data: std::borrow::Cow::Borrowed(&f),
                options: vec![],
            })
            .unwrap();
        }
        drop(w);
        let mut times = Vec::new();
        let read = read_frames(&path, &mut |t, _, _| times.push(t));
        let _ = std::fs::remove_file(&path);
        assert_eq!(read.unwrap(), Ending::Whole);
        assert_eq!(
            times,
            [
                Duration::new(1_700_000_000, 123_456_000),
                at,
                // 1,699,999,900 s and 126/1024 s in 2^-10 s units, then
                // the 100 s offset.
                Duration::new(1_700_000_000, 123_046_875),
            ]
        );
    }

    #[test]
    fn coverage_merges_overlapping_and_touching_packets_in_any_order() {
        let c = cover(&[(11, 5), (1, 5), (6, 5), (3, 4), (16, 1)]);
        assert_eq!(c.missing(), vec![]);
        assert_eq!(c.horizon(), 17);
    }

    #[test]
    fn coverage_reports_holes_the_start_and_what_a_heartbeat_reveals() {
        let mut c = cover(&[(5, 3), (10, 2)]);
        // A heartbeat says sequence 20 is next: 12..=19 exist too.
        let hb = moldudp64::PacketBuilder::control(*b"TOKEX00001", 20, moldudp64::HEARTBEAT);
        c.packet(&moldudp64::Packet::parse(&hb).unwrap());
        assert_eq!(c.missing(), vec![(1, 5), (8, 10), (12, 20)]);
        assert!(!c.end_of_session());
    }

    #[test]
    fn datagrams_are_found_behind_every_supported_link_layer() {
        let ip_udp = {
            let payload = b"hello";
            let mut b = vec![
                0x45, 0, 0, 0, 0, 1, 0x40, 0, 1, 17, 0, 0, 198, 18, 0, 1, 239, 198, 0, 1,
            ];
            let total = (20 + 8 + payload.len()) as u16;
            b[2..4].copy_from_slice(&total.to_be_bytes());
            b.extend_from_slice(&40000u16.to_be_bytes());
            b.extend_from_slice(&9100u16.to_be_bytes());
            b.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(payload);
            b
        };
        let want = Datagram {
            src: "198.18.0.1:40000".parse().unwrap(),
            dst: "239.198.0.1:9100".parse().unwrap(),
            payload: b"hello",
        };
        let mut eth = vec![1, 0, 0x5e, 0x46, 0, 1, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        eth.extend_from_slice(&ip_udp);
        eth.extend_from_slice(&[0; 12]); // Ethernet padding
        assert_eq!(datagram(Link::Ethernet, &eth), Ok(want));
        let mut vlan = vec![
            1, 0, 0x5e, 0x46, 0, 1, 2, 0, 0, 0, 0, 1, 0x81, 0x00, 0, 7, 0x08, 0x00,
        ];
        vlan.extend_from_slice(&ip_udp);
        assert_eq!(datagram(Link::Ethernet, &vlan), Ok(want));
        let mut sll = vec![0; 14];
        sll.extend_from_slice(&[0x08, 0x00]);
        sll.extend_from_slice(&ip_udp);
        assert_eq!(datagram(Link::LinuxSll, &sll), Ok(want));
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&ip_udp);
        assert_eq!(datagram(Link::LinuxSll2, &sll2), Ok(want));
        assert_eq!(datagram(Link::RawIp, &ip_udp), Ok(want));
        // Cut by the snap length, a fragment, not UDP, not IPv4.
        assert_eq!(
            datagram(Link::RawIp, &ip_udp[..ip_udp.len() - 1]),
            Err(FrameError::Truncated)
        );
        let mut frag = ip_udp.clone();
        frag[6] = 0x20; // more fragments
        assert_eq!(datagram(Link::RawIp, &frag), Err(FrameError::Fragment));
        let mut tcp = ip_udp.clone();
        tcp[9] = 6;
        assert_eq!(datagram(Link::RawIp, &tcp), Err(FrameError::NotUdp));
        eth[12] = 0x86;
        eth[13] = 0xdd;
        assert_eq!(datagram(Link::Ethernet, &eth), Err(FrameError::NotIpv4));
    }
}
