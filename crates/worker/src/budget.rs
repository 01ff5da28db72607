//! The node's memory budget for sandboxes, and the keep-alive policy.
//!
//! Every live sandbox holds a [`Reservation`] of its memory limit (what the kernel lets it
//! use) against the budget; the reservation is returned when the sandbox goes. The worker
//! manager asks [`Budget::try_reserve`] before it makes or grows a sandbox, and evicts
//! least-recently-used idle sandboxes when the budget is full.
//!
//! [`KeepAlive`] decides when an idle sandbox is retired. It is a trait so that a smarter
//! policy (say, one that learns each function's invocation pattern) can replace the fixed
//! idle timeout without touching placement.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Memory limits of live sandboxes against the node's budget.
#[derive(Debug, Clone)]
pub struct Budget {
    used: Arc<AtomicU64>,
    limit: u64,
}

/// Memory reserved for one sandbox, returned when dropped.
#[derive(Debug)]
pub struct Reservation {
    used: Arc<AtomicU64>,
    bytes: u64,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            used: Arc::new(AtomicU64::new(0)),
            limit,
        }
    }

    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Reserve `bytes` if they fit.
    pub fn try_reserve(&self, bytes: u64) -> Option<Reservation> {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .ok()
            .map(|_| Reservation {
                used: self.used.clone(),
                bytes,
            })
    }
}

impl Reservation {
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Grow (or shrink) this reservation to `bytes`, if the budget allows.
    pub fn resize(&mut self, budget: &Budget, bytes: u64) -> bool {
        if bytes <= self.bytes {
            self.used.fetch_sub(self.bytes - bytes, Ordering::AcqRel);
            self.bytes = bytes;
            return true;
        }
        match budget.try_reserve(bytes - self.bytes) {
            Some(extra) => {
                // The extra reservation merges into this one.
                self.bytes += extra.bytes;
                std::mem::forget(extra);
                true
            }
            None => false,
        }
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.used.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// When an idle sandbox should be torn down.
pub trait KeepAlive: Send + Sync + std::fmt::Debug {
    /// `idle_for`: how long the sandbox has had no invocation.
    fn retire(&self, idle_for: Duration) -> bool;
}

/// Retire after a fixed idle time (Lambda keeps environments for minutes).
#[derive(Debug, Clone, Copy)]
pub struct FixedKeepAlive(pub Duration);

impl KeepAlive for FixedKeepAlive {
    fn retire(&self, idle_for: Duration) -> bool {
        idle_for >= self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_are_bounded_and_returned() {
        let budget = Budget::new(100);
        let a = budget.try_reserve(60).unwrap();
        assert!(budget.try_reserve(50).is_none());
        let mut b = budget.try_reserve(40).unwrap();
        assert_eq!(budget.used(), 100);
        assert!(!b.resize(&budget, 41));
        drop(a);
        assert!(b.resize(&budget, 90));
        assert_eq!(budget.used(), 90);
        assert!(b.resize(&budget, 10));
        assert_eq!(budget.used(), 10);
        drop(b);
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn concurrent_reservations_never_exceed_the_limit() {
        let budget = Budget::new(1000);
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let budget = budget.clone();
                std::thread::spawn(move || {
                    let mut held = Vec::new();
                    for _ in 0..1000 {
                        if let Some(r) = budget.try_reserve(7) {
                            assert!(budget.used() <= 1000);
                            held.push(r);
                        }
                        if held.len() > 5 {
                            held.remove(0);
                        }
                    }
                })
            })
            .collect();
        handles.into_iter().for_each(|h| h.join().unwrap());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn fixed_keep_alive() {
        let policy = FixedKeepAlive(Duration::from_secs(600));
        assert!(!policy.retire(Duration::from_secs(599)));
        assert!(policy.retire(Duration::from_secs(600)));
    }
}
