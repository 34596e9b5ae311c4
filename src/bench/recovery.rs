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

use std::path::Path;
use std::time::Instant;

use anyhow::Context;

use super::gateway::{self, logins, peer, OrderFlow, SESSIONS};
use crate::contract::ContractSet;
use crate::exchange::Journal;
use crate::gateway::Discard;
use crate::journal::{self, Durability, JournalWriter};
use crate::snapshot::{self, Replica};
use crate::types::Nanos;

/// Messages the exchange's publisher keeps for retransmission.
const STORE_CAPACITY: usize = 1 << 22;

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
    // The exchange config these figures stand for (what snapshots check).
    let cfg = gateway::config(path);
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
    let mut sink = Journal(writer, 0);
    let mut flow = OrderFlow::new(contracts.iter().next().context("no contracts")?, 42);

    let t0 = Instant::now();
    let mut now = 1_000_000_000u64;
    let mut buf = [0u8; 128];
    for (from, login) in logins(&cfg)? {
        gateway.on_datagram(
            Nanos(now),
            from,
            &login,
            engine,
            publisher,
            &mut sink,
            &mut Discard,
        );
    }
    let mut records = SESSIONS as u64;
    for i in 0..messages {
        if i == messages - tail {
            sink.0.commit()?;
            taken = Some(snapshot::take(&cfg, contracts, 1)?);
        }
        now += 1_000;
        let s = (i % SESSIONS as u64) as usize;
        let n = flow.write(i, s, &mut buf)?;
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
    anyhow::ensure!(sink.1 == 0, "journal append failed");
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
