#!/usr/bin/env bash
# Installs what building (and, with `--test`, testing) Escalera needs on a bare machine of this
# kind, skipping whatever is already there at the right version. See ../shared/TOOLCHAIN.md.
#   scripts/tools.sh          build tools: wasm32 target, trunk, wasm-bindgen, wasm-opt
#   scripts/tools.sh --test   also Chromium + chromedriver + brotli + coturn (Debian packages)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/.tools"
export PATH="$TOOLS/cargo/bin:$TOOLS/node_modules/.bin:$HOME/.cargo/bin:$PATH"

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)

say() { printf '[tools] %s\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! trunk --version 2>/dev/null | grep -q "trunk $TRUNK_VERSION"; then
  say "installing trunk $TRUNK_VERSION (takes a few minutes, once)"
  cargo install --locked "trunk@$TRUNK_VERSION" --root "$TOOLS/cargo"
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q "wasm-bindgen $WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (a couple of minutes, once)"
  # Not --locked: one of its locked dependencies is no longer on the registry.
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$TOOLS/cargo"
fi

if ! "$TOOLS/node_modules/.bin/wasm-opt" --version 2>/dev/null | grep -q "version $BINARYEN_VERSION"; then
  say "installing wasm-opt (npm binaryen@$BINARYEN_VERSION)"
  mkdir -p "$TOOLS"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS" "binaryen@$BINARYEN_VERSION"
fi

if [[ "${1:-}" == "--test" ]]; then
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v brotli >/dev/null || missing+=(brotli)
  command -v turnserver >/dev/null || missing+=(coturn)
  if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]]; then
      say "installing ${missing[*]} (apt)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      say "please install: sudo apt-get install ${missing[*]}"
      exit 1
    fi
  fi
fi
