#!/usr/bin/env python3
"""An app acting on a Cafe24 mall through cafe24-relay, in Python (boto3/botocore only).

Two doors (docs/commands):
- a command: one SQS FIFO message to the stack's CommandQueueUrl, deduplicated by its key; the
  result arrives later on the bus as command.succeeded / command.failed / command.uncertain;
- the call API: an HTTPS request to CallApiUrl signed with SigV4 (service "lambda", the
  Function URL's AWS_IAM auth), answered with Cafe24's status and body.

Run against a deployed stack:
    python relay_app.py --queue-url $COMMAND_QUEUE_URL --call-url $CALL_API_URL \
        --mall myshop --order 20260101-0000001 --member m1
`make demo` runs it against the local stack and checks what it did.
Credentials and region come from the standard AWS chain; the app's role needs the stack's
CommandSenderPolicyArn. Prints one JSON line per step; exits 1 if a step did not go as expected.
"""
import argparse
import json
import sys
import urllib.error
import urllib.request

import boto3
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest


def send_command(sqs, queue_url, command):
    """Queues one command: its key is the deduplication id, the mall its message group."""
    return sqs.send_message(
        QueueUrl=queue_url,
        MessageBody=json.dumps(command),
        MessageGroupId=command["mall_id"],
        MessageDeduplicationId=command["key"],
    )


def call(session, call_url, body, idempotency_key=None, region=None):
    """POST /v1/call, signed for the Function URL. Returns (status, headers, JSON body)."""
    url = call_url.rstrip("/") + "/v1/call"
    data = json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    request = AWSRequest(method="POST", url=url, data=data, headers=headers)
    credentials = session.get_credentials().get_frozen_credentials()
    SigV4Auth(credentials, "lambda", region or session.region_name or "us-east-1").add_auth(request)
    prepared = urllib.request.Request(url, data=data, headers=dict(request.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(prepared, timeout=15) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, json.loads(e.read() or b"null")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue-url", required=True)
    p.add_argument("--call-url", required=True)
    p.add_argument("--mall", required=True)
    p.add_argument("--order", required=True, help="an order id of the mall (read through the call API)")
    p.add_argument("--member", required=True, help="a member id of the mall (granted points)")
    p.add_argument("--key-prefix", default="py")
    a = p.parse_args()
    session = boto3.session.Session()
    ok = True

    def step(name, good, **fields):
        nonlocal ok
        ok &= bool(good)
        print(json.dumps({"step": name, "ok": bool(good), **fields}), flush=True)

    # 1. A command: points for the order's buyer; the result comes on the bus.
    key = f"{a.key_prefix}-grant-{a.order}"
    command = {"v": 1, "key": key, "mall_id": a.mall, "method": "POST", "path": "points",
               "body": {"shop_no": 1, "request": {"member_id": a.member, "amount": "200",
                                                   "reason": f"python example {key}"}}}
    sent = send_command(session.client("sqs"), a.queue_url, command)
    step("command", "MessageId" in sent, key=key)

    # 2. A read for a screen: answered now, under the mall's limiter (never Cafe24's 429).
    status, headers, body = call(session, a.call_url, {"mall_id": a.mall, "method": "GET", "path": f"orders/{a.order}"})
    step("read", status == 200 and (body or {}).get("order", {}).get("order_id") == a.order,
         status=status, outcome=headers.get("x-relay-outcome"))

    # 3. An urgent write with an Idempotency-Key, then the same request again (a retry after a
    #    lost answer): the second is the recorded answer, and Cafe24 saw one request.
    write_key = f"{a.key_prefix}-call-{a.order}"
    grant = {"mall_id": a.mall, "method": "POST", "path": "points",
             "body": {"shop_no": 1, "request": {"member_id": a.member, "amount": "100",
                                                 "reason": f"python example {write_key}"}}}
    first = call(session, a.call_url, grant, idempotency_key=write_key)
    again = call(session, a.call_url, grant, idempotency_key=write_key)
    step("write", first[0] == 201 and again[0] == 201 and again[1].get("x-relay-replayed") == "true",
         key=write_key, status=first[0], retried_status=again[0], replayed=again[1].get("x-relay-replayed"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
