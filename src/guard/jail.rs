//! The path jail: every path tend changes must lie beneath `root` or a `paths.allow` entry,
//! reached without crossing a symlink, and must not be a protected file unless the effect
//! declared it. Directories are opened component by component with `O_NOFOLLOW`, and effects
//! act on the directory handles the walk returns, so a symlink planted between the check and
//! the change cannot redirect a write.

use std::ffi::OsString;
use std::os::fd::OwnedFd;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// Removes `.` and resolves `..` lexically; used only for paths tend builds from
/// configuration, never for paths an effect names (those must not contain `..` at all).
pub fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The allowed roots and the protected files of one site.
#[derive(Debug, Clone)]
pub struct Jail {
    roots: Vec<PathBuf>,
    protected: Vec<PathBuf>,
}

impl Jail {
    /// `roots` are `root` and `paths.allow`; `protected` are the client configs and
    /// `paths.protect`.
    pub fn new(roots: Vec<PathBuf>, protected: Vec<PathBuf>) -> Jail {
        Jail { roots: roots.iter().map(|r| normalize(r)).collect(), protected }
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// Is `path` a protected file?
    pub fn is_protected(&self, path: &Path) -> bool {
        self.protected.iter().any(|p| p == path)
    }

    /// Checks that an effect may change `path`. `declared` are the protected files the
    /// calling operation declared it writes.
    pub fn check(&self, path: &Path, declared: &[PathBuf]) -> Result<()> {
        self.locate(path, declared).map(drop)
    }

    /// Opens the directory holding `path` and returns it with the final name, refusing a
    /// path outside the roots or one that crosses a symlink beneath its root.
    pub fn open_parent(&self, path: &Path, declared: &[PathBuf]) -> Result<(OwnedFd, OsString)> {
        let located = self.locate(path, declared)?;
        let name = path
            .file_name()
            .ok_or_else(|| Error::policy(format!("refused: {} names no file", path.display())))?
            .to_os_string();
        let parent = path.parent().unwrap_or(path);
        let fd = match located {
            Location::Protected => open_dir_plain(parent)?,
            Location::Root(root) if path == root => open_dir_plain(parent)?,
            Location::Root(root) => self.walk(&root, parent)?,
        };
        Ok((fd, name))
    }

    /// Opens directory `dir` (inside a root) without following symlinks beneath the root.
    pub fn open_dir(&self, dir: &Path) -> Result<OwnedFd> {
        match self.locate(dir, &[])? {
            Location::Root(root) => self.walk(&root, dir),
            Location::Protected => Err(Error::policy(format!("refused: {} is a protected file", dir.display()))),
        }
    }

    fn locate(&self, path: &Path, declared: &[PathBuf]) -> Result<Location> {
        if !path.is_absolute() {
            return Err(Error::policy(format!("refused: {} is not an absolute path", path.display())));
        }
        if path.components().any(|c| matches!(c, Component::ParentDir | Component::CurDir)) {
            return Err(Error::policy(format!("refused: {} contains `..` or `.`", path.display())));
        }
        if self.is_protected(path) {
            if declared.iter().any(|d| d == path) {
                return Ok(Location::Protected);
            }
            return Err(Error::policy(format!(
                "refused: {} is a protected file (a client config or paths.protect); only adopt, swap and rollback may write it",
                path.display()
            )));
        }
        let root = self
            .roots
            .iter()
            .filter(|root| path.starts_with(root))
            .max_by_key(|root| root.components().count())
            .ok_or_else(|| {
                Error::policy(format!(
                    "refused: {} is outside the allowed roots ({})",
                    path.display(),
                    self.roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ")
                ))
            })?;
        // The walk to the parent happens again at apply time on handles; checking here too
        // makes a plan fail before its first effect rather than half way through.
        if let Some(parent) = path.parent().filter(|p| p.starts_with(root) && *p != root.as_path()) {
            match self.walk(root, parent) {
                Ok(_) => {}
                Err(e) if e.kind() == crate::ErrorKind::Policy => return Err(e),
                Err(_) => {} // not there yet: created by an earlier effect, or the effect fails
            }
        }
        Ok(Location::Root(root.clone()))
    }

    /// Opens `dir` beneath `root`, one component at a time, never following a symlink.
    fn walk(&self, root: &Path, dir: &Path) -> Result<OwnedFd> {
        let mut fd = open_dir_plain(root)?;
        let rest = dir
            .strip_prefix(root)
            .map_err(|_| Error::policy(format!("refused: {} is outside {}", dir.display(), root.display())))?;
        let mut here = root.to_path_buf();
        for component in rest.components() {
            let Component::Normal(name) = component else {
                return Err(Error::policy(format!("refused: {} contains `..` or `.`", dir.display())));
            };
            here.push(name);
            fd = match rustix::fs::openat(
                &fd,
                name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(next) => next,
                Err(Errno::LOOP | Errno::NOTDIR) => {
                    let is_link =
                        rustix::fs::statat(&fd, name, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).is_ok_and(|st| {
                            rustix::fs::FileType::from_raw_mode(st.st_mode) == rustix::fs::FileType::Symlink
                        });
                    return Err(Error::policy(if is_link {
                        format!("refused: {} is a symlink; tend does not follow links inside its roots", here.display())
                    } else {
                        format!("refused: {} is not a directory", here.display())
                    }));
                }
                Err(e) => return Err(Error::io("open", &here, e)),
            };
        }
        Ok(fd)
    }
}

enum Location {
    Root(PathBuf),
    Protected,
}

fn open_dir_plain(dir: &Path) -> Result<OwnedFd> {
    rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| Error::io("open", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail(root: &Path) -> Jail {
        Jail::new(vec![root.to_path_buf()], vec![root.join("protected.json")])
    }

    #[test]
    fn paths_inside_the_root_pass() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tend");
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        let j = jail(&root);
        j.check(&root.join("a/b/c"), &[]).unwrap();
        j.check(&root.join("new/deeper/file"), &[]).unwrap();
        j.check(&root, &[]).unwrap();
    }

    #[test]
    fn escapes_are_refused_with_exit_5() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tend");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(dir.path().join("tend2")).unwrap();
        std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
        let j = jail(&root);
        let cases = [
            (root.join("../etc/passwd"), "contains `..` or `.`".to_owned()),
            (dir.path().join("tend2/x"), "is outside the allowed roots".to_owned()),
            (root.join("link/passwd"), format!("{} is a symlink", root.join("link").display())),
            (root.join("protected.json"), "is a protected file".to_owned()),
            (PathBuf::from("relative/x"), "is not an absolute path".to_owned()),
        ];
        for (path, want) in cases {
            let err = j.check(&path, &[]).unwrap_err();
            assert_eq!(err.exit_code(), 5, "{}", path.display());
            assert!(err.message().contains(&want), "{}: {}", path.display(), err.message());
        }
        j.check(&root.join("protected.json"), &[root.join("protected.json")]).unwrap();
    }

    #[test]
    fn normalize_resolves_dots() {
        assert_eq!(normalize(Path::new("/a/./b/../c")), PathBuf::from("/a/c"));
    }
}
