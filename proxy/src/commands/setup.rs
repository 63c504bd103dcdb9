//! `mailoauth setup`: guided account creation, from nothing to a mail program reading mail.
//! It asks the questions ([`interview`]), adds the account to the configuration keeping the
//! user's comments ([`edit`]), checks the result with the same loader every command uses, writes
//! it atomically (mode 0600: it may hold a client secret), sets the local password when the
//! proxy was chosen, authorizes the account at once, and prints client snippets ([`snippets`]).
//! Flags answer questions ahead, so scripts and tests can skip them.

mod answers;
mod ask;
mod edit;
mod interview;
mod snippets;

use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use tokenlib::FlowKind;
use tokenlib::flow::FlowOptions;
use tokenlib::provider::ProviderKind;
use tokenlib::store::keyring::KeyringSealer;

use crate::config::{Config, ListenerConfig, ListenerTls, Paths, StoreKind};
use crate::credentials::Credentials;
use crate::exit::{CONFIGURATION, ERROR, Failure, USAGE, shell_quote};
use crate::{Cli, FlowArg};

use answers::{Answers, Facts, Given, Proto, Stop, StoreArg};
use snippets::{Server, Target, Tls};

/// `mailoauth setup [--provider P] [--account NAME] …`: every flag answers one question.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// The provider (otherwise asked).
    #[arg(long, value_enum)]
    provider: Option<ProviderArg>,
    /// The account: the mail address mail programs log in with (otherwise asked).
    #[arg(long, value_name = "NAME")]
    account: Option<String>,
    /// The OAuth client id of your app registration (otherwise asked; the secret is always
    /// asked, never taken from the command line).
    #[arg(long)]
    client_id: Option<String>,
    /// Microsoft: common, consumers, organizations, a tenant id or domain.
    #[arg(long)]
    tenant: Option<String>,
    /// Generic providers: the issuer for OpenID Connect discovery.
    #[arg(long, value_name = "URL")]
    issuer: Option<String>,
    /// How to authorize.
    #[arg(long, value_enum)]
    flow: Option<FlowArg>,
    /// Where tokens are kept, when the configuration has no [store] yet.
    #[arg(long, value_enum)]
    store: Option<StoreArg>,
    /// Use the local proxy (a local password is asked).
    #[arg(long, conflicts_with = "no_proxy")]
    proxy: bool,
    /// Do not use the local proxy.
    #[arg(long)]
    no_proxy: bool,
    /// Replace an account of the same name without asking.
    #[arg(long)]
    replace: bool,
    /// Write the configuration but do not authorize now.
    #[arg(long)]
    no_authorize: bool,
    /// Do not run `mailoauth test` after authorizing.
    #[arg(long)]
    no_test: bool,
    /// PEM file of the CA that signed the mail servers' certificates (a self-hosted server
    /// with its own CA); written as the account's upstream_ca.
    #[arg(long, value_name = "PATH")]
    upstream_ca: Option<std::path::PathBuf>,
    /// Do not try to open a browser; just print the URL.
    #[arg(long)]
    no_browser: bool,
    /// How long to wait for the browser (loopback flow), in seconds.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    timeout: u64,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProviderArg {
    Google,
    Microsoft,
    Generic,
}

pub fn run(cli: &Cli, args: &SetupArgs) -> Result<(), Failure> {
    let paths = Paths::resolve(cli.config.as_deref())
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    // Write through a symlink (dotfile managers) rather than replacing it.
    let file = std::fs::canonicalize(&paths.config_file).unwrap_or(paths.config_file.clone());
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            return Err(Failure::new(
                ERROR,
                format!("cannot read {}: {e}", file.display()),
            ));
        }
    };
    let current = Config::parse(&text).map_err(|e| {
        Failure::new(
            CONFIGURATION,
            format!(
                "{}: {e}\nsetup adds to a configuration that loads; fix this first",
                file.display()
            ),
        )
    })?;
    let given = given(args);
    let facts = facts(&text, &current, &given);

    eprintln!(
        "mailoauth setup: a few questions, then the account is written to {}, authorized, and you get settings for your mail program. Press Ctrl-C to stop; nothing is written before the end.",
        file.display()
    );
    let answers =
        interview::interview(&mut ask::Terminal, &given, &facts).map_err(|e| match e {
            Stop::Io(e) => Failure::new(ERROR, format!("setup stopped ({e}); nothing was written")),
            Stop::Declined(why) => Failure::new(USAGE, why),
        })?;
    let name = answers.account.clone();

    let edited = edit::add_account(&text, &answers)
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e}; nothing was written")))?;
    // The same loader every command uses: what is written is what will be read.
    let config = Config::parse(&edited).map_err(|e| {
        Failure::new(
            ERROR,
            format!("the new configuration would not load ({e}); nothing was written. This is a bug in setup; please report it"),
        )
    })?;
    write_config(&file, edited.as_bytes())?;
    eprintln!("Wrote {} ({name} added).", file.display());
    reload_running_daemon(&paths);

    if let Some(password) = &answers.local_password {
        let credentials = Credentials::new(paths.state_dir.join("passwords"));
        let path = credentials
            .set_password(&name, password)
            .map_err(|e| Failure::new(ERROR, e))?;
        eprintln!(
            "The local password of {name} is set (an Argon2id verifier in {}).",
            path.display()
        );
    }

    if args.no_authorize {
        eprintln!(
            "Not authorized yet: run {}",
            crate::exit::authorize_command(cli, &name)
        );
    } else {
        let request = super::authorize::Request {
            flow: None,
            options: FlowOptions {
                open_browser: !args.no_browser,
                timeout: Duration::from_secs(args.timeout),
            },
            local_password: answers.local_password.as_ref(),
        };
        super::authorize::authorize(cli, &paths, &config, &name, &request).map_err(|f| {
            Failure::new(
                f.code,
                format!(
                    "{}\nThe account is saved in {}; to authorize it later, run:\n    {}",
                    f.message.trim_end(),
                    file.display(),
                    crate::exit::authorize_command(cli, &name)
                ),
            )
        })?;
        if args.no_test {
            eprintln!("next: run {}", command(cli, "test", &name));
        } else {
            // Prove the account works end to end now, while the user is here to fix it.
            eprintln!("Checking that the account works (mailoauth test {name}):");
            if let Err(f) = super::test::run(cli, &name, false, false) {
                eprintln!(
                    "The check found a problem (exit {}): {}\nThe account is saved; after fixing it, run: {}",
                    f.code,
                    f.message.trim_end(),
                    command(cli, "test", &name)
                );
            }
        }
    }
    if answers.local_password.is_some() {
        eprintln!(
            "Start the proxy with: {} (in a terminal, or as a service)",
            command(cli, "serve", "")
        );
    }
    print_snippets(cli, &config, &answers);
    Ok(())
}

fn given(args: &SetupArgs) -> Given {
    Given {
        provider: args.provider.map(|p| match p {
            ProviderArg::Google => ProviderKind::Google,
            ProviderArg::Microsoft => ProviderKind::Microsoft,
            ProviderArg::Generic => ProviderKind::Generic,
        }),
        account: args.account.clone(),
        client_id: args.client_id.clone(),
        tenant: args.tenant.clone(),
        issuer: args.issuer.clone(),
        flow: args.flow.map(|f| match f {
            FlowArg::Loopback => FlowKind::Loopback,
            FlowArg::Paste => FlowKind::Paste,
            FlowArg::Device => FlowKind::Device,
            FlowArg::ClientCredentials => FlowKind::ClientCredentials,
        }),
        store: args.store,
        proxy: match (args.proxy, args.no_proxy) {
            (true, _) => Some(true),
            (_, true) => Some(false),
            _ => None,
        },
        replace: args.replace,
        // Absolute, so the daemon finds it whatever its working directory.
        upstream_ca: args
            .upstream_ca
            .as_ref()
            .map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone())),
    }
}

/// What the machine offers; the keyring is asked only when its answer matters.
fn facts(text: &str, current: &Config, given: &Given) -> Facts {
    let has_store = text
        .parse::<toml_edit::DocumentMut>()
        .is_ok_and(|doc| doc.contains_key("store"));
    let store = has_store.then_some(match current.store.kind {
        StoreKind::Command { .. } => "command",
        StoreKind::Keyring => "keyring",
        StoreKind::Plaintext => "plaintext",
        StoreKind::Password => "password",
    });
    let keyring = store.is_none() && given.store.is_none() && KeyringSealer::default().reachable();
    Facts {
        accounts: current.accounts.keys().cloned().collect(),
        store,
        keyring,
        gpg: on_path("gpg"),
        graphical: cfg!(target_os = "macos")
            || std::env::var_os("DISPLAY").is_some_and(|v| !v.is_empty())
            || std::env::var_os("WAYLAND_DISPLAY").is_some_and(|v| !v.is_empty()),
    }
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// Replaces the file atomically (temp file, fsync, rename), mode 0600, creating its directory.
fn write_config(file: &Path, bytes: &[u8]) -> Result<(), Failure> {
    if let Some(dir) = file.parent()
        && !dir.exists()
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Failure::new(ERROR, format!("cannot create {}: {e}", dir.display())))?;
    }
    tokenlib::store::write_atomic(file, bytes)
        .map_err(|e| Failure::new(ERROR, format!("cannot write {}: {e}", file.display())))
}

/// `mailoauth [--config PATH] SUBCOMMAND [ACCOUNT]`, quoted for a shell.
fn command(cli: &Cli, subcommand: &str, account: &str) -> String {
    let mut cmd = String::from("mailoauth");
    if let Some(path) = &cli.config {
        cmd.push_str(" --config ");
        cmd.push_str(&shell_quote(&path.display().to_string()));
    }
    cmd.push(' ');
    cmd.push_str(subcommand);
    if !account.is_empty() {
        cmd.push(' ');
        cmd.push_str(&shell_quote(account));
    }
    cmd
}

/// The first loopback address of a listener (else its first), as the client should see it.
fn local_server(listener: &ListenerConfig) -> Server {
    let addr = listener
        .listen
        .iter()
        .find(|a| a.ip().is_loopback())
        .unwrap_or(&listener.listen[0]);
    Server {
        host: addr.ip().to_string(),
        port: addr.port(),
        tls: match listener.tls {
            ListenerTls::None => Tls::Plain,
            ListenerTls::Starttls => Tls::Starttls,
            ListenerTls::Implicit => Tls::Implicit,
        },
    }
}

fn print_snippets(cli: &Cli, config: &Config, answers: &Answers) {
    let name = &answers.account;
    let Ok(account) = config.account(name) else {
        return;
    };
    let chosen = |p: Proto| answers.servers.iter().any(|(q, _)| *q == p);
    let proxy = answers.local_password.is_some();
    let server = |p: Proto| -> Option<Server> {
        if !chosen(p) {
            return None;
        }
        if proxy {
            let listener = match p {
                Proto::Imap => config.proxy.imap.as_ref(),
                Proto::Smtp => config.proxy.smtp.as_ref(),
                Proto::Pop3 => config.proxy.pop3.as_ref(),
            };
            return listener.map(local_server);
        }
        let upstream = match p {
            Proto::Imap => account.imap.as_ref(),
            Proto::Smtp => account.smtp.as_ref(),
            Proto::Pop3 => account.pop3.as_ref(),
        }?;
        Some(Server {
            host: upstream.host.clone(),
            port: upstream.port,
            tls: if upstream.implicit_tls {
                Tls::Implicit
            } else {
                Tls::Starttls
            },
        })
    };
    let target = Target {
        account: name.clone(),
        provider: account.provider,
        token_command: command(cli, "token", name),
        imap: server(Proto::Imap),
        smtp: server(Proto::Smtp),
        proxy,
    };
    let list = snippets::snippets(&target);
    if list.is_empty() {
        return;
    }
    eprintln!("Settings for your mail program (on standard output):");
    for s in list {
        println!("# ---- {}: {} ----", s.client, s.file);
        println!("{}", s.text);
    }
    if proxy
        && chosen(Proto::Pop3)
        && let Some(pop3) = config.proxy.pop3.as_ref().map(local_server)
    {
        let tls = match pop3.tls {
            Tls::Plain => "no encryption",
            Tls::Starttls => "STARTTLS",
            Tls::Implicit => "SSL/TLS",
        };
        println!(
            "# ---- POP3 clients: server {} port {}, user {name}, the local password, {tls} ----",
            pop3.host, pop3.port
        );
    }
}

/// A running daemon with this configuration starts using the new account now.
fn reload_running_daemon(paths: &Paths) {
    use crate::control::{Reply, Request};
    let Ok(Some(mut client)) = super::daemon_link::connect(paths) else {
        return;
    };
    match super::daemon_link::ask(&mut client, &Request::Reload) {
        Ok(Reply::Done { message }) => eprintln!("The running mailoauth serve reloaded: {message}"),
        Ok(Reply::Error { message, .. }) => {
            eprintln!("The running mailoauth serve could not reload: {message}")
        }
        _ => {}
    }
}
