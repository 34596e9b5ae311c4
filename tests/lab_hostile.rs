//! Hostile order-entry clients against a real exchange, over AF_XDP and
//! over the kernel UDP path, on the lab network (needs root; namespaces of
//! its own, removed even when a test fails); and order-entry datagrams lost
//! both ways, recovered by the client library.
//!
//! The test thread joins the client namespace (setns) and speaks raw
//! SoupBinTCP + OUCH 4.2 over UDP, so it can send what a well-behaved
//! client library never would: wrong passwords, another session's tokens,
//! re-used tokens, traffic from an address that did not log in, garbage and
//! oversized datagrams, floods of orders, floods of market-data
//! retransmission requests. Every case is answered as the protocol says or
//! dropped and counted in the exchange's exit report, and a well-behaved
//! session keeps being answered throughout. Its round trip with and without
//! the flood is printed (a measurement, not an assertion: machines are
//! noisy).

mod common;

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{enter_ns, fresh_exchange, in_ns, number_before, scratch, stop, tokex, Lab};
use tokex::client::{ClientEvent, ClientSession, UdpClient, DEFAULT_SERVER};
use tokex::types::{Price, Qty, Side, Symbol, Tif};
use tokex::wire::moldudp64;
use tokex::wire::ouch::{self, Token};
use tokex::wire::soupbin::{self, Packet};
use zerocopy::IntoBytes;

const SERVER: &str = "198.18.0.1:9000";

/// How long an expected reply is waited for: a liveness bound only (one
/// normally comes within a millisecond), so a stalled machine does not
/// fail the test.
const ANSWERED_WITHIN: Duration = Duration::from_secs(10);

/// What came back for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    LoginAccepted,
    LoginRejected(u8),
    /// An OUCH outbound message: its type and token (and reject reason).
    Ouch(u8, Token, u8),
}

/// A raw order-entry client: one UDP socket, bytes built by hand.
struct Raw {
    sock: UdpSocket,
    tokens: u64,
    name: &'static str,
}

impl Raw {
    fn new(name: &'static str) -> Raw {
        let sock = UdpSocket::bind("198.18.0.2:0").unwrap();
        sock.connect(SERVER).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        Raw {
            sock,
            tokens: 0,
            name,
        }
    }

    fn send(&self, bytes: &[u8]) {
        let _ = self.sock.send(bytes);
    }

    fn login(&self, user: &str, password: &str) {
        let mut b = [0u8; 64];
        let n = soupbin::write_login_request(&mut b, user.as_bytes(), password.as_bytes(), b"", 0)
            .unwrap();
        self.send(&b[..n]);
    }

    fn token(&mut self) -> Token {
        self.tokens += 1;
        let mut t = [b' '; 14];
        let s = format!("{}{:08}", self.name, self.tokens);
        t[..s.len()].copy_from_slice(s.as_bytes());
        t
    }

    /// One datagram of Enter Order messages (buy 1 lot at `price` raw).
    fn enter_many(&self, tokens: &[Token], price: u32) {
        let mut b = vec![0u8; 1472];
        let mut n = 0;
        for t in tokens {
            let m = ouch::EnterOrder::new(
                *t,
                Side::Buy,
                Qty::new(1),
                Symbol::new("TK2612").unwrap(),
                Price::from_raw(price),
                Tif::Day,
            );
            n += soupbin::write_unsequenced(&mut b[n..], m.as_bytes()).unwrap();
        }
        self.send(&b[..n]);
    }

    fn cancel(&self, token: Token) {
        let mut b = [0u8; 64];
        let m = ouch::CancelOrder::new(token, Qty::ZERO);
        let n = soupbin::write_unsequenced(&mut b, m.as_bytes()).unwrap();
        self.send(&b[..n]);
    }

    /// Reads one datagram (waiting at most the socket's 20 ms timeout) and
    /// adds its replies to `out`; false if none came.
    fn read_one(&self, out: &mut Vec<Reply>) -> bool {
        let mut buf = [0u8; 2048];
        let Ok(n) = self.sock.recv(&mut buf) else {
            return false;
        };
        for p in soupbin::packets(&buf[..n]).flatten() {
            match p {
                Packet::LoginAccepted(_) => out.push(Reply::LoginAccepted),
                Packet::LoginRejected(c) => out.push(Reply::LoginRejected(c)),
                Packet::SequencedData(m) if m.len() >= 23 => {
                    let token: Token = m[9..23].try_into().unwrap();
                    out.push(Reply::Ouch(m[0], token, m.get(23).copied().unwrap_or(0)));
                }
                _ => {}
            }
        }
        true
    }

    /// Everything that arrives until nothing has for `quiet` (for checks
    /// that nothing comes: a short window, next to a reply that does).
    fn replies(&self, quiet: Duration) -> Vec<Reply> {
        let mut out = Vec::new();
        let mut last = Instant::now();
        let deadline = Instant::now() + Duration::from_secs(5);
        while last.elapsed() < quiet && Instant::now() < deadline {
            if self.read_one(&mut out) {
                last = Instant::now();
            }
        }
        out
    }

    /// Everything that arrives up to and including the first reply `want`
    /// accepts, or until [`ANSWERED_WITHIN`] has passed without one (the
    /// caller's assertion then shows what came instead).
    fn wait_for(&self, want: impl Fn(&Reply) -> bool) -> Vec<Reply> {
        let mut out = Vec::new();
        let deadline = Instant::now() + ANSWERED_WITHIN;
        while !out.iter().any(&want) && Instant::now() < deadline {
            self.read_one(&mut out);
        }
        out
    }

    /// Whether a Server Heartbeat comes (waiting at most
    /// `ANSWERED_WITHIN`; other replies are read past).
    fn hears_a_heartbeat(&self) -> bool {
        let deadline = Instant::now() + ANSWERED_WITHIN;
        let mut buf = [0u8; 2048];
        while Instant::now() < deadline {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            if soupbin::packets(&buf[..n])
                .flatten()
                .any(|p| matches!(p, Packet::ServerHeartbeat))
            {
                return true;
            }
        }
        false
    }

    /// Enters one order and waits for its answer; the round trip, or None.
    fn round_trip(&mut self, price: u32) -> Option<Duration> {
        let t = self.token();
        let t0 = Instant::now();
        self.enter_many(&[t], price);
        let mut buf = [0u8; 2048];
        while t0.elapsed() < Duration::from_secs(2) {
            let Ok(n) = self.sock.recv(&mut buf) else {
                continue;
            };
            let answered = soupbin::packets(&buf[..n])
                .flatten()
                .any(|p| matches!(p, Packet::SequencedData(m) if m.len() >= 23 && m[9..23] == t));
            if answered {
                return Some(t0.elapsed());
            }
        }
        None
    }
}

/// A MAC address no lab interface has.
const FORGED_MAC: &str = "02:00:00:00:00:66";

/// The MAC address of interface `dev` in namespace `ns`.
fn interface_mac(ns: &str, dev: &str) -> String {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", ns, "cat"])
        .arg(format!("/sys/class/net/{dev}/address"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Accepts an OUCH message of type `kind` for `token`.
fn ouch_reply(kind: u8, token: Token) -> impl Fn(&Reply) -> bool {
    move |r| matches!(r, Reply::Ouch(k, t, _) if *k == kind && *t == token)
}

fn has(replies: &[Reply], kind: u8, token: Token) -> Option<u8> {
    replies.iter().find_map(|r| match r {
        Reply::Ouch(k, t, reason) if *k == kind && *t == token => Some(*reason),
        _ => None,
    })
}

fn percentiles(mut v: Vec<Duration>) -> String {
    v.sort();
    let at = |p: f64| v[((v.len() - 1) as f64 * p) as usize];
    format!(
        "p50 {:?}, p99 {:?}, max {:?} (n={})",
        at(0.5),
        at(0.99),
        v[v.len() - 1],
        v.len()
    )
}

/// A well-behaved session (tokex's own client library: it re-sends
/// unanswered requests and recovers lost answers by sequence).
struct Polite {
    client: UdpClient,
    t0: Instant,
}

impl Polite {
    fn login() -> Polite {
        let mut p = Polite {
            client: UdpClient::new(
                ClientSession::new("demo04", "demo04", "P", 100_000_000),
                DEFAULT_SERVER,
            )
            .unwrap(),
            t0: Instant::now(),
        };
        p.client.session.login(0);
        let deadline = Instant::now() + Duration::from_secs(5);
        while !p.client.session.is_logged_in() {
            assert!(Instant::now() < deadline, "polite session not logged in");
            p.client.drive(p.now(), &mut |_| {}).unwrap();
        }
        p
    }

    fn now(&self) -> u64 {
        self.t0.elapsed().as_nanos() as u64
    }

    /// One order, driven until it is answered (at most 5 s).
    fn round_trip(&mut self) -> Duration {
        let start = Instant::now();
        let t = self.now();
        let token = self.client.session.enter(
            t,
            Symbol::new("TK2612").unwrap(),
            Side::Buy,
            Qty::new(1),
            Price::from_raw(64_000),
            Tif::Ioc,
        );
        let mut answered = false;
        while !answered {
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "the polite session is always answered"
            );
            let now = self.now();
            self.client
                .drive(now, &mut |e| {
                    if e.token() == Some(token) && !matches!(e, ClientEvent::Executed { .. }) {
                        answered = true;
                    }
                })
                .unwrap();
        }
        start.elapsed()
    }

    /// 200 orders, one every 5 ms; their round trips.
    fn run(&mut self) -> Vec<Duration> {
        (0..200)
            .map(|_| {
                let t0 = Instant::now();
                let rt = self.round_trip();
                std::thread::sleep(Duration::from_millis(5).saturating_sub(t0.elapsed()));
                rt
            })
            .collect()
    }
}

#[test]
fn hostile_clients_over_af_xdp_are_rejected_or_counted_and_a_polite_session_is_always_answered() {
    hostile_clients("xdp", "tkhsx");
}

#[test]
fn hostile_clients_over_kernel_udp_are_rejected_or_counted_and_a_polite_session_is_always_answered()
{
    hostile_clients("udp", "tkhsu");
}

/// Order datagrams and their answers lost on the way (nftables in the
/// client namespace drops 5 % each way): the client library re-sends and
/// recovers by sequence, and every order is answered.
#[test]
fn lost_datagrams_both_ways_over_af_xdp_are_recovered_by_the_client_library() {
    lost_datagrams("xdp", "tklx");
}

#[test]
fn lost_datagrams_both_ways_over_kernel_udp_are_recovered_by_the_client_library() {
    lost_datagrams("udp", "tklu");
}

fn lost_datagrams(transport: &str, prefix: &'static str) {
    let _one = common::exclusive();
    {
        let lab = Lab::up(prefix);
        let (dir, config) = scratch(&format!("loss-{transport}"));
        let mut ex = fresh_exchange(&lab, transport, &config, &dir);
        // Orders are dropped after routing, on the client veth's egress
        // (silently, as on a wire); answers on the way in.
        let rules = format!(
            "table netdev tokex_loss {{\n chain egress {{\n  type filter hook egress device {dev} priority 0;\n  udp dport 9000 numgen random mod 100 < 5 counter drop\n }}\n chain ingress {{\n  type filter hook ingress device {dev} priority 0;\n  udp sport 9000 numgen random mod 100 < 5 counter drop\n }}\n}}\n",
            dev = lab.client_if()
        );
        std::fs::write(dir.join("loss.nft"), rules).unwrap();
        assert!(
            common::in_ns(
                &lab.client_ns(),
                &["nft", "-f", dir.join("loss.nft").to_str().unwrap()]
            ),
            "nft (installed by tools/install-deps.sh)"
        );
        let mut load = tokex(
            &lab.client_ns(),
            &[
                "load",
                "--rate",
                "2000",
                "--count",
                "4000",
                "--duration",
                "3",
                "--no-progress",
                // Room for many re-sends of an order unlucky enough to be
                // lost again and again (the wait ends as soon as every
                // order is answered).
                "--drain-ms",
                "30000",
                "--out",
                dir.join("load").to_str().unwrap(),
            ],
            &dir.join("load.log"),
        );
        let loaded = load.wait().unwrap().success();
        stop(&mut ex);
        let log = std::fs::read_to_string(dir.join("load.log")).unwrap();
        let ex_log = std::fs::read_to_string(dir.join("exchange.log")).unwrap();
        assert!(loaded, "{log}\n{ex_log}");
        assert_eq!(
            common::number_after(&log, "answered", "sent"),
            4000,
            "{log}"
        );
        assert_eq!(
            common::number_after(&log, "answered", "lost"),
            0,
            "{transport}: {log}"
        );
        assert!(
            common::number_after(&log, "answered", "resent") > 0,
            "{transport}: requests were re-sent: {log}"
        );
        drop(lab);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

fn hostile_clients(transport: &str, prefix: &'static str) {
    let _one = common::exclusive();
    let lab = Lab::up(prefix);
    let (dir, config) = scratch(&format!("hostile-{transport}"));
    // A low per-session rate limit so that a flood from one client trips it.
    let mut cfg = std::fs::read_to_string(&config).unwrap();
    cfg.push_str("[gateway]\nrate_per_sec = 2000\nrate_burst = 200\n");
    // The demo sessions, and one whose credit (1 CNY) covers no order.
    for i in 1..=8 {
        cfg.push_str(&format!(
            "[[session]]\nusername = \"demo{i:02}\"\npassword = \"demo{i:02}\"\n"
        ));
    }
    cfg.push_str("[[session]]\nusername = \"lowcr\"\npassword = \"lowcr\"\ncredit = 1\n");
    std::fs::write(&config, cfg).unwrap();
    let mut ex = fresh_exchange(&lab, transport, &config, &dir);
    let _in_client_ns = enter_ns(&lab.client_ns());

    // Two sessions log in.
    let mut a = Raw::new("A");
    a.login("demo01", "demo01");
    let r = a.wait_for(|r| *r == Reply::LoginAccepted);
    assert!(r.contains(&Reply::LoginAccepted), "{r:?}");
    let b = Raw::new("B");
    b.login("demo02", "demo02");
    let r = b.wait_for(|r| *r == Reply::LoginAccepted);
    assert!(r.contains(&Reply::LoginAccepted), "{r:?}");

    // A's order rests; B cannot cancel it (B has no such token); A can.
    let ta = a.token();
    a.enter_many(&[ta], 64_000);
    let r = a.wait_for(ouch_reply(b'A', ta));
    assert!(has(&r, b'A', ta).is_some(), "{r:?}");
    b.cancel(ta);
    let rb = b.wait_for(ouch_reply(b'J', ta));
    assert!(
        has(&rb, b'J', ta).is_some(),
        "B's cancel is rejected: {rb:?}"
    );
    // A re-used token is rejected ('O'), not a second order.
    a.enter_many(&[ta], 64_010);
    let ra = a.wait_for(ouch_reply(b'J', ta));
    assert_eq!(has(&ra, b'J', ta), Some(ouch::reject::OTHER), "{ra:?}");

    // A session whose credit limit cannot cover the initial margin: the
    // pre-trade check rejects its order (OUCH 'n', exceeded dollar value limit).
    let mut m = Raw::new("M");
    m.login("lowcr", "lowcr");
    let r = m.wait_for(|r| *r == Reply::LoginAccepted);
    assert!(r.contains(&Reply::LoginAccepted), "{r:?}");
    let tm = m.token();
    m.enter_many(&[tm], 64_000);
    let rm = m.wait_for(ouch_reply(b'J', tm));
    assert_eq!(
        has(&rm, b'J', tm),
        Some(ouch::reject::EXCEEDED_DOLLAR_VALUE_LIMIT),
        "{rm:?}"
    );

    // Order traffic from an address that did not log in: dropped, counted.
    let intruder = Raw::new("X");
    let tx = [b'X'; 14];
    intruder.enter_many(&[tx], 64_000);
    // Logging into A's session from another address while A is bound:
    // refused (Session not available). The refusal is also the barrier for
    // the order before it: the intruder's datagrams reach the exchange and
    // are handled in order, so an answer to that order would have come
    // first.
    intruder.login("demo01", "demo01");
    let ri = intruder.wait_for(|r| matches!(r, Reply::LoginRejected(_)));
    assert_eq!(
        ri,
        [Reply::LoginRejected(soupbin::reject::SESSION_NOT_AVAILABLE)],
        "the intruder's order is not answered, and a bound session is not taken over"
    );
    // Nor does anything come after (a short window: only a very late
    // wrong answer would be missed).
    let late = intruder.replies(Duration::from_millis(100));
    assert!(late.is_empty(), "{late:?}");

    // Garbage, truncated, oversized and unknown-type datagrams from a
    // logged-in session: dropped and counted; the session still works.
    a.send(b"\x00");
    a.send(&[0xff; 1400]);
    a.send(&[0, 40, b'U', b'O', 1, 2, 3]); // length says 40, 5 bytes follow
    a.send(&[0, 1, b'Q']); // unknown packet type
    a.send(&[0, 1, b'H']); // a server's packet type (Server Heartbeat)
    a.send(&[0, 2, b'U', b'?']); // unknown OUCH message type
    assert!(
        a.round_trip(64_000).is_some(),
        "service continues after bad input"
    );

    // A frame claiming A's address from another MAC address (a forger on
    // the segment: the client interface's address changed for one
    // datagram) does not take A's replies: with nothing sent from the
    // client host after it, A's next Server Heartbeat still goes to the
    // address A logged in from.
    let (ns, dev) = (lab.client_ns(), lab.client_if());
    let mac = interface_mac(&ns, &dev);
    let set_mac = |to: &str| {
        assert!(in_ns(
            &ns,
            &["ip", "link", "set", "dev", &dev, "address", to]
        ))
    };
    set_mac(FORGED_MAC);
    a.send(&[0, 1, soupbin::kind::CLIENT_HEARTBEAT]);
    set_mac(&mac);
    assert!(
        a.hears_a_heartbeat(),
        "A is heard from after a forged frame claimed its address"
    );

    // A polite session, without and then during a flood from A.
    let mut polite = Polite::login();
    let quiet = polite.run();
    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let flooding = flooding.clone();
        let ns = lab.client_ns();
        let sock = a.sock.try_clone().unwrap();
        std::thread::spawn(move || {
            let _in_client_ns = enter_ns(&ns);
            let mut raw = Raw {
                sock,
                tokens: 1_000_000,
                name: "F",
            };
            // Bounded: at most 20,000 datagrams of 20 orders, or 3 s.
            let t0 = Instant::now();
            let mut sent = 0u64;
            while flooding.load(Ordering::Relaxed)
                && sent < 20_000
                && t0.elapsed() < Duration::from_secs(3)
            {
                let tokens: Vec<Token> = (0..20).map(|_| raw.token()).collect();
                raw.enter_many(&tokens, 60_000);
                sent += 1;
            }
            sent * 20
        })
    };
    let during = polite.run();
    flooding.store(false, Ordering::Relaxed);
    let flooded = flood.join().unwrap();
    println!(
        "polite session round trip, quiet:       {}",
        percentiles(quiet)
    );
    println!(
        "polite session round trip, under flood: {}",
        percentiles(during)
    );
    println!("flood: {flooded} orders sent by one session");

    // Market-data retransmission requests: a flood from one host is cut to
    // its per-requester limit; requests for the future are answered with
    // what exists or ignored.
    let md = UdpSocket::bind("198.18.0.2:0").unwrap();
    let req = moldudp64::Header::new(*b"TOKEX00001", 1, 10);
    let mut rb = [0u8; 20];
    let n = req.write(&mut rb).unwrap();
    for _ in 0..5_000 {
        let _ = md.send_to(&rb[..n], "198.18.0.1:9101");
    }
    let future = moldudp64::Header::new(*b"TOKEX00001", u64::MAX - 5, 100);
    let n = future.write(&mut rb).unwrap();
    let _ = md.send_to(&rb[..n], "198.18.0.1:9101");

    // Wrong passwords, repeatedly, from one host: rejected; after three,
    // the host is backed off (still answered, but not even checked; the
    // login-backoff counter below).
    let bad = Raw::new("W");
    for _ in 0..6 {
        bad.login("demo03", "wrong");
    }
    let rw = bad.wait_for(|r| *r == Reply::LoginRejected(soupbin::reject::NOT_AUTHORIZED));
    assert!(
        rw.contains(&Reply::LoginRejected(soupbin::reject::NOT_AUTHORIZED)),
        "{rw:?}"
    );

    // The polite session was answered every time (`round_trip` asserts
    // it), and still is.
    polite.round_trip();

    stop(&mut ex);
    let log = std::fs::read_to_string(dir.join("exchange.log")).unwrap();
    println!(
        "{}",
        log.lines()
            .filter(|l| l.starts_with("dropped")
                || l.starts_with("rejected")
                || l.starts_with("market data:"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for counter in [
        "malformed",
        "unexpected-packet",
        "not-logged-in",
        "bad-ouch-message",
        "bad-credentials",
        "login-backoff",
        "session-in-use",
    ] {
        let line = log.lines().find(|l| l.starts_with("dropped:")).unwrap();
        assert!(
            line.split_whitespace()
                .any(|w| w.starts_with(&format!("{counter}="))),
            "{counter} counted: {line}"
        );
    }
    let dropped = log.lines().find(|l| l.starts_with("dropped:")).unwrap();
    assert!(
        dropped
            .split_whitespace()
            .any(|w| w.starts_with("rate-limited=")),
        "the flood tripped the rate limit: {dropped}"
    );
    let limited = number_before(&log, "retransmission requests", "over");
    assert!(limited > 0, "the retransmission flood was limited: {log}");
    let _ = std::fs::remove_dir_all(&dir);
}
