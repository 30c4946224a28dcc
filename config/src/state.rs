//! State files (the subnet file, weftd's `pods.json` and `vtep_mac`): written so that a crash at any
//! moment leaves either the old file or the new one, and never lost by a file that does not parse.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Write `bytes` to `path` atomically and durably: a temporary file in the same directory, fsync'd,
/// renamed over `path`, then the directory fsync'd so the rename itself survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("state");
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Move a file that cannot be used out of the way (`NAME.corrupt-UNIXTIME`), so nothing overwrites it
/// and a person can look at it. Returns where it went.
pub fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut to =
        path.with_file_name(format!("{}.corrupt-{secs}", path.file_name().and_then(|n| n.to_str()).unwrap_or("state")));
    let mut n = 1;
    while to.exists() {
        to = path.with_file_name(format!(
            "{}.corrupt-{secs}-{n}",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
        ));
        n += 1;
    }
    std::fs::rename(path, &to)?;
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_then_move_aside() {
        let dir = std::env::temp_dir().join(format!("weft-state-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let p = dir.join("pods.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "no temporary file left");
        let aside = move_aside(&p).unwrap();
        assert!(!p.exists());
        assert_eq!(std::fs::read(&aside).unwrap(), b"two");
        assert!(aside.file_name().unwrap().to_str().unwrap().starts_with("pods.json.corrupt-"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
