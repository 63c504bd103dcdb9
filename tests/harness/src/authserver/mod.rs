//! A test OAuth2 authorization server (authorization code + PKCE, refresh, device code, client
//! credentials, RFC 7662 introspection, RFC 7009 revocation) with Google-, Microsoft- and
//! generic-style answers, failure injection and counters, on its own thread and runtime.
//!
//! Tests "play the browser" by GETting the `/authorize` URL: the server approves at once and
//! answers `302` to the redirect URI. Everything the server knows sits behind one mutex that the
//! control methods on [`AuthServer`] share with the request handlers.

mod endpoints;
mod server;
mod state;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::error::HarnessError;
use crate::util::{Background, redact};
use state::State;

/// The client registered by default (a Google-like "installed app": it has a secret that is
/// required at the token endpoint, and it must use PKCE).
pub const DEFAULT_CLIENT_ID: &str = "test-client";
/// The default client's secret.
pub const DEFAULT_CLIENT_SECRET: &str = "test-secret";
/// The user that `/authorize` approves as when the request has no `login_hint`.
pub const DEFAULT_USER: &str = "alice@example.test";
/// The resource-server (introspection) credentials by default.
pub const DEFAULT_RS_ID: &str = "dovecot";
/// The resource-server secret by default.
pub const DEFAULT_RS_SECRET: &str = "dovecot-secret";

/// Whose quirks the server's answers copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Style {
    /// Plain RFC 6749/8628 answers; refresh tokens rotate by default.
    #[default]
    Generic,
    /// `expires_in` 3599; refresh never rotates (the refresh answer has no `refresh_token`);
    /// device answers carry `verification_url`; the device flow refuses
    /// `https://mail.google.com/` with `invalid_scope`; authorization codes contain `/`.
    Google,
    /// Rotation on every refresh; `ext_expires_in`; device answers carry `message`; errors carry
    /// `AADSTS…` codes; device denial is `authorization_declined`; refresh tokens are only issued
    /// when the scope contains `offline_access`; long tokens.
    Microsoft,
}

/// A registered client.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientSpec {
    /// The client id.
    pub client_id: String,
    /// The secret; when set, the token endpoint requires it (body or HTTP Basic), and the
    /// client may use `client_credentials`.
    pub client_secret: Option<String>,
    /// `/authorize` without `code_challenge` is refused with `invalid_request`.
    pub require_pkce: bool,
}

impl ClientSpec {
    /// A public client without a secret, PKCE required.
    pub fn public(client_id: &str) -> ClientSpec {
        ClientSpec {
            client_id: client_id.to_string(),
            client_secret: None,
            require_pkce: true,
        }
    }

    /// A client with a secret, PKCE required.
    pub fn confidential(client_id: &str, secret: &str) -> ClientSpec {
        ClientSpec {
            client_id: client_id.to_string(),
            client_secret: Some(secret.to_string()),
            require_pkce: true,
        }
    }
}

impl std::fmt::Debug for ClientSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSpec")
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "…"))
            .field("require_pkce", &self.require_pkce)
            .finish()
    }
}

/// How to start an [`AuthServer`]. `AuthServerOptions::default()` is the generic style with
/// the default client; [`AuthServerOptions::new`] picks a style.
#[derive(Debug, Clone)]
pub struct AuthServerOptions {
    /// Whose quirks to copy.
    pub style: Style,
    /// Clients known from the start (more with [`AuthServer::register_client`]).
    pub clients: Vec<ClientSpec>,
    /// Who `/authorize` approves as without `login_hint`.
    pub default_user: String,
    /// Resource-server credentials for `/introspect` (HTTP Basic).
    pub rs_id: String,
    /// See `rs_id`.
    pub rs_secret: String,
    /// Access-token lifetime; `None`: 3599 s for Google, 3600 s otherwise.
    pub access_lifetime: Option<Duration>,
    /// Rotate refresh tokens on refresh; `None`: the style's habit (Google never, others yes).
    pub rotate_refresh_tokens: Option<bool>,
    /// The device flow's polling interval (whole seconds are sent). Default 5 s.
    pub device_interval: Duration,
    /// How long a device code lives. Default 600 s.
    pub device_code_lifetime: Duration,
    /// Send `expires_in` as a string (`"3599"`).
    pub expires_in_as_string: bool,
    /// Leave `expires_in` out of token answers.
    pub omit_expires_in: bool,
}

impl Default for AuthServerOptions {
    fn default() -> Self {
        AuthServerOptions::new(Style::Generic)
    }
}

impl AuthServerOptions {
    /// Defaults for `style`.
    pub fn new(style: Style) -> AuthServerOptions {
        AuthServerOptions {
            style,
            clients: vec![ClientSpec::confidential(
                DEFAULT_CLIENT_ID,
                DEFAULT_CLIENT_SECRET,
            )],
            default_user: DEFAULT_USER.to_string(),
            rs_id: DEFAULT_RS_ID.to_string(),
            rs_secret: DEFAULT_RS_SECRET.to_string(),
            access_lifetime: None,
            rotate_refresh_tokens: None,
            device_interval: Duration::from_secs(5),
            device_code_lifetime: Duration::from_secs(600),
            expires_in_as_string: false,
            omit_expires_in: false,
        }
    }
}

/// Tokens minted by [`AuthServer::issue_tokens`].
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedTokens {
    /// A live access token.
    pub access_token: String,
    /// Its refresh token.
    pub refresh_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &redact(&self.access_token))
            .field("refresh_token", &redact(&self.refresh_token))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What the next token requests get instead of a normal answer.
#[derive(Debug, Clone, PartialEq)]
pub enum Failure {
    /// This HTTP status with an HTML (non-JSON) body.
    Status(u16),
    /// Wait this long, then answer normally.
    Delay(Duration),
    /// `400 {"error": "invalid_grant", …}` in the server's style.
    InvalidGrant,
    /// This status and JSON body, verbatim.
    Json {
        /// HTTP status.
        status: u16,
        /// The body.
        body: serde_json::Value,
    },
    /// Close the connection without any answer.
    Disconnect,
}

/// One request the server received (for assertions).
#[derive(Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, without query.
    pub path: String,
    /// Query parameters followed by form-body parameters, in order.
    pub params: Vec<(String, String)>,
    /// The client id from an `Authorization: Basic` header, if one was sent.
    pub basic_client_id: Option<String>,
}

impl RequestRecord {
    /// The first value of parameter `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parameters whose values `Debug` output hides.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "refresh_token",
    "code",
    "code_verifier",
    "client_secret",
    "device_code",
    "password",
    "client_assertion",
];

impl std::fmt::Debug for RequestRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let params: Vec<(String, String)> = self
            .params
            .iter()
            .map(|(k, v)| {
                let v = if SECRET_PARAMS.contains(&k.as_str()) {
                    redact(v)
                } else {
                    v.clone()
                };
                (k.clone(), v)
            })
            .collect();
        f.debug_struct("RequestRecord")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("params", &params)
            .field("basic_client_id", &self.basic_client_id)
            .finish()
    }
}

/// The running server. Stops (and frees its port) on drop.
pub struct AuthServer {
    base_url: String,
    state: Arc<Mutex<State>>,
    _background: Background,
}

impl std::fmt::Debug for AuthServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthServer")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl AuthServer {
    /// Starts the server on `127.0.0.1:<OS-chosen port>`.
    ///
    /// # Panics
    /// If no loopback port or thread can be had (nothing a test could recover from).
    pub fn start(options: AuthServerOptions) -> AuthServer {
        Self::try_start(options).expect("starting the test authorization server")
    }

    /// Like [`AuthServer::start`], returning the error instead of panicking.
    pub fn try_start(options: AuthServerOptions) -> Result<AuthServer, HarnessError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .map_err(|e| HarnessError::io("binding the authorization server", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| HarnessError::io("configuring the authorization server socket", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| HarnessError::io("reading the authorization server address", e))?
            .port();
        let base_url = format!("http://127.0.0.1:{port}");
        let state = Arc::new(Mutex::new(State::new(base_url.clone(), options)));
        let shared = state.clone();
        let background = Background::spawn("authserver", move |shutdown| {
            server::serve(listener, shared, shutdown)
        })
        .map_err(|e| HarnessError::io("starting the authorization server thread", e))?;
        Ok(AuthServer {
            base_url,
            state,
            _background: background,
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking test thread must not wedge every later assertion.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `http://127.0.0.1:PORT` (also the `issuer`).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }
    /// The server's port.
    pub fn port(&self) -> u16 {
        self.base_url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("base_url ends with the port")
    }
    /// `base_url/.well-known/openid-configuration`.
    pub fn discovery_url(&self) -> String {
        format!("{}/.well-known/openid-configuration", self.base_url)
    }
    /// `base_url/authorize`.
    pub fn authorization_endpoint(&self) -> String {
        format!("{}/authorize", self.base_url)
    }
    /// `base_url/token`.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.base_url)
    }
    /// `base_url/device` (POST: device authorization; GET: the verification page).
    pub fn device_authorization_endpoint(&self) -> String {
        format!("{}/device", self.base_url)
    }
    /// `base_url/introspect`.
    pub fn introspection_endpoint(&self) -> String {
        format!("{}/introspect", self.base_url)
    }
    /// `base_url/revoke`.
    pub fn revocation_endpoint(&self) -> String {
        format!("{}/revoke", self.base_url)
    }
    /// The introspection URL with the resource-server credentials embedded
    /// (`http://RS_ID:RS_SECRET@127.0.0.1:PORT/introspect`), as Dovecot's oauth2 passdb wants it.
    pub fn introspection_url_with_credentials(&self) -> String {
        let st = self.lock();
        format!(
            "http://{}:{}@{}/introspect",
            url::form_urlencoded::byte_serialize(st.rs_id.as_bytes()).collect::<String>(),
            url::form_urlencoded::byte_serialize(st.rs_secret.as_bytes()).collect::<String>(),
            self.base_url.trim_start_matches("http://")
        )
    }
    /// The style the server answers in.
    pub fn style(&self) -> Style {
        self.lock().style
    }

    // ---- controls -------------------------------------------------------------------------

    /// Registers (or replaces) a client.
    pub fn register_client(&self, client: ClientSpec) {
        self.lock().clients.insert(client.client_id.clone(), client);
    }
    /// Mints a live access token and refresh token for `user` without any flow
    /// (client: the default client id).
    pub fn issue_tokens(&self, user: &str, scope: &str) -> IssuedTokens {
        self.lock().issue_direct(user, scope)
    }
    /// Every current access and refresh token of `user` stops working (introspection says
    /// inactive, refresh answers `invalid_grant`). Tokens minted later work.
    pub fn revoke_user(&self, user: &str) {
        self.lock().revoke_user(user);
    }
    /// Revokes one refresh token (its access tokens stay live).
    pub fn revoke_refresh_token(&self, token: &str) {
        if let Some(r) = self.lock().refresh.get_mut(token) {
            r.revoked = true;
        }
    }
    /// Revokes one access token.
    pub fn revoke_access_token(&self, token: &str) {
        if let Some(a) = self.lock().access.get_mut(token) {
            a.revoked = true;
        }
    }
    /// Every access token issued so far is expired from now on (refresh tokens stay live).
    pub fn expire_access_tokens(&self) {
        self.lock().expire_access_tokens();
    }
    /// Lifetime of access tokens issued from now on.
    pub fn set_access_lifetime(&self, lifetime: Duration) {
        self.lock().access_lifetime = lifetime;
    }
    /// Whether refresh rotates refresh tokens from now on.
    pub fn set_rotation(&self, rotate: bool) {
        self.lock().rotation = rotate;
    }
    /// Polling interval for device codes issued from now on.
    pub fn set_device_interval(&self, interval: Duration) {
        self.lock().device_interval = interval;
    }
    /// The next `/authorize` redirects with `error=access_denied`.
    pub fn deny_next_authorization(&self) {
        self.lock().deny_next_authorization = true;
    }
    /// The next `n` requests to `/token` get `failure` (queued after failures already queued).
    pub fn fail_next_token_requests(&self, n: usize, failure: Failure) {
        let mut st = self.lock();
        for _ in 0..n {
            st.failures.push_back(failure.clone());
        }
    }
    /// The user approves the device code with this user code (as `user`). Returns false if no
    /// pending device code has that user code.
    pub fn approve_device(&self, user_code: &str, user: &str) -> bool {
        self.lock()
            .set_device_status(user_code, state::DeviceStatus::Approved(user.to_string()))
    }
    /// The user denies the device code with this user code.
    pub fn deny_device(&self, user_code: &str) -> bool {
        self.lock()
            .set_device_status(user_code, state::DeviceStatus::Denied)
    }
    /// User codes of device authorizations that are neither approved, denied nor expired.
    pub fn pending_device_codes(&self) -> Vec<String> {
        self.lock().pending_user_codes()
    }

    // ---- inspection -----------------------------------------------------------------------

    /// How many `/token` requests with this `grant_type` arrived (failed ones included).
    pub fn token_requests(&self, grant_type: &str) -> usize {
        self.lock()
            .token_counts
            .get(grant_type)
            .copied()
            .unwrap_or(0)
    }
    /// `token_requests("refresh_token")`.
    pub fn refresh_requests(&self) -> usize {
        self.token_requests("refresh_token")
    }
    /// How many `/introspect` requests arrived.
    pub fn introspections(&self) -> usize {
        self.lock().introspections
    }
    /// Every request so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.lock().log.clone()
    }
    /// The query of every `/authorize` request so far, oldest first.
    pub fn authorize_queries(&self) -> Vec<Vec<(String, String)>> {
        self.lock().authorize_queries.clone()
    }
    /// Whether `token` is a live access token (known, not revoked, not expired).
    pub fn is_access_token_live(&self, token: &str) -> bool {
        self.lock().live_access(token).is_some()
    }
    /// Whether `token` is a live refresh token.
    pub fn is_refresh_token_live(&self, token: &str) -> bool {
        self.lock().live_refresh(token).is_some()
    }
    /// Live refresh tokens of `user` (handy to find the one a flow produced).
    pub fn live_refresh_tokens(&self, user: &str) -> Vec<String> {
        let st = self.lock();
        st.refresh
            .iter()
            .filter(|(_, r)| r.user == user && !r.revoked)
            .map(|(t, _)| t.clone())
            .collect()
    }
}
