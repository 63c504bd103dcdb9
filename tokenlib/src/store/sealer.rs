//! Sealers: how a token record is protected at rest. `command` pipes it through the user's
//! encrypt/decrypt programs (gpg, age — mutt_oauth2.py's ENCRYPTION_PIPE model), `plaintext`
//! stores it as is (explicit opt-in only); `keyring` lives in its own module.

use std::io::Write;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::StoreError;

/// Protects record bytes at rest.
pub trait Sealer: Send + Sync {
    /// The name used in configuration and messages (`command`, `keyring`, `plaintext`).
    fn kind(&self) -> &'static str;
    /// The record file's extension; distinct per sealer so that switching sealers never feeds a
    /// record to the wrong decryption.
    fn extension(&self) -> &'static str;
    /// Seals `account`'s record (only the password sealer's keys depend on the account).
    fn seal(&self, account: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError>;
    fn open(&self, account: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError>;
    /// Checks that sealing can work before a user spends a minute in a browser: the keyring is
    /// reachable, the encrypt command exists.
    fn ready(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// True when records can only be opened after [`Sealer::unlock`] with a local password.
    fn needs_password(&self) -> bool {
        false
    }
    /// Unlocks `account` with its (already verified) local password; `existing` is its current
    /// sealed record, if any. A no-op for sealers that need no password.
    fn unlock(
        &self,
        _account: &str,
        _password: &secrecy::SecretString,
        _existing: Option<&[u8]>,
    ) -> Result<(), StoreError> {
        Ok(())
    }
}

/// No protection beyond the file mode (0600). Only when the user chose it.
pub struct Plaintext;

impl Sealer for Plaintext {
    fn kind(&self) -> &'static str {
        "plaintext"
    }
    fn extension(&self) -> &'static str {
        "json"
    }
    fn seal(&self, _account: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        Ok(plaintext.to_vec())
    }
    fn open(&self, _account: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        Ok(Zeroizing::new(sealed.to_vec()))
    }
}

/// Encrypts and decrypts by piping through two external commands (stdin → stdout).
pub struct CommandPipe {
    pub encrypt: Vec<String>,
    pub decrypt: Vec<String>,
}

impl Sealer for CommandPipe {
    fn kind(&self) -> &'static str {
        "command"
    }
    fn extension(&self) -> &'static str {
        "sealed"
    }
    fn seal(&self, _account: &str, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let out = run_pipe("encrypt", &self.encrypt, plaintext)?;
        if out.is_empty() {
            return Err(StoreError::Seal {
                kind: "command",
                detail: format!("the encrypt command {:?} printed nothing", self.encrypt[0]),
            });
        }
        Ok(out.to_vec())
    }
    fn open(&self, _account: &str, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        run_pipe("decrypt", &self.decrypt, sealed)
    }
    fn ready(&self) -> Result<(), StoreError> {
        // A trial encryption of nothing secret proves the program runs and has its key.
        self.seal("", b"{}").map(|_| ())
    }
}

/// Runs `argv` with `input` on stdin and returns its stdout. stderr is captured and shown only on
/// failure (gpg chatters on success). The input is fed from a thread so that a program that
/// writes before it has read everything cannot deadlock us.
fn run_pipe(what: &str, argv: &[String], input: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    let (program, args) = argv.split_first().ok_or_else(|| StoreError::Seal {
        kind: "command",
        detail: format!("the {what} command is empty"),
    })?;
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| StoreError::Seal {
            kind: "command",
            detail: format!("could not run the {what} command {program:?}: {e}"),
        })?;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let output = std::thread::scope(|scope| {
        scope.spawn(move || {
            // A program that exits early closes the pipe; its exit status tells the story.
            let _ = stdin.write_all(input);
        });
        child.wait_with_output()
    })
    .map_err(|e| StoreError::Seal {
        kind: "command",
        detail: format!("the {what} command {program:?} could not be read: {e}"),
    })?;
    let stdout = Zeroizing::new(output.stdout);
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = stderr.trim();
        let hint = if what == "decrypt" && program.contains("gpg") {
            " Is gpg-agent able to decrypt without a terminal (for example GPG_TTY set, or the key unlocked)?"
        } else {
            ""
        };
        return Err(StoreError::Seal {
            kind: "command",
            detail: format!(
                "the {what} command {program:?} failed ({}){}{}.{hint}",
                output.status,
                if stderr.is_empty() { "" } else { ": " },
                last_lines(stderr, 3),
            ),
        });
    }
    Ok(stdout)
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipe(enc: &[&str], dec: &[&str]) -> CommandPipe {
        CommandPipe {
            encrypt: enc.iter().map(|s| s.to_string()).collect(),
            decrypt: dec.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn command_round_trip_through_real_programs() {
        // rev reverses each line: a real transformation, so a sealer that forgot to run the
        // command would fail this test.
        let p = pipe(&["rev"], &["rev"]);
        let sealed = p.seal("a", b"{\"a\":1}\n").unwrap();
        assert_eq!(sealed, b"}1:\"a\"{\n");
        assert_eq!(&*p.open("a", &sealed).unwrap(), b"{\"a\":1}\n");
    }

    #[test]
    fn large_inputs_do_not_deadlock() {
        let p = pipe(&["cat"], &["cat"]);
        let big = vec![b'x'; 4 << 20];
        assert_eq!(p.seal("a", &big).unwrap().len(), big.len());
    }

    #[test]
    fn failures_show_stderr_but_not_input() {
        let p = pipe(
            &[
                "sh",
                "-c",
                "cat >/dev/null; echo 'no secret key' >&2; exit 2",
            ],
            &["false"],
        );
        let err = p.seal("a", b"SECRET-INPUT").unwrap_err().to_string();
        assert!(err.contains("no secret key"), "{err}");
        assert!(!err.contains("SECRET-INPUT"), "{err}");
        let err = pipe(&["/nonexistent/gpg"], &["x"])
            .seal("a", b"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("could not run"), "{err}");
        let err = pipe(&["true"], &["x"])
            .seal("a", b"abc")
            .unwrap_err()
            .to_string();
        assert!(err.contains("printed nothing"), "{err}");
    }
}
