#!/usr/bin/env bash
# What a browser downloads, raw and brotli (quality 11): widget.js on the host page, then the
# widget (wasm + js + css) when the bubble is first clicked, and the agent console.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v brotli >/dev/null || { echo "brotli is needed: apt-get install brotli" >&2; exit 1; }
[[ -d client/dist/widget ]] || { echo "build first: make build" >&2; exit 1; }

br() { brotli -c -q 11 "$1" | wc -c; }
row() { printf '%-28s %9s %9s\n' "$1" "$2" "$3"; }

row "file" "raw B" "brotli B"
row "widget.js" "$(wc -c < relay/static/widget.js)" "$(br relay/static/widget.js)"
for page in widget console; do
  raw=0; packed=0
  for f in client/dist/$page/*.{wasm,js,css}; do
    raw=$((raw + $(wc -c < "$f"))); packed=$((packed + $(br "$f")))
  done
  row "$page (wasm+js+css)" "$raw" "$packed"
done
