//! HTML pages and the NIP-11 document.

use nostr::nips::nip01::Coordinate;
use nostr::nips::nip19::{Nip19Coordinate, ToBech32};
use nostr::{Kind, RelayUrl};

use crate::app::KnownAnnouncement;
use crate::config::Config;
use crate::nip34::{KIND_ANNOUNCEMENT, RepoId};

pub const SOFTWARE: &str = "graspd";

/// NIP-11 relay information document.
pub fn nip11(config: &Config) -> serde_json::Value {
    let limits = &config.limits;
    let mut document = serde_json::json!({
        "name": config.name,
        "description": config.description,
        "software": SOFTWARE,
        "version": env!("CARGO_PKG_VERSION"),
        "supported_nips": [1, 9, 11, 34, 40, 42, 45, 70, 77],
        "supported_grasps": supported_grasps(config),
        "repo_acceptance_criteria": format!(
            "Repository announcements (kind 30617) must list this server in both 'clone' \
             (http(s)://{domain}/<npub>/<identifier>.git) and 'relays' (ws(s)://{domain}). \
             Announcements by maintainers of hosted repositories, and events that reference \
             hosted repositories or their events, are accepted too.",
            domain = config.domain
        ),
        "limitation": {
            "max_message_length": limits.max_message_bytes,
            "max_subscriptions": limits.max_subscriptions,
            "max_limit": limits.max_filter_limit,
            "max_event_length": limits.max_event_bytes,
            "auth_required": false,
            "payment_required": false,
            "restricted_writes": true,
        },
    });
    if let Some(owners) = &config.abuse.allowed_owners {
        let criteria = format!(
            "{} Only the repositories of {} owner{} chosen by this server's operator are hosted.",
            document["repo_acceptance_criteria"].as_str().unwrap_or_default(),
            owners.len(),
            if owners.len() == 1 { "" } else { "s" }
        );
        document["repo_acceptance_criteria"] = serde_json::Value::String(criteria);
    }
    if config.grasp06.enabled {
        let criteria = format!(
            "{} Pull requests (kinds 1618 and 1619) may carry their commits in a repository of \
             their signer's at http(s)://{}/prs/<npub>/<identifier>.git (GRASP-06): name it in a \
             'clone' tag and push refs/nostr/<event-id> there.",
            document["repo_acceptance_criteria"].as_str().unwrap_or_default(),
            config.domain
        );
        document["repo_acceptance_criteria"] = serde_json::Value::String(criteria);
    }
    if let Some(curation) = config.archive.curation() {
        let criteria = if config.archive.only {
            format!(
                "Read-only archive (GRASP-05): only announcements its archive rules take are accepted. {curation}"
            )
        } else {
            format!(
                "{} Archive mode (GRASP-05): announcements that do not list this server are accepted when its archive rules take them. {curation}",
                document["repo_acceptance_criteria"].as_str().unwrap_or_default()
            )
        };
        document["repo_acceptance_criteria"] = serde_json::Value::String(criteria);
        document["curation"] = serde_json::Value::String(curation);
    }
    document
}

/// The page at `/`.
pub fn landing(config: &Config) -> String {
    page(
        &config.name,
        &format!(
            "<h1>{name}</h1><p>{description}</p>\
             <p>This is a <a href=\"https://ngit.dev/grasp/\">GRASP</a> server: a Nostr relay at \
             <code>ws://{domain}</code> and git repositories at \
             <code>http://{domain}/&lt;npub&gt;/&lt;identifier&gt;.git</code>, authorized by signed \
             NIP-34 events.</p>\
             <p>Use a git-over-nostr client such as <a href=\"https://ngit.dev\">ngit</a> to publish a \
             repository here, and browse repositories on <a href=\"https://gitworkshop.dev\">gitworkshop.dev</a>.</p>",
            name = escape(&config.name),
            description = escape(&config.description),
            domain = escape(&config.domain.to_string()),
        ),
    )
}

/// The page at `/<npub>/<identifier>` for a hosted repository.
pub fn repository(config: &Config, repo: &RepoId, known: &KnownAnnouncement) -> String {
    let ann = &known.announcement;
    let title = ann.name.clone().unwrap_or_else(|| repo.identifier.to_string());
    let clone_url = format!("http://{}/{}/{}.git", config.domain, repo.npub(), repo.identifier);
    let clone_url = ann
        .clone
        .iter()
        .find(|u| u.contains(&config.domain.to_string()) && u.contains(&repo.npub()))
        .cloned()
        .unwrap_or(clone_url);
    let naddr = naddr(config, repo);
    let status = if known.pending {
        "<p><em>Waiting for its first push: the announcement is not served until git data arrives.</em></p>"
    } else {
        ""
    };
    page(
        &title,
        &format!(
            "<h1>{title}</h1><p>{description}</p>{status}\
             <p>Clone: <code>git clone {clone}</code></p>\
             <p>Owner: <code>{npub}</code></p>\
             <p>Browse, open issues and pull requests with a git-nostr client: \
             <a href=\"https://gitworkshop.dev/{naddr}\">gitworkshop.dev</a>.</p>",
            title = escape(&title),
            description = escape(ann.description.as_deref().unwrap_or("")),
            clone = escape(&clone_url),
            npub = escape(&repo.npub()),
            naddr = escape(&naddr),
        ),
    )
}

/// The 404 page.
pub fn not_found(what: &str) -> String {
    page(
        "Not found",
        &format!(
            "<h1>Not found</h1><p>{}</p><p><a href=\"/\">Home</a></p>",
            escape(what)
        ),
    )
}

fn naddr(config: &Config, repo: &RepoId) -> String {
    let coordinate =
        Coordinate::new(Kind::from(KIND_ANNOUNCEMENT), repo.owner).identifier(repo.identifier.as_str());
    let relays = RelayUrl::parse(&format!("ws://{}", config.domain)).ok();
    Nip19Coordinate::new(coordinate, relays)
        .to_bech32()
        .unwrap_or_else(|_| format!("{}/{}", repo.npub(), repo.identifier))
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}\
         code{{background:#f2f2f2;padding:0 .25rem;word-break:break-all}}</style></head><body>{body}</body></html>",
        escape(title)
    )
}

/// Escapes text for HTML element content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// The GRASP parts this server runs, as NIP-11 lists them.
fn supported_grasps(config: &Config) -> Vec<&'static str> {
    let mut grasps = vec!["GRASP-01"];
    if config.event_sync.enabled {
        grasps.push("GRASP-02");
        if config.event_sync.outbox {
            grasps.push("GRASP-03");
        }
    }
    if config.archive.enabled {
        grasps.push("GRASP-05");
    }
    if config.grasp06.enabled {
        grasps.push("GRASP-06");
    }
    grasps
}
