//! SIP trunks (outbound gateways, passwords encrypted at rest) and DIDs
//! (inbound numbers, each routed to one tenant).

use std::fmt;
use std::net::Ipv6Addr;

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::tenant::ensure_tenant;
use crate::{Error, Result, Store, TenantId, TransportKind, checks};

/// Longest trunk name accepted.
const MAX_TRUNK_NAME: usize = 32;
/// Longest trunk user name accepted.
const MAX_USERNAME: usize = 64;
/// Default SIP port for UDP and TCP.
const SIP_PORT: u16 = 5060;
/// Default SIP port for TLS.
const SIPS_PORT: u16 = 5061;

/// An outbound SIP trunk of a tenant. `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Trunk {
    pub tenant: TenantId,
    /// Unique within the tenant; dial plans name trunks by it.
    pub name: String,
    /// A host name (lower-case) or IP address; IPv6 without brackets.
    pub host: String,
    pub port: u16,
    pub transport: TransportKind,
    /// The user name to authenticate (and register) with, if the trunk needs one.
    pub username: Option<String>,
    /// The decrypted password.
    pub password: Option<String>,
    /// Whether the host registers to the trunk (it does when it has a user name).
    pub register: bool,
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("tenant", &self.tenant)
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("transport", &self.transport)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("register", &self.register)
            .finish()
    }
}

impl Trunk {
    /// The trunk's address as a SIP URI, e.g. `sip:gw.example:5060;transport=udp`.
    pub fn uri(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "sip:{host}:{};transport={}",
            self.port,
            self.transport.as_str()
        )
    }
}

/// A query over trunks; the argument (a `WHERE ... ORDER BY ...` literal)
/// follows the table name.
macro_rules! trunks_query {
    ($rest:literal) => {
        concat!(
            "SELECT tenant_id, name, host, port, transport, username, password_enc, register \
             FROM trunks ",
            $rest
        )
    };
}

impl Store {
    /// Adds a trunk to `tenant`. `uri` is `sip:HOST[:PORT][;transport=udp|tcp|tls]`
    /// or `sips:HOST[:PORT]` (TLS). The port defaults to 5061 for TLS and 5060
    /// otherwise. The trunk registers when a user name is given; a password needs
    /// a user name and is stored encrypted, bound to this tenant and trunk name.
    pub async fn add_trunk(
        &self,
        tenant: TenantId,
        name: &str,
        uri: &str,
        username: Option<&str>,
        password: Option<&str>,
    ) -> Result<Trunk> {
        trunk_name(name)?;
        let (host, port, transport) = parse_trunk_uri(uri)?;
        if let Some(user) = username {
            trunk_username(user)?;
        }
        if let Some(pw) = password {
            if username.is_none() {
                return Err(Error::Invalid("a trunk password needs a user name".into()));
            }
            checks::password(pw)?;
        }
        let password_enc = password
            .map(|pw| self.secrets.seal(&aad(tenant, name), pw.as_bytes()))
            .transpose()?;
        let trunk = Trunk {
            tenant,
            name: name.to_owned(),
            host,
            port,
            transport,
            username: username.map(str::to_owned),
            password: password.map(str::to_owned),
            register: username.is_some(),
        };
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        sqlx::query(
            "INSERT INTO trunks \
             (tenant_id, name, host, port, transport, username, password_enc, register) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(tenant.0)
        .bind(&trunk.name)
        .bind(&trunk.host)
        .bind(i64::from(trunk.port))
        .bind(trunk.transport.as_str())
        .bind(&trunk.username)
        .bind(&password_enc)
        .bind(i64::from(trunk.register))
        .execute(&mut *tx)
        .await
        .map_err(|e| Error::conflict_on_unique(e, || format!("trunk {name:?} already exists")))?;
        tx.commit().await?;
        Ok(trunk)
    }

    /// The tenant's trunks, by name, passwords decrypted.
    pub async fn list_trunks(&self, tenant: TenantId) -> Result<Vec<Trunk>> {
        let rows = sqlx::query(trunks_query!("WHERE tenant_id = $1 ORDER BY name"))
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| self.trunk_from_row(row)).collect()
    }

    /// Every tenant's trunks, by tenant and name, passwords decrypted (for the
    /// server).
    pub async fn all_trunks(&self) -> Result<Vec<Trunk>> {
        let rows = sqlx::query(trunks_query!("ORDER BY tenant_id, name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| self.trunk_from_row(row)).collect()
    }

    /// Removes one of the tenant's trunks; [`Error::NotFound`] when it has none of
    /// that name.
    pub async fn remove_trunk(&self, tenant: TenantId, name: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM trunks WHERE tenant_id = $1 AND name = $2")
            .bind(tenant.0)
            .bind(name)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!(
                "trunk {name:?} of tenant {tenant}"
            )));
        }
        Ok(())
    }

    /// Routes an inbound number to `tenant`. The number is an optional `+` and
    /// 3-20 digits; one that any tenant already has gives [`Error::Conflict`].
    pub async fn add_did(&self, tenant: TenantId, number: &str) -> Result<()> {
        did_number(number)?;
        let mut tx = self.write_tx().await?;
        ensure_tenant(&mut tx, tenant).await?;
        sqlx::query("INSERT INTO dids (number, tenant_id) VALUES ($1, $2)")
            .bind(number)
            .bind(tenant.0)
            .execute(&mut *tx)
            .await
            .map_err(|e| Error::conflict_on_unique(e, || format!("DID {number} is taken")))?;
        tx.commit().await?;
        Ok(())
    }

    /// The tenant's DIDs, sorted.
    pub async fn list_dids(&self, tenant: TenantId) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT number FROM dids WHERE tenant_id = $1 ORDER BY number")
            .bind(tenant.0)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|row| Ok(row.try_get("number")?)).collect()
    }

    /// Every DID with its tenant, by number (for the server).
    pub async fn all_dids(&self) -> Result<Vec<(String, TenantId)>> {
        let rows = sqlx::query("SELECT number, tenant_id FROM dids ORDER BY number")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| Ok((row.try_get("number")?, TenantId(row.try_get("tenant_id")?))))
            .collect()
    }

    /// Removes a DID; [`Error::NotFound`] when no tenant has it.
    pub async fn remove_did(&self, number: &str) -> Result<()> {
        let done = sqlx::query("DELETE FROM dids WHERE number = $1")
            .bind(number)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(Error::NotFound(format!("DID {number}")));
        }
        Ok(())
    }

    fn trunk_from_row(&self, row: &AnyRow) -> Result<Trunk> {
        let tenant = TenantId(row.try_get("tenant_id")?);
        let name: String = row.try_get("name")?;
        let bad = |what: &str| {
            Error::Invalid(format!("stored trunk {name:?} of tenant {tenant}: {what}"))
        };
        let port: i64 = row.try_get("port")?;
        let transport: String = row.try_get("transport")?;
        let register: i64 = row.try_get("register")?;
        let password_enc: Option<String> = row.try_get("password_enc")?;
        let password = match password_enc {
            Some(sealed) => {
                let clear = self
                    .secrets
                    .open(&aad(tenant, &name), &sealed)
                    .ok_or_else(|| bad("password does not decrypt (wrong secret.key?)"))?;
                Some(String::from_utf8(clear).map_err(|_| bad("password is not UTF-8"))?)
            }
            None => None,
        };
        Ok(Trunk {
            tenant,
            host: row.try_get("host")?,
            port: u16::try_from(port).map_err(|_| bad("port"))?,
            transport: TransportKind::parse(&transport).ok_or_else(|| bad("transport"))?,
            username: row.try_get("username")?,
            password,
            register: register == 1,
            name,
        })
    }
}

/// Associated data of a trunk password: the row it belongs to.
pub(crate) fn aad(tenant: TenantId, name: &str) -> Vec<u8> {
    format!("trunk:{tenant}:{name}").into_bytes()
}

/// A trunk name: 1-32 characters of `[A-Za-z0-9._-]`.
fn trunk_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= MAX_TRUNK_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "trunk name must be 1-{MAX_TRUNK_NAME} characters of [A-Za-z0-9._-]: {name:?}"
        )))
    }
}

/// A trunk user name: 1-64 printable characters without spaces.
fn trunk_username(user: &str) -> Result<()> {
    let ok = !user.is_empty()
        && user.len() <= MAX_USERNAME
        && !user.chars().any(|c| c.is_control() || c.is_whitespace());
    if ok {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "trunk user name must be 1-{MAX_USERNAME} characters without spaces or control \
             characters"
        )))
    }
}

/// A DID: an optional `+` and 3-20 digits.
fn did_number(number: &str) -> Result<()> {
    let digits = number.strip_prefix('+').unwrap_or(number);
    if (3..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "a DID is an optional + and 3-20 digits: {number:?}"
        )))
    }
}

/// Parses `sip:HOST[:PORT][;transport=udp|tcp|tls]` or `sips:HOST[:PORT]` into
/// host (lower-case; IPv6 without brackets), port and transport.
fn parse_trunk_uri(uri: &str) -> Result<(String, u16, TransportKind)> {
    let bad = |why: &str| Error::Invalid(format!("trunk URI {uri:?}: {why}"));
    let (scheme, rest) = uri
        .split_once(':')
        .ok_or_else(|| bad("expected sip:HOST[:PORT][;transport=udp|tcp|tls]"))?;
    let secure = if scheme.eq_ignore_ascii_case("sips") {
        true
    } else if scheme.eq_ignore_ascii_case("sip") {
        false
    } else {
        return Err(bad("the scheme must be sip: or sips:"));
    };
    let mut parts = rest.split(';');
    let hostport = parts.next().unwrap_or_default();
    let mut transport = None;
    for param in parts {
        let (key, value) = param.split_once('=').unwrap_or((param, ""));
        if !key.eq_ignore_ascii_case("transport") || transport.is_some() {
            return Err(bad(
                "the only parameter allowed is one transport=udp|tcp|tls",
            ));
        }
        transport = Some(
            TransportKind::parse(value)
                .filter(|t| *t != TransportKind::Wss)
                .ok_or_else(|| bad("transport must be udp, tcp or tls"))?,
        );
    }
    let transport = match (secure, transport) {
        (true, None | Some(TransportKind::Tls)) => TransportKind::Tls,
        (true, Some(_)) => return Err(bad("sips: always uses TLS")),
        (false, t) => t.unwrap_or(TransportKind::Udp),
    };
    if hostport.contains('@') {
        return Err(bad("a trunk URI has no user part"));
    }
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (addr, after) = v6
            .split_once(']')
            .ok_or_else(|| bad("unterminated IPv6 address"))?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| bad("bad IPv6 address"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("bad port"))?),
        };
        (addr.to_string(), port)
    } else {
        match hostport.split_once(':') {
            Some((h, p)) => (checks::domain(h).map_err(|_| bad("bad host"))?, Some(p)),
            None => (checks::domain(hostport).map_err(|_| bad("bad host"))?, None),
        }
    };
    let port = match port {
        Some(p) => match p.parse::<u16>() {
            Ok(port) if port > 0 && p.bytes().all(|b| b.is_ascii_digit()) => port,
            _ => return Err(bad("the port must be 1-65535")),
        },
        None if transport == TransportKind::Tls => SIPS_PORT,
        None => SIP_PORT,
    };
    Ok((host, port, transport))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    #[test]
    fn trunk_uris() {
        let ok = |uri: &str| parse_trunk_uri(uri).expect(uri);
        assert_eq!(
            ok("sip:GW.Example.com"),
            ("gw.example.com".into(), 5060, TransportKind::Udp)
        );
        assert_eq!(
            ok("sip:10.0.0.1:5080;transport=TCP"),
            ("10.0.0.1".into(), 5080, TransportKind::Tcp)
        );
        assert_eq!(
            ok("sips:gw.example"),
            ("gw.example".into(), 5061, TransportKind::Tls)
        );
        assert_eq!(
            ok("sip:gw.example;transport=tls"),
            ("gw.example".into(), 5061, TransportKind::Tls)
        );
        assert_eq!(
            ok("sip:[2001:db8::1]:5062"),
            ("2001:db8::1".into(), 5062, TransportKind::Udp)
        );
        assert_eq!(ok("SIP:[::1]").1, 5060);
        for bad in [
            "",
            "gw.example",
            "http://gw.example",
            "sip:",
            "sip:user@gw.example",
            "sip:gw.example:0",
            "sip:gw.example:65536",
            "sip:gw.example:+5060",
            "sip:gw.example:",
            "sip:gw.example;transport=sctp",
            "sip:gw.example;lr",
            "sip:gw.example;transport=udp;transport=tcp",
            "sips:gw.example;transport=udp",
            "sip:[::1",
            "sip:[nothex]:5060",
            "sip:[::1]5060",
            "sip:gw example",
        ] {
            assert!(parse_trunk_uri(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn names_and_numbers() {
        assert!(trunk_name("carrier-1.main_b").is_ok());
        assert!(trunk_name("").is_err());
        assert!(trunk_name("a b").is_err());
        assert!(trunk_name(&"t".repeat(33)).is_err());
        for good in ["+4930123456", "911", "12345678901234567890"] {
            assert!(did_number(good).is_ok(), "{good:?}");
        }
        for bad in [
            "",
            "+",
            "12",
            "+12",
            "12a45",
            "++123",
            "123456789012345678901",
            "1 234",
        ] {
            assert!(did_number(bad).is_err(), "{bad:?}");
        }
    }

    async fn two_tenants() -> (Store, TenantId, TenantId) {
        let store = crate::testdb::store().await.expect("open");
        let a = store.add_tenant("a", "a.example").await.expect("a").id;
        let b = store.add_tenant("b", "b.example").await.expect("b").id;
        (store, a, b)
    }

    backend_test! {
        async fn trunk_password_round_trips_and_is_not_stored_in_clear() {
            let (store, a, b) = two_tenants().await;
            let t = store
                .add_trunk(
                    a,
                    "carrier",
                    "sip:gw.example:5080;transport=tcp",
                    Some("acct-1"),
                    Some("very-secret-pw"),
                )
                .await
                .expect("add");
            assert!(t.register);
            assert_eq!(t.uri(), "sip:gw.example:5080;transport=tcp");
            assert!(!format!("{t:?}").contains("very-secret-pw"));
            let plain = store
                .add_trunk(b, "carrier", "sips:[2001:db8::5]", None, None)
                .await
                .expect("same name in another tenant");
            assert!(!plain.register);
            assert_eq!(plain.uri(), "sip:[2001:db8::5]:5061;transport=tls");

            assert_eq!(store.list_trunks(a).await.expect("list"), vec![t.clone()]);
            assert_eq!(
                store.all_trunks().await.expect("all"),
                vec![t.clone(), plain.clone()]
            );

            let row = sqlx::query("SELECT password_enc FROM trunks WHERE tenant_id = $1")
                .bind(a.0)
                .fetch_one(&store.pool)
                .await
                .expect("row");
            let stored: String = row.try_get("password_enc").expect("column");
            assert!(!stored.contains("very-secret-pw"));
            assert!(stored.len() > "very-secret-pw".len());

            // Moved to another row, the ciphertext no longer decrypts.
            sqlx::query("UPDATE trunks SET password_enc = $1 WHERE tenant_id = $2")
                .bind(&stored)
                .bind(b.0)
                .execute(&store.pool)
                .await
                .expect("tamper");
            assert!(matches!(store.list_trunks(b).await, Err(Error::Invalid(_))));
            assert_eq!(store.list_trunks(a).await.expect("list"), vec![t]);
        }
    }

    backend_test! {
        async fn trunk_add_and_remove_rules() {
            let (store, a, b) = two_tenants().await;
            store
                .add_trunk(a, "gw", "sip:gw.example", Some("u"), None)
                .await
                .expect("add");
            assert!(matches!(
                store
                    .add_trunk(a, "gw", "sip:other.example", None, None)
                    .await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store
                    .add_trunk(a, "pw-only", "sip:gw.example", None, Some("x"))
                    .await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store
                    .add_trunk(a, "bad name", "sip:gw.example", None, None)
                    .await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store
                    .add_trunk(TenantId(99), "gw", "sip:gw.example", None, None)
                    .await,
                Err(Error::NotFound(_))
            ));
            // B cannot remove A's trunk.
            assert!(matches!(
                store.remove_trunk(b, "gw").await,
                Err(Error::NotFound(_))
            ));
            store.remove_trunk(a, "gw").await.expect("remove");
            assert!(store.list_trunks(a).await.expect("list").is_empty());
            assert!(matches!(
                store.remove_trunk(a, "gw").await,
                Err(Error::NotFound(_))
            ));
        }
    }

    backend_test! {
        async fn dids_are_unique_across_tenants() {
            let (store, a, b) = two_tenants().await;
            store.add_did(a, "+4930123456").await.expect("add");
            store.add_did(a, "911").await.expect("add");
            assert!(matches!(
                store.add_did(b, "+4930123456").await,
                Err(Error::Conflict(_))
            ));
            assert!(matches!(
                store.add_did(b, "not-a-number").await,
                Err(Error::Invalid(_))
            ));
            assert!(matches!(
                store.add_did(TenantId(99), "5551234").await,
                Err(Error::NotFound(_))
            ));
            store.add_did(b, "5551234").await.expect("add");
            assert_eq!(
                store.list_dids(a).await.expect("list"),
                vec!["+4930123456", "911"]
            );
            assert_eq!(store.list_dids(b).await.expect("list"), vec!["5551234"]);
            assert_eq!(
                store.all_dids().await.expect("all"),
                vec![
                    ("+4930123456".to_owned(), a),
                    ("5551234".to_owned(), b),
                    ("911".to_owned(), a)
                ]
            );
            store.remove_did("+4930123456").await.expect("remove");
            assert!(matches!(
                store.remove_did("+4930123456").await,
                Err(Error::NotFound(_))
            ));
            store.add_did(b, "+4930123456").await.expect("free again");
        }
    }

    backend_test! {
        async fn generation_moves_on_trunks_and_dids() {
            let (store, a, _) = two_tenants().await;
            let g0 = store.generation().await.expect("g");
            store
                .add_trunk(a, "gw", "sip:gw.example", None, None)
                .await
                .expect("add");
            let g1 = store.generation().await.expect("g");
            assert!(g1 > g0);
            store.remove_trunk(a, "gw").await.expect("remove");
            let g2 = store.generation().await.expect("g");
            assert!(g2 > g1);
            store.add_did(a, "5551234").await.expect("did");
            let g3 = store.generation().await.expect("g");
            assert!(g3 > g2);
            store.remove_did("5551234").await.expect("rm did");
            let g4 = store.generation().await.expect("g");
            assert!(g4 > g3);
            assert!(store.add_did(a, "bad").await.is_err());
            assert_eq!(store.generation().await.expect("g"), g4);
        }
    }
}
