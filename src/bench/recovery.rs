//! `tokex bench recovery`: how long a restart takes to replay a journal of
//! a given size, and how long with a snapshot.
//!
//! Writes a journal the way the exchange does (login packets, then one
//! datagram per OUCH message through the gateway, group-committed every 64
//! records); when all but the last `tail` messages are in, takes a snapshot
//! with `tokex snapshot`'s code (timing its replay and its write, and its
//! size), then writes the tail. Then times what `tokex exchange` does at
//! start-up: (1) full replay: open the journal, check every record's CRC,
//! and replay it through a fresh gateway, engine and market-data publisher;
//! (2) from the snapshot: load and check it, rebuild the state from it
//! (with the exchange's 4 M-message retransmission store), and replay only
//! the journal after it. Both must end in the same state. No network; the
//! market-data archive (a sequential file cut to the snapshot's length) is
//! not part of either figure.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use zerocopy::IntoBytes;

use crate::config::{demo_sessions, Config, GatewayConfig};
use crate::contract::ContractSet;
use crate::engine::EngineConfig;
use crate::gateway::{Discard, JournalSink, Peer};
use crate::journal::{self, Durability, JournalWriter};
use crate::snapshot::{self, Replica};
use crate::types::{Nanos, Price, Qty, Side, Tif};
use crate::wire::{ouch, soupbin};

const SESSIONS: usize = 8;
/// Messages the exchange's publisher keeps for retransmission.
const STORE_CAPACITY: usize = 1 << 22;

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
    /// Journal records the snapshot covers, and after it.
    pub snapshot_records: u64,
    pub tail_records: u64,
    /// `tokex snapshot` from no snapshot: replaying the covered records,
    /// then encoding and writing (fsync, rename) the file.
    pub snapshot_replay_seconds: f64,
    pub snapshot_write_seconds: f64,
    pub snapshot_bytes: u64,
    /// Restart from the snapshot: reading, checking and decoding it, then
    /// also rebuilding the state (`load_seconds` includes both), replaying
    /// the tail; and the sum.
    pub decode_seconds: f64,
    pub load_seconds: f64,
    pub tail_seconds: f64,
    pub recovery_seconds: f64,
}

impl std::fmt::Display for RecoveryFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "journal: {} OUCH messages in {} records, {:.1} MB, written in {:.2} s\nrecovery: replayed in {:.2} s ({:.2} M records/s, {:.0} ns per record); {} orders resting, {} trades\nsnapshot: at record {}: replayed in {:.2} s, written in {:.3} s, {:.1} MB\nrecovery from the snapshot: {:.3} s ({:.3} s reading and decoding it, {:.3} s rebuilding the state, {:.3} s replaying the last {} records), {:.1}x faster than full replay",
            self.messages,
            self.records,
            self.bytes as f64 / 1e6,
            self.write_seconds,
            self.replay_seconds,
            self.records as f64 / self.replay_seconds / 1e6,
            self.replay_seconds * 1e9 / self.records.max(1) as f64,
            self.resting,
            self.trades,
            self.snapshot_records,
            self.snapshot_replay_seconds,
            self.snapshot_write_seconds,
            self.snapshot_bytes as f64 / 1e6,
            self.recovery_seconds,
            self.decode_seconds,
            self.load_seconds - self.decode_seconds,
            self.tail_seconds,
            self.tail_records,
            self.replay_seconds / self.recovery_seconds.max(1e-9)
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

/// Writes a journal of `messages` order messages to `path` with a
/// snapshot before the last `tail`, then times its recovery both ways.
pub fn run(
    messages: u64,
    tail: u64,
    contracts: &ContractSet,
    path: &Path,
) -> anyhow::Result<RecoveryFigures> {
    let _ = std::fs::remove_file(path);
    snapshot::remove_all(path)?;
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
    // The exchange config these figures stand for (what snapshots check).
    let cfg = {
        let mut c = Config::default();
        c.engine.max_orders = engine_cfg.max_orders;
        c.gateway = gw_cfg.clone();
        c.sessions = sessions.clone();
        c.network.md_session = String::from_utf8_lossy(&session).into_owned();
        c.journal.path = path.to_path_buf();
        c
    };
    let tail = tail.min(messages);
    let mut taken = None;
    // Built as the exchange builds its state (accounts registered, the
    // start-of-day messages published).
    let mut live = Replica::new(&cfg, contracts, 1 << 16);
    live.start_of_day(Nanos(1_000_000_000));
    let Replica {
        engine,
        gateway,
        publisher,
        ..
    } = &mut live;
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
            engine,
            publisher,
            &mut sink,
            &mut Discard,
        );
    }
    let mut seed = 42u64;
    let mut live: Vec<Vec<ouch::Token>> = vec![Vec::new(); SESSIONS];
    let mut records = SESSIONS as u64;
    for i in 0..messages {
        if i == messages - tail {
            sink.0.commit()?;
            taken = Some(snapshot::take(&cfg, contracts, 1)?);
        }
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
            engine,
            publisher,
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
    let taken = taken.context("no snapshot taken")?;
    let write_seconds = t0.elapsed().as_secs_f64()
        - taken.replay_seconds
        - taken.write_seconds
        - taken.load_seconds;
    let bytes = std::fs::metadata(path)?.len();

    drop(live);

    // What `tokex exchange` does at start-up without a snapshot.
    let mut replica = Replica::new(&cfg, contracts, STORE_CAPACITY);
    let t1 = Instant::now();
    replica.start_of_day(Nanos(1_000_000_000));
    let (_, report) =
        JournalWriter::open(path, Durability::Write, 1 << 20, |rec| replica.apply(rec))?;
    let replay_seconds = t1.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.records == records,
        "replayed {} records, wrote {records}",
        report.records
    );
    let full = replica.state()?;
    drop(replica);

    // What `tokex exchange` does at start-up with a snapshot.
    let t2 = Instant::now();
    let (_, newest) = snapshot::list(path)
        .into_iter()
        .next()
        .context("no snapshot")?;
    let snap = snapshot::load(&newest, snapshot::fingerprint(&cfg, contracts), path)?;
    let decode_seconds = t2.elapsed().as_secs_f64();
    let mut replica = Replica::new(&cfg, contracts, STORE_CAPACITY);
    replica.restore::<&[u8]>(&snap.state, &[])?;
    let from = snap.header.journal;
    drop(snap);
    let load_seconds = t2.elapsed().as_secs_f64();
    let t3 = Instant::now();
    let report = journal::scan_from(path, from, |rec| replica.apply(rec))?;
    let tail_seconds = t3.elapsed().as_secs_f64();
    let recovery_seconds = t2.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.records == records,
        "snapshot + tail: {} records",
        report.records
    );
    anyhow::ensure!(
        full == replica.state()?,
        "snapshot + tail replay did not reach the state of full replay"
    );
    snapshot::remove_all(path)?;
    Ok(RecoveryFigures {
        messages,
        records,
        bytes,
        write_seconds,
        replay_seconds,
        resting: replica.engine.live_orders(),
        trades: replica.engine.match_number(),
        snapshot_records: from.records,
        tail_records: records - from.records,
        snapshot_replay_seconds: taken.replay_seconds,
        snapshot_write_seconds: taken.write_seconds,
        snapshot_bytes: taken.bytes,
        decode_seconds,
        load_seconds,
        tail_seconds,
        recovery_seconds,
    })
}
