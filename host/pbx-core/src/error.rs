//! Why the core refuses a request or gives up on something, and the SIP
//! status and reason phrase each refusal is answered with — in one place.
//!
//! Reason phrases are part of the observable behaviour (tests and operators
//! match on them), so each variant's phrase is fixed here and nowhere else.

/// A refusal or failure decided by the core.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The request needs credentials (or better ones) from a phone.
    #[error("authentication required")]
    Unauthorized,
    /// The request needs credentials for the proxy role (INVITE and others).
    #[error("proxy authentication required")]
    ProxyAuthenticationRequired,
    /// The source or the account may not do this.
    #[error("forbidden")]
    Forbidden,
    /// Nothing answers to the dialled number.
    #[error("not found")]
    NotFound,
    /// The method is known but not served outside a dialog.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// No final answer came in time.
    #[error("request timed out")]
    RequestTimeout,
    /// Every target was tried and none answered.
    #[error("temporarily unavailable")]
    TemporarilyUnavailable,
    /// A request inside a dialog the core does not know.
    #[error("call or transaction does not exist")]
    NoSuchCall,
    /// The request came back to us (its own Via is in it).
    #[error("loop detected")]
    LoopDetected,
    /// Max-Forwards reached zero.
    #[error("too many hops")]
    TooManyHops,
    /// The caller gave up (CANCEL or BYE before the answer).
    #[error("request terminated")]
    RequestTerminated,
    /// Another offer is still being answered.
    #[error("request pending")]
    RequestPending,
    /// A REGISTER asked for a shorter binding than allowed.
    #[error("interval too brief")]
    IntervalTooBrief,
    /// A REGISTER's CSeq cannot be read.
    #[error("bad CSeq")]
    BadCSeq,
    /// A REGISTER arrived with a CSeq older than one already applied.
    #[error("REGISTER out of order")]
    OutOfOrder,
    /// `Contact: *` without `Expires: 0`, or with other contacts.
    #[error("invalid wildcard contact")]
    InvalidWildcardContact,
    /// A Contact that is not a SIP URI.
    #[error("bad contact")]
    BadContact,
    /// A Contact `expires` that is not a number.
    #[error("bad expires")]
    BadExpires,
    /// The dial plan named a trunk the tenant does not have.
    #[error("trunk unavailable")]
    TrunkUnavailable,
    /// A plan asked to present a caller ID that is not one of the tenant's
    /// own numbers.
    #[error("caller ID not owned by the tenant")]
    CallerIdNotOwned,
    /// The host cannot answer a call that carries no SDP offer.
    #[error("no offer to answer")]
    NoOfferToAnswer,
    /// The dial plan did not decide in time.
    #[error("routing timed out")]
    RoutingTimeout,
    /// The host is shutting down or overloaded.
    #[error("service unavailable")]
    ServiceUnavailable,
    /// The node is draining (before an upgrade): new calls, registrations
    /// and probes go to another node.
    #[error("node draining")]
    Draining,
    /// A pickup code was dialled and no call rings in the phone's groups.
    #[error("nothing to pick up")]
    NothingToPickUp,
    /// A SUBSCRIBE for an event package the host does not serve.
    #[error("bad event")]
    BadEvent,
    /// The tenant holds its whole share of subscriptions.
    #[error("tenant's subscriptions full")]
    TenantSubscriptionsFull,
    /// The host holds as many subscriptions as it keeps.
    #[error("subscriptions full")]
    SubscriptionsFull,
    /// The media could not be anchored; the status is the media layer's (400
    /// malformed SDP, 488 unacceptable offer, 500/503 local failures).
    #[error("media refused with {0}")]
    Media(u16),
    /// A carrier's challenge carries no digest we can answer (trunk side).
    #[error("{0} with no digest challenge we can answer")]
    ChallengeUnanswerable(u16),
    /// A carrier challenged again with the nonce just answered: the password is wrong.
    #[error("{0} credentials rejected")]
    CredentialsRejected(u16),
    /// A carrier kept challenging.
    #[error("{0} challenged too many times")]
    TooManyChallenges(u16),
}

impl Error {
    /// The SIP status a request refused this way is answered with.
    pub fn status(&self) -> u16 {
        self.answer().0
    }

    /// The reason phrase of that answer.
    pub fn reason(&self) -> &'static str {
        self.answer().1
    }

    fn answer(&self) -> (u16, &'static str) {
        match self {
            Error::Unauthorized => (401, "Unauthorized"),
            Error::ProxyAuthenticationRequired => (407, "Proxy Authentication Required"),
            Error::Forbidden => (403, "Forbidden"),
            Error::NotFound => (404, "Not Found"),
            Error::MethodNotAllowed => (405, "Method Not Allowed"),
            Error::RequestTimeout => (408, "Request Timeout"),
            Error::TemporarilyUnavailable => (480, "Temporarily Unavailable"),
            Error::NoSuchCall => (481, "Call/Transaction Does Not Exist"),
            Error::LoopDetected => (482, "Loop Detected"),
            Error::TooManyHops => (483, "Too Many Hops"),
            Error::RequestTerminated => (487, "Request Terminated"),
            Error::RequestPending => (491, "Request Pending"),
            Error::IntervalTooBrief => (423, "Interval Too Brief"),
            Error::BadCSeq => (400, "Bad CSeq"),
            Error::OutOfOrder => (500, "Out Of Order"),
            Error::InvalidWildcardContact => (400, "Invalid Wildcard Contact"),
            Error::BadContact => (400, "Bad Contact"),
            Error::BadExpires => (400, "Bad Expires"),
            Error::TrunkUnavailable => (503, "Trunk Unavailable"),
            Error::CallerIdNotOwned => (403, "Caller ID Not Allowed"),
            Error::NoOfferToAnswer => (488, "Not Acceptable Here"),
            Error::RoutingTimeout => (503, "Routing Timeout"),
            Error::ServiceUnavailable => (503, "Service Unavailable"),
            Error::Draining => (503, "Draining"),
            Error::NothingToPickUp => (480, "Nothing To Pick Up"),
            Error::BadEvent => (489, "Bad Event"),
            Error::TenantSubscriptionsFull => (480, "Too Many Subscriptions"),
            Error::SubscriptionsFull => (503, "Too Many Subscriptions"),
            Error::Media(s) => (
                *s,
                match s {
                    400 => "Bad Request",
                    488 => "Not Acceptable Here",
                    503 => "Service Unavailable",
                    _ => "Server Internal Error",
                },
            ),
            // Trunk-side failures are reported, not answered; the carrier's
            // status is kept for the report.
            Error::ChallengeUnanswerable(s)
            | Error::CredentialsRejected(s)
            | Error::TooManyChallenges(s) => (*s, "Trunk Authentication Failed"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_phrases() {
        let all = [
            Error::Unauthorized,
            Error::ProxyAuthenticationRequired,
            Error::Forbidden,
            Error::NotFound,
            Error::MethodNotAllowed,
            Error::RequestTimeout,
            Error::TemporarilyUnavailable,
            Error::NoSuchCall,
            Error::LoopDetected,
            Error::TooManyHops,
            Error::RequestTerminated,
            Error::RequestPending,
            Error::IntervalTooBrief,
            Error::BadCSeq,
            Error::OutOfOrder,
            Error::InvalidWildcardContact,
            Error::BadContact,
            Error::BadExpires,
            Error::TrunkUnavailable,
            Error::CallerIdNotOwned,
            Error::NoOfferToAnswer,
            Error::RoutingTimeout,
            Error::ServiceUnavailable,
            Error::Draining,
            Error::NothingToPickUp,
            Error::BadEvent,
            Error::TenantSubscriptionsFull,
            Error::SubscriptionsFull,
        ];
        for e in &all {
            assert!((400..700).contains(&e.status()), "{e:?}");
            assert!(!e.reason().is_empty() && !e.to_string().is_empty());
        }
        assert_eq!(
            Error::NoSuchCall.reason(),
            "Call/Transaction Does Not Exist"
        );
        assert_eq!(
            (Error::OutOfOrder.status(), Error::OutOfOrder.reason()),
            (500, "Out Of Order")
        );
        assert_eq!(
            Error::CredentialsRejected(401).to_string(),
            "401 credentials rejected"
        );
        assert_eq!(Error::TooManyChallenges(407).status(), 407);
        assert_eq!(
            (Error::Media(488).status(), Error::Media(488).reason()),
            (488, "Not Acceptable Here")
        );
        assert_eq!(Error::Media(500).reason(), "Server Internal Error");
    }
}
