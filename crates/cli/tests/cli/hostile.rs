//! Hostile text from the registry never reaches a terminal raw: titles, names, descriptions,
//! objectives, ids and error messages holding escape sequences, bells or bidi overrides are
//! shown as visible `\u{…}` escapes in every human output, while `--json` keeps them exact.

use crate::util::{Repo, Run};

/// Clears the screen, sets the window title, rings the bell.
const HOSTILE: &str = "\x1b[2J\x1b]0;pwned\x07";

/// What a terminal must never receive raw from data: controls other than newline and tab
/// (C0, DEL, C1), bidi controls, line and paragraph separators.
fn unsafe_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|&c| {
            (c.is_control() && c != '\n' && c != '\t')
                || matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}')
        })
        .collect()
}

/// Asserts that neither stdout nor stderr of `run` holds an unsafe character (checked on the
/// raw bytes too: no ESC, no BEL, no C1 control), and returns stdout.
fn safe(what: &str, run: &Run) -> String {
    for (stream, bytes) in [("stdout", &run.0.stdout), ("stderr", &run.0.stderr)] {
        assert!(
            !bytes.iter().any(|&b| b == 0x1b || b == 0x07),
            "{what}: raw ESC or BEL on {stream}: {:?}",
            String::from_utf8_lossy(bytes)
        );
        let text = String::from_utf8_lossy(bytes);
        let bad = unsafe_chars(&text);
        assert!(bad.is_empty(), "{what}: {bad:?} on {stream}: {text:?}");
    }
    run.stdout()
}

/// A registry full of hostile text: a loop objective, a claimed gap (title with a right-to-left
/// override, description, tag, agent name) and a ready gap.
fn hostile_repo() -> Repo {
    let repo = Repo::new();
    repo.run(&[
        "loop",
        "new",
        "LOOP-X",
        "--objective",
        &format!("obj{HOSTILE}"),
    ])
    .ok();
    let title = format!("T{HOSTILE}\u{202e}evil");
    let description = format!("line one\n{HOSTILE}line two\r\u{9b}31m");
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        &title,
        "--description",
        &description,
        "--tag",
        &format!("t{HOSTILE}"),
        "--parent-loop",
        "LOOP-X",
    ])
    .ok();
    repo.run(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        &format!("ready{HOSTILE}\r| forged |\trow"),
    ])
    .ok();
    let claimed = repo.run(&["claim", "GAP-OP-1", "--agent", &format!("CC{HOSTILE}")]);
    assert!(safe("claim", &claimed).contains("\\u{1b}[2J"));
    repo
}

#[test]
fn human_output_escapes_terminal_sequences_from_registry_data() {
    let repo = hostile_repo();

    let list = safe("list", &repo.run(&["list"]));
    assert!(
        list.contains("T\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{202e}evil"),
        "escaped visibly: {list}"
    );
    assert_eq!(list.lines().count(), 3, "{list}");
    assert!(
        list.contains("ready\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\u{d}| forged |\\u{9}row"),
        "a carriage return or tab in a title forges no row or cell: {list}"
    );

    let show = safe("show", &repo.run(&["show", "GAP-OP-1"]));
    assert!(
        show.contains("claimed by: CC\\u{1b}[2J") && show.contains("tags:       t\\u{1b}"),
        "{show}"
    );
    assert!(
        show.contains("line one\n\\u{1b}[2J\\u{1b}]0;pwned\\u{7}line two\\u{d}\\u{9b}31m"),
        "the description keeps its newline, nothing else: {show}"
    );

    let ready = safe("ready", &repo.run(&["ready"]));
    assert!(
        ready.contains("GAP-OP-2") && ready.contains("ready\\u{1b}"),
        "{ready}"
    );

    let render = safe("render", &repo.run(&["render"]));
    assert!(
        render.contains("T\\u{1b}[2J") && render.contains("obj\\u{1b}"),
        "{render}"
    );
    safe("render --out", &repo.run(&["render", "--out", "GAPS.md"]));
    let file = std::fs::read_to_string(repo.path().join("GAPS.md")).expect("GAPS.md");
    assert!(
        unsafe_chars(&file).is_empty(),
        "the rendered file is escaped too: {file:?}"
    );
    assert_eq!(file, render, "--out writes what stdout shows");

    for args in [
        &["loop", "list"][..],
        &["loop", "show", "LOOP-X"],
        &["summary"],
        &["doctor"],
        &["unclaim", "GAP-OP-1", "--agent", &format!("CC{HOSTILE}")],
    ] {
        let run = repo.run(args);
        assert_eq!(run.code(), 0, "{args:?}: {}", run.stderr());
        safe(&format!("{args:?}"), &run);
    }
    let loops = safe("loop list", &repo.run(&["loop", "list"]));
    assert!(loops.contains("obj\\u{1b}[2J"), "{loops}");
}

#[test]
fn error_messages_escape_terminal_sequences() {
    let repo = hostile_repo();
    // Named by the library in a conflict: the hostile agent holding the claim.
    let conflict = repo.run(&["claim", "GAP-OP-1", "--agent", "CC-2"]);
    conflict.fails(5, &["CC\\u{1b}[2J\\u{1b}]0;pwned\\u{7}"]);
    safe("claim conflict", &conflict);
    // An id echoed back in an error.
    let unknown = repo.run(&["show", &format!("GAP-OP-1{HOSTILE}")]);
    assert_eq!(unknown.code(), 3, "{}", unknown.stderr());
    safe("show unknown", &unknown);
    let status = repo.run(&["status", "GAP-OP-2", &format!("done{HOSTILE}")]);
    status.fails(3, &["done\\u{1b}"]);
    safe("status", &status);
    // A damaged gap file whose text is hostile: reported, escaped.
    std::fs::write(
        repo.registry().join("gaps/GAP-OP-2.yaml"),
        format!("id: GAP-OP-2\ntitle: [{HOSTILE}\n"),
    )
    .expect("damage");
    for args in [&["show", "GAP-OP-2"][..], &["doctor"], &["list"]] {
        let run = repo.run(args);
        assert_ne!(run.code(), 101, "{args:?} panicked: {}", run.stderr());
        safe(&format!("damaged, {args:?}"), &run);
    }
}

#[test]
fn json_output_keeps_hostile_text_exact() {
    let repo = hostile_repo();
    let gap = repo.run(&["--json", "show", "GAP-OP-1"]).json();
    assert_eq!(gap["title"], format!("T{HOSTILE}\u{202e}evil"));
    assert_eq!(gap["claimed_by"], format!("CC{HOSTILE}"));
    assert_eq!(
        gap["description"],
        format!("line one\n{HOSTILE}line two\r\u{9b}31m")
    );
    let render = repo.run(&["--json", "render"]).json();
    assert!(
        render["markdown"]
            .as_str()
            .is_some_and(|m| m.contains(&format!("T{HOSTILE}"))),
        "{render}"
    );
}

// ---------------------------------------------------------------------------------------------
// ---------------------------------------------------------------------------------------------
// Hostile repositories: a cloned repository whose `.gapreg/` holds links, FIFOs and entries of
// the wrong type at every path the tool opens, and every command run in it.
// ---------------------------------------------------------------------------------------------

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::util::{Guard, Guarded, Snapshot, git, run_guarded, snapshot};

/// Per command: a hang (a FIFO opened for reading, a lock never granted) ends the scenario.
const TIMEOUT: Duration = Duration::from_secs(20);
/// In every decoy file: seen in any output, a planted link was followed for reading.
const MARKER: &str = "VICTIM";
/// The exit codes a command may end with in a hostile repository (README: exit codes).
const DOCUMENTED: [i32; 5] = [0, 3, 4, 5, 6];

/// What belongs at a site.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Want {
    File,
    Dir,
}

/// What a site holds, for the readers that must report a plant there.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Doc {
    /// Registry state (config, ids, index, locks, staging, keys): `doctor` must report it.
    State,
    /// A gap file or the gaps directory: `list`, `ready`, `summary`, `render` and `doctor`
    /// must report it (exit 6), not drop it.
    Gap,
    /// A loop file or the loops directory: `loop list`, `render` and `doctor` must report it.
    Loop,
    /// Lease state, leaselock's: no reader is required to report it.
    LeaseState,
    /// A lease file: `lease list` must name it (its `corrupt` list).
    Lease,
}

/// A path below the repository where the tool opens something.
struct Site {
    path: &'static str,
    want: Want,
    doc: Doc,
}

const fn site(path: &'static str, want: Want, doc: Doc) -> Site {
    Site { path, want, doc }
}

/// Every path below the repository that some command opens, creates, locks or removes.
const SITES: &[Site] = &[
    site(".gapreg", Want::Dir, Doc::State),
    site(".gapreg/config.yaml", Want::File, Doc::State),
    site(".gapreg/.gitignore", Want::File, Doc::State),
    site(".gapreg/gaps", Want::Dir, Doc::Gap),
    site(".gapreg/gaps/GAP-OP-1.yaml", Want::File, Doc::Gap),
    // The next id `file` hands out: a planted link there must not be written through.
    site(".gapreg/gaps/GAP-OP-4.yaml", Want::File, Doc::Gap),
    site(".gapreg/loops", Want::Dir, Doc::Loop),
    site(".gapreg/loops/LOOP-1.md", Want::File, Doc::Loop),
    // The loop `loop new LOOP-2` creates.
    site(".gapreg/loops/LOOP-2.md", Want::File, Doc::Loop),
    site(".gapreg/ids", Want::Dir, Doc::State),
    site(".gapreg/ids/config.yaml", Want::File, Doc::State),
    site(".gapreg/ids/counters.log", Want::File, Doc::State),
    site(".gapreg/ids/counters.lock", Want::File, Doc::State),
    site(".gapreg/ids/counters.lock.queue", Want::Dir, Doc::State),
    site(".gapreg/index.log", Want::File, Doc::State),
    site(".gapreg/registry.lock", Want::File, Doc::State),
    site(".gapreg/registry.lock.queue", Want::Dir, Doc::State),
    site(
        ".gapreg/registry.lock.queue/waiters",
        Want::File,
        Doc::State,
    ),
    site(".gapreg/staging", Want::Dir, Doc::State),
    // A staged file of the batch `file --batch batch.yaml` writes (GAP-OP-5 and GAP-OP-6).
    site(".gapreg/staging/GAP-OP-5.yaml", Want::File, Doc::State),
    site(".gapreg/batch.pending", Want::File, Doc::State),
    site(".gapreg/keys", Want::Dir, Doc::State),
    site(".gapreg/leases", Want::Dir, Doc::LeaseState),
    site(".gapreg/leases/index.json", Want::File, Doc::LeaseState),
    site(".gapreg/leases/token.json", Want::File, Doc::LeaseState),
    site(".gapreg/leases/generation", Want::File, Doc::LeaseState),
    site(".gapreg/leases/lock", Want::File, Doc::LeaseState),
    site(".gapreg/leases/lock.queue", Want::Dir, Doc::LeaseState),
    // A lease someone else holds, and the file the next `lease acquire --holder h` writes.
    // In a git work tree (as here) the leases live under `.git/gapreg/`, which no repository
    // can plant: a plant at the old place is never read, and `doctor` reports it.
    site(".gapreg/leases/1-a1.lease.json", Want::File, Doc::State),
    site(".gapreg/leases/1-h.lease.json", Want::File, Doc::State),
];

/// What is planted at a site.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Plant {
    /// A symlink to a directory of the decoy home (a registry-like one where there is one).
    LinkDir { relative: bool },
    /// A symlink to a file of the decoy home (valid-looking content where there is one).
    LinkFile { relative: bool },
    /// A symlink to a missing file in an existing directory of the decoy home.
    Dangling { relative: bool },
    /// A named pipe (made after the clone: git cannot commit one).
    Fifo,
    /// A directory where a file belongs, or a file where a directory belongs.
    WrongType,
}

impl Plant {
    fn name(self) -> String {
        let rel = |r: bool| if r { "rel" } else { "abs" };
        match self {
            Plant::LinkDir { relative } => format!("link-dir-{}", rel(relative)),
            Plant::LinkFile { relative } => format!("link-file-{}", rel(relative)),
            Plant::Dangling { relative } => format!("dangling-{}", rel(relative)),
            Plant::Fifo => "fifo".into(),
            Plant::WrongType => "wrong-type".into(),
        }
    }

    fn relative(self) -> bool {
        matches!(
            self,
            Plant::LinkDir { relative: true }
                | Plant::LinkFile { relative: true }
                | Plant::Dangling { relative: true }
        )
    }
}

/// How a command relates to the registry's state.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Role {
    /// A read whose stdout must equal the clean clone's while the states agree.
    Read,
    /// A read whose output holds times (lease expiries).
    Look,
    /// A change: once its outcome differs from the clean clone's, the states differ.
    Write,
}

/// A command run in the clone. `{lease}` is replaced by the id `lease acquire` printed.
struct Cmd {
    args: &'static [&'static str],
    stdin: Option<&'static [u8]>,
    role: Role,
    /// Lists every document of these kinds: must report a planted one.
    lists: &'static [Doc],
}

const fn read(args: &'static [&'static str], lists: &'static [Doc]) -> Cmd {
    Cmd {
        args,
        stdin: None,
        role: Role::Read,
        lists,
    }
}

const fn look(args: &'static [&'static str], lists: &'static [Doc]) -> Cmd {
    Cmd {
        args,
        stdin: None,
        role: Role::Look,
        lists,
    }
}

const fn write(args: &'static [&'static str]) -> Cmd {
    Cmd {
        args,
        stdin: None,
        role: Role::Write,
        lists: &[],
    }
}

const GAPS: &[Doc] = &[Doc::Gap];
const LOOPS: &[Doc] = &[Doc::Loop];
const ALL_DOCS: &[Doc] = &[Doc::Gap, Doc::Loop];
const DOCTOR: &[Doc] = &[Doc::Gap, Doc::Loop, Doc::State];
const LEASES: &[Doc] = &[Doc::Lease];

/// Every subcommand that touches a registry: the reads (compared with a clean clone), then
/// every kind of change, repair, and reads again.
const COMMANDS: &[Cmd] = &[
    read(&["list"], GAPS),
    read(&["show", "GAP-OP-1"], &[]),
    read(&["ready"], GAPS),
    read(&["summary"], GAPS),
    read(&["render"], ALL_DOCS),
    read(&["loop", "list"], LOOPS),
    read(&["loop", "show", "LOOP-1"], &[]),
    read(&["next-id", "OP"], &[]),
    read(&["ids", "peek", "SEC"], &[]),
    read(&["ids", "list"], &[]),
    look(&["lease", "list"], LEASES),
    read(&["doctor"], DOCTOR),
    write(&["init"]),
    write(&[
        "file",
        "--prefix",
        "OP",
        "--title",
        "filed",
        "--depends-on",
        "GAP-OP-1",
    ]),
    write(&["file", "--batch", "batch.yaml"]),
    write(&["file", "--title", "in loop", "--parent-loop", "LOOP-1"]),
    write(&["claim", "GAP-OP-3", "--agent", "A"]),
    write(&["unclaim", "GAP-OP-3", "--agent", "A"]),
    write(&["status", "GAP-OP-3", "ready"]),
    write(&["dep", "add", "GAP-OP-3", "--on", "GAP-OP-2"]),
    write(&["dep", "rm", "GAP-OP-3", "--on", "GAP-OP-2"]),
    write(&["claim", "GAP-OP-1", "--agent", "B", "--ttl", "1h"]),
    write(&["loop", "new", "LOOP-2", "--objective", "second"]),
    write(&["ids", "reserve", "SEC", "2"]),
    write(&["ids", "init", "."]),
    write(&[
        "lease", "acquire", "--holder", "h", "--dir", "src", "--ttl", "1h",
    ]),
    write(&["lease", "renew", "{lease}", "--holder", "h"]),
    write(&["lease", "release", "{lease}", "--holder", "h"]),
    write(&["lease", "sweep"]),
    look(&["--json", "lease", "list"], LEASES),
    write(&["render", "--out", "GAPS.md"]),
    Cmd {
        args: &["write", "--checksum", "notes.txt"],
        stdin: Some(b"notes\n"),
        role: Role::Write,
        lists: &[],
    },
    write(&["recover", ".gapreg"]),
    write(&["recover", ".gapreg/gaps"]),
    write(&["doctor", "--repair"]),
    read(&["doctor"], DOCTOR),
    read(&["list"], GAPS),
];

/// The scratch world of one test: a decoy home (hashed around every command), a directory
/// outside the repository, the origin repository and the clone, side by side so that a
/// relative link `../../home/...` from `.gapreg/x` reaches the home.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    home: PathBuf,
    outside: PathBuf,
    /// A pristine copy of `home`, to restore it after a command changed it (reported).
    template: PathBuf,
    origin: PathBuf,
    clone: PathBuf,
}

/// A decoy temp file named like a dead writer's: a follower's `recover` would remove it.
const DEAD_TEMP: &str = ".GAP-OP-1.yaml.4000000-0123456789abcdef.atomic-tmp";

impl World {
    /// A world whose origin holds a registry (`fresh == false`) or only a README and `src/`,
    /// for `init`.
    fn new(fresh: bool) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().canonicalize().expect("canonical tempdir");
        let world = World {
            home: root.join("home"),
            outside: root.join("outside"),
            template: root.join("home-template"),
            origin: root.join("origin"),
            clone: root.join("clone"),
            root,
            _tmp: tmp,
        };
        world.build_home();
        world.build_origin(fresh);
        world
    }

    /// Runs gapreg in `dir` with this world's home, asserting success.
    fn must(&self, dir: &Path, args: &[&str]) -> String {
        let run = self.run(dir, args, None);
        assert_eq!(
            run.code(),
            Ok(0),
            "setup {args:?} in {}: {}",
            dir.display(),
            run.stderr
        );
        run.stdout
    }

    fn run(&self, dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Guarded {
        run_guarded(
            &Guard {
                dir,
                home: &self.home,
                timeout: TIMEOUT,
                address_space: None,
                stdin,
                watch_memory: false,
            },
            args,
        )
    }

    /// The decoy home: `.ssh/id_ed25519`, `.bashrc`, and `proj/.gapreg`, a real registry
    /// with gaps, a loop, a lease and id counters, whose every directory also holds a dead
    /// writer's temp file and a note naming `SEC-9999` (and a staged gap, a key record), so
    /// that following a link into it and reading, scanning, recovering or repairing shows.
    fn build_home(&self) {
        let ssh = self.home.join(".ssh");
        std::fs::create_dir_all(&ssh).expect("home/.ssh");
        std::fs::write(
            ssh.join("id_ed25519"),
            format!("-----BEGIN OPENSSH PRIVATE KEY-----\n{MARKER} key\n"),
        )
        .expect("key");
        std::fs::write(self.home.join(".bashrc"), format!("# {MARKER} rc\n")).expect("rc");
        let proj = self.home.join("proj");
        std::fs::create_dir_all(proj.join("src")).expect("proj");
        self.must(&proj, &["init"]);
        self.must(
            &proj,
            &["loop", "new", "LOOP-1", "--objective", "VICTIM loop"],
        );
        for title in ["VICTIM one", "VICTIM two", "VICTIM three"] {
            self.must(&proj, &["file", "--prefix", "OP", "--title", title]);
        }
        self.must(&proj, &["ids", "reserve", "SEC", "3"]);
        self.must(
            &proj,
            &[
                "lease", "acquire", "--holder", "a1", "--dir", "src", "--ttl", "1h",
            ],
        );
        let reg = proj.join(".gapreg");
        std::fs::create_dir_all(reg.join("staging")).expect("staging");
        std::fs::create_dir_all(reg.join("keys")).expect("keys");
        let gap = std::fs::read(reg.join("gaps/GAP-OP-1.yaml")).expect("victim gap");
        std::fs::write(reg.join("staging/GAP-OP-5.yaml"), &gap).expect("staged");
        std::fs::write(reg.join("keys/k.json"), "{}").expect("key record");
        let mut dirs = vec![self.home.clone()];
        dirs.extend(walkdirs(&reg));
        for dir in dirs {
            std::fs::write(dir.join(DEAD_TEMP), &gap).expect("temp-like file");
            std::fs::write(dir.join("VICTIM-notes.md"), "see SEC-9999 and GAP-OP-999\n")
                .expect("notes");
        }
        std::fs::create_dir_all(&self.outside).expect("outside");
        std::fs::write(
            self.outside.join("LOOP-9.md"),
            std::fs::read(reg.join("loops/LOOP-1.md")).expect("victim loop"),
        )
        .expect("outside loop");
        std::fs::write(self.outside.join(DEAD_TEMP), &gap).expect("outside temp");
        copy_tree(&self.home, &self.template);
    }

    /// The origin: a repository with a registry (a loop, three gaps, reserved ids), a batch
    /// file and a source directory (`fresh`: only the source directory and a README),
    /// committed on branch `base` with nothing untracked left.
    fn build_origin(&self, fresh: bool) {
        let o = &self.origin;
        std::fs::create_dir_all(o.join("src")).expect("origin");
        git(o, &["init", "-q"]);
        std::fs::write(o.join("README.md"), "hostile\n").expect("readme");
        std::fs::write(o.join("src/lib.rs"), "\n").expect("src");
        std::fs::write(
            o.join("batch.yaml"),
            "- title: batch one\n  prefix: OP\n- title: batch two\n  prefix: OP\n",
        )
        .expect("batch");
        if fresh {
            git(o, &["add", "-A"]);
            git(o, &["commit", "-q", "-m", "base"]);
            git(o, &["branch", "-q", "base"]);
            return;
        }
        self.must(o, &["init"]);
        self.must(o, &["loop", "new", "LOOP-1", "--objective", "first"]);
        self.must(
            o,
            &[
                "file",
                "--prefix",
                "OP",
                "--title",
                "one",
                "--parent-loop",
                "LOOP-1",
            ],
        );
        self.must(
            o,
            &[
                "file",
                "--prefix",
                "OP",
                "--title",
                "two",
                "--depends-on",
                "GAP-OP-1",
            ],
        );
        self.must(o, &["file", "--prefix", "OP", "--title", "three"]);
        self.must(o, &["ids", "reserve", "SEC", "2"]);
        git(o, &["add", "-A"]);
        git(o, &["commit", "-q", "-m", "base"]);
        git(o, &["branch", "-q", "base"]);
        git(o, &["clean", "-q", "-f", "-d", "-x"]);
    }

    /// Puts the origin back to `base` on a fresh branch `scen`.
    fn reset_origin(&self) {
        // Every plant was committed, so nothing is left untracked to clean.
        git(
            &self.origin,
            &["checkout", "-q", "-f", "-B", "scen", "base"],
        );
    }

    /// Commits everything planted in the origin (forced past `.gitignore`).
    fn commit_origin(&self) {
        git(&self.origin, &["add", "-A", "-f", "--", "."]);
        git(&self.origin, &["commit", "-q", "-m", "plant"]);
    }

    /// `git clone --branch BRANCH origin clone`, replacing an earlier clone.
    fn clone_branch(&self, branch: &str) {
        remove_any(&self.clone);
        let origin = self.origin.to_str().expect("UTF-8 temp path");
        let clone = self.clone.to_str().expect("UTF-8 temp path");
        git(
            &self.root,
            &["clone", "-q", "--branch", branch, origin, clone],
        );
    }

    /// Everything outside the clone that a command could reach: the home, the outside
    /// directory, and the names at the top of the world.
    fn outside_state(&self) -> (Snapshot, Vec<String>) {
        let mut names: Vec<String> = std::fs::read_dir(&self.root)
            .expect("read world")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        (snapshot(&[&self.home, &self.outside]), names)
    }

    fn restore_home(&self) {
        remove_any(&self.home);
        copy_tree(&self.template, &self.home);
    }

    /// Where a link planted at `site` points: into `home/proj` at the same relative path
    /// when that has the right type there (so a follower finds valid-looking data), else the
    /// victim registry, the key, or a missing name next to the key; relative links go up
    /// from the link's directory to the world and down again.
    fn link_target(&self, site: &str, plant: Plant) -> PathBuf {
        let victim = self.home.join("proj").join(site);
        let flat = site.replace(['/', '.'], "_");
        let abs = match plant {
            Plant::LinkDir { .. } if victim.is_dir() => victim,
            Plant::LinkDir { .. } => self.home.join("proj/.gapreg"),
            Plant::LinkFile { .. } if victim.is_file() => victim,
            Plant::LinkFile { .. } => self.home.join(".ssh/id_ed25519"),
            Plant::Dangling { .. } => self.home.join(".ssh").join(format!("planted{flat}")),
            Plant::Fifo | Plant::WrongType => unreachable!("not a link"),
        };
        if !plant.relative() {
            return abs;
        }
        // One `..` per component of the site's parent, one more for the clone.
        let mut rel = PathBuf::new();
        for _ in Path::new(site).components() {
            rel.push("..");
        }
        rel.join(abs.strip_prefix(&self.root).expect("target in the world"))
    }
}

fn walkdirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).expect("read dir") {
        let entry = entry.expect("entry");
        if entry.file_type().expect("type").is_dir() {
            out.extend(walkdirs(&entry.path()));
        }
    }
    out
}

/// Copies a tree of plain files and directories (no links, no FIFOs).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("copy: mkdir");
    for entry in std::fs::read_dir(from).expect("copy: read dir") {
        let entry = entry.expect("copy: entry");
        let dest = to.join(entry.file_name());
        if entry.file_type().expect("copy: type").is_dir() {
            copy_tree(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy: file");
        }
    }
}

/// Removes whatever is at `path` (a link itself, never its target).
fn remove_any(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => std::fs::remove_dir_all(path).expect("remove dir"),
        Ok(_) => std::fs::remove_file(path).expect("remove"),
        Err(_) => {}
    }
}

/// Makes `plant` at `at` (a path in a work tree), replacing what is there.
fn make_plant(world: &World, site: &Site, plant: Plant, at: &Path) {
    remove_any(at);
    std::fs::create_dir_all(at.parent().expect("parent")).expect("plant parent");
    match plant {
        Plant::Fifo => {
            let out = std::process::Command::new("mkfifo")
                .arg(at)
                .output()
                .expect("mkfifo");
            assert!(out.status.success(), "mkfifo {}", at.display());
        }
        Plant::WrongType => match site.want {
            // git tracks no empty directory: one file inside.
            Want::File => {
                std::fs::create_dir(at).expect("dir in place of a file");
                std::fs::write(at.join("keep"), "planted\n").expect("keep");
            }
            Want::Dir => std::fs::write(at, "planted: not a directory\n").expect("file"),
        },
        _ => {
            std::os::unix::fs::symlink(world.link_target(site.path, plant), at).expect("plant link")
        }
    }
}

/// One command's run in the clean clone.
struct Base {
    code: i32,
    stdout: String,
}

/// The arguments of `cmd` with `{lease}` replaced.
fn expand(cmd: &Cmd, lease: &str) -> Vec<String> {
    cmd.args
        .iter()
        .map(|a| {
            if *a == "{lease}" {
                lease.to_owned()
            } else {
                (*a).to_owned()
            }
        })
        .collect()
}

/// The lease id `lease acquire` printed, else the one it would have printed.
fn lease_id(cmd: &Cmd, run: &Guarded, lease: &mut String) {
    if cmd.args.starts_with(&["lease", "acquire"]) && run.code() == Ok(0) {
        if let Some(id) = run.stdout.lines().next() {
            *lease = id.trim().to_owned();
        }
    }
}

/// A family of scenarios: the repository they start from and the commands run in it.
struct Suite {
    /// The origin holds no registry: the commands start with `init`.
    fresh: bool,
    commands: &'static [Cmd],
}

const IN_REGISTRY: Suite = Suite {
    fresh: false,
    commands: COMMANDS,
};

/// In a repository without a registry whose `.gapreg` is planted: `init`, then a little of
/// everything.
const IN_FRESH_REPO: Suite = Suite {
    fresh: true,
    commands: &[
        write(&["init"]),
        read(&["list"], GAPS),
        write(&["file", "--prefix", "OP", "--title", "first"]),
        write(&["loop", "new", "LOOP-1", "--objective", "first"]),
        write(&["ids", "reserve", "SEC", "1"]),
        write(&[
            "lease", "acquire", "--holder", "h", "--dir", "src", "--ttl", "1h",
        ]),
        read(&["doctor"], DOCTOR),
        write(&["doctor", "--repair"]),
        read(&["list"], GAPS),
    ],
};

/// Runs the suite's commands in the clean clone of `base`, checking that they are the happy
/// path the hostile runs are compared with (every command succeeds; `init` in a repository
/// that has a registry is exit 5).
fn baseline(world: &World, suite: &Suite) -> Vec<Base> {
    world.clone_branch("base");
    let mut lease = String::from("1-h");
    let mut out = Vec::new();
    for cmd in suite.commands {
        let args = expand(cmd, &lease);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let run = world.run(&world.clone, &args, cmd.stdin);
        let code = run
            .code()
            .unwrap_or_else(|e| panic!("baseline {args:?}: {e}"));
        let expected = if args == ["init"] && !suite.fresh {
            5
        } else {
            0
        };
        assert_eq!(code, expected, "baseline {args:?}: {}", run.stderr);
        lease_id(cmd, &run, &mut lease);
        out.push(Base {
            code,
            stdout: run.stdout,
        });
    }
    out
}

/// Makes a scenario's plant in a work tree (the origin's, or the clone's for a FIFO).
type Planter = Box<dyn Fn(&World, &Path) + Send + Sync>;

/// One hostile repository.
struct Scenario {
    name: String,
    plant: Planter,
    /// Planted after the clone (git cannot carry it).
    after_clone: bool,
    /// Paths (relative to the clone) that must stay exactly as planted.
    keep: Vec<&'static str>,
    /// A refusal caused by the plant must name one of these...
    names: Vec<&'static str>,
    /// ...and exit with one of these.
    refusals: &'static [i32],
    /// What the plant stands for, for the readers that must report it.
    doc: Option<Doc>,
}

/// A refusal of a planted entry: corrupt data on disk.
const CORRUPT: &[i32] = &[6];

/// `plant` at `site`.
fn at_site(site: &'static Site, plant: Plant) -> Scenario {
    Scenario {
        name: format!("{} {}", plant.name(), site.path),
        plant: Box::new(move |w: &World, tree: &Path| {
            make_plant(w, site, plant, &tree.join(site.path));
        }),
        after_clone: plant == Plant::Fifo,
        keep: vec![site.path],
        names: vec![site.path],
        refusals: CORRUPT,
        doc: Some(site.doc),
    }
}

/// What a refused change must leave as it was in the clone, read without following a link:
/// the id counters' bytes and the names of the gap and loop files.
fn trace(clone: &Path) -> Vec<String> {
    let reg = clone.join(".gapreg");
    let plain = |p: &Path, dir: bool| {
        std::fs::symlink_metadata(p).is_ok_and(|m| if dir { m.is_dir() } else { m.is_file() })
    };
    let mut out = Vec::new();
    if plain(&reg, true) && plain(&reg.join("ids"), true) {
        let log = reg.join("ids/counters.log");
        if plain(&log, false) {
            use std::hash::{Hash, Hasher};
            let bytes = std::fs::read(&log).expect("read counters.log");
            let mut h = std::collections::hash_map::DefaultHasher::new();
            bytes.hash(&mut h);
            out.push(format!(
                "ids/counters.log: {} bytes, hash {:016x}",
                bytes.len(),
                h.finish()
            ));
        }
    }
    for sub in ["gaps", "loops"] {
        let dir = reg.join(sub);
        if plain(&reg, true) && plain(&dir, true) {
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .expect("read registry dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            out.push(format!("{sub}/: {names:?}"));
        }
    }
    out
}

/// Whether `run` names `path` (on stdout or stderr: `doctor` lists findings on stdout).
fn names(run: &Guarded, path: &str) -> bool {
    run.stdout.contains(path) || run.stderr.contains(path)
}

/// Runs the suite's commands in the clone of scenario `s`, appending its row of exit codes
/// to `row`, and returns every violation:
///
/// - any command: ends (no hang) with an exit code, not a signal; outside the clone nothing
///   changed (home and outside hashed before and after: contents, modes, inodes, times,
///   names), so nothing was written, created or removed through a link; no decoy content
///   in its output (nothing was read through a link); the plant is exactly as planted
///   (nothing removed or replaced it); a documented exit code with an `error: ` line;
/// - while the clone's state agrees with the clean clone's (every change came out the
///   same): an outcome other than the clean clone's is a refusal naming the plant (exit 6);
///   a read prints what it prints in the clean clone;
/// - a plant where a gap or loop belongs is reported by every command that lists them
///   (exit 6, named), `doctor` reports every plant in the registry but lease state, and
///   `lease list` names a planted lease file.
fn run_scenario(
    world: &World,
    suite: &Suite,
    base: &[Base],
    s: &Scenario,
    row: &mut String,
) -> Vec<String> {
    world.reset_origin();
    if s.after_clone {
        world.clone_branch("base");
        (s.plant)(world, &world.clone);
    } else {
        (s.plant)(world, &world.origin);
        world.commit_origin();
        world.clone_branch("scen");
    }
    let keep: Vec<PathBuf> = s.keep.iter().map(|p| world.clone.join(p)).collect();
    let keep: Vec<&Path> = keep.iter().map(PathBuf::as_path).collect();
    let planted = snapshot(&keep);
    assert!(
        planted.0.values().all(|v| v != "missing"),
        "{}: the clone does not hold the plant: {planted:?}",
        s.name
    );
    let named = |run: &Guarded| s.names.iter().any(|n| names(run, n));
    let mut violations = Vec::new();
    let mut lease = String::from("1-h");
    let mut agree = true;
    let _ = write!(row, "{:<46}", s.name);
    let mut before = world.outside_state();
    for (cmd, base) in suite.commands.iter().zip(base) {
        let args = expand(cmd, &lease);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let traced = (cmd.role == Role::Write).then(|| trace(&world.clone));
        let run = world.run(&world.clone, &args, cmd.stdin);
        let after = world.outside_state();
        let mut bad = |what: String| {
            violations.push(format!(
                "{} | gapreg {}: {what}\n      exit {}; stderr: {}",
                s.name,
                args.join(" "),
                run.code().map_or_else(|e| e, |c| c.to_string()),
                run.stderr.trim_end().replace('\n', "\n      ")
            ));
        };
        let code = match run.code() {
            Ok(code) => code,
            Err(how) => {
                bad(how);
                let _ = write!(row, " {:>3}", "T/O");
                break;
            }
        };
        let _ = write!(row, " {code:>3}");
        lease_id(cmd, &run, &mut lease);
        if code != base.code {
            if !DOCUMENTED.contains(&code) {
                bad(format!(
                    "undocumented exit {code} (clean clone: {})",
                    base.code
                ));
            } else if agree && !s.refusals.contains(&code) {
                bad(format!(
                    "exit {code} where the clean clone gives {}: a refusal of this plant \
                     is exit {:?}",
                    base.code, s.refusals
                ));
            }
            if code != 0 && !run.stderr.lines().any(|l| l.starts_with("error: ")) {
                bad("no `error: ` line".into());
            }
            if agree && !named(&run) {
                bad(format!("the error does not name the plant ({:?})", s.names));
            }
        }
        // `doctor --repair` reports what it could not repair after repairing the rest.
        if let Some(was) = traced.filter(|_| code != 0 && args != ["doctor", "--repair"]) {
            let now = trace(&world.clone);
            if now != was {
                let changed: Vec<String> = was
                    .iter()
                    .zip(&now)
                    .filter(|(a, b)| a != b)
                    .map(|(a, b)| format!("{a} -> {b}"))
                    .collect();
                bad(format!(
                    "refused, but left a trace (a reported failure must change nothing): {}",
                    if changed.is_empty() {
                        format!("{was:?} -> {now:?}")
                    } else {
                        changed.join("; ")
                    }
                ));
            }
        }
        if run.stdout.contains(MARKER) || run.stderr.contains(MARKER) {
            bad(format!(
                "output shows decoy content ({MARKER}): a link was followed"
            ));
        }
        if after != before {
            let mut changes = before.0.diff(&after.0);
            if before.1 != after.1 {
                changes.push(format!("top-level names {:?} -> {:?}", before.1, after.1));
            }
            bad(format!(
                "changed outside the clone:\n        {}",
                changes.join("\n        ")
            ));
            world.restore_home();
            before = world.outside_state();
        } else {
            before = after;
        }
        let now = snapshot(&keep);
        if now != planted {
            bad(format!(
                "the plant was changed or removed:\n        {}",
                planted.diff(&now).join("\n        ")
            ));
        }
        if let Some(doc) = s.doc.filter(|d| cmd.lists.contains(d)) {
            let reported = if doc == Doc::Lease {
                named(&run)
            } else {
                s.refusals.contains(&code) && named(&run)
            };
            if !reported {
                bad(format!(
                    "the plant is not reported (exit {:?} naming one of {:?})",
                    s.refusals, s.names
                ));
            }
        }
        if agree && cmd.role == Role::Read && code == 0 && run.stdout != base.stdout {
            bad(format!(
                "stdout differs from the clean clone's:\n        clean:   {:?}\n        \
                 planted: {:?}",
                base.stdout, run.stdout
            ));
        }
        if cmd.role == Role::Write && (code != base.code || run.stdout != base.stdout) {
            agree = false;
        }
    }
    row.push('\n');
    violations
}

/// Scenarios run at once by one test, each worker in a world of its own (the commands spend
/// much of their time in `fsync`).
const WORKERS: usize = 2;

/// Runs `scenarios` of `suite`, after a baseline, spread over [`WORKERS`] worlds; fails
/// listing every violation, with the matrix of exit codes (a row per scenario, a column per
/// command).
fn run_matrix(suite: &Suite, scenarios: &[Scenario]) {
    let start = Instant::now();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let mut rows: Vec<(usize, String, Vec<String>)> = Vec::new();
    let mut base_codes = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..WORKERS.min(scenarios.len()))
            .map(|_| {
                scope.spawn(|| {
                    let world = World::new(suite.fresh);
                    let base = baseline(&world, suite);
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        let Some(s) = scenarios.get(i) else { break };
                        let mut row = String::new();
                        let violations = run_scenario(&world, suite, &base, s, &mut row);
                        done.push((i, row, violations));
                    }
                    (base.iter().map(|b| b.code).collect::<Vec<_>>(), done)
                })
            })
            .collect();
        for worker in workers {
            let (codes, done) = worker.join().expect("a worker panicked");
            base_codes = codes;
            rows.extend(done);
        }
    });
    rows.sort_by_key(|(i, _, _)| *i);
    let mut matrix = String::from("columns:");
    for (i, cmd) in suite.commands.iter().enumerate() {
        let _ = write!(matrix, "\n  {i:>2} gapreg {}", cmd.args.join(" "));
    }
    let _ = write!(matrix, "\n{:<46}", "");
    for i in 0..suite.commands.len() {
        let _ = write!(matrix, " {i:>3}");
    }
    let _ = write!(matrix, "\n{:<46}", "clean clone");
    for code in &base_codes {
        let _ = write!(matrix, " {code:>3}");
    }
    matrix.push('\n');
    let mut violations = Vec::new();
    for (_, row, v) in rows {
        matrix.push_str(&row);
        violations.extend(v);
    }
    println!(
        "{matrix}\n{} scenarios × {} commands in {:?}",
        scenarios.len(),
        suite.commands.len(),
        start.elapsed()
    );
    assert!(
        violations.is_empty(),
        "{} violations:\n{}\n\n{matrix}",
        violations.len(),
        violations.join("\n")
    );
}

/// Every plant of `plants` at every site.
fn every_site(plants: &[Plant]) -> Vec<Scenario> {
    plants
        .iter()
        .flat_map(|&plant| SITES.iter().map(move |site| at_site(site, plant)))
        .collect()
}

#[test]
fn hostile_repo_absolute_links_are_never_followed() {
    run_matrix(
        &IN_REGISTRY,
        &every_site(&[
            Plant::LinkDir { relative: false },
            Plant::LinkFile { relative: false },
            Plant::Dangling { relative: false },
        ]),
    );
}

#[test]
fn hostile_repo_relative_links_are_never_followed() {
    // A relative link resolves like an absolute one once opened; what differs is where a
    // write or a create through it would land.
    run_matrix(
        &IN_REGISTRY,
        &every_site(&[
            Plant::LinkDir { relative: true },
            Plant::Dangling { relative: true },
        ]),
    );
}

#[test]
fn hostile_repo_fifos_never_hang_a_command() {
    run_matrix(&IN_REGISTRY, &every_site(&[Plant::Fifo]));
}

#[test]
fn hostile_repo_entries_of_the_wrong_type_are_refused() {
    run_matrix(&IN_REGISTRY, &every_site(&[Plant::WrongType]));
}

/// `loops_dir` in `config.yaml` set to `value`, and optionally a link `docs` at the top of
/// the repository pointing outside it.
fn loops_dir(name: &str, value: &'static str, docs: Option<&'static str>) -> Scenario {
    let mut keep = vec![".gapreg/config.yaml"];
    let mut names = vec!["loops_dir"];
    if docs.is_some() {
        keep.push("docs");
        names.push("docs");
    }
    Scenario {
        name: format!("loops_dir {name}"),
        plant: Box::new(move |w: &World, tree: &Path| {
            let path = tree.join(".gapreg/config.yaml");
            let config = std::fs::read_to_string(&path).expect("config.yaml");
            let value = value.replace("{outside}", &w.outside.display().to_string());
            let config: String = config
                .lines()
                .map(|l| {
                    if l.starts_with("loops_dir:") {
                        format!("loops_dir: {value}\n")
                    } else {
                        format!("{l}\n")
                    }
                })
                .collect();
            std::fs::write(&path, config).expect("write config.yaml");
            if let Some(target) = docs {
                let target = target.replace("{outside}", &w.outside.display().to_string());
                std::os::unix::fs::symlink(target, tree.join("docs")).expect("docs link");
            }
        }),
        after_clone: false,
        keep,
        names,
        // Invalid input (a path escaping the repository) or a planted link.
        refusals: &[3, 6],
        doc: Some(Doc::Loop),
    }
}

#[test]
fn hostile_repo_loops_dir_never_leads_outside() {
    run_matrix(
        &IN_REGISTRY,
        &[
            loops_dir("../../outside", "../../outside", None),
            loops_dir("absolute", "{outside}", None),
            loops_dir("via ../a/../../outside", "../a/../../outside", None),
            loops_dir("../docs, docs -> outside", "../docs", Some("{outside}")),
            loops_dir("../docs, docs -> ../outside", "../docs", Some("../outside")),
        ],
    );
}

#[test]
fn hostile_repo_init_never_writes_through_a_planted_registry() {
    let sites: Vec<&'static Site> = SITES
        .iter()
        .filter(|s| {
            [
                ".gapreg",
                ".gapreg/config.yaml",
                ".gapreg/.gitignore",
                ".gapreg/gaps",
                ".gapreg/loops",
                ".gapreg/ids",
                ".gapreg/ids/config.yaml",
                ".gapreg/ids/counters.log",
                ".gapreg/index.log",
                ".gapreg/registry.lock",
                ".gapreg/leases",
            ]
            .contains(&s.path)
        })
        .collect();
    let plants = [
        Plant::LinkDir { relative: false },
        Plant::LinkFile { relative: false },
        Plant::Dangling { relative: true },
        Plant::Fifo,
        Plant::WrongType,
    ];
    let scenarios: Vec<Scenario> = plants
        .iter()
        .flat_map(|&plant| {
            sites.iter().map(move |site| Scenario {
                // `init` may also refuse because `.gapreg` exists: a conflict naming it.
                names: vec![site.path, ".gapreg"],
                refusals: &[5, 6],
                doc: None,
                ..at_site(site, plant)
            })
        })
        .collect();
    run_matrix(&IN_FRESH_REPO, &scenarios);
}
