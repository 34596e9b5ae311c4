//! The TCP compatibility port with the real session layer behind it: a
//! SoupBinTCP Logout Request ends the connection (SoupBinTCP 3.0), after
//! the replies queued before it, and frees the connection's per-host slot.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Gateway, Peer};
use tokex::net::tcp::{spawn_with, TcpInbound, TcpLimits};
use tokex::runtime::{Handoff, Stop};
use tokex::types::Nanos;
use tokex::wire::soupbin::{self, Packet};

/// Reads until the server closes the connection or `limit` passes:
/// what was read, and whether it was closed.
fn read_until_closed(c: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let deadline = Instant::now() + limit;
    let mut got = Vec::new();
    let mut b = [0u8; 4096];
    while Instant::now() < deadline {
        c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
        match c.read(&mut b) {
            Ok(0) => return (got, true),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => return (got, true),
            Err(e) => panic!("{e}"),
        }
    }
    (got, false)
}

fn login(user: &str) -> Vec<u8> {
    let mut b = [0u8; 64];
    let n = soupbin::write_login_request(&mut b, user.as_bytes(), user.as_bytes(), b"", 0).unwrap();
    b[..n].to_vec()
}

#[test]
fn a_tcp_logout_request_closes_the_connection_after_its_replies_and_frees_the_hosts_slot() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = Stop::new();
    let inbound: Arc<Handoff<TcpInbound>> = Handoff::with_capacity(64);
    // One connection per host, and a long idle limit: only the logout can
    // close the connection within the test's wait.
    let limits = TcpLimits {
        per_host: 1,
        idle: Duration::from_secs(30),
        ..TcpLimits::default()
    };
    let (thread, mut replies) =
        spawn_with(listener, stop.clone(), inbound.clone(), 64, limits, None).unwrap();
    // The exchange's engine thread, in small: packets into the gateway,
    // its replies (an empty one stands for a close) back to the port.
    let done = Arc::new(AtomicBool::new(false));
    let engine = {
        let (inbound, done) = (inbound.clone(), done.clone());
        std::thread::spawn(move || {
            let contracts =
                ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"))
                    .unwrap();
            let mut gw = Gateway::new(
                &GatewayConfig::default(),
                &demo_sessions(),
                &contracts,
                *b"TOKEX00001",
            );
            let mut engine = Engine::new(&contracts, EngineConfig { max_orders: 1024 });
            let mut md: Vec<Event> = Vec::new();
            let mut t = 1_000_000_000u64;
            while !done.load(Ordering::Relaxed) {
                let Some((id, host, bytes)) = inbound.pop() else {
                    std::thread::sleep(Duration::from_millis(1));
                    continue;
                };
                t += 1_000;
                let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
                gw.set_tcp_host(id, host);
                gw.on_datagram(
                    Nanos(t),
                    Peer::Tcp(id),
                    &bytes,
                    &mut engine,
                    &mut md,
                    &mut (),
                    &mut out,
                );
                for (peer, reply) in out {
                    if let Peer::Tcp(id) = peer {
                        replies.push((id, reply));
                    }
                }
                replies.wake();
            }
            replies
        })
    };

    let mut first = TcpStream::connect(addr).unwrap();
    first.write_all(&login("demo01")).unwrap();
    let mut logout = [0u8; 8];
    let n = soupbin::write_empty(&mut logout, soupbin::kind::LOGOUT_REQUEST).unwrap();
    first.write_all(&logout[..n]).unwrap();
    let (got, closed) = read_until_closed(&mut first, Duration::from_secs(3));
    assert!(
        closed,
        "the connection stayed open after the Logout Request"
    );
    // The Login Accepted queued before the logout was written first.
    let answers: Vec<_> = soupbin::packets(&got).map(|p| p.unwrap()).collect();
    assert!(
        matches!(answers.as_slice(), [Packet::LoginAccepted(_)]),
        "{answers:?}"
    );

    // The host's one slot is free again: a new connection is served.
    let mut second = TcpStream::connect(addr).unwrap();
    second.write_all(&login("demo01")).unwrap();
    second
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let mut b = [0u8; 64];
    let n = second
        .read(&mut b)
        .expect("the second connection is answered");
    assert!(
        matches!(Packet::parse(&b[..n]), Ok((Packet::LoginAccepted(_), _))),
        "{:?}",
        &b[..n]
    );

    done.store(true, Ordering::Relaxed);
    let mut replies = engine.join().unwrap();
    stop.set();
    replies.wake_now();
    thread.join().unwrap();
}
