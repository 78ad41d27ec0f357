#!/usr/bin/env bash
# Every test: unit and relay-through-sockets tests, then the browser end-to-end tests against
# the release binary, inside a loopback-only network namespace when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
export ESCALERA_BIN="$PWD/target/release/escalera"

echo "== unit and relay tests"
cargo test --locked --workspace --exclude escalera-e2e

echo "== browser tests (headless Chromium, real relay binary)"
cargo test --locked -p escalera-e2e --no-run
e2e=(cargo test --locked --offline -p escalera-e2e -- --test-threads=1)
if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
  # No route but loopback: WebRTC and everything else stays on this machine.
  unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$@"' _ "${e2e[@]}"
else
  echo "(not root or no unshare: running the browser tests in the normal network namespace)"
  "${e2e[@]}"
fi
echo "== all tests passed in $(( $(date +%s) - start )) s"
