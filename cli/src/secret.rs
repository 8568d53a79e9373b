//! Secrets off the command line: every secret flag (`--report-key`, `--secret`) also comes from
//! a file (`…-file PATH`) or the environment, because any local user reads a process's argv in
//! `/proc/PID/cmdline`. A key file readable by its group or others is refused, as ssh refuses
//! a private key; a secret given in argv still works, with a one-line warning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;

/// Where one secret flag may come from.
pub struct SecretFlag<'a> {
    /// `--report-key`: the flag's name, for messages.
    pub flag: &'a str,
    /// The value given on the command line.
    pub value: Option<&'a str>,
    /// `--report-key-file PATH`.
    pub file: Option<&'a Path>,
    /// `L2TPKIT_REPORT_KEY`.
    pub env: &'a str,
}

impl SecretFlag<'_> {
    /// The secret, from the file, the environment or the command line (at most one of them);
    /// `None` when none was given.
    pub fn resolve(&self) -> anyhow::Result<Option<String>> {
        let from_env = std::env::var(self.env).ok().filter(|v| !v.is_empty());
        let given = [
            self.value.is_some(),
            self.file.is_some(),
            from_env.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            anyhow::bail!(
                "{flag}, {flag}-file and {env}: give the secret one way only",
                flag = self.flag,
                env = self.env
            );
        }
        if let Some(path) = self.file {
            return read_key_file(self.flag, path).map(Some);
        }
        if let Some(value) = from_env {
            return Ok(Some(value));
        }
        Ok(self.value.map(str::to_string))
    }
}

/// The one-line warning for a secret given in argv (the commands' `run`, which alone know that
/// their flags came from a command line: the lab hands its in-process LAC a secret in memory).
pub fn warn_if_given(flag: &str, value: Option<&str>, env: &str) {
    if value.is_some() {
        eprintln!(
            "l2tpkit: warning: {flag} on the command line can be read by every local user \
             (/proc/PID/cmdline); use {flag}-file PATH or {env}"
        );
    }
}

/// A secret from a file: its first line, without the line end. Refused when the file is
/// readable or writable by its group or others (naming the file and its mode), or empty.
pub fn read_key_file(flag: &str, path: &Path) -> anyhow::Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{flag}-file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        anyhow::bail!(
            "{flag}-file {}: mode {mode:04o} lets others read it; chmod 600 it (as ssh wants of \
             a private key)",
            path.display()
        );
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("{flag}-file {}", path.display()))?;
    let key = text.lines().next().unwrap_or_default().to_string();
    if key.is_empty() {
        anyhow::bail!("{flag}-file {}: empty", path.display());
    }
    Ok(key)
}

/// Writes `secret` to `path` readable by its owner alone (0600 from the start: never a moment
/// when others could read it).
pub fn write_key_file(path: &Path, secret: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open(): set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(secret.as_bytes())?;
    file.write_all(b"\n")
}

/// The load reports' key of a role (`--report-key`, `--report-key-file`,
/// `L2TPKIT_REPORT_KEY`): `None` when none was given; an empty one is refused.
pub fn report_key(value: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    let key = SecretFlag {
        flag: "--report-key",
        value,
        file,
        env: "L2TPKIT_REPORT_KEY",
    }
    .resolve()?;
    if key.as_deref() == Some("") {
        anyhow::bail!("--report-key: empty; the master refuses what an empty key seals");
    }
    Ok(key)
}

/// [`report_key`] for a role that cannot run without one (master, agent).
pub fn required_report_key(value: Option<&str>, file: Option<&Path>) -> anyhow::Result<String> {
    report_key(value, file)?.ok_or_else(|| {
        anyhow::anyhow!("--report-key-file (or L2TPKIT_REPORT_KEY, or --report-key) is required")
    })
}

/// The tunnel secret (`--secret`, `--secret-file`, `L2TPKIT_SECRET`), if any.
pub fn tunnel_secret(value: Option<&str>, file: Option<&Path>) -> anyhow::Result<Option<String>> {
    SecretFlag {
        flag: "--secret",
        value,
        file,
        env: "L2TPKIT_SECRET",
    }
    .resolve()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("l2tpkit-secret-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_key_file_for_its_owner_alone_is_read_and_a_loose_one_refused() {
        let dir = scratch("modes");
        let path = dir.join("report.key");
        write_key_file(&path, "s3cret").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_key_file("--report-key", &path).unwrap(), "s3cret");
        for loose in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(loose)).unwrap();
            let err = read_key_file("--report-key", &path)
                .unwrap_err()
                .to_string();
            assert!(err.contains(&format!("{loose:04o}")), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
            assert!(err.starts_with("--report-key-file"), "{err}");
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert_eq!(read_key_file("--report-key", &path).unwrap(), "s3cret");
        let empty = dir.join("empty.key");
        write_key_file(&empty, "").unwrap();
        assert!(read_key_file("--secret", &empty).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn one_way_only() {
        let dir = scratch("ways");
        let path = dir.join("k");
        write_key_file(&path, "from-file").unwrap();
        let flag = SecretFlag {
            flag: "--secret",
            value: Some("x"),
            file: Some(&path),
            env: "L2TPKIT_TEST_UNSET_SECRET",
        };
        assert!(flag
            .resolve()
            .unwrap_err()
            .to_string()
            .contains("one way only"));
        let file_only = SecretFlag {
            value: None,
            ..flag
        };
        assert_eq!(file_only.resolve().unwrap().as_deref(), Some("from-file"));
        let none = SecretFlag {
            flag: "--secret",
            value: None,
            file: None,
            env: "L2TPKIT_TEST_UNSET_SECRET",
        };
        assert_eq!(none.resolve().unwrap(), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
