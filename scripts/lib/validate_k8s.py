"""Validate the Kubernetes manifests in deploy/k8s without a cluster.

Used by scripts/validate-deploy.sh inside its venv (PyPI `kubernetes-validate`, which ships
the Kubernetes JSON schemas, so nothing is downloaded at run time).

    python validate_k8s.py REPO_ROOT K8S_VERSION [K8S_VERSION...]

Checks every manifest under deploy/k8s (examples/ included):
  schema    - each object against the Kubernetes schema of every version given, in strict
              mode (an unknown field fails; so does a kind/apiVersion with no schema).
  layout    - no object names a namespace (kustomization.yaml sets it); kustomization.yaml
              lists exactly the manifests outside examples/.
  cross     - the Service exposes only the public port (never the admin port); readiness
              probes /readyz and liveness /healthz on the public port; the grace period
              covers the preStop sleep and HERALD_DRAIN_GRACE_MS; every HERALD_*_FILE path
              (and the database URL's sslrootcert) is a file some mount provides; the memory
              request covers HERALD_MAX_CONNECTIONS by the measured per-socket figures; and
              the rest listed in check().
Then a self-test: it breaks in-memory copies of the manifests in known ways and fails unless
every breakage is caught, so none of the checks above passes vacuously.
"""

from __future__ import annotations

import copy
import glob
import math
import os
import posixpath
import re
import sys
from urllib.parse import parse_qs, urlsplit

import kubernetes_validate
import yaml

K8S_DIR = "deploy/k8s"
EXAMPLES = "examples"
NAMESPACE = "herald"

# Memory per socket, from docs/performance.md (see deployment.yaml's resources comment).
RSS_KIB_PER_SOCKET = 3.1  # highest measured RSS per idle socket
KERNEL_KIB_PER_SOCKET = 2.0  # kernel memory per idle TCP socket (1-2 KiB), charged to the pod
FIXED_MIB = 128  # allowance for everything that is not a socket (not measured)
# SIGKILL must not come right as the drain ends: process exit and the last flushes.
DRAIN_MARGIN_S = 5
# Settings that are secrets: never in a ConfigMap.
SECRET_SETTINGS = {
    "HERALD_DATABASE_URL",
    "HERALD_REDIS_URL",
    "HERALD_SERVICE_KEYS",
    "HERALD_SCOPED_SERVICE_KEYS",
    "HERALD_BUS_HMAC_KEY",
    "HERALD_JWT_HS256_SECRET",
}
DEFAULTS = {
    "HERALD_DRAIN_GRACE_MS": 10_000,
    "HERALD_DRAIN_SPREAD_MS": 3_000,
    "HERALD_MAX_CONNECTIONS": 10_000,
    "HERALD_HEARTBEAT_INTERVAL_MS": 25_000,
}


class Manifests:
    """Every object under deploy/k8s by file, and kustomization.yaml."""

    def __init__(self, files: dict[str, list], kustomization, known_settings: set[str], file_settings: set[str]):
        self.files = files
        self.kustomization = kustomization
        # Every HERALD_* name the gateway's code mentions, and those it also reads from a file
        # named by <NAME>_FILE (config.rs, SECRET_FILE_SETTINGS).
        self.known_settings = known_settings
        self.file_settings = file_settings

    def objects(self):
        for rel, docs in self.files.items():
            for d in docs:
                yield rel, d

    def find(self, kind: str, name: str | None = None):
        for _, d in self.objects():
            if isinstance(d, dict) and d.get("kind") == kind:
                if name is None or (d.get("metadata") or {}).get("name") == name:
                    return d
        return None


def load(root: str) -> tuple[Manifests, list[str]]:
    errors = []
    base = os.path.join(root, K8S_DIR)
    files = {}
    kustomization = None
    paths = sorted(glob.glob(os.path.join(base, "**", "*.yaml"), recursive=True))
    paths += sorted(glob.glob(os.path.join(base, "**", "*.yml"), recursive=True))
    for path in paths:
        rel = os.path.relpath(path, base)
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
        except yaml.YAMLError as e:
            errors.append(f"{rel}: YAML parse error: {e}")
            continue
        if rel == "kustomization.yaml":
            kustomization = docs[0] if len(docs) == 1 else None
            if kustomization is None:
                errors.append("kustomization.yaml: must hold exactly one document")
        else:
            files[rel] = docs
    known = set()
    for path in glob.glob(os.path.join(root, "crates/herald-gateway/src/**/*.rs"), recursive=True):
        with open(path, encoding="utf-8") as f:
            known |= set(re.findall(r'"(HERALD_[A-Z0-9_]+)"', f.read()))
    file_settings = set()
    config_rs = os.path.join(root, "crates/herald-gateway/src/config.rs")
    with open(config_rs, encoding="utf-8") as f:
        found = re.search(r"SECRET_FILE_SETTINGS\s*:\s*&\[&str\]\s*=\s*&\[(.*?)\];", f.read(), re.S)
    if found:
        file_settings = set(re.findall(r'"(HERALD_[A-Z0-9_]+)"', found.group(1)))
    else:
        errors.append(
            "crates/herald-gateway/src/config.rs: no SECRET_FILE_SETTINGS list, so which settings "
            "take <NAME>_FILE is unknown; update scripts/lib/validate_k8s.py"
        )
    return Manifests(files, kustomization, known, file_settings), errors


# ---- helpers ------------------------------------------------------------------------------


def labels_match(selector: dict | None, labels: dict | None) -> bool:
    sel = (selector or {}).get("matchLabels") or {}
    return bool(sel) and all((labels or {}).get(k) == v for k, v in sel.items())


def listen_port(value: str | None) -> int | None:
    m = re.fullmatch(r".*:(\d+)", value or "")
    return int(m.group(1)) if m else None


def quantity_mib(q) -> float | None:
    """A Kubernetes memory quantity in MiB (binary and decimal suffixes, plain bytes)."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([KMGT]i?|[kE]|)", str(q))
    if not m:
        return None
    n, unit = float(m.group(1)), m.group(2)
    mult = {
        "": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
        "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40,
    }.get(unit)
    return None if mult is None else n * mult / 2**20


def pod_spec(obj: dict) -> dict:
    return ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}


def pod_labels(obj: dict) -> dict:
    return (((obj.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("labels") or {}


def container_env(m: Manifests, where: str, container: dict, errors: list[str]) -> dict:
    """The container's literal environment: envFrom ConfigMaps, then env (which wins)."""
    env = {}
    for src in container.get("envFrom") or []:
        ref = src.get("configMapRef")
        if ref:
            cm = m.find("ConfigMap", ref.get("name"))
            if cm is None:
                errors.append(f"{where}: envFrom ConfigMap {ref.get('name')!r} is not in deploy/k8s")
                continue
            env.update(cm.get("data") or {})
    for e in container.get("env") or []:
        env[e.get("name")] = e.get("value")  # None for valueFrom
    return env


def file_source(m: Manifests, spec: dict, container: dict, path: str):
    """Which Secret/ConfigMap key provides file `path` in this container.

    Returns (kind, name, key) or an error string."""
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    best = None
    for vm in container.get("volumeMounts") or []:
        mp = vm.get("mountPath", "").rstrip("/")
        if vm.get("subPath"):
            if path == mp:
                best = (vm, vm["subPath"])
        elif path.startswith(mp + "/") and (best is None or len(mp) > len(best[0]["mountPath"])):
            best = (vm, posixpath.relpath(path, mp))
    if best is None:
        return f"{path} is not under any volumeMount"
    vm, rel = best
    vol = volumes.get(vm.get("name"))
    if vol is None:
        return f"volumeMount {vm.get('name')!r} has no volume"
    for kind, key, name_key in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
        src = vol.get(key)
        if src is None:
            continue
        name = src.get(name_key)
        items = src.get("items")
        if items is not None:
            by_path = {i.get("path"): i.get("key") for i in items}
            if rel not in by_path:
                return f"{path}: volume {vm['name']!r} projects no item at {rel!r}"
            data_key = by_path[rel]
        else:
            data_key = rel
        obj = m.find(kind, name)
        if obj is None:
            return f"{path}: {kind} {name!r} is not in deploy/k8s"
        data = dict(obj.get("data") or {})
        data.update(obj.get("stringData") or {})
        if data_key not in data:
            return f"{path}: {kind} {name!r} has no key {data_key!r}"
        return (kind, name, data_key)
    return f"{path}: volume {vm['name']!r} is neither a Secret nor a ConfigMap"


def file_content(m: Manifests, src) -> str | None:
    kind, name, key = src
    obj = m.find(kind, name)
    data = dict(obj.get("data") or {})
    data.update(obj.get("stringData") or {})
    return data.get(key)


def port_number(container: dict, port) -> int | None:
    if isinstance(port, int):
        return port
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return p.get("containerPort")
    return None


def np_rule_ports(rule: dict, container: dict) -> set | None:
    """Numeric ports a NetworkPolicy rule admits; None = every port."""
    ports = rule.get("ports")
    if not ports:
        return None
    out = set()
    for p in ports:
        if "port" not in p:
            return None
        n = port_number(container, p["port"])
        if n is not None:
            out.add(n)
    return out


# ---- the checks ---------------------------------------------------------------------------


def check_schema(m: Manifests, versions: list[str], errors: list[str]) -> None:
    for rel, d in m.objects():
        if not isinstance(d, dict) or not d.get("apiVersion") or not d.get("kind"):
            errors.append(f"{rel}: every document needs apiVersion and kind")
            continue
        what = f"{rel}: {d['kind']}/{(d.get('metadata') or {}).get('name')}"
        for v in versions:
            try:
                kubernetes_validate.validate(d, v, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path) or "<root>"
                errors.append(f"{what}: schema (Kubernetes {v}, strict): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                errors.append(f"{what}: schema: {e.message}")


def check_layout(m: Manifests, errors: list[str]) -> None:
    for rel, d in m.objects():
        if isinstance(d, dict) and "namespace" in (d.get("metadata") or {}):
            errors.append(f"{rel}: names a namespace; only kustomization.yaml may (namespace: {NAMESPACE})")
    k = m.kustomization
    if not isinstance(k, dict):
        errors.append("kustomization.yaml: missing")
        return
    if k.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or k.get("kind") != "Kustomization":
        errors.append("kustomization.yaml: must be kustomize.config.k8s.io/v1beta1 Kustomization")
    allowed = {"apiVersion", "kind", "namespace", "resources", "images", "labels"}
    for key in set(k) - allowed:
        errors.append(f"kustomization.yaml: unexpected key {key!r}")
    if k.get("namespace") != NAMESPACE:
        errors.append(f"kustomization.yaml: namespace must be {NAMESPACE!r}")
    listed = k.get("resources") or []
    want = sorted(r for r in m.files if not r.startswith(EXAMPLES + os.sep))
    for r in listed:
        if r not in m.files:
            errors.append(f"kustomization.yaml: lists {r!r}, which is not a manifest here")
        if r.startswith(EXAMPLES + "/"):
            errors.append(f"kustomization.yaml: lists the example {r!r}")
    for r in want:
        if r not in listed:
            errors.append(f"kustomization.yaml: does not list {r!r}")
    if len(set(listed)) != len(listed):
        errors.append("kustomization.yaml: lists a file twice")


def check_pod_security(where: str, spec: dict, errors: list[str]) -> None:
    psc = spec.get("securityContext") or {}
    for c in spec.get("containers") or []:
        csc = c.get("securityContext") or {}
        cw = f"{where}: container {c.get('name')}"

        def eff(key):
            return csc.get(key, psc.get(key))

        if eff("runAsNonRoot") is not True:
            errors.append(f"{cw}: runAsNonRoot must be true")
        if eff("runAsUser") != 10001:
            errors.append(f"{cw}: runAsUser must be 10001 (the image's herald user)")
        if csc.get("readOnlyRootFilesystem") is not True:
            errors.append(f"{cw}: readOnlyRootFilesystem must be true")
        if csc.get("allowPrivilegeEscalation") is not False:
            errors.append(f"{cw}: allowPrivilegeEscalation must be false")
        if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
            errors.append(f"{cw}: capabilities must drop ALL")
        if (eff("seccompProfile") or {}).get("type") != "RuntimeDefault":
            errors.append(f"{cw}: seccompProfile must be RuntimeDefault")


def check_env_files(m: Manifests, where: str, spec: dict, container: dict, env: dict, errors: list[str]) -> None:
    """Every setting is one the gateway knows; every file a setting names is mounted; the
    secrets read from files are checked as the gateway will see them."""
    cw = f"{where}: container {container.get('name')}"
    resolved = dict(env)
    for name, value in env.items():
        if not (name or "").startswith("HERALD_"):
            continue
        base = name[: -len("_FILE")] if name.endswith("_FILE") else None
        if base in m.file_settings:
            if base in env:
                errors.append(f"{cw}: both {base} and {name} are set (the gateway refuses that)")
        elif name not in m.known_settings:
            hint = f" (only {', '.join(sorted(m.file_settings))} take _FILE)" if base else ""
            errors.append(f"{cw}: {name} is not a setting the gateway knows (crates/herald-gateway/src){hint}")
            continue
        # A file: <SECRET>_FILE, or a setting that is itself a path (HERALD_REDIS_CA_FILE).
        if base is None or value is None:
            continue
        if not value.startswith("/"):
            errors.append(f"{cw}: {name}={value!r} is not an absolute path")
            continue
        src = file_source(m, spec, container, value)
        if isinstance(src, str):
            errors.append(f"{cw}: {name}: {src}")
        elif base in m.file_settings:
            resolved[base] = file_content(m, src)
    db = resolved.get("HERALD_DATABASE_URL")
    if db:
        check_db_url(m, cw, spec, container, db, errors)
    if resolved.get("HERALD_REDIS_CA_FILE") and not str(resolved.get("HERALD_REDIS_URL") or "").startswith("rediss://"):
        errors.append(f"{cw}: HERALD_REDIS_CA_FILE is set but the Redis URL is not rediss:// (the gateway refuses that)")


def check_db_url(m: Manifests, cw: str, spec: dict, container: dict, url: str, errors: list[str]) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("postgres", "postgresql"):
        errors.append(f"{cw}: the database URL must be postgres:// or postgresql://")
    q = parse_qs(parts.query)
    for mode in q.get("sslmode", []):
        if mode not in ("disable", "prefer", "require", "verify-ca", "verify-full"):
            errors.append(f"{cw}: the database URL's sslmode={mode} is not supported")
    for param in ("sslcert", "sslkey", "sslcrl"):
        if param in q:
            errors.append(f"{cw}: the database URL's {param} is not supported (the gateway refuses it)")
    for path in q.get("sslrootcert", []):
        if path == "system":
            continue
        src = file_source(m, spec, container, path)
        if isinstance(src, str):
            errors.append(f"{cw}: the database URL's sslrootcert: {src}")


def check_cross(m: Manifests, errors: list[str]) -> None:
    dep = m.find("Deployment")
    job = m.find("Job")
    svc = m.find("Service")
    pdb = m.find("PodDisruptionBudget")
    hpa = m.find("HorizontalPodAutoscaler")
    netpol = m.find("NetworkPolicy")
    secret = m.find("Secret")
    for kind, obj in (("Deployment", dep), ("Job", job), ("Service", svc), ("PodDisruptionBudget", pdb),
                      ("HorizontalPodAutoscaler", hpa), ("NetworkPolicy", netpol), ("Secret", secret)):
        if obj is None:
            errors.append(f"no {kind} in deploy/k8s")
        # The checks below look at one object of each kind; a second would go unchecked.
        count = sum(1 for _, d in m.objects() if isinstance(d, dict) and d.get("kind") == kind)
        if count > 1:
            errors.append(f"{count} {kind} objects in deploy/k8s: the cross-checks expect one")
    if dep is None:
        return
    dw = "Deployment/" + dep["metadata"]["name"]
    spec = pod_spec(dep)
    labels = pod_labels(dep)
    if not labels_match((dep.get("spec") or {}).get("selector"), labels):
        errors.append(f"{dw}: selector does not match the pod template's labels")
    containers = spec.get("containers") or []
    if not containers:
        errors.append(f"{dw}: no containers")
        return
    c = containers[0]
    if c.get("args") != ["serve"]:
        errors.append(f'{dw}: args must be ["serve"]')
    env = container_env(m, dw, c, errors)
    for ref in c.get("envFrom") or []:
        cm_name = (ref.get("configMapRef") or {}).get("name")
        cm = m.find("ConfigMap", cm_name) if cm_name else None
        for k in (cm or {}).get("data") or {}:
            if k in SECRET_SETTINGS:
                errors.append(f"ConfigMap/{cm_name}: {k} is a secret; put it in the Secret and use {k}_FILE")

    def setting(name):
        try:
            return int(env.get(name, DEFAULTS[name]))
        except (TypeError, ValueError):
            errors.append(f"{dw}: {name}={env.get(name)!r} is not a number")
            return DEFAULTS[name]

    jwks = env.get("HERALD_JWT_JWKS_URL")
    if jwks is not None and not str(jwks).startswith("https://"):
        errors.append(f"{dw}: HERALD_JWT_JWKS_URL must be an https:// URL (plain http only to loopback)")

    # Ports: the listeners the settings name are the container ports the manifests use.
    http_port = port_number(c, "http")
    admin_port = port_number(c, "admin")
    if http_port is None or http_port != listen_port(env.get("HERALD_LISTEN")):
        errors.append(f"{dw}: container port 'http' ({http_port}) must be HERALD_LISTEN's port")
    if admin_port is None or admin_port != listen_port(env.get("HERALD_ADMIN_LISTEN")):
        errors.append(f"{dw}: container port 'admin' ({admin_port}) must be HERALD_ADMIN_LISTEN's port")
    if http_port is not None and http_port == admin_port:
        errors.append(f"{dw}: the public and admin ports must differ")
    ann = ((dep["spec"]["template"].get("metadata") or {}).get("annotations")) or {}
    if ann.get("prometheus.io/scrape") != "true" or str(ann.get("prometheus.io/port")) != str(admin_port):
        errors.append(f"{dw}: prometheus.io/scrape must be \"true\" and prometheus.io/port the admin port")

    # Probes: on the public port; readiness /readyz, liveness and startup /healthz.
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz"), ("startupProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet")
        if not get:
            errors.append(f"{dw}: {probe} must be an httpGet probe")
            continue
        if get.get("path") != path:
            errors.append(f"{dw}: {probe} must probe {path}, not {get.get('path')!r}")
        if port_number(c, get.get("port")) != http_port:
            errors.append(f"{dw}: {probe} must probe the public port 'http'")
    if str(env.get("HERALD_PROXY_PROTOCOL", "false")).lower() in ("true", "1", "yes", "on"):
        errors.append(f"{dw}: HERALD_PROXY_PROTOCOL is on, but kubelet's httpGet probes send no PROXY header")

    # Drain: preStop sleep, then the drain within HERALD_DRAIN_GRACE_MS, inside the grace period.
    cmd = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    sleep_s = None
    if len(cmd) == 2 and cmd[0] == "/bin/sleep" and str(cmd[1]).isdigit():
        sleep_s = int(cmd[1])
    else:
        errors.append(f'{dw}: preStop must be exec ["/bin/sleep", "<seconds>"], not {cmd!r}')
    grace_ms = setting("HERALD_DRAIN_GRACE_MS")
    spread_ms = setting("HERALD_DRAIN_SPREAD_MS")
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    need = (sleep_s or 0) + math.ceil(grace_ms / 1000) + DRAIN_MARGIN_S
    if tgps < need:
        errors.append(
            f"{dw}: terminationGracePeriodSeconds {tgps} < preStop sleep {sleep_s} s + "
            f"HERALD_DRAIN_GRACE_MS {grace_ms / 1000:g} s + {DRAIN_MARGIN_S} s margin = {need}"
        )
    if spread_ms + 200 > grace_ms:
        errors.append(
            f"{dw}: HERALD_DRAIN_SPREAD_MS {spread_ms} + 200 ms exceeds HERALD_DRAIN_GRACE_MS "
            f"{grace_ms}: no time left for requests in flight"
        )

    # Resources: the memory request covers the socket cap by the measured per-socket figures.
    res = c.get("resources") or {}
    for kind in ("requests", "limits"):
        for r in ("cpu", "memory"):
            if r not in (res.get(kind) or {}):
                errors.append(f"{dw}: resources.{kind}.{r} is missing")
    max_conn = setting("HERALD_MAX_CONNECTIONS")
    budget = max_conn * (RSS_KIB_PER_SOCKET + KERNEL_KIB_PER_SOCKET) / 1024 + FIXED_MIB
    req = quantity_mib((res.get("requests") or {}).get("memory"))
    lim = quantity_mib((res.get("limits") or {}).get("memory"))
    if req is None or req < budget:
        errors.append(
            f"{dw}: memory request {req} MiB < {budget:.0f} MiB needed for HERALD_MAX_CONNECTIONS="
            f"{max_conn} ({RSS_KIB_PER_SOCKET} + {KERNEL_KIB_PER_SOCKET} KiB per socket + {FIXED_MIB} MiB)"
        )
    if lim is not None and req is not None and lim < req:
        errors.append(f"{dw}: memory limit below the request")

    # Spread over nodes; the HPA owns the replica count.
    spread = spec.get("topologySpreadConstraints") or []
    if not any(t.get("topologyKey") == "kubernetes.io/hostname" and labels_match(t.get("labelSelector"), labels)
               for t in spread):
        errors.append(f"{dw}: needs a topologySpreadConstraint over kubernetes.io/hostname selecting its pods")
    if "replicas" in dep["spec"]:
        errors.append(f"{dw}: sets replicas, which the HorizontalPodAutoscaler owns (apply would reset it)")

    check_pod_security(dw, spec, errors)
    check_env_files(m, dw, spec, c, env, errors)
    has = lambda *names: any(n in env or n + "_FILE" in env for n in names)  # noqa: E731
    for group in (("HERALD_DATABASE_URL",), ("HERALD_SERVICE_KEYS", "HERALD_SCOPED_SERVICE_KEYS"),
                  ("HERALD_JWT_AUDIENCE", "HERALD_JWT_ALLOW_ANY_AUDIENCE"),
                  ("HERALD_JWT_ISSUER", "HERALD_JWT_ALLOW_ANY_ISSUER"),
                  ("HERALD_JWT_JWKS_URL", "HERALD_JWT_PUBLIC_KEYS", "HERALD_JWT_HS256_SECRET")):
        if not has(*group):
            errors.append(f"{dw}: none of {', '.join(group)} is set")

    # Service: the public port only.
    if svc is not None:
        sw = "Service/" + svc["metadata"]["name"]
        if svc["spec"].get("type", "ClusterIP") != "ClusterIP":
            errors.append(f"{sw}: must be ClusterIP")
        if not labels_match({"matchLabels": svc["spec"].get("selector")}, labels):
            errors.append(f"{sw}: selector does not match the gateway pods")
        ports = svc["spec"].get("ports") or []
        for p in ports:
            target = port_number(c, p.get("targetPort", p.get("port")))
            if p.get("port") == admin_port or target == admin_port or p.get("targetPort") == "admin":
                errors.append(f"{sw}: exposes the admin port {admin_port} (/metrics): it must not")
        if not any(port_number(c, p.get("targetPort", p.get("port"))) == http_port for p in ports):
            errors.append(f"{sw}: does not expose the public port {http_port}")

    if pdb is not None:
        if pdb["spec"].get("maxUnavailable") != 1:
            errors.append("PodDisruptionBudget: maxUnavailable must be 1")
        if not labels_match(pdb["spec"].get("selector"), labels):
            errors.append("PodDisruptionBudget: selector does not match the gateway pods")

    if hpa is not None:
        ref = hpa["spec"].get("scaleTargetRef") or {}
        if (ref.get("kind"), ref.get("name")) != ("Deployment", dep["metadata"]["name"]):
            errors.append("HorizontalPodAutoscaler: scaleTargetRef is not the gateway Deployment")
        if (hpa["spec"].get("minReplicas") or 1) < 2:
            errors.append("HorizontalPodAutoscaler: minReplicas must be at least 2 (PDB maxUnavailable 1)")
        if not any((mt.get("resource") or {}).get("name") == "cpu" for mt in hpa["spec"].get("metrics") or []):
            errors.append("HorizontalPodAutoscaler: no CPU metric")

    # NetworkPolicy: public port open, admin port only from labelled namespaces, egress needs.
    if netpol is not None:
        nw = "NetworkPolicy/" + netpol["metadata"]["name"]
        ns = netpol["spec"]
        for obj in (dep, job):
            if obj is not None and not labels_match(ns.get("podSelector"), pod_labels(obj)):
                errors.append(f"{nw}: does not select {obj['kind']} {obj['metadata']['name']}'s pods")
        if not {"Ingress", "Egress"} <= set(ns.get("policyTypes") or []):
            errors.append(f"{nw}: policyTypes must include Ingress and Egress")
        http_open = False
        for rule in ns.get("ingress") or []:
            ports = np_rule_ports(rule, c)
            admits_admin = ports is None or admin_port in ports
            peers = rule.get("from")
            if admits_admin:
                ok = bool(peers) and all(
                    set(p) == {"namespaceSelector"} and (p["namespaceSelector"].get("matchLabels") or {})
                    for p in peers
                )
                if not ok:
                    errors.append(f"{nw}: admits the admin port {admin_port} from more than labelled namespaces")
            if ports is None or http_port in ports:
                http_open = True
        if not http_open:
            errors.append(f"{nw}: does not admit the public port {http_port}")
        egress_ports = set()
        for rule in ns.get("egress") or []:
            for p in rule.get("ports") or []:
                egress_ports.add((p.get("protocol", "TCP"), p.get("port")))
        for want, why in (((("UDP", 53),), "DNS"), ((("TCP", 5432),), "PostgreSQL"),
                          ((("TCP", 6379), ("TCP", 6380)), "Redis"), ((("TCP", 443),), "HTTPS (JWKS)")):
            if not any(w in egress_ports for w in want):
                errors.append(f"{nw}: egress does not allow {why}")

    # The migration Job: same image, `migrate`, the database URL and its CA as files.
    if job is not None:
        jw = "Job/" + job["metadata"]["name"]
        js = pod_spec(job)
        jc = (js.get("containers") or [{}])[0]
        if jc.get("args") != ["migrate"]:
            errors.append(f'{jw}: args must be ["migrate"]')
        if jc.get("image") != c.get("image"):
            errors.append(f"{jw}: image {jc.get('image')!r} differs from the Deployment's {c.get('image')!r}")
        for key in ("backoffLimit", "ttlSecondsAfterFinished"):
            if key not in job["spec"]:
                errors.append(f"{jw}: {key} must be set")
        if js.get("restartPolicy") not in ("Never", "OnFailure"):
            errors.append(f"{jw}: restartPolicy must be Never or OnFailure")
        jenv = container_env(m, jw, jc, errors)
        if "HERALD_DATABASE_URL" not in jenv and "HERALD_DATABASE_URL_FILE" not in jenv:
            errors.append(f"{jw}: no HERALD_DATABASE_URL(_FILE)")
        check_pod_security(jw, js, errors)
        check_env_files(m, jw, js, jc, jenv, errors)

    # The Secret: Opaque, placeholders only (no real value committed).
    if secret is not None:
        if secret.get("type") != "Opaque":
            errors.append("Secret: type must be Opaque")
        if secret.get("data"):
            errors.append("Secret: use stringData with visible placeholders, not data")
        for k, v in (secret.get("stringData") or {}).items():
            if "REPLACE-ME" not in str(v):
                errors.append(f"Secret: {k} is not a REPLACE-ME placeholder; never commit a real secret")

    # Ingress examples: route to the public port, with proxy timeouts above the heartbeat.
    heartbeat_s = setting("HERALD_HEARTBEAT_INTERVAL_MS") / 1000
    for rel, d in m.objects():
        if not isinstance(d, dict) or d.get("kind") != "Ingress":
            continue
        iw = f"{rel}: Ingress/{d['metadata']['name']}"
        for rule in d["spec"].get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                s = (p.get("backend") or {}).get("service") or {}
                port = s.get("port") or {}
                if svc is None or s.get("name") != svc["metadata"]["name"]:
                    errors.append(f"{iw}: backend {s.get('name')!r} is not the Service")
                    continue
                svc_port = next((sp for sp in svc["spec"]["ports"]
                                 if sp.get("name") == port.get("name") or sp.get("port") == port.get("number")), None)
                if svc_port is None:
                    errors.append(f"{iw}: backend port {port} is not a port of the Service")
        ann = (d.get("metadata") or {}).get("annotations") or {}
        for a in ("proxy-read-timeout", "proxy-send-timeout"):
            v = ann.get("nginx.ingress.kubernetes.io/" + a)
            if v is None or not str(v).isdigit() or int(v) < 2 * heartbeat_s:
                errors.append(
                    f"{iw}: nginx.ingress.kubernetes.io/{a} = {v!r}: must be at least twice the "
                    f"heartbeat ({heartbeat_s:g} s) so a live WebSocket is never cut"
                )


def check(m: Manifests, versions: list[str]) -> list[str]:
    errors: list[str] = []
    check_schema(m, versions, errors)
    check_layout(m, errors)
    try:
        check_cross(m, errors)
    except (KeyError, TypeError, AttributeError, IndexError) as e:
        errors.append(f"cross-checks could not read the manifests: {type(e).__name__}: {e}")
    return errors


# ---- self-test: every breakage below must be caught ------------------------------------


def _dep(m):
    return m.find("Deployment")


def _c(m):
    return pod_spec(_dep(m))["containers"][0]


def _env(m, name, value):
    c = _c(m)
    c["env"] = [e for e in c["env"] if e["name"] != name] + [{"name": name, "value": value}]


def _cm(m):
    return m.find("ConfigMap", "herald-config")["data"]


MUTATIONS = [
    ("an unknown field in a container", lambda m: _c(m).__setitem__("bogusField", 1), "Additional properties"),
    ("a port as a string", lambda m: _c(m)["ports"][0].__setitem__("containerPort", "8080"), "is not of type"),
    ("an unknown apiVersion", lambda m: m.find("PodDisruptionBudget").__setitem__("apiVersion", "policy/v9"),
     "Couldn't find schema"),
    ("the admin port on the Service",
     lambda m: m.find("Service")["spec"]["ports"].append(
         {"name": "admin", "port": 9090, "targetPort": "admin", "protocol": "TCP"}), "exposes the admin port"),
    ("the Service targeting the admin port by number",
     lambda m: m.find("Service")["spec"]["ports"][0].__setitem__("targetPort", 9090), "exposes the admin port"),
    ("readiness on /healthz", lambda m: _c(m)["readinessProbe"]["httpGet"].__setitem__("path", "/healthz"),
     "readinessProbe must probe /readyz"),
    ("liveness on /readyz", lambda m: _c(m)["livenessProbe"]["httpGet"].__setitem__("path", "/readyz"),
     "livenessProbe must probe /healthz"),
    ("liveness on the admin port", lambda m: _c(m)["livenessProbe"]["httpGet"].__setitem__("port", "admin"),
     "livenessProbe must probe the public port"),
    ("a grace period shorter than the drain",
     lambda m: pod_spec(_dep(m)).__setitem__("terminationGracePeriodSeconds", 12), "terminationGracePeriodSeconds"),
    ("a longer drain grace", lambda m: _cm(m).__setitem__("HERALD_DRAIN_GRACE_MS", "30000"),
     "terminationGracePeriodSeconds"),
    ("a drain spread longer than the grace", lambda m: _cm(m).__setitem__("HERALD_DRAIN_SPREAD_MS", "10000"),
     "no time left"),
    ("a _FILE path outside every mount", lambda m: _env(m, "HERALD_SERVICE_KEYS_FILE", "/run/keys/service-keys"),
     "is not under any volumeMount"),
    ("a _FILE path the volume does not project",
     lambda m: pod_spec(_dep(m))["volumes"][0]["secret"]["items"].pop(), "projects no item"),
    ("a _FILE key missing from the Secret",
     lambda m: m.find("Secret")["stringData"].pop("bus-hmac-key"), "has no key"),
    ("the database CA not mounted in the Job",
     lambda m: pod_spec(m.find("Job"))["containers"][0]["volumeMounts"].pop(), "sslrootcert"),
    ("a setting and its _FILE both set", lambda m: _env(m, "HERALD_DATABASE_URL", "postgres://x@y/z"),
     "both HERALD_DATABASE_URL and HERALD_DATABASE_URL_FILE"),
    ("a _FILE for a setting that takes none", lambda m: _env(m, "HERALD_JWT_AUDIENCE_FILE", "/etc/herald/ca/db-ca.pem"),
     "only HERALD_"),
    ("a plain redis:// URL with a Redis CA",
     lambda m: m.find("Secret")["stringData"].__setitem__("redis-url", "redis://REPLACE-ME@r:6379"), "not rediss://"),
    ("an unsupported sslmode",
     lambda m: m.find("Secret")["stringData"].__setitem__(
         "database-url", "postgres://REPLACE-ME@db/herald?sslmode=allow"), "sslmode=allow"),
    ("a plain-http JWKS URL", lambda m: _cm(m).__setitem__("HERALD_JWT_JWKS_URL", "http://idp/jwks.json"),
     "HERALD_JWT_JWKS_URL must be an https://"),
    ("a misspelt setting", lambda m: _cm(m).__setitem__("HERALD_DRAIN_GRACE", "10000"), "not a setting"),
    ("a secret in the ConfigMap", lambda m: _cm(m).__setitem__("HERALD_BUS_HMAC_KEY", "x" * 40), "is a secret"),
    ("a real-looking secret value", lambda m: m.find("Secret")["stringData"].__setitem__("service-keys", "k" * 20),
     "not a REPLACE-ME placeholder"),
    ("PROXY protocol with httpGet probes", lambda m: _cm(m).__setitem__("HERALD_PROXY_PROTOCOL", "true"),
     "HERALD_PROXY_PROTOCOL"),
    ("more sockets than the memory request covers",
     lambda m: _cm(m).__setitem__("HERALD_MAX_CONNECTIONS", "100000"), "memory request"),
    ("a namespace in a manifest", lambda m: m.find("Service")["metadata"].__setitem__("namespace", "prod"),
     "names a namespace"),
    ("a second Service", lambda m: m.files.setdefault("extra.yaml", []).append(copy.deepcopy(m.find("Service"))),
     "2 Service objects"),
    ("a manifest missing from the kustomization", lambda m: m.kustomization["resources"].remove("pdb.yaml"),
     "does not list 'pdb.yaml'"),
    ("an example in the kustomization",
     lambda m: m.kustomization["resources"].append("examples/ingress-nginx.yaml"), "lists the example"),
    ("the admin port open to every source",
     lambda m: m.find("NetworkPolicy")["spec"]["ingress"][1].pop("from"), "admits the admin port"),
    ("no DNS egress", lambda m: m.find("NetworkPolicy")["spec"]["egress"].pop(0), "DNS"),
    ("a short nginx read timeout",
     lambda m: m.find("Ingress")["metadata"]["annotations"].__setitem__(
         "nginx.ingress.kubernetes.io/proxy-read-timeout", "30"), "proxy-read-timeout"),
    ("the Job on another image", lambda m: pod_spec(m.find("Job"))["containers"][0].__setitem__("image", "x:1"),
     "differs from the Deployment"),
    ("a root container", lambda m: pod_spec(_dep(m))["securityContext"].__setitem__("runAsUser", 0),
     "runAsUser must be 10001"),
    ("a writable root filesystem", lambda m: _c(m)["securityContext"].__setitem__("readOnlyRootFilesystem", False),
     "readOnlyRootFilesystem"),
    ("replicas next to the HPA", lambda m: _dep(m)["spec"].__setitem__("replicas", 3), "sets replicas"),
]


def self_test(m: Manifests, version: str) -> list[str]:
    failures = []
    for what, mutate, expect in MUTATIONS:
        broken = copy.deepcopy(m)
        try:
            mutate(broken)
        except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
            failures.append(f"self-test: could not apply {what!r} ({type(e).__name__}: {e}); update MUTATIONS")
            continue
        errs = check(broken, [version])
        if not any(expect in e for e in errs):
            failures.append(f"self-test: {what} was not caught (wanted an error containing {expect!r})")
    return failures


def main() -> int:
    root, versions = sys.argv[1], sys.argv[2:]
    if not versions:
        print("usage: validate_k8s.py REPO_ROOT K8S_VERSION...", file=sys.stderr)
        return 2
    m, errors = load(root)
    if not m.files:
        errors.append(f"no manifests under {K8S_DIR}")
    if not errors:
        errors = check(m, versions)
    if errors:
        for e in errors:
            print(f"  FAIL {e}")
        return 1
    n = sum(len(d) for d in m.files.values())
    print(f"  ok {n} objects in {len(m.files)} files under {K8S_DIR}: Kubernetes "
          f"{', '.join(versions)} schemas (strict), kustomization, cross-checks")
    failures = self_test(m, versions[0])
    if failures:
        for f in failures:
            print(f"  FAIL {f}")
        return 1
    print(f"  ok self-test: all {len(MUTATIONS)} deliberate breakages were caught")
    return 0


if __name__ == "__main__":
    sys.exit(main())
