//! The `ozbridge` binary.

fn main() -> std::process::ExitCode {
    ozbridge::install_crypto();
    ozbridge::cli::main()
}
