//! The `trialrunner` binary: parses arguments and hands over to the library.

fn main() {
    std::process::exit(trialrunner::cli::main());
}
