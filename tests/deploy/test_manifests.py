"""Deployment files validated offline: Kubernetes schemas (strict), the compose schema,
hadolint, yamllint, and consistency with the code (roles, settings, kustomize references).

No kustomize binary is installable from the registries here (the PyPI "kustomize" package
is an unrelated Python port): the base files are validated one by one, the overlay's
references are checked against them, and every overlay is rendered by
tests/support/kustomize.py (``kubectl kustomize`` for the features we use) and the result
validated strictly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.cli import ROLES
from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BASE = ROOT / "deploy" / "k8s" / "base"
OVERLAY = ROOT / "deploy" / "k8s" / "overlays" / "example"


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kubernetes_manifests_validate_strictly():
    files = [str(p) for p in sorted(BASE.glob("*.yaml")) if p.name != "kustomization.yaml"]
    r = run(str(BIN / "kubernetes-validate"), "--strict", *files)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ERROR" not in r.stdout
    passed = r.stdout.count("passed for resource")
    assert passed >= 20, r.stdout


def test_kustomizations_reference_what_exists():
    base = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    for res in base["resources"]:
        assert (BASE / res).exists(), res
    names = {(d["kind"], d["metadata"]["name"]) for f in base["resources"] for d in docs(BASE / f)}
    overlay = yaml.safe_load((OVERLAY / "kustomization.yaml").read_text())
    assert overlay["resources"] == ["../../base"]
    for patch in overlay["patches"]:
        for d in docs(OVERLAY / patch["path"]):
            assert (d["kind"], d["metadata"]["name"]) in names, patch
    for gen in overlay["secretGenerator"]:
        assert ("Secret", gen["name"]) in names


def test_workloads_are_hardened_and_probed():
    workloads = [d for f in BASE.glob("*.yaml") for d in docs(f)
                 if d.get("kind") in ("Deployment", "StatefulSet", "Job")]
    assert {w["metadata"]["name"] for w in workloads} == {
        "postline-api", "postline-relay", "postline-webhooks", "postline-analytics", "postline-migrate"}
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        for c in pod["containers"]:
            assert c["args"][0] in (*ROLES, "migrate")
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert "memory" in c["resources"]["limits"]
            if w["kind"] != "Job":
                assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
                assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    kinds = {d["kind"] for f in BASE.glob("*.yaml") for d in docs(f)}
    assert {"HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap", "Secret",
            "Service"} <= kinds


def test_config_names_exist_in_settings():
    fields = {f"POSTLINE_{name.upper()}" for name in Settings.model_fields}
    config = [d for d in docs(BASE / "config.yaml")]
    keys = set(config[0]["data"]) | set(config[1]["stringData"])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for svc in compose["services"].values():
        keys |= {k for k in (svc.get("environment") or {}) if k.startswith("POSTLINE_")}
    assert keys and keys <= fields, keys - fields


def test_compose_file_matches_the_compose_schema():
    r = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "docker-compose.yml")
    assert r.returncode == 0, r.stdout + r.stderr
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    roles = {s.get("command", ["all"])[0] for n, s in compose["services"].items() if s.get("build")}
    assert roles == {"migrate", "api", "relay", "webhooks", "analytics"}
    assert compose["services"]["kafka"]["image"].startswith("apache/kafka")
    assert compose["services"]["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"


def test_dockerfile_passes_hadolint():
    r = run(str(BIN / "hadolint"), "Dockerfile")
    assert r.returncode == 0, r.stdout + r.stderr
    text = (ROOT / "Dockerfile").read_text()
    assert text.count("FROM ") == 2 and "USER 10001" in text and 'ENTRYPOINT ["postline"]' in text


def test_all_yaml_passes_yamllint():
    r = run(str(BIN / "yamllint"), "-s", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def overlays() -> list[Path]:
    return sorted(p for p in (ROOT / "deploy" / "k8s" / "overlays").iterdir() if (p / "kustomization.yaml").exists())


def rendered(tmp_path: Path, overlay: Path) -> list[dict]:
    """``kubectl kustomize`` of a copy of the overlay (tests/support/kustomize.py), its
    secrets file made from the committed example, as an operator would."""
    import shutil

    from tests.support.kustomize import render

    k8s = tmp_path / "k8s"
    shutil.copytree(ROOT / "deploy" / "k8s", k8s)
    copy = k8s / "overlays" / overlay.name
    for example in copy.glob("*.env.example"):
        lines = [line + "filled-in" if line.endswith("=") else line for line in example.read_text().splitlines()]
        example.with_name(example.name.removesuffix(".example")).write_text("\n".join(lines) + "\n")
    return render(copy)


@pytest.mark.parametrize("overlay", overlays(), ids=lambda p: p.name)
def test_every_overlay_renders_and_validates_strictly(tmp_path, overlay):
    resources = rendered(tmp_path, overlay)
    out = tmp_path / "rendered.yaml"
    out.write_text(yaml.safe_dump_all(resources, sort_keys=False))
    r = run(str(BIN / "kubernetes-validate"), "--strict", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.count("passed for resource") == len(resources), r.stdout
    kustomization = yaml.safe_load((overlay / "kustomization.yaml").read_text())
    # the overlay's image is what every container runs (an override that matches nothing fails here)
    for rule in kustomization.get("images", []):
        want = f"{rule['newName']}:{rule['newTag']}"
        images = {c["image"] for d in resources if d["kind"] in ("Deployment", "Job")
                  for c in d["spec"]["template"]["spec"]["containers"]}
        assert images == {want}, images
    # every patch took effect
    by_key = {(d["kind"], d["metadata"]["name"]): d for d in resources}
    for patch in kustomization.get("patches", []):
        for doc in docs(overlay / patch["path"]):
            target = by_key[(doc["kind"], doc["metadata"]["name"])]
            for field in ("data", "spec"):
                for name, value in (doc.get(field) or {}).items():
                    if not isinstance(value, (dict, list)):
                        assert target[field][name] == value, (doc["metadata"]["name"], name)
    # generated Secrets and ConfigMaps are referenced by their generated (hashed) names
    names = {(d["kind"], d["metadata"]["name"]) for d in resources}
    for d in resources:
        if d["kind"] in ("Deployment", "Job"):
            for c in d["spec"]["template"]["spec"]["containers"]:
                for src in c.get("envFrom", []):
                    ref = src.get("secretRef") or src.get("configMapRef")
                    kind = "Secret" if "secretRef" in src else "ConfigMap"
                    assert (kind, ref["name"]) in names, ref
    assert all(d["metadata"].get("namespace") == "postline" for d in resources if d["kind"] != "Namespace")


def test_the_base_renders_and_the_renderer_refuses_what_it_does_not_know(tmp_path):
    from tests.support.kustomize import Unsupported, render

    resources = render(BASE)
    assert {c["image"] for d in resources if d["kind"] == "Deployment"
            for c in d["spec"]["template"]["spec"]["containers"]} == {"ghcr.io/example/postline:0.1.0"}
    assert all(d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "postline" for d in resources)
    (tmp_path / "kustomization.yaml").write_text("resources: []\nreplicas:\n  - name: postline-api\n    count: 2\n")
    with pytest.raises(Unsupported):
        render(tmp_path)
