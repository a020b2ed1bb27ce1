//! [`ConfigError`]: one line, naming the dotted key, with the file position when there is one.

use std::path::PathBuf;

/// A 1-based position in the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Location {
    pub(crate) line: usize,
    pub(crate) column: usize,
}

impl Location {
    pub(super) fn at(text: &str, offset: usize) -> Location {
        let before = &text[..offset.min(text.len())];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Location {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

fn at(location: &Option<Location>) -> String {
    match location {
        Some(l) => format!(" (line {}, column {})", l.line, l.column),
        None => String::new(),
    }
}

/// A configuration error: one line, naming the dotted key wherever one applies, with the file position
/// when the offending value came from the file.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    /// The `--config` file cannot be read.
    #[error("cannot read config file {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not TOML (toml's message, its lines joined with "; ").
    #[error("TOML syntax error{}: {message}", at(.location))]
    Syntax {
        message: String,
        location: Option<Location>,
    },
    /// A key (or section) the agent does not know; `hint` suggests the likely intended key.
    #[error("unknown key `{key}`{}; {hint}", at(.location))]
    UnknownKey {
        key: String,
        hint: String,
        location: Option<Location>,
    },
    /// A value outside its range.
    #[error("{key}: must be between {min} and {max}, got {got}{}", at(.location))]
    OutOfRange {
        key: String,
        min: u64,
        max: u64,
        got: u64,
        location: Option<Location>,
    },
    /// A value of the wrong type or otherwise unacceptable.
    #[error("{key}: {message}{}", at(.location))]
    Invalid {
        key: String,
        message: String,
        location: Option<Location>,
    },
    /// A section or key the role needs is absent.
    #[error("{key}: {reason}")]
    Required { key: String, reason: String },
}

impl ConfigError {
    /// The dotted key the error is about (`None` for read and syntax errors).
    pub(crate) fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
            ConfigError::UnknownKey { key, .. }
            | ConfigError::OutOfRange { key, .. }
            | ConfigError::Invalid { key, .. }
            | ConfigError::Required { key, .. } => Some(key),
        }
    }

    /// Whether the error is about the file's text (so the file name belongs in front of the message).
    pub(crate) fn is_in_file(&self) -> bool {
        match self {
            ConfigError::Syntax { .. } => true,
            ConfigError::UnknownKey { location, .. }
            | ConfigError::OutOfRange { location, .. }
            | ConfigError::Invalid { location, .. } => location.is_some(),
            ConfigError::Read { .. } | ConfigError::Required { .. } => false,
        }
    }

    pub(super) fn with_location(mut self, loc: Option<Location>) -> Self {
        match &mut self {
            ConfigError::UnknownKey { location, .. }
            | ConfigError::OutOfRange { location, .. }
            | ConfigError::Invalid { location, .. }
            | ConfigError::Syntax { location, .. } => {
                if location.is_none() {
                    *location = loc;
                }
            }
            ConfigError::Read { .. } | ConfigError::Required { .. } => {}
        }
        self
    }
}

pub(super) fn invalid(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        message: message.into(),
        location: None,
    }
}
