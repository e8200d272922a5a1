//! NIP-01 filters translated to SQL.
//!
//! A filter with a tag condition (`#a` by repository coordinate, `#e`/`#E` by root event, `#d`:
//! what NIP-34 clients send most) is driven by the tag index: `event_tags` is ordered by
//! `(name, value, created_at DESC, event_id, kind)`, which is the order results are served in, so
//! the scan of one tag value walks the newest matches first and stops at `limit`; kinds are
//! checked on the index entry, and each remaining match is joined to its event for the other
//! conditions. Several values are one such scan each, merged. Other
//! filters, and counts, are driven by the events table's indexes, which end in the same order.
//!
//! The same SQL serves SQLite and PostgreSQL ([`Dialect`] holds the two differences: SQLite's
//! `CROSS JOIN` planner hint, and how a plan is asked for).

use nostr::{Filter, SingleLetterTag};
use sqlx::query::Query;
use sqlx::{Database, Encode, QueryBuilder, Type};
use std::collections::BTreeSet;

/// A database the filters are written for (each function also asks that it encode text and
/// 64-bit integers).
pub(super) trait FilterDatabase: Database {
    const DIALECT: Dialect;
}

impl FilterDatabase for sqlx::Sqlite {
    const DIALECT: Dialect = Dialect::Sqlite;
}

impl FilterDatabase for sqlx::Postgres {
    const DIALECT: Dialect = Dialect::Postgres;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The join of a tag row to its event. SQLite's `CROSS JOIN` keeps the tag index as the outer
    /// loop; PostgreSQL has no such hint (and no `ON` for `CROSS JOIN`), and its planner picks
    /// the same plan from the statistics.
    fn tag_join(self) -> &'static str {
        match self {
            Dialect::Sqlite => "event_tags t CROSS JOIN events e ON e.id = t.event_id",
            Dialect::Postgres => "event_tags t JOIN events e ON e.id = t.event_id",
        }
    }

    fn explain(self) -> &'static str {
        match self {
            Dialect::Sqlite => "EXPLAIN QUERY PLAN ",
            Dialect::Postgres => "EXPLAIN ",
        }
    }
}

/// A filter's query, and whether its prepared statement is worth keeping in the connection's
/// cache: one that merges many per-value scans is large (its program grows with every value) and
/// its shape varies with the number of values, so it is prepared for each use instead.
pub(super) struct Sql<DB: Database> {
    builder: QueryBuilder<DB>,
    cached: bool,
}

impl<DB: Database + sqlx::database::HasStatementCache> Sql<DB> {
    pub(super) fn build(&mut self) -> Query<'_, DB, <DB as Database>::Arguments> {
        let cached = self.cached;
        self.builder.build().persistent(cached)
    }
}

/// What the SELECT returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Select {
    Json,
    /// Id, `created_at` and JSON: events served as stored, without reading them into `Event`s.
    Stored,
    Id,
    /// Id and `created_at`: NIP-77 items, without reading any event.
    IdTime,
    Count,
}

impl Select {
    /// The columns of the event aliased `e`.
    fn columns(self) -> &'static str {
        match self {
            Select::Json => "e.json",
            Select::Stored => "e.id, e.created_at, e.json",
            Select::Id => "e.id",
            Select::IdTime => "e.id, e.created_at",
            Select::Count => "COUNT(*)",
        }
    }
}

/// Values of the driving tag up to which each value gets its own ordered index scan; past it
/// (rare: clients send one coordinate or a page of root ids) the matches are collected first.
const MAX_DRIVING_VALUES: usize = 100;

/// Builds the query for `filter`, or `None` when the filter can match nothing here (an empty
/// `ids`/`authors`/`kinds`/tag list, `limit: 0`, or a NIP-50 search, which this relay does not
/// support).
pub(super) fn select<DB: FilterDatabase>(filter: &Filter, what: Select) -> Option<Sql<DB>>
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    build(filter, what, "")
}

/// The database's plan for `filter`'s query (`EXPLAIN QUERY PLAN`, `EXPLAIN`).
pub(super) fn explain<DB: FilterDatabase>(filter: &Filter) -> Option<Sql<DB>>
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    build(filter, Select::Json, DB::DIALECT.explain())
}

fn build<DB: FilterDatabase>(filter: &Filter, what: Select, prefix: &str) -> Option<Sql<DB>>
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if filter.search.is_some()
        || filter.limit == Some(0)
        || filter.ids.as_ref().is_some_and(|ids| ids.is_empty())
        || filter.authors.as_ref().is_some_and(|authors| authors.is_empty())
        || filter.kinds.as_ref().is_some_and(|kinds| kinds.is_empty())
        || filter.generic_tags.values().any(|values| values.is_empty())
    {
        return None;
    }
    let driving = filter
        .generic_tags
        .iter()
        .filter(|(_, values)| values.len() <= MAX_DRIVING_VALUES)
        .min_by_key(|(_, values)| values.len());
    Some(match driving {
        Some((tag, values)) if what != Select::Count && filter.ids.is_none() => Sql {
            builder: by_tag(filter, what, *tag, values, prefix),
            cached: values.len() == 1,
        },
        _ => Sql {
            builder: by_event(filter, what, prefix),
            cached: true,
        },
    })
}

/// Driven by the events table: its conditions, then each tag's matching ids.
fn by_event<DB: FilterDatabase>(filter: &Filter, what: Select, prefix: &str) -> QueryBuilder<DB>
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    let mut q = QueryBuilder::<DB>::new(format!(
        "{prefix}SELECT {} FROM events e WHERE 1 = 1",
        what.columns()
    ));
    push_event_conditions(&mut q, filter);
    push_window(&mut q, filter, "e.created_at");
    for (tag, values) in filter.generic_tags.iter() {
        q.push(" AND e.id IN (SELECT event_id FROM event_tags WHERE name = ")
            .push_bind(tag.as_char().to_string())
            .push(" AND value IN ");
        push_list(&mut q, values.iter().cloned());
        q.push(")");
    }
    if what != Select::Count {
        q.push(" ORDER BY e.created_at DESC, e.id ASC");
        push_limit(&mut q, filter);
    }
    q
}

/// Driven by the index of `tag`: one ordered scan per value, each stopping at `limit`.
fn by_tag<DB: FilterDatabase>(
    filter: &Filter,
    what: Select,
    tag: SingleLetterTag,
    values: &BTreeSet<String>,
    prefix: &str,
) -> QueryBuilder<DB>
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let [value] = values.iter().collect::<Vec<_>>().as_slice() {
        let mut q = QueryBuilder::<DB>::new(format!("{prefix}SELECT {} FROM ", what.columns()));
        push_tag_scan(&mut q, filter, tag, value);
        return q;
    }
    // Each value's newest matches (an event tagging two of them is found twice and kept once),
    // then the newest of all of those.
    let mut q = QueryBuilder::<DB>::new(format!(
        "{prefix}SELECT {} FROM events e WHERE e.id IN (",
        what.columns()
    ));
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            q.push(" UNION ");
        }
        q.push("SELECT id FROM (SELECT t.event_id AS id FROM ");
        push_tag_scan(&mut q, filter, tag, value);
        q.push(format!(") AS v{i}"));
    }
    q.push(") ORDER BY e.created_at DESC, e.id ASC");
    push_limit(&mut q, filter);
    q
}

/// `event_tags t CROSS JOIN events e ... ORDER BY ... LIMIT`: the matches of one tag value,
/// newest first. `CROSS JOIN` keeps the tag index as the outer loop, in SQLite's planner.
fn push_tag_scan<DB: FilterDatabase>(
    q: &mut QueryBuilder<DB>,
    filter: &Filter,
    tag: SingleLetterTag,
    value: &str,
) where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    q.push(DB::DIALECT.tag_join())
        .push(" WHERE t.name = ")
        .push_bind(tag.as_char().to_string())
        .push(" AND t.value = ")
        .push_bind(value.to_owned());
    push_window(q, filter, "t.created_at");
    // The tag rows carry their event's kind, in the index: other kinds are skipped there.
    if let Some(kinds) = &filter.kinds {
        push_kinds(q, "t.kind", kinds);
    }
    push_event_conditions(q, filter);
    for (other, values) in filter.generic_tags.iter().filter(|(other, _)| **other != tag) {
        // The tag rows carry their event's time, so this is one index lookup per value.
        q.push(" AND EXISTS (SELECT 1 FROM event_tags o WHERE o.name = ")
            .push_bind(other.as_char().to_string())
            .push(" AND o.value IN ");
        push_list(q, values.iter().cloned());
        q.push(" AND o.created_at = e.created_at AND o.event_id = e.id)");
    }
    q.push(" ORDER BY t.created_at DESC, t.event_id ASC");
    push_limit(q, filter);
}

/// The conditions on the event itself: ids, authors, kinds.
fn push_event_conditions<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, filter: &Filter)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(ids) = &filter.ids {
        push_in(q, "e.id", ids.iter().map(|id| id.to_hex()));
    }
    if let Some(authors) = &filter.authors {
        push_in(q, "e.pubkey", authors.iter().map(|pk| pk.to_hex()));
    }
    if let Some(kinds) = &filter.kinds {
        push_kinds(q, "e.kind", kinds);
    }
}

/// ` AND <column> IN (...)` with the kinds bound.
fn push_kinds<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, column: &str, kinds: &BTreeSet<nostr::Kind>)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    q.push(format!(" AND {column} IN ("));
    let mut list = q.separated(", ");
    for kind in kinds {
        list.push_bind(i64::from(kind.as_u16()));
    }
    q.push(")");
}

/// `since` and `until` on `column` (both inclusive).
fn push_window<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, filter: &Filter, column: &str)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(since) = filter.since {
        q.push(format!(" AND {column} >= "))
            .push_bind(i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    }
    if let Some(until) = filter.until {
        q.push(format!(" AND {column} <= "))
            .push_bind(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
    }
}

fn push_limit<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, filter: &Filter)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    if let Some(limit) = filter.limit {
        q.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}

fn push_in<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, column: &str, values: impl Iterator<Item = String>)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    q.push(format!(" AND {column} IN "));
    push_list(q, values);
}

/// `(?, ?, ...)` with `values` bound.
fn push_list<DB: FilterDatabase>(q: &mut QueryBuilder<DB>, values: impl Iterator<Item = String>)
where
    String: for<'q> Encode<'q, DB> + Type<DB>,
    i64: for<'q> Encode<'q, DB> + Type<DB>,
{
    q.push("(");
    let mut list = q.separated(", ");
    for value in values {
        list.push_bind(value);
    }
    q.push(")");
}
