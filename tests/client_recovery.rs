//! The client library's recovery of the session itself, against the gateway
//! and the engine in memory: a client that logs out and logs in again
//! receives every sequenced message sent to its session meanwhile.

use std::net::SocketAddrV4;
use std::path::Path;

use tokex::client::{ClientEvent, ClientSession};
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Gateway, Peer};
use tokex::types::{Nanos, Price, Qty, Side, Symbol, Tif};

const MS: u64 = 1_000_000;

struct Exchange {
    gw: Gateway,
    engine: Engine,
    md: Vec<Event>,
    now: u64,
}

struct Client {
    session: ClientSession,
    peer: Peer,
    events: Vec<ClientEvent>,
}

impl Exchange {
    fn new() -> Exchange {
        let set = ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"))
            .unwrap();
        Exchange {
            gw: Gateway::new(
                &GatewayConfig::default(),
                &demo_sessions(),
                &set,
                *b"TOKEX00001",
            ),
            engine: Engine::new(
                &set,
                EngineConfig {
                    max_orders: 1 << 10,
                },
            ),
            md: Vec::new(),
            now: 1_000 * MS,
        }
    }

    /// `n` milliseconds of a lossless link.
    fn run(&mut self, clients: &mut [&mut Client], n: usize) {
        for _ in 0..n {
            self.step(clients, None);
        }
    }

    /// One millisecond; every datagram to and from `cut` is lost.
    fn step(&mut self, clients: &mut [&mut Client], cut: Option<Peer>) {
        self.now += MS;
        let now = self.now;
        let mut replies: Vec<(Peer, Vec<u8>)> = Vec::new();
        self.gw.on_timer(Nanos(now), &mut (), &mut replies);
        let mut buf = [0u8; 1400];
        for c in clients.iter_mut() {
            if c.session.poll_timeout().is_some_and(|t| t <= now) {
                c.session.on_timer(now);
            }
            while let Some(n) = c.session.poll_transmit(now, &mut buf) {
                if Some(c.peer) != cut {
                    self.gw.on_datagram(
                        Nanos(now),
                        c.peer,
                        &buf[..n],
                        &mut self.engine,
                        &mut self.md,
                        &mut (),
                        &mut replies,
                    );
                }
            }
        }
        for (peer, bytes) in replies {
            if Some(peer) == cut {
                continue;
            }
            if let Some(c) = clients.iter_mut().find(|c| c.peer == peer) {
                let events = &mut c.events;
                c.session.on_datagram(now, &bytes, &mut |e| events.push(e));
            }
        }
    }
}

fn client(user: &str, port: u16) -> Client {
    Client {
        session: ClientSession::new(user, user, "R", 20 * MS),
        peer: Peer::Udp(SocketAddrV4::new([198, 18, 0, 2].into(), port)),
        events: Vec::new(),
    }
}

fn tk() -> Symbol {
    Symbol::new("TK2612").unwrap()
}

fn executed(c: &Client) -> bool {
    c.events
        .iter()
        .any(|e| matches!(e, ClientEvent::Executed { .. }))
}

#[test]
fn a_fill_while_logged_out_reaches_the_client_after_it_logs_in_again() {
    let mut x = Exchange::new();
    let mut a = client("demo01", 1);
    let mut b = client("demo02", 2);
    a.session.login(x.now);
    b.session.login(x.now);
    x.run(&mut [&mut a, &mut b], 5);
    let px: Price = "6.500".parse().unwrap();
    a.session
        .enter(x.now, tk(), Side::Sell, Qty::new(2), px, Tif::Day);
    x.run(&mut [&mut a, &mut b], 5);
    a.session.logout(x.now);
    x.run(&mut [&mut a, &mut b], 5);
    b.session
        .enter(x.now, tk(), Side::Buy, Qty::new(2), px, Tif::Day);
    x.run(&mut [&mut a, &mut b], 5);
    assert!(executed(&b));
    assert!(!executed(&a), "A is logged out when its order trades");
    a.session.login(x.now);
    x.run(&mut [&mut a, &mut b], 100);
    assert!(a.session.is_logged_in());
    assert_eq!(a.session.stats().unrecoverable, 0);
    assert_eq!(
        a.session.next_sequence(),
        x.gw.next_sequence("demo01").unwrap(),
        "the client's numbering reached the exchange's"
    );
    assert!(
        executed(&a),
        "the maker learns of its fill: delivered {} sequenced, events {:?}",
        a.session.stats().sequenced,
        a.events
    );
}
