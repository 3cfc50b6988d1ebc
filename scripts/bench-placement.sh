#!/usr/bin/env bash
# Runs the placement benchmark (criterion) and prints a markdown table of
# ns per lookup, each crate's time over ours (> 1.0 means we are faster).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
cargo bench -p shardscope-shared --bench placement >&2
python3 - "$CARGO_TARGET_DIR/criterion" <<'PY'
import json, os, sys
root = sys.argv[1]
print("| algorithm | N | shardscope ns | reference crate | crate ns | crate / ours |")
print("|---|---|---|---|---|---|")
def ns(group, fn):
    with open(os.path.join(root, group, fn, "new", "estimates.json")) as f:
        return json.load(f)["mean"]["point_estimate"]
for algo in ["ring", "rendezvous", "jump", "maglev", "modulo", "bounded"]:
    for n in [10, 100]:
        group = f"{algo}_N={n}"
        if not os.path.isdir(os.path.join(root, group)):
            continue
        ours = ns(group, "shardscope")
        others = sorted(d for d in os.listdir(os.path.join(root, group)) if d not in ("shardscope", "report"))
        if not others:
            print(f"| {algo} | {n} | {ours:.1f} | — | — | — |")
        for o in others:
            t = ns(group, o)
            print(f"| {algo} | {n} | {ours:.1f} | {o} | {t:.1f} | {t/ours:.2f}x |")
PY
