#!/usr/bin/env bash
# Fails when shared/domain (relay-domain) depends, directly or transitively, on an AWS SDK,
# a Lambda runtime crate, an HTTP client/server stack or tokio. The domain must stay pure.
#   scripts/check-domain-purity.sh              check the real dependency tree
#   scripts/check-domain-purity.sh --self-test  prove the check catches a forbidden crate
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
FORBIDDEN='^(aws-[a-z0-9-]+|aws_lambda_events|lambda_runtime|lambda_http|lambda_runtime_api_client|reqwest|hyper|tokio|tokio-[a-z0-9-]+|mio) '

check() { # reads `cargo tree --prefix none` lines on stdin
  local bad
  bad="$(grep -E "$FORBIDDEN" | sort -u || true)"
  if [[ -n "$bad" ]]; then
    echo "check-domain-purity: relay-domain must not depend on:" >&2
    echo "$bad" | sed 's/^/  /' >&2
    return 1
  fi
}

if [[ "${1:-}" == "--self-test" ]]; then
  printf 'relay-domain v0.1.0\nserde v1.0.0\ntokio v1.48.0\n' | check 2>/dev/null && { echo "self-test FAILED: tokio not caught" >&2; exit 1; }
  printf 'relay-domain v0.1.0\naws-sdk-sqs v1.0.0\n' | check 2>/dev/null && { echo "self-test FAILED: aws-sdk-sqs not caught" >&2; exit 1; }
  printf 'relay-domain v0.1.0\nserde v1.0.0\nsha2 v0.10.9\n' | check || { echo "self-test FAILED: clean tree refused" >&2; exit 1; }
  echo "check-domain-purity: self-test ok"
  exit 0
fi

cd "$ROOT"
tree="$(cargo tree -p relay-domain -e normal,build --prefix none --offline 2>/dev/null || cargo tree -p relay-domain -e normal,build --prefix none)"
echo "$tree" | check
echo "check-domain-purity: relay-domain is pure ($(echo "$tree" | sort -u | wc -l) crates in its tree)"
