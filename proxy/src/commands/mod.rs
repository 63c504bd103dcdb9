//! The subcommands, one module each.

pub mod authorize;
pub mod compat;
pub mod daemon_link;
pub mod generate;
pub mod passwd;
pub mod reload;
pub mod serve;
pub mod service;
pub mod setup;
pub mod status;
pub mod test;
pub mod token;

use crate::Cli;
use crate::config::{Config, Paths};
use crate::exit::{CONFIGURATION, Failure};

/// Resolves the paths and loads the configuration; problems are configuration failures.
pub fn load_config(cli: &Cli) -> Result<(Paths, Config), Failure> {
    let paths = Paths::resolve(cli.config.as_deref())
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let config = Config::load(&paths.config_file)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    Ok((paths, config))
}

/// A runtime for commands that talk to the network.
pub fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| {
            Failure::new(
                crate::exit::ERROR,
                format!("cannot start the async runtime: {e}"),
            )
        })
}
