//! What the live and guest stages share across trials: an async runtime for the QEMU
//! sessions, a counting semaphore that bounds QEMU processes across all trial threads,
//! the binary index and the deadlines.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use qconform_qemu::Timeouts;

use crate::binaries::BinaryIndex;

/// A counting semaphore for blocking threads (libtest-mimic runs trials on plain threads).
#[derive(Debug)]
pub struct Slots {
    free: Mutex<usize>,
    cv: Condvar,
    total: usize,
}

/// A held slot; released on drop.
#[derive(Debug)]
pub struct SlotGuard<'a> {
    slots: &'a Slots,
}

impl Slots {
    /// `n` slots (at least one).
    pub fn new(n: usize) -> Slots {
        let n = n.max(1);
        Slots {
            free: Mutex::new(n),
            cv: Condvar::new(),
            total: n,
        }
    }

    /// Number of slots.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Blocks until a slot is free and takes it.
    pub fn acquire(&self) -> SlotGuard<'_> {
        let mut free = self
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        while *free == 0 {
            free = self
                .cv
                .wait(free)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        *free -= 1;
        SlotGuard { slots: self }
    }
}

impl Drop for SlotGuard<'_> {
    fn drop(&mut self) {
        let mut free = self
            .slots
            .free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *free += 1;
        self.slots.cv.notify_one();
    }
}

/// Shared state of the live and guest stages.
#[derive(Debug)]
pub struct Rig {
    /// Runtime the QEMU sessions run on (trial threads `block_on` it).
    pub runtime: tokio::runtime::Runtime,
    /// Bound on concurrent QEMU processes.
    pub slots: Slots,
    /// QEMU binaries by snapshot.
    pub binaries: BinaryIndex,
    /// Guest assets root.
    pub guest_root: Option<PathBuf>,
    /// Deadline of each QMP phase of a live launch, and of the firmware numbering wait.
    pub live_timeout: Duration,
    /// Deadline of a guest boot.
    pub guest_timeout: Duration,
}

impl Rig {
    /// A rig with `slots` concurrent QEMU processes.
    pub fn new(
        slots: usize,
        binaries: BinaryIndex,
        guest_root: Option<PathBuf>,
        live_timeout: Duration,
        guest_timeout: Duration,
    ) -> std::io::Result<Rig> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Rig {
            runtime,
            slots: Slots::new(slots),
            binaries,
            guest_root,
            live_timeout,
            guest_timeout,
        })
    }

    /// QMP deadlines of a live launch: generous, for a loaded two-core machine.
    pub fn timeouts(&self) -> Timeouts {
        Timeouts {
            startup: self.live_timeout,
            command: self.live_timeout,
            shutdown: Duration::from_secs(20),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn test_slots_bound_concurrency() {
        let slots = Arc::new(Slots::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let max = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let (s, n, m) = (Arc::clone(&slots), Arc::clone(&now), Arc::clone(&max));
                std::thread::spawn(move || {
                    let _g = s.acquire();
                    let c = n.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(c, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    n.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for h in handles {
            h.join().expect("thread");
        }
        assert!(max.load(Ordering::SeqCst) <= 2);
        assert_eq!(*slots.free.lock().expect("lock"), 2);
    }
}
