//! The media anchor the SIP core uses, over `pbx-media`'s relay: one relay call
//! per SIP call, SDP passed through its session, and the relay's reports
//! (idleness, prompts played, keys pressed, recordings) routed back to the
//! shard that owns the call. Prompts are loaded from the call's tenant's
//! storage and recordings stored in its mailboxes here, off the SIP path.
//!
//! The same concept as `pbx-core`'s `media.rs` at another layer: that one is the
//! trait the B2BUA asks, this one implements it over the relay.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use pbx_core::{
    CallMediaHandle, CdrMedia, HostMediaFull, LegMedia, MediaAnchor, MediaEncryption, MediaLeg,
    MediaNotice, MediaRefusal, MediaSecurity, PromptRef, Record, Tone,
};
use pbx_guard::{MediaSessions, SessionCaps, SessionGuard, SessionsFull};
use pbx_media::{
    CallId, CallMedia, EncryptionPolicy, Leg, LegStats, MediaConfig, MediaControl, MediaError,
    MediaEvent, MediaRelay, Prompt, RecordSpec, Recording, Security,
};
use store::{Store, TenantId};
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
    /// Host media sessions (IVR, voicemail, mailbox menu) of the whole host
    /// and of a tenant without its own cap (`pbx_model::limits`).
    pub sessions: SessionCaps,
}

impl Default for MediaOptions {
    fn default() -> Self {
        MediaOptions {
            bind_ip: None,
            advertise_ip: None,
            port_min: 20000,
            port_max: 29999,
            idle_timeout: Duration::from_secs(60),
            sessions: SessionCaps::default(),
        }
    }
}

/// What the mailbox menu of a call hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MenuInput {
    /// The caller pressed a key.
    Key(char),
    /// A prompt it queued has been played.
    Played,
}

/// What a shard hears from the media of its calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ToShard {
    /// No media on the call for the idle timeout.
    Idle(u64),
    /// A prompt, key or recording of a call the host answered.
    Notice(u64, MediaNotice),
    /// A mailbox changed: its new and old message counts, for the
    /// mailbox's phones (every shard hears it: see [`Mailboxes`]).
    Mailbox(TenantId, String, (u32, u32)),
}

/// Tells the SIP core that a mailbox changed (a message recorded, deleted,
/// saved or heard), so that the extension's phones hear its new counts.
#[derive(Clone)]
pub(crate) struct Mailboxes {
    store: Store,
    shards: Shards,
}

impl Mailboxes {
    pub(crate) fn new(store: Store, shards: Vec<mpsc::UnboundedSender<ToShard>>) -> Mailboxes {
        Mailboxes {
            store,
            shards: Arc::new(shards),
        }
    }

    /// Counts the mailbox as stored now and gives the counts to every shard:
    /// its subscriptions may live on any of them, and shard 0 tells the
    /// phones without one.
    pub(crate) async fn changed(&self, tenant: TenantId, mailbox: &str) {
        match self.store.mailbox_counts(tenant, mailbox).await {
            Ok(counts) => {
                for shard in self.shards.iter() {
                    let _ = shard.send(ToShard::Mailbox(tenant, mailbox.to_string(), counts));
                }
            }
            Err(e) => tracing::warn!(%tenant, mailbox, error = %e, "mailbox not counted"),
        }
    }
}

/// Whom a relay call belongs to, and what its host end is doing.
#[derive(Debug)]
struct Owner {
    shard: usize,
    call: u64,
    tenant: TenantId,
    /// Prompts queued by the last play and not yet finished.
    prompts: usize,
    /// Goes up with every play and stop, so that a play whose prompts were
    /// still loading when it was replaced plays nothing.
    generation: u64,
    /// The mailbox and caller of the recording under way.
    recording: Option<(String, String)>,
    /// The mailbox menu running on the call: what it plays and hears.
    menu: Option<mpsc::UnboundedSender<MenuInput>>,
    /// What the shard hears when the prompts queued by the last play end:
    /// `PromptFinished`, or `MailboxFull` after the mailbox-full prompt.
    at_end: MediaNotice,
    /// The host media session the call holds while the host plays, gathers
    /// or records on it.
    session: Option<SessionGuard>,
    /// The caller and callee of the call being recorded (the tenant's
    /// `call_recording` setting), stored when the call ends.
    recorded_call: Option<(String, String)>,
}

/// Which shard and core call a relay call belongs to.
type Owners = Arc<DashMap<CallId, Owner>>;

/// Each shard's queue of what the media reports.
type Shards = Arc<Vec<mpsc::UnboundedSender<ToShard>>>;

/// What the media of calls reads of each tenant's settings, kept in memory
/// and replaced on every reload: the host media session caps and which
/// tenants record their calls.
#[derive(Debug, Clone)]
pub(crate) struct TenantMedia {
    pub(crate) sessions: Arc<MediaSessions>,
    recording: Arc<parking_lot::RwLock<std::collections::HashSet<TenantId>>>,
}

impl TenantMedia {
    pub(crate) fn new(caps: SessionCaps) -> TenantMedia {
        TenantMedia {
            sessions: MediaSessions::new(caps),
            recording: Arc::default(),
        }
    }

    /// Reads every tenant's media limits and call recording setting.
    pub(crate) async fn reload(&self, store: &Store) -> store::Result<()> {
        self.sessions
            .set_tenant_limits(&store.all_tenant_limits().await?);
        *self.recording.write() = store.call_recording_tenants().await?.into_iter().collect();
        Ok(())
    }

    fn records(&self, tenant: TenantId) -> bool {
        self.recording.read().contains(&tenant)
    }
}

/// [`MediaAnchor`] over a [`MediaRelay`].
pub(crate) struct RelayAnchor {
    relay: MediaRelay,
    tenants: TenantMedia,
    owners: Owners,
    store: Store,
    runtime: tokio::runtime::Handle,
    shards: Shards,
    mailboxes: Mailboxes,
}

/// Shortest recording kept as a message: less is a caller who hung up at
/// the beep.
const MIN_MESSAGE: Duration = Duration::from_millis(500);

/// The bytes of a [`MIN_MESSAGE`] as stored (8 kHz 16-bit WAV): a tenant's
/// storage with less room than this is a full mailbox.
const MIN_MESSAGE_BYTES: u64 = 44 + 16 * MIN_MESSAGE.as_millis() as u64;

/// What a caller hears instead of the greeting when the tenant's storage
/// has no room for a message: the tenant's own `vm-mailbox-full` prompt
/// when it has one, then two seconds of reorder tone.
fn mailbox_full_prompts() -> Vec<PromptRef> {
    vec![
        PromptRef::Tenant("vm-mailbox-full".into()),
        PromptRef::Tone(Tone::Reorder),
    ]
}

impl RelayAnchor {
    /// Builds the relay; what it reports goes to the owning shards through
    /// the task [`RelayAnchor::route_events`] runs. Must be called within
    /// the runtime that loads prompts and stores recordings.
    pub(crate) fn new(
        config: MediaConfig,
        tenants: TenantMedia,
        mailboxes: Mailboxes,
    ) -> Result<(RelayAnchor, mpsc::UnboundedReceiver<MediaEvent>), MediaError> {
        let (relay, events) = MediaRelay::new(config)?;
        Ok((
            RelayAnchor {
                relay,
                tenants,
                owners: Arc::new(DashMap::new()),
                store: mailboxes.store.clone(),
                runtime: tokio::runtime::Handle::current(),
                shards: mailboxes.shards.clone(),
                mailboxes,
            },
            events,
        ))
    }

    /// Forwards the relay's reports to the owning shard's queue until the
    /// relay is gone. A recording is stored first (in its own task) and the
    /// shard hears where it went.
    pub(crate) fn route_events(
        &self,
        mut events: mpsc::UnboundedReceiver<MediaEvent>,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        let owners = self.owners.clone();
        let store = self.store.clone();
        let shards = self.shards.clone();
        let mailboxes = self.mailboxes.clone();
        async move {
            while let Some(event) = events.recv().await {
                let (call, message) = match event {
                    MediaEvent::Idle { call, .. } => {
                        let Some(o) = owners.get(&call) else { continue };
                        tracing::info!(shard = o.shard, call = o.call, "media stopped");
                        (call, ToShard::Idle(o.call))
                    }
                    // A browser leg that cannot key its media is as good as
                    // a call whose media stopped: the call ends.
                    MediaEvent::DtlsFailed { call, leg } => {
                        let Some(o) = owners.get(&call) else { continue };
                        tracing::info!(shard = o.shard, call = o.call, ?leg, "DTLS failed");
                        (call, ToShard::Idle(o.call))
                    }
                    MediaEvent::PromptFinished { call, leg: Leg::A } => {
                        let Some(mut o) = owners.get_mut(&call) else {
                            continue;
                        };
                        if let Some(menu) = &o.menu {
                            let _ = menu.send(MenuInput::Played);
                            continue;
                        }
                        if o.prompts == 0 {
                            continue;
                        }
                        o.prompts -= 1;
                        if o.prompts > 0 {
                            continue;
                        }
                        let notice = std::mem::replace(&mut o.at_end, MediaNotice::PromptFinished);
                        (call, ToShard::Notice(o.call, notice))
                    }
                    MediaEvent::Digit {
                        call,
                        leg: Leg::A,
                        digit,
                        ..
                    } => {
                        let Some(o) = owners.get(&call) else { continue };
                        (call, ToShard::Notice(o.call, MediaNotice::Digit(digit)))
                    }
                    MediaEvent::RecordingFinished {
                        call,
                        leg: Leg::A,
                        recording,
                    } => {
                        let Some(mut o) = owners.get_mut(&call) else {
                            continue;
                        };
                        let Some((mailbox, caller)) = o.recording.take() else {
                            continue;
                        };
                        let (shard, id, tenant) = (o.shard, o.call, o.tenant);
                        drop(o);
                        let (store, shards) = (store.clone(), shards.clone());
                        let mailboxes = mailboxes.clone();
                        tokio::spawn(async move {
                            let notice = store_recording(
                                &store,
                                &mailboxes,
                                tenant,
                                (&mailbox, &caller),
                                recording,
                            )
                            .await;
                            if let Some(tx) = shards.get(shard) {
                                let _ = tx.send(ToShard::Notice(id, notice));
                            }
                        });
                        continue;
                    }
                    _ => continue,
                };
                let shard = owners.get(&call).map(|o| o.shard);
                if let Some(tx) = shard.and_then(|s| shards.get(s)) {
                    let _ = tx.send(message);
                }
            }
        }
    }
}

/// Stores a finished recording as a message of `mailbox` and tells the
/// mailbox's phones.
async fn store_recording(
    store: &Store,
    mailboxes: &Mailboxes,
    tenant: TenantId,
    (mailbox, caller): (&str, &str),
    mut recording: Recording,
) -> MediaNotice {
    if recording.duration() < MIN_MESSAGE {
        return MediaNotice::RecordingFailed("nothing was recorded".into());
    }
    // Whatever else the tenant recorded meanwhile, the message fits in the
    // minutes left now (the store checks again as it adds the row).
    match store.recording_ms_left(tenant).await {
        Ok(left) => {
            let samples = usize::try_from(left.saturating_mul(8)).unwrap_or(usize::MAX);
            recording.samples.truncate(samples);
        }
        Err(e) => return MediaNotice::RecordingFailed(e.to_string()),
    }
    let duration = recording.duration();
    if duration < MIN_MESSAGE {
        return MediaNotice::RecordingMinutesFull;
    }
    let wav = recording.to_wav();
    let ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
    let saved = match store
        .save_voicemail(tenant, mailbox, caller, &wav, ms)
        .await
    {
        Ok(message) => message,
        Err(e) => {
            tracing::warn!(%tenant, mailbox, error = %e, "recording not stored");
            return MediaNotice::RecordingFailed(e.to_string());
        }
    };
    mailboxes.changed(tenant, mailbox).await;
    MediaNotice::RecordingStored {
        id: saved.id,
        duration,
    }
}

/// The tenant's prompt both parties of a recorded call hear before they
/// hear each other; without one, the built-in [`recording_tone`].
pub(crate) const RECORDING_NOTICE_PROMPT: &str = "recording-notice";

/// The longest call recording kept: what [`store::MAX_CALL_RECORDING_BYTES`]
/// holds at 16 bytes a millisecond.
const MAX_CALL_RECORDING: Duration =
    Duration::from_millis((store::MAX_CALL_RECORDING_BYTES - 44) / 16);

/// The built-in notice that a call is recorded: two 1400 Hz tones of half
/// a second, a fifth of a second apart.
fn recording_tone() -> Vec<Prompt> {
    let tone = || Prompt::tone(&[1400], -13.0, Duration::from_millis(500)).ok();
    [
        tone(),
        Prompt::silence(Duration::from_millis(200)).ok(),
        tone(),
    ]
    .into_iter()
    .flatten()
    .collect()
}

/// The tenant records its calls (as of the last reload) and the call's legs
/// are held: both parties hear the notice, then the recording starts, at
/// most what the tenant's recording minutes leave. Whatever prevents that
/// releases the legs, unrecorded.
/// A tenant without minutes left, or a call whose legs do not talk G.711,
/// is neither announced nor recorded (and says so in the log).
async fn announce_and_record(
    store: Store,
    owners: Owners,
    call: CallId,
    control: MediaControl,
    parties: (String, String),
) {
    let Some(tenant) = owners.get(&call).map(|o| o.tenant) else {
        return;
    };
    let left = match store.recording_ms_left(tenant).await {
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "recording minutes not read");
            control.hold(false);
            return;
        }
    };
    if left < MIN_MESSAGE {
        tracing::info!(%tenant, "recording minutes used up: call not recorded");
        control.hold(false);
        return;
    }
    let mut notice = resolve(
        &store,
        tenant,
        &[PromptRef::Tenant(RECORDING_NOTICE_PROMPT.into())],
    )
    .await;
    if notice.is_empty() {
        notice = recording_tone();
    }
    let Some(mut owner) = owners.get_mut(&call) else {
        return;
    };
    match control.announce(&notice, Some(MAX_CALL_RECORDING.min(left))) {
        Ok(()) => owner.recorded_call = Some(parties),
        Err(e) => {
            tracing::info!(%tenant, error = %e, "call not recorded");
            control.hold(false);
        }
    }
}

/// Stores what a recorded call's media kept, within the tenant's recording
/// minutes left now.
async fn store_call_recording(
    store: &Store,
    tenant: TenantId,
    (caller, callee): (String, String),
    mut recording: Recording,
) {
    match store.recording_ms_left(tenant).await {
        Ok(left) => {
            let samples = usize::try_from(left.saturating_mul(8)).unwrap_or(usize::MAX);
            recording.samples.truncate(samples);
        }
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "call recording not stored");
            return;
        }
    }
    if recording.duration() < MIN_MESSAGE {
        tracing::info!(%tenant, "call recording empty or without minutes: not stored");
        return;
    }
    let ms = u64::try_from(recording.duration().as_millis()).unwrap_or(u64::MAX);
    match store
        .save_call_recording(tenant, (&caller, &callee), &recording.to_wav(), ms)
        .await
    {
        Ok(saved) => tracing::info!(%tenant, id = %saved.id, ms, "call recording stored"),
        Err(e) => tracing::warn!(%tenant, error = %e, "call recording not stored"),
    }
}

/// Two seconds of a tone pattern: `on` of the tone pair, then `off` of
/// silence, repeated.
fn cadence(freqs: &[u32], on: Duration, off: Duration) -> Vec<Prompt> {
    let mut out = Vec::new();
    let mut total = Duration::ZERO;
    while total < Duration::from_secs(2) {
        out.extend(Prompt::tone(freqs, -13.0, on).ok());
        out.extend(Prompt::silence(off).ok());
        total += on + off;
    }
    out
}

/// The audio of a built-in prompt (nothing for a bad one).
fn builtin(prompt: &PromptRef) -> Vec<Prompt> {
    match prompt {
        PromptRef::Tone(Tone::Beep) => vec![Prompt::beep()],
        // North American ringback and busy (ITU-T E.180 lists each country's).
        PromptRef::Tone(Tone::Ringback) => cadence(
            &[440, 480],
            Duration::from_millis(1000),
            Duration::from_millis(1000),
        ),
        PromptRef::Tone(Tone::Busy) => cadence(
            &[480, 620],
            Duration::from_millis(500),
            Duration::from_millis(500),
        ),
        PromptRef::Tone(Tone::Reorder) => cadence(
            &[480, 620],
            Duration::from_millis(250),
            Duration::from_millis(250),
        ),
        PromptRef::Tone(Tone::Error) => [950, 1400, 1800]
            .iter()
            .filter_map(|f| Prompt::tone(&[*f], -13.0, Duration::from_millis(330)).ok())
            .collect(),
        PromptRef::Silence(d) => Prompt::silence((*d).min(pbx_core::MAX_SILENCE))
            .into_iter()
            .collect(),
        // Read from the store by `resolve`.
        PromptRef::Tenant(_) | PromptRef::Digits(_) => Vec::new(),
    }
}

/// The tenant's recording of `digit` (its prompt `digit-0` to `digit-9`,
/// `digit-star`, `digit-hash`), else the digit's DTMF tone; then a pause.
async fn spoken_digit(store: &Store, tenant: TenantId, digit: char) -> Vec<Prompt> {
    let name = match digit {
        '*' => "digit-star".to_string(),
        '#' => "digit-hash".to_string(),
        d => format!("digit-{}", d.to_ascii_lowercase()),
    };
    let spoken = match store.prompt_audio(tenant, &name).await {
        Ok(Some(wav)) => Prompt::from_wav(&wav).ok(),
        _ => None,
    };
    let digit = spoken.or_else(|| Prompt::dtmf(digit, Duration::from_millis(100)).ok());
    digit
        .into_iter()
        .chain(Prompt::silence(Duration::from_millis(100)).ok())
        .collect()
}

/// The audio of `prompts`: the tenant's own from its storage (one it does
/// not have, or cannot read, is skipped), the built-in ones made here.
pub(super) async fn resolve(store: &Store, tenant: TenantId, prompts: &[PromptRef]) -> Vec<Prompt> {
    let mut audio = Vec::new();
    for prompt in prompts {
        match prompt {
            PromptRef::Digits(digits) => {
                for digit in digits.chars().take(32) {
                    audio.extend(spoken_digit(store, tenant, digit).await);
                }
            }
            PromptRef::Tenant(name) => match store.prompt_audio(tenant, name).await {
                Ok(Some(wav)) => match Prompt::from_wav(&wav) {
                    Ok(p) => audio.push(p),
                    Err(e) => tracing::warn!(%tenant, name, error = %e, "prompt unreadable"),
                },
                Ok(None) => tracing::debug!(%tenant, name, "no such prompt: skipped"),
                Err(e) => tracing::warn!(%tenant, name, error = %e, "prompt not loaded"),
            },
            other => audio.extend(builtin(other)),
        }
    }
    audio
}

/// The tenant's prompt `name` when it has one, else the built-in `fallback`:
/// how the host speaks without recorded voice of its own.
pub(super) async fn resolve_or(
    store: &Store,
    tenant: TenantId,
    name: &str,
    fallback: &[PromptRef],
) -> Vec<Prompt> {
    let own = resolve(store, tenant, &[PromptRef::Tenant(name.to_string())]).await;
    if own.is_empty() {
        resolve(store, tenant, fallback).await
    } else {
        own
    }
}

/// The tenant's prompt telling a caller that no recording can be made (its
/// recording minutes are used up); the error tone when it has none.
pub(crate) const RECORDING_FULL_PROMPT: &str = "recording-full";

/// Starts recording the caller once the tenant's recording minutes left are
/// known: cut at what is left, or, with none left, the caller hears
/// [`RECORDING_FULL_PROMPT`] and the shard hears
/// [`MediaNotice::RecordingMinutesFull`] at its end.
async fn start_recording(
    store: Store,
    owners: Owners,
    call: CallId,
    control: MediaControl,
    mut spec: RecordSpec,
    generation: u64,
    shards: Shards,
) {
    let Some((tenant, shard, id)) = owners.get(&call).map(|o| (o.tenant, o.shard, o.call)) else {
        return;
    };
    let report = |notice| {
        if let Some(tx) = shards.get(shard) {
            let _ = tx.send(ToShard::Notice(id, notice));
        }
    };
    let left = match store.recording_ms_left(tenant).await {
        Ok(ms) => Duration::from_millis(ms),
        Err(e) => {
            tracing::warn!(%tenant, error = %e, "recording minutes not read");
            report(MediaNotice::RecordingFailed(e.to_string()));
            return;
        }
    };
    if left >= MIN_MESSAGE {
        let Some(owner) = owners.get(&call) else {
            return;
        };
        if owner.generation != generation {
            return;
        }
        spec.max = spec.max.min(left);
        let started = control.record(Leg::A, spec);
        drop(owner);
        if let Err(e) = started {
            report(MediaNotice::RecordingFailed(e.to_string()));
        }
        return;
    }
    tracing::info!(%tenant, "recording minutes used up: not recording");
    let audio = resolve_or(
        &store,
        tenant,
        RECORDING_FULL_PROMPT,
        &[PromptRef::Tone(Tone::Error)],
    )
    .await;
    let Some(mut owner) = owners.get_mut(&call) else {
        return;
    };
    if owner.generation != generation {
        return;
    }
    owner.recording = None;
    let queued = audio
        .into_iter()
        .filter(|p| control.play(Leg::A, p.clone()).is_ok())
        .count();
    owner.prompts = queued;
    if queued > 0 {
        owner.at_end = MediaNotice::RecordingMinutesFull;
    }
    drop(owner);
    if queued == 0 {
        report(MediaNotice::RecordingMinutesFull);
    }
}

/// Loads `prompts` (the tenant's own from its storage) and plays them in
/// order on the caller's leg, unless a newer play or a stop came meanwhile.
async fn load_and_play(
    store: Store,
    owners: Owners,
    call: CallId,
    control: MediaControl,
    prompts: Vec<PromptRef>,
    generation: u64,
    shards: Shards,
) {
    let Some(tenant) = owners.get(&call).map(|o| o.tenant) else {
        return;
    };
    let audio = resolve(&store, tenant, &prompts).await;
    let Some(mut owner) = owners.get_mut(&call) else {
        return;
    };
    if owner.generation != generation {
        return;
    }
    let queued = audio
        .into_iter()
        .filter(|p| control.play(Leg::A, p.clone()).is_ok())
        .count();
    owner.prompts = queued;
    let (shard, id, at_end) = (owner.shard, owner.call, owner.at_end.clone());
    drop(owner);
    if queued == 0
        && let Some(tx) = shards.get(shard)
    {
        let _ = tx.send(ToShard::Notice(id, at_end));
    }
}

impl MediaAnchor for RelayAnchor {
    fn open(
        &self,
        shard: usize,
        call: u64,
        tenant: TenantId,
    ) -> Result<Box<dyn CallMediaHandle>, MediaRefusal> {
        let media = self.relay.open_call().map_err(refusal)?;
        self.owners.insert(
            media.id(),
            Owner {
                shard,
                call,
                tenant,
                prompts: 0,
                generation: 0,
                recording: None,
                menu: None,
                at_end: MediaNotice::PromptFinished,
                session: None,
                recorded_call: None,
            },
        );
        Ok(Box::new(Handle {
            media,
            tenants: self.tenants.clone(),
            owners: self.owners.clone(),
            store: self.store.clone(),
            runtime: self.runtime.clone(),
            shards: self.shards.clone(),
            mailboxes: self.mailboxes.clone(),
        }))
    }
}

/// One call's relay; forgets its owner (and gives back its host media
/// session) when dropped.
struct Handle {
    media: CallMedia,
    tenants: TenantMedia,
    owners: Owners,
    store: Store,
    runtime: tokio::runtime::Handle,
    shards: Shards,
    mailboxes: Mailboxes,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle")
            .field("media", &self.media)
            .finish_non_exhaustive()
    }
}

impl Drop for Handle {
    /// The call is over. A recording still under way (the caller hung up
    /// instead of pressing the finish key, as most do) is kept: what was
    /// said is stored and the mailbox's phones hear of it.
    fn drop(&mut self) {
        let Some((_, owner)) = self.owners.remove(&self.media.id()) else {
            return;
        };
        if let Some(parties) = owner.recorded_call
            && let Some(recording) = self.media.take_call_recording()
        {
            let store = self.store.clone();
            let tenant = owner.tenant;
            self.runtime.spawn(async move {
                store_call_recording(&store, tenant, parties, recording).await;
            });
        }
        let Some((mailbox, caller)) = owner.recording else {
            return;
        };
        let Some(recording) = self.media.take_recording(Leg::A) else {
            return;
        };
        let (store, mailboxes) = (self.store.clone(), self.mailboxes.clone());
        self.runtime.spawn(async move {
            let notice = store_recording(
                &store,
                &mailboxes,
                owner.tenant,
                (&mailbox, &caller),
                recording,
            )
            .await;
            tracing::debug!(?notice, "recording of a finished call");
        });
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
        to_webrtc: s.to_webrtc,
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

    fn play(&self, prompts: &[PromptRef]) -> Result<(), MediaRefusal> {
        let id = self.media.id();
        let generation = {
            let Some(mut owner) = self.owners.get_mut(&id) else {
                return Err(MediaRefusal::new(500, "the call's media is gone"));
            };
            owner.generation += 1;
            owner.prompts = 0;
            owner.at_end = MediaNotice::PromptFinished;
            owner.generation
        };
        self.media.stop_playing(Leg::A);
        self.runtime.spawn(load_and_play(
            self.store.clone(),
            self.owners.clone(),
            id,
            self.media.control(),
            prompts.to_vec(),
            generation,
            self.shards.clone(),
        ));
        Ok(())
    }

    fn stop_playing(&self) {
        if let Some(mut owner) = self.owners.get_mut(&self.media.id()) {
            owner.generation += 1;
            owner.prompts = 0;
        }
        self.media.stop_playing(Leg::A);
    }

    fn record(&self, record: &Record, caller: &str) -> Result<(), MediaRefusal> {
        let spec = RecordSpec {
            max: record.max,
            beep: record.beep,
            finish_key: record.finish_key,
            silence: record.silence,
        };
        let id = self.media.id();
        let generation = {
            let Some(mut owner) = self.owners.get_mut(&id) else {
                return Err(MediaRefusal::new(500, "the call's media is gone"));
            };
            owner.generation += 1;
            owner.prompts = 0;
            owner.at_end = MediaNotice::PromptFinished;
            owner.recording = Some((record.mailbox.clone(), caller.to_string()));
            owner.generation
        };
        self.media.stop_playing(Leg::A);
        self.runtime.spawn(start_recording(
            self.store.clone(),
            self.owners.clone(),
            id,
            self.media.control(),
            spec,
            generation,
            self.shards.clone(),
        ));
        Ok(())
    }

    fn voicemail_greeting(
        &self,
        mailbox: &str,
        greeting: &[PromptRef],
    ) -> Result<(), MediaRefusal> {
        let id = self.media.id();
        let (generation, tenant) = {
            let Some(mut owner) = self.owners.get_mut(&id) else {
                return Err(MediaRefusal::new(500, "the call's media is gone"));
            };
            owner.generation += 1;
            owner.prompts = 0;
            owner.at_end = MediaNotice::PromptFinished;
            (owner.generation, owner.tenant)
        };
        self.media.stop_playing(Leg::A);
        let (store, owners, shards) =
            (self.store.clone(), self.owners.clone(), self.shards.clone());
        let control = self.media.control();
        let (mailbox, greeting) = (mailbox.to_string(), greeting.to_vec());
        self.runtime.spawn(async move {
            // Only this tenant's quota counts: another tenant's full storage
            // changes nothing here.
            let full = match store.media_usage(tenant).await {
                Ok(usage) => !usage.has_room_for(MIN_MESSAGE_BYTES),
                Err(e) => {
                    tracing::warn!(%tenant, error = %e, "media usage not read; recording anyway");
                    false
                }
            };
            let prompts = if full {
                tracing::info!(%tenant, mailbox, "mailbox full: the caller is told so");
                match owners.get_mut(&id) {
                    Some(mut o) if o.generation == generation => {
                        o.at_end = MediaNotice::MailboxFull
                    }
                    _ => return,
                }
                mailbox_full_prompts()
            } else {
                greeting
            };
            load_and_play(store, owners, id, control, prompts, generation, shards).await;
        });
        Ok(())
    }

    fn voicemail_menu(&self, mailbox: &str) -> Result<(), MediaRefusal> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (tenant, shard, call) = {
            let Some(mut owner) = self.owners.get_mut(&self.media.id()) else {
                return Err(MediaRefusal::new(500, "the call's media is gone"));
            };
            owner.menu = Some(tx);
            owner.generation += 1;
            owner.prompts = 0;
            (owner.tenant, owner.shard, owner.call)
        };
        let Some(shard) = self.shards.get(shard).cloned() else {
            return Err(MediaRefusal::new(500, "no shard for the call"));
        };
        self.media.stop_playing(Leg::A);
        self.runtime.spawn(super::voicemail_menu::run(
            super::voicemail_menu::Menu {
                store: self.store.clone(),
                control: self.media.control(),
                tenant,
                mailbox: mailbox.to_string(),
                inputs: rx,
            },
            shard,
            self.mailboxes.clone(),
            call,
        ));
        Ok(())
    }

    fn menu_key(&self, key: char) {
        if let Some(menu) = self
            .owners
            .get(&self.media.id())
            .and_then(|o| o.menu.clone())
        {
            let _ = menu.send(MenuInput::Key(key));
        }
    }

    fn offer_from_host(
        &self,
        to_secure: bool,
        to_webrtc: bool,
        p: MediaEncryption,
    ) -> Result<Vec<u8>, MediaRefusal> {
        let to = Security {
            from_secure: true,
            to_secure,
            to_webrtc,
        };
        self.media
            .offer_from_host_to(Leg::B, to, policy(p))
            .map_err(refusal)
    }

    fn answer_pickup(
        &self,
        caller: Option<(&[u8], bool)>,
        picker: &[u8],
        picker_secure: bool,
        p: MediaEncryption,
    ) -> Result<(Option<Vec<u8>>, Vec<u8>), MediaRefusal> {
        let answers = self
            .media
            .answer_pickup(caller, picker, picker_secure, policy(p))
            .map_err(refusal)?;
        if let Some(mut owner) = self.owners.get_mut(&self.media.id()) {
            owner.generation += 1;
            owner.prompts = 0;
            owner.recording = None;
        }
        Ok(answers)
    }

    fn answer_to_host_offer(
        &self,
        sdp: &[u8],
        sec: MediaSecurity,
        p: MediaEncryption,
    ) -> Result<(), MediaRefusal> {
        if let Some(mut owner) = self.owners.get_mut(&self.media.id()) {
            owner.generation += 1;
            owner.prompts = 0;
            owner.recording = None;
            // Relayed from now on: the concurrent-call limits bound it.
            owner.session = None;
        }
        self.media
            .answer_to_host_offer(Leg::B, sdp, security(sec), policy(p))
            .map_err(refusal)
    }

    fn connected(&self, caller: &str, callee: &str) {
        let records = self
            .owners
            .get(&self.media.id())
            .is_some_and(|o| self.tenants.records(o.tenant));
        if !records {
            return;
        }
        // The parties hear nothing of each other until the notice plays.
        self.media.hold(true);
        self.runtime.spawn(announce_and_record(
            self.store.clone(),
            self.owners.clone(),
            self.media.id(),
            self.media.control(),
            (caller.to_string(), callee.to_string()),
        ));
    }

    fn hold_host_session(&self) -> Result<(), HostMediaFull> {
        let Some(mut owner) = self.owners.get_mut(&self.media.id()) else {
            return Ok(());
        };
        if owner.session.is_none() {
            let guard = self
                .tenants
                .sessions
                .acquire(owner.tenant)
                .map_err(|e| match e {
                    SessionsFull::Tenant { limit } => HostMediaFull::Tenant { limit },
                    SessionsFull::Host { limit } => HostMediaFull::Host { limit },
                })?;
            owner.session = Some(guard);
        }
        Ok(())
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

    /// A relay anchor with the shipped session caps, telling `shards`, its
    /// events routed.
    fn running(store: Store, shards: Vec<mpsc::UnboundedSender<ToShard>>) -> RelayAnchor {
        let (anchor, events) = RelayAnchor::new(
            config(),
            TenantMedia::new(SessionCaps::default()),
            Mailboxes::new(store, shards),
        )
        .expect("relay");
        tokio::spawn(anchor.route_events(events));
        anchor
    }

    #[tokio::test]
    async fn offers_point_at_the_relay_and_idle_calls_reach_their_shard() {
        let store = Store::open_in_memory().await.expect("store");
        let (tx0, _rx0) = mpsc::unbounded_channel();
        let (tx1, mut rx1) = mpsc::unbounded_channel();
        let anchor = running(store, vec![tx0, tx1]);
        let handle = anchor.open(1, 42, TenantId(1)).expect("open");
        let plain = MediaSecurity {
            from_secure: false,
            to_secure: false,
            to_webrtc: false,
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
        assert_eq!(idle, Some(ToShard::Idle(42)));
        drop(handle);
        assert!(anchor.owners.is_empty(), "owner forgotten with the handle");
    }

    /// A caller's offer to the relay from a socket of the test.
    fn offer_from(port: u16) -> Vec<u8> {
        format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\n"
        )
        .into_bytes()
    }

    #[tokio::test]
    async fn digits_are_spoken_from_the_tenants_digit_prompts_else_keyed() {
        let store = Store::open_in_memory().await.expect("store");
        let add = |name: &'static str| {
            let store = store.clone();
            async move {
                store
                    .add_tenant(name, &format!("{name}.example"))
                    .await
                    .expect("tenant")
                    .id
            }
        };
        let (acme, beta) = (add("acme").await, add("beta").await);
        let spoken_one = Recording {
            samples: vec![1000; 2400],
            end: pbx_media::RecordingEnd::Stopped,
        }
        .to_wav();
        store
            .put_prompt(acme, "digit-1", &spoken_one, 300)
            .await
            .expect("prompt");
        let lengths = |audio: Vec<Prompt>| audio.iter().map(Prompt::samples).collect::<Vec<_>>();
        // Acme's "1" is its own 300 ms recording; it has no "2": the key's tones.
        let acme_says = resolve(&store, acme, &[PromptRef::Digits("12".into())]).await;
        assert_eq!(lengths(acme_says), vec![2400, 800, 800, 800]);
        // Beta has no digit prompts, and never hears acme's.
        let beta_says = resolve(&store, beta, &[PromptRef::Digits("1".into())]).await;
        assert_eq!(lengths(beta_says), vec![800, 800]);
    }

    #[tokio::test]
    async fn the_tenants_prompt_plays_and_its_end_reaches_the_shard() {
        let store = Store::open_in_memory().await.expect("store");
        let tenant = store
            .add_tenant("acme", "acme.example")
            .await
            .expect("tenant")
            .id;
        let wav = Recording {
            samples: vec![1000; 1600],
            end: pbx_media::RecordingEnd::Stopped,
        }
        .to_wav();
        store
            .put_prompt(tenant, "hello", &wav, 200)
            .await
            .expect("prompt");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let anchor = running(store, vec![tx]);
        let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = phone.local_addr().unwrap().port();
        // Another tenant's call cannot name it: nothing plays, the end comes.
        let other = anchor.open(0, 7, TenantId(tenant.0 + 1)).expect("open");
        other
            .answer_here(
                MediaLeg::Caller,
                &offer_from(port),
                false,
                MediaEncryption::Optional,
            )
            .expect("answer");
        other
            .play(&[PromptRef::Tenant("hello".into())])
            .expect("play");
        assert_eq!(
            next_notice(&mut rx).await,
            ToShard::Notice(7, MediaNotice::PromptFinished)
        );
        drop(other);
        // Its own call plays it: packets arrive, then the end.
        let handle = anchor.open(0, 8, tenant).expect("open");
        handle
            .answer_here(
                MediaLeg::Caller,
                &offer_from(port),
                false,
                MediaEncryption::Optional,
            )
            .expect("answer");
        handle
            .play(&[PromptRef::Tenant("hello".into())])
            .expect("play");
        let mut buf = [0u8; 2048];
        let mut packets = 0;
        while packets < 10 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), phone.recv_from(&mut buf))
                .await
                .expect("RTP")
                .unwrap();
            assert!(n > 12);
            packets += 1;
        }
        assert_eq!(
            next_notice(&mut rx).await,
            ToShard::Notice(8, MediaNotice::PromptFinished)
        );
    }

    #[tokio::test]
    async fn host_media_sessions_are_held_per_tenant_until_the_call_goes() {
        let store = Store::open_in_memory().await.expect("store");
        let tenants = TenantMedia::new(SessionCaps {
            total: 10,
            per_tenant: 1,
        });
        let sessions = tenants.sessions.clone();
        let (tx, _rx) = mpsc::unbounded_channel();
        let (anchor, _events) =
            RelayAnchor::new(config(), tenants, Mailboxes::new(store, vec![tx])).expect("relay");
        let (a, b) = (TenantId(1), TenantId(2));
        let first = anchor.open(0, 1, a).expect("open");
        first.hold_host_session().expect("a's one session");
        first.hold_host_session().expect("holding again is a no-op");
        let second = anchor.open(0, 2, a).expect("open");
        assert_eq!(
            second.hold_host_session(),
            Err(HostMediaFull::Tenant { limit: 1 })
        );
        let other = anchor.open(0, 3, b).expect("open");
        other.hold_host_session().expect("b is not affected");
        drop(first);
        second
            .hold_host_session()
            .expect("a's session is free again");
        assert_eq!(sessions.snapshot(), vec![(a, 1), (b, 1)]);
    }

    #[tokio::test]
    async fn a_recording_without_minutes_left_says_so_instead() {
        let store = Store::open_in_memory().await.expect("store");
        let tenant = store
            .add_tenant("acme", "acme.example")
            .await
            .expect("tenant")
            .id;
        store
            .set_tenant_limits(
                tenant,
                &store::TenantLimits {
                    recording_minutes: Some(0),
                    ..store::TenantLimits::default()
                },
            )
            .await
            .expect("limits");
        let (tx, mut rx) = mpsc::unbounded_channel();
        let anchor = running(store, vec![tx]);
        let phone = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = phone.local_addr().unwrap().port();
        let handle = anchor.open(0, 9, tenant).expect("open");
        handle
            .answer_here(
                MediaLeg::Caller,
                &offer_from(port),
                false,
                MediaEncryption::Optional,
            )
            .expect("answer");
        let record = Record {
            mailbox: "100".into(),
            max: Duration::from_secs(60),
            beep: true,
            finish_key: Some('#'),
            silence: None,
        };
        handle.record(&record, "1000").expect("asked");
        // The caller hears the error tone (no `recording-full` prompt), and
        // then the shard hears why nothing was recorded.
        let mut buf = [0u8; 2048];
        for _ in 0..10 {
            let (n, _) = tokio::time::timeout(Duration::from_secs(5), phone.recv_from(&mut buf))
                .await
                .expect("RTP")
                .unwrap();
            assert!(n > 12);
        }
        assert_eq!(
            next_notice(&mut rx).await,
            ToShard::Notice(9, MediaNotice::RecordingMinutesFull)
        );
    }

    /// The next report that is not about idleness (the test's calls send no
    /// media, and the test relay's idle timeout is short).
    async fn next_notice(rx: &mut mpsc::UnboundedReceiver<ToShard>) -> ToShard {
        loop {
            let report = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                .await
                .expect("a report in time")
                .expect("the relay runs");
            if !matches!(report, ToShard::Idle(_)) {
                return report;
            }
        }
    }
}
