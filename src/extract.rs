//! The hardened extractor for npm tarballs. It unpacks a gzip tar beneath a directory handle
//! and refuses anything npm packages have no business holding: links, devices, FIFOs,
//! absolute or `..` paths, backslashes, names that collide after Unicode normalization, and
//! archives over the size, count or depth caps (counted on the decompressed output). The first
//! path component is stripped whatever its name, as npm does; modes are normalized.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use unicode_normalization::UnicodeNormalization;

use crate::error::{Error, Result};

/// Caps on what one tarball may unpack to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractLimits {
    /// Decompressed bytes of the whole tar stream.
    pub max_bytes: u64,
    pub max_entries: u64,
    pub max_entry_bytes: u64,
    /// Path components below the package folder.
    pub max_depth: usize,
}

impl Default for ExtractLimits {
    fn default() -> Self {
        ExtractLimits { max_bytes: 512 << 20, max_entries: 20_000, max_entry_bytes: 128 << 20, max_depth: 32 }
    }
}

/// What an extraction wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Extracted {
    pub files: u64,
    pub dirs: u64,
    pub bytes: u64,
}

fn refused(what: impl std::fmt::Display) -> Error {
    Error::failed(format!("refused tarball: {what}"))
}

/// A reader that fails once more than `limit` bytes came through: the gzip-bomb cap.
struct Capped<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Capped<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!("decompresses to more than {} bytes", self.limit)));
        }
        Ok(n)
    }
}

/// Unpacks the gzip tar `source` beneath the directory `dest` (an empty staging folder).
pub fn extract(source: impl Read, dest: &OwnedFd, limits: &ExtractLimits) -> Result<Extracted> {
    let stream = Capped { inner: flate2::read::GzDecoder::new(source), read: 0, limit: limits.max_bytes };
    let mut archive = tar::Archive::new(stream);
    let mut seen: HashSet<String> = HashSet::new();
    let mut out = Extracted::default();
    let entries = archive.entries().map_err(|e| refused(read_error(&e)))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| refused(read_error(&e)))?;
        out_count(&mut out, limits)?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        let claimed = entry.header().size().map_err(|e| refused(format!("{shown}: bad size field: {e}")))?;
        if entry.size() != claimed {
            return Err(refused(format!(
                "{shown}: its PAX header says {} bytes but its tar header says {claimed}",
                entry.size()
            )));
        }
        let parts = match checked_path(&raw, &shown, limits)? {
            Some(parts) => parts,
            None => continue, // the package folder itself
        };
        if !matches!(kind, tar::EntryType::Directory | tar::EntryType::Regular | tar::EntryType::Continuous) {
            let what = match kind {
                tar::EntryType::Symlink => "a symlink",
                tar::EntryType::Link => "a hard link",
                tar::EntryType::Char => "a character device",
                tar::EntryType::Block => "a block device",
                tar::EntryType::Fifo => "a FIFO",
                _ => "an entry of an unsupported type",
            };
            return Err(refused(format!("{shown} is {what}; npm packages hold only files and folders")));
        }
        let relative = parts.join("/");
        let key: String = relative.nfc().collect::<String>();
        if !seen.insert(key) {
            return Err(refused(format!("{shown}: a second entry with the same name (after Unicode normalization)")));
        }
        match kind {
            tar::EntryType::Directory => {
                ensure_dirs(dest, &parts, &shown)?;
                out.dirs += 1;
            }
            _ => {
                if entry.size() > limits.max_entry_bytes {
                    return Err(refused(format!(
                        "{shown}: {} bytes is over the {}-byte cap for one file",
                        entry.size(),
                        limits.max_entry_bytes
                    )));
                }
                let (parent_parts, name) = parts.split_at(parts.len() - 1);
                let parent = ensure_dirs(dest, parent_parts, &shown)?;
                let written = write_file(&parent, name[0].as_str(), &mut entry, limits.max_entry_bytes)
                    .map_err(|e| refused(format!("{shown}: {}", read_error(&e))))?;
                out.files += 1;
                out.bytes += written;
            }
        }
    }
    Ok(out)
}

fn out_count(out: &mut Extracted, limits: &ExtractLimits) -> Result<()> {
    if out.files + out.dirs >= limits.max_entries {
        return Err(refused(format!("more than {} entries", limits.max_entries)));
    }
    Ok(())
}

fn read_error(e: &io::Error) -> String {
    let text = e.to_string();
    if text.contains("invalid gzip header") {
        "not a gzip file".to_owned()
    } else if e.kind() == io::ErrorKind::UnexpectedEof
        || text.contains("unexpected EOF")
        || text.contains("failed to fill whole buffer")
    {
        "the archive is truncated".to_owned()
    } else {
        text
    }
}

/// The path below the package folder, as components; `None` for the package folder itself.
fn checked_path(raw: &[u8], shown: &str, limits: &ExtractLimits) -> Result<Option<Vec<String>>> {
    let text = std::str::from_utf8(raw).map_err(|_| refused(format!("{shown}: the name is not UTF-8")))?;
    if text.contains('\\') {
        return Err(refused(format!("{shown}: backslash in a name")));
    }
    if text.contains('\0') {
        return Err(refused(format!("{shown}: NUL in a name")));
    }
    if text.starts_with('/') {
        return Err(refused(format!("{shown}: absolute path")));
    }
    let mut parts: Vec<&str> = text.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
    if parts.contains(&"..") {
        return Err(refused(format!("{shown}: `..` in the path")));
    }
    if parts.is_empty() {
        return Ok(None);
    }
    parts.remove(0); // npm strips the first component, whatever it is called
    if parts.is_empty() {
        return Ok(None);
    }
    if parts.len() > limits.max_depth {
        return Err(refused(format!("{shown}: deeper than {} folders", limits.max_depth)));
    }
    Ok(Some(parts.into_iter().map(str::to_owned).collect()))
}

/// Opens (creating) the folders `parts` beneath `dest`, never following a link.
fn ensure_dirs(dest: &OwnedFd, parts: &[String], shown: &str) -> Result<OwnedFd> {
    let mut fd = rustix::io::dup(dest).map_err(|e| refused(format!("{shown}: {e}")))?;
    for part in parts {
        match rustix::fs::mkdirat(&fd, part.as_str(), Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(refused(format!("{shown}: cannot create folder: {e}"))),
        }
        fd = rustix::fs::openat(
            &fd,
            part.as_str(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| refused(format!("{shown}: `{part}` is not a folder ({e})")))?;
    }
    Ok(fd)
}

/// Writes one file (0644, created new) from the entry, counting the bytes actually read.
fn write_file(dir: &impl AsFd, name: &str, data: &mut impl Read, cap: u64) -> io::Result<u64> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )?;
    let mut file = std::fs::File::from(fd);
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    loop {
        let n = data.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        if total > cap {
            return Err(io::Error::other(format!("more than {cap} bytes")));
        }
        file.write_all(&buf[..n])?;
    }
    Ok(total)
}

/// Marks the package's declared `bin` files executable (0755); a bin path that leaves the
/// package or crosses a link is refused.
pub fn mark_bins(dest: &OwnedFd, bins: &[String]) -> Result<()> {
    for bin in bins {
        let path = bin.trim_start_matches("./");
        let parts: Vec<String> = path.split('/').filter(|p| !p.is_empty() && *p != ".").map(str::to_owned).collect();
        if parts.is_empty() || parts.iter().any(|p| p == "..") || path.starts_with('/') || path.contains('\\') {
            return Err(refused(format!("bin `{bin}` leaves the package")));
        }
        let (dirs, name) = parts.split_at(parts.len() - 1);
        let mut fd = rustix::io::dup(dest).map_err(|e| refused(format!("bin `{bin}`: {e}")))?;
        for part in dirs {
            fd = rustix::fs::openat(
                &fd,
                part.as_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|_| refused(format!("bin `{bin}` is not a file in the package")))?;
        }
        let file = rustix::fs::openat(
            &fd,
            name[0].as_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|_| refused(format!("bin `{bin}` is not a file in the package")))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(0o755)).map_err(|e| refused(format!("bin `{bin}`: {e}")))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// A tar entry written with raw header fields, so tests can build what `tar` refuses to.
    struct Raw {
        name: Vec<u8>,
        kind: tar::EntryType,
        data: Vec<u8>,
        mode: u32,
        link: Option<Vec<u8>>,
        pax_size: Option<u64>,
    }

    fn file(name: &str, data: &[u8]) -> Raw {
        Raw {
            name: name.as_bytes().to_vec(),
            kind: tar::EntryType::Regular,
            data: data.to_vec(),
            mode: 0o644,
            link: None,
            pax_size: None,
        }
    }

    fn of(name: &str, kind: tar::EntryType) -> Raw {
        Raw { name: name.as_bytes().to_vec(), kind, data: Vec::new(), mode: 0o755, link: None, pax_size: None }
    }

    fn tarball(entries: Vec<Raw>) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for e in entries {
            if let Some(size) = e.pax_size {
                builder.append_pax_extensions([("size", size.to_string().as_bytes())]).unwrap();
            }
            let mut header = tar::Header::new_ustar();
            let name = &mut header.as_old_mut().name;
            name[..e.name.len()].copy_from_slice(&e.name);
            header.set_entry_type(e.kind);
            header.set_mode(e.mode);
            header.set_size(e.data.len() as u64);
            if let Some(link) = &e.link {
                header.as_old_mut().linkname[..link.len()].copy_from_slice(link);
            }
            header.set_cksum();
            builder.append(&header, e.data.as_slice()).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    fn open(dir: &Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    /// Extracts into `<tmp>/dest`; returns the error and checks nothing appeared outside it.
    fn refuse(bytes: &[u8], limits: ExtractLimits) -> String {
        let tmp = tempfile::tempdir().unwrap();
        let dest = tmp.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        let err = extract(bytes, &open(&dest), &limits).unwrap_err();
        let outside: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(outside, ["dest"], "something was written outside dest");
        err.message().to_owned()
    }

    #[test]
    fn unpacks_a_package_stripping_the_first_component_and_normalizing_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = tarball(vec![
            of("package/", tar::EntryType::Directory),
            Raw { mode: 0o4777, ..file("package/bin/cli.js", b"#!/usr/bin/env node\n") },
            file("pkg-renamed/lib/deep/x.js", b"x"),
            file("package/package.json", b"{}"),
        ]);
        let got = extract(bytes.as_slice(), &open(tmp.path()), &ExtractLimits::default()).unwrap();
        assert_eq!((got.files, got.bytes), (3, 20 + 1 + 2));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &str| std::fs::metadata(tmp.path().join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("bin/cli.js"), 0o644);
        assert_eq!(mode("lib/deep"), 0o755);
        mark_bins(&open(tmp.path()), &["./bin/cli.js".into()]).unwrap();
        assert_eq!(mode("bin/cli.js"), 0o755);
        assert_eq!(
            mark_bins(&open(tmp.path()), &["../x".into()]).unwrap_err().message(),
            "refused tarball: bin `../x` leaves the package"
        );
    }

    #[test]
    fn refuses_paths_that_escape() {
        let d = ExtractLimits::default();
        assert_eq!(refuse(&tarball(vec![file("../x", b"x")]), d), "refused tarball: ../x: `..` in the path");
        assert_eq!(refuse(&tarball(vec![file("a/../../x", b"x")]), d), "refused tarball: a/../../x: `..` in the path");
        assert_eq!(refuse(&tarball(vec![file("/etc/x", b"x")]), d), "refused tarball: /etc/x: absolute path");
        assert_eq!(refuse(&tarball(vec![file("////etc/x", b"x")]), d), "refused tarball: ////etc/x: absolute path");
        assert_eq!(
            refuse(&tarball(vec![file("package\\..\\x", b"x")]), d),
            "refused tarball: package\\..\\x: backslash in a name"
        );
    }

    #[test]
    fn refuses_links_devices_and_fifos() {
        let d = ExtractLimits::default();
        let link = |name: &str, kind, target: &str| Raw { link: Some(target.as_bytes().to_vec()), ..of(name, kind) };
        // s -> .. then s/x: refused at the link, before anything could follow it.
        assert_eq!(
            refuse(&tarball(vec![link("package/s", tar::EntryType::Symlink, ".."), file("package/s/x", b"x")]), d),
            "refused tarball: package/s is a symlink; npm packages hold only files and folders"
        );
        // a link to an outside folder, then a folder of the same name
        assert_eq!(
            refuse(
                &tarball(vec![
                    link("package/d", tar::EntryType::Symlink, "/etc"),
                    of("package/d/", tar::EntryType::Directory)
                ]),
                d
            ),
            "refused tarball: package/d is a symlink; npm packages hold only files and folders"
        );
        // a hard link to an outside file, then a file of the same name
        assert_eq!(
            refuse(&tarball(vec![link("package/h", tar::EntryType::Link, "/etc/passwd"), file("package/h", b"x")]), d),
            "refused tarball: package/h is a hard link; npm packages hold only files and folders"
        );
        // a folder, then a link of the same name
        assert_eq!(
            refuse(
                &tarball(vec![
                    of("package/d/", tar::EntryType::Directory),
                    link("package/d", tar::EntryType::Symlink, "/")
                ]),
                d
            ),
            "refused tarball: package/d is a symlink; npm packages hold only files and folders"
        );
        assert_eq!(
            refuse(&tarball(vec![of("package/dev", tar::EntryType::Char)]), d),
            "refused tarball: package/dev is a character device; npm packages hold only files and folders"
        );
        assert_eq!(
            refuse(&tarball(vec![of("package/blk", tar::EntryType::Block)]), d),
            "refused tarball: package/blk is a block device; npm packages hold only files and folders"
        );
        assert_eq!(
            refuse(&tarball(vec![of("package/p", tar::EntryType::Fifo)]), d),
            "refused tarball: package/p is a FIFO; npm packages hold only files and folders"
        );
    }

    #[test]
    fn refuses_unicode_twins_and_duplicates() {
        let d = ExtractLimits::default();
        assert_eq!(
            refuse(&tarball(vec![file("package/caf\u{e9}.js", b"1"), file("package/cafe\u{301}.js", b"2")]), d),
            "refused tarball: package/cafe\u{301}.js: a second entry with the same name (after Unicode normalization)"
        );
        assert_eq!(
            refuse(&tarball(vec![file("package/a.js", b"1"), file("other/a.js", b"2")]), d),
            "refused tarball: other/a.js: a second entry with the same name (after Unicode normalization)"
        );
    }

    #[test]
    fn caps_count_depth_and_decompressed_size() {
        let small = ExtractLimits { max_bytes: 1 << 20, max_entries: 100, max_entry_bytes: 64 << 10, max_depth: 8 };
        let many: Vec<Raw> = (0..101).map(|i| file(&format!("package/f{i}"), b"x")).collect();
        assert_eq!(refuse(&tarball(many), small), "refused tarball: more than 100 entries");
        let deep = format!("package/{}x", "d/".repeat(9));
        assert_eq!(
            refuse(&tarball(vec![file(&deep, b"x")]), small),
            format!("refused tarball: {deep}: deeper than 8 folders")
        );
        // A gzip bomb: 8 MiB of zeros compress to a few KiB.
        let bomb = tarball(vec![file("package/zeros", &vec![0u8; 8 << 20])]);
        assert!(bomb.len() < 64 << 10);
        let big = ExtractLimits { max_entry_bytes: 64 << 20, ..small };
        assert_eq!(refuse(&bomb, big), "refused tarball: package/zeros: decompresses to more than 1048576 bytes");
        assert_eq!(
            refuse(&bomb, ExtractLimits { max_bytes: 64 << 20, ..small }),
            "refused tarball: package/zeros: 8388608 bytes is over the 65536-byte cap for one file"
        );
    }

    #[test]
    fn default_caps_stop_100k_entries_and_5k_deep_folders() {
        let d = ExtractLimits::default();
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for i in 0..100_000 {
            let mut header = tar::Header::new_gnu();
            header.set_size(0);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, format!("package/f{i}"), std::io::empty()).unwrap();
        }
        let many = builder.into_inner().unwrap().finish().unwrap();
        assert_eq!(refuse(&many, d), "refused tarball: more than 20000 entries");

        let deep = format!("package/{}x", "d/".repeat(5_000));
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        let mut header = tar::Header::new_gnu();
        header.set_size(1);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, &deep, &b"x"[..]).unwrap();
        let bytes = builder.into_inner().unwrap().finish().unwrap();
        assert_eq!(refuse(&bytes, d), format!("refused tarball: {deep}: deeper than 32 folders"));
    }

    #[test]
    fn refuses_a_pax_size_that_differs_from_the_header() {
        let entry = Raw { pax_size: Some(5), ..file("package/a.js", b"0123456789") };
        assert_eq!(
            refuse(&tarball(vec![entry]), ExtractLimits::default()),
            "refused tarball: package/a.js: its PAX header says 5 bytes but its tar header says 10"
        );
    }

    #[test]
    fn refuses_what_is_not_a_whole_gzip_tar() {
        let d = ExtractLimits::default();
        assert_eq!(refuse(b"plain text, not gzip", d), "refused tarball: not a gzip file");
        let whole = tarball(vec![file("package/a.js", &vec![7u8; 100_000])]);
        assert_eq!(refuse(&whole[..whole.len() / 2], d), "refused tarball: package/a.js: the archive is truncated");
    }

    #[test]
    fn setuid_bits_never_survive() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = tarball(vec![
            Raw { mode: 0o6755, ..file("package/s", b"x") },
            Raw { mode: 0o1777, ..of("package/t/", tar::EntryType::Directory) },
        ]);
        extract(bytes.as_slice(), &open(tmp.path()), &ExtractLimits::default()).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(tmp.path().join("s")).unwrap().permissions().mode() & 0o7777, 0o644);
        assert_eq!(std::fs::metadata(tmp.path().join("t")).unwrap().permissions().mode() & 0o7777, 0o755);
    }
}
