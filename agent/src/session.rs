//! Facts about the session every event carries: who is logged in, where.

/// Login name of the user at the desktop (falls back to the agent's user).
pub fn login_name() -> String {
    for var in ["TUTELA_USER", "USER", "USERNAME", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.trim().is_empty() {
                return v.trim().to_owned();
            }
        }
    }
    "unknown".to_owned()
}

/// Station (host) name.
pub fn station_name() -> String {
    if let Ok(v) = std::env::var("TUTELA_STATION") {
        if !v.trim().is_empty() {
            return v.trim().to_owned();
        }
    }
    if let Ok(v) = std::env::var("COMPUTERNAME") {
        return v;
    }
    std::fs::read_to_string("/etc/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown-station".to_owned())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
