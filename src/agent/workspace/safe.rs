//! Confined file access inside an incident workspace: the one way nightcrier creates, writes,
//! reads, removes or changes the mode of anything under `<workspace_root>/<incident-id>/`.
//!
//! The agent owns its workspace and may plant anything there (symlinks to `/etc/shadow`, a
//! `output` that points at `/`, a FIFO where the report belongs), and may change it while
//! nightcrier looks. So no path inside a workspace is ever resolved by the kernel as a whole:
//!
//! - [`WorkspaceDir`] is an open directory descriptor. Below the workspace root every directory
//!   is opened with `openat(O_DIRECTORY | O_NOFOLLOW)` relative to its parent's descriptor, so a
//!   symlink anywhere on the way is refused, not followed. [`WorkspaceDir::create_dir`] removes
//!   a non-directory (file, symlink, FIFO) where a directory belongs and creates the directory.
//! - Files are written to a fresh temporary name (`O_CREAT | O_EXCL | O_NOFOLLOW`, mode 0600) and
//!   renamed over the target within the same directory descriptor ([`WorkspaceDir::write_file`]).
//! - Files are read through one descriptor opened `O_NOFOLLOW | O_NONBLOCK`, checked with
//!   `fstat` (regular file, size) and read through that same descriptor, bounded
//!   ([`WorkspaceDir::open_file`], [`read_bounded`]): nothing can be swapped in between the
//!   check and the read.
//! - Modes are set with `fchmod` on the opened descriptor, never by path.
//!
//! The workspace root itself (`workspace_root` from the configuration) is trusted and may be a
//! symlink; the incident directory below it is not. Names given to this API are relative paths
//! of plain components (no `..`, no absolute paths).
//!
//! Every new file nightcrier puts in a workspace (evidence files, verdicts, ...) must go through
//! this module; `std::fs` calls on workspace paths are bugs.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, CWD};

use crate::agent::error::AgentError;

const DIR_MODE: u32 = 0o700;
const FILE_MODE: u32 = 0o600;
/// Removing a directory tree the agent built is recursive; deeper than this is refused.
const MAX_REMOVE_DEPTH: usize = 64;

/// An open directory inside (or at the root of) a workspace. The path is for messages only:
/// every operation goes through the descriptor.
#[derive(Debug)]
pub struct WorkspaceDir {
    fd: OwnedFd,
    path: PathBuf,
}

/// What [`WorkspaceDir::open_file`] found at a name.
#[derive(Debug)]
pub enum FileEntry {
    Missing,
    /// A symlink, directory, FIFO, socket, device or a hard link (a file with more than one
    /// name): never read.
    NotRegular,
    /// A regular file, opened; `len` is from `fstat` on this descriptor.
    File {
        file: File,
        len: u64,
    },
}

/// The content of a file read with a bound.
#[derive(Debug, PartialEq, Eq)]
pub enum Bounded {
    Content(Vec<u8>),
    /// Larger than the bound (this many bytes at the time it was opened); nothing was read.
    TooLarge(u64),
}

impl WorkspaceDir {
    /// Opens the trusted workspace root (from the configuration), creating it and its parents
    /// when `create`. Symlinks in this path are the operator's and are followed.
    pub fn root(root: &Path, create: bool) -> Result<Self, AgentError> {
        if create {
            std::fs::create_dir_all(root).map_err(AgentError::workspace(root))?;
        }
        let fd = rustix::fs::openat(
            CWD,
            root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| AgentError::workspace(root)(e.into()))?;
        Ok(Self {
            fd,
            path: root.to_path_buf(),
        })
    }

    /// Opens the workspace `dir` (`<root>/<name>`): the root is trusted, the last component is
    /// not. `Ok(None)` when it does not exist or is not a directory.
    pub fn open_workspace(dir: &Path) -> Result<Option<Self>, AgentError> {
        let (root, name) = split_workspace(dir)?;
        let root = match Self::root(root, false) {
            Ok(r) => r,
            Err(AgentError::Workspace { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        root.open_dir(name)
    }

    /// Creates (or opens and tightens to 0700) the workspace `dir` (`<root>/<name>`).
    pub fn create_workspace(dir: &Path) -> Result<Self, AgentError> {
        let (root, name) = split_workspace(dir)?;
        Self::root(root, true)?.create_dir(name)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the directory at `rel` (plain components), creating what is missing with mode
    /// 0700 and tightening existing ones to 0700. A non-directory where a directory belongs is
    /// removed (a symlink is unlinked, never followed).
    pub fn create_dir(&self, rel: impl AsRef<Path>) -> Result<Self, AgentError> {
        let mut dir: Option<Self> = None;
        for name in components(rel.as_ref())? {
            dir = Some(dir.as_ref().unwrap_or(self).create_one(name)?);
        }
        match dir {
            Some(d) => Ok(d),
            None => self.reopen(),
        }
    }

    /// Opens an existing directory at `rel` without creating or changing anything. `Ok(None)`
    /// when a component is missing or is not a directory (symlinks included).
    pub fn open_dir(&self, rel: impl AsRef<Path>) -> Result<Option<Self>, AgentError> {
        let mut dir: Option<Self> = None;
        for name in components(rel.as_ref())? {
            let parent = dir.as_ref().unwrap_or(self);
            match parent.open_child_dir(name) {
                Ok(d) => dir = Some(d),
                Err(e) if is_absent_or_not_dir(e) => return Ok(None),
                Err(e) => return Err(parent.err(name)(e.into())),
            }
        }
        match dir {
            Some(d) => Ok(Some(d)),
            None => self.reopen().map(Some),
        }
    }

    /// Replaces the file `name` with `content` (mode 0600): written to a new temporary name
    /// (`O_EXCL | O_NOFOLLOW`) and renamed over `name` in this directory, so a reader never
    /// sees half a file and nothing planted at either name is followed. A directory at `name`
    /// is removed first.
    pub fn write_file(&self, name: &str, content: &[u8]) -> Result<(), AgentError> {
        self.replace_file(name, content, true)
    }

    /// [`WorkspaceDir::write_file`] without the `fsync`: for what a run writes for its agent
    /// (`incident.json`, `prompt.md`...), rewritten by every attempt, so a crash that loses it
    /// loses nothing (the attempt is run again). Still never half a file, never through a link.
    pub fn write_file_unsynced(&self, name: &str, content: &[u8]) -> Result<(), AgentError> {
        self.replace_file(name, content, false)
    }

    fn replace_file(&self, name: &str, content: &[u8], sync: bool) -> Result<(), AgentError> {
        let name = single(name)?;
        let tmp = format!(".{name}.nightcrier-{:016x}.tmp", rand::random::<u64>());
        let fd = rustix::fs::openat(
            &self.fd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(FILE_MODE),
        )
        .map_err(|e| self.err(&tmp)(e.into()))?;
        let mut file = File::from(fd);
        let written = (|| {
            rustix::fs::fchmod(&file, Mode::from_raw_mode(FILE_MODE))?;
            file.write_all(content)?;
            if sync {
                file.sync_all()?;
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            return Err(self.err(&tmp)(e));
        }
        drop(file);
        if let Some(FileType::Directory) = self.file_type(name)? {
            self.remove(name)?;
        }
        rustix::fs::renameat(&self.fd, tmp.as_str(), &self.fd, name).map_err(|e| {
            let _ = rustix::fs::unlinkat(&self.fd, tmp.as_str(), AtFlags::empty());
            self.err(name)(e.into())
        })
    }

    /// Opens `name` for appending (created 0600 when missing). A symlink or other non-regular
    /// entry at `name` is removed and a fresh file created in its place.
    pub fn open_append(&self, name: &str) -> Result<File, AgentError> {
        let name = single(name)?;
        let open = || {
            rustix::fs::openat(
                &self.fd,
                name,
                OFlags::WRONLY
                    | OFlags::APPEND
                    | OFlags::CREATE
                    | OFlags::NOFOLLOW
                    | OFlags::NONBLOCK
                    | OFlags::NOCTTY
                    | OFlags::CLOEXEC,
                Mode::from_raw_mode(FILE_MODE),
            )
        };
        // A hard link to a file elsewhere is not the log either: appending would write there.
        let regular = |fd: &OwnedFd| rustix::fs::fstat(fd).map(|st| own_regular_file(&st));
        let fd = match open() {
            Ok(fd) if regular(&fd).map_err(|e| self.err(name)(e.into()))? => fd,
            // ELOOP: a symlink; ENXIO: a FIFO without reader; or opened but not a regular file.
            Ok(_) | Err(rustix::io::Errno::LOOP | rustix::io::Errno::NXIO) => {
                self.remove(name)?;
                open().map_err(|e| self.err(name)(e.into()))?
            }
            Err(rustix::io::Errno::ISDIR) => {
                self.remove(name)?;
                open().map_err(|e| self.err(name)(e.into()))?
            }
            Err(e) => return Err(self.err(name)(e.into())),
        };
        // O_NONBLOCK only guarded the open (a FIFO would have blocked it); a regular file's
        // writes never block, but clear it so the agent sees an ordinary descriptor.
        let flags = rustix::fs::fcntl_getfl(&fd).map_err(|e| self.err(name)(e.into()))?;
        rustix::fs::fcntl_setfl(&fd, flags - OFlags::NONBLOCK)
            .map_err(|e| self.err(name)(e.into()))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(FILE_MODE))
            .map_err(|e| self.err(name)(e.into()))?;
        Ok(File::from(fd))
    }

    /// Opens `name` for reading without following a symlink and without blocking on a FIFO,
    /// and says what it is through that descriptor.
    pub fn open_file(&self, name: &str) -> Result<FileEntry, AgentError> {
        let name = single(name)?;
        let fd = match rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(FileEntry::Missing),
            Err(rustix::io::Errno::LOOP) => return Ok(FileEntry::NotRegular),
            Err(e) => return Err(self.err(name)(e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| self.err(name)(e.into()))?;
        if !own_regular_file(&st) {
            return Ok(FileEntry::NotRegular);
        }
        Ok(FileEntry::File {
            file: File::from(fd),
            len: u64::try_from(st.st_size).unwrap_or(0),
        })
    }

    /// The regular file `name`, at most `max` bytes. `Ok(None)` when missing or not a regular
    /// file (a symlink is never followed).
    pub fn read_file(&self, name: &str, max: u64) -> Result<Option<Bounded>, AgentError> {
        match self.open_file(name)? {
            FileEntry::File { file, len } => read_bounded(file, len, max)
                .map(Some)
                .map_err(self.err(name)),
            FileEntry::Missing | FileEntry::NotRegular => Ok(None),
        }
    }

    /// Removes `name` whatever it is (a directory with its content); absent is fine. Never
    /// follows a symlink: the link itself is removed.
    pub fn remove(&self, name: &str) -> Result<(), AgentError> {
        let name = single(name)?;
        self.remove_at(name, 0)
    }

    fn remove_at(&self, name: &str, depth: usize) -> Result<(), AgentError> {
        match self.file_type(name)? {
            None => Ok(()),
            Some(FileType::Directory) => {
                if depth >= MAX_REMOVE_DEPTH {
                    return Err(self.err(name)(io::Error::other(format!(
                        "directory tree deeper than {MAX_REMOVE_DEPTH} levels"
                    ))));
                }
                let sub = self
                    .open_child_dir(name)
                    .map_err(|e| self.err(name)(e.into()))?;
                let names: Vec<String> = rustix::fs::Dir::read_from(&sub.fd)
                    .map_err(|e| sub.err(".")(e.into()))?
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n != "." && n != "..")
                    .collect();
                for n in names {
                    sub.remove_at(&n, depth + 1)?;
                }
                unlink(&self.fd, name, AtFlags::REMOVEDIR).map_err(self.err(name))
            }
            Some(_) => unlink(&self.fd, name, AtFlags::empty()).map_err(self.err(name)),
        }
    }

    /// The type of the entry `name` itself (`lstat`), `None` when absent.
    fn file_type(&self, name: &str) -> Result<Option<FileType>, AgentError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.err(name)(e.into())),
        }
    }

    fn open_child_dir(&self, name: &str) -> Result<Self, rustix::io::Errno> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Self {
            fd,
            path: self.path.join(name),
        })
    }

    fn create_one(&self, name: &str) -> Result<Self, AgentError> {
        match self.file_type(name)? {
            Some(FileType::Directory) | None => {}
            // A file, symlink or FIFO where a directory belongs: removed, never followed.
            Some(_) => unlink(&self.fd, name, AtFlags::empty()).map_err(self.err(name))?,
        }
        match rustix::fs::mkdirat(&self.fd, name, Mode::from_raw_mode(DIR_MODE)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => return Err(self.err(name)(e.into())),
        }
        // Raced: whatever is there now must be a real directory, or this fails (ENOTDIR/ELOOP).
        let dir = self
            .open_child_dir(name)
            .map_err(|e| self.err(name)(e.into()))?;
        rustix::fs::fchmod(&dir.fd, Mode::from_raw_mode(DIR_MODE))
            .map_err(|e| self.err(name)(e.into()))?;
        Ok(dir)
    }

    fn reopen(&self) -> Result<Self, AgentError> {
        let fd = self
            .fd
            .as_fd()
            .try_clone_to_owned()
            .map_err(self.err("."))?;
        Ok(Self {
            fd,
            path: self.path.clone(),
        })
    }

    fn err(&self, name: &str) -> impl FnOnce(io::Error) -> AgentError {
        AgentError::workspace(self.path.join(name))
    }
}

/// Reads at most `max` bytes of `file`, whose size at open time was `len`: a file that grows
/// while it is read is still cut at `max + 1` and reported as too large.
pub fn read_bounded(file: File, len: u64, max: u64) -> io::Result<Bounded> {
    if len > max {
        return Ok(Bounded::TooLarge(len));
    }
    let mut buf = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        return Ok(Bounded::TooLarge(buf.len() as u64));
    }
    Ok(Bounded::Content(buf))
}

/// A regular file with a single name: a hard link the agent made to a file outside its
/// workspace (possible when the agent runs as nightcrier's user) is treated like a symlink.
fn own_regular_file(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && st.st_nlink == 1
}

fn unlink(dir: &OwnedFd, name: &str, flags: AtFlags) -> io::Result<()> {
    match rustix::fs::unlinkat(dir, name, flags) {
        Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn is_absent_or_not_dir(e: rustix::io::Errno) -> bool {
    matches!(
        e,
        rustix::io::Errno::NOENT | rustix::io::Errno::NOTDIR | rustix::io::Errno::LOOP
    )
}

fn invalid(path: &Path) -> AgentError {
    AgentError::workspace(path)(io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a relative path of plain names inside the workspace",
    ))
}

/// The plain components of `rel`; anything else (`..`, `/`, `.`) is refused.
fn components(rel: &Path) -> Result<Vec<&str>, AgentError> {
    rel.components()
        .map(|c| match c {
            Component::Normal(n) => n.to_str().ok_or_else(|| invalid(rel)),
            _ => Err(invalid(rel)),
        })
        .collect()
}

fn single(name: &str) -> Result<&str, AgentError> {
    match components(Path::new(name))?.as_slice() {
        [one] => Ok(one),
        _ => Err(invalid(Path::new(name))),
    }
}

fn split_workspace(dir: &Path) -> Result<(&Path, &str), AgentError> {
    let name = dir
        .file_name()
        .and_then(OsStr::to_str)
        .ok_or_else(|| invalid(dir))?;
    let root = dir.parent().ok_or_else(|| invalid(dir))?;
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    Ok((root, name))
}
