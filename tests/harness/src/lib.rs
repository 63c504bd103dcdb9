//! The shared test harness of mailoauth's integration tests: a test OAuth2 authorization
//! server ([`authserver`]), a real Dovecot as an OAuth-only upstream ([`dovecot`]) with a sink
//! SMTP relay ([`smtpsink`]), a throw-away CA ([`testca`]), and small clients to poke them
//! ([`lineclient`], [`curl`], [`browser`]).

pub mod authserver;
pub mod browser;
pub mod curl;
pub mod dovecot;
pub mod error;
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
pub use lineclient::LineClient;
pub use smtpsink::{ReceivedMessage, SmtpSink};
pub use testca::TestCa;
pub use util::TempDir;
