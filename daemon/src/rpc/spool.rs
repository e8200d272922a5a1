//! Reports grasp-hook could not deliver: `<spool>/<nanos>-<pid>.report` files, each an encoded
//! `grasp.v1.ReportPushRequest`, written atomically by the hook. Drained at start and on a timer;
//! a file is removed only after its report was processed (or proved unreadable).

use std::path::Path;
use std::time::Duration;

use grasp_proto::v1 as pb;
use prost::Message;

use super::hook::{parse_updates, process_push};
use crate::app::App;
use crate::shutdown::Signal;

/// How often the spool is checked while running.
pub const DRAIN_INTERVAL: Duration = Duration::from_secs(30);

/// Processes every spooled report. Returns how many were processed.
pub async fn drain(app: &App) -> usize {
    let dir = app.git().hooks().spool_dir.clone();
    let mut files: Vec<_> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "report"))
            .collect(),
        Err(_) => return 0,
    };
    // Names start with the time the hook wrote them: process in push order.
    files.sort();
    let mut processed = 0;
    for file in files {
        match process_file(app, &file).await {
            Ok(()) => processed += 1,
            Err(why) => tracing::warn!(file = %file.display(), "discarding unreadable spooled report: {why}"),
        }
        if let Err(error) = std::fs::remove_file(&file) {
            tracing::warn!(file = %file.display(), %error, "cannot remove spooled report");
        }
    }
    if processed > 0 {
        tracing::info!(processed, "processed spooled push reports");
    }
    processed
}

async fn process_file(app: &App, file: &Path) -> Result<(), String> {
    let bytes = std::fs::read(file).map_err(|e| e.to_string())?;
    let report = pb::ReportPushRequest::decode(bytes.as_slice()).map_err(|e| e.to_string())?;
    let repo = app
        .git()
        .repo_at(Path::new(&report.repo_path))
        .ok_or_else(|| format!("'{}' is not a graspd repository", report.repo_path))?;
    let updates = parse_updates(&report.updates).map_err(|s| s.message().to_owned())?;
    process_push(app, &repo, &updates, "spool").await;
    Ok(())
}

/// Drains the spool every [`DRAIN_INTERVAL`] until shutdown.
pub async fn run(app: App, mut shutdown: Signal) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(DRAIN_INTERVAL) => { drain(&app).await; }
            _ = shutdown.wait() => return,
        }
    }
}
