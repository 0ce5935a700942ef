//! Log output through `tracing`: human-readable text, or one JSON object per line
//! for log shippers and SIEM ingestion. Logs go to standard error so that command
//! output on standard output stays machine-readable.

use clap::ValueEnum;
use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global subscriber. `filter` is an `EnvFilter` directive string such
/// as `info` or `pbx=debug,warn`; `None` means `info`. Installing twice is harmless
/// (the first subscriber stays).
pub fn init(format: LogFormat, filter: Option<&str>) -> crate::Result<()> {
    let filter = EnvFilter::try_new(filter.unwrap_or("info"))
        .map_err(|e| crate::Error::Invalid(format!("bad log filter: {e}")))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // An already-installed subscriber (tests running in one process) is fine.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_an_error_not_a_panic() {
        assert!(init(LogFormat::Text, Some("pbx=notalevel")).is_err());
    }
}
