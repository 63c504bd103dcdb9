//! mutt_oauth2.py compatibility: `mailoauth TOKENFILE [--authorize] [--authflow …] [-v] [-d]`
//! works on the script's own token file in place (same JSON fields, same encrypt/decrypt pipes),
//! so an existing muttrc only changes the program path; and `mailoauth import` moves such a
//! file's tokens into mailoauth's store.
//!
//! What differs, on purpose: diagnostics never go to stdout (the script prints refresh errors
//! there and mutt sends them as the "token"); the file is replaced atomically under a lock (IMAP
//! and SMTP refreshing at once spend the refresh token once); tokens are renewed 5 minutes
//! before they expire; `-d` shows fingerprints, never the tokens.

use std::io::BufRead;
use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::{Map, Value};
use tokenlib::flow::FlowOptions;
use tokenlib::provider::{
    self, EndpointSource, Protocols, ProviderKind, google_endpoints, microsoft_endpoints,
};
use tokenlib::store::{
    CommandPipe, ReadPrivateError, RecordFormat, Sealer, Store, mutt, read_private,
};
use tokenlib::token::{fingerprint, now_unix};
use tokenlib::{Account, FlowKind, Refresher, SecretSource, TokenSet};

use super::authorize::flow_failure;
use super::runtime;
use super::token::print_line;
use crate::Cli;
use crate::accounts::{open_store, token_account};
use crate::config::{Config, Paths, StoreKind, provider_upstreams};
use crate::diagnose::{self, Protocol};
use crate::exit::{CONFIGURATION, ERROR, Failure, NEEDS_AUTHORIZATION, USAGE};
use crate::terminal::TerminalPrompter;

pub fn run(cli: &Cli, file: &Path) -> Result<(), Failure> {
    let args = &cli.compat;
    let (paths, config) = load_optional_config(cli)?;
    let sealer = pipes(
        &config,
        args.encryption_pipe.as_deref(),
        args.decryption_pipe.as_deref(),
    )?;
    let (fields, tokens) = read_token_file(file, sealer.as_ref())?;
    let text = |k: &str| {
        fields
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    if fields.is_empty() && !args.authorize {
        return Err(Failure::new(
            NEEDS_AUTHORIZATION,
            format!(
                "{} does not exist yet: run once with --authorize",
                file.display()
            ),
        ));
    }
    let registration = ask(
        "OAuth2 registration (google or microsoft)",
        &args.provider,
        text("registration"),
    )?;
    let email = ask("Account e-mail address", &args.email, text("email"))?;
    let authflow = match (&args.authflow, text("authflow")) {
        (Some(f), _) => f.clone(),
        (None, Some(f)) => f,
        (None, None) if args.authorize => ask(
            "Preferred OAuth2 flow (authcode, localhostauthcode or devicecode)",
            &None,
            None,
        )?,
        (None, None) => "authcode".into(),
    };
    let flow = match authflow.as_str() {
        "authcode" => FlowKind::Paste,
        "localhostauthcode" => FlowKind::Loopback,
        "devicecode" => FlowKind::Device,
        other => {
            return Err(Failure::new(
                USAGE,
                format!(
                    "unknown OAuth2 flow {other:?}: use authcode, localhostauthcode or devicecode"
                ),
            ));
        }
    };
    if cli.debug {
        debug_dump(&fields, tokens.as_ref());
    }
    let session = Session {
        cli,
        file,
        paths: &paths,
        config: &config,
        email: &email,
        registration: &registration,
    };
    let token = match tokens {
        // A valid token needs neither the OAuth client nor the network.
        Some(t) if !args.authorize && t.is_fresh(now_unix()) => {
            if args.verbose {
                eprintln!(
                    "NOTICE: Access token is valid for {} more seconds.",
                    t.expires_at - now_unix()
                );
            }
            t.access_token
        }
        None if !args.authorize => {
            return Err(Failure::new(
                NEEDS_AUTHORIZATION,
                format!(
                    "{} holds no tokens yet: run once with --authorize",
                    file.display()
                ),
            ));
        }
        _ => {
            let mut defaults = Map::new();
            defaults.insert("registration".into(), Value::String(registration.clone()));
            defaults.insert("authflow".into(), Value::String(authflow.clone()));
            defaults.insert("email".into(), Value::String(email.clone()));
            let store = Store::single_file(
                file.to_path_buf(),
                paths.state_dir.join("compat"),
                RecordFormat::MuttOauth2 { defaults },
                sealer,
            );
            let mut account = session.account()?;
            account.flow = flow;
            session.renew(Refresher::new(store), &account)?
        }
    };
    print_line(&token)?;
    if args.test {
        return session.test(&token);
    }
    Ok(())
}

/// Asks on the terminal for a value not given on the command line nor in the file.
fn ask(what: &str, given: &Option<String>, known: Option<String>) -> Result<String, Failure> {
    if let Some(v) = given.clone().or(known) {
        return Ok(v);
    }
    eprint!("{what}: ");
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| Failure::new(ERROR, format!("cannot read {what}: {e}")))?;
    let line = line.trim().to_string();
    if line.is_empty() {
        return Err(Failure::new(USAGE, format!("no {what} given")));
    }
    Ok(line)
}

/// What one compatibility-mode run works with.
struct Session<'a> {
    cli: &'a Cli,
    file: &'a Path,
    paths: &'a Paths,
    config: &'a Config,
    email: &'a str,
    registration: &'a str,
}

impl Session<'_> {
    fn account(&self) -> Result<Account, Failure> {
        let args = &self.cli.compat;
        resolve_account(
            self.config,
            self.paths,
            self.email,
            self.registration,
            args.client_id.as_deref(),
            args.client_secret.as_deref(),
        )
    }

    /// Authorizes (with --authorize) or refreshes, writing the file through the store.
    fn renew(&self, refresher: Refresher, account: &Account) -> Result<SecretString, Failure> {
        let args = &self.cli.compat;
        let rt = runtime()?;
        if args.authorize {
            refresher
                .store()
                .check_ready()
                .map_err(|e| Failure::new(CONFIGURATION, e.to_string()))?;
            let prompter = TerminalPrompter {
                account: self.email.to_string(),
            };
            let fresh = rt
                .block_on(refresher.authorize(account, &prompter, &FlowOptions::default()))
                .map_err(|e| flow_failure(&e, "To try again, run with --authorize."))?;
            rt.block_on(refresher.store_authorization(account, fresh.clone()))
                .map_err(|e| Failure::new(ERROR, e.to_string()))?;
            if args.verbose {
                eprintln!(
                    "NOTICE: Obtained new access token, expires in {} s.",
                    fresh.expires_at - now_unix()
                );
            }
            return Ok(fresh.access_token);
        }
        if args.verbose {
            eprintln!(
                "NOTICE: Access token expires within 5 minutes or has expired; using the refresh token to obtain a new one."
            );
        }
        rt.block_on(refresher.access_token(account)).map_err(|e| {
            let f = Failure::from_refresh(self.cli, self.email, &e);
            if f.code == NEEDS_AUTHORIZATION {
                Failure::new(
                    f.code,
                    format!("{e}\nRun once with --authorize to get new tokens."),
                )
            } else {
                f
            }
        })
    }

    /// `--test`: logs in to the account's IMAP, POP and SMTP servers with the token.
    fn test(&self, token: &SecretString) -> Result<(), Failure> {
        let args = &self.cli.compat;
        let configured = self.config.accounts.get(self.email);
        let [imap, smtp, pop3] = match configured {
            Some(a) => [a.imap.clone(), a.smtp.clone(), a.pop3.clone()],
            None => match self.registration {
                "google" => provider_upstreams(ProviderKind::Google),
                "microsoft" => provider_upstreams(ProviderKind::Microsoft),
                _ => [None, None, None],
            },
        };
        let targets: Vec<_> = [
            (Protocol::Imap, imap),
            (Protocol::Pop3, pop3),
            (Protocol::Smtp, smtp),
        ]
        .into_iter()
        .filter_map(|(p, u)| u.map(|u| (p, u)))
        .collect();
        if targets.is_empty() {
            return Err(Failure::new(
                CONFIGURATION,
                format!(
                    "no mail servers are known for {}: set imap, pop3 and smtp in its account",
                    self.email
                ),
            ));
        }
        let ca = configured.and_then(|a| a.upstream_ca.as_deref());
        let tls = certs::client_config(certs::Roots::Webpki, ca)
            .map_err(|e| Failure::new(CONFIGURATION, e.to_string()))?;
        let user = configured
            .and_then(|a| a.user.as_deref())
            .unwrap_or(self.email);
        let checks = runtime()?.block_on(diagnose::check_all(&targets, user, token, tls));
        let mut failed = false;
        for check in checks {
            let name = check.protocol.name();
            match check.outcome {
                Ok(mech) if args.verbose => eprintln!(
                    "{name} authentication succeeded ({}, {}, {} ms)",
                    check.upstream,
                    mech.name(),
                    check.elapsed.as_millis()
                ),
                Ok(_) => {}
                Err(reason) => {
                    failed = true;
                    eprintln!(
                        "{name} authentication FAILED ({}): {reason}",
                        check.upstream
                    );
                }
            }
        }
        if failed {
            return Err(Failure::new(
                ERROR,
                format!(
                    "the login test failed for {} (see above)",
                    self.file.display()
                ),
            ));
        }
        Ok(())
    }
}

/// `mailoauth import FILE ACCOUNT`.
pub fn import(
    cli: &Cli,
    file: &Path,
    name: &str,
    decryption_pipe: Option<&str>,
) -> Result<(), Failure> {
    let (paths, config) = super::load_config(cli)?;
    let account_cfg = config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let account = token_account(name, account_cfg);
    let sealer = pipes(&config, Some("false"), decryption_pipe)?;
    let (fields, tokens) = read_token_file(file, sealer.as_ref())?;
    if fields.is_empty() {
        return Err(Failure::new(
            ERROR,
            format!("{} does not exist", file.display()),
        ));
    }
    let tokens = tokens
        .filter(|t| t.refresh_token.is_some())
        .ok_or_else(|| Failure::new(ERROR, format!("{} holds no refresh token, so there is nothing to import; authorize {name} instead", file.display())))?;
    let refresher = Refresher::new(open_store(&config, &paths));
    refresher
        .store()
        .check_ready()
        .map_err(|e| Failure::new(CONFIGURATION, e.to_string()))?;
    runtime()?
        .block_on(refresher.store_authorization(&account, tokens))
        .map_err(|e| Failure::from_refresh(cli, name, &e))?;
    eprintln!(
        "Imported the tokens of {} into account {name} ({} store). mutt can now use `mailoauth token {name}`; the old file is no longer needed.",
        file.display(),
        refresher.store().sealer_kind()
    );
    Ok(())
}

/// The configuration if there is one: compatibility mode also works without any (pipes and
/// client from the command line), unless --config names a file that is missing.
fn load_optional_config(cli: &Cli) -> Result<(Paths, Config), Failure> {
    let paths = Paths::resolve(cli.config.as_deref())
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    if cli.config.is_none() && !paths.config_file.exists() {
        let empty = Config::parse("").expect("the empty configuration is valid");
        return Ok((paths, empty));
    }
    let config = Config::load(&paths.config_file)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    Ok((paths, config))
}

/// The encrypt/decrypt pipes: from the command line, else the configuration's command store.
fn pipes(
    config: &Config,
    encrypt: Option<&str>,
    decrypt: Option<&str>,
) -> Result<Arc<dyn Sealer>, Failure> {
    let split = |what: &str, s: &str| -> Result<Vec<String>, Failure> {
        let words = shell_words::split(s).map_err(|e| {
            Failure::new(USAGE, format!("cannot parse the {what} command {s:?}: {e}"))
        })?;
        if words.is_empty() {
            return Err(Failure::new(USAGE, format!("the {what} command is empty")));
        }
        Ok(words)
    };
    let (config_enc, config_dec) = match &config.store.kind {
        StoreKind::Command { encrypt, decrypt } => (Some(encrypt.clone()), Some(decrypt.clone())),
        _ => (None, None),
    };
    let encrypt = match encrypt {
        Some(s) => Some(split("encryption", s)?),
        None => config_enc,
    };
    let decrypt = match decrypt {
        Some(s) => Some(split("decryption", s)?),
        None => config_dec,
    };
    match (encrypt, decrypt) {
        (Some(encrypt), Some(decrypt)) => Ok(Arc::new(CommandPipe { encrypt, decrypt })),
        _ => Err(Failure::new(
            CONFIGURATION,
            "tell mailoauth how to decrypt and encrypt the token file, as mutt_oauth2.py's DECRYPTION_PIPE and ENCRYPTION_PIPE did: pass --decryption-pipe \"gpg --decrypt\" --encryption-pipe \"gpg --encrypt --recipient YOU\", or set [store] kind = \"command\" with decrypt and encrypt in the configuration",
        )),
    }
}

/// Reads, unseals and parses a token file: its JSON fields (empty if the file does not exist)
/// and its tokens (none before the first authorization).
fn read_token_file(
    file: &Path,
    sealer: &dyn Sealer,
) -> Result<(Map<String, Value>, Option<TokenSet>), Failure> {
    let sealed = match read_private(file) {
        Ok(bytes) => bytes,
        Err(ReadPrivateError::Missing) => return Ok((Map::new(), None)),
        Err(ReadPrivateError::Exposed(mode)) => {
            return Err(Failure::new(
                ERROR,
                format!(
                    "{} has unsafe mode {mode:o} (others may read it): run `chmod 600 {}`, or delete it and start over",
                    file.display(),
                    file.display()
                ),
            ));
        }
        Err(ReadPrivateError::Io(e)) => {
            return Err(Failure::new(
                ERROR,
                format!("cannot read {}: {e}", file.display()),
            ));
        }
    };
    let plain = sealer
        .open("", &sealed)
        .map_err(|e| Failure::new(ERROR, format!("cannot decrypt {}: {e}", file.display())))?;
    let fields = match serde_json::from_slice::<Value>(&plain) {
        Ok(Value::Object(map)) => map,
        _ => {
            return Err(Failure::new(
                ERROR,
                format!("{} is not a mutt_oauth2.py token file", file.display()),
            ));
        }
    };
    let tokens = mutt::decode(&plain)
        .map_err(|e| Failure::new(ERROR, format!("{}: {e}", file.display())))?;
    Ok((fields, tokens))
}

/// The account for a token file: the configured account named by its address, else the
/// registration's preset with the client given on the command line.
fn resolve_account(
    config: &Config,
    paths: &Paths,
    email: &str,
    registration: &str,
    client_id: Option<&str>,
    client_secret: Option<&str>,
) -> Result<Account, Failure> {
    if let Some(cfg) = config.accounts.get(email) {
        return Ok(token_account(email, cfg));
    }
    let provider = match registration {
        "google" => ProviderKind::Google,
        "microsoft" => ProviderKind::Microsoft,
        other => {
            return Err(Failure::new(
                CONFIGURATION,
                format!(
                    "unknown registration {other:?}: use google or microsoft, or configure the account"
                ),
            ));
        }
    };
    let Some(client_id) = client_id else {
        return Err(Failure::new(
            CONFIGURATION,
            format!(
                "mailoauth does not know the OAuth client for {email}: add an [accounts.\"{email}\"] table to {} (see the README), or pass --client-id (and --client-secret)",
                paths.config_file.display()
            ),
        ));
    };
    let endpoints = match provider {
        ProviderKind::Google => google_endpoints(),
        _ => microsoft_endpoints("common"),
    };
    Ok(Account {
        name: email.to_string(),
        provider,
        endpoints: EndpointSource::Known(endpoints),
        client_id: client_id.to_string(),
        client_secret: client_secret
            .map(|s| SecretSource::Value(SecretString::from(s.to_string()))),
        client_auth_basic: false,
        scopes: provider::default_scopes(provider, Protocols::ALL, false),
        auth_params: provider::authorization_params(provider),
        flow: FlowKind::Paste,
        redirect_uri: None,
        login_hint: Some(email.to_string()),
    })
}

/// `-d`: the file's fields, with fingerprints in place of the tokens.
fn debug_dump(fields: &Map<String, Value>, tokens: Option<&TokenSet>) {
    for (k, v) in fields {
        let shown = match (k.as_str(), v.as_str()) {
            ("access_token" | "refresh_token", Some(s)) if !s.is_empty() => {
                format!("<secret, fingerprint {}>", fingerprint(s))
            }
            _ => v.to_string(),
        };
        eprintln!("token file: {k} = {shown}");
    }
    if let Some(t) = tokens {
        eprintln!(
            "token file: access token valid for {} more seconds",
            t.expires_at - now_unix()
        );
    }
}
