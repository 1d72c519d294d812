//! O2: dump files. Written to a temporary name and renamed, so that a reader (or a crash during
//! the write) never sees half a file.
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::gpu_monitor::GpuMonitor;
use super::lock;
use crate::error::{Error, Result};

/// Makes temporary names unique among this process's threads.
static SEQUENCE: AtomicU64 = AtomicU64::new(0);
/// Serialises choosing a free final name and renaming onto it, so that two dumps in the same
/// millisecond keep both files (other processes differ by pid).
static PUBLISH: Mutex<()> = Mutex::new(());

impl GpuMonitor {
    /// Writes [`GpuMonitor::dump_json`] to `dir/vramguard-dump-<unix_ms>-<pid>.json` and returns
    /// the path. An I/O failure is [`Error::Io`] (VRAM-E017) naming the directory.
    pub fn write_dump(&self, dir: &Path) -> Result<PathBuf> {
        write_json(dir, &self.dump_json())
    }
}

pub(super) fn write_json(dir: &Path, value: &Value) -> Result<PathBuf> {
    let io_error = |what: &str, error: std::io::Error| {
        Error::Io(format!("cannot {what} a dump in {}: {error}", dir.display()))
    };
    let text = serde_json::to_vec_pretty(value).map_err(|e| Error::Internal(format!("dump JSON: {e}")))?;
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let stem = format!("vramguard-dump-{millis}-{}", std::process::id());
    let temporary = dir.join(format!(".{stem}-{}.json.tmp", SEQUENCE.fetch_add(1, Ordering::Relaxed)));
    let written = fs::File::create(&temporary).and_then(|mut file| {
        file.write_all(&text)?;
        file.sync_all()
    });
    if let Err(error) = written {
        let _ = fs::remove_file(&temporary);
        return Err(io_error("write", error));
    }
    let _publishing = lock(&PUBLISH);
    let path = (0u32..)
        .map(|n| dir.join(if n == 0 { format!("{stem}.json") } else { format!("{stem}-{n}.json") }))
        .find(|path| !path.exists())
        .unwrap_or_else(|| dir.join(format!("{stem}.json")));
    fs::rename(&temporary, &path).map_err(|error| {
        let _ = fs::remove_file(&temporary);
        io_error("publish", error)
    })?;
    Ok(path)
}
