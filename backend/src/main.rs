//! The `shardscope` binary: parses the command line and hands over to the library.

use clap::Parser;

fn main() -> std::process::ExitCode {
    shardscope_backend::cli::main(shardscope_backend::cli::Cli::parse())
}
