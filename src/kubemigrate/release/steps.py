"""The release's four steps, written once: backup, migrate, verify, deploy.

`inv release`, `inv db.backup db.upgrade db.verify deploy` and `inv backup migrate verify
deploy` all run these functions, so a gate added to a step holds in all three forms. Each step
records itself in the invocation's journal (see `kubemigrate.release.journal`), which says, when a
later step fails, what was done and how to restore the backup taken before.

The gate of a protected environment (`KUBEMIGRATE_PROTECTED=true`): the pending migrations
must pass `db.lint` before they run. When the invocation will migrate, the backup step runs
that gate first, so a refused release changes nothing and writes no backup.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from kubemigrate.errors import MigrationError
from kubemigrate.release.journal import journal
from kubemigrate.settings.declared import Settings


def require_safe_migrations(settings: Settings) -> None:
    """On a protected environment, stop when an applied revision's file no longer matches the
    ledger, or before pending migrations that squawk flags (once per environment and
    invocation). The plan printed is the one whose findings decide."""
    if not settings.protected or settings.environment in journal.linted:
        return
    from kubemigrate.migrations.commands import graph
    from kubemigrate.migrations.ledger_check import require_valid
    from kubemigrate.review import build, phased, render, squawk

    require_valid(settings, graph(settings), sys.stderr)
    result = build.plan(settings)
    print(render.as_text(result), file=sys.stderr)
    unsafe = squawk.squawk_findings(result) + phased.refused(result.revisions)
    for revision, finding in unsafe:
        print(f"lint: {render.lint_line(revision, finding)}", file=sys.stderr)
    if unsafe:
        raise MigrationError(
            f"{settings.environment} is protected and {len(unsafe)} pending operation(s) "
            "are unsafe (listed above); fix the migrations or pass --force"
        )
    journal.linted.add(settings.environment)


def backup(settings: Settings, *, output: str | None = None, migrating: bool = False) -> Path:
    """Back up the database; the new file. `migrating`: the invocation goes on to migrate, so
    a protected environment's gate runs first."""
    from kubemigrate.release import backups

    if migrating:
        require_safe_migrations(settings)
    record = backups.backup(settings, output=output)
    path = backups.backup_directory(settings, output) / record.file
    journal.record("backup", backup=path, environment=settings.environment)
    return path


def migrate(
    settings: Settings,
    revision: str | None = None,
    *,
    force: bool = False,
    requested: bool = False,
    post: bool = False,
) -> None:
    """Upgrade the database: to `revision`; without one, to head, or where the environment
    has phases to its pre-deploy target (`post`: the post-deploy revisions after it). `force`
    skips a protected environment's gate; `requested` (--in-cluster), or KUBEMIGRATE_RUNNER=job,
    runs it as a Kubernetes Job."""
    from kubemigrate.migrations import phases

    if not force:
        require_safe_migrations(settings)
    phase = None
    if revision is None and (post or phases.enabled(settings)):
        phase = phases.POST if post else phases.PRE
    ran = change(settings, "upgrade", revision or "head", requested=requested, phase=phase)
    step = "post-deploy upgrade" if post else "upgrade"
    before = head_before(settings) if ran else None
    journal.record(step, before=before, environment=settings.environment)


def change(
    settings: Settings,
    command: str,
    revision: str,
    *,
    requested: bool = False,
    sql: bool = False,
    phase: str | None = None,
) -> bool:
    """Run Alembic's `command` (upgrade, downgrade, stamp) to `revision` (an upgrade with a
    `phase`: to that phase's target): here, or as a Kubernetes Job when `requested`
    (--in-cluster) or KUBEMIGRATE_RUNNER=job. `sql` prints the SQL instead, here. False when an
    upgrade found nothing to do before starting Alembic or a Job."""
    from kubemigrate.migrations import commands, phase_runs

    if not sql and in_cluster(settings, requested):
        if command == "upgrade" and nothing_pending(settings, revision, phase):
            return False
        run_in_cluster(settings, command, revision, phase)
        return True
    if phase is not None:
        return phase_runs.upgrade(settings, phase).target(phase) is not None
    if command == "upgrade":
        return commands.upgrade(settings, revision, sql=sql)
    alembic = {"downgrade": commands.downgrade, "stamp": commands.stamp}
    alembic[command](settings, revision, sql=sql)
    return True


def nothing_pending(settings: Settings, revision: str, phase: str | None) -> bool:
    """Whether an upgrade has nothing to do, read through the tunnel before a Job is made (said
    in one line); False when the environment does not reach the database that way (a target
    other than k8s, port-forwarding or the Secret refused): the Job then decides."""
    from kubemigrate.errors import KubemigrateError
    from kubemigrate.migrations import commands, phase_runs

    if settings.target != "k8s":
        return False
    try:
        if phase is None:
            return commands.already_at(settings, revision)
        return phase_runs.nothing_to_apply(settings, phase)
    except KubemigrateError:
        return False


def in_cluster(settings: Settings, requested: bool) -> bool:
    """Whether a change runs as a Kubernetes Job: --in-cluster, or KUBEMIGRATE_RUNNER=job."""
    return requested or settings.runner == "job"


def run_in_cluster(settings: Settings, command: str, revision: str, phase: str | None) -> None:
    """`python -m kubemigrate COMMAND [--phase PHASE] REVISION` as a Job from the release's
    image: each phase is a Job of its own."""
    from kubemigrate.kubernetes import jobs
    from kubemigrate.migrations import provenance

    # The ledger's rows name who asked, from which commit and in which run, not the pod's user.
    facts = provenance.collect(settings.environment, settings.project_dir)
    phased = ["--phase", phase] if phase else []
    jobs.run(
        settings,
        [command, *phased, "--", revision],
        revision=_resolved(settings, revision),
        values={provenance.FACTS_VARIABLE: facts.as_json()},
    )


def head_before(settings: Settings) -> str | None:
    """The database's heads before this invocation's first migration step, from the ledger
    (comma-separated; empty: base); None when it applied nothing, or the ledger cannot say."""
    from kubemigrate.errors import KubemigrateError
    from kubemigrate.migrations import ledger, provenance
    from kubemigrate.postgres.connections import connect_plainly
    from kubemigrate.target.database import database

    table = ledger.Table.of(settings)
    if table is None:
        return None
    try:
        with connect_plainly(database(settings)) as connection:
            return ledger.heads_before_run(connection, table, provenance.RUN_ID)
    except KubemigrateError:
        return None


def _resolved(settings: Settings, revision: str) -> str:
    """`head` as the revision id it names today (for the Job's label), else `revision`."""
    from kubemigrate.migrations import revisions

    if revision != "head":
        return revision
    graph = revisions.read(settings.path(settings.alembic_ini))
    heads = graph.heads() if graph is not None else []
    return heads[0] if len(heads) == 1 else revision


def verify(settings: Settings, *, as_json: bool = False) -> None:
    """Run the checks, print them (a table, or JSON), and fail if one failed."""
    import json

    from kubemigrate.release import checks

    results = checks.verify(settings)
    if as_json:
        report = {"passed": checks.passed(results), "checks": [r.as_dict() for r in results]}
        print(json.dumps(report, indent=2))
    else:
        print(checks.table(results))
    checks.require_passed(results)
    journal.record("verify")


def deploy(settings: Settings, *, skip_db_check: bool = False) -> None:
    """Apply the manifests and wait for the rollouts (refused while the database is not at
    head, unless `skip_db_check`)."""
    from kubemigrate.release import rollout

    rollout.deploy(settings, skip_db_check=skip_db_check)
    journal.record("deploy")


def release(settings: Settings) -> Path:
    """The steps in order, stopping at the first failure; the backup taken. With phases, the
    post-deploy revisions run after the rollout, then verify again."""
    from kubemigrate.migrations import phases

    path = backup(settings, migrating=True)
    migrate(settings)
    verify(settings)
    deploy(settings)
    if phases.enabled(settings):
        migrate(settings, post=True, force=True)  # the gate passed for the whole release
        verify(settings)
    return path


def dry_run(settings: Settings) -> str:
    """What `release` would do, with the SQL of the pending migrations; changes nothing."""
    import io

    from kubemigrate.migrations.commands import graph, upgrade_sql
    from kubemigrate.postgres.clients import client
    from kubemigrate.release.backups import facts
    from kubemigrate.release.rollout import deploy_commands
    from kubemigrate.target.database import database

    db = database(settings)
    known = facts(db)
    head = ", ".join(graph(settings).heads())
    where, dumped_by = client(settings, db, known.server_major)
    # The snapshot is exported when the backup starts, in the transaction that reads the revision.
    dump_argv = where.command("pg_dump", "--format=custom", "--snapshot=SNAPSHOT")
    lines = [
        f"Release plan for {db.name} ({settings.environment}, target {settings.target}):",
        f"1. backup: {dumped_by}",
        f"   $ {shlex.join(dump_argv)}",
        f"2. upgrade: {known.revision} -> {head}",
    ]
    if known.revision != head and "," not in known.revision:
        env = f" --env {settings.environment}"
        lines.append(
            f"   rollback: the head before the release is {known.revision}: "
            f"inv db.downgrade {known.revision}{env} --yes, or restore the backup"
        )
    if settings.protected:
        lines.append(
            "   first: db.validate and db.lint on the pending migrations (protected environment)"
        )
    sql = io.StringIO()
    if known.revision == head:
        lines.append("   no pending migrations")
    else:
        try:
            upgrade_sql(settings, None if known.revision == "base" else known.revision, sql)
            lines += ["   " + line for line in sql.getvalue().rstrip().splitlines()]
        except MigrationError:  # a data migration reading the database cannot render offline
            lines.append("   (not all of it renders offline: the plan below says which revision)")
    from kubemigrate.review import build, render

    lines += ["   " + line for line in render.as_text(build.plan(settings)).splitlines()]
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
