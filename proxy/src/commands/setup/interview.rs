//! The questions of `mailoauth setup`, in order, with each provider's presets and
//! recommendations: what was given on the command line is not asked again. Pure logic over
//! [`Ask`], so tests run it with a script; what the machine offers (a keyring, gpg, a display)
//! comes in as [`Facts`].

use secrecy::{ExposeSecret, SecretString};
use tokenlib::FlowKind;
use tokenlib::provider::{ProviderKind, check_endpoint};
use url::Url;

use super::answers::{
    Answers, Endpoints, Facts, Given, Proto, Secret, Stop, StoreArg, StoreChoice,
};
use super::ask::{Ask, Choice, choose, text, yes_no};
use crate::config::parse_server;

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
        upstream_ca: given.upstream_ca.clone(),
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
mod tests;
