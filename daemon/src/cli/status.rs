//! `graspd status`: a gRPC client of `StatusService` that prints aligned tables (bold headers on
//! a terminal) or JSON with the proto's field names.

use std::io::IsTerminal;
use std::path::PathBuf;

use grasp_proto::v1 as pb;
use grasp_proto::v1::status_service_client::StatusServiceClient;
use serde_json::{Value, json};
use tonic::transport::{Channel, Endpoint};

use super::flags::{StatusArgs, StatusCommand, SyncAction};

/// Why the status command failed (printed by `main`).
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("cannot reach graspd at {target}: {reason} (is `graspd serve` running with this data dir?)")]
    Connect { target: String, reason: String },
    #[error("graspd answered: {0}")]
    Rpc(String),
    #[error("{0}")]
    Usage(String),
}

fn rpc(status: tonic::Status) -> StatusError {
    match status.code() {
        tonic::Code::Unauthenticated => StatusError::Rpc(format!(
            "unauthenticated: {} (check --token-file)",
            status.message()
        )),
        _ => StatusError::Rpc(format!("{:?}: {}", status.code(), status.message())),
    }
}

type Client = StatusServiceClient<tonic::service::interceptor::InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer <token>` when a token is configured.
#[derive(Clone)]
pub struct Bearer(Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(value) = &self.0 {
            request.metadata_mut().insert("authorization", value.clone());
        }
        Ok(request)
    }
}

async fn connect(args: &StatusArgs) -> Result<Client, StatusError> {
    let (channel, target, token) = if let Some(endpoint) = &args.grpc_endpoint {
        let token = match &args.token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|e| StatusError::Usage(format!("--token-file {}: {e}", path.display())))?
                    .trim()
                    .to_owned(),
            ),
            None => None,
        };
        let channel = Endpoint::from_shared(endpoint.clone())
            .map_err(|e| StatusError::Usage(format!("--grpc-endpoint: {e}")))?
            .connect()
            .await
            .map_err(|e| StatusError::Connect {
                target: endpoint.clone(),
                reason: source_chain(&e),
            })?;
        (channel, endpoint.clone(), token)
    } else {
        let socket: PathBuf = args
            .grpc_socket
            .clone()
            .unwrap_or_else(|| args.data_dir.join("graspd.sock"));
        let path = socket.clone();
        let channel = Endpoint::from_static("http://[::]:50051")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| StatusError::Connect {
                target: socket.display().to_string(),
                reason: source_chain(&e),
            })?;
        (channel, socket.display().to_string(), None)
    };
    let token = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse()
                .map_err(|_| StatusError::Usage("the token is not valid header text".into()))?,
        ),
        None => None,
    };
    let _ = target;
    Ok(StatusServiceClient::with_interceptor(channel, Bearer(token)))
}

fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Runs `graspd status ...`.
pub async fn run(args: StatusArgs) -> Result<(), StatusError> {
    let mut client = connect(&args).await?;
    let json = args.json;
    match args.what.clone() {
        None => {
            let s = client
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(status_json(&s))
            } else {
                print_status(&s)
            }
        }
        Some(StatusCommand::Repos { owner, prefix }) => {
            let mut token = String::new();
            let mut all = Vec::new();
            loop {
                let page = client
                    .list_repositories(pb::ListRepositoriesRequest {
                        owner_npub: owner.clone().unwrap_or_default(),
                        identifier_prefix: prefix.clone().unwrap_or_default(),
                        page_size: 1000,
                        page_token: token,
                    })
                    .await
                    .map_err(rpc)?
                    .into_inner();
                all.extend(page.repositories);
                if page.next_page_token.is_empty() {
                    break;
                }
                token = page.next_page_token;
            }
            if json {
                print_json(json!({ "repositories": all.iter().map(summary_json).collect::<Vec<_>>() }))
            } else {
                table(
                    &["REPOSITORY", "NAME", "DATA", "ANNOUNCEMENT", "PENDING", "ARCHIVE"],
                    all.iter()
                        .map(|r| {
                            vec![
                                format!("{}/{}", r.owner_npub, r.identifier),
                                r.name.clone(),
                                yes_no(r.has_data),
                                if r.announcement_pending {
                                    "pending".into()
                                } else {
                                    "served".into()
                                },
                                r.pending_events.to_string(),
                                if r.archive.is_empty() {
                                    "-".into()
                                } else {
                                    r.archive.clone()
                                },
                            ]
                        })
                        .collect(),
                )
            }
        }
        Some(StatusCommand::Repo { repository }) => {
            let (owner, identifier) = repository
                .split_once('/')
                .ok_or_else(|| StatusError::Usage("expected <npub>/<identifier>".into()))?;
            let r = client
                .get_repository(pb::GetRepositoryRequest {
                    owner_npub: owner.into(),
                    identifier: identifier.into(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(repository_json(&r))
            } else {
                print_repository(&r)
            }
        }
        Some(StatusCommand::Purgatory { identifier }) => {
            let p = client
                .list_purgatory(pb::ListPurgatoryRequest {
                    identifier: identifier.unwrap_or_default(),
                })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(json!({ "entries": p.entries.iter().map(entry_json).collect::<Vec<_>>() }))
            } else {
                print_entries(&p.entries)
            }
        }
        Some(StatusCommand::Sync { action: None }) => {
            let s = client
                .list_sync(pb::ListSyncRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(json!({
                    "sync_enabled": s.sync_enabled,
                    "queue": s.queue.iter().map(|q| json!({"identifier": q.identifier, "next_attempt_in_ms": q.next_attempt_in_ms, "attempt_count": q.attempt_count, "in_progress": q.in_progress})).collect::<Vec<_>>(),
                    "throttles": s.throttles.iter().map(|t| json!({"domain": t.domain, "in_flight": t.in_flight, "requests_last_minute": t.requests_last_minute, "queued_identifiers": t.queued_identifiers})).collect::<Vec<_>>(),
                    "event_sync_enabled": s.event_sync_enabled,
                    "relays": s.relays.iter().map(relay_json).collect::<Vec<_>>(),
                }))
            } else {
                if !s.sync_enabled {
                    println!("sync loop: not enabled in this build");
                }
                table(
                    &["IDENTIFIER", "NEXT ATTEMPT", "ATTEMPTS", "IN PROGRESS"],
                    s.queue
                        .iter()
                        .map(|q| {
                            vec![
                                q.identifier.clone(),
                                format!("{} ms", q.next_attempt_in_ms),
                                q.attempt_count.to_string(),
                                yes_no(q.in_progress),
                            ]
                        })
                        .collect(),
                );
                table(
                    &["DOMAIN", "IN FLIGHT", "LAST MINUTE", "QUEUED"],
                    s.throttles
                        .iter()
                        .map(|t| {
                            vec![
                                t.domain.clone(),
                                t.in_flight.to_string(),
                                t.requests_last_minute.to_string(),
                                t.queued_identifiers.join(" "),
                            ]
                        })
                        .collect(),
                );
                if s.event_sync_enabled {
                    table(
                        &[
                            "RELAY",
                            "STATE",
                            "VIA",
                            "REPOS",
                            "FETCHED",
                            "ACCEPTED",
                            "HELD",
                            "REFUSED",
                            "ERRORS",
                            "LAST ERROR",
                        ],
                        s.relays.iter().map(relay_row).collect(),
                    );
                } else {
                    println!("event sync: off (--no-event-sync)");
                }
            }
        }
        Some(StatusCommand::Sync {
            action: Some(SyncAction::Trigger { identifier }),
        }) => {
            let t = client
                .trigger_sync(pb::TriggerSyncRequest { identifier })
                .await
                .map_err(rpc)?
                .into_inner();
            if json {
                print_json(json!({"queued": t.queued, "message": t.message}))
            } else {
                println!("{}", t.message)
            }
        }
        Some(StatusCommand::Watch) => {
            let mut stream = client
                .watch_processing(pb::WatchProcessingRequest {})
                .await
                .map_err(rpc)?
                .into_inner();
            // The daemon has subscribed once the call is answered: say so (scripts may wait for it).
            eprintln!("watching processing results (Ctrl-C to stop)");
            while let Some(event) = stream.message().await.map_err(rpc)? {
                if json {
                    // One compact line per event, so scripts can read the stream line by line.
                    println!("{}", processing_json(&event));
                } else {
                    let r = event.result.unwrap_or_default();
                    println!(
                        "{} {:<9} {}  states {} prs {} announcements {} repos {} refs +{} ~{} -{}{}",
                        event.at_ms,
                        event.source,
                        event.repository,
                        r.states_released,
                        r.pull_requests_released,
                        r.announcements_released,
                        r.repos_synced,
                        r.refs_created,
                        r.refs_updated,
                        r.refs_deleted,
                        if r.errors.is_empty() {
                            String::new()
                        } else {
                            format!("  errors: {}", r.errors.join("; "))
                        }
                    );
                }
            }
        }
    }
    Ok(())
}

fn yes_no(b: bool) -> String {
    if b { "yes".into() } else { "no".into() }
}

fn print_json(value: Value) {
    println!("{}", serde_json::to_string_pretty(&value).unwrap_or_default());
}

/// Prints rows under bold (on a terminal) headers, columns padded to their widest cell.
fn table(headers: &[&str], rows: Vec<Vec<String>>) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    let header = line(headers.iter().map(|h| h.to_string()).collect());
    if std::io::stdout().is_terminal() {
        println!("\x1b[1m{header}\x1b[0m");
    } else {
        println!("{header}");
    }
    for row in rows {
        println!("{}", line(row));
    }
}

fn status_json(s: &pb::GetStatusResponse) -> Value {
    let t = s.totals.unwrap_or_default();
    json!({
        "version": s.version, "uptime_seconds": s.uptime_seconds, "domain": s.domain, "listen": s.listen,
        "database": s.database, "node_id": s.node_id, "leader": s.leader,
        "nodes": s.nodes.iter().map(|n| json!({"id": n.id, "address": n.address,
            "started_at_ms": n.started_at_ms, "seen_at_ms": n.seen_at_ms})).collect::<Vec<_>>(),
        "git_root": s.git_root, "repositories": s.repositories,
        "stored_events": s.stored_events.iter().map(|k| json!({"kind": k.kind, "count": k.count})).collect::<Vec<_>>(),
        "purgatory": s.purgatory.iter().map(|k| json!({"kind": k.kind, "count": k.count})).collect::<Vec<_>>(),
        "sync_queue_length": s.sync_queue_length, "spooled_reports": s.spooled_reports, "placeholders": s.placeholders,
        "totals": {
            "events_accepted": t.events_accepted, "events_refused": t.events_refused,
            "events_to_purgatory": t.events_to_purgatory, "events_released": t.events_released,
            "pushes_allowed": t.pushes_allowed, "pushes_refused": t.pushes_refused,
            "syncs_ok": t.syncs_ok, "syncs_failed": t.syncs_failed,
        },
    })
}

fn print_status(s: &pb::GetStatusResponse) {
    let t = s.totals.unwrap_or_default();
    let kinds = |list: &[pb::KindCount]| {
        if list.is_empty() {
            "none".to_owned()
        } else {
            list.iter()
                .map(|k| format!("{}×{}", k.count, k.kind))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    table(
        &["", ""],
        vec![
            vec!["version".into(), s.version.clone()],
            vec!["uptime".into(), format!("{} s", s.uptime_seconds)],
            vec!["domain".into(), s.domain.clone()],
            vec!["listening".into(), s.listen.join("  ")],
            vec!["database".into(), s.database.clone()],
            vec![
                "nodes".into(),
                if s.node_id.is_empty() {
                    "this one".to_owned()
                } else {
                    s.nodes
                        .iter()
                        .map(|n| {
                            let this = match (n.id == s.node_id, s.leader) {
                                (true, true) => " (this one, leader)",
                                (true, false) => " (this one)",
                                _ => "",
                            };
                            format!("{} at {}{this}", n.id, n.address)
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            ],
            vec!["git root".into(), s.git_root.clone()],
            vec!["repositories".into(), s.repositories.to_string()],
            vec!["stored events".into(), kinds(&s.stored_events)],
            vec!["purgatory".into(), kinds(&s.purgatory)],
            vec!["placeholders".into(), s.placeholders.to_string()],
            vec!["sync queue".into(), s.sync_queue_length.to_string()],
            vec!["spooled reports".into(), s.spooled_reports.to_string()],
            vec![
                "events".into(),
                format!(
                    "{} accepted, {} refused, {} to purgatory, {} released",
                    t.events_accepted, t.events_refused, t.events_to_purgatory, t.events_released
                ),
            ],
            vec![
                "pushes".into(),
                format!("{} allowed, {} refused", t.pushes_allowed, t.pushes_refused),
            ],
            vec![
                "syncs".into(),
                format!("{} ok, {} failed", t.syncs_ok, t.syncs_failed),
            ],
        ],
    );
}

fn summary_json(r: &pb::RepositorySummary) -> Value {
    json!({"owner_npub": r.owner_npub, "identifier": r.identifier, "name": r.name,
        "announcement_pending": r.announcement_pending, "has_data": r.has_data, "pending_events": r.pending_events, "archive": r.archive})
}

fn entry_json(e: &pb::PurgatoryEntry) -> Value {
    json!({"kind": e.kind, "event_id": e.event_id, "identifier": e.identifier, "author_npub": e.author_npub,
        "age_seconds": e.age_seconds, "deadline_ms": e.deadline_ms, "missing_oids": e.missing_oids, "source": e.source})
}

fn print_entries(entries: &[pb::PurgatoryEntry]) {
    table(
        &["KIND", "EVENT", "IDENTIFIER", "AUTHOR", "AGE", "MISSING"],
        entries
            .iter()
            .map(|e| {
                vec![
                    e.kind.clone(),
                    e.event_id.chars().take(12).collect(),
                    e.identifier.clone(),
                    e.author_npub.chars().take(16).collect(),
                    format!("{} s", e.age_seconds),
                    if e.missing_oids.is_empty() {
                        "-".into()
                    } else {
                        e.missing_oids
                            .iter()
                            .map(|o| o.chars().take(7).collect::<String>())
                            .collect::<Vec<_>>()
                            .join(" ")
                    },
                ]
            })
            .collect(),
    );
}

fn repository_json(r: &pb::GetRepositoryResponse) -> Value {
    json!({
        "summary": r.summary.as_ref().map(summary_json),
        "announcements": r.announcements.iter().map(|a| json!({"owner_npub": a.owner_npub, "event_id": a.event_id,
            "created_at": a.created_at, "pending": a.pending, "clone": a.clone, "relays": a.relays,
            "maintainers_npub": a.maintainers_npub})).collect::<Vec<_>>(),
        "maintainers_npub": r.maintainers_npub,
        "authoritative_state": r.authoritative_state.as_ref().map(|s| json!({"event_id": s.event_id,
            "author_npub": s.author_npub, "created_at": s.created_at, "pending": s.pending, "head": s.head})),
        "refs": r.refs.iter().map(|x| json!({"name": x.name, "on_disk": x.on_disk, "in_state": x.in_state})).collect::<Vec<_>>(),
        "pending": r.pending.iter().map(entry_json).collect::<Vec<_>>(),
        "last_push_ms": r.last_push_ms, "last_sync_ms": r.last_sync_ms,
        "refs_lag_state": r.refs_lag_state,
    })
}

fn print_repository(r: &pb::GetRepositoryResponse) {
    if let Some(s) = &r.summary {
        println!("{}/{}  {}", s.owner_npub, s.identifier, s.name);
    }
    println!("maintainers: {}", r.maintainers_npub.join(", "));
    match &r.authoritative_state {
        Some(s) => println!(
            "state: {} by {} ({}{})",
            s.event_id,
            s.author_npub,
            if s.pending { "pending" } else { "served" },
            if s.head.is_empty() {
                String::new()
            } else {
                format!(", HEAD {}", s.head)
            }
        ),
        None => println!("state: none"),
    }
    if r.refs_lag_state {
        println!("refs: lag the served state (the refs check aligns them, fetching what is missing)");
    }
    table(
        &["REF", "ON DISK", "STATE", ""],
        r.refs
            .iter()
            .map(|x| {
                let mark = if x.in_state.is_empty() || x.on_disk == x.in_state {
                    ""
                } else {
                    "differs"
                };
                vec![x.name.clone(), short(&x.on_disk), short(&x.in_state), mark.into()]
            })
            .collect(),
    );
    if !r.pending.is_empty() {
        println!();
        print_entries(&r.pending);
    }
}

fn short(oid: &str) -> String {
    if oid.is_empty() {
        "-".into()
    } else {
        oid.chars().take(12).collect()
    }
}

fn processing_json(e: &pb::ProcessingEvent) -> Value {
    let r = e.result.clone().unwrap_or_default();
    json!({"source": e.source, "repository": e.repository, "at_ms": e.at_ms, "result": {
        "states_released": r.states_released, "pull_requests_released": r.pull_requests_released,
        "announcements_released": r.announcements_released, "repos_synced": r.repos_synced,
        "refs_created": r.refs_created, "refs_updated": r.refs_updated, "refs_deleted": r.refs_deleted, "errors": r.errors}})
}

fn relay_json(r: &pb::RelaySync) -> serde_json::Value {
    json!({
        "url": r.url, "connected": r.connected, "method": r.method,
        "repositories": r.repositories, "filters": r.filters, "last_full_pass": r.last_full_pass,
        "fetched": r.fetched, "accepted": r.accepted, "held": r.held, "refused": r.refused,
        "duplicates": r.duplicates, "errors": r.errors, "last_error": r.last_error,
        "retry_at": r.retry_at, "given_up": r.given_up,
    })
}

fn relay_row(r: &pb::RelaySync) -> Vec<String> {
    let state = if r.given_up {
        "given up".to_owned()
    } else if r.connected {
        "connected".to_owned()
    } else if r.retry_at > 0 {
        format!(
            "retry in {} s",
            r.retry_at.saturating_sub(nostr::Timestamp::now().as_secs())
        )
    } else {
        "connecting".to_owned()
    };
    vec![
        r.url.clone(),
        state,
        if r.method.is_empty() {
            "-".to_owned()
        } else {
            r.method.clone()
        },
        r.repositories.to_string(),
        r.fetched.to_string(),
        r.accepted.to_string(),
        r.held.to_string(),
        r.refused.to_string(),
        r.errors.to_string(),
        r.last_error.chars().take(60).collect(),
    ]
}
