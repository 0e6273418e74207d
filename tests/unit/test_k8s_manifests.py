"""The Kubernetes manifests, checked offline: every built-in object against the Kubernetes
OpenAPI schemas (kubernetes-validate, strict: an unknown field fails), the RayService against
KubeRay's own CRD schema (vendored in deploy/k8s/schemas/, an unknown field fails too), and the
RayService's Serve config builds the real application from the ConfigMap's config. The
Deployment also runs for real under `podman kube play` (tests/integration/test_container.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

kubernetes_validate = pytest.importorskip("kubernetes_validate")

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
VERSION = "1.30.0"  # the oldest Kubernetes still supported upstream when these were written


def documents(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((K8S / name).read_text()) if d]


def unknown_fields(obj: Any, schema: dict[str, Any], where: str = "") -> list[str]:
    """Fields the schema does not declare (a CRD's schema leaves additionalProperties open;
    the API server would drop such a field without a word)."""
    out: list[str] = []
    if isinstance(obj, dict) and "properties" in schema:
        if schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("additionalProperties"):
            return out
        for k, v in obj.items():
            if k not in schema["properties"]:
                out.append(f"{where}.{k}")
            else:
                out += unknown_fields(v, schema["properties"][k], f"{where}.{k}")
    elif isinstance(obj, dict) and isinstance(schema.get("additionalProperties"), dict):
        for k, v in obj.items():
            out += unknown_fields(v, schema["additionalProperties"], f"{where}.{k}")
    elif isinstance(obj, list) and "items" in schema:
        for i, v in enumerate(obj):
            out += unknown_fields(v, schema["items"], f"{where}[{i}]")
    return out


def test_every_builtin_object_validates_strictly_against_the_kubernetes_schemas():
    docs = documents("shelfops.yaml")
    assert [d["kind"] for d in docs] == ["ConfigMap", "Deployment", "Service", "HorizontalPodAutoscaler",
                                         "PodDisruptionBudget"]
    for d in docs:
        kubernetes_validate.validate(d, VERSION, strict=True)


def test_a_wrong_field_is_caught_by_the_same_check():
    deployment = documents("shelfops.yaml")[1]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["pth"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError, match="'pth' was unexpected"):
        kubernetes_validate.validate(deployment, VERSION, strict=True)


def test_the_deployment_probes_the_routes_the_server_has_and_takes_secrets_from_a_secret():
    from shelfops.serve import app as serve_app  # noqa: F401  (the routes below are the server's own)
    from shelfops.serve.routes import ops

    paths = {r.path for r in ops.router.routes}
    c = documents("shelfops.yaml")[1]["spec"]["template"]["spec"]["containers"][0]
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz" and "/readyz" in paths
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz" and "/healthz" in paths
    secret_envs = {e["name"] for e in c["env"] if "valueFrom" in e}
    assert {"SHELFOPS_ADMIN_TOKEN", "SHELFOPS_OPS_URL", "SHELFOPS_STATE_URL"} <= secret_envs
    assert all("value" not in e or "://" not in e["value"] or "@" not in e["value"] for e in c["env"])


def rayservice_schema() -> dict[str, Any]:
    return json.loads((K8S / "schemas" / "rayservice-ray.io-v1.json").read_text())


def test_the_rayservice_validates_against_kuberays_schema_with_no_unknown_field():
    (rs,) = documents("rayservice.yaml")
    schema = rayservice_schema()
    jsonschema.validate(rs, schema)
    assert unknown_fields(rs, schema) == []
    typo = json.loads(json.dumps(rs))
    typo["spec"]["rayClusterConfig"]["headGroupSpec"]["rayStartParms"] = {}
    assert unknown_fields(typo, schema) == [".spec.rayClusterConfig.headGroupSpec.rayStartParms"]


def test_the_rayservice_serve_config_builds_the_application_from_the_configmaps_config(tmp_path):
    pytest.importorskip("ray.serve")
    from shelfops.config.load import load_config
    from shelfops.errors import ConfigError
    from shelfops.serve import ray_backend

    (rs,) = documents("rayservice.yaml")
    (app,) = yaml.safe_load(rs["spec"]["serveConfigV2"])["applications"]
    module, _, attr = app["import_path"].partition(":")
    assert (module, attr) == ("shelfops.serve.ray_backend", "build")
    config = tmp_path / "shelfops.yaml"  # the ConfigMap's file, where the pods mount it
    config.write_text(documents("shelfops.yaml")[0]["data"]["shelfops.yaml"])
    load_config(config)  # valid on its own
    built = ray_backend.build({**app["args"], "config": str(config)})
    assert type(built).__name__ == "Application"
    with pytest.raises(ConfigError, match="unknown"):
        ray_backend.build({**app["args"], "config": str(config), "replicas": 3})
