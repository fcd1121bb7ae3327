//! Logs: to stderr, filtered by `HAVOC_LOG` (an `EnvFilter`; default `info,kube=warn` for
//! the service and `warn` for the one-shot commands).

/// Installs the log subscriber (once per process).
pub fn init(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("HAVOC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
