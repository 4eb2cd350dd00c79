#!/usr/bin/env bash
# make deploy / make deploy-code — deploy cafe24-relay to AWS.
#
#   scripts/deploy.sh              the stack (AWS SAM: queues, tables, functions, mappings, alarms,
#                                  queries): `sam build` (Cargo Lambda builds each function crate,
#                                  the template's rust-cargolambda build method), then `sam deploy`
#                                  of what it built, then .relay/aws.env for the relay CLI — the
#                                  same two commands as `sam build && sam deploy` with samconfig.toml
#   scripts/deploy.sh --no-build   the stack from an earlier `sam build` (.aws-sam/build)
#   scripts/deploy.sh --build-only `sam build` and the architecture check, no AWS call (make sam-build)
#   scripts/deploy.sh --code-only  only the function code, with `cargo lambda deploy` of the
#                                  binaries `make build` left in target/lambda/
#   scripts/deploy.sh --dry-run    print the commands, run nothing (checked by a test)
#
# Environment:
#   STACK_NAME         default cafe24-relay (function names are <stack>-webhook-ingest, …)
#   CAFE24_CLIENT_ID   required for a stack deploy (template parameter Cafe24ClientId)
#   OAUTH_REDIRECT_URI optional: default (empty) = the ingest Function URL + oauth/callback, derived
#                      by the function itself; set it when a custom domain fronts the Function URL
#   SECRET_NAME        default cafe24-relay/secrets (must exist: see README, first deployment)
#   CAFE24_API_VERSION optional (template default: empty, no header; the developer center's app version)
#   ALARM_EMAIL        optional: subscribed to the stack's alarm topic (template AlarmEmail)
#   ALARM_TOPIC_ARN    optional: an existing SNS topic for every alarm instead (AlarmTopicArn)
#   EVENT_BUS_ARN      optional: deliver to an existing EventBridge bus (EventBusArn)
#   PARAMETERS         optional: more template parameters, "Name=Value Name=Value" (e.g.
#                      "JobsInFlight=4 RoutingOverrides={}"); every setting of the README's
#                      configuration tables that is not fixed is one
#   OAUTH_SCOPES       optional: scopes the app's own commands and calls need, e.g.
#                      mall.write_mileage (OAuthScopes; the relay's read scopes are always asked)
#   WORKER_MAX_CONCURRENCY, INGEST_RESERVED_CONCURRENCY, APP_URL_RESERVED_CONCURRENCY,
#   CALL_API_RESERVED_CONCURRENCY
#                      optional (template WorkerMaxConcurrency, IngestReservedConcurrency,
#                      AppUrlReservedConcurrency, CallApiReservedConcurrency): the stack's
#                      reservations, checked against the
#                      account's concurrency before anything is deployed (concurrency-check.py)
#   ARCH               arm64 (default, Graviton) or x86_64: the template's Architecture and
#                      what `make build` built; a binary of the other architecture is refused
#   AWS credentials and region as usual (AWS_PROFILE, AWS_REGION, …).
# The SAM CLI is installed on demand into .venv-deploy (kept apart from the test tools' venv).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
MODE=stack
DRY=0
BUILD=1
for a in "$@"; do
  case "$a" in
    --code-only) MODE=code ;;
    --no-build) BUILD=0 ;;
    --build-only) MODE=build ;;
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
FUNCTIONS=(webhook-ingest dispatcher worker call-api)
# Each deployed function: binary, function-name suffix, template logical id. webhook-ingest is
# deployed twice (INGEST_ROUTES): the webhook receiver and the browser-facing App URL.
DEPLOYMENTS=(webhook-ingest:webhook-ingest:WebhookIngestFunction webhook-ingest:app-url:AppUrlFunction
  dispatcher:dispatcher:DispatcherFunction worker:worker:WorkerFunction call-api:call-api:CallApiFunction)
LAMBDA_DIR="${LAMBDA_DIR:-target/lambda}" # where `make build` leaves <fn>/bootstrap

SAM_BUILD_DIR="${SAM_BUILD_DIR:-.aws-sam/build}" # where `sam build` leaves <LogicalId>/bootstrap
declare -A LOGICAL=([webhook-ingest]=WebhookIngestFunction [dispatcher]=DispatcherFunction [worker]=WorkerFunction
  [call-api]=CallApiFunction)

run() {
  if [[ $DRY == 1 ]]; then printf '%q ' "$@"; echo; else "$@"; fi
}

# A binary Lambda cannot run fails every invocation with Runtime.InvalidEntrypoint, so it never
# leaves this machine: the ELF header's e_machine (2 bytes at offset 18) must be ARCH's.
check_binary() {
  local bin="$1" hint="$2"
  [[ $DRY == 1 ]] && return 0
  if [[ ! -f "$bin" ]]; then
    echo "deploy.sh: $bin is missing — $hint" >&2
    exit 1
  fi
  local machine
  machine="$(od -An -tu2 -j18 -N2 "$bin" | tr -d ' ')"
  if [[ "$machine" != "$ELF_MACHINE" ]]; then
    echo "deploy.sh: $bin is not an $ARCH binary (ELF machine $machine): $hint" >&2
    exit 1
  fi
}

if [[ $MODE == code ]]; then
  # The template owns queues, tables, mappings, roles and environment: no --env-var here (it
  # would replace the function's variables), no --iam-role (the function exists).
  export PATH="$ROOT/.venv/bin:$PATH" # cargo-lambda from `make tools`
  for f in "${FUNCTIONS[@]}"; do
    check_binary "$LAMBDA_DIR/$f/bootstrap" "run make build ARCH=$ARCH"
  done
  for d in "${DEPLOYMENTS[@]}"; do
    IFS=: read -r f name _ <<<"$d"
    run cargo lambda deploy --binary-name "$f" "$STACK_NAME-$name" --lambda-dir "$LAMBDA_DIR"
    # cargo lambda zips beside the binary; a later `sam deploy` must package the binary only.
    run rm -f "$LAMBDA_DIR/$f/bootstrap.zip"
  done
  echo "deploy.sh: code updated outside CloudFormation (the stack shows drift until the next make deploy)" >&2
  exit 0
fi

if [[ $MODE == stack ]]; then
  : "${CAFE24_CLIENT_ID:?set CAFE24_CLIENT_ID (the Cafe24 app client id)}"
fi
SAM="$ROOT/.venv-deploy/bin/sam"
ensure_sam() {
  if [[ $DRY == 0 && ! -x "$SAM" ]]; then
    echo "deploy.sh: installing the AWS SAM CLI into .venv-deploy ..." >&2
    python3 -m venv "$ROOT/.venv-deploy"
    "$ROOT/.venv-deploy/bin/pip" install --quiet --disable-pip-version-check aws-sam-cli
  fi
}
if [[ $BUILD == 1 ]]; then
  ensure_sam
  # rust-cargolambda is a SAM CLI preview build method (--beta-features); cargo-lambda and zig
  # come from `make tools`. The Architecture parameter picks --arm64 or --x86-64.
  PATH="$ROOT/.venv/bin:$PATH" run "$SAM" build --beta-features --template-file infra/template.yaml \
    --build-dir "$SAM_BUILD_DIR" --parameter-overrides "Architecture=$ARCH"
fi
for d in "${DEPLOYMENTS[@]}"; do
  IFS=: read -r _ _ logical <<<"$d"
  check_binary "$SAM_BUILD_DIR/$logical/bootstrap" "run scripts/deploy.sh without --no-build (ARCH=$ARCH)"
done
if [[ $MODE == build ]]; then
  for f in "${FUNCTIONS[@]}"; do
    b="$SAM_BUILD_DIR/${LOGICAL[$f]}/bootstrap"
    [[ $DRY == 1 ]] || printf '%-15s %s %10d bytes\n' "$f" "$ARCH" "$(stat -c %s "$b")"
  done
  exit 0
fi
ensure_sam
overrides=("Cafe24ClientId=$CAFE24_CLIENT_ID" "SecretName=$SECRET_NAME" "Architecture=$ARCH")
if [[ -n "${OAUTH_REDIRECT_URI:-}" ]]; then overrides+=("OAuthRedirectUri=$OAUTH_REDIRECT_URI"); fi
if [[ -n "${CAFE24_API_VERSION:-}" ]]; then overrides+=("Cafe24ApiVersion=$CAFE24_API_VERSION"); fi
if [[ -n "${ALARM_EMAIL:-}" ]]; then overrides+=("AlarmEmail=$ALARM_EMAIL"); fi
if [[ -n "${ALARM_TOPIC_ARN:-}" ]]; then overrides+=("AlarmTopicArn=$ALARM_TOPIC_ARN"); fi
if [[ -n "${EVENT_BUS_ARN:-}" ]]; then overrides+=("EventBusArn=$EVENT_BUS_ARN"); fi
if [[ -n "${OAUTH_SCOPES:-}" ]]; then overrides+=("OAuthScopes=$OAUTH_SCOPES"); fi
if [[ -n "${PARAMETERS:-}" ]]; then
  read -r -a extra <<< "$PARAMETERS"
  for kv in "${extra[@]}"; do
    [[ "$kv" =~ ^[A-Za-z0-9]+=.*$ ]] || { echo "PARAMETERS: \"$kv\" is not Name=Value" >&2; exit 2; }
    overrides+=("$kv")
  done
fi
# The reservations this deploy sets (the template's defaults unless overridden; the dispatcher's
# is fixed at 10). A test keeps these defaults equal to the template's.
worker_c="${WORKER_MAX_CONCURRENCY:-50}"
ingest_c="${INGEST_RESERVED_CONCURRENCY:-20}"
app_c="${APP_URL_RESERVED_CONCURRENCY:-5}"
call_c="${CALL_API_RESERVED_CONCURRENCY:-5}"
if [[ -n "${WORKER_MAX_CONCURRENCY:-}" ]]; then overrides+=("WorkerMaxConcurrency=$worker_c"); fi
if [[ -n "${INGEST_RESERVED_CONCURRENCY:-}" ]]; then overrides+=("IngestReservedConcurrency=$ingest_c"); fi
if [[ -n "${APP_URL_RESERVED_CONCURRENCY:-}" ]]; then overrides+=("AppUrlReservedConcurrency=$app_c"); fi
if [[ -n "${CALL_API_RESERVED_CONCURRENCY:-}" ]]; then overrides+=("CallApiReservedConcurrency=$call_c"); fi
# Refused here, with the fix, rather than by CloudFormation halfway through the update.
run "$ROOT/.venv-deploy/bin/python" scripts/concurrency-check.py --stack "$STACK_NAME" \
  --want "webhook-ingest=$ingest_c" "app-url=$app_c" dispatcher=10 "worker=$worker_c" "call-api=$call_c"
run "$SAM" deploy --template-file "$SAM_BUILD_DIR/template.yaml" --stack-name "$STACK_NAME" \
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
