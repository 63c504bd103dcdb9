//! IMAP: the server side clients talk to before login (`server`), the upstream side that logs in
//! with OAuth (`upstream`), both sans-IO state machines, and the tokio driver that owns the
//! sockets and splices the two streams after login (`session`).

pub mod server;
pub mod session;
pub mod upstream;
