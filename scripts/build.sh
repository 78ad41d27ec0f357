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
    step "$LOGS/trunk.log" "packing the console and the widget (wasm-bindgen, wasm-opt)" \
      "about 20 s" trunk_pages
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
