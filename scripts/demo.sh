#!/usr/bin/env bash
# make demo: the ingest stage of the pipeline, locally, end to end.
#  1. installs the tools if missing and starts moto (SQS) on a free port;
#  2. creates the inbox FIFO queue and its FIFO DLQ (the parking place) with production attributes;
#  3. runs the real webhook-ingest binary under `cargo lambda watch` (Function URL emulation);
#  4. posts every Cafe24 sample webhook, a Cafe24-style retry and a wrong-key request;
#  5. shows what landed in the inbox and the parking queue, and checks it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
"$ROOT/scripts/ensure-tools.sh"
export PATH="$ROOT/.venv/bin:$PATH"
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1

echo "==> building"
cargo build --quiet -p devstack -p webhook-ingest
started_moto=0
if ! scripts/moto.sh url >/dev/null 2>&1; then scripts/moto.sh start >/dev/null; started_moto=1; fi
export AWS_ENDPOINT_URL="$(scripts/moto.sh url)"
echo "==> moto at $AWS_ENDPOINT_URL"

prefix="demo-$(date +%s)-"
eval "$(target/debug/devstack up --prefix "$prefix" | sed 's/^/export /')"
echo "==> inbox   $INBOX_QUEUE_URL"
echo "==> parking $PARKING_QUEUE_URL"

KEY="demo-webhook-key"
PORT="$(.venv/bin/python -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p .local
setsid cargo lambda watch --package webhook-ingest --bin webhook-ingest --ignore-changes --quiet \
  --invoke-address 127.0.0.1 --invoke-port "$PORT" \
  --env-var "WEBHOOK_API_KEY=$KEY,INBOX_QUEUE_URL=$INBOX_QUEUE_URL,PARKING_QUEUE_URL=$PARKING_QUEUE_URL,AWS_ENDPOINT_URL=$AWS_ENDPOINT_URL,AWS_ACCESS_KEY_ID=testing,AWS_SECRET_ACCESS_KEY=testing,AWS_REGION=us-east-1" \
  </dev/null >.local/demo-ingest.log 2>&1 &
WATCH=$!
cleanup() {
  # bash's builtin kill: /usr/bin/kill (procps) has been seen to turn "-PGID" into -1 (everything).
  builtin kill -TERM -- "-$WATCH" 2>/dev/null || true
  if [[ $started_moto == 1 ]]; then scripts/moto.sh stop; fi
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  (echo > "/dev/tcp/127.0.0.1/$PORT") 2>/dev/null && break
  sleep 0.2
done
echo "==> webhook-ingest (cargo lambda watch) at http://127.0.0.1:$PORT/lambda-url/webhook-ingest/webhooks/cafe24"
echo
target/debug/devstack post-samples --url "http://127.0.0.1:$PORT/lambda-url/webhook-ingest/webhooks/cafe24" \
  --key "$KEY" --dir tests/fixtures/cafe24
echo
inbox="$(target/debug/devstack peek --queue "$INBOX_QUEUE_URL")"
parking="$(target/debug/devstack peek --queue "$PARKING_QUEUE_URL")"
echo "$inbox"; echo; echo "$parking"; echo
echo "==> ingest log lines (one per request; no payloads, no keys):"
grep '"message":"webhook"' .local/demo-ingest.log | head -3
echo "    … $(grep -c '"message":"webhook"' .local/demo-ingest.log) lines in .local/demo-ingest.log"

samples=$(ls tests/fixtures/cafe24/*.json | wc -l)
parked_expected=$(ls tests/fixtures/cafe24/quirk-missing-*.json | wc -l)
got_inbox=$(echo "$inbox" | head -1 | cut -d' ' -f1)
got_parked=$(echo "$parking" | head -1 | cut -d' ' -f1)
if [[ "$got_inbox" == "$((samples - parked_expected))" && "$got_parked" == "$parked_expected" ]]; then
  echo "==> OK: $samples samples + 1 retry + 1 forgery → $got_inbox in the inbox, $got_parked parked, retry deduplicated, forgery refused"
else
  echo "==> FAILED: expected $((samples - parked_expected)) in the inbox and $parked_expected parked, got $got_inbox and $got_parked" >&2
  exit 1
fi
