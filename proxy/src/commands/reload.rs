//! `mailoauth reload`: makes the running daemon re-read its configuration (like SIGHUP, but
//! with the outcome printed: what changed, or why the new file was refused).

use super::daemon_link;
use crate::Cli;
use crate::control::{Reply, Request};
use crate::exit::{ERROR, Failure};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let paths = crate::config::Paths::resolve(cli.config.as_deref())
        .map_err(|e| Failure::new(crate::exit::CONFIGURATION, format!("{e:#}")))?;
    let Some(mut client) = daemon_link::connect(&paths)? else {
        return Err(Failure::new(
            ERROR,
            format!(
                "no mailoauth daemon is running (no control socket at {}); start it with: mailoauth serve",
                paths.control_socket().display()
            ),
        ));
    };
    match daemon_link::ask(&mut client, &Request::Reload)? {
        Reply::Done { message } => {
            eprintln!("{message}");
            Ok(())
        }
        Reply::Error { exit, message } => Err(Failure::new(exit, message)),
        other => Err(Failure::new(
            ERROR,
            format!("the mailoauth daemon answered {other:?} to reload"),
        )),
    }
}
