#!/usr/bin/env bash
# Every test: unit and relay-through-sockets tests (those on SQLite, then on PostgreSQL), then
# the browser end-to-end tests against the release binary, inside a loopback-only network
# namespace when run as root. Compiling the tests is a step with its output in target/logs/;
# the tests' own output is shown.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
start=$(date +%s)
export ESCALERA_BIN="$PWD/target/release/escalera"
export ESCALERA_AXE="${ESCALERA_AXE:-$(scripts/tools.sh --axe)}"
LOGS="$PWD/target/logs"

# Compiled with exactly the package selections they run with (features differ between them).
step "$LOGS/test-build.log" "compiling the unit and relay tests (debug)" \
  "about 2 minutes the first time" cargo test --locked --workspace --exclude escalera-e2e --no-run
step "$LOGS/e2e-build.log" "compiling the browser tests (debug)" "about 1 minute the first time" \
  cargo test --locked -p escalera-e2e --no-run

say "unit and relay tests"
cargo test --locked --workspace --exclude escalera-e2e

# The relay's socket tests again with the record on PostgreSQL (a server the tests start;
# tests/store.rs runs the store's own contract on both already).
say "relay tests on PostgreSQL"
ESCALERA_TEST_STORE=postgres cargo test --locked --workspace --exclude escalera-e2e \
  --test abuse --test calls --test desk --test files --test settings --test socket

say "browser tests (headless Chromium, real relay binary)"
e2e=(cargo test --locked --offline -p escalera-e2e -- --test-threads=1)
if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
  # No route but loopback: WebRTC and everything else stays on this machine.
  unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$@"' _ "${e2e[@]}"
else
  say "(not root or no unshare: running the browser tests in the normal network namespace)"
  "${e2e[@]}"
fi
say "all tests passed in $(($(date +%s) - start)) s"
