//! Framing and classifying what a POP3 server sends before login: lines (RFC 1939 §3), each a
//! status (`+OK …`, `-ERR …`), a SASL continuation (`+ [base64]`, RFC 5034 §4), or a line of a
//! multi-line answer (CAPA's, RFC 2449 §5). Raw lines are kept: the `+OK` that ends the login
//! goes to the client byte for byte.

/// The longest line the core accepts (RFC 2449 §4 says 512 octets per response line; servers
/// that send long JSON challenges or long texts are allowed some room).
pub const MAX_LINE: usize = 64 * 1024;

/// Why a line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FrameError {
    /// A line grew past [`MAX_LINE`] without ending.
    TooLong,
}

/// Splits the server's byte stream into lines, holding at most one incomplete line.
#[derive(Debug, Default)]
pub(super) struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// Takes bytes from `input` until a line (LF included) is complete. Returns how many bytes
    /// it took and the line when it is complete; bytes after the line stay in `input`.
    pub(super) fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Vec<u8>>), FrameError> {
        let (n, done) = match input.iter().position(|&b| b == b'\n') {
            Some(at) => (at + 1, true),
            None => (input.len(), false),
        };
        if self.buf.len() + n > MAX_LINE {
            return Err(FrameError::TooLong);
        }
        self.buf.extend_from_slice(&input[..n]);
        Ok((n, done.then(|| std::mem::take(&mut self.buf))))
    }
}

/// What one line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply<'a> {
    /// `+OK [text]`.
    Ok(&'a [u8]),
    /// `-ERR [text]`.
    Err(&'a [u8]),
    /// `+` or `+ [base64]`: a SASL challenge (empty, or the error JSON after a token).
    Continuation(&'a [u8]),
    /// Anything else (a line of a multi-line answer, or garbage).
    Other(&'a [u8]),
}

/// Classifies `line` (with or without its line ending). Status words are matched without regard
/// to case, to be lenient.
pub(super) fn classify(line: &[u8]) -> Reply<'_> {
    let line = strip_ending(line);
    if let Some(text) = status(line, b"+OK") {
        Reply::Ok(text)
    } else if let Some(text) = status(line, b"-ERR") {
        Reply::Err(text)
    } else if line == b"+" {
        Reply::Continuation(b"")
    } else if let Some(rest) = line.strip_prefix(b"+ ") {
        Reply::Continuation(rest.trim_ascii())
    } else {
        Reply::Other(line)
    }
}

/// The text after `word` when `line` is `word` alone or `word` SP text.
fn status<'a>(line: &'a [u8], word: &[u8]) -> Option<&'a [u8]> {
    let head = line.get(..word.len())?;
    if !head.eq_ignore_ascii_case(word) {
        return None;
    }
    match &line[word.len()..] {
        [] => Some(b""),
        [b' ', text @ ..] => Some(text),
        _ => None,
    }
}

/// `line` without its CRLF or LF.
pub(super) fn strip_ending(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An `-ERR` text that says "not now" rather than "not you" (RFC 2449 §8, RFC 3206): `[IN-USE]`
/// (the maildrop is locked by another session), `[LOGIN-DELAY]` (logged in too recently),
/// `[SYS/TEMP]` (a passing server problem), or a sub-code of one of them.
pub(super) fn is_temporary(text: &[u8]) -> bool {
    let Some(code) = text
        .strip_prefix(b"[")
        .and_then(|rest| rest.split(|&b| b == b']').next())
        .filter(|_| text.contains(&b']'))
    else {
        return false;
    };
    [&b"IN-USE"[..], b"LOGIN-DELAY", b"SYS/TEMP"]
        .iter()
        .any(|temporary| {
            code.len() >= temporary.len()
                && code[..temporary.len()].eq_ignore_ascii_case(temporary)
                && (code.len() == temporary.len() || code[temporary.len()] == b'/')
        })
}

/// Server text for messages and logs: lossy UTF-8, control characters replaced, at most 300
/// characters.
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

/// The SASL mechanisms on CAPA's `SASL` lines, upper-cased.
pub(super) fn sasl_mechanisms(lines: &[String]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|line| {
            let mut words = line.split_ascii_whitespace();
            let tag = words.next()?;
            tag.eq_ignore_ascii_case("SASL")
                .then(|| words.map(str::to_ascii_uppercase).collect::<Vec<_>>())
        })
        .flatten()
        .collect()
}

/// Whether CAPA's lines list the tag `tag` (`STLS`).
pub(super) fn has_tag(lines: &[String], tag: &str) -> bool {
    lines.iter().any(|line| {
        line.split_ascii_whitespace()
            .next()
            .is_some_and(|t| t.eq_ignore_ascii_case(tag))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_in_any_chunking() {
        let mut framer = Framer::default();
        assert_eq!(framer.push(b"+OK hi"), Ok((6, None)));
        assert_eq!(
            framer.push(b"\r\n-ERR"),
            Ok((2, Some(b"+OK hi\r\n".to_vec())))
        );
        assert_eq!(
            framer.push(b"-ERR x\n+"),
            Ok((7, Some(b"-ERR x\n".to_vec())))
        );
        let mut framer = Framer::default();
        assert_eq!(framer.push(&vec![b'x'; MAX_LINE]), Ok((MAX_LINE, None)));
        assert_eq!(framer.push(b"\n"), Err(FrameError::TooLong));
        let mut framer = Framer::default();
        let mut line = vec![b'x'; MAX_LINE - 1];
        line.push(b'\n');
        assert_eq!(framer.push(&line), Ok((MAX_LINE, Some(line.clone()))));
    }

    #[test]
    fn replies() {
        assert_eq!(classify(b"+OK\r\n"), Reply::Ok(b""));
        assert_eq!(classify(b"+OK Logged in.\r\n"), Reply::Ok(b"Logged in."));
        assert_eq!(classify(b"+ok fine\n"), Reply::Ok(b"fine"));
        assert_eq!(classify(b"-ERR\r\n"), Reply::Err(b""));
        assert_eq!(
            classify(b"-ERR [AUTH] Authentication failed.\r\n"),
            Reply::Err(b"[AUTH] Authentication failed.")
        );
        assert_eq!(classify(b"+ \r\n"), Reply::Continuation(b""));
        assert_eq!(classify(b"+\r\n"), Reply::Continuation(b""));
        assert_eq!(classify(b"+ eyJ9 \r\n"), Reply::Continuation(b"eyJ9"));
        assert_eq!(classify(b"+OKAY\r\n"), Reply::Other(b"+OKAY"));
        assert_eq!(classify(b"-ERROR\r\n"), Reply::Other(b"-ERROR"));
        assert_eq!(classify(b"TOP\r\n"), Reply::Other(b"TOP"));
        assert_eq!(classify(b"\r\n"), Reply::Other(b""));
    }

    #[test]
    fn temporary_codes() {
        for text in [
            &b"[IN-USE] Mailbox locked"[..],
            b"[LOGIN-DELAY] Wait",
            b"[SYS/TEMP] Try later",
            b"[sys/temp/overload] x",
            b"[IN-USE]",
        ] {
            assert!(is_temporary(text), "{text:?}");
        }
        for text in [
            &b"[AUTH] Authentication failed."[..],
            b"[SYS/PERM] Gone",
            b"[SYS/TEMPORARY] x",
            b"[IN-USE x",
            b"IN-USE",
            b"Authentication failure [SYS/TEMP]",
            b"",
        ] {
            assert!(!is_temporary(text), "{text:?}");
        }
    }

    #[test]
    fn capa_lines() {
        let lines: Vec<String> = ["USER", "SASL PLAIN XOAUTH2", "sasl oauthbearer", "STLS"]
            .map(String::from)
            .to_vec();
        assert_eq!(sasl_mechanisms(&lines), ["PLAIN", "XOAUTH2", "OAUTHBEARER"]);
        assert!(has_tag(&lines, "stls"));
        assert!(!has_tag(&lines, "TOP"));
        assert!(sasl_mechanisms(&["SASLX XOAUTH2".to_string()]).is_empty());
    }

    #[test]
    fn display_text_is_tame() {
        assert_eq!(display_text(b" a\x1b[31mb\x00 "), "a [31mb");
        let long = display_text(&[b'x'; 1000]);
        assert_eq!(long.chars().count(), 301);
    }
}
