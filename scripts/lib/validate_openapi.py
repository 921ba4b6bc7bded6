"""Validate docs/openapi.json, the OpenAPI 3.1 document of the HTTP API.

Used by scripts/validate-deploy.sh inside its venv (PyPI `openapi-spec-validator`, pinned there).

    python validate_openapi.py REPO_ROOT

Checks:
  spec      - the document against the OpenAPI 3.1 specification (openapi-spec-validator's
              3.1 validator: structure, schemas, every $ref resolves, path parameters declared).
  version   - `openapi` is 3.1.x and `info.version` is the protocol version that
              docs/protocol.md states ("**Protocol version X.Y.**").
  content   - every operation answers JSON errors with the ErrorBody schema, and every
              security requirement names a declared scheme.
Then a self-test: deliberately broken copies of the document must each be rejected, so the
checks above cannot pass vacuously (for example if the validator stopped looking).
"""

from __future__ import annotations

import copy
import json
import os
import re
import sys

from openapi_spec_validator import OpenAPIV31SpecValidator

DOC = "docs/openapi.json"
PROTOCOL = "docs/protocol.md"


def spec_errors(doc: dict) -> list[str]:
    try:
        validator = OpenAPIV31SpecValidator(doc)
        return [str(e).splitlines()[0] for e in validator.iter_errors()]
    except Exception as e:  # a broken $ref raises while resolving
        return [f"{type(e).__name__}: {str(e)[:300]}"]


def own_errors(doc: dict, protocol_version: str) -> list[str]:
    errors = []
    if not str(doc.get("openapi", "")).startswith("3.1."):
        errors.append(f"openapi is {doc.get('openapi')!r}, not 3.1.x")
    version = doc.get("info", {}).get("version")
    if version != protocol_version:
        errors.append(
            f"info.version {version!r} is not the protocol version {protocol_version!r} "
            f"of {PROTOCOL}"
        )
    schemes = set(doc.get("components", {}).get("securitySchemes", {}))
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            where = f"{method.upper()} {path}"
            for req in op.get("security", []):
                for name in req:
                    if name not in schemes:
                        errors.append(f"{where}: security scheme {name!r} is not declared")
            for status, resp in op.get("responses", {}).items():
                if not status.startswith(("4", "5")):
                    continue
                body = json.dumps(resp.get("content", {}).get("application/json", {}))
                if "#/components/schemas/ErrorBody" not in body:
                    errors.append(f"{where}: {status} is not an ErrorBody JSON response")
    if not doc.get("paths"):
        errors.append("no paths")
    return errors


def check(doc: dict, protocol_version: str) -> list[str]:
    return spec_errors(doc) + own_errors(doc, protocol_version)


def breakages(doc: dict):
    """(what, broken copy) pairs; each must fail check()."""

    def broken(what, change):
        d = copy.deepcopy(doc)
        change(d)
        return what, d

    first_path = next(iter(doc["paths"]))
    first_op = next(iter(doc["paths"][first_path]))
    param_path = next(p for p in doc["paths"] if "{" in p)

    def drop_params(d):
        for op in d["paths"][param_path].values():
            op.pop("parameters", None)

    def bad_ref(d):
        d["components"]["schemas"]["ErrorBody"]["properties"]["code"] = {
            "$ref": "#/components/schemas/NoSuchSchema"
        }

    def bad_type(d):
        d["components"]["schemas"]["Notification"]["properties"]["seq"]["type"] = "int64"

    def undeclared_scheme(d):
        d["paths"]["/v1/notifications"]["post"]["security"] = [{"apiKey": []}]

    def text_error(d):
        d["paths"]["/v1/notifications"]["post"]["responses"]["401"]["content"] = {
            "text/plain": {"schema": {"type": "string"}}
        }

    yield broken("no info", lambda d: d.pop("info"))
    yield broken("openapi 3.0.3", lambda d: d.__setitem__("openapi", "3.0.3"))
    yield broken("a response without a description",
                 lambda d: d["paths"][first_path][first_op]["responses"]["200"].pop("description"))
    yield broken(f"{param_path} without its path parameters", drop_params)
    yield broken("a dangling $ref", bad_ref)
    yield broken("an invalid schema type", bad_type)
    yield broken("another info.version", lambda d: d["info"].__setitem__("version", "0.0"))
    yield broken("an undeclared security scheme", undeclared_scheme)
    yield broken("a plain-text error response", text_error)


def main() -> int:
    root = sys.argv[1] if len(sys.argv) > 1 else "."
    with open(os.path.join(root, DOC), encoding="utf-8") as f:
        doc = json.load(f)
    with open(os.path.join(root, PROTOCOL), encoding="utf-8") as f:
        m = re.search(r"\*\*Protocol version (\d+\.\d+)\.\*\*", f.read())
    if not m:
        print(f"{PROTOCOL}: no '**Protocol version X.Y.**' line", file=sys.stderr)
        return 1
    protocol_version = m.group(1)

    failed = False
    errors = check(doc, protocol_version)
    for e in errors:
        print(f"{DOC}: {e}", file=sys.stderr)
        failed = True
    if not errors:
        n = sum(len(item) for item in doc["paths"].values())
        print(f"ok {DOC}: OpenAPI {doc['openapi']}, {n} operations, "
              f"{len(doc['components']['schemas'])} schemas, version {protocol_version}")

    caught = 0
    for what, broken in breakages(doc):
        if check(broken, protocol_version):
            caught += 1
        else:
            print(f"self-test: a copy with {what} was accepted", file=sys.stderr)
            failed = True
    if not failed:
        print(f"ok self-test: {caught} deliberately broken copies rejected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
