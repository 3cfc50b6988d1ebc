#!/usr/bin/env bash
# The storage node against redis-server on this machine (see
# backend/benches/node_vs_redis.rs); prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
command -v redis-server >/dev/null || SHARDSCOPE_SETUP_TESTS=1 bash scripts/setup.sh
SHARDSCOPE_BENCH_NODE=1 cargo bench -q -p shardscope-backend --bench node_vs_redis
