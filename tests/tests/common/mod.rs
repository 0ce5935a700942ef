//! Shared fixture: a PBX on 127.0.0.1 (UDP and TCP, ephemeral ports) with two
//! tenants that use the same extension numbers.
//!
//! The server runs the shipped defaults: its options are exactly what
//! `pbx serve --sip-udp 127.0.0.1:0 --sip-tcp 127.0.0.1:0` builds without a
//! configuration file (one MD5 challenge, the guard on and trusting nothing,
//! provisioning reloaded every second). A test that changes a default does so
//! only when that default is what it tests, and says so where it does.
#![allow(dead_code)] // each scenario file uses a different part of the fixture

pub(crate) mod browser;
pub(crate) mod softphone;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pbx::cli::ServeArgs;
use pbx::config::{FileConfig, Settings};
use pbx::server::{ServeOptions, ServerHandle, start};
use pbx_core::CoreConfig;
use pbx_e2e::{Phone, SipMsg, Transport};
use store::{Store, TenantId};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(crate) const ACME: &str = "acme.example";
pub(crate) const BETA: &str = "beta.example";

/// The password the fixture gives `ext` in `domain`.
pub(crate) fn password(domain: &str, ext: &str) -> String {
    format!("Pw-{ext}-{}-x9!", &domain[..4])
}

pub(crate) struct Pbx {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) store: Store,
    pub(crate) handle: Option<ServerHandle>,
    pub(crate) udp: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) acme: TenantId,
    pub(crate) beta: TenantId,
}

/// What `pbx serve` runs with no configuration file and these listeners
/// (`--sip-udp`, `--sip-tcp`, `--sip-tls` with its certificate files).
pub(crate) fn shipped_options(
    udp: &[&str],
    tcp: &[&str],
    tls: Option<(&[&str], pbx::server::TlsFiles)>,
) -> ServeOptions {
    let addrs = |list: &[&str]| -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().expect("address")).collect()
    };
    let mut args = ServeArgs {
        sip_udp: addrs(udp),
        sip_tcp: addrs(tcp),
        ..ServeArgs::default()
    };
    if let Some((listen, files)) = tls {
        args.sip_tls = addrs(listen);
        args.tls_cert = Some(files.cert);
        args.tls_key = Some(files.key);
    }
    Settings::resolve(FileConfig::default(), &args)
        .expect("the shipped defaults resolve")
        .serve
}

/// The shipped options with the admin API on plain HTTP, allowed on loopback
/// (`[api] plain_http = true`): for the tests whose subject includes the API.
pub(crate) fn options_with_api(data_dir: &std::path::Path) -> ServeOptions {
    let mut opts = shipped_options(&["127.0.0.1:0"], &["127.0.0.1:0"], None);
    opts.api = Some(pbx::server::ApiOptions {
        config: pbx_api::ApiConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            plain_http: true,
            ..pbx_api::ApiConfig::default()
        },
        data_dir: data_dir.to_path_buf(),
    });
    opts
}

/// The SIP core's shipped configuration.
pub(crate) fn core_config() -> CoreConfig {
    shipped_options(&["127.0.0.1:0"], &[], None).core
}

impl Pbx {
    /// Provisions the tenants and starts serving.
    pub(crate) async fn start() -> Pbx {
        let mut pbx = Pbx::provisioned().await;
        pbx.serve().await;
        pbx
    }

    /// Provisions the tenants and a provider admin `root` ([`ROOT_PASSWORD`])
    /// and starts serving, with the admin API ([`options_with_api`]).
    pub(crate) async fn start_with_api() -> Pbx {
        let mut pbx = Pbx::provisioned_with_root().await;
        pbx.serve_with_api().await;
        pbx
    }

    /// The tenants, their extensions and a provider admin `root`
    /// ([`ROOT_PASSWORD`]), stored; nothing served yet.
    pub(crate) async fn provisioned_with_root() -> Pbx {
        let pbx = Pbx::provisioned().await;
        pbx_api::add_user(
            &pbx.store,
            "root",
            store::UserRole::ProviderAdmin,
            None,
            ROOT_PASSWORD,
        )
        .await
        .expect("provider admin");
        pbx
    }

    /// [`options_with_api`] plus a SIP over secure WebSocket listener, with a
    /// self-signed certificate for 127.0.0.1 written into the data
    /// directory: (options, the certificate's PEM file).
    pub(crate) fn options_with_wss(&self) -> (ServeOptions, PathBuf) {
        let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("certificate");
        let files = pbx::server::TlsFiles {
            cert: self.dir.path().join("wss-cert.pem"),
            key: self.dir.path().join("wss-key.pem"),
        };
        std::fs::write(&files.cert, made.cert.pem()).expect("cert");
        std::fs::write(&files.key, made.signing_key.serialize_pem()).expect("key");
        let cert = files.cert.clone();
        let mut opts = options_with_api(self.dir.path());
        opts.wss = vec!["127.0.0.1:0".parse().expect("address")];
        opts.tls_files = Some(files);
        (opts, cert)
    }

    /// Makes `username` (password [`ROOT_PASSWORD`]) the `user` of extension
    /// `extension` of acme, as acme's admin (`admin`, a session token) does.
    pub(crate) async fn add_acme_user(&self, admin: &str, username: &str, extension: &str) {
        let (s, v) = http(
            self.api(),
            "POST",
            &format!("/api/v1/tenants/{}/users", self.acme.0),
            Some(admin),
            Some(serde_json::json!({
                "username": username, "password": ROOT_PASSWORD, "role": "user",
                "extension": extension,
            })),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }

    /// (Re)starts the server on the same data directory, with the admin API.
    pub(crate) async fn serve_with_api(&mut self) {
        let opts = options_with_api(self.dir.path());
        self.serve_with(opts).await;
    }

    /// Where the admin API listens (after [`Pbx::start_with_api`]).
    pub(crate) fn api(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .and_then(|h| h.api())
            .expect("the API is served")
            .addr
    }

    /// A session token of the provider admin `root`, by logging in.
    pub(crate) async fn root_token(&self) -> String {
        let (s, v) = http(
            self.api(),
            "POST",
            "/api/v1/auth/login",
            None,
            Some(serde_json::json!({ "username": "root", "password": ROOT_PASSWORD })),
        )
        .await;
        assert_eq!(s, 200, "root logs in: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// The tenants and their extensions, stored; nothing served yet.
    pub(crate) async fn provisioned() -> Pbx {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).await.expect("open store");
        let acme = store
            .add_tenant("acme", ACME)
            .await
            .expect("tenant acme")
            .id;
        let beta = store
            .add_tenant("beta", BETA)
            .await
            .expect("tenant beta")
            .id;
        for (t, d) in [(acme, ACME), (beta, BETA)] {
            for ext in ["1000", "1001", "1002"] {
                store
                    .add_extension(t, ext, &password(d, ext))
                    .await
                    .expect("extension");
            }
        }
        Pbx {
            dir,
            store,
            handle: None,
            udp: "127.0.0.1:0".parse().unwrap(),
            tcp: "127.0.0.1:0".parse().unwrap(),
            acme,
            beta,
        }
    }

    /// A PBX on a data directory made elsewhere (a restored backup) with the
    /// fixture's tenants; nothing served yet.
    pub(crate) async fn on_dir(dir: tempfile::TempDir, acme: TenantId, beta: TenantId) -> Pbx {
        let store = Store::open(dir.path()).await.expect("open store");
        Pbx {
            dir,
            store,
            handle: None,
            udp: "127.0.0.1:0".parse().unwrap(),
            tcp: "127.0.0.1:0".parse().unwrap(),
            acme,
            beta,
        }
    }

    /// (Re)starts the server on the same data directory and store, with the
    /// shipped defaults.
    pub(crate) async fn serve(&mut self) {
        let opts = shipped_options(&["127.0.0.1:0"], &["127.0.0.1:0"], None);
        self.serve_with(opts).await;
    }

    /// (Re)starts the server with `opts` (the shipped defaults with what a
    /// test is about changed: see [`shipped_options`]).
    pub(crate) async fn serve_with(&mut self, opts: ServeOptions) {
        let store = Store::open(self.dir.path()).await.expect("reopen store");
        let handle = start(opts, store).await.expect("server starts");
        self.udp = handle.addrs().udp[0];
        self.tcp = handle.addrs().tcp[0];
        self.handle = Some(handle);
    }

    /// Waits until the running server has applied every provisioning change
    /// made so far (it polls the store every second).
    pub(crate) async fn applied(&self) {
        applied(self.handle.as_ref().expect("server running"), &self.store).await;
    }

    /// Stops the server, waiting until every record is written.
    pub(crate) async fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.expect("clean shutdown");
        }
    }

    pub(crate) fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A phone for `ext` of `domain` talking to this PBX.
    pub(crate) async fn phone(&self, transport: Transport, domain: &str, ext: &str) -> Phone {
        let server = match transport {
            Transport::Udp => self.udp,
            Transport::Tcp => self.tcp,
            Transport::Wss => panic!("a WebSocket phone is made with Phone::new_wss"),
        };
        Phone::new(
            transport,
            "127.0.0.1",
            server,
            ext,
            &password(domain, ext),
            domain,
        )
        .await
        .expect("phone")
    }

    /// A registered phone.
    /// A carrier on loopback (a phone whose user is `user`), added as acme's
    /// trunk `carrier` without credentials.
    pub(crate) async fn carrier_trunk(&self, user: &str) -> Phone {
        let carrier = Phone::new(
            Transport::Udp,
            "127.0.0.1",
            self.udp,
            user,
            "unused",
            "carrier.example",
        )
        .await
        .expect("carrier phone");
        self.store
            .add_trunk(
                self.acme,
                "carrier",
                &format!("sip:{}", carrier.local),
                None,
                None,
            )
            .await
            .expect("carrier trunk");
        carrier
    }

    pub(crate) async fn registered(&self, transport: Transport, domain: &str, ext: &str) -> Phone {
        let mut p = self.phone(transport, domain, ext).await;
        let r = p.register(300).await.expect("register");
        assert_eq!(r.status(), Some(200), "{} registers: {}", ext, r.raw);
        p
    }
}

/// The provider admin's password in [`Pbx::start_with_api`] (and the API
/// tests that add one).
pub(crate) const ROOT_PASSWORD: &str = "Corr3ct-Horse-Battery";

/// One HTTP/1.0 request (the server closes the connection after answering);
/// returns the status and the JSON body (`Null` when empty).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body.map(|v| v.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the API");
    stream.write_all(req.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("API answers in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let json = if body.trim().is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
    };
    (status, json)
}

/// A session token of a new admin of tenant `tenant` (by name), logged in
/// through the API.
pub(crate) async fn tenant_admin_token(pbx: &Pbx, tenant: &str) -> String {
    let username = format!("{tenant}-admin");
    pbx_api::add_user(
        &pbx.store,
        &username,
        store::UserRole::TenantAdmin,
        Some(tenant),
        ROOT_PASSWORD,
    )
    .await
    .expect("the tenant's admin");
    let (s, v) = http(
        pbx.api(),
        "POST",
        "/api/v1/auth/login",
        None,
        Some(serde_json::json!({ "username": username, "password": ROOT_PASSWORD })),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["token"].as_str().expect("a token").to_string()
}

/// A GET on the API returning the raw status and body.
pub(crate) async fn get_raw(api: std::net::SocketAddr, path: &str, token: &str) -> (u16, Vec<u8>) {
    let mut stream = tokio::net::TcpStream::connect(api).await.unwrap();
    let req =
        format!("GET {path} HTTP/1.0\r\nHost: {api}\r\nAuthorization: Bearer {token}\r\n\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("API answers in time")
        .unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap();
    (status, raw[split + 4..].to_vec())
}

/// Every file under `dir`, recursively.
pub(crate) fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Waits (bounded: 5 s) until `handle`'s server has applied the provisioning
/// generation `store` is at now.
pub(crate) async fn applied(handle: &ServerHandle, store: &Store) {
    let wanted = store.generation().await.expect("generation");
    for _ in 0..100 {
        if handle.applied_generation() >= wanted {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!(
        "the server never applied generation {wanted} (at {})",
        handle.applied_generation()
    );
}

/// Repeats `check` until it holds (the server applies store changes on its
/// next poll, within a second); fails after a bounded number of tries (5 s).
pub(crate) async fn eventually<F, Fut>(mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("condition never held");
}

/// Runs one `pbx` command line (`args` without the program name) against
/// `store`, in-process, exactly as the CLI does; returns what it printed.
pub(crate) async fn cli(store: &Store, args: &[&str]) -> String {
    let mut argv = vec!["pbx"];
    argv.extend_from_slice(args);
    let parsed = <pbx::cli::Cli as clap::Parser>::try_parse_from(argv).expect("parses");
    let mut none: &[u8] = b"";
    let mut out = Vec::new();
    pbx::provision::execute(store, parsed.command, &mut none, &mut out)
        .await
        .unwrap_or_else(|e| panic!("pbx {}: {e}", args.join(" ")));
    String::from_utf8(out).expect("utf-8")
}

/// The next INVITE `phone` receives within `wait` (answering trunk
/// registrations on the way, for a carrier).
pub(crate) async fn next_invite(phone: &mut Phone, wait: Duration) -> Option<SipMsg> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = phone.recv_within(left).await.ok()?;
        match m.method() {
            Some("INVITE") => return Some(m),
            Some("REGISTER") => phone
                .respond(&m, 200, "OK", Some("reg"), false)
                .await
                .ok()?,
            _ => {}
        }
    }
}
