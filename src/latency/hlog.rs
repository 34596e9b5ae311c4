//! The `.hlog` interval log (HdrHistogram's interval log format, histograms
//! in its compressed V2 encoding), and the exchange's way of writing it one
//! stage at a time so that its thread is never held for long.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

use hdrhistogram::serialization::interval_log::{IntervalLogWriterBuilder, Tag};
use hdrhistogram::serialization::{Serializer, V2SerializeError, V2Serializer};
use hdrhistogram::{Counter, Histogram};

use super::{LatencyHistogram, Stage, StageHistograms};

/// An HdrHistogram interval log (`.hlog`), written as a run goes.
pub struct IntervalLog {
    out: BufWriter<File>,
    serializer: StoredZlib,
    started: SystemTime,
}

impl IntervalLog {
    /// Creates the file and writes its header; interval start times are
    /// relative to `started` (the log's BaseTime).
    pub fn create(path: &Path, started: SystemTime, comment: &str) -> io::Result<IntervalLog> {
        let mut out = BufWriter::new(File::create(path)?);
        let mut serializer = StoredZlib::new();
        IntervalLogWriterBuilder::new()
            .add_comment(comment)
            .with_start_time(started)
            .with_base_time(started)
            .begin_log_with(&mut out, &mut serializer)?;
        writeln!(
            out,
            "\"StartTimestamp\",\"Interval_Length\",\"Interval_Max\",\"Interval_Compressed_Histogram\""
        )?;
        Ok(IntervalLog {
            out,
            serializer,
            started,
        })
    }

    /// Appends one interval: `hist` recorded from `start` for `length`.
    /// `tag` must not contain spaces, commas or newlines.
    pub fn write(
        &mut self,
        tag: Option<&str>,
        hist: &LatencyHistogram,
        start: SystemTime,
        length: Duration,
    ) -> io::Result<()> {
        let offset = start.duration_since(self.started).unwrap_or_default();
        let tag = tag.and_then(Tag::new);
        let mut w =
            IntervalLogWriterBuilder::new().begin_log_with(&mut self.out, &mut self.serializer)?;
        w.write_histogram(hist.inner(), offset, length, tag)
            .map_err(|e| io::Error::other(e.to_string()))
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The compressed V2 encoding in the layout of hdrhistogram's
/// `V2DeflateSerializer` (cookie, length, zlib stream of the V2 encoding),
/// so every HdrHistogram reader decodes it, but with the zlib stream in
/// stored (uncompressed) blocks. That serializer builds a new zlib
/// compressor at the default level for each histogram: 200-250 µs per
/// histogram on the lab VM, which the exchange's thread paid once a second
/// for each of its five stages (1-1.3 ms in one go, seen as a millisecond
/// tail in the load generator's round trips). Reusing one flate2 compressor
/// is no cure: its reset clears some hundred kilobytes of state, 24 µs with
/// warm caches and 100-150 µs in the middle of a load run, at any level,
/// level 0 included. Stored blocks need no state: a copy and a checksum
/// (the histogram lines of the log are 1.6x longer: a few KB a second).
struct StoredZlib {
    v2: V2Serializer,
    encoded: Vec<u8>,
    out: Vec<u8>,
}

/// HdrHistogram's cookie for a compressed V2 histogram (not exported by the
/// hdrhistogram crate).
const V2_COMPRESSED_COOKIE: u32 = 0x1c84_9304 | 0x10;

impl StoredZlib {
    fn new() -> StoredZlib {
        StoredZlib {
            v2: V2Serializer::new(),
            encoded: Vec::new(),
            out: Vec::new(),
        }
    }
}

/// Appends `data` as a zlib stream (RFC 1950) of stored deflate blocks
/// (RFC 1951, block type 00, at most 65,535 bytes each).
fn zlib_stored(data: &[u8], out: &mut Vec<u8>) {
    // CMF 0x78: deflate with a 32 KiB window; FLG 0x01: no dictionary, the
    // fastest level, and 0x7801 divisible by 31 as the header check asks.
    out.extend_from_slice(&[0x78, 0x01]);
    let mut blocks = data.chunks(usize::from(u16::MAX)).peekable();
    if blocks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(block) = blocks.next() {
        let last = blocks.peek().is_none();
        // Each chunk is at most u16::MAX bytes long.
        let len = block.len() as u16;
        out.push(u8::from(last));
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out.extend_from_slice(&adler2::adler32_slice(data).to_be_bytes());
}

impl Serializer for StoredZlib {
    type SerializeError = V2SerializeError;

    fn serialize<T: Counter, W: Write>(
        &mut self,
        h: &Histogram<T>,
        writer: &mut W,
    ) -> Result<usize, V2SerializeError> {
        self.encoded.clear();
        self.v2.serialize(h, &mut self.encoded)?;
        self.out.clear();
        self.out
            .extend_from_slice(&V2_COMPRESSED_COOKIE.to_be_bytes());
        self.out.extend_from_slice(&[0; 4]);
        zlib_stored(&self.encoded, &mut self.out);
        let len = u32::try_from(self.out.len() - 8).map_err(|_| {
            V2SerializeError::IoError(io::Error::other("a compressed histogram over 4 GiB"))
        })?;
        self.out[4..8].copy_from_slice(&len.to_be_bytes());
        writer.write_all(&self.out)?;
        Ok(self.out.len())
    }
}

/// The exchange's per-stage interval log. At the end of an interval the
/// histograms being recorded are swapped for clean ones in O(1); the closed
/// interval is then written, folded into the run's totals and cleared one
/// stage per [`StageLog::tick`] (the exchange ticks once a millisecond), so
/// its thread is held for one histogram's worth of work at a time.
pub struct StageLog {
    log: IntervalLog,
    /// The closed interval, cleared stage by stage as it is written.
    closed: StageHistograms,
    /// The next stage of `closed` to write (`Stage::ALL.len()` when done).
    next: usize,
    closed_start: SystemTime,
    closed_length: Duration,
    open_start: SystemTime,
    every: Duration,
    total: StageHistograms,
}

impl StageLog {
    /// A log at `path` of intervals of `every`, the first starting now.
    pub fn create(path: &Path, every: Duration, comment: &str) -> io::Result<StageLog> {
        let now = SystemTime::now();
        Ok(StageLog {
            log: IntervalLog::create(path, now, comment)?,
            closed: StageHistograms::default(),
            next: Stage::ALL.len(),
            closed_start: now,
            closed_length: Duration::ZERO,
            open_start: now,
            every: every.max(Duration::from_millis(1)),
            total: StageHistograms::default(),
        })
    }

    /// Called often with the histograms being recorded: closes the interval
    /// when it is `every` old (swapping `open` for clean histograms),
    /// otherwise writes one stage of the closed interval, if any is left.
    pub fn tick(&mut self, open: &mut StageHistograms, now: SystemTime) -> io::Result<()> {
        if now.duration_since(self.open_start).unwrap_or_default() >= self.every {
            self.close(open, now)
        } else {
            self.step()
        }
    }

    /// Closes the last interval, writes everything and flushes the file;
    /// returns the run's totals.
    pub fn finish(
        &mut self,
        open: &mut StageHistograms,
        now: SystemTime,
    ) -> io::Result<&StageHistograms> {
        self.close(open, now)?;
        self.drain()?;
        self.log.flush()?;
        Ok(&self.total)
    }

    fn close(&mut self, open: &mut StageHistograms, now: SystemTime) -> io::Result<()> {
        // What is left of the previous interval first (only when intervals
        // are shorter than a tick per stage).
        self.drain()?;
        std::mem::swap(&mut self.closed, open);
        self.closed_start = self.open_start;
        self.closed_length = now.duration_since(self.open_start).unwrap_or_default();
        self.open_start = now;
        self.next = 0;
        Ok(())
    }

    /// Writes every stage of the closed interval still waiting.
    fn drain(&mut self) -> io::Result<()> {
        while self.next < Stage::ALL.len() {
            self.step()?;
        }
        Ok(())
    }

    /// Writes, totals and clears the next stage of the closed interval.
    fn step(&mut self) -> io::Result<()> {
        let Some(&stage) = Stage::ALL.get(self.next) else {
            return Ok(());
        };
        self.next += 1;
        let h = &mut self.closed.hists[stage as usize];
        if h.is_empty() {
            return Ok(());
        }
        self.log
            .write(Some(stage.name()), h, self.closed_start, self.closed_length)?;
        self.total.hists[stage as usize].add(h);
        h.reset();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hdrhistogram::serialization::interval_log::{IntervalLogIterator, LogEntry};
    use hdrhistogram::serialization::{Deserializer, V2DeflateSerializer};

    use crate::test_dir::TempDir;

    /// (tag, start offset, value count) of every interval of the log.
    fn intervals(path: &Path) -> Vec<(Option<String>, Duration, u64)> {
        let bytes = std::fs::read(path).unwrap();
        IntervalLogIterator::new(&bytes)
            .map(|e| e.unwrap())
            .filter_map(|e| match e {
                LogEntry::Interval(i) => {
                    let raw = base64_decode(i.encoded_histogram());
                    let h: Histogram<u64> = Deserializer::new()
                        .deserialize(&mut raw.as_slice())
                        .unwrap();
                    Some((
                        i.tag().map(|t| t.as_str().to_string()),
                        i.start_timestamp(),
                        h.len(),
                    ))
                }
                _ => None,
            })
            .collect()
    }

    fn base64_decode(s: &str) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(s).unwrap()
    }

    #[test]
    fn interval_log_is_readable_by_hdrhistogram() {
        let dir = TempDir::new("hlog");
        let path = dir.join("t.hlog");
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut log = IntervalLog::create(&path, t0, "tokex test").unwrap();
        let mut h = LatencyHistogram::new();
        h.record(1_500);
        let second = Duration::from_secs(1);
        log.write(Some("end_to_end"), &h, t0 + second, second)
            .unwrap();
        h.record(2_500);
        log.write(None, &h, t0 + 2 * second, second).unwrap();
        log.flush().unwrap();
        assert_eq!(
            intervals(&path),
            [
                (Some("end_to_end".to_string()), second, 1),
                (None, 2 * second, 2)
            ]
        );
    }

    #[test]
    fn stored_zlib_streams_inflate_to_their_input_across_block_boundaries() {
        use std::io::Read;
        for n in [0usize, 1, 65_535, 65_536, 200_000] {
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let mut z = Vec::new();
            zlib_stored(&data, &mut z);
            let mut back = Vec::new();
            flate2::read::ZlibDecoder::new(&z[..])
                .read_to_end(&mut back)
                .unwrap();
            assert_eq!(back, data, "{n} bytes");
        }
    }

    #[test]
    fn stored_zlib_decodes_to_the_same_histogram_as_hdrhistograms_own() {
        let mut h = LatencyHistogram::new();
        let mut x = 1u64;
        for _ in 0..50_000 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            h.record(1_000 + (x >> 44));
        }
        h.record(40_000_000_000);
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        StoredZlib::new().serialize(h.inner(), &mut ours).unwrap();
        V2DeflateSerializer::new()
            .serialize(h.inner(), &mut theirs)
            .unwrap();
        assert_eq!(ours[..4], theirs[..4], "the same cookie");
        let decode =
            |b: &[u8]| -> Histogram<u64> { Deserializer::new().deserialize(&mut &b[..]).unwrap() };
        assert_eq!(decode(&ours), *h.inner());
        assert_eq!(decode(&ours), decode(&theirs));
        // The serializer is reused between histograms.
        let mut again = Vec::new();
        let mut q = StoredZlib::new();
        q.serialize(LatencyHistogram::new().inner(), &mut again)
            .unwrap();
        again.clear();
        q.serialize(h.inner(), &mut again).unwrap();
        assert_eq!(again, ours);
    }

    #[test]
    fn stage_log_writes_a_closed_interval_one_stage_per_tick() {
        let dir = TempDir::new("stagelog");
        let path = dir.join("s.hlog");
        let every = Duration::from_secs(1);
        let mut log = StageLog::create(&path, every, "test").unwrap();
        let t0 = log.open_start;
        let mut open = StageHistograms::default();
        for stage in Stage::ALL {
            open.record(stage, 1_000);
        }
        log.tick(&mut open, t0 + every / 2).unwrap();
        assert_eq!(log.next, Stage::ALL.len(), "nothing closed yet");
        log.tick(&mut open, t0 + every).unwrap();
        assert!(
            Stage::ALL.iter().all(|&s| open.get(s).is_empty()),
            "recording goes on into clean histograms"
        );
        open.record(Stage::EndToEnd, 7_000);
        for written in 1..=Stage::ALL.len() {
            log.tick(&mut open, t0 + every + Duration::from_millis(1))
                .unwrap();
            assert_eq!(log.next, written);
            assert_eq!(log.total.get(Stage::ALL[written - 1]).len(), 1);
        }
        let total = log.finish(&mut open, t0 + 2 * every).unwrap();
        assert_eq!(total.get(Stage::EndToEnd).len(), 2);
        assert_eq!(total.get(Stage::JournalWrite).len(), 1);
        let got = intervals(&path);
        assert_eq!(got.len(), Stage::ALL.len() + 1, "{got:?}");
        assert!(got[..5]
            .iter()
            .all(|(_, start, n)| start.is_zero() && *n == 1));
        assert_eq!(got[5], (Some("end_to_end".to_string()), every, 1));
    }

    #[test]
    fn closing_an_interval_first_writes_what_is_left_of_the_last() {
        let dir = TempDir::new("stagelog-short");
        let path = dir.join("s.hlog");
        let mut log = StageLog::create(&path, Duration::from_millis(1), "test").unwrap();
        let t0 = log.open_start;
        let mut open = StageHistograms::default();
        for i in 1..=3u32 {
            for stage in Stage::ALL {
                open.record(stage, 1_000);
            }
            // Every tick closes an interval: no tick is left to write stages.
            log.tick(&mut open, t0 + Duration::from_millis(u64::from(i)))
                .unwrap();
        }
        let total = log
            .finish(&mut open, t0 + Duration::from_millis(4))
            .unwrap();
        assert!(Stage::ALL.iter().all(|&s| total.get(s).len() == 3));
        assert_eq!(intervals(&path).len(), 3 * Stage::ALL.len());
    }
}
