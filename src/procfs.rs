//! Reading Linux's `/proc`: the one place that knows its file names and formats.
//!
//! This module owns parsing `/proc/<pid>/stat`, `/proc/<pid>/environ`, `/proc/<pid>/status`
//! and `/proc/self/fd`. It must not decide anything: which processes are an agent's and what to
//! signal is [`crate::agent`]'s (`agent::procfs`), which gauges to set is
//! [`crate::telemetry`]'s, what a lease owner's identity is, [`crate::worker`]'s. On a system
//! without `/proc` every reader returns `None` (or nothing).

use std::fs;

/// The fields of `/proc/<pid>/stat` nightcrier uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub pid: i32,
    /// `R`, `S`, `D`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    pub ppid: i32,
    /// The process group.
    pub pgrp: i32,
    /// Start time in clock ticks since boot (field 22): with the pid, unique on this host.
    pub start_time: u64,
}

impl Stat {
    /// Zombies have exited: only their parent's `wait` is missing, they hold nothing.
    pub fn is_alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X')
    }
}

/// `/proc/<pid>/stat` of a live process; `None` when there is none (or no `/proc`).
pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(pid, &fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// `pid (comm) state ppid pgrp ...`: `comm` may hold spaces and parentheses, so the fields are
/// read after the last `)`.
pub fn parse_stat(pid: i32, text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // `fields[0]` is field 3 overall (state).
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(22 - 3)?.parse().ok()?,
    })
}

/// The pids listed in `/proc` now.
pub fn pids() -> impl Iterator<Item = i32> {
    fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
}

/// `/proc/<pid>/environ`: `NAME=value` entries separated by NUL bytes. `None` when unreadable
/// (gone, or another user's process).
pub fn environ(pid: i32) -> Option<Vec<u8>> {
    fs::read(format!("/proc/{pid}/environ")).ok()
}

/// The `NAME=value` entries of an `environ` text.
pub fn environ_entries(environ: &[u8]) -> impl Iterator<Item = &[u8]> {
    environ.split(|b| *b == 0)
}

/// Open file descriptors of this process.
pub fn open_fds() -> Option<usize> {
    fs::read_dir("/proc/self/fd").ok().map(Iterator::count)
}

/// Resident memory of this process, in KiB.
pub fn self_resident_kib() -> Option<u64> {
    vm_rss_kib(&fs::read_to_string("/proc/self/status").ok()?)
}

/// Resident memory of process `pid`, in KiB.
pub fn resident_kib(pid: u32) -> Option<u64> {
    vm_rss_kib(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// `VmRSS` from the text of `/proc/<pid>/status`, in KiB.
pub fn vm_rss_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        let text = "42 (a) b (c)) S 1 40 40 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    1000 10 18446744073709551615";
        let s = parse_stat(42, text).unwrap();
        assert_eq!(
            s,
            Stat {
                pid: 42,
                state: 'S',
                ppid: 1,
                pgrp: 40,
                start_time: 987654,
            }
        );
        assert!(s.is_alive());
        assert!(parse_stat(1, "1 (x) Z 0").is_none());
    }

    #[test]
    fn our_own_process_is_readable() {
        let me = std::process::id() as i32;
        let s = stat(me).unwrap();
        assert_eq!(s.pid, me);
        assert!(s.is_alive());
        assert!(pids().any(|p| p == me));
        assert!(open_fds().unwrap() > 0);
        assert!(self_resident_kib().unwrap() > 0);
        assert!(environ(me).is_some());
    }

    #[test]
    fn vm_rss_is_read_from_status_text() {
        assert_eq!(vm_rss_kib("Name:\tx\nVmRSS:\t   12345 kB\n"), Some(12345));
        assert_eq!(vm_rss_kib("Name:\tx\n"), None);
    }
}
