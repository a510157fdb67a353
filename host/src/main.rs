//! The `executor` binary: see `executor --help`.

fn main() -> std::process::ExitCode {
    executor::cli::main()
}
