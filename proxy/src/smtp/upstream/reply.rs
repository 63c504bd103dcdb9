//! SMTP replies from the server (RFC 5321 §4.2): framing, one complete reply at a time, and the
//! pieces the login needs (the code, the texts, the EHLO keywords).
//!
//! `Reply-line = *( Reply-code "-" [ textstring ] CRLF ) Reply-code [ SP textstring ] CRLF`: every
//! line but the last has `-` after the code, and all carry the same code. A bare LF ends a line
//! too (the server is trusted to that extent, and nothing hangs). The framer never takes bytes
//! past the end of a reply, so what follows a `235` (the spliced stream) or a STARTTLS `220`
//! (injected plaintext) is left to the caller.

/// The most bytes one reply may have, line endings included.
pub const MAX_REPLY: usize = 64 * 1024;

/// One complete reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    pub(super) code: u16,
    /// Each line's text, without the code, the separator and the line ending.
    pub(super) lines: Vec<Vec<u8>>,
    /// The reply exactly as received.
    pub(super) raw: Vec<u8>,
}

impl Reply {
    /// The code's class: 2, 3, 4 or 5.
    pub(super) fn class(&self) -> u16 {
        self.code / 100
    }

    /// The code and the texts of all lines, as one line fit for messages and logs.
    pub(super) fn text(&self) -> String {
        let joined = self
            .lines
            .iter()
            .map(|l| String::from_utf8_lossy(l).trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        display_text(&format!("{} {joined}", self.code))
    }

    /// The first line's text (a `334` challenge).
    pub(super) fn first_text(&self) -> &[u8] {
        self.lines.first().map_or(&[][..], Vec::as_slice)
    }

    /// An EHLO reply's keyword lines: every line but the first, as received.
    pub(super) fn keywords(&self) -> Vec<String> {
        self.lines
            .iter()
            .skip(1)
            .map(|l| String::from_utf8_lossy(l).into_owned())
            .collect()
    }
}

/// Why the server's bytes are not a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum FrameError {
    /// Over [`MAX_REPLY`].
    TooLong,
    /// A line that is not `ddd`, `ddd text` or `ddd-text`, or a code that changes mid-reply.
    Malformed,
}

/// Collects the bytes of the reply in progress.
#[derive(Default)]
pub(super) struct Framer {
    raw: Vec<u8>,
    /// Where the current line starts in `raw`.
    line_start: usize,
    code: Option<u16>,
    lines: Vec<Vec<u8>>,
}

impl Framer {
    /// Takes bytes from `input` up to the end of one reply at most: the number taken, and the
    /// reply when it is complete.
    pub(super) fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Reply>), FrameError> {
        let mut taken = 0;
        while taken < input.len() {
            let rest = &input[taken..];
            let (n, line_ends) = match rest.iter().position(|&b| b == b'\n') {
                Some(lf) => (lf + 1, true),
                None => (rest.len(), false),
            };
            if self.raw.len() + n > MAX_REPLY {
                return Err(FrameError::TooLong);
            }
            self.raw.extend_from_slice(&rest[..n]);
            taken += n;
            if !line_ends {
                break;
            }
            if let Some(reply) = self.on_line()? {
                return Ok((taken, Some(reply)));
            }
        }
        Ok((taken, None))
    }

    /// A complete line is at the end of `raw`; the reply if it was the last line.
    fn on_line(&mut self) -> Result<Option<Reply>, FrameError> {
        let mut line = &self.raw[self.line_start..];
        line = line.strip_suffix(b"\n").unwrap_or(line);
        line = line.strip_suffix(b"\r").unwrap_or(line);
        let (code, last, text) = parse_line(line).ok_or(FrameError::Malformed)?;
        if self.code.is_some_and(|c| c != code) {
            return Err(FrameError::Malformed);
        }
        self.code = Some(code);
        self.lines.push(text.to_vec());
        self.line_start = self.raw.len();
        if !last {
            return Ok(None);
        }
        let framer = std::mem::take(self);
        Ok(Some(Reply {
            code,
            lines: framer.lines,
            raw: framer.raw,
        }))
    }
}

/// `(code, last line, text)` of one line without its line ending.
fn parse_line(line: &[u8]) -> Option<(u16, bool, &[u8])> {
    let digits = line.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Some((code, true, &[])),
        Some(b' ') => Some((code, true, &line[4..])),
        Some(b'-') => Some((code, false, &line[4..])),
        Some(_) => None,
    }
}

/// Server text made safe to show: lossy UTF-8, controls as spaces, at most 300 characters.
pub(super) fn display_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(300)
        .collect();
    cleaned.trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame_all(input: &[u8]) -> Result<Vec<Reply>, FrameError> {
        let mut framer = Framer::default();
        let mut rest = input;
        let mut out = Vec::new();
        while !rest.is_empty() {
            let (taken, reply) = framer.push(rest)?;
            rest = &rest[taken..];
            out.extend(reply);
        }
        Ok(out)
    }

    #[test]
    fn multi_line_replies_and_their_parts() {
        let input =
            b"250-smtp.example at your service\r\n250-SIZE 35882577\r\n250-AUTH=LOGIN\n250-X";
        let mut framer = Framer::default();
        let (taken, reply) = framer.push(input).unwrap();
        assert_eq!((taken, reply), (input.len(), None));
        let (taken, reply) = framer.push(b"\r\n250 SMTPUTF8\r\n235 ok\r\n").unwrap();
        assert_eq!(taken, 16, "the next reply is not taken");
        let reply = reply.unwrap();
        assert_eq!(reply.code, 250);
        assert_eq!(
            reply.keywords(),
            ["SIZE 35882577", "AUTH=LOGIN", "X", "SMTPUTF8"]
        );
        assert_eq!(reply.raw.len(), input.len() + 16);
        assert_eq!(
            reply.text(),
            "250 smtp.example at your service SIZE 35882577 AUTH=LOGIN X SMTPUTF8"
        );
        let replies = frame_all(b"220\r\n334 \r\n334 eyJ9\r\n535 5.7.8 \x1b[1mno\r\n").unwrap();
        let codes: Vec<u16> = replies.iter().map(|r| r.code).collect();
        assert_eq!(codes, [220, 334, 334, 535]);
        assert_eq!(replies[1].first_text(), b"");
        assert_eq!(replies[2].first_text(), b"eyJ9");
        assert_eq!(replies[3].text(), "535 5.7.8  [1mno");
        assert_eq!(replies[3].class(), 5);
    }

    #[test]
    fn malformed_and_oversized_replies() {
        for bad in [
            &b"25\r\n"[..],
            b"2x0 hi\r\n",
            b"250_hi\r\n",
            b"\r\n",
            b"250-a\r\n251 b\r\n",
            b"hello\r\n",
        ] {
            assert_eq!(frame_all(bad), Err(FrameError::Malformed), "{bad:?}");
        }
        let long = [b"250-".to_vec(), vec![b'x'; MAX_REPLY]].concat();
        assert_eq!(frame_all(&long), Err(FrameError::TooLong));
        // Exactly the limit passes.
        let exact = [
            b"250 ".to_vec(),
            vec![b'x'; MAX_REPLY - 6],
            b"\r\n".to_vec(),
        ]
        .concat();
        assert_eq!(frame_all(&exact).unwrap().len(), 1);
    }
}
