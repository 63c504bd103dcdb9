//! mailoauth: lets plain-password mail clients reach OAuth2-only IMAP/POP3/SMTP services, and
//! prints fresh access tokens for clients that speak OAuth themselves.
//!
//! The binary's code is a library so that fuzz targets and benchmarks can reach the protocol
//! cores; `main.rs` only calls [`cli::main`].

#![forbid(unsafe_code)]

pub mod accounts;
pub mod cli;
pub mod commands;
pub mod config;
pub mod control;
pub mod core;
pub mod credentials;
pub mod daemon;
pub mod diagnose;
pub mod exit;
pub mod imap;
pub mod pop3;
pub mod session;
pub mod smtp;
pub mod splice;
pub mod stream;
pub mod terminal;
pub mod trace;

pub use cli::{Cli, FlowArg, TokenFormat};
