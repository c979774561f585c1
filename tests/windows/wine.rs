//! A Wine prefix for the Windows agent's tests, and what they build for it: the MSI, the
//! `ProcessPrng` shim and small Win32 helper programs.

use std::path::{Path, PathBuf};
use std::process::Command;

use tutela_tests::{read, run_ok, Desktop, Scratch};

/// The cross-built agent, beside the native binaries' target directory (debug first).
pub fn windows_agent() -> PathBuf {
    windows_agent_from(&["debug", "release"])
}

/// The cross-built agent of the first of `profiles` that has one.
pub fn windows_agent_from(profiles: &[&str]) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .expect("target directory");
    let dir = target.join("x86_64-pc-windows-gnu");
    profiles
        .iter()
        .map(|profile| dir.join(profile).join("tutela-agent.exe"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "the Windows agent is not built (no tutela-agent.exe under {}): run \
                 `cargo build --target x86_64-pc-windows-gnu -p tutela-agent` first \
                 (tests/run.sh does)",
                dir.display()
            )
        })
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// Builds the MSI with `installer/windows/build-msi.sh` (wixl) around the cross-built agent.
pub fn build_msi(scratch: &Scratch) -> PathBuf {
    let msi = scratch.path("tutela-agent.msi");
    run_ok(
        Command::new("sh")
            .arg(workspace().join("installer/windows/build-msi.sh"))
            .arg(windows_agent())
            .arg(&msi),
    )
    .expect("build-msi.sh builds the MSI");
    msi
}

/// `ProcessPrng` for Wine 8, which Rust's std (1.78 and later) imports from
/// `bcryptprimitives.dll`; Windows 10 and later have it.
const PRNG_SHIM: &str = r#"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return SystemFunction036(data, (ULONG)len); }
"#;

/// Compiles a Win32 GUI program from `tests/windows/NAME.c` to `out`.
pub fn build_program(name: &str, out: &Path) {
    let source = workspace().join("tests/windows").join(format!("{name}.c"));
    run_ok(
        Command::new("x86_64-w64-mingw32-gcc")
            .args(["-O2", "-s", "-mwindows", "-municode", "-o"])
            .arg(out)
            .arg(&source),
    )
    .unwrap_or_else(|e| panic!("{} builds: {e}", source.display()));
}

/// A fresh Wine prefix on a virtual desktop; its Wine processes are ended on drop.
pub struct Wine {
    pub prefix: PathBuf,
    display: String,
}

impl Wine {
    /// A new prefix reporting `windows` (e.g. "win10"), with the `ProcessPrng` shim.
    pub fn new(prefix: PathBuf, desktop: &Desktop, scratch: &Scratch) -> Self {
        let wine = Self {
            prefix,
            display: desktop.display.clone(),
        };
        run_ok(wine.cmd("wineboot").arg("-i")).expect("wineboot creates the prefix");
        wine.wait();
        let source = scratch.path("prng-shim.c");
        std::fs::write(&source, PRNG_SHIM).unwrap();
        let dll = wine.drive_c("windows/system32/bcryptprimitives.dll");
        run_ok(
            Command::new("x86_64-w64-mingw32-gcc")
                .args(["-shared", "-O2", "-o"])
                .arg(&dll)
                .arg(&source)
                .arg("-ladvapi32"),
        )
        .expect("the ProcessPrng shim builds");
        wine
    }

    /// Makes the prefix report another Windows version ("win7", "win10").
    pub fn set_version(&self, version: &str) {
        run_ok(self.cmd("wine").args(["winecfg", "-v", version]))
            .unwrap_or_else(|e| panic!("winecfg -v {version}: {e}"));
    }

    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("WINEPREFIX", &self.prefix)
            .env("DISPLAY", &self.display)
            .env("WINEDEBUG", "-all")
            // No Mono or Gecko download prompts on a fresh prefix.
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("TUTELA_LOG", "info")
            .env("NO_COLOR", "1");
        c
    }

    /// `wine PROGRAM ARGS...`.
    pub fn wine(&self, program: &str) -> Command {
        let mut c = self.cmd("wine");
        c.arg(program);
        c
    }

    /// The installed agent with the installed data directory.
    pub fn agent(&self) -> Command {
        let mut c = self.wine(r"C:\Program Files\Tutela\Agent\tutela-agent.exe");
        c.args(["--data-dir", r"C:\ProgramData\Tutela\agent"]);
        c
    }

    /// Waits until every process of this prefix has ended (only while nothing long-lived,
    /// such as the service or notepad, runs in it).
    pub fn wait(&self) {
        let _ = self.cmd("wineserver").arg("-w").status();
    }

    pub fn drive_c(&self, rel: &str) -> PathBuf {
        self.prefix.join("drive_c").join(rel)
    }

    /// The Wine user's profile directory (C:\users\NAME).
    pub fn user_home(&self) -> PathBuf {
        let users = self.drive_c("users");
        std::fs::read_dir(&users)
            .expect("C:\\users in the prefix")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.is_dir() && p.file_name().is_some_and(|n| n != "Public"))
            .expect("a user profile in the prefix")
    }

    /// `wine reg query KEY`: the key's values, or None when it does not exist.
    pub fn reg_query(&self, key: &str) -> Option<String> {
        let out = self
            .cmd("wine")
            .args(["reg", "query", key])
            .output()
            .expect("wine reg runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `sc query TutelaAgent`.
    pub fn service_state(&self) -> String {
        run_ok(self.cmd("wine").args(["sc", "query", "TutelaAgent"]))
            .unwrap_or_else(|e| format!("sc query failed: {e}"))
    }

    /// `wine msiexec ARGS /l*v LOG`; returns whether it succeeded, what it printed and its log.
    pub fn msiexec(&self, args: &[&str], log: &Path) -> (bool, String, String) {
        let out = self
            .cmd("wine")
            .arg("msiexec")
            .args(args)
            .arg("/l*v")
            .arg(log)
            .output()
            .expect("wine msiexec runs");
        (
            out.status.success(),
            format!(
                "status {}\nstdout: {}\nstderr: {}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            msi_log(log),
        )
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = self.cmd("wineserver").arg("-k").status();
    }
}

/// An MSI log as text (Wine writes it as UTF-16 or as bytes, depending on the log mode).
pub fn msi_log(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    if bytes.len() >= 2 && bytes[1] == 0 {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16_lossy(&units)
    } else {
        String::from_utf8_lossy(&bytes).replace('\0', "")
    }
}

/// Lines of an MSI log that show `token`, other than Wine's end-of-install dump of a
/// property the MSI names in MsiHiddenProperties (Wine ignores that list; Windows hides them)
/// and of CustomActionData, which Windows hides for a hidden property's action.
pub fn token_leaks<'a>(log: &'a str, token: &str) -> Vec<&'a str> {
    let hidden: Vec<String> = log
        .lines()
        .find_map(|l| l.split_once("MsiHiddenProperties = ").map(|(_, v)| v))
        .unwrap_or("")
        .split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .chain(["CustomActionData"])
        .map(str::to_owned)
        .collect();
    log.lines()
        .filter(|l| l.contains(token))
        .filter(|l| {
            !hidden.iter().any(|p| {
                l.starts_with(&format!("Property(S): {p} = "))
                    || l.starts_with(&format!("Property(C): {p} = "))
            })
        })
        .collect()
}

/// The text of a file, or a note that it is missing.
pub fn read_or_note(path: &Path) -> String {
    if path.exists() {
        read(path)
    } else {
        format!("({} does not exist)", path.display())
    }
}
