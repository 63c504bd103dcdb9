//! Shutdown as a first-class object (mini-redis's pattern): a watch channel tells every task that
//! the proxy is stopping, and a counter of live sessions tells the main task when all are done.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::{Notify, watch};

/// A handle on the proxy's shutdown, cloned into every task.
#[derive(Clone)]
pub struct Shutdown {
    signal: watch::Receiver<bool>,
    trigger: Arc<watch::Sender<bool>>,
    sessions: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Shutdown {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            signal: rx,
            trigger: Arc::new(tx),
            sessions: Arc::new(AtomicUsize::new(0)),
            idle: Arc::new(Notify::new()),
        }
    }

    /// Tells every task to stop.
    pub fn trigger(&self) {
        let _ = self.trigger.send(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.signal.borrow()
    }

    /// Resolves once shutdown is triggered.
    pub async fn triggered(&mut self) {
        let _ = self.signal.wait_for(|stopping| *stopping).await;
    }

    /// Counts a session as live until the guard is dropped.
    pub fn session(&self) -> SessionGuard {
        self.sessions.fetch_add(1, Ordering::SeqCst);
        SessionGuard {
            sessions: self.sessions.clone(),
            idle: self.idle.clone(),
        }
    }

    /// Resolves when no session is live.
    pub async fn sessions_done(&self) {
        loop {
            let notified = self.idle.notified();
            if self.sessions.load(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Held by a live session.
pub struct SessionGuard {
    sessions: Arc<AtomicUsize>,
    idle: Arc<Notify>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if self.sessions.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }
}
