//! `mailoauth install-service [--print] [--force]`: installs `mailoauth serve` as a per-user
//! service — a systemd user unit on Linux, a launchd agent on macOS.
//!
//! The files are the ones shipped in `config/` (`mailoauth.service`,
//! `com.mailoauth.serve.plist`), compiled in with `include_str!` and filled in: the absolute path
//! of the running binary (a service manager's PATH rarely holds `~/.cargo/bin`), `--config` when
//! one was given, the state directory and the XDG variables when they are not the defaults (so
//! the daemon finds the same files as the shell that installed it), and on macOS the home
//! directory (launchd expands neither `~` nor `$HOME`). The shipped files and the installed ones
//! therefore cannot drift: every string replaced here must occur in the template exactly once, and
//! the unit tests render both templates.
//!
//! A different existing file is never overwritten without `--force`; `--print` writes nothing.

use std::fs;
use std::path::{Path, PathBuf};

use crate::Cli;
use crate::config::{Config, Paths, StoreConfig};
use crate::exit::{CONFIGURATION, ERROR, Failure};

/// The systemd user unit, as shipped.
pub const SYSTEMD_UNIT: &str = include_str!("../../../config/mailoauth.service");
/// The launchd agent, as shipped.
pub const LAUNCHD_PLIST: &str = include_str!("../../../config/com.mailoauth.serve.plist");

/// The launchd label, also the plist's file name.
const LAUNCHD_LABEL: &str = "com.mailoauth.serve";

/// Which service manager the file is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Manager {
    Systemd,
    Launchd,
}

impl Manager {
    /// The one of this operating system.
    pub fn native() -> Manager {
        if cfg!(target_os = "macos") {
            Manager::Launchd
        } else {
            Manager::Systemd
        }
    }
}

/// Everything that is filled into a template.
#[derive(Debug, Clone)]
pub struct Service {
    /// The absolute path of the mailoauth binary.
    pub exe: PathBuf,
    /// `--config`, made absolute (a service does not start in the installer's directory).
    pub config: Option<PathBuf>,
    /// The directories the daemon writes, which the systemd sandbox makes writable: the state
    /// directory, and `[store] dir` when the configuration moves the store elsewhere.
    pub writable: Vec<PathBuf>,
    /// The home directory (launchd's log path).
    pub home: PathBuf,
    /// XDG variables that were set, passed on so the daemon resolves the same paths.
    pub env: Vec<(String, String)>,
    /// Whether the systemd filesystem sandbox can work here (unprivileged user namespaces).
    pub sandbox: bool,
}

pub fn run(cli: &Cli, print: bool, force: bool) -> Result<(), Failure> {
    let manager = Manager::native();
    let paths = Paths::resolve(cli.config.as_deref())
        .map_err(|e| Failure::new(CONFIGURATION, format!("{e:#}")))?;
    let service = Service::current(cli, &paths)?;
    let text = match manager {
        Manager::Systemd => render_systemd(&service)?,
        Manager::Launchd => render_launchd(&service)?,
    };
    let target = target_path(manager, &service.home)?;

    if !paths.config_file.exists() {
        eprintln!(
            "note: there is no configuration at {} yet; the service fails until there is one",
            paths.config_file.display()
        );
    }
    if let Some(dir) = build_directory(&service.exe) {
        eprintln!(
            "note: the service would run {} from the build directory {}; consider `cargo install --path proxy` and running install-service from the installed binary",
            service.exe.display(),
            dir.display()
        );
    }
    if manager == Manager::Systemd && !service.sandbox {
        eprintln!(
            "note: this machine forbids unprivileged user namespaces, so the unit's filesystem sandbox (PrivateTmp=, ProtectSystem=) is commented out; the other hardening stays"
        );
    }

    if print {
        print!("{text}");
        eprintln!(
            "Not written. Save it as {}, then run:\n    {}",
            target.display(),
            next_command(manager, &target)
        );
        return Ok(());
    }

    let replaced = match fs::read(&target) {
        Ok(existing) if existing == text.as_bytes() => {
            eprintln!("{} is already up to date.", target.display());
            false
        }
        Ok(_) if !force => {
            return Err(Failure::new(
                ERROR,
                format!(
                    "{} exists and differs from what install-service writes; nothing was changed.\nCompare it with `mailoauth install-service --print`, then run `mailoauth install-service --force` to replace it.",
                    target.display()
                ),
            ));
        }
        Ok(_) => {
            write(&target, &text)?;
            eprintln!("Replaced {}.", target.display());
            true
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write(&target, &text)?;
            eprintln!("Wrote {}.", target.display());
            false
        }
        Err(e) => {
            return Err(Failure::new(
                ERROR,
                format!("cannot read {}: {e}", target.display()),
            ));
        }
    };
    // The sandbox makes these writable only if they exist when the unit starts.
    for dir in &service.writable {
        tokenlib::store::ensure_private_dir(dir)
            .map_err(|e| Failure::new(ERROR, format!("cannot create {}: {e}", dir.display())))?;
    }
    eprintln!("Next, run:\n    {}", next_command(manager, &target));
    if replaced {
        eprintln!(
            "If it is running already, restart it:\n    {}",
            restart_command(manager)
        );
    }
    Ok(())
}

impl Service {
    /// The values for this process: its binary, `--config` and environment.
    pub fn current(cli: &Cli, paths: &Paths) -> Result<Service, Failure> {
        let exe = std::env::current_exe().map_err(|e| {
            Failure::new(
                ERROR,
                format!("cannot find the path of the running mailoauth binary: {e}"),
            )
        })?;
        // Linux reports a binary replaced since it started as "/path (deleted)".
        if !exe.is_file() {
            return Err(Failure::new(
                ERROR,
                format!(
                    "the running binary {} no longer exists (replaced by a new build?); run install-service again from the installed binary",
                    exe.display()
                ),
            ));
        }
        let config = match &cli.config {
            Some(path) => Some(std::path::absolute(path).map_err(|e| {
                Failure::new(
                    CONFIGURATION,
                    format!("cannot make {} absolute: {e}", path.display()),
                )
            })?),
            None => None,
        };
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|h| h.is_absolute())
            .ok_or_else(|| {
                Failure::new(
                    CONFIGURATION,
                    "HOME is not set to an absolute path, so install-service cannot tell where the service file goes; set HOME",
                )
            })?;
        let mut env = Vec::new();
        for var in ["XDG_CONFIG_HOME", "XDG_STATE_HOME"] {
            // Paths::resolve ignores relative values, and so does this.
            if let Some(value) = std::env::var_os(var).filter(|v| Path::new(v).is_absolute()) {
                let value = value.into_string().map_err(|v| not_utf8(Path::new(&v)))?;
                env.push((var.to_string(), value));
            }
        }
        let mut writable = vec![paths.state_dir.clone()];
        // A configuration that does not load yet is `serve`'s to report, not this command's.
        if let Ok(Config {
            store: StoreConfig { dir: Some(dir), .. },
            ..
        }) = Config::load(&paths.config_file)
            && !dir.starts_with(&paths.state_dir)
        {
            writable.push(dir);
        }
        Ok(Service {
            exe,
            config,
            writable,
            home,
            env,
            sandbox: user_namespaces_usable(),
        })
    }

    /// The daemon's command line: binary, `--config PATH` when given, `serve`.
    fn argv(&self) -> Vec<&Path> {
        let mut argv = vec![self.exe.as_path()];
        if let Some(config) = &self.config {
            argv.push(Path::new("--config"));
            argv.push(config);
        }
        argv.push(Path::new("serve"));
        argv
    }
}

/// Where the file goes: `$XDG_CONFIG_HOME/systemd/user/mailoauth.service` or
/// `~/Library/LaunchAgents/com.mailoauth.serve.plist`.
pub fn target_path(manager: Manager, home: &Path) -> Result<PathBuf, Failure> {
    Ok(match manager {
        Manager::Systemd => std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .unwrap_or_else(|| home.join(".config"))
            .join("systemd/user/mailoauth.service"),
        Manager::Launchd => home
            .join("Library/LaunchAgents")
            .join(format!("{LAUNCHD_LABEL}.plist")),
    })
}

/// The systemd unit for `service`.
pub fn render_systemd(service: &Service) -> Result<String, Failure> {
    let mut exec = String::new();
    for (var, value) in &service.env {
        exec.push_str(&format!(
            "Environment={}\n",
            systemd_word(&format!("{var}={value}"))?
        ));
    }
    let argv = service
        .argv()
        .iter()
        .map(|arg| systemd_word(path_str(arg)?))
        .collect::<Result<Vec<_>, _>>()?;
    exec.push_str(&format!("ExecStart={}\n", argv.join(" ")));

    let mut text = replace_once(
        SYSTEMD_UNIT,
        "ExecStart=/usr/bin/env mailoauth serve\n",
        &exec,
    );
    let writable = service
        .writable
        .iter()
        .map(|dir| systemd_word(path_str(dir)?))
        .collect::<Result<Vec<_>, _>>()?;
    text = replace_once(
        &text,
        "ReadWritePaths=%h/.local/state/mailoauth ",
        &format!("ReadWritePaths={} ", writable.join(" ")),
    );
    if !service.sandbox {
        text = comment_out_sandbox(&text);
    }
    Ok(text)
}

/// Comments out the lines between `# sandbox-begin` and `# sandbox-end`, saying why.
fn comment_out_sandbox(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 200);
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        if line.trim_end() == "# sandbox-end" {
            inside = false;
        }
        if inside && !line.starts_with('#') {
            out.push('#');
        }
        out.push_str(line);
        if line.trim_end() == "# sandbox-begin" {
            inside = true;
            out.push_str(
                "# Commented out by install-service: this machine forbids unprivileged user namespaces.\n",
            );
        }
    }
    out
}

/// The launchd agent for `service`.
pub fn render_launchd(service: &Service) -> Result<String, Failure> {
    let indent = "        ";
    let mut args = String::new();
    for arg in service.argv() {
        args.push_str(&format!(
            "{indent}<string>{}</string>\n",
            xml_escape(path_str(arg)?)
        ));
    }
    let mut text = replace_once(
        LAUNCHD_PLIST,
        &format!(
            "{indent}<string>/usr/local/bin/mailoauth</string>\n{indent}<string>serve</string>\n"
        ),
        &args,
    );
    let log = service.home.join("Library/Logs/mailoauth.log");
    text = replace_once(
        &text,
        "<string>/Users/you/Library/Logs/mailoauth.log</string>",
        &format!("<string>{}</string>", xml_escape(path_str(&log)?)),
    );
    let mut env = String::new();
    for (var, value) in &service.env {
        env.push_str(&format!(
            "{indent}<key>{var}</key>\n{indent}<string>{}</string>\n",
            xml_escape(value)
        ));
    }
    let anchor = "    <key>EnvironmentVariables</key>\n    <dict>\n";
    Ok(replace_once(&text, anchor, &format!("{anchor}{env}")))
}

/// What to run after installing.
fn next_command(manager: Manager, target: &Path) -> String {
    match manager {
        Manager::Systemd => {
            "systemctl --user daemon-reload && systemctl --user enable --now mailoauth".to_string()
        }
        Manager::Launchd => format!(
            "launchctl load -w {}",
            crate::exit::shell_quote(&target.display().to_string())
        ),
    }
}

/// What to run after replacing the file of a running service.
fn restart_command(manager: Manager) -> String {
    match manager {
        Manager::Systemd => "systemctl --user restart mailoauth".to_string(),
        Manager::Launchd => format!("launchctl kickstart -k gui/$(id -u)/{LAUNCHD_LABEL}"),
    }
}

/// Writes the file (atomically), mode 0644 like any unit file.
fn write(target: &Path, text: &str) -> Result<(), Failure> {
    use std::os::unix::fs::PermissionsExt;
    let fail =
        |e: std::io::Error| Failure::new(ERROR, format!("cannot write {}: {e}", target.display()));
    if let Some(dir) = target.parent() {
        fs::create_dir_all(dir).map_err(fail)?;
    }
    tokenlib::store::write_atomic(target, text.as_bytes()).map_err(fail)?;
    fs::set_permissions(target, fs::Permissions::from_mode(0o644)).map_err(fail)
}

/// Replaces the one occurrence of `from`. The templates are compiled in, and the unit tests
/// render them, so a template edited without this code is caught there.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "the service template must contain {from:?} exactly once"
    );
    text.replacen(from, to, 1)
}

/// One word of a unit file (an ExecStart= argument, a ReadWritePaths= path, an Environment=
/// assignment): `%` doubled (specifiers), double-quoted when it has a space. Characters whose
/// escaping differs between those settings are refused rather than guessed.
fn systemd_word(word: &str) -> Result<String, Failure> {
    if let Some(c) = word
        .chars()
        .find(|c| c.is_control() || matches!(c, '"' | '\'' | '\\' | '$'))
    {
        return Err(Failure::new(
            ERROR,
            format!(
                "{word:?} contains {c:?}, which a systemd unit cannot carry as it is; move mailoauth (or the file) to a path without it"
            ),
        ));
    }
    let word = word.replace('%', "%%");
    Ok(if word.contains(' ') {
        format!("\"{word}\"")
    } else {
        word
    })
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn path_str(path: &Path) -> Result<&str, Failure> {
    path.to_str().ok_or_else(|| not_utf8(path))
}

fn not_utf8(path: &Path) -> Failure {
    Failure::new(
        ERROR,
        format!(
            "{} is not valid UTF-8, which a service file cannot carry; use a path that is",
            path.display()
        ),
    )
}

/// The cargo build directory `exe` is in, if it is one (`…/target/debug/mailoauth`).
fn build_directory(exe: &Path) -> Option<&Path> {
    let dir = exe.parent()?;
    let profile = dir.file_name()?.to_str()?;
    let target = dir.parent()?;
    (matches!(profile, "debug" | "release") && target.file_name()? == "target").then_some(dir)
}

/// Whether unprivileged user namespaces work, which a user manager needs for PrivateTmp=,
/// ProtectSystem= and ReadWritePaths=: not when they are switched off
/// (`user.max_user_namespaces=0`, Debian's old `kernel.unprivileged_userns_clone=0`) or
/// restricted by AppArmor (Ubuntu 23.10 and newer: the namespace is created without the
/// capabilities to mount anything in it).
fn user_namespaces_usable() -> bool {
    let sysctl = |name: &str| {
        fs::read_to_string(Path::new("/proc/sys").join(name))
            .ok()
            .map(|v| v.trim().to_string())
    };
    !(sysctl("user/max_user_namespaces").as_deref() == Some("0")
        || sysctl("kernel/unprivileged_userns_clone").as_deref() == Some("0")
        || sysctl("kernel/apparmor_restrict_unprivileged_userns").as_deref() == Some("1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service() -> Service {
        Service {
            exe: PathBuf::from("/opt/mail tools/bin/mailoauth"),
            config: Some(PathBuf::from("/home/me/mail/100% <ok> & fine.toml")),
            writable: vec![PathBuf::from("/home/me/.local/state/mailoauth")],
            home: PathBuf::from("/home/me"),
            env: vec![("XDG_STATE_HOME".into(), "/home/me/.local/state".into())],
            sandbox: true,
        }
    }

    #[test]
    fn systemd_unit_gets_the_binary_config_and_state_dir() {
        let service = Service {
            config: Some(PathBuf::from("/home/me/mail/100% fine.toml")),
            writable: vec![
                PathBuf::from("/home/me/.local/state/mailoauth"),
                PathBuf::from("/srv/my tokens"),
            ],
            ..service()
        };
        let unit = render_systemd(&service).unwrap();
        assert!(
            unit.contains(
                "Environment=XDG_STATE_HOME=/home/me/.local/state\nExecStart=\"/opt/mail tools/bin/mailoauth\" --config \"/home/me/mail/100%% fine.toml\" serve\n"
            ),
            "{unit}"
        );
        assert!(unit.contains(
            "\nReadWritePaths=/home/me/.local/state/mailoauth \"/srv/my tokens\" -%h/.gnupg"
        ));
        assert!(!unit.contains("/usr/bin/env mailoauth"));
        // Everything else is the shipped file, line for line.
        let kept = |text: &str| {
            text.lines()
                .filter(|l| !l.starts_with("ExecStart=") && !l.starts_with("ReadWritePaths="))
                .filter(|l| !l.starts_with("Environment="))
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        assert_eq!(kept(&unit), kept(SYSTEMD_UNIT));
    }

    #[test]
    fn sandbox_is_commented_out_without_user_namespaces() {
        let unit = render_systemd(&Service {
            sandbox: false,
            config: None,
            ..service()
        })
        .unwrap();
        for key in [
            "PrivateUsers=",
            "PrivateTmp=",
            "ProtectSystem=",
            "ReadWritePaths=",
        ] {
            assert!(unit.contains(&format!("\n#{key}")), "{key}: {unit}");
            assert!(!unit.contains(&format!("\n{key}")), "{key}: {unit}");
        }
        // The rest of the hardening stays.
        assert!(unit.contains("\nNoNewPrivileges=yes\n"));
        assert!(unit.contains("\nSystemCallFilter=@system-service\n"));
    }

    #[test]
    fn unit_words_are_escaped_or_refused() {
        assert_eq!(systemd_word("/a/b").unwrap(), "/a/b");
        assert_eq!(systemd_word("/a b/%h").unwrap(), "\"/a b/%%h\"");
        for bad in ["/a/$HOME", "/a\"b", "/a\\b", "/a\nb"] {
            assert!(systemd_word(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn launchd_plist_gets_the_arguments_log_and_environment() {
        let plist = render_launchd(&service()).unwrap();
        assert!(
            plist.contains(
                "<array>\n        <string>/opt/mail tools/bin/mailoauth</string>\n        <string>--config</string>\n        <string>/home/me/mail/100% &lt;ok&gt; &amp; fine.toml</string>\n        <string>serve</string>\n    </array>"
            ),
            "{plist}"
        );
        assert!(plist.contains("<string>/home/me/Library/Logs/mailoauth.log</string>"));
        assert!(plist.contains(
            "<dict>\n        <key>XDG_STATE_HOME</key>\n        <string>/home/me/.local/state</string>\n        <key>PATH</key>"
        ));
        assert_well_formed(&plist);
        assert_well_formed(LAUNCHD_PLIST);
    }

    #[test]
    fn build_directories_are_recognised() {
        assert!(build_directory(Path::new("/src/mo/target/debug/mailoauth")).is_some());
        assert!(build_directory(Path::new("/home/me/.cargo/bin/mailoauth")).is_none());
    }

    /// A small well-formedness check (no XML parser in the dependency graph): every element
    /// closes in order, text has no bare `<` or `&`, comments hold no `--`; and, when python3 is
    /// installed, plistlib must read it with the expected program arguments.
    fn assert_well_formed(xml: &str) {
        let mut stack: Vec<&str> = Vec::new();
        let mut rest = xml;
        while let Some(start) = rest.find('<') {
            let text = &rest[..start];
            if let Some(amp) = text.find('&') {
                let entity = &text[amp..];
                assert!(
                    ["&amp;", "&lt;", "&gt;", "&quot;", "&apos;"]
                        .iter()
                        .any(|e| entity.starts_with(e)),
                    "bare & in {text:?}"
                );
            }
            rest = &rest[start..];
            if let Some(comment) = rest.strip_prefix("<!--") {
                let end = comment.find("-->").expect("unclosed comment");
                assert!(!comment[..end].contains("--"), "-- inside a comment");
                rest = &comment[end + 3..];
                continue;
            }
            let end = rest.find('>').expect("unclosed tag");
            let tag = &rest[1..end];
            rest = &rest[end + 1..];
            if tag.starts_with('?') || tag.starts_with('!') || tag.ends_with('/') {
                continue;
            }
            if let Some(name) = tag.strip_prefix('/') {
                assert_eq!(stack.pop(), Some(name), "mismatched </{name}>");
            } else {
                stack.push(tag.split_whitespace().next().unwrap());
            }
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");

        let python = std::process::Command::new("python3")
            .args([
                "-c",
                "import plistlib, sys; print(plistlib.loads(sys.stdin.buffer.read())['ProgramArguments'][-1])",
            ])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn();
        if let Ok(mut child) = python {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(xml.as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "plistlib refused it:\n{xml}");
            assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "serve");
        }
    }
}
