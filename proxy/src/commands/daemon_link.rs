//! Reaching the running daemon from a command: whether one runs for this configuration, and
//! how its answers map onto this process's output and exit code.

use std::path::PathBuf;

use crate::config::Paths;
use crate::control::client::Client;
use crate::control::{Reply, Request};
use crate::exit::{ERROR, Failure};

/// A connection to a daemon, if one answers on this user's control socket. Where the socket is
/// depends on XDG_RUNTIME_DIR, which a daemon started by systemd has and an ssh or `su` shell
/// may not: the other usual places are tried too.
pub fn connect(paths: &Paths) -> Result<Option<Client>, Failure> {
    for socket in candidates(paths) {
        let client = Client::connect(&socket).map_err(|e| {
            Failure::new(
                ERROR,
                format!(
                    "cannot reach the mailoauth daemon at {}: {e}",
                    socket.display()
                ),
            )
        })?;
        if client.is_some() {
            return Ok(client);
        }
    }
    Ok(None)
}

/// This process's socket path first, then the fallback directory and systemd's runtime
/// directory for this uid.
fn candidates(paths: &Paths) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut list = vec![
        paths.control_socket(),
        paths.state_dir.join("run/control.sock"),
    ];
    if let Ok(me) = std::fs::metadata("/proc/self") {
        list.push(PathBuf::from(format!(
            "/run/user/{}/mailoauth/control.sock",
            me.uid()
        )));
    }
    let mut unique: Vec<PathBuf> = Vec::new();
    for path in list {
        if !unique.contains(&path) {
            unique.push(path);
        }
    }
    unique
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
