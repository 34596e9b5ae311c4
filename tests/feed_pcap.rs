//! `tokex feed --pcap` rebuilds, from a capture alone, exactly the book the
//! engine holds: the engine runs a random flow, its market data is
//! published in MoldUDP64 packets and written to a capture (pcap with
//! Ethernet frames, pcapng with Linux cooked SLL2 frames as `tcpdump -i any`
//! writes, mixed with other traffic), and the `tokex` binary reads it. A
//! capture that misses packets says which sequence numbers it misses and
//! fails; the same capture holding the retransmission answers the live
//! handler got is complete again.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionBlock;
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::DataLink;
use tokex::bench::engine::{mixed_flow, TokexRunner};
use tokex::contract::ContractSet;
use tokex::feed::publisher::Publisher;
use tokex::types::{Nanos, Side};
use tokex::wire::ethernet::{self, Endpoints};
use tokex::wire::moldudp64::{self, PacketBuilder};

const SESSION: [u8; 10] = *b"TOKEX00001";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn contracts() -> ContractSet {
    ContractSet::load_dir(&root().join("contracts")).unwrap()
}

/// A random flow through the engine, published: the MoldUDP64 packets in
/// order (End of Session last), the publisher (for retransmissions) and the
/// engine's final book as `tokex feed --book-out` writes it.
fn published_day(ops: usize) -> (Vec<Vec<u8>>, Publisher, String) {
    let set = contracts();
    let c = set.iter().next().unwrap().clone();
    let mut publisher = Publisher::new(&set, SESSION, 1 << 20);
    publisher.set_time(Nanos(34_200_000_000_000));
    publisher.start_of_day();
    let mut packets = Vec::new();
    publisher.flush(&mut |b| packets.push(b.to_vec()));
    let mut runner = TokexRunner::new(&set, &c, 1 << 18);
    for (i, op) in mixed_flow(ops, 5, &c).iter().enumerate() {
        runner.apply_with(op, &mut publisher);
        if i % 20 == 19 {
            publisher.flush(&mut |b| packets.push(b.to_vec()));
        }
    }
    publisher.flush(&mut |b| packets.push(b.to_vec()));
    publisher.end_of_session(&mut |b| packets.push(b.to_vec()));
    let mut book = String::from("symbol,side,price,qty,order\n");
    for c in set.iter() {
        for side in [Side::Buy, Side::Sell] {
            for o in runner.engine.resting(c.id, side) {
                book += &format!(
                    "{},{},{},{},{}\n",
                    c.symbol,
                    if side == Side::Buy { 'B' } else { 'S' },
                    o.price.to_string_decimals(c.price_decimals()),
                    o.qty,
                    o.order.0
                );
            }
        }
    }
    assert!(book.lines().count() > 100, "the flow must leave a book");
    (packets, publisher, book)
}

/// An Ethernet/IPv4/UDP frame.
fn frame(payload: &[u8], src: &str, dst: &str) -> Vec<u8> {
    let ep = Endpoints {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [1, 0, 0x5e, 0x46, 0, 1],
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
    };
    let mut f = vec![0u8; ethernet::HEADERS_LEN + payload.len()];
    f[ethernet::HEADERS_LEN..].copy_from_slice(payload);
    ethernet::write_udp_headers(&mut f, &ep, 1, 1, payload.len()).unwrap();
    f
}

fn feed_frame(payload: &[u8]) -> Vec<u8> {
    frame(payload, "198.18.0.1:40000", "239.198.0.1:9100")
}

/// Not market data: order entry to the exchange, and an ARP request.
fn other_traffic() -> Vec<Vec<u8>> {
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&[2, 0, 0, 0, 0, 2, 0x08, 0x06]);
    arp.extend_from_slice(&[0; 28]);
    vec![
        frame(b"not market data", "198.18.0.2:50000", "198.18.0.1:9000"),
        arp,
    ]
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_nanos(1_800_000_000_000_000_000 + i as u64 * 1000),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

/// pcapng of Linux cooked v2 frames (what `tcpdump -i any` writes).
fn write_pcapng_sll2(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapNgWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock::new(DataLink::LINUX_SLL2, 0xffff))
        .unwrap();
    for (i, f) in frames.iter().enumerate() {
        // SLL2: protocol, reserved, interface index, ARPHRD, packet type,
        // address length, address (8); then the IPv4 packet.
        let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 2, 6];
        sll2.extend_from_slice(&f[6..12]);
        sll2.extend_from_slice(&[0, 0]);
        sll2.extend_from_slice(&f[ethernet::ETH_LEN..]);
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_nanos(1_800_000_000_000_000_000 + i as u64 * 1000),
            original_len: sll2.len() as u32,
            data: Cow::Owned(sll2),
            options: vec![],
        })
        .unwrap();
    }
}

struct Run {
    ok: bool,
    stdout: String,
    book: String,
    csv_rows: usize,
}

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tokex-feedpcap-{name}-{}", std::process::id()))
}

/// `tokex feed --pcap FILE --book-out ... --csv ...`.
fn tokex_feed_pcap(capture: &Path) -> Run {
    let book = capture.with_extension("book.csv");
    let csv = capture.with_extension("messages.csv");
    let out = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(root())
        .args(["feed", "--quiet", "--pcap"])
        .arg(capture)
        .arg("--book-out")
        .arg(&book)
        .arg("--csv")
        .arg(&csv)
        .output()
        .unwrap();
    let run = Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr),
        book: std::fs::read_to_string(&book).unwrap_or_default(),
        csv_rows: std::fs::read_to_string(&csv)
            .map(|s| s.lines().count().saturating_sub(1))
            .unwrap_or(0),
    };
    for f in [capture, &book, &csv] {
        let _ = std::fs::remove_file(f);
    }
    run
}

/// Messages in the data packets.
fn message_count(packets: &[Vec<u8>]) -> usize {
    packets
        .iter()
        .map(|p| moldudp64::Packet::parse(p).unwrap().messages().count())
        .sum()
}

#[test]
fn pcap_of_ethernet_frames_rebuilds_the_engine_book() {
    let (packets, _, want) = published_day(30_000);
    let mut frames = other_traffic();
    frames.extend(packets.iter().map(|p| feed_frame(p)));
    let path = tmp("eth.pcap");
    write_pcap(&path, &frames);
    let run = tokex_feed_pcap(&path);
    assert!(run.ok, "{}", run.stdout);
    assert_eq!(run.book, want);
    assert_eq!(run.csv_rows, message_count(&packets));
    assert!(run.stdout.contains("none missing"), "{}", run.stdout);
    assert!(
        run.stdout.contains("2 other frames skipped"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains("0 gaps") && run.stdout.contains("end of session, complete"),
        "{}",
        run.stdout
    );
}

#[test]
fn stray_datagrams_to_the_group_are_skipped_and_counted_not_followed() {
    let (packets, _, want) = published_day(20_000);
    let stray = |session: &[u8; 10], first: u64| {
        let mut b = PacketBuilder::new(*session, first, moldudp64::MAX_PACKET);
        b.push(&[b'S'; 12]).unwrap();
        b.bytes().to_vec()
    };
    // Before the first real packet: the session's name from another host,
    // far ahead (followed, it would leave the book waiting for 2^40
    // messages), and another session from the exchange's own address
    // (learnt from the first packet, it would lock the real one out).
    let mut frames = vec![
        frame(
            &stray(&SESSION, 1 << 40),
            "198.18.0.2:40000",
            "239.198.0.1:9100",
        ),
        feed_frame(&stray(b"STRAY00001", 1)),
    ];
    frames.extend(packets.iter().map(|p| feed_frame(p)));
    let path = tmp("stray.pcap");
    write_pcap(&path, &frames);
    let run = tokex_feed_pcap(&path);
    assert!(run.ok, "{}", run.stdout);
    assert_eq!(run.book, want);
    for counted in [
        "1 to the feed from other sources skipped",
        "none missing",
        "0 gaps",
        "1 of other sessions",
        "end of session, complete",
    ] {
        assert!(run.stdout.contains(counted), "{counted:?}\n{}", run.stdout);
    }
}

#[test]
fn pcapng_of_linux_cooked_frames_rebuilds_the_engine_book() {
    let (packets, _, want) = published_day(20_000);
    let frames: Vec<Vec<u8>> = packets.iter().map(|p| feed_frame(p)).collect();
    let path = tmp("sll2.pcapng");
    write_pcapng_sll2(&path, &frames);
    let run = tokex_feed_pcap(&path);
    assert!(run.ok, "{}", run.stdout);
    assert_eq!(run.book, want);
}

#[test]
fn a_capture_missing_packets_reports_the_missing_sequence_numbers_and_fails() {
    let (packets, mut publisher, want) = published_day(20_000);
    // Lose two data packets in the middle.
    let lost = [packets.len() / 3, packets.len() / 2];
    let range = |i: usize| {
        let p = moldudp64::Packet::parse(&packets[i]).unwrap();
        let first = p.header.sequence();
        (first, first + u64::from(p.header.count()) - 1)
    };
    let frames: Vec<Vec<u8>> = packets
        .iter()
        .enumerate()
        .filter(|(i, _)| !lost.contains(i))
        .map(|(_, p)| feed_frame(p))
        .collect();
    let path = tmp("lossy.pcap");
    write_pcap(&path, &frames);
    let run = tokex_feed_pcap(&path);
    assert!(
        !run.ok,
        "a capture with gaps must not pass:\n{}",
        run.stdout
    );
    let (a, b) = (range(lost[0]), range(lost[1]));
    let missing = (b.1 - b.0 + 1) + (a.1 - a.0 + 1);
    assert!(
        run.stdout.contains(&format!(
            "{missing} messages missing in 2 ranges: {}-{} {}-{}",
            a.0, a.1, b.0, b.1
        )),
        "{}",
        run.stdout
    );
    assert!(run
        .stdout
        .contains("the capture does not hold a complete session"));
    assert_ne!(run.book, want, "the book stops at the first gap");

    // The same capture with the retransmission answers (unicast from the
    // retransmission server) is complete, and the handler reports the gaps it saw.
    let mut with_answers = frames.clone();
    for (first, last) in [a, b] {
        let req = PacketBuilder::control(SESSION, first, (last - first + 1) as u16);
        publisher.retransmit(&req, u16::MAX, &mut |p| {
            with_answers.push(frame(p, "198.18.0.1:9101", "198.18.0.2:43210"))
        });
    }
    write_pcap(&path, &with_answers);
    let run = tokex_feed_pcap(&path);
    assert!(run.ok, "{}", run.stdout);
    assert_eq!(run.book, want);
    assert!(
        run.stdout.contains("(2 retransmission answers)"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("none missing"), "{}", run.stdout);
    assert!(!run.stdout.contains(" 0 gaps,"), "{}", run.stdout);
}

#[test]
fn a_file_that_is_not_a_capture_is_an_error() {
    let path = tmp("not.pcap");
    std::fs::write(&path, b"hello, world").unwrap();
    let run = tokex_feed_pcap(&path);
    assert!(!run.ok);
    assert!(
        run.stdout.contains("not a pcap or pcapng file"),
        "{}",
        run.stdout
    );
}
