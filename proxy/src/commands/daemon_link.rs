//! Reaching the running daemon from a command: whether one runs for this configuration, and
//! how its answers map onto this process's output and exit code.

use std::path::PathBuf;

use crate::config::Paths;
use crate::control::client::Client;
use crate::control::{Reply, Request};
use crate::exit::{ERROR, Failure};

/// A connection to a daemon, if one answers on this user's control socket.
pub fn connect(paths: &Paths) -> Result<Option<Client>, Failure> {
    let socket = paths.control_socket();
    Client::connect(&socket).map_err(|e| {
        Failure::new(
            ERROR,
            format!(
                "cannot reach the mailoauth daemon at {}: {e}",
                socket.display()
            ),
        )
    })
}

/// The configuration file as the daemon should compare it.
pub fn config_path(paths: &Paths) -> PathBuf {
    std::fs::canonicalize(&paths.config_file).unwrap_or_else(|_| paths.config_file.clone())
}

/// A daemon's failure as this command's failure.
pub fn io_failure(e: std::io::Error) -> Failure {
    Failure::new(
        ERROR,
        format!("talking to the mailoauth daemon failed: {e}"),
    )
}

/// Sends a one-answer request.
pub fn ask(client: &mut Client, request: &Request) -> Result<Reply, Failure> {
    client.call(request, |_, _| Ok(())).map_err(io_failure)
}
