//! Logs: to stderr, filtered by `HAVOC_LOG` (an `EnvFilter`; default `info,kube=warn` for
//! the service and `warn` for the one-shot commands).
//!
//! Two formats (`--log-format`, a global option):
//!
//! - `text`: one human line per event. Colours only when stderr is a terminal (and
//!   `NO_COLOR` is not set): a file, a pipe or a container log never gets escape codes.
//! - `json`: one object per line, for log pipelines:
//!   `{"timestamp":"2026-03-30T09:00:00.123456Z","level":"INFO","target":"havoc::...",
//!   "message":"...", FIELDS..., "span":{...},"spans":[...]}`. The event's fields are
//!   top-level keys beside `message`; `span`/`spans` appear inside spans.
//!
//! The default is `text` on a terminal and `json` otherwise (a container, a file, a pipe).

use std::io::IsTerminal as _;

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// One human line per event.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// `text` when stderr is a terminal, `json` otherwise.
    pub fn default_for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            LogFormat::Text
        } else {
            LogFormat::Json
        }
    }
}

/// Whether text logs get ANSI colours: only on a terminal, and not with `NO_COLOR`.
fn colours(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

/// Installs the log subscriber (once per process); `format: None` picks by stderr.
pub fn init(default: &str, format: Option<LogFormat>) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAVOC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let format = format.unwrap_or_else(LogFormat::default_for_stderr);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(colours(
                std::io::stderr().is_terminal(),
                std::env::var_os("NO_COLOR"),
            ))
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_ansi(false)
            .try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_only_on_a_terminal_without_no_color() {
        assert!(colours(true, None));
        assert!(colours(true, Some("".into())));
        assert!(!colours(true, Some("1".into())));
        assert!(!colours(false, None));
    }
}
