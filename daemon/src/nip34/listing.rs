//! GRASP-01 [9]: whether a repository announcement lists this server, in both `clone` and
//! `relays`.

use crate::config::Domain;
use crate::types::RepoId;

use super::Announcement;

/// `Ok` when both `clone` (`http(s)://<domain>/<npub>/<identifier>.git`) and `relays`
/// (`ws(s)://<domain>`) name this server, else what is missing, as the client is told.
pub fn lists_server(announcement: &Announcement, domain: &Domain) -> Result<(), String> {
    let repo = &announcement.repo;
    let clone_ok = announcement.clone.iter().any(|raw| {
        url::Url::parse(raw).is_ok_and(|url| {
            matches!(url.scheme(), "http" | "https") && domain.matches(&url) && clone_path_matches(&url, repo)
        })
    });
    let relay_ok = announcement.relays.iter().any(|raw| {
        url::Url::parse(raw).is_ok_and(|url| {
            matches!(url.scheme(), "ws" | "wss") && domain.matches(&url) && matches!(url.path(), "" | "/")
        })
    });
    let clone_url = format!("http(s)://{domain}/{}/{}.git", repo.npub(), repo.identifier);
    match (clone_ok, relay_ok) {
        (true, true) => Ok(()),
        (false, true) => Err(format!(
            "announcement must list this server in 'clone' ({clone_url})"
        )),
        (true, false) => Err(format!(
            "announcement must list this server in 'relays' (ws(s)://{domain})"
        )),
        (false, false) => Err(format!(
            "announcement must list this server in both 'clone' ({clone_url}) and 'relays' (ws(s)://{domain})"
        )),
    }
}

/// The clone URL's path must be `/<npub>/<identifier>.git` (percent-encoding allowed; a trailing
/// slash tolerated).
fn clone_path_matches(url: &url::Url, repo: &RepoId) -> bool {
    let path = url.path().trim_end_matches('/');
    let decoded = percent_encoding::percent_decode_str(path).decode_utf8_lossy();
    decoded == format!("/{}/{}.git", repo.npub(), repo.identifier)
}
