//! `PortRule`: parse and display `[BIND:]LOCAL_PORT:TARGET_HOST:TARGET_PORT`
//! (SPEC §2). Used by the command line and, later, by MCP `add-port-rule`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// One forwarding rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortRule {
    /// Address to listen on; `0.0.0.0` when the rule has no prefix.
    pub bind: IpAddr,
    pub local_port: u16,
    /// The host as written, without brackets for IPv6.
    pub target_host: String,
    pub target_port: u16,
}

impl PortRule {
    /// The socket address the listener binds.
    pub fn listen_addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.local_port)
    }

    /// The target as logged in `to`/`from`: `host:port`, `[v6]:port`.
    pub fn target_display(&self) -> String {
        host_port(&self.target_host, self.target_port)
    }

    /// The target address when the host is an IP literal, so no lookup is
    /// needed.
    pub fn target_literal(&self) -> Option<SocketAddr> {
        let ip: IpAddr = self.target_host.parse().ok()?;
        Some(SocketAddr::new(ip, self.target_port))
    }

    /// Parses one rule; the error names what is wrong with it.
    pub fn parse(text: &str) -> Result<Self, String> {
        let parts = split_parts(text, "port rule")?;
        let (bind, local, host, port) = match parts.as_slice() {
            [local, host, port] => (None, local, host, port),
            [bind, local, host, port] => (Some(bind), local, host, port),
            _ => {
                return Err(format!(
                    "invalid port rule '{text}': expected LOCAL_PORT:TARGET_HOST:TARGET_PORT, optionally prefixed by BIND_ADDRESS:"
                ));
            }
        };
        let bind = match bind {
            None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            Some(part) => parse_bind(part).map_err(|why| {
                format!(
                    "invalid port rule '{text}': with 4 parts it reads as BIND_ADDRESS:LOCAL_PORT:TARGET_HOST:TARGET_PORT, and {why}"
                )
            })?,
        };
        let local_port = parse_port(&local.text)
            .map_err(|why| format!("invalid port rule '{text}': local {why}"))?;
        let target_host =
            parse_host(host).map_err(|why| format!("invalid port rule '{text}': {why}"))?;
        let target_port = parse_port(&port.text)
            .map_err(|why| format!("invalid port rule '{text}': target {why}"))?;
        Ok(PortRule {
            bind,
            local_port,
            target_host,
            target_port,
        })
    }
}

impl fmt::Display for PortRule {
    /// The rule in the form it is parsed from (the default bind is omitted).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.bind != IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
            match self.bind {
                IpAddr::V4(ip) => write!(f, "{ip}:")?,
                IpAddr::V6(ip) => write!(f, "[{ip}]:")?,
            }
        }
        write!(f, "{}:{}", self.local_port, self.target_display())
    }
}

/// `host:port`, with brackets around an IPv6 host.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// One colon-separated part; `bracketed` when it was written `[...]`.
struct Part {
    text: String,
    bracketed: bool,
}

/// A target alone, `HOST:PORT` or `[V6]:PORT`, checked as a rule's target
/// is (`replay --to`, SPEC §10): the host as written (no brackets) and the
/// port.
pub fn parse_target(text: &str) -> Result<(String, u16), String> {
    let parts = split_parts(text, "target")?;
    let [host, port] = parts.as_slice() else {
        return Err(format!(
            "invalid target '{text}': expected HOST:PORT (an IPv6 host as [addr]:PORT)"
        ));
    };
    let host = parse_host(host).map_err(|why| format!("invalid target '{text}': {why}"))?;
    let port = parse_port(&port.text).map_err(|why| format!("invalid target '{text}': {why}"))?;
    Ok((host, port))
}

/// Splits at the colons outside brackets; `what` names the text in errors.
fn split_parts(text: &str, what: &str) -> Result<Vec<Part>, String> {
    let mut parts = Vec::new();
    let mut rest = text;
    loop {
        let (part, after) = if let Some(inner) = rest.strip_prefix('[') {
            let close = inner
                .find(']')
                .ok_or_else(|| format!("invalid {what} '{text}': unbalanced '['"))?;
            let after = &inner[close + 1..];
            if !(after.is_empty() || after.starts_with(':')) {
                return Err(format!("invalid {what} '{text}': ']' must end a part"));
            }
            (
                Part {
                    text: inner[..close].to_owned(),
                    bracketed: true,
                },
                after,
            )
        } else {
            let end = rest.find(':').unwrap_or(rest.len());
            let piece = &rest[..end];
            if piece.contains('[') || piece.contains(']') {
                return Err(format!("invalid {what} '{text}': unbalanced brackets"));
            }
            (
                Part {
                    text: piece.to_owned(),
                    bracketed: false,
                },
                &rest[end..],
            )
        };
        parts.push(part);
        match after.strip_prefix(':') {
            Some(next) => rest = next,
            None => return Ok(parts),
        }
    }
}

fn parse_port(text: &str) -> Result<u16, String> {
    if text.is_empty() {
        return Err("port is empty".into());
    }
    if !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("port '{text}' is not a number"));
    }
    match text.parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(p as u16),
        _ => Err(format!("port '{text}' is out of range (1-65535)")),
    }
}

fn parse_bind(part: &Part) -> Result<IpAddr, String> {
    if part.bracketed {
        return part
            .text
            .parse::<Ipv6Addr>()
            .map(IpAddr::V6)
            .map_err(|_| format!("bind address '[{}]' is not an IPv6 address", part.text));
    }
    match part.text.as_str() {
        "" => Err("bind address is empty".into()),
        "localhost" => Ok(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        "*" => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        other => other.parse::<Ipv4Addr>().map(IpAddr::V4).map_err(|_| {
            format!("bind address '{other}' is not an IPv4 address (write IPv6 as [addr])")
        }),
    }
}

fn parse_host(part: &Part) -> Result<String, String> {
    if part.bracketed {
        return part
            .text
            .parse::<Ipv6Addr>()
            .map(|_| part.text.clone())
            .map_err(|_| format!("target '[{}]' is not an IPv6 address", part.text));
    }
    let host = &part.text;
    if host.is_empty() {
        return Err("target host is empty".into());
    }
    // Host names go into log lines unescaped: keep to what DNS names use.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_')
    {
        return Err(format!("target host '{host}' is not a valid host name"));
    }
    Ok(host.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_alone() {
        assert_eq!(parse_target("127.0.0.1:80"), Ok(("127.0.0.1".into(), 80)));
        assert_eq!(parse_target("[::1]:9"), Ok(("::1".into(), 9)));
        assert_eq!(parse_target("localhost:9"), Ok(("localhost".into(), 9)));
        for (bad, why) in [
            ("127.0.0.1", "expected HOST:PORT"),
            ("1:2:3", "expected HOST:PORT"),
            ("::1:80", "expected HOST:PORT"),
            ("[::1:80", "unbalanced"),
            ("h:0", "out of range"),
            ("h:x", "not a number"),
            ("[nope]:1", "not an IPv6"),
            ("a b:1", "not a valid host"),
        ] {
            let err = parse_target(bad).unwrap_err();
            assert!(
                err.contains(why) && err.contains("invalid target"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn plain_rule() {
        let r = PortRule::parse("8080:example.com:80").unwrap();
        assert_eq!(r.bind, IpAddr::V4(Ipv4Addr::UNSPECIFIED));
        assert_eq!(r.local_port, 8080);
        assert_eq!(r.target_host, "example.com");
        assert_eq!(r.target_port, 80);
        assert_eq!(r.target_display(), "example.com:80");
        assert_eq!(r.target_literal(), None);
        assert_eq!(r.to_string(), "8080:example.com:80");
    }

    #[test]
    fn bind_prefixes_and_ipv6() {
        let r = PortRule::parse("127.0.0.1:8080:example.com:80").unwrap();
        assert_eq!(r.listen_addr(), "127.0.0.1:8080".parse().unwrap());
        let r = PortRule::parse("[::1]:8080:[::1]:80").unwrap();
        assert_eq!(r.listen_addr(), "[::1]:8080".parse().unwrap());
        assert_eq!(r.target_host, "::1");
        assert_eq!(r.target_display(), "[::1]:80");
        assert_eq!(r.target_literal(), Some("[::1]:80".parse().unwrap()));
        assert_eq!(r.to_string(), "[::1]:8080:[::1]:80");
        let r = PortRule::parse("1:10.0.0.1:65535").unwrap();
        assert_eq!(r.target_literal(), Some("10.0.0.1:65535".parse().unwrap()));
    }

    #[test]
    fn every_error_names_the_rule_and_the_problem() {
        let cases = [
            ("8080:host", "expected LOCAL_PORT"),
            ("1:2:3:4:5", "expected LOCAL_PORT"),
            ("0:host:80", "out of range"),
            ("70000:host:80", "out of range"),
            ("abc:host:80", "not a number"),
            ("8080:host:", "port is empty"),
            ("8080::80", "host is empty"),
            ("8080:[::1:80", "unbalanced"),
            ("8080:::1]:80", "unbalanced"),
            ("8080:[::1]x:80", "']' must end"),
            ("8080:[nothost]:80", "not an IPv6 address"),
            ("8080:a\"b:80", "not a valid host name"),
            ("8080:host:-1", "not a number"),
            ("host:8080:host:80", "not an IPv4 address"),
            ("[1.2.3.4]:8080:host:80", "not an IPv6 address"),
            (":8080:host:80", "bind address is empty"),
        ];
        for (rule, want) in cases {
            let err = PortRule::parse(rule).unwrap_err();
            assert!(err.contains(rule), "{err} should name {rule}");
            assert!(err.contains(want), "{rule}: {err} should say {want}");
        }
    }
}
