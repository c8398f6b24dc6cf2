//! When a failed request or window is worth another try, and how long to wait first.

use std::time::Duration;

use rand::Rng;

/// No wait between two attempts is longer.
pub const BACKOFF_CAP: Duration = Duration::from_secs(60);

/// The statuses that say the request was not acted on and may be sent again: a timeout,
/// too early, rate limits, and a server or gateway that is down or overloaded.
pub fn is_transient_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// Capped exponential backoff with jitter before attempt `attempt + 1`: between half and
/// all of `base * 2^(attempt-1)`, so that requests that failed together do not come back
/// together.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let full = base
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(BACKOFF_CAP);
    full.mul_f64(rand::rng().random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_a_cap() {
        let base = Duration::from_millis(500);
        for attempt in 1..20 {
            let full = base
                .saturating_mul(1 << (attempt - 1).min(16))
                .min(BACKOFF_CAP);
            let wait = backoff(base, attempt);
            assert!(
                wait >= full / 2 && wait <= full,
                "attempt {attempt}: {wait:?}"
            );
        }
    }
}
