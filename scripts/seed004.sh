#!/usr/bin/env bash
# Builds seed 004's executables, `clt`, `svr` and `master-svr` (thin
# front-ends of shardscope: backend/src/seed004.rs), into ./build/dev/ where
# that seed's harness runs them: `./build/dev/master-svr -p MASTER_PORT`, ...
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo build --release -p shardscope-backend --bin clt --bin svr --bin master-svr
mkdir -p build/dev
for bin in clt svr master-svr; do
  install -m 0755 "$CARGO_TARGET_DIR/release/$bin" build/dev/
done
echo "built build/dev/clt build/dev/svr build/dev/master-svr"
