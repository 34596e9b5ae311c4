//! The daily settlement: each contract's settlement price and each
//! account's variation margin.
//!
//! Owns the settlement rule of DESIGN.md: the volume-weighted average price
//! of the whole day (contracts with `settlement_window_s = 0`, TK) or of
//! the closing window, the last `settlement_window_s` seconds up to the
//! close (GH/GB); when the contract traded that day but not in its closing
//! window, the last trade before the close (a quiet last ten minutes do not
//! mark every position back to yesterday's price); when nothing traded all
//! day, the reference price (previous settlement). DESIGN.md does not say
//! what an empty window settles at: this is the common practice of futures
//! exchanges. The average is rounded to the nearest tick,
//! halves up. Cross fills count, each once (the `Cross` print is their sum
//! and is not counted again). Variation margin is what an account's day
//! is worth at the settlement price: accounts start the day flat, so it is
//! the cash flow of its fills plus its net position at the settlement
//! price, times the lot size ([`crate::accounts::Position::total_pnl`]).
//!
//! Sans-IO: trades are fed in with their time ([`Settlement::record`]);
//! the CSV writers take any `io::Write`. This keeps a trade tape (it
//! allocates as the day grows), so it sits beside the engine, fed from its
//! events, not inside it.

use std::io::{self, Write};

use crate::accounts::{Accounts, Money};
use crate::contract::ContractSet;
use crate::engine::Event;
use crate::types::{AccountId, InstrumentId, Nanos, Price, Symbol};

/// How a settlement price was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// VWAP of every trade of the day.
    DayVwap,
    /// VWAP of the trades of the closing window.
    WindowVwap,
    /// Nothing traded in the closing window, but earlier in the day: the
    /// last trade before the close.
    LastTrade,
    /// Nothing traded all day: the reference price.
    Reference,
}

impl Basis {
    pub const fn name(self) -> &'static str {
        match self {
            Basis::DayVwap => "day-vwap",
            Basis::WindowVwap => "window-vwap",
            Basis::LastTrade => "last-trade",
            Basis::Reference => "reference",
        }
    }
}

/// One contract's settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettlementPrice {
    pub instrument: InstrumentId,
    pub price: Price,
    pub basis: Basis,
    /// Lots the price was averaged over (the last trade's for `LastTrade`,
    /// 0 for `Reference`).
    pub volume: u64,
    /// Lots traded in the day up to the close.
    pub day_volume: u64,
}

struct Tape {
    symbol: Symbol,
    tick: u32,
    decimals: u32,
    reference: Price,
    window_ns: u64,
    /// (time ns, raw price, lots), in time order.
    trades: Vec<(u64, u32, u32)>,
}

/// The trades of a day and the settlement computed from them.
pub struct Settlement {
    tapes: Vec<Tape>,
}

impl Settlement {
    pub fn new(contracts: &ContractSet) -> Settlement {
        Settlement {
            tapes: contracts
                .iter()
                .map(|c| Tape {
                    symbol: c.symbol,
                    tick: c.tick.raw(),
                    decimals: c.price_decimals(),
                    reference: c.reference_price,
                    window_ns: u64::from(c.settlement_window_s) * 1_000_000_000,
                    trades: Vec::new(),
                })
                .collect(),
        }
    }

    /// Records a trade: an `Executed` event (continuous or cross fill).
    /// Other events are ignored.
    pub fn record(&mut self, now: Nanos, e: &Event) {
        if let Event::Executed {
            instrument,
            price,
            qty,
            ..
        } = *e
        {
            if let Some(t) = self.tapes.get_mut(usize::from(instrument.0)) {
                t.trades.push((now.0, price.raw(), qty.lots()));
            }
        }
    }

    /// The settlement price of a contract whose trading closed at `close`.
    pub fn price(&self, instrument: InstrumentId, close: Nanos) -> Option<SettlementPrice> {
        let t = self.tapes.get(usize::from(instrument.0))?;
        let day_volume = t
            .trades
            .iter()
            .filter(|&&(at, _, _)| at <= close.0)
            .map(|&(_, _, q)| u64::from(q))
            .sum();
        let from = if t.window_ns == 0 {
            0
        } else {
            close.0.saturating_sub(t.window_ns)
        };
        let (value, volume) = t
            .trades
            .iter()
            .filter(|&&(at, _, _)| at >= from && at <= close.0)
            .fold((0u128, 0u64), |(v, n), &(_, p, q)| {
                (v + u128::from(p) * u128::from(q), n + u64::from(q))
            });
        // The tape is in time order: the last trade at or before the close.
        let last = t.trades.iter().rev().find(|&&(at, _, _)| at <= close.0);
        let (price, basis, volume) = if volume == 0 {
            match last {
                Some(&(_, p, q)) => (Price::from_raw(p), Basis::LastTrade, u64::from(q)),
                None => (t.reference, Basis::Reference, 0),
            }
        } else {
            let tick = u128::from(t.tick);
            let d = u128::from(volume);
            let ticks = (2 * value + d * tick) / (2 * d * tick);
            let basis = if t.window_ns == 0 {
                Basis::DayVwap
            } else {
                Basis::WindowVwap
            };
            (Price::from_raw((ticks * tick) as u32), basis, volume)
        };
        Some(SettlementPrice {
            instrument,
            price,
            basis,
            volume,
            day_volume,
        })
    }

    /// Every contract's settlement at `close`.
    pub fn prices(&self, close: Nanos) -> Vec<SettlementPrice> {
        (0..self.tapes.len())
            .filter_map(|i| self.price(InstrumentId(i as u16), close))
            .collect()
    }

    /// Writes `symbol,settlement_price,basis,volume,day_volume`.
    pub fn write_prices(&self, close: Nanos, w: &mut impl Write) -> io::Result<()> {
        writeln!(w, "symbol,settlement_price,basis,volume,day_volume")?;
        for s in self.prices(close) {
            let t = &self.tapes[usize::from(s.instrument.0)];
            writeln!(
                w,
                "{},{},{},{},{}",
                t.symbol,
                s.price.to_string_decimals(t.decimals),
                s.basis.name(),
                s.volume,
                s.day_volume
            )?;
        }
        Ok(())
    }

    /// Writes one row per registered account and contract it traded or
    /// holds: `account,symbol,position,avg_price,bought,sold,settlement_price,
    /// realized_pnl,unrealized_pnl,variation_margin`. `name` gives an
    /// account's printed name.
    pub fn write_variation_margin(
        &self,
        close: Nanos,
        accounts: &Accounts,
        name: impl Fn(AccountId) -> String,
        w: &mut impl Write,
    ) -> io::Result<()> {
        writeln!(
            w,
            "account,symbol,position,avg_price,bought,sold,settlement_price,\
             realized_pnl,unrealized_pnl,variation_margin"
        )?;
        let prices = self.prices(close);
        for account in accounts.registered() {
            for s in &prices {
                let Some(pos) = accounts.position(account, s.instrument) else {
                    continue;
                };
                if pos.bought == 0 && pos.sold == 0 && pos.net == 0 {
                    continue;
                }
                let t = &self.tapes[usize::from(s.instrument.0)];
                let lot = accounts.lot(s.instrument);
                let avg = pos
                    .avg_price()
                    .map_or(String::new(), |p| p.to_string_decimals(4));
                writeln!(
                    w,
                    "{},{},{},{avg},{},{},{},{},{},{}",
                    name(account),
                    t.symbol,
                    pos.net,
                    pos.bought,
                    pos.sold,
                    s.price.to_string_decimals(t.decimals),
                    pos.realized(lot),
                    pos.unrealized(s.price, lot),
                    pos.total_pnl(s.price, lot),
                )?;
            }
        }
        Ok(())
    }

    /// An account's variation margin over every contract, at `close`.
    pub fn variation_margin(&self, close: Nanos, accounts: &Accounts, account: AccountId) -> Money {
        let total: i128 = self
            .prices(close)
            .iter()
            .filter_map(|s| {
                let pos = accounts.position(account, s.instrument)?;
                Some(pos.total_pnl(s.price, accounts.lot(s.instrument)).raw())
            })
            .sum();
        Money::from_raw(total)
    }
}
