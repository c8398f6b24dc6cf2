#!/usr/bin/env bash
# Checks the Kubernetes manifests of deploy/k8s/ offline: no cluster, no network at
# check time.
#
#   scripts/check_k8s.sh [DIR]        (DIR defaults to deploy/k8s)
#
# 1. Every resource listed in DIR/kustomization.yaml (and every *.yaml beside it must be
#    listed) is validated against the Kubernetes JSON schemas shipped inside the PyPI
#    package kubernetes-validate (pinned below), for each pinned Kubernetes version, in
#    strict mode: an unknown field is an error, a wrong type is an error, and so is a
#    kind/apiVersion the schemas do not have (the package's own CLI only warns on that).
# 2. A Python step checks that the pieces fit: the Service is headless and selects the
#    Deployment's pods, the ports agree, the HPA targets the Deployment and its metric is
#    the one prometheus-adapter/values.yaml serves from the exporter's counter, the PDB
#    selects the pods, the volumes name claims and config maps that exist, the probe and
#    hook one-liners and the exporter compile.
#
# Prints each thing it checked; exits non-zero on any error.
#
# The validator: the first of these that has kubernetes-validate $KV_VERSION:
# $WANEDIT_K8S_PYTHON, python3, or a virtualenv it creates (once) under
# ${WANEDIT_K8S_VENV:-~/.cache/wanedit/k8s-venv-$KV_VERSION} with pip (PyPI; this install
# is the only step that uses the network).
set -euo pipefail

KV_VERSION=1.37.0          # kubernetes-validate on PyPI; ships schemas for 1.25 ... 1.37
KUBE_VERSIONS="1.30 1.34"  # the Kubernetes versions checked against

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${1:-$root/deploy/k8s}"
[ -f "$dir/kustomization.yaml" ] || { echo "check_k8s: no kustomization.yaml in $dir" >&2; exit 2; }

has_kv() {
    "$1" -c "import sys, kubernetes_validate.version as v, yaml; sys.exit(v.__version__ != '$KV_VERSION')" 2>/dev/null
}

python=""
for candidate in "${WANEDIT_K8S_PYTHON:-}" python3; do
    if [ -n "$candidate" ] && has_kv "$candidate"; then python="$candidate"; break; fi
done
if [ -z "$python" ]; then
    venv="${WANEDIT_K8S_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/wanedit/k8s-venv-$KV_VERSION}"
    if ! has_kv "$venv/bin/python"; then
        echo "check_k8s: installing kubernetes-validate==$KV_VERSION into $venv"
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
            "kubernetes-validate==$KV_VERSION"
    fi
    python="$venv/bin/python"
fi

echo "check_k8s: $dir against Kubernetes $KUBE_VERSIONS (kubernetes-validate $KV_VERSION, strict)"
exec "$python" - "$dir" $KUBE_VERSIONS <<'PY'
import os, sys, yaml
import kubernetes_validate as kv
from kubernetes_validate.utils import SchemaNotFoundError, VersionNotSupportedError

d, versions = sys.argv[1], sys.argv[2:]
errors = []

def err(msg):
    errors.append(msg)
    print("ERROR", msg)

def ok(msg):
    print("ok   ", msg)

def load_all(path):
    try:
        with open(path) as f:
            return [doc for doc in yaml.safe_load_all(f) if doc is not None]
    except Exception as e:
        err("%s: not YAML: %s" % (path, e))
        return []

# --- the kustomization and the files it lists -------------------------------------
kpath = os.path.join(d, "kustomization.yaml")
kdocs = load_all(kpath)
kust = kdocs[0] if len(kdocs) == 1 and isinstance(kdocs[0], dict) else {}
if not kust:
    err("kustomization.yaml: one mapping expected")
if kust.get("apiVersion") != "kustomize.config.k8s.io/v1beta1" or kust.get("kind") != "Kustomization":
    err("kustomization.yaml: apiVersion/kind should be kustomize.config.k8s.io/v1beta1 Kustomization")
known = {"apiVersion", "kind", "resources", "images", "labels", "namespace", "namePrefix",
         "nameSuffix", "commonLabels", "commonAnnotations", "patches", "configMapGenerator",
         "replicas"}
for key in sorted(set(kust) - known):
    err("kustomization.yaml: unknown field %r" % key)
listed = list(kust.get("resources") or [])
if not listed:
    err("kustomization.yaml: no resources")
for name in listed:
    if not os.path.isfile(os.path.join(d, name)):
        err("kustomization.yaml lists %s, which does not exist" % name)
beside = sorted(f for f in os.listdir(d)
                if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml")
for f in beside:
    if f not in listed:
        err("%s is in %s but not listed in kustomization.yaml" % (f, d))
ok("kustomization.yaml lists %d files: %s" % (len(listed), ", ".join(listed)))

# --- schemas ----------------------------------------------------------------------
def all_errors(doc, version):
    """Every schema error of doc, as kv.validate (1.37.0) finds the first one."""
    import re, jsonschema
    from referencing import Registry, Resource
    from kubernetes_validate import utils
    found = [x for x in utils.all_versions()
             if utils.major_minor(x) <= utils.major_minor(version)]
    if not found:
        raise VersionNotSupportedError(version)
    schema_dir = "v%s-local-strict" % found[-1]
    api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", doc["apiVersion"])
    try:
        schema = utils.schema_contents("kubernetes-json-schema/%s/%s-%s.json"
                                       % (schema_dir, doc["kind"].lower(), api), version)
    except FileNotFoundError:
        raise SchemaNotFoundError(version=version, kind=doc["kind"], api_version=doc["apiVersion"])
    defs = utils.schema_contents("kubernetes-json-schema/%s/_definitions.json" % schema_dir, version)
    registry = Resource.from_contents(defs) @ (Resource.from_contents(schema) @ Registry())
    validator = jsonschema.validators.Draft202012Validator(schema, registry=registry)
    return sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.path)))

objs = []
for name in listed:
    path = os.path.join(d, name)
    if not os.path.isfile(path):
        continue
    docs = load_all(path)
    if not docs:
        err("%s: no resources" % name)
    for doc in docs:
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind") \
                or not (doc.get("metadata") or {}).get("name"):
            err("%s: a document without apiVersion, kind or metadata.name" % name)
            continue
        what = "%s %s/%s" % (name, doc["kind"], doc["metadata"]["name"])
        good = True
        for v in versions:
            try:
                # kv.validate raises the first error only; all of them are listed.
                problems = list(all_errors(doc, v))
                if not problems:
                    kv.validate(doc, v, strict=True)
                for e in problems:
                    good = False
                    err("%s against %s: %s: %s" % (what, v, ".".join(str(p) for p in e.path) or "(top)", e.message))
            except kv.ValidationError as e:
                good = False
                err("%s against %s: %s: %s" % (what, v, ".".join(str(p) for p in e.path) or "(top)", e.message))
            except SchemaNotFoundError as e:
                good = False
                err("%s: %s" % (what, e.message))
            except VersionNotSupportedError as e:
                err("kubernetes-validate has no schemas for %s" % v)
                sys.exit(2)
        if good:
            ok("%s (%s) valid against %s" % (what, doc["apiVersion"], ", ".join(versions)))
        objs.append(doc)

# --- do the pieces fit? -----------------------------------------------------------
def one(kind):
    found = [o for o in objs if o.get("kind") == kind]
    if len(found) != 1:
        err("one %s expected, found %d" % (kind, len(found)))
        return None
    return found[0]

def subset(sel, labels):
    return bool(sel) and all(labels.get(k) == v for k, v in sel.items())

def py_one_liner(cmd, what):
    # ["python3", "-c", SOURCE]: the source must compile.
    if len(cmd) >= 3 and cmd[0] == "python3" and cmd[1] == "-c":
        try:
            compile(cmd[2], what, "exec")
            ok("%s: python3 -c compiles" % what)
        except SyntaxError as e:
            err("%s: python3 -c does not compile: %s" % (what, e))
    elif not cmd:
        err("%s: empty command" % what)

dep, svc, hpa, pdb = one("Deployment"), one("Service"), one("HorizontalPodAutoscaler"), one("PodDisruptionBudget")
try:
    tpl = dep["spec"]["template"]
    labels = tpl["metadata"]["labels"]
    pod = tpl["spec"]
    containers = {c["name"]: c for c in pod["containers"]}
    cog = containers.get("cog")
    if subset(dep["spec"]["selector"].get("matchLabels"), labels):
        ok("Deployment selector matches its pod labels")
    else:
        err("Deployment selector does not match its pod labels %s" % labels)

    # Service: headless, selects the pods, port 5000 on the cog container's port
    if svc["spec"].get("clusterIP") != "None":
        err("Service %s is not headless (clusterIP: None)" % svc["metadata"]["name"])
    if svc["spec"].get("publishNotReadyAddresses"):
        err("Service publishes not-ready addresses: draining pods would get new windows")
    if subset(svc["spec"].get("selector"), labels):
        ok("Service %s selects the Deployment's pods" % svc["metadata"]["name"])
    else:
        err("Service selector %s does not match the pod labels %s" % (svc["spec"].get("selector"), labels))
    ports = {p.get("name"): p["containerPort"] for c in pod["containers"] for p in c.get("ports", [])}
    for sp in svc["spec"]["ports"]:
        tp = sp.get("targetPort", sp["port"])
        target = ports.get(tp) if isinstance(tp, str) else (tp if tp in ports.values() else None)
        if target is None:
            err("Service port %s: targetPort %r is no container port" % (sp["port"], tp))
        elif cog and target not in [p["containerPort"] for p in cog.get("ports", [])]:
            err("Service port %s reaches %s, not the cog container" % (sp["port"], target))
        elif sp["port"] != 5000 or target != 5000:
            err("Service port %r -> container port %r: the element's endpoint uses 5000" % (sp["port"], target))
        else:
            ok("Service port %s -> container port %s (cog)" % (sp["port"], target))

    # the cog container
    before = len(errors)
    if cog is None:
        err("Deployment has no container named cog")
    else:
        lim = cog.get("resources", {}).get("limits", {})
        if str(lim.get("nvidia.com/gpu")) != "1":
            err("cog container: nvidia.com/gpu limit should be 1, is %r" % lim.get("nvidia.com/gpu"))
        if "memory" not in lim:
            err("cog container: no memory limit")
        env = {e["name"] for e in cog.get("env", [])}
        missing = {"WANEDIT_MODEL", "WANEDIT_DEVICE", "WANEDIT_LORA", "HF_HOME", "HF_HUB_OFFLINE"} - env
        if missing:
            err("cog container: env lacks %s" % ", ".join(sorted(missing)))
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            p = cog.get(probe)
            if not p or "exec" not in p:
                err("cog container: no exec %s" % probe)
            else:
                py_one_liner(p["exec"]["command"], "cog %s" % probe)
        pre = (cog.get("lifecycle") or {}).get("preStop", {}).get("exec", {}).get("command")
        if not pre:
            err("cog container: no preStop exec hook")
        else:
            py_one_liner(pre, "cog preStop")
        if len(errors) == before:
            ok("cog container: GPU, memory limit, env, probes and preStop present")
    grace = pod.get("terminationGracePeriodSeconds", 30)
    if grace < 600:
        err("terminationGracePeriodSeconds %s is shorter than a window (10 minutes at least)" % grace)
    ru = dep["spec"].get("strategy", {}).get("rollingUpdate", {})
    if ru.get("maxUnavailable") not in (0, 1, "0%") or (ru.get("maxUnavailable") == 0 and not ru.get("maxSurge")):
        err("rolling update %s may stop all pods" % ru)
    else:
        ok("grace %ss, rolling update %s" % (grace, ru))

    # volumes name what exists
    vols = {v["name"]: v for v in pod.get("volumes", [])}
    for c in pod["containers"]:
        for m in c.get("volumeMounts", []):
            if m["name"] not in vols:
                err("container %s mounts %s, which is no volume" % (c["name"], m["name"]))
    names = {(o["kind"], o["metadata"]["name"]) for o in objs}
    for v in vols.values():
        if "persistentVolumeClaim" in v:
            claim = v["persistentVolumeClaim"]["claimName"]
            pvc = [o for o in objs if o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == claim]
            if not pvc:
                err("volume %s: claim %s is not in the manifests" % (v["name"], claim))
            elif "ReadOnlyMany" not in pvc[0]["spec"].get("accessModes", []):
                err("claim %s is not ReadOnlyMany" % claim)
            elif not v["persistentVolumeClaim"].get("readOnly"):
                err("volume %s: claim mounted read-write" % v["name"])
            else:
                ok("volume %s: claim %s, ReadOnlyMany, read-only" % (v["name"], claim))
        if "configMap" in v and ("ConfigMap", v["configMap"]["name"]) not in names:
            err("volume %s: config map %s is not in the manifests" % (v["name"], v["configMap"]["name"]))

    # HPA -> Deployment, metric served by the adapter rule from the exporter's counter
    ref = hpa["spec"]["scaleTargetRef"]
    if (ref.get("apiVersion"), ref.get("kind"), ref.get("name")) != ("apps/v1", "Deployment", dep["metadata"]["name"]):
        err("HPA scaleTargetRef %s does not name Deployment %s" % (ref, dep["metadata"]["name"]))
    else:
        ok("HPA %s targets Deployment %s (%s..%s replicas)" % (hpa["metadata"]["name"], ref["name"],
           hpa["spec"].get("minReplicas", 1), hpa["spec"]["maxReplicas"]))
    down = hpa["spec"].get("behavior", {}).get("scaleDown", {}).get("stabilizationWindowSeconds", 300)
    if down < 600:
        err("HPA scale-down stabilization %ss is shorter than a window's edit" % down)
    metrics = [m[m["type"].lower()]["metric"]["name"] for m in hpa["spec"].get("metrics", [])
               if m["type"] in ("Pods", "External", "Object")]
    adapter = os.path.join(d, "prometheus-adapter", "values.yaml")
    rules = []
    if os.path.isfile(adapter):
        docs = load_all(adapter)
        rules = ((docs[0] if docs else {}).get("rules") or {}).get("custom") or []
    served = {r.get("name", {}).get("as"): r.get("seriesQuery", "") for r in rules}
    cms = [o for o in objs if o["kind"] == "ConfigMap"]
    exporter_src = "".join(str(v) for o in cms for v in (o.get("data") or {}).values())
    for name in metrics:
        if name not in served:
            err("HPA metric %s is served by no rule in prometheus-adapter/values.yaml" % name)
            continue
        series = served[name].split("{")[0].strip("'\" ")
        if series not in exporter_src:
            err("adapter rule for %s reads %s, which no exporter in the manifests writes" % (name, series))
        else:
            ok("HPA metric %s <- adapter rule over %s <- exporter config map" % (name, series))
    for o in cms:
        for key, src in (o.get("data") or {}).items():
            if key.endswith(".py"):
                try:
                    compile(src, "%s/%s" % (o["metadata"]["name"], key), "exec")
                    ok("config map %s: %s compiles" % (o["metadata"]["name"], key))
                except SyntaxError as e:
                    err("config map %s: %s does not compile: %s" % (o["metadata"]["name"], key, e))
    ann = tpl["metadata"].get("annotations", {})
    if ann.get("prometheus.io/scrape") == "true" and int(ann.get("prometheus.io/port", 0)) not in ports.values():
        err("prometheus.io/port %s is no container port" % ann.get("prometheus.io/port"))

    # PDB selects the pods
    if subset(pdb["spec"].get("selector", {}).get("matchLabels"), labels):
        ok("PodDisruptionBudget %s selects the Deployment's pods" % pdb["metadata"]["name"])
    else:
        err("PodDisruptionBudget selector does not match the pod labels %s" % labels)

    # the image kustomize rewrites is the one the containers use
    for img in kust.get("images") or []:
        if not any(c["image"].split(":")[0] == img["name"] for c in pod["containers"]):
            err("kustomization image %s is used by no container" % img["name"])
except (KeyError, TypeError, AttributeError, ValueError) as e:
    if not errors:
        err("manifests incomplete: %r missing or of the wrong type" % (e,))

if errors:
    print("check_k8s: %d error(s)" % len(errors))
    sys.exit(1)
print("check_k8s: all good")
PY
