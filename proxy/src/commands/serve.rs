//! `mailoauth serve`: runs the proxy (see `daemon`).

use super::load_config;
use crate::Cli;
use crate::exit::{ERROR, Failure};

pub fn run(cli: &Cli) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    let config_arg = cli
        .config
        .as_ref()
        .map(|p| crate::exit::shell_quote(&p.display().to_string()));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(ERROR, format!("cannot start the async runtime: {e}")))?;
    rt.block_on(crate::daemon::run(config, paths, config_arg))?;
    Ok(())
}
