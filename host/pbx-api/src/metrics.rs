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

/// The cluster's figures, from the nodes' heartbeats (empty on a single
/// node): per node whether it is up and its state, calls in progress,
/// bindings held and heartbeat age; and the cluster's totals over the nodes
/// that are up.
pub(crate) fn render_cluster(nodes: &[store::ClusterNode], now_ms: i64) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        return out;
    }
    let gauge = |out: &mut String, name: &str, help: &str| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
    };
    type Figure<'a> = Box<dyn Fn(&store::ClusterNode) -> String + 'a>;
    let per_node: [(&str, &str, Figure); 5] = [
        (
            "pbx_node_up",
            "1 while the node heartbeats, 0 once it is down.",
            Box::new(|n| u8::from(n.is_up(now_ms)).to_string()),
        ),
        (
            "pbx_node_draining",
            "1 while the node is drained by its operator.",
            Box::new(|n| u8::from(n.state == store::NodeState::Draining).to_string()),
        ),
        (
            "pbx_node_calls",
            "Calls in progress on the node, at its last heartbeat.",
            Box::new(|n| n.calls_up.to_string()),
        ),
        (
            "pbx_node_registrations",
            "Bindings the node holds, at its last heartbeat.",
            Box::new(|n| n.registrations.to_string()),
        ),
        (
            "pbx_node_heartbeat_age_seconds",
            "Time since the node's last heartbeat.",
            Box::new(|n| format!("{:.3}", (now_ms - n.heartbeat_ms).max(0) as f64 / 1000.0)),
        ),
    ];
    // Node ids are checked when a node starts: letters, digits, `.-_`.
    for (name, help, value) in &per_node {
        gauge(&mut out, name, help);
        for n in nodes {
            let _ = writeln!(out, "{name}{{node=\"{}\"}} {}", n.id, value(n));
        }
    }
    let live: Vec<&store::ClusterNode> = nodes.iter().filter(|n| n.is_up(now_ms)).collect();
    let totals = [
        (
            "pbx_cluster_nodes_up",
            "Nodes of the cluster that heartbeat.",
            live.len() as u64,
        ),
        (
            "pbx_cluster_calls",
            "Calls in progress on the nodes that are up.",
            live.iter().map(|n| n.calls_up).sum(),
        ),
        (
            "pbx_cluster_registrations",
            "Bindings held by the nodes that are up.",
            live.iter().map(|n| n.registrations).sum(),
        ),
    ];
    for (name, help, value) in totals {
        gauge(&mut out, name, help);
        let _ = writeln!(out, "{name} {value}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_cluster_from_heartbeats() {
        assert_eq!(render_cluster(&[], 0), "", "nothing on a single node");
        let node = |id: &str, heartbeat_ms, calls, state| store::ClusterNode {
            id: id.into(),
            sip_addresses: "udp:127.0.0.1:5070".into(),
            api_address: None,
            version: "0.1.0".into(),
            started_at_ms: 0,
            heartbeat_ms,
            state,
            calls_up: calls,
            registrations: calls * 10,
        };
        let now = 100_000;
        let text = render_cluster(
            &[
                node("a", now - 500, 3, store::NodeState::Active),
                node("b", now - 2_000, 4, store::NodeState::Draining),
                node("c", now - 60_000, 7, store::NodeState::Active),
            ],
            now,
        );
        for line in [
            "pbx_node_up{node=\"a\"} 1\n",
            "pbx_node_up{node=\"c\"} 0\n",
            "pbx_node_draining{node=\"b\"} 1\n",
            "pbx_node_calls{node=\"c\"} 7\n",
            "pbx_node_registrations{node=\"b\"} 40\n",
            "pbx_node_heartbeat_age_seconds{node=\"b\"} 2.000\n",
            "pbx_cluster_nodes_up 2\n",
            "pbx_cluster_calls 7\n",
            "pbx_cluster_registrations 70\n",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

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
