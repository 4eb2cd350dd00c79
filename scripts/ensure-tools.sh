#!/usr/bin/env bash
# Creates the project's Python venv (.venv) with the local-stack tools from PyPI if missing:
#   moto[server]  - SQS and DynamoDB on the real wire protocols
#   cargo-lambda  - `cargo lambda watch/build/invoke` (brings zig)
#   cfn-lint      - offline validation of infra/ templates
#   aws-sam-translator - the SAM transform, offline (tests read the template as CloudFormation deploys it)
# Idempotent: a stamp file records the pinned requirement set, so a second run is instant.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="$ROOT/.venv"
REQ="$ROOT/scripts/requirements-dev.txt"
STAMP="$VENV/.requirements.sha256"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [[ -x "$VENV/bin/moto_server" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  exit 0
fi
echo "ensure-tools: creating $VENV (moto[server], cargo-lambda, cfn-lint) ..." >&2
python3 -m venv "$VENV"
# uv (from PyPI) installs the set with less CPU than pip, which `make test` spends beside its
# first cargo build: 8-37 s of CPU (user + sys) in three cold installs here against pip's 38-66 s;
# most of what is left is unpacking cargo-lambda's zig.
"$VENV/bin/pip" install --quiet --disable-pip-version-check "uv==0.13.*"
"$VENV/bin/uv" pip install --quiet --python "$VENV/bin/python" -r "$REQ"
echo "$want" > "$STAMP"
