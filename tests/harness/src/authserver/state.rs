//! Everything the authorization server knows: clients, codes, tokens, device codes, queued
//! failures and counters, plus the style-dependent shapes of its answers.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{AuthServerOptions, ClientSpec, DEFAULT_CLIENT_ID, Failure, RequestRecord, Style};
use crate::util::{random_hex, random_urlsafe};

/// An authorization code waiting to be exchanged.
pub(crate) struct CodeRec {
    pub client_id: String,
    pub redirect_uri: String,
    pub challenge: Option<String>,
    pub user: String,
    pub scope: String,
    pub created: Instant,
}

pub(crate) struct AccessRec {
    pub user: String,
    pub scope: String,
    pub client_id: String,
    pub grant: u64,
    pub expires_at: SystemTime,
    pub revoked: bool,
}

pub(crate) struct RefreshRec {
    pub user: String,
    pub scope: String,
    pub client_id: String,
    pub grant: u64,
    pub revoked: bool,
}

#[derive(Clone, PartialEq, Eq)]
pub(crate) enum DeviceStatus {
    Pending,
    Approved(String),
    Denied,
    /// Tokens were handed out; the device code is spent.
    Consumed,
}

pub(crate) struct DeviceRec {
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub expires_at: Instant,
    pub interval: Duration,
    pub last_poll: Option<Instant>,
    pub status: DeviceStatus,
}

/// An HTTP answer, independent of hyper.
pub(crate) struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply {
            status,
            headers: vec![
                ("content-type", "application/json; charset=utf-8".into()),
                ("cache-control", "no-store".into()),
            ],
            body: body.to_string().into_bytes(),
        }
    }
    pub fn html(status: u16, text: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type", "text/html; charset=utf-8".into())],
            body: format!("<!DOCTYPE html>\n<html><body><h1>{text}</h1></body></html>\n")
                .into_bytes(),
        }
    }
    pub fn redirect(location: String) -> Reply {
        Reply {
            status: 302,
            headers: vec![("location", location)],
            body: Vec::new(),
        }
    }
}

pub(crate) struct State {
    pub base_url: String,
    pub style: Style,
    pub clients: HashMap<String, ClientSpec>,
    pub default_user: String,
    pub rs_id: String,
    pub rs_secret: String,
    pub access_lifetime: Duration,
    pub rotation: bool,
    pub device_interval: Duration,
    pub device_lifetime: Duration,
    pub expires_in_as_string: bool,
    pub omit_expires_in: bool,

    pub codes: HashMap<String, CodeRec>,
    pub access: HashMap<String, AccessRec>,
    pub refresh: HashMap<String, RefreshRec>,
    /// By device code.
    pub devices: HashMap<String, DeviceRec>,

    pub deny_next_authorization: bool,
    pub failures: VecDeque<Failure>,

    pub authorize_queries: Vec<Vec<(String, String)>>,
    pub log: Vec<RequestRecord>,
    pub token_counts: HashMap<String, usize>,
    pub introspections: usize,
    next_grant: u64,
}

/// Letters for user codes (RFC 8628 §6.1: no vowels, no look-alikes).
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

impl State {
    pub fn new(base_url: String, o: AuthServerOptions) -> State {
        let default_lifetime = match o.style {
            Style::Google => 3599,
            _ => 3600,
        };
        State {
            base_url,
            style: o.style,
            clients: o
                .clients
                .into_iter()
                .map(|c| (c.client_id.clone(), c))
                .collect(),
            default_user: o.default_user,
            rs_id: o.rs_id,
            rs_secret: o.rs_secret,
            access_lifetime: o
                .access_lifetime
                .unwrap_or(Duration::from_secs(default_lifetime)),
            rotation: o.rotate_refresh_tokens.unwrap_or(o.style != Style::Google),
            device_interval: o.device_interval,
            device_lifetime: o.device_code_lifetime,
            expires_in_as_string: o.expires_in_as_string,
            omit_expires_in: o.omit_expires_in,
            codes: HashMap::new(),
            access: HashMap::new(),
            refresh: HashMap::new(),
            devices: HashMap::new(),
            deny_next_authorization: false,
            failures: VecDeque::new(),
            authorize_queries: Vec::new(),
            log: Vec::new(),
            token_counts: HashMap::new(),
            introspections: 0,
            next_grant: 1,
        }
    }

    // ---- minting ---------------------------------------------------------------------------

    pub fn new_grant(&mut self) -> u64 {
        self.next_grant += 1;
        self.next_grant
    }

    pub fn new_code(&self) -> String {
        match self.style {
            // Google's codes look like `4/0AVG…` — the slash must survive URL decoding.
            Style::Google => format!("4/0A{}", random_urlsafe(54)),
            _ => format!("code-{}", random_urlsafe(32)),
        }
    }

    pub fn mint_access(&mut self, user: &str, scope: &str, client_id: &str, grant: u64) -> String {
        let token = match self.style {
            // Entra ID access tokens are JWTs of 1.5–2.5 kB.
            Style::Microsoft => format!(
                "at-eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.{}",
                random_urlsafe(1100)
            ),
            _ => format!("at-{}", random_urlsafe(88)),
        };
        let expires_at = SystemTime::now() + self.access_lifetime;
        self.access.insert(
            token.clone(),
            AccessRec {
                user: user.into(),
                scope: scope.into(),
                client_id: client_id.into(),
                grant,
                expires_at,
                revoked: false,
            },
        );
        token
    }

    pub fn mint_refresh(&mut self, user: &str, scope: &str, client_id: &str, grant: u64) -> String {
        let token = match self.style {
            Style::Microsoft => format!("rt-0.A{}", random_urlsafe(400)),
            Style::Google => format!("rt-1//0{}", random_urlsafe(72)),
            Style::Generic => format!("rt-{}", random_urlsafe(48)),
        };
        self.refresh.insert(
            token.clone(),
            RefreshRec {
                user: user.into(),
                scope: scope.into(),
                client_id: client_id.into(),
                grant,
                revoked: false,
            },
        );
        token
    }

    pub fn issue_direct(&mut self, user: &str, scope: &str) -> super::IssuedTokens {
        let grant = self.new_grant();
        let access_token = self.mint_access(user, scope, DEFAULT_CLIENT_ID, grant);
        let refresh_token = self.mint_refresh(user, scope, DEFAULT_CLIENT_ID, grant);
        super::IssuedTokens {
            access_token,
            refresh_token,
            expires_in: self.access_lifetime.as_secs(),
        }
    }

    pub fn new_device(&mut self, client_id: &str, scope: &str) -> (String, String) {
        let device_code = format!("dc-{}", random_urlsafe(32));
        let letters: Vec<u8> = crate::util::random_bytes(8)
            .iter()
            .map(|b| USER_CODE_ALPHABET[*b as usize % USER_CODE_ALPHABET.len()])
            .collect();
        let user_code = format!(
            "{}-{}",
            String::from_utf8_lossy(&letters[..4]),
            String::from_utf8_lossy(&letters[4..])
        );
        self.devices.insert(
            device_code.clone(),
            DeviceRec {
                user_code: user_code.clone(),
                client_id: client_id.into(),
                scope: scope.into(),
                expires_at: Instant::now() + self.device_lifetime,
                interval: self.device_interval,
                last_poll: None,
                status: DeviceStatus::Pending,
            },
        );
        (device_code, user_code)
    }

    // ---- lookups and revocation --------------------------------------------------------------

    pub fn live_access(&self, token: &str) -> Option<&AccessRec> {
        self.access
            .get(token)
            .filter(|a| !a.revoked && a.expires_at > SystemTime::now())
    }

    pub fn live_refresh(&self, token: &str) -> Option<&RefreshRec> {
        self.refresh.get(token).filter(|r| !r.revoked)
    }

    pub fn revoke_user(&mut self, user: &str) {
        for a in self.access.values_mut().filter(|a| a.user == user) {
            a.revoked = true;
        }
        for r in self.refresh.values_mut().filter(|r| r.user == user) {
            r.revoked = true;
        }
    }

    pub fn revoke_grant(&mut self, grant: u64) {
        for a in self.access.values_mut().filter(|a| a.grant == grant) {
            a.revoked = true;
        }
        for r in self.refresh.values_mut().filter(|r| r.grant == grant) {
            r.revoked = true;
        }
    }

    pub fn expire_access_tokens(&mut self) {
        let past = SystemTime::now() - Duration::from_secs(1);
        for a in self.access.values_mut() {
            a.expires_at = a.expires_at.min(past);
        }
    }

    pub fn set_device_status(&mut self, user_code: &str, status: DeviceStatus) -> bool {
        let now = Instant::now();
        match self.devices.values_mut().find(|d| {
            d.user_code.eq_ignore_ascii_case(user_code)
                && d.status == DeviceStatus::Pending
                && d.expires_at > now
        }) {
            Some(d) => {
                d.status = status;
                true
            }
            None => false,
        }
    }

    pub fn pending_user_codes(&self) -> Vec<String> {
        let now = Instant::now();
        self.devices
            .values()
            .filter(|d| d.status == DeviceStatus::Pending && d.expires_at > now)
            .map(|d| d.user_code.clone())
            .collect()
    }

    // ---- answer shapes --------------------------------------------------------------------

    /// A successful token answer in the server's style.
    pub fn token_reply(&self, access: &str, refresh: Option<&str>, scope: &str) -> Reply {
        let secs = self.access_lifetime.as_secs();
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "scope": scope,
        });
        let obj = body.as_object_mut().expect("object");
        if !self.omit_expires_in {
            obj.insert(
                "expires_in".into(),
                if self.expires_in_as_string {
                    Value::String(secs.to_string())
                } else {
                    Value::from(secs)
                },
            );
        }
        if self.style == Style::Microsoft {
            obj.insert("ext_expires_in".into(), Value::from(secs));
        }
        if let Some(rt) = refresh {
            obj.insert("refresh_token".into(), Value::String(rt.into()));
        }
        Reply::json(200, &body)
    }

    /// An RFC 6749 §5.2 error in the server's style (`401` for `invalid_client`).
    pub fn error_reply(&self, error: &str, description: &str) -> Reply {
        let status = if error == "invalid_client" { 401 } else { 400 };
        let body = match self.style {
            Style::Microsoft => {
                let code = aadsts_code(error);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs();
                json!({
                    "error": error,
                    "error_description": format!(
                        "AADSTS{code}: {description} Trace ID: {} Correlation ID: {} Timestamp: {now}",
                        random_hex(16),
                        random_hex(16)
                    ),
                    "error_codes": [code],
                    "timestamp": now.to_string(),
                    "trace_id": random_hex(16),
                    "correlation_id": random_hex(16),
                })
            }
            _ => json!({ "error": error, "error_description": description }),
        };
        let mut reply = Reply::json(status, &body);
        if status == 401 {
            reply
                .headers
                .push(("www-authenticate", "Basic realm=\"test\"".into()));
        }
        reply
    }

    /// The answer for an injected failure (not `Delay`/`Disconnect`, handled by the server loop).
    pub fn failure_reply(&self, failure: &Failure) -> Reply {
        match failure {
            Failure::Status(status) => Reply::html(*status, &format!("{status} Injected failure")),
            Failure::InvalidGrant => {
                self.error_reply("invalid_grant", "Token has been expired or revoked.")
            }
            Failure::Json { status, body } => Reply::json(*status, body),
            Failure::Delay(_) | Failure::Disconnect => Reply::html(500, "unreachable"),
        }
    }
}

/// The AADSTS number Entra ID uses for an error (close enough for tests).
fn aadsts_code(error: &str) -> u32 {
    match error {
        "invalid_grant" => 70000,
        "invalid_client" => 7000215,
        "unauthorized_client" => 700016,
        "invalid_scope" => 70011,
        "authorization_pending" => 70016,
        "authorization_declined" => 70000,
        "expired_token" => 70020,
        "slow_down" => 70016,
        "unsupported_grant_type" => 70003,
        _ => 900144,
    }
}
