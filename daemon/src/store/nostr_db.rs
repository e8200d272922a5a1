//! The relay's database: [`NostrDatabase`] implemented on [`Store`].

use nostr::{Event, EventId, Filter, Timestamp};
use nostr_database::nostr::util::BoxedFuture;
use nostr_database::{
    Backend, DatabaseEventStatus, Events, Features, NostrDatabase, SaveEventStatus, error::Error,
};

use super::{Store, StoreError};
use crate::live::Live;

/// Adapter handed to the relay builder. Deleted ids answer `NotExistent` on `check_id`: whether a
/// deletion applies depends on the author, which only `save_event` sees. An event saved through it
/// goes to the open subscriptions in `live` (the relay builder's own broadcast reaches no one: it
/// holds no subscription, see `http::ws`).
#[derive(Debug, Clone)]
pub struct SqlDatabase {
    store: Store,
    live: Live,
}

impl SqlDatabase {
    pub fn new(store: Store, live: Live) -> Self {
        Self { store, live }
    }
}

fn storage(error: StoreError) -> Error {
    Error::storage(error)
}

impl NostrDatabase for SqlDatabase {
    fn backend(&self) -> Backend {
        Backend::SQLite
    }

    fn features(&self) -> Features {
        Features {
            persistent: true,
            event_expiration: false,
            full_text_search: false,
            request_to_vanish: false,
        }
    }

    fn save_event<'a>(&'a self, event: &'a Event) -> BoxedFuture<'a, Result<SaveEventStatus, Error>> {
        Box::pin(async move {
            let status = self.store.save_event(event).await.map_err(storage)?;
            if status.is_success() {
                self.live.publish(event);
            }
            Ok(status)
        })
    }

    fn check_id<'a>(&'a self, event_id: &'a EventId) -> BoxedFuture<'a, Result<DatabaseEventStatus, Error>> {
        Box::pin(async move {
            let saved = self.store.contains(event_id).await.map_err(storage)?;
            Ok(if saved {
                DatabaseEventStatus::Saved
            } else {
                DatabaseEventStatus::NotExistent
            })
        })
    }

    fn event_by_id<'a>(&'a self, event_id: &'a EventId) -> BoxedFuture<'a, Result<Option<Event>, Error>> {
        Box::pin(async move { self.store.event_by_id(event_id).await.map_err(storage) })
    }

    fn count(&self, filter: Filter) -> BoxedFuture<'_, Result<usize, Error>> {
        Box::pin(async move { self.store.count(&filter).await.map_err(storage) })
    }

    fn query(&self, filter: Filter) -> BoxedFuture<'_, Result<Events, Error>> {
        Box::pin(async move {
            let found = self.store.query(&filter).await.map_err(storage)?;
            let mut events = Events::new(&filter);
            events.extend(found);
            Ok(events)
        })
    }

    fn negentropy_items(&self, filter: Filter) -> BoxedFuture<'_, Result<Vec<(EventId, Timestamp)>, Error>> {
        Box::pin(async move { self.store.negentropy_items(&filter).await.map_err(storage) })
    }

    fn delete(&self, filter: Filter) -> BoxedFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.store.delete(&filter).await.map_err(storage) })
    }

    fn wipe(&self) -> BoxedFuture<'_, Result<(), Error>> {
        Box::pin(async move { self.store.wipe().await.map_err(storage) })
    }
}
