//! Pure graph decisions: readiness, blockers and cycles, over lookups the caller provides (the
//! index, gap files, or a test's in-memory model).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::loops::Loop;
use crate::model::{Blocker, Status};
use crate::time::Timestamp;

/// What readiness needs to know about one gap.
pub(crate) struct GapView<'a> {
    pub status: Status,
    pub claimed_by: Option<&'a str>,
    pub claim_expires_at: Option<Timestamp>,
    pub parent_loop: Option<&'a str>,
    pub depends_on: &'a [String],
}

/// Why the gap is not ready (empty: it is ready). `gap_status` looks up other gaps.
pub(crate) fn blockers(
    gap: &GapView<'_>,
    now: Timestamp,
    gap_status: &dyn Fn(&str) -> Option<Status>,
    loops: &BTreeMap<String, Loop>,
) -> Vec<Blocker> {
    let mut out = Vec::new();
    if gap.status.is_closed() || gap.status == Status::Blocked {
        out.push(Blocker::Status { status: gap.status });
    }
    if let Some(agent) = crate::model::claim_live(gap.claimed_by, gap.claim_expires_at, now) {
        out.push(Blocker::Claimed {
            agent: agent.to_owned(),
            expires_at: gap.claim_expires_at,
        });
    }
    for dep in gap.depends_on {
        out.extend(unfinished_dep(dep, gap_status, loops));
    }
    if let Some(parent) = gap.parent_loop.and_then(|p| loops.get(p)) {
        for dep in &parent.depends_on {
            match loops.get(dep) {
                Some(l) if l.is_complete() => {}
                Some(l) => out.push(Blocker::Loop {
                    id: dep.clone(),
                    status: l.status.clone(),
                    via: Some(parent.id.clone()),
                }),
                None => out.push(Blocker::Missing { id: dep.clone() }),
            }
        }
    }
    out
}

/// The one rule of "is this dependency finished": a gap when it is `complete`, a loop when
/// [`Loop::is_complete`] (`complete`, `closed`, ...). `None` when finished; otherwise why
/// not. `gap_status` looks up gaps (`None`: no such gap).
pub(crate) fn unfinished_dep(
    dep: &str,
    gap_status: &dyn Fn(&str) -> Option<Status>,
    loops: &BTreeMap<String, Loop>,
) -> Option<Blocker> {
    if let Some(status) = gap_status(dep) {
        return (status != Status::Complete).then(|| Blocker::Gap {
            id: dep.to_owned(),
            status,
        });
    }
    match loops.get(dep) {
        Some(l) if l.is_complete() => None,
        Some(l) => Some(Blocker::Loop {
            id: dep.to_owned(),
            status: l.status.clone(),
            via: None,
        }),
        None => Some(Blocker::Missing { id: dep.to_owned() }),
    }
}

/// If adding the edge `from -> to` closes a cycle, the cycle `from -> to -> ... -> from`.
/// `deps` returns a node's outgoing edges (`None` for an unknown node).
pub(crate) fn cycle_through(
    from: &str,
    to: &str,
    deps: &mut dyn FnMut(&str) -> Option<Vec<String>>,
) -> Option<Vec<String>> {
    if from == to {
        return Some(vec![from.to_owned(), from.to_owned()]);
    }
    let mut parent: HashMap<String, String> = HashMap::new();
    let mut queue = VecDeque::from([to.to_owned()]);
    let mut seen = BTreeSet::from([to.to_owned()]);
    while let Some(node) = queue.pop_front() {
        for next in deps(&node).unwrap_or_default() {
            if next == from {
                let mut path = vec![from.to_owned(), node.clone()];
                let mut cur = node;
                while let Some(p) = parent.get(&cur) {
                    path.push(p.clone());
                    cur = p.clone();
                }
                // path is from, node, ..., to (reversed chain); put it in edge order.
                let mut chain: Vec<String> = path[1..].to_vec();
                chain.reverse();
                let mut cycle = vec![from.to_owned()];
                cycle.extend(chain);
                cycle.push(from.to_owned());
                return Some(cycle);
            }
            if seen.insert(next.clone()) {
                parent.insert(next.clone(), node.clone());
                queue.push_back(next);
            }
        }
    }
    None
}

/// Every elementary cycle found by a depth-first search of `graph` (at least one per cyclic
/// strongly connected part), each rotated to start at its smallest id, first = last.
pub(crate) fn find_cycles(graph: &BTreeMap<String, Vec<String>>) -> Vec<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Color {
        White,
        Grey,
        Black,
    }
    let mut color: HashMap<&str, Color> =
        graph.keys().map(|k| (k.as_str(), Color::White)).collect();
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        if color.get(start.as_str()) != Some(&Color::White) {
            continue;
        }
        // Iterative DFS keeping the current path.
        let mut stack: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        let mut path: Vec<&str> = vec![start.as_str()];
        color.insert(start.as_str(), Color::Grey);
        while let Some((node, i)) = stack.last_mut() {
            let edges = graph.get(*node).map(Vec::as_slice).unwrap_or(&[]);
            if *i >= edges.len() {
                color.insert(node, Color::Black);
                stack.pop();
                path.pop();
                continue;
            }
            let next = edges[*i].as_str();
            *i += 1;
            match color.get(next).copied() {
                Some(Color::White) => {
                    color.insert(next, Color::Grey);
                    stack.push((next, 0));
                    path.push(next);
                }
                Some(Color::Grey) => {
                    let pos = path.iter().position(|n| *n == next).unwrap_or(0);
                    let mut cycle: Vec<String> =
                        path[pos..].iter().map(|s| (*s).to_owned()).collect();
                    let min = cycle
                        .iter()
                        .enumerate()
                        .min_by(|a, b| a.1.cmp(b.1))
                        .map_or(0, |(i, _)| i);
                    cycle.rotate_left(min);
                    cycle.push(cycle[0].clone());
                    found.insert(cycle);
                }
                _ => {}
            }
        }
    }
    found.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &str)]) -> BTreeMap<String, Vec<String>> {
        let mut g: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().push((*b).into());
            g.entry((*b).into()).or_default();
        }
        g
    }

    #[test]
    fn cycle_through_spells_the_path() {
        let g = graph(&[("G1", "G3"), ("G2", "G1")]);
        let mut deps = |n: &str| g.get(n).cloned();
        assert_eq!(
            cycle_through("G3", "G2", &mut deps),
            Some(vec!["G3".into(), "G2".into(), "G1".into(), "G3".into()])
        );
        assert_eq!(
            cycle_through("G1", "G2", &mut deps),
            Some(vec!["G1".into(), "G2".into(), "G1".into()])
        );
        assert_eq!(cycle_through("G2", "G3", &mut deps), None);
        assert_eq!(
            cycle_through("A", "A", &mut deps),
            Some(vec!["A".into(), "A".into()])
        );
    }

    #[test]
    fn find_cycles_finds_them_all() {
        let g = graph(&[("A", "B"), ("B", "A"), ("C", "C"), ("D", "E")]);
        assert_eq!(
            find_cycles(&g),
            vec![
                vec!["A".to_owned(), "B".into(), "A".into()],
                vec!["C".to_owned(), "C".into()]
            ]
        );
    }
}
