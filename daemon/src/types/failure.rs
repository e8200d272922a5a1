//! What a client may be told about a failure of ours. Most are "internal error"; running out of
//! disk, or storage that turned read-only, is worth saying, because it is the operator's to fix
//! and the client's to retry later.

use std::error::Error;

/// The reason to give a client for `error`, when it is one worth naming: the disk (or the
/// database's disk) is full, or the storage is read-only. Looks through the whole chain of
/// sources: an `io::Error`'s kind where there is one, else the text the OS, SQLite, PostgreSQL
/// and libgit2 use for these.
pub fn client_reason(error: &(dyn Error + 'static)) -> Option<&'static str> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(io) = error.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => return Some(FULL),
                std::io::ErrorKind::ReadOnlyFilesystem => return Some(READ_ONLY),
                _ => {}
            }
        }
        let text = error.to_string();
        if FULL_TEXTS.iter().any(|needle| text.contains(needle)) {
            return Some(FULL);
        }
        if READ_ONLY_TEXTS.iter().any(|needle| text.contains(needle)) {
            return Some(READ_ONLY);
        }
        next = error.source();
    }
    None
}

const FULL: &str = "the server's storage is full; try again later";
const READ_ONLY: &str = "the server's storage is read-only; try again later";

const FULL_TEXTS: &[&str] = &[
    "No space left on device",
    "Disk quota exceeded",
    // SQLite (SQLITE_FULL).
    "database or disk is full",
];
const READ_ONLY_TEXTS: &[&str] = &[
    "Read-only file system",
    // SQLite (SQLITE_READONLY), PostgreSQL (a hot standby, `default_transaction_read_only`).
    "attempt to write a readonly database",
    "read-only transaction",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot save")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn full_and_read_only_storage_are_named_and_the_rest_is_not() {
        let full = Outer(std::io::Error::from(std::io::ErrorKind::StorageFull));
        assert_eq!(client_reason(&full), Some(FULL));
        let enospc = std::io::Error::from_raw_os_error(28);
        assert_eq!(client_reason(&enospc), Some(FULL));
        let erofs = std::io::Error::from_raw_os_error(30);
        assert_eq!(client_reason(&erofs), Some(READ_ONLY));
        let sqlite = std::io::Error::other("database or disk is full");
        assert_eq!(client_reason(&sqlite), Some(FULL));
        let other = Outer(std::io::Error::other("connection reset"));
        assert_eq!(client_reason(&other), None);
    }
}
