//! ITCH 5.0 market-data messages.
//!
//! Every message starts with `Message Type` (1), `Stock Locate` (2),
//! `Tracking Number` (2) and `Timestamp` (6 bytes, ns since midnight). tokex
//! publishes System Event `S`, Stock Directory `R`, Trading Action `H`, Add
//! Order `A`, Order Executed `E`, Order Executed With Price `C`, Order Cancel
//! `X`, Order Delete `D`, Order Replace `U`, Cross Trade `Q` and NOII `I`,
//! with the layouts of the published ITCH 5.0 specification.

use zerocopy::network_endian::{U16, U32, U64};

use super::{to_u48, u48, DecodeError};
use crate::types::{Price, Qty, Side, Symbol};

/// Message type bytes.
pub mod kind {
    pub const SYSTEM_EVENT: u8 = b'S';
    pub const STOCK_DIRECTORY: u8 = b'R';
    pub const TRADING_ACTION: u8 = b'H';
    pub const ADD_ORDER: u8 = b'A';
    pub const ORDER_EXECUTED: u8 = b'E';
    pub const ORDER_EXECUTED_WITH_PRICE: u8 = b'C';
    pub const ORDER_CANCEL: u8 = b'X';
    pub const ORDER_DELETE: u8 = b'D';
    pub const ORDER_REPLACE: u8 = b'U';
    pub const CROSS_TRADE: u8 = b'Q';
    pub const NOII: u8 = b'I';
}

/// System Event codes.
pub mod event {
    pub const START_OF_MESSAGES: u8 = b'O';
    pub const START_OF_SYSTEM_HOURS: u8 = b'S';
    pub const START_OF_MARKET_HOURS: u8 = b'Q';
    pub const END_OF_MARKET_HOURS: u8 = b'M';
    pub const END_OF_SYSTEM_HOURS: u8 = b'E';
    pub const END_OF_MESSAGES: u8 = b'C';
}

/// Trading Action states.
pub mod trading_state {
    pub const HALTED: u8 = b'H';
    pub const PAUSED: u8 = b'P';
    pub const QUOTATION_ONLY: u8 = b'Q';
    pub const TRADING: u8 = b'T';
}

/// The fields every message starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    pub stock_locate: u16,
    pub tracking_number: u16,
    /// Nanoseconds since midnight (48 bits on the wire).
    pub timestamp: u64,
}

macro_rules! itch_messages {
    ($($(#[$m:meta])* $name:ident = $kind:path, $len:expr, { $($(#[$fm:meta])* pub $f:ident : $t:ty),* $(,)? })*) => {
        $(
            wire_struct!($(#[$m])* $name, $len, {
                pub msg_type: u8,
                pub stock_locate: U16,
                pub tracking_number: U16,
                pub timestamp: [u8; 6],
                $($(#[$fm])* pub $f: $t),*
            });
            impl $name {
                /// The common header.
                pub fn header(&self) -> Header {
                    Header {
                        stock_locate: self.stock_locate.get(),
                        tracking_number: self.tracking_number.get(),
                        timestamp: u48(&self.timestamp),
                    }
                }
                /// A message with `h` as its header and every other field zero.
                fn with_header(h: Header) -> $name {
                    let mut m = <$name as zerocopy::FromZeros>::new_zeroed();
                    m.msg_type = $kind;
                    m.stock_locate = U16::new(h.stock_locate);
                    m.tracking_number = U16::new(h.tracking_number);
                    m.timestamp = to_u48(h.timestamp);
                    m
                }
            }
        )*

        /// One decoded ITCH message, borrowing the bytes.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum Message<'a> {
            $($name(&'a $name)),*
        }

        impl<'a> Message<'a> {
            /// Decodes one message of exactly `b.len()` bytes.
            // Always inlined: the caller's `match` on the result then fuses
            // with this one into a single jump on the type byte. With a
            // plain `#[inline]`, unrelated changes to a caller flipped it
            // out of line (a call, the result through memory and a second
            // switch per message; see benches/wire.rs).
            #[inline(always)]
            pub fn parse(b: &'a [u8]) -> Result<Message<'a>, DecodeError> {
                let t = *b.first().ok_or(DecodeError::TooShort { needed: 1, got: 0 })?;
                Message::parse_typed(t, b)
            }

            /// As [`Message::parse`] for a non-empty `b` whose type byte
            /// `t` (= `b[0]`) the caller has read already.
            #[inline(always)]
            fn parse_typed(t: u8, b: &'a [u8]) -> Result<Message<'a>, DecodeError> {
                debug_assert_eq!(b.first(), Some(&t));
                match t {
                    $($kind => Ok(Message::$name($name::view(b)?)),)*
                    other => Err(DecodeError::UnknownType(other)),
                }
            }

            /// The common header.
            pub fn header(&self) -> Header {
                match self {
                    $(Message::$name(m) => m.header()),*
                }
            }

            /// The message bytes.
            pub fn bytes(&self) -> &'a [u8] {
                match self {
                    $(Message::$name(m) => zerocopy::IntoBytes::as_bytes(*m)),*
                }
            }
        }
    };
}

itch_messages! {
    /// System Event `S` (12 bytes).
    SystemEvent = kind::SYSTEM_EVENT, 12, {
        pub event_code: u8,
    }
    /// Stock Directory `R` (39 bytes): one per contract at start of day.
    StockDirectory = kind::STOCK_DIRECTORY, 39, {
        pub stock: [u8; 8],
        pub market_category: u8,
        pub financial_status: u8,
        pub round_lot_size: U32,
        pub round_lots_only: u8,
        pub issue_classification: u8,
        pub issue_subtype: [u8; 2],
        pub authenticity: u8,
        pub short_sale_threshold: u8,
        pub ipo_flag: u8,
        pub luld_tier: u8,
        pub etp_flag: u8,
        pub etp_leverage_factor: U32,
        pub inverse_indicator: u8,
    }
    /// Stock Trading Action `H` (25 bytes).
    TradingAction = kind::TRADING_ACTION, 25, {
        pub stock: [u8; 8],
        pub trading_state: u8,
        pub reserved: u8,
        pub reason: [u8; 4],
    }
    /// Add Order `A` (36 bytes).
    AddOrder = kind::ADD_ORDER, 36, {
        pub order_reference: U64,
        pub side: u8,
        pub shares: U32,
        pub stock: [u8; 8],
        pub price: U32,
    }
    /// Order Executed `E` (31 bytes), at the resting order's price.
    OrderExecuted = kind::ORDER_EXECUTED, 31, {
        pub order_reference: U64,
        pub executed_shares: U32,
        pub match_number: U64,
    }
    /// Order Executed With Price `C` (36 bytes).
    OrderExecutedWithPrice = kind::ORDER_EXECUTED_WITH_PRICE, 36, {
        pub order_reference: U64,
        pub executed_shares: U32,
        pub match_number: U64,
        pub printable: u8,
        pub execution_price: U32,
    }
    /// Order Cancel `X` (23 bytes): a partial cancel.
    OrderCancel = kind::ORDER_CANCEL, 23, {
        pub order_reference: U64,
        pub cancelled_shares: U32,
    }
    /// Order Delete `D` (19 bytes).
    OrderDelete = kind::ORDER_DELETE, 19, {
        pub order_reference: U64,
    }
    /// Order Replace `U` (35 bytes).
    OrderReplace = kind::ORDER_REPLACE, 35, {
        pub original_order_reference: U64,
        pub new_order_reference: U64,
        pub shares: U32,
        pub price: U32,
    }
    /// Cross Trade `Q` (40 bytes).
    CrossTrade = kind::CROSS_TRADE, 40, {
        pub shares: U64,
        pub stock: [u8; 8],
        pub cross_price: U32,
        pub match_number: U64,
        pub cross_type: u8,
    }
    /// Net Order Imbalance Indicator `I` (50 bytes).
    Noii = kind::NOII, 50, {
        pub paired_shares: U64,
        pub imbalance_shares: U64,
        pub imbalance_direction: u8,
        pub stock: [u8; 8],
        pub far_price: U32,
        pub near_price: U32,
        pub current_reference_price: U32,
        pub cross_type: u8,
        pub price_variation_indicator: u8,
    }
}

impl SystemEvent {
    pub fn new(h: Header, event_code: u8) -> SystemEvent {
        let mut m = SystemEvent::with_header(h);
        m.event_code = event_code;
        m
    }
}

impl StockDirectory {
    /// A directory entry for a futures contract: lot size as the round lot,
    /// round lots only, issue classification `Q` (other securities), issue
    /// sub-type `Z` (not applicable), not an ETP, not inverse.
    pub fn new(h: Header, stock: Symbol, round_lot_size: u32) -> StockDirectory {
        let mut m = StockDirectory::with_header(h);
        m.stock = *stock.wire();
        m.market_category = b' ';
        m.financial_status = b' ';
        m.round_lot_size = U32::new(round_lot_size);
        m.round_lots_only = b'Y';
        m.issue_classification = b'Q';
        m.issue_subtype = *b"Z ";
        m.authenticity = b'P';
        m.short_sale_threshold = b' ';
        m.ipo_flag = b' ';
        m.luld_tier = b' ';
        m.etp_flag = b'N';
        m.inverse_indicator = b'N';
        m
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
    pub fn round_lot_size(&self) -> u32 {
        self.round_lot_size.get()
    }
}

impl TradingAction {
    pub fn new(h: Header, stock: Symbol, state: u8, reason: [u8; 4]) -> TradingAction {
        let mut m = TradingAction::with_header(h);
        m.stock = *stock.wire();
        m.trading_state = state;
        m.reserved = b' ';
        m.reason = reason;
        m
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
}

impl AddOrder {
    pub fn new(
        h: Header,
        order: u64,
        side: Side,
        qty: Qty,
        stock: Symbol,
        price: Price,
    ) -> AddOrder {
        let mut m = AddOrder::with_header(h);
        m.order_reference = U64::new(order);
        m.side = side.as_byte();
        m.shares = U32::new(qty.lots());
        m.stock = *stock.wire();
        m.price = U32::new(price.raw());
        m
    }
    pub fn order_reference(&self) -> u64 {
        self.order_reference.get()
    }
    pub fn side(&self) -> Result<Side, DecodeError> {
        match self.side {
            b'B' => Ok(Side::Buy),
            b'S' => Ok(Side::Sell),
            _ => Err(DecodeError::BadField("Buy/Sell Indicator")),
        }
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
    pub fn price(&self) -> Price {
        Price::from_raw(self.price.get())
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
}

impl OrderExecuted {
    pub fn new(h: Header, order: u64, qty: Qty, match_number: u64) -> OrderExecuted {
        let mut m = OrderExecuted::with_header(h);
        m.order_reference = U64::new(order);
        m.executed_shares = U32::new(qty.lots());
        m.match_number = U64::new(match_number);
        m
    }
    pub fn order_reference(&self) -> u64 {
        self.order_reference.get()
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.executed_shares.get())
    }
    pub fn match_number(&self) -> u64 {
        self.match_number.get()
    }
}

impl OrderExecutedWithPrice {
    pub fn new(
        h: Header,
        order: u64,
        qty: Qty,
        match_number: u64,
        printable: bool,
        price: Price,
    ) -> OrderExecutedWithPrice {
        let mut m = OrderExecutedWithPrice::with_header(h);
        m.order_reference = U64::new(order);
        m.executed_shares = U32::new(qty.lots());
        m.match_number = U64::new(match_number);
        m.printable = if printable { b'Y' } else { b'N' };
        m.execution_price = U32::new(price.raw());
        m
    }
    pub fn order_reference(&self) -> u64 {
        self.order_reference.get()
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.executed_shares.get())
    }
    pub fn match_number(&self) -> u64 {
        self.match_number.get()
    }
    pub fn printable(&self) -> bool {
        self.printable == b'Y'
    }
    pub fn price(&self) -> Price {
        Price::from_raw(self.execution_price.get())
    }
}

impl OrderCancel {
    pub fn new(h: Header, order: u64, cancelled: Qty) -> OrderCancel {
        let mut m = OrderCancel::with_header(h);
        m.order_reference = U64::new(order);
        m.cancelled_shares = U32::new(cancelled.lots());
        m
    }
    pub fn order_reference(&self) -> u64 {
        self.order_reference.get()
    }
    /// Lots taken off the order.
    pub fn qty(&self) -> Qty {
        Qty::new(self.cancelled_shares.get())
    }
}

impl OrderDelete {
    pub fn new(h: Header, order: u64) -> OrderDelete {
        let mut m = OrderDelete::with_header(h);
        m.order_reference = U64::new(order);
        m
    }
    pub fn order_reference(&self) -> u64 {
        self.order_reference.get()
    }
}

impl OrderReplace {
    pub fn new(h: Header, original: u64, new: u64, qty: Qty, price: Price) -> OrderReplace {
        let mut m = OrderReplace::with_header(h);
        m.original_order_reference = U64::new(original);
        m.new_order_reference = U64::new(new);
        m.shares = U32::new(qty.lots());
        m.price = U32::new(price.raw());
        m
    }
    pub fn original_order_reference(&self) -> u64 {
        self.original_order_reference.get()
    }
    pub fn new_order_reference(&self) -> u64 {
        self.new_order_reference.get()
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
    pub fn price(&self) -> Price {
        Price::from_raw(self.price.get())
    }
}

impl CrossTrade {
    pub fn new(
        h: Header,
        shares: u64,
        stock: Symbol,
        price: Price,
        match_number: u64,
        cross_type: u8,
    ) -> CrossTrade {
        let mut m = CrossTrade::with_header(h);
        m.shares = U64::new(shares);
        m.stock = *stock.wire();
        m.cross_price = U32::new(price.raw());
        m.match_number = U64::new(match_number);
        m.cross_type = cross_type;
        m
    }
    /// Cross Trade shares are 8 bytes on the wire.
    pub fn shares(&self) -> u64 {
        self.shares.get()
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
    pub fn price(&self) -> Price {
        Price::from_raw(self.cross_price.get())
    }
    pub fn match_number(&self) -> u64 {
        self.match_number.get()
    }
}

/// The fields of a NOII message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imbalance {
    pub paired: u64,
    pub imbalance: u64,
    /// `B` buy, `S` sell, `N` none, `O` insufficient orders.
    pub direction: u8,
    pub far: Price,
    pub near: Price,
    pub reference: Price,
    pub cross_type: u8,
}

impl Noii {
    pub fn new(h: Header, stock: Symbol, i: &Imbalance) -> Noii {
        let mut m = Noii::with_header(h);
        m.paired_shares = U64::new(i.paired);
        m.imbalance_shares = U64::new(i.imbalance);
        m.imbalance_direction = i.direction;
        m.stock = *stock.wire();
        m.far_price = U32::new(i.far.raw());
        m.near_price = U32::new(i.near.raw());
        m.current_reference_price = U32::new(i.reference.raw());
        m.cross_type = i.cross_type;
        m.price_variation_indicator = b' ';
        m
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
    /// The typed fields (the inverse of `new`).
    pub fn imbalance(&self) -> Imbalance {
        Imbalance {
            paired: self.paired_shares.get(),
            imbalance: self.imbalance_shares.get(),
            direction: self.imbalance_direction,
            far: Price::from_raw(self.far_price.get()),
            near: Price::from_raw(self.near_price.get()),
            reference: Price::from_raw(self.current_reference_price.get()),
            cross_type: self.cross_type,
        }
    }
}

/// Iterates a length-prefixed ITCH stream (NASDAQ's file format and
/// `tokex replay`'s `itch.bin`: each message preceded by a big-endian u16
/// length).
///
/// A message of a type tokex does not decode (ITCH 5.0 defines more than
/// tokex publishes: Reg SHO `Y`, MWCB `V`/`W`, IPO `K`, LULD `J`, Add with
/// MPID `F`, Trade `P`, Broken Trade `B`, ... in every NASDAQ file) is
/// yielded as [`DecodeError::UnknownType`], and the iteration goes on with
/// the next message: its length prefix says where that starts. Any other
/// error (a length running past the end of the buffer, a trailing byte, a
/// known type with the wrong length) ends the iteration after it is
/// yielded: the framing can no longer be trusted.
pub fn stream(buf: &[u8]) -> ItchStream<'_> {
    ItchStream {
        buf,
        failed: false,
        next_type: type_ahead(buf),
    }
}

/// The type byte of the message at the front of a length-prefixed `buf`
/// (0 if there is none).
#[inline(always)]
fn type_ahead(buf: &[u8]) -> u8 {
    buf.get(2).copied().unwrap_or(0)
}

/// Iterator over a length-prefixed ITCH stream; see [`stream`].
pub struct ItchStream<'a> {
    buf: &'a [u8],
    failed: bool,
    /// The type byte of the message at the front of `buf`, read one
    /// message ahead (see `next`).
    next_type: u8,
}

impl<'a> Iterator for ItchStream<'a> {
    type Item = Result<Message<'a>, DecodeError>;

    #[inline(always)]
    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let [a, b, rest @ ..] = self.buf else {
            if !self.buf.is_empty() {
                self.failed = true;
                return Some(Err(DecodeError::TooShort {
                    needed: 2,
                    got: self.buf.len(),
                }));
            }
            return None;
        };
        let len = usize::from(u16::from_be_bytes([*a, *b]));
        let Some((msg, tail)) = rest.split_at_checked(len) else {
            self.failed = true;
            return Some(Err(DecodeError::TooShort {
                needed: len + 2,
                got: self.buf.len(),
            }));
        };
        self.buf = tail;
        // The next message's type byte is read now, before this message's
        // branch on its type: when that branch was mispredicted, the next
        // one's input is ready as soon as the right path is fetched,
        // instead of waiting for a load issued after the flush.
        let t = std::mem::replace(&mut self.next_type, type_ahead(tail));
        let r = if msg.is_empty() {
            Err(DecodeError::TooShort { needed: 1, got: 0 })
        } else {
            Message::parse_typed(t, msg)
        };
        // Only the error path looks at the error: the path of a decoded
        // message is the same as when every error ended the stream.
        if let Err(e) = &r {
            self.failed = !matches!(e, DecodeError::UnknownType(_));
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zerocopy::IntoBytes;

    fn h() -> Header {
        Header {
            stock_locate: 3,
            tracking_number: 0,
            timestamp: 34_200_000_000_123,
        }
    }

    #[test]
    fn every_message_has_its_published_length() {
        assert_eq!(
            [
                SystemEvent::LEN,
                StockDirectory::LEN,
                TradingAction::LEN,
                AddOrder::LEN,
                OrderExecuted::LEN,
                OrderExecutedWithPrice::LEN,
                OrderCancel::LEN,
                OrderDelete::LEN,
                OrderReplace::LEN,
                CrossTrade::LEN,
                Noii::LEN
            ],
            [12, 39, 25, 36, 31, 36, 23, 19, 35, 40, 50]
        );
    }

    #[test]
    fn add_order_layout_matches_the_spec_offsets() {
        let sym = Symbol::new("GH2612").unwrap();
        let m = AddOrder::new(
            h(),
            0x0102_0304_0506_0708,
            Side::Sell,
            Qty::new(9),
            sym,
            Price::from_raw(21_500),
        );
        let b = m.as_bytes();
        assert_eq!(b[0], b'A');
        assert_eq!(&b[1..3], &[0, 3]);
        assert_eq!(&b[5..11], &to_u48(34_200_000_000_123));
        assert_eq!(&b[11..19], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(b[19], b'S');
        assert_eq!(&b[20..24], &9u32.to_be_bytes());
        assert_eq!(&b[24..32], b"GH2612  ");
        assert_eq!(&b[32..36], &21_500u32.to_be_bytes());
        let Ok(Message::AddOrder(v)) = Message::parse(b) else {
            panic!()
        };
        assert_eq!(v.header(), h());
        assert_eq!(
            (v.side(), v.qty(), v.price(), v.symbol()),
            (Ok(Side::Sell), Qty::new(9), Price::from_raw(21_500), sym)
        );
    }

    #[test]
    fn length_prefixed_stream_iterates_and_stops_at_truncation() {
        let mut buf = Vec::new();
        for m in [
            OrderDelete::new(h(), 1).as_bytes(),
            OrderDelete::new(h(), 2).as_bytes(),
        ] {
            buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
            buf.extend_from_slice(m);
        }
        assert_eq!(stream(&buf).filter(Result::is_ok).count(), 2);
        let cut = &buf[..buf.len() - 1];
        let all: Vec<_> = stream(cut).collect();
        assert_eq!(all.len(), 2);
        assert!(all[1].is_err());
    }

    /// ITCH 5.0 Reg SHO Restriction `Y` (20 bytes), a type every NASDAQ
    /// file carries and tokex does not decode.
    fn reg_sho(stock: &[u8; 8], action: u8) -> Vec<u8> {
        let mut m = vec![b'Y', 0, 3, 0, 0];
        m.extend_from_slice(&to_u48(34_200_000_000_000));
        m.extend_from_slice(stock);
        m.push(action);
        assert_eq!(m.len(), 20);
        m
    }

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut buf = Vec::new();
        for m in messages {
            buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
            buf.extend_from_slice(m);
        }
        buf
    }

    #[test]
    fn a_type_tokex_does_not_decode_is_yielded_as_unknown_and_the_stream_goes_on() {
        let y = reg_sho(b"GH2612  ", b'0');
        let buf = framed(&[
            OrderDelete::new(h(), 1).as_bytes(),
            &y,
            OrderDelete::new(h(), 2).as_bytes(),
            &y,
            &[b'L'; 26], // Market Participant Position
            OrderDelete::new(h(), 3).as_bytes(),
        ]);
        let got: Vec<_> = stream(&buf)
            .map(|r| {
                r.map(|m| match m {
                    Message::OrderDelete(d) => d.order_reference.get(),
                    _ => 0,
                })
            })
            .collect();
        assert_eq!(
            got,
            vec![
                Ok(1),
                Err(DecodeError::UnknownType(b'Y')),
                Ok(2),
                Err(DecodeError::UnknownType(b'Y')),
                Err(DecodeError::UnknownType(b'L')),
                Ok(3)
            ]
        );
    }

    #[test]
    fn framing_errors_and_a_known_type_of_the_wrong_length_still_end_the_stream() {
        let y = reg_sho(b"GH2612  ", b'0');
        let d = OrderDelete::new(h(), 1);
        // A length running past the end, right after an unknown type.
        let mut cut = framed(&[&y, d.as_bytes()]);
        cut.pop();
        let got: Vec<_> = stream(&cut).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], Err(DecodeError::UnknownType(b'Y')));
        assert!(matches!(got[1], Err(DecodeError::TooShort { .. })));
        // One trailing byte.
        let mut odd = framed(&[&y]);
        odd.push(0);
        assert_eq!(stream(&odd).count(), 2);
        // A Delete of 20 bytes: the framing is not ITCH's.
        let buf = framed(&[&[b'D'; 20], d.as_bytes()]);
        let got: Vec<_> = stream(&buf).collect();
        assert_eq!(got, vec![Err(DecodeError::BadLength(20))]);
        // An empty message.
        let buf = framed(&[&[], d.as_bytes()]);
        assert_eq!(stream(&buf).count(), 1);
    }

    #[test]
    fn unknown_type_and_wrong_length_are_errors() {
        assert_eq!(Message::parse(b"Z"), Err(DecodeError::UnknownType(b'Z')));
        assert!(matches!(
            Message::parse(&[b'D'; 18]),
            Err(DecodeError::TooShort { .. })
        ));
        assert_eq!(Message::parse(&[b'D'; 20]), Err(DecodeError::BadLength(20)));
    }
}
