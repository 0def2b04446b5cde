"""The migration Job for GitOps (Helm, Argo CD), where no `inv release` runs: the Job of each
phase as a hook of the chart or the application, and the init container that makes the
release's replicas wait for the schema.

A hook Job has a fixed name (`kubemigrate-ENV-migrate`, `-contract` for the post-deploy phase),
is deleted before its next creation rather than after it succeeds (its log stays to read), is
never retried (`backoffLimit: 0`, as every migration Job) and has a deadline
(`activeDeadlineSeconds`: KUBEMIGRATE_JOB_DEADLINE). The pre-deploy Job runs before the
release's resources are synced or upgraded, the post-deploy one after they are.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kubemigrate.errors import SettingsError
from kubemigrate.kubernetes.job_manifest import environment, manifest, release, to_yaml

if TYPE_CHECKING:
    from kubemigrate.settings.declared import Settings

HOOKS: dict[str, dict[str, dict[str, str]]] = {
    "helm": {
        "pre": {
            "helm.sh/hook": "pre-install,pre-upgrade",
            "helm.sh/hook-weight": "-5",
            "helm.sh/hook-delete-policy": "before-hook-creation",
        },
        "post": {
            "helm.sh/hook": "post-install,post-upgrade",
            "helm.sh/hook-weight": "5",
            "helm.sh/hook-delete-policy": "before-hook-creation",
        },
    },
    "argo": {
        "pre": {
            "argocd.argoproj.io/hook": "PreSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        },
        "post": {
            "argocd.argoproj.io/hook": "PostSync",
            "argocd.argoproj.io/hook-delete-policy": "BeforeHookCreation",
        },
    },
}
NAMES = {"pre": "migrate", "post": "contract"}


def jobs(
    settings: Settings, revision: str, *, hook: str | None, phased: bool
) -> list[dict[str, Any]]:
    """The migration Jobs: one (`upgrade REVISION`), or with `phased` one per phase
    (`upgrade --phase pre|post head`); with `hook` (helm, argo), as hooks with fixed names."""
    if hook is not None and hook not in HOOKS:
        raise SettingsError(f"unknown --hook {hook!r}; use helm or argo")
    if phased and revision != "head":
        raise SettingsError("a release in phases upgrades to head: leave out --revision")
    found = []
    for phase in ("pre", "post") if phased else ("pre",):
        arguments = ["upgrade", *(["--phase", phase] if phased else []), "--", revision]
        run_id = NAMES[phase] if hook else None
        job = manifest(settings, arguments, revision=revision, run_id=run_id)
        if hook:
            job["metadata"]["annotations"] = dict(HOOKS[hook][phase])
        found.append(job)
    return found


def await_container(settings: Settings, timeout: float) -> dict[str, Any]:
    """The init container that waits, read-only, until the database has the revisions the
    image's code needs (`python -m kubemigrate await`), reaching it as the Job does."""
    found = release(settings)
    container = {
        "name": "kubemigrate-await",
        "image": found.image,
        "command": [*settings.job_command, "await", "--timeout", f"{timeout:g}"],
        "env": environment(settings, found.container),
    }
    for key in ("envFrom", "workingDir"):
        if found.container.get(key):
            container[key] = found.container[key]
    return container


def documents(jobs: list[dict[str, Any]], container: dict[str, Any]) -> str:
    """The Jobs as YAML documents, then the init container as comments (kubectl and Helm read
    past them), to add to the Deployment's pod template."""
    text = "---\n".join(to_yaml(job) for job in jobs)
    snippet = to_yaml({"initContainers": [container]})
    lines = [
        "# Replicas that wait for the schema: add this to the Deployment's pod template",
        "# (spec.template.spec), beside its containers.",
        *(f"# {line}".rstrip() for line in snippet.splitlines()),
    ]
    return text + "\n".join(lines) + "\n"
