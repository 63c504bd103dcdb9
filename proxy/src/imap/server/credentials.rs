//! The user name and password a login carries: LOGIN's two arguments, or a SASL PLAIN message
//! (RFC 4616) from AUTHENTICATE.

use secrecy::SecretString;

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
    /// Not UTF-8 (RFC 4616 says UTF-8 for PLAIN; LOGIN literals could carry any octets, but an
    /// account's password is a string, and a lossy conversion could make two passwords equal).
    NotUtf8,
    /// A user name with control characters (no account has one; keeps them out of logs).
    BadUser,
}

/// LOGIN's arguments (the codec already refused NUL).
pub(super) fn from_login(user: &[u8], password: &[u8]) -> Result<Credentials, Refusal> {
    if user.is_empty() || password.is_empty() {
        return Err(Refusal::Empty);
    }
    let user = std::str::from_utf8(user).map_err(|_| Refusal::NotUtf8)?;
    let password = std::str::from_utf8(password).map_err(|_| Refusal::NotUtf8)?;
    if user.chars().any(char::is_control) {
        return Err(Refusal::BadUser);
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
/// or the authcid itself. (RFC 4616's 255-octet field limit is not enforced: the line and
/// literal limits bound the input, and long passwords exist.)
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
        assert_eq!(plain(b"\0al\x01ice\0s3cret"), Err(Refusal::BadUser));
    }
}
