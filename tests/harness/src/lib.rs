//! The shared test harness of mailoauth's integration tests: a test OAuth2 authorization
//! server ([`authserver`]), a real Dovecot as an OAuth-only upstream ([`dovecot`]) with a sink
//! SMTP relay ([`smtpsink`]), a throw-away CA ([`testca`]), and small clients to poke them
//! ([`lineclient`], [`curl`], [`browser`]).

pub mod authserver;
pub mod browser;
pub mod error;
pub mod smtpsink;
pub mod testca;
mod util;

pub use authserver::{
    AuthServer, AuthServerOptions, ClientSpec, Failure, IssuedTokens, RequestRecord, Style,
};
pub use error::HarnessError;
pub use smtpsink::{ReceivedMessage, SmtpSink};
pub use testca::TestCa;
pub use util::TempDir;
