#!/usr/bin/env bash
# Figures for the README: sizes, then calls and files measured in real browsers on loopback
# (inside a loopback-only network namespace when root). Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALERA_BIN="$PWD/target/release/escalera"
scripts/size.sh
echo
cargo build --locked --release -p escalera-e2e --bin bench
bench=(target/release/bench)
if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
  unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$@"' _ "${bench[@]}"
else
  "${bench[@]}"
fi
