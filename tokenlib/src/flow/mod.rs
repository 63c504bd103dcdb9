//! Authorization flows: loopback redirect, paste, device code and client credentials. Each ends
//! in a [`TokenSet`]; showing URLs and codes to the user goes through a [`Prompter`] so the same
//! flows run in a terminal today and through the daemon's control socket later.

mod device;
mod loopback;
mod paste;
pub mod pkce;
pub mod redirect;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::account::{Account, FlowKind};
use crate::explain::{Explanation, explain};
use crate::oauth::{EndpointError, OAuthHttp};
use crate::provider::{self, Endpoints};
use crate::token::{Grant, TokenSet, now_unix};
use pkce::Pkce;

/// What the device flow asks the user to do.
#[derive(Debug, Clone)]
pub struct DeviceInstructions {
    pub verification_uri: String,
    pub user_code: String,
    /// The URI with the code filled in, when the provider offers one.
    pub verification_uri_complete: Option<String>,
    /// The provider's own sentence (Microsoft sends one).
    pub message: Option<String>,
    pub expires_in: Duration,
}

/// The answer a [`Prompter`] reads, as a future (a terminal reads stdin on a blocking thread; the
/// daemon will read from its control socket).
pub type PromptFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = std::io::Result<String>> + Send + 'a>>;

/// The user-facing side of a flow.
pub trait Prompter: Send + Sync {
    /// Shows the authorization URL; a browser may be opened for it when `open_browser`.
    fn show_authorization_url(&self, url: &Url, open_browser: bool);
    /// Shows the device flow's code and address.
    fn show_device_code(&self, instructions: &DeviceInstructions);
    /// Asks for the pasted redirect URL or code (paste flow).
    fn read_pasted<'a>(&'a self, prompt: &'a str) -> PromptFuture<'a>;
    /// A progress note ("waiting for the browser…").
    fn note(&self, message: &str);
}

/// Knobs of a flow run.
#[derive(Debug, Clone)]
pub struct FlowOptions {
    /// Try to open a browser (loopback flow).
    pub open_browser: bool,
    /// How long the loopback flow waits for the browser.
    pub timeout: Duration,
}

impl Default for FlowOptions {
    fn default() -> Self {
        FlowOptions {
            open_browser: true,
            timeout: Duration::from_secs(300),
        }
    }
}

/// Why a flow did not produce tokens.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    /// The provider refused or could not be reached; the explanation says what to do.
    #[error("{}", .explanation.text)]
    Endpoint {
        explanation: Explanation,
        #[source]
        source: EndpointError,
    },
    /// The user (or a policy) declined in the browser.
    #[error("the authorization was refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    /// Nothing arrived in time.
    #[error("{0}")]
    TimedOut(String),
    /// What was pasted is not an answer to this authorization.
    #[error("{0}")]
    BadAnswer(String),
    /// The account's configuration cannot run this flow.
    #[error("{0}")]
    Config(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl FlowError {
    fn endpoint(account: &Account, flow: FlowKind, source: EndpointError) -> FlowError {
        FlowError::Endpoint {
            explanation: explain(account.provider, flow, &source),
            source,
        }
    }
}

/// Runs `flow` for `account` and returns its tokens (not yet stored).
pub async fn authorize(
    http: &OAuthHttp,
    account: &Account,
    endpoints: &Endpoints,
    flow: FlowKind,
    prompter: &dyn Prompter,
    options: &FlowOptions,
) -> Result<TokenSet, FlowError> {
    match flow {
        FlowKind::Loopback => loopback::run(http, account, endpoints, prompter, options).await,
        FlowKind::Paste => paste::run(http, account, endpoints, prompter).await,
        FlowKind::Device => device::run(http, account, endpoints, prompter).await,
        FlowKind::ClientCredentials => client_credentials(http, account, endpoints).await,
    }
}

/// One authorization request in the making: its PKCE pair, state and redirect URI.
pub(crate) struct AuthRequest {
    pub pkce: Pkce,
    pub state: String,
    pub redirect_uri: Url,
}

impl AuthRequest {
    pub fn new(redirect_uri: Url) -> AuthRequest {
        AuthRequest {
            pkce: Pkce::generate(),
            state: pkce::random_token(16),
            redirect_uri,
        }
    }

    /// The URL the user opens.
    pub fn url(&self, account: &Account, endpoints: &Endpoints) -> Result<Url, FlowError> {
        let mut url = endpoints.authorize.clone().ok_or_else(|| {
            FlowError::Config(format!(
                "account {} has no authorization endpoint; set authorize_url (or issuer) or use flow = \"device\"",
                account.name
            ))
        })?;
        provider::check_endpoint(&url).map_err(FlowError::Config)?;
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", &account.client_id)
                .append_pair("redirect_uri", self.redirect_uri.as_str());
            let scope = account.scope_param();
            if !scope.is_empty() {
                q.append_pair("scope", &scope);
            }
            q.append_pair("state", &self.state)
                .append_pair("code_challenge", self.pkce.challenge())
                .append_pair("code_challenge_method", "S256");
            if let Some(hint) = &account.login_hint {
                q.append_pair("login_hint", hint);
            }
            for (k, v) in &account.auth_params {
                q.append_pair(k, v);
            }
        }
        Ok(url)
    }

    /// Exchanges the code for tokens (RFC 6749 §4.1.3 with the PKCE verifier).
    pub async fn exchange(
        &self,
        http: &OAuthHttp,
        account: &Account,
        endpoints: &Endpoints,
        flow: FlowKind,
        code: &SecretString,
    ) -> Result<TokenSet, FlowError> {
        let requested_at = now_unix();
        let redirect = self.redirect_uri.to_string();
        let params = [
            ("grant_type", "authorization_code"),
            ("code", code.expose_secret()),
            ("redirect_uri", redirect.as_str()),
            ("code_verifier", self.pkce.verifier().expose_secret()),
        ];
        let response = http
            .token_request(account, &endpoints.token, &params)
            .await
            .map_err(|e| FlowError::endpoint(account, flow, e))?;
        Ok(response.into_token_set(requested_at, Grant::User))
    }
}

/// Client credentials grant (RFC 6749 §4.4): needs a client secret, yields no refresh token.
pub async fn client_credentials(
    http: &OAuthHttp,
    account: &Account,
    endpoints: &Endpoints,
) -> Result<TokenSet, FlowError> {
    if account.client_secret.is_none() {
        return Err(FlowError::Config(format!(
            "account {} uses client credentials but has no client_secret (or client_secret_command)",
            account.name
        )));
    }
    let requested_at = now_unix();
    let scope = account.scope_param();
    let mut params = vec![("grant_type", "client_credentials")];
    if !scope.is_empty() {
        params.push(("scope", scope.as_str()));
    }
    let response = http
        .token_request(account, &endpoints.token, &params)
        .await
        .map_err(|e| FlowError::endpoint(account, FlowKind::ClientCredentials, e))?;
    Ok(response.into_token_set(requested_at, Grant::ClientCredentials))
}

/// The redirect URI for an account: its configured one, or the provider's loopback host with
/// `port` (`None`: no port, for the paste flow where nothing listens).
pub(crate) fn redirect_uri(account: &Account, port: Option<u16>) -> Url {
    if let Some(fixed) = &account.redirect_uri {
        let mut uri = fixed.clone();
        if uri.port().is_none()
            && let Some(p) = port
        {
            let _ = uri.set_port(Some(p));
        }
        return uri;
    }
    let host = provider::loopback_redirect_host(account.provider);
    let text = match port {
        Some(p) => format!("http://{host}:{p}/"),
        None => format!("http://{host}/"),
    };
    Url::parse(&text).expect("loopback URLs are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::{EndpointSource, ProviderKind, google_endpoints};

    fn account() -> Account {
        Account {
            name: "me@gmail.com".into(),
            provider: ProviderKind::Google,
            endpoints: EndpointSource::Known(google_endpoints()),
            client_id: "cid".into(),
            client_secret: None,
            client_auth_basic: false,
            scopes: vec!["https://mail.google.com/".into()],
            auth_params: provider::authorization_params(ProviderKind::Google),
            flow: FlowKind::Loopback,
            redirect_uri: None,
            login_hint: Some("me@gmail.com".into()),
        }
    }

    #[test]
    fn authorization_url_has_pkce_state_and_google_params() {
        let acct = account();
        let req = AuthRequest::new(redirect_uri(&acct, Some(4711)));
        let url = req.url(&acct, &google_endpoints()).unwrap();
        let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
        assert_eq!(q["redirect_uri"], "http://127.0.0.1:4711/");
        assert_eq!(q["code_challenge_method"], "S256");
        assert_eq!(q["code_challenge"], req.pkce.challenge());
        assert_eq!(q["state"], req.state);
        assert_eq!(q["scope"], "https://mail.google.com/");
        assert_eq!(q["access_type"], "offline");
        assert_eq!(q["prompt"], "consent");
        assert_eq!(q["login_hint"], "me@gmail.com");
        assert!(!url.as_str().contains(req.pkce.verifier().expose_secret()));
    }

    #[test]
    fn redirect_uris_per_provider_and_override() {
        let mut acct = account();
        assert_eq!(redirect_uri(&acct, None).as_str(), "http://127.0.0.1/");
        acct.provider = ProviderKind::Microsoft;
        assert_eq!(redirect_uri(&acct, Some(9)).as_str(), "http://localhost:9/");
        acct.redirect_uri = Some(Url::parse("http://localhost/callback").unwrap());
        assert_eq!(
            redirect_uri(&acct, Some(9)).as_str(),
            "http://localhost:9/callback"
        );
        acct.redirect_uri = Some(Url::parse("http://127.0.0.1:8080/cb").unwrap());
        assert_eq!(
            redirect_uri(&acct, Some(9)).as_str(),
            "http://127.0.0.1:8080/cb"
        );
    }
}
