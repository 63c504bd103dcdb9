//! The daemon's side of the control socket: binding it safely, checking each peer's uid, and
//! answering requests (see the module above for the protocol).

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use secrecy::ExposeSecret;
use tokenlib::FlowKind;
use tokenlib::flow::{DeviceInstructions, FlowOptions, PromptFuture, Prompter};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::mpsc;
use url::Url;

use super::{AccountStatus, MAX_LINE, Reply, Request, Secret};
use crate::config::Paths;
use crate::daemon::{Daemon, Shared};
use crate::exit::{CONFIGURATION, ERROR, Failure, USAGE};

/// The bound control socket.
pub struct Bound {
    pub listener: UnixListener,
    pub path: PathBuf,
    /// Our uid: the owner of the directory we made; only peers with it are served.
    pub uid: u32,
}

/// Creates the runtime directory (0700, ours) and binds the socket (0600). A socket file left by
/// a crashed daemon is replaced; one a live daemon answers on is an error.
pub fn bind(paths: &Paths) -> anyhow::Result<Bound> {
    let dir = &paths.runtime_dir;
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the runtime directory {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot make {} private (0700)", dir.display()))?;
    let uid = std::fs::metadata(dir)
        .with_context(|| format!("cannot inspect {}", dir.display()))?
        .uid();
    let path = paths.control_socket();
    if path.exists() {
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            anyhow::bail!(
                "another mailoauth serve is running (its control socket is {}); stop it first, or use `mailoauth reload` to make it re-read the configuration",
                path.display()
            );
        }
        std::fs::remove_file(&path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    let listener = UnixListener::bind(&path)
        .with_context(|| format!("cannot create the control socket {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("cannot make {} private (0600)", path.display()))?;
    Ok(Bound {
        listener,
        path,
        uid,
    })
}

/// Serves control connections until the task is aborted.
pub async fn serve(daemon: Arc<Daemon>, bound: Bound) {
    loop {
        let (stream, _) = match bound.listener.accept().await {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!("control socket accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        match stream.peer_cred() {
            Ok(cred) if cred.uid() == bound.uid => {}
            Ok(cred) => {
                tracing::warn!(
                    peer_uid = cred.uid(),
                    "control connection from another user refused"
                );
                // Answered in its own task: a peer that never reads must not stall accepting.
                tokio::spawn(async move {
                    let mut stream = stream;
                    let _ = write_reply(
                        &mut stream,
                        &Reply::Error {
                            exit: ERROR,
                            message: "this mailoauth daemon belongs to another user".into(),
                        },
                    )
                    .await;
                    let _ = stream.shutdown().await;
                    // Let the peer's request arrive before closing, so it reads the refusal
                    // rather than failing its write.
                    let mut sink = [0u8; 1024];
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), stream.read(&mut sink)).await;
                });
                continue;
            }
            Err(e) => {
                tracing::warn!("cannot check the control peer's uid ({e}); refused");
                continue;
            }
        }
        let daemon = daemon.clone();
        tokio::spawn(async move {
            if let Err(e) = connection(daemon, stream).await {
                tracing::debug!("control connection ended: {e}");
            }
        });
    }
}

async fn write_reply(
    stream: &mut (impl AsyncWriteExt + Unpin),
    reply: &Reply,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).expect("replies serialize");
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.flush().await
}

/// Reads one line of at most [`MAX_LINE`] octets; `None` at the end of the stream.
async fn read_line(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let n = (&mut *reader)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', &mut line)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if line.len() > MAX_LINE {
        return Err(std::io::Error::other("control request too long"));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|_| std::io::Error::other("control request is not UTF-8"))
}

async fn connection(daemon: Arc<Daemon>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let Some(mut line) = read_line(&mut reader).await? else {
        return Ok(());
    };
    let parsed = serde_json::from_str(&line);
    // A request line may hold a secret (a pasted answer): not kept past parsing.
    zeroize::Zeroize::zeroize(&mut line);
    let request: Request = match parsed {
        Ok(r) => r,
        Err(e) => {
            return write_reply(
                &mut write,
                &Reply::Error {
                    exit: USAGE,
                    message: format!("not a control request: {e}"),
                },
            )
            .await;
        }
    };
    let reply = match request {
        Request::Token { account, config } => token(&daemon, &account, config).await,
        Request::Status => status(&daemon),
        Request::Reload => match daemon.reload().await {
            Ok(summary) => Reply::Done { message: summary },
            Err(e) => Reply::Error {
                exit: CONFIGURATION,
                message: e,
            },
        },
        Request::Authorize {
            account,
            config,
            flow,
        } => return authorize(&daemon, account, config, flow, reader, write).await,
        Request::Paste { .. } => Reply::Error {
            exit: USAGE,
            message: "paste comes only after an ask".into(),
        },
    };
    write_reply(&mut write, &reply).await
}

/// Whether `config` names the file this daemon runs.
fn same_config(daemon: &Daemon, config: &std::path::Path) -> bool {
    let canon = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    canon(config) == canon(daemon.config_file())
}

async fn token(daemon: &Daemon, account: &str, config: PathBuf) -> Reply {
    if !same_config(daemon, &config) {
        return Reply::OtherConfig {
            config: daemon.config_file().to_path_buf(),
        };
    }
    let shared = daemon.shared();
    let Some(entry) = shared.accounts.get(account) else {
        return Reply::OtherConfig {
            config: daemon.config_file().to_path_buf(),
        };
    };
    match shared.refresher.access_token(&entry.account).await {
        Ok(token) => Reply::Token {
            token: Secret(token),
        },
        Err(e) => {
            crate::daemon::report_refresh_failure(&shared, account, &e);
            let failure = Failure::from_refresh_with(&shared.authorize_command(account), &e);
            Reply::Error {
                exit: failure.code,
                message: failure.message,
            }
        }
    }
}

/// Every account's state: the store's state files plus what this daemon saw.
fn status(daemon: &Daemon) -> Reply {
    let shared = daemon.shared();
    let mut accounts: Vec<AccountStatus> = shared
        .accounts
        .iter()
        .map(|(name, entry)| {
            let mut s = status_from_store(shared.refresher.store(), name, &entry.config);
            s.last_login = shared.activity.logins(name);
            s
        })
        .collect();
    accounts.sort_by(|a, b| a.account.cmp(&b.account));
    Reply::Status {
        config: daemon.config_file().to_path_buf(),
        accounts,
    }
}

/// One account's status from its store: its state file and whether a record exists.
pub fn status_from_store(
    store: &tokenlib::Store,
    name: &str,
    config: &crate::config::AccountConfig,
) -> AccountStatus {
    let state = store.state(name);
    let has_record = store.record_path(name).exists();
    AccountStatus {
        account: name.to_string(),
        provider: format!("{:?}", config.provider).to_lowercase(),
        authorized: has_record && state.needs_reauthorization.is_none(),
        warning: crate::daemon::expiry_warning(
            &state,
            config.provider,
            tokenlib::token::now_unix(),
        ),
        needs_reauthorization: state.needs_reauthorization,
        access_expires_at: state.access_expires_at,
        refresh_issued_at: state.refresh_issued_at,
        refresh_expires_at: state.refresh_expires_at,
        authorized_at: state.authorized_at,
        last_refresh: state.last_refresh,
        last_error: state.last_error,
        last_error_at: state.last_error_at,
        last_login: Default::default(),
    }
}

/// Shows the flow's steps to the client on the control connection and reads its pasted answer.
struct SocketPrompter {
    replies: mpsc::UnboundedSender<Reply>,
    answers: tokio::sync::Mutex<mpsc::UnboundedReceiver<Secret>>,
}

impl Prompter for SocketPrompter {
    fn show_authorization_url(&self, url: &Url, _open_browser: bool) {
        let _ = self.replies.send(Reply::Url {
            url: url.to_string(),
        });
    }

    fn show_device_code(&self, d: &DeviceInstructions) {
        let _ = self.replies.send(Reply::Device {
            verification_uri: d.verification_uri.clone(),
            user_code: d.user_code.clone(),
            verification_uri_complete: d.verification_uri_complete.clone(),
            message: d.message.clone(),
            expires_in: d.expires_in.as_secs(),
        });
    }

    fn read_pasted<'a>(&'a self, prompt: &'a str) -> PromptFuture<'a> {
        Box::pin(async move {
            let _ = self.replies.send(Reply::Ask {
                prompt: prompt.to_string(),
            });
            match self.answers.lock().await.recv().await {
                Some(answer) => Ok(answer.0.expose_secret().to_string()),
                None => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "the client went away before pasting",
                )),
            }
        })
    }

    fn note(&self, message: &str) {
        let _ = self.replies.send(Reply::Note {
            message: message.to_string(),
        });
    }
}

/// Runs an authorization inside the daemon: the new tokens are in use as soon as it succeeds.
async fn authorize(
    daemon: &Daemon,
    name: String,
    config: PathBuf,
    flow: Option<String>,
    mut reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) -> std::io::Result<()> {
    if !same_config(daemon, &config) {
        let reply = Reply::OtherConfig {
            config: daemon.config_file().to_path_buf(),
        };
        return write_reply(&mut write, &reply).await;
    }
    let shared = daemon.shared();
    let Some(entry) = shared.accounts.get(&name) else {
        let reply = Reply::OtherConfig {
            config: daemon.config_file().to_path_buf(),
        };
        return write_reply(&mut write, &reply).await;
    };
    let mut account = entry.account.clone();
    if let Some(flow) = flow {
        account.flow = match flow.as_str() {
            "loopback" => FlowKind::Loopback,
            "paste" => FlowKind::Paste,
            "device" => FlowKind::Device,
            "client-credentials" | "client_credentials" => FlowKind::ClientCredentials,
            other => {
                let reply = Reply::Error {
                    exit: USAGE,
                    message: format!("unknown flow {other:?}"),
                };
                return write_reply(&mut write, &reply).await;
            }
        };
    }
    let (reply_tx, mut reply_rx) = mpsc::unbounded_channel();
    let (answer_tx, answer_rx) = mpsc::unbounded_channel();
    let prompter = SocketPrompter {
        replies: reply_tx.clone(),
        answers: tokio::sync::Mutex::new(answer_rx),
    };
    // Pasted answers arrive on the same connection while the flow runs.
    let pastes = tokio::spawn(async move {
        while let Ok(Some(mut line)) = read_line(&mut reader).await {
            let parsed = serde_json::from_str(&line);
            zeroize::Zeroize::zeroize(&mut line);
            if let Ok(Request::Paste { answer }) = parsed {
                let _ = answer_tx.send(answer);
            }
        }
    });
    let writer = tokio::spawn(async move {
        while let Some(reply) = reply_rx.recv().await {
            let last = reply.is_final();
            if write_reply(&mut write, &reply).await.is_err() || last {
                break;
            }
        }
    });
    let outcome = run_flow(&shared, &account, &prompter).await;
    let _ = reply_tx.send(outcome);
    drop(reply_tx);
    drop(prompter);
    let _ = writer.await;
    pastes.abort();
    Ok(())
}

async fn run_flow(
    shared: &Shared,
    account: &tokenlib::Account,
    prompter: &SocketPrompter,
) -> Reply {
    let name = &account.name;
    if let Err(f) = crate::commands::authorize::refuse_known_dead_ends(account) {
        return Reply::Error {
            exit: f.code,
            message: f.message,
        };
    }
    let options = FlowOptions {
        open_browser: false,
        timeout: Duration::from_secs(300),
    };
    let retry = format!("To try again, run:\n    {}", shared.authorize_command(name));
    let tokens = match shared
        .refresher
        .authorize(account, prompter, &options)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            let f = crate::commands::authorize::flow_failure(&e, &retry);
            return Reply::Error {
                exit: f.code,
                message: f.message,
            };
        }
    };
    if let Err(e) = shared.refresher.store_authorization(account, tokens).await {
        let message = match &e {
            tokenlib::RefreshError::Store(tokenlib::StoreError::Locked { .. }) => format!(
                "{e}\nThe daemon can seal {name}'s new tokens only after a client has logged in through the proxy with the local password since it started; log in once, then authorize again."
            ),
            _ => e.to_string(),
        };
        return Reply::Error {
            exit: ERROR,
            message,
        };
    }
    shared.notifier.recovered(name);
    tracing::info!(account = %name, "authorized through the control socket");
    Reply::Done {
        message: format!(
            "{name} is authorized; the running mailoauth serve uses the new tokens from now on (no restart needed)."
        ),
    }
}
