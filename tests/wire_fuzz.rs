//! Decoders never panic: arbitrary bytes, truncations and extensions of
//! valid messages give an error or a value, never a crash. And every
//! message round-trips through its encoder and decoder.
//!
//! At least 100,000 arbitrary inputs per decoder by default; set
//! PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use tokex::types::{Price, Qty, Side, Symbol, Tif};
use tokex::wire::ethernet::UdpFrame;
use tokex::wire::{itch, itch_dispatch, moldudp64, ouch, soupbin};
use zerocopy::IntoBytes;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        proptest::collection::vec(any::<u8>(), 0..1600),
        // Plausible prefixes: a known type byte followed by noise.
        (
            prop_oneof![
                Just(b'A'),
                Just(b'E'),
                Just(b'U'),
                Just(b'X'),
                Just(b'O'),
                Just(b'D'),
                Just(b'R'),
                Just(b'L'),
                Just(b'S')
            ],
            proptest::collection::vec(any::<u8>(), 0..90)
        )
            .prop_map(|(t, mut v)| {
                v.insert(0, t);
                v
            }),
    ]
}

/// Runs every decoder over the bytes, touching every field of what decodes.
fn decode_all(b: &[u8]) {
    for p in soupbin::packets(b) {
        if let Ok(soupbin::Packet::LoginRequest(r)) = p {
            let _ = (r.username(), r.password(), r.requested_sequence());
        }
        if let Ok(soupbin::Packet::LoginAccepted(a)) = p {
            let _ = a.next_sequence();
        }
    }
    match ouch::Inbound::parse(b) {
        Ok(ouch::Inbound::Enter(e)) => {
            let _ = (
                e.token(),
                e.side(),
                e.qty(),
                e.symbol().as_str().len(),
                e.price(),
                e.tif(),
            );
        }
        Ok(ouch::Inbound::Replace(r)) => {
            let _ = (
                r.existing_token(),
                r.replacement_token(),
                r.qty(),
                r.price(),
            );
        }
        Ok(ouch::Inbound::Cancel(c)) => {
            let _ = (c.token(), c.qty());
        }
        Ok(ouch::Inbound::Modify(m)) => {
            let _ = (m.token(), m.side(), m.qty());
        }
        Err(_) => {}
    }
    let _ = ouch::Outbound::parse(b);
    if let Ok(m) = itch::Message::parse(b) {
        let _ = (m.header(), m.bytes().len());
        if let itch::Message::AddOrder(a) = m {
            let _ = (a.side(), a.symbol().as_str().len());
        }
    }
    for m in itch::stream(b) {
        let _ = m.map(|m| m.header());
    }
    for m in dispatched(b) {
        let _ = m.map(|m| m.header());
    }
    if let Ok(p) = moldudp64::Packet::parse(b) {
        for (_, m) in p.messages() {
            let _ = itch::Message::parse(m);
        }
    }
    if let Ok(f) = UdpFrame::parse(b) {
        let _ = (f.src(), f.dst(), f.payload.len(), f.checksum_ok());
    }
    let mut r = soupbin::Reassembler::new(4096, 1024);
    if r.extend(b).is_ok() {
        while let Ok(Some(p)) = r.next_packet() {
            let _ = soupbin::Packet::parse(p);
        }
    }
}

fn symbol() -> impl Strategy<Value = Symbol> {
    "[A-Z0-9]{1,8}".prop_map(|s| Symbol::new(&s).unwrap())
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn tok() -> impl Strategy<Value = ouch::Token> {
    "[A-Za-z0-9]{1,14}".prop_map(|s| ouch::token(s.as_bytes()).unwrap())
}

fn header() -> impl Strategy<Value = itch::Header> {
    (any::<u16>(), any::<u16>(), 0u64..(1 << 48)).prop_map(|(l, t, ts)| itch::Header {
        stock_locate: l,
        tracking_number: t,
        timestamp: ts,
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_any_decoder(b in bytes()) {
        decode_all(&b);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn enter_order_round_trips(t in tok(), s in side(), q in any::<u32>(), sym in symbol(), p in any::<u32>(),
                               tif in prop_oneof![Just(Tif::Day), Just(Tif::Ioc), Just(Tif::Fok)]) {
        prop_assume!(tif != Tif::Fok || q > 0);
        let m = ouch::EnterOrder::new(t, s, Qty::new(q), sym, Price::from_raw(p), tif);
        let Ok(ouch::Inbound::Enter(v)) = ouch::Inbound::parse(m.as_bytes()) else { panic!() };
        prop_assert_eq!((v.side(), v.qty(), v.symbol(), v.price(), v.tif()), (Ok(s), Qty::new(q), sym, Price::from_raw(p), tif));
        prop_assert_eq!(v.token(), &t[..v.token().len()]);
        for cut in 0..m.as_bytes().len() {
            prop_assert!(ouch::Inbound::parse(&m.as_bytes()[..cut]).is_err());
        }
    }

    #[test]
    fn replace_and_cancel_round_trip(a in tok(), b in tok(), q in any::<u32>(), p in any::<u32>()) {
        let r = ouch::ReplaceOrder::new(a, b, Qty::new(q), Price::from_raw(p));
        let Ok(ouch::Inbound::Replace(v)) = ouch::Inbound::parse(r.as_bytes()) else { panic!() };
        prop_assert_eq!((v.existing_token.as_bytes(), v.replacement_token.as_bytes(), v.qty(), v.price()), (&a[..], &b[..], Qty::new(q), Price::from_raw(p)));
        let c = ouch::CancelOrder::new(a, Qty::new(q));
        let Ok(ouch::Inbound::Cancel(v)) = ouch::Inbound::parse(c.as_bytes()) else { panic!() };
        prop_assert_eq!((&v.token, v.qty()), (&a, Qty::new(q)));
    }

    #[test]
    fn outbound_messages_round_trip(t in tok(), prev in tok(), s in side(), q in any::<u32>(), sym in symbol(), p in any::<u32>(),
                                    ts in any::<u64>(), r in any::<u64>(), live in any::<bool>(), reason in any::<u8>()) {
        let f = ouch::OrderFields { timestamp: ts, token: t, side: s, qty: Qty::new(q), symbol: sym, price: Price::from_raw(p), tif: Tif::Day, order_reference: r, live };
        let a = ouch::Accepted::new(&f);
        prop_assert_eq!(ouch::Outbound::parse(a.as_bytes()), Ok(ouch::Outbound::Accepted(&a)));
        let u = ouch::Replaced::new(&f, prev);
        prop_assert_eq!(ouch::Outbound::parse(u.as_bytes()), Ok(ouch::Outbound::Replaced(&u)));
        let c = ouch::Canceled::new(ts, t, Qty::new(q), reason);
        prop_assert_eq!(ouch::Outbound::parse(c.as_bytes()), Ok(ouch::Outbound::Canceled(&c)));
        let e = ouch::Executed::new(ts, t, Qty::new(q), Price::from_raw(p), live, r);
        prop_assert_eq!(ouch::Outbound::parse(e.as_bytes()), Ok(ouch::Outbound::Executed(&e)));
        let j = ouch::Rejected::new(ts, t, reason);
        prop_assert_eq!(ouch::Outbound::parse(j.as_bytes()), Ok(ouch::Outbound::Rejected(&j)));
        let s = ouch::SystemEvent::new(ts, b'S');
        prop_assert_eq!(ouch::Outbound::parse(s.as_bytes()), Ok(ouch::Outbound::SystemEvent(&s)));
    }

    #[test]
    fn itch_messages_round_trip(h in header(), r in any::<u64>(), r2 in any::<u64>(), s in side(), q in any::<u32>(), sym in symbol(), p in any::<u32>(), m in any::<u64>()) {
        let msgs: Vec<Vec<u8>> = vec![
            itch::SystemEvent::new(h, b'O').as_bytes().to_vec(),
            itch::StockDirectory::new(h, sym, q).as_bytes().to_vec(),
            itch::TradingAction::new(h, sym, b'T', *b"    ").as_bytes().to_vec(),
            itch::AddOrder::new(h, r, s, Qty::new(q), sym, Price::from_raw(p)).as_bytes().to_vec(),
            itch::OrderExecuted::new(h, r, Qty::new(q), m).as_bytes().to_vec(),
            itch::OrderExecutedWithPrice::new(h, r, Qty::new(q), m, true, Price::from_raw(p)).as_bytes().to_vec(),
            itch::OrderCancel::new(h, r, Qty::new(q)).as_bytes().to_vec(),
            itch::OrderDelete::new(h, r).as_bytes().to_vec(),
            itch::OrderReplace::new(h, r, r2, Qty::new(q), Price::from_raw(p)).as_bytes().to_vec(),
            itch::CrossTrade::new(h, u64::from(q), sym, Price::from_raw(p), m, b'O').as_bytes().to_vec(),
            itch::Noii::new(h, sym, &itch::Imbalance { paired: r, imbalance: r2, direction: b'B', far: Price::from_raw(p), near: Price::from_raw(p), reference: Price::from_raw(p), cross_type: b'O' }).as_bytes().to_vec(),
        ];
        let mut packet = moldudp64::PacketBuilder::new(*b"TOKEX00001", m, moldudp64::MAX_PACKET);
        for b in &msgs {
            let parsed = itch::Message::parse(b).unwrap();
            prop_assert_eq!(parsed.header(), h);
            prop_assert_eq!(parsed.bytes(), &b[..]);
            packet.push(b).unwrap();
        }
        let bytes = packet.bytes().to_vec();
        let p = moldudp64::Packet::parse(&bytes).unwrap();
        let got: Vec<(u64, Vec<u8>)> = p.messages().map(|(s, b)| (s, b.to_vec())).collect();
        let want: Vec<(u64, Vec<u8>)> = msgs.iter().enumerate().map(|(i, b)| (m.wrapping_add(i as u64), b.clone())).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn soupbin_login_round_trips(u in "[a-z0-9]{1,6}", pw in "[a-z0-9]{1,10}", seq in 0u64..10_000_000_000) {
        let mut buf = [0u8; 64];
        let n = soupbin::write_login_request(&mut buf, u.as_bytes(), pw.as_bytes(), b"", seq).unwrap();
        let Ok((soupbin::Packet::LoginRequest(r), rest)) = soupbin::Packet::parse(&buf[..n]) else { panic!() };
        prop_assert!(rest.is_empty());
        prop_assert_eq!((r.username(), r.password(), r.requested_sequence()), (u.as_bytes(), pw.as_bytes(), Ok(seq)));
        let n = soupbin::write_login_accepted(&mut buf, b"TOKEX00001", seq).unwrap();
        let Ok((soupbin::Packet::LoginAccepted(a), _)) = soupbin::Packet::parse(&buf[..n]) else { panic!() };
        prop_assert_eq!((a.session(), a.next_sequence()), (&b"TOKEX00001"[..], Ok(seq)));
    }
}

/// Every prefix of a valid fixed-size message, and the message with one byte
/// more, is an error.
fn truncations_and_extensions_fail(bytes: &[u8], parse: impl Fn(&[u8]) -> bool) {
    for cut in 0..bytes.len() {
        assert!(!parse(&bytes[..cut]), "prefix of {cut} bytes decoded");
    }
    let mut long = bytes.to_vec();
    long.push(b' ');
    assert!(!parse(&long), "message with a byte more decoded");
    assert!(parse(bytes));
}

fn soup_packet() -> impl Strategy<Value = Vec<u8>> {
    let payload = proptest::collection::vec(any::<u8>(), 0..200);
    prop_oneof![
        payload
            .clone()
            .prop_map(|p| (soupbin::kind::SEQUENCED_DATA, p)),
        payload
            .clone()
            .prop_map(|p| (soupbin::kind::UNSEQUENCED_DATA, p)),
        payload.prop_map(|p| (soupbin::kind::DEBUG, p)),
        any::<u8>().prop_map(|r| (soupbin::kind::LOGIN_REJECTED, vec![r])),
        Just((soupbin::kind::SERVER_HEARTBEAT, vec![])),
        Just((soupbin::kind::CLIENT_HEARTBEAT, vec![])),
        Just((soupbin::kind::END_OF_SESSION, vec![])),
        Just((soupbin::kind::LOGOUT_REQUEST, vec![])),
    ]
    .prop_map(|(k, p)| {
        let mut buf = vec![0u8; 3 + p.len()];
        let n = soupbin::write_packet(&mut buf, k, &p).unwrap();
        buf.truncate(n);
        buf
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1_000, ..ProptestConfig::default() })]

    #[test]
    fn modify_and_broken_trade_round_trip(t in tok(), s in side(), q in any::<u32>(), ts in any::<u64>(), m in any::<u64>(), r in any::<u8>()) {
        let md = ouch::ModifyOrder::new(t, s, Qty::new(q));
        let Ok(ouch::Inbound::Modify(v)) = ouch::Inbound::parse(md.as_bytes()) else { panic!() };
        prop_assert_eq!((&v.token, v.side(), v.qty()), (&t, Ok(s), Qty::new(q)));
        let b = ouch::BrokenTrade::new(ts, t, m, r);
        let Ok(ouch::Outbound::BrokenTrade(v)) = ouch::Outbound::parse(b.as_bytes()) else { panic!() };
        prop_assert_eq!((v.timestamp(), &v.token, v.match_number(), v.reason), (ts, &t, m, r));
    }

    #[test]
    fn outbound_typed_fields_are_what_was_encoded(t in tok(), prev in tok(), s in side(), q in 1u32.., sym in symbol(), p in any::<u32>(),
                                                  ts in any::<u64>(), r in any::<u64>(), live in any::<bool>(),
                                                  tif in prop_oneof![Just(Tif::Day), Just(Tif::Ioc), Just(Tif::Fok)]) {
        let f = ouch::OrderFields { timestamp: ts, token: t, side: s, qty: Qty::new(q), symbol: sym, price: Price::from_raw(p), tif, order_reference: r, live };
        let acc = ouch::Accepted::new(&f);
        let Ok(ouch::Outbound::Accepted(a)) = ouch::Outbound::parse(acc.as_bytes()) else { panic!() };
        prop_assert_eq!(a.fields(), Ok(f));
        let u = ouch::Replaced::new(&f, prev);
        let Ok(ouch::Outbound::Replaced(v)) = ouch::Outbound::parse(u.as_bytes()) else { panic!() };
        prop_assert_eq!(v.fields(), Ok(f));
        prop_assert_eq!(&v.previous_token, &prev);
        let e = ouch::Executed::new(ts, t, Qty::new(q), Price::from_raw(p), live, r);
        let Ok(ouch::Outbound::Executed(v)) = ouch::Outbound::parse(e.as_bytes()) else { panic!() };
        prop_assert_eq!((v.timestamp(), v.qty(), v.price(), v.maker(), v.match_number()), (ts, Qty::new(q), Price::from_raw(p), live, r));
        let c = ouch::Canceled::new(ts, t, Qty::new(q), b'U');
        let Ok(ouch::Outbound::Canceled(v)) = ouch::Outbound::parse(c.as_bytes()) else { panic!() };
        prop_assert_eq!((v.timestamp(), v.decrement(), v.reason), (ts, Qty::new(q), b'U'));
        let x = ouch::ReplaceOrder::new(t, prev, Qty::new(q), Price::from_raw(p));
        prop_assert_eq!(ouch::Inbound::parse(x.as_bytes()).map(|m| m.bytes()), Ok(x.as_bytes()));
    }

    #[test]
    fn itch_typed_fields_are_what_was_encoded(h in header(), r in any::<u64>(), r2 in any::<u64>(), q in any::<u32>(), sym in symbol(), p in any::<u32>(), m in any::<u64>(), big in any::<u64>()) {
        let e = itch::OrderExecuted::new(h, r, Qty::new(q), m);
        let Ok(itch::Message::OrderExecuted(v)) = itch::Message::parse(e.as_bytes()) else { panic!() };
        prop_assert_eq!((v.order_reference(), v.qty(), v.match_number()), (r, Qty::new(q), m));
        let c = itch::OrderExecutedWithPrice::new(h, r, Qty::new(q), m, false, Price::from_raw(p));
        let Ok(itch::Message::OrderExecutedWithPrice(v)) = itch::Message::parse(c.as_bytes()) else { panic!() };
        prop_assert_eq!((v.order_reference(), v.qty(), v.match_number(), v.printable(), v.price()), (r, Qty::new(q), m, false, Price::from_raw(p)));
        let x = itch::OrderCancel::new(h, r, Qty::new(q));
        let Ok(itch::Message::OrderCancel(v)) = itch::Message::parse(x.as_bytes()) else { panic!() };
        prop_assert_eq!((v.order_reference(), v.qty()), (r, Qty::new(q)));
        let d = itch::OrderDelete::new(h, r);
        let Ok(itch::Message::OrderDelete(v)) = itch::Message::parse(d.as_bytes()) else { panic!() };
        prop_assert_eq!(v.order_reference(), r);
        let u = itch::OrderReplace::new(h, r, r2, Qty::new(q), Price::from_raw(p));
        let Ok(itch::Message::OrderReplace(v)) = itch::Message::parse(u.as_bytes()) else { panic!() };
        prop_assert_eq!((v.original_order_reference(), v.new_order_reference(), v.qty(), v.price()), (r, r2, Qty::new(q), Price::from_raw(p)));
        let t = itch::CrossTrade::new(h, big, sym, Price::from_raw(p), m, b'C');
        let Ok(itch::Message::CrossTrade(v)) = itch::Message::parse(t.as_bytes()) else { panic!() };
        prop_assert_eq!((v.shares(), v.symbol(), v.price(), v.match_number(), v.cross_type), (big, sym, Price::from_raw(p), m, b'C'));
        let i = itch::Imbalance { paired: big, imbalance: r, direction: b'S', far: Price::from_raw(p), near: Price::from_raw(p / 2), reference: Price::from_raw(q), cross_type: b'C' };
        let n = itch::Noii::new(h, sym, &i);
        let Ok(itch::Message::Noii(v)) = itch::Message::parse(n.as_bytes()) else { panic!() };
        prop_assert_eq!((v.symbol(), v.imbalance()), (sym, i));
        let s = itch::StockDirectory::new(h, sym, q);
        let Ok(itch::Message::StockDirectory(v)) = itch::Message::parse(s.as_bytes()) else { panic!() };
        prop_assert_eq!((v.symbol(), v.round_lot_size()), (sym, q));
        let a = itch::TradingAction::new(h, sym, b'H', *b"MWCB");
        let Ok(itch::Message::TradingAction(v)) = itch::Message::parse(a.as_bytes()) else { panic!() };
        prop_assert_eq!((v.symbol(), v.trading_state, v.reason), (sym, b'H', *b"MWCB"));
        let o = itch::AddOrder::new(h, r, Side::Buy, Qty::new(q), sym, Price::from_raw(p));
        let Ok(itch::Message::AddOrder(v)) = itch::Message::parse(o.as_bytes()) else { panic!() };
        prop_assert_eq!(v.order_reference(), r);
    }

    #[test]
    fn every_soupbin_packet_round_trips_and_a_datagram_of_them_iterates(pkts in proptest::collection::vec(soup_packet(), 1..8),
                                                                         u in "[a-z0-9]{1,6}", seq in any::<u64>()) {
        let mut datagram = Vec::new();
        let mut buf = [0u8; 256];
        let n = soupbin::write_login_request(&mut buf, u.as_bytes(), b"pw", b"TOKEX00001", seq).unwrap();
        datagram.extend_from_slice(&buf[..n]);
        let n = soupbin::write_login_accepted(&mut buf, b"TOKEX00001", seq).unwrap();
        datagram.extend_from_slice(&buf[..n]);
        for p in &pkts {
            let (parsed, rest) = soupbin::Packet::parse(p).unwrap();
            prop_assert!(rest.is_empty());
            let n = parsed.write(&mut buf).unwrap();
            prop_assert_eq!(&buf[..n], &p[..]);
            datagram.extend_from_slice(p);
        }
        let got: Vec<_> = soupbin::packets(&datagram).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got.len(), pkts.len() + 2);
        let soupbin::Packet::LoginRequest(r) = got[0] else { panic!() };
        prop_assert_eq!((r.username(), r.requested_session(), r.requested_sequence()), (u.as_bytes(), &b"TOKEX00001"[..], Ok(seq)));
        let soupbin::Packet::LoginAccepted(a) = got[1] else { panic!() };
        prop_assert_eq!(a.next_sequence(), Ok(seq));
    }

    #[test]
    fn reassembler_returns_the_same_packets_however_the_stream_is_split(pkts in proptest::collection::vec(soup_packet(), 1..20),
                                                                        cuts in proptest::collection::vec(1usize..300, 1..40)) {
        let stream: Vec<u8> = pkts.concat();
        let mut r = soupbin::Reassembler::new(1024, 256);
        let mut got = Vec::new();
        let mut at = 0;
        let mut cut = cuts.iter().cycle();
        while at < stream.len() {
            let n = (*cut.next().unwrap()).min(stream.len() - at);
            let spare = r.spare();
            let n = n.min(spare.len());
            spare[..n].copy_from_slice(&stream[at..at + n]);
            r.filled(n);
            at += n;
            while let Some(p) = r.next_packet().unwrap() {
                got.push(p.to_vec());
            }
        }
        prop_assert_eq!(got, pkts);
        prop_assert_eq!(r.pending(), 0);
    }

    #[test]
    fn moldudp64_control_packets_and_requests_round_trip(seq in any::<u64>(), count in any::<u16>()) {
        let s = *b"TOKEX00001";
        let hb = moldudp64::PacketBuilder::control(s, seq, moldudp64::HEARTBEAT);
        let p = moldudp64::Packet::parse(&hb).unwrap();
        prop_assert!(p.is_heartbeat() && !p.is_end_of_session());
        prop_assert_eq!((p.header.session(), p.header.sequence(), p.messages().count()), (&s[..], seq, 0));
        let eos = moldudp64::PacketBuilder::control(s, seq, moldudp64::END_OF_SESSION);
        prop_assert!(moldudp64::Packet::parse(&eos).unwrap().is_end_of_session());
        let mut buf = [0u8; 32];
        let n = moldudp64::Header::new(s, seq, count).write(&mut buf).unwrap();
        let r = moldudp64::Header::parse_request(&buf[..n]).unwrap();
        prop_assert_eq!((r.sequence(), r.count()), (seq, count));
        prop_assert!(moldudp64::Header::parse_request(&buf[..n - 1]).is_err());
        prop_assert!(moldudp64::Header::parse_request(&buf[..n + 1]).is_err());
    }
}

#[test]
fn truncated_and_overlong_messages_of_every_type_are_errors() {
    let sym = Symbol::new("TK2612").unwrap();
    let t = ouch::token(b"TOKEN1").unwrap();
    let (q, p) = (Qty::new(5), Price::from_raw(65_000));
    let inbound: Vec<Vec<u8>> = vec![
        ouch::EnterOrder::new(t, Side::Buy, q, sym, p, Tif::Day)
            .as_bytes()
            .to_vec(),
        ouch::ReplaceOrder::new(t, t, q, p).as_bytes().to_vec(),
        ouch::CancelOrder::new(t, q).as_bytes().to_vec(),
        ouch::ModifyOrder::new(t, Side::Sell, q).as_bytes().to_vec(),
    ];
    for m in &inbound {
        truncations_and_extensions_fail(m, |b| ouch::Inbound::parse(b).is_ok());
    }
    let f = ouch::OrderFields {
        timestamp: 1,
        token: t,
        side: Side::Buy,
        qty: q,
        symbol: sym,
        price: p,
        tif: Tif::Ioc,
        order_reference: 9,
        live: true,
    };
    let outbound: Vec<Vec<u8>> = vec![
        ouch::SystemEvent::new(1, b'S').as_bytes().to_vec(),
        ouch::Accepted::new(&f).as_bytes().to_vec(),
        ouch::Replaced::new(&f, t).as_bytes().to_vec(),
        ouch::Canceled::new(1, t, q, b'U').as_bytes().to_vec(),
        ouch::Executed::new(1, t, q, p, true, 3).as_bytes().to_vec(),
        ouch::BrokenTrade::new(1, t, 3, ouch::broken::ERRONEOUS)
            .as_bytes()
            .to_vec(),
        ouch::Rejected::new(1, t, ouch::reject::INVALID_PRICE)
            .as_bytes()
            .to_vec(),
    ];
    for m in &outbound {
        truncations_and_extensions_fail(m, |b| ouch::Outbound::parse(b).is_ok());
    }
    let h = itch::Header {
        stock_locate: 1,
        tracking_number: 2,
        timestamp: 3,
    };
    let itch_msgs: Vec<Vec<u8>> = vec![
        itch::SystemEvent::new(h, b'O').as_bytes().to_vec(),
        itch::StockDirectory::new(h, sym, 1).as_bytes().to_vec(),
        itch::TradingAction::new(h, sym, b'T', *b"    ")
            .as_bytes()
            .to_vec(),
        itch::AddOrder::new(h, 1, Side::Buy, q, sym, p)
            .as_bytes()
            .to_vec(),
        itch::OrderExecuted::new(h, 1, q, 1).as_bytes().to_vec(),
        itch::OrderExecutedWithPrice::new(h, 1, q, 1, true, p)
            .as_bytes()
            .to_vec(),
        itch::OrderCancel::new(h, 1, q).as_bytes().to_vec(),
        itch::OrderDelete::new(h, 1).as_bytes().to_vec(),
        itch::OrderReplace::new(h, 1, 2, q, p).as_bytes().to_vec(),
        itch::CrossTrade::new(h, 1, sym, p, 1, b'O')
            .as_bytes()
            .to_vec(),
        itch::Noii::new(
            h,
            sym,
            &itch::Imbalance {
                paired: 1,
                imbalance: 1,
                direction: b'N',
                far: p,
                near: p,
                reference: p,
                cross_type: b'O',
            },
        )
        .as_bytes()
        .to_vec(),
    ];
    for m in &itch_msgs {
        truncations_and_extensions_fail(m, |b| itch::Message::parse(b).is_ok());
    }
    // SoupBinTCP: a length that runs past the buffer, a fixed-size packet
    // with the wrong length, an unknown type.
    let mut buf = [0u8; 64];
    let n = soupbin::write_login_request(&mut buf, b"demo01", b"demo01", b"", 1).unwrap();
    for cut in 0..n {
        assert!(soupbin::Packet::parse(&buf[..cut]).is_err());
    }
    assert!(soupbin::Packet::parse(&[0, 1, b'?']).is_err());
    // MoldUDP64: every cut of a packet with blocks is an error.
    let mut b = moldudp64::PacketBuilder::new(*b"TOKEX00001", 1, moldudp64::MAX_PACKET);
    for m in &itch_msgs {
        b.push(m).unwrap();
    }
    let bytes = b.bytes().to_vec();
    for cut in 0..bytes.len() {
        assert!(
            moldudp64::Packet::parse(&bytes[..cut]).is_err(),
            "cut {cut}"
        );
    }
    let mut long = bytes.clone();
    long.push(0);
    assert!(moldudp64::Packet::parse(&long).is_err());
    // Unknown types.
    for t in [b'Z', 0, 0xff] {
        assert_eq!(
            itch::Message::parse(&[t; 40]),
            Err(tokex::wire::DecodeError::UnknownType(t))
        );
        assert_eq!(
            ouch::Inbound::parse(&[t; 40]),
            Err(tokex::wire::DecodeError::UnknownType(t))
        );
    }
}

#[test]
fn oversized_soupbin_length_is_refused_by_the_reassembler() {
    let mut r = soupbin::Reassembler::new(1024, 256);
    r.extend(&[0x01, 0x00, b'S']).unwrap();
    assert!(r.next_packet().is_err());
    let mut r = soupbin::Reassembler::new(16, 16);
    assert!(r.extend(&[0u8; 17]).is_err());
}

/// A random Ethernet/IPv4/UDP frame whose IPv4 header checksum is right
/// (random bytes pass it once in 65,536, so the fuzzer above almost never
/// reaches `UdpFrame::parse`'s length and slicing code): random IHL 0-15
/// (options are noise), total and UDP lengths near the frame's own or
/// anything, UDP or another protocol, fragment bits, and frames from empty
/// to past the headers. Returns the frame and its IHL in bytes.
fn checksummed_frame() -> impl Strategy<Value = (Vec<u8>, usize)> {
    (
        proptest::collection::vec(any::<u8>(), 0..160),
        0u8..16,
        prop_oneof![4 => Just(17u8), 1 => any::<u8>()],
        prop_oneof![3 => Just(0u16), 2 => Just(0x4000u16), 1 => any::<u16>()],
        prop_oneof![4 => (-12i32..12).prop_map(Ok), 1 => any::<u16>().prop_map(Err)],
        prop_oneof![4 => (-12i32..12).prop_map(Ok), 1 => any::<u16>().prop_map(Err)],
        prop_oneof![19 => Just(true), 1 => Just(false)],
    )
        .prop_map(|(body, ihl, proto, frag, total, ulen, ipv4)| {
            const ETH: usize = 14;
            let ihl = usize::from(ihl) * 4;
            let mut f = vec![0u8; ETH];
            f[12..14].copy_from_slice(if ipv4 { &[0x08, 0x00] } else { &[0x86, 0xdd] });
            f.extend_from_slice(&body);
            let ip_len = f.len() - ETH;
            let put = |f: &mut Vec<u8>, at: usize, v: u16| {
                if let Some(b) = f.get_mut(at..at + 2) {
                    b.copy_from_slice(&v.to_be_bytes());
                }
            };
            let near = |base: usize, d: Result<i32, u16>| match d {
                Ok(d) => (base as i32 + d).clamp(0, 0xffff) as u16,
                Err(any) => any,
            };
            if let Some(b) = f.get_mut(ETH) {
                *b = 0x40 | (ihl / 4) as u8;
            }
            if let Some(b) = f.get_mut(ETH + 9) {
                *b = proto;
            }
            put(&mut f, ETH + 6, frag);
            let total = near(ip_len, total);
            put(&mut f, ETH + 2, total);
            put(
                &mut f,
                ETH + ihl + 4,
                near(usize::from(total).saturating_sub(ihl), ulen),
            );
            if ihl >= 20 && f.len() >= ETH + ihl {
                put(&mut f, ETH + 10, 0);
                let c = tokex::wire::ethernet::checksum(&f[ETH..ETH + ihl], 0);
                put(&mut f, ETH + 10, c);
            }
            (f, ihl)
        })
}

#[test]
fn checksummed_random_frames_never_panic_and_their_payload_lies_inside_the_ip_datagram() {
    use std::cell::Cell;
    let decoded = Cell::new(0u32);
    let runs = cases().min(50_000);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig {
        cases: runs,
        ..ProptestConfig::default()
    });
    runner
        .run(&checksummed_frame(), |(frame, ihl)| {
            let Ok(f) = UdpFrame::parse(&frame) else {
                return Ok(());
            };
            decoded.set(decoded.get() + 1);
            let _ = (f.src(), f.dst());
            let start = f.payload.as_ptr() as usize - frame.as_ptr() as usize;
            let total = usize::from(u16::from_be_bytes([frame[16], frame[17]]));
            let ulen = usize::from(u16::from_be_bytes([
                frame[14 + ihl + 4],
                frame[14 + ihl + 5],
            ]));
            prop_assert_eq!(start, 14 + ihl + 8, "the payload follows the UDP header");
            prop_assert_eq!(f.payload.len(), ulen - 8, "cut at the UDP length");
            prop_assert!(
                start + f.payload.len() <= 14 + total,
                "inside the IP datagram"
            );
            prop_assert!(14 + total <= frame.len(), "inside the frame");
            prop_assert_eq!(f.ip.protocol, 17);
            Ok(())
        })
        .unwrap();
    // Without the checksum fixed up, about none would decode.
    assert!(
        decoded.get() > runs / 100,
        "only {} of {runs} frames decoded: the fuzz does not reach the slicing",
        decoded.get()
    );
}

/// What [`itch::stream`] must yield: each length-prefixed message decoded
/// by `Message::parse` on its own, unknown types skipped over, any other
/// error the last item.
fn stream_reference(mut buf: &[u8]) -> Vec<Result<itch::Message<'_>, tokex::wire::DecodeError>> {
    use tokex::wire::DecodeError;
    let mut out = Vec::new();
    loop {
        let [a, b, rest @ ..] = buf else {
            if !buf.is_empty() {
                out.push(Err(DecodeError::TooShort {
                    needed: 2,
                    got: buf.len(),
                }));
            }
            return out;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some((msg, tail)) = rest.split_at_checked(len) else {
            out.push(Err(DecodeError::TooShort {
                needed: len + 2,
                got: buf.len(),
            }));
            return out;
        };
        buf = tail;
        let r = itch::Message::parse(msg);
        let end = matches!(r, Err(ref e) if !matches!(e, DecodeError::UnknownType(_)));
        out.push(r);
        if end {
            return out;
        }
    }
}

/// The engine's own ITCH stream (a few thousand messages), made once.
fn engine_itch() -> &'static [u8] {
    static BUF: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BUF.get_or_init(|| {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
        let contracts = tokex::contract::ContractSet::load_dir(&dir).unwrap();
        tokex::bench::codec::itch_stream(&contracts, 2_000, 11).0
    })
}

/// What [`itch_dispatch::for_each`] hands over, in order (one instance of
/// it for the whole file: each is large to compile).
fn dispatched(b: &[u8]) -> Vec<Result<itch::Message<'_>, tokex::wire::DecodeError>> {
    let mut got = Vec::new();
    itch_dispatch::for_each(b, |m| got.push(m));
    got
}

/// `len` bytes of the engine's ITCH stream from `start` (so the framing
/// is often garbage), with bytes changed at `flips`.
fn mangled_engine_itch(
    start: prop::sample::Index,
    len: usize,
    flips: Vec<(prop::sample::Index, u8)>,
) -> Vec<u8> {
    let base = engine_itch();
    let from = start.index(base.len());
    let mut b = base[from..(from + len).min(base.len())].to_vec();
    for (at, v) in flips {
        if !b.is_empty() {
            let i = at.index(b.len());
            b[i] = v;
        }
    }
    b
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

    // The stream reads each message's type byte one message ahead (a
    // speed-up); what it yields must not change: slices of a real stream
    // starting anywhere (so framing is often garbage), with bytes changed,
    // and arbitrary bytes.
    #[test]
    fn the_stream_reading_types_ahead_yields_what_parsing_each_message_does(
        start in any::<prop::sample::Index>(),
        len in 0usize..4_000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        noise in bytes(),
    ) {
        let b = mangled_engine_itch(start, len, flips);
        prop_assert_eq!(itch::stream(&b).collect::<Vec<_>>(), stream_reference(&b));
        prop_assert_eq!(itch::stream(&noise).collect::<Vec<_>>(), stream_reference(&noise));
    }

    // The dispatch that jumps once per four messages hands over what the
    // stream yields, in the same order, on the same inputs.
    #[test]
    fn dispatch_by_groups_of_four_hands_over_what_the_stream_yields(
        start in any::<prop::sample::Index>(),
        len in 0usize..4_000,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        noise in bytes(),
    ) {
        let b = mangled_engine_itch(start, len, flips);
        for input in [&b, &noise] {
            prop_assert_eq!(dispatched(input), stream_reference(input));
        }
    }
}

/// Each way a group of four can hold something other than three book
/// types at their published lengths: an unknown type (skipped over), a
/// known type at a wrong length and an empty message (the last item), a
/// truncated tail; each at every position of a group.
#[test]
fn dispatch_by_groups_of_four_handles_odd_messages_at_every_position_of_a_group() {
    use tokex::wire::itch::{AddOrder, Header, OrderDelete, OrderExecuted};
    let h = Header {
        stock_locate: 1,
        tracking_number: 0,
        timestamp: 1,
    };
    let sym = Symbol::new("TK2612").unwrap();
    let add = AddOrder::new(h, 7, Side::Buy, Qty::new(3), sym, Price::from_raw(65_000));
    let good: [Vec<u8>; 3] = [
        add.as_bytes().to_vec(),
        OrderExecuted::new(h, 7, Qty::new(1), 9).as_bytes().to_vec(),
        OrderDelete::new(h, 7).as_bytes().to_vec(),
    ];
    let mut long_add = add.as_bytes().to_vec();
    long_add.push(0);
    let odd: [Vec<u8>; 4] = [b"Y_unknown".to_vec(), long_add, Vec::new(), b"Z".to_vec()];
    let frame = |msgs: &[&Vec<u8>]| {
        let mut b = Vec::new();
        for m in msgs {
            b.extend_from_slice(&(m.len() as u16).to_be_bytes());
            b.extend_from_slice(m);
        }
        b
    };
    for o in &odd {
        for at in 0..9 {
            let mut msgs: Vec<&Vec<u8>> = (0..9).map(|i| &good[i % 3]).collect();
            msgs[at] = o;
            let b = frame(&msgs);
            for cut in [b.len(), b.len() - 1, b.len() - 20] {
                assert_eq!(
                    dispatched(&b[..cut]),
                    stream_reference(&b[..cut]),
                    "odd {o:?} at {at}, cut at {cut}"
                );
            }
        }
    }
}
