//! The Refresher inside one process (the daemon's situation): many concurrent callers, one
//! refresh; a rejected token is replaced once; against the harness's test authorization server.

use std::sync::Arc;
use std::time::Duration;

use mailoauth_harness::{AuthServer, AuthServerOptions, Style, TempDir};
use secrecy::{ExposeSecret, SecretString};
use tokenlib::provider::{EndpointSource, Endpoints, ProviderKind};
use tokenlib::store::Plaintext;
use tokenlib::token::now_unix;
use tokenlib::{Account, FlowKind, Grant, Refresher, SecretSource, Store, TokenSet};
use url::Url;

const USER: &str = "alice@example.test";

fn account(server: &AuthServer) -> Account {
    Account {
        name: USER.into(),
        provider: ProviderKind::Generic,
        endpoints: EndpointSource::Known(Endpoints {
            authorize: None,
            token: Url::parse(&server.token_endpoint()).unwrap(),
            device: None,
        }),
        client_id: "test-client".into(),
        client_secret: Some(SecretSource::Value(SecretString::from("test-secret"))),
        client_auth_basic: false,
        scopes: vec!["mail".into()],
        auth_params: vec![],
        flow: FlowKind::Loopback,
        redirect_uri: None,
        login_hint: None,
    }
}

/// A refresher whose store holds a grant from `server` with an access token that is already
/// inside the refresh margin.
async fn setup(server: &AuthServer, dir: &TempDir) -> (Arc<Refresher>, Account) {
    let issued = server.issue_tokens(USER, "mail");
    let refresher = Arc::new(Refresher::new(Store::new(
        dir.path().join("tokens"),
        Arc::new(Plaintext),
    )));
    let account = account(server);
    let stale = TokenSet {
        access_token: SecretString::from(issued.access_token),
        expires_at: now_unix() + 60,
        refresh_token: Some(SecretString::from(issued.refresh_token)),
        refresh_issued_at: Some(now_unix()),
        refresh_expires_at: None,
        scope: None,
        grant: Grant::User,
    };
    refresher
        .store_authorization(&account, stale)
        .await
        .unwrap();
    (refresher, account)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_callers_one_refresh() {
    let server = AuthServer::start(AuthServerOptions::new(Style::Microsoft));
    // A slow token endpoint widens the window in which callers pile up.
    server.fail_next_token_requests(
        1,
        mailoauth_harness::Failure::Delay(Duration::from_millis(300)),
    );
    let dir = TempDir::new("mo-refresher").unwrap();
    let (refresher, account) = setup(&server, &dir).await;
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let (r, a) = (refresher.clone(), account.clone());
            tokio::spawn(async move {
                r.access_token(&a)
                    .await
                    .map(|t| t.expose_secret().to_string())
            })
        })
        .collect();
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.unwrap().unwrap());
    }
    assert_eq!(
        server.refresh_requests(),
        1,
        "one refresh for fifty callers"
    );
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    assert!(server.is_access_token_live(&tokens[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_token_is_replaced_once() {
    let server = AuthServer::start(AuthServerOptions::default());
    let dir = TempDir::new("mo-refresher").unwrap();
    let (refresher, account) = setup(&server, &dir).await;
    let first = refresher.access_token(&account).await.unwrap();
    assert_eq!(server.refresh_requests(), 1);
    // The upstream rejects `first` (say, revoked server-side): two logins report it at once.
    let (a, b) = tokio::join!(
        refresher.after_rejection(&account, &first),
        refresher.after_rejection(&account, &first)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.expose_secret(), first.expose_secret());
    assert_eq!(
        a.expose_secret(),
        b.expose_secret(),
        "the second caller got the first caller's refresh"
    );
    assert_eq!(server.refresh_requests(), 2, "exactly one more refresh");
    // A fresh token that was not rejected is served from memory.
    let c = refresher.access_token(&account).await.unwrap();
    assert_eq!(c.expose_secret(), a.expose_secret());
    assert_eq!(server.refresh_requests(), 2);
}
