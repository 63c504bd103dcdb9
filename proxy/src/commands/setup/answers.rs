//! What `setup` asks for and what it knows: the answers given ahead on the command line
//! ([`Given`]), what the machine and the existing configuration offer ([`Facts`]), and the
//! result of the interview ([`Answers`]) that the editor and the snippets work from.

use std::io;

use secrecy::SecretString;
use tokenlib::FlowKind;
use tokenlib::provider::ProviderKind;

/// A mail protocol the account is used for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Imap,
    Smtp,
    Pop3,
}

impl Proto {
    pub const ALL: [Proto; 3] = [Proto::Imap, Proto::Smtp, Proto::Pop3];

    /// The account key and the `[proxy.*]` table name.
    pub fn key(self) -> &'static str {
        match self {
            Proto::Imap => "imap",
            Proto::Smtp => "smtp",
            Proto::Pop3 => "pop3",
        }
    }

    /// The local port `setup` gives the proxy's listener.
    pub fn local_port(self) -> u16 {
        match self {
            Proto::Imap => 1143,
            Proto::Smtp => 1587,
            Proto::Pop3 => 1110,
        }
    }

    pub fn syntax(self) -> &'static str {
        match self {
            Proto::Imap => "imaps://host:993 (TLS) or imap://host:143 (STARTTLS)",
            Proto::Smtp => "smtps://host:465 (TLS) or smtp://host:587 (STARTTLS)",
            Proto::Pop3 => "pop3s://host:995 (TLS) or pop3://host:110 (STARTTLS)",
        }
    }

    /// The provider's server, as written in the configuration.
    pub fn preset(self, provider: ProviderKind) -> Option<&'static str> {
        match (provider, self) {
            (ProviderKind::Google, Proto::Imap) => Some("imaps://imap.gmail.com:993"),
            (ProviderKind::Google, Proto::Smtp) => Some("smtps://smtp.gmail.com:465"),
            (ProviderKind::Google, Proto::Pop3) => Some("pop3s://pop.gmail.com:995"),
            (ProviderKind::Microsoft, Proto::Imap) => Some("imaps://outlook.office365.com:993"),
            (ProviderKind::Microsoft, Proto::Smtp) => Some("smtp://smtp.office365.com:587"),
            (ProviderKind::Microsoft, Proto::Pop3) => Some("pop3s://outlook.office365.com:995"),
            (ProviderKind::Generic, _) => None,
        }
    }
}

/// Where the client secret comes from.
pub enum Secret {
    /// A public client.
    None,
    /// Typed during setup; written as `client_secret`.
    Value(SecretString),
    /// `client_secret_command`: a program printing it.
    Command(Vec<String>),
}

/// A generic provider's endpoints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoints {
    Issuer(String),
    Explicit {
        authorize: Option<String>,
        token: String,
        device: Option<String>,
    },
}

/// The `[store]` to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreChoice {
    /// The configuration has a `[store]` already (it serves every account): leave it.
    Keep,
    Keyring,
    Command {
        encrypt: Vec<String>,
        decrypt: Vec<String>,
    },
    Password,
    Plaintext,
}

/// The store kinds, as `--store` names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreArg {
    Keyring,
    Command,
    Password,
    Plaintext,
}

/// Answers given on the command line.
#[derive(Debug, Default)]
pub struct Given {
    pub provider: Option<ProviderKind>,
    pub account: Option<String>,
    pub client_id: Option<String>,
    pub tenant: Option<String>,
    pub issuer: Option<String>,
    pub flow: Option<FlowKind>,
    pub store: Option<StoreArg>,
    pub proxy: Option<bool>,
    /// Replace an account of the same name without asking.
    pub replace: bool,
    /// A CA certificate the mail servers' certificates chain to (a self-hosted server).
    pub upstream_ca: Option<std::path::PathBuf>,
}

/// What this machine and the existing configuration offer.
#[derive(Debug, Default)]
pub struct Facts {
    /// Accounts configured already.
    pub accounts: Vec<String>,
    /// The configured `[store]` kind, if the file has that table.
    pub store: Option<&'static str>,
    /// A Secret Service (or Keychain) answers.
    pub keyring: bool,
    /// `gpg` is on PATH.
    pub gpg: bool,
    /// A browser can probably be opened here (a display).
    pub graphical: bool,
}

/// Everything `setup` needs to write the account.
pub struct Answers {
    pub account: String,
    pub provider: ProviderKind,
    pub client_id: String,
    pub secret: Secret,
    pub tenant: Option<String>,
    pub endpoints: Option<Endpoints>,
    pub scopes: Option<Vec<String>>,
    /// The chosen protocols and their servers, as written in the configuration.
    pub servers: Vec<(Proto, String)>,
    pub flow: FlowKind,
    pub store: StoreChoice,
    /// Set when the proxy was chosen.
    pub local_password: Option<SecretString>,
    /// An account of this name exists and may be replaced.
    pub replace: bool,
    /// `upstream_ca` of the account, if given.
    pub upstream_ca: Option<std::path::PathBuf>,
}

/// Why the interview ended without answers.
#[derive(Debug)]
pub enum Stop {
    Io(io::Error),
    /// The user (or a flag) said no, or asked for something that cannot work.
    Declined(String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}
