//! Secrets (passwords, client secrets, bearer tokens) in a wrapper that never prints them.

use std::fmt;

/// A secret string: `Debug` and `Display` show `***`; only [`Secret::expose`] reveals it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// Reads a secret from an environment variable; the error names the variable, not the value.
    pub fn from_env(var: &str) -> Result<Secret, String> {
        std::env::var(var).map(Secret).map_err(|_| {
            format!("environment variable {var} is not set (it should hold the secret)")
        })
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Replaces every occurrence of each secret in `text` with `***` (for messages from servers
/// and child processes that might echo one back).
pub fn redact(text: &str, secrets: &[&Secret]) -> String {
    secrets
        .iter()
        .filter(|s| !s.0.is_empty())
        .fold(text.to_string(), |t, s| t.replace(&s.0, "***"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s} {s:?}").contains("hunter2"));
        assert_eq!(
            redact("password hunter2 rejected", &[&s]),
            "password *** rejected"
        );
    }
}
