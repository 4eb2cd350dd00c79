#!/usr/bin/env bash
# Runs a command with the local moto server up and the standard AWS variables pointing at it.
# Starts moto if it is not running and stops it afterwards (a server that was already running
# is left running).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
started=0
if ! "$ROOT/scripts/moto.sh" url >/dev/null 2>&1; then
  "$ROOT/scripts/moto.sh" start >/dev/null
  started=1
fi
cleanup() { if [[ $started == 1 ]]; then "$ROOT/scripts/moto.sh" stop; fi; }
trap cleanup EXIT
export AWS_ENDPOINT_URL="$("$ROOT/scripts/moto.sh" url)"
export MOTO_STATS_FILE="$ROOT/.local/moto-stats.json" # operations and busy time (scripts/moto_server.py)
export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
"$@"
