//! This node among the others on one PostgreSQL database (`--database-url postgres://`): what
//! their writes change here, and this node's heartbeat.
//!
//! The store hears the other nodes' notifications (`store::cluster`) and has already brought its
//! own summaries up to date; this applies the rest: events another node stored go to this node's
//! live subscribers and out of its purgatory, an identifier whose purgatory rows or placeholders
//! changed is re-read (and queued for the git-data sync if its events wait for data), and after
//! a lost connection everything is re-read. On SQLite there are no other nodes and this does
//! nothing.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::nip34::Identifier;
use crate::purgatory::now_ms;
use crate::shutdown::Signal;
use crate::store::ClusterLock;
use crate::store::cluster::Change;

/// How often a node writes its heartbeat; status counts a node live for three of these.
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// Applies the other nodes' changes and writes heartbeats until shutdown.
pub async fn run(app: App, address: String, mut shutdown: Signal) {
    let Some(mut changes) = app.store().changes() else {
        return;
    };
    // What changed between loading purgatory at start and subscribing here.
    resync(&app).await;
    let started_at_ms = now_ms();
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    let mut leadership = None;
    let mut live = BTreeSet::new();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => apply(&app, change).await,
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "fell behind other nodes' changes; reloading");
                    resync(&app).await;
                }
                Err(RecvError::Closed) => return,
            },
            _ = heartbeat.tick() => {
                if let Err(error) = app.store().heartbeat(&address, started_at_ms, now_ms()).await {
                    tracing::warn!(%error, "cannot write this node's heartbeat");
                }
                let became_leader = lead(&app, &mut leadership).await;
                if app.is_leader() {
                    take_over_from_the_dead(&app, became_leader, &mut live).await;
                }
            }
            _ = shutdown.wait() => return,
        }
    }
}

/// Keeps or takes the leader lock: one node runs the periodic sweeps. A leader whose lock's
/// connection died has lost it (another node may hold it now); a node without it tries to take
/// it, so a dead leader is replaced within a heartbeat or two.
/// Returns whether this node has just become the leader.
async fn lead(app: &App, leadership: &mut Option<ClusterLock>) -> bool {
    if let Some(lock) = leadership.as_mut() {
        if lock.is_held().await {
            return false;
        }
        tracing::warn!("lost the leader lock with its database connection");
        *leadership = None;
        app.set_leader(false);
    }
    match app.store().try_lead().await {
        Ok(Some(lock)) => {
            tracing::info!("this node now runs the periodic sweeps (leader)");
            *leadership = Some(lock);
            app.set_leader(true);
            true
        }
        Ok(None) => false,
        Err(error) => {
            tracing::warn!(%error, "cannot try the leader lock");
            false
        }
    }
}

/// The leader's watch over the other nodes. A node that stopped writing its heartbeat may have
/// died mid-push or mid-release: its repositories may hold data whose events still wait, and
/// its own spool (reports its hooks could not hand over) is on its own disk. The leader then
/// runs the unified procedure over every waiting identifier against what is on disk, as a
/// restarted node does at start; so it does when it has just become leader, the previous leader
/// having died.
async fn take_over_from_the_dead(app: &App, became_leader: bool, live: &mut BTreeSet<String>) {
    let since = now_ms() - i64::try_from(3 * HEARTBEAT.as_millis()).unwrap_or(i64::MAX);
    let now_live: BTreeSet<String> = match app.store().live_nodes(since).await {
        Ok(nodes) => nodes.into_iter().map(|node| node.id).collect(),
        Err(error) => {
            tracing::warn!(%error, "cannot read which nodes are live");
            return;
        }
    };
    let gone: Vec<&String> = live.difference(&now_live).collect();
    if became_leader || !gone.is_empty() {
        tracing::info!(
            ?gone,
            became_leader,
            "taking over what other nodes may have left half done"
        );
        let app = app.clone();
        tokio::spawn(async move {
            let result = crate::process::reconcile(&app).await;
            for line in result.summary() {
                tracing::info!("take-over: {line}");
            }
        });
    }
    *live = now_live;
}

async fn apply(app: &App, change: Change) {
    tracing::debug!(?change, "another node's change");
    match change {
        Change::Stored(events) => {
            for event in events {
                app.purgatory().forget(&event.id).await;
                app.publish_served(&event);
            }
        }
        Change::Identifier(identifier) => {
            let Ok(identifier) = Identifier::parse(&identifier) else {
                return;
            };
            if let Err(error) = app.purgatory().refresh(&identifier).await {
                tracing::warn!(%identifier, %error, "cannot re-read what another node changed");
                return;
            }
            super::enqueue_identifier(app, app.sync_queue(), identifier);
        }
        Change::Forgotten(id) => {
            app.purgatory().forget(&id).await;
        }
        Change::Resync => resync(app).await,
    }
}

async fn resync(app: &App) {
    match app.purgatory().reload().await {
        Ok(()) => {
            super::enqueue_waiting(app, app.sync_queue());
        }
        Err(error) => tracing::warn!(%error, "cannot re-read purgatory"),
    }
}
