//! The market-data archive: every ITCH message of the day on disk, in
//! sequence order, so that retransmission requests older than the
//! publisher's in-memory store are still answered.
//!
//! Owns one file of length-prefixed messages (u16 big-endian length, then
//! the message, as in `itch.bin`) starting at sequence 1, and a sparse
//! in-memory index: the file offset of every 1,024th message and a CRC-32
//! of each 1,024-message stride's bytes ([`ArchiveLayout`]). A stride is
//! served only if its bytes still have that checksum. The exchange copies newly sequenced messages from
//! the publisher's store into it once a millisecond (and after every
//! replayed journal record at start-up), buffering writes; reading flushes
//! first. A full replay rebuilds the file from scratch ([`MdArchive::create`]);
//! a restart from a snapshot keeps it ([`MdArchive::resume`]): the snapshot
//! holds the layout of the archive at its point, the file is cut there and
//! the replayed tail is appended. Once the exchange is live it writes
//! through ([`MdArchive::set_write_through`]: at most one write(2) per
//! sync, so once a millisecond), so a killed exchange leaves every message
//! it synced on disk for the next restart from a snapshot.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::publisher::{Archive, RetransmitStore};

/// Messages between index entries.
const STRIDE: u64 = 1024;
/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 1 << 16;
/// Most bytes held in memory while the file cannot be written (a full
/// disk): past it the archive takes nothing more until a write succeeds,
/// and the messages the store drops meanwhile are `missed`.
const HOLD_AT_MOST: usize = 64 << 20;

/// Where the archive's messages are in its file: what a snapshot keeps so
/// a restart can keep the file instead of rebuilding it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveLayout {
    /// The next sequence number to append.
    pub next: u64,
    /// Bytes of the messages `1 .. next`.
    pub len: u64,
    /// File offset of message `1 + k * STRIDE`.
    pub index: Vec<u64>,
    /// CRC-32 of the bytes of stride `k` (length prefixes included), for
    /// every whole stride.
    pub sums: Vec<u32>,
    /// CRC-32 of the bytes of the stride being filled so far.
    pub open_sum: u32,
}

impl Default for ArchiveLayout {
    fn default() -> Self {
        ArchiveLayout {
            next: 1,
            len: 0,
            index: Vec::new(),
            sums: Vec::new(),
            open_sum: 0,
        }
    }
}

impl ArchiveLayout {
    /// Counts a message of `msg_len` bytes; whether it completed a stride
    /// (its bytes, and any before it in the stride not yet summed, must
    /// be [`ArchiveLayout::sum`]med before the next message is appended).
    #[inline]
    fn append(&mut self, msg_len: usize) -> bool {
        if (self.next - 1).is_multiple_of(STRIDE) {
            self.index.push(self.len);
        }
        self.len += 2 + msg_len as u64;
        self.next += 1;
        (self.next - 1).is_multiple_of(STRIDE)
    }

    /// Adds `bytes` of the open stride to its checksum (continuing the
    /// CRC over calls: sums are computed a sync's run of bytes at a time,
    /// not a message at a time).
    #[inline]
    fn sum(&mut self, bytes: &[u8]) {
        let mut h = crc32fast::Hasher::new_with_initial(self.open_sum);
        h.update(bytes);
        self.open_sum = h.finalize();
    }

    /// The open stride is whole: its checksum is kept, the next starts.
    #[inline]
    fn close_stride(&mut self) {
        self.sums.push(std::mem::take(&mut self.open_sum));
    }

    /// The checksum stride `k` must have: a whole stride's, or the open
    /// one's so far.
    fn sum_of(&self, k: u64) -> Option<u32> {
        match self.sums.get(k as usize) {
            Some(&c) => Some(c),
            None if k == self.sums.len() as u64 => Some(self.open_sum),
            None => None,
        }
    }

    /// Follows the messages the store has sequenced since the last call
    /// without writing them (the snapshot writer, which does not own the
    /// file); the number of messages the store had already dropped, if any.
    pub fn follow(&mut self, store: &RetransmitStore) -> Result<(), u64> {
        if self.next < store.oldest() {
            return Err(store.oldest() - self.next);
        }
        while self.next < store.next_sequence() {
            let Some(m) = store.get(self.next) else {
                break;
            };
            self.sum(&(m.len() as u16).to_be_bytes());
            self.sum(m);
            if self.append(m.len()) {
                self.close_stride();
            }
        }
        Ok(())
    }
}

/// Why an existing archive could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error("market-data archive i/o: {0}")]
    Io(#[from] io::Error),
    #[error("the market-data archive holds {have} bytes, the snapshot needs {need}")]
    Short { have: u64, need: u64 },
    #[error("the market-data archive does not match the snapshot ({0})")]
    Mismatch(&'static str),
}

/// Every message of the day, on disk.
pub struct MdArchive {
    file: File,
    buf: Vec<u8>,
    /// Bytes of whole messages in the file: where `buf` goes. The file may
    /// hold more after a failed write; those bytes are not the archive's.
    on_disk: u64,
    /// Bytes in the file plus bytes buffered (`on_disk + buf.len()`), next
    /// sequence, index.
    layout: ArchiveLayout,
    /// Write what each sync appended at once.
    write_through: bool,
    /// Messages of the day the archive lacks for good: once the store has
    /// dropped one before it was taken here, the archive (one unbroken run
    /// from 1) ends before it, and every later message is missed too.
    pub missed: u64,
    /// Writes to the file that failed (each retried by the next flush).
    pub write_errors: u64,
    /// [`HOLD_AT_MOST`] (a test's is smaller).
    hold_at_most: usize,
}

impl MdArchive {
    /// Creates (or empties) the archive at `path`.
    pub fn create(path: &Path) -> io::Result<MdArchive> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(MdArchive {
            file,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            on_disk: 0,
            layout: ArchiveLayout::default(),
            write_through: false,
            missed: 0,
            write_errors: 0,
            hold_at_most: HOLD_AT_MOST,
        })
    }

    /// Keeps the archive at `path` as far as `layout` (a snapshot's), which
    /// must match it: the file is at least that long and its last index
    /// stride parses to exactly the layout's end. What follows is cut.
    pub fn resume(path: &Path, layout: &ArchiveLayout) -> Result<MdArchive, ArchiveError> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let have = file.metadata()?.len();
        if have < layout.len {
            return Err(ArchiveError::Short {
                have,
                need: layout.len,
            });
        }
        let strides = (layout.next - 1).div_ceil(STRIDE);
        let whole = (layout.next - 1) / STRIDE;
        if layout.index.len() as u64 != strides || layout.sums.len() as u64 != whole {
            return Err(ArchiveError::Mismatch("index length"));
        }
        if let Some(&start) = layout.index.last() {
            // The messages of the last stride must end exactly at `len`.
            let mut chunk = vec![0u8; (layout.len - start) as usize];
            file.read_exact_at(&mut chunk, start)?;
            let want = layout.next - 1 - (strides - 1) * STRIDE;
            let (mut n, mut rest) = (0u64, &chunk[..]);
            while rest.len() >= 2 {
                let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                if len == 0 || rest.len() < 2 + len {
                    return Err(ArchiveError::Mismatch("message lengths"));
                }
                rest = &rest[2 + len..];
                n += 1;
            }
            if n != want || !rest.is_empty() {
                return Err(ArchiveError::Mismatch("message count"));
            }
            if Some(crc32fast::hash(&chunk)) != layout.sum_of(strides - 1) {
                return Err(ArchiveError::Mismatch("checksum"));
            }
        }
        file.set_len(layout.len)?;
        Ok(MdArchive {
            file,
            buf: Vec::with_capacity(FLUSH_AT * 2),
            on_disk: layout.len,
            layout: layout.clone(),
            write_through: false,
            missed: 0,
            write_errors: 0,
            hold_at_most: HOLD_AT_MOST,
        })
    }

    /// Where the messages are (what a snapshot of this point would hold).
    pub fn layout(&self) -> &ArchiveLayout {
        &self.layout
    }

    /// Write what each [`MdArchive::sync`] appended at once (live), or in
    /// 64 KiB blocks (replay).
    pub fn set_write_through(&mut self, on: bool) {
        self.write_through = on;
    }

    /// The last `count` messages as an unbroken run ending at the newest
    /// (fewer when the archive holds fewer, or a stride among them fails
    /// its checksum): the first one's sequence number, and the messages
    /// oldest first. What a restart from a snapshot puts back into the
    /// publisher's store, which numbers them as the messages just before
    /// [`ArchiveLayout::next`]: read a stride at a time from the newest,
    /// and ended by a damaged one, so that no message older than the
    /// damage is returned as if it followed on (it would be served under
    /// a newer message's sequence number).
    pub fn recent(&mut self, count: u64) -> (u64, Vec<Vec<u8>>) {
        let end = self.layout.next;
        let start = end.saturating_sub(count).max(1);
        let mut strides: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut first = end;
        while first > start {
            // From the start of the stride holding message `first - 1`.
            let from = (((first - 2) / STRIDE) * STRIDE + 1).max(start);
            let mut got = Vec::with_capacity((first - from) as usize);
            self.read(from, first - from, &mut |m| got.push(m.to_vec()));
            if got.len() as u64 != first - from {
                break;
            }
            strides.push(got);
            first = from;
        }
        (first, strides.into_iter().rev().flatten().collect())
    }

    /// Appends the messages the store has sequenced since the last call.
    pub fn sync(&mut self, store: &RetransmitStore) -> io::Result<()> {
        let end = store.next_sequence();
        if self.layout.next < store.oldest() {
            // Not called often enough (or the file refused writes for
            // too long): those messages are gone, and the run ends here.
            self.missed = end - self.layout.next;
            return Err(io::Error::other(format!(
                "market-data archive fell behind the store at sequence {}",
                self.layout.next
            )));
        }
        if self.buf.len() >= self.hold_at_most {
            // The file has refused writes for a while: try again, and take
            // nothing more until it succeeds (the store holds the newest
            // messages meanwhile; what it drops first is `missed`).
            self.flush()?;
        }
        // Bytes from `summed` on are not in the open stride's checksum yet.
        let mut summed = self.buf.len();
        while self.layout.next < end {
            let Some(m) = store.get(self.layout.next) else {
                break;
            };
            self.buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(m);
            if self.layout.append(m.len()) {
                self.layout.sum(&self.buf[summed..]);
                self.layout.close_stride();
                summed = self.buf.len();
            }
        }
        self.layout.sum(&self.buf[summed..]);
        if self.buf.len() >= FLUSH_AT || (self.write_through && !self.buf.is_empty()) {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered. On an error (a full disk, say) the buffer
    /// is kept for the next call, which writes it where this one began.
    pub fn flush(&mut self) -> io::Result<()> {
        self.flush_with(|file, bytes, at| file.write_all_at(bytes, at))
    }

    /// As [`MdArchive::flush`], with `write` putting `bytes` at offset `at`
    /// of the file (a test makes it fail partway). A write that failed may
    /// have left part of the buffer in the file: it is cut off, so that the
    /// file matches the layout, and the retry writes at the same offset in
    /// any case (positioned, not at the file's end), so no byte is written
    /// twice even if the cut fails too.
    fn flush_with(
        &mut self,
        write: impl FnOnce(&File, &[u8], u64) -> io::Result<()>,
    ) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if let Err(e) = write(&self.file, &self.buf, self.on_disk) {
            let _ = self.file.set_len(self.on_disk);
            self.write_errors += 1;
            return Err(e);
        }
        self.on_disk += self.buf.len() as u64;
        self.buf.clear();
        debug_assert_eq!(self.on_disk, self.layout.len);
        Ok(())
    }
}

impl std::ops::Drop for MdArchive {
    /// A clean stop leaves every synced message on disk.
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl Archive for MdArchive {
    fn first(&self) -> Option<u64> {
        (self.layout.next > 1).then_some(1)
    }

    /// Serves messages `first ..` (at most `count`) a whole index stride
    /// at a time, each checked before any of it is served: its bytes must
    /// have the stride's CRC-32, and its records (none empty) must end
    /// exactly where the next stride starts and number a stride. Damage
    /// (a zeroed page, a changed byte) ends the answer before the stride,
    /// never wrong bytes under real sequence numbers.
    fn read(&mut self, first: u64, count: u64, out: &mut dyn FnMut(&[u8])) {
        let next = self.layout.next;
        if first == 0 || first >= next || count == 0 || self.flush().is_err() {
            return;
        }
        let last = first.saturating_add(count).min(next);
        let (k0, k1) = ((first - 1) / STRIDE, (last - 2) / STRIDE);
        let offset = |k: u64| -> Option<u64> {
            match self.layout.index.get(k as usize) {
                Some(&o) => Some(o),
                None if k == (next - 1).div_ceil(STRIDE) => Some(self.layout.len),
                None => None,
            }
        };
        let (Some(start), Some(end)) = (offset(k0), offset(k1 + 1)) else {
            return;
        };
        let Some(len) = end.checked_sub(start) else {
            return;
        };
        let mut chunk = vec![0u8; len as usize];
        if self.file.read_exact_at(&mut chunk, start).is_err() {
            return;
        }
        for k in k0..=k1 {
            let (Some(a), Some(b)) = (offset(k), offset(k + 1)) else {
                return;
            };
            let Some(stride) = chunk.get((a - start) as usize..(b - start) as usize) else {
                return;
            };
            if Some(crc32fast::hash(stride)) != self.layout.sum_of(k) {
                return;
            }
            let seq0 = 1 + k * STRIDE;
            let messages = (next - seq0).min(STRIDE);
            let mut records = Vec::with_capacity(messages as usize);
            let mut rest = stride;
            while rest.len() >= 2 {
                let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
                let Some(m) = rest.get(2..2 + n).filter(|_| n > 0) else {
                    return;
                };
                records.push(m);
                rest = &rest[2 + n..];
            }
            if !rest.is_empty() || records.len() as u64 != messages {
                return;
            }
            for (seq, m) in (seq0..).zip(records) {
                if seq >= first && seq < last {
                    out(m);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ContractSet;
    use crate::feed::publisher::Publisher;
    use crate::test_dir::TempDir;
    use crate::wire::moldudp64::{self, Packet};

    fn message(i: u64) -> Vec<u8> {
        // Any bytes do: the archive does not look inside.
        let len = 12 + (i % 30) as usize;
        (0..len).map(|k| (i as usize + k) as u8).collect()
    }

    #[test]
    fn a_zeroed_page_ends_an_answer_before_its_stride_and_no_wrong_message_is_served() {
        let dir = TempDir::new("archive-zeroed");
        let path = dir.join("md");
        let mut archive = MdArchive::create(&path).unwrap();
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        for i in 1..=5000u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        archive.flush().unwrap();
        // Zero one 4 KiB page inside the second stride (messages 1025..2048).
        let at = archive.layout().index[1] + 8_192;
        archive.file.write_all_at(&[0u8; 4096], at).unwrap();
        let mut got = Vec::new();
        archive.read(1, 4_096, &mut |m| got.push(m.to_vec()));
        assert_eq!(got.len(), 1_024, "the first stride, then nothing");
        assert!(got.iter().zip(1..).all(|(m, i)| *m == message(i)));
        // Past the damaged stride the archive serves again.
        let mut later = Vec::new();
        archive.read(2_049, 10, &mut |m| later.push(m.to_vec()));
        assert_eq!(later, (2_049..2_059).map(message).collect::<Vec<_>>());
        let mut none = Vec::new();
        archive.read(1_500, 10, &mut |m| none.push(m.to_vec()));
        assert!(none.is_empty());
    }

    #[test]
    fn a_changed_byte_inside_a_message_ends_the_answer_before_its_stride() {
        let dir = TempDir::new("archive-flipped");
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        for i in 1..=3000u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        archive.flush().unwrap();
        // One bit of a message body in the second stride (not a length:
        // the records still frame exactly).
        let at = archive.layout().index[1] + 2 + 5;
        let mut b = [0u8; 1];
        archive.file.read_exact_at(&mut b, at).unwrap();
        archive.file.write_all_at(&[b[0] ^ 0x10], at).unwrap();
        let mut got = Vec::new();
        archive.read(1, 3000, &mut |m| got.push(m.to_vec()));
        assert_eq!(got, (1..=1024).map(message).collect::<Vec<_>>());
        // The open (third, partial) stride is checked too, and serves.
        let mut tail = Vec::new();
        archive.read(2_049, 3000, &mut |m| tail.push(m.to_vec()));
        assert_eq!(tail, (2_049..=3000).map(message).collect::<Vec<_>>());
        let at = archive.layout().index[2] + 2 + 5;
        archive.file.read_exact_at(&mut b, at).unwrap();
        archive.file.write_all_at(&[b[0] ^ 0x01], at).unwrap();
        let mut none = Vec::new();
        archive.read(2_049, 3000, &mut |m| none.push(m.to_vec()));
        assert!(none.is_empty());
    }

    #[test]
    fn stride_checksums_do_not_depend_on_how_syncs_split_the_messages() {
        let dir = TempDir::new("archive-split");
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        let mut piecewise = MdArchive::create(&dir.join("a")).unwrap();
        for i in 1..=2500u64 {
            p.publish_message(&message(i));
            if i % 7 == 0 || i == 1024 {
                piecewise.sync(p.store()).unwrap();
            }
        }
        piecewise.sync(p.store()).unwrap();
        let mut whole = MdArchive::create(&dir.join("b")).unwrap();
        whole.sync(p.store()).unwrap();
        let mut follower = ArchiveLayout::default();
        follower.follow(p.store()).unwrap();
        assert_eq!(piecewise.layout(), whole.layout());
        assert_eq!(&follower, whole.layout());
        assert_eq!(whole.layout().sums.len(), 2);
        assert_eq!(read_all(&mut piecewise).len(), 2500);
    }

    #[test]
    fn requests_older_than_the_store_are_answered_from_the_archive() {
        let dir = TempDir::new("archive");
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        // A store of 100 messages; 5,000 published, synced every 50.
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 100);
        for i in 1..=5000u64 {
            p.publish_message(&message(i));
            if i % 50 == 0 {
                archive.sync(p.store()).unwrap();
            }
        }
        p.discard_pending();
        let ask = |p: &mut Publisher, a: &mut MdArchive, first: u64, count: u16| {
            let mut req = [0u8; 20];
            moldudp64::Header::new(*b"TOKEX00001", first, count)
                .write(&mut req)
                .unwrap();
            let mut got: Vec<(u64, Vec<u8>)> = Vec::new();
            p.retransmit_from(&req, 4096, a, &mut |b| {
                let pkt = Packet::parse(b).unwrap();
                got.extend(pkt.messages().map(|(s, m)| (s, m.to_vec())));
            });
            got
        };
        // Entirely in the archive, across index strides.
        let got = ask(&mut p, &mut archive, 1000, 2000);
        assert_eq!(got.len(), 2000);
        for (k, (s, m)) in got.iter().enumerate() {
            assert_eq!(*s, 1000 + k as u64);
            assert_eq!(*m, message(*s));
        }
        // Straddling the archive and the store (the store holds 4901..).
        let got = ask(&mut p, &mut archive, 4890, 30);
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            (4890..4920).collect::<Vec<_>>()
        );
        assert!(got.iter().all(|(s, m)| *m == message(*s)));
        // The very first message, and a request past the end.
        assert_eq!(ask(&mut p, &mut archive, 1, 1), vec![(1, message(1))]);
        assert!(ask(&mut p, &mut archive, 5001, 10).is_empty());
        // Without the archive the old part is unanswerable.
        let mut req = [0u8; 20];
        moldudp64::Header::new(*b"TOKEX00001", 10, 5)
            .write(&mut req)
            .unwrap();
        let mut n = 0;
        p.retransmit(&req, 4096, &mut |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn a_resumed_archive_keeps_what_the_layout_covers_cuts_the_rest_and_appends() {
        let dir = TempDir::new("archive-r");
        let path = dir.join("md");
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        let mut archive = MdArchive::create(&path).unwrap();
        for i in 1..=3000u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        // The layout at 3,000 messages (what a snapshot would hold), then
        // messages the snapshot does not cover.
        let layout = archive.layout().clone();
        let mut follower = ArchiveLayout::default();
        follower.follow(p.store()).unwrap();
        assert_eq!(
            follower, layout,
            "the snapshot writer's layout is the archive's"
        );
        for i in 3001..=3100u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        drop(archive);
        let mut kept = MdArchive::resume(&path, &layout).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), layout.len);
        let (first, recent) = kept.recent(5);
        assert_eq!(first, 2996);
        assert_eq!(recent, (2996..=3000).map(message).collect::<Vec<_>>());
        // A publisher resumed at 3,001 with the recent messages appends
        // after them; old requests are answered from the file.
        let mut q = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        q.resume(
            &crate::feed::publisher::PublisherState {
                next_sequence: 3001,
                messages: 3000,
            },
            first,
            &recent,
        )
        .unwrap();
        assert_eq!(q.store().oldest(), 2996);
        q.publish_message(&message(7777));
        kept.sync(q.store()).unwrap();
        let mut got = Vec::new();
        kept.read(1, 3001, &mut |m| got.push(m.to_vec()));
        assert_eq!(got.len(), 3001);
        assert_eq!(got[0], message(1));
        assert_eq!(got[2999], message(3000));
        assert_eq!(got[3000], message(7777));
        drop(kept);
        // An archive shorter than the layout (messages lost) is refused.
        let f = OpenOptions::new().write(true).open(&path).unwrap();
        f.set_len(layout.len - 1).unwrap();
        assert!(matches!(
            MdArchive::resume(&path, &layout),
            Err(ArchiveError::Short { .. })
        ));
        // As is one whose messages do not end where the layout says.
        f.set_len(layout.len + 40).unwrap();
        let mut bigger = layout.clone();
        bigger.len += 40;
        assert!(matches!(
            MdArchive::resume(&path, &bigger),
            Err(ArchiveError::Mismatch(_))
        ));
    }

    #[test]
    fn recent_messages_end_at_a_damaged_stride_and_are_all_newer_than_it() {
        let dir = TempDir::new("archive-recent");
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        for i in 1..=5000u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        archive.flush().unwrap();
        // Undamaged: the last 3,000, across strides.
        assert_eq!(
            archive.recent(3000),
            (2001, (2001..=5000).map(message).collect::<Vec<_>>())
        );
        // One bit of the second stride (messages 1025..=2048) changed:
        // only the run after it, however many were asked for.
        let at = archive.layout().index[1] + 2 + 5;
        let mut b = [0u8; 1];
        archive.file.read_exact_at(&mut b, at).unwrap();
        archive.file.write_all_at(&[b[0] ^ 0x10], at).unwrap();
        for count in [4000, 10_000] {
            assert_eq!(
                archive.recent(count),
                (2049, (2049..=5000).map(message).collect::<Vec<_>>())
            );
        }
        assert_eq!(
            archive.recent(100),
            (4901, (4901..=5000).map(message).collect::<Vec<_>>())
        );
        // The newest stride damaged: nothing to hold.
        let at = archive.layout().index[4] + 2 + 5;
        archive.file.read_exact_at(&mut b, at).unwrap();
        archive.file.write_all_at(&[b[0] ^ 0x10], at).unwrap();
        assert_eq!(archive.recent(100), (5001, Vec::new()));
    }

    /// An archive holding messages 1..=`n` in its buffer, none written.
    fn buffered(dir: &TempDir, n: u64) -> (MdArchive, Publisher) {
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10_000);
        for i in 1..=n {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        assert!(
            !archive.buf.is_empty(),
            "below FLUSH_AT: nothing written yet"
        );
        (archive, p)
    }

    fn read_all(archive: &mut MdArchive) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        archive.read(1, archive.layout().next, &mut |m| got.push(m.to_vec()));
        got
    }

    #[test]
    fn a_write_that_failed_partway_is_not_written_twice_by_the_retry() {
        let dir = TempDir::new("archive-partial");
        let (mut archive, _p) = buffered(&dir, 100);
        // What a write_all that failed partway (ENOSPC) leaves: half the
        // buffer in the file, through the archive's own handle, and the
        // whole buffer still held.
        let half = archive.buf.len() / 2;
        std::io::Write::write_all(&mut archive.file, &archive.buf[..half]).unwrap();
        archive.flush().unwrap();
        assert_eq!(
            read_all(&mut archive),
            (1..=100).map(message).collect::<Vec<_>>()
        );
        assert_eq!(
            std::fs::metadata(dir.join("md")).unwrap().len(),
            archive.layout().len
        );
    }

    #[test]
    fn a_failed_write_is_cut_from_the_file_and_retried_whole() {
        let dir = TempDir::new("archive-enospc");
        let (mut archive, mut p) = buffered(&dir, 100);
        archive.flush().unwrap();
        let good = archive.layout().len;
        for i in 101..=150u64 {
            p.publish_message(&message(i));
        }
        archive.sync(p.store()).unwrap();
        let failed = archive.flush_with(|file, bytes, at| {
            file.write_all_at(&bytes[..bytes.len() / 2], at)?;
            Err(io::Error::from_raw_os_error(28)) // ENOSPC
        });
        assert!(failed.is_err());
        assert_eq!(std::fs::metadata(dir.join("md")).unwrap().len(), good);
        // The space is back: the kept buffer goes where the failed write began.
        archive.flush().unwrap();
        assert_eq!(
            read_all(&mut archive),
            (1..=150).map(message).collect::<Vec<_>>()
        );
        assert_eq!(
            std::fs::metadata(dir.join("md")).unwrap().len(),
            archive.layout().len
        );
    }

    #[test]
    fn an_archive_that_cannot_be_written_is_counted_and_holds_a_bounded_buffer() {
        let dir = TempDir::new("archive-eio");
        let path = dir.join("md");
        let mut archive = MdArchive::create(&path).unwrap();
        archive.set_write_through(true);
        archive.hold_at_most = 4096;
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 1_000);
        // The disk refuses every write (a handle that cannot write).
        let writable = std::mem::replace(&mut archive.file, File::open(&path).unwrap());
        let mut held = 0;
        for i in 1..=800u64 {
            p.publish_message(&message(i));
            let _ = archive.sync(p.store());
            held = held.max(archive.buf.len());
        }
        assert!(archive.write_errors >= 800, "{}", archive.write_errors);
        assert!(held < 4096 + 64, "{held} bytes held");
        // What it took is written once the disk is back; what the store
        // dropped before the archive took it again is counted as missed.
        archive.file = writable;
        archive.flush().unwrap();
        let taken = archive.layout().next - 1;
        assert!(taken < 800, "{taken}");
        let mut got = Vec::new();
        archive.read(1, taken, &mut |m| got.push(m.to_vec()));
        assert_eq!(got, (1..=taken).map(message).collect::<Vec<_>>());
        for i in 801..=2_000u64 {
            p.publish_message(&message(i));
        }
        assert!(archive.sync(p.store()).is_err());
        assert!(archive.missed > 0);
    }

    #[test]
    fn an_archive_that_falls_behind_the_store_says_so() {
        let dir = TempDir::new("archive-b");
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        let mut p = Publisher::new(&ContractSet::shipped(), *b"TOKEX00001", 10);
        for i in 1..=50u64 {
            p.publish_message(&message(i));
        }
        assert!(archive.sync(p.store()).is_err());
        assert_eq!(archive.missed, 50, "40 dropped, and the 10 after them");
        // Counted once: later calls count only what was published since.
        assert!(archive.sync(p.store()).is_err());
        p.publish_message(&message(51));
        assert!(archive.sync(p.store()).is_err());
        assert_eq!(archive.missed, 51);
    }
}
