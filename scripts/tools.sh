#!/usr/bin/env bash
# Installs what building (and, with `--test`, testing) Escalera needs, once per machine: the
# tools go to a per-user cache that every clone shares,
#   ${XDG_CACHE_HOME:-~/.cache}/escalera/tools/<tool>-<version>/
# (a matching trunk or wasm-bindgen already on PATH, e.g. in ~/.cargo/bin, is used as it is).
# Each tool is version-checked, so a clone that pins another version gets it side by side.
# See ../shared/TOOLCHAIN.md and README's "Toolchain notes".
#   scripts/tools.sh          build tools: wasm32 target, trunk, wasm-bindgen, wasm-opt
#   scripts/tools.sh --test   also axe-core (npm), Chromium + chromedriver + brotli + coturn +
#                             aiosmtpd + PostgreSQL 15 + nats-server + haproxy (apt)
#   scripts/tools.sh --path   prints the PATH entries of the tools (for the Makefile); no installs
#   scripts/tools.sh --axe    prints the path of axe.min.js (installed by --test)
#   scripts/tools.sh --load   installs PeerServer (npm peer@1.0.2) for `make load` and prints
#                             its folder
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

TRUNK_VERSION=0.21.14
BINARYEN_VERSION=132
AXE_VERSION=4.14.1
PEERSERVER_VERSION=1.0.2
WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3; exit }' Cargo.lock)

CACHE="${ESCALERA_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/escalera/tools}"
TRUNK_DIR="$CACHE/trunk-$TRUNK_VERSION"
WASM_BINDGEN_DIR="$CACHE/wasm-bindgen-$WASM_BINDGEN_VERSION"
BINARYEN_DIR="$CACHE/binaryen-$BINARYEN_VERSION"
AXE_DIR="$CACHE/axe-core-$AXE_VERSION"
PEERSERVER_DIR="$CACHE/peer-$PEERSERVER_VERSION"
TOOL_PATH="$TRUNK_DIR/bin:$WASM_BINDGEN_DIR/bin:$BINARYEN_DIR/node_modules/.bin:$HOME/.cargo/bin"

case "${1:-}" in
  --path) echo "$TOOL_PATH"; exit 0 ;;
  --axe) echo "$AXE_DIR/node_modules/axe-core/axe.min.js"; exit 0 ;;
esac
export PATH="$TOOL_PATH:$PATH"

# Debug builds of the two Rust tools: they install in less than half the time of release
# builds and are as fast where it matters (README, "Toolchain notes", has the figures).
CARGO_INSTALL_PROFILE=(--debug)

has() { "$1" --version 2>/dev/null | grep -q "$2"; }

# install DIR CMD...: runs CMD with $STAGE as its install root, then moves STAGE to DIR in one
# rename, so an interrupted install never leaves a half tool behind, and two clones installing
# at once (under the lock) build it once.
install_into() {
  local dir=$1
  shift
  STAGE=$(mktemp -d "$CACHE/.stage.XXXXXX")
  # Checked by hand: `step` runs this under `||`, where `set -e` does not apply.
  "$@" || { rm -rf "$STAGE"; return 1; }
  rm -rf "$dir"
  mv -T "$STAGE" "$dir"
  STAGE=
}

need_trunk() { ! has trunk "trunk $TRUNK_VERSION"; }
need_wasm_bindgen() { ! has wasm-bindgen "wasm-bindgen $WASM_BINDGEN_VERSION"; }
need_wasm_opt() { ! has "$BINARYEN_DIR/node_modules/.bin/wasm-opt" "version $BINARYEN_VERSION"; }
need_axe() { [[ ! -s "$AXE_DIR/node_modules/axe-core/axe.min.js" ]]; }
need_peerserver() { [[ ! -s "$PEERSERVER_DIR/node_modules/peer/dist/bin/peerjs.js" ]]; }

cargo_install_trunk() {
  cargo install --locked "${CARGO_INSTALL_PROFILE[@]}" "trunk@$TRUNK_VERSION" --root "$STAGE"
}
cargo_install_wasm_bindgen() {
  # Not --locked: one of its locked dependencies is no longer on the registry.
  cargo install "${CARGO_INSTALL_PROFILE[@]}" wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION" --root "$STAGE"
}
npm_install() { npm install --no-audit --no-fund --prefix "$STAGE" "$1"; }

need_wasm32() { ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; }
TEST=0
[[ "${1:-}" == --test ]] && TEST=1
LOAD=0
[[ "${1:-}" == --load ]] && LOAD=1
APT_MISSING=()
if ((TEST)); then
  command -v chromium >/dev/null || APT_MISSING+=(chromium)
  command -v chromedriver >/dev/null || APT_MISSING+=(chromium-driver)
  command -v brotli >/dev/null || APT_MISSING+=(brotli)
  command -v turnserver >/dev/null || APT_MISSING+=(coturn)
  # A real SMTP server for the email tests (Debian's Python, not any other on PATH).
  /usr/bin/python3 -c 'import aiosmtpd' 2>/dev/null || APT_MISSING+=(python3-aiosmtpd)
  # PostgreSQL's server programs: the store tests start their own server with them.
  compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || APT_MISSING+=(postgresql-15)
  # The bus between relay nodes, for the tests of several nodes.
  command -v nats-server >/dev/null || APT_MISSING+=(nats-server)
  # ...and the proxy in front of them.
  command -v haproxy >/dev/null || APT_MISSING+=(haproxy)
  if ((${#APT_MISSING[@]})) && [[ $(id -u) -ne 0 ]]; then
    say "please install: sudo apt-get install ${APT_MISSING[*]}"
    exit 1
  fi
fi
apt_install() {
  apt-get update -qq &&
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${APT_MISSING[@]}"
}

if need_wasm32 || need_trunk || need_wasm_bindgen || need_wasm_opt || ((TEST && ${#APT_MISSING[@]})) ||
  { ((TEST)) && need_axe; } || { ((LOAD)) && need_peerserver; }; then
  mkdir -p "$CACHE/logs"
  # One install at a time per machine; whoever waited finds the tools there afterwards.
  exec 9>"$CACHE/.lock"
  if ! flock -n 9; then
    say "another clone is installing the tools; waiting for it"
    flock 9
  fi
  # An interrupted install leaves no staging folder behind.
  trap '[[ -n "${STAGE:-}" ]] && rm -rf "$STAGE"' EXIT
  if need_wasm32; then
    step "$CACHE/logs/rustup-wasm32.log" "adding Rust's wasm32-unknown-unknown target" \
      "about 20 s" rustup target add wasm32-unknown-unknown
  fi
  if need_trunk; then
    step "$CACHE/logs/trunk-$TRUNK_VERSION.log" \
      "building Trunk $TRUNK_VERSION once for this machine into $TRUNK_DIR" "about 4 minutes" \
      install_into "$TRUNK_DIR" cargo_install_trunk
  fi
  if need_wasm_bindgen; then
    step "$CACHE/logs/wasm-bindgen-$WASM_BINDGEN_VERSION.log" \
      "building wasm-bindgen-cli $WASM_BINDGEN_VERSION once for this machine" "about 1.5 minutes" \
      install_into "$WASM_BINDGEN_DIR" cargo_install_wasm_bindgen
  fi
  if need_wasm_opt; then
    step "$CACHE/logs/binaryen-$BINARYEN_VERSION.log" \
      "installing wasm-opt (npm binaryen@$BINARYEN_VERSION) once for this machine" "a few seconds" \
      install_into "$BINARYEN_DIR" npm_install "binaryen@$BINARYEN_VERSION"
  fi
  if ((TEST)) && need_axe; then
    step "$CACHE/logs/axe-core-$AXE_VERSION.log" \
      "installing axe-core $AXE_VERSION (npm) once for this machine" "a few seconds" \
      install_into "$AXE_DIR" npm_install "axe-core@$AXE_VERSION"
  fi
  if ((LOAD)) && need_peerserver; then
    step "$CACHE/logs/peer-$PEERSERVER_VERSION.log" \
      "installing PeerServer (npm peer@$PEERSERVER_VERSION) once for this machine" "a few seconds" \
      install_into "$PEERSERVER_DIR" npm_install "peer@$PEERSERVER_VERSION"
  fi
  if ((TEST && ${#APT_MISSING[@]})); then
    step "$CACHE/logs/apt.log" "installing ${APT_MISSING[*]} with apt, once for this machine" \
      "about 1 minute" apt_install
  fi
  flock -u 9
fi
((LOAD)) && echo "$PEERSERVER_DIR"
true
