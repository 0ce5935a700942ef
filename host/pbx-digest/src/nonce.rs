//! Self-validating nonces with expiry and per-nonce `nc` replay tracking.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Default hard cap on tracked nonces for [`Nonces::new`].
pub const DEFAULT_MAX_ENTRIES: usize = 1_000_000;

/// Independent locks, so threads checking different nonces rarely contend.
const SHARDS: usize = 16;
/// A shard keeps its nonces in slices of this fraction of the lifetime, by
/// issue time.
const SLICES_PER_LIFETIME: i64 = 10;
/// Decoded nonce: issue time (8) + random (8) + truncated HMAC (16).
const RAW_LEN: usize = 32;
/// Length of the base64url (no padding) form of a nonce.
const ENCODED_LEN: usize = 43;

/// Issue time and randomness: what the MAC covers.
type NonceId = [u8; 16];

/// What the replay table knows a nonce by: its 64 random bits, checked to be
/// ours by the MAC first. Two live nonces sharing them is a 1 in 2^64 chance
/// per pair; it would only make the later one answer stale or replayed, and
/// the client re-authenticate.
type Tracked = u64;

fn tracked(id: &NonceId) -> Tracked {
    let mut random = [0u8; 8];
    random.copy_from_slice(&id[8..]);
    u64::from_le_bytes(random)
}

/// Outcome of [`Nonces::check`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NonceCheck {
    /// Issued by us, within its lifetime, and `nc` (if any) is new.
    Valid,
    /// Issued by us but expired (or no longer tracked): answer with a fresh
    /// challenge carrying `stale=true` if the response itself was right.
    Stale,
    /// Not a nonce of ours: garbage, a wrong MAC, or an issue time in the future.
    Invalid,
    /// `nc` is not greater than one already accepted for this nonce.
    Replay,
    /// `nc` equals the highest accepted for this nonce and the request carries
    /// the same fingerprint as the one accepted with it (see
    /// [`Nonces::check_request`]): the same request again, not a new one.
    Retransmission,
}

/// Issues and checks nonces; shared by all threads through `&self`.
///
/// A nonce is `base64url(issue_ms || random8 || HMAC-SHA256(key, issue_ms ||
/// random8)[..16])`, so checking one needs no stored state: the MAC proves we
/// issued it and the embedded time says whether it is stale. State is kept only
/// for replay protection: the highest `nc` accepted per nonce, in sharded maps.
///
/// The table stays bounded and follows the nonces in use. A shard keeps them
/// in slices by issue time, a tenth of the lifetime each, one small map per
/// slice: a slice is dropped whole once every nonce in it is stale (on every
/// `issue` and every `check` with an `nc`, and by [`Nonces::purge`]), so memory
/// is given back as it was taken, without one large table that doubles and
/// stays doubled. Beyond the hard cap the oldest slice's entries are dropped.
/// A nonce whose slice lost its entries, issued before that, answers
/// [`NonceCheck::Stale`], never `Valid`, so dropping entries cannot reopen a
/// replay; the client simply re-authenticates with a fresh nonce.
///
/// A nonce checked without `nc` (RFC 2069 clients, no `qop`) is not tracked and
/// is accepted until it goes stale: for such clients the lifetime is the replay
/// window.
pub struct Nonces {
    mac: HmacSha256,
    /// Keys the request fingerprints: random per process, so nobody can craft a
    /// different request with the fingerprint of one they captured.
    fingerprints: RandomState,
    lifetime_ms: i64,
    /// Width of a shard's slices (a tenth of the lifetime, at least 1 ms).
    slice_ms: i64,
    per_shard_cap: usize,
    shards: Box<[Mutex<Shard>]>,
    next_purge: AtomicUsize,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("lifetime_ms", &self.lifetime_ms)
            .field("per_shard_cap", &self.per_shard_cap)
            .field("tracked", &self.tracked())
            .finish_non_exhaustive()
    }
}

/// The highest `nc` accepted for a nonce and 32 bits of the fingerprint of
/// the request that presented it ([`fold`]; 0 when checked without one).
/// Eight bytes: at 1,000 challenged calls a second the table holds 60,000
/// entries through the PBX's one-minute lifetime (300,000 through five). A
/// different request matching 32 bits of a keyed fingerprint is answered as
/// the original was, without acting on it: no replay gets through.
type Accepted = (u32, u32);

/// A request fingerprint as [`Accepted`] keeps it: never 0.
fn fold(request: Option<u64>) -> u32 {
    request.map_or(0, |r| (r as u32) | 1)
}

/// The nonces of one shard issued in `[start, start + width)`.
struct Slice {
    start: i64,
    highest_nc: HashMap<Tracked, Accepted>,
    /// The slice's entries were dropped (the shard was full) at this time:
    /// an untracked nonce of the slice issued at or before it may have been
    /// among them, so its replay history is unknown.
    forgotten_at: i64,
}

struct Shard {
    /// By `start`, oldest first: one for each slice of issue times a nonce was
    /// checked from, kept until all its nonces are stale.
    slices: VecDeque<Slice>,
    /// Entries over all slices.
    tracked: usize,
}

impl Shard {
    fn new() -> Shard {
        Shard {
            slices: VecDeque::new(),
            tracked: 0,
        }
    }

    /// Drops the slices whose every nonce is stale at `now_ms`.
    fn purge(&mut self, now_ms: i64, lifetime_ms: i64, width: i64) {
        while let Some(oldest) = self.slices.front() {
            let newest_issue = oldest.start.saturating_add(width - 1);
            if now_ms.saturating_sub(newest_issue) <= lifetime_ms {
                break;
            }
            self.tracked -= oldest.highest_nc.len();
            self.slices.pop_front();
        }
    }

    /// The slice of nonces issued at `issued`, made if need be.
    fn slice(&mut self, issued: i64, width: i64) -> &mut Slice {
        let start = issued - issued.rem_euclid(width);
        let at = self.slices.partition_point(|s| s.start < start);
        if self.slices.get(at).is_none_or(|s| s.start != start) {
            let slice = Slice {
                start,
                highest_nc: HashMap::new(),
                forgotten_at: i64::MIN,
            };
            self.slices.insert(at, slice);
        }
        &mut self.slices[at]
    }

    /// Drops the entries of the oldest slice that has any, at `now_ms`;
    /// returns that slice's start.
    fn forget_oldest(&mut self, now_ms: i64) -> Option<i64> {
        let slice = self.slices.iter_mut().find(|s| !s.highest_nc.is_empty())?;
        self.tracked -= slice.highest_nc.len();
        slice.highest_nc = HashMap::new();
        slice.forgotten_at = now_ms;
        Some(slice.start)
    }
}

impl Nonces {
    /// A nonce source with the MAC `key` whose nonces stay valid for
    /// `lifetime_ms` (negative counts as zero), tracking at most
    /// [`DEFAULT_MAX_ENTRIES`] nonces.
    pub fn new(key: [u8; 32], lifetime_ms: i64) -> Nonces {
        Nonces::with_max_entries(key, lifetime_ms, DEFAULT_MAX_ENTRIES)
    }

    /// Like [`Nonces::new`] with a chosen cap on tracked nonces. The cap is split
    /// evenly over 16 shards, so the effective cap is `max_entries` rounded down
    /// to a multiple of 16, and at least 16.
    pub fn with_max_entries(key: [u8; 32], lifetime_ms: i64, max_entries: usize) -> Nonces {
        // HMAC pads a short key with zeros to the block size, so this 64-byte key
        // gives the same MAC as `key` itself, through an infallible constructor.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key);
        Nonces {
            mac: <HmacSha256 as KeyInit>::new(&block.into()),
            fingerprints: RandomState::new(),
            lifetime_ms: lifetime_ms.max(0),
            slice_ms: (lifetime_ms / SLICES_PER_LIFETIME).max(1),
            per_shard_cap: (max_entries / SHARDS).max(1),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::new())).collect(),
            next_purge: AtomicUsize::new(0),
        }
    }

    fn tag(&self, id: &NonceId) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(id);
        mac
    }

    fn shard(&self, id: &NonceId) -> &Mutex<Shard> {
        // Byte 8 is the first random byte: uniform over shards.
        &self.shards[usize::from(id[8]) % self.shards.len()]
    }

    /// A fresh nonce issued at `now_ms` (43 base64url characters). Also purges a
    /// few expired entries from one shard.
    pub fn issue(&self, now_ms: i64) -> String {
        let mut id: NonceId = [0; 16];
        id[..8].copy_from_slice(&now_ms.to_be_bytes());
        id[8..].copy_from_slice(&rand::random::<[u8; 8]>());
        let tag = self.tag(&id).finalize().into_bytes();
        let mut raw = [0u8; RAW_LEN];
        raw[..16].copy_from_slice(&id);
        raw[16..].copy_from_slice(&tag[..16]);

        let turn = self.next_purge.fetch_add(1, Ordering::Relaxed) % self.shards.len();
        self.shards[turn]
            .lock()
            .purge(now_ms, self.lifetime_ms, self.slice_ms);

        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Checks a nonce presented at `now_ms` with the request's `nc`, and on
    /// [`NonceCheck::Valid`] records `nc` as the highest accepted for it.
    ///
    /// A nonce is valid from its issue time until `lifetime_ms` later inclusive.
    /// `nc` counts from 1, so `nc = 0` is a [`NonceCheck::Replay`].
    pub fn check(&self, nonce: &str, nc: Option<u32>, now_ms: i64) -> NonceCheck {
        self.check_request(nonce, nc, None, now_ms)
    }

    /// The fingerprint of a request made of `parts` (for a SIP request: its
    /// Call-ID, CSeq and top Via branch, which a retransmission repeats and a new
    /// request changes), keyed by this nonce source.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> u64 {
        let mut h = self.fingerprints.build_hasher();
        for part in parts {
            h.write_usize(part.len());
            h.write(part);
        }
        h.finish()
    }

    /// Like [`Nonces::check`], remembering `request` (a [`Nonces::fingerprint`])
    /// with the accepted `nc`: presenting the same `nc` again with the same
    /// fingerprint is a [`NonceCheck::Retransmission`] rather than a
    /// [`NonceCheck::Replay`]. A stateless server answers a retransmission as it
    /// answered the original, without acting on it again.
    pub fn check_request(
        &self,
        nonce: &str,
        nc: Option<u32>,
        request: Option<u64>,
        now_ms: i64,
    ) -> NonceCheck {
        if nonce.len() != ENCODED_LEN {
            return NonceCheck::Invalid;
        }
        let Ok(decoded) = URL_SAFE_NO_PAD.decode(nonce) else {
            return NonceCheck::Invalid;
        };
        let Ok(raw) = <[u8; RAW_LEN]>::try_from(decoded.as_slice()) else {
            return NonceCheck::Invalid;
        };
        let mut id: NonceId = [0; 16];
        id.copy_from_slice(&raw[..16]);
        if self.tag(&id).verify_truncated_left(&raw[16..]).is_err() {
            return NonceCheck::Invalid;
        }
        let mut time = [0u8; 8];
        time.copy_from_slice(&id[..8]);
        let issued = i64::from_be_bytes(time);
        if issued > now_ms {
            return NonceCheck::Invalid;
        }
        if now_ms.saturating_sub(issued) > self.lifetime_ms {
            return NonceCheck::Stale;
        }
        let Some(nc) = nc else {
            return NonceCheck::Valid;
        };

        let mut shard = self.shard(&id).lock();
        shard.purge(now_ms, self.lifetime_ms, self.slice_ms);
        let request = fold(request);
        let id = tracked(&id);
        let slice = shard.slice(issued, self.slice_ms);
        let start = slice.start;
        if let Some(accepted) = slice.highest_nc.get_mut(&id) {
            if nc == accepted.0 && request != 0 && request == accepted.1 {
                return NonceCheck::Retransmission;
            }
            if nc <= accepted.0 {
                return NonceCheck::Replay;
            }
            *accepted = (nc, request);
            return NonceCheck::Valid;
        }
        if issued <= slice.forgotten_at {
            return NonceCheck::Stale;
        }
        if nc == 0 {
            return NonceCheck::Replay;
        }
        slice.highest_nc.insert(id, (nc, request));
        shard.tracked += 1;
        if shard.tracked > self.per_shard_cap && shard.forget_oldest(now_ms) == Some(start) {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }

    /// Drops the tracked nonces older than the lifetime at `now_ms`, a slice
    /// (a tenth of the lifetime) at a time: once every nonce of a slice is
    /// stale.
    pub fn purge(&self, now_ms: i64) {
        for shard in self.shards.iter() {
            shard.lock().purge(now_ms, self.lifetime_ms, self.slice_ms);
        }
    }

    /// How many nonces are tracked for replay protection now.
    pub fn tracked(&self) -> usize {
        self.shards.iter().map(|s| s.lock().tracked).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const KEY: [u8; 32] = [0x42; 32];
    const T0: i64 = 1_700_000_000_000;
    const LIFE: i64 = 30_000;

    #[test]
    fn the_same_request_again_is_a_retransmission_not_a_replay() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        let first = n.fingerprint(&[b"call-1", b"2 REGISTER", b"z9hG4bK1"]);
        let other = n.fingerprint(&[b"call-1", b"3 REGISTER", b"z9hG4bK2"]);
        assert_ne!(first, other);
        assert_eq!(
            n.check_request(&a, Some(1), Some(first), T0),
            NonceCheck::Valid
        );
        assert_eq!(
            n.check_request(&a, Some(1), Some(first), T0 + 1),
            NonceCheck::Retransmission
        );
        // A different request with the used count, or one without a fingerprint,
        // is a replay.
        assert_eq!(
            n.check_request(&a, Some(1), Some(other), T0 + 2),
            NonceCheck::Replay
        );
        assert_eq!(n.check(&a, Some(1), T0 + 2), NonceCheck::Replay);
        // A higher count moves the remembered request on.
        assert_eq!(
            n.check_request(&a, Some(2), Some(other), T0 + 3),
            NonceCheck::Valid
        );
        assert_eq!(
            n.check_request(&a, Some(1), Some(first), T0 + 4),
            NonceCheck::Replay
        );
        assert_eq!(
            n.check_request(&a, Some(2), Some(other), T0 + 4),
            NonceCheck::Retransmission
        );
    }

    #[test]
    fn fingerprints_depend_on_the_key_and_on_part_boundaries() {
        let n = Nonces::new(KEY, LIFE);
        let m = Nonces::new(KEY, LIFE);
        let parts: [&[u8]; 2] = [b"ab", b"c"];
        assert_eq!(n.fingerprint(&parts), n.fingerprint(&parts));
        assert_ne!(n.fingerprint(&parts), m.fingerprint(&parts));
        assert_ne!(n.fingerprint(&parts), n.fingerprint(&[b"a", b"bc"]));
    }

    #[test]
    fn issued_nonce_is_valid_and_unique() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        let b = n.issue(T0);
        assert_ne!(a, b);
        assert_eq!(a.len(), ENCODED_LEN);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_eq!(n.check(&a, None, T0), NonceCheck::Valid);
        assert_eq!(n.check(&b, Some(1), T0 + 5), NonceCheck::Valid);
    }

    #[test]
    fn expiry_boundary_and_future() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        assert_eq!(n.check(&a, None, T0 + LIFE), NonceCheck::Valid);
        assert_eq!(n.check(&a, None, T0 + LIFE + 1), NonceCheck::Stale);
        assert_eq!(n.check(&a, Some(1), T0 + LIFE + 1), NonceCheck::Stale);
        assert_eq!(n.check(&a, None, T0 - 1), NonceCheck::Invalid);
        assert_eq!(n.check(&a, None, i64::MAX), NonceCheck::Stale);
    }

    #[test]
    fn tampered_or_foreign_nonces_are_invalid() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        for i in 0..a.len() {
            let mut bytes = a.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(bytes).expect("ascii");
            assert_eq!(n.check(&tampered, None, T0), NonceCheck::Invalid, "pos {i}");
        }
        let other = Nonces::new([1; 32], LIFE);
        assert_eq!(other.check(&a, None, T0), NonceCheck::Invalid);
        for garbage in [
            "",
            "abc",
            &"A".repeat(43),
            &"!".repeat(43),
            &format!("{a}A"),
        ] {
            assert_eq!(n.check(garbage, Some(1), T0), NonceCheck::Invalid);
        }
        assert_eq!(n.tracked(), 0);
    }

    #[test]
    fn nc_replay_rejected_and_increasing_nc_accepted() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        assert_eq!(n.check(&a, Some(1), T0), NonceCheck::Valid);
        assert_eq!(n.check(&a, Some(1), T0 + 1), NonceCheck::Replay);
        assert_eq!(n.check(&a, Some(2), T0 + 2), NonceCheck::Valid);
        assert_eq!(n.check(&a, Some(7), T0 + 3), NonceCheck::Valid);
        assert_eq!(n.check(&a, Some(3), T0 + 4), NonceCheck::Replay);
        assert_eq!(n.check(&a, Some(7), T0 + 5), NonceCheck::Replay);
        assert_eq!(n.check(&a, Some(8), T0 + 6), NonceCheck::Valid);
        let b = n.issue(T0);
        assert_eq!(n.check(&b, Some(0), T0), NonceCheck::Replay);
        assert_eq!(n.check(&b, Some(1), T0), NonceCheck::Valid);
        assert_eq!(n.tracked(), 2);
    }

    #[test]
    fn without_nc_accepted_until_stale() {
        let n = Nonces::new(KEY, LIFE);
        let a = n.issue(T0);
        for step in 0..5 {
            assert_eq!(n.check(&a, None, T0 + step * 1000), NonceCheck::Valid);
        }
        assert_eq!(n.tracked(), 0);
        assert_eq!(n.check(&a, None, T0 + LIFE + 1), NonceCheck::Stale);
    }

    #[test]
    fn room_is_given_back_once_the_burst_expired() {
        let n = Nonces::new(KEY, LIFE);
        for i in 0..2_000 {
            let nonce = n.issue(T0 + i);
            assert_eq!(n.check(&nonce, Some(1), T0 + i), NonceCheck::Valid);
        }
        let room = |n: &Nonces| -> usize {
            n.shards
                .iter()
                .map(|s| {
                    let s = s.lock();
                    s.slices
                        .iter()
                        .map(|s| s.highest_nc.capacity())
                        .sum::<usize>()
                        + s.slices.capacity()
                })
                .sum()
        };
        assert!(room(&n) >= 2_000);
        // Stale once the newest is older than the lifetime; its slice goes
        // within a slice's width after that.
        n.purge(T0 + 2_000 + LIFE + n.slice_ms);
        assert_eq!(n.tracked(), 0);
        assert!(room(&n) <= SHARDS * 4, "{}", room(&n));
    }

    #[test]
    fn a_steady_stream_keeps_only_about_a_lifetime_of_nonces() {
        let n = Nonces::new(KEY, LIFE);
        // Two lifetimes of nonces, one every 100 ms.
        for i in 0..600 {
            let now = T0 + i * 100;
            let a = n.issue(now);
            assert_eq!(n.check(&a, Some(1), now), NonceCheck::Valid);
        }
        n.purge(T0 + 59_900);
        // The live ones (the last lifetime's), and at most one slice more.
        let live = usize::try_from(LIFE / 100).unwrap();
        let slack = usize::try_from(n.slice_ms / 100).unwrap();
        assert!(
            (live..=live + slack + 1).contains(&n.tracked()),
            "{}",
            n.tracked()
        );
        let most = usize::try_from(LIFE / n.slice_ms + 2).unwrap();
        for shard in n.shards.iter() {
            assert!(shard.lock().slices.len() <= most);
        }
    }

    #[test]
    fn expired_entries_are_purged() {
        let n = Nonces::new(KEY, LIFE);
        for _ in 0..100 {
            let a = n.issue(T0);
            assert_eq!(n.check(&a, Some(1), T0), NonceCheck::Valid);
        }
        assert_eq!(n.tracked(), 100);
        n.purge(T0 + LIFE);
        assert_eq!(n.tracked(), 100, "not yet expired");
        // Dropped with their slice, once every nonce it could hold is stale.
        let slice_end = T0 - T0.rem_euclid(n.slice_ms) + n.slice_ms - 1;
        n.purge(slice_end + LIFE);
        assert_eq!(n.tracked(), 100, "the slice may still hold live nonces");
        n.purge(slice_end + LIFE + 1);
        assert_eq!(n.tracked(), 0);
    }

    #[test]
    fn issue_purges_amortised() {
        let n = Nonces::new(KEY, LIFE);
        for _ in 0..100 {
            let a = n.issue(T0);
            assert_eq!(n.check(&a, Some(1), T0), NonceCheck::Valid);
        }
        let later = T0 + LIFE + n.slice_ms;
        for _ in 0..SHARDS {
            n.issue(later);
        }
        assert_eq!(n.tracked(), 0);
    }

    #[test]
    fn table_is_bounded_and_eviction_never_reopens_replay() {
        let n = Nonces::with_max_entries(KEY, LIFE, 64);
        let mut issued = Vec::new();
        let mut stale = 0;
        // Twenty seconds of nonces: several slices of three seconds each.
        for i in 0..1000 {
            let now = T0 + i * 20;
            let a = n.issue(now);
            match n.check(&a, Some(1), now) {
                NonceCheck::Valid => {}
                // The shard was full and its oldest entries were this
                // nonce's own slice's.
                NonceCheck::Stale => stale += 1,
                other => panic!("a fresh nonce gave {other:?}"),
            }
            issued.push(a);
            assert!(n.tracked() <= 64);
        }
        assert!(stale < 1000, "most fresh nonces are accepted");
        assert!(n.tracked() > 0);
        let now = T0 + 20_000;
        let mut replays = 0;
        for a in &issued {
            match n.check(a, Some(1), now) {
                NonceCheck::Replay => replays += 1,
                NonceCheck::Stale => {}
                other => panic!("a used nonce gave {other:?}"),
            }
        }
        assert_eq!(replays, n.tracked(), "every tracked nonce is a replay");
        // Once the used nonces are stale their slices go, and a fresh nonce
        // is tracked and accepted. (Checked right away, it could answer
        // Stale: a full shard whose entries all share the fresh nonce's slice
        // drops that slice's, as the loop above allows for.)
        let later = now + LIFE + LIFE / 10 + 1;
        let fresh = n.issue(later);
        assert_eq!(n.check(&fresh, Some(1), later), NonceCheck::Valid);
        assert_eq!(n.check(&fresh, Some(1), later), NonceCheck::Replay);
    }

    #[test]
    fn concurrent_checks_of_distinct_nonces() {
        let n = Nonces::new(KEY, LIFE);
        let threads = 8;
        let per_thread = 200;
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let n = &n;
                    s.spawn(move || {
                        let mut ok = 0;
                        for i in 0..per_thread {
                            let now = T0 + t * 1000 + i;
                            let a = n.issue(now);
                            ok += usize::from(n.check(&a, Some(1), now) == NonceCheck::Valid);
                            ok += usize::from(n.check(&a, Some(1), now) == NonceCheck::Replay);
                            ok += usize::from(n.check(&a, Some(2), now) == NonceCheck::Valid);
                        }
                        ok
                    })
                })
                .collect();
            for h in handles {
                assert_eq!(h.join().expect("thread ran"), 3 * per_thread as usize);
            }
        });
        assert_eq!(n.tracked(), (threads * per_thread) as usize);
    }

    #[test]
    fn debug_does_not_show_key() {
        let n = Nonces::new(KEY, LIFE);
        let text = format!("{n:?}");
        assert!(text.contains("lifetime_ms: 30000"));
        assert!(!text.contains("66, 66"));
    }

    proptest! {
        #[test]
        fn arbitrary_nonces_are_invalid(s in any::<String>(), nc in proptest::option::of(any::<u32>())) {
            let n = Nonces::new(KEY, LIFE);
            prop_assert_eq!(n.check(&s, nc, T0), NonceCheck::Invalid);
        }

        #[test]
        fn arbitrary_b64_nonces_are_invalid(s in "[A-Za-z0-9_-]{43}", now in any::<i64>()) {
            let n = Nonces::new(KEY, LIFE);
            prop_assert_eq!(n.check(&s, Some(1), now), NonceCheck::Invalid);
        }
    }
}
