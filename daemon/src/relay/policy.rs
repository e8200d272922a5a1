//! The relay's entry point for GRASP-01's write policy: for each event it gathers the facts the
//! decision needs (store, purgatory, what is on disk), lets `crate::admission` decide, and has
//! `process::effects` carry the decision out, under the lock of the identifier the event
//! concerns so that the facts still hold when the effects happen.
//!
//! `relay::intake` (or, for protected and ephemeral events, the relay builder) has already checked
//! the id, signature and rate limit when `admit_event` runs. Returning `Accept` lets the caller
//! store and broadcast the event; everything else answers the client without storing
//! (`purgatory: ...` is `OK true`, not stored, not served).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use nostr::message::{MachineReadablePrefix, relay::SingleWord};
use nostr::util::BoxedFuture;
use nostr::{Event, EventId, Kind};
use nostr_relay_builder::builder::{WritePolicy, WritePolicyResult};

use crate::admission::{
    self, AnnouncementFacts, Answer, CommonFacts, PullRequestFacts, RelatedFacts, StateFacts,
};
use crate::app::App;
use crate::nip34::{
    Announcement, Identifier, Nip34Kind, PullRequest, RepoId, RepoState, parse_repo_coordinate,
    repo_coordinates,
};
use crate::process::{self, ProcessError};
use crate::purgatory::Source;
use crate::queue::Over;
use crate::store::{StoreError, address_d_tag};

pub use crate::admission::PURGATORY_MESSAGE;

/// The `purgatory:` prefix ("purgatory" is one word, so the fallback never happens).
fn purgatory_prefix() -> MachineReadablePrefix {
    SingleWord::from_static("purgatory").map_or(MachineReadablePrefix::Error, MachineReadablePrefix::Custom)
}

fn into_result(answer: Answer) -> WritePolicyResult {
    match answer {
        Answer::Accept => WritePolicyResult::Accept,
        Answer::Purgatory => WritePolicyResult::ok_msg(purgatory_prefix(), PURGATORY_MESSAGE),
        Answer::Duplicate(message) => WritePolicyResult::ok_msg(MachineReadablePrefix::Duplicate, message),
        Answer::Blocked(message) => {
            WritePolicyResult::reject(MachineReadablePrefix::Blocked, Cow::Owned(message))
        }
        Answer::Invalid(message) => {
            WritePolicyResult::reject(MachineReadablePrefix::Invalid, Cow::Owned(message))
        }
        Answer::RateLimited(message) => {
            WritePolicyResult::reject(MachineReadablePrefix::RateLimited, Cow::Owned(message))
        }
    }
}

/// Whether the caller checked the event's signature before asking the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Checked,
    /// Checked by the policy, only if the event would change anything.
    Unchecked,
}

/// Whether `decision` needs a signature check that `event` fails: only a decision that changes
/// something is worth one, and only when the caller did not check already.
fn forged(event: &Event, signature: Signature, decision: &admission::Decision) -> bool {
    signature == Signature::Unchecked && decision.changes_anything() && !crate::nip01::signature_holds(event)
}

/// The answer to an event whose signature does not verify (the relay builder's wording).
fn bad_signature() -> Answer {
    Answer::Invalid("invalid event signature".to_owned())
}

/// Internal failures; the client sees `error: ...` and nothing changes.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
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

    /// Decides on `event` and carries the decision out; `origin` is who brought it, `client` the
    /// address of the client that sent it (none for the sync). Unless `signature` says the
    /// caller checked it, the event's signature is checked here once the decision is known, and
    /// only when the decision changes something: a refused event costs no signature check.
    async fn decide_and_apply(
        &self,
        event: &Event,
        origin: Source,
        client: Option<IpAddr>,
        signature: Signature,
    ) -> Result<Answer, PolicyError> {
        let forged = |decision: &admission::Decision| forged(event, signature, decision);
        let common = self.common_facts(event).await?;
        if let Some(decision) = admission::decide_common(&common) {
            if forged(&decision) {
                return Ok(bad_signature());
            }
            return Ok(decision.answer);
        }
        let Some(kind) = Nip34Kind::of(event.kind) else {
            let decision = admission::decide_related(&self.related_facts(event).await?);
            if forged(&decision) {
                return Ok(bad_signature());
            }
            if decision.effects.is_empty() {
                // Most events: nothing to carry out.
                return Ok(decision.answer);
            }
            // Boxed, as below: carrying out effects is a large future (~11 KiB), and inline it
            // would make every event's future that large, allocated and copied for each event.
            return Ok(Box::pin(process::effects::apply(&self.app, event, origin, decision)).await?);
        };
        Box::pin(self.decide_and_apply_nip34(event, kind, origin, client, signature)).await
    }

    /// [`Self::decide_and_apply`] for announcements, states and pull requests, once the common
    /// facts have not decided: under the lock of the identifier they concern.
    async fn decide_and_apply_nip34(
        &self,
        event: &Event,
        kind: Nip34Kind,
        origin: Source,
        client: Option<IpAddr>,
        signature: Signature,
    ) -> Result<Answer, PolicyError> {
        let forged = |decision: &admission::Decision| forged(event, signature, decision);
        let parsed = match Parsed::read(event, kind) {
            Ok(parsed) => parsed,
            Err(why) => return Ok(Answer::Invalid(why)),
        };
        // A pull request goes to the hosted repositories it names or that are maintained by them;
        // it is held (and its lock taken) under the first of those.
        let (targets, contribution) = match &parsed {
            Parsed::PullRequest(pr) => (
                process::pull_request_targets(&self.app, pr).await?,
                self.contribution(pr),
            ),
            _ => (Vec::new(), None),
        };
        let _serial = self
            .app
            .lock_identifier(&parsed.identifier(contribution.as_ref(), &targets))
            .await;
        let mut creates = None;
        let decision = match parsed {
            Parsed::Announcement(announcement) => {
                let repo = announcement.repo.clone();
                let facts = self.announcement_facts(event, announcement, client).await?;
                let decision = admission::decide_announcement(&facts);
                let provisions = decision
                    .effects
                    .iter()
                    .any(|effect| matches!(effect, admission::Effect::Provision(_)));
                if provisions && !self.app.git().exists(&repo) {
                    creates = Some(repo);
                }
                decision
            }
            Parsed::State(state) => admission::decide_state(&self.state_facts(state).await?),
            Parsed::PullRequest(pr) => admission::decide_pull_request(
                &self.pull_request_facts(pr, kind, targets, contribution).await?,
            ),
        };
        if forged(&decision) {
            return Ok(bad_signature());
        }
        // Counted only for a genuine announcement: a forged one must not use up its owner's
        // allowance of new repositories.
        if let Some(repo) = creates {
            self.app
                .creations()
                .record(&repo.owner, client, std::time::Instant::now());
        }
        Ok(process::effects::apply(&self.app, event, origin, decision).await?)
    }

    async fn common_facts(&self, event: &Event) -> Result<CommonFacts, PolicyError> {
        let mut stored_newer = None;
        if let Some(d_tag) = address_d_tag(event)
            && let Some(stored) = self
                .app
                .store()
                .at_address(event.kind, &event.pubkey, &d_tag)
                .await?
            && crate::nip01::is_newer(&stored, event)
        {
            stored_newer = Some(stored.id);
        }
        Ok(CommonFacts {
            deleted: self.app.store().is_deleted(event).await?,
            in_purgatory: self.app.purgatory().contains(&event.id),
            stored_newer,
        })
    }

    // ---- 30617 -------------------------------------------------------------------------------

    async fn announcement_facts(
        &self,
        event: &Event,
        announcement: Announcement,
        client: Option<IpAddr>,
    ) -> Result<AnnouncementFacts, PolicyError> {
        let repo = announcement.repo.clone();
        let lists_us = self.lists_this_server(&announcement);
        let archive = &self.app.config().archive;
        let mut facts = AnnouncementFacts {
            announcement,
            lists_us,
            maintains_another: false,
            stored_at_address: false,
            has_refs: false,
            pending: None,
            archive: archive.verdict(&repo.owner, repo.identifier.as_str()),
            archive_only: archive.only,
            owner_allowed: self.app.config().abuse.owner_allowed(&repo.owner),
            creation_refused: None,
            server_full: None,
        };
        if !facts.hosted_here() && !facts.archived() {
            let group = self.app.repo_group(&repo.identifier).await?;
            facts.maintains_another = group
                .by_owner
                .keys()
                .any(|owner| *owner != event.pubkey && group.maintainers(owner).contains(&event.pubkey));
            return Ok(facts);
        }
        facts.stored_at_address = self
            .app
            .store()
            .at_address(event.kind, &event.pubkey, repo.identifier.as_str())
            .await?
            .is_some();
        facts.has_refs = self.app.git().has_refs(&repo).await?;
        let max_repositories = self.app.config().abuse.max_repositories;
        if max_repositories > 0
            && !self.app.git().exists(&repo)
            && self.app.git().count().await >= max_repositories
        {
            facts.server_full = Some(max_repositories);
        }
        // Limits on what clients send; the event sync's announcements come from the relays
        // hosted repositories list (and an archive may mirror many repositories of one owner).
        if client.is_some() && !self.app.git().exists(&repo) {
            let limits = &self.app.config().abuse;
            let per_hour = (
                limits.new_repos_per_hour_per_owner,
                limits.new_repos_per_hour_per_address,
            );
            facts.creation_refused = self
                .app
                .creations()
                .check(&repo.owner, client, per_hour, std::time::Instant::now())
                .err()
                .map(|over| match over {
                    Over::Owner(n) => format!(
                        "this owner created {n} repositories here within the hour, the limit; try again later"
                    ),
                    Over::Address(n) => format!(
                        "{n} repositories were created from your address within the hour, the limit; try again later"
                    ),
                });
        }
        facts.pending = self
            .app
            .purgatory()
            .announcement(&repo)
            .map(|entry| entry.event.id);
        Ok(facts)
    }

    /// `Ok` when both `clone` and `relays` name this server, else what is missing.
    fn lists_this_server(&self, announcement: &Announcement) -> Result<(), String> {
        crate::nip34::lists_server(announcement, &self.app.config().domain)
    }

    // ---- 30618 -------------------------------------------------------------------------------

    async fn state_facts(&self, state: RepoState) -> Result<StateFacts, PolicyError> {
        let group = self.app.repo_group(&state.identifier).await?;
        let hosted_owners: Vec<RepoId> = group
            .owners_authorizing(&state.author)
            .into_iter()
            .map(|owner| RepoId::new(owner, state.identifier.clone()))
            .filter(|repo| self.app.git().exists(repo))
            .collect();
        let pending = self
            .app
            .purgatory()
            .at_address(Nip34Kind::State, &state.author, &state.identifier)
            .map(|entry| {
                let newer = entry.event.id != state.id
                    && crate::nip01::newer(
                        (entry.event.created_at, entry.event.id),
                        (state.created_at, state.id),
                    );
                (entry.event.id, newer)
            });
        let mut facts = StateFacts {
            state,
            hosted_owners,
            pending,
            authoritative: Vec::new(),
            source: None,
        };
        if facts.hosted_owners.is_empty() || matches!(facts.pending, Some((_, true))) {
            return Ok(facts);
        }
        facts.authoritative = process::authoritative_repos(&self.app, &group, &facts.state).await?;
        let wanted = facts.state.wanted_oids();
        for repo in &facts.authoritative {
            if self.app.git().has_objects(repo, wanted.clone()).await? {
                facts.source = Some(repo.clone());
                break;
            }
        }
        Ok(facts)
    }

    // ---- 1618 / 1619 -------------------------------------------------------------------------

    /// GRASP-06 (when on): the `/prs/` repository on this server the pull request names.
    fn contribution(&self, pr: &PullRequest) -> Option<RepoId> {
        let config = self.app.config();
        config
            .grasp06
            .enabled
            .then(|| crate::nip34::pull_request_repository(pr, &config.domain))
            .flatten()
    }

    async fn pull_request_facts(
        &self,
        pr: PullRequest,
        kind: Nip34Kind,
        targets: Vec<RepoId>,
        contribution: Option<RepoId>,
    ) -> Result<PullRequestFacts, PolicyError> {
        let mut pushed_elsewhere = Vec::new();
        let mut source = None;
        let mut contribution_has_tip = false;
        if let Some(name) = process::pull_request_ref(&pr.id) {
            for repo in &targets {
                if let Some(current) = self.app.git().ref_target(repo, name.clone()).await?
                    && current != pr.tip
                {
                    pushed_elsewhere.push((repo.clone(), current));
                }
            }
            if let Some(repo) = contribution.as_ref().filter(|repo| self.app.git().exists(repo)) {
                match self.app.git().ref_target(repo, name).await? {
                    Some(current) if current == pr.tip => contribution_has_tip = true,
                    Some(current) => pushed_elsewhere.push((repo.clone(), current)),
                    None => {}
                }
            }
        }
        for repo in &targets {
            if self.app.git().has_objects(repo, vec![pr.tip]).await? {
                source = Some(repo.clone());
                break;
            }
        }
        Ok(PullRequestFacts {
            pull_request: pr,
            kind,
            targets,
            contribution,
            contribution_has_tip,
            pushed_elsewhere,
            source,
        })
    }

    // ---- everything else ---------------------------------------------------------------------

    /// GRASP-01 [13]: what the event references, up to the first reference to something here
    /// (one is enough).
    async fn related_facts(&self, event: &Event) -> Result<RelatedFacts, PolicyError> {
        let mut facts = RelatedFacts {
            references_here: true,
            foreign: None,
            is_deletion: event.kind == Kind::EventDeletion,
        };
        for repo in repo_coordinates(event) {
            if self.app.is_hosted(&repo).await? {
                return Ok(facts);
            }
            facts.foreign.get_or_insert(repo);
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
                        return Ok(facts);
                    }
                    if name == "q"
                        && let Some(repo) = parse_repo_coordinate(value)
                    {
                        if self.app.is_hosted(&repo).await? {
                            return Ok(facts);
                        }
                        facts.foreign.get_or_insert(repo);
                    }
                }
                // An address of another accepted addressable event (not a repository).
                "a" | "A" if self.known_address(value).await? => return Ok(facts),
                _ => {}
            }
        }
        facts.references_here = self.app.store().is_referenced(&event.id).await?;
        Ok(facts)
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
}

/// A NIP-34 event read as the kind it claims to be, once.
enum Parsed {
    Announcement(Announcement),
    State(RepoState),
    PullRequest(PullRequest),
}

impl Parsed {
    /// The event as its kind, or what `invalid:` says about it.
    fn read(event: &Event, kind: Nip34Kind) -> Result<Self, String> {
        match kind {
            Nip34Kind::Announcement => Announcement::parse(event)
                .map(Self::Announcement)
                .map_err(|e| format!("repository announcement: {e}")),
            Nip34Kind::State => RepoState::parse(event)
                .map(Self::State)
                .map_err(|e| format!("repository state: {e}")),
            Nip34Kind::PullRequest | Nip34Kind::PullRequestUpdate => PullRequest::parse(event)
                .map(Self::PullRequest)
                .map_err(|e| format!("pull request: {e}")),
        }
    }

    /// The identifier whose lock covers deciding on the event: its own, or for a pull request
    /// that of the `/prs/` repository it names (GRASP-06: its push takes the same lock), else of
    /// the first of its `targets` (of the first repository it names when none is hosted).
    fn identifier(&self, contribution: Option<&RepoId>, targets: &[RepoId]) -> Identifier {
        match self {
            Self::Announcement(announcement) => announcement.repo.identifier.clone(),
            Self::State(state) => state.identifier.clone(),
            Self::PullRequest(pr) => contribution
                .or(targets.first())
                .or(pr.repos.first())
                .map(|repo| repo.identifier.clone())
                // Parsing guarantees a named repository; this only keeps the lock well defined.
                .unwrap_or_else(|| Identifier::parse("_").expect("a valid identifier")),
        }
    }
}

impl GraspPolicy {
    /// The policy's answer to `event`, brought by `origin`, with its effects carried out and
    /// counted in the metrics.
    /// The event's signature has been checked by the caller.
    pub async fn admit(&self, event: &Event, origin: Source) -> Result<Answer, PolicyError> {
        self.admit_from(event, origin, None, Signature::Checked).await
    }

    /// [`Self::admit`] for an event a client at `client` sent, its signature checked by the
    /// caller or (`Signature::Unchecked`) here, when the decision would change anything.
    pub async fn admit_from(
        &self,
        event: &Event,
        origin: Source,
        client: Option<IpAddr>,
        signature: Signature,
    ) -> Result<Answer, PolicyError> {
        let answer = self.decide_and_apply(event, origin, client, signature).await?;
        let metrics = self.app.metrics();
        match &answer {
            Answer::Accept => crate::metrics::inc(&metrics.events_accepted),
            Answer::Purgatory => crate::metrics::inc(&metrics.events_to_purgatory),
            Answer::Blocked(_) | Answer::Invalid(_) | Answer::RateLimited(_) => {
                crate::metrics::inc(&metrics.events_refused)
            }
            Answer::Duplicate(_) => {}
        }
        Ok(answer)
    }
}

impl GraspPolicy {
    /// The answer to a client's event, worded for the client; effects are carried out.
    pub async fn admit_client_event(
        &self,
        event: &Event,
        addr: &SocketAddr,
        signature: Signature,
    ) -> WritePolicyResult {
        match self
            .admit_from(event, Source::User, Some(addr.ip()), signature)
            .await
        {
            Ok(answer) => into_result(answer),
            Err(error) => {
                tracing::error!(event_id = %event.id, %error, "cannot decide on event");
                let reason = crate::types::client_reason(&error).unwrap_or("internal error; try again later");
                WritePolicyResult::reject(MachineReadablePrefix::Error, reason)
            }
        }
    }
}

impl WritePolicy for GraspPolicy {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        addr: &'a SocketAddr,
    ) -> BoxedFuture<'a, WritePolicyResult> {
        Box::pin(self.admit_client_event(event, addr, Signature::Checked))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Randomized: events of every NIP-34 kind and others, with random tags and authors, against
    /// a server hosting one repository. The policy never fails or panics, refuses what references
    /// nothing here, takes what tags the hosted repository, and creates no directory outside the
    /// repository tree.
    #[tokio::test]
    async fn random_signed_events_get_the_decision_tables_verdicts() {
        use nostr::event::FinalizeEvent;
        use nostr::{EventBuilder, Keys, Tag};

        let (mut rng, cases, seed) = crate::testing::Rng::plan("policy");
        let cases = cases / 20; // each case is a store and disk round trip
        let dir = tempfile::tempdir().expect("tempdir");
        let app = App::open(crate::testing::config(dir.path())).await.expect("app");
        let policy = GraspPolicy::new(app.clone());
        let owner = Keys::generate();
        let hosted = RepoId::new(owner.public_key(), Identifier::parse("web").expect("id"));
        let clone = format!("https://ours.example/{}/web.git", hosted.npub());
        let announce = EventBuilder::new(Kind::from(30617), "")
            .tags([
                Tag::parse(["d", "web"]).expect("tag"),
                Tag::parse(["clone", clone.as_str()]).expect("tag"),
                Tag::parse(["relays", "wss://ours.example"]).expect("tag"),
            ])
            .finalize(&owner)
            .expect("sign");
        assert_eq!(
            policy.admit(&announce, Source::User).await.expect("admit"),
            Answer::Purgatory
        );

        let coordinate = hosted.coordinate();
        let kinds = [
            1u16, 5, 7, 1111, 1617, 1618, 1619, 1621, 1630, 30617, 30618, 10317,
        ];
        let signers = [owner.clone(), Keys::generate(), Keys::generate()];
        let mut taken = 0;
        for case in 0..cases {
            let kind = *rng.pick(&kinds);
            let tags_here = rng.below(3) == 0;
            let mut tags: Vec<Vec<String>> = Vec::new();
            for _ in 0..rng.below(5) {
                let random_hex = format!("{:016x}", rng.next()).repeat(4);
                let tag: Vec<String> = match rng.below(9) {
                    0 => vec![
                        "d".into(),
                        rng.pick(&["web", "other", "../x", ".h", "a/b", ""]).to_string(),
                    ],
                    1 => vec!["a".into(), format!("30617:{random_hex}:web")],
                    2 => vec!["e".into(), random_hex],
                    3 => vec![
                        "c".into(),
                        rng.pick(&["a".repeat(40), "zz".into(), "b".repeat(64)]).clone(),
                    ],
                    4 => vec![
                        "clone".into(),
                        rng.pick(&[clone.clone(), "https://elsewhere/x.git".into()])
                            .clone(),
                    ],
                    5 => vec![
                        "relays".into(),
                        rng.pick(&["wss://ours.example", "wss://elsewhere"]).to_string(),
                    ],
                    6 => vec!["refs/heads/main".into(), "a".repeat(40)],
                    7 => vec!["HEAD".into(), "ref: refs/heads/main".into()],
                    _ => vec![rng.pick(&["p", "t", "q", "E", "A"]).to_string(), random_hex],
                };
                tags.push(tag);
            }
            if tags_here {
                tags.push(vec!["a".into(), coordinate.clone()]);
            }
            let event = EventBuilder::new(nostr::Kind::from(kind), "x")
                .tags(tags.iter().filter_map(|t| Tag::parse(t.clone()).ok()))
                .finalize(rng.pick(&signers))
                .expect("sign");
            // The owner's own deletion (kind 5) may take the repository away.
            let hosted_now = app.is_hosted(&hosted).await.expect("hosted");
            let answer = policy
                .admit(&event, Source::User)
                .await
                .unwrap_or_else(|e| panic!("seed {seed} case {case}: {event:?}: {e}"));
            let nip34 = Nip34Kind::of(event.kind).is_some();
            if matches!(answer, Answer::Accept | Answer::Purgatory) {
                taken += 1;
                // Taken without a NIP-34 kind: it must tag the hosted repository.
                assert!(
                    nip34 || tags_here,
                    "seed {seed} case {case}: {event:?} taken ({answer:?}) referencing nothing here"
                );
            } else if !nip34 && tags_here && hosted_now {
                panic!("seed {seed} case {case}: {event:?} tags the hosted repository, got {answer:?}");
            }
        }
        assert!(taken > 0, "nothing taken in {cases} cases");
        // Every directory under the git root is a repository the paths name, nothing else.
        for owner_dir in std::fs::read_dir(app.git().root())
            .expect("root")
            .filter_map(Result::ok)
        {
            for repo in std::fs::read_dir(owner_dir.path())
                .expect("dir")
                .filter_map(Result::ok)
            {
                assert!(
                    app.git().repo_at(&repo.path()).is_some(),
                    "seed {seed}: stray {}",
                    repo.path().display()
                );
            }
        }
    }

    #[test]
    fn purgatory_prefix_reads_as_grasp_prescribes() {
        assert_eq!(
            format!("{}: {PURGATORY_MESSAGE}", purgatory_prefix()),
            "purgatory: won't be served until git data arrives"
        );
    }
}
