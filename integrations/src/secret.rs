//! Secrets: a string that never prints itself, and resolution of the `{env, file}`
//! references the configuration uses (secrets are never written inline).

use std::{
    fmt,
    path::{Path, PathBuf},
};

use crate::Error;

/// A secret value. `Debug` and `Display` print `***`; read it with [`SecretString::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(value: impl Into<String>) -> Self {
        SecretString(value.into())
    }

    /// The secret itself. Never log or format the result.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        SecretString(value)
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Where a secret comes from: an environment variable or a file (`{env: NAME}`,
/// `{file: /path}` in the configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
}

impl SecretRef {
    /// Reads the secret now (see [`resolve`]).
    pub fn resolve(&self) -> Result<SecretString, Error> {
        resolve(self.env.as_deref(), self.file.as_deref())
    }
}

/// Reads a secret from the environment variable `env` or, when no variable is named, from
/// `file` (trailing newlines removed, as `echo secret > file` leaves one). An unset
/// variable, an unreadable file and an empty secret are errors; no error contains the value.
pub fn resolve(env: Option<&str>, file: Option<&Path>) -> Result<SecretString, Error> {
    match (env, file) {
        (Some(var), _) => {
            let value = std::env::var(var).map_err(|_| Error::SecretEnv {
                var: var.to_string(),
            })?;
            non_empty(value, || format!("environment variable {var}"))
        }
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
                path: path.to_path_buf(),
                source,
            })?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            non_empty(value, || format!("file {}", path.display()))
        }
        (None, None) => Err(Error::SecretNotConfigured),
    }
}

fn non_empty(value: String, from: impl FnOnce() -> String) -> Result<SecretString, Error> {
    if value.is_empty() {
        Err(Error::SecretEmpty { from: from() })
    } else {
        Ok(SecretString(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = SecretString::new("hunter2");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(&s)), "Some(***)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn reads_a_file_without_its_trailing_newline() {
        let dir = std::env::temp_dir().join(format!("havoc-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("token");
        std::fs::write(&path, "s3cr3t value\r\n\n").expect("write secret");
        let secret = resolve(None, Some(&path)).expect("file secret");
        assert_eq!(secret.expose(), "s3cr3t value");

        std::fs::write(&path, "\n").expect("write empty secret");
        let err = resolve(None, Some(&path)).expect_err("empty secret");
        assert_eq!(err.kind(), "secret");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn reads_the_environment_and_errors_do_not_leak() {
        // PATH is always set; its value must not appear in any error.
        let secret = resolve(Some("PATH"), None).expect("PATH is set");
        assert!(!secret.expose().is_empty());

        let err = resolve(Some("HAVOC_TEST_SURELY_UNSET_VARIABLE"), None).expect_err("unset");
        assert!(err.to_string().contains("HAVOC_TEST_SURELY_UNSET_VARIABLE"));
        assert_eq!(err.kind(), "secret");

        let missing = Path::new("/nonexistent/havoc/secret");
        let err = resolve(None, Some(missing)).expect_err("missing file");
        assert!(err.to_string().contains("/nonexistent/havoc/secret"));

        assert!(matches!(
            resolve(None, None),
            Err(Error::SecretNotConfigured)
        ));
    }

    #[test]
    fn secret_ref_deserializes_and_rejects_unknown_fields() {
        let r: SecretRef = serde_json::from_str(r#"{"env":"SLACK_BOT_TOKEN"}"#).expect("env ref");
        assert_eq!(r.env.as_deref(), Some("SLACK_BOT_TOKEN"));
        assert!(serde_json::from_str::<SecretRef>(r#"{"value":"inline"}"#).is_err());
    }
}
