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
    /// The campaign completed but its results are partial (cloud metrics missing): the load
    /// figures stand, the cloud side has gaps (recorded in the results and the report).
    pub const PARTIAL: i32 = 4;
    /// A bug: a load task panicked (EX_SOFTWARE). Infrastructure was restored.
    pub const INTERNAL: i32 = 70;
    /// Interrupted by Ctrl-C (after restoring); SIGTERM gives 143 and SIGHUP 129.
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
    /// A resource the command needs (or a journal names) does not exist.
    #[error("{0}")]
    Missing(String),
    /// A bug in trialrunner itself (a panicking task); never reported as success.
    #[error("internal error: {0}")]
    Internal(String),
    /// A stop request (Ctrl-C, SIGTERM, SIGHUP).
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
            Error::Infra(_) | Error::Missing(_) | Error::Io { .. } => exit::INFRA,
            Error::Internal(_) => exit::INTERNAL,
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
