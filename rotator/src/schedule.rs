//! When to renew: a fraction of the lifetime with jitter, clamped, and backoff on failure.
//!
//! The renewal point is computed from the certificate's own validity (its `notBefore` and
//! `notAfter`), never from the lifetime that was asked for: an issuer may cap a requested TTL.

use std::time::{Duration, SystemTime};

use rand::Rng;
use serde::Deserialize;

/// How a certificate with a known lifetime is renewed.
///
/// # Defaults
/// `fraction` 2/3, `jitter` 0.05, `min_interval` 1 s, `max_interval` 24 h, `safety_margin` 5 min
/// (never more than half of the time left after the renewal point).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenewPolicy {
    /// Renew once this fraction of the lifetime has passed.
    pub fraction: f64,
    /// Random spread around the renewal point, as a fraction of the lifetime (±).
    pub jitter: f64,
    /// Never renew sooner than this after the previous renewal.
    #[serde(with = "crate::schedule::humantime")]
    pub min_interval: Duration,
    /// Never wait longer than this between renewals.
    #[serde(with = "crate::schedule::humantime")]
    pub max_interval: Duration,
    /// Always renew at least this long before expiry.
    #[serde(with = "crate::schedule::humantime")]
    pub safety_margin: Duration,
}

impl Default for RenewPolicy {
    fn default() -> Self {
        Self {
            fraction: 2.0 / 3.0,
            jitter: 0.05,
            min_interval: Duration::from_secs(1),
            max_interval: Duration::from_secs(24 * 3600),
            safety_margin: Duration::from_secs(300),
        }
    }
}

impl RenewPolicy {
    /// How long to wait, from `now`, before renewing a certificate valid in
    /// `[not_before, not_after)`. `random` is in `[-1, 1]` and scales the jitter.
    pub fn delay(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
        now: SystemTime,
        random: f64,
    ) -> Duration {
        let lifetime = not_after
            .duration_since(not_before)
            .unwrap_or_default()
            .as_secs_f64();
        let fraction = (self.fraction + self.jitter * random.clamp(-1.0, 1.0)).clamp(0.05, 0.95);
        let renew_at = not_before + Duration::from_secs_f64(lifetime * fraction);

        let margin = self.safety_margin.min(Duration::from_secs_f64(
            lifetime * (1.0 - self.fraction) / 2.0,
        ));
        let latest = not_after.checked_sub(margin).unwrap_or(not_after);
        let renew_at = renew_at.min(latest);

        let wait = renew_at.duration_since(now).unwrap_or_default();
        let time_left = not_after.duration_since(now).unwrap_or_default();
        let wait = wait.clamp(self.min_interval, self.max_interval.max(self.min_interval));
        // Clamping up to `min_interval` must not carry the renewal past expiry.
        wait.min(time_left.saturating_sub(margin))
            .max(Duration::from_millis(100))
    }

    /// [`RenewPolicy::delay`] with a fresh random jitter.
    pub fn delay_random(
        &self,
        not_before: SystemTime,
        not_after: SystemTime,
        now: SystemTime,
    ) -> Duration {
        let random = rand::rng().random_range(-1.0..=1.0);
        self.delay(not_before, not_after, now, random)
    }
}

/// Exponential backoff with jitter for failed renewals.
///
/// # Defaults
/// First retry after 1 s, doubling, capped at 60 s; each wait is drawn from `[half, full]`.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    failures: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(60))
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max,
            failures: 0,
        }
    }

    /// The wait before the next attempt after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        let exponent = self.failures.min(20);
        self.failures = self.failures.saturating_add(1);
        let full = self.initial.saturating_mul(1 << exponent).min(self.max);
        let half = full / 2;
        half + full
            .saturating_sub(half)
            .mul_f64(rand::rng().random_range(0.0..=1.0))
    }

    /// Failures since the last success.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Forget past failures after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

/// Serde support for durations written as `"90s"`, `"5m"`, `"2h"`, `"1d"`, `"250ms"` or a bare
/// number of seconds.
pub mod humantime {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        match Raw::deserialize(deserializer)? {
            Raw::Seconds(seconds) => Ok(Duration::from_secs(seconds)),
            Raw::Text(text) => parse(&text).map_err(serde::de::Error::custom),
        }
    }

    /// The same for `Option<Duration>` fields (absent means `None`; use with `#[serde(default)]`).
    pub mod option {
        use std::time::Duration;

        use serde::Deserializer;

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }

    /// Parses `"250ms"`, `"90s"`, `"5m"`, `"2h"`, `"1d"` or `"30"` (seconds).
    pub fn parse(text: &str) -> Result<Duration, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: expected e.g. \"30s\" or \"5m\""))?;
        let seconds = match unit.trim() {
            "" | "s" => value,
            "ms" => value / 1000.0,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            other => return Err(format!("invalid duration unit {other:?} in {text:?}")),
        };
        Ok(Duration::from_secs_f64(seconds))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(seconds)
    }

    #[test]
    fn renews_at_two_thirds_without_jitter() {
        let policy = RenewPolicy::default();
        let delay = policy.delay(at(0), at(60), at(0), 0.0);
        assert_eq!(delay.as_secs(), 40);
    }

    #[test]
    fn jitter_moves_the_renewal_within_bounds() {
        let policy = RenewPolicy::default();
        let early = policy.delay(at(0), at(3600), at(0), -1.0);
        let late = policy.delay(at(0), at(3600), at(0), 1.0);
        assert_eq!(early.as_secs(), 2220);
        assert_eq!(late.as_secs(), 2580);
    }

    #[test]
    fn never_later_than_the_safety_margin() {
        let policy = RenewPolicy {
            fraction: 0.95,
            jitter: 0.0,
            ..RenewPolicy::default()
        };
        let delay = policy.delay(at(0), at(100_000), at(0), 0.0);
        assert!(delay <= Duration::from_secs(100_000 - 300), "{delay:?}");
    }

    #[test]
    fn clamped_to_max_interval() {
        let policy = RenewPolicy {
            max_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let delay = policy.delay(at(0), at(30 * 86400), at(0), 0.0);
        assert_eq!(delay, Duration::from_secs(3600));
    }

    #[test]
    fn overdue_certificate_renews_soon() {
        let policy = RenewPolicy::default();
        let delay = policy.delay(at(0), at(60), at(50), 0.0);
        assert!(delay <= Duration::from_secs(1), "{delay:?}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(8));
        let waits: Vec<_> = (0..6).map(|_| backoff.next_delay()).collect();
        assert!(waits[0] >= Duration::from_millis(500) && waits[0] <= Duration::from_secs(1));
        assert!(waits[3] >= Duration::from_secs(4) && waits[3] <= Duration::from_secs(8));
        assert!(waits[5] <= Duration::from_secs(8));
        backoff.reset();
        assert_eq!(backoff.failures(), 0);
    }

    #[test]
    fn parses_durations() {
        assert_eq!(humantime::parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(humantime::parse("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(humantime::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(humantime::parse("2"), Ok(Duration::from_secs(2)));
        assert!(humantime::parse("5 parsecs").is_err());
    }
}
