//! Security events to a SIEM over syslog (RFC 5424; over UDP, TCP with
//! octet counting (RFC 6587), or TLS (RFC 5425)), or to an HTTPS collector
//! (one POST of newline-delimited JSON events per batch, a bearer token if
//! configured), as configured in `[siem]`.
//!
//! The forwarder reads what the host already stores durably, the audit log
//! (logins, configuration changes, approvals, suspensions, …) and the alerts
//! (bans, fraud, plugin failures and quarantines, …), in id order, and sends
//! each entry once as one event whose schema `docs/EVENTS.md` documents. The
//! database is the buffer: nothing is held in memory beyond one batch, a
//! collector that is down or slow only delays the cursor (kept in
//! `DATA_DIR/siem-cursor.json`, so a restart neither repeats nor loses
//! events), and nothing on the call path ever waits for it.
//!
//! Every event names its tenant (`tenant_id`, `tenant`), so a provider can
//! route a tenant's own events to that tenant.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use store::{Store, TenantId};
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

/// Where events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SiemTarget {
    /// `udp://HOST:PORT`: one datagram per event.
    Udp(String),
    /// `tcp://HOST:PORT`: octet-counted frames.
    Tcp(String),
    /// `tls://HOST:PORT`: octet-counted frames over TLS, the server checked
    /// against `ca`.
    Tls { host: String, port: u16 },
    /// `https://HOST[:PORT]/PATH`: batches POSTed as `application/x-ndjson`,
    /// the server checked against `ca`.
    Https {
        host: String,
        port: u16,
        path: String,
    },
}

impl SiemTarget {
    /// Parses `udp://`, `tcp://` or `tls://HOST:PORT`, or
    /// `https://HOST[:PORT]/PATH`.
    pub fn parse(url: &str) -> Result<SiemTarget, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("{url}: expected udp://, tcp:// or tls://HOST:PORT"))?;
        if scheme == "https" {
            let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
            let (host, port) = match authority.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                    let port = p
                        .parse::<u16>()
                        .ok()
                        .filter(|p| *p != 0)
                        .ok_or_else(|| format!("{url}: bad port"))?;
                    (h.trim_matches(['[', ']']), port)
                }
                _ => (authority.trim_matches(['[', ']']), 443),
            };
            if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("{url}: expected https://HOST[:PORT]/PATH"));
            }
            return Ok(SiemTarget::Https {
                host: host.to_string(),
                port,
                path: format!("/{path}"),
            });
        }
        let (host, port) = rest
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
            .filter(|(h, p)| !h.is_empty() && *p != 0)
            .ok_or_else(|| format!("{url}: expected HOST:PORT"))?;
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        match scheme {
            "udp" => Ok(SiemTarget::Udp(addr)),
            "tcp" => Ok(SiemTarget::Tcp(addr)),
            "tls" => Ok(SiemTarget::Tls {
                host: host.to_string(),
                port,
            }),
            other => Err(format!("{url}: {other}:// is not udp, tcp or tls")),
        }
    }
}

/// `[siem]`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiemOptions {
    pub target: SiemTarget,
    /// CA certificates a `tls://` collector is checked against.
    pub ca: Option<PathBuf>,
    /// Syslog facility (default 10, security/authorization).
    pub facility: u8,
    /// Sent as `Authorization: Bearer …` to an HTTPS collector.
    pub token: Option<String>,
    /// Where the cursor is kept (filled in with the data directory).
    pub data_dir: PathBuf,
}

/// Most entries of each kind read per round.
const BATCH: u32 = 200;
/// How often the forwarder looks for new entries.
const POLL: Duration = Duration::from_secs(1);
/// Longest wait between attempts while the collector is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long one send may take.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
const CURSOR_FILE: &str = "siem-cursor.json";

/// How far forwarding got: the last audit entry and alert sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub audit: i64,
    pub alerts: i64,
}

/// One event, as sent (the JSON message of the syslog line).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Schema version.
    pub v: u8,
    /// `audit.<action>` or `alert.<event>`.
    pub event: String,
    pub at_ms: i64,
    /// `info`, `notice`, `warning` or `critical`.
    pub severity: &'static str,
    pub tenant_id: Option<i64>,
    pub tenant: Option<String>,
    /// Audit: who acted (user name or "cli") and from where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Audit: the entry's details; alert: its message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The stored entry's id (`audit` or `alert`), for de-duplication.
    pub id: i64,
}

/// Audit actions reported at `warning`.
const WARNING_ACTIONS: [&str; 2] = ["login.failure", "access.denied"];

/// The events of stored entries, in time order.
pub fn events(
    audit: &[store::AuditEntry],
    alerts: &[store::AlertRecord],
    names: &HashMap<TenantId, String>,
) -> Vec<Event> {
    let named = |t: Option<TenantId>| t.and_then(|t| names.get(&t).cloned());
    let mut out: Vec<Event> = audit
        .iter()
        .map(|e| Event {
            v: 1,
            event: format!("audit.{}", e.record.action),
            at_ms: e.record.at_ms,
            severity: if WARNING_ACTIONS.contains(&e.record.action.as_str()) {
                "warning"
            } else {
                "notice"
            },
            tenant_id: e.record.tenant.map(|t| t.0),
            tenant: named(e.record.tenant),
            actor: Some(e.record.actor.clone()),
            role: Some(e.record.role.clone()),
            source: Some(e.record.source.clone()),
            detail: Some(
                serde_json::from_str(&e.record.detail)
                    .unwrap_or_else(|_| serde_json::Value::String(e.record.detail.clone())),
            ),
            message: None,
            id: e.id,
        })
        .collect();
    out.extend(alerts.iter().map(|a| Event {
        v: 1,
        event: format!("alert.{}", a.alert.event),
        at_ms: a.alert.at_ms,
        severity: a.alert.severity.as_str(),
        tenant_id: a.alert.tenant.map(|t| t.0),
        tenant: named(a.alert.tenant),
        actor: None,
        role: None,
        source: None,
        detail: None,
        message: Some(a.alert.message.clone()),
        id: a.id,
    }));
    out.sort_by_key(|e| e.at_ms);
    out
}

/// One RFC 5424 line: `<PRI>1 TIMESTAMP HOSTNAME pbx PROCID MSGID - JSON`.
pub fn syslog_line(event: &Event, facility: u8, hostname: &str) -> String {
    let level = match event.severity {
        "critical" => 2,
        "warning" => 4,
        "notice" => 5,
        _ => 6,
    };
    let pri = u16::from(facility.min(23)) * 8 + level;
    let at = jiff::Timestamp::from_millisecond(event.at_ms)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|_| "-".into());
    // MSGID: at most 32 printable US-ASCII characters.
    let msgid: String = event
        .event
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(32)
        .collect();
    let json = serde_json::to_string(event).unwrap_or_default();
    format!(
        "<{pri}>1 {at} {hostname} pbx {} {msgid} - {json}",
        std::process::id()
    )
}

/// This host's name for the HOSTNAME field (NILVALUE when unknown).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()))
        .map(|h| h.chars().take(255).collect())
        .unwrap_or_else(|| "-".into())
}

/// An open connection to the collector.
enum Conn {
    Udp(tokio::net::UdpSocket),
    Tcp(tokio::net::TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>),
    Https(hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>),
}

/// Opens a TLS connection to `host:port`, the server checked against `ca`.
async fn tls_connect(
    opts: &SiemOptions,
    host: &str,
    port: u16,
) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
    let config = super::sip_tls::client_config(opts.ca.as_deref())?;
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&config));
    let name = rustls::pki_types::ServerName::try_from(host.to_string())?;
    let tcp = tokio::net::TcpStream::connect((host, port)).await?;
    Ok(connector.connect(name, tcp).await?)
}

impl Conn {
    async fn open(opts: &SiemOptions) -> anyhow::Result<Conn> {
        Ok(match &opts.target {
            SiemTarget::Udp(addr) => {
                let to = tokio::net::lookup_host(addr)
                    .await?
                    .next()
                    .ok_or_else(|| anyhow::anyhow!("{addr}: no address"))?;
                let bind = if to.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" };
                let socket = tokio::net::UdpSocket::bind(bind).await?;
                socket.connect(to).await?;
                Conn::Udp(socket)
            }
            SiemTarget::Tcp(addr) => Conn::Tcp(tokio::net::TcpStream::connect(addr).await?),
            SiemTarget::Tls { host, port } => {
                Conn::Tls(Box::new(tls_connect(opts, host, *port).await?))
            }
            SiemTarget::Https { host, port, .. } => {
                let tls = tls_connect(opts, host, *port).await?;
                let (sender, connection) =
                    hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
                        .await?;
                // Drives the connection; it ends when the sender is dropped
                // or the collector closes it (the next send then fails and
                // the forwarder connects again).
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "SIEM collector connection closed");
                    }
                });
                Conn::Https(sender)
            }
        })
    }

    /// Sends one batch: a syslog line per event, or one POST.
    async fn send_batch(
        &mut self,
        batch: &[Event],
        opts: &SiemOptions,
        host: &str,
    ) -> anyhow::Result<()> {
        let lines = batch
            .iter()
            .map(|event| syslog_line(event, opts.facility, host));
        match self {
            Conn::Udp(s) => {
                for line in lines {
                    s.send(line.as_bytes()).await?;
                }
            }
            Conn::Tcp(s) => {
                for line in lines {
                    s.write_all(framed(&line).as_bytes()).await?;
                }
                s.flush().await?;
            }
            Conn::Tls(s) => {
                for line in lines {
                    s.write_all(framed(&line).as_bytes()).await?;
                }
                s.flush().await?;
            }
            Conn::Https(sender) => {
                let SiemTarget::Https { host, port, path } = &opts.target else {
                    anyhow::bail!("an HTTPS connection to a syslog target");
                };
                let mut body = Vec::new();
                for event in batch {
                    serde_json::to_writer(&mut body, event)?;
                    body.push(b'\n');
                }
                let authority = if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                };
                let mut request = hyper::Request::post(path.as_str())
                    .header(hyper::header::HOST, authority)
                    .header(hyper::header::CONTENT_TYPE, "application/x-ndjson")
                    .header(hyper::header::USER_AGENT, "pbx-siem");
                if let Some(token) = &opts.token {
                    request =
                        request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
                }
                let request = request.body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
                sender.ready().await?;
                let response = sender.send_request(request).await?;
                let status = response.status();
                // The body is read (bounded) so the connection can be reused.
                let _ = http_body_util::BodyExt::collect(http_body_util::Limited::new(
                    response.into_body(),
                    64 * 1024,
                ))
                .await;
                anyhow::ensure!(
                    status.is_success(),
                    "the collector answered {status}; the batch will be sent again"
                );
            }
        }
        Ok(())
    }
}

/// RFC 6587 octet counting: `LEN SP MSG`.
fn framed(line: &str) -> String {
    format!("{} {line}", line.len())
}

fn load_cursor(opts: &SiemOptions) -> Option<Cursor> {
    let text = std::fs::read_to_string(opts.data_dir.join(CURSOR_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}

fn save_cursor(opts: &SiemOptions, cursor: Cursor) -> std::io::Result<()> {
    let path = opts.data_dir.join(CURSOR_FILE);
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(&cursor).unwrap_or_default())?;
    std::fs::rename(tmp, path)
}

/// Where a forwarder with no cursor starts: after what is stored now (the
/// history stays in the database and the API; the SIEM gets what follows).
async fn current_heads(store: &Store) -> anyhow::Result<Cursor> {
    let audit = store.audit_head().await?.last_id;
    let alerts = store.last_alert_id().await?;
    Ok(Cursor { audit, alerts })
}

/// Forwards events until `stop`.
pub(crate) async fn run(store: Store, opts: SiemOptions, stop: CancellationToken) {
    let mut cursor = match load_cursor(&opts) {
        Some(c) => c,
        None => match current_heads(&store).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "SIEM forwarding not started");
                return;
            }
        },
    };
    let host = hostname();
    let mut conn: Option<Conn> = None;
    let mut backoff = POLL;
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(backoff) => {}
        }
        match forward_round(&store, &opts, &host, &mut conn, &mut cursor).await {
            Ok(()) => backoff = POLL,
            Err(e) => {
                conn = None;
                if backoff == POLL {
                    tracing::warn!(error = %e, "SIEM collector unreachable; events wait in the database");
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Sends what was stored since `cursor`, advancing it past what was sent.
async fn forward_round(
    store: &Store,
    opts: &SiemOptions,
    host: &str,
    conn: &mut Option<Conn>,
    cursor: &mut Cursor,
) -> anyhow::Result<()> {
    loop {
        let audit = store.audit_chain(cursor.audit, BATCH).await?;
        let alerts = store.alerts_after(cursor.alerts, BATCH).await?;
        if audit.is_empty() && alerts.is_empty() {
            return Ok(());
        }
        let names: HashMap<TenantId, String> = store
            .list_tenants()
            .await?
            .into_iter()
            .map(|t| (t.id, t.name))
            .collect();
        if conn.is_none() {
            *conn = Some(tokio::time::timeout(SEND_TIMEOUT, Conn::open(opts)).await??);
        }
        let Some(c) = conn.as_mut() else {
            return Ok(());
        };
        let batch = events(&audit, &alerts, &names);
        tokio::time::timeout(SEND_TIMEOUT, c.send_batch(&batch, opts, host)).await??;
        let next = Cursor {
            audit: audit.last().map_or(cursor.audit, |e| e.id),
            alerts: alerts.last().map_or(cursor.alerts, |a| a.id),
        };
        save_cursor(opts, next)?;
        *cursor = next;
        if audit.len() < BATCH as usize && alerts.len() < BATCH as usize {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        assert_eq!(
            SiemTarget::parse("udp://127.0.0.1:514"),
            Ok(SiemTarget::Udp("127.0.0.1:514".into()))
        );
        assert_eq!(
            SiemTarget::parse("tls://siem.example:6514"),
            Ok(SiemTarget::Tls {
                host: "siem.example".into(),
                port: 6514
            })
        );
        assert_eq!(
            SiemTarget::parse("tcp://[::1]:601"),
            Ok(SiemTarget::Tcp("[::1]:601".into()))
        );
        for bad in ["http://x:1", "udp://x", "udp://:514", "tcp://x:0", "x:1"] {
            assert!(SiemTarget::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_line_is_rfc_5424_with_the_event_as_json() {
        let event = Event {
            v: 1,
            event: "alert.sip.ban".into(),
            at_ms: 1_700_000_000_123,
            severity: "warning",
            tenant_id: Some(3),
            tenant: Some("acme".into()),
            actor: None,
            role: None,
            source: None,
            detail: None,
            message: Some("banned 192.0.2.1".into()),
            id: 7,
        };
        let line = syslog_line(&event, 10, "pbx1");
        // authpriv (10) * 8 + warning (4) = 84
        assert!(
            line.starts_with("<84>1 2023-11-14T22:13:20.123Z pbx1 pbx "),
            "{line}"
        );
        let (head, json) = line.split_once(" - ").unwrap();
        assert!(head.ends_with(" alert.sip.ban"), "{head}");
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["event"], "alert.sip.ban");
        assert_eq!(framed("abc"), "3 abc");
    }

    #[test]
    fn https_targets_parse() {
        assert_eq!(
            SiemTarget::parse("https://siem.example/services/collector"),
            Ok(SiemTarget::Https {
                host: "siem.example".into(),
                port: 443,
                path: "/services/collector".into()
            })
        );
        assert_eq!(
            SiemTarget::parse("https://[::1]:8443"),
            Ok(SiemTarget::Https {
                host: "::1".into(),
                port: 8443,
                path: "/".into()
            })
        );
        for bad in ["https://", "https://x:0/", "https://x:y/", "https://x/a b"] {
            assert!(SiemTarget::parse(bad).is_err(), "{bad}");
        }
    }

    /// A batch goes to an HTTPS collector as one POST of NDJSON events with
    /// the bearer token; a refusal (503) leaves the cursor where it was, so
    /// the same events go again, once, on the next round.
    #[tokio::test]
    async fn an_https_collector_gets_batches_and_a_refusal_sends_them_again() {
        use http_body_util::BodyExt as _;
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = super::super::sip_tls::tests::self_signed(dir.path());
        let acceptor = tokio_rustls::TlsAcceptor::from(
            super::super::sip_tls::server_config(&cert, &key).unwrap(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // The collector: answers 503 to the first request, 200 after; hands
        // every request's token and body to the test.
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel::<(String, String)>();
        tokio::spawn(async move {
            let answered = Arc::new(std::sync::atomic::AtomicU32::new(0));
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let tls = acceptor.accept(tcp).await.unwrap();
                let seen_tx = seen_tx.clone();
                let answered = answered.clone();
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let seen_tx = seen_tx.clone();
                        let answered = answered.clone();
                        async move {
                            let auth = req
                                .headers()
                                .get(hyper::header::AUTHORIZATION)
                                .map(|v| v.to_str().unwrap().to_string())
                                .unwrap_or_default();
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            seen_tx
                                .send((auth, String::from_utf8(body.to_vec()).unwrap()))
                                .unwrap();
                            let status = if answered
                                .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
                                == 0
                            {
                                503
                            } else {
                                200
                            };
                            Ok::<_, std::convert::Infallible>(
                                hyper::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    },
                );
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service),
                );
            }
        });

        let store = Store::open(dir.path()).await.unwrap();
        let t = store.add_tenant("acme", "acme.example").await.unwrap().id;
        for action in ["login.failure", "extension.create"] {
            store
                .append_audit(&store::AuditRecord {
                    at_ms: 1_000,
                    actor: "root".into(),
                    role: "provider-admin".into(),
                    tenant: Some(t),
                    source: "192.0.2.9".into(),
                    action: action.into(),
                    detail: "{}".into(),
                })
                .await
                .unwrap();
        }
        let opts = SiemOptions {
            target: SiemTarget::parse(&format!("https://localhost:{port}/ingest")).unwrap(),
            ca: Some(cert.clone()),
            facility: 10,
            token: Some("t0ken".into()),
            data_dir: dir.path().to_path_buf(),
        };
        let mut conn = None;
        let mut cursor = Cursor::default();
        let refused = forward_round(&store, &opts, "pbx1", &mut conn, &mut cursor).await;
        assert!(refused.unwrap_err().to_string().contains("503"));
        assert_eq!(cursor, Cursor::default());
        let (auth, first) = seen.recv().await.unwrap();
        assert_eq!(auth, "Bearer t0ken");
        forward_round(&store, &opts, "pbx1", &mut conn, &mut cursor)
            .await
            .unwrap();
        assert_eq!(cursor.audit, 2);
        let (_, second) = seen.recv().await.unwrap();
        assert_eq!(first, second, "the refused batch is sent again as it was");
        let events: Vec<serde_json::Value> = second
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let names: Vec<_> = events
            .iter()
            .map(|e| e["event"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["audit.login.failure", "audit.extension.create"]);
        assert_eq!(events[0]["tenant"], "acme");
        assert_eq!(events[0]["severity"], "warning");
        // Nothing new: no request at all.
        forward_round(&store, &opts, "pbx1", &mut conn, &mut cursor)
            .await
            .unwrap();
        assert!(seen.try_recv().is_err());
    }
}
