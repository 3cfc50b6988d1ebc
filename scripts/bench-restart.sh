#!/usr/bin/env bash
# How long a node is away after kill -9 (see backend/benches/restart.rs);
# prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARDSCOPE_BENCH_RESTART=1 cargo bench -q -p shardscope-backend --bench restart
