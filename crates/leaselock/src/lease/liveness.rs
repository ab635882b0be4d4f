//! Holder liveness: this process's facts, and proving another holder on this host dead.
//!
//! A holder is judged dead only on proof, never on doubt:
//! - a different host: no verdict (only expiry counts);
//! - the same host but a different boot id: the machine rebooted since, the holder is dead;
//! - a different pid namespace, or `/proc` unreadable: no verdict;
//! - no process with that pid, a zombie with that pid, or a process with that pid but a
//!   different start time (pid reuse): dead.

use std::fs;

use super::record::HolderFacts;

/// Facts about the current process.
pub(crate) fn current_facts() -> HolderFacts {
    let pid = std::process::id();
    HolderFacts {
        host: host_name(),
        boot_id: read_trimmed("/proc/sys/kernel/random/boot_id"),
        pid,
        start_time: proc_stat(pid).map(|s| s.start_time),
        pid_ns: pid_namespace(),
    }
}

/// The facts of process `pid` on this host (`me` gives host, boot and namespace), or `None` if
/// no such process runs.
pub(crate) fn facts_of(pid: u32, me: &HolderFacts) -> Option<HolderFacts> {
    let stat = proc_stat(pid)?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    Some(HolderFacts {
        pid,
        start_time: Some(stat.start_time),
        ..me.clone()
    })
}

/// Facts that never prove death: no boot id, so only expiry ends the lease.
pub(crate) fn ttl_only(me: &HolderFacts) -> HolderFacts {
    HolderFacts {
        boot_id: None,
        pid: 0,
        start_time: None,
        ..me.clone()
    }
}

fn host_name() -> String {
    read_trimmed("/proc/sys/kernel/hostname")
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
        .unwrap_or_else(|| "unknown-host".to_owned())
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

fn pid_namespace() -> Option<String> {
    fs::read_link("/proc/self/ns/pid")
        .ok()
        .map(|p| p.to_string_lossy().into_owned())
}

struct ProcStat {
    state: char,
    start_time: u64,
}

/// Reads state (field 3) and start time (field 22) of `/proc/<pid>/stat`. The command name
/// (field 2) may contain spaces and parentheses, so fields are counted after the last `)`.
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // `after` starts at field 3 (state); field 22 is 19 further on.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// `Some(reason)` when the holder described by `facts` is provably dead, judged from this
/// process (whose own facts are `me`).
pub(crate) fn holder_dead(facts: &HolderFacts, me: &HolderFacts) -> Option<String> {
    if facts.host != me.host {
        return None;
    }
    if let (Some(theirs), Some(ours)) = (&facts.boot_id, &me.boot_id) {
        if theirs != ours {
            return Some(format!(
                "host {} rebooted since the lease was taken (boot id {theirs} is now {ours})",
                facts.host
            ));
        }
    } else {
        return None;
    }
    if facts.pid_ns != me.pid_ns || me.pid_ns.is_none() {
        return None;
    }
    if !std::path::Path::new("/proc/self/stat").exists() {
        return None;
    }
    match proc_stat(facts.pid) {
        None => {
            if std::path::Path::new(&format!("/proc/{}", facts.pid)).exists() {
                None
            } else {
                Some(format!("no process {} exists on {}", facts.pid, facts.host))
            }
        }
        Some(stat) if matches!(stat.state, 'Z' | 'X' | 'x') => Some(format!(
            "process {} on {} has exited (state {})",
            facts.pid, facts.host, stat.state
        )),
        Some(stat) => match facts.start_time {
            Some(start) if start != stat.start_time => Some(format!(
                "pid {} on {} now belongs to another process (start time {} instead of {start})",
                facts.pid, facts.host, stat.start_time
            )),
            _ => None,
        },
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1 2 3";
        let stat = parse_stat(line).expect("parses");
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 987_654);
    }

    #[test]
    fn this_process_is_alive() {
        let me = current_facts();
        assert_eq!(holder_dead(&me, &me), None);
        if me.boot_id.is_some() && me.start_time.is_some() {
            let reused = HolderFacts {
                start_time: me.start_time.map(|s| s + 1),
                ..me.clone()
            };
            assert!(holder_dead(&reused, &me).is_some());
            let other_host = HolderFacts {
                host: format!("{}-elsewhere", me.host),
                ..reused
            };
            assert_eq!(holder_dead(&other_host, &me), None);
        }
    }
}
