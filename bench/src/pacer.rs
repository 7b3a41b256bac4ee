//! Waiting for an open-loop schedule slot to the microsecond.
//!
//! tokio's timer wheel ticks once a millisecond and wakes a sleeper at the first tick after
//! its deadline, so at 2,000 requests/s slots half a millisecond apart would start in pairs,
//! and a latency run would measure how servers cope with bursts of two. A worker waits on its
//! own `timerfd` instead, which the kernel fires on a high-resolution timer.

use std::io;
use std::os::fd::OwnedFd;
use std::time::Instant;

use rustix::time::{Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec};
use tokio::io::unix::AsyncFd;

/// One worker's timer.
#[derive(Debug)]
pub struct Pacer {
    timer: AsyncFd<OwnedFd>,
}

impl Pacer {
    /// A disarmed timer registered with the current tokio runtime.
    pub fn new() -> io::Result<Self> {
        let flags = TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC;
        let fd = rustix::time::timerfd_create(TimerfdClockId::Monotonic, flags)?;
        // tokio deprecates the safe constructor because a wrapped type could swap or close
        // its descriptor while registered; an `OwnedFd` owned by the `AsyncFd` cannot, and the
        // unsafe replacement is not available to this crate (`forbid(unsafe_code)`).
        #[allow(deprecated)]
        let timer = AsyncFd::new(fd)?;
        Ok(Self { timer })
    }

    /// Returns at `due`, or at once when it has passed.
    pub async fn wait_until(&self, due: Instant) -> io::Result<()> {
        let Some(delay) = due
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
        else {
            return Ok(());
        };
        let spec = Itimerspec {
            it_interval: Timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: Timespec::try_from(delay).map_err(io::Error::other)?,
        };
        rustix::time::timerfd_settime(&self.timer, TimerfdTimerFlags::empty(), &spec)?;
        loop {
            let mut ready = self.timer.readable().await?;
            // The timer counts expirations in an 8-byte integer; reading it re-arms readiness.
            let mut expirations = [0u8; 8];
            match ready.try_io(|fd| Ok(rustix::io::read(fd, &mut expirations)?)) {
                Ok(read) => return read.map(|_| ()),
                Err(_would_block) => continue,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn never_wakes_early_nor_waits_for_a_past_deadline() {
        let pacer = Pacer::new().unwrap();
        for _ in 0..20 {
            let due = Instant::now() + Duration::from_micros(300);
            pacer.wait_until(due).await.unwrap();
            assert!(Instant::now() >= due, "woke before the deadline");
        }

        let past = Instant::now() - Duration::from_millis(5);
        let before = Instant::now();
        pacer.wait_until(past).await.unwrap();
        assert!(before.elapsed() < Duration::from_millis(5));
    }
}
