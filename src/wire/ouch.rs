//! OUCH 4.2 order-entry messages, carried in SoupBinTCP Unsequenced
//! (inbound) and Sequenced (outbound) packets.
//!
//! Inbound: Enter Order `O`, Replace Order `U`, Cancel Order `X`, Modify
//! Order `M`. Outbound (each with an 8-byte timestamp, ns since midnight):
//! System Event `S`, Accepted `A`, Replaced `U`, Canceled `C`, Executed `E`,
//! Broken Trade `B`, Rejected `J`. Layouts follow the published OUCH 4.2
//! specification; prices are u32 with 4 implied decimals, `Stock` is the
//! 8-character contract symbol, `Shares` are lots.
//!
//! Time in force: OUCH 4.2 has no FOK code. tokex reads `Time In Force` 0
//! (immediate) as IOC, or as FOK when `Minimum Quantity` equals `Shares`;
//! any other value (99998 market hours, 99999 system hours, seconds) as DAY.

use super::{trim, DecodeError, EncodeError};
use crate::types::{Price, Qty, Side, Symbol, Tif};
use zerocopy::network_endian::{U32, U64};
use zerocopy::IntoBytes;

/// Order tokens: 14 alpha characters, space padded on the right.
pub type Token = [u8; 14];

/// A token as one integer that orders like its bytes: compared and hashed
/// without the call to `memcmp` that 14-byte arrays get.
pub fn token_key(token: &Token) -> u128 {
    let mut b = [0u8; 16];
    b[..14].copy_from_slice(token);
    u128::from_be_bytes(b)
}

/// A token from text (at most 14 bytes), right padded with spaces.
pub fn token(s: &[u8]) -> Result<Token, EncodeError> {
    super::alpha_right(s)
}

/// `Time In Force` values.
pub mod tif {
    pub const IMMEDIATE: u32 = 0;
    pub const MARKET_HOURS: u32 = 99_998;
    pub const SYSTEM_HOURS: u32 = 99_999;
}

/// Rejected `Reason` codes: OUCH 4.2's, and two of tokex's own for what
/// 4.2 has no code for (a per-session rate limit, an exhausted capacity);
/// tshark's OUCH dissector shows those two as "Unknown".
pub mod reject {
    pub const TEST_MODE: u8 = b'T';
    pub const HALTED: u8 = b'H';
    pub const SHARES_EXCEED_THRESHOLD: u8 = b'Z';
    pub const INVALID_STOCK: u8 = b'S';
    pub const INVALID_DISPLAY: u8 = b'D';
    pub const EXCHANGE_CLOSED: u8 = b'C';
    /// "This order is not allowed in this type of cross": tokex sends it
    /// for a time in force the phase does not take (an IOC in a call).
    pub const NOT_ALLOWED_NOW: u8 = b'R';
    pub const INVALID_PRICE: u8 = b'X';
    pub const INVALID_MIN_QTY: u8 = b'N';
    pub const OTHER: u8 = b'O';
    /// "Exceeded shares limit": a position limit.
    pub const EXCEEDED_SHARES_LIMIT: u8 = b'm';
    /// "Exceeded dollar value limit": the account's credit cannot cover
    /// the order's margin.
    pub const EXCEEDED_DOLLAR_VALUE_LIMIT: u8 = b'n';
    /// tokex's own: over the session's rate limit.
    pub const FLOW_CONTROL: u8 = b'F';
    /// tokex's own: the engine's order capacity is exhausted.
    pub const PROCESSING_ERROR: u8 = b'J';
}

/// Canceled `Reason` codes.
pub mod cancel {
    pub const USER_REQUESTED: u8 = b'U';
    pub const IMMEDIATE_OR_CANCEL: u8 = b'I';
    pub const TIMEOUT: u8 = b'T';
    pub const SUPERVISORY: u8 = b'S';
    pub const SELF_MATCH_PREVENTION: u8 = b'Q';
    pub const SYSTEM: u8 = b'Z';
    pub const HALTED: u8 = b'H';
    pub const CLOSED: u8 = b'E';
}

/// Broken Trade `Reason` codes.
pub mod broken {
    pub const ERRONEOUS: u8 = b'E';
    pub const CONSENT: u8 = b'C';
    pub const SUPERVISORY: u8 = b'S';
    pub const EXTERNAL: u8 = b'X';
}

/// Message type bytes.
pub mod kind {
    pub const ENTER: u8 = b'O';
    pub const REPLACE: u8 = b'U';
    pub const CANCEL: u8 = b'X';
    pub const MODIFY: u8 = b'M';
    pub const SYSTEM_EVENT: u8 = b'S';
    pub const ACCEPTED: u8 = b'A';
    pub const REPLACED: u8 = b'U';
    pub const CANCELED: u8 = b'C';
    pub const EXECUTED: u8 = b'E';
    pub const BROKEN_TRADE: u8 = b'B';
    pub const REJECTED: u8 = b'J';
    /// Order Modified, the answer to a Modify Order (outbound; the same
    /// byte as the inbound Modify Order).
    pub const MODIFIED: u8 = b'M';
}

/// Declares a message enum that borrows one wire struct per variant, with
/// `parse` (dispatch on the type byte) and `bytes`: [`Inbound`] and
/// [`Outbound`] differ only in their lists.
macro_rules! message_enum {
    ($(#[$m:meta])* $name:ident, in $packet:literal { $($kind:path => $variant:ident($t:ident)),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum $name<'a> {
            $($variant(&'a $t)),*
        }

        impl<'a> $name<'a> {
            #[doc = concat!("Decodes one message (the payload of ", $packet, ").")]
            pub fn parse(b: &'a [u8]) -> Result<$name<'a>, DecodeError> {
                let t = *b
                    .first()
                    .ok_or(DecodeError::TooShort { needed: 1, got: 0 })?;
                Ok(match t {
                    $($kind => $name::$variant($t::view(b)?),)*
                    other => return Err(DecodeError::UnknownType(other)),
                })
            }

            /// The message bytes.
            pub fn bytes(&self) -> &'a [u8] {
                match *self {
                    $($name::$variant(m) => m.as_bytes()),*
                }
            }
        }
    };
}

fn side_of(b: u8) -> Result<Side, DecodeError> {
    Side::from_byte(b).ok_or(DecodeError::BadField("Buy/Sell Indicator"))
}

/// Whether tokex takes an order's `Minimum Quantity`: none (0), or all
/// of its shares with time in force Immediate (a fill-or-kill). Anything
/// else is refused with Invalid Minimum Quantity rather than dropped: an
/// IOC of 100 with a minimum of 50 must not fill 1.
pub fn min_qty_supported(tif: u32, shares: u32, min_qty: u32) -> bool {
    min_qty == 0 || (tif == tif::IMMEDIATE && min_qty == shares)
}

/// The [`Tif`] of wire `Time In Force`, `Shares` and `Minimum Quantity`
/// (see [`min_qty_supported`] for the combinations tokex takes).
pub fn tif_of(tif: u32, shares: u32, min_qty: u32) -> Tif {
    match tif {
        tif::IMMEDIATE if min_qty > 0 && min_qty >= shares => Tif::Fok,
        tif::IMMEDIATE => Tif::Ioc,
        _ => Tif::Day,
    }
}

/// The wire `Time In Force` and `Minimum Quantity` for a [`Tif`].
pub fn tif_fields(t: Tif, shares: u32) -> (u32, u32) {
    match t {
        Tif::Day => (tif::SYSTEM_HOURS, 0),
        Tif::Ioc => (tif::IMMEDIATE, 0),
        Tif::Fok => (tif::IMMEDIATE, shares),
    }
}

/// The terms an Enter Order and a Replace Order share (shares, price,
/// time in force and minimum quantity, in fields of the same names), read
/// the same way for both.
macro_rules! order_terms {
    ($t:ident) => {
        impl $t {
            pub fn qty(&self) -> Qty {
                Qty::new(self.shares.get())
            }
            pub fn price(&self) -> Price {
                Price::from_raw(self.price.get())
            }
            /// Whether tokex takes this order's minimum quantity
            /// ([`min_qty_supported`]).
            pub fn min_qty_supported(&self) -> bool {
                min_qty_supported(
                    self.time_in_force.get(),
                    self.shares.get(),
                    self.minimum_quantity.get(),
                )
            }
            pub fn tif(&self) -> Tif {
                tif_of(
                    self.time_in_force.get(),
                    self.shares.get(),
                    self.minimum_quantity.get(),
                )
            }
        }
    };
}

wire_struct!(
    /// Enter Order `O` (49 bytes).
    EnterOrder, 49, {
    pub msg_type: u8,
    pub token: Token,
    pub side: u8,
    pub shares: U32,
    pub stock: [u8; 8],
    pub price: U32,
    pub time_in_force: U32,
    pub firm: [u8; 4],
    pub display: u8,
    pub capacity: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: U32,
    pub cross_type: u8,
    pub customer_type: u8,
});

impl EnterOrder {
    pub fn new(
        token: Token,
        side: Side,
        qty: Qty,
        stock: Symbol,
        price: Price,
        t: Tif,
    ) -> EnterOrder {
        let (time_in_force, min) = tif_fields(t, qty.lots());
        EnterOrder {
            msg_type: kind::ENTER,
            token,
            side: side.as_byte(),
            shares: U32::new(qty.lots()),
            stock: *stock.wire(),
            price: U32::new(price.raw()),
            time_in_force: U32::new(time_in_force),
            firm: *b"    ",
            display: b'Y',
            capacity: b'A',
            intermarket_sweep: b'N',
            minimum_quantity: U32::new(min),
            cross_type: b'N',
            customer_type: b' ',
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn side(&self) -> Result<Side, DecodeError> {
        side_of(self.side)
    }
    pub fn symbol(&self) -> Symbol {
        Symbol::from_wire(self.stock)
    }
}

order_terms!(EnterOrder);

wire_struct!(
    /// Replace Order `U` (47 bytes).
    ReplaceOrder, 47, {
    pub msg_type: u8,
    pub existing_token: Token,
    pub replacement_token: Token,
    pub shares: U32,
    pub price: U32,
    pub time_in_force: U32,
    pub display: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: U32,
});

impl ReplaceOrder {
    pub fn new(existing: Token, replacement: Token, qty: Qty, price: Price) -> ReplaceOrder {
        ReplaceOrder {
            msg_type: kind::REPLACE,
            existing_token: existing,
            replacement_token: replacement,
            shares: U32::new(qty.lots()),
            price: U32::new(price.raw()),
            time_in_force: U32::new(tif::SYSTEM_HOURS),
            display: b'Y',
            intermarket_sweep: b'N',
            minimum_quantity: U32::new(0),
        }
    }
    pub fn existing_token(&self) -> &[u8] {
        trim(&self.existing_token)
    }
    pub fn replacement_token(&self) -> &[u8] {
        trim(&self.replacement_token)
    }
}

order_terms!(ReplaceOrder);

wire_struct!(
    /// Cancel Order `X` (19 bytes): `shares` is the new open size (0 = all).
    CancelOrder, 19, {
    pub msg_type: u8,
    pub token: Token,
    pub shares: U32,
});

impl CancelOrder {
    pub fn new(token: Token, qty: Qty) -> CancelOrder {
        CancelOrder {
            msg_type: kind::CANCEL,
            token,
            shares: U32::new(qty.lots()),
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
}

wire_struct!(
    /// Modify Order `M` (20 bytes).
    ModifyOrder, 20, {
    pub msg_type: u8,
    pub token: Token,
    pub side: u8,
    pub shares: U32,
});

impl ModifyOrder {
    /// `side` may change a sell to a short sell and back (OUCH's rule);
    /// `qty` is the new open size.
    pub fn new(token: Token, side: Side, qty: Qty) -> ModifyOrder {
        ModifyOrder {
            msg_type: kind::MODIFY,
            token,
            side: side.as_byte(),
            shares: U32::new(qty.lots()),
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn side(&self) -> Result<Side, DecodeError> {
        side_of(self.side)
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
}

message_enum! {
    /// An inbound (client to exchange) message.
    Inbound, in "an Unsequenced Data packet" {
        kind::ENTER => Enter(EnterOrder),
        kind::REPLACE => Replace(ReplaceOrder),
        kind::CANCEL => Cancel(CancelOrder),
        kind::MODIFY => Modify(ModifyOrder),
    }
}

wire_struct!(
    /// System Event `S` (10 bytes): `S` start of day, `E` end of day.
    SystemEvent, 10, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub event_code: u8,
});

impl SystemEvent {
    pub fn new(timestamp: u64, event_code: u8) -> SystemEvent {
        SystemEvent {
            msg_type: kind::SYSTEM_EVENT,
            timestamp: U64::new(timestamp),
            event_code,
        }
    }
    /// Nanoseconds since midnight.
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
}

/// Typed accessors shared by the outbound messages that describe an order.
macro_rules! order_accessors {
    ($name:ident, $token:ident) => {
        impl $name {
            /// Nanoseconds since midnight.
            pub fn timestamp(&self) -> u64 {
                self.timestamp.get()
            }
            pub fn side(&self) -> Result<Side, DecodeError> {
                side_of(self.side)
            }
            pub fn qty(&self) -> Qty {
                Qty::new(self.shares.get())
            }
            pub fn symbol(&self) -> Symbol {
                Symbol::from_wire(self.stock)
            }
            pub fn price(&self) -> Price {
                Price::from_raw(self.price.get())
            }
            pub fn tif(&self) -> Tif {
                tif_of(
                    self.time_in_force.get(),
                    self.shares.get(),
                    self.minimum_quantity.get(),
                )
            }
            pub fn order_reference(&self) -> u64 {
                self.order_reference.get()
            }
            /// Order State `L` (live); `D` (dead) is false.
            pub fn live(&self) -> bool {
                self.order_state == b'L'
            }
            /// All the typed fields (the inverse of `new`).
            pub fn fields(&self) -> Result<OrderFields, DecodeError> {
                Ok(OrderFields {
                    timestamp: self.timestamp(),
                    token: self.$token,
                    side: self.side()?,
                    qty: self.qty(),
                    symbol: self.symbol(),
                    price: self.price(),
                    tif: self.tif(),
                    order_reference: self.order_reference(),
                    live: self.live(),
                })
            }
        }
    };
}

order_accessors!(Accepted, token);
order_accessors!(Replaced, replacement_token);

wire_struct!(
    /// Accepted `A` (66 bytes).
    Accepted, 66, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub side: u8,
    pub shares: U32,
    pub stock: [u8; 8],
    pub price: U32,
    pub time_in_force: U32,
    pub firm: [u8; 4],
    pub display: u8,
    pub order_reference: U64,
    pub capacity: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: U32,
    pub cross_type: u8,
    /// `L` live, `D` dead.
    pub order_state: u8,
    pub bbo_weight: u8,
});

/// The fields of an Accepted or Replaced message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OrderFields {
    pub timestamp: u64,
    pub token: Token,
    pub side: Side,
    pub qty: Qty,
    pub symbol: Symbol,
    pub price: Price,
    pub tif: Tif,
    pub order_reference: u64,
    pub live: bool,
}

/// What an Accepted echoes of its Enter Order as the client sent it:
/// the fields OUCH 4.2 echoes that tokex takes no meaning from (Firm,
/// Capacity). The echoed fields tokex acts on carry what it applied, as
/// the specification allows ("the accepted values may differ from the
/// entered values"): Time In Force and Minimum Quantity as the order's
/// [`Tif`], Display `Y` (every order is displayed on the feed),
/// Intermarket Sweep `N` and Cross Type `N` (continuous trading; the
/// engine's calls take every order). Customer Type is not in an Accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Echo {
    pub firm: [u8; 4],
    pub capacity: u8,
}

impl Default for Echo {
    /// What [`EnterOrder::new`] sends: no firm, capacity Agency.
    fn default() -> Echo {
        Echo {
            firm: *b"    ",
            capacity: b'A',
        }
    }
}

impl EnterOrder {
    /// The fields its Accepted echoes.
    #[inline]
    pub fn echo(&self) -> Echo {
        Echo {
            firm: self.firm,
            capacity: self.capacity,
        }
    }
}

impl Accepted {
    /// An Accepted with the Firm and Capacity of [`Echo::default`].
    pub fn new(f: &OrderFields) -> Accepted {
        Accepted::echoing(f, Echo::default())
    }

    /// An Accepted echoing `echo`, its Enter Order's Firm and Capacity.
    #[inline]
    pub fn echoing(f: &OrderFields, echo: Echo) -> Accepted {
        let (time_in_force, min) = tif_fields(f.tif, f.qty.lots());
        Accepted {
            msg_type: kind::ACCEPTED,
            timestamp: U64::new(f.timestamp),
            token: f.token,
            side: f.side.as_byte(),
            shares: U32::new(f.qty.lots()),
            stock: *f.symbol.wire(),
            price: U32::new(f.price.raw()),
            time_in_force: U32::new(time_in_force),
            firm: echo.firm,
            display: b'Y',
            order_reference: U64::new(f.order_reference),
            capacity: echo.capacity,
            intermarket_sweep: b'N',
            minimum_quantity: U32::new(min),
            cross_type: b'N',
            order_state: if f.live { b'L' } else { b'D' },
            bbo_weight: b' ',
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    /// Its Firm and Capacity.
    pub fn echo(&self) -> Echo {
        Echo {
            firm: self.firm,
            capacity: self.capacity,
        }
    }
}

wire_struct!(
    /// Replaced `U` (80 bytes).
    Replaced, 80, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub replacement_token: Token,
    pub side: u8,
    pub shares: U32,
    pub stock: [u8; 8],
    pub price: U32,
    pub time_in_force: U32,
    pub firm: [u8; 4],
    pub display: u8,
    pub order_reference: U64,
    pub capacity: u8,
    pub intermarket_sweep: u8,
    pub minimum_quantity: U32,
    pub cross_type: u8,
    pub order_state: u8,
    pub previous_token: Token,
    pub bbo_weight: u8,
});

impl Replaced {
    /// A Replaced with the Firm and Capacity of [`Echo::default`].
    pub fn new(f: &OrderFields, previous: Token) -> Replaced {
        Replaced::echoing(f, previous, Echo::default())
    }

    /// A Replaced echoing `echo`: a Replace Order carries no Firm or
    /// Capacity, so these are the replaced order's, from its Enter Order.
    pub fn echoing(f: &OrderFields, previous: Token, echo: Echo) -> Replaced {
        let a = Accepted::echoing(f, echo);
        Replaced {
            msg_type: kind::REPLACED,
            timestamp: a.timestamp,
            replacement_token: a.token,
            side: a.side,
            shares: a.shares,
            stock: a.stock,
            price: a.price,
            time_in_force: a.time_in_force,
            firm: a.firm,
            display: a.display,
            order_reference: a.order_reference,
            capacity: a.capacity,
            intermarket_sweep: a.intermarket_sweep,
            minimum_quantity: a.minimum_quantity,
            cross_type: a.cross_type,
            order_state: a.order_state,
            previous_token: previous,
            bbo_weight: a.bbo_weight,
        }
    }
    pub fn replacement_token(&self) -> &[u8] {
        trim(&self.replacement_token)
    }
    pub fn previous_token(&self) -> &[u8] {
        trim(&self.previous_token)
    }
}

wire_struct!(
    /// Canceled `C` (28 bytes): `decrement` lots were taken off the order.
    Canceled, 28, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub decrement: U32,
    pub reason: u8,
});

impl Canceled {
    pub fn new(timestamp: u64, token: Token, decrement: Qty, reason: u8) -> Canceled {
        Canceled {
            msg_type: kind::CANCELED,
            timestamp: U64::new(timestamp),
            token,
            decrement: U32::new(decrement.lots()),
            reason,
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
    /// Lots taken off the order.
    pub fn decrement(&self) -> Qty {
        Qty::new(self.decrement.get())
    }
}

wire_struct!(
    /// Executed `E` (40 bytes).
    Executed, 40, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub shares: U32,
    pub price: U32,
    /// `A` added liquidity (maker), `R` removed liquidity (taker).
    pub liquidity: u8,
    pub match_number: U64,
});

impl Executed {
    pub fn new(
        timestamp: u64,
        token: Token,
        qty: Qty,
        price: Price,
        maker: bool,
        match_number: u64,
    ) -> Executed {
        Executed {
            msg_type: kind::EXECUTED,
            timestamp: U64::new(timestamp),
            token,
            shares: U32::new(qty.lots()),
            price: U32::new(price.raw()),
            liquidity: if maker { b'A' } else { b'R' },
            match_number: U64::new(match_number),
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
    pub fn price(&self) -> Price {
        Price::from_raw(self.price.get())
    }
    /// Liquidity Flag `A`: the order was resting (maker).
    pub fn maker(&self) -> bool {
        self.liquidity == b'A'
    }
    pub fn match_number(&self) -> u64 {
        self.match_number.get()
    }
}

wire_struct!(
    /// Broken Trade `B` (32 bytes).
    BrokenTrade, 32, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub match_number: U64,
    pub reason: u8,
});

impl BrokenTrade {
    pub fn new(timestamp: u64, token: Token, match_number: u64, reason: u8) -> BrokenTrade {
        BrokenTrade {
            msg_type: kind::BROKEN_TRADE,
            timestamp: U64::new(timestamp),
            token,
            match_number: U64::new(match_number),
            reason,
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
    pub fn match_number(&self) -> u64 {
        self.match_number.get()
    }
}

wire_struct!(
    /// Rejected `J` (24 bytes).
    Rejected, 24, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub reason: u8,
});

impl Rejected {
    pub fn new(timestamp: u64, token: Token, reason: u8) -> Rejected {
        Rejected {
            msg_type: kind::REJECTED,
            timestamp: U64::new(timestamp),
            token,
            reason,
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn timestamp(&self) -> u64 {
        self.timestamp.get()
    }
}

wire_struct!(
    /// Order Modified `M` (28 bytes): the answer to a Modify Order, with
    /// the order's open shares after it.
    OrderModified, 28, {
    pub msg_type: u8,
    pub timestamp: U64,
    pub token: Token,
    pub side: u8,
    pub shares: U32,
});

impl OrderModified {
    pub fn new(timestamp: u64, token: Token, side: Side, shares: Qty) -> OrderModified {
        OrderModified {
            msg_type: kind::MODIFIED,
            timestamp: U64::new(timestamp),
            token,
            side: side.as_byte(),
            shares: U32::new(shares.lots()),
        }
    }
    pub fn token(&self) -> &[u8] {
        trim(&self.token)
    }
    pub fn side(&self) -> Result<Side, DecodeError> {
        side_of(self.side)
    }
    pub fn qty(&self) -> Qty {
        Qty::new(self.shares.get())
    }
}

message_enum! {
    /// An outbound (exchange to client) message.
    Outbound, in "a Sequenced Data packet" {
        kind::SYSTEM_EVENT => SystemEvent(SystemEvent),
        kind::ACCEPTED => Accepted(Accepted),
        kind::REPLACED => Replaced(Replaced),
        kind::CANCELED => Canceled(Canceled),
        kind::EXECUTED => Executed(Executed),
        kind::BROKEN_TRADE => BrokenTrade(BrokenTrade),
        kind::REJECTED => Rejected(Rejected),
        kind::MODIFIED => Modified(OrderModified),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sym() -> Symbol {
        Symbol::new("TK2612").unwrap()
    }

    #[test]
    fn enter_order_layout_matches_the_spec_offsets() {
        let o = EnterOrder::new(
            token(b"T1").unwrap(),
            Side::Buy,
            Qty::new(7),
            sym(),
            Price::from_raw(65_120),
            Tif::Day,
        );
        let b = o.as_bytes();
        assert_eq!(b.len(), 49);
        assert_eq!(b[0], b'O');
        assert_eq!(&b[1..15], b"T1            ");
        assert_eq!(b[15], b'B');
        assert_eq!(&b[16..20], &7u32.to_be_bytes());
        assert_eq!(&b[20..28], b"TK2612  ");
        assert_eq!(&b[28..32], &65_120u32.to_be_bytes());
        assert_eq!(&b[32..36], &99_999u32.to_be_bytes());
        let Inbound::Enter(v) = Inbound::parse(b).unwrap() else {
            panic!()
        };
        assert_eq!(
            (v.token(), v.side(), v.qty(), v.symbol(), v.tif()),
            (&b"T1"[..], Ok(Side::Buy), Qty::new(7), sym(), Tif::Day)
        );
    }

    #[test]
    fn tif_maps_immediate_with_full_minimum_to_fok() {
        for t in [Tif::Day, Tif::Ioc, Tif::Fok] {
            let o = EnterOrder::new(
                token(b"x").unwrap(),
                Side::Sell,
                Qty::new(5),
                sym(),
                Price::from_raw(1),
                t,
            );
            assert_eq!(o.tif(), t);
        }
    }

    #[test]
    fn every_message_has_its_published_length() {
        assert_eq!(
            [
                EnterOrder::LEN,
                ReplaceOrder::LEN,
                CancelOrder::LEN,
                ModifyOrder::LEN
            ],
            [49, 47, 19, 20]
        );
        assert_eq!(
            [
                SystemEvent::LEN,
                Accepted::LEN,
                Replaced::LEN,
                Canceled::LEN,
                Executed::LEN,
                BrokenTrade::LEN,
                Rejected::LEN,
                OrderModified::LEN
            ],
            [10, 66, 80, 28, 40, 32, 24, 28]
        );
    }

    #[test]
    fn order_modified_lays_out_type_timestamp_token_side_shares_and_decodes_back() {
        let m = OrderModified::new(7, token(b"T9").unwrap(), Side::Sell, Qty::new(3));
        let b = m.as_bytes();
        assert_eq!(b[0], b'M');
        assert_eq!(b[1..9], 7u64.to_be_bytes());
        assert_eq!(&b[9..23], b"T9            ");
        assert_eq!(b[23], b'S');
        assert_eq!(b[24..28], 3u32.to_be_bytes());
        assert_eq!(Outbound::parse(b), Ok(Outbound::Modified(&m)));
        assert!(Outbound::parse(&b[..27]).is_err());
    }

    #[test]
    fn an_accepted_echoes_its_enter_orders_firm_and_capacity() {
        let mut o = EnterOrder::new(
            token(b"T1").unwrap(),
            Side::Buy,
            Qty::new(7),
            sym(),
            Price::from_raw(65_120),
            Tif::Day,
        );
        o.firm = *b"FIRM";
        o.capacity = b'P';
        let f = OrderFields {
            timestamp: 1,
            token: o.token,
            side: Side::Buy,
            qty: o.qty(),
            symbol: o.symbol(),
            price: o.price(),
            tif: o.tif(),
            order_reference: 9,
            live: true,
        };
        let a = Accepted::echoing(&f, o.echo());
        let b = a.as_bytes();
        // Firm at 44..48, Capacity at 57 (OUCH 4.2's offsets).
        assert_eq!(&b[44..48], b"FIRM");
        assert_eq!(b[57], b'P');
        assert_eq!(a.echo(), o.echo());
        assert_eq!(a.fields(), Ok(f));
    }

    #[test]
    fn wrong_lengths_and_types_are_errors() {
        let o = CancelOrder::new(token(b"a").unwrap(), Qty::ZERO);
        let b = o.as_bytes();
        assert!(matches!(
            Inbound::parse(&b[..18]),
            Err(DecodeError::TooShort { .. })
        ));
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(Inbound::parse(&long), Err(DecodeError::BadLength(20)));
        assert_eq!(Inbound::parse(b"Q"), Err(DecodeError::UnknownType(b'Q')));
        assert!(matches!(
            Inbound::parse(&[]),
            Err(DecodeError::TooShort { .. })
        ));
    }

    #[test]
    fn bad_side_is_a_field_error() {
        let mut o = EnterOrder::new(
            token(b"a").unwrap(),
            Side::Buy,
            Qty::new(1),
            sym(),
            Price::from_raw(1),
            Tif::Day,
        );
        o.side = b'?';
        assert_eq!(o.side(), Err(DecodeError::BadField("Buy/Sell Indicator")));
    }
}
