//! RFC 8628 device flow.

use std::time::Duration;

use mailoauth_harness::authserver::DEFAULT_CLIENT_ID;
use mailoauth_harness::{AuthServer, AuthServerOptions, Style};

use super::*;

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
