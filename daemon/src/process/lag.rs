//! Repositories whose refs lag the newest state they serve.
//!
//! A state is stored only once its repositories were aligned with it, so in normal operation a
//! repository never lags. It can after the fact: a repository restored from an older backup or
//! damaged by hand, an alignment interrupted by a crash, a state accepted while one of several
//! hosted repositories of the group could not be aligned. The git-data sync repairs these: at
//! least hourly it looks for lagging repositories, aligns those whose objects are here, and
//! fetches the missing objects from the other clone URLs for the rest (`sync::lag`).
//!
//! The same holds for pull requests: a stored pull request (or update) has its
//! `refs/nostr/<event-id>` at its `c` tip in every hosted repository it targets, and one missing
//! or moved is put back the same ways.

use std::collections::{BTreeSet, HashMap};

use nostr::{Filter, Kind};

use super::{ProcessError, pull_request_ref, pull_request_targets, sync_pull_request, sync_state};
use crate::app::App;
use crate::nip01::is_newer;
use crate::nip34::{Identifier, Nip34Kind, PullRequest, RepoId, RepoState};
use crate::types::{
    KIND_ANNOUNCEMENT, KIND_PULL_REQUEST, KIND_PULL_REQUEST_UPDATE, KIND_STATE, Oid, ProcessResult,
};

/// Stored pull requests (and updates) of an identifier checked at most, newest first.
const MAX_PULL_REQUESTS_CHECKED: usize = 5000;

/// A hosted repository whose `refs/nostr/<event-id>` is missing, or not at the tip, for a stored
/// pull request (or update) that targets it.
#[derive(Debug, Clone)]
pub struct PullRequestLag {
    pub repo: RepoId,
    pub pull_request: PullRequest,
}

/// The hosted repositories of `identifier` whose pull request refs lag the stored pull requests
/// (and updates) that target them (the newest [`MAX_PULL_REQUESTS_CHECKED`]).
pub async fn lagging_pull_requests(
    app: &App,
    identifier: &Identifier,
) -> Result<Vec<PullRequestLag>, ProcessError> {
    let group = app.repo_group(identifier).await?;
    let coordinates: BTreeSet<String> = group
        .by_owner
        .keys()
        .flat_map(|owner| group.maintainers(owner).into_iter().chain([*owner]))
        .map(|key| format!("{KIND_ANNOUNCEMENT}:{}:{identifier}", key.to_hex()))
        .collect();
    let mut lags = Vec::new();
    let mut refs_of: HashMap<RepoId, Vec<(String, Oid)>> = HashMap::new();
    for chunk in coordinates.into_iter().collect::<Vec<_>>().chunks(100) {
        let filter = Filter::new()
            .kinds([KIND_PULL_REQUEST, KIND_PULL_REQUEST_UPDATE].map(Kind::from))
            .custom_tags(
                nostr::SingleLetterTag::lowercase(nostr::Alphabet::A),
                chunk.to_vec(),
            )
            .limit(MAX_PULL_REQUESTS_CHECKED);
        for event in app.store().query(&filter).await? {
            let Ok(pull_request) = PullRequest::parse(&event) else {
                continue;
            };
            let Some(name) = pull_request_ref(&pull_request.id) else {
                continue;
            };
            for repo in pull_request_targets(app, &pull_request).await? {
                if repo.identifier != *identifier {
                    continue;
                }
                if !refs_of.contains_key(&repo) {
                    refs_of.insert(repo.clone(), app.git().refs(&repo).await?);
                }
                let at_tip = refs_of.get(&repo).is_some_and(|refs| {
                    refs.iter()
                        .any(|(n, oid)| n == name.as_str() && *oid == pull_request.tip)
                });
                if !at_tip
                    && !lags
                        .iter()
                        .any(|l: &PullRequestLag| l.repo == repo && l.pull_request.id == pull_request.id)
                {
                    lags.push(PullRequestLag {
                        repo,
                        pull_request: pull_request.clone(),
                    });
                }
            }
        }
    }
    Ok(lags)
}

/// A hosted repository and the stored state its refs should equal.
#[derive(Debug, Clone)]
pub struct Lag {
    pub repo: RepoId,
    pub state: RepoState,
}

/// The hosted repositories of `identifier` whose branches and tags differ from the newest stored
/// state by one of their maintainers. None while a newer state of the identifier waits in
/// purgatory: a push for it may have moved the refs already, and its release aligns them.
pub async fn lagging(app: &App, identifier: &Identifier) -> Result<Vec<Lag>, ProcessError> {
    let group = app.repo_group(identifier).await?;
    let stored = app
        .store()
        .by_identifier(Kind::from(KIND_STATE), identifier.as_str())
        .await?;
    let waiting: Vec<_> = app
        .purgatory()
        .for_identifier(identifier)
        .into_iter()
        .filter(|entry| entry.kind == Nip34Kind::State)
        .collect();
    let mut lags = Vec::new();
    for owner in group.by_owner.keys() {
        let repo = RepoId::new(*owner, identifier.clone());
        if !app.git().exists(&repo) {
            continue;
        }
        let maintainers = group.maintainers(owner);
        let Some(newest) = stored
            .iter()
            .filter(|event| maintainers.contains(&event.pubkey))
            .reduce(|a, b| if is_newer(a, b) { a } else { b })
        else {
            continue;
        };
        if waiting
            .iter()
            .any(|entry| maintainers.contains(&entry.event.pubkey) && is_newer(&entry.event, newest))
        {
            continue;
        }
        let Ok(state) = RepoState::parse(newest) else {
            continue;
        };
        if !state.is_satisfiable() {
            continue;
        }
        let on_disk = app.git().refs(&repo).await?;
        if !matches_state(&on_disk, &state) {
            lags.push(Lag { repo, state });
        }
    }
    Ok(lags)
}

/// Whether the refs on disk are the state's: every ref it names at its value, and no other
/// branch or tag (the namespaces aligning owns).
pub fn matches_state(on_disk: &[(String, Oid)], state: &RepoState) -> bool {
    let named = state
        .refs
        .iter()
        .all(|(name, oid)| on_disk.iter().any(|(n, o)| n == name.as_str() && o == oid));
    let extra = on_disk.iter().any(|(name, _)| {
        (name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
            && !state.refs.keys().any(|r| r.as_str() == name)
    });
    named && !extra
}

/// Aligns each lagging repository of `source`'s identifier whose state's objects are in
/// `source` (copying them over first), and puts back the pull request refs whose tips are. The
/// caller holds the identifier's lock.
pub async fn repair(app: &App, source: &RepoId, result: &mut ProcessResult) {
    repair_states(app, source, result).await;
    repair_pull_requests(app, source, result).await;
}

async fn repair_pull_requests(app: &App, source: &RepoId, result: &mut ProcessResult) {
    let lags = match lagging_pull_requests(app, &source.identifier).await {
        Ok(lags) => lags,
        Err(error) => {
            result
                .errors
                .push(format!("cannot check pull request refs: {error}"));
            return;
        }
    };
    for lag in lags {
        if !holds(app, source, vec![lag.pull_request.tip], &lag.repo, result).await {
            continue;
        }
        match sync_pull_request(app, source, std::slice::from_ref(&lag.repo), &lag.pull_request).await {
            Ok(()) => {
                tracing::info!(repo = %lag.repo, event_id = %lag.pull_request.id, "pull request ref put back at its tip");
                result.repos_synced += 1;
            }
            Err(error) => result.errors.push(format!("{}: {error}", lag.repo)),
        }
    }
}

/// Whether `source` holds every one of `oids`; a failure to tell is noted against `repo`.
async fn holds(
    app: &App,
    source: &RepoId,
    oids: Vec<Oid>,
    repo: &RepoId,
    result: &mut ProcessResult,
) -> bool {
    match app.git().has_objects(source, oids).await {
        Ok(held) => held,
        Err(error) => {
            result.errors.push(format!("{repo}: {error}"));
            false
        }
    }
}

async fn repair_states(app: &App, source: &RepoId, result: &mut ProcessResult) {
    let lags = match lagging(app, &source.identifier).await {
        Ok(lags) => lags,
        Err(error) => {
            result
                .errors
                .push(format!("cannot check refs against states: {error}"));
            return;
        }
    };
    for lag in lags {
        if !holds(app, source, lag.state.wanted_oids(), &lag.repo, result).await {
            continue;
        }
        match sync_state(app, source, std::slice::from_ref(&lag.repo), &lag.state).await {
            Ok(changes) => {
                tracing::info!(repo = %lag.repo, state = %lag.state.id, "lagging repository aligned with its state");
                result.repos_synced += 1;
                for change in &changes {
                    result.add(change);
                }
            }
            Err(error) => result.errors.push(format!("{}: {error}", lag.repo)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use nostr::{EventId, Keys, Timestamp};

    use super::*;
    use crate::types::RefName;

    fn oid(c: char) -> Oid {
        Oid::parse(&c.to_string().repeat(40)).expect("oid")
    }

    fn state(refs: &[(&str, Oid)]) -> RepoState {
        RepoState {
            id: EventId::all_zeros(),
            author: Keys::generate().public_key(),
            identifier: Identifier::parse("r").expect("identifier"),
            created_at: Timestamp::from_secs(1),
            refs: refs
                .iter()
                .map(|(n, o)| (RefName::parse(n).expect("ref"), *o))
                .collect(),
            unresolved: BTreeMap::new(),
            head: None,
        }
    }

    #[test]
    fn refs_match_a_state_exactly_in_branches_and_tags() {
        let wanted = state(&[("refs/heads/main", oid('a')), ("refs/tags/v1", oid('b'))]);
        let disk = |refs: &[(&str, Oid)]| -> Vec<(String, Oid)> {
            refs.iter().map(|(n, o)| ((*n).to_owned(), *o)).collect()
        };
        let same = disk(&[("refs/heads/main", oid('a')), ("refs/tags/v1", oid('b'))]);
        assert!(matches_state(&same, &wanted));
        let with_pr = disk(&[
            ("refs/heads/main", oid('a')),
            ("refs/nostr/x", oid('c')),
            ("refs/tags/v1", oid('b')),
        ]);
        assert!(
            matches_state(&with_pr, &wanted),
            "other namespaces are not the state's"
        );
        assert!(
            !matches_state(&disk(&[("refs/heads/main", oid('a'))]), &wanted),
            "a tag missing"
        );
        assert!(!matches_state(
            &disk(&[("refs/heads/main", oid('c')), ("refs/tags/v1", oid('b'))]),
            &wanted
        ));
        let extra = disk(&[
            ("refs/heads/main", oid('a')),
            ("refs/heads/old", oid('a')),
            ("refs/tags/v1", oid('b')),
        ]);
        assert!(
            !matches_state(&extra, &wanted),
            "a branch the state does not name"
        );
        assert!(!matches_state(&[], &wanted), "an emptied repository lags");
    }
}
