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
use std::collections::BTreeSet;

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

/// A value bound to a statement's placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Bind {
    Text(String),
    Int(i64),
}

/// A filter's query: its text, its bound values in placeholder order, and whether its prepared
/// statement is worth keeping in the connection's cache: one that merges many per-value scans is
/// large (its program grows with every value) and its shape varies with the number of values, so
/// it is prepared for each use instead. The same statement runs on sqlx (PostgreSQL) and on
/// SQLite's own reader connections ([`super::read`]).
#[derive(Debug, Clone)]
pub(super) struct Sql {
    pub(super) text: String,
    pub(super) binds: Vec<Bind>,
    pub(super) cached: bool,
}

impl Sql {
    /// The statement for sqlx.
    pub(super) fn sqlx<DB>(&self) -> sqlx::query::Query<'_, DB, <DB as sqlx::Database>::Arguments>
    where
        DB: sqlx::Database + sqlx::database::HasStatementCache,
        String: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        let mut query = sqlx::query(sqlx::AssertSqlSafe(self.text.as_str())).persistent(self.cached);
        for bind in &self.binds {
            query = match bind {
                Bind::Text(text) => query.bind(text.clone()),
                Bind::Int(int) => query.bind(*int),
            };
        }
        query
    }
}

impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Bind::Text(text) => text.to_sql(),
            Bind::Int(int) => int.to_sql(),
        }
    }
}

/// SQL text with its bound values, numbered as `dialect` wants them.
struct Builder {
    text: String,
    binds: Vec<Bind>,
    dialect: Dialect,
}

impl Builder {
    fn new(dialect: Dialect, text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            binds: Vec::new(),
            dialect,
        }
    }

    fn push(&mut self, text: impl AsRef<str>) -> &mut Self {
        self.text.push_str(text.as_ref());
        self
    }

    fn push_bind(&mut self, bind: impl Into<Bind>) -> &mut Self {
        self.binds.push(bind.into());
        match self.dialect {
            Dialect::Sqlite => self.text.push('?'),
            Dialect::Postgres => {
                use std::fmt::Write;
                let _ = write!(self.text, "${}", self.binds.len());
            }
        }
        self
    }

    /// `(?, ?, ...)` with `values` bound.
    fn push_list<T: Into<Bind>>(&mut self, values: impl IntoIterator<Item = T>) -> &mut Self {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.push_bind(value);
        }
        self.push(")")
    }

    fn finish(self, cached: bool) -> Sql {
        Sql {
            text: self.text,
            binds: self.binds,
            cached,
        }
    }
}

impl From<String> for Bind {
    fn from(text: String) -> Self {
        Bind::Text(text)
    }
}

impl From<i64> for Bind {
    fn from(int: i64) -> Self {
        Bind::Int(int)
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
pub(super) fn select(dialect: Dialect, filter: &Filter, what: Select) -> Option<Sql> {
    build(dialect, filter, what, "")
}

/// The database's plan for `filter`'s query (`EXPLAIN QUERY PLAN`, `EXPLAIN`).
pub(super) fn explain(dialect: Dialect, filter: &Filter) -> Option<Sql> {
    build(dialect, filter, Select::Json, dialect.explain())
}

fn build(dialect: Dialect, filter: &Filter, what: Select, prefix: &str) -> Option<Sql> {
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
        Some((tag, values)) if what != Select::Count && filter.ids.is_none() => {
            by_tag(dialect, filter, what, *tag, values, prefix).finish(values.len() == 1)
        }
        _ => by_event(dialect, filter, what, prefix).finish(true),
    })
}

/// Driven by the events table: its conditions, then each tag's matching ids.
fn by_event(dialect: Dialect, filter: &Filter, what: Select, prefix: &str) -> Builder {
    let mut q = Builder::new(
        dialect,
        format!("{prefix}SELECT {} FROM events e WHERE 1 = 1", what.columns()),
    );
    push_event_conditions(&mut q, filter);
    push_window(&mut q, filter, "e.created_at");
    for (tag, values) in filter.generic_tags.iter() {
        q.push(" AND e.id IN (SELECT event_id FROM event_tags WHERE name = ")
            .push_bind(tag.as_char().to_string())
            .push(" AND value IN ")
            .push_list(values.iter().cloned())
            .push(")");
    }
    if what != Select::Count {
        q.push(" ORDER BY e.created_at DESC, e.id ASC");
        push_limit(&mut q, filter);
    }
    q
}

/// Driven by the index of `tag`: one ordered scan per value, each stopping at `limit`.
fn by_tag(
    dialect: Dialect,
    filter: &Filter,
    what: Select,
    tag: SingleLetterTag,
    values: &BTreeSet<String>,
    prefix: &str,
) -> Builder {
    if let [value] = values.iter().collect::<Vec<_>>().as_slice() {
        let mut q = Builder::new(dialect, format!("{prefix}SELECT {} FROM ", what.columns()));
        push_tag_scan(&mut q, filter, tag, value);
        return q;
    }
    // Each value's newest matches (an event tagging two of them is found twice and kept once),
    // then the newest of all of those.
    let mut q = Builder::new(
        dialect,
        format!("{prefix}SELECT {} FROM events e WHERE e.id IN (", what.columns()),
    );
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
fn push_tag_scan(q: &mut Builder, filter: &Filter, tag: SingleLetterTag, value: &str) {
    q.push(q.dialect.tag_join())
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
            .push(" AND o.value IN ")
            .push_list(values.iter().cloned())
            .push(" AND o.created_at = e.created_at AND o.event_id = e.id)");
    }
    q.push(" ORDER BY t.created_at DESC, t.event_id ASC");
    push_limit(q, filter);
}

/// The conditions on the event itself: ids, authors, kinds.
fn push_event_conditions(q: &mut Builder, filter: &Filter) {
    if let Some(ids) = &filter.ids {
        q.push(" AND e.id IN ")
            .push_list(ids.iter().map(|id| id.to_hex()));
    }
    if let Some(authors) = &filter.authors {
        q.push(" AND e.pubkey IN ")
            .push_list(authors.iter().map(|pk| pk.to_hex()));
    }
    if let Some(kinds) = &filter.kinds {
        push_kinds(q, "e.kind", kinds);
    }
}

/// ` AND <column> IN (...)` with the kinds bound.
fn push_kinds(q: &mut Builder, column: &str, kinds: &BTreeSet<nostr::Kind>) {
    q.push(format!(" AND {column} IN "))
        .push_list(kinds.iter().map(|kind| i64::from(kind.as_u16())));
}

/// `since` and `until` on `column` (both inclusive).
fn push_window(q: &mut Builder, filter: &Filter, column: &str) {
    if let Some(since) = filter.since {
        q.push(format!(" AND {column} >= "))
            .push_bind(i64::try_from(since.as_secs()).unwrap_or(i64::MAX));
    }
    if let Some(until) = filter.until {
        q.push(format!(" AND {column} <= "))
            .push_bind(i64::try_from(until.as_secs()).unwrap_or(i64::MAX));
    }
}

fn push_limit(q: &mut Builder, filter: &Filter) {
    if let Some(limit) = filter.limit {
        q.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nostr::{Alphabet, Kind};

    #[test]
    fn placeholders_are_numbered_as_each_database_wants_them() {
        let filter = Filter::new()
            .kind(Kind::from(1621_u16))
            .custom_tag(SingleLetterTag::lowercase(Alphabet::A), "30617:pk:repo")
            .limit(10);
        let sqlite = select(Dialect::Sqlite, &filter, Select::Json).expect("a query");
        let postgres = select(Dialect::Postgres, &filter, Select::Json).expect("a query");
        assert_eq!(sqlite.binds, postgres.binds);
        assert_eq!(
            sqlite.binds,
            vec![
                Bind::Text("a".into()),
                Bind::Text("30617:pk:repo".into()),
                Bind::Int(1621),
                Bind::Int(1621),
                Bind::Int(10),
            ]
        );
        assert_eq!(sqlite.text.matches('?').count(), 5);
        assert!(postgres.text.contains("$5") && !postgres.text.contains('?'));
        assert!(sqlite.cached);
    }

    #[test]
    fn a_filter_that_can_match_nothing_has_no_query() {
        for filter in [
            Filter::new().limit(0),
            Filter::new().ids(Vec::<nostr::EventId>::new()),
            Filter::new().kinds(Vec::<Kind>::new()),
        ] {
            assert!(
                select(Dialect::Sqlite, &filter, Select::Json).is_none(),
                "{filter:?}"
            );
        }
    }
}
