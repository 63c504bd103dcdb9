//! `mailoauth passwd ACCOUNT`: sets the local password a mail client uses to log in to the proxy
//! as ACCOUNT. Read from the terminal without echo (twice), or from stdin when it is not a
//! terminal (one line, for scripts). Only an Argon2id verifier is stored.

use std::io::{BufRead, IsTerminal};

use secrecy::{ExposeSecret, SecretString};
use zeroize::Zeroizing;

use super::load_config;
use crate::Cli;
use crate::credentials::Credentials;
use crate::exit::{CONFIGURATION, ERROR, Failure, USAGE};

pub fn run(cli: &Cli, name: &str) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let password = if std::io::stdin().is_terminal() {
        let first = prompt(&format!("New local password for {name}: "))?;
        let second = prompt("Repeat it: ")?;
        if first.expose_secret() != second.expose_secret() {
            return Err(Failure::new(
                USAGE,
                "the two passwords differ; nothing was changed",
            ));
        }
        first
    } else {
        let mut line = Zeroizing::new(String::new());
        std::io::stdin().lock().read_line(&mut line).map_err(|e| {
            Failure::new(
                ERROR,
                format!("cannot read the password from standard input: {e}"),
            )
        })?;
        SecretString::from(line.trim_end_matches(['\r', '\n']).to_string())
    };
    if password.expose_secret().is_empty() {
        return Err(Failure::new(
            USAGE,
            "the password is empty; nothing was changed",
        ));
    }
    let credentials = Credentials::new(paths.state_dir.join("passwords"));
    let path = credentials
        .set_password(name, &password)
        .map_err(|e| Failure::new(ERROR, e))?;
    eprintln!(
        "The local password of {name} is set (an Argon2id verifier in {}). Mail clients log in to mailoauth as {name} with it; it never leaves this machine.",
        path.display()
    );
    Ok(())
}

fn prompt(text: &str) -> Result<SecretString, Failure> {
    rpassword::prompt_password(text)
        .map(SecretString::from)
        .map_err(|e| {
            Failure::new(
                ERROR,
                format!("cannot read the password from the terminal: {e}"),
            )
        })
}
