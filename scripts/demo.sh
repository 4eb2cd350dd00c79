#!/usr/bin/env bash
# make demo: the whole pipeline on this machine, at Cafe24's real limits.
#   moto (SQS + DynamoDB) + the Cafe24 simulator + the handlers of webhook-ingest (over HTTP),
#   dispatcher and worker driven by the local event source mapping; OAuth install into three
#   malls; a burst of webhooks; live progress; a report. Exit 0 only if every event was
#   processed exactly once with zero 429s. (tools/demo/src/main.rs)
# Then the relay ops CLI on the demo's stack: one webhook followed through the three functions'
# log lines, and a mall's status. moto is left running so `target/debug/relay --local …` keeps
# working; `make moto-stop` stops it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/ensure-tools.sh"
echo "==> building (the first run compiles the workspace: a few minutes)"
cargo build --quiet --locked -p relay-demo -p relay
"$ROOT/scripts/moto.sh" start >/dev/null
export AWS_ENDPOINT_URL="$("$ROOT/scripts/moto.sh" url)"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
"$ROOT/target/debug/relay-demo" "$@"
if [[ -f target/relay-local/example-trace ]]; then
  trace="$(cat target/relay-local/example-trace)"
  echo
  echo "==> target/debug/relay --local trace $trace    (one webhook, all three functions)"
  "$ROOT/target/debug/relay" --local trace "$trace"
  echo
  echo "==> target/debug/relay --local mall status bigshop"
  "$ROOT/target/debug/relay" --local mall status bigshop
  echo
  echo "moto is still running for target/debug/relay --local …  (make moto-stop stops it)"
fi
