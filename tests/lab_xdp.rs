//! AF_XDP on the lab network (needs root; each test has namespaces of its
//! own, removed even when it fails).
//!
//! With tokex's XDP program attached, order datagrams go to the AF_XDP
//! socket and are answered from UMEM frames, while ARP, ICMP and the TCP
//! compatibility port still reach the kernel. A killed exchange leaves the
//! namespace working and no program attached, a restart takes the interface
//! back, and a clean stop detaches the program. An XDP program already on
//! the interface (another tool's, or a live exchange's on another queue) is
//! neither replaced nor removed, and nothing replaces the exchange's while
//! it runs. The load generator can run over AF_XDP too, against either
//! exchange transport.

mod common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{
    enter_ns, fresh_exchange, hlog_interval_counts, in_ns, number_after, number_before, scratch,
    start_exchange, stop, tokex, wait_for, Lab,
};
use tokex::wire::soupbin::{self, Packet};

fn xdp_attached(ns: &str, interface: &str) -> bool {
    let out = Command::new("ip")
        .args(["-n", ns, "-details", "link", "show", interface])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
}

/// `tokex load` in `ns` with `extra` arguments: 2,000 orders at 1,000/s
/// (a 1 s drain), output under `dir/label`; its log, once it succeeded.
fn small_load(ns: &str, dir: &Path, label: &str, extra: &[&str]) -> String {
    let out = dir.join(label);
    let mut args = vec![
        "load",
        "--rate",
        "1000",
        "--count",
        "2000",
        "--duration",
        "3",
        "--no-progress",
        "--drain-ms",
        "1000",
        "--out",
        out.to_str().unwrap(),
        "--label",
        label,
    ];
    args.extend_from_slice(extra);
    let log = dir.join(format!("{label}.log"));
    let mut l = tokex(ns, &args, &log);
    assert!(l.wait().unwrap().success());
    std::fs::read_to_string(log).unwrap()
}

#[test]
fn af_xdp_answers_orders_while_arp_icmp_and_tcp_reach_the_kernel_and_survives_a_kill() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdp");
    let (dir, config) = scratch("xdp");
    let cfg = config.to_str().unwrap();
    let (ex_ns, cl_ns, ex_if) = (lab.exchange_ns(), lab.client_ns(), lab.exchange_if());
    let p = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let exchange = |ready: &str, log: &str| {
        tokex(
            &ex_ns,
            &[
                "exchange",
                "--config",
                cfg,
                "--transport",
                "xdp",
                "--interface",
                &ex_if,
                "--fresh",
                "--ready-file",
                &p(ready),
            ],
            &dir.join(log),
        )
    };
    let load = |label: &str| small_load(&cl_ns, &dir, label, &[]);

    // 1. AF_XDP is up, in native or generic mode, and says which.
    let mut ex = exchange("r1", "ex1.log");
    wait_for(&dir.join("r1"), &mut ex, "exchange");
    let log = std::fs::read_to_string(dir.join("ex1.log")).unwrap();
    assert!(log.contains("transport: AF_XDP on"), "{log}");
    assert!(
        log.contains(" XDP, ") && log.contains(" mode, need_wakeup on"),
        "{log}"
    );
    assert!(xdp_attached(&ex_ns, &ex_if));

    // 2. Orders over AF_XDP: every one answered. ICMP (and the ARP before
    //    it, the neighbour entry is flushed first) and TCP still work.
    let first = load("first");
    assert_eq!(number_after(&first, "answered", "sent"), 2000, "{first}");
    assert_eq!(number_after(&first, "answered", "lost"), 0, "{first}");
    assert!(in_ns(&cl_ns, &["ip", "neigh", "flush", "all"]));
    assert!(in_ns(&cl_ns, &["ping", "-c", "2", "-W", "2", "198.18.0.1"]));
    let probe = Command::new("ip")
        .args([
            "netns",
            "exec",
            &cl_ns,
            env!("CARGO_BIN_EXE_tokex"),
            "probe",
        ])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{}",
        String::from_utf8_lossy(&probe.stdout)
    );

    // 3. SIGKILL: the kernel detaches the program with the dead process's
    //    link (nothing stale is left for the restart to replace), and the
    //    namespace keeps answering pings.
    ex.kill().unwrap();
    ex.wait().unwrap();
    assert!(!xdp_attached(&ex_ns, &ex_if));
    assert!(in_ns(&cl_ns, &["ping", "-c", "1", "-W", "2", "198.18.0.1"]));

    // 4. A restart attaches the program again and serves orders; the
    //    AF_XDP counters account for every datagram.
    let mut ex = exchange("r2", "ex2.log");
    wait_for(&dir.join("r2"), &mut ex, "restarted exchange");
    // On AF_XDP again, not fallen back to kernel UDP: the dead process's
    // socket may still hold the queue for a moment, and the exchange waits
    // for it (it says so when it has to).
    let log = std::fs::read_to_string(dir.join("ex2.log")).unwrap();
    assert!(log.contains("transport: AF_XDP on"), "{log}");
    if log.contains("AF_XDP socket not created yet") {
        println!("the restart waited for the queue:\n{log}");
    }
    let second = load("second");
    assert_eq!(number_after(&second, "answered", "lost"), 0, "{second}");
    // A datagram to the order port at another address of the interface is
    // the kernel's, not the socket's: the program matches the address too
    // (the socket would count it bad).
    assert!(in_ns(
        &ex_ns,
        &["ip", "addr", "add", "198.18.0.3/24", "dev", &ex_if]
    ));
    assert!(in_ns(
        &cl_ns,
        &["bash", "-c", "echo order > /dev/udp/198.18.0.3/9000"]
    ));
    std::thread::sleep(std::time::Duration::from_millis(300));
    stop(&mut ex);
    let log = std::fs::read_to_string(dir.join("ex2.log")).unwrap();
    let redirected = number_after(&log, "XDP program:", "redirected");
    let rx = number_after(&log, "AF_XDP:", "frames");
    assert_eq!(rx, redirected, "{log}");
    assert!(rx >= 2000, "{log}");
    assert_eq!(number_after(&log, "AF_XDP:", "bad"), 0, "{log}");

    // 5. A clean stop detaches the program.
    assert!(!xdp_attached(&ex_ns, &ex_if));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn after_a_restart_over_af_xdp_a_recovered_session_hears_heartbeats_before_its_client_sends() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxhb");
    let (dir, config) = scratch("xdp-heartbeat");
    let cfg = config.to_str().unwrap();
    let ex_if = lab.exchange_if();
    let args = ["--transport", "xdp", "--interface", &ex_if];
    let mut ex = start_exchange(&lab.exchange_ns(), cfg, &dir, 1, &args, true);
    // A client logs in.
    let sock = client_socket(&lab);
    let mut b = [0u8; 64];
    let n = soupbin::write_login_request(&mut b, b"demo01", b"demo01", b"", 0).unwrap();
    sock.send(&b[..n]).unwrap();
    assert!(
        hears(&sock, |p| matches!(p, Packet::LoginAccepted(_))),
        "logged in"
    );
    // Killed and restarted, the exchange recovers the session from its
    // journal with no MAC address for its client (only a login vouches
    // for one): its heartbeats go through the kernel, whose ARP finds it.
    ex.kill().unwrap();
    ex.wait().unwrap();
    let mut ex = start_exchange(&lab.exchange_ns(), cfg, &dir, 2, &args, false);
    assert!(
        hears(&sock, |p| matches!(p, Packet::ServerHeartbeat)),
        "a heartbeat to the recovered session, the client having sent nothing"
    );
    // Once its client logs in again, its replies go through AF_XDP (the
    // login vouches for its MAC address).
    sock.send(&b[..n]).unwrap();
    assert!(
        hears(&sock, |p| matches!(p, Packet::LoginAccepted(_))),
        "logged in again"
    );
    stop(&mut ex);
    let log = std::fs::read_to_string(dir.join("ex2.log")).unwrap();
    assert!(count_after(&log, "was not known: ") >= 1, "{log}");
    assert_eq!(count_after(&log, "unknown-peer drops "), 0, "{log}");
    assert!(count_after(&log, "tx frames ") >= 1, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_fragmented_datagram_the_xdp_program_passes_to_the_kernel_is_answered() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxfrag");
    let (dir, config) = scratch("xdp-fragments");
    let ex_if = lab.exchange_if();
    let args = ["--transport", "xdp", "--interface", &ex_if];
    let cfg = config.to_str().unwrap();
    let mut ex = start_exchange(&lab.exchange_ns(), cfg, &dir, 1, &args, true);
    let sock = client_socket(&lab);
    // A Login Request and a 1,900-byte Debug packet: one datagram larger
    // than the link's MTU (1,500), so it leaves in two IP fragments, which
    // the XDP program passes to the kernel.
    let mut d = vec![0u8; 64];
    let n = soupbin::write_login_request(&mut d, b"demo01", b"demo01", b"", 0).unwrap();
    d.truncate(n);
    let mut debug = vec![0u8; 1_900 + soupbin::HEADER_LEN];
    let m = soupbin::write_packet(&mut debug, soupbin::kind::DEBUG, &[b'.'; 1_900]).unwrap();
    d.extend_from_slice(&debug[..m]);
    assert!(d.len() > 1_500);
    sock.send(&d).unwrap();
    assert!(
        hears(&sock, |p| matches!(p, Packet::LoginAccepted(_))),
        "the fragmented login is answered"
    );
    stop(&mut ex);
    let log = std::fs::read_to_string(dir.join("ex1.log")).unwrap();
    assert!(
        log.contains("1 datagram received of those the XDP program passed"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A UDP socket of the client namespace (it stays there once made),
/// connected to the exchange's order port.
fn client_socket(lab: &Lab) -> UdpSocket {
    let sock = {
        let _in_client_ns = enter_ns(&lab.client_ns());
        UdpSocket::bind("198.18.0.2:0").unwrap()
    };
    sock.connect("198.18.0.1:9000").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    sock
}

/// The number right after the first `label` in `log`.
fn count_after(log: &str, label: &str) -> u64 {
    let at = log
        .find(label)
        .unwrap_or_else(|| panic!("no {label:?} in\n{log}"));
    let digits: String = log[at + label.len()..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// Whether a packet `want` accepts comes on `sock` within 10 s (a
/// liveness bound: it normally comes within a second).
fn hears(sock: &UdpSocket, want: impl Fn(&Packet<'_>) -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut buf = [0u8; 2048];
    while Instant::now() < deadline {
        if let Ok(n) = sock.recv(&mut buf) {
            if soupbin::packets(&buf[..n]).flatten().any(|p| want(&p)) {
                return true;
            }
        }
    }
    false
}

#[test]
fn load_generator_over_af_xdp_gets_every_answer_from_either_exchange_transport() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdpcl");
    let (dir, config) = scratch("xdp-client");
    let (cl_ns, cl_if) = (lab.client_ns(), lab.client_if());
    for transport in ["xdp", "udp"] {
        let mut ex = fresh_exchange(&lab, transport, &config, &dir);
        let log = small_load(
            &cl_ns,
            &dir,
            &format!("load-{transport}"),
            &["--transport", "xdp", "--interface", &cl_if],
        );
        assert!(log.contains("4 sessions over AF_XDP on"), "{log}");
        assert_eq!(number_after(&log, "answered", "sent"), 2000, "{log}");
        assert_eq!(number_after(&log, "answered", "lost"), 0, "{log}");
        // The interval log, written after the run from per-second
        // histograms, holds every answered order's latency in intervals of
        // a second (2,000 at 1,000/s: two seconds of sending).
        let label = format!("load-{transport}");
        let counts = hlog_interval_counts(&dir.join(&label).join(format!("{label}.hlog")));
        assert!(counts.len() >= 2, "{counts:?}");
        assert_eq!(counts.iter().sum::<u64>(), 2000, "{counts:?}");
        // Every order left through AF_XDP (only the logins went through
        // the kernel sockets), and every answer came back through it (the
        // kernel sockets are never read; the exchange may pack several
        // answers into one datagram): the client's XDP program redirected
        // exactly the frames the socket read.
        // ("rx frames N, bad N, tx frames N, no-frame drops N, ...")
        let sent = number_before(&log, "client AF_XDP:", "no-frame");
        assert!(sent >= 2000, "tx frames {sent}: {log}");
        let rx = number_after(&log, "client AF_XDP:", "frames");
        assert!(rx > 0, "{log}");
        assert_eq!(
            number_after(&log, "client AF_XDP:", "redirected"),
            rx,
            "{log}"
        );
        assert_eq!(number_after(&log, "client AF_XDP:", "bad"), 0, "{log}");
        // The generator detached its program when it finished.
        assert!(!xdp_attached(&cl_ns, &cl_if));
        assert!(stop(&mut ex).success());
        let ex_log = std::fs::read_to_string(dir.join("exchange.log")).unwrap();
        assert!(ex_log.contains("datagrams"), "{ex_log}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn datagrams_with_partial_udp_checksums_are_dropped_and_the_report_says_why() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdpck");
    let (dir, config) = scratch("xdp-checksum");
    let (cl_ns, cl_if) = (lab.client_ns(), lab.client_if());
    let offload = |on: &str| assert!(in_ns(&cl_ns, &["ethtool", "-K", &cl_if, "tx", on]));
    let logins_fail = |label: &str| {
        let log = dir.join(format!("{label}.log"));
        let out = dir.join(label);
        let args = [
            "load",
            "--rate",
            "100",
            "--count",
            "10",
            "--duration",
            "1",
            "--no-progress",
            "--out",
            out.to_str().unwrap(),
        ];
        let mut l = tokex(&cl_ns, &args, &log);
        assert!(!l.wait().unwrap().success());
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("not every session logged in"), "{text}");
    };

    // The lab sends full checksums; with transmit offload on, the client's
    // veth leaves partial ones, which the AF_XDP exchange drops, counts
    // and explains.
    let mut ex = fresh_exchange(&lab, "xdp", &config, &dir);
    offload("on");
    logins_fail("partial");
    offload("off");
    let log = small_load(&cl_ns, &dir, "full", &[]);
    assert_eq!(number_after(&log, "answered", "lost"), 0, "{log}");
    assert!(stop(&mut ex).success());
    let ex_log = std::fs::read_to_string(dir.join("exchange.log")).unwrap();
    assert!(
        number_after(&ex_log, "AF_XDP:", "checksum") >= 4,
        "{ex_log}"
    );
    assert!(ex_log.contains("ethtool -K IF tx off"), "{ex_log}");

    // `verify_udp_checksum = false` takes them.
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str("[xdp]\nverify_udp_checksum = false\n");
    std::fs::write(&config, text).unwrap();
    let mut ex = fresh_exchange(&lab, "xdp", &config, &dir);
    offload("on");
    let log = small_load(&cl_ns, &dir, "unverified", &[]);
    offload("off");
    assert_eq!(number_after(&log, "answered", "lost"), 0, "{log}");
    assert!(stop(&mut ex).success());
    let ex_log = std::fs::read_to_string(dir.join("exchange.log")).unwrap();
    assert_eq!(number_after(&ex_log, "AF_XDP:", "checksum"), 0, "{ex_log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn pipelined_topology_hands_every_datagram_to_the_engine_thread_over_either_transport() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdppl");
    let (dir, config) = scratch("xdp-pipelined");
    let (ex_ns, cl_ns, ex_if) = (lab.exchange_ns(), lab.client_ns(), lab.exchange_if());
    let cfg = config.to_str().unwrap();
    for (n, transport) in ["xdp", "udp"].into_iter().enumerate() {
        let args = [
            "--transport",
            transport,
            "--interface",
            &ex_if,
            "--topology",
            "pipelined",
        ];
        let mut ex = common::start_exchange(&ex_ns, cfg, &dir, n, &args, true);
        let log = small_load(&cl_ns, &dir, &format!("pipelined-{transport}"), &[]);
        assert_eq!(number_after(&log, "answered", "sent"), 2000, "{log}");
        assert_eq!(number_after(&log, "answered", "lost"), 0, "{log}");
        assert!(stop(&mut ex).success());
        let ex_log = std::fs::read_to_string(dir.join(format!("ex{n}.log"))).unwrap();
        // The receive thread blocks (the default) under SCHED_FIFO beside
        // the load generator's core, and the engine thread answers.
        assert!(
            ex_log.contains(
                "runtime: pipelined: receive thread on core 0 (blocking in poll(2), SCHED_FIFO 10) -> SPSC ring -> engine thread on core 1"
            ),
            "{ex_log}"
        );
        assert!(!ex_log.contains("not real-time"), "{ex_log}");
        // Every datagram the thread read reached the engine thread
        // (logins, orders, heartbeats: at least one per order here).
        let handed = number_after(&ex_log, "receive thread:", "thread:");
        assert!(handed >= 2000, "{ex_log}");
        assert_eq!(
            number_after(&ex_log, "SoupBinTCP packets", "datagrams"),
            handed,
            "{ex_log}"
        );
        if transport == "xdp" {
            // The receive half's counters are back in the port's report:
            // every frame the program redirected was read and was good.
            let rx = number_after(&ex_log, "AF_XDP:", "frames");
            assert_eq!(rx, number_after(&ex_log, "XDP program:", "redirected"));
            assert_eq!(rx, handed, "{ex_log}");
            assert_eq!(number_after(&ex_log, "AF_XDP:", "bad"), 0, "{ex_log}");
            // Both halves closed: the clean stop detached the program.
            assert!(!xdp_attached(&ex_ns, &ex_if));
        } else {
            assert!(ex_log.contains("kernel UDP:"), "{ex_log}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const BURST_GROUP: std::net::Ipv4Addr = std::net::Ipv4Addr::new(239, 198, 0, 77);

/// Run by `one_flush_sends_a_burst_larger_than_a_copy_mode_kick` inside the
/// exchange namespace (`ip netns exec` gives it that namespace's /sys,
/// where the port reads its MAC address): 100 frames to the group, one
/// flush, then nothing for half a second with the port open.
#[test]
#[ignore = "run by one_flush_sends_a_burst_larger_than_a_copy_mode_kick"]
fn burst_sender() {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use tokex::config::XdpConfig;
    use tokex::net::xdp::XdpPort;

    let interface = std::env::var("TOKEX_BURST_INTERFACE").unwrap();
    let cfg = XdpConfig {
        zero_copy: false,
        ..XdpConfig::default()
    };
    let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 9176);
    let mut port = XdpPort::open(&interface, local, &cfg).unwrap();
    for i in 0..100u32 {
        assert!(port.send_multicast(SocketAddrV4::new(BURST_GROUP, 9177), 9176, &i.to_be_bytes()));
    }
    // A payload no frame holds is refused and counted as such, not as a
    // lack of free frames.
    assert!(!port.send_multicast(SocketAddrV4::new(BURST_GROUP, 9177), 9176, &[0; 3000]));
    port.flush();
    println!("flushed {}", port.stats().tx_frames);
    println!("{}", port.stats());
    std::thread::sleep(std::time::Duration::from_millis(500));
}

#[test]
fn one_flush_sends_a_burst_larger_than_a_copy_mode_kick() {
    use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
    use std::time::{Duration, Instant};

    let _one = common::exclusive();
    let lab = Lab::up("tkburst");
    // The receiver: a socket in the client namespace, joined to the group.
    let rx = {
        let _ns = common::enter_ns(&lab.client_ns());
        let s = UdpSocket::bind(SocketAddrV4::new(BURST_GROUP, 9177)).unwrap();
        s.join_multicast_v4(&BURST_GROUP, &Ipv4Addr::new(198, 18, 0, 2))
            .unwrap();
        s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        s
    };
    // On veth (copy mode) one kick sends 32 frames; the other 68 waited
    // for a next flush, which the sender never makes.
    let sender = Command::new("ip")
        .args(["netns", "exec", &lab.exchange_ns()])
        .arg(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "burst_sender", "--nocapture"])
        .env("TOKEX_BURST_INTERFACE", lab.exchange_if())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut got = 0;
    let mut buf = [0u8; 64];
    let until = Instant::now() + Duration::from_millis(2_000);
    while Instant::now() < until && got < 100 {
        if rx.recv(&mut buf).is_ok() {
            got += 1;
        }
    }
    let out = sender.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("flushed 100"), "{stdout}");
    assert!(
        stdout.contains("no-frame drops 0, too-large drops 1,"),
        "{stdout}"
    );
    assert_eq!(got, 100, "received after one flush");
    drop(lab);
}

/// The id of the XDP program attached to `interface` in `ns`, if any
/// (`ip -details` shows "prog/xdp id N").
fn xdp_prog_id(ns: &str, interface: &str) -> Option<u32> {
    let out = Command::new("ip")
        .args(["-n", ns, "-details", "link", "show", interface])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let (_, rest) = text.split_once("prog/xdp id ")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// An XDP program that is not tokex's (it passes everything), compiled
/// with clang (which the build needs anyway) into `dir`.
fn foreign_xdp_object(dir: &Path) -> std::path::PathBuf {
    let src = dir.join("foreign.c");
    std::fs::write(
        &src,
        "#include <linux/bpf.h>\n\
         __attribute__((section(\"xdp\"), used)) int foreign_pass(struct xdp_md *ctx) { return XDP_PASS; }\n\
         char _license[] __attribute__((section(\"license\"), used)) = \"GPL\";\n",
    )
    .unwrap();
    let obj = dir.join("foreign.o");
    let ok = Command::new(std::env::var("CLANG").unwrap_or_else(|_| "clang".into()))
        .args(["-O2", "-g", "-target", "bpf"])
        .arg(format!(
            "-I/usr/include/{}-linux-gnu",
            std::env::consts::ARCH
        ))
        .arg("-c")
        .arg(&src)
        .arg("-o")
        .arg(&obj)
        .status()
        .unwrap()
        .success();
    assert!(ok, "clang could not build the foreign XDP program");
    obj
}

#[test]
fn a_foreign_xdp_program_is_neither_replaced_nor_removed_and_cannot_replace_the_exchanges() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdpfo");
    let (dir, config) = scratch("xdp-foreign");
    let (ex_ns, ex_if) = (lab.exchange_ns(), lab.exchange_if());
    let cfg = config.to_str().unwrap();
    let obj = foreign_xdp_object(&dir);
    let obj = obj.to_str().unwrap();
    let args = ["--transport", "xdp", "--interface", &ex_if];

    // 1. Another program is on the interface first: the exchange leaves it
    //    there, says so (interface and program id), runs on kernel UDP,
    //    and leaves it there when it stops.
    assert!(in_ns(
        &ex_ns,
        &[
            "ip",
            "link",
            "set",
            "dev",
            &ex_if,
            "xdpgeneric",
            "obj",
            obj,
            "sec",
            "xdp"
        ]
    ));
    let foreign = xdp_prog_id(&ex_ns, &ex_if).expect("the foreign program is attached");
    let mut ex = common::start_exchange(&ex_ns, cfg, &dir, 0, &args, true);
    let log = std::fs::read_to_string(dir.join("ex0.log")).unwrap();
    assert!(
        log.contains(&format!(
            "{ex_if} already has XDP program id {foreign} (\"foreign_pass\")"
        )),
        "{log}"
    );
    assert!(log.contains("falling back to the kernel UDP path"), "{log}");
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), Some(foreign));
    assert!(stop(&mut ex).success());
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), Some(foreign));

    // 2. On a free interface the exchange attaches its program, which
    //    nothing else can replace or remove while it runs; its clean stop
    //    removes it.
    assert!(in_ns(
        &ex_ns,
        &["ip", "link", "set", "dev", &ex_if, "xdpgeneric", "off"]
    ));
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), None);
    let mut ex = common::start_exchange(&ex_ns, cfg, &dir, 1, &args, true);
    let log = std::fs::read_to_string(dir.join("ex1.log")).unwrap();
    assert!(log.contains("transport: AF_XDP on"), "{log}");
    let ours = xdp_prog_id(&ex_ns, &ex_if).expect("the exchange's program is attached");
    let mode = if log.contains("native XDP") {
        "xdpdrv"
    } else {
        "xdpgeneric"
    };
    assert!(!in_ns(
        &ex_ns,
        &["ip", "-force", "link", "set", "dev", &ex_if, mode, "obj", obj, "sec", "xdp"]
    ));
    assert!(!in_ns(
        &ex_ns,
        &["ip", "link", "set", "dev", &ex_if, mode, "off"]
    ));
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), Some(ours));
    assert!(stop(&mut ex).success());
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Run by `a_second_tokex_on_another_queue_leaves_the_live_program_alone`
/// inside the exchange namespace: an AF_XDP port on queue 1 of the
/// interface whose queue 0 a live exchange serves. Its socket binds (the
/// queue is free); its program must not replace the exchange's.
#[test]
#[ignore = "run by a_second_tokex_on_another_queue_leaves_the_live_program_alone"]
fn second_port_on_queue_1() {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use tokex::config::XdpConfig;
    use tokex::net::xdp::XdpPort;

    let interface = std::env::var("TOKEX_SECOND_INTERFACE").unwrap();
    let cfg = XdpConfig {
        zero_copy: false,
        queue: 1,
        ..XdpConfig::default()
    };
    let local = SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 1), 9000);
    match XdpPort::open(&interface, local, &cfg) {
        Ok(port) => panic!("opened beside a live exchange: {}", port.describe()),
        Err(e) => println!("refused: {e}"),
    }
}

#[test]
fn a_second_tokex_on_another_queue_leaves_the_live_program_alone() {
    let _one = common::exclusive();
    let lab = Lab::up("tkxdp2q");
    let (dir, config) = scratch("xdp-second-queue");
    let (ex_ns, cl_ns, ex_if) = (lab.exchange_ns(), lab.client_ns(), lab.exchange_if());
    // Two receive queues on the exchange's side; the client's veth sends
    // on its one queue, which arrives on queue 0.
    assert!(in_ns(
        &ex_ns,
        &["ethtool", "-L", &ex_if, "rx", "2", "tx", "2"]
    ));
    let args = ["--transport", "xdp", "--interface", &ex_if];
    let mut ex = common::start_exchange(&ex_ns, config.to_str().unwrap(), &dir, 0, &args, true);
    let live = xdp_prog_id(&ex_ns, &ex_if).expect("the exchange's program is attached");

    let second = Command::new("ip")
        .args(["netns", "exec", &ex_ns])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "second_port_on_queue_1",
            "--nocapture",
        ])
        .env("TOKEX_SECOND_INTERFACE", &ex_if)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "{ex_if} already has tokex's XDP program (id {live})"
        )),
        "{stdout}"
    );
    // The live exchange keeps its program, and its orders.
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), Some(live));
    let log = small_load(&cl_ns, &dir, "after-second", &[]);
    assert_eq!(number_after(&log, "answered", "sent"), 2000, "{log}");
    assert_eq!(number_after(&log, "answered", "lost"), 0, "{log}");
    assert!(stop(&mut ex).success());
    assert_eq!(xdp_prog_id(&ex_ns, &ex_if), None);
    let _ = std::fs::remove_dir_all(&dir);
}
