//! The Windows agent, for real, under Wine: the MSI built from
//! `installer/windows/tutela-agent.wixl.wxs` with wixl around the cross-built
//! `tutela-agent.exe` (`tests/run.sh` builds it), installed with `wine msiexec /i ...
//! ENROLTOKEN=... /qn` on a fresh Wine prefix against the real Linux collector on loopback.
//!
//! Two test-only adjustments to the prefix stand in for a real Windows 10 (both described in
//! the README): a tiny `bcryptprimitives.dll` providing `ProcessPrng`, which Rust's standard
//! library imports and Wine 8 lacks, and `winecfg -v win10`, since a new prefix reports
//! Windows 7.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tutela_tests::{read, require_programs, run_ok, wait_for, Collector, Desktop, Scratch};

/// The cross-built agent, beside the native binaries' target directory.
fn windows_agent() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let target = exe
        .parent()
        .and_then(|deps| deps.parent())
        .and_then(|profile| profile.parent())
        .expect("target directory");
    let dir = target.join("x86_64-pc-windows-gnu");
    ["debug", "release"]
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

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// The workspace version, as the MSI's ProductVersion.
fn version() -> String {
    let manifest = read(&workspace().join("Cargo.toml"));
    manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = "))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .expect("a version in the workspace Cargo.toml")
}

/// `ProcessPrng` for Wine 8, which Rust's std (1.78 and later) imports from
/// `bcryptprimitives.dll`; Windows 10 and later have it.
const PRNG_SHIM: &str = r#"#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) { return SystemFunction036(data, (ULONG)len); }
"#;

/// A fresh Wine prefix on a virtual desktop; its Wine processes are ended on drop.
struct Wine {
    prefix: PathBuf,
    display: String,
}

impl Wine {
    fn new(prefix: PathBuf, desktop: &Desktop, scratch: &Scratch) -> Self {
        let wine = Self {
            prefix,
            display: desktop.display.clone(),
        };
        run_ok(wine.cmd("wineboot").arg("-i")).expect("wineboot creates the prefix");
        wine.wait();
        run_ok(wine.cmd("wine").args(["winecfg", "-v", "win10"])).expect("winecfg sets Windows 10");
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

    fn cmd(&self, program: &str) -> Command {
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

    /// Waits until every process of this prefix has ended (only while nothing long-lived,
    /// such as the service or notepad, runs in it).
    fn wait(&self) {
        let _ = self.cmd("wineserver").arg("-w").status();
    }

    fn drive_c(&self, rel: &str) -> PathBuf {
        self.prefix.join("drive_c").join(rel)
    }

    /// `wine reg query KEY`: the key's values, or None when it does not exist.
    fn reg_query(&self, key: &str) -> Option<String> {
        let out = self
            .cmd("wine")
            .args(["reg", "query", key])
            .output()
            .expect("wine reg runs");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `wine msiexec ARGS`, with its verbose log at `log`; returns whether it succeeded.
    fn msiexec(&self, args: &[&str], log: &Path) -> (bool, String) {
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
        )
    }
}

impl Drop for Wine {
    fn drop(&mut self) {
        let _ = self.cmd("wineserver").arg("-k").status();
    }
}

/// Builds the MSI with wixl around the cross-built agent.
fn build_msi(scratch: &Scratch) -> PathBuf {
    let msi = scratch.path("tutela-agent.msi");
    let agent = windows_agent();
    // wixl takes File/@Source relative to the directory it runs in (not an absolute path).
    run_ok(
        Command::new("wixl")
            .current_dir(agent.parent().expect("the agent's directory"))
            .args(["-a", "x64", "-D"])
            .arg(format!("Version={}", version()))
            .args(["-D", "AgentExe=tutela-agent.exe"])
            .arg("-o")
            .arg(&msi)
            .arg(workspace().join("installer/windows/tutela-agent.wixl.wxs")),
    )
    .expect("wixl builds the MSI");
    msi
}

#[test]
fn the_wixl_msi_installs_under_wine_enrols_and_the_agent_alerts_on_typing() {
    require_programs(&[
        "wine",
        "wineboot",
        "wineserver",
        "wixl",
        "x86_64-w64-mingw32-gcc",
    ]);
    let agent_exe = windows_agent();
    let scratch = Scratch::new("windows-wine");
    let mut collector = Collector::init(scratch.path("collector")).unwrap();
    collector.start().unwrap();
    let token = collector.token(&[]).unwrap();

    let msi = build_msi(&scratch);
    let mut desktop = Desktop::start(scratch.path("desktop.log")).unwrap();
    let wine = Wine::new(scratch.path("prefix"), &desktop, &scratch);

    let log = scratch.path("install.log");
    let (ok, out) = wine.msiexec(
        &[
            "/i",
            &msi.display().to_string(),
            &format!("ENROLTOKEN={token}"),
            "/qn",
        ],
        &log,
    );
    assert!(ok, "msiexec /i failed: {out}\nlog:\n{}", read(&log));

    // Files in place: the agent as built, and the data directory.
    let installed = wine.drive_c("Program Files/Tutela/Agent/tutela-agent.exe");
    assert_eq!(
        std::fs::read(&installed).unwrap_or_default(),
        std::fs::read(&agent_exe).unwrap(),
        "{} is not the built agent",
        installed.display()
    );
    let data = wine.drive_c("ProgramData/Tutela/agent");
    let data_key = wine
        .reg_query(r"HKLM\SOFTWARE\Tutela\Agent")
        .expect("HKLM\\SOFTWARE\\Tutela\\Agent is written");
    assert!(
        data_key.contains(r"C:\ProgramData\Tutela\agent\"),
        "DataDir value: {data_key}"
    );

    // The service is registered to run the supervisor with the data directory.
    let service = wine
        .reg_query(r"HKLM\System\CurrentControlSet\Services\TutelaAgent")
        .expect("the TutelaAgent service is registered");
    assert!(
        service.contains("tutela-agent.exe")
            && service.contains(r#"--data-dir "C:\ProgramData\Tutela\agent\\" service run"#),
        "service ImagePath: {service}"
    );

    // The device enrolled during the install, as the collector sees it.
    let enrolment = data.join("enrolment.toml");
    wait_for("enrolment.toml", Duration::from_secs(30), || {
        enrolment.is_file()
    })
    .unwrap_or_else(|e| panic!("{e}; install log:\n{}", read(&log)));
    let agent_id = read(&enrolment)
        .lines()
        .find_map(|l| l.strip_prefix("agent_id = "))
        .map(|v| v.trim_matches('"').to_owned())
        .expect("agent_id in enrolment.toml");
    let agents = run_ok(collector.cmd().args(["agents", "list"])).unwrap();
    assert!(
        agents.lines().any(|l| l.starts_with(&agent_id)),
        "{agent_id} not in the collector's agents:\n{agents}"
    );

    // The token is not in the install log: not in the command line, nor in the enrolment
    // action's. Wine cannot do one step Windows does here: its end-of-install dump of every
    // property ignores MsiHiddenProperties (the MSI sets it to ENROLTOKEN, as the WiX 3 source's
    // Hidden="yes" does), so the one line Windows would hide is allowed, and nothing else.
    let log_text =
        String::from_utf8_lossy(&std::fs::read(&log).unwrap_or_default()).replace('\0', "");
    assert!(
        log_text.contains("MsiHiddenProperties = ENROLTOKEN"),
        "the MSI does not hide ENROLTOKEN:\n{log_text}"
    );
    let leaks: Vec<&str> = log_text
        .lines()
        .filter(|l| l.contains(&token))
        .filter(|l| {
            !l.starts_with("Property(S): ENROLTOKEN = ")
                && !l.starts_with("Property(C): ENROLTOKEN = ")
        })
        .collect();
    assert!(
        leaks.is_empty(),
        "the enrolment token is in the MSI log:\n{}",
        leaks.join("\n")
    );

    // Wine's service manager started the service: `tutela-agent service run`, the supervisor.
    let query = run_ok(wine.cmd("wine").args(["sc", "query", "TutelaAgent"])).unwrap();
    assert!(query.contains("RUNNING"), "sc query TutelaAgent:\n{query}");

    // Wine cannot do the supervisor's next step on real Windows: Wine has no separate
    // console session to start `tutela-agent run` in with a copy of the SYSTEM token. Run the
    // session component as installed, on the Wine desktop, instead.
    let mut notepad = wine.cmd("wine");
    notepad.arg("notepad");

    desktop.spawn(&mut notepad).unwrap();
    let agent_log = scratch.path("agent.log");
    let mut run = wine.cmd("wine");
    run.arg(r"C:\Program Files\Tutela\Agent\tutela-agent.exe")
        .args(["--data-dir", r"C:\ProgramData\Tutela\agent", "run"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&agent_log).unwrap());
    let mut agent = run.spawn().expect("wine starts the agent");
    wait_for("the agent's sensors", Duration::from_secs(180), || {
        read(&agent_log).contains("sensors started")
    })
    .unwrap_or_else(|e| panic!("{e}; agent log:\n{}", read(&agent_log)));
    let log = read(&agent_log);
    for sensor in ["window", "keys", "browser", "process"] {
        assert!(
            log.contains(&format!("\"{sensor}\"")),
            "the {sensor} sensor did not start under Wine; agent log:\n{log}"
        );
    }
    let window = desktop
        .xdotool(&["search", "--sync", "--name", "Notepad"])
        .unwrap();
    let window = window.lines().next().expect("a Notepad window").to_owned();
    desktop.focus(&window).unwrap();
    desktop.type_text("i want to kill myself").unwrap();
    desktop.keys(&["Return"]).unwrap();
    let alert = collector
        .wait_for_alert("a typed alert from notepad", Duration::from_secs(90), |a| {
            a["source"] == "typed" && a["app"] == "notepad"
        })
        .unwrap_or_else(|e| panic!("{e:#}\nagent log:\n{}", read(&agent_log)));
    assert_eq!(alert["rule_id"], "suicide/kill myself", "{alert}");
    assert_eq!(alert["chain_ok"], true, "{alert}");
    assert_eq!(alert["has_capture"], true, "{alert}");
    let jpeg = collector
        .capture(alert["id"].as_i64().unwrap(), &scratch.path("capture.jpg"))
        .unwrap();
    let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .expect("the capture is a JPEG");
    assert!(image.width() > 0 && image.height() > 0, "an empty capture");
    let _ = agent.kill();
    let _ = agent.wait();

    // Uninstall removes the program and keeps the identity.
    let (ok, out) = wine.msiexec(
        &["/x", &msi.display().to_string(), "/qn"],
        &scratch.path("uninstall.log"),
    );
    assert!(ok, "msiexec /x failed: {out}");
    assert!(
        !installed.exists(),
        "{} left after uninstall",
        installed.display()
    );
    let kept_enrolment = std::fs::read(&enrolment).expect("uninstall kept the enrolment");
    let kept_key = std::fs::read(data.join("agent.key")).expect("uninstall kept the agent key");

    // A reinstall without a token brings the program back with the same identity.
    let (ok, out) = wine.msiexec(
        &["/i", &msi.display().to_string(), "/qn"],
        &scratch.path("reinstall.log"),
    );
    assert!(ok, "msiexec /i (reinstall) failed: {out}");
    assert!(installed.is_file(), "the reinstall put no agent in place");
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
    drop(wine);
    drop(desktop);
}
