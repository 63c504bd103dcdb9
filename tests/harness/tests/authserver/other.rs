//! Client credentials, introspection, revocation, failure injection, expires_in variants.

use std::time::Duration;

use mailoauth_harness::authserver::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use mailoauth_harness::{AuthServer, AuthServerOptions, ClientSpec, Failure};
use serde_json::Value;

use super::*;

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
