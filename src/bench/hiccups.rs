//! `tokex bench hiccups`: the platform's own stalls, the floor under every
//! tail figure. A thread pinned to each core reads the clock in a tight
//! loop for a bounded time and records every gap between two consecutive
//! reads (in the manner of jHiccup): with nothing else to do, any gap is
//! time the core was taken away (interrupts, other threads, the hypervisor).

use std::time::{Duration, Instant};

use crate::latency::LatencyHistogram;
use crate::runtime::{check_core, pin_current_thread};
use crate::text::plural;

/// Gaps at least this long are counted as hiccups (a loop iteration takes
/// tens of nanoseconds; a gap of a few microseconds is an interrupt).
pub const HICCUP_NS: u64 = 10_000;

/// What one core saw.
pub struct CoreHiccups {
    pub core: usize,
    /// Gaps of at least [`HICCUP_NS`].
    pub gaps: LatencyHistogram,
    /// Time with the core taken away (sum of those gaps).
    pub lost: Duration,
    /// The longest gaps, with when they started (from the start).
    pub worst: Vec<(Duration, Duration)>,
    pub ran: Duration,
}

/// Measures `cores` (all at once, a pinned thread each) for `seconds`.
/// A core that does not exist is refused before any thread starts (the
/// others would otherwise measure for the whole time first).
pub fn run(cores: &[usize], seconds: f64) -> anyhow::Result<Vec<CoreHiccups>> {
    anyhow::ensure!(
        seconds.is_finite() && seconds > 0.0,
        "--seconds must be a positive number, not {seconds}"
    );
    for &core in cores {
        check_core(core)?;
    }
    let length = Duration::from_secs_f64(seconds.clamp(0.01, 600.0));
    let threads: Vec<_> = cores
        .iter()
        .map(|&core| {
            std::thread::Builder::new()
                .name(format!("tokex-hiccup-{core}"))
                .spawn(move || -> anyhow::Result<CoreHiccups> {
                    pin_current_thread(core)?;
                    Ok(measure(core, length))
                })
        })
        .collect::<Result<_, _>>()?;
    threads
        .into_iter()
        .map(|t| {
            t.join()
                .map_err(|_| anyhow::anyhow!("a hiccup thread panicked"))?
        })
        .collect()
}

/// The loop: bounded by `length`, on the calling thread.
fn measure(core: usize, length: Duration) -> CoreHiccups {
    let mut gaps = LatencyHistogram::new();
    let mut worst: Vec<(Duration, Duration)> = Vec::new();
    let mut lost = Duration::ZERO;
    let start = Instant::now();
    let mut last = start;
    loop {
        let now = Instant::now();
        let gap = now.duration_since(last);
        if gap.as_nanos() >= u128::from(HICCUP_NS) {
            gaps.record(gap.as_nanos() as u64);
            lost += gap;
            note_worst(&mut worst, (gap, last.duration_since(start)));
        }
        last = now;
        if now.duration_since(start) >= length {
            return CoreHiccups {
                core,
                gaps,
                lost,
                worst,
                ran: now.duration_since(start),
            };
        }
    }
}

/// Keeps the five longest gaps, longest first.
fn note_worst(worst: &mut Vec<(Duration, Duration)>, gap: (Duration, Duration)) {
    const KEEP: usize = 5;
    if worst.len() == KEEP && worst[KEEP - 1].0 >= gap.0 {
        return;
    }
    let at = worst.partition_point(|w| w.0 >= gap.0);
    worst.insert(at, gap);
    worst.truncate(KEEP);
}

impl CoreHiccups {
    /// `N gaps >= 1 ms in S s, max M, P % of the time lost`.
    pub fn brief(&self) -> String {
        format!(
            "{} >= 1 ms in {:.1} s, max {}, {:.2} % of the time lost",
            plural(self.count_at_least(1_000_000), "gap", "gaps"),
            self.ran.as_secs_f64(),
            crate::latency::fmt_ns(self.gaps.max()),
            self.lost_pct()
        )
    }

    /// The share of the run the core was taken away, in percent.
    pub fn lost_pct(&self) -> f64 {
        100.0 * self.lost.as_secs_f64() / self.ran.as_secs_f64().max(1e-9)
    }

    /// Gaps of at least `ns`.
    pub fn count_at_least(&self, ns: u64) -> u64 {
        self.gaps
            .inner()
            .iter_recorded()
            .filter(|v| v.value_iterated_to() >= ns)
            .map(|v| v.count_at_value())
            .sum()
    }
}

impl std::fmt::Display for CoreHiccups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "core {}: {} >= {}, {} >= 100 us; {}",
            self.core,
            plural(self.gaps.len(), "gap", "gaps"),
            crate::latency::fmt_ns(HICCUP_NS),
            self.count_at_least(100_000),
            self.brief()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_five_longest_gaps_are_kept_longest_first() {
        let mut w = Vec::new();
        for (i, us) in [5u64, 1, 9, 3, 7, 2, 8, 9].into_iter().enumerate() {
            note_worst(
                &mut w,
                (Duration::from_micros(us), Duration::from_millis(i as u64)),
            );
        }
        let kept: Vec<u64> = w.iter().map(|g| g.0.as_micros() as u64).collect();
        assert_eq!(kept, [9, 9, 8, 7, 5]);
        assert_eq!(
            w[0].1,
            Duration::from_millis(2),
            "the first 9 µs stays first"
        );
    }

    #[test]
    fn a_short_run_ends_on_time_and_counts_only_gaps_over_the_threshold() {
        let r = run(&[0], 0.05).unwrap();
        assert_eq!(r.len(), 1);
        let c = &r[0];
        assert!(c.ran >= Duration::from_millis(50) && c.ran < Duration::from_secs(5));
        assert!(c.gaps.is_empty() || c.gaps.inner().min() >= HICCUP_NS);
        assert_eq!(c.count_at_least(0), c.gaps.len());
        assert!(c.lost <= c.ran);
        assert!(run(&[0], f64::NAN).is_err());
        assert!(run(&[0], 0.0).is_err());
        assert!(run(&[usize::MAX], 0.01).is_err(), "no such core");
    }

    #[test]
    fn a_missing_core_is_refused_before_the_others_are_measured() {
        // Asked for the longest run (600 s): refused at once when the
        // cores are checked first, no clock in the assertion (this test
        // would run for ten minutes if core 0 were measured first).
        let e = run(&[0, 4096], 600.0).err().expect("core 4096 refused");
        assert!(e.to_string().contains("core 4096 does not exist"), "{e}");
    }

    #[test]
    fn one_gap_is_said_in_the_singular() {
        let mut gaps = LatencyHistogram::new();
        gaps.record(2_000_000);
        let c = CoreHiccups {
            core: 1,
            gaps,
            lost: Duration::from_millis(2),
            worst: Vec::new(),
            ran: Duration::from_secs(1),
        };
        let text = c.to_string();
        assert!(text.starts_with("core 1: 1 gap >= "), "{text}");
        assert!(
            c.brief().starts_with("1 gap >= 1 ms in 1.0 s"),
            "{}",
            c.brief()
        );
    }
}
