#!/usr/bin/env bash
# make demo: the whole pipeline on this machine, at Cafe24's real limits.
#   moto (SQS + DynamoDB) + the Cafe24 simulator + the handlers of webhook-ingest (over HTTP),
#   dispatcher and worker driven by the local event source mapping; OAuth install into three
#   malls; a burst of webhooks; live progress; a report. Exit 0 only if every event was
#   processed exactly once with zero 429s. (tools/demo/src/main.rs)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/ensure-tools.sh"
echo "==> building (the first run compiles the workspace: a few minutes)"
cargo build --quiet --locked -p relay-demo
exec "$ROOT/scripts/with-moto.sh" "$ROOT/target/debug/relay-demo"
