//! GRASP-06: which of this server's `/prs/<npub>/<identifier>.git` repositories a pull request
//! (or update) names, if any.
//!
//! A pull request may carry its commits in a contributor's repository here when one of its
//! `clone` tags is `http(s)://<domain>/prs/<signer-npub>/<d>.git` (no query or fragment) and `d`,
//! percent-decoded, is the identifier of one of the repositories its `a` tags name.

use crate::config::Domain;
use crate::types::{Area, Identifier, RepoId};

use super::PullRequest;

/// The `/prs/` repository on this server (`domain`) that `pr` names, if any: the first `clone`
/// URL that qualifies.
pub fn pull_request_repository(pr: &PullRequest, domain: &Domain) -> Option<RepoId> {
    pr.clone
        .iter()
        .find_map(|raw| contribution_url(raw, domain))
        .and_then(|(npub, identifier)| {
            let repo = RepoId::pull_requests(pr.author, identifier);
            let named = pr.repos.iter().any(|r| r.identifier == repo.identifier);
            (repo.npub() == npub && named).then_some(repo)
        })
}

/// `(npub, identifier)` of a `http(s)://<domain>/prs/<npub>/<identifier>.git` URL.
fn contribution_url(raw: &str, domain: &Domain) -> Option<(String, Identifier)> {
    let url = url::Url::parse(raw).ok()?;
    let plain = matches!(url.scheme(), "http" | "https")
        && domain.matches(&url)
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !plain {
        return None;
    }
    let path = url.path().strip_suffix('/').unwrap_or(url.path());
    let mut segments = path.strip_prefix('/')?.split('/');
    let (Some(Area::PRS_DIR), Some(npub), Some(name), None) =
        (segments.next(), segments.next(), segments.next(), segments.next())
    else {
        return None;
    };
    let decoded = percent_encoding::percent_decode_str(name.strip_suffix(".git")?)
        .decode_utf8()
        .ok()?;
    Some((npub.to_owned(), Identifier::parse(&decoded).ok()?))
}

#[cfg(test)]
mod tests {
    use nostr::{EventId, Keys};

    use super::*;
    use crate::types::Oid;

    fn pr(author: &Keys, named: &[&str], clone: &[String]) -> PullRequest {
        let owner = Keys::generate().public_key();
        PullRequest {
            id: EventId::all_zeros(),
            author: author.public_key(),
            repos: named
                .iter()
                .map(|d| RepoId::new(owner, Identifier::parse(d).expect("identifier")))
                .collect(),
            tip: Oid::parse(&"c".repeat(40)).expect("oid"),
            clone: clone.to_vec(),
        }
    }

    #[test]
    fn a_clone_url_names_this_servers_prs_repository_only_when_every_part_fits() {
        let signer = Keys::generate();
        let npub = RepoId::pull_requests(signer.public_key(), Identifier::parse("x").expect("id")).npub();
        let other = RepoId::new(Keys::generate().public_key(), Identifier::parse("x").expect("id")).npub();
        let domain = Domain::parse("ours.example:8080").expect("domain");
        let cases: Vec<(&str, String, bool)> = vec![
            (
                "http",
                format!("http://ours.example:8080/prs/{npub}/web.git"),
                true,
            ),
            (
                "https, a trailing slash",
                format!("https://ours.example:8080/prs/{npub}/web.git/"),
                true,
            ),
            (
                "percent-encoded",
                format!("http://ours.example:8080/prs/{npub}/w%65b.git"),
                true,
            ),
            (
                "another server",
                format!("http://theirs.example:8080/prs/{npub}/web.git"),
                false,
            ),
            (
                "another port",
                format!("http://ours.example:8081/prs/{npub}/web.git"),
                false,
            ),
            (
                "not the signer's npub",
                format!("http://ours.example:8080/prs/{other}/web.git"),
                false,
            ),
            (
                "a d-value no 'a' tag names",
                format!("http://ours.example:8080/prs/{npub}/app.git"),
                false,
            ),
            (
                "an owner's path",
                format!("http://ours.example:8080/{npub}/web.git"),
                false,
            ),
            (
                "a query",
                format!("http://ours.example:8080/prs/{npub}/web.git?x=1"),
                false,
            ),
            (
                "a fragment",
                format!("http://ours.example:8080/prs/{npub}/web.git#x"),
                false,
            ),
            (
                "no .git",
                format!("http://ours.example:8080/prs/{npub}/web"),
                false,
            ),
            (
                "traversal",
                format!("http://ours.example:8080/prs/{npub}/%2e%2e.git"),
                false,
            ),
            (
                "a deeper path",
                format!("http://ours.example:8080/prs/{npub}/web.git/x"),
                false,
            ),
            (
                "ssh",
                format!("ssh://ours.example:8080/prs/{npub}/web.git"),
                false,
            ),
        ];
        for (case, url, named) in cases {
            let found = pull_request_repository(&pr(&signer, &["web"], &[url]), &domain);
            assert_eq!(found.is_some(), named, "{case}");
            if let Some(repo) = found {
                assert_eq!(repo.to_string(), format!("prs/{npub}/web"), "{case}");
                assert!(repo.is_pull_request_area());
            }
        }
        let second = pr(
            &signer,
            &["web", "app"],
            &[
                "https://elsewhere.example/x.git".into(),
                format!("http://ours.example:8080/prs/{npub}/app.git"),
            ],
        );
        assert_eq!(
            pull_request_repository(&second, &domain).map(|r| r.identifier.to_string()),
            Some("app".to_owned()),
            "any clone URL, any 'a' d-value"
        );
    }
}
