//! Session rules, one test each.

use super::*;
use crate::config::{demo_sessions, GatewayConfig};
use crate::engine::{Engine, EngineConfig, Event, Phase};
use crate::types::{Price, Qty, Side, Tif};
use crate::wire::ouch;
use zerocopy::IntoBytes;

const SESSION: [u8; 10] = *b"TOKEX00001";

/// A DAY order for TK2612.
fn day_order(token: &str, side: Side, qty: u32, price: &str) -> ouch::EnterOrder {
    ouch::EnterOrder::new(
        ouch::token(token.as_bytes()).unwrap(),
        side,
        Qty::new(qty),
        Symbol::new("TK2612").unwrap(),
        price.parse::<Price>().unwrap(),
        Tif::Day,
    )
}

fn peer(port: u16) -> Peer {
    Peer::Udp(SocketAddrV4::new([198, 18, 0, 2].into(), port))
}

struct Rig {
    gw: Gateway,
    engine: Engine,
    md: Vec<Event>,
    journal: Vec<(u8, Nanos, Vec<u8>)>,
    out: Vec<(Peer, Vec<u8>)>,
    now: u64,
}

impl JournalSink for Vec<(u8, Nanos, Vec<u8>)> {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        self.push((kind, now, payload.to_vec()));
    }
}

impl Rig {
    fn new(cfg: GatewayConfig) -> Rig {
        let set = ContractSet::shipped();
        Rig {
            gw: Gateway::new(&cfg, &demo_sessions(), &set, SESSION),
            engine: Engine::new(&set, EngineConfig { max_orders: 1024 }),
            md: Vec::new(),
            journal: Vec::new(),
            out: Vec::new(),
            now: 1_000_000_000,
        }
    }

    fn send(&mut self, from: Peer, bytes: &[u8]) {
        self.now += 1000;
        self.out.clear();
        self.gw.on_datagram(
            Nanos(self.now),
            from,
            bytes,
            &mut self.engine,
            &mut self.md,
            &mut self.journal,
            &mut self.out,
        );
    }

    fn login(&mut self, from: Peer, user: &str, pass: &str, seq: u64) {
        let mut b = [0u8; 64];
        let n = soupbin::write_login_request(&mut b, user.as_bytes(), pass.as_bytes(), b"", seq)
            .unwrap();
        self.send(from, &b[..n]);
    }

    fn unseq(&mut self, from: Peer, msg: &[u8]) {
        let mut b = [0u8; 128];
        let n = soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, msg).unwrap();
        self.send(from, &b[..n]);
    }

    fn enter(&mut self, from: Peer, token: &str, side: Side, qty: u32, price: &str) {
        let m = day_order(token, side, qty, price);
        self.unseq(from, m.as_bytes());
    }

    /// A rig whose sessions may send one message a second in bursts of
    /// `burst`, demo01 logged in from `from` a second ago (its login took
    /// a token: the bucket is full again).
    fn logged_in_at_one_a_second(from: Peer, burst: u32) -> Rig {
        let mut r = Rig::new(GatewayConfig {
            rate_per_sec: 1,
            rate_burst: burst,
            ..GatewayConfig::default()
        });
        r.login(from, "demo01", "demo01", 0);
        r.now += 1_000_000_000;
        r
    }

    /// A buy of `qty` at 6.400 with Firm `FIRM` and Capacity `P`.
    fn enter_as_firm(&mut self, from: Peer, token: &str, qty: u32) {
        let mut m = day_order(token, Side::Buy, qty, "6.400");
        m.firm = *b"FIRM";
        m.capacity = b'P';
        self.unseq(from, m.as_bytes());
    }

    /// The OUCH messages sent to `to` in the last call: (type byte, token).
    fn replies(&self, to: Peer) -> Vec<(u8, String)> {
        self.out
            .iter()
            .filter(|(p, _)| *p == to)
            .flat_map(|(_, b)| soupbin::packets(b))
            .filter_map(|p| match p {
                Ok(Packet::SequencedData(m)) => {
                    let tok = match ouch::Outbound::parse(m).unwrap() {
                        ouch::Outbound::Accepted(a) => a.token().to_vec(),
                        ouch::Outbound::Rejected(r) => r.token().to_vec(),
                        ouch::Outbound::Canceled(c) => c.token().to_vec(),
                        ouch::Outbound::Executed(e) => e.token().to_vec(),
                        ouch::Outbound::Replaced(r) => r.replacement_token().to_vec(),
                        _ => Vec::new(),
                    };
                    Some((m[0], String::from_utf8(tok).unwrap()))
                }
                Ok(Packet::LoginAccepted(_)) => Some((b'+', String::new())),
                Ok(Packet::LoginRejected(c)) => Some((b'-', (c as char).to_string())),
                _ => None,
            })
            .collect()
    }
}

#[test]
fn a_login_naming_a_space_padded_session_is_accepted() {
    let mut r = Rig::new(GatewayConfig::default());
    r.gw = Gateway::new(
        &GatewayConfig::default(),
        &demo_sessions(),
        &ContractSet::shipped(),
        *b"TOKEX     ",
    );
    let mut b = [0u8; 64];
    let n = soupbin::write_login_request(&mut b, b"demo01", b"demo01", b"TOKEX", 0).unwrap();
    r.send(peer(1), &b[..n]);
    assert_eq!(r.replies(peer(1)), [(b'+', String::new())]);
}

#[test]
fn login_with_the_configured_password_is_accepted() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'+', String::new())]);
}

#[test]
fn bad_credentials_are_rejected_and_repeated_failures_back_off() {
    let mut r = Rig::new(GatewayConfig {
        login_failures_before_backoff: 2,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "wrong", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'-', "A".into())]);
    r.login(peer(1), "nobody", "demo01", 0);
    // Now in back-off: even the right password is refused unchecked.
    r.login(peer(1), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'-', "A".into())]);
    assert_eq!(r.gw.counters().drops[&Drop::BadCredentials], 2);
    assert_eq!(r.gw.counters().drops[&Drop::LoginBackoff], 1);
    // After the back-off it works.
    r.now += 2_000_000_000;
    r.login(peer(1), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'+', String::new())]);
}

#[test]
fn orders_before_login_are_dropped_and_counted() {
    let mut r = Rig::new(GatewayConfig::default());
    r.enter(peer(1), "t1", Side::Buy, 1, "6.5");
    assert!(r.out.is_empty());
    assert_eq!(r.gw.counters().drops[&Drop::NotLoggedIn], 1);
    assert_eq!(r.engine.live_orders(), 0);
}

#[test]
fn executions_are_reported_to_both_sides() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    r.enter(peer(1), "S1", Side::Sell, 5, "6.500");
    assert_eq!(r.replies(peer(1)), vec![(b'A', "S1".into())]);
    r.enter(peer(2), "B1", Side::Buy, 5, "6.500");
    assert_eq!(
        r.replies(peer(2)),
        vec![(b'A', "B1".into()), (b'E', "B1".into())]
    );
    assert_eq!(r.replies(peer(1)), vec![(b'E', "S1".into())]);
    assert!(r.md.iter().any(|e| matches!(e, Event::Executed { .. })));
}

#[test]
fn a_session_cannot_cancel_or_replace_another_sessions_order() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    r.enter(peer(1), "MINE", Side::Buy, 5, "6.400");
    r.unseq(
        peer(2),
        ouch::CancelOrder::new(ouch::token(b"MINE").unwrap(), Qty::ZERO).as_bytes(),
    );
    assert_eq!(r.replies(peer(2)), vec![(b'J', "MINE".into())]);
    assert_eq!(r.engine.live_orders(), 1);
}

#[test]
fn a_resent_enter_with_the_same_token_is_not_a_second_order() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    assert!(r.replies(peer(1)).is_empty());
    assert_eq!(r.engine.live_orders(), 1);
    assert_eq!(r.gw.counters().drops[&Drop::Resent], 1);
}

#[test]
fn replace_moves_the_order_to_the_new_token_and_retires_the_old_one() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    let t = |s: &[u8]| ouch::token(s).unwrap();
    r.unseq(
        peer(1),
        ouch::ReplaceOrder::new(t(b"T1"), t(b"T2"), Qty::new(3), "6.410".parse().unwrap())
            .as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'U', "T2".into())]);
    // The old token names nothing now; the new one cancels.
    r.unseq(
        peer(1),
        ouch::CancelOrder::new(t(b"T1"), Qty::ZERO).as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".into())]);
    r.unseq(
        peer(1),
        ouch::CancelOrder::new(t(b"T2"), Qty::ZERO).as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'C', "T2".into())]);
    // A replace onto a used token is refused.
    r.enter(peer(1), "T3", Side::Buy, 5, "6.400");
    r.unseq(
        peer(1),
        ouch::ReplaceOrder::new(t(b"T3"), t(b"T1"), Qty::new(3), "6.410".parse().unwrap())
            .as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".into())]);
}

#[test]
fn the_rate_limit_rejects_what_exceeds_the_burst() {
    let mut r = Rig::logged_in_at_one_a_second(peer(1), 3);
    for i in 0..5 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    assert_eq!(r.engine.live_orders(), 3);
    // One Flow Control reject (the reject allowance is 1% of the burst, at
    // least one), then silence: a flood cannot flood back.
    assert_eq!(r.gw.counters().dropped(Drop::RateLimited), 1);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 1);
    assert_eq!(r.gw.counters().rejected(RejectReason::RateLimited), 1);
    // Cancels over the limit are dropped without a reply.
    r.unseq(
        peer(1),
        ouch::CancelOrder::new(ouch::token(b"T0").unwrap(), Qty::ZERO).as_bytes(),
    );
    assert!(r.replies(peer(1)).is_empty());
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 2);
    // A second later the bucket has refilled by one.
    r.now += 1_000_000_000;
    r.enter(peer(1), "T9", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(1)), vec![(b'A', "T9".into())]);
}

#[test]
fn junk_and_silently_dropped_requests_of_a_logged_in_peer_cost_the_journal_nothing() {
    let mut r = Rig::logged_in_at_one_a_second(peer(1), 3);
    let logged_in = r.journal.len();
    // Bytes that are no OUCH request, however many: counted, not journaled.
    for _ in 0..100 {
        r.unseq(peer(1), &[0u8; 100]);
    }
    assert_eq!(r.gw.counters().dropped(Drop::BadMessage), 100);
    assert_eq!(r.journal.len(), logged_in);
    // Within the burst (3), one Flow Control reject: journaled. Past them,
    // silence: neither answered nor journaled.
    for i in 0..50 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    assert_eq!(r.engine.live_orders(), 3, "junk took no rate-limit token");
    assert_eq!(r.gw.counters().dropped(Drop::RateLimited), 1);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 46);
    assert_eq!(r.journal.len(), logged_in + 4);
    // Replayed, the journal reaches the same state: the dropped requests'
    // refused takes were never needed.
    let set = ContractSet::shipped();
    let cfg = GatewayConfig {
        rate_per_sec: 1,
        rate_burst: 3,
        ..GatewayConfig::default()
    };
    let mut gw = Gateway::new(&cfg, &demo_sessions(), &set, SESSION);
    let mut engine = Engine::new(&set, EngineConfig { max_orders: 1024 });
    let mut md: Vec<Event> = Vec::new();
    for (kind, now, payload) in &r.journal {
        gw.replay(*kind, *now, payload, &mut engine, &mut md);
    }
    assert_eq!(md, r.md);
    // A second later (one token back in each bucket) both answer the same
    // requests alike: the first accepted, the second refused for the rate.
    let mut replayed = Rig {
        gw,
        engine,
        md,
        journal: Vec::new(),
        out: Vec::new(),
        now: r.now,
    };
    for rig in [&mut r, &mut replayed] {
        rig.now += 1_000_000_000;
        rig.enter(peer(1), "T98", Side::Buy, 1, "6.400");
        assert_eq!(rig.replies(peer(1)), vec![(b'A', "T98".into())]);
        rig.enter(peer(1), "T99", Side::Buy, 1, "6.400");
        assert_eq!(rig.replies(peer(1)), vec![(b'J', "T99".into())]);
    }
}

#[test]
fn a_session_is_bound_to_the_address_it_logged_in_from() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(9), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.engine.live_orders(), 0);
    r.login(peer(9), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(9)), vec![(b'-', "S".into())]);
}

#[test]
fn a_login_with_a_sequence_number_replays_from_there() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    for i in 0..4 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    assert_eq!(r.gw.next_sequence("demo01"), Some(5));
    r.login(peer(1), "demo01", "demo01", 2);
    let replies = r.replies(peer(1));
    assert_eq!(replies[0].0, b'+');
    assert_eq!(
        replies[1..].iter().map(|x| x.1.clone()).collect::<Vec<_>>(),
        vec!["T1", "T2", "T3"]
    );
}

#[test]
fn malformed_and_truncated_datagrams_are_counted_not_fatal() {
    let mut r = Rig::new(GatewayConfig::default());
    r.send(peer(1), &[0xff]);
    r.send(peer(1), &[0, 40, b'L', 1, 2]);
    r.login(peer(1), "demo01", "demo01", 0);
    r.unseq(peer(1), b"O-not-an-order");
    assert_eq!(r.gw.counters().drops[&Drop::Malformed], 2);
    assert_eq!(r.gw.counters().drops[&Drop::BadMessage], 1);
}

#[test]
fn idle_sessions_get_heartbeats_then_time_out() {
    let mut r = Rig::new(GatewayConfig {
        heartbeat_ms: 10,
        idle_timeout_ms: 100,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    r.out.clear();
    r.gw.on_timer(Nanos(r.now + 20_000_000), &mut r.journal, &mut r.out);
    // A heartbeat to a UDP peer carries the next sequence number as its label.
    let hb: Vec<Vec<Packet>> = r
        .out
        .iter()
        .map(|(_, b)| soupbin::packets(b).map(Result::unwrap).collect())
        .collect();
    assert_eq!(hb.len(), 1);
    match hb[0].as_slice() {
        [Packet::Debug(label), Packet::ServerHeartbeat] => {
            assert_eq!(udp_label::parse(label), Some(1))
        }
        other => panic!("{other:?}"),
    }
    r.out.clear();
    r.gw.on_timer(Nanos(r.now + 25_000_000), &mut r.journal, &mut r.out);
    assert!(r.out.is_empty(), "no second heartbeat within the interval");
    r.gw.on_timer(Nanos(r.now + 200_000_000), &mut r.journal, &mut r.out);
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    assert_eq!(
        r.engine.live_orders(),
        0,
        "timed-out session no longer trades"
    );
}

#[test]
fn a_tcp_session_timed_out_has_its_connection_closed_a_udp_one_is_sent_nothing() {
    let mut r = Rig::new(GatewayConfig {
        heartbeat_ms: 10,
        idle_timeout_ms: 100,
        ..GatewayConfig::default()
    });
    let tcp = Peer::Tcp(1);
    r.login(tcp, "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    r.out.clear();
    r.gw.on_timer(Nanos(r.now + 200_000_000), &mut r.journal, &mut r.out);
    // Only the close, as an empty reply (the Vec outbox's stand-in for it).
    assert_eq!(r.out, vec![(tcp, Vec::new())]);
}

#[test]
fn replaying_the_journal_rebuilds_sessions_tokens_and_books() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "wrong", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    r.enter(peer(1), "S1", Side::Sell, 5, "6.500");
    r.enter(peer(2), "B1", Side::Buy, 3, "6.500");
    r.enter(peer(2), "B2", Side::Buy, 2, "6.450");
    let t = |s: &[u8]| ouch::token(s).unwrap();
    r.unseq(
        peer(2),
        ouch::ReplaceOrder::new(t(b"B2"), t(b"B3"), Qty::new(4), "6.460".parse().unwrap())
            .as_bytes(),
    );

    let set = ContractSet::shipped();
    let mut gw = Gateway::new(&GatewayConfig::default(), &demo_sessions(), &set, SESSION);
    let mut engine = Engine::new(&set, EngineConfig { max_orders: 1024 });
    let mut md: Vec<Event> = Vec::new();
    for (kind, now, payload) in &r.journal {
        gw.replay(*kind, *now, payload, &mut engine, &mut md);
    }
    assert_eq!(md, r.md, "the same engine events, in order");
    for u in ["demo01", "demo02"] {
        assert_eq!(gw.next_sequence(u), r.gw.next_sequence(u));
    }
    let book = |e: &Engine| -> Vec<_> {
        e.resting(InstrumentId(0), Side::Buy)
            .chain(e.resting(InstrumentId(0), Side::Sell))
            .collect()
    };
    assert_eq!(book(&engine), book(&r.engine));
    // Tokens used before the crash are still used.
    let mut out = Vec::new();
    let mut b = [0u8; 128];
    let m = day_order("B1", Side::Buy, 1, "6.4");
    let n = soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap();
    gw.on_datagram(
        Nanos(r.now + 1),
        peer(2),
        &b[..n],
        &mut engine,
        &mut md,
        &mut (),
        &mut out,
    );
    assert_eq!(gw.counters().rejected(RejectReason::DuplicateToken), 1);
    assert_eq!(out.len(), 1, "B1 reused for another order: rejected");
    // ... while the same Enter re-sent is recognised as already processed.
    let m = day_order("B1", Side::Buy, 3, "6.500");
    let n = soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap();
    gw.on_datagram(
        Nanos(r.now + 2),
        peer(2),
        &b[..n],
        &mut engine,
        &mut md,
        &mut (),
        &mut out,
    );
    assert_eq!(gw.counters().dropped(Drop::Resent), 1);
    assert_eq!(out.len(), 1);
}

#[test]
fn a_token_reused_for_a_different_order_is_rejected() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    r.enter(peer(1), "T1", Side::Sell, 2, "6.600");
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".into())]);
    assert_eq!(r.engine.live_orders(), 1);
    assert_eq!(r.gw.counters().rejected(RejectReason::DuplicateToken), 1);
    // Another session may use the same token: tokens are per session.
    r.login(peer(2), "demo02", "demo02", 0);
    r.enter(peer(2), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(2)), vec![(b'A', "T1".into())]);
}

#[test]
fn a_re_request_older_than_the_window_starts_at_the_oldest_kept() {
    let mut r = Rig::new(GatewayConfig {
        resend_window: 2,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    for i in 0..4 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    r.login(peer(1), "demo01", "demo01", 1);
    let accepted = r.out.iter().find_map(|(_, b)| match Packet::parse(b) {
        Ok((Packet::LoginAccepted(a), _)) => Some(a.next_sequence().unwrap()),
        _ => None,
    });
    assert_eq!(accepted, Some(3), "the Login Accepted says where it starts");
    assert_eq!(
        r.replies(peer(1))[1..]
            .iter()
            .map(|x| x.1.clone())
            .collect::<Vec<_>>(),
        vec!["T2", "T3"]
    );
    assert_eq!(r.gw.counters().dropped(Drop::ResendTooOld), 1);
}

#[test]
fn re_sent_messages_are_packed_and_labelled_with_their_first_sequence() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    for i in 0..30 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    r.login(peer(1), "demo01", "demo01", 1);
    // Login Accepted, then datagrams of at most 1400 bytes.
    let mut expected = 1;
    for (_, d) in &r.out[1..] {
        assert!(d.len() <= 1400);
        let mut packets = soupbin::packets(d).map(Result::unwrap);
        match packets.next() {
            Some(Packet::Debug(l)) => assert_eq!(udp_label::parse(l), Some(expected)),
            p => panic!("{p:?}"),
        }
        expected += packets.count() as u64;
    }
    assert!(r.out.len() > 2);
    assert_eq!(expected, 31);
}

#[test]
fn logout_ends_the_binding_and_end_of_session_reaches_everyone() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    r.send(peer(1), &[0, 1, b'O']);
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.engine.live_orders(), 0, "logged out: orders dropped");
    // The session can log in again from elsewhere now.
    r.login(peer(3), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(3)), vec![(b'+', String::new())]);
    r.out.clear();
    r.gw.end_of_session(&mut r.out);
    let mut to: Vec<Peer> = r.out.iter().map(|(p, _)| *p).collect();
    to.sort_by_key(|p| p.encode());
    assert_eq!(to, vec![peer(2), peer(3)]);
    assert!(r
        .out
        .iter()
        .all(|(_, b)| matches!(Packet::parse(b), Ok((Packet::EndOfSession, _)))));
}

#[test]
fn every_engine_reject_reason_has_an_ouch_reason_code() {
    use crate::engine::RejectReason as R;
    // Every code but tokex's two own ('F' rate limit, 'J' capacity) is
    // one OUCH 4.2 defines.
    const OUCH_4_2: &[u8] = b"THZSDCLMRXNOWabcdefghijklmn";
    for r in R::ALL {
        let code = ouch_reject_code(r);
        assert!(
            OUCH_4_2.contains(&code) || matches!(r, R::RateLimited | R::CapacityExhausted),
            "{r:?}: {}",
            code as char
        );
    }
}

#[test]
fn engine_timers_run_on_the_clock_are_journaled_and_replay_to_the_same_phases() {
    let set = ContractSet::shipped();
    let gh = set
        .iter()
        .find(|c| c.symbol.as_str() == "GH2612")
        .unwrap()
        .id;
    let day = 20_000 * crate::types::NANOS_PER_DAY;
    let at = |h: u64, m: u64| Nanos(day + (h * 60 + m) * 60 * 1_000_000_000);
    let mut r = Rig::new(GatewayConfig::default());
    // 21:50: GH is in its pre-open (21:45-21:55).
    r.gw.follow_schedules(
        at(21, 50),
        &mut r.engine,
        &mut r.md,
        &mut r.journal,
        &mut r.out,
    );
    assert!(r.gw.follows_schedules());
    assert_eq!(r.engine.phase(gh), Some(Phase::PreOpen));
    // Nothing due yet: nothing journaled.
    r.gw.on_clock(
        at(21, 54),
        &mut r.engine,
        &mut r.md,
        &mut r.journal,
        &mut r.out,
    );
    assert_eq!(r.journal.len(), 1);
    // 22:01: the call (21:55) and the open (22:00) ran on time.
    r.gw.on_clock(
        at(22, 1),
        &mut r.engine,
        &mut r.md,
        &mut r.journal,
        &mut r.out,
    );
    assert_eq!(r.engine.phase(gh), Some(Phase::Open));
    assert_eq!(
        r.journal.iter().map(|j| j.0).collect::<Vec<_>>(),
        vec![record::FOLLOW_SCHEDULES, record::CLOCK]
    );
    // Replaying the journal reaches the same phases and the same events.
    let mut replayed = Rig::new(GatewayConfig::default());
    for (kind, now, payload) in &r.journal {
        replayed
            .gw
            .replay(*kind, *now, payload, &mut replayed.engine, &mut replayed.md);
    }
    assert_eq!(replayed.engine.phase(gh), Some(Phase::Open));
    assert!(replayed.gw.follows_schedules());
    assert_eq!(replayed.md, r.md);
}

#[test]
fn a_close_with_more_resting_orders_than_the_event_buffer_answers_and_publishes_every_cancel() {
    let set = ContractSet::shipped();
    let day = 20_000 * crate::types::NANOS_PER_DAY;
    let at = |h: u64, m: u64| Nanos(day + (h * 60 + m) * 60 * 1_000_000_000);
    let mut r = Rig::new(GatewayConfig {
        rate_per_sec: 1_000_000_000,
        rate_burst: 1_000_000,
        ..GatewayConfig::default()
    });
    r.engine = Engine::new(
        &set,
        EngineConfig {
            max_orders: 1 << 17,
        },
    );
    let (mut md, mut journal, mut out) = (Vec::new(), Vec::new(), Vec::new());
    r.gw.follow_schedules(at(21, 1), &mut r.engine, &mut md, &mut journal, &mut out);
    r.now = at(21, 2).0;
    r.login(peer(1), "demo01", "demo01", 0);
    // Two events per order at the close (Canceled, BookDelete): more
    // than the buffer's 65,536.
    const N: usize = 33_000;
    for i in 0..N {
        r.enter(peer(1), &format!("t{i}"), Side::Buy, 1, "6.400");
    }
    assert_eq!(r.engine.live_orders(), N);
    r.md.clear();
    r.out.clear();
    r.gw.on_clock(
        at(23, 1),
        &mut r.engine,
        &mut r.md,
        &mut r.journal,
        &mut r.out,
    );
    assert_eq!(r.engine.live_orders(), 0);
    let canceled = r
        .replies(peer(1))
        .iter()
        .filter(|(k, _)| *k == b'C')
        .count();
    let deletes =
        r.md.iter()
            .filter(|e| matches!(e, Event::BookDelete { .. }))
            .count();
    assert_eq!((canceled, deletes), (N, N));
}

#[test]
fn a_no_op_cancel_or_modify_is_answered_when_timers_fire_in_the_same_call() {
    let day = 20_000 * crate::types::NANOS_PER_DAY;
    let at = |h: u64, m: u64| Nanos(day + (h * 60 + m) * 60 * 1_000_000_000);
    let mut r = Rig::new(GatewayConfig::default());
    let (mut md, mut journal, mut out) = (Vec::new(), Vec::new(), Vec::new());
    r.gw.follow_schedules(at(21, 1), &mut r.engine, &mut md, &mut journal, &mut out);
    r.now = at(21, 2).0;
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "t1", Side::Buy, 5, "6.400");
    // GH2612's pre-open (21:45) is due and no clock tick has run it when
    // a cancel to 9 lots (at or above the open 5: changes nothing) comes.
    r.now = at(21, 45).0;
    let c = ouch::CancelOrder::new(ouch::token(b"t1").unwrap(), Qty::new(9));
    r.unseq(peer(1), c.as_bytes());
    assert_eq!(r.replies(peer(1)), [(b'C', "t1".to_string())]);
    assert!(
        r.md.iter().any(|e| matches!(e, Event::PhaseChanged { .. })),
        "the timer ran in the same call"
    );
    // The same for a Modify at GH2612's call (21:55).
    r.now = at(21, 55).0;
    let m = ouch::ModifyOrder::new(ouch::token(b"t1").unwrap(), Side::Buy, Qty::new(9));
    r.unseq(peer(1), m.as_bytes());
    assert_eq!(r.replies(peer(1)).len(), 1, "Order Modified");
}

#[test]
fn a_tcp_re_send_of_a_whole_window_of_the_longest_messages_fits_max_tcp_resend_bytes() {
    let window = 64;
    let mut r = Rig::new(GatewayConfig {
        resend_window: window,
        ..GatewayConfig::default()
    });
    r.login(Peer::Tcp(1), "demo01", "demo01", 0);
    r.enter(Peer::Tcp(1), "R0", Side::Buy, 1, "6.400");
    // Every message in the window a Replaced (80 bytes, the longest).
    for i in 1..=window {
        let m = ouch::ReplaceOrder::new(
            ouch::token(format!("R{}", i - 1).as_bytes()).unwrap(),
            ouch::token(format!("R{i}").as_bytes()).unwrap(),
            Qty::new(1),
            "6.400".parse().unwrap(),
        );
        r.unseq(Peer::Tcp(1), m.as_bytes());
    }
    r.send(Peer::Tcp(1), &{
        let mut b = [0u8; 64];
        let n = soupbin::write_empty(&mut b, soupbin::kind::LOGOUT_REQUEST).unwrap();
        b[..n].to_vec()
    });
    r.now += 10_000_000_000;
    r.login(Peer::Tcp(1), "demo01", "demo01", 1);
    let replaced = r
        .replies(Peer::Tcp(1))
        .iter()
        .filter(|x| x.0 == b'U')
        .count();
    assert_eq!(replaced, window as usize);
    let bytes: usize = r.out.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(bytes, max_tcp_resend_bytes(window));
}

#[test]
fn requests_that_differ_in_one_byte_or_in_length_have_different_fingerprints() {
    let base: Vec<u8> = (0..47u8).map(|b| b.wrapping_mul(37)).collect();
    let fp = orders::fingerprint(&base);
    for i in 0..base.len() {
        for v in [0u8, 1, 0x20, 0x80, 0xff] {
            if base[i] != v {
                let mut m = base.clone();
                m[i] = v;
                assert_ne!(orders::fingerprint(&m), fp, "byte {i} = {v}");
            }
        }
    }
    // Trailing zeros are not the same request.
    let mut longer = base.clone();
    longer.push(0);
    assert_ne!(orders::fingerprint(&longer), fp);
    assert_ne!(orders::fingerprint(&[]), orders::fingerprint(&[0]));
}

#[test]
fn a_udp_session_that_only_heartbeated_before_a_restart_is_not_timed_out_after_it() {
    let cfg = GatewayConfig {
        heartbeat_ms: 10,
        idle_timeout_ms: 100,
        ..GatewayConfig::default()
    };
    let mut before = Rig::new(cfg.clone());
    before.login(peer(1), "demo01", "demo01", 0);
    // Heartbeats for longer than the idle timeout (not journaled), then
    // the crash.
    let mut hb = [0u8; 8];
    let n = soupbin::write_empty(&mut hb, soupbin::kind::CLIENT_HEARTBEAT).unwrap();
    for _ in 0..30 {
        before.now += 5_000_000;
        before.send(peer(1), &hb[..n]);
        before
            .gw
            .on_timer(Nanos(before.now), &mut before.journal, &mut before.out);
    }
    assert!(before.journal.iter().all(|j| j.0 != record::TIMEOUT));

    let mut r = Rig::new(cfg);
    for (kind, now, payload) in &before.journal {
        r.gw.replay(*kind, *now, payload, &mut r.engine, &mut r.md);
    }
    r.now = before.now + 1_000_000;
    assert_eq!(r.gw.after_restart(Nanos(r.now), &mut r.journal), 0);
    r.gw.on_timer(Nanos(r.now + 1_000_000), &mut r.journal, &mut r.out);
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(1)), vec![(b'A', "T1".to_string())]);
    // Silent for the idle timeout after the restart: timed out as ever.
    r.gw.on_timer(Nanos(r.now + 200_000_000), &mut r.journal, &mut r.out);
    assert_eq!(r.journal.last().map(|j| j.0), Some(record::TIMEOUT));
}

#[test]
fn tcp_bindings_are_released_after_a_restart_so_a_new_connection_must_log_in() {
    let mut before = Rig::new(GatewayConfig::default());
    before.login(Peer::Tcp(1), "demo01", "demo01", 0);
    before.login(peer(2), "demo02", "demo02", 0);
    before.enter(Peer::Tcp(1), "A1", Side::Sell, 5, "6.600");

    // The restart: the journal replayed, then TCP bindings released.
    let mut r = Rig::new(GatewayConfig::default());
    r.journal = before.journal.clone();
    for (kind, now, payload) in &before.journal {
        r.gw.replay(*kind, *now, payload, &mut r.engine, &mut r.md);
    }
    assert_eq!(r.gw.after_restart(Nanos(r.now), &mut r.journal), 1);
    assert_eq!(r.gw.after_restart(Nanos(r.now), &mut r.journal), 0);

    // The new process's first connection is numbered 1 again: it is no one.
    r.enter(Peer::Tcp(1), "X1", Side::Buy, 5, "6.600");
    assert!(r.out.is_empty(), "{:?}", r.out);
    assert_eq!(r.gw.counters().drops[&Drop::NotLoggedIn], 1);
    assert_eq!(r.engine.live_orders(), 1, "no order, no fill against A1");
    // The UDP session carries on; demo01 logs in again over TCP.
    r.enter(peer(2), "B1", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(2)), vec![(b'A', "B1".to_string())]);
    r.login(Peer::Tcp(1), "demo01", "demo01", 0);
    assert_eq!(r.replies(Peer::Tcp(1)), vec![(b'+', String::new())]);
    r.enter(Peer::Tcp(1), "A2", Side::Sell, 1, "6.610");
    assert_eq!(r.replies(Peer::Tcp(1)), vec![(b'A', "A2".to_string())]);

    // The release is journaled: replaying this journal reaches the same state.
    let mut again = Rig::new(GatewayConfig::default());
    for (kind, now, payload) in &r.journal {
        again
            .gw
            .replay(*kind, *now, payload, &mut again.engine, &mut again.md);
    }
    // (Its counters differ: the order from the stranger was counted, not
    // journaled.)
    assert_eq!(again.md, r.md);
    for u in ["demo01", "demo02"] {
        assert_eq!(again.gw.next_sequence(u), r.gw.next_sequence(u));
    }
    again.now = r.now;
    again.enter(Peer::Tcp(1), "A3", Side::Sell, 1, "6.620");
    assert_eq!(again.replies(Peer::Tcp(1)), vec![(b'A', "A3".to_string())]);
}

fn stranger(port: u16) -> Peer {
    Peer::Udp(SocketAddrV4::new([198, 18, 0, 77].into(), port))
}

#[test]
fn traffic_from_a_peer_without_a_session_is_dropped_and_never_journaled() {
    let mut r = Rig::new(GatewayConfig::default());
    let m = day_order("X", Side::Buy, 1, "6.500");
    let mut d = Vec::new();
    let mut b = [0u8; 128];
    for _ in 0..26 {
        let n =
            soupbin::write_packet(&mut b, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap();
        d.extend_from_slice(&b[..n]);
    }
    d.extend_from_slice(&[0, 1, b'O']); // a Logout Request
    for _ in 0..100 {
        r.send(stranger(5), &d);
    }
    assert_eq!(r.gw.counters().dropped(Drop::NotLoggedIn), 2600);
    assert!(r.journal.is_empty(), "{} records", r.journal.len());
    // Logins during back-off change nothing either; the failures that
    // led to it are journaled (they replay to the same back-off).
    for _ in 0..5 {
        r.login(stranger(5), "demo01", "wrong", 0);
    }
    let backoff = r.gw.counters().dropped(Drop::LoginBackoff);
    assert!(backoff > 0);
    assert_eq!(r.journal.len() as u64, 5 - backoff);
}

#[test]
fn re_sent_messages_and_logins_take_rate_limit_tokens_so_re_requests_cannot_flood() {
    let mut r = Rig::new(GatewayConfig {
        rate_per_sec: 100,
        rate_burst: 100,
        ..GatewayConfig::default()
    });
    // The login takes one token, the orders 98.
    r.login(peer(1), "demo01", "demo01", 0);
    for i in 0..98 {
        r.enter(peer(1), &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    // One token left: the first of 28 re-requests from sequence 1 in one
    // datagram takes it and is answered with Login Accepted, nothing
    // re-sent; the other 27 are dropped unanswered and unjournaled.
    let mut d = Vec::new();
    let mut b = [0u8; 64];
    for _ in 0..28 {
        let n = soupbin::write_login_request(&mut b, b"demo01", b"demo01", b"", 1).unwrap();
        d.extend_from_slice(&b[..n]);
    }
    let journaled = r.journal.len();
    r.send(peer(1), &d);
    let accepted = |r: &Rig| r.replies(peer(1)).iter().filter(|x| x.0 == b'A').count();
    assert_eq!(accepted(&r), 0);
    assert_eq!(r.replies(peer(1)), [(b'+', String::new())]);
    assert_eq!(r.gw.counters().dropped(Drop::ResendRateLimited), 98);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 27);
    assert_eq!(r.journal.len(), journaled + 1);
    // A second later the bucket holds 100 tokens again: one for the
    // login, 98 for the whole replay.
    r.now += 1_000_000_000;
    r.login(peer(1), "demo01", "demo01", 1);
    assert_eq!(accepted(&r), 98);
    // Replayed, the journal takes the same tokens: the same state.
    assert_replay_binds_and_takes_the_same(
        &r,
        GatewayConfig {
            rate_per_sec: 100,
            rate_burst: 100,
            ..GatewayConfig::default()
        },
    );
}

/// Replays `r`'s journal into a gateway made with `cfg`: its first
/// session's rate bucket and binding are `r`'s. (Its counters are not:
/// what was dropped unjournaled is not replayed.)
fn assert_replay_binds_and_takes_the_same(r: &Rig, cfg: GatewayConfig) {
    let mut replayed = Rig::new(cfg);
    for (kind, now, payload) in &r.journal {
        replayed
            .gw
            .replay(*kind, *now, payload, &mut replayed.engine, &mut replayed.md);
    }
    assert_eq!(replayed.gw.sessions[0].bucket, r.gw.sessions[0].bucket);
    assert_eq!(replayed.gw.sessions[0].peer, r.gw.sessions[0].peer);
    assert_eq!(replayed.gw.by_peer, r.gw.by_peer);
}

#[test]
fn a_valid_password_refused_for_its_session_in_use_does_not_reset_the_back_off() {
    let mut r = Rig::new(GatewayConfig {
        login_failures_before_backoff: 3,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    // From another port of the same host: guesses at demo02's password,
    // with demo01's (valid, refused: bound elsewhere) in between.
    for i in 0..10 {
        r.login(peer(2), "demo02", &format!("g{i}a"), 0);
        r.login(peer(2), "demo02", &format!("g{i}b"), 0);
        r.login(peer(2), "demo01", "demo01", 0);
    }
    assert_eq!(r.gw.counters().dropped(Drop::BadCredentials), 3);
    assert!(r.gw.counters().dropped(Drop::LoginBackoff) >= 20);
    // The bound client's own re-request is never refused for the back-off
    // of its host.
    r.login(peer(1), "demo01", "demo01", 1);
    assert_eq!(r.replies(peer(1))[0], (b'+', String::new()));
}

#[test]
fn a_bound_clients_re_login_does_not_clear_its_hosts_login_failures_a_quiet_spell_does() {
    let mut r = Rig::new(GatewayConfig {
        login_failures_before_backoff: 3,
        rate_per_sec: 1_000_000,
        rate_burst: 1_000,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    let login = |user: &str, pass: &str| {
        let mut b = [0u8; 64];
        let n =
            soupbin::write_login_request(&mut b, user.as_bytes(), pass.as_bytes(), b"", 0).unwrap();
        b[..n].to_vec()
    };
    // One datagram: 3 guesses at demo02's password, then a re-login to
    // its own session (never refused for back-off), 7 times over.
    let mut d = Vec::new();
    for i in 0..7 {
        for j in 0..3 {
            d.extend(login("demo02", &format!("guess{i}{j}")));
        }
        d.extend(login("demo01", "demo01"));
    }
    r.send(peer(1), &d);
    let c = r.gw.counters();
    assert_eq!(
        c.dropped(Drop::BadCredentials),
        3,
        "checked until the back-off"
    );
    assert_eq!(c.dropped(Drop::LoginBackoff), 18);
    assert_eq!(c.logins, 8, "its own re-logins still go through");
    // Failures are forgotten after a quiet spell as long as the longest
    // back-off (1,024 times login_backoff_ms): then 3 guesses again.
    r.now += 1_024 * GatewayConfig::default().login_backoff_ms * 1_000_000 + 1;
    for i in 0..4 {
        r.login(peer(1), "demo02", &format!("late{i}"), 0);
    }
    let c = r.gw.counters();
    assert_eq!(c.dropped(Drop::BadCredentials), 6);
    assert_eq!(c.dropped(Drop::LoginBackoff), 19);
}

#[test]
fn failures_from_many_forged_sources_do_not_clear_a_back_off() {
    let mut r = Rig::new(GatewayConfig::default());
    let attacker = stranger(1);
    for _ in 0..4 {
        r.login(attacker, "demo02", "guess", 0);
    }
    assert_eq!(r.gw.counters().dropped(Drop::LoginBackoff), 1);
    for i in 0..4096u32 {
        let ip = 0x0a00_0000 + i;
        r.login(Peer::Udp(SocketAddrV4::new(ip.into(), 1)), "x", "y", 0);
    }
    r.login(attacker, "demo02", "guess", 0);
    assert_eq!(r.gw.counters().dropped(Drop::LoginBackoff), 2);
}

#[test]
fn logins_to_a_session_another_peer_holds_take_its_rate_limit_tokens() {
    let limited = || GatewayConfig {
        rate_per_sec: 1,
        rate_burst: 1,
        ..GatewayConfig::default()
    };
    // From another address while the session is bound: one refusal
    // answered (and journaled), the rest dropped.
    let mut r = Rig::new(limited());
    r.login(peer(1), "demo01", "demo01", 0);
    r.now += 1_000_000_000;
    let before = r.journal.len();
    let mut b = [0u8; 64 * 28];
    let mut n = 0;
    for _ in 0..28 {
        n += soupbin::write_login_request(&mut b[n..], b"demo01", b"demo01", b"", 0).unwrap();
    }
    r.send(peer(2), &b[..n]);
    assert_eq!(r.replies(peer(2)), vec![(b'-', "S".into())]);
    assert_eq!(r.journal.len(), before + 1);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 27);
}

#[test]
fn a_login_and_logout_loop_from_the_sessions_own_peer_takes_a_token_per_login() {
    let mut r = Rig::new(GatewayConfig {
        rate_per_sec: 1,
        rate_burst: 1,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    assert_eq!(r.replies(peer(1)), [(b'+', String::new())]);
    // A second later the bucket holds one token: of 28 Login and Logout
    // pairs in one datagram, the first login takes it (accepted, then
    // logged out); the other logins are dropped unanswered and
    // unjournaled, and so are the Logouts of a peer with no session.
    r.now += 1_000_000_000;
    let before = r.journal.len();
    let mut d = Vec::new();
    let mut b = [0u8; 64];
    for _ in 0..28 {
        let n = soupbin::write_login_request(&mut b, b"demo01", b"demo01", b"", 0).unwrap();
        d.extend_from_slice(&b[..n]);
        let n = soupbin::write_empty(&mut b, soupbin::kind::LOGOUT_REQUEST).unwrap();
        d.extend_from_slice(&b[..n]);
    }
    r.send(peer(1), &d);
    assert_eq!(r.replies(peer(1)), [(b'+', String::new())]);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 27);
    assert_eq!(r.journal.len(), before + 2, "one login, one logout");
    assert_eq!(r.gw.counters().logins, 2);
    // Replayed, the journal takes the same tokens: the same state.
    assert_replay_binds_and_takes_the_same(
        &r,
        GatewayConfig {
            rate_per_sec: 1,
            rate_burst: 1,
            ..GatewayConfig::default()
        },
    );
}

#[test]
fn a_peer_whose_session_ended_is_handed_on_once_unless_it_logged_in_again() {
    let mut r = Rig::new(GatewayConfig::default());
    let taken = |r: &mut Rig| {
        let mut v = Vec::new();
        r.gw.take_unbound(|p| v.push(p));
        v
    };
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(2), "demo02", "demo02", 0);
    assert_eq!(taken(&mut r), []);
    r.send(peer(1), &[0, 1, soupbin::kind::LOGOUT_REQUEST]);
    assert_eq!(taken(&mut r), [peer(1)]);
    assert_eq!(taken(&mut r), []);
    // A Logout and a Login in one datagram: bound again, not handed on.
    let mut d = vec![0, 1, soupbin::kind::LOGOUT_REQUEST];
    let mut b = [0u8; 64];
    let n = soupbin::write_login_request(&mut b, b"demo02", b"demo02", b"", 0).unwrap();
    d.extend_from_slice(&b[..n]);
    r.send(peer(2), &d);
    assert_eq!(r.replies(peer(2)), [(b'+', String::new())]);
    assert_eq!(taken(&mut r), []);
}

#[test]
fn a_spray_of_forged_failures_does_not_reset_a_hosts_doubling_back_off() {
    let mut r = Rig::new(GatewayConfig::default());
    let attacker = stranger(1);
    for _ in 0..3 {
        r.login(attacker, "demo02", "guess", 0);
    }
    // Its first back-off (500 ms) ends; then one failure from each of
    // 4,096 forged addresses fills the table.
    r.now += 501_000_000;
    for i in 0..4096u32 {
        let ip = 0x0a00_0000 + i;
        r.login(Peer::Udp(SocketAddrV4::new(ip.into(), 1)), "x", "y", 0);
    }
    // The host's count survived: one more guess is checked, and the next
    // two wait for the doubled back-off.
    let (checked, refused) = (
        r.gw.counters().dropped(Drop::BadCredentials),
        r.gw.counters().dropped(Drop::LoginBackoff),
    );
    for _ in 0..3 {
        r.login(attacker, "demo02", "guess", 0);
    }
    assert_eq!(r.gw.counters().dropped(Drop::BadCredentials), checked + 1);
    assert_eq!(r.gw.counters().dropped(Drop::LoginBackoff), refused + 2);
}

/// The sequenced OUCH messages sent in the last call.
fn outbound(r: &Rig) -> Vec<Vec<u8>> {
    r.out
        .iter()
        .flat_map(|(_, b)| soupbin::packets(b))
        .filter_map(|p| match p {
            Ok(Packet::SequencedData(m)) => Some(m.to_vec()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_cancel_to_at_least_the_open_size_is_answered_with_zero_lots_canceled() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    let t1 = ouch::token(b"T1").unwrap();
    r.unseq(peer(1), ouch::CancelOrder::new(t1, Qty::new(5)).as_bytes());
    let sent = outbound(&r);
    let Ok(ouch::Outbound::Canceled(c)) = ouch::Outbound::parse(&sent[0]) else {
        panic!("{sent:?}")
    };
    assert_eq!((c.token(), c.decrement()), (&b"T1"[..], Qty::ZERO));
    assert_eq!(r.engine.live_orders(), 1, "still resting, all 5 lots");
    r.unseq(peer(1), ouch::CancelOrder::new(t1, Qty::new(2)).as_bytes());
    assert_eq!(r.replies(peer(1)), vec![(b'C', "T1".to_string())]);
}

#[test]
fn a_modify_is_answered_with_order_modified_and_the_shares_left() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 5, "6.400");
    let t1 = ouch::token(b"T1").unwrap();
    let modified = |r: &Rig| -> Vec<(Side, Qty)> {
        outbound(r)
            .iter()
            .filter_map(|m| match ouch::Outbound::parse(m) {
                Ok(ouch::Outbound::Modified(x)) => Some((x.side().unwrap(), x.qty())),
                _ => None,
            })
            .collect()
    };
    // Down to 3: two lots off the book (market data sees them go).
    let md_before = r.md.len();
    r.unseq(
        peer(1),
        ouch::ModifyOrder::new(t1, Side::Buy, Qty::new(3)).as_bytes(),
    );
    assert_eq!(modified(&r), vec![(Side::Buy, Qty::new(3))]);
    assert!(r.md[md_before..].iter().any(|e| matches!(
        e,
        Event::Canceled { decrement, .. } if *decrement == Qty::new(2)
    )));
    // At or above the open size: nothing changes, still answered.
    r.unseq(
        peer(1),
        ouch::ModifyOrder::new(t1, Side::Buy, Qty::new(7)).as_bytes(),
    );
    assert_eq!(modified(&r), vec![(Side::Buy, Qty::new(3))]);
    // A futures order keeps its side.
    r.unseq(
        peer(1),
        ouch::ModifyOrder::new(t1, Side::Sell, Qty::new(1)).as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".to_string())]);
    // To zero: the order is gone, its token names nothing live.
    r.unseq(
        peer(1),
        ouch::ModifyOrder::new(t1, Side::Buy, Qty::ZERO).as_bytes(),
    );
    assert_eq!(modified(&r), vec![(Side::Buy, Qty::ZERO)]);
    assert_eq!(r.engine.live_orders(), 0);
    r.unseq(peer(1), ouch::CancelOrder::new(t1, Qty::ZERO).as_bytes());
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".to_string())]);
}

#[test]
fn a_peer_is_bound_to_one_session_at_a_time() {
    let mut r = Rig::new(GatewayConfig {
        heartbeat_ms: 10,
        idle_timeout_ms: 100,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    r.login(peer(1), "demo02", "demo02", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'-', "S".to_string())]);
    r.login(peer(2), "demo02", "demo02", 0);
    // demo02 stays active; demo01 goes quiet and times out.
    for _ in 0..3 {
        r.now += 50_000_000;
        r.send(peer(2), &[0, 1, b'R']);
        r.gw.on_timer(Nanos(r.now), &mut r.journal, &mut r.out);
    }
    r.enter(peer(2), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(2)), vec![(b'A', "T1".to_string())]);
}

#[test]
fn a_token_rejected_for_flow_control_is_used_and_its_re_send_gets_no_second_answer() {
    let mut r = Rig::logged_in_at_one_a_second(peer(1), 1);
    r.enter(peer(1), "T0", Side::Buy, 1, "6.400");
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    let flow_control = (b'J', "T1".to_string());
    assert_eq!(r.replies(peer(1)), vec![flow_control]);
    r.now += 2_000_000_000;
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(1)), vec![], "a re-sent copy of T1");
    assert_eq!(r.gw.counters().dropped(Drop::Resent), 1);
    r.now += 2_000_000_000;
    r.enter(peer(1), "T1", Side::Sell, 1, "6.400");
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T1".to_string())]);
    assert_eq!(
        r.gw.counters().rejected(RejectReason::DuplicateToken),
        1,
        "another request with T1"
    );
}

#[test]
fn a_minimum_quantity_other_than_none_or_fill_or_kill_is_refused_not_ignored() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "S1", Side::Sell, 1, "6.400");
    let order = |token: &str, tif: u32, shares: u32, min: u32| {
        let mut m = day_order(token, Side::Buy, shares, "6.400");
        m.time_in_force = zerocopy::network_endian::U32::new(tif);
        m.minimum_quantity = zerocopy::network_endian::U32::new(min);
        m
    };
    let reason = |r: &Rig| -> Vec<u8> {
        r.out
            .iter()
            .flat_map(|(_, b)| soupbin::packets(b))
            .filter_map(|p| match p {
                Ok(Packet::SequencedData(m)) => match ouch::Outbound::parse(m).unwrap() {
                    ouch::Outbound::Rejected(x) => Some(x.reason),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    };
    // An IOC of 100 with a minimum of 50 must not fill the 1 lot resting.
    for (token, tif, min) in [("B1", 0, 50), ("B2", 99_999, 10), ("B3", 0, 200)] {
        r.unseq(peer(1), order(token, tif, 100, min).as_bytes());
        assert_eq!(reason(&r), vec![ouch::reject::INVALID_MIN_QTY], "{token}");
    }
    assert_eq!(r.engine.live_orders(), 1, "S1 untouched");
    // A minimum of all the shares, immediate: a fill-or-kill (killed).
    r.unseq(peer(1), order("B4", 0, 100, 100).as_bytes());
    assert_eq!(
        r.replies(peer(1)),
        vec![(b'A', "B4".to_string()), (b'C', "B4".to_string())]
    );
    assert_eq!(r.engine.live_orders(), 1);
}

#[test]
fn a_replaced_echoes_the_firm_and_capacity_of_the_order_it_replaced_across_a_snapshot() {
    let t = |s: &[u8]| ouch::token(s).unwrap();
    let replaced = |r: &Rig| -> ouch::Echo {
        let m = r
            .out
            .iter()
            .flat_map(|(_, b)| soupbin::packets(b))
            .find_map(|p| match p {
                Ok(Packet::SequencedData(m)) if m[0] == ouch::kind::REPLACED => Some(m.to_vec()),
                _ => None,
            })
            .expect("a Replaced");
        let r = <ouch::Replaced as zerocopy::FromBytes>::ref_from_bytes(&m).unwrap();
        ouch::Echo {
            firm: r.firm,
            capacity: r.capacity,
        }
    };
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter_as_firm(peer(1), "T1", 5);
    let firm = ouch::Echo {
        firm: *b"FIRM",
        capacity: b'P',
    };
    let replace = |from: &[u8], to: &[u8], price: &str| {
        ouch::ReplaceOrder::new(t(from), t(to), Qty::new(5), price.parse().unwrap())
    };
    r.unseq(peer(1), replace(b"T1", b"T2", "6.410").as_bytes());
    assert_eq!(replaced(&r), firm);
    // A snapshot's gateway keeps it for the next replace in the chain.
    let mut again = Rig::new(GatewayConfig::default());
    again.engine.restore(&r.engine.state()).unwrap();
    again.gw.restore(&r.gw.state()).unwrap();
    again.now = r.now;
    again.unseq(peer(1), replace(b"T2", b"T3", "6.420").as_bytes());
    assert_eq!(replaced(&again), firm);
}

#[test]
fn the_journal_holds_a_logins_outcome_never_its_password() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "s3cretpw", 0);
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter(peer(1), "T1", Side::Buy, 1, "6.400");
    assert_eq!(r.journal.len(), 3);
    for (kind, _, payload) in &r.journal {
        let text = String::from_utf8_lossy(payload);
        assert!(!text.contains("s3cretpw"), "{kind}: {payload:?}");
        assert!(
            *kind != record::LOGIN || !text.contains("demo01"),
            "{payload:?}"
        );
    }
    // Replayed, the outcomes rebuild the same state: the failure counted,
    // the session bound.
    let mut again = Rig::new(GatewayConfig::default());
    for (kind, now, payload) in &r.journal {
        again
            .gw
            .replay(*kind, *now, payload, &mut again.engine, &mut again.md);
    }
    assert_eq!(again.gw.state(), r.gw.state());
}

#[test]
fn a_session_past_its_daily_tokens_is_refused_new_ones_and_still_knows_its_old_ones() {
    let mut r = Rig::new(GatewayConfig {
        max_tokens_per_session: 3,
        ..GatewayConfig::default()
    });
    r.login(peer(1), "demo01", "demo01", 0);
    for t in ["T1", "T2", "T3"] {
        r.enter(peer(1), t, Side::Buy, 1, "6.400");
        assert_eq!(r.replies(peer(1)), vec![(b'A', t.to_string())]);
    }
    r.enter(peer(1), "T4", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(peer(1)), vec![(b'J', "T4".to_string())]);
    assert_eq!(r.gw.counters().rejected(RejectReason::CapacityExhausted), 1);
    // A re-sent T3 is still a re-send; cancels still work.
    r.enter(peer(1), "T3", Side::Buy, 1, "6.400");
    assert_eq!(r.gw.counters().dropped(Drop::Resent), 1);
    r.unseq(
        peer(1),
        ouch::CancelOrder::new(ouch::token(b"T1").unwrap(), Qty::ZERO).as_bytes(),
    );
    assert_eq!(r.replies(peer(1)), vec![(b'C', "T1".to_string())]);
}

#[test]
fn tcp_login_failures_count_against_the_clients_host_not_every_tcp_client() {
    let mut r = Rig::new(GatewayConfig::default());
    let (a, b) = ([198, 18, 0, 2].into(), [198, 18, 0, 3].into());
    r.gw.set_tcp_host(7, a);
    for _ in 0..3 {
        r.login(Peer::Tcp(7), "demo01", "wrong", 0);
    }
    // Another host's TCP client logs in; another connection from the
    // failing host waits, as a UDP client on that host would.
    r.gw.set_tcp_host(8, b);
    r.login(Peer::Tcp(8), "demo02", "demo02", 0);
    assert_eq!(r.replies(Peer::Tcp(8)), vec![(b'+', String::new())]);
    r.gw.set_tcp_host(9, a);
    r.login(Peer::Tcp(9), "demo03", "demo03", 0);
    assert_eq!(r.replies(Peer::Tcp(9)), vec![(b'-', "A".to_string())]);
    r.login(peer(1), "demo03", "demo03", 0);
    assert_eq!(r.replies(peer(1)), vec![(b'-', "A".to_string())]);
    // The journal keeps the host: after replay, host a still waits.
    let mut again = Rig::new(GatewayConfig::default());
    for (kind, now, payload) in &r.journal {
        again
            .gw
            .replay(*kind, *now, payload, &mut again.engine, &mut again.md);
    }
    again.now = r.now;
    again.gw.set_tcp_host(10, a);
    again.login(Peer::Tcp(10), "demo04", "demo04", 0);
    assert_eq!(again.replies(Peer::Tcp(10)), vec![(b'-', "A".to_string())]);
    again.gw.set_tcp_host(11, b);
    again.login(Peer::Tcp(11), "demo05", "demo05", 0);
    assert_eq!(again.replies(Peer::Tcp(11)), vec![(b'+', String::new())]);
}

#[test]
fn a_tcp_re_send_goes_whole_in_debt_so_the_streams_numbering_holds() {
    let mut r = Rig::new(GatewayConfig {
        rate_per_sec: 100,
        rate_burst: 100,
        ..GatewayConfig::default()
    });
    let tcp = Peer::Tcp(1);
    r.login(tcp, "demo01", "demo01", 0);
    for i in 0..150 {
        r.now += 20_000_000; // within the rate
        r.enter(tcp, &format!("T{i}"), Side::Buy, 1, "6.400");
    }
    assert_eq!(r.gw.next_sequence("demo01"), Some(151));
    // The connection breaks; the client reconnects and asks from 1.
    r.send(tcp, &[0, 1, b'O']);
    r.now += 2_000_000_000;
    let tcp2 = Peer::Tcp(2);
    r.login(tcp2, "demo01", "demo01", 1);
    let stream = r.replies(tcp2);
    assert_eq!(stream.len(), 151, "Login Accepted and all 150, in order");
    // The bucket is 51 in debt (the re-send and the login): another TCP
    // login finds no token and goes unanswered until it is repaid...
    r.send(tcp2, &[0, 1, b'O']);
    let tcp3 = Peer::Tcp(3);
    r.login(tcp3, "demo01", "demo01", 140);
    assert_eq!(r.replies(tcp3), vec![]);
    assert_eq!(r.gw.counters().dropped(Drop::RateLimitedSilent), 1);
    // ...half a second at 100 a second.
    r.now += 600_000_000;
    r.login(tcp3, "demo01", "demo01", 140);
    assert_eq!(r.replies(tcp3).len(), 12);
    // Live messages go on from 151, as the client counts them.
    r.now += 2_000_000_000;
    r.enter(tcp3, "LIVE", Side::Buy, 1, "6.400");
    assert_eq!(r.replies(tcp3), vec![(b'A', "LIVE".to_string())]);
    assert_eq!(r.gw.next_sequence("demo01"), Some(152));
}

#[test]
fn a_tcp_logout_request_closes_the_connection_after_the_replies_before_it() {
    let mut r = Rig::new(GatewayConfig::default());
    let tcp = Peer::Tcp(7);
    r.login(tcp, "demo01", "demo01", 0);
    // An order and the Logout Request in one read: the Accepted first,
    // then the close (the Vec outbox's empty reply).
    let m = day_order("T1", Side::Buy, 1, "6.400");
    let mut d = vec![0u8; 128];
    let n = soupbin::write_packet(&mut d, soupbin::kind::UNSEQUENCED_DATA, m.as_bytes()).unwrap();
    d.truncate(n);
    d.extend_from_slice(&[0, 1, soupbin::kind::LOGOUT_REQUEST]);
    r.send(tcp, &d);
    assert_eq!(r.replies(tcp), vec![(b'A', "T1".into())]);
    assert_eq!(r.out.last(), Some(&(tcp, Vec::new())), "{:?}", r.out);
    assert_eq!(r.out.iter().filter(|(_, b)| b.is_empty()).count(), 1);
    // A UDP peer has no connection: nothing to close.
    r.login(peer(1), "demo02", "demo02", 0);
    r.send(peer(1), &[0, 1, soupbin::kind::LOGOUT_REQUEST]);
    assert!(r.out.is_empty(), "{:?}", r.out);
}

#[test]
fn an_accepted_echoes_the_enter_orders_firm_and_capacity() {
    let mut r = Rig::new(GatewayConfig::default());
    r.login(peer(1), "demo01", "demo01", 0);
    r.enter_as_firm(peer(1), "T1", 1);
    let accepted: Vec<([u8; 4], u8)> = outbound(&r)
        .iter()
        .filter_map(|b| match ouch::Outbound::parse(b) {
            Ok(ouch::Outbound::Accepted(a)) => Some((a.firm, a.capacity)),
            _ => None,
        })
        .collect();
    assert_eq!(accepted, vec![(*b"FIRM", b'P')]);
}

#[test]
fn counters_since_a_journal_replay_count_only_the_traffic_after_it() {
    let mut before = Rig::new(GatewayConfig::default());
    before.login(peer(1), "demo01", "demo01", 0);
    before.login(peer(2), "demo02", "wrong", 0);
    before.enter(peer(1), "S1", Side::Sell, 5, "6.500");
    before.enter(peer(1), "S2", Side::Sell, 0, "6.500");
    // A restart: the journal replayed into a new gateway.
    let mut r = Rig::new(GatewayConfig::default());
    for (kind, now, payload) in &before.journal {
        r.gw.replay(*kind, *now, payload, &mut r.engine, &mut r.md);
    }
    let replayed = r.gw.counters().clone();
    assert_eq!((replayed.packets, replayed.orders), (4, 2));
    r.now = before.now;
    r.enter(peer(1), "S3", Side::Sell, 0, "6.500");
    let run = r.gw.counters().since(&replayed);
    assert_eq!((run.packets, run.orders, run.logins), (1, 1, 0));
    assert_eq!(run.rejected(RejectReason::InvalidQty), 1);
    assert_eq!(run.rejects.len(), 1, "{:?}", run.rejects);
    assert!(run.drops.is_empty(), "{:?}", run.drops);
}
