#!/usr/bin/env bash
# The local AWS stack: moto_server (SQS + DynamoDB on their real wire protocols) on a free
# loopback port.
#   scripts/moto.sh start   start (idempotent); prints the endpoint URL
#   scripts/moto.sh url     print the endpoint URL of the running server (fails if none)
#   scripts/moto.sh reset   wipe all state (POST /moto-api/reset)
#   scripts/moto.sh stop    stop it
# State lives in .local/ (pid, url, log). Installs the venv first when missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
STATE="$ROOT/.local"
PIDF="$STATE/moto.pid"
URLF="$STATE/moto.url"
LOG="$STATE/moto.log"
mkdir -p "$STATE"

running() { [[ -f "$PIDF" ]] && kill -0 "$(cat "$PIDF")" 2>/dev/null; }

free_port() {
  "$ROOT/.venv/bin/python" - <<'PY'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
PY
}

wait_ready() {
  local url="$1"
  for _ in $(seq 1 150); do
    if "$ROOT/.venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(sys.argv[1] + '/moto-api/', timeout=1)" "$url" 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  echo "moto.sh: moto_server did not become ready; see $LOG" >&2
  return 1
}

case "${1:-}" in
  start)
    if running; then cat "$URLF"; exit 0; fi
    "$ROOT/scripts/ensure-tools.sh"
    port="$(free_port)"
    # setsid: not killed with the shell that started it; `stop` ends it.
    # scripts/moto_server.py: moto_server with DynamoDB requests made atomic, as on AWS.
    MOTO_STATS_FILE="$STATE/moto-stats.json" setsid "$ROOT/.venv/bin/python" "$ROOT/scripts/moto_server.py" -H 127.0.0.1 -p "$port" >"$LOG" 2>&1 < /dev/null &
    echo $! > "$PIDF"
    echo "http://127.0.0.1:$port" > "$URLF"
    wait_ready "$(cat "$URLF")"
    cat "$URLF"
    ;;
  url)
    running && cat "$URLF" || { echo "moto.sh: not running (scripts/moto.sh start)" >&2; exit 1; }
    ;;
  reset)
    running || { echo "moto.sh: not running" >&2; exit 1; }
    "$ROOT/.venv/bin/python" -c "import urllib.request,sys; urllib.request.urlopen(urllib.request.Request(sys.argv[1] + '/moto-api/reset', method='POST'), timeout=5)" "$(cat "$URLF")"
    ;;
  stop)
    if running; then kill "$(cat "$PIDF")" 2>/dev/null || true; fi
    rm -f "$PIDF" "$URLF"
    ;;
  *)
    echo "usage: $0 start|url|reset|stop" >&2; exit 2 ;;
esac
