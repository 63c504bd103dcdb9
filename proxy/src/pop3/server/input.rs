//! The client's bytes, framed into lines.
//!
//! POP3 before login is lines only (RFC 1939 §3): a command line, or after `+ ` a SASL response
//! line. The bytes wait in one buffer; [`Input::next_line`] hands out the next complete line and
//! only then consumes it, so what follows a login command is still here, untouched, for
//! [`Input::leftover`].
//!
//! Bounds: a line may not exceed its limit (LF included); [`Line::TooLong`] is reported as soon as
//! the octet after the limit is seen, whether or not a line ending ever comes, so the decision
//! does not depend on how the input was chunked.

use zeroize::Zeroize;

/// One step of [`Input::next_line`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Line {
    /// No complete line yet: feed more bytes.
    NeedMore,
    /// The line in progress is over its limit.
    TooLong,
    /// A complete line, without its line ending (taken with [`Input::line`]).
    Complete {
        /// It ended with CRLF (else with a bare LF).
        crlf: bool,
    },
}

pub(super) struct Input {
    /// Bytes from the driver. Those before `consumed` were handed out as lines; the rest were
    /// not looked at. May hold passwords, so it is wiped on drop and at the STLS boundary.
    buffer: Vec<u8>,
    consumed: usize,
    /// The last complete line: `buffer[line.0..line.1]`, line ending excluded.
    line: (usize, usize),
}

impl Input {
    pub(super) fn new() -> Input {
        Input {
            buffer: Vec::new(),
            consumed: 0,
            line: (0, 0),
        }
    }

    /// Appends bytes from the client.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            // Move the unread bytes to the front, wiping what moved out of use.
            let unread = self.buffer.len() - self.consumed;
            self.buffer.copy_within(self.consumed.., 0);
            self.buffer[unread..].zeroize();
            self.buffer.truncate(unread);
            self.consumed = 0;
            self.line = (0, 0);
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// The next line, if complete and within `limit(first octets of the line)` octets (line
    /// ending included). `limit` gets the line's first octets so far and must not shrink as more
    /// of them are known.
    pub(super) fn next_line(&mut self, limit: impl Fn(&[u8]) -> usize) -> Line {
        let unread = &self.buffer[self.consumed..];
        match unread.iter().position(|&b| b == b'\n') {
            Some(lf) => {
                if lf + 1 > limit(&unread[..lf]) {
                    return Line::TooLong;
                }
                let crlf = lf > 0 && unread[lf - 1] == b'\r';
                let end = self.consumed + lf - usize::from(crlf);
                self.line = (self.consumed, end);
                self.consumed += lf + 1;
                Line::Complete { crlf }
            }
            None if unread.len() > limit(unread) => Line::TooLong,
            None => Line::NeedMore,
        }
    }

    /// The last complete line, without its line ending.
    pub(super) fn line(&self) -> &[u8] {
        &self.buffer[self.line.0..self.line.1]
    }

    /// Forgets everything received so far (the STLS boundary).
    pub(super) fn discard_all(&mut self) {
        self.buffer.zeroize();
        self.buffer.clear();
        self.consumed = 0;
        self.line = (0, 0);
    }

    /// The bytes not handed out yet: after a login command, exactly what the client sent after
    /// it.
    pub(super) fn leftover(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_limits_and_leftover() {
        let mut input = Input::new();
        input.push(b"CAPA\r\nUSER a\nPA");
        assert_eq!(input.next_line(|_| 10), Line::Complete { crlf: true });
        assert_eq!(input.line(), b"CAPA");
        assert_eq!(input.next_line(|_| 10), Line::Complete { crlf: false });
        assert_eq!(input.line(), b"USER a");
        assert_eq!(input.next_line(|_| 10), Line::NeedMore);
        assert_eq!(input.leftover(), b"PA");
        input.push(b"SS x\r");
        assert_eq!(input.next_line(|_| 10), Line::NeedMore);
        input.push(b"\n");
        assert_eq!(input.next_line(|_| 10), Line::Complete { crlf: true });
        assert_eq!(input.line(), b"PASS x");
        // Exactly at the limit (CRLF included), then one over, with and without an ending.
        input.push(b"12345678\r\n");
        assert_eq!(input.next_line(|_| 10), Line::Complete { crlf: true });
        input.push(b"123456789\r\n");
        assert_eq!(input.next_line(|_| 10), Line::TooLong);
        let mut input = Input::new();
        input.push(b"12345678901");
        assert_eq!(input.next_line(|_| 10), Line::TooLong);
        // The limit can depend on the line's start.
        let mut input = Input::new();
        input.push(b"AUTH 123456789\r\n");
        let limit = |l: &[u8]| if l.starts_with(b"AUTH ") { 100 } else { 10 };
        assert_eq!(input.next_line(limit), Line::Complete { crlf: true });
        input.push(b"\r\n\n");
        assert_eq!(input.next_line(limit), Line::Complete { crlf: true });
        assert_eq!(input.line(), b"");
        assert_eq!(input.next_line(limit), Line::Complete { crlf: false });
        assert_eq!(input.line(), b"");
        input.push(b"x\r\ny");
        input.discard_all();
        assert_eq!(input.next_line(limit), Line::NeedMore);
        assert_eq!(input.leftover(), b"");
    }
}
