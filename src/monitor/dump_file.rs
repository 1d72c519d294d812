//! O2: dump files. Written to a temporary file and published under the final name, so that a
//! reader (or a crash during the write) never sees half a file. R5: the temporary file is created
//! with `O_EXCL` (never through a planted symbolic link, never truncating an existing file) and
//! mode 0600, under a name no other user can predict; it is fsynced before it is published, and
//! the directory after, so that a dump reported written survives a crash.
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::lock;
use crate::error::{Error, Result};

/// Mixed into temporary names, so that two names this process makes always differ.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);
/// Serialises choosing a free final name and publishing onto it, so that two dumps in the same
/// millisecond keep both files (other processes differ by pid).
static PUBLISH: Mutex<()> = Mutex::new(());
/// Temporary names tried before giving up: each is 128 random bits, so a second try only ever
/// happens when someone planted a file under a name that was guessed.
const TEMPORARY_ATTEMPTS: u32 = 16;
/// Final names tried (`…-1.json`, `…-2.json`, …) before giving up.
const FINAL_ATTEMPTS: u32 = 10_000;

/// Writes `value` to `dir/vramguard-dump-<unix_ms>-<pid>.json` (mode 0600) as described above,
/// and returns the path. An I/O failure is [`Error::Io`] (VRAM-E017) naming the directory.
pub(super) fn write_json(dir: &Path, value: &Value) -> Result<PathBuf> {
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(format!("dump JSON: {e}")))?;
    write_file(dir, &text, "json")
}

/// Writes `bytes` to `dir/vramguard-dump-<unix_ms>-<pid>.<extension>` (mode 0600) as described
/// above, and returns the path. An I/O failure is [`Error::Io`] (VRAM-E017) naming the directory.
pub(super) fn write_file(dir: &Path, text: &[u8], extension: &str) -> Result<PathBuf> {
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    write_named(dir, &format!("vramguard-dump-{millis}-{}", std::process::id()), text, extension)
}

/// Writes `bytes` beside the dump at `dump` under the same name with `extension` (the first free
/// `name.ext`, `name-1.ext`, …), so that the files of one dump pair up.
pub(super) fn write_beside(dump: &Path, text: &[u8], extension: &str) -> Result<PathBuf> {
    let dir = dump.parent().unwrap_or(Path::new("."));
    let stem = dump.file_stem().map_or("vramguard-dump".into(), |s| s.to_string_lossy());
    write_named(dir, &stem, text, extension)
}

fn write_named(dir: &Path, stem: &str, text: &[u8], extension: &str) -> Result<PathBuf> {
    let io_error =
        |what: &str, error: std::io::Error| Error::Io(format!("cannot {what} a dump in {}: {error}", dir.display()));
    let (temporary, mut file) = create_temporary(dir).map_err(|e| io_error("create", e))?;
    let written = file.write_all(text).and_then(|()| file.sync_all());
    drop(file);
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", error));
    }
    let published = {
        let _publishing = lock(&PUBLISH);
        publish(dir, &temporary, stem, extension)
    };
    let path = published.map_err(|error| {
        let _ = fs::remove_file(&temporary);
        io_error("publish", error)
    })?;
    sync_directory(dir).map_err(|e| io_error("sync the directory of", e))?;
    Ok(path)
}

/// A new file of mode 0600 under an unpredictable name in `dir`, created with `O_EXCL`: a name
/// that exists already, as a file or a symbolic link, is never opened; another name is tried.
fn create_temporary(dir: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut last = None;
    for _ in 0..TEMPORARY_ATTEMPTS {
        let path = dir.join(format!(".vramguard-dump-{:032x}.tmp", unpredictable()));
        let opened = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        match opened {
            Ok(file) => return Ok((path, file)),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => last = Some(error),
            Err(error) => return Err(error),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("no free temporary name")))
}

/// Publishes `temporary` under the first free name `stem.ext`, `stem-1.ext`, …, never
/// replacing anything there: a hard link fails on an existing name, file or symbolic link alike.
/// Where the file system has no hard links, it is renamed onto a name that does not exist (a
/// rename replaces a planted link itself, never what it points to).
fn publish(dir: &Path, temporary: &Path, stem: &str, ext: &str) -> std::io::Result<PathBuf> {
    for n in 0..FINAL_ATTEMPTS {
        let path = dir.join(if n == 0 { format!("{stem}.{ext}") } else { format!("{stem}-{n}.{ext}") });
        match fs::hard_link(temporary, &path) {
            Ok(()) => {
                let _ = fs::remove_file(temporary); // published either way; a stray name is harmless
                return Ok(path);
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(_) if fs::symlink_metadata(&path).is_err() => {
                fs::rename(temporary, &path)?;
                return Ok(path);
            }
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::new(
        std::io::ErrorKind::AlreadyExists,
        format!("{stem}.{ext} and {FINAL_ATTEMPTS} other names exist"),
    ))
}

/// fsync of the directory, so that the new name is on disk. File systems that cannot sync a
/// directory (they answer EINVAL) have nothing more to do.
fn sync_directory(dir: &Path) -> std::io::Result<()> {
    match fs::File::open(dir).and_then(|d| d.sync_all()) {
        Err(error) if error.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    }
}

/// 128 bits from the kernel's random source; where that fails, a mix of the pid, a counter and
/// the clock's nanoseconds (unique, if guessable by someone watching closely).
fn unpredictable() -> u128 {
    let mut bytes = [0u8; 16];
    // SAFETY: `bytes` is a valid writable buffer of the length passed.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    let sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
    if got == bytes.len() as isize {
        return u128::from_le_bytes(bytes) ^ u128::from(sequence);
    }
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    (u128::from(std::process::id()) << 96) ^ (u128::from(sequence) << 64) ^ nanos
}
