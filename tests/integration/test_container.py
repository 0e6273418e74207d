"""The container image, built and run for real with podman: the project's Dockerfile on a base
built here from Debian packages (no image registry is reachable), a non-editable install of
the project with the CPU build of torch, run as a non-root user; the test waits for /readyz
(the image's own healthcheck agrees) and answers a search over the mounted models.

Prints the figures the issue asks for: build time, image size, cold start to /readyz."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import httpx
import pytest
from containers import IMAGE, built_image, podman, readable_copy, ready_after

from shelfops.serve.server import free_port

# the first test builds the image (make image, up to 1500 s) before it runs the container
pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def image() -> dict:
    return built_image()


def test_the_image_serves_a_search_as_a_non_root_user(image, models, small_shop):
    mounted = readable_copy(models, small_shop)
    try:
        port = free_port()
        t0 = time.monotonic()
        name = podman("run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8000", "-v", f"{mounted}:/models:ro",
                      IMAGE, "serve", "--host", "0.0.0.0", "--model", "search=/models/search",
                      "--model", "retrieval=/models/retrieval", "--data", "/models/data").stdout.strip()
        try:
            url = f"http://127.0.0.1:{port}"
            ready, r = ready_after(url, t0)
            logs = podman("logs", name, check=False)
            assert ready is not None, f"no /readyz within 180 s:\n{logs.stdout[-2000:]}{logs.stderr[-2000:]}"
            assert set(r.json()["models"]) == {"search", "retrieval"}
            s = httpx.post(f"{url}/v1/search", json={"query": "red shoes", "k": 5}, timeout=30)
            assert s.status_code == 200 and len(s.json()["items"]) == 5, s.text
            assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
            assert podman("healthcheck", "run", name, check=False).returncode == 0  # the image's own check
            # a non-editable install finds the configs it ships (the demo's among them)
            ok = podman("run", "--rm", IMAGE, "validate", "synthetic", check=False)
            assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
        finally:
            podman("rm", "-f", name, check=False)
    finally:
        shutil.rmtree(mounted, ignore_errors=True)
    print(f"\nIMAGE built in {image['build_s']:.0f} s, {image['size_mb']:.0f} MB; cold start to /readyz "
          f"{ready:.1f} s; a search answered as uid 10001")


def test_the_kubernetes_deployment_runs_under_podman_kube_play(image, models, small_shop):
    """deploy/k8s/shelfops.yaml's ConfigMap and Deployment as they are (probes, security
    context, read-only root, config file, env), with what a cluster would provide filled in
    the way an overlay would: the image built here, a host folder for the data volume, the
    secrets' values (Redis is this machine's), one replica on the host's network."""
    import yaml

    docs = [d for d in yaml.safe_load_all((ROOT / "deploy" / "k8s" / "shelfops.yaml").read_text()) if d]
    config_map, deployment = docs[0], docs[1]
    assert (config_map["kind"], deployment["kind"]) == ("ConfigMap", "Deployment")
    mounted = readable_copy(models, small_shop)
    port = free_port()
    pod = deployment["spec"]["template"]["spec"]
    c = pod["containers"][0]
    data_dir = next(m["mountPath"] for m in c["volumeMounts"] if m["name"] == "data")
    deployment["spec"]["replicas"] = 1
    pod["hostNetwork"] = True  # the machine's Redis; a host-network pod maps no ports
    c.pop("ports")
    c["image"] = IMAGE
    c["args"] = ["serve", "--host", "127.0.0.1", "--port", str(port), "--model", f"search={data_dir}/search",
                 "--model", f"retrieval={data_dir}/retrieval", "--data", f"{data_dir}/data",
                 *c["args"][c["args"].index("--config"):]]
    values = {"SHELFOPS_ADMIN_TOKEN": "kube-test-token", "SHELFOPS_OPS_URL": "sqlite:////tmp/ops.db",
              "SHELFOPS_STATE_URL": "redis://127.0.0.1:6379/0", "SHELFOPS_READ_TOKEN": "kube-read-token"}
    c["env"] = [{"name": e["name"], "value": values[e["name"]]} if "valueFrom" in e else e for e in c["env"]]
    for p in ("readinessProbe", "livenessProbe", "startupProbe"):
        c[p]["httpGet"]["port"] = port
    pod["volumes"] = [{"name": "data", "hostPath": {"path": str(mounted), "type": "Directory"}}
                      if v["name"] == "data" else v for v in pod["volumes"]]
    try:
        manifest = mounted.parent / f"{mounted.name}.yaml"
        manifest.write_text(yaml.safe_dump_all([config_map, deployment]))
        t0 = time.monotonic()
        played = podman("kube", "play", str(manifest), timeout=300, check=False)
        assert played.returncode == 0, played.stdout + played.stderr
        try:
            ready, r = ready_after(f"http://127.0.0.1:{port}", t0)
            pods = podman("pod", "ps", "--format", "{{.Name}} {{.Status}}", check=False).stdout
            assert ready is not None, f"no /readyz within 180 s; pods: {pods}"
            assert r.json()["dependencies"], r.json()  # Redis, from the secret's URL, answers
            s = httpx.post(f"http://127.0.0.1:{port}/v1/search", json={"query": "red shoes", "k": 3}, timeout=30)
            assert s.status_code == 200 and len(s.json()["items"]) == 3, s.text
            ctr = [n for n in podman("ps", "--format", "{{.Names}}", check=False).stdout.split()
                   if n.startswith("shelfops-pod") and n.endswith("-shelfops")]  # kube play's naming
            touched = podman("exec", ctr[0], "touch", "/opt/shelfops/x", check=False) if ctr else None
            assert touched is not None and touched.returncode != 0, "the root filesystem should be read-only"
        finally:
            podman("kube", "down", str(manifest), timeout=120, check=False)
    finally:
        shutil.rmtree(mounted, ignore_errors=True)
    print(f"\nKUBE podman kube play of deploy/k8s/shelfops.yaml's Deployment: /readyz after {ready:.1f} s, "
          "a search answered, root filesystem read-only")
