//! HTTP/1.1 framing for the MCP endpoint (SPEC §7), over `httparse`: one
//! request out of a byte buffer, with the limits, and response bytes. No
//! sockets here, so every case is a unit test (and a fuzz target).

/// Request bodies over this get 413 (SPEC §7).
pub const MAX_BODY: usize = 1024 * 1024;
/// A request head over this gets 431.
pub const MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// A complete request, as far as the MCP endpoint cares.
#[derive(Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The path without any query string.
    pub path: String,
    pub origin: Option<String>,
    pub body: Vec<u8>,
    /// The client wants the connection kept open after the response.
    pub keep_alive: bool,
}

/// What the buffer holds so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not a whole request yet; read more.
    Incomplete,
    /// A request, and how many bytes of the buffer it took.
    Complete(Request, usize),
    /// A request that cannot be served: answer with this status and close.
    Reject(u16, &'static str),
}

/// Parses one request from the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Parsed::Reject(431, "request head too large");
        }
        Ok(httparse::Status::Partial) => return Parsed::Incomplete,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Reject(431, "too many headers"),
        Err(_) => return Parsed::Reject(400, "malformed HTTP request"),
    };
    if head_len > MAX_HEAD {
        return Parsed::Reject(431, "request head too large");
    }
    let method = req.method.unwrap_or_default().to_owned();
    let target = req.path.unwrap_or_default();
    let path = target.split('?').next().unwrap_or_default().to_owned();
    let http10 = req.version == Some(0);

    let mut content_length: Option<usize> = None;
    let mut origin = None;
    let mut connection = String::new();
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map(str::trim);
        if h.name.eq_ignore_ascii_case("content-length") {
            let Some(n) = value.ok().and_then(|v| v.parse::<usize>().ok()) else {
                return Parsed::Reject(400, "invalid Content-Length");
            };
            if content_length.is_some_and(|m| m != n) {
                return Parsed::Reject(400, "conflicting Content-Length headers");
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Parsed::Reject(
                400,
                "Transfer-Encoding is not supported; send Content-Length",
            );
        } else if h.name.eq_ignore_ascii_case("origin") {
            let Ok(v) = value else {
                return Parsed::Reject(400, "invalid Origin");
            };
            origin = Some(v.to_owned());
        } else if h.name.eq_ignore_ascii_case("connection") {
            connection = value.unwrap_or_default().to_ascii_lowercase();
        }
    }
    let body_len = content_length.unwrap_or(0);
    if body_len > MAX_BODY {
        return Parsed::Reject(413, "request body over 1 MiB");
    }
    let Some(body) = buf.get(head_len..head_len + body_len) else {
        return Parsed::Incomplete;
    };
    let keep_alive = if http10 {
        connection.contains("keep-alive")
    } else {
        !connection.contains("close")
    };
    Parsed::Complete(
        Request {
            method,
            path,
            origin,
            body: body.to_vec(),
            keep_alive,
        },
        head_len + body_len,
    )
}

/// An `Origin` the endpoint accepts: none, or one on this machine
/// (DNS-rebinding defence, SPEC §7).
pub fn origin_allowed(origin: Option<&str>) -> bool {
    let Some(origin) = origin else { return true };
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, "")) => (host, None),
            Some((host, after)) => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return false,
            },
            None => return false,
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    port.is_none_or(|p| p.parse::<u16>().is_ok())
        && matches!(host, "localhost" | "127.0.0.1" | "::1")
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Error",
    }
}

/// The bytes of one response. `extra` headers come as written; a JSON body
/// gets `Content-Type: application/json`, any other body `text/plain`.
pub fn response(
    status: u16,
    extra: &[(&str, &str)],
    body: &[u8],
    json: bool,
    keep_alive: bool,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(format!("HTTP/1.1 {status} {}\r\n", reason(status)).as_bytes());
    if !body.is_empty() {
        let kind = if json {
            "application/json"
        } else {
            "text/plain; charset=utf-8"
        };
        out.extend_from_slice(format!("Content-Type: {kind}\r\n").as_bytes());
    }
    out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    for (name, value) in extra {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    out.extend_from_slice(if keep_alive {
        b"Connection: keep-alive\r\n\r\n"
    } else {
        b"Connection: close\r\n\r\n"
    });
    out.extend_from_slice(body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(buf: &[u8]) -> (Request, usize) {
        match parse(buf) {
            Parsed::Complete(r, n) => (r, n),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_post_with_a_body() {
        let buf = b"POST /mcp?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nOrigin: http://localhost:3000\r\n\r\n{}extra";
        let (req, used) = complete(buf);
        assert_eq!(req.method, "POST");
        assert_eq!(req.path, "/mcp");
        assert_eq!(req.body, b"{}");
        assert_eq!(req.origin.as_deref(), Some("http://localhost:3000"));
        assert!(req.keep_alive);
        assert_eq!(used, buf.len() - 5);
    }

    #[test]
    fn partial_requests_wait_for_more() {
        let full = b"POST /mcp HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd";
        for cut in 0..full.len() {
            assert_eq!(parse(&full[..cut]), Parsed::Incomplete, "cut at {cut}");
        }
        assert!(matches!(parse(full), Parsed::Complete(..)));
    }

    #[test]
    fn connection_close_and_http10() {
        let (req, _) = complete(b"GET /mcp HTTP/1.1\r\nConnection: close\r\n\r\n");
        assert!(!req.keep_alive);
        let (req, _) = complete(b"GET /mcp HTTP/1.0\r\n\r\n");
        assert!(!req.keep_alive);
        let (req, _) = complete(b"GET /mcp HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
        assert!(req.keep_alive);
    }

    #[test]
    fn limits_and_malformed_input() {
        assert_eq!(
            parse(b"\x00\x01 garbage\r\n\r\n"),
            Parsed::Reject(400, "malformed HTTP request")
        );
        let big = format!(
            "POST /mcp HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(parse(big.as_bytes()), Parsed::Reject(413, _)));
        assert!(matches!(
            parse(b"POST /mcp HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Parsed::Reject(400, _)
        ));
        assert!(matches!(
            parse(b"POST /mcp HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Parsed::Reject(400, _)
        ));
        assert!(matches!(
            parse(b"POST /mcp HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Parsed::Reject(400, _)
        ));
        let mut huge = b"POST /mcp HTTP/1.1\r\nX: ".to_vec();
        huge.extend(vec![b'a'; MAX_HEAD + 1]);
        assert!(matches!(parse(&huge), Parsed::Reject(431, _)));
        let mut many = b"POST /mcp HTTP/1.1\r\n".to_vec();
        for i in 0..(MAX_HEADERS + 1) {
            many.extend(format!("X{i}: y\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert!(matches!(parse(&many), Parsed::Reject(431, _)));
    }

    #[test]
    fn origins() {
        for ok in [
            None,
            Some("http://localhost"),
            Some("http://127.0.0.1:8080"),
            Some("https://[::1]:1"),
            Some("http://localhost:5173"),
        ] {
            assert!(origin_allowed(ok), "{ok:?}");
        }
        for bad in [
            "http://evil.example",
            "http://localhost.evil.example",
            "null",
            "http://127.0.0.1.nip.io",
            "file://",
            "http://localhost:abc",
        ] {
            assert!(!origin_allowed(Some(bad)), "{bad}");
        }
    }

    #[test]
    fn response_bytes() {
        let r = response(200, &[("Mcp-Session-Id", "abc")], b"{}", true, true);
        assert_eq!(
            r,
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nMcp-Session-Id: abc\r\nConnection: keep-alive\r\n\r\n{}"
        );
        let r = response(202, &[], b"", false, false);
        assert_eq!(
            r,
            b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
    }
}
