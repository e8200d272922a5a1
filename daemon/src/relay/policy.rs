//! The GRASP-01 write policy: which events this relay accepts, which it refuses, and which it
//! acknowledges into purgatory (`OK true "purgatory: ..."`, not stored, not served).
//!
//! The relay builder has already checked the id, signature and rate limit when `admit_event`
//! runs. Returning `Accept` lets the relay store and broadcast the event; everything else answers
//! the client without storing.

use std::borrow::Cow;
use std::net::SocketAddr;

use nostr::message::{MachineReadablePrefix, relay::SingleWord};
use nostr::util::BoxedFuture;
use nostr::{Event, EventId, Kind};
use nostr_relay_builder::builder::{WritePolicy, WritePolicyResult};

use crate::app::{App, RepoGroup};
use crate::nip34::{
    Announcement, Identifier, Nip34Kind, PullRequest, RepoId, RepoState, parse_repo_coordinate,
    repo_coordinates,
};
use crate::process::{self, ProcessError};
use crate::purgatory::{Inserted, Source};
use crate::store::{StoreError, address_d_tag};

/// The message GRASP-01 [22] prescribes for events held in purgatory.
pub const PURGATORY_MESSAGE: &str = "won't be served until git data arrives";

/// The `purgatory:` prefix ("purgatory" is one word, so the fallback never happens).
fn purgatory_prefix() -> MachineReadablePrefix {
    SingleWord::from_static("purgatory").map_or(MachineReadablePrefix::Error, MachineReadablePrefix::Custom)
}

/// A decision with its reason, before it becomes an `OK` message.
enum Verdict {
    /// Store and serve now.
    Accept,
    /// Acknowledged, held in purgatory.
    Purgatory,
    /// Acknowledged without storing (e.g. already have it).
    Ok(MachineReadablePrefix, String),
    Reject(MachineReadablePrefix, String),
}

impl Verdict {
    fn blocked(message: impl Into<String>) -> Self {
        Self::Reject(MachineReadablePrefix::Blocked, message.into())
    }

    fn invalid(message: impl std::fmt::Display) -> Self {
        Self::Reject(MachineReadablePrefix::Invalid, message.to_string())
    }

    fn into_result(self) -> WritePolicyResult {
        match self {
            Self::Accept => WritePolicyResult::Accept,
            Self::Purgatory => WritePolicyResult::ok_msg(purgatory_prefix(), PURGATORY_MESSAGE),
            Self::Ok(prefix, message) => WritePolicyResult::ok_msg(prefix, message),
            Self::Reject(prefix, message) => WritePolicyResult::reject(prefix, Cow::Owned(message)),
        }
    }
}

/// Internal failures; the client sees `error: ...` and nothing changes.
#[derive(Debug, thiserror::Error)]
enum PolicyError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Process(#[from] ProcessError),
    #[error(transparent)]
    Git(#[from] crate::git::GitError),
}

/// The GRASP-01 policy. Holds the shared [`App`] handle.
#[derive(Debug, Clone)]
pub struct GraspPolicy {
    app: App,
}

impl GraspPolicy {
    pub fn new(app: App) -> Self {
        Self { app }
    }

    async fn decide(&self, event: &Event) -> Result<Verdict, PolicyError> {
        if self.app.store().is_deleted(event).await? {
            return Ok(Verdict::blocked("this event was deleted by its author"));
        }
        if self.app.purgatory().contains(&event.id) {
            return Ok(Verdict::Ok(
                MachineReadablePrefix::Duplicate,
                format!("already have this event; it is in purgatory and {PURGATORY_MESSAGE}"),
            ));
        }
        if let Some(verdict) = self.refuse_if_superseded(event).await? {
            return Ok(verdict);
        }
        match Nip34Kind::of(event.kind) {
            Some(Nip34Kind::Announcement) => self.admit_announcement(event).await,
            Some(Nip34Kind::State) => self.admit_state(event).await,
            Some(Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate) => {
                self.admit_pull_request(event).await
            }
            None => self.admit_related(event).await,
        }
    }

    /// An older replaceable/addressable event arriving after a newer one is never served.
    async fn refuse_if_superseded(&self, event: &Event) -> Result<Option<Verdict>, PolicyError> {
        let Some(d_tag) = address_d_tag(event) else {
            return Ok(None);
        };
        if let Some(stored) = self
            .app
            .store()
            .at_address(event.kind, &event.pubkey, &d_tag)
            .await?
            && crate::purgatory::is_newer(&stored, event)
        {
            return Ok(Some(Verdict::blocked(format!(
                "a newer event for this address is already stored ({})",
                stored.id
            ))));
        }
        Ok(None)
    }

    // ---- 30617 -------------------------------------------------------------------------------

    async fn admit_announcement(&self, event: &Event) -> Result<Verdict, PolicyError> {
        let announcement = match Announcement::parse(event) {
            Ok(a) => a,
            Err(e) => return Ok(Verdict::invalid(format!("repository announcement: {e}"))),
        };
        let repo = announcement.repo.clone();
        if let Err(missing) = self.lists_this_server(&announcement) {
            // GRASP-01 [9]: announcements by a recursive maintainer of an accepted repository are
            // accepted too, so maintainer chains resolve; we serve them but host no repository.
            let group = self.app.repo_group(&repo.identifier).await?;
            let is_maintainer = group
                .by_owner
                .keys()
                .any(|owner| *owner != event.pubkey && group.maintainers(owner).contains(&event.pubkey));
            return Ok(if is_maintainer {
                Verdict::Accept
            } else {
                Verdict::blocked(missing)
            });
        }

        let stored = self
            .app
            .store()
            .at_address(event.kind, &event.pubkey, repo.identifier.as_str())
            .await?
            .is_some();
        self.app.git().provision(&repo).await?;
        if stored || self.app.git().has_refs(&repo).await? {
            // A replacement for a repository that is already served: serve it at once. An older
            // pending announcement it replaces is dropped.
            if let Some(pending) = self.app.purgatory().announcement(&repo) {
                self.app.purgatory().remove(&pending.event.id).await?;
            }
            return Ok(Verdict::Accept);
        }
        let inserted = self
            .app
            .purgatory()
            .insert(
                event.clone(),
                Nip34Kind::Announcement,
                repo.identifier.clone(),
                Source::User,
            )
            .await?;
        Ok(self.purgatory_verdict(inserted, &repo))
    }

    /// `Ok` when both `clone` and `relays` name this server, else what is missing.
    fn lists_this_server(&self, announcement: &Announcement) -> Result<(), String> {
        let domain = &self.app.config().domain;
        let repo = &announcement.repo;
        let clone_ok = announcement.clone.iter().any(|raw| {
            url::Url::parse(raw).is_ok_and(|url| {
                matches!(url.scheme(), "http" | "https")
                    && domain.matches(&url)
                    && clone_path_matches(&url, repo)
            })
        });
        let relay_ok = announcement.relays.iter().any(|raw| {
            url::Url::parse(raw).is_ok_and(|url| {
                matches!(url.scheme(), "ws" | "wss") && domain.matches(&url) && matches!(url.path(), "" | "/")
            })
        });
        let clone_url = format!("http(s)://{domain}/{}/{}.git", repo.npub(), repo.identifier);
        match (clone_ok, relay_ok) {
            (true, true) => Ok(()),
            (false, true) => Err(format!(
                "announcement must list this server in 'clone' ({clone_url})"
            )),
            (true, false) => Err(format!(
                "announcement must list this server in 'relays' (ws(s)://{domain})"
            )),
            (false, false) => Err(format!(
                "announcement must list this server in both 'clone' ({clone_url}) and 'relays' (ws(s)://{domain})"
            )),
        }
    }

    // ---- 30618 -------------------------------------------------------------------------------

    async fn admit_state(&self, event: &Event) -> Result<Verdict, PolicyError> {
        let state = match RepoState::parse(event) {
            Ok(s) => s,
            Err(e) => return Ok(Verdict::invalid(format!("repository state: {e}"))),
        };
        let group = self.app.repo_group(&state.identifier).await?;
        let owners = self.hosted_owners(&group, &state).await?;
        if owners.is_empty() {
            return Ok(Verdict::blocked(format!(
                "no repository '{}' on this server lists you as a maintainer",
                state.identifier
            )));
        }
        if let Some(pending) =
            self.app
                .purgatory()
                .at_address(Nip34Kind::State, &event.pubkey, &state.identifier)
            && crate::purgatory::is_newer(&pending.event, event)
        {
            return Ok(Verdict::blocked(format!(
                "a newer state from you is already waiting for its git data ({})",
                pending.event.id
            )));
        }
        let repos = process::authoritative_repos(&self.app, &group, &state).await?;
        if !repos.is_empty()
            && process::apply_state_now(&self.app, &repos, &state)
                .await?
                .is_some()
        {
            // Applied: an older state of ours that waited is now moot.
            if let Some(pending) =
                self.app
                    .purgatory()
                    .at_address(Nip34Kind::State, &event.pubkey, &state.identifier)
            {
                self.app.purgatory().remove(&pending.event.id).await?;
            }
            return Ok(Verdict::Accept);
        }
        let inserted = self
            .app
            .purgatory()
            .insert(
                event.clone(),
                Nip34Kind::State,
                state.identifier.clone(),
                Source::User,
            )
            .await?;
        self.queue_sync(&inserted, &state.identifier);
        let repo = RepoId::new(event.pubkey, state.identifier.clone());
        Ok(self.purgatory_verdict(inserted, &repo))
    }

    /// Owners hosted here whose maintainer set includes the state's author.
    async fn hosted_owners(&self, group: &RepoGroup, state: &RepoState) -> Result<Vec<RepoId>, PolicyError> {
        let mut hosted = Vec::new();
        for owner in group.owners_authorizing(&state.author) {
            let repo = RepoId::new(owner, state.identifier.clone());
            if self.app.git().exists(&repo) {
                hosted.push(repo);
            }
        }
        Ok(hosted)
    }

    // ---- 1618 / 1619 -------------------------------------------------------------------------

    async fn admit_pull_request(&self, event: &Event) -> Result<Verdict, PolicyError> {
        let pr = match PullRequest::parse(event) {
            Ok(pr) => pr,
            Err(e) => return Ok(Verdict::invalid(format!("pull request: {e}"))),
        };
        let hosted = process::pull_request_targets(&self.app, &pr).await?;
        let Some(first) = hosted.first().cloned() else {
            return Ok(Verdict::blocked(
                "pull request names no repository hosted on this server",
            ));
        };
        // Git first with another tip (GRASP-01 [45]): that ref goes, the event waits for its commit.
        if let Some(name) = process::pull_request_ref(&pr.id) {
            for repo in &hosted {
                if let Some(current) = self.app.git().ref_target(repo, name.clone()).await?
                    && current != pr.tip
                {
                    self.app
                        .git()
                        .delete_ref_if(repo, name.clone(), current.clone())
                        .await?;
                    self.app.purgatory().remove_placeholder(&pr.id, repo).await?;
                    tracing::info!(repo = %repo, event_id = %pr.id, pushed = %current, wanted = %pr.tip,
                        "pull request ref pushed at another tip removed");
                }
            }
        }
        if process::apply_pull_request_now(&self.app, &hosted, &pr).await? {
            return Ok(Verdict::Accept);
        }
        let kind = Nip34Kind::of(event.kind).unwrap_or(Nip34Kind::PullRequest);
        let inserted = self
            .app
            .purgatory()
            .insert(event.clone(), kind, first.identifier.clone(), Source::User)
            .await?;
        self.queue_sync(&inserted, &first.identifier);
        Ok(self.purgatory_verdict(inserted, &first))
    }

    /// A state or PR now waits for git data: queue its identifier for the sync loop, after the
    /// delay for user-submitted events (a push usually follows).
    fn queue_sync(&self, inserted: &Inserted, identifier: &Identifier) {
        if matches!(inserted, Inserted::Added | Inserted::Replaced(_)) {
            let delay = crate::sync::delay_for(&self.app.config().sync, Source::User);
            self.app.sync_queue().enqueue(identifier.clone(), delay);
        }
    }

    fn purgatory_verdict(&self, inserted: Inserted, repo: &RepoId) -> Verdict {
        match inserted {
            Inserted::Added | Inserted::Replaced(_) => {
                tracing::debug!(repo = %repo, "event held in purgatory");
                Verdict::Purgatory
            }
            Inserted::Duplicate => Verdict::Ok(
                MachineReadablePrefix::Duplicate,
                format!("already have this event; it is in purgatory and {PURGATORY_MESSAGE}"),
            ),
            Inserted::Superseded(newer) => Verdict::blocked(format!(
                "a newer event for this address is already waiting ({newer})"
            )),
        }
    }

    // ---- everything else ---------------------------------------------------------------------

    /// GRASP-01 [13]: accept events that tag, or are tagged by, accepted repositories or events.
    async fn admit_related(&self, event: &Event) -> Result<Verdict, PolicyError> {
        let mut foreign = None;
        for repo in repo_coordinates(event) {
            if self.app.is_hosted(&repo).await? {
                return self.accept_related(event).await;
            }
            foreign.get_or_insert(repo);
        }
        for tag in event.tags.iter() {
            let values = tag.as_slice();
            let (Some(name), Some(value)) = (values.first(), values.get(1)) else {
                continue;
            };
            match name.as_str() {
                "e" | "E" | "q" => {
                    if let Ok(id) = EventId::from_hex(value)
                        && (self.app.purgatory().contains(&id) || self.app.store().contains(&id).await?)
                    {
                        return self.accept_related(event).await;
                    }
                    if name == "q"
                        && let Some(repo) = parse_repo_coordinate(value)
                    {
                        if self.app.is_hosted(&repo).await? {
                            return self.accept_related(event).await;
                        }
                        foreign.get_or_insert(repo);
                    }
                }
                // An address of another accepted addressable event (not a repository).
                "a" | "A" if self.known_address(value).await? => {
                    return self.accept_related(event).await;
                }
                _ => {}
            }
        }
        if self.app.store().is_referenced(&event.id).await? {
            return self.accept_related(event).await;
        }
        Ok(Verdict::blocked(match foreign {
            Some(repo) => format!("repository {repo} is not hosted on this server"),
            None => "event does not reference a repository or event on this server".to_owned(),
        }))
    }

    async fn known_address(&self, value: &str) -> Result<bool, PolicyError> {
        let Some(crate::nip01::Address { kind, author, d }) = crate::nip01::Address::parse(value) else {
            return Ok(false);
        };
        // An announcement or state waiting in purgatory is accepted too.
        if let (Some(nip34), Ok(identifier)) = (Nip34Kind::of(kind), Identifier::parse(d))
            && self
                .app
                .purgatory()
                .at_address(nip34, &author, &identifier)
                .is_some()
        {
            return Ok(true);
        }
        Ok(self.app.store().at_address(kind, &author, d).await?.is_some())
    }

    /// Accepts a related event; a NIP-09 deletion also removes the author's entries from
    /// purgatory (and a repository whose only announcement it was, if it has no data).
    async fn accept_related(&self, event: &Event) -> Result<Verdict, PolicyError> {
        if event.kind == Kind::EventDeletion {
            for removed in self.app.purgatory().apply_deletion(event).await? {
                tracing::info!(event_id = %removed.event.id, "deleted from purgatory by its author");
                if removed.kind == Nip34Kind::Announcement {
                    let repo = RepoId::new(removed.event.pubkey, removed.identifier.clone());
                    process::expiry::discard_unserved_repo(&self.app, &repo).await;
                }
            }
        }
        Ok(Verdict::Accept)
    }
}

/// The clone URL's path must be `/<npub>/<identifier>.git` (percent-encoding allowed; a trailing
/// slash tolerated).
fn clone_path_matches(url: &url::Url, repo: &RepoId) -> bool {
    let path = url.path().trim_end_matches('/');
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded == format!("/{}/{}.git", repo.npub(), repo.identifier)
}

impl WritePolicy for GraspPolicy {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        _addr: &'a SocketAddr,
    ) -> BoxedFuture<'a, WritePolicyResult> {
        Box::pin(async move {
            match self.decide(event).await {
                Ok(verdict) => {
                    let metrics = self.app.metrics();
                    match &verdict {
                        Verdict::Accept => crate::metrics::inc(&metrics.events_accepted),
                        Verdict::Purgatory => crate::metrics::inc(&metrics.events_to_purgatory),
                        Verdict::Reject(..) => crate::metrics::inc(&metrics.events_refused),
                        Verdict::Ok(..) => {}
                    }
                    verdict.into_result()
                }
                Err(error) => {
                    tracing::error!(event_id = %event.id, %error, "cannot decide on event");
                    WritePolicyResult::reject(MachineReadablePrefix::Error, "internal error; try again later")
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purgatory_prefix_reads_as_grasp_prescribes() {
        assert_eq!(
            format!("{}: {PURGATORY_MESSAGE}", purgatory_prefix()),
            "purgatory: won't be served until git data arrives"
        );
    }
}
