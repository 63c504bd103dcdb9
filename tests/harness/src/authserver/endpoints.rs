//! The endpoints' logic: a request (already parsed, independent of hyper) in, a [`Reply`] out.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::json;
use sha2::{Digest, Sha256};
use url::Url;

use super::state::{CodeRec, DeviceStatus, Reply, State};
use super::{ClientSpec, Style};
use crate::util::random_hex;

/// RFC 8628's grant type.
pub(crate) const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long an authorization code may wait for its exchange.
const CODE_LIFETIME: Duration = Duration::from_secs(600);
/// Tolerance for the device-flow poll interval (timer jitter on a loaded machine).
const POLL_SLACK: Duration = Duration::from_millis(50);

/// A parsed HTTP request.
pub(crate) struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    /// Only filled for `application/x-www-form-urlencoded` bodies.
    pub form: Vec<(String, String)>,
    /// `(client id, secret)` from `Authorization: Basic`, URL-decoded.
    pub basic: Option<(String, String)>,
}

fn get<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

impl Request {
    fn q(&self, key: &str) -> Option<&str> {
        get(&self.query, key)
    }
    fn f(&self, key: &str) -> Option<&str> {
        get(&self.form, key)
    }
}

/// Routes a request.
pub(crate) fn dispatch(st: &mut State, req: &Request) -> Reply {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/.well-known/openid-configuration") => discovery(st),
        ("GET", "/authorize") => authorize(st, req),
        ("POST", "/token") => token(st, req),
        ("POST", "/device") => device_authorization(st, req),
        ("GET", "/device") => Reply::html(200, "Enter the code shown on your device"),
        ("POST", "/introspect") => introspect(st, req),
        ("POST", "/revoke") => revoke(st, req),
        (
            _,
            "/.well-known/openid-configuration"
            | "/authorize"
            | "/token"
            | "/device"
            | "/introspect"
            | "/revoke",
        ) => Reply::html(405, "Method Not Allowed"),
        _ => Reply::html(404, "Not Found"),
    }
}

fn discovery(st: &State) -> Reply {
    let b = &st.base_url;
    Reply::json(
        200,
        &json!({
            "issuer": b,
            "authorization_endpoint": format!("{b}/authorize"),
            "token_endpoint": format!("{b}/token"),
            "device_authorization_endpoint": format!("{b}/device"),
            "introspection_endpoint": format!("{b}/introspect"),
            "revocation_endpoint": format!("{b}/revoke"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", DEVICE_GRANT, "client_credentials"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "client_secret_basic", "none"],
        }),
    )
}

/// Loopback `http` (any port, any path) or any `https` URI.
fn redirect_allowed(uri: &Url) -> bool {
    if uri.fragment().is_some() {
        return false;
    }
    match uri.scheme() {
        "https" => uri.host().is_some(),
        "http" => matches!(
            uri.host_str(),
            Some("127.0.0.1") | Some("localhost") | Some("[::1]")
        ),
        _ => false,
    }
}

/// A PKCE challenge is base64url(SHA-256) = 43 characters of the unreserved set
/// (RFC 7636 §4.2 allows 43–128).
fn challenge_well_formed(c: &str) -> bool {
    (43..=128).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn authorize(st: &mut State, req: &Request) -> Reply {
    st.authorize_queries.push(req.query.clone());
    let Some(client_id) = req.q("client_id") else {
        return Reply::html(400, "Error 400: invalid_request (missing client_id)");
    };
    let Some(client) = st.clients.get(client_id).cloned() else {
        return Reply::html(
            400,
            "Error 401: invalid_client (the OAuth client was not found)",
        );
    };
    let Some(redirect_uri) = req.q("redirect_uri") else {
        return Reply::html(400, "Error 400: invalid_request (missing redirect_uri)");
    };
    let Some(mut target) = Url::parse(redirect_uri).ok().filter(redirect_allowed) else {
        return Reply::html(400, "Error 400: redirect_uri_mismatch");
    };
    let state_param = req.q("state").map(str::to_string);
    let redirect_error = |mut target: Url, error: &str, description: &str| {
        {
            let mut q = target.query_pairs_mut();
            q.append_pair("error", error);
            q.append_pair("error_description", description);
            if let Some(s) = &state_param {
                q.append_pair("state", s);
            }
        }
        Reply::redirect(target.to_string())
    };

    if req.q("response_type") != Some("code") {
        return redirect_error(
            target,
            "unsupported_response_type",
            "only response_type=code is supported",
        );
    }
    if std::mem::take(&mut st.deny_next_authorization) {
        let description = match st.style {
            Style::Microsoft => "AADSTS65004: User declined to consent to access the app.",
            _ => "The user denied access.",
        };
        return redirect_error(target, "access_denied", description);
    }
    let challenge = match (req.q("code_challenge"), req.q("code_challenge_method")) {
        (None, _) if client.require_pkce => {
            return redirect_error(target, "invalid_request", "code_challenge is required");
        }
        (None, _) => None,
        (Some(_), method) if method != Some("S256") => {
            return redirect_error(
                target,
                "invalid_request",
                "code_challenge_method must be S256",
            );
        }
        (Some(c), _) if !challenge_well_formed(c) => {
            return redirect_error(target, "invalid_request", "malformed code_challenge");
        }
        (Some(c), _) => Some(c.to_string()),
    };

    let user = req
        .q("login_hint")
        .filter(|h| !h.is_empty())
        .unwrap_or(&st.default_user)
        .to_string();
    let scope = req.q("scope").unwrap_or("").to_string();
    let code = st.new_code();
    st.codes.insert(
        code.clone(),
        CodeRec {
            client_id: client.client_id.clone(),
            redirect_uri: redirect_uri.to_string(),
            challenge,
            user,
            scope: scope.clone(),
            created: Instant::now(),
        },
    );
    {
        let mut q = target.query_pairs_mut();
        // Each provider adds its own extras; a client must ignore what it does not know.
        match st.style {
            Style::Google => {
                if let Some(s) = &state_param {
                    q.append_pair("state", s);
                }
                q.append_pair("code", &code);
                q.append_pair("scope", &scope);
                q.append_pair("authuser", "0");
                q.append_pair("prompt", "consent");
            }
            Style::Microsoft | Style::Generic => {
                q.append_pair("code", &code);
                if let Some(s) = &state_param {
                    q.append_pair("state", s);
                }
                if st.style == Style::Microsoft {
                    q.append_pair("session_state", &random_hex(16));
                }
            }
        }
    }
    Reply::redirect(target.to_string())
}

/// Client authentication at the token endpoint (RFC 6749 §2.3.1): Basic or body.
fn authenticate_client(st: &State, req: &Request) -> Result<ClientSpec, Reply> {
    let body_id = req.f("client_id");
    let (id, secret) = match &req.basic {
        Some((id, secret)) => {
            if body_id.is_some_and(|b| b != id) {
                return Err(st.error_reply(
                    "invalid_request",
                    "client_id in the body differs from HTTP Basic",
                ));
            }
            (Some(id.as_str()), Some(secret.as_str()))
        }
        None => (body_id, req.f("client_secret")),
    };
    let Some(id) = id else {
        return Err(st.error_reply("invalid_client", "client_id is missing"));
    };
    let Some(client) = st.clients.get(id) else {
        return Err(st.error_reply("invalid_client", "The OAuth client was not found."));
    };
    if let Some(expected) = &client.client_secret
        && secret != Some(expected.as_str())
    {
        return Err(st.error_reply("invalid_client", "Invalid client secret provided."));
    }
    Ok(client.clone())
}

fn token(st: &mut State, req: &Request) -> Reply {
    let client = match authenticate_client(st, req) {
        Ok(c) => c,
        Err(reply) => return reply,
    };
    match req.f("grant_type") {
        Some("authorization_code") => code_grant(st, req, &client),
        Some("refresh_token") => refresh_grant(st, req, &client),
        Some(DEVICE_GRANT) => device_grant(st, req, &client),
        Some("client_credentials") => client_credentials_grant(st, req, &client),
        Some(_) => st.error_reply("unsupported_grant_type", "unsupported grant_type"),
        None => st.error_reply("invalid_request", "grant_type is missing"),
    }
}

/// Whether the style hands out a refresh token for this scope.
fn wants_refresh(st: &State, scope: &str) -> bool {
    st.style != Style::Microsoft || scope.split_whitespace().any(|s| s == "offline_access")
}

fn issue(st: &mut State, user: &str, scope: &str, client_id: &str, refresh: bool) -> Reply {
    let grant = st.new_grant();
    let at = st.mint_access(user, scope, client_id, grant);
    let rt = refresh.then(|| st.mint_refresh(user, scope, client_id, grant));
    st.token_reply(&at, rt.as_deref(), scope)
}

fn code_grant(st: &mut State, req: &Request, client: &ClientSpec) -> Reply {
    let Some(code) = req.f("code") else {
        return st.error_reply("invalid_request", "code is missing");
    };
    // Single use: the code is spent by any exchange attempt, successful or not.
    let Some(rec) = st.codes.remove(code) else {
        return st.error_reply(
            "invalid_grant",
            "The authorization code is invalid or was already used.",
        );
    };
    if rec.client_id != client.client_id {
        return st.error_reply(
            "invalid_grant",
            "The authorization code was issued to another client.",
        );
    }
    if rec.created.elapsed() > CODE_LIFETIME {
        return st.error_reply("invalid_grant", "The authorization code has expired.");
    }
    if req.f("redirect_uri") != Some(rec.redirect_uri.as_str()) {
        return st.error_reply(
            "invalid_grant",
            "redirect_uri differs from the one in the authorization request.",
        );
    }
    if let Some(challenge) = &rec.challenge {
        let Some(verifier) = req.f("code_verifier") else {
            return st.error_reply("invalid_grant", "Missing code verifier.");
        };
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        if &computed != challenge {
            return st.error_reply(
                "invalid_grant",
                "The code_verifier does not match the code_challenge.",
            );
        }
    }
    let refresh = wants_refresh(st, &rec.scope);
    issue(st, &rec.user, &rec.scope, &client.client_id, refresh)
}

fn refresh_grant(st: &mut State, req: &Request, client: &ClientSpec) -> Reply {
    let Some(old) = req.f("refresh_token") else {
        return st.error_reply("invalid_request", "refresh_token is missing");
    };
    let Some(rec) = st.live_refresh(old) else {
        return st.error_reply("invalid_grant", "Token has been expired or revoked.");
    };
    if rec.client_id != client.client_id {
        return st.error_reply(
            "invalid_grant",
            "The refresh token was issued to another client.",
        );
    }
    let (user, grant) = (rec.user.clone(), rec.grant);
    let scope = req
        .f("scope")
        .map(str::to_string)
        .unwrap_or_else(|| rec.scope.clone());
    let at = st.mint_access(&user, &scope, &client.client_id, grant);
    let rt = if st.rotation {
        if let Some(r) = st.refresh.get_mut(old) {
            r.revoked = true;
        }
        Some(st.mint_refresh(&user, &scope, &client.client_id, grant))
    } else if st.style == Style::Microsoft {
        // Entra ID always answers with a refresh token; unrotated it is the same one.
        Some(old.to_string())
    } else {
        None
    };
    st.token_reply(&at, rt.as_deref(), &scope)
}

fn device_grant(st: &mut State, req: &Request, client: &ClientSpec) -> Reply {
    let Some(device_code) = req.f("device_code") else {
        return st.error_reply("invalid_request", "device_code is missing");
    };
    let declined = match st.style {
        Style::Microsoft => "authorization_declined",
        _ => "access_denied",
    };
    match poll_device(st, device_code, &client.client_id, declined) {
        Ok((user, scope)) => {
            let refresh = wants_refresh(st, &scope);
            issue(st, &user, &scope, &client.client_id, refresh)
        }
        Err((error, description)) => st.error_reply(error, description),
    }
}

/// One poll of a device code: `(user, scope)` once approved, else `(error, description)`.
fn poll_device(
    st: &mut State,
    device_code: &str,
    client_id: &str,
    declined: &'static str,
) -> Result<(String, String), (&'static str, &'static str)> {
    let now = Instant::now();
    let Some(d) = st.devices.get_mut(device_code) else {
        return Err(("invalid_grant", "The device code is unknown."));
    };
    if d.client_id != client_id {
        return Err((
            "invalid_grant",
            "The device code was issued to another client.",
        ));
    }
    if d.status == DeviceStatus::Consumed {
        return Err(("invalid_grant", "The device code was already used."));
    }
    if now >= d.expires_at {
        return Err(("expired_token", "The device code has expired."));
    }
    let too_fast = d
        .last_poll
        .is_some_and(|t| now.duration_since(t) + POLL_SLACK < d.interval);
    d.last_poll = Some(now);
    match std::mem::replace(&mut d.status, DeviceStatus::Consumed) {
        DeviceStatus::Approved(user) => Ok((user, d.scope.clone())),
        other => {
            let error = match &other {
                DeviceStatus::Pending if too_fast => ("slow_down", "Polling too fast: slow down."),
                DeviceStatus::Pending => (
                    "authorization_pending",
                    "The user has not yet completed authorization.",
                ),
                _ => (declined, "The user denied the request."),
            };
            d.status = other;
            Err(error)
        }
    }
}

fn client_credentials_grant(st: &mut State, req: &Request, client: &ClientSpec) -> Reply {
    if client.client_secret.is_none() {
        return st.error_reply(
            "unauthorized_client",
            "A public client may not use client_credentials.",
        );
    }
    let scope = req.f("scope").unwrap_or("").to_string();
    issue(st, &client.client_id, &scope, &client.client_id, false)
}

fn device_authorization(st: &mut State, req: &Request) -> Reply {
    let id = req
        .basic
        .as_ref()
        .map(|(id, _)| id.as_str())
        .or(req.f("client_id"));
    let Some(client_id) = id.filter(|id| st.clients.contains_key(*id)) else {
        return st.error_reply("invalid_client", "The OAuth client was not found.");
    };
    let client_id = client_id.to_string();
    let scope = req.f("scope").unwrap_or("").to_string();
    if st.style == Style::Google
        && scope
            .split_whitespace()
            .any(|s| s == "https://mail.google.com/")
    {
        return st.error_reply(
            "invalid_scope",
            "Invalid device flow scope: https://mail.google.com/",
        );
    }
    let (device_code, user_code) = st.new_device(&client_id, &scope);
    let verification = format!("{}/device", st.base_url);
    let expires_in = st.device_lifetime.as_secs();
    let interval = st.device_interval.as_secs();
    let body = match st.style {
        Style::Google => json!({
            "device_code": device_code,
            "user_code": user_code,
            "expires_in": expires_in,
            "interval": interval,
            "verification_url": verification,
        }),
        Style::Microsoft => json!({
            "user_code": user_code,
            "device_code": device_code,
            "verification_uri": verification,
            "expires_in": expires_in,
            "interval": interval,
            "message": format!(
                "To sign in, use a web browser to open the page {verification} and enter the code {user_code} to authenticate."
            ),
        }),
        Style::Generic => json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification,
            "verification_uri_complete": format!("{verification}?user_code={user_code}"),
            "expires_in": expires_in,
            "interval": interval,
        }),
    };
    Reply::json(200, &body)
}

fn introspect(st: &mut State, req: &Request) -> Reply {
    st.introspections += 1;
    let authorized = req
        .basic
        .as_ref()
        .is_some_and(|(id, secret)| *id == st.rs_id && *secret == st.rs_secret);
    if !authorized {
        let mut reply = Reply::json(401, &json!({ "error": "invalid_client" }));
        reply
            .headers
            .push(("www-authenticate", "Basic realm=\"introspection\"".into()));
        return reply;
    }
    let token = req.f("token").unwrap_or("");
    let body = match st.live_access(token) {
        Some(a) => json!({
            "active": true,
            "username": a.user,
            "sub": a.user,
            "scope": a.scope,
            "client_id": a.client_id,
            "token_type": "Bearer",
            "exp": a.expires_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
            "iat": SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs(),
        }),
        None => json!({ "active": false }),
    };
    Reply::json(200, &body)
}

/// RFC 7009: revoking a refresh token revokes its whole grant; unknown tokens are not an error.
fn revoke(st: &mut State, req: &Request) -> Reply {
    let Some(token) = req.f("token") else {
        return st.error_reply("invalid_request", "token is missing");
    };
    if let Some(a) = st.access.get_mut(token) {
        a.revoked = true;
    } else if let Some(grant) = st.refresh.get(token).map(|r| r.grant) {
        st.revoke_grant(grant);
    }
    Reply {
        status: 200,
        headers: Vec::new(),
        body: Vec::new(),
    }
}
