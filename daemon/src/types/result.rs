//! What the unified procedure did: counts for the pusher, the log, watchers and the gRPC API.

/// What aligning a repository with a state changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RefChanges {
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
    pub head_changed: bool,
}

impl RefChanges {
    /// Adds another alignment's changes to these.
    pub fn absorb(&mut self, other: &RefChanges) {
        self.created += other.created;
        self.updated += other.updated;
        self.deleted += other.deleted;
        self.head_changed |= other.head_changed;
    }
}

/// What one run of the procedure did (the `ProcessResult` of the gRPC API).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ProcessResult {
    pub states_released: u32,
    pub pull_requests_released: u32,
    pub announcements_released: u32,
    pub repos_synced: u32,
    pub refs_created: u32,
    pub refs_updated: u32,
    pub refs_deleted: u32,
    /// Non-fatal errors, one line each (the event concerned stays in purgatory).
    pub errors: Vec<String>,
}

impl ProcessResult {
    /// Adds one alignment's ref changes.
    pub fn add(&mut self, changes: &RefChanges) {
        self.refs_created += changes.created;
        self.refs_updated += changes.updated;
        self.refs_deleted += changes.deleted;
    }

    /// Adds another run's counts and errors to these (start-up reconciliation sums its runs).
    pub fn absorb(&mut self, other: ProcessResult) {
        self.states_released += other.states_released;
        self.pull_requests_released += other.pull_requests_released;
        self.announcements_released += other.announcements_released;
        self.repos_synced += other.repos_synced;
        self.refs_created += other.refs_created;
        self.refs_updated += other.refs_updated;
        self.refs_deleted += other.refs_deleted;
        self.errors.extend(other.errors);
    }

    /// Whether anything happened worth telling the pusher.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }

    /// Lines for the pusher (`remote: ...`) and the log.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        if self.states_released + self.pull_requests_released + self.announcements_released > 0 {
            lines.push(format!(
                "graspd: released {} state(s), {} pull request(s), {} announcement(s) from purgatory",
                self.states_released, self.pull_requests_released, self.announcements_released
            ));
        }
        if self.repos_synced > 0 {
            lines.push(format!(
                "graspd: synced {} repositor{} ({} refs created, {} updated, {} deleted)",
                self.repos_synced,
                if self.repos_synced == 1 { "y" } else { "ies" },
                self.refs_created,
                self.refs_updated,
                self.refs_deleted
            ));
        }
        lines.extend(self.errors.iter().map(|e| format!("graspd: error: {e}")));
        lines
    }
}
