//! Picket with the Acme plugins linked in. Build and run it instead of
//! `picket`: `cargo run -p picket-acme -- serve`.

fn main() -> std::process::ExitCode {
    // Referencing the crate keeps its link-time registrations in the binary.
    picket_acme::link();
    picket::main()
}
