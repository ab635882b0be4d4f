//! Unit tests of the public API, including every error path (through fault injection where the
//! operating system cannot be made to fail on demand).

use std::fs;
use std::path::{Path, PathBuf};

use crate::replace::fault;
use crate::*;

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

/// Files in `dir` whose names are this crate's temp names.
fn temps(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().and_then(crate::temp::parse).is_some())
        .collect();
    found.sort();
    found
}

#[test]
fn write_creates_and_replaces() {
    let d = dir();
    let path = d.path().join("a.txt");
    write(&path, b"one").expect("create");
    assert_eq!(fs::read(&path).expect("read"), b"one");
    write(&path, b"two, longer").expect("replace");
    assert_eq!(fs::read(&path).expect("read"), b"two, longer");
    write(&path, b"").expect("empty");
    assert_eq!(fs::read(&path).expect("read"), b"");
    assert!(temps(d.path()).is_empty());
}

#[test]
fn no_sync_writes_the_same_bytes() {
    let d = dir();
    let path = d.path().join("cache");
    let opts = Options::new().durability(Durability::NoSync);
    opts.write(&path, b"fast").expect("write");
    assert_eq!(opts.read(&path).expect("read"), b"fast");
}

#[test]
fn relative_path_without_directory_uses_the_current_directory() {
    // Exercises the `parent() == ""` case without changing the process's current directory.
    let target = replace::Target::resolve(Path::new("plain-name.txt")).expect("resolve");
    assert_eq!(target.dir(), Path::new("."));
    assert_eq!(target.lock_path(), Path::new("./.plain-name.txt.lock"));
}

#[cfg(unix)]
mod unix {
    use super::*;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt, symlink};

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").permissions().mode() & 0o7777
    }

    #[test]
    fn replaced_file_keeps_its_permission_bits() {
        let d = dir();
        let path = d.path().join("secret.json");
        fs::write(&path, b"{}").expect("seed");
        for bits in [0o600, 0o640, 0o755, 0o444] {
            fs::set_permissions(&path, fs::Permissions::from_mode(bits)).expect("chmod");
            write(&path, b"{\"k\": 1}").expect("write");
            assert_eq!(mode(&path), bits, "mode {bits:o} not kept");
        }
    }

    #[test]
    fn replaced_file_keeps_its_owner_where_allowed() {
        let d = dir();
        let path = d.path().join("owned");
        fs::write(&path, b"x").expect("seed");
        let is_root = rustix::process::geteuid().is_root();
        if is_root {
            std::os::unix::fs::chown(&path, Some(12345), Some(23456)).expect("chown");
        }
        let before = fs::metadata(&path).expect("meta");
        write(&path, b"y").expect("write");
        let after = fs::metadata(&path).expect("meta");
        assert_eq!((after.uid(), after.gid()), (before.uid(), before.gid()));
    }

    #[test]
    fn new_file_gets_0666_minus_umask() {
        let d = dir();
        // Learn the umask without changing it: std creates files with 0o666 & !umask too.
        let probe = d.path().join("probe");
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(&probe)
            .expect("probe");
        let expected = mode(&probe);
        let path = d.path().join("fresh");
        write(&path, b"x").expect("write");
        assert_eq!(mode(&path), expected);
    }

    #[test]
    fn symlink_is_followed_and_kept() {
        let d = dir();
        let real = d.path().join("real.yaml");
        let link = d.path().join("link.yaml");
        fs::write(&real, b"old").expect("seed");
        symlink("real.yaml", &link).expect("symlink");
        write(&link, b"new").expect("write through link");
        assert!(
            fs::symlink_metadata(&link)
                .expect("lstat")
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).expect("read"), b"new");
        // A chain of links and a dangling link (which creates its destination).
        let link2 = d.path().join("link2");
        symlink(&link, &link2).expect("symlink");
        write(&link2, b"newer").expect("chain");
        assert_eq!(fs::read(&real).expect("read"), b"newer");
        let dangling = d.path().join("dangling");
        symlink("sub-target", &dangling).expect("symlink");
        write(&dangling, b"made").expect("dangling");
        assert_eq!(
            fs::read(d.path().join("sub-target")).expect("read"),
            b"made"
        );
    }

    #[test]
    fn symlink_loop_is_an_invalid_path() {
        let d = dir();
        let a = d.path().join("a");
        let b = d.path().join("b");
        symlink(&b, &a).expect("symlink");
        symlink(&a, &b).expect("symlink");
        let err = write(&a, b"x").expect_err("loop");
        assert!(matches!(err.kind(), ErrorKind::InvalidPath { .. }), "{err}");
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[test]
    fn fifo_is_refused() {
        let d = dir();
        let fifo = d.path().join("fifo");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("run mkfifo");
        assert!(status.success());
        let err = write(&fifo, b"x").expect_err("fifo");
        assert!(err.to_string().contains("not a regular file"), "{err}");
    }
}

#[test]
fn every_failed_step_leaves_the_target_untouched_and_no_temp() {
    let d = dir();
    let path = d.path().join("state.json");
    write(&path, b"old").expect("seed");
    for step in [
        Step::CreateTemp,
        Step::CopyPermissions,
        Step::Write,
        Step::SyncFile,
        Step::Rename,
    ] {
        fault::inject(step);
        let err = write(&path, b"new").expect_err("injected");
        assert_eq!(err.step(), Some(step), "{err}");
        assert_eq!(err.path(), path);
        let msg = err.to_string();
        assert!(
            msg.contains(&step.to_string()) && msg.contains("state.json"),
            "{msg}"
        );
        assert!(err.io_error().is_some());
        assert_eq!(
            fs::read(&path).expect("read"),
            b"old",
            "target changed at {step:?}"
        );
        assert!(temps(d.path()).is_empty(), "temp left after {step:?}");
    }
}

#[test]
fn failed_directory_sync_is_reported_after_the_rename() {
    let d = dir();
    let path = d.path().join("state.json");
    write(&path, b"old").expect("seed");
    fault::inject(Step::SyncDir);
    let err = write(&path, b"new").expect_err("injected");
    assert_eq!(err.step(), Some(Step::SyncDir));
    // The rename happened; only its durability is unconfirmed (documented).
    assert_eq!(fs::read(&path).expect("read"), b"new");
    assert!(temps(d.path()).is_empty());
}

#[test]
fn checksummed_write_failure_keeps_the_old_checksummed_file() {
    let d = dir();
    let path = d.path().join("c");
    write_checksummed(&path, b"v1").expect("seed");
    fault::inject(Step::Write);
    write_checksummed(&path, b"v2").expect_err("injected");
    assert_eq!(read_checksummed(&path).expect("read"), b"v1");
}

#[test]
fn missing_directory_is_a_create_temp_error_naming_the_path() {
    let d = dir();
    let path = d.path().join("no-such-dir").join("f");
    let err = write(&path, b"x").expect_err("missing dir");
    assert_eq!(err.step(), Some(Step::CreateTemp));
    assert!(err.is_not_found());
    assert!(err.to_string().contains("no-such-dir"), "{err}");
}

#[test]
fn parent_that_is_a_file_is_an_error() {
    let d = dir();
    let file = d.path().join("plain");
    fs::write(&file, b"x").expect("seed");
    let err = write(file.join("child"), b"x").expect_err("parent is a file");
    assert!(err.io_error().is_some(), "{err}");
}

#[test]
fn directory_and_nameless_targets_are_invalid() {
    let d = dir();
    let err = write(d.path(), b"x").expect_err("dir");
    assert!(matches!(err.kind(), ErrorKind::InvalidPath { .. }), "{err}");
    assert!(err.to_string().contains("directory"), "{err}");
    let err = write(d.path().join(".."), b"x").expect_err("..");
    assert!(err.to_string().contains("file name"), "{err}");
}

#[test]
fn reading_a_missing_file_is_not_found() {
    let d = dir();
    let err = read_checksummed(d.path().join("nope")).expect_err("missing");
    assert!(
        err.is_not_found() && err.step() == Some(Step::Read),
        "{err}"
    );
    let io: std::io::Error = err.into();
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);
}

#[test]
fn corrupt_checksummed_file_is_reported_and_left_alone() {
    let d = dir();
    let path = d.path().join("ids");
    write_checksummed(&path, b"SEC 20\n").expect("write");
    let mut bytes = fs::read(&path).expect("read");
    let last = bytes.len() - 2;
    bytes[last] ^= 0x04;
    fs::write(&path, &bytes).expect("damage");
    let err = read_checksummed(&path).expect_err("corrupt");
    assert!(err.is_corrupt());
    assert!(matches!(
        err.kind(),
        ErrorKind::Corrupt(Corruption::ChecksumMismatch { .. })
    ));
    let msg = err.to_string();
    assert!(msg.contains("ids") && msg.contains("corrupt"), "{msg}");
    assert_eq!(fs::read(&path).expect("read"), bytes, "file was modified");
    // A plain file read as checksummed is corrupt too, never silently accepted.
    fs::write(&path, b"SEC 20\n").expect("plain");
    let err = read_checksummed(&path).expect_err("no header");
    assert!(matches!(
        err.kind(),
        ErrorKind::Corrupt(Corruption::MissingHeader)
    ));
}

#[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
struct Doc {
    name: String,
    ids: Vec<u32>,
}

#[test]
fn typed_round_trips_in_both_formats_with_and_without_checksum() {
    let d = dir();
    let doc = Doc {
        name: "GAP-OP".into(),
        ids: vec![1, 2, 1091],
    };
    for format in [Format::Json, Format::Yaml] {
        for checksum in [false, true] {
            let path = d.path().join(format!("doc-{format}-{checksum}"));
            let opts = Options::new().checksum(checksum);
            opts.write_value(&path, format, &doc).expect("write");
            let back: Doc = opts.read_value(&path, format).expect("read");
            assert_eq!(back, doc);
        }
    }
    write_json(d.path().join("j.json"), &doc).expect("json");
    assert_eq!(
        read_json::<Doc>(d.path().join("j.json")).expect("json"),
        doc
    );
    write_yaml(d.path().join("y.yaml"), &doc).expect("yaml");
    assert_eq!(
        read_yaml::<Doc>(d.path().join("y.yaml")).expect("yaml"),
        doc
    );
}

#[test]
fn checksummed_yaml_is_still_plain_yaml() {
    let d = dir();
    let path = d.path().join("doc.yaml");
    let doc = Doc {
        name: "x".into(),
        ids: vec![3],
    };
    Options::new()
        .checksum(true)
        .write_value(&path, Format::Yaml, &doc)
        .expect("write");
    // The header is a YAML comment, so a reader that knows nothing of checksums still works.
    assert_eq!(read_yaml::<Doc>(&path).expect("plain read"), doc);
}

#[test]
fn decode_errors_name_the_format_and_path() {
    let d = dir();
    let path = d.path().join("bad.json");
    fs::write(&path, b"{\"name\": 3}").expect("seed");
    let err = read_json::<Doc>(&path).expect_err("type error");
    assert!(matches!(
        err.kind(),
        ErrorKind::Decode {
            format: Format::Json,
            ..
        }
    ));
    let msg = err.to_string();
    assert!(
        msg.contains("bad.json") && msg.contains("JSON") && msg.contains("line 1"),
        "{msg}"
    );
    fs::write(&path, b"name: [unclosed").expect("seed");
    let err = read_yaml::<Doc>(&path).expect_err("syntax error");
    assert!(matches!(
        err.kind(),
        ErrorKind::Decode {
            format: Format::Yaml,
            ..
        }
    ));
}

#[test]
fn encode_errors_are_reported_and_write_nothing() {
    let d = dir();
    let path = d.path().join("map.json");
    let map = std::collections::BTreeMap::from([((1, 2), "tuple keys are not JSON")]);
    let err = write_json(&path, &map).expect_err("non-string keys");
    assert!(matches!(err.kind(), ErrorKind::Encode { .. }), "{err}");
    assert!(!path.exists());
}

#[test]
fn update_reads_changes_and_writes() {
    let d = dir();
    let path = d.path().join("n");
    for _ in 0..3 {
        update(&path, |old| {
            let n: u32 = old.map_or(0, |b| {
                String::from_utf8(b)
                    .expect("utf-8")
                    .parse()
                    .expect("a number")
            });
            Ok::<_, Error>((n + 1).to_string().into_bytes())
        })
        .expect("update");
    }
    assert_eq!(fs::read(&path).expect("read"), b"3");
    assert!(
        d.path().join(".n.lock").exists(),
        "the sibling lock file guards updates"
    );
}

#[test]
fn update_that_fails_writes_nothing() {
    #[derive(Debug)]
    enum MyError {
        Refused,
        File(Error),
    }
    impl From<Error> for MyError {
        fn from(e: Error) -> Self {
            MyError::File(e)
        }
    }
    let d = dir();
    let path = d.path().join("n");
    write(&path, b"keep").expect("seed");
    let result = update(&path, |_| Err::<Vec<u8>, _>(MyError::Refused));
    assert!(matches!(result, Err(MyError::Refused)));
    assert_eq!(fs::read(&path).expect("read"), b"keep");
    // A corrupt checksummed file is an error, never treated as missing.
    let opts = Options::new().checksum(true);
    let result = opts.update(&path, |old| {
        assert!(old.is_none(), "closure must not run on a corrupt file");
        Ok::<_, MyError>(b"reset".to_vec())
    });
    assert!(
        matches!(result, Err(MyError::File(ref e)) if e.is_corrupt()),
        "{result:?}"
    );
    assert_eq!(fs::read(&path).expect("read"), b"keep");
}

#[test]
fn typed_update_returns_the_written_value() {
    let d = dir();
    let path = d.path().join("doc.json");
    let v = update_json(&path, |old: Option<Vec<u32>>| {
        let mut v = old.unwrap_or_default();
        v.push(7);
        Ok::<_, Error>(v)
    })
    .expect("update");
    assert_eq!(v, [7]);
    let v = Options::new()
        .update_value(&path, Format::Json, |old: Option<Vec<u32>>| {
            let mut v = old.expect("exists");
            v.push(8);
            Ok::<_, Error>(v)
        })
        .expect("update");
    assert_eq!(v, [7, 8]);
    fs::write(&path, b"not json").expect("damage");
    let err = update_json(&path, |old: Option<Vec<u32>>| {
        Ok::<_, Error>(old.unwrap_or_default())
    })
    .expect_err("decode");
    assert!(matches!(err.kind(), ErrorKind::Decode { .. }));
}

#[test]
fn update_times_out_with_a_distinct_error() {
    let d = dir();
    let path = d.path().join("busy.json");
    let lock_path = d.path().join(".busy.json.lock");
    let held = fs::File::create(&lock_path).expect("lock file");
    assert!(lock::lock(&held, lock::Mode::Exclusive, lock::Wait::Never).expect("hold the lock"));
    let opts = Options::new().lock_timeout(std::time::Duration::from_millis(30));
    let err = opts
        .update(&path, |_| Ok::<_, Error>(b"x".to_vec()))
        .expect_err("must time out");
    match err.kind() {
        ErrorKind::LockTimeout {
            lock_path: p,
            waited,
        } => {
            assert_eq!(p, &lock_path);
            assert!(*waited >= std::time::Duration::from_millis(30));
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    assert!(err.to_string().contains("timed out"), "{err}");
    assert!(!path.exists());
}

#[test]
fn recover_removes_dead_writers_temps_and_nothing_else() {
    let d = dir();
    // A pid that cannot exist (above Linux's pid_max limit of 2^22).
    let dead = d
        .path()
        .join(".reg.json.4194999-00112233445566ff.atomic-tmp");
    let mine = temp::path_for(
        d.path(),
        std::ffi::OsStr::new("reg.json"),
        std::process::id(),
    );
    let keep = [
        d.path().join("reg.json"),
        d.path().join(".reg.json.lock"),
        d.path().join("notes.tmp"),
        d.path().join(".reg.json.123.atomic-tmp"),
    ];
    for p in keep.iter().chain([&dead, &mine]) {
        fs::write(p, b"x").expect("seed");
    }
    let report = recover(d.path()).expect("recover");
    assert_eq!(report.removed, std::slice::from_ref(&dead));
    assert_eq!(
        report.in_use,
        std::slice::from_ref(&mine),
        "a live writer's temp is kept"
    );
    assert!(!dead.exists() && mine.exists());
    for p in &keep {
        assert!(p.exists(), "{p:?} removed");
    }
}

#[test]
fn recover_keeps_a_locked_temp_even_if_its_pid_is_dead() {
    let d = dir();
    let temp = d.path().join(".x.4194999-00112233445566ff.atomic-tmp");
    let file = fs::File::create(&temp).expect("temp");
    assert!(lock::lock(&file, lock::Mode::Exclusive, lock::Wait::Never).expect("lock"));
    let report = recover(d.path()).expect("recover");
    assert_eq!(report.in_use, std::slice::from_ref(&temp));
    assert!(temp.exists());
}

#[test]
fn recover_on_a_missing_directory_names_it() {
    let d = dir();
    let err = recover(d.path().join("gone")).expect_err("missing");
    assert!(err.is_not_found(), "{err}");
    assert!(
        matches!(err.step(), Some(Step::ListDir | Step::Open)),
        "{err:?}"
    );
    assert!(err.to_string().contains("gone"));
}

#[test]
fn yaml_alias_bombs_are_refused_fast_and_small() {
    // Nine levels of ten aliases each: 10^9 strings if expanded.
    let mut bomb = String::from(
        "a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    let names = ["a", "b", "c", "d", "e", "f", "g", "h", "i"];
    for w in names.windows(2) {
        let (prev, next) = (w[0], w[1]);
        let refs = vec![format!("*{prev}"); 10].join(",");
        bomb.push_str(&format!("{next}: &{next} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let err = Format::Yaml
        .decode::<serde_yaml::Value>("bomb.yaml", bomb.as_bytes())
        .expect_err("an alias bomb must be refused");
    assert!(err.to_string().contains("aliases"), "{err}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Modest, legitimate aliases still decode.
    let ok = "base: &b {severity: high}\none: *b\ntwo: *b\n";
    let v: serde_yaml::Value = Format::Yaml
        .decode("ok.yaml", ok.as_bytes())
        .expect("decode");
    assert_eq!(v["two"]["severity"], serde_yaml::Value::from("high"));
    // A tagged value walks too.
    let _: serde_yaml::Value = Format::Yaml.decode("t.yaml", b"x: !Tag 3\n").expect("tag");
}

/// `write` keeps the replaced file's ACL and extended attributes. Needs `setfacl`/`setfattr`
/// (Debian's `acl` and `attr`, which `.ci/run` installs) and a file system with xattrs.
#[cfg(target_os = "linux")]
#[test]
fn write_keeps_acls_and_extended_attributes() {
    use std::process::Command;
    let d = tempfile::tempdir().expect("tmp");
    let path = d.path().join("secret.txt");
    std::fs::write(&path, b"old").expect("write");
    let run = |cmd: &mut Command| {
        let out = cmd
            .output()
            .expect("run setfacl/setfattr/getfacl (apt install acl attr)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    run(Command::new("setfacl")
        .args(["-m", "u:nobody:r,m::r"])
        .arg(&path));
    run(Command::new("setfattr")
        .args(["-n", "user.origin", "-v", "agent-7"])
        .arg(&path));
    let acl_before = run(Command::new("getfacl").arg("--omit-header").arg(&path));
    assert!(acl_before.contains("user:nobody:r--"), "{acl_before}");
    write(&path, b"new").expect("replace");
    assert_eq!(std::fs::read(&path).expect("read"), b"new");
    let acl_after = run(Command::new("getfacl").arg("--omit-header").arg(&path));
    assert_eq!(acl_after, acl_before);
    let attr = run(Command::new("getfattr")
        .args(["--only-values", "-n", "user.origin"])
        .arg(&path));
    assert_eq!(attr, "agent-7");
}

#[test]
fn recover_dry_run_reports_without_removing() {
    let d = dir();
    let dead = d
        .path()
        .join(".reg.json.4194999-00112233445566ff.atomic-tmp");
    let mine = temp::path_for(
        d.path(),
        std::ffi::OsStr::new("reg.json"),
        std::process::id(),
    );
    for p in [&dead, &mine] {
        fs::write(p, b"x").expect("seed");
    }
    let dry = recover_dry_run(d.path()).expect("dry run");
    assert_eq!(dry.removed, std::slice::from_ref(&dead));
    assert_eq!(dry.in_use, std::slice::from_ref(&mine));
    assert!(dead.exists() && mine.exists(), "a dry run removes nothing");
    assert_eq!(recover(d.path()).expect("recover"), dry);
    assert!(!dead.exists() && mine.exists());
}

#[cfg(unix)]
#[test]
fn rename_dir_moves_a_directory_and_refuses_links_and_full_targets() {
    use crate::dir::{Dir, FileKind};
    let d = dir();
    let root = Dir::open(d.path()).expect("open");
    root.create_dir("a").expect("a");
    assert!(!root.rename_dir("missing", &root, "b").expect("missing"));
    assert!(root.rename_dir("a", &root, "b").expect("moved"));
    assert_eq!(root.kind("b").expect("kind"), Some(FileKind::Dir));
    // A link, at either end, is refused and left alone.
    std::os::unix::fs::symlink("b", d.path().join("link")).expect("symlink");
    let err = root.rename_dir("link", &root, "c").expect_err("a link");
    assert!(matches!(err.kind(), ErrorKind::WrongType { .. }), "{err}");
    let err = root
        .rename_dir("b", &root, "link")
        .expect_err("onto a link");
    assert!(matches!(err.kind(), ErrorKind::WrongType { .. }), "{err}");
    // Onto a non-empty directory: the OS's error, nothing moved.
    root.create_dir("full")
        .expect("full")
        .write("x", b"1", &Options::new().durability(Durability::NoSync))
        .expect("x");
    let err = root.rename_dir("b", &root, "full").expect_err("not empty");
    assert!(
        err.io_error()
            .and_then(std::io::Error::raw_os_error)
            .is_some(),
        "{err}"
    );
    assert_eq!(root.kind("b").expect("kind"), Some(FileKind::Dir));
}
