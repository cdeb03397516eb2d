# weft: the two commands that matter are `make dev` and `make test`.
# Both do all the set-up a fresh machine needs.

CARGO ?= cargo
EXAMPLES_TARGET := examples/target/wasm32-wasip1/release

.PHONY: setup test-setup examples build dev test lint bench clean

## setup: the wasm32-wasip1 target for guests
setup:
	rustup target add wasm32-wasip1

## test-setup: what the tests need beyond the build, from Debian (needs
## root, as CI has): Chromium for the dashboard's browser test; curl, ping
## and ip for the gateway's tests (forwards, a TUN device in a namespace)
TEST_TOOLS := chromium:chromium curl:curl ping:iputils-ping ip:iproute2 setpriv:util-linux
test-setup: setup
	@missing=""; for pair in $(TEST_TOOLS); do \
		command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing$$missing for the tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; fi

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
	@command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1 || { \
		echo "installing Open MPI (Debian's openmpi-bin) for the mesh benchmark's baseline"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev \
		|| echo "could not install Open MPI: the mesh benchmark runs without that baseline"; }
	$(CARGO) bench -p weft-host
	$(CARGO) bench -p weft-netstack
	$(CARGO) build --release -p weft-host
	$(CARGO) bench -p weft-integration

clean:
	$(CARGO) clean
	cd examples && $(CARGO) clean
