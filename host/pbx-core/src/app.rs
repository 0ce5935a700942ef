//! The host's own end of a call it answered: prompts played to the caller,
//! key presses gathered (RFC 4733 events from the media, or SIP INFO),
//! recordings into a mailbox (message-waiting indication is
//! `subscription.rs`).
//!
//! Each [`HostMedia`] action starts here and ends with an event for the
//! call's next decision ([`CallEvent::PromptFinished`],
//! [`CallEvent::DigitsGathered`], [`CallEvent::RecordingFinished`]). What the
//! media reports comes in through [`Shard::media_notice`]; the gather's
//! timeouts run on the call's own timer. The media itself (loading a tenant's
//! prompt, pacing packets, storing a recording) is behind
//! [`crate::CallMediaHandle`].

use std::time::{Duration, Instant};

use crate::call::State;
use crate::{
    CallEvent, Gather, HostMedia, MAX_CALL_STEPS, MAX_GATHER_DIGITS, MAX_RECORDING, MediaNotice,
    Output, PromptRef, Record, Routing, Shard,
};

/// Longest wait for a key one gather allows.
const MAX_GATHER_WAIT: Duration = Duration::from_secs(60);

/// How long a voicemail message may be.
const VOICEMAIL_LENGTH: Duration = Duration::from_secs(120);

/// The tag a call's record gets when voicemail found no room for a message.
pub const MAILBOX_FULL_TAG: &str = "mailbox-full";

/// Silence that ends a voicemail message.
const VOICEMAIL_SILENCE: Duration = Duration::from_secs(5);

/// What the host's media is doing for a call it answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum App {
    /// Playing prompts; the next step hears when they end.
    Playing,
    /// Reading digits.
    Gathering(Gathering),
    /// A voicemail greeting plays; the recording follows it.
    Greeting(Record),
    /// Recording into `mailbox`.
    Recording { mailbox: String },
    /// A mailbox menu runs; keys go to it.
    Menu,
}

/// A gather under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gathering {
    spec: Gather,
    digits: String,
    /// Its prompts still play.
    playing: bool,
    /// When it ends without more keys (set once the prompts ended or a key
    /// came).
    deadline: Option<Instant>,
}

impl App {
    /// When the call's timer must look at the app.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            App::Gathering(g) => g.deadline,
            _ => None,
        }
    }
}

/// `spec` within the host's bounds.
fn bounded_gather(mut spec: Gather) -> Gather {
    spec.max_digits = spec.max_digits.clamp(1, MAX_GATHER_DIGITS);
    spec.timeout = spec.timeout.min(MAX_GATHER_WAIT);
    spec.inter_digit = spec.inter_digit.min(MAX_GATHER_WAIT);
    spec
}

/// `spec` within the host's bounds.
fn bounded_record(mut spec: Record) -> Record {
    spec.max = if spec.max.is_zero() {
        MAX_RECORDING
    } else {
        spec.max.min(MAX_RECORDING)
    };
    spec.silence = spec.silence.map(|s| s.min(spec.max));
    spec
}

/// The key a SIP INFO carries (RFC 2976): `application/dtmf-relay`
/// (`Signal=5`) or `application/dtmf` (the key alone).
pub(crate) fn info_digit(content_type: &str, body: &[u8]) -> Option<char> {
    let kind = content_type.split(';').next()?.trim().to_ascii_lowercase();
    let text = std::str::from_utf8(body).ok()?;
    let value = match kind.as_str() {
        "application/dtmf-relay" => text.lines().find_map(|line| {
            let (name, value) = line.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("signal")
                .then(|| value.trim())
        })?,
        "application/dtmf" => text.trim(),
        _ => return None,
    };
    let mut chars = value.chars();
    let digit = chars.next()?.to_ascii_uppercase();
    let valid = chars.next().is_none() && matches!(digit, '0'..='9' | '*' | '#' | 'A'..='D');
    valid.then_some(digit)
}

impl Shard {
    /// Carries out `media` on call `id`, answering it at the host first when
    /// nobody has.
    pub(crate) fn start_host_media(&mut self, now: Instant, id: u64, media: HostMedia) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        let answered = call.a_answered;
        if media == HostMedia::HangUp {
            if answered {
                self.hang_up(now, id, "the call handler hung up");
            } else {
                self.end_with_best_failure(now, id);
            }
            return;
        }
        if let Some(Err(full)) = call.media.as_ref().map(|h| h.hold_host_session()) {
            self.refuse_host_media(now, id, full);
            return;
        }
        if !answered {
            let can_answer = call.media.is_some()
                && call
                    .caller_offer
                    .as_ref()
                    .is_some_and(|(ct, body)| crate::media::is_sdp(ct) && !body.is_empty());
            if !can_answer {
                // No media to answer with (media not anchored, or a late
                // offer): the caller keeps the last attempt's outcome.
                tracing::info!(call = id, "cannot answer for host media");
                self.end_with_best_failure(now, id);
                return;
            }
            self.answer_at_host(now, id, false);
            if !self.calls.get(&id).is_some_and(|c| c.a_answered) {
                return;
            }
        }
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.state = State::Answered;
        let Some(handle) = call.media.as_ref() else {
            self.hang_up(now, id, "no media to play or record");
            return;
        };
        let (app, started) = match media {
            HostMedia::Play(prompts) => (App::Playing, handle.play(&prompts)),
            HostMedia::Gather(spec) => {
                let spec = bounded_gather(spec);
                let playing = !spec.prompts.is_empty();
                let started = if playing {
                    handle.play(&spec.prompts)
                } else {
                    Ok(())
                };
                let deadline = (!playing).then(|| now + spec.timeout);
                (
                    App::Gathering(Gathering {
                        spec,
                        digits: String::new(),
                        playing,
                        deadline,
                    }),
                    started,
                )
            }
            HostMedia::Record(spec) => {
                let spec = bounded_record(spec);
                let started = handle.record(&spec, &call.caller);
                (
                    App::Recording {
                        mailbox: spec.mailbox,
                    },
                    started,
                )
            }
            HostMedia::Voicemail { mailbox } => {
                let greeting = PromptRef::Tenant(format!("greeting-{mailbox}"));
                let record = Record {
                    mailbox,
                    max: VOICEMAIL_LENGTH,
                    beep: true,
                    finish_key: Some('#'),
                    silence: Some(VOICEMAIL_SILENCE),
                };
                let started = handle.voicemail_greeting(&record.mailbox, &[greeting]);
                (App::Greeting(record), started)
            }
            HostMedia::VoicemailMenu { mailbox } => (App::Menu, handle.voicemail_menu(&mailbox)),
            HostMedia::HangUp => unreachable!("handled above"),
        };
        if let Err(refusal) = started {
            tracing::info!(call = id, reason = %refusal.reason, "host media refused");
            self.hang_up(now, id, "host media failed");
            return;
        }
        if let Some(call) = self.calls.get_mut(&id) {
            call.app = Some(Box::new(app));
        }
        self.schedule_call(id);
    }

    /// What the media of call `id` (answered at the host) reports.
    pub fn media_notice(&mut self, now: Instant, id: u64, notice: MediaNotice) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        if call.state != State::Answered {
            return;
        }
        match (notice, call.app.as_deref_mut()) {
            (MediaNotice::PromptFinished, Some(App::Playing)) => {
                call.app = None;
                self.ask_after_media(now, id, CallEvent::PromptFinished);
            }
            (MediaNotice::PromptFinished, Some(App::Gathering(g))) if g.playing => {
                g.playing = false;
                let wait = if g.digits.is_empty() {
                    g.spec.timeout
                } else {
                    g.spec.inter_digit
                };
                g.deadline = Some(g.deadline.map_or(now + wait, |d| d.max(now + wait)));
                self.schedule_call(id);
            }
            (MediaNotice::PromptFinished, Some(App::Greeting(record))) => {
                let record = record.clone();
                let started = call.media.as_ref().map(|h| h.record(&record, &call.caller));
                match started {
                    Some(Ok(())) => {
                        call.app = Some(Box::new(App::Recording {
                            mailbox: record.mailbox,
                        }));
                    }
                    _ => {
                        call.app = None;
                        self.ask_after_media(now, id, CallEvent::RecordingFinished { id: None });
                    }
                }
            }
            (MediaNotice::MailboxFull, Some(App::Greeting(record))) => {
                tracing::info!(call = id, mailbox = %record.mailbox, "mailbox full: nothing recorded");
                call.app = None;
                call.tags.push(MAILBOX_FULL_TAG.to_string());
                self.hang_up(now, id, "mailbox full");
            }
            (MediaNotice::Digit(d), Some(App::Gathering(_))) => self.gathered_digit(now, id, d),
            (MediaNotice::Digit(d), Some(App::Menu)) => {
                if let Some(h) = call.media.as_ref() {
                    h.menu_key(d);
                }
            }
            (MediaNotice::PromptFinished, Some(App::Menu)) => {
                call.app = None;
                self.ask_after_media(now, id, CallEvent::PromptFinished);
            }
            (MediaNotice::RecordingStored { id: message, .. }, Some(App::Recording { .. })) => {
                call.app = None;
                let event = CallEvent::RecordingFinished { id: Some(message) };
                self.ask_after_media(now, id, event);
            }
            (MediaNotice::RecordingMinutesFull, Some(App::Recording { .. })) => {
                tracing::info!(call = id, "recording minutes used up");
                let tag = MediaNotice::RECORDING_MINUTES_FULL.to_string();
                if !call.tags.contains(&tag) {
                    call.tags.push(tag);
                }
                call.app = None;
                self.ask_after_media(now, id, CallEvent::RecordingFinished { id: None });
            }
            (MediaNotice::RecordingFailed(reason), Some(App::Recording { .. })) => {
                tracing::info!(call = id, %reason, "recording not stored");
                call.app = None;
                self.ask_after_media(now, id, CallEvent::RecordingFinished { id: None });
            }
            _ => {}
        }
    }

    /// A key press during a gather.
    fn gathered_digit(&mut self, now: Instant, id: u64, digit: char) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(App::Gathering(g)) = call.app.as_deref_mut() else {
            return;
        };
        if g.spec.barge_in && g.playing {
            g.playing = false;
            if let Some(h) = call.media.as_ref() {
                h.stop_playing();
            }
        }
        let done = if g.spec.terminator == Some(digit) {
            true
        } else {
            g.digits.push(digit);
            g.digits.len() >= usize::from(g.spec.max_digits)
        };
        if !done {
            g.deadline = Some(now + g.spec.inter_digit);
            self.schedule_call(id);
            return;
        }
        let digits = std::mem::take(&mut g.digits);
        if g.playing
            && let Some(h) = call.media.as_ref()
        {
            h.stop_playing();
        }
        call.app = None;
        self.ask_after_media(now, id, CallEvent::DigitsGathered(digits));
    }

    /// The call's timer while the host's media runs: a gather that waited
    /// long enough ends with what it has.
    pub(crate) fn host_media_timeout(&mut self, now: Instant, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(App::Gathering(g)) = call.app.as_deref_mut() else {
            return;
        };
        if g.deadline.is_none_or(|d| now < d) {
            return;
        }
        let digits = std::mem::take(&mut g.digits);
        call.app = None;
        self.ask_after_media(now, id, CallEvent::DigitsGathered(digits));
    }

    /// A key sent as SIP INFO in the dialog of a call the host answered.
    pub(crate) fn info_key(&mut self, now: Instant, id: u64, content: Option<(&str, &[u8])>) {
        if let Some(digit) = content.and_then(|(ct, body)| info_digit(ct, body)) {
            self.media_notice(now, id, MediaNotice::Digit(digit));
        }
    }

    /// The host's media action ended: the call's plan decides what comes
    /// next. Without a plan to ask, or with the call's steps used up, the
    /// host hangs up.
    fn ask_after_media(&mut self, now: Instant, id: u64, event: CallEvent) {
        let Routing::External { timeout } = self.shared.config.routing else {
            self.hang_up(now, id, "nothing to do after the media");
            return;
        };
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        let Some(request) = call.route.as_mut() else {
            self.hang_up(now, id, "nothing to do after the media");
            return;
        };
        if request.step >= MAX_CALL_STEPS {
            tracing::info!(call = id, "call used up its steps");
            self.hang_up(now, id, "call used up its steps");
            return;
        }
        request.step += 1;
        request.event = event;
        call.state = State::Routing;
        call.ring_deadline = now + timeout;
        request.answer_by = Some(call.ring_deadline);
        let request = request.clone();
        self.out.push_back(Output::Route(*request));
        self.schedule_call(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_bodies_give_their_key() {
        assert_eq!(
            info_digit("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n"),
            Some('5')
        );
        assert_eq!(
            info_digit("Application/DTMF-Relay; x=y", b"signal= #\r\n"),
            Some('#')
        );
        assert_eq!(info_digit("application/dtmf", b"*"), Some('*'));
        assert_eq!(info_digit("application/dtmf", b"a"), Some('A'));
        assert_eq!(info_digit("application/dtmf-relay", b"Signal=55\r\n"), None);
        assert_eq!(info_digit("application/dtmf-relay", b"Duration=160"), None);
        assert_eq!(info_digit("application/dtmf", b"x"), None);
        assert_eq!(info_digit("text/plain", b"5"), None);
        assert_eq!(info_digit("application/dtmf", &[0xff]), None);
    }

    #[test]
    fn specs_are_kept_within_bounds() {
        let g = bounded_gather(Gather {
            prompts: vec![],
            max_digits: 0,
            terminator: None,
            timeout: Duration::from_secs(3600),
            inter_digit: Duration::from_secs(2),
            barge_in: true,
        });
        assert_eq!(g.max_digits, 1);
        assert_eq!(g.timeout, MAX_GATHER_WAIT);
        assert_eq!(g.inter_digit, Duration::from_secs(2));
        let r = bounded_record(Record {
            mailbox: "100".into(),
            max: Duration::ZERO,
            beep: false,
            finish_key: None,
            silence: Some(Duration::from_secs(9999)),
        });
        assert_eq!(r.max, MAX_RECORDING);
        assert_eq!(r.silence, Some(MAX_RECORDING));
    }
}
