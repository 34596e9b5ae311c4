//! Start-up recovery: the engine, gateway and market-data publisher from
//! the newest usable snapshot plus the journal records after it (or from
//! the whole journal), and the market-data archive kept or rebuilt.
//!
//! Owns the order of things at start: `--fresh` removes the journal, its
//! snapshots and the archive; otherwise each snapshot, newest first, is
//! tried (valid file, same config, a prefix of this journal, and an
//! archive on disk that holds every message before the snapshot's
//! sequence), and the first that passes is loaded: the archive is cut to
//! the snapshot's point and kept, the publisher's retransmission store is
//! refilled from it, and only the journal's tail is replayed. A snapshot
//! that fails is skipped with a log line saying why. Without one, the
//! whole journal is replayed and the archive rebuilt (the start-of-day
//! messages are published first, as on the day's first start).

use std::fs;
use std::time::Instant;

use anyhow::Context;

use super::io::Journal;
use super::ExchangeArgs;
use crate::config::Config;
use crate::contract::ContractSet;
use crate::engine::Engine;
use crate::feed::archive::MdArchive;
use crate::feed::publisher::Publisher;
use crate::gateway::Gateway;
use crate::journal::{Durability, JournalWriter, Position};
use crate::snapshot::{self, Replica};
use crate::types::Nanos;

/// Messages the publisher keeps in memory for retransmission.
const STORE_CAPACITY: usize = 1 << 22;
/// Of those, how many a restart from a snapshot reads back from the
/// archive (older requests are answered from the archive itself).
const REFILL: u64 = 1 << 16;

/// What recovery hands the exchange loop.
pub(super) struct Recovered {
    pub engine: Engine,
    pub gateway: Gateway,
    pub publisher: Publisher,
    pub archive: MdArchive,
    pub journal: Journal,
}

/// Opens the journal and brings the state back (see the module docs).
pub(super) fn recover(
    cfg: &Config,
    args: &ExchangeArgs,
    contracts: &ContractSet,
    now: Nanos,
) -> anyhow::Result<Recovered> {
    let journal_path = &cfg.journal.path;
    let archive_path = journal_path.with_extension("md");
    if let Some(dir) = journal_path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if args.fresh && journal_path.exists() {
        fs::remove_file(journal_path)?;
    }
    if !journal_path.exists() {
        // A new day: snapshots of an earlier journal must not be matched
        // against this one.
        let n = snapshot::remove_all(journal_path)?;
        if n > 0 {
            println!("recovery: no journal: removed {n} snapshots of an earlier one");
        }
    }
    let t0 = Instant::now();
    let use_snapshots = cfg.journal.durability != Durability::None && journal_path.exists();
    let mut resumed = None;
    if use_snapshots {
        let fp = snapshot::fingerprint(cfg, contracts);
        for (_, path) in snapshot::list(journal_path) {
            let attempt = || -> anyhow::Result<(Replica, MdArchive, snapshot::Header)> {
                let snap = snapshot::load(&path, fp, journal_path)?;
                let mut archive = MdArchive::resume(&archive_path, &snap.state.archive)?;
                let held = archive.recent(REFILL);
                let mut replica = Replica::new(cfg, contracts, STORE_CAPACITY);
                replica.restore(&snap.state, &held)?;
                Ok((replica, archive, snap.header))
            };
            match attempt() {
                Ok(r) => {
                    println!(
                        "recovery: loaded snapshot {} ({} journal records, market data at sequence {}) in {:.1} ms",
                        path.display(),
                        r.2.journal.records,
                        r.2.md_next,
                        t0.elapsed().as_secs_f64() * 1e3
                    );
                    resumed = Some(r);
                    break;
                }
                Err(e) => println!("recovery: skipping snapshot {}: {e:#}", path.display()),
            }
        }
    }
    let (mut replica, mut archive, from) = match resumed {
        Some((r, a, h)) => (r, a, Some(h.journal)),
        None => {
            // Rebuilt from scratch: journal replay sequences the day's
            // messages again.
            let mut r = Replica::new(cfg, contracts, STORE_CAPACITY);
            r.start_of_day(now);
            let mut a = MdArchive::create(&archive_path)
                .with_context(|| format!("creating {}", archive_path.display()))?;
            a.sync(r.publisher.store())?;
            (r, a, None)
        }
    };
    let t1 = Instant::now();
    let mut archive_errors = 0u64;
    let (writer, report) = JournalWriter::open_from(
        journal_path,
        cfg.journal.durability,
        1 << 20,
        from.unwrap_or(Position::START),
        |rec| {
            replica.apply(rec);
            if archive.sync(replica.publisher.store()).is_err() {
                archive_errors += 1;
            }
        },
    )?;
    archive.sync(replica.publisher.store())?;
    // Live from here: what is synced is written at once, so a killed
    // exchange leaves the archive a later snapshot needs.
    archive.set_write_through(true);
    archive.flush()?;
    if archive_errors > 0 {
        println!(
            "recovery: the market-data archive missed {} messages",
            archive.missed
        );
    }
    let replayed = report.records - from.map_or(0, |p| p.records);
    let Replica {
        engine,
        gateway,
        publisher,
        accepted,
        ..
    } = replica;
    if let Some(from) = from {
        println!(
            "recovery: from snapshot at record {}: replayed {replayed} journal records after it in {:.1} ms ({:.1} ms in all); {accepted} orders accepted in that tail, {} resting, {} trades; market data continues at sequence {}",
            from.records,
            t1.elapsed().as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3,
            engine.live_orders(),
            engine.match_number(),
            publisher.next_sequence()
        );
    } else if report.records > 0 {
        println!(
            "recovery: replayed {} journal records in {:.1} ms; {accepted} orders accepted before the restart, {} resting, {} trades; market data continues at sequence {}",
            report.records,
            t0.elapsed().as_secs_f64() * 1e3,
            engine.live_orders(),
            engine.match_number(),
            publisher.next_sequence()
        );
    }
    if report.cut_bytes > 0 {
        println!(
            "recovery: cut a torn or corrupt journal tail of {} bytes",
            report.cut_bytes
        );
    }
    if cfg.journal.durability == Durability::None {
        println!("journal: DISABLED (durability = none): acknowledged orders are lost on a crash; benchmarks only");
    } else {
        println!(
            "journal: {} (durability = {:?})",
            journal_path.display(),
            cfg.journal.durability
        );
    }
    Ok(Recovered {
        engine,
        gateway,
        publisher,
        archive,
        journal: Journal(writer, 0),
    })
}
