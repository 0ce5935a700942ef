//! The mailbox menu a caller reaches with `*97` (action `voicemail-menu`):
//! the PIN, then each message, newest first, with keys to delete (`7`), keep
//! (`9`), hear again (`1`) or go on (anything else, or 10 s of nothing); `*`
//! ends it. One task per call, fed the caller's keys (RFC 4733 or SIP INFO,
//! through the call's shard) and the ends of what it plays; bounded in time
//! ([`MENU_LIMIT`]) and in PIN tries per call ([`PIN_TRIES`]), on top of the
//! mailbox's own lockout kept by the store.
//!
//! Without recorded voice, the menu speaks with the tenant's prompts when it
//! has them (`vm-enter-pin`, `vm-goodbye`) and with tones otherwise: a beep
//! asks for the PIN, the error tone refuses it, two beeps say goodbye.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pbx_core::{MediaNotice, PromptRef, Tone};
use pbx_media::{Leg, MediaControl, Prompt};
use store::{PinCheck, Store, TenantId};
use tokio::sync::mpsc;

use super::media::{Mailboxes, MenuInput, ToShard, resolve, resolve_or};

/// Longest a menu runs.
pub(crate) const MENU_LIMIT: Duration = Duration::from_secs(15 * 60);
/// PINs one call may try before the menu ends.
pub(crate) const PIN_TRIES: u32 = 3;
/// How long the menu waits for a key.
const KEY_WAIT: Duration = Duration::from_secs(10);
/// Longest PIN read.
const MAX_PIN: usize = 12;

/// One call's menu.
pub(crate) struct Menu {
    pub(crate) store: Store,
    pub(crate) control: MediaControl,
    pub(crate) tenant: TenantId,
    pub(crate) mailbox: String,
    pub(crate) inputs: mpsc::UnboundedReceiver<MenuInput>,
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Runs `menu` for call `call` of `shard`, then tells the shard (the call's
/// next step) and the mailbox's phones (its counts may have changed).
pub(crate) async fn run(
    mut menu: Menu,
    shard: mpsc::UnboundedSender<ToShard>,
    mailboxes: Mailboxes,
    call: u64,
) {
    if tokio::time::timeout(MENU_LIMIT, menu.body()).await.is_err() {
        tracing::info!(call, "mailbox menu ran out of time");
    }
    menu.control.stop_playing(Leg::A);
    mailboxes.changed(menu.tenant, &menu.mailbox).await;
    let _ = shard.send(ToShard::Notice(call, MediaNotice::PromptFinished));
}

impl Menu {
    async fn body(&mut self) {
        if !self.pin().await {
            self.say(&[PromptRef::Tone(Tone::Error)]).await;
            return;
        }
        let mut messages = match self
            .store
            .voicemail_messages(self.tenant, &self.mailbox)
            .await
        {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(tenant = %self.tenant, error = %e, "mailbox not listed");
                return;
            }
        };
        messages.reverse();
        for message in messages {
            loop {
                let audio = match self
                    .store
                    .voicemail_audio(self.tenant, &self.mailbox, &message.id)
                    .await
                {
                    Ok(Some(wav)) => Prompt::from_wav(&wav).ok(),
                    _ => None,
                };
                let key = match audio {
                    Some(prompt) => self.play(vec![prompt, Prompt::beep()]).await,
                    None => None,
                };
                let key = match key {
                    Some(k) => Some(k),
                    None => self.key_within(KEY_WAIT).await,
                };
                let (tenant, mailbox, id) = (self.tenant, self.mailbox.as_str(), &message.id);
                match key {
                    Some('1') => continue,
                    Some('7') => {
                        let _ = self.store.delete_voicemail(tenant, mailbox, id).await;
                    }
                    Some('9') => {
                        let _ = self
                            .store
                            .mark_voicemail(tenant, mailbox, id, true, true)
                            .await;
                    }
                    Some('*') => {
                        let _ = self
                            .store
                            .mark_voicemail(tenant, mailbox, id, true, message.saved)
                            .await;
                        self.goodbye().await;
                        return;
                    }
                    _ => {
                        let _ = self
                            .store
                            .mark_voicemail(tenant, mailbox, id, true, message.saved)
                            .await;
                    }
                }
                break;
            }
        }
        self.goodbye().await;
    }

    async fn goodbye(&mut self) {
        self.say(&[
            PromptRef::Tenant("vm-goodbye".into()),
            PromptRef::Tone(Tone::Beep),
            PromptRef::Tone(Tone::Beep),
        ])
        .await;
    }

    /// Asks for the PIN up to [`PIN_TRIES`] times; whether one was right.
    async fn pin(&mut self) -> bool {
        // A key pressed during the error tone starts the next PIN.
        let mut typed_ahead = None;
        for _ in 0..PIN_TRIES {
            let first = match typed_ahead.take() {
                Some(k) => Some(k),
                None => {
                    let ask = resolve_or(
                        &self.store,
                        self.tenant,
                        "vm-enter-pin",
                        &[PromptRef::Tone(Tone::Beep)],
                    )
                    .await;
                    self.play(ask).await
                }
            };
            let pin = self.read_pin(first).await;
            let check = self
                .store
                .check_voicemail_pin(self.tenant, &self.mailbox, &pin, unix_ms())
                .await;
            match check {
                Ok(PinCheck::Accepted) => return true,
                Ok(PinCheck::Wrong { attempts_left }) => {
                    tracing::info!(tenant = %self.tenant, mailbox = %self.mailbox, attempts_left, "wrong mailbox PIN");
                    if attempts_left == 0 {
                        return false;
                    }
                    typed_ahead = self.say(&[PromptRef::Tone(Tone::Error)]).await;
                }
                Ok(PinCheck::Locked { .. }) => {
                    tracing::warn!(tenant = %self.tenant, mailbox = %self.mailbox, "mailbox locked after wrong PINs");
                    return false;
                }
                Ok(PinCheck::NoPin) => return false,
                Err(e) => {
                    tracing::warn!(tenant = %self.tenant, error = %e, "PIN not checked");
                    return false;
                }
            }
        }
        false
    }

    /// Keys up to `#` (or [`MAX_PIN`] of them, or a pause of [`KEY_WAIT`]),
    /// starting with `first` when the caller pressed it during the prompt.
    async fn read_pin(&mut self, first: Option<char>) -> String {
        let mut pin = String::new();
        let mut next = first;
        loop {
            let key = match next.take() {
                Some(k) => Some(k),
                None => self.key_within(KEY_WAIT).await,
            };
            match key {
                None | Some('#') => return pin,
                Some(k) => {
                    pin.push(k);
                    if pin.len() >= MAX_PIN {
                        return pin;
                    }
                }
            }
        }
    }

    /// Plays `prompts` and waits for their end; a key stops them and is
    /// returned.
    async fn say(&mut self, prompts: &[PromptRef]) -> Option<char> {
        let audio = resolve(&self.store, self.tenant, prompts).await;
        self.play(audio).await
    }

    async fn play(&mut self, audio: Vec<Prompt>) -> Option<char> {
        // Ends of what an earlier, interrupted play queued are stale.
        while let Ok(input) = self.inputs.try_recv() {
            if let MenuInput::Key(k) = input {
                return Some(k);
            }
        }
        let mut left = audio
            .into_iter()
            .filter(|p| self.control.play(Leg::A, p.clone()).is_ok())
            .count();
        while left > 0 {
            match self.inputs.recv().await {
                Some(MenuInput::Played) => left -= 1,
                Some(MenuInput::Key(k)) => {
                    self.control.stop_playing(Leg::A);
                    return Some(k);
                }
                None => return None,
            }
        }
        None
    }

    /// The next key within `wait`.
    async fn key_within(&mut self, wait: Duration) -> Option<char> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.inputs.recv()).await {
                Ok(Some(MenuInput::Key(k))) => return Some(k),
                Ok(Some(MenuInput::Played)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
