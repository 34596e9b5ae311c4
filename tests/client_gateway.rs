//! The client library against the gateway and the engine, in memory, over a
//! lossy link (every Nth datagram dropped in each direction): every order is
//! answered exactly once, executions reach both sides, the engine never sees
//! an order twice, and the journal of the day rebuilds the same state.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddrV4;
use std::path::Path;

use tokex::client::{ClientEvent, ClientSession};
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Drop, Gateway, JournalSink, Peer};
use tokex::types::{InstrumentId, Nanos, Price, Qty, Side, Symbol, Tif};
use tokex::wire::ouch::Token;

const SESSION: [u8; 10] = *b"TOKEX00001";
const MS: u64 = 1_000_000;

#[derive(Default)]
struct Journal(Vec<(u8, Nanos, Vec<u8>)>);

impl JournalSink for Journal {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        self.0.push((kind, now, payload.to_vec()));
    }
}

/// Drops every `n`th datagram (0: none).
struct Lossy {
    n: u64,
    seen: u64,
    dropped: u64,
}

impl Lossy {
    fn pass(&mut self) -> bool {
        self.seen += 1;
        if self.n > 0 && self.seen.is_multiple_of(self.n) {
            self.dropped += 1;
            false
        } else {
            true
        }
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn contracts() -> ContractSet {
    ContractSet::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap()
}

struct Client {
    session: ClientSession,
    peer: Peer,
    events: Vec<ClientEvent>,
    entered: Vec<Token>,
    live: Vec<Token>,
}

struct Day {
    gw: Gateway,
    engine: Engine,
    md: Vec<Event>,
    journal: Journal,
    clients: Vec<Client>,
    up: Lossy,
    down: Lossy,
    now: u64,
}

impl Day {
    fn new(n_clients: usize, drop_up: u64, drop_down: u64) -> Day {
        let set = contracts();
        let cfg = GatewayConfig {
            heartbeat_ms: 50,
            ..GatewayConfig::default()
        };
        let clients = (0..n_clients)
            .map(|i| {
                let user = format!("demo{:02}", i + 1);
                Client {
                    session: ClientSession::new(&user, &user, &format!("C{i}"), 20 * MS),
                    peer: Peer::Udp(SocketAddrV4::new([198, 18, 0, 2].into(), 40_000 + i as u16)),
                    events: Vec::new(),
                    entered: Vec::new(),
                    live: Vec::new(),
                }
            })
            .collect();
        Day {
            gw: Gateway::new(&cfg, &demo_sessions(), &set, SESSION),
            engine: Engine::new(
                &set,
                EngineConfig {
                    max_orders: 1 << 14,
                },
            ),
            md: Vec::new(),
            journal: Journal::default(),
            clients,
            up: Lossy {
                n: drop_up,
                seen: 0,
                dropped: 0,
            },
            down: Lossy {
                n: drop_down,
                seen: 0,
                dropped: 0,
            },
            now: 1_000 * MS,
        }
    }

    /// One millisecond: timers, client datagrams up, replies down.
    fn step(&mut self) {
        self.now += MS;
        let now = self.now;
        let mut replies: Vec<(Peer, Vec<u8>)> = Vec::new();
        self.gw
            .on_timer(Nanos(now), &mut self.journal, &mut replies);
        let mut buf = [0u8; 1400];
        for c in &mut self.clients {
            if c.session.poll_timeout().is_some_and(|t| t <= now) {
                c.session.on_timer(now);
            }
            while let Some(n) = c.session.poll_transmit(now, &mut buf) {
                if self.up.pass() {
                    self.gw.on_datagram(
                        Nanos(now),
                        c.peer,
                        &buf[..n],
                        &mut self.engine,
                        &mut self.md,
                        &mut self.journal,
                        &mut replies,
                    );
                }
            }
        }
        for (peer, bytes) in replies {
            if !self.down.pass() {
                continue;
            }
            let c = self.clients.iter_mut().find(|c| c.peer == peer).unwrap();
            let events = &mut c.events;
            let live = &mut c.live;
            c.session.on_datagram(now, &bytes, &mut |e| {
                match e {
                    ClientEvent::Accepted {
                        token,
                        tif: Tif::Day,
                        ..
                    } => live.push(token),
                    ClientEvent::Replaced {
                        token, previous, ..
                    } => {
                        live.retain(|t| *t != previous);
                        live.push(token);
                    }
                    ClientEvent::Canceled { token, .. } => live.retain(|t| *t != token),
                    _ => {}
                }
                events.push(e)
            });
        }
    }

    fn run_until_quiet(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            self.step();
            if self.clients.iter().all(|c| c.session.outstanding() == 0) {
                // A little longer, for heartbeat-revealed tail losses.
                for _ in 0..200 {
                    self.step();
                }
                if self.clients.iter().all(|c| c.session.outstanding() == 0) {
                    return;
                }
            }
        }
        panic!("requests still unanswered after {max_steps} ms");
    }
}

fn tk() -> Symbol {
    Symbol::new("TK2612").unwrap()
}

fn price(ticks_from_ref: i64) -> Price {
    Price::from_raw((65_000 + ticks_from_ref * 10) as u32)
}

fn play(day: &mut Day, orders: usize, seed: u64) {
    for c in &mut day.clients {
        c.session.login(day.now);
    }
    day.run_until_quiet(5_000);
    assert!(day.clients.iter().all(|c| c.session.is_logged_in()));
    let mut rng = Rng(seed);
    for i in 0..orders {
        let k = rng.below(day.clients.len() as u64) as usize;
        let now = day.now;
        let c = &mut day.clients[k];
        let action = rng.below(10);
        if action < 7 || c.live.is_empty() {
            let side = if rng.below(2) == 0 {
                Side::Buy
            } else {
                Side::Sell
            };
            let tif = if rng.below(5) == 0 {
                Tif::Ioc
            } else {
                Tif::Day
            };
            let t = c.session.enter(
                now,
                tk(),
                side,
                Qty::new(1 + rng.below(5) as u32),
                price(rng.below(7) as i64 - 3),
                tif,
            );
            c.entered.push(t);
        } else if action < 9 {
            let t = c.live.swap_remove(rng.below(c.live.len() as u64) as usize);
            c.session.cancel(now, t, Qty::ZERO);
        } else {
            let t = c.live.swap_remove(rng.below(c.live.len() as u64) as usize);
            c.session.replace(
                now,
                t,
                Qty::new(1 + rng.below(5) as u32),
                price(rng.below(7) as i64 - 3),
            );
        }
        // A few orders per millisecond.
        if i % 3 == 2 {
            day.step();
        }
    }
    day.run_until_quiet(20_000);
}

fn check(day: &Day) {
    // Every Enter answered exactly once (Accepted, or Rejected answering it).
    for (i, c) in day.clients.iter().enumerate() {
        let mut answers: HashMap<Token, u32> = HashMap::new();
        for e in &c.events {
            match *e {
                ClientEvent::Accepted { token, .. } => *answers.entry(token).or_default() += 1,
                ClientEvent::Rejected {
                    token,
                    request: b'O',
                    ..
                } => *answers.entry(token).or_default() += 1,
                _ => {}
            }
        }
        for t in &c.entered {
            assert_eq!(
                answers.get(t).copied(),
                Some(1),
                "client {i}: order {} answered {:?} times",
                String::from_utf8_lossy(t),
                answers.get(t)
            );
        }
        // Every sequenced message delivered exactly once, in order.
        let s = c.session.stats();
        let user = format!("demo{:02}", i + 1);
        assert_eq!(
            s.sequenced + 1,
            day.gw.next_sequence(&user).unwrap(),
            "client {i} delivered every message of its stream once"
        );
        assert_eq!(s.unrecoverable, 0);
    }
    // No order twice in the engine: every Accepted tag is new.
    let mut tags = HashSet::new();
    let mut accepted = 0;
    for e in &day.md {
        if let Event::Accepted { tag, .. } = e {
            assert!(tags.insert(*tag), "order entered twice");
            accepted += 1;
        }
    }
    let client_accepted: usize = day
        .clients
        .iter()
        .map(|c| {
            c.events
                .iter()
                .filter(|e| matches!(e, ClientEvent::Accepted { .. }))
                .count()
        })
        .sum();
    assert_eq!(accepted, client_accepted);
    // Executions reach both sides.
    let mut fills = 0;
    for e in &day.md {
        if let Event::Executed {
            match_number,
            taker,
            maker,
            ..
        } = *e
        {
            fills += 1;
            for p in [taker, maker] {
                let c = &day.clients[p.account.0 as usize];
                assert!(
                    c.events.iter().any(|e| matches!(e,
                        ClientEvent::Executed { match_number: m, .. } if *m == match_number)),
                    "match {match_number} reached account {}",
                    p.account.0
                );
            }
        }
    }
    assert!(fills > 10, "the flow trades ({fills} fills)");
}

#[test]
fn a_lossless_day_answers_every_order_once() {
    let mut day = Day::new(3, 0, 0);
    play(&mut day, 600, 0x9E37_79B9_7F4A_7C15);
    check(&day);
    assert_eq!(day.gw.counters().dropped(Drop::Resent), 0);
}

#[test]
fn a_lossy_link_still_answers_every_order_exactly_once() {
    let mut day = Day::new(4, 7, 5);
    play(&mut day, 1_500, 0x2545_F491_4F6C_DD1D);
    check(&day);
    assert!(day.up.dropped > 50 && day.down.dropped > 50);
    let recovered: u64 = day
        .clients
        .iter()
        .map(|c| c.session.stats().recoveries)
        .sum();
    let resent: u64 = day.clients.iter().map(|c| c.session.stats().resent).sum();
    assert!(recovered > 0 && resent > 0);
    assert!(day.gw.counters().dropped(Drop::Resent) > 0);
}

#[test]
fn replaying_the_journal_of_a_lossy_day_rebuilds_the_same_state() {
    let mut day = Day::new(3, 6, 4);
    play(&mut day, 800, 0xDEAD_BEEF_CAFE_F00D);
    let set = contracts();
    let cfg = GatewayConfig {
        heartbeat_ms: 50,
        ..GatewayConfig::default()
    };
    let mut gw = Gateway::new(&cfg, &demo_sessions(), &set, SESSION);
    let mut engine = Engine::new(
        &set,
        EngineConfig {
            max_orders: 1 << 14,
        },
    );
    let mut md: Vec<Event> = Vec::new();
    for (kind, now, payload) in &day.journal.0 {
        gw.replay(*kind, *now, payload, &mut engine, &mut md);
    }
    assert_eq!(md, day.md, "the same engine events, in order");
    for i in 0..3 {
        let user = format!("demo{:02}", i + 1);
        assert_eq!(gw.next_sequence(&user), day.gw.next_sequence(&user));
    }
    let book = |e: &Engine| -> Vec<_> {
        [Side::Buy, Side::Sell]
            .into_iter()
            .flat_map(|s| e.resting(InstrumentId(0), s).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(book(&engine), book(&day.engine));
    assert_eq!(gw.counters().orders, day.gw.counters().orders);
    // The outbound stores were regenerated byte for byte: ask both
    // gateways for each session's whole stream.
    for c in &day.clients {
        let mut req = [0u8; 64];
        let name = format!(
            "demo{:02}",
            1 + day.clients.iter().position(|x| x.peer == c.peer).unwrap()
        );
        let n = tokex::wire::soupbin::write_login_request(
            &mut req,
            name.as_bytes(),
            name.as_bytes(),
            b"",
            1,
        )
        .unwrap();
        let now = Nanos(day.now + MS);
        let mut a: Vec<(Peer, Vec<u8>)> = Vec::new();
        let mut b: Vec<(Peer, Vec<u8>)> = Vec::new();
        let mut md2: Vec<Event> = Vec::new();
        gw.on_datagram(
            now,
            c.peer,
            &req[..n],
            &mut engine,
            &mut md2,
            &mut (),
            &mut a,
        );
        day.gw.on_datagram(
            now,
            c.peer,
            &req[..n],
            &mut day.engine,
            &mut md2,
            &mut (),
            &mut b,
        );
        assert!(
            a.len() > 1,
            "the session is bound again after replay and has a stream"
        );
        assert_eq!(a, b, "{name}: the same sequenced stream after replay");
    }
}
