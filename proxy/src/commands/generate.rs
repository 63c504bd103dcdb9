//! `mailoauth completions SHELL` and `mailoauth man`: shell completions (clap_complete) and a
//! roff man page (clap_mangen), both generated from the clap definitions in `cli.rs`, so they
//! list exactly the subcommands and options the binary accepts. Both print to stdout:
//!
//! ```sh
//! mailoauth completions bash > ~/.local/share/bash-completion/completions/mailoauth
//! mailoauth man > ~/.local/share/man/man1/mailoauth.1
//! ```

use std::io::Write;

use clap::CommandFactory;
use clap_complete::Shell;

use crate::Cli;
use crate::exit::{ERROR, Failure};

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell) -> Result<(), Failure> {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "mailoauth", &mut out);
    print(&out)
}

/// Prints the man page (section 1). clap_mangen's page, except that its SUBCOMMANDS section
/// would point at one page per subcommand (`mailoauth-token(1)`), which nothing installs: this
/// one names the commands themselves and says where their options are.
pub fn man() -> Result<(), Failure> {
    print(&man_page().map_err(|e| Failure::new(ERROR, format!("cannot render the man page: {e}")))?)
}

fn man_page() -> std::io::Result<Vec<u8>> {
    let mut cmd = Cli::command();
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone());
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    out.extend_from_slice(b".SH SUBCOMMANDS\n");
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        out.extend_from_slice(
            format!(
                ".TP\n\\fBmailoauth {}\\fR\n{}\n",
                roff_escape(sub.get_name()),
                roff_escape(&about)
            )
            .as_bytes(),
        );
    }
    out.extend_from_slice(
        b".PP\nThe options of a subcommand: \\fBmailoauth help\\fR \\fISUBCOMMAND\\fR.\n",
    );
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// Text for a roff line: backslashes and hyphens escaped, no line starting a request.
fn roff_escape(text: &str) -> String {
    text.lines()
        .map(|line| {
            let line = line.replace('\\', "\\e").replace('-', "\\-");
            if line.starts_with('.') || line.starts_with('\'') {
                format!("\\&{line}")
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Writes `bytes` to stdout; a closed pipe (`mailoauth man | head`) is an error message, not a
/// panic.
fn print(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(bytes)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::new(ERROR, format!("cannot write to stdout: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roff_text_cannot_start_requests() {
        assert_eq!(roff_escape("a-b \\x"), "a\\-b \\ex");
        assert_eq!(roff_escape(".TH evil\n'so"), "\\&.TH evil\n\\&'so");
    }
}
