//! NIP-01 filters translated to SQL.

use nostr::Filter;
use sqlx::{QueryBuilder, Sqlite};

/// What the SELECT returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Select {
    Json,
    Id,
    /// Id and `created_at`: NIP-77 items, without reading any event.
    IdTime,
    Count,
}

/// Builds the query for `filter`, or `None` when the filter can match nothing here (an empty
/// `ids`/`authors`/`kinds` list, `limit: 0`, or a NIP-50 search, which this relay does not
/// support).
pub(super) fn select(filter: &Filter, what: Select) -> Option<QueryBuilder<Sqlite>> {
    if filter.search.is_some() || filter.limit == Some(0) {
        return None;
    }
    let head = match what {
        Select::Json => "SELECT json FROM events WHERE 1 = 1",
        Select::Id => "SELECT id FROM events WHERE 1 = 1",
        Select::IdTime => "SELECT id, created_at FROM events WHERE 1 = 1",
        Select::Count => "SELECT COUNT(*) FROM events WHERE 1 = 1",
    };
    let mut q = QueryBuilder::<Sqlite>::new(head);
    if let Some(ids) = &filter.ids {
        push_in(&mut q, "id", ids.iter().map(|id| id.to_hex()))?;
    }
    if let Some(authors) = &filter.authors {
        push_in(&mut q, "pubkey", authors.iter().map(|pk| pk.to_hex()))?;
    }
    if let Some(kinds) = &filter.kinds {
        if kinds.is_empty() {
            return None;
        }
        q.push(" AND kind IN (");
        let mut list = q.separated(", ");
        for kind in kinds {
            list.push_bind(i64::from(kind.as_u16()));
        }
        q.push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND created_at >= ")
            .push_bind(i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    }
    if let Some(until) = filter.until {
        q.push(" AND created_at <= ")
            .push_bind(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
    }
    for (tag, values) in filter.generic_tags.iter() {
        if values.is_empty() {
            return None;
        }
        q.push(" AND id IN (SELECT event_id FROM event_tags WHERE name = ")
            .push_bind(tag.as_char().to_string())
            .push(" AND value IN (");
        let mut list = q.separated(", ");
        for value in values {
            list.push_bind(value.clone());
        }
        q.push("))");
    }
    if what != Select::Count {
        q.push(" ORDER BY created_at DESC, id ASC");
        if let Some(limit) = filter.limit {
            q.push(" LIMIT ")
                .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
        }
    }
    Some(q)
}

fn push_in(q: &mut QueryBuilder<Sqlite>, column: &str, values: impl Iterator<Item = String>) -> Option<()> {
    let values: Vec<String> = values.collect();
    if values.is_empty() {
        return None;
    }
    q.push(format!(" AND {column} IN ("));
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    q.push(")");
    Some(())
}
