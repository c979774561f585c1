//! The agent as a Windows service.
//!
//! A service runs in session 0, which has no desktop: it cannot see windows,
//! keystrokes or the screen of the pupil who is signed in. So the service is
//! a supervisor. It runs as LocalSystem and starts the session component,
//! `tutela-agent run`, inside the active console session: with a copy of its
//! own SYSTEM token whose session id is set to that session, on the
//! `winsta0\default` desktop. That process watches the pupil's desktop, and
//! because it runs as SYSTEM the pupil can neither end it nor read its key
//! and spool (`C:\ProgramData\Tutela\agent`, which the installer restricts
//! to SYSTEM and Administrators). The service passes the signed-in user's
//! name in `TUTELA_USER`. When the pupil signs out, another one signs in or
//! the console session changes (fast user switching, remote desktop), the
//! service ends the session process and starts a new one for the new session;
//! events are spooled durably before they are sent, so ending the process
//! loses nothing. The two do not talk otherwise: the session process owns the
//! data directory and the uplink, the service only keeps one running.

#![allow(unsafe_code)] // Win32 calls; each block states why it is sound.

use std::ffi::{OsStr, OsString};
use std::os::windows::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
use windows_service::service_dispatcher;
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_sys::Win32::Foundation::{CloseHandle, HANDLE, STILL_ACTIVE};
use windows_sys::Win32::Security::{
    DuplicateTokenEx, SecurityImpersonation, SetTokenInformation, TokenPrimary, TokenSessionId,
    TOKEN_ALL_ACCESS,
};
use windows_sys::Win32::System::RemoteDesktop::{
    WTSFreeMemory, WTSGetActiveConsoleSessionId, WTSQuerySessionInformationW, WTSUserName,
    WTS_CURRENT_SERVER_HANDLE,
};
use windows_sys::Win32::System::Threading::{
    CreateProcessAsUserW, GetCurrentProcess, GetExitCodeProcess, OpenProcessToken,
    TerminateProcess, CREATE_NO_WINDOW, CREATE_UNICODE_ENVIRONMENT, PROCESS_INFORMATION,
    STARTUPINFOW,
};

/// The service's name (as `sc.exe` and Group Policy see it).
pub const SERVICE_NAME: &str = "TutelaAgent";
const DISPLAY_NAME: &str = "Tutela safeguarding agent";
/// How often the supervisor looks at the console session.
const TICK: Duration = Duration::from_secs(3);
/// The service's own exit code when it stops because the device is not enrolled.
const NOT_ENROLLED_EXIT: u32 = 2;
/// No session is attached to the physical console.
const NO_SESSION: u32 = 0xFFFF_FFFF;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("Windows service call failed: {0}; run from an elevated prompt (Administrator)")]
    Windows(#[from] windows_service::Error),
    #[error("{what} failed: {source}")]
    Win32 {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("cannot find this executable: {0}")]
    Exe(std::io::Error),
}

fn last_error(what: &'static str) -> ServiceError {
    ServiceError::Win32 {
        what,
        source: std::io::Error::last_os_error(),
    }
}

/// Registers the service (automatic start, restarted on failure) to run
/// `tutela-agent --data-dir DIR service run`. The MSI does the same itself.
pub fn install(data_dir: &Path) -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(
        None::<&str>,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )?;
    let exe = std::env::current_exe().map_err(ServiceError::Exe)?;
    let info = ServiceInfo {
        name: OsString::from(SERVICE_NAME),
        display_name: OsString::from(DISPLAY_NAME),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: exe,
        launch_arguments: vec![
            OsString::from("--data-dir"),
            data_dir.as_os_str().to_owned(),
            OsString::from("service"),
            OsString::from("run"),
        ],
        dependencies: vec![],
        account_name: None, // LocalSystem
        account_password: None,
    };
    let service = manager.create_service(
        &info,
        ServiceAccess::CHANGE_CONFIG | ServiceAccess::START | ServiceAccess::QUERY_STATUS,
    )?;
    service.set_description("Watches the signed-in pupil's desktop against the school's safeguarding rules and sends signed evidence to the school's Tutela collector.")?;
    set_recovery(&service)?;
    service.start::<&OsStr>(&[])?;
    Ok(())
}

/// Restart after a failure, 5 s later, three times; the count of failures resets after a day.
fn set_recovery(service: &windows_service::service::Service) -> Result<(), ServiceError> {
    let restart = ServiceAction {
        action_type: ServiceActionType::Restart,
        delay: Duration::from_secs(5),
    };
    service.update_failure_actions(ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(Duration::from_secs(86_400)),
        reboot_msg: None,
        command: None,
        actions: Some(vec![restart.clone(), restart.clone(), restart]),
    })?;
    Ok(())
}

/// The installer's last step once the device is enrolled: the service's recovery settings
/// (no MSI table holds them without WiX's extensions).
pub fn set_recovery_of_installed() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(SERVICE_NAME, ServiceAccess::CHANGE_CONFIG)?;
    set_recovery(&service)
}

/// Starts the installed service, unless it runs already.
pub fn start() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        SERVICE_NAME,
        ServiceAccess::START | ServiceAccess::QUERY_STATUS,
    )?;
    if service.query_status()?.current_state == ServiceState::Running {
        return Ok(());
    }
    service.start::<&OsStr>(&[])?;
    Ok(())
}

/// The recovery settings the service manager holds for the service, one line per action
/// (what `sc qfailure` shows on Windows).
pub fn recovery() -> Result<String, ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(SERVICE_NAME, ServiceAccess::QUERY_CONFIG)?;
    let actions = service.get_failure_actions()?;
    let mut text = format!("reset period: {:?}\n", actions.reset_period);
    for action in actions.actions.unwrap_or_default() {
        text.push_str(&format!(
            "action: {:?} after {} s\n",
            action.action_type,
            action.delay.as_secs()
        ));
    }
    Ok(text)
}

/// Stops and removes the service.
pub fn uninstall() -> Result<(), ServiceError> {
    let manager = ServiceManager::local_computer(None::<&str>, ServiceManagerAccess::CONNECT)?;
    let service = manager.open_service(
        SERVICE_NAME,
        ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
    )?;
    if service.query_status()?.current_state != ServiceState::Stopped {
        let _ = service.stop();
    }
    service.delete()?;
    Ok(())
}

static DATA_DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

windows_service::define_windows_service!(ffi_service_main, service_main);

/// Hands this process to the service control manager; returns when the
/// service stops. Only the service manager should start this.
pub fn run(data_dir: PathBuf) -> Result<(), ServiceError> {
    let _ = DATA_DIR.set(data_dir);
    service_dispatcher::start(SERVICE_NAME, ffi_service_main)?;
    Ok(())
}

fn service_main(_arguments: Vec<OsString>) {
    if let Err(e) = supervise() {
        tracing::error!(error = %e, "the Tutela agent service stopped with an error");
    }
}

enum Signal {
    Stop,
    SessionChanged,
}

fn supervise() -> Result<(), ServiceError> {
    let data_dir = DATA_DIR
        .get()
        .cloned()
        .unwrap_or_else(|| PathBuf::from(r"C:\ProgramData\Tutela\agent"));
    // Not enrolled (an install whose enrolment failed, started at boot): nothing to run.
    let enrolled = crate::identity::Enrolment::load(&data_dir).is_ok();
    let (tx, rx) = mpsc::channel();
    let handler = move |control| match control {
        ServiceControl::Stop | ServiceControl::Shutdown => {
            let _ = tx.send(Signal::Stop);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::SessionChange(_) => {
            let _ = tx.send(Signal::SessionChanged);
            ServiceControlHandlerResult::NoError
        }
        ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
        _ => ServiceControlHandlerResult::NotImplemented,
    };
    let status = service_control_handler::register(SERVICE_NAME, handler)?;
    let report = |state, accept| {
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: state,
            controls_accepted: accept,
            exit_code: ServiceExitCode::Win32(0),
            checkpoint: 0,
            wait_hint: Duration::from_secs(10),
            process_id: None,
        })
    };
    if !enrolled {
        tracing::error!(data_dir = %data_dir.display(), "this device is not enrolled: the service stops; enrol it with `tutela-agent enrol <token>`, then start the service");
        status.set_service_status(ServiceStatus {
            service_type: ServiceType::OWN_PROCESS,
            current_state: ServiceState::Stopped,
            controls_accepted: ServiceControlAccept::empty(),
            exit_code: ServiceExitCode::ServiceSpecific(NOT_ENROLLED_EXIT),
            checkpoint: 0,
            wait_hint: Duration::ZERO,
            process_id: None,
        })?;
        return Ok(());
    }
    report(
        ServiceState::Running,
        ServiceControlAccept::STOP
            | ServiceControlAccept::SHUTDOWN
            | ServiceControlAccept::SESSION_CHANGE,
    )?;
    let exe = std::env::current_exe().map_err(ServiceError::Exe)?;
    let mut child: Option<SessionProcess> = None;
    loop {
        let session = active_console_session();
        let user = session.and_then(session_user);
        let keep = match (&child, session, &user) {
            (Some(c), Some(s), Some(u)) => c.session == s && &c.user == u && c.running(),
            _ => false,
        };
        if !keep {
            if let Some(old) = child.take() {
                tracing::info!(session = old.session, "ending the session process");
                old.end();
            }
            if let (Some(s), Some(u)) = (session, user) {
                match SessionProcess::start(&exe, &data_dir, s, &u) {
                    Ok(p) => {
                        tracing::info!(session = s, "session process started");
                        child = Some(p);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, session = s, "cannot start the session process; retrying")
                    }
                }
            }
        }
        match rx.recv_timeout(TICK) {
            Ok(Signal::Stop) | Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Ok(Signal::SessionChanged) | Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
    if let Some(c) = child.take() {
        c.end();
    }
    report(ServiceState::Stopped, ServiceControlAccept::empty())?;
    Ok(())
}

fn active_console_session() -> Option<u32> {
    // SAFETY: no arguments; returns a session id or 0xFFFFFFFF.
    let id = unsafe { WTSGetActiveConsoleSessionId() };
    (id != NO_SESSION && id != 0).then_some(id)
}

/// The user signed in to `session`, if any.
fn session_user(session: u32) -> Option<String> {
    let mut buffer: *mut u16 = std::ptr::null_mut();
    let mut bytes = 0u32;
    // SAFETY: the out-pointers are valid locals; on success the buffer is a
    // NUL-terminated UTF-16 string owned by WTS, freed below.
    let ok = unsafe {
        WTSQuerySessionInformationW(
            WTS_CURRENT_SERVER_HANDLE,
            session,
            WTSUserName,
            &mut buffer,
            &mut bytes,
        )
    };
    if ok == 0 || buffer.is_null() {
        return None;
    }
    let len = (bytes as usize / 2).saturating_sub(1);
    // SAFETY: WTS returned `bytes` bytes at `buffer`, including the NUL.
    let name = String::from_utf16_lossy(unsafe { std::slice::from_raw_parts(buffer, len) });
    // SAFETY: the buffer came from WTSQuerySessionInformationW.
    unsafe { WTSFreeMemory(buffer.cast()) };
    let name = name.trim_end_matches('\0').trim().to_owned();
    (!name.is_empty()).then_some(name)
}

fn wide(s: &OsStr) -> Vec<u16> {
    s.encode_wide().chain(std::iter::once(0)).collect()
}

/// `tutela-agent run` inside one interactive session.
struct SessionProcess {
    session: u32,
    user: String,
    process: HANDLE,
}

impl SessionProcess {
    fn start(exe: &Path, data_dir: &Path, session: u32, user: &str) -> Result<Self, ServiceError> {
        let mut own: HANDLE = std::ptr::null_mut();
        // SAFETY: the pseudo-handle of this process and a valid out-pointer.
        if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_ALL_ACCESS, &mut own) } == 0 {
            return Err(last_error("OpenProcessToken"));
        }
        let mut token: HANDLE = std::ptr::null_mut();
        // SAFETY: `own` is a token handle we hold; `token` is a valid out-pointer.
        let dup = unsafe {
            DuplicateTokenEx(
                own,
                TOKEN_ALL_ACCESS,
                std::ptr::null(),
                SecurityImpersonation,
                TokenPrimary,
                &mut token,
            )
        };
        // SAFETY: closing the handle opened above, once.
        unsafe { CloseHandle(own) };
        if dup == 0 {
            return Err(last_error("DuplicateTokenEx"));
        }
        let result = Self::start_with(token, exe, data_dir, session, user);
        // SAFETY: closing the duplicated token, once; the process keeps its own reference.
        unsafe { CloseHandle(token) };
        result
    }

    fn start_with(
        token: HANDLE,
        exe: &Path,
        data_dir: &Path,
        session: u32,
        user: &str,
    ) -> Result<Self, ServiceError> {
        // SAFETY: `token` is a primary token we own; the value is a u32 of the
        // stated size. LocalSystem holds SeTcbPrivilege, which this needs.
        let set = unsafe {
            SetTokenInformation(
                token,
                TokenSessionId,
                (&session as *const u32).cast(),
                std::mem::size_of::<u32>() as u32,
            )
        };
        if set == 0 {
            return Err(last_error("SetTokenInformation(TokenSessionId)"));
        }
        let mut command = OsString::from("\"");
        command.push(exe.as_os_str());
        command.push("\" --data-dir \"");
        command.push(data_dir.as_os_str());
        command.push("\" run");
        let mut command = wide(&command);
        let mut environment: Vec<u16> = Vec::new();
        for (key, value) in std::env::vars_os() {
            if key.eq_ignore_ascii_case("TUTELA_USER") {
                continue;
            }
            let mut pair = key;
            pair.push("=");
            pair.push(value);
            environment.extend(wide(&pair));
        }
        environment.extend(wide(OsStr::new(&format!("TUTELA_USER={user}"))));
        environment.push(0);
        let mut desktop = wide(OsStr::new(r"winsta0\default"));
        // SAFETY: STARTUPINFOW and PROCESS_INFORMATION are plain C structs for
        // which all-zero is a valid value.
        let mut startup: STARTUPINFOW = unsafe { std::mem::zeroed() };
        startup.cb = std::mem::size_of::<STARTUPINFOW>() as u32;
        startup.lpDesktop = desktop.as_mut_ptr();
        // SAFETY: as above.
        let mut info: PROCESS_INFORMATION = unsafe { std::mem::zeroed() };
        // SAFETY: every pointer refers to a live, NUL-terminated buffer owned
        // by this function for the duration of the call; the environment
        // block is UTF-16 and double-NUL-terminated as the flag says.
        let created = unsafe {
            CreateProcessAsUserW(
                token,
                std::ptr::null(),
                command.as_mut_ptr(),
                std::ptr::null(),
                std::ptr::null(),
                0,
                CREATE_UNICODE_ENVIRONMENT | CREATE_NO_WINDOW,
                environment.as_ptr().cast(),
                std::ptr::null(),
                &startup,
                &mut info,
            )
        };
        if created == 0 {
            return Err(last_error("CreateProcessAsUserW"));
        }
        // SAFETY: the thread handle is ours and not used again.
        unsafe { CloseHandle(info.hThread) };
        Ok(Self {
            session,
            user: user.to_owned(),
            process: info.hProcess,
        })
    }

    fn running(&self) -> bool {
        let mut code = 0u32;
        // SAFETY: `process` is a live process handle we own.
        let ok = unsafe { GetExitCodeProcess(self.process, &mut code) };
        ok != 0 && code == STILL_ACTIVE as u32
    }

    /// Ends the process. The agent commits every event to its spool before
    /// sending it, so nothing is lost.
    fn end(self) {
        if self.running() {
            // SAFETY: `process` is a live process handle we own.
            unsafe { TerminateProcess(self.process, 0) };
        }
        // Drop closes the handle.
    }
}

impl Drop for SessionProcess {
    fn drop(&mut self) {
        // SAFETY: closing the process handle we own, once.
        unsafe { CloseHandle(self.process) };
    }
}
