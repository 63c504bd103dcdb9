//! POP3: the server side clients talk to before login (`server`) and the upstream side that logs
//! in with OAuth (`upstream`), both sans-IO state machines.

pub mod server;
pub mod upstream;
