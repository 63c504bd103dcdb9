//! Refresh in each style, rotation, revocation.

use mailoauth_harness::{AuthServer, AuthServerOptions, Style};

use super::*;

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
