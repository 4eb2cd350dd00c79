#!/usr/bin/env python3
"""Refuses a deploy whose reserved concurrency the account cannot hold (run by scripts/deploy.sh).

Lambda keeps at least 100 concurrent executions of an account unreserved; a stack that would
reserve more than the rest fails in CloudFormation halfway through (UPDATE_ROLLBACK, or a new
stack without its functions). This check reads the account first and says what to change.

  concurrency-check.py --stack NAME --want SUFFIX=N ...        reads the account (boto3)
  concurrency-check.py --stack NAME --want ... --account JSON  offline: {"limit": L,
      "unreserved": U, "reserved": {"<function name>": N}} (the tests, and a dry run by hand)

A function of this stack that already holds a reservation gives it back when its new one is
set, so only the difference counts on a redeploy. Exit 0 = fits, 1 = refused (the reason and
the fix on stderr), 2 = bad arguments or the account could not be read.
"""
import argparse
import json
import sys

# Lambda's documented floor of unreserved concurrency per account and region.
UNRESERVED_FLOOR = 100


def verdict(limit, unreserved, reserved, wanted):
    """(ok, message). reserved: this stack's functions' current reservations by name (absent =
    none); wanted: the reservations this deploy sets, by function name."""
    given_back = sum(reserved.get(name, 0) for name in wanted)
    asked = sum(wanted.values())
    left = unreserved + given_back - asked
    parts = ", ".join(f"{name} {n}" for name, n in sorted(wanted.items()))
    if left >= UNRESERVED_FLOOR:
        return True, f"reserved concurrency fits: {asked} reserved ({parts}), {left} of {limit} left unreserved"
    short = UNRESERVED_FLOOR - left
    return False, (
        f"this stack would reserve {asked} concurrent executions ({parts}), leaving {left} of the "
        f"account's {limit} unreserved; Lambda requires at least {UNRESERVED_FLOOR}.\n"
        f"Fix: ask for a higher 'Concurrent executions' quota (Service Quotas, AWS Lambda, "
        f"L-B99A9384) of at least {limit + short}, or lower the reservations by {short} "
        f"(WORKER_MAX_CONCURRENCY, INGEST_RESERVED_CONCURRENCY, APP_URL_RESERVED_CONCURRENCY, "
        f"CALL_API_RESERVED_CONCURRENCY)."
    )


def read_account(names):
    import boto3  # from .venv-deploy (the SAM CLI depends on it)

    client = boto3.client("lambda")
    acct = client.get_account_settings()["AccountLimit"]
    reserved = {}
    for name in names:
        try:
            got = client.get_function_concurrency(FunctionName=name).get("ReservedConcurrentExecutions")
        except client.exceptions.ResourceNotFoundException:
            continue  # first deploy
        if got is not None:
            reserved[name] = int(got)
    return int(acct["ConcurrentExecutions"]), int(acct["UnreservedConcurrentExecutions"]), reserved


def main(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--stack", required=True)
    p.add_argument("--want", nargs="+", required=True, metavar="SUFFIX=N")
    p.add_argument("--account", help="offline account figures (JSON)")
    a = p.parse_args(argv)
    wanted = {}
    for w in a.want:
        suffix, _, n = w.partition("=")
        if not suffix or not n.isdigit():
            print(f"concurrency-check: --want {w!r} is not SUFFIX=N", file=sys.stderr)
            return 2
        wanted[f"{a.stack}-{suffix}"] = int(n)
    try:
        if a.account is not None:
            acct = json.loads(a.account)
            limit, unreserved, reserved = int(acct["limit"]), int(acct["unreserved"]), dict(acct.get("reserved", {}))
        else:
            limit, unreserved, reserved = read_account(list(wanted))
    except (ValueError, KeyError, TypeError) as e:
        print(f"concurrency-check: unreadable account figures: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - no credentials, no network: say so, do not deploy
        print(f"concurrency-check: could not read the account's Lambda settings: {e}", file=sys.stderr)
        return 2
    ok, message = verdict(limit, unreserved, reserved, wanted)
    print(("concurrency-check: " if ok else "concurrency-check: refused: ") + message, file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
