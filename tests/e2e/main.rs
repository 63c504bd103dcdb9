//! End-to-end tests of the `mailoauth` binary against real components: the test authorization
//! server, a real Dovecot, gpg, a Secret Service, and real mail clients. Each test runs the
//! binary in an isolated HOME.

mod clients;
mod common;
mod compat;
mod flows;
mod keyring;
mod ops;
mod proxy;
mod secrets;
mod setup;
mod store;
mod test_cmd;
mod token;
