//! Authorization code flow with PKCE, and /authorize validation.

use mailoauth_harness::authserver::DEFAULT_CLIENT_ID;
use mailoauth_harness::{AuthServer, AuthServerOptions, Style, browser};
use url::Url;

use super::*;

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
