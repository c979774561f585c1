//! `tutela-collector migrate --to postgres://...`: copies this data
//! directory's SQLite store into an empty PostgreSQL database.

use std::path::Path;

use anyhow::Result;

#[cfg(feature = "postgres")]
pub fn run(dir: &Path, url: &str) -> Result<()> {
    use crate::store;
    use anyhow::Context;
    let runtime = super::runtime()?;
    let target = store::Location::redacted(url);
    let report = runtime
        .block_on(store::migrate::migrate(dir, url, &mut |line| {
            println!("{line}")
        }))
        .with_context(|| format!("migrating {} to {target}", dir.display()))?;
    for table in &report.left {
        println!("{table}: not copied (only one backend has it)");
    }
    println!(
        "checked: row counts of {} tables, {} agents' event chains ({} events), the audit log ({} entries)",
        report.copied.len(),
        report.agents_checked,
        report.events_checked,
        report.audit_entries
    );
    println!(
        "migrated to {target}; to serve from it, set [storage] url in collector.toml to this URL and start the collector"
    );
    Ok(())
}

#[cfg(not(feature = "postgres"))]
pub fn run(_dir: &Path, _url: &str) -> Result<()> {
    anyhow::bail!("this tutela-collector was built without PostgreSQL support: build it with `--features postgres` to migrate")
}
