#!/usr/bin/env bash
# What a browser downloads: widget.js on the host page, then the widget (wasm + js + css) when
# the bubble is first clicked, its call code on the first call, and the agent console. For
# each: the files' bytes raw and brotli (quality 11), and the bytes the running relay really
# sends for `Accept-Encoding: br` (a release binary started here on loopback, inside a
# loopback-only namespace when root).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v brotli >/dev/null || { echo "brotli is needed: apt-get install brotli" >&2; exit 1; }
[[ -d client/dist/widget && -x target/release/escalera ]] || { echo "build first: make build" >&2; exit 1; }

if [[ "${1:-}" != --inside ]]; then
  if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
    exec unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$0" --inside' "$0"
  fi
fi

data=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
ESCALERA_DATA_DIR="$data" target/release/escalera serve --listen "127.0.0.1:$port" \
  --demo-listen off >"$data/log" 2>&1 &
relay=$!
trap 'kill $relay 2>/dev/null; rm -rf "$data"' EXIT
until grep -q "Escalera is running" "$data/log"; do
  kill -0 $relay 2>/dev/null || { cat "$data/log" >&2; exit 1; }
  sleep 0.1
done

br() { brotli -c -q 11 "$1" | wc -c; }
# The body bytes as sent (curl does not decode them), and the coding the relay chose.
wire() {
  curl -sS -H 'Accept-Encoding: br' -o /dev/null -w '%{size_download} %header{content-encoding}' \
    "http://127.0.0.1:$port$1"
}
row() { printf '%-24s %9s %9s %13s\n' "$@"; }

row "what" "raw B" "brotli B" "on the wire B"
read -r sent coding <<<"$(wire /widget.js)"
[[ "$coding" == br ]] || { echo "widget.js was not sent as brotli" >&2; exit 1; }
row "widget.js" "$(wc -c <relay/static/widget.js)" "$(br relay/static/widget.js)" "$sent"
# What a page loads at once (its module, scripts and style) and what it fetches on the first
# call (the chunks split off by scripts/build.sh, split_*.wasm).
part() {
  local label=$1 raw=0 packed=0 onwire=0 f sent coding
  shift
  for f in "$@"; do
    raw=$((raw + $(wc -c <"$f"))) packed=$((packed + $(br "$f")))
    read -r sent coding <<<"$(wire "/app/$(basename "$(dirname "$f")")/$(basename "$f")")"
    [[ "$coding" == br ]] || { echo "$f was not sent as brotli" >&2; exit 1; }
    onwire=$((onwire + sent))
  done
  row "$label" "$raw" "$packed" "$onwire"
  total=$((total + onwire))
}
for page in widget console; do
  total=0
  shopt -s nullglob
  lazy=(client/dist/$page/split_*.wasm)
  first=()
  for f in client/dist/$page/*.{wasm,js,css}; do
    [[ " ${lazy[*]} " == *" $f "* ]] || first+=("$f")
  done
  part "$page at first (chat)" "${first[@]}"
  part "$page calls (lazy)" "${lazy[@]}"
  row "$page in all" "" "" "$total"
done
