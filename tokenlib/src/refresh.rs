//! The [`Refresher`]: hands out access tokens, refreshing them when less than the margin is left
//! or when an upstream rejected one — once per account however many callers wait (an async mutex
//! per account inside the process, the store's file lock across processes).
//!
//! Order of a refresh: lock → re-read the record (another process may have refreshed) → call the
//! token endpoint → persist the new record (a rotated refresh token is on disk before anyone uses
//! the new access token) → unlock. `invalid_grant`-class answers mark the account as needing
//! re-authorization; transient failures keep a still-valid token in use.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use secrecy::{ExposeSecret, SecretString};
use tokio::sync::OnceCell;

use crate::account::Account;
use crate::explain::{Explanation, NextStep, explain};
use crate::oauth::{EndpointError, OAuthHttp};
use crate::provider::{EndpointSource, Endpoints, ProviderKind};
use crate::store::{AccountLock, Store, StoreError};
use crate::token::{Grant, TokenSet, now_unix};

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    /// The account was never authorized (no record).
    #[error("account {account} has no tokens yet")]
    NotAuthorized { account: String },
    /// The grant is gone; only a new authorization helps.
    #[error("account {account} needs to be authorized again: {reason}")]
    NeedsReauthorization { account: String, reason: String },
    /// The provider refused for a reason the configuration has to fix.
    #[error("{}", .explanation.text)]
    Provider {
        account: String,
        explanation: Explanation,
        #[source]
        source: EndpointError,
    },
    /// The token endpoint is unreachable or failing and no valid token is left.
    #[error("account {account}: {detail}")]
    Unavailable { account: String, detail: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RefreshError {
    /// What the user should do about it.
    pub fn next_step(&self) -> NextStep {
        match self {
            RefreshError::NotAuthorized { .. } | RefreshError::NeedsReauthorization { .. } => {
                NextStep::Reauthorize
            }
            RefreshError::Provider { explanation, .. } => explanation.next,
            RefreshError::Unavailable { .. } => NextStep::RetryLater,
            RefreshError::Store(_) => NextStep::FixConfiguration,
        }
    }
}

/// Per-account in-process state; its mutex is the single-flight gate.
#[derive(Default)]
struct Slot {
    cached: Option<TokenSet>,
}

/// Hands out access tokens for accounts backed by one [`Store`].
pub struct Refresher {
    store: Store,
    http: OnceCell<OAuthHttp>,
    slots: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Slot>>>>,
    discovered: tokio::sync::Mutex<HashMap<String, Endpoints>>,
}

impl Refresher {
    pub fn new(store: Store) -> Refresher {
        Refresher {
            store,
            http: OnceCell::new(),
            slots: Mutex::new(HashMap::new()),
            discovered: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The HTTP client, built on first use.
    pub async fn http(&self) -> Result<&OAuthHttp, EndpointError> {
        self.http
            .get_or_try_init(|| async { OAuthHttp::new() })
            .await
    }

    /// The account's endpoints (OIDC discovery happens once per process and issuer).
    pub async fn endpoints(&self, account: &Account) -> Result<Endpoints, EndpointError> {
        match &account.endpoints {
            EndpointSource::Known(e) => Ok(e.clone()),
            EndpointSource::Discover { issuer, overrides } => {
                let mut cache = self.discovered.lock().await;
                if let Some(e) = cache.get(issuer.as_str()) {
                    return Ok(e.clone());
                }
                let e = self.http().await?.discover(issuer, overrides).await?;
                cache.insert(issuer.to_string(), e.clone());
                Ok(e)
            }
        }
    }

    fn slot(&self, account: &str) -> Arc<tokio::sync::Mutex<Slot>> {
        let mut slots = self.slots.lock().expect("slot map poisoned");
        slots.entry(account.to_string()).or_default().clone()
    }

    /// A valid access token for `account`: cached, or refreshed if less than the margin is left.
    pub async fn access_token(&self, account: &Account) -> Result<SecretString, RefreshError> {
        self.obtain(account, None).await
    }

    /// Called when an upstream rejected `rejected`: returns a different token (refreshing unless
    /// someone already did), or an error. The caller retries its login once with it.
    pub async fn after_rejection(
        &self,
        account: &Account,
        rejected: &SecretString,
    ) -> Result<SecretString, RefreshError> {
        self.obtain(account, Some(rejected)).await
    }

    async fn obtain(
        &self,
        account: &Account,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, RefreshError> {
        let slot = self.slot(&account.name);
        let mut slot = slot.lock().await;
        let usable = |t: &TokenSet, now: i64| t.is_fresh(now) && !is_rejected(t, rejected);
        if let Some(t) = &slot.cached
            && usable(t, now_unix())
        {
            return Ok(t.access_token.clone());
        }
        // Another process may have refreshed: a lock-free read first (records are replaced
        // atomically, so a read sees the old or the new one).
        if let Some(t) = self
            .blocking(account, |store, name| store.load(name))
            .await?
            && usable(&t, now_unix())
        {
            let token = t.access_token.clone();
            slot.cached = Some(t);
            return Ok(token);
        }
        let (lock, record) = self
            .blocking(account, |store, name| {
                let lock = store.lock(name)?;
                let record = store.load(name)?;
                Ok((lock, record))
            })
            .await?;
        let Some(mut tokens) = record else {
            return Err(RefreshError::NotAuthorized {
                account: account.name.clone(),
            });
        };
        if usable(&tokens, now_unix()) {
            let token = tokens.access_token.clone();
            slot.cached = Some(tokens);
            return Ok(token);
        }
        if let Some(reason) = self.store.state(&account.name).needs_reauthorization {
            return Err(RefreshError::NeedsReauthorization {
                account: account.name.clone(),
                reason,
            });
        }
        let requested_at = now_unix();
        match self.renew(account, &tokens).await {
            Ok(response) => {
                tokens.absorb(response, requested_at);
                let saved = tokens.clone();
                self.with_lock(lock, move |store, lock| {
                    store.save(&lock, &saved)?;
                    store.update_state(&lock, |s| {
                        s.note_tokens(&saved);
                        s.last_refresh = Some(requested_at);
                        s.last_error = None;
                        s.last_error_at = None;
                    })?;
                    Ok(())
                })
                .await?;
                tracing::info!(account = %account.name, expires_in = tokens.remaining(now_unix()), "access token refreshed");
                let token = tokens.access_token.clone();
                slot.cached = Some(tokens);
                Ok(token)
            }
            Err(RenewError::NoRefreshToken) => {
                let reason = "the stored grant has no refresh token".to_string();
                self.record_failure(lock, account, &reason, true).await?;
                Err(RefreshError::NeedsReauthorization {
                    account: account.name.clone(),
                    reason,
                })
            }
            Err(RenewError::Endpoint(e)) => {
                let explanation = explain(account.provider, account.flow, &e);
                match explanation.next {
                    NextStep::Reauthorize => {
                        self.record_failure(lock, account, &explanation.text, true)
                            .await?;
                        Err(RefreshError::NeedsReauthorization {
                            account: account.name.clone(),
                            reason: explanation.text,
                        })
                    }
                    NextStep::RetryLater => {
                        self.record_failure(lock, account, &explanation.text, false)
                            .await?;
                        if tokens.is_usable(now_unix()) && !is_rejected(&tokens, rejected) {
                            tracing::warn!(account = %account.name, error = %e, "refresh failed; the current token is still valid and stays in use");
                            let token = tokens.access_token.clone();
                            slot.cached = Some(tokens);
                            return Ok(token);
                        }
                        Err(RefreshError::Unavailable {
                            account: account.name.clone(),
                            detail: explanation.text,
                        })
                    }
                    NextStep::FixConfiguration => {
                        self.record_failure(lock, account, &explanation.text, false)
                            .await?;
                        Err(RefreshError::Provider {
                            account: account.name.clone(),
                            explanation,
                            source: e,
                        })
                    }
                }
            }
        }
    }

    /// Asks the token endpoint for a new access token.
    async fn renew(
        &self,
        account: &Account,
        tokens: &TokenSet,
    ) -> Result<crate::token::TokenResponse, RenewError> {
        let endpoints = self.endpoints(account).await?;
        let http = self.http().await?;
        match tokens.grant {
            Grant::ClientCredentials => {
                let scope = account.scope_param();
                let mut params = vec![("grant_type", "client_credentials")];
                if !scope.is_empty() {
                    params.push(("scope", scope.as_str()));
                }
                Ok(http
                    .token_request(account, &endpoints.token, &params)
                    .await?)
            }
            Grant::User => {
                let refresh = tokens
                    .refresh_token
                    .as_ref()
                    .ok_or(RenewError::NoRefreshToken)?;
                let scope = account.scope_param();
                let mut params = vec![
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh.expose_secret()),
                ];
                // Microsoft's v2.0 endpoint documents scope as required on refresh; elsewhere it
                // is optional and omitting it keeps the originally granted scopes.
                if account.provider == ProviderKind::Microsoft && !scope.is_empty() {
                    params.push(("scope", scope.as_str()));
                }
                Ok(http
                    .token_request(account, &endpoints.token, &params)
                    .await?)
            }
        }
    }

    /// Runs `account`'s flow (endpoints resolved, HTTP client built) and returns the tokens;
    /// they are not stored yet (see [`Refresher::store_authorization`]).
    pub async fn authorize(
        &self,
        account: &Account,
        prompter: &dyn crate::flow::Prompter,
        options: &crate::flow::FlowOptions,
    ) -> Result<TokenSet, crate::flow::FlowError> {
        let endpoint_error = |source: EndpointError| crate::flow::FlowError::Endpoint {
            explanation: explain(account.provider, account.flow, &source),
            source,
        };
        let endpoints = self.endpoints(account).await.map_err(endpoint_error)?;
        let http = self.http().await.map_err(endpoint_error)?;
        crate::flow::authorize(http, account, &endpoints, account.flow, prompter, options).await
    }

    /// Stores freshly authorized tokens (from a flow) and clears any re-authorization mark.
    pub async fn store_authorization(
        &self,
        account: &Account,
        tokens: TokenSet,
    ) -> Result<(), RefreshError> {
        let slot = self.slot(&account.name);
        let mut slot = slot.lock().await;
        let saved = tokens.clone();
        self.blocking(account, move |store, name| {
            let lock = store.lock(name)?;
            store.save(&lock, &saved)?;
            store.update_state(&lock, |s| {
                s.note_tokens(&saved);
                let now = now_unix();
                s.authorized_at = Some(now);
                s.needs_reauthorization = None;
                s.last_error = None;
                s.last_error_at = None;
            })?;
            Ok(())
        })
        .await?;
        slot.cached = Some(tokens);
        Ok(())
    }

    async fn record_failure(
        &self,
        lock: AccountLock,
        account: &Account,
        text: &str,
        reauth: bool,
    ) -> Result<(), RefreshError> {
        let text = text.to_string();
        tracing::warn!(account = %account.name, reauthorize = reauth, "token refresh failed: {text}");
        self.with_lock(lock, move |store, lock| {
            store.update_state(&lock, |s| {
                s.last_error = Some(text.clone());
                s.last_error_at = Some(now_unix());
                if reauth {
                    s.needs_reauthorization = Some(text);
                }
            })?;
            Ok(())
        })
        .await
    }

    /// Runs blocking store work for an account on the blocking pool.
    async fn blocking<T: Send + 'static>(
        &self,
        account: &Account,
        work: impl FnOnce(&Store, &str) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, RefreshError> {
        let store = self.store.clone();
        let name = account.name.clone();
        tokio::task::spawn_blocking(move || work(&store, &name))
            .await
            .expect("store task panicked")
            .map_err(RefreshError::Store)
    }

    async fn with_lock(
        &self,
        lock: AccountLock,
        work: impl FnOnce(&Store, AccountLock) -> Result<(), StoreError> + Send + 'static,
    ) -> Result<(), RefreshError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || work(&store, lock))
            .await
            .expect("store task panicked")
            .map_err(RefreshError::Store)
    }
}

enum RenewError {
    NoRefreshToken,
    Endpoint(EndpointError),
}

impl From<EndpointError> for RenewError {
    fn from(e: EndpointError) -> Self {
        RenewError::Endpoint(e)
    }
}

fn is_rejected(tokens: &TokenSet, rejected: Option<&SecretString>) -> bool {
    rejected.is_some_and(|r| r.expose_secret() == tokens.access_token.expose_secret())
}
