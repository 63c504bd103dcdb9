//! What every protocol's sans-IO cores share with the one session driver (`session.rs`): the
//! events a client-side core reports (STARTTLS, a login, close), the ways a login can fail, and
//! the events of an upstream core's OAuth login. IMAP, SMTP and POP3 each implement
//! [`ClientCore`] and [`UpstreamCore`]; the driver is written once against these traits.

use secrecy::SecretString;
use tokenlib::sasl::Mechanism;
use zeroize::Zeroizing;

/// What a client-side core asks the driver to do.
#[derive(Debug, PartialEq, Eq)]
pub enum ClientEvent<L> {
    /// The positive answer to STARTTLS/STLS is in the output and the input after the command
    /// was dropped (CVE-2011-0411 class). Flush, do the TLS handshake, then call
    /// [`ClientCore::tls_started`].
    StartTls,
    /// Verify the login and log in upstream; then [`ClientCore::login_failed`] or
    /// [`ClientCore::into_leftover`]. Until then `next_event` returns `None`.
    Login(L),
    /// Flush the output, then close the connection.
    Close,
}

/// A login a client asked for. Implementations' `Debug` never shows the password.
pub trait LoginRequest: std::fmt::Debug + Send {
    fn user(&self) -> &str;
    fn password(&self) -> &SecretString;
}

/// Why a login failed; each protocol maps them to its own answers (IMAP `NO [CODE]`, SMTP
/// `535 5.7.8` / `454 4.7.0`, POP3 `-ERR [AUTH]` / `[SYS/TEMP]` / `[SYS/PERM]`). Texts are made
/// one line before use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoginFailure {
    /// Wrong local password, unknown user, no local password: the same answer for all.
    BadCredentials,
    /// The upstream or the token endpoint is down: try later.
    Unavailable(String),
    /// The account needs `mailoauth authorize …` (the text has the command).
    Reauthorize(String),
    /// The upstream refused a freshly refreshed token too.
    UpstreamRejected(String),
}

/// The client side of one connection before login, as a state machine fed bytes.
pub trait ClientCore: Send {
    type Login: LoginRequest;
    /// Bytes from the client, in any chunking.
    fn feed(&mut self, input: &[u8]);
    /// Bytes to write to the client (drained).
    fn take_output(&mut self) -> Vec<u8>;
    /// Processes buffered input until an event or until more input is needed. Output produced
    /// on the way is in [`ClientCore::take_output`]; write it before acting on the event.
    fn next_event(&mut self) -> Option<ClientEvent<Self::Login>>;
    fn tls_started(&mut self);
    fn login_failed(&mut self, failure: LoginFailure);
    /// The upstream login succeeded: the bytes the client sent after its login, in order, for
    /// the upstream.
    fn into_leftover(self) -> Vec<u8>;
}

/// What an upstream core asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// The server agreed to our STARTTLS/STLS: hand the socket to TLS, then call
    /// [`UpstreamCore::tls_started`]. Plaintext after the server's agreement is refused.
    StartTls,
    /// The capabilities are known and TLS is on: call [`UpstreamCore::authenticate`].
    NeedToken { mechanism: Mechanism },
    /// Logged in: [`UpstreamCore::into_client_bytes`] is what the client receives next.
    Authenticated,
    /// This attempt failed: an immediate refusal (Microsoft), or an error challenge that the core
    /// already answered before the refusal (Google, Dovecot). `status` is the challenge JSON's
    /// `status`. [`UpstreamCore::authenticate`] may be called again.
    Rejected {
        status: Option<String>,
        text: String,
    },
    /// The login cannot go on; close the connection.
    Failed(UpstreamFailure),
}

/// Why an upstream login cannot go on. The messages are shown to users.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamFailure {
    #[error("the mail server closed the session: {0}")]
    Bye(String),
    #[error(
        "the mail server greeted with PREAUTH (a session logged in without a login); refusing it"
    )]
    Preauth,
    #[error(
        "the mail server does not offer STARTTLS, so the token would go unencrypted; not sending it (use the implicit-TLS port: imaps://, pop3s://, smtps://, or check for something stripping STARTTLS)"
    )]
    NoStartTls,
    #[error(
        "the mail server offers neither OAUTHBEARER nor XOAUTH2, so an OAuth token cannot log in there"
    )]
    NoMechanism,
    #[error("the mail server closed the connection before the login finished")]
    Closed,
    #[error("unexpected exchange with the mail server: {0}")]
    Protocol(String),
}

/// The upstream side: the OAuth login to the real server, as a state machine fed bytes.
pub trait UpstreamCore: Send {
    fn feed(&mut self, input: &[u8]);
    /// The server closed the connection.
    fn eof(&mut self);
    /// Bytes to write to the server (may hold the token).
    fn take_output(&mut self) -> Zeroizing<Vec<u8>>;
    fn next_event(&mut self) -> Option<UpstreamEvent>;
    fn tls_started(&mut self);
    /// After `NeedToken`, or after `Rejected` for the single retry.
    fn authenticate(&mut self, token: &SecretString);
    /// After `Authenticated`: what the client must receive.
    fn into_client_bytes(self) -> Vec<u8>;
    fn mechanism(&self) -> Option<Mechanism>;
}
