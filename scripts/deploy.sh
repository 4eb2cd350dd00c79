#!/usr/bin/env bash
# make deploy / make deploy-code — deploy cafe24-relay to AWS.
#
#   scripts/deploy.sh              the stack (AWS SAM: queues, tables, functions, mappings, alarms,
#                                  queries) from infra/template.yaml with the binaries `make build`
#                                  left in target/lambda/, then .relay/aws.env for the relay CLI
#   scripts/deploy.sh --code-only  only the function code, with `cargo lambda deploy`
#   scripts/deploy.sh --dry-run    print the commands, run nothing (checked by a test)
#
# Environment:
#   STACK_NAME         default cafe24-relay (function names are <stack>-webhook-ingest, …)
#   CAFE24_CLIENT_ID   required for a stack deploy (template parameter Cafe24ClientId)
#   OAUTH_REDIRECT_URI required for a stack deploy; on the very first deploy use a placeholder,
#                      read IngestUrl from .relay/aws.env and deploy again with <IngestUrl>oauth/callback
#   SECRET_NAME        default cafe24-relay/secrets (must exist: see README, first deployment)
#   CAFE24_API_VERSION optional, default in the template
#   ALARM_EMAIL        optional: subscribed to the stack's alarm topic (template AlarmEmail)
#   ALARM_TOPIC_ARN    optional: an existing SNS topic for every alarm instead (AlarmTopicArn)
#   EVENT_BUS_ARN      optional: deliver to an existing EventBridge bus (EventBusArn)
#   ARCH               arm64 (default, Graviton) or x86_64: the template's Architecture and
#                      what `make build` built; a binary of the other architecture is refused
#   AWS credentials and region as usual (AWS_PROFILE, AWS_REGION, …).
# The SAM CLI is installed on demand into .venv-deploy (kept apart from the test tools' venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MODE=stack
DRY=0
for a in "$@"; do
  case "$a" in
    --code-only) MODE=code ;;
    --dry-run) DRY=1 ;;
    *) echo "deploy.sh: unknown argument $a" >&2; exit 2 ;;
  esac
done
STACK_NAME="${STACK_NAME:-cafe24-relay}"
ARCH="${ARCH:-arm64}"
case "$ARCH" in
  arm64) ELF_MACHINE=183 ;;  # EM_AARCH64
  x86_64) ELF_MACHINE=62 ;;  # EM_X86_64
  *) echo "deploy.sh: ARCH must be arm64 or x86_64, not $ARCH" >&2; exit 2 ;;
esac
SECRET_NAME="${SECRET_NAME:-cafe24-relay/secrets}"
FUNCTIONS=(webhook-ingest dispatcher worker)
LAMBDA_DIR="${LAMBDA_DIR:-target/lambda}" # where `make build` leaves <fn>/bootstrap

run() {
  if [[ $DRY == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

for f in "${FUNCTIONS[@]}"; do
  if [[ $DRY == 0 && ! -f "$LAMBDA_DIR/$f/bootstrap" ]]; then
    echo "deploy.sh: $LAMBDA_DIR/$f/bootstrap is missing — run make build first" >&2
    exit 1
  fi
  # The ELF header's e_machine (2 bytes at offset 18): a binary Lambda cannot run fails every
  # invocation with Runtime.InvalidEntrypoint, so it never leaves this machine.
  if [[ $DRY == 0 ]]; then
    machine="$(od -An -tu2 -j18 -N2 "$LAMBDA_DIR/$f/bootstrap" | tr -d ' ')"
    if [[ "$machine" != "$ELF_MACHINE" ]]; then
      echo "deploy.sh: $LAMBDA_DIR/$f/bootstrap is not an $ARCH binary (ELF machine $machine): run make build ARCH=$ARCH" >&2
      exit 1
    fi
  fi
done

if [[ $MODE == code ]]; then
  # The template owns queues, tables, mappings, roles and environment: no --env-var here (it
  # would replace the function's variables), no --iam-role (the function exists).
  export PATH="$ROOT/.venv/bin:$PATH" # cargo-lambda from `make tools`
  for f in "${FUNCTIONS[@]}"; do
    run cargo lambda deploy --binary-name "$f" "$STACK_NAME-$f" --lambda-dir "$LAMBDA_DIR"
    # cargo lambda zips beside the binary; a later `sam deploy` must package the binary only.
    run rm -f "$LAMBDA_DIR/$f/bootstrap.zip"
  done
  echo "deploy.sh: code updated outside CloudFormation (the stack shows drift until the next make deploy)" >&2
  exit 0
fi

: "${CAFE24_CLIENT_ID:?set CAFE24_CLIENT_ID (the Cafe24 app client id)}"
: "${OAUTH_REDIRECT_URI:?set OAUTH_REDIRECT_URI (<IngestUrl>oauth/callback; a placeholder on the first deploy)}"
SAM="$ROOT/.venv-deploy/bin/sam"
if [[ $DRY == 0 && ! -x "$SAM" ]]; then
  echo "deploy.sh: installing the AWS SAM CLI into .venv-deploy ..." >&2
  python3 -m venv "$ROOT/.venv-deploy"
  "$ROOT/.venv-deploy/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli
fi
overrides=("Cafe24ClientId=$CAFE24_CLIENT_ID" "OAuthRedirectUri=$OAUTH_REDIRECT_URI" "SecretName=$SECRET_NAME" "Architecture=$ARCH")
if [[ -n "${CAFE24_API_VERSION:-}" ]]; then overrides+=("Cafe24ApiVersion=$CAFE24_API_VERSION"); fi
if [[ -n "${ALARM_EMAIL:-}" ]]; then overrides+=("AlarmEmail=$ALARM_EMAIL"); fi
if [[ -n "${ALARM_TOPIC_ARN:-}" ]]; then overrides+=("AlarmTopicArn=$ALARM_TOPIC_ARN"); fi
if [[ -n "${EVENT_BUS_ARN:-}" ]]; then overrides+=("EventBusArn=$EVENT_BUS_ARN"); fi
run "$SAM" deploy --template-file infra/template.yaml --stack-name "$STACK_NAME" \
  --capabilities CAPABILITY_IAM --resolve-s3 --no-fail-on-empty-changeset \
  --parameter-overrides "${overrides[@]}"

# Stack outputs → .relay/aws.env (InboxDlqUrl → INBOX_DLQ_URL), read by the relay CLI.
run mkdir -p .relay
if [[ $DRY == 1 ]]; then
  echo "$SAM list stack-outputs --stack-name $STACK_NAME --output json > .relay/aws.env (converted)"
  exit 0
fi
"$SAM" list stack-outputs --stack-name "$STACK_NAME" --output json | python3 -c '
import json, re, sys
print("# written by make deploy from the stack outputs")
for o in json.load(sys.stdin):
    key = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", o["OutputKey"]).upper()
    print(key + "=" + o["OutputValue"])
' > .relay/aws.env
echo "==> deployed $STACK_NAME; the relay CLI reads .relay/aws.env:"
cat .relay/aws.env
