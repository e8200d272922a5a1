//! Repositories waiting for housekeeping (`git maintenance run --auto`): requested by the
//! unified procedure and object copies, consumed by `process::maintenance::run`.

use std::collections::HashSet;
use std::sync::Mutex;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::types::RepoId;

/// Requests for housekeeping, each repository queued at most once.
#[derive(Debug)]
pub struct Housekeeping {
    queue: mpsc::UnboundedSender<(RepoId, Instant)>,
    pending: Mutex<HashSet<RepoId>>,
    /// Of `pending`, those whose unreachable objects are to be pruned now (not after git's two
    /// weeks): a placeholder expired or a pull request ref went.
    prune: Mutex<HashSet<RepoId>>,
    /// Taken by [`run`].
    receiver: Mutex<Option<mpsc::UnboundedReceiver<(RepoId, Instant)>>>,
}

impl Default for Housekeeping {
    fn default() -> Self {
        let (queue, receiver) = mpsc::unbounded_channel();
        Self {
            queue,
            pending: Mutex::new(HashSet::new()),
            prune: Mutex::new(HashSet::new()),
            receiver: Mutex::new(Some(receiver)),
        }
    }
}

impl Housekeeping {
    /// Asks for `repo` to be checked soon; a repository already waiting is not queued twice.
    pub fn request(&self, repo: &RepoId) {
        let newly = self
            .pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(repo.clone());
        if newly {
            let _ = self.queue.send((repo.clone(), Instant::now()));
        }
    }

    /// Asks for `repo`'s unreachable objects to be pruned soon (with its housekeeping).
    pub fn request_prune(&self, repo: &RepoId) {
        self.prune
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(repo.clone());
        self.request(repo);
    }

    /// Whether `repo` was asked to be pruned (and forgets the request).
    pub fn take_prune(&self, repo: &RepoId) -> bool {
        self.prune
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(repo)
    }

    /// The requests, for the one loop that serves them (`None` once taken).
    pub fn take_requests(&self) -> Option<mpsc::UnboundedReceiver<(RepoId, Instant)>> {
        self.receiver
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
    }

    /// Repositories waiting to be checked.
    pub fn len(&self) -> usize {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The repository is being checked: a new request queues it again.
    pub fn take(&self, repo: &RepoId) {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(repo);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Identifier;

    fn repo(identifier: &str) -> RepoId {
        RepoId::new(
            nostr::Keys::generate().public_key(),
            Identifier::parse(identifier).expect("identifier"),
        )
    }

    #[test]
    fn a_repository_waits_once_however_often_it_is_asked_for() {
        let housekeeping = Housekeeping::default();
        let (a, b) = (repo("a"), repo("b"));
        housekeeping.request(&a);
        housekeeping.request(&a);
        housekeeping.request(&b);
        assert_eq!(housekeeping.len(), 2);
        let mut receiver = housekeeping.take_requests().expect("receiver");
        assert!(housekeeping.take_requests().is_none(), "taken once");
        assert_eq!(receiver.try_recv().expect("first").0, a);
        assert_eq!(receiver.try_recv().expect("second").0, b);
        assert!(receiver.try_recv().is_err(), "a is queued once");
        // Once a check starts, new data asks again.
        housekeeping.take(&a);
        housekeeping.request(&a);
        assert_eq!(receiver.try_recv().expect("again").0, a);
    }
}
