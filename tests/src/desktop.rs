//! A virtual X desktop (Xvfb and openbox) for the desktop tests, and an
//! agent enrolled to watch it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::{read, require_programs, run_ok, wait_for, Agent, Collector, Scratch};

/// Display numbers handed out in this process, so parallel tests never race for one.
static NEXT_DISPLAY: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

/// A virtual X desktop: Xvfb at 1920x1080 with the openbox window manager,
/// and the programs started on it. Everything is killed on drop.
#[derive(Debug)]
pub struct Desktop {
    /// The X display, e.g. `:121`.
    pub display: String,
    /// Where Xvfb, the window manager and the programs started here write their output.
    pub log: PathBuf,
    xvfb: Child,
    programs: Vec<Child>,
    /// Programs started in their own process group (browsers), killed as a group.
    groups: Vec<Child>,
}

impl Desktop {
    pub const WIDTH: u32 = 1920;
    pub const HEIGHT: u32 = 1080;

    /// Starts Xvfb on a free display number and openbox on it; output goes to `log`.
    pub fn start(log: PathBuf) -> Result<Self> {
        require_programs(&["Xvfb", "openbox", "xdotool", "xterm", "xprop", "xdpyinfo"]);
        for _ in 0..100 {
            let n = 120 + NEXT_DISPLAY.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if display_in_use(n) {
                continue;
            }
            let display = format!(":{n}");
            let out = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            let xvfb = Command::new("Xvfb")
                .arg(&display)
                .args(["-screen", "0", "1920x1080x24", "-nolisten", "tcp"])
                // Without it the server resets when its last client leaves (the readiness
                // probe), and a client connecting during the reset is refused.
                .arg("-noreset")
                .stdin(Stdio::null())
                .stdout(out.try_clone()?)
                .stderr(out)
                .spawn()
                .context("starting Xvfb")?;
            let mut desktop = Self {
                display,
                log: log.clone(),
                xvfb,
                programs: Vec::new(),
                groups: Vec::new(),
            };
            if desktop.wait_for_server()? {
                desktop.start_window_manager()?;
                return Ok(desktop);
            }
            // Another X server took this number first: try the next one.
        }
        bail!("no free X display number; see {}", log.display())
    }

    /// Whether the X server answers; `false` when it exited (display number taken).
    fn wait_for_server(&mut self) -> Result<bool> {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if self.xvfb.try_wait()?.is_some() {
                return Ok(false);
            }
            let up = Command::new("xdpyinfo")
                .args(["-display", &self.display])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()?
                .success();
            if up {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!(
            "Xvfb {} did not start within 15 s; log:\n{}",
            self.display,
            read(&self.log)
        )
    }

    fn start_window_manager(&mut self) -> Result<()> {
        self.spawn(&mut self.command("openbox"))?;
        let display = self.display.clone();
        wait_for(
            "openbox to manage the display",
            Duration::from_secs(15),
            || {
                Command::new("xprop")
                    .args(["-display", &display, "-root", "_NET_SUPPORTING_WM_CHECK"])
                    .output()
                    .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("window id"))
            },
        )
        .with_context(|| format!("log:\n{}", read(&self.log)))
    }

    /// A command that runs on this desktop.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("DISPLAY", &self.display);
        c
    }

    fn log_file(&self) -> Result<std::fs::File> {
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?)
    }

    /// Starts a program that is killed with the desktop; returns its process id.
    pub fn spawn(&mut self, cmd: &mut Command) -> Result<u32> {
        let log = self.log_file()?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let id = child.id();
        self.programs.push(child);
        Ok(id)
    }

    /// Starts a program in its own process group (a browser and its helpers), all of which
    /// are killed with the desktop.
    pub fn spawn_group(&mut self, cmd: &mut Command) -> Result<u32> {
        use std::os::unix::process::CommandExt;
        let log = self.log_file()?;
        let child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {cmd:?}"))?;
        let id = child.id();
        self.groups.push(child);
        Ok(id)
    }

    /// Runs xdotool on this desktop.
    pub fn xdotool(&self, args: &[&str]) -> Result<String> {
        run_ok(self.command("xdotool").args(args))
    }

    /// Opens an xterm titled `title` running `cat` (typed lines go nowhere), focuses it and
    /// returns its window id.
    pub fn open_xterm(&mut self, title: &str) -> Result<String> {
        self.spawn(
            self.command("xterm")
                .args([
                    "-geometry",
                    "100x30+100+100",
                    "-bg",
                    "white",
                    "-fg",
                    "black",
                ])
                .args(["-T", title])
                .args(["-e", "cat"]),
        )?;
        let pattern = format!("^{}$", regex_escape(title));
        let mut window = String::new();
        wait_for(
            &format!("an xterm titled {title:?}"),
            Duration::from_secs(15),
            || match self.xdotool(&["search", "--name", &pattern]) {
                Ok(out) => {
                    window = out.lines().next().unwrap_or_default().to_owned();
                    !window.is_empty()
                }
                Err(_) => false,
            },
        )?;
        self.focus(&window)?;
        Ok(window)
    }

    /// Activates `window` and waits until the window manager reports it active.
    pub fn focus(&self, window: &str) -> Result<()> {
        self.xdotool(&["windowactivate", "--sync", window])?;
        wait_for(
            &format!("window {window} to be active"),
            Duration::from_secs(10),
            || {
                self.xdotool(&["getactivewindow"])
                    .is_ok_and(|out| out.trim() == window)
            },
        )
    }

    /// Types `text` into the focused window, key by key.
    pub fn type_text(&self, text: &str) -> Result<()> {
        self.xdotool(&["type", "--delay", "40", "--", text])
            .map(drop)
    }

    /// Presses keys by name (`Return`, `BackSpace`, ...) in the focused window.
    pub fn keys(&self, keys: &[&str]) -> Result<()> {
        let mut args = vec!["key", "--delay", "40"];
        args.extend_from_slice(keys);
        self.xdotool(&args).map(drop)
    }

    /// Position and size of `window` on the screen: (x, y, width, height).
    pub fn geometry(&self, window: &str) -> Result<(u32, u32, u32, u32)> {
        let out = self.xdotool(&["getwindowgeometry", "--shell", window])?;
        let field = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("no {name} in {out:?}"))
        };
        Ok((field("X")?, field("Y")?, field("WIDTH")?, field("HEIGHT")?))
    }

    /// Sets the title of `window`, as an application renaming itself would.
    pub fn rename(&self, window: &str, title: &str) -> Result<()> {
        self.xdotool(&["set_window", "--name", title, window])
            .map(drop)
    }
}

/// Whether a live X server holds display `n` (a lock left by a dead one is stale: the X
/// server replaces it).
fn display_in_use(n: u32) -> bool {
    match std::fs::read_to_string(format!("/tmp/.X{n}-lock")) {
        Ok(pid) => Path::new(&format!("/proc/{}", pid.trim())).exists(),
        Err(_) => false,
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain(Some(c))
        })
        .collect()
}

impl Drop for Desktop {
    fn drop(&mut self) {
        for child in &mut self.groups {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
        for child in self.programs.iter_mut().rev() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // SIGTERM lets the X server remove its lock file and socket.
        let _ = Command::new("kill")
            .args(["-TERM", &self.xvfb.id().to_string()])
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if self.xvfb.try_wait().ok().flatten().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.xvfb.kill();
        let _ = self.xvfb.wait();
    }
}

/// A collector started in `scratch/collector`, and an agent in `scratch/agent`
/// enrolled with it, watching `desktop` for a pupil whose home is
/// `scratch/home`, with `agent_toml` as its settings. The agent is not yet
/// started. Returns the collector, the agent and the home directory.
pub fn desktop_agent(
    scratch: &Scratch,
    desktop: &Desktop,
    agent_toml: &str,
) -> Result<(Collector, Agent, PathBuf)> {
    let mut collector = Collector::init(scratch.path("collector"))?;
    collector.start()?;
    let home = scratch.path("home");
    std::fs::create_dir_all(&home)?;
    let mut agent = Agent::new(scratch.path("agent"));
    agent.on_desktop(desktop, &home);
    agent.enrol(&collector.token(&[])?)?;
    std::fs::write(agent.dir.join("agent.toml"), agent_toml)?;
    Ok((collector, agent, home))
}
