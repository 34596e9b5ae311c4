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
//! messages are published first, as on the day's first start). A day's
//! journal begins with the fingerprint of its configuration; a restart
//! under another one is refused (see `gateway::record::CONFIG`).

use std::fs;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context};

use super::io::Journal;
use super::ExchangeArgs;
use crate::config::Config;
use crate::contract::ContractSet;
use crate::engine::Engine;
use crate::feed::archive::MdArchive;
use crate::feed::publisher::Publisher;
use crate::gateway::{record, Gateway};
use crate::journal::{self, Durability, JournalLock, JournalWriter, OnDamage, Position};
use crate::snapshot::{self, Replica};
use crate::types::Nanos;

/// Messages the publisher keeps in memory for retransmission.
pub(super) const STORE_CAPACITY: usize = 1 << 22;
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
    /// Journal records replayed (after the snapshot, if one was loaded).
    pub replayed: u64,
}

/// Takes the journal's lock and brings the state back (see the module
/// docs); the exchange takes the lock itself first ([`lock_journal`],
/// then [`recover_locked`]).
#[cfg(test)]
pub(super) fn recover(
    cfg: &Config,
    args: &ExchangeArgs,
    contracts: &ContractSet,
    now: Nanos,
) -> anyhow::Result<Recovered> {
    let lock = lock_journal(cfg)?;
    recover_from(cfg, args, contracts, now, lock).map(|(r, _)| r)
}

/// Brings the state back (see the module docs) under the journal's
/// `lock`, taken by [`lock_journal`] before anything else of the start.
pub(super) fn recover_locked(
    cfg: &Config,
    args: &ExchangeArgs,
    contracts: &ContractSet,
    now: Nanos,
    lock: Option<JournalLock>,
) -> anyhow::Result<Recovered> {
    recover_from(cfg, args, contracts, now, lock).map(|(r, _)| r)
}

/// As [`recover_locked`], also saying how many journal records the
/// snapshot it loaded covers (none: full replay).
fn recover_from(
    cfg: &Config,
    args: &ExchangeArgs,
    contracts: &ContractSet,
    now: Nanos,
    lock: Option<JournalLock>,
) -> anyhow::Result<(Recovered, Option<u64>)> {
    let journal_path = &cfg.journal.path;
    let archive_path = journal_path.with_extension("md");
    prepare_day(cfg, args.fresh)?;
    let t0 = Instant::now();
    // The configuration's fingerprint: snapshots must match it, and a new
    // journal begins with it.
    let fp = snapshot::fingerprint(cfg, contracts);
    // Checked before anything is touched: a full replay rewrites the
    // market-data archive, which must not happen for a start refused.
    if cfg.journal.durability != Durability::None
        && journal_path.exists()
        && snapshot::journal_begun_under_other_config(journal_path, fp)?
    {
        bail!(
            "the journal {} was written under another configuration (contracts, sessions, risk or gateway limits): replayed under this one it would not rebuild the same day. Restore that configuration, or start a new day with --fresh",
            journal_path.display()
        );
    }
    let use_snapshots = cfg.journal.durability != Durability::None && journal_path.exists();
    let resumed = if use_snapshots {
        newest_usable_snapshot(cfg, contracts, fp, &archive_path, t0, args)?
    } else {
        None
    };
    // A start refused (damage in the journal) must leave every file of the
    // day as it was: a rebuilt archive is written beside the day's and
    // takes its name only once the journal has been read (a resumed one
    // is cut only after the journal's tail was checked, see
    // `newest_usable_snapshot`).
    let mut rebuilding = None;
    let (mut replica, mut archive, from) = match resumed {
        Some((r, a, h)) => (r, a, Some(h.journal)),
        None => {
            // Rebuilt from scratch: journal replay sequences the day's
            // messages again, from the start of day at the first record's
            // time (below, a new day's starts now).
            let r = Replica::new(cfg, contracts, STORE_CAPACITY);
            let new = Rebuilt(Some(journal::beside(&archive_path, ".rebuild")));
            let a = MdArchive::create(new.path())
                .with_context(|| format!("creating {}", new.path().display()))?;
            rebuilding = Some(new);
            (r, a, None)
        }
    };
    let t1 = Instant::now();
    let mut archive_errors = 0u64;
    let config = fp.to_be_bytes();
    let (mut writer, report) = JournalWriter::open_from(
        journal_path,
        cfg.journal.durability,
        1 << 20,
        from.unwrap_or(Position::START),
        if args.cut_damaged_journal {
            OnDamage::Cut
        } else {
            OnDamage::Refuse
        },
        |rec| {
            replica.apply(rec);
            if archive.sync(replica.publisher.store()).is_err() {
                archive_errors += 1;
            }
        },
    )?;
    if let Some(new) = rebuilding.as_mut() {
        new.becomes(&archive_path)?;
    }
    if let Some(lock) = lock {
        writer.hold(lock);
    }
    if !replica.day_started() {
        // A new day (no record to replay): its first market data, and its
        // journal's first record, the configuration it is written under,
        // at the same time, which is when a replay starts the day.
        debug_assert_eq!(report.records, 0);
        replica.start_of_day(now);
        writer.append(record::CONFIG, now, &config)?;
        writer.commit()?;
    }
    archive.sync(replica.publisher.store())?;
    // Live from here: what is synced is written at once, so a killed
    // exchange leaves the archive a later snapshot needs.
    archive.set_write_through(true);
    archive.flush()?;
    if archive_errors > 0 {
        println!(
            "recovery: the market-data archive missed {} messages ({archive_errors} writes failed)",
            archive.missed
        );
    }
    let Replica {
        engine,
        gateway,
        publisher,
        accepted,
        ..
    } = replica;
    let replayed = report.records - from.map_or(0, |p| p.records);
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
    let kept = journal::cut_path(journal_path, report.valid_len);
    match report.resumes_at {
        _ if report.cut_bytes == 0 => {}
        None => println!(
            "recovery: cut a torn journal tail of {} bytes (kept in {})",
            report.cut_bytes,
            kept.display()
        ),
        Some(at) => println!(
            "recovery: CUT A DAMAGED JOURNAL (--cut-damaged-journal): {} bytes from byte {}, good records again from byte {at}; the records after the damage are lost to this day (kept in {})",
            report.cut_bytes,
            report.valid_len,
            kept.display()
        ),
    }
    if cfg.journal.durability == Durability::None {
        println!("journal: DISABLED (durability = none): acknowledged orders are lost on a crash, and a restart begins market data at sequence 1 again under the same session (feed handlers must restart too); benchmarks only");
    } else {
        println!(
            "journal: {} (durability = {:?})",
            journal_path.display(),
            cfg.journal.durability
        );
    }
    Ok((
        Recovered {
            engine,
            gateway,
            publisher,
            archive,
            journal: Journal(writer, 0),
            replayed,
        },
        from.map(|p| p.records),
    ))
}

/// Makes the journal's directory and takes the journal's lock (none with
/// `durability = "none"`): the first thing an exchange does at start-up,
/// before it opens a port or touches a file of the day, since another
/// exchange may be writing this journal (its ports are then taken too,
/// and a refusal for them would hide the reason). Returns the lock, to be
/// held as long as the journal is written.
pub(super) fn lock_journal(cfg: &Config) -> anyhow::Result<Option<JournalLock>> {
    let journal_path = &cfg.journal.path;
    let fsync = cfg.journal.durability == Durability::Fsync;
    let journal_dir = journal_path.parent().unwrap_or(Path::new(""));
    create_dirs(journal_dir, fsync)
        .with_context(|| format!("creating {}", journal_dir.display()))?;
    Ok(match cfg.journal.durability {
        Durability::None => None,
        _ => Some(journal::lock(journal_path)?),
    })
}

/// Under the journal's lock: with `fresh` removes the journal; with no
/// journal (a new day) removes the snapshots of an earlier one, which must
/// not be matched against the new journal.
fn prepare_day(cfg: &Config, fresh: bool) -> anyhow::Result<()> {
    let journal_path = &cfg.journal.path;
    if fresh && journal_path.exists() {
        // Durable with Fsync once the new journal is created: that syncs
        // this directory, the removals with it (see JournalWriter::open).
        fs::remove_file(journal_path)?;
    }
    if !journal_path.exists() {
        let n = snapshot::remove_all(journal_path)?;
        if n > 0 {
            println!("recovery: no journal: removed {n} snapshots of an earlier one");
        }
    }
    Ok(())
}

/// An archive being rebuilt under a name of its own: removed if the start
/// fails before it takes the day's archive's name.
struct Rebuilt(Option<std::path::PathBuf>);

impl Rebuilt {
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }

    /// Takes the name `to` (the open archive writes on under it).
    fn becomes(&mut self, to: &Path) -> anyhow::Result<()> {
        if let Some(from) = self.0.take() {
            fs::rename(&from, to)
                .with_context(|| format!("renaming {} to {}", from.display(), to.display()))?;
        }
        Ok(())
    }
}

impl std::ops::Drop for Rebuilt {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = fs::remove_file(p);
        }
    }
}

/// The newest snapshot that loads, matches this configuration (its
/// fingerprint `fp`) and journal, and whose market data the archive at `archive_path` still
/// holds: the state it restores, the archive cut to its point and its
/// header. Each one skipped is said with why; `None` when none is usable.
/// Refused (the archive untouched) when the journal after the snapshot is
/// damaged and `args` do not say to cut it.
fn newest_usable_snapshot(
    cfg: &Config,
    contracts: &ContractSet,
    fp: u64,
    archive_path: &Path,
    t0: Instant,
    args: &ExchangeArgs,
) -> anyhow::Result<Option<(Replica, MdArchive, snapshot::Header)>> {
    let journal_path = &cfg.journal.path;
    for (_, path) in snapshot::list(journal_path) {
        let mut damaged = None;
        let mut attempt = || -> anyhow::Result<(Replica, MdArchive, snapshot::Header)> {
            let snap = snapshot::load(&path, fp, journal_path)?;
            // Resuming cuts the archive to the snapshot's point: not for a
            // start the journal's damage will refuse.
            if !args.cut_damaged_journal {
                if let Err(e) = journal::check_damage(journal_path, snap.header.journal) {
                    damaged = Some(e);
                    bail!("the journal after it is damaged");
                }
            }
            let mut archive = MdArchive::resume(archive_path, &snap.state.archive)?;
            let held = archive.recent(REFILL);
            let mut replica = Replica::new(cfg, contracts, STORE_CAPACITY);
            replica.restore(&snap.state, &held)?;
            Ok((replica, archive, snap.header))
        };
        let attempt = attempt();
        if let Some(e) = damaged {
            return Err(e.into());
        }
        match attempt {
            Ok(r) => {
                println!(
                    "recovery: loaded snapshot {} ({} journal records, market data at sequence {}) in {:.1} ms",
                    path.display(),
                    r.2.journal.records,
                    r.2.md_next,
                    t0.elapsed().as_secs_f64() * 1e3
                );
                return Ok(Some(r));
            }
            Err(e) => println!("recovery: skipping snapshot {}: {e:#}", path.display()),
        }
    }
    Ok(None)
}

/// Creates `dir` and its missing parents. With `sync`, each new directory's
/// name is made durable in its parent: the journal's own directory sync
/// (when it is created) covers its name, not the path leading to it, and a
/// power loss could otherwise lose a first day's journal with its directory.
fn create_dirs(dir: &Path, sync: bool) -> std::io::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    fs::create_dir_all(dir)?;
    if sync {
        for d in missing {
            journal::sync_dir(d.parent().unwrap_or(Path::new("")))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::path::Path;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::feed::publisher::Archive;
    use crate::gateway::{JournalSink, Peer};
    use crate::test_dir::TempDir;
    use crate::types::{Price, Qty, Side, Symbol, Tif};
    use crate::wire::{ouch, soupbin};

    struct Writer(JournalWriter);

    impl JournalSink for Writer {
        fn record(&mut self, kind: u8, now: Nanos, payload: &[u8]) {
            self.0.append(kind, now, payload).unwrap();
        }
    }

    fn args(fresh: bool) -> ExchangeArgs {
        ExchangeArgs::for_tests(fresh)
    }

    fn setup(name: &str) -> (TempDir, Config, ContractSet) {
        let dir = TempDir::new(&format!("recov-{name}"));
        let mut cfg = Config {
            contracts: Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts"),
            ..Config::default()
        };
        cfg.journal.path = dir.join("j").join("day.journal");
        cfg.engine.max_orders = 1 << 14;
        let contracts = ContractSet::load_dir(&cfg.contracts).unwrap();
        (dir, cfg, contracts)
    }

    /// A day as the exchange runs it: its recovery (a fresh start), then
    /// `orders` orders from 4 sessions, a snapshot after each `every`
    /// (taken by `tokex snapshot`'s code), the archive synced as the
    /// timers do.
    fn day(cfg: &Config, contracts: &ContractSet, orders: u32, every: u32) {
        let mut r = recover(cfg, &args(true), contracts, Nanos(1_000)).unwrap();
        let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
        let mut j = Writer(r.journal.0);
        let mut b = [0u8; 128];
        let peer = |s: u32| {
            Peer::Udp(SocketAddrV4::new(
                Ipv4Addr::new(198, 18, 0, 2),
                4000 + s as u16,
            ))
        };
        for s in 0..4u32 {
            let name = format!("demo{:02}", s + 1);
            let n = soupbin::write_login_request(&mut b, name.as_bytes(), name.as_bytes(), b"", 0)
                .unwrap();
            r.gateway.on_datagram(
                Nanos(2_000),
                peer(s),
                &b[..n],
                &mut r.engine,
                &mut r.publisher,
                &mut j,
                &mut out,
            );
        }
        for i in 0..orders {
            let now = Nanos(10_000 + u64::from(i) * 1_000);
            r.publisher.set_time(now);
            let s = i % 4;
            let side = if i % 3 == 0 { Side::Buy } else { Side::Sell };
            let m = ouch::EnterOrder::new(
                ouch::token(format!("T{i}").as_bytes()).unwrap(),
                side,
                Qty::new(1 + i % 4),
                Symbol::new("TK2612").unwrap(),
                Price::from_raw(64_950 + (i % 11) * 10),
                Tif::Day,
            );
            let n = soupbin::write_unsequenced(&mut b, m.as_bytes()).unwrap();
            r.gateway.on_datagram(
                now,
                peer(s),
                &b[..n],
                &mut r.engine,
                &mut r.publisher,
                &mut j,
                &mut out,
            );
            j.0.commit().unwrap();
            r.publisher.flush(&mut |_| {});
            r.archive.sync(r.publisher.store()).unwrap();
            if i % every == every - 1 {
                snapshot::take(cfg, contracts, 3).unwrap();
            }
        }
    }

    fn archived(r: &mut Recovered) -> Vec<Vec<u8>> {
        let mut all = Vec::new();
        let next = r.publisher.next_sequence();
        r.archive.read(1, next - 1, &mut |m| all.push(m.to_vec()));
        all
    }

    #[test]
    fn a_restart_under_another_configuration_is_refused_and_under_the_same_one_replays() {
        let (_d, cfg, contracts) = setup("other-config");
        day(&cfg, &contracts, 30, 10);
        let mut other = cfg.clone();
        other.gateway.rate_burst += 1;
        let md = cfg.journal.path.with_extension("md");
        let (archive, snaps) = (fs::read(&md).unwrap(), snapshot::list(&cfg.journal.path));
        let written = fs::metadata(&md).unwrap().modified().unwrap();
        assert!(!snaps.is_empty());
        let err = recover(&other, &args(false), &contracts, Nanos(5))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("another configuration"), "{err:#}");
        // Refused before anything was touched: the archive is as it was,
        // not rewritten.
        assert_eq!(fs::read(&md).unwrap(), archive);
        assert_eq!(fs::metadata(&md).unwrap().modified().unwrap(), written);
        // `tokex snapshot` under it is refused too, and neither writes a
        // snapshot nor prunes the usable ones.
        let Err(err) = snapshot::take(&other, &contracts, 1) else {
            panic!("a snapshot under another configuration was taken");
        };
        assert!(
            matches!(err, snapshot::SnapshotError::OtherConfig(_)),
            "{err}"
        );
        assert_eq!(snapshot::list(&cfg.journal.path), snaps);
        let r = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        assert!(r.engine.live_orders() > 0);
        drop(r);
        // A new day under the other configuration is fine.
        assert!(recover(&other, &args(true), &contracts, Nanos(5)).is_ok());
    }

    #[test]
    fn a_journal_damaged_mid_day_is_refused_unchanged_and_cut_only_when_the_operator_says_so() {
        let (_d, cfg, contracts) = setup("damaged");
        day(&cfg, &contracts, 40, 1_000);
        let full = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let orders = full.engine.live_orders();
        drop(full);
        // Damage a record half-way through the day (records are
        // len:u32 crc:u32 kind:u8 time:u64 payload[len]).
        let mut bytes = fs::read(&cfg.journal.path).unwrap();
        let mut starts = vec![journal::HEADER_LEN];
        while let Some(&at) = starts.last().filter(|&&at| at < bytes.len()) {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            starts.push(at + journal::RECORD_HEADER_LEN + len);
        }
        let (at, next) = (starts[starts.len() / 2], starts[starts.len() / 2 + 1]);
        bytes[at + journal::RECORD_HEADER_LEN] ^= 0x20;
        fs::write(&cfg.journal.path, &bytes).unwrap();
        let Err(err) = recover(&cfg, &args(false), &contracts, Nanos(6)) else {
            panic!("an exchange started on a damaged journal");
        };
        let why = format!("{err:#}");
        assert!(
            why.contains(&format!("damaged at byte {at}"))
                && why.contains(&format!("from byte {next}"))
                && why.contains("--cut-damaged-journal"),
            "{why}"
        );
        assert_eq!(fs::read(&cfg.journal.path).unwrap(), bytes, "untouched");
        // The operator accepts the loss: the day continues from the
        // records before the damage, the rest kept beside the journal.
        let cut = ExchangeArgs {
            cut_damaged_journal: true,
            ..args(false)
        };
        let r = recover(&cfg, &cut, &contracts, Nanos(7)).unwrap();
        assert!(r.engine.live_orders() < orders);
        assert_eq!(fs::metadata(&cfg.journal.path).unwrap().len(), at as u64);
        let kept = fs::read(journal::cut_path(&cfg.journal.path, at as u64)).unwrap();
        assert_eq!(kept, bytes[at..]);
    }

    /// Every file of the day's directory but the lock, by name.
    fn day_files(cfg: &Config) -> std::collections::BTreeMap<String, Vec<u8>> {
        fs::read_dir(cfg.journal.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.to_string_lossy().ends_with(".lock"))
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read(&p).unwrap())
            })
            .collect()
    }

    /// Flips a byte in the record `back` records before the journal's end.
    fn damage_record(cfg: &Config, back: usize) -> u64 {
        let mut bytes = fs::read(&cfg.journal.path).unwrap();
        let mut starts = vec![journal::HEADER_LEN];
        while let Some(&at) = starts.last().filter(|&&at| at < bytes.len()) {
            let len = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            starts.push(at + journal::RECORD_HEADER_LEN + len);
        }
        let at = starts[starts.len() - 1 - back];
        bytes[at + journal::RECORD_HEADER_LEN] ^= 0x20;
        fs::write(&cfg.journal.path, &bytes).unwrap();
        at as u64
    }

    #[test]
    fn a_start_refused_for_a_damaged_journal_changes_no_file_of_the_day() {
        // Without a snapshot (the archive would be rebuilt), and with one
        // whose journal tail is damaged (the archive would be cut to it).
        for (orders, every) in [(40, 1_000), (900, 400)] {
            let (_d, cfg, contracts) = setup(&format!("refused-{orders}"));
            day(&cfg, &contracts, orders, every);
            assert_eq!(snapshot::list(&cfg.journal.path).is_empty(), every > orders);
            let at = damage_record(&cfg, 20);
            let before = day_files(&cfg);
            assert!(before.contains_key("day.md"), "{:?}", before.keys());
            let Err(err) = recover(&cfg, &args(false), &contracts, Nanos(6)) else {
                panic!("an exchange started on a damaged journal");
            };
            let why = format!("{err:#}");
            assert!(why.contains(&format!("damaged at byte {at}")), "{why}");
            // The real path the bytes would be kept in, not a placeholder.
            let kept = journal::cut_path(&cfg.journal.path, at);
            assert!(why.contains(&kept.display().to_string()), "{why}");
            assert!(!why.contains("<journal>"), "{why}");
            let after = day_files(&cfg);
            assert_eq!(
                after.keys().collect::<Vec<_>>(),
                before.keys().collect::<Vec<_>>()
            );
            for (name, bytes) in &before {
                assert!(
                    after[name] == *bytes,
                    "{name} was changed ({orders} orders)"
                );
            }
        }
    }

    #[test]
    fn a_second_exchange_on_a_journal_in_use_is_refused_before_it_touches_the_day() {
        let (_d, cfg, contracts) = setup("in-use");
        day(&cfg, &contracts, 30, 10);
        let live = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let journal = fs::read(&cfg.journal.path).unwrap();
        let snaps = snapshot::list(&cfg.journal.path);
        for fresh in [false, true] {
            let Err(err) = recover(&cfg, &args(fresh), &contracts, Nanos(6)) else {
                panic!("a second exchange started (fresh: {fresh})");
            };
            assert!(err.to_string().contains("in use"), "{err:#}");
        }
        // Its --fresh deleted nothing.
        assert_eq!(fs::read(&cfg.journal.path).unwrap(), journal);
        assert_eq!(snapshot::list(&cfg.journal.path), snaps);
        // The lock goes with the exchange (and with its process).
        drop(live);
        assert!(recover(&cfg, &args(false), &contracts, Nanos(7)).is_ok());
    }

    #[test]
    fn restart_uses_the_newest_snapshot_with_a_matching_archive_and_falls_back_otherwise() {
        let (_d, cfg, contracts) = setup("fallback");
        day(&cfg, &contracts, 900, 300);
        let snaps = snapshot::list(&cfg.journal.path);
        assert_eq!(snaps.len(), 3);
        let md = cfg.journal.path.with_extension("md");
        let archive_len = fs::metadata(&md).unwrap().len();

        // Full replay (no snapshots) is the reference.
        let hidden = cfg.journal.path.parent().unwrap().join("hidden");
        fs::create_dir_all(&hidden).unwrap();
        for (_, p) in &snaps {
            fs::rename(p, hidden.join(p.file_name().unwrap())).unwrap();
        }
        let mut full = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let full_state = (
            full.engine.state(),
            full.gateway.state(),
            full.publisher.state(),
        );
        let full_md = archived(&mut full);
        drop(full);
        assert_eq!(fs::metadata(&md).unwrap().len(), archive_len);
        for (_, p) in &snaps {
            fs::rename(hidden.join(p.file_name().unwrap()), p).unwrap();
        }
        let check = |expect_from: Option<u64>| {
            let lock = lock_journal(&cfg).unwrap();
            let (mut r, from) =
                recover_from(&cfg, &args(false), &contracts, Nanos(5), lock).unwrap();
            assert_eq!(from, expect_from);
            let state = (r.engine.state(), r.gateway.state(), r.publisher.state());
            assert_eq!(state, full_state);
            // The archive holds the same messages (kept, cut, appended to),
            // and the store answers as after full replay.
            assert_eq!(archived(&mut r), full_md);
            let next = r.publisher.next_sequence();
            assert_eq!(
                r.publisher.store().get(next - 1),
                full_md.last().map(|m| &m[..])
            );
            drop(r);
            assert_eq!(fs::metadata(&md).unwrap().len(), archive_len);
        };
        // The newest snapshot.
        check(Some(snaps[0].0));
        // The archive cut short (messages the newest snapshot needs are
        // gone): the older snapshot whose layout it still holds.
        let newest = snapshot::decode(&fs::read(&snaps[0].1).unwrap()).unwrap();
        let middle = snapshot::decode(&fs::read(&snaps[1].1).unwrap()).unwrap();
        assert!(middle.state.archive.len < newest.state.archive.len);
        let f = fs::OpenOptions::new().write(true).open(&md).unwrap();
        f.set_len(newest.state.archive.len - 1).unwrap();
        drop(f);
        check(Some(snaps[1].0));
        // No usable snapshot at all (all corrupt): full replay, archive rebuilt.
        for (_, p) in &snaps {
            let mut bytes = fs::read(p).unwrap();
            let k = bytes.len() - 10;
            bytes[k] ^= 1;
            fs::write(p, bytes).unwrap();
        }
        check(None);
        // --fresh: a new day, snapshots gone.
        let r = recover(&cfg, &args(true), &contracts, Nanos(5)).unwrap();
        assert!(snapshot::list(&cfg.journal.path).is_empty());
        assert_eq!(r.engine.live_orders(), 0);
    }

    // A power loss cannot be staged here: this pins down that Fsync
    // durability's directory syncs (new directories, the new journal, the
    // journal --fresh recreates) succeed where a first start puts them.
    #[test]
    fn fsync_durability_creates_the_journal_and_its_directories_and_starts_fresh_again() {
        let (d, mut cfg, contracts) = setup("fsync-dirs");
        cfg.journal.path = d.join("new").join("deeper").join("day.journal");
        cfg.journal.durability = Durability::Fsync;
        for _ in 0..2 {
            let r = recover(&cfg, &args(true), &contracts, Nanos(1_000)).unwrap();
            assert_eq!(r.journal.0.records(), 1, "its configuration record");
            assert!(cfg.journal.path.exists());
        }
    }
}
