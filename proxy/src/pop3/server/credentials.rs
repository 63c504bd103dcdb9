//! The user name and password a login carries: `USER`/`PASS`, or a SASL PLAIN message (RFC 4616)
//! from `AUTH PLAIN`. The same rules as IMAP's (`imap::server::credentials`), for POP3's
//! commands.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;
use zeroize::Zeroizing;

/// A user name and password that passed the local checks; verifying them is the driver's job.
pub(super) struct Credentials {
    pub(super) user: String,
    pub(super) password: SecretString,
}

/// Why credentials were refused before anyone looked at the password.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// Not `[authzid] NUL authcid NUL passwd` (an empty `=` response is this too).
    Malformed,
    /// Not strict base64 (RFC 5034 §4: the client's response is base64).
    BadBase64,
    /// An empty user name or password.
    Empty,
    /// An authorization identity other than the user: the proxy cannot act as someone else.
    OtherAuthzid,
    /// Not UTF-8 (an account's password is a string; a lossy conversion could make two
    /// passwords equal).
    NotUtf8,
    /// A user name with control characters (no account has one; keeps them out of logs).
    BadUser,
}

impl Refusal {
    /// The text of the `-ERR` (RFC 3206 `[AUTH]`: the credentials are the problem).
    pub(super) fn text(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::Empty => "[AUTH] Empty or malformed credentials",
            Refusal::BadBase64 => "Invalid base64",
            Refusal::OtherAuthzid => "[AUTH] Logging in as another user is not supported",
            Refusal::NotUtf8 => "[AUTH] User name and password must be UTF-8",
            Refusal::BadUser => "[AUTH] Invalid user name",
        }
    }
}

/// A `USER` argument.
pub(super) fn user(name: &[u8]) -> Result<String, Refusal> {
    if name.is_empty() {
        return Err(Refusal::Empty);
    }
    let name = std::str::from_utf8(name).map_err(|_| Refusal::NotUtf8)?;
    if name.chars().any(char::is_control) {
        return Err(Refusal::BadUser);
    }
    Ok(name.to_owned())
}

/// A user name and a password (`PASS`'s argument, verbatim).
pub(super) fn from_pass(user: &[u8], password: &[u8]) -> Result<Credentials, Refusal> {
    let user = self::user(user)?;
    if password.is_empty() {
        return Err(Refusal::Empty);
    }
    let password = std::str::from_utf8(password).map_err(|_| Refusal::NotUtf8)?;
    // Exact capacity, so that turning it into a boxed str does not reallocate and leave an
    // unwiped copy behind.
    let mut secret = String::with_capacity(password.len());
    secret.push_str(password);
    Ok(Credentials {
        user,
        password: SecretString::from(secret),
    })
}

/// A base64 SASL PLAIN response (`=` is the empty one, which is malformed).
pub(super) fn from_base64_plain(response: &[u8]) -> Result<Credentials, Refusal> {
    if response == b"=" {
        return Err(Refusal::Malformed);
    }
    let decoded = Zeroizing::new(STANDARD.decode(response).map_err(|_| Refusal::BadBase64)?);
    from_plain(&decoded)
}

/// A decoded SASL PLAIN message: `[authzid] NUL authcid NUL passwd`. The authzid must be empty
/// or the authcid itself. (RFC 4616's 255-octet field limit is not enforced: the line limits
/// bound the input, and long passwords exist.)
pub(super) fn from_plain(message: &[u8]) -> Result<Credentials, Refusal> {
    let mut fields = message.splitn(3, |&b| b == 0);
    let (Some(authzid), Some(authcid), Some(password)) =
        (fields.next(), fields.next(), fields.next())
    else {
        return Err(Refusal::Malformed);
    };
    if password.contains(&0) {
        return Err(Refusal::Malformed);
    }
    if !authzid.is_empty() && authzid != authcid {
        return Err(Refusal::OtherAuthzid);
    }
    from_pass(authcid, password)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn plain(message: &[u8]) -> Result<(String, String), Refusal> {
        from_plain(message).map(|c| (c.user, c.password.expose_secret().to_owned()))
    }

    #[test]
    fn plain_messages() {
        let ok = |u: &str, p: &str| Ok((u.to_owned(), p.to_owned()));
        assert_eq!(plain(b"\0alice\0s3cret"), ok("alice", "s3cret"));
        assert_eq!(plain(b"alice\0alice\0s3cret"), ok("alice", "s3cret"));
        assert_eq!(plain("\0jörg\0pä ss \"".as_bytes()), ok("jörg", "pä ss \""));
        assert_eq!(plain(b"bob\0alice\0s3cret"), Err(Refusal::OtherAuthzid));
        assert_eq!(plain(b""), Err(Refusal::Malformed));
        assert_eq!(plain(b"alice"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0alice"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0alice\0pa\0ss"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0\0s3cret"), Err(Refusal::Empty));
        assert_eq!(plain(b"\0alice\0"), Err(Refusal::Empty));
        assert_eq!(plain(b"\0alice\0\xff\xfe"), Err(Refusal::NotUtf8));
        assert_eq!(plain(b"\0al\x01ice\0s3cret"), Err(Refusal::BadUser));
    }

    #[test]
    fn strict_base64() {
        let b64 = |s: &[u8]| from_base64_plain(s).map(|c| c.user);
        assert_eq!(b64(b"AGFsaWNlAHMzY3JldA=="), Ok("alice".to_owned()));
        assert_eq!(b64(b"="), Err(Refusal::Malformed));
        assert_eq!(b64(b""), Err(Refusal::Malformed));
        for bad in [
            &b"*"[..],
            b"AAA=BBB",
            b"=AAA",
            b"!!",
            b"AGFs aWNl",
            b"AGFsaWNlAHMzY3JldA=",
        ] {
            assert_eq!(b64(bad), Err(Refusal::BadBase64), "{bad:?}");
        }
    }
}
