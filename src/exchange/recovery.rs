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
//! refilled from it (the unbroken run of its newest messages: a damaged
//! stride ends the run, never misnumbers it), and only the journal's tail
//! is replayed. A snapshot that fails is skipped with a log line saying
//! why. Without one, the whole journal is replayed and the archive
//! rebuilt (the start-of-day
//! messages are published first, as on the day's first start). A day's
//! journal begins with the fingerprint of its configuration; a restart
//! under another one is refused (see `gateway::record::CONFIG`). All of
//! it runs under the journal's lock, taken whatever the durability.

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
use crate::text::plural;
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
    lock: JournalLock,
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
    lock: JournalLock,
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
        None if cfg.journal.durability == Durability::None => {
            // Nothing of this run is kept, and the day's archive may be
            // another exchange's (a bench config with the day's journal
            // path): the archive is a file of its own, unlinked at once,
            // that answers this run's old requests and goes with it.
            let scratch = journal::beside(&archive_path, ".none");
            let a = MdArchive::create(&scratch)
                .with_context(|| format!("creating {}", scratch.display()))?;
            fs::remove_file(&scratch)
                .with_context(|| format!("unlinking {}", scratch.display()))?;
            (Replica::new(cfg, contracts, STORE_CAPACITY), a, None)
        }
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
    writer.hold(lock);
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
            "recovery: from snapshot at record {}: replayed {} after it in {:.1} ms ({:.1} ms in all); {} accepted in that tail, {} resting, {} trades; market data continues at sequence {}",
            from.records,
            plural(replayed, "journal record", "journal records"),
            t1.elapsed().as_secs_f64() * 1e3,
            t0.elapsed().as_secs_f64() * 1e3,
            plural(accepted, "order", "orders"),
            engine.live_orders(),
            engine.match_number(),
            publisher.next_sequence()
        );
    } else if report.records > 0 {
        println!(
            "recovery: replayed {} in {:.1} ms; {} accepted before the restart, {} resting, {} trades; market data continues at sequence {}",
            plural(report.records, "journal record", "journal records"),
            t0.elapsed().as_secs_f64() * 1e3,
            plural(accepted, "order", "orders"),
            engine.live_orders(),
            engine.match_number(),
            publisher.next_sequence()
        );
    }
    // The file opening kept the cut bytes in (a new one when an earlier
    // cut at the same offset kept its own under the first name).
    let kept = writer
        .kept()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| journal::cut_path(journal_path, report.valid_len));
    match report.resumes_at {
        _ if report.cut_bytes == 0 => {}
        // Torn before its header was complete: the start of a header,
        // nothing to keep.
        None if writer.kept().is_none() => println!(
            "recovery: the journal was torn in its {}-byte header: begun again",
            report.cut_bytes
        ),
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
        println!("journal: DISABLED (durability = \"none\"): acknowledged orders are lost on a crash, and a restart begins market data at sequence 1 again under the same session (feed handlers must restart too); benchmarks only");
    } else {
        println!(
            "journal: {} ({})",
            journal_path.display(),
            crate::config::durability_setting(cfg.journal.durability)
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

/// Makes the journal's directory and takes the journal's lock: the first
/// thing an exchange does at start-up, before it opens a port or touches a
/// file of the day, since another exchange may be writing this journal
/// (its ports are then taken too, and a refusal for them would hide the
/// reason). Taken with every durability: one with `durability = "none"`
/// writes no journal, but its start still touches the day's files (its
/// `--fresh` removes the journal and snapshots, its archive takes the
/// name `<journal>.md`), and a benchmark config pointing at a live
/// exchange's journal must not destroy that day. Returns the lock, to be
/// held as long as the exchange runs.
pub(super) fn lock_journal(cfg: &Config) -> anyhow::Result<JournalLock> {
    let journal_path = &cfg.journal.path;
    let fsync = cfg.journal.durability == Durability::Fsync;
    let journal_dir = journal_path.parent().unwrap_or(Path::new(""));
    create_dirs(journal_dir, fsync)
        .with_context(|| format!("creating {}", journal_dir.display()))?;
    Ok(journal::lock(journal_path)?)
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
            let next = snap.state.publisher.next_sequence;
            let (first, held) = archive.recent(REFILL);
            let wanted = next.saturating_sub(REFILL).max(1);
            if first > wanted {
                println!(
                    "recovery: the market-data archive {} is damaged before sequence {first} (a stride fails its checksum): the retransmission store holds messages {first} to {} only, and requests for a damaged stride's messages go unanswered",
                    archive_path.display(),
                    next - 1
                );
            }
            let mut replica = Replica::new(cfg, contracts, STORE_CAPACITY);
            // Refused unless the run ends just before `next`: one that
            // did not would serve old messages under the newest numbers.
            replica
                .restore(&snap.state, first, &held)
                .with_context(|| format!("the market-data archive {}", archive_path.display()))?;
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
    use std::collections::BTreeMap;
    use std::net::{Ipv4Addr, SocketAddrV4};
    use std::path::Path;

    use zerocopy::IntoBytes;

    use super::*;
    use crate::feed::publisher::Archive;
    use crate::gateway::{JournalSink, Peer};
    use crate::test_dir::TempDir;
    use crate::types::{Price, Qty, Side, Symbol, Tif};
    use crate::wire::{moldudp64, ouch, soupbin};

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
        drop(r);
        assert_eq!(fs::metadata(&cfg.journal.path).unwrap().len(), at as u64);
        let kept = fs::read(journal::cut_path(&cfg.journal.path, at as u64)).unwrap();
        assert_eq!(kept, bytes[at..]);
    }

    /// Every file of the day's directory but the lock, by name.
    fn day_files(cfg: &Config) -> BTreeMap<String, Vec<u8>> {
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

    /// Asserts that the day's files are those of `before`, byte for byte
    /// (`what` says which case failed).
    fn assert_day_unchanged(cfg: &Config, before: &BTreeMap<String, Vec<u8>>, what: &str) {
        let after = day_files(cfg);
        assert_eq!(
            after.keys().collect::<Vec<_>>(),
            before.keys().collect::<Vec<_>>()
        );
        for (name, bytes) in before {
            assert!(after[name] == *bytes, "{name} was changed ({what})");
        }
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
            assert_day_unchanged(&cfg, &before, &format!("{orders} orders"));
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
    fn a_stale_snapshot_numbered_past_the_journal_does_not_make_take_delete_its_own() {
        let (d, mut cfg, contracts) = setup("stale-snap");
        day(&cfg, &contracts, 300, 100);
        // `tokex snapshot --every N` was writing this one (of the old day)
        // while the exchange started a new day with --fresh, which had
        // removed the old day's snapshots: it lands after the removal.
        let (_, newest) = snapshot::list(&cfg.journal.path)[0].clone();
        let stale = d.join("stale");
        fs::copy(&newest, &stale).unwrap();
        day(&cfg, &contracts, 60, 1_000);
        assert!(snapshot::list(&cfg.journal.path).is_empty());
        fs::copy(&stale, &newest).unwrap();
        cfg.journal.snapshots_keep = 1;
        let t = snapshot::take(&cfg, &contracts, cfg.journal.snapshots_keep).unwrap();
        let written = t.written.clone().expect("a snapshot of the new day");
        assert!(
            written.exists(),
            "take said `{t}` but removed what it wrote; kept: {:?}",
            snapshot::list(&cfg.journal.path)
        );
        // The stale one, which fits no record of this journal, is gone.
        assert_eq!(
            snapshot::list(&cfg.journal.path),
            vec![(t.journal.records, written)]
        );
    }

    #[test]
    fn a_durability_none_start_leaves_a_live_exchanges_journal_alone() {
        let (_d, cfg, contracts) = setup("none-fresh");
        day(&cfg, &contracts, 30, 10);
        let live = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let journal = fs::read(&cfg.journal.path).unwrap();
        let snaps = snapshot::list(&cfg.journal.path);
        assert!(!snaps.is_empty());
        let mut bench = cfg.clone();
        bench.journal.durability = Durability::None;
        let second = recover(&bench, &args(true), &contracts, Nanos(6));
        let refused = second.is_err();
        if let Err(e) = &second {
            assert!(e.to_string().contains("in use"), "{e:#}");
        }
        drop(second);
        assert!(
            cfg.journal.path.exists(),
            "the live exchange's journal was deleted (second start refused: {refused})"
        );
        assert_eq!(fs::read(&cfg.journal.path).unwrap(), journal);
        assert_eq!(snapshot::list(&cfg.journal.path), snaps);
        drop(live);
    }

    #[test]
    fn a_durability_none_start_on_an_idle_days_journal_changes_no_file_of_the_day() {
        let (_d, cfg, contracts) = setup("none-idle");
        day(&cfg, &contracts, 300, 100);
        let before = day_files(&cfg);
        assert!(before.contains_key("day.md"), "{:?}", before.keys());
        let mut bench = cfg.clone();
        bench.journal.durability = Durability::None;
        let run = recover(&bench, &args(false), &contracts, Nanos(6)).unwrap();
        drop(run);
        assert_day_unchanged(&cfg, &before, "durability none");
        // And the day goes on from its snapshot, not a full replay.
        let lock = lock_journal(&cfg).unwrap();
        let (_, from) = recover_from(&cfg, &args(false), &contracts, Nanos(7), lock).unwrap();
        assert!(from.is_some(), "the day's snapshot was not usable");
    }

    #[test]
    fn a_damaged_archive_stride_before_the_last_does_not_misnumber_the_restored_store() {
        let (_d, cfg, contracts) = setup("archive-stride");
        day(&cfg, &contracts, 4000, 4000);
        let snaps = snapshot::list(&cfg.journal.path);
        assert_eq!(snaps.len(), 1);
        let md = cfg.journal.path.with_extension("md");
        let hidden = cfg.journal.path.parent().unwrap().join("hidden.snap");
        fs::rename(&snaps[0].1, &hidden).unwrap();
        let mut full = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let full_md = archived(&mut full);
        drop(full);
        fs::rename(&hidden, &snaps[0].1).unwrap();
        let layout = snapshot::decode(&fs::read(&snaps[0].1).unwrap())
            .unwrap()
            .state
            .archive;
        assert!(layout.index.len() >= 3, "{} strides", layout.index.len());
        let mut bytes = fs::read(&md).unwrap();
        bytes[layout.index[1] as usize + 10] ^= 0x01;
        fs::write(&md, &bytes).unwrap();
        let lock = lock_journal(&cfg).unwrap();
        let (mut r, from) = recover_from(&cfg, &args(false), &contracts, Nanos(5), lock).unwrap();
        assert_eq!(from, Some(snaps[0].0), "restarted from the snapshot");
        let store = r.publisher.store();
        let oldest = store.oldest();
        assert_eq!(oldest, 2049, "the run after the damaged stride is held");
        for seq in store.oldest()..store.next_sequence() {
            assert_eq!(
                store.get(seq),
                Some(&full_md[seq as usize - 1][..]),
                "message {seq} (store holds {}..{})",
                store.oldest(),
                store.next_sequence()
            );
        }
        // What the store lacks is answered from the archive up to the
        // damaged stride (messages 1025..=2048), whose messages go
        // unanswered: never with other messages' bytes.
        let session = cfg.network.md_session_name();
        let mut ask = |first: u64, count: u16| {
            let mut req = [0u8; 20];
            moldudp64::Header::new(session, first, count)
                .write(&mut req)
                .unwrap();
            let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
            r.publisher
                .retransmit_from(&req, 4096, &mut r.archive, &mut |b| {
                    let pkt = moldudp64::Packet::parse(b).unwrap();
                    got.extend(pkt.messages().map(|(s, m)| (s, m.to_vec())));
                });
            for (k, (seq, m)) in got.iter().enumerate() {
                assert_eq!(*seq, first + k as u64);
                assert_eq!(*m, full_md[*seq as usize - 1], "message {seq}");
            }
            got.len()
        };
        assert_eq!(ask(1000, 100), 25, "up to the damaged stride");
        assert_eq!(ask(1500, 10), 0, "inside it");
        assert_eq!(ask(2040, 20), 0, "from inside it into the store");
        assert_eq!(ask(2049, 10), 10, "after it, from the store");
    }

    #[test]
    fn a_torn_tail_holding_a_clients_bytes_is_cut_not_refused_as_damage() {
        let (_d, cfg, contracts) = setup("forged");
        day(&cfg, &contracts, 20, 1_000);
        let mut r = recover(&cfg, &args(false), &contracts, Nanos(5)).unwrap();
        let mut j = Writer(r.journal.0);
        // A record image as the journal lays one out (len:u32 crc:u32
        // kind:u8 time:u64 payload[len]) with its CRC right, inside an
        // order a client sends: the gateway journals it as it came.
        let (kind, time) = (record::CLOCK, 12_345u64);
        let mut body = vec![kind];
        body.extend_from_slice(&time.to_be_bytes());
        let mut image = 0u32.to_be_bytes().to_vec();
        image.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        image.extend_from_slice(&body);
        // An Enter Order's length (journaled as a request: bytes that are
        // no request are dropped before the journal).
        let mut msg = b"O".to_vec();
        msg.extend_from_slice(&image);
        msg.resize(std::mem::size_of::<crate::wire::ouch::EnterOrder>(), b' ');
        let mut b = [0u8; 256];
        let n = soupbin::write_unsequenced(&mut b, &msg).unwrap();
        let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
        r.gateway.on_datagram(
            Nanos(900_000),
            Peer::Udp(SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 4000)),
            &b[..n],
            &mut r.engine,
            &mut r.publisher,
            &mut j,
            &mut out,
        );
        j.0.commit().unwrap();
        drop(j);
        let Recovered { archive, .. } = r;
        drop(archive);
        // The last record torn by a kill, the image still whole in it.
        let len = fs::metadata(&cfg.journal.path).unwrap().len();
        let tail = fs::read(&cfg.journal.path).unwrap();
        assert!(
            tail.windows(image.len()).any(|w| w == image),
            "the client's bytes are in the journal"
        );
        fs::OpenOptions::new()
            .write(true)
            .open(&cfg.journal.path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        match recover(&cfg, &args(false), &contracts, Nanos(6)) {
            Ok(r) => assert!(r.journal.0.records() > 0),
            Err(e) => panic!("a torn tail was refused: {e:#}"),
        }
    }

    #[test]
    fn snapshot_plus_tail_equals_full_replay_with_credit_and_order_limits_in_play() {
        use crate::engine::RejectReason;
        let (_d, mut cfg, contracts) = setup("risk-diff");
        for (i, s) in cfg.sessions.iter_mut().enumerate() {
            s.credit = 15_000 + 10_000 * i as u64;
        }
        cfg.risk.max_live_orders = 6;
        fs::create_dir_all(cfg.journal.path.parent().unwrap()).unwrap();
        let t0 = 1_000_000u64;
        let mut live = Replica::new(&cfg, &contracts, 1 << 16);
        live.start_of_day(Nanos(t0));
        let (w, _) =
            JournalWriter::open(&cfg.journal.path, Durability::Write, 1 << 16, |_| {}).unwrap();
        let mut j = Writer(w);
        j.record(
            record::CONFIG,
            Nanos(t0),
            &snapshot::fingerprint(&cfg, &contracts).to_be_bytes(),
        );
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rnd = move || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            seed >> 33
        };
        let peer = |s: u64| {
            Peer::Udp(SocketAddrV4::new(
                Ipv4Addr::new(198, 18, 0, 2),
                4000 + s as u16,
            ))
        };
        let mut steps: Vec<(u64, Peer, Vec<u8>)> = Vec::new();
        let mut b = [0u8; 128];
        let mut tokens: Vec<Vec<ouch::Token>> = vec![Vec::new(); 4];
        for s in 0..4u64 {
            let name = format!("demo{:02}", s + 1);
            let n = soupbin::write_login_request(&mut b, name.as_bytes(), name.as_bytes(), b"", 0)
                .unwrap();
            steps.push((t0 + 1_000, peer(s), b[..n].to_vec()));
        }
        let symbols = [("TK2612", 6500u32), ("TK2701", 6320)];
        for i in 0..1_600u64 {
            let now = t0 + 10_000 + i * 1_000_000;
            let s = rnd() % 4;
            let k = rnd() % 10;
            let (sym, reference) = symbols[(rnd() % 2) as usize];
            let price = Price::from_raw((reference - 15 + (rnd() % 31) as u32) * 10);
            let q = Qty::new(1 + (rnd() % 4) as u32);
            let t = &mut tokens[s as usize];
            let n = if k < 2 && !t.is_empty() {
                let old = t[(rnd() as usize) % t.len()];
                soupbin::write_unsequenced(
                    &mut b,
                    ouch::CancelOrder::new(old, Qty::new(0)).as_bytes(),
                )
                .unwrap()
            } else if k < 4 && !t.is_empty() {
                let old = t[(rnd() as usize) % t.len()];
                let new = ouch::token(format!("R{s}x{i}").as_bytes()).unwrap();
                t.push(new);
                soupbin::write_unsequenced(
                    &mut b,
                    ouch::ReplaceOrder::new(old, new, q, price).as_bytes(),
                )
                .unwrap()
            } else {
                let new = ouch::token(format!("N{s}x{i}").as_bytes()).unwrap();
                t.push(new);
                let side = if rnd() & 1 == 0 {
                    Side::Buy
                } else {
                    Side::Sell
                };
                let tif = if rnd() % 8 == 0 { Tif::Ioc } else { Tif::Day };
                let m = ouch::EnterOrder::new(new, side, q, Symbol::new(sym).unwrap(), price, tif);
                soupbin::write_unsequenced(&mut b, m.as_bytes()).unwrap()
            };
            steps.push((now, peer(s), b[..n].to_vec()));
        }
        let (day, more) = steps.split_at(steps.len() - 200);
        let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
        for (k, (now, p, bytes)) in day.iter().enumerate() {
            live.publisher.set_time(Nanos(*now));
            live.gateway.on_datagram(
                Nanos(*now),
                *p,
                bytes,
                &mut live.engine,
                &mut live.publisher,
                &mut j,
                &mut out,
            );
            live.publisher.discard_pending();
            j.0.commit().unwrap();
            if k % 333 == 332 {
                snapshot::take(&cfg, &contracts, 3).unwrap();
            }
        }
        let risk = live.gateway.counters().rejected(RejectReason::RiskLimit);
        let many = live
            .gateway
            .counters()
            .rejected(RejectReason::TooManyOrders);
        assert!(
            risk > 20 && many > 0,
            "risk rejects {risk}, too many orders {many}"
        );
        let mut full = Replica::new(&cfg, &contracts, 1 << 16);
        journal::scan(&cfg.journal.path, |rec| full.apply(rec)).unwrap();
        let mut skipped = Vec::new();
        let (mut rec, base) = snapshot::resume_replica(&cfg, &contracts, 1 << 16, &mut skipped);
        assert!(skipped.is_empty(), "{skipped:?}");
        let from = base.expect("a snapshot").1.journal;
        journal::scan_from(&cfg.journal.path, from, |r| rec.apply(r)).unwrap();
        let state = |r: &Replica| bincode::serialize(&r.state().unwrap()).unwrap();
        assert!(
            state(&full) == state(&rec),
            "snapshot + tail differs from full replay"
        );
        assert!(
            (live.engine.state(), live.gateway.state())
                == (full.engine.state(), full.gateway.state()),
            "full replay differs from the live run"
        );
        // What comes next is answered alike by both.
        let mut answers = Vec::new();
        for r in [&mut full, &mut rec] {
            let mut out: Vec<(Peer, Vec<u8>)> = Vec::new();
            for (now, p, bytes) in more {
                r.publisher.set_time(Nanos(*now));
                r.gateway.on_datagram(
                    Nanos(*now),
                    *p,
                    bytes,
                    &mut r.engine,
                    &mut r.publisher,
                    &mut (),
                    &mut out,
                );
            }
            answers.push(out);
        }
        assert_eq!(answers[0], answers[1]);
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
