//! Atomic file writes: every file thinkscope writes (sessions, settings, exports, lab CSV/SVG,
//! quantized models, downloads) goes through here.
//!
//! The bytes go to a temporary file in the destination's folder, which is flushed and fsynced,
//! then renamed over the destination, and the folder is fsynced so the rename itself survives a
//! power cut. A reader therefore sees either the old file or the whole new one: a crash, a
//! `kill -9` or a full disk mid-write leaves the previous version intact. A failed or abandoned
//! write removes its temporary file.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{EngineError, Result};

/// Prefix of every temporary file, so stale ones (left by a killed process) are recognisable.
pub const TEMP_PREFIX: &str = ".thinkscope-tmp-";

/// A file being written that replaces `dest` only when [`AtomicFile::commit`] succeeds.
///
/// Dropping it without committing (an error, a panic) removes the temporary file and leaves
/// `dest` as it was.
pub struct AtomicFile {
    dest: PathBuf,
    tmp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Start writing a replacement for `dest` (its folder must exist).
    pub fn create(dest: &Path) -> Result<Self> {
        let dest = resolve_symlink(dest);
        let dir = parent_dir(&dest);
        let name = dest
            .file_name()
            .ok_or_else(|| {
                EngineError::io(
                    &dest,
                    io::Error::new(io::ErrorKind::InvalidInput, "not a file path"),
                )
            })?
            .to_string_lossy()
            .into_owned();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!("{TEMP_PREFIX}{}-{n}-{name}", std::process::id()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .map_err(|e| EngineError::io(&tmp, e))?;
        // A replaced file keeps its permissions (a private session stays private).
        if let Ok(meta) = std::fs::metadata(&dest) {
            let _ = file.set_permissions(meta.permissions());
        }
        Ok(Self {
            dest,
            tmp,
            file: Some(BufWriter::with_capacity(1 << 16, file)),
        })
    }

    /// The file this one will replace.
    pub fn dest(&self) -> &Path {
        &self.dest
    }

    /// Flush, fsync, rename over the destination and fsync the folder.
    pub fn commit(mut self) -> Result<()> {
        let Some(writer) = self.file.take() else {
            return Err(EngineError::io(
                &self.dest,
                io::Error::other("already committed"),
            ));
        };
        let tmp = self.tmp.clone();
        let file = writer
            .into_inner()
            .map_err(|e| EngineError::io(&tmp, e.into_error()))?;
        file.sync_all().map_err(|e| EngineError::io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &self.dest).map_err(|e| EngineError::io(&self.dest, e))?;
        // The temporary name is gone: nothing left for Drop to remove.
        self.tmp = PathBuf::new();
        sync_dir(&parent_dir(&self.dest)).map_err(|e| EngineError::io(&self.dest, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.writer()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer()?.flush()
    }
}

impl Seek for AtomicFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.writer()?.seek(pos)
    }
}

impl AtomicFile {
    fn writer(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the file was already committed"))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(writer) = self.file.take() {
            // Unflushed bytes only go to the temporary file, which is removed next.
            drop(writer);
        }
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Replace `dest` with `bytes`, atomically.
pub fn write(dest: &Path, bytes: &[u8]) -> Result<()> {
    write_with(dest, |w| w.write_all(bytes))
}

/// Replace `dest` with what `fill` writes, atomically; if `fill` fails, `dest` is untouched and
/// the error is returned (naming `dest`).
pub fn write_with(dest: &Path, fill: impl FnOnce(&mut AtomicFile) -> io::Result<()>) -> Result<()> {
    let mut file = AtomicFile::create(dest)?;
    fill(&mut file).map_err(|e| EngineError::io(file.dest(), e))?;
    file.commit()
}

/// Remove temporary files that a killed process left in `dir` (best effort): those whose
/// writing process is gone (checked through `/proc` on Linux), or older than a day elsewhere.
/// Temporary files of this process and of live ones are never touched.
pub fn remove_stale_temps(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(rest) = name.strip_prefix(TEMP_PREFIX) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        let proc_fs = Path::new("/proc/self").exists();
        let stale = if proc_fs {
            !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 24 * 3600)
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Make a completed rename durable: fsync the folder that holds the entry.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        // Windows cannot open a folder as a file; NTFS journals the rename itself.
        let _ = dir;
        Ok(())
    }
}

/// Rename `from` over `to` (both in the same folder) and fsync the folder: for a file that was
/// written and checked elsewhere first (a verified download).
pub fn rename_durably(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| EngineError::io(to, e))?;
    sync_dir(&parent_dir(to)).map_err(|e| EngineError::io(to, e))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A symlinked destination is replaced at its target, not turned into a plain file.
fn resolve_symlink(dest: &Path) -> PathBuf {
    match std::fs::symlink_metadata(dest) {
        Ok(m) if m.file_type().is_symlink() => {
            std::fs::canonicalize(dest).unwrap_or_else(|_| dest.to_owned())
        }
        _ => dest.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temps(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .expect("dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(TEMP_PREFIX))
            .collect()
    }

    #[test]
    fn replaces_and_leaves_no_temp() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("a.json");
        write(&p, b"old").expect("write");
        write(&p, b"new contents").expect("write");
        assert_eq!(std::fs::read(&p).expect("read"), b"new contents");
        assert!(temps(d.path()).is_empty());
    }

    #[test]
    fn a_failing_writer_keeps_the_old_file() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("session.json");
        write(&p, b"the previous version").expect("write");
        let err = write_with(&p, |w| {
            w.write_all(&[b'x'; 100_000])?;
            Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "no space left on device",
            ))
        })
        .expect_err("must fail");
        assert!(err.to_string().contains("no space left"), "{err}");
        assert!(err.to_string().contains("session.json"), "{err}");
        assert_eq!(std::fs::read(&p).expect("read"), b"the previous version");
        assert!(temps(d.path()).is_empty(), "the temporary file is removed");
    }

    #[test]
    fn a_missing_folder_is_an_error_naming_the_path() {
        let d = tempfile::tempdir().expect("tempdir");
        let p = d.path().join("no/such/dir/x.csv");
        let err = write(&p, b"x").expect_err("must fail");
        assert!(err.to_string().contains("no/such/dir"), "{err}");
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_is_written_through() {
        let d = tempfile::tempdir().expect("tempdir");
        let target = d.path().join("real.json");
        let link = d.path().join("link.json");
        write(&target, b"1").expect("write");
        std::os::unix::fs::symlink(&target, &link).expect("symlink");
        write(&link, b"2").expect("write");
        assert!(std::fs::symlink_metadata(&link)
            .expect("meta")
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&target).expect("read"), b"2");
    }
}
