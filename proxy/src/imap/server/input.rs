//! The client's bytes, framed into lines and literals.
//!
//! imap-codec's [`Fragmentizer`] does the framing (line endings, `{n}`/`{n+}` announcements,
//! the current message's bytes, the tag of a broken message). It is handed only the bytes of the
//! fragment in progress — up to the next LF, or the rest of an accepted literal — and the others
//! wait in our own buffer. So the Fragmentizer never holds bytes beyond the current message, and
//! what follows a LOGIN is still here, untouched, for [`Input::leftover`].
//!
//! Bounds: a line may not exceed `max_line` octets (LF included) and a message (lines and
//! literals) may not exceed `max_message`; [`Next::TooLong`] is reported as soon as the octet
//! after the limit is seen, whether or not a line ending ever comes, so the decision does not
//! depend on how the input was chunked. Literal lengths are the core's business: it accepts a
//! literal (and only then does this reader count its octets) or skips the message.

use imap_codec::fragmentizer::{FragmentInfo, Fragmentizer, LiteralAnnouncement};
use zeroize::Zeroize;

/// One step of [`Input::next`].
pub(super) enum Next {
    /// The current fragment is not complete yet: feed more bytes.
    NeedMore,
    /// The current line or message is over its limit.
    TooLong,
    /// A complete line (the message is complete unless it announces a literal).
    Line {
        /// The literal announced at the end of the line, if any.
        announcement: Option<LiteralAnnouncement>,
        /// The line ended with CRLF (else with a bare LF).
        crlf: bool,
    },
    /// The literal in progress is complete; a line follows.
    Literal,
}

/// What the next octets are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Line,
    Literal { remaining: u32 },
}

pub(super) struct Input {
    /// Bytes from the driver. Those before `consumed` went to the fragmentizer already; the
    /// rest were not looked at. May hold passwords, so it is wiped when the core is dropped
    /// (best effort: the fragmentizer's copy of the current message cannot be wiped).
    buffer: Vec<u8>,
    consumed: usize,
    fragmentizer: Fragmentizer,
    expect: Expect,
    /// Octets of the current line and of the current message handed over so far.
    line_len: usize,
    message_len: usize,
    max_line: usize,
    max_message: usize,
}

impl Input {
    pub(super) fn new(max_line: usize, max_message: usize) -> Input {
        Input {
            buffer: Vec::new(),
            consumed: 0,
            fragmentizer: new_fragmentizer(max_message),
            expect: Expect::Line,
            line_len: 0,
            message_len: 0,
            max_line,
            max_message,
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
        }
        self.buffer.extend_from_slice(bytes);
    }

    /// Hands the next fragment's bytes to the fragmentizer and reports what it found.
    pub(super) fn next(&mut self) -> Next {
        let unread = &self.buffer[self.consumed..];
        let take = match self.expect {
            Expect::Line => {
                let take = unread
                    .iter()
                    .position(|&b| b == b'\n')
                    .map_or(unread.len(), |lf| lf + 1);
                if self.line_len + take > self.max_line {
                    return Next::TooLong;
                }
                if take == 0 {
                    return Next::NeedMore;
                }
                take
            }
            Expect::Literal { remaining } => {
                let take = unread.len().min(remaining as usize);
                // A zero-length literal is complete without any octet; the fragmentizer still
                // has to be asked for it.
                if take == 0 && remaining > 0 {
                    return Next::NeedMore;
                }
                take
            }
        };
        if self.message_len + take > self.max_message {
            return Next::TooLong;
        }
        self.fragmentizer.enqueue_bytes(&unread[..take]);
        self.consumed += take;
        self.message_len += take;
        if self.expect == Expect::Line {
            self.line_len += take;
        }
        let fragment = self.fragmentizer.progress();
        if self.fragmentizer.is_max_message_size_exceeded() {
            return Next::TooLong;
        }
        match fragment {
            None => {
                if let Expect::Literal { remaining } = &mut self.expect {
                    // `take` < `remaining` here, else the literal would be complete.
                    *remaining -= take as u32;
                }
                Next::NeedMore
            }
            Some(FragmentInfo::Line {
                announcement,
                ending,
                ..
            }) => {
                self.line_len = 0;
                match announcement {
                    Some(literal) => {
                        self.expect = Expect::Literal {
                            remaining: literal.length,
                        };
                    }
                    None => self.message_len = 0,
                }
                Next::Line {
                    announcement,
                    crlf: ending == imap_codec::fragmentizer::LineEnding::CrLf,
                }
            }
            Some(FragmentInfo::Literal { .. }) => {
                self.expect = Expect::Line;
                Next::Literal
            }
        }
    }

    /// The current message so far (complete after a [`Next::Line`] without announcement).
    pub(super) fn message(&self) -> &[u8] {
        self.fragmentizer.message_bytes()
    }

    /// The current message's tag, if it starts with a valid one.
    pub(super) fn tag(&self) -> Option<String> {
        self.fragmentizer
            .decode_tag()
            .map(|tag| tag.inner().to_owned())
    }

    /// Ends the current message after a line that announced a literal the core refuses (the
    /// client sends no literal data without a `+`), or after a SASL response line, which
    /// carries no literal whatever its end looks like.
    pub(super) fn skip_message(&mut self) {
        self.fragmentizer.skip_message();
        self.expect = Expect::Line;
        self.line_len = 0;
        self.message_len = 0;
    }

    /// Forgets everything received so far (the STARTTLS boundary).
    pub(super) fn discard_all(&mut self) {
        self.buffer.zeroize();
        self.buffer.clear();
        self.consumed = 0;
        self.fragmentizer = new_fragmentizer(self.max_message);
        self.expect = Expect::Line;
        self.line_len = 0;
        self.message_len = 0;
    }

    /// The bytes not handed to the fragmentizer yet: after a complete message, exactly what the
    /// client sent after it.
    pub(super) fn leftover(&self) -> &[u8] {
        &self.buffer[self.consumed..]
    }
}

impl Drop for Input {
    fn drop(&mut self) {
        self.buffer.zeroize();
    }
}

fn new_fragmentizer(max_message: usize) -> Fragmentizer {
    // Our own limit is enforced before any byte reaches the fragmentizer; its own one (one
    // octet more) is a second fence.
    Fragmentizer::new(u32::try_from(max_message.saturating_add(1)).unwrap_or(u32::MAX))
}
