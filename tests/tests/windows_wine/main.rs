//! The Windows agent, for real, under Wine: the MSI built from
//! `installer/windows/tutela-agent.wxs` with wixl (`installer/windows/build-msi.sh`) around
//! the cross-built `tutela-agent.exe` (`tests/run.sh` builds it), installed with `wine msiexec
//! /i ... ENROLTOKEN=... /qn` on a fresh Wine prefix against the real Linux collector on
//! loopback.
//!
//! One prefix and one desktop serve every step, in order, as one machine's life would: an
//! install with an expired token, a good install, the session agent's alerts, the collector
//! going away and coming back, uninstall, reinstall and a purge.
//!
//! Two test-only adjustments to the prefix stand in for a real Windows 10 (both described in
//! the README): a tiny `bcryptprimitives.dll` providing `ProcessPrng`, which Rust's standard
//! library imports and Wine 8 lacks, and `winecfg -v win10`, since a new prefix reports
//! Windows 7 (the test first uses that to see the keys sensor refuse an old build).

#[path = "../../windows/wine.rs"]
mod wine;

mod install;
mod lab;
mod session;

use tutela_tests::{require_programs, Collector, Desktop, Scratch};
use wine::{build_msi, Wine};

use install::{
    a_good_token_installs_enrols_and_starts_the_service,
    an_expired_token_leaves_the_agent_installed_not_enrolled_and_stopped,
    uninstall_keeps_the_identity_and_purgedata_removes_it,
};
use lab::{Lab, GROUP};
use session::{
    the_keys_sensor_refuses_an_old_windows_build, the_session_agent_alerts_on_each_sensor,
};

#[test]
fn the_msi_under_wine_installs_enrols_alerts_and_uninstalls() {
    require_programs(&[
        "wine",
        "wineboot",
        "wineserver",
        "wixl",
        "msiinfo",
        "x86_64-w64-mingw32-gcc",
    ]);
    let scratch = Scratch::new("windows-wine");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let msi = build_msi(&scratch).display().to_string();
    let desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let wine = Wine::new(scratch.path("prefix"), &desktop, &scratch);
    let mut lab = Lab {
        scratch,
        collector,
        desktop,
        wine,
        msi,
    };

    an_expired_token_leaves_the_agent_installed_not_enrolled_and_stopped(&mut lab);
    let token = lab.collector.token(&["--group", GROUP]).unwrap();
    let agent_id = a_good_token_installs_enrols_and_starts_the_service(&mut lab, &token);
    the_keys_sensor_refuses_an_old_windows_build(&mut lab);
    lab.wine.set_version("win10");
    the_session_agent_alerts_on_each_sensor(&mut lab);
    uninstall_keeps_the_identity_and_purgedata_removes_it(&mut lab, &agent_id);
}
