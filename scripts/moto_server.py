#!/usr/bin/env python3
"""moto_server with DynamoDB's per-request atomicity.

moto's threaded server runs DynamoDB requests concurrently without a lock: two conditional
writes on the same item can both read the old item, both pass their condition and both write.
DynamoDB never does that (a condition and its write are one atomic step per item), and the rate
limiter's safety rests on it. Under CPU load the race shows up as admissions over the GCRA bound
in tests/tests/limiter_moto.rs. This wrapper serializes moto's DynamoDB operations with one lock
(reads included, so a read never sees half a transaction) and then runs moto_server unchanged.
"""
import functools
import sys
import threading

from moto.dynamodb.models import DynamoDBBackend

_LOCK = threading.RLock()
_OPS = (
    "put_item", "update_item", "delete_item", "get_item", "batch_write_item", "batch_get_item",
    "transact_write_items", "transact_get_items", "query", "scan",
)


def _atomic(fn):
    @functools.wraps(fn)
    def run(*args, **kwargs):
        with _LOCK:
            return fn(*args, **kwargs)

    return run


for _name in _OPS:
    if hasattr(DynamoDBBackend, _name):
        setattr(DynamoDBBackend, _name, _atomic(getattr(DynamoDBBackend, _name)))

from moto.server import main  # noqa: E402  (after the patch)

if __name__ == "__main__":
    sys.exit(main())
