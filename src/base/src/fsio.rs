//! Crash-safe file writes: the one behaviour every crate uses for durable state.
//!
//! [`write_atomic`] writes `<path>.tmp` (mode 0600: the data directory is the node's own),
//! fsyncs it, renames it over `path` and fsyncs the directory, so after a crash `path` holds
//! either the old or the new bytes, and a successful return means the new bytes survive power
//! loss. [`AtomicBatch`] does the same for several files of one directory with a single
//! directory fsync at [`AtomicBatch::commit`] (a chunk's three files, say). A leftover `*.tmp`
//! is a write that did not reach its rename: readers ignore it, openers may delete it.
//! Every error carries the operation, the path and the I/O error as its source.
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// A file-system operation that failed, with the path it was about.
#[derive(Debug, thiserror::Error)]
#[error("{op} {}: {source}", path.display())]
pub struct FsError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FsError {
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> FsError {
        FsError { op, path: path.into(), source }
    }

    /// True when the write failed for lack of space (ENOSPC) or quota (EDQUOT).
    pub fn is_disk_full(&self) -> bool {
        io_is_disk_full(&self.source)
    }
}

/// True when `e` is ENOSPC (no space) or EDQUOT (quota exceeded).
pub fn io_is_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

/// Bytes available to this (unprivileged) process on the file system holding `path` (statvfs
/// `f_bavail × f_frsize`).
pub fn free_bytes(path: &Path) -> Result<u64, FsError> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| FsError::new("statvfs", path, std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
    // SAFETY: `c` is a valid NUL-terminated string and `st` points to writable statvfs storage.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(FsError::new("statvfs", path, std::io::Error::last_os_error()));
    }
    // SAFETY: statvfs returned 0, so it filled the struct.
    let st = unsafe { st.assume_init() };
    // The field types differ between targets (u32 on some 32-bit libcs).
    #[allow(clippy::unnecessary_cast)]
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// Mode of every file written here: only the node's user reads its state.
pub const FILE_MODE: u32 = 0o600;

/// The temporary name `path` is written under before its rename: `<path>.tmp`.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".tmp");
    PathBuf::from(s)
}

/// Create `dir` and its missing parents with mode 0700 (only the node's user reads its state),
/// and fsync the parent, so the new directory is durable; nothing to do when it exists.
pub fn create_private_dir(dir: &Path) -> Result<(), FsError> {
    if dir.is_dir() {
        return Ok(());
    }
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FsError::new("create directory", dir, e))?;
    sync_dir(parent(dir))
}

/// fsync a directory, so the renames and creations in it are durable.
pub fn sync_dir(dir: &Path) -> Result<(), FsError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| FsError::new("fsync directory", dir, e))
}

/// Write `bytes` to `<path>.tmp`, fsync and rename it over `path`; the directory is not synced.
fn write_renamed(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(&tmp)
        .map_err(|e| FsError::new("create", &tmp, e))?;
    // A failed write (a full disk) must not leave a partial temporary file taking space.
    let written = f.write_all(bytes).map_err(|e| FsError::new("write", &tmp, e));
    let synced = written.and_then(|()| f.sync_all().map_err(|e| FsError::new("fsync", &tmp, e)));
    drop(f);
    if let Err(e) = synced {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    fs::rename(&tmp, path).map_err(|e| FsError::new("rename", path, e))
}

fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Durably replace `path` with `bytes` (see the module doc).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FsError> {
    write_renamed(path, bytes)?;
    sync_dir(parent(path))
}

/// Several atomic writes into one directory, made durable together by one directory fsync.
/// Until [`commit`](AtomicBatch::commit) returns, a crash may keep any subset of them.
#[must_use = "the writes are durable only after commit()"]
pub struct AtomicBatch<'a> {
    dir: &'a Path,
}

impl<'a> AtomicBatch<'a> {
    pub fn new(dir: &'a Path) -> AtomicBatch<'a> {
        AtomicBatch { dir }
    }

    /// Atomically replace `path`, a file of the batch's directory, with `bytes`.
    pub fn write(&mut self, path: &Path, bytes: &[u8]) -> Result<(), FsError> {
        debug_assert_eq!(parent(path), self.dir, "AtomicBatch::write outside its directory");
        write_renamed(path, bytes)
    }

    /// fsync the directory: every write of the batch is durable.
    pub fn commit(self) -> Result<(), FsError> {
        sync_dir(self.dir)
    }
}

/// A file written in pieces (a `Write + Seek` stream too large to hold in memory) and made
/// durable and visible under its name at once, as [`write_atomic`] does for bytes: it is written
/// as `<path>.tmp` (mode 0600); [`commit`](AtomicFile::commit) fsyncs it, renames it over `path`
/// and fsyncs the directory. Dropped without a commit (an error on the way), the `.tmp` is
/// removed, so `path` never holds a partial file.
#[must_use = "the file appears under its name only after commit()"]
pub struct AtomicFile {
    path: PathBuf,
    tmp: PathBuf,
    file: File,
    committed: bool,
}

impl AtomicFile {
    /// Create `<path>.tmp` (truncating a leftover one).
    pub fn create(path: &Path) -> Result<AtomicFile, FsError> {
        let tmp = tmp_path(path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .mode(FILE_MODE)
            .open(&tmp)
            .map_err(|e| FsError::new("create", &tmp, e))?;
        Ok(AtomicFile { path: path.to_path_buf(), tmp, file, committed: false })
    }

    /// The temporary file to write (and seek) in.
    pub fn file(&mut self) -> &mut File {
        &mut self.file
    }

    /// The name the file gets at [`commit`](AtomicFile::commit).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// fsync the file, rename it over its name and fsync the directory.
    pub fn commit(mut self) -> Result<(), FsError> {
        self.file.sync_all().map_err(|e| FsError::new("fsync", &self.tmp, e))?;
        fs::rename(&self.tmp, &self.path).map_err(|e| FsError::new("rename", &self.path, e))?;
        self.committed = true;
        sync_dir(parent(&self.path))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn atomic_file_appears_only_at_commit_and_leaves_nothing_when_dropped() {
        use std::io::{Seek, SeekFrom};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.mcap");
        let mut f = AtomicFile::create(&p).unwrap();
        f.file().write_all(b"hello world").unwrap();
        f.file().seek(SeekFrom::Start(0)).unwrap();
        f.file().write_all(b"J").unwrap();
        assert!(!p.exists());
        f.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"Jello world");
        assert!(!tmp_path(&p).exists());
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let mut g = AtomicFile::create(&p).unwrap();
        g.file().write_all(b"partial").unwrap();
        drop(g);
        assert_eq!(fs::read(&p).unwrap(), b"Jello world", "a dropped write leaves the old file");
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn replaces_whole_with_mode_0600_and_no_tmp_left() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("state.json");
        write_atomic(&p, b"old").unwrap();
        write_atomic(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(!tmp_path(&p).exists());
    }

    #[test]
    fn batch_writes_several_files_then_commits() {
        let d = tempfile::tempdir().unwrap();
        let mut b = AtomicBatch::new(d.path());
        b.write(&d.path().join("a.bin"), b"1").unwrap();
        b.write(&d.path().join("a.json"), b"2").unwrap();
        b.commit().unwrap();
        assert_eq!(fs::read(d.path().join("a.bin")).unwrap(), b"1");
        assert_eq!(fs::read(d.path().join("a.json")).unwrap(), b"2");
    }

    #[test]
    fn errors_name_the_operation_and_path() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("missing-dir").join("x.json");
        let e = write_atomic(&p, b"x").unwrap_err();
        assert_eq!(e.op, "create");
        assert!(e.to_string().contains("missing-dir/x.json.tmp"), "{e}");
        assert!(std::error::Error::source(&e).is_some());
        assert!(sync_dir(&d.path().join("nope")).unwrap_err().to_string().starts_with("fsync directory"));
    }
}
