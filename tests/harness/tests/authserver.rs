//! The test authorization server's flows, driven with a plain HTTP client.

use std::time::Duration;

use mailoauth_harness::authserver::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use mailoauth_harness::{AuthServer, AuthServerOptions, ClientSpec, Failure, Style, browser};
use serde_json::Value;
use url::Url;

/// RFC 7636 Appendix B.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT: &str = "http://127.0.0.1:45678/callback";
const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn post(server: &AuthServer, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let response = http()
        .post(format!("{}{path}", server.base_url()))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn token(server: &AuthServer, form: &[(&str, &str)]) -> (u16, Value) {
    let mut full = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    full.extend_from_slice(form);
    post(server, "/token", &full).await
}

fn authorize_url(server: &AuthServer, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&server.authorization_endpoint()).unwrap();
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("response_type", "code");
        q.append_pair("client_id", DEFAULT_CLIENT_ID);
        q.append_pair("redirect_uri", REDIRECT);
        if !extra.iter().any(|(k, _)| *k == "scope") {
            q.append_pair("scope", "mail offline_access");
        }
        for (k, v) in extra {
            q.append_pair(k, v);
        }
    }
    url.to_string()
}

/// GETs the authorization URL, returns (status, query of the Location).
async fn authorize(url: &str) -> (u16, Vec<(String, String)>) {
    let response = http().get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let query = response
        .headers()
        .get("location")
        .map(|l| {
            let l = Url::parse(l.to_str().unwrap()).unwrap();
            assert!(l.as_str().starts_with(REDIRECT), "{l}");
            l.query_pairs().into_owned().collect()
        })
        .unwrap_or_default();
    (status, query)
}

fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

async fn code_for(server: &AuthServer, extra: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    all.extend_from_slice(extra);
    let (status, q) = authorize(&authorize_url(server, &all)).await;
    assert_eq!(status, 302);
    param(&q, "code").expect("a code").to_string()
}

async fn introspect(server: &AuthServer, token: &str) -> Value {
    let response = http()
        .post(server.introspection_endpoint())
        .basic_auth("dovecot", Some("dovecot-secret"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn discovery_lists_every_endpoint() {
    let server = AuthServer::start(AuthServerOptions::default());
    let doc: Value = http()
        .get(server.discovery_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = server.base_url();
    assert_eq!(doc["issuer"], base);
    assert_eq!(doc["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(doc["token_endpoint"], format!("{base}/token"));
    assert_eq!(
        doc["device_authorization_endpoint"],
        format!("{base}/device")
    );
    assert_eq!(doc["introspection_endpoint"], format!("{base}/introspect"));
    assert_eq!(doc["revocation_endpoint"], format!("{base}/revoke"));
}

#[tokio::test]
async fn code_flow_with_pkce_rfc7636_vector() {
    let server = AuthServer::start(AuthServerOptions::default());
    let url = authorize_url(
        &server,
        &[
            ("state", "st&te=1 2"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
            ("login_hint", "bob@example.test"),
            ("access_type", "offline"),
        ],
    );
    let (status, q) = authorize(&url).await;
    assert_eq!(status, 302);
    assert_eq!(param(&q, "state"), Some("st&te=1 2"));
    let code = param(&q, "code").unwrap().to_string();
    let recorded = &server.authorize_queries()[0];
    assert!(recorded.contains(&("code_challenge".into(), CHALLENGE.into())));
    assert!(recorded.contains(&("access_type".into(), "offline".into())));

    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    let (status, body) = token(&server, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "mail offline_access");
    let access = body["access_token"].as_str().unwrap();
    assert!(access.starts_with("at-") && access.len() >= 100);
    assert!(body["refresh_token"].as_str().unwrap().starts_with("rt-"));
    let info = introspect(&server, access).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["username"], "bob@example.test");
    assert_eq!(server.token_requests("authorization_code"), 1);

    // Single use.
    let (status, body) = token(&server, &form).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn wrong_verifier_wrong_redirect_and_missing_secret_are_refused() {
    let server = AuthServer::start(AuthServerOptions::default());
    let code = code_for(&server, &[]).await;
    let wrong = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX";
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", wrong),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_grant"))
    );

    let code = code_for(&server, &[]).await;
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:1/other"),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");

    let code = code_for(&server, &[]).await;
    let (status, body) = post(
        &server,
        "/token",
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn authorize_validation_and_denial() {
    let server = AuthServer::start(AuthServerOptions::default());
    // No PKCE for a client that requires it.
    let (status, q) = authorize(&authorize_url(&server, &[("state", "s1")])).await;
    assert_eq!(status, 302);
    assert_eq!(param(&q, "error"), Some("invalid_request"));
    assert_eq!(param(&q, "state"), Some("s1"));
    // Unknown client: an error page, no redirect.
    let url = authorize_url(&server, &[]).replace("client_id=test-client", "client_id=nobody");
    let response = http().get(&url).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 400);
    assert!(response.headers().get("location").is_none());
    // Non-loopback http redirect: an error page.
    let url = authorize_url(&server, &[]).replace("127.0.0.1%3A45678", "evil.example");
    assert_eq!(
        http().get(&url).send().await.unwrap().status().as_u16(),
        400
    );
    // Denied.
    server.deny_next_authorization();
    let (_, q) = authorize(&authorize_url(
        &server,
        &[
            ("state", "s2"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    ))
    .await;
    assert_eq!(param(&q, "error"), Some("access_denied"));
    assert_eq!(param(&q, "state"), Some("s2"));
    assert!(param(&q, "code").is_none());
    // Without state, no state comes back.
    let (_, q) = authorize(&authorize_url(
        &server,
        &[
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    ))
    .await;
    assert!(param(&q, "code").is_some() && param(&q, "state").is_none());
    assert_eq!(server.authorize_queries().len(), 5);
}

#[test]
fn browser_helper_plays_the_browser() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Google));
    let url = authorize_url(
        &server,
        &[
            ("state", "abc"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ],
    );
    let location = browser::authorize(&url).unwrap();
    let location = Url::parse(&location).unwrap();
    let q: Vec<(String, String)> = location.query_pairs().into_owned().collect();
    assert_eq!(param(&q, "state"), Some("abc"));
    // Google's codes contain a slash.
    assert!(param(&q, "code").unwrap().starts_with("4/0A"));
    assert_eq!(
        browser::get(&format!("{}/device", server.base_url()))
            .unwrap()
            .status,
        200
    );
}

#[tokio::test]
async fn generic_refresh_rotates_and_revocation_kills() {
    let server = AuthServer::start(AuthServerOptions::default());
    let issued = server.issue_tokens("alice@example.test", "mail");
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &issued.refresh_token),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let new_rt = body["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new_rt, issued.refresh_token);
    assert!(!server.is_refresh_token_live(&issued.refresh_token));
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &issued.refresh_token),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(server.refresh_requests(), 2);

    // Without rotation the answer has no refresh_token and the old one keeps working.
    server.set_rotation(false);
    for _ in 0..2 {
        let (status, body) = token(
            &server,
            &[("grant_type", "refresh_token"), ("refresh_token", &new_rt)],
        )
        .await;
        assert_eq!(status, 200);
        assert!(body.get("refresh_token").is_none());
    }

    server.revoke_user("alice@example.test");
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &new_rt)],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        introspect(&server, &issued.access_token).await["active"],
        false
    );
    // A grant minted later works again.
    let later = server.issue_tokens("alice@example.test", "mail");
    assert_eq!(
        introspect(&server, &later.access_token).await["active"],
        true
    );
}

#[tokio::test]
async fn google_style_refresh() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Google));
    let issued = server.issue_tokens("alice@example.test", "https://mail.google.com/");
    assert_eq!(issued.expires_in, 3599);
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &issued.refresh_token),
        ],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 3599);
    assert!(body.get("refresh_token").is_none());
    assert!(server.is_refresh_token_live(&issued.refresh_token));
    server.revoke_refresh_token(&issued.refresh_token);
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", &issued.refresh_token),
        ],
    )
    .await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(
        body["error_description"],
        "Token has been expired or revoked."
    );
}

#[tokio::test]
async fn microsoft_style_rotation_and_aadsts_errors() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    let code = code_for(&server, &[]).await;
    let (status, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["ext_expires_in"].is_u64() && body["expires_in"].is_u64());
    assert!(body["access_token"].as_str().unwrap().len() > 1000);
    let rt = body["refresh_token"].as_str().unwrap().to_string();
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_ne!(body["refresh_token"].as_str().unwrap(), rt);
    let (status, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS70000: ")
    );

    // No offline_access, no refresh token.
    let code = code_for(
        &server,
        &[("scope", "https://outlook.office.com/IMAP.AccessAsUser.All")],
    )
    .await;
    let (_, body) = token(
        &server,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ],
    )
    .await;
    assert!(body.get("refresh_token").is_none(), "{body}");
}

#[tokio::test]
async fn device_flow_pending_slow_down_approve() {
    let server = AuthServer::start(AuthServerOptions {
        device_interval: Duration::from_secs(1),
        ..Default::default()
    });
    let (status, body) = post(
        &server,
        "/device",
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("scope", "mail offline_access"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["interval"], 1);
    assert_eq!(
        body["verification_uri"],
        format!("{}/device", server.base_url())
    );
    let user_code = body["user_code"].as_str().unwrap().to_string();
    assert_eq!(user_code.len(), 9);
    assert!(
        body["verification_uri_complete"]
            .as_str()
            .unwrap()
            .ends_with(&user_code)
    );
    assert_eq!(server.pending_device_codes(), vec![user_code.clone()]);
    let dc = body["device_code"].as_str().unwrap().to_string();
    let poll = [("grant_type", DEVICE), ("device_code", dc.as_str())];

    let (_, body) = token(&server, &poll).await;
    assert_eq!(body["error"], "authorization_pending");
    let (_, body) = token(&server, &poll).await;
    assert_eq!(body["error"], "slow_down");
    assert!(server.approve_device(&user_code, "bob@example.test"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (status, body) = token(&server, &poll).await;
    assert_eq!(status, 200, "{body}");
    let access = body["access_token"].as_str().unwrap();
    assert_eq!(
        introspect(&server, access).await["username"],
        "bob@example.test"
    );
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, body) = token(&server, &poll).await;
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(server.token_requests(DEVICE), 4);
}

#[tokio::test]
async fn device_flow_denial_expiry_and_google_scope() {
    let mut options = AuthServerOptions::new(Style::Microsoft);
    options.device_interval = Duration::from_secs(1);
    options.device_code_lifetime = Duration::from_secs(1);
    let server = AuthServer::start(options);
    let (_, body) = post(
        &server,
        "/device",
        &[("client_id", DEFAULT_CLIENT_ID), ("scope", "x")],
    )
    .await;
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("To sign in, use a web browser")
    );
    assert!(server.deny_device(body["user_code"].as_str().unwrap()));
    let dc = body["device_code"].as_str().unwrap().to_string();
    let (_, body) = token(&server, &[("grant_type", DEVICE), ("device_code", &dc)]).await;
    assert_eq!(body["error"], "authorization_declined");

    let (_, body) = post(&server, "/device", &[("client_id", DEFAULT_CLIENT_ID)]).await;
    let dc = body["device_code"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (_, body) = token(&server, &[("grant_type", DEVICE), ("device_code", &dc)]).await;
    assert_eq!(body["error"], "expired_token");

    let google = AuthServer::start(AuthServerOptions::new(Style::Google));
    let (status, body) = post(
        &google,
        "/device",
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("scope", "email https://mail.google.com/"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    let (_, body) = post(
        &google,
        "/device",
        &[("client_id", DEFAULT_CLIENT_ID), ("scope", "email")],
    )
    .await;
    assert!(body["verification_url"].is_string() && body.get("verification_uri").is_none());
}

#[tokio::test]
async fn client_credentials_and_basic_auth() {
    let server = AuthServer::start(AuthServerOptions::default());
    server.register_client(ClientSpec::public("public-app"));
    let response = http()
        .post(server.token_endpoint())
        .basic_auth(DEFAULT_CLIENT_ID, Some(DEFAULT_CLIENT_SECRET))
        .form(&[("grant_type", "client_credentials"), ("scope", "mail")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body.get("refresh_token").is_none());
    assert_eq!(
        server.requests().last().unwrap().basic_client_id.as_deref(),
        Some(DEFAULT_CLIENT_ID)
    );

    let (status, body) = post(
        &server,
        "/token",
        &[
            ("client_id", "public-app"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unauthorized_client"))
    );
    let (status, body) = post(
        &server,
        "/token",
        &[
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", "wrong"),
            ("grant_type", "client_credentials"),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
    assert_eq!(server.token_requests("client_credentials"), 3);
}

#[tokio::test]
async fn introspection_needs_credentials_and_sees_expiry() {
    let server = AuthServer::start(AuthServerOptions::default());
    let issued = server.issue_tokens("alice@example.test", "mail");
    let response = http()
        .post(server.introspection_endpoint())
        .basic_auth("dovecot", Some("wrong"))
        .form(&[("token", issued.access_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let info = introspect(&server, &issued.access_token).await;
    assert_eq!(info["active"], true);
    assert_eq!(info["scope"], "mail");
    assert!(info["exp"].as_u64().unwrap() > 1_700_000_000);
    assert_eq!(introspect(&server, "at-bogus").await["active"], false);
    server.expire_access_tokens();
    assert_eq!(
        introspect(&server, &issued.access_token).await["active"],
        false
    );
    assert_eq!(server.introspections(), 4);
    // Revocation endpoint: a refresh token takes its grant's access tokens along.
    let other = server.issue_tokens("bob@example.test", "mail");
    let (status, _) = post(
        &server,
        "/revoke",
        &[("token", other.refresh_token.as_str())],
    )
    .await;
    assert_eq!(status, 200);
    assert!(!server.is_refresh_token_live(&other.refresh_token));
    assert!(!server.is_access_token_live(&other.access_token));
}

#[tokio::test]
async fn failure_injection() {
    let server = AuthServer::start(AuthServerOptions::default());
    let issued = server.issue_tokens("alice@example.test", "mail");
    let refresh = [
        ("grant_type", "refresh_token"),
        ("refresh_token", issued.refresh_token.as_str()),
    ];
    server.fail_next_token_requests(2, Failure::Status(503));
    server.fail_next_token_requests(
        1,
        Failure::Json {
            status: 429,
            body: serde_json::json!({"error": "temporarily_unavailable"}),
        },
    );
    server.fail_next_token_requests(1, Failure::InvalidGrant);
    server.fail_next_token_requests(1, Failure::Disconnect);
    server.fail_next_token_requests(1, Failure::Delay(Duration::from_millis(300)));
    for _ in 0..2 {
        let (status, body) = token(&server, &refresh).await;
        assert_eq!(status, 503);
        assert!(body.as_str().unwrap().contains("<html>"));
    }
    let (status, body) = token(&server, &refresh).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("temporarily_unavailable"))
    );
    let (_, body) = token(&server, &refresh).await;
    assert_eq!(body["error"], "invalid_grant");
    let sent = http()
        .post(server.token_endpoint())
        .form(&[
            ("client_id", DEFAULT_CLIENT_ID),
            ("client_secret", DEFAULT_CLIENT_SECRET),
            refresh[0],
            refresh[1],
        ])
        .send()
        .await;
    assert!(
        sent.is_err(),
        "an injected disconnect must fail the request"
    );
    let started = std::time::Instant::now();
    let (status, _) = token(&server, &refresh).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(server.refresh_requests(), 6);
    // Debug output never shows whole tokens.
    let debug = format!("{issued:?} {:?}", server.requests());
    assert!(!debug.contains(&issued.refresh_token) && !debug.contains(&issued.access_token));
}

#[tokio::test]
async fn expires_in_variants() {
    let server = AuthServer::start(AuthServerOptions {
        expires_in_as_string: true,
        access_lifetime: Some(Duration::from_secs(3599)),
        ..Default::default()
    });
    let rt = server
        .issue_tokens("alice@example.test", "mail")
        .refresh_token;
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert_eq!(body["expires_in"], "3599");

    let server = AuthServer::start(AuthServerOptions {
        omit_expires_in: true,
        ..Default::default()
    });
    let rt = server
        .issue_tokens("alice@example.test", "mail")
        .refresh_token;
    let (_, body) = token(
        &server,
        &[("grant_type", "refresh_token"), ("refresh_token", &rt)],
    )
    .await;
    assert!(body.get("expires_in").is_none() && body["access_token"].is_string());
}
