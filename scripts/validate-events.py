#!/usr/bin/env python3
"""Validates delivered events against docs/events/*.schema.json — strictly.

The published schemas leave objects open, so a consumer that validates keeps working when the
relay adds an optional field (docs/events/README.md, "Evolution"). The relay itself must never
send a field the schemas do not name: here every object that lists its properties is closed
(`additionalProperties: false`) before validating.

Reads JSON lines on stdin, each an EventBridge event as a subscriber receives it
({"detail-type": ..., "source": ..., "detail": {...}}). Prints one line per invalid event and
exits 1 if any; prints the count per detail-type otherwise. Uses the jsonschema package that
cfn-lint brings into the project's venv.
"""
import json
import pathlib
import sys

from jsonschema import Draft202012Validator

DOCS = pathlib.Path(__file__).resolve().parent.parent / "docs" / "events"
FAMILY = {
    "webhook.received": "webhook.received",
    "order.synced": "synced", "product.synced": "synced", "customer.synced": "synced",
    "order.deleted": "deleted", "product.deleted": "deleted", "customer.deleted": "deleted",
    "mall.installed": "mall", "mall.uninstalled": "mall", "mall.needs_reauth": "mall",
    "command.succeeded": "command", "command.failed": "command", "command.uncertain": "command",
}


def strict(schema):
    """The schema with every object that lists properties closed to any other (conditions —
    `if`, `not` — are tests, not shapes: left as written)."""
    if isinstance(schema, dict):
        out = {k: (v if k in ("if", "not") else strict(v)) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


def main() -> int:
    validators = {}
    counts, bad = {}, 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        event = json.loads(line)
        kind = event.get("detail-type")
        family = FAMILY.get(kind)
        if family is None or event.get("source") != "cafe24-relay":
            print(f"line {n}: unknown detail-type {kind!r} or source {event.get('source')!r}")
            bad += 1
            continue
        if family not in validators:
            schema = strict(json.loads((DOCS / f"{family}.schema.json").read_text()))
            Draft202012Validator.check_schema(schema)
            validators[family] = Draft202012Validator(schema)
        errors = list(validators[family].iter_errors(event.get("detail")))
        for e in errors:
            print(f"line {n} ({kind}): {e.json_path}: {e.message[:200]}")
        if kind.endswith(".synced") or kind.endswith(".deleted"):
            if kind.split(".")[0] != event["detail"].get("kind"):
                print(f"line {n}: detail-type {kind} but kind {event['detail'].get('kind')!r}")
                errors.append(kind)
        if kind.startswith("command."):
            # A success carries Cafe24's status and body; a failure or uncertainty its reason.
            has_reason = "reason" in event["detail"]
            if has_reason == (kind == "command.succeeded"):
                print(f"line {n}: {kind} {'with' if has_reason else 'without'} a reason")
                errors.append(kind)
        bad += bool(errors)
        counts[kind] = counts.get(kind, 0) + 1
    print(json.dumps(counts, sort_keys=True))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
