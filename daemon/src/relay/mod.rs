//! The Nostr relay at `/`: nostr-relay-builder's `LocalRelay` over our SQL store, with the GRASP
//! write policy, and the forwarding of released events to live subscribers.

pub mod policy;

use nostr_relay_builder::LocalRelay;
use nostr_relay_builder::builder::RateLimit;

use crate::app::App;
use crate::shutdown::Signal;
use crate::store::SqlDatabase;

pub use policy::{GraspPolicy, PURGATORY_MESSAGE};

/// Builds the relay. Its own per-connection limiter is disabled: our websocket framing applies a
/// real token bucket (the builder's refills only in whole seconds since the last event).
pub fn build(app: &App) -> LocalRelay {
    let limits = &app.config().limits;
    LocalRelay::builder()
        .database(SqlDatabase::new(app.store().clone()))
        .write_policy(GraspPolicy::new(app.clone()))
        .rate_limit(RateLimit {
            max_reqs: limits.max_subscriptions,
            notes_per_minute: u32::MAX,
        })
        .max_connections(limits.max_connections)
        .max_filter_limit(limits.max_filter_limit)
        .default_filter_limit(500)
        .build()
}

/// Forwards events released from purgatory to the relay's subscribers until shutdown.
pub async fn forward_served(app: App, relay: LocalRelay, mut shutdown: Signal) {
    let mut served = app.subscribe_served();
    loop {
        tokio::select! {
            event = served.recv() => match event {
                Ok(event) => { relay.notify_event(event); }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "live subscribers missed released events");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            _ = shutdown.wait() => return,
        }
    }
}
