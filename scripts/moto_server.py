#!/usr/bin/env python3
"""moto_server with DynamoDB's per-request atomicity and SQS FIFO's group lock.

moto's threaded server runs requests concurrently without a lock:
- DynamoDB: two conditional writes on the same item can both read the old item, both pass their
  condition and both write. DynamoDB never does that (a condition and its write are one atomic
  step per item), and the rate limiter's safety rests on it. Under CPU load the race showed up as
  admissions over the GCRA bound in tests/tests/it/limiter_moto.rs.
- SQS FIFO order: see `_release_visible` (a group redelivered out of order after a visibility
  change, and a deferred message's later group-mates handed out while it waited).
- SQS: a FIFO receive snapshots the groups in flight, then takes messages; two concurrent receives
  can both take messages of one group, so two consumers run one mall's jobs at the same time and
  out of order (seen under CPU load in worker::a_throttled_mall_does_not_block_another...). SQS
  never hands out a group that has messages in flight. Sends (deduplication check, then store)
  and deletes race the same way.
- SQS counts: GetQueueAttributes read the clock per message per count, so a message coming back
  into view mid-request was in no count and a drain check could see an empty queue
  (`_counted_at_once`).
This wrapper serializes moto's DynamoDB operations with one lock and its SQS message operations
with another (reads included), then runs moto_server unchanged. A long poll waits outside the
lock: it is retried as short receives until its wait time is over.

Three of moto's costs are patched out, none of them a behaviour (same results, measured in
`make bench`: they made moto's SQS the pace-setter of every end-to-end run):
- the clock: `unix_time`/`unix_time_millis` built datetimes twice per call, and SQS asks the clock
  for every message on every receive; here they read `time.time()` (a server is never time-frozen);
- a receive read the queue's whole attribute map (which counts visible, delayed and in-flight
  messages, each by the clock) once per message it returned, only to learn the retention period;
- the request router listed moto's package directory (~150 `isdir` calls) on every request, under
  its global lock; the list never changes while the server runs, so it is read once.
Werkzeug's per-request access log is off (level WARNING): writing it cost more than some requests.

With MOTO_STATS_FILE set, it also counts the operations it serialized and the time spent holding
each lock, and writes them there as JSON four times a second (read by `make bench`, which reports
how busy the emulator was beside its results).
"""
import functools
import json
import logging
import os
import sys
import threading
import time

import moto.backends
import moto.core.utils
import moto.sqs.models
from moto.dynamodb.models import DynamoDBBackend
from moto.sqs.models import SQSBackend


# Set while a GetQueueAttributes runs: the instant its counts are taken at (see `_counted_at_once`).
_INSTANT = threading.local()


def _now():
    at = getattr(_INSTANT, "t", None)
    return time.time() if at is None else at


def _unix_time(dt=None):
    return _now() if dt is None else _moto_unix_time(dt)


def _unix_time_millis(dt=None):
    return _now() * 1000.0 if dt is None else _moto_unix_time(dt) * 1000.0


_moto_unix_time = moto.core.utils.unix_time
for _module in (moto.core.utils, moto.sqs.models):
    _module.unix_time = _unix_time
    _module.unix_time_millis = _unix_time_millis


def _retention_ok(self, queue_name, message):
    retention_s = int(self.get_queue(queue_name).message_retention_period)
    return retention_s + message.sent_timestamp / 1000 > time.time()


SQSBackend.is_message_valid_based_on_retention_period = _retention_ok

_MODULES = tuple(moto.backends.list_of_moto_modules())
moto.backends.list_of_moto_modules = lambda: _MODULES
logging.getLogger("werkzeug").setLevel(logging.WARNING)

_LOCK = threading.RLock()
_SQS_LOCK = threading.RLock()
_OPS = (
    "put_item", "update_item", "delete_item", "get_item", "batch_write_item", "batch_get_item",
    "transact_write_items", "transact_get_items", "query", "scan",
)


# Per service: operations served and seconds spent holding its lock.
_STATS = {"dynamodb": [0, 0.0], "sqs": [0, 0.0]}
# Operations call each other (a batch calls the single one); only the outermost one counts.
_DEPTH = threading.local()
# Per operation ("sqs.receive_message", ...): how many (outermost) calls.
_OP_COUNTS = {}


def _under(lock, service):
    """Wraps a backend method so that it runs holding `lock`, counted under `service`."""

    def wrap(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            with lock:
                depth = getattr(_DEPTH, "n", 0)
                _DEPTH.n = depth + 1
                t = time.perf_counter()
                try:
                    return fn(*args, **kwargs)
                finally:
                    _DEPTH.n = depth
                    if depth == 0:
                        _STATS[service][0] += 1
                        _STATS[service][1] += time.perf_counter() - t
                        op = f"{service}.{fn.__name__}"
                        table = kwargs.get("table_name") or (args[1] if len(args) > 1 and isinstance(args[1], str) else None)
                        if service == "dynamodb" and table:
                            # Tables are <prefix>-<name>: count per table kind, not per test stack.
                            op += ":" + table.rsplit("-", 1)[-1]
                        _OP_COUNTS[op] = _OP_COUNTS.get(op, 0) + 1

        return run

    return wrap


def _write_stats(path):
    while True:
        time.sleep(0.25)
        doc = {f"{k}_ops": v[0] for k, v in _STATS.items()}
        doc.update({f"{k}_busy_s": round(v[1], 4) for k, v in _STATS.items()})
        doc["operations"] = dict(_OP_COUNTS)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w") as f:
                json.dump(doc, f)
            os.replace(tmp, path)
        except OSError:
            pass


_SQS_OPS = (
    "send_message", "send_message_batch", "delete_message", "delete_message_batch",
    "change_message_visibility", "change_message_visibility_batch", "purge_queue",
    "get_queue_attributes",
)

for _backend, _ops, _lock, _svc in (
    (DynamoDBBackend, _OPS, _LOCK, "dynamodb"),
    (SQSBackend, _SQS_OPS, _SQS_LOCK, "sqs"),
):
    for _name in _ops:
        if hasattr(_backend, _name):
            setattr(_backend, _name, _under(_lock, _svc)(getattr(_backend, _name)))


def _counted_at_once(fn):
    """GetQueueAttributes with every count taken at one instant. moto rebuilds the attribute map
    for each name asked (and twice per name), reading the clock for each message every time, so
    a message whose visibility ran out in between was neither visible nor in flight: a queue
    holding one deferred job could read as empty (tests/tests/it/local_esm.rs,
    `a_message_coming_back_into_view…`)."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        _INSTANT.t = time.time()
        try:
            return fn(*args, **kwargs)
        finally:
            _INSTANT.t = None

    return run


SQSBackend.get_queue_attributes = _counted_at_once(SQSBackend.get_queue_attributes)

_receive = SQSBackend.receive_message


def _release_visible(backend, queue_name):
    """Ends the receive of every FIFO message that is visible again, before a receive looks at the
    groups: moto ends them one by one as its receive loop meets them, so after a visibility
    change on several messages of a group it skipped the group's first (its later ones were
    still "in flight"), then handed out the last one met — a later message before the first
    (tests/tests/it/worker.rs, `the_local_sqs_keeps_a_fifo_group_in_order…`). SQS hands a group
    out from its first message."""
    try:
        queue = backend.get_queue(queue_name)
    except Exception:  # moto's own receive reports a missing queue
        return
    if queue.fifo_queue:
        for m in [m for m in queue.pending_messages if m.visible]:
            queue.pending_messages.discard(m)


@functools.wraps(_receive)
def _receive_atomic(self, queue_name, count, wait_seconds_timeout, visibility_timeout, *args, **kwargs):
    deadline = time.monotonic() + (wait_seconds_timeout or 0)
    while True:
        with _SQS_LOCK:
            t = time.perf_counter()
            _DEPTH.n = 1
            try:
                _release_visible(self, queue_name)
                got = _receive(self, queue_name, count, 0, visibility_timeout, *args, **kwargs)
            finally:
                _DEPTH.n = 0
            _STATS["sqs"][0] += 1
            _STATS["sqs"][1] += time.perf_counter() - t
            _OP_COUNTS["sqs.receive_message"] = _OP_COUNTS.get("sqs.receive_message", 0) + 1
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.02)


SQSBackend.receive_message = _receive_atomic


# ---------------------------------------------------------------------------------------------
# Injected faults: what moto never does and AWS does. A test adds rules over HTTP
# (`POST /_relay/faults`, JSON below) and removes them (`DELETE /_relay/faults?scope=<text>`);
# `GET /_relay/faults` lists them with how often each fired. A rule matches a request by its
# action (the `X-Amz-Target` suffix: "UpdateItem", "SendMessage", "PutEvents", ...) and by a
# text its body contains (`scope`: a test's unique resource prefix, so tests sharing one server
# never meet each other's faults). It fires on matching requests `skip`+1, `skip`+2, ... up to
# `times` of them (0 = every one), on every `every`-th of those (throttling at a rate).
#
# Faults (`fault`):
# - "apply_500": the request is applied, then answered 500 (InternalServerError). The SDK retries
#   an attempt whose outcome it cannot know; the retry meets the applied write.
# - "apply_delay": applied, answered after `delay_ms` (past the client's attempt timeout, the
#   SDK gives up on the attempt and retries it).
# - "apply_reset": applied, then the connection is closed without an answer.
# - "reject_500": answered 500 without applying (a clean transient error).
# - "throttle": answered 400 with the service's throttling error without applying
#   (DynamoDB ThrottlingException, SQS RequestThrottled, EventBridge ThrottlingException).
#
# This is a patch of the server rather than a proxy in front of it: the fault must know whether
# the request was applied, and only the server knows that; one process also keeps one port and
# one lifecycle for every test. Rules live in memory: a restarted server has none.
# ---------------------------------------------------------------------------------------------
import io  # noqa: E402
import socket  # noqa: E402
import struct  # noqa: E402
from urllib.parse import parse_qs  # noqa: E402

_FAULTS = []
_FAULTS_LOCK = threading.Lock()
_FAULT_KINDS = ("apply_500", "apply_delay", "apply_reset", "reject_500", "throttle")


def _json_answer(start_response, status, doc, headers=()):
    body = json.dumps(doc).encode()
    start_response(status, [("Content-Type", "application/x-amz-json-1.0"), ("Content-Length", str(len(body))), *headers])
    return [body]


def _control(environ, start_response):
    method = environ.get("REQUEST_METHOD", "GET")
    if method == "POST":
        try:
            size = int(environ.get("CONTENT_LENGTH") or 0)
            rule = json.loads(environ["wsgi.input"].read(size) or b"{}")
            if rule.get("fault") not in _FAULT_KINDS or not rule.get("action") or not rule.get("scope"):
                raise ValueError("a rule needs action, scope and a fault of " + ", ".join(_FAULT_KINDS))
            rule = {
                "action": str(rule["action"]), "scope": str(rule["scope"]), "fault": rule["fault"],
                "skip": int(rule.get("skip", 0)), "times": int(rule.get("times", 1)),
                "every": max(1, int(rule.get("every", 1))), "delay_ms": int(rule.get("delay_ms", 0)),
                "seen": 0, "fired": 0,
            }
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            return _json_answer(start_response, "400 Bad Request", {"error": str(e)})
        with _FAULTS_LOCK:
            _FAULTS.append(rule)
        return _json_answer(start_response, "200 OK", rule)
    if method == "DELETE":
        scope = parse_qs(environ.get("QUERY_STRING", "")).get("scope", [""])[0]
        with _FAULTS_LOCK:
            _FAULTS[:] = [r for r in _FAULTS if scope and r["scope"] != scope]
        return _json_answer(start_response, "200 OK", {"left": len(_FAULTS)})
    with _FAULTS_LOCK:
        return _json_answer(start_response, "200 OK", list(_FAULTS))


def _pick(action, body):
    """The rule that fires on this request, counting it against every rule it matches."""
    text = body.decode("utf-8", "replace")
    with _FAULTS_LOCK:
        for r in _FAULTS:
            if r["action"] != action or r["scope"] not in text:
                continue
            r["seen"] += 1
            k = r["seen"] - r["skip"]
            if k <= 0 or (r["times"] and r["fired"] >= r["times"]) or k % r["every"]:
                continue
            r["fired"] += 1
            return dict(r)
    return None


def _throttle_type(target):
    if target.startswith("AmazonSQS"):
        return "AWS.SimpleQueueService.RequestThrottled", [("x-amzn-query-error", "RequestThrottled;Sender")]
    if target.startswith("DynamoDB"):
        return "com.amazonaws.dynamodb.v20120810#ThrottlingException", []
    return "ThrottlingException", []


def _with_faults(app):
    def run(environ, start_response):
        if environ.get("PATH_INFO") == "/_relay/faults":
            return _control(environ, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not _FAULTS or not target:
            return app(environ, start_response)
        size = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(size)
        environ["wsgi.input"] = io.BytesIO(body)
        rule = _pick(target.rsplit(".", 1)[-1], body)
        if rule is None:
            return app(environ, start_response)
        fault = rule["fault"]
        if fault == "throttle":
            kind, headers = _throttle_type(target)
            return _json_answer(start_response, "400 Bad Request", {"__type": kind, "message": "Rate exceeded (injected)"}, headers)
        if fault == "reject_500":
            return _json_answer(start_response, "500 Internal Server Error", {"__type": "InternalServerError", "message": "injected, not applied"})
        held = {}

        def keep(status, headers, exc_info=None):
            held["status"], held["headers"] = status, headers
            return lambda _data: None

        answer = b"".join(app(environ, keep))  # applied here
        if fault == "apply_500":
            return _json_answer(start_response, "500 Internal Server Error", {"__type": "InternalServerError", "message": "injected, applied"})
        if fault == "apply_reset":
            sock = environ.get("werkzeug.socket")
            if sock is not None:
                try:
                    # Linger 0: close answers with a TCP reset, as a dropped connection does.
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    sock.close()
                except OSError:
                    pass
            return _json_answer(start_response, "500 Internal Server Error", {"__type": "InternalServerError", "message": "injected reset"})
        time.sleep(rule["delay_ms"] / 1000.0)
        start_response(held["status"], held["headers"])
        return [answer]

    return run


import moto.server  # noqa: E402

_Dispatcher = moto.server.DomainDispatcherApplication


class _FaultyDispatcher(_Dispatcher):
    def __call__(self, environ, start_response):
        return _with_faults(super().__call__)(environ, start_response)


moto.server.DomainDispatcherApplication = _FaultyDispatcher

from moto.server import main  # noqa: E402  (after the patch)

if __name__ == "__main__":
    if os.environ.get("MOTO_STATS_FILE"):
        threading.Thread(target=_write_stats, args=(os.environ["MOTO_STATS_FILE"],), daemon=True).start()
    sys.exit(main())
