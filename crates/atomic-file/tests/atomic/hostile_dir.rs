//! `atomic_file::dir::Dir` in a directory an attacker prepared: symlinks (to directories, to
//! files, dangling), FIFOs, directories where files belong. Nothing outside is touched, no call
//! hangs, every refusal names the path and what was found.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, Instant};

use atomic_file::dir::{Dir, FileKind};
use atomic_file::{ErrorKind, Options};

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo");
    assert!(status.success());
}

/// A victim directory outside the tree, and its contents, to compare afterwards.
fn victim(root: &Path) -> (std::path::PathBuf, Vec<(String, Vec<u8>)>) {
    let v = root.join("victim");
    fs::create_dir(&v).expect("victim");
    fs::write(v.join("id_ed25519"), b"secret key").expect("write");
    fs::write(v.join("GAP-1.yaml"), b"not yours").expect("write");
    (v.clone(), snapshot(&v))
}

fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<_> = fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            (
                e.file_name().to_string_lossy().into_owned(),
                fs::read(e.path()).unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

fn wrong_type(err: &atomic_file::Error) -> Option<(FileKind, FileKind)> {
    match err.kind() {
        ErrorKind::WrongType { found, expected } => Some((*found, *expected)),
        _ => None,
    }
}

#[test]
fn a_symlinked_subdirectory_is_refused_and_its_target_untouched() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    symlink(&v, root.join("staging")).expect("link");
    let err = root.create_dir("staging").expect_err("must be refused");
    assert_eq!(
        wrong_type(&err),
        Some((FileKind::Symlink, FileKind::Dir)),
        "{err}"
    );
    assert!(err.to_string().contains("staging"), "{err}");
    let err = root.open_dir("staging").expect_err("must be refused");
    assert_eq!(wrong_type(&err), Some((FileKind::Symlink, FileKind::Dir)));
    // Removing the link as if it were a file is refused too: it is not a regular file.
    assert!(root.remove_file("staging").is_err());
    assert_eq!(snapshot(&v), before);
    assert!(
        fs::symlink_metadata(root.join("staging"))
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_symlinked_root_is_refused() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    symlink(&v, tmp.path().join(".state")).expect("link");
    let err = Dir::open(tmp.path().join(".state")).expect_err("must be refused");
    assert_eq!(
        wrong_type(&err),
        Some((FileKind::Symlink, FileKind::Dir)),
        "{err}"
    );
    let err = Dir::create(tmp.path().join(".state")).expect_err("must be refused");
    assert_eq!(
        wrong_type(&err),
        Some((FileKind::Symlink, FileKind::Dir)),
        "{err}"
    );
    assert_eq!(snapshot(&v), before);
}

#[test]
fn symlinked_files_are_never_read_written_appended_or_removed_through() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    let opts = Options::new();
    // absolute, relative and dangling links
    symlink(v.join("id_ed25519"), root.join("abs")).expect("link");
    symlink("../victim/GAP-1.yaml", root.join("rel")).expect("link");
    symlink(v.join("created-by-us"), root.join("dangling")).expect("link");
    for name in ["abs", "rel", "dangling"] {
        let e = root.read(name, 1 << 20).expect_err("must be refused");
        assert_eq!(
            wrong_type(&e),
            Some((FileKind::Symlink, FileKind::File)),
            "{name}: {e}"
        );
        let e = root
            .write(name, b"pwned", &opts)
            .expect_err("must be refused");
        assert_eq!(
            wrong_type(&e),
            Some((FileKind::Symlink, FileKind::File)),
            "{name}: {e}"
        );
        let e = root.open_append(name).expect_err("must be refused");
        assert_eq!(
            wrong_type(&e),
            Some((FileKind::Symlink, FileKind::File)),
            "{name}: {e}"
        );
        let e = root.open_lock(name).expect_err("must be refused");
        assert_eq!(
            wrong_type(&e),
            Some((FileKind::Symlink, FileKind::File)),
            "{name}: {e}"
        );
        assert!(root.remove_file(name).is_err(), "{name}");
        assert!(root.file_exists(name).is_err(), "{name}");
        assert!(root.rename_file(name, &root, "x").is_err(), "{name}");
        assert_eq!(root.kind(name).expect("kind"), Some(FileKind::Symlink));
    }
    fs::write(root.join("good"), b"ok").expect("write");
    assert!(root.rename_file("good", &root, "abs").is_err());
    assert_eq!(snapshot(&v), before);
    assert!(!v.join("created-by-us").exists());
    // No temp file left behind by the refused writes.
    let names: Vec<_> = root
        .entries()
        .expect("entries")
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(names, ["abs", "dangling", "good", "rel"]);
}

#[test]
fn a_fifo_where_a_file_belongs_is_refused_at_once() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    mkfifo(&root.join("index.log"));
    let started = Instant::now();
    let e = root
        .read("index.log", 1 << 20)
        .expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::Fifo, FileKind::File)),
        "{e}"
    );
    let e = root.open_append("index.log").expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::Fifo, FileKind::File)),
        "{e}"
    );
    let e = root.open_lock("index.log").expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::Fifo, FileKind::File)),
        "{e}"
    );
    let e = root
        .write("index.log", b"x", &Options::new())
        .expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::Fifo, FileKind::File)),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an open blocked on the FIFO"
    );
}

#[test]
fn a_directory_where_a_file_belongs_and_the_other_way_round() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    fs::create_dir(root.join("GAP-OP-8.yaml")).expect("dir");
    fs::write(root.join("gaps"), b"a file").expect("file");
    let e = root
        .read("GAP-OP-8.yaml", 1 << 20)
        .expect_err("must be refused");
    assert_eq!(wrong_type(&e), Some((FileKind::Dir, FileKind::File)), "{e}");
    let e = root
        .write("GAP-OP-8.yaml", b"x", &Options::new())
        .expect_err("must be refused");
    assert_eq!(wrong_type(&e), Some((FileKind::Dir, FileKind::File)), "{e}");
    assert!(root.remove_file("GAP-OP-8.yaml").is_err());
    let e = root.create_dir("gaps").expect_err("must be refused");
    assert_eq!(wrong_type(&e), Some((FileKind::File, FileKind::Dir)), "{e}");
    assert!(root.join("GAP-OP-8.yaml").is_dir());
}

#[test]
fn names_must_be_one_component() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    for bad in ["", ".", "..", "../x", "a/b", "/etc/passwd"] {
        assert!(root.read(bad, 10).is_err(), "{bad:?}");
        assert!(root.write(bad, b"x", &Options::new()).is_err(), "{bad:?}");
        assert!(root.create_dir(bad).is_err(), "{bad:?}");
    }
}

#[test]
fn reads_are_bounded_before_allocating() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    let f = fs::File::create(root.join("huge")).expect("create");
    f.set_len(1 << 40).expect("sparse 1 TiB");
    let e = root.read("huge", 1 << 20).expect_err("must be refused");
    assert!(
        matches!(e.kind(), ErrorKind::TooLarge { len, limit } if *len == 1 << 40 && *limit == 1 << 20),
        "{e}"
    );
    root.write("small", b"12345", &Options::new())
        .expect("write");
    assert!(root.read("small", 4).is_err());
    assert_eq!(
        root.read("small", 5).expect("read").as_deref(),
        Some(&b"12345"[..])
    );
    assert_eq!(root.read("missing", 5).expect("read"), None);
}

#[test]
fn write_replaces_keeps_the_mode_and_checksums() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    let opts = Options::new().checksum(true);
    root.write("a", b"one", &opts).expect("write");
    fs::set_permissions(root.join("a"), fs::Permissions::from_mode(0o640)).expect("chmod");
    root.write("a", b"two", &opts).expect("write");
    let mode = fs::metadata(root.join("a"))
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o640);
    assert_eq!(
        root.read_with("a", &opts, 100).expect("read").as_deref(),
        Some(&b"two"[..])
    );
    // A flipped byte is corrupt through the checksum.
    let mut raw = fs::read(root.join("a")).expect("raw");
    let last = raw.len() - 1;
    raw[last] ^= 1;
    fs::write(root.join("a"), raw).expect("write");
    assert!(
        root.read_with("a", &opts, 100)
            .expect_err("must be refused")
            .is_corrupt()
    );
}

#[test]
fn a_swapped_directory_cannot_redirect_an_open_handle() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    let staging = root.create_dir("staging").expect("staging");
    staging
        .write("GAP-1.yaml", b"ours", &Options::new())
        .expect("write");
    // The attacker moves the real directory away and puts a link in its place.
    fs::rename(root.join("staging"), root.join("moved")).expect("move");
    symlink(&v, root.join("staging")).expect("link");
    assert!(staging.remove_file("GAP-1.yaml").expect("remove"));
    staging
        .write("x", b"still in the moved dir", &Options::new())
        .expect("write");
    assert_eq!(snapshot(&v), before);
    assert!(root.join("moved/x").is_file());
}

#[test]
fn recover_removes_only_dead_writers_regular_temp_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    // A dead writer's temp file (pid 0x7ffffffe cannot exist) and a link with a temp name.
    let dead = ".a.2147483646-0123456789abcdef.atomic-tmp";
    let link = ".b.2147483646-0123456789abcdef.atomic-tmp";
    let live = format!(".c.{}-0123456789abcdef.atomic-tmp", std::process::id());
    fs::write(root.join(dead), b"x").expect("write");
    fs::write(root.join(&live), b"x").expect("write");
    symlink(v.join("id_ed25519"), root.join(link)).expect("link");
    let dry = root.recover(false).expect("dry run");
    assert_eq!(dry.removed, [root.join(dead)]);
    assert!(root.join(dead).exists(), "a dry run removes nothing");
    let report = root.recover(true).expect("recover");
    assert_eq!(report.removed, [root.join(dead)]);
    assert_eq!(report.in_use, [root.join(&live)]);
    assert!(!root.join(dead).exists());
    assert!(root.join(&live).exists());
    assert!(fs::symlink_metadata(root.join(link)).is_ok());
    assert_eq!(snapshot(&v), before);
}

/// Root writing in a directory owned by someone else gives every new file and directory,
/// nested ones too, that owner, so it cannot lock the owner out.
#[test]
fn root_creates_entries_owned_by_the_directory_owner() {
    use std::os::unix::fs::MetadataExt;
    if fs::metadata("/proc/self").map(|m| m.uid()).unwrap_or(1) != 0 {
        eprintln!("skipped: needs root");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let top = tmp.path().join(".state");
    fs::create_dir(&top).expect("dir");
    std::os::unix::fs::chown(&top, Some(65534), Some(65534)).expect("chown");
    let root = Dir::open(&top).expect("open");
    let sub = root.create_dir("staging").expect("sub");
    sub.write("GAP-1.yaml", b"x", &Options::new())
        .expect("write");
    let nested = sub.create_dir("deeper").expect("nested");
    drop(
        nested
            .create_new("ticket", 0o644)
            .expect("create")
            .expect("new"),
    );
    drop(root.open_append("index.log").expect("append"));
    drop(root.open_lock("registry.lock").expect("lock"));
    for p in [
        top.join("staging"),
        top.join("staging/GAP-1.yaml"),
        top.join("staging/deeper"),
        top.join("staging/deeper/ticket"),
        top.join("index.log"),
        top.join("registry.lock"),
    ] {
        let m = fs::metadata(&p).expect("meta");
        assert_eq!((m.uid(), m.gid()), (65534, 65534), "{}", p.display());
    }
}

/// A hard link to someone else's file where a lock file or log belongs is never written
/// through (a write in place would change the other name too).
#[test]
fn a_hard_link_is_never_opened_for_writing_in_place() {
    let tmp = tempfile::tempdir().expect("tmp");
    let (v, before) = victim(tmp.path());
    let root = Dir::create(tmp.path().join(".state")).expect("root");
    fs::hard_link(v.join("id_ed25519"), root.join("registry.lock")).expect("link");
    fs::hard_link(v.join("GAP-1.yaml"), root.join("index.log")).expect("link");
    let e = root
        .open_lock("registry.lock")
        .expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::HardLinked, FileKind::File)),
        "{e}"
    );
    let e = root.open_append("index.log").expect_err("must be refused");
    assert_eq!(
        wrong_type(&e),
        Some((FileKind::HardLinked, FileKind::File)),
        "{e}"
    );
    // Replacing by rename never writes through a link.
    root.write("index.log", b"new", &Options::new())
        .expect("replace");
    assert_eq!(snapshot(&v), before);
}
