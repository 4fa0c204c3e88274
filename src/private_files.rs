//! Everything the daemon writes is private to its user: files 0600,
//! folders 0700, whatever the umask it was started with. The ledger holds
//! customer addresses and ticket data, outboxes hold whole notices; a
//! 0644 default would hand them to every local account.
//!
//! Two layers: the process umask is set to 077 before anything is created
//! (it covers files made by libraries: SQLite's WAL and SHM, temp files),
//! and the files and folders we create ourselves carry explicit modes, so
//! the library used without `interim::cli::main` is private too.

use std::fs::{DirBuilder, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

/// The mode of every file the daemon creates.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every folder the daemon creates.
pub const DIR_MODE: u32 = 0o700;

/// Makes files and folders created from now on by this process private.
pub fn restrict_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Options that create a missing file as 0600.
pub fn open_options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// `create_dir_all` with folders created as 0700.
pub fn create_dir_all(path: &Path) -> std::io::Result<()> {
    DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(path)
}

/// Creates `path` as an empty 0600 file if it does not exist yet (SQLite
/// gives its WAL and SHM files the mode of the database file).
pub fn create_file(path: &Path) -> std::io::Result<()> {
    open_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map(drop)
}

/// Writes `bytes` to a new (or truncated) private file.
pub fn write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = open_options()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
