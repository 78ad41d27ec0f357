# Escalera. Quick start: `make run`. Everything tested: `make test`.
SHELL := /bin/bash
# The tools live in a per-user cache shared by every clone (scripts/tools.sh).
export PATH := $(shell scripts/tools.sh --path):$(PATH)
export TRUNK_SKIP_VERSION_CHECK := true
BIN := target/release/escalera
# The browser app is rebuilt only when one of these changed since the last build.
CLIENT_INPUTS := $(shell find client/src protocol/src -name '*.rs') client/Cargo.toml \
	protocol/Cargo.toml client/style.css index.html embed.html Trunk.toml Cargo.toml Cargo.lock \
	scripts/build.sh scripts/tools.sh split/src/main.rs split/Cargo.toml .cargo/config.toml
CLIENT_STAMP := target/client.stamp
ifneq ($(words $(wildcard client/dist/console/index.html client/dist/widget/index.html)),2)
$(shell rm -f $(CLIENT_STAMP))
endif

.PHONY: run build client relay tools test lint size bench abuse load clean

## run: install what is missing, build, start the relay with a demo page
run: build
	$(BIN) serve

## build: the whole product in target/release/escalera (client embedded)
build: relay

tools:
	@scripts/tools.sh

client: $(CLIENT_STAMP)

# Stamped with the time the build started, so a file saved during the build is built next time.
$(CLIENT_STAMP): $(CLIENT_INPUTS) | tools
	@mkdir -p $(@D) && touch $@.new
	@scripts/build.sh client
	@mv $@.new $@

relay: client
	@scripts/build.sh relay

## test: unit, relay-through-sockets and browser end-to-end tests
test: build
	@scripts/tools.sh --test
	@scripts/test.sh

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

## abuse: attacks 1, 3, 5, 7 and 9 of issue 7 against the release relay (figures for README)
abuse: build
	scripts/abuse.sh --seconds 10

## load: one node at its limit beside PeerServer: idle sockets, signalling, chat (README figures)
load: build
	scripts/load.sh --seconds 10

clean:
	rm -rf target client/dist
