"""The HTTP API through the real kubectl: discovery, gets and their errors, apply, rollout."""

import base64
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.kubeapi.api import Container, KubeAPIServer, strategic_merge

NS = "apitest"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    with KubeAPIServer() as api:
        api.add_namespace(NS)
        yield api, tmp_path


def kubectl(api: KubeAPIServer, tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    config = api.write_kubeconfig(tmp)
    env = {**os.environ, "KUBECACHEDIR": str(tmp / "cache")}
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(config), "--namespace", NS, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_get_secret_and_errors(kube) -> None:
    api, tmp = kube
    api.add_secret(NS, "db", {"password": "p@ss:w/o%rd"})
    got = kubectl(api, tmp, "get", "secret", "db", "-o", "json")
    assert got.returncode == 0, got.stderr
    assert base64.b64decode(json.loads(got.stdout)["data"]["password"]) == b"p@ss:w/o%rd"

    missing = kubectl(api, tmp, "get", "secret", "nope", "-o", "json")
    assert 'Error from server (NotFound): secrets "nope" not found' in missing.stderr
    namespace = kubectl(api, tmp, "get", "namespace", "nowhere")
    assert 'namespaces "nowhere" not found' in namespace.stderr

    api.forbid("get", "secrets", NS)
    forbidden = kubectl(api, tmp, "get", "secret", "db", "-o", "json")
    assert "Error from server (Forbidden)" in forbidden.stderr

    api.refuse_credentials = True
    refused = kubectl(api, tmp, "get", "pods", "-o", "json")
    assert "You must be logged in to the server" in refused.stderr


def test_pods_by_label(kube) -> None:
    api, tmp = kube
    api.add_pod(NS, "db-0", labels={"app": "db"}, containers=[Container("db")])
    api.add_pod(NS, "web-0", labels={"app": "web"}, containers=[Container("web")], ready=False)
    got = kubectl(api, tmp, "get", "pods", "-l", "app=db", "-o", "json")
    names = [p["metadata"]["name"] for p in json.loads(got.stdout)["items"]]
    assert names == ["db-0"]
    web = json.loads(kubectl(api, tmp, "get", "pod", "web-0", "-o", "json").stdout)
    ready = {c["type"]: c["status"] for c in web["status"]["conditions"]}
    assert ready["Ready"] == "False"


def test_endpoint_slices_follow_pod_readiness(kube) -> None:
    api, tmp = kube
    api.add_pod(NS, "db-0", labels={"app": "db"}, containers=[Container("db")])
    api.add_pod(NS, "db-1", labels={"app": "db"}, containers=[Container("db")], ready=False)
    api.add_service(NS, "db", selector={"app": "db"}, ports=[{"port": 5432}])

    def ready() -> dict[str, bool]:
        got = kubectl(
            api, tmp, "get", "endpointslices", "-l", "kubernetes.io/service-name=db", "-o", "json"
        )
        assert got.returncode == 0, got.stderr
        return {
            e["targetRef"]["name"]: e["conditions"]["ready"]
            for item in json.loads(got.stdout)["items"]
            for e in item["endpoints"]
        }

    assert ready() == {"db-0": True, "db-1": False}
    api.set_pod_ready(NS, "db-0", False)
    assert ready() == {"db-0": False, "db-1": False}


MANIFEST = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  LEVEL: {level}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
        - name: web
          image: example/web:{tag}
"""


def test_apply_creates_then_patches(kube) -> None:
    api, tmp = kube
    manifest = tmp / "app.yaml"
    manifest.write_text(MANIFEST.format(level="info", tag="1"))
    created = kubectl(api, tmp, "apply", "-f", str(manifest))
    assert created.returncode == 0, created.stderr
    assert "configmap/settings created" in created.stdout
    assert "deployment.apps/web created" in created.stdout

    manifest.write_text(MANIFEST.format(level="debug", tag="2"))
    patched = kubectl(api, tmp, "apply", "-f", str(manifest))
    assert patched.returncode == 0, patched.stderr
    assert "deployment.apps/web configured" in patched.stdout
    deployment = api.get_object(NS, "deployments", "web")
    assert deployment is not None
    assert deployment["spec"]["template"]["spec"]["containers"][0]["image"] == "example/web:2"
    assert deployment["metadata"]["generation"] == 2
    assert api.get_object(NS, "configmaps", "settings")["data"]["LEVEL"] == "debug"

    kustomize = tmp / "base"
    kustomize.mkdir()
    (kustomize / "app.yaml").write_text(MANIFEST.format(level="warn", tag="3"))
    (kustomize / "kustomization.yaml").write_text("resources: [app.yaml]\n")
    applied = kubectl(api, tmp, "apply", "-k", str(kustomize))
    assert applied.returncode == 0, applied.stderr


def test_rollout_status(kube) -> None:
    api, tmp = kube
    api.add_deployment(NS, "web", replicas=2)
    done = kubectl(api, tmp, "rollout", "status", "deployment/web", "--timeout=20s")
    assert done.returncode == 0, done.stderr
    assert 'deployment "web" successfully rolled out' in done.stdout

    api.auto_rollout = False
    api.add_deployment(NS, "stuck", replicas=1)
    stuck = kubectl(api, tmp, "rollout", "status", "deployment/stuck", "--timeout=2s")
    assert stuck.returncode != 0
    assert "timed out" in stuck.stderr


def test_strategic_merge() -> None:
    target = {
        "spec": {
            "containers": [{"name": "a", "image": "1", "env": [{"name": "X"}]}],
            "keep": True,
            "drop": 1,
        }
    }
    patch = {
        "spec": {
            "containers": [{"name": "a", "image": "2"}, {"name": "b"}],
            "drop": None,
            "$setElementOrder/containers": [{"name": "a"}],
        }
    }
    merged = strategic_merge(target, patch)
    assert merged["spec"]["containers"] == [
        {"name": "a", "image": "2", "env": [{"name": "X"}]},
        {"name": "b"},
    ]
    assert merged["spec"]["keep"] is True and "drop" not in merged["spec"]
