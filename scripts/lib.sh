# Shared by the scripts: one line per step for a newcomer, the noisy output in a log file.
# Source it; it defines `say` and `step`.

say() { printf '[escalera] %s\n' "$*"; }

# step LOG WHAT ESTIMATE CMD...: says what is happening and roughly how long it takes on a
# 2-core machine, runs CMD with its output in LOG, and says how long it took. On failure it
# shows the last lines of LOG and fails. VERBOSE=1 shows the output as it comes instead.
# CMD runs under `||`, where `set -e` does not apply: a function given as CMD must chain its
# commands with && (or check each one) to fail when one of them fails.
step() {
  local log=$1 what=$2 estimate=$3 start rc
  shift 3
  start=$(date +%s)
  mkdir -p "$(dirname "$log")"
  if [[ "${VERBOSE:-}" == 1 ]]; then
    say "$what${estimate:+ ($estimate)}"
    { "$@" 2>&1 | tee "$log"; rc=${PIPESTATUS[0]}; } || true
  else
    say "$what${estimate:+ ($estimate)}; log: $log"
    rc=0
    "$@" >"$log" 2>&1 || rc=$?
  fi
  if ((rc != 0)); then
    say "FAILED after $(($(date +%s) - start)) s: $what. The last lines of $log:"
    tail -n 40 "$log" | sed 's/^/    /'
    return "$rc"
  fi
  say "  done in $(($(date +%s) - start)) s"
}

# isolated CMD...: runs CMD in a fresh loopback-only network namespace when root (so load and
# attack traffic can reach nothing but loopback), else as it is. CMD may be a function
# exported with `export -f`.
isolated() {
  if [[ $(id -u) -eq 0 ]] && unshare -n true 2>/dev/null; then
    unshare -n -p -f --mount-proc bash -c 'ip link set lo up && "$@"' _ "$@"
  else
    "$@"
  fi
}
