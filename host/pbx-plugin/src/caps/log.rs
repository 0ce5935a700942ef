//! `pbx:plugin/log`: the tenant's bounded plugin log (also fed by the guest's
//! stdout and stderr).

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::bindings::log::{Host, Level};
use crate::runtime::HostState;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// 1, 2, 3, ... in the order lines were written to this log (lines that
    /// dropped out leave gaps).
    pub seq: u64,
    /// When it was written, Unix milliseconds.
    pub at_ms: i64,
    /// How important.
    pub level: Level,
    /// The text, cut to the log's line limit.
    pub message: String,
}

/// A bounded ring of log lines: the oldest lines drop out when it is full,
/// by line count or by bytes (each line counted at its allocated size plus
/// its bookkeeping), so a tenant's log holds at most `max_bytes` whatever
/// its plugins write.
#[derive(Debug)]
pub struct PluginLog {
    max_lines: usize,
    max_line_len: usize,
    max_bytes: usize,
    inner: Mutex<Ring>,
}

#[derive(Debug, Default)]
struct Ring {
    lines: VecDeque<LogLine>,
    bytes: usize,
    dropped: u64,
    written: u64,
}

/// What one kept line costs in the byte budget.
fn cost(line: &LogLine) -> usize {
    line.message.capacity() + std::mem::size_of::<LogLine>()
}

impl PluginLog {
    /// A log keeping the last `max_lines` lines of at most `max_line_len`
    /// bytes, and at most 64 KiB in all.
    pub fn new(max_lines: usize, max_line_len: usize) -> Self {
        Self::with_budget(max_lines, max_line_len, DEFAULT_BUDGET)
    }

    /// A log with an explicit byte budget.
    pub fn with_budget(max_lines: usize, max_line_len: usize, max_bytes: usize) -> Self {
        Self {
            max_lines,
            max_line_len,
            max_bytes,
            inner: Mutex::new(Ring::default()),
        }
    }

    /// Append a line, dropping the oldest while over a limit.
    pub fn push(&self, level: Level, message: String) {
        if self.max_lines == 0 {
            return;
        }
        let line = LogLine {
            seq: 0,
            at_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            level,
            message: super::alerts::truncate(message, self.max_line_len),
        };
        let size = cost(&line);
        let mut ring = self.inner.lock();
        ring.written += 1;
        if size > self.max_bytes {
            ring.dropped += 1;
            return;
        }
        let line = LogLine {
            seq: ring.written,
            ..line
        };
        while ring.lines.len() >= self.max_lines || ring.bytes + size > self.max_bytes {
            let Some(old) = ring.lines.pop_front() else {
                break;
            };
            ring.bytes -= cost(&old);
            ring.dropped += 1;
        }
        ring.bytes += size;
        ring.lines.push_back(line);
    }

    /// A copy of the lines kept.
    pub fn lines(&self) -> Vec<LogLine> {
        self.inner.lock().lines.iter().cloned().collect()
    }

    /// How many lines dropped out because the log was full.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().dropped
    }

    /// Bytes the kept lines take, as counted against the budget.
    pub fn bytes(&self) -> usize {
        self.inner.lock().bytes
    }
}

/// The byte budget of [`PluginLog::new`].
const DEFAULT_BUDGET: usize = 64 << 10;

impl Default for PluginLog {
    /// 256 lines of at most 512 bytes, 64 KiB in all.
    fn default() -> Self {
        Self::new(256, 512)
    }
}

impl Host for HostState {
    fn write(&mut self, level: Level, message: String) {
        self.caps.log.push(level, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_newest_lines_and_cuts_long_ones() {
        let log = PluginLog::new(2, 4);
        log.push(Level::Info, "one".into());
        log.push(Level::Info, "two".into());
        log.push(Level::Warn, "threeeee".into());
        let lines = log.lines();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "two");
        assert_eq!(lines[1].message, "thre");
        assert_eq!(log.dropped(), 1);
        // Numbered in writing order; the dropped first line leaves a gap.
        assert_eq!((lines[0].seq, lines[1].seq), (2, 3));
        assert!(lines[0].at_ms > 0 && lines[0].at_ms <= lines[1].at_ms);
    }

    #[test]
    fn a_cut_line_gives_back_its_allocation_and_the_budget_holds() {
        let budget = 4096;
        let log = PluginLog::with_budget(1000, 512, budget);
        for _ in 0..100 {
            log.push(Level::Info, "x".repeat(2 << 20));
        }
        let lines = log.lines();
        assert!(lines.iter().all(|l| l.message.capacity() <= 512));
        assert!(log.bytes() <= budget, "{} bytes kept", log.bytes());
        assert!(!lines.is_empty() && lines.len() < 100);
        assert_eq!(log.dropped() as usize + lines.len(), 100);
    }
}
