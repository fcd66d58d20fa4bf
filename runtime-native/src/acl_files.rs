//! The ACL files on disk (`aclEnable=true`): found, read, watched and written for the broker.
//!
//! As RocketMQ 4.9.x: the default file (`conf/plain_acl.yml`; broker.conf `aclPlainFile`, like
//! RocketMQ's `rocketmq.acl.plain.file` property), then every `*.yml` / `*.yaml` under the
//! `acl/` directory beside it, recursively, in path order. A missing default file is an empty
//! ACL (every request refused but from white-listed addresses). The files are looked at every
//! [`ACL_WATCH_INTERVAL`] (RocketMQ's period) and read again when any appeared, went or
//! changed (modification time or length); a change that does not parse is logged and the ACL
//! stays as it was.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
pub const ACL_WATCH_INTERVAL: Duration = Duration::from_secs(5);

/// What a file looked like when last read.
type Stamp = (Option<SystemTime>, u64);

/// The ACL files of one broker.
#[derive(Debug)]
pub struct AclFiles {
    default_file: PathBuf,
    last_seen: BTreeMap<PathBuf, Stamp>,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok(), meta.len()))
}

fn yaml_files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files_under(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

impl AclFiles {
    pub fn new(default_file: PathBuf) -> Self {
        Self {
            default_file,
            last_seen: BTreeMap::new(),
        }
    }

    /// Every file, the default first.
    fn paths(&self) -> Vec<PathBuf> {
        let mut more = Vec::new();
        if let Some(dir) = self.default_file.parent() {
            yaml_files_under(&dir.join("acl"), &mut more);
        }
        more.sort();
        more.retain(|p| *p != self.default_file);
        std::iter::once(self.default_file.clone())
            .chain(more)
            .collect()
    }

    fn stamps(&self) -> BTreeMap<PathBuf, Stamp> {
        self.paths()
            .into_iter()
            .filter_map(|p| stamp(&p).map(|s| (p, s)))
            .collect()
    }

    /// Reads every file: (path, contents), the default first (empty when it does not exist).
    pub fn read(&mut self) -> io::Result<Vec<(String, String)>> {
        self.last_seen = self.stamps();
        let mut out = Vec::new();
        for path in self.paths() {
            let text = match std::fs::read_to_string(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound && path == self.default_file => {
                    String::new()
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!("cannot read ACL file {}: {e}", path.display()),
                    ))
                }
            };
            out.push((path.display().to_string(), text));
        }
        Ok(out)
    }

    /// Whether any file appeared, went or changed since the last [`Self::read`].
    pub fn changed(&self) -> bool {
        self.stamps() != self.last_seen
    }

    /// Replaces one file whole: written aside, synced, renamed over it.
    pub fn write(path: &Path, contents: &str) -> io::Result<()> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let aside = dir.join(format!(
            ".{}.tmp",
            path.file_name().and_then(|n| n.to_str()).unwrap_or("acl")
        ));
        {
            let mut f = std::fs::File::create(&aside)?;
            f.write_all(contents.as_bytes())?;
            f.sync_all()?;
        }
        std::fs::rename(&aside, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_file_then_the_acl_directory_and_changes_are_seen() {
        let dir = tempfile::tempdir().unwrap();
        let default_file = dir.path().join("conf/plain_acl.yml");
        let mut files = AclFiles::new(default_file.clone());
        // Missing: an empty ACL.
        let read = files.read().unwrap();
        assert_eq!(read.len(), 1);
        assert_eq!(read[0].1, "");
        assert!(!files.changed());
        AclFiles::write(&default_file, "accounts: []\n").unwrap();
        AclFiles::write(&dir.path().join("conf/acl/team/b.yaml"), "x: 1\n").unwrap();
        AclFiles::write(&dir.path().join("conf/acl/a.yml"), "y: 1\n").unwrap();
        std::fs::write(dir.path().join("conf/acl/ignored.txt"), "z").unwrap();
        assert!(files.changed());
        let read = files.read().unwrap();
        let names: Vec<&str> = read
            .iter()
            .map(|(p, _)| p.rsplit('/').next().unwrap())
            .collect();
        assert_eq!(names, ["plain_acl.yml", "a.yml", "b.yaml"]);
        assert!(!files.changed());
    }
}
