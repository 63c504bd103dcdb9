//! `mailoauth serve`: the listeners of the configuration, each with its accept loop, the
//! background token refresher, and graceful shutdown on SIGINT/SIGTERM (stop accepting, let
//! sessions finish for a bounded time).

mod extensions;
mod listener;
mod refresh;
mod shutdown;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokenlib::{Account, Refresher};

pub use extensions::ExtensionCache;
pub use listener::{ListenerContext, Protocol};
pub use shutdown::Shutdown;

use crate::accounts::{open_store, token_account};
use crate::config::{AccountConfig, Config, ListenerTls, Paths};
use crate::credentials::Credentials;

/// How long sessions may go on after a shutdown signal before the process exits anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// One account as a session needs it.
pub struct AccountEntry {
    pub config: AccountConfig,
    pub account: Account,
    /// TLS client configuration for this account's upstream servers (roots + its upstream_ca).
    pub upstream_tls: Arc<rustls::ClientConfig>,
}

/// What every session shares.
pub struct Shared {
    pub accounts: HashMap<String, AccountEntry>,
    pub refresher: Arc<Refresher>,
    pub credentials: Credentials,
    /// Printed in re-authorization answers: the command that fixes the account.
    pub config_arg: Option<String>,
    /// What the upstream servers advertise (SMTP, POP3), for what clients are told before login.
    pub extensions: ExtensionCache,
}

impl Shared {
    /// The distinct servers the accounts use for protocol `P`, each with a user that uses it and
    /// the TLS configuration to reach it.
    pub fn upstreams<P: crate::session::Protocol>(
        &self,
    ) -> Vec<(crate::config::Upstream, String, Arc<rustls::ClientConfig>)> {
        let mut seen: Vec<(crate::config::Upstream, String, Arc<rustls::ClientConfig>)> =
            Vec::new();
        let mut names: Vec<&String> = self.accounts.keys().collect();
        names.sort();
        for name in names {
            let entry = &self.accounts[name];
            if let Some(up) = P::upstream_of(&entry.config)
                && !seen
                    .iter()
                    .any(|(u, _, _)| u.host == up.host && u.port == up.port)
            {
                seen.push((up, name.clone(), entry.upstream_tls.clone()));
            }
        }
        seen
    }

    /// What all of protocol `P`'s servers advertise in common, as their lists; empty when any
    /// is not known yet.
    pub fn extension_lists<P: crate::session::Protocol>(&self) -> Vec<Vec<String>> {
        let upstreams: Vec<_> = self
            .upstreams::<P>()
            .into_iter()
            .map(|(u, _, _)| u)
            .collect();
        self.extensions.all(P::NAME, &upstreams).unwrap_or_default()
    }

    /// The command that (re)authorizes `account`.
    pub fn authorize_command(&self, account: &str) -> String {
        let config = self
            .config_arg
            .as_deref()
            .map(|p| format!(" --config {p}"))
            .unwrap_or_default();
        format!(
            "mailoauth{config} authorize {}",
            crate::exit::shell_quote(account)
        )
    }
}

/// Builds everything sessions share from the configuration.
pub fn shared(
    config: &Config,
    paths: &Paths,
    config_arg: Option<String>,
) -> anyhow::Result<Shared> {
    let mut accounts = HashMap::new();
    for (name, cfg) in &config.accounts {
        let upstream_tls = certs::client_config(certs::Roots::Webpki, cfg.upstream_ca.as_deref())
            .with_context(|| format!("account {name}: upstream TLS"))?;
        accounts.insert(
            name.clone(),
            AccountEntry {
                config: cfg.clone(),
                account: token_account(name, cfg),
                upstream_tls,
            },
        );
    }
    Ok(Shared {
        accounts,
        refresher: Arc::new(Refresher::new(open_store(config, paths))),
        credentials: Credentials::new(paths.state_dir.join("passwords")),
        config_arg,
        extensions: ExtensionCache::default(),
    })
}

/// Runs the proxy until SIGINT or SIGTERM.
pub async fn run(config: Config, paths: Paths, config_arg: Option<String>) -> anyhow::Result<()> {
    let shared = Arc::new(shared(&config, &paths, config_arg)?);
    let listeners = [
        (Protocol::Imap, config.proxy.imap.clone()),
        (Protocol::Smtp, config.proxy.smtp.clone()),
        (Protocol::Pop3, config.proxy.pop3.clone()),
    ];
    if config.proxy.smtp.is_some() {
        probe_all::<crate::smtp::Smtp>(&shared);
    }
    if config.proxy.pop3.is_some() {
        probe_all::<crate::pop3::Pop3>(&shared);
    }
    let shutdown = Shutdown::new();
    let mut running = Vec::new();
    for (protocol, listener) in listeners {
        let Some(listener) = listener else { continue };
        let identity = match listener.tls {
            ListenerTls::None => None,
            _ => {
                let identity = match &listener.cert {
                    Some((cert, key)) => certs::Identity::from_pem_files(cert, key)?,
                    None => certs::Identity::self_signed_cached(&paths.state_dir.join("tls"))?,
                };
                // Shown at every start, so a client can pin the certificate.
                tracing::info!(
                    protocol = protocol.name(),
                    names = ?identity.subject_names(),
                    "local TLS certificate SHA-256 fingerprint {}",
                    identity.sha256_fingerprint()
                );
                Some(identity)
            }
        };
        let acceptor = match &identity {
            Some(id) => Some(tokio_rustls::TlsAcceptor::from(id.server_config()?)),
            None => None,
        };
        for addr in &listener.listen {
            let socket = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} for {}", protocol.name()))?;
            tracing::info!(%addr, protocol = protocol.name(), tls = ?listener.tls, "listening");
            let ctx = Arc::new(ListenerContext {
                protocol,
                tls: listener.tls,
                require_tls: listener.require_tls,
                acceptor: acceptor.clone(),
            });
            running.push(tokio::spawn(listener::accept_loop(
                socket,
                ctx,
                shared.clone(),
                shutdown.clone(),
                config.proxy.max_connections,
            )));
        }
    }
    if running.is_empty() {
        anyhow::bail!(
            "no listener is configured: add a [proxy.imap] (or [proxy.smtp], [proxy.pop3]) table with listen = \"127.0.0.1:1143\" to the configuration"
        );
    }
    let refresh = tokio::spawn(refresh::keep_fresh(shared.clone(), shutdown.clone()));
    wait_for_signal().await?;
    tracing::info!(
        "shutting down: no new connections; sessions get {} s to finish",
        SHUTDOWN_GRACE.as_secs()
    );
    shutdown.trigger();
    for task in running {
        let _ = task.await;
    }
    refresh.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, shutdown.sessions_done())
        .await
        .is_err()
    {
        tracing::warn!("sessions still open after the grace period; closing them");
    }
    Ok(())
}

/// Learns what each of protocol `P`'s servers advertises, in the background; until a server is
/// known, clients are told only what the proxy itself supports.
fn probe_all<P: crate::session::Protocol>(shared: &Arc<Shared>) {
    for (upstream, user, tls) in shared.upstreams::<P>() {
        let Some(core) = P::probe_core(&upstream, &user) else {
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            match crate::session::probe::<P>(&upstream, &tls, core).await {
                Ok(list) => {
                    tracing::info!(protocol = P::NAME, %upstream, "learned the server's extensions: {}", list.join(", "));
                    shared.extensions.learn(P::NAME, &upstream, list);
                }
                Err(e) => tracing::warn!(
                    protocol = P::NAME,
                    %upstream,
                    "cannot learn the server's extensions ({e}); clients are told only the basics until a login there succeeds"
                ),
            }
        });
    }
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
