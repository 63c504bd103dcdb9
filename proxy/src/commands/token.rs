//! `mailoauth token ACCOUNT`: one line on stdout, the access token (or a base64 SASL string);
//! everything else on stderr; a non-zero exit on failure; never a browser.
//!
//! The fast path reads the store without a runtime or an HTTP client: a valid cached token costs
//! one file read (plus the sealer). Only a refresh starts the async machinery.

use std::io::Write;

use secrecy::{ExposeSecret, SecretString};
use tokenlib::sasl::{Mechanism, encoded_client_response};
use tokenlib::token::now_unix;
use tokenlib::{RefreshError, Refresher};

use super::{load_config, runtime};
use crate::accounts::{open_store, token_account, upstream_user};
use crate::exit::{ERROR, Failure};
use crate::{Cli, TokenFormat};

pub fn run(cli: &Cli, name: &str, format: TokenFormat) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    let account_cfg = config
        .account(name)
        .map_err(|e| Failure::new(crate::exit::CONFIGURATION, format!("{e:#}")))?;
    let account = token_account(name, account_cfg);
    let store = open_store(&config, &paths);

    let cached = store
        .load(name)
        .map_err(|e| Failure::from_refresh(cli, name, &RefreshError::Store(e)))?
        .filter(|t| t.is_fresh(now_unix()))
        .map(|t| t.access_token);
    let token = match cached {
        Some(token) => token,
        None => {
            let refresher = Refresher::new(store);
            runtime()?
                .block_on(refresher.access_token(&account))
                .map_err(|e| Failure::from_refresh(cli, name, &e))?
        }
    };
    let user = upstream_user(name, account_cfg);
    let line = match format {
        TokenFormat::Token => token,
        TokenFormat::Xoauth2 => encoded_client_response(Mechanism::XOAuth2, user, None, &token),
        TokenFormat::Oauthbearer => {
            encoded_client_response(Mechanism::OAuthBearer, user, None, &token)
        }
    };
    print_line(&line)
}

/// Writes the secret and a newline to stdout in one write, and reports a closed pipe.
pub fn print_line(line: &SecretString) -> Result<(), Failure> {
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(line.expose_secret().len() + 1));
    out.extend_from_slice(line.expose_secret().as_bytes());
    out.push(b'\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&out)
        .and_then(|()| stdout.flush())
        .map_err(|e| {
            Failure::new(
                ERROR,
                format!("cannot write the token to standard output: {e}"),
            )
        })
}
