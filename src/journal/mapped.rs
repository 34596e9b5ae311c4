//! The journal file as the writer sees it: records are stored into a
//! shared memory mapping of the file, where they are in the kernel's page
//! cache, and so survive the process being killed, as soon as the stores
//! retire. A commit makes no system call; it was one write(2) per batch,
//! 1.3 µs of the 6.4 µs an order spent inside the exchange at 10,000
//! orders/s in the lab (2026-12-03, `journal_write` stage, p50).
//!
//! Owns the mapping, the file space allocated ahead of the records, and
//! the rule that keeps a killed commit a torn tail: bytes are stored in
//! file order, so what a kill leaves of a batch is a prefix of it, as a
//! killed write(2) leaves. (`memcpy` stores a short copy's last bytes
//! before its middle ones: a kill between them would leave later records
//! whole after a torn one, which a restart would take for damage.)
//!
//! Space is allocated (`fallocate`) ahead of the records, so a full disk
//! is an error from a commit, not a `SIGBUS` at a store; the allocated
//! space reads as zeros, which [`super::scan`] takes for unused space
//! after the last good record, and which dropping the writer gives back.
//! A killed writer leaves it; the next start cuts it.
//!
//! The work ahead of the records (allocating, and taking the page faults
//! of the pages the next commits will store into) is done either by the
//! writer between batches ([`MappedFile::prepare`]) or by a thread of its
//! own ([`MappedFile::prepare_in_background`]), which the exchange uses:
//! making 64 KiB writable took 110–160 µs of system time in the lab, a
//! stop of the engine thread every 20 ms at 50,000 orders/s.
//!
//! With `src/net/xdp.rs` and `src/net/xdp_prog.rs`, the only place in
//! tokex with `unsafe`: mapping a file, and the ordered stores.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use memmap2::{Advice, MmapOptions, MmapRaw};
use nix::fcntl::{fallocate, FallocateFlags};

/// File offsets one mapping covers: address space only (page tables are
/// built as pages are touched). A journal longer than this is mapped again
/// from where it has got to (between batches, by [`MappedFile::prepare`]).
/// Larger spans would do as well, but valgrind refuses to map 64 GiB.
const SPAN: u64 = 1 << 30;
/// File space allocated at a time.
const GROW: u64 = 4 << 20;
/// Bytes ahead of the records whose pages [`MappedFile::prepare`] makes
/// writable, so that a commit does not take the page fault.
const AHEAD: u64 = 128 << 10;
/// The same for the background thread, which may wait for its core (the
/// load generator's in the lab) for a few milliseconds: 1 MiB is 20 ms of
/// the journal at a million orders a second.
const AHEAD_IN_BACKGROUND: u64 = 1 << 20;
/// How long the background thread sleeps at most: the writer wakes it
/// when its records have used half of what it prepared
/// ([`MappedFile::prepare`]); this only bounds a missed wake-up. (It
/// looked every millisecond until 2026-12-04: a thousand wake-ups a second
/// on the other core, which in the lab is the load generator's.)
const BACKGROUND_AT_LEAST_EVERY: Duration = Duration::from_millis(100);
/// What offsets are rounded down to (memmap2 aligns a mapping's offset and
/// an advice's range to the system's page size itself: this only keeps
/// them near it).
const PAGE: u64 = 4096;

/// An open journal file appended to through a shared mapping.
pub struct MappedFile {
    /// The mapping the writer stores into (the background thread holds it
    /// too while it works on it, so it is unmapped only when both are done
    /// with it).
    map: Arc<MmapRaw>,
    /// The file offset of `map`'s first byte (a multiple of the page size).
    base: u64,
    /// File offsets `map` covers ([`SPAN`]).
    span: u64,
    /// Where the records end: the next append's offset.
    len: u64,
    /// Up to where pages past `len` were made writable ahead of time by
    /// [`MappedFile::prepare`].
    ready: u64,
    ahead: Arc<Ahead>,
    /// The background thread, if one prepares.
    preparer: Option<JoinHandle<()>>,
}

/// What the writer and the background thread share.
struct Ahead {
    file: File,
    /// The file's length: records, then allocated zeros. Stored after the
    /// space is allocated; the writer stores no byte at or past it.
    allocated: AtomicU64,
    /// Serialises allocations (the writer allocates itself when the
    /// background thread has fallen behind).
    allocating: Mutex<()>,
    /// Where the records end, for the background thread.
    len: AtomicU64,
    /// The writer's current mapping and its base, for the background thread.
    map: Mutex<(Arc<MmapRaw>, u64)>,
    /// Up to where the background thread made pages writable (for tests).
    populated: AtomicU64,
    /// Where the records must end for the background thread to have work
    /// again (half its lead used, of pages or of space); `u64::MAX` once
    /// the writer has woken it, until its next turn says again.
    wake_at: AtomicU64,
    /// The background thread's turns (for tests).
    turns: AtomicU64,
    /// Allocations the writer had to make itself (none while the
    /// background thread keeps up).
    late: AtomicU64,
    stop: AtomicBool,
}

impl MappedFile {
    /// Maps `file`, whose records end at `len`, for appending after them.
    pub fn new(file: File, len: u64) -> io::Result<MappedFile> {
        MappedFile::with_span(file, len, SPAN)
    }

    fn with_span(file: File, len: u64, span: u64) -> io::Result<MappedFile> {
        let base = len / PAGE * PAGE;
        let map = Arc::new(map(&file, base, span)?);
        let ahead = Arc::new(Ahead {
            file,
            allocated: AtomicU64::new(len),
            allocating: Mutex::new(()),
            len: AtomicU64::new(len),
            map: Mutex::new((map.clone(), base)),
            populated: AtomicU64::new(len),
            wake_at: AtomicU64::new(0),
            turns: AtomicU64::new(0),
            late: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        ahead.allocate(len + GROW)?;
        let mut f = MappedFile {
            map,
            base,
            span,
            len,
            ready: len,
            ahead,
            preparer: None,
        };
        f.prepare();
        Ok(f)
    }

    /// Stores `bytes` after the records, in file order.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        if end > self.ahead.allocated.load(Ordering::Acquire) {
            if self.preparer.is_some() {
                self.ahead.late.fetch_add(1, Ordering::Relaxed);
            }
            self.ahead.allocate(end + GROW)?;
        }
        if end > self.base + self.span {
            self.remap()?;
            if end > self.base + self.span {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "a batch longer than the journal's mapping",
                ));
            }
        }
        let at = (self.len - self.base) as usize;
        // SAFETY: `at + bytes.len() <= span`, the mapping's length (checked
        // above), and below `allocated`, so inside the file. Nothing else in
        // the process reads or writes these bytes (the background thread
        // only asks the kernel for page tables, which leaves them as they
        // are), and this is the only reference made to them.
        let dst =
            unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(at), bytes.len()) };
        store_in_order(dst, bytes);
        self.len = end;
        self.ahead.len.store(end, Ordering::Relaxed);
        Ok(())
    }

    /// Waits until the bytes from `from` to the end are on the device
    /// (msync), as fdatasync(2) does for a write(2).
    pub fn sync(&self, from: u64) -> io::Result<()> {
        let from = from.max(self.base);
        self.map
            .flush_range((from - self.base) as usize, (self.len - from) as usize)
    }

    /// Work done between batches so that commits find it done: maps the
    /// file again before the records reach the mapping's end, and (unless
    /// the background thread does it) allocates file space before the
    /// allocated zeros run short and takes the page faults of the next
    /// [`AHEAD`] bytes (`MADV_POPULATE_WRITE`; a kernel without it leaves
    /// them to the commits), or wakes the background thread when the
    /// records have used half of what it prepared. Fails quietly: a commit
    /// that needs the space it could not allocate says so.
    pub fn prepare(&mut self) {
        if self.len + GROW > self.base + self.span && self.remap().is_err() {
            return;
        }
        match &self.preparer {
            None => {
                // Called between every batch: when there is work again is
                // not needed.
                self.ahead
                    .prepare(self.len, &self.map, self.base, &mut self.ready, AHEAD);
            }
            Some(preparer) => {
                if self.len >= self.ahead.wake_at.load(Ordering::Relaxed) {
                    self.ahead.wake_at.store(u64::MAX, Ordering::Relaxed);
                    preparer.thread().unpark();
                }
            }
        }
    }

    /// Moves the work [`MappedFile::prepare`] does ahead of the records to
    /// a thread of its own, which first runs `place` (to keep it off a
    /// busy core) and then works when [`MappedFile::prepare`] wakes it;
    /// the thread ends when the file is dropped.
    pub fn prepare_in_background(
        &mut self,
        place: impl FnOnce() + Send + 'static,
    ) -> io::Result<()> {
        if self.preparer.is_some() {
            return Ok(());
        }
        let ahead = self.ahead.clone();
        self.preparer = Some(
            std::thread::Builder::new()
                .name("tokex-journal".into())
                .spawn(move || {
                    place();
                    let mut done = (u64::MAX, 0);
                    while !ahead.stop.load(Ordering::Relaxed) {
                        ahead.background_turn(&mut done);
                        std::thread::park_timeout(BACKGROUND_AT_LEAST_EVERY);
                    }
                })?,
        );
        Ok(())
    }

    /// Where the records end.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Allocations a commit had to make itself because the background
    /// thread had not made them yet.
    pub fn late_allocations(&self) -> u64 {
        self.ahead.late.load(Ordering::Relaxed)
    }

    /// Maps the file again from the page the records end in.
    fn remap(&mut self) -> io::Result<()> {
        let base = self.len / PAGE * PAGE;
        let map = Arc::new(map(&self.ahead.file, base, self.span)?);
        *self
            .ahead
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (map.clone(), base);
        self.map = map;
        self.base = base;
        self.ready = self.len;
        // The background thread's pages were in the old mapping: it takes
        // another turn, after the one it may be in (an unpark is kept until
        // the thread parks), in which it finds the new one.
        if let Some(preparer) = &self.preparer {
            preparer.thread().unpark();
        }
        Ok(())
    }
}

impl Ahead {
    /// Makes the file at least `to` bytes long, in [`GROW`] steps, with its
    /// blocks allocated where the file system can.
    fn allocate(&self, to: u64) -> io::Result<()> {
        let to = to.next_multiple_of(GROW);
        let _one_at_a_time = self
            .allocating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let allocated = self.allocated.load(Ordering::Acquire);
        if to <= allocated {
            return Ok(());
        }
        let (start, more) = (allocated as i64, (to - allocated) as i64);
        match fallocate(&self.file, FallocateFlags::empty(), start, more) {
            Ok(()) => {}
            // A file system without fallocate: a sparse extension (a full
            // disk then shows at the store, as SIGBUS).
            Err(nix::errno::Errno::EOPNOTSUPP) => self.file.set_len(to)?,
            Err(e) => return Err(e.into()),
        }
        self.allocated.store(to, Ordering::Release);
        Ok(())
    }

    /// Space, then page faults, ahead of records that end at `len`, in
    /// `map` (from file offset `base`): allocates before the allocated
    /// zeros run short, and makes the next `ahead` bytes writable once
    /// fewer than half of them are; `ready` is up to where the caller made
    /// them writable in this mapping. Returns where the records must end
    /// for there to be work again: half the lead used, of the pages made
    /// writable (none to make where the kernel cannot, `u64::MAX`) or of
    /// the allocated space. Errors are left to the commits: one that needs
    /// the space that could not be allocated says so.
    fn prepare(&self, len: u64, map: &MmapRaw, base: u64, ready: &mut u64, ahead: u64) -> u64 {
        if self.allocated.load(Ordering::Acquire) - len < GROW / 2
            && self.allocate(len + GROW).is_err()
        {
            return len + 1;
        }
        let allocated = self.allocated.load(Ordering::Acquire);
        if *ready < len + ahead / 2 {
            *ready = populate(map, base, (*ready).max(len), (len + ahead).min(allocated));
        }
        let pages = ready.saturating_sub(ahead / 2);
        let space = allocated.saturating_sub(GROW / 2);
        pages.min(space).max(len + 1)
    }

    /// The background thread's turn, with the writer's current mapping and
    /// where its records end; `done` is that mapping (by its base) and the
    /// offset up to which this thread made its pages writable.
    fn background_turn(&self, done: &mut (u64, u64)) {
        let len = self.len.load(Ordering::Relaxed);
        let (map, base) = self
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if done.0 != base {
            // Pages made writable in an earlier mapping are not in this one.
            *done = (base, base);
        }
        let wake_at = self.prepare(len, &map, base, &mut done.1, AHEAD_IN_BACKGROUND);
        self.populated.store(done.1, Ordering::Relaxed);
        self.wake_at.store(wake_at, Ordering::Relaxed);
        self.turns.fetch_add(1, Ordering::Relaxed);
    }
}

/// Takes the page faults of file offsets `from..to` (within the mapping
/// `map` from file offset `base`) now; returns up to where they are taken
/// (`u64::MAX` where the kernel cannot, Linux < 5.14: the stores fault
/// instead, and nothing more is tried).
fn populate(map: &MmapRaw, base: u64, from: u64, to: u64) -> u64 {
    let from = from / PAGE * PAGE;
    let to = to.min(base + map.len() as u64);
    if to <= from {
        return from;
    }
    match map.advise_range(
        Advice::PopulateWrite,
        (from - base) as usize,
        (to - from) as usize,
    ) {
        Ok(()) => to,
        Err(_) => u64::MAX,
    }
}

impl Drop for MappedFile {
    /// Stops the background thread, then gives back the allocated space
    /// after the records: a journal at rest ends with its last record.
    fn drop(&mut self) {
        if let Some(preparer) = self.preparer.take() {
            self.ahead.stop.store(true, Ordering::Relaxed);
            preparer.thread().unpark();
            let _ = preparer.join();
        }
        let _one_at_a_time = self
            .ahead
            .allocating
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _ = self.ahead.file.set_len(self.len);
    }
}

/// Maps `span` bytes of `file` from `base` for reading and writing.
fn map(file: &File, base: u64, span: u64) -> io::Result<MmapRaw> {
    // A raw mapping: making it is safe; the stores into it (`append`) are
    // memory-safe as long as no one shortens the file under it (a store past the end would be
    // SIGBUS, not a wrong read). Only this writer changes the file while it
    // is open: the journal's lock (`super::lock`) keeps other exchanges
    // out, and readers (`tokex snapshot`) only read. The writer itself
    // stores only below `allocated`, and shortens the file (`Drop`) only
    // after its last store, with the background thread stopped.
    MmapOptions::new()
        .offset(base)
        .len(span as usize)
        .map_raw(file)
}

/// Copies `src` into `dst` with stores in increasing address order (aligned
/// eight-byte words between the unaligned ends), which the compiler may not
/// reorder or merge (volatile): a process killed in the middle has stored a
/// prefix.
fn store_in_order(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len());
    let n = dst.len();
    let p = dst.as_mut_ptr();
    let head = p.align_offset(8).min(n);
    let words = (n - head) / 8;
    for (i, &b) in src[..head].iter().enumerate() {
        // SAFETY: i < head <= n = dst.len(): inside `dst`, which is borrowed
        // mutably for the whole copy.
        unsafe { p.add(i).write_volatile(b) };
    }
    for (w, chunk) in src[head..head + 8 * words].chunks_exact(8).enumerate() {
        let word = u64::from_ne_bytes(chunk.try_into().unwrap_or_default());
        // SAFETY: `head + 8 * w + 8 <= head + 8 * words <= n`: inside
        // `dst`; `p + head` is 8-aligned (`align_offset`), and so is every
        // word after it.
        unsafe { p.add(head).cast::<u64>().add(w).write_volatile(word) };
    }
    for (i, &b) in src.iter().enumerate().skip(head + 8 * words) {
        // SAFETY: i < n = dst.len(): inside `dst`.
        unsafe { p.add(i).write_volatile(b) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_dir::TempDir;

    fn new_file(path: &std::path::Path) -> File {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    /// Waits (10 s at most: this pins down that the thread does the work,
    /// not how fast) until `done` holds.
    fn eventually(what: &str, done: impl Fn() -> bool) {
        let until = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < until, "never: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    #[test]
    fn a_background_thread_allocates_and_makes_pages_writable_ahead_of_the_commits() {
        let d = TempDir::new("mapped-background");
        let path = d.join("f");
        let mut f = MappedFile::new(new_file(&path), 0).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        f.prepare_in_background(move || tx.send(()).unwrap())
            .unwrap();
        rx.recv_timeout(Duration::from_secs(10))
            .expect("the thread runs `place` first");
        let ahead = f.ahead.clone();
        let mut want = Vec::new();
        // 10 MiB in 64 KiB commits, each after the thread has caught up:
        // across two allocation steps, and none of them by a commit.
        for i in 0..160u32 {
            let len = f.len();
            eventually("space and pages ahead", || {
                ahead.allocated.load(Ordering::Acquire) >= len + GROW / 2
                    && ahead.populated.load(Ordering::Relaxed) >= len + AHEAD_IN_BACKGROUND / 2
            });
            let chunk: Vec<u8> = (0..64 << 10).map(|j: u32| (i ^ j) as u8 | 1).collect();
            f.append(&chunk).unwrap();
            want.extend_from_slice(&chunk);
            f.prepare();
        }
        assert_eq!(f.late_allocations(), 0);
        assert!(
            ahead.allocated.load(Ordering::Acquire) >= 12 << 20,
            "two steps past the first"
        );
        drop(f);
        assert_eq!(
            Arc::strong_count(&ahead),
            1,
            "dropping the writer ends the thread"
        );
        assert_eq!(
            std::fs::read(&path).unwrap(),
            want,
            "the records and no more"
        );
    }

    #[test]
    fn the_background_thread_sleeps_until_the_records_have_used_half_its_lead() {
        let d = TempDir::new("mapped-background-sleeps");
        let mut f = MappedFile::new(new_file(&d.join("f")), 0).unwrap();
        f.prepare_in_background(|| {}).unwrap();
        let ahead = f.ahead.clone();
        eventually("the first turn", || {
            ahead.turns.load(Ordering::Relaxed) >= 1
        });
        let asleep = ahead.turns.load(Ordering::Relaxed);
        // Records short of half the lead, and the writer's between-batch
        // call after each: no work for the thread, so no turn (it looked
        // every millisecond before).
        let record = [7u8; 1000];
        while f.len() + record.len() as u64 <= AHEAD_IN_BACKGROUND / 4 {
            f.append(&record).unwrap();
            f.prepare();
            std::thread::sleep(Duration::from_micros(100));
        }
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(ahead.turns.load(Ordering::Relaxed), asleep);
        // Past half the lead, the writer's call wakes it, and it prepares
        // another lead ahead of the records.
        while f.len() < AHEAD_IN_BACKGROUND * 3 / 4 {
            f.append(&record).unwrap();
        }
        f.prepare();
        let len = f.len();
        eventually("woken, a lead ahead again", || {
            ahead.populated.load(Ordering::Relaxed) >= len + AHEAD_IN_BACKGROUND / 2
        });
        assert!(ahead.turns.load(Ordering::Relaxed) > asleep);
    }

    #[test]
    fn commits_outrunning_the_background_thread_across_mappings_leave_the_bytes_in_order() {
        let d = TempDir::new("mapped-background-spans");
        let path = d.join("f");
        let mut f = MappedFile::with_span(new_file(&path), 0, 256 << 10).unwrap();
        f.prepare_in_background(|| {}).unwrap();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let chunk: Vec<u8> = (0..10_000 + i % 7).map(|j| (i ^ j) as u8 | 1).collect();
            f.append(&chunk).unwrap();
            want.extend_from_slice(&chunk);
            f.prepare();
        }
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn appends_across_mappings_and_allocations_leave_the_bytes_in_order_and_no_more() {
        let d = TempDir::new("mapped-spans");
        let path = d.join("f");
        let file = new_file(&path);
        // A 256 KiB mapping: the 10 MB below is mapped again ~40 times and
        // allocated in three steps, by appends and by `prepare`.
        let mut f = MappedFile::with_span(file, 0, 256 << 10).unwrap();
        let mut want = Vec::new();
        for i in 0..1000u32 {
            let chunk: Vec<u8> = (0..10_000 + i % 7).map(|j| (i ^ j) as u8 | 1).collect();
            f.append(&chunk).unwrap();
            want.extend_from_slice(&chunk);
            if i % 3 == 0 {
                f.prepare();
            }
        }
        assert_eq!(f.len(), want.len() as u64);
        assert!(
            std::fs::metadata(&path).unwrap().len() > f.len(),
            "allocated ahead"
        );
        let too_long = vec![1u8; 300 << 10];
        assert!(
            f.append(&too_long).is_err(),
            "longer than a mapping: refused"
        );
        assert_eq!(f.len(), want.len() as u64);
        drop(f);
        assert_eq!(std::fs::read(&path).unwrap(), want);
    }

    #[test]
    fn stores_in_order_copy_every_length_at_every_alignment() {
        let src: Vec<u8> = (0..100u8).map(|i| i.wrapping_mul(37) | 1).collect();
        for offset in 0..8 {
            for len in 0..src.len() - 8 {
                let mut dst = [0u8; 120];
                store_in_order(&mut dst[offset..offset + len], &src[..len]);
                assert_eq!(&dst[offset..offset + len], &src[..len]);
                assert!(dst[..offset].iter().all(|&b| b == 0));
                assert!(dst[offset + len..].iter().all(|&b| b == 0));
            }
        }
    }
}
