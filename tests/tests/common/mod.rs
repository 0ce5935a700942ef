//! Shared fixture: a PBX on 127.0.0.1 (UDP and TCP, ephemeral ports) with two
//! tenants that use the same extension numbers.
#![allow(dead_code)] // each scenario file uses a different part of the fixture

use std::net::SocketAddr;
use std::path::PathBuf;

use pbx::server::{ServeOptions, ServerHandle, start};
use pbx_core::CoreConfig;
use pbx_e2e::{Phone, Transport};
use store::{Store, TenantId};

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

pub(crate) fn core_config() -> CoreConfig {
    CoreConfig {
        digest_algorithms: vec![pbx_core::DigestAlgorithm::Md5],
        ..CoreConfig::default()
    }
}

impl Pbx {
    /// Provisions the tenants and starts serving.
    pub(crate) async fn start() -> Pbx {
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
        let mut pbx = Pbx {
            dir,
            store,
            handle: None,
            udp: "127.0.0.1:0".parse().unwrap(),
            tcp: "127.0.0.1:0".parse().unwrap(),
            acme,
            beta,
        };
        pbx.serve().await;
        pbx
    }

    /// (Re)starts the server on the same data directory and store.
    pub(crate) async fn serve(&mut self) {
        let mut opts = ServeOptions::new(
            vec!["127.0.0.1:0".parse().unwrap()],
            vec!["127.0.0.1:0".parse().unwrap()],
            core_config(),
        );
        // Provisioning changes show up quickly, so tests wait little for them.
        opts.limits.reload_interval = std::time::Duration::from_millis(50);
        // Every test phone and load tool sends from loopback: trust it, so only
        // the abuse tests (which clear this) meet bans and rate limits.
        opts.guard.set_trusted(pbx::server::loopback_nets());
        let store = Store::open(self.dir.path()).await.expect("reopen store");
        let handle = start(opts, store).await.expect("server starts");
        self.udp = handle.addrs().udp[0];
        self.tcp = handle.addrs().tcp[0];
        self.handle = Some(handle);
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
    pub(crate) async fn registered(&self, transport: Transport, domain: &str, ext: &str) -> Phone {
        let mut p = self.phone(transport, domain, ext).await;
        let r = p.register(300).await.expect("register");
        assert_eq!(r.status(), Some(200), "{} registers: {}", ext, r.raw);
        p
    }
}

/// Repeats `check` until it holds (the server applies store changes on its
/// next poll); fails after a bounded number of tries.
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
