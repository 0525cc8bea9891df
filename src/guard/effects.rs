//! Effects: the only changes tend makes to a filesystem. An operation describes what it will
//! change as a [`Plan`]; the guard checks every effect before applying any, and applies each
//! one crash-safely on directory handles from the jail.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use super::jail::{Jail, normalize};
use crate::error::{Error, Result};

/// One change to the filesystem.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Effect {
    /// Create a directory and any missing parents (below the root).
    CreateDir { path: PathBuf },
    /// Replace a file's contents atomically (temp file, fsync, rename, fsync of the folder).
    WriteFile { path: PathBuf, contents: Vec<u8>, mode: u32 },
    /// Replace a file's contents atomically for readers (temp file, rename) without waiting
    /// for the disk: for files that a power loss may take back to an older version without
    /// harm, because they are derived or are counters (metrics). Saves two fsyncs.
    WriteVolatile { path: PathBuf, contents: Vec<u8>, mode: u32 },
    /// Rename within the roots.
    Rename { from: PathBuf, to: PathBuf },
    /// Point a symlink at `target`, replacing an existing link atomically.
    Symlink { path: PathBuf, target: PathBuf },
    /// Remove a file or a symlink (never what it points to).
    RemoveFile { path: PathBuf },
    /// Remove a directory tree without following any link inside it.
    RemoveTree { path: PathBuf },
    /// Pack `sources` (named relative to `base`, links stored as links), and the in-memory
    /// files `extra` (archive path, contents), into the gzip tar `path`, written atomically and
    /// read back completely before it is renamed into place.
    Archive { path: PathBuf, base: PathBuf, sources: Vec<PathBuf>, extra: Vec<(PathBuf, Vec<u8>)> },
    /// Unpack an npm tarball (already verified) into the empty folder `path` with the
    /// hardened extractor, then mark its declared bins executable.
    Extract {
        path: PathBuf,
        tarball: std::sync::Arc<Vec<u8>>,
        bins: Vec<String>,
        limits: crate::extract::ExtractLimits,
    },
}

impl Effect {
    /// The paths this effect changes.
    pub fn paths(&self) -> Vec<&Path> {
        match self {
            Effect::CreateDir { path }
            | Effect::WriteFile { path, .. }
            | Effect::WriteVolatile { path, .. }
            | Effect::Symlink { path, .. }
            | Effect::RemoveFile { path }
            | Effect::RemoveTree { path } => vec![path],
            Effect::Rename { from, to } => vec![from, to],
            Effect::Extract { path, .. } => vec![path],
            Effect::Archive { path, sources, .. } => {
                std::iter::once(path.as_path()).chain(sources.iter().map(PathBuf::as_path)).collect()
            }
        }
    }
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Effect::CreateDir { path } => write!(f, "create dir {}", path.display()),
            Effect::WriteFile { path, contents, .. } | Effect::WriteVolatile { path, contents, .. } => {
                write!(f, "write {} ({} bytes)", path.display(), contents.len())
            }
            Effect::Rename { from, to } => {
                write!(f, "rename {} -> {}", from.display(), to.display())
            }
            Effect::Symlink { path, target } => {
                write!(f, "link {} -> {}", path.display(), target.display())
            }
            Effect::RemoveFile { path } => write!(f, "remove {}", path.display()),
            Effect::RemoveTree { path } => write!(f, "remove tree {}", path.display()),
            Effect::Extract { path, tarball, .. } => {
                write!(f, "extract a {}-byte tarball into {}", tarball.len(), path.display())
            }
            Effect::Archive { path, sources, .. } => write!(
                f,
                "archive {} item{} into {}",
                sources.len(),
                if sources.len() == 1 { "" } else { "s" },
                path.display()
            ),
        }
    }
}

impl fmt::Debug for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The effects of one operation, and the protected files it declares it writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    pub effects: Vec<Effect>,
    pub protected: Vec<PathBuf>,
}

impl Plan {
    pub fn new() -> Plan {
        Plan::default()
    }

    #[must_use]
    pub fn with(mut self, effect: Effect) -> Plan {
        self.effects.push(effect);
        self
    }

    pub fn push(&mut self, effect: Effect) {
        self.effects.push(effect);
    }

    /// Declares that this plan writes the protected file `path` (adopt, swap, rollback only).
    #[must_use]
    pub fn declaring(mut self, path: PathBuf) -> Plan {
        self.protected.push(path);
        self
    }

    pub fn describe(&self) -> Vec<String> {
        self.effects.iter().map(ToString::to_string).collect()
    }
}

/// Checks every effect of `plan` against the jail; nothing is applied.
pub fn check(jail: &Jail, plan: &Plan) -> Result<()> {
    for effect in &plan.effects {
        for path in effect.paths() {
            jail.check(path, &plan.protected)?;
        }
        if let Effect::Symlink { path, target } = effect {
            let resolved = normalize(&path.parent().unwrap_or(path).join(target));
            if !jail.roots().iter().any(|root| resolved.starts_with(root)) {
                return Err(Error::policy(format!(
                    "refused: link {} would point outside the allowed roots, to {}",
                    path.display(),
                    resolved.display()
                )));
            }
        }
    }
    Ok(())
}

/// Applies the (already checked) effects in order; stops at the first failure.
pub fn apply(jail: &Jail, plan: &Plan) -> Result<()> {
    for effect in &plan.effects {
        apply_one(jail, effect, &plan.protected)?;
    }
    Ok(())
}

fn apply_one(jail: &Jail, effect: &Effect, declared: &[PathBuf]) -> Result<()> {
    match effect {
        Effect::CreateDir { path } => create_dir_all(jail, path),
        Effect::WriteFile { path, contents, mode } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            write_atomic(&dir, &name, contents, *mode).map_err(|e| Error::io("write", path, e))
        }
        Effect::WriteVolatile { path, contents, mode } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            replace_atomically(&dir, &name, *mode, false, |file| file.write_all(contents))
                .map_err(|e| Error::io("write", path, e))
        }
        Effect::Rename { from, to } => {
            let (from_dir, from_name) = jail.open_parent(from, declared)?;
            let (to_dir, to_name) = jail.open_parent(to, declared)?;
            rustix::fs::renameat(&from_dir, &from_name, &to_dir, &to_name)
                .and_then(|()| rustix::fs::fsync(&to_dir))
                .and_then(|()| rustix::fs::fsync(&from_dir))
                .map_err(|e| Error::io("rename", from, e))
        }
        Effect::Symlink { path, target } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            let temp = temp_name(&name)?;
            rustix::fs::symlinkat(target, &dir, &temp)
                .and_then(|()| rustix::fs::renameat(&dir, &temp, &dir, &name))
                .and_then(|()| rustix::fs::fsync(&dir))
                .map_err(|e| {
                    let _ = rustix::fs::unlinkat(&dir, &temp, AtFlags::empty());
                    Error::io("link", path, e)
                })
        }
        Effect::RemoveFile { path } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            rustix::fs::unlinkat(&dir, &name, AtFlags::empty()).map_err(|e| Error::io("remove", path, e))
        }
        Effect::RemoveTree { path } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            remove_tree_at(&dir, &name).map_err(|e| Error::io("remove", path, e))
        }
        Effect::Extract { path, tarball, bins, limits } => {
            let dir = jail.open_dir(path)?;
            crate::extract::extract(tarball.as_slice(), &dir, limits)?;
            crate::extract::mark_bins(&dir, bins)
        }
        Effect::Archive { path, base, sources, extra } => {
            let (dir, name) = jail.open_parent(path, declared)?;
            write_archive(&dir, &name, base, sources, extra).map_err(|e| Error::io("archive into", path, e))
        }
    }
}

/// Builds the archive in a temp file and reads every entry back before it is renamed into place.
fn write_archive(
    dir: &OwnedFd,
    name: &OsStr,
    base: &Path,
    sources: &[PathBuf],
    extra: &[(PathBuf, Vec<u8>)],
) -> std::io::Result<()> {
    use std::io::{Seek, SeekFrom};
    replace_atomically(dir, name, 0o644, true, |file| {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(&mut *file, flate2::Compression::default()));
        builder.follow_symlinks(false);
        let mut written = 0usize;
        for source in sources {
            let inside = source
                .strip_prefix(base)
                .map_err(|_| std::io::Error::other(format!("{} is not under {}", source.display(), base.display())))?;
            let meta = std::fs::symlink_metadata(source)?;
            if meta.is_dir() {
                builder.append_dir_all(inside, source)?;
            } else {
                builder.append_path_with_name(source, inside)?;
            }
            written += 1;
        }
        for (inside, contents) in extra {
            let mut header = tar::Header::new_gnu();
            header.set_size(contents.len() as u64);
            header.set_mode(0o644);
            header.set_entry_type(tar::EntryType::Regular);
            header.set_mtime(
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            );
            builder.append_data(&mut header, inside, contents.as_slice())?;
            written += 1;
        }
        builder.into_inner()?.finish()?;
        // Verify: the archive decompresses and lists at least one entry per source.
        file.seek(SeekFrom::Start(0))?;
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut *file));
        let mut entries = 0usize;
        for entry in archive.entries()? {
            let mut entry = entry?;
            std::io::copy(&mut entry, &mut std::io::sink())?;
            entries += 1;
        }
        if entries < written {
            return Err(std::io::Error::other(format!("the archive reads back {entries} entries for {written} items")));
        }
        Ok(())
    })
}

fn create_dir_all(jail: &Jail, path: &Path) -> Result<()> {
    // Create from the shallowest missing ancestor down, each step on a checked handle.
    let mut missing = Vec::new();
    let mut here = path;
    while !here.exists() {
        missing.push(here);
        match here.parent() {
            Some(parent) => here = parent,
            None => break,
        }
    }
    for dir in missing.into_iter().rev() {
        // A site's first run may need the folders above its root: the admin chose that path.
        if jail.roots().iter().any(|root| root.starts_with(dir) && root != dir) {
            match std::fs::create_dir(dir) {
                Ok(()) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(Error::io("create", dir, e)),
            }
        }
        let (parent, name) = jail.open_parent(dir, &[])?;
        match rustix::fs::mkdirat(&parent, &name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(Error::io("create", dir, e)),
        }
        rustix::fs::fsync(&parent).map_err(|e| Error::io("sync", dir, e))?;
    }
    jail.open_dir(path).map(drop)
}

/// A same-directory temp name no other writer uses.
fn temp_name(name: &OsStr) -> Result<OsString> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).map_err(|e| Error::failed(format!("cannot get random bytes: {e}")))?;
    let mut temp = OsString::from(".");
    temp.push(name);
    temp.push(format!(".tend-tmp-{}", hex::encode(bytes)));
    Ok(temp)
}

/// Temp file in the same directory, write, fsync, rename over, fsync the directory.
pub(crate) fn write_atomic(dir: &OwnedFd, name: &OsStr, contents: &[u8], mode: u32) -> std::io::Result<()> {
    replace_atomically(dir, name, mode, true, |file| file.write_all(contents))
}

/// Fills a new same-directory temp file with `fill`, fsyncs it (when `durable`), renames it
/// over `name` and fsyncs the directory (when `durable`); on any failure the temp file is
/// removed and `name` is untouched.
fn replace_atomically(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
    durable: bool,
    fill: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let temp = temp_name(name).map_err(|e| std::io::Error::other(e.to_string()))?;
    let result = (|| {
        let fd = rustix::fs::openat(
            dir,
            &temp,
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(mode),
        )?;
        let mut file = std::fs::File::from(fd);
        fill(&mut file)?;
        if durable {
            file.sync_all()?;
        }
        rustix::fs::renameat(dir, &temp, dir, name)?;
        if durable {
            rustix::fs::fsync(dir)?;
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = rustix::fs::unlinkat(dir, &temp, AtFlags::empty());
    }
    result
}

/// Removes `name` in `dir`: a file or link is unlinked, a directory is emptied through its
/// own handle (never following links) and removed.
pub(crate) fn remove_tree_at(dir: &impl AsFd, name: &OsStr) -> std::io::Result<()> {
    let sub = match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(Errno::LOOP | Errno::NOTDIR) => {
            return Ok(rustix::fs::unlinkat(dir, name, AtFlags::empty())?);
        }
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    loop {
        // Re-read after each pass: entries may appear while we remove.
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&sub)? {
            let entry = entry?;
            let bytes = entry.file_name().to_bytes();
            if bytes != b"." && bytes != b".." {
                names.push(<OsString as std::os::unix::ffi::OsStringExt>::from_vec(bytes.to_vec()));
            }
        }
        if names.is_empty() {
            break;
        }
        for child in names {
            remove_tree_at(&sub, &child)?;
        }
    }
    match rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, PathBuf, Jail) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let jail = Jail::new(vec![root.clone()], vec![]);
        (dir, root, jail)
    }

    #[test]
    fn applies_dirs_files_links_and_removals() {
        let (_dir, root, jail) = setup();
        let plan = Plan::new()
            .with(Effect::CreateDir { path: root.join("servers/memory/releases/1.0.0") })
            .with(Effect::WriteFile {
                path: root.join("servers/memory/releases/1.0.0/release.json"),
                contents: b"{}".to_vec(),
                mode: 0o644,
            })
            .with(Effect::Symlink { path: root.join("servers/memory/current"), target: "releases/1.0.0".into() });
        check(&jail, &plan).unwrap();
        apply(&jail, &plan).unwrap();
        assert_eq!(std::fs::read_to_string(root.join("servers/memory/current/release.json")).unwrap(), "{}");
        apply(&jail, &Plan::new().with(Effect::RemoveTree { path: root.join("servers") })).unwrap();
        assert!(!root.join("servers").exists());
        let leftovers: Vec<_> = std::fs::read_dir(&root).unwrap().collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    #[test]
    fn remove_tree_never_follows_a_link_out() {
        let (dir, root, jail) = setup();
        let outside = dir.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(outside.join("keep"), "x").unwrap();
        std::fs::create_dir_all(root.join("releases/1.0.0")).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("releases/1.0.0/evil")).unwrap();
        std::os::unix::fs::symlink("/", root.join("releases/slash")).unwrap();
        apply(&jail, &Plan::new().with(Effect::RemoveTree { path: root.join("releases") })).unwrap();
        assert!(!root.join("releases").exists());
        assert_eq!(std::fs::read_to_string(outside.join("keep")).unwrap(), "x");
    }

    #[test]
    fn a_link_pointing_out_is_refused_before_anything_applies() {
        let (_dir, root, jail) = setup();
        let plan = Plan::new()
            .with(Effect::CreateDir { path: root.join("a") })
            .with(Effect::Symlink { path: root.join("a/current"), target: "../../../etc".into() });
        let err = check(&jail, &plan).unwrap_err();
        assert_eq!(err.exit_code(), 5);
        assert!(!root.exists());
    }
}
