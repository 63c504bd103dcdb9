//! Which of the upstream's CAPA lines (RFC 2449) the proxy may repeat before login.
//!
//! The allow-list: `TOP`, `UIDL`, `PIPELINING`, `EXPIRE n|NEVER [USER]`, `LOGIN-DELAY n [USER]`.
//! They describe the maildrop session after login, which is the upstream's, so they are only
//! true if the upstream has them. Everything else stays out:
//! - `USER`, `SASL …`, `STLS`, `RESP-CODES`, `AUTH-RESP-CODE`: the proxy's own login, which it
//!   advertises itself (never the upstream's XOAUTH2/OAUTHBEARER or its STLS);
//! - `IMPLEMENTATION …`: the proxy answers before login, not the upstream's software;
//! - `UTF8`, `LANG` (RFC 6856) would need commands the proxy does not answer before login;
//! - anything unknown (`X-GOOGLE-VERHOEVEN`): unknown meaning, so no promise.
//!
//! `PIPELINING` is safe for the proxy's own reader (it answers pipelined commands in order and
//! keeps what follows a login byte for byte), so it is advertised exactly when the upstream will
//! honour it after the splice.

use std::cmp::Ordering;

/// An allow-listed tag, in the order they are advertised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Tag {
    Top,
    Uidl,
    Pipelining,
    Expire,
    LoginDelay,
}

const TAGS: [Tag; 5] = [
    Tag::Top,
    Tag::Uidl,
    Tag::Pipelining,
    Tag::Expire,
    Tag::LoginDelay,
];

/// An `EXPIRE` or `LOGIN-DELAY` value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Value {
    /// Days (`EXPIRE`) or seconds (`LOGIN-DELAY`).
    Number(u64),
    /// `EXPIRE NEVER`: kept forever, the least restrictive.
    Never,
}

impl Value {
    /// Orders `EXPIRE` values: numbers by size, `NEVER` above all.
    fn cmp_expire(self, other: Value) -> Ordering {
        match (self, other) {
            (Value::Number(a), Value::Number(b)) => a.cmp(&b),
            (Value::Number(_), Value::Never) => Ordering::Less,
            (Value::Never, Value::Number(_)) => Ordering::Greater,
            (Value::Never, Value::Never) => Ordering::Equal,
        }
    }
}

/// One allow-listed capability as parsed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Capability {
    tag: Tag,
    value: Option<Value>,
    /// `USER`: the value is per user and may differ after login (RFC 2449 §6.5, §6.7).
    per_user: bool,
}

impl Capability {
    /// The allow-listed capability on `line`, if it is one and well formed.
    fn parse(line: &str) -> Option<Capability> {
        let mut words = line.split([' ', '\t']).filter(|w| !w.is_empty());
        let name = words.next()?.to_ascii_uppercase();
        let args: Vec<&str> = words.collect();
        let tag = match name.as_str() {
            "TOP" => Tag::Top,
            "UIDL" => Tag::Uidl,
            "PIPELINING" => Tag::Pipelining,
            "EXPIRE" => Tag::Expire,
            "LOGIN-DELAY" => Tag::LoginDelay,
            _ => return None,
        };
        if matches!(tag, Tag::Top | Tag::Uidl | Tag::Pipelining) {
            return args.is_empty().then_some(Capability {
                tag,
                value: None,
                per_user: false,
            });
        }
        let (value, per_user) = match args.as_slice() {
            [value] => (*value, false),
            [value, user] if user.eq_ignore_ascii_case("USER") => (*value, true),
            _ => return None,
        };
        let value = if tag == Tag::Expire && value.eq_ignore_ascii_case("NEVER") {
            Value::Never
        } else if !value.is_empty()
            && value.len() <= 18
            && value.bytes().all(|b| b.is_ascii_digit())
        {
            Value::Number(value.parse().ok()?)
        } else {
            return None;
        };
        Some(Capability {
            tag,
            value: Some(value),
            per_user,
        })
    }

    /// The most restrictive of two of the same tag: the shortest `EXPIRE`, the longest
    /// `LOGIN-DELAY`; per user if either is.
    fn strictest(self, other: Capability) -> Capability {
        let value = match (self.value, other.value) {
            (Some(a), Some(b)) if self.tag == Tag::Expire => {
                Some(if a.cmp_expire(b) == Ordering::Greater {
                    b
                } else {
                    a
                })
            }
            (Some(Value::Number(a)), Some(Value::Number(b))) => Some(Value::Number(a.max(b))),
            (a, _) => a,
        };
        Capability {
            tag: self.tag,
            value,
            per_user: self.per_user || other.per_user,
        }
    }

    fn line(self) -> String {
        let mut line = String::from(match self.tag {
            Tag::Top => "TOP",
            Tag::Uidl => "UIDL",
            Tag::Pipelining => "PIPELINING",
            Tag::Expire => "EXPIRE",
            Tag::LoginDelay => "LOGIN-DELAY",
        });
        match self.value {
            Some(Value::Number(n)) => line.push_str(&format!(" {n}")),
            Some(Value::Never) => line.push_str(" NEVER"),
            None => {}
        }
        if self.per_user {
            line.push_str(" USER");
        }
        line
    }
}

/// The allow-listed capabilities that every list in `lists` has (each list: one upstream's CAPA
/// lines), with the most restrictive value where they differ (largest `LOGIN-DELAY`, smallest
/// `EXPIRE`, `NEVER` above any number), so that nothing advertised before login is untrue
/// after it, whichever upstream the client's account uses. No lists, nothing in common.
pub fn common_capabilities(lists: &[Vec<String>]) -> Vec<String> {
    if lists.is_empty() {
        return Vec::new();
    }
    TAGS.iter()
        .filter_map(|&tag| {
            lists
                .iter()
                .map(|list| {
                    list.iter()
                        .filter_map(|line| Capability::parse(line))
                        .filter(|c| c.tag == tag)
                        .reduce(Capability::strictest)
                })
                .reduce(|a, b| Some(a?.strictest(b?)))
                .flatten()
        })
        .map(Capability::line)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(lists: &[&[&str]]) -> Vec<String> {
        let lists: Vec<Vec<String>> = lists
            .iter()
            .map(|l| l.iter().map(|s| s.to_string()).collect())
            .collect();
        common_capabilities(&lists)
    }

    const GMAIL: &[&str] = &[
        "USER",
        "RESP-CODES",
        "EXPIRE 0",
        "LOGIN-DELAY 300",
        "TOP",
        "UIDL",
        "X-GOOGLE-VERHOEVEN",
        "SASL PLAIN XOAUTH2",
    ];
    const MICROSOFT: &[&str] = &["TOP", "UIDL", "SASL PLAIN XOAUTH2", "USER"];

    #[test]
    fn one_list_is_filtered_by_the_allow_list() {
        assert_eq!(
            common(&[GMAIL]),
            ["TOP", "UIDL", "EXPIRE 0", "LOGIN-DELAY 300"]
        );
        assert_eq!(common(&[MICROSOFT]), ["TOP", "UIDL"]);
        assert_eq!(
            common(&[&[
                "STLS",
                "SASL XOAUTH2 OAUTHBEARER",
                "IMPLEMENTATION Dovecot",
                "AUTH-RESP-CODE",
                "UTF8",
                "pipelining",
                "uidl",
                "  top  ",
            ]]),
            ["TOP", "UIDL", "PIPELINING"]
        );
    }

    #[test]
    fn only_what_every_list_has_with_the_strictest_value() {
        assert_eq!(common(&[GMAIL, MICROSOFT]), ["TOP", "UIDL"]);
        assert_eq!(
            common(&[
                &["EXPIRE 5", "LOGIN-DELAY 60", "PIPELINING"],
                &["EXPIRE NEVER", "LOGIN-DELAY 900 USER", "PIPELINING"],
                &["EXPIRE 3 USER", "LOGIN-DELAY 0"],
            ]),
            ["EXPIRE 3 USER", "LOGIN-DELAY 900 USER"]
        );
        assert_eq!(
            common(&[&["EXPIRE NEVER"], &["expire never"]]),
            ["EXPIRE NEVER"]
        );
        assert_eq!(common(&[&["EXPIRE NEVER"], &["EXPIRE 0"]]), ["EXPIRE 0"]);
        // Within one list too (a server that repeats itself).
        assert_eq!(
            common(&[&["LOGIN-DELAY 10", "LOGIN-DELAY 20"]]),
            ["LOGIN-DELAY 20"]
        );
    }

    #[test]
    fn nothing_known_or_malformed_means_nothing_advertised() {
        assert!(common(&[]).is_empty());
        assert!(common(&[GMAIL, &[]]).is_empty());
        // Malformed values are dropped, so the tag is not common.
        for bad in [
            "EXPIRE",
            "EXPIRE -1",
            "EXPIRE 1 2",
            "EXPIRE 1 OTHER",
            "LOGIN-DELAY NEVER",
            "LOGIN-DELAY 99999999999999999999999",
            "TOP 1",
            "EXPIRE 0x10",
        ] {
            assert!(common(&[&[bad]]).is_empty(), "{bad}");
        }
        assert_eq!(common(&[&["LOGIN-DELAY 007"]]), ["LOGIN-DELAY 7"]);
    }
}
