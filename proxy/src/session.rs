//! The tokio driver of one proxied session, for every protocol: it owns the sockets and TLS,
//! feeds the client core with the client's bytes until a login, checks the local password, gets
//! a token, logs in upstream through the upstream core (one refresh-and-retry if the token is
//! rejected), then splices. Every protocol decision lives in the cores (IMAP, SMTP, POP3 each
//! implement [`Protocol`]); this file only moves bytes and waits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tokenlib::RefreshError;
use tokenlib::sasl::Mechanism;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::config::{AccountConfig, ListenerTls, Upstream};
use crate::core::{
    ClientCore, ClientEvent, LoginFailure, LoginRequest, UpstreamCore, UpstreamEvent,
    UpstreamFailure,
};
use crate::credentials::Verdict;
use crate::daemon::{AccountEntry, ListenerContext, Shared, Shutdown};
use crate::splice::{Counters, splice};
use crate::stream::Stream;
use crate::trace::Direction;

/// The whole pre-auth phase (greeting to successful login) may take this long.
const LOGIN_DEADLINE: Duration = Duration::from_secs(180);
/// Connecting and logging in upstream may take this long per attempt.
const UPSTREAM_DEADLINE: Duration = Duration::from_secs(30);
/// A TLS handshake with the client may take this long.
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(20);

/// One protocol as the driver sees it: its two cores and how to make them.
pub trait Protocol: 'static {
    /// For log lines: `IMAP`, `SMTP`, `POP3`.
    const NAME: &'static str;
    type Client: ClientCore;
    type Upstream: UpstreamCore;
    /// The client core of a new connection.
    fn client(ctx: &ListenerContext, shared: &Shared, tls_active: bool) -> Self::Client;
    /// The account's server for this protocol.
    fn upstream_of(config: &AccountConfig) -> Option<Upstream>;
    /// The upstream core for `login`, logging in as `user` (the SASL identity).
    fn upstream(
        login: &<Self::Client as ClientCore>::Login,
        user: &str,
        upstream: &Upstream,
    ) -> Self::Upstream;
    /// What to write before closing a connection that never logged in.
    fn goodbye(reason: Goodbye) -> &'static [u8];
    /// An upstream core for a capability probe (no login: it stops when a token is needed);
    /// `None` when the protocol advertises nothing of the server's before login (IMAP).
    fn probe_core(_upstream: &Upstream, _user: &str) -> Option<Self::Upstream> {
        None
    }
    /// The upstream's extensions once its capabilities are known (SMTP EHLO keywords, POP3
    /// CAPA lines), which the client core advertises before login; none for IMAP.
    fn extensions(_core: &Self::Upstream) -> Vec<String> {
        Vec::new()
    }
    /// Called with the upstream core after a successful login: the daemon keeps what the
    /// server advertised, for the next clients.
    fn learned(core: &Self::Upstream, shared: &Shared, upstream: &Upstream) {
        let found = Self::extensions(core);
        if !found.is_empty() {
            shared.extensions.learn(Self::NAME, upstream, found);
        }
    }
}

/// Why a connection is closed before login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goodbye {
    LoginDeadline,
    Shutdown,
}

/// How a session ended, for its log line.
#[derive(Debug)]
enum Outcome {
    /// Logged in and spliced until a side closed.
    Spliced {
        counters: Counters,
    },
    /// The client left (or was sent away) before logging in.
    NoLogin(&'static str),
    Error(String),
}

/// What the session learned on the way, for its log line.
#[derive(Default)]
struct Facts {
    account: Option<String>,
    upstream: Option<String>,
    mechanism: Option<Mechanism>,
}

/// Runs one client connection to its end and logs one line about it.
pub async fn run<P: Protocol>(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: Arc<ListenerContext>,
    shared: Arc<Shared>,
    shutdown: Shutdown,
) {
    let started = Instant::now();
    let mut facts = Facts::default();
    let outcome = match session::<P>(tcp, peer, &ctx, &shared, shutdown, &mut facts).await {
        Ok(outcome) => outcome,
        Err(e) => Outcome::Error(e),
    };
    let ms = started.elapsed().as_millis() as u64;
    let account = facts.account.as_deref().unwrap_or("-");
    let upstream = facts.upstream.as_deref().unwrap_or("-");
    let mechanism = facts.mechanism.map(|m| m.name()).unwrap_or("-");
    match outcome {
        Outcome::Spliced { counters } => tracing::info!(
            protocol = P::NAME, %peer, account, upstream, mechanism, bytes_up = counters.up, bytes_down = counters.down, ms,
            "session ended"
        ),
        Outcome::NoLogin(why) => {
            tracing::info!(%peer, account, ms, "session ended without login: {why}")
        }
        Outcome::Error(e) => {
            tracing::info!(%peer, account, upstream, ms, "session ended: {e}")
        }
    }
}

async fn session<P: Protocol>(
    tcp: TcpStream,
    peer: SocketAddr,
    ctx: &ListenerContext,
    shared: &Shared,
    mut shutdown: Shutdown,
    facts: &mut Facts,
) -> Result<Outcome, String> {
    let mut client = Stream::tcp(tcp);
    if ctx.tls == ListenerTls::Implicit {
        client = accept_tls(client, ctx).await?;
    }
    let mut core = P::client(ctx, shared, client.is_tls());
    let deadline = tokio::time::Instant::now() + LOGIN_DEADLINE;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let event = core.next_event();
        let out = core.take_output();
        crate::trace::log(P::NAME, Direction::ToClient, &out);
        write_all(&mut client, &out).await?;
        match event {
            None => {
                let n = tokio::select! {
                    r = tokio::time::timeout_at(deadline, client.read(&mut buf)) => match r {
                        Err(_) => {
                            let _ = client.write_all(P::goodbye(Goodbye::LoginDeadline)).await;
                            return Ok(Outcome::NoLogin("login deadline passed"));
                        }
                        Ok(r) => r.map_err(|e| format!("client read failed: {e}"))?,
                    },
                    _ = shutdown.triggered() => {
                        let _ = client.write_all(P::goodbye(Goodbye::Shutdown)).await;
                        return Ok(Outcome::NoLogin("shutdown"));
                    }
                };
                if n == 0 {
                    return Ok(Outcome::NoLogin("client closed"));
                }
                crate::trace::log(P::NAME, Direction::Client, &buf[..n]);
                core.feed(&buf[..n]);
            }
            Some(ClientEvent::Close) => {
                let _ = client.shutdown().await;
                return Ok(Outcome::NoLogin(
                    "closed by the protocol (LOGOUT or a limit)",
                ));
            }
            Some(ClientEvent::StartTls) => {
                client = accept_tls(client, ctx).await?;
                core.tls_started();
            }
            Some(ClientEvent::Login(login)) => {
                match login_upstream::<P>(&login, peer, shared, facts).await {
                    Ok((mut upstream, to_client)) => {
                        let leftover = core.into_leftover();
                        let counters = splice(&mut client, &mut upstream, &to_client, &leftover)
                            .await
                            .map_err(|e| format!("splice ended with an error: {e}"))?;
                        return Ok(Outcome::Spliced { counters });
                    }
                    Err(failure) => core.login_failed(failure),
                }
            }
        }
    }
}

async fn write_all(stream: &mut Stream, bytes: &[u8]) -> Result<(), String> {
    if bytes.is_empty() {
        return Ok(());
    }
    stream
        .write_all(bytes)
        .await
        .map_err(|e| format!("client write failed: {e}"))?;
    stream
        .flush()
        .await
        .map_err(|e| format!("client write failed: {e}"))
}

async fn accept_tls(client: Stream, ctx: &ListenerContext) -> Result<Stream, String> {
    let acceptor = ctx
        .acceptor
        .as_ref()
        .ok_or("TLS requested on a listener without a certificate")?;
    let tcp = client
        .into_plain()
        .map_err(|_| "TLS is already active".to_string())?;
    let tls = timeout(HANDSHAKE_DEADLINE, acceptor.accept(tcp))
        .await
        .map_err(|_| "the client's TLS handshake timed out".to_string())?
        .map_err(|e| format!("the client's TLS handshake failed: {e}"))?;
    Ok(Stream::Server(Box::new(tls)))
}

/// Checks the local password, gets a token and logs in upstream. On success: the upstream
/// stream and the bytes the client must get (the upstream's answer).
async fn login_upstream<P: Protocol>(
    login: &<P::Client as ClientCore>::Login,
    peer: SocketAddr,
    shared: &Shared,
    facts: &mut Facts,
) -> Result<(Stream, Vec<u8>), LoginFailure> {
    let user = login.user();
    facts.account = Some(user.to_string());
    let ip = peer.ip();
    let refuse = |delay: Duration| async move {
        tokio::time::sleep(delay).await;
        Err(LoginFailure::BadCredentials)
    };
    let Some(entry) = shared.accounts.get(user) else {
        tracing::info!(%peer, user, "login for an account that is not configured");
        return refuse(shared.credentials.failed(ip, user)).await;
    };
    match shared.credentials.verify(user, login.password()).await {
        Verdict::Correct => shared.credentials.succeeded(ip, user),
        Verdict::NotSet => {
            tracing::warn!(
                account = user,
                "no local password is set: run `mailoauth passwd {user}`"
            );
            return refuse(shared.credentials.failed(ip, user)).await;
        }
        Verdict::Wrong => {
            tracing::info!(%peer, account = user, "wrong local password");
            return refuse(shared.credentials.failed(ip, user)).await;
        }
    }
    unlock(shared, user, login.password()).await?;
    let Some(upstream) = P::upstream_of(&entry.config) else {
        return Err(LoginFailure::Unavailable(format!(
            "account {user} has no {} server configured",
            P::NAME
        )));
    };
    facts.upstream = Some(upstream.to_string());
    let token = shared
        .refresher
        .access_token(&entry.account)
        .await
        .map_err(|e| token_failure(shared, user, &e))?;
    let outcome = timeout(
        UPSTREAM_DEADLINE,
        authenticate::<P>(login, entry, &upstream, shared, token, facts),
    )
    .await
    .unwrap_or_else(|_| {
        Err(LoginFailure::Unavailable(format!(
            "{upstream} did not complete the login in time; try again later"
        )))
    });
    if let Err(failure) = &outcome {
        tracing::info!(%peer, account = user, %upstream, "upstream login failed: {failure:?}");
    }
    outcome
}

/// With the password store, the (verified) local password unlocks the account's tokens; the
/// derivation runs once per process and account. Other stores need nothing.
async fn unlock(
    shared: &Shared,
    account: &str,
    password: &SecretString,
) -> Result<(), LoginFailure> {
    let store = shared.refresher.store().clone();
    if !store.needs_password() {
        return Ok(());
    }
    let (name, password) = (account.to_string(), password.clone());
    let unlocked = tokio::task::spawn_blocking(move || store.unlock(&name, &password)).await;
    match unlocked {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => {
            tracing::warn!(
                account,
                "cannot unlock the account's tokens with its local password: {e}"
            );
            Err(LoginFailure::Reauthorize(format!(
                "the tokens were sealed with another local password; run {}",
                shared.authorize_command(account)
            )))
        }
        Err(_) => Err(LoginFailure::Unavailable(
            "internal error while unlocking the tokens".into(),
        )),
    }
}

/// Maps a token error to the answer the client gets.
fn token_failure(shared: &Shared, account: &str, e: &RefreshError) -> LoginFailure {
    crate::daemon::report_refresh_failure(shared, account, e);
    match e {
        RefreshError::NotAuthorized { .. } | RefreshError::NeedsReauthorization { .. } => {
            LoginFailure::Reauthorize(format!(
                "mailoauth needs the account authorized again: run {}",
                shared.authorize_command(account)
            ))
        }
        RefreshError::Unavailable { .. } => {
            LoginFailure::Unavailable("the OAuth provider is not answering; try again later".into())
        }
        RefreshError::Provider { .. } | RefreshError::Store(_) => {
            tracing::error!(account, "cannot get a token: {e}");
            LoginFailure::Unavailable(
                "mailoauth cannot get a token for this account; see its log".into(),
            )
        }
    }
}

/// An upstream connection and its core, driven until the core needs the driver: the I/O and
/// STARTTLS are handled here, every other event is returned.
struct UpstreamConn<'a, P: Protocol> {
    server: Stream,
    core: P::Upstream,
    upstream: &'a Upstream,
    tls: &'a Arc<rustls::ClientConfig>,
    buf: Vec<u8>,
}

impl<'a, P: Protocol> UpstreamConn<'a, P> {
    /// Connects (and starts implicit TLS) for `core`.
    async fn open(
        upstream: &'a Upstream,
        tls: &'a Arc<rustls::ClientConfig>,
        core: P::Upstream,
    ) -> Result<Self, String> {
        let tcp = TcpStream::connect((upstream.host.as_str(), upstream.port))
            .await
            .map_err(|e| format!("cannot connect ({e})"))?;
        let mut server = Stream::tcp(tcp);
        if upstream.implicit_tls {
            server = connect_tls(server, upstream, tls).await?;
        }
        Ok(UpstreamConn {
            server,
            core,
            upstream,
            tls,
            buf: vec![0u8; 16 * 1024],
        })
    }

    /// The next event that needs a decision (never `StartTls`: done here).
    async fn next(&mut self) -> Result<UpstreamEvent, String> {
        loop {
            let event = self.core.next_event();
            let out = self.core.take_output();
            crate::trace::log(P::NAME, Direction::ToServer, &out);
            if !out.is_empty() {
                self.server
                    .write_all(&out)
                    .await
                    .map_err(|e| format!("write failed ({e})"))?;
                self.server
                    .flush()
                    .await
                    .map_err(|e| format!("write failed ({e})"))?;
            }
            match event {
                None => {
                    let n = self
                        .server
                        .read(&mut self.buf)
                        .await
                        .map_err(|e| format!("read failed ({e})"))?;
                    if n == 0 {
                        self.core.eof();
                    } else {
                        crate::trace::log(P::NAME, Direction::Server, &self.buf[..n]);
                        self.core.feed(&self.buf[..n]);
                    }
                }
                Some(UpstreamEvent::StartTls) => {
                    let plain = std::mem::replace(&mut self.server, Stream::Closed);
                    self.server = connect_tls(plain, self.upstream, self.tls).await?;
                    self.core.tls_started();
                }
                Some(other) => return Ok(other),
            }
        }
    }
}

/// Connects upstream and runs the upstream core to the end: one token, and one refresh-and-retry
/// if the server rejects it.
async fn authenticate<P: Protocol>(
    login: &<P::Client as ClientCore>::Login,
    entry: &AccountEntry,
    upstream: &Upstream,
    shared: &Shared,
    mut token: SecretString,
    facts: &mut Facts,
) -> Result<(Stream, Vec<u8>), LoginFailure> {
    let unavailable =
        |what: String| LoginFailure::Unavailable(format!("{upstream}: {what}; try again later"));
    let user = crate::accounts::upstream_user(login.user(), &entry.config);
    let core = P::upstream(login, user, upstream);
    let mut conn = UpstreamConn::<P>::open(upstream, &entry.upstream_tls, core)
        .await
        .map_err(unavailable)?;
    let mut retried = false;
    loop {
        match conn.next().await.map_err(unavailable)? {
            UpstreamEvent::StartTls => unreachable!("UpstreamConn::next handles STARTTLS"),
            UpstreamEvent::NeedToken { mechanism } => {
                facts.mechanism = Some(mechanism);
                conn.core.authenticate(&token);
            }
            UpstreamEvent::Authenticated => {
                facts.mechanism = conn.core.mechanism();
                P::learned(&conn.core, shared, upstream);
                shared.activity.logged_in(login.user(), P::NAME);
                shared.notifier.recovered(login.user());
                return Ok((conn.server, conn.core.into_client_bytes()));
            }
            UpstreamEvent::Rejected { status, text } if !retried => {
                tracing::info!(account = %login.user(), status = ?status, "upstream rejected the token ({text}); refreshing once");
                retried = true;
                token = shared
                    .refresher
                    .after_rejection(&entry.account, &token)
                    .await
                    .map_err(|e| token_failure(shared, login.user(), &e))?;
                conn.core.authenticate(&token);
            }
            UpstreamEvent::Rejected { status, text } => {
                tracing::warn!(account = %login.user(), status = ?status, "upstream rejected a fresh token too: {text}");
                return Err(LoginFailure::UpstreamRejected(format!(
                    "{upstream} rejected the OAuth token ({text}); check the account's scopes and that it may use {}, or run {}",
                    P::NAME,
                    shared.authorize_command(login.user())
                )));
            }
            UpstreamEvent::Failed(failure) => {
                return Err(match failure {
                    UpstreamFailure::NoStartTls => LoginFailure::Unavailable(format!(
                        "{upstream} offers no STARTTLS; mailoauth never sends a token unencrypted"
                    )),
                    other => unavailable(other.to_string()),
                });
            }
        }
    }
}

/// Connects to `upstream` as far as its capabilities (no token is sent), for what the client
/// core advertises before login; says goodbye and returns them.
pub async fn probe<P: Protocol>(
    upstream: &Upstream,
    tls: &Arc<rustls::ClientConfig>,
    core: P::Upstream,
) -> Result<Vec<String>, String> {
    let mut conn = UpstreamConn::<P>::open(upstream, tls, core).await?;
    let found = timeout(UPSTREAM_DEADLINE, async {
        match conn.next().await? {
            UpstreamEvent::NeedToken { .. } => Ok(P::extensions(&conn.core)),
            UpstreamEvent::Failed(f) => Err(f.to_string()),
            other => Err(format!("unexpected {other:?} before authentication")),
        }
    })
    .await
    .map_err(|_| "no answer in time".to_string())??;
    let _ = conn.server.write_all(b"QUIT\r\n").await;
    let _ = conn.server.shutdown().await;
    Ok(found)
}

async fn connect_tls(
    server: Stream,
    upstream: &Upstream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<Stream, String> {
    let name = rustls::pki_types::ServerName::try_from(upstream.host.clone())
        .map_err(|_| format!("{:?} is not a valid server name", upstream.host))?;
    let tcp = server
        .into_plain()
        .map_err(|_| "TLS is already active".to_string())?;
    let connector = tokio_rustls::TlsConnector::from(tls.clone());
    let tls = timeout(HANDSHAKE_DEADLINE, connector.connect(name, tcp))
        .await
        .map_err(|_| "the TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS failed ({e})"))?;
    Ok(Stream::Client(Box::new(tls)))
}
