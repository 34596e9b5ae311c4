//! A capture of the market data taken on the lab network during a run
//! (needs root, tcpdump and tshark from tools/install-deps.sh): the
//! exchange, a live feed handler and a short bounded load run in their own
//! namespaces (`tkcap-ex`/`tkcap-cl`, removed again even when the test
//! fails); tcpdump captures in the client namespace; tshark's moldudp64
//! dissector decodes the capture with contiguous sequence numbers up to End
//! of Session; and `tokex feed --pcap` on it rebuilds exactly the book the
//! exchange wrote at shutdown (and the live feed handler rebuilt). Stray
//! datagrams to the group (from a client, and of another session) are
//! counted and skipped, live and from the capture.

mod common;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{enter_ns, scratch, spawn_in, stop, tokex, wait_for, wait_for_text, Lab};
use socket2::{Domain, Socket, Type};
use tokex::wire::moldudp64;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// (sequence, count) of every MoldUDP64 packet to the feed port, as
/// tshark's dissector reads them.
fn tshark_sequences(capture: &Path) -> Vec<(u64, u32)> {
    let out = Command::new("tshark")
        .arg("-r")
        .arg(capture)
        .args([
            "-d",
            "udp.port==9100,moldudp64",
            "-Y",
            "udp.dstport==9100 && ip.src==198.18.0.1 && moldudp64.session==\"TOKEX00001\"",
            "-T",
            "fields",
            "-e",
            "moldudp64.sequence",
            "-e",
            "moldudp64.count",
        ])
        .output()
        .expect("tshark (install it with tools/install-deps.sh)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (s, c) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("not decoded as MoldUDP64: {l:?}"));
            (s.parse().unwrap(), c.parse().unwrap())
        })
        .collect()
}

/// Sends one MoldUDP64 packet of `session` starting at `first` to the
/// feed's group from `address` in namespace `ns` (looped back to the
/// namespace's own members too).
fn send_to_group(ns: &str, address: &str, session: &[u8; 10], first: u64) {
    let _in = enter_ns(ns);
    let mut b = moldudp64::PacketBuilder::new(*session, first, moldudp64::MAX_PACKET);
    b.push(&[b'S'; 12]).unwrap();
    let from: Ipv4Addr = address.parse().unwrap();
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None).unwrap();
    sock.bind(&SocketAddr::from((from, 0)).into()).unwrap();
    sock.set_multicast_if_v4(&from).unwrap();
    sock.set_multicast_ttl_v4(1).unwrap();
    let group = SocketAddr::from(([239, 198, 0, 1], 9100));
    sock.send_to(b.bytes(), &group.into()).unwrap();
}

#[test]
fn captured_market_data_decodes_contiguously_and_rebuilds_the_exchange_book() {
    let lab = Lab::up("tkcap");
    let (dir, config) = scratch("capture");
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let (ex_ns, cl_ns) = (lab.exchange_ns(), lab.client_ns());

    // tcpdump in the client namespace, on the lab veth, unbuffered (-U),
    // as root (-Z) so that it may write the file; ready once it listens.
    // Started before the exchange, so that the capture holds the start of
    // day from sequence 1.
    let capture = dir.join("md.pcap");
    let mut dump = spawn_in(
        &cl_ns,
        "tcpdump",
        &[
            "-i",
            &lab.client_if(),
            "-n",
            "-U",
            "-Z",
            "root",
            "-w",
            capture.to_str().unwrap(),
            "udp",
        ],
        &dir.join("tcpdump.log"),
    );
    wait_for_text(
        &dir.join("tcpdump.log"),
        "listening on",
        &mut dump,
        "tcpdump",
    );

    let mut ex = tokex(
        &ex_ns,
        &[
            "exchange",
            "--config",
            config.to_str().unwrap(),
            "--fresh",
            "--transport",
            "udp",
            "--ready-file",
            &p("exchange.ready"),
            "--book-out",
            &p("exchange-book.csv"),
            "--max-seconds",
            "60",
        ],
        &dir.join("exchange.log"),
    );
    wait_for(&dir.join("exchange.ready"), &mut ex, "exchange");

    let mut feed = tokex(
        &cl_ns,
        &[
            "feed",
            "--quiet",
            "--duration",
            "40",
            "--ready-file",
            &p("feed.ready"),
            "--book-out",
            &p("feed-book.csv"),
        ],
        &dir.join("feed.log"),
    );
    wait_for(&dir.join("feed.ready"), &mut feed, "feed handler");
    // Stray datagrams to the group, which the handler (live and from the
    // capture) must count and skip: the feed's own session name from a
    // client, far ahead (followed, the book would wait for 2^40 messages
    // forever), and another session from the exchange's address.
    send_to_group(&cl_ns, "198.18.0.2", b"TOKEX00001", 1 << 40);
    send_to_group(&ex_ns, "198.18.0.1", b"STRAY00001", 1);

    // A few seconds of load, bounded in count and time.
    let mut load = tokex(
        &cl_ns,
        &[
            "load",
            "--rate",
            "4000",
            "--duration",
            "2",
            "--count",
            "8000",
            "--drain-ms",
            "500",
            "--no-progress",
            "--out",
            &p("load"),
            "--contracts",
            root().join("contracts").to_str().unwrap(),
        ],
        &dir.join("load.log"),
    );
    assert!(
        load.wait().unwrap().success(),
        "{}",
        log_of(&dir, "load.log")
    );
    // Shutdown publishes End of Session; the live handler completes.
    assert!(stop(&mut ex).success(), "{}", log_of(&dir, "exchange.log"));
    assert!(
        feed.wait().unwrap().success(),
        "{}",
        log_of(&dir, "feed.log")
    );
    // Let the last datagrams reach the file, then stop the capture.
    std::thread::sleep(Duration::from_millis(300));
    stop(&mut dump);
    drop(lab);

    let ex_book = log_of(&dir, "exchange-book.csv");
    assert!(
        ex_book.lines().count() > 100,
        "the load must leave a book:\n{}",
        log_of(&dir, "load.log")
    );
    assert_eq!(
        log_of(&dir, "feed-book.csv"),
        ex_book,
        "live feed handler vs exchange"
    );
    let feed_log = log_of(&dir, "feed.log");
    for counted in ["1 of other sessions", "1 from other sources"] {
        assert!(feed_log.contains(counted), "{counted:?}\n{feed_log}");
    }

    // tshark: every packet to the feed port is MoldUDP64, in sequence, with
    // no hole, ending with End of Session at the next sequence number.
    let packets = tshark_sequences(&capture);
    assert!(packets.len() > 10, "{} packets captured", packets.len());
    let mut next = 1;
    let mut messages = 0;
    let mut ended = false;
    let mut ends = 0;
    for (i, &(seq, count)) in packets.iter().enumerate() {
        let at = || {
            format!(
                "packet {i} of {}: {:?}",
                packets.len(),
                &packets[i.saturating_sub(3)..(i + 3).min(packets.len())]
            )
        };
        assert_eq!(seq, next, "{}", at());
        match count {
            0 => assert!(!ended, "heartbeat after End of Session: {}", at()),
            // The exchange repeats End of Session; nothing else follows it.
            0xFFFF => {
                ended = true;
                ends += 1;
            }
            n => {
                assert!(!ended, "data after End of Session: {}", at());
                next += u64::from(n);
                messages += u64::from(n);
            }
        }
    }
    assert!(ended, "the capture ends with End of Session");
    // Three at once, then again every second of the exchange's 2 s linger
    // in place of heartbeats.
    assert!(ends >= 4, "End of Session sent {ends} times");
    assert!(messages > 1000, "{messages} messages");

    // tokex feed --pcap rebuilds the exchange's book from the capture alone.
    let out = Command::new(env!("CARGO_BIN_EXE_tokex"))
        .current_dir(root())
        .args(["feed", "--quiet", "--pcap"])
        .arg(&capture)
        .args(["--book-out", &p("pcap-book.csv")])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("none missing"), "{stdout}");
    // The client's stray went out on the captured veth too; the exchange's
    // reached the handler as another session.
    assert!(
        stdout.contains("1 to the feed from other sources skipped")
            && stdout.contains("1 of other sessions"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("{messages} messages, 0 gaps")),
        "{stdout}"
    );
    assert_eq!(
        log_of(&dir, "pcap-book.csv"),
        ex_book,
        "pcap rebuild vs exchange"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
