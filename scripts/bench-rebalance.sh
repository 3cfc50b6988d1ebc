#!/usr/bin/env bash
# Rebalance of 1,000,000 keys onto a fifth node, and gateway vs direct GET
# throughput (see backend/benches/rebalance.rs); prints a markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
SHARDSCOPE_BENCH_REBALANCE=1 cargo bench -q -p shardscope-backend --bench rebalance
