//! Read access to the engine: phases, books and orders, match numbers,
//! accounts, the indicative uncross, last prices, bands and the next timer;
//! and the accounts' set-up. Nothing here changes a book or emits an event.

use super::book::{RestingOrder, NIL};
use super::events::{Indicative, Phase};
use super::{auction, Engine, NEVER};
use crate::accounts::Accounts;
use crate::types::{InstrumentId, Nanos, OrderId, Price, Qty, Side};

impl Engine {
    /// Number of contracts.
    pub fn instruments(&self) -> usize {
        self.markets.len()
    }

    pub fn phase(&self, instrument: InstrumentId) -> Option<Phase> {
        self.markets.get(usize::from(instrument.0)).map(|m| m.phase)
    }

    /// Best bid and best ask.
    pub fn best(&self, instrument: InstrumentId) -> (Option<Price>, Option<Price>) {
        self.markets
            .get(usize::from(instrument.0))
            .map_or((None, None), |m| {
                (m.book.best_price(Side::Buy), m.book.best_price(Side::Sell))
            })
    }

    /// Resting orders of one side, best price first, time priority within a level.
    pub fn resting(
        &self,
        instrument: InstrumentId,
        side: Side,
    ) -> impl Iterator<Item = RestingOrder> + '_ {
        let market = self.markets.get(usize::from(instrument.0));
        let levels = market
            .into_iter()
            .flat_map(move |m| m.book.ladder(side).levels_best_first());
        levels.flat_map(move |level| {
            let ladder = market.map(|m| m.book.ladder(side));
            let mut slot = ladder.map_or(NIL, |l| l.level(level).head);
            std::iter::from_fn(move || {
                if slot == NIL {
                    return None;
                }
                let s = slot;
                slot = self.arena.get(s).next;
                Some(self.resting_order(s))
            })
        })
    }

    fn resting_order(&self, slot: u32) -> RestingOrder {
        let n = self.arena.get(slot);
        RestingOrder {
            order: self.arena.id_of(slot),
            instrument: n.instrument,
            account: n.account,
            tag: n.tag,
            side: n.side,
            price: Price::from_raw(n.price),
            qty: Qty::new(n.open),
        }
    }

    /// A live order by id.
    pub fn order(&self, id: OrderId) -> Option<RestingOrder> {
        self.arena.find(id).map(|s| self.resting_order(s))
    }

    /// Total open size at a price level.
    pub fn level_qty(&self, instrument: InstrumentId, side: Side, price: Price) -> u64 {
        let Some(m) = self.markets.get(usize::from(instrument.0)) else {
            return 0;
        };
        if m.check_static(price, Qty::new(1)).is_err() {
            return 0;
        }
        m.book.ladder(side).level(m.book.level_of(price.raw())).qty
    }

    /// Live orders in the arena.
    pub fn live_orders(&self) -> usize {
        self.arena.live()
    }

    /// The last match number given out.
    pub fn match_number(&self) -> u64 {
        self.match_number
    }

    /// Positions and limits of every account.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Register accounts and set their limits here (at set-up).
    pub fn accounts_mut(&mut self) -> &mut Accounts {
        &mut self.accounts
    }

    /// The indicative uncross of a contract's book now (meaningful in
    /// pre-open and call auction).
    pub fn indicative(&self, instrument: InstrumentId) -> Option<Indicative> {
        let m = self.markets.get(usize::from(instrument.0))?;
        Some(auction::indicative(&m.book, m.call_reference()))
    }

    /// Last trade price, if the contract traded today.
    pub fn last_price(&self, instrument: InstrumentId) -> Option<Price> {
        let m = self.markets.get(usize::from(instrument.0))?;
        (m.last != 0).then_some(Price::from_raw(m.last))
    }

    /// The dynamic band now: (lowest sell, highest buy) accepted, for
    /// contracts that have one.
    pub fn band(&self, instrument: InstrumentId) -> Option<(Price, Price)> {
        let m = self.markets.get(usize::from(instrument.0))?;
        m.band
            .limits()
            .map(|(lo, hi)| (Price::from_raw(lo), Price::from_raw(hi)))
    }

    /// When the next timer (schedule change, end of a halt or of a
    /// reopening call) is due, if any.
    pub fn next_timer(&self) -> Option<Nanos> {
        (self.next_due != NEVER).then_some(Nanos(self.next_due))
    }
}
