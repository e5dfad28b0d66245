//! Which peers may speak for their clients: the `--forwarded-allow-ips` rule.
//!
//! A trusted peer (a proxy in front of evserve) sets the client's address with
//! X-Forwarded-For and the scheme with X-Forwarded-Proto; anyone else's copies of those
//! headers change nothing. Pure functions only: it must never do IO nor touch Python, and
//! it must never let an untrusted peer choose REMOTE_ADDR or `wsgi.url_scheme`.

use std::net::IpAddr;

/// The peers whose X-Forwarded-* headers are believed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedProxies {
    /// `*`: every peer.
    All,
    /// These addresses only.
    Only(Vec<IpAddr>),
}

impl Default for TrustedProxies {
    /// `127.0.0.1,::1`: a proxy on the same machine.
    fn default() -> Self {
        TrustedProxies::Only(vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from([0, 0, 0, 0, 0, 0, 0, 1]),
        ])
    }
}

impl TrustedProxies {
    /// Parses `*` or a comma-separated list of IP addresses.
    pub fn parse(text: &str) -> Result<TrustedProxies, String> {
        if text.trim() == "*" {
            return Ok(TrustedProxies::All);
        }
        let mut ips = Vec::new();
        for part in text.split(',').map(str::trim) {
            if part == "*" {
                return Err(format!("'{text}': '*' trusts every peer and stands alone"));
            }
            let ip: IpAddr = part
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse()
                .map_err(|_| {
                    format!("'{part}' is not an IP address (give IPs separated by commas, or *)")
                })?;
            ips.push(ip.to_canonical());
        }
        Ok(TrustedProxies::Only(ips))
    }

    /// Whether `ip` (an IPv4-mapped IPv6 address counts as its IPv4 one) is trusted.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        match self {
            TrustedProxies::All => true,
            TrustedProxies::Only(ips) => ips.contains(&ip.to_canonical()),
        }
    }

    /// The client's address from an X-Forwarded-For value: the right-most entry that is
    /// not itself a trusted proxy, or the left-most when all are. `None` when that entry
    /// is not an IP address (the peer's address then stays).
    /// The entry is returned as sent, so the caller can reuse its text.
    pub fn client_address<'a>(&self, forwarded_for: &'a str) -> Option<&'a str> {
        let entries = forwarded_for.split(',').map(str::trim);
        let mut leftmost = None;
        for entry in entries.rev() {
            let ip: IpAddr = entry.parse().ok()?;
            if !self.trusts(ip) {
                return Some(entry);
            }
            leftmost = Some(entry);
        }
        leftmost
    }
}

/// `wsgi.url_scheme` from an X-Forwarded-Proto value: `http` or `https` only.
pub fn scheme(forwarded_proto: &[u8]) -> Option<&'static str> {
    match forwarded_proto.trim_ascii() {
        p if p.eq_ignore_ascii_case(b"https") => Some("https"),
        p if p.eq_ignore_ascii_case(b"http") => Some("http"),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_default_trusts_loopback_only() {
        let trusted = TrustedProxies::default();
        assert!(trusted.trusts(ip("127.0.0.1")));
        assert!(trusted.trusts(ip("::1")));
        assert!(trusted.trusts(ip("::ffff:127.0.0.1")));
        assert!(!trusted.trusts(ip("127.0.0.2")));
        assert!(!trusted.trusts(ip("10.0.0.1")));
    }

    #[test]
    fn a_star_trusts_every_peer() {
        let all = TrustedProxies::parse("*").unwrap();
        assert!(all.trusts(ip("203.0.113.9")));
        // Every entry trusted: the left-most is the client.
        assert_eq!(all.client_address("1.2.3.4, 5.6.7.8"), Some("1.2.3.4"));
    }

    #[test]
    fn lists_parse_and_bad_values_are_refused() {
        let list = TrustedProxies::parse(" 10.0.0.1 ,[::1]").unwrap();
        assert_eq!(list, TrustedProxies::Only(vec![ip("10.0.0.1"), ip("::1")]));
        assert!(TrustedProxies::parse("10.0.0.300").is_err());
        assert!(TrustedProxies::parse("").is_err());
        assert!(TrustedProxies::parse("10.0.0.1,").is_err());
        assert!(TrustedProxies::parse("10.0.0.1,*").is_err());
        assert!(TrustedProxies::parse("10.0.0.0/8").is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_entry() {
        let trusted = TrustedProxies::parse("127.0.0.1,10.0.0.1").unwrap();
        // A client's forged entry on the left is skipped over.
        let chain = "6.6.6.6, 1.2.3.4, 10.0.0.1";
        assert_eq!(trusted.client_address(chain), Some("1.2.3.4"));
        assert_eq!(trusted.client_address("1.2.3.4"), Some("1.2.3.4"));
        assert_eq!(
            trusted.client_address("10.0.0.1, 127.0.0.1"),
            Some("10.0.0.1")
        );
        assert_eq!(trusted.client_address("2001:db8::1"), Some("2001:db8::1"));
        assert_eq!(trusted.client_address("not-an-ip, 10.0.0.1"), None);
        assert_eq!(trusted.client_address(""), None);
    }

    #[test]
    fn only_http_and_https_are_schemes() {
        assert_eq!(scheme(b"https"), Some("https"));
        assert_eq!(scheme(b" HTTP "), Some("http"));
        assert_eq!(scheme(b"ftp"), None);
        assert_eq!(scheme(b"https, http"), None);
        assert_eq!(scheme(b""), None);
    }
}
