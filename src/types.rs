//! Fixed-point numbers and small identifiers shared by every layer.
//!
//! Owns the representation of prices (`Price`, integer units of 1/10,000, the
//! OUCH 4.2 / ITCH 5.0 wire scale), quantities (`Qty`, whole lots), sides,
//! time-in-force, symbols and timestamps. Nothing here does I/O or reads a clock,
//! and no floating point is used anywhere a price is compared.

use std::fmt;

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// Implied decimal places of a [`Price`], as on the OUCH and ITCH wire.
pub const PRICE_DECIMALS: u32 = 4;
/// `10^PRICE_DECIMALS`: raw units per 1.0 of the quote currency.
pub const PRICE_SCALE: u32 = 10_000;

/// Why a decimal string is not a valid [`Price`] or [`Qty`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseNumberError {
    #[error("empty number")]
    Empty,
    #[error("not a decimal number")]
    Invalid,
    #[error("more than {PRICE_DECIMALS} decimal places")]
    TooPrecise,
    #[error("number out of range")]
    Overflow,
}

/// A price in units of 1/10,000 of the quote currency (4 implied decimals).
///
/// This is exactly the `Price` field of OUCH 4.2 and ITCH 5.0, so no scaling
/// happens between the wire and the book. Prices are never negative here.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Price(u32);

impl Price {
    pub const ZERO: Price = Price(0);
    pub const MAX: Price = Price(u32::MAX);

    /// A price from its raw wire value (units of 1/10,000).
    pub const fn from_raw(raw: u32) -> Price {
        Price(raw)
    }

    /// The raw wire value (units of 1/10,000).
    pub const fn raw(self) -> u32 {
        self.0
    }

    /// Whether this price is a whole multiple of `tick`.
    pub fn is_multiple_of(self, tick: Price) -> bool {
        tick.0 != 0 && self.0.is_multiple_of(tick.0)
    }

    /// Writes the price with exactly `decimals` decimal places (0..=4), e.g.
    /// `6.512` for `decimals == 3`. Digits beyond `decimals` must be zero for
    /// the output to be exact; callers pass the contract's tick precision.
    pub fn fmt_decimals(self, decimals: u32, f: &mut impl fmt::Write) -> fmt::Result {
        let decimals = decimals.min(PRICE_DECIMALS);
        let whole = self.0 / PRICE_SCALE;
        let frac = self.0 % PRICE_SCALE;
        if decimals == 0 {
            return write!(f, "{whole}");
        }
        let frac = frac / 10u32.pow(PRICE_DECIMALS - decimals);
        write!(f, "{whole}.{frac:0width$}", width = decimals as usize)
    }

    /// The price as a string with `decimals` decimal places.
    pub fn to_string_decimals(self, decimals: u32) -> String {
        let mut s = String::new();
        // Writing into a String cannot fail.
        let _ = self.fmt_decimals(decimals, &mut s);
        s
    }

    /// The smallest number of decimals that prints this price exactly.
    pub fn significant_decimals(self) -> u32 {
        let mut frac = self.0 % PRICE_SCALE;
        if frac == 0 {
            return 0;
        }
        let mut d = PRICE_DECIMALS;
        while frac.is_multiple_of(10) {
            frac /= 10;
            d -= 1;
        }
        d
    }
}

impl fmt::Display for Price {
    /// Prints the shortest exact decimal form (`6.5`, `6.512`, `7`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fmt_decimals(self.significant_decimals(), f)
    }
}

impl FromStr for Price {
    type Err = ParseNumberError;

    /// Parses a non-negative decimal string with at most 4 significant decimal
    /// places (`"6.512"`, `"6.5000"`, `"12"`). No floating point is involved.
    fn from_str(s: &str) -> Result<Price, ParseNumberError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseNumberError::Empty);
        }
        let (whole, frac) = match s.split_once('.') {
            Some((w, f)) => (w, f),
            None => (s, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(ParseNumberError::Invalid);
        }
        let all_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(whole) || !all_digits(frac) {
            return Err(ParseNumberError::Invalid);
        }
        let frac = frac.trim_end_matches('0');
        if frac.len() > PRICE_DECIMALS as usize {
            return Err(ParseNumberError::TooPrecise);
        }
        let mut raw: u64 = 0;
        for b in whole.bytes() {
            raw = raw * 10 + u64::from(b - b'0');
            if raw > u64::from(u32::MAX) {
                return Err(ParseNumberError::Overflow);
            }
        }
        raw *= u64::from(PRICE_SCALE);
        let mut frac_units: u64 = 0;
        for b in frac.bytes() {
            frac_units = frac_units * 10 + u64::from(b - b'0');
        }
        frac_units *= 10u64.pow(PRICE_DECIMALS - frac.len() as u32);
        let raw = raw + frac_units;
        u32::try_from(raw)
            .map(Price)
            .map_err(|_| ParseNumberError::Overflow)
    }
}

/// A quantity in whole lots (OUCH `Shares`, ITCH `Shares`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Qty(u32);

impl Qty {
    pub const ZERO: Qty = Qty(0);

    pub const fn new(lots: u32) -> Qty {
        Qty(lots)
    }

    pub const fn lots(self) -> u32 {
        self.0
    }

    pub const fn is_zero(self) -> bool {
        self.0 == 0
    }

    /// `self - other`, saturating at zero.
    pub const fn saturating_sub(self, other: Qty) -> Qty {
        Qty(self.0.saturating_sub(other.0))
    }

    pub fn checked_add(self, other: Qty) -> Option<Qty> {
        self.0.checked_add(other.0).map(Qty)
    }

    pub fn min(self, other: Qty) -> Qty {
        Qty(self.0.min(other.0))
    }
}

impl fmt::Display for Qty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for Qty {
    type Err = ParseNumberError;

    fn from_str(s: &str) -> Result<Qty, ParseNumberError> {
        let s = s.trim();
        if s.is_empty() {
            return Err(ParseNumberError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseNumberError::Invalid);
        }
        s.parse::<u32>()
            .map(Qty)
            .map_err(|_| ParseNumberError::Overflow)
    }
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[repr(u8)]
pub enum Side {
    Buy = b'B',
    Sell = b'S',
}

impl Side {
    /// Whether price (or price index) `a` is better than `b` on this side:
    /// higher for bids, lower for offers.
    #[inline]
    pub const fn is_better(self, a: u32, b: u32) -> bool {
        match self {
            Side::Buy => a > b,
            Side::Sell => a < b,
        }
    }

    pub const fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// The wire byte (`B` or `S`).
    pub const fn as_byte(self) -> u8 {
        self as u8
    }

    /// Parses the wire byte; OUCH's short-sell codes `T`/`E` are sells.
    pub const fn from_byte(b: u8) -> Option<Side> {
        match b {
            b'B' => Some(Side::Buy),
            b'S' | b'T' | b'E' => Some(Side::Sell),
            _ => None,
        }
    }
}

/// Time in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Tif {
    /// Rests what is left until the end of the day.
    Day,
    /// Immediate or cancel: what does not trade at once is cancelled.
    Ioc,
    /// Fill or kill: trades in full at once or has no effect at all.
    Fok,
}

impl FromStr for Tif {
    type Err = ParseNumberError;

    fn from_str(s: &str) -> Result<Tif, ParseNumberError> {
        match s.trim() {
            "DAY" => Ok(Tif::Day),
            "IOC" => Ok(Tif::Ioc),
            "FOK" => Ok(Tif::Fok),
            _ => Err(ParseNumberError::Invalid),
        }
    }
}

/// A contract symbol: up to 8 ASCII characters, the OUCH/ITCH `Stock` field,
/// stored space-padded as on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol([u8; 8]);

impl Symbol {
    /// A symbol from text: 1..=8 printable ASCII characters, no spaces.
    pub fn new(s: &str) -> Option<Symbol> {
        let b = s.as_bytes();
        if b.is_empty() || b.len() > 8 || !b.iter().all(|c| c.is_ascii_graphic()) {
            return None;
        }
        let mut out = [b' '; 8];
        out[..b.len()].copy_from_slice(b);
        Some(Symbol(out))
    }

    /// A symbol from its 8 space-padded wire bytes.
    pub const fn from_wire(bytes: [u8; 8]) -> Symbol {
        Symbol(bytes)
    }

    /// The 8 space-padded wire bytes.
    pub const fn wire(&self) -> &[u8; 8] {
        &self.0
    }

    /// The symbol without its padding.
    pub fn as_str(&self) -> &str {
        let end = self.0.iter().rposition(|&c| c != b' ').map_or(0, |i| i + 1);
        std::str::from_utf8(&self.0[..end]).unwrap_or("")
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({:?})", self.as_str())
    }
}

/// Nanoseconds, either since the Unix epoch or since midnight, as stated by
/// the API that takes it. The engine never reads a clock: callers pass time in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Nanos(pub u64);

/// Nanoseconds in a day, for ITCH's "ns since midnight" timestamps.
pub const NANOS_PER_DAY: u64 = 86_400 * 1_000_000_000;

impl Nanos {
    /// Nanoseconds since the most recent midnight (UTC), as ITCH timestamps are.
    pub const fn since_midnight(self) -> u64 {
        self.0 % NANOS_PER_DAY
    }
}

/// An account: the owner of orders and positions (one per OUCH session login).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct AccountId(pub u32);

/// The engine's order reference number (the ITCH `Order Reference Number`).
/// Unique for the day; never reused.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct OrderId(pub u64);

/// Index of an instrument in the contract list (the ITCH `Stock Locate`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct InstrumentId(pub u16);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn price_parses_decimal_strings_exactly() {
        assert_eq!("6.512".parse::<Price>(), Ok(Price::from_raw(65_120)));
        assert_eq!("6.5000".parse::<Price>(), Ok(Price::from_raw(65_000)));
        assert_eq!("12".parse::<Price>(), Ok(Price::from_raw(120_000)));
        assert_eq!("0.0001".parse::<Price>(), Ok(Price::from_raw(1)));
        assert_eq!(".5".parse::<Price>(), Ok(Price::from_raw(5_000)));
    }

    #[test]
    fn price_rejects_malformed_strings() {
        assert_eq!("".parse::<Price>(), Err(ParseNumberError::Empty));
        assert_eq!("-1".parse::<Price>(), Err(ParseNumberError::Invalid));
        assert_eq!("1.2.3".parse::<Price>(), Err(ParseNumberError::Invalid));
        assert_eq!("1e3".parse::<Price>(), Err(ParseNumberError::Invalid));
        assert_eq!(".".parse::<Price>(), Err(ParseNumberError::Invalid));
        assert_eq!(
            "6.51234".parse::<Price>(),
            Err(ParseNumberError::TooPrecise)
        );
        assert_eq!("429497".parse::<Price>(), Err(ParseNumberError::Overflow));
        assert_eq!(
            "99999999999999999999".parse::<Price>(),
            Err(ParseNumberError::Overflow)
        );
    }

    #[test]
    fn price_prints_shortest_exact_decimal_and_fixed_decimals() {
        assert_eq!(Price::from_raw(65_120).to_string(), "6.512");
        assert_eq!(Price::from_raw(65_000).to_string(), "6.5");
        assert_eq!(Price::from_raw(70_000).to_string(), "7");
        assert_eq!(Price::from_raw(65_000).to_string_decimals(3), "6.500");
        assert_eq!(Price::from_raw(5).to_string_decimals(4), "0.0005");
    }

    #[test]
    fn price_round_trips_through_text() {
        for raw in [0, 1, 9, 10, 65_120, 99_999, 1_000_000, u32::MAX] {
            let p = Price::from_raw(raw);
            assert_eq!(p.to_string().parse::<Price>(), Ok(p));
        }
    }

    #[test]
    fn qty_parses_whole_lots_only() {
        assert_eq!("10".parse::<Qty>(), Ok(Qty::new(10)));
        assert_eq!("1.5".parse::<Qty>(), Err(ParseNumberError::Invalid));
        assert_eq!("-1".parse::<Qty>(), Err(ParseNumberError::Invalid));
        assert_eq!("".parse::<Qty>(), Err(ParseNumberError::Empty));
        assert_eq!("4294967296".parse::<Qty>(), Err(ParseNumberError::Overflow));
    }

    #[test]
    fn symbol_is_space_padded_on_the_wire_and_trimmed_in_text() {
        let s = Symbol::new("TK2612").unwrap();
        assert_eq!(s.wire(), b"TK2612  ");
        assert_eq!(s.as_str(), "TK2612");
        assert!(Symbol::new("TOOLONGSYM").is_none());
        assert!(Symbol::new("").is_none());
        assert!(Symbol::new("A B").is_none());
    }

    #[test]
    fn side_maps_short_sell_codes_to_sell() {
        assert_eq!(Side::from_byte(b'B'), Some(Side::Buy));
        assert_eq!(Side::from_byte(b'T'), Some(Side::Sell));
        assert_eq!(Side::from_byte(b'X'), None);
    }
}
