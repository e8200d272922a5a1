//! `graspd serve`: wires the parts together and runs until SIGINT/SIGTERM.

use tokio::net::TcpListener;

use crate::app::{App, StartError};
use crate::config::Config;
use crate::http::{self, Front};
use crate::process::expiry;
use crate::relay;
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
}

/// Runs the server until `stop` resolves.
pub async fn run(config: Config, stop: impl std::future::Future<Output = ()>) -> Result<(), ServeError> {
    let app = App::open(config.clone()).await?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServeError::Listen {
            addr: config.listen,
            source,
        })?;
    let relay = relay::build(&app);
    let (shutdown, signal): (Shutdown, Signal) = Shutdown::new();

    // Expire whatever fell due while we were down before taking new work.
    expiry::expire_due(&app).await;
    let tasks = [
        tokio::spawn(expiry::run(app.clone(), signal.clone())),
        tokio::spawn(relay::forward_served(app.clone(), relay.clone(), signal.clone())),
        tokio::spawn(http::serve(
            listener,
            Front::new(app.clone(), relay.clone()),
            signal.clone(),
        )),
    ];
    tracing::info!(
        listen = %config.listen,
        domain = %config.domain,
        data_dir = %config.data_dir.display(),
        git_root = %config.git_root.display(),
        database = %config.database_url,
        purgatory = app.purgatory().len(),
        "graspd listening on http://{} (relay ws://{}), data in {}",
        config.listen, config.domain, config.data_dir.display()
    );

    stop.await;
    tracing::info!("shutting down");
    shutdown.trigger();
    relay.shutdown();
    for task in tasks {
        let _ = task.await;
    }
    Ok(())
}
