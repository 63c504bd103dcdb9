//! `[proxy.imap]`, `[proxy.smtp]`, `[proxy.pop3]`: where the proxy listens and with which TLS.
//! Loopback by default; any other address needs TLS and an explicit `allow_remote`.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

/// `[proxy]`: the listeners of `mailoauth serve`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    #[serde(default)]
    pub imap: Option<ListenerConfig>,
    #[serde(default)]
    pub smtp: Option<ListenerConfig>,
    #[serde(default)]
    pub pop3: Option<ListenerConfig>,
    /// Most simultaneous client connections per listener.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    4096
}

/// How a listener speaks TLS to local clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerTls {
    /// Plain TCP (fine on loopback: nothing leaves the machine).
    None,
    /// Plain TCP with STARTTLS offered.
    Starttls,
    /// TLS from the first byte.
    Implicit,
}

/// One protocol's listener, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawListener")]
pub struct ListenerConfig {
    pub listen: Vec<SocketAddr>,
    pub tls: ListenerTls,
    /// The certificate and key (PEM); `None`: the generated self-signed one.
    pub cert: Option<(PathBuf, PathBuf)>,
    /// On a plain listener: refuse logins until STARTTLS (LOGINDISABLED).
    pub require_tls: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    listen: OneOrMany,
    #[serde(default = "default_tls")]
    tls: ListenerTls,
    #[serde(default)]
    cert: Option<PathBuf>,
    #[serde(default)]
    key: Option<PathBuf>,
    #[serde(default)]
    require_tls: bool,
    #[serde(default)]
    allow_remote: bool,
}

fn default_tls() -> ListenerTls {
    ListenerTls::None
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl TryFrom<RawListener> for ListenerConfig {
    type Error = String;

    fn try_from(raw: RawListener) -> Result<Self, String> {
        let texts = match raw.listen {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if texts.is_empty() {
            return Err("listen is empty; write e.g. listen = \"127.0.0.1:1143\"".into());
        }
        let mut listen = Vec::new();
        for text in &texts {
            let addr: SocketAddr = text.parse().map_err(|_| {
                format!("listen = {text:?} is not an address:port; write e.g. \"127.0.0.1:1143\" or \"[::1]:1143\"")
            })?;
            listen.push(addr);
        }
        if raw.require_tls && raw.tls != ListenerTls::Starttls {
            return Err("require_tls only applies to tls = \"starttls\" (an implicit-TLS listener always has TLS; a plain one can never get it)".into());
        }
        let cert = match (raw.cert, raw.key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("cert and key go together: set both (PEM files), or neither for the generated self-signed certificate".into()),
        };
        if cert.is_some() && raw.tls == ListenerTls::None {
            return Err(
                "cert and key are only used with tls = \"starttls\" or \"implicit\"".into(),
            );
        }
        for addr in &listen {
            if addr.ip().is_loopback() {
                continue;
            }
            let protected = raw.tls == ListenerTls::Implicit
                || (raw.tls == ListenerTls::Starttls && raw.require_tls);
            if !protected {
                return Err(format!(
                    "{addr} is not a loopback address: passwords would cross the network. Use tls = \"implicit\" (or \"starttls\" with require_tls = true) and allow_remote = true"
                ));
            }
            if !raw.allow_remote {
                return Err(format!(
                    "{addr} is not a loopback address; listening beyond this machine needs allow_remote = true (and a certificate clients trust)"
                ));
            }
        }
        Ok(ListenerConfig {
            listen,
            tls: raw.tls,
            cert,
            require_tls: raw.require_tls,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ListenerConfig, String> {
        toml::from_str::<ListenerConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn loopback_defaults() {
        let l = parse("listen = \"127.0.0.1:1143\"").unwrap();
        assert_eq!(l.tls, ListenerTls::None);
        assert_eq!(l.listen, vec!["127.0.0.1:1143".parse().unwrap()]);
        let l = parse(
            "listen = [\"127.0.0.1:1143\", \"[::1]:1143\"]\ntls = \"starttls\"\nrequire_tls = true",
        )
        .unwrap();
        assert_eq!(l.listen.len(), 2);
        assert!(l.require_tls);
    }

    #[test]
    fn remote_needs_tls_and_consent() {
        let e = parse("listen = \"0.0.0.0:1143\"").unwrap_err();
        assert!(
            e.contains("not a loopback") && e.contains("implicit"),
            "{e}"
        );
        let e = parse("listen = \"0.0.0.0:1993\"\ntls = \"implicit\"").unwrap_err();
        assert!(e.contains("allow_remote"), "{e}");
        let e = parse("listen = \"0.0.0.0:1143\"\ntls = \"starttls\"\nallow_remote = true")
            .unwrap_err();
        assert!(e.contains("require_tls"), "{e}");
        parse("listen = \"0.0.0.0:1993\"\ntls = \"implicit\"\nallow_remote = true").unwrap();
    }

    #[test]
    fn bad_values() {
        assert!(
            parse("listen = \"localhost:1143\"")
                .unwrap_err()
                .contains("not an address")
        );
        assert!(
            parse("listen = \"127.0.0.1:1\"\ntls = \"tls\"")
                .unwrap_err()
                .contains("implicit")
        );
        assert!(
            parse("listen = \"127.0.0.1:1\"\ncert = \"/c\"\ntls = \"implicit\"")
                .unwrap_err()
                .contains("go together")
        );
        assert!(
            parse("listen = \"127.0.0.1:1\"\nrequire_tls = true")
                .unwrap_err()
                .contains("starttls")
        );
    }
}
