//! NIP-77 (negentropy) answered by the websocket bridge, not by nostr-relay-builder.
//!
//! The relay builder answers NEG-OPEN over the store too, but a hex payload that does not decode
//! or a message negentropy cannot read makes it drop the whole connection, and it sets no limit on
//! open sessions. Here every failure is a `NEG-ERR` for that session and the connection stays up;
//! a connection holds at most [`MAX_SESSIONS`] sessions of at most [`MAX_ITEMS`] items each; the
//! items come from the store's index (id and `created_at`, no event read), so events waiting in
//! purgatory and deleted events are never listed.

use std::collections::HashMap;

use negentropy::{Id, Negentropy, NegentropyStorageVector};
use nostr::Filter;
use serde_json::Value;

use crate::store::Store;

/// Open negentropy sessions per connection.
pub const MAX_SESSIONS: usize = 4;

/// Items (events) one session may cover; a larger filter gets `NEG-ERR "blocked: ..."`.
pub const MAX_ITEMS: usize = 250_000;

/// NIP-77's recommended frame size limit.
const FRAME_SIZE_LIMIT: u64 = 60_000;

/// One connection's sessions, by subscription id.
#[derive(Default)]
pub struct Sessions {
    open: HashMap<String, Negentropy<'static, NegentropyStorageVector>>,
}

impl Sessions {
    /// Answers a `NEG-OPEN`, `NEG-MSG` or `NEG-CLOSE` (already parsed as a JSON array whose first
    /// item is the verb). `None`: nothing to send back.
    pub async fn answer(&mut self, items: &[Value], store: &Store) -> Option<String> {
        let verb = items.first().and_then(Value::as_str).unwrap_or_default();
        let Some(sub) = items.get(1).and_then(Value::as_str).map(str::to_owned) else {
            return Some(notice(&format!("invalid: {verb} needs a subscription id")));
        };
        match verb {
            "NEG-CLOSE" => {
                self.open.remove(&sub);
                None
            }
            "NEG-OPEN" => {
                // Reusing a subscription id replaces that session.
                self.open.remove(&sub);
                Some(match self.open(&sub, items, store).await {
                    Ok(reply) => neg_msg(&sub, &reply),
                    Err(why) => neg_err(&sub, &why),
                })
            }
            "NEG-MSG" => {
                let Some(session) = self.open.get_mut(&sub) else {
                    return Some(neg_err(&sub, "closed: no such negentropy session"));
                };
                let reply = items
                    .get(2)
                    .and_then(Value::as_str)
                    .ok_or_else(|| "invalid: NEG-MSG needs a hex message".to_owned())
                    .and_then(decode)
                    .and_then(|message| session.reconcile(&message).map_err(|e| format!("invalid: {e}")));
                Some(match reply {
                    Ok(reply) => neg_msg(&sub, &reply),
                    Err(why) => {
                        // NEG-ERR ends the session.
                        self.open.remove(&sub);
                        neg_err(&sub, &why)
                    }
                })
            }
            _ => None,
        }
    }

    async fn open(&mut self, sub: &str, items: &[Value], store: &Store) -> Result<Vec<u8>, String> {
        if self.open.len() >= MAX_SESSIONS {
            return Err(format!(
                "blocked: at most {MAX_SESSIONS} negentropy sessions per connection; close one first"
            ));
        }
        let filter: Filter = items
            .get(2)
            .cloned()
            .ok_or_else(|| "invalid: NEG-OPEN needs a filter".to_owned())
            .and_then(|value| {
                serde_json::from_value(value).map_err(|e| format!("invalid: bad filter: {e}"))
            })?;
        let initial = items
            .get(3)
            .and_then(Value::as_str)
            .ok_or_else(|| "invalid: NEG-OPEN needs an initial hex message".to_owned())
            .and_then(decode)?;
        let found = store
            .negentropy_items(&filter.remove_limit())
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot list negentropy items");
                "error: cannot read the store; try again later".to_owned()
            })?;
        if found.len() > MAX_ITEMS {
            return Err(format!(
                "blocked: the filter matches more than {MAX_ITEMS} events; narrow it (e.g. with since/until)"
            ));
        }
        let mut storage = NegentropyStorageVector::with_capacity(found.len());
        for (id, created_at) in found {
            storage
                .insert(created_at.as_secs(), Id::from_byte_array(id.to_bytes()))
                .map_err(|e| format!("error: {e}"))?;
        }
        storage.seal().map_err(|e| format!("error: {e}"))?;
        let mut session = Negentropy::owned(storage, FRAME_SIZE_LIMIT).map_err(|e| format!("error: {e}"))?;
        let reply = session.reconcile(&initial).map_err(|e| format!("invalid: {e}"))?;
        self.open.insert(sub.to_owned(), session);
        Ok(reply)
    }
}

/// Hex to bytes, or why not.
fn decode(hex: &str) -> Result<Vec<u8>, String> {
    if !hex.len().is_multiple_of(2) {
        return Err("invalid: odd-length hex message".to_owned());
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            hex.get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
                .ok_or_else(|| "invalid: message is not hex".to_owned())
        })
        .collect()
}

fn encode(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn neg_msg(sub: &str, message: &[u8]) -> String {
    Value::Array(vec!["NEG-MSG".into(), sub.into(), encode(message).into()]).to_string()
}

fn neg_err(sub: &str, why: &str) -> String {
    Value::Array(vec!["NEG-ERR".into(), sub.into(), why.into()]).to_string()
}

fn notice(message: &str) -> String {
    Value::Array(vec!["NOTICE".into(), message.into()]).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_or_says_why_not() {
        assert_eq!(decode("61ff00"), Ok(vec![0x61, 0xff, 0x00]));
        assert!(decode("6").is_err());
        assert!(decode("zz").is_err());
        assert!(decode("é1").is_err());
        assert_eq!(encode(&[0x61, 0x0a]), "610a");
    }
}
