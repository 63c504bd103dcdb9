//! "Playing the browser": a minimal blocking HTTP/1.1 GET over plain TCP (loopback `http://`
//! only, no redirects followed), enough to hit `/authorize` and then a loopback redirect URI.
//!
//! Blocking: from a `#[tokio::test]` whose runtime also drives the redirect listener under test,
//! call it inside `tokio::task::spawn_blocking`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use url::Url;

use crate::error::{HarnessError, IoContext};

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lower-cased) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (as received; chunked bodies are de-chunked).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// GETs `url` (an `http://` URL) and returns the response without following redirects.
pub fn get(url: &str) -> Result<HttpResponse, HarnessError> {
    let parsed = Url::parse(url).map_err(|e| HarnessError::Other(format!("bad URL {url}: {e}")))?;
    if parsed.scheme() != "http" {
        return Err(HarnessError::Other(format!("only http:// URLs: {url}")));
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| HarnessError::Other(format!("no host in {url}")))?;
    let port = parsed.port_or_known_default().unwrap_or(80);
    let mut target = parsed.path().to_string();
    if let Some(q) = parsed.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut stream = TcpStream::connect((host.trim_matches(['[', ']']), port))
        .ctx(|| format!("connecting to {host}:{port}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .ctx(|| "setting a read timeout")?;
    let request = format!(
        "GET {target} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: mailoauth-harness\r\n\
         Accept: text/html\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ctx(|| "sending")?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ctx(|| "reading")?;
    parse_response(&raw)
}

/// GETs an authorization URL and returns the `Location` it redirects to (the redirect URI with
/// `code`/`state` or `error`). Errors if the answer is not a redirect.
pub fn authorize(url: &str) -> Result<String, HarnessError> {
    let response = get(url)?;
    match (response.status, response.header("location")) {
        (300..=399, Some(location)) => Ok(location.to_string()),
        (status, _) => Err(HarnessError::Other(format!(
            "authorization answered {status}, not a redirect: {}",
            response.text()
        ))),
    }
}

fn parse_response(raw: &[u8]) -> Result<HttpResponse, HarnessError> {
    let bad = |what: &str| HarnessError::Other(format!("malformed HTTP response: {what}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or_else(|| bad("empty"))?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body).ok_or_else(|| bad("chunked body"))?;
    }
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..eol]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_chunked_responses() {
        let r = parse_response(b"HTTP/1.1 302 Found\r\nLocation: http://x/\r\n\r\n").unwrap();
        assert_eq!(r.status, 302);
        assert_eq!(r.header("LOCATION"), Some("http://x/"));
        let r = parse_response(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, b"abcde");
    }
}
