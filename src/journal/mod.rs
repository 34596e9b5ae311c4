//! The append-only input journal: group commit, CRC-checked records, and
//! recovery that cuts a torn tail and refuses to cut damage that good
//! records follow (unless told to).
//!
//! A torn tail is what a killed process leaves: its first bad record runs
//! past the last byte written (the end of the file, or where the zeros of
//! the space the writer allocated ahead begin: `mapped`), and is cut
//! without looking further (its payload may be a client's bytes, which
//! can hold a record's image with the CRC right). Only a bad record that
//! fits inside what was written is damage that later good records, found
//! by trying every byte after it as a record's start, can show. The bytes
//! cut are kept in a new file beside the journal, never over an earlier
//! cut's; zeros after the records are unused space, dropped.
//!
//! Owns the on-disk format and nothing else: records are opaque `(kind, time,
//! payload)` triples; what a kind means is decided by the layer that writes it
//! (the exchange journals every accepted inbound message before its ack
//! leaves, and replays them through the deterministic engine on restart).
//!
//! Format (all integers big-endian; the header carries `VERSION`):
//! ```text
//! file   = header record*
//! header = "TOKEXJNL" version:u32 flags:u32                      (16 bytes)
//! record = len:u32 crc:u32 kind:u8 time_ns:u64 payload[len]     (17 + len bytes)
//! crc    = CRC-32 (IEEE) of kind, time_ns and payload
//! ```
//!
//! The version also names the rules its records were written under:
//! replay must reach the state the run that wrote them had, and the
//! gateway's rules changed with version 2 (2026-12-02: logins journaled as
//! their outcome, one session per address, re-sends rate limited, ...)
//! and with version 3 (2026-12-02: a logged-in peer's logins take rate
//! tokens, login failures are forgotten only after a quiet spell, a
//! no-op cancel is answered when timers fire with it, no engine event is
//! dropped from a large batch) and with version 4 (2026-12-02: the engine's
//! margin price is the highest of the orders that added to the worst case,
//! a replace to a higher price is checked against the credit, a breaker
//! trip keeps self-trade prevention and leaves no 0-lot order, a call
//! halted before its uncross is uncrossed when trading resumes) and with
//! version 5 (2026-12-03: a crossing sell is checked at the bid it trades
//! at, lots opened above the margin price are margined at the fill, an
//! order through zero is checked, margin rounds up; a TCP Logout Request
//! closes its connection) and with version 6 (2026-12-03: the circuit
//! breaker measures a trade from the window's extreme it moved away from,
//! an operator's call out of a halt is a reopening at the last trade) and
//! with version 7 (2026-12-03: a sweep's first fill is checked by the
//! breaker too, a halt starts a fresh breaker window, the kind of a call
//! is settled when continuous trading ends and kept through halts and
//! breaks; a logged-in peer's bytes that are no OUCH request, and its
//! requests dropped silently past the rate limit, are not journaled, and
//! the former take no rate-limit token; a login naming a session another
//! peer holds takes that session's token; a full back-off table forgets
//! the least important quarter) and with version 8 (2026-12-03: every
//! login with a session's credentials, or from its bound peer, takes one
//! of its rate-limit tokens, a session's first too) and with version 9
//! (2026-12-03: IOC and FOK orders, which never rest, are not held to an
//! account's `max_live_orders`). An older
//! journal is refused, with what to do, rather than replayed to a state
//! its own run never had; a newer one too, named as a newer tokex's
//! (whose day a new one started here would delete).

mod mapped;

use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use serde::Deserialize;

use crate::types::Nanos;
use mapped::MappedFile;

const MAGIC: &[u8; 8] = b"TOKEXJNL";
const VERSION: u32 = 9;
/// Bytes of the file header.
pub const HEADER_LEN: usize = 16;
/// Bytes of a record's header (len, crc, kind, time).
pub const RECORD_HEADER_LEN: usize = 17;
/// Largest payload a record may carry; a longer length means corruption.
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// How far an appended batch is made durable before `commit` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// Benchmarks only: nothing is written. Acknowledged orders are lost on a crash.
    None,
    /// Each batch stored into the page cache (through a shared mapping of
    /// the file, no system call): survives a killed process, not a power
    /// loss.
    #[default]
    Write,
    /// Stored, then msync(2) per batch: survives a power loss.
    Fsync,
}

/// Why a journal could not be opened or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal i/o: {0}")]
    Io(#[from] io::Error),
    #[error("not a tokex journal (bad magic)")]
    BadMagic,
    /// An older tokex's journal (its rules are not this build's).
    #[error("journal version {0} is not supported: this build reads version {VERSION} (a journal of an older tokex replays only with the tokex that wrote it: finish its day with that one, or start a new day with --fresh)")]
    UnsupportedVersion(u32),
    /// A newer tokex's journal: its day is that tokex's to continue
    /// (starting a new day here would delete it).
    #[error("the journal was written by a newer tokex (journal version {0}; this one reads version {VERSION}): continue its day with that tokex, which can replay it; this one cannot, and starting a new day with it would delete that day")]
    NewerVersion(u32),
    #[error("record payload of {0} bytes exceeds the {MAX_PAYLOAD}-byte limit")]
    RecordTooLarge(usize),
    /// Another exchange holds the journal's lock (`lock`); `pid` is the
    /// holder's process when it wrote it there and is still running.
    #[error("{}", in_use(.lock, *.pid))]
    InUse {
        lock: std::path::PathBuf,
        pid: Option<u32>,
    },
    #[error("the journal is damaged at byte {at}, and good records follow from byte {resumes_at}: not the torn tail a crash leaves, and cutting it there would lose every record after the damage, acknowledged orders among them. Restore the journal from a copy, or accept the loss with --cut-damaged-journal (the bytes from the damage on are then kept in {})", .kept.display())]
    Damaged {
        at: u64,
        resumes_at: u64,
        /// Where `--cut-damaged-journal` would keep the bytes cut ([`cut_path`],
        /// or the next [`numbered_cut_path`] when an earlier cut has it).
        kept: std::path::PathBuf,
    },
}

/// What opening a journal does with damage that good records follow (a
/// torn tail, which a crash leaves, is always cut).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDamage {
    /// Refuse to open it ([`JournalError::Damaged`]); nothing is changed.
    #[default]
    Refuse,
    /// Cut from the damage, keeping the bytes in a new file
    /// ([`JournalWriter::kept`]): the records
    /// after it are lost to the replay.
    Cut,
}

/// An exclusive hold on a journal: one exchange writes it at a time. Taken
/// on `<journal>.lock`, a file that starting a new day does not remove, so
/// a second exchange is refused before it touches the day's files (its
/// `--fresh` would delete the live journal). The kernel releases it when
/// the file is closed: on drop, and when the process dies, however.
#[derive(Debug)]
pub struct JournalLock(#[expect(dead_code, reason = "held, never read")] File);

/// Takes the lock of the journal at `path` (its directory must exist),
/// and writes this process's id into the lock file, so that an exchange
/// refused can say which one holds it.
pub fn lock(path: &Path) -> Result<JournalLock, JournalError> {
    // Beside the file itself: a journal reached through a symbolic link
    // (or another spelling of its directory) has the one lock.
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| {
        match (path.parent().map(std::fs::canonicalize), path.file_name()) {
            (Some(Ok(dir)), Some(name)) => dir.join(name),
            _ => path.to_path_buf(),
        }
    });
    let p = beside(&real, ".lock");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)?;
    match f.try_lock() {
        Ok(()) => {
            // Only the holder writes it (the file outlives its holders: what
            // it says is read only while its lock is held).
            f.set_len(0)?;
            f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            Ok(JournalLock(f))
        }
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut text = String::new();
            let pid = f
                .read_to_string(&mut text)
                .ok()
                .and_then(|_| text.trim().parse::<u32>().ok())
                // The holder may not have written its own yet (an older
                // holder's, of a process gone, would name the wrong one).
                .filter(|pid| Path::new(&format!("/proc/{pid}")).exists());
            Err(JournalError::InUse { lock: p, pid })
        }
        Err(std::fs::TryLockError::Error(e)) => Err(e.into()),
    }
}

/// [`JournalError::InUse`]'s message.
fn in_use(lock: &Path, pid: Option<u32>) -> String {
    match pid {
        Some(pid) => format!(
            "another exchange (pid {pid}) is using this journal: the journal is in use (its lock {} is held; one exchange writes a journal at a time)",
            lock.display()
        ),
        None => format!(
            "the journal is in use: another tokex exchange holds {} (one exchange writes a journal at a time)",
            lock.display()
        ),
    }
}

/// One journal record as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    pub kind: u8,
    pub time: Nanos,
    pub payload: &'a [u8],
}

/// What reading an existing journal found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ScanReport {
    /// Good records read (those before the scan's start included).
    pub records: u64,
    /// Byte length of the good prefix (header included).
    pub valid_len: u64,
    /// Bytes after the good prefix that were (or would be) cut, up to the
    /// last byte that is not zero: the zeros after it are space a writer
    /// allocated ahead and did not use, not records.
    pub cut_bytes: u64,
    /// Where good records start again in the cut bytes, when the writer
    /// found them: the cut was damage, not a torn tail.
    pub resumes_at: Option<u64>,
    /// The last good record's offset and CRC, if there is one.
    pub last: Option<RecordMark>,
}

/// A point in a journal: the records before it and its byte offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub records: u64,
    pub offset: u64,
}

impl Position {
    /// Just after the file header: no record yet.
    pub const START: Position = Position {
        records: 0,
        offset: HEADER_LEN as u64,
    };
}

/// Where a record starts and its CRC: names the record (a snapshot checks
/// that the journal it covers is still the one on disk).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMark {
    pub offset: u64,
    pub crc: u32,
}

/// Reads every good record of the journal at `path`, calling `f` for each,
/// and stops at the first torn or corrupt record. Does not modify the file.
pub fn scan(path: &Path, f: impl FnMut(Record<'_>)) -> Result<ScanReport, JournalError> {
    scan_from(path, Position::START, f)
}

/// The record that ends at `end` (a [`Position::offset`]) if it starts at
/// `mark.offset` with `mark.crc`: whether the journal still holds the
/// record a snapshot was taken after. Reads 8 bytes.
pub fn holds_record(path: &Path, mark: RecordMark, end: u64) -> Result<bool, JournalError> {
    let file = File::open(path)?;
    if file.metadata()?.len() < end || end < mark.offset + RECORD_HEADER_LEN as u64 {
        return Ok(false);
    }
    let mut head = [0u8; 8];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut head, mark.offset)?;
    let len = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Ok(crc == mark.crc && mark.offset + RECORD_HEADER_LEN as u64 + len == end)
}

/// The journal's first good record as (kind, payload), if it has one:
/// what a day's journal was begun under, read without replaying the day.
pub fn first_record(path: &Path) -> Result<Option<(u8, Vec<u8>)>, JournalError> {
    let mut r = BufReader::new(File::open(path)?);
    let mut header = [0u8; HEADER_LEN];
    if read_full(&mut r, &mut header)? < HEADER_LEN {
        return Ok(None);
    }
    check_header(&header)?;
    let mut payload = vec![0u8; MAX_PAYLOAD];
    Ok(next_record(&mut r, &mut payload)?.map(|(rec, _)| (rec.kind, rec.payload.to_vec())))
}

/// As [`scan`], from `from` (a position an earlier scan reached; the
/// records before it are not read again, only the file header is checked).
pub fn scan_from(
    path: &Path,
    from: Position,
    mut f: impl FnMut(Record<'_>),
) -> Result<ScanReport, JournalError> {
    let mut file = File::open(path)?;
    // Only what the file held when the scan began is read: a writer may be
    // appending (`tokex snapshot` reads the live exchange's journal).
    let file_len = file.metadata()?.len();
    let mut header = [0u8; HEADER_LEN];
    if file_len < HEADER_LEN as u64 {
        // A journal torn before its header was complete holds nothing;
        // a short file that is not the start of one is not a journal.
        let mut start = vec![0u8; file_len as usize];
        file.read_exact(&mut start)?;
        if start[..] != new_header()[..start.len()] {
            return Err(JournalError::BadMagic);
        }
        return Ok(ScanReport {
            records: 0,
            valid_len: 0,
            cut_bytes: file_len,
            resumes_at: None,
            last: None,
        });
    }
    file.read_exact(&mut header)?;
    check_header(&header)?;
    let from = if from.offset < HEADER_LEN as u64 {
        Position::START
    } else {
        from
    };
    if from.offset > file_len {
        return Err(JournalError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!(
                "the journal holds {file_len} bytes, the scan was to start at {}",
                from.offset
            ),
        )));
    }
    file.seek(SeekFrom::Start(from.offset))?;
    let mut r = BufReader::with_capacity(1 << 20, file.take(file_len - from.offset));
    let mut report = ScanReport {
        records: from.records,
        valid_len: from.offset,
        cut_bytes: 0,
        resumes_at: None,
        last: None,
    };
    let mut payload = vec![0u8; MAX_PAYLOAD];
    while let Some((rec, crc)) = next_record(&mut r, &mut payload)? {
        let len = rec.payload.len();
        f(rec);
        report.last = Some(RecordMark {
            offset: report.valid_len,
            crc,
        });
        report.records += 1;
        report.valid_len += (RECORD_HEADER_LEN + len) as u64;
    }
    let file = r.into_inner().into_inner();
    report.cut_bytes = data_end(&file, report.valid_len, file_len)? - report.valid_len;
    Ok(report)
}

/// Where the bytes of `file` from `from` to `end` stop being all zeros: the
/// offset after the last byte that is not zero, or `from`. Read backwards
/// from `end` a window at a time, so the zeros a writer allocated ahead
/// are read once and records not at all.
fn data_end(file: &File, from: u64, end: u64) -> io::Result<u64> {
    let mut window = vec![0u8; 64 << 10];
    let mut to = end;
    while to > from {
        let n = ((to - from) as usize).min(window.len());
        std::os::unix::fs::FileExt::read_exact_at(file, &mut window[..n], to - n as u64)?;
        if let Some(last) = window[..n].iter().rposition(|&b| b != 0) {
            return Ok(to - n as u64 + last as u64 + 1);
        }
        to -= n as u64;
    }
    Ok(from)
}

/// Whether the journal at `path`, read from `from` on, has damage that
/// good records follow: the [`JournalError::Damaged`] that opening it
/// with [`OnDamage::Refuse`] would return, found without replaying or
/// changing anything (a start checks it before it touches the other files
/// of the day). A torn tail is not damage.
pub fn check_damage(path: &Path, from: Position) -> Result<(), JournalError> {
    let report = scan_from(path, from, |_| {})?;
    if report.cut_bytes == 0 || report.valid_len < HEADER_LEN as u64 {
        return Ok(());
    }
    let file = File::open(path)?;
    let written = report.valid_len + report.cut_bytes;
    match resumes_after(&file, report.valid_len, written)? {
        Some(resumes_at) => Err(JournalError::Damaged {
            at: report.valid_len,
            resumes_at,
            kept: free_cut_path(path, report.valid_len),
        }),
        None => Ok(()),
    }
}

/// The next good record of `r` (its payload in `payload`, which holds
/// [`MAX_PAYLOAD`] bytes) and its CRC; `None` where the journal ends, is
/// torn or is corrupt. Inlined: it is the journal replay's inner loop.
#[inline(always)]
fn next_record<'p>(
    r: &mut impl Read,
    payload: &'p mut [u8],
) -> io::Result<Option<(Record<'p>, u32)>> {
    let mut head = [0u8; RECORD_HEADER_LEN];
    if read_full(r, &mut head)? < RECORD_HEADER_LEN {
        return Ok(None);
    }
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if len > MAX_PAYLOAD.min(payload.len()) || read_full(r, &mut payload[..len])? < len {
        return Ok(None);
    }
    let crc = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head[8..]);
    hasher.update(&payload[..len]);
    if hasher.finalize() != crc {
        return Ok(None);
    }
    let time = u64::from_be_bytes(head[9..17].try_into().unwrap_or_default());
    Ok(Some((
        Record {
            kind: head[8],
            time: Nanos(time),
            payload: &payload[..len],
        },
        crc,
    )))
}

/// Where good records start again after the bad record at byte `at` of
/// `file` (the first one a scan could not read; what was written of the
/// file ends at `written`, the last byte not zero), when it is damage;
/// `None` when it is a torn tail.
///
/// A killed process's last commit leaves a prefix of what it stored, so
/// the record it tore runs past what was written: its header is cut
/// short, or its length (one tokex could have written) reaches past
/// `written` (what it did not store reads as zeros, whether the file ends
/// there or space allocated ahead follows; a record whose own last bytes
/// are zeros reaches past `written` only if it is the last, and then its
/// CRC is right or it is torn). That is a torn tail, cut without a
/// search: the bytes after its header are its payload, which for an
/// order is a client's bytes as sent, and a client can send a record's
/// image with its CRC right (a search would take it for a good record
/// and refuse the start). Only a bad record that fits inside what was
/// written is searched after. (A length field damaged within the last
/// 64 KiB so that it reaches past the end looks like a tear too, and is
/// cut.)
fn resumes_after(file: &File, at: u64, written: u64) -> io::Result<Option<u64>> {
    if written.saturating_sub(at) < RECORD_HEADER_LEN as u64 {
        return Ok(None);
    }
    let mut len = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut len, at)?;
    let len = u64::from(u32::from_be_bytes(len));
    if len <= MAX_PAYLOAD as u64 && at + RECORD_HEADER_LEN as u64 + len > written {
        return Ok(None);
    }
    good_record_after(file, at, records_end(file, written)?)
}

/// Where records written up to `written` (the last byte not zero) can
/// end: a record's last bytes can be zeros, up to a whole record's worth,
/// so as far as the longest record beyond it, or the end of the file.
fn records_end(file: &File, written: u64) -> io::Result<u64> {
    let longest = (RECORD_HEADER_LEN + MAX_PAYLOAD) as u64;
    Ok(file.metadata()?.len().min(written + longest))
}

/// Where the first good record after byte `at` of `file` starts (one that
/// fits before `end` with its CRC right), if any. Read in windows of a MiB
/// plus the longest record, trying every byte as a record's start. A
/// match is not only chance (a 32-bit CRC agreeing) when the damaged
/// record's payload holds a client's bytes: a client can send a record's
/// image, which then refuses a start that only damage inside the file
/// brought here (the operator's `--cut-damaged-journal` decides), never
/// a torn tail's ([`resumes_after`]).
fn good_record_after(file: &File, at: u64, end: u64) -> io::Result<Option<u64>> {
    const STARTS: usize = 1 << 20;
    let mut window = vec![0u8; STARTS + RECORD_HEADER_LEN + MAX_PAYLOAD];
    let mut payload = vec![0u8; MAX_PAYLOAD];
    let mut base = at + 1;
    while base + RECORD_HEADER_LEN as u64 <= end {
        let n = ((end - base) as usize).min(window.len());
        std::os::unix::fs::FileExt::read_exact_at(file, &mut window[..n], base)?;
        let starts = (n + 1 - RECORD_HEADER_LEN).min(STARTS);
        for i in 0..starts {
            if next_record(&mut &window[i..n], &mut payload)?.is_some() {
                return Ok(Some(base + i as u64));
            }
        }
        base += STARTS as u64;
    }
    Ok(None)
}

/// The header a new journal begins with.
fn new_header() -> [u8; HEADER_LEN] {
    let mut header = [0u8; HEADER_LEN];
    header[0..8].copy_from_slice(MAGIC);
    header[8..12].copy_from_slice(&VERSION.to_be_bytes());
    header
}

fn check_header(header: &[u8; HEADER_LEN]) -> Result<(), JournalError> {
    if &header[0..8] != MAGIC {
        return Err(JournalError::BadMagic);
    }
    let version = u32::from_be_bytes([header[8], header[9], header[10], header[11]]);
    if version > VERSION {
        return Err(JournalError::NewerVersion(version));
    }
    if version != VERSION {
        return Err(JournalError::UnsupportedVersion(version));
    }
    Ok(())
}

/// Where the bytes cut from the journal at `path` at byte `at` are kept
/// (by the first cut there: a later one at the same offset takes the
/// first of [`numbered_cut_path`]`(path, at, 1, 2, ...)` not taken).
pub fn cut_path(path: &Path, at: u64) -> std::path::PathBuf {
    numbered_cut_path(path, at, 0)
}

/// The `n`th name for the bytes cut at `at`: [`cut_path`], then
/// `<journal>.cut-at-<at>.<n>`.
pub fn numbered_cut_path(path: &Path, at: u64, n: u32) -> std::path::PathBuf {
    match n {
        0 => beside(path, &format!(".cut-at-{at}")),
        n => beside(path, &format!(".cut-at-{at}.{n}")),
    }
}

/// The name a cut at `at` would keep its bytes under now: the first of
/// the [`numbered_cut_path`]s no file has.
fn free_cut_path(path: &Path, at: u64) -> std::path::PathBuf {
    (0..)
        .map(|n| numbered_cut_path(path, at, n))
        .find(|p| !p.exists())
        .unwrap_or_else(|| cut_path(path, at))
}

/// The file next to `path` named after it with `suffix` appended (the
/// journal's lock and cut bytes, its snapshots and their temporary files).
pub fn beside(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(suffix);
    p.into()
}

/// Copies the journal's bytes from `at` to `end` into a new file (made
/// durable) before they are cut off, and returns its name: the first of
/// the [`numbered_cut_path`]s not taken. Never an existing file: an
/// earlier cut at the same offset (a damage cut, then the torn tail of
/// the records written after it) kept what may be the only copy of the
/// records after a damage.
fn save_cut(path: &Path, file: &mut File, at: u64, end: u64) -> io::Result<std::path::PathBuf> {
    let mut n = 0;
    let (mut out, kept) = loop {
        let p = numbered_cut_path(path, at, n);
        match OpenOptions::new().write(true).create_new(true).open(&p) {
            Ok(f) => break (f, p),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => n += 1,
            Err(e) => return Err(e),
        }
    };
    let copied = (|| {
        file.seek(SeekFrom::Start(at))?;
        io::copy(&mut (&*file).take(end - at), &mut out)?;
        out.sync_all()?;
        sync_dir(path.parent().unwrap_or(Path::new("")))
    })();
    if let Err(e) = copied {
        // A partial copy is no copy: the start is refused, the journal
        // uncut, and nothing may pass for the kept bytes.
        let _ = std::fs::remove_file(&kept);
        return Err(e);
    }
    Ok(kept)
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Makes the entries of directory `dir` durable (files created, removed or
/// renamed in it): POSIX and Linux promise that a new file's name survives a
/// power loss only once its directory is fsynced, whatever was synced in
/// the file. An empty path (the parent of a bare file name) is the current
/// directory.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    File::open(dir)?.sync_all()
}

/// Appends records in batches: `append` fills an in-memory buffer, `commit`
/// stores the whole batch into the file's mapping (group commit).
pub struct JournalWriter {
    file: Option<MappedFile>,
    buf: Vec<u8>,
    /// A fresh CRC state, cloned per record: `Hasher::new` checks the
    /// CPU's features every time (a third of a short record's CRC cost).
    crc: crc32fast::Hasher,
    durability: Durability,
    records: u64,
    bytes: u64,
    /// The journal's lock, held as long as the writer ([`JournalWriter::hold`]).
    lock: Option<JournalLock>,
    /// Where opening kept the bytes it cut, if it cut any.
    kept: Option<std::path::PathBuf>,
}

impl JournalWriter {
    /// Opens (or creates) the journal at `path` for appending. An existing
    /// journal is scanned first: `replay` sees every good record, and a torn
    /// tail is cut off; damage that good records follow is refused
    /// ([`OnDamage::Refuse`]). With `Durability::None` no file is touched.
    pub fn open(
        path: &Path,
        durability: Durability,
        batch_capacity: usize,
        replay: impl FnMut(Record<'_>),
    ) -> Result<(JournalWriter, ScanReport), JournalError> {
        let from = Position::START;
        JournalWriter::open_from(
            path,
            durability,
            batch_capacity,
            from,
            OnDamage::Refuse,
            replay,
        )
    }

    /// As [`JournalWriter::open`], replaying only the records from `from`
    /// on (a restart from a snapshot that covers the ones before; the
    /// caller has checked that it is this journal's, see [`holds_record`]),
    /// and doing `on_damage` with damage that good records follow. When it
    /// is refused, `replay` has seen the records before the damage, and
    /// the file is as it was.
    pub fn open_from(
        path: &Path,
        durability: Durability,
        batch_capacity: usize,
        from: Position,
        on_damage: OnDamage,
        replay: impl FnMut(Record<'_>),
    ) -> Result<(JournalWriter, ScanReport), JournalError> {
        let mut writer = JournalWriter {
            file: None,
            buf: Vec::with_capacity(batch_capacity.max(RECORD_HEADER_LEN + MAX_PAYLOAD)),
            crc: crc32fast::Hasher::new(),
            durability,
            records: 0,
            bytes: 0,
            lock: None,
            kept: None,
        };
        if durability == Durability::None {
            return Ok((writer, ScanReport::default()));
        }
        let exists = path.exists() && std::fs::metadata(path)?.len() > 0;
        let mut report = if exists {
            scan_from(path, from, replay)?
        } else {
            ScanReport::default()
        };
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        if report.valid_len < HEADER_LEN as u64 {
            file.set_len(0)?;
            file.write_all(&new_header())?;
            file.sync_all()?;
            if durability == Durability::Fsync {
                // fsync of the file does not make its name durable: a new
                // journal, and every record fdatasync'ed into it, could
                // vanish with a power loss until its directory is synced.
                sync_dir(path.parent().unwrap_or(Path::new("")))?;
            }
        } else if report.cut_bytes > 0 {
            // A killed process leaves at most a torn last batch; good
            // records after the damage mean a fault in the middle, and
            // cutting would take every later record with it.
            let written = report.valid_len + report.cut_bytes;
            report.resumes_at = resumes_after(&file, report.valid_len, written)?;
            if let (Some(resumes_at), OnDamage::Refuse) = (report.resumes_at, on_damage) {
                return Err(JournalError::Damaged {
                    at: report.valid_len,
                    resumes_at,
                    kept: free_cut_path(path, report.valid_len),
                });
            }
            // Kept before the cut: after damage they are all there is of
            // the records that followed it (the last one's zeros too). Of
            // a torn tail, what was written.
            let end = match report.resumes_at {
                Some(_) => records_end(&file, written)?,
                None => written,
            };
            writer.kept = Some(save_cut(path, &mut file, report.valid_len, end)?);
            file.set_len(report.valid_len)?;
            file.sync_all()?;
        } else if file.metadata()?.len() > report.valid_len {
            // Zeros a killed writer allocated ahead: nothing to keep.
            file.set_len(report.valid_len)?;
        }
        let len = file.metadata()?.len();
        writer.records = report.records;
        writer.bytes = len;
        writer.file = Some(MappedFile::new(file, len)?);
        Ok((writer, report))
    }

    /// The file opening kept the bytes it cut in (a torn tail, or damage
    /// with [`OnDamage::Cut`]); `None` when nothing was cut.
    pub fn kept(&self) -> Option<&Path> {
        self.kept.as_deref()
    }

    /// Keeps the journal's lock for as long as this writer lives.
    pub fn hold(&mut self, lock: JournalLock) {
        self.lock = Some(lock);
    }

    /// Adds one record to the current batch (no I/O).
    #[inline]
    pub fn append(&mut self, kind: u8, time: Nanos, payload: &[u8]) -> Result<(), JournalError> {
        if self.file.is_none() {
            return Ok(());
        }
        if payload.len() > MAX_PAYLOAD {
            return Err(JournalError::RecordTooLarge(payload.len()));
        }
        // Laid out first, then one CRC pass over kind, time and payload
        // where they lie (three short updates each paid the per-call
        // setup, and the 1- and 8-byte ones the byte-wise path).
        let start = self.buf.len();
        self.buf
            .extend_from_slice(&(payload.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.push(kind);
        self.buf.extend_from_slice(&time.0.to_be_bytes());
        self.buf.extend_from_slice(payload);
        let mut crc = self.crc.clone();
        crc.update(&self.buf[start + 8..]);
        let crc = crc.finalize();
        self.buf[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        self.records += 1;
        Ok(())
    }

    /// Whether the current batch holds records not yet committed.
    pub fn has_pending(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Stores the batch into the file (and waits for the device in
    /// `Fsync` mode). Acknowledgements for the batch may leave only after
    /// this returns.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        let Some(file) = self.file.as_mut() else {
            return Ok(());
        };
        if self.buf.is_empty() {
            return Ok(());
        }
        let from = file.len();
        file.append(&self.buf)?;
        if self.durability == Durability::Fsync {
            file.sync(from)?;
        }
        self.bytes = file.len();
        self.buf.clear();
        Ok(())
    }

    /// Between batches (the exchange's timer, once a millisecond): file
    /// space and page faults for the next commits, taken now rather than
    /// in them.
    pub fn prepare(&mut self) {
        if let Some(file) = self.file.as_mut() {
            file.prepare();
        }
    }

    /// Moves the file-space allocation and page faults ahead of the
    /// records to a thread of their own, which runs `place` first (to keep
    /// itself off the caller's core); [`JournalWriter::prepare`] then only
    /// maps the file again when the records near the mapping's end, and
    /// wakes the thread when the records have used half of what it
    /// prepared.
    pub fn prepare_in_background(
        &mut self,
        place: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        match self.file.as_mut() {
            Some(file) => file.prepare_in_background(place),
            None => Ok(()),
        }
    }

    /// Commits that had to allocate file space themselves because the
    /// background thread had not ([`JournalWriter::prepare_in_background`]).
    pub fn late_allocations(&self) -> u64 {
        self.file.as_ref().map_or(0, MappedFile::late_allocations)
    }

    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Records in the journal, committed or pending.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes committed to the file.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn write_records(path: &Path, n: u64) {
        let (mut w, _) = JournalWriter::open(path, Durability::Write, 4096, |_| {}).unwrap();
        for i in 0..n {
            w.append(1, Nanos(i), format!("msg{i}").as_bytes()).unwrap();
            if i % 3 == 2 {
                w.commit().unwrap();
            }
        }
        w.commit().unwrap();
    }

    #[test]
    fn a_refused_lock_names_the_holders_pid_and_else_only_that_the_journal_is_in_use() {
        let d = TempDir::new("journal-lock-pid");
        let path = d.join("day.journal");
        let held = lock(&path).unwrap();
        let me = std::process::id();
        assert_eq!(
            std::fs::read_to_string(beside(&path, ".lock")).unwrap(),
            format!("{me}\n")
        );
        let Err(err) = lock(&path) else {
            panic!("locked twice");
        };
        assert!(
            err.to_string().contains(&format!(
                "another exchange (pid {me}) is using this journal"
            )),
            "{err}"
        );
        // What the file says is not a running process: no pid is named.
        std::fs::write(beside(&path, ".lock"), "4294967295\n").unwrap();
        let Err(err) = lock(&path) else {
            panic!("locked twice");
        };
        let why = err.to_string();
        assert!(why.contains("in use") && !why.contains("(pid"), "{why}");
        drop(held);
        assert!(lock(&path).is_ok());
    }

    fn read_back(path: &Path) -> (Vec<(u8, u64, Vec<u8>)>, ScanReport) {
        let mut out = Vec::new();
        let report = scan(path, |r| out.push((r.kind, r.time.0, r.payload.to_vec()))).unwrap();
        (out, report)
    }

    #[test]
    fn committed_records_read_back_in_order() {
        let d = TempDir::new("journal-order");
        let path = d.join("j");
        write_records(&path, 10);
        let (recs, report) = read_back(&path);
        assert_eq!(report.records, 10);
        assert_eq!(report.cut_bytes, 0);
        assert_eq!(recs[7], (1, 7, b"msg7".to_vec()));
    }

    #[test]
    fn reopening_replays_and_appends_after_the_existing_records() {
        let d = TempDir::new("journal-reopen");
        let path = d.join("j");
        write_records(&path, 4);
        let mut seen = 0;
        let (mut w, report) =
            JournalWriter::open(&path, Durability::Fsync, 4096, |_| seen += 1).unwrap();
        assert_eq!((seen, report.records), (4, 4));
        w.append(2, Nanos(99), b"after").unwrap();
        w.commit().unwrap();
        let (recs, _) = read_back(&path);
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[4], (2, 99, b"after".to_vec()));
    }

    #[test]
    fn a_scan_from_a_position_reads_only_the_records_after_it() {
        let d = TempDir::new("journal-from");
        let path = d.join("j");
        write_records(&path, 10);
        let mut marks = Vec::new();
        let mut at = Position::START;
        scan(&path, |r| {
            at.records += 1;
            at.offset += (RECORD_HEADER_LEN + r.payload.len()) as u64;
            marks.push(at);
        })
        .unwrap();
        let from = marks[5];
        let (recs, report) = {
            let mut out = Vec::new();
            let report = scan_from(&path, from, |r| out.push(r.time.0)).unwrap();
            (out, report)
        };
        assert_eq!(recs, vec![6, 7, 8, 9]);
        assert_eq!(report.records, 10);
        let last = report.last.unwrap();
        assert!(holds_record(&path, last, report.valid_len).unwrap());
        assert!(!holds_record(
            &path,
            RecordMark {
                crc: last.crc ^ 1,
                ..last
            },
            report.valid_len
        )
        .unwrap());
        assert!(!holds_record(&path, last, report.valid_len + 1).unwrap());
        // Reopening from there appends after the last record.
        let mut seen = 0;
        let (mut w, report) = JournalWriter::open_from(
            &path,
            Durability::Write,
            4096,
            from,
            OnDamage::Refuse,
            |_| seen += 1,
        )
        .unwrap();
        assert_eq!((seen, report.records, w.records()), (4, 10, 10));
        w.append(1, Nanos(10), b"msg10").unwrap();
        w.commit().unwrap();
        assert_eq!(read_back(&path).0.len(), 11);
    }

    #[test]
    fn torn_tail_is_cut_at_the_last_good_record() {
        let d = TempDir::new("journal-torn");
        let path = d.join("j");
        write_records(&path, 5);
        let full = std::fs::metadata(&path).unwrap().len();
        // Tear the last record in the middle of its payload.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(full - 2).unwrap();
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!(report.records, 4);
        assert_eq!(report.cut_bytes, (RECORD_HEADER_LEN + 4 - 2) as u64);
        assert_eq!(w.records(), 4);
        drop(w);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), report.valid_len);
        let kept = std::fs::read(cut_path(&path, report.valid_len)).unwrap();
        assert_eq!(
            kept.len() as u64,
            report.cut_bytes,
            "the cut bytes are kept"
        );
    }

    #[test]
    fn the_first_record_is_read_alone_and_only_when_it_is_good() {
        let d = TempDir::new("journal-first");
        let path = d.join("j");
        write_records(&path, 3);
        assert_eq!(first_record(&path).unwrap(), Some((1, b"msg0".to_vec())));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN + RECORD_HEADER_LEN] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(first_record(&path).unwrap(), None);
        std::fs::write(&path, &bytes[..HEADER_LEN + 3]).unwrap();
        assert_eq!(first_record(&path).unwrap(), None);
    }

    #[test]
    fn a_corrupt_record_mid_journal_is_refused_unchanged_and_cut_only_when_told_keeping_the_bytes()
    {
        let d = TempDir::new("journal-corrupt");
        let path = d.join("j");
        write_records(&path, 6);
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip a payload byte of the third record (records are 17 + 4 bytes).
        let third = HEADER_LEN + 2 * (RECORD_HEADER_LEN + 4);
        let fourth = third + RECORD_HEADER_LEN + 4;
        bytes[third + RECORD_HEADER_LEN + 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (recs, report) = read_back(&path);
        assert_eq!(recs.len(), 2);
        assert_eq!(report.cut_bytes, 4 * (RECORD_HEADER_LEN as u64 + 4));
        // Good records follow the damage: opening it is refused, saying
        // where, and the file is left as it was.
        let mut seen = 0;
        let open = |on_damage, seen: &mut u32| {
            JournalWriter::open_from(
                &path,
                Durability::Write,
                4096,
                Position::START,
                on_damage,
                |_| *seen += 1,
            )
        };
        match open(OnDamage::Refuse, &mut seen) {
            Err(JournalError::Damaged {
                at,
                resumes_at,
                kept,
            }) => {
                assert_eq!((at, resumes_at), (third as u64, fourth as u64));
                assert_eq!(kept, cut_path(&path, at));
            }
            other => panic!("{:?}", other.map(|(_, r)| r)),
        }
        assert_eq!(seen, 2, "the records before the damage were replayed");
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        assert!(!cut_path(&path, third as u64).exists());
        // Told to cut: cut at the damage, the bytes from it on (records 3
        // to 6) kept as they were.
        let (_, report) = open(OnDamage::Cut, &mut seen).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(report.resumes_at, Some(fourth as u64));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), third as u64);
        let kept = std::fs::read(cut_path(&path, third as u64)).unwrap();
        assert_eq!(kept, bytes[third..]);
    }

    #[test]
    fn a_damaged_last_record_or_garbage_after_the_records_is_a_torn_tail_and_cut() {
        for garbage in [
            vec![0u8; 3000],
            (0..3000u32).map(|i| (i * 7 + 3) as u8).collect(),
        ] {
            let d = TempDir::new("journal-tail");
            let path = d.join("j");
            write_records(&path, 4);
            let mut bytes = std::fs::read(&path).unwrap();
            // The last record damaged, then bytes no record parses from
            // (zeros a power loss can leave, or junk).
            let last = bytes.len() - (RECORD_HEADER_LEN + 4);
            bytes[last + RECORD_HEADER_LEN] ^= 0x55;
            bytes.extend_from_slice(&garbage);
            std::fs::write(&path, &bytes).unwrap();
            let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
            assert_eq!(w.records(), 3);
            assert_eq!(report.resumes_at, None);
            drop(w);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), last as u64);
        }
    }

    #[test]
    fn a_torn_last_record_whose_payload_holds_a_record_image_is_cut_not_refused() {
        let d = TempDir::new("journal-forged");
        let path = d.join("j");
        write_records(&path, 4);
        // A payload as a client may send it: a whole record's image, CRC
        // right, then padding; the record holding it torn by a kill.
        let mut image = 0u32.to_be_bytes().to_vec();
        let body = [&[3u8][..], &7u64.to_be_bytes()].concat();
        image.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
        image.extend_from_slice(&body);
        let payload = [&b"O"[..], &image, &[b' '; 24]].concat();
        let (mut w, _) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        w.append(1, Nanos(9), &payload).unwrap();
        w.commit().unwrap();
        drop(w);
        let len = std::fs::metadata(&path).unwrap().len();
        let torn = len - 10;
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(torn)
            .unwrap();
        let good = torn - (RECORD_HEADER_LEN + payload.len() - 10) as u64;
        assert!(check_damage(&path, Position::START).is_ok(), "not damage");
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!((w.records(), report.resumes_at), (4, None));
        assert_eq!(report.valid_len, good);
        // The same record whole but damaged (it fits in the file): the
        // image in it is taken for a good record, and the start refused.
        let mut bytes = std::fs::read(&path).unwrap();
        let mut last = (payload.len() as u32).to_be_bytes().to_vec();
        last.extend_from_slice(&[0; 4]);
        last.push(1);
        last.extend_from_slice(&9u64.to_be_bytes());
        last.extend_from_slice(&payload);
        bytes.extend_from_slice(&last);
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            check_damage(&path, Position::START),
            Err(JournalError::Damaged { .. })
        ));
    }

    #[test]
    fn absurd_length_is_treated_as_corruption() {
        let d = TempDir::new("journal-len");
        let path = d.join("j");
        write_records(&path, 2);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&u32::MAX.to_be_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let (recs, report) = read_back(&path);
        assert!(recs.is_empty());
        assert_eq!(report.valid_len, HEADER_LEN as u64);
    }

    #[test]
    fn a_journal_of_an_older_version_is_refused_with_what_to_do_not_overwritten() {
        let d = TempDir::new("journal-v1");
        let path = d.join("j");
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&2u32.to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes());
        std::fs::write(&path, &header).unwrap();
        let err = JournalWriter::open(&path, Durability::Write, 4096, |_| {})
            .err()
            .unwrap();
        assert!(matches!(err, JournalError::UnsupportedVersion(2)), "{err}");
        assert!(err.to_string().contains("--fresh"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), header);
    }

    #[test]
    fn a_journal_of_a_newer_version_is_not_called_older_nor_fresh_suggested() {
        let d = TempDir::new("journal-v6");
        let path = d.join("j");
        let mut header = MAGIC.to_vec();
        header.extend_from_slice(&(VERSION + 1).to_be_bytes());
        header.extend_from_slice(&0u32.to_be_bytes());
        std::fs::write(&path, &header).unwrap();
        let err = JournalWriter::open(&path, Durability::Write, 4096, |_| {})
            .err()
            .unwrap();
        let why = err.to_string();
        assert!(
            !why.contains("older tokex") && !why.contains("--fresh"),
            "{why}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), header);
    }

    #[test]
    fn a_torn_tail_cut_where_a_damage_cut_was_made_keeps_the_damage_cuts_bytes() {
        let d = TempDir::new("journal-cut-twice");
        let path = d.join("j");
        write_records(&path, 6);
        let mut bytes = std::fs::read(&path).unwrap();
        let third = HEADER_LEN + 2 * (RECORD_HEADER_LEN + 4);
        bytes[third + RECORD_HEADER_LEN + 1] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (mut w, _) = JournalWriter::open_from(
            &path,
            Durability::Write,
            4096,
            Position::START,
            OnDamage::Cut,
            |_| {},
        )
        .unwrap();
        let kept = std::fs::read(cut_path(&path, third as u64)).unwrap();
        assert_eq!(kept, bytes[third..]);
        assert_eq!(w.kept(), Some(cut_path(&path, third as u64).as_path()));
        w.append(1, Nanos(100), b"the first order after the cut")
            .unwrap();
        w.commit().unwrap();
        drop(w);
        let len = std::fs::metadata(&path).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let torn = std::fs::read(&path).unwrap()[third..].to_vec();
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!(report.valid_len, third as u64);
        assert_eq!(
            std::fs::read(cut_path(&path, third as u64)).unwrap(),
            kept,
            "the damage cut's bytes were overwritten by the torn tail's"
        );
        // The torn tail's bytes went to the next name, which the writer
        // says (the start-up line names it).
        let second = numbered_cut_path(&path, third as u64, 1);
        assert_eq!(w.kept(), Some(second.as_path()));
        assert_eq!(std::fs::read(&second).unwrap(), torn);
    }

    #[test]
    fn foreign_file_is_refused_not_overwritten() {
        let d = TempDir::new("journal-magic");
        let path = d.join("j");
        std::fs::write(&path, b"this is not a journal at all").unwrap();
        let err = JournalWriter::open(&path, Durability::Write, 4096, |_| {})
            .err()
            .unwrap();
        assert!(matches!(err, JournalError::BadMagic));
        assert_eq!(
            std::fs::read(&path).unwrap(),
            b"this is not a journal at all"
        );
    }

    #[test]
    fn a_short_file_that_is_not_a_journal_header_is_refused_not_overwritten() {
        let d = TempDir::new("journal-short");
        let path = d.join("j");
        std::fs::write(&path, b"4242\n").unwrap();
        let err = JournalWriter::open(&path, Durability::Write, 4096, |_| {})
            .err()
            .unwrap();
        assert!(matches!(err, JournalError::BadMagic), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"4242\n");
        // A header torn short is the start of one: the journal begins again.
        std::fs::write(&path, &MAGIC[..5]).unwrap();
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!((report.records, report.cut_bytes), (0, 5));
        assert_eq!(w.kept(), None);
        drop(w);
        assert_eq!(std::fs::read(&path).unwrap(), new_header());
    }

    #[test]
    fn a_journal_reached_through_a_symbolic_link_has_the_one_lock() {
        let d = TempDir::new("journal-link");
        let path = d.join("day.journal");
        write_records(&path, 1);
        let link = d.join("link.journal");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let held = lock(&path).unwrap();
        assert!(matches!(lock(&link), Err(JournalError::InUse { .. })));
        assert!(matches!(
            lock(&d.join(".").join("day.journal")),
            Err(JournalError::InUse { .. })
        ));
        drop(held);
        assert!(lock(&link).is_ok());
    }

    #[test]
    fn a_cut_whose_copy_fails_leaves_no_file_to_pass_for_the_kept_bytes() {
        let d = TempDir::new("journal-cut-fails");
        let path = d.join("j");
        write_records(&path, 5);
        // A handle the bytes cannot be read through: the copy fails.
        let mut unreadable = OpenOptions::new().write(true).open(&path).unwrap();
        let end = fs_len(&path);
        assert!(save_cut(&path, &mut unreadable, HEADER_LEN as u64, end).is_err());
        assert!(!cut_path(&path, HEADER_LEN as u64).exists());
    }

    fn fs_len(path: &Path) -> u64 {
        std::fs::metadata(path).unwrap().len()
    }

    /// A writer whose process was killed: its mapping and allocated space
    /// are left as they were (no `Drop`).
    fn write_and_kill(path: &Path, n: u64) -> u64 {
        let (mut w, _) = JournalWriter::open(path, Durability::Write, 4096, |_| {}).unwrap();
        for i in 0..n {
            w.append(1, Nanos(i), format!("msg{i}").as_bytes()).unwrap();
            w.commit().unwrap();
        }
        let bytes = w.bytes();
        std::mem::forget(w);
        bytes
    }

    #[test]
    fn a_killed_writers_allocated_zeros_are_unused_space_not_a_torn_tail() {
        let d = TempDir::new("journal-killed-zeros");
        let path = d.join("day.journal");
        let end = write_and_kill(&path, 10);
        assert!(fs_len(&path) > end, "space was allocated ahead");
        // A reader of the live (or killed) journal sees every record, and
        // nothing to cut.
        let report = scan(&path, |_| {}).unwrap();
        assert_eq!(
            (report.records, report.valid_len, report.cut_bytes),
            (10, end, 0)
        );
        assert!(check_damage(&path, Position::START).is_ok());
        // The next writer gives the zeros back and keeps nothing.
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!((report.records, report.cut_bytes), (10, 0));
        assert_eq!(w.kept(), None);
        assert_eq!(w.records(), 10);
        drop(w);
        assert_eq!(
            fs_len(&path),
            end,
            "a journal at rest ends with its last record"
        );
    }

    #[test]
    fn a_batch_torn_by_a_kill_inside_the_allocated_zeros_is_cut_as_a_torn_tail() {
        let d = TempDir::new("journal-killed-torn");
        let path = d.join("day.journal");
        let end = write_and_kill(&path, 4);
        // What a kill in the middle of the next commit leaves: a prefix of
        // the batch (two whole records and half of a third), zeros after.
        let mut batch = Vec::new();
        for i in 0..3u64 {
            let payload = format!("next{i}");
            let mut body = vec![2u8];
            body.extend_from_slice(&(100 + i).to_be_bytes());
            body.extend_from_slice(payload.as_bytes());
            batch.extend_from_slice(&(payload.len() as u32).to_be_bytes());
            batch.extend_from_slice(&crc32fast::hash(&body).to_be_bytes());
            batch.extend_from_slice(&body);
        }
        // Its last byte not zero: zeros at the end of a torn prefix are
        // not told from the allocated ones (and need not be).
        let torn = batch.len() - 2;
        std::os::unix::fs::FileExt::write_all_at(
            &OpenOptions::new().write(true).open(&path).unwrap(),
            &batch[..torn],
            end,
        )
        .unwrap();
        let third = end + (batch.len() / 3 * 2) as u64;
        let (w, report) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        assert_eq!((report.records, report.valid_len), (6, third));
        assert_eq!(report.cut_bytes, end + torn as u64 - third);
        assert_eq!(report.resumes_at, None, "a torn tail, not damage");
        let kept = std::fs::read(w.kept().expect("the torn bytes are kept")).unwrap();
        assert_eq!(
            kept,
            batch[batch.len() / 3 * 2..torn],
            "only the torn record's bytes"
        );
        drop(w);
        assert_eq!(fs_len(&path), third);
    }

    #[test]
    fn damage_before_a_last_record_ending_in_zeros_is_refused_and_its_cut_keeps_those_zeros() {
        let d = TempDir::new("journal-damage-zeros");
        let path = d.join("day.journal");
        // Five records, the last one's payload ending in zeros; the writer
        // killed (its allocated space left after them).
        let (mut w, _) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        for i in 0..4u64 {
            w.append(1, Nanos(i), format!("msg{i}").as_bytes()).unwrap();
        }
        w.append(1, Nanos(4), b"last\0\0\0\0").unwrap();
        w.commit().unwrap();
        let end = w.bytes();
        std::mem::forget(w);
        let mut bytes = std::fs::read(&path).unwrap();
        let at = HEADER_LEN + RECORD_HEADER_LEN + 4;
        bytes[at + RECORD_HEADER_LEN] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let err = check_damage(&path, Position::START).unwrap_err();
        assert!(
            matches!(err, JournalError::Damaged { at: a, .. } if a == at as u64),
            "{err}"
        );
        let (w, report) = JournalWriter::open_from(
            &path,
            Durability::Write,
            4096,
            Position::START,
            OnDamage::Cut,
            |_| {},
        )
        .unwrap();
        assert_eq!(report.records, 1);
        let kept = std::fs::read(w.kept().unwrap()).unwrap();
        // Every record after the damage, whole; then as many of the
        // allocated zeros as a record could end in, no more.
        let records = end as usize - at;
        assert_eq!(kept[..records], bytes[at..end as usize]);
        assert!(kept[records..].iter().all(|&b| b == 0));
        assert_eq!(kept.len(), records - 4 + RECORD_HEADER_LEN + MAX_PAYLOAD);
    }

    #[test]
    fn records_committed_past_several_allocation_steps_read_back_after_a_kill() {
        let d = TempDir::new("journal-grows");
        let path = d.join("day.journal");
        let payload = vec![0xA5u8; 60_000];
        let (mut w, _) = JournalWriter::open(&path, Durability::Write, 1 << 17, |_| {}).unwrap();
        for i in 0..300u64 {
            w.append(3, Nanos(i), &payload).unwrap();
            w.commit().unwrap();
            if i % 7 == 0 {
                w.prepare();
            }
        }
        let end = w.bytes();
        std::mem::forget(w);
        let mut times = Vec::new();
        let report = scan(&path, |r| {
            assert_eq!(r.payload, &payload[..]);
            times.push(r.time.0);
        })
        .unwrap();
        assert_eq!((report.valid_len, report.cut_bytes), (end, 0));
        assert_eq!(times, (0..300).collect::<Vec<_>>());
    }

    // A power loss cannot be staged in a test: these pin down that the
    // directory sync Fsync durability adds works where the journal lives
    // (a directory can be opened and fsynced; a new journal is created).
    #[test]
    fn sync_dir_syncs_a_directory_and_the_current_one_for_an_empty_path() {
        let d = TempDir::new("journal-syncdir");
        sync_dir(&d.join("")).unwrap();
        sync_dir(Path::new("")).unwrap();
        assert!(sync_dir(&d.join("missing")).is_err());
    }

    #[test]
    fn a_new_journal_with_fsync_durability_is_created_and_its_records_read_back() {
        let d = TempDir::new("journal-fsync-new");
        let path = d.join("j");
        let (mut w, report) = JournalWriter::open(&path, Durability::Fsync, 4096, |_| {}).unwrap();
        assert_eq!(report, ScanReport::default());
        assert_eq!(w.bytes(), HEADER_LEN as u64);
        w.append(1, Nanos(5), b"order").unwrap();
        w.commit().unwrap();
        drop(w);
        let (records, report) = read_back(&path);
        assert_eq!(records, vec![(1, 5, b"order".to_vec())]);
        assert_eq!(report.cut_bytes, 0);
    }

    #[test]
    fn durability_none_writes_nothing() {
        let d = TempDir::new("journal-none");
        let path = d.join("j");
        let (mut w, _) = JournalWriter::open(&path, Durability::None, 4096, |_| {}).unwrap();
        w.append(1, Nanos(1), b"x").unwrap();
        w.commit().unwrap();
        assert!(!path.exists());
    }

    #[test]
    fn oversized_record_is_refused() {
        let d = TempDir::new("journal-big");
        let path = d.join("j");
        let (mut w, _) = JournalWriter::open(&path, Durability::Write, 4096, |_| {}).unwrap();
        let big = vec![0u8; MAX_PAYLOAD + 1];
        assert!(matches!(
            w.append(1, Nanos(1), &big),
            Err(JournalError::RecordTooLarge(_))
        ));
    }
}
