//! The `havoc` binary: all behaviour lives in the library (`havoc::cli`).

// See scheduler/Cargo.toml: the image's static binary uses mimalloc, not musl's allocator.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    havoc::cli::Cli::parse_and_run()
}
