//! Threads, core pinning, shutdown and the hand-off ring of the pipelined
//! topology.
//!
//! Owns how the exchange's threads are started and stopped: which core each
//! one is pinned to (`core_affinity`), the SCHED_FIFO policy for threads
//! that block and must wake at once (`thread-priority`; the feed handler
//! uses it too), the SIGINT/SIGTERM stop flag, and the
//! bounded SPSC ring (`crossbeam`) between the receive thread and the engine
//! thread. It holds no trading logic.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

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
    #[error("core {core} does not exist (this machine has {available})")]
    NoSuchCore { core: usize, available: usize },
    #[error("the OS refused to pin this thread to core {0}")]
    Refused(usize),
}

/// Pins the calling thread to `core` (an index into the cores the process
/// may run on).
pub fn pin_current_thread(core: usize) -> Result<(), PinError> {
    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let Some(id) = cores.get(core).copied() else {
        return Err(PinError::NoSuchCore {
            core,
            available: cores.len(),
        });
    };
    if core_affinity::set_for_current(id) {
        Ok(())
    } else {
        Err(PinError::Refused(core))
    }
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
    fn stop_flag_is_shared_between_clones() {
        let a = Stop::new();
        let b = a.clone();
        assert!(!b.is_set());
        a.set();
        assert!(b.is_set());
    }
}
