//! `tutela-collector init`: the data directory, configuration, TLS
//! certificate and keys (existing ones are kept).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};

use super::config_path;
use crate::config::CollectorConfig;
use crate::{secrets, store};

pub fn run(dir: &Path, listen: Option<SocketAddr>, hostnames: &[String]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = config_path(dir);
    if !path.exists() {
        let mut config = CollectorConfig::default();
        if let Some(l) = listen {
            config.listen = l;
        }
        let text = format!(
            "# Tutela collector configuration. Every value shown is the default.\n{}",
            toml::to_string_pretty(&config)?
        );
        secrets::write_private(&path, text.as_bytes())?;
    }
    secrets::create_missing(dir, hostnames)?;
    store::open(dir)?;
    let tls = secrets::load_tls(dir)?;
    println!("collector initialised in {}", dir.display());
    println!("certificate fingerprint {}", tls.fingerprint);
    Ok(())
}
