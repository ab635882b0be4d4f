//! Holder liveness: this process's facts, and proving another holder on this host dead.
//! Every `/proc` read goes through [`atomic_file::process`].
//!
//! A holder is judged dead only on proof, never on doubt:
//! - a different host: no verdict (only expiry counts);
//! - the same host but a different boot id: the machine rebooted since, the holder is dead;
//! - a different pid namespace, or `/proc` unreadable: no verdict;
//! - no process with that pid, a zombie with that pid, or a process with that pid but a
//!   different start time (pid reuse): dead.

use atomic_file::process;

use super::record::HolderFacts;

/// Facts about the current process.
pub(crate) fn current_facts() -> HolderFacts {
    let pid = std::process::id();
    HolderFacts {
        host: crate::mutex::host_name().to_owned(),
        boot_id: process::boot_id(),
        pid,
        start_time: process::stat(pid).map(|s| s.start_ticks),
        pid_ns: process::pid_namespace(),
        session: None,
    }
}

/// The facts of process `pid` on this host (`me` gives host, boot and namespace), or `None` if
/// no such process runs.
pub(crate) fn facts_of(pid: u32, me: &HolderFacts) -> Option<HolderFacts> {
    let stat = process::stat(pid)?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    Some(HolderFacts {
        pid,
        start_time: Some(stat.start_ticks),
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
    if !process::available() {
        return None;
    }
    match process::stat(facts.pid) {
        None => {
            if process::listed(facts.pid) {
                None
            } else {
                Some(format!("no process {} exists on {}", facts.pid, facts.host))
            }
        }
        Some(stat) if stat.has_exited() => Some(format!(
            "process {} on {} has exited (state {})",
            facts.pid, facts.host, stat.state
        )),
        Some(stat) => match facts.start_time {
            Some(start) if start != stat.start_ticks => Some(format!(
                "pid {} on {} now belongs to another process (start time {} instead of {start})",
                facts.pid, facts.host, stat.start_ticks
            )),
            _ => None,
        },
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

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
