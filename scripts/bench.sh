#!/usr/bin/env bash
# Figures for the README: sizes, then the relay under load (load/), then calls and files measured
# in real browsers. All traffic is on loopback, inside a loopback-only network namespace when
# root. Prints figures; asserts nothing.
set -euo pipefail
cd "$(dirname "$0")/.."
export ESCALERA_BIN="$PWD/target/release/escalera"

source scripts/lib.sh

scripts/size.sh
echo
# The relay under load: chat throughput and a bystander's ack during a mass re-join.
cargo build --locked --release -p escalera-load
isolated bash -c 'ulimit -n "$(ulimit -Hn)" && exec target/release/escalera-load all'
echo
cargo build --locked --release -p escalera-e2e --bin bench
isolated target/release/bench
