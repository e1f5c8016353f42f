"""``kubectl kustomize`` for the features our kustomizations use, in Python (no kustomize
binary is installable from the registries here; the PyPI "kustomize" is something else).

Supported, with kustomize's semantics: ``resources`` (files, and directories holding a
kustomization, rendered first), ``namespace`` (on every namespaced resource), ``labels``
(``pairs`` into ``metadata.labels``; ``includeSelectors``/``includeTemplates`` as flags),
``images`` (``name`` → ``newName``/``newTag``/``digest``, matched on the image name
without tag, after the lower layers' renames: an overlay must name the image as the base
left it), ``patches`` (strategic-merge files; the target is the patch's own kind and name,
lists of objects merge by ``name``), ``configMapGenerator``/``secretGenerator``
(``literals``, ``envs``, ``files``; ``behavior`` create/replace/merge; a content-hash name
suffix unless ``options.disableNameSuffixHash``, and references to the generated name in
workloads rewritten). Anything else in a kustomization raises ``Unsupported``, so a new
feature cannot be silently ignored by the tests. The hash differs from kustomize's own.

``render(path)`` returns the resources as a list of dicts, in kustomize's input order."""
from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import yaml

KNOWN = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches", "configMapGenerator",
         "secretGenerator"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"}
POD_OWNERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}


class Unsupported(ValueError):
    """A kustomization uses a feature this renderer does not implement."""


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _key(res: dict) -> tuple[str, str]:
    return res["kind"], res["metadata"]["name"]


def render(path: Path) -> list[dict]:
    """The resources the kustomization in directory ``path`` produces."""
    path = Path(path)
    k = yaml.safe_load((path / "kustomization.yaml").read_text())
    unknown = set(k) - KNOWN
    if unknown:
        raise Unsupported(f"{path}: {sorted(unknown)}")
    resources: list[dict] = []
    for ref in k.get("resources", []):
        target = (path / ref).resolve()
        resources += render(target) if target.is_dir() else _docs(target)
    renames = {}
    for gen_kind, field in (("ConfigMap", "configMapGenerator"), ("Secret", "secretGenerator")):
        for gen in k.get(field, []):
            renames.update(_generate(path, gen_kind, gen, resources))
    for patch in k.get("patches", []):
        _patch(path, patch, resources)
    for image in k.get("images", []):
        for pod in _pod_specs(resources):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                c["image"] = _retag(c["image"], image)
    if "namespace" in k:
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED:
                res["metadata"]["namespace"] = k["namespace"]
    for label in k.get("labels", []):
        _label(resources, label)
    _rewrite_references(resources, renames)
    return resources


def _generate(path: Path, kind: str, gen: dict, resources: list[dict]) -> dict[tuple[str, str], str]:
    """Add (or replace, or merge into) the generated resource; returns {(kind, old name): new name}."""
    unknown = set(gen) - {"name", "behavior", "literals", "envs", "files", "options", "type"}
    if unknown:
        raise Unsupported(f"{kind} generator: {sorted(unknown)}")
    data: dict[str, str] = {}
    for item in gen.get("literals", []):
        name, _, value = item.partition("=")
        data[name] = value
    for env in gen.get("envs", []):
        for line in (path / env).read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, value = line.partition("=")
                data[name.strip()] = value
    for f in gen.get("files", []):
        name, _, src = f.rpartition("=") if "=" in f else (Path(f).name, "", f)
        data[name] = (path / src).read_text()
    behavior = gen.get("behavior", "create")
    existing = [r for r in resources if _key(r) == (kind, gen["name"])]
    if behavior == "create" and existing:
        raise ValueError(f"{kind}/{gen['name']} exists already: use behavior merge or replace")
    if behavior in ("merge", "replace") and len(existing) != 1:
        raise ValueError(f"{kind}/{gen['name']}: nothing to {behavior}")
    if behavior == "merge":
        old = existing[0]
        data = {**old.get("data", {}), **(_decoded(old) if kind == "Secret" else {}), **data}
    res = {"apiVersion": "v1", "kind": kind, "metadata": {"name": gen["name"]}}
    if kind == "Secret":
        res["type"] = gen.get("type", "Opaque")
        res["data"] = {n: base64.b64encode(v.encode()).decode() for n, v in data.items()}
    else:
        res["data"] = data
    if existing:
        old = existing[0]
        res["metadata"] = {**copy.deepcopy(old["metadata"]), "name": gen["name"]}
        resources[resources.index(old)] = res
    else:
        resources.append(res)
    if (gen.get("options") or {}).get("disableNameSuffixHash"):
        return {}
    digest = hashlib.sha256(json.dumps({"kind": kind, "data": res["data"]}, sort_keys=True).encode()).hexdigest()
    res["metadata"]["name"] = f"{gen['name']}-{digest[:10]}"
    return {(kind, gen["name"]): res["metadata"]["name"]}


def _decoded(secret: dict) -> dict[str, str]:
    out = dict(secret.get("stringData", {}))
    out.update({n: base64.b64decode(v).decode() for n, v in (secret.get("data") or {}).items()})
    return out


def _patch(path: Path, patch: dict, resources: list[dict]) -> None:
    if set(patch) - {"path"}:
        raise Unsupported(f"patch options {sorted(set(patch) - {'path'})} (only strategic-merge files)")
    for doc in _docs(path / patch["path"]):
        matches = [r for r in resources if _key(r) == _key(doc)]
        if len(matches) != 1:
            raise ValueError(f"patch {patch['path']}: {_key(doc)} matches {len(matches)} resources")
        merged = _merge(matches[0], doc)
        resources[resources.index(matches[0])] = merged


def _merge(base, patch):
    """Strategic merge as kustomize applies it to our objects: maps merge recursively, a
    null deletes, lists of objects with a ``name`` merge item by item, other lists replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(out.get(k), v) if k in out else copy.deepcopy(v)
        return out
    if (isinstance(base, list) and isinstance(patch, list) and base and patch
            and all(isinstance(i, dict) and "name" in i for i in base + patch)):
        out = [copy.deepcopy(i) for i in base]
        for item in patch:
            at = next((n for n, b in enumerate(out) if b["name"] == item["name"]), None)
            if at is None:
                out.append(copy.deepcopy(item))
            else:
                out[at] = _merge(out[at], item)
        return out
    return copy.deepcopy(patch)


def _pod_specs(resources: list[dict]) -> list[dict]:
    out = []
    for r in resources:
        if r["kind"] in POD_OWNERS:
            out.append(r["spec"]["template"]["spec"])
        elif r["kind"] == "CronJob":
            out.append(r["spec"]["jobTemplate"]["spec"]["template"]["spec"])
        elif r["kind"] == "Pod":
            out.append(r["spec"])
    return out


def _retag(image: str, rule: dict) -> str:
    """Apply one ``images`` entry to an image reference (when its name matches)."""
    name, tag = image, None
    if "@" in name:
        name, tag = name.split("@", 1)[0], "@" + name.split("@", 1)[1]
    elif ":" in name.rsplit("/", 1)[-1]:
        name, tag = name.rsplit(":", 1)[0], ":" + name.rsplit(":", 1)[1]
    if name != rule["name"]:
        return image
    name = rule.get("newName", name)
    if "digest" in rule:
        tag = "@" + rule["digest"]
    elif "newTag" in rule:
        tag = ":" + str(rule["newTag"])
    return name + (tag or "")


def _label(resources: list[dict], label: dict) -> None:
    unknown = set(label) - {"pairs", "includeSelectors", "includeTemplates"}
    if unknown:
        raise Unsupported(f"labels: {sorted(unknown)}")
    pairs = label["pairs"]
    for r in resources:
        r["metadata"].setdefault("labels", {}).update(pairs)
        if r["kind"] in POD_OWNERS and (label.get("includeTemplates") or label.get("includeSelectors")):
            r["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(pairs)
        if label.get("includeSelectors"):
            sel = r.get("spec", {}).get("selector")
            if r["kind"] in POD_OWNERS and sel is not None:
                sel.setdefault("matchLabels", {}).update(pairs)
            elif r["kind"] == "Service" and sel is not None:
                sel.update(pairs)


def _rewrite_references(resources: list[dict], renames: dict[tuple[str, str], str]) -> None:
    """Point every reference to a generated ConfigMap/Secret at its hashed name."""
    if not renames:
        return
    def new(kind: str, name: str) -> str:
        return renames.get((kind, name), name)

    for pod in _pod_specs(resources):
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            for src in c.get("envFrom", []):
                if "configMapRef" in src:
                    src["configMapRef"]["name"] = new("ConfigMap", src["configMapRef"]["name"])
                if "secretRef" in src:
                    src["secretRef"]["name"] = new("Secret", src["secretRef"]["name"])
            for e in c.get("env", []):
                ref = e.get("valueFrom", {})
                if "configMapKeyRef" in ref:
                    ref["configMapKeyRef"]["name"] = new("ConfigMap", ref["configMapKeyRef"]["name"])
                if "secretKeyRef" in ref:
                    ref["secretKeyRef"]["name"] = new("Secret", ref["secretKeyRef"]["name"])
        for v in pod.get("volumes", []):
            if "configMap" in v:
                v["configMap"]["name"] = new("ConfigMap", v["configMap"]["name"])
            if "secret" in v:
                v["secret"]["secretName"] = new("Secret", v["secret"]["secretName"])
