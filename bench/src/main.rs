//! `vecraft-bench --help` says what it does.

fn main() {
    if let Err(e) = vecraft_bench::cli::main_with(std::env::args_os()) {
        eprintln!("vecraft-bench: {e:#}");
        std::process::exit(1);
    }
}
