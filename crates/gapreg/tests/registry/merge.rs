//! The merge driver's core (`gapreg::merge`): a property test over random pairs of edits of
//! one gap against a reference three-way merge of the field map written here, independently
//! of the crate's, plus the cases a property does not reach (add/add, damage, loop files).

use std::collections::BTreeSet;

use gapreg::merge::{ConflictKind, Merge, Side, merge_gap, merge_loop};
use gapreg::{Gap, Severity, Status, Timestamp, gap_to_yaml, parse_gap_yaml};
use proptest::prelude::*;

const BASE: &str = "id: GAP-OP-7\nseq: 7\nrev: 3\ntitle: alpha\nseverity: high\nstatus: open\n\
                    created_at: 2026-01-01T00:00:00Z\nupdated_at: 2026-01-02T00:00:00Z\n";

fn base_gap() -> Gap {
    parse_gap_yaml(BASE.as_bytes()).expect("base gap parses")
}

const WORDS: &[&str] = &["alpha", "beta", "gamma"];
const TAGS: &[&str] = &["api", "cli", "docs", "perf", "ux"];
const DEPS: &[&str] = &["GAP-OP-1", "GAP-OP-2", "GAP-OP-3", "LOOP-A"];

/// One change an agent makes to a gap.
#[derive(Debug, Clone)]
enum Edit {
    Title(usize),
    Type(usize),
    Severity(usize),
    Status(usize),
    ParentLoop(Option<usize>),
    Plan(Option<usize>),
    Claim(Option<usize>),
    Description(usize),
    CompletedAt(Option<u64>),
    AddTag(usize),
    RemoveTag(usize),
    AddDep(usize),
    RemoveDep(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let w = 0..WORDS.len();
    prop_oneof![
        w.clone().prop_map(Edit::Title),
        w.clone().prop_map(Edit::Type),
        (0..Severity::ALL.len()).prop_map(Edit::Severity),
        (0..Status::ALL.len()).prop_map(Edit::Status),
        prop::option::of(w.clone()).prop_map(Edit::ParentLoop),
        prop::option::of(w.clone()).prop_map(Edit::Plan),
        prop::option::of(w.clone()).prop_map(Edit::Claim),
        w.prop_map(Edit::Description),
        prop::option::of(0u64..3).prop_map(Edit::CompletedAt),
        (0..TAGS.len()).prop_map(Edit::AddTag),
        (0..TAGS.len()).prop_map(Edit::RemoveTag),
        (0..DEPS.len()).prop_map(Edit::AddDep),
        (0..DEPS.len()).prop_map(Edit::RemoveDep),
    ]
}

fn add(list: &mut Vec<String>, item: &str) {
    if !list.iter().any(|x| x == item) {
        list.push(item.to_owned());
    }
}

fn apply(gap: &mut Gap, e: &Edit) {
    let word = |i: usize| WORDS[i].to_owned();
    match *e {
        Edit::Title(i) => gap.title = word(i),
        Edit::Type(i) => gap.gap_type = word(i),
        Edit::Severity(i) => gap.severity = Severity::ALL[i],
        Edit::Status(i) => gap.status = Status::ALL[i],
        Edit::ParentLoop(i) => gap.parent_loop = i.map(|i| format!("LOOP-{}", WORDS[i])),
        Edit::Plan(i) => gap.plan = i.map(|i| format!("plans/{}.md", WORDS[i])),
        Edit::Claim(i) => {
            gap.claimed_by = i.map(|i| format!("CC-{i}"));
            gap.claimed_at = i.map(|i| Timestamp::from_unix(1_800_000_000 + i as u64));
        }
        Edit::Description(i) => gap.description = format!("{}\n\nmore: {i}\n", WORDS[i]),
        Edit::CompletedAt(t) => {
            gap.completed_at = t.map(|t| Timestamp::from_unix(1_900_000_000 + t))
        }
        Edit::AddTag(i) => add(&mut gap.tags, TAGS[i]),
        Edit::RemoveTag(i) => gap.tags.retain(|t| t != TAGS[i]),
        Edit::AddDep(i) => add(&mut gap.depends_on, DEPS[i]),
        Edit::RemoveDep(i) => gap.depends_on.retain(|t| t != DEPS[i]),
    }
}

/// A branch's version: the edits applied, and (if there were any) `rev` bumped and
/// `updated_at` moved as the registry does.
fn branch(base: &Gap, edits: &[Edit], revs: u64, secs: u64) -> Gap {
    let mut gap = base.clone();
    if edits.is_empty() {
        return gap;
    }
    for e in edits {
        apply(&mut gap, e);
    }
    gap.rev += revs;
    gap.updated_at = Timestamp::from_unix(gap.updated_at.unix() + secs);
    gap
}

/// The reference: a three-way merge of the field map, field by field.
fn reference(a: &Gap, o: &Gap, t: &Gap) -> Result<Gap, BTreeSet<&'static str>> {
    if o == a {
        return Ok(t.clone());
    }
    if t == a || o == t {
        return Ok(o.clone());
    }
    let mut m = o.clone();
    let mut conflicts = BTreeSet::new();
    macro_rules! scalars {
        ($($field:ident => $name:literal),* $(,)?) => {$(
            if o.$field != t.$field {
                if o.$field == a.$field {
                    m.$field = t.$field.clone();
                } else if t.$field != a.$field {
                    conflicts.insert($name);
                }
            }
        )*};
    }
    scalars!(
        id => "id", seq => "seq", title => "title", gap_type => "type",
        severity => "severity", status => "status", parent_loop => "parent_loop",
        claimed_by => "claimed_by", claimed_at => "claimed_at",
        claim_expires_at => "claim_expires_at", status_before_claim => "status_before_claim",
        plan => "plan", created_at => "created_at", completed_at => "completed_at",
        description => "description",
    );
    m.tags = reference_sets(&a.tags, &o.tags, &t.tags);
    m.depends_on = reference_sets(&a.depends_on, &o.depends_on, &t.depends_on);
    m.rev = o.rev.max(t.rev) + 1;
    m.updated_at = o.updated_at.max(t.updated_at);
    if conflicts.is_empty() {
        Ok(m)
    } else {
        Err(conflicts)
    }
}

/// Membership: in the result iff (kept by ours and not removed by theirs) or added by theirs;
/// ours' order first.
fn reference_sets(a: &[String], o: &[String], t: &[String]) -> Vec<String> {
    let a: BTreeSet<&String> = a.iter().collect();
    let os: BTreeSet<&String> = o.iter().collect();
    let ts: BTreeSet<&String> = t.iter().collect();
    let keep = |x: &&String| ts.contains(x) || !a.contains(x);
    let mut out: Vec<String> = o.iter().filter(keep).cloned().collect();
    out.extend(
        t.iter()
            .filter(|x| !os.contains(x) && !a.contains(x))
            .cloned(),
    );
    out
}

fn yaml(gap: &Gap) -> Vec<u8> {
    gap_to_yaml(gap).expect("serialize").into_bytes()
}

/// The merge as the reference's type: the merged gap, or the conflicting field names.
fn merged(a: &Gap, o: &Gap, t: &Gap) -> Result<Gap, BTreeSet<String>> {
    match merge_gap(Some(&yaml(a)), &yaml(o), &yaml(t)) {
        Merge::Clean(text) => Ok(parse_gap_yaml(text.as_bytes()).expect("merged gap parses")),
        Merge::Conflict(c) => {
            assert!(matches!(c.kind, ConflictKind::Fields(_)), "{c}");
            let fields: BTreeSet<String> = c.fields().into_iter().map(str::to_owned).collect();
            let marked = c.render(7);
            for f in &fields {
                let label = format!("<<<<<<< ours: {f} changed on both branches");
                assert!(marked.contains(&label), "{label:?} not in {marked}");
            }
            Err(fields)
        }
    }
}

fn sorted(mut g: Gap) -> Gap {
    g.tags.sort();
    g.depends_on.sort();
    g
}

fn base_strategy() -> impl Strategy<Value = Gap> {
    (
        prop::sample::subsequence(TAGS.to_vec(), 0..=3),
        prop::sample::subsequence(DEPS.to_vec(), 0..=2),
        prop::option::of(0..WORDS.len()),
    )
        .prop_map(|(tags, deps, plan)| {
            let mut g = base_gap();
            g.tags = tags.into_iter().map(str::to_owned).collect();
            g.depends_on = deps.into_iter().map(str::to_owned).collect();
            g.plan = plan.map(|i| format!("plans/{}.md", WORDS[i]));
            g
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, failure_persistence: None, ..ProptestConfig::default() })]

    /// The merge equals the reference, conflicts exactly when one scalar field got two
    /// different new values, and is symmetric up to list order.
    #[test]
    fn merge_matches_the_reference(
        base in base_strategy(),
        ours_edits in prop::collection::vec(edit(), 0..5),
        theirs_edits in prop::collection::vec(edit(), 0..5),
        (ours_revs, theirs_revs) in (1u64..4, 1u64..4),
        (ours_secs, theirs_secs) in (0u64..5000, 0u64..5000),
    ) {
        let o = branch(&base, &ours_edits, ours_revs, ours_secs);
        let t = branch(&base, &theirs_edits, theirs_revs, theirs_secs);
        let expected = reference(&base, &o, &t)
            .map_err(|c| c.into_iter().map(str::to_owned).collect::<BTreeSet<_>>());
        let got = merged(&base, &o, &t);
        prop_assert_eq!(&got, &expected);

        let swapped = merged(&base, &t, &o);
        match (&got, &swapped) {
            (Ok(g), Ok(s)) => prop_assert_eq!(sorted(g.clone()), sorted(s.clone())),
            (Err(g), Err(s)) => prop_assert_eq!(g, s),
            _ => prop_assert!(false, "asymmetric: {:?} vs {:?}", got, swapped),
        }
    }

    /// Merging never panics on arbitrary bytes, and a side that is not a gap is a conflict
    /// naming that side — never a silent pick.
    #[test]
    fn damaged_input_is_a_conflict(junk in prop::collection::vec(any::<u8>(), 0..200)) {
        prop_assume!(parse_gap_yaml(&junk).is_err());
        let good = BASE.as_bytes();
        for (a, o, t, side) in [
            (good, &junk[..], good, Side::Ours),
            (good, good, &junk[..], Side::Theirs),
            (&junk[..], good, good, Side::Ancestor),
        ] {
            match merge_gap(Some(a), o, t) {
                Merge::Conflict(c) => {
                    prop_assert!(matches!(&c.kind, ConflictKind::Damaged { side: s, .. } if *s == side), "{}", c);
                }
                Merge::Clean(text) => prop_assert!(false, "merged damaged input into {:?}", text),
            }
        }
        let _ = merge_loop(Some(&junk), &junk, good);
    }
}

#[test]
fn different_fields_merge_and_rev_is_one_more_than_the_larger_side() {
    let a = base_gap();
    let mut o = a.clone();
    o.status = Status::Ready;
    o.rev = 4;
    o.updated_at = Timestamp::from_unix(1_900_000_000);
    let mut t = a.clone();
    t.depends_on.push("GAP-OP-1".into());
    t.rev = 6;
    t.updated_at = Timestamp::from_unix(1_800_000_000);
    let g = merged(&a, &o, &t).expect("clean");
    assert_eq!(g.status, Status::Ready);
    assert_eq!(g.depends_on, ["GAP-OP-1"]);
    assert_eq!(g.rev, 7);
    assert_eq!(g.updated_at, o.updated_at);
}

#[test]
fn tags_added_on_both_sides_and_removed_on_one_merge_as_sets() {
    let mut a = base_gap();
    a.tags = vec!["api".into(), "cli".into()];
    let mut o = a.clone();
    o.tags = vec!["cli".into(), "perf".into()]; // removed api, added perf
    o.rev += 1;
    let mut t = a.clone();
    t.tags = vec!["api".into(), "cli".into(), "ux".into(), "perf".into()];
    t.rev += 1;
    assert_eq!(
        merged(&a, &o, &t).expect("clean").tags,
        ["cli", "perf", "ux"]
    );
}

#[test]
fn the_same_field_changed_twice_names_it_with_both_values() {
    let a = base_gap();
    let (mut o, mut t) = (a.clone(), a.clone());
    o.title = "Ours".into();
    t.title = "Theirs".into();
    t.status = Status::Blocked;
    let Merge::Conflict(c) = merge_gap(Some(&yaml(&a)), &yaml(&o), &yaml(&t)) else {
        panic!("conflict expected")
    };
    assert_eq!(c.fields(), ["title"]);
    let message = c.to_string();
    assert!(
        message.contains(
            r#"title changed on both branches (was "alpha", ours "Ours", theirs "Theirs")"#
        ),
        "{message}"
    );
    let marked = c.render(7);
    assert!(
        marked.contains(
            "<<<<<<< ours: title changed on both branches\ntitle: Ours\n||||||| common ancestor\ntitle: alpha\n=======\ntitle: Theirs\n>>>>>>> theirs\n"
        ),
        "{marked}"
    );
    // Everything else is merged: their status is in the file.
    assert!(marked.contains("status: blocked\n"), "{marked}");
    assert!(c.render(9).contains("<<<<<<<<< ours"));
}

#[test]
fn both_branches_filing_the_same_id_is_a_conflict_naming_both_titles_and_the_fix() {
    let mut o = base_gap();
    o.title = "Lock contention".into();
    let mut t = base_gap();
    t.title = "No --parent-loop flag".into();
    let Merge::Conflict(c) = merge_gap(None, &yaml(&o), &yaml(&t)) else {
        panic!("add/add conflict expected")
    };
    let message = c.to_string();
    for needle in [
        "both branches filed GAP-OP-7",
        "\"Lock contention\"",
        "\"No --parent-loop flag\"",
        "gapreg doctor",
        "re-file",
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    let marked = c.render(7);
    assert!(
        marked.starts_with("<<<<<<< ours: both branches filed GAP-OP-7"),
        "{marked}"
    );
    assert!(
        marked.contains("title: Lock contention\n")
            && marked.contains("title: No --parent-loop flag\n")
    );
    // The same file added on both sides is no conflict.
    assert_eq!(
        merge_gap(None, &yaml(&o), &yaml(&o)),
        Merge::Clean(String::from_utf8(yaml(&o)).expect("utf-8"))
    );
}

#[test]
fn an_unchanged_side_yields_the_other_side_byte_for_byte() {
    let a = BASE.as_bytes();
    let o = BASE.replace("title: alpha", "title: beta   # a comment");
    assert_eq!(merge_gap(Some(a), o.as_bytes(), a), Merge::Clean(o.clone()));
    assert_eq!(merge_gap(Some(a), a, o.as_bytes()), Merge::Clean(o));
}

const LOOP: &str = "---\nloop_id: LOOP-A\ncreated: 2026-02-28\nstatus: active\nowner: \"@ana\"\n\
                    # who cares\nobjective: \"Make it: fast\"\ndepends_on: [LOOP-B]\n---\n\n# Loop A\n\nSteps.\n";

#[test]
fn loop_front_matter_merges_by_key_and_keeps_the_writing() {
    let ours = LOOP.replace("status: active", "status: closed");
    let theirs = LOOP
        .replace("depends_on: [LOOP-B]", "depends_on: [LOOP-B, LOOP-C]")
        .replace("Steps.", "Steps, more.");
    let Merge::Clean(text) = merge_loop(Some(LOOP.as_bytes()), ours.as_bytes(), theirs.as_bytes())
    else {
        panic!("clean merge expected")
    };
    assert_eq!(
        text,
        LOOP.replace("status: active", "status: closed")
            .replace("depends_on: [LOOP-B]", "depends_on: [LOOP-B, LOOP-C]")
            .replace("Steps.", "Steps, more.")
    );
    let l = gapreg::parse_loop(&text).expect("merged loop parses");
    assert_eq!(l.depends_on, ["LOOP-B", "LOOP-C"]);
}

#[test]
fn loop_dependencies_merge_as_sets_when_both_sides_change_them() {
    let ours = LOOP.replace("depends_on: [LOOP-B]", "depends_on: [LOOP-B, LOOP-D]");
    let theirs = LOOP.replace("depends_on: [LOOP-B]", "depends_on: [LOOP-C]");
    let Merge::Clean(text) = merge_loop(Some(LOOP.as_bytes()), ours.as_bytes(), theirs.as_bytes())
    else {
        panic!("clean merge expected")
    };
    let l = gapreg::parse_loop(&text).expect("merged loop parses");
    assert_eq!(l.depends_on, ["LOOP-D", "LOOP-C"]);
    assert!(text.ends_with("---\n\n# Loop A\n\nSteps.\n"), "{text}");
}

#[test]
fn loop_bodies_changed_on_both_sides_and_clashing_keys_conflict() {
    let ours = LOOP
        .replace("Steps.", "Our steps.")
        .replace("status: active", "status: closed");
    let theirs = LOOP
        .replace("Steps.", "Their steps.")
        .replace("status: active", "status: done");
    let Merge::Conflict(c) = merge_loop(Some(LOOP.as_bytes()), ours.as_bytes(), theirs.as_bytes())
    else {
        panic!("conflict expected")
    };
    assert_eq!(c.fields(), ["status", gapreg::merge::BODY_FIELD]);
    let marked = c.render(7);
    assert!(
        marked.contains("<<<<<<< ours: status changed on both branches\nstatus: closed\n"),
        "{marked}"
    );
    assert!(
        marked.contains("<<<<<<< ours: (body) changed on both branches\n"),
        "{marked}"
    );
    assert!(marked.contains("Our steps.") && marked.contains("Their steps."));
    // A loop whose front matter is not strict YAML is never merged silently.
    let loose = LOOP.replace("objective: \"Make it: fast\"", "objective: a: b: c");
    let Merge::Conflict(c) = merge_loop(Some(LOOP.as_bytes()), loose.as_bytes(), theirs.as_bytes())
    else {
        panic!("conflict expected")
    };
    assert!(
        matches!(
            c.kind,
            ConflictKind::Damaged {
                side: Side::Ours,
                ..
            }
        ),
        "{c}"
    );
    // Both branches added the same loop id.
    let Merge::Conflict(c) = merge_loop(None, ours.as_bytes(), theirs.as_bytes()) else {
        panic!("add/add conflict expected")
    };
    assert!(c.to_string().contains("both branches filed LOOP-A"), "{c}");
}

#[test]
fn gitattributes_lines_are_added_once() {
    use std::path::Path;
    let lines =
        gapreg::merge::attribute_lines(Path::new(".gapreg"), Some(Path::new(".gapreg/../scopes")))
            .expect("lines");
    assert_eq!(
        lines,
        [
            ".gapreg/gaps/*.yaml merge=gapreg",
            "scopes/*.md merge=gapreg"
        ]
    );
    let once = gapreg::merge::with_attribute_lines("", &lines).expect("added");
    assert_eq!(gapreg::merge::with_attribute_lines(&once, &lines), None);
    assert!(gapreg::merge::attribute_lines(Path::new("my registry"), None).is_err());
    assert!(gapreg::merge::attribute_lines(Path::new("../outside"), None).is_err());
}
