// The console's browser phone: a small SIP user agent over secure WebSocket
// (RFC 7118) with WebRTC audio. It registers one extension with short-lived
// credentials from the API (never the extension's SIP password), places and
// answers one call at a time, and leaves media to the browser: the PBX anchors
// it (ICE-lite, DTLS-SRTP) and bridges it to the other phone.
//
// WebSocket is a reliable transport, so requests are sent once (RFC 3261
// §17.1.1.2: no Timer A); a repeated 2xx to our INVITE gets its ACK again.
// No trickle ICE: SDP is sent once gathering is complete (host candidates
// only; the PBX learns the browser's address from its ICE checks).

const REGISTER_EXPIRES = 600;
const ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS";
const USER_AGENT = "PBX console phone";

const COMPACT = { i: "call-id", f: "from", t: "to", v: "via", m: "contact", l: "content-length", c: "content-type", k: "supported" };

// ---- MD5 (RFC 1321), for digest authentication: WebCrypto has none ------

const MD5_SHIFTS = [7, 12, 17, 22, 5, 9, 14, 20, 4, 11, 16, 23, 6, 10, 15, 21];
const MD5_K = Array.from({ length: 64 }, (_, i) => Math.floor(Math.abs(Math.sin(i + 1)) * 2 ** 32) >>> 0);

function md5Hex(text) {
  const input = new TextEncoder().encode(text);
  const padded = new Uint8Array(((input.length + 8) >> 6) * 64 + 64);
  padded.set(input);
  padded[input.length] = 0x80;
  const view = new DataView(padded.buffer);
  view.setUint32(padded.length - 8, (input.length * 8) >>> 0, true);
  view.setUint32(padded.length - 4, Math.floor(input.length / 0x20000000), true);
  let [a0, b0, c0, d0] = [0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476];
  for (let off = 0; off < padded.length; off += 64) {
    let [a, b, c, d] = [a0, b0, c0, d0];
    for (let i = 0; i < 64; i++) {
      let f, g;
      if (i < 16) { f = (b & c) | (~b & d); g = i; }
      else if (i < 32) { f = (d & b) | (~d & c); g = (5 * i + 1) % 16; }
      else if (i < 48) { f = b ^ c ^ d; g = (3 * i + 5) % 16; }
      else { f = c ^ (b | ~d); g = (7 * i) % 16; }
      const s = MD5_SHIFTS[(i >> 4) * 4 + (i % 4)];
      const sum = (a + f + MD5_K[i] + view.getUint32(off + g * 4, true)) >>> 0;
      [a, d, c] = [d, c, b];
      b = (b + ((sum << s) | (sum >>> (32 - s)))) >>> 0;
    }
    [a0, b0, c0, d0] = [(a0 + a) >>> 0, (b0 + b) >>> 0, (c0 + c) >>> 0, (d0 + d) >>> 0];
  }
  const out = new DataView(new ArrayBuffer(16));
  [a0, b0, c0, d0].forEach((w, i) => out.setUint32(i * 4, w, true));
  return [...new Uint8Array(out.buffer)].map((x) => x.toString(16).padStart(2, "0")).join("");
}

async function sha256Hex(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((x) => x.toString(16).padStart(2, "0")).join("");
}

// ---- SIP messages -------------------------------------------------------

function token(bytes = 8) {
  return [...crypto.getRandomValues(new Uint8Array(bytes))].map((x) => x.toString(16).padStart(2, "0")).join("");
}

/** A received message: start line, headers by lower-case name, body. */
function parse(text) {
  const split = text.indexOf("\r\n\r\n");
  if (split < 0) return null;
  const lines = text.slice(0, split).split("\r\n");
  const start = lines.shift();
  const headers = new Map();
  for (const line of lines) {
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    let name = line.slice(0, colon).trim().toLowerCase();
    name = COMPACT[name] || name;
    const value = line.slice(colon + 1).trim();
    if (!headers.has(name)) headers.set(name, []);
    headers.get(name).push(value);
  }
  const status = /^SIP\/2\.0 (\d{3})/.exec(start);
  const request = /^([A-Z]+) (\S+) SIP\/2\.0$/.exec(start);
  const cseq = (headers.get("cseq") || [""])[0].split(/\s+/);
  return {
    start,
    status: status ? Number(status[1]) : null,
    method: request ? request[1] : cseq[1],
    uri: request ? request[2] : null,
    headers,
    body: text.slice(split + 4),
    cseq: Number(cseq[0]),
    get: (name) => (headers.get(name) || [])[0] || "",
    all: (name) => headers.get(name) || [],
  };
}

function tagOf(value) {
  const m = /;\s*tag=([^;>\s]+)/i.exec(value);
  return m ? m[1] : null;
}

function uriOf(value) {
  const angled = /<([^>]+)>/.exec(value);
  return angled ? angled[1] : value.split(";")[0].trim();
}

function userOf(value) {
  const m = /sips?:([^@;>]+)@/.exec(value);
  return m ? decodeURIComponent(m[1]) : uriOf(value);
}

/** The parameters of a Digest challenge. */
function challengeParams(value) {
  const params = {};
  const re = /(\w+)=(?:"([^"]*)"|([^,\s]*))/g;
  let m;
  while ((m = re.exec(value.replace(/^Digest\s+/i, "")))) params[m[1].toLowerCase()] = m[2] ?? m[3];
  return params;
}

function build(startLine, headers, body = "") {
  const lines = [startLine];
  for (const [name, value] of headers) if (value !== null && value !== undefined) lines.push(`${name}: ${value}`);
  lines.push(`Content-Length: ${new TextEncoder().encode(body).length}`);
  return lines.join("\r\n") + "\r\n\r\n" + body;
}

// ---- the phone ----------------------------------------------------------

/**
 * One extension's phone. `credentials()` returns what the API's
 * `issueBrowserCredentials` gives (called again when they near their end).
 * Events (`state` on the phone, with `detail`): `registered`, `unregistered`,
 * `incoming`, `calling`, `ringing`, `in-call`, `ended`.
 */
export class Phone extends EventTarget {
  constructor(credentials, audio) {
    super();
    this.credentials = credentials;
    this.audio = audio;
    this.host = `${token(6)}.invalid`;
    this.ws = null;
    this.creds = null;
    this.regCallId = token(12);
    this.regTag = token(6);
    this.regCseq = 0;
    this.call = null;
    this.refresh = null;
    this.registered = false;
    // Final responses awaited, by Via branch.
    this.pending = new Map();
  }

  emit(state, detail = {}) {
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  get contact() {
    return `<sip:${this.creds.number}@${this.host};transport=ws>`;
  }

  get aor() {
    return `sip:${this.creds.number}@${this.creds.domain}`;
  }

  via() {
    return `SIP/2.0/WSS ${this.host};branch=z9hG4bK${token(8)};rport`;
  }

  send(text) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(text);
  }

  /** Opens the WebSocket and registers. */
  async connect() {
    this.creds = await this.credentials();
    if (!this.creds.servers.length) throw new Error("the PBX serves no SIP over WebSocket");
    await new Promise((resolve, reject) => {
      const ws = new WebSocket(this.creds.servers[0], "sip");
      ws.onopen = () => { this.ws = ws; resolve(); };
      ws.onerror = () => reject(new Error("the SIP WebSocket did not open"));
      ws.onclose = () => { this.ws = null; this.registered = false; this.emit("unregistered"); };
      ws.onmessage = (e) => this.receive(typeof e.data === "string" ? e.data : "");
    });
    await this.register(REGISTER_EXPIRES);
  }

  /** Unregisters and closes. */
  async disconnect() {
    clearTimeout(this.refresh);
    if (this.call) this.hangUp();
    if (this.registered) await this.register(0).catch(() => {});
    if (this.ws) this.ws.close();
  }

  /** Sends a request; resolves with its final response (a made-up 408
   *  when none comes within 32 s, Timer B/F). */
  request(startLine, headers, body = "") {
    const branch = /branch=([^;]+)/.exec(headers.find(([n]) => n === "Via")[1])[1];
    return new Promise((resolve) => {
      const timeout = setTimeout(() => {
        this.pending.delete(branch);
        resolve(parse("SIP/2.0 408 Request Timeout\r\n\r\n"));
      }, 32000);
      this.pending.set(branch, (msg) => { clearTimeout(timeout); resolve(msg); });
      this.send(build(startLine, headers, body));
    });
  }

  async authorization(challenge, method, uri) {
    const p = challengeParams(challenge);
    const algorithm = (p.algorithm || "MD5").toUpperCase();
    const hash = algorithm === "SHA-256" ? sha256Hex : async (t) => md5Hex(t);
    const { username, password } = this.creds;
    const ha1 = await hash(`${username}:${p.realm}:${password}`);
    const ha2 = await hash(`${method}:${uri}`);
    const cnonce = token(8);
    const nc = "00000001";
    const qop = p.qop ? "auth" : null;
    const response = qop
      ? await hash(`${ha1}:${p.nonce}:${nc}:${cnonce}:${qop}:${ha2}`)
      : await hash(`${ha1}:${p.nonce}:${ha2}`);
    let value = `Digest username="${username}", realm="${p.realm}", nonce="${p.nonce}", uri="${uri}", response="${response}", algorithm=${algorithm}`;
    if (qop) value += `, qop=${qop}, nc=${nc}, cnonce="${cnonce}"`;
    if (p.opaque) value += `, opaque="${p.opaque}"`;
    return value;
  }

  /** The challenge to answer: SHA-256 when offered, else MD5. */
  static pickChallenge(values) {
    const digest = values.filter((v) => /^Digest/i.test(v));
    return digest.find((v) => /algorithm=("?)SHA-256\1/i.test(v)) || digest.find((v) => !/algorithm=/i.test(v) || /algorithm=("?)MD5\1/i.test(v));
  }

  async register(expires) {
    if (expires > 0 && this.creds.expires_at_ms - Date.now() < 2 * REGISTER_EXPIRES * 1000) {
      this.creds = await this.credentials();
    }
    const uri = `sip:${this.creds.domain}`;
    const headersFor = (auth) => {
      this.regCseq += 1;
      return {
        startLine: `REGISTER ${uri} SIP/2.0`,
        headers: [["Via", this.via()], ["Max-Forwards", 70], ["From", `<${this.aor}>;tag=${this.regTag}`], ["To", `<${this.aor}>`],
          ["Call-ID", this.regCallId], ["CSeq", `${this.regCseq} REGISTER`], ["Contact", `${this.contact};expires=${expires}`],
          ["Expires", expires], ["Allow", ALLOW], ["User-Agent", USER_AGENT], auth],
      };
    };
    const response = await this.authenticated("REGISTER", uri, headersFor);
    if (response.status !== 200) throw new Error(`registration refused: ${response.start}`);
    this.registered = expires > 0;
    clearTimeout(this.refresh);
    if (this.registered) {
      const granted = Number(/expires=(\d+)/i.exec(response.get("contact"))?.[1] || response.get("expires") || expires);
      this.refresh = setTimeout(() => this.register(REGISTER_EXPIRES).catch((e) => this.emit("unregistered", { reason: e.message })),
        Math.max(granted * 800, 5000));
      this.emit("registered", { number: this.creds.number });
    }
    return response;
  }

  /** Sends a request, answering a 401/407 once with the credentials.
   *  `headersFor(auth)` builds it (new CSeq and branch each time). */
  async authenticated(method, uri, headersFor, body = "") {
    let { startLine, headers } = headersFor(null);
    const first = await this.request(startLine, headers.filter(Boolean), body);
    if (first.status !== 401 && first.status !== 407) return first;
    const header = first.status === 401 ? "www-authenticate" : "proxy-authenticate";
    const challenge = Phone.pickChallenge(first.all(header));
    if (!challenge) return first;
    const value = await this.authorization(challenge, method, uri);
    const name = first.status === 401 ? "Authorization" : "Proxy-Authorization";
    ({ startLine, headers } = headersFor([name, value]));
    return this.request(startLine, headers.filter(Boolean), body);
  }

  // ---- calls --------------------------------------------------------------

  async peer() {
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: "max-bundle", rtcpMuxPolicy: "require" });
    const stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    for (const track of stream.getTracks()) pc.addTrack(track, stream);
    pc.ontrack = (e) => { this.audio.srcObject = e.streams[0] || new MediaStream([e.track]); };
    return { pc, stream };
  }

  static async gathered(pc) {
    if (pc.iceGatheringState === "complete") return;
    await new Promise((resolve) => {
      const done = () => { if (pc.iceGatheringState === "complete") resolve(); };
      pc.addEventListener("icegatheringstatechange", done);
      setTimeout(resolve, 3000);
    });
  }

  /** Calls `target` (an extension or number of the tenant). */
  async dial(target) {
    if (this.call) throw new Error("a call is already in progress");
    const uri = `sip:${target}@${this.creds.domain}`;
    const { pc, stream } = await this.peer();
    await pc.setLocalDescription(await pc.createOffer());
    await Phone.gathered(pc);
    const call = this.call = {
      outgoing: true, pc, stream, peerName: target, uri, callId: token(12), localTag: token(6), remoteTag: null,
      cseq: 0, inviteCseq: 0, branch: null, target: uri, route: [], state: "calling", remoteTo: `<${uri}>`,
    };
    this.emit("calling", { peer: target });
    const sdp = pc.localDescription.sdp;
    const headersFor = (auth) => {
      call.cseq += 1;
      call.inviteCseq = call.cseq;
      call.branch = `z9hG4bK${token(8)}`;
      return {
        startLine: `INVITE ${uri} SIP/2.0`,
        headers: [["Via", `SIP/2.0/WSS ${this.host};branch=${call.branch};rport`], ["Max-Forwards", 70],
          ["From", `<${this.aor}>;tag=${call.localTag}`], ["To", `<${uri}>`], ["Call-ID", call.callId],
          ["CSeq", `${call.cseq} INVITE`], ["Contact", this.contact], ["Allow", ALLOW], ["User-Agent", USER_AGENT],
          ["Content-Type", "application/sdp"], auth],
      };
    };
    const final = await this.authenticated("INVITE", uri, headersFor, sdp);
    if (this.call !== call) return;
    if (final.status >= 200 && final.status < 300) {
      await this.confirm(call, final);
    } else {
      this.end(call, final.status === 487 ? "cancelled" : `${final.start.slice(8)}`);
    }
  }

  async confirm(call, ok) {
    call.remoteTag = tagOf(ok.get("to"));
    call.remoteTo = ok.get("to");
    call.target = uriOf(ok.get("contact")) || call.uri;
    call.route = ok.all("record-route").flatMap((v) => v.split(/,(?=\s*<)/)).map((v) => v.trim()).reverse();
    this.ack(call);
    call.state = "in-call";
    try {
      await call.pc.setRemoteDescription({ type: "answer", sdp: ok.body });
    } catch (e) {
      this.hangUp();
      this.emit("ended", { reason: `the answer's media was refused: ${e.message}` });
      return;
    }
    this.emit("in-call", { peer: call.peerName });
  }

  ack(call) {
    this.send(build(`ACK ${call.target} SIP/2.0`, [
      ["Via", this.via()], ["Max-Forwards", 70], ...call.route.map((r) => ["Route", r]),
      ["From", `<${this.aor}>;tag=${call.localTag}`], ["To", call.remoteTo], ["Call-ID", call.callId],
      ["CSeq", `${call.inviteCseq} ACK`]]));
  }

  /** Ends the call: CANCEL while it rings, BYE once answered, 486 to an unanswered incoming call. */
  hangUp() {
    const call = this.call;
    if (!call) return;
    if (call.outgoing && call.state === "calling") {
      this.send(build(`CANCEL ${call.uri} SIP/2.0`, [
        ["Via", `SIP/2.0/WSS ${this.host};branch=${call.branch};rport`], ["Max-Forwards", 70],
        ["From", `<${this.aor}>;tag=${call.localTag}`], ["To", `<${call.uri}>`], ["Call-ID", call.callId],
        ["CSeq", `${call.inviteCseq} CANCEL`]]));
      call.state = "cancelling";
      return;
    }
    if (!call.outgoing && call.state === "ringing") {
      this.decline();
      return;
    }
    call.cseq += 1;
    const from = call.outgoing ? `<${this.aor}>;tag=${call.localTag}` : call.localTo;
    const to = call.outgoing ? call.remoteTo : call.remoteFrom;
    this.send(build(`BYE ${call.target} SIP/2.0`, [
      ["Via", this.via()], ["Max-Forwards", 70], ...call.route.map((r) => ["Route", r]),
      ["From", from], ["To", to], ["Call-ID", call.callId], ["CSeq", `${call.cseq} BYE`], ["User-Agent", USER_AGENT]]));
    this.end(call, "hung up");
  }

  end(call, reason) {
    if (this.call !== call) return;
    this.call = null;
    call.pc.close();
    for (const t of call.stream.getTracks()) t.stop();
    this.audio.srcObject = null;
    this.emit("ended", { reason });
  }

  /** Answers the ringing incoming call. */
  async answer() {
    const call = this.call;
    if (!call || call.outgoing || call.state !== "ringing") return;
    call.state = "answering";
    const media = await this.peer();
    call.pc = media.pc;
    call.stream = media.stream;
    await call.pc.setRemoteDescription({ type: "offer", sdp: call.invite.body });
    await call.pc.setLocalDescription(await call.pc.createAnswer());
    await Phone.gathered(call.pc);
    if (this.call !== call) return;
    this.respond(call.invite, 200, "OK", call.localTag, [["Contact", this.contact], ["Content-Type", "application/sdp"]],
      call.pc.localDescription.sdp);
    call.state = "in-call";
    this.emit("in-call", { peer: call.peerName });
  }

  /** Declines the ringing incoming call (486 Busy Here). */
  decline() {
    const call = this.call;
    if (!call || call.outgoing) return;
    this.respond(call.invite, 486, "Busy Here", call.localTag);
    this.call = null;
    this.emit("ended", { reason: "declined" });
  }

  respond(req, status, reason, tag, extra = [], body = "") {
    const to = req.get("to");
    const headers = [
      ...req.all("via").map((v) => ["Via", v]),
      ...(status > 100 && status < 300 ? req.all("record-route").map((v) => ["Record-Route", v]) : []),
      ["From", req.get("from")], ["To", tag && !tagOf(to) ? `${to};tag=${tag}` : to],
      ["Call-ID", req.get("call-id")], ["CSeq", req.get("cseq")], ["User-Agent", USER_AGENT], ...extra,
    ];
    this.send(build(`SIP/2.0 ${status} ${reason}`, headers, body));
  }

  // ---- what arrives -------------------------------------------------------

  receive(text) {
    const msg = parse(text);
    if (!msg) return;
    if (msg.status !== null) this.onResponse(msg);
    else this.onRequest(msg);
  }

  onResponse(msg) {
    const branch = /branch=([^;,\s]+)/.exec(msg.get("via"))?.[1];
    const call = this.call;
    // A 2xx repeated after we confirmed the call: its ACK was lost or is late.
    if (call && call.state === "in-call" && msg.method === "INVITE" && msg.status < 300 && msg.get("call-id") === call.callId) {
      this.ack(call);
      return;
    }
    if (msg.method === "INVITE" && call && msg.get("call-id") === call.callId) {
      if (msg.status >= 180 && msg.status < 200 && call.state === "calling") this.emit("ringing", { peer: call.peerName });
      if (msg.status >= 300) {
        // The ACK of a failure goes in the INVITE's transaction (same branch).
        this.send(build(`ACK ${call.uri} SIP/2.0`, [
          ["Via", msg.get("via")], ["Max-Forwards", 70], ["From", msg.get("from")], ["To", msg.get("to")],
          ["Call-ID", call.callId], ["CSeq", `${msg.cseq} ACK`]]));
      }
    }
    if (msg.status < 200) return;
    const pending = this.pending.get(branch);
    if (!pending) return;
    this.pending.delete(branch);
    pending(msg);
  }

  onRequest(msg) {
    const call = this.call;
    const inCall = call && msg.get("call-id") === call.callId;
    switch (msg.method) {
      case "INVITE":
        if (inCall) { this.respond(msg, 488, "Not Acceptable Here"); return; }
        if (call) { this.respond(msg, 486, "Busy Here", token(6)); return; }
        this.incoming(msg);
        return;
      case "ACK":
        return;
      case "CANCEL":
        this.respond(msg, 200, "OK");
        if (inCall && !call.outgoing && call.state === "ringing") {
          this.respond(call.invite, 487, "Request Terminated", call.localTag);
          this.call = null;
          this.emit("ended", { reason: "cancelled by the caller" });
        }
        return;
      case "BYE":
        this.respond(msg, inCall ? 200 : 481, inCall ? "OK" : "Call/Transaction Does Not Exist");
        if (inCall) this.end(call, "the other side hung up");
        return;
      case "OPTIONS":
        this.respond(msg, 200, "OK", null, [["Allow", ALLOW]]);
        return;
      default:
        this.respond(msg, 405, "Method Not Allowed", null, [["Allow", ALLOW]]);
    }
  }

  incoming(invite) {
    const localTag = token(6);
    const from = invite.get("from");
    this.call = {
      outgoing: false, invite, callId: invite.get("call-id"), localTag, state: "ringing",
      peerName: userOf(from), target: uriOf(invite.get("contact")) || uriOf(from),
      route: invite.all("record-route").flatMap((v) => v.split(/,(?=\s*<)/)).map((v) => v.trim()),
      remoteFrom: from, localTo: `${invite.get("to")};tag=${localTag}`, cseq: 0, pc: null, stream: null,
    };
    this.respond(invite, 180, "Ringing", localTag, [["Contact", this.contact]]);
    this.emit("incoming", { peer: this.call.peerName });
  }

  /** RTP packets sent and received in the current call (from WebRTC stats). */
  async packets() {
    const pc = this.call?.pc;
    if (!pc) return null;
    let sent = 0;
    let received = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "outbound-rtp" && s.kind === "audio") sent += s.packetsSent || 0;
      if (s.type === "inbound-rtp" && s.kind === "audio") received += s.packetsReceived || 0;
    });
    return { sent, received };
  }
}

export { md5Hex };
