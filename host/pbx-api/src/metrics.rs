//! Counters exposed at `GET /metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The API's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    responses: [AtomicU64; 5],
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    rate_limited: AtomicU64,
}

impl Metrics {
    pub(crate) fn response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn login(&self, ok: bool) {
        let c = if ok {
            &self.logins_ok
        } else {
            &self.logins_failed
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP pbx_api_responses_total API responses by status class.\n");
        out.push_str("# TYPE pbx_api_responses_total counter\n");
        for (i, c) in self.responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "pbx_api_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                c.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP pbx_api_logins_total Login attempts by result.\n");
        out.push_str("# TYPE pbx_api_logins_total counter\n");
        let _ = writeln!(
            out,
            "pbx_api_logins_total{{result=\"success\"}} {}",
            self.logins_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "pbx_api_logins_total{{result=\"failure\"}} {}",
            self.logins_failed.load(Ordering::Relaxed)
        );
        out.push_str("# HELP pbx_api_rate_limited_total Requests refused by a rate limit.\n");
        out.push_str("# TYPE pbx_api_rate_limited_total counter\n");
        let _ = writeln!(
            out,
            "pbx_api_rate_limited_total {}",
            self.rate_limited.load(Ordering::Relaxed)
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters() {
        let m = Metrics::default();
        m.response(200);
        m.response(204);
        m.response(404);
        m.login(false);
        let text = m.render();
        assert!(text.contains("pbx_api_responses_total{class=\"2xx\"} 2\n"));
        assert!(text.contains("pbx_api_responses_total{class=\"4xx\"} 1\n"));
        assert!(text.contains("pbx_api_logins_total{result=\"failure\"} 1\n"));
    }
}
