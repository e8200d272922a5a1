//! The kill -9 soak: graspd under load (websocket publishers of issues, comments, announcements
//! and states; real pushes through the hooks; pull requests whose tips are pushed to
//! `refs/nostr/<id>` before their events; a live subscriber; repositories whose git data only a
//! second graspd holds, which the soaked one fetches), killed with SIGKILL at a random instant
//! (mid-push, mid-release, mid-fetch, ...), restarted, checked.
//!
//! After every restart:
//! * every event answered `OK true` is there, served or waiting in purgatory, and no event is
//!   served twice;
//! * every repository whose `main` holds a pushed commit serves that commit's state (the release
//!   happened, or start-up reconciliation did it); `git fsck --connectivity-only` is clean and no
//!   stale `*.lock` is left under `refs/`;
//! * nothing waits in purgatory whose git data is on disk;
//! * every state acknowledged while its git data was only on the other graspd is released, the
//!   data fetched (after a restart, by start-up reconciliation and the sync);
//! * every pull request tip git took is under its `refs/nostr/<id>`, and graspd holds exactly the
//!   ones whose event it has not taken as placeholders; the hooks' spool is drained;
//! * every event a live subscriber was sent is served (nothing is delivered before it is stored),
//!   and no subscriber was sent one event twice.
//!
//! CI runs `GRASP_SOAK_KILLS` rounds (default 20, about a minute); the long run is
//! `GRASP_SOAK_KILLS=500 cargo test -p graspd --test soak -- --nocapture`, figures in
//! docs/reliability.md.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use nostr::{Event, Keys};
use serde_json::{Value, json};
use support::*;
use tokio_tungstenite::tungstenite::Message;

/// What a publisher was told about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Told {
    Served,
    Held,
}

/// One push: a state naming `main` at `oid`, then `git push`.
#[derive(Debug, Clone)]
struct Pushed {
    round: usize,
    identifier: String,
    oid: String,
    state_id: String,
}

#[derive(Debug, Default)]
struct Ledger {
    /// What each acknowledged event was told, and in which round.
    told: BTreeMap<String, (Told, usize)>,
    pushes: Vec<Pushed>,
    /// Events a live subscriber was sent, and in which round.
    live: BTreeMap<String, usize>,
    /// Events a subscriber was sent twice on one subscription.
    twice: Vec<String>,
    /// Pull request tips git took into the base repository: event id, tip, round.
    tips: Vec<(String, String, usize)>,
    /// States acknowledged while their git data was only on the peer.
    mirrors: Vec<Pushed>,
}

/// Publishes `event` on `ws` and reads its OK, without panicking when graspd is killed.
async fn publish(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    event: &Event,
) -> Option<(bool, String)> {
    let message = json!(["EVENT", serde_json::to_value(event).ok()?]).to_string();
    ws.send(Message::Text(message.into())).await.ok()?;
    loop {
        let next = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(text) = next else { continue };
        let reply: Value = serde_json::from_str(text.as_str()).ok()?;
        if reply[0] == "OK" && reply[1] == event.id.to_hex() {
            return Some((
                reply[2].as_bool()?,
                reply[3].as_str().unwrap_or_default().to_owned(),
            ));
        }
    }
}

/// Publishes `events` in order and records each answer; `false` once graspd is gone.
async fn publish_all(
    ws: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    events: &[&Event],
    ledger: &Mutex<Ledger>,
    round: usize,
) -> bool {
    for event in events {
        let Some(answer) = publish(ws, event).await else {
            return false;
        };
        record(ledger, round, event, &answer);
    }
    true
}

/// `git push -q <url> <refspec>` from `dir`; whether it succeeded.
async fn git_push(dir: &std::path::Path, url: &str, refspec: &str) -> bool {
    tokio::process::Command::new("git")
        .args(["push", "-q", url, refspec])
        .current_dir(dir)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .await
        .is_ok_and(|output| output.status.success())
}

fn record(ledger: &Mutex<Ledger>, round: usize, event: &Event, answer: &(bool, String)) {
    let told = match answer {
        (true, message) if message.starts_with("purgatory:") => Told::Held,
        (true, _) => Told::Served,
        (false, _) => return,
    };
    let mut ledger = ledger.lock().expect("ledger");
    let entry = ledger.told.entry(event.id.to_hex()).or_insert((told, round));
    if told == Told::Served {
        entry.0 = Told::Served;
    }
}

/// Issues tagging the base repository, as fast as graspd takes them, until the connection dies.
async fn issues(url: String, owner: Keys, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return;
    };
    let author = Keys::generate();
    let base = coordinate(&owner, "base");
    let owner_hex = owner.public_key().to_hex();
    for n in 0.. {
        let issue = event(&author, 1621, &format!("issue {n}"), &[&["a", &base]]);
        let Some(answer) = publish(&mut ws, &issue).await else {
            return;
        };
        record(&ledger, round, &issue, &answer);
        // Every other issue gets a NIP-22 comment, taken because it tags the issue.
        if n % 2 == 1 {
            let root = issue.id.to_hex();
            let comment = event(
                &author,
                1111,
                &format!("comment on issue {n}"),
                &[
                    &["E", &root],
                    &["K", "1621"],
                    &["e", &root],
                    &["A", &base],
                    &["p", &owner_hex],
                ],
            );
            let Some(answer) = publish(&mut ws, &comment).await else {
                return;
            };
            record(&ledger, round, &comment, &answer);
        }
    }
}

/// A live subscriber to everything the load publishes, until the connection dies; notes an
/// event sent twice on the one subscription.
async fn subscriber(url: String, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return;
    };
    let req = json!(["REQ", "live", { "kinds": [1111, 1618, 1621, 30617, 30618], "limit": 0 }]).to_string();
    if ws.send(Message::Text(req.into())).await.is_err() {
        return;
    }
    let mut seen = BTreeSet::new();
    while let Some(Ok(message)) = ws.next().await {
        let Message::Text(text) = message else { continue };
        let Ok(reply) = serde_json::from_str::<Value>(text.as_str()) else {
            continue;
        };
        let Some(id) = reply[2]["id"].as_str().filter(|_| reply[0] == "EVENT") else {
            continue;
        };
        let mut ledger = ledger.lock().expect("ledger");
        if !seen.insert(id.to_owned()) {
            ledger.twice.push(id.to_owned());
        }
        ledger.live.insert(id.to_owned(), round);
    }
}

/// Pull requests to the base repository, until the connection dies: each tip is pushed to
/// `refs/nostr/<event-id>` first (a placeholder), then the event is published (released at once).
async fn pull_requests(url: String, clone: String, owner: Keys, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return;
    };
    let author = Keys::generate();
    for n in 0.. {
        let (work, tip) = work_tree_with_commit(&format!("pr {round}-{n}"));
        let pr = event(
            &author,
            1618,
            "please merge",
            &[
                &["a", &coordinate(&owner, "base")],
                &["p", &owner.public_key().to_hex()],
                &["c", &tip],
                &["subject", "change"],
            ],
        );
        let id = pr.id.to_hex();
        if !git_push(work.path(), &clone, &format!("HEAD:refs/nostr/{id}")).await {
            return;
        }
        ledger.lock().expect("ledger").tips.push((id, tip, round));
        let Some(answer) = publish(&mut ws, &pr).await else {
            return;
        };
        record(&ledger, round, &pr, &answer);
    }
}

/// Repositories pushed to the peer only, then announced (with their state) to the soaked graspd,
/// which must fetch their git data from the peer; until the connection dies.
async fn mirrors(soaked: Endpoint, peer: Endpoint, owner: Keys, round: usize, ledger: Arc<Mutex<Ledger>>) {
    let (Ok((mut ws, _)), Ok((mut peer_ws, _))) = (
        tokio_tungstenite::connect_async(soaked.ws.as_str()).await,
        tokio_tungstenite::connect_async(peer.ws.as_str()).await,
    ) else {
        return;
    };
    for n in 0.. {
        let identifier = format!("m{round}-{n}");
        let (work, oid) = work_tree_with_commit(&identifier);
        let clone = |at: &Endpoint| format!("http://{}/{}/{identifier}.git", at.domain, npub(&owner));
        let announcement = event(
            &owner,
            30617,
            "",
            &[
                &["d", &identifier],
                &["clone", &clone(&peer), &clone(&soaked)],
                &["relays", &peer.ws, &soaked.ws],
            ],
        );
        let st = state(&owner, &identifier, &[("refs/heads/main", &oid)], Some("main"));
        for event in [&announcement, &st] {
            publish(&mut peer_ws, event)
                .await
                .expect("the peer is never killed");
        }
        assert!(
            git_push(work.path(), &clone(&peer), "main").await,
            "push to the peer"
        );
        if !publish_all(&mut ws, &[&announcement, &st], &ledger, round).await {
            return;
        }
        ledger.lock().expect("ledger").mirrors.push(Pushed {
            round,
            identifier,
            oid,
            state_id: st.id.to_hex(),
        });
    }
}

/// A graspd as the load sees it.
#[derive(Clone)]
struct Endpoint {
    ws: String,
    domain: String,
}

impl Endpoint {
    fn of(server: &Server) -> Self {
        Self {
            ws: server.ws_url(),
            domain: server.domain(),
        }
    }
}

/// New repositories, each announced with a state and pushed, until the connection dies.
async fn pushes(
    server_url: String,
    ws_url: String,
    domain: String,
    owner: Keys,
    round: usize,
    ledger: Arc<Mutex<Ledger>>,
) {
    let Ok((mut ws, _)) = tokio_tungstenite::connect_async(ws_url.as_str()).await else {
        return;
    };
    for n in 0.. {
        let identifier = format!("r{round}-{n}");
        let (work, oid) = work_tree_with_commit(&identifier);
        let clone = format!("http://{domain}/{}/{identifier}.git", npub(&owner));
        let announcement = event(
            &owner,
            30617,
            "",
            &[&["d", &identifier], &["clone", &clone], &["relays", &server_url]],
        );
        let st = state(&owner, &identifier, &[("refs/heads/main", &oid)], Some("main"));
        if !publish_all(&mut ws, &[&announcement, &st], &ledger, round).await {
            return;
        }
        ledger.lock().expect("ledger").pushes.push(Pushed {
            round,
            identifier: identifier.clone(),
            oid,
            state_id: st.id.to_hex(),
        });
        if !git_push(work.path(), &clone, "main").await {
            return;
        }
    }
}

/// Stale lock files under `refs/` (nothing runs in the repository now).
fn ref_locks(repo: &std::path::Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![repo.join("refs")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
        {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|x| x == "lock") {
                found.push(path.display().to_string());
            }
        }
    }
    if repo.join("packed-refs.lock").exists() {
        found.push("packed-refs.lock".to_owned());
    }
    found
}

/// Deterministic pseudo-random kill delays (xorshift), so a failing run can be replayed.
fn delays(seed: u64) -> impl Iterator<Item = Duration> {
    let mut state = seed | 1;
    std::iter::repeat_with(move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        Duration::from_millis(50 + state % 1500)
    })
}

#[tokio::test]
async fn graspd_killed_at_random_instants_under_load_loses_and_corrupts_nothing() {
    let kills: usize = std::env::var("GRASP_SOAK_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("GRASP_SOAK_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2026);
    // No limits on the load; both daemons are on loopback.
    let unlimited = [
        &support::UNLIMITED[..],
        &[
            "--sync-private-addresses",
            "--max-pr-pushes-per-hour-per-owner",
            "0",
            "--max-pr-pushes-per-hour-per-address",
            "0",
            "--max-placeholders-per-repo",
            "1000000",
            "--log",
            "info",
        ],
    ]
    .concat();
    // The peer holds git data the soaked graspd fetches; it is never killed.
    let peer = Server::start_on("127.0.0.2", &unlimited);
    // Checkpoints every MiB of WAL (the default is 128), so kills land mid-checkpoint as well as
    // mid-commit.
    let fast_sync = [
        "--sync-default-delay-secs",
        "0",
        "--sync-immediate-delay-ms",
        "100",
        "--wal-checkpoint-mib",
        "1",
    ];
    let mut server = Server::start_on("127.0.0.1", &[&unlimited[..], &fast_sync[..]].concat());
    let owner = Keys::generate();
    {
        let mut client = server.client().await;
        let (work, oid) = work_tree_with_commit("base");
        assert!(
            client
                .publish(&announcement(&owner, &server, "base"))
                .await
                .accepted
        );
        let st = state(&owner, "base", &[("refs/heads/main", &oid)], Some("main"));
        assert!(client.publish(&st).await.accepted);
        git(
            work.path(),
            &["push", "-q", &server.clone_url(&owner, "base"), "main"],
        );
        let served = client.ids(json!({ "ids": [st.id.to_hex()] })).await;
        assert_eq!(served.len(), 1, "the base repository is served");
    }
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let started = Instant::now();
    for (round, delay) in delays(seed).take(kills).enumerate() {
        let load = [
            tokio::spawn(subscriber(server.ws_url(), round, ledger.clone())),
            tokio::spawn(mirrors(
                Endpoint::of(&server),
                Endpoint::of(&peer),
                owner.clone(),
                round,
                ledger.clone(),
            )),
            tokio::spawn(issues(server.ws_url(), owner.clone(), round, ledger.clone())),
            tokio::spawn(pull_requests(
                server.ws_url(),
                server.clone_url(&owner, "base"),
                owner.clone(),
                round,
                ledger.clone(),
            )),
            tokio::spawn(pushes(
                server.ws_url(),
                server.ws_url(),
                server.domain(),
                owner.clone(),
                round,
                ledger.clone(),
            )),
        ];
        tokio::time::sleep(delay).await;
        // As systemd stops the service: graspd and the git processes it started.
        server.kill9_with_children();
        for task in load {
            let _ = tokio::time::timeout(Duration::from_secs(30), task).await;
        }
        server.restart();
        check(&server, &owner, &ledger, round, seed).await;
    }
    let ledger = ledger.lock().expect("ledger");
    let held = ledger.told.values().filter(|(t, _)| *t == Told::Held).count();
    let landed = ledger
        .pushes
        .iter()
        .filter(|push| {
            let repo = server.repo_path(&owner, &push.identifier);
            let main = git_output(&repo, &["rev-parse", "--verify", "-q", "refs/heads/main"]);
            String::from_utf8_lossy(&main.stdout).trim() == push.oid
        })
        .count();
    println!(
        "soak: {kills} kills in {:.0} s (seed {seed}); {} events acknowledged ({held} held first), \
         {} pushes started, {landed} landed, {} pull request tips pushed, {} repositories fetched from the peer, {} sent live; none lost, none twice, no ref corrupted",
        started.elapsed().as_secs_f64(),
        ledger.told.len(),
        ledger.pushes.len(),
        ledger.tips.len(),
        ledger.mirrors.len(),
        ledger.live.len(),
    );
    assert!(
        landed > 0
            && held > 0
            && !ledger.live.is_empty()
            && !ledger.tips.is_empty()
            && !ledger.mirrors.is_empty(),
        "the load reached neither pushes, purgatory nor a live subscriber"
    );
}

/// The invariants, after a restart.
async fn check(server: &Server, owner: &Keys, ledger: &Mutex<Ledger>, round: usize, seed: u64) {
    // This round's and the last one's in full, and every 50th older one: a long run checks in
    // time linear in its rounds.
    let recent = |r: usize, n: usize| r + 1 >= round || n.is_multiple_of(50);
    let (told, pushes, live) = {
        let ledger = ledger.lock().expect("ledger");
        assert!(
            ledger.twice.is_empty(),
            "seed {seed} round {round}: sent twice to one live subscriber: {:?}",
            ledger.twice
        );
        let told: BTreeMap<String, Told> = ledger
            .told
            .iter()
            .enumerate()
            .filter(|(n, (_, (_, r)))| recent(*r, *n))
            .map(|(_, (id, (how, _)))| (id.clone(), *how))
            .collect();
        let pushes: Vec<Pushed> = ledger
            .pushes
            .iter()
            .enumerate()
            .filter(|(n, p)| recent(p.round, *n))
            .map(|(_, p)| p.clone())
            .collect();
        let live: BTreeSet<String> = ledger
            .live
            .iter()
            .enumerate()
            .filter(|(n, (_, r))| recent(**r, *n))
            .map(|(_, (id, _))| id.clone())
            .collect();
        (told, pushes, live)
    };
    let waiting: BTreeSet<String> = server.status_json(&["purgatory"])["entries"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut client = server.client().await;
    let ids: Vec<String> = told
        .keys()
        .chain(&live)
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut served = Vec::new();
    for chunk in ids.chunks(500) {
        served.extend(client.ids(json!({ "ids": chunk })).await);
    }
    let unique: BTreeSet<&String> = served.iter().collect();
    assert_eq!(
        unique.len(),
        served.len(),
        "seed {seed} round {round}: an event served twice"
    );
    for (id, how) in &told {
        let there = unique.contains(id) || waiting.contains(id);
        assert!(
            there,
            "seed {seed} round {round}: event {id} acknowledged ({how:?}) is gone"
        );
    }
    check_pull_requests(server, owner, ledger, &unique, round, seed).await;
    check_mirrors(server, owner, ledger, round, seed).await;
    for id in &live {
        assert!(
            unique.contains(id),
            "seed {seed} round {round}: event {id} was sent to a live subscriber but is not served"
        );
    }
    for push in &pushes {
        let repo = server.repo_path(owner, &push.identifier);
        if !repo.exists() {
            // Killed before the announcement was stored: nothing to check.
            continue;
        }
        let main = git_output(&repo, &["rev-parse", "--verify", "-q", "refs/heads/main"]);
        let main = String::from_utf8_lossy(&main.stdout).trim().to_owned();
        if main == push.oid {
            // The push passed pre-receive, so its state was known; landed, so it is released
            // (by post-receive, the spool, or start-up reconciliation). A receive-pack the kill
            // orphaned (a child of the killed graspd: systemd's control group would end it) may
            // still be finishing against the new daemon, so this may take a moment.
            let deadline = Instant::now() + DEADLINE;
            loop {
                let state = client.ids(json!({ "ids": [push.state_id] })).await;
                if state == vec![push.state_id.clone()] {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "seed {seed} round {round}: {} holds its commit but its state is not served (waiting: {})",
                    push.identifier,
                    waiting.contains(&push.state_id)
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        } else {
            assert!(
                main.is_empty(),
                "seed {seed} round {round}: {} main at {main}, pushed {}",
                push.identifier,
                push.oid
            );
        }
        let deadline = Instant::now() + DEADLINE;
        while !ref_locks(&repo).is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let fsck = git_output(&repo, &["fsck", "--connectivity-only", "--no-progress"]);
        assert!(
            fsck.status.success(),
            "seed {seed} round {round}: fsck {}: {}",
            push.identifier,
            String::from_utf8_lossy(&fsck.stderr)
        );
        let locks = ref_locks(&repo);
        assert!(
            locks.is_empty(),
            "seed {seed} round {round}: locks left for a minute: {locks:?}"
        );
    }
}

/// Every tip git took is under its ref; graspd holds as placeholders exactly the refs whose event
/// it has not taken (after start-up reconciliation and the spool's replay, which it waits for).
async fn check_pull_requests(
    server: &Server,
    owner: &Keys,
    ledger: &Mutex<Ledger>,
    served: &BTreeSet<&String>,
    round: usize,
    seed: u64,
) {
    let repo = server.repo_path(owner, "base");
    let refs: BTreeMap<String, String> = git(
        &repo,
        &["for-each-ref", "--format=%(refname) %(objectname)", "refs/nostr"],
    )
    .lines()
    .filter_map(|line| line.split_once(' '))
    .map(|(name, oid)| (name.trim_start_matches("refs/nostr/").to_owned(), oid.to_owned()))
    .collect();
    let tips = ledger.lock().expect("ledger").tips.clone();
    for (id, tip, _) in tips.iter().filter(|(_, _, r)| r + 1 >= round) {
        assert_eq!(
            refs.get(id),
            Some(tip),
            "seed {seed} round {round}: git took tip {tip} for refs/nostr/{id}"
        );
    }
    let mut client = server.client().await;
    let ids: Vec<String> = refs.keys().cloned().collect();
    let mut known = BTreeSet::new();
    for chunk in ids.chunks(500) {
        known.extend(client.ids(json!({ "ids": chunk })).await);
    }
    known.extend(ids.iter().filter(|id| served.contains(id)).cloned());
    let waiting = refs.len() - known.len();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = server.status_json(&[]);
        let (placeholders, spooled) = (
            status["placeholders"].as_u64(),
            status["spooled_reports"].as_u64(),
        );
        if placeholders == Some(waiting as u64) && spooled == Some(0) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "seed {seed} round {round}: {} refs/nostr refs, {} of them released; graspd holds {placeholders:?} \
             placeholders, {spooled:?} reports spooled",
            refs.len(),
            known.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every state acknowledged while its git data was only on the peer is released, its data
/// fetched: the sync goes on after a restart.
async fn check_mirrors(server: &Server, owner: &Keys, ledger: &Mutex<Ledger>, round: usize, seed: u64) {
    let mirrors: Vec<Pushed> = {
        let ledger = ledger.lock().expect("ledger");
        ledger
            .mirrors
            .iter()
            .filter(|m| m.round + 1 >= round && ledger.told.contains_key(&m.state_id))
            .cloned()
            .collect()
    };
    let mut client = server.client().await;
    for mirror in &mirrors {
        let deadline = Instant::now() + DEADLINE;
        while client.ids(json!({ "ids": [mirror.state_id] })).await != vec![mirror.state_id.clone()] {
            if Instant::now() >= deadline {
                let log = server.log();
                let lines: Vec<&str> = log.lines().filter(|l| l.contains(&mirror.identifier)).collect();
                panic!(
                    "seed {seed} round {round}: the state of {} (git data on the peer) is not released; \
                     status: {}; its log lines:\n{}",
                    mirror.identifier,
                    server.status_json(&["purgatory"]),
                    lines.join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let repo = server.repo_path(owner, &mirror.identifier);
        assert_eq!(
            git(&repo, &["rev-parse", "refs/heads/main"]),
            mirror.oid,
            "seed {seed} round {round}: {} fetched",
            mirror.identifier
        );
    }
}
