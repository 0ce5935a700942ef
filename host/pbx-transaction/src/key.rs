//! Matching messages to transactions (RFC 3261 §17.1.3 and §17.2.3) and making branches.

use std::fmt;
use std::sync::Arc;

use rand::distr::{Alphanumeric, SampleString};

/// The prefix of every RFC 3261 branch parameter.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// Random characters after the magic cookie: 24 alphanumerics, about 142 bits.
const BRANCH_RANDOM_LEN: usize = 24;

/// A fresh Via branch: [`MAGIC_COOKIE`] followed by 24 random alphanumeric characters,
/// unique across space and time as §8.1.1.7 asks.
pub fn new_branch() -> String {
    let mut branch = String::with_capacity(MAGIC_COOKIE.len() + BRANCH_RANDOM_LEN);
    branch.push_str(MAGIC_COOKIE);
    Alphanumeric.append_string(&mut rand::rng(), &mut branch, BRANCH_RANDOM_LEN);
    branch
}

/// What identifies a transaction.
///
/// - Client side (§17.1.3): a response matches the client transaction whose request had
///   the same top-Via `branch` and the same CSeq method.
/// - Server side (§17.2.3): a request matches when the top-Via `branch` and `sent-by`
///   are equal and the method is equal, with ACK counting as INVITE (the ACK for a
///   non-2xx final response belongs to the INVITE transaction).
///
/// Client and server keys never compare equal, so one map may hold both. The branch and
/// the method are compared exactly (methods are case-sensitive); the host part of
/// `sent-by` is compared without regard to ASCII case. Requests whose branch lacks the
/// magic cookie (RFC 2543 peers) need the older matching rules, which this type does not
/// cover.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Key {
    /// The branch, then the lower-cased `sent-by` of a server key, then the
    /// method, in one shared allocation: the owner of many transactions keeps
    /// each key in its transaction map and timer queue, and a clone is a
    /// reference count, not three more strings.
    text: Arc<str>,
    /// Where the branch ends in `text`.
    branch_end: u32,
    /// Where the `sent-by` ends in `text`; [`CLIENT`] for a client key.
    sent_by_end: u32,
}

/// `sent_by_end` of a client key, which has no `sent-by`.
const CLIENT: u32 = u32::MAX;

impl Key {
    fn build(branch: &str, sent_by: Option<&str>, method: &str) -> Self {
        let mut text =
            String::with_capacity(branch.len() + sent_by.map_or(0, str::len) + method.len());
        text.push_str(branch);
        let branch_end = text.len();
        if let Some(sent_by) = sent_by {
            text.extend(sent_by.chars().map(|c| c.to_ascii_lowercase()));
        }
        let sent_by_end = text.len();
        text.push_str(method);
        // A SIP message is far shorter than 4 GiB; a longer branch would only
        // make two keys compare unequal that could have matched.
        let end = |n: usize| u32::try_from(n).unwrap_or(CLIENT - 1);
        Self {
            text: Arc::from(text),
            branch_end: end(branch_end),
            sent_by_end: if sent_by.is_some() {
                end(sent_by_end)
            } else {
                CLIENT
            },
        }
    }

    /// The key of a client transaction: the branch we put in our Via and the CSeq method.
    pub fn client(branch: &str, method: &str) -> Self {
        Self::build(branch, None, method)
    }

    /// The key of a server transaction: the top Via's branch and `sent-by`
    /// (`host[:port]` as received) and the request method, ACK mapped to INVITE.
    pub fn server(branch: &str, sent_by: &str, method: &str) -> Self {
        let method = if method == "ACK" { "INVITE" } else { method };
        Self::build(branch, Some(sent_by), method)
    }

    fn branch_end(&self) -> usize {
        self.branch_end as usize
    }

    fn method_start(&self) -> usize {
        if self.sent_by_end == CLIENT {
            self.branch_end()
        } else {
            self.sent_by_end as usize
        }
    }

    /// The branch parameter.
    pub fn branch(&self) -> &str {
        self.text.get(..self.branch_end()).unwrap_or_default()
    }

    /// The method the transaction was created for (INVITE for an ACK on the server side).
    pub fn method(&self) -> &str {
        self.text.get(self.method_start()..).unwrap_or_default()
    }

    /// The `sent-by` of a server key; `None` for a client key.
    pub fn sent_by(&self) -> Option<&str> {
        if self.sent_by_end == CLIENT {
            return None;
        }
        self.text.get(self.branch_end()..self.sent_by_end as usize)
    }

    /// Whether this is a server transaction's key.
    pub fn is_server(&self) -> bool {
        self.sent_by_end != CLIENT
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("branch", &self.branch())
            .field("sent_by", &self.sent_by())
            .field("method", &self.method())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn branches_have_the_cookie_and_are_distinct() {
        let mut seen = HashSet::new();
        for _ in 0..1000 {
            let b = new_branch();
            assert!(b.starts_with(MAGIC_COOKIE));
            assert_eq!(b.len(), MAGIC_COOKIE.len() + BRANCH_RANDOM_LEN);
            assert!(b.bytes().all(|c| c.is_ascii_alphanumeric()));
            assert!(seen.insert(b));
        }
    }

    #[test]
    fn client_keys_match_on_branch_and_method() {
        let k = Key::client("z9hG4bKa", "INVITE");
        assert_eq!(k, Key::client("z9hG4bKa", "INVITE"));
        assert_ne!(k, Key::client("z9hG4bKa", "CANCEL"));
        assert_ne!(k, Key::client("z9hG4bKb", "INVITE"));
        assert_eq!(k.branch(), "z9hG4bKa");
        assert_eq!(k.method(), "INVITE");
        assert_eq!(k.sent_by(), None);
        assert!(!k.is_server());
    }

    #[test]
    fn server_keys_map_ack_to_invite() {
        let invite = Key::server("z9hG4bKa", "host.example.com:5060", "INVITE");
        assert_eq!(
            invite,
            Key::server("z9hG4bKa", "host.example.com:5060", "ACK")
        );
        assert_eq!(Key::server("z9hG4bKa", "h:5060", "ACK").method(), "INVITE");
        assert_ne!(
            invite,
            Key::server("z9hG4bKa", "host.example.com:5060", "CANCEL")
        );
        assert!(invite.is_server());
    }

    #[test]
    fn server_keys_include_sent_by() {
        let k = Key::server("z9hG4bKa", "Host.Example.com:5060", "BYE");
        assert_eq!(k, Key::server("z9hG4bKa", "host.example.COM:5060", "BYE"));
        assert_eq!(k.sent_by(), Some("host.example.com:5060"));
        assert_ne!(k, Key::server("z9hG4bKa", "other.example.com:5060", "BYE"));
        assert_ne!(k, Key::server("z9hG4bKa", "host.example.com:5070", "BYE"));
    }

    #[test]
    fn client_and_server_keys_differ() {
        assert_ne!(
            Key::client("z9hG4bKa", "INVITE"),
            Key::server("z9hG4bKa", "", "INVITE")
        );
    }

    #[test]
    fn parts_do_not_run_into_each_other() {
        assert_ne!(
            Key::server("z9hG4bKa", "b", "INVITE"),
            Key::server("z9hG4bKab", "", "INVITE")
        );
        assert_ne!(
            Key::client("z9hG4bKa", "BYE"),
            Key::client("z9hG4bKaB", "YE")
        );
        let k = Key::server("z9hG4bKa", "", "BYE");
        assert_eq!(
            (k.branch(), k.sent_by(), k.method()),
            ("z9hG4bKa", Some(""), "BYE")
        );
        let k = Key::client("", "");
        assert_eq!((k.branch(), k.sent_by(), k.method()), ("", None, ""));
    }

    #[test]
    fn a_key_is_three_words_and_clones_share_it() {
        assert!(std::mem::size_of::<Key>() <= 24);
        let k = Key::server("z9hG4bKa", "h:5060", "INVITE");
        let c = k.clone();
        assert!(Arc::ptr_eq(&k.text, &c.text));
    }

    #[test]
    fn methods_are_case_sensitive() {
        assert_ne!(
            Key::client("z9hG4bKa", "invite"),
            Key::client("z9hG4bKa", "INVITE")
        );
    }
}
