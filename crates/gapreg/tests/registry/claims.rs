//! 64 agents (threads, then processes) claim one gap at once: exactly one wins; every loser's
//! conflict names the winner.

use std::sync::{Arc, Barrier};

use gapreg::{ConflictDetail, ErrorKind, GapSpec, Registry, Severity, Status};

use crate::util::scratch;

const AGENTS: usize = 64;

#[test]
fn sixty_four_way_claim_race_has_one_winner() {
    let (_dir, reg) = scratch();
    for _ in 0..3 {
        reg.file(GapSpec::new("contended", Severity::High))
            .expect("file");
    }
    for target in ["GAP-OP-1", "GAP-OP-2", "GAP-OP-3"] {
        let barrier = Arc::new(Barrier::new(AGENTS));
        let handles: Vec<_> = (0..AGENTS)
            .map(|i| {
                let barrier = Arc::clone(&barrier);
                let dir = reg.dir().to_path_buf();
                std::thread::spawn(move || {
                    // Each agent has its own handle, as separate processes would.
                    let reg = Registry::open(dir).expect("open");
                    barrier.wait();
                    (
                        format!("CC-{i}"),
                        reg.claim(target, &format!("CC-{i}"), None),
                    )
                })
            })
            .collect();
        let mut winners = Vec::new();
        let mut losers = Vec::new();
        for h in handles {
            let (agent, result) = h.join().expect("agent thread");
            match result {
                Ok(gap) => winners.push((agent, gap)),
                Err(e) => match e.kind() {
                    ErrorKind::Conflict {
                        detail: ConflictDetail::ClaimedBy { agent: holder, .. },
                        ..
                    } => losers.push(holder.clone()),
                    other => panic!("{agent}: unexpected error {other}"),
                },
            }
        }
        assert_eq!(winners.len(), 1, "{target}: winners {winners:?}");
        let (winner, gap) = &winners[0];
        assert_eq!(gap.claimed_by.as_deref(), Some(winner.as_str()));
        assert_eq!((gap.status, gap.rev), (Status::InProgress, 2));
        assert_eq!(losers.len(), AGENTS - 1);
        assert!(
            losers.iter().all(|l| l == winner),
            "a loser named someone else"
        );
        let stored = reg.show(target).expect("show");
        assert_eq!(stored.claimed_by.as_deref(), Some(winner.as_str()));
        // The winner claiming again still succeeds.
        assert!(reg.claim(target, winner, None).is_ok());
    }
}

#[test]
fn sixty_four_processes_claim_one_gap() {
    let (_dir, reg) = scratch();
    reg.file(GapSpec::new("contended", Severity::High))
        .expect("file");
    let dir = reg.dir().display().to_string();
    let children: Vec<_> = (0..AGENTS)
        .map(|i| crate::util::spawn_child("claims::child_claimer", &format!("{dir}|CC-{i}")))
        .collect();
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(
            out.status.success(),
            "a claiming process failed: {:?}",
            out.status
        );
        won.extend(crate::util::printed(&out.stdout, "WON"));
        lost.extend(crate::util::printed(&out.stdout, "LOST"));
    }
    assert_eq!(won.len(), 1, "winners: {won:?}");
    assert_eq!(lost.len(), AGENTS - 1);
    assert!(
        lost.iter().all(|w| *w == won[0]),
        "a loser was told another winner"
    );
    assert_eq!(
        reg.show("GAP-OP-1").expect("show").claimed_by.as_deref(),
        Some(won[0].as_str())
    );
}

#[test]
#[ignore = "child process of sixty_four_processes_claim_one_gap"]
fn child_claimer() {
    let Some(param) = crate::util::child_param() else {
        return;
    };
    let (dir, agent) = param.rsplit_once('|').expect("dir|agent");
    let reg = Registry::open(dir).expect("open");
    match reg.claim("GAP-OP-1", agent, None) {
        Ok(_) => print!("\nWON {agent}\n"),
        Err(e) => match e.kind() {
            ErrorKind::Conflict {
                detail: ConflictDetail::ClaimedBy { agent: winner, .. },
                ..
            } => print!("\nLOST {winner}\n"),
            other => panic!("{agent}: {other}"),
        },
    }
}
