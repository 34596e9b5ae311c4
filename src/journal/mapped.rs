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
//! With `src/net/xdp.rs` and `src/net/xdp_prog.rs`, the only place in
//! tokex with `unsafe`: mapping a file, and the ordered stores.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use memmap2::{Advice, MmapMut, MmapOptions};
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
/// What offsets are rounded down to (memmap2 aligns a mapping's offset and
/// an advice's range to the system's page size itself: this only keeps
/// them near it).
const PAGE: u64 = 4096;

/// An open journal file appended to through a shared mapping.
pub struct MappedFile {
    /// Declared before `file`: unmapped before the file is closed.
    map: MmapMut,
    file: File,
    /// The file offset of `map[0]` (a multiple of the page size).
    base: u64,
    /// File offsets `map` covers ([`SPAN`]).
    span: u64,
    /// Where the records end: the next append's offset.
    len: u64,
    /// The file's length: records, then allocated zeros.
    allocated: u64,
    /// Up to where pages past `len` were made writable ahead of time.
    ready: u64,
}

impl MappedFile {
    /// Maps `file`, whose records end at `len`, for appending after them.
    pub fn new(file: File, len: u64) -> io::Result<MappedFile> {
        MappedFile::with_span(file, len, SPAN)
    }

    fn with_span(file: File, len: u64, span: u64) -> io::Result<MappedFile> {
        let base = len / PAGE * PAGE;
        let map = map(&file, base, span)?;
        let mut f = MappedFile {
            map,
            file,
            base,
            span,
            len,
            allocated: len,
            ready: len,
        };
        f.allocate(len + GROW)?;
        f.prepare();
        Ok(f)
    }

    /// Stores `bytes` after the records, in file order.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let end = self.len + bytes.len() as u64;
        if end > self.allocated {
            self.allocate(end + GROW)?;
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
        store_in_order(&mut self.map[at..at + bytes.len()], bytes);
        self.len = end;
        Ok(())
    }

    /// Waits until the bytes from `from` to the end are on the device
    /// (msync), as fdatasync(2) does for a write(2).
    pub fn sync(&self, from: u64) -> io::Result<()> {
        let from = from.max(self.base);
        self.map
            .flush_range((from - self.base) as usize, (self.len - from) as usize)
    }

    /// Work done between batches so that commits find it done: allocates
    /// file space before the allocated zeros run short, and takes the page
    /// faults of the next [`AHEAD`] bytes (`MADV_POPULATE_WRITE`; a kernel
    /// without it leaves them to the commits). Fails quietly: a commit that
    /// needs the space it could not allocate says so.
    pub fn prepare(&mut self) {
        if self.allocated - self.len < GROW / 2 && self.allocate(self.len + GROW).is_err() {
            return;
        }
        if self.len + GROW > self.base + self.span && self.remap().is_err() {
            return;
        }
        if self.ready >= self.len + AHEAD / 2 {
            return;
        }
        let from = self.ready.max(self.len) / PAGE * PAGE;
        let to = (self.len + AHEAD)
            .min(self.allocated)
            .min(self.base + self.span);
        if to > from {
            let populated = self.map.advise_range(
                Advice::PopulateWrite,
                (from - self.base) as usize,
                (to - from) as usize,
            );
            if populated.is_err() {
                // Not supported here (Linux < 5.14): the stores fault instead.
                self.ready = u64::MAX;
                return;
            }
        }
        self.ready = to;
    }

    /// Where the records end.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Maps the file again from the page the records end in.
    fn remap(&mut self) -> io::Result<()> {
        let base = self.len / PAGE * PAGE;
        self.map = map(&self.file, base, self.span)?;
        self.base = base;
        Ok(())
    }

    /// Makes the file at least `to` bytes long, in [`GROW`] steps, with its
    /// blocks allocated where the file system can.
    fn allocate(&mut self, to: u64) -> io::Result<()> {
        let to = to.next_multiple_of(GROW);
        if to <= self.allocated {
            return Ok(());
        }
        let start = self.allocated as i64;
        let more = (to - self.allocated) as i64;
        match fallocate(&self.file, FallocateFlags::empty(), start, more) {
            Ok(()) => {}
            // A file system without fallocate: a sparse extension (a full
            // disk then shows at the store, as SIGBUS).
            Err(nix::errno::Errno::EOPNOTSUPP) => self.file.set_len(to)?,
            Err(e) => return Err(e.into()),
        }
        self.allocated = to;
        Ok(())
    }
}

impl Drop for MappedFile {
    /// Gives back the allocated space after the records: a journal at
    /// rest ends with its last record.
    fn drop(&mut self) {
        let _ = self.file.set_len(self.len);
    }
}

/// Maps `span` bytes of `file` from `base` for reading and writing.
fn map(file: &File, base: u64, span: u64) -> io::Result<MmapMut> {
    // SAFETY: the mapping is shared with the file, and memory-safe as long
    // as no one shortens the file under it (a store past the end would be
    // SIGBUS, not a wrong read). Only this writer changes the file while it
    // is open: the journal's lock (`super::lock`) keeps other exchanges
    // out, and readers (`tokex snapshot`) only read. The writer itself
    // stores only below `allocated`, and shortens the file (`Drop`) only
    // after its last store.
    unsafe {
        MmapOptions::new()
            .offset(base)
            .len(span as usize)
            .map_mut(file)
    }
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

    #[test]
    fn appends_across_mappings_and_allocations_leave_the_bytes_in_order_and_no_more() {
        let d = TempDir::new("mapped-spans");
        let path = d.join("f");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
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
