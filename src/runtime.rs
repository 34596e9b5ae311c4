//! Threads, core pinning, shutdown and the hand-off ring of the pipelined
//! topology.
//!
//! Owns how the exchange's threads are started and stopped: which core each
//! one is pinned to (`core_affinity`), the SCHED_FIFO policy for threads
//! that block and must wake at once (`thread-priority`; the feed handler
//! uses it too), the SIGINT/SIGTERM stop flag, and the
//! bounded SPSC ring (`crossbeam`) between the receive thread and the engine
//! thread, and what the kernel counts against a thread (page faults,
//! context switches) so a report can say whether a pinned core was left
//! alone. It holds no trading logic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use core_affinity::CoreId;
use crossbeam::queue::ArrayQueue;
use crossbeam::utils::CachePadded;

/// A stop flag set by SIGINT or SIGTERM (or by hand), polled by busy loops.
#[derive(Clone, Debug, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn new() -> Stop {
        Stop::default()
    }

    /// A flag that SIGINT and SIGTERM set. A second signal while the flag is
    /// already set ends the process at once (the default action), so a hung
    /// shutdown can still be interrupted.
    pub fn on_signals() -> std::io::Result<Stop> {
        let stop = Stop::new();
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register_conditional_shutdown(sig, 1, Arc::clone(&stop.0))?;
            signal_hook::flag::register(sig, Arc::clone(&stop.0))?;
        }
        Ok(stop)
    }

    #[inline]
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    pub fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Why a thread could not be pinned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("core {core} does not exist here ({})", cores_available(*available))]
    NoSuchCore { core: usize, available: usize },
    #[error("the OS refused to pin this thread to core {0}")]
    Refused(usize),
    #[error("core {0} is the only core this process may run on")]
    OnlyCore(usize),
}

/// Pins the calling thread to `core` (an index into the cores the process
/// may run on).
pub fn pin_current_thread(core: usize) -> Result<(), PinError> {
    let (id, _) = core_id(core)?;
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(PinError::Refused(core))
    }
}

/// The OS's id of core `core` (an index into the cores the process may run
/// on), and all of them.
fn core_id(core: usize) -> Result<(CoreId, Vec<CoreId>), PinError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    match cores.get(core).copied() {
        Some(id) => Ok((id, cores)),
        None => Err(PinError::NoSuchCore {
            core,
            available: cores.len(),
        }),
    }
}

/// Whether `core` (an index, as for [`pin_current_thread`]) is one this
/// process may run on.
pub fn check_core(core: usize) -> Result<(), PinError> {
    core_id(core).map(|_| ())
}

/// The cores a process may run on, `available` of them, in words.
fn cores_available(available: usize) -> String {
    match available {
        0 => "this process may run on no core it can name".into(),
        1 => "the only core available is 0".into(),
        n => format!("the cores available are 0 to {}", n - 1),
    }
}

/// A command-line core number (`--core N`): an index into the cores this
/// process may run on; one that does not exist is refused by the parser,
/// before anything starts, naming the cores there are.
pub fn core_arg(s: &str) -> Result<usize, String> {
    let core: usize = s
        .parse()
        .map_err(|e| format!("{s:?} is not a core number: {e}"))?;
    check_core(core).map_err(|e| e.to_string())?;
    Ok(core)
}

/// Lets the calling thread run on every core the process may run on but
/// `core` (an index, as for [`pin_current_thread`]): for helper threads
/// that must not take a busy-spinning thread's core from it. The
/// scheduler otherwise wakes them there too, and each wake is an
/// involuntary context switch of the spinning thread.
pub fn keep_current_thread_off(core: usize) -> Result<(), PinError> {
    use nix::sched::{sched_setaffinity, CpuSet};
    use nix::unistd::Pid;
    let (avoid, cores) = core_id(core)?;
    if cores.len() < 2 {
        return Err(PinError::OnlyCore(core));
    }
    let mut set = CpuSet::new();
    for c in cores.iter().filter(|c| c.id != avoid.id) {
        set.set(c.id).map_err(|_| PinError::Refused(core))?;
    }
    // Pid 0: the calling thread.
    sched_setaffinity(Pid::from_raw(0), &set).map_err(|_| PinError::Refused(core))
}

/// Why the calling thread could not be given a real-time priority.
#[derive(Debug, thiserror::Error)]
pub enum RealtimeError {
    #[error("SCHED_FIFO priorities run from 1 to 99, not {0}")]
    OutOfRange(u8),
    #[error("the OS refused SCHED_FIFO priority {priority} ({reason:?}; root or CAP_SYS_NICE is needed)")]
    Refused {
        priority: u8,
        reason: thread_priority::Error,
    },
}

/// Puts the calling thread under `SCHED_FIFO` at `priority` (1-99): when it
/// wakes it runs at once, ahead of every normal thread on its core (such as
/// a busy-polling load generator, which would otherwise hold the core for
/// a scheduler slice of milliseconds). Only for threads that block between
/// short bursts of work: a real-time thread that never blocks starves its
/// core (the kernel's RT throttling leaves the others 5 %).
pub fn make_current_thread_realtime(priority: u8) -> Result<(), RealtimeError> {
    use thread_priority::{
        RealtimeThreadSchedulePolicy, ThreadPriority, ThreadPriorityValue, ThreadSchedulePolicy,
    };
    if !(1..=99).contains(&priority) {
        return Err(RealtimeError::OutOfRange(priority));
    }
    let value =
        ThreadPriorityValue::try_from(priority).map_err(|_| RealtimeError::OutOfRange(priority))?;
    thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        ThreadPriority::Crossplatform(value),
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
    .map_err(|reason| RealtimeError::Refused { priority, reason })
}

/// Number of cores this process may run on.
pub fn available_cores() -> usize {
    core_affinity::get_core_ids().map_or(1, |c| c.len())
}

/// Writes `filler` over `v`'s spare capacity and leaves its length as it
/// was: the reserved pages are then resident, so pushes up to the
/// capacity take no page fault. Returns the bytes touched.
pub fn touch_spare_capacity<T: Clone>(v: &mut Vec<T>, filler: T) -> usize {
    let len = v.len();
    let spare = v.capacity() - len;
    v.resize(v.capacity(), filler);
    v.truncate(len);
    spare * std::mem::size_of::<T>()
}

/// What the kernel counted against the calling thread (`getrusage`,
/// `RUSAGE_THREAD`): on a pinned, busy-spinning thread every page fault is
/// a stall in its loop, and every involuntary context switch means
/// something else ran on its core.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadUsage {
    pub minor_faults: u64,
    pub major_faults: u64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

impl ThreadUsage {
    /// The calling thread's counts so far (all zero where the kernel
    /// refuses, which Linux does not).
    pub fn current() -> ThreadUsage {
        use nix::sys::resource::{getrusage, UsageWho};
        let Ok(u) = getrusage(UsageWho::RUSAGE_THREAD) else {
            return ThreadUsage::default();
        };
        let n = |v: std::os::raw::c_long| u64::try_from(v).unwrap_or(0);
        ThreadUsage {
            minor_faults: n(u.minor_page_faults()),
            major_faults: n(u.major_page_faults()),
            voluntary_switches: n(u.voluntary_context_switches()),
            involuntary_switches: n(u.involuntary_context_switches()),
        }
    }

    /// The counts between `earlier` and `self`.
    pub fn since(&self, earlier: &ThreadUsage) -> ThreadUsage {
        ThreadUsage {
            minor_faults: self.minor_faults.saturating_sub(earlier.minor_faults),
            major_faults: self.major_faults.saturating_sub(earlier.major_faults),
            voluntary_switches: self
                .voluntary_switches
                .saturating_sub(earlier.voluntary_switches),
            involuntary_switches: self
                .involuntary_switches
                .saturating_sub(earlier.involuntary_switches),
        }
    }
}

impl std::fmt::Display for ThreadUsage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({} major), {} involuntary and {} voluntary context switches",
            crate::text::plural(
                self.minor_faults + self.major_faults,
                "page fault",
                "page faults"
            ),
            self.major_faults,
            self.involuntary_switches,
            self.voluntary_switches
        )
    }
}

/// A bounded single-producer single-consumer hand-off between two pinned
/// threads. A full ring hands the item back instead of dropping it; the
/// producer decides (the receive thread spins, counting the stall).
pub struct Handoff<T> {
    ring: ArrayQueue<T>,
    /// Times the producer found the ring full (written by the producer only).
    full: CachePadded<AtomicU64>,
}

impl<T> Handoff<T> {
    pub fn with_capacity(capacity: usize) -> Arc<Handoff<T>> {
        Arc::new(Handoff {
            ring: ArrayQueue::new(capacity.max(1)),
            full: CachePadded::new(AtomicU64::new(0)),
        })
    }

    /// Offers one item; `Err(item)` when the ring is full.
    #[inline]
    pub fn push(&self, item: T) -> Result<(), T> {
        self.ring.push(item).inspect_err(|_| {
            self.full.fetch_add(1, Ordering::Relaxed);
        })
    }

    #[inline]
    pub fn pop(&self) -> Option<T> {
        self.ring.pop()
    }

    pub fn len(&self) -> usize {
        self.ring.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// How many pushes found the ring full.
    pub fn full_count(&self) -> u64 {
        self.full.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touching_spare_capacity_keeps_length_and_contents_and_faults_the_pages_in_first() {
        // Page faults taken while filling a fresh 16 MiB vector, in a
        // thread of its own, after touching its spare capacity or not.
        let fill_faults = |touch: bool| {
            std::thread::spawn(move || {
                // The allocator may hand back a block another test's
                // thread freed, already faulted in: an untouched fill that
                // took no faults measured nothing, so it is kept (its
                // block cannot come back) and a fresh one is tried.
                let mut held = Vec::new();
                for _ in 0..8 {
                    let mut v: Vec<u64> = Vec::with_capacity(2 << 20);
                    v.extend([7, 8, 9]);
                    if touch {
                        let bytes = touch_spare_capacity(&mut v, 0);
                        assert_eq!(bytes, ((2 << 20) - 3) * 8);
                        assert_eq!((v.len(), &v[..]), (3, &[7, 8, 9][..]));
                    }
                    let before = ThreadUsage::current();
                    v.resize(v.capacity(), 1);
                    std::hint::black_box(&v);
                    let faults = ThreadUsage::current().since(&before).minor_faults;
                    if touch || faults >= 8 {
                        return faults;
                    }
                    held.push(v);
                }
                0
            })
            .join()
            .unwrap()
        };
        let (untouched, touched) = (fill_faults(false), fill_faults(true));
        // 4,096 pages of 4 KiB, or 8 of 2 MiB where transparent huge pages
        // are always on.
        assert!(untouched >= 8, "{untouched}");
        assert!(touched * 8 <= untouched, "{touched} vs {untouched}");
    }

    #[test]
    fn a_thread_kept_off_a_core_runs_on_every_other_one() {
        let cores = core_affinity::get_core_ids().unwrap_or_default();
        let allowed = std::thread::spawn(move || {
            let r = keep_current_thread_off(0);
            let set = nix::sched::sched_getaffinity(nix::unistd::Pid::from_raw(0)).unwrap();
            (
                r,
                cores
                    .iter()
                    .map(|c| set.is_set(c.id).unwrap())
                    .collect::<Vec<_>>(),
            )
        })
        .join()
        .unwrap();
        match allowed {
            (Ok(()), on) => {
                assert!(!on[0], "{on:?}");
                assert!(on[1..].iter().all(|&b| b), "{on:?}");
            }
            (Err(e), _) => assert_eq!(e, PinError::OnlyCore(0)),
        }
        assert!(matches!(
            keep_current_thread_off(4096),
            Err(PinError::NoSuchCore { core: 4096, .. })
        ));
    }

    #[test]
    fn thread_usage_differences_saturate_and_read_as_a_sentence() {
        let a = ThreadUsage {
            minor_faults: 10,
            major_faults: 1,
            voluntary_switches: 5,
            involuntary_switches: 2,
        };
        let b = ThreadUsage {
            minor_faults: 13,
            major_faults: 1,
            voluntary_switches: 4,
            involuntary_switches: 9,
        };
        let d = b.since(&a);
        assert_eq!(
            d,
            ThreadUsage {
                minor_faults: 3,
                major_faults: 0,
                voluntary_switches: 0,
                involuntary_switches: 7,
            }
        );
        assert_eq!(
            d.to_string(),
            "3 page faults (0 major), 7 involuntary and 0 voluntary context switches"
        );
        let one = ThreadUsage {
            minor_faults: 1,
            ..ThreadUsage::default()
        };
        assert!(
            one.to_string().starts_with("1 page fault (0 major)"),
            "{one}"
        );
    }

    #[test]
    fn realtime_priority_is_sched_fifo_within_1_to_99() {
        assert!(matches!(
            make_current_thread_realtime(0),
            Err(RealtimeError::OutOfRange(0))
        ));
        assert!(matches!(
            make_current_thread_realtime(100),
            Err(RealtimeError::OutOfRange(100))
        ));
        // On a thread of its own (it ends at once), as root like the suite.
        let policy = std::thread::spawn(|| {
            make_current_thread_realtime(1).map(|()| thread_priority::thread_schedule_policy())
        })
        .join()
        .expect("the thread ran");
        assert!(
            matches!(
                policy,
                Ok(Ok(thread_priority::ThreadSchedulePolicy::Realtime(
                    thread_priority::RealtimeThreadSchedulePolicy::Fifo
                )))
            ),
            "{policy:?}"
        );
    }

    #[test]
    fn full_handoff_returns_the_item_and_counts_it() {
        let h = Handoff::with_capacity(2);
        assert!(h.push(1).is_ok());
        assert!(h.push(2).is_ok());
        assert_eq!(h.push(3), Err(3));
        assert_eq!(h.full_count(), 1);
        assert_eq!(h.pop(), Some(1));
        assert!(h.push(3).is_ok());
        assert_eq!((h.pop(), h.pop(), h.pop()), (Some(2), Some(3), None));
    }

    #[test]
    fn handoff_preserves_order_across_threads() {
        let h = Handoff::with_capacity(64);
        let producer = {
            let h = Arc::clone(&h);
            std::thread::spawn(move || {
                for i in 0..100_000u64 {
                    let mut item = i;
                    while let Err(back) = h.push(item) {
                        item = back;
                        std::hint::spin_loop();
                    }
                }
            })
        };
        let mut next = 0u64;
        while next < 100_000 {
            if let Some(v) = h.pop() {
                assert_eq!(v, next);
                next += 1;
            }
        }
        producer.join().unwrap();
    }

    #[test]
    fn pinning_to_a_missing_core_is_an_error() {
        let n = available_cores();
        assert_eq!(
            pin_current_thread(n + 7),
            Err(PinError::NoSuchCore {
                core: n + 7,
                available: n
            })
        );
    }

    #[test]
    fn a_missing_core_is_named_with_the_cores_there_are() {
        let e = PinError::NoSuchCore {
            core: 7,
            available: 2,
        };
        assert_eq!(
            e.to_string(),
            "core 7 does not exist here (the cores available are 0 to 1)"
        );
        let one = PinError::NoSuchCore {
            core: 3,
            available: 1,
        };
        assert_eq!(
            one.to_string(),
            "core 3 does not exist here (the only core available is 0)"
        );
    }

    #[test]
    fn a_core_argument_must_be_a_core_this_process_may_run_on() {
        let n = available_cores();
        assert_eq!(core_arg("0"), Ok(0));
        assert_eq!(core_arg(&(n - 1).to_string()), Ok(n - 1));
        let e = core_arg(&n.to_string()).unwrap_err();
        assert!(e.contains(&format!("core {n} does not exist here")), "{e}");
        assert!(core_arg("one").is_err());
        assert!(core_arg("-1").is_err());
    }

    #[test]
    fn stop_flag_is_shared_between_clones() {
        let a = Stop::new();
        let b = a.clone();
        assert!(!b.is_set());
        a.set();
        assert!(b.is_set());
    }
}
