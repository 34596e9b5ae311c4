//! Latency recording and the files it produces.
//!
//! Owns the per-stage HdrHistogram recorders of the exchange and the load
//! generator, and the stable output formats of DESIGN.md: `.hgrm` percentile
//! text, `.hlog` interval logs (V2 compressed format; see `hlog`) and the
//! one-line JSON summary. Recording is allocation-free; the exchange's
//! thread writes its interval log one stage per timer tick.

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

mod hlog;
pub use hlog::{IntervalLog, StageLog};

/// The levels of the summary below the maximum (p50, p90, p99, p99.9,
/// p99.99): every `.hgrm` has a line at each.
pub const SUMMARY_LEVELS: [f64; 5] = [0.5, 0.9, 0.99, 0.999, 0.9999];

/// Highest latency a histogram tracks: 60 s. Larger values are clamped to it.
pub const MAX_TRACKABLE_NS: u64 = 60_000_000_000;

/// A latency histogram in nanoseconds, 3 significant digits, 1 ns .. 60 s.
#[derive(Clone)]
pub struct LatencyHistogram {
    hist: Histogram<u64>,
    /// Values above [`MAX_TRACKABLE_NS`], recorded as it.
    beyond_range: u64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> LatencyHistogram {
        // The bounds are constants that hdrhistogram accepts (low >= 1,
        // high >= 2 * low, sigfig <= 5), so this cannot fail.
        let hist = Histogram::new_with_bounds(1, MAX_TRACKABLE_NS, 3)
            .expect("constant histogram bounds are valid");
        LatencyHistogram {
            hist,
            beyond_range: 0,
        }
    }

    /// Records one value; values outside the trackable range are clamped
    /// (those above it counted, see [`LatencyHistogram::beyond_range`]).
    #[inline]
    pub fn record(&mut self, ns: u64) {
        self.beyond_range += u64::from(ns > MAX_TRACKABLE_NS);
        self.hist.saturating_record(ns.clamp(1, MAX_TRACKABLE_NS));
    }

    /// Values recorded above [`MAX_TRACKABLE_NS`] (each counted as it).
    pub fn beyond_range(&self) -> u64 {
        self.beyond_range
    }

    /// Adds every value of `other` (same bounds, so this cannot fail).
    pub fn add(&mut self, other: &LatencyHistogram) {
        // Identical bounds: `add` only fails when the other histogram tracks
        // values this one cannot, which is impossible here.
        let _ = self.hist.add(&other.hist);
        self.beyond_range += other.beyond_range;
    }

    pub fn reset(&mut self) {
        self.hist.reset();
        self.beyond_range = 0;
    }

    pub fn len(&self) -> u64 {
        self.hist.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hist.is_empty()
    }

    pub fn value_at_percentile(&self, pct: f64) -> u64 {
        self.hist.value_at_percentile(pct)
    }

    pub fn max(&self) -> u64 {
        self.hist.max()
    }

    pub fn inner(&self) -> &Histogram<u64> {
        &self.hist
    }

    /// The summary of DESIGN.md, with `rate` the achieved rate per second.
    pub fn summary(&self, rate: f64) -> Summary {
        let [p50_ns, p90_ns, p99_ns, p999_ns, p9999_ns] =
            SUMMARY_LEVELS.map(|q| self.hist.value_at_quantile(q));
        Summary {
            p50_ns,
            p90_ns,
            p99_ns,
            p999_ns,
            p9999_ns,
            max_ns: self.hist.max(),
            count: self.hist.len(),
            rate,
        }
    }

    /// Writes the HdrHistogram percentile distribution text (`.hgrm`), with
    /// values in microseconds as HdrHistogram's own tools print them.
    ///
    /// HdrHistogram's levels (5 ticks per half distance) never land on
    /// 0.99, 0.999 or 0.9999, so a reader taking the first line at or above
    /// p99 got p99.06 (p99.99 of 40,000 samples was p99.990 23, 54 % higher
    /// on a heavy tail): a line at each of [`SUMMARY_LEVELS`] is added
    /// with the histogram's own value there, the value the summary prints.
    pub fn write_hgrm(&self, mut w: impl Write) -> io::Result<()> {
        const SCALE: f64 = 1000.0; // ns -> us
        writeln!(
            w,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        )?;
        // (level, value, values up to it)
        let mut lines: Vec<(f64, u64, u64)> = Vec::new();
        let mut total = 0u64;
        for v in self.hist.iter_quantiles(5) {
            total += v.count_since_last_iteration();
            lines.push((v.quantile_iterated_to(), v.value_iterated_to(), total));
        }
        if !self.hist.is_empty() {
            for level in SUMMARY_LEVELS {
                let value = self.hist.value_at_quantile(level);
                let line = (level, value, self.hist.count_between(0, value));
                // A level of HdrHistogram's own may be this one give or
                // take a rounding (0.900...01): it is replaced.
                let same = |q: f64| (q - level).abs() < 1e-9;
                let at = lines.partition_point(|&(q, ..)| q < level && !same(q));
                match lines.get_mut(at) {
                    Some(l) if same(l.0) => *l = line,
                    _ => lines.insert(at, line),
                }
            }
        }
        for (q, value, total) in lines {
            let value = value as f64 / SCALE;
            if q < 1.0 {
                writeln!(
                    w,
                    "{value:>12.3} {q:>14.12} {total:>10} {:>14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(w, "{value:>12.3} {q:>14.12} {total:>10}")?;
            }
        }
        writeln!(
            w,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            self.hist.mean() / SCALE,
            self.hist.stdev() / SCALE
        )?;
        writeln!(
            w,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            self.hist.max() as f64 / SCALE,
            self.hist.len()
        )?;
        writeln!(
            w,
            "#[Buckets = {:>12}, SubBuckets     = {:>12}]",
            self.hist.buckets(),
            self.hist.distinct_values()
        )
    }

    /// Writes the `.hgrm` file.
    pub fn save_hgrm(&self, path: &Path) -> io::Result<()> {
        let mut f = BufWriter::new(File::create(path)?);
        self.write_hgrm(&mut f)?;
        f.flush()
    }
}

/// One run's figures: the one-line JSON summary of DESIGN.md
/// (`p50_ns,p99_ns,p999_ns,p9999_ns,max_ns,count,rate`, plus `p90_ns`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub p50_ns: u64,
    pub p90_ns: u64,
    pub p99_ns: u64,
    pub p999_ns: u64,
    pub p9999_ns: u64,
    pub max_ns: u64,
    pub count: u64,
    /// Achieved rate, per second.
    pub rate: f64,
}

impl Summary {
    /// The summary as one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        format!(
            "{{\"p50_ns\":{},\"p90_ns\":{},\"p99_ns\":{},\"p999_ns\":{},\"p9999_ns\":{},\"max_ns\":{},\"count\":{},\"rate\":{:.1}}}",
            self.p50_ns,
            self.p90_ns,
            self.p99_ns,
            self.p999_ns,
            self.p9999_ns,
            self.max_ns,
            self.count,
            self.rate
        )
    }

    /// The header matching [`Summary`]'s `Display` row.
    pub fn table_header() -> String {
        format!(
            "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
            "p50", "p90", "p99", "p99.9", "p99.99", "max", "count", "rate/s"
        )
    }
}

/// Formats nanoseconds for people: `850ns`, `12.3us`, `4.56ms`, `1.20s`.
pub fn fmt_ns(ns: u64) -> String {
    match ns {
        0..=9_999 => format!("{ns}ns"),
        10_000..=9_999_999 => format!("{:.1}us", ns as f64 / 1e3),
        10_000_000..=9_999_999_999 => format!("{:.2}ms", ns as f64 / 1e6),
        _ => format!("{:.2}s", ns as f64 / 1e9),
    }
}

impl fmt::Display for Summary {
    /// One table row matching [`Summary::table_header`]; a rate of 0 (not
    /// measured for this row) shows as `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let rate = if self.rate > 0.0 {
            format!("{:.0}", self.rate)
        } else {
            "-".to_string()
        };
        write!(
            f,
            "{:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
            fmt_ns(self.p50_ns),
            fmt_ns(self.p90_ns),
            fmt_ns(self.p99_ns),
            fmt_ns(self.p999_ns),
            fmt_ns(self.p9999_ns),
            fmt_ns(self.max_ns),
            self.count,
            rate
        )
    }
}

/// Processing stages inside the exchange, each with its own histogram.
/// Decoding is zero-copy and interleaved with the session checks, so it is
/// timed together with matching rather than on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Datagram received -> decoded, session-checked and matched (per datagram).
    RxToMatched,
    /// One journal group write (per batch).
    JournalWrite,
    /// Matched -> acknowledgements handed to the socket (per datagram).
    MatchedToAck,
    /// Market-data packets of a batch handed to the socket (per batch).
    MarketDataOut,
    /// Datagram received -> its acknowledgements sent: the time in the server.
    EndToEnd,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::RxToMatched,
        Stage::JournalWrite,
        Stage::MatchedToAck,
        Stage::MarketDataOut,
        Stage::EndToEnd,
    ];

    /// A stable short name, used as the `.hlog` tag and in file names.
    pub const fn name(self) -> &'static str {
        match self {
            Stage::RxToMatched => "rx_to_matched",
            Stage::JournalWrite => "journal_write",
            Stage::MatchedToAck => "matched_to_ack",
            Stage::MarketDataOut => "market_data_out",
            Stage::EndToEnd => "end_to_end",
        }
    }
}

/// One histogram per [`Stage`].
#[derive(Clone, Default)]
pub struct StageHistograms {
    hists: [LatencyHistogram; 5],
}

impl StageHistograms {
    #[inline]
    pub fn record(&mut self, stage: Stage, ns: u64) {
        self.hists[stage as usize].record(ns);
    }

    pub fn get(&self, stage: Stage) -> &LatencyHistogram {
        &self.hists[stage as usize]
    }

    pub fn add(&mut self, other: &StageHistograms) {
        for (a, b) in self.hists.iter_mut().zip(&other.hists) {
            a.add(b);
        }
    }

    pub fn reset(&mut self) {
        self.hists.iter_mut().for_each(LatencyHistogram::reset);
    }

    /// A table: one row per stage that recorded anything, its rate the
    /// samples over `seconds` (the time served; 0 for no rate).
    pub fn table(&self, seconds: f64) -> String {
        let mut out = format!("{:<20} {}\n", "stage", Summary::table_header());
        for s in Stage::ALL {
            let h = self.get(s);
            if !h.is_empty() {
                let rate = if seconds > 0.0 {
                    h.len() as f64 / seconds
                } else {
                    0.0
                };
                out.push_str(&format!("{:<20} {}\n", s.name(), h.summary(rate)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_reports_percentiles_of_recorded_values() {
        let mut h = LatencyHistogram::new();
        for v in 1..=10_000u64 {
            h.record(v * 100);
        }
        let s = h.summary(123.0);
        assert_eq!(s.count, 10_000);
        // 3 significant digits: within 0.1 %.
        assert!((499_500..=500_500).contains(&s.p50_ns), "{}", s.p50_ns);
        assert!((989_000..=991_000).contains(&s.p99_ns), "{}", s.p99_ns);
        assert!(s.max_ns >= 999_000);
        let json = s.to_json_line();
        assert!(json.starts_with("{\"p50_ns\":"));
        assert!(json.contains("\"count\":10000"));
        assert!(!json.contains('\n'));
    }

    #[test]
    fn values_beyond_the_range_are_clamped_not_lost() {
        let mut h = LatencyHistogram::new();
        h.record(0);
        h.record(u64::MAX);
        h.record(MAX_TRACKABLE_NS);
        assert_eq!(h.len(), 3);
        assert!(h.max() >= MAX_TRACKABLE_NS);
        assert_eq!(
            h.beyond_range(),
            1,
            "counted: only the value above the range"
        );
        let mut sum = LatencyHistogram::new();
        sum.add(&h);
        assert_eq!(sum.beyond_range(), 1);
        sum.reset();
        assert_eq!(sum.beyond_range(), 0);
    }

    #[test]
    fn hgrm_text_ends_with_the_totals_footer() {
        let mut h = LatencyHistogram::new();
        for v in [1_000, 2_000, 3_000, 50_000] {
            h.record(v);
        }
        let mut buf = Vec::new();
        h.write_hgrm(&mut buf).unwrap();
        let text = String::from_utf8(buf).unwrap();
        assert!(text.starts_with("       Value     Percentile TotalCount"));
        assert!(text.contains("Total count    =            4]"), "{text}");
        let last_value_line = text.lines().rfind(|l| !l.starts_with('#')).unwrap();
        assert!(
            last_value_line.contains("1.000000000000"),
            "{last_value_line}"
        );
    }

    #[test]
    fn stage_table_lists_only_stages_with_samples() {
        let mut s = StageHistograms::default();
        s.record(Stage::EndToEnd, 2_000);
        s.record(Stage::EndToEnd, 3_000);
        let t = s.table(0.5);
        assert!(t.contains("end_to_end"));
        assert!(!t.contains("journal_write"));
        let row = t.lines().find(|l| l.starts_with("end_to_end")).unwrap();
        assert!(row.ends_with(" 4"), "two samples in half a second: {row}");
        assert!(s.table(0.0).lines().nth(1).unwrap().ends_with(" -"));
    }

    #[test]
    fn fmt_ns_picks_a_readable_unit() {
        assert_eq!(fmt_ns(850), "850ns");
        assert_eq!(fmt_ns(12_345), "12.3us");
        assert_eq!(fmt_ns(45_600_000), "45.60ms");
    }
}
