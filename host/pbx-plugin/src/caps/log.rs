//! `pbx:plugin/log`: the tenant's bounded plugin log (also fed by the guest's
//! stdout and stderr).

use std::collections::VecDeque;

use parking_lot::Mutex;

use crate::bindings::log::{Host, Level};
use crate::runtime::HostState;

/// One log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// How important.
    pub level: Level,
    /// The text, cut to the log's line limit.
    pub message: String,
}

/// A bounded ring of log lines: the oldest lines drop out when it is full.
#[derive(Debug)]
pub struct PluginLog {
    max_lines: usize,
    max_line_len: usize,
    inner: Mutex<(VecDeque<LogLine>, u64)>,
}

impl PluginLog {
    /// A log keeping the last `max_lines` lines of at most `max_line_len` bytes.
    pub fn new(max_lines: usize, max_line_len: usize) -> Self {
        Self {
            max_lines,
            max_line_len,
            inner: Mutex::new((VecDeque::new(), 0)),
        }
    }

    /// Append a line, dropping the oldest when full.
    pub fn push(&self, level: Level, message: String) {
        if self.max_lines == 0 {
            return;
        }
        let message = super::alerts::truncate(message, self.max_line_len);
        let mut guard = self.inner.lock();
        let (lines, dropped) = &mut *guard;
        if lines.len() >= self.max_lines {
            lines.pop_front();
            *dropped += 1;
        }
        lines.push_back(LogLine { level, message });
    }

    /// A copy of the lines kept.
    pub fn lines(&self) -> Vec<LogLine> {
        self.inner.lock().0.iter().cloned().collect()
    }

    /// How many lines dropped out because the log was full.
    pub fn dropped(&self) -> u64 {
        self.inner.lock().1
    }
}

impl Default for PluginLog {
    /// 256 lines of at most 512 bytes.
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
    }
}
