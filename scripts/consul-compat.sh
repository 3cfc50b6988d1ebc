#!/usr/bin/env bash
# Runs py-consul's own test suite (PyPI py-consul, its sdist's tests/)
# against the embedded registry: installs what is missing into a virtualenv
# (pip, from PyPI only), builds `shardscope`, and runs the suite with our
# adapter (consul/tests/py-consul/conftest.py: a fresh `shardscope registry`
# on a fresh loopback port per test instead of Consul in Docker). Prints
# tests run / passed / failed / skipped per file, and fails when fewer than
# SHARDSCOPE_CONSUL_MIN_PASS (default below) pass, so a regression fails CI.
# The suite's own failures that are out of scope are listed in README's
# "Consul compatibility".
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh

log() { printf '\033[1;34m[consul-compat]\033[0m %s\n' "$*" >&2; }
version=1.8.0
min_pass="${SHARDSCOPE_CONSUL_MIN_PASS:-110}"
home="${SHARDSCOPE_CONSUL_COMPAT_DIR:-$CARGO_TARGET_DIR/consul-compat}"
venv="$home/venv"
suite="$home/py_consul-$version"

if [ ! -x "$venv/bin/python" ]; then
  log "virtualenv in $venv"
  python3 -m venv "$venv"
fi
py="$venv/bin/python"
if ! "$py" -c 'import consul, pytest, pytest_asyncio, aiohttp, packaging' 2>/dev/null; then
  log "pip install py-consul==$version and the suite's test tools"
  "$py" -m pip install -q "py-consul==$version" pytest pytest-asyncio aiohttp packaging requests
fi
if [ ! -d "$suite/tests" ]; then
  log "py-consul $version's sdist (its tests)"
  "$py" -m pip download -q --no-deps --no-binary :all: -d "$home" "py-consul==$version"
  tar -xzf "$home/py_consul-$version.tar.gz" -C "$home"
fi
# Our adapter in place of the suite's Docker-starting root conftest.py.
cp consul/tests/py-consul/conftest.py "$suite/conftest.py"

log "cargo build -p shardscope-backend"
cargo build -q -p shardscope-backend
export SHARDSCOPE_BIN="$CARGO_TARGET_DIR/debug/shardscope"

report="$home/report.xml"
log "pytest (py-consul $version's suite)"
# The tests import the installed package: run from the suite's root without
# its source tree on the path ("consul/" there is the same code).
(cd "$suite" && rm -rf consul && "$py" -m pytest -q -p no:cacheprovider -o addopts="" -o asyncio_mode=auto \
  --junitxml="$report" tests >"$home/pytest.log" 2>&1) || true
"$py" - "$report" "$min_pass" <<'PY'
import collections, sys, xml.etree.ElementTree as ET
report, minimum = sys.argv[1], int(sys.argv[2])
counts = collections.defaultdict(lambda: collections.Counter())
for case in ET.parse(report).iter("testcase"):
    name = case.get("classname", "").split(".")
    file = "/".join(p for p in name if not p[:1].isupper()) + ".py"
    outcome = "passed"
    for child in case:
        if child.tag in ("failure", "error"):
            outcome = "failed"
        elif child.tag == "skipped":
            outcome = "skipped"
    counts[file][outcome] += 1
total = collections.Counter()
print(f"{'file':36} {'run':>4} {'pass':>5} {'fail':>5} {'skip':>5}")
for file in sorted(counts):
    c = counts[file]
    run = sum(c.values())
    total.update(c)
    print(f"{file:36} {run:4} {c['passed']:5} {c['failed']:5} {c['skipped']:5}")
run = sum(total.values())
print(f"{'total':36} {run:4} {total['passed']:5} {total['failed']:5} {total['skipped']:5}")
if total["passed"] < minimum:
    sys.exit(f"consul-compat: {total['passed']} passed, fewer than the {minimum} expected (see the pytest log)")
PY
