//! The shared test harness of mailoauth's integration tests: a test OAuth2 authorization
//! server ([`authserver`]), a real Dovecot as an OAuth-only upstream ([`dovecot`]) with a sink
//! SMTP relay ([`smtpsink`]), a throw-away CA ([`testca`]), and small clients to poke them
//! ([`lineclient`], [`curl`], [`browser`]).
//!
//! ```no_run
//! use mailoauth_harness::{AuthServer, AuthServerOptions, Curl, Dovecot, DovecotOptions, Style};
//!
//! let auth = AuthServer::start(AuthServerOptions::new(Style::Google));
//! let dovecot = Dovecot::start(DovecotOptions::new(&auth)).expect("Dovecot");
//! let token = auth.issue_tokens("alice@example.test", "mail").access_token;
//! let out = Curl::new(&format!("imaps://127.0.0.1:{}/", dovecot.imaps_port()))
//!     .cacert(dovecot.ca_pem_path())
//!     .user("alice@example.test")
//!     .oauth2_bearer(&token)
//!     .run()
//!     .unwrap();
//! assert!(out.success());
//! ```
//!
//! Everything runs on loopback, on OS-chosen ports, under fresh temp dirs, and stops on drop.
//! Servers run on their own threads, so they work from plain `#[test]`s and `#[tokio::test]`s;
//! the blocking helpers (Dovecot start, [`LineClient`], [`browser`], [`Curl`]) block the calling
//! thread, so call them via `spawn_blocking` when the code under test shares the test's runtime.

pub mod authserver;
pub mod browser;
pub mod curl;
pub mod dovecot;
pub mod error;
pub mod fakeimap;
pub mod fakepop3;
pub mod fakesmtp;
pub mod lineclient;
pub mod smtpsink;
pub mod testca;
mod util;

pub use authserver::{
    AuthServer, AuthServerOptions, ClientSpec, Failure, IssuedTokens, RequestRecord, Style,
};
pub use curl::{Curl, CurlOutput};
pub use dovecot::{Dovecot, DovecotOptions, Mechanisms, Services};
pub use error::HarnessError;
pub use fakeimap::{AuthAnswer, FakeImap, FakeImapOptions, FakeTls};
pub use fakepop3::{FakePop3, FakePop3Options, Pop3AuthAnswer};
pub use fakesmtp::{FakeSmtp, FakeSmtpOptions, SmtpAuthAnswer, StoredMessage};
pub use lineclient::LineClient;
pub use smtpsink::{ReceivedMessage, SmtpSink};
pub use testca::TestCa;
pub use util::TempDir;
