//! Provisions a data directory for the scaling benchmarks (`bench/scaling.sh`):
//! TENANTS tenants `s0`…, domain `sK.example`, sharing EXTENSIONS extensions
//! evenly, numbered from 1000 in each tenant, password `pw<number>`. It goes
//! through the store as the CLI does, in one process (10,000 `pbx tenant add`
//! runs would time process start-up, not the PBX).
//!
//! ```sh
//! cargo run --release -p pbx --example bulk_provision -- DATA_DIR TENANTS EXTENSIONS
//! ```

use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [dir, tenants, extensions] = args.as_slice() else {
        anyhow::bail!("usage: bulk_provision DATA_DIR TENANTS EXTENSIONS");
    };
    let tenants: usize = tenants.parse()?;
    let extensions: usize = extensions.parse()?;
    anyhow::ensure!(
        tenants >= 1 && extensions >= tenants,
        "at least one tenant, and an extension per tenant"
    );
    let started = Instant::now();
    let store = store::Store::open(std::path::Path::new(dir)).await?;
    let per_tenant = extensions / tenants;
    for k in 0..tenants {
        let tenant = store
            .add_tenant(&format!("s{k}"), &format!("s{k}.example"))
            .await?;
        let rows: Vec<(String, String)> = (1000..1000 + per_tenant)
            .map(|n| (n.to_string(), format!("pw{n}")))
            .collect();
        store.import_extensions(tenant.id, &rows).await?;
    }
    println!(
        "{tenants} tenants, {} extensions in {:.1} s",
        per_tenant * tenants,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
