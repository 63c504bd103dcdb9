//! `mailoauth authorize ACCOUNT`: runs the account's flow (or `--flow`) and stores the tokens.
//!
//! When `mailoauth serve` runs with this configuration, the flow runs inside it (unless
//! `--local`): this terminal shows the URL or device code and passes a pasted answer back, and
//! the daemon uses the new tokens at once. That is how a headless daemon is re-authorized over
//! ssh without a restart or port forwarding (paste or device flow). [`authorize`] runs the flow
//! here, on a loaded configuration, so `setup` can call it too.

use std::time::Duration;

use secrecy::SecretString;
use tokenlib::explain::NextStep;
use tokenlib::flow::{FlowError, FlowOptions};
use tokenlib::provider::{ProviderKind, known};
use tokenlib::token::now_unix;
use tokenlib::{Account, FlowKind, Refresher};

use super::{load_config, runtime};
use crate::accounts::{open_store, token_account};
use crate::config::{Config, Paths, StoreKind};
use crate::exit::{
    CONFIGURATION, ERROR, Failure, NEEDS_AUTHORIZATION, TEMPORARY, authorize_command,
};
use crate::terminal::TerminalPrompter;
use crate::{Cli, FlowArg};
use tokenlib::flow::Prompter;

pub fn run(
    cli: &Cli,
    name: &str,
    flow: Option<FlowArg>,
    no_browser: bool,
    timeout: u64,
    local: bool,
) -> Result<(), Failure> {
    let (paths, config) = load_config(cli)?;
    config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    if !local && in_daemon(&paths, name, flow, no_browser)? {
        return Ok(());
    }
    let request = Request {
        flow: flow.map(|flow| match flow {
            FlowArg::Loopback => FlowKind::Loopback,
            FlowArg::Paste => FlowKind::Paste,
            FlowArg::Device => FlowKind::Device,
            FlowArg::ClientCredentials => FlowKind::ClientCredentials,
        }),
        options: FlowOptions {
            open_browser: !no_browser,
            timeout: Duration::from_secs(timeout),
        },
        local_password: None,
    };
    authorize(cli, &paths, &config, name, &request)
}

/// How to authorize, beyond what the account's configuration says.
pub struct Request<'a> {
    /// Overrides the account's flow.
    pub flow: Option<FlowKind>,
    pub options: FlowOptions,
    /// The account's local password when the caller already has it (`setup` asked for it): the
    /// password store seals the new tokens with it instead of asking again.
    pub local_password: Option<&'a SecretString>,
}

/// Runs the flow in this process for the account `name` of an already loaded configuration and
/// stores the tokens.
pub fn authorize(
    cli: &Cli,
    paths: &Paths,
    config: &Config,
    name: &str,
    request: &Request<'_>,
) -> Result<(), Failure> {
    let account_cfg = config
        .account(name)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let mut account = token_account(name, account_cfg);
    if let Some(flow) = request.flow {
        account.flow = flow;
    }
    refuse_known_dead_ends(&account)?;
    let store = open_store(config, paths);
    if config.store.kind == StoreKind::Plaintext {
        eprintln!(
            "warning: [store] kind = \"plaintext\": the tokens will be stored unencrypted (mode 0600) in {}",
            store.record_path(name).display()
        );
    }
    store
        .check_ready()
        .map_err(|e| Failure::new(CONFIGURATION, e.to_string()))?;
    if store.needs_password() {
        unlock_with_local_password(paths, &store, name, request.local_password)?;
    }
    let refresher = Refresher::new(store);
    let prompter = TerminalPrompter {
        account: name.to_string(),
    };
    let rt = runtime()?;
    let retry = format!("To try again, run:\n    {}", authorize_command(cli, name));
    let tokens = rt
        .block_on(refresher.authorize(&account, &prompter, &request.options))
        .map_err(|e| flow_failure(&e, &retry))?;
    if tokens.refresh_token.is_none() && account.flow != FlowKind::ClientCredentials {
        eprintln!("warning: the provider issued no refresh token, so {name} will need authorizing again when this access token expires.{}",
            match account.provider {
                ProviderKind::Microsoft => format!(" Include {:?} in scopes.", known::MS_OFFLINE_SCOPE),
                ProviderKind::Google => " Google issues one only with access_type=offline and prompt=consent (the defaults).".to_string(),
                ProviderKind::Generic => " The provider may need a scope such as \"offline_access\".".to_string(),
            });
    }
    let minutes = (tokens.expires_at - now_unix()).max(0) / 60;
    rt.block_on(refresher.store_authorization(&account, tokens))
        .map_err(|e| Failure::from_refresh(cli, name, &e))?;
    eprintln!(
        "{name} is authorized: the access token is valid for {minutes} more minutes and is renewed automatically; tokens are in the {} store.",
        refresher.store().sealer_kind()
    );
    Ok(())
}

/// Flows a provider is known to refuse: fail before sending the user anywhere.
pub fn refuse_known_dead_ends(account: &Account) -> Result<(), Failure> {
    if account.provider == ProviderKind::Google
        && account.flow == FlowKind::Device
        && account.scopes.iter().any(|s| s == known::GOOGLE_MAIL_SCOPE)
    {
        return Err(Failure::new(
            CONFIGURATION,
            "Google does not issue the mail scope (https://mail.google.com/) through the device flow. Use --flow loopback (a browser on this machine) or --flow paste (a browser anywhere).",
        ));
    }
    Ok(())
}

/// A failed flow: its message, the next step, and an exit code that says which.
pub fn flow_failure(e: &FlowError, retry: &str) -> Failure {
    match e {
        FlowError::Endpoint {
            explanation,
            source,
        } => {
            let code = match explanation.next {
                NextStep::RetryLater => TEMPORARY,
                NextStep::Reauthorize => NEEDS_AUTHORIZATION,
                NextStep::FixConfiguration => CONFIGURATION,
            };
            Failure::new(
                code,
                format!("{}\n(provider said: {source})", explanation.text),
            )
        }
        FlowError::Denied { .. } | FlowError::TimedOut(_) | FlowError::BadAnswer(_) => {
            Failure::new(NEEDS_AUTHORIZATION, format!("{e}\n{retry}"))
        }
        FlowError::Config(_) => Failure::new(CONFIGURATION, e.to_string()),
        FlowError::Io { .. } => Failure::new(ERROR, e.to_string()),
    }
}

/// The password store seals the new tokens with the account's local password: ask for it,
/// verify it, and derive the key.
fn unlock_with_local_password(
    paths: &Paths,
    store: &tokenlib::Store,
    name: &str,
    known: Option<&SecretString>,
) -> Result<(), Failure> {
    let credentials = crate::credentials::Credentials::new(paths.state_dir.join("passwords"));
    if !credentials.is_set(name) {
        return Err(Failure::new(
            CONFIGURATION,
            format!(
                "[store] kind = \"password\" seals the tokens with the local password, and {name} has none yet: run mailoauth passwd {name} first"
            ),
        ));
    }
    let password = match known {
        Some(password) => password.clone(),
        None => crate::terminal::read_password(&format!(
            "Local password of {name} (it seals the tokens): "
        ))
        .map_err(|e| Failure::new(ERROR, format!("cannot read the password: {e}")))?,
    };
    if runtime()?.block_on(credentials.verify(name, &password))
        != crate::credentials::Verdict::Correct
    {
        return Err(Failure::new(
            crate::exit::USAGE,
            "that is not the local password of this account",
        ));
    }
    store
        .unlock_for_new_record(name, &password)
        .map_err(|e| Failure::new(ERROR, e.to_string()))
}

/// Runs the flow inside the running daemon; `false` when no daemon runs this configuration.
fn in_daemon(
    paths: &Paths,
    name: &str,
    flow: Option<FlowArg>,
    no_browser: bool,
) -> Result<bool, Failure> {
    use super::daemon_link;
    use crate::control::{Reply, Request, Secret};
    let Some(mut client) = daemon_link::connect(paths)? else {
        return Ok(false);
    };
    let flow = flow.map(|f| {
        match f {
            FlowArg::Loopback => "loopback",
            FlowArg::Paste => "paste",
            FlowArg::Device => "device",
            FlowArg::ClientCredentials => "client-credentials",
        }
        .to_string()
    });
    let request = Request::Authorize {
        account: name.to_string(),
        config: daemon_link::config_path(paths),
        flow,
    };
    let prompter = TerminalPrompter {
        account: name.to_string(),
    };
    let mut announced = false;
    let reply = client
        .call(&request, |client, reply| {
            if !announced {
                eprintln!("(the running mailoauth serve runs this authorization and uses the new tokens at once)");
                announced = true;
            }
            match reply {
                Reply::Url { url } => match url::Url::parse(&url) {
                    Ok(url) => prompter.show_authorization_url(&url, !no_browser),
                    Err(_) => eprintln!("{url}"),
                },
                Reply::Device {
                    verification_uri,
                    user_code,
                    verification_uri_complete,
                    message,
                    expires_in,
                } => prompter.show_device_code(&tokenlib::flow::DeviceInstructions {
                    verification_uri,
                    user_code,
                    verification_uri_complete,
                    message,
                    expires_in: Duration::from_secs(expires_in),
                }),
                Reply::Ask { prompt } => {
                    let answer = secrecy::SecretString::from(
                        crate::terminal::read_answer(&prompt)?.trim().to_string(),
                    );
                    client.send(&Request::Paste {
                        answer: Secret(answer),
                    })?;
                }
                Reply::Note { message } => eprintln!("{message}"),
                _ => {}
            }
            Ok(())
        })
        .map_err(daemon_link::io_failure)?;
    match reply {
        Reply::Done { message } => {
            eprintln!("{message}");
            Ok(true)
        }
        Reply::Error { exit, message } => Err(Failure::new(exit, message)),
        Reply::OtherConfig { .. } => Ok(false),
        other => Err(Failure::new(
            ERROR,
            format!("the mailoauth daemon answered {other:?} to authorize"),
        )),
    }
}
