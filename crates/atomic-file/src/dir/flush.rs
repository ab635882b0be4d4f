//! Making many writes durable at once.

use crate::dir::Dir;
use crate::error::{Error, Result, Step};

impl Dir {
    /// Makes every write so far to this directory's file system durable at once — the data
    /// and names of every file on it, this process's and others' — with one `syncfs(2)`
    /// on Linux, where the kernel (5.8 and later) reports any writeback error since this
    /// directory was opened. One call instead of an `fsync` per file: a batch of 1,000 new
    /// files costs one journal commit and one device flush instead of 1,000 of each.
    ///
    /// Elsewhere, and if the call is refused, it fails with [`Step::SyncFile`]: the caller
    /// syncs each file instead ([`std::fs::File::sync_all`]).
    ///
    /// The cost grows with everything dirty on the file system, so it suits a batch, not
    /// one small file on a busy disk.
    ///
    /// ```
    /// let tmp = tempfile::tempdir()?;
    /// let dir = atomic_file::dir::Dir::open(tmp.path())?;
    /// dir.write("a.txt", b"one", &atomic_file::Options::new().durability(atomic_file::Durability::NoSync))?;
    /// dir.sync_filesystem()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync_filesystem(&self) -> Result<()> {
        #[cfg(target_os = "linux")]
        let done = rustix::fs::syncfs(self.fd()).map_err(std::io::Error::from);
        #[cfg(not(target_os = "linux"))]
        let done: std::io::Result<()> = Err(std::io::ErrorKind::Unsupported.into());
        done.map_err(|e| Error::io(self.path(), Step::SyncFile, e))
    }
}
