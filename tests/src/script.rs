//! A Node script that drives Chromium for a test, spoken to over its standard
//! input and output, and killed if the test hangs or fails before it ends.

use std::io::{BufRead, BufReader, Lines};
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::Duration;

#[derive(Debug)]
pub struct Script {
    child: Child,
    stdin: Option<ChildStdin>,
    done: mpsc::Sender<()>,
}

impl Script {
    /// Starts `cmd` with piped standard input and output (its errors go to
    /// the test's); it is killed after `limit` unless [`Script::finish`] came
    /// first. Returns the script and its output's lines.
    pub fn spawn(cmd: &mut Command, limit: Duration) -> (Self, Lines<BufReader<ChildStdout>>) {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("node runs (tests/setup-debian.sh installs it)");
        let pid = child.id();
        let (done, finished) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            if finished.recv_timeout(limit).is_err() {
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let lines = BufReader::new(child.stdout.take().expect("piped")).lines();
        let stdin = child.stdin.take();
        (Self { child, stdin, done }, lines)
    }

    /// The script's standard input, for answering its requests.
    pub fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("open until finish")
    }

    /// Closes its input, waits for it to end and stops the watchdog.
    pub fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        let status = self.child.wait().expect("the script is waited for");
        let _ = self.done.send(());
        status
    }
}
