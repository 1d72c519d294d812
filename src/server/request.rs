//! One request's head, parsed strictly into tiny_http's types. The endpoint needs only the
//! method, the path and the framing headers; anything it cannot frame safely is refused.
use std::str::FromStr;

use tiny_http::{HTTPVersion, Header, Method};

/// Why a request was refused before any route saw it: the status and a short reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub status: u16,
    pub reason: &'static str,
}

impl Rejection {
    pub(crate) const fn new(status: u16, reason: &'static str) -> Rejection {
        Rejection { status, reason }
    }
}

const MALFORMED_LINE: Rejection = Rejection::new(400, "malformed request line");
const MALFORMED_HEADER: Rejection = Rejection::new(400, "malformed header");

/// A parsed request head.
#[derive(Debug)]
pub(crate) struct Request {
    pub method: Method,
    pub target: String,
    pub version: HTTPVersion,
    pub headers: Vec<Header>,
}

impl Request {
    /// Parses a complete head (request line, headers, empty line). Lines end in CRLF or LF.
    pub(crate) fn parse(head: &[u8]) -> Result<Request, Rejection> {
        let text = std::str::from_utf8(head).ok().filter(|t| t.is_ascii()).ok_or(Rejection::new(400, "request head is not ASCII"))?;
        let mut lines = text.split('\n').map(|line| line.strip_suffix('\r').unwrap_or(line));
        let (method, target, version) = parse_request_line(lines.next().unwrap_or(""))?;
        let mut headers = Vec::new();
        for line in lines.take_while(|line| !line.is_empty()) {
            headers.push(parse_header(line)?);
        }
        Ok(Request { method, target: target.to_owned(), version, headers })
    }

    /// The path without query string or fragment: routes ignore both.
    pub(crate) fn path(&self) -> &str {
        let target = origin_form(&self.target);
        let end = target.find(['?', '#']).unwrap_or(target.len());
        &target[..end]
    }

    fn header_values<'a>(&'a self, name: &'static str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers.iter().filter(move |h| h.field.equiv(name)).map(|h| h.value.as_str())
    }

    /// Body length to read and discard. Chunked bodies are refused (411): a body has no use
    /// here, and only a declared length can be checked against the limit before reading.
    pub(crate) fn content_length(&self) -> Result<u64, Rejection> {
        if self.header_values("Transfer-Encoding").next().is_some() {
            return Err(Rejection::new(411, "send a Content-Length, not Transfer-Encoding"));
        }
        let mut length = None;
        for value in self.header_values("Content-Length") {
            let parsed = Some(value)
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or(Rejection::new(400, "invalid Content-Length"))?;
            if length.is_some_and(|l| l != parsed) {
                return Err(Rejection::new(400, "conflicting Content-Length headers"));
            }
            length = Some(parsed);
        }
        Ok(length.unwrap_or(0))
    }

    /// Whether the client asked for `100 Continue` before sending its body.
    pub(crate) fn expects_continue(&self) -> bool {
        self.header_values("Expect").any(|v| v.eq_ignore_ascii_case("100-continue"))
    }

    /// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 connections are closed
    /// (the response carries no `Connection: keep-alive`).
    pub(crate) fn keep_alive(&self) -> bool {
        self.version == HTTPVersion(1, 1)
            && !self.header_values("Connection").any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("close")))
    }
}

/// `METHOD SP target SP HTTP/x.y`, nothing more.
pub(crate) fn parse_request_line(line: &str) -> Result<(Method, &str, HTTPVersion), Rejection> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(MALFORMED_LINE);
    };
    if !is_token(method) || target.is_empty() || target.bytes().any(|b| b.is_ascii_control()) {
        return Err(MALFORMED_LINE);
    }
    let version = match version {
        "HTTP/1.1" => HTTPVersion(1, 1),
        "HTTP/1.0" => HTTPVersion(1, 0),
        v if is_http_version(v) => return Err(Rejection::new(505, "only HTTP/1.0 and HTTP/1.1 are served")),
        _ => return Err(MALFORMED_LINE),
    };
    let method = Method::from_str(method).map_err(|_| MALFORMED_LINE)?;
    Ok((method, target, version))
}

/// Refuses garbage as soon as it arrives instead of waiting for a head that will never come:
/// checks the request line, or the method so far while the line is incomplete.
pub(crate) fn check_partial(received: &[u8]) -> Result<(), Rejection> {
    let line_end = received.iter().position(|&b| b == b'\n');
    let line = &received[..line_end.unwrap_or(received.len())];
    match line_end {
        Some(_) => {
            let line = std::str::from_utf8(line).map_err(|_| MALFORMED_LINE)?;
            parse_request_line(line.strip_suffix('\r').unwrap_or(line)).map(|_| ())
        }
        None => {
            let method_end = line.iter().position(|&b| b == b' ').unwrap_or(line.len());
            let method_ok = line[..method_end].iter().all(|&b| is_tchar(b)) && (method_end > 0 || line.is_empty());
            if method_ok {
                Ok(())
            } else {
                Err(MALFORMED_LINE)
            }
        }
    }
}

fn parse_header(line: &str) -> Result<Header, Rejection> {
    // Obsolete line folding and a space before the colon are refused (RFC 9112 §5).
    let name = line.split(':').next().unwrap_or("");
    if !line.contains(':') || !is_token(name) {
        return Err(MALFORMED_HEADER);
    }
    let header = Header::from_str(line).map_err(|_| MALFORMED_HEADER)?;
    if header.value.as_str().bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(MALFORMED_HEADER);
    }
    Ok(header)
}

fn is_http_version(v: &str) -> bool {
    let b = v.as_bytes();
    b.len() == 8 && v.starts_with("HTTP/") && b[5].is_ascii_digit() && b[6] == b'.' && b[7].is_ascii_digit()
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// RFC 9110 §5.6.2 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// RFC 9112 §3.2.2: a server must accept the absolute form (`http://host/path`) too; routing
/// uses its path.
fn origin_form(target: &str) -> &str {
    let lower = target.get(..8).map(str::to_ascii_lowercase).unwrap_or_default();
    let scheme = if lower.starts_with("http://") {
        7
    } else if lower.starts_with("https://") {
        8
    } else {
        return target;
    };
    let rest = &target[scheme..];
    match rest.find(['/', '?', '#']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        _ => "/",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_request_with_crlf_or_lf() {
        for head in ["GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", "GET /health?x=1 HTTP/1.1\nHost: a\n\n"] {
            let rq = Request::parse(head.as_bytes()).unwrap();
            assert_eq!(rq.method, Method::Get);
            assert_eq!(rq.path(), "/health");
            assert_eq!(rq.version, HTTPVersion(1, 1));
            assert_eq!(rq.headers.len(), 1);
            assert!(rq.keep_alive());
            assert_eq!(rq.content_length(), Ok(0));
        }
    }

    #[test]
    fn refuses_malformed_heads() {
        let bad = [
            "GET /health\r\n\r\n",
            "GET  /health HTTP/1.1\r\n\r\n",
            "G(T / HTTP/1.1\r\n\r\n",
            "GET / HTTP/1.1 extra\r\n\r\n",
            "GET / FTP/1.1\r\n\r\n",
            "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
            "GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET / HTTP/1.1\r\nName : x\r\n\r\n",
            "GET / HTTP/1.1\r\n folded\r\n\r\n",
            "GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            "GET /\u{e9} HTTP/1.1\r\n\r\n",
        ];
        for head in bad {
            assert_eq!(Request::parse(head.as_bytes()).unwrap_err().status, 400, "{head:?}");
        }
        assert_eq!(Request::parse(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status, 505);
    }

    #[test]
    fn framing_headers() {
        let rq = |h: &str| Request::parse(format!("GET / HTTP/1.1\r\n{h}\r\n\r\n").as_bytes()).unwrap();
        assert_eq!(rq("Content-Length: 12").content_length(), Ok(12));
        assert_eq!(rq("Content-Length: 12\r\ncontent-length: 12").content_length(), Ok(12));
        assert_eq!(rq("Content-Length: 12\r\nContent-Length: 13").content_length().unwrap_err().status, 400);
        assert_eq!(rq("Content-Length: -1").content_length().unwrap_err().status, 400);
        assert_eq!(rq("Content-Length: 99999999999999999999999").content_length().unwrap_err().status, 400);
        assert_eq!(rq("Transfer-Encoding: chunked").content_length().unwrap_err().status, 411);
        assert!(!rq("Connection: keep-alive, Close").keep_alive());
        assert!(rq("Expect: 100-continue").expects_continue());
        assert!(!Request::parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive());
    }

    #[test]
    fn partial_heads_are_judged_early() {
        assert!(check_partial(b"").is_ok());
        assert!(check_partial(b"GE").is_ok());
        assert!(check_partial(b"GET /heal").is_ok());
        assert!(check_partial(b"GET /health HTTP/1.1\r\nHost").is_ok());
        assert!(check_partial(b"\x16\x03\x01\x02\x00").is_err()); // a TLS ClientHello
        assert!(check_partial(b" GET").is_err());
        assert!(check_partial(b"hello world\r\n").is_err());
    }
}

