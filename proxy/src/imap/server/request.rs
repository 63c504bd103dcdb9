//! Commands decoded with imap-codec's `CommandCodec`, turned at once into an owned [`Request`]
//! that holds nothing of imap-codec's (its `Secret` shows passwords in debug builds' `Debug`).

use imap_codec::CommandCodec;
use imap_codec::decode::{CommandDecodeError, Decoder};
use imap_codec::imap_types::auth::AuthMechanism;
use imap_codec::imap_types::command::CommandBody;

use super::credentials::{self, Credentials, Refusal};

/// What a command asks for, as far as the core cares before login.
pub(super) enum Request {
    Capability,
    Noop,
    Id,
    Logout,
    StartTls,
    Login(Result<Credentials, Refusal>),
    /// `None`: no initial response, a `+` is due.
    AuthenticatePlain(Option<Result<Credentials, Refusal>>),
    AuthenticateOther,
    /// Valid IMAP, but not before login.
    NeedsLogin,
}

/// A complete command message: its tag and request, or `None` when it is not valid IMAP.
pub(super) fn decode(message: &[u8]) -> Option<(String, Request)> {
    match CommandCodec::new().decode(message) {
        Ok(([], command)) => Some((command.tag.inner().to_owned(), request(command.body))),
        _ => None,
    }
}

fn request(body: CommandBody<'_>) -> Request {
    match body {
        CommandBody::Capability => Request::Capability,
        CommandBody::Noop => Request::Noop,
        CommandBody::Id { .. } => Request::Id,
        CommandBody::Logout => Request::Logout,
        CommandBody::StartTLS => Request::StartTls,
        CommandBody::Login { username, password } => Request::Login(credentials::from_login(
            username.as_ref(),
            password.declassify().as_ref(),
        )),
        CommandBody::Authenticate {
            mechanism: AuthMechanism::Plain,
            initial_response,
        } => Request::AuthenticatePlain(
            initial_response.map(|ir| credentials::from_plain(ir.declassify())),
        ),
        CommandBody::Authenticate { .. } => Request::AuthenticateOther,
        _ => Request::NeedsLogin,
    }
}

/// Where the literal announced at the end of `message` (a command so far) would go.
pub(super) enum LiteralIn {
    Login,
    Id,
    /// A command that needs a login first (SELECT, APPEND…).
    OtherCommand,
    /// Not valid IMAP up to the announcement.
    Garbage,
}

pub(super) fn literal_in(message: &[u8]) -> LiteralIn {
    if !matches!(
        CommandCodec::new().decode(message),
        Err(CommandDecodeError::LiteralFound { .. })
    ) {
        return LiteralIn::Garbage;
    }
    // The command name is the word after the tag.
    let mut words = message.split(|&b| matches!(b, b' ' | b'\r' | b'\n'));
    words.next();
    let name = words.next().unwrap_or_default();
    if name.eq_ignore_ascii_case(b"LOGIN") {
        LiteralIn::Login
    } else if name.eq_ignore_ascii_case(b"ID") {
        LiteralIn::Id
    } else {
        LiteralIn::OtherCommand
    }
}
