//! The configuration file: TOML at `$XDG_CONFIG_HOME/mailoauth/config.toml` (or `--config`),
//! turned into typed, validated values. Every error names the file, the line and the key, and
//! says what is allowed (toml's spans do the locating; validation runs inside deserialization so
//! that cross-field problems point at the account's table header).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;
use serde::Deserialize;
use url::Url;

use tokenlib::provider::{ProviderKind, check_endpoint, is_loopback_host};
use tokenlib::{FlowKind, SecretSource};

/// Where mailoauth keeps its files, all derived from the XDG variables (falling back to `$HOME`),
/// so a different `HOME` isolates everything. The same layout is used on macOS: this is a
/// command-line tool, and `~/.config` is where its users look.
#[derive(Debug, Clone)]
pub struct Paths {
    pub config_file: PathBuf,
    pub state_dir: PathBuf,
    /// Where the daemon's control socket lives: `$XDG_RUNTIME_DIR/mailoauth` (a per-login
    /// tmpfs only the user can enter), else `STATE_DIR/run` (macOS, ssh sessions without
    /// systemd-logind).
    pub runtime_dir: PathBuf,
}

impl Paths {
    /// Resolves the paths; `config_override` is `--config`.
    pub fn resolve(config_override: Option<&Path>) -> anyhow::Result<Paths> {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        let xdg = |var: &str, fallback: &str| -> anyhow::Result<PathBuf> {
            match std::env::var_os(var).map(PathBuf::from).filter(|p| p.is_absolute()) {
                Some(p) => Ok(p),
                None => home.as_ref().map(|h| h.join(fallback)).ok_or_else(|| {
                    anyhow::anyhow!("neither ${var} nor $HOME is set, so mailoauth cannot find its files; set HOME or pass --config")
                }),
            }
        };
        let config_file = match config_override {
            Some(p) => p.to_path_buf(),
            None => xdg("XDG_CONFIG_HOME", ".config")?.join("mailoauth/config.toml"),
        };
        let state_dir = xdg("XDG_STATE_HOME", ".local/state")?.join("mailoauth");
        let runtime_dir = match std::env::var_os("XDG_RUNTIME_DIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
        {
            Some(p) => p.join("mailoauth"),
            None => state_dir.join("run"),
        };
        Ok(Paths {
            config_file,
            state_dir,
            runtime_dir,
        })
    }

    /// The daemon's control socket.
    pub fn control_socket(&self) -> PathBuf {
        self.runtime_dir.join("control.sock")
    }
}

/// The whole configuration.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Run when an account needs re-authorization, its refresh keeps failing, or its refresh
    /// token is about to expire: split like a shell command line, with the account and a
    /// plain-language message appended as two arguments (also in `MAILOAUTH_ACCOUNT` and
    /// `MAILOAUTH_MESSAGE`). Example: `notify_command = "notify-send mailoauth"`.
    #[serde(default)]
    pub notify_command: Option<String>,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub proxy: ProxyConfig,
    #[serde(default)]
    pub accounts: BTreeMap<String, AccountConfig>,
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                anyhow::anyhow!(
                    "no configuration at {}: create it (see config/config.example.toml in the mailoauth sources or the README), or pass --config PATH",
                    path.display()
                )
            } else {
                anyhow::anyhow!("cannot read {}: {e}", path.display())
            }
        })?;
        Config::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
    }

    /// Parses configuration text.
    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// The account named `name`, or an error listing the configured ones.
    pub fn account(&self, name: &str) -> anyhow::Result<&AccountConfig> {
        self.accounts.get(name).ok_or_else(|| {
            let known: Vec<&str> = self.accounts.keys().map(String::as_str).collect();
            if known.is_empty() {
                anyhow::anyhow!(
                    "no account {name:?}: the configuration has no [accounts.\"…\"] tables yet"
                )
            } else {
                anyhow::anyhow!(
                    "no account {name:?} in the configuration; configured: {}",
                    known.join(", ")
                )
            }
        })
    }
}

/// `[store]`: how token records are sealed at rest.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, try_from = "RawStore")]
pub struct StoreConfig {
    pub kind: StoreKind,
    /// Overrides the store directory (default: `<state dir>/tokens`).
    pub dir: Option<PathBuf>,
}

/// The sealers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    Command {
        encrypt: Vec<String>,
        decrypt: Vec<String>,
    },
    Keyring,
    Plaintext,
    /// Each account's record is encrypted with a key derived from its local password; the
    /// tokens unlock when the account first logs in to the proxy.
    Password,
}

impl Default for StoreConfig {
    /// No silent plaintext: without a `[store]` table, records go to the OS keyring, and where
    /// there is none the error says how to choose another sealer.
    fn default() -> Self {
        StoreConfig {
            kind: StoreKind::Keyring,
            dir: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    kind: RawStoreKind,
    #[serde(default)]
    encrypt: Option<Vec<String>>,
    #[serde(default)]
    decrypt: Option<Vec<String>>,
    #[serde(default)]
    dir: Option<PathBuf>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum RawStoreKind {
    Command,
    Keyring,
    Plaintext,
    Password,
}

impl TryFrom<RawStore> for StoreConfig {
    type Error = String;
    fn try_from(raw: RawStore) -> Result<Self, String> {
        let kind = match raw.kind {
            RawStoreKind::Command => match (raw.encrypt, raw.decrypt) {
                (Some(e), Some(d)) if !e.is_empty() && !d.is_empty() => StoreKind::Command {
                    encrypt: e,
                    decrypt: d,
                },
                _ => {
                    return Err(
                        "kind = \"command\" needs encrypt = [program, args…] and decrypt = [program, args…], e.g. encrypt = [\"gpg\", \"--batch\", \"--encrypt\", \"--recipient\", \"you@example.com\"] and decrypt = [\"gpg\", \"--batch\", \"--decrypt\"]".into(),
                    );
                }
            },
            other => {
                if raw.encrypt.is_some() || raw.decrypt.is_some() {
                    return Err("encrypt and decrypt are only used with kind = \"command\"".into());
                }
                match other {
                    RawStoreKind::Keyring => StoreKind::Keyring,
                    RawStoreKind::Password => StoreKind::Password,
                    _ => StoreKind::Plaintext,
                }
            }
        };
        if let Some(dir) = &raw.dir
            && !dir.is_absolute()
        {
            return Err(format!(
                "dir = {:?} must be an absolute path",
                dir.display()
            ));
        }
        Ok(StoreConfig { kind, dir: raw.dir })
    }
}

/// An upstream mail server: `imaps://host:993` (implicit TLS) or `imap://host:143` (STARTTLS,
/// mandatory), likewise `smtps`/`smtp` and `pop3s`/`pop3`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// Implicit TLS; otherwise STARTTLS/STLS, which must be offered.
    pub implicit_tls: bool,
}

impl fmt::Display for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = if self.implicit_tls {
            "implicit TLS"
        } else {
            "STARTTLS"
        };
        write!(f, "{}:{} ({tls})", self.host, self.port)
    }
}

/// The mail protocols, for parsing upstream URLs.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Imap,
    Smtp,
    Pop3,
}

impl Protocol {
    /// (implicit-TLS scheme, port), (STARTTLS scheme, port).
    fn schemes(self) -> [(&'static str, u16); 2] {
        match self {
            Protocol::Imap => [("imaps", 993), ("imap", 143)],
            Protocol::Smtp => [("smtps", 465), ("smtp", 587)],
            Protocol::Pop3 => [("pop3s", 995), ("pop3", 110)],
        }
    }
}

fn parse_upstream(proto: Protocol, text: &str) -> Result<Upstream, String> {
    let [(tls_scheme, tls_port), (plain_scheme, plain_port)] = proto.schemes();
    let allowed = format!(
        "{tls_scheme}://host[:port] (implicit TLS) or {plain_scheme}://host[:port] (STARTTLS)"
    );
    let url =
        Url::parse(text).map_err(|e| format!("{text:?} is not a URL ({e}); write {allowed}"))?;
    let implicit_tls = match url.scheme() {
        s if s == tls_scheme => true,
        s if s == plain_scheme => false,
        other => {
            return Err(format!(
                "scheme {other:?} is not allowed here; write {allowed}"
            ));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| format!("{text:?} has no host; write {allowed}"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
        return Err(format!(
            "{text:?} has a path, query or user; write just {allowed}"
        ));
    }
    let port = url
        .port()
        .unwrap_or(if implicit_tls { tls_port } else { plain_port });
    Ok(Upstream {
        host,
        port,
        implicit_tls,
    })
}

/// Checks a server URL as an account's `imap`, `smtp` or `pop3` key would (`key` names which).
pub fn parse_server(key: &str, text: &str) -> Result<Upstream, String> {
    let proto = match key {
        "imap" => Protocol::Imap,
        "smtp" => Protocol::Smtp,
        "pop3" => Protocol::Pop3,
        other => return Err(format!("{other:?} is not one of imap, smtp, pop3")),
    };
    parse_upstream(proto, text)
}

/// An `[accounts."login"]` table, validated.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawAccount")]
pub struct AccountConfig {
    pub provider: ProviderKind,
    pub client_id: String,
    pub client_secret: Option<SecretSource>,
    pub client_auth_basic: bool,
    pub tenant: String,
    pub issuer: Option<Url>,
    pub authorize_url: Option<Url>,
    pub token_url: Option<Url>,
    pub device_url: Option<Url>,
    /// Explicit scopes; `None` means the provider's defaults for the configured protocols.
    pub scopes: Option<Vec<String>>,
    pub flow: FlowKind,
    pub redirect_uri: Option<Url>,
    pub login_hint: Option<String>,
    /// The identity sent upstream in the SASL exchange (default: the account name).
    pub user: Option<String>,
    pub imap: Option<Upstream>,
    pub smtp: Option<Upstream>,
    pub pop3: Option<Upstream>,
    /// Extra trust anchor for the upstream mail servers.
    pub upstream_ca: Option<PathBuf>,
    pub auth_params: Vec<(String, String)>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    provider: RawProvider,
    client_id: String,
    #[serde(default)]
    client_secret: Option<SecretString>,
    #[serde(default)]
    client_secret_command: Option<Vec<String>>,
    #[serde(default)]
    client_auth: Option<RawClientAuth>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    authorize_url: Option<String>,
    #[serde(default)]
    token_url: Option<String>,
    #[serde(default)]
    device_url: Option<String>,
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    flow: Option<RawFlow>,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    login_hint: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    imap: Option<String>,
    #[serde(default)]
    smtp: Option<String>,
    #[serde(default)]
    pop3: Option<String>,
    #[serde(default)]
    upstream_ca: Option<PathBuf>,
    #[serde(default)]
    auth_params: BTreeMap<String, String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawProvider {
    Google,
    Microsoft,
    Generic,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum RawFlow {
    Loopback,
    Paste,
    Device,
    ClientCredentials,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawClientAuth {
    Body,
    Basic,
}

fn endpoint(key: &str, value: Option<String>) -> Result<Option<Url>, String> {
    value
        .map(|s| {
            let url = Url::parse(&s).map_err(|e| format!("{key} = {s:?} is not a URL ({e})"))?;
            check_endpoint(&url).map_err(|e| format!("{key}: {e}"))?;
            Ok(url)
        })
        .transpose()
}

impl TryFrom<RawAccount> for AccountConfig {
    type Error = String;

    fn try_from(raw: RawAccount) -> Result<Self, String> {
        let provider = match raw.provider {
            RawProvider::Google => ProviderKind::Google,
            RawProvider::Microsoft => ProviderKind::Microsoft,
            RawProvider::Generic => ProviderKind::Generic,
        };
        if raw.client_id.trim().is_empty() {
            return Err("client_id is empty; copy it from the app registration".into());
        }
        let client_secret = match (raw.client_secret, raw.client_secret_command) {
            (Some(_), Some(_)) => {
                return Err("set client_secret or client_secret_command, not both".into());
            }
            (Some(s), None) => Some(SecretSource::Value(s)),
            (None, Some(argv)) if argv.is_empty() => {
                return Err("client_secret_command is empty; write it as [program, args…]".into());
            }
            (None, Some(argv)) => Some(SecretSource::Command(argv)),
            (None, None) => None,
        };
        if raw.tenant.is_some() && provider != ProviderKind::Microsoft {
            return Err("tenant is only used with provider = \"microsoft\"".into());
        }
        let tenant = raw.tenant.unwrap_or_else(|| "common".into());
        if tenant.is_empty()
            || !tenant
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
        {
            return Err(format!(
                "tenant = {tenant:?} is not valid; use \"common\", \"consumers\", \"organizations\", a tenant id or a domain"
            ));
        }
        let issuer = endpoint("issuer", raw.issuer)?;
        let authorize_url = endpoint("authorize_url", raw.authorize_url)?;
        let token_url = endpoint("token_url", raw.token_url)?;
        let device_url = endpoint("device_url", raw.device_url)?;
        if provider == ProviderKind::Generic && issuer.is_none() && token_url.is_none() {
            return Err(
                "provider = \"generic\" needs issuer = \"https://…\" (OIDC discovery) or at least token_url (plus authorize_url and/or device_url for the flows you use)".into(),
            );
        }
        if provider != ProviderKind::Generic && issuer.is_some() {
            return Err("issuer is only used with provider = \"generic\"; presets know their endpoints (override single ones with authorize_url, token_url, device_url)".into());
        }
        let flow = match raw.flow {
            None => FlowKind::Loopback,
            Some(RawFlow::Loopback) => FlowKind::Loopback,
            Some(RawFlow::Paste) => FlowKind::Paste,
            Some(RawFlow::Device) => FlowKind::Device,
            Some(RawFlow::ClientCredentials) => FlowKind::ClientCredentials,
        };
        if flow == FlowKind::ClientCredentials && client_secret.is_none() {
            return Err(
                "flow = \"client_credentials\" needs client_secret or client_secret_command".into(),
            );
        }
        let redirect_uri = raw
            .redirect_uri
            .map(|s| {
                let url = Url::parse(&s).map_err(|e| format!("redirect_uri = {s:?} is not a URL ({e})"))?;
                if url.scheme() == "http" && !is_loopback_host(&url) {
                    return Err(format!("redirect_uri = {s:?}: plain http is only allowed to localhost, 127.0.0.1 or [::1]"));
                }
                Ok(url)
            })
            .transpose()?;
        if let Some(scopes) = &raw.scopes
            && scopes
                .iter()
                .any(|s| s.is_empty() || s.contains(char::is_whitespace))
        {
            return Err("scopes must be a list of single scopes without spaces, e.g. [\"openid\", \"mail\"]".into());
        }
        let defaults = default_upstreams(provider);
        let upstream = |proto,
                        value: Option<String>,
                        default: Option<&str>|
         -> Result<Option<Upstream>, String> {
            match value.as_deref().or(default) {
                None => Ok(None),
                Some(text) => parse_upstream(proto, text)
                    .map(Some)
                    .map_err(|e| match proto {
                        Protocol::Imap => format!("imap: {e}"),
                        Protocol::Smtp => format!("smtp: {e}"),
                        Protocol::Pop3 => format!("pop3: {e}"),
                    }),
            }
        };
        Ok(AccountConfig {
            provider,
            client_id: raw.client_id,
            client_secret,
            client_auth_basic: matches!(raw.client_auth, Some(RawClientAuth::Basic)),
            tenant,
            issuer,
            authorize_url,
            token_url,
            device_url,
            scopes: raw.scopes,
            flow,
            redirect_uri,
            login_hint: raw.login_hint,
            user: raw.user,
            imap: upstream(Protocol::Imap, raw.imap, defaults[0])?,
            smtp: upstream(Protocol::Smtp, raw.smtp, defaults[1])?,
            pop3: upstream(Protocol::Pop3, raw.pop3, defaults[2])?,
            upstream_ca: raw.upstream_ca,
            auth_params: raw.auth_params.into_iter().collect(),
        })
    }
}

/// The provider's mail servers as (imap, smtp, pop3); none for generic providers.
pub fn provider_upstreams(provider: ProviderKind) -> [Option<Upstream>; 3] {
    let [imap, smtp, pop3] = default_upstreams(provider);
    let parse = |proto, text: Option<&str>| {
        text.map(|t| parse_upstream(proto, t).expect("preset upstreams are valid"))
    };
    [
        parse(Protocol::Imap, imap),
        parse(Protocol::Smtp, smtp),
        parse(Protocol::Pop3, pop3),
    ]
}

/// The provider's mail servers: [imap, smtp, pop3]. Microsoft's SMTP is STARTTLS on 587 only.
fn default_upstreams(provider: ProviderKind) -> [Option<&'static str>; 3] {
    match provider {
        ProviderKind::Google => [
            Some("imaps://imap.gmail.com:993"),
            Some("smtps://smtp.gmail.com:465"),
            Some("pop3s://pop.gmail.com:995"),
        ],
        ProviderKind::Microsoft => [
            Some("imaps://outlook.office365.com:993"),
            Some("smtp://smtp.office365.com:587"),
            Some("pop3s://outlook.office365.com:995"),
        ],
        ProviderKind::Generic => [None, None, None],
    }
}

mod listeners;
pub use listeners::{ListenerConfig, ListenerTls, ProxyConfig};

#[cfg(test)]
mod tests;
