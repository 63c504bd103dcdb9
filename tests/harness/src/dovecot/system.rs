//! The bits of the host system Dovecot needs: its binary, an unprivileged mail user, file
//! ownership, and stopping a process group.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{HarnessError, IoContext};

/// The system user that owns the test mailboxes (Dovecot refuses uid 0 for mail access).
pub const MAIL_USER: &str = "mailoauth-test";

/// Finds the `dovecot` binary (PATH, then /usr/sbin).
pub(crate) fn dovecot_binary() -> Result<PathBuf, HarnessError> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.push("/usr/sbin".into());
    dirs.push("/usr/local/sbin".into());
    dirs.into_iter()
        .map(|d| d.join("dovecot"))
        .find(|p| p.is_file())
        .ok_or(HarnessError::DovecotNotInstalled)
}

/// Checks that the protocol binaries for the enabled services are installed (Debian puts them
/// in /usr/lib/dovecot; elsewhere the check is skipped and Dovecot's own error will tell).
pub(crate) fn check_protocols(services: super::Services) -> Result<(), HarnessError> {
    let libexec = ["/usr/lib/dovecot", "/usr/libexec/dovecot"]
        .into_iter()
        .map(Path::new)
        .find(|d| d.join("imap-login").exists() || d.join("auth").exists());
    let Some(libexec) = libexec else {
        return Ok(());
    };
    let wanted = [
        (services.imap, "imap"),
        (services.pop3, "pop3"),
        (services.submission, "submission"),
    ];
    if wanted
        .iter()
        .any(|(on, binary)| *on && !libexec.join(binary).exists())
    {
        return Err(HarnessError::DovecotNotInstalled);
    }
    Ok(())
}

/// `(uid, gid)` of `name` from /etc/passwd.
fn lookup_user(name: &str) -> Option<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
    })
}

/// The gid of group `name` from /etc/group.
pub(crate) fn lookup_group(name: &str) -> Option<u32> {
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        fields.next()?.parse().ok()
    })
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `(uid, gid)` of [`MAIL_USER`], creating the user when missing and we are root.
pub(crate) fn ensure_mail_user() -> Result<(u32, u32), HarnessError> {
    static CREATING: Mutex<()> = Mutex::new(());
    if let Some(ids) = lookup_user(MAIL_USER) {
        return Ok(ids);
    }
    if !is_root() {
        return Err(HarnessError::MailUserMissing {
            user: MAIL_USER.to_string(),
        });
    }
    let _guard = CREATING.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(ids) = lookup_user(MAIL_USER) {
        return Ok(ids);
    }
    let output = Command::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            MAIL_USER,
        ])
        .output()
        .ctx(|| "running useradd")?;
    // Another test process may have won the race; what matters is that the user exists now.
    lookup_user(MAIL_USER).ok_or_else(|| {
        HarnessError::Other(format!(
            "useradd {MAIL_USER} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    })
}

/// chown, with context.
pub(crate) fn chown(path: &Path, uid: Option<u32>, gid: Option<u32>) -> Result<(), HarnessError> {
    std::os::unix::fs::chown(path, uid, gid).ctx(|| format!("chown {}", path.display()))
}

/// chmod, with context.
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<(), HarnessError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .ctx(|| format!("chmod {}", path.display()))
}

/// Makes this process the reaper of its orphaned descendants (Linux), so that the children of
/// a killed Dovecot master can be reaped here rather than left as zombies under an init that
/// may not reap (as in some containers and VMs).
pub(crate) fn become_subreaper() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_os = "linux")]
        // SAFETY: PR_SET_CHILD_SUBREAPER takes plain integers and touches no memory of ours.
        unsafe {
            libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
        }
    });
}

/// Kills the process group led by `child` (Dovecot's master and its children) and reaps the
/// leader and, thanks to [`become_subreaper`], its orphaned children. SIGKILL at once: after
/// SIGTERM, Dovecot's master waits 2–3 s for its `log` process, and nothing of a test Dovecot
/// needs an orderly shutdown (its temp dir is removed next).
pub(crate) fn kill_group(child: &mut Child) {
    let pgid = child.id();
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: kill has no memory-safety preconditions; a negative pid addresses a group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline {
        let mut status = 0;
        // SAFETY: waitpid writes only to `status`, a valid local.
        let reaped = unsafe { libc::waitpid(-pgid, &mut status, libc::WNOHANG) };
        match reaped {
            0 => std::thread::sleep(Duration::from_millis(2)),
            pid if pid > 0 => continue,
            _ => break, // ECHILD: none left (or we are not their reaper).
        }
    }
}
