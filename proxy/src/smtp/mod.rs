//! SMTP submission: the server side clients talk to before AUTH (`server`) and the upstream side
//! that logs in with OAuth (`upstream`), both sans-IO state machines.

pub mod server;
pub mod upstream;
