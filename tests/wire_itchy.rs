//! An ITCH 5.0 stream written by tokex (the length-prefixed `itch.bin`
//! format) is read by the independent `itchy` parser to the same values.

use tokex::types::{Price, Qty, Side, Symbol};
use tokex::wire::itch::{self, Header};
use zerocopy::IntoBytes;

/// What `itchy` reads from `msgs` written as a length-prefixed stream.
fn itchy_parse(msgs: &[Vec<u8>]) -> Vec<itchy::Message> {
    let mut stream = Vec::new();
    for m in msgs {
        stream.extend_from_slice(&(m.len() as u16).to_be_bytes());
        stream.extend_from_slice(m);
    }
    itchy::MessageStream::from_reader(&stream[..])
        .collect::<Result<_, _>>()
        .expect("itchy parses tokex's ITCH")
}

#[test]
fn itchy_decodes_every_message_tokex_publishes() {
    let h = |locate: u16, ts: u64| Header {
        stock_locate: locate,
        tracking_number: 0,
        timestamp: ts,
    };
    let sym = Symbol::new("TK2612").unwrap();
    let msgs: Vec<Vec<u8>> = vec![
        itch::SystemEvent::new(h(0, 1), itch::event::START_OF_MESSAGES)
            .as_bytes()
            .to_vec(),
        itch::StockDirectory::new(h(1, 2), sym, 10_000)
            .as_bytes()
            .to_vec(),
        itch::TradingAction::new(h(1, 3), sym, itch::trading_state::TRADING, *b"    ")
            .as_bytes()
            .to_vec(),
        itch::AddOrder::new(
            h(1, 4),
            77,
            Side::Buy,
            Qty::new(12),
            sym,
            Price::from_raw(65_120),
        )
        .as_bytes()
        .to_vec(),
        itch::OrderExecuted::new(h(1, 5), 77, Qty::new(2), 9)
            .as_bytes()
            .to_vec(),
        itch::OrderExecutedWithPrice::new(
            h(1, 6),
            77,
            Qty::new(1),
            10,
            true,
            Price::from_raw(65_110),
        )
        .as_bytes()
        .to_vec(),
        itch::OrderCancel::new(h(1, 7), 77, Qty::new(3))
            .as_bytes()
            .to_vec(),
        itch::OrderReplace::new(h(1, 8), 77, 78, Qty::new(5), Price::from_raw(65_130))
            .as_bytes()
            .to_vec(),
        itch::OrderDelete::new(h(1, 9), 78).as_bytes().to_vec(),
        itch::CrossTrade::new(h(1, 10), 40, sym, Price::from_raw(65_000), 11, b'O')
            .as_bytes()
            .to_vec(),
        itch::Noii::new(
            h(1, 11),
            sym,
            &itch::Imbalance {
                paired: 100,
                imbalance: 20,
                direction: b'B',
                far: Price::from_raw(65_100),
                near: Price::from_raw(65_050),
                reference: Price::from_raw(65_000),
                cross_type: b'O',
            },
        )
        .as_bytes()
        .to_vec(),
    ];
    let parsed = itchy_parse(&msgs);
    assert_eq!(parsed.len(), msgs.len());
    for (i, m) in parsed.iter().enumerate() {
        assert_eq!(m.tag, msgs[i][0]);
        assert_eq!(m.stock_locate, if i == 0 { 0 } else { 1 });
        assert_eq!(m.timestamp, i as u64 + 1);
    }
    use itchy::Body;
    assert!(
        matches!(&parsed[1].body, Body::StockDirectory(d) if d.stock.as_str().trim() == "TK2612" && d.round_lot_size == 10_000)
    );
    assert!(matches!(&parsed[3].body, Body::AddOrder(a)
        if a.reference == 77 && a.side == itchy::Side::Buy && a.shares == 12 && a.stock.as_str().trim() == "TK2612" && a.price.raw() == 65_120));
    assert_eq!(
        parsed[4].body,
        Body::OrderExecuted {
            reference: 77,
            executed: 2,
            match_number: 9
        }
    );
    assert!(
        matches!(&parsed[5].body, Body::OrderExecutedWithPrice { reference: 77, executed: 1, match_number: 10, printable: true, price } if price.raw() == 65_110)
    );
    assert_eq!(
        parsed[6].body,
        Body::OrderCancelled {
            reference: 77,
            cancelled: 3
        }
    );
    assert!(
        matches!(&parsed[7].body, Body::ReplaceOrder(r) if r.old_reference == 77 && r.new_reference == 78 && r.shares == 5 && r.price.raw() == 65_130)
    );
    assert_eq!(parsed[8].body, Body::DeleteOrder { reference: 78 });
    assert!(
        matches!(&parsed[9].body, Body::CrossTrade(c) if c.shares == 40 && c.match_number == 11 && c.cross_price.raw() == 65_000)
    );
    assert!(
        matches!(&parsed[10].body, Body::Imbalance(n) if n.paired_shares == 100 && n.imbalance_shares == 20)
    );
}

#[test]
fn itchy_reads_header_and_field_extremes_as_tokex_wrote_them() {
    let h = Header {
        stock_locate: u16::MAX,
        tracking_number: 0xBEEF,
        timestamp: tokex::types::NANOS_PER_DAY - 1,
    };
    let sym = Symbol::new("GB2612XY").unwrap();
    let msgs = [
        itch::AddOrder::new(
            h,
            u64::MAX,
            Side::Sell,
            Qty::new(u32::MAX),
            sym,
            Price::from_raw(u32::MAX),
        )
        .as_bytes()
        .to_vec(),
        itch::OrderReplace::new(h, u64::MAX, u64::MAX - 1, Qty::new(1), Price::from_raw(1))
            .as_bytes()
            .to_vec(),
    ];
    let parsed = itchy_parse(&msgs);
    for m in &parsed {
        assert_eq!(
            (m.stock_locate, m.tracking_number, m.timestamp),
            (u16::MAX, 0xBEEF, tokex::types::NANOS_PER_DAY - 1)
        );
    }
    assert!(matches!(&parsed[0].body, itchy::Body::AddOrder(a)
        if a.reference == u64::MAX && a.side == itchy::Side::Sell && a.shares == u32::MAX
            && a.stock.as_str() == "GB2612XY" && a.price.raw() == u32::MAX));
    assert!(matches!(&parsed[1].body, itchy::Body::ReplaceOrder(r)
        if r.old_reference == u64::MAX && r.new_reference == u64::MAX - 1 && r.shares == 1 && r.price.raw() == 1));
}
