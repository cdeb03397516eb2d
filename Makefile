# weft: the two commands that matter are `make dev` and `make test`.
# Both do all the set-up a fresh machine needs.

CARGO ?= cargo
EXAMPLES_TARGET := examples/target/wasm32-wasip1/release

.PHONY: setup test-setup examples build dev test lint bench clean

## setup: the wasm32-wasip1 target for guests
setup:
	rustup target add wasm32-wasip1

## test-setup: what the tests need beyond the build: Chromium for the
## dashboard's browser test (Debian's package; needs root, as CI has)
test-setup: setup
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium for the dashboard browser test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

## examples: build the example guests (.wasm files in examples/target/)
examples: setup
	cd examples && $(CARGO) build --release

## build: the weft binary (release)
build: examples
	$(CARGO) build --release -p weft-host

## dev: the dev server on the bundled examples, dashboard at http://127.0.0.1:7878/
dev: build
	./target/release/weft dev examples

## test: every test in the workspace, against the real binary
test: test-setup examples
	$(CARGO) build -p weft-host --bins
	$(CARGO) test --workspace

## lint: formatting and clippy, warnings are errors
lint:
	$(CARGO) fmt --all --check
	cd examples && $(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	cd examples && $(CARGO) clippy --release -- -D warnings

## bench: the benchmarks, each printed beside its baseline
bench: examples
	$(CARGO) bench -p weft-host
	$(CARGO) bench -p weft-netstack

clean:
	$(CARGO) clean
	cd examples && $(CARGO) clean
