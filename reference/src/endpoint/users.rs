//! The endpoint's users file (`--users`): one `user:password` per line, the secrets its PAP and
//! CHAP authenticator checks peers against.
//!
//! The user name is everything before the first `:` and may hold no white space (a stray
//! space would make a name nobody types); the password is everything after it, verbatim, so it
//! may hold `:` and spaces. Blank lines and lines whose first non-blank character is `#` are
//! skipped. A line ending in CR LF loses its CR.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use l2tp::ppp::auth::{Secrets, MAX_FIELD_LEN};

/// Users by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Users {
    secrets: HashMap<Vec<u8>, Vec<u8>>,
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("--users {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("--users {}: line {line}: {reason}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("--users {}: no user in the file", path.display())]
    NoUsers { path: PathBuf },
}

impl Users {
    /// Reads and parses the file at `path`.
    pub fn load(path: &Path) -> Result<Users, UsersError> {
        let text = std::fs::read_to_string(path).map_err(|source| UsersError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Users::parse(&text, path)
    }

    /// Parses a users file's text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Users, UsersError> {
        let mut secrets = HashMap::new();
        let mut first_seen: HashMap<&str, usize> = HashMap::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let bad = |reason: String| UsersError::Line {
                path: path.to_path_buf(),
                line,
                reason,
            };
            let entry = raw.strip_suffix('\r').unwrap_or(raw);
            let trimmed = entry.trim_start();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let (user, password) = entry
                .split_once(':')
                .ok_or_else(|| bad("expected user:password".into()))?;
            if user.is_empty() {
                return Err(bad("empty user name".into()));
            }
            if user.chars().any(char::is_whitespace) {
                return Err(bad(format!("user name {user:?} holds white space")));
            }
            for (what, value) in [("user name", user), ("password", password)] {
                if value.len() > MAX_FIELD_LEN {
                    return Err(bad(format!(
                        "{what} of {} octets (PAP carries at most {MAX_FIELD_LEN})",
                        value.len()
                    )));
                }
            }
            if let Some(first) = first_seen.insert(user, line) {
                return Err(bad(format!("user {user:?} already given on line {first}")));
            }
            secrets.insert(user.as_bytes().to_vec(), password.as_bytes().to_vec());
        }
        if secrets.is_empty() {
            return Err(UsersError::NoUsers {
                path: path.to_path_buf(),
            });
        }
        Ok(Users { secrets })
    }

    pub fn len(&self) -> usize {
        self.secrets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.secrets.is_empty()
    }
}

impl Secrets for Users {
    fn lookup(&self, name: &[u8]) -> Option<&[u8]> {
        self.secrets.lookup(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Users, UsersError> {
        Users::parse(text, Path::new("/etc/users.txt"))
    }

    #[test]
    fn reads_users_with_comments_blank_lines_and_colons_in_passwords() {
        let users = parse(
            "# subscribers\n\nalice:secret\r\n   # indented comment\nbob:pa:ss word\ncarol:\n",
        )
        .unwrap();
        assert_eq!(users.len(), 3);
        assert_eq!(users.lookup(b"alice"), Some(&b"secret"[..]));
        assert_eq!(users.lookup(b"bob"), Some(&b"pa:ss word"[..]));
        assert_eq!(users.lookup(b"carol"), Some(&b""[..]));
        assert_eq!(users.lookup(b"dave"), None);
    }

    #[test]
    fn a_bad_line_is_named_by_file_and_number() {
        for (text, line, needle) in [
            ("alice:a\nbob\n", 2, "expected user:password"),
            ("# c\n\n:pw\n", 3, "empty user name"),
            ("al ice:pw\n", 1, "white space"),
            ("a:1\nb:2\na:3\n", 3, "already given on line 1"),
        ] {
            let err = parse(text).unwrap_err();
            let message = err.to_string();
            assert!(
                matches!(err, UsersError::Line { line: l, .. } if l == line),
                "{text:?}: {message}"
            );
            assert!(
                message.starts_with(&format!("--users /etc/users.txt: line {line}: ")),
                "{message}"
            );
            assert!(message.contains(needle), "{message}");
        }
        let long = format!("u:{}\n", "x".repeat(256));
        assert!(parse(&long).unwrap_err().to_string().contains("256 octets"));
        assert!(matches!(
            parse("# nobody\n"),
            Err(UsersError::NoUsers { .. })
        ));
    }

    #[test]
    fn a_missing_file_is_named() {
        let err = Users::load(Path::new("/nonexistent/users")).unwrap_err();
        assert!(err.to_string().starts_with("--users /nonexistent/users: "));
    }
}
