//! Banned source addresses (provider-wide), written by the abuse defenses so
//! bans survive a restart.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::{Error, Result, Store};

/// Most "what was tried" items kept per ban.
const MAX_TRIED: usize = 16;

/// A ban as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BanRecord {
    pub ip: IpAddr,
    pub reason: String,
    /// Failures (or offences) that led to the ban.
    pub count: u32,
    /// How many times the source has been banned, this ban included.
    pub strikes: u32,
    pub first_ms: i64,
    pub last_ms: i64,
    /// What was tried (users, domains), at most 16 items.
    pub tried: Vec<String>,
    /// When the ban ends, Unix milliseconds.
    pub until_ms: i64,
}

/// The columns every query reads, as a literal for `concat!`.
macro_rules! ban_columns {
    () => {
        "ip, reason, count, strikes, first_ms, last_ms, tried, until_ms"
    };
}

impl Store {
    /// Writes a ban, replacing an earlier one of the same address.
    pub async fn upsert_ban(&self, ban: &BanRecord) -> Result<()> {
        let tried = ban
            .tried
            .iter()
            .take(MAX_TRIED)
            .map(|t| t.replace(['\n', '\r'], " "))
            .collect::<Vec<_>>()
            .join("\n");
        sqlx::query(
            "INSERT INTO bans (ip, reason, count, strikes, first_ms, last_ms, tried, until_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (ip) DO UPDATE SET reason = excluded.reason, count = excluded.count, \
             strikes = excluded.strikes, first_ms = excluded.first_ms, \
             last_ms = excluded.last_ms, tried = excluded.tried, until_ms = excluded.until_ms",
        )
        .bind(ban.ip.to_canonical().to_string())
        .bind(&ban.reason)
        .bind(i64::from(ban.count))
        .bind(i64::from(ban.strikes))
        .bind(ban.first_ms)
        .bind(ban.last_ms)
        .bind(tried)
        .bind(ban.until_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Bans still in force at `now_ms`, the soonest to end first.
    pub async fn list_bans(&self, now_ms: i64) -> Result<Vec<BanRecord>> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            ban_columns!(),
            " FROM bans WHERE until_ms > $1 ORDER BY until_ms, ip"
        ))
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Removes the ban of `ip` (lifting it); `false` if there was none.
    pub async fn remove_ban(&self, ip: IpAddr) -> Result<bool> {
        let done = sqlx::query("DELETE FROM bans WHERE ip = $1")
            .bind(ip.to_canonical().to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Deletes bans that ended before `before_ms`; returns how many.
    pub async fn purge_bans(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM bans WHERE until_ms < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn from_row(row: &AnyRow) -> Result<BanRecord> {
    let ip: String = row.try_get("ip")?;
    let bad = |what: &str| Error::Invalid(format!("stored ban of {ip}: {what}"));
    let count: i64 = row.try_get("count")?;
    let strikes: i64 = row.try_get("strikes")?;
    let tried: String = row.try_get("tried")?;
    Ok(BanRecord {
        ip: ip.parse().map_err(|_| bad("ip"))?,
        reason: row.try_get("reason")?,
        count: u32::try_from(count).map_err(|_| bad("count"))?,
        strikes: u32::try_from(strikes).map_err(|_| bad("strikes"))?,
        first_ms: row.try_get("first_ms")?,
        last_ms: row.try_get("last_ms")?,
        tried: tried
            .split('\n')
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
            .collect(),
        until_ms: row.try_get("until_ms")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(ip: &str, until_ms: i64) -> BanRecord {
        BanRecord {
            ip: ip.parse().expect("ip"),
            reason: "10 authentication failures".into(),
            count: 10,
            strikes: 1,
            first_ms: 1_000,
            last_ms: 2_000,
            tried: vec!["1000@acme".into(), "line\nbreak".into()],
            until_ms,
        }
    }

    backend_test! {
        async fn upsert_list_remove_and_purge() {
            let store = crate::testdb::store().await.expect("open");
            store
                .upsert_ban(&ban("203.0.113.5", 10_000))
                .await
                .expect("a");
            store
                .upsert_ban(&ban("2001:db8::1", 5_000))
                .await
                .expect("b");
            store
                .upsert_ban(&ban("198.51.100.1", 1_000))
                .await
                .expect("c");

            let active = store.list_bans(2_000).await.expect("list");
            let ips: Vec<String> = active.iter().map(|b| b.ip.to_string()).collect();
            assert_eq!(ips, ["2001:db8::1", "203.0.113.5"]);
            assert_eq!(active[1].tried, vec!["1000@acme", "line break"]);
            assert_eq!(active[1].count, 10);

            // a repeat ban replaces the row
            let mut again = ban("203.0.113.5", 50_000);
            again.strikes = 2;
            again.tried.clear();
            store.upsert_ban(&again).await.expect("again");
            let active = store.list_bans(20_000).await.expect("list");
            assert_eq!(active, vec![again]);

            // mapped IPv6 addresses are the IPv4 row
            assert!(
                store
                    .remove_ban("::ffff:203.0.113.5".parse().expect("ip"))
                    .await
                    .expect("rm")
            );
            assert!(
                !store
                    .remove_ban("203.0.113.5".parse().expect("ip"))
                    .await
                    .expect("rm")
            );
            assert_eq!(store.purge_bans(6_000).await.expect("purge"), 2);
            assert!(store.list_bans(0).await.expect("list").is_empty());
        }
    }
}
