//! How a command fails: one message on stderr (what happened, what to do next) and an exit code
//! a script can act on.
//!
//! | code | meaning |
//! |---|---|
//! | 1 | any other error |
//! | 2 | usage error |
//! | 3 | the account needs to be authorized (again): run the printed command |
//! | 4 | temporary: the provider or network failed, nothing to fix here; try again later |
//! | 5 | configuration or app registration problem |
//! | 6 | `test`: the login was refused although the token is valid (SMTP AUTH disabled at Microsoft, the account without IMAP/POP access), or the proxy refused the local password |
//! | 7 | `test`: the server misbehaves: no STARTTLS (the token is not sent), or it refuses the harmless command right after accepting the login |

use std::process::ExitCode;

use tokenlib::RefreshError;
use tokenlib::explain::NextStep;

use crate::Cli;

pub const ERROR: u8 = 1;
pub const USAGE: u8 = 2;
pub const NEEDS_AUTHORIZATION: u8 = 3;
pub const TEMPORARY: u8 = 4;
pub const CONFIGURATION: u8 = 5;
pub const LOGIN_REFUSED: u8 = 6;
pub const SERVER_MISBEHAVES: u8 = 7;

/// A failed command: its message and exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure {
            code,
            message: message.into(),
        }
    }

    /// Prints the message on stderr and returns the exit code.
    pub fn report(self) -> ExitCode {
        eprintln!("mailoauth: {}", self.message.trim_end());
        ExitCode::from(self.code)
    }

    /// A token-engine error, with the exact command to run when re-authorization is the cure.
    pub fn from_refresh(cli: &Cli, account: &str, err: &RefreshError) -> Failure {
        Failure::from_refresh_with(&authorize_command(cli, account), err)
    }

    /// [`Failure::from_refresh`] with the re-authorization command already made.
    pub fn from_refresh_with(authorize: &str, err: &RefreshError) -> Failure {
        let base = err.to_string();
        match err.next_step() {
            NextStep::Reauthorize => Failure::new(
                NEEDS_AUTHORIZATION,
                format!("{base}\nTo authorize it, run in a terminal:\n    {authorize}"),
            ),
            NextStep::RetryLater => Failure::new(
                TEMPORARY,
                format!("{base}\nNothing to fix on your side; try again later."),
            ),
            NextStep::FixConfiguration => Failure::new(CONFIGURATION, base),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Failure {
        // `{:#}` prints the context chain on one line: "reading x: permission denied".
        Failure::new(ERROR, format!("{e:#}"))
    }
}

/// The command that (re)authorizes `account`, with `--config` when one was given.
pub fn authorize_command(cli: &Cli, account: &str) -> String {
    let mut cmd = String::from("mailoauth");
    if let Some(path) = &cli.config {
        cmd.push_str(&format!(
            " --config {}",
            shell_quote(&path.display().to_string())
        ));
    }
    cmd.push_str(&format!(" authorize {}", shell_quote(account)));
    cmd
}

/// Quotes a word for a POSIX shell when it needs it.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("me@example.com"), "me@example.com");
        assert_eq!(shell_quote("it's mine"), r"'it'\''s mine'");
        assert_eq!(shell_quote(""), "''");
    }
}
