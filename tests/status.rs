//! End-to-end: the operator's view — `StatusService` over the daemon's socket (through the real
//! `graspd status` CLI and generic gRPC clients), health, reflection, the TCP token, `/metrics`.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use nostr::Keys;
use serde_json::{Value, json};
use support::*;

const PURGATORY_OK: &str = "purgatory: won't be served until git data arrives";

fn status(server: &Server, args: &[&str]) -> Value {
    let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
        .arg("status")
        .arg("--data-dir")
        .arg(server.data.path())
        .arg("--json")
        .args(args)
        .output()
        .expect("run graspd status");
    assert!(
        output.status.success(),
        "graspd status {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("status --json prints JSON")
}

async fn unix_channel(server: &Server) -> tonic::transport::Channel {
    let path = server.socket();
    tonic::transport::Endpoint::from_static("http://[::]:50051")
        .connect_with_connector(tower::service_fn(move |_| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .expect("connect to the gRPC socket")
}

#[tokio::test]
async fn every_listing_answers_what_store_purgatory_and_disk_hold() {
    let server = Server::start();
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("status");
    let mut client = server.client().await;
    assert_eq!(
        client
            .publish(&announcement(&owner, &server, "watched"))
            .await
            .message,
        PURGATORY_OK
    );
    let st = state(&owner, "watched", &[("refs/heads/main", &oid)], Some("main"));
    assert_eq!(client.publish(&st).await.message, PURGATORY_OK);

    let overview = status(&server, &[]);
    assert_eq!(overview["repositories"], 1);
    assert_eq!(
        overview["purgatory"],
        json!([{"kind": 30617, "count": 1}, {"kind": 30618, "count": 1}])
    );
    assert_eq!(overview["totals"]["events_to_purgatory"], 2);
    assert_eq!(overview["domain"], server.domain());

    let pending = status(&server, &["purgatory"]);
    let entries = pending["entries"].as_array().expect("entries");
    assert_eq!(entries.len(), 2);
    let state_entry = entries
        .iter()
        .find(|e| e["kind"] == "state")
        .expect("state entry");
    assert_eq!(state_entry["event_id"], st.id.to_hex());
    assert_eq!(
        state_entry["missing_oids"],
        json!([oid.clone()]),
        "what it waits for"
    );

    let repos = status(&server, &["repos"]);
    assert_eq!(repos["repositories"][0]["identifier"], "watched");
    assert_eq!(repos["repositories"][0]["has_data"], false);
    assert_eq!(repos["repositories"][0]["announcement_pending"], true);

    let url = server.clone_url(&owner, "watched");
    git(work.path(), &["push", "-q", &url, "main"]);

    let target = format!("{}/watched", npub(&owner));
    let repo = status(&server, &["repo", &target]);
    assert_eq!(repo["authoritative_state"]["event_id"], st.id.to_hex());
    assert_eq!(repo["authoritative_state"]["pending"], false);
    assert_eq!(
        repo["refs"],
        json!([{"name": "refs/heads/main", "on_disk": oid.clone(), "in_state": oid.clone()}])
    );
    assert!(repo["last_push_ms"].as_i64().is_some_and(|t| t > 0));
    assert!(
        status(&server, &["purgatory"])["entries"]
            .as_array()
            .expect("entries")
            .is_empty()
    );
    let after = status(&server, &[]);
    assert_eq!(after["totals"]["pushes_allowed"], 1);
    assert_eq!(after["totals"]["events_released"], 2);
    assert!(
        after["stored_events"]
            .as_array()
            .expect("kinds")
            .iter()
            .any(|k| k["kind"] == 30618)
    );

    let sync = status(&server, &["sync"]);
    assert_eq!(sync["sync_enabled"], true);
    assert_eq!(
        sync["queue"][0]["identifier"], "watched",
        "the waiting state queued its identifier"
    );
}

#[tokio::test]
async fn watch_receives_the_result_of_a_push_made_while_watching() {
    let server = Server::start();
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("watch");
    let mut client = server.client().await;
    assert!(client.publish(&announcement(&owner, &server, "w")).await.accepted);
    assert!(
        client
            .publish(&state(&owner, "w", &[("refs/heads/main", &oid)], None))
            .await
            .accepted
    );

    let mut watcher = Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(["status", "--json", "--data-dir"])
        .arg(server.data.path())
        .arg("watch")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("graspd status watch");
    let mut ready = String::new();
    BufReader::new(watcher.stderr.take().expect("stderr"))
        .read_line(&mut ready)
        .expect("ready line");
    assert!(ready.contains("watching"), "{ready}");
    let stdout = watcher.stdout.take().expect("stdout");
    let (lines, line_read) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = lines.send(BufReader::new(stdout).read_line(&mut line).map(|_| line));
    });
    let url = server.clone_url(&owner, "w");
    git(work.path(), &["push", "-q", &url, "main"]);
    // A lost event fails the test instead of hanging it.
    let line = line_read.recv_timeout(DEADLINE);
    let _ = watcher.kill();
    let _ = watcher.wait();
    let line = line.expect("a line in time").expect("a line");
    let event: Value = serde_json::from_str(&line).expect("one JSON object per line");
    assert_eq!(event["source"], "push");
    assert_eq!(event["repository"], format!("{}/w", npub(&owner)));
    assert_eq!(event["result"]["states_released"], 1);
}

#[tokio::test]
async fn health_and_reflection_answer_generic_clients() {
    let server = Server::start();
    let channel = unix_channel(&server).await;
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let answer = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "grasp.v1.StatusService".into(),
        })
        .await
        .expect("health check")
        .into_inner();
    assert_eq!(
        answer.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let mut reflection = ServerReflectionClient::new(channel);
    let requests = tokio_stream::iter(vec![
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        },
        ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::FileContainingSymbol(
                "grasp.v1.StatusService.GetStatus".into(),
            )),
        },
    ]);
    let mut responses = reflection
        .server_reflection_info(requests)
        .await
        .expect("reflection")
        .into_inner();
    let mut services = Vec::new();
    let mut described = false;
    while let Some(response) = responses.message().await.expect("reflection answer") {
        match response.message_response {
            Some(MessageResponse::ListServicesResponse(list)) => {
                services = list.service.into_iter().map(|s| s.name).collect()
            }
            Some(MessageResponse::FileDescriptorResponse(files)) => {
                described = !files.file_descriptor_proto.is_empty()
            }
            _ => {}
        }
    }
    for wanted in [
        "grasp.v1.HookService",
        "grasp.v1.StatusService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            services.iter().any(|s| s == wanted),
            "{wanted} listed in {services:?}"
        );
    }
    assert!(described, "a method can be described");
}

#[test]
fn tcp_status_requires_the_token() {
    let token_dir = tempfile::tempdir().expect("tempdir");
    let token_file = token_dir.path().join("token");
    std::fs::write(&token_file, "correct-horse-battery-staple\n").expect("write token");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let grpc = listener.local_addr().expect("addr");
    drop(listener);
    let server = Server::start_with(&[
        "--grpc-listen",
        &grpc.to_string(),
        "--grpc-token-file",
        token_file.to_str().expect("utf-8"),
    ]);
    let endpoint = format!("http://{grpc}");
    let run = |token: Option<&std::path::Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_graspd"));
        command.args(["status", "--json", "--grpc-endpoint", &endpoint]);
        if let Some(token) = token {
            command.arg("--token-file").arg(token);
        }
        command.output().expect("graspd status")
    };
    let refused = run(None);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unauthenticated"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let wrong = token_dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-right-token-at-all").expect("write");
    assert!(!run(Some(&wrong)).status.success());
    let allowed = run(Some(&token_file));
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let overview: Value = serde_json::from_slice(&allowed.stdout).expect("json");
    assert!(
        overview["listen"]
            .as_array()
            .expect("listen")
            .iter()
            .any(|l| l == &json!(format!("tcp:{grpc}")))
    );
    drop(server);
}

#[test]
fn listening_on_tcp_without_a_token_is_refused_at_start() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--grpc-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .expect("graspd serve");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--grpc-token-file"));
}

#[test]
fn status_without_a_daemon_says_so() {
    let data = tempfile::tempdir().expect("tempdir");
    let output = Command::new(env!("CARGO_BIN_EXE_graspd"))
        .args(["status", "--data-dir"])
        .arg(data.path())
        .output()
        .expect("graspd status");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach graspd"));
}

#[tokio::test]
async fn metrics_are_prometheus_text_and_move_after_a_push() {
    let server = Server::start_with_metrics(&[]);
    let owner = Keys::generate();
    let (work, oid) = work_tree_with_commit("m");
    let mut client = server.client().await;
    assert!(
        client
            .publish(&announcement(&owner, &server, "metrics"))
            .await
            .accepted
    );
    assert!(
        client
            .publish(&state(&owner, "metrics", &[("refs/heads/main", &oid)], None))
            .await
            .accepted
    );
    // One subscription open, on the same connection.
    client
        .send_raw(&serde_json::json!(["REQ", "live", {"kinds": [30618], "limit": 0}]).to_string())
        .await;
    assert_eq!(client.next().await[0], "EOSE");

    let value = |text: &str, name: &str| -> f64 {
        text.lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} in /metrics"))
    };
    let before = server.metrics();
    assert_eq!(before.status, 200);
    assert!(
        before
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4"))
    );
    for line in before.body.lines().filter(|l| !l.is_empty()) {
        let ok = line.starts_with("# HELP ") || line.starts_with("# TYPE ") || {
            let mut parts = line.rsplitn(2, ' ');
            let number = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            number.parse::<f64>().is_ok() && name.starts_with("graspd_")
        };
        assert!(ok, "not Prometheus text: {line}");
    }
    assert_eq!(value(&before.body, "graspd_pushes_allowed_total"), 0.0);
    assert_eq!(value(&before.body, "graspd_events_purgatory_total"), 2.0);
    assert_eq!(value(&before.body, "graspd_websocket_connections"), 1.0);
    assert_eq!(value(&before.body, "graspd_live_subscriptions"), 1.0);
    assert_eq!(value(&before.body, "graspd_live_events_missed_total"), 0.0);
    // Two Bloom filters of at least 65,536 ids × 10 bits each.
    assert!(value(&before.body, "graspd_store_filter_bytes") >= 2.0 * 81920.0);

    git(
        work.path(),
        &["push", "-q", &server.clone_url(&owner, "metrics"), "main"],
    );
    let after = server.metrics().body;
    assert_eq!(value(&after, "graspd_pushes_allowed_total"), 1.0);
    assert_eq!(value(&after, "graspd_events_released_total"), 2.0);
    assert_eq!(value(&after, "graspd_hook_authorize_seconds_count"), 1.0);
    assert_eq!(value(&after, "graspd_purgatory_entries"), 0.0);
}
