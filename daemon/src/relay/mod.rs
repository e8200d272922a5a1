//! The Nostr relay at `/`: nostr-relay-builder's `LocalRelay` over our SQL store, with the GRASP
//! write policy.

pub mod intake;
pub mod policy;

use nostr_relay_builder::LocalRelay;
use nostr_relay_builder::builder::RateLimit;

use crate::app::App;
use crate::store::SqlDatabase;

pub use intake::Intake;
pub use policy::{GraspPolicy, PURGATORY_MESSAGE};

use nostr::Event;
use nostr::util::BoxedFuture;

use crate::admission::Answer;
use crate::purgatory::Source;
use crate::sync::events::{Ingest, Ingested};

/// Where the event sync hands what it fetched: the write policy a client's event goes through
/// (with the event's origin, so a held event's git data is hunted sooner), then the store and
/// live subscribers, as `LocalRelay` does for a client.
#[derive(Debug, Clone)]
pub struct SyncedEvents {
    app: App,
    policy: GraspPolicy,
}

impl SyncedEvents {
    pub fn new(app: &App) -> Self {
        Self {
            app: app.clone(),
            policy: GraspPolicy::new(app.clone()),
        }
    }
}

impl Ingest for SyncedEvents {
    fn ingest<'a>(&'a self, event: &'a Event) -> BoxedFuture<'a, Ingested> {
        Box::pin(async move {
            match self.policy.admit(event, Source::Sync).await {
                Ok(Answer::Accept) => {
                    match intake::save(&self.app, std::sync::Arc::new(event.clone())).await {
                        intake::Saved::Stored => Ingested::Accepted,
                        intake::Saved::Duplicate => Ingested::Duplicate,
                        intake::Saved::Refused(why) => Ingested::Refused(why.message().to_owned()),
                        intake::Saved::Failed(error) => Ingested::Failed(error.to_string()),
                    }
                }
                Ok(Answer::Purgatory) => Ingested::Held,
                Ok(Answer::Duplicate(_)) => Ingested::Duplicate,
                Ok(Answer::Blocked(why) | Answer::Invalid(why) | Answer::RateLimited(why)) => {
                    Ingested::Refused(why)
                }
                Err(error) => Ingested::Failed(error.to_string()),
            }
        })
    }
}

/// The relay builder's write policy: the GRASP policy, and then, for an ephemeral event it
/// admitted, delivery to the open subscriptions in `live`. The builder sends such an event to its
/// own subscriptions only (it holds none, see `http::ws`) and has no other hook between admitting
/// and sending it; saved events reach `live` through `SqlDatabase` instead. The policy itself
/// stays free of it.
#[derive(Debug)]
struct EphemeralToLive {
    policy: GraspPolicy,
    app: App,
}

impl nostr_relay_builder::builder::WritePolicy for EphemeralToLive {
    fn admit_event<'a>(
        &'a self,
        event: &'a Event,
        addr: &'a std::net::SocketAddr,
    ) -> BoxedFuture<'a, nostr_relay_builder::builder::WritePolicyResult> {
        Box::pin(async move {
            let result = self.policy.admit_event(event, addr).await;
            if event.kind.is_ephemeral()
                && matches!(result, nostr_relay_builder::builder::WritePolicyResult::Accept)
            {
                self.app.publish_served(event);
            }
            result
        })
    }
}

/// Builds the relay. Its own per-connection limiter is disabled: our websocket framing applies a
/// real token bucket (the builder's refills only in whole seconds since the last event).
pub fn build(app: &App) -> LocalRelay {
    let limits = &app.config().limits;
    LocalRelay::builder()
        .database(SqlDatabase::new(app.store().clone(), app.live().clone()))
        .write_policy(EphemeralToLive {
            policy: GraspPolicy::new(app.clone()),
            app: app.clone(),
        })
        .rate_limit(RateLimit {
            max_reqs: limits.max_subscriptions,
            notes_per_minute: u32::MAX,
        })
        .max_connections(limits.max_connections)
        .max_filter_limit(limits.max_filter_limit)
        .default_filter_limit(crate::nip01::DEFAULT_FILTER_LIMIT)
        .build()
}
