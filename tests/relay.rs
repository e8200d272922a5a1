//! End-to-end: the GRASP-01 relay, purgatory and the HTTP front, against the real binary.

mod support;

use futures_util::{SinkExt, StreamExt};
use nostr::{Event, Keys, Timestamp};
use serde_json::json;
use support::*;
use tokio_tungstenite::tungstenite::Message;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

// ---- NIP-11, pages, CORS (GRASP-01 [26]-[30], [58], [64]-[67]) ---------------------------------

#[test]
fn nip11_document_advertises_grasp_01_and_limits() {
    let server = Server::start();
    let response = http(server.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/nostr+json"));
    assert_eq!(response.header("access-control-allow-origin"), Some("*"));
    let doc: serde_json::Value = serde_json::from_str(&response.body).expect("json");
    assert_eq!(doc["supported_grasps"], json!(["GRASP-01"]));
    assert!(
        doc["repo_acceptance_criteria"]
            .as_str()
            .is_some_and(|s| s.contains(&server.domain()))
    );
    assert!(doc.get("curation").is_none());
    // NIP-34; NIP-40 expiration; NIP-42 AUTH for NIP-70 protected events.
    for nip in [34, 40, 42, 70] {
        assert!(
            doc["supported_nips"]
                .as_array()
                .is_some_and(|n| n.contains(&json!(nip))),
            "{doc}"
        );
    }
    assert!(doc["limitation"]["max_message_length"].as_u64().is_some());
}

#[test]
fn plain_get_of_root_is_an_html_page() {
    let server = Server::start();
    let response = http(server.addr, "GET", "/", &[]);
    assert_eq!(response.status, 200);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/html"))
    );
    assert!(response.body.contains("GRASP"));
}

#[test]
fn options_anywhere_is_204_and_every_response_has_cors_headers() {
    let server = Server::start();
    for path in ["/", "/nothing", "/npub1xyz/repo.git/info/refs"] {
        let response = http(server.addr, "OPTIONS", path, &[]);
        assert_eq!(response.status, 204, "{path}");
        assert_eq!(response.header("access-control-allow-origin"), Some("*"));
        assert_eq!(response.header("access-control-allow-methods"), Some("GET, POST"));
        assert_eq!(
            response.header("access-control-allow-headers"),
            Some("Content-Type")
        );
    }
    let missing = http(server.addr, "GET", "/no/such/thing", &[]);
    assert_eq!(missing.status, 404);
    assert_eq!(missing.header("access-control-allow-origin"), Some("*"));
    let wrong_method = http(server.addr, "POST", "/healthz", &[]);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn repository_page_for_hosted_repo_and_404_for_unknown_or_traversal() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ok = client.publish(&announcement(&owner, &server, "pages")).await;
    assert!(ok.accepted, "{ok:?}");

    let page = http(server.addr, "GET", &format!("/{}/pages.git", npub(&owner)), &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("pages") && page.body.contains("gitworkshop.dev"));
    assert_eq!(
        http(server.addr, "GET", &format!("/{}/pages", npub(&owner)), &[]).status,
        200
    );

    let unknown = http(server.addr, "GET", &format!("/{}/nope.git", npub(&owner)), &[]);
    assert_eq!(unknown.status, 404);
    assert!(unknown.body.contains("Not found"));
    for path in [
        format!("/{}/..%2f..%2fetc.git", npub(&owner)),
        format!("/{}/%2e%2e.git/info/refs", npub(&owner)),
        "/npub1notakey/pages.git".to_owned(),
    ] {
        assert_eq!(http(server.addr, "GET", &path, &[]).status, 404, "{path}");
    }
}

// ---- announcements (GRASP-01 [9], [22]) ------------------------------------------------------

#[tokio::test]
async fn new_announcement_is_held_in_purgatory_and_provisions_the_repository() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "hello");
    let ok = client.publish(&ann).await;
    assert!(ok.accepted);
    assert_eq!(ok.message, PURGATORY_OK);

    let repo = server.repo_path(&owner, "hello");
    assert!(
        repo.join("HEAD").is_file(),
        "bare repository created at {}",
        repo.display()
    );
    for key in [
        "uploadpack.allowTipSHA1InWant",
        "uploadpack.allowReachableSHA1InWant",
        "uploadpack.allowFilter",
        "http.receivepack",
    ] {
        assert_eq!(git(&repo, &["config", "--get", key]), "true", "{key}");
    }
    assert_eq!(git(&repo, &["rev-parse", "--is-bare-repository"]), "true");
    // Not served while in purgatory.
    assert!(client.ids(json!({"kinds": [30617]})).await.is_empty());
    assert!(client.ids(json!({"ids": [ann.id.to_hex()]})).await.is_empty());
}

#[tokio::test]
async fn announcement_that_does_not_list_this_server_is_refused() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let clone = format!("http://{}/{}/x.git", server.domain(), npub(&owner));
    let ws = server.ws_url();
    let elsewhere: [&[&str]; 3] = [
        &["d", "x"],
        &["clone", "https://elsewhere.example/x.git"],
        &["relays", "wss://elsewhere.example"],
    ];
    let no_relay: [&[&str]; 2] = [&["d", "x"], &["clone", &clone]];
    let no_clone: [&[&str]; 2] = [&["d", "x"], &["relays", &ws]];
    let cases: [(&[&[&str]], &str); 3] = [
        (&elsewhere, "both"),
        (&no_relay, "'relays'"),
        (&no_clone, "'clone'"),
    ];
    for (tags, mentions) in cases {
        let ok = client.publish(&event(&owner, 30617, "", tags)).await;
        assert!(!ok.accepted);
        assert!(
            ok.message.starts_with("blocked:") && ok.message.contains(mentions),
            "{}",
            ok.message
        );
    }
    assert!(
        !server.git_root().join(npub(&owner)).exists(),
        "no repository created"
    );
}

#[tokio::test]
async fn trailing_slash_and_percent_encoding_in_urls_are_tolerated() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let clone = format!("http://{}/{}/my%20repo.git/", server.domain(), npub(&owner));
    let relay = format!("{}/", server.ws_url());
    let ann = event(
        &owner,
        30617,
        "",
        &[&["d", "my repo"], &["clone", &clone], &["relays", &relay]],
    );
    let ok = client.publish(&ann).await;
    assert!(ok.accepted, "{ok:?}");
    assert!(server.repo_path(&owner, "my repo").join("HEAD").is_file());
}

#[tokio::test]
async fn identifier_that_could_escape_the_git_root_is_refused_and_touches_no_file() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    for bad in ["../evil", "a/b", ".hidden", "..", "a\u{1}b", ""] {
        let clone = format!("http://{}/{}/x.git", server.domain(), npub(&owner));
        let ann = event(
            &owner,
            30617,
            "",
            &[&["d", bad], &["clone", &clone], &["relays", &server.ws_url()]],
        );
        let ok = client.publish(&ann).await;
        assert!(!ok.accepted, "{bad:?}");
        assert!(ok.message.starts_with("invalid:"), "{bad:?}: {}", ok.message);
    }
    let long = "x".repeat(300);
    let ann = event(&owner, 30617, "", &[&["d", &long], &["relays", &server.ws_url()]]);
    assert!(!client.publish(&ann).await.accepted);
    assert!(!server.data.path().join("evil").exists());
    assert!(!server.git_root().join(npub(&owner)).exists());
}

#[tokio::test]
async fn older_announcement_after_a_newer_one_is_never_served() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let now = Timestamp::now().as_secs();
    let newer = announcement_with(&owner, &server, "ord", &[], Timestamp::from(now));
    let older = announcement_with(&owner, &server, "ord", &[], Timestamp::from(now - 100));
    assert!(client.publish(&newer).await.accepted);
    let ok = client.publish(&older).await;
    assert!(!ok.accepted, "{ok:?}");
}

// ---- states (GRASP-01 [22], [36], [39]) ------------------------------------------------------

#[tokio::test]
async fn state_for_an_unknown_repository_or_by_a_stranger_is_refused() {
    let server = Server::start();
    let owner = Keys::generate();
    let stranger = Keys::generate();
    let mut client = server.client().await;
    let oid = "a".repeat(40);
    let ok = client
        .publish(&state(
            &owner,
            "nowhere",
            &[("refs/heads/main", &oid)],
            Some("main"),
        ))
        .await;
    assert!(!ok.accepted && ok.message.starts_with("blocked:"), "{ok:?}");

    assert!(
        client
            .publish(&announcement(&owner, &server, "mine"))
            .await
            .accepted
    );
    let ok = client
        .publish(&state(
            &stranger,
            "mine",
            &[("refs/heads/main", &oid)],
            Some("main"),
        ))
        .await;
    assert!(!ok.accepted && ok.message.contains("maintainer"), "{ok:?}");
}

#[tokio::test]
async fn state_whose_commits_are_missing_waits_in_purgatory_unserved() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "wait"))
            .await
            .accepted
    );
    let st = state(
        &owner,
        "wait",
        &[("refs/heads/main", &"b".repeat(40))],
        Some("main"),
    );
    let ok = client.publish(&st).await;
    assert!(ok.accepted);
    assert_eq!(ok.message, PURGATORY_OK);
    assert!(client.ids(json!({"kinds": [30618]})).await.is_empty());
    // Publishing it again says it is already held.
    let again = client.publish(&st).await;
    assert!(
        again.accepted && again.message.starts_with("duplicate:"),
        "{again:?}"
    );
}

#[tokio::test]
async fn maintainer_listed_by_the_owner_may_publish_a_state() {
    let server = Server::start();
    let owner = Keys::generate();
    let maintainer = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement_with(&owner, &server, "team", &[&maintainer], Timestamp::now());
    assert!(client.publish(&ann).await.accepted);
    let ok = client
        .publish(&state(
            &maintainer,
            "team",
            &[("refs/heads/main", &"c".repeat(40))],
            None,
        ))
        .await;
    assert!(ok.accepted, "{ok:?}");
    assert_eq!(ok.message, PURGATORY_OK);
}

#[tokio::test]
async fn state_whose_commits_are_on_disk_is_applied_at_once_and_releases_the_announcement() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "present");
    assert!(client.publish(&ann).await.accepted);

    // Git data arrives by a channel graspd does not watch (a local push straight into the bare
    // repository), then a state names it.
    let (work, oid) = work_tree_with_commit("first");
    let repo = server.repo_path(&owner, "present");
    push_without_hooks(
        work.path(),
        &repo,
        &["main:refs/heads/main", "main:refs/heads/old"],
    );

    let st = state(
        &owner,
        "present",
        &[("refs/heads/main", &oid), ("refs/heads/dev", &oid)],
        Some("dev"),
    );
    let ok = client.publish(&st).await;
    assert!(ok.accepted && ok.message.is_empty(), "{ok:?}");

    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
    assert_eq!(client.ids(json!({"kinds": [30617]})).await, vec![ann.id.to_hex()]);
    assert_eq!(git(&repo, &["rev-parse", "refs/heads/dev"]), oid);
    assert_eq!(git(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/dev");
    let refs = git(&repo, &["for-each-ref", "--format=%(refname)"]);
    assert!(
        !refs.contains("refs/heads/old"),
        "ref not in the state is deleted: {refs}"
    );
}

#[tokio::test]
async fn empty_state_is_applied_at_once() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "empty"))
            .await
            .accepted
    );
    let st = state(&owner, "empty", &[], None);
    let ok = client.publish(&st).await;
    assert!(ok.accepted && ok.message.is_empty(), "{ok:?}");
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
}

#[tokio::test]
async fn newer_state_replaces_an_older_one_waiting_in_purgatory() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "repl"))
            .await
            .accepted
    );
    let now = Timestamp::now().as_secs();
    let old = state_at(
        &owner,
        "repl",
        &[("refs/heads/main", &"1".repeat(40))],
        None,
        Timestamp::from(now - 10),
    );
    let new = state_at(
        &owner,
        "repl",
        &[("refs/heads/main", &"2".repeat(40))],
        None,
        Timestamp::from(now),
    );
    assert_eq!(client.publish(&old).await.message, PURGATORY_OK);
    assert_eq!(client.publish(&new).await.message, PURGATORY_OK);
    // The older one no longer waits: publishing it again is refused as superseded.
    let again = client.publish(&old).await;
    assert!(!again.accepted, "{again:?}");
}

// ---- related events (GRASP-01 [13]) ----------------------------------------------------------

#[tokio::test]
async fn issues_comments_and_chains_on_accepted_repositories_are_accepted() {
    let server = Server::start();
    let owner = Keys::generate();
    let user = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "issues"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "issues");

    let note = event(&user, 1, "quoted before it arrived", &[]);
    let issue = event(
        &user,
        1621,
        "it breaks",
        &[&["a", &coord], &["subject", "bug"], &["q", &note.id.to_hex()]],
    );
    let ok = client.publish(&issue).await;
    assert!(ok.accepted, "{ok:?}");
    let comment = event(
        &owner,
        1111,
        "thanks",
        &[&["E", &issue.id.to_hex()], &["K", "1621"]],
    );
    assert!(client.publish(&comment).await.accepted);
    let reply = event(&user, 1111, "welcome", &[&["e", &comment.id.to_hex()]]);
    assert!(client.publish(&reply).await.accepted, "comment on a comment");
    // Tagged by an accepted event: the quoted note is accepted when it arrives.
    assert!(client.publish(&note).await.accepted, "tagged-by rule");

    let served = client.ids(json!({"kinds": [1, 1111, 1621]})).await;
    assert_eq!(served.len(), 4);
}

/// Reads messages until `done` says the answer is complete; returns them all.
async fn read_until(
    client: &mut Client,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> Vec<serde_json::Value> {
    let mut messages = Vec::new();
    loop {
        let message = client.next().await;
        let finished = done(&message);
        messages.push(message);
        if finished {
            return messages;
        }
    }
}

fn events_of(messages: &[serde_json::Value], sub: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m[0] == "EVENT" && m[1] == sub)
        .map(|m| m[2]["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn live_events_reach_the_subscriptions_they_match_until_closed_or_replaced() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut publisher = server.client().await;
    assert!(
        publisher
            .publish(&announcement(&owner, &server, "live"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "live");
    let elsewhere = format!("30617:{}:elsewhere", Keys::generate().public_key().to_hex());

    let mut reader = server.client().await;
    for req in [
        json!(["REQ", "repo", {"kinds": [1621], "#a": [coord], "limit": 0}]),
        // NIP-50: the relay answers the stored part (nothing: the store does not search), the
        // bridge the live one.
        json!(["REQ", "search", {"search": "NEEDLE", "limit": 0}]),
        json!(["REQ", "replaced", {"kinds": [1621], "#a": [coord]}]),
        json!(["REQ", "replaced", {"kinds": [1], "#a": [coord], "limit": 0}]),
        json!(["REQ", "closed", {"kinds": [1621], "limit": 0}]),
        json!(["CLOSE", "closed"]),
        // Ephemeral events are the relay builder's to deliver.
        json!(["REQ", "ephemeral", {"kinds": [20001], "limit": 0}]),
    ] {
        reader.send_raw(&req.to_string()).await;
    }
    read_until(&mut reader, |m| m[0] == "EOSE" && m[1] == "ephemeral").await;
    let mut other = server.client().await;
    for req in [
        json!(["REQ", "other", {"kinds": [1621], "#a": [elsewhere], "limit": 0}]),
        json!(["REQ", "marker", {"kinds": [1], "#a": [coord], "limit": 0}]),
    ] {
        other.send_raw(&req.to_string()).await;
    }
    read_until(&mut other, |m| m[0] == "EOSE" && m[1] == "marker").await;

    let issue = event(&owner, 1621, "a needle in a haystack", &[&["a", &coord]]);
    assert!(publisher.publish(&issue).await.accepted);
    let ephemeral = event(&owner, 20001, "typing", &[&["a", &coord]]);
    publisher
        .send_raw(&json!(["EVENT", serde_json::to_value(&ephemeral).expect("json")]).to_string())
        .await;
    // Published after the issue: each connection gets its live events in that order.
    let marker = event(&owner, 1, "marker", &[&["a", &coord]]);
    assert!(publisher.publish(&marker).await.accepted);

    let (marker_id, ephemeral_id) = (marker.id.to_hex(), ephemeral.id.to_hex());
    let (mut saw_marker, mut saw_ephemeral) = (false, false);
    let messages = read_until(&mut reader, |m| {
        saw_marker |= m[0] == "EVENT" && m[1] == "replaced" && m[2]["id"] == marker_id.as_str();
        saw_ephemeral |= m[0] == "EVENT" && m[1] == "ephemeral" && m[2]["id"] == ephemeral_id.as_str();
        saw_marker && saw_ephemeral
    })
    .await;
    let issue_id = issue.id.to_hex();
    assert_eq!(
        events_of(&messages, "repo"),
        vec![issue_id.clone()],
        "{messages:?}"
    );
    assert_eq!(events_of(&messages, "search"), vec![issue_id], "{messages:?}");
    assert_eq!(
        events_of(&messages, "replaced"),
        vec![marker_id.clone()],
        "{messages:?}"
    );
    assert!(events_of(&messages, "closed").is_empty(), "{messages:?}");
    let delivered = messages
        .iter()
        .find(|m| m[0] == "EVENT" && m[1] == "repo")
        .expect("delivered");
    assert_eq!(
        serde_json::from_value::<Event>(delivered[2].clone()).expect("an event"),
        issue
    );

    let messages = read_until(&mut other, |m| m[0] == "EVENT" && m[1] == "marker").await;
    assert!(events_of(&messages, "other").is_empty(), "{messages:?}");
}

#[tokio::test]
async fn protected_events_are_taken_after_auth_and_reach_live_subscriptions() {
    use nostr::event::FinalizeEvent;
    let server = Server::start();
    let owner = Keys::generate();
    let mut publisher = server.client().await;
    assert!(
        publisher
            .publish(&announcement(&owner, &server, "protected"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "protected");
    let mut reader = server.client().await;
    reader
        .send_raw(&json!(["REQ", "p", {"#a": [coord], "kinds": [1621, 20001], "limit": 0}]).to_string())
        .await;
    read_until(&mut reader, |m| m[0] == "EOSE" && m[1] == "p").await;

    // NIP-70: the relay asks the author to authenticate first (NIP-42).
    let protected = event(&owner, 1621, "protected", &[&["a", &coord], &["-"]]);
    let refused = publisher.publish(&protected).await;
    assert!(!refused.accepted);
    assert!(
        refused.message.starts_with("auth-required:"),
        "{}",
        refused.message
    );
    publisher
        .send_raw(&json!(["EVENT", serde_json::to_value(&protected).expect("json")]).to_string())
        .await;
    let challenge = read_until(&mut publisher, |m| m[0] == "AUTH")
        .await
        .pop()
        .and_then(|m| m[1].as_str().map(str::to_owned))
        .expect("a challenge");
    read_until(&mut publisher, |m| m[0] == "OK").await;
    let relay = nostr::RelayUrl::parse(&server.ws_url()).expect("relay url");
    let auth = nostr::EventBuilder::auth(challenge, relay)
        .finalize(&owner)
        .expect("sign");
    publisher
        .send_raw(&json!(["AUTH", serde_json::to_value(&auth).expect("json")]).to_string())
        .await;
    let answer = read_until(&mut publisher, |m| m[0] == "OK").await;
    assert_eq!(answer.last().map(|m| &m[2]), Some(&json!(true)), "{answer:?}");

    assert!(publisher.publish(&protected).await.accepted);
    let ephemeral = event(&owner, 20001, "typing", &[&["a", &coord], &["-"]]);
    assert!(publisher.publish(&ephemeral).await.accepted);
    let (protected_id, ephemeral_id) = (protected.id.to_hex(), ephemeral.id.to_hex());
    let messages = read_until(&mut reader, |m| {
        m[0] == "EVENT" && m[2]["id"] == ephemeral_id.as_str()
    })
    .await;
    assert_eq!(
        events_of(&messages, "p"),
        vec![protected_id.clone(), ephemeral_id],
        "{messages:?}"
    );
    // Stored: a new REQ finds the protected event, not the ephemeral one.
    assert_eq!(
        reader.ids(json!({"#a": [coord], "kinds": [1621, 20001]})).await,
        vec![protected_id]
    );
}

#[tokio::test]
async fn a_req_gets_stored_events_newest_first_then_each_live_event_once() {
    let server = Server::start_with(&["--max-subscriptions", "2", "--max-filter-limit", "4"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "reads"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "reads");
    let base = Timestamp::now().as_secs() - 1000;
    let mut issues = Vec::new();
    for i in 0..8 {
        let issue = event_at(
            &owner,
            1621,
            &format!("issue {i}"),
            &[&["a", &coord]],
            Timestamp::from_secs(base + i),
        );
        assert!(client.publish(&issue).await.accepted);
        issues.push(issue.id.to_hex());
    }
    let newest = |n: usize| issues.iter().rev().take(n).cloned().collect::<Vec<_>>();

    // Two overlapping filters: each event once, newest first, each filter with its own limit,
    // capped at --max-filter-limit (4).
    let mut reader = server.client().await;
    let owner_hex = owner.public_key().to_hex();
    reader
        .send_raw(
            &json!(["REQ", "s",
                {"kinds": [1621], "#a": [coord], "limit": 100},
                {"authors": [owner_hex], "kinds": [1621], "limit": 2}])
            .to_string(),
        )
        .await;
    let answer = read_until(&mut reader, |m| m[0] == "EOSE" && m[1] == "s").await;
    assert_eq!(events_of(&answer, "s"), newest(4), "{answer:?}");

    // A live event after EOSE, once.
    let live = event(&owner, 1621, "live", &[&["a", &coord]]);
    assert!(client.publish(&live).await.accepted);
    let message = reader.next().await;
    assert_eq!(
        (&message[0], &message[1], &message[2]["id"]),
        (&json!("EVENT"), &json!("s"), &json!(live.id.to_hex()))
    );

    // An event published right behind a REQ on the same connection reaches that subscription
    // once, stored or live.
    let racing = event(&owner, 1621, "racing", &[&["a", &coord]]);
    reader
        .send_raw(&json!(["REQ", "t", {"kinds": [1621], "#a": [coord], "limit": 1}]).to_string())
        .await;
    reader
        .send_raw(&json!(["EVENT", serde_json::to_value(&racing).expect("json")]).to_string())
        .await;
    // A third subscription is over --max-subscriptions: the relay's CLOSED reaches the client.
    reader
        .send_raw(&json!(["REQ", "third", {"kinds": [1621]}]).to_string())
        .await;
    let racing_id = racing.id.to_hex();
    let (mut ok, mut eose, mut closed, mut on_s, mut on_t) = (false, false, false, false, false);
    let messages = read_until(&mut reader, |m| {
        let racing_on = |sub: &str| m[0] == "EVENT" && m[1] == sub && m[2]["id"] == racing_id.as_str();
        ok |= m[0] == "OK" && m[1] == racing_id.as_str();
        eose |= m[0] == "EOSE" && m[1] == "t";
        closed |= m[0] == "CLOSED" && m[1] == "third";
        on_s |= racing_on("s");
        on_t |= racing_on("t");
        ok && eose && closed && on_s && on_t
    })
    .await;
    let closed = messages.iter().find(|m| m[0] == "CLOSED").expect("closed");
    assert!(
        closed[2].as_str().unwrap_or_default().contains("too many REQs"),
        "{closed}"
    );
    assert!(
        !messages.iter().any(|m| m[0] == "EOSE" && m[1] == "third"),
        "{messages:?}"
    );
    let on_t = events_of(&messages, "t");
    assert_eq!(
        on_t.iter().filter(|id| **id == racing_id).count(),
        1,
        "{messages:?}"
    );

    // A REQ by ids is closed once every id is found, its subscription on the relay too: two
    // more subscriptions fit under --max-subscriptions (2) afterwards.
    reader.send_raw(&json!(["CLOSE", "s"]).to_string()).await;
    reader.send_raw(&json!(["CLOSE", "t"]).to_string()).await;
    reader
        .send_raw(&json!(["REQ", "ids", {"ids": [issues[0], issues[1]]}]).to_string())
        .await;
    let answer = read_until(&mut reader, |m| m[0] == "CLOSED" && m[1] == "ids").await;
    assert_eq!(
        events_of(&answer, "ids"),
        vec![issues[1].clone(), issues[0].clone()],
        "{answer:?}"
    );
    assert!(
        answer.iter().any(|m| m[0] == "EOSE" && m[1] == "ids"),
        "{answer:?}"
    );
    let missing = "00".repeat(32);
    reader
        .send_raw(&json!(["REQ", "partly", {"ids": [issues[2], missing]}]).to_string())
        .await;
    let answer = read_until(&mut reader, |m| {
        m[1] == "partly" && (m[0] == "EOSE" || m[0] == "CLOSED")
    })
    .await;
    assert_eq!(
        answer.last().map(|m| &m[0]),
        Some(&json!("EOSE")),
        "one id missing: stays open: {answer:?}"
    );
    reader
        .send_raw(&json!(["REQ", "last", {"kinds": [1621], "limit": 1}]).to_string())
        .await;
    let answer = read_until(&mut reader, |m| {
        m[1] == "last" && (m[0] == "EOSE" || m[0] == "CLOSED")
    })
    .await;
    assert_eq!(answer.last().map(|m| &m[0]), Some(&json!("EOSE")), "{answer:?}");
}

#[tokio::test]
async fn a_stored_event_sent_again_is_a_duplicate_and_a_forged_copy_is_invalid() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "again"))
            .await
            .accepted
    );
    let issue = event(&owner, 1621, "twice", &[&["a", &coordinate(&owner, "again")]]);
    let first = client.publish(&issue).await;
    assert!(first.accepted && first.message.is_empty(), "{first:?}");
    let again = client.publish(&issue).await;
    assert!(
        again.accepted && again.message.starts_with("duplicate:"),
        "{again:?}"
    );

    // The same id with other content: not a duplicate, the id does not match.
    let mut forged = serde_json::to_value(&issue).expect("json");
    forged["content"] = json!("changed");
    client.send_raw(&json!(["EVENT", forged]).to_string()).await;
    let reply = client.next().await;
    assert_eq!(
        (&reply[0], &reply[1], &reply[2]),
        (&json!("OK"), &json!(issue.id.to_hex()), &json!(false)),
        "{reply}"
    );
    assert!(
        reply[3].as_str().unwrap_or_default().starts_with("invalid:"),
        "{reply}"
    );
    let served = client.query(json!({"ids": [issue.id.to_hex()]})).await;
    assert_eq!(served.len(), 1);
    assert_eq!(served[0]["content"], "twice");
}

#[tokio::test]
async fn unrelated_and_foreign_events_are_refused_with_a_reason() {
    let server = Server::start();
    let user = Keys::generate();
    let mut client = server.client().await;
    let orphan = event(&user, 1, "hello", &[]);
    let ok = client.publish(&orphan).await;
    assert!(!ok.accepted && ok.message.starts_with("blocked:"), "{ok:?}");

    let foreign = coordinate(&Keys::generate(), "elsewhere");
    let ok = client
        .publish(&event(&user, 1621, "bug", &[&["a", &foreign]]))
        .await;
    assert!(!ok.accepted && ok.message.contains("not hosted"), "{ok:?}");
    let ok = client
        .publish(&event(&user, 1, "look", &[&["q", &foreign]]))
        .await;
    assert!(!ok.accepted, "quoting only another server's repository: {ok:?}");
}

// ---- NIP-09 ----------------------------------------------------------------------------------

#[tokio::test]
async fn deletion_removes_a_pending_state_and_a_stored_issue_and_they_stay_deleted() {
    let mut server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "del"))
            .await
            .accepted
    );
    let st = state(&owner, "del", &[("refs/heads/main", &"d".repeat(40))], None);
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let issue = event(&owner, 1621, "x", &[&["a", &coordinate(&owner, "del")]]);
    assert!(client.publish(&issue).await.accepted);

    let deletion = event(
        &owner,
        5,
        "",
        &[&["e", &st.id.to_hex()], &["e", &issue.id.to_hex()]],
    );
    assert!(client.publish(&deletion).await.accepted);
    assert!(client.ids(json!({"kinds": [1621]})).await.is_empty());

    // The deleted state no longer waits: it is not a duplicate but refused as deleted...
    let again = client.publish(&st).await;
    assert!(!again.accepted, "{again:?}");
    // ...and that survives a restart.
    server.restart();
    let mut client = server.client().await;
    assert!(!client.publish(&st).await.accepted);
    assert!(!client.publish(&issue).await.accepted);
}

#[tokio::test]
async fn deletion_by_coordinate_removes_the_pending_state() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "coord"))
            .await
            .accepted
    );
    let st = state(&owner, "coord", &[("refs/heads/main", &"e".repeat(40))], None);
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    let a = format!("30618:{}:coord", owner.public_key().to_hex());
    let deletion = event(&owner, 5, "", &[&["a", &a]]);
    assert!(client.publish(&deletion).await.accepted);
    assert!(!client.publish(&st).await.accepted, "deleted by address");
}

// ---- durability and expiry -------------------------------------------------------------------

#[tokio::test]
async fn purgatory_survives_kill_9_and_stays_hidden() {
    let mut server = Server::start();
    let owner = Keys::generate();
    let ann = announcement(&owner, &server, "durable");
    let st = state(&owner, "durable", &[("refs/heads/main", &"f".repeat(40))], None);
    {
        let mut client = server.client().await;
        assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
        assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    }
    server.kill9();
    server.restart();
    let mut client = server.client().await;
    for ev in [&ann, &st] {
        let again = client.publish(ev).await;
        assert!(
            again.accepted && again.message.starts_with("duplicate:"),
            "still held: {again:?}"
        );
    }
    assert!(client.ids(json!({"kinds": [30617, 30618]})).await.is_empty());
    assert!(server.repo_path(&owner, "durable").join("HEAD").is_file());
}

#[tokio::test]
async fn every_event_answered_ok_survives_kill_9() {
    let mut server = Server::start();
    let owner = Keys::generate();
    let coordinate = coordinate(&owner, "kept");
    let issues: Vec<Event> = (0..60)
        .map(|i| event(&owner, 1621, &format!("issue {i}"), &[&["a", &coordinate]]))
        .collect();
    {
        let mut client = server.client().await;
        assert_eq!(
            client
                .publish(&announcement(&owner, &server, "kept"))
                .await
                .message,
            PURGATORY_OK
        );
        // Sent back to back, so the writer commits them in groups.
        for issue in &issues {
            client
                .send_raw(&json!(["EVENT", serde_json::to_value(issue).expect("json")]).to_string())
                .await;
        }
        let mut accepted = 0;
        while accepted < issues.len() {
            let reply = client.next().await;
            if reply[0] == "OK" {
                assert_eq!(reply[2], true, "{reply}");
                accepted += 1;
            }
        }
    }
    server.kill9();
    server.restart();
    let mut client = server.client().await;
    let mut stored = client.ids(json!({"kinds": [1621]})).await;
    stored.sort();
    let mut sent: Vec<String> = issues.iter().map(|e| e.id.to_hex()).collect();
    sent.sort();
    assert_eq!(stored, sent);
}

#[tokio::test]
async fn expired_announcement_deletes_its_empty_repository() {
    // Long enough that the repository is still there when the OK has been read, however loaded
    // the machine.
    let server = Server::start_with(&["--purgatory-expiry-secs", "3"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(&owner, &server, "gone"))
            .await
            .message,
        PURGATORY_OK
    );
    let repo = server.repo_path(&owner, "gone");
    assert!(repo.exists());
    eventually("the empty repository is deleted", || {
        let repo = repo.clone();
        async move { !repo.exists() }
    })
    .await;
    let page = http(server.addr, "GET", &format!("/{}/gone.git", npub(&owner)), &[]);
    assert_eq!(page.status, 404);
}

#[tokio::test]
async fn deadlines_survive_a_restart() {
    let mut server = Server::start_with(&["--purgatory-expiry-secs", "2"]);
    let owner = Keys::generate();
    {
        let mut client = server.client().await;
        assert_eq!(
            client
                .publish(&announcement(&owner, &server, "later"))
                .await
                .message,
            PURGATORY_OK
        );
    }
    server.kill9();
    server.restart();
    let repo = server.repo_path(&owner, "later");
    eventually("expiry after restart deletes the repository", || {
        let repo = repo.clone();
        async move { !repo.exists() }
    })
    .await;
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let mut server = Server::start();
    assert!(server.terminate(), "clean exit on SIGTERM: {}", server.log());
}

// ---- bad input and limits --------------------------------------------------------------------

#[tokio::test]
async fn garbage_gets_a_notice_and_the_connection_stays_up() {
    let server = Server::start();
    let mut client = server.client().await;
    for garbage in ["not json", "{}", "[]", "[42]", r#"["NOPE"]"#] {
        client.send_raw(garbage).await;
        let reply = client.next().await;
        assert_eq!(reply[0], "NOTICE", "{garbage}: {reply}");
        assert!(reply[1].as_str().is_some_and(|m| m.starts_with("invalid:")));
    }
    client.send_raw(r#"["REQ","bad",{"kinds":"nope"}]"#).await;
    let reply = client.next().await;
    assert_eq!(reply[0], "CLOSED");
    assert_eq!(reply[1], "bad");
    // Still connected and working.
    assert!(client.query(json!({"kinds": [1]})).await.is_empty());
}

#[tokio::test]
async fn bad_signature_bad_id_and_oversized_events_are_invalid() {
    let server = Server::start_with(&["--max-event-bytes", "2000"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    let good = announcement(&owner, &server, "sig");

    let mut tampered = serde_json::to_value(&good).expect("json");
    tampered["content"] = json!("changed after signing");
    client.send_raw(&json!(["EVENT", tampered]).to_string()).await;
    let reply = client.next().await;
    assert_eq!(reply[0], "OK");
    assert_eq!(reply[2], false);
    assert!(
        reply[3].as_str().is_some_and(|m| m.starts_with("invalid:")),
        "{reply}"
    );

    let other = Keys::generate();
    let mut forged = serde_json::to_value(&good).expect("json");
    forged["sig"] = serde_json::to_value(event(&other, 1, "x", &[])).expect("json")["sig"].clone();
    client.send_raw(&json!(["EVENT", forged]).to_string()).await;
    let reply = client.next().await;
    assert_eq!(reply[2], false);
    assert!(
        reply[3].as_str().is_some_and(|m| m.starts_with("invalid:")),
        "{reply}"
    );

    // Strict encoding: the library would read a 66-character pubkey ("02" + the key) as the key
    // and store the event under it; graspd refuses it first.
    let issue = event(&owner, 1, "lenient", &[]);
    for (field, value) in [
        ("pubkey", format!("02{}", issue.pubkey.to_hex())),
        ("id", issue.id.to_hex().to_uppercase()),
        ("sig", format!("{}00", issue.sig)),
    ] {
        let mut odd = serde_json::to_value(&issue).expect("json");
        odd[field] = json!(value);
        client.send_raw(&json!(["EVENT", odd]).to_string()).await;
        let reply = client.next().await;
        assert_eq!(reply[2], false, "{field}: {reply}");
        assert!(
            reply[3]
                .as_str()
                .is_some_and(|m| m.starts_with(&format!("invalid: '{field}' must be exactly"))),
            "{field}: {reply}"
        );
    }
    assert!(client.query(json!({"ids": [issue.id.to_hex()]})).await.is_empty());

    // The signature is checked once the policy would take the event: a forged issue on a hosted
    // repository is invalid and not stored; a forged note that would be refused anyway is
    // refused for what it is, without the signature check.
    let host = Keys::generate();
    assert!(
        client
            .publish(&announcement(&host, &server, "hosted"))
            .await
            .accepted
    );
    let taken = event(
        &other,
        1621,
        "forged issue",
        &[&["a", &coordinate(&host, "hosted")]],
    );
    let unrelated = event(&other, 1, "forged note", &[]);
    for (original, answer) in [
        (&taken, "invalid: invalid event signature"),
        (&unrelated, "blocked:"),
    ] {
        let mut forged = serde_json::to_value(original).expect("json");
        forged["sig"] = serde_json::to_value(event(&owner, 1, "y", &[])).expect("json")["sig"].clone();
        client.send_raw(&json!(["EVENT", forged]).to_string()).await;
        let reply = client.next().await;
        assert_eq!(reply[2], false, "{reply}");
        assert!(
            reply[3].as_str().is_some_and(|m| m.starts_with(answer)),
            "{reply}"
        );
        assert!(
            client
                .query(json!({"ids": [original.id.to_hex()]}))
                .await
                .is_empty()
        );
    }
    assert!(
        client.publish(&taken).await.accepted,
        "the genuine issue is taken"
    );

    let big = event(
        &owner,
        1621,
        &"x".repeat(5000),
        &[&["a", &coordinate(&owner, "sig")]],
    );
    let ok = client.publish(&big).await;
    assert!(!ok.accepted && ok.message.contains("larger than"), "{ok:?}");
    assert!(!server.git_root().join(npub(&owner)).exists(), "nothing changed");
}

#[tokio::test]
async fn a_burst_beyond_the_token_bucket_is_rate_limited() {
    let server = Server::start_with(&["--event-burst", "3", "--events-per-minute", "1"]);
    let user = Keys::generate();
    let mut client = server.client().await;
    let mut answers = Vec::new();
    for i in 0..5 {
        answers.push(
            client
                .publish(&event(&user, 1, &format!("n{i}"), &[]))
                .await
                .message,
        );
    }
    assert!(
        answers[..3].iter().all(|m| m.starts_with("blocked:")),
        "{answers:?}"
    );
    assert!(
        answers[3..].iter().all(|m| m.starts_with("rate-limited:")),
        "{answers:?}"
    );
}

#[tokio::test]
async fn default_limits_let_a_client_publish_a_burst_of_100_events() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "burst"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "burst");
    for i in 0..100 {
        let ok = client
            .publish(&event(&owner, 1621, &format!("issue {i}"), &[&["a", &coord]]))
            .await;
        assert!(ok.accepted, "event {i}: {ok:?}");
    }
    assert_eq!(
        client.query(json!({"kinds": [1621], "limit": 500})).await.len(),
        100
    );
}

#[tokio::test]
async fn connections_beyond_the_limit_are_closed_and_the_others_keep_working() {
    let server = Server::start_with(&["--max-connections", "3"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        let mut client = server.client().await;
        assert!(client.query(json!({"kinds": [1], "limit": 1})).await.is_empty());
        open.push(client);
    }
    // A flood: every connection past the limit is closed right after its upgrade, whether it
    // asks for events or only publishes one.
    let user = Keys::generate();
    for i in 0..20 {
        let (mut ws, _) = tokio_tungstenite::connect_async(server.ws_url().as_str())
            .await
            .expect("upgrade answered");
        let message = if i % 2 == 0 {
            json!(["REQ", "x", {"kinds": [1], "limit": 1}])
        } else {
            json!(["EVENT", event(&user, 1, &format!("flood {i}"), &[])])
        };
        let _ = ws.send(Message::Text(message.to_string().into())).await;
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next())
            .await
            .expect("closed in time");
        assert!(
            !matches!(next, Some(Ok(Message::Text(_)))),
            "a connection past the limit was served: {next:?}"
        );
    }
    for client in &mut open {
        assert!(client.query(json!({"kinds": [1], "limit": 1})).await.is_empty());
    }
    // A place freed is taken again.
    drop(open.pop());
    eventually("a new connection is served once one closed", || async {
        let Ok((mut ws, _)) = tokio_tungstenite::connect_async(server.ws_url().as_str()).await else {
            return false;
        };
        let req = json!(["REQ", "y", {"kinds": [1], "limit": 1}]).to_string();
        if ws.send(Message::Text(req.into())).await.is_err() {
            return false;
        }
        matches!(
            tokio::time::timeout(std::time::Duration::from_secs(5), ws.next()).await,
            Ok(Some(Ok(Message::Text(_))))
        )
    })
    .await;
}

#[tokio::test]
async fn a_locked_database_is_a_clear_error_and_nothing_is_lost_once_it_frees() {
    let server = Server::start();
    let owner = Keys::generate();
    let mut client = server.client().await;
    let ann = announcement(&owner, &server, "locked");
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    let issue = event(
        &owner,
        1621,
        "while locked",
        &[&["a", &coordinate(&owner, "locked")]],
    );
    // Another process holds the database's write lock longer than graspd waits for it.
    let db = rusqlite::Connection::open(server.data.path().join("graspd.db")).expect("open db");
    db.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    let answer = client.publish(&issue).await;
    assert!(!answer.accepted, "{answer:?}");
    assert!(answer.message.starts_with("error:"), "{answer:?}");
    db.execute_batch("COMMIT").expect("unlock");
    drop(db);
    // Nothing half-done: the same event is taken once the lock is gone, and served once.
    let again = client.publish(&issue).await;
    assert!(again.accepted, "{again:?}");
    assert_eq!(
        client.ids(json!({"ids": [issue.id.to_hex()]})).await,
        vec![issue.id.to_hex()]
    );
}

/// A client that asks for a lot and never reads: graspd stops sending when the socket is full
/// (the bridge waits on the client, the relay on the bridge) instead of queueing the answers in
/// memory, and everyone else is served meanwhile.
#[tokio::test]
async fn a_reader_that_never_reads_does_not_grow_the_server() {
    let server = Server::start_with(&["--event-burst", "100000", "--events-per-minute", "1000000"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "big"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "big");
    // 1,500 issues of 4 KiB: one answer to "all of them" is about 6 MiB.
    let body = "x".repeat(4096);
    for i in 0..1500 {
        let issue = event(&Keys::generate(), 1621, &format!("{i} {body}"), &[&["a", &coord]]);
        assert!(client.publish(&issue).await.accepted);
    }
    let before = server.rss_anon_mib().expect("linux /proc");

    // 40 REQs for everything (about 240 MiB of answers), never read.
    let (ws, _) = tokio_tungstenite::connect_async(server.ws_url().as_str())
        .await
        .expect("connect");
    let (mut sink, stream) = ws.split();
    for i in 0..40 {
        let req = json!(["REQ", format!("s{i}"), {"kinds": [1621], "#a": [coord]}]).to_string();
        sink.send(Message::Text(req.into())).await.expect("send");
    }
    // Meanwhile others are served, and the slow reader's answers stay in the pipes.
    for _ in 0..20 {
        let mut other = server.client().await;
        let got = other
            .query(json!({"kinds": [1621], "#a": [coord], "limit": 5}))
            .await;
        assert_eq!(got.len(), 5);
    }
    let after = server.rss_anon_mib().expect("linux /proc");
    eprintln!("anonymous memory: {before:.1} MiB before the unread REQs, {after:.1} MiB after");
    assert!(
        after - before < 64.0,
        "the unread answers are not held in memory: {before:.1} MiB before, {after:.1} MiB after"
    );
    drop(stream);
    drop(sink);
}

/// A client may send events without waiting for each `OK`: the bridge decides several of a
/// connection at once. The `OK`s come back in the order sent; a comment sent right behind its
/// issue, the same issue sent twice, and a deletion sent right behind what it deletes are decided
/// after what they build on; and a REQ sent behind them all sees what they stored.
#[tokio::test]
async fn events_sent_without_waiting_are_answered_in_order_and_see_the_ones_before() {
    let server = Server::start_with(&["--event-burst", "1000", "--events-per-minute", "100000"]);
    let owner = Keys::generate();
    let author = Keys::generate();
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "web"))
            .await
            .accepted
    );
    let coord = coordinate(&owner, "web");

    let mut burst = Vec::new();
    let mut issues = Vec::new();
    for i in 0..20 {
        let issue = event(
            &author,
            1621,
            &format!("issue {i}"),
            &[&["a", &coord], &["subject", "s"]],
        );
        let comment = event(
            &author,
            1111,
            "me too",
            &[&["E", &issue.id.to_hex()], &["K", "1621"]],
        );
        burst.push(issue.clone());
        burst.push(comment);
        issues.push(issue);
    }
    burst.push(issues[0].clone());
    burst.push(event(
        &author,
        5,
        "",
        &[&["e", &issues[1].id.to_hex()], &["k", "1621"]],
    ));
    for event in &burst {
        client
            .send_raw(&json!(["EVENT", serde_json::to_value(event).expect("json")]).to_string())
            .await;
    }
    client
        .send_raw(
            &json!(["REQ", "after", {"kinds": [1111, 1621], "authors": [author.public_key().to_hex()]}])
                .to_string(),
        )
        .await;

    let again = burst.len() - 2;
    for (i, sent) in burst.iter().enumerate() {
        let reply = client.next().await;
        assert_eq!(reply[0], "OK", "message {i}: {reply}");
        assert_eq!(reply[1], sent.id.to_hex(), "OK {i} answers event {i}");
        assert_eq!(reply[2], true, "event {i} (kind {}) accepted: {reply}", sent.kind);
        let message = reply[3].as_str().unwrap_or_default();
        assert_eq!(
            message.starts_with("duplicate:"),
            i == again,
            "event {i}: {reply}"
        );
    }
    let mut stored = Vec::new();
    loop {
        let reply = client.next().await;
        match reply[0].as_str() {
            Some("EVENT") => stored.push(reply[2]["id"].as_str().unwrap_or_default().to_owned()),
            Some("EOSE") => break,
            _ => panic!("unexpected message {reply}"),
        }
    }
    assert_eq!(
        stored.len(),
        39,
        "20 comments and 19 issues (one deleted): {stored:?}"
    );
    assert!(
        !stored.contains(&issues[1].id.to_hex()),
        "the deleted issue is not served"
    );
}
