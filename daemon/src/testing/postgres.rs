//! A fresh PostgreSQL database for a test, on the server `.ci/postgres start` runs. Included by
//! the crate's unit tests (`testing`) and by the integration tests (`tests/support`).

/// The variable naming the PostgreSQL server the tests may create databases on
/// (`.ci/postgres start` exports it).
pub const POSTGRES_URL_VAR: &str = "GRASPD_TEST_POSTGRES_URL";

/// A URL of a new, empty database on the test PostgreSQL server, or `None` when none is
/// configured (the caller skips; the message says how to run it). Under CI (`CI` set) a missing
/// server is a failure: the PostgreSQL tests must run there.
pub async fn postgres_database() -> Option<String> {
    use sqlx::Connection;
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let Ok(server) = std::env::var(POSTGRES_URL_VAR) else {
        let ci = std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false");
        assert!(
            !ci,
            "CI must run the PostgreSQL tests: set {POSTGRES_URL_VAR} (eval \"$(.ci/postgres start)\")"
        );
        eprintln!(
            "skipped: no PostgreSQL ({POSTGRES_URL_VAR} is unset; eval \"$(.ci/postgres start)\" runs one)"
        );
        return None;
    };
    let name = format!(
        "graspd_test_{}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.subsec_nanos())
    );
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {server}: {error}"));
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("cannot create database {name}: {error}"));
    let _ = admin.close().await;
    let mut url = url::Url::parse(&server).expect("a postgres:// URL");
    url.set_path(&name);
    Some(url.to_string())
}
