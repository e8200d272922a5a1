//! End-to-end: the event sync (GRASP-02) between real servers on loopback: graspd, a second
//! graspd on 127.0.0.2, a plain Nostr relay (nostr-relay-builder's `LocalRelay`, which answers
//! NIP-77) and the same relay behind a proxy that does not speak NIP-77 and slips garbage into
//! its answers.

mod support;

use nostr::{Event, Keys};
use serde_json::json;
use support::relays::{Proxy, ProxyOptions, plain_relay};
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

/// Event sync on, plans recomputed every second, loopback allowed, git-data sync prompt.
const EVENT_SYNC: &[&str] = &[
    "--sync-private-addresses",
    "--event-sync-refresh-secs",
    "1",
    "--event-sync-timeout-secs",
    "5",
    "--sync-default-delay-secs",
    "0",
    "--sync-immediate-delay-ms",
    "100",
];
const ON: &[(&str, &str)] = &[("GRASPD_NO_EVENT_SYNC", "false")];

/// An announcement of `identifier` listing `servers` (clone URLs and relays) and `relays`.
fn announcement_listing(owner: &Keys, servers: &[&Server], identifier: &str, relays: &[&str]) -> Event {
    let mut clone = vec!["clone".to_owned()];
    clone.extend(servers.iter().map(|s| s.clone_url(owner, identifier)));
    let mut relay_tag = vec!["relays".to_owned()];
    relay_tag.extend(servers.iter().map(|s| s.ws_url()));
    relay_tag.extend(relays.iter().map(|r| r.to_string()));
    let clone: Vec<&str> = clone.iter().map(String::as_str).collect();
    let relay_tag: Vec<&str> = relay_tag.iter().map(String::as_str).collect();
    event(owner, 30617, "", &[&["d", identifier], &clone, &relay_tag])
}

/// A repository announced on `server` and released by a push of one commit on `main`.
async fn hosted(
    server: &Server,
    owner: &Keys,
    identifier: &str,
    relays: &[&str],
) -> (tempfile::TempDir, String) {
    let ann = announcement_listing(owner, &[server], identifier, relays);
    let (work, oid) = work_tree_with_commit("first");
    let st = state(owner, identifier, &[("refs/heads/main", &oid)], Some("main"));
    let mut client = server.client().await;
    assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    git(
        work.path(),
        &["push", "-q", &server.clone_url(owner, identifier), "main"],
    );
    (work, oid)
}

async fn publish_to(url: &str, events: &[&Event]) {
    let mut client = Client::connect(url).await;
    for event in events {
        let ok = client.publish(event).await;
        assert!(ok.accepted, "{ok:?}");
    }
}

async fn served(server: &Server, filter: serde_json::Value) -> Vec<String> {
    server.client().await.ids(filter).await
}

async fn wait_served(server: &Server, what: &str, id: &Event) {
    let want = id.id.to_hex();
    eventually(what, || {
        let want = want.clone();
        async move { served(server, json!({"ids": [want]})).await.len() == 1 }
    })
    .await;
}

fn issue(author: &Keys, owner: &Keys, identifier: &str, title: &str) -> Event {
    event(
        author,
        1621,
        title,
        &[&["a", &coordinate(owner, identifier)], &["subject", title]],
    )
}

fn comment(author: &Keys, root: &Event) -> Event {
    let root_id = root.id.to_hex();
    event(
        author,
        1111,
        "same here",
        &[&["E", &root_id], &["K", "1621"], &["e", &root_id], &["k", "1621"]],
    )
}

#[tokio::test]
async fn issues_and_comments_published_only_to_another_relay_reach_graspd() {
    let (_relay, relay_url) = plain_relay().await;
    // Published before graspd hosts anything: found by the history pass (NIP-77).
    let owner = Keys::generate();
    let early = issue(&Keys::generate(), &owner, "net", "before");
    publish_to(&relay_url, &[&early]).await;

    let a = Server::start_with_env(EVENT_SYNC, ON);
    hosted(&a, &owner, "net", &[&relay_url]).await;
    wait_served(&a, "the issue published earlier elsewhere reaches graspd", &early).await;
    let nip11 = http(a.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
    let doc: serde_json::Value = serde_json::from_str(&nip11.body).expect("json");
    assert_eq!(
        doc["supported_grasps"],
        json!(["GRASP-01", "GRASP-02", "GRASP-03"])
    );
    assert!(
        doc.get("curation").is_none(),
        "no archive mode, no curation: {doc}"
    );
    assert!(
        doc["supported_nips"]
            .as_array()
            .is_some_and(|n| n.contains(&json!(77)))
    );

    // Published while graspd follows the relay live, and a comment on it.
    let late = issue(&Keys::generate(), &owner, "net", "after");
    let reply = comment(&Keys::generate(), &late);
    publish_to(&relay_url, &[&late, &reply]).await;
    wait_served(&a, "a live issue reaches graspd", &late).await;
    wait_served(&a, "the comment on it follows, by its root", &reply).await;
    assert!(a.log().contains("event sync: connected"), "{}", a.log());

    // Operators see the relay, how it is synced and what came of it. The sync counts an event
    // once its save returns, a moment after a REQ can find it.
    let relay_status = |status: &serde_json::Value| {
        status["relays"]
            .as_array()
            .and_then(|relays| {
                relays
                    .iter()
                    .find(|r| r["url"].as_str() == Some(relay_url.trim_end_matches('/')))
                    .or(relays.first())
            })
            .cloned()
            .unwrap_or_default()
    };
    eventually("the sync counts the three events it took", || {
        let accepted = relay_status(&a.status_json(&["sync"]))["accepted"].as_u64();
        async move { accepted.unwrap_or(0) >= 3 }
    })
    .await;
    let status = a.status_json(&["sync"]);
    assert_eq!(status["event_sync_enabled"], true);
    let relay = relay_status(&status);
    assert_eq!(relay["connected"], true, "{status}");
    assert_eq!(relay["method"], "nip77", "{status}");
    assert!(relay["accepted"].as_u64().unwrap_or(0) >= 3, "{status}");
    // The announcement lists graspd itself too: it never syncs from itself.
    let own = a.ws_url();
    assert!(
        status["relays"].as_array().is_some_and(|relays| relays
            .iter()
            .all(|r| !own.starts_with(r["url"].as_str().unwrap_or("-")))),
        "{status}"
    );
}

#[tokio::test]
async fn over_the_relay_cap_graspd_follows_the_relay_serving_the_most_repositories() {
    let (_busy, busy_url) = plain_relay().await;
    let (_quiet, quiet_url) = plain_relay().await;
    let flags: Vec<&str> = EVENT_SYNC
        .iter()
        .copied()
        .chain(["--event-sync-max-relays", "1"])
        .collect();
    let a = Server::start_with_env(&flags, ON);
    let owner = Keys::generate();
    hosted(&a, &owner, "capped-one", &[&quiet_url, &busy_url]).await;
    hosted(&a, &owner, "capped-two", &[&busy_url]).await;
    let on_busy = issue(&Keys::generate(), &owner, "capped-one", "on the busy relay");
    publish_to(&busy_url, &[&on_busy]).await;
    wait_served(&a, "the relay serving two repositories is followed", &on_busy).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = a.status_json(&["sync"]);
        let urls: Vec<&str> = status["relays"]
            .as_array()
            .map(|relays| relays.iter().filter_map(|r| r["url"].as_str()).collect())
            .unwrap_or_default();
        if urls == [busy_url.trim_end_matches('/')] && a.log().contains("--event-sync-max-relays") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "one relay followed, the cap logged: {status}\n{}",
            a.log()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// `status sync`'s entry for the only relay shows it paused by a rate limit for about a minute.
async fn wait_paused_by_rate_limit(server: &Server) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let status = server.status_json(&["sync"]);
        let relay = &status["relays"][0];
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let paused = relay["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("rate-limited"))
            && relay["retry_at"].as_u64().is_some_and(|at| at >= now + 55);
        if paused {
            assert_eq!(relay["connected"], false, "{status}");
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the relay is paused a minute: {status}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_rate_limit_notice_pauses_the_relay_for_at_least_a_minute() {
    let (_relay, upstream) = plain_relay().await;
    let proxy = Proxy::start(
        upstream.clone(),
        ProxyOptions {
            notice_on_live: Some("rate-limited: slow down".to_owned()),
            ..ProxyOptions::default()
        },
    )
    .await;
    let a = Server::start_with_env(EVENT_SYNC, ON);
    let owner = Keys::generate();
    let early = issue(&Keys::generate(), &owner, "limited", "before");
    publish_to(&upstream, &[&early]).await;
    hosted(&a, &owner, "limited", &[&proxy.url]).await;
    // The history pass runs; the live subscription is answered with the NOTICE.
    wait_served(&a, "the history pass brings the issue", &early).await;
    wait_paused_by_rate_limit(&a).await;
}

#[tokio::test]
async fn a_history_req_closed_as_rate_limited_pauses_the_relay_too() {
    let (_relay, upstream) = plain_relay().await;
    let proxy = Proxy::start(
        upstream,
        ProxyOptions {
            refuse_negentropy: true,
            closed_on_history: Some("rate-limited: too many REQs".to_owned()),
            ..ProxyOptions::default()
        },
    )
    .await;
    let a = Server::start_with_env(EVENT_SYNC, ON);
    hosted(&a, &Keys::generate(), "closed", &[&proxy.url]).await;
    wait_paused_by_rate_limit(&a).await;
}

#[tokio::test]
async fn an_archive_server_mirrors_a_repository_that_does_not_list_it() {
    let a = Server::start_with_env(EVENT_SYNC, ON);
    let owner = Keys::generate();
    let ann = announcement_listing(&owner, &[&a], "mirrored", &[]);
    let (work, oid) = work_tree_with_commit("first");
    let st = state(&owner, "mirrored", &[("refs/heads/main", &oid)], Some("main"));
    let mut to_a = a.client().await;
    assert_eq!(to_a.publish(&ann).await.message, PURGATORY_OK);
    assert_eq!(to_a.publish(&st).await.message, PURGATORY_OK);
    git(
        work.path(),
        &["push", "-q", &a.clone_url(&owner, "mirrored"), "main"],
    );
    wait_served(&a, "A serves its state", &st).await;

    let mut flags = EVENT_SYNC.to_vec();
    flags.extend(["--archive-all", "--archive-deny", "secret"]);
    let b = Server::start_full_on("127.0.0.2", &flags, ON);
    let nip11 = http(b.addr, "GET", "/", &[("Accept", "application/nostr+json")]);
    let doc: serde_json::Value = serde_json::from_str(&nip11.body).expect("json");
    assert!(
        doc["supported_grasps"]
            .as_array()
            .is_some_and(|g| g.contains(&json!("GRASP-05"))),
        "{doc}"
    );
    assert!(
        doc["curation"]
            .as_str()
            .is_some_and(|c| c.contains("every repository")),
        "{doc}"
    );

    // The announcement lists A only; B archives it.
    let mut to_b = b.client().await;
    assert_eq!(to_b.publish(&ann).await.message, PURGATORY_OK);
    wait_served(
        &b,
        "B syncs the state from A's relay and the git data from A",
        &st,
    )
    .await;
    wait_served(&b, "and then serves the announcement", &ann).await;
    assert_eq!(
        git(
            &b.repo_path(&owner, "mirrored"),
            &["rev-parse", "refs/heads/main"]
        ),
        oid
    );
    // Status says which repositories are archives, and why.
    let archive_of = |server: &Server| {
        server.status_json(&["repos"])["repositories"][0]["archive"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(archive_of(&b).as_deref(), Some("--archive-all"));
    assert_eq!(archive_of(&a).as_deref(), Some(""), "hosted, not archived, on A");
    // A deny rule wins, even for an announcement that lists B.
    let denied = announcement_listing(&owner, &[&b], "secret", &[]);
    let answer = to_b.publish(&denied).await;
    assert!(
        !answer.accepted && answer.message.contains("does not host or archive"),
        "{answer:?}"
    );
    assert!(!b.repo_path(&owner, "secret").exists());
}

#[tokio::test]
async fn after_a_lost_connection_graspd_reconnects_and_resumes_with_since() {
    let (_relay, upstream) = plain_relay().await;
    let proxy = Proxy::start(upstream.clone(), ProxyOptions::default()).await;
    let a = Server::start_with_env(EVENT_SYNC, ON);
    let owner = Keys::generate();
    hosted(&a, &owner, "resume", &[&proxy.url]).await;
    let first = issue(&Keys::generate(), &owner, "resume", "first");
    publish_to(&upstream, &[&first]).await;
    wait_served(&a, "live before the cut", &first).await;
    // The relay goes away; what is published meanwhile comes with the resumed history.
    proxy.cut_connections();
    let meanwhile = issue(&Keys::generate(), &owner, "resume", "meanwhile");
    publish_to(&upstream, &[&meanwhile]).await;
    wait_served(
        &a,
        "an event published while disconnected arrives after the reconnection",
        &meanwhile,
    )
    .await;
    let status = a.status_json(&["sync"]);
    assert!(
        status["relays"][0]["errors"].as_u64().unwrap_or(0) >= 1,
        "the lost connection shows: {status}"
    );
}

#[tokio::test]
async fn a_comment_published_only_to_a_participants_outbox_relay_reaches_graspd() {
    let (_listed, listed_url) = plain_relay().await;
    let (_outbox, outbox_url) = plain_relay().await;
    let a = Server::start_with_env(EVENT_SYNC, ON);
    let owner = Keys::generate();
    hosted(&a, &owner, "outbox", &[&listed_url]).await;
    // A participant opens an issue here, and says (on the repository's relay) where they write.
    let participant = Keys::generate();
    let opened = issue(&participant, &owner, "outbox", "opened here");
    assert!(a.client().await.publish(&opened).await.accepted);
    let relay_list = event(&participant, 10002, "", &[&["r", &outbox_url]]);
    publish_to(&listed_url, &[&relay_list]).await;
    // Their reply goes to their own relay only.
    let reply = comment(&participant, &opened);
    publish_to(&outbox_url, &[&reply]).await;
    wait_served(
        &a,
        "the reply on the participant's outbox relay reaches graspd",
        &reply,
    )
    .await;
    let status = a.status_json(&["sync"]);
    let urls: Vec<&str> = status["relays"]
        .as_array()
        .map(|relays| relays.iter().filter_map(|r| r["url"].as_str()).collect())
        .unwrap_or_default();
    assert!(urls.iter().any(|u| outbox_url.starts_with(u)), "{status}");
}

#[tokio::test]
async fn a_bootstrap_relay_brings_announcements_that_list_this_server() {
    let (_index, index_url) = plain_relay().await;
    let mut flags = EVENT_SYNC.to_vec();
    flags.extend(["--event-sync-bootstrap-relay", &index_url]);
    let a = Server::start_with_env(&flags, ON);
    // Published to the index relay only: one announcement lists graspd, one does not.
    let owner = Keys::generate();
    let listing = announcement_listing(&owner, &[&a], "found", &[]);
    let other = Keys::generate();
    let elsewhere = event(
        &other,
        30617,
        "",
        &[
            &["d", "elsewhere"],
            &["clone", "https://git.example/x.git"],
            &["relays", "wss://relay.example"],
        ],
    );
    publish_to(&index_url, &[&listing, &elsewhere]).await;
    let repo = a.repo_path(&owner, "found");
    eventually(
        "the announcement listing graspd is taken, and its repository created",
        || {
            let repo = repo.clone();
            async move { repo.join("HEAD").is_file() }
        },
    )
    .await;
    let waiting = a.status_json(&["purgatory"]);
    let ids: Vec<&str> = waiting["entries"]
        .as_array()
        .map(|entries| entries.iter().filter_map(|e| e["event_id"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(ids, vec![listing.id.to_hex()], "{waiting}");
    assert!(!a.repo_path(&other, "elsewhere").exists());
}

#[tokio::test]
async fn a_state_published_only_to_b_reaches_a_and_a_fetches_its_git_data_from_b() {
    let a = Server::start_full_on("127.0.0.1", EVENT_SYNC, ON);
    let b = Server::start_on("127.0.0.2", EVENT_SYNC);
    let owner = Keys::generate();
    let ann = announcement_listing(&owner, &[&a, &b], "shared", &[]);
    let (work, oid) = work_tree_with_commit("first");
    let first = state(&owner, "shared", &[("refs/heads/main", &oid)], Some("main"));
    for server in [&a, &b] {
        let mut client = server.client().await;
        assert_eq!(client.publish(&ann).await.message, PURGATORY_OK);
        assert_eq!(client.publish(&first).await.message, PURGATORY_OK);
        // Pushed to A before B hears of the state: B's first fetch from A then finds it.
        if server.addr == a.addr {
            git(
                work.path(),
                &["push", "-q", &a.clone_url(&owner, "shared"), "main"],
            );
        }
    }
    wait_served(&b, "B fetches the first commit from A (git-data sync)", &first).await;
    // A second commit, its state and its push go to B only.
    std::fs::write(work.path().join("second.txt"), "second").expect("write");
    git(work.path(), &["add", "."]);
    git(work.path(), &["commit", "-q", "-m", "second"]);
    let tip = git(work.path(), &["rev-parse", "HEAD"]);
    let second = state_at(
        &owner,
        "shared",
        &[("refs/heads/main", &tip)],
        Some("main"),
        nostr::Timestamp::from_secs(first.created_at.as_secs() + 1),
    );
    assert_eq!(b.client().await.publish(&second).await.message, PURGATORY_OK);
    git(
        work.path(),
        &["push", "-q", &b.clone_url(&owner, "shared"), "main"],
    );

    wait_served(
        &a,
        "A syncs the state from B and releases it once it fetched the commit",
        &second,
    )
    .await;
    assert_eq!(
        git(&a.repo_path(&owner, "shared"), &["rev-parse", "refs/heads/main"]),
        tip
    );
}

#[tokio::test]
async fn a_relay_without_nip_77_is_synced_by_req_and_its_garbage_changes_nothing() {
    let (_relay, upstream) = plain_relay().await;
    let owner = Keys::generate();
    let stranger = Keys::generate();
    let forged = {
        let real = issue(&stranger, &owner, "plain", "forged");
        let mut value = serde_json::to_value(&real).expect("json");
        value["content"] = json!("changed after signing");
        value
    };
    let unrelated = issue(&stranger, &Keys::generate(), "elsewhere", "not hosted here");
    let proxy = Proxy::start(
        upstream.clone(),
        ProxyOptions {
            refuse_negentropy: true,
            extra_events: vec![forged.clone(), serde_json::to_value(&unrelated).expect("json")],
            ..ProxyOptions::default()
        },
    )
    .await
    .url;
    let early = issue(&Keys::generate(), &owner, "plain", "before");
    publish_to(&upstream, &[&early]).await;

    let a = Server::start_with_env(EVENT_SYNC, ON);
    hosted(&a, &owner, "plain", &[&proxy]).await;
    wait_served(&a, "history by REQ", &early).await;
    let late = issue(&Keys::generate(), &owner, "plain", "after");
    publish_to(&upstream, &[&late]).await;
    wait_served(&a, "live by REQ", &late).await;

    assert!(a.log().contains("no NIP-77 here"), "{}", a.log());
    let status = a.status_json(&["sync"]);
    assert_eq!(status["relays"][0]["method"], "req", "{status}");
    assert!(
        status["relays"][0]["refused"].as_u64().unwrap_or(0) >= 2,
        "forged and unrelated: {status}"
    );
    let forged_id = forged["id"].as_str().expect("id").to_owned();
    assert!(
        served(&a, json!({"ids": [forged_id]})).await.is_empty(),
        "a forged event is not stored"
    );
    assert!(
        served(&a, json!({"ids": [unrelated.id.to_hex()]}))
            .await
            .is_empty(),
        "the policy still decides"
    );
    // graspd keeps serving.
    assert_eq!(served(&a, json!({"kinds": [1621]})).await.len(), 2);
}

#[tokio::test]
async fn graspd_answers_nip_77_without_purgatory_or_deleted_events_and_survives_bad_messages() {
    use nostr_sdk::relay::{Relay, SyncOptions};

    let a = Server::start();
    let owner = Keys::generate();
    let (_work, _oid) = hosted(&a, &owner, "neg", &[]).await;
    let author = Keys::generate();
    let kept = issue(&author, &owner, "neg", "kept");
    let deleted = issue(&author, &owner, "neg", "deleted");
    let deletion = event(&author, 5, "", &[&["e", &deleted.id.to_hex()], &["k", "1621"]]);
    let waiting = state_at(
        &owner,
        "neg",
        &[("refs/heads/main", &"b".repeat(40))],
        Some("main"),
        nostr::Timestamp::from_secs(nostr::Timestamp::now().as_secs() + 5),
    );
    let mut client = a.client().await;
    for event in [&kept, &deleted, &deletion] {
        assert!(client.publish(event).await.accepted);
    }
    assert_eq!(client.publish(&waiting).await.message, PURGATORY_OK);
    let stored: std::collections::HashSet<String> = served(&a, json!({})).await.into_iter().collect();
    assert!(stored.contains(&kept.id.to_hex()) && !stored.contains(&deleted.id.to_hex()));

    // nostr-sdk's negentropy client, with nothing on its side: graspd lists what it serves.
    let relay = Relay::new(nostr::RelayUrl::parse(&a.ws_url()).expect("url"));
    relay.try_connect().await.expect("connect");
    let summary = relay
        .sync(nostr::Filter::new())
        .items(Vec::new())
        .opts(SyncOptions::new().dry_run())
        .await
        .expect("negentropy sync");
    let listed: std::collections::HashSet<String> = summary.remote.iter().map(|id| id.to_hex()).collect();
    assert_eq!(listed, stored, "graspd lists exactly what it serves");
    assert!(!listed.contains(&waiting.id.to_hex()), "nothing from purgatory");
    assert!(!listed.contains(&deleted.id.to_hex()), "nothing deleted");
    relay.shutdown();

    // Bad messages get NEG-ERR and the connection stays up; sessions are capped.
    client.send_raw(r#"["NEG-OPEN","bad",{},"zz"]"#).await;
    let reply = client.next().await;
    assert_eq!(reply[0], "NEG-ERR", "{reply}");
    assert_eq!(reply[1], "bad");
    client.send_raw(r#"["NEG-MSG","nobody","61"]"#).await;
    let reply = client.next().await;
    assert_eq!(
        (reply[0].as_str(), reply[1].as_str()),
        (Some("NEG-ERR"), Some("nobody")),
        "{reply}"
    );
    for n in 0..5 {
        // An empty negentropy message of protocol version 1 (0x61).
        client
            .send_raw(&json!(["NEG-OPEN", format!("s{n}"), {}, "61"]).to_string())
            .await;
        let reply = client.next().await;
        let expected = if n < 4 { "NEG-MSG" } else { "NEG-ERR" };
        assert_eq!(reply[0], expected, "session {n}: {reply}");
    }
    assert_eq!(
        client.ids(json!({"ids": [kept.id.to_hex()]})).await.len(),
        1,
        "still serving"
    );
}

/// The event-sync benchmark (`cargo bench -p graspd --bench event_sync`), bounded: both methods
/// bring every event, and NIP-77 moves fewer bytes than REQ when most events are shared.
#[tokio::test]
async fn bounded_sync_benchmark_brings_everything_and_negentropy_moves_less() {
    use support::sync_bench::run;
    let n = 600;
    let neg = run(n, n * 99 / 100, true).await;
    let req = run(n, n * 99 / 100, false).await;
    assert_eq!((neg.synced, req.synced), (6, 6));
    assert!(
        neg.bytes < req.bytes,
        "NIP-77 {} bytes, REQ {} bytes",
        neg.bytes,
        req.bytes
    );
    let empty = run(n, 0, true).await;
    assert_eq!(empty.synced, n);
}
