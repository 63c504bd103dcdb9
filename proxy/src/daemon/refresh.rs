//! Background refresh: every minute, each authorized account's token is renewed if it is inside
//! the margin, so a client's login normally finds a fresh token and never waits for the token
//! endpoint. The Refresher's single flight means a login racing this task costs no extra refresh.
//!
//! Refreshing every hour while the daemon runs also keeps Microsoft refresh tokens alive (they
//! die after 90 days without use). The same pass tells the user (see `notify.rs`) when an
//! account needs re-authorization, when refresh keeps failing, and ahead of a refresh token's
//! known end (Google says when, for apps in "Testing": 7 days).

use std::sync::Arc;
use std::time::Duration;

use tokenlib::token::now_unix;
use tokenlib::{RefreshError, StoreError};

use super::{Daemon, Shared};

const PERIOD: Duration = Duration::from_secs(60);
/// Warn this long before a refresh token's announced end.
const EXPIRY_WARNING_SECS: i64 = 36 * 3600;
/// Refresh failing for this long (the token endpoint down, a network problem) is news.
const FAILING_FOR_SECS: i64 = 30 * 60;

pub async fn keep_fresh(daemon: Arc<Daemon>) {
    let mut shutdown = daemon.shutdown.clone();
    loop {
        let shared = daemon.shared();
        for entry in shared.accounts.values() {
            let name = &entry.account.name;
            match shared.refresher.access_token(&entry.account).await {
                Ok(_) => {
                    let state = shared.refresher.store().state(name);
                    match expiry_warning(&state, entry.account.provider, now_unix()) {
                        Some(warning) => {
                            shared.notifier.notify(name, &warning);
                        }
                        None => shared.notifier.recovered(name),
                    }
                }
                // Sealed with a local password nobody has given this process yet: nothing to do.
                Err(RefreshError::Store(StoreError::Locked { .. })) => {}
                Err(e) => report(&shared, name, &e),
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(PERIOD) => {}
            _ = shutdown.triggered() => return,
        }
    }
}

/// Tells the user about a failed token request when it needs them: at once for a lost grant,
/// after [`FAILING_FOR_SECS`] of transient failures.
pub fn report(shared: &Shared, account: &str, e: &RefreshError) {
    let command = shared.authorize_command(account);
    match e {
        RefreshError::NotAuthorized { .. } => {}
        RefreshError::NeedsReauthorization { reason, .. } => {
            shared.notifier.notify(
                account,
                &format!("{account} needs to be authorized again ({reason}). Run: {command}"),
            );
        }
        RefreshError::Unavailable { .. } => {
            let state = shared.refresher.store().state(account);
            let since = state.last_refresh.or(state.authorized_at).unwrap_or(0);
            tracing::warn!(account, "background refresh failed: {e}");
            if now_unix() - since > FAILING_FOR_SECS {
                shared.notifier.notify(
                    account,
                    &format!("refreshing {account}'s token keeps failing: {e}"),
                );
            }
        }
        RefreshError::Provider { .. } | RefreshError::Store(_) => {
            shared.notifier.notify(account, &format!("{account}: {e}"));
        }
    }
}

/// Microsoft ends refresh tokens unused for 90 days; warn after this many.
const MICROSOFT_IDLE_WARNING_DAYS: i64 = 80;

/// A warning when the refresh token's end is near: announced by the provider (Google,
/// "Testing" apps), or Microsoft's 90 days without use.
pub fn expiry_warning(
    state: &tokenlib::AccountState,
    provider: tokenlib::provider::ProviderKind,
    now: i64,
) -> Option<String> {
    if provider == tokenlib::provider::ProviderKind::Microsoft
        && let Some(used) = state.last_refresh.or(state.authorized_at)
    {
        let days = (now - used) / 86400;
        if days >= MICROSOFT_IDLE_WARNING_DAYS {
            return Some(format!(
                "the refresh token was last used {days} days ago and Microsoft ends it after 90 days without use: run mailoauth token (or keep mailoauth serve running) to keep it alive"
            ));
        }
    }
    let ends = state.refresh_expires_at?;
    let left = ends - now;
    if left > EXPIRY_WARNING_SECS {
        return None;
    }
    let when = if left <= 0 {
        "has ended".to_string()
    } else {
        format!("ends in {} hours", (left + 3599) / 3600)
    };
    Some(format!(
        "the refresh token {when} (Google limits apps in \"Testing\" to 7 days): authorize again, or publish the app in the Google Cloud console"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_warning_only_near_an_announced_end() {
        use tokenlib::provider::ProviderKind::{Google, Microsoft};
        let mut state = tokenlib::AccountState::default();
        assert_eq!(
            expiry_warning(&state, Google, 1000),
            None,
            "nothing announced"
        );
        state.refresh_expires_at = Some(1000 + 7 * 86400);
        assert_eq!(expiry_warning(&state, Google, 1000), None, "a week left");
        let w = expiry_warning(&state, Google, 1000 + 6 * 86400 + 3600).unwrap();
        assert!(w.contains("ends in 23 hours"), "{w}");
        let w = expiry_warning(&state, Google, 1000 + 8 * 86400).unwrap();
        assert!(w.contains("has ended"), "{w}");
        // Microsoft: 90 days without use.
        let mut ms = tokenlib::AccountState {
            last_refresh: Some(1000),
            ..Default::default()
        };
        assert_eq!(expiry_warning(&ms, Microsoft, 1000 + 79 * 86400), None);
        let w = expiry_warning(&ms, Microsoft, 1000 + 85 * 86400).unwrap();
        assert!(w.contains("85 days") && w.contains("90 days"), "{w}");
        ms.last_refresh = None;
        assert_eq!(
            expiry_warning(&ms, Microsoft, 1000 + 85 * 86400),
            None,
            "never used"
        );
    }
}
