//! What each upstream server advertised (SMTP EHLO keywords, POP3 CAPA lines), learned by a probe
//! when the proxy starts and refreshed by every successful login. A client is told before login,
//! when its account (and so its server) is not known yet, only what all the listener's servers
//! have in common, so that nothing advertised can fail after the splice.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::config::Upstream;

/// A protocol's name and a server's host and port.
type Key = (&'static str, String, u16);

/// Per protocol and server: the last list seen.
#[derive(Default)]
pub struct ExtensionCache {
    seen: Mutex<HashMap<Key, Vec<String>>>,
}

impl ExtensionCache {
    /// Records what `upstream` advertised for `protocol`.
    pub fn learn(&self, protocol: &'static str, upstream: &Upstream, list: Vec<String>) {
        let key = (protocol, upstream.host.clone(), upstream.port);
        self.seen
            .lock()
            .expect("extension cache poisoned")
            .insert(key, list);
    }

    /// The lists of all `upstreams`, or `None` if any of them is not known yet (then a client
    /// must be told nothing beyond what the proxy itself does).
    pub fn all(&self, protocol: &'static str, upstreams: &[Upstream]) -> Option<Vec<Vec<String>>> {
        let seen = self.seen.lock().expect("extension cache poisoned");
        upstreams
            .iter()
            .map(|u| seen.get(&(protocol, u.host.clone(), u.port)).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(port: u16) -> Upstream {
        Upstream {
            host: "127.0.0.1".into(),
            port,
            implicit_tls: true,
        }
    }

    #[test]
    fn all_or_nothing() {
        let c = ExtensionCache::default();
        assert_eq!(c.all("SMTP", &[]), Some(vec![]));
        c.learn("SMTP", &up(1), vec!["8BITMIME".into()]);
        assert_eq!(
            c.all("SMTP", &[up(1)]),
            Some(vec![vec!["8BITMIME".to_string()]])
        );
        assert_eq!(
            c.all("SMTP", &[up(1), up(2)]),
            None,
            "an unknown server means: advertise nothing"
        );
        assert_eq!(c.all("POP3", &[up(1)]), None, "per protocol");
        c.learn("SMTP", &up(1), vec![]);
        assert_eq!(
            c.all("SMTP", &[up(1)]),
            Some(vec![vec![]]),
            "a new list replaces the old"
        );
    }
}
