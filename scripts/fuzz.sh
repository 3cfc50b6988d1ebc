#!/usr/bin/env bash
# Builds every fuzz target (fuzz/, cargo-fuzz + libFuzzer on the nightly
# toolchain, AddressSanitizer) once, then runs each for
# SHARDSCOPE_FUZZ_SECONDS seconds (default 15) on a scratch copy of its seed
# corpus (fuzz/corpus/TARGET), so the tree stays as it was. A crash, a
# failed check or a hang (over 10 s on one input) fails the script, naming
# the input kept in fuzz/artifacts/TARGET/ and the command that replays it.
# A longer run: SHARDSCOPE_FUZZ_SECONDS=600 scripts/fuzz.sh. One target:
# scripts/fuzz.sh zmtp_node. SHARDSCOPE_FUZZ_SANITIZER=none builds without
# ASan (faster; catches panics and failed checks only).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

log() { printf '\033[1;34m[fuzz]\033[0m %s\n' "$*" >&2; }
seconds="${SHARDSCOPE_FUZZ_SECONDS:-15}"
sanitizer="${SHARDSCOPE_FUZZ_SANITIZER:-address}"
target_dir="${SHARDSCOPE_FUZZ_TARGET:-$CARGO_TARGET_DIR/fuzz}"

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  log "fuzzing needs the nightly toolchain: rustup toolchain install nightly"
  exit 1
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  log "cargo install cargo-fuzz 0.13.2"
  env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version 0.13.2 --locked
fi

fuzz() { cargo +nightly fuzz "$@"; }
build_flags=(-O -s "$sanitizer" --target-dir "$target_dir")
if [ "$#" -gt 0 ]; then
  targets=("$@")
  for t in "${targets[@]}"; do fuzz build "${build_flags[@]}" "$t"; done
else
  mapfile -t targets < <(fuzz list)
  fuzz build "${build_flags[@]}"
fi

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for t in "${targets[@]}"; do
  artifacts="$PWD/fuzz/artifacts/$t"
  mkdir -p "$scratch/$t" "$artifacts"
  cp fuzz/corpus/"$t"/* "$scratch/$t/"
  log "$t: ${seconds}s"
  if ! fuzz run "${build_flags[@]}" "$t" "$scratch/$t" -- \
      -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$artifacts/" 2>"$scratch/$t.log"; then
    tail -n 60 "$scratch/$t.log" >&2
    artifact=$(grep -o "$artifacts/[^ ]*" "$scratch/$t.log" | tail -n 1 || true)
    log "FAILED: $t; input: ${artifact:-(none written)}"
    log "replay: cargo +nightly fuzz run ${build_flags[*]} $t ${artifact:-fuzz/artifacts/$t/<input>}"
    failed+=("$t")
  else
    grep -E "stat::number_of_executed_units|stat::average_exec_per_sec|cov: " "$scratch/$t.log" | tail -n 3 >&2
  fi
done
if [ "${#failed[@]}" -gt 0 ]; then
  log "failed: ${failed[*]}"
  exit 1
fi
log "no crash in ${targets[*]}"
