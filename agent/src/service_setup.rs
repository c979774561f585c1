//! The installer's steps on Windows, run as SYSTEM by the MSI's QuietExec custom action:
//! everything printed here goes to the MSI log, so nothing printed carries the token.

use std::path::Path;

use crate::install::{self, Outcome, Purged};
use crate::{data_dir_acl, service, session};

/// The exit code when the device is left not enrolled.
pub const NOT_ENROLLED: i32 = 2;
/// The exit code when the data directory could not be made private.
pub const NOT_PRIVATE: i32 = 3;

/// `service setup`: makes the data directory private, enrols unless enrolled, sets the
/// service's recovery and starts it. Returns the process's exit code.
pub fn setup(data_dir: &Path, token: Option<&str>) -> i32 {
    // Before any key is made: fail closed rather than write one a pupil could read.
    if let Err(error) = data_dir_acl::lock(data_dir) {
        println!(
            "cannot restrict {} to SYSTEM and Administrators ({error}): not enrolling and not starting the service; check that the installer runs elevated and install again",
            data_dir.display()
        );
        return NOT_PRIVATE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            println!("cannot start the enrolment ({error}); install again");
            return NOT_ENROLLED;
        }
    };
    let station = session::station_name();
    let outcome = runtime.block_on(install::enrol_if_needed(
        data_dir,
        token,
        &station,
        session::now_ms(),
    ));
    match &outcome {
        Outcome::AlreadyEnrolled(e) => println!(
            "already enrolled as {} with collector {}: keeping this identity",
            e.agent_id, e.collector
        ),
        Outcome::Enrolled(e) => println!(
            "enrolled as {} with collector {} (station {station})",
            e.agent_id, e.collector
        ),
        Outcome::NotEnrolled(why) => {
            let exe = std::env::current_exe().unwrap_or_else(|_| "tutela-agent.exe".into());
            println!("{why}.");
            println!(
                "{}",
                install::not_enrolled_advice(&exe, service::SERVICE_NAME)
            );
            return NOT_ENROLLED;
        }
    }
    match service::set_recovery_of_installed() {
        Ok(()) => println!(
            "recovery set: Windows restarts the {} service 5 s after a failure",
            service::SERVICE_NAME
        ),
        // The service still runs; without recovery it stays down after a crash.
        Err(error) => println!(
            "cannot set the service's recovery ({error}); set it with `sc failure {} reset= 86400 actions= restart/5000/restart/5000/restart/5000`",
            service::SERVICE_NAME
        ),
    }
    match service::start() {
        Ok(()) => {
            println!("service {} started", service::SERVICE_NAME);
            0
        }
        Err(error) => {
            println!(
                "the device is enrolled but the {} service did not start ({error}); start it with `sc start {}` and see the Application event log",
                service::SERVICE_NAME,
                service::SERVICE_NAME
            );
            1
        }
    }
}

/// `service show`: the service's recovery settings and the data directory's permissions.
pub fn show(data_dir: &Path) -> std::io::Result<()> {
    match service::recovery() {
        Ok(text) => print!("{text}"),
        // Wine's service manager, for one, cannot report failure actions.
        Err(error) => println!("recovery: cannot be read here ({error})"),
    }
    println!(
        "data directory permissions: {}",
        data_dir_acl::describe(data_dir)?
    );
    Ok(())
}

/// `service purge`: deletes the data directory (uninstall with PURGEDATA=1).
pub fn purge(data_dir: &Path) -> Result<(), install::PurgeError> {
    match install::purge_data_dir(data_dir)? {
        Purged::Deleted => println!(
            "deleted {}: this device must be enrolled again",
            data_dir.display()
        ),
        Purged::AlreadyGone => println!("{} is already gone", data_dir.display()),
    }
    Ok(())
}
