//! Rate limits for log lines a flood could repeat: a few lines a second per
//! cause, and a count of what was held back, so a storm of panics or resets
//! can neither fill a disk nor burn the CPU formatting lines.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);
const BURST: u32 = 5;

/// One cause's budget: at most `BURST` lines per second.
#[derive(Debug, Default)]
pub(crate) struct LogLimit {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl LogLimit {
    /// `Some(n)` if a line may be logged now, `n` being how many were held
    /// back since the last one that was; `None` to stay quiet.
    pub(crate) fn allow(&mut self, now: Instant) -> Option<u64> {
        if self
            .window_start
            .is_none_or(|s| now.duration_since(s) >= WINDOW)
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < BURST {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

/// The causes the engine rate-limits.
#[derive(Debug, Default)]
pub(crate) struct Logs {
    pub(crate) panic: LogLimit,
    pub(crate) short_file: LogLimit,
    pub(crate) io: LogLimit,
    pub(crate) handler: LogLimit,
}

/// `" (N similar lines suppressed)"`, or nothing.
pub(crate) struct Suppressed(pub(crate) u64);

impl std::fmt::Display for Suppressed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 > 0 {
            write!(f, " ({} similar lines suppressed)", self.0)
        } else {
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_holds_back_then_reports_the_count() {
        let mut l = LogLimit::default();
        let t = Instant::now();
        for _ in 0..BURST {
            assert_eq!(l.allow(t), Some(0));
        }
        for _ in 0..100 {
            assert_eq!(l.allow(t + Duration::from_millis(500)), None);
        }
        assert_eq!(l.allow(t + WINDOW), Some(100));
        assert_eq!(l.allow(t + WINDOW), Some(0));
    }
}
