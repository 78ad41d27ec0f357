#!/usr/bin/env bash
# `make abuse`: attacks 1, 3, 5, 7 and 9 of issue 7 against the release relay with its default
# limits, while a bystander chats (load/src/abuse.rs). All traffic is on loopback, inside a
# loopback-only network namespace when root. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALERA_BIN="$PWD/target/release/escalera"
cargo build --locked --release -p escalera-load
source scripts/lib.sh
run() { bash -c 'ulimit -n "$(ulimit -Hn)" && exec target/release/escalera-load abuse "$@"' _ "$@"; }
export -f run
isolated run "$@"
