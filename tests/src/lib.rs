//! A scripted SIP phone for end-to-end tests: it speaks real SIP over UDP or TCP to
//! a running PBX, answers digest challenges, and lets a test wait for the messages
//! it expects. Waits are bounded by a deadline on a real socket event, never a sleep.

use std::net::SocketAddr;
use std::time::Duration;

pub mod tap;
pub mod tools;

use anyhow::{Context, Result, anyhow, bail};
use md5::{Digest, Md5};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// How long a test waits for an expected message before failing.
pub const WAIT: Duration = Duration::from_secs(5);

/// Transport a phone uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
    /// Secure WebSocket (RFC 7118), as a browser phone speaks it; made with
    /// [`Phone::new_wss`].
    Wss,
}

impl Transport {
    fn token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Wss => "WSS",
        }
    }
}

/// A received SIP message, read loosely (this is the test's view, not the host's parser).
#[derive(Debug, Clone)]
pub struct SipMsg {
    pub start: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub raw: String,
}

impl SipMsg {
    pub fn parse(raw: &str) -> Option<SipMsg> {
        let (head, body) = raw.split_once("\r\n\r\n")?;
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        Some(SipMsg {
            start,
            headers,
            body: body.to_string(),
            raw: raw.to_string(),
        })
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        self.start
            .strip_prefix("SIP/2.0 ")
            .and_then(|r| r.get(..3))
            .and_then(|c| c.parse().ok())
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.start.starts_with("SIP/2.0") {
            None
        } else {
            self.start.split(' ').next()
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.headers
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn call_id(&self) -> &str {
        self.header("Call-ID").unwrap_or("")
    }

    pub fn cseq_method(&self) -> &str {
        self.header("CSeq")
            .and_then(|c| c.split_whitespace().nth(1))
            .unwrap_or("")
    }

    pub fn to_tag(&self) -> Option<String> {
        tag_of(self.header("To")?)
    }

    /// The URI in the Contact header.
    pub fn contact_uri(&self) -> Option<String> {
        let c = self.header("Contact")?;
        let start = c.find('<')? + 1;
        let end = c.find('>')?;
        Some(c[start..end].to_string())
    }
}

pub fn tag_of(v: &str) -> Option<String> {
    v.split(';')
        .skip(1)
        .find_map(|p| p.trim().strip_prefix("tag=").map(str::to_string))
}

fn param(challenge: &str, name: &str) -> Option<String> {
    let idx = challenge.find(&format!("{name}="))?;
    let rest = &challenge[idx + name.len() + 1..];
    if let Some(q) = rest.strip_prefix('"') {
        Some(q[..q.find('"')?].to_string())
    } else {
        Some(
            rest.split([',', ' '])
                .next()
                .unwrap_or("")
                .trim()
                .to_string(),
        )
    }
}

/// The digest algorithm a challenge names (`MD5` when it names none).
pub fn challenge_algorithm(challenge: &str) -> String {
    param(challenge, "algorithm")
        .unwrap_or_else(|| "MD5".into())
        .to_ascii_uppercase()
}

/// hex(H(s)) for a digest algorithm name (`MD5` or `SHA-256`), computed here
/// independently of the host's digest crate.
fn hash_hex(algorithm: &str, s: &str) -> String {
    if algorithm == "SHA-256" {
        hex::encode(Sha256::digest(s.as_bytes()))
    } else {
        hex::encode(Md5::digest(s.as_bytes()))
    }
}

/// The Authorization value answering an MD5 or SHA-256 `challenge`
/// (qop=auth), in the algorithm the challenge names.
pub fn digest_answer(
    challenge: &str,
    user: &str,
    password: &str,
    method: &str,
    uri: &str,
    nc: u32,
) -> String {
    let algorithm = challenge_algorithm(challenge);
    let realm = param(challenge, "realm").unwrap_or_default();
    let nonce = param(challenge, "nonce").unwrap_or_default();
    let cnonce = format!("{:08x}", rand::random::<u32>());
    let ha1 = hash_hex(&algorithm, &format!("{user}:{realm}:{password}"));
    let ha2 = hash_hex(&algorithm, &format!("{method}:{uri}"));
    let nc = format!("{nc:08x}");
    let response = hash_hex(
        &algorithm,
        &format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
    );
    format!(
        "Digest username=\"{user}\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm={algorithm}, cnonce=\"{cnonce}\", qop=auth, nc={nc}"
    )
}

type WsStream = tokio_tungstenite::WebSocketStream<tokio_rustls::client::TlsStream<TcpStream>>;

enum Io {
    Udp(UdpSocket),
    Tcp { stream: TcpStream, buf: Vec<u8> },
    Ws(Box<WsStream>),
}

/// A scripted SIP phone.
pub struct Phone {
    pub user: String,
    pub password: String,
    pub domain: String,
    pub transport: Transport,
    pub server: SocketAddr,
    pub local: SocketAddr,
    io: Io,
    cseq: u32,
    pub reg_call_id: String,
    /// Digest algorithms this phone answers (`MD5`, `SHA-256`); it answers
    /// the first offered challenge among them (RFC 8760 §2.4). MD5 only unless
    /// set otherwise.
    pub algorithms: Vec<String>,
    /// The algorithm of the challenge last answered.
    pub answered_algorithm: Option<String>,
    /// The digest username when it is not the extension (short-lived
    /// browser credentials).
    pub auth_user: Option<String>,
}

/// A fresh random token.
pub fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

impl Phone {
    /// A phone bound to `bind_ip` (any port) that talks to `server`.
    pub async fn new(
        transport: Transport,
        bind_ip: &str,
        server: SocketAddr,
        user: &str,
        password: &str,
        domain: &str,
    ) -> Result<Phone> {
        let (io, local) = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind((bind_ip, 0)).await?;
                let local = s.local_addr()?;
                (Io::Udp(s), local)
            }
            Transport::Wss => bail!("a WebSocket phone is made with Phone::new_wss"),
            Transport::Tcp => {
                let sock = tokio::net::TcpSocket::new_v4()?;
                sock.bind(format!("{bind_ip}:0").parse()?)?;
                let stream = sock.connect(server).await?;
                let local = stream.local_addr()?;
                (
                    Io::Tcp {
                        stream,
                        buf: Vec::new(),
                    },
                    local,
                )
            }
        };
        Ok(Phone {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            transport,
            server,
            local,
            io,
            cseq: 0,
            reg_call_id: token(),
            algorithms: vec!["MD5".into()],
            answered_algorithm: None,
            auth_user: None,
        })
    }

    /// A browser-like phone over secure WebSocket to `server`, trusting the
    /// certificates in `ca` (PEM); it asks for the `sip` subprotocol.
    pub async fn new_wss(
        server: SocketAddr,
        ca: &std::path::Path,
        user: &str,
        password: &str,
        domain: &str,
    ) -> Result<Phone> {
        let ws = ws_connect(server, ca, Some("sip")).await?;
        let local = ws.get_ref().get_ref().0.local_addr()?;
        Ok(Phone {
            user: user.into(),
            password: password.into(),
            domain: domain.into(),
            transport: Transport::Wss,
            server,
            local,
            io: Io::Ws(Box::new(ws)),
            cseq: 0,
            reg_call_id: token(),
            algorithms: vec!["MD5".into()],
            answered_algorithm: None,
            auth_user: None,
        })
    }

    /// The first challenge in `r` (header `header`) this phone understands.
    fn pick_challenge(&mut self, r: &SipMsg, header: &str) -> Result<String> {
        let found = r
            .headers_named(header)
            .find(|c| self.algorithms.contains(&challenge_algorithm(c)))
            .map(str::to_string)
            .ok_or_else(|| {
                anyhow!(
                    "no challenge in {:?} among {}: {}",
                    self.algorithms,
                    r.start,
                    r.raw
                )
            })?;
        self.answered_algorithm = Some(challenge_algorithm(&found));
        Ok(found)
    }

    pub fn contact(&self) -> String {
        match self.transport {
            Transport::Udp => format!("<sip:{}@{}>", self.user, self.local),
            Transport::Tcp => format!("<sip:{}@{};transport=tcp>", self.user, self.local),
            // A browser cannot be reached at an address of its own (RFC 7118 §5.2).
            Transport::Wss => format!(
                "<sip:{}@{}.invalid;transport=ws>",
                self.user,
                self.ws_host()
            ),
        }
    }

    pub fn via(&self) -> String {
        let sent_by = match self.transport {
            Transport::Wss => format!("{}.invalid", self.ws_host()),
            _ => self.local.to_string(),
        };
        format!(
            "SIP/2.0/{} {sent_by};branch=z9hG4bK{};rport",
            self.transport.token(),
            token()
        )
    }

    /// The username its digest answers give.
    fn auth_name(&self) -> &str {
        self.auth_user.as_deref().unwrap_or(&self.user)
    }

    /// The made-up host name a WebSocket phone uses in its Via and Contact.
    fn ws_host(&self) -> String {
        format!("ws{}", self.local.port())
    }

    pub fn next_cseq(&mut self) -> u32 {
        self.cseq += 1;
        self.cseq
    }

    /// Sends raw text.
    pub async fn send(&mut self, text: &str) -> Result<()> {
        match &mut self.io {
            Io::Udp(s) => {
                s.send_to(text.as_bytes(), self.server).await?;
            }
            Io::Tcp { stream, .. } => stream.write_all(text.as_bytes()).await?,
            Io::Ws(ws) => {
                use futures_util::SinkExt as _;
                ws.send(tokio_tungstenite::tungstenite::Message::text(text))
                    .await?
            }
        }
        Ok(())
    }

    /// Waits for the next message (up to [`WAIT`]).
    pub async fn recv(&mut self) -> Result<SipMsg> {
        self.recv_within(WAIT).await
    }

    /// Waits up to `wait` for the next message.
    pub async fn recv_within(&mut self, wait: Duration) -> Result<SipMsg> {
        tokio::time::timeout(wait, self.recv_inner())
            .await
            .map_err(|_| anyhow!("{}: no SIP message within {wait:?}", self.user))?
    }

    async fn recv_inner(&mut self) -> Result<SipMsg> {
        match &mut self.io {
            Io::Udp(s) => {
                let mut buf = vec![0u8; 65536];
                let (n, _) = s.recv_from(&mut buf).await?;
                let text = String::from_utf8_lossy(&buf[..n]).to_string();
                SipMsg::parse(&text).context("unparseable message from the PBX")
            }
            Io::Ws(ws) => loop {
                use futures_util::StreamExt as _;
                use tokio_tungstenite::tungstenite::Message;
                match ws.next().await {
                    Some(Ok(Message::Text(text))) => {
                        return SipMsg::parse(&text).context("unparseable message from the PBX");
                    }
                    Some(Ok(Message::Binary(bytes))) => {
                        return SipMsg::parse(&String::from_utf8_lossy(&bytes))
                            .context("unparseable message from the PBX");
                    }
                    Some(Ok(Message::Close(_))) | None => bail!("WebSocket closed by the PBX"),
                    Some(Ok(_)) => continue,
                    Some(Err(e)) => bail!("WebSocket failed: {e}"),
                }
            },
            Io::Tcp { stream, buf } => loop {
                while buf.starts_with(b"\r\n") {
                    buf.drain(..2);
                }
                if let Some(end) = find(buf, b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..end]).to_string();
                    let len = head
                        .split("\r\n")
                        .find_map(|l| {
                            let (n, v) = l.split_once(':')?;
                            let n = n.trim();
                            (n.eq_ignore_ascii_case("content-length") || n == "l")
                                .then(|| v.trim().parse::<usize>().ok())?
                        })
                        .unwrap_or(0);
                    let total = end + 4 + len;
                    if buf.len() >= total {
                        let text = String::from_utf8_lossy(&buf[..total]).to_string();
                        buf.drain(..total);
                        return SipMsg::parse(&text).context("unparseable message from the PBX");
                    }
                }
                let mut chunk = [0u8; 8192];
                let n = stream.read(&mut chunk).await?;
                if n == 0 {
                    bail!("connection closed by the PBX");
                }
                buf.extend_from_slice(&chunk[..n]);
            },
        }
    }

    /// Waits for a message matching `pred`, skipping others (e.g. retransmissions).
    pub async fn expect(&mut self, what: &str, pred: impl Fn(&SipMsg) -> bool) -> Result<SipMsg> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self
                .recv_within(left)
                .await
                .with_context(|| format!("{} waiting for {what}", self.user))?;
            if pred(&m) {
                return Ok(m);
            }
        }
    }

    /// Waits for a response with `status` to a request of `method`.
    pub async fn expect_status(&mut self, method: &str, status: u16) -> Result<SipMsg> {
        let what = format!("{status} to {method}");
        self.expect(&what, |m| {
            m.status() == Some(status) && m.cseq_method() == method
        })
        .await
    }

    /// Waits for a final response (>= 200) to `method`.
    pub async fn expect_final(&mut self, method: &str) -> Result<SipMsg> {
        self.expect(&format!("final response to {method}"), |m| {
            m.status().is_some_and(|s| s >= 200) && m.cseq_method() == method
        })
        .await
    }

    /// Waits for a request of `method`.
    pub async fn expect_request(&mut self, method: &str) -> Result<SipMsg> {
        self.expect(&format!("{method} request"), |m| m.method() == Some(method))
            .await
    }

    fn register_text(&mut self, expires: u32, auth: Option<&str>, contact: &str) -> String {
        let cseq = self.next_cseq();
        let mut s = format!(
            "REGISTER sip:{d} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{d}>;tag={tag}\r\nTo: <sip:{u}@{d}>\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} REGISTER\r\nContact: {contact}\r\nExpires: {expires}\r\n",
            d = self.domain,
            via = self.via(),
            u = self.user,
            tag = token(),
            cid = self.reg_call_id,
        );
        if let Some(a) = auth {
            s.push_str(&format!("Authorization: {a}\r\n"));
        }
        s.push_str("Content-Length: 0\r\n\r\n");
        s
    }

    /// REGISTERs (answering the challenge) and returns the final response.
    pub async fn register(&mut self, expires: u32) -> Result<SipMsg> {
        let contact = self.contact();
        self.register_contact(expires, &contact).await
    }

    /// REGISTERs a given Contact value.
    pub async fn register_contact(&mut self, expires: u32, contact: &str) -> Result<SipMsg> {
        let text = self.register_text(expires, None, contact);
        self.send(&text).await?;
        let r = self.expect_final("REGISTER").await?;
        if r.status() != Some(401) {
            return Ok(r);
        }
        let challenge = self.pick_challenge(&r, "WWW-Authenticate")?;
        let uri = format!("sip:{}", self.domain);
        let auth = digest_answer(
            &challenge,
            self.auth_name(),
            &self.password,
            "REGISTER",
            &uri,
            1,
        );
        let text = self.register_text(expires, Some(&auth), contact);
        self.send(&text).await?;
        self.expect_final("REGISTER").await
    }

    /// SUBSCRIBEs to the message-waiting state (RFC 3842) of the mailbox
    /// `target` (a SIP URI), answering the 401 with this phone's credentials,
    /// and returns the final response; the NOTIFYs are left for the test.
    /// The subscription's Call-ID is the response's.
    pub async fn subscribe_mwi(&mut self, target: &str, expires: u32) -> Result<SipMsg> {
        let (call_id, from_tag) = (token(), token());
        let mut auth = None;
        loop {
            let cseq = self.next_cseq();
            let mut s = format!(
                "SUBSCRIBE {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
                 From: <sip:{u}@{d}>;tag={from_tag}\r\nTo: <{target}>\r\nCall-ID: {call_id}\r\n\
                 CSeq: {cseq} SUBSCRIBE\r\nContact: {contact}\r\nEvent: message-summary\r\n\
                 Accept: application/simple-message-summary\r\nExpires: {expires}\r\n",
                via = self.via(),
                u = self.user,
                d = self.domain,
                contact = self.contact(),
            );
            if let Some(a) = &auth {
                s.push_str(&format!("Authorization: {a}\r\n"));
            }
            s.push_str("Content-Length: 0\r\n\r\n");
            self.send(&s).await?;
            let r = self.expect_final("SUBSCRIBE").await?;
            if r.status() != Some(401) || auth.is_some() {
                return Ok(r);
            }
            let challenge = self.pick_challenge(&r, "WWW-Authenticate")?;
            auth = Some(digest_answer(
                &challenge,
                self.auth_name(),
                &self.password,
                "SUBSCRIBE",
                target,
                1,
            ));
        }
    }

    /// Builds an INVITE to `callee` on this phone's domain.
    pub fn invite_text(&mut self, call: &OutCall, auth: Option<&str>) -> String {
        let cseq = self.next_cseq();
        let sdp = format!(
            "v=0\r\no=- 1 1 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            ip = self.local.ip(),
            fam = if self.local.is_ipv4() { "IP4" } else { "IP6" },
        );
        let mut s = format!(
            "INVITE {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\n\
             From: <sip:{u}@{d}>;tag={tag}\r\nTo: <{uri}>\r\nCall-ID: {cid}\r\n\
             CSeq: {cseq} INVITE\r\nContact: {contact}\r\nContent-Type: application/sdp\r\n",
            uri = call.uri,
            via = call.via,
            u = self.user,
            d = self.domain,
            tag = call.from_tag,
            cid = call.call_id,
            contact = self.contact(),
        );
        if let Some(a) = auth {
            s.push_str(&format!("Proxy-Authorization: {a}\r\n"));
        }
        s.push_str(&format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()));
        s
    }

    /// Sends an authenticated INVITE to `callee` (answering the 407) and returns the
    /// call; responses after the 407 are left for the test to read.
    pub async fn call(&mut self, callee: &str) -> Result<OutCall> {
        let mut call = OutCall {
            uri: format!("sip:{callee}@{}", self.domain),
            call_id: token(),
            from_tag: token(),
            via: self.via(),
            cseq: 0,
            to_tag: None,
            target: None,
            route: Vec::new(),
        };
        let text = self.invite_text(&call, None);
        self.send(&text).await?;
        let id = call.call_id.clone();
        let r = self
            .expect("final response to INVITE", |m| {
                m.status().is_some_and(|s| s >= 200)
                    && m.cseq_method() == "INVITE"
                    && m.call_id() == id
            })
            .await?;
        if r.status() != Some(407) {
            bail!("expected 407, got {}", r.start);
        }
        self.ack_non_2xx(&call, &r).await?;
        let challenge = self.pick_challenge(&r, "Proxy-Authenticate")?;
        let auth = digest_answer(
            &challenge,
            self.auth_name(),
            &self.password,
            "INVITE",
            &call.uri,
            1,
        );
        call.via = self.via();
        let text = self.invite_text(&call, Some(&auth));
        call.cseq = self.cseq;
        self.send(&text).await?;
        Ok(call)
    }

    /// Waits for the final response to `call`'s INVITE (skipping other
    /// calls' messages) and acknowledges it when it is a failure, so the PBX
    /// stops retransmitting it.
    pub async fn final_response(&mut self, call: &OutCall) -> Result<SipMsg> {
        let id = call.call_id.clone();
        let r = self
            .expect("final response to INVITE", |m| {
                m.status().is_some_and(|s| s >= 200)
                    && m.cseq_method() == "INVITE"
                    && m.call_id() == id
            })
            .await?;
        if r.status().is_some_and(|s| s >= 300) {
            self.ack_non_2xx(call, &r).await?;
        }
        Ok(r)
    }

    async fn ack_non_2xx(&mut self, call: &OutCall, r: &SipMsg) -> Result<()> {
        let text = format!(
            "ACK {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={tag}\r\n\
             To: {to}\r\nCall-ID: {cid}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n",
            uri = call.uri,
            via = call.via,
            u = self.user,
            d = self.domain,
            tag = call.from_tag,
            to = r.header("To").unwrap_or(""),
            cid = call.call_id,
            n = r
                .header("CSeq")
                .and_then(|c| c.split_whitespace().next())
                .unwrap_or("1"),
        );
        self.send(&text).await
    }

    /// Sends a request inside an answered call's dialog.
    pub async fn in_dialog(
        &mut self,
        call: &OutCall,
        method: &str,
        cseq: Option<u32>,
    ) -> Result<()> {
        self.in_dialog_with(call, method, cseq, None).await
    }

    /// Sends a key press as SIP INFO (`application/dtmf-relay`) in an
    /// answered call's dialog.
    pub async fn send_key(&mut self, call: &OutCall, key: char) -> Result<()> {
        let body = format!("Signal={key}\r\nDuration=160\r\n");
        self.in_dialog_with(call, "INFO", None, Some(("application/dtmf-relay", &body)))
            .await
    }

    /// Sends a request, with an optional body, inside an answered call's
    /// dialog.
    pub async fn in_dialog_with(
        &mut self,
        call: &OutCall,
        method: &str,
        cseq: Option<u32>,
        body: Option<(&str, &str)>,
    ) -> Result<()> {
        let n = match cseq {
            Some(n) => n,
            None => self.next_cseq(),
        };
        let target = call.target.clone().unwrap_or_else(|| call.uri.clone());
        let content = match body {
            Some((ct, b)) => format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            ),
            None => "Content-Length: 0\r\n\r\n".to_string(),
        };
        let route: String = call
            .route
            .iter()
            .map(|r| format!("Route: {r}\r\n"))
            .collect();
        let text = format!(
            "{method} {target} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={tag}\r\n\
             To: <{uri}>;tag={tt}\r\nCall-ID: {cid}\r\nCSeq: {n} {method}\r\n{route}{content}",
            via = self.via(),
            u = self.user,
            d = self.domain,
            tag = call.from_tag,
            uri = call.uri,
            tt = call.to_tag.clone().unwrap_or_default(),
            cid = call.call_id,
        );
        self.send(&text).await
    }

    /// CANCELs the pending INVITE of `call` (same branch as the INVITE).
    pub async fn cancel(&mut self, call: &OutCall) -> Result<()> {
        let text = format!(
            "CANCEL {uri} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: <sip:{u}@{d}>;tag={tag}\r\n\
             To: <{uri}>\r\nCall-ID: {cid}\r\nCSeq: {n} CANCEL\r\nContent-Length: 0\r\n\r\n",
            uri = call.uri,
            via = call.via,
            u = self.user,
            d = self.domain,
            tag = call.from_tag,
            cid = call.call_id,
            n = call.cseq,
        );
        self.send(&text).await
    }

    /// Answers an incoming request with `status`, copying the dialog headers and
    /// adding `to_tag` when given.
    pub async fn respond(
        &mut self,
        req: &SipMsg,
        status: u16,
        reason: &str,
        to_tag: Option<&str>,
        sdp: bool,
    ) -> Result<()> {
        let mut s = format!("SIP/2.0 {status} {reason}\r\n");
        for v in req.headers_named("Via") {
            s.push_str(&format!("Via: {v}\r\n"));
        }
        // A dialog-creating response carries the request's Record-Route
        // (RFC 3261 §12.1.1).
        if (101..300).contains(&status) {
            for v in req.headers_named("Record-Route") {
                s.push_str(&format!("Record-Route: {v}\r\n"));
            }
        }
        s.push_str(&format!("From: {}\r\n", req.header("From").unwrap_or("")));
        let to = req.header("To").unwrap_or("");
        match to_tag {
            Some(t) if tag_of(to).is_none() => s.push_str(&format!("To: {to};tag={t}\r\n")),
            _ => s.push_str(&format!("To: {to}\r\n")),
        }
        s.push_str(&format!(
            "Call-ID: {}\r\nCSeq: {}\r\nContact: {}\r\n",
            req.call_id(),
            req.header("CSeq").unwrap_or(""),
            self.contact()
        ));
        if sdp {
            let body = format!(
                "v=0\r\no=- 2 2 IN {fam} {ip}\r\ns=-\r\nc=IN {fam} {ip}\r\nt=0 0\r\nm=audio 4002 RTP/AVP 0\r\n",
                ip = self.local.ip(),
                fam = if self.local.is_ipv4() { "IP4" } else { "IP6" },
            );
            s.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            s.push_str("Content-Length: 0\r\n\r\n");
        }
        self.send(&s).await
    }

    /// Sends the ACK for a 2xx to our INVITE.
    pub async fn ack_2xx(&mut self, call: &OutCall) -> Result<()> {
        self.in_dialog(call, "ACK", Some(call.cseq)).await
    }
}

/// An outgoing call's dialog identifiers, as the calling phone sees them.
#[derive(Debug, Clone)]
pub struct OutCall {
    pub uri: String,
    pub call_id: String,
    pub from_tag: String,
    pub via: String,
    pub cseq: u32,
    pub to_tag: Option<String>,
    pub target: Option<String>,
    /// The dialog's route set: the 2xx's Record-Route, reversed (RFC 3261
    /// §12.1.2), sent as Route in requests inside the dialog.
    pub route: Vec<String>,
}

impl OutCall {
    /// Records the dialog state from a 2xx.
    pub fn answered(&mut self, ok: &SipMsg) {
        self.to_tag = ok.to_tag();
        self.target = ok.contact_uri();
        self.route = ok
            .headers_named("Record-Route")
            .map(str::to_string)
            .collect();
        self.route.reverse();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Opens a WebSocket over TLS to `server`, trusting the certificates in `ca`
/// (PEM), asking for `subprotocol` when given.
pub async fn ws_connect(
    server: SocketAddr,
    ca: &std::path::Path,
    subprotocol: Option<&str>,
) -> Result<WsStream> {
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(server).await?;
    let name = rustls::pki_types::ServerName::IpAddress(server.ip().into());
    let tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(name, tcp)
        .await?;
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "wss://{server}/"
        ))?;
    if let Some(p) = subprotocol {
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", p.parse()?);
    }
    let (ws, _) = tokio_tungstenite::client_async(request, tls).await?;
    Ok(ws)
}
