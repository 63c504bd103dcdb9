//! The daemon's control socket: a Unix socket at `$XDG_RUNTIME_DIR/mailoauth/control.sock`
//! (directory 0700, socket 0600, and the peer's uid checked with `SO_PEERCRED`) speaking
//! line-delimited JSON. A client sends one [`Request`] line and reads [`Reply`] lines until a
//! final one (`token`, `status`, `done`, `error`, `other_config`); during `authorize` the daemon
//! may send `ask` and the client answers with a `paste` line.
//!
//! What it is for: `mailoauth token` gets its token from the daemon when one runs (so stores the
//! daemon has unlocked — password-sealed, or a keyring reachable only from the desktop session —
//! work from mutt's refresh command), `mailoauth status` shows what the daemon has seen, and
//! `mailoauth authorize` run over ssh runs the flow inside the daemon, which starts using the
//! new tokens at once: no restart, no port forwarding (paste or device flow).

pub mod client;
pub mod server;

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Longest request or reply line accepted.
pub const MAX_LINE: usize = 64 * 1024;

/// A secret carried in a control message: serialized as its text, shown as `[REDACTED]`.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.expose_secret())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Secret(SecretString::from(String::deserialize(d)?)))
    }
}

/// What a client asks.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// A fresh access token for `account`. `config` is the client's configuration file: a
    /// daemon running another configuration answers `other_config` and the client goes to the
    /// store itself.
    Token { account: String, config: PathBuf },
    /// Every account's state.
    Status,
    /// Run `account`'s flow (or `flow`) inside the daemon; the client shows what it is told.
    Authorize {
        account: String,
        config: PathBuf,
        #[serde(default)]
        flow: Option<String>,
    },
    /// The answer to an `ask` (paste flow).
    Paste { answer: Secret },
    /// Re-read the configuration.
    Reload,
}

/// What the daemon answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Token {
        token: Secret,
    },
    Status {
        config: PathBuf,
        accounts: Vec<AccountStatus>,
    },
    /// Open this address in a browser (loopback or paste flow).
    Url {
        url: String,
    },
    /// The device flow's code.
    Device {
        verification_uri: String,
        user_code: String,
        #[serde(default)]
        verification_uri_complete: Option<String>,
        #[serde(default)]
        message: Option<String>,
        expires_in: u64,
    },
    /// Paste the redirect address (or the code) and send it back as a `paste` request.
    Ask {
        prompt: String,
    },
    /// Progress for the user.
    Note {
        message: String,
    },
    /// Finished.
    Done {
        message: String,
    },
    /// Failed; `exit` is the exit code the client should end with (see `exit.rs`).
    Error {
        exit: u8,
        message: String,
    },
    /// The daemon runs another configuration file.
    OtherConfig {
        config: PathBuf,
    },
}

impl Reply {
    /// Whether this reply ends the exchange.
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            Reply::Url { .. } | Reply::Device { .. } | Reply::Ask { .. } | Reply::Note { .. }
        )
    }
}

/// One account as `status` shows it. Times are Unix seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct AccountStatus {
    pub account: String,
    pub provider: String,
    /// Tokens are stored and no re-authorization is pending.
    pub authorized: bool,
    /// Why the account must be authorized again, if it must.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs_reauthorization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_issued_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_expires_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorized_at: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_refresh: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error_at: Option<i64>,
    /// Last successful upstream login per protocol (only a running daemon knows).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub last_login: BTreeMap<String, i64>,
    /// A warning about the refresh token's coming death, if one is due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_one_json_line_each_and_secrets_stay_out_of_debug() {
        let r = Request::Token {
            account: "a@b".into(),
            config: "/c.toml".into(),
        };
        let line = serde_json::to_string(&r).unwrap();
        assert_eq!(line, r#"{"op":"token","account":"a@b","config":"/c.toml"}"#);
        let reply = Reply::Token {
            token: Secret(SecretString::from("ya29.secret")),
        };
        let text = serde_json::to_string(&reply).unwrap();
        assert_eq!(text, r#"{"kind":"token","token":"ya29.secret"}"#);
        assert!(!format!("{reply:?}").contains("ya29"));
        let back: Reply = serde_json::from_str(&text).unwrap();
        assert!(back.is_final());
        let paste: Request =
            serde_json::from_str(r#"{"op":"paste","answer":"http://x/?code=1"}"#).unwrap();
        assert!(!format!("{paste:?}").contains("code=1"));
        let ask: Reply = serde_json::from_str(r#"{"kind":"ask","prompt":"p"}"#).unwrap();
        assert!(!ask.is_final());
        assert!(serde_json::from_str::<Request>(r#"{"op":"nope"}"#).is_err());
    }
}
