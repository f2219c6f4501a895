//! The one error type of advclip: every message names the input (file, label, image) and what is wrong with it.

use std::fmt;

/// Everything that can go wrong on bad input. Library code returns this, never panics on user data.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A weight file or model folder that cannot be used (missing, corrupt, truncated, wrong shapes, pickle).
    #[error("{path}: {message}")]
    Weights { path: String, message: String },
    /// An image that cannot be decoded or is too large to decode safely.
    #[error("{name}: {message}")]
    Image { name: String, message: String },
    /// A model configuration that is inconsistent or unsupported.
    #[error("invalid model config: {0}")]
    Config(String),
    /// Anything else the caller gave that we cannot use (labels, templates, texts, shapes).
    #[error("{0}")]
    InvalidInput(String),
    /// Something went wrong inside advclip or its backend (a tensor read, a checkpoint that cannot be encoded): not
    /// the caller's input, so the message says what advclip was doing.
    #[error("internal error: {0}")]
    Internal(String),
    /// A file that cannot be read or written.
    /// (The cause is part of the message and deliberately not a `source()`: error chains printed with their sources,
    /// as the CLI's are, would otherwise say it twice.)
    #[error("{path}: {cause}")]
    Io { path: String, cause: std::io::Error },
}

impl Error {
    pub fn weights(path: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Weights { path: path.to_string(), message: message.to_string() }
    }
    pub fn image(name: impl fmt::Display, message: impl fmt::Display) -> Self {
        Error::Image { name: name.to_string(), message: message.to_string() }
    }
    pub fn invalid(message: impl fmt::Display) -> Self {
        Error::InvalidInput(message.to_string())
    }
    pub fn internal(message: impl fmt::Display) -> Self {
        Error::Internal(message.to_string())
    }
    pub fn io(path: impl fmt::Display, source: std::io::Error) -> Self {
        Error::Io { path: path.to_string(), cause: source }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
