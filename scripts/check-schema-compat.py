#!/usr/bin/env python3
"""Refuses an incompatible change to the event schemas without a version bump.

    check-schema-compat.py RELEASED_DIR CURRENT_DIR

RELEASED_DIR holds the schemas as last released (docs/events/released/<schema_version>/), and
CURRENT_DIR the schemas now (docs/events/). For each released schema whose `schema_version`
is still the current one, every event valid against the released schema must stay valid
against the current one, as far as these checks can tell (docs/events/README.md, "Evolution"):
a property is never removed, its types only widen, a `const` never changes, an `enum` only
grows, nothing becomes required that was not, and no object closes to unknown properties.
Prints one line per incompatibility and exits 1; a schema whose version was bumped is not
compared (its consumers opt in).
"""
import json
import pathlib
import sys


def types(s):
    t = s.get("type")
    if t is None:
        return None  # anything
    return {t} if isinstance(t, str) else set(t)


def compare(old, new, where, out):
    if not isinstance(old, dict) or not isinstance(new, dict):
        return
    ot, nt = types(old), types(new)
    if ot is not None and nt is not None and not ot <= nt:
        # "integer" values stay valid as "number".
        if not (ot - nt == {"integer"} and "number" in nt):
            out.append(f"{where}: type {sorted(ot)} narrowed to {sorted(nt)}")
    if "const" in old and old.get("const") != new.get("const", old.get("const")):
        out.append(f"{where}: const changed from {old['const']!r} to {new.get('const')!r}")
    if "const" not in old and "const" in new:
        out.append(f"{where}: a const was added")
    if "enum" in new and ("enum" not in old or not set(map(json.dumps, old["enum"])) <= set(map(json.dumps, new["enum"]))):
        out.append(f"{where}: enum narrowed")
    newly = set(new.get("required", [])) - set(old.get("required", []))
    if newly:
        out.append(f"{where}: newly required {sorted(newly)}")
    if new.get("additionalProperties") is False and old.get("additionalProperties") is not False:
        out.append(f"{where}: closed to unknown properties")
    for name, sub in old.get("properties", {}).items():
        if name not in new.get("properties", {}):
            out.append(f"{where}.{name}: removed")
        else:
            compare(sub, new["properties"][name], f"{where}.{name}", out)
    if isinstance(old.get("items"), dict):
        compare(old["items"], new.get("items", {}), f"{where}[]", out)


def version(schema):
    return schema.get("properties", {}).get("schema_version", {}).get("const")


def main(released, current):
    problems = []
    files = sorted(pathlib.Path(released).glob("*.schema.json"))
    if not files:
        print(f"no released schemas in {released}")
        return 1
    for f in files:
        old = json.loads(f.read_text())
        cur_path = pathlib.Path(current) / f.name
        if not cur_path.exists():
            problems.append(f"{f.name}: removed")
            continue
        new = json.loads(cur_path.read_text())
        if version(new) != version(old):
            continue  # bumped: a new contract
        compare(old, new, f.name, problems)
    for p in problems:
        print(p)
    print(f"{len(files)} schemas compared, {len(problems)} incompatible changes")
    return 1 if problems else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
