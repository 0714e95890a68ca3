//! The library's error type and how each kind maps to the CLI's exit codes.

/// Exit codes of the CLI (architecture.md).
pub mod exit {
    /// Everything passed.
    pub const OK: i32 = 0;
    /// Thresholds or checks failed.
    pub const CHECKS_FAILED: i32 = 1;
    /// Bad input: nothing was changed.
    pub const BAD_INPUT: i32 = 2;
    /// Infrastructure error (AWS, database, target unreachable).
    pub const INFRA: i32 = 3;
    /// Interrupted (after restoring).
    pub const INTERRUPTED: i32 = 130;
}

/// What can go wrong while acting on the world.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad trial, environment or arguments.
    #[error(transparent)]
    Input(#[from] crate::trial::Diagnostics),
    /// Bad arguments or files outside trial parsing.
    #[error("{0}")]
    Usage(String),
    /// A provider (AWS, database, SSH) failed.
    #[error("{0}")]
    Infra(String),
    /// The target failed a readiness or semantic check.
    #[error("{0}")]
    Check(String),
    /// The user pressed Ctrl-C.
    #[error("interrupted")]
    Interrupted,
    /// Local file system.
    #[error("{context}: {source}")]
    Io {
        /// What we were doing.
        context: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

impl Error {
    /// The exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) | Error::Usage(_) => exit::BAD_INPUT,
            Error::Infra(_) | Error::Io { .. } => exit::INFRA,
            Error::Check(_) => exit::CHECKS_FAILED,
            Error::Interrupted => exit::INTERRUPTED,
        }
    }

    /// An I/O error with context.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
