//! Value types every layer shares, validated once where data enters: git object ids and ref
//! names, repository identifiers and ids, the NIP-34 kinds, and what one run of the unified
//! procedure did. A leaf: it imports nothing of the crate.

mod failure;
mod git;
mod kind;
mod repo;
mod result;

pub use failure::client_reason;
pub use git::{GitValueError, Hex, Oid, RefName};
pub use kind::{
    KIND_ANNOUNCEMENT, KIND_ISSUE, KIND_PATCH, KIND_PULL_REQUEST, KIND_PULL_REQUEST_UPDATE, KIND_STATE,
    Nip34Kind,
};
pub use repo::{Area, Identifier, IdentifierError, MAX_IDENTIFIER_BYTES, RepoId, npub};
pub use result::{ProcessResult, RefChanges};
