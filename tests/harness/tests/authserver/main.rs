//! The test authorization server's flows, driven with a plain HTTP client (reqwest).

mod code;
mod device;
mod other;
mod refresh;

use mailoauth_harness::AuthServer;
use mailoauth_harness::authserver::{DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use serde_json::Value;
use url::Url;

/// RFC 7636 Appendix B.
pub const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
pub const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
pub const REDIRECT: &str = "http://127.0.0.1:45678/callback";
pub const DEVICE: &str = "urn:ietf:params:oauth:grant-type:device_code";

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub async fn post(server: &AuthServer, path: &str, form: &[(&str, &str)]) -> (u16, Value) {
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

pub async fn token(server: &AuthServer, form: &[(&str, &str)]) -> (u16, Value) {
    let mut full = vec![
        ("client_id", DEFAULT_CLIENT_ID),
        ("client_secret", DEFAULT_CLIENT_SECRET),
    ];
    full.extend_from_slice(form);
    post(server, "/token", &full).await
}

pub fn authorize_url(server: &AuthServer, extra: &[(&str, &str)]) -> String {
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
pub async fn authorize(url: &str) -> (u16, Vec<(String, String)>) {
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

pub fn param<'a>(q: &'a [(String, String)], k: &str) -> Option<&'a str> {
    q.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str())
}

pub async fn code_for(server: &AuthServer, extra: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    all.extend_from_slice(extra);
    let (status, q) = authorize(&authorize_url(server, &all)).await;
    assert_eq!(status, 302);
    param(&q, "code").expect("a code").to_string()
}

pub async fn introspect(server: &AuthServer, token: &str) -> Value {
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
