//! The user name and password an AUTH carries: a SASL PLAIN message (RFC 4616), or AUTH LOGIN's
//! two answers; and the strict base64 of SASL responses (RFC 4954 §4).

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
    /// An empty user name or password.
    Empty,
    /// An authorization identity other than the user: the proxy cannot act as someone else.
    OtherAuthzid,
    /// Not UTF-8 (RFC 4616 says UTF-8; a lossy conversion could make two passwords equal).
    NotUtf8,
    /// A user name with control characters, or a password with NUL.
    BadCharacters,
}

impl Refusal {
    /// The reply: RFC 4616 says such credentials fail the authentication (535).
    pub(super) fn reply(self) -> &'static str {
        match self {
            Refusal::Malformed | Refusal::Empty => "535 5.7.8 Empty or malformed credentials",
            Refusal::OtherAuthzid => "535 5.7.8 Logging in as another user is not supported",
            Refusal::NotUtf8 => "535 5.7.8 User name and password must be UTF-8",
            Refusal::BadCharacters => "535 5.7.8 Invalid characters in the user name or password",
        }
    }
}

/// A SASL response line decoded: `=` (RFC 4954's empty initial response) and an empty line are
/// empty, anything else must be canonical base64 (the `STANDARD` engine refuses other padding,
/// whitespace and characters outside the alphabet). `None`: not base64.
pub(super) fn decode_base64(line: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    if line.is_empty() || line == b"=" {
        return Some(Zeroizing::new(Vec::new()));
    }
    STANDARD.decode(line).ok().map(Zeroizing::new)
}

/// AUTH LOGIN's user name and password, decoded.
pub(super) fn from_login(user: &[u8], password: &[u8]) -> Result<Credentials, Refusal> {
    if user.is_empty() || password.is_empty() {
        return Err(Refusal::Empty);
    }
    let user = std::str::from_utf8(user).map_err(|_| Refusal::NotUtf8)?;
    let password = std::str::from_utf8(password).map_err(|_| Refusal::NotUtf8)?;
    if user.chars().any(char::is_control) || password.contains('\0') {
        return Err(Refusal::BadCharacters);
    }
    // Exact capacity, so that turning it into a boxed str does not reallocate and leave an
    // unwiped copy behind.
    let mut secret = String::with_capacity(password.len());
    secret.push_str(password);
    Ok(Credentials {
        user: user.to_owned(),
        password: SecretString::from(secret),
    })
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
    from_login(authcid, password)
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
        assert_eq!(
            plain("\0jörg\0pä ss\r\n\"".as_bytes()),
            ok("jörg", "pä ss\r\n\"")
        );
        assert_eq!(plain(b"bob\0alice\0s3cret"), Err(Refusal::OtherAuthzid));
        assert_eq!(plain(b""), Err(Refusal::Malformed));
        assert_eq!(plain(b"alice"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0alice"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0alice\0pa\0ss"), Err(Refusal::Malformed));
        assert_eq!(plain(b"\0\0s3cret"), Err(Refusal::Empty));
        assert_eq!(plain(b"\0alice\0"), Err(Refusal::Empty));
        assert_eq!(plain(b"\0alice\0\xff\xfe"), Err(Refusal::NotUtf8));
        assert_eq!(plain(b"\0al\x01ice\0s3cret"), Err(Refusal::BadCharacters));
    }

    #[test]
    fn login_answers() {
        assert!(from_login(b"alice", b"pass word").is_ok());
        assert_eq!(
            from_login(b"alice", b"pa\0ss").err(),
            Some(Refusal::BadCharacters)
        );
        assert_eq!(from_login(b"", b"x").err(), Some(Refusal::Empty));
    }

    #[test]
    fn base64_is_strict() {
        let decoded = |line: &[u8]| decode_base64(line).map(|d| d.to_vec());
        assert_eq!(decoded(b""), Some(Vec::new()));
        assert_eq!(decoded(b"="), Some(Vec::new()));
        assert_eq!(decoded(b"YWI="), Some(b"ab".to_vec()));
        for bad in [
            &b"YWI"[..],
            b"AAA=BBB",
            b"=AAA",
            b"!!",
            b"YW I=",
            b"YWJ=",
            b"YWI=\r",
        ] {
            assert!(decode_base64(bad).is_none(), "{bad:?}");
        }
    }
}
