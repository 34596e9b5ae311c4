//! A small harness shared by the lifecycle tests: an engine over contracts
//! given as TOML text, orders by (account, side, qty, price), a simulated
//! clock, and the events of the last call.

#![allow(dead_code)]

use std::path::Path;

use tokex::contract::ContractSet;
use tokex::engine::{Engine, EngineConfig, Event, NewOrder, Phase, RejectReason};
use tokex::types::{AccountId, InstrumentId, Nanos, OrderId, Price, Qty, Side, Tif};

pub const SEC: u64 = 1_000_000_000;

pub fn px(s: &str) -> Price {
    s.parse().unwrap()
}

pub fn contracts(toml: &str) -> ContractSet {
    let mut set = ContractSet::default();
    set.add_toml(Path::new("lifecycle.toml"), toml).unwrap();
    set
}

pub struct Rig {
    pub e: Engine,
    pub set: ContractSet,
    pub ev: Vec<Event>,
    pub tag: u64,
    pub now: u64,
}

/// What happened to one order request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted(OrderId),
    Rejected(RejectReason),
}

impl Outcome {
    pub fn id(self) -> OrderId {
        match self {
            Outcome::Accepted(id) => id,
            Outcome::Rejected(r) => panic!("rejected: {r:?}"),
        }
    }
}

impl Rig {
    pub fn new(toml: &str) -> Rig {
        let set = contracts(toml);
        Rig {
            e: Engine::new(&set, EngineConfig { max_orders: 1024 }),
            set,
            ev: Vec::new(),
            tag: 0,
            now: 0,
        }
    }

    /// Moves the simulated clock forward (no events run until a call).
    pub fn at(&mut self, now: u64) -> &mut Rig {
        assert!(now >= self.now, "time runs forward");
        self.now = now;
        self
    }

    pub fn enter(
        &mut self,
        inst: u16,
        acct: u32,
        side: Side,
        qty: u32,
        price: &str,
        tif: Tif,
    ) -> Outcome {
        self.tag += 1;
        self.now += 1;
        self.ev.clear();
        self.e.enter(
            Nanos(self.now),
            &NewOrder {
                account: AccountId(acct),
                tag: self.tag,
                instrument: InstrumentId(inst),
                side,
                price: px(price),
                qty: Qty::new(qty),
                tif,
            },
            &mut self.ev,
        );
        self.ev
            .iter()
            .find_map(|e| match *e {
                Event::Accepted { order, .. } => Some(Outcome::Accepted(order)),
                Event::Rejected { reason, .. } => Some(Outcome::Rejected(reason)),
                _ => None,
            })
            .expect("an answer")
    }

    pub fn buy(&mut self, acct: u32, qty: u32, price: &str) -> Outcome {
        self.enter(0, acct, Side::Buy, qty, price, Tif::Day)
    }

    pub fn sell(&mut self, acct: u32, qty: u32, price: &str) -> Outcome {
        self.enter(0, acct, Side::Sell, qty, price, Tif::Day)
    }

    pub fn phase(&mut self, inst: Option<u16>, phase: Phase) {
        self.ev.clear();
        self.e
            .set_phase(Nanos(self.now), inst.map(InstrumentId), phase, &mut self.ev);
    }

    pub fn advance(&mut self, now: u64) {
        self.at(now);
        self.ev.clear();
        self.e.advance(Nanos(now), &mut self.ev);
    }

    /// (price, qty, taker order, maker order) of every fill in the last events.
    pub fn fills(&self) -> Vec<(Price, u32, OrderId, OrderId)> {
        self.ev
            .iter()
            .filter_map(|e| match *e {
                Event::Executed {
                    price,
                    qty,
                    taker,
                    maker,
                    ..
                } => Some((price, qty.lots(), taker.order, maker.order)),
                _ => None,
            })
            .collect()
    }

    pub fn phases(&self) -> Vec<Phase> {
        self.ev
            .iter()
            .filter_map(|e| match *e {
                Event::PhaseChanged { phase, .. } => Some(phase),
                _ => None,
            })
            .collect()
    }

    /// (price, qty) of every resting order of a side, best first.
    pub fn book(&self, inst: u16, side: Side) -> Vec<(Price, u32)> {
        self.e
            .resting(InstrumentId(inst), side)
            .map(|o| (o.price, o.qty.lots()))
            .collect()
    }
}
