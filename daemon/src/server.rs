//! `graspd serve`: wires the parts together and runs until SIGINT/SIGTERM.

use tokio::net::TcpListener;

use crate::app::{App, StartError};
use crate::config::Config;
use crate::http::{self, Front};
use crate::process::{self, expiry, maintenance};
use crate::relay;
use crate::rpc;
use crate::shutdown::{Shutdown, Signal};

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot prepare the hooks directory: {0}")]
    Hooks(#[from] crate::git::GitError),
    #[error(transparent)]
    Rpc(#[from] crate::rpc::RpcError),
    #[error("cannot create the spool directory {path}: {source}")]
    Spool {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Binds a TCP listener; on failure removes the gRPC socket bound before it, as the server will
/// not start.
async fn bind_tcp(addr: std::net::SocketAddr, socket: &std::path::Path) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr).await.map_err(|source| {
        let _ = std::fs::remove_file(socket);
        ServeError::Listen { addr, source }
    })
}

/// Runs the server until `stop` resolves.
pub async fn run(config: Config, stop: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
    let started = std::time::Instant::now();
    let app = App::open(config.clone()).await?;
    for change in app.git().prepare_hooks_dir(false).await? {
        tracing::info!("hooks: {change}");
    }
    // The hooks (possibly another user, in graspd's group) write spooled reports here.
    let spool = &config.hooks.spool_dir;
    if !spool.is_dir() {
        std::fs::create_dir_all(spool).map_err(|source| ServeError::Spool {
            path: spool.clone(),
            source,
        })?;
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o2775);
        std::fs::set_permissions(spool, mode).map_err(|source| ServeError::Spool {
            path: spool.clone(),
            source,
        })?;
    }
    if !config.hooks.hook_binary.is_file() {
        tracing::warn!(path = %config.hooks.hook_binary.display(),
            "grasp-hook not found: pushes will fail until it is installed there (see --hook-binary)");
    }
    let rpc_listeners = rpc::bind(&config.hooks.socket, config.grpc_socket_mode, config.grpc_listen).await?;
    // Bound: the hooks' connections queue from here on and are served once `rpc::serve` runs
    // (which clears this if it stops). Set now, so a /readyz that comes as soon as the public
    // port opens does not race the gRPC task's start.
    app.readiness()
        .grpc_serving
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let metrics_listener = match config.metrics_listen {
        Some(addr) => Some(bind_tcp(addr, &config.hooks.socket).await?),
        None => None,
    };
    // The public port opens last: whoever waits for it (systemd, a load balancer, the tests) may
    // rely on the gRPC socket that the hooks of the first push will call.
    let listener = bind_tcp(config.listen, &config.hooks.socket).await?;
    if config.grasp06.enabled {
        http::prepare_empty_repository(&app).await?;
    }
    let relay = relay::build(&app);
    let (shutdown, signal): (Shutdown, Signal) = Shutdown::new();

    // Catch up before taking new work: expire what fell due while we were down, process reports
    // hooks spooled, and reconcile waiting events with git data already on disk. Each step is
    // idempotent, so a stop request during a long catch-up ends it; the next start redoes it.
    let mut stop = std::pin::pin!(stop);
    let catch_up = async {
        expiry::expire_due(&app).await;
        rpc::spool::drain(&app).await;
        let reconciled = process::reconcile(&app).await;
        // GRASP-06: refs pushed to /prs/ whose event and placeholder are both gone.
        process::contributions::sweep(&app, true).await;
        reconciled
    };
    let reconciled = tokio::select! {
        reconciled = catch_up => reconciled,
        () = &mut stop => {
            tracing::info!("stopped during start-up catch-up");
            drop(rpc_listeners);
            let _ = std::fs::remove_file(&config.hooks.socket);
            return Ok(());
        }
    };
    if !reconciled.is_empty() {
        for line in reconciled.summary() {
            tracing::info!("reconcile: {line}");
        }
    }
    let queued = crate::sync::enqueue_waiting(&app, app.sync_queue());
    if queued > 0 {
        tracing::info!(queued, "sync queue rebuilt from purgatory");
    }
    tracing::info!(
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "start-up catch-up done; serving"
    );
    // The per-domain throttles belong to the sync loop (the event sync's connections count
    // against them too); status shows them.
    let throttle = crate::sync::throttle_for(&config.sync);
    // The event sync's per-relay status, for the status service.
    let event_sync = crate::sync::events::EventSyncStatus::default();
    let syncer = crate::sync::Syncer::with_throttle(
        crate::sync::RealSyncContext::new(app.clone()),
        app.sync_queue().clone(),
        throttle.clone(),
        &config.sync,
    );
    let mut tasks = vec![
        tokio::spawn(crate::sync::run(syncer, signal.clone())),
        tokio::spawn(rpc::serve(
            app.clone(),
            rpc_listeners,
            throttle.clone(),
            event_sync.clone(),
            signal.clone(),
        )),
        tokio::spawn(rpc::spool::run(app.clone(), signal.clone())),
        tokio::spawn(expiry::run(app.clone(), signal.clone())),
        tokio::spawn(process::contributions::run(app.clone(), signal.clone())),
        tokio::spawn(maintenance::run(app.clone(), signal.clone())),
        tokio::spawn(maintenance::tidy_after_a_crash(app.clone(), signal.clone())),
        tokio::spawn(crate::sync::cluster::run(
            app.clone(),
            config.listen.to_string(),
            signal.clone(),
        )),
        tokio::spawn(http::serve(
            listener,
            Front::new(app.clone(), relay.clone()),
            signal.clone(),
        )),
    ];
    if let Some(every) = config.sync.refs_check_interval {
        tasks.push(tokio::spawn(crate::sync::lagging::run(
            app.clone(),
            app.sync_queue().clone(),
            every,
            signal.clone(),
        )));
    }
    if config.event_sync.enabled {
        let ingest = std::sync::Arc::new(relay::SyncedEvents::new(&app));
        tasks.push(tokio::spawn(crate::sync::events::run(
            app.clone(),
            ingest,
            event_sync.clone(),
            throttle.clone(),
            signal.clone(),
        )));
    }
    if let Some(listener) = metrics_listener {
        tasks.push(tokio::spawn(http::health::serve_metrics(
            listener,
            app.clone(),
            signal.clone(),
        )));
    }
    tracing::info!(
        listen = %config.listen,
        domain = %config.domain,
        data_dir = %config.data_dir.display(),
        git_root = %config.git_root.display(),
        grpc_socket = %config.hooks.socket.display(),
        metrics = ?config.metrics_listen,
        initial_head = %config.initial_head,
        database = %config.database_url,
        purgatory = app.purgatory().len(),
        "graspd listening on http://{} (relay ws://{}), data in {}",
        config.listen, config.domain, config.data_dir.display()
    );

    stop.await;
    tracing::info!("shutting down");
    app.readiness()
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    shutdown.trigger();
    relay.shutdown();
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}
