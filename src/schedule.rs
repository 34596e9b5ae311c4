//! Trading schedules: which phase a contract is in at each time of day.
//!
//! Owns the schedule syntax of the contract files (`schedule = ["08:55
//! auction", "09:00 open", ...]`, times of day with the phase that starts
//! then) and the lookups the engine makes on its simulated clock: the
//! phase at a time, and when the next change is due. A schedule is a cycle
//! over the day: before the first entry the last entry's phase holds (so a
//! night session that closes at 23:00 stays closed until the next morning).
//! Pure data; no clock reads.

use std::fmt;

use crate::engine::Phase;
use crate::types::{Nanos, NANOS_PER_DAY};

/// Why a schedule entry is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScheduleError {
    /// Not `HH:MM[:SS] phase`.
    Syntax(String),
    /// A time outside 00:00:00..24:00:00.
    Time(String),
    /// A phase name other than preopen, auction, open, break, halt, close.
    Phase(String),
    /// Entries out of time order or at the same time.
    Order(String),
}

impl fmt::Display for ScheduleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScheduleError::Syntax(e) => write!(f, "{e:?} is not \"HH:MM[:SS] phase\""),
            ScheduleError::Time(e) => write!(f, "{e:?} is not a time of day"),
            ScheduleError::Phase(e) => write!(
                f,
                "{e:?} is not a phase (preopen, auction, open, break, halt, close)"
            ),
            ScheduleError::Order(e) => write!(f, "{e:?} is not later than the entry before it"),
        }
    }
}

impl std::error::Error for ScheduleError {}

/// A day's phase changes, in time order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Schedule {
    /// (ns since midnight, phase that starts then), strictly increasing.
    entries: Vec<(u64, Phase)>,
}

const NS_PER_SEC: u64 = 1_000_000_000;

/// Parses `HH:MM` or `HH:MM:SS` into ns since midnight.
pub fn parse_time_of_day(s: &str) -> Option<u64> {
    let field = |p: &str, max: u64| -> Option<u64> {
        if p.len() != 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let v: u64 = p.parse().ok()?;
        (v < max).then_some(v)
    };
    let parts: Vec<&str> = s.split(':').collect();
    let (h, m, sec) = match parts.as_slice() {
        [h, m] => (field(h, 24)?, field(m, 60)?, 0),
        [h, m, sec] => (field(h, 24)?, field(m, 60)?, field(sec, 60)?),
        _ => return None,
    };
    Some(((h * 60 + m) * 60 + sec) * NS_PER_SEC)
}

impl Schedule {
    /// Parses entries such as `"08:55 auction"`, which must be in strictly
    /// increasing time order.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Schedule, ScheduleError> {
        let mut out: Vec<(u64, Phase)> = Vec::with_capacity(entries.len());
        for e in entries {
            let e = e.as_ref();
            let (time, phase) = e
                .trim()
                .split_once(char::is_whitespace)
                .ok_or_else(|| ScheduleError::Syntax(e.to_string()))?;
            let at = parse_time_of_day(time).ok_or_else(|| ScheduleError::Time(e.to_string()))?;
            let phase =
                Phase::parse(phase.trim()).ok_or_else(|| ScheduleError::Phase(e.to_string()))?;
            if out.last().is_some_and(|&(prev, _)| prev >= at) {
                return Err(ScheduleError::Order(e.to_string()));
            }
            out.push((at, phase));
        }
        Ok(Schedule { entries: out })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries: (ns since midnight, phase).
    pub fn entries(&self) -> &[(u64, Phase)] {
        &self.entries
    }

    /// The phase in force at `now` (its time of day), or `None` for an
    /// empty schedule.
    pub fn phase_at(&self, now: Nanos) -> Option<Phase> {
        let tod = now.since_midnight();
        let i = self.entries.partition_point(|&(at, _)| at <= tod);
        let (_, phase) = if i == 0 {
            *self.entries.last()?
        } else {
            self.entries[i - 1]
        };
        Some(phase)
    }

    /// The next change strictly after `now`: its absolute time (same epoch
    /// as `now`) and phase.
    pub fn next_after(&self, now: Nanos) -> Option<(Nanos, Phase)> {
        let tod = now.since_midnight();
        let midnight = now.0 - tod;
        let i = self.entries.partition_point(|&(at, _)| at <= tod);
        Some(match self.entries.get(i) {
            Some(&(at, phase)) => (Nanos(midnight + at), phase),
            None => {
                let &(at, phase) = self.entries.first()?;
                (Nanos(midnight + NANOS_PER_DAY + at), phase)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: u64 = 3_600 * NS_PER_SEC;
    const M: u64 = 60 * NS_PER_SEC;

    fn tk() -> Schedule {
        Schedule::parse(&[
            "08:55 auction",
            "09:00 open",
            "10:15 break",
            "10:30 open",
            "15:00 close",
            "21:00 open",
            "23:00 close",
        ])
        .unwrap()
    }

    #[test]
    fn phase_at_follows_the_entries_and_wraps_over_midnight() {
        let s = tk();
        let day = 5 * NANOS_PER_DAY;
        assert_eq!(s.phase_at(Nanos(day + 8 * H)), Some(Phase::Closed));
        assert_eq!(
            s.phase_at(Nanos(day + 8 * H + 55 * M)),
            Some(Phase::Auction)
        );
        assert_eq!(s.phase_at(Nanos(day + 9 * H - 1)), Some(Phase::Auction));
        assert_eq!(s.phase_at(Nanos(day + 9 * H)), Some(Phase::Open));
        assert_eq!(s.phase_at(Nanos(day + 10 * H + 20 * M)), Some(Phase::Break));
        assert_eq!(s.phase_at(Nanos(day + 22 * H)), Some(Phase::Open));
        assert_eq!(
            s.phase_at(Nanos(day + 23 * H + 30 * M)),
            Some(Phase::Closed)
        );
    }

    #[test]
    fn next_change_is_strictly_later_and_wraps_to_tomorrow() {
        let s = tk();
        let day = 2 * NANOS_PER_DAY;
        assert_eq!(
            s.next_after(Nanos(day + 9 * H)),
            Some((Nanos(day + 10 * H + 15 * M), Phase::Break))
        );
        assert_eq!(
            s.next_after(Nanos(day + 23 * H)),
            Some((Nanos(day + NANOS_PER_DAY + 8 * H + 55 * M), Phase::Auction))
        );
        assert_eq!(Schedule::default().next_after(Nanos(0)), None);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        assert!(matches!(
            Schedule::parse(&["0855 auction"]),
            Err(ScheduleError::Time(_))
        ));
        assert!(matches!(
            Schedule::parse(&["08:55"]),
            Err(ScheduleError::Syntax(_))
        ));
        assert!(matches!(
            Schedule::parse(&["08:55 lunch"]),
            Err(ScheduleError::Phase(_))
        ));
        assert!(matches!(
            Schedule::parse(&["09:00 open", "08:55 auction"]),
            Err(ScheduleError::Order(_))
        ));
        assert!(matches!(
            Schedule::parse(&["24:00 open"]),
            Err(ScheduleError::Time(_))
        ));
        assert_eq!(
            parse_time_of_day("09:30:15"),
            Some((9 * 3600 + 30 * 60 + 15) * NS_PER_SEC)
        );
    }
}
