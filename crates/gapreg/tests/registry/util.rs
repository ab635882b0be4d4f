//! Helpers shared by the integration tests.

use std::process::Child;

use gapreg::{Config, Registry};

/// This test binary's child processes (see `testkit`).
pub const CHILDREN: testkit::Children = testkit::Children::new("GAPREG_CHILD");

/// Starts this test binary again, running only the ignored test `name` with `param`.
pub fn spawn_child(name: &str, param: &str) -> Child {
    CHILDREN.spawn(name, param)
}

/// The parameter passed to this process if it is a child.
pub fn child_param() -> Option<String> {
    CHILDREN.param()
}

/// Lines `<TAG> <rest>` a child printed (libtest may glue its own text in front of the first).
pub fn printed(stdout: &[u8], tag: &str) -> Vec<String> {
    let tag = format!("{tag} ");
    String::from_utf8_lossy(stdout)
        .lines()
        .filter_map(|line| {
            line.split_once(&tag)
                .map(|(_, rest)| rest.trim().to_owned())
        })
        .filter(|rest| !rest.is_empty())
        .collect()
}

/// A fresh registry in a temp dir (not fsynced: these tests kill processes, not machines).
pub fn scratch() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let reg = Registry::init(dir.path(), fast_config()).expect("init");
    (dir, reg)
}

/// The default config without fsync of gap files.
pub fn fast_config() -> Config {
    Config {
        durable: false,
        ..Config::default()
    }
}

/// Writes a loop file by hand, as a person would.
pub fn write_loop(reg: &Registry, id: &str, status: &str, depends_on: &[&str]) {
    let text = loop_text(id, status, depends_on);
    let dir = reg.loops_dir();
    std::fs::create_dir_all(&dir).expect("loops dir");
    std::fs::write(dir.join(format!("{id}.md")), text).expect("write loop");
}

/// A loop file's text, as a person writes it.
pub fn loop_text(id: &str, status: &str, depends_on: &[&str]) -> String {
    format!(
        "---\nloop_id: {id}\ncreated: 2026-02-28\nstatus: {status}\nowner: \"@ronny\"\n\
         scope: gaps\npriority: medium\nobjective: Test loop {id}: by hand\ndepends_on: [{}]\n---\n\n# {id}\n",
        depends_on.join(", ")
    )
}

/// The ids of every gap, in registry order.
pub fn all_ids(reg: &Registry) -> Vec<String> {
    reg.list(&gapreg::Filter::default())
        .expect("list")
        .into_iter()
        .map(|g| g.id)
        .collect()
}

/// The number after the last dash.
pub fn number(id: &str) -> u64 {
    id.rsplit_once('-')
        .and_then(|(_, n)| n.parse().ok())
        .expect("PREFIX-NUMBER id")
}
