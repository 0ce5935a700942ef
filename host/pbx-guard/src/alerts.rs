//! Alerts and the webhook payload signer.
//!
//! The same concept as `pbx-plugin`'s `caps/alerts.rs` at another layer: this one
//! signs and pushes alerts out of the host, that one lets a plugin raise them.

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::{Error, Result};

/// Stable alert event names (the API, the store and webhooks use these).
pub mod events {
    /// A source was banned for repeated authentication failures.
    pub const SIP_BAN: &str = "sip.ban";
    /// A scanner was detected and banned.
    pub const SIP_SCANNER: &str = "sip.scanner";
    /// One extension fails authentication from many sources.
    pub const SIP_EXTENSION_ATTACKED: &str = "sip.extension-attacked";
    /// Calls far above the usual rate.
    pub const FRAUD_BURST: &str = "fraud.burst";
    /// International or premium calls outside business hours.
    pub const FRAUD_OFF_HOURS: &str = "fraud.off-hours";
    /// Many short calls to many destinations (IRSF / wangiri).
    pub const FRAUD_SHORT_CALLS: &str = "fraud.short-calls";
    /// More simultaneous calls than normal.
    pub const FRAUD_CONCURRENCY: &str = "fraud.concurrency";
    /// A call was denied by a usage limit.
    pub const LIMIT_DENIED: &str = "limit.denied";
}

pub use model::{Alert, Severity};

/// The JSON body a webhook receives: an [`Alert`] with its tenant shown by
/// name, the way webhook receivers know tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookAlert {
    /// The tenant's display name; `None` for provider-wide alerts (bans,
    /// scanners) or when the name is not known.
    pub tenant: Option<String>,
    pub severity: Severity,
    /// A stable name from [`events`].
    pub event: String,
    pub message: String,
    /// When it happened, Unix milliseconds.
    pub at_ms: i64,
}

impl WebhookAlert {
    /// The payload of `alert`, whose tenant is called `tenant_name`.
    pub fn new(alert: &Alert, tenant_name: Option<String>) -> WebhookAlert {
        WebhookAlert {
            tenant: tenant_name,
            severity: alert.severity,
            event: alert.event.clone(),
            message: alert.message.clone(),
            at_ms: alert.at_ms,
        }
    }
}

/// The HTTP header that carries [`WebhookSigner::sign`]'s value.
pub const SIGNATURE_HEADER: &str = "X-PBX-Signature";

/// A webhook body ready to post, with its signature header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedPayload {
    /// The JSON body, exactly the bytes that were signed.
    pub body: Vec<u8>,
    /// `sha256=<lower-case hex HMAC-SHA256 of body>`.
    pub signature: String,
}

/// Signs webhook bodies with a shared secret: HMAC-SHA256 over the exact body
/// bytes, sent as `sha256=<hex>` so receivers can verify the sender.
#[derive(Clone)]
pub struct WebhookSigner {
    mac: Hmac<Sha256>,
}

impl std::fmt::Debug for WebhookSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSigner(..)")
    }
}

impl WebhookSigner {
    /// A signer for `secret`, which must not be empty.
    pub fn new(secret: &[u8]) -> Result<WebhookSigner> {
        if secret.is_empty() {
            return Err(Error::Config("webhook secret is empty".into()));
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|_| Error::Config("webhook secret is unusable".into()))?;
        Ok(WebhookSigner { mac })
    }

    fn mac(&self) -> Hmac<Sha256> {
        self.mac.clone()
    }

    /// The signature header value for `body`: `sha256=<hex>`.
    pub fn sign(&self, body: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    /// Checks a received header value against `body` in constant time.
    pub fn verify(&self, body: &[u8], header: &str) -> bool {
        let Some(hex_sig) = header.trim().strip_prefix("sha256=") else {
            return false;
        };
        let Ok(sig) = hex::decode(hex_sig) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(body);
        mac.verify_slice(&sig).is_ok()
    }

    /// Encodes `alert` as JSON and signs it.
    pub fn payload(&self, alert: &WebhookAlert) -> Result<SignedPayload> {
        let body = serde_json::to_vec(alert).map_err(|e| Error::Json(e.to_string()))?;
        let signature = self.sign(&body);
        Ok(SignedPayload { body, signature })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc4231_test_case_2() {
        let signer = WebhookSigner::new(b"Jefe").expect("signer");
        assert_eq!(
            signer.sign(b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn payload_is_json_and_verifies() {
        let signer = WebhookSigner::new(b"s3cret").expect("signer");
        let alert = Alert {
            tenant: Some(model::TenantId(7)),
            severity: Severity::Critical,
            event: events::FRAUD_BURST.into(),
            message: "120 calls in an hour".into(),
            at_ms: 1_700_000_000_000,
        };
        let alert = WebhookAlert::new(&alert, Some("acme".into()));
        let p = signer.payload(&alert).expect("payload");
        let v: serde_json::Value = serde_json::from_slice(&p.body).expect("json");
        assert_eq!(v["event"], "fraud.burst");
        assert_eq!(v["severity"], "critical");
        assert_eq!(v["tenant"], "acme");
        assert_eq!(v["at_ms"], 1_700_000_000_000_i64);
        assert!(signer.verify(&p.body, &p.signature));
        let mut tampered = p.body.clone();
        tampered[0] = b' ';
        assert!(!signer.verify(&tampered, &p.signature));
        assert!(
            !WebhookSigner::new(b"other")
                .expect("s")
                .verify(&p.body, &p.signature)
        );
        assert!(!signer.verify(&p.body, "sha1=00"));
        assert!(!signer.verify(&p.body, "sha256=zz"));
    }

    #[test]
    fn provider_alerts_have_null_tenant_and_empty_secret_is_refused() {
        let alert = Alert {
            tenant: None,
            severity: Severity::Warning,
            event: events::SIP_BAN.into(),
            message: "m".into(),
            at_ms: 1,
        };
        let alert = WebhookAlert::new(&alert, None);
        let v = serde_json::to_value(&alert).expect("json");
        assert!(v["tenant"].is_null());
        assert!(WebhookSigner::new(b"").is_err());
        assert_eq!(Severity::Info.as_str(), "info");
    }
}
