//! Error types of the domain core. The CLI (and later the app) wraps them with `anyhow` context.

use std::path::PathBuf;

/// Errors of the domain core.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The tokenizer could not be loaded or failed.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A Parquet file could not be read or written.
    #[error("parquet {path}: {message}")]
    Parquet {
        /// The file involved.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// Input that cannot be used as a whole (not a line-level problem, which is counted instead).
    #[error("{0}")]
    InvalidInput(String),
    /// A Hub download failed.
    #[error("download: {0}")]
    Download(String),
    /// A model could not be loaded, trained or run.
    #[error("model: {0}")]
    Model(String),
    /// A command on another machine (over SSH) failed, or the machine could not be reached.
    #[error("{host}: {message}")]
    Remote {
        /// The host as the user named it.
        host: String,
        /// Whether the connection failed (rather than the command there).
        unreachable: bool,
        /// What ssh or the command said.
        message: String,
    },
    /// The job was cancelled by the user; not an error to show.
    #[error("cancelled")]
    Cancelled,
}

/// Result alias of the domain core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<candle_core::Error> for Error {
    fn from(e: candle_core::Error) -> Self {
        Self::Model(e.to_string())
    }
}

impl Error {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
