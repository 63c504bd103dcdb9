//! Runs the `curl` command-line tool (a real client for IMAP, POP3 and SMTP with OAuth) and
//! captures its exit code and output.

use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::error::{HarnessError, IoContext};

/// curl's exit code when the server refused the login (`CURLE_LOGIN_DENIED`).
pub const LOGIN_DENIED: i32 = 67;

/// A curl command line being built. Always runs with `-sS` (quiet, but errors on stderr).
#[derive(Clone)]
pub struct Curl {
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
}

impl std::fmt::Debug for Curl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The arguments may hold a token or password.
        f.write_str("Curl { .. }")
    }
}

/// What a curl run produced.
#[derive(Debug, Clone)]
pub struct CurlOutput {
    /// The exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error.
    pub stderr: String,
}

impl CurlOutput {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
    /// Standard output as text.
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl Curl {
    /// `curl -sS URL`.
    pub fn new(url: &str) -> Curl {
        Curl {
            args: vec!["-sS".into(), url.into()],
            stdin: None,
        }
    }
    /// Appends a raw argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Curl {
        self.args.push(arg.into());
        self
    }
    /// `--cacert PATH` (trust only this CA).
    pub fn cacert(self, path: &Path) -> Curl {
        self.arg("--cacert").arg(path)
    }
    /// `--user LOGIN` (with `--oauth2-bearer`, the login for the SASL exchange).
    pub fn user(self, login: &str) -> Curl {
        self.arg("--user").arg(login)
    }
    /// `--user LOGIN:PASSWORD`.
    pub fn user_password(self, login: &str, password: &str) -> Curl {
        self.arg("--user").arg(format!("{login}:{password}"))
    }
    /// `--oauth2-bearer TOKEN` (curl picks OAUTHBEARER when offered, else XOAUTH2).
    pub fn oauth2_bearer(self, token: &str) -> Curl {
        self.arg("--oauth2-bearer").arg(token)
    }
    /// `--ssl-reqd` (STARTTLS must succeed on a plain URL).
    pub fn ssl_required(self) -> Curl {
        self.arg("--ssl-reqd")
    }
    /// `-X COMMAND` (custom IMAP/POP3/SMTP command).
    pub fn request(self, command: &str) -> Curl {
        self.arg("-X").arg(command)
    }
    /// Sends a message with SMTP: `--mail-from`, `--mail-rcpt`…, `--upload-file -` with
    /// `message` on stdin (curl dot-stuffs and converts nothing else).
    pub fn send_mail(mut self, from: &str, to: &[&str], message: &[u8]) -> Curl {
        self = self.arg("--mail-from").arg(from);
        for rcpt in to {
            self = self.arg("--mail-rcpt").arg(*rcpt);
        }
        self.stdin = Some(message.to_vec());
        self.arg("--upload-file").arg("-")
    }
    /// Runs curl (at most 30 s per transfer).
    pub fn run(self) -> Result<CurlOutput, HarnessError> {
        let mut child = Command::new("curl")
            .args(&self.args)
            .args(["--max-time", "30"])
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .ctx(|| "running curl (apt-get install curl)")?;
        if let Some(input) = &self.stdin {
            use std::io::Write;
            let mut stdin = child.stdin.take().expect("piped stdin");
            stdin.write_all(input).ctx(|| "writing curl's stdin")?;
        }
        let out = child.wait_with_output().ctx(|| "waiting for curl")?;
        Ok(CurlOutput {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
