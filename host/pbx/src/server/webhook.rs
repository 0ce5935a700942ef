//! Pushes alerts to a provider's webhook: an HTTP POST of the alert as JSON,
//! signed with HMAC-SHA256 over the exact body (`X-PBX-Signature: sha256=<hex>`),
//! so the receiver can check that it came from this host unaltered.
//!
//! Plain `http://` only (the receiver is expected on the provider's own network
//! or behind its TLS proxy); each delivery is bounded in time, deliveries run
//! one at a time off the call path, and a failure is logged, never retried in a
//! loop.

use std::time::Duration;

use pbx_guard::{WebhookAlert, WebhookSigner};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Where alerts go and the shared secret that signs them.
#[derive(Clone)]
pub struct Webhook {
    host: String,
    port: u16,
    path: String,
    signer: WebhookSigner,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Webhook(http://{}:{}{})",
            self.host, self.port, self.path
        )
    }
}

/// How long one delivery may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(5);

impl Webhook {
    /// Parses `http://HOST[:PORT][/PATH]`; the secret must not be empty.
    pub fn new(url: &str, secret: &str) -> anyhow::Result<Webhook> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| anyhow::anyhow!("webhook URL must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>()?),
            None => (authority, 80),
        };
        if host.is_empty() || path.chars().any(|c| c.is_control() || c == ' ') {
            anyhow::bail!("bad webhook URL {url}");
        }
        let signer = WebhookSigner::new(secret.as_bytes())
            .map_err(|e| anyhow::anyhow!("webhook secret: {e}"))?;
        Ok(Webhook {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            path: path.to_string(),
            signer,
        })
    }

    /// Delivers one alert; returns the receiver's HTTP status.
    pub(crate) async fn deliver(&self, alert: &WebhookAlert) -> anyhow::Result<u16> {
        let payload = self
            .signer
            .payload(alert)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tokio::time::timeout(
            DELIVERY_TIMEOUT,
            self.post(&payload.body, &payload.signature),
        )
        .await
        .map_err(|_| anyhow::anyhow!("webhook timed out"))?
    }

    async fn post(&self, body: &[u8], signature: &str) -> anyhow::Result<u16> {
        let mut stream = TcpStream::connect((self.host.as_str(), self.port)).await?;
        let head = format!(
            "POST {} HTTP/1.1\r\nHost: {}:{}\r\nContent-Type: application/json\r\n\
             {}: {signature}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.path,
            self.host,
            self.port,
            pbx_guard::alerts::SIGNATURE_HEADER,
            body.len()
        );
        stream.write_all(head.as_bytes()).await?;
        stream.write_all(body).await?;
        let mut reply = Vec::with_capacity(256);
        let mut chunk = [0u8; 256];
        while !reply.windows(2).any(|w| w == b"\r\n") && reply.len() < 4096 {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            reply.extend_from_slice(&chunk[..n]);
        }
        let status = std::str::from_utf8(&reply)
            .ok()
            .and_then(|r| r.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("no HTTP status from the webhook"))?;
        Ok(status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn urls_are_checked() {
        assert!(Webhook::new("https://x.example/hook", "s").is_err());
        assert!(Webhook::new("http://x.example/hook", "").is_err());
        assert!(Webhook::new("http://:80/", "s").is_err());
        let w = Webhook::new("http://127.0.0.1:9000/alerts", "s").unwrap();
        assert_eq!(
            (w.host.as_str(), w.port, w.path.as_str()),
            ("127.0.0.1", 9000, "/alerts")
        );
        let w = Webhook::new("http://hooks.example", "s").unwrap();
        assert_eq!((w.port, w.path.as_str()), (80, "/"));
    }

    #[tokio::test]
    async fn a_delivery_carries_a_signature_the_receiver_can_verify() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let receiver = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 1024];
            loop {
                let n = s.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("Content-Length: "))
                        .unwrap()
                        .parse()
                        .unwrap();
                    if body.len() >= len {
                        s.write_all(b"HTTP/1.1 204 No Content\r\n\r\n")
                            .await
                            .unwrap();
                        return (head.to_string(), body.to_string());
                    }
                }
                assert!(n > 0, "connection closed early");
            }
        });
        let hook = Webhook::new(&format!("http://{addr}/alerts"), "shared-secret").unwrap();
        let alert = WebhookAlert {
            tenant: Some("acme".into()),
            severity: pbx_guard::Severity::Critical,
            event: "fraud.burst".into(),
            message: "burst".into(),
            at_ms: 1,
        };
        assert_eq!(hook.deliver(&alert).await.unwrap(), 204);
        let (head, body) = receiver.await.unwrap();
        assert!(head.starts_with("POST /alerts HTTP/1.1"));
        let signature = head
            .lines()
            .find_map(|l| l.strip_prefix("X-PBX-Signature: "))
            .expect("signature header");
        let check = WebhookSigner::new(b"shared-secret").unwrap();
        assert!(check.verify(body.as_bytes(), signature));
        assert!(!check.verify(body.replace("burst", "bursT").as_bytes(), signature));
        assert!(body.contains("\"fraud.burst\""));
    }
}
