//! The terminal side of the command line: logging to stderr, and the [`Prompter`] that shows
//! authorization URLs and device codes and reads pasted answers.

use std::io::{BufRead, IsTerminal, Write};

use tokenlib::flow::{DeviceInstructions, PromptFuture, Prompter};
use url::Url;

/// Logs go to stderr (stdout is reserved for what a command prints: a token). The level comes
/// from `MAILOAUTH_LOG` (e.g. `info`, `debug`, `trace`) and applies to mailoauth's own crates;
/// the libraries underneath (HTTP, TLS, D-Bus) stay at `warn`, because their debug output can
/// show request details that mailoauth cannot redact. Full directives (`hyper=debug,…`) are
/// taken as written, for whoever really needs them. Without it, `default` applies to mailoauth's
/// crates (`warn` for one-shot commands, `info` for the daemon's one line per session).
pub fn init_logging(default: &str) {
    use tracing_subscriber::EnvFilter;
    let directives = match std::env::var("MAILOAUTH_LOG") {
        Ok(v) if v.contains('=') || v.contains(',') => v,
        Ok(level) if !level.trim().is_empty() => {
            let level = level.trim();
            format!("warn,mailoauth={level},tokenlib={level},certs={level}")
        }
        _ => format!("warn,mailoauth={default},tokenlib={default},certs={default}"),
    };
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .without_time()
        .with_target(false)
        .try_init();
}

/// Talks to the user on stderr and reads answers from stdin.
pub struct TerminalPrompter {
    pub account: String,
}

impl Prompter for TerminalPrompter {
    fn show_authorization_url(&self, url: &Url, open_browser: bool) {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(
            err,
            "To authorize {}, open this address in a browser:",
            self.account
        );
        // Alone on its line, so that a script (or a test) can pick it up.
        let _ = writeln!(err, "{url}");
        if open_browser {
            match webbrowser::open(url.as_str()) {
                Ok(()) => {
                    let _ = writeln!(err, "(A browser window should have opened.)");
                }
                Err(_) => {
                    let _ = writeln!(
                        err,
                        "(No browser could be opened here; open the address yourself.)"
                    );
                }
            }
        }
    }

    fn show_device_code(&self, d: &DeviceInstructions) {
        let mut err = std::io::stderr().lock();
        match &d.message {
            Some(message) => {
                let _ = writeln!(err, "{message}");
            }
            None => {
                let _ = writeln!(
                    err,
                    "To authorize {}, open {} on any device and enter the code:",
                    self.account, d.verification_uri
                );
            }
        }
        let _ = writeln!(err, "    {}", d.user_code);
        if let Some(complete) = &d.verification_uri_complete {
            let _ = writeln!(err, "(or open {complete}, which has the code filled in)");
        }
        let _ = writeln!(
            err,
            "Waiting up to {} minutes for you to finish…",
            d.expires_in.as_secs().div_ceil(60)
        );
    }

    fn read_pasted<'a>(&'a self, prompt: &'a str) -> PromptFuture<'a> {
        let prompt = prompt.to_string();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read_answer(&prompt))
                .await
                .map_err(std::io::Error::other)?
        })
    }

    fn note(&self, message: &str) {
        eprintln!("{message}");
    }
}

/// Reads a password: from the terminal without echo when stdin is one, else one line of stdin
/// (for scripts). The line ending is not part of the password.
pub fn read_password(prompt: &str) -> std::io::Result<secrecy::SecretString> {
    if std::io::stdin().is_terminal() {
        return rpassword::prompt_password(prompt).map(secrecy::SecretString::from);
    }
    let mut line = zeroize::Zeroizing::new(String::new());
    let n = std::io::stdin().lock().read_line(&mut line)?;
    if n == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "standard input ended before the password",
        ));
    }
    Ok(secrecy::SecretString::from(
        line.trim_end_matches(['\r', '\n']).to_string(),
    ))
}

/// Shows `prompt` and a `> ` on stderr and reads one line of stdin (a pasted redirect address
/// or code); a closed stdin is an error.
pub fn read_answer(prompt: &str) -> std::io::Result<String> {
    eprintln!("{prompt}");
    eprint!("> ");
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    if std::io::stdin().lock().read_line(&mut line)? == 0 {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "standard input is closed",
        ));
    }
    Ok(line)
}
