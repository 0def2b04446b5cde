"""Deploying: apply the application's manifests (`kubectl apply -k`) and wait for each
configured Deployment's rollout (`kubectl rollout status`). It refuses to run while the
database is not at head (with phases: while a pre-deploy revision is pending).
"""

from __future__ import annotations

import sys

from kubemigrate.errors import ClusterError, KubemigrateError
from kubemigrate.kubernetes.kubectl import Kubectl
from kubemigrate.settings.declared import Settings


def require_head(settings: Settings) -> None:
    """Fail unless the database is at the migrations' head; with phases, unless no pre-deploy
    revision is pending (the post-deploy ones run after the rollout)."""
    from kubemigrate.migrations import phases
    from kubemigrate.migrations.commands import graph
    from kubemigrate.migrations.recorder import current_heads, not_at_head, to_head
    from kubemigrate.postgres.connections import connect
    from kubemigrate.target.database import database

    revisions = graph(settings)
    with connect(database(settings)) as connection:
        gap = not_at_head(revisions, connection)
        heads = current_heads(connection)
    if gap and phases.enabled(settings):
        pending = phases.split(revisions, heads).pre
        if not pending:
            return
        gap = f"{gap}, with pre-deploy revisions pending ({', '.join(pending)})"
        raise ClusterError(f"the database is {gap}; run `inv db.upgrade` first")
    if gap:
        raise ClusterError(
            f"the database is {gap}; {to_head(revisions)} first, or pass --skip-db-check"
        )


def deploy_commands(settings: Settings) -> list[list[str]]:
    """The kubectl commands `deploy` runs, for --dry-run and for running them."""
    manifests = settings.path(settings.manifests)
    seconds = f"{settings.rollout_timeout:g}s"
    commands = [["apply", "-k", str(manifests)]]
    commands += [
        ["rollout", "status", f"deployment/{name}", f"--timeout={seconds}"]
        for name in settings.deployments
    ]
    return commands


def deploy(settings: Settings, *, skip_db_check: bool = False) -> None:
    """Apply the manifests, then wait for every configured Deployment's rollout."""
    if not skip_db_check:
        require_head(settings)
    manifests = settings.path(settings.manifests)
    if not manifests.is_dir():
        raise ClusterError(
            f"no manifests directory at {manifests}; set KUBEMIGRATE_MANIFESTS to a kustomize "
            "directory"
        )
    kubectl = Kubectl.from_settings(settings)
    apply, *rollouts = deploy_commands(settings)
    print(kubectl.run(*apply, what=f"apply {manifests}").rstrip(), file=sys.stderr)
    for command in rollouts:
        name = command[2]
        try:
            output = kubectl.run(*command, what=f"wait for the rollout of {name}", short=False)
        except KubemigrateError as exc:
            raise ClusterError(
                f"{name} did not finish rolling out within {settings.rollout_timeout:g}s "
                f"({exc.message}); inspect it with `kubectl rollout status {name}`"
            ) from None
        print(output.rstrip(), file=sys.stderr)
