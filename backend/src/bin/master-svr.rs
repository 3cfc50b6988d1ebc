//! Seed 004's `master-svr`, with that seed's flags (see `shardscope_backend::seed004`).

fn main() -> std::process::ExitCode {
    shardscope_backend::seed004::master_svr()
}
