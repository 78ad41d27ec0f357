#!/usr/bin/env bash
# The profiles behind README's attributions (not part of `make test`; installs what it needs,
# writes under target/profile, traffic on loopback only). After `make build`:
#   scripts/profile.sh widget   the widget's first module by function (twiggy, names kept)
#   scripts/profile.sh heap     what 4,000 idle sockets hold, by allocation site (heaptrack)
#   scripts/profile.sh open     where the relay's time goes opening 19,000 sockets (perf)
#   scripts/profile.sh floor    what Leptos alone costs: a one-list chat built as the widget is
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
export PATH="$(scripts/tools.sh --path):$PATH"
out="$PWD/target/profile"
mkdir -p "$out"
TWIGGY="$HOME/.cache/escalera/tools/twiggy-0.8.0"

apt_tool() { # COMMAND PACKAGE
  command -v "$1" >/dev/null || { apt-get update -qq && apt-get install -y -qq "$2" >/dev/null; }
}

# Runs the load generator's idle part against the relay `$1` (a wrapper script).
idle() {
  local relay=$1 n=$2
  cargo build --locked --release -p escalera-load
  ESCALERA_PEERSERVER=$(scripts/tools.sh --load | tail -n 1)
  export ESCALERA_PEERSERVER ESCALERA_BIN=$relay
  run() { bash -c 'ulimit -n "$(ulimit -Hn)" && exec target/release/escalera-load compare "$@"' _ "$@"; }
  export -f run
  isolated run --parts idle --idle "$n" --seconds 5
}

case "${1:-}" in
  widget)
    [[ -x "$TWIGGY/bin/twiggy" ]] || cargo install --locked --root "$TWIGGY" twiggy --version 0.8.0
    rm -rf "$out/widget" && cp -r client/dist/widget "$out/widget"
    cargo build --locked --offline --release -p escalera-split
    ESCALERA_SPLIT_NAMES=1 target/release/escalera-split \
      target/wasm32-unknown-unknown/wasm-release/escalera-widget.wasm "$out/widget"
    "$TWIGGY/bin/twiggy" top -n 40 "$out"/widget/escalera-widget-*_bg.wasm
    ;;
  heap)
    apt_tool heaptrack heaptrack
    # heaptrack cannot see mimalloc: this relay uses the system's allocator.
    cargo build --locked --release -p escalera --features system-alloc \
      --target-dir target/system-alloc
    printf '#!/bin/sh\nLD_PRELOAD=%s DUMP_HEAPTRACK_OUTPUT=%s exec %s "$@"\n' \
      /usr/lib/heaptrack/libheaptrack_preload.so "$out/heap.raw" \
      "$PWD/target/system-alloc/release/escalera" >"$out/heap-relay.sh"
    chmod +x "$out/heap-relay.sh"
    rm -f "$out/heap.raw"
    idle "$out/heap-relay.sh" 4000
    /usr/lib/heaptrack/libexec/heaptrack_interpret <"$out/heap.raw" >"$out/heap.txt"
    heaptrack_print -f "$out/heap.txt" --print-peaks 1 --print-allocators 0 \
      --print-temporary 0 --print-leaks 0 --peak-limit 30 >"$out/heap-peaks.txt"
    grep -A1 'peak memory consumed over' "$out/heap-peaks.txt" | grep -v '^--' | head -60
    echo "whole stacks: $out/heap-peaks.txt"
    ;;
  open)
    apt_tool perf linux-perf
    printf '#!/bin/sh\nexec perf record -F 999 --call-graph dwarf,16384 -o %s -- %s "$@"\n' \
      "$out/open.perf" "$PWD/target/release/escalera" >"$out/perf-relay.sh"
    chmod +x "$out/perf-relay.sh"
    idle "$out/perf-relay.sh" 19000
    perf report -i "$out/open.perf" --children --sort symbol --percent-limit 2 --stdio -g none \
      2>/dev/null | grep '%' | head -60
    ;;
  floor)
    # The least a Leptos widget can weigh: one message list, one text box, one socket, one
    # serde_json read, with the widget's profile, `erase_components`, wasm-bindgen and wasm-opt.
    dir="$out/floor"
    mkdir -p "$dir/src"
    cp Cargo.lock "$dir/"
    cat >"$dir/Cargo.toml" <<'TOML'
[package]
name = "floor"
version = "0.1.0"
edition = "2021"
[dependencies]
leptos = { version = "0.8", features = ["csr"] }
serde = { version = "1", features = ["derive"] }
serde_json = "1"
wasm-bindgen = "=0.2.130"
web-sys = { version = "0.3", features = ["WebSocket", "MessageEvent"] }
[profile.release]
opt-level = "z"
lto = true
codegen-units = 1
panic = "abort"
[workspace]
TOML
    cat >"$dir/src/main.rs" <<'RUST'
use leptos::prelude::*;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

#[derive(Deserialize, Clone)]
struct Line {
    seq: u64,
    author: String,
    text: String,
}

#[component]
fn Chat() -> impl IntoView {
    let (lines, set_lines) = signal(Vec::<Line>::new());
    let (draft, set_draft) = signal(String::new());
    let ws = web_sys::WebSocket::new("ws://127.0.0.1:1/ws").unwrap();
    let on = Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |e: web_sys::MessageEvent| {
        if let Some(line) = e.data().as_string().and_then(|t| serde_json::from_str(&t).ok()) {
            set_lines.update(|l| l.push(line));
        }
    });
    ws.set_onmessage(Some(on.as_ref().unchecked_ref()));
    on.forget();
    view! {
        <div class="chat">
            <Show when=move || lines.with(Vec::is_empty)><p>"No messages yet"</p></Show>
            <For each=move || lines.get() key=|l| l.seq let:l>
                <div class="line"><b>{l.author}</b>": "{l.text}</div>
            </For>
            <textarea prop:value=draft on:input=move |e| set_draft.set(event_target_value(&e))></textarea>
            <button on:click=move |_| {
                let _ = ws.send_with_str(&draft.get());
                set_draft.set(String::new());
            }>"Send"</button>
        </div>
    }
}

fn main() {
    leptos::mount::mount_to_body(Chat);
}
RUST
    (cd "$dir" && RUSTFLAGS="--cfg erase_components" cargo build -q --offline --release \
      --target wasm32-unknown-unknown)
    wasm-bindgen --target web --out-dir "$dir/out" \
      "$dir/target/wasm32-unknown-unknown/release/floor.wasm"
    wasm-opt -Oz "$dir/out/floor_bg.wasm" -o "$dir/out/floor_bg.wasm"
    for f in "$dir"/out/floor_bg.wasm "$dir"/out/floor.js; do
      printf '%-14s raw %7d B  brotli %6d B\n' "$(basename "$f")" "$(wc -c <"$f")" \
        "$(brotli -c -q 11 "$f" | wc -c)"
    done
    ;;
  *)
    echo "usage: scripts/profile.sh widget|heap|open|floor" >&2
    exit 2
    ;;
esac
