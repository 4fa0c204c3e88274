fn main() -> std::process::ExitCode {
    interim::cli::main()
}
