#!/usr/bin/env bash
# How long the build tools take to install, debug against release, one after the other and at
# once; and how long packing the two pages takes with each (README, "Toolchain notes"). Installs
# into a temporary folder, never into the cache; takes about 20 minutes on 2 cores. Run it on an
# otherwise idle machine after `make build` (the packing needs the compiled client).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
TRUNK_VERSION=$(sed -n 's/^TRUNK_VERSION=//p' scripts/tools.sh)
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc | xargs printf '%.1f'; }

trunk_install() { cargo install --locked $1 "trunk@$TRUNK_VERSION" --root "$out/$2" >"$out/$2.log" 2>&1; }
bindgen_install() {
  cargo install $1 wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$out/$2" >"$out/$2.log" 2>&1
}

say "downloading the crates first, so that no timing includes it"
cargo install --locked --debug "trunk@$TRUNK_VERSION" --root "$out/warm" >/dev/null 2>&1 || true
rm -rf "$out/warm"

for p in debug release; do
  flag=""
  [[ $p == debug ]] && flag=--debug
  s=$(now); trunk_install "$flag" "trunk-$p"; say "trunk $TRUNK_VERSION, $p: $(since "$s") s"
  s=$(now); bindgen_install "$flag" "bindgen-$p"; say "wasm-bindgen-cli $WASM_BINDGEN_VERSION, $p: $(since "$s") s"
done
s=$(now)
trunk_install --debug par-trunk &
bindgen_install --debug par-bindgen &
wait
say "both at once, debug: $(since "$s") s"

[[ -d target/wasm32-unknown-unknown/wasm-release ]] || { say "no compiled client: make build first"; exit 0; }
export TRUNK_SKIP_VERSION_CHECK=true
binaryen=$(scripts/tools.sh --path | tr ':' '\n' | grep binaryen)
for round in 1 2 3; do
  for p in debug release; do
    s=$(now)
    PATH="$out/trunk-$p/bin:$out/bindgen-$p/bin:$binaryen:$PATH" \
      trunk build index.html --dist "$out/dist/console" --public-url /app/console/ >/dev/null 2>&1
    PATH="$out/trunk-$p/bin:$out/bindgen-$p/bin:$binaryen:$PATH" \
      trunk build embed.html --dist "$out/dist/widget" --public-url /app/widget/ >/dev/null 2>&1
    say "packing both pages with $p tools, round $round: $(since "$s") s"
  done
done
