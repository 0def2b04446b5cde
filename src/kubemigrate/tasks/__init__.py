"""The invoke Collections: `db`, `dev`, and the release at the top level.

`deploy` and `release` live at the top; `backup`, `migrate` and `verify` are `db.backup`,
`db.upgrade` and `db.verify` under the short names users chain:
`inv backup migrate verify deploy` is `inv db.backup db.upgrade db.verify deploy`. `contract`
(`db.upgrade --post`) is the second phase of a release in two: `inv backup migrate deploy
contract verify`.
"""

from invoke import Collection, Task

from kubemigrate.tasks import db, db_backups, db_jobs, db_ledger, db_phases, dev, ship


def short_name(original: Task, name: str) -> Task:
    """The same task body and options under a top-level name (without the original's aliases)."""
    return Task(
        original.body,
        name=name,
        positional=original.positional,
        optional=original.optional,
        iterable=original.iterable,
        incrementable=original.incrementable,
        help=original.help,
    )


database = Collection(
    "db",
    *db.TASKS,
    *db.TASKS_REVIEW,
    db_backups.backup,
    db_backups.restore,
    db_backups.list_backups,
    db_backups.verify,
    *db_ledger.TASKS,
    db_phases.await_schema,
    db_jobs.list_jobs,
    db_jobs.job,
    db_jobs.job_manifest,
)

namespace = Collection()
namespace.add_collection(database)
namespace.add_collection(dev.ns)
namespace.add_task(short_name(db.upgrade, "migrate"))
namespace.add_task(db_phases.contract)
namespace.add_task(short_name(db_backups.backup, "backup"))
namespace.add_task(short_name(db_backups.verify, "verify"))
namespace.add_task(ship.deploy)
namespace.add_task(ship.release)
