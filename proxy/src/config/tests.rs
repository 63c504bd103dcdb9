//! Tests of configuration parsing and its error messages.

use super::*;

fn err(text: &str) -> String {
    Config::parse(text).unwrap_err().to_string()
}

const GOOGLE: &str = r#"
[accounts."me@gmail.com"]
provider = "google"
client_id = "123.apps.googleusercontent.com"
client_secret = "GOCSPX-x"
"#;

#[test]
fn google_preset_defaults() {
    let c = Config::parse(GOOGLE).unwrap();
    let a = c.account("me@gmail.com").unwrap();
    assert_eq!(a.provider, ProviderKind::Google);
    assert_eq!(a.flow, FlowKind::Loopback);
    assert_eq!(
        a.imap,
        Some(Upstream {
            host: "imap.gmail.com".into(),
            port: 993,
            implicit_tls: true
        })
    );
    assert_eq!(a.smtp.as_ref().unwrap().port, 465);
    assert_eq!(
        c.store.kind,
        StoreKind::Keyring,
        "no [store] means keyring, never plaintext"
    );
    let shown = format!("{a:?}");
    assert!(
        !shown.contains("GOCSPX"),
        "client secrets never show in Debug: {shown}"
    );
}

#[test]
fn microsoft_tenant_and_starttls_smtp() {
    let c = Config::parse(
        r#"
[accounts."me@contoso.com"]
provider = "microsoft"
client_id = "abc"
tenant = "organizations"
flow = "device"
"#,
    )
    .unwrap();
    let a = &c.accounts["me@contoso.com"];
    assert_eq!(a.tenant, "organizations");
    assert_eq!(
        a.smtp,
        Some(Upstream {
            host: "smtp.office365.com".into(),
            port: 587,
            implicit_tls: false
        })
    );
    assert_eq!(a.flow, FlowKind::Device);
}

#[test]
fn unknown_keys_name_line_key_and_allowed_ones() {
    let e = err(&format!("{GOOGLE}clientid = \"x\"\n"));
    assert!(e.contains("line 6"), "{e}");
    assert!(e.contains("clientid"), "{e}");
    assert!(e.contains("expected one of"), "{e}");
    let e = err("[store]\nkind = \"gpg\"\n");
    assert!(
        e.contains("line 2")
            && e.contains("command")
            && e.contains("keyring")
            && e.contains("plaintext"),
        "{e}"
    );
    let e = err("[accounts.x]\nprovider = \"yahoo\"\nclient_id = \"c\"\n");
    assert!(e.contains("line 2") && e.contains("`google`"), "{e}");
}

#[test]
fn cross_field_errors_point_at_the_account() {
    let e = err("\n[accounts.x]\nprovider = \"google\"\nclient_id = \"c\"\ntenant = \"common\"\n");
    assert!(
        e.contains("line 2") && e.contains("tenant is only used"),
        "{e}"
    );
    let e = err("[accounts.x]\nprovider = \"generic\"\nclient_id = \"c\"\n");
    assert!(e.contains("issuer") && e.contains("token_url"), "{e}");
    let e = err(
        "[accounts.x]\nprovider = \"google\"\nclient_id = \"c\"\nflow = \"client_credentials\"\n",
    );
    assert!(e.contains("client_secret"), "{e}");
    let e = err(
        "[accounts.x]\nprovider = \"google\"\nclient_id = \"c\"\nclient_secret = \"a\"\nclient_secret_command = [\"pass\"]\n",
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn http_endpoints_only_on_loopback() {
    let ok = "[accounts.x]\nprovider = \"generic\"\nclient_id = \"c\"\ntoken_url = \"http://127.0.0.1:9/token\"\n";
    Config::parse(ok).unwrap();
    let e = err(
        "[accounts.x]\nprovider = \"generic\"\nclient_id = \"c\"\ntoken_url = \"http://auth.example.com/token\"\n",
    );
    assert!(e.contains("token_url") && e.contains("https"), "{e}");
}

#[test]
fn upstream_urls() {
    let parse = |k: &str, v: &str| {
        Config::parse(&format!(
            "[accounts.x]\nprovider = \"generic\"\nclient_id = \"c\"\ntoken_url = \"https://a/t\"\n{k} = \"{v}\"\n"
        ))
    };
    let c = parse("imap", "imap://127.0.0.1:1143").unwrap();
    assert_eq!(
        c.accounts["x"].imap,
        Some(Upstream {
            host: "127.0.0.1".into(),
            port: 1143,
            implicit_tls: false
        })
    );
    let c = parse("pop3", "pop3s://[::1]").unwrap();
    assert_eq!(
        c.accounts["x"].pop3,
        Some(Upstream {
            host: "::1".into(),
            port: 995,
            implicit_tls: true
        })
    );
    let e = parse("smtp", "imaps://x").unwrap_err().to_string();
    assert!(e.contains("smtps://host[:port]"), "{e}");
    assert!(parse("imap", "imaps://x/INBOX").is_err());
}

#[test]
fn command_store_needs_both_pipes() {
    let e = err("[store]\nkind = \"command\"\nencrypt = [\"gpg\"]\n");
    assert!(e.contains("decrypt"), "{e}");
    let c = Config::parse("[store]\nkind = \"command\"\nencrypt = [\"age\", \"-r\", \"x\"]\ndecrypt = [\"age\", \"-d\"]\n").unwrap();
    assert!(matches!(c.store.kind, StoreKind::Command { .. }));
    let e = err("[store]\nkind = \"plaintext\"\nencrypt = [\"x\"]\n");
    assert!(e.contains("only used with kind"), "{e}");
}

#[test]
fn missing_account_lists_known_ones() {
    let c = Config::parse(GOOGLE).unwrap();
    let e = c.account("other").unwrap_err().to_string();
    assert!(e.contains("me@gmail.com"), "{e}");
}

#[test]
fn the_shipped_example_parses() {
    let c = Config::parse(include_str!("../../../config/config.example.toml")).unwrap();
    assert_eq!(c.accounts.len(), 3);
    assert!(matches!(c.store.kind, StoreKind::Command { .. }));
    assert_eq!(c.accounts["me@contoso.com"].flow, FlowKind::Device);
}
