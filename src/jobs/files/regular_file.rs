//! Opening the files of the results directory without ever blocking on, or following,
//! an entry that is not a regular file (a FIFO, a directory, a socket, a symlink put
//! there by mistake): such an entry gets an error naming it, and is left alone.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Opens `path` as `options` say, but refuses anything that is not a regular file:
/// `O_NONBLOCK` keeps the open of a FIFO from waiting for a peer, `O_NOFOLLOW` refuses
/// a symlink, and the type of what was opened is checked before it is used.
///
/// # Errors
/// Whatever `open` answers, or `InvalidInput` naming the path and what it is.
pub fn open_regular(path: &Path, options: &mut OpenOptions) -> io::Result<File> {
    let flags = rustix::fs::OFlags::NONBLOCK | rustix::fs::OFlags::NOFOLLOW;
    let file = options
        .custom_flags(flags.bits() as i32)
        .open(path)
        .map_err(|error| {
            use rustix::io::Errno;
            match error.raw_os_error().map(Errno::from_raw_os_error) {
                Some(Errno::LOOP) => not_regular(path, "a symbolic link"),
                Some(Errno::ISDIR) => not_regular(path, "a directory"),
                // A FIFO opened for writing, with no reader, when waiting is not allowed.
                Some(Errno::NXIO) => not_regular(path, "a FIFO or a device"),
                _ => error,
            }
        })?;
    let file_type = file.metadata()?.file_type();
    if !file_type.is_file() {
        return Err(not_regular(path, kind_of(file_type)));
    }
    Ok(file)
}

/// Opens `path` for appending, made if missing, as `open_regular` opens; and its length.
/// An empty file's name may not be durable yet (it was made here, or by an append that
/// failed before its name was synced): the caller syncs the directory then, once what
/// it appended is synced.
///
/// # Errors
/// As `open_regular`.
pub fn open_for_append(path: &Path) -> io::Result<(File, u64)> {
    let file = match open_regular(path, OpenOptions::new().append(true)) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            open_regular(path, OpenOptions::new().append(true).create(true))?
        }
        opened => opened?,
    };
    let len = file.metadata()?.len();
    Ok((file, len))
}

/// What `replace_durably` left.
pub struct Replaced {
    /// The new file's length.
    pub len: u64,
    /// Whether the directory was synced after the rename; if not, after a power cut
    /// the old file may be back.
    pub directory_synced: io::Result<()>,
}

/// Replaces `path` with what `write` writes: into `temporary`, made anew, synced, then
/// renamed over it, and the directory synced.
///
/// # Errors
/// When the new file could not be written, synced or renamed; the old one is then as
/// it was, and the temporary file is gone.
pub fn replace_durably(
    path: &Path,
    temporary: &Path,
    write: impl FnOnce(&mut io::BufWriter<File>) -> io::Result<()>,
) -> io::Result<Replaced> {
    let mut replacement = Replacement::begin(path, temporary)?;
    write(replacement.writer())?;
    replacement.finish()
}

/// A file written under a temporary name to take the place of another, durably, in
/// steps: what is written first may be synced before the caller holds off the
/// appends to the old file, and the lines appended meanwhile written after.
pub struct Replacement {
    out: io::BufWriter<File>,
    path: PathBuf,
    temporary: PathBuf,
    /// Renamed into place: the temporary name is gone.
    finished: bool,
}

impl Replacement {
    /// Makes `temporary` anew, to replace `path`.
    ///
    /// # Errors
    /// As [`create_fresh`].
    pub fn begin(path: &Path, temporary: &Path) -> io::Result<Replacement> {
        Ok(Replacement {
            out: io::BufWriter::new(create_fresh(temporary)?),
            path: path.to_owned(),
            temporary: temporary.to_owned(),
            finished: false,
        })
    }

    pub fn writer(&mut self) -> &mut io::BufWriter<File> {
        &mut self.out
    }

    /// Makes what is written so far durable, so that `finish` has little left to sync.
    ///
    /// # Errors
    /// A write or sync error.
    pub fn sync(&mut self) -> io::Result<()> {
        self.out.flush()?;
        self.out.get_ref().sync_data()
    }

    /// Syncs the new file, renames it over the old one and syncs the directory.
    ///
    /// # Errors
    /// When the new file could not be written, synced or renamed; the old one is then
    /// as it was, and the temporary file is gone.
    pub fn finish(mut self) -> io::Result<Replaced> {
        self.out.flush()?;
        let file = self.out.get_ref();
        file.sync_all()?;
        let len = file.metadata()?.len();
        std::fs::rename(&self.temporary, &self.path)?;
        self.finished = true;
        let directory = self.path.parent().expect("a file is in a directory");
        Ok(Replaced {
            len,
            directory_synced: super::sync_directory(directory),
        })
    }
}

impl Drop for Replacement {
    fn drop(&mut self) {
        if !self.finished {
            let _ = std::fs::remove_file(&self.temporary);
        }
    }
}

/// Makes `path` anew for writing, with `O_EXCL`, which follows no symlink: whatever
/// has its name already is removed (a symlink itself, not what it points to), then the
/// file is made again. Made first and removed only if there, as most paths are new (a
/// result per job): no lookup of a name that is not there.
///
/// # Errors
/// Whatever the file system answers (a directory of that name cannot be removed).
pub fn create_fresh(path: &Path) -> io::Result<File> {
    let create = || OpenOptions::new().write(true).create_new(true).open(path);
    match create() {
        Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
            match std::fs::remove_file(path) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
            create()
        }
        created => created,
    }
}

/// Reads the whole of `path`, a regular file.
///
/// # Errors
/// As [`open_regular`], or a read error.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut file = open_regular(path, OpenOptions::new().read(true))?;
    let mut bytes = Vec::new();
    io::Read::read_to_end(&mut file, &mut bytes)?;
    Ok(bytes)
}

/// Calls `each` with every non-empty line of `file` (or of what it reads of a file),
/// without its newline, a line at a time (the files read so may hold many lines no
/// longer needed).
///
/// # Errors
/// A read error.
pub fn for_each_line(file: impl io::Read, mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let mut text = io::BufReader::new(file);
    let mut line = Vec::new();
    loop {
        line.clear();
        if io::BufRead::read_until(&mut text, b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let line = line.strip_suffix(b"\n").unwrap_or(&line);
        if !line.is_empty() {
            each(line);
        }
    }
}

/// What a directory entry is, in words, for a message about one that is not a file.
pub fn kind_of(file_type: std::fs::FileType) -> &'static str {
    if file_type.is_file() {
        "a regular file"
    } else if file_type.is_dir() {
        "a directory"
    } else if file_type.is_symlink() {
        "a symbolic link"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device"
    } else {
        "an entry of an unknown type"
    }
}

fn not_regular(path: &Path, kind: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} is {kind}, not a regular file", path.display()),
    )
}

/// Makes a FIFO at `path`, for the tests of entries the server never makes. Not by
/// running `mkfifo`: a child forked meanwhile holds every open file of the tests'
/// process until it runs the program, a results directory's lock among them, which
/// another test then finds held.
#[cfg(test)]
pub fn make_fifo(path: &Path) {
    use rustix::fs::{CWD, FileType, Mode, mknodat};
    mknodat(CWD, path, FileType::Fifo, Mode::from_raw_mode(0o600), 0).expect("a FIFO is made");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fifo_a_directory_and_a_symlink_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        make_fifo(&fifo);
        let subdir = dir.path().join("subdir");
        std::fs::create_dir(&subdir).unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, b"data").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        for (path, kind) in [
            (&fifo, "a FIFO"),
            (&subdir, "a directory"),
            (&link, "a symbolic link"),
        ] {
            let error = read_regular(path).unwrap_err();
            assert!(error.to_string().contains(kind), "{error}");
            assert!(error.to_string().contains(&*path.to_string_lossy()));
        }
        assert_eq!(read_regular(&file).unwrap(), b"data");
    }
}
