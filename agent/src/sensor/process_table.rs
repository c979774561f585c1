//! The Linux process table, read for processes started since the last read.
//!
//! Listing `/proc` costs a directory walk over every process, milliseconds on a loaded
//! machine, and an idle agent did it every poll. The kernel hands pids out in order and
//! `/proc/loadavg` names the last one handed out, so a read looks only at the pids handed out
//! since the previous read: none when nothing started, a few `stat` files otherwise. Those
//! pids include threads (which share the pid space), told apart by their exit signal. The whole
//! of `/proc` is listed instead when the pids wrapped round, when too many were handed out to
//! look at one by one, when `/proc/loadavg` cannot be read, and every few minutes anyway (it
//! also forgets processes that ended, and reports any process a look by pid missed). A listing
//! is compared with the processes known since the last listing: a pid handed out again within
//! a read that has to list (a wrap, or more pids than are looked at one by one) is not seen as
//! a new process if a process held it at the last listing.

use std::ops::RangeInclusive;

/// Most pids looked at one by one in a read; beyond this `/proc` is listed.
const MOST_PROBED: u32 = 256;
/// Reads by pid between two listings of `/proc`.
const READS_BETWEEN_LISTINGS: u32 = 150;
/// `PF_KTHREAD` in the flags of `/proc/<pid>/stat`.
const PF_KTHREAD: u64 = 0x0020_0000;

/// A process found by a read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Started {
    pub(super) pid: u32,
    pub(super) name: String,
    pub(super) path: String,
}

/// What is known of the process table since the last read.
pub(super) struct ProcessTable {
    /// The last pid handed out, as of the last read.
    last_pid: Option<u32>,
    /// Processes known: those of the last listing and those found by pid since, sorted. Only
    /// a listing is compared with it.
    known: Vec<u32>,
    /// Pids of the last listing handed out after the last pid read just before it (so also
    /// in the next read by pid), sorted. A read by pid skips only these: any other pid in its
    /// range was handed out anew since, even one a process held at the last listing.
    listed_after: Vec<u32>,
    /// Reads by pid since the last listing.
    reads_by_pid: u32,
}

impl ProcessTable {
    /// The table as it is now: nothing in it counts as started.
    pub(super) fn read() -> std::io::Result<Self> {
        // Read before the listing: a pid handed out in between is looked at again next time,
        // and found known.
        let mut table = Self {
            last_pid: last_pid(),
            known: Vec::new(),
            listed_after: Vec::new(),
            reads_by_pid: 0,
        };
        table.known = pids()?;
        table.note_listed_after(table.last_pid);
        Ok(table)
    }

    /// Processes started since the last read (kernel threads left out), in pid order.
    pub(super) fn started(&mut self) -> std::io::Result<Vec<Started>> {
        let now = last_pid();
        let range = match (self.last_pid, now) {
            (Some(before), Some(now))
                if now >= before
                    && now - before <= MOST_PROBED
                    && self.reads_by_pid < READS_BETWEEN_LISTINGS =>
            {
                Some(before + 1..=now)
            }
            _ => None,
        };
        let found = match range {
            Some(range) => self.read_by_pid(range),
            None => self.read_listing(now)?,
        };
        self.last_pid = now;
        Ok(found)
    }

    fn read_by_pid(&mut self, range: RangeInclusive<u32>) -> Vec<Started> {
        self.reads_by_pid += 1;
        let mut found = Vec::new();
        let listed_after = std::mem::take(&mut self.listed_after);
        for pid in range {
            if listed_after.binary_search(&pid).is_ok() {
                continue;
            }
            if let Some(process) = process(pid) {
                found.push(process);
            }
        }
        for p in &found {
            // Kept sorted for the next listing to compare with.
            if let Err(at) = self.known.binary_search(&p.pid) {
                self.known.insert(at, p.pid);
            }
        }
        found
    }

    /// Notes the pids of the listing above `last_pid` (read just before the listing).
    fn note_listed_after(&mut self, last_pid: Option<u32>) {
        self.listed_after = match last_pid {
            Some(last) => self.known.iter().copied().filter(|&p| p > last).collect(),
            None => Vec::new(),
        };
    }

    fn read_listing(&mut self, last_pid: Option<u32>) -> std::io::Result<Vec<Started>> {
        let now = pids()?;
        // Both lists are sorted: walk them together.
        let mut old = self.known.iter().peekable();
        let mut found = Vec::new();
        for &pid in &now {
            while old.next_if(|&&o| o < pid).is_some() {}
            if old.next_if(|&&o| o == pid).is_some() {
                continue;
            }
            found.extend(process(pid));
        }
        self.known = now;
        self.note_listed_after(last_pid);
        self.reads_by_pid = 0;
        Ok(found)
    }
}

/// The last pid handed out (the fifth field of `/proc/loadavg`), if it can be read.
fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .nth(4)?
        .parse()
        .ok()
}

/// The pids in `/proc`, sorted.
pub(super) fn pids() -> std::io::Result<Vec<u32>> {
    let mut pids: Vec<u32> = std::fs::read_dir("/proc")?
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// What `/proc/<pid>/stat` says of a pid.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Stat {
    /// The command name (`comm`, cut at 15 bytes).
    pub(super) comm: String,
    pub(super) kernel_thread: bool,
    /// A thread other than its process's first (its exit signal is -1).
    pub(super) thread: bool,
}

pub(super) fn stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

fn parse_stat(stat: &str) -> Option<Stat> {
    // The command name is in parentheses and may hold spaces and parentheses itself.
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let comm = stat.get(open + 1..close)?.trim_end().to_owned();
    // Fields after the name: state is field 3, flags field 9, exit signal field 38.
    let fields: Vec<&str> = stat.get(close + 1..)?.split_whitespace().collect();
    let flags: u64 = fields.get(6)?.parse().ok()?;
    let exit_signal: i64 = fields.get(35)?.parse().ok()?;
    Some(Stat {
        comm,
        kernel_thread: flags & PF_KTHREAD != 0,
        thread: exit_signal == -1,
    })
}

/// `pid` as a started process; `None` when it ended, is a thread or a kernel thread.
fn process(pid: u32) -> Option<Started> {
    let stat = stat(pid)?;
    if stat.kernel_thread || stat.thread || stat.comm.is_empty() {
        return None;
    }
    let app = super::app_with_comm(pid, stat.comm);
    Some(Started {
        pid,
        name: app.name,
        path: app.path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stat_line_gives_the_name_and_tells_threads_and_kernel_threads_apart() {
        let process = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 95 0 0 0 0 0 0 0 20 0 1 0 \
                       12345 1000 100 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(process),
            Some(Stat {
                comm: "a (b) c".into(),
                kernel_thread: false,
                thread: false
            })
        );
        let thread = process.replace(" 17 1 0", " -1 1 0");
        assert!(parse_stat(&thread).unwrap().thread);
        let kernel = process.replace(" 4194560 ", " 2129984 ");
        assert!(parse_stat(&kernel).unwrap().kernel_thread);
        assert_eq!(parse_stat("4242 (cut"), None);
    }

    #[test]
    fn this_process_is_listed_and_neither_a_thread_nor_a_kernel_thread() {
        let me = std::process::id();
        assert!(pids().unwrap().binary_search(&me).is_ok());
        let mine = stat(me).unwrap();
        assert!(!mine.kernel_thread && !mine.thread, "{mine:?}");
        // kthreadd is pid 2 where the kernel's threads are visible (not in a pid namespace).
        if std::fs::read_to_string("/proc/2/comm").is_ok_and(|c| c.trim() == "kthreadd") {
            assert!(stat(2).unwrap().kernel_thread);
        }
    }

    #[test]
    fn a_process_started_since_the_last_read_is_found_once_and_a_thread_not_at_all() {
        let mut table = ProcessTable::read().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            tid_tx.send(current_tid()).unwrap();
            let _ = done_rx.recv();
        });
        let tid = tid_rx.recv().unwrap();
        // Another test's processes may start too; this one's must be found, once.
        let first = table.started().unwrap();
        let second = table.started().unwrap();
        let thread_stat = stat(tid);
        let _ = child.kill();
        let _ = child.wait();
        drop(done_tx);
        thread.join().unwrap();
        let pid = child.id();
        let found: Vec<&Started> = first.iter().filter(|s| s.pid == pid).collect();
        assert_eq!(found.len(), 1, "sleep (pid {pid}) not found in {first:?}");
        assert_eq!(found[0].name, "sleep");
        assert!(found[0].path.ends_with("sleep"), "{:?}", found[0].path);
        assert!(second.iter().all(|s| s.pid != pid), "found twice");
        assert!(
            first.iter().chain(&second).all(|s| s.pid != tid),
            "thread {tid} reported as a process"
        );
        assert!(thread_stat.is_some_and(|s| s.thread), "{tid} is a thread");
    }

    #[test]
    fn a_pid_held_at_the_last_listing_and_handed_out_again_is_a_new_process() {
        let mut table = ProcessTable::read().unwrap();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .unwrap();
        let pid = child.id();
        // As if another process held this pid at the last listing and ended since.
        if let Err(at) = table.known.binary_search(&pid) {
            table.known.insert(at, pid);
        }
        table.listed_after.clear();
        let found = table.read_by_pid(pid..=pid);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].pid, pid);
    }

    /// This thread's id: `/proc/thread-self` names it.
    fn current_tid() -> u32 {
        std::fs::read_link("/proc/thread-self")
            .unwrap()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    }
}
