#!/usr/bin/env bash
# The newcomer's `make run`, timed from the command to "Escalera is running." (README's quick
# start): on a bare machine (simulated: an empty tool cache and an empty CARGO_HOME, so tools
# and crates are fetched and built again; the Rust toolchain stays), in a second clone on the
# same machine, and rerun with nothing changed. Clones this checkout's HEAD into a temporary
# folder; uses ports 8080 and 8081; about 15 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# up LABEL DIR [VAR=VALUE...]: runs `make run` in DIR until the relay says it is running.
up() {
  local label=$1 dir=$2 start pid
  shift 2
  start=$(date +%s.%N)
  (cd "$dir" && exec env "$@" setsid make run) >"$work/$label.log" 2>&1 &
  pid=$!
  until grep -q "Escalera is running" "$work/$label.log"; do
    kill -0 "$pid" 2>/dev/null || { say "$label: make run failed"; tail "$work/$label.log"; exit 1; }
    sleep 0.2
  done
  say "$label: $(echo "$(date +%s.%N) - $start" | bc | xargs printf '%.1f') s"
  kill -- "-$pid"
  wait "$pid" 2>/dev/null || true
}

git clone -q . "$work/bare"
up "bare machine" "$work/bare" XDG_CACHE_HOME="$work/cache" CARGO_HOME="$work/cargo"
git clone -q . "$work/second"
up "second clone, tools cached" "$work/second"
up "unchanged rerun" "$work/second"
