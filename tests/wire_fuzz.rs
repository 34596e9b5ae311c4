//! Decoders never panic: arbitrary bytes, truncations and extensions of
//! valid messages give an error or a value, never a crash. And every
//! message round-trips through its encoder and decoder.
//!
//! At least 100,000 arbitrary inputs per decoder by default; set
//! PROPTEST_CASES for a longer run.

use proptest::prelude::*;
use tokex::types::{Price, Qty, Side, Symbol, Tif};
use tokex::wire::ethernet::UdpFrame;
use tokex::wire::{itch, moldudp64, ouch, soupbin};
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
    if let Ok(p) = moldudp64::Packet::parse(b) {
        for (_, m) in p.messages() {
            let _ = itch::Message::parse(m);
        }
    }
    if let Ok(f) = UdpFrame::parse(b) {
        let _ = (f.src(), f.dst(), f.payload.len());
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
