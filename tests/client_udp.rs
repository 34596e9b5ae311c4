//! `UdpClient` over loopback against a gateway served from the test thread:
//! login, an order that rests, one that trades with it, both answered.
//! Bounded in count and time; loopback only.

use std::net::{SocketAddr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use tokex::client::{ClientEvent, ClientSession, UdpClient};
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Gateway, Peer};
use tokex::types::{Nanos, Qty, Side, Symbol, Tif};

#[test]
fn a_udp_client_logs_in_trades_and_hears_both_sides() {
    let set =
        ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap();
    let mut gw = Gateway::new(
        &GatewayConfig::default(),
        &demo_sessions(),
        &set,
        *b"TOKEX00001",
    );
    let mut engine = Engine::new(&set, EngineConfig { max_orders: 1024 });
    let mut md: Vec<Event> = Vec::new();
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let SocketAddr::V4(addr) = server.local_addr().unwrap() else {
        unreachable!()
    };
    let addr = SocketAddrV4::new(*addr.ip(), addr.port());

    let t0 = Instant::now();
    let now = || t0.elapsed().as_nanos() as u64;
    let mut a = UdpClient::new(
        ClientSession::new("demo01", "demo01", "A", 50_000_000),
        addr,
    )
    .unwrap();
    let mut b = UdpClient::new(
        ClientSession::new("demo02", "demo02", "B", 50_000_000),
        addr,
    )
    .unwrap();
    a.session.login(now());
    b.session.login(now());
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    let mut rx = [0u8; 2048];
    let mut entered = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let t = now();
        a.drive(t, &mut |e| ea.push(e)).unwrap();
        b.drive(t, &mut |e| eb.push(e)).unwrap();
        let mut replies: Vec<(Peer, Vec<u8>)> = Vec::new();
        while let Ok((n, SocketAddr::V4(src))) = server.recv_from(&mut rx) {
            gw.on_datagram(
                Nanos(t),
                Peer::Udp(src),
                &rx[..n],
                &mut engine,
                &mut md,
                &mut (),
                &mut replies,
            );
        }
        for (p, bytes) in replies {
            if let Peer::Udp(to) = p {
                server.send_to(&bytes, to).unwrap();
            }
        }
        if !entered && a.session.is_logged_in() && b.session.is_logged_in() {
            entered = true;
            let tk = Symbol::new("TK2612").unwrap();
            let px = "6.500".parse().unwrap();
            a.session
                .enter(now(), tk, Side::Sell, Qty::new(2), px, Tif::Day);
            b.session
                .enter(now(), tk, Side::Buy, Qty::new(2), px, Tif::Ioc);
        }
        let executed =
            |v: &Vec<ClientEvent>| v.iter().any(|e| matches!(e, ClientEvent::Executed { .. }));
        if executed(&ea)
            && executed(&eb)
            && a.session.outstanding() == 0
            && b.session.outstanding() == 0
        {
            break;
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert!(matches!(ea[0], ClientEvent::LoggedIn { .. }), "{ea:?}");
    assert!(
        ea.iter().any(
            |e| matches!(e, ClientEvent::Executed { qty, liquidity: b'A', .. } if qty.lots() == 2)
        ),
        "{ea:?}"
    );
    assert!(
        eb.iter().any(
            |e| matches!(e, ClientEvent::Executed { qty, liquidity: b'R', .. } if qty.lots() == 2)
        ),
        "{eb:?}"
    );
}
