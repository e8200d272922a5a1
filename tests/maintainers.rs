//! End-to-end: repositories shared by several maintainers, and pull requests at
//! `refs/nostr/<event-id>` in both arrival orders (GRASP-01 [36], [39], [45]).

mod support;

use nostr::{Event, Keys, Timestamp};
use serde_json::json;
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

fn push_to(
    server: &Server,
    work: &std::path::Path,
    owner: &Keys,
    id: &str,
    refspecs: &[&str],
) -> std::process::Output {
    let url = server.clone_url(owner, id);
    let mut args = vec!["push", url.as_str()];
    args.extend_from_slice(refspecs);
    git_output(work, &args)
}

fn ok(output: &std::process::Output) -> bool {
    if !output.status.success() {
        eprintln!("git stderr: {}", String::from_utf8_lossy(&output.stderr));
    }
    output.status.success()
}

fn refs(server: &Server, owner: &Keys, id: &str) -> String {
    git(
        &server.repo_path(owner, id),
        &["for-each-ref", "--format=%(refname) %(objectname)"],
    )
}

fn pull_request(author: &Keys, owner: &Keys, id: &str, tip: &str, kind: u16) -> Event {
    let coord = coordinate(owner, id);
    let p = owner.public_key().to_hex();
    event(
        author,
        kind,
        "please merge",
        &[&["a", &coord], &["p", &p], &["c", tip], &["subject", "change"]],
    )
}

#[tokio::test]
async fn a_maintainers_push_to_their_own_repository_also_updates_the_owners() {
    let server = Server::start();
    let (owner, maintainer) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    let now = Timestamp::now();
    assert!(
        client
            .publish(&announcement_with(&owner, &server, "shared", &[&maintainer], now))
            .await
            .accepted
    );
    assert!(
        client
            .publish(&announcement(&maintainer, &server, "shared"))
            .await
            .accepted
    );
    let (work, oid) = work_tree_with_commit("by the maintainer");
    let st = state(&maintainer, "shared", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);

    assert!(ok(&push_to(
        &server,
        work.path(),
        &maintainer,
        "shared",
        &["main"]
    )));
    let expected = format!("refs/heads/main {oid}");
    assert_eq!(refs(&server, &maintainer, "shared"), expected);
    assert_eq!(
        refs(&server, &owner, "shared"),
        expected,
        "the owner's repository follows its maintainer's state"
    );
    assert_eq!(
        git(&server.repo_path(&owner, "shared"), &["symbolic-ref", "HEAD"]),
        "refs/heads/main"
    );
    // Both announcements are served now that both repositories have data.
    assert_eq!(client.ids(json!({"kinds": [30617]})).await.len(), 2);
}

#[tokio::test]
async fn a_removed_maintainer_no_longer_authorizes_the_owners_repository() {
    let server = Server::start();
    let (owner, maintainer) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    let t0 = Timestamp::now().as_secs() - 100;
    let listed = announcement_with(&owner, &server, "fired", &[&maintainer], Timestamp::from(t0));
    assert!(client.publish(&listed).await.accepted);
    assert!(
        client
            .publish(&announcement(&maintainer, &server, "fired"))
            .await
            .accepted
    );
    let (work, first) = work_tree_with_commit("one");
    let st = state_at(
        &maintainer,
        "fired",
        &[("refs/heads/main", &first)],
        None,
        Timestamp::from(t0 + 1),
    );
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    assert!(ok(&push_to(
        &server,
        work.path(),
        &maintainer,
        "fired",
        &["main"]
    )));
    assert_eq!(refs(&server, &owner, "fired"), format!("refs/heads/main {first}"));

    // The owner's newer announcement drops the maintainer.
    let unlisted = announcement_with(&owner, &server, "fired", &[], Timestamp::from(t0 + 2));
    let answer = client.publish(&unlisted).await;
    assert!(
        answer.accepted && answer.message.is_empty(),
        "replacement of a repository with data is served at once: {answer:?}"
    );

    std::fs::write(work.path().join("two"), "2").expect("write");
    git(work.path(), &["add", "two"]);
    git(work.path(), &["commit", "-q", "-m", "two"]);
    let second = git(work.path(), &["rev-parse", "HEAD"]);
    let st2 = state_at(
        &maintainer,
        "fired",
        &[("refs/heads/main", &second)],
        None,
        Timestamp::from(t0 + 3),
    );
    assert_eq!(client.publish(&st2).await.message, PURGATORY_OK);
    assert!(ok(&push_to(
        &server,
        work.path(),
        &maintainer,
        "fired",
        &["main"]
    )));
    assert_eq!(
        refs(&server, &maintainer, "fired"),
        format!("refs/heads/main {second}")
    );
    assert_eq!(
        refs(&server, &owner, "fired"),
        format!("refs/heads/main {first}"),
        "owner's repository unchanged"
    );
    let refused = push_to(&server, work.path(), &owner, "fired", &["main"]);
    assert!(
        !refused.status.success(),
        "the former maintainer's state does not authorize the owner's repository"
    );
}

#[tokio::test]
async fn maintainer_chains_authorize_recursively() {
    let server = Server::start();
    let (o, m, n) = (Keys::generate(), Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    let now = Timestamp::now();
    assert!(
        client
            .publish(&announcement_with(&o, &server, "chain", &[&m], now))
            .await
            .accepted
    );
    // M's own announcement lists only another server, yet is accepted: M maintains O's repository.
    let elsewhere = event(
        &m,
        30617,
        "",
        &[
            &["d", "chain"],
            &["clone", "https://elsewhere.example/m/chain.git"],
            &["relays", "wss://elsewhere.example"],
            &["maintainers", &n.public_key().to_hex()],
        ],
    );
    let answer = client.publish(&elsewhere).await;
    assert!(answer.accepted, "{answer:?}");
    let (work, oid) = work_tree_with_commit("by n");
    let st = state(&n, "chain", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);
    assert!(ok(&push_to(&server, work.path(), &o, "chain", &["main"])));
    assert_eq!(refs(&server, &o, "chain"), format!("refs/heads/main {oid}"));
    assert_eq!(client.ids(json!({"kinds": [30618]})).await, vec![st.id.to_hex()]);
}

#[tokio::test]
async fn pull_request_event_first_waits_then_its_push_releases_it() {
    let server = Server::start();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "pr1"))
            .await
            .accepted
    );
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&contributor, &owner, "pr1", &tip, 1618);
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    assert!(client.ids(json!({"kinds": [1618]})).await.is_empty());

    // A push at another tip is refused, naming the expected one.
    std::fs::write(work.path().join("x"), "x").expect("write");
    git(work.path(), &["add", "x"]);
    git(work.path(), &["commit", "-q", "-m", "other"]);
    let wrong = push_to(
        &server,
        work.path(),
        &owner,
        "pr1",
        &[&format!("HEAD:refs/nostr/{}", pr.id.to_hex())],
    );
    assert!(!wrong.status.success());
    assert!(
        String::from_utf8_lossy(&wrong.stderr).contains(&tip[..7]),
        "names the expected tip"
    );

    let pushed = push_to(
        &server,
        work.path(),
        &owner,
        "pr1",
        &[&format!("{tip}:refs/nostr/{}", pr.id.to_hex())],
    );
    assert!(ok(&pushed));
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    assert_eq!(
        git(
            &server.repo_path(&owner, "pr1"),
            &["rev-parse", &format!("refs/nostr/{}", pr.id.to_hex())]
        ),
        tip
    );
}

#[tokio::test]
async fn pull_request_git_first_with_the_same_tip_is_released_at_once() {
    let server = Server::start();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "pr2"))
            .await
            .accepted
    );
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&contributor, &owner, "pr2", &tip, 1618);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    assert!(
        ok(&push_to(
            &server,
            work.path(),
            &owner,
            "pr2",
            &[&format!("main:{ref_name}")]
        )),
        "placeholder accepted"
    );
    let answer = client.publish(&pr).await;
    assert!(
        answer.accepted && answer.message.is_empty(),
        "served at once: {answer:?}"
    );
    assert_eq!(client.ids(json!({"kinds": [1618]})).await, vec![pr.id.to_hex()]);
    assert_eq!(
        git(&server.repo_path(&owner, "pr2"), &["rev-parse", &ref_name]),
        tip
    );
}

#[tokio::test]
async fn a_pull_request_ref_lost_from_disk_is_put_back_by_the_refs_check() {
    let server = Server::start_with(&["--sync-refs-check-secs", "1"]);
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "pr-lost"))
            .await
            .accepted
    );
    let (work, tip) = work_tree_with_commit("feature");
    let pr = pull_request(&contributor, &owner, "pr-lost", &tip, 1618);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    assert!(ok(&push_to(
        &server,
        work.path(),
        &owner,
        "pr-lost",
        &[&format!("main:{ref_name}")]
    )));
    assert!(client.publish(&pr).await.accepted);
    let repo = server.repo_path(&owner, "pr-lost");
    assert_eq!(git(&repo, &["rev-parse", &ref_name]), tip);
    // The ref is lost (a restore, a hand edit); the commit is still on disk.
    git(&repo, &["update-ref", "-d", &ref_name]);
    eventually("the refs check puts the pull request ref back at its tip", || {
        let (repo, ref_name, tip) = (repo.clone(), ref_name.clone(), tip.clone());
        async move {
            git_output(&repo, &["rev-parse", "-q", "--verify", &ref_name]).stdout
                == format!("{tip}\n").into_bytes()
        }
    })
    .await;
    assert!(
        server.log().contains("pull request ref put back at its tip"),
        "{}",
        server.log()
    );
}

#[tokio::test]
async fn pull_request_git_first_with_another_tip_removes_the_ref_and_waits() {
    let server = Server::start();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "pr3"))
            .await
            .accepted
    );
    let (work, pushed_tip) = work_tree_with_commit("what was pushed");
    let other_tip = "b".repeat(40);
    let pr = pull_request(&contributor, &owner, "pr3", &other_tip, 1618);
    let ref_name = format!("refs/nostr/{}", pr.id.to_hex());
    assert!(ok(&push_to(
        &server,
        work.path(),
        &owner,
        "pr3",
        &[&format!("{pushed_tip}:{ref_name}")]
    )));
    assert_eq!(client.publish(&pr).await.message, PURGATORY_OK);
    let repo = server.repo_path(&owner, "pr3");
    assert!(
        !git_output(&repo, &["rev-parse", "--verify", "-q", &ref_name])
            .status
            .success(),
        "ref removed"
    );
    assert!(client.ids(json!({"kinds": [1618]})).await.is_empty());
}

#[tokio::test]
async fn a_placeholder_whose_event_never_comes_expires() {
    // Long enough for the announcement and state to outlive the first push on a loaded machine.
    let server = Server::start_with(&["--purgatory-expiry-secs", "4"]);
    let owner = Keys::generate();
    let mut client = server.client().await;
    // An announcement with data keeps the repository: give it a state and push.
    let (work, oid) = work_tree_with_commit("base");
    assert!(
        client
            .publish(&announcement(&owner, &server, "ph"))
            .await
            .accepted
    );
    assert_eq!(
        client
            .publish(&state(&owner, "ph", &[("refs/heads/main", &oid)], None))
            .await
            .message,
        PURGATORY_OK
    );
    assert!(ok(&push_to(&server, work.path(), &owner, "ph", &["main"])));
    let ref_name = format!("refs/nostr/{}", "c".repeat(64));
    assert!(ok(&push_to(
        &server,
        work.path(),
        &owner,
        "ph",
        &[&format!("main:{ref_name}")]
    )));
    let repo = server.repo_path(&owner, "ph");
    eventually("the placeholder ref is removed", || {
        let repo = repo.clone();
        let ref_name = ref_name.clone();
        async move {
            !git_output(&repo, &["rev-parse", "--verify", "-q", &ref_name])
                .status
                .success()
        }
    })
    .await;
    assert_eq!(
        git(&repo, &["rev-parse", "refs/heads/main"]),
        oid,
        "other refs untouched"
    );
}

#[tokio::test]
async fn a_pull_request_update_gets_its_own_ref_and_the_original_stays() {
    let server = Server::start();
    let (owner, contributor) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "upd"))
            .await
            .accepted
    );
    let (work, first) = work_tree_with_commit("v1");
    let pr = pull_request(&contributor, &owner, "upd", &first, 1618);
    let pr_ref = format!("refs/nostr/{}", pr.id.to_hex());
    assert!(ok(&push_to(
        &server,
        work.path(),
        &owner,
        "upd",
        &[&format!("main:{pr_ref}")]
    )));
    assert!(client.publish(&pr).await.accepted);

    std::fs::write(work.path().join("v2"), "2").expect("write");
    git(work.path(), &["add", "v2"]);
    git(work.path(), &["commit", "-q", "-m", "v2"]);
    let second = git(work.path(), &["rev-parse", "HEAD"]);
    let coord = coordinate(&owner, "upd");
    let update = event(
        &contributor,
        1619,
        "",
        &[&["a", &coord], &["E", &pr.id.to_hex()], &["c", &second]],
    );
    assert_eq!(
        client.publish(&update).await.message,
        PURGATORY_OK,
        "event first: waits"
    );
    let update_ref = format!("refs/nostr/{}", update.id.to_hex());
    assert!(ok(&push_to(
        &server,
        work.path(),
        &owner,
        "upd",
        &[&format!("main:{update_ref}")]
    )));
    let repo = server.repo_path(&owner, "upd");
    assert_eq!(git(&repo, &["rev-parse", &update_ref]), second);
    assert_eq!(
        git(&repo, &["rev-parse", &pr_ref]),
        first,
        "the original PR's ref stays"
    );
    assert_eq!(
        client.ids(json!({"kinds": [1619]})).await,
        vec![update.id.to_hex()]
    );
}

#[tokio::test]
async fn two_maintainers_states_with_the_same_timestamp_resolve_by_lowest_id() {
    let server = Server::start();
    let (owner, maintainer) = (Keys::generate(), Keys::generate());
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement_with(
                &owner,
                &server,
                "tie",
                &[&maintainer],
                Timestamp::now()
            ))
            .await
            .accepted
    );
    let (work, a) = work_tree_with_commit("a");
    std::fs::write(work.path().join("b"), "b").expect("write");
    git(work.path(), &["add", "b"]);
    git(work.path(), &["commit", "-q", "-m", "b"]);
    let b = git(work.path(), &["rev-parse", "HEAD"]);
    let at = Timestamp::from(Timestamp::now().as_secs());
    let s1 = state_at(&owner, "tie", &[("refs/heads/main", &a)], None, at);
    let s2 = state_at(&maintainer, "tie", &[("refs/heads/main", &b)], None, at);
    assert_eq!(client.publish(&s1).await.message, PURGATORY_OK);
    assert_eq!(client.publish(&s2).await.message, PURGATORY_OK);
    let (winner, loser) = if s1.id < s2.id { (&a, &b) } else { (&b, &a) };
    let output = push_to(
        &server,
        work.path(),
        &owner,
        "tie",
        &[&format!("{winner}:refs/heads/main")],
    );
    assert!(ok(&output), "the lowest id wins the tie");
    let output = push_to(
        &server,
        work.path(),
        &owner,
        "tie",
        &[&format!("+{loser}:refs/heads/main")],
    );
    assert!(!output.status.success(), "the other state does not authorize");
}
