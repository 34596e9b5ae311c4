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
            "journal: {} OUCH messages in {} records, {:.1} MB, written in {:.2} s\nrecovery: replayed in {:.2} s ({:.2} M records/s, {:.0} ns per record); {} orders resting, {} trades\nsnapshot: at record {}: replayed in {:.2} s, written in {:.3} s, {:.1} MB\nrecovery from the snapshot: {:.3} s ({:.3} s reading and decoding it, {:.3} s rebuilding the state, {:.3} s replaying the last {} records), {}",
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
            self.versus_full_replay()
        )
    }
}

impl RecoveryFigures {
    /// How restarting from the snapshot compares with replaying the whole
    /// journal: "N.Nx faster" or "N.Nx slower" (a small journal replays in
    /// less time than a snapshot, with its 4 M-message store, takes to
    /// load), never a "faster" below 1.
    pub fn versus_full_replay(&self) -> String {
        let (full, snap) = (self.replay_seconds, self.recovery_seconds);
        if full >= snap {
            format!("{:.1}x faster than full replay", full / snap.max(1e-9))
        } else {
            format!("{:.1}x slower than full replay", snap / full.max(1e-9))
        }
    }
}

/// Refuses sizes the bench cannot measure: no messages, or a tail (the
/// journal after the snapshot) longer than the journal.
pub fn check_sizes(messages: u64, tail: u64) -> anyhow::Result<()> {
    anyhow::ensure!(messages > 0, "--messages must be at least 1");
    anyhow::ensure!(
        tail <= messages,
        "--tail {tail} is more than --messages {messages}: the snapshot is taken {tail} messages before the journal's end, so the tail must fit in the journal"
    );
    Ok(())
}

/// Writes a journal of `messages` order messages to `path` with a
/// snapshot before the last `tail`, then times its recovery both ways.
pub fn run(
    messages: u64,
    tail: u64,
    contracts: &ContractSet,
    path: &Path,
) -> anyhow::Result<RecoveryFigures> {
    check_sizes(messages, tail)?;
    // Refused, before anything is removed, on a journal an exchange holds
    // (the path may be a live day's).
    let _lock = journal::lock(path)?;
    let _ = std::fs::remove_file(path);
    snapshot::remove_all(path)?;
    // The exchange config these figures stand for (what snapshots check).
    let cfg = gateway::config(path);
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
    if tail == 0 {
        // The snapshot covers the whole journal.
        taken = Some(snapshot::take(&cfg, contracts, 1)?);
    }
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
    let next = snap.state.publisher.next_sequence;
    replica.restore::<&[u8]>(&snap.state, next, &[])?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(replay_seconds: f64, recovery_seconds: f64) -> RecoveryFigures {
        RecoveryFigures {
            messages: 200_000,
            records: 200_008,
            bytes: 12_000_000,
            write_seconds: 0.5,
            replay_seconds,
            resting: 100,
            trades: 10,
            snapshot_records: 100_008,
            tail_records: 100_000,
            snapshot_replay_seconds: 0.05,
            snapshot_write_seconds: 0.01,
            snapshot_bytes: 1_000_000,
            decode_seconds: 0.01,
            load_seconds: 0.1,
            tail_seconds: 0.02,
            recovery_seconds,
        }
    }

    #[test]
    fn a_snapshot_restart_slower_than_full_replay_is_called_slower() {
        // The run of 2026-12-03: full replay 0.109 s, from the snapshot
        // 0.136 s, printed as "0.8x faster".
        let text = figures(0.109, 0.136).to_string();
        assert!(text.ends_with("1.2x slower than full replay"), "{text}");
        let text = figures(1.5, 0.3).to_string();
        assert!(text.ends_with("5.0x faster than full replay"), "{text}");
    }

    #[test]
    fn a_tail_longer_than_the_journal_or_an_empty_journal_is_refused() {
        let dir = crate::test_dir::TempDir::new("bench-recovery-sizes");
        let path = dir.join("r.journal");
        let set = ContractSet::shipped();
        let err = run(1_000, 2_000, &set, &path).expect_err("tail > messages");
        assert!(err.to_string().contains("--tail 2000"), "{err}");
        assert!(run(0, 0, &set, &path).is_err());
        assert!(!path.exists(), "refused before writing anything");
        assert!(check_sizes(1_000, 1_000).is_ok());
    }

    #[test]
    fn a_tail_of_zero_snapshots_the_whole_journal() {
        let dir = crate::test_dir::TempDir::new("bench-recovery-tail0");
        let path = dir.join("r.journal");
        let f = run(2_000, 0, &ContractSet::shipped(), &path).unwrap();
        assert_eq!(f.tail_records, 0);
        assert_eq!(f.snapshot_records, f.records);
    }
}
