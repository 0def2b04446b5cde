"""Jobs through the real kubectl: their pods run as local processes, with logs, env, deadlines."""

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.kubeapi.api import KubeAPIServer

NS = "jobtest"


@pytest.fixture
def kube(tmp_path: Path) -> Iterator[tuple[KubeAPIServer, Path]]:
    with KubeAPIServer() as api:
        api.add_namespace(NS)
        yield api, tmp_path


def command(api: KubeAPIServer, tmp: Path, *args: str) -> list[str]:
    return ["kubectl", "--kubeconfig", str(api.write_kubeconfig(tmp)), "--namespace", NS, *args]


def environment(tmp: Path) -> dict[str, str]:
    return {**os.environ, "KUBECACHEDIR": str(tmp / "cache")}


def kubectl(
    api: KubeAPIServer, tmp: Path, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(api, tmp, *args),
        input=stdin,
        capture_output=True,
        text=True,
        env=environment(tmp),
        timeout=60,
    )


def job(name: str, script: str, **container: Any) -> dict[str, Any]:
    """A Job whose one container runs `script` with this Python."""
    spec: dict[str, Any] = {
        "backoffLimit": 0,
        "template": {
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {
                        "name": "migrate",
                        "image": "example/app:1",
                        "command": [sys.executable, "-c", script],
                        **container,
                    }
                ],
            }
        },
    }
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name}, "spec": spec}


def create(api: KubeAPIServer, tmp: Path, manifest: dict[str, Any]) -> None:
    created = kubectl(api, tmp, "create", "-f", "-", stdin=json.dumps(manifest))
    assert created.returncode == 0, created.stderr


def get(api: KubeAPIServer, tmp: Path, *what: str) -> dict[str, Any]:
    got = kubectl(api, tmp, "get", *what, "-o", "json")
    assert got.returncode == 0, got.stderr
    return json.loads(got.stdout)


def eventually(check: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return result


def the_pod(api: KubeAPIServer, tmp: Path, job_name: str) -> dict[str, Any]:
    """The Job's pod, found by its `job-name` label as a user would."""
    items = eventually(lambda: get(api, tmp, "pods", "-l", f"job-name={job_name}")["items"])
    assert len(items) == 1
    return items[0]


def state(api: KubeAPIServer, tmp: Path, pod: str) -> dict[str, Any]:
    return get(api, tmp, "pod", pod)["status"]["containerStatuses"][0]["state"]


def condition(job: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in job["status"].get("conditions", []) if c["type"] == kind), None)


def reason(job: dict[str, Any], kind: str) -> tuple[str, str]:
    """The reason and message of a condition that is true."""
    found = condition(job, kind)
    assert found is not None and found["status"] == "True", job["status"]
    return found["reason"], found["message"]


def waiting(api: KubeAPIServer, tmp: Path, pod: str) -> dict[str, Any]:
    return state(api, tmp, pod).get("waiting", {})


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def running_pid(api: KubeAPIServer, tmp: Path, job_name: str) -> tuple[str, int]:
    pod = the_pod(api, tmp, job_name)["metadata"]["name"]
    eventually(lambda: "running" in state(api, tmp, pod))
    pid = api.pid(NS, pod)
    assert pid is not None and alive(pid)
    return pod, pid


PRINTS = "import sys\nprint('one', flush=True)\nprint('two', file=sys.stderr)\nprint('three')"
COMPLETE = ("CompletionsReached", "Reached expected number of succeeded pods")
SLEEPS = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"


def test_a_job_completes_and_its_pod_shows_its_logs(kube) -> None:
    api, tmp = kube
    create(api, tmp, job("x", PRINTS))
    done = kubectl(api, tmp, "wait", "--for=condition=Complete", "job/x", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert "job.batch/x condition met" in done.stdout

    logs = kubectl(api, tmp, "logs", "job/x")
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == "one\ntwo\nthree\n"
    followed = kubectl(api, tmp, "logs", "-f", "job/x")
    assert followed.stdout == "one\ntwo\nthree\n"
    assert kubectl(api, tmp, "logs", "--tail=1", "job/x").stdout == "three\n"

    x = get(api, tmp, "job", "x")
    uid = x["metadata"]["uid"]
    assert x["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert x["status"]["succeeded"] == 1 and "active" not in x["status"]
    assert x["status"]["startTime"] and x["status"]["completionTime"]
    assert reason(x, "Complete") == COMPLETE
    pod = the_pod(api, tmp, "x")
    assert re.fullmatch(r"x-[bcdfghjklmnpqrstvwxz2456789]{5}", pod["metadata"]["name"])
    assert pod["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": "x",
        "controller-uid": uid,
        "job-name": "x",
    }
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Job", "x", uid)
    assert owner["controller"] is True
    assert pod["status"]["phase"] == "Succeeded"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed")


def test_logs_follow_streams_while_the_process_runs(kube) -> None:
    api, tmp = kube
    go_on = tmp / "go-on"
    script = (
        "import os, time\nprint('first', flush=True)\n"
        f"while not os.path.exists({str(go_on)!r}): time.sleep(0.05)\nprint('second')"
    )
    create(api, tmp, job("x", script))
    with subprocess.Popen(
        command(api, tmp, "logs", "-f", "job/x"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp),
    ) as follow:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"  # while the process still runs
        assert follow.poll() is None
        go_on.touch()
        rest, errors = follow.communicate(timeout=30)
    assert follow.returncode == 0, errors
    assert rest == "second\n"


def test_a_failing_job_fails_with_its_exit_code(kube) -> None:
    api, tmp = kube
    create(api, tmp, job("x", "import sys\nprint('no', flush=True)\nsys.exit(3)"))
    failed = kubectl(api, tmp, "wait", "--for=condition=Failed", "job/x", "--timeout=30s")
    assert failed.returncode == 0, failed.stderr
    x = get(api, tmp, "job", "x")
    assert x["status"]["failed"] == 1 and "completionTime" not in x["status"]
    assert reason(x, "Failed") == (
        "BackoffLimitExceeded",
        "Job has reached the specified backoff limit",
    )
    assert condition(x, "Complete") is None
    pod = the_pod(api, tmp, "x")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")
    assert kubectl(api, tmp, "logs", pod["metadata"]["name"]).stdout == "no\n"


def test_env_from_secrets_and_config_maps_reaches_the_process(kube) -> None:
    api, tmp = kube
    api.add_secret(NS, "db-credentials", {"password": "p@ss w0rd", "user": "app"})
    api.add_config_map(NS, "settings", {"LEVEL": "debug"})
    api.base_env = {"FROM_IMAGE": "image", "LEVEL": "image's"}
    env = [
        {
            "name": "PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
        },
        {"name": "URL", "value": "postgresql://$(DB_user):$(PASSWORD)@db/$(NOPE)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {
            "name": "OPTIONAL",
            "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}},
        },
    ]
    env_from = [
        {"secretRef": {"name": "db-credentials"}, "prefix": "DB_"},
        {"configMapRef": {"name": "settings"}},
    ]
    script = (
        "import json, os\nnames = ['PASSWORD', 'URL', 'POD', 'OPTIONAL', 'DB_password', "
        "'DB_user', 'LEVEL', 'FROM_IMAGE', 'HOSTNAME']\n"
        "print(json.dumps({n: os.environ.get(n) for n in names}))\nprint(os.getcwd())"
    )
    create(api, tmp, job("x", script, env=env, envFrom=env_from, workingDir=str(tmp)))
    done = kubectl(api, tmp, "wait", "--for=condition=Complete", "job/x", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    printed, cwd = kubectl(api, tmp, "logs", "job/x").stdout.splitlines()
    pod = the_pod(api, tmp, "x")["metadata"]["name"]
    assert json.loads(printed) == {
        "PASSWORD": "p@ss w0rd",
        "URL": "postgresql://app:p@ss w0rd@db/$(NOPE)",
        "POD": pod,
        "OPTIONAL": None,
        "DB_password": "p@ss w0rd",
        "DB_user": "app",
        "LEVEL": "debug",
        "FROM_IMAGE": "image",
        "HOSTNAME": pod,
    }
    assert cwd == str(tmp)


def test_a_missing_secret_or_key_keeps_the_pod_waiting(kube) -> None:
    api, tmp = kube
    api.add_config_map(NS, "settings", {})
    ref = {"secretKeyRef": {"name": "db-credentials", "key": "password"}}
    create(api, tmp, job("x", "print('started')", env=[{"name": "P", "valueFrom": ref}]))
    pod = the_pod(api, tmp, "x")["metadata"]["name"]
    eventually(lambda: waiting(api, tmp, pod).get("message"))
    assert waiting(api, tmp, pod) == {
        "reason": "CreateContainerConfigError",
        "message": 'secret "db-credentials" not found',
    }
    refused = kubectl(api, tmp, "logs", pod)
    assert refused.returncode != 0
    why = f'container "migrate" in pod "{pod}" is waiting to start: CreateContainerConfigError'
    assert why in refused.stderr

    api.add_secret(NS, "db-credentials", {"user": "app"})
    message = f"couldn't find key password in Secret {NS}/db-credentials"
    eventually(lambda: waiting(api, tmp, pod).get("message") == message)
    assert get(api, tmp, "pod", pod)["status"]["phase"] == "Pending"
    assert api.pid(NS, pod) is None  # never started

    api.add_secret(NS, "db-credentials", {"password": "late"})  # the kubelet retries
    done = kubectl(api, tmp, "wait", "--for=condition=Complete", "job/x", "--timeout=30s")
    assert done.returncode == 0, done.stderr


def test_an_unpullable_image_keeps_the_pod_waiting(kube) -> None:
    api, tmp = kube
    api.unpullable_images = {"example/nope:1"}
    create(api, tmp, job("x", "print('started')", image="example/nope:1"))
    pod = the_pod(api, tmp, "x")["metadata"]["name"]
    eventually(lambda: waiting(api, tmp, pod).get("reason") == "ImagePullBackOff")
    assert "example/nope:1" in waiting(api, tmp, pod)["message"]
    refused = kubectl(api, tmp, "logs", pod)
    assert "is waiting to start: trying and failing to pull image" in refused.stderr
    assert api.pid(NS, pod) is None
    assert "active" in get(api, tmp, "job", "x")["status"]


def test_the_deadline_stops_the_process_and_fails_the_job(kube) -> None:
    api, tmp = kube
    manifest = job("x", SLEEPS)
    manifest["spec"]["activeDeadlineSeconds"] = 1
    create(api, tmp, manifest)
    _, pid = running_pid(api, tmp, "x")
    failed = kubectl(api, tmp, "wait", "--for=condition=Failed", "job/x", "--timeout=30s")
    assert failed.returncode == 0, failed.stderr
    assert not alive(pid)
    x = get(api, tmp, "job", "x")
    assert reason(x, "Failed") == (
        "DeadlineExceeded",
        "Job was active longer than specified deadline",
    )
    assert x["status"]["failed"] == 1
    assert eventually(lambda: not get(api, tmp, "pods", "-l", "job-name=x")["items"])


def test_deleting_a_job_or_its_pod_stops_the_process(kube) -> None:
    api, tmp = kube
    create(api, tmp, job("x", SLEEPS))
    pod, pid = running_pid(api, tmp, "x")
    deleted = kubectl(api, tmp, "delete", "job", "x")
    assert deleted.returncode == 0, deleted.stderr
    eventually(lambda: not alive(pid))
    assert eventually(lambda: not get(api, tmp, "pods", "-l", "job-name=x")["items"])

    create(api, tmp, job("y", SLEEPS))
    pod, pid = running_pid(api, tmp, "y")
    deleted = kubectl(api, tmp, "delete", "pod", pod)
    assert deleted.returncode == 0, deleted.stderr
    assert not alive(pid)  # kubectl waited for the pod to be gone
    y = get(api, tmp, "job", "y")
    assert reason(y, "Failed")[0] == "BackoffLimitExceeded"


def test_oom_kill(kube) -> None:
    api, tmp = kube
    create(api, tmp, job("x", SLEEPS))
    pod, pid = running_pid(api, tmp, "x")
    assert os.getsid(pid) != os.getsid(0)  # its own session: a Ctrl-C here does not reach it
    api.oom_kill(NS, pod)
    failed = kubectl(api, tmp, "wait", "--for=condition=Failed", "job/x", "--timeout=30s")
    assert failed.returncode == 0, failed.stderr
    terminated = state(api, tmp, pod)["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")


def test_logs_before_the_container_starts(kube) -> None:
    api, tmp = kube
    api.start_delay = 30
    create(api, tmp, job("x", PRINTS))
    pod = the_pod(api, tmp, "x")
    assert pod["status"]["phase"] == "Pending"
    name = pod["metadata"]["name"]
    assert state(api, tmp, name) == {"waiting": {"reason": "ContainerCreating"}}
    refused = kubectl(api, tmp, "logs", name)
    assert refused.returncode == 1
    assert (
        f'Error from server (BadRequest): container "migrate" in pod "{name}" is waiting to '
        "start: ContainerCreating" in refused.stderr
    )


def test_watching_a_job_sees_its_status_change(kube) -> None:
    api, tmp = kube
    create(api, tmp, job("x", "import time\ntime.sleep(1)"))
    with subprocess.Popen(
        command(api, tmp, "get", "job", "x", "-w", "-o", "json"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp),
    ) as watch:
        eventually(lambda: condition(api.get_object(NS, "jobs", "x") or {}, "Complete"))
        time.sleep(0.5)
        watch.terminate()
        out, _ = watch.communicate(timeout=10)
    seen, decoder, rest = [], json.JSONDecoder(), out.strip()
    while rest:
        obj, end = decoder.raw_decode(rest)
        seen.append(obj)
        rest = rest[end:].strip()
    versions = [int(o["metadata"]["resourceVersion"]) for o in seen]
    assert versions == sorted(set(versions))
    assert any(o["status"].get("active") == 1 for o in seen)
    assert condition(seen[-1], "Complete") and seen[-1]["status"]["succeeded"] == 1


MANIFEST = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: migrate
spec:
  backoffLimit: 0
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: example/app:1
          command: ["{python}", "-c", "print('applied')"]
"""


def test_apply_a_job_and_its_dry_run(kube) -> None:
    api, tmp = kube
    manifest = MANIFEST.format(python=sys.executable)
    dry = kubectl(api, tmp, "apply", "--dry-run=client", "-f", "-", stdin=manifest)
    assert dry.returncode == 0, dry.stderr
    assert "job.batch/migrate created (dry run)" in dry.stdout
    assert api.get_object(NS, "jobs", "migrate") is None

    applied = kubectl(api, tmp, "apply", "-f", "-", stdin=manifest)
    assert applied.returncode == 0, applied.stderr
    done = kubectl(api, tmp, "wait", "--for=condition=Complete", "job/migrate", "--timeout=30s")
    assert done.returncode == 0, done.stderr
    assert kubectl(api, tmp, "logs", "job/migrate").stdout == "applied\n"

    always = manifest.replace("restartPolicy: Never", "restartPolicy: Always").replace(
        "name: migrate\nspec", "name: other\nspec"
    )
    refused = kubectl(api, tmp, "apply", "-f", "-", stdin=always)
    assert 'The Job "other" is invalid: spec.template.spec.restartPolicy: Unsupported value' in (
        refused.stderr
    )


def test_leaving_the_server_stops_every_process(tmp_path: Path) -> None:
    with KubeAPIServer() as api:
        api.add_namespace(NS)
        create(api, tmp_path, job("x", SLEEPS))
        _, pid = running_pid(api, tmp_path, "x")
    assert not alive(pid)
