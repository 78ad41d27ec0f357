#!/usr/bin/env bash
# Builds the product in steps, one line each, the compiler's output in target/logs/:
#   scripts/build.sh client   the browser app: both pages into client/dist (Trunk)
#   scripts/build.sh relay    the `escalera` binary, client embedded, in target/release
# The Makefile runs `client` only when its sources changed. VERBOSE=1 shows the output.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export PATH="$(scripts/tools.sh --path):$PATH"
export TRUNK_SKIP_VERSION_CHECK=true
LOGS="$PWD/target/logs"

# Chained with &&: `step` runs this under `||`, where `set -e` does not apply.
trunk_pages() {
  trunk build index.html --dist client/dist/console --public-url /app/console/ &&
    trunk build embed.html --dist client/dist/widget --public-url /app/widget/
}

# Trunk's wasm-bindgen step cannot make a split module: each page's module is made again from
# cargo's output, split so the call code loads on the first call (split/src/main.rs).
split_pages() {
  local wasm=target/wasm32-unknown-unknown/wasm-release
  cargo build --locked --offline --release -p escalera-split &&
    target/release/escalera-split $wasm/escalera-console.wasm client/dist/console &&
    target/release/escalera-split $wasm/escalera-widget.wasm client/dist/widget
}

case "${1:-}" in
  client)
    step "$LOGS/fetch.log" "fetching the crates Cargo.lock names" "seconds once they are cached" \
      cargo fetch --locked
    # Both pages in one cargo run, so their two single-threaded LTO links share the 2 cores;
    # Trunk then finds them built.
    step "$LOGS/client.log" "compiling the browser app (WebAssembly, size-optimised)" \
      "about 2 minutes the first time, under a minute after a change" \
      cargo build --locked --offline -p escalera-client --bins \
      --target wasm32-unknown-unknown --profile wasm-release
    step "$LOGS/trunk.log" "packing the console and the widget (Trunk)" "about 10 s" trunk_pages
    step "$LOGS/split.log" "splitting the call code off and shrinking (wasm-split, wasm-opt)" \
      "about a minute the first time, 30 s after" split_pages
    ;;
  relay)
    step "$LOGS/relay.log" "compiling the relay with the browser app inside (release)" \
      "about 2 minutes the first time, seconds when nothing changed" \
      cargo build --release --locked -p escalera
    ;;
  *)
    echo "usage: scripts/build.sh client|relay" >&2
    exit 2
    ;;
esac
