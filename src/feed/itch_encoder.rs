//! Engine events to ITCH 5.0 messages.
//!
//! Owns the mapping from the engine's book-change events to the market-data
//! messages a feed handler rebuilds books from (see `engine::events` for the
//! contract): `BookAdd` -> Add Order, `Executed` -> Order Executed (on the
//! maker), `BookReduce` -> Order Cancel, `BookDelete` -> Order Delete,
//! `BookReplace` -> Order Replace, `PhaseChanged` -> Trading Action.
//! The call auction, as NASDAQ publishes its crosses: `Imbalance` -> NOII
//! (cross type `O` opening, `H` reopening after a halt), a cross fill
//! (`Executed` with `cross`) -> Order Executed With Price, non-printable,
//! at the cross price, on *both* orders (both rest in the book), and
//! `Cross` -> Cross Trade, the one print of the auction.
//! Stock Locate is the instrument index + 1 (ITCH locates start at 1); the
//! order reference number is the engine's order id. Sans-IO: messages go to
//! a callback; no allocation.

use zerocopy::IntoBytes;

use crate::contract::ContractSet;
use crate::engine::{CrossKind, Event, Phase};
use crate::types::{InstrumentId, Nanos, Price, Side, Symbol};
use crate::wire::itch::{self, event, trading_state, Header};

/// The ITCH cross type of an auction.
pub const fn cross_type(kind: CrossKind) -> u8 {
    match kind {
        CrossKind::Opening => b'O',
        CrossKind::Reopening => b'H',
    }
}

/// Encodes engine events of one trading day as ITCH messages.
pub struct ItchEncoder {
    /// (symbol, lot size) per instrument.
    contracts: Vec<(Symbol, u32)>,
}

impl ItchEncoder {
    pub fn new(contracts: &ContractSet) -> ItchEncoder {
        ItchEncoder {
            contracts: contracts
                .iter()
                .map(|c| (c.symbol, u32::try_from(c.lot_size).unwrap_or(u32::MAX)))
                .collect(),
        }
    }

    fn header(instrument: InstrumentId, now: Nanos) -> Header {
        Header {
            stock_locate: instrument.0.wrapping_add(1),
            tracking_number: 0,
            timestamp: now.since_midnight(),
        }
    }

    fn symbol(&self, instrument: InstrumentId) -> Symbol {
        self.contracts
            .get(usize::from(instrument.0))
            .map_or(Symbol::from_wire(*b"        "), |c| c.0)
    }

    /// Start of day: System Events (start of messages, system hours), a
    /// Stock Directory and a Trading Action (trading) per contract, then
    /// start of market hours.
    pub fn start_of_day(&self, now: Nanos, out: &mut impl FnMut(&[u8])) {
        let h = Header {
            stock_locate: 0,
            tracking_number: 0,
            timestamp: now.since_midnight(),
        };
        out(itch::SystemEvent::new(h, event::START_OF_MESSAGES).as_bytes());
        out(itch::SystemEvent::new(h, event::START_OF_SYSTEM_HOURS).as_bytes());
        for (i, (symbol, lot)) in self.contracts.iter().enumerate() {
            let h = Self::header(InstrumentId(i as u16), now);
            out(itch::StockDirectory::new(h, *symbol, *lot).as_bytes());
            out(itch::TradingAction::new(h, *symbol, trading_state::TRADING, *b"    ").as_bytes());
        }
        out(itch::SystemEvent::new(h, event::START_OF_MARKET_HOURS).as_bytes());
    }

    /// End of day: end of market hours, end of system hours, end of messages.
    pub fn end_of_day(&self, now: Nanos, out: &mut impl FnMut(&[u8])) {
        let h = Header {
            stock_locate: 0,
            tracking_number: 0,
            timestamp: now.since_midnight(),
        };
        for code in [
            event::END_OF_MARKET_HOURS,
            event::END_OF_SYSTEM_HOURS,
            event::END_OF_MESSAGES,
        ] {
            out(itch::SystemEvent::new(h, code).as_bytes());
        }
    }

    /// The ITCH message for one engine event, if it changes the public book.
    #[inline]
    pub fn encode(&self, now: Nanos, e: &Event, out: &mut impl FnMut(&[u8])) {
        match *e {
            Event::BookAdd {
                order,
                instrument,
                side,
                price,
                qty,
            } => {
                let h = Self::header(instrument, now);
                out(
                    itch::AddOrder::new(h, order.0, side, qty, self.symbol(instrument), price)
                        .as_bytes(),
                );
            }
            Event::Executed {
                match_number,
                instrument,
                qty,
                maker,
                cross: false,
                ..
            } => {
                let h = Self::header(instrument, now);
                out(itch::OrderExecuted::new(h, maker.order.0, qty, match_number).as_bytes());
            }
            Event::Executed {
                match_number,
                instrument,
                price,
                qty,
                taker,
                maker,
                cross: true,
            } => {
                let h = Self::header(instrument, now);
                for p in [maker, taker] {
                    out(itch::OrderExecutedWithPrice::new(
                        h,
                        p.order.0,
                        qty,
                        match_number,
                        false,
                        price,
                    )
                    .as_bytes());
                }
            }
            Event::Cross {
                match_number,
                instrument,
                price,
                qty,
                kind,
            } => {
                let h = Self::header(instrument, now);
                out(itch::CrossTrade::new(
                    h,
                    qty,
                    self.symbol(instrument),
                    price,
                    match_number,
                    cross_type(kind),
                )
                .as_bytes());
            }
            Event::Imbalance {
                instrument,
                indicative,
                kind,
                ..
            } => {
                let h = Self::header(instrument, now);
                let price = indicative.price.unwrap_or(Price::ZERO);
                let i = itch::Imbalance {
                    paired: indicative.paired,
                    imbalance: indicative.imbalance,
                    direction: match (indicative.price, indicative.imbalance_side) {
                        (None, _) => b'O',
                        (Some(_), Some(Side::Buy)) => b'B',
                        (Some(_), Some(Side::Sell)) => b'S',
                        (Some(_), None) => b'N',
                    },
                    // ITCH 5.0: Current Reference Price is "the price at
                    // which the NOII shares are being calculated", the
                    // indicative price (0 when none; the engine's tie-break
                    // reference is not it). Far and near are the same: a
                    // call holds only cross orders.
                    far: price,
                    near: price,
                    reference: price,
                    cross_type: cross_type(kind),
                };
                out(itch::Noii::new(h, self.symbol(instrument), &i).as_bytes());
            }
            Event::BookReduce {
                order,
                instrument,
                qty,
            } => {
                let h = Self::header(instrument, now);
                out(itch::OrderCancel::new(h, order.0, qty).as_bytes());
            }
            Event::BookDelete { order, instrument } => {
                let h = Self::header(instrument, now);
                out(itch::OrderDelete::new(h, order.0).as_bytes());
            }
            Event::BookReplace {
                old_order,
                order,
                instrument,
                price,
                qty,
                ..
            } => {
                let h = Self::header(instrument, now);
                out(itch::OrderReplace::new(h, old_order.0, order.0, qty, price).as_bytes());
            }
            Event::PhaseChanged { instrument, phase } => {
                let (state, reason) = match phase {
                    Phase::Open => (trading_state::TRADING, *b"    "),
                    Phase::PreOpen | Phase::Auction => (trading_state::QUOTATION_ONLY, *b"    "),
                    Phase::Break => (trading_state::PAUSED, *b"BRK "),
                    Phase::Halt => (trading_state::HALTED, *b"MWCB"),
                    Phase::Closed => (trading_state::HALTED, *b"CLSD"),
                };
                let h = Self::header(instrument, now);
                out(itch::TradingAction::new(h, self.symbol(instrument), state, reason).as_bytes());
            }
            Event::Accepted { .. }
            | Event::Rejected { .. }
            | Event::Replaced { .. }
            | Event::Canceled { .. } => {}
        }
    }
}

/// Writes engine events as a length-prefixed ITCH stream (`itch.bin`: each
/// message preceded by its big-endian u16 length, as NASDAQ's files are).
pub struct ItchFileSink<W: std::io::Write> {
    encoder: ItchEncoder,
    out: W,
    now: Nanos,
    messages: u64,
    error: Option<std::io::Error>,
}

impl<W: std::io::Write> ItchFileSink<W> {
    pub fn new(encoder: ItchEncoder, out: W) -> ItchFileSink<W> {
        ItchFileSink {
            encoder,
            out,
            now: Nanos(0),
            messages: 0,
            error: None,
        }
    }

    /// The time stamped on the following messages.
    pub fn set_time(&mut self, now: Nanos) {
        self.now = now;
    }

    fn write(out: &mut W, messages: &mut u64, error: &mut Option<std::io::Error>, m: &[u8]) {
        let r = out
            .write_all(&(m.len() as u16).to_be_bytes())
            .and_then(|()| out.write_all(m));
        match r {
            Ok(()) => *messages += 1,
            Err(e) => {
                error.get_or_insert(e);
            }
        }
    }

    pub fn start_of_day(&mut self) {
        let (out, n, err) = (&mut self.out, &mut self.messages, &mut self.error);
        self.encoder
            .start_of_day(self.now, &mut |m| Self::write(out, n, err, m));
    }

    /// Writes the end-of-day messages and returns the writer and the count.
    pub fn finish(mut self) -> std::io::Result<(W, u64)> {
        let (out, n, err) = (&mut self.out, &mut self.messages, &mut self.error);
        self.encoder
            .end_of_day(self.now, &mut |m| Self::write(out, n, err, m));
        match self.error {
            Some(e) => Err(e),
            None => Ok((self.out, self.messages)),
        }
    }
}

impl<W: std::io::Write> crate::engine::EventSink for ItchFileSink<W> {
    fn event(&mut self, e: &Event) {
        let (out, n, err) = (&mut self.out, &mut self.messages, &mut self.error);
        self.encoder
            .encode(self.now, e, &mut |m| Self::write(out, n, err, m));
    }
}
