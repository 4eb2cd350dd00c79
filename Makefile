# cafe24-relay — the Makefile is the interface: the same targets run locally and in CI.
# `make help` lists them.

SHELL := /bin/bash
.DEFAULT_GOAL := help
CARGO ?= cargo

.PHONY: deploy sam-build deploy-code relay lint-infra build help tools moto-start moto-stop moto-reset check-purity fmt fmt-check lint test test-unit demo bench scale bench-ingest mutants size clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

tools: ## create .venv with moto[server], cargo-lambda and cfn-lint from PyPI (idempotent)
	@scripts/ensure-tools.sh

moto-start: tools ## start the local moto server (SQS, DynamoDB) on a free loopback port
	@scripts/moto.sh start

moto-stop: ## stop the local moto server
	@scripts/moto.sh stop

moto-reset: ## wipe all state in the local moto server
	@scripts/moto.sh reset

check-purity: ## fail if shared/domain depends on aws-*, lambda_*, reqwest, hyper or tokio
	@scripts/check-domain-purity.sh --self-test
	@scripts/check-domain-purity.sh

fmt: ## format the code
	$(CARGO) fmt --all

fmt-check: ## check formatting
	$(CARGO) fmt --all -- --check

lint: ## clippy over every target, warnings are errors (no unwrap/expect/panic outside tests)
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

test-unit: ## unit tests only (no moto needed)
	$(CARGO) test --workspace --lib --bins --locked

lint-infra: tools ## validate infra/template.yaml and the example consumer's template offline with cfn-lint, informational rules included
	.venv/bin/cfn-lint -c I -- infra/template.yaml examples/orders-consumer/template.yaml

ARCH ?= arm64

build: tools ## cargo lambda build --release for the four functions, ARCH=arm64 (default) or x86_64 (target/lambda/<name>/bootstrap)
	@case "$(ARCH)" in arm64|x86_64) ;; *) echo "ARCH must be arm64 or x86_64" >&2; exit 2 ;; esac
	PATH="$(CURDIR)/.venv/bin:$$PATH" cargo lambda build --release --locked $(if $(filter arm64,$(ARCH)),--arm64,--x86-64) -p webhook-ingest -p dispatcher -p worker -p call-api
	@for f in webhook-ingest dispatcher worker call-api; do ls -l target/lambda/$$f/bootstrap | awk -v f=$$f -v a=$(ARCH) '{printf "%-15s %s %10d bytes (%.1f MiB)\n", f, a, $$5, $$5/1048576}'; done

deploy: tools ## sam build + sam deploy of the stack (STACK_NAME, CAFE24_CLIENT_ID, OAUTH_REDIRECT_URI, ARCH), then write .relay/aws.env
	ARCH=$(ARCH) scripts/deploy.sh

sam-build: tools ## sam build of the stack as make deploy builds it (ARCH=arm64|x86_64), sizes printed; no AWS call
	ARCH=$(ARCH) scripts/deploy.sh --build-only

deploy-code: build ## update only the four functions' code with cargo lambda deploy (ARCH as deployed)
	ARCH=$(ARCH) scripts/deploy.sh --code-only

relay: ## build the relay ops CLI (target/release/relay; `relay --help`)
	$(CARGO) build --release --locked -p relay
	@echo "target/release/relay --help"

# One build for everything (tests and the demo's binaries): building relay-demo alone would
# resolve features for it alone and compile many dependencies a second time. The workspace's own
# crates compile through clippy-driver (a rustc that also runs Clippy's lints), so this one build
# is `make lint` too: `cargo clippy` would check every dependency a second time in check mode
# (about 2.5 of a clean build's 7.5 minutes). CLIPPY_ARGS is how `cargo clippy -- -D warnings`
# hands its flags to the driver.
LINTED_BUILD = RUSTC_WORKSPACE_WRAPPER="$$(command -v clippy-driver)" CLIPPY_ARGS="-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__"

# What the one build compiles and `cargo test` runs: every target but the test harnesses of
# binaries that hold no tests (`test = false` in their [[bin]]; `--all-targets` would build and
# link those nine empty harnesses anyway).
BUILD_TARGETS = --lib --bins --tests --benches --examples
TEST_TARGETS = --lib --tests --benches --examples

# Most integration tests wait on time-scaled rate limits, not on the CPU: four at a time on the
# 2-core CI machine take ~62 s where two take ~102 s. None asserts a wall-clock share (issue 17).
TEST_THREADS ?= 4

# The Python tools (a fresh venv takes ~10-40 s, mostly unpacking) are installed while cargo builds: the
# build needs none of them, everything after it does.
test: check-purity fmt-check ## everything CI runs: purity, format, lint (clippy -D warnings, in the build), cfn-lint, all tests, and quick demo + bench smoke runs
	@command -v clippy-driver >/dev/null || { echo "clippy-driver not found: rustup component add clippy" >&2; exit 2; }
	@scripts/ensure-tools.sh & tools=$$!; \
	$(LINTED_BUILD) $(CARGO) build --workspace $(BUILD_TARGETS) --locked; built=$$?; \
	wait $$tools || { echo "installing the Python tools failed (scripts/ensure-tools.sh)" >&2; exit 2; }; \
	exit $$built
	$(MAKE) --no-print-directory lint-infra
	$(LINTED_BUILD) RUST_TEST_THREADS=$(TEST_THREADS) scripts/with-moto.sh $(CARGO) test --workspace $(TEST_TARGETS) --locked
	$(LINTED_BUILD) $(CARGO) test -p relay-domain --doc --locked # the one doctest (ratelimit); the linted build, so the library is not compiled again
	scripts/with-moto.sh target/debug/relay-demo --quick
	scripts/with-moto.sh target/debug/relay-bench --quick

demo: ## the whole pipeline locally (moto + Cafe24 simulator + the three handlers), then the relay CLI on its stack
	@scripts/demo.sh

bench: tools ## the burst scenario through relay vs the direct and handoff baselines at real limits, release build (writes docs/benchmarks/)
	$(CARGO) build --release --locked -p relay-demo --bin relay-bench
	scripts/with-moto.sh target/release/relay-bench

scale: ## a virtual-time model of 1,000 malls bursting through the worker's pollers and limiters (prints a table; docs/scale.md)
	$(CARGO) run --release --locked -p relay-demo --bin relay-scale

BASE ?= HEAD
mutants: ## mutation testing of the lines a change touches in shared/domain (uncommitted, or since BASE=<commit>; FILES=… for whole files), the domain crate's own tests only (cargo-mutants from crates.io)
	@command -v cargo-mutants >/dev/null || $(CARGO) install cargo-mutants --locked
	@mkdir -p target
	@if [ -n "$(FILES)" ]; then \
	  $(CARGO) mutants -p relay-domain --test-package relay-domain $(foreach f,$(FILES),-f $(f)) -o target/mutants; \
	else \
	  git diff $(BASE) -- shared/domain/src > target/mutants.diff; \
	  if [ ! -s target/mutants.diff ]; then echo "no change in shared/domain/src against $(BASE)"; exit 0; fi; \
	  $(CARGO) mutants -p relay-domain --test-package relay-domain --in-diff target/mutants.diff -o target/mutants; \
	fi

bench-ingest: ## ingest CPU per request vs plain serde_json parsing (prints a table)
	$(CARGO) bench -p webhook-ingest --bench ingest_cpu --locked

size: ## release binary size of the functions
	$(CARGO) build --release --locked -p webhook-ingest
	@ls -l target/release/webhook-ingest | awk '{printf "webhook-ingest release binary: %d bytes (%.1f MiB)\n", $$5, $$5/1048576}'

clean: moto-stop ## stop moto and remove build output and local state
	$(CARGO) clean
	rm -rf .local
