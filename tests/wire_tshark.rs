//! Conformance with Wireshark's dissectors: tokex writes pcap files of
//! MoldUDP64 + ITCH 5.0 over UDP and SoupBinTCP + OUCH 4.2 over TCP, and
//! `tshark` (installed by tools/install-deps.sh) decodes them to the values
//! tokex put in.
//!
//! tshark's OUCH dissector decodes inside SoupBinTCP (every OUCH 4.2 message
//! tokex speaks, field by field). Its ITCH dissector (`nasdaq_itch`) decodes
//! inside MoldUDP64 only up to ITCH 4.1, so for ITCH 5.0 it is used for the
//! message types and the block framing; the field values are compared byte
//! for byte here and decoded independently by `itchy` (tests/wire_itchy.rs).
//! Without tshark these tests fail, saying how to install it.

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
fn tshark(path: &Path, decode_as: &[&str], fields: &[&str]) -> Vec<String> {
    let mut cmd = Command::new("tshark");
    cmd.args(["-r"]).arg(path);
    for d in decode_as {
        cmd.args(["-d", d]);
    }
    cmd.args([
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
    let out = cmd.output().unwrap_or_else(|e| {
        panic!(
            "tshark could not be run ({e}): these conformance tests need it; \
             install it with tools/install-deps.sh (apt-get install tshark)"
        )
    });
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
    // Every message type tokex publishes, then enough of the order-flow
    // mix to need several full packets.
    let mut sent: Vec<Vec<u8>> = vec![
        itch::SystemEvent::new(h, itch::event::START_OF_MESSAGES)
            .as_bytes()
            .to_vec(),
        itch::StockDirectory::new(h, sym, 1_000).as_bytes().to_vec(),
        itch::TradingAction::new(h, sym, itch::trading_state::TRADING, *b"    ")
            .as_bytes()
            .to_vec(),
        itch::CrossTrade::new(h, 10, sym, Price::from_raw(21_000), 1, b'O')
            .as_bytes()
            .to_vec(),
        itch::Noii::new(
            h,
            sym,
            &itch::Imbalance {
                paired: 10,
                imbalance: 0,
                direction: b'N',
                far: Price::from_raw(21_000),
                near: Price::from_raw(21_000),
                reference: Price::from_raw(21_000),
                cross_type: b'O',
            },
        )
        .as_bytes()
        .to_vec(),
    ];
    for i in 0..95u64 {
        let (r, q, p) = (
            1000 + i,
            Qty::new(i as u32 + 1),
            Price::from_raw(21_500 + 10 * i as u32),
        );
        sent.push(match i % 7 {
            0 | 1 => itch::AddOrder::new(h, r, Side::Sell, q, sym, p)
                .as_bytes()
                .to_vec(),
            2 => itch::OrderExecuted::new(h, r, q, i).as_bytes().to_vec(),
            3 => itch::OrderExecutedWithPrice::new(h, r, q, i, true, p)
                .as_bytes()
                .to_vec(),
            4 => itch::OrderCancel::new(h, r, q).as_bytes().to_vec(),
            5 => itch::OrderReplace::new(h, r, r + 1, q, p)
                .as_bytes()
                .to_vec(),
            _ => itch::OrderDelete::new(h, r).as_bytes().to_vec(),
        });
    }
    for m in &sent {
        if b.push(m).is_err() {
            frames.push(udp_frame(b.bytes(), "239.198.0.1:9100"));
            seq += u64::from(b.count());
            b.reset(seq);
            b.push(m).unwrap();
        }
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
    // A retransmission request: the bare header (session, sequence, count).
    let mut req = [0u8; moldudp64::HEADER_LEN];
    moldudp64::Header::new(session, 42, 5)
        .write(&mut req)
        .unwrap();
    let request_frame = udp_frame(&req, "198.18.0.1:9101");
    let path = tmp("mold");
    write_pcap(&path, &frames);

    let lines = tshark(
        &path,
        &[&format!("udp.port=={MD_PORT},moldudp64")],
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
            assert_eq!(bytes, sent[decoded], "message {decoded}");
            decoded += 1;
        }
        next += count;
    }
    assert_eq!(decoded, 100);
    assert!(
        lines.len() - 2 >= 3,
        "100 messages need several 1472-byte packets"
    );
    let hb: Vec<&str> = lines[lines.len() - 2].split('\t').collect();
    assert_eq!((hb[1], hb[2]), ("101", "0"));
    let eos: Vec<&str> = lines[lines.len() - 1].split('\t').collect();
    assert_eq!((eos[1], eos[2]), ("101", "65535"));

    // tshark 4.0's ITCH dissector (nasdaq_itch, "Decode As" on the
    // moldudp64.payload table) decodes inside MoldUDP64, but it implements
    // TotalView-ITCH 2.0 to 4.1 (it labels the messages "ITCH 3.0"): it finds
    // every message and its type, and misreads the fields after the type,
    // because ITCH 5.0 inserted Stock Locate, Tracking Number and a 48-bit
    // timestamp. So only the types are checked against it; the field values
    // are checked byte for byte above and by the itchy crate
    // (tests/wire_itchy.rs).
    let types = tshark(
        &path,
        &[
            &format!("udp.port=={MD_PORT},moldudp64"),
            "moldudp64.payload,nasdaq_itch",
        ],
        &["nasdaq-itch.message_type"],
    );
    let got: Vec<u8> = types
        .iter()
        .filter(|l| !l.is_empty())
        .flat_map(|l| l.split(',').map(|t| t.trim_matches('\'').as_bytes()[0]))
        .collect();
    let want: Vec<u8> = sent.iter().map(|m| m[0]).collect();
    assert_eq!(
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
    std::fs::remove_file(&path).unwrap();

    let path = tmp("mold-request");
    write_pcap(&path, &[request_frame]);
    let lines = tshark(
        &path,
        &["udp.port==9101,moldudp64"],
        &["moldudp64.session", "moldudp64.sequence", "moldudp64.count"],
    );
    assert_eq!(lines, vec!["TOKEX00001\t42\t5".to_string()]);
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
    // The rest of OUCH 4.2 and SoupBinTCP, one packet a segment, in order:
    // client Replace, Modify, heartbeat; server Replaced, Canceled,
    // Rejected, Broken Trade, System Event, heartbeat, End of Session;
    // client Logout.
    let repl = ouch::token(b"ORD0002").unwrap();
    let fields = ouch::OrderFields {
        timestamp: 34_200_000_000_789,
        token: repl,
        side: Side::Buy,
        qty: Qty::new(30),
        symbol: sym,
        price: Price::from_raw(65_130),
        tif: Tif::Day,
        order_reference: 4_294_967_298,
        live: true,
    };
    let more: Vec<(bool, u8, Vec<u8>)> = vec![
        (
            true,
            soupbin::kind::UNSEQUENCED_DATA,
            ouch::ReplaceOrder::new(token, repl, Qty::new(30), Price::from_raw(65_130))
                .as_bytes()
                .to_vec(),
        ),
        (
            true,
            soupbin::kind::UNSEQUENCED_DATA,
            ouch::ModifyOrder::new(repl, Side::Buy, Qty::new(12))
                .as_bytes()
                .to_vec(),
        ),
        (true, soupbin::kind::CLIENT_HEARTBEAT, vec![]),
        (
            false,
            soupbin::kind::SEQUENCED_DATA,
            ouch::Replaced::new(&fields, token).as_bytes().to_vec(),
        ),
        (
            false,
            soupbin::kind::SEQUENCED_DATA,
            ouch::Canceled::new(
                34_200_000_001_000,
                repl,
                Qty::new(18),
                ouch::cancel::USER_REQUESTED,
            )
            .as_bytes()
            .to_vec(),
        ),
        (
            false,
            soupbin::kind::SEQUENCED_DATA,
            ouch::Rejected::new(
                34_200_000_001_001,
                ouch::token(b"BAD1").unwrap(),
                ouch::reject::INVALID_PRICE,
            )
            .as_bytes()
            .to_vec(),
        ),
        (
            false,
            soupbin::kind::SEQUENCED_DATA,
            ouch::BrokenTrade::new(34_200_000_001_002, token, 77, ouch::broken::ERRONEOUS)
                .as_bytes()
                .to_vec(),
        ),
        (
            false,
            soupbin::kind::SEQUENCED_DATA,
            ouch::SystemEvent::new(34_200_000_001_003, b'E')
                .as_bytes()
                .to_vec(),
        ),
        (false, soupbin::kind::SERVER_HEARTBEAT, vec![]),
        (false, soupbin::kind::END_OF_SESSION, vec![]),
        (true, soupbin::kind::LOGOUT_REQUEST, vec![]),
    ];
    for (from_client, kind, payload) in &more {
        let n = soupbin::write_packet(&mut buf, *kind, payload).unwrap();
        if *from_client {
            frames.push(tcp_frame(&buf[..n], client, server, cseq, sseq));
            cseq += n as u32;
        } else {
            frames.push(tcp_frame(&buf[..n], server, client, sseq, cseq));
            sseq += n as u32;
        }
    }
    let path = tmp("soup");
    write_pcap(&path, &frames);

    let lines = tshark(
        &path,
        &[&format!("tcp.port=={TCP_PORT},soupbintcp")],
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
            "ouch.existing_order_token",
            "ouch.replacement_order_token",
            "ouch.previous_order_token",
            "ouch.decrement_shares",
            "ouch.cancel_reason",
            "ouch.reject_reason",
            "ouch.broken_trade_reason",
            "ouch.event_code",
            "ouch.timestamp",
        ],
    );
    // Character fields print quoted ('L'); strip quotes and padding.
    let rows: Vec<Vec<&str>> = lines
        .iter()
        .map(|l| l.split('\t').map(|f| f.trim_matches('\'').trim()).collect())
        .collect();
    assert_eq!(rows.len(), 6 + more.len(), "{lines:#?}");
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
    // Replace Order: both tokens, new size and price.
    let r = &rows[6];
    assert_eq!((r[0], r[3], r[13], r[14]), ("U", "U", "ORD0001", "ORD0002"));
    assert_eq!((r[6], r[8]), ("30", "65130"));
    // Modify Order.
    assert_eq!(
        (rows[7][3], rows[7][4], rows[7][5], rows[7][6]),
        ("M", "ORD0002", "B", "12")
    );
    assert_eq!(rows[8][0], "R");
    // Replaced: replacement token, previous token, reference, size, price.
    let r = &rows[9];
    assert_eq!((r[0], r[3], r[14], r[15]), ("S", "U", "ORD0002", "ORD0001"));
    assert_eq!(
        (r[6], r[7], r[8], r[9]),
        ("30", "TK2612", "65130", "4294967298")
    );
    // Canceled, Rejected, Broken Trade, System Event.
    assert_eq!(
        (rows[10][3], rows[10][4], rows[10][16], rows[10][17]),
        ("C", "ORD0002", "18", "U")
    );
    assert_eq!((rows[11][3], rows[11][4], rows[11][18]), ("J", "BAD1", "X"));
    assert_eq!(
        (rows[12][3], rows[12][4], rows[12][12], rows[12][19]),
        ("B", "ORD0001", "77", "E")
    );
    assert_eq!((rows[13][3], rows[13][20]), ("S", "E"));
    // The 8-byte timestamps every OUCH 4.2 outbound message carries.
    // tshark prints the ns-since-midnight timestamp as a time of day.
    assert_eq!(rows[13][21], "9:30:00.000001003");
    // Heartbeat, End of Session, Logout Request.
    assert_eq!((rows[14][0], rows[15][0], rows[16][0]), ("H", "Z", "O"));
    std::fs::remove_file(&path).unwrap();
}
