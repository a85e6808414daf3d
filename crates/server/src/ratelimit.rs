//! Per-key rate limits: a fixed window of `count` events per `window` seconds,
//! counted in this process's memory.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Default)]
pub(crate) struct Limiter {
    windows: Mutex<HashMap<i64, (Instant, i64)>>,
}

impl Limiter {
    /// Counts `n` events for a key; returns the seconds to wait when over the limit.
    pub(crate) fn check(&self, key_id: i64, count: i64, window_secs: i64, n: i64) -> Result<(), u64> {
        let window = Duration::from_secs(window_secs.max(1) as u64);
        let now = Instant::now();
        let mut windows = self.windows.lock().expect("limiter lock");
        let entry = windows.entry(key_id).or_insert((now, 0));
        if now.duration_since(entry.0) >= window {
            *entry = (now, 0);
        }
        if entry.1 + n > count {
            let remaining = window.saturating_sub(now.duration_since(entry.0));
            return Err(remaining.as_secs().max(1));
        }
        entry.1 += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_within_a_window() {
        let l = Limiter::default();
        assert!(l.check(1, 2, 60, 1).is_ok());
        assert!(l.check(1, 2, 60, 1).is_ok());
        let wait = l.check(1, 2, 60, 1).unwrap_err();
        assert!((1..=60).contains(&wait));
        assert!(l.check(2, 2, 60, 1).is_ok(), "keys are independent");
    }
}
