//! Purgatory against a real SQLite file: NIP-01 replacement at an address, NIP-09 deletions,
//! deadlines, and the write-through that lets a restart find every entry where it was.

use std::collections::BTreeSet;
use std::time::Duration;

use nostr::event::FinalizeEvent;
use nostr::{Event, EventBuilder, EventId, Keys, Kind, Tag, Timestamp};
use tempfile::TempDir;

use super::{Inserted, Purgatory, Source, now_ms};
use crate::nip34::{Identifier, KIND_ANNOUNCEMENT, KIND_PULL_REQUEST, KIND_STATE, Nip34Kind, RepoId};
use crate::store::{PurgatoryRow, Store};

const HOUR: Duration = Duration::from_secs(3600);

fn url(dir: &TempDir) -> String {
    format!("sqlite://{}", dir.path().join("graspd.db").display())
}

/// A purgatory on a fresh SQLite file; the directory lives as long as the returned guard.
async fn temp_purgatory(expiry: Duration) -> (TempDir, Store, Purgatory) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&url(&dir)).await.expect("open store");
    let purgatory = Purgatory::load(store.clone(), expiry)
        .await
        .expect("load purgatory");
    (dir, store, purgatory)
}

fn identifier(s: &str) -> Identifier {
    Identifier::parse(s).expect("identifier")
}

fn event(keys: &Keys, kind: u16, created_at: u64, content: &str, tags: &[&[&str]]) -> Event {
    let tags = tags.iter().map(|t| Tag::parse(t.iter().copied()).expect("tag"));
    EventBuilder::new(Kind::from(kind), content)
        .tags(tags)
        .custom_created_at(Timestamp::from(created_at))
        .finalize(keys)
        .expect("sign event")
}

fn announcement(keys: &Keys, d: &str, created_at: u64) -> Event {
    event(keys, KIND_ANNOUNCEMENT, created_at, "", &[&["d", d]])
}

fn state(keys: &Keys, d: &str, created_at: u64, content: &str) -> Event {
    event(keys, KIND_STATE, created_at, content, &[&["d", d]])
}

fn pull_request(keys: &Keys, owner: &Keys, d: &str, created_at: u64, content: &str) -> Event {
    let a = coordinate(KIND_ANNOUNCEMENT, owner, d);
    event(keys, KIND_PULL_REQUEST, created_at, content, &[&["a", &a]])
}

fn coordinate(kind: u16, keys: &Keys, d: &str) -> String {
    format!("{kind}:{}:{d}", keys.public_key().to_hex())
}

fn deletion(keys: &Keys, created_at: u64, tags: &[&[&str]]) -> Event {
    event(keys, 5, created_at, "", tags)
}

async fn insert(purgatory: &Purgatory, event: &Event, d: &str) -> Inserted {
    let kind = Nip34Kind::of(event.kind).expect("a NIP-34 kind");
    purgatory
        .insert(event.clone(), kind, identifier(d), Source::User)
        .await
        .expect("insert")
}

async fn stored_ids(store: &Store) -> BTreeSet<EventId> {
    store
        .purgatory_all()
        .await
        .expect("purgatory rows")
        .iter()
        .map(|row| row.event.id)
        .collect()
}

fn row(event: &Event, d: &str, expires_at_ms: i64) -> PurgatoryRow {
    PurgatoryRow {
        event: event.clone(),
        identifier: d.to_owned(),
        received_at_ms: 1_000,
        expires_at_ms,
        source: "user".to_owned(),
    }
}

/// Two distinct states at one address with the same `created_at`, lowest id first.
fn tied_states(keys: &Keys, d: &str, created_at: u64) -> (Event, Event) {
    let a = state(keys, d, created_at, "one");
    let b = state(keys, d, created_at, "two");
    assert_ne!(a.id, b.id, "distinct content gives distinct ids");
    if a.id < b.id { (a, b) } else { (b, a) }
}

// ---- insert -------------------------------------------------------------------------------

#[tokio::test]
async fn a_new_event_is_added_and_written_through() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let waiting = state(&keys, "repo", 100, "");
    let before = now_ms();
    assert_eq!(insert(&purgatory, &waiting, "repo").await, Inserted::Added);
    let after = now_ms();

    assert!(purgatory.contains(&waiting.id));
    assert_eq!(purgatory.len(), 1);
    let entry = purgatory.get(&waiting.id).expect("entry");
    assert_eq!(entry.kind, Nip34Kind::State);
    assert_eq!(entry.identifier.as_str(), "repo");
    assert!((before..=after).contains(&entry.received_at_ms));
    assert_eq!(entry.expires_at_ms, entry.received_at_ms + 3_600_000);

    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, waiting);
    assert_eq!(rows[0].identifier, "repo");
    assert_eq!(rows[0].received_at_ms, entry.received_at_ms);
    assert_eq!(rows[0].expires_at_ms, entry.expires_at_ms);
    assert_eq!(rows[0].source, "user");
}

#[tokio::test]
async fn the_same_event_again_is_a_duplicate_and_keeps_its_deadline() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let waiting = announcement(&keys, "repo", 100);
    insert(&purgatory, &waiting, "repo").await;
    let deadline = purgatory.get(&waiting.id).expect("entry").expires_at_ms;
    tokio::time::sleep(Duration::from_millis(5)).await;

    assert_eq!(insert(&purgatory, &waiting, "repo").await, Inserted::Duplicate);
    assert_eq!(purgatory.len(), 1);
    assert_eq!(purgatory.get(&waiting.id).expect("entry").expires_at_ms, deadline);
    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].expires_at_ms, deadline);
}

#[tokio::test]
async fn a_newer_state_replaces_the_waiting_older_state() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let old = state(&keys, "repo", 100, "old");
    let new = state(&keys, "repo", 200, "new");
    insert(&purgatory, &old, "repo").await;

    assert_eq!(insert(&purgatory, &new, "repo").await, Inserted::Replaced(old.id));
    assert!(!purgatory.contains(&old.id));
    assert!(purgatory.contains(&new.id));
    let at = purgatory.at_address(Nip34Kind::State, &keys.public_key(), &identifier("repo"));
    assert_eq!(at.map(|e| e.event.id), Some(new.id));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([new.id]));
    let waiting: Vec<EventId> = purgatory
        .for_identifier(&identifier("repo"))
        .iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(waiting, vec![new.id]);
}

#[tokio::test]
async fn an_older_state_arriving_later_is_superseded_and_changes_nothing() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let new = state(&keys, "repo", 200, "new");
    let old = state(&keys, "repo", 100, "old");
    insert(&purgatory, &new, "repo").await;

    assert_eq!(
        insert(&purgatory, &old, "repo").await,
        Inserted::Superseded(new.id)
    );
    assert!(!purgatory.contains(&old.id));
    assert_eq!(purgatory.len(), 1);
    assert_eq!(stored_ids(&store).await, BTreeSet::from([new.id]));
}

#[tokio::test]
async fn a_newer_announcement_replaces_the_waiting_older_one() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let old = announcement(&keys, "repo", 100);
    let new = announcement(&keys, "repo", 200);
    insert(&purgatory, &old, "repo").await;
    assert_eq!(insert(&purgatory, &new, "repo").await, Inserted::Replaced(old.id));
    let repo = RepoId::new(keys.public_key(), identifier("repo"));
    assert_eq!(purgatory.announcement(&repo).map(|e| e.event.id), Some(new.id));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([new.id]));
}

#[tokio::test]
async fn equal_created_at_keeps_the_lowest_id_whichever_arrives_first() {
    let keys = Keys::generate();
    let (low, high) = tied_states(&keys, "repo", 100);

    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    insert(&purgatory, &low, "repo").await;
    assert_eq!(
        insert(&purgatory, &high, "repo").await,
        Inserted::Superseded(low.id)
    );
    assert_eq!(stored_ids(&store).await, BTreeSet::from([low.id]));

    let (_dir2, store2, purgatory2) = temp_purgatory(HOUR).await;
    insert(&purgatory2, &high, "repo").await;
    assert_eq!(
        insert(&purgatory2, &low, "repo").await,
        Inserted::Replaced(high.id)
    );
    assert!(purgatory2.contains(&low.id));
    assert!(!purgatory2.contains(&high.id));
    assert_eq!(stored_ids(&store2).await, BTreeSet::from([low.id]));
}

#[tokio::test]
async fn states_of_different_authors_for_one_identifier_wait_side_by_side() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let alice = Keys::generate();
    let bob = Keys::generate();
    let by_alice = state(&alice, "repo", 100, "");
    let by_bob = state(&bob, "repo", 200, "");
    assert_eq!(insert(&purgatory, &by_alice, "repo").await, Inserted::Added);
    assert_eq!(insert(&purgatory, &by_bob, "repo").await, Inserted::Added);
    assert_eq!(purgatory.len(), 2);
    let at = purgatory.at_address(Nip34Kind::State, &alice.public_key(), &identifier("repo"));
    assert_eq!(at.map(|e| e.event.id), Some(by_alice.id));
}

#[tokio::test]
async fn an_announcement_and_a_state_for_one_identifier_do_not_replace_each_other() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let repo = announcement(&keys, "repo", 100);
    let refs = state(&keys, "repo", 200, "");
    assert_eq!(insert(&purgatory, &repo, "repo").await, Inserted::Added);
    assert_eq!(insert(&purgatory, &refs, "repo").await, Inserted::Added);
    assert!(purgatory.contains(&repo.id));
    assert!(purgatory.contains(&refs.id));
}

#[tokio::test]
async fn the_same_author_and_kind_at_different_identifiers_do_not_replace_each_other() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let one = state(&keys, "one", 100, "");
    let two = state(&keys, "two", 200, "");
    assert_eq!(insert(&purgatory, &one, "one").await, Inserted::Added);
    assert_eq!(insert(&purgatory, &two, "two").await, Inserted::Added);
    assert_eq!(purgatory.len(), 2);
}

#[tokio::test]
async fn pull_requests_never_replace_each_other() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let owner = Keys::generate();
    let contributor = Keys::generate();
    let first = pull_request(&contributor, &owner, "repo", 100, "first");
    let second = pull_request(&contributor, &owner, "repo", 200, "second");
    assert_eq!(insert(&purgatory, &first, "repo").await, Inserted::Added);
    assert_eq!(insert(&purgatory, &second, "repo").await, Inserted::Added);
    assert_eq!(stored_ids(&store).await, BTreeSet::from([first.id, second.id]));
}

// ---- remove and forget --------------------------------------------------------------------

#[tokio::test]
async fn remove_returns_the_entry_and_deletes_its_row() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let gone = state(&keys, "repo", 100, "");
    let kept = announcement(&keys, "repo", 100);
    insert(&purgatory, &gone, "repo").await;
    insert(&purgatory, &kept, "repo").await;

    let removed = purgatory.remove(&gone.id).await.expect("remove");
    assert_eq!(removed.map(|e| e.event.id), Some(gone.id));
    assert!(!purgatory.contains(&gone.id));
    let at = purgatory.at_address(Nip34Kind::State, &keys.public_key(), &identifier("repo"));
    assert!(at.is_none());
    assert_eq!(stored_ids(&store).await, BTreeSet::from([kept.id]));
    assert!(purgatory.remove(&gone.id).await.expect("remove again").is_none());
}

#[tokio::test]
async fn removing_the_last_entry_of_an_identifier_forgets_the_identifier() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let only = state(&keys, "repo", 100, "");
    insert(&purgatory, &only, "repo").await;
    assert_eq!(purgatory.identifiers(), vec![identifier("repo")]);
    purgatory.remove(&only.id).await.expect("remove");
    assert!(purgatory.identifiers().is_empty());
    assert!(purgatory.for_identifier(&identifier("repo")).is_empty());
    assert!(purgatory.is_empty());
    assert_eq!(purgatory.next_deadline_ms(), None);
}

#[tokio::test]
async fn forget_after_release_drops_the_entry_and_nothing_comes_back_on_reload() {
    let (dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let waiting = state(&keys, "repo", 100, "");
    insert(&purgatory, &waiting, "repo").await;

    store.release(&waiting).await.expect("release");
    let forgotten = purgatory.forget(&waiting.id).await;
    assert_eq!(forgotten.map(|e| e.event.id), Some(waiting.id));
    assert!(!purgatory.contains(&waiting.id));
    assert!(purgatory.forget(&waiting.id).await.is_none());
    assert!(store.contains(&waiting.id).await.expect("contains"));

    drop(purgatory);
    drop(store);
    let store = Store::open(&url(&dir)).await.expect("reopen");
    let reloaded = Purgatory::load(store, HOUR).await.expect("reload");
    assert!(reloaded.is_empty());
}

// ---- lookups ------------------------------------------------------------------------------

#[tokio::test]
async fn for_identifier_lists_only_that_identifiers_entries() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let owner = Keys::generate();
    let contributor = Keys::generate();
    let repo_state = state(&owner, "repo", 100, "");
    let repo_pr = pull_request(&contributor, &owner, "repo", 100, "");
    let other_state = state(&owner, "other", 100, "");
    insert(&purgatory, &repo_state, "repo").await;
    insert(&purgatory, &repo_pr, "repo").await;
    insert(&purgatory, &other_state, "other").await;

    let waiting: BTreeSet<EventId> = purgatory
        .for_identifier(&identifier("repo"))
        .iter()
        .map(|e| e.event.id)
        .collect();
    assert_eq!(waiting, BTreeSet::from([repo_state.id, repo_pr.id]));
    assert!(purgatory.for_identifier(&identifier("absent")).is_empty());
    let identifiers: BTreeSet<Identifier> = purgatory.identifiers().into_iter().collect();
    assert_eq!(
        identifiers,
        BTreeSet::from([identifier("repo"), identifier("other")])
    );
}

#[tokio::test]
async fn announcement_finds_the_pending_announcement_of_that_repository_only() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let alice = Keys::generate();
    let bob = Keys::generate();
    let repo = announcement(&alice, "repo", 100);
    insert(&purgatory, &repo, "repo").await;
    insert(&purgatory, &state(&bob, "repo", 100, ""), "repo").await;

    let alices = RepoId::new(alice.public_key(), identifier("repo"));
    assert_eq!(purgatory.announcement(&alices).map(|e| e.event.id), Some(repo.id));
    // Bob only has a state waiting, not an announcement.
    let bobs = RepoId::new(bob.public_key(), identifier("repo"));
    assert!(purgatory.announcement(&bobs).is_none());
    let elsewhere = RepoId::new(alice.public_key(), identifier("other"));
    assert!(purgatory.announcement(&elsewhere).is_none());
}

#[tokio::test]
async fn at_address_finds_announcements_and_states_but_never_pull_requests() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let repo = announcement(&keys, "repo", 100);
    let refs = state(&keys, "repo", 100, "");
    let pr = pull_request(&keys, &keys, "repo", 100, "");
    for e in [&repo, &refs, &pr] {
        insert(&purgatory, e, "repo").await;
    }
    let author = keys.public_key();
    let id = identifier("repo");
    let found = |kind| purgatory.at_address(kind, &author, &id).map(|e| e.event.id);
    assert_eq!(found(Nip34Kind::Announcement), Some(repo.id));
    assert_eq!(found(Nip34Kind::State), Some(refs.id));
    assert_eq!(found(Nip34Kind::PullRequest), None);
    assert_eq!(found(Nip34Kind::PullRequestUpdate), None);
}

// ---- NIP-09 deletion ----------------------------------------------------------------------

#[tokio::test]
async fn deletion_by_e_removes_the_authors_own_entry_and_its_row() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let doomed = state(&keys, "repo", 100, "");
    let kept = announcement(&keys, "repo", 100);
    insert(&purgatory, &doomed, "repo").await;
    insert(&purgatory, &kept, "repo").await;

    let removed = purgatory
        .apply_deletion(&deletion(&keys, 200, &[&["e", &doomed.id.to_hex()]]))
        .await
        .expect("apply deletion");
    let removed: Vec<EventId> = removed.iter().map(|e| e.event.id).collect();
    assert_eq!(removed, vec![doomed.id]);
    assert!(!purgatory.contains(&doomed.id));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([kept.id]));
}

#[tokio::test]
async fn deletion_by_e_of_another_authors_entry_does_nothing() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let alice = Keys::generate();
    let mallory = Keys::generate();
    let target = state(&alice, "repo", 100, "");
    insert(&purgatory, &target, "repo").await;

    let removed = purgatory
        .apply_deletion(&deletion(&mallory, 200, &[&["e", &target.id.to_hex()]]))
        .await
        .expect("apply deletion");
    assert!(removed.is_empty());
    assert!(purgatory.contains(&target.id));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([target.id]));
}

#[tokio::test]
async fn deletion_by_a_removes_the_entry_at_that_address_created_at_or_before_it() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let repo = announcement(&keys, "repo", 150);
    let refs = state(&keys, "repo", 100, "");
    insert(&purgatory, &repo, "repo").await;
    insert(&purgatory, &refs, "repo").await;

    let a = coordinate(KIND_STATE, &keys, "repo");
    let removed = purgatory
        .apply_deletion(&deletion(&keys, 150, &[&["a", &a]]))
        .await
        .expect("apply deletion");
    let removed: Vec<EventId> = removed.iter().map(|e| e.event.id).collect();
    assert_eq!(removed, vec![refs.id]);
    assert_eq!(stored_ids(&store).await, BTreeSet::from([repo.id]));

    // Same second as the deletion: still covered.
    let a = coordinate(KIND_ANNOUNCEMENT, &keys, "repo");
    let removed = purgatory
        .apply_deletion(&deletion(&keys, 150, &[&["a", &a]]))
        .await
        .expect("apply deletion");
    assert_eq!(removed.len(), 1);
    assert!(purgatory.is_empty());
    assert!(stored_ids(&store).await.is_empty());
}

#[tokio::test]
async fn deletion_by_a_leaves_an_entry_created_after_it() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let newer = state(&keys, "repo", 300, "");
    insert(&purgatory, &newer, "repo").await;
    let a = coordinate(KIND_STATE, &keys, "repo");
    let removed = purgatory
        .apply_deletion(&deletion(&keys, 200, &[&["a", &a]]))
        .await
        .expect("apply deletion");
    assert!(removed.is_empty());
    assert!(purgatory.contains(&newer.id));
}

#[tokio::test]
async fn deletion_by_a_of_another_authors_address_does_nothing() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let alice = Keys::generate();
    let mallory = Keys::generate();
    let target = announcement(&alice, "repo", 100);
    insert(&purgatory, &target, "repo").await;
    let a = coordinate(KIND_ANNOUNCEMENT, &alice, "repo");
    let removed = purgatory
        .apply_deletion(&deletion(&mallory, 200, &[&["a", &a]]))
        .await
        .expect("apply deletion");
    assert!(removed.is_empty());
    assert!(purgatory.contains(&target.id));
}

#[tokio::test]
async fn one_deletion_can_name_several_entries() {
    let (_dir, store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let pr = pull_request(&keys, &keys, "repo", 100, "");
    let refs = state(&keys, "other", 100, "");
    let kept = announcement(&keys, "repo", 100);
    for (e, d) in [(&pr, "repo"), (&refs, "other"), (&kept, "repo")] {
        insert(&purgatory, e, d).await;
    }
    let a = coordinate(KIND_STATE, &keys, "other");
    let pr_hex = pr.id.to_hex();
    let removed = purgatory
        .apply_deletion(&deletion(
            &keys,
            200,
            &[&["e", &pr_hex], &["a", &a], &["e", &pr_hex]],
        ))
        .await
        .expect("apply deletion");
    let removed: BTreeSet<EventId> = removed.iter().map(|e| e.event.id).collect();
    assert_eq!(removed, BTreeSet::from([pr.id, refs.id]));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([kept.id]));
}

// ---- deadlines ----------------------------------------------------------------------------

#[tokio::test]
async fn expired_lists_entries_due_by_now_earliest_first_without_removing_them() {
    let (_dir, store, _) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let late = state(&keys, "late", 100, "");
    let early = state(&keys, "early", 100, "");
    let middle = state(&keys, "middle", 100, "");
    store
        .purgatory_put(&row(&late, "late", 30_000))
        .await
        .expect("put");
    store
        .purgatory_put(&row(&early, "early", 10_000))
        .await
        .expect("put");
    store
        .purgatory_put(&row(&middle, "middle", 20_000))
        .await
        .expect("put");
    let purgatory = Purgatory::load(store, HOUR).await.expect("load");

    assert_eq!(purgatory.next_deadline_ms(), Some(10_000));
    let due = |now| -> Vec<EventId> { purgatory.expired(now).iter().map(|e| e.event.id).collect() };
    assert!(due(9_999).is_empty());
    assert_eq!(due(10_000), vec![early.id]);
    assert_eq!(due(25_000), vec![early.id, middle.id]);
    assert_eq!(due(i64::MAX), vec![early.id, middle.id, late.id]);
    // Looking does not take anything out.
    assert_eq!(purgatory.len(), 3);
}

#[tokio::test]
async fn removing_the_earliest_entry_moves_the_next_deadline() {
    let (_dir, store, _) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let first = state(&keys, "first", 100, "");
    let second = state(&keys, "second", 100, "");
    store
        .purgatory_put(&row(&first, "first", 10_000))
        .await
        .expect("put");
    store
        .purgatory_put(&row(&second, "second", 20_000))
        .await
        .expect("put");
    let purgatory = Purgatory::load(store, HOUR).await.expect("load");

    assert_eq!(purgatory.next_deadline_ms(), Some(10_000));
    purgatory.remove(&first.id).await.expect("remove");
    assert_eq!(purgatory.next_deadline_ms(), Some(20_000));
    assert_eq!(
        purgatory
            .expired(i64::MAX)
            .iter()
            .map(|e| e.event.id)
            .collect::<Vec<_>>(),
        vec![second.id]
    );
}

#[tokio::test]
async fn a_fresh_entry_is_due_after_the_expiry_and_not_before() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let waiting = state(&keys, "repo", 100, "");
    insert(&purgatory, &waiting, "repo").await;
    let entry = purgatory.get(&waiting.id).expect("entry");

    assert_eq!(purgatory.next_deadline_ms(), Some(entry.expires_at_ms));
    assert!(purgatory.expired(now_ms()).is_empty());
    assert_eq!(purgatory.expired(entry.expires_at_ms).len(), 1);
}

#[tokio::test]
async fn entries_inserted_later_are_due_later() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let first = state(&keys, "first", 100, "");
    let second = state(&keys, "second", 100, "");
    insert(&purgatory, &first, "first").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    insert(&purgatory, &second, "second").await;

    let due: Vec<EventId> = purgatory.expired(i64::MAX).iter().map(|e| e.event.id).collect();
    assert_eq!(due, vec![first.id, second.id]);
    let first_deadline = purgatory.get(&first.id).expect("entry").expires_at_ms;
    assert_eq!(purgatory.next_deadline_ms(), Some(first_deadline));
}

#[tokio::test]
async fn a_replaced_entry_leaves_the_deadline_index() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let old = state(&keys, "repo", 100, "old");
    let new = state(&keys, "repo", 200, "new");
    insert(&purgatory, &old, "repo").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    insert(&purgatory, &new, "repo").await;

    let due: Vec<EventId> = purgatory.expired(i64::MAX).iter().map(|e| e.event.id).collect();
    assert_eq!(due, vec![new.id]);
    let new_deadline = purgatory.get(&new.id).expect("entry").expires_at_ms;
    assert_eq!(purgatory.next_deadline_ms(), Some(new_deadline));
}

#[tokio::test]
async fn an_insert_wakes_whoever_waits_for_changes() {
    let (_dir, _store, purgatory) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let waiter = purgatory.clone();
    let woken = tokio::spawn(async move { waiter.changed().await });
    tokio::task::yield_now().await;
    insert(&purgatory, &state(&keys, "repo", 100, ""), "repo").await;
    tokio::time::timeout(Duration::from_secs(5), woken)
        .await
        .expect("woken within five seconds")
        .expect("join");
}

// ---- restart ------------------------------------------------------------------------------

#[tokio::test]
async fn entries_and_deadlines_survive_dropping_everything_and_reloading() {
    let (dir, store, purgatory) = temp_purgatory(HOUR).await;
    let owner = Keys::generate();
    let contributor = Keys::generate();
    let old_state = state(&owner, "repo", 100, "old");
    let new_state = state(&owner, "repo", 200, "new");
    let repo = announcement(&owner, "repo", 100);
    let pr = pull_request(&contributor, &owner, "repo", 150, "");
    let removed = state(&owner, "other", 100, "");
    insert(&purgatory, &old_state, "repo").await;
    insert(&purgatory, &new_state, "repo").await;
    insert(&purgatory, &repo, "repo").await;
    purgatory
        .insert(
            pr.clone(),
            Nip34Kind::PullRequest,
            identifier("repo"),
            Source::Sync,
        )
        .await
        .expect("insert");
    insert(&purgatory, &removed, "other").await;
    purgatory.remove(&removed.id).await.expect("remove");

    let before: Vec<(EventId, i64, i64, Source)> = purgatory
        .expired(i64::MAX)
        .iter()
        .map(|e| (e.event.id, e.received_at_ms, e.expires_at_ms, e.source))
        .collect();
    let next_before = purgatory.next_deadline_ms();
    drop(purgatory);
    drop(store);

    let store = Store::open(&url(&dir)).await.expect("reopen");
    // A different expiry at start must not move the deadlines already promised.
    let reloaded = Purgatory::load(store, Duration::from_secs(1))
        .await
        .expect("reload");
    let after: Vec<(EventId, i64, i64, Source)> = reloaded
        .expired(i64::MAX)
        .iter()
        .map(|e| (e.event.id, e.received_at_ms, e.expires_at_ms, e.source))
        .collect();
    assert_eq!(after, before);
    assert_eq!(after.len(), 3);
    assert_eq!(reloaded.next_deadline_ms(), next_before);
    assert!(!reloaded.contains(&old_state.id));
    assert!(!reloaded.contains(&removed.id));
    assert_eq!(reloaded.get(&pr.id).expect("pr").source, Source::Sync);
    assert_eq!(reloaded.get(&pr.id).expect("pr").kind, Nip34Kind::PullRequest);

    // The indexes are rebuilt too.
    let at = reloaded.at_address(Nip34Kind::State, &owner.public_key(), &identifier("repo"));
    assert_eq!(at.map(|e| e.event.id), Some(new_state.id));
    let owners_repo = RepoId::new(owner.public_key(), identifier("repo"));
    assert_eq!(
        reloaded.announcement(&owners_repo).map(|e| e.event.id),
        Some(repo.id)
    );
    assert_eq!(reloaded.for_identifier(&identifier("repo")).len(), 3);
    assert_eq!(
        insert(&reloaded, &old_state, "repo").await,
        Inserted::Superseded(new_state.id)
    );
}

#[tokio::test]
async fn load_drops_rows_it_cannot_read_from_memory_and_from_the_database() {
    let (_dir, store, _) = temp_purgatory(HOUR).await;
    let keys = Keys::generate();
    let good = state(&keys, "repo", 100, "");
    let bad_identifier = state(&keys, "../escape", 100, "");
    let not_nip34 = event(&keys, 1, 100, "", &[]);
    store
        .purgatory_put(&row(&good, "repo", 10_000))
        .await
        .expect("put");
    store
        .purgatory_put(&row(&bad_identifier, "../escape", 10_000))
        .await
        .expect("put");
    store
        .purgatory_put(&row(&not_nip34, "repo", 10_000))
        .await
        .expect("put");

    let purgatory = Purgatory::load(store.clone(), HOUR).await.expect("load");
    assert_eq!(purgatory.len(), 1);
    assert!(purgatory.contains(&good.id));
    assert_eq!(stored_ids(&store).await, BTreeSet::from([good.id]));
}
