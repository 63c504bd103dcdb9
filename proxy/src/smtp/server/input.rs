//! The client's bytes, framed into lines, with the skipping SMTP needs: the rest of a line that
//! passed its limit, and the data of a `BDAT` chunk the core refuses (RFC 3030 §2: the chunk
//! follows the command without waiting for a reply, so it must be read and dropped, never read
//! as commands).
//!
//! Bounds: a command line may hold `max_line` octets (line ending included), or `max_auth_line`
//! when it starts with `AUTH ` (an initial response for a long password); a SASL response line
//! `max_auth_line`. [`Next::TooLong`] is reported as soon as the octet after the limit is seen,
//! whether or not a line ending ever comes, so the decision does not depend on the chunking. The
//! rest of that line is then dropped as it arrives; once the whole line passes [`MAX_ENDLESS`]
//! octets, [`Next::Endless`] says that it is time to close.

use zeroize::Zeroize;

/// A line longer than this (line ending included), even one being dropped, ends the connection.
pub(crate) const MAX_ENDLESS: usize = 64 * 1024;

/// One step of [`Input::next`].
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Feed more bytes.
    NeedMore,
    /// A complete line; its bytes (without the line ending) are [`Input::line`].
    Line {
        /// The line ended with CRLF (else with a bare LF).
        crlf: bool,
    },
    /// The current line passed its limit; the rest of it will be dropped.
    TooLong,
    /// The line being dropped passed [`MAX_ENDLESS`] octets.
    Endless,
}

/// What the next line is, for its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    Command,
    AuthResponse,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Skip {
    Nothing,
    /// The rest of an over-long line; `seen` octets of it so far.
    Line {
        seen: usize,
    },
    /// The octets of a refused BDAT chunk.
    Octets(u64),
}

pub(super) struct Input {
    /// Bytes from the driver; those before `consumed` were processed. May hold passwords, so it
    /// is wiped when compacted and when dropped.
    buffer: Vec<u8>,
    consumed: usize,
    /// The last complete line (without its line ending), as a range of `buffer`.
    line: (usize, usize),
    skip: Skip,
    max_line: usize,
    max_auth_line: usize,
}

impl Input {
    pub(super) fn new(max_line: usize, max_auth_line: usize) -> Input {
        Input {
            buffer: Vec::new(),
            consumed: 0,
            line: (0, 0),
            skip: Skip::Nothing,
            max_line,
            max_auth_line,
        }
    }

    /// Appends bytes from the client.
    pub(super) fn push(&mut self, bytes: &[u8]) {
        if self.consumed > 0 {
            let unread = self.buffer.len() - self.consumed;
            self.buffer.copy_within(self.consumed.., 0);
            self.buffer[unread..].zeroize();
            self.buffer.truncate(unread);
            self.consumed = 0;
            self.line = (0, 0);
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Drops what is to be skipped, then frames the next line.
    pub(super) fn next(&mut self, kind: Kind) -> Next {
        loop {
            let unread = &self.buffer[self.consumed..];
            match self.skip {
                Skip::Nothing => break,
                Skip::Octets(remaining) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(unread.len());
                    self.consumed += take;
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.skip = Skip::Octets(remaining);
                        return Next::NeedMore;
                    }
                    self.skip = Skip::Nothing;
                }
                Skip::Line { seen } => {
                    let (take, ended) = match unread.iter().position(|&b| b == b'\n') {
                        Some(lf) => (lf + 1, true),
                        None => (unread.len(), false),
                    };
                    self.consumed += take;
                    let seen = seen.saturating_add(take);
                    self.skip = if ended {
                        Skip::Nothing
                    } else {
                        Skip::Line { seen }
                    };
                    if seen > MAX_ENDLESS {
                        self.skip = Skip::Nothing;
                        return Next::Endless;
                    }
                    if !ended {
                        return Next::NeedMore;
                    }
                }
            }
        }
        let unread = &self.buffer[self.consumed..];
        let limit = self.limit(kind, unread);
        match unread.iter().position(|&b| b == b'\n') {
            Some(lf) if lf < limit => {
                let crlf = lf > 0 && unread[lf - 1] == b'\r';
                let end = self.consumed + lf - usize::from(crlf);
                self.line = (self.consumed, end);
                self.consumed += lf + 1;
                Next::Line { crlf }
            }
            Some(_) => {
                self.skip = Skip::Line { seen: 0 };
                Next::TooLong
            }
            None if unread.len() > limit => {
                self.skip = Skip::Line { seen: 0 };
                Next::TooLong
            }
            None => Next::NeedMore,
        }
    }

    /// The most octets a line of `kind` that starts like `unread` may have.
    fn limit(&self, kind: Kind, unread: &[u8]) -> usize {
        match kind {
            Kind::AuthResponse => self.max_auth_line,
            Kind::Command if starts_with_auth(unread) => self.max_auth_line.max(self.max_line),
            Kind::Command => self.max_line,
        }
    }

    /// The last complete line, without its line ending.
    pub(super) fn line(&self) -> &[u8] {
        &self.buffer[self.line.0..self.line.1]
    }

    /// Drops the next `octets` octets (a refused BDAT chunk), as they arrive.
    pub(super) fn skip_octets(&mut self, octets: u64) {
        if octets > 0 {
            self.skip = Skip::Octets(octets);
        }
    }

    /// Forgets everything received so far (the STARTTLS boundary).
    pub(super) fn discard_all(&mut self) {
        self.buffer.zeroize();
        self.buffer.clear();
        self.consumed = 0;
        self.line = (0, 0);
        self.skip = Skip::Nothing;
    }

    /// The bytes not processed yet: after a complete line, exactly what the client sent after it.
    pub(super) fn leftover(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

/// `AUTH ` at the start, in any case. (Fewer octets than that cannot start an over-long line:
/// the core keeps `max_line` above 16.)
fn starts_with_auth(line: &[u8]) -> bool {
    line.len() >= 5 && line[..5].eq_ignore_ascii_case(b"AUTH ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &mut Input, kind: Kind) -> Vec<String> {
        let mut out = Vec::new();
        loop {
            match input.next(kind) {
                Next::NeedMore => return out,
                Next::Line { crlf } => out.push(format!(
                    "{}{}",
                    String::from_utf8_lossy(input.line()),
                    if crlf { "" } else { "<LF>" }
                )),
                other => out.push(format!("{other:?}")),
            }
        }
    }

    #[test]
    fn limits_count_the_line_ending() {
        let mut input = Input::new(20, 40);
        // 18 octets + CRLF = 20: fits; 19 + CRLF = 21: too long.
        input.push(&[b"x".repeat(18), b"\r\n".to_vec()].concat());
        input.push(&[b"y".repeat(19), b"\r\nok\n".to_vec()].concat());
        assert_eq!(
            lines(&mut input, Kind::Command),
            ["x".repeat(18), "TooLong".into(), "ok<LF>".into()]
        );
        // AUTH lines get the SASL limit.
        input.push(&[b"auth ".to_vec(), b"z".repeat(33), b"\r\n".to_vec()].concat());
        input.push(&[b"AUTH ".to_vec(), b"z".repeat(34), b"\r\n".to_vec()].concat());
        assert_eq!(
            lines(&mut input, Kind::Command),
            [format!("auth {}", "z".repeat(33)), "TooLong".into()]
        );
    }

    #[test]
    fn an_endless_line_ends_the_same_in_any_chunking() {
        for chunk in [1, 7, 4096, MAX_ENDLESS + 10] {
            let mut input = Input::new(100, 200);
            let data = [vec![b'a'; MAX_ENDLESS], b"\nnext\r\n".to_vec()].concat();
            let mut seen = Vec::new();
            for piece in data.chunks(chunk) {
                input.push(piece);
                seen.extend(lines(&mut input, Kind::Command));
            }
            assert_eq!(seen, ["TooLong", "Endless", "next"], "chunk {chunk}");
            // One octet less is only too long.
            let mut input = Input::new(100, 200);
            let data = [vec![b'a'; MAX_ENDLESS - 1], b"\nnext\r\n".to_vec()].concat();
            let mut seen = Vec::new();
            for piece in data.chunks(chunk) {
                input.push(piece);
                seen.extend(lines(&mut input, Kind::Command));
            }
            assert_eq!(seen, ["TooLong", "next"], "chunk {chunk}");
        }
    }

    #[test]
    fn skipped_octets_and_leftover() {
        let mut input = Input::new(100, 200);
        input.push(b"BDAT 5\r\nab\r\n");
        assert_eq!(input.next(Kind::Command), Next::Line { crlf: true });
        input.skip_octets(5);
        assert_eq!(input.next(Kind::Command), Next::NeedMore);
        input.push(b"\nNOOP\r\nrest");
        assert_eq!(lines(&mut input, Kind::Command), ["NOOP"]);
        assert_eq!(input.leftover(), b"rest");
        input.discard_all();
        assert_eq!(input.leftover(), b"");
    }
}
