#!/usr/bin/env bash
# make test's test step. The end-to-end binary (relay-tests: about 90 s, two thirds of all test
# time) runs beside everything else — the other test binaries, cfn-lint, the doctest — and its
# output is printed after theirs. Everything is built by the step before; cargo releases its
# build lock while tests run, so the two cargo processes do not wait on each other.
# Environment (from the Makefile): CARGO, TEST_TARGETS, and the linted build's wrapper.
set -uo pipefail
cd "$(dirname "$0")/.."
cargo="${CARGO:-cargo}"
read -r -a targets <<< "${TEST_TARGETS:---lib --tests}"
log=target/test-e2e.log
mkdir -p target
"$cargo" test -p relay-tests "${targets[@]}" --locked > "$log" 2>&1 &
e2e=$!
"$cargo" test --workspace --exclude relay-tests "${targets[@]}" --locked
rest=$?
make --no-print-directory lint-infra || rest=1
"$cargo" test -p relay-domain --doc --locked || rest=1 # the one doctest (ratelimit)
wait "$e2e"
e2e_rc=$?
echo "---- relay-tests (end to end) ----"
cat "$log"
if [[ $rest != 0 || $e2e_rc != 0 ]]; then
  echo "tests failed: others rc=$rest, relay-tests rc=$e2e_rc" >&2
  exit 1
fi
