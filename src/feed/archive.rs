//! The market-data archive: every ITCH message of the day on disk, in
//! sequence order, so that retransmission requests older than the
//! publisher's in-memory store are still answered.
//!
//! Owns one file of length-prefixed messages (u16 big-endian length, then
//! the message, as in `itch.bin`) starting at sequence 1, and a sparse
//! in-memory index: the file offset of every 1,024th message. The exchange
//! copies newly sequenced messages from the publisher's store into it once
//! a millisecond (and after every replayed journal record at start-up, which
//! rebuilds the file from scratch), buffering writes; reading flushes first.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::publisher::{Archive, RetransmitStore};

/// Messages between index entries.
const STRIDE: u64 = 1024;
/// Longest archived message plus its length prefix.
const MAX_RECORD: u64 = 2 + 255;
/// Buffered bytes that trigger a write.
const FLUSH_AT: usize = 1 << 16;

/// Every message of the day, on disk.
pub struct MdArchive {
    file: File,
    buf: Vec<u8>,
    /// Bytes in the file plus bytes buffered.
    len: u64,
    /// The next sequence number to append.
    next: u64,
    /// File offset of message `1 + k * STRIDE`.
    index: Vec<u64>,
    /// Messages the store had already dropped when they were due here.
    pub missed: u64,
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
            len: 0,
            next: 1,
            index: Vec::new(),
            missed: 0,
        })
    }

    /// Appends the messages the store has sequenced since the last call.
    pub fn sync(&mut self, store: &RetransmitStore) -> io::Result<()> {
        let end = store.next_sequence();
        if self.next < store.oldest() {
            // Not called often enough: those messages are gone.
            self.missed += store.oldest() - self.next;
            return Err(io::Error::other(format!(
                "market-data archive fell behind the store at sequence {}",
                self.next
            )));
        }
        while self.next < end {
            let Some(m) = store.get(self.next) else {
                break;
            };
            if (self.next - 1).is_multiple_of(STRIDE) {
                self.index.push(self.len);
            }
            self.buf.extend_from_slice(&(m.len() as u16).to_be_bytes());
            self.buf.extend_from_slice(m);
            self.len += 2 + m.len() as u64;
            self.next += 1;
        }
        if self.buf.len() >= FLUSH_AT {
            self.flush()?;
        }
        Ok(())
    }

    /// Writes what is buffered.
    pub fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }
}

impl Archive for MdArchive {
    fn first(&self) -> Option<u64> {
        (self.next > 1).then_some(1)
    }

    fn read(&mut self, first: u64, count: u64, out: &mut dyn FnMut(&[u8])) {
        if first == 0 || first >= self.next || count == 0 || self.flush().is_err() {
            return;
        }
        let k = (first - 1) / STRIDE;
        let Some(&start) = self.index.get(k as usize) else {
            return;
        };
        let mut seq = 1 + k * STRIDE;
        let last = (first + count).min(self.next);
        // One read covers the index stride before `first` and the messages
        // asked for.
        let want = ((last - seq) * MAX_RECORD).min(self.len - start);
        let mut chunk = vec![0u8; want as usize];
        if self.file.read_exact_at(&mut chunk, start).is_err() {
            return;
        }
        let mut rest = &chunk[..];
        while seq < last && rest.len() >= 2 {
            let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
            let Some(m) = rest.get(2..2 + n) else {
                return;
            };
            if seq >= first {
                out(m);
            }
            rest = &rest[2 + n..];
            seq += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::ContractSet;
    use crate::feed::publisher::Publisher;
    use crate::wire::moldudp64::{self, Packet};
    use std::path::PathBuf;

    fn message(i: u64) -> Vec<u8> {
        // Any bytes do: the archive does not look inside.
        let len = 12 + (i % 30) as usize;
        (0..len).map(|k| (i as usize + k) as u8).collect()
    }

    fn contracts() -> ContractSet {
        ContractSet::load_dir(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("contracts")).unwrap()
    }

    #[test]
    fn requests_older_than_the_store_are_answered_from_the_archive() {
        let dir = std::env::temp_dir().join(format!("tokex-archive-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        // A store of 100 messages; 5,000 published, synced every 50.
        let mut p = Publisher::new(&contracts(), *b"TOKEX00001", 100);
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
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_archive_that_falls_behind_the_store_says_so() {
        let dir = std::env::temp_dir().join(format!("tokex-archive-b-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut archive = MdArchive::create(&dir.join("md")).unwrap();
        let mut p = Publisher::new(&contracts(), *b"TOKEX00001", 10);
        for i in 1..=50u64 {
            p.publish_message(&message(i));
        }
        assert!(archive.sync(p.store()).is_err());
        assert_eq!(archive.missed, 40);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
