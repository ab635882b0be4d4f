//! Untrusted sizes and counts at the command line: YAML alias bombs, huge counts, huge
//! titles, descriptions, tag lists and batches are each refused quickly, with bounded memory
//! (the child runs under a 512 MiB address-space cap, and its peak resident set is sampled),
//! before anything is filed or reserved; whatever `file` accepts, every reader can read.

use std::path::Path;
use std::time::Duration;

use crate::util::{Guard, Guarded, Repo, run_guarded};

/// `RLIMIT_AS` of every child: an allocation in proportion to an untrusted number fails.
const ADDRESS_SPACE: u64 = 512 << 20;
/// Largest peak resident set a refusal may reach, in KiB.
const MAX_PEAK_KIB: u64 = 256 << 10;
/// Largest file the registry may hold (what every reader accepts).
const MAX_REGISTRY_FILE: u64 = 1 << 20;

/// Runs `gapreg ARGS` in `repo` under the address-space cap, sampling its memory.
fn capped(repo: &Repo, args: &[&str], stdin: Option<&[u8]>, timeout: Duration) -> Guarded {
    run_guarded(
        &Guard {
            dir: repo.path(),
            home: repo.path(),
            timeout,
            address_space: Some(ADDRESS_SPACE),
            stdin,
            watch_memory: true,
        },
        args,
    )
}

/// What a refusal must leave as it was: the gaps, the id counters, the loops.
fn state(repo: &Repo) -> String {
    ["list", "ids list", "loop list"]
        .iter()
        .map(|args| {
            let args: Vec<&str> = std::iter::once("--json").chain(args.split(' ')).collect();
            repo.run(&args).ok()
        })
        .collect()
}

/// Every file below `dir` larger than the registry limit.
fn oversized(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read registry") {
        let entry = entry.expect("entry");
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            out.extend(oversized(&entry.path()));
        } else if meta.len() > MAX_REGISTRY_FILE {
            out.push(format!("{} ({} bytes)", entry.path().display(), meta.len()));
        }
    }
    out
}

/// One input that must be refused.
struct Refused {
    name: &'static str,
    args: Vec<String>,
    /// Written to `input.yaml` in the repository first (for `--batch input.yaml`).
    batch: Option<Vec<u8>>,
    stdin: Option<Vec<u8>>,
    /// Allowed exit codes: invalid input, or a usage error for what clap refuses itself.
    codes: &'static [i32],
    /// The error must say what is wrong.
    needle: &'static str,
    /// Within this long (a debug build; an unbounded expansion takes minutes or aborts).
    secs: u64,
}

fn refused(
    name: &'static str,
    args: &[&str],
    codes: &'static [i32],
    needle: &'static str,
) -> Refused {
    Refused {
        name,
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        batch: None,
        stdin: None,
        codes,
        needle,
        secs: 5,
    }
}

fn batch(name: &'static str, yaml: String, needle: &'static str, secs: u64) -> Refused {
    Refused {
        batch: Some(yaml.into_bytes()),
        secs,
        ..refused(name, &["file", "--batch", "input.yaml"], &[3], needle)
    }
}

/// Classic nested aliases: `levels` levels of `width` aliases each, below a string, inside
/// an entry's tags (so only the alias budget, not a type check, can stop the expansion).
fn nested_bomb(levels: usize, width: usize) -> String {
    let mut yaml = String::from(
        "- title: t\n  prefix: OP\n  type: &a0 \"xxxxxxxxxx\"\n- title: u\n  prefix: OP\n  tags:\n",
    );
    for level in 1..=levels {
        let refs = vec![format!("*a{}", level - 1); width].join(", ");
        yaml.push_str(&format!("    - &a{level} [{refs}]\n"));
    }
    yaml
}

/// A well-typed bomb: an entry whose 200 tags alias one 4000-byte string, repeated 5000
/// times by alias (4 GB of gap files if expanded, from 30 KB).
fn typed_bomb() -> String {
    let mut yaml = format!(
        "- &e\n  title: t\n  prefix: OP\n  description: &d \"{}\"\n  tags: [{}]\n",
        "y".repeat(4000),
        vec!["*d"; 200].join(", ")
    );
    for _ in 0..5000 {
        yaml.push_str("- *e\n");
    }
    yaml
}

/// A batch of one entry with `field: value` (a quoted YAML string).
fn one_entry(field: &str, value: &str) -> String {
    format!("- title: t\n  prefix: OP\n  {field}: \"{value}\"\n")
}

#[test]
fn bombs_huge_counts_and_huge_inputs_are_refused_quickly_with_bounded_memory() {
    let repo = Repo::new();
    repo.run(&["loop", "new", "LOOP-1", "--objective", "o"])
        .ok();
    repo.run(&["file", "--prefix", "OP", "--title", "kept"])
        .ok();
    let long_title = "T".repeat(100 << 10);
    let long_prefix = "P".repeat(100 << 10);
    let cases = vec![
        batch("alias bomb 9x10", nested_bomb(9, 10), "alias", 5),
        batch("alias bomb 5x100", nested_bomb(5, 100), "alias", 5),
        batch("typed alias bomb", typed_bomb(), "alias", 5),
        batch(
            "1 MiB + 1 title",
            one_entry("title", &"T".repeat((1 << 20) + 1)).replacen("title: t\n  ", "", 1),
            "title",
            20,
        ),
        batch(
            "2 MiB description",
            one_entry("description", &"d".repeat(2 << 20)),
            "description",
            20,
        ),
        batch(
            "20000 entries",
            "- {title: t, prefix: OP}\n".repeat(20_000),
            "20000",
            20,
        ),
        batch(
            "100 MB of whitespace",
            " ".repeat(100_000_000),
            "larger than",
            5,
        ),
        Refused {
            stdin: Some(vec![b' '; 100_000_000]),
            ..refused(
                "100 MB of whitespace on stdin",
                &["file", "--batch", "-"],
                &[3],
                "larger than",
            )
        },
        refused(
            "100 KiB title",
            &["file", "--prefix", "OP", "--title", &long_title],
            &[3],
            "title",
        ),
        refused(
            "100 KiB prefix",
            &["file", "--prefix", &long_prefix, "--title", "t"],
            &[3],
            "prefix",
        ),
        refused(
            "100 KiB prefix for ids",
            &["ids", "reserve", &long_prefix],
            &[3],
            "prefix",
        ),
        refused(
            "ids reserve 10^10",
            &["ids", "reserve", "SEC", "10000000000"],
            &[3],
            "10000000000",
        ),
        refused(
            "ids reserve u64::MAX",
            &["ids", "reserve", "SEC", "18446744073709551615"],
            &[3],
            "18446744073709551615",
        ),
        refused(
            "ids reserve u64::MAX + 1",
            &["ids", "reserve", "SEC", "18446744073709551616"],
            &[2, 3],
            "18446744073709551616",
        ),
        refused(
            "ids reserve GAP-OP 10^10",
            &["ids", "reserve", "GAP-OP", "10000000000"],
            &[3],
            "10000000000",
        ),
        refused(
            "gap id beyond u64",
            &["show", "GAP-OP-99999999999999999999999"],
            &[3, 4],
            "GAP-OP-99999999999999999999999",
        ),
        refused(
            "claim ttl of 10^14 days",
            &[
                "claim",
                "GAP-OP-1",
                "--agent",
                "A",
                "--ttl",
                "99999999999999d",
            ],
            &[2, 3],
            "99999999999999d",
        ),
        refused(
            "lease ttl of u64::MAX seconds",
            &[
                "lease",
                "acquire",
                "--holder",
                "h",
                "--dir",
                "src",
                "--ttl",
                "18446744073709551615s",
            ],
            &[2, 3],
            "18446744073709551615s",
        ),
        refused(
            "lock wait of 10^14 hours",
            &["--wait", "99999999999999h", "list"],
            &[2, 3],
            "99999999999999h",
        ),
    ];
    let before = state(&repo);
    let mut failures = Vec::new();
    let mut report = String::new();
    for case in &cases {
        if let Some(yaml) = &case.batch {
            std::fs::write(repo.path().join("input.yaml"), yaml).expect("write batch");
        }
        let args: Vec<&str> = case.args.iter().map(String::as_str).collect();
        let run = capped(&repo, &args, case.stdin.as_deref(), Duration::from_secs(60));
        let peak = run.peak_kib.unwrap_or(0);
        report.push_str(&format!(
            "{:<32} exit {:?} in {:?}, peak {} KiB\n",
            case.name,
            run.code(),
            run.elapsed,
            peak
        ));
        let mut bad = |what: String| failures.push(format!("{}: {what}", case.name));
        match run.code() {
            Ok(code) if case.codes.contains(&code) => {}
            Ok(code) => bad(format!("exit {code}, not {:?}: {}", case.codes, run.stderr)),
            Err(how) => bad(format!("{how}: {}", run.stderr)),
        }
        if !run.stderr.starts_with("error: ") || !run.stderr.contains(case.needle) {
            bad(format!(
                "the error does not say what is wrong ({:?}): {}",
                case.needle,
                run.stderr.chars().take(400).collect::<String>()
            ));
        }
        if run.elapsed > Duration::from_secs(case.secs) {
            bad(format!("took {:?} (limit {} s)", run.elapsed, case.secs));
        }
        if peak > MAX_PEAK_KIB {
            bad(format!("peak resident set {peak} KiB > {MAX_PEAK_KIB} KiB"));
        }
        let big = oversized(&repo.registry());
        if !big.is_empty() {
            bad(format!("registry files over 1 MiB: {big:?}"));
        }
        let now = state(&repo);
        if now != before {
            bad(format!(
                "the registry changed:\nbefore {before}\nafter  {now}"
            ));
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n\n{report}",
        failures.len(),
        failures.join("\n")
    );
    // Nothing was reserved on the way: the counters start where they were.
    assert_eq!(repo.run(&["ids", "reserve", "SEC"]).ok(), "SEC-1\n");
    assert_eq!(repo.run(&["next-id", "OP"]).ok(), "GAP-OP-2\n");
}

/// One input at or beyond a limit: refused (nothing filed), or filed and readable.
struct Edge {
    name: String,
    /// `file` arguments, or a batch (`file --batch input.yaml`).
    args: Vec<String>,
    batch: Option<String>,
    /// Beyond every sensible limit: must be refused.
    must_refuse: bool,
}

fn edge_batch(name: String, yaml: String, must_refuse: bool) -> Edge {
    Edge {
        name,
        args: ["file", "--batch", "input.yaml"].map(String::from).to_vec(),
        batch: Some(yaml),
        must_refuse,
    }
}

#[test]
fn whatever_file_accepts_every_reader_reads() {
    let repo = Repo::new();
    let mut edges = Vec::new();
    for len in [300, 301, 64 << 10] {
        edges.push(Edge {
            name: format!("title of {len} bytes"),
            args: ["file", "--prefix", "OP", "--title", &"T".repeat(len)]
                .map(String::from)
                .to_vec(),
            batch: None,
            must_refuse: false,
        });
    }
    edges.push(Edge {
        name: "description of 120 KiB on the command line".into(),
        args: [
            "file",
            "--prefix",
            "OP",
            "--title",
            "t",
            "--description",
            &"d".repeat(120 << 10),
        ]
        .map(String::from)
        .to_vec(),
        batch: None,
        must_refuse: false,
    });
    for len in [
        200 << 10,
        256 << 10,
        (256 << 10) + 1,
        (1 << 20) - 200,
        1 << 20,
    ] {
        edges.push(edge_batch(
            format!("description of {len} bytes"),
            one_entry("description", &"d".repeat(len)),
            len >= 1 << 20,
        ));
    }
    // Each field within its own limit, together over the 1 MiB a gap file may hold.
    for (tags, len) in [(256, 1 << 10), (70, 16 << 10), (256, 16 << 10), (257, 8)] {
        let list = vec![format!("\"{}\"", "g".repeat(len)); tags].join(", ");
        edges.push(edge_batch(
            format!("{tags} tags of {len} bytes"),
            format!("- title: t\n  prefix: OP\n  tags: [{list}]\n"),
            tags * len > 1 << 20,
        ));
    }
    edges.push(edge_batch(
        "a description, a plan, a type and tags at their largest".into(),
        format!(
            "- title: t\n  prefix: OP\n  description: \"{}\"\n  plan: \"{}\"\n  type: \"{}\"\n  \
             tags: [{}]\n",
            "d".repeat(256 << 10),
            "p".repeat(16 << 10),
            "y".repeat(16 << 10),
            vec![format!("\"{}\"", "g".repeat(16 << 10)); 64].join(", ")
        ),
        true,
    ));
    let mut failures = Vec::new();
    let mut report = String::new();
    for edge in &edges {
        if let Some(yaml) = &edge.batch {
            std::fs::write(repo.path().join("input.yaml"), yaml).expect("write batch");
        }
        let before = state(&repo);
        let args: Vec<&str> = edge.args.iter().map(String::as_str).collect();
        let run = capped(&repo, &args, None, Duration::from_secs(60));
        report.push_str(&format!(
            "{:<58} exit {:?} in {:?}, peak {:?} KiB\n",
            edge.name,
            run.code(),
            run.elapsed,
            run.peak_kib
        ));
        let mut bad = |what: String| failures.push(format!("{}: {what}", edge.name));
        match run.code() {
            Ok(0) if edge.must_refuse => bad(format!("filed: {}", run.stdout.trim())),
            Ok(0) => {
                let id = run
                    .stdout
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_owned();
                for read in [
                    vec!["show", id.as_str()],
                    vec!["list"],
                    vec!["ready"],
                    vec!["render"],
                    vec!["doctor"],
                ] {
                    let r = capped(&repo, &read, None, Duration::from_secs(60));
                    if r.code() != Ok(0) {
                        bad(format!(
                            "filed {id}, then `gapreg {}` exits {:?}: {}",
                            read.join(" "),
                            r.code(),
                            r.stderr.chars().take(300).collect::<String>()
                        ));
                    }
                }
            }
            Ok(3) => {
                if state(&repo) != before {
                    bad("refused, but the registry changed".into());
                }
                if !run.stderr.starts_with("error: ") {
                    bad(format!("unclear refusal: {}", run.stderr));
                }
            }
            other => bad(format!("{other:?}: {}", run.stderr)),
        }
        let big = oversized(&repo.registry());
        if !big.is_empty() {
            bad(format!("registry files over 1 MiB: {big:?}"));
        }
    }
    println!("{report}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}\n\n{report}",
        failures.len(),
        failures.join("\n")
    );
}
