//! The media anchor the SIP core uses, over `pbx-media`'s relay: one relay call
//! per SIP call, SDP passed through its session, and the relay's idle reports
//! routed back to the shard that owns the call.
//!
//! The same concept as `pbx-core`'s `media.rs` at another layer: that one is the
//! trait the B2BUA asks, this one implements it over the relay.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use pbx_core::{
    CallMediaHandle, CdrMedia, LegMedia, MediaAnchor, MediaEncryption, MediaLeg, MediaRefusal,
    MediaSecurity,
};
use pbx_media::{
    CallId, CallMedia, EncryptionPolicy, Leg, LegStats, MediaConfig, MediaError, MediaEvent,
    MediaRelay, Security,
};
use tokio::sync::mpsc;

/// Media relay settings; the defaults suit a host with one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaOptions {
    /// Address the media sockets bind to; by default the first SIP listener's
    /// (the unspecified address when that is unspecified).
    pub bind_ip: Option<IpAddr>,
    /// Address written into SDP; by default the bind address, or the address
    /// advertised for SIP when binding to the unspecified address.
    pub advertise_ip: Option<IpAddr>,
    /// Lowest RTP port (inclusive).
    pub port_min: u16,
    /// Highest port (inclusive).
    pub port_max: u16,
    /// A call with no media for this long is hung up.
    pub idle_timeout: Duration,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            bind_ip: None,
            advertise_ip: None,
            port_min: 20000,
            port_max: 29999,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Which shard and core call a relay call belongs to.
type Owners = Arc<DashMap<CallId, (usize, u64)>>;

/// [`MediaAnchor`] over a [`MediaRelay`].
pub(crate) struct RelayAnchor {
    relay: MediaRelay,
    owners: Owners,
}

impl RelayAnchor {
    /// Builds the relay; idle calls are reported on the returned channel as
    /// `(shard, call)`, fed by the task [`RelayAnchor::route_events`] runs.
    pub(crate) fn new(
        config: MediaConfig,
    ) -> Result<(RelayAnchor, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let (relay, events) = MediaRelay::new(config)?;
        Ok((
            RelayAnchor {
                relay,
                owners: Arc::new(DashMap::new()),
            },
            events,
        ))
    }

    /// Forwards idle reports to the owning shard's queue until the relay is gone
    /// or `stop` fires.
    pub(crate) fn route_events(
        &self,
        mut events: mpsc::UnboundedReceiver<MediaEvent>,
        shards: Vec<mpsc::UnboundedSender<u64>>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let owners = self.owners.clone();
        async move {
            while let Some(event) = events.recv().await {
                // Prompt and digit events matter once call control plays
                // and gathers (media applications); only idleness ends calls.
                let MediaEvent::Idle { call, .. } = event else {
                    continue;
                };
                let Some((shard, id)) = owners.get(&call).map(|o| *o) else {
                    continue;
                };
                tracing::info!(shard, call = id, "media stopped");
                if let Some(tx) = shards.get(shard) {
                    let _ = tx.send(id);
                }
            }
        }
    }
}

impl MediaAnchor for RelayAnchor {
    fn open(&self, shard: usize, call: u64) -> Result<Box<dyn CallMediaHandle>, MediaRefusal> {
        let media = self.relay.open_call().map_err(refusal)?;
        self.owners.insert(media.id(), (shard, call));
        Ok(Box::new(Handle {
            media,
            owners: self.owners.clone(),
        }))
    }
}

/// One call's relay; forgets its owner when dropped.
struct Handle {
    media: CallMedia,
    owners: Owners,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.owners.remove(&self.media.id());
    }
}

fn leg(l: MediaLeg) -> Leg {
    match l {
        MediaLeg::Caller => Leg::A,
        MediaLeg::Callee => Leg::B,
    }
}

fn security(s: MediaSecurity) -> Security {
    Security {
        from_secure: s.from_secure,
        to_secure: s.to_secure,
    }
}

pub(crate) fn policy(p: MediaEncryption) -> EncryptionPolicy {
    match p {
        MediaEncryption::Required => EncryptionPolicy::Required,
        MediaEncryption::Optional => EncryptionPolicy::Optional,
        MediaEncryption::Disabled => EncryptionPolicy::Disabled,
    }
}

/// The SIP answer to a media error: malformed SDP is 400, what we cannot or may
/// not do is 488, local trouble 500/503.
pub(crate) fn refusal(e: MediaError) -> MediaRefusal {
    let status = match &e {
        MediaError::Sdp { .. } | MediaError::Crypto(_) => 400,
        MediaError::NotAcceptable(_)
        | MediaError::EncryptionRequired(_)
        | MediaError::Protocol(_) => 488,
        MediaError::PortsExhausted => 503,
        _ => 500,
    };
    MediaRefusal::new(status, e.to_string())
}

fn leg_media(s: &LegStats) -> LegMedia {
    LegMedia {
        packets_in: s.packets_in,
        bytes_in: s.bytes_in,
        packets_out: s.packets_out,
        bytes_out: s.bytes_out,
        srtp_auth_failures: s.srtp_auth_failures,
        packets_lost: s.packets_lost,
    }
}

impl CallMediaHandle for Handle {
    fn offer(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        sec: MediaSecurity,
        p: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.media
            .offer_from(leg(from), sdp, security(sec), policy(p))
            .map_err(refusal)
    }

    fn answer(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        sec: MediaSecurity,
        p: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.media
            .answer_from(leg(from), sdp, security(sec), policy(p))
            .map_err(refusal)
    }

    fn answer_here(
        &self,
        from: MediaLeg,
        sdp: &[u8],
        from_secure: bool,
        p: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal> {
        self.media
            .answer_here(leg(from), sdp, from_secure, policy(p))
            .map_err(refusal)
    }

    fn stats(&self) -> CdrMedia {
        let s = self.media.stats();
        CdrMedia {
            caller: leg_media(&s.a),
            callee: leg_media(&s.b),
        }
    }

    fn idle_since(&self) -> Instant {
        self.media.idle_since()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MediaConfig {
        MediaConfig {
            bind_ip: "127.0.0.1".parse().unwrap(),
            advertise_ip: None,
            port_min: 31000,
            port_max: 31999,
            idle_timeout: Duration::from_millis(50),
        }
    }

    const OFFER: &[u8] = b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n";

    #[test]
    fn errors_map_to_sip_statuses() {
        assert_eq!(refusal(MediaError::Crypto("x")).status, 400);
        assert_eq!(refusal(MediaError::NotAcceptable("x")).status, 488);
        assert_eq!(refusal(MediaError::EncryptionRequired("x")).status, 488);
        assert_eq!(refusal(MediaError::PortsExhausted).status, 503);
        assert_eq!(refusal(MediaError::Config("x")).status, 500);
    }

    #[tokio::test]
    async fn offers_point_at_the_relay_and_idle_calls_reach_their_shard() {
        let (anchor, events) = RelayAnchor::new(config()).expect("relay");
        let (tx0, _rx0) = mpsc::unbounded_channel();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        tokio::spawn(anchor.route_events(events, vec![tx0, tx1]));
        let handle = anchor.open(1, 42).expect("open");
        let plain = MediaSecurity {
            from_secure: false,
            to_secure: false,
        };
        let out = handle
            .offer(MediaLeg::Caller, OFFER, plain, MediaEncryption::Optional)
            .expect("offer");
        let text = String::from_utf8(out).expect("utf8");
        assert!(text.contains("c=IN IP4 127.0.0.1"), "{text}");
        assert!(!text.contains("m=audio 4000 "), "port rewritten: {text}");
        assert_eq!(
            handle
                .offer(MediaLeg::Caller, OFFER, plain, MediaEncryption::Required)
                .map_err(|r| r.status),
            Err(488)
        );
        assert_eq!(
            handle
                .offer(
                    MediaLeg::Caller,
                    b"garbage",
                    plain,
                    MediaEncryption::Optional
                )
                .map_err(|r| r.status),
            Err(400)
        );
        assert_eq!(handle.stats(), CdrMedia::default());
        // No media flows: the relay reports the call to shard 1 as call 42.
        let idle = tokio::time::timeout(Duration::from_secs(5), rx1.recv())
            .await
            .expect("idle report");
        assert_eq!(idle, Some(42));
        drop(handle);
        assert!(anchor.owners.is_empty(), "owner forgotten with the handle");
    }
}
