//! Installing and removing the MSI: an expired token leaves the agent
//! installed but not enrolled, a good one enrols it and starts the service,
//! uninstall keeps the identity and PURGEDATA removes it.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use tutela_tests::{read, run_ok, wait_for};

use crate::lab::Lab;
use crate::wine::{read_or_note, token_leaks, windows_agent};

pub fn an_expired_token_leaves_the_agent_installed_not_enrolled_and_stopped(lab: &mut Lab) {
    let expired = lab.collector.token(&["--expires", "1s"]).unwrap();
    // Expiry is checked against the clock: let the second pass.
    std::thread::sleep(Duration::from_millis(1500));
    let msi = lab.msi.clone();
    let (_, log) = lab.msiexec(
        &["/i", &msi, &format!("ENROLTOKEN={expired}"), "/qn"],
        "install-expired.log",
    );
    assert!(lab.installed().is_file(), "the agent is not installed");
    assert!(
        !lab.data().join("enrolment.toml").exists(),
        "enrolled with an expired token"
    );
    let state = lab.wine.service_state();
    assert!(
        state.contains("STOPPED") && !state.contains("RUNNING"),
        "the service runs on a device that is not enrolled:\n{state}"
    );
    // Why, and what to do, in the MSI log.
    for said in [
        "QuietExec: enrolment with ENROLTOKEN failed: the enrolment token expired; ask a technician for a new one",
        "The agent is installed but NOT enrolled, and the TutelaAgent service is NOT started.",
        "enrol <token>` followed by `sc start TutelaAgent`",
    ] {
        assert!(log.contains(said), "the MSI log does not say {said:?}:\n{log}");
    }
    let leaks = token_leaks(&log, &expired);
    assert!(
        leaks.is_empty(),
        "the enrolment token is in the MSI log:\n{}",
        leaks.join("\n")
    );
    // Started anyway (as at the next boot, the service being automatic), it stops at once
    // with its own exit code for "not enrolled" (2) rather than run with nothing to do.
    let _ = lab
        .wine
        .cmd("wine")
        .args(["sc", "start", "TutelaAgent"])
        .status();
    wait_for(
        "the service to stop itself",
        Duration::from_secs(30),
        || lab.wine.service_state().contains("STOPPED"),
    )
    .unwrap_or_else(|e| panic!("{e}:\n{}", lab.wine.service_state()));
    let state = lab.wine.service_state();
    assert!(
        state.contains("SERVICE_EXIT_CODE  : 2 "),
        "the service did not stop for want of an enrolment:\n{state}"
    );
    lab.msiexec(&["/x", &msi, "/qn"], "uninstall-expired.log");
    assert!(!lab.installed().exists(), "uninstall left the agent");
}

/// Returns the agent id.
pub fn a_good_token_installs_enrols_and_starts_the_service(lab: &mut Lab, token: &str) -> String {
    let msi = lab.msi.clone();
    let (_, log) = lab.msiexec(
        &["/i", &msi, &format!("ENROLTOKEN={token}"), "/qn"],
        "install.log",
    );

    // Files in place: the agent as built, and the data directory.
    assert_eq!(
        std::fs::read(lab.installed()).unwrap_or_default(),
        std::fs::read(windows_agent()).unwrap(),
        "{} is not the built agent",
        lab.installed().display()
    );
    let data_key = lab
        .wine
        .reg_query(r"HKLM\SOFTWARE\Tutela\Agent")
        .expect("HKLM\\SOFTWARE\\Tutela\\Agent is written");
    assert!(
        data_key.contains(r"C:\ProgramData\Tutela\agent\"),
        "DataDir value: {data_key}"
    );

    // The service is registered to run the supervisor with the data directory.
    let service = lab
        .wine
        .reg_query(r"HKLM\System\CurrentControlSet\Services\TutelaAgent")
        .expect("the TutelaAgent service is registered");
    assert!(
        service.contains("tutela-agent.exe")
            && service.contains(r#"--data-dir "C:\ProgramData\Tutela\agent\\" service run"#),
        "service ImagePath: {service}"
    );

    // The device enrolled during the install, as the collector sees it.
    let enrolment = lab.data().join("enrolment.toml");
    assert!(enrolment.is_file(), "not enrolled; install log:\n{log}");
    let agent_id = read(&enrolment)
        .lines()
        .find_map(|l| l.strip_prefix("agent_id = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("agent_id in enrolment.toml");
    let agents = run_ok(lab.collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        agents.lines().any(|l| l.starts_with(&agent_id)),
        "{agent_id} not in the collector's agents:\n{agents}"
    );
    assert!(
        log.contains(&format!("QuietExec: enrolled as {agent_id}"))
            && log.contains("QuietExec: service TutelaAgent started"),
        "the setup step's report is not in the MSI log:\n{log}"
    );

    // The token is not in the install log: not in a command line, nor in the setup step's
    // output. Wine cannot do one step Windows does here: its end-of-install dump of every
    // property ignores MsiHiddenProperties, so the dump lines Windows would hide are allowed.
    assert!(
        log.contains("MsiHiddenProperties = ENROLTOKEN;AgentSetup"),
        "the MSI does not hide ENROLTOKEN:\n{log}"
    );
    let leaks = token_leaks(&log, token);
    assert!(
        leaks.is_empty(),
        "the enrolment token is in the MSI log:\n{}",
        leaks.join("\n")
    );

    // Wine's service manager started the service: `tutela-agent service run`, the supervisor.
    let state = lab.wine.service_state();
    assert!(state.contains("RUNNING"), "sc query TutelaAgent:\n{state}");

    // The data directory is SYSTEM's and the Administrators' only. Wine keeps an ACL as the
    // directory's Unix mode and reads it back from there: SYSTEM's entry and no entry for
    // Everyone or Users is what it can show (on Windows, `icacls` shows exactly `D:PAI(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)`).
    let show = run_ok(lab.wine.agent().args(["service", "show"])).unwrap();
    let acl = show
        .lines()
        .find_map(|l| l.strip_prefix("data directory permissions: "))
        .unwrap_or_else(|| panic!("no permissions in `service show`:\n{show}"));
    assert!(
        acl.contains("(A;OICI;FA;;;SY)"),
        "data directory ACL: {acl}"
    );
    for anyone in [";WD)", ";BU)", ";AU)"] {
        assert!(!acl.contains(anyone), "data directory ACL: {acl}");
    }
    let mode = std::fs::metadata(lab.data()).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o007,
        0,
        "the data directory is open to others: {mode:o}"
    );
    // The recovery settings are set (the setup step says so); Wine's service manager cannot
    // report failure actions back, so `service show` says it cannot read them here (on
    // Windows, `sc qfailure TutelaAgent`).
    assert!(
        log.contains(
            "QuietExec: recovery set: Windows restarts the TutelaAgent service 5 s after a failure"
        ),
        "the setup step did not set the service's recovery:\n{log}"
    );
    agent_id
}

pub fn uninstall_keeps_the_identity_and_purgedata_removes_it(lab: &mut Lab, agent_id: &str) {
    let msi = lab.msi.clone();
    let data = lab.data();
    let enrolment = data.join("enrolment.toml");

    // Uninstall removes the program and keeps the identity.
    lab.msiexec(&["/x", &msi, "/qn"], "uninstall.log");
    assert!(
        !lab.installed().exists(),
        "{} left after uninstall",
        lab.installed().display()
    );
    let kept_enrolment = std::fs::read(&enrolment).expect("uninstall kept the enrolment");
    let kept_key = std::fs::read(data.join("agent.key")).expect("uninstall kept the agent key");

    // A reinstall without a token brings the program back with the same identity, and the
    // service starts again.
    let (_, log) = lab.msiexec(&["/i", &msi, "/qn"], "reinstall.log");
    assert!(
        lab.installed().is_file(),
        "the reinstall put no agent in place"
    );
    assert_eq!(
        read(&enrolment).as_bytes(),
        kept_enrolment.as_slice(),
        "the reinstall changed the enrolment"
    );
    assert_eq!(
        std::fs::read(data.join("agent.key")).unwrap(),
        kept_key,
        "the reinstall changed the agent key"
    );
    assert!(
        log.contains(&format!("QuietExec: already enrolled as {agent_id}")),
        "reinstall log:\n{log}"
    );
    let state = lab.wine.service_state();
    assert!(state.contains("RUNNING"), "after the reinstall:\n{state}");

    // PURGEDATA=1: the key, enrolment and spool go with the program.
    let (_, log) = lab.msiexec(&["/x", &msi, "PURGEDATA=1", "/qn"], "purge.log");
    assert!(!lab.installed().exists(), "the purge left the agent");
    assert!(
        !data.exists(),
        "PURGEDATA=1 left {}: {}\nlog:\n{log}",
        data.display(),
        read_or_note(&enrolment)
    );
    assert!(
        log.contains("QuietExec: deleted C:\\ProgramData\\Tutela\\agent"),
        "purge log:\n{log}"
    );
}
