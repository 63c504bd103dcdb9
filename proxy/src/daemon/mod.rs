//! `mailoauth serve`: the listeners of the configuration, each with its accept loop, the
//! background token refresher, the control socket, reload on SIGHUP (or `mailoauth reload`), and
//! graceful shutdown on SIGINT/SIGTERM (stop accepting, let sessions finish for a bounded time).
//!
//! Reload: the new configuration is read and checked completely before anything changes; a bad
//! one is refused with its reason and the old one stays in force. Then new sessions see the new
//! accounts (sessions in progress keep the [`Shared`] they started with, so a spliced session is
//! never touched), listeners whose settings changed are closed and bound again, and the
//! token engine is kept when the store did not change (unlocked keys and cached tokens stay).

mod activity;
mod extensions;
mod listener;
mod notify;
mod refresh;
mod shutdown;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokenlib::{Account, Refresher};

pub use activity::Activity;
pub use extensions::ExtensionCache;
pub use listener::{ListenerContext, Protocol};
pub use notify::Notifier;
pub use refresh::{expiry_warning, report as report_refresh_failure};
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
    pub extensions: Arc<ExtensionCache>,
    /// Last logins, for `status` (kept across reloads).
    pub activity: Arc<Activity>,
    /// Tells the user when an account needs attention (kept across reloads).
    pub notifier: Arc<Notifier>,
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
        extensions: Arc::default(),
        activity: Arc::default(),
        notifier: Arc::new(Notifier::new(config.notify_command.as_deref())),
    })
}

/// The running daemon: what sessions share now, and what a reload changes.
pub struct Daemon {
    current: RwLock<Arc<Shared>>,
    pub paths: Paths,
    config_arg: Option<String>,
    pub shutdown: Shutdown,
    /// The store settings the token engine was built with (a reload keeps the engine if equal).
    store_settings: Mutex<String>,
    /// The running listeners; reloads take this lock, so two never overlap.
    listeners: tokio::sync::Mutex<Vec<RunningListener>>,
}

/// One bound socket and its accept loop.
struct RunningListener {
    /// Protocol, address and the listener's settings: equal keys need no re-binding.
    key: String,
    task: tokio::task::JoinHandle<()>,
}

impl Daemon {
    /// What new sessions use.
    pub fn shared(&self) -> Arc<Shared> {
        self.current.read().expect("daemon state poisoned").clone()
    }

    /// The configuration file this daemon runs.
    pub fn config_file(&self) -> &std::path::Path {
        &self.paths.config_file
    }

    /// Re-reads the configuration; on success returns a summary of what changed.
    pub async fn reload(self: &Arc<Daemon>) -> Result<String, String> {
        let mut running = self.listeners.lock().await;
        let config = Config::load(&self.paths.config_file)
            .map_err(|e| format!("{e:#}; the previous configuration stays in force"))?;
        let planned = plan_listeners(&config, &self.paths)
            .map_err(|e| format!("{e:#}; the previous configuration stays in force"))?;
        if planned.is_empty() {
            return Err(
                "the new configuration has no listener; the previous configuration stays in force"
                    .into(),
            );
        }
        let old = self.shared();
        let mut next = shared(&config, &self.paths, self.config_arg.clone())
            .map_err(|e| format!("{e:#}; the previous configuration stays in force"))?;
        let store_settings = format!("{:?}", config.store);
        {
            let mut settings = self.store_settings.lock().expect("daemon state poisoned");
            if *settings == store_settings {
                next.refresher = old.refresher.clone();
            }
            *settings = store_settings;
        }
        next.extensions = old.extensions.clone();
        next.activity = old.activity.clone();
        old.notifier.set_command(config.notify_command.as_deref());
        next.notifier = old.notifier.clone();
        let next = Arc::new(next);
        *self.current.write().expect("daemon state poisoned") = next.clone();
        if config.proxy.smtp.is_some() {
            probe_all::<crate::smtp::Smtp>(&next);
        }
        if config.proxy.pop3.is_some() {
            probe_all::<crate::pop3::Pop3>(&next);
        }
        // Listeners: keep the unchanged ones, close the others, bind the new ones.
        let mut kept = Vec::new();
        let (mut closed, mut bound) = (0, 0);
        for listener in running.drain(..) {
            if planned.iter().any(|p| p.key == listener.key) {
                kept.push(listener);
            } else {
                listener.task.abort();
                let _ = listener.task.await;
                closed += 1;
            }
        }
        let mut errors = Vec::new();
        for plan in planned {
            if kept.iter().any(|k| k.key == plan.key) {
                continue;
            }
            match plan.bind().await {
                Ok(socket) => {
                    kept.push(self.start_listener(plan, socket, config.proxy.max_connections));
                    bound += 1;
                }
                Err(e) => errors.push(format!("{e:#}")),
            }
        }
        *running = kept;
        let summary = format!(
            "configuration reloaded: {} accounts, {} listeners kept, {closed} closed, {bound} bound",
            next.accounts.len(),
            running.len() - bound
        );
        tracing::info!("{summary}");
        if errors.is_empty() {
            Ok(summary)
        } else {
            Err(format!("{summary}; but: {}", errors.join("; ")))
        }
    }

    fn start_listener(
        self: &Arc<Daemon>,
        plan: PlannedListener,
        socket: tokio::net::TcpListener,
        max_connections: usize,
    ) -> RunningListener {
        let task = tokio::spawn(listener::accept_loop(
            socket,
            plan.ctx,
            self.clone(),
            self.shutdown.clone(),
            max_connections,
        ));
        RunningListener {
            key: plan.key,
            task,
        }
    }
}

/// A listener the configuration asks for, ready to bind.
struct PlannedListener {
    key: String,
    addr: std::net::SocketAddr,
    ctx: Arc<ListenerContext>,
}

impl PlannedListener {
    async fn bind(&self) -> anyhow::Result<tokio::net::TcpListener> {
        let socket = tokio::net::TcpListener::bind(self.addr)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} for {}",
                    self.addr,
                    self.ctx.protocol.name()
                )
            })?;
        tracing::info!(addr = %self.addr, protocol = self.ctx.protocol.name(), tls = ?self.ctx.tls, "listening");
        Ok(socket)
    }
}

/// Every listener of `config`, with its TLS identity loaded (so a bad certificate fails the
/// start or the reload before anything is bound).
fn plan_listeners(config: &Config, paths: &Paths) -> anyhow::Result<Vec<PlannedListener>> {
    let listeners = [
        (Protocol::Imap, &config.proxy.imap),
        (Protocol::Smtp, &config.proxy.smtp),
        (Protocol::Pop3, &config.proxy.pop3),
    ];
    let mut planned = Vec::new();
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
            planned.push(PlannedListener {
                // Equal keys need no re-binding; the connection limit belongs to the loop.
                key: format!(
                    "{} {addr} {listener:?} max={}",
                    protocol.name(),
                    config.proxy.max_connections
                ),
                addr: *addr,
                ctx: Arc::new(ListenerContext {
                    protocol,
                    tls: listener.tls,
                    require_tls: listener.require_tls,
                    acceptor: acceptor.clone(),
                }),
            });
        }
    }
    Ok(planned)
}

/// Runs the proxy until SIGINT or SIGTERM; SIGHUP reloads the configuration.
pub async fn run(config: Config, paths: Paths, config_arg: Option<String>) -> anyhow::Result<()> {
    let planned = plan_listeners(&config, &paths)?;
    if planned.is_empty() {
        anyhow::bail!(
            "no listener is configured: add a [proxy.imap] (or [proxy.smtp], [proxy.pop3]) table with listen = \"127.0.0.1:1143\" to the configuration"
        );
    }
    let first = Arc::new(shared(&config, &paths, config_arg.clone())?);
    if config.proxy.smtp.is_some() {
        probe_all::<crate::smtp::Smtp>(&first);
    }
    if config.proxy.pop3.is_some() {
        probe_all::<crate::pop3::Pop3>(&first);
    }
    let control = crate::control::server::bind(&paths)?;
    let daemon = Arc::new(Daemon {
        current: RwLock::new(first),
        paths,
        config_arg,
        shutdown: Shutdown::new(),
        store_settings: Mutex::new(format!("{:?}", config.store)),
        listeners: tokio::sync::Mutex::new(Vec::new()),
    });
    {
        let mut running = daemon.listeners.lock().await;
        for plan in planned {
            let socket = plan.bind().await?;
            running.push(daemon.start_listener(plan, socket, config.proxy.max_connections));
        }
    }
    let control_path = control.path.clone();
    tracing::info!(socket = %control_path.display(), "control socket ready");
    let control_task = tokio::spawn(crate::control::server::serve(daemon.clone(), control));
    let refresh = tokio::spawn(refresh::keep_fresh(daemon.clone()));
    wait_for_signal(&daemon).await?;
    tracing::info!(
        "shutting down: no new connections; sessions get {} s to finish",
        SHUTDOWN_GRACE.as_secs()
    );
    daemon.shutdown.trigger();
    control_task.abort();
    let _ = std::fs::remove_file(&control_path);
    for listener in daemon.listeners.lock().await.drain(..) {
        let _ = listener.task.await;
    }
    refresh.abort();
    if tokio::time::timeout(SHUTDOWN_GRACE, daemon.shutdown.sessions_done())
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

/// Waits for SIGINT or SIGTERM; reloads on each SIGHUP meanwhile.
async fn wait_for_signal(daemon: &Arc<Daemon>) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
    loop {
        tokio::select! {
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
            _ = hup.recv() => {
                if let Err(e) = daemon.reload().await {
                    tracing::error!("reload failed: {e}");
                }
            }
        }
    }
}
