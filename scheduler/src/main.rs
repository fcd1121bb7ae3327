//! The `havoc` binary: all behaviour lives in the library (`havoc::cli`).

fn main() -> std::process::ExitCode {
    havoc::cli::Cli::parse_and_run()
}
