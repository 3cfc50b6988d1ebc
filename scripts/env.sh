# Sourced by the scripts: where builds go. The target dir may live outside the
# clone (SHARDSCOPE_TARGET) so that CI runs on one machine reuse it; nothing
# depends on it being warm.
export CARGO_TARGET_DIR="${SHARDSCOPE_TARGET:-$PWD/target}"
export PATH="$HOME/.cargo/bin:$PATH"
