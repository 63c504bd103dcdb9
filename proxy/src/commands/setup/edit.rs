//! Writing the answers into the configuration text with `toml_edit`, which keeps everything it
//! does not touch — the user's comments, blank lines, key order, odd spacing — byte for byte.
//! New tables are placed after their siblings (a new account after the last account); a
//! replaced account keeps its place and the comments above it.

use secrecy::ExposeSecret;
use tokenlib::FlowKind;
use tokenlib::provider::ProviderKind;
use toml_edit::{Array, DocumentMut, Item, Table, value};
use zeroize::Zeroizing;

use super::answers::{Answers, Endpoints, Secret, StoreChoice};

/// Why the answers could not be written into the text.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("the configuration is not valid TOML, so setup cannot edit it safely: {0}")]
    Parse(#[from] toml_edit::TomlError),
    #[error(
        "an account {0:?} is configured already; setup replaces it only when you confirm (or pass --replace)"
    )]
    Exists(String),
    #[error(
        "`{0}` in the configuration is not a [table] (an inline table or a value?); edit the file by hand"
    )]
    NotATable(String),
}

/// The first lines of a configuration `setup` creates.
const NEW_FILE: &str = "# mailoauth configuration, written by `mailoauth setup`. Every key is explained in the\n# README (\"Configuration reference\"); comments you add here are kept by later setups.\n";

/// Returns `text` (the current file, empty if there is none) with the account of `answers`, and
/// the `[store]` and `[proxy.*]` tables it needs, added. The result may hold the client secret.
pub fn add_account(text: &str, answers: &Answers) -> Result<Zeroizing<String>, EditError> {
    let mut doc: DocumentMut = text.parse()?;
    let fresh = text.trim().is_empty();

    if let Some(store) = store_table(&answers.store) {
        doc.insert("store", Item::Table(store));
    }
    if answers.local_password.is_some() {
        let proxy = child_table(doc.as_table_mut(), "proxy")?;
        for (proto, _) in &answers.servers {
            if !proxy.contains_key(proto.key()) {
                let mut listener = Table::new();
                listener["listen"] = value(format!("127.0.0.1:{}", proto.local_port()));
                listener["tls"] = value("none");
                listener.decor_mut().set_prefix(
                    "\n# The local proxy (mailoauth serve), added by mailoauth setup.\n",
                );
                proxy.insert(proto.key(), Item::Table(listener));
            }
        }
    }

    let accounts = child_table(doc.as_table_mut(), "accounts")?;
    let mut table = account_table(answers);
    match accounts.get(&answers.account) {
        Some(_) if !answers.replace => return Err(EditError::Exists(answers.account.clone())),
        Some(Item::Table(old)) => {
            // Same place in the file, same comments above it.
            table.set_position(old.position());
            *table.decor_mut() = old.decor().clone();
        }
        Some(_) => {
            return Err(EditError::NotATable(format!(
                "accounts.{}",
                answers.account
            )));
        }
        None => {
            table.decor_mut().set_prefix(format!(
                "\n# {}: added by mailoauth setup.\n",
                answers.account
            ));
        }
    }
    accounts.insert(&answers.account, Item::Table(table));

    let mut out = doc.to_string();
    if fresh {
        out = format!("{NEW_FILE}\n{}", out.trim_start_matches('\n'));
    }
    Ok(Zeroizing::new(out))
}

/// The table `key` of `parent`, created (implicit: no header of its own) when missing.
fn child_table<'a>(parent: &'a mut Table, key: &str) -> Result<&'a mut Table, EditError> {
    if !parent.contains_key(key) {
        let mut t = Table::new();
        t.set_implicit(true);
        parent.insert(key, Item::Table(t));
    }
    parent
        .get_mut(key)
        .and_then(Item::as_table_mut)
        .ok_or_else(|| EditError::NotATable(key.to_string()))
}

fn strings(items: &[String]) -> Item {
    value(items.iter().map(String::as_str).collect::<Array>())
}

fn store_table(choice: &StoreChoice) -> Option<Table> {
    let mut t = Table::new();
    let kind = match choice {
        StoreChoice::Keep => return None,
        StoreChoice::Keyring => "keyring",
        StoreChoice::Password => "password",
        StoreChoice::Plaintext => "plaintext",
        StoreChoice::Command { .. } => "command",
    };
    t["kind"] = value(kind);
    if let StoreChoice::Command { encrypt, decrypt } = choice {
        t["encrypt"] = strings(encrypt);
        t["decrypt"] = strings(decrypt);
    }
    t.decor_mut().set_prefix(
        "\n# How token records are protected at rest (README: \"Token store\"); added by mailoauth setup.\n",
    );
    Some(t)
}

fn account_table(a: &Answers) -> Table {
    let mut t = Table::new();
    t["provider"] = value(match a.provider {
        ProviderKind::Google => "google",
        ProviderKind::Microsoft => "microsoft",
        ProviderKind::Generic => "generic",
    });
    t["client_id"] = value(&a.client_id);
    match &a.secret {
        Secret::None => {}
        Secret::Value(s) => t["client_secret"] = value(s.expose_secret()),
        Secret::Command(argv) => t["client_secret_command"] = strings(argv),
    }
    if let Some(tenant) = &a.tenant {
        t["tenant"] = value(tenant);
    }
    match &a.endpoints {
        None => {}
        Some(Endpoints::Issuer(issuer)) => t["issuer"] = value(issuer),
        Some(Endpoints::Explicit {
            authorize,
            token,
            device,
        }) => {
            if let Some(u) = authorize {
                t["authorize_url"] = value(u);
            }
            t["token_url"] = value(token);
            if let Some(u) = device {
                t["device_url"] = value(u);
            }
        }
    }
    if let Some(scopes) = &a.scopes {
        t["scopes"] = strings(scopes);
    }
    t["flow"] = value(match a.flow {
        FlowKind::Loopback => "loopback",
        FlowKind::Paste => "paste",
        FlowKind::Device => "device",
        FlowKind::ClientCredentials => "client_credentials",
    });
    for (proto, url) in &a.servers {
        t[proto.key()] = value(url);
    }
    if let Some(ca) = &a.upstream_ca {
        t["upstream_ca"] = value(ca.display().to_string());
    }
    t
}

#[cfg(test)]
mod tests {
    use super::super::answers::Proto;
    use super::*;
    use crate::config::{Config, StoreKind};
    use secrecy::SecretString;

    fn answers(name: &str) -> Answers {
        Answers {
            account: name.into(),
            provider: ProviderKind::Google,
            client_id: "1234.apps.googleusercontent.com".into(),
            secret: Secret::Value(SecretString::from("GOCSPX-secret")),
            tenant: None,
            endpoints: None,
            scopes: None,
            servers: vec![
                (Proto::Imap, "imaps://imap.gmail.com:993".into()),
                (Proto::Smtp, "smtps://smtp.gmail.com:465".into()),
            ],
            flow: FlowKind::Paste,
            store: StoreChoice::Keep,
            local_password: None,
            replace: false,
            upstream_ca: None,
        }
    }

    /// A hand-written file: comments everywhere, odd spacing, a key order of its own, no final
    /// newline after a trailing comment.
    const EXISTING: &str = "# my mail setup\n\n[store]   # kept\nkind =    \"command\"\nencrypt = [ \"gpg\",\"-e\" ,\"-r\", \"me\" ]\ndecrypt=[\"gpg\",\"-d\"]\n\n# work account\n[accounts.\"old@example.org\"]\nclient_id = \"x\"     # from IT\nprovider = 'generic'\ntoken_url = \"https://auth.example.org/t\"\n\n\n# the proxy\n[proxy.imap]\nlisten = \"127.0.0.1:2143\"   # not the default port\n# end of file";

    /// `edited` is `original` with one piece inserted: every original byte kept, in order.
    fn inserted_piece<'a>(original: &str, edited: &'a str) -> &'a str {
        let prefix = original
            .bytes()
            .zip(edited.bytes())
            .take_while(|(a, b)| a == b)
            .count();
        let suffix = original[prefix..]
            .bytes()
            .rev()
            .zip(edited[prefix..].bytes().rev())
            .take_while(|(a, b)| a == b)
            .count();
        assert_eq!(
            prefix + suffix,
            original.len(),
            "the original text was changed, not just extended:\n{edited}"
        );
        &edited[prefix..edited.len() - suffix]
    }

    #[test]
    fn an_account_is_added_and_everything_else_kept_byte_for_byte() {
        let out = add_account(EXISTING, &answers("me@gmail.com")).unwrap();
        let piece = inserted_piece(EXISTING, &out);
        assert!(piece.contains("[accounts.\"me@gmail.com\"]"), "{piece}");
        assert!(
            piece.contains("client_secret = \"GOCSPX-secret\""),
            "{piece}"
        );
        // After the last account, before the proxy's comment.
        let at = out.find("[accounts.\"me@gmail.com\"]").unwrap();
        assert!(at > out.find("old@example.org").unwrap());
        assert!(at < out.find("# the proxy").unwrap());
        let config = Config::parse(&out).unwrap();
        let me = &config.accounts["me@gmail.com"];
        assert_eq!(me.flow, FlowKind::Paste);
        assert_eq!(me.smtp.as_ref().unwrap().port, 465);
        assert!(config.accounts.contains_key("old@example.org"));
    }

    #[test]
    fn a_second_account_follows_the_first_and_the_same_name_is_refused() {
        let first = add_account(EXISTING, &answers("me@gmail.com")).unwrap();
        let mut second = answers("you@gmail.com");
        second.secret = Secret::Command(vec!["pass".into(), "show".into(), "g".into()]);
        let both = add_account(&first, &second).unwrap();
        let piece = inserted_piece(&first, &both);
        assert!(
            piece.contains("client_secret_command = [\"pass\", \"show\", \"g\"]"),
            "{piece}"
        );
        assert!(
            both.find("you@gmail.com").unwrap() > both.find("[accounts.\"me@gmail.com\"]").unwrap()
        );
        assert_eq!(Config::parse(&both).unwrap().accounts.len(), 3);

        match add_account(&both, &answers("me@gmail.com")) {
            Err(EditError::Exists(name)) => assert_eq!(name, "me@gmail.com"),
            other => panic!("{other:?}"),
        }
        match add_account(&both, &answers("old@example.org")) {
            Err(EditError::Exists(_)) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_confirmed_replacement_keeps_the_place_and_the_comment_above() {
        let mut a = answers("old@example.org");
        a.replace = true;
        let out = add_account(EXISTING, &a).unwrap();
        assert!(
            out.starts_with("# my mail setup\n\n[store]   # kept\n"),
            "{}",
            *out
        );
        assert!(
            out.contains("# work account\n[accounts.\"old@example.org\"]\nprovider = \"google\""),
            "{}",
            *out
        );
        assert!(out.contains("\n# the proxy\n[proxy.imap]\nlisten = \"127.0.0.1:2143\"   # not the default port\n"), "{}", *out);
        assert!(!out.contains("from IT"));
        let config = Config::parse(&out).unwrap();
        assert_eq!(config.accounts.len(), 1);
    }

    #[test]
    fn store_and_listeners_are_added_only_where_missing() {
        let mut a = answers("me@gmail.com");
        a.local_password = Some(SecretString::from("local"));
        // [proxy.imap] exists (port 2143): only [proxy.smtp] is added; [store] is kept.
        let out = add_account(EXISTING, &a).unwrap();
        // Two insertions (the account, the listener): every original line kept, in order.
        let mut lines = out.lines();
        for line in EXISTING.lines() {
            assert!(lines.any(|l| l == line), "{line:?} lost:\n{}", *out);
        }
        let config = Config::parse(&out).unwrap();
        assert_eq!(config.proxy.imap.unwrap().listen[0].port(), 2143);
        assert_eq!(
            config.proxy.smtp.unwrap().listen[0].to_string(),
            "127.0.0.1:1587"
        );
        assert!(config.proxy.pop3.is_none());

        // A new file gets a header, the store, the listeners and the account.
        a.store = StoreChoice::Command {
            encrypt: vec!["cat".into()],
            decrypt: vec!["cat".into()],
        };
        let out = add_account("", &a).unwrap();
        assert!(out.starts_with("# mailoauth configuration"), "{}", *out);
        let config = Config::parse(&out).unwrap();
        assert!(matches!(config.store.kind, StoreKind::Command { .. }));
        assert_eq!(
            config.proxy.imap.unwrap().listen[0].to_string(),
            "127.0.0.1:1143"
        );
        assert!(config.proxy.smtp.is_some());
    }

    #[test]
    fn broken_or_odd_files_are_not_touched() {
        assert!(matches!(
            add_account("[accounts\nx = ", &answers("a@b.c")),
            Err(EditError::Parse(_))
        ));
        assert!(matches!(
            add_account("accounts = 3\n", &answers("a@b.c")),
            Err(EditError::NotATable(_))
        ));
    }
}
