//! `vmatte`: alpha mattes from videos.

fn main() -> std::process::ExitCode {
    vmatte_cli::main_from(std::env::args_os())
}
