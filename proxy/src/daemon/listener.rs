//! One listening socket: the accept loop with a connection limit and backoff on accept errors
//! (mini-redis's shape), handing each connection to its protocol's session driver.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use super::{Daemon, Shutdown};
use crate::config::ListenerTls;

/// The mail protocols the proxy serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Imap,
    Smtp,
    Pop3,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Imap => "IMAP",
            Protocol::Smtp => "SMTP",
            Protocol::Pop3 => "POP3",
        }
    }
}

/// What a session needs to know about the listener it came from.
pub struct ListenerContext {
    pub protocol: Protocol,
    pub tls: ListenerTls,
    pub require_tls: bool,
    /// The local TLS identity (implicit TLS or STARTTLS).
    pub acceptor: Option<tokio_rustls::TlsAcceptor>,
}

/// Accepts connections until shutdown. At most `max` sessions run at once; the rest wait in the
/// kernel's backlog (a slow login never blocks accepting the others).
pub async fn accept_loop(
    socket: TcpListener,
    ctx: Arc<ListenerContext>,
    daemon: Arc<Daemon>,
    mut shutdown: Shutdown,
    max: usize,
) {
    let limit = Arc::new(Semaphore::new(max.max(1)));
    let mut backoff = Duration::from_millis(10);
    loop {
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = shutdown.triggered() => return,
        };
        let accepted = tokio::select! {
            a = socket.accept() => a,
            _ = shutdown.triggered() => return,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => {
                backoff = Duration::from_millis(10);
                pair
            }
            Err(e) => {
                // Out of file descriptors and the like: wait, then try again.
                tracing::warn!("accept failed: {e}; retrying in {} ms", backoff.as_millis());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
                continue;
            }
        };
        // Each session keeps the configuration it started with, across reloads.
        let (ctx, shared, shutdown) = (ctx.clone(), daemon.shared(), shutdown.clone());
        let guard = shutdown.session();
        tokio::spawn(async move {
            use crate::session::run;
            match ctx.protocol {
                Protocol::Imap => {
                    run::<crate::imap::Imap>(stream, peer, ctx, shared, shutdown).await
                }
                Protocol::Smtp => {
                    run::<crate::smtp::Smtp>(stream, peer, ctx, shared, shutdown).await
                }
                Protocol::Pop3 => {
                    run::<crate::pop3::Pop3>(stream, peer, ctx, shared, shutdown).await
                }
            }
            drop(guard);
            drop(permit);
        });
    }
}
