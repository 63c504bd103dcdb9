//! `--debug`'s trace redaction (`mailoauth::trace::redact`) and the control socket's request
//! parsing, both fed bytes a client chose.
//!
//! Contract: never panics; a redacted line is at most ~340 characters; a one-word line is either
//! kept whole (a command word of the allow-list, which has no argument to hide) or replaced by a
//! fingerprint; a `PASS` line never shows its argument.

#![no_main]

use libfuzzer_sys::fuzz_target;
use mailoauth::control::Request;
use mailoauth::trace::redact;

fuzz_target!(|data: &[u8]| {
    let shown = redact(data);
    assert!(shown.chars().count() <= 340, "{shown}");
    if let Ok(text) = std::str::from_utf8(data)
        && !text.contains(' ')
        && text.len() < 300
    {
        let safe = text.chars().all(|c| c.is_ascii_alphabetic());
        assert!(
            shown == text && safe || shown.starts_with("[secret "),
            "{text:?} -> {shown:?}"
        );
    }
    if let Some(rest) = data.strip_prefix(b"PASS ")
        && rest.len() >= 4
        && std::str::from_utf8(data).is_ok()
    {
        assert!(shown.starts_with("PASS [secret "), "{shown}");
    }
    let _ = serde_json::from_slice::<Request>(data).map(|r| format!("{r:?}"));
});
