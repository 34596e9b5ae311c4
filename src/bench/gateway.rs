//! The exchange's per-order work without the network: datagrams of OUCH
//! orders through the gateway (SoupBinTCP, session, token table, risk,
//! matching, ITCH into MoldUDP64, the journal record, the reply packed
//! into its datagram), batch by batch as `tokex exchange` runs them, with
//! the batch's journal write. Only the sockets are missing: what the
//! exchange would send is counted and dropped.
//!
//! Also the order flow this and `tokex bench recovery` send: eight
//! sessions entering passive orders within 20 ticks of the reference price
//! (one in ten crosses, as an IOC) and cancelling two in five of them.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use zerocopy::IntoBytes;

use crate::config::{demo_sessions, Config, GatewayConfig};
use crate::contract::{Contract, ContractSet};
use crate::exchange::{Journal, Replies};
use crate::gateway::Peer;
use crate::journal::{Durability, JournalWriter};
use crate::snapshot::Replica;
use crate::types::{Nanos, Price, Qty, Side, Tif};
use crate::wire::{ouch, soupbin};

/// Client sessions of the flow.
pub const SESSIONS: usize = 8;

/// Session `s`'s address (198.18.0.2, one port per session).
pub fn peer(s: usize) -> Peer {
    Peer::Udp(SocketAddrV4::new(
        Ipv4Addr::new(198, 18, 0, 2),
        40_000 + s as u16,
    ))
}

/// The order flow: each call writes the next OUCH message of a session.
pub struct OrderFlow {
    seed: u64,
    /// Each session's resting orders it may cancel (at most 4,096).
    live: Vec<Vec<ouch::Token>>,
    symbol: crate::types::Symbol,
    reference: u32,
    tick: u32,
}

impl OrderFlow {
    pub fn new(contract: &Contract, seed: u64) -> OrderFlow {
        OrderFlow {
            seed,
            live: vec![Vec::new(); SESSIONS],
            symbol: contract.symbol,
            reference: contract.reference_price.raw(),
            tick: contract.tick.raw(),
        }
    }

    /// A small LCG: reproducible order flow without a dependency.
    fn random(&mut self) -> u64 {
        self.seed = self
            .seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.seed >> 33
    }

    /// Writes message `i` of session `s` (an Unsequenced Data packet) into
    /// `buf`; returns its length.
    pub fn write(&mut self, i: u64, s: usize, buf: &mut [u8]) -> anyhow::Result<usize> {
        let r = self.random();
        let live = &mut self.live[s];
        if r % 100 < 40 && !live.is_empty() {
            let k = (r as usize / 100) % live.len();
            let token = live.swap_remove(k);
            return Ok(soupbin::write_unsequenced(
                buf,
                ouch::CancelOrder::new(token, Qty::ZERO).as_bytes(),
            )?);
        }
        let mut token = [b' '; 14];
        token[..12].copy_from_slice(format!("R{s}{i:010}").as_bytes());
        let side = if r & 1 == 0 { Side::Buy } else { Side::Sell };
        // Passive within 20 ticks of the reference; one in ten crosses.
        let off = (r / 7 % 20 + 1) as u32 * self.tick;
        let aggressive = r.is_multiple_of(10);
        let price = match (side, aggressive) {
            (Side::Buy, false) | (Side::Sell, true) => self.reference - off,
            (Side::Sell, false) | (Side::Buy, true) => self.reference + off,
        };
        if !aggressive && live.len() < 4096 {
            live.push(token);
        }
        let tif = if aggressive { Tif::Ioc } else { Tif::Day };
        let m = ouch::EnterOrder::new(
            token,
            side,
            Qty::new(1 + (r % 5) as u32),
            self.symbol,
            Price::from_raw(price),
            tif,
        );
        Ok(soupbin::write_unsequenced(buf, m.as_bytes())?)
    }
}

/// One Login Request datagram per session of the flow.
pub fn logins(cfg: &Config) -> anyhow::Result<Vec<(Peer, Vec<u8>)>> {
    let mut buf = [0u8; 128];
    cfg.sessions
        .iter()
        .take(SESSIONS)
        .enumerate()
        .map(|(s, c)| {
            let n = soupbin::write_login_request(
                &mut buf,
                c.username.as_bytes(),
                c.password.as_bytes(),
                b"",
                0,
            )?;
            Ok((peer(s), buf[..n].to_vec()))
        })
        .collect()
}

/// The exchange config the flow runs under: the demo sessions, no rate
/// limit, room for every order.
pub fn config(journal: &Path) -> Config {
    let mut c = Config::default();
    c.engine.max_orders = 1 << 21;
    c.gateway = GatewayConfig {
        rate_per_sec: u32::MAX / 2,
        rate_burst: u32::MAX / 2,
        ..GatewayConfig::default()
    };
    c.sessions = demo_sessions();
    c.network.md_session = "TOKEX00001".into();
    c.journal.path = journal.to_path_buf();
    c
}

/// Datagrams of the flow, `orders` in all, `per_datagram` orders each
/// (one session's), grouped `per_batch` datagrams to a batch.
pub struct Workload {
    pub batches: Vec<Vec<(Peer, Vec<u8>)>>,
    pub orders: u64,
}

impl Workload {
    pub fn new(
        contracts: &ContractSet,
        orders: u64,
        per_datagram: usize,
        per_batch: usize,
    ) -> anyhow::Result<Workload> {
        let contract = contracts.iter().next().context("no contracts")?;
        let mut flow = OrderFlow::new(contract, 42);
        let mut buf = [0u8; 128];
        let mut datagrams = Vec::new();
        let mut i = 0;
        while i < orders {
            let s = datagrams.len() % SESSIONS;
            let mut d = Vec::new();
            for _ in 0..per_datagram.min((orders - i) as usize) {
                let n = flow.write(i, s, &mut buf)?;
                d.extend_from_slice(&buf[..n]);
                i += 1;
            }
            datagrams.push((peer(s), d));
        }
        let batches = datagrams
            .chunks(per_batch.max(1))
            .map(<[_]>::to_vec)
            .collect();
        Ok(Workload { batches, orders })
    }

    /// The batches holding the first `orders` orders (whole batches; at
    /// least that many), and the rest.
    pub fn split(self, orders: u64) -> (Workload, Workload) {
        let (mut front, mut count) = (self.batches, 0);
        let mut at = 0;
        while at < front.len() && count < orders {
            count += front[at].iter().map(|(_, d)| packets(d)).sum::<u64>();
            at += 1;
        }
        let back = front.split_off(at);
        (
            Workload {
                batches: front,
                orders: count,
            },
            Workload {
                batches: back,
                orders: self.orders - count,
            },
        )
    }
}

/// SoupBinTCP packets in a datagram.
fn packets(d: &[u8]) -> u64 {
    soupbin::packets(d).count() as u64
}

/// A fresh exchange state (engine, gateway, publisher, journal, reply
/// holding area) with every session logged in.
pub struct Rig {
    replica: Replica,
    journal: Journal,
    replies: Replies,
    now: u64,
}

impl Rig {
    /// A new day, its journal at `journal` (replaced; refused, untouched,
    /// while an exchange holds it).
    pub fn new(contracts: &ContractSet, journal: &Path) -> anyhow::Result<Rig> {
        let cfg = config(journal);
        let lock = crate::journal::lock(journal)?;
        let _ = std::fs::remove_file(journal);
        let mut replica = Replica::new(&cfg, contracts, 1 << 16);
        let now = 1_000_000_000;
        replica.start_of_day(Nanos(now));
        let (mut writer, _) = JournalWriter::open(journal, Durability::Write, 1 << 20, |_| {})?;
        writer.hold(lock);
        let mut rig = Rig {
            replica,
            journal: Journal(writer, 0),
            replies: Replies::new(),
            now,
        };
        let logins = logins(&cfg)?;
        rig.batch(&logins)?;
        anyhow::ensure!(
            rig.replica.gateway.counters().logins == SESSIONS as u64,
            "the sessions did not log in"
        );
        Ok(rig)
    }

    /// One batch as the exchange's loop runs it: every datagram through
    /// the gateway, one journal write, then the replies and market data
    /// (counted, not sent). Returns the bytes that would have been sent.
    pub fn batch(&mut self, datagrams: &[(Peer, Vec<u8>)]) -> anyhow::Result<u64> {
        self.now += 1_000;
        let now = Nanos(self.now);
        let Replica {
            engine,
            gateway,
            publisher,
            ..
        } = &mut self.replica;
        publisher.set_time(now);
        for (peer, bytes) in datagrams {
            gateway.on_datagram(
                now,
                *peer,
                bytes,
                engine,
                publisher,
                &mut self.journal,
                &mut self.replies,
            );
        }
        self.journal.0.commit().context("journal write")?;
        anyhow::ensure!(self.journal.1 == 0, "journal append failed");
        let (mut udp, mut tcp, mut md) = (0u64, 0u64, 0u64);
        for peer in self.replies.peers() {
            gateway.note_sent(peer, now);
        }
        self.replies.drain(
            |_, d| {
                udp += d.len() as u64;
                true
            },
            |(_, r)| tcp += r.len() as u64,
        );
        publisher.flush(&mut |p| md += p.len() as u64);
        Ok(udp + tcp + md)
    }

    /// Runs every batch of `w`; returns the bytes that would have been sent.
    pub fn run(&mut self, w: &Workload) -> anyhow::Result<u64> {
        w.batches
            .iter()
            .try_fold(0, |acc, b| Ok(acc + self.batch(b)?))
    }

    /// The gateway's counters and the engine, for checking a run.
    pub fn replica(&self) -> &Replica {
        &self.replica
    }
}

/// What `tokex bench gateway` measured.
#[derive(Debug, Clone)]
pub struct GatewayFigures {
    pub orders: u64,
    pub per_datagram: usize,
    pub per_batch: usize,
    /// Nanoseconds per order of each round.
    pub ns_per_order: Vec<f64>,
    /// The last round's rejects by reason (both halves of the flow).
    pub rejected: Vec<(String, u64)>,
}

impl GatewayFigures {
    /// The fastest round's nanoseconds per order.
    pub fn best_ns(&self) -> f64 {
        self.ns_per_order.iter().copied().fold(f64::MAX, f64::min)
    }
}

impl std::fmt::Display for GatewayFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let best = self.best_ns();
        let rounds: Vec<String> = self
            .ns_per_order
            .iter()
            .map(|ns| format!("{ns:.0}"))
            .collect();
        write!(
            f,
            "gateway: {} orders, {} per datagram, {} datagrams per batch: best {:.0} ns per order ({:.2} M orders/s on one core; rounds {} ns); rejected: {:?}",
            self.orders,
            self.per_datagram,
            self.per_batch,
            best,
            1e3 / best,
            rounds.join(", "),
            self.rejected
        )
    }
}

/// Runs the flow's first `orders` untimed and times the next `orders`,
/// `rounds` times on a fresh day each.
pub fn run(
    contracts: &ContractSet,
    orders: u64,
    per_datagram: usize,
    per_batch: usize,
    rounds: usize,
    journal: &Path,
) -> anyhow::Result<GatewayFigures> {
    let (warm, timed) =
        Workload::new(contracts, 2 * orders, per_datagram, per_batch)?.split(orders);
    let mut figures = GatewayFigures {
        orders: timed.orders,
        per_datagram,
        per_batch,
        ns_per_order: Vec::new(),
        rejected: Vec::new(),
    };
    for _ in 0..rounds.max(1) {
        let mut rig = Rig::new(contracts, journal)?;
        rig.run(&warm)?;
        let t = Instant::now();
        std::hint::black_box(rig.run(&timed)?);
        let ns = t.elapsed().as_nanos() as f64 / timed.orders.max(1) as f64;
        figures.ns_per_order.push(ns);
        let mut rejected: Vec<(String, u64)> = rig
            .replica()
            .gateway
            .counters()
            .rejects
            .iter()
            .map(|(r, n)| (format!("{r:?}"), *n))
            .collect();
        rejected.sort();
        figures.rejected = rejected;
    }
    Ok(figures)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bench_on_a_journal_in_use_is_refused_and_leaves_the_day_alone() {
        let dir = crate::test_dir::TempDir::new("rig-in-use");
        let journal = dir.join("day.journal");
        std::fs::write(&journal, b"the live day").unwrap();
        let live = crate::journal::lock(&journal).unwrap();
        let set = ContractSet::shipped();
        let Err(err) = Rig::new(&set, &journal) else {
            panic!("a bench rig was built on a journal in use");
        };
        assert!(err.to_string().contains("in use"), "{err:#}");
        let Err(err) = crate::bench::recovery::run(10, 0, &set, &journal) else {
            panic!("bench recovery ran on a journal in use");
        };
        assert!(err.to_string().contains("in use"), "{err:#}");
        assert_eq!(std::fs::read(&journal).unwrap(), b"the live day");
        drop(live);
        assert!(Rig::new(&set, &journal).is_ok());
    }

    #[test]
    fn the_rig_runs_every_order_through_the_whole_path() {
        let dir = crate::test_dir::TempDir::new("rig-test");
        let journal = dir.join("j");
        let w = Workload::new(&ContractSet::shipped(), 2_000, 16, 4).unwrap();
        assert_eq!(w.batches.iter().flatten().count(), 125);
        let mut rig = Rig::new(&ContractSet::shipped(), &journal).unwrap();
        let sent = rig.run(&w).unwrap();
        let c = rig.replica().gateway.counters();
        // Every order decoded and answered (accepted or rejected, none
        // dropped), journaled with the logins, and market data published.
        assert_eq!(c.orders, 2_000);
        assert!(c.drops.values().all(|&n| n == 0), "{:?}", c.drops);
        assert!(rig.replica().publisher.store().next_sequence() > 1_000);
        assert!(sent > 2_000 * 20, "{sent} bytes sent");
        drop(rig);
        let records = crate::journal::scan(&journal, |_| {}).unwrap().records;
        assert_eq!(records, 2_000 + SESSIONS as u64);
    }

    #[test]
    fn a_workload_splits_at_whole_batches() {
        let w = Workload::new(&ContractSet::shipped(), 1_000, 16, 4).unwrap();
        let (a, b) = w.split(500);
        assert_eq!((a.orders, b.orders), (512, 488));
        assert_eq!(a.batches.len() + b.batches.len(), 16);
    }
}
