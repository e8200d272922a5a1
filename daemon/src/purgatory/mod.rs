//! Purgatory: accepted events that are not served until their git data arrives.
//!
//! Announcements, states, pull requests and pull request updates whose git data is not on disk
//! wait here. The in-memory indexes answer the hot questions (is this id waiting? which events wait
//! for this identifier? is there a pending announcement for this repository?) without touching the
//! database; every change is written through to the `purgatory` table *before* memory changes, so
//! what a client was told is kept survives a crash and is reloaded at start, deadlines intact.
//!
//! Expiry uses an ordered deadline index: the expiry task sleeps until the earliest deadline (or
//! until a change notifies it), never scanning every entry.

use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use nostr::{Event, EventId, Kind, PublicKey};
use tokio::sync::Notify;

use crate::store::{PlaceholderRow, PurgatoryRow, Store, StoreError};
use crate::types::Oid;
use crate::types::{Area, Identifier, KIND_ANNOUNCEMENT, KIND_STATE, Nip34Kind, RepoId};

/// How an event reached us. Sync-sourced events are retried sooner by the sync loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    User,
    Sync,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::User => "user",
            Self::Sync => "sync",
        }
    }

    fn parse(s: &str) -> Self {
        if s == "sync" { Self::Sync } else { Self::User }
    }
}

/// One waiting event.
#[derive(Debug, Clone)]
pub struct Entry {
    pub event: Event,
    pub kind: Nip34Kind,
    pub identifier: Identifier,
    pub received_at_ms: i64,
    pub expires_at_ms: i64,
    pub source: Source,
}

impl Entry {
    /// The (kind, author, identifier) address of announcements and states; `None` for PRs.
    fn address(&self) -> Option<Address> {
        match self.kind {
            Nip34Kind::Announcement | Nip34Kind::State => Some((
                self.event.kind.as_u16(),
                self.event.pubkey,
                self.identifier.clone(),
            )),
            Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => None,
        }
    }
}

type Address = (u16, PublicKey, Identifier);

/// A pull request ref pushed before its event: `refs/nostr/<event_id>` at `tip` in `repo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placeholder {
    pub event_id: EventId,
    pub repo: RepoId,
    pub tip: Oid,
    pub expires_at_ms: i64,
}

/// What [`Purgatory::insert`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    Added,
    /// Took the place of an older event at the same address.
    Replaced(EventId),
    /// A newer event at the same address already waits; nothing changed.
    Superseded(EventId),
    /// The same event already waits.
    Duplicate,
}

/// Handle to purgatory. Cloning is shallow.
#[derive(Debug, Clone)]
pub struct Purgatory {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    expiry: Duration,
    entries: DashMap<EventId, Arc<Entry>>,
    by_identifier: DashMap<Identifier, HashSet<EventId>>,
    by_address: DashMap<Address, EventId>,
    deadlines: Mutex<BTreeSet<(i64, EventId)>>,
    placeholders: DashMap<(EventId, RepoId), Placeholder>,
    placeholder_deadlines: Mutex<BTreeSet<(i64, EventId, RepoId)>>,
    /// Serializes changes so the database and memory change in the same order.
    write: tokio::sync::Mutex<()>,
    changed: Notify,
}

/// The `area` column of a placeholder row (see migration 0003).
fn area_column(repo: &RepoId) -> &'static str {
    match repo.area {
        Area::Owner => "",
        Area::PullRequests => Area::PRS_DIR,
    }
}

fn area_from_column(value: &str) -> Option<Area> {
    match value {
        "" => Some(Area::Owner),
        Area::PRS_DIR => Some(Area::PullRequests),
        _ => None,
    }
}

/// Milliseconds since the Unix epoch.
/// The entry a purgatory row holds; `None` for a kind or identifier no longer accepted.
fn entry_from_row(row: PurgatoryRow) -> Option<Entry> {
    let kind = Nip34Kind::of(row.event.kind)?;
    let identifier = Identifier::parse(&row.identifier).ok()?;
    Some(Entry {
        event: row.event,
        kind,
        identifier,
        received_at_ms: row.received_at_ms,
        expires_at_ms: row.expires_at_ms,
        source: Source::parse(&row.source),
    })
}

/// The placeholder a row holds; `None` when a column does not parse.
fn placeholder_from_row(row: &PlaceholderRow) -> Option<Placeholder> {
    Some(Placeholder {
        event_id: EventId::from_hex(&row.event_id).ok()?,
        repo: RepoId {
            owner: PublicKey::from_hex(&row.owner).ok()?,
            identifier: Identifier::parse(&row.identifier).ok()?,
            area: area_from_column(&row.area)?,
        },
        tip: Oid::parse(&row.tip).ok()?,
        expires_at_ms: row.expires_at_ms,
    })
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Purgatory {
    /// Loads every persisted entry. Rows of a kind or identifier that is no longer accepted are
    /// dropped with a warning; a row whose event JSON does not parse stops the start (the store is
    /// damaged and needs an operator).
    pub async fn load(store: Store, expiry: Duration) -> Result<Self, StoreError> {
        let purgatory = Self {
            inner: Arc::new(Inner {
                store: store.clone(),
                expiry,
                entries: DashMap::new(),
                by_identifier: DashMap::new(),
                by_address: DashMap::new(),
                deadlines: Mutex::new(BTreeSet::new()),
                placeholders: DashMap::new(),
                placeholder_deadlines: Mutex::new(BTreeSet::new()),
                write: tokio::sync::Mutex::new(()),
                changed: Notify::new(),
            }),
        };
        for row in store.purgatory_all().await? {
            let Some(entry) = entry_from_row(row.clone()) else {
                tracing::warn!(event_id = %row.event.id, "dropping unreadable purgatory row");
                store.purgatory_remove(&row.event.id).await?;
                continue;
            };
            purgatory.index(Arc::new(entry));
        }
        for row in store.placeholders_all().await? {
            let Some(placeholder) = placeholder_from_row(&row) else {
                tracing::warn!(event_id = %row.event_id, "dropping unreadable placeholder row");
                store
                    .placeholder_remove(&row.event_id, &row.area, &row.owner, &row.identifier)
                    .await?;
                continue;
            };
            purgatory.index_placeholder(placeholder);
        }
        Ok(purgatory)
    }

    /// Makes what memory holds for `identifier` (entries and placeholders) equal the tables:
    /// another node sharing the database may have changed them. Rows this node cannot read are
    /// left to the node that wrote them.
    pub async fn refresh(&self, identifier: &Identifier) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let rows = store.purgatory_rows_for(identifier.as_str()).await?;
        let placeholders = store.placeholders_for(identifier.as_str()).await?;
        self.replace_from(rows, placeholders, Some(identifier)).await;
        Ok(())
    }

    /// [`refresh`](Self::refresh) for every identifier (after notifications may have been
    /// missed).
    pub async fn reload(&self) -> Result<(), StoreError> {
        let store = &self.inner.store;
        let rows = store.purgatory_all().await?;
        let placeholders = store.placeholders_all().await?;
        self.replace_from(rows, placeholders, None).await;
        Ok(())
    }

    /// Replaces the entries and placeholders in `scope` (one identifier, or all) by `rows` and
    /// `placeholder_rows`, without writing anything.
    async fn replace_from(
        &self,
        rows: Vec<PurgatoryRow>,
        placeholder_rows: Vec<PlaceholderRow>,
        scope: Option<&Identifier>,
    ) {
        let in_scope = |identifier: &Identifier| scope.is_none_or(|scope| scope == identifier);
        let _guard = self.inner.write.lock().await;
        let fresh: Vec<Entry> = rows.into_iter().filter_map(entry_from_row).collect();
        let wanted: HashSet<EventId> = fresh.iter().map(|entry| entry.event.id).collect();
        let held: Vec<EventId> = self
            .inner
            .entries
            .iter()
            .filter(|entry| in_scope(&entry.identifier) && !wanted.contains(entry.key()))
            .map(|entry| *entry.key())
            .collect();
        for id in held {
            self.unindex(&id);
        }
        for entry in fresh {
            let same = self
                .get(&entry.event.id)
                .is_some_and(|held| held.expires_at_ms == entry.expires_at_ms);
            if !same {
                self.unindex(&entry.event.id);
                self.index(Arc::new(entry));
            }
        }
        let fresh: Vec<Placeholder> = placeholder_rows.iter().filter_map(placeholder_from_row).collect();
        let held: Vec<(EventId, RepoId)> = self
            .inner
            .placeholders
            .iter()
            .filter(|p| in_scope(&p.key().1.identifier))
            .map(|p| p.key().clone())
            .collect();
        for (event_id, repo) in held {
            self.unindex_placeholder(&event_id, &repo);
        }
        for placeholder in fresh {
            self.index_placeholder(placeholder);
        }
        self.inner.changed.notify_one();
    }

    // ---- pull request placeholders --------------------------------------------------------

    /// Records (or moves) a placeholder, written through first, expiring like purgatory entries.
    pub async fn add_placeholder(&self, event_id: EventId, repo: RepoId, tip: Oid) -> Result<(), StoreError> {
        self.add_placeholder_expiring(event_id, repo, tip, self.inner.expiry)
            .await
    }

    /// Records (or moves) a placeholder that expires after `expiry`.
    pub async fn add_placeholder_expiring(
        &self,
        event_id: EventId,
        repo: RepoId,
        tip: Oid,
        expiry: Duration,
    ) -> Result<(), StoreError> {
        let _guard = self.inner.write.lock().await;
        let expiry_ms = i64::try_from(expiry.as_millis()).unwrap_or(i64::MAX);
        let placeholder = Placeholder {
            event_id,
            repo,
            tip,
            expires_at_ms: now_ms().saturating_add(expiry_ms),
        };
        self.inner
            .store
            .placeholder_put(&PlaceholderRow {
                event_id: event_id.to_hex(),
                area: area_column(&placeholder.repo).to_owned(),
                owner: placeholder.repo.owner.to_hex(),
                identifier: placeholder.repo.identifier.to_string(),
                tip: placeholder.tip.to_string(),
                expires_at_ms: placeholder.expires_at_ms,
            })
            .await?;
        self.unindex_placeholder(&event_id, &placeholder.repo);
        self.index_placeholder(placeholder);
        self.inner.changed.notify_one();
        Ok(())
    }

    /// Every placeholder for an event id (one per repository).
    pub fn placeholders_for(&self, event_id: &EventId) -> Vec<Placeholder> {
        self.inner
            .placeholders
            .iter()
            .filter(|p| p.key().0 == *event_id)
            .map(|p| p.value().clone())
            .collect()
    }

    pub async fn remove_placeholder(&self, event_id: &EventId, repo: &RepoId) -> Result<(), StoreError> {
        let _guard = self.inner.write.lock().await;
        self.inner
            .store
            .placeholder_remove(
                &event_id.to_hex(),
                area_column(repo),
                &repo.owner.to_hex(),
                repo.identifier.as_str(),
            )
            .await?;
        self.unindex_placeholder(event_id, repo);
        Ok(())
    }

    /// Placeholders whose deadline is at or before `now_ms` (not removed).
    pub fn expired_placeholders(&self, now_ms: i64) -> Vec<Placeholder> {
        let deadlines = self
            .inner
            .placeholder_deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        deadlines
            .iter()
            .take_while(|(at, _, _)| *at <= now_ms)
            .filter_map(|(_, id, repo)| {
                self.inner
                    .placeholders
                    .get(&(*id, repo.clone()))
                    .map(|p| p.clone())
            })
            .collect()
    }

    pub fn placeholder_count(&self) -> usize {
        self.inner.placeholders.len()
    }

    /// Placeholders waiting in one repository (a walk over all of them: they are capped).
    pub fn placeholder_count_in(&self, repo: &RepoId) -> usize {
        self.inner
            .placeholders
            .iter()
            .filter(|p| p.key().1 == *repo)
            .count()
    }

    fn index_placeholder(&self, placeholder: Placeholder) {
        let key = (placeholder.event_id, placeholder.repo.clone());
        self.inner
            .placeholder_deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((
                placeholder.expires_at_ms,
                placeholder.event_id,
                placeholder.repo.clone(),
            ));
        self.inner.placeholders.insert(key, placeholder);
    }

    fn unindex_placeholder(&self, event_id: &EventId, repo: &RepoId) {
        if let Some((_, old)) = self.inner.placeholders.remove(&(*event_id, repo.clone())) {
            self.inner
                .placeholder_deadlines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(old.expires_at_ms, old.event_id, old.repo));
        }
    }

    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    pub fn contains(&self, id: &EventId) -> bool {
        self.inner.entries.contains_key(id)
    }

    pub fn get(&self, id: &EventId) -> Option<Arc<Entry>> {
        self.inner.entries.get(id).map(|e| Arc::clone(e.value()))
    }

    /// Every entry waiting for `identifier`.
    pub fn for_identifier(&self, identifier: &Identifier) -> Vec<Arc<Entry>> {
        let Some(ids) = self.inner.by_identifier.get(identifier).map(|s| s.clone()) else {
            return Vec::new();
        };
        ids.iter().filter_map(|id| self.get(id)).collect()
    }

    /// The pending announcement for a repository, if one waits.
    pub fn announcement(&self, repo: &RepoId) -> Option<Arc<Entry>> {
        let address = (
            Kind::from(KIND_ANNOUNCEMENT).as_u16(),
            repo.owner,
            repo.identifier.clone(),
        );
        let id = *self.inner.by_address.get(&address)?;
        self.get(&id)
    }

    /// The pending event at an address (announcement or state by `author`).
    pub fn at_address(
        &self,
        kind: Nip34Kind,
        author: &PublicKey,
        identifier: &Identifier,
    ) -> Option<Arc<Entry>> {
        let kind = match kind {
            Nip34Kind::Announcement => KIND_ANNOUNCEMENT,
            Nip34Kind::State => KIND_STATE,
            Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => return None,
        };
        let id = *self.inner.by_address.get(&(kind, *author, identifier.clone()))?;
        self.get(&id)
    }

    /// Every waiting entry (for status listings).
    pub fn all(&self) -> Vec<Arc<Entry>> {
        self.inner.entries.iter().map(|e| Arc::clone(e.value())).collect()
    }

    /// Identifiers with at least one waiting entry.
    pub fn identifiers(&self) -> Vec<Identifier> {
        self.inner.by_identifier.iter().map(|e| e.key().clone()).collect()
    }

    /// Adds an event (written through first). An older event at the same address is replaced; a
    /// newer one wins and nothing changes.
    pub async fn insert(
        &self,
        event: Event,
        kind: Nip34Kind,
        identifier: Identifier,
        source: Source,
    ) -> Result<Inserted, StoreError> {
        let _guard = self.inner.write.lock().await;
        if self.contains(&event.id) {
            return Ok(Inserted::Duplicate);
        }
        let now = now_ms();
        let expiry_ms = i64::try_from(self.inner.expiry.as_millis()).unwrap_or(i64::MAX);
        let entry = Arc::new(Entry {
            event,
            kind,
            identifier,
            received_at_ms: now,
            expires_at_ms: now.saturating_add(expiry_ms),
            source,
        });
        let previous = entry
            .address()
            .and_then(|a| self.inner.by_address.get(&a).map(|id| *id));
        let row = PurgatoryRow {
            event: entry.event.clone(),
            identifier: entry.identifier.to_string(),
            received_at_ms: entry.received_at_ms,
            expires_at_ms: entry.expires_at_ms,
            source: source.as_str().to_owned(),
        };
        let outcome = match previous.and_then(|id| self.get(&id)) {
            Some(old) if is_newer(&old.event, &entry.event) => return Ok(Inserted::Superseded(old.event.id)),
            Some(old) => {
                self.inner.store.purgatory_replace(&row, &old.event.id).await?;
                self.unindex(&old.event.id);
                Inserted::Replaced(old.event.id)
            }
            None => {
                self.inner.store.purgatory_put(&row).await?;
                Inserted::Added
            }
        };
        self.index(entry);
        self.inner.changed.notify_one();
        Ok(outcome)
    }

    /// Removes an entry (written through first). Returns it if it was there.
    pub async fn remove(&self, id: &EventId) -> Result<Option<Arc<Entry>>, StoreError> {
        let _guard = self.inner.write.lock().await;
        if !self.contains(id) {
            return Ok(None);
        }
        self.inner.store.purgatory_remove(id).await?;
        Ok(self.unindex(id))
    }

    /// Forgets an entry whose row was already deleted in the database (by
    /// [`Store::release`](crate::store::Store::release)).
    pub async fn forget(&self, id: &EventId) -> Option<Arc<Entry>> {
        let _guard = self.inner.write.lock().await;
        self.unindex(id)
    }

    /// NIP-09: removes the deletion author's own entries named by `e` tags, and those at `a`
    /// coordinates created at or before the deletion. Returns what was removed.
    pub async fn apply_deletion(&self, deletion: &Event) -> Result<Vec<Arc<Entry>>, StoreError> {
        let mut doomed = Vec::new();
        for tag in deletion.tags.iter() {
            let values = tag.as_slice();
            match (values.first().map(String::as_str), values.get(1)) {
                (Some("e"), Some(value)) => {
                    if let Ok(id) = EventId::from_hex(value)
                        && let Some(entry) = self.get(&id)
                        && entry.event.pubkey == deletion.pubkey
                    {
                        doomed.push(id);
                    }
                }
                (Some("a"), Some(value)) => {
                    let Some(address) = crate::nip01::Address::parse(value) else {
                        continue;
                    };
                    let (kind, author) = (address.kind.as_u16(), address.author);
                    let Ok(identifier) = Identifier::parse(address.d) else {
                        continue;
                    };
                    if author != deletion.pubkey {
                        continue;
                    }
                    if let Some(id) = self
                        .inner
                        .by_address
                        .get(&(kind, author, identifier))
                        .map(|id| *id)
                        && let Some(entry) = self.get(&id)
                        && entry.event.created_at <= deletion.created_at
                    {
                        doomed.push(id);
                    }
                }
                _ => {}
            }
        }
        let mut removed = Vec::new();
        for id in doomed {
            if let Some(entry) = self.remove(&id).await? {
                removed.push(entry);
            }
        }
        Ok(removed)
    }

    /// The earliest deadline (entries and placeholders), in Unix milliseconds.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let entries = self.deadlines().first().map(|(at, _)| *at);
        let placeholders = self
            .inner
            .placeholder_deadlines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first()
            .map(|(at, _, _)| *at);
        match (entries, placeholders) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Entries whose deadline is at or before `now_ms`, earliest first (not removed).
    pub fn expired(&self, now_ms: i64) -> Vec<Arc<Entry>> {
        self.deadlines()
            .iter()
            .take_while(|(at, _)| *at <= now_ms)
            .filter_map(|(_, id)| self.get(id))
            .collect()
    }

    /// Resolves when an entry was added (the next deadline may have moved earlier).
    pub async fn changed(&self) {
        self.inner.changed.notified().await;
    }

    fn deadlines(&self) -> std::sync::MutexGuard<'_, BTreeSet<(i64, EventId)>> {
        // A poisoned lock only means another thread panicked mid-update of a plain set; the set
        // itself is still consistent.
        self.inner.deadlines.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn index(&self, entry: Arc<Entry>) {
        let id = entry.event.id;
        self.deadlines().insert((entry.expires_at_ms, id));
        self.inner
            .by_identifier
            .entry(entry.identifier.clone())
            .or_default()
            .insert(id);
        if let Some(address) = entry.address() {
            self.inner.by_address.insert(address, id);
        }
        self.inner.entries.insert(id, entry);
    }

    fn unindex(&self, id: &EventId) -> Option<Arc<Entry>> {
        let (_, entry) = self.inner.entries.remove(id)?;
        self.deadlines().remove(&(entry.expires_at_ms, *id));
        if let Some(address) = entry.address() {
            self.inner
                .by_address
                .remove_if(&address, |_, current| current == id);
        }
        let now_empty = self
            .inner
            .by_identifier
            .get_mut(&entry.identifier)
            .map(|mut ids| {
                ids.remove(id);
                ids.is_empty()
            })
            .unwrap_or(false);
        if now_empty {
            self.inner
                .by_identifier
                .remove_if(&entry.identifier, |_, ids| ids.is_empty());
        }
        Some(entry)
    }
}

pub use crate::nip01::is_newer;

#[cfg(test)]
mod tests;
