//! The questions of `mailoauth setup`, in order, with each provider's presets and
//! recommendations: what was given on the command line is not asked again. Pure logic over
//! [`Ask`], so tests run it with a script; what the machine offers (a keyring, gpg, a display)
//! comes in as [`Facts`].

use std::io;

use secrecy::{ExposeSecret, SecretString};
use tokenlib::FlowKind;
use tokenlib::provider::{ProviderKind, check_endpoint};
use url::Url;

use super::ask::{Ask, Choice, choose, text, yes_no};
use crate::config::parse_server;

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

    fn syntax(self) -> &'static str {
        match self {
            Proto::Imap => "imaps://host:993 (TLS) or imap://host:143 (STARTTLS)",
            Proto::Smtp => "smtps://host:465 (TLS) or smtp://host:587 (STARTTLS)",
            Proto::Pop3 => "pop3s://host:995 (TLS) or pop3://host:110 (STARTTLS)",
        }
    }

    /// The provider's server, as written in the configuration.
    fn preset(self, provider: ProviderKind) -> Option<&'static str> {
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

const GOOGLE_STEPS: &str = "\
Register an OAuth client with Google (once; details in the README, \"Registering an app\"):
  1. https://console.cloud.google.com/ -> create a project.
  2. APIs & Services -> OAuth consent screen: External (or Internal for Workspace), add yourself
     as a test user and the scope https://mail.google.com/. Click \"Publish app\": while it says
     Testing, Google expires the authorization after 7 days.
  3. APIs & Services -> Credentials -> Create credentials -> OAuth client ID, type \"Desktop
     app\". Keep the client id and the client secret at hand.";

const MICROSOFT_STEPS: &str = "\
Register an app with Microsoft (once; details in the README, \"Registering an app\"):
  1. https://entra.microsoft.com/ -> App registrations -> New registration: your organization
     only (tenant = its id or domain) or any organization and personal accounts (common).
  2. Authentication -> Add a platform -> Mobile and desktop applications, redirect URI
     http://localhost. For the device flow set \"Allow public client flows\" to Yes.
  3. API permissions -> Office 365 Exchange Online: IMAP.AccessAsUser.All,
     POP.AccessAsUser.All, SMTP.Send (and offline_access); an admin may have to consent.
  4. A public client needs no secret. SMTP AUTH must be enabled for the mailbox.";

const GENERIC_STEPS: &str = "\
Register a client with your provider: a \"native\" or \"desktop\" app (redirect URI: the
  loopback address http://127.0.0.1, if it asks). Keep its client id, its secret (if it has one)
  and the scopes it needs at hand.";

/// Runs the interview.
pub fn interview(ask: &mut dyn Ask, given: &Given, facts: &Facts) -> Result<Answers, Stop> {
    let provider = match given.provider {
        Some(p) => p,
        None => choose(
            ask,
            "Which provider hosts the mailbox?",
            &[
                choice("google", "Gmail, Google Workspace", ProviderKind::Google),
                choice(
                    "microsoft",
                    "Microsoft 365, Outlook.com",
                    ProviderKind::Microsoft,
                ),
                choice(
                    "generic",
                    "any other OAuth2/OpenID Connect provider",
                    ProviderKind::Generic,
                ),
            ],
            None,
        )?,
    };
    ask.say(match provider {
        ProviderKind::Google => GOOGLE_STEPS,
        ProviderKind::Microsoft => MICROSOFT_STEPS,
        ProviderKind::Generic => GENERIC_STEPS,
    });

    let account = match &given.account {
        Some(a) => check_account(a).map_err(Stop::Declined)?,
        None => text(
            ask,
            "The mail address (mail programs will log in with it)",
            None,
            check_account,
        )?,
    };
    let replace = facts.accounts.contains(&account);
    if replace
        && !given.replace
        && !yes_no(
            ask,
            &format!("An account {account} is configured already. Replace it?"),
            false,
        )?
    {
        return Err(Stop::Declined(format!(
            "the account {account} is kept as it was; nothing was changed (pass --replace to replace it)"
        )));
    }

    let client_id = match &given.client_id {
        Some(id) => id.trim().to_string(),
        None => text(ask, "Client id", None, |a| {
            non_empty(a, "the client id from the app registration")
        })?,
    };

    let tenant = match provider {
        ProviderKind::Microsoft => Some(match &given.tenant {
            Some(t) => check_tenant(t).map_err(Stop::Declined)?,
            None => text(
                ask,
                "Tenant (common, consumers, organizations, or your tenant id or domain)",
                Some("common"),
                check_tenant,
            )?,
        }),
        _ => None,
    };

    let endpoints = match provider {
        ProviderKind::Generic => Some(generic_endpoints(ask, given)?),
        _ => None,
    };

    let secret = client_secret(ask, provider)?;

    let scopes = match provider {
        ProviderKind::Generic => {
            let scopes: Vec<String> = text(
                ask,
                "Scopes, separated by spaces (see the provider's documentation; often offline_access is one)",
                Some(""),
                |a| Ok(a.split_whitespace().map(str::to_string).collect()),
            )?;
            (!scopes.is_empty()).then_some(scopes)
        }
        _ => None,
    };

    let servers = servers(ask, provider)?;
    let flow = flow(ask, given, facts, provider, &secret, endpoints.as_ref())?;
    let local_password = proxy(ask, given, &account)?;
    let store = store(ask, given, facts, &account, local_password.is_some())?;
    Ok(Answers {
        account,
        provider,
        client_id,
        secret,
        tenant,
        endpoints,
        scopes,
        servers,
        flow,
        store,
        local_password,
        replace,
    })
}

fn choice<T>(name: &'static str, help: &str, value: T) -> Choice<T> {
    Choice {
        name,
        help: help.to_string(),
        value,
    }
}

fn non_empty(answer: &str, what: &str) -> Result<String, String> {
    if answer.is_empty() {
        Err(format!("please give {what}"))
    } else {
        Ok(answer.to_string())
    }
}

fn check_account(answer: &str) -> Result<String, String> {
    let answer = answer.trim();
    if answer.is_empty() || answer.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the account name is the login, e.g. me@example.com (no spaces)".into());
    }
    Ok(answer.to_string())
}

fn check_tenant(answer: &str) -> Result<String, String> {
    let t = answer.trim();
    if t.is_empty()
        || !t
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c))
    {
        return Err(
            "use common, consumers, organizations, a tenant id or a domain such as contoso.com"
                .into(),
        );
    }
    Ok(t.to_string())
}

fn check_url(answer: &str) -> Result<String, String> {
    let url = Url::parse(answer).map_err(|e| format!("{answer:?} is not a URL ({e})"))?;
    check_endpoint(&url)?;
    Ok(answer.to_string())
}

fn optional_url(answer: &str) -> Result<Option<String>, String> {
    if answer.is_empty() {
        Ok(None)
    } else {
        check_url(answer).map(Some)
    }
}

fn generic_endpoints(ask: &mut dyn Ask, given: &Given) -> Result<Endpoints, Stop> {
    if let Some(issuer) = &given.issuer {
        return Ok(Endpoints::Issuer(
            check_url(issuer.trim()).map_err(Stop::Declined)?,
        ));
    }
    let issuer = text(
        ask,
        "Issuer URL for OpenID Connect discovery (https://...), or empty to give the endpoints one by one",
        Some(""),
        optional_url,
    )?;
    if let Some(issuer) = issuer {
        return Ok(Endpoints::Issuer(issuer));
    }
    let authorize = text(
        ask,
        "Authorization endpoint (for the loopback and paste flows; empty if none)",
        Some(""),
        optional_url,
    )?;
    let token = text(ask, "Token endpoint", None, check_url)?;
    let device = text(
        ask,
        "Device authorization endpoint (for the device flow; empty if none)",
        Some(""),
        optional_url,
    )?;
    Ok(Endpoints::Explicit {
        authorize,
        token,
        device,
    })
}

#[derive(Clone, Copy)]
enum SecretHow {
    None,
    Command,
    Type,
}

fn client_secret(ask: &mut dyn Ask, provider: ProviderKind) -> Result<Secret, Stop> {
    let command = choice(
        "command",
        "a command prints it (e.g. pass show mail/client-secret): nothing secret in the file",
        SecretHow::Command,
    );
    let typed = choice(
        "type",
        "type it now (hidden); it is written to the config file, mode 0600",
        SecretHow::Type,
    );
    let none = choice("none", "no secret: a public client", SecretHow::None);
    let (options, default) = match provider {
        // Google's desktop apps always have a secret, and its token endpoint wants it.
        ProviderKind::Google => (vec![command, typed], "type"),
        ProviderKind::Microsoft => (vec![none, command, typed], "none"),
        ProviderKind::Generic => (vec![none, command, typed], "none"),
    };
    let how = choose(ask, "The client secret:", &options, Some(default))?;
    Ok(match how {
        SecretHow::None => Secret::None,
        SecretHow::Command => Secret::Command(text(
            ask,
            "Command printing the client secret",
            None,
            |a| match shell_words::split(a) {
                Ok(argv) if !argv.is_empty() => Ok(argv),
                Ok(_) => Err("please give a command, e.g. pass show mail/client-secret".into()),
                Err(e) => Err(format!("cannot split that into words: {e}")),
            },
        )?),
        SecretHow::Type => {
            for _ in 0..3 {
                let secret = ask.secret("Client secret (not shown): ")?;
                if !secret.expose_secret().trim().is_empty() {
                    return Ok(Secret::Value(SecretString::from(
                        secret.expose_secret().trim().to_string(),
                    )));
                }
                ask.say("  the secret is empty; paste it from the app registration");
            }
            return Err(Stop::Declined("no client secret was given".into()));
        }
    })
}

fn servers(ask: &mut dyn Ask, provider: ProviderKind) -> Result<Vec<(Proto, String)>, Stop> {
    let wanted: Vec<Proto> = text(
        ask,
        "Which protocols will you use? (imap smtp pop3, separated by spaces)",
        Some("imap smtp"),
        |a| {
            let mut wanted = Vec::new();
            for word in a.split([' ', ',']).filter(|w| !w.is_empty()) {
                let p = Proto::ALL
                    .into_iter()
                    .find(|p| p.key() == word.to_ascii_lowercase().trim_end_matches("s"))
                    .ok_or_else(|| format!("{word:?} is not one of imap, smtp, pop3"))?;
                if !wanted.contains(&p) {
                    wanted.push(p);
                }
            }
            if wanted.is_empty() {
                return Err("name at least one of imap, smtp, pop3".into());
            }
            Ok(wanted)
        },
    )?;
    let mut servers = Vec::new();
    for proto in wanted {
        let url = text(
            ask,
            &format!(
                "{} server: {}",
                proto.key().to_ascii_uppercase(),
                proto.syntax()
            ),
            proto.preset(provider),
            |a| parse_server(proto.key(), a).map(|_| a.to_string()),
        )?;
        servers.push((proto, url));
    }
    Ok(servers)
}

fn flow(
    ask: &mut dyn Ask,
    given: &Given,
    facts: &Facts,
    provider: ProviderKind,
    secret: &Secret,
    endpoints: Option<&Endpoints>,
) -> Result<FlowKind, Stop> {
    const GOOGLE_DEVICE: &str = "Google does not issue the mail scope through the device flow; use the loopback flow (a browser on this machine) or paste (a browser anywhere)";
    if let Some(flow) = given.flow {
        if provider == ProviderKind::Google && flow == FlowKind::Device {
            return Err(Stop::Declined(GOOGLE_DEVICE.into()));
        }
        return Ok(flow);
    }
    let loopback = choice(
        "loopback",
        "a browser on this machine; mailoauth catches the answer",
        FlowKind::Loopback,
    );
    let paste = choice(
        "paste",
        "a browser anywhere; you paste back the address it ends on",
        FlowKind::Paste,
    );
    let device = choice(
        "device",
        "enter a short code on any device (phone, other computer)",
        FlowKind::Device,
    );
    let headless = match provider {
        ProviderKind::Microsoft => "device",
        _ => "paste",
    };
    let recommended = if facts.graphical {
        "loopback"
    } else {
        headless
    };
    let mut options = match provider {
        ProviderKind::Google => vec![loopback, paste],
        ProviderKind::Microsoft => vec![loopback, device, paste],
        ProviderKind::Generic => {
            let mut o = vec![loopback, paste];
            let has_device = match endpoints {
                Some(Endpoints::Explicit { device, .. }) => device.is_some(),
                _ => true,
            };
            if has_device {
                o.push(device);
            }
            if !matches!(secret, Secret::None) {
                o.push(choice(
                    "app-only",
                    "client credentials: no user, the app's own access",
                    FlowKind::ClientCredentials,
                ));
            }
            o
        }
    };
    for o in &mut options {
        if o.name == recommended {
            o.help.push_str(" (recommended here)");
        }
    }
    let note = match provider {
        ProviderKind::Google => {
            "Google: loopback with a browser here, paste on a headless machine (never device: Google refuses the mail scope there)."
        }
        ProviderKind::Microsoft => {
            "Microsoft: loopback with a browser here, device on a headless machine (it needs \"Allow public client flows\")."
        }
        ProviderKind::Generic => "Use a flow your provider offers.",
    };
    ask.say(note);
    Ok(choose(
        ask,
        "How will you approve the access?",
        &options,
        Some(recommended),
    )?)
}

/// The proxy question; with the proxy, the local password (twice, hidden).
fn proxy(ask: &mut dyn Ask, given: &Given, account: &str) -> Result<Option<SecretString>, Stop> {
    let wanted = match given.proxy {
        Some(w) => w,
        None => {
            ask.say(
                "mailoauth can also run a local proxy for mail programs that only know passwords:\n\
                 they log in to 127.0.0.1 with a local password, and mailoauth logs in upstream with\n\
                 OAuth. Programs that speak OAuth themselves (mutt, neomutt, msmtp, mbsync, aerc) do\n\
                 not need it.",
            );
            yes_no(ask, "Use the local proxy?", false)?
        }
    };
    if !wanted {
        return Ok(None);
    }
    for _ in 0..3 {
        let first = ask.secret(&format!(
            "Local password for {account} (mail programs give it to the proxy; not shown): "
        ))?;
        if first.expose_secret().is_empty() {
            ask.say("  the password is empty");
            continue;
        }
        let second = ask.secret("Repeat it: ")?;
        if first.expose_secret() == second.expose_secret() {
            return Ok(Some(first));
        }
        ask.say("  the two passwords differ; again");
    }
    Err(Stop::Declined(
        "no local password was set; nothing was changed".into(),
    ))
}

fn store(
    ask: &mut dyn Ask,
    given: &Given,
    facts: &Facts,
    account: &str,
    with_proxy: bool,
) -> Result<StoreChoice, Stop> {
    if let Some(kind) = facts.store {
        ask.say(&format!(
            "Tokens go to the store the configuration has already: [store] kind = \"{kind}\"."
        ));
        return Ok(StoreChoice::Keep);
    }
    let arg = match given.store {
        Some(arg) => arg,
        None => {
            let mut options = vec![
                choice(
                    "keyring",
                    if facts.keyring {
                        "encrypted, the key in the desktop keyring (reachable here)"
                    } else {
                        "encrypted, the key in the desktop keyring (NOT reachable here)"
                    },
                    StoreArg::Keyring,
                ),
                choice(
                    "command",
                    "piped through your programs, e.g. gpg (for headless machines)",
                    StoreArg::Command,
                ),
            ];
            if with_proxy {
                options.push(choice(
                    "password",
                    "encrypted with the local password; then only the proxy can use the tokens",
                    StoreArg::Password,
                ));
            }
            options.push(choice(
                "plaintext",
                "unencrypted (mode 0600): only if you accept that",
                StoreArg::Plaintext,
            ));
            let default = match (facts.keyring, facts.gpg, with_proxy) {
                (true, _, _) => "keyring",
                (false, true, _) => "command",
                (false, false, true) => "password",
                (false, false, false) => "command",
            };
            choose(
                ask,
                "Where should the tokens be kept?",
                &options,
                Some(default),
            )?
        }
    };
    Ok(match arg {
        StoreArg::Keyring => StoreChoice::Keyring,
        StoreArg::Password => StoreChoice::Password,
        StoreArg::Plaintext => {
            ask.say("warning: plaintext keeps the refresh token unencrypted on disk: anyone who can read your files can read your mail.");
            if given.store.is_none() && !yes_no(ask, "Store the tokens unencrypted?", false)? {
                return store(ask, given, facts, account, with_proxy);
            }
            StoreChoice::Plaintext
        }
        StoreArg::Command => {
            let words = |a: &str| match shell_words::split(a) {
                Ok(argv) if !argv.is_empty() => Ok(argv),
                Ok(_) => Err("please give a command".to_string()),
                Err(e) => Err(format!("cannot split that into words: {e}")),
            };
            let encrypt = text(
                ask,
                "Command that encrypts (stdin to stdout)",
                Some(&format!(
                    "gpg --batch --encrypt --recipient {}",
                    crate::exit::shell_quote(account)
                )),
                words,
            )?;
            let decrypt = text(
                ask,
                "Command that decrypts",
                Some("gpg --batch --decrypt"),
                words,
            )?;
            StoreChoice::Command { encrypt, decrypt }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::ask::Script;
    use super::*;

    fn facts() -> Facts {
        Facts {
            keyring: true,
            graphical: true,
            ..Facts::default()
        }
    }

    #[test]
    fn google_with_defaults_and_a_secret_command() {
        let mut s = Script::new(&[
            "google",
            "me@gmail.com",
            "1234.apps.googleusercontent.com",
            "command",
            "pass show 'mail/google secret'",
            "",  // imap smtp
            "",  // imap preset
            "",  // smtp preset
            "",  // loopback (recommended with a display)
            "n", // no proxy
            "",  // keyring (reachable)
        ]);
        let a = interview(&mut s, &Given::default(), &facts()).unwrap();
        assert!(s.done());
        assert_eq!(a.provider, ProviderKind::Google);
        assert_eq!(a.account, "me@gmail.com");
        assert!(
            matches!(&a.secret, Secret::Command(argv) if argv == &["pass", "show", "mail/google secret"])
        );
        assert_eq!(
            a.servers,
            vec![
                (Proto::Imap, "imaps://imap.gmail.com:993".to_string()),
                (Proto::Smtp, "smtps://smtp.gmail.com:465".to_string())
            ]
        );
        assert_eq!(a.flow, FlowKind::Loopback);
        assert_eq!(a.store, StoreChoice::Keyring);
        assert!(a.local_password.is_none());
        // Google's registration steps were shown; Google offers no "none" secret or device flow.
        assert!(s.shown.contains("Desktop"));
        assert!(!s.shown.contains("none "));
        assert!(!s.shown.contains("device "));
    }

    #[test]
    fn microsoft_headless_with_proxy_and_no_keyring() {
        let mut s = Script::new(&[
            "me@contoso.com",
            "00000000-0000",
            "", // tenant common
            "", // none: public client
            "imap smtp pop3",
            "",
            "",
            "",
            "",    // device is recommended without a display
            "y",   // proxy
            "pw1", // local password
            "pw2", // differs
            "pw1", // again
            "pw1", // repeated
            "",    // default store without keyring or gpg, with the proxy: password
        ]);
        let given = Given {
            provider: Some(ProviderKind::Microsoft),
            ..Given::default()
        };
        let a = interview(&mut s, &given, &Facts::default()).unwrap();
        assert!(s.done(), "{}", s.shown);
        assert_eq!(a.tenant.as_deref(), Some("common"));
        assert!(matches!(a.secret, Secret::None));
        assert_eq!(a.servers[1].1, "smtp://smtp.office365.com:587");
        assert_eq!(a.servers[2].1, "pop3s://outlook.office365.com:995");
        assert_eq!(a.flow, FlowKind::Device);
        assert_eq!(a.local_password.unwrap().expose_secret(), "pw1");
        assert_eq!(a.store, StoreChoice::Password);
        assert!(s.shown.contains("differ"));
        assert!(s.shown.contains("NOT reachable"));
    }

    #[test]
    fn generic_with_explicit_endpoints_and_a_typed_secret_plaintext_confirmed() {
        let mut s = Script::new(&[
            "generic",
            "me@example.org",
            "client",
            "",                        // no issuer
            "http://example.org/auth", // refused: plain http off loopback
            "https://auth.example.org/auth",
            "https://auth.example.org/token",
            "", // no device endpoint
            "type",
            "  s3cret ",
            "openid offline_access",
            "imap",
            "imap.example.org", // not a URL
            "imap://mail.example.org",
            "device", // not offered without a device endpoint
            "paste",
            "", // no proxy
            "plaintext",
            "n", // not after all
            "plaintext",
            "yes",
        ]);
        let a = interview(&mut s, &Given::default(), &facts()).unwrap();
        assert!(s.done(), "{}", s.shown);
        assert_eq!(
            a.endpoints,
            Some(Endpoints::Explicit {
                authorize: Some("https://auth.example.org/auth".into()),
                token: "https://auth.example.org/token".into(),
                device: None
            })
        );
        assert!(matches!(&a.secret, Secret::Value(v) if v.expose_secret() == "s3cret"));
        assert_eq!(
            a.scopes,
            Some(vec!["openid".to_string(), "offline_access".to_string()])
        );
        assert_eq!(
            a.servers,
            vec![(Proto::Imap, "imap://mail.example.org".into())]
        );
        assert_eq!(a.flow, FlowKind::Paste);
        assert_eq!(a.store, StoreChoice::Plaintext);
        assert!(s.shown.contains("plain http"));
        assert!(s.shown.contains("warning: plaintext"));
        // The secret is never part of what is shown.
        assert!(!s.shown.contains("s3cret"));
    }

    #[test]
    fn existing_account_is_refused_unless_confirmed() {
        let facts = Facts {
            accounts: vec!["me@gmail.com".into()],
            store: Some("plaintext"),
            ..facts()
        };
        let given = Given {
            provider: Some(ProviderKind::Google),
            account: Some("me@gmail.com".into()),
            ..Given::default()
        };
        let mut s = Script::new(&["", "never asked"]);
        match interview(&mut s, &given, &facts) {
            Err(Stop::Declined(why)) => assert!(why.contains("nothing was changed"), "{why}"),
            other => panic!("{:?}", other.map(|a| a.account)),
        }
        let given = Given {
            replace: true,
            flow: Some(FlowKind::Paste),
            proxy: Some(false),
            ..given
        };
        let mut s = Script::new(&["id", "type", "x", "", "", ""]);
        let a = interview(&mut s, &given, &facts).unwrap();
        assert!(a.replace);
        assert_eq!(a.store, StoreChoice::Keep, "an existing [store] is kept");
        assert!(s.done(), "{}", s.shown);
    }

    #[test]
    fn google_device_flag_is_refused() {
        let given = Given {
            provider: Some(ProviderKind::Google),
            account: Some("me@gmail.com".into()),
            client_id: Some("id".into()),
            flow: Some(FlowKind::Device),
            ..Given::default()
        };
        let mut s = Script::new(&["type", "x", "", "", ""]);
        assert!(matches!(
            interview(&mut s, &given, &facts()),
            Err(Stop::Declined(why)) if why.contains("device flow")
        ));
    }
}
