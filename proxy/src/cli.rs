//! The command line: the clap definitions and the dispatch of each subcommand to its module;
//! nothing else lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{commands, exit, terminal};

/// Lets plain-password mail clients reach OAuth2-only mail services, and prints fresh OAuth2
/// access tokens for clients that speak OAUTHBEARER/XOAUTH2 themselves (mutt, msmtp, mbsync).
///
/// Also a drop-in for mutt_oauth2.py: `mailoauth TOKENFILE [--authorize] [--authflow …]`.
#[derive(Debug, Parser)]
#[command(name = "mailoauth", version)]
pub struct Cli {
    /// Configuration file (default: $XDG_CONFIG_HOME/mailoauth/config.toml).
    #[arg(long, global = true, env = "MAILOAUTH_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Log at debug level, including each proxied session's pre-login protocol exchange with
    /// every secret replaced by a fingerprint (same as MAILOAUTH_LOG=debug). With a
    /// mutt_oauth2.py TOKENFILE: also show the file's fields (secrets as fingerprints).
    #[arg(short = 'd', long, global = true)]
    pub debug: bool,

    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub compat: CompatArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a fresh access token for ACCOUNT on one line (for imap_oauth_refresh_command,
    /// msmtp's passwordeval, mbsync's PassCmd). Diagnostics go to stderr only; it never opens a
    /// browser.
    Token {
        /// The account, as named in the configuration.
        account: String,
        /// What to print: the bare token, or the base64 SASL string some tools want.
        #[arg(long, value_enum, default_value_t = TokenFormat::Token)]
        format: TokenFormat,
    },
    /// Authorize ACCOUNT (again): run the OAuth flow and store the tokens.
    Authorize {
        account: String,
        /// Override the account's flow.
        #[arg(long, value_enum)]
        flow: Option<FlowArg>,
        /// Do not try to open a browser; just print the URL.
        #[arg(long)]
        no_browser: bool,
        /// How long to wait for the browser (loopback flow), in seconds.
        #[arg(long, default_value_t = 300, value_name = "SECONDS")]
        timeout: u64,
        /// Run the flow in this process even when `mailoauth serve` runs (by default the
        /// daemon runs it and uses the new tokens at once; this terminal shows the steps).
        #[arg(long)]
        local: bool,
    },
    /// Set the local password mail clients use to log in to the proxy as ACCOUNT (read from the
    /// terminal, or one line from stdin when it is not a terminal).
    Passwd { account: String },
    /// Run the proxy: the listeners of [proxy.*] in the configuration, until SIGINT/SIGTERM
    /// (SIGHUP re-reads the configuration).
    Serve,
    /// Show each account's state: authorized or not, token expiry and age, last refresh, last
    /// login per protocol (from a running daemon), last error. Exits 3 if one needs authorizing.
    Status {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Make the running daemon re-read its configuration (sessions in progress continue).
    Reload,
    /// Add an account step by step: questions, the configuration (comments kept), the local
    /// password, the authorization, and settings to paste into your mail program.
    Setup(commands::setup::SetupArgs),
    /// Move the refresh token of a mutt_oauth2.py token file into ACCOUNT's store, without
    /// authorizing again.
    Import {
        /// The mutt_oauth2.py token file.
        file: PathBuf,
        /// The configured account that takes over the tokens.
        account: String,
        /// Command that decrypts FILE (default: [store] decrypt from the configuration).
        #[arg(long, value_name = "COMMAND")]
        decryption_pipe: Option<String>,
    },
    /// Install `mailoauth serve` as a service for this user (a systemd user unit on Linux, a
    /// launchd agent on macOS) that runs this binary, with --config when given.
    InstallService {
        /// Print the file to stdout instead of writing it.
        #[arg(long)]
        print: bool,
        /// Replace an existing file that differs.
        #[arg(long)]
        force: bool,
    },
    /// Print the shell completion script for SHELL to stdout.
    Completions { shell: clap_complete::Shell },
    /// Print the man page (roff) to stdout.
    Man,
    /// Check that ACCOUNT works: get a token, then for each of its servers connect, show the
    /// capabilities, log in with each OAuth mechanism offered and run a harmless command, with
    /// timings. Exit codes: 0 all good, 1 other error, 2 usage, 3 authorize again, 4 temporary
    /// (provider or server down), 5 configuration or app registration, 6 the login was refused
    /// although the token is valid, 7 the server misbehaves (no STARTTLS, refuses the command
    /// after the login).
    Test {
        account: String,
        /// Log in through the running proxy (`mailoauth serve`) with the local password instead.
        #[arg(long)]
        via_proxy: bool,
        /// Print the results as one JSON object.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum TokenFormat {
    /// The access token itself.
    Token,
    /// base64 of `user=…^Aauth=Bearer …^A^A` (XOAUTH2 initial response).
    Xoauth2,
    /// base64 of `n,a=…,^Aauth=Bearer …^A^A` (OAUTHBEARER initial response, RFC 7628).
    Oauthbearer,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum FlowArg {
    Loopback,
    Paste,
    Device,
    #[value(name = "client-credentials", alias = "client_credentials")]
    ClientCredentials,
}

/// mutt_oauth2.py's interface: `mailoauth TOKENFILE [options]`.
#[derive(Debug, Args)]
pub struct CompatArgs {
    /// mutt_oauth2.py token file (compatibility mode).
    #[arg(value_name = "TOKENFILE")]
    pub tokenfile: Option<PathBuf>,
    /// Authorize new tokens (interactive).
    #[arg(short = 'a', long, requires = "tokenfile")]
    pub authorize: bool,
    /// authcode | localhostauthcode | devicecode.
    #[arg(long, requires = "tokenfile", value_name = "FLOW")]
    pub authflow: Option<String>,
    /// Test IMAP/POP/SMTP login with the token.
    #[arg(short = 't', long, requires = "tokenfile")]
    pub test: bool,
    /// Explain what happens (on stderr).
    #[arg(short = 'v', long, requires = "tokenfile")]
    pub verbose: bool,
    /// Command that encrypts the token file (stdin to stdout), e.g. "gpg --encrypt -r me".
    #[arg(long, requires = "tokenfile", value_name = "COMMAND")]
    pub encryption_pipe: Option<String>,
    /// Command that decrypts the token file, e.g. "gpg --decrypt".
    #[arg(long, requires = "tokenfile", value_name = "COMMAND")]
    pub decryption_pipe: Option<String>,
    /// google | microsoft, for a new token file (otherwise asked).
    #[arg(long, requires = "tokenfile")]
    pub provider: Option<String>,
    /// The account's address, for a new token file (otherwise asked).
    #[arg(long, requires = "tokenfile")]
    pub email: Option<String>,
    /// OAuth client id, when the address is not a configured account.
    #[arg(long, requires = "tokenfile")]
    pub client_id: Option<String>,
    /// OAuth client secret, when the address is not a configured account (visible to other
    /// local users in the process list: prefer client_secret_command in the configuration).
    #[arg(long, requires = "tokenfile")]
    pub client_secret: Option<String>,
}

/// Runs the command line and returns the process's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let serving = matches!(cli.command, Some(Command::Serve));
    terminal::init_logging(match (cli.debug, serving) {
        (true, _) => "debug",
        (false, true) => "info",
        (false, false) => "warn",
    });
    let result = match (&cli.command, &cli.compat.tokenfile) {
        (Some(_), Some(file)) => Err(exit::Failure::new(
            exit::USAGE,
            format!(
                "{} looks like a mutt_oauth2.py token file, but a subcommand follows it; use one or the other",
                file.display()
            ),
        )),
        (Some(Command::Token { account, format }), _) => {
            commands::token::run(&cli, account, *format)
        }
        (
            Some(Command::Authorize {
                account,
                flow,
                no_browser,
                timeout,
                local,
            }),
            _,
        ) => commands::authorize::run(&cli, account, *flow, *no_browser, *timeout, *local),
        (
            Some(Command::Import {
                file,
                account,
                decryption_pipe,
            }),
            _,
        ) => commands::compat::import(&cli, file, account, decryption_pipe.as_deref()),
        (Some(Command::Passwd { account }), _) => commands::passwd::run(&cli, account),
        (Some(Command::Serve), _) => commands::serve::run(&cli),
        (Some(Command::Status { json }), _) => commands::status::run(&cli, *json),
        (Some(Command::Reload), _) => commands::reload::run(&cli),
        (Some(Command::InstallService { print, force }), _) => {
            commands::service::run(&cli, *print, *force)
        }
        (Some(Command::Completions { shell }), _) => commands::generate::completions(*shell),
        (Some(Command::Man), _) => commands::generate::man(),
        (
            Some(Command::Test {
                account,
                via_proxy,
                json,
            }),
            _,
        ) => commands::test::run(&cli, account, *via_proxy, *json),
        (Some(Command::Setup(args)), _) => commands::setup::run(&cli, args),
        (None, Some(file)) => commands::compat::run(&cli, file),
        (None, None) => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            return ExitCode::from(exit::USAGE);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}
