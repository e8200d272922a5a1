// The store suite, run on each backend (included by `store/tests.rs` into `sqlite` and
// `postgres`, each with its `BACKEND`).

// ---- opening ------------------------------------------------------------------------------


#[tokio::test]
async fn a_new_database_starts_empty() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    assert_eq!(store.event_count().await.expect("count"), 0);
    assert!(store.query(&Filter::new()).await.expect("query").is_empty());
    assert!(store.purgatory_all().await.expect("purgatory").is_empty());
}

// ---- NIP-01 filters -----------------------------------------------------------------------

#[tokio::test]
async fn filter_by_ids_returns_only_the_named_events() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let a = event(&keys, 1, 100, "a", &[]);
    let b = event(&keys, 1, 101, "b", &[]);
    let c = event(&keys, 1, 102, "c", &[]);
    for e in [&a, &b, &c] {
        assert_eq!(save(&store, e).await, SaveEventStatus::Success);
    }
    let found = ids_of(&store, Filter::new().ids([a.id, c.id])).await;
    assert_eq!(found, vec![c.id, a.id]);
}

/// NIP-77 items (id and time) of what is served: never a purgatory row, never a deleted event.
#[tokio::test]
async fn negentropy_items_are_the_served_events_ids_and_times() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let kept = event(&keys, 1621, 100, "kept", &[&["a", "30617:x:repo"]]);
    let doomed = event(&keys, 1621, 101, "doomed", &[&["a", "30617:x:repo"]]);
    let waiting = announcement(&keys, "repo", 102, "");
    for e in [&kept, &doomed] {
        save(&store, e).await;
    }
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 5_000))
        .await
        .expect("put");
    save(&store, &event(&keys, DELETION, 200, "", &[&["e", &doomed.id.to_hex()]])).await;
    let items = store
        .negentropy_items(&Filter::new().kinds([Kind::from(1621u16), Kind::from(ANNOUNCEMENT)]))
        .await
        .expect("items");
    assert_eq!(items, vec![(kept.id, kept.created_at)]);
}

#[tokio::test]
async fn filter_by_authors_returns_only_their_events() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let carol = Keys::generate();
    let by_alice = event(&alice, 1, 100, "", &[]);
    let by_bob = event(&bob, 1, 101, "", &[]);
    let by_carol = event(&carol, 1, 102, "", &[]);
    for e in [&by_alice, &by_bob, &by_carol] {
        save(&store, e).await;
    }
    let found = ids_of(
        &store,
        Filter::new().authors([alice.public_key(), bob.public_key()]),
    )
    .await;
    assert_eq!(found, vec![by_bob.id, by_alice.id]);
}

#[tokio::test]
async fn filter_by_kinds_returns_only_those_kinds() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let note = event(&keys, 1, 100, "", &[]);
    let reaction = event(&keys, 7, 101, "+", &[]);
    let pull_request = event(&keys, 1618, 102, "", &[]);
    for e in [&note, &reaction, &pull_request] {
        save(&store, e).await;
    }
    let found = ids_of(
        &store,
        Filter::new().kinds([Kind::from(1u16), Kind::from(1618u16)]),
    )
    .await;
    assert_eq!(found, vec![pull_request.id, note.id]);
}

#[tokio::test]
async fn tag_filter_matches_any_of_its_values() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let rust = event(&keys, 1, 100, "", &[&["t", "rust"]]);
    let git = event(&keys, 1, 101, "", &[&["t", "git"]]);
    let other = event(&keys, 1, 102, "", &[&["t", "other"]]);
    let untagged = event(&keys, 1, 103, "", &[]);
    for e in [&rust, &git, &other, &untagged] {
        save(&store, e).await;
    }
    let found = ids_of(
        &store,
        Filter::new().custom_tags(tag(Alphabet::T), ["rust", "git"]),
    )
    .await;
    assert_eq!(found, vec![git.id, rust.id]);
}

#[tokio::test]
async fn two_tag_filters_must_both_match() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let owner = Keys::generate().public_key().to_hex();
    let both = event(&keys, 1, 100, "", &[&["t", "rust"], &["p", &owner]]);
    let only_t = event(&keys, 1, 101, "", &[&["t", "rust"]]);
    let only_p = event(&keys, 1, 102, "", &[&["p", &owner]]);
    for e in [&both, &only_t, &only_p] {
        save(&store, e).await;
    }
    let filter = Filter::new()
        .custom_tag(tag(Alphabet::T), "rust")
        .custom_tag(tag(Alphabet::P), owner.as_str());
    assert_eq!(ids_of(&store, filter).await, vec![both.id]);
}

#[tokio::test]
async fn tag_filter_over_several_values_keeps_an_event_tagging_two_of_them_once() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let both = event(&keys, 1621, 100, "", &[&["a", "one"], &["a", "two"]]);
    let one = event(&keys, 1621, 101, "", &[&["a", "one"]]);
    let two = event(&keys, 1621, 102, "", &[&["a", "two"]]);
    let other_kind = event(&keys, 1, 103, "", &[&["a", "one"]]);
    for e in [&both, &one, &two, &other_kind] {
        save(&store, e).await;
    }
    let filter = Filter::new()
        .kind(Kind::from(1621u16))
        .custom_tags(tag(Alphabet::A), ["one", "two"]);
    assert_eq!(
        ids_of(&store, filter.clone()).await,
        vec![two.id, one.id, both.id]
    );
    assert_eq!(
        ids_of(&store, filter.clone().limit(2)).await,
        vec![two.id, one.id]
    );
    assert_eq!(
        ids_of(&store, filter.clone().until(Timestamp::from(101u64)).limit(1)).await,
        vec![one.id]
    );
    assert_eq!(store.count(&filter).await.expect("count"), 3);
}

#[tokio::test]
async fn tag_filter_with_authors_kinds_window_and_a_second_tag() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let stranger = Keys::generate();
    let hit = event(&keys, 1621, 100, "", &[&["a", "repo"], &["t", "bug"]]);
    let newer_hit = event(&keys, 1621, 110, "", &[&["a", "repo"], &["t", "bug"]]);
    let no_second_tag = event(&keys, 1621, 101, "", &[&["a", "repo"]]);
    let by_stranger = event(&stranger, 1621, 102, "", &[&["a", "repo"], &["t", "bug"]]);
    let too_old = event(&keys, 1621, 50, "", &[&["a", "repo"], &["t", "bug"]]);
    for e in [&hit, &newer_hit, &no_second_tag, &by_stranger, &too_old] {
        save(&store, e).await;
    }
    let filter = Filter::new()
        .author(keys.public_key())
        .kind(Kind::from(1621u16))
        .custom_tag(tag(Alphabet::A), "repo")
        .custom_tag(tag(Alphabet::T), "bug")
        .since(Timestamp::from(60u64));
    assert_eq!(ids_of(&store, filter.clone()).await, vec![newer_hit.id, hit.id]);
    assert_eq!(ids_of(&store, filter.limit(1)).await, vec![newer_hit.id]);
}


#[tokio::test]
async fn tag_and_kinds_filters_skip_other_kinds_and_stored_reads_agree_with_events() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    // Many newer events of another kind tagging the same repository, then the ones asked for.
    let mut wanted = Vec::new();
    for i in 0..5u64 {
        let pr = event(&keys, 1618, 100 + i, "pr", &[&["a", "repo"]]);
        save(&store, &pr).await;
        wanted.push(pr);
    }
    for i in 0..40u64 {
        save(&store, &event(&keys, 1621, 200 + i, "issue", &[&["a", "repo"]])).await;
    }
    let filter = Filter::new()
        .kinds([Kind::from(1618u16), Kind::from(1617u16)])
        .custom_tag(tag(Alphabet::A), "repo")
        .limit(3);
    let newest: Vec<EventId> = wanted.iter().rev().take(3).map(|e| e.id).collect();
    assert_eq!(ids_of(&store, filter.clone()).await, newest);
    // The same events, as stored: id, time and JSON.
    let stored = store.query_stored(&filter).await.expect("stored");
    let events = store.query(&filter).await.expect("query");
    assert_eq!(stored.len(), events.len());
    for (stored, event) in stored.iter().zip(&events) {
        assert_eq!(stored.id, event.id.to_hex());
        assert_eq!(stored.created_at, event.created_at.as_secs() as i64);
        assert_eq!(&Event::from_json(&stored.json).expect("stored JSON"), event);
    }
}

#[tokio::test]
async fn tag_filter_matches_the_first_value_of_a_tag_only() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let e = event(&keys, 1, 100, "", &[&["t", "first", "second"]]);
    save(&store, &e).await;
    let first = Filter::new().custom_tag(tag(Alphabet::T), "first");
    let second = Filter::new().custom_tag(tag(Alphabet::T), "second");
    assert_eq!(ids_of(&store, first).await, vec![e.id]);
    assert!(ids_of(&store, second).await.is_empty());
}

#[tokio::test]
async fn uppercase_tag_filter_is_distinct_from_lowercase() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let value = EventId::all_zeros().to_hex();
    let upper = event(&keys, 1, 100, "", &[&["E", &value]]);
    let lower = event(&keys, 1, 101, "", &[&["e", &value]]);
    save(&store, &upper).await;
    save(&store, &lower).await;
    let filter = Filter::new().custom_tag(SingleLetterTag::uppercase(Alphabet::E), value.as_str());
    assert_eq!(ids_of(&store, filter).await, vec![upper.id]);
}

#[tokio::test]
async fn since_and_until_are_inclusive_bounds() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let events: Vec<Event> = (100..=104).map(|t| event(&keys, 1, t, "", &[])).collect();
    for e in &events {
        save(&store, e).await;
    }
    let filter = Filter::new()
        .since(Timestamp::from(101))
        .until(Timestamp::from(103));
    assert_eq!(
        ids_of(&store, filter).await,
        vec![events[3].id, events[2].id, events[1].id]
    );
    let only_since = Filter::new().since(Timestamp::from(104));
    assert_eq!(ids_of(&store, only_since).await, vec![events[4].id]);
    let only_until = Filter::new().until(Timestamp::from(100));
    assert_eq!(ids_of(&store, only_until).await, vec![events[0].id]);
}

#[tokio::test]
async fn limit_keeps_the_newest_events() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let events: Vec<Event> = (100..105).map(|t| event(&keys, 1, t, "", &[])).collect();
    // Stored out of order: the limit must follow created_at, not arrival.
    for i in [3, 0, 4, 1, 2] {
        save(&store, &events[i]).await;
    }
    let found = ids_of(&store, Filter::new().limit(2)).await;
    assert_eq!(found, vec![events[4].id, events[3].id]);
}

#[tokio::test]
async fn results_are_newest_first_and_equal_times_lowest_id_first() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let old = event(&keys, 1, 100, "old", &[]);
    let same_time: Vec<Event> = (0..6)
        .map(|i| event(&keys, 1, 200, &format!("tie {i}"), &[]))
        .collect();
    let new = event(&keys, 1, 300, "new", &[]);
    save(&store, &old).await;
    for e in same_time.iter().rev() {
        save(&store, e).await;
    }
    save(&store, &new).await;

    let mut tied: Vec<EventId> = same_time.iter().map(|e| e.id).collect();
    tied.sort();
    let mut expected = vec![new.id];
    expected.extend(tied);
    expected.push(old.id);
    assert_eq!(ids_of(&store, Filter::new()).await, expected);
}

#[tokio::test]
async fn filters_that_can_match_nothing_return_nothing() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let e = event(&keys, 1, 100, "hello", &[&["t", "x"]]);
    save(&store, &e).await;
    let nothing = [
        Filter::new().limit(0),
        Filter::new().ids(Vec::<EventId>::new()),
        Filter::new().authors(Vec::<nostr::PublicKey>::new()),
        Filter::new().kinds(Vec::<Kind>::new()),
        Filter::new().search("hello"),
    ];
    for filter in nothing {
        assert!(
            store.query(&filter).await.expect("query").is_empty(),
            "{filter:?}"
        );
        assert_eq!(store.count(&filter).await.expect("count"), 0, "{filter:?}");
    }
    // The same store does answer an open filter.
    assert_eq!(ids_of(&store, Filter::new()).await, vec![e.id]);
}

#[tokio::test]
async fn count_counts_what_the_filter_matches() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    for t in 0..5 {
        save(&store, &event(&alice, 1, 100 + t, "", &[&["t", "x"]])).await;
    }
    for t in 0..3 {
        save(&store, &event(&bob, 1, 100 + t, "", &[&["t", "x"]])).await;
    }
    let by_alice = Filter::new().author(alice.public_key());
    assert_eq!(store.count(&by_alice).await.expect("count"), 5);
    let tagged = Filter::new().custom_tag(tag(Alphabet::T), "x");
    assert_eq!(store.count(&tagged).await.expect("count"), 8);
    assert_eq!(store.event_count().await.expect("count"), 8);
}

// ---- single-event lookups -----------------------------------------------------------------

#[tokio::test]
async fn event_by_id_returns_the_stored_event_and_contains_agrees() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let stored = event(&keys, 1, 100, "kept", &[&["t", "x"]]);
    let absent = event(&keys, 1, 101, "never saved", &[]);
    save(&store, &stored).await;

    let found = store.event_by_id(&stored.id).await.expect("lookup");
    assert_eq!(found.as_ref(), Some(&stored));
    assert!(store.contains(&stored.id).await.expect("contains"));
    assert_eq!(store.event_by_id(&absent.id).await.expect("lookup"), None);
    assert!(!store.contains(&absent.id).await.expect("contains"));
}

#[tokio::test]
async fn is_referenced_by_e_upper_e_and_q_tags_but_not_p() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let targets: Vec<Event> = (0..4).map(|i| event(&keys, 1, 100 + i, "", &[])).collect();
    let hex: Vec<String> = targets.iter().map(|e| e.id.to_hex()).collect();
    save(&store, &event(&keys, 1, 200, "", &[&["e", &hex[0]]])).await;
    save(&store, &event(&keys, 1, 201, "", &[&["E", &hex[1]]])).await;
    save(&store, &event(&keys, 1, 202, "", &[&["q", &hex[2]]])).await;
    save(&store, &event(&keys, 1, 203, "", &[&["p", &hex[3]]])).await;

    for referenced in &targets[..3] {
        assert!(store.is_referenced(&referenced.id).await.expect("lookup"));
    }
    assert!(!store.is_referenced(&targets[3].id).await.expect("lookup"));
}

#[tokio::test]
async fn at_address_finds_the_event_of_that_author_kind_and_identifier() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let repo = announcement(&alice, "repo", 100, "");
    let other_repo = announcement(&alice, "other", 100, "");
    let bobs_repo = announcement(&bob, "repo", 100, "");
    let metadata = event(&alice, 0, 100, "{}", &[]);
    for e in [&repo, &other_repo, &bobs_repo, &metadata] {
        save(&store, e).await;
    }
    let kind = Kind::from(ANNOUNCEMENT);
    let found = store
        .at_address(kind, &alice.public_key(), "repo")
        .await
        .expect("lookup");
    assert_eq!(found.map(|e| e.id), Some(repo.id));
    let state = store
        .at_address(Kind::from(30618u16), &alice.public_key(), "repo")
        .await
        .expect("lookup");
    assert!(state.is_none());
    // Replaceable events live at the empty `d`.
    let profile = store
        .at_address(Kind::Metadata, &alice.public_key(), "")
        .await
        .expect("lookup");
    assert_eq!(profile.map(|e| e.id), Some(metadata.id));
}

#[tokio::test]
async fn by_identifier_returns_every_authors_event_for_that_identifier() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let by_alice = announcement(&alice, "repo", 100, "");
    let by_bob = announcement(&bob, "repo", 101, "");
    let elsewhere = announcement(&alice, "other", 102, "");
    for e in [&by_alice, &by_bob, &elsewhere] {
        save(&store, e).await;
    }
    let found: BTreeSet<EventId> = store
        .by_identifier(Kind::from(ANNOUNCEMENT), "repo")
        .await
        .expect("lookup")
        .iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(found, BTreeSet::from([by_alice.id, by_bob.id]));
}

// ---- duplicates and ephemeral events ------------------------------------------------------

#[tokio::test]
async fn the_same_event_twice_is_refused_as_duplicate() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let e = event(&keys, 1, 100, "", &[&["t", "x"]]);
    assert_eq!(save(&store, &e).await, SaveEventStatus::Success);
    assert_eq!(
        save(&store, &e).await,
        SaveEventStatus::Rejected(RejectedReason::Duplicate)
    );
    assert_eq!(store.event_count().await.expect("count"), 1);
}

#[tokio::test]
async fn a_current_addressable_event_sent_again_is_a_duplicate_not_a_replacement() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let repo = announcement(&keys, "repo", 100, "");
    save(&store, &repo).await;
    assert_eq!(
        save(&store, &repo).await,
        SaveEventStatus::Rejected(RejectedReason::Duplicate)
    );
    assert!(store.contains(&repo.id).await.expect("contains"));
}

#[tokio::test]
async fn ephemeral_events_are_not_stored() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let e = event(&keys, 20001, 100, "", &[]);
    assert_eq!(
        save(&store, &e).await,
        SaveEventStatus::Rejected(RejectedReason::Ephemeral)
    );
    assert!(!store.contains(&e.id).await.expect("contains"));
}

// ---- replaceable and addressable events ---------------------------------------------------

#[tokio::test]
async fn newer_replaceable_event_replaces_the_older() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let old = event(&keys, 0, 100, r#"{"name":"old"}"#, &[]);
    let new = event(&keys, 0, 200, r#"{"name":"new"}"#, &[]);
    assert_eq!(save(&store, &old).await, SaveEventStatus::Success);
    assert_eq!(save(&store, &new).await, SaveEventStatus::Success);

    let filter = Filter::new().author(keys.public_key()).kind(Kind::Metadata);
    assert_eq!(ids_of(&store, filter).await, vec![new.id]);
    assert!(!store.contains(&old.id).await.expect("contains"));
}

#[tokio::test]
async fn older_replaceable_event_arriving_later_is_refused() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let relays = Kind::from(10002u16);
    let new = event(&keys, 10002, 200, "", &[&["r", "wss://new.example"]]);
    let old = event(&keys, 10002, 100, "", &[&["r", "wss://old.example"]]);
    save(&store, &new).await;
    assert_eq!(
        save(&store, &old).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    let filter = Filter::new().author(keys.public_key()).kind(relays);
    assert_eq!(ids_of(&store, filter).await, vec![new.id]);
    assert_eq!(store.event_by_id(&old.id).await.expect("lookup"), None);
}

#[tokio::test]
async fn replaceable_events_of_different_authors_do_not_replace_each_other() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let by_alice = event(&alice, 0, 100, "{}", &[]);
    let by_bob = event(&bob, 0, 200, "{}", &[]);
    save(&store, &by_alice).await;
    save(&store, &by_bob).await;
    assert_eq!(
        ids_of(&store, Filter::new().kind(Kind::Metadata)).await,
        vec![by_bob.id, by_alice.id]
    );
}

#[tokio::test]
async fn newer_addressable_event_replaces_the_older_at_the_same_address() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let old = event(&keys, ANNOUNCEMENT, 100, "", &[&["d", "repo"], &["t", "old"]]);
    let new = event(&keys, ANNOUNCEMENT, 200, "", &[&["d", "repo"], &["t", "new"]]);
    save(&store, &old).await;
    assert_eq!(save(&store, &new).await, SaveEventStatus::Success);

    let at = store
        .at_address(Kind::from(ANNOUNCEMENT), &keys.public_key(), "repo")
        .await
        .expect("lookup");
    assert_eq!(at.map(|e| e.id), Some(new.id));
    assert_eq!(
        ids_of(&store, Filter::new().identifier("repo")).await,
        vec![new.id]
    );
    // The replaced event's tags are gone from the index too.
    let old_tag = Filter::new().custom_tag(tag(Alphabet::T), "old");
    assert!(ids_of(&store, old_tag).await.is_empty());
}

#[tokio::test]
async fn older_addressable_event_arriving_later_is_refused() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let new = announcement(&keys, "repo", 200, "new");
    let old = announcement(&keys, "repo", 100, "old");
    save(&store, &new).await;
    assert_eq!(
        save(&store, &old).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    // Never served, by any route.
    assert!(!store.contains(&old.id).await.expect("contains"));
    assert_eq!(
        ids_of(&store, Filter::new().kind(Kind::from(ANNOUNCEMENT))).await,
        vec![new.id]
    );
    assert_eq!(
        ids_of(&store, Filter::new().id(old.id)).await,
        Vec::<EventId>::new()
    );
}

#[tokio::test]
async fn addressable_events_with_different_identifiers_coexist() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let one = announcement(&keys, "one", 100, "");
    let two = announcement(&keys, "two", 200, "");
    save(&store, &one).await;
    assert_eq!(save(&store, &two).await, SaveEventStatus::Success);
    assert_eq!(
        ids_of(&store, Filter::new().kind(Kind::from(ANNOUNCEMENT))).await,
        vec![two.id, one.id]
    );
}

#[tokio::test]
async fn equal_created_at_keeps_the_lowest_id_whichever_arrives_first() {
    let keys = Keys::generate();
    let (low, high) = tied_pair(&keys, ANNOUNCEMENT, 100, &[&["d", "repo"]]);

    // Lowest first: the higher id is refused.
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    assert_eq!(save(&store, &low).await, SaveEventStatus::Success);
    assert_eq!(
        save(&store, &high).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    assert_eq!(ids_of(&store, Filter::new()).await, vec![low.id]);

    // Highest first: the lower id takes its place.
    let Some((_db2, store2)) = temp_store(BACKEND).await else {
        return;
    };
    assert_eq!(save(&store2, &high).await, SaveEventStatus::Success);
    assert_eq!(save(&store2, &low).await, SaveEventStatus::Success);
    assert_eq!(ids_of(&store2, Filter::new()).await, vec![low.id]);
}

#[tokio::test]
async fn equal_created_at_keeps_the_lowest_id_for_replaceable_kinds() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let (low, high) = tied_pair(&keys, 10002, 100, &[]);
    save(&store, &high).await;
    save(&store, &low).await;
    assert_eq!(
        save(&store, &high).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    assert_eq!(
        ids_of(&store, Filter::new().kind(Kind::from(10002u16))).await,
        vec![low.id]
    );
}

// ---- NIP-09 deletion ----------------------------------------------------------------------

#[tokio::test]
async fn deletion_by_e_removes_the_authors_own_event() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let doomed = event(&keys, 1, 100, "", &[&["t", "gone"]]);
    let kept = event(&keys, 1, 101, "", &[]);
    save(&store, &doomed).await;
    save(&store, &kept).await;
    let deletion = event(&keys, DELETION, 200, "", &[&["e", &doomed.id.to_hex()]]);
    assert_eq!(save(&store, &deletion).await, SaveEventStatus::Success);

    assert!(!store.contains(&doomed.id).await.expect("contains"));
    assert!(store.is_deleted(&doomed).await.expect("is_deleted"));
    assert!(store.contains(&kept.id).await.expect("contains"));
    assert!(!store.is_deleted(&kept).await.expect("is_deleted"));
    // The deletion itself is stored and served.
    assert!(store.contains(&deletion.id).await.expect("contains"));
    let gone = Filter::new().custom_tag(tag(Alphabet::T), "gone");
    assert!(ids_of(&store, gone).await.is_empty());
}

#[tokio::test]
async fn deletion_by_e_of_another_authors_event_does_nothing() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let mallory = Keys::generate();
    let target = event(&alice, 1, 100, "", &[&["t", "kept"]]);
    save(&store, &target).await;
    let deletion = event(&mallory, DELETION, 200, "", &[&["e", &target.id.to_hex()]]);
    store.save_event(&deletion).await.expect("save deletion");

    assert!(store.contains(&target.id).await.expect("contains"));
    assert!(!store.is_deleted(&target).await.expect("is_deleted"));
    let kept = Filter::new().custom_tag(tag(Alphabet::T), "kept");
    assert_eq!(ids_of(&store, kept).await, vec![target.id]);
}

#[tokio::test]
async fn deleted_event_published_again_is_refused_as_deleted() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let doomed = event(&keys, 1, 100, "", &[]);
    save(&store, &doomed).await;
    save(
        &store,
        &event(&keys, DELETION, 200, "", &[&["e", &doomed.id.to_hex()]]),
    )
    .await;

    assert_eq!(
        save(&store, &doomed).await,
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
    assert!(store.is_deleted(&doomed).await.expect("is_deleted"));
    assert!(!store.contains(&doomed.id).await.expect("contains"));
}

#[tokio::test]
async fn deletion_by_e_arriving_before_its_target_refuses_the_target() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let late = event(&keys, 1, 100, "", &[]);
    save(
        &store,
        &event(&keys, DELETION, 200, "", &[&["e", &late.id.to_hex()]]),
    )
    .await;
    assert!(store.is_deleted(&late).await.expect("is_deleted"));
    assert_eq!(
        save(&store, &late).await,
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
}

#[tokio::test]
async fn a_deletion_event_cannot_itself_be_deleted() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let note = event(&keys, 1, 100, "", &[]);
    save(&store, &note).await;
    let first = event(&keys, DELETION, 200, "", &[&["e", &note.id.to_hex()]]);
    save(&store, &first).await;
    let second = event(&keys, DELETION, 300, "", &[&["e", &first.id.to_hex()]]);
    save(&store, &second).await;

    assert!(store.contains(&first.id).await.expect("contains"));
    assert!(!store.is_deleted(&first).await.expect("is_deleted"));
    assert!(store.is_deleted(&note).await.expect("is_deleted"));
}

#[tokio::test]
async fn deletion_by_a_removes_the_event_at_that_address() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let repo = event(&keys, ANNOUNCEMENT, 100, "", &[&["d", "repo"], &["t", "gone"]]);
    let other = announcement(&keys, "other", 100, "");
    save(&store, &repo).await;
    save(&store, &other).await;
    let a = coordinate(ANNOUNCEMENT, &keys, "repo");
    assert_eq!(
        save(&store, &event(&keys, DELETION, 150, "", &[&["a", &a]])).await,
        SaveEventStatus::Success
    );

    assert!(!store.contains(&repo.id).await.expect("contains"));
    assert!(store.is_deleted(&repo).await.expect("is_deleted"));
    let at = store
        .at_address(Kind::from(ANNOUNCEMENT), &keys.public_key(), "repo")
        .await
        .expect("lookup");
    assert!(at.is_none());
    assert!(store.contains(&other.id).await.expect("contains"));
    let gone = Filter::new().custom_tag(tag(Alphabet::T), "gone");
    assert!(ids_of(&store, gone).await.is_empty());
}

#[tokio::test]
async fn deletion_by_a_covers_only_events_up_to_its_created_at() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let newer = announcement(&keys, "repo", 200, "newer");
    save(&store, &newer).await;
    let a = coordinate(ANNOUNCEMENT, &keys, "repo");
    save(&store, &event(&keys, DELETION, 150, "", &[&["a", &a]])).await;

    // The event created after the deletion stays.
    assert!(store.contains(&newer.id).await.expect("contains"));
    assert!(!store.is_deleted(&newer).await.expect("is_deleted"));

    // At or before the deletion: refused as deleted. After it: accepted.
    let at_deletion = announcement(&keys, "repo", 150, "at");
    assert!(store.is_deleted(&at_deletion).await.expect("is_deleted"));
    assert_eq!(
        save(&store, &at_deletion).await,
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
    let newest = announcement(&keys, "repo", 300, "newest");
    assert!(!store.is_deleted(&newest).await.expect("is_deleted"));
    assert_eq!(save(&store, &newest).await, SaveEventStatus::Success);
}

#[tokio::test]
async fn deletion_by_a_at_the_same_second_deletes_the_event() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let repo = announcement(&keys, "repo", 150, "");
    save(&store, &repo).await;
    let a = coordinate(ANNOUNCEMENT, &keys, "repo");
    save(&store, &event(&keys, DELETION, 150, "", &[&["a", &a]])).await;
    assert!(!store.contains(&repo.id).await.expect("contains"));
}

#[tokio::test]
async fn deletion_by_a_of_another_authors_address_does_nothing() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let mallory = Keys::generate();
    let repo = announcement(&alice, "repo", 100, "");
    save(&store, &repo).await;
    let a = coordinate(ANNOUNCEMENT, &alice, "repo");
    store
        .save_event(&event(&mallory, DELETION, 200, "", &[&["a", &a]]))
        .await
        .expect("save deletion");

    assert!(store.contains(&repo.id).await.expect("contains"));
    assert!(!store.is_deleted(&repo).await.expect("is_deleted"));
    let older = announcement(&alice, "repo", 50, "");
    // Refused because it is older than what is stored, not because it was deleted.
    assert_eq!(
        save(&store, &older).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
}

#[tokio::test]
async fn deletion_by_a_works_for_replaceable_kinds_with_an_empty_d() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let relays = event(&keys, 10002, 100, "", &[&["r", "wss://relay.example"]]);
    save(&store, &relays).await;
    let a = coordinate(10002, &keys, "");
    save(&store, &event(&keys, DELETION, 200, "", &[&["a", &a]])).await;
    assert!(!store.contains(&relays.id).await.expect("contains"));
    assert!(store.is_deleted(&relays).await.expect("is_deleted"));
}

#[tokio::test]
async fn a_later_address_deletion_extends_the_deleted_range_and_an_earlier_one_does_not_shrink_it() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let a = coordinate(ANNOUNCEMENT, &keys, "repo");
    save(&store, &event(&keys, DELETION, 200, "late", &[&["a", &a]])).await;
    save(&store, &event(&keys, DELETION, 100, "early", &[&["a", &a]])).await;
    let at_180 = announcement(&keys, "repo", 180, "");
    assert_eq!(
        save(&store, &at_180).await,
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
}

// ---- operator delete and wipe -------------------------------------------------------------

#[tokio::test]
async fn operator_delete_removes_matching_events_and_their_tags() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let alice = Keys::generate();
    let bob = Keys::generate();
    let by_alice = event(&alice, 1, 100, "", &[&["t", "x"]]);
    let by_bob = event(&bob, 1, 101, "", &[&["t", "x"]]);
    save(&store, &by_alice).await;
    save(&store, &by_bob).await;

    store
        .delete(&Filter::new().author(alice.public_key()))
        .await
        .expect("delete");
    let tagged = Filter::new().custom_tag(tag(Alphabet::T), "x");
    assert_eq!(ids_of(&store, tagged).await, vec![by_bob.id]);
    // An operator delete is not a NIP-09 deletion: the event may come back.
    assert!(!store.is_deleted(&by_alice).await.expect("is_deleted"));
    assert_eq!(save(&store, &by_alice).await, SaveEventStatus::Success);
}

#[tokio::test]
async fn wipe_empties_events_tombstones_and_purgatory() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let note = event(&keys, 1, 100, "", &[]);
    save(&store, &note).await;
    save(
        &store,
        &event(&keys, DELETION, 200, "", &[&["e", &note.id.to_hex()]]),
    )
    .await;
    let waiting = announcement(&keys, "repo", 100, "");
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 5_000))
        .await
        .expect("put");

    store.wipe().await.expect("wipe");
    assert_eq!(store.event_count().await.expect("count"), 0);
    assert!(!store.is_deleted(&note).await.expect("is_deleted"));
    assert!(store.purgatory_all().await.expect("rows").is_empty());
}

// ---- purgatory rows -----------------------------------------------------------------------

#[tokio::test]
async fn purgatory_put_stores_a_row_that_purgatory_all_returns() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let waiting = announcement(&keys, "repo", 100, "");
    let mut row = purgatory_row(&waiting, "repo", 9_000);
    row.source = "sync".to_owned();
    store.purgatory_put(&row).await.expect("put");

    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, waiting);
    assert_eq!(rows[0].identifier, "repo");
    assert_eq!(rows[0].received_at_ms, 1_000);
    assert_eq!(rows[0].expires_at_ms, 9_000);
    assert_eq!(rows[0].source, "sync");
    // Waiting in purgatory is not being served.
    assert!(!store.contains(&waiting.id).await.expect("contains"));
}

#[tokio::test]
async fn purgatory_put_again_moves_the_deadline_and_keeps_the_rest() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let waiting = announcement(&keys, "repo", 100, "");
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 9_000))
        .await
        .expect("put");
    let mut again = purgatory_row(&waiting, "repo", 20_000);
    again.received_at_ms = 7_000;
    store.purgatory_put(&again).await.expect("put again");

    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].expires_at_ms, 20_000);
    assert_eq!(rows[0].received_at_ms, 1_000);
}

#[tokio::test]
async fn purgatory_replace_swaps_the_old_row_for_the_new() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let old = announcement(&keys, "repo", 100, "old");
    let new = announcement(&keys, "repo", 200, "new");
    let bystander = announcement(&keys, "other", 100, "");
    store
        .purgatory_put(&purgatory_row(&old, "repo", 5_000))
        .await
        .expect("put");
    store
        .purgatory_put(&purgatory_row(&bystander, "other", 5_000))
        .await
        .expect("put");
    store
        .purgatory_replace(&purgatory_row(&new, "repo", 6_000), &old.id)
        .await
        .expect("replace");

    let ids: BTreeSet<EventId> = store
        .purgatory_all()
        .await
        .expect("rows")
        .iter()
        .map(|r| r.event.id)
        .collect();
    assert_eq!(ids, BTreeSet::from([new.id, bystander.id]));
}

#[tokio::test]
async fn purgatory_replace_that_fails_keeps_the_old_row() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let old = announcement(&keys, "repo", 100, "old");
    let new = announcement(&keys, "repo", 200, "new");
    store
        .purgatory_put(&purgatory_row(&old, "repo", 5_000))
        .await
        .expect("put");
    store
        .purgatory_put(&purgatory_row(&new, "repo", 5_000))
        .await
        .expect("put");
    // `new` is already there, so the insert half fails; the delete half must not stick.
    let result = store
        .purgatory_replace(&purgatory_row(&new, "repo", 6_000), &old.id)
        .await;
    assert!(result.is_err());
    assert_eq!(store.purgatory_all().await.expect("rows").len(), 2);
}

#[tokio::test]
async fn purgatory_remove_deletes_only_that_row() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let one = announcement(&keys, "one", 100, "");
    let two = announcement(&keys, "two", 100, "");
    for (e, d) in [(&one, "one"), (&two, "two")] {
        store
            .purgatory_put(&purgatory_row(e, d, 5_000))
            .await
            .expect("put");
    }
    store.purgatory_remove(&one.id).await.expect("remove");
    // Removing what is not there is not an error.
    store.purgatory_remove(&one.id).await.expect("remove again");

    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.id, two.id);
}

#[tokio::test]
async fn release_stores_the_event_and_removes_its_purgatory_row() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let waiting = announcement(&keys, "repo", 100, "");
    let other = announcement(&keys, "other", 100, "");
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 5_000))
        .await
        .expect("put");
    store
        .purgatory_put(&purgatory_row(&other, "other", 5_000))
        .await
        .expect("put");

    assert_eq!(
        store.release(&waiting).await.expect("release"),
        SaveEventStatus::Success
    );
    assert_eq!(
        store.event_by_id(&waiting.id).await.expect("lookup").as_ref(),
        Some(&waiting)
    );
    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event.id, other.id);
}

#[tokio::test]
async fn release_follows_replacement_rules_and_still_clears_the_row() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let newer = announcement(&keys, "repo", 200, "served");
    let waiting = announcement(&keys, "repo", 100, "stale");
    save(&store, &newer).await;
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 5_000))
        .await
        .expect("put");

    assert_eq!(
        store.release(&waiting).await.expect("release"),
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    assert!(!store.contains(&waiting.id).await.expect("contains"));
    assert!(store.contains(&newer.id).await.expect("contains"));
    assert!(store.purgatory_all().await.expect("rows").is_empty());
}

#[tokio::test]
async fn release_of_a_deleted_event_is_refused_and_clears_the_row() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let waiting = announcement(&keys, "repo", 100, "");
    store
        .purgatory_put(&purgatory_row(&waiting, "repo", 5_000))
        .await
        .expect("put");
    let a = coordinate(ANNOUNCEMENT, &keys, "repo");
    save(&store, &event(&keys, DELETION, 150, "", &[&["a", &a]])).await;

    assert_eq!(
        store.release(&waiting).await.expect("release"),
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
    assert!(!store.contains(&waiting.id).await.expect("contains"));
    assert!(store.purgatory_all().await.expect("rows").is_empty());
}

#[tokio::test]
async fn a_cached_address_follows_replacement_deletion_and_release() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let kind = Kind::from(ANNOUNCEMENT);
    let author = keys.public_key();
    let at = || store.at_address(kind, &author, "repo");
    // Asked twice while empty: the second answer comes from the cache.
    assert!(at().await.expect("lookup").is_none());
    assert!(at().await.expect("lookup").is_none());

    let first = announcement(&keys, "repo", 100, "");
    store.release(&first).await.expect("release");
    assert_eq!(at().await.expect("lookup").map(|e| e.id), Some(first.id));

    let newer = announcement(&keys, "repo", 200, "");
    save(&store, &newer).await;
    assert_eq!(at().await.expect("lookup").map(|e| e.id), Some(newer.id));

    let coordinate = format!("{ANNOUNCEMENT}:{}:repo", keys.public_key().to_hex());
    save(&store, &event(&keys, DELETION, 300, "", &[&["a", &coordinate]])).await;
    assert!(at().await.expect("lookup").is_none(), "deleted address");
}

#[tokio::test]
async fn reopening_rebuilds_the_id_filters_from_the_tables() {
    let Some(db) = temp_db(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let target = event(&keys, 1, 100, "", &[]);
    let reply = event(&keys, 1, 101, "", &[&["e", &target.id.to_hex()]]);
    {
        let store = Store::open(&db.url).await.expect("open");
        save(&store, &reply).await;
    }
    let store = Store::open(&db.url).await.expect("reopen");
    assert!(store.contains(&reply.id).await.expect("contains"));
    assert!(store.is_referenced(&target.id).await.expect("lookup"));
    assert!(!store.contains(&target.id).await.expect("contains"));
    assert_eq!(
        save(&store, &reply).await,
        SaveEventStatus::Rejected(RejectedReason::Duplicate)
    );
}

// ---- restart ------------------------------------------------------------------------------

#[tokio::test]
async fn events_tombstones_and_purgatory_rows_survive_reopening_the_file() {
    let Some(db) = temp_db(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let note = event(&keys, 1, 100, "", &[&["t", "x"]]);
    let repo = announcement(&keys, "repo", 200, "");
    let doomed = event(&keys, 1, 101, "", &[]);
    let waiting = announcement(&keys, "waiting", 300, "");
    {
        let store = Store::open(&db.url).await.expect("open");
        save(&store, &note).await;
        save(&store, &repo).await;
        save(&store, &doomed).await;
        save(
            &store,
            &event(&keys, DELETION, 400, "", &[&["e", &doomed.id.to_hex()]]),
        )
        .await;
        let mut row = purgatory_row(&waiting, "waiting", 123_456_789);
        row.received_at_ms = 42;
        row.source = "sync".to_owned();
        store.purgatory_put(&row).await.expect("put");
    }

    let store = Store::open(&db.url).await.expect("reopen");
    assert_eq!(
        store.event_by_id(&note.id).await.expect("lookup").as_ref(),
        Some(&note)
    );
    let tagged = Filter::new().custom_tag(tag(Alphabet::T), "x");
    assert_eq!(ids_of(&store, tagged).await, vec![note.id]);
    // The address still holds its event, so an older one is still refused.
    assert_eq!(
        save(&store, &announcement(&keys, "repo", 150, "")).await,
        SaveEventStatus::Rejected(RejectedReason::Replaced)
    );
    assert!(store.is_deleted(&doomed).await.expect("is_deleted"));
    assert_eq!(
        save(&store, &doomed).await,
        SaveEventStatus::Rejected(RejectedReason::Deleted)
    );
    let rows = store.purgatory_all().await.expect("rows");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, waiting);
    assert_eq!(rows[0].identifier, "waiting");
    assert_eq!(rows[0].received_at_ms, 42);
    assert_eq!(rows[0].expires_at_ms, 123_456_789);
    assert_eq!(rows[0].source, "sync");
}

// ---- concurrency --------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_saves_are_all_committed() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let events: Vec<Event> = (0..200)
        .map(|i| event(&keys, 1, 1_000 + i, "", &[&["t", "load"]]))
        .collect();
    let tasks: Vec<_> = events
        .iter()
        .cloned()
        .map(|e| {
            let store = store.clone();
            tokio::spawn(async move { store.save_event(&e).await })
        })
        .collect();
    for task in tasks {
        let status = task.await.expect("join").expect("save");
        assert_eq!(status, SaveEventStatus::Success);
    }
    assert_eq!(store.event_count().await.expect("count"), 200);
}

/// Saves queued together are applied together (one transaction; on PostgreSQL plain events in
/// one multi-row insert), with the answers one by one would give: the same id twice is stored
/// once, a deleted id stays deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_answers_each_save_as_if_alone() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let deleted = event(&keys, 1, 100, "deleted before", &[]);
    save(&store, &event(&keys, DELETION, 200, "", &[&["e", &deleted.id.to_hex()]])).await;
    let twice = event(&keys, 1, 101, "twice", &[&["t", "batch"]]);
    let others: Vec<Event> = (0..50)
        .map(|i| event(&keys, 1, 1_000 + i, "", &[&["t", "batch"]]))
        .collect();
    let mut batch = vec![twice.clone(), deleted.clone(), twice.clone()];
    batch.extend(others.iter().cloned());
    let tasks: Vec<_> = batch
        .into_iter()
        .map(|e| {
            let store = store.clone();
            tokio::spawn(async move { store.save_event(&e).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.expect("join").expect("save"));
    }
    let success = statuses.iter().filter(|s| **s == SaveEventStatus::Success).count();
    assert_eq!(success, 51, "{statuses:?}");
    assert!(statuses.contains(&SaveEventStatus::Rejected(RejectedReason::Duplicate)));
    assert!(statuses.contains(&SaveEventStatus::Rejected(RejectedReason::Deleted)));
    let tagged = Filter::new().custom_tag(tag(Alphabet::T), "batch");
    assert_eq!(ids_of(&store, tagged).await.len(), 51);
    assert!(!store.contains(&deleted.id).await.expect("contains"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn saves_running_alongside_releases_and_purgatory_writes_do_not_fail() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let keys = Keys::generate();
    let notes: Vec<Event> = (0..150).map(|i| event(&keys, 1, 1_000 + i, "", &[])).collect();
    let waiting: Vec<Event> = (0..150)
        .map(|i| announcement(&keys, &format!("repo-{i}"), 1_000, ""))
        .collect();
    for (i, e) in waiting.iter().enumerate() {
        store
            .purgatory_put(&purgatory_row(e, &format!("repo-{i}"), 5_000))
            .await
            .expect("put");
    }

    let mut tasks = Vec::new();
    for (note, parked) in notes.into_iter().zip(waiting.iter().cloned()) {
        let saver = store.clone();
        tasks.push(tokio::spawn(async move { saver.save_event(&note).await }));
        let releaser = store.clone();
        tasks.push(tokio::spawn(async move { releaser.release(&parked).await }));
    }
    for task in tasks {
        let status = task
            .await
            .expect("join")
            .expect("no database error under contention");
        assert_eq!(status, SaveEventStatus::Success);
    }
    assert_eq!(store.event_count().await.expect("count"), 300);
    assert!(store.purgatory_all().await.expect("rows").is_empty());
}

// ---- the relay adapter --------------------------------------------------------------------

#[tokio::test]
async fn the_relay_adapter_answers_from_the_store() {
    let Some((_db, store)) = temp_store(BACKEND).await else {
        return;
    };
    let db = SqlDatabase::new(store.clone(), crate::live::Live::new());
    let keys = Keys::generate();
    let note = event(&keys, 1, 100, "", &[]);
    let absent = event(&keys, 1, 101, "", &[]);
    assert_eq!(
        db.save_event(&note).await.expect("save"),
        SaveEventStatus::Success
    );

    assert_eq!(
        db.check_id(&note.id).await.expect("check"),
        DatabaseEventStatus::Saved
    );
    assert_eq!(
        db.check_id(&absent.id).await.expect("check"),
        DatabaseEventStatus::NotExistent
    );
    assert_eq!(db.count(Filter::new()).await.expect("count"), 1);
    let found: Vec<EventId> = db
        .query(Filter::new().author(keys.public_key()))
        .await
        .expect("query")
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(found, vec![note.id]);
    db.delete(Filter::new().id(note.id)).await.expect("delete");
    assert!(!store.contains(&note.id).await.expect("contains"));
}
