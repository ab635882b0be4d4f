//! Where a password comes from when the address has none: `PGPASSWORD`, then the password
//! file (`PGPASSFILE`, else `~/.pgpass`), as libpq reads them. Never from a tracked file.

use std::path::PathBuf;

/// The largest password file read.
const MAX_PGPASS_BYTES: u64 = 1 << 20;

/// The password for `user` on `host:port/database`, if the environment or the password file
/// has one.
pub(crate) fn lookup(host: &str, port: u16, database: &str, user: &str) -> Option<String> {
    if let Some(pw) = std::env::var_os("PGPASSWORD") {
        return pw.into_string().ok();
    }
    let path = match std::env::var_os("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = read_private(&path)?;
    find(&text, host, port, database, user)
}

/// The file's text, if it is a regular file readable by its owner only (libpq ignores a
/// password file others can read; so do we).
fn read_private(path: &std::path::Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() || meta.permissions().mode() & 0o077 != 0 {
        return None;
    }
    let mut text = String::new();
    std::fs::File::open(path)
        .ok()?
        .take(MAX_PGPASS_BYTES)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The password of the first line of a password file matching the connection:
/// `host:port:database:user:password`, `*` matching anything, `\` escaping `:` and `\`.
pub(crate) fn find(
    text: &str,
    host: &str,
    port: u16,
    database: &str,
    user: &str,
) -> Option<String> {
    let port = port.to_string();
    text.lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(fields)
        .find(|f| {
            [host, port.as_str(), database, user]
                .iter()
                .zip(f.iter())
                .all(|(want, have)| have == "*" || have == want)
        })
        .map(|mut f| f.swap_remove(4))
}

/// The five fields of a line, unescaped; `None` for a line without five.
fn fields(line: &str) -> Option<Vec<String>> {
    let mut out = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.last_mut()?.push(chars.next().unwrap_or('\\')),
            ':' if out.len() < 5 => out.push(String::new()),
            c => out.last_mut()?.push(c),
        }
    }
    (out.len() == 5).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::find;

    #[test]
    fn the_first_matching_line_wins_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.example:5432:other:me:no\n\
                    db.example:*:gapreg:me:p\\:w\\\\d\n\
                    *:*:*:*:fallback\n";
        assert_eq!(
            find(text, "db.example", 5433, "gapreg", "me").as_deref(),
            Some("p:w\\d")
        );
        assert_eq!(
            find(text, "elsewhere", 1, "x", "y").as_deref(),
            Some("fallback")
        );
        assert_eq!(find("a:b:c\n", "a", 1, "c", "d"), None);
    }
}
