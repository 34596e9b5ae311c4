//! `tokex bench recovery`: how long a restart takes to replay a journal of
//! a given size.
//!
//! Writes a journal the way the exchange does (login packets, then one
//! datagram per OUCH message through the gateway, group-committed every 64
//! records), then times what `tokex exchange` does at start-up: open the
//! journal, check every record's CRC, and replay it through a fresh
//! gateway, engine and market-data publisher. No network.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use zerocopy::IntoBytes;

use crate::config::{demo_sessions, GatewayConfig};
use crate::contract::ContractSet;
use crate::engine::{Engine, EngineConfig};
use crate::feed::publisher::Publisher;
use crate::gateway::{Discard, Gateway, JournalSink, Peer};
use crate::journal::{Durability, JournalWriter};
use crate::types::{Nanos, Price, Qty, Side, Tif};
use crate::wire::{ouch, soupbin};

const SESSIONS: usize = 8;

/// The journal writer as the gateway's sink (errors end the run).
struct Sink(JournalWriter, bool);

impl JournalSink for Sink {
    fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
        self.1 |= self.0.append(kind, now, payload).is_err();
    }
}

/// What the run measured.
#[derive(Debug, Clone)]
pub struct RecoveryFigures {
    pub messages: u64,
    pub records: u64,
    pub bytes: u64,
    pub write_seconds: f64,
    pub replay_seconds: f64,
    pub resting: usize,
    pub trades: u64,
}

impl std::fmt::Display for RecoveryFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "journal: {} OUCH messages in {} records, {:.1} MB, written in {:.2} s\nrecovery: replayed in {:.2} s ({:.2} M records/s, {:.0} ns per record); {} orders resting, {} trades",
            self.messages,
            self.records,
            self.bytes as f64 / 1e6,
            self.write_seconds,
            self.replay_seconds,
            self.records as f64 / self.replay_seconds / 1e6,
            self.replay_seconds * 1e9 / self.records.max(1) as f64,
            self.resting,
            self.trades
        )
    }
}

/// A small LCG: reproducible order flow without a dependency.
fn next(seed: &mut u64) -> u64 {
    *seed = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *seed >> 33
}

/// Writes a journal of `messages` order messages to `path`, then times its
/// recovery.
pub fn run(messages: u64, contracts: &ContractSet, path: &Path) -> anyhow::Result<RecoveryFigures> {
    let _ = std::fs::remove_file(path);
    let session = *b"TOKEX00001";
    let engine_cfg = EngineConfig {
        max_orders: 1 << 21,
    };
    let gw_cfg = GatewayConfig {
        rate_per_sec: u32::MAX / 2,
        rate_burst: u32::MAX / 2,
        ..GatewayConfig::default()
    };
    let sessions = demo_sessions();
    let mut engine = Engine::new(contracts, engine_cfg);
    let mut gateway = Gateway::new(&gw_cfg, &sessions, contracts, session);
    let mut publisher = Publisher::new(contracts, session, 1 << 16);
    let (writer, _) = JournalWriter::open(path, Durability::Write, 1 << 20, |_| {})?;
    let mut sink = Sink(writer, false);
    let contract = contracts.iter().next().context("no contracts")?;
    let (symbol, reference, tick) = (
        contract.symbol,
        contract.reference_price.raw(),
        contract.tick.raw(),
    );
    let peer = |s: usize| {
        Peer::Udp(SocketAddrV4::new(
            Ipv4Addr::new(198, 18, 0, 2),
            40_000 + s as u16,
        ))
    };

    let t0 = Instant::now();
    let mut now = 1_000_000_000u64;
    let mut buf = [0u8; 128];
    for (s, c) in sessions.iter().take(SESSIONS).enumerate() {
        let n = soupbin::write_login_request(
            &mut buf,
            c.username.as_bytes(),
            c.password.as_bytes(),
            b"",
            0,
        )?;
        gateway.on_datagram(
            Nanos(now),
            peer(s),
            &buf[..n],
            &mut engine,
            &mut publisher,
            &mut sink,
            &mut Discard,
        );
    }
    let mut seed = 42u64;
    let mut live: Vec<Vec<ouch::Token>> = vec![Vec::new(); SESSIONS];
    let mut records = SESSIONS as u64;
    for i in 0..messages {
        now += 1_000;
        let s = (i % SESSIONS as u64) as usize;
        let r = next(&mut seed);
        let n = if r % 100 < 40 && !live[s].is_empty() {
            let k = (r as usize / 100) % live[s].len();
            let token = live[s].swap_remove(k);
            soupbin::write_unsequenced(
                &mut buf,
                ouch::CancelOrder::new(token, Qty::ZERO).as_bytes(),
            )?
        } else {
            let mut token = [b' '; 14];
            token[..12].copy_from_slice(format!("R{s}{i:010}").as_bytes());
            let side = if r & 1 == 0 { Side::Buy } else { Side::Sell };
            // Passive within 20 ticks of the reference; one in ten crosses.
            let off = (r / 7 % 20 + 1) as u32 * tick;
            let aggressive = r.is_multiple_of(10);
            let price = match (side, aggressive) {
                (Side::Buy, false) | (Side::Sell, true) => reference - off,
                (Side::Sell, false) | (Side::Buy, true) => reference + off,
            };
            if !aggressive && live[s].len() < 4096 {
                live[s].push(token);
            }
            let tif = if aggressive { Tif::Ioc } else { Tif::Day };
            let m = ouch::EnterOrder::new(
                token,
                side,
                Qty::new(1 + (r % 5) as u32),
                symbol,
                Price::from_raw(price),
                tif,
            );
            soupbin::write_unsequenced(&mut buf, m.as_bytes())?
        };
        gateway.on_datagram(
            Nanos(now),
            peer(s),
            &buf[..n],
            &mut engine,
            &mut publisher,
            &mut sink,
            &mut Discard,
        );
        publisher.discard_pending();
        records += 1;
        if i % 64 == 63 {
            sink.0.commit()?;
        }
    }
    sink.0.commit()?;
    anyhow::ensure!(!sink.1, "journal append failed");
    drop(sink);
    let write_seconds = t0.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(path)?.len();

    // What `tokex exchange` does at start-up.
    let mut engine = Engine::new(contracts, engine_cfg);
    let mut gateway = Gateway::new(&gw_cfg, &sessions, contracts, session);
    let mut publisher = Publisher::new(contracts, session, 1 << 22);
    let t1 = Instant::now();
    let (_, report) = JournalWriter::open(path, Durability::Write, 1 << 20, |rec| {
        publisher.set_time(rec.time);
        gateway.replay(rec.kind, rec.time, rec.payload, &mut engine, &mut publisher);
        publisher.discard_pending();
    })?;
    let replay_seconds = t1.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.records == records,
        "replayed {} records, wrote {records}",
        report.records
    );
    Ok(RecoveryFigures {
        messages,
        records,
        bytes,
        write_seconds,
        replay_seconds,
        resting: engine.live_orders(),
        trades: engine.match_number(),
    })
}
