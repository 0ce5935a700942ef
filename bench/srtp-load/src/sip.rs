//! Just enough SIP (RFC 3261) for a load generator: a parsed message with its
//! headers by name, stream framing, and the few values a user agent reads
//! (status, method, Call-ID, CSeq, tags, Contact, Record-Route).

/// One SIP message: its first line, its headers (names in lower case, compact
/// forms expanded) and its body.
#[derive(Debug, Clone)]
pub(crate) struct Msg {
    /// The request line or status line.
    pub(crate) start: String,
    /// Headers in order, one entry per value (`Via: a, b` stays one entry).
    pub(crate) headers: Vec<(String, String)>,
    /// The body (SDP here), as text.
    pub(crate) body: String,
}

/// The full name of a compact header form (RFC 3261 §7.3.3), in lower case.
fn full_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    match lower.as_str() {
        "i" => "call-id",
        "v" => "via",
        "f" => "from",
        "t" => "to",
        "m" => "contact",
        "l" => "content-length",
        "c" => "content-type",
        "k" => "supported",
        _ => return lower,
    }
    .to_owned()
}

impl Msg {
    /// Parses one complete message; `None` when it is not SIP.
    pub(crate) fn parse(raw: &[u8]) -> Option<Msg> {
        let text = std::str::from_utf8(raw).ok()?;
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((text, ""));
        let mut lines = head.split("\r\n");
        let start = lines.next()?.to_owned();
        if !start.starts_with("SIP/2.0 ") && !start.ends_with(" SIP/2.0") {
            return None;
        }
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in lines {
            if line.starts_with([' ', '\t']) {
                // a folded continuation line
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                    last.1.push_str(line.trim());
                }
                continue;
            }
            let (name, value) = line.split_once(':')?;
            headers.push((full_name(name), value.trim().to_owned()));
        }
        Some(Msg {
            start,
            headers,
            body: body.to_owned(),
        })
    }

    /// The status code of a response.
    pub(crate) fn status(&self) -> Option<u16> {
        self.start.strip_prefix("SIP/2.0 ")?.get(..3)?.parse().ok()
    }

    /// The method of a request.
    pub(crate) fn method(&self) -> Option<&str> {
        if self.status().is_some() {
            return None;
        }
        self.start.split(' ').next()
    }

    /// The Request-URI of a request.
    pub(crate) fn request_uri(&self) -> Option<&str> {
        self.method()?;
        self.start.split(' ').nth(1)
    }

    /// The values of header `name` (lower case, full form).
    pub(crate) fn all<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a str> + use<'a, 'n> {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The first value of header `name`.
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.all(name).next()
    }

    /// The Call-ID.
    pub(crate) fn call_id(&self) -> Option<&str> {
        self.header("call-id")
    }

    /// The CSeq number and method.
    pub(crate) fn cseq(&self) -> Option<(u32, &str)> {
        let (n, m) = self.header("cseq")?.split_once(' ')?;
        Some((n.trim().parse().ok()?, m.trim()))
    }

    /// The URI of the first Contact.
    pub(crate) fn contact_uri(&self) -> Option<&str> {
        uri_of(self.header("contact")?)
    }

    /// The Record-Route entries, one per route, in the order received.
    pub(crate) fn record_route(&self) -> Vec<String> {
        self.all("record-route").flat_map(split_list).collect()
    }
}

/// The `tag` parameter of a From or To value.
pub(crate) fn tag_of(value: &str) -> Option<&str> {
    let params = match value.rfind('>') {
        Some(i) => &value[i + 1..],
        None => value,
    };
    params
        .split(';')
        .filter_map(|p| p.trim().strip_prefix("tag="))
        .next()
}

/// The URI in a name-addr (`"x" <sip:...>;p`) or addr-spec.
pub(crate) fn uri_of(value: &str) -> Option<&str> {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => Some(&value[a + 1..b]),
        _ => value.split(';').next().map(str::trim),
    }
}

/// Splits a comma-separated header value, keeping commas inside `<...>` and quotes.
pub(crate) fn split_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(value[start..i].trim().to_owned());
                start = i + 1;
            }
            _ => {}
        }
    }
    let last = value[start..].trim();
    if !last.is_empty() {
        out.push(last.to_owned());
    }
    out
}

/// What [`next_frame`] found at the front of a stream buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// Not a whole message yet.
    Incomplete,
    /// Keep-alive line breaks of this length (RFC 5626 §3.5.1).
    Ping(usize),
    /// A whole message of this length.
    Message(usize),
    /// Not SIP framing (no Content-Length on a stream).
    Invalid,
}

/// Cuts the first message off a stream (TLS) buffer by its Content-Length.
pub(crate) fn next_frame(buf: &[u8]) -> Frame {
    let crlf = buf
        .iter()
        .take_while(|b| **b == b'\r' || **b == b'\n')
        .count();
    if crlf > 0 {
        return Frame::Ping(crlf);
    }
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() > 65536 {
            Frame::Invalid
        } else {
            Frame::Incomplete
        };
    };
    let head = String::from_utf8_lossy(&buf[..end]);
    let length = head.split("\r\n").skip(1).find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (full_name(name) == "content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    match length {
        Some(n) if buf.len() >= end + 4 + n => Frame::Message(end + 4 + n),
        Some(_) => Frame::Incomplete,
        None => Frame::Invalid,
    }
}

/// A response to `req`: its Via, From, To (with `to_tag` added when it has
/// none), Call-ID and CSeq, then `extra` header lines, then `sdp` if any.
pub(crate) fn response(
    req: &Msg,
    code: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[String],
    sdp: Option<&str>,
) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for via in req.all("via") {
        out += &format!("Via: {via}\r\n");
    }
    if (200..300).contains(&code) {
        // the dialog's route set (RFC 3261 §12.1.1)
        for rr in req.all("record-route") {
            out += &format!("Record-Route: {rr}\r\n");
        }
    }
    out += &format!("From: {}\r\n", req.header("from").unwrap_or_default());
    let to = req.header("to").unwrap_or_default();
    match to_tag {
        Some(tag) if tag_of(to).is_none() => out += &format!("To: {to};tag={tag}\r\n"),
        _ => out += &format!("To: {to}\r\n"),
    }
    out += &format!("Call-ID: {}\r\n", req.call_id().unwrap_or_default());
    out += &format!("CSeq: {}\r\n", req.header("cseq").unwrap_or_default());
    for line in extra {
        out += line;
        out += "\r\n";
    }
    finish(out, sdp)
}

/// Ends a message: Content-Type and Content-Length, the blank line, the body.
pub(crate) fn finish(mut head: String, sdp: Option<&str>) -> String {
    match sdp {
        Some(body) => {
            head += &format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
        None => head += "Content-Length: 0\r\n\r\n",
    }
    head
}

/// A fresh token for branches, tags and Call-IDs.
pub(crate) fn token() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// A fresh Via branch (RFC 3261 §8.1.1.7).
pub(crate) fn branch() -> String {
    format!("z9hG4bK{}", token())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:2000@bench.example SIP/2.0\r\n\
        v: SIP/2.0/TLS 127.0.0.1:5061;branch=z9hG4bKa, SIP/2.0/TLS 127.0.0.1:9;branch=z9hG4bKb\r\n\
        f: <sip:1000@bench.example>;tag=abc\r\n\
        To: <sip:2000@bench.example>\r\n\
        i: call-1\r\n\
        CSeq: 2 INVITE\r\n\
        Record-Route: <sip:127.0.0.1;lr;x=\"a,b\">, <sip:127.0.0.2;lr>\r\n\
        m: \"Bench\" <sip:1000@127.0.0.1:7000;transport=tls>;expires=60\r\n\
        l: 4\r\n\r\nv=0\n";

    #[test]
    fn reads_the_headers_a_ua_needs() {
        let m = Msg::parse(INVITE.as_bytes()).expect("parses");
        assert_eq!(m.method(), Some("INVITE"));
        assert_eq!(m.request_uri(), Some("sip:2000@bench.example"));
        assert_eq!(m.call_id(), Some("call-1"));
        assert_eq!(m.cseq(), Some((2, "INVITE")));
        assert_eq!(tag_of(m.header("from").unwrap()), Some("abc"));
        assert_eq!(tag_of(m.header("to").unwrap()), None);
        assert_eq!(
            m.contact_uri(),
            Some("sip:1000@127.0.0.1:7000;transport=tls")
        );
        assert_eq!(
            m.record_route(),
            ["<sip:127.0.0.1;lr;x=\"a,b\">", "<sip:127.0.0.2;lr>"]
        );
        assert_eq!(m.body, "v=0\n");
    }

    #[test]
    fn a_response_echoes_the_request_and_adds_the_tag() {
        let m = Msg::parse(INVITE.as_bytes()).unwrap();
        let r = response(&m, 200, "OK", Some("t1"), &[], Some("v=0\r\n"));
        let r = Msg::parse(r.as_bytes()).expect("parses");
        assert_eq!(r.status(), Some(200));
        assert_eq!(tag_of(r.header("to").unwrap()), Some("t1"));
        assert_eq!(r.all("via").count(), 1);
        assert_eq!(r.header("content-length"), Some("5"));
        assert_eq!(r.cseq(), Some((2, "INVITE")));
    }

    #[test]
    fn frames_by_content_length() {
        let raw = INVITE.as_bytes();
        assert_eq!(next_frame(&raw[..raw.len() - 1]), Frame::Incomplete);
        assert_eq!(next_frame(raw), Frame::Message(raw.len()));
        assert_eq!(next_frame(b"\r\n\r\nINVITE"), Frame::Ping(4));
        assert_eq!(next_frame(b"OPTIONS x SIP/2.0\r\n\r\n"), Frame::Invalid);
    }
}
