//! Framing and classifying what an IMAP server sends before login.
//!
//! Hand-written rather than imap-codec's `ResponseCodec`/`GreetingCodec`: the upstream core must
//! hand the client the server's responses byte for byte, so it keeps raw frames anyway and only
//! needs to know each frame's kind (continuation, untagged, tagged), its status word, its
//! response code and its text. imap-codec's decoders follow RFC 3501 strictly and reject lines
//! that RFC 9051 allows and servers send (`* BYE\r\n` and `a1 NO\r\n` with empty text, bare LF
//! line ends; probed with 2.0.0-alpha.10), and a response it does not model would fail a login
//! that only had to pass it along.
//!
//! A *frame* is one response: a line, and when that line ends with a literal announcement
//! (`{n}` or `{n+}` before the CRLF) the `n` octets that follow and the rest of the response,
//! which goes on after them. Frames are bounded by [`MAX_FRAME`].

/// The longest frame (one response with its literals) the core accepts.
pub const MAX_FRAME: usize = 64 * 1024;

/// Why a frame could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FrameError {
    /// The response grew past [`MAX_FRAME`] (a line without an end, or a literal too large).
    TooLong,
}

/// Splits the server's byte stream into frames, holding at most one incomplete frame.
#[derive(Debug, Default)]
pub(super) struct Framer {
    /// The frame read so far.
    buf: Vec<u8>,
    /// Where the current line of `buf` starts (after the last literal).
    line_start: usize,
    /// Literal octets still to come; 0 while reading a line.
    literal_left: usize,
}

impl Framer {
    /// Takes bytes from `input` until one frame is complete. Returns how many bytes it took and
    /// the frame when it is complete; bytes after the frame stay in `input`, untouched.
    pub(super) fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let mut taken = 0;
        while taken < input.len() {
            let rest = &input[taken..];
            if self.literal_left > 0 {
                let n = self.literal_left.min(rest.len());
                self.buf.extend_from_slice(&rest[..n]);
                self.literal_left -= n;
                taken += n;
                if self.literal_left == 0 {
                    self.line_start = self.buf.len();
                }
                continue;
            }
            let (n, line_done) = match rest.iter().position(|&b| b == b'\n') {
                Some(at) => (at + 1, true),
                None => (rest.len(), false),
            };
            if self.buf.len() + n > MAX_FRAME {
                return Err(FrameError::TooLong);
            }
            self.buf.extend_from_slice(&rest[..n]);
            taken += n;
            if !line_done {
                break;
            }
            match literal_announcement(&self.buf[self.line_start..]) {
                Some(len) if len > MAX_FRAME - self.buf.len() => return Err(FrameError::TooLong),
                Some(0) => self.line_start = self.buf.len(),
                Some(len) => self.literal_left = len,
                None => {
                    self.line_start = 0;
                    return Ok((taken, Some(std::mem::take(&mut self.buf))));
                }
            }
        }
        Ok((taken, None))
    }
}

/// The `n` of a line ending in `{n}` or `{n+}` (before CRLF or LF). Lengths that do not fit a
/// `usize` count as `usize::MAX` (too long, whatever the limit).
fn literal_announcement(line: &[u8]) -> Option<usize> {
    let line = strip_eol(line);
    let inner = line.strip_suffix(b"}")?;
    let inner = inner.strip_suffix(b"+").unwrap_or(inner);
    let open = inner.iter().rposition(|&b| b == b'{')?;
    let digits = &inner[open + 1..];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let len = digits.iter().try_fold(0usize, |acc, &d| {
        acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
    });
    Some(len.unwrap_or(usize::MAX))
}

/// `line` without its trailing CRLF or LF.
fn strip_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A status word: `OK`, `NO`, `BAD` (tagged or untagged), `PREAUTH`, `BYE` (untagged only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Status {
    Ok,
    No,
    Bad,
    Preauth,
    Bye,
}

/// What a frame is, judged by its first line.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Response<'a> {
    /// `+ …`: the text after `+ ` (a base64 challenge, or free text).
    Continuation(&'a [u8]),
    /// `* OK|NO|BAD|PREAUTH|BYE [code] text`.
    UntaggedStatus(Status, RespText<'a>),
    /// `* CAPABILITY …`: the capability list.
    UntaggedCapability(&'a [u8]),
    /// Any other untagged response (`* 3 EXISTS`, `* ENABLED`, `* ID …`).
    UntaggedOther,
    /// `tag OK|NO|BAD [code] text`.
    Tagged {
        tag: &'a [u8],
        status: Status,
        text: RespText<'a>,
    },
    /// Neither: a line that is not an IMAP response.
    Malformed,
}

/// A response's text with its optional `[code …]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RespText<'a> {
    /// The whole text after the status word (code included), as the server sent it.
    pub whole: &'a [u8],
    /// The response code's name (`CAPABILITY`, `ALERT`, …), if there is one.
    pub code: Option<&'a [u8]>,
    /// What follows the code's name inside the brackets.
    pub code_args: &'a [u8],
}

impl RespText<'_> {
    /// The capability list of a `[CAPABILITY …]` code.
    pub(super) fn capabilities(&self) -> Option<&[u8]> {
        self.code
            .filter(|c| c.eq_ignore_ascii_case(b"CAPABILITY"))
            .map(|_| self.code_args)
    }
}

/// Classifies a frame by its first line.
pub(super) fn classify(frame: &[u8]) -> Response<'_> {
    let first = match frame.iter().position(|&b| b == b'\n') {
        Some(at) => &frame[..=at],
        None => frame,
    };
    let line = strip_eol(first);
    if let Some(rest) = line.strip_prefix(b"+") {
        return Response::Continuation(rest.strip_prefix(b" ").unwrap_or(rest));
    }
    let Some((head, rest)) = split_word(line) else {
        return Response::Malformed;
    };
    let Some((word, rest)) = split_word(rest) else {
        return Response::Malformed;
    };
    if head == b"*" {
        if word.eq_ignore_ascii_case(b"CAPABILITY") {
            return Response::UntaggedCapability(rest);
        }
        return match status(word) {
            Some(s) => Response::UntaggedStatus(s, resp_text(rest)),
            None => Response::UntaggedOther,
        };
    }
    match status(word) {
        Some(s @ (Status::Ok | Status::No | Status::Bad)) => Response::Tagged {
            tag: head,
            status: s,
            text: resp_text(rest),
        },
        _ => Response::Malformed,
    }
}

/// Splits off the first space-separated word (non-empty); the rest may be empty.
fn split_word(s: &[u8]) -> Option<(&[u8], &[u8])> {
    let (word, rest) = match s.iter().position(|&b| b == b' ') {
        Some(at) => (&s[..at], &s[at + 1..]),
        None => (s, &s[s.len()..]),
    };
    (!word.is_empty()).then_some((word, rest))
}

fn status(word: &[u8]) -> Option<Status> {
    let all = [
        (&b"OK"[..], Status::Ok),
        (b"NO", Status::No),
        (b"BAD", Status::Bad),
        (b"PREAUTH", Status::Preauth),
        (b"BYE", Status::Bye),
    ];
    all.iter()
        .find(|(name, _)| word.eq_ignore_ascii_case(name))
        .map(|&(_, s)| s)
}

fn resp_text(whole: &[u8]) -> RespText<'_> {
    let mut text = RespText {
        whole,
        code: None,
        code_args: &[],
    };
    if let Some(inner) = whole.strip_prefix(b"[")
        && let Some(close) = inner.iter().position(|&b| b == b']')
    {
        let inside = &inner[..close];
        let (name, args) = split_word(inside).unwrap_or((inside, &[]));
        text.code = Some(name);
        text.code_args = args;
    }
    text
}

/// A server-supplied text made fit for a log line or an error message: lossy UTF-8, control
/// characters replaced, at most 300 characters.
pub(super) fn display_text(bytes: &[u8]) -> String {
    const MAX_CHARS: usize = 300;
    let text = String::from_utf8_lossy(bytes);
    let mut out: String = text
        .chars()
        .take(MAX_CHARS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    out.trim().to_string()
}

/// The capabilities a server announced, upper-cased.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Capabilities(Vec<String>);

impl Capabilities {
    /// Parses a space-separated capability list.
    pub(super) fn parse(list: &[u8]) -> Capabilities {
        Capabilities(
            list.split(|&b| b == b' ')
                .filter(|w| !w.is_empty())
                .map(|w| String::from_utf8_lossy(w).to_ascii_uppercase())
                .collect(),
        )
    }

    /// Whether `name` (upper case) is among them.
    pub(super) fn has(&self, name: &str) -> bool {
        self.0.iter().any(|c| c == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pushes `input` (in chunks of `chunk` bytes) and returns the frames and the leftover.
    fn frames(input: &[u8], chunk: usize) -> Result<(Vec<Vec<u8>>, Vec<u8>), FrameError> {
        let mut framer = Framer::default();
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            let mut piece = piece;
            while !piece.is_empty() {
                let (n, frame) = framer.push(piece)?;
                piece = &piece[n..];
                out.extend(frame);
            }
        }
        Ok((out, framer.buf))
    }

    #[test]
    fn frames_lines_and_literals_in_any_chunking() {
        let input = b"* OK hi\r\n* 1 FETCH (BODY[] {5}\r\na\r\nb) {0}\r\n)\r\na1 OK done\n* par";
        for chunk in [1, 2, 3, 7, input.len()] {
            let (frames, rest) = frames(input, chunk).unwrap();
            assert_eq!(
                frames,
                vec![
                    b"* OK hi\r\n".to_vec(),
                    b"* 1 FETCH (BODY[] {5}\r\na\r\nb) {0}\r\n)\r\n".to_vec(),
                    b"a1 OK done\n".to_vec(),
                ],
                "chunk {chunk}"
            );
            assert_eq!(rest, b"* par");
        }
    }

    #[test]
    fn non_sync_literals_and_odd_braces() {
        let (f, _) = frames(b"* X {3+}\r\n}\r\n\r\n* Y {x}\r\n* Z {}\r\n", 4).unwrap();
        assert_eq!(f.len(), 3);
        assert_eq!(f[0], b"* X {3+}\r\n}\r\n\r\n");
    }

    #[test]
    fn bounds_lines_and_literals() {
        let long = vec![b'a'; MAX_FRAME + 1];
        assert_eq!(frames(&long, 1000), Err(FrameError::TooLong));
        assert_eq!(
            frames(b"* X {65536}\r\n", 1),
            Err(FrameError::TooLong),
            "announced literal above the limit is refused before its data"
        );
        assert_eq!(
            frames(b"* X {99999999999999999999999}\r\n", 5),
            Err(FrameError::TooLong)
        );
        let exact = [&b"* X {65521}\r\n"[..], &vec![b'x'; 65521]].concat();
        assert_eq!(exact.len(), MAX_FRAME - 2);
        let (f, _) = frames(&[&exact[..], b"\r\n"].concat(), 999).unwrap();
        assert_eq!(f[0].len(), MAX_FRAME);
    }

    #[test]
    fn classifies_responses() {
        assert_eq!(classify(b"+ \r\n"), Response::Continuation(b""));
        assert_eq!(classify(b"+\r\n"), Response::Continuation(b""));
        assert_eq!(classify(b"+ eyJ9\r\n"), Response::Continuation(b"eyJ9"));
        assert_eq!(
            classify(b"* capability IMAP4rev1 SASL-IR\r\n"),
            Response::UntaggedCapability(b"IMAP4rev1 SASL-IR")
        );
        assert_eq!(classify(b"* 3 EXISTS\r\n"), Response::UntaggedOther);
        assert_eq!(classify(b"\r\n"), Response::Malformed);
        assert_eq!(classify(b"a1\r\n"), Response::Malformed);
        assert_eq!(classify(b"a1 FOO bar\r\n"), Response::Malformed);
        assert_eq!(classify(b"a1 PREAUTH x\r\n"), Response::Malformed);
        let Response::UntaggedStatus(Status::Bye, text) = classify(b"* BYE\r\n") else {
            panic!()
        };
        assert_eq!(text.whole, b"");
        let Response::Tagged { tag, status, text } =
            classify(b"a1 no [AUTHENTICATIONFAILED] Invalid credentials (Failure)\r\n")
        else {
            panic!()
        };
        assert_eq!((tag, status), (&b"a1"[..], Status::No));
        assert_eq!(text.code, Some(&b"AUTHENTICATIONFAILED"[..]));
        assert_eq!(text.code_args, b"");
        assert_eq!(
            text.whole,
            b"[AUTHENTICATIONFAILED] Invalid credentials (Failure)"
        );
        let Response::UntaggedStatus(Status::Ok, text) =
            classify(b"* OK [CAPABILITY IMAP4rev1 AUTH=XOAUTH2] ready\r\n")
        else {
            panic!()
        };
        assert_eq!(text.capabilities(), Some(&b"IMAP4rev1 AUTH=XOAUTH2"[..]));
        // Microsoft's greeting ends with a bracket; that is text, not a code.
        let Response::UntaggedStatus(Status::Ok, text) =
            classify(b"* OK The Microsoft Exchange IMAP4 service is ready. [TQBO]\r\n")
        else {
            panic!()
        };
        assert_eq!(text.code, None);
    }

    #[test]
    fn capabilities_are_case_insensitive() {
        let caps = Capabilities::parse(b"IMAP4rev1  sasl-ir Auth=XOAUTH2");
        assert!(caps.has("SASL-IR") && caps.has("AUTH=XOAUTH2") && !caps.has("STARTTLS"));
    }

    #[test]
    fn display_text_is_tame() {
        assert_eq!(display_text(b" a\x1b[31mb\x00 "), "a [31mb");
        let long = display_text(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), 301);
    }
}
