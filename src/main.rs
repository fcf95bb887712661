fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(ferry::cli::main())
}
