//! `[log]`: how log lines are written (their levels and targets come from `MESH_LOG`, see `crate::logging`).

use serde::{Deserialize, Serialize};

/// `log.format`: the shape of each log line on stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable: time, level, target, message and fields.
    #[default]
    Text,
    /// One JSON object per line (time, level, target, message and fields as keys).
    Json,
}

impl LogFormat {
    /// Every name, as the key table lists them.
    pub(crate) const NAMES: &'static [&'static str] = &["text", "json"];
}

/// `[log]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LogConfig {
    #[serde(default)]
    pub(crate) format: LogFormat,
    /// The consumer's access log: one call in N per shard (0: off).
    #[serde(default)]
    pub(crate) access_every: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names_are_the_serde_names() {
        for (name, format) in LogFormat::NAMES.iter().zip([LogFormat::Text, LogFormat::Json]) {
            let t: LogConfig = toml::from_str(&format!("format = {name:?}")).unwrap();
            assert_eq!(t.format, format);
        }
        assert!(toml::from_str::<LogConfig>("format = \"xml\"").is_err());
        assert_eq!(toml::from_str::<LogConfig>("").unwrap().format, LogFormat::Text);
        assert_eq!(
            toml::from_str::<LogConfig>("").unwrap().access_every,
            0,
            "off by default"
        );
    }
}
