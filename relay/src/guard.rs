//! What a stranger can make the relay spend on logins: every attempt is counted per address
//! and per account (governor's keyed GCRA limiters), and password hashing, 19 MiB of argon2
//! each, runs a few at a time. Past a limit the answer is 429 with `Retry-After`; with every
//! hashing slot busy for a while, 503. Either way nothing is hashed, so memory stays flat
//! whatever arrives.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::Semaphore;

/// The login limits, from the command line.
#[derive(Clone, Debug)]
pub struct LoginLimits {
    /// Password checks at once (each holds argon2's 19 MiB and a core for ~50 ms); 0: half
    /// the cores, at least one, so chat keeps a core while logins pour in.
    pub concurrency: usize,
    /// Attempts per address in [`ADDRESS_WINDOW`].
    pub per_address: u32,
    /// Attempts per account (email) in [`ACCOUNT_WINDOW`].
    pub per_account: u32,
}

impl Default for LoginLimits {
    fn default() -> Self {
        Self {
            concurrency: 0,
            per_address: 10,
            per_account: 20,
        }
    }
}

/// The window of the per-address limit.
pub const ADDRESS_WINDOW: Duration = Duration::from_secs(20);

/// The window of the per-account limit.
pub const ACCOUNT_WINDOW: Duration = Duration::from_secs(300);

/// How long a login waits for a hashing slot before it is told to come back.
const SLOT_WAIT: Duration = Duration::from_secs(2);

/// Why a login was not even checked.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this address or for this account; try again after this long.
    Throttled {
        /// The wait before an attempt would be counted again.
        retry_after: Duration,
        /// "address" or "account".
        by: &'static str,
    },
    /// Every hashing slot stayed busy.
    Busy,
}

/// The limiters and the hashing slots.
pub struct LoginGuard {
    by_address: DefaultKeyedRateLimiter<IpAddr>,
    by_account: DefaultKeyedRateLimiter<String>,
    slots: Arc<Semaphore>,
    /// argon2's working memory, one per slot, allocated once and reused.
    memory: Arc<Mutex<Vec<Vec<argon2::Block>>>>,
}

/// `count` attempts per `window`: a burst of `count`, then one more each `window / count`.
fn quota(count: u32, window: Duration) -> Quota {
    let count = NonZeroU32::new(count.max(1)).expect("at least one");
    Quota::with_period(window / count.get())
        .expect("a window longer than zero")
        .allow_burst(count)
}

/// The key an address is counted under: IPv6 hosts get a /64 each, so one host cannot walk
/// its own prefix to escape the limit.
pub(crate) fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// The key an account is counted under: the email as the directory matches it.
pub(crate) fn account_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl LoginGuard {
    /// Limiters for these limits.
    pub fn new(limits: &LoginLimits) -> Self {
        Self {
            by_address: RateLimiter::keyed(quota(limits.per_address, ADDRESS_WINDOW)),
            by_account: RateLimiter::keyed(quota(limits.per_account, ACCOUNT_WINDOW)),
            slots: Arc::new(Semaphore::new(match limits.concurrency {
                0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
                n => n,
            })),
            memory: Arc::default(),
        }
    }

    /// Counts an attempt from `ip` for `email`, before anything is hashed.
    pub fn admit(&self, ip: IpAddr, email: &str) -> Result<(), Refusal> {
        let clock = governor::clock::DefaultClock::default();
        let throttled = |by, not_until: governor::NotUntil<_>| Refusal::Throttled {
            retry_after: not_until.wait_time_from(governor::clock::Clock::now(&clock)),
            by,
        };
        self.by_address
            .check_key(&address_key(ip))
            .map_err(|n| throttled("address", n))?;
        self.by_account
            .check_key(&account_key(email))
            .map_err(|n| throttled("account", n))?;
        Ok(())
    }

    /// Runs `check` (a password hash, given the slot's working memory) on the blocking pool
    /// once a slot is free; `Busy` if none frees up soon. The slot is held until the hash is
    /// done, even if the request is dropped meanwhile, so at most `concurrency` hashes run and
    /// at most that many working memories exist.
    pub async fn hash<T: Send + 'static>(
        &self,
        check: impl FnOnce(&mut Vec<argon2::Block>) -> T + Send + 'static,
    ) -> Result<T, Refusal> {
        let slot = tokio::time::timeout(SLOT_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Refusal::Busy)?
            .expect("the semaphore is never closed");
        let pool = self.memory.clone();
        tokio::task::spawn_blocking(move || {
            let taken = pool.lock().unwrap_or_else(|p| p.into_inner()).pop();
            let mut memory = taken.unwrap_or_default();
            let answer = check(&mut memory);
            pool.lock().unwrap_or_else(|p| p.into_inner()).push(memory);
            drop(slot);
            answer
        })
        .await
        .map_err(|_| Refusal::Busy)
    }

    /// Forgets addresses and accounts whose limit has fully refilled (called every minute),
    /// so a stream of new addresses or made-up emails does not grow memory for good.
    pub fn tidy(&self) {
        self.by_address.retain_recent();
        self.by_address.shrink_to_fit();
        self.by_account.retain_recent();
        self.by_account.shrink_to_fit();
    }

    /// Addresses and accounts currently remembered.
    pub fn remembered(&self) -> usize {
        self.by_address.len() + self.by_account.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_address: u32, per_account: u32) -> LoginLimits {
        LoginLimits {
            concurrency: 1,
            per_address,
            per_account,
        }
    }

    #[test]
    fn an_address_gets_its_burst_then_waits() {
        let guard = LoginGuard::new(&limits(3, 100));
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        for i in 0..3 {
            assert_eq!(guard.admit(ip, &format!("a{i}@x")), Ok(()));
        }
        match guard.admit(ip, "b@x") {
            Err(Refusal::Throttled { retry_after, by }) => {
                assert_eq!(by, "address");
                assert!(retry_after > Duration::ZERO && retry_after <= ADDRESS_WINDOW / 3);
            }
            other => panic!("{other:?}"),
        }
        // Another address is not affected.
        assert_eq!(guard.admit("192.0.2.8".parse().unwrap(), "b@x"), Ok(()));
    }

    #[test]
    fn an_account_is_counted_across_addresses_and_spellings() {
        let guard = LoginGuard::new(&limits(100, 2));
        assert_eq!(
            guard.admit("192.0.2.1".parse().unwrap(), "Ana@Shop.example"),
            Ok(())
        );
        assert_eq!(
            guard.admit("192.0.2.2".parse().unwrap(), " ana@shop.example"),
            Ok(())
        );
        assert!(matches!(
            guard.admit("192.0.2.3".parse().unwrap(), "ana@shop.example"),
            Err(Refusal::Throttled { by: "account", .. })
        ));
    }

    #[test]
    fn an_ipv6_host_cannot_walk_its_prefix() {
        let guard = LoginGuard::new(&limits(2, 100));
        assert_eq!(guard.admit("2001:db8::1".parse().unwrap(), "a@x"), Ok(()));
        assert_eq!(guard.admit("2001:db8::2".parse().unwrap(), "b@x"), Ok(()));
        assert!(guard
            .admit("2001:db8::ffff".parse().unwrap(), "c@x")
            .is_err());
        assert_eq!(
            guard.admit("2001:db8:0:1::1".parse().unwrap(), "d@x"),
            Ok(())
        );
    }

    #[tokio::test]
    async fn hashing_waits_for_a_slot_and_gives_up_when_none_frees() {
        let guard = std::sync::Arc::new(LoginGuard::new(&limits(10, 10)));
        let (hold, held) = std::sync::mpsc::channel::<()>();
        let (started, running) = tokio::sync::oneshot::channel();
        let busy = {
            let guard = guard.clone();
            tokio::spawn(async move {
                guard
                    .hash(move |_| {
                        let _ = started.send(());
                        let _ = held.recv();
                    })
                    .await
            })
        };
        running.await.unwrap();
        // The one slot is taken: the next waits, then is told to come back.
        assert_eq!(guard.hash(|_| 1).await, Err(Refusal::Busy));
        hold.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(()));
        assert_eq!(guard.hash(|_| 2).await, Ok(2));
    }
}
