//! Tenant limits: the calls a tenant may make at once, the audio it may keep,
//! and the defaults.
//!
//! # Which limit applies where
//! A new call that a dial plan sends somewhere passes two independent layers,
//! in this order; either may refuse it (403):
//!
//! 1. **The host's built-in limits** (`pbx-guard`'s `Usage`, applied by the
//!    server's fraud controls to every call that will be placed). Their
//!    defaults are the constants below; a provider overrides them per tenant
//!    with [`TenantLimits`] (`PUT /api/v1/tenants/{tenant}/limits`, `pbx
//!    tenant limits NAME`), stored by `pbx-store`; a field left `None` keeps
//!    the default. The guard's `Limits::default` and `Limits::overridden_by`
//!    are the one place these are applied.
//!
//!    | limit | default | counted over |
//!    | --- | --- | --- |
//!    | concurrent calls of the tenant | [`DEFAULT_MAX_CONCURRENT_TENANT`] (100) | calls in progress |
//!    | concurrent calls of one extension | [`DEFAULT_MAX_CONCURRENT_EXTENSION`] (4) | calls in progress |
//!    | new calls per second of the tenant | [`DEFAULT_MAX_CALLS_PER_SECOND`] (10) | the last second |
//!    | spend per UTC day | [`DEFAULT_DAILY_CAP_CENTS`] (10,000 cents) | finished calls |
//!
//! 2. **The shipped `default-policy` plugin** (`plugins/default-policy`), run
//!    for every tenant after the dial plan, with its own, tighter concurrent
//!    limit [`SHIPPED_POLICY_MAX_CONCURRENT`] (10), which the provider changes
//!    with `pbx policy config set default-policy max-concurrent-calls N`
//!    (provider-wide or `--tenant T`). The plugin cannot link this crate, so it
//!    carries the same number itself; a test in `pbx-plugin` checks that they
//!    agree.
//!
//! With the shipped defaults a tenant therefore has at most 10 calls at once;
//! raising the policy's value lets a tenant up to its built-in cap (100 unless
//! overridden), which bounds what any policy configuration allows.
//!
//! # Tenant media (prompts and voicemail)
//! Audio a tenant keeps (`pbx-store`'s `audio.rs`) is bounded per tenant:
//!
//! | limit | default | counted over |
//! | --- | --- | --- |
//! | media storage of the tenant | [`DEFAULT_MEDIA_STORAGE_BYTES`] (200 MiB), or its [`TenantLimits::media_storage_bytes`] | prompts, voicemail messages and call recordings, as 8 kHz mono WAV bytes |
//! | one prompt | [`MAX_PROMPT_BYTES`] (5 MiB) and [`MAX_PROMPT_MS`] (5 minutes) | the prompt stored |
//! | one voicemail message | [`MAX_VOICEMAIL_BYTES`] (10 MiB, about 10 minutes) | the message stored |
//! | messages in one mailbox | [`MAX_VOICEMAIL_MESSAGES`] (100) | messages kept, heard or not |
//! | one call recording | [`MAX_CALL_RECORDING_BYTES`] (64 MiB, about 70 minutes) | the recording stored |
//!
//! | recorded audio of the tenant | [`DEFAULT_RECORDING_MINUTES`] (180 minutes), or its [`TenantLimits::recording_minutes`] | voicemail messages and call recordings by their length |
//!
//! Both quotas are checked in the transaction that stores a message. A
//! recording does not start when the tenant has less than half a second of
//! recording minutes left (the caller hears the tenant's `recording-full`
//! prompt, or the error tone, and the call's record is tagged
//! `recording-minutes-full`), and one in progress is cut when the minutes
//! left at its start run out.
//!
//! A tenant's admins choose how long voicemail is kept (1 to
//! [`MAX_VOICEMAIL_RETENTION_DAYS`] days, [`DEFAULT_VOICEMAIL_RETENTION_DAYS`]
//! until they do); older messages are deleted by the server's hourly sweep.
//!
//! # Host media sessions
//! A call whose media the host itself plays, gathers or records (IVR,
//! voicemail, the `*97` mailbox menu) holds a host media session from the
//! moment the host answers it until it is connected to a phone or ends. They
//! are bounded per tenant and for the whole host:
//!
//! | limit | default | set by |
//! | --- | --- | --- |
//! | host media sessions of one tenant | [`DEFAULT_MAX_MEDIA_SESSIONS_TENANT`] (20) | the provider's `[media] max_sessions_per_tenant`, overridden per tenant by [`TenantLimits::max_media_sessions`] |
//! | host media sessions of the host | [`DEFAULT_MAX_MEDIA_SESSIONS`] (1,000) | `[media] max_sessions` |
//!
//! A call that needs a session when its tenant (or the host) has none left
//! is answered `486 Busy Here` (the tenant's share) or `503 Service
//! Unavailable` (the host's), with a `Warning` and a `Reason` saying which,
//! and its record is tagged `media-sessions-full`. Calls bridged between
//! phones or trunks only relay media: they hold no host media session and
//! are bounded by the concurrent-call limits above.
//!
//! The same concept as `pbx-store`'s `limits.rs` at another layer: this one defines
//! the limits and their defaults, that one stores a tenant's own.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Calls of one tenant in progress at once (the host's built-in cap).
pub const DEFAULT_MAX_CONCURRENT_TENANT: u32 = 100;
/// Calls of one extension in progress at once.
pub const DEFAULT_MAX_CONCURRENT_EXTENSION: u32 = 4;
/// New calls per second of one tenant.
pub const DEFAULT_MAX_CALLS_PER_SECOND: u32 = 10;
/// Spend per UTC day of one tenant, cents.
pub const DEFAULT_DAILY_CAP_CENTS: u64 = 10_000;
/// The shipped `default-policy` plugin's `max-concurrent-calls` when the
/// provider has not configured it.
pub const SHIPPED_POLICY_MAX_CONCURRENT: u32 = 10;

/// Audio bytes (prompts and voicemail) one tenant may keep, unless the
/// provider sets [`TenantLimits::media_storage_bytes`].
pub const DEFAULT_MEDIA_STORAGE_BYTES: u64 = 200 << 20;
/// The largest prompt stored (its 8 kHz mono 16-bit WAV): room for
/// [`MAX_PROMPT_MS`] of audio and its header.
pub const MAX_PROMPT_BYTES: u64 = 5 << 20;
/// The longest prompt stored; the media engine plays no longer a prompt
/// (`pbx-media`'s `MAX_PROMPT`, checked to agree by a test there).
pub const MAX_PROMPT_MS: u64 = 300_000;
/// The largest voicemail message stored (its 8 kHz mono 16-bit WAV).
pub const MAX_VOICEMAIL_BYTES: u64 = 10 << 20;
/// The largest call recording stored (its 8 kHz mono 16-bit WAV): about an
/// hour and ten minutes; a longer call keeps its first part.
pub const MAX_CALL_RECORDING_BYTES: u64 = 64 << 20;
/// Messages one mailbox keeps; a caller reaching a full mailbox cannot leave
/// one.
pub const MAX_VOICEMAIL_MESSAGES: u32 = 100;
/// Days voicemail is kept until a tenant's admins choose otherwise.
pub const DEFAULT_VOICEMAIL_RETENTION_DAYS: u32 = 60;
/// The longest retention a tenant may choose, days (ten years).
pub const MAX_VOICEMAIL_RETENTION_DAYS: u32 = 3650;

/// Host media sessions (IVR, voicemail, mailbox menu) one tenant may hold at
/// once, unless the provider configures another default or sets
/// [`TenantLimits::max_media_sessions`].
pub const DEFAULT_MAX_MEDIA_SESSIONS_TENANT: u32 = 20;
/// Host media sessions the whole host holds at once, unless configured.
pub const DEFAULT_MAX_MEDIA_SESSIONS: u32 = 1_000;
/// Minutes of recorded audio (voicemail and recorded calls) one tenant may keep, unless the
/// provider sets [`TenantLimits::recording_minutes`]. Below what
/// [`DEFAULT_MEDIA_STORAGE_BYTES`] holds (about 218 minutes of 8 kHz 16-bit
/// audio), so that it is the limit a tenant meets first.
pub const DEFAULT_RECORDING_MINUTES: u32 = 180;

/// A tenant's own values of the host's built-in limits; `None` leaves the
/// default in force (see the [module docs](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TenantLimits {
    pub max_concurrent: Option<u32>,
    pub max_concurrent_extension: Option<u32>,
    pub max_calls_per_second: Option<u32>,
    pub daily_cap_cents: Option<u64>,
    /// Audio bytes the tenant may keep (prompts and voicemail);
    /// [`DEFAULT_MEDIA_STORAGE_BYTES`] when `None`.
    #[serde(default)]
    pub media_storage_bytes: Option<u64>,
    /// Host media sessions the tenant may hold at once; the provider's
    /// configured default ([`DEFAULT_MAX_MEDIA_SESSIONS_TENANT`] unless
    /// configured) when `None`.
    #[serde(default)]
    pub max_media_sessions: Option<u32>,
    /// Minutes of recorded audio the tenant may keep;
    /// [`DEFAULT_RECORDING_MINUTES`] when `None`.
    #[serde(default)]
    pub recording_minutes: Option<u32>,
}

impl TenantLimits {
    /// The media storage quota in force: the tenant's own or the default.
    pub fn media_storage_quota(&self) -> u64 {
        self.media_storage_bytes
            .unwrap_or(DEFAULT_MEDIA_STORAGE_BYTES)
    }

    /// The recorded audio quota in force, milliseconds: the tenant's own or
    /// the default.
    pub fn recording_quota_ms(&self) -> u64 {
        u64::from(self.recording_minutes.unwrap_or(DEFAULT_RECORDING_MINUTES)) * 60_000
    }
}
