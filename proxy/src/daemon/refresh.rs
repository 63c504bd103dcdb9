//! Background refresh: every minute, each authorized account's token is renewed if it is inside
//! the margin, so a client's login normally finds a fresh token and never waits for the token
//! endpoint. The Refresher's single flight means a login racing this task costs no extra refresh.

use std::sync::Arc;
use std::time::Duration;

use tokenlib::{RefreshError, StoreError};

use super::{Shared, Shutdown};

const PERIOD: Duration = Duration::from_secs(60);

pub async fn keep_fresh(shared: Arc<Shared>, mut shutdown: Shutdown) {
    loop {
        for entry in shared.accounts.values() {
            match shared.refresher.access_token(&entry.account).await {
                Ok(_) => {}
                // Not authorized yet, waiting for the user to re-authorize, or sealed with a local
                // password nobody has given this process yet: nothing to do.
                Err(RefreshError::NotAuthorized { .. })
                | Err(RefreshError::NeedsReauthorization { .. })
                | Err(RefreshError::Store(StoreError::Locked { .. })) => {}
                Err(e) => {
                    tracing::warn!(account = %entry.account.name, "background refresh failed: {e}")
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.triggered() => return,
        }
    }
}
