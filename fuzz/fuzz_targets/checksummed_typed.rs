//! The checksummed JSON read path: checksum envelope first, then JSON, into a
//! `serde_json::Value` and into a typed struct ([`gapreg_fuzz::Doc`]).
//!
//! The first input byte picks the mode; the rest is either
//! - (even) the raw file bytes, which almost never carry a correct CRC, so this mode covers the
//!   envelope's rejection paths, or
//! - (odd) a payload that the target wraps with `checksum::encode`, so the JSON decoder behind a
//!   valid envelope is reached on every input.
//!
//! Each input is checked twice: in memory (`checksum::decode` then `Format::Json.decode`), and
//! through the real file API (`Options::new().checksum(true)` `read` / `read_value`, on a file
//! `$TMPDIR/gapreg-fuzz/x-<pid>.json`, deleted again after every input).
//!
//! Asserts, beyond "never panics":
//! - the file API agrees with the in-memory path: the same payload, the same `Corruption`
//!   (as `ErrorKind::Corrupt`), and the same decoded value or a `Decode` error;
//! - an envelope failure is never reported as a JSON error and vice versa;
//! - a `Doc` that was read is written back with `write_value` (checksummed) as exactly
//!   `checksum::encode(Format::Json.encode(doc))`, read back equal, and survives a locked
//!   `update_value` that sees the same `Doc`.
#![no_main]

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use atomic_file::{Durability, ErrorKind, Format, Options, checksum};
use gapreg_fuzz::Doc;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// The data file: `$TMPDIR/gapreg-fuzz/x-<pid>.json`, one per process so that parallel jobs
/// (`-j N`, `-fork=N`) do not share it. It is deleted after every input (its `.lock` sibling
/// too), so only the empty directory stays behind.
fn data_path() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = std::env::temp_dir().join("gapreg-fuzz");
        std::fs::create_dir_all(&dir).expect("create the fuzz work directory");
        dir.join(format!("x-{}.json", std::process::id()))
    })
}

fn options() -> Options {
    // NoSync: the syncs do not change what is read back, and would cost milliseconds per input.
    Options::new().checksum(true).durability(Durability::NoSync)
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let file: Cow<[u8]> = if mode & 1 == 0 {
        Cow::Borrowed(rest)
    } else {
        Cow::Owned(checksum::encode(rest))
    };

    // In memory.
    let payload = checksum::decode(&file);
    if mode & 1 == 1 {
        assert_eq!(payload, Ok(rest), "a freshly encoded envelope is rejected");
    }
    let value = payload
        .as_ref()
        .ok()
        .map(|p| Format::Json.decode::<Value>("x.json", p));
    let doc = payload
        .as_ref()
        .ok()
        .map(|p| Format::Json.decode::<Doc>("x.json", p));

    // Through the file API.
    let path = data_path();
    std::fs::write(path, &file).expect("write the fuzz input");
    let opts = options();

    let read = opts.read(path);
    match (&payload, &read) {
        (Ok(p), Ok(r)) => assert_eq!(p, r, "Options::read returned a different payload"),
        (Err(c), Err(e)) => assert_corrupt(e, c),
        _ => panic!("in memory: {payload:?}; Options::read: {read:?}"),
    }

    let read_value = opts.read_value::<Value>(path, Format::Json);
    match (&payload, &value, &read_value) {
        (Err(c), None, Err(e)) => assert_corrupt(e, c),
        (Ok(_), Some(Ok(v)), Ok(r)) => assert_eq!(v, r),
        (Ok(_), Some(Err(_)), Err(e)) => assert_json_decode_error(e),
        _ => panic!("in memory: {value:?}; read_value: {read_value:?}"),
    }

    let read_doc = opts.read_value::<Doc>(path, Format::Json);
    match (&payload, &doc, &read_doc) {
        (Err(c), None, Err(e)) => assert_corrupt(e, c),
        (Ok(_), Some(Ok(d)), Ok(r)) => {
            assert_eq!(d, r);
            write_back(path, d);
        }
        (Ok(_), Some(Err(_)), Err(e)) => assert_json_decode_error(e),
        _ => panic!("in memory: {doc:?}; read_value: {read_doc:?}"),
    }

    let _ = std::fs::remove_file(path);
});

/// Writes `doc` back through the checksummed writer and reads it again.
fn write_back(path: &Path, doc: &Doc) {
    let opts = options();
    opts.write_value(path, Format::Json, doc)
        .expect("write_value");
    let expected = checksum::encode(&Format::Json.encode(path, doc).expect("encode"));
    assert_eq!(
        std::fs::read(path).expect("read back"),
        expected,
        "checksummed file bytes"
    );
    let back: Doc = opts
        .read_value(path, Format::Json)
        .expect("read_value after write_value");
    assert_eq!(&back, doc);

    let written = opts
        .update_value(path, Format::Json, |old: Option<Doc>| {
            assert_eq!(old.as_ref(), Some(doc), "update_value saw a different Doc");
            Ok::<_, atomic_file::Error>(doc.clone())
        })
        .expect("update_value");
    assert_eq!(&written, doc);
    assert_eq!(
        std::fs::read(path).expect("read back"),
        expected,
        "bytes after update_value"
    );

    let mut lock_name = std::ffi::OsString::from(".");
    lock_name.push(path.file_name().expect("a file name"));
    lock_name.push(".lock");
    let _ = std::fs::remove_file(path.with_file_name(lock_name));
}

fn assert_corrupt(e: &atomic_file::Error, corruption: &checksum::Corruption) {
    match e.kind() {
        ErrorKind::Corrupt(c) => assert_eq!(c, corruption),
        other => panic!("expected Corrupt({corruption:?}), got {other:?}"),
    }
    assert!(e.is_corrupt());
}

fn assert_json_decode_error(e: &atomic_file::Error) {
    match e.kind() {
        ErrorKind::Decode {
            format: Format::Json,
            ..
        } => {}
        other => panic!("expected a JSON Decode error, got {other:?}"),
    }
}
