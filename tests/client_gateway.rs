//! The client library against the gateway and the engine, in memory, over a
//! lossy link (every Nth datagram dropped in each direction): every order is
//! answered exactly once, executions reach both sides, the engine never sees
//! an order twice, and the journal of the day rebuilds the same state.

use std::collections::{HashMap, HashSet};

mod common_client;

use common_client::{contracts, Client, Exchange, MS, SESSION};
use tokex::client::ClientEvent;
use tokex::config::{demo_sessions, GatewayConfig};
use tokex::engine::{Engine, EngineConfig, Event};
use tokex::gateway::{Drop, Gateway, JournalSink, Peer};
use tokex::types::{InstrumentId, Nanos, Price, Qty, Side, Symbol, Tif};
use tokex::wire::ouch::Token;

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

/// A client and the orders it entered and believes live.
struct Trader {
    client: Client,
    entered: Vec<Token>,
    live: Vec<Token>,
    /// Events of `client` already applied to `live`.
    seen: usize,
}

impl AsMut<Client> for Trader {
    fn as_mut(&mut self) -> &mut Client {
        &mut self.client
    }
}

impl Trader {
    /// Brings `live` up to the client's events.
    fn track(&mut self) {
        for e in &self.client.events[self.seen..] {
            match *e {
                ClientEvent::Accepted {
                    token,
                    tif: Tif::Day,
                    ..
                } => self.live.push(token),
                ClientEvent::Replaced {
                    token, previous, ..
                } => {
                    self.live.retain(|t| *t != previous);
                    self.live.push(token);
                }
                ClientEvent::Canceled { token, .. } => self.live.retain(|t| *t != token),
                _ => {}
            }
        }
        self.seen = self.client.events.len();
    }
}

struct Day {
    x: Exchange,
    journal: Journal,
    clients: Vec<Trader>,
    up: Lossy,
    down: Lossy,
}

impl Day {
    fn new(n_clients: usize, drop_up: u64, drop_down: u64) -> Day {
        let cfg = GatewayConfig {
            heartbeat_ms: 50,
            ..GatewayConfig::default()
        };
        let clients = (0..n_clients)
            .map(|i| Trader {
                client: Client::new(
                    &format!("demo{:02}", i + 1),
                    &format!("C{i}"),
                    40_000 + i as u16,
                ),
                entered: Vec::new(),
                live: Vec::new(),
                seen: 0,
            })
            .collect();
        Day {
            x: Exchange::new(&cfg, 1 << 14),
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
        }
    }

    /// One millisecond over the lossy link.
    fn step(&mut self) {
        let (up, down) = (&mut self.up, &mut self.down);
        self.x.step(
            &mut self.clients,
            &mut self.journal,
            |_| up.pass(),
            |_| down.pass(),
        );
        for t in &mut self.clients {
            t.track();
        }
    }

    fn run_until_quiet(&mut self, max_steps: usize) {
        for _ in 0..max_steps {
            self.step();
            if self.quiet() {
                // A little longer, for heartbeat-revealed tail losses.
                for _ in 0..200 {
                    self.step();
                }
                if self.quiet() {
                    return;
                }
            }
        }
        panic!("requests still unanswered after {max_steps} ms");
    }

    fn quiet(&self) -> bool {
        self.clients
            .iter()
            .all(|t| t.client.session.outstanding() == 0)
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
        c.client.session.login(day.x.now);
    }
    day.run_until_quiet(5_000);
    assert!(day.clients.iter().all(|c| c.client.session.is_logged_in()));
    let mut rng = Rng(seed);
    for i in 0..orders {
        let k = rng.below(day.clients.len() as u64) as usize;
        let now = day.x.now;
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
            let t = c.client.session.enter(
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
            c.client.session.cancel(now, t, Qty::ZERO);
        } else {
            let t = c.live.swap_remove(rng.below(c.live.len() as u64) as usize);
            c.client.session.replace(
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
        for e in &c.client.events {
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
        let s = c.client.session.stats();
        let user = format!("demo{:02}", i + 1);
        assert_eq!(
            s.sequenced + 1,
            day.x.gw.next_sequence(&user).unwrap(),
            "client {i} delivered every message of its stream once"
        );
        assert_eq!(s.unrecoverable, 0);
    }
    // No order twice in the engine: every Accepted tag is new.
    let mut tags = HashSet::new();
    let mut accepted = 0;
    for e in &day.x.md {
        if let Event::Accepted { tag, .. } = e {
            assert!(tags.insert(*tag), "order entered twice");
            accepted += 1;
        }
    }
    let client_accepted: usize = day
        .clients
        .iter()
        .map(|c| {
            c.client
                .events
                .iter()
                .filter(|e| matches!(e, ClientEvent::Accepted { .. }))
                .count()
        })
        .sum();
    assert_eq!(accepted, client_accepted);
    // Executions reach both sides.
    let mut fills = 0;
    for e in &day.x.md {
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
                    c.client.events.iter().any(|e| matches!(e,
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
    assert_eq!(day.x.gw.counters().dropped(Drop::Resent), 0);
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
        .map(|c| c.client.session.stats().recoveries)
        .sum();
    let resent: u64 = day
        .clients
        .iter()
        .map(|c| c.client.session.stats().resent)
        .sum();
    assert!(recovered > 0 && resent > 0);
    assert!(day.x.gw.counters().dropped(Drop::Resent) > 0);
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
    assert_eq!(md, day.x.md, "the same engine events, in order");
    for i in 0..3 {
        let user = format!("demo{:02}", i + 1);
        assert_eq!(gw.next_sequence(&user), day.x.gw.next_sequence(&user));
    }
    let book = |e: &Engine| -> Vec<_> {
        [Side::Buy, Side::Sell]
            .into_iter()
            .flat_map(|s| e.resting(InstrumentId(0), s).collect::<Vec<_>>())
            .collect()
    };
    assert_eq!(book(&engine), book(&day.x.engine));
    assert_eq!(gw.counters().orders, day.x.gw.counters().orders);
    // The outbound stores were regenerated byte for byte: ask both
    // gateways for each session's whole stream.
    for c in &day.clients {
        let mut req = [0u8; 64];
        let name = format!(
            "demo{:02}",
            1 + day
                .clients
                .iter()
                .position(|x| x.client.peer == c.client.peer)
                .unwrap()
        );
        let n = tokex::wire::soupbin::write_login_request(
            &mut req,
            name.as_bytes(),
            name.as_bytes(),
            b"",
            1,
        )
        .unwrap();
        let now = Nanos(day.x.now + MS);
        let mut a: Vec<(Peer, Vec<u8>)> = Vec::new();
        let mut b: Vec<(Peer, Vec<u8>)> = Vec::new();
        let mut md2: Vec<Event> = Vec::new();
        gw.on_datagram(
            now,
            c.client.peer,
            &req[..n],
            &mut engine,
            &mut md2,
            &mut (),
            &mut a,
        );
        day.x.gw.on_datagram(
            now,
            c.client.peer,
            &req[..n],
            &mut day.x.engine,
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
