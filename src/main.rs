//! The `nightcrier` binary: everything lives in the library; this only hands over to the CLI.

/// mimalloc instead of the system allocator: ingest allocates per event on several threads, and
/// glibc's malloc/free took about a fifth of the process's CPU in a profile of sustained ingest
/// (docs/benchmarks.md, "Ingest through the binary").
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    nightcrier::cli::main()
}
