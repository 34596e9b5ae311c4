//! Snapshots: the state journal replay rebuilds, saved at a journal
//! position, so a restart replays only the records after it and recovery
//! time stops growing with the day.
//!
//! Owns the snapshot file format, the [`Replica`] (engine, gateway and
//! market-data numbering built exactly as `tokex exchange` builds them,
//! fed with journal records exactly as its recovery feeds them), and
//! [`take`], the work of `tokex snapshot`. It must never run on the
//! exchange's engine thread.
//!
//! **Who writes snapshots.** `tokex snapshot --config F` (run by the
//! operator, from cron or a loop with `--every SECS`, on any core but the
//! engine's): it loads the newest valid snapshot of the journal, reads the
//! journal's complete, CRC-valid records after it (safe while the exchange
//! is appending: a record still being written fails its length or CRC
//! check and is left for the next run), replays them into its own
//! replica, and writes a new snapshot atomically (temporary file, fsync,
//! rename, fsync of the directory), then keeps the newest
//! `journal.snapshots_keep` (default 2) and removes older ones. A snapshot
//! is derived from the journal alone, never from the live exchange's
//! memory, so it is by construction the state full replay would reach,
//! and taking one costs the exchange nothing. The exchange itself never
//! writes one (a clean shutdown leaves the journal; the next `tokex
//! snapshot` run covers it).
//!
//! **Recovery** (`tokex exchange`, see `exchange::recovery`): the newest
//! snapshot that is valid (magic, version, CRC), was made for this config
//! (fingerprint), covers a prefix of this journal (the record before its
//! position is still there with the same CRC), and whose market-data
//! archive layout matches the archive on disk is loaded; the others are
//! skipped with a log line, falling back to older ones and then to full
//! replay. `--fresh` removes the journal, its snapshots and the archive.
//!
//! Format, version 7. Header integers big-endian; the body is bincode 1.x
//! (fixed-width little-endian integers, lengths as u64) of [`State`]:
//! ```text
//! file    = header body crc
//! header  = "TOKEXSNP" version:u32 flags:u32                    (16 bytes)
//!           fingerprint:u64          config digest (contracts, sessions,
//!                                    risk, gateway, engine sizes, md session)
//!           journal_records:u64      records the snapshot covers
//!           journal_offset:u64       byte offset just after them
//!           last_offset:u64          offset of the last covered record
//!           last_crc:u32             its CRC (both 0 when no record)
//!           md_next:u64              next market-data sequence number
//!           body_len:u64                                        (68 bytes)
//! body    = bincode(State)           engine, gateway, publisher, archive layout
//! crc     = CRC-32 (IEEE) of header and body                    (4 bytes)
//! ```
//! Files live next to the journal, named `<journal file>.<records:016>.snap`
//! (e.g. `tokex.journal.0000000010000008.snap`), so the newest sorts last.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::accounts::AccountLimits;
use crate::config::Config;
use crate::contract::ContractSet;
use crate::engine::{Engine, EngineConfig, EngineState, EngineStateError, Event, EventSink};
use crate::feed::archive::ArchiveLayout;
use crate::feed::publisher::{Publisher, PublisherState};
use crate::gateway::{record, Gateway, GatewayState, GatewayStateError};
use crate::journal::{self, JournalError, Position, Record, RecordMark};
use crate::slot_ring::NotJustBefore;
use crate::text::plural;
use crate::types::{AccountId, Nanos};

const MAGIC: &[u8; 8] = b"TOKEXSNP";
/// 2: request fingerprints computed eight bytes a step. 3: the sessions'
/// rate buckets carry a debt (TCP re-sends), and the journal they cover is
/// of version 2. 4: login failures carry their last time, and the journal
/// is of version 3. 5: the journal is of version 4 (the engine's rules
/// changed), and the archive's layout carries a checksum per stride.
/// 6: the journal is of version 5 (the risk checks changed, 2026-12-03).
/// Since then a snapshot follows the rules of the journal it covers: a
/// journal of another version is refused before its snapshots are read.
/// 7: a live order's token keeps the Firm and Capacity of its Enter Order
/// (its Replaced echoes them).
const VERSION: u32 = 7;
/// Bytes of the header.
pub const HEADER_LEN: usize = 68;
/// Snapshots kept by default (the newest and the one before it).
pub const DEFAULT_KEEP: usize = 2;

/// Why a snapshot could not be written, read or used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a tokex snapshot (bad magic)")]
    BadMagic,
    #[error("snapshot version {0} is not supported (this build reads version {VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot truncated ({0} bytes)")]
    Truncated(u64),
    #[error("snapshot CRC mismatch (corrupt)")]
    BadCrc,
    #[error("snapshot body does not decode: {0}")]
    Body(#[from] bincode::Error),
    #[error("snapshot was made for another config or contract set (fingerprint {found:016x}, expected {expected:016x})")]
    Fingerprint { found: u64, expected: u64 },
    #[error("snapshot covers {records} records up to byte {offset}, which this journal does not hold (another day's journal, or cut since)")]
    NotThisJournal { records: u64, offset: u64 },
    #[error("snapshot is inconsistent: {0}")]
    Inconsistent(&'static str),
    #[error("the journal: {0}")]
    Journal(#[from] JournalError),
    #[error("no journal at {0}")]
    NoJournal(PathBuf),
    #[error("journal is disabled (durability = none): nothing to snapshot")]
    JournalDisabled,
    #[error("the journal {0} was begun under another configuration (contracts, sessions, risk or gateway limits): run tokex snapshot with the configuration the exchange runs with")]
    OtherConfig(PathBuf),
    #[error(transparent)]
    Engine(#[from] EngineStateError),
    #[error(transparent)]
    Gateway(#[from] GatewayStateError),
    #[error("market-data numbering lost {0} messages while following the replay")]
    MarketData(u64),
    /// The market data given to hold does not end where the snapshot's
    /// numbering continues (a damaged archive's run).
    #[error("the market data to hold for retransmission: {0}")]
    Held(#[from] NotJustBefore),
}

/// Everything journal replay rebuilds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub engine: EngineState,
    pub gateway: GatewayState,
    pub publisher: PublisherState,
    /// Where the market-data archive's messages are at this point.
    pub archive: ArchiveLayout,
}

/// The header fields of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub fingerprint: u64,
    /// The journal prefix covered.
    pub journal: Position,
    /// The last covered record (none when `journal.records == 0`).
    pub last: Option<RecordMark>,
    pub md_next: u64,
}

/// A decoded snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub header: Header,
    pub state: State,
}

/// The config and contracts a snapshot depends on, as one number: a
/// snapshot made under another config is not used (replay with the new
/// one would not reach the same state either).
pub fn fingerprint(cfg: &Config, contracts: &ContractSet) -> u64 {
    let text = format!(
        "{contracts:?}|{:?}|{:?}|{:?}|{:?}|{}",
        cfg.engine, cfg.sessions, cfg.risk, cfg.gateway, cfg.network.md_session
    );
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Encodes a snapshot file.
pub fn encode(header: &Header, state: &State) -> Result<Vec<u8>, SnapshotError> {
    let body = bincode::serialize(state)?;
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&header.fingerprint.to_be_bytes());
    out.extend_from_slice(&header.journal.records.to_be_bytes());
    out.extend_from_slice(&header.journal.offset.to_be_bytes());
    let last = header.last.unwrap_or(RecordMark { offset: 0, crc: 0 });
    out.extend_from_slice(&last.offset.to_be_bytes());
    out.extend_from_slice(&last.crc.to_be_bytes());
    out.extend_from_slice(&header.md_next.to_be_bytes());
    out.extend_from_slice(&(body.len() as u64).to_be_bytes());
    debug_assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(&body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    Ok(out)
}

fn be64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// Decodes a snapshot file, checking magic, version, length and CRC.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < 16 {
        return Err(SnapshotError::Truncated(bytes.len() as u64));
    }
    if &bytes[..8] != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let version = be32(bytes, 8);
    if version != VERSION {
        return Err(SnapshotError::UnsupportedVersion(version));
    }
    if bytes.len() < HEADER_LEN + 4 {
        return Err(SnapshotError::Truncated(bytes.len() as u64));
    }
    let body_len = be64(bytes, 60);
    if (bytes.len() - HEADER_LEN - 4) as u64 != body_len {
        return Err(SnapshotError::Truncated(bytes.len() as u64));
    }
    let (data, crc) = bytes.split_at(bytes.len() - 4);
    if crc32fast::hash(data) != be32(crc, 0) {
        return Err(SnapshotError::BadCrc);
    }
    let records = be64(bytes, 24);
    let header = Header {
        fingerprint: be64(bytes, 16),
        journal: Position {
            records,
            offset: be64(bytes, 32),
        },
        last: (records > 0).then(|| RecordMark {
            offset: be64(bytes, 40),
            crc: be32(bytes, 48),
        }),
        md_next: be64(bytes, 52),
    };
    let state: State = bincode::deserialize(&data[HEADER_LEN..])?;
    if state.publisher.next_sequence != header.md_next || state.archive.next != header.md_next {
        return Err(SnapshotError::Inconsistent("market-data sequence"));
    }
    Ok(Snapshot { header, state })
}

/// Reads a snapshot and checks that it fits `fingerprint` and still
/// covers a prefix of the journal at `journal`.
pub fn load(path: &Path, fingerprint: u64, journal: &Path) -> Result<Snapshot, SnapshotError> {
    let snap = decode(&fs::read(path)?)?;
    if snap.header.fingerprint != fingerprint {
        return Err(SnapshotError::Fingerprint {
            found: snap.header.fingerprint,
            expected: fingerprint,
        });
    }
    let Position { records, offset } = snap.header.journal;
    let holds = match snap.header.last {
        Some(mark) => journal::holds_record(journal, mark, offset)?,
        None => offset == journal::HEADER_LEN as u64,
    };
    if !holds {
        return Err(SnapshotError::NotThisJournal { records, offset });
    }
    Ok(snap)
}

/// Where the snapshot covering `records` records of `journal` lives.
pub fn path_for(journal: &Path, records: u64) -> PathBuf {
    journal::beside(journal, &format!(".{records:016}.snap"))
}

/// The snapshots of `journal`, newest (most records) first.
pub fn list(journal: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> =
        files_named(journal, |rest| rest.strip_suffix(".snap")?.parse().ok());
    out.sort_by_key(|b| std::cmp::Reverse(b.0));
    out
}

/// The files next to `journal` named `<journal>.<rest>` for which
/// `parse(rest)` says something.
fn files_named<T>(journal: &Path, parse: impl Fn(&str) -> Option<T>) -> Vec<(T, PathBuf)> {
    let dir = match journal.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let prefix = format!(
        "{}.",
        journal.file_name().unwrap_or_default().to_string_lossy()
    );
    fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            Some((parse(name.strip_prefix(&prefix)?)?, e.path()))
        })
        .collect()
}

/// Removes the temporary files that snapshot writes cut short by a crash
/// left next to `journal` (`<journal>.<records>.snap.tmp<pid>`), but not
/// the one this process may be writing.
fn remove_stale_temporaries(journal: &Path) {
    let own = format!(".snap.tmp{}", std::process::id());
    for (_, p) in files_named(journal, |rest| {
        (rest.contains(".snap.tmp") && !rest.ends_with(&own)).then_some(())
    }) {
        let _ = fs::remove_file(p);
    }
}

/// Removes every snapshot of `journal` (a new day), and what writes of
/// them cut short left.
pub fn remove_all(journal: &Path) -> io::Result<usize> {
    remove_stale_temporaries(journal);
    let all = list(journal);
    for (_, p) in &all {
        fs::remove_file(p)?;
    }
    Ok(all.len())
}

/// Writes `bytes` to `path` atomically: a temporary file next to it,
/// fsync, rename over, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = journal::beside(path, &format!(".tmp{}", std::process::id()));
    let result = (|| {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        journal::sync_dir(path.parent().unwrap_or(Path::new("")))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The state journal replay rebuilds, built and fed exactly as the
/// exchange's recovery builds and feeds it.
pub struct Replica {
    pub engine: Engine,
    pub gateway: Gateway,
    pub publisher: Publisher,
    /// Where each market-data message would be in the archive.
    pub archive: ArchiveLayout,
    /// Orders accepted (or replaced) by the records applied so far.
    pub accepted: u64,
    /// Messages the layout could not follow (a snapshot would be wrong).
    lost: u64,
    /// Whether the day's first market data is sequenced: by the first
    /// journal record applied, at its time, which is when the live
    /// exchange published it (a new day's journal begins with its `CONFIG`
    /// record, written at the start of day's time); or by a restored
    /// snapshot, which holds it.
    day_started: bool,
}

/// Engine events to the publisher, with the archive layout following
/// every message (replay only; the live path publishes directly).
struct Follow<'a> {
    publisher: &'a mut Publisher,
    archive: &'a mut ArchiveLayout,
    accepted: &'a mut u64,
    lost: &'a mut u64,
}

impl EventSink for Follow<'_> {
    fn event(&mut self, e: &Event) {
        if matches!(e, Event::Accepted { .. } | Event::Replaced { .. }) {
            *self.accepted += 1;
        }
        self.publisher.event(e);
        if let Err(n) = self.archive.follow(self.publisher.store()) {
            *self.lost += n;
        }
    }
}

impl Replica {
    /// The engine (with the config's accounts registered), the gateway and
    /// a publisher keeping `store_capacity` messages for retransmission;
    /// nothing published yet (see [`Replica::start_of_day`],
    /// [`Replica::apply`] and [`Replica::restore`]).
    pub fn new(cfg: &Config, contracts: &ContractSet, store_capacity: usize) -> Replica {
        let session = cfg.network.md_session_name();
        let mut engine = Engine::new(
            contracts,
            EngineConfig {
                max_orders: cfg.engine.max_orders,
            },
        );
        // Session i trades as account i (the gateway's mapping): its credit
        // and order-count limits come from the config, before any replay.
        let accounts = engine.accounts_mut();
        accounts.require_registration(cfg.risk.require_registration);
        for (i, s) in cfg.sessions.iter().enumerate() {
            accounts.register(AccountId(i as u32), AccountLimits::of_session(s, &cfg.risk));
        }
        Replica {
            engine,
            gateway: Gateway::new(&cfg.gateway, &cfg.sessions, contracts, session),
            publisher: Publisher::new(contracts, session, store_capacity),
            archive: ArchiveLayout::default(),
            accepted: 0,
            lost: 0,
            day_started: false,
        }
    }

    /// A new day's first market data (system events, stock directory).
    pub fn start_of_day(&mut self, now: Nanos) {
        self.day_started = true;
        self.publisher.set_time(now);
        self.publisher.start_of_day();
        if let Err(n) = self.archive.follow(self.publisher.store()) {
            self.lost += n;
        }
    }

    /// Whether the day's first market data is sequenced.
    pub fn day_started(&self) -> bool {
        self.day_started
    }

    /// Applies one journal record as recovery does: no replies, market
    /// data sequenced into the store (and the layout) but not sent. The
    /// first record of a replica that has not started its day starts it,
    /// at that record's time.
    pub fn apply(&mut self, rec: Record<'_>) {
        if !self.day_started {
            self.start_of_day(rec.time);
        }
        self.publisher.set_time(rec.time);
        let mut md = Follow {
            publisher: &mut self.publisher,
            archive: &mut self.archive,
            accepted: &mut self.accepted,
            lost: &mut self.lost,
        };
        self.gateway
            .replay(rec.kind, rec.time, rec.payload, &mut self.engine, &mut md);
        self.publisher.discard_pending();
    }

    /// The state to snapshot; fails if the market-data layout lost track.
    pub fn state(&self) -> Result<State, SnapshotError> {
        if self.lost > 0 {
            return Err(SnapshotError::MarketData(self.lost));
        }
        Ok(State {
            engine: self.engine.state(),
            gateway: self.gateway.state(),
            publisher: self.publisher.state(),
            archive: self.archive.clone(),
        })
    }

    /// Puts this fresh replica into `s`; `held` are market-data messages
    /// `first` on (oldest first), put back into the retransmission store,
    /// and must end just before the snapshot's sequence. On error, build a
    /// new replica.
    pub fn restore<M: AsRef<[u8]>>(
        &mut self,
        s: &State,
        first: u64,
        held: &[M],
    ) -> Result<(), SnapshotError> {
        if s.archive.next != s.publisher.next_sequence {
            return Err(SnapshotError::Inconsistent("market-data sequence"));
        }
        self.publisher.resume(&s.publisher, first, held)?;
        self.engine.restore(&s.engine)?;
        self.gateway.restore(&s.gateway)?;
        self.archive = s.archive.clone();
        self.day_started = true;
        Ok(())
    }
}

/// What one [`take`] did.
#[derive(Debug, Clone)]
pub struct Taken {
    /// The snapshot it started from, if any.
    pub base: Option<PathBuf>,
    /// Snapshots skipped as unusable, with the reason.
    pub skipped: Vec<(PathBuf, String)>,
    /// Journal records replayed after the base.
    pub replayed: u64,
    /// The journal position the new snapshot covers.
    pub journal: Position,
    /// The new snapshot (none when the newest already covered the journal).
    pub written: Option<PathBuf>,
    pub bytes: u64,
    pub md_next: u64,
    pub load_seconds: f64,
    pub replay_seconds: f64,
    pub write_seconds: f64,
    /// Older snapshots removed.
    pub pruned: usize,
}

impl std::fmt::Display for Taken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (p, why) in &self.skipped {
            writeln!(f, "snapshot: skipped {}: {why}", p.display())?;
        }
        match &self.base {
            Some(p) => write!(
                f,
                "snapshot: from {} ({:.2} s), ",
                p.display(),
                self.load_seconds
            )?,
            None => write!(f, "snapshot: from the start of the journal, ")?,
        }
        let records = |n: u64| plural(n, "record", "records");
        write!(
            f,
            "replayed {} in {:.2} s; ",
            records(self.replayed),
            self.replay_seconds
        )?;
        match &self.written {
            Some(p) => write!(
                f,
                "wrote {} ({}, {:.1} MB, market data at sequence {}) in {:.2} s; removed {} older",
                p.display(),
                records(self.journal.records),
                self.bytes as f64 / 1e6,
                self.md_next,
                self.write_seconds,
                self.pruned
            ),
            None => write!(
                f,
                "the newest snapshot already covers the journal ({})",
                records(self.journal.records)
            ),
        }
    }
}

/// The newest usable snapshot of the config's journal, restored into a
/// fresh replica, or a fresh replica at the start of the day; unusable
/// snapshots are listed in `skipped`.
pub fn resume_replica(
    cfg: &Config,
    contracts: &ContractSet,
    store_capacity: usize,
    skipped: &mut Vec<(PathBuf, String)>,
) -> (Replica, Option<(PathBuf, Header)>) {
    let fp = fingerprint(cfg, contracts);
    for (_, path) in list(&cfg.journal.path) {
        let snap = match load(&path, fp, &cfg.journal.path) {
            Ok(s) => s,
            Err(e) => {
                skipped.push((path, e.to_string()));
                continue;
            }
        };
        let mut r = Replica::new(cfg, contracts, store_capacity);
        let next = snap.state.publisher.next_sequence;
        match r.restore::<&[u8]>(&snap.state, next, &[]) {
            Ok(()) => return (r, Some((path, snap.header))),
            Err(e) => skipped.push((path, e.to_string())),
        }
    }
    // Full replay: the journal's first record starts the day.
    (Replica::new(cfg, contracts, store_capacity), None)
}

/// Whether the journal at `path` begins with a configuration record other
/// than `fingerprint` (a new day's journal begins with the fingerprint of
/// the configuration it is written under).
pub fn journal_begun_under_other_config(
    path: &Path,
    fingerprint: u64,
) -> Result<bool, JournalError> {
    Ok(journal::first_record(path)?.is_some_and(|(kind, payload)| {
        kind == record::CONFIG && payload != fingerprint.to_be_bytes()
    }))
}

/// `tokex snapshot`: brings the newest snapshot up to the journal's last
/// complete record and writes it as a new snapshot (see the module docs).
pub fn take(cfg: &Config, contracts: &ContractSet, keep: usize) -> Result<Taken, SnapshotError> {
    let journal_path = &cfg.journal.path;
    if cfg.journal.durability == journal::Durability::None {
        return Err(SnapshotError::JournalDisabled);
    }
    if !journal_path.exists() {
        return Err(SnapshotError::NoJournal(journal_path.clone()));
    }
    // Replayed under another configuration the day would be another one,
    // and its snapshot, newest by name, would push the usable ones out.
    if journal_begun_under_other_config(journal_path, fingerprint(cfg, contracts))? {
        return Err(SnapshotError::OtherConfig(journal_path.clone()));
    }
    let t0 = Instant::now();
    let mut skipped = Vec::new();
    // The replica's own store only has to hold one event's messages while
    // the layout follows them.
    let (mut replica, base) = resume_replica(cfg, contracts, 1 << 12, &mut skipped);
    let from = base.as_ref().map_or(Position::START, |(_, h)| h.journal);
    let load_seconds = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let report = journal::scan_from(journal_path, from, |rec| replica.apply(rec))?;
    let replay_seconds = t1.elapsed().as_secs_f64();
    let journal = Position {
        records: report.records,
        offset: report.valid_len,
    };
    let mut taken = Taken {
        base: base.map(|(p, _)| p),
        skipped,
        replayed: report.records - from.records,
        journal,
        written: None,
        bytes: 0,
        md_next: replica.publisher.next_sequence(),
        load_seconds,
        replay_seconds,
        write_seconds: 0.0,
        pruned: 0,
    };
    // Nothing new since the newest snapshot (or an empty journal).
    if taken.replayed == 0 {
        return Ok(taken);
    }
    let t2 = Instant::now();
    let header = Header {
        fingerprint: fingerprint(cfg, contracts),
        journal,
        last: report.last,
        md_next: taken.md_next,
    };
    let bytes = encode(&header, &replica.state()?)?;
    remove_stale_temporaries(journal_path);
    let path = path_for(journal_path, journal.records);
    write_atomic(&path, &bytes)?;
    taken.write_seconds = t2.elapsed().as_secs_f64();
    taken.bytes = bytes.len() as u64;
    taken.pruned = prune(journal_path, &path, header.fingerprint, keep.max(1));
    taken.written = Some(path);
    Ok(taken)
}

/// Removes the snapshots of `journal` that recovery no longer needs and
/// returns how many: those of this journal beyond the newest `keep` (the
/// one just `written` counts first and is never removed), and those that
/// do not fit this journal at all (an older day's that landed after
/// `--fresh` removed its siblings, one past a cut). Numbering alone would
/// not do: a stale snapshot numbered past the journal would push out the
/// usable ones, the one just written included. Snapshots that cannot be
/// judged (another config's, another version's, unreadable) are left
/// alone and not counted.
fn prune(journal: &Path, written: &Path, fingerprint: u64, keep: usize) -> usize {
    let mut usable = 1;
    let mut pruned = 0;
    for (_, old) in list(journal) {
        if old == written {
            continue;
        }
        let remove = match load(&old, fingerprint, journal) {
            Ok(_) => {
                usable += 1;
                usable > keep
            }
            Err(SnapshotError::NotThisJournal { .. }) => true,
            Err(_) => false,
        };
        if remove && fs::remove_file(&old).is_ok() {
            pruned += 1;
        }
    }
    pruned
}

/// `tokex snapshot`.
#[derive(clap::Args, Debug, Clone)]
pub struct SnapshotArgs {
    /// The exchange's config (journal path, contracts, sessions).
    #[arg(long, default_value = "config/tokex.toml")]
    pub config: PathBuf,
    /// Keep taking one every this many seconds until SIGINT/SIGTERM.
    #[arg(long)]
    pub every: Option<u64>,
    /// Snapshots to keep, at least 1 (default: the config's
    /// `journal.snapshots_keep`). Recovery needs only the newest (each is
    /// written atomically; one that cannot be used falls back to an older
    /// one, then to replaying the whole journal), so 1 is safe; keeping 2
    /// saves that full replay if the newest is damaged.
    #[arg(long, value_parser = keep_arg)]
    pub keep: Option<usize>,
}

/// `--keep N`: at least 1 (0 would remove the snapshot just written).
fn keep_arg(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(0) => Err("at least 1 (the snapshot just written is kept)".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs `tokex snapshot` once, or every `--every` seconds.
pub fn run(args: &SnapshotArgs) -> anyhow::Result<()> {
    let cfg = Config::load(&args.config)?;
    let contracts = ContractSet::load_dir(&cfg.contracts)?;
    let keep = args.keep.unwrap_or(cfg.journal.snapshots_keep);
    let Some(every) = args.every else {
        println!("{}", take(&cfg, &contracts, keep)?);
        return Ok(());
    };
    let stop = crate::runtime::Stop::on_signals()?;
    while !stop.is_set() {
        match take(&cfg, &contracts, keep) {
            Ok(t) => println!("{t}"),
            // The journal may not exist yet (the exchange not started).
            Err(e) => println!("snapshot: {e}"),
        }
        let until = Instant::now() + std::time::Duration::from_secs(every.max(1));
        while !stop.is_set() && Instant::now() < until {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        snapshot: SnapshotArgs,
    }

    fn parse(args: &[&str]) -> Result<SnapshotArgs, clap::Error> {
        use clap::Parser;
        Cli::try_parse_from([&["snapshot"], args].concat()).map(|c| c.snapshot)
    }

    #[test]
    fn keeping_no_snapshot_is_refused_by_the_parser_and_one_is_enough() {
        let e = parse(&["--keep", "0"]).expect_err("--keep 0 refused");
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(e.to_string().contains("at least 1"), "{e}");
        assert!(parse(&["--keep", "-1"]).is_err());
        assert_eq!(parse(&["--keep", "1"]).unwrap().keep, Some(1));
        assert_eq!(parse(&[]).unwrap().keep, None);
    }

    #[test]
    fn one_record_is_said_in_the_singular() {
        let taken = Taken {
            base: None,
            skipped: Vec::new(),
            replayed: 1,
            journal: Position {
                records: 1,
                offset: 100,
            },
            written: Some(PathBuf::from("j.0000000000000001.snap")),
            bytes: 2_000_000,
            md_next: 3,
            load_seconds: 0.0,
            replay_seconds: 0.0,
            write_seconds: 0.0,
            pruned: 0,
        };
        let text = taken.to_string();
        assert!(text.contains("replayed 1 record in"), "{text}");
        assert!(text.contains("(1 record, 2.0 MB,"), "{text}");
        let none = Taken {
            written: None,
            replayed: 0,
            ..taken
        };
        assert!(
            none.to_string()
                .ends_with("the newest snapshot already covers the journal (1 record)"),
            "{none}"
        );
    }
}
