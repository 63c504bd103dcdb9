//! `mailoauth token ACCOUNT`: one line on stdout, the access token (or a base64 SASL string);
//! everything else on stderr; a non-zero exit on failure; never a browser.
//!
//! When `mailoauth serve` runs with the same configuration, the token comes from it over the
//! control socket (one local round trip; the daemon may hold keys this process cannot have).
//! Otherwise the fast path reads the store without a runtime or an HTTP client: a valid cached
//! token costs one file read (plus the sealer). Only a refresh starts the async machinery.

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
    let user = upstream_user(name, account_cfg);
    if let Some(token) = from_daemon(&paths, name)? {
        return print_line(&format_token(format, user, token));
    }
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
    print_line(&format_token(format, user, token))
}

fn format_token(format: TokenFormat, user: &str, token: SecretString) -> SecretString {
    match format {
        TokenFormat::Token => token,
        TokenFormat::Xoauth2 => encoded_client_response(Mechanism::XOAuth2, user, None, &token),
        TokenFormat::Oauthbearer => {
            encoded_client_response(Mechanism::OAuthBearer, user, None, &token)
        }
    }
}

/// The token from the running daemon, when one runs this configuration: it may hold keys this
/// process cannot have (a password-sealed store it unlocked; a keyring of the desktop session).
/// `None` when no daemon runs or it runs another configuration or does not know the account.
pub fn from_daemon(
    paths: &crate::config::Paths,
    name: &str,
) -> Result<Option<SecretString>, Failure> {
    use crate::commands::daemon_link;
    use crate::control::{Reply, Request};
    let Some(mut client) = daemon_link::connect(paths)? else {
        return Ok(None);
    };
    // A refresh may take the token endpoint's whole timeout.
    let _ = client.set_timeout(Some(std::time::Duration::from_secs(90)));
    let request = Request::Token {
        account: name.to_string(),
        config: daemon_link::config_path(paths),
    };
    match daemon_link::ask(&mut client, &request)? {
        Reply::Token { token } => Ok(Some(token.0)),
        Reply::Error { exit, message } => Err(Failure::new(exit, message)),
        Reply::OtherConfig { .. } => Ok(None),
        other => Err(Failure::new(
            ERROR,
            format!("the mailoauth daemon answered {other:?} to a token request"),
        )),
    }
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
