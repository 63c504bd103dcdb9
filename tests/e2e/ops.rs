//! Operations: `install-service` (the systemd user unit written with the binary's absolute path
//! and --config, mode 0644, never overwritten without --force, checked by `systemd-analyze
//! verify` where it is installed), `completions` (bash accepts the script) and `man` (a roff page
//! naming every subcommand).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

/// Where install-service writes the unit in an isolated HOME.
fn unit_path(env: &Env) -> PathBuf {
    env.home
        .path()
        .join(".config/systemd/user/mailoauth.service")
}

/// The binary as the kernel reports it (what `current_exe` returns).
fn bin() -> String {
    std::fs::canonicalize(BIN)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string()
}

/// The subcommands, as `mailoauth --help` lists them (so new ones are covered without editing
/// this file).
fn subcommands(env: &Env) -> Vec<String> {
    let help = env.run(&["--help"]).stdout_text();
    let list = help
        .split("Commands:\n")
        .nth(1)
        .expect("--help lists commands");
    let names: Vec<String> = list
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    for expected in [
        "token",
        "authorize",
        "passwd",
        "serve",
        "import",
        "install-service",
        "completions",
        "man",
    ] {
        assert!(names.iter().any(|n| n == expected), "{expected}: {help}");
    }
    names
}

/// The `[Section]` → `key=value` lines of a unit, comments and blank lines left out.
fn unit_keys(text: &str) -> Vec<(String, String, String)> {
    let mut section = String::new();
    let mut keys = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
            continue;
        }
        let (key, value) = line.split_once('=').expect("key=value");
        keys.push((section.clone(), key.to_string(), value.to_string()));
    }
    keys
}

fn value<'a>(keys: &'a [(String, String, String)], section: &str, key: &str) -> &'a str {
    let found: Vec<_> = keys
        .iter()
        .filter(|(s, k, _)| s == section && k == key)
        .collect();
    assert_eq!(found.len(), 1, "[{section}] {key}: {keys:?}");
    &found[0].2
}

#[test]
fn install_service_writes_the_unit_with_the_binary_and_config() {
    let env = Env::new();
    let store = env.home.path().join("tokens elsewhere");
    env.write_config(&format!("{BASE64_STORE}dir = \"{}\"\n", store.display()));
    // A relative --config becomes absolute: the service does not start in this directory.
    let out = env
        .cmd()
        .current_dir(env.home.path())
        .args([
            "--config",
            ".config/mailoauth/config.toml",
            "install-service",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(out.stdout.is_empty(), "{}", out.stdout_text());
    assert!(
        out.stderr_text()
            .contains("systemctl --user daemon-reload && systemctl --user enable --now mailoauth"),
        "{}",
        out.stderr_text()
    );

    let path = unit_path(&env);
    let unit = std::fs::read_to_string(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "{mode:o}");
    let keys = unit_keys(&unit);
    assert_eq!(
        value(&keys, "Service", "ExecStart"),
        format!("{} --config {} serve", bin(), env.config.display())
    );
    assert_eq!(
        value(&keys, "Service", "ExecReload"),
        "/bin/kill -HUP $MAINPID"
    );
    assert_eq!(value(&keys, "Service", "Restart"), "on-failure");
    assert_eq!(value(&keys, "Service", "NoNewPrivileges"), "yes");
    assert_eq!(
        value(&keys, "Service", "RestrictAddressFamilies"),
        "AF_UNIX AF_INET AF_INET6"
    );
    assert_eq!(value(&keys, "Install", "WantedBy"), "default.target");
    // The sandbox's writable state directory exists, private, before the unit ever starts.
    let state = env.state_dir();
    // So is the store that [store] dir moved elsewhere.
    if unit.contains("\nProtectSystem=strict\n") {
        assert!(
            value(&keys, "Service", "ReadWritePaths").starts_with(&format!(
                "{} \"{}\" ",
                state.display(),
                store.display()
            )),
            "{unit}"
        );
    }
    for dir in [&state, &store] {
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}: {mode:o}", dir.display());
    }

    // Without --config, none is passed.
    let env = Env::new();
    let out = env.run(&["install-service"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let unit = std::fs::read_to_string(unit_path(&env)).unwrap();
    assert_eq!(
        value(&unit_keys(&unit), "Service", "ExecStart"),
        format!("{} serve", bin())
    );
}

#[test]
fn install_service_refuses_to_overwrite_a_different_file_without_force() {
    let env = Env::new();
    let out = env.run(&["install-service"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let path = unit_path(&env);

    // The same content again: nothing to do, and that is fine.
    let out = env.run(&["install-service"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(out.stderr_text().contains("already up to date"));

    let edited = "[Service]\nExecStart=/usr/local/bin/my-own-mailoauth serve\n";
    std::fs::write(&path, edited).unwrap();
    let out = env.run(&["install-service"]);
    assert_eq!(out.code(), 1, "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("--force"),
        "{}",
        out.stderr_text()
    );
    assert_eq!(std::fs::read_to_string(&path).unwrap(), edited);

    let out = env.run(&["install-service", "--force"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert!(
        out.stderr_text().contains("restart"),
        "{}",
        out.stderr_text()
    );
    let unit = std::fs::read_to_string(&path).unwrap();
    assert!(
        unit.contains(&format!("\nExecStart={} serve\n", bin())),
        "{unit}"
    );
}

#[test]
fn install_service_print_shows_what_it_would_write_and_writes_nothing() {
    let env = Env::new();
    let printed = env.run(&[
        "--config",
        "/etc/mailoauth.toml",
        "install-service",
        "--print",
    ]);
    assert!(printed.status.success(), "{}", printed.stderr_text());
    assert!(!unit_path(&env).exists(), "--print must not write the unit");
    assert!(
        printed.stderr_text().contains("systemctl --user"),
        "{}",
        printed.stderr_text()
    );

    let out = env.run(&["--config", "/etc/mailoauth.toml", "install-service"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    assert_eq!(
        printed.stdout_text(),
        std::fs::read_to_string(unit_path(&env)).unwrap()
    );
}

#[test]
fn installed_unit_passes_systemd_analyze_verify() {
    let env = Env::new();
    let out = env.run(&["install-service"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let path = unit_path(&env);
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/mailoauth.service");

    let Some(analyze) = which("systemd-analyze") else {
        // tests/run installs it (Debian package `systemd`); the key checks above still ran.
        eprintln!("systemd-analyze is not installed: skipping `systemd-analyze verify`");
        return;
    };
    let runtime = env.home.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    for unit in [path.as_path(), shipped.as_path()] {
        for scope in [&["--user"][..], &[][..]] {
            let out = Command::new(&analyze)
                .args(scope)
                .arg("verify")
                .arg(unit)
                .env("HOME", env.home.path())
                .env("XDG_RUNTIME_DIR", &runtime)
                .env("SYSTEMD_LOG_LEVEL", "warning")
                .output()
                .unwrap();
            // verify exits 0 on unknown keys and bad values, and only warns: any output fails.
            assert!(
                out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
                "systemd-analyze {scope:?} verify {}:\n{}{}",
                unit.display(),
                out.stdout_text(),
                out.stderr_text()
            );
        }
    }

    // And it does find mistakes: a misspelt key and a missing binary.
    let broken = env.home.path().join("broken/mailoauth.service");
    std::fs::create_dir_all(broken.parent().unwrap()).unwrap();
    let unit = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &broken,
        unit.replace("NoNewPrivileges=yes", "NoNewPrivilege=yes")
            .replace(&bin(), "/nonexistent/mailoauth"),
    )
    .unwrap();
    let out = Command::new(&analyze)
        .args(["--user", "verify"])
        .arg(&broken)
        .env("HOME", env.home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .output()
        .unwrap();
    let said = out.stderr_text();
    assert!(said.contains("NoNewPrivilege"), "{said}");
    assert!(said.contains("/nonexistent/mailoauth"), "{said}");
}

#[test]
fn bash_completions_name_every_subcommand_and_parse() {
    let env = Env::new();
    let out = env.run(&["completions", "bash"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let script = out.stdout_text();
    for name in subcommands(&env) {
        assert!(
            script.contains(&name),
            "{name} missing from the bash completions"
        );
    }
    let file = env.home.path().join("mailoauth.bash");
    std::fs::write(&file, &script).unwrap();
    let check = Command::new("bash").arg("-n").arg(&file).output().unwrap();
    assert!(check.status.success(), "bash -n: {}", check.stderr_text());

    // The completion function completes subcommand names.
    let probe = format!(
        "source {}; COMP_WORDS=(mailoauth inst); COMP_CWORD=1; COMP_LINE='mailoauth inst'; COMP_POINT=14; _mailoauth mailoauth inst mailoauth; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash").args(["-c", &probe]).output().unwrap();
    assert!(
        out.stdout_text().lines().any(|l| l == "install-service"),
        "{}{}",
        out.stdout_text(),
        out.stderr_text()
    );

    for shell in ["zsh", "fish", "elvish", "powershell"] {
        let out = env.run(&["completions", shell]);
        assert!(out.status.success(), "{shell}: {}", out.stderr_text());
        assert!(out.stdout_text().contains("install-service"), "{shell}");
    }
    let out = env.run(&["completions", "tcsh"]);
    assert_eq!(out.code(), 2, "an unknown shell is a usage error");
}

#[test]
fn man_page_is_roff_and_names_every_subcommand() {
    let env = Env::new();
    let out = env.run(&["man"]);
    assert!(out.status.success(), "{}", out.stderr_text());
    let page = out.stdout_text();
    // clap_mangen defines the \*(Aq string first; .TH is the first request after it.
    let first = page
        .lines()
        .find(|l| !l.starts_with(".ie ") && !l.starts_with(".el "))
        .unwrap();
    assert!(first.starts_with(".TH mailoauth 1 "), "{first}");
    for name in subcommands(&env) {
        let roff = format!("\\fBmailoauth {}\\fR", name.replace('-', "\\-"));
        assert!(page.contains(&roff), "{roff} missing from the man page");
    }
    assert!(
        !page.contains("mailoauth\\-token(1)"),
        "no pages that do not exist"
    );

    // groff, where installed (man-db's), renders it without a warning.
    if let Some(groff) = which("groff") {
        let file = env.home.path().join("mailoauth.1");
        std::fs::write(&file, &page).unwrap();
        let out = Command::new(groff)
            .args(["-k", "-man", "-ww", "-z"])
            .arg(&file)
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "groff: {}",
            out.stderr_text()
        );
    }
}

/// The path of `program` on PATH, if any.
fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| p.is_file())
}
