//! What the checks of every section share: [`Check`] (the file, for positions, and the list of
//! problems to add to), and the helpers that the trial's and the environment's checks both use.

use std::time::Duration;

use sha2::{Digest, Sha256};

use super::quantities::{Rate, Span};
use super::source::{Diagnostic, Source};

/// The SHA-256 of a file's text (hex), as a checked trial or environment records it.
pub(super) fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The fields of the problems found so far.
pub(super) fn fields_of(diags: &[Diagnostic]) -> Vec<String> {
    diags.iter().map(|d| d.field.clone()).collect()
}

/// A name that can name a folder: letters, digits, `-` and `_`.
pub(super) fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// One section's checks: the source for positions and the list to add to.
pub(super) struct Check<'a> {
    /// The file checked, for positions.
    pub(super) src: &'a Source,
    /// The problems found so far.
    pub(super) diags: &'a mut Vec<Diagnostic>,
}

impl Check<'_> {
    /// A problem at `field`, with a hint.
    pub(super) fn err(&mut self, field: &str, message: impl Into<String>, hint: Option<&str>) {
        self.diags.push(
            self.src
                .diagnostic(field, message, hint.map(str::to_string)),
        );
    }

    /// A span, when given, in `(min, max]` (`min` exclusive when zero: longer than zero).
    pub(super) fn span(
        &mut self,
        field: &str,
        span: Option<Span>,
        min: Duration,
        max: Duration,
        what: &str,
    ) {
        let Some(s) = span else { return };
        if s.0.is_zero() && min.is_zero() {
            self.err(
                field,
                format!("{what} must be longer than zero"),
                Some("e.g. 150s"),
            );
        } else if s.0 < min {
            self.err(
                field,
                format!(
                    "{what} ({s}) is shorter than {}",
                    humantime::format_duration(min)
                ),
                None,
            );
        } else if s.0 > max {
            self.err(
                field,
                format!(
                    "{what} ({s}) is longer than {}",
                    humantime::format_duration(max)
                ),
                Some("check the unit (s, m, h)"),
            );
        }
    }

    /// An integer in `[min, max]`.
    pub(super) fn int(
        &mut self,
        field: &str,
        v: i64,
        min: i64,
        max: i64,
        what: &str,
    ) -> Option<u32> {
        if v < min {
            self.err(
                field,
                format!("{what} must be at least {min}, got {v}"),
                None,
            );
            None
        } else if v > max {
            self.err(
                field,
                format!("{what} must be at most {max}, got {v}"),
                None,
            );
            None
        } else {
            Some(v as u32)
        }
    }

    /// A rate above zero (rates are finite and bounded by parsing).
    pub(super) fn positive_rate(&mut self, field: &str, r: Rate, what: &str) {
        if r.0 <= 0.0 {
            self.err(field, format!("{what} must be above zero"), None);
        }
    }
}
