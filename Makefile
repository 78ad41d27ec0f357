# Escalera. Quick start: `make run`. Everything tested: `make test`.
SHELL := /bin/bash
TOOLS := $(CURDIR)/.tools
export PATH := $(TOOLS)/cargo/bin:$(TOOLS)/node_modules/.bin:$(HOME)/.cargo/bin:$(PATH)
export TRUNK_SKIP_VERSION_CHECK := true
BIN := target/release/escalera

.PHONY: run build client relay tools test lint size bench clean

## run: install what is missing, build, start the relay with a demo page
run: build
	$(BIN) serve

## build: the whole product in target/release/escalera (client embedded)
build: tools client relay

tools:
	@scripts/tools.sh

client: tools
	cargo fetch --locked
	trunk build index.html --dist client/dist/console --public-url /app/console/
	trunk build embed.html --dist client/dist/widget --public-url /app/widget/

relay: client
	cargo build --release --locked -p escalera

## test: unit, relay-through-sockets and browser end-to-end tests
test: build
	@scripts/tools.sh --test
	scripts/test.sh

lint:
	cargo fmt --all -- --check
	cargo clippy --locked --workspace --all-targets -- -D warnings
	cargo clippy --locked -p escalera-client --target wasm32-unknown-unknown -- -D warnings

## size: widget.js and client bytes, raw and brotli
size: build
	@scripts/tools.sh --test
	scripts/size.sh

## bench: sizes, click-video-to-first-frame latency, file throughput (figures for README)
bench: build
	@scripts/tools.sh --test
	scripts/bench.sh

clean:
	rm -rf target client/dist
