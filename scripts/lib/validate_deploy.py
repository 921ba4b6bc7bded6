"""Validate docker-compose.yml and deploy/Dockerfile without a Docker engine.

Used by scripts/validate-deploy.sh inside a venv that has pyyaml, jsonschema,
compose-spec (Rust compose_spec parser bindings) and dockerfile (BuildKit's Go
parser bindings).

    python validate_deploy.py REPO_ROOT COMPOSE_SCHEMA_JSON

Checks:
  compose  - YAML parses (with anchors/merge keys resolved); validates against
             the compose-spec JSON schema; parses with compose_spec (strict
             typed parser); cross-references (depends_on targets exist,
             bind-mounted files exist, build context/Dockerfile exist, named
             volumes declared) and the Herald shape asked for in the brief.
  Dockerfile - parses with BuildKit's parser; multi-stage rust:1.88+ builder ->
             debian:bookworm-slim runtime; non-root USER; EXPOSE 8080;
             ENTRYPOINT ["herald"], CMD ["serve"]; COPY sources exist; the
             binary comes from the builder unless --build-arg HERALD_BINARY=prebuilt
             (then from the herald-bin named build context).
"""

from __future__ import annotations

import json
import os
import re
import sys

import jsonschema
import yaml

ERRORS: list[str] = []
# Variables a `${VAR:?message}` reference needs and the environment does not set.
REQUIRED_MISSING: set[str] = set()
# The secrets docker-compose.yml must refuse to start without (no public defaults).
REQUIRED_SECRETS = {"HERALD_SERVICE_KEYS", "HERALD_JWT_HS256_SECRET", "POSTGRES_PASSWORD"}


def err(where: str, msg: str) -> None:
    ERRORS.append(f"{where}: {msg}")


def interpolate(value, where="compose"):
    """Resolve ${VAR:-default} / ${VAR-default} / ${VAR} / $$ like compose does."""
    if isinstance(value, dict):
        return {k: interpolate(v, where) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, where) for v in value]
    if not isinstance(value, str):
        return value

    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name, op, default = m.group(1), m.group(2), m.group(3)
        if op in (":-", "-"):
            cur = os.environ.get(name)
            if cur is None or (op == ":-" and cur == ""):
                return default or ""
            return cur
        if op in (":?", "?"):
            cur = os.environ.get(name)
            if cur is None or (op == ":?" and cur == ""):
                REQUIRED_MISSING.add(name)
                return ""
            return cur
        return os.environ.get(name, "")

    pattern = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
    out = pattern.sub(repl, value)
    if re.search(r"\$[A-Za-z_{]", out):
        err(where, f"unresolved or malformed variable reference in {value!r}")
    return out


def check_compose(root: str, schema_path: str) -> None:
    path = os.path.join(root, "docker-compose.yml")
    where = "docker-compose.yml"
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as e:
        err(where, f"YAML parse error: {e}")
        return
    if not isinstance(doc, dict):
        err(where, "top level is not a mapping")
        return
    # Without the secrets, compose must refuse: every secret is a `${VAR:?…}` reference.
    saved = {k: os.environ.pop(k) for k in REQUIRED_SECRETS if k in os.environ}
    REQUIRED_MISSING.clear()
    interpolate(doc, where)
    if REQUIRED_MISSING != REQUIRED_SECRETS:
        err(
            where,
            f"without a .env, compose must refuse for exactly {sorted(REQUIRED_SECRETS)}; "
            f"it refuses for {sorted(REQUIRED_MISSING)}",
        )
    # Validate the rest with sample secrets (restoring the caller's environment after).
    for k in REQUIRED_SECRETS:
        os.environ[k] = saved.get(k, f"sample-{k.lower()}-0123456789abcdefghijklmnopqrstuvwxyz")
    REQUIRED_MISSING.clear()
    doc = interpolate(doc, where)
    for k in REQUIRED_SECRETS:
        if k in saved:
            os.environ[k] = saved[k]
        else:
            del os.environ[k]
    if REQUIRED_MISSING:
        err(where, f"{sorted(REQUIRED_MISSING)} required without a default")
    # Published ports bind to loopback unless the user says otherwise.
    for sname, svc in (doc.get("services") or {}).items():
        for port in svc.get("ports") or []:
            if not (isinstance(port, str) and port.startswith("127.0.0.1:")):
                err(where, f"services.{sname}: port {port!r} is not bound to 127.0.0.1 by default")

    # 1. The compose-spec JSON schema.
    with open(schema_path, encoding="utf-8") as f:
        schema = json.load(f)
    # This schema predates the top-level `name` key (compose-spec, 2021-12);
    # check it separately and validate the rest against the schema.
    schema_doc = dict(doc)
    name = schema_doc.pop("name", None)
    if name is not None and not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", str(name)):
        err(where, f"project name {name!r} must match [a-z0-9][a-z0-9_-]*")
    validator = jsonschema.Draft7Validator(schema)
    for e in sorted(validator.iter_errors(schema_doc), key=lambda e: list(e.absolute_path)):
        loc = "/".join(str(p) for p in e.absolute_path) or "<root>"
        err(where, f"schema: {loc}: {e.message}")

    # 2. compose_spec's strict typed parser (rejects unknown keys, bad types).
    try:
        from compose_spec import PyCompose

        parsed = PyCompose.from_yaml(yaml.safe_dump(doc, sort_keys=False))
        names = set(parsed.service_names())
        if names != set(doc.get("services", {})):
            err(where, f"compose_spec saw services {sorted(names)}")
    except ValueError as e:
        err(where, f"compose_spec parser: {e}")

    # 3. Cross references.
    services = doc.get("services") or {}
    volumes = set((doc.get("volumes") or {}).keys())
    for sname, svc in services.items():
        sw = f"{where}: services.{sname}"
        dep = svc.get("depends_on") or {}
        dep_names = dep if isinstance(dep, list) else list(dep.keys())
        for d in dep_names:
            if d not in services:
                err(sw, f"depends_on unknown service {d!r}")
        if "image" not in svc and "build" not in svc:
            err(sw, "needs image or build")
        build = svc.get("build")
        if isinstance(build, dict):
            ctx = os.path.join(root, build.get("context", "."))
            if not os.path.isdir(ctx):
                err(sw, f"build context {ctx} missing")
            dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile"))
            if not os.path.isfile(dockerfile):
                err(sw, f"Dockerfile {dockerfile} missing")
        for v in svc.get("volumes") or []:
            if isinstance(v, str):
                src = v.split(":", 1)[0]
                if src.startswith((".", "/")):
                    if not os.path.exists(os.path.join(root, src)):
                        err(sw, f"bind mount source {src} does not exist")
                elif src not in volumes:
                    err(sw, f"named volume {src!r} not declared under volumes:")

    # 4. The Herald shape.
    want = {"postgres", "redis", "migrate", "gateway-a", "gateway-b", "haproxy"}
    missing = want - set(services)
    if missing:
        err(where, f"missing services: {sorted(missing)}")
        return
    if not str(services["postgres"].get("image", "")).startswith("postgres:15"):
        err(where, "postgres must use postgres:15")
    if not str(services["redis"].get("image", "")).startswith("redis:7"):
        err(where, "redis must use redis:7")
    if services["migrate"].get("command") != ["migrate"]:
        err(where, "migrate must run `herald migrate`")
    if (services["migrate"].get("depends_on") or {}).get("postgres", {}).get(
        "condition"
    ) != "service_healthy":
        err(where, "migrate must depend on postgres being healthy")
    for g in ("gateway-a", "gateway-b"):
        svc = services[g]
        if svc.get("command") != ["serve"]:
            err(where, f"{g} must run `herald serve`")
        cond = (svc.get("depends_on") or {}).get("migrate", {}).get("condition")
        if cond != "service_completed_successfully":
            err(where, f"{g} must depend on migrate completing successfully")
        test = " ".join((svc.get("healthcheck") or {}).get("test") or [])
        if "/readyz" not in test:
            err(where, f"{g} healthcheck must probe /readyz")
        env = svc.get("environment") or {}
        for var in (
            "HERALD_DATABASE_URL",
            "HERALD_REDIS_URL",
            "HERALD_SERVICE_KEYS",
            "HERALD_JWT_HS256_SECRET",
            "HERALD_NODE_ID",
        ):
            if not env.get(var):
                err(where, f"{g} environment lacks {var}")
        if len(env.get("HERALD_JWT_HS256_SECRET", "")) < 32:
            err(where, f"{g}: HERALD_JWT_HS256_SECRET default shorter than 32 bytes")
        if any(len(k) < 16 for k in env.get("HERALD_SERVICE_KEYS", "").split(",")):
            err(where, f"{g}: a HERALD_SERVICE_KEYS default is shorter than 16 chars")
    hap = services["haproxy"]
    if not str(hap.get("image", "")).startswith("haproxy:"):
        err(where, "haproxy must use the official haproxy image")
    if not any("haproxy-compose.cfg" in str(v) for v in hap.get("volumes") or []):
        err(where, "haproxy must mount deploy/haproxy/haproxy-compose.cfg")
    if not any(str(p).endswith("8080:8080") for p in hap.get("ports") or []):
        err(where, "haproxy must publish 8080")
    cfg = os.path.join(root, "deploy/haproxy/haproxy-compose.cfg")
    if os.path.isfile(cfg):
        text = open(cfg, encoding="utf-8").read()
        for g in ("gateway-a", "gateway-b"):
            if f"{g}:8080" not in text:
                err("haproxy-compose.cfg", f"no server {g}:8080")


def check_dockerfile(root: str) -> None:
    path = os.path.join(root, "deploy/Dockerfile")
    where = "deploy/Dockerfile"
    import dockerfile

    try:
        cmds = dockerfile.parse_file(path)
    except dockerfile.GoParseError as e:
        err(where, f"parse error: {e}")
        return
    known = {
        "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK",
        "LABEL", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR",
    }
    stages = []  # list of (base, alias, [cmds])
    global_args = {}  # ARG defaults declared before the first FROM
    for c in cmds:
        if c.cmd not in known:
            err(where, f"line {c.start_line}: unknown instruction {c.cmd}")
        if c.cmd == "ARG" and not stages:
            for a in c.value:
                k, _, v = a.partition("=")
                global_args[k] = v
        if c.cmd == "FROM":
            base = re.sub(
                r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?",
                lambda m: global_args.get(m.group(1), m.group(0)),
                c.value[0],
            )
            if "$" in base:
                err(where, f"line {c.start_line}: FROM {c.value[0]} uses an ARG without a default")
            alias = c.value[2] if len(c.value) >= 3 and c.value[1].upper() == "AS" else None
            stages.append((base, alias, []))
        elif not stages:
            if c.cmd != "ARG":
                err(where, f"line {c.start_line}: {c.cmd} before FROM")
        else:
            stages[-1][2].append(c)
    if len(stages) < 2:
        err(where, "must be multi-stage (builder + runtime)")
        return
    builder, runtime = stages[0], stages[-1]
    m = re.match(r"rust:(\d+)\.(\d+)", builder[0])
    if not m or (int(m.group(1)), int(m.group(2))) < (1, 88):
        err(where, f"builder base {builder[0]!r} must be rust:1.88 or newer")
    if not builder[0].endswith("-bookworm"):
        err(where, f"builder base {builder[0]!r} should be a -bookworm variant (same glibc as the runtime)")
    if not any(
        c.cmd == "RUN" and "cargo build --release" in " ".join(c.value) and "-p herald-gateway" in " ".join(c.value)
        for c in builder[2]
    ):
        err(where, "builder must run cargo build --release -p herald-gateway")
    if runtime[0] != "debian:bookworm-slim":
        err(where, f"runtime base {runtime[0]!r} must be debian:bookworm-slim")
    rt = {c.cmd: c for c in runtime[2]}  # last of each kind wins
    if not any(c.cmd == "RUN" and "ca-certificates" in " ".join(c.value) for c in runtime[2]):
        err(where, "runtime must install ca-certificates")
    user = rt.get("USER")
    if user is None or user.value[0].split(":")[0] in ("root", "0"):
        err(where, "runtime must switch to a non-root USER")
    if "EXPOSE" not in rt or "8080" not in " ".join(rt["EXPOSE"].value):
        err(where, "runtime must EXPOSE 8080")
    ep, cmd = rt.get("ENTRYPOINT"), rt.get("CMD")
    if ep is None or not ep.json or list(ep.value) != ["herald"]:
        err(where, 'ENTRYPOINT must be ["herald"] (exec form)')
    if cmd is None or not cmd.json or list(cmd.value) != ["serve"]:
        err(where, 'CMD must be ["serve"] (exec form)')
    aliases = {a for _, a, _ in stages if a}
    # Named build contexts (`--build-context NAME=DIR`) a COPY --from may name.
    named_contexts = {"herald-bin"}
    if global_args.get("HERALD_BINARY") != "builder":
        err(where, "ARG HERALD_BINARY must default to builder (compile from source)")
    for _, _, scmds in stages:
        for c in scmds:
            if c.cmd != "COPY" or any(f.startswith("--from=") for f in c.flags):
                continue
            for src in c.value[:-1]:
                if not os.path.exists(os.path.join(root, src)):
                    err(where, f"line {c.start_line}: COPY source {src} not in the build context")
        for c in scmds:
            for f in c.flags:
                if f.startswith("--from=") and f[7:] not in aliases | named_contexts:
                    err(where, f"line {c.start_line}: --from={f[7:]} is not a stage")
    ignore = os.path.join(root, ".dockerignore")
    if not os.path.isfile(ignore) or "target" not in open(ignore, encoding="utf-8").read().split():
        err(".dockerignore", "must exist at the repo root and exclude target")


def main() -> int:
    root, schema = sys.argv[1], sys.argv[2]
    check_compose(root, schema)
    check_dockerfile(root)
    if ERRORS:
        for e in ERRORS:
            print(f"  FAIL {e}")
        return 1
    print("  ok docker-compose.yml (compose-spec schema, compose_spec parser, cross-refs)")
    print("  ok deploy/Dockerfile (BuildKit parser, structure)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
