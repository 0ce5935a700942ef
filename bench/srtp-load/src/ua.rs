//! The user agents: registering a callee, placing one call (INVITE with digest,
//! ACK, hold, BYE) and answering one (200 with an SDES answer, ACK, BYE).
//! Over UDP, requests and the 2xx to an INVITE are retransmitted (RFC 3261
//! §17.1, §13.3.1.4); over TLS nothing is.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use crate::media::{LegSocket, LegStats, Media, Stream};
use crate::sdp::{self, Key, Suite};
use crate::sip::{self, Msg};
use crate::transport::Flow;

/// RFC 3261 timers T1 and T2.
const T1: Duration = Duration::from_millis(500);
const T2: Duration = Duration::from_secs(4);
/// A transaction gives up after 64 * T1.
const TIMEOUT: Duration = Duration::from_secs(32);

/// What every call shares.
pub(crate) struct Shared {
    /// The SIP domain (and the registrar's URI host).
    pub(crate) domain: String,
    /// Passwords are this prefix followed by the user.
    pub(crate) password_prefix: String,
    /// Address of the callers' media sockets.
    pub(crate) uac_media_ip: IpAddr,
    /// Address of the callees' media sockets.
    pub(crate) uas_media_ip: IpAddr,
    /// The first callee; callee `callees_from + k` is stream pair `k + 1`.
    pub(crate) callees_from: u64,
    /// How long a call is held after its ACK.
    pub(crate) hold: Duration,
    /// The streams.
    pub(crate) media: Media,
    /// Calls answered and not yet hung up.
    pub(crate) up: AtomicUsize,
    /// The suites a callee accepts, in order of preference.
    pub(crate) callee_suites: Vec<Suite>,
    /// Each call's caller and callee keys (by pair number), to tell whether
    /// the relay handed one end's key to the other.
    pub(crate) keys: Mutex<HashMap<(u64, bool), Key>>,
}

impl Shared {
    fn remember(&self, pair: u64, callee: bool, key: &Key) {
        self.keys
            .lock()
            .expect("keys")
            .insert((pair, callee), key.clone());
    }

    /// Whether `key`, from the relay, is the other end's own key of pair
    /// `pair` (then forgets that key).
    fn passed_through(&self, pair: u64, other_is_callee: bool, key: &Key) -> bool {
        let theirs = self
            .keys
            .lock()
            .expect("keys")
            .remove(&(pair, other_is_callee));
        theirs.is_some_and(|k| k == *key)
    }
}

/// The SSRC of call `k`'s caller stream; the callee's is the same with the top bit
/// set, so both ends of a call share their low bits (sampling by SSRC keeps both).
pub(crate) fn ssrc(k: u64, callee: bool) -> u32 {
    (k as u32 & 0x7fff_ffff) | if callee { 0x8000_0000 } else { 0 }
}

/// How one call ended on one side.
#[derive(Debug, Default)]
pub(crate) struct CallResult {
    /// The failure, if any.
    pub(crate) failure: Option<String>,
    /// This side's stream, if it ran.
    pub(crate) media: Option<LegStats>,
    /// The key the relay gave this end is the other end's own (no re-keying).
    pub(crate) key_passed_through: bool,
}

impl CallResult {
    /// A call that failed for `why` before any media.
    pub(crate) fn failed(why: impl Into<String>) -> CallResult {
        CallResult {
            failure: Some(why.into()),
            ..CallResult::default()
        }
    }
}

/// Sends `req` (CSeq `cseq` `method`) and waits for its final response,
/// retransmitting over UDP. Messages for other transactions are dropped.
async fn transact(
    flow: &Flow,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    req: String,
    cseq: u32,
    method: &str,
) -> Result<Msg, String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut interval = T1;
    let mut resend = (!flow.reliable()).then(|| Instant::now() + interval);
    flow.send(req.clone());
    loop {
        let wake = resend.map_or(deadline, |r| r.min(deadline));
        tokio::select! {
            _ = sleep_until(wake) => {
                if Instant::now() >= deadline {
                    return Err(format!("{method} timed out"));
                }
                flow.send(req.clone());
                interval = if method == "INVITE" { interval * 2 } else { (interval * 2).min(T2) };
                resend = Some(Instant::now() + interval);
            }
            msg = rx.recv() => {
                let msg = msg.ok_or("flow closed")?;
                let (Some(code), Some((n, m))) = (msg.status(), msg.cseq()) else { continue };
                if n != cseq || m != method {
                    continue;
                }
                if code >= 200 {
                    return Ok(msg);
                }
                if method == "INVITE" {
                    resend = None; // a provisional response stops INVITE retransmissions
                }
            }
        }
    }
}

/// Answers the challenge in a 401 or 407 for `method` on `uri`: the header line.
fn authorize(resp: &Msg, method: &str, uri: &str, user: &str, password: &str) -> Option<String> {
    let (challenge_header, answer_header) = match resp.status()? {
        401 => ("www-authenticate", "Authorization"),
        407 => ("proxy-authenticate", "Proxy-Authorization"),
        _ => return None,
    };
    let (_, creds) = digest_auth::answer_challenges(
        resp.all(challenge_header),
        method,
        uri,
        user,
        password,
        &sip::token(),
    )?;
    Some(format!("{answer_header}: {}", creds.header_value()))
}

/// What a REGISTER asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding {
    /// Bind the user's Contact on the flow for this many seconds (0: remove it).
    Contact(u32),
    /// Remove every binding of the user (`Contact: *`, RFC 3261 §10.2.2).
    RemoveAll,
}

/// Registers, unregisters or clears `user` on `flow`.
pub(crate) async fn register(
    flow: &Flow,
    shared: &Shared,
    user: u64,
    binding: Binding,
) -> Result<(), String> {
    let call_id = format!("{}@srtp-load", sip::token());
    let mut rx = flow.claim(&call_id);
    let result = register_on(flow, shared, user, binding, &call_id, &mut rx).await;
    flow.forget(&call_id);
    result
}

async fn register_on(
    flow: &Flow,
    shared: &Shared,
    user: u64,
    binding: Binding,
    call_id: &str,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
) -> Result<(), String> {
    let domain = &shared.domain;
    let uri = format!("sip:{domain}");
    let tag = sip::token();
    let contact = match binding {
        Binding::Contact(expires) => {
            format!(
                "<{}>;expires={expires}\r\nExpires: {expires}",
                flow.contact(&user.to_string())
            )
        }
        Binding::RemoveAll => "*\r\nExpires: 0".to_owned(),
    };
    let password = format!("{}{user}", shared.password_prefix);
    let mut auth = None;
    for cseq in 1..=2 {
        let req = format!(
            "REGISTER {uri} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n\
             From: <sip:{user}@{domain}>;tag={tag}\r\nTo: <sip:{user}@{domain}>\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} REGISTER\r\nContact: {contact}\r\n{}",
            flow.via(&sip::branch()),
            auth.as_ref().map_or(String::new(), |a| format!("{a}\r\n")),
        );
        let resp = transact(flow, rx, sip::finish(req, None), cseq, "REGISTER").await?;
        match resp.status() {
            Some(200..=299) => return Ok(()),
            Some(401 | 407) if auth.is_none() => {
                auth = authorize(&resp, "REGISTER", &uri, &user.to_string(), &password);
                if auth.is_none() {
                    return Err("REGISTER challenge not answerable".into());
                }
            }
            Some(code) => return Err(format!("REGISTER {code}")),
            None => return Err("REGISTER: bad response".into()),
        }
    }
    Err("REGISTER credentials rejected".into())
}

/// The dialog state a caller keeps after the 2xx.
struct Dialog {
    call_id: String,
    from: String,
    to: String,
    target: String,
    route: Vec<String>,
    cseq: u32,
}

impl Dialog {
    /// A request inside the dialog (ACK or BYE) with CSeq `cseq`.
    fn request(&self, flow: &Flow, method: &str, cseq: u32) -> String {
        let mut req = format!(
            "{method} {} SIP/2.0\r\nVia: {}\r\nMax-Forwards: 70\r\n",
            self.target,
            flow.via(&sip::branch())
        );
        for r in &self.route {
            req += &format!("Route: {r}\r\n");
        }
        req += &format!(
            "From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {cseq} {method}\r\n",
            self.from, self.to, self.call_id
        );
        sip::finish(req, None)
    }
}

/// Places call `k` (0-based) from `caller` to `callee`, holds it, hangs up.
pub(crate) async fn call(
    flow: Arc<Flow>,
    shared: Arc<Shared>,
    k: u64,
    caller: u64,
    callee: u64,
) -> CallResult {
    let call_id = format!("{}@srtp-load", sip::token());
    let mut rx = flow.claim(&call_id);
    let result = place(&flow, &shared, k, caller, callee, &call_id, &mut rx).await;
    flow.forget(&call_id);
    result
}

async fn place(
    flow: &Flow,
    shared: &Shared,
    k: u64,
    caller: u64,
    callee: u64,
    call_id: &str,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
) -> CallResult {
    let fail = CallResult::failed;
    let socket = match LegSocket::bind(shared.uac_media_ip) {
        Ok(s) => s,
        Err(e) => return fail(format!("media socket: {e}")),
    };
    let local_media = socket.local;
    let key = Key::generate();
    shared.remember(k + 1, false, &key);
    let offer = sdp::body(k, local_media, 1, Suite::Sha1_80, &key);
    let domain = &shared.domain;
    let uri = format!("sip:{callee}@{domain}");
    let from = format!("<sip:{caller}@{domain}>;tag={}", sip::token());
    let contact = flow.contact(&caller.to_string());
    let password = format!("{}{caller}", shared.password_prefix);
    let mut auth: Option<String> = None;
    let mut cseq = 1;
    let ok = loop {
        let via = flow.via(&sip::branch());
        let req = format!(
            "INVITE {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\n\
             To: <{uri}>\r\nCall-ID: {call_id}\r\nCSeq: {cseq} INVITE\r\nContact: <{contact}>\r\n{}",
            auth.as_ref().map_or(String::new(), |a| format!("{a}\r\n")),
        );
        let resp = match transact(flow, rx, sip::finish(req, Some(&offer)), cseq, "INVITE").await {
            Ok(r) => r,
            Err(e) => return fail(e),
        };
        let code = resp.status().unwrap_or(0);
        if code < 300 {
            break resp;
        }
        // ACK for a non-2xx: same branch, the response's To (RFC 3261 §17.1.1.3).
        let ack = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {}\r\n\
             Call-ID: {call_id}\r\nCSeq: {cseq} ACK\r\n",
            resp.header("to").unwrap_or_default()
        );
        flow.send(sip::finish(ack, None));
        if matches!(code, 401 | 407) && auth.is_none() {
            auth = authorize(&resp, "INVITE", &uri, &caller.to_string(), &password);
            if auth.is_some() {
                cseq += 1;
                continue;
            }
        }
        return fail(format!("INVITE {code}"));
    };
    let mut route = ok.record_route();
    route.reverse();
    let mut dialog = Dialog {
        call_id: call_id.to_owned(),
        from,
        to: ok.header("to").unwrap_or_default().to_owned(),
        target: ok.contact_uri().unwrap_or(&uri).to_owned(),
        route,
        cseq,
    };
    let ack = dialog.request(flow, "ACK", dialog.cseq);
    flow.send(ack.clone());
    let Some(remote) = sdp::parse(&ok.body) else {
        return hang_up(
            flow,
            &mut dialog,
            rx,
            Some("no usable SDP answer".into()),
            None,
        )
        .await;
    };
    let Some((_, suite, relay_key)) = remote.choose(&[Suite::Sha1_80]) else {
        let why = Some("no AES_CM_128_HMAC_SHA1_80 a=crypto in the answer".into());
        return hang_up(flow, &mut dialog, rx, why, None).await;
    };
    let key_passed_through = shared.passed_through(k + 1, true, &relay_key);
    let stream = match shared.media.stream(
        k * 2,
        socket,
        remote.addr,
        ssrc(k + 1, false),
        &key,
        &relay_key,
        ssrc(k + 1, true),
        suite,
    ) {
        Ok(s) => s,
        Err(e) => return hang_up(flow, &mut dialog, rx, Some(format!("SRTP: {e}")), None).await,
    };
    shared.up.fetch_add(1, Ordering::Relaxed);
    let end = Instant::now() + shared.hold;
    let mut ended_by_peer = false;
    loop {
        tokio::select! {
            _ = sleep_until(end) => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                match msg.method() {
                    None if msg.cseq() == Some((dialog.cseq, "INVITE")) => flow.send(ack.clone()),
                    Some("BYE") => {
                        flow.send(sip::response(&msg, 200, "OK", None, &[], None));
                        ended_by_peer = true;
                        break;
                    }
                    Some("ACK") | None => {}
                    Some(_) => flow.send(sip::response(&msg, 200, "OK", None, &[], None)),
                }
            }
        }
    }
    let stats = stream.stop().await;
    shared.up.fetch_sub(1, Ordering::Relaxed);
    if ended_by_peer {
        return CallResult {
            failure: Some("BYE from the server during the call".into()),
            media: Some(stats),
            key_passed_through,
        };
    }
    let mut result = hang_up(flow, &mut dialog, rx, None, Some(stats)).await;
    result.key_passed_through = key_passed_through;
    result
}

/// Sends BYE; the call failed for `why`, or else if the BYE fails.
async fn hang_up(
    flow: &Flow,
    dialog: &mut Dialog,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
    why: Option<String>,
    media: Option<LegStats>,
) -> CallResult {
    dialog.cseq += 1;
    let bye = dialog.request(flow, "BYE", dialog.cseq);
    let bye_failure = match transact(flow, rx, bye, dialog.cseq, "BYE").await {
        Ok(r) if r.status().is_some_and(|c| c < 300) => None,
        Ok(r) => Some(format!("BYE {}", r.status().unwrap_or(0))),
        Err(e) => Some(e),
    };
    CallResult {
        failure: why.or(bye_failure),
        media,
        key_passed_through: false,
    }
}

/// Answers one INVITE (the first of its Call-ID) arriving on `flow` and plays
/// the callee until the BYE.
pub(crate) async fn answer(
    flow: Arc<Flow>,
    shared: Arc<Shared>,
    invite: Msg,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) -> CallResult {
    let result = answer_on(&flow, &shared, &invite, &mut rx).await;
    // Over UDP, stay for retransmitted BYEs a while (Timer J) before forgetting the call.
    let call_id = invite.call_id().unwrap_or_default().to_owned();
    if !flow.reliable() {
        let flow = flow.clone();
        tokio::spawn(async move {
            let until = Instant::now() + TIMEOUT;
            while let Ok(Some(msg)) = tokio::time::timeout_at(until, rx.recv()).await {
                if msg.method() == Some("BYE") {
                    flow.send(sip::response(&msg, 200, "OK", None, &[], None));
                }
            }
            flow.forget(&call_id);
        });
    } else {
        flow.forget(&call_id);
    }
    result
}

async fn answer_on(
    flow: &Flow,
    shared: &Shared,
    invite: &Msg,
    rx: &mut mpsc::UnboundedReceiver<Msg>,
) -> CallResult {
    let fail = CallResult::failed;
    let user = invite
        .request_uri()
        .and_then(|u| u.strip_prefix("sip:"))
        .and_then(|u| u.split(['@', ';']).next())
        .unwrap_or_default()
        .to_owned();
    let k = user
        .parse::<u64>()
        .ok()
        .and_then(|u| u.checked_sub(shared.callees_from))
        .map_or(0, |k| k + 1);
    let refuse = |why| {
        flow.send(sip::response(
            invite,
            488,
            "Not Acceptable Here",
            None,
            &[],
            None,
        ));
        fail(why)
    };
    let Some(remote) = sdp::parse(&invite.body) else {
        return refuse("offer without usable SDP");
    };
    let Some((tag, suite, relay_key)) = remote.choose(&shared.callee_suites) else {
        return refuse("offer without an a=crypto of an accepted suite");
    };
    let key_passed_through = shared.passed_through(k, false, &relay_key);
    let socket = match LegSocket::bind(shared.uas_media_ip) {
        Ok(s) => s,
        Err(_) => {
            let busy = sip::response(invite, 503, "Service Unavailable", None, &[], None);
            flow.send(busy);
            return fail("media socket");
        }
    };
    let local_media = socket.local;
    let mut socket = Some(socket);
    let key = Key::generate();
    shared.remember(k, true, &key);
    let answer = sdp::body(k, local_media, tag, suite, &key);
    let contact = format!("Contact: <{}>", flow.contact(&user));
    let ok = sip::response(
        invite,
        200,
        "OK",
        Some(&sip::token()),
        &[contact],
        Some(&answer),
    );
    flow.send(ok.clone());
    let mut interval = T1;
    let mut resend = (!flow.reliable()).then(|| Instant::now() + interval);
    let give_up = Instant::now() + TIMEOUT + shared.hold * 2;
    let mut stream: Option<Stream> = None;
    loop {
        let wake = resend.map_or(give_up, |r| r.min(give_up));
        tokio::select! {
            _ = sleep_until(wake) => {
                if Instant::now() >= give_up {
                    let media = match stream.take() {
                        Some(s) => Some(s.stop().await),
                        None => None,
                    };
                    let why = if media.is_some() { "no BYE" } else { "no ACK" };
                    return CallResult { failure: Some(why.into()), media, key_passed_through };
                }
                flow.send(ok.clone());
                interval = (interval * 2).min(T2);
                resend = Some(Instant::now() + interval);
            }
            msg = rx.recv() => {
                let Some(msg) = msg else { return fail("flow closed") };
                match msg.method() {
                    Some("INVITE") if stream.is_none() => flow.send(ok.clone()),
                    Some("ACK") => {
                        resend = None;
                        if let Some(socket) = socket.take() {
                            match shared.media.stream(
                                k * 2 + 1,
                                socket,
                                remote.addr,
                                ssrc(k, true),
                                &key,
                                &relay_key,
                                ssrc(k, false),
                                suite,
                            ) {
                                Ok(s) => stream = Some(s),
                                Err(_) => return fail("SRTP context"),
                            }
                        }
                    }
                    Some("BYE") => {
                        flow.send(sip::response(&msg, 200, "OK", None, &[], None));
                        let media = match stream.take() {
                            Some(s) => Some(s.stop().await),
                            None => None,
                        };
                        let failure = media.is_none().then(|| "BYE before ACK".to_owned());
                        return CallResult { failure, media, key_passed_through };
                    }
                    Some(_) => flow.send(sip::response(&msg, 200, "OK", None, &[], None)),
                    None => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Kind;

    fn shared() -> Shared {
        Shared {
            domain: "bench.example".into(),
            password_prefix: "pw".into(),
            uac_media_ip: "127.0.0.1".parse().unwrap(),
            uas_media_ip: "127.0.0.1".parse().unwrap(),
            callees_from: 2000,
            hold: Duration::from_secs(1),
            media: Media::start(1, Vec::new()),
            up: AtomicUsize::new(0),
            callee_suites: vec![Suite::Sha1_80],
            keys: Mutex::default(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_register_to_a_silent_server_is_retransmitted_then_times_out() {
        let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        silent.set_nonblocking(true).unwrap();
        let local = "127.0.0.1:0".parse().unwrap();
        let flow = Flow::open(Kind::Udp, local, silent.local_addr().unwrap(), None)
            .await
            .unwrap();
        let r = register(&flow, &shared(), 2000, Binding::Contact(60)).await;
        assert_eq!(r, Err("REGISTER timed out".to_owned()));
        // Timer E: 0.5, 1, 2, 4, 4, ... s until 32 s: the first send and 10 more.
        let mut buf = [0u8; 2048];
        let mut sent = Vec::new();
        while let Ok(n) = silent.recv(&mut buf) {
            sent.push(Msg::parse(&buf[..n]).expect("SIP"));
        }
        assert_eq!(sent.len(), 11);
        assert!(
            sent.iter()
                .all(|m| m.header("via") == sent[0].header("via"))
        );
        assert_eq!(sent[0].cseq(), Some((1, "REGISTER")));
    }

    #[test]
    fn both_ends_of_a_call_share_the_low_ssrc_bits() {
        assert_eq!(ssrc(5, false), 5);
        assert_eq!(ssrc(5, true), 0x8000_0005);
        assert_eq!(ssrc(5, true) & 0xff, ssrc(5, false) & 0xff);
    }
}
