//! The installer's last step on a workstation: enrol with the token the installer was given,
//! unless the device is already enrolled, and decide whether the agent's service may start.
//!
//! A device that is not enrolled must not run a service that can do nothing but fail: the
//! installer leaves the agent installed, its service stopped, and the log says why and what
//! to do. The token is never part of what is said.

use std::path::Path;

use crate::identity::Enrolment;

/// What the installer's step found or did.
#[derive(Debug)]
pub enum Outcome {
    /// Enrolled before (a reinstall, repair or upgrade): that identity is kept and the token,
    /// if any, is not used.
    AlreadyEnrolled(Enrolment),
    /// Enrolled now, with the installer's token.
    Enrolled(Enrolment),
    /// Not enrolled; the reason, in words for the technician reading the install log.
    NotEnrolled(String),
}

impl Outcome {
    /// Whether the agent's service may start.
    pub fn may_start(&self) -> bool {
        !matches!(self, Self::NotEnrolled(_))
    }
}

/// Enrols with `token` unless the device in `data_dir` is enrolled already.
pub async fn enrol_if_needed(
    data_dir: &Path,
    token: Option<&str>,
    station: &str,
    now_ms: i64,
) -> Outcome {
    if let Ok(enrolment) = Enrolment::load(data_dir) {
        return Outcome::AlreadyEnrolled(enrolment);
    }
    let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
        return Outcome::NotEnrolled(
            "this device is not enrolled and the installer was given no ENROLTOKEN".into(),
        );
    };
    match crate::enrol::enrol(data_dir, token, station, now_ms).await {
        Ok(enrolment) => Outcome::Enrolled(enrolment),
        Err(error) => Outcome::NotEnrolled(format!("enrolment with ENROLTOKEN failed: {error}")),
    }
}

/// What a technician does next when the device is not enrolled (the program's own path
/// and the service's name are filled in).
pub fn not_enrolled_advice(exe: &Path, service: &str) -> String {
    format!(
        "The agent is installed but NOT enrolled, and the {service} service is NOT started. \
         To finish: get a new token (`tutela-collector token create` on the collector), then \
         from an elevated prompt run `\"{}\" enrol <token>` followed by `sc start {service}`, \
         or install again with `msiexec /i tutela-agent.msi ENROLTOKEN=<token> /qn`.",
        exe.display()
    )
}

/// Files only an agent's data directory holds.
const AGENT_FILES: &[&str] = &["agent.key", "enrolment.toml", "spool.db", "agent.toml"];

#[derive(Debug, thiserror::Error)]
pub enum PurgeError {
    #[error("{0} holds no agent key, enrolment or spool: not deleting it; check the --data-dir")]
    NotAgentData(std::path::PathBuf),
    #[error("cannot delete {path}: {source}; stop the agent and its service, then try again")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// What a purge did.
#[derive(Debug, PartialEq, Eq)]
pub enum Purged {
    Deleted,
    AlreadyGone,
}

/// Deletes the agent's data directory (uninstall with PURGEDATA=1): only one that is empty
/// or holds an agent's files, so that a wrong `--data-dir` cannot delete anything else.
pub fn purge_data_dir(dir: &Path) -> Result<Purged, PurgeError> {
    let io = |source| PurgeError::Io {
        path: dir.to_owned(),
        source,
    };
    let mut entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Purged::AlreadyGone),
        Err(e) => return Err(io(e)),
    };
    let empty = entries.next().is_none();
    // Windows cannot delete a directory while a handle to it is open.
    drop(entries);
    if !empty && !AGENT_FILES.iter().any(|f| dir.join(f).exists()) {
        return Err(PurgeError::NotAgentData(dir.to_owned()));
    }
    std::fs::remove_dir_all(dir).map_err(io)?;
    Ok(Purged::Deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_deletes_an_agent_directory_and_nothing_else() {
        let root = tempfile::tempdir().unwrap();
        let agent = root.path().join("agent");
        std::fs::create_dir_all(agent.join("captures")).unwrap();
        std::fs::write(agent.join("agent.key"), b"key").unwrap();
        std::fs::write(agent.join("spool.db"), b"spool").unwrap();
        assert_eq!(purge_data_dir(&agent).unwrap(), Purged::Deleted);
        assert!(!agent.exists());
        assert_eq!(purge_data_dir(&agent).unwrap(), Purged::AlreadyGone);

        // A directory the agent did not make (a mistyped --data-dir) is left alone.
        let other = root.path().join("documents");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("essay.docx"), b"homework").unwrap();
        let refused = purge_data_dir(&other).unwrap_err();
        assert!(matches!(refused, PurgeError::NotAgentData(_)), "{refused}");
        assert!(other.join("essay.docx").exists());
    }

    #[tokio::test]
    async fn no_token_and_no_enrolment_is_not_enrolled() {
        let dir = tempfile::tempdir().unwrap();
        let outcome = enrol_if_needed(dir.path(), Some("  "), "station", 0).await;
        assert!(!outcome.may_start());
        assert!(matches!(&outcome, Outcome::NotEnrolled(why) if why.contains("no ENROLTOKEN")));
    }

    #[tokio::test]
    async fn a_malformed_token_says_why_without_repeating_it() {
        let dir = tempfile::tempdir().unwrap();
        let token = "tutela1.not-a-real-token-SECRETPART";
        let outcome = enrol_if_needed(dir.path(), Some(token), "station", 0).await;
        let Outcome::NotEnrolled(why) = outcome else {
            panic!("enrolled with a malformed token: {outcome:?}");
        };
        assert!(why.contains("malformed"), "{why}");
        assert!(
            !why.contains("SECRETPART"),
            "the token is in the message: {why}"
        );
    }

    #[test]
    fn the_advice_names_the_program_and_the_service() {
        let advice = not_enrolled_advice(Path::new(r"C:\Tutela\tutela-agent.exe"), "TutelaAgent");
        assert!(advice.contains(r#""C:\Tutela\tutela-agent.exe" enrol <token>"#));
        assert!(advice.contains("sc start TutelaAgent"));
    }
}
