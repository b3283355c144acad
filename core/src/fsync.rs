//! `fdatasync` for the spool and the file sink, with a failure tests can inject.
//!
//! A failed fsync leaves the file's recent writes in an unknown state (maybe on disk, maybe not,
//! and a later fsync may report success without having written them). Callers therefore cut off
//! what they just wrote and report the failure, so nothing reported as failed is later read back
//! and delivered (which would count an event twice: dropped and delivered).

use std::fs::File;
use std::io;

/// `fdatasync(file)`.
pub(crate) fn sync_data(file: &File) -> io::Result<()> {
    #[cfg(test)]
    if FAIL_NEXT.with(|f| f.replace(false)) {
        return Err(io::Error::other("injected fsync failure"));
    }
    file.sync_data()
}

#[cfg(test)]
thread_local! {
    static FAIL_NEXT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Makes this thread's next [`sync_data`] fail.
#[cfg(test)]
pub(crate) fn fail_next() {
    FAIL_NEXT.with(|f| f.set(true));
}
