//! Conformance with Wireshark's dissectors: tokex writes pcap files of
//! MoldUDP64 + ITCH 5.0 over UDP and SoupBinTCP + OUCH 4.2 over TCP, and
//! `tshark` (installed by tools/install-deps.sh) decodes them to the values
//! tokex put in.

use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use pcap_file::pcap::{PcapPacket, PcapWriter};
use tokex::types::{Price, Qty, Side, Symbol, Tif};
use tokex::wire::ethernet::{self, Endpoints};
use tokex::wire::{itch, moldudp64, ouch, soupbin};
use zerocopy::IntoBytes;

const MD_PORT: u16 = 9100;
const TCP_PORT: u16 = 9002;

fn tmp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("tokex-{name}-{}.pcap", std::process::id()))
}

fn udp_frame(payload: &[u8], dst: &str) -> Vec<u8> {
    let ep = Endpoints {
        src_mac: [2, 0, 0, 0, 0, 1],
        dst_mac: [1, 0, 0x5e, 0x46, 0, 1],
        src: "198.18.0.1:40000".parse().unwrap(),
        dst: dst.parse().unwrap(),
    };
    let mut f = vec![0u8; ethernet::HEADERS_LEN + payload.len()];
    f[ethernet::HEADERS_LEN..].copy_from_slice(payload);
    ethernet::write_udp_headers(&mut f, &ep, 1, 1, payload.len()).unwrap();
    f
}

/// An Ethernet/IPv4/TCP segment (PSH|ACK) carrying `payload`. Checksums are
/// left zero: tshark does not verify them by default.
fn tcp_frame(payload: &[u8], src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&[2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00]);
    let total = (20 + 20 + payload.len()) as u16;
    f.extend_from_slice(&[0x45, 0]);
    f.extend_from_slice(&total.to_be_bytes());
    f.extend_from_slice(&[0, 1, 0x40, 0, 64, 6, 0, 0]);
    f.extend_from_slice(&src.ip().octets());
    f.extend_from_slice(&dst.ip().octets());
    let c = ethernet::checksum(&f[14..34], 0);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&src.port().to_be_bytes());
    f.extend_from_slice(&dst.port().to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    f.extend_from_slice(payload);
    f
}

fn write_pcap(path: &Path, frames: &[Vec<u8>]) {
    let file = std::fs::File::create(path).unwrap();
    let mut w = PcapWriter::new(file).unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(1_800_000_000_000_000 + i as u64),
            f.len() as u32,
            f,
        ))
        .unwrap();
    }
}

/// Runs tshark and returns one line per packet of tab-separated fields.
fn tshark(path: &Path, decode_as: &str, fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r"]).arg(path).args([
        "-d",
        decode_as,
        "-T",
        "fields",
        "-E",
        "separator=\t",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=,",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect(
        "tshark is not installed: run tools/install-deps.sh (it installs tshark for these tests)",
    );
    assert!(
        out.status.success(),
        "tshark failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn tshark_decodes_moldudp64_packets_of_itch_with_contiguous_sequence_numbers() {
    let session = *b"TOKEX00001";
    let sym = Symbol::new("GH2612").unwrap();
    let h = itch::Header {
        stock_locate: 5,
        tracking_number: 0,
        timestamp: 34_200_000_000_000,
    };
    let mut frames = Vec::new();
    let mut seq = 1u64;
    let mut b = moldudp64::PacketBuilder::new(session, seq, moldudp64::MAX_PACKET);
    // Enough Add Orders to need several full packets.
    let mut sent = Vec::new();
    for i in 0..100u64 {
        let m = itch::AddOrder::new(
            h,
            1000 + i,
            Side::Sell,
            Qty::new(i as u32 + 1),
            sym,
            Price::from_raw(21_500 + 10 * i as u32),
        );
        if b.push(m.as_bytes()).is_err() {
            frames.push(udp_frame(b.bytes(), "239.198.0.1:9100"));
            seq += u64::from(b.count());
            b.reset(seq);
            b.push(m.as_bytes()).unwrap();
        }
        sent.push(m);
    }
    frames.push(udp_frame(b.bytes(), "239.198.0.1:9100"));
    seq += u64::from(b.count());
    frames.push(udp_frame(
        &moldudp64::PacketBuilder::control(session, seq, moldudp64::HEARTBEAT),
        "239.198.0.1:9100",
    ));
    frames.push(udp_frame(
        &moldudp64::PacketBuilder::control(session, seq, moldudp64::END_OF_SESSION),
        "239.198.0.1:9100",
    ));
    let path = tmp("mold");
    write_pcap(&path, &frames);

    let lines = tshark(
        &path,
        &format!("udp.port=={MD_PORT},moldudp64"),
        &[
            "moldudp64.session",
            "moldudp64.sequence",
            "moldudp64.count",
            "moldudp64.msgseq",
            "moldudp64.msgdata",
        ],
    );
    assert_eq!(lines.len(), frames.len());
    let mut next = 1u64;
    let mut decoded = 0usize;
    for line in &lines[..lines.len() - 2] {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols[0], "TOKEX00001");
        let first: u64 = cols[1].parse().unwrap();
        assert_eq!(
            first, next,
            "sequence numbers are contiguous across packets"
        );
        let count: u64 = cols[2].parse().unwrap();
        let seqs: Vec<u64> = cols[3].split(',').map(|s| s.parse().unwrap()).collect();
        assert_eq!(seqs, (first..first + count).collect::<Vec<_>>());
        for hex in cols[4].split(',') {
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            assert_eq!(bytes, sent[decoded].as_bytes(), "message {decoded}");
            decoded += 1;
        }
        next += count;
    }
    assert_eq!(decoded, 100);
    assert!(
        lines.len() - 2 >= 3,
        "100 Add Orders need several 1472-byte packets"
    );
    let hb: Vec<&str> = lines[lines.len() - 2].split('\t').collect();
    assert_eq!((hb[1], hb[2]), ("101", "0"));
    let eos: Vec<&str> = lines[lines.len() - 1].split('\t').collect();
    assert_eq!((eos[1], eos[2]), ("101", "65535"));
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn tshark_decodes_soupbintcp_and_ouch_fields() {
    let client: SocketAddrV4 = "198.18.0.2:40001".parse().unwrap();
    let server: SocketAddrV4 = format!("198.18.0.1:{TCP_PORT}").parse().unwrap();
    let sym = Symbol::new("TK2612").unwrap();
    let token = ouch::token(b"ORD0001").unwrap();
    let mut buf = [0u8; 256];

    let mut c2s = Vec::new();
    let n = soupbin::write_login_request(&mut buf, b"demo01", b"demo01", b"", 1).unwrap();
    c2s.push(buf[..n].to_vec());
    let enter = ouch::EnterOrder::new(
        token,
        Side::Buy,
        Qty::new(25),
        sym,
        Price::from_raw(65_120),
        Tif::Day,
    );
    let n =
        soupbin::write_packet(&mut buf, soupbin::kind::UNSEQUENCED_DATA, enter.as_bytes()).unwrap();
    c2s.push(buf[..n].to_vec());
    let cancel = ouch::CancelOrder::new(token, Qty::new(5));
    let n = soupbin::write_packet(&mut buf, soupbin::kind::UNSEQUENCED_DATA, cancel.as_bytes())
        .unwrap();
    c2s.push(buf[..n].to_vec());

    let mut s2c = Vec::new();
    let n = soupbin::write_login_accepted(&mut buf, b"TOKEX00001", 1).unwrap();
    s2c.push(buf[..n].to_vec());
    let accepted = ouch::Accepted::new(&ouch::OrderFields {
        timestamp: 34_200_000_000_123,
        token,
        side: Side::Buy,
        qty: Qty::new(25),
        symbol: sym,
        price: Price::from_raw(65_120),
        tif: Tif::Day,
        order_reference: 4_294_967_297,
        live: true,
    });
    let n = soupbin::write_packet(&mut buf, soupbin::kind::SEQUENCED_DATA, accepted.as_bytes())
        .unwrap();
    s2c.push(buf[..n].to_vec());
    let executed = ouch::Executed::new(
        34_200_000_000_456,
        token,
        Qty::new(20),
        Price::from_raw(65_110),
        true,
        77,
    );
    let n = soupbin::write_packet(&mut buf, soupbin::kind::SEQUENCED_DATA, executed.as_bytes())
        .unwrap();
    s2c.push(buf[..n].to_vec());

    let (mut cseq, mut sseq) = (1000u32, 5000u32);
    let mut frames = Vec::new();
    for (c, s) in c2s.iter().zip(&s2c) {
        frames.push(tcp_frame(c, client, server, cseq, sseq));
        cseq += c.len() as u32;
        frames.push(tcp_frame(s, server, client, sseq, cseq));
        sseq += s.len() as u32;
    }
    let path = tmp("soup");
    write_pcap(&path, &frames);

    let lines = tshark(
        &path,
        &format!("tcp.port=={TCP_PORT},soupbintcp"),
        &[
            "soupbintcp.packet_type",
            "soupbintcp.username",
            "soupbintcp.session",
            "ouch.packet_type",
            "ouch.order_token",
            "ouch.buy_sell_indicator",
            "ouch.shares",
            "ouch.stock",
            "ouch.price",
            "ouch.order_reference_number",
            "ouch.executed_shares",
            "ouch.execution_price",
            "ouch.match_number",
        ],
    );
    // Character fields print quoted ('L'); strip quotes and padding.
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split('\t').map(|f| f.trim_matches('\'').trim()).collect())
        .collect();
    assert_eq!(rows.len(), 6, "{lines:#?}");
    // Login Request / Login Accepted.
    assert_eq!(rows[0][0], "L");
    assert_eq!(rows[0][1].trim(), "demo01");
    assert_eq!(rows[1][0], "A");
    assert_eq!(rows[1][2], "TOKEX00001");
    // tshark 4.0 prints the ASCII sequence-number fields as "X" in field
    // output; its verbose tree shows the decoded numbers.
    let verbose = Command::new("tshark")
        .args(["-r"])
        .arg(&path)
        .args(["-d", &format!("tcp.port=={TCP_PORT},soupbintcp"), "-V"])
        .output()
        .unwrap();
    let verbose = String::from_utf8_lossy(&verbose.stdout);
    assert!(
        verbose.contains("Requested sequence number: 1"),
        "{verbose}"
    );
    assert!(verbose.contains("Next sequence number: 1"), "{verbose}");
    assert!(verbose.contains("Price: $6.5120"), "{verbose}");
    // Enter Order inside Unsequenced Data.
    assert_eq!(rows[2][0], "U");
    assert_eq!(rows[2][3], "O");
    assert_eq!(rows[2][4].trim(), "ORD0001");
    assert_eq!(rows[2][5], "B");
    assert_eq!(rows[2][6], "25");
    assert_eq!(rows[2][7].trim(), "TK2612");
    assert_eq!(rows[2][8], "65120");
    // Accepted inside Sequenced Data.
    assert_eq!((rows[3][0], rows[3][3]), ("S", "A"));
    assert_eq!(rows[3][4].trim(), "ORD0001");
    assert_eq!(rows[3][9], "4294967297");
    // Cancel Order: token and new size.
    assert_eq!((rows[4][3], rows[4][6]), ("X", "5"));
    // Executed.
    assert_eq!(rows[5][3], "E");
    assert_eq!(
        (rows[5][10], rows[5][11], rows[5][12]),
        ("20", "65110", "77")
    );
    std::fs::remove_file(&path).unwrap();
}
