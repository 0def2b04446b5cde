"""The release: backup, upgrade, verify, deploy, and what to say when a step fails.

`deploy` applies the application's manifests (`kubectl apply -k`) and waits for each
configured Deployment's rollout. It refuses to run while the database is not at head.

A release is the four steps in order, whether typed as `inv release`, as
`inv db.backup db.upgrade db.verify deploy` or as `inv backup migrate verify deploy`; each
step records itself in the invocation's journal (see `kubemigrate.journal`).
"""

from __future__ import annotations

import shlex
import sys

from kubemigrate.errors import KubemigrateError
from kubemigrate.kube import Kubectl
from kubemigrate.settings import Settings


class DeployError(KubemigrateError):
    """The manifests could not be applied or a rollout did not finish."""


# -- deploy ---------------------------------------------------------------------------------------


def require_head(settings: Settings) -> None:
    """Fail unless the database is at the migrations' head."""
    from kubemigrate.migrations import alembic_config, not_at_head
    from kubemigrate.target import connect, database

    config = alembic_config(settings)
    with connect(database(settings)) as connection:
        gap = not_at_head(config, connection)
    if gap:
        raise DeployError(
            f"the database is {gap}; run `inv db.upgrade` first, or pass --skip-db-check"
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
        raise DeployError(
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
            raise DeployError(
                f"{name} did not finish rolling out within {settings.rollout_timeout:g}s "
                f"({exc.message}); inspect it with `kubectl rollout status {name}`"
            ) from None
        print(output.rstrip(), file=sys.stderr)


# -- the plan -------------------------------------------------------------------------------------


def plan(settings: Settings) -> str:
    """What `inv release` would do, with the SQL of the pending migrations; changes nothing."""
    import io

    from kubemigrate.backup import client, facts
    from kubemigrate.migrations import alembic_config, scripts, upgrade_sql
    from kubemigrate.target import database

    db = database(settings)
    known = facts(db)
    head = ", ".join(scripts(alembic_config(settings)).get_heads())
    where, dumped_by = client(settings, db, known.server_major)
    # The snapshot is exported when the backup starts, in the transaction that reads the revision.
    dump_argv = where.command("pg_dump", "--format=custom", "--snapshot=SNAPSHOT")
    lines = [
        f"Release plan for {db.name} ({settings.environment}, target {settings.target}):",
        f"1. backup: {dumped_by}",
        f"   $ {shlex.join(dump_argv)}",
        f"2. upgrade: {known.revision} -> {head}",
    ]
    sql = io.StringIO()
    if known.revision == head:
        lines.append("   no pending migrations")
    else:
        upgrade_sql(settings, None if known.revision == "base" else known.revision, sql)
        lines += ["   " + line for line in sql.getvalue().rstrip().splitlines()]
    lines.append(
        "3. verify: reachable, single head, at head, models match"
        + (", pod ready" if settings.target == "k8s" else "")
    )
    context = f"--context {settings.kube_context} " if settings.kube_context else ""
    lines.append("4. deploy:")
    for command in deploy_commands(settings):
        lines.append(
            f"   $ kubectl {context}--namespace {settings.namespace} {shlex.join(command)}"
        )
    return "\n".join(lines)
