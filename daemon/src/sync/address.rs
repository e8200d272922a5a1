//! Where the sync may fetch from.
//!
//! Clone URLs come from events anyone can publish, so without a check an announcement could make
//! the server fetch from `http://127.0.0.1:6379/` or a cloud metadata address: a probe of its
//! own network. Before each fetch the host is resolved here and every address checked; a
//! non-public one refuses the fetch unless the operator allowed it (`--sync-private-addresses`).
//! git is then pinned to the checked addresses (`http.curloptResolve`), so a DNS answer that
//! changes between the check and the fetch cannot point it elsewhere, and it follows no
//! redirects (`http.followRedirects=false`), which could do the same.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{SyncError, SyncUrl};

/// The `git -c` settings a fetch from a checked URL runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchGuard {
    pub git_config: Vec<String>,
}

/// Resolves `url`'s host and checks its addresses. With `allow_private`, nothing is checked and
/// git resolves as it likes.
pub async fn check(url: &SyncUrl, allow_private: bool) -> Result<FetchGuard, SyncError> {
    if allow_private {
        return Ok(FetchGuard::default());
    }
    let parsed = url.url();
    let port = parsed.port_or_known_default().unwrap_or(443);
    let (name, addresses) = public_addresses(parsed, port).await?;
    let mut git_config = vec!["http.followRedirects=false".to_owned()];
    if let Some(name) = name {
        let pinned: Vec<String> = addresses
            .iter()
            .map(|address| match address {
                IpAddr::V4(ip) => ip.to_string(),
                IpAddr::V6(ip) => format!("[{ip}]"),
            })
            .collect();
        git_config.push(format!("http.curloptResolve={name}:{port}:{}", pinned.join(",")));
    }
    Ok(FetchGuard { git_config })
}

/// The same check for a relay the event sync connects to (`ws://` or `wss://`). The websocket
/// client resolves the name again when it connects; a relay cannot redirect it elsewhere.
pub async fn check_relay(url: &url::Url, allow_private: bool) -> Result<(), SyncError> {
    if allow_private {
        return Ok(());
    }
    let port = url.port_or_known_default().unwrap_or(443);
    public_addresses(url, port).await.map(drop)
}

/// The host name (when it is one) and its addresses, all public, or why not.
async fn public_addresses(url: &url::Url, port: u16) -> Result<(Option<&str>, Vec<IpAddr>), SyncError> {
    let (name, addresses): (Option<&str>, Vec<IpAddr>) = match url.host() {
        Some(url::Host::Ipv4(ip)) => (None, vec![IpAddr::V4(ip)]),
        Some(url::Host::Ipv6(ip)) => (None, vec![IpAddr::V6(ip)]),
        Some(url::Host::Domain(name)) => {
            let found = tokio::net::lookup_host((name, port))
                .await
                .map_err(|error| SyncError::Resolve {
                    url: url.to_string(),
                    reason: error.to_string(),
                })?;
            let mut addresses: Vec<IpAddr> = found.map(|address| address.ip()).collect();
            addresses.sort();
            addresses.dedup();
            (Some(name), addresses)
        }
        None => (None, Vec::new()),
    };
    if addresses.is_empty() {
        return Err(SyncError::Resolve {
            url: url.to_string(),
            reason: "no address".to_owned(),
        });
    }
    if let Some(address) = addresses.iter().find(|address| !is_public(address)) {
        return Err(SyncError::PrivateAddress {
            url: url.to_string(),
            address: *address,
        });
    }
    Ok((name, addresses))
}

/// Whether an address is reachable on the public internet: not loopback, private, shared,
/// link-local, unspecified, documentation, benchmarking, multicast, broadcast or reserved.
pub fn is_public(address: &IpAddr) -> bool {
    match address {
        IpAddr::V4(ip) => is_public_v4(*ip),
        IpAddr::V6(ip) => is_public_v6(ip),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        // 100.64.0.0/10: carrier-grade NAT (shared address space).
        || (a == 100 && (b & 0xc0) == 64)
        // 192.0.0.0/24: IETF protocol assignments.
        || (a == 192 && b == 0 && c == 0)
        // 198.18.0.0/15: benchmarking.
        || (a == 198 && (b & 0xfe) == 18)
        // 240.0.0.0/4: reserved.
        || a >= 240)
}

fn is_public_v6(ip: &Ipv6Addr) -> bool {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return is_public_v4(v4);
    }
    let first = ip.segments()[0];
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_multicast()
        // fc00::/7: unique local.
        || (first & 0xfe00) == 0xfc00
        // fe80::/10: link-local.
        || (first & 0xffc0) == 0xfe80
        // 2001:db8::/32: documentation.
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        // 64:ff9b:1::/48: local-use IPv4/IPv6 translation.
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 1))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Domain;

    fn addr(s: &str) -> IpAddr {
        s.parse().expect("address")
    }

    #[test]
    fn loopback_private_link_local_and_reserved_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.0.0.2",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "ff02::1",
        ] {
            assert!(!is_public(&addr(s)), "{s} counted as public");
        }
        for s in [
            "1.1.1.1",
            "140.82.112.3",
            "2606:4700::6810:84e5",
            "::ffff:8.8.8.8",
        ] {
            assert!(is_public(&addr(s)), "{s} counted as non-public");
        }
    }

    fn url(raw: &str) -> SyncUrl {
        let ours = Domain::parse("ours.example").expect("domain");
        SyncUrl::parse(raw, &ours).expect("sync url")
    }

    #[tokio::test]
    async fn a_loopback_url_is_refused_unless_allowed() {
        let loopback = url("http://127.0.0.1:9/npub1x/repo.git");
        let refused = check(&loopback, false).await;
        assert!(
            matches!(&refused, Err(SyncError::PrivateAddress { address, .. }) if address.is_loopback()),
            "{refused:?}"
        );
        let message = refused.map(|_| ()).unwrap_err().to_string();
        assert!(message.contains("--sync-private-addresses"), "{message}");
        assert_eq!(check(&loopback, true).await.ok(), Some(FetchGuard::default()));
    }

    #[tokio::test]
    async fn a_name_resolving_to_loopback_is_refused() {
        let refused = check(&url("http://localhost:9/npub1x/repo.git"), false).await;
        assert!(
            matches!(
                refused,
                Err(SyncError::PrivateAddress { .. }) | Err(SyncError::Resolve { .. })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_public_address_is_fetched_without_redirects() {
        let guard = check(&url("https://1.1.1.1/npub1x/repo.git"), false)
            .await
            .expect("public");
        assert_eq!(guard.git_config, ["http.followRedirects=false"]);
    }
}
