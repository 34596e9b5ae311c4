//! The engine benchmark: a realistic mixed order flow on one book, run
//! through tokex's engine and through a peer order-book crate (`lobster`)
//! in the same process, with per-operation latency percentiles.
//!
//! Owns the flow model (deterministic, seeded) and the two runners. Used by
//! `tokex bench engine`, the criterion benches and the allocation test.

use std::fmt;
use std::time::Instant;

use crate::contract::Contract;
use crate::engine::{Engine, EngineConfig, Event, EventSink, NewOrder, Tee};
use crate::latency::{fmt_ns, LatencyHistogram, Summary};
use crate::types::{AccountId, Nanos, OrderId, Price, Qty, Side, Tif};

/// A small, fast, deterministic PRNG (xorshift64*): the flow must be the
/// same for both engines and for every run with the same seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (n > 0).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() >> 32) * n) >> 32
    }
}

/// One operation of the flow. Orders are referred to by `pick`, an index
/// into the runner's ring of recently rested orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowOp {
    /// A passive DAY order near the touch.
    Add {
        account: u32,
        side: Side,
        price: u32,
        qty: u32,
    },
    /// An IOC order crossing the touch.
    Aggress {
        account: u32,
        side: Side,
        price: u32,
        qty: u32,
    },
    /// Cancel a recent order in full.
    Cancel { pick: u32 },
    /// Replace a recent order: new size, price moved by `ticks`.
    Replace { pick: u32, ticks: i32, qty: u32 },
}

impl FlowOp {
    pub const fn kind(&self) -> usize {
        match self {
            FlowOp::Add { .. } => 0,
            FlowOp::Cancel { .. } => 1,
            FlowOp::Replace { .. } => 2,
            FlowOp::Aggress { .. } => 3,
        }
    }
}

/// Names of [`FlowOp::kind`].
pub const KINDS: [&str; 4] = ["add", "cancel", "replace", "aggressive"];

/// Generates `n` operations: a mid price random-walking within the daily
/// limits (one tick every 64 operations on average); 55 % passive adds
/// 2..=6 ticks from the mid, 30 % cancels, 8 %
/// replaces, 7 % aggressive IOCs reaching 0..=3 ticks through the mid.
pub fn mixed_flow(n: usize, seed: u64, c: &Contract) -> Vec<FlowOp> {
    mixed_flow_with(n, seed, c, Mix::default())
}

/// Percentages of each operation kind in a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mix {
    pub add: u32,
    pub cancel: u32,
    pub replace: u32,
    pub aggressive: u32,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            add: 55,
            cancel: 30,
            replace: 8,
            aggressive: 7,
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    /// `add=60,cancel=25,replace=10,aggressive=5` (must sum to 100).
    fn from_str(s: &str) -> Result<Mix, String> {
        let mut m = Mix {
            add: 0,
            cancel: 0,
            replace: 0,
            aggressive: 0,
        };
        for part in s.split(',') {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=percent"))?;
            let v: u32 = v
                .trim()
                .parse()
                .map_err(|_| format!("{v:?} is not a percentage"))?;
            match k.trim() {
                "add" => m.add = v,
                "cancel" => m.cancel = v,
                "replace" => m.replace = v,
                "aggressive" => m.aggressive = v,
                other => {
                    return Err(format!(
                        "unknown operation {other:?} (add, cancel, replace, aggressive)"
                    ))
                }
            }
        }
        if m.add + m.cancel + m.replace + m.aggressive != 100 {
            return Err("the percentages must sum to 100".into());
        }
        Ok(m)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}% passive adds, {}% cancels, {}% replaces, {}% aggressive IOC",
            self.add, self.cancel, self.replace, self.aggressive
        )
    }
}

/// [`mixed_flow`] with another mix of operations.
pub fn mixed_flow_with(n: usize, seed: u64, c: &Contract, mix: Mix) -> Vec<FlowOp> {
    let mut rng = Rng::new(seed);
    let tick = c.tick.raw() as i64;
    let lo = c.lower_limit.raw() as i64 + 20 * tick;
    let hi = c.upper_limit.raw() as i64 - 20 * tick;
    let mut mid = c.reference_price.raw() as i64;
    let mut ops = Vec::with_capacity(n);
    for _ in 0..n {
        if rng.below(64) == 0 {
            mid = (mid + if rng.below(2) == 0 { tick } else { -tick }).clamp(lo, hi);
        }
        let account = rng.below(8) as u32;
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let r = rng.below(100);
        let op = if r < u64::from(mix.add) {
            let away = (2 + rng.below(5) as i64) * tick;
            let price = match side {
                Side::Buy => mid - away,
                Side::Sell => mid + away,
            };
            FlowOp::Add {
                account,
                side,
                price: price as u32,
                qty: 1 + rng.below(10) as u32,
            }
        } else if r < u64::from(mix.add + mix.cancel) {
            FlowOp::Cancel {
                pick: rng.next_u64() as u32,
            }
        } else if r < u64::from(mix.add + mix.cancel + mix.replace) {
            FlowOp::Replace {
                pick: rng.next_u64() as u32,
                ticks: rng.below(3) as i32 - 1,
                qty: 1 + rng.below(10) as u32,
            }
        } else {
            let through = rng.below(4) as i64 * tick;
            let price = match side {
                Side::Buy => mid + through,
                Side::Sell => mid - through,
            };
            FlowOp::Aggress {
                account,
                side,
                price: price as u32,
                qty: 1 + rng.below(20) as u32,
            }
        };
        ops.push(op);
    }
    ops
}

/// Size of the ring of recent resting orders that cancels and replaces pick from.
pub const RING: usize = 1024;

/// Keeps the ids of orders that started resting, for cancels and replaces.
struct RingSink<'a> {
    ring: &'a mut [OrderId; RING],
    pos: &'a mut usize,
}

impl EventSink for RingSink<'_> {
    #[inline]
    fn event(&mut self, e: &Event) {
        let order = match *e {
            Event::BookAdd { order, .. } | Event::BookReplace { order, .. } => order,
            _ => return,
        };
        self.ring[*self.pos % RING] = order;
        *self.pos += 1;
    }
}

/// The flow through tokex's engine.
pub struct TokexRunner {
    pub engine: Engine,
    instrument: crate::types::InstrumentId,
    tick: u32,
    ring: Box<[OrderId; RING]>,
    pos: usize,
    now: u64,
}

impl TokexRunner {
    pub fn new(
        contracts: &crate::contract::ContractSet,
        c: &Contract,
        max_orders: u32,
    ) -> TokexRunner {
        TokexRunner {
            engine: Engine::new(contracts, EngineConfig { max_orders }),
            instrument: c.id,
            tick: c.tick.raw(),
            ring: Box::new([OrderId(0); RING]),
            pos: 0,
            now: 0,
        }
    }

    #[inline]
    pub fn apply(&mut self, op: &FlowOp) {
        self.apply_with(op, &mut ());
    }

    /// Applies one operation, also handing every engine event to `extra`
    /// (an ITCH encoder, a feed, a recorder).
    #[inline]
    pub fn apply_with(&mut self, op: &FlowOp, extra: &mut impl EventSink) {
        self.now += 1;
        let now = Nanos(self.now);
        let mut ring = RingSink {
            ring: &mut self.ring,
            pos: &mut self.pos,
        };
        let mut sink = Tee(&mut ring, extra);
        match *op {
            FlowOp::Add {
                account,
                side,
                price,
                qty,
            }
            | FlowOp::Aggress {
                account,
                side,
                price,
                qty,
            } => {
                let tif = if matches!(op, FlowOp::Add { .. }) {
                    Tif::Day
                } else {
                    Tif::Ioc
                };
                let o = NewOrder {
                    account: AccountId(account),
                    tag: self.now,
                    instrument: self.instrument,
                    side,
                    price: Price::from_raw(price),
                    qty: Qty::new(qty),
                    tif,
                };
                self.engine.enter(now, &o, &mut sink);
            }
            FlowOp::Cancel { pick } => {
                let id = sink.0.ring[pick as usize % RING];
                let account = self.engine.order(id).map_or(AccountId(0), |o| o.account);
                self.engine
                    .cancel(now, account, id, Qty::ZERO, self.now, &mut sink);
            }
            FlowOp::Replace { pick, ticks, qty } => {
                let id = sink.0.ring[pick as usize % RING];
                let Some(o) = self.engine.order(id) else {
                    // A stale pick still costs the lookup a real replace would.
                    return self
                        .engine
                        .cancel(now, AccountId(0), id, Qty::ZERO, 0, &mut sink);
                };
                let price = (o.price.raw() as i64 + ticks as i64 * self.tick as i64) as u32;
                self.engine.replace(
                    now,
                    o.account,
                    id,
                    self.now,
                    Price::from_raw(price),
                    Qty::new(qty),
                    &mut sink,
                );
            }
        }
    }
}

/// The same flow through `lobster` (BTreeMap levels, arena of orders).
/// lobster has no IOC or replace: an IOC is a limit order whose rest is
/// cancelled, a replace is a cancel plus a new order, as a venue on top of
/// it would have to do.
pub struct LobsterRunner {
    book: lobster::OrderBook,
    ring: Box<[(u128, u64, lobster::Side); RING]>,
    pos: usize,
    next_id: u128,
}

impl LobsterRunner {
    pub fn new(capacity: usize) -> LobsterRunner {
        LobsterRunner {
            book: lobster::OrderBook::new(capacity, 16, false),
            ring: Box::new([(0, 0, lobster::Side::Bid); RING]),
            pos: 0,
            next_id: 1,
        }
    }

    fn side(s: Side) -> lobster::Side {
        match s {
            Side::Buy => lobster::Side::Bid,
            Side::Sell => lobster::Side::Ask,
        }
    }

    fn limit(&mut self, side: lobster::Side, price: u64, qty: u64) -> (u128, bool) {
        let id = self.next_id;
        self.next_id += 1;
        let ev = self.book.execute(lobster::OrderType::Limit {
            id,
            side,
            qty,
            price,
        });
        let rests = matches!(
            ev,
            lobster::OrderEvent::Placed { .. } | lobster::OrderEvent::PartiallyFilled { .. }
        );
        (id, rests)
    }

    #[inline]
    pub fn apply(&mut self, op: &FlowOp, tick: u32) {
        match *op {
            FlowOp::Add {
                side, price, qty, ..
            } => {
                let s = Self::side(side);
                let (id, rests) = self.limit(s, price as u64, qty as u64);
                if rests {
                    self.ring[self.pos % RING] = (id, price as u64, s);
                    self.pos += 1;
                }
            }
            FlowOp::Aggress {
                side, price, qty, ..
            } => {
                let (id, rests) = self.limit(Self::side(side), price as u64, qty as u64);
                if rests {
                    self.book.execute(lobster::OrderType::Cancel { id });
                }
            }
            FlowOp::Cancel { pick } => {
                let (id, _, _) = self.ring[pick as usize % RING];
                self.book.execute(lobster::OrderType::Cancel { id });
            }
            FlowOp::Replace { pick, ticks, qty } => {
                let slot = pick as usize % RING;
                let (id, price, side) = self.ring[slot];
                self.book.execute(lobster::OrderType::Cancel { id });
                let price = (price as i64 + ticks as i64 * tick as i64) as u64;
                let (id, rests) = self.limit(side, price, qty as u64);
                if rests {
                    self.ring[slot] = (id, price, side);
                }
            }
        }
    }
}

/// Results of one engine benchmark run.
#[derive(Debug, Clone)]
pub struct EngineBenchReport {
    pub ops: usize,
    pub tokex_ops_per_sec: f64,
    pub lobster_ops_per_sec: f64,
    /// Per operation kind (see [`KINDS`]) and overall, tokex.
    pub tokex: Vec<(String, Summary)>,
    pub lobster_all: Summary,
    pub trades: u64,
    pub live_orders: usize,
}

impl EngineBenchReport {
    pub fn ratio(&self) -> f64 {
        self.tokex_ops_per_sec / self.lobster_ops_per_sec
    }
}

impl fmt::Display for EngineBenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "engine: {} mixed operations on one book (55% add, 30% cancel, 8% replace, 7% aggressive IOC)",
            self.ops
        )?;
        writeln!(
            f,
            "throughput: tokex {:.2} M ops/s, lobster {:.2} M ops/s, ratio {:.1}x ({} trades, {} orders resting at the end)",
            self.tokex_ops_per_sec / 1e6,
            self.lobster_ops_per_sec / 1e6,
            self.ratio(),
            self.trades,
            self.live_orders
        )?;
        writeln!(
            f,
            "per-operation latency (includes ~{} of clock reads):",
            fmt_ns(self.clock_overhead())
        )?;
        writeln!(f, "{:<18} {}", "", Summary::table_header())?;
        for (name, s) in &self.tokex {
            writeln!(f, "{:<18} {s}", format!("tokex {name}"))?;
        }
        writeln!(f, "{:<18} {}", "lobster all", self.lobster_all)
    }
}

impl EngineBenchReport {
    fn clock_overhead(&self) -> u64 {
        let clock = quanta::Clock::new();
        let n = 10_000;
        let start = clock.raw();
        for _ in 0..n {
            std::hint::black_box(clock.raw());
        }
        clock.delta_as_nanos(start, clock.raw()) / n
    }
}

/// Runs the flow through both engines: a warm-up, a timed pass for
/// throughput, then a pass timing every operation.
pub fn run(ops: usize, seed: u64) -> anyhow::Result<EngineBenchReport> {
    // No operations, no rates: the ratio would be 0/0.
    anyhow::ensure!(ops > 0, "--ops must be at least 1");
    let contracts = crate::contract::ContractSet::load_dir(std::path::Path::new("contracts"))?;
    let c = contracts
        .iter()
        .next()
        .ok_or_else(|| anyhow::anyhow!("no contracts"))?
        .clone();
    let warm = mixed_flow(200_000, seed ^ 0xA5A5, &c);
    let flow = mixed_flow(ops, seed, &c);
    let cap = 1 << 20;

    // Throughput, each engine alone in turn, same operations.
    let mut t = TokexRunner::new(&contracts, &c, cap);
    warm.iter().for_each(|op| t.apply(op));
    let start = Instant::now();
    for op in &flow {
        t.apply(std::hint::black_box(op));
    }
    let tokex_secs = start.elapsed().as_secs_f64();
    let trades = t.engine.match_number();
    let live_orders = t.engine.live_orders();

    let mut l = LobsterRunner::new(cap as usize);
    warm.iter().for_each(|op| l.apply(op, c.tick.raw()));
    let start = Instant::now();
    for op in &flow {
        l.apply(std::hint::black_box(op), c.tick.raw());
    }
    let lobster_secs = start.elapsed().as_secs_f64();

    // Per-operation latency with a cheap clock (TSC through quanta).
    let clock = quanta::Clock::new();
    let mut t = TokexRunner::new(&contracts, &c, cap);
    warm.iter().for_each(|op| t.apply(op));
    let mut per_kind: Vec<LatencyHistogram> = (0..4).map(|_| LatencyHistogram::new()).collect();
    let mut all = LatencyHistogram::new();
    for op in &flow {
        let s = clock.raw();
        t.apply(op);
        let ns = clock.delta_as_nanos(s, clock.raw());
        per_kind[op.kind()].record(ns);
        all.record(ns);
    }
    let mut l = LobsterRunner::new(cap as usize);
    warm.iter().for_each(|op| l.apply(op, c.tick.raw()));
    let mut lobster_all = LatencyHistogram::new();
    for op in &flow {
        let s = clock.raw();
        l.apply(op, c.tick.raw());
        lobster_all.record(clock.delta_as_nanos(s, clock.raw()));
    }

    let mut tokex: Vec<(String, Summary)> = KINDS
        .iter()
        .zip(&per_kind)
        .map(|(k, h)| (k.to_string(), h.summary(h.len() as f64 / tokex_secs)))
        .collect();
    tokex.push(("all".into(), all.summary(ops as f64 / tokex_secs)));
    Ok(EngineBenchReport {
        ops,
        tokex_ops_per_sec: ops as f64 / tokex_secs,
        lobster_ops_per_sec: ops as f64 / lobster_secs,
        tokex,
        lobster_all: lobster_all.summary(ops as f64 / lobster_secs),
        trades,
        live_orders,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flow_is_deterministic_and_has_the_stated_mix() {
        let contracts = crate::contract::ContractSet::shipped();
        let c = contracts.iter().next().unwrap();
        let a = mixed_flow(100_000, 7, c);
        assert_eq!(a, mixed_flow(100_000, 7, c));
        let mut counts = [0usize; 4];
        for op in &a {
            counts[op.kind()] += 1;
            if let FlowOp::Add { price, .. } | FlowOp::Aggress { price, .. } = op {
                assert!(*price >= c.lower_limit.raw() && *price <= c.upper_limit.raw());
                assert_eq!(price % c.tick.raw(), 0);
            }
        }
        let pct = |k: usize| counts[k] * 100 / a.len();
        assert!((53..=57).contains(&pct(0)), "{counts:?}");
        assert!((28..=32).contains(&pct(1)), "{counts:?}");
        assert!((6..=10).contains(&pct(2)), "{counts:?}");
        assert!((5..=9).contains(&pct(3)), "{counts:?}");
    }

    #[test]
    fn mix_parses_names_and_percentages_that_sum_to_100() {
        let m: Mix = "add=60,cancel=25,replace=10,aggressive=5".parse().unwrap();
        assert_eq!(
            m,
            Mix {
                add: 60,
                cancel: 25,
                replace: 10,
                aggressive: 5
            }
        );
        assert!("add=60,cancel=25".parse::<Mix>().is_err());
        assert!("add=50,cancel=50,sell=0".parse::<Mix>().is_err());
        let contracts = crate::contract::ContractSet::shipped();
        let c = contracts.iter().next().unwrap();
        let only_adds = mixed_flow_with(
            1000,
            1,
            c,
            "add=100,cancel=0,replace=0,aggressive=0".parse().unwrap(),
        );
        assert!(only_adds.iter().all(|op| op.kind() == 0));
    }

    #[test]
    fn an_engine_bench_of_no_operations_is_refused_instead_of_printing_nan() {
        let err = run(0, 42).expect_err("0 operations must be refused");
        assert!(err.to_string().contains("--ops"), "{err}");
    }

    #[test]
    fn tokex_and_lobster_runners_trade_the_same_flow() {
        let contracts = crate::contract::ContractSet::shipped();
        let c = contracts.iter().next().unwrap();
        let flow = mixed_flow(20_000, 3, c);
        let mut t = TokexRunner::new(&contracts, c, 1 << 16);
        let mut l = LobsterRunner::new(1 << 16);
        for op in &flow {
            t.apply(op);
            l.apply(op, c.tick.raw());
        }
        assert!(t.engine.match_number() > 100, "the flow must trade");
        assert!(t.engine.live_orders() > 50, "the flow must keep a book");
    }
}
