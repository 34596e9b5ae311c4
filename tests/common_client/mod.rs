//! The in-memory exchange the client tests drive: the gateway and the
//! engine of one day, stepped a millisecond at a time, with the datagrams
//! between them and the clients' sessions handed over by hand (each way
//! through a filter that may lose them). Not used by the lab tests.

#![allow(dead_code)] // each test file uses a different subset

use std::net::SocketAddrV4;
use std::path::Path;

use tokex::client::{ClientEvent, ClientSession};
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Gateway, JournalSink, Peer};
use tokex::types::Nanos;

pub const SESSION: [u8; 10] = *b"TOKEX00001";
pub const MS: u64 = 1_000_000;

pub fn contracts() -> ContractSet {
    ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap()
}

/// A client session, the address the gateway sees it at, and every event
/// it reported.
pub struct Client {
    pub session: ClientSession,
    pub peer: Peer,
    pub events: Vec<ClientEvent>,
}

impl Client {
    /// `user` (its password the same) with token prefix `prefix`, at UDP
    /// port `port` of the client address.
    pub fn new(user: &str, prefix: &str, port: u16) -> Client {
        Client {
            session: ClientSession::new(user, user, prefix, 20 * MS),
            peer: Peer::Udp(SocketAddrV4::new([198, 18, 0, 2].into(), port)),
            events: Vec::new(),
        }
    }
}

impl AsMut<Client> for Client {
    fn as_mut(&mut self) -> &mut Client {
        self
    }
}

pub struct Exchange {
    pub gw: Gateway,
    pub engine: Engine,
    pub md: Vec<Event>,
    pub now: u64,
}

impl Exchange {
    pub fn new(cfg: &GatewayConfig, max_orders: u32) -> Exchange {
        let set = contracts();
        Exchange {
            gw: Gateway::new(cfg, &demo_sessions(), &set, SESSION),
            engine: Engine::new(&set, EngineConfig { max_orders }),
            md: Vec::new(),
            now: 1_000 * MS,
        }
    }

    /// `n` milliseconds of a lossless link, nothing journaled.
    pub fn run(&mut self, clients: &mut [impl AsMut<Client>], n: usize) {
        for _ in 0..n {
            self.step(clients, &mut (), |_| true, |_| true);
        }
    }

    /// One millisecond: the gateway's and the clients' timers, the clients'
    /// datagrams up (those `up` lets through, asked with the sender), the
    /// replies down (those `down` lets through, asked with the addressee).
    pub fn step(
        &mut self,
        clients: &mut [impl AsMut<Client>],
        journal: &mut impl JournalSink,
        mut up: impl FnMut(Peer) -> bool,
        mut down: impl FnMut(Peer) -> bool,
    ) {
        self.now += MS;
        let now = self.now;
        let mut replies: Vec<(Peer, Vec<u8>)> = Vec::new();
        self.gw.on_timer(Nanos(now), journal, &mut replies);
        let mut buf = [0u8; 1400];
        for c in clients.iter_mut() {
            let c = c.as_mut();
            if c.session.poll_timeout().is_some_and(|t| t <= now) {
                let events = &mut c.events;
                c.session.on_timer_with(now, &mut |e| events.push(e));
            }
            while let Some(n) = c.session.poll_transmit(now, &mut buf) {
                if up(c.peer) {
                    self.gw.on_datagram(
                        Nanos(now),
                        c.peer,
                        &buf[..n],
                        &mut self.engine,
                        &mut self.md,
                        journal,
                        &mut replies,
                    );
                }
            }
        }
        for (peer, bytes) in replies {
            if !down(peer) {
                continue;
            }
            let c = clients
                .iter_mut()
                .map(AsMut::as_mut)
                .find(|c| c.peer == peer)
                .expect("the gateway answers only its clients");
            let events = &mut c.events;
            c.session.on_datagram(now, &bytes, &mut |e| events.push(e));
        }
    }
}
