//! Accounts: net positions, average prices, realized and unrealized profit
//! and loss, and the pre-trade limits of each account (credit limit against
//! initial margin, position limits, live-order count).
//!
//! Owns the numbers behind DESIGN.md's "Positions are net per account;
//! margin = |position| × price × lot × margin rate". The engine calls in at
//! every admission, fill, resize and finish of an order, so the state is
//! always that of the book; nothing here sees wire formats, sessions or a
//! clock, and nothing allocates after [`Accounts::register`].
//!
//! The margin check is made on the *worst-case* position: what the net
//! position would be if every open buy order (or every open sell order)
//! of the account in that contract filled, the new order included. Margin
//! per contract is `worst × margin price × lot × margin rate`, where the
//! margin price is the highest price of the orders that added to the worst
//! case, and of the fills that opened lots, since the position was last
//! flat (the reference price before any): a cheap order does not re-price
//! lots bought dearer, lots sold above a sell's limit or opened by a flip
//! through zero are margined at their trade price, and a replace to a
//! higher price is checked like a new order at that price. The account's
//! total over all contracts must stay within its credit limit. An order is
//! checked at the highest price it can trade at (the engine passes the
//! best bid for a sell that crosses the book), and one that can open lots
//! (add to the position on its side, or take it through zero) is checked
//! at its price even when it does not raise the worst case. Orders that
//! neither raise the worst case nor its price (e.g. a sell that, with the
//! other open sells, does not exceed a long position) always pass, so an
//! account over its limit can still reduce. Amounts in different quote
//! currencies are added at par: the credit limit is one number. Margins
//! are rounded up to the money unit (1/10,000), never down.
//!
//! Accounts start the day flat. An account that was never registered is
//! neither tracked nor checked, unless [`Accounts::require_registration`]
//! is set, in which case its orders are rejected (`RiskLimit`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::contract::ContractSet;
use crate::engine::RejectReason;
use crate::types::{AccountId, InstrumentId, Price, Side, PRICE_DECIMALS, PRICE_SCALE};

/// What an order checked by [`Accounts::check`] is to the account's live
/// orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entry {
    /// A new order that can rest (DAY): one more live order, held to
    /// `max_live_orders`.
    Resting,
    /// A new IOC or FOK order, which never rests: not held to
    /// `max_live_orders`, so an account at it can still trade out of a
    /// position.
    Immediate,
    /// A replace of an order with this many lots open: not a new live
    /// order; its margin is checked without the order it replaces.
    Replacing(u32),
}

/// An amount of the quote currency in units of 1/10,000 (the price scale),
/// signed. Exact: no floating point.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Money(i128);

impl Money {
    pub const ZERO: Money = Money(0);

    /// From raw units of 1/10,000.
    pub const fn from_raw(raw: i128) -> Money {
        Money(raw)
    }

    /// From whole currency units.
    pub const fn from_units(units: i64) -> Money {
        Money(units as i128 * PRICE_SCALE as i128)
    }

    pub const fn raw(self) -> i128 {
        self.0
    }
}

impl fmt::Display for Money {
    /// Always 4 decimals, e.g. `-1234.5000`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sign = if self.0 < 0 { "-" } else { "" };
        let a = self.0.unsigned_abs();
        let scale = u128::from(PRICE_SCALE);
        write!(
            f,
            "{sign}{}.{:0w$}",
            a / scale,
            a % scale,
            w = PRICE_DECIMALS as usize
        )
    }
}

/// Limits of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AccountLimits {
    /// Most initial margin the account may use; `None` = no credit check.
    pub credit: Option<Money>,
    /// Most live (resting) orders at once; 0 = no limit.
    pub max_live_orders: u32,
}

impl AccountLimits {
    /// The limits the exchange config gives a session's account: its credit
    /// (0 = no credit check) and the `[risk]` order-count limit.
    pub fn of_session(
        session: &crate::config::SessionConfig,
        risk: &crate::config::RiskConfig,
    ) -> AccountLimits {
        AccountLimits {
            credit: (session.credit > 0)
                .then(|| Money::from_units(i64::try_from(session.credit).unwrap_or(i64::MAX))),
            max_live_orders: risk.max_live_orders,
        }
    }
}

/// What the accounts need of a contract.
#[derive(Debug, Clone, Copy)]
struct Spec {
    lot: i128,
    margin_pct: i128,
    /// `lot × margin_pct` when it fits a u64 (every real contract): the
    /// margin's fast path multiplies in u64.
    lot_margin_pct: Option<u64>,
    position_limit: u64,
    reference: u32,
}

/// One account's position in one contract.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Net lots: positive long, negative short.
    pub net: i64,
    /// Open size of the account's live buy and sell orders, lots.
    pub open_buy: u64,
    pub open_sell: u64,
    /// Lots bought and sold today.
    pub bought: u64,
    pub sold: u64,
    /// Cost of the open position, raw price × lots, signed like `net`
    /// (reduced pro rata, truncated, when the position is partly closed).
    cost: i128,
    /// Cash flow of today's fills, raw price × lots: sells in, buys out.
    cash: i128,
    /// Price the margin is computed at, raw.
    margin_price: u32,
    /// Initial margin held for this position, money raw units.
    margin: i128,
}

impl Position {
    /// The larger of the net positions if all open buys, or all open
    /// sells, filled.
    pub fn worst(&self) -> u64 {
        worst(self.net, self.open_buy, self.open_sell)
    }

    /// Average price of the open position, rounded to the nearest 1/10,000.
    pub fn avg_price(&self) -> Option<Price> {
        if self.net == 0 {
            return None;
        }
        let n = i128::from(self.net);
        let avg = (2 * self.cost + n) / (2 * n);
        u32::try_from(avg).ok().map(Price::from_raw)
    }

    /// Profit and loss already realized by closing trades.
    pub fn realized(&self, lot: u64) -> Money {
        Money((self.cash + self.cost) * i128::from(lot))
    }

    /// Profit and loss of the open position marked at `mark`.
    pub fn unrealized(&self, mark: Price, lot: u64) -> Money {
        Money((i128::from(self.net) * i128::from(mark.raw()) - self.cost) * i128::from(lot))
    }

    /// Realized plus unrealized at `mark`: for an account that started the
    /// day flat, its variation margin when `mark` is the settlement price.
    pub fn total_pnl(&self, mark: Price, lot: u64) -> Money {
        Money((self.cash + i128::from(self.net) * i128::from(mark.raw())) * i128::from(lot))
    }

    /// Initial margin held for this position.
    pub fn margin(&self) -> Money {
        Money(self.margin)
    }

    /// Applies one fill of `qty` lots at raw price `p` (signed: + buy).
    fn fill(&mut self, q: i64, p: u32) {
        let p = i128::from(p);
        self.cash -= i128::from(q) * p;
        if q > 0 {
            self.bought += q.unsigned_abs();
        } else {
            self.sold += q.unsigned_abs();
        }
        if self.net == 0 || (self.net > 0) == (q > 0) {
            self.cost += i128::from(q) * p;
            self.net += q;
            return;
        }
        let held = self.net.unsigned_abs();
        let close = held.min(q.unsigned_abs());
        if close == held {
            self.cost = 0;
        } else {
            self.cost -= self.cost * i128::from(close) / i128::from(held);
        }
        let close = close as i64 * q.signum();
        self.net += close;
        let rest = q - close;
        self.cost += i128::from(rest) * p;
        self.net += rest;
    }
}

#[inline]
/// The margin price once an order at `price` is part of the position:
/// `without` and `with` are the worst cases without the order and with it.
/// An order that adds to the worst case raises the margin price to its own
/// price if that is higher, or sets it if the position was flat without
/// it; one that does not add leaves it.
fn margin_price_with(margin_price: u32, price: u32, without: u64, with: u64) -> u32 {
    if with <= without {
        margin_price
    } else if without == 0 {
        price
    } else {
        margin_price.max(price)
    }
}

fn worst(net: i64, open_buy: u64, open_sell: u64) -> u64 {
    // In i64 (i128 costs twice the instructions, and this runs several
    // times per order): no account reaches 2^63 lots, and one that did
    // would saturate into a margin no credit covers.
    let long = net.saturating_add_unsigned(open_buy);
    let short = net.saturating_sub_unsigned(open_sell);
    long.unsigned_abs().max(short.unsigned_abs())
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Account {
    registered: bool,
    limits: AccountLimits,
    live_orders: u32,
    /// Sum of the positions' margins.
    margin: i128,
}

/// What a snapshot keeps of [`Accounts`] (the contracts' specs come from
/// the contract files).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountsState {
    accounts: Vec<Account>,
    positions: Vec<Position>,
    require_registration: bool,
}

/// Why accounts could not be rebuilt from a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountsStateError {
    #[error(
        "the snapshot has {positions} positions for {accounts} accounts and {contracts} contracts"
    )]
    Positions {
        positions: usize,
        accounts: usize,
        contracts: usize,
    },
}

/// Every account's positions and limits for one trading day.
pub struct Accounts {
    specs: Vec<Spec>,
    accounts: Vec<Account>,
    /// `account * specs.len() + instrument`.
    positions: Vec<Position>,
    require_registration: bool,
}

impl Accounts {
    /// No accounts yet; one spec per contract.
    pub fn new(contracts: &ContractSet) -> Accounts {
        Accounts {
            specs: contracts
                .iter()
                .map(|c| Spec {
                    lot: i128::from(c.lot_size),
                    margin_pct: i128::from(c.margin_pct),
                    lot_margin_pct: c.lot_size.checked_mul(u64::from(c.margin_pct)),
                    position_limit: u64::from(c.position_limit),
                    reference: c.reference_price.raw(),
                })
                .collect(),
            accounts: Vec::new(),
            positions: Vec::new(),
            require_registration: false,
        }
    }

    /// Registers (or re-limits) an account. Grows the tables when the id is
    /// new: call at set-up, not per order.
    pub fn register(&mut self, account: AccountId, limits: AccountLimits) {
        let i = account.0 as usize;
        if i >= self.accounts.len() {
            self.accounts.resize(i + 1, Account::default());
            let n = self.specs.len();
            let fresh: Vec<Position> = self
                .specs
                .iter()
                .map(|s| Position {
                    margin_price: s.reference,
                    ..Position::default()
                })
                .collect();
            while self.positions.len() < (i + 1) * n {
                let k = self.positions.len() % n;
                self.positions.push(fresh[k]);
            }
        }
        let a = &mut self.accounts[i];
        a.registered = true;
        a.limits = limits;
    }

    /// The state a snapshot keeps: every account's counters and positions.
    pub fn state(&self) -> AccountsState {
        AccountsState {
            accounts: self.accounts.clone(),
            positions: self.positions.clone(),
            require_registration: self.require_registration,
        }
    }

    /// Puts accounts built for the same contracts into `s`.
    pub fn restore(&mut self, s: &AccountsState) -> Result<(), AccountsStateError> {
        if s.positions.len() != s.accounts.len() * self.specs.len() {
            return Err(AccountsStateError::Positions {
                positions: s.positions.len(),
                accounts: s.accounts.len(),
                contracts: self.specs.len(),
            });
        }
        self.accounts.clone_from(&s.accounts);
        self.positions.clone_from(&s.positions);
        self.require_registration = s.require_registration;
        Ok(())
    }

    /// Whether orders of unregistered accounts are rejected.
    pub fn require_registration(&mut self, yes: bool) {
        self.require_registration = yes;
    }

    pub fn is_registered(&self, account: AccountId) -> bool {
        self.accounts
            .get(account.0 as usize)
            .is_some_and(|a| a.registered)
    }

    /// Registered accounts, in id order.
    pub fn registered(&self) -> impl Iterator<Item = AccountId> + '_ {
        self.accounts
            .iter()
            .enumerate()
            .filter(|(_, a)| a.registered)
            .map(|(i, _)| AccountId(i as u32))
    }

    /// A registered account's position in a contract.
    pub fn position(&self, account: AccountId, instrument: InstrumentId) -> Option<&Position> {
        let i = self.slot(account, instrument)?;
        Some(&self.positions[i])
    }

    /// Initial margin the account uses now, over all contracts.
    pub fn margin(&self, account: AccountId) -> Option<Money> {
        let a = self.accounts.get(account.0 as usize)?;
        a.registered.then_some(Money(a.margin))
    }

    /// Live orders of the account now.
    pub fn live_orders(&self, account: AccountId) -> Option<u32> {
        let a = self.accounts.get(account.0 as usize)?;
        a.registered.then_some(a.live_orders)
    }

    /// Lot size of a contract (for P&L in currency).
    pub fn lot(&self, instrument: InstrumentId) -> u64 {
        self.specs
            .get(usize::from(instrument.0))
            .map_or(1, |s| s.lot as u64)
    }

    #[inline]
    fn slot(&self, account: AccountId, instrument: InstrumentId) -> Option<usize> {
        let a = self.accounts.get(account.0 as usize)?;
        if !a.registered {
            return None;
        }
        let n = self.specs.len();
        let k = usize::from(instrument.0);
        (k < n).then_some(account.0 as usize * n + k)
    }

    /// Rounded up to the money unit: margin held is never less than the
    /// rate of the notional. Past i128 (no real position) it saturates, so
    /// the credit check refuses it.
    #[inline]
    fn margin_of(spec: &Spec, worst: u64, price: u32) -> i128 {
        // i128 multiplies and divides cost several times their u64 kind
        // (a divide is a library call of about 60 instructions), and this
        // runs two or three times per order; real orders' figures fit a
        // u64, where dividing by a constant is a multiply.
        let fast = spec.lot_margin_pct.and_then(|lot_pct| {
            worst
                .checked_mul(u64::from(price))
                .and_then(|x| x.checked_mul(lot_pct))
        });
        match fast {
            Some(v) => i128::from(v.div_ceil(100)),
            None => {
                let x = i128::from(worst)
                    .saturating_mul(i128::from(price))
                    .saturating_mul(spec.lot)
                    .saturating_mul(spec.margin_pct);
                x.saturating_add(99) / 100
            }
        }
    }

    /// The pre-trade check of an order of `qty` lots at `price`, the
    /// highest price it can trade at (its limit, or for a sell that crosses
    /// the book the best bid: its lots would be margined at their fill
    /// price), entered as `entry`.
    #[inline]
    pub fn check(
        &self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: u32,
        entry: Entry,
    ) -> Result<(), RejectReason> {
        let Some(a) = self
            .accounts
            .get(account.0 as usize)
            .filter(|a| a.registered)
        else {
            return if self.require_registration {
                Err(RejectReason::RiskLimit)
            } else {
                Ok(())
            };
        };
        if entry == Entry::Resting
            && a.limits.max_live_orders > 0
            && a.live_orders >= a.limits.max_live_orders
        {
            return Err(RejectReason::TooManyOrders);
        }
        let Some(i) = self.slot(account, instrument) else {
            return Ok(());
        };
        let pos = &self.positions[i];
        let spec = &self.specs[usize::from(instrument.0)];
        let before = pos.worst();
        let (mut ob, mut os) = (pos.open_buy, pos.open_sell);
        let without = match entry {
            Entry::Resting | Entry::Immediate => before,
            Entry::Replacing(old) => {
                match side {
                    Side::Buy => ob -= u64::from(old),
                    Side::Sell => os -= u64::from(old),
                }
                worst(pos.net, ob, os)
            }
        };
        match side {
            Side::Buy => ob += u64::from(qty),
            Side::Sell => os += u64::from(qty),
        }
        let after = worst(pos.net, ob, os);
        // An order that does not raise the worst case never exceeds the
        // position limit (an account over it can still reduce).
        if after > before && spec.position_limit > 0 && after > spec.position_limit {
            return Err(RejectReason::PositionLimit);
        }
        let Some(credit) = a.limits.credit else {
            return Ok(());
        };
        let mut margin_price = margin_price_with(pos.margin_price, price.raw(), without, after);
        // An order that can open lots (add to the position on its side, or
        // take it through zero) raises the margin price when they fill (see
        // `on_fill`), whether or not it raises the worst case: checked here
        // at that price, so a flip cannot pass over the credit.
        let opens = match side {
            Side::Buy => pos.net.saturating_add_unsigned(ob) > 0,
            Side::Sell => pos.net.saturating_sub_unsigned(os) < 0,
        };
        if opens {
            margin_price = margin_price.max(price.raw());
        }
        if after <= before && margin_price <= pos.margin_price {
            return Ok(());
        }
        let needed = a.margin - pos.margin + Self::margin_of(spec, after, margin_price);
        if needed > credit.0 {
            return Err(RejectReason::RiskLimit);
        }
        Ok(())
    }

    /// Recomputes a position's margin, given its worst case, and the
    /// account total.
    #[inline]
    fn remargin(&mut self, account: AccountId, i: usize, instrument: InstrumentId, worst: u64) {
        let spec = &self.specs[usize::from(instrument.0)];
        let pos = &mut self.positions[i];
        let m = Self::margin_of(spec, worst, pos.margin_price);
        self.accounts[account.0 as usize].margin += m - pos.margin;
        pos.margin = m;
    }

    /// An order passed every check and is live: `qty` lots at `price`.
    #[inline]
    pub fn on_admit(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: u32,
    ) {
        let Some(i) = self.slot(account, instrument) else {
            return;
        };
        self.accounts[account.0 as usize].live_orders += 1;
        let pos = &mut self.positions[i];
        let before = pos.worst();
        match side {
            Side::Buy => pos.open_buy += u64::from(qty),
            Side::Sell => pos.open_sell += u64::from(qty),
        }
        let after = pos.worst();
        pos.margin_price = margin_price_with(pos.margin_price, price.raw(), before, after);
        self.remargin(account, i, instrument, after);
    }

    /// A live order's open size changed from `old` to `new` lots at `price`
    /// (cancel to size, replace); the margin price moves as for an order
    /// admitted at `price` (see the module documentation).
    #[inline]
    pub fn on_resize(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        old: u32,
        new: u32,
    ) {
        let Some(i) = self.slot(account, instrument) else {
            return;
        };
        let pos = &mut self.positions[i];
        let open = match side {
            Side::Buy => &mut pos.open_buy,
            Side::Sell => &mut pos.open_sell,
        };
        *open -= u64::from(old);
        let without = pos.worst();
        let open = match side {
            Side::Buy => &mut pos.open_buy,
            Side::Sell => &mut pos.open_sell,
        };
        *open += u64::from(new);
        let with = pos.worst();
        pos.margin_price = margin_price_with(pos.margin_price, price.raw(), without, with);
        self.remargin(account, i, instrument, with);
    }

    /// `qty` lots of a live order filled at `price`.
    #[inline]
    pub fn on_fill(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        price: Price,
        qty: u32,
    ) {
        let Some(i) = self.slot(account, instrument) else {
            return;
        };
        let pos = &mut self.positions[i];
        let q = i64::from(qty);
        let opened = match side {
            Side::Buy => {
                pos.open_buy -= u64::from(qty);
                pos.fill(q, price.raw());
                pos.net > 0
            }
            Side::Sell => {
                pos.open_sell -= u64::from(qty);
                pos.fill(-q, price.raw());
                pos.net < 0
            }
        };
        // Lots this fill opened (the position grew, or went through zero)
        // are margined at least at the price they traded at: a sell trades
        // at or above its limit, and an order that did not add to the worst
        // case when admitted (a flip) never set the margin price.
        if opened {
            pos.margin_price = pos.margin_price.max(price.raw());
        }
        let worst = pos.worst();
        self.remargin(account, i, instrument, worst);
    }

    /// A live order finished (filled, cancelled, expired) with `remaining`
    /// lots unfilled.
    #[inline]
    pub fn on_done(
        &mut self,
        account: AccountId,
        instrument: InstrumentId,
        side: Side,
        remaining: u32,
    ) {
        let Some(i) = self.slot(account, instrument) else {
            return;
        };
        let a = &mut self.accounts[account.0 as usize];
        a.live_orders = a.live_orders.saturating_sub(1);
        if remaining > 0 {
            let pos = &mut self.positions[i];
            match side {
                Side::Buy => pos.open_buy -= u64::from(remaining),
                Side::Sell => pos.open_sell -= u64::from(remaining),
            }
            let worst = pos.worst();
            self.remargin(account, i, instrument, worst);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> u32 {
        s.parse::<Price>().unwrap().raw()
    }

    #[test]
    fn average_price_and_realized_pnl_follow_average_cost() {
        let mut pos = Position::default();
        pos.fill(10, p("6.500"));
        pos.fill(10, p("6.600"));
        assert_eq!(pos.avg_price(), Some(Price::from_raw(p("6.550"))));
        // Sell 5 at 6.700: realized 5 × (6.700 - 6.550) = 0.75 per lot-unit.
        pos.fill(-5, p("6.700"));
        assert_eq!(pos.net, 15);
        assert_eq!(pos.avg_price(), Some(Price::from_raw(p("6.550"))));
        assert_eq!(pos.realized(1).to_string(), "0.7500");
        // Flip to short 5 at 6.400: closes 15 (-2.25), opens 5 short.
        pos.fill(-20, p("6.400"));
        assert_eq!(pos.net, -5);
        assert_eq!(pos.avg_price(), Some(Price::from_raw(p("6.400"))));
        assert_eq!(pos.realized(1).to_string(), "-1.5000");
        assert_eq!(
            pos.unrealized(Price::from_raw(p("6.300")), 1).to_string(),
            "0.5000"
        );
        assert_eq!(
            pos.total_pnl(Price::from_raw(p("6.300")), 10_000)
                .to_string(),
            "-10000.0000"
        );
        assert_eq!((pos.bought, pos.sold), (20, 25));
    }

    #[test]
    fn worst_case_counts_open_orders_on_each_side() {
        assert_eq!(worst(10, 5, 30), 20);
        assert_eq!(worst(-10, 5, 0), 10);
        assert_eq!(worst(0, 7, 3), 7);
    }

    #[test]
    fn initial_margin_is_rounded_up_never_down() {
        // 1 lot at 2.151 with a 7 % margin rate is 0.15057: 1,505.7 raw
        // units, so 1,506 are held and a credit of 1,505 does not cover it.
        let mut set = ContractSet::default();
        set.add_toml(
            std::path::Path::new("t.toml"),
            "[[contract]]\nsymbol = \"GH2612\"\nreference_price = \"2.150\"\n\
             tick = \"0.001\"\nlimit_pct = 20\nmax_order_qty = 500\nmargin_pct = 7\n",
        )
        .unwrap();
        let mut acc = Accounts::new(&set);
        let (a, gh, price) = (AccountId(0), InstrumentId(0), Price::from_raw(p("2.151")));
        let limits = |raw| AccountLimits {
            credit: Some(Money::from_raw(raw)),
            max_live_orders: 0,
        };
        acc.register(a, limits(1_505));
        assert_eq!(
            acc.check(a, gh, Side::Buy, price, 1, Entry::Resting),
            Err(RejectReason::RiskLimit)
        );
        acc.register(a, limits(1_506));
        assert_eq!(
            acc.check(a, gh, Side::Buy, price, 1, Entry::Resting),
            Ok(())
        );
        acc.on_admit(a, gh, Side::Buy, price, 1);
        assert_eq!(acc.margin(a), Some(Money::from_raw(1_506)));
    }

    fn spec(lot: u64, margin_pct: u32) -> Spec {
        Spec {
            lot: i128::from(lot),
            margin_pct: i128::from(margin_pct),
            lot_margin_pct: lot.checked_mul(u64::from(margin_pct)),
            position_limit: 0,
            reference: 0,
        }
    }

    proptest::proptest! {
        #[test]
        fn margin_is_the_same_through_the_u64_fast_path_and_the_i128_one(
            worst in 0u64..=u64::from(u32::MAX) * 4,
            price in proptest::prelude::any::<u32>(),
            lot in 1u64..=1_000_000,
            pct in 0u32..=100,
        ) {
            let fast = spec(lot, pct);
            let slow = Spec { lot_margin_pct: None, ..fast };
            let exact = (i128::from(worst) * i128::from(price) * i128::from(lot) * i128::from(pct) + 99) / 100;
            proptest::prop_assert_eq!(Accounts::margin_of(&fast, worst, price), exact);
            proptest::prop_assert_eq!(Accounts::margin_of(&slow, worst, price), exact);
        }
    }

    #[test]
    fn a_margin_past_i128_saturates_instead_of_wrapping() {
        let huge = spec(u64::MAX, u32::MAX);
        assert_eq!(huge.lot_margin_pct, None);
        let m = Accounts::margin_of(&huge, u64::MAX, u32::MAX);
        assert_eq!(m, i128::MAX / 100);
        assert!(
            m > 0,
            "a wrapped margin would be negative and pass any credit"
        );
    }

    #[test]
    fn the_worst_case_saturates_at_i64_for_absurd_open_sizes() {
        assert_eq!(worst(i64::MAX, u64::MAX, 0), i64::MAX as u64);
        assert_eq!(worst(i64::MIN, 0, u64::MAX), 1u64 << 63);
        assert_eq!(worst(-3, 10, 2), 7);
    }

    #[test]
    fn money_prints_four_decimals_with_sign() {
        assert_eq!(Money::from_raw(-12_345).to_string(), "-1.2345");
        assert_eq!(Money::from_units(42).to_string(), "42.0000");
        assert_eq!(Money::ZERO.to_string(), "0.0000");
    }
}
