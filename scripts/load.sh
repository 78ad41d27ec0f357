#!/usr/bin/env bash
# `make load`: one relay node at its limit beside PeerJS's PeerServer (npm peer@1.0.2, installed
# into the tools cache): idle sockets, signalling pairs and chat, then signalling and chat again
# on two nodes (PostgreSQL + NATS, pairs split across them), from one generator process
# (load/src/compare.rs). All traffic is on loopback, inside a loopback-only network namespace
# when root. Prints a table; asserts nothing. Arguments go to the generator, e.g.
# `scripts/load.sh --idle 5000 --seconds 5`.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALERA_BIN="$PWD/target/release/escalera"
# PostgreSQL and NATS, for the two-node part (as the tests start them).
scripts/tools.sh --test
ESCALERA_PEERSERVER=$(scripts/tools.sh --load | tail -n 1)
export ESCALERA_PEERSERVER
cargo build --locked --release -p escalera-load
source scripts/lib.sh
run() { bash -c 'ulimit -n "$(ulimit -Hn)" && exec target/release/escalera-load compare "$@"' _ "$@"; }
export -f run
isolated run "$@"
