//! Concurrency limits: per-function reserved concurrency and the account-wide limit, as
//! Lambda enforces them on synchronous invocations.
//!
//! Every account has `account_limit` concurrent executions. A function with reserved
//! concurrency `R` runs at most `R` invocations at once and never competes with the rest
//! of its account (`R = 0` disables it); every other function of the account shares the
//! *unreserved pool*: `account_limit − Σ reservations` executions. An invocation over
//! its limit is throttled ([`Throttle`]); one under it gets a [`Permit`] that frees its
//! slot when dropped — when the invocation returns, fails, panics, or its request is
//! cancelled because the client went away.
//!
//! In memory and per node. The reservations themselves are durable in the store; the
//! frontend loads them at start and mirrors every change here ([`ConcurrencyLimiter::reserve`],
//! [`ConcurrencyLimiter::unreserve`]). An acquire is a read lock, two hash lookups and one
//! compare-and-swap; a release is one atomic decrement, with no lock at all.
//!
//! When a reservation changes under running invocations, each of them still releases the
//! slot it took (its permit holds that counter), so nothing leaks: a function that just got
//! a reservation may briefly run its old unreserved invocations beside `R` new ones.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, RwLock};

/// Lambda's default account concurrency limit.
pub const DEFAULT_ACCOUNT_LIMIT: u32 = 1000;
/// Lambda keeps this many executions of an account unreserved.
pub const MIN_UNRESERVED: u32 = 100;

/// Why an invocation was throttled: Lambda's `TooManyRequestsException` `Reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttle {
    /// The function's reserved concurrency is in use (or is 0).
    ReservedFunction,
    /// The account's unreserved pool is in use.
    Account,
}

impl Throttle {
    /// The `Reason` member of `TooManyRequestsException`.
    pub fn reason(self) -> &'static str {
        match self {
            Throttle::ReservedFunction => "ReservedFunctionConcurrentInvocationLimitExceeded",
            Throttle::Account => "ConcurrentInvocationLimitExceeded",
        }
    }
}

impl std::fmt::Display for Throttle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for Throttle {}

/// Executions in flight against one limit.
#[derive(Debug)]
struct Slots {
    limit: AtomicU32,
    in_flight: AtomicU32,
    /// Signalled whenever a slot is freed (for [`ConcurrencyLimiter::acquire`]).
    freed: tokio::sync::Notify,
}

impl Slots {
    fn new(limit: u32) -> Arc<Slots> {
        Arc::new(Slots {
            limit: AtomicU32::new(limit),
            in_flight: AtomicU32::new(0),
            freed: tokio::sync::Notify::new(),
        })
    }

    /// Take a slot if one is free. Exact: never over the limit, even under contention.
    fn try_take(&self) -> bool {
        let limit = self.limit.load(Ordering::Acquire);
        self.in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

#[derive(Debug)]
struct Account {
    /// The unreserved pool; its limit is `account_limit − reserved_total`.
    unreserved: Arc<Slots>,
    reserved_total: u64,
    /// Functions with reserved concurrency, by name.
    reserved: HashMap<String, Arc<Slots>>,
}

impl Account {
    fn new(account_limit: u32) -> Account {
        Account {
            unreserved: Slots::new(account_limit),
            reserved_total: 0,
            reserved: HashMap::new(),
        }
    }

    fn update_unreserved(&mut self, account_limit: u32) {
        let left = u64::from(account_limit).saturating_sub(self.reserved_total);
        self.unreserved
            .limit
            .store(u32::try_from(left).unwrap_or(0), Ordering::Release);
    }
}

/// A taken execution slot. Dropping it frees the slot.
#[derive(Debug)]
#[must_use = "the slot is freed as soon as the permit is dropped"]
pub struct Permit {
    slots: Arc<Slots>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.slots.in_flight.fetch_sub(1, Ordering::AcqRel);
        self.slots.freed.notify_waiters();
    }
}

/// The concurrency limits of every account on this node. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct ConcurrencyLimiter {
    account_limit: u32,
    accounts: RwLock<HashMap<String, Account>>,
}

impl ConcurrencyLimiter {
    /// A limiter where every account may run `account_limit` executions at once.
    pub fn new(account_limit: u32) -> ConcurrencyLimiter {
        ConcurrencyLimiter {
            account_limit,
            accounts: RwLock::new(HashMap::new()),
        }
    }

    pub fn account_limit(&self) -> u32 {
        self.account_limit
    }

    /// The most an account may reserve in total (`account_limit` minus the executions
    /// kept unreserved: 100, or the whole limit when it is smaller than that).
    pub fn max_reserved_total(&self) -> u64 {
        u64::from(self.account_limit - self.account_limit.min(MIN_UNRESERVED))
    }

    /// The unreserved minimum an account keeps (what validation messages quote).
    pub fn min_unreserved(&self) -> u32 {
        self.account_limit.min(MIN_UNRESERVED)
    }

    /// Take an execution slot for one invocation of `function` in `account_id`.
    pub fn try_acquire(&self, account_id: &str, function: &str) -> Result<Permit, Throttle> {
        {
            let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
            if let Some(account) = accounts.get(account_id) {
                return Self::take(account, function);
            }
        }
        // The account's first invocation on this node.
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let account = accounts
            .entry(account_id.to_owned())
            .or_insert_with(|| Account::new(self.account_limit));
        Self::take(account, function)
    }

    /// Wait for an execution slot for `function` in `account_id` (event source pollers:
    /// capacity first, then messages). Woken when a slot of the limit it waits on is freed;
    /// a reservation change is noticed within a second.
    pub async fn acquire(&self, account_id: &str, function: &str) -> Permit {
        loop {
            let slots = self.slots_of(account_id, function);
            {
                let freed = slots.freed.notified();
                tokio::pin!(freed);
                freed.as_mut().enable();
                if !slots.try_take() {
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), freed).await;
                    continue;
                }
            }
            return Permit { slots };
        }
    }

    /// Wait until `function` could take a slot, without taking one: an event source
    /// poller waits here before it long-polls, so an idle queue holds no slot that a
    /// synchronous invocation could use, and then takes its permit with [`Self::acquire`].
    pub async fn wait_available(&self, account_id: &str, function: &str) {
        loop {
            let slots = self.slots_of(account_id, function);
            let freed = slots.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if slots.in_flight.load(Ordering::Acquire) < slots.limit.load(Ordering::Acquire) {
                return;
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), freed).await;
        }
    }

    /// The limit `function` runs under: its reservation, else the account's pool.
    fn slots_of(&self, account_id: &str, function: &str) -> Arc<Slots> {
        {
            let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
            if let Some(account) = accounts.get(account_id) {
                return account
                    .reserved
                    .get(function)
                    .unwrap_or(&account.unreserved)
                    .clone();
            }
        }
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let account = accounts
            .entry(account_id.to_owned())
            .or_insert_with(|| Account::new(self.account_limit));
        account
            .reserved
            .get(function)
            .unwrap_or(&account.unreserved)
            .clone()
    }

    fn take(account: &Account, function: &str) -> Result<Permit, Throttle> {
        let (slots, throttle) = match account.reserved.get(function) {
            Some(slots) => (slots, Throttle::ReservedFunction),
            None => (&account.unreserved, Throttle::Account),
        };
        if slots.try_take() {
            Ok(Permit {
                slots: slots.clone(),
            })
        } else {
            Err(throttle)
        }
    }

    /// Set `function`'s reserved concurrency (validation is the caller's: the store
    /// checks the account total atomically with the write).
    pub fn reserve(&self, account_id: &str, function: &str, reserved: u32) {
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let account = accounts
            .entry(account_id.to_owned())
            .or_insert_with(|| Account::new(self.account_limit));
        match account.reserved.get(function) {
            Some(slots) => {
                let old = slots.limit.swap(reserved, Ordering::AcqRel);
                account.reserved_total -= u64::from(old);
            }
            None => {
                account
                    .reserved
                    .insert(function.to_owned(), Slots::new(reserved));
            }
        }
        account.reserved_total += u64::from(reserved);
        account.update_unreserved(self.account_limit);
    }

    /// Remove `function`'s reservation (DeleteFunctionConcurrency, or the function was
    /// deleted): it joins the unreserved pool. Invocations still running keep their slot
    /// until they end.
    pub fn unreserve(&self, account_id: &str, function: &str) {
        let mut accounts = self.accounts.write().unwrap_or_else(|p| p.into_inner());
        let Some(account) = accounts.get_mut(account_id) else {
            return;
        };
        if let Some(slots) = account.reserved.remove(function) {
            account.reserved_total -= u64::from(slots.limit.load(Ordering::Acquire));
            account.update_unreserved(self.account_limit);
        }
    }

    /// `function`'s reserved concurrency, if it has one.
    pub fn reserved(&self, account_id: &str, function: &str) -> Option<u32> {
        let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
        accounts
            .get(account_id)?
            .reserved
            .get(function)
            .map(|s| s.limit.load(Ordering::Acquire))
    }

    /// The account's unreserved pool size: `account_limit − Σ reservations`.
    pub fn unreserved_limit(&self, account_id: &str) -> u32 {
        let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
        accounts.get(account_id).map_or(self.account_limit, |a| {
            a.unreserved.limit.load(Ordering::Acquire)
        })
    }

    /// Executions in flight in `account_id`: (unreserved pool, reserved functions).
    pub fn in_flight(&self, account_id: &str) -> (u32, u32) {
        let accounts = self.accounts.read().unwrap_or_else(|p| p.into_inner());
        accounts.get(account_id).map_or((0, 0), |a| {
            (
                a.unreserved.in_flight.load(Ordering::Acquire),
                a.reserved
                    .values()
                    .map(|s| s.in_flight.load(Ordering::Acquire))
                    .sum(),
            )
        })
    }
}

impl Default for ConcurrencyLimiter {
    fn default() -> Self {
        ConcurrencyLimiter::new(DEFAULT_ACCOUNT_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "111111111111";
    const B: &str = "222222222222";

    fn take_all(l: &ConcurrencyLimiter, account: &str, f: &str) -> Vec<Permit> {
        std::iter::from_fn(|| l.try_acquire(account, f).ok()).collect()
    }

    #[test]
    fn reserved_concurrency_caps_a_function() {
        let l = ConcurrencyLimiter::new(1000);
        l.reserve(A, "f", 3);
        let held = take_all(&l, A, "f");
        assert_eq!(held.len(), 3);
        assert_eq!(
            l.try_acquire(A, "f").unwrap_err(),
            Throttle::ReservedFunction
        );
        // Other functions and other accounts are not affected.
        assert!(l.try_acquire(A, "g").is_ok());
        assert!(l.try_acquire(B, "f").is_ok());
        drop(held);
        assert_eq!(take_all(&l, A, "f").len(), 3);
    }

    #[tokio::test]
    async fn acquire_waits_for_a_freed_slot() {
        let l = Arc::new(ConcurrencyLimiter::new(1000));
        l.reserve(A, "f", 1);
        let held = l.acquire(A, "f").await;
        let waiter = tokio::spawn({
            let l = l.clone();
            async move { l.acquire(A, "f").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        drop(held);
        let second = tokio::time::timeout(std::time::Duration::from_millis(500), waiter)
            .await
            .unwrap()
            .unwrap();
        assert!(l.try_acquire(A, "f").is_err());
        // wait_available takes nothing: it returns once a slot is free.
        let available = tokio::spawn({
            let l = l.clone();
            async move { l.wait_available(A, "f").await }
        });
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(!available.is_finished());
        drop(second);
        tokio::time::timeout(std::time::Duration::from_millis(500), available)
            .await
            .unwrap()
            .unwrap();
        l.wait_available(A, "f").await;
        assert!(l.try_acquire(A, "f").is_ok());
    }

    #[test]
    fn zero_disables_a_function() {
        let l = ConcurrencyLimiter::new(1000);
        l.reserve(A, "off", 0);
        for _ in 0..3 {
            let e = l.try_acquire(A, "off").unwrap_err();
            assert_eq!(
                e.reason(),
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            );
        }
        assert_eq!(l.reserved(A, "off"), Some(0));
        assert_eq!(l.in_flight(A), (0, 0));
        l.unreserve(A, "off");
        assert_eq!(l.reserved(A, "off"), None);
        assert!(l.try_acquire(A, "off").is_ok());
    }

    #[test]
    fn unreserved_pool_is_the_limit_minus_reservations() {
        let l = ConcurrencyLimiter::new(10);
        assert_eq!(l.unreserved_limit(A), 10);
        l.reserve(A, "r1", 3);
        l.reserve(A, "r2", 2);
        assert_eq!(l.unreserved_limit(A), 5);
        // The pool is shared by every unreserved function of the account.
        let mut held = take_all(&l, A, "u1");
        held.extend(take_all(&l, A, "u2"));
        assert_eq!(held.len(), 5);
        let e = l.try_acquire(A, "u3").unwrap_err();
        assert_eq!(
            (e, e.reason()),
            (Throttle::Account, "ConcurrentInvocationLimitExceeded")
        );
        // Reserved functions still have their own slots.
        assert_eq!(take_all(&l, A, "r1").len(), 3);
        assert_eq!(take_all(&l, A, "r2").len(), 2);
        // Another account has its own pool.
        assert_eq!(take_all(&l, B, "u1").len(), 10);
        // Changing and removing reservations resizes the pool.
        l.reserve(A, "r1", 1);
        assert_eq!(l.unreserved_limit(A), 7);
        l.unreserve(A, "r2");
        assert_eq!(l.unreserved_limit(A), 9);
        assert_eq!(take_all(&l, A, "u1").len(), 4);
        l.unreserve(A, "nothing");
        l.unreserve("999999999999", "nothing");
        assert_eq!(l.unreserved_limit(A), 9);
    }

    #[test]
    fn reservation_limits_follow_the_account_limit() {
        assert_eq!(ConcurrencyLimiter::new(1000).max_reserved_total(), 900);
        assert_eq!(ConcurrencyLimiter::new(1000).min_unreserved(), 100);
        assert_eq!(ConcurrencyLimiter::new(100).max_reserved_total(), 0);
        assert_eq!(ConcurrencyLimiter::new(10).max_reserved_total(), 0);
        assert_eq!(ConcurrencyLimiter::new(10).min_unreserved(), 10);
    }

    #[test]
    fn permits_return_to_the_counter_they_came_from() {
        let l = ConcurrencyLimiter::new(10);
        // Taken from the unreserved pool, then the function gets a reservation.
        let before = l.try_acquire(A, "f").unwrap();
        l.reserve(A, "f", 2);
        assert_eq!(l.in_flight(A), (1, 0));
        let during = take_all(&l, A, "f");
        assert_eq!(during.len(), 2);
        assert_eq!(l.in_flight(A), (1, 2));
        drop(before);
        assert_eq!(l.in_flight(A), (0, 2));
        // Reservation removed while its slots are held: they drain from the old counter.
        l.unreserve(A, "f");
        assert_eq!(l.in_flight(A), (0, 0));
        drop(during);
        assert_eq!(l.in_flight(A), (0, 0));
        assert_eq!(take_all(&l, A, "f").len(), 10);
    }

    #[test]
    fn raising_and_lowering_a_reservation_keeps_held_slots() {
        let l = ConcurrencyLimiter::new(1000);
        l.reserve(A, "f", 4);
        let held = take_all(&l, A, "f");
        l.reserve(A, "f", 2);
        assert!(l.try_acquire(A, "f").is_err());
        drop(held);
        assert_eq!(take_all(&l, A, "f").len(), 2);
        assert_eq!(l.unreserved_limit(A), 998);
    }

    #[test]
    fn a_panicking_holder_frees_its_slot() {
        let l = Arc::new(ConcurrencyLimiter::new(1000));
        l.reserve(A, "f", 1);
        let l2 = l.clone();
        let r = std::thread::spawn(move || {
            let _p = l2.try_acquire(A, "f").unwrap();
            panic!("the invocation panicked");
        })
        .join();
        assert!(r.is_err());
        assert!(l.try_acquire(A, "f").is_ok());
    }

    #[tokio::test]
    async fn a_cancelled_invocation_frees_its_slot() {
        let l = Arc::new(ConcurrencyLimiter::new(1000));
        l.reserve(A, "f", 1);
        let l2 = l.clone();
        let task = tokio::spawn(async move {
            let _p = l2.try_acquire(A, "f").unwrap();
            std::future::pending::<()>().await;
        });
        while l.in_flight(A) != (0, 1) {
            tokio::task::yield_now().await;
        }
        assert!(l.try_acquire(A, "f").is_err());
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
        assert_eq!(l.in_flight(A), (0, 0));
        assert!(l.try_acquire(A, "f").is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn many_tasks_never_exceed_the_limits() {
        let l = Arc::new(ConcurrencyLimiter::new(20));
        l.reserve(A, "r", 5);
        let peak_r = Arc::new(AtomicU32::new(0));
        let peak_u = Arc::new(AtomicU32::new(0));
        let now_r = Arc::new(AtomicU32::new(0));
        let now_u = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for i in 0..400u32 {
            let (l, peak_r, peak_u, now_r, now_u) = (
                l.clone(),
                peak_r.clone(),
                peak_u.clone(),
                now_r.clone(),
                now_u.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let reserved = i % 2 == 0;
                let f = if reserved {
                    "r".to_owned()
                } else {
                    format!("u{}", i % 7)
                };
                let (mut ok, mut throttled) = (0u32, 0u32);
                for _ in 0..50 {
                    match l.try_acquire(A, &f) {
                        Ok(p) => {
                            let (now, peak) = if reserved {
                                (&now_r, &peak_r)
                            } else {
                                (&now_u, &peak_u)
                            };
                            let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                            peak.fetch_max(n, Ordering::SeqCst);
                            tokio::task::yield_now().await;
                            now.fetch_sub(1, Ordering::SeqCst);
                            drop(p);
                            ok += 1;
                        }
                        Err(_) => {
                            throttled += 1;
                            tokio::task::yield_now().await;
                        }
                    }
                }
                (ok, throttled)
            }));
        }
        let mut total_ok = 0;
        for t in tasks {
            total_ok += t.await.unwrap().0;
        }
        assert!(total_ok > 0);
        assert!(peak_r.load(Ordering::SeqCst) <= 5, "{peak_r:?}");
        assert!(peak_u.load(Ordering::SeqCst) <= 15, "{peak_u:?}");
        assert_eq!(l.in_flight(A), (0, 0));
        assert_eq!(take_all(&l, A, "r").len(), 5);
        assert_eq!(take_all(&l, A, "other").len(), 15);
    }
}
