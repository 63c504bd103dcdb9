//! What the token engine needs to know about one account: its provider, OAuth client, scopes and
//! preferred flow. Built by the binary from its configuration; this crate never reads config files.

use std::process::{Command, Stdio};

use secrecy::SecretString;
use url::Url;
use zeroize::Zeroizing;

use crate::provider::{EndpointSource, ProviderKind};

/// How the user authorizes an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowKind {
    /// Browser + loopback redirect listener, PKCE and `state` (RFC 8252).
    Loopback,
    /// Browser on any machine; the user pastes the code or the whole final URL (headless hosts).
    Paste,
    /// Device authorization grant (RFC 8628): a code typed on another device.
    Device,
    /// Client credentials with a secret (app-only tenants): no user, no refresh token.
    ClientCredentials,
}

impl FlowKind {
    pub fn name(self) -> &'static str {
        match self {
            FlowKind::Loopback => "loopback",
            FlowKind::Paste => "paste",
            FlowKind::Device => "device",
            FlowKind::ClientCredentials => "client_credentials",
        }
    }

    /// Parses a flow name as users write it (`client-credentials` and `client_credentials` both).
    pub fn parse(s: &str) -> Option<FlowKind> {
        Some(match s {
            "loopback" => FlowKind::Loopback,
            "paste" => FlowKind::Paste,
            "device" => FlowKind::Device,
            "client_credentials" | "client-credentials" => FlowKind::ClientCredentials,
            _ => return None,
        })
    }
}

/// A secret given in the configuration or produced by a command (`pass show x`).
#[derive(Debug, Clone)]
pub enum SecretSource {
    Value(SecretString),
    Command(Vec<String>),
}

impl SecretSource {
    /// The secret: the literal, or the first line the command prints (trailing whitespace
    /// dropped). The command's stderr goes to ours so that a pinentry or an error is visible.
    pub fn resolve(&self) -> Result<SecretString, String> {
        match self {
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| "the secret command is empty".to_string())?;
                let output = Command::new(program)
                    .args(args)
                    .stdin(Stdio::null())
                    .stderr(Stdio::inherit())
                    .output()
                    .map_err(|e| format!("could not run the secret command {program:?}: {e}"))?;
                let stdout = Zeroizing::new(output.stdout);
                if !output.status.success() {
                    return Err(format!(
                        "the secret command {program:?} failed ({}); run it by hand to see why",
                        output.status
                    ));
                }
                let text = std::str::from_utf8(&stdout).map_err(|_| {
                    format!("the secret command {program:?} printed non-UTF-8 output")
                })?;
                let line = text.lines().next().unwrap_or("").trim_end();
                if line.is_empty() {
                    return Err(format!("the secret command {program:?} printed nothing"));
                }
                Ok(SecretString::from(line.to_string()))
            }
        }
    }
}

/// One account as the token engine sees it.
#[derive(Debug, Clone)]
pub struct Account {
    /// The account's name: the login name mail clients use, also the token store key.
    pub name: String,
    pub provider: ProviderKind,
    pub endpoints: EndpointSource,
    pub client_id: String,
    pub client_secret: Option<SecretSource>,
    /// Send client credentials as HTTP Basic instead of in the form body.
    pub client_auth_basic: bool,
    pub scopes: Vec<String>,
    /// Extra authorization-request parameters (provider defaults plus the user's).
    pub auth_params: Vec<(String, String)>,
    pub flow: FlowKind,
    /// A fixed redirect URI (for a registration that only allows one); its port is used if set.
    pub redirect_uri: Option<Url>,
    /// Pre-selects the account on the provider's sign-in page.
    pub login_hint: Option<String>,
}

impl Account {
    /// The scopes as one space-separated string, as OAuth sends them.
    pub fn scope_param(&self) -> String {
        self.scopes.join(" ")
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn secret_command_first_line() {
        let s = SecretSource::Command(vec!["printf".into(), "s3cret\nsecond\n".into()]);
        assert_eq!(s.resolve().unwrap().expose_secret(), "s3cret");
        let err = SecretSource::Command(vec!["false".into()])
            .resolve()
            .unwrap_err();
        assert!(err.contains("failed"), "{err}");
        let err = SecretSource::Command(vec!["true".into()])
            .resolve()
            .unwrap_err();
        assert!(err.contains("printed nothing"), "{err}");
        let err = SecretSource::Command(vec!["/nonexistent/x".into()])
            .resolve()
            .unwrap_err();
        assert!(err.contains("could not run"), "{err}");
    }

    #[test]
    fn flow_names() {
        for f in [
            FlowKind::Loopback,
            FlowKind::Paste,
            FlowKind::Device,
            FlowKind::ClientCredentials,
        ] {
            assert_eq!(FlowKind::parse(f.name()), Some(f));
        }
        assert_eq!(
            FlowKind::parse("client-credentials"),
            Some(FlowKind::ClientCredentials)
        );
        assert_eq!(FlowKind::parse("authcode"), None);
    }
}
