//! The `picket` binary: everything is in the library (see `picket::main`).

fn main() -> std::process::ExitCode {
    picket::main()
}
