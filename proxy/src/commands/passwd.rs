//! `mailoauth passwd ACCOUNT`: sets the local password a mail client uses to log in to the proxy
//! as ACCOUNT. Read from the terminal without echo (twice), or from stdin when it is not a
//! terminal (one line, for scripts). Only an Argon2id verifier is stored.
//!
//! With `[store] kind = "password"` the account's tokens are sealed with this password, so a
//! change re-seals them: the current password is asked first (on stdin: the first line is the
//! current password, the second the new one), and a wrong one changes nothing.

use std::io::IsTerminal;

use secrecy::{ExposeSecret, SecretString};

use super::{load_config, runtime};
use crate::Cli;
use crate::accounts::open_store;
use crate::credentials::{Credentials, Verdict};
use crate::exit::{CONFIGURATION, ERROR, Failure, USAGE};
use crate::terminal::read_password;

pub fn run(cli: &Cli, name: &str) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let credentials = Credentials::new(paths.state_dir.join("passwords"));
    let store = open_store(&config, &paths);
    let io = |e: std::io::Error| Failure::new(ERROR, format!("cannot read the password: {e}"));

    // The password store: the tokens must move to the new password.
    let resealed = if store.needs_password() && store.record_path(name).exists() {
        let current = read_password(&format!("Current local password of {name}: ")).map_err(io)?;
        if runtime()?.block_on(credentials.verify(name, &current)) != Verdict::Correct {
            return Err(Failure::new(
                USAGE,
                "that is not the current local password; nothing was changed",
            ));
        }
        store
            .unlock(name, &current)
            .map_err(|e| Failure::new(ERROR, e.to_string()))?;
        let tokens = store
            .load(name)
            .map_err(|e| Failure::new(ERROR, e.to_string()))?;
        Some(tokens)
    } else {
        None
    };

    let password = if std::io::stdin().is_terminal() {
        let first = read_password(&format!("New local password for {name}: ")).map_err(io)?;
        let second = read_password("Repeat it: ").map_err(io)?;
        if first.expose_secret() != second.expose_secret() {
            return Err(Failure::new(
                USAGE,
                "the two passwords differ; nothing was changed",
            ));
        }
        first
    } else {
        read_password("").map_err(io)?
    };
    if password.expose_secret().is_empty() {
        return Err(Failure::new(
            USAGE,
            "the password is empty; nothing was changed",
        ));
    }
    if let Some(Some(tokens)) = resealed {
        reseal(&store, name, &password, &tokens)?;
    }
    let path = credentials
        .set_password(name, &password)
        .map_err(|e| Failure::new(ERROR, e))?;
    eprintln!(
        "The local password of {name} is set (an Argon2id verifier in {}). Mail clients log in to mailoauth as {name} with it; it never leaves this machine.",
        path.display()
    );
    Ok(())
}

/// Writes the account's tokens again, sealed with the new password (under the account's lock).
fn reseal(
    store: &tokenlib::Store,
    name: &str,
    password: &SecretString,
    tokens: &tokenlib::TokenSet,
) -> Result<(), Failure> {
    let fail =
        |e: tokenlib::StoreError| Failure::new(ERROR, format!("cannot re-seal the tokens: {e}"));
    let lock = store.lock(name).map_err(fail)?;
    store.unlock_for_new_record(name, password).map_err(fail)?;
    store.save(&lock, tokens).map_err(fail)?;
    eprintln!("The tokens of {name} are now sealed with the new password.");
    Ok(())
}
