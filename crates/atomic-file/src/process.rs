//! The one module of this workspace that reads `/proc`: facts about processes and the host
//! that liveness checks rest on (this crate's `recover`, leaselock's dead-holder proofs).
//!
//! Every function answers `None` (or `false`) where `/proc` does not tell — another operating
//! system, a container without it, a file that does not parse — so callers can treat "unknown"
//! as "no proof", never as "dead". The files read are the kernel's, not a repository's, but
//! their text is still parsed defensively: the command name in `/proc/<pid>/stat` may hold
//! spaces and parentheses, so fields are counted after its last `)`.

use std::fs;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Two fields of `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcStat {
    /// The process state (field 3): `R`, `S`, `D`, `Z` (zombie), `X`/`x` (dead), …
    pub state: char,
    /// When the process started (field 22), in clock ticks after boot.
    pub start_ticks: u64,
}

impl ProcStat {
    /// True for a zombie or dead process (state `Z`, `X` or `x`): it has exited.
    pub fn has_exited(&self) -> bool {
        matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// State and start time of process `pid`, from `/proc/<pid>/stat`; `None` if there is no such
/// process or `/proc` does not tell.
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses the text of a `/proc/<pid>/stat` file (see [`stat`]).
///
/// ```
/// let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2 3";
/// let stat = atomic_file::process::parse_stat(line).expect("parses");
/// assert_eq!((stat.state, stat.start_ticks), ('S', 987_654));
/// ```
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `after` starts at field 3 (state); field 22 is 19 further on.
    let start_ticks = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_ticks })
}

/// When process `pid` started, as a wall-clock time rounded down: its start ticks
/// ([`stat`]) after the boot time ([`boot_time`]). `None` where `/proc` does not tell.
pub fn start_time(pid: u32) -> Option<SystemTime> {
    let ticks = stat(pid)?.start_ticks;
    let boot = boot_time()?;
    let hz = clock_ticks_per_second()?.max(1);
    Some(boot + Duration::from_millis(ticks.saturating_mul(1000) / hz))
}

/// When this host booted: `btime` of `/proc/stat`, in whole seconds.
pub fn boot_time() -> Option<SystemTime> {
    let secs: u64 = fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// The Linux boot id (`/proc/sys/kernel/random/boot_id`): a new one after every boot.
pub fn boot_id() -> Option<String> {
    read_trimmed("/proc/sys/kernel/random/boot_id")
}

/// The host name as the kernel has it (`/proc/sys/kernel/hostname`).
pub fn host_name() -> Option<String> {
    read_trimmed("/proc/sys/kernel/hostname")
}

/// This process's pid namespace (the text of the `/proc/self/ns/pid` link, such as
/// `pid:[4026531836]`): pids mean the same process only within one namespace.
pub fn pid_namespace() -> Option<String> {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

/// Whether `/proc` describes processes here at all (`/proc/self/stat` exists).
pub fn available() -> bool {
    std::path::Path::new("/proc/self/stat").exists()
}

/// Whether `/proc` has an entry for `pid` (a process that exists, even if its `stat` could not
/// be read).
pub fn listed(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

#[cfg(unix)]
fn clock_ticks_per_second() -> Option<u64> {
    Some(rustix::param::clock_ticks_per_second())
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2 3";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_ticks, 987_654);
        assert!(!stat.has_exited());
        assert_eq!(parse_stat("42 (no fields)"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_is_described() {
        assert!(available());
        let me = std::process::id();
        assert!(listed(me));
        assert!(!stat(me).expect("own stat").has_exited());
        let started = start_time(me).expect("own start time");
        assert!(started <= SystemTime::now());
        assert!(boot_time().expect("boot time") <= started);
        assert!(boot_id().is_some());
        assert!(pid_namespace().is_some());
    }
}
