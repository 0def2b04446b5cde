"""The `db` tasks for migrations in the cluster: the migration Jobs, following one, and its
manifest for Helm or Argo CD hooks."""

import sys

from invoke import Context, task

from kubemigrate.tasks.common import ENV_HELP, load, reports_errors

AWAIT_TIMEOUT = 600.0  # what the replicas' init container waits for the schema, at most

# -- migration Jobs -------------------------------------------------------------------------------


@task(name="jobs", help={"env": ENV_HELP})
@reports_errors
def list_jobs(c: Context, env: str | None = None) -> None:
    """List kubemigrate's migration Jobs with state, revision and age."""
    from kubemigrate.kubernetes import job_list
    from kubemigrate.kubernetes.kubectl import Kubectl

    kubectl = Kubectl.from_settings(load(env))
    rows = [("NAME", "STATE", "REVISION", "AGE"), *map(job_list.describe, job_list.listed(kubectl))]
    if len(rows) == 1:
        print(f"No migration Jobs in {kubectl.where}.", file=sys.stderr)
        return
    width = [max(len(row[i]) for row in rows) for i in range(3)]
    for name, state, rev, age in rows:
        print(f"{name:<{width[0]}}  {state:<{width[1]}}  {rev:<{width[2]}}  {age}")


@task(
    help={
        "name": "The Job, as `inv db.jobs` lists it.",
        "follow": "Stream its log and wait for its end, as the migration task does.",
        "cancel": "Delete it: PostgreSQL rolls the migration in progress back.",
        "env": ENV_HELP,
    }
)
@reports_errors
def job(
    c: Context, name: str, follow: bool = False, cancel: bool = False, env: str | None = None
) -> None:
    """Follow (--follow) or cancel (--cancel) a migration Job."""
    from kubemigrate.kubernetes import job_list, jobs
    from kubemigrate.kubernetes.kubectl import Kubectl

    settings = load(env)
    kubectl = Kubectl.from_settings(settings)
    run_id = jobs.run_id_of(kubectl, name)
    if cancel:
        stopped = jobs.cancel(kubectl, name, run_id)
        state = "its pod has stopped" if stopped else "its pod is still stopping"
        rolled = "PostgreSQL rolls back what it had not committed"
        print(f"Deleted the migration Job {name} ({state}); {rolled}.")
    elif follow:
        jobs.follow(settings, kubectl, name, run_id)
    else:
        print(job_list.describe(kubectl.get("job", name))[1])


@task(
    name="job-manifest",
    help={
        "revision": "Revision to upgrade to (default: head).",
        "hook": "helm or argo: the Job of each phase as a Helm or Argo CD hook (a fixed "
        "name, deleted before its next creation).",
        "env": ENV_HELP,
    },
)
@reports_errors
def job_manifest(
    c: Context, revision: str = "head", hook: str | None = None, env: str | None = None
) -> None:
    """Print the migration Job's YAML (for Helm or Argo CD hooks); needs no cluster."""
    from kubemigrate.kubernetes import job_hooks
    from kubemigrate.migrations import phases

    settings = load(env)
    phased = phases.enabled(settings)
    found = job_hooks.jobs(settings, revision, hook=hook, phased=phased)
    container = job_hooks.await_container(settings, AWAIT_TIMEOUT)
    print(job_hooks.documents(found, container), end="")
