//! Work queues the services share, held in `App`: identifiers waiting for the git-data sync
//! (consumed by `sync::run`) and repositories waiting for housekeeping (consumed by
//! `process::maintenance::run`). Plain data structures; the loops that act on them are the
//! services'.

mod hourly;
mod housekeeping;
mod sync;

use std::time::Duration;

pub use hourly::{Hourly, Over};
pub use housekeeping::Housekeeping;
pub use sync::{BACKOFF, Claim, Outcome, SyncQueue, SyncQueueEntry, backoff};

use crate::config::SyncSettings;
use crate::purgatory::Source;

/// How long a new waiting event of `source` lets its identifier rest before the sync looks.
pub fn delay_for(settings: &SyncSettings, source: Source) -> Duration {
    match source {
        Source::User => settings.default_delay,
        Source::Sync => settings.immediate_delay,
    }
}
